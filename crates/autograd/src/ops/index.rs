//! Indexing and joining on `Var`: gather/scatter and their `index_*` forms,
//! `masked_select`, `cat`/`stack`, `split`/`chunk`/`unbind`, `repeat`, `flip`,
//! `roll`, `tril`/`triu` and `sort`/`topk`.
//!
//! The linear ops come in adjoint pairs whose backwards call each other (`gather`
//! and `scatter_add`, `index_select` and `index_add`, `flip` and `flip`, ...), so
//! gradients of every order are recorded. Integer index tensors are plain
//! `&Tensor` arguments and get no gradient.

use std::borrow::Borrow;

use tensor_core::shape::{broadcast_shapes, normalize_dim, normalize_dim_scalar_ok};
use tensor_core::{DType, Error, Result, Scalar, Tensor};

use crate::graph::{record, SavedVar};
use crate::var::Var;

/// Zero-pads `g` at the end of each dim up to `shape` (the gradient of an input of
/// which only a leading corner took part).
fn pad_to(g: &Var, shape: &[usize]) -> Result<Var> {
    if g.dims() == shape || g.rank() != shape.len() {
        return Ok(g.clone());
    }
    let mut x = g.clone();
    for (d, &n) in shape.iter().enumerate() {
        if x.dims()[d] != n {
            let mut s = x.dims().to_vec();
            s[d] = n;
            x = x.slice_embed(&s, d, 0, 1)?;
        }
    }
    Ok(x)
}

impl Var {
    /// Values along `dim` picked by the I64 `index` (PyTorch's `gather`); the
    /// gradient is scattered back with [`Var::scatter_add`] (duplicates add up).
    ///
    /// ```
    /// use autograd::Var;
    /// use tensor_core::Tensor;
    /// let x = Var::param(Tensor::new(&[1.0f64, 2.0, 3.0]))?;
    /// let y = x.gather(0, &Tensor::new(&[2i64, 2, 0]))?;
    /// y.sum_all()?.backward()?;
    /// assert_eq!(x.grad().unwrap().to_vec::<f64>()?, vec![1.0, 0.0, 2.0]);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn gather(&self, dim: isize, index: &Tensor) -> Result<Var> {
        let out = self.tensor().gather(dim, index)?;
        let idx = SavedVar::tensor(index);
        let shape = self.dims().to_vec();
        Ok(self.record_unary_grad_only("gather", out, move |g| {
            Var::zeros(shape.clone(), g.dtype(), g.device())?.scatter_add(dim, &idx.tensor_checked()?, g)
        }))
    }

    /// A copy of `self` with `src` added at the positions `index` names along `dim`
    /// (PyTorch's out-of-place `scatter_add`). Gradients: `grad` for `self`, and
    /// `grad.gather(dim, index)` for `src`.
    pub fn scatter_add(&self, dim: isize, index: &Tensor, src: &Var) -> Result<Var> {
        let out = self.tensor().scatter_add(dim, index, src.tensor())?;
        let idx = SavedVar::tensor(index);
        let src_shape = src.dims().to_vec();
        Ok(self.record_binary_grad_only(src, "scatter_add", out, move |g, n| {
            let ga = n[0].then(|| g.clone());
            let gb = if n[1] { Some(pad_to(&g.gather(dim, &idx.tensor_checked()?)?, &src_shape)?) } else { None };
            Ok((ga, gb))
        }))
    }

    /// A copy of `self` with `src` written at the positions `index` names along
    /// `dim` (PyTorch's out-of-place `scatter`). Overwritten positions of `self` get
    /// no gradient; `src` gets `grad.gather(dim, index)`.
    pub fn scatter(&self, dim: isize, index: &Tensor, src: &Var) -> Result<Var> {
        let out = self.tensor().scatter(dim, index, src.tensor())?;
        let idx = SavedVar::tensor(index);
        let src_shape = src.dims().to_vec();
        Ok(self.record_binary_grad_only(src, "scatter", out, move |g, n| {
            let i = idx.tensor_checked()?;
            let ga = if n[0] {
                Some(g.scatter(dim, &i, &Var::zeros(src_shape.clone(), g.dtype(), g.device())?)?)
            } else {
                None
            };
            let gb = if n[1] { Some(pad_to(&g.gather(dim, &i)?, &src_shape)?) } else { None };
            Ok((ga, gb))
        }))
    }

    /// The slices along `dim` listed by the vector `index` (PyTorch's
    /// `index_select`); the gradient goes back through [`Var::index_add`].
    pub fn index_select(&self, dim: isize, index: &Tensor) -> Result<Var> {
        let out = self.tensor().index_select(dim, index)?;
        let idx = SavedVar::tensor(index);
        let shape = self.dims().to_vec();
        Ok(self.record_unary_grad_only("index_select", out, move |g| {
            Var::zeros(shape.clone(), g.dtype(), g.device())?.index_add(dim, &idx.tensor_checked()?, g, 1.0)
        }))
    }

    /// A copy of `self` with `alpha * source` added into the slices along `dim`
    /// listed by `index` (duplicates add up). Gradients: `grad` for `self`,
    /// `alpha * grad.index_select(dim, index)` for `source`.
    pub fn index_add(&self, dim: isize, index: &Tensor, source: &Var, alpha: impl Into<Scalar>) -> Result<Var> {
        let alpha = alpha.into();
        let out = self.tensor().index_add(dim, index, source.tensor(), alpha)?;
        let idx = SavedVar::tensor(index);
        Ok(self.record_binary_grad_only(source, "index_add", out, move |g, n| {
            let ga = n[0].then(|| g.clone());
            let gb = if n[1] {
                let s = g.index_select(dim, &idx.tensor_checked()?)?;
                Some(if alpha.to_f64() == 1.0 { s } else { s.mul_scalar(alpha)? })
            } else {
                None
            };
            Ok((ga, gb))
        }))
    }

    /// The elements where the Bool `mask` (broadcast with `self`) is set, as a 1-D
    /// variable (an [`Var::index_select`] of the flattened broadcast input).
    pub fn masked_select(&self, mask: &Tensor) -> Result<Var> {
        let s = broadcast_shapes("masked_select", self.dims(), mask.dims())?;
        let n = s.numel();
        let positions = Tensor::arange(0.0, n as f64, 1.0, DType::I64, self.device())?
            .reshape_to(s.clone())?
            .masked_select(mask)?;
        self.broadcast_to(s)?.reshape(&[-1])?.index_select(0, &positions)
    }

    /// Concatenates along `dim` (PyTorch's `torch.cat`, with its dtype promotion and
    /// its skipping of 1-D empty inputs); each input gets its slice of the gradient.
    ///
    /// ```
    /// use autograd::Var;
    /// use tensor_core::Tensor;
    /// let a = Var::param(Tensor::new(&[1.0f64, 2.0]))?;
    /// let b = Var::param(Tensor::new(&[3.0f64]))?;
    /// let c = Var::cat(&[a.clone(), b.clone()], 0)?;
    /// c.mul(&c)?.sum_all()?.backward()?;
    /// assert_eq!(a.grad().unwrap().to_vec::<f64>()?, vec![2.0, 4.0]);
    /// assert_eq!(b.grad().unwrap().to_vec::<f64>()?, vec![6.0]);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn cat<V: Borrow<Var>>(vars: &[V], dim: isize) -> Result<Var> {
        let vars: Vec<&Var> = vars.iter().map(Borrow::borrow).collect();
        let ts: Vec<&Tensor> = vars.iter().map(|v| v.tensor()).collect();
        let out = Tensor::cat(&ts, dim)?;
        if !out.dtype().is_float() {
            return Ok(Var::from(out));
        }
        let d = normalize_dim("cat", dim, out.rank())?;
        // (start, len) along `d` of each input; `None` for skipped 1-D empty inputs.
        let mut at = 0usize;
        let spans: Vec<Option<(usize, usize)>> = vars
            .iter()
            .map(|v| {
                if v.dims() == [0] && out.rank() != 1 {
                    None
                } else {
                    let n = v.dims()[d];
                    at += n;
                    Some((at - n, n))
                }
            })
            .collect();
        Ok(record("cat", out, &vars, move |g, needs| {
            spans
                .iter()
                .zip(needs)
                .map(|(span, &need)| match (need, span) {
                    (false, _) => Ok(None),
                    (true, Some((s, n))) => g.narrow(d as isize, *s as isize, *n).map(Some),
                    (true, None) => Var::zeros([0], g.dtype(), g.device()).map(Some),
                })
                .collect()
        }))
    }

    /// Stacks same-shape variables along a new dim `dim` (`unsqueeze` + `cat`).
    pub fn stack<V: Borrow<Var>>(vars: &[V], dim: isize) -> Result<Var> {
        let first = vars.first().ok_or_else(|| Error::arg("stack", "expected a non-empty list of tensors"))?.borrow();
        let d = normalize_dim("stack", dim, first.rank() + 1)?;
        let mut parts = Vec::with_capacity(vars.len());
        for (i, v) in vars.iter().map(Borrow::borrow).enumerate() {
            if v.dims() != first.dims() {
                return Err(Error::shape(
                    "stack",
                    first.dims(),
                    v.dims(),
                    format!("stack expects each tensor to be equal size (tensor {i} differs)"),
                ));
            }
            parts.push(v.unsqueeze(d as isize)?);
        }
        Var::cat(&parts, d as isize)
    }

    /// `narrow`s of `self` along `dim` with the sizes of `parts`.
    fn pieces(&self, op: &'static str, parts: &[Tensor], dim: isize) -> Result<Vec<Var>> {
        let d = normalize_dim(op, dim, self.rank())?;
        let mut at = 0usize;
        parts
            .iter()
            .map(|p| {
                let n = p.dims()[d];
                let v = self.narrow(d as isize, at as isize, n);
                at += n;
                v
            })
            .collect()
    }

    /// Splits along `dim` into pieces of `split_size` (the last may be smaller).
    pub fn split(&self, split_size: usize, dim: isize) -> Result<Vec<Var>> {
        let parts = self.tensor().split(split_size, dim)?;
        self.pieces("split", &parts, dim)
    }

    /// Splits along `dim` into pieces of the given sizes (which must add up to it).
    pub fn split_with_sizes(&self, sizes: &[usize], dim: isize) -> Result<Vec<Var>> {
        let parts = self.tensor().split_with_sizes(sizes, dim)?;
        self.pieces("split_with_sizes", &parts, dim)
    }

    /// Splits along `dim` into at most `chunks` pieces (PyTorch's sizing).
    pub fn chunk(&self, chunks: usize, dim: isize) -> Result<Vec<Var>> {
        let parts = self.tensor().chunk(chunks, dim)?;
        self.pieces("chunk", &parts, dim)
    }

    /// The slices along `dim`, each without that dim.
    pub fn unbind(&self, dim: isize) -> Result<Vec<Var>> {
        let d = normalize_dim("unbind", dim, self.rank())?;
        (0..self.dims()[d]).map(|i| self.select(d as isize, i as isize)).collect()
    }

    /// Tiles `repeats[i]` times along each dim (extra leading repeats add dims); the
    /// gradient sums the tiles.
    pub fn repeat(&self, repeats: &[usize]) -> Result<Var> {
        let r = repeats.len();
        if r < self.rank() {
            return Err(Error::arg(
                "repeat",
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
        let mut target = Vec::with_capacity(2 * r);
        for (i, (&rep, &b)) in repeats.iter().zip(&base).enumerate() {
            x = x.unsqueeze(2 * i as isize)?;
            target.push(rep);
            target.push(b);
        }
        let shape: Vec<usize> = repeats.iter().zip(&base).map(|(a, b)| a * b).collect();
        x.broadcast_to(target)?.contiguous()?.reshape_to(shape)
    }

    /// Reverses the order along each of `dims` (its own adjoint).
    pub fn flip(&self, dims: &[isize]) -> Result<Var> {
        let out = self.tensor().flip(dims)?;
        let d = dims.to_vec();
        Ok(self.record_unary_grad_only("flip", out, move |g| g.flip(&d)))
    }

    /// Rotates along `dims` by `shifts` (flattened when `dims` is empty); the
    /// gradient rolls back.
    pub fn roll(&self, shifts: &[isize], dims: &[isize]) -> Result<Var> {
        let out = self.tensor().roll(shifts, dims)?;
        let back: Vec<isize> = shifts.iter().map(|s| -s).collect();
        let d = dims.to_vec();
        Ok(self.record_unary_grad_only("roll", out, move |g| g.roll(&back, &d)))
    }

    /// Keeps the lower triangle (`j - i <= diagonal`) of the last two dims.
    pub fn tril(&self, diagonal: i64) -> Result<Var> {
        let out = self.tensor().tril(diagonal)?;
        Ok(self.record_unary_grad_only("tril", out, move |g| g.tril(diagonal)))
    }

    /// Keeps the upper triangle (`j - i >= diagonal`) of the last two dims.
    pub fn triu(&self, diagonal: i64) -> Result<Var> {
        let out = self.tensor().triu(diagonal)?;
        Ok(self.record_unary_grad_only("triu", out, move |g| g.triu(diagonal)))
    }

    /// Values picked along `dim` by `idx` (an index from sort/topk), recorded with
    /// a scatter-add backward.
    fn take_sorted(&self, name: &'static str, vals: Tensor, idx: &Tensor, dim: isize) -> Result<Var> {
        if normalize_dim_scalar_ok(name, dim, self.rank())?.is_none() {
            return Ok(self.record_unary_grad_only(name, vals, |g| Ok(g.clone())));
        }
        let saved = SavedVar::tensor(idx);
        let shape = self.dims().to_vec();
        Ok(self.record_unary_grad_only(name, vals, move |g| {
            Var::zeros(shape.clone(), g.dtype(), g.device())?.scatter_add(dim, &saved.tensor_checked()?, g)
        }))
    }

    /// Sorts along `dim` (stable): `(values, indices)`; the gradient of each value
    /// goes back to where it came from.
    pub fn sort(&self, dim: isize, descending: bool) -> Result<(Var, Tensor)> {
        let (v, i) = self.tensor().sort(dim, descending)?;
        Ok((self.take_sorted("sort", v, &i, dim)?, i))
    }

    /// The indices that sort along `dim` (not differentiable).
    pub fn argsort(&self, dim: isize, descending: bool) -> Result<Tensor> {
        self.tensor().argsort(dim, descending)
    }

    /// The `k` largest (or smallest) values along `dim` and their indices.
    pub fn topk(&self, k: usize, dim: isize, largest: bool, sorted: bool) -> Result<(Var, Tensor)> {
        let (v, i) = self.tensor().topk(k, dim, largest, sorted)?;
        let d = if self.rank() == 0 { dim } else { normalize_dim("topk", dim, self.rank())? as isize };
        Ok((self.take_sorted("topk", v, &i, d)?, i))
    }
}
