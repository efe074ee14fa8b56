//! Indexing and joining: gather/scatter and their `index_*` forms, `masked_select`,
//! `cat`/`stack`, `split`/`chunk`, `repeat`, `flip`, `roll`, `tril`/`triu`,
//! `one_hot`, `sort`/`argsort`/`topk`.
//!
//! The backend offers only `gather`, `scatter(accumulate)` and `sort`; every op here
//! is composed from those, views and copies. Indices are checked on this layer
//! (backends trust them): like PyTorch, gather/scatter/index ops take indices in
//! `[0, size)` and report anything else as [`Error::IndexOutOfRange`].

use std::borrow::Borrow;

use crate::device::{lock_in_order, Access};
use crate::shape::{broadcast_shapes, normalize_dim, normalize_dim_scalar_ok};
use crate::{DType, Error, Result, Scalar, Shape, Tensor};

/// Fails unless `index` holds I64 values.
fn check_i64(op: &'static str, index: &Tensor) -> Result<()> {
    if index.dtype() != DType::I64 {
        return Err(Error::DTypeMismatch { op, expected: DType::I64, got: index.dtype() });
    }
    Ok(())
}

/// Fails unless every value of the I64 tensor `index` lies in `[0, size)`, naming
/// the first bound broken (checked with two reductions, so it runs on the device).
fn check_range(op: &'static str, index: &Tensor, dim: usize, size: usize) -> Result<()> {
    if index.numel() == 0 {
        return Ok(());
    }
    let max = index.amax(&[], false)?.item()?.to_i64();
    if max >= size as i64 {
        return Err(Error::IndexOutOfRange { op, index: max, dim, size });
    }
    let min = index.amin(&[], false)?.item()?.to_i64();
    if min < 0 {
        return Err(Error::IndexOutOfRange { op, index: min, dim, size });
    }
    Ok(())
}

/// A 0-dim tensor seen as 1-D (PyTorch treats scalars as vectors of one element
/// in gather/scatter).
fn as_1d(t: &Tensor) -> Result<Tensor> {
    if t.rank() == 0 {
        t.reshape(&[1])
    } else {
        Ok(t.clone())
    }
}

/// Fails when this view has overlapping elements (a broadcast view).
fn check_writable(op: &'static str, t: &Tensor) -> Result<()> {
    if t.strides().iter().zip(t.dims()).any(|(&s, &d)| s == 0 && d > 1) {
        return Err(Error::arg(
            op,
            "more than one element of the written-to tensor refers to a single memory location; clone() it first",
        ));
    }
    Ok(())
}

/// `index` reshaped to size 1 everywhere but `dim`, then broadcast (stride 0) to
/// `shape`: the gather/scatter index that selects whole slices.
fn slice_index(index: &Tensor, dim: usize, shape: &[usize]) -> Result<Tensor> {
    let mut s = vec![1usize; shape.len()];
    s[dim] = index.numel();
    index.reshape_to(s)?.broadcast_to(shape.to_vec())
}

impl Tensor {
    /// The backend gather, on inputs already checked (same rank >= 1, index I64 in range).
    fn gather_unchecked(&self, dim: usize, index: &Tensor) -> Result<Tensor> {
        if index.numel() == 0 {
            return Tensor::zeros(index.shape().clone(), self.dtype(), self.device());
        }
        let shape = index.shape().clone();
        self.run2(index, shape, |be, b, l, ib, index_layout| be.gather(b, l, ib, index_layout, dim))
    }

    /// The backend scatter into `self` in place, on inputs already checked: `index`
    /// and `src` have the same shape, `src` has `self`'s dtype.
    fn scatter_unchecked(&self, dim: usize, index: &Tensor, src: &Tensor, accumulate: bool) -> Result<()> {
        if index.numel() == 0 {
            return Ok(());
        }
        // Never read from the storage being written.
        let src = if src.same_storage(self) { src.copy()? } else { src.clone() };
        let index = if index.same_storage(self) { index.copy()? } else { index.clone() };
        let [mut d, gi, gs] = lock_in_order([
            (&**self.storage(), Access::Write),
            (&**index.storage(), Access::Read),
            (&**src.storage(), Access::Read),
        ]);
        let d = d.as_mut().expect("locked for writing");
        self.device().backend().scatter(
            &mut **d,
            self.layout(),
            &**gi,
            index.layout(),
            &**gs,
            src.layout(),
            dim,
            accumulate,
        )
    }

    /// Values of `self` along `dim` picked by `index`: for `dim = 1`,
    /// `out[i][j][k] = self[i][index[i][j][k]][k]` (PyTorch's `torch.gather`).
    ///
    /// `index` is I64 with `self`'s rank and sizes no larger than `self`'s outside
    /// `dim`; the output has `index`'s shape.
    ///
    /// ```
    /// use tensor_core::Tensor;
    /// let t = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], [2, 2])?;
    /// let i = Tensor::from_vec(vec![0i64, 0, 1, 0], [2, 2])?;
    /// assert_eq!(t.gather(1, &i)?.to_vec2::<f32>()?, vec![vec![1.0, 1.0], vec![4.0, 3.0]]);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn gather(&self, dim: isize, index: &Tensor) -> Result<Tensor> {
        const OP: &str = "gather";
        self.same_device(OP, index)?;
        check_i64(OP, index)?;
        let x = as_1d(self)?;
        let d = normalize_dim(OP, dim, x.rank())?;
        let idx = as_1d(index)?;
        if idx.rank() != x.rank() {
            return Err(Error::shape(
                OP,
                self.dims(),
                index.dims(),
                "index must have the same number of dims as input",
            ));
        }
        for (i, (&ni, &nx)) in idx.dims().iter().zip(x.dims()).enumerate() {
            if i != d && ni > nx {
                return Err(Error::shape(
                    OP,
                    self.dims(),
                    index.dims(),
                    format!("size of index ({ni}) exceeds the input's ({nx}) at dim {i}"),
                ));
            }
        }
        check_range(OP, &idx, d, x.dims()[d])?;
        x.gather_unchecked(d, &idx)?.reshape_to(index.shape().clone())
    }

    /// Checks the arguments of a scatter into `self` and runs it in place.
    fn scatter_checked(
        &self,
        op: &'static str,
        dim: isize,
        index: &Tensor,
        src: &Tensor,
        accumulate: bool,
    ) -> Result<()> {
        self.same_device(op, index)?;
        self.same_device(op, src)?;
        check_i64(op, index)?;
        if src.dtype() != self.dtype() {
            return Err(Error::DTypeMismatch { op, expected: self.dtype(), got: src.dtype() });
        }
        check_writable(op, self)?;
        let x = as_1d(self)?;
        let d = normalize_dim(op, dim, x.rank())?;
        let (idx, s) = (as_1d(index)?, as_1d(src)?);
        if idx.rank() != x.rank() || s.rank() != x.rank() {
            return Err(Error::shape(
                op,
                index.dims(),
                src.dims(),
                format!("index and src must have the same number of dims as self ({})", self.rank()),
            ));
        }
        for (i, ((&ni, &ns), &nx)) in idx.dims().iter().zip(s.dims()).zip(x.dims()).enumerate() {
            if ni > ns {
                return Err(Error::shape(
                    op,
                    index.dims(),
                    src.dims(),
                    format!("size of index ({ni}) exceeds src's ({ns}) at dim {i}"),
                ));
            }
            if i != d && ni > nx {
                return Err(Error::shape(
                    op,
                    index.dims(),
                    self.dims(),
                    format!("size of index ({ni}) exceeds self's ({nx}) at dim {i}"),
                ));
            }
        }
        check_range(op, &idx, d, x.dims()[d])?;
        // Only src's leading corner of index's shape takes part.
        let mut sv = s;
        for (i, &n) in idx.dims().iter().enumerate() {
            sv = sv.narrow(i as isize, 0, n)?;
        }
        x.scatter_unchecked(d, &idx, &sv, accumulate)
    }

    /// In place: `self[index[i][j]][j] = src[i][j]` for `dim = 0`, likewise for other
    /// dims (PyTorch's `Tensor.scatter_`). With duplicate indices the last write wins
    /// on the CPU (unspecified in general, as in PyTorch).
    pub fn scatter_(&self, dim: isize, index: &Tensor, src: &Tensor) -> Result<()> {
        self.scatter_checked("scatter_", dim, index, src, false)
    }

    /// In place: `self[index[i][j]][j] += src[i][j]` for `dim = 0` (duplicates add up).
    pub fn scatter_add_(&self, dim: isize, index: &Tensor, src: &Tensor) -> Result<()> {
        self.scatter_checked("scatter_add_", dim, index, src, true)
    }

    /// Out-of-place [`Tensor::scatter_`]: a copy of `self` with `src` scattered in.
    ///
    /// ```
    /// use tensor_core::{DType, Device, Tensor};
    /// let z = Tensor::zeros([3], DType::F32, &Device::cpu())?;
    /// let i = Tensor::new(&[2i64, 0]);
    /// let s = Tensor::new(&[5.0f32, 7.0]);
    /// assert_eq!(z.scatter(0, &i, &s)?.to_vec::<f32>()?, vec![7.0, 0.0, 5.0]);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn scatter(&self, dim: isize, index: &Tensor, src: &Tensor) -> Result<Tensor> {
        let out = self.copy()?;
        out.scatter_checked("scatter", dim, index, src, false)?;
        Ok(out)
    }

    /// Out-of-place [`Tensor::scatter_add_`].
    ///
    /// ```
    /// use tensor_core::{DType, Device, Tensor};
    /// let z = Tensor::zeros([3], DType::F32, &Device::cpu())?;
    /// let i = Tensor::new(&[2i64, 0, 2]);
    /// let s = Tensor::new(&[1.0f32, 2.0, 3.0]);
    /// assert_eq!(z.scatter_add(0, &i, &s)?.to_vec::<f32>()?, vec![2.0, 0.0, 4.0]);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn scatter_add(&self, dim: isize, index: &Tensor, src: &Tensor) -> Result<Tensor> {
        let out = self.copy()?;
        out.scatter_checked("scatter_add", dim, index, src, true)?;
        Ok(out)
    }

    /// Checks a vector of indices for the `index_*` ops: I64 (or I32, cast), at most
    /// 1-D; returns it as I64 of shape `[n]`.
    fn index_vector(&self, op: &'static str, index: &Tensor) -> Result<Tensor> {
        self.same_device(op, index)?;
        let idx = match index.dtype() {
            DType::I64 => index.clone(),
            DType::I32 => index.to_dtype(DType::I64)?,
            got => return Err(Error::DTypeMismatch { op, expected: DType::I64, got }),
        };
        if idx.rank() > 1 {
            return Err(Error::shape(op, self.dims(), index.dims(), "index must be a vector (at most 1-D)"));
        }
        idx.reshape(&[-1])
    }

    /// The slices of `self` along `dim` listed by the vector `index` (I64 or I32),
    /// in that order: the output has `index.numel()` entries along `dim`
    /// (PyTorch's `index_select`).
    ///
    /// ```
    /// use tensor_core::Tensor;
    /// let t = Tensor::from_vec(vec![1i64, 2, 3, 4, 5, 6], [3, 2])?;
    /// let r = t.index_select(0, &Tensor::new(&[2i64, 0, 2]))?;
    /// assert_eq!(r.to_vec2::<i64>()?, vec![vec![5, 6], vec![1, 2], vec![5, 6]]);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn index_select(&self, dim: isize, index: &Tensor) -> Result<Tensor> {
        const OP: &str = "index_select";
        let idx = self.index_vector(OP, index)?;
        let x = as_1d(self)?;
        let d = normalize_dim(OP, dim, x.rank())?;
        if self.rank() == 0 && idx.numel() != 1 {
            return Err(Error::shape(OP, self.dims(), index.dims(), "a 0-dim input takes exactly one index"));
        }
        check_range(OP, &idx, d, x.dims()[d])?;
        let mut shape = x.dims().to_vec();
        shape[d] = idx.numel();
        let ie = slice_index(&idx, d, &shape)?;
        let out = x.gather_unchecked(d, &ie)?;
        if self.rank() == 0 {
            out.reshape(&[])
        } else {
            Ok(out)
        }
    }

    /// In place: adds `alpha * source` into the slices of `self` along `dim` listed
    /// by `index` (`self[.., index[i], ..] += alpha * source[.., i, ..]`; duplicate
    /// indices add up). `source` has `self`'s dtype and shape except `index.numel()`
    /// entries along `dim`.
    pub fn index_add_(&self, dim: isize, index: &Tensor, source: &Tensor, alpha: impl Into<Scalar>) -> Result<()> {
        self.index_add_impl("index_add_", dim, index, source, alpha.into())
    }

    /// Out-of-place [`Tensor::index_add_`].
    ///
    /// ```
    /// use tensor_core::{DType, Device, Tensor};
    /// let z = Tensor::zeros([3], DType::F32, &Device::cpu())?;
    /// let r = z.index_add(0, &Tensor::new(&[1i64, 1, 2]), &Tensor::new(&[1.0f32, 2.0, 3.0]), 2.0)?;
    /// assert_eq!(r.to_vec::<f32>()?, vec![0.0, 6.0, 6.0]);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn index_add(&self, dim: isize, index: &Tensor, source: &Tensor, alpha: impl Into<Scalar>) -> Result<Tensor> {
        let out = self.copy()?;
        out.index_add_impl("index_add", dim, index, source, alpha.into())?;
        Ok(out)
    }

    fn index_add_impl(
        &self,
        op: &'static str,
        dim: isize,
        index: &Tensor,
        source: &Tensor,
        alpha: Scalar,
    ) -> Result<()> {
        let idx = self.index_vector(op, index)?;
        self.same_device(op, source)?;
        if source.dtype() != self.dtype() {
            return Err(Error::DTypeMismatch { op, expected: self.dtype(), got: source.dtype() });
        }
        check_writable(op, self)?;
        let x = as_1d(self)?;
        let d = normalize_dim(op, dim, x.rank())?;
        let src = as_1d(source)?;
        let mut want = x.dims().to_vec();
        want[d] = idx.numel();
        if src.dims() != want.as_slice() {
            return Err(Error::shape(
                op,
                self.dims(),
                source.dims(),
                format!("source must have shape {want:?} (self's, with the index's length along dim {d})"),
            ));
        }
        check_range(op, &idx, d, x.dims()[d])?;
        let src = if alpha.to_f64() == 1.0 { src } else { src.mul_scalar(alpha)?.to_dtype(self.dtype())? };
        let ie = slice_index(&idx, d, &want)?;
        x.scatter_unchecked(d, &ie, &src, true)
    }

    /// The elements of `self` where the Bool `mask` (broadcast with `self`) is true,
    /// in row-major order, as a 1-D tensor.
    ///
    /// ```
    /// use tensor_core::Tensor;
    /// let t = Tensor::from_vec(vec![1i64, 2, 3, 4], [2, 2])?;
    /// let m = Tensor::new(&[true, false]);
    /// assert_eq!(t.masked_select(&m)?.to_vec::<i64>()?, vec![1, 3]);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn masked_select(&self, mask: &Tensor) -> Result<Tensor> {
        const OP: &str = "masked_select";
        self.same_device(OP, mask)?;
        if mask.dtype() != DType::Bool {
            return Err(Error::DTypeMismatch { op: OP, expected: DType::Bool, got: mask.dtype() });
        }
        let s = broadcast_shapes(OP, self.dims(), mask.dims())?;
        if s.numel() == 0 {
            return Tensor::zeros([0], self.dtype(), self.device());
        }
        let x = self.broadcast_to(s.clone())?.reshape(&[-1])?;
        let m = mask.broadcast_to(s)?.reshape(&[-1])?;
        // Each selected element goes to its rank among the selected ones; the others
        // all go to one spare slot past the end, dropped afterwards.
        let pos = m.to_dtype(DType::I64)?.cumsum(0)?;
        let n = pos.numel();
        let total = pos.narrow(0, n as isize - 1, 1)?.item()?.to_i64();
        let spare = Tensor::scalar_on(total, DType::I64, self.device())?;
        let target = Tensor::where_cond(&m, &pos.add_scalar(-1i64)?, &spare)?;
        let out = Tensor::zeros([total as usize + 1], self.dtype(), self.device())?;
        out.scatter_unchecked(0, &target, &x, false)?;
        out.narrow(0, 0, total as usize)
    }

    /// Concatenates tensors along `dim` (PyTorch's `torch.cat`): all must have the
    /// same rank and sizes outside `dim`; the result takes the promoted dtype.
    /// As in PyTorch, 1-D empty tensors (shape `[0]`) are skipped whatever their rank.
    ///
    /// ```
    /// use tensor_core::Tensor;
    /// let a = Tensor::from_vec(vec![1.0f32, 2.0], [1, 2])?;
    /// let b = Tensor::from_vec(vec![3i64, 4, 5, 6], [2, 2])?;
    /// let c = Tensor::cat(&[&a, &b], 0)?;
    /// assert_eq!(c.to_vec2::<f32>()?, vec![vec![1.0, 2.0], vec![3.0, 4.0], vec![5.0, 6.0]]);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn cat<T: Borrow<Tensor>>(tensors: &[T], dim: isize) -> Result<Tensor> {
        const OP: &str = "cat";
        let first = match tensors.first() {
            Some(t) => t.borrow(),
            None => return Err(Error::arg(OP, "expected a non-empty list of tensors")),
        };
        let mut dtype = first.dtype();
        for (i, t) in tensors.iter().enumerate() {
            let t = t.borrow();
            first.same_device(OP, t)?;
            if t.rank() == 0 {
                return Err(Error::arg(
                    OP,
                    format!("zero-dimensional tensor (at position {i}) cannot be concatenated"),
                ));
            }
            dtype = DType::promote(dtype, t.dtype());
        }
        let legacy_empty = |t: &Tensor| t.dims() == [0];
        let parts: Vec<&Tensor> = tensors.iter().map(|t| t.borrow()).filter(|t| !legacy_empty(t)).collect();
        let Some(reference) = parts.first() else {
            return Tensor::zeros([0], dtype, first.device());
        };
        let d = normalize_dim(OP, dim, reference.rank())?;
        let mut shape = reference.dims().to_vec();
        shape[d] = 0;
        for (i, t) in parts.iter().enumerate() {
            let same = t.rank() == reference.rank()
                && t.dims().iter().zip(reference.dims()).enumerate().all(|(j, (a, b))| j == d || a == b);
            if !same {
                return Err(Error::shape(
                    OP,
                    reference.dims(),
                    t.dims(),
                    format!("sizes of tensors must match except in dimension {d} (tensor {i} differs)"),
                ));
            }
            shape[d] = crate::create::add_size(OP, reference.dims(), shape[d], t.dims()[d])?;
        }
        crate::create::checked_alloc(OP, &shape, dtype)?;
        let out = Tensor::zeros(shape, dtype, first.device())?;
        let mut at = 0usize;
        for t in parts {
            let n = t.dims()[d];
            if n > 0 {
                out.narrow(d as isize, at as isize, n)?.copy_(t)?;
            }
            at += n;
        }
        Ok(out)
    }

    /// Stacks same-shape tensors along a new dim `dim` (in `[-rank-1, rank]`),
    /// promoting dtypes like [`Tensor::cat`].
    ///
    /// ```
    /// use tensor_core::Tensor;
    /// let s = Tensor::stack(&[Tensor::new(&[1i64, 2]), Tensor::new(&[3i64, 4])], 1)?;
    /// assert_eq!(s.to_vec2::<i64>()?, vec![vec![1, 3], vec![2, 4]]);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn stack<T: Borrow<Tensor>>(tensors: &[T], dim: isize) -> Result<Tensor> {
        const OP: &str = "stack";
        let first = match tensors.first() {
            Some(t) => t.borrow(),
            None => return Err(Error::arg(OP, "expected a non-empty list of tensors")),
        };
        let d = normalize_dim(OP, dim, first.rank() + 1)?;
        let mut parts = Vec::with_capacity(tensors.len());
        for (i, t) in tensors.iter().enumerate() {
            let t = t.borrow();
            if t.dims() != first.dims() {
                return Err(Error::shape(
                    OP,
                    first.dims(),
                    t.dims(),
                    format!("stack expects each tensor to be equal size (tensor {i} differs)"),
                ));
            }
            parts.push(t.unsqueeze(d as isize)?);
        }
        Tensor::cat(&parts, d as isize)
    }

    /// Views of `self` split along `dim` into pieces of `split_size` (the last may be
    /// smaller), like PyTorch's `split` with an int.
    ///
    /// ```
    /// use tensor_core::Tensor;
    /// let p = Tensor::new(&[0i64, 1, 2, 3, 4]).split(2, 0)?;
    /// let sizes: Vec<usize> = p.iter().map(|t| t.dims()[0]).collect();
    /// assert_eq!(sizes, vec![2, 2, 1]);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn split(&self, split_size: usize, dim: isize) -> Result<Vec<Tensor>> {
        const OP: &str = "split";
        let d = normalize_dim(OP, dim, self.rank())?;
        let size = self.dims()[d];
        if split_size == 0 {
            if size != 0 {
                return Err(Error::arg(
                    OP,
                    format!("split_size can only be 0 if dimension size is 0, but got dimension size of {size}"),
                ));
            }
            return Ok(vec![self.clone()]);
        }
        let n = size.div_ceil(split_size).max(1);
        (0..n)
            .map(|i| {
                let start = i * split_size;
                self.narrow(d as isize, start as isize, split_size.min(size - start))
            })
            .collect()
    }

    /// Views of `self` split along `dim` into pieces of the given sizes, which must
    /// add up to the size of `dim`.
    pub fn split_with_sizes(&self, sizes: &[usize], dim: isize) -> Result<Vec<Tensor>> {
        const OP: &str = "split_with_sizes";
        let d = normalize_dim(OP, dim, self.rank())?;
        let size = self.dims()[d];
        let total: usize = sizes.iter().sum();
        if total != size {
            return Err(Error::arg(
                OP,
                format!(
                    "split_sizes must sum exactly to {size} (the input's size at dimension {d}), but got split_sizes={sizes:?}"
                ),
            ));
        }
        let mut at = 0usize;
        sizes
            .iter()
            .map(|&n| {
                let v = self.narrow(d as isize, at as isize, n);
                at += n;
                v
            })
            .collect()
    }

    /// Splits `self` along `dim` into at most `chunks` views of
    /// `ceil(size / chunks)` entries (PyTorch's sizing: fewer chunks may come back;
    /// a size-0 dim gives `chunks` empty views).
    ///
    /// ```
    /// use tensor_core::Tensor;
    /// let p = Tensor::new(&[0i64, 1, 2, 3, 4, 5]).chunk(4, 0)?;
    /// let sizes: Vec<usize> = p.iter().map(|t| t.dims()[0]).collect();
    /// assert_eq!(sizes, vec![2, 2, 2]);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn chunk(&self, chunks: usize, dim: isize) -> Result<Vec<Tensor>> {
        const OP: &str = "chunk";
        if chunks == 0 {
            return Err(Error::arg(OP, "chunk expects `chunks` to be greater than 0, got: 0"));
        }
        let d = normalize_dim(OP, dim, self.rank())?;
        let size = self.dims()[d];
        if size == 0 {
            return Ok(vec![self.clone(); chunks]);
        }
        self.split(size.div_ceil(chunks), d as isize)
    }

    /// The slices of `self` along `dim`, each without that dim (PyTorch's `unbind`).
    pub fn unbind(&self, dim: isize) -> Result<Vec<Tensor>> {
        let d = normalize_dim("unbind", dim, self.rank())?;
        (0..self.dims()[d]).map(|i| self.select(d as isize, i as isize)).collect()
    }

    /// Tiles `self` `repeats[i]` times along each dim (PyTorch's `repeat`); extra
    /// leading repeats add leading dims. Always a new tensor.
    ///
    /// ```
    /// use tensor_core::Tensor;
    /// let r = Tensor::new(&[1i64, 2]).repeat(&[2, 2])?;
    /// assert_eq!(r.to_vec2::<i64>()?, vec![vec![1, 2, 1, 2], vec![1, 2, 1, 2]]);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn repeat(&self, repeats: &[usize]) -> Result<Tensor> {
        const OP: &str = "repeat";
        let r = repeats.len();
        if r < self.rank() {
            return Err(Error::arg(
                OP,
                format!(
                    "number of dimensions of repeat dims ({r}) can not be smaller than number of dimensions of tensor ({})",
                    self.rank()
                ),
            ));
        }
        let mut x = self.clone();
        while x.rank() < r {
            x = x.unsqueeze(0)?;
        }
        let base = x.dims().to_vec();
        // [d0, d1, ..] -> [1, d0, 1, d1, ..] -> expand to [r0, d0, r1, d1, ..] -> copy.
        let mut target = Vec::with_capacity(2 * r);
        for (i, (&rep, &b)) in repeats.iter().zip(&base).enumerate() {
            x = x.unsqueeze(2 * i as isize)?;
            target.push(rep);
            target.push(b);
        }
        let shape = repeats
            .iter()
            .zip(&base)
            .map(|(&a, &b)| crate::create::mul_size(OP, &target, a, b))
            .collect::<Result<Vec<usize>>>()?;
        crate::create::checked_alloc(OP, &shape, self.dtype())?;
        let out = x.broadcast_to(target)?.copy()?;
        out.reshape_to(shape)
    }

    /// Reverses the order of elements along each of `dims` (a copy).
    ///
    /// ```
    /// use tensor_core::Tensor;
    /// let t = Tensor::from_vec(vec![1i64, 2, 3, 4], [2, 2])?;
    /// assert_eq!(t.flip(&[0, -1])?.to_vec2::<i64>()?, vec![vec![4, 3], vec![2, 1]]);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn flip(&self, dims: &[isize]) -> Result<Tensor> {
        const OP: &str = "flip";
        let mut ds = Vec::with_capacity(dims.len());
        for &d in dims {
            if let Some(n) = normalize_dim_scalar_ok(OP, d, self.rank())? {
                if ds.contains(&n) {
                    return Err(Error::arg(OP, format!("dim {n} appears multiple times in the list of dims")));
                }
                ds.push(n);
            }
        }
        let mut x = self.clone();
        let mut copied = false;
        for d in ds {
            let n = self.dims()[d];
            if n > 1 {
                let idx = crate::create::index_range(n, true, self.device())?;
                let ie = slice_index(&idx, d, x.dims())?;
                x = x.gather_unchecked(d, &ie)?;
                copied = true;
            }
        }
        if copied {
            Ok(x)
        } else {
            self.copy()
        }
    }

    /// Rotates elements along `dims` by `shifts` (element `i` moves to `i + shift`,
    /// wrapping around). With no dims, rolls the flattened tensor by a single shift
    /// and restores the shape (PyTorch's `roll`).
    ///
    /// ```
    /// use tensor_core::Tensor;
    /// let t = Tensor::new(&[1i64, 2, 3, 4]);
    /// assert_eq!(t.roll(&[1], &[0])?.to_vec::<i64>()?, vec![4, 1, 2, 3]);
    /// assert_eq!(t.roll(&[-1], &[])?.to_vec::<i64>()?, vec![2, 3, 4, 1]);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn roll(&self, shifts: &[isize], dims: &[isize]) -> Result<Tensor> {
        const OP: &str = "roll";
        if dims.is_empty() {
            if shifts.len() != 1 {
                return Err(Error::arg(
                    OP,
                    format!("without dims, roll takes exactly one shift, got {}", shifts.len()),
                ));
            }
            return self.reshape(&[-1])?.roll(shifts, &[0])?.reshape_to(self.shape().clone());
        }
        if shifts.len() != dims.len() {
            return Err(Error::arg(
                OP,
                format!("shifts and dimensions must align. shifts: {}, dims: {}", shifts.len(), dims.len()),
            ));
        }
        let ds = dims.iter().map(|&d| normalize_dim(OP, d, self.rank())).collect::<Result<Vec<_>>>()?;
        let mut x = self.clone();
        let mut copied = false;
        for (&s, &d) in shifts.iter().zip(&ds) {
            let n = x.dims()[d];
            if n == 0 {
                continue;
            }
            let k = s.rem_euclid(n as isize) as usize;
            if k == 0 {
                continue;
            }
            let di = d as isize;
            x = Tensor::cat(&[x.narrow(di, (n - k) as isize, k)?, x.narrow(di, 0, n - k)?], di)?;
            copied = true;
        }
        if copied {
            Ok(x)
        } else {
            self.copy()
        }
    }

    /// Keeps the elements on and below diagonal `diagonal` of the last two dims
    /// (`j - i <= diagonal`), zeroing the rest.
    ///
    /// ```
    /// use tensor_core::Tensor;
    /// let t = Tensor::from_vec(vec![1i64, 2, 3, 4], [2, 2])?;
    /// assert_eq!(t.tril(0)?.to_vec2::<i64>()?, vec![vec![1, 0], vec![3, 4]]);
    /// assert_eq!(t.triu(1)?.to_vec2::<i64>()?, vec![vec![0, 2], vec![0, 0]]);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn tril(&self, diagonal: i64) -> Result<Tensor> {
        self.triangle("tril", diagonal, true)
    }

    /// Keeps the elements on and above diagonal `diagonal` of the last two dims
    /// (`j - i >= diagonal`), zeroing the rest.
    pub fn triu(&self, diagonal: i64) -> Result<Tensor> {
        self.triangle("triu", diagonal, false)
    }

    fn triangle(&self, op: &'static str, diagonal: i64, lower: bool) -> Result<Tensor> {
        let r = self.rank();
        if r < 2 {
            return Err(Error::arg(op, format!("input tensor must have at least 2 dimensions, got {r}")));
        }
        let (m, n) = (self.dims()[r - 2], self.dims()[r - 1]);
        let dev = self.device();
        let rows = crate::create::index_range(m, false, dev)?.reshape_to([m, 1])?;
        let cols = crate::create::index_range(n, false, dev)?.reshape_to([1, n])?;
        let off = cols.sub(&rows)?;
        let keep = if lower { off.le_scalar(diagonal)? } else { off.ge_scalar(diagonal)? };
        let zero = Tensor::scalar_on(0i64, self.dtype(), dev)?;
        Tensor::where_cond(&keep, self, &zero)
    }

    /// One-hot encoding of an I64 tensor of class indices: the output adds a last dim
    /// of `num_classes` (or `max + 1` when `num_classes` is -1) and is I64.
    ///
    /// ```
    /// use tensor_core::Tensor;
    /// let h = Tensor::new(&[2i64, 0]).one_hot(3)?;
    /// assert_eq!(h.to_vec2::<i64>()?, vec![vec![0, 0, 1], vec![1, 0, 0]]);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn one_hot(&self, num_classes: i64) -> Result<Tensor> {
        const OP: &str = "one_hot";
        check_i64(OP, self)?;
        let c = if num_classes == -1 {
            if self.numel() == 0 {
                return Err(Error::arg(OP, "can not infer the total number of classes from an empty tensor"));
            }
            let max = self.amax(&[], false)?.item()?.to_i64().max(-1);
            max.checked_add(1).ok_or_else(|| {
                Error::arg(OP, format!("the largest class index {max} leaves no room for num_classes = max + 1"))
            })?
        } else if num_classes < 0 {
            return Err(Error::arg(OP, format!("num_classes must be -1 or non-negative, got {num_classes}")));
        } else {
            num_classes
        };
        let c = usize::try_from(c.max(0))
            .map_err(|_| Error::arg(OP, format!("num_classes {c} does not fit in this platform's sizes")))?;
        let mut out_shape = self.dims().to_vec();
        out_shape.push(c);
        crate::create::checked_alloc(OP, &out_shape, DType::I64)?;
        check_range(OP, self, self.rank(), c)?;
        let classes = crate::create::index_range(c, false, self.device())?;
        self.unsqueeze(-1)?.eq(&classes)?.to_dtype(DType::I64)
    }

    /// Sorts along `dim` (stable; NaN sorts as the largest value, like PyTorch).
    /// Returns `(values, indices)`, the indices as I64.
    ///
    /// ```
    /// use tensor_core::Tensor;
    /// let (v, i) = Tensor::new(&[3.0f32, f32::NAN, 1.0, 3.0]).sort(0, false)?;
    /// assert_eq!(i.to_vec::<i64>()?, vec![2, 0, 3, 1]);
    /// assert!(v.to_vec::<f32>()?[3].is_nan());
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn sort(&self, dim: isize, descending: bool) -> Result<(Tensor, Tensor)> {
        const OP: &str = "sort";
        let Some(d) = normalize_dim_scalar_ok(OP, dim, self.rank())? else {
            return Ok((self.copy()?, Tensor::zeros((), DType::I64, self.device())?));
        };
        if self.numel() == 0 {
            return Ok((self.copy()?, Tensor::zeros(self.shape().clone(), DType::I64, self.device())?));
        }
        let buf = self.storage().read();
        let (v, i) = self.device().backend().sort(&**buf, self.layout(), d, descending)?;
        let shape: Shape = self.shape().clone();
        Ok((Tensor::from_buffer(v, shape.clone(), self.device()), Tensor::from_buffer(i, shape, self.device())))
    }

    /// The indices that sort `self` along `dim` (stable), as I64.
    pub fn argsort(&self, dim: isize, descending: bool) -> Result<Tensor> {
        Ok(self.sort(dim, descending)?.1)
    }

    /// The `k` largest (or smallest) elements along `dim` and their I64 indices.
    /// The results always come sorted (allowed by PyTorch when `sorted` is false);
    /// ties keep their original order.
    ///
    /// ```
    /// use tensor_core::Tensor;
    /// let (v, i) = Tensor::new(&[1.0f32, 5.0, 3.0]).topk(2, 0, true, true)?;
    /// assert_eq!(v.to_vec::<f32>()?, vec![5.0, 3.0]);
    /// assert_eq!(i.to_vec::<i64>()?, vec![1, 2]);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn topk(&self, k: usize, dim: isize, largest: bool, sorted: bool) -> Result<(Tensor, Tensor)> {
        const OP: &str = "topk";
        let _ = sorted;
        let x = as_1d(self)?;
        let d = normalize_dim_scalar_ok(OP, dim, self.rank())?.unwrap_or(0);
        let size = x.dims()[d];
        if k > size {
            return Err(Error::IndexOutOfRange { op: OP, index: k as i64, dim: d, size });
        }
        let (v, i) = x.sort(d as isize, largest)?;
        let (v, i) = (v.narrow(d as isize, 0, k)?.contiguous()?, i.narrow(d as isize, 0, k)?.contiguous()?);
        if self.rank() == 0 {
            // A scalar's single top element stays 0-dim.
            let s: Vec<usize> = if k == 1 { Vec::new() } else { vec![0] };
            Ok((v.reshape_to(s.clone())?, i.reshape_to(s)?))
        } else {
            Ok((v, i))
        }
    }
}
