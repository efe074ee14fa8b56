//! Reductions (sum, prod, mean, amax/amin, max/min along a dim, vector norms)
//! and scans (cumsum, cumprod), with their backwards.

use smallvec::SmallVec;
use tensor_core::ops::reduce::NormOrd;
use tensor_core::shape::normalize_dims;
use tensor_core::{DType, Result, Tensor};

use crate::graph::SavedVar;

use crate::var::Var;

/// The reduced dims of `shape` (all when `dims` is empty), sorted.
fn reduced(op: &'static str, dims: &[isize], rank: usize) -> Result<tensor_core::shape::Dims> {
    normalize_dims(op, dims, rank)
}

impl Var {
    /// Re-inserts reduced dims as size 1 (undoing `keepdim = false`).
    pub(crate) fn unsqueeze_dims(&self, dims: &[usize], keepdim: bool) -> Result<Var> {
        if keepdim {
            return Ok(self.clone());
        }
        let mut g = self.clone();
        for &d in dims {
            g = g.unsqueeze(d as isize)?;
        }
        Ok(g)
    }

    /// Sum over `dims` (all when empty).
    pub fn sum(&self, dims: &[isize], keepdim: bool) -> Result<Var> {
        let out = self.tensor().sum(dims, keepdim)?;
        let d = reduced("sum", dims, self.rank())?;
        let shape: SmallVec<[isize; 6]> = self.dims().iter().map(|&s| s as isize).collect();
        let all = !keepdim && d.len() == shape.len();
        Ok(self.record_unary_grad_only("sum", out, move |g| {
            // A sum over everything has a 0-dim gradient, which expands as it is.
            if all {
                g.expand(&shape)
            } else {
                g.unsqueeze_dims(&d, keepdim)?.expand(&shape)
            }
        }))
    }

    /// Sum of all elements.
    pub fn sum_all(&self) -> Result<Var> {
        self.sum(&[], false)
    }

    /// Product over `dims` (all when empty). The gradient of each element is the
    /// product of the others (exact with zeros, no division).
    ///
    /// ```
    /// use autograd::Var;
    /// use tensor_core::Tensor;
    /// let x = Var::param(Tensor::new(&[2.0f64, 0.0, 3.0]))?;
    /// x.prod(&[], false)?.backward()?;
    /// assert_eq!(x.grad().unwrap().to_vec::<f64>()?, vec![0.0, 6.0, 0.0]);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn prod(&self, dims: &[isize], keepdim: bool) -> Result<Var> {
        let out = self.tensor().prod(dims, keepdim)?;
        let d = reduced("prod", dims, self.rank())?;
        Ok(self.record_unary("prod", out, move |x, g| prod_backward(x, g, &d)))
    }

    /// Product of all elements.
    pub fn prod_all(&self) -> Result<Var> {
        self.prod(&[], false)
    }

    /// Vector norm over `dims` (all when empty), like `torch.linalg.vector_norm`:
    /// `ord` is a [`NormOrd`] or an `f64` (`1.0`, `2.0`, `f64::INFINITY`, ...). The
    /// gradient at a zero vector is 0 (a subgradient); inf norms share it between
    /// tied maxima.
    pub fn norm(&self, ord: impl Into<NormOrd>, dims: &[isize], keepdim: bool) -> Result<Var> {
        let ord = ord.into();
        let out = self.tensor().norm(ord, dims, keepdim)?;
        let d = reduced("norm", dims, self.rank())?;
        let dims_v: Vec<isize> = d.iter().map(|&i| i as isize).collect();
        Ok(self.record_unary_saving_input_and_output("norm", out, move |x, y, g| {
            let gk = g.unsqueeze_dims(&d, keepdim)?;
            let sign = x.tensor().sign()?;
            // The saved norm with reduced dims kept, and zeros replaced by 1 so a zero
            // vector gets a zero gradient instead of 0/0.
            let y = y.unsqueeze_dims(&d, keepdim)?;
            let safe_norm = || -> Result<Var> { y.masked_fill(&y.tensor().eq_scalar(0.0)?, 1.0) };
            match ord {
                NormOrd::P(0.0) => x.zeros_like(),
                NormOrd::P(1.0) => gk.mul_t(&sign),
                NormOrd::Inf | NormOrd::NegInf => {
                    let hit = x.tensor().abs()?.eq(y.tensor())?.to_dtype(g.dtype())?;
                    let count = hit.sum(&dims_v, true)?;
                    gk.mul_t(&hit.div(&count)?.mul(&sign.to_dtype(g.dtype())?)?)
                }
                NormOrd::Fro | NormOrd::P(2.0) => gk.mul(&x.div(&safe_norm()?)?),
                NormOrd::P(p) => {
                    let num = x.abs()?.pow_scalar(p - 1.0)?.mul_t(&sign)?;
                    gk.mul(&num.div(&safe_norm()?.pow_scalar(p - 1.0)?)?)
                }
            }
        }))
    }

    /// `(var, mean)` over `dims` (see [`Var::var`]).
    pub fn var_mean(&self, dims: &[isize], correction: f64, keepdim: bool) -> Result<(Var, Var)> {
        Ok((self.var(dims, correction, keepdim)?, self.mean(dims, keepdim)?))
    }

    /// `(std, mean)` over `dims` (see [`Var::std`]).
    pub fn std_mean(&self, dims: &[isize], correction: f64, keepdim: bool) -> Result<(Var, Var)> {
        Ok((self.std(dims, correction, keepdim)?, self.mean(dims, keepdim)?))
    }

    /// Mean over `dims` (all when empty).
    pub fn mean(&self, dims: &[isize], keepdim: bool) -> Result<Var> {
        let out = self.tensor().mean(dims, keepdim)?;
        let d = reduced("mean", dims, self.rank())?;
        let n: usize = d.iter().map(|&i| self.dims()[i]).product();
        let shape: Vec<isize> = self.dims().iter().map(|&s| s as isize).collect();
        Ok(self.record_unary_grad_only("mean", out, move |g| {
            g.unsqueeze_dims(&d, keepdim)?.expand(&shape)?.div_scalar(n as f64)
        }))
    }

    /// Mean of all elements.
    pub fn mean_all(&self) -> Result<Var> {
        self.mean(&[], false)
    }

    fn extremum(&self, name: &'static str, dims: &[isize], keepdim: bool, max: bool) -> Result<Var> {
        let out = if max { self.tensor().amax(dims, keepdim)? } else { self.tensor().amin(dims, keepdim)? };
        let d = reduced(name, dims, self.rank())?;
        let dims_i: Vec<isize> = d.iter().map(|&x| x as isize).collect();
        let out_keep = Var::from(out.clone()).unsqueeze_dims(&d, keepdim)?.tensor().clone();
        let saved_out = SavedVar::tensor(&out_keep);
        Ok(self.record_unary(name, out, move |x, g| {
            // The gradient is shared evenly between tied extrema (PyTorch's amax rule).
            let m = x.tensor().eq(&saved_out.tensor_checked()?)?.to_dtype(g.dtype())?;
            let count = m.sum(&dims_i, true)?;
            g.unsqueeze_dims(&d, keepdim)?.mul_t(&m.div(&count)?)
        }))
    }

    /// Maximum over `dims` (ties share the gradient).
    pub fn amax(&self, dims: &[isize], keepdim: bool) -> Result<Var> {
        self.extremum("amax", dims, keepdim, true)
    }

    /// Minimum over `dims` (ties share the gradient).
    pub fn amin(&self, dims: &[isize], keepdim: bool) -> Result<Var> {
        self.extremum("amin", dims, keepdim, false)
    }

    /// Maximum of all elements.
    pub fn max_all(&self) -> Result<Var> {
        self.amax(&[], false)
    }

    /// Minimum of all elements.
    pub fn min_all(&self) -> Result<Var> {
        self.amin(&[], false)
    }

    fn extremum_dim(&self, name: &'static str, dim: isize, keepdim: bool, max: bool) -> Result<(Var, Tensor)> {
        let (vals, idx) =
            if max { self.tensor().max_dim(dim, keepdim)? } else { self.tensor().min_dim(dim, keepdim)? };
        if self.rank() == 0 {
            return Ok((self.record_unary_grad_only(name, vals, |g| Ok(g.clone())), idx));
        }
        let d = self.tensor().layout().dim(name, dim)?;
        let idx_keep = if keepdim { idx.clone() } else { idx.unsqueeze(d as isize)? };
        let shape = self.dims().to_vec();
        let v = self.record_unary_grad_only(name, vals, move |g| {
            // One-hot of the chosen index along `d`, then the gradient where it is set.
            let n = shape[d];
            let mut ar_shape = vec![1usize; shape.len()];
            ar_shape[d] = n;
            let ar = Tensor::arange(0.0, n as f64, 1.0, DType::I64, g.device())?.reshape_to(ar_shape)?;
            let hot = ar.eq(&idx_keep)?;
            let gk = g.unsqueeze_dims(&[d], keepdim)?;
            let z = Var::from(Tensor::zeros((), g.dtype(), g.device())?);
            Var::where_cond(&hot, &gk, &z)
        });
        Ok((v, idx))
    }

    /// Maximum along `dim`: `(values, indices)`; the gradient goes to the index.
    pub fn max_dim(&self, dim: isize, keepdim: bool) -> Result<(Var, Tensor)> {
        self.extremum_dim("max", dim, keepdim, true)
    }

    /// Minimum along `dim`: `(values, indices)`.
    pub fn min_dim(&self, dim: isize, keepdim: bool) -> Result<(Var, Tensor)> {
        self.extremum_dim("min", dim, keepdim, false)
    }

    /// Index of the maximum along `dim` (not differentiable).
    pub fn argmax(&self, dim: isize, keepdim: bool) -> Result<Tensor> {
        self.tensor().argmax(dim, keepdim)
    }

    /// Index of the minimum along `dim` (not differentiable).
    pub fn argmin(&self, dim: isize, keepdim: bool) -> Result<Tensor> {
        self.tensor().argmin(dim, keepdim)
    }

    /// Reverse cumulative sum along `dim`: `out_i = sum_{j >= i} x_j`.
    fn rev_cumsum(&self, dim: isize) -> Result<Var> {
        self.sum(&[dim], true)?.sub(&self.cumsum(dim)?)?.add(self)
    }

    /// Cumulative sum along `dim`.
    pub fn cumsum(&self, dim: isize) -> Result<Var> {
        let out = self.tensor().cumsum(dim)?;
        if self.rank() == 0 {
            return Ok(self.record_unary_grad_only("cumsum", out, |g| Ok(g.clone())));
        }
        Ok(self.record_unary_grad_only("cumsum", out, move |g| g.rev_cumsum(dim)))
    }

    /// Cumulative product along `dim` (the gradient is exact with zeros too).
    pub fn cumprod(&self, dim: isize) -> Result<Var> {
        let out = self.tensor().cumprod(dim)?;
        if self.rank() == 0 {
            return Ok(self.record_unary_grad_only("cumprod", out, |g| Ok(g.clone())));
        }
        Ok(self.record_unary("cumprod", out, move |x, g| cumprod_backward(x, g, dim)))
    }
}

/// `d/dx_k sum_i g_i prod_{j<=i} x_j = sum_{i>=k} g_i prod_{j<=i, j!=k} x_j`.
/// Without zeros in `x` this is `rev_cumsum(g * out) / x`; with zeros it is summed
/// term by term with `x_k` replaced by 1 (no division, so exact).
fn cumprod_backward(x: &Var, g: &Var, dim: isize) -> Result<Var> {
    let has_zero = x.tensor().eq_scalar(0.0)?.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()? > 0.0;
    if !has_zero {
        return g.mul(&x.cumprod(dim)?)?.rev_cumsum(dim)?.div(x);
    }
    let d = x.tensor().layout().dim("cumprod", dim)?;
    let n = x.dims()[d];
    let shape = x.dims().to_vec();
    let mut total = g.zeros_like()?;
    for k in 0..n {
        let mut hot_shape = vec![1usize; x.rank()];
        hot_shape[d] = n;
        let hot: Vec<bool> = (0..n).map(|j| j == k).collect();
        let hot = Tensor::from_vec(hot, hot_shape)?.to_device(x.device())?;
        let xk1 = Var::where_cond(&hot, &Var::from(Tensor::ones((), x.dtype(), x.device())?), x)?;
        let p = xk1.cumprod(dim)?;
        // Only i >= k contributes.
        let gk = g.mul(&p)?.narrow(dim, k as isize, n - k)?.sum(&[dim], true)?;
        total = total.add(&gk.slice_embed(&shape, d, k, 1)?)?;
    }
    Ok(total)
}

/// The gradient of a product over the (sorted) dims `d`: the reduced dims are moved
/// last and merged into one of size `n`, where element `k` gets
/// `grad * prod_{j<k} x_j * prod_{j>k} x_j` (two cumulative products, no division).
fn prod_backward(x: &Var, g: &Var, d: &[usize]) -> Result<Var> {
    let r = x.rank();
    if r == 0 || d.is_empty() {
        return Ok(g.clone());
    }
    let kept: Vec<usize> = (0..r).filter(|i| !d.contains(i)).collect();
    let perm: Vec<isize> = kept.iter().chain(d).map(|&i| i as isize).collect();
    let n: usize = d.iter().map(|&i| x.dims()[i]).product();
    let mut flat: Vec<usize> = kept.iter().map(|&i| x.dims()[i]).collect();
    let mut g_shape = flat.clone();
    g_shape.push(1);
    flat.push(n);
    let y = x.permute(&perm)?.reshape_to(flat.clone())?;
    let others = if n == 0 {
        y.zeros_like()?
    } else {
        let mut one_shape = flat.clone();
        one_shape[r - d.len()] = 1;
        let ones = Var::ones(one_shape, x.dtype(), x.device())?;
        let left = Var::cat(&[ones.clone(), y.narrow(-1, 0, n - 1)?.cumprod(-1)?], -1)?;
        let right = Var::cat(&[y.narrow(-1, 1, n - 1)?.flip(&[-1])?.cumprod(-1)?.flip(&[-1])?, ones], -1)?;
        left.mul(&right)?
    };
    let gy = g.reshape_to(g_shape)?.mul(&others)?;
    let perm_shape: Vec<usize> = perm.iter().map(|&i| x.dims()[i as usize]).collect();
    let mut inv = vec![0isize; r];
    for (i, &p) in perm.iter().enumerate() {
        inv[p as usize] = i as isize;
    }
    gy.reshape_to(perm_shape)?.permute(&inv)
}
