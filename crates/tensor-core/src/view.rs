//! View ops: new layouts over the same storage, no data copied (except
//! `contiguous`/`reshape` when the strides leave no choice).

use crate::shape::{normalize_dim, Dims, Shape};
use crate::{Error, Layout, Result, Tensor};

/// Resolves a shape with at most one `-1` against `numel`.
fn infer_shape(op: &'static str, from: &[usize], shape: &[isize]) -> Result<Vec<usize>> {
    let numel: usize = from.iter().product();
    let mut infer = None;
    for (i, &d) in shape.iter().enumerate() {
        if d == -1 {
            if infer.is_some() {
                return Err(Error::arg(op, "only one dimension can be inferred"));
            }
            infer = Some(i);
        } else if d < 0 {
            return Err(Error::arg(op, format!("invalid shape dimension {d}")));
        }
    }
    let mut out: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
    // The product of the known sizes; `None` when it overflows (then it can't match).
    let known = if out.iter().enumerate().any(|(i, &d)| d == 0 && Some(i) != infer) {
        Some(0)
    } else {
        out.iter().enumerate().filter(|&(i, _)| Some(i) != infer).try_fold(1usize, |acc, (_, &d)| acc.checked_mul(d))
    };
    match (infer, known) {
        (Some(i), Some(k)) if k != 0 && numel.is_multiple_of(k) => out[i] = numel / k,
        (None, Some(k)) if k == numel => {}
        _ => return Err(Error::shape(op, from, &out, format!("shape {shape:?} is invalid for input of size {numel}"))),
    }
    Ok(out)
}

impl Tensor {
    /// A view with a new shape (one dim may be `-1`); fails on non-viewable strides
    /// with an error that suggests `reshape`.
    pub fn view(&self, shape: &[isize]) -> Result<Tensor> {
        let s = infer_shape("view", self.dims(), shape)?;
        match self.layout().reshape_view(&s) {
            Some(l) => Ok(self.with_layout(l)),
            None => Err(Error::shape(
                "view",
                self.dims(),
                &s,
                format!(
                    "view size is not compatible with input tensor's size and stride {:?} (at least one dimension spans across two contiguous subspaces); use .reshape(...) instead",
                    self.strides()
                ),
            )),
        }
    }

    /// A tensor with a new shape (one dim may be `-1`): a view when the strides allow,
    /// else a contiguous copy.
    ///
    /// ```
    /// use tensor_core::{DType, Device, Tensor};
    /// let t = Tensor::arange(0.0, 6.0, 1.0, DType::F32, &Device::cpu())?;
    /// assert_eq!(t.reshape(&[2, -1])?.dims(), &[2, 3]);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn reshape(&self, shape: &[isize]) -> Result<Tensor> {
        let s = infer_shape("reshape", self.dims(), shape)?;
        match self.layout().reshape_view(&s) {
            Some(l) => Ok(self.with_layout(l)),
            None => Ok(self.contiguous()?.with_layout(Layout::contiguous(Shape::new(&s)))),
        }
    }

    /// [`Tensor::reshape`] with unsigned sizes.
    pub fn reshape_to(&self, shape: impl Into<Shape>) -> Result<Tensor> {
        let s: Shape = shape.into();
        let v: smallvec::SmallVec<[isize; 6]> = s.iter().map(|&d| d as isize).collect();
        self.reshape(&v)
    }

    /// A contiguous tensor with the same values (self when already contiguous).
    pub fn contiguous(&self) -> Result<Tensor> {
        if self.is_contiguous() {
            return Ok(self.clone());
        }
        self.copy()
    }

    /// A fresh contiguous copy, never sharing storage (PyTorch's `clone()`).
    pub fn copy(&self) -> Result<Tensor> {
        let shape = self.shape().clone();
        self.run1(shape, |be, b, l| {
            let mut out = be.zeros(b.dtype(), l.numel())?;
            be.copy_strided(b, l, &mut *out, &Layout::contiguous(l.shape().clone()))?;
            Ok(out)
        })
    }

    /// Reorders dims (negative dims allowed).
    pub fn permute(&self, dims: &[isize]) -> Result<Tensor> {
        let r = self.rank();
        let perm = dims.iter().map(|&d| normalize_dim("permute", d, r)).collect::<Result<Vec<_>>>()?;
        Ok(self.with_layout(self.layout().permute(&perm)?))
    }

    /// Swaps two dims.
    pub fn transpose(&self, a: isize, b: isize) -> Result<Tensor> {
        if self.rank() == 0 {
            // PyTorch allows transpose(0, 0)-style calls on scalars.
            normalize_dim("transpose", a, 1)?;
            normalize_dim("transpose", b, 1)?;
            return Ok(self.clone());
        }
        let a = self.layout().dim("transpose", a)?;
        let b = self.layout().dim("transpose", b)?;
        Ok(self.with_layout(self.layout().transpose(a, b)))
    }

    /// Transpose of a tensor of rank <= 2 (PyTorch's `t()`).
    pub fn t(&self) -> Result<Tensor> {
        match self.rank() {
            0 | 1 => Ok(self.clone()),
            2 => self.transpose(0, 1),
            r => Err(Error::arg("t", format!("t() expects a tensor with <= 2 dimensions, but self is {r}D"))),
        }
    }

    /// `len` entries of dim `dim` starting at `start` (negative start counts from the end).
    pub fn narrow(&self, dim: isize, start: isize, len: usize) -> Result<Tensor> {
        let d = self.layout().dim("narrow", dim)?;
        let size = self.dims()[d];
        let s = if start < 0 { start + size as isize } else { start };
        if s < 0 || (s as usize).checked_add(len).is_none_or(|e| e > size) {
            let index = (start as i64).saturating_add(i64::try_from(len).unwrap_or(i64::MAX));
            return Err(Error::IndexOutOfRange { op: "narrow", index, dim: d, size });
        }
        Ok(self.with_layout(self.layout().narrow(d, s as usize, len)))
    }

    /// Python-style slice `start:end:step` of dim `dim`: negative indices count from
    /// the end, out-of-range bounds are clamped, `None` means the natural bound.
    ///
    /// ```
    /// use tensor_core::Tensor;
    /// let t = Tensor::new(&[0i64, 1, 2, 3, 4, 5]);
    /// assert_eq!(t.slice(0, Some(1), Some(-1), 2)?.to_vec::<i64>()?, vec![1, 3]);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn slice(&self, dim: isize, start: Option<isize>, end: Option<isize>, step: usize) -> Result<Tensor> {
        if step == 0 {
            return Err(Error::arg("slice", "slice step must be positive"));
        }
        let d = self.layout().dim("slice", dim)?;
        let size = self.dims()[d] as isize;
        let clamp = |v: isize| -> isize {
            let v = if v < 0 { v + size } else { v };
            v.clamp(0, size)
        };
        let s = clamp(start.unwrap_or(0));
        let e = clamp(end.unwrap_or(size)).max(s);
        let len = ((e - s) as usize).div_ceil(step);
        Ok(self.with_layout(self.layout().slice_step(d, s as usize, len, step)))
    }

    /// Removes dim `dim` by taking index `index` (negative counts from the end).
    pub fn select(&self, dim: isize, index: isize) -> Result<Tensor> {
        let d = self.layout().dim("select", dim)?;
        let size = self.dims()[d];
        let i = if index < 0 { index + size as isize } else { index };
        if i < 0 || i as usize >= size {
            return Err(Error::IndexOutOfRange { op: "select", index: index as i64, dim: d, size });
        }
        Ok(self.with_layout(self.layout().select(d, i as usize)))
    }

    /// Inserts a size-1 dim at `dim` (in `[-rank-1, rank]`).
    pub fn unsqueeze(&self, dim: isize) -> Result<Tensor> {
        let d = normalize_dim("unsqueeze", dim, self.rank() + 1)?;
        Ok(self.with_layout(self.layout().unsqueeze(d)))
    }

    /// Removes dim `dim` if it has size 1 (otherwise returns the tensor unchanged,
    /// like PyTorch).
    pub fn squeeze(&self, dim: isize) -> Result<Tensor> {
        if self.rank() == 0 {
            normalize_dim("squeeze", dim, 1)?;
            return Ok(self.clone());
        }
        let d = self.layout().dim("squeeze", dim)?;
        if self.dims()[d] != 1 {
            return Ok(self.clone());
        }
        Ok(self.with_layout(self.layout().squeeze(d)))
    }

    /// Removes every size-1 dim.
    pub fn squeeze_all(&self) -> Tensor {
        let mut l = self.layout().clone();
        for d in (0..l.rank()).rev() {
            if l.dims()[d] == 1 {
                l = l.squeeze(d);
            }
        }
        self.with_layout(l)
    }

    /// Broadcasts to `shape` without copying (size-1 and new leading dims get stride 0).
    /// A `-1` keeps the existing size.
    pub fn expand(&self, shape: &[isize]) -> Result<Tensor> {
        let r = shape.len();
        if r < self.rank() {
            let s: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
            return Err(Error::shape(
                "expand",
                self.dims(),
                &s,
                "the number of sizes provided must be >= the tensor's rank",
            ));
        }
        let extra = r - self.rank();
        let mut s: Dims = Dims::with_capacity(r);
        for (i, &d) in shape.iter().enumerate() {
            if d == -1 {
                if i < extra {
                    return Err(Error::arg("expand", "-1 is not allowed in a leading, non-existing dimension"));
                }
                s.push(self.dims()[i - extra]);
            } else if d < 0 {
                return Err(Error::arg("expand", format!("invalid size {d}")));
            } else {
                s.push(d as usize);
            }
        }
        if s.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).is_none() {
            return Err(Error::arg("expand", format!("the number of elements of {s:?} overflows")));
        }
        Ok(self.with_layout(self.layout().broadcast_to(&s)?))
    }

    /// Broadcasts to `shape` without copying.
    pub fn broadcast_to(&self, shape: impl Into<Shape>) -> Result<Tensor> {
        let s: Shape = shape.into();
        Ok(self.with_layout(self.layout().broadcast_to(&s)?))
    }

    /// Broadcasts to `other`'s shape.
    pub fn expand_as(&self, other: &Tensor) -> Result<Tensor> {
        self.broadcast_to(other.shape().clone())
    }

    /// Merges dims `start..=end` into one (a view when possible).
    pub fn flatten(&self, start: isize, end: isize) -> Result<Tensor> {
        if self.rank() == 0 {
            // A 0-dim tensor accepts dims 0 and -1, and flattens to shape [1].
            normalize_dim("flatten", start, 1)?;
            normalize_dim("flatten", end, 1)?;
            return self.reshape(&[1]);
        }
        let s = self.layout().dim("flatten", start)?;
        let e = self.layout().dim("flatten", end)?;
        if s > e {
            return Err(Error::arg("flatten", "start_dim cannot come after end_dim"));
        }
        let mut shape: Vec<isize> = self.dims()[..s].iter().map(|&d| d as isize).collect();
        shape.push(self.dims()[s..=e].iter().product::<usize>() as isize);
        shape.extend(self.dims()[e + 1..].iter().map(|&d| d as isize));
        self.reshape(&shape)
    }

    /// Splits dim `dim` into `sizes` (one may be `-1`).
    pub fn unflatten(&self, dim: isize, sizes: &[isize]) -> Result<Tensor> {
        let d = self.layout().dim("unflatten", dim)?;
        let inner = infer_shape("unflatten", &[self.dims()[d]], sizes)?;
        let mut shape: Vec<isize> = self.dims()[..d].iter().map(|&x| x as isize).collect();
        shape.extend(inner.iter().map(|&x| x as isize));
        shape.extend(self.dims()[d + 1..].iter().map(|&x| x as isize));
        self.reshape(&shape)
    }

    /// A view with explicit sizes, strides and storage offset (PyTorch's
    /// `as_strided`). Fails if the view would reach outside the storage.
    pub fn as_strided(&self, shape: &[usize], strides: &[usize], offset: usize) -> Result<Tensor> {
        if shape.len() != strides.len() {
            return Err(Error::arg("as_strided", "shape and strides must have the same length"));
        }
        if shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).is_none() {
            return Err(Error::invalid_shape("as_strided", shape, "the number of elements overflows usize"));
        }
        let l = self.layout().as_strided(shape, strides, offset);
        l.check_fits("as_strided", self.storage().read().len())?;
        Ok(self.with_layout(l))
    }
}
