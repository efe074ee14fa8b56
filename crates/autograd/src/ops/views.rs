//! View ops (reshape, permute, narrow/slice/select, squeeze/unsqueeze, expand, ...)
//! and their backwards. Expanding needs no backward of its own: the engine sums a
//! gradient back to its input's shape.

use tensor_core::shape::normalize_dim;
use tensor_core::{Result, Shape, Tensor};

use crate::var::Var;

impl Var {
    fn reshape_back(&self, name: &'static str, out: Tensor) -> Var {
        let shape: Vec<usize> = self.dims().to_vec();
        self.record_unary_grad_only(name, out, move |g| g.reshape_to(shape.clone()))
    }

    /// A view with a new shape (one dim may be `-1`).
    pub fn view(&self, shape: &[isize]) -> Result<Var> {
        let out = self.tensor().view(shape)?;
        Ok(self.reshape_back("view", out))
    }

    /// A tensor with a new shape (a view when possible).
    pub fn reshape(&self, shape: &[isize]) -> Result<Var> {
        let out = self.tensor().reshape(shape)?;
        Ok(self.reshape_back("reshape", out))
    }

    /// [`Var::reshape`] with unsigned sizes.
    pub fn reshape_to(&self, shape: impl Into<Shape>) -> Result<Var> {
        let s: Shape = shape.into();
        if s.dims() == self.dims() {
            return Ok(self.clone());
        }
        let out = self.tensor().reshape_to(s)?;
        Ok(self.reshape_back("reshape", out))
    }

    /// Merges dims `start..=end`.
    pub fn flatten(&self, start: isize, end: isize) -> Result<Var> {
        let out = self.tensor().flatten(start, end)?;
        Ok(self.reshape_back("flatten", out))
    }

    /// Splits dim `dim` into `sizes`.
    pub fn unflatten(&self, dim: isize, sizes: &[isize]) -> Result<Var> {
        let out = self.tensor().unflatten(dim, sizes)?;
        Ok(self.reshape_back("unflatten", out))
    }

    /// A contiguous version (the same variable when already contiguous).
    pub fn contiguous(&self) -> Result<Var> {
        if self.tensor().is_contiguous() {
            return Ok(self.clone());
        }
        let out = self.tensor().contiguous()?;
        Ok(self.record_unary_grad_only("contiguous", out, |g| Ok(g.clone())))
    }

    /// A fresh copy that shares no storage (PyTorch's `clone()`); gradient 1.
    pub fn copy(&self) -> Result<Var> {
        let out = self.tensor().copy()?;
        Ok(self.record_unary_grad_only("copy", out, |g| Ok(g.clone())))
    }

    /// Reorders dims.
    pub fn permute(&self, dims: &[isize]) -> Result<Var> {
        let out = self.tensor().permute(dims)?;
        let r = self.rank();
        let mut inv = vec![0isize; r];
        for (i, &d) in dims.iter().enumerate() {
            inv[normalize_dim("permute", d, r)?] = i as isize;
        }
        Ok(self.record_unary_grad_only("permute", out, move |g| g.permute(&inv)))
    }

    /// Swaps two dims.
    pub fn transpose(&self, a: isize, b: isize) -> Result<Var> {
        let out = self.tensor().transpose(a, b)?;
        Ok(self.record_unary_grad_only("transpose", out, move |g| g.transpose(a, b)))
    }

    /// Transpose of a tensor of rank <= 2.
    pub fn t(&self) -> Result<Var> {
        let out = self.tensor().t()?;
        Ok(self.record_unary_grad_only("t", out, |g| g.t()))
    }

    /// Transpose of the last two dims (PyTorch's `mT`).
    pub fn mt(&self) -> Result<Var> {
        self.transpose(-2, -1)
    }

    /// Places `self` (the gradient of a strided slice) into zeros of `shape` at
    /// `start, start + step, ...` along `dim`. Differentiable (its backward slices).
    pub(crate) fn slice_embed(&self, shape: &[usize], dim: usize, start: usize, step: usize) -> Result<Var> {
        let z = Tensor::zeros(shape.to_vec(), self.dtype(), self.device())?;
        let len = self.dims()[dim];
        // One past the last element taken (`start + len * step` can overflow when the
        // step is huge and one element is taken; this bound is inside the dim).
        let end = if len == 0 { start } else { start + (len - 1) * step + 1 };
        let dst = z.slice(dim as isize, Some(start as isize), Some(end as isize), step)?;
        dst.copy_(self.tensor())?;
        Ok(self.record_unary_grad_only("slice_backward", z, move |g| {
            g.slice(dim as isize, Some(start as isize), Some(end as isize), step)
        }))
    }

    /// `len` entries of `dim` from `start`.
    pub fn narrow(&self, dim: isize, start: isize, len: usize) -> Result<Var> {
        let out = self.tensor().narrow(dim, start, len)?;
        let d = normalize_dim("narrow", dim, self.rank())?;
        let size = self.dims()[d] as isize;
        let s = if start < 0 { start + size } else { start } as usize;
        let shape = self.dims().to_vec();
        Ok(self.record_unary_grad_only("narrow", out, move |g| g.slice_embed(&shape, d, s, 1)))
    }

    /// Python-style slice `start:end:step` of `dim`.
    pub fn slice(&self, dim: isize, start: Option<isize>, end: Option<isize>, step: usize) -> Result<Var> {
        let out = self.tensor().slice(dim, start, end, step)?;
        let d = normalize_dim("slice", dim, self.rank())?;
        let size = self.dims()[d] as isize;
        let v = start.unwrap_or(0);
        let s = (if v < 0 { v + size } else { v }).clamp(0, size) as usize;
        let shape = self.dims().to_vec();
        Ok(self.record_unary_grad_only("slice", out, move |g| g.slice_embed(&shape, d, s, step)))
    }

    /// Removes `dim` by taking entry `index`.
    pub fn select(&self, dim: isize, index: isize) -> Result<Var> {
        let out = self.tensor().select(dim, index)?;
        let d = normalize_dim("select", dim, self.rank())?;
        let size = self.dims()[d] as isize;
        let i = if index < 0 { index + size } else { index } as usize;
        let shape = self.dims().to_vec();
        Ok(self.record_unary_grad_only("select", out, move |g| g.unsqueeze(d as isize)?.slice_embed(&shape, d, i, 1)))
    }

    /// Inserts a size-1 dim.
    pub fn unsqueeze(&self, dim: isize) -> Result<Var> {
        let out = self.tensor().unsqueeze(dim)?;
        Ok(self.reshape_back("unsqueeze", out))
    }

    /// Removes `dim` if it has size 1.
    pub fn squeeze(&self, dim: isize) -> Result<Var> {
        let out = self.tensor().squeeze(dim)?;
        Ok(self.reshape_back("squeeze", out))
    }

    /// Removes every size-1 dim (cannot fail, as [`Tensor::squeeze_all`]).
    pub fn squeeze_all(&self) -> Var {
        let out = self.tensor().squeeze_all();
        self.reshape_back("squeeze", out)
    }

    /// Broadcasts to `shape` without copying (`-1` keeps a size).
    pub fn expand(&self, shape: &[isize]) -> Result<Var> {
        let out = self.tensor().expand(shape)?;
        Ok(self.record_unary_grad_only("expand", out, |g| Ok(g.clone())))
    }

    /// Broadcasts to `shape`.
    pub fn broadcast_to(&self, shape: impl Into<Shape>) -> Result<Var> {
        let out = self.tensor().broadcast_to(shape)?;
        Ok(self.record_unary_grad_only("expand", out, |g| Ok(g.clone())))
    }

    /// Broadcasts to `other`'s shape.
    pub fn expand_as(&self, other: &Var) -> Result<Var> {
        self.broadcast_to(other.shape().clone())
    }

    /// Sums a broadcast gradient back to `shape` (leading dims, then size-1 dims);
    /// the inverse of broadcasting `shape` to `self`'s shape.
    pub fn sum_to(&self, shape: &[usize]) -> Result<Var> {
        if self.dims() == shape {
            return Ok(self.clone());
        }
        let r = self.rank();
        if shape.len() > r {
            return Err(tensor_core::Error::shape("sum_to", self.dims(), shape, "target has more dims"));
        }
        let lead = r - shape.len();
        let mut dims: Vec<isize> = (0..lead as isize).collect();
        for (i, &s) in shape.iter().enumerate() {
            let d = self.dims()[lead + i];
            if s == 1 && d != 1 {
                dims.push((lead + i) as isize);
            } else if s != d {
                return Err(tensor_core::Error::shape("sum_to", self.dims(), shape, "shapes are not broadcastable"));
            }
        }
        let s = if dims.is_empty() { self.clone() } else { self.sum(&dims, true)? };
        s.reshape_to(shape.to_vec())
    }
}

/// Storage positions of every element of a view, in row-major order.
fn storage_positions(dims: &[usize], strides: &[usize], offset: usize) -> Vec<usize> {
    let n: usize = dims.iter().product();
    let mut out = Vec::with_capacity(n);
    let mut idx = vec![0usize; dims.len()];
    for _ in 0..n {
        out.push(offset + idx.iter().zip(strides).map(|(i, s)| i * s).sum::<usize>());
        for d in (0..dims.len()).rev() {
            idx[d] += 1;
            if idx[d] < dims[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    out
}

impl Var {
    /// A view with explicit sizes, strides and storage offset (PyTorch's
    /// `as_strided`, on this variable's storage). Elements read more than once get
    /// the sum of their gradients. Differentiable only when every element of the
    /// view is an element of `self` (it is for a contiguous `self`).
    pub fn as_strided(&self, shape: &[usize], strides: &[usize], offset: usize) -> Result<Var> {
        let out = self.tensor().as_strided(shape, strides, offset)?;
        if !self.requires_grad() || !out.dtype().is_float() {
            return Ok(Var::from(out));
        }
        let l = self.tensor().layout();
        let mine = storage_positions(self.dims(), l.strides(), l.offset());
        let flat: std::collections::HashMap<usize, i64> =
            mine.iter().enumerate().map(|(i, &p)| (p, i as i64)).collect();
        let picked = storage_positions(shape, strides, offset)
            .into_iter()
            .map(|p| {
                flat.get(&p).copied().ok_or_else(|| {
                    tensor_core::Error::arg(
                        "as_strided",
                        format!("storage element {p} of the view is not an element of the input; differentiate through a contiguous copy"),
                    )
                })
            })
            .collect::<Result<Vec<i64>>>()?;
        let n = picked.len();
        let idx = Tensor::from_vec(picked, [n])?.to_device(self.device())?;
        let numel = self.numel();
        let in_shape = self.dims().to_vec();
        Ok(self.record_unary_grad_only("as_strided", out, move |g| {
            Var::zeros([numel], g.dtype(), g.device())?
                .scatter_add(0, &idx, &g.reshape_to([n])?)?
                .reshape_to(in_shape.clone())
        }))
    }
}
