//! Reductions over any set of dims (negative dims allowed, an empty list means every
//! dim) with `keepdim`, statistics (`var`, `std`, `logsumexp`, `norm`) and
//! cumulative ops, with PyTorch's names, result dtypes and empty-input rules: the sum
//! of nothing is 0, the product 1, the mean NaN, while `max`/`min`/`argmax` of
//! nothing are errors.
//!
//! The CPU kernels fold in one canonical order fixed by the logical positions of the
//! elements, so results are bit-identical whatever the layout or thread count.

use crate::backend::{ReduceOp, ScanOp};
use crate::shape::{normalize_dims, Shape};
use crate::{DType, Error, Result, Tensor};

/// The order of a vector norm (see [`Tensor::norm`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum NormOrd {
    /// `(sum |x|^p)^(1/p)`; `p = 0` counts the nonzero elements.
    P(f64),
    /// `max |x|`
    Inf,
    /// `min |x|`
    NegInf,
    /// The Frobenius norm: the 2-norm of the elements over the dims.
    Fro,
}

impl From<f64> for NormOrd {
    fn from(p: f64) -> Self {
        if p == f64::INFINITY {
            NormOrd::Inf
        } else if p == f64::NEG_INFINITY {
            NormOrd::NegInf
        } else {
            NormOrd::P(p)
        }
    }
}

impl From<i32> for NormOrd {
    fn from(p: i32) -> Self {
        NormOrd::P(p as f64)
    }
}

impl Tensor {
    /// Runs a backend reduction over normalised `dims`; the result keeps size-1 dims
    /// when `keepdim`, else drops them.
    pub fn reduce_op(&self, op: ReduceOp, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        let d = normalize_dims(op.name(), dims, self.rank())?;
        // The backend writes the kept positions in row-major order, which is also the
        // contiguous order of the result with the reduced dims dropped.
        let shape = reduced_shape(self, &d, keepdim);
        self.run1(shape, |be, b, l| be.reduce(op, b, l, &d))
    }

    /// Sum over `dims` (all when empty). Integers and bool sum to I64, like PyTorch.
    ///
    /// ```
    /// use tensor_core::Tensor;
    /// let t = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], [2, 2])?;
    /// assert_eq!(t.sum(&[0], false)?.to_vec::<f32>()?, vec![4.0, 6.0]);
    /// assert_eq!(t.sum(&[-1], true)?.dims(), &[2, 1]);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn sum(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        let x = if self.dtype().is_float() { self.clone() } else { self.to_dtype(DType::I64)? };
        x.reduce_op(ReduceOp::Sum, dims, keepdim)
    }

    /// Sum of all elements, as a 0-dim tensor.
    pub fn sum_all(&self) -> Result<Tensor> {
        self.sum(&[], false)
    }

    /// Product over `dims` (all when empty); 1 over an empty set. Integers and bool
    /// multiply in I64, like PyTorch.
    ///
    /// ```
    /// use tensor_core::Tensor;
    /// let t = Tensor::from_vec(vec![1i64, 2, 3, 4], [2, 2])?;
    /// assert_eq!(t.prod(&[1], false)?.to_vec::<i64>()?, vec![2, 12]);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn prod(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        let x = if self.dtype().is_float() { self.clone() } else { self.to_dtype(DType::I64)? };
        x.reduce_op(ReduceOp::Prod, dims, keepdim)
    }

    /// Product of all elements, as a 0-dim tensor.
    pub fn prod_all(&self) -> Result<Tensor> {
        self.prod(&[], false)
    }

    /// Mean over `dims` (all when empty); float dtypes only, like PyTorch. The mean
    /// of nothing is NaN. f16/bf16 accumulate in f32.
    ///
    /// ```
    /// use tensor_core::Tensor;
    /// let t = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 6.0], [2, 2])?;
    /// assert_eq!(t.mean(&[1], false)?.to_vec::<f32>()?, vec![1.5, 4.5]);
    /// assert!(Tensor::from_vec(vec![1i64], [1])?.mean(&[], false).is_err());
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn mean(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        require_float(self, "mean")?;
        let d = normalize_dims("mean", dims, self.rank())?;
        let n = reduced_count(self, &d);
        widen_half(self)?.sum(dims, keepdim)?.div_scalar(n as f64)?.to_dtype(self.dtype())
    }

    /// Mean of all elements.
    pub fn mean_all(&self) -> Result<Tensor> {
        self.mean(&[], false)
    }

    /// Maximum over `dims` (values only; see [`Tensor::max_dim`] for indices). NaN
    /// propagates; an error when a reduced dim has size 0.
    ///
    /// ```
    /// use tensor_core::Tensor;
    /// let t = Tensor::from_vec(vec![1.0f32, 5.0, 3.0, 4.0], [2, 2])?;
    /// assert_eq!(t.amax(&[0], false)?.to_vec::<f32>()?, vec![3.0, 5.0]);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn amax(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        self.reduce_op(ReduceOp::Max, dims, keepdim)
    }

    /// Minimum over `dims` (values only). NaN propagates.
    pub fn amin(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        self.reduce_op(ReduceOp::Min, dims, keepdim)
    }

    /// Maximum of all elements, as a 0-dim tensor; an error on an empty tensor.
    pub fn max_all(&self) -> Result<Tensor> {
        self.amax(&[], false)
    }

    /// Minimum of all elements; an error on an empty tensor.
    pub fn min_all(&self) -> Result<Tensor> {
        self.amin(&[], false)
    }

    /// Index of the maximum along `dim` (first occurrence; a NaN counts as the
    /// maximum), as I64. An error when that dim has size 0.
    ///
    /// ```
    /// use tensor_core::Tensor;
    /// let t = Tensor::from_vec(vec![1.0f32, 5.0, 5.0, 4.0, 0.0, 9.0], [2, 3])?;
    /// assert_eq!(t.argmax(1, false)?.to_vec::<i64>()?, vec![1, 2]);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn argmax(&self, dim: isize, keepdim: bool) -> Result<Tensor> {
        if self.rank() == 0 {
            crate::shape::normalize_dim_scalar_ok("argmax", dim, 0)?;
            return Tensor::scalar_on(0i64, DType::I64, self.device());
        }
        self.reduce_op(ReduceOp::ArgMax, &[dim], keepdim)
    }

    /// Index of the minimum along `dim` (first occurrence; a NaN counts as the
    /// minimum), as I64.
    pub fn argmin(&self, dim: isize, keepdim: bool) -> Result<Tensor> {
        if self.rank() == 0 {
            crate::shape::normalize_dim_scalar_ok("argmin", dim, 0)?;
            return Tensor::scalar_on(0i64, DType::I64, self.device());
        }
        self.reduce_op(ReduceOp::ArgMin, &[dim], keepdim)
    }

    /// Maximum along `dim`: `(values, indices)` (PyTorch's `max(dim)`).
    pub fn max_dim(&self, dim: isize, keepdim: bool) -> Result<(Tensor, Tensor)> {
        Ok((self.amax(&[dim], keepdim)?, self.argmax(dim, keepdim)?))
    }

    /// Minimum along `dim`: `(values, indices)`.
    pub fn min_dim(&self, dim: isize, keepdim: bool) -> Result<(Tensor, Tensor)> {
        Ok((self.amin(&[dim], keepdim)?, self.argmin(dim, keepdim)?))
    }

    /// True where every element over `dims` is nonzero (all dims when empty), as
    /// Bool; true over an empty set.
    pub fn all(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        self.reduce_op(ReduceOp::All, dims, keepdim)
    }

    /// True where some element over `dims` is nonzero, as Bool; false over an empty set.
    pub fn any(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        self.reduce_op(ReduceOp::Any, dims, keepdim)
    }

    /// Variance over `dims` (all when empty), dividing by `N - correction` (PyTorch's
    /// default `correction = 1` is the unbiased estimate; 0 gives the population
    /// variance). Float dtypes only; NaN or inf when `N <= correction`.
    ///
    /// ```
    /// use tensor_core::Tensor;
    /// let t = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], [4])?;
    /// assert_eq!(t.var(&[], 1.0, false)?.to_scalar::<f64>()?, 5.0 / 3.0);
    /// assert_eq!(t.var(&[0], 0.0, false)?.to_scalar::<f64>()?, 1.25);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn var(&self, dims: &[isize], correction: f64, keepdim: bool) -> Result<Tensor> {
        Ok(self.moments("var", dims, correction, keepdim)?.0)
    }

    /// Standard deviation over `dims`: the square root of [`Tensor::var`].
    pub fn std(&self, dims: &[isize], correction: f64, keepdim: bool) -> Result<Tensor> {
        self.moments("std", dims, correction, keepdim)?.0.sqrt()
    }

    /// `(var, mean)` over `dims` in one pass over the statistics.
    pub fn var_mean(&self, dims: &[isize], correction: f64, keepdim: bool) -> Result<(Tensor, Tensor)> {
        self.moments("var_mean", dims, correction, keepdim)
    }

    /// `(std, mean)` over `dims`.
    pub fn std_mean(&self, dims: &[isize], correction: f64, keepdim: bool) -> Result<(Tensor, Tensor)> {
        let (v, m) = self.moments("std_mean", dims, correction, keepdim)?;
        Ok((v.sqrt()?, m))
    }

    /// `(var, mean)` by two passes: the mean, then the squared deviations from it.
    fn moments(&self, op: &'static str, dims: &[isize], correction: f64, keepdim: bool) -> Result<(Tensor, Tensor)> {
        require_float(self, op)?;
        if correction.is_nan() {
            return Err(Error::arg(op, "correction must not be NaN"));
        }
        let d = normalize_dims(op, dims, self.rank())?;
        let n = reduced_count(self, &d) as f64;
        let x = widen_half(self)?;
        let mean = x.sum(dims, true)?.div_scalar(n)?;
        let dev = x.sub(&mean)?;
        let var = dev.square()?.sum(dims, keepdim)?.div_scalar((n - correction).max(0.0))?;
        let mean = drop_reduced(&mean, &d, keepdim)?;
        Ok((var.to_dtype(self.dtype())?, mean.to_dtype(self.dtype())?))
    }

    /// `log(sum(exp(x)))` over `dims`, computed stably by subtracting the maximum
    /// first. Integers are promoted to f32; the result over an empty set is `-inf`.
    ///
    /// ```
    /// use tensor_core::Tensor;
    /// let t = Tensor::from_vec(vec![1000.0f64, 1000.0], [2])?;
    /// let l = t.logsumexp(&[0], false)?.to_scalar::<f64>()?;
    /// assert!((l - (1000.0 + 2f64.ln())).abs() < 1e-9);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn logsumexp(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        let d = normalize_dims("logsumexp", dims, self.rank())?;
        let out_dtype = if self.dtype().is_float() { self.dtype() } else { DType::F32 };
        let x = widen_half(&self.to_dtype(out_dtype)?)?;
        if reduced_count(self, &d) == 0 {
            return Tensor::full(reduced_shape(self, &d, keepdim), f64::NEG_INFINITY, out_dtype, self.device());
        }
        let m = x.amax(dims, true)?;
        // An infinite maximum would make x - m NaN; shifting by 0 there gives the
        // right -inf (all -inf) or +inf (some +inf).
        let m = m.masked_fill(&m.isinf()?, 0.0)?;
        let s = x.sub(&m)?.exp()?.sum(dims, true)?.log()?.add(&m)?;
        drop_reduced(&s, &d, keepdim)?.to_dtype(out_dtype)
    }

    /// Vector norm of the elements over `dims` (all when empty), like
    /// `torch.linalg.vector_norm`: `ord` is a [`NormOrd`] or an `f64` (`1.0`, `2.0`,
    /// `f64::INFINITY`, ...). Float dtypes only. The inf norms of nothing are errors
    /// (no identity), the others are 0.
    ///
    /// ```
    /// use tensor_core::{ops::reduce::NormOrd, Tensor};
    /// let t = Tensor::from_vec(vec![3.0f32, -4.0], [2])?;
    /// assert_eq!(t.norm(2.0, &[], false)?.to_scalar::<f32>()?, 5.0);
    /// assert_eq!(t.norm(1.0, &[0], false)?.to_scalar::<f32>()?, 7.0);
    /// assert_eq!(t.norm(NormOrd::Inf, &[], false)?.to_scalar::<f32>()?, 4.0);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn norm(&self, ord: impl Into<NormOrd>, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        require_float(self, "norm")?;
        let ord = ord.into();
        let d = normalize_dims("norm", dims, self.rank())?;
        if matches!(ord, NormOrd::Inf | NormOrd::NegInf) && reduced_count(self, &d) == 0 {
            return Err(Error::arg(
                "norm",
                format!(
                    "cannot compute the {} norm over an empty set of elements (input shape {:?}, dims {dims:?}): the operation has no identity",
                    if ord == NormOrd::Inf { "inf" } else { "-inf" },
                    self.dims()
                ),
            ));
        }
        let x = widen_half(self)?;
        let out = match ord {
            NormOrd::P(p) if p.is_nan() => return Err(Error::arg("norm", "the order p must not be NaN")),
            NormOrd::Inf => x.abs()?.amax(dims, keepdim)?,
            NormOrd::NegInf => x.abs()?.amin(dims, keepdim)?,
            NormOrd::P(0.0) => x.ne_scalar(0.0)?.to_dtype(x.dtype())?.sum(dims, keepdim)?,
            NormOrd::P(1.0) => x.abs()?.sum(dims, keepdim)?,
            NormOrd::Fro => x.square()?.sum(dims, keepdim)?.sqrt()?,
            NormOrd::P(2.0) => x.square()?.sum(dims, keepdim)?.sqrt()?,
            NormOrd::P(p) => x.abs()?.pow_scalar(p)?.sum(dims, keepdim)?.pow_scalar(1.0 / p)?,
        };
        out.to_dtype(self.dtype())
    }

    /// Cumulative sum along `dim`. Integers and bool accumulate in I64.
    ///
    /// ```
    /// use tensor_core::Tensor;
    /// let t = Tensor::from_vec(vec![1.0f32, 2.0, 3.0], [3])?;
    /// assert_eq!(t.cumsum(0)?.to_vec::<f32>()?, vec![1.0, 3.0, 6.0]);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn cumsum(&self, dim: isize) -> Result<Tensor> {
        self.scan_op(ScanOp::CumSum, dim)
    }

    /// Cumulative product along `dim`. Integers and bool accumulate in I64.
    pub fn cumprod(&self, dim: isize) -> Result<Tensor> {
        self.scan_op(ScanOp::CumProd, dim)
    }

    fn scan_op(&self, op: ScanOp, dim: isize) -> Result<Tensor> {
        let name = if op == ScanOp::CumSum { "cumsum" } else { "cumprod" };
        let x = if self.dtype().is_float() { self.clone() } else { self.to_dtype(DType::I64)? };
        if x.rank() == 0 {
            crate::shape::normalize_dim_scalar_ok(name, dim, 0)?;
            return x.copy();
        }
        let d = x.layout().dim(name, dim)?;
        let shape = x.shape().clone();
        x.run1(shape, |be, b, l| be.scan(op, b, l, d))
    }
}

/// Removes the (size-1) reduced dims `d` of a reduction result unless `keepdim`.
fn drop_reduced(t: &Tensor, d: &[usize], keepdim: bool) -> Result<Tensor> {
    if keepdim {
        return Ok(t.clone());
    }
    let shape: Shape = t.dims().iter().enumerate().filter(|(i, _)| !d.contains(i)).map(|(_, &s)| s).collect();
    t.reshape_to(shape)
}

/// The shape of a reduction's result over normalised dims `d`.
fn reduced_shape(t: &Tensor, d: &[usize], keepdim: bool) -> Shape {
    let dims = t.dims().iter().enumerate();
    if keepdim {
        dims.map(|(i, &s)| if d.contains(&i) { 1 } else { s }).collect()
    } else {
        dims.filter(|(i, _)| !d.contains(i)).map(|(_, &s)| s).collect()
    }
}

/// Number of elements folded into each output of a reduction over `d`.
fn reduced_count(t: &Tensor, d: &[usize]) -> usize {
    d.iter().map(|&i| t.dims()[i]).product()
}

/// Refuses integer and bool inputs for float-only reductions.
fn require_float(t: &Tensor, op: &'static str) -> Result<()> {
    if t.dtype().is_float() {
        Ok(())
    } else {
        Err(Error::Unsupported { op, dtype: t.dtype(), device: t.device().to_string() })
    }
}

/// f16/bf16 inputs widened to f32 for accumulating statistics (PyTorch does the
/// same); other dtypes unchanged.
fn widen_half(t: &Tensor) -> Result<Tensor> {
    match t.dtype() {
        DType::F16 | DType::BF16 => t.to_dtype(DType::F32),
        _ => Ok(t.clone()),
    }
}
