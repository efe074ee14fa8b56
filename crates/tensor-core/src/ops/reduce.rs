//! Reductions over any set of dims (negative dims allowed, empty list = all dims)
//! with `keepdim`, plus cumulative ops.

use crate::backend::{ReduceOp, ScanOp};
use crate::shape::{normalize_dims, Shape};
use crate::{DType, Error, Result, Tensor};

impl Tensor {
    /// Runs a backend reduction over normalised `dims`; the result keeps size-1 dims
    /// when `keepdim`, else drops them.
    pub fn reduce_op(&self, op: ReduceOp, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        let d = normalize_dims(op.name(), dims, self.rank())?;
        let kept: Vec<usize> =
            self.dims().iter().enumerate().map(|(i, &s)| if d.contains(&i) { 1 } else { s }).collect();
        let out = self.run1(Shape::new(&kept), |be, b, l| be.reduce(op, b, l, &d))?;
        if keepdim {
            Ok(out)
        } else {
            let shape: Vec<usize> =
                self.dims().iter().enumerate().filter(|(i, _)| !d.contains(i)).map(|(_, &s)| s).collect();
            out.reshape_to(shape)
        }
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

    /// Mean over `dims` (all when empty); float dtypes only, like PyTorch.
    pub fn mean(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        if !self.dtype().is_float() {
            return Err(Error::Unsupported { op: "mean", dtype: self.dtype(), device: self.device().to_string() });
        }
        let d = normalize_dims("mean", dims, self.rank())?;
        let n: usize = d.iter().map(|&i| self.dims()[i]).product();
        self.sum(dims, keepdim)?.div_scalar(n as f64)
    }

    /// Mean of all elements.
    pub fn mean_all(&self) -> Result<Tensor> {
        self.mean(&[], false)
    }

    /// Maximum over `dims` (values only; see [`Tensor::max_dim`] for indices).
    pub fn amax(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        self.reduce_op(ReduceOp::Max, dims, keepdim)
    }

    /// Minimum over `dims` (values only).
    pub fn amin(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        self.reduce_op(ReduceOp::Min, dims, keepdim)
    }

    /// Maximum of all elements, as a 0-dim tensor; an error on an empty tensor.
    pub fn max_all(&self) -> Result<Tensor> {
        self.amax(&[], false)
    }

    /// Minimum of all elements.
    pub fn min_all(&self) -> Result<Tensor> {
        self.amin(&[], false)
    }

    /// Index of the maximum along `dim` (first occurrence), as I64.
    pub fn argmax(&self, dim: isize, keepdim: bool) -> Result<Tensor> {
        if self.rank() == 0 {
            crate::shape::normalize_dim_scalar_ok("argmax", dim, 0)?;
            return Tensor::scalar_on(0i64, DType::I64, self.device());
        }
        self.reduce_op(ReduceOp::ArgMax, &[dim], keepdim)
    }

    /// Index of the minimum along `dim` (first occurrence), as I64.
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

    /// Cumulative sum along `dim`.
    pub fn cumsum(&self, dim: isize) -> Result<Tensor> {
        self.scan_op(ScanOp::CumSum, dim)
    }

    /// Cumulative product along `dim`.
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
