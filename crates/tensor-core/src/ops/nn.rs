//! Neural-network math that is not a convolution or a pooling: softmax, padding,
//! embedding lookup, layer/batch normalisation and dropout. Everything is composed
//! from tensor ops and backend primitives, so every backend gets it.
//!
//! Half-precision inputs (f16, bf16) are computed in f32 and rounded once at the
//! end, like PyTorch's CPU kernels, so long sums do not lose precision.

use crate::backend::FusedOp;
use crate::random::{with_global, Generator};
use crate::{DType, Error, Result, Scalar, Tensor};

/// How [`Tensor::pad`] fills the new border.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PadMode {
    /// A constant value (PyTorch's `mode='constant', value=v`).
    Constant(f64),
    /// Mirror without repeating the edge: `[a b c]` padded by 2 on the left reads `c b a b c`.
    Reflect,
    /// Repeat the edge value.
    Replicate,
}

/// The dtype a composite computes in: half types go through f32.
pub fn compute_dtype(dt: DType) -> DType {
    match dt {
        DType::F16 | DType::BF16 => DType::F32,
        d => d,
    }
}

/// Fails unless `t` has a float dtype.
pub(crate) fn require_float(op: &'static str, t: &Tensor) -> Result<()> {
    if t.dtype().is_float() {
        Ok(())
    } else {
        Err(Error::Unsupported { op, dtype: t.dtype(), device: t.device().to_string() })
    }
}

/// Checks that an optional per-channel (or per-feature) parameter has `shape`.
pub(crate) fn check_param(op: &'static str, what: &str, x: &Tensor, p: Option<&Tensor>, shape: &[usize]) -> Result<()> {
    if let Some(p) = p {
        x.same_device(op, p)?;
        if p.dims() != shape {
            return Err(Error::shape(op, x.dims(), p.dims(), format!("{what} should have shape {shape:?}")));
        }
    }
    Ok(())
}

/// Checks that an output gradient `grad` matches the input `x` of a backward op in
/// shape, dtype and device.
fn check_grad(op: &'static str, x: &Tensor, grad: &Tensor) -> Result<()> {
    x.same_device(op, grad)?;
    if grad.dims() != x.dims() || grad.dtype() != x.dtype() {
        return Err(Error::shape(
            op,
            x.dims(),
            grad.dims(),
            format!("grad must match the input's shape and dtype ({} vs {})", grad.dtype(), x.dtype()),
        ));
    }
    Ok(())
}

/// PyTorch's default `eps` of `rms_norm`: the machine epsilon of the dtype
/// (`torch.finfo(dtype).eps`).
pub fn machine_eps(dtype: DType) -> f64 {
    match dtype {
        DType::F64 => f64::EPSILON,
        DType::F16 => 9.765625e-4,
        DType::BF16 => 7.8125e-3,
        _ => f32::EPSILON as f64,
    }
}

/// Checks the arguments of `rms_norm` (shared with autograd's `Var` form) and returns
/// the `eps` to use.
pub fn check_rms_norm(
    x: &Tensor,
    normalized_shape: &[usize],
    weight: Option<&Tensor>,
    eps: Option<f64>,
) -> Result<f64> {
    let op = "rms_norm";
    require_float(op, x)?;
    let (k, r) = (normalized_shape.len(), x.rank());
    if k == 0 {
        return Err(Error::arg(op, "expected normalized_shape to be at least 1-dimensional"));
    }
    if k > r || &x.dims()[r - k..] != normalized_shape {
        return Err(Error::shape(
            op,
            x.dims(),
            normalized_shape,
            "normalized_shape must equal the input's trailing dims",
        ));
    }
    check_param(op, "weight", x, weight, normalized_shape)?;
    if let Some(w) = weight {
        if w.dtype() != x.dtype() {
            return Err(Error::DTypeMismatch { op, expected: x.dtype(), got: w.dtype() });
        }
    }
    match eps {
        Some(e) if !(e >= 0.0 && e.is_finite()) => Err(Error::arg(op, format!("eps must be finite and >= 0, got {e}"))),
        Some(e) => Ok(e),
        None => Ok(machine_eps(x.dtype())),
    }
}

/// A host-built I64 tensor moved to `t`'s device.
pub(crate) fn index_tensor(v: Vec<i64>, shape: &[usize], t: &Tensor) -> Result<Tensor> {
    Tensor::from_vec(v, shape.to_vec())?.to_device(t.device())
}

/// A host-built tensor of `dtype` on `t`'s device.
pub(crate) fn host_tensor(v: Vec<f64>, shape: &[usize], dtype: DType, t: &Tensor) -> Result<Tensor> {
    Tensor::from_vec(v, shape.to_vec())?.to_dtype(dtype)?.to_device(t.device())
}

impl Tensor {
    /// Softmax along `dim`: `exp(x - max) / sum(exp(x - max))`, numerically stable.
    /// Float dtypes only.
    ///
    /// ```
    /// use tensor_core::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 1000.0, 1000.0, 1000.0], [2, 3])?;
    /// let y = x.softmax(-1)?.to_vec2::<f32>()?;
    /// assert!((y[0][2] - 0.66524096).abs() < 1e-6);
    /// assert!((y[1][0] - 1.0 / 3.0).abs() < 1e-6);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn softmax(&self, dim: isize) -> Result<Tensor> {
        let _prof = crate::profiler::scope("softmax", &[self]);
        self.softmax_impl("softmax", dim, false)
    }

    /// Log-softmax along `dim`: `x - max - log(sum(exp(x - max)))`, numerically stable.
    pub fn log_softmax(&self, dim: isize) -> Result<Tensor> {
        let _prof = crate::profiler::scope("log_softmax", &[self]);
        self.softmax_impl("log_softmax", dim, true)
    }

    fn softmax_impl(&self, op: &'static str, dim: isize, log: bool) -> Result<Tensor> {
        require_float(op, self)?;
        if self.rank() == 0 {
            crate::shape::normalize_dim_scalar_ok(op, dim, 0)?;
            return self.reshape(&[1, 1])?.softmax_impl(op, -1, log)?.reshape(&[]);
        }
        let d = self.layout().dim(op, dim)?;
        let last = self.rank() - 1;
        if self.numel() == 0 {
            return self.copy();
        }
        // Move `dim` last and make the rows contiguous, so the fused path applies.
        let moved = if d == last { self.clone() } else { self.transpose(d as isize, last as isize)? };
        let xc = moved.contiguous()?;
        let cols = xc.dims()[last];
        let rows = xc.numel() / cols;
        let x2 = xc.reshape_to([rows, cols])?;
        let fused = {
            let buf = x2.storage().read();
            let op = FusedOp::Softmax { x: &**buf, layout: x2.layout(), log };
            crate::fused::run(x2.device(), op, &[&[rows, cols]])
        };
        let y2 = match fused {
            Some(r) => r?.remove(0),
            None => {
                let x = x2.to_dtype(compute_dtype(x2.dtype()))?;
                let z = x.sub(&x.amax(&[-1], true)?)?;
                let y = if log { z.sub(&z.exp()?.sum(&[-1], true)?.log()?)? } else { softmax_of_shifted(&z)? };
                y.to_dtype(self.dtype())?
            }
        };
        let y = y2.reshape_to(xc.shape().clone())?;
        if d == last {
            Ok(y)
        } else {
            y.transpose(d as isize, last as isize)?.contiguous()
        }
    }

    /// Pads with `pads` given in PyTorch's order: the last dim first, as
    /// `(left, right)` pairs, then the dim before it (`(left, right, top, bottom)` for
    /// an image), and so on.
    ///
    /// `Reflect` needs every pad smaller than its dim; `Replicate` needs non-empty
    /// dims. Unlike PyTorch, reflect and replicate work on any dims, not only the
    /// last three.
    ///
    /// ```
    /// use tensor_core::{ops::nn::PadMode, Tensor};
    /// let x = Tensor::new(&[1.0f32, 2.0, 3.0]);
    /// assert_eq!(x.pad(&[2, 1], PadMode::Reflect)?.to_vec::<f32>()?, vec![3.0, 2.0, 1.0, 2.0, 3.0, 2.0]);
    /// assert_eq!(x.pad(&[1, 0], PadMode::Constant(9.0))?.to_vec::<f32>()?, vec![9.0, 1.0, 2.0, 3.0]);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn pad(&self, pads: &[usize], mode: PadMode) -> Result<Tensor> {
        let r = self.rank();
        if !pads.len().is_multiple_of(2) || pads.len() > 2 * r {
            return Err(Error::arg(
                "pad",
                format!(
                    "padding length must be even and at most twice the input rank {r}, got {} values for shape {:?}",
                    pads.len(),
                    self.dims()
                ),
            ));
        }
        // (dim, left, right) for every padded dim.
        let per_dim: Vec<(usize, usize, usize)> =
            pads.chunks(2).enumerate().map(|(i, p)| (r - 1 - i, p[0], p[1])).collect();
        let mut out_shape = self.dims().to_vec();
        for &(d, lo, hi) in &per_dim {
            let grown = lo.checked_add(hi).and_then(|p| p.checked_add(out_shape[d]));
            out_shape[d] = grown.ok_or_else(|| {
                Error::invalid_shape(
                    "pad",
                    self.dims(),
                    format!("padding ({lo}, {hi}) of dim {d} overflows the size of that dim"),
                )
            })?;
        }
        crate::create::checked_alloc("pad", &out_shape, self.dtype())?;
        match mode {
            PadMode::Constant(v) => {
                Scalar::F64(v).check_fits("pad", self.dtype())?;
                let out = Tensor::fill_unchecked(out_shape.into(), Scalar::F64(v), self.dtype(), self.device())?;
                let mut inner = out.clone();
                for &(d, lo, _) in &per_dim {
                    inner = inner.narrow(d as isize, lo as isize, self.dims()[d])?;
                }
                inner.copy_(self)?;
                Ok(out)
            }
            PadMode::Reflect | PadMode::Replicate => {
                let mut cur = self.clone();
                for &(d, lo, hi) in &per_dim {
                    if lo == 0 && hi == 0 {
                        continue;
                    }
                    let size = self.dims()[d];
                    let reflect = mode == PadMode::Reflect;
                    if reflect && (lo >= size || hi >= size) {
                        return Err(Error::arg(
                            "pad",
                            format!(
                                "reflect padding ({lo}, {hi}) must be smaller than dim {d} of input shape {:?}",
                                self.dims()
                            ),
                        ));
                    }
                    if size == 0 {
                        return Err(Error::arg(
                            "pad",
                            format!("cannot replicate-pad the empty dim {d} of input shape {:?}", self.dims()),
                        ));
                    }
                    let n = out_shape[d];
                    let last = size as i64 - 1;
                    // Once allocated, `n` (and so every pad) is far below i64::MAX.
                    let idx = crate::create::try_collect(n, |o| {
                        let i = o as i64 - lo as i64;
                        if reflect {
                            if i < 0 {
                                -i
                            } else if i > last {
                                2 * last - i
                            } else {
                                i
                            }
                        } else {
                            i.clamp(0, last)
                        }
                    })?;
                    let mut ishape = vec![1; r];
                    ishape[d] = n;
                    let mut target = cur.dims().to_vec();
                    target[d] = n;
                    let index = index_tensor(idx, &ishape, self)?.broadcast_to(target.clone())?;
                    cur = cur.run2(&index, target, |be, s, src_layout, i, index_layout| {
                        be.gather(s, src_layout, i, index_layout, d)
                    })?;
                }
                if cur.same_storage(self) {
                    cur = cur.copy()?;
                }
                Ok(cur)
            }
        }
    }

    /// Looks up rows of this `[num_embeddings, dim]` weight: the result has shape
    /// `indices.shape + [dim]` (PyTorch's `F.embedding(indices, weight)`).
    /// `indices` are I64 (or I32); an index outside `[0, num_embeddings)` is an error.
    ///
    /// ```
    /// use tensor_core::Tensor;
    /// let w = Tensor::from_vec(vec![0.0f32, 1.0, 10.0, 11.0, 20.0, 21.0], [3, 2])?;
    /// let e = w.embedding(&Tensor::new(&[2i64, 0]))?;
    /// assert_eq!(e.to_vec2::<f32>()?, vec![vec![20.0, 21.0], vec![0.0, 1.0]]);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn embedding(&self, indices: &Tensor) -> Result<Tensor> {
        let _prof = crate::profiler::scope("embedding", &[self, indices]);
        self.same_device("embedding", indices)?;
        if self.rank() != 2 {
            return Err(Error::shape(
                "embedding",
                self.dims(),
                indices.dims(),
                "the weight must be 2-D [num_embeddings, embedding_dim]",
            ));
        }
        let idx = match indices.dtype() {
            DType::I64 => indices.clone(),
            DType::I32 => indices.to_dtype(DType::I64)?,
            got => return Err(Error::DTypeMismatch { op: "embedding", expected: DType::I64, got }),
        };
        let (num, dim) = (self.dims()[0], self.dims()[1]);
        let n = idx.numel();
        if n > 0 {
            let lo = idx.min_all()?.to_scalar::<i64>()?;
            let hi = idx.max_all()?.to_scalar::<i64>()?;
            let bad = if lo < 0 {
                Some(lo)
            } else if hi >= num as i64 {
                Some(hi)
            } else {
                None
            };
            if let Some(index) = bad {
                return Err(Error::IndexOutOfRange { op: "embedding", index, dim: 0, size: num });
            }
        }
        let index = idx.reshape_to([n, 1])?.broadcast_to([n, dim])?;
        let rows = self.run2(&index, [n, dim], |be, s, src_layout, i, index_layout| {
            be.gather(s, src_layout, i, index_layout, 0)
        })?;
        let mut shape = idx.dims().to_vec();
        shape.push(dim);
        rows.reshape_to(shape)
    }

    /// RMS normalisation over the trailing `normalized_shape` dims, PyTorch's
    /// `F.rms_norm`: `x / sqrt(mean(x², dims) + eps) * weight`. `eps = None` is the
    /// dtype's machine epsilon, as PyTorch's default.
    ///
    /// ```
    /// use tensor_core::Tensor;
    /// let x = Tensor::from_vec(vec![3.0f64, 4.0], [1, 2])?;
    /// let y = x.rms_norm(&[2], None, Some(0.0))?;
    /// // rms = sqrt((9 + 16) / 2)
    /// let rms = 12.5f64.sqrt();
    /// assert_eq!(y.to_vec::<f64>()?, vec![3.0 / rms, 4.0 / rms]);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn rms_norm(&self, normalized_shape: &[usize], weight: Option<&Tensor>, eps: Option<f64>) -> Result<Tensor> {
        let _prof = crate::profiler::scope("rms_norm", &[self]);
        let eps = check_rms_norm(self, normalized_shape, weight, eps)?;
        let cd = compute_dtype(self.dtype());
        let x = self.to_dtype(cd)?;
        let dims: Vec<isize> =
            (0..normalized_shape.len() as isize).map(|i| i - normalized_shape.len() as isize).collect();
        let mut y = x.mul(&x.square()?.mean(&dims, true)?.add_scalar(eps)?.rsqrt()?)?;
        if let Some(w) = weight {
            y = y.mul(&w.to_dtype(cd)?)?;
        }
        y.to_dtype(self.dtype())
    }

    /// Layer normalisation over the trailing dims given by `normalized_shape`:
    /// `(x - mean) / sqrt(var + eps) * weight + bias` with the biased variance.
    /// `weight` and `bias` (optional) have shape `normalized_shape`.
    pub fn layer_norm(
        &self,
        normalized_shape: &[usize],
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        eps: f64,
    ) -> Result<Tensor> {
        let _prof = crate::profiler::scope("layer_norm", &[self]);
        let op = "layer_norm";
        require_float(op, self)?;
        let k = normalized_shape.len();
        let r = self.rank();
        if k == 0 {
            return Err(Error::arg(op, "expected normalized_shape to be at least 1-dimensional"));
        }
        if k > r || &self.dims()[r - k..] != normalized_shape {
            return Err(Error::shape(
                op,
                self.dims(),
                normalized_shape,
                "normalized_shape must be non-empty and equal the input's trailing dims",
            ));
        }
        check_param(op, "weight", self, weight, normalized_shape)?;
        check_param(op, "bias", self, bias, normalized_shape)?;
        if let Some(y) = self.layer_norm_fused(normalized_shape, weight, bias, eps) {
            return y;
        }
        let cd = compute_dtype(self.dtype());
        let x = self.contiguous()?.to_dtype(cd)?;
        let dims: Vec<isize> = (0..k as isize).map(|i| i - k as isize).collect();
        let centered = x.sub(&x.mean(&dims, true)?)?;
        let var = centered.square()?.mean(&dims, true)?;
        let mut y = centered.mul(&var.add_scalar(eps)?.rsqrt()?)?;
        if let Some(w) = weight {
            y = y.mul(&w.contiguous()?.to_dtype(cd)?)?;
        }
        if let Some(b) = bias {
            y = y.add(&b.contiguous()?.to_dtype(cd)?)?;
        }
        y.to_dtype(self.dtype())
    }

    /// The backend's fused layer norm ([`FusedOp::LayerNorm`]) over the input viewed as
    /// `[rows, cols]`, where the backend has one; `None` means "use the composite".
    fn layer_norm_fused(
        &self,
        normalized_shape: &[usize],
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        eps: f64,
    ) -> Option<Result<Tensor>> {
        let cols = normalized_shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))?;
        if cols == 0 || self.numel() == 0 {
            return None;
        }
        let rows = self.numel() / cols;
        // Parameters are small: a strided one is copied, so that the layout of a
        // parameter never changes which kernel (and so which rounding) runs.
        let flat = |t: &Tensor| -> Option<Tensor> {
            (t.dtype() == self.dtype()).then(|| t.contiguous().and_then(|t| t.reshape_to([t.numel()])).ok()).flatten()
        };
        let x = self.contiguous().and_then(|x| x.reshape_to([rows, cols])).ok()?;
        let w = weight.map(flat);
        let b = bias.map(flat);
        if matches!(w, Some(None)) || matches!(b, Some(None)) {
            return None;
        }
        let (w, b) = (w.flatten(), b.flatten());
        let (xg, wg, bg) =
            (x.storage().read(), w.as_ref().map(|t| t.storage().read()), b.as_ref().map(|t| t.storage().read()));
        let op = FusedOp::LayerNorm {
            x: &**xg,
            layout: x.layout(),
            weight: wg.as_ref().zip(w.as_ref()).map(|(g, t)| (&***g, t.layout())),
            bias: bg.as_ref().zip(b.as_ref()).map(|(g, t)| (&***g, t.layout())),
            eps,
        };
        let y = crate::fused::run(self.device(), op, &[&[rows, cols]])?;
        Some(y.and_then(|mut y| y.remove(0).reshape_to(self.shape().clone())))
    }

    /// The gradients of [`Tensor::layer_norm`] with respect to its input, weight and
    /// bias, given the output's gradient `grad` (the input's shape and dtype): `(dx,
    /// dweight, dbias)`, the last two of shape `normalized_shape` (computed whether or not
    /// the forward had a weight or bias). The statistics are recomputed from `self`. One
    /// fused pass where the backend has [`FusedOp::LayerNormBackward`], tensor ops
    /// otherwise. Autograd's `layer_norm` uses it; it is public for custom backwards.
    ///
    /// ```
    /// use tensor_core::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 3.0], [1, 2])?;
    /// let g = Tensor::from_vec(vec![1.0f64, 0.0], [1, 2])?;
    /// let (dx, dw, db) = x.layer_norm_backward(&g, &[2], None, 0.0)?;
    /// // x_hat = [-1, 1]: dx = (g - mean(g) - x_hat mean(g x_hat)) / std = [0, 0]
    /// assert_eq!(dx.to_vec::<f64>()?, vec![0.0, 0.0]);
    /// assert_eq!(dw.to_vec::<f64>()?, vec![-1.0, 0.0]);
    /// assert_eq!(db.to_vec::<f64>()?, vec![1.0, 0.0]);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn layer_norm_backward(
        &self,
        grad: &Tensor,
        normalized_shape: &[usize],
        weight: Option<&Tensor>,
        eps: f64,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let _prof = crate::profiler::scope("layer_norm_backward", &[self, grad]);
        let op = "layer_norm_backward";
        require_float(op, self)?;
        let k = normalized_shape.len();
        let r = self.rank();
        if k == 0 || k > r || &self.dims()[r - k..] != normalized_shape {
            return Err(Error::shape(
                op,
                self.dims(),
                normalized_shape,
                "normalized_shape must be non-empty and equal the input's trailing dims",
            ));
        }
        check_grad(op, self, grad)?;
        check_param(op, "weight", self, weight, normalized_shape)?;
        let cols: usize = normalized_shape.iter().product();
        if cols > 0 && self.numel() > 0 {
            let rows = self.numel() / cols;
            let x = self.contiguous()?.reshape_to([rows, cols])?;
            let g = grad.contiguous()?.reshape_to([rows, cols])?;
            let w = match weight {
                Some(w) if w.dtype() == self.dtype() => Some(w.contiguous()?.reshape_to([cols])?),
                _ => None,
            };
            if weight.is_none() || w.is_some() {
                let (xg, gg, wg) = (x.storage().read(), g.storage().read(), w.as_ref().map(|t| t.storage().read()));
                let fused = FusedOp::LayerNormBackward {
                    x: &**xg,
                    layout: x.layout(),
                    grad: &**gg,
                    weight: wg.as_ref().zip(w.as_ref()).map(|(g, t)| (&***g, t.layout())),
                    eps,
                };
                if let Some(outs) = crate::fused::run(self.device(), fused, &[&[rows, cols], &[cols], &[cols]]) {
                    let mut outs = outs?.into_iter();
                    let (Some(dx), Some(dw), Some(db)) = (outs.next(), outs.next(), outs.next()) else {
                        return Err(Error::arg(op, "the fused kernel returned too few outputs"));
                    };
                    let ns = crate::Shape::from(normalized_shape);
                    return Ok((dx.reshape_to(self.shape().clone())?, dw.reshape_to(ns.clone())?, db.reshape_to(ns)?));
                }
            }
        }
        // The composite, in the compute dtype.
        let cd = compute_dtype(self.dtype());
        let (x, g) = (self.to_dtype(cd)?, grad.to_dtype(cd)?);
        let dims: Vec<isize> = (0..k as isize).map(|i| i - k as isize).collect();
        let xc = x.sub(&x.mean(&dims, true)?)?;
        let rstd = xc.square()?.mean(&dims, true)?.add_scalar(eps)?.rsqrt()?;
        let xhat = xc.mul(&rstd)?;
        let d = match weight {
            Some(w) => g.mul(&w.to_dtype(cd)?)?,
            None => g.clone(),
        };
        let a = d.mean(&dims, true)?;
        let b = d.mul(&xhat)?.mean(&dims, true)?;
        let dx = d.sub(&a)?.sub(&xhat.mul(&b)?)?.mul(&rstd)?;
        let lead: Vec<isize> = (0..(r - k) as isize).collect();
        let over_rows = |t: Tensor| if lead.is_empty() { Ok(t) } else { t.sum(&lead, false) };
        let dw = over_rows(g.mul(&xhat)?)?;
        let db = over_rows(g)?;
        Ok((dx.to_dtype(self.dtype())?, dw.to_dtype(self.dtype())?, db.to_dtype(self.dtype())?))
    }

    /// `grad * gelu'(self)`: the gradient of [`Tensor::gelu`] (or, with `tanh`, of
    /// [`Tensor::gelu_tanh`]) given the output's gradient `grad` (same shape and dtype).
    /// One fused pass where the backend has [`FusedOp::GeluBackward`], tensor ops
    /// otherwise.
    ///
    /// ```
    /// use tensor_core::Tensor;
    /// let x = Tensor::from_vec(vec![0.0f64], [1])?;
    /// let g = Tensor::from_vec(vec![2.0f64], [1])?;
    /// // gelu'(0) = 1/2
    /// assert_eq!(x.gelu_backward(&g, false)?.to_vec::<f64>()?, vec![1.0]);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn gelu_backward(&self, grad: &Tensor, tanh: bool) -> Result<Tensor> {
        let _prof = crate::profiler::scope("gelu_backward", &[self, grad]);
        let op = "gelu_backward";
        require_float(op, self)?;
        check_grad(op, self, grad)?;
        let (x, g) = (self.contiguous()?, grad.contiguous()?);
        if x.layout() == g.layout() {
            let (xg, gg) = (x.storage().read(), g.storage().read());
            let fused = FusedOp::GeluBackward { x: &**xg, grad: &**gg, layout: x.layout(), tanh };
            if let Some(out) = crate::fused::run(self.device(), fused, &[self.dims()]) {
                return out?.pop().ok_or_else(|| Error::arg(op, "the fused kernel returned no output"));
            }
        }
        let cd = compute_dtype(self.dtype());
        let (x, g) = (x.to_dtype(cd)?, g.to_dtype(cd)?);
        let slope = if tanh {
            let k = (2.0 / std::f64::consts::PI).sqrt();
            let x2 = x.square()?;
            let t = x.mul(&x2.mul_scalar(0.044715)?.add_scalar(1.0)?)?.mul_scalar(k)?.tanh()?;
            let du = x2.mul_scalar(3.0 * 0.044715)?.add_scalar(1.0)?.mul_scalar(k)?;
            let left = t.add_scalar(1.0)?.mul_scalar(0.5)?;
            left.add(&x.mul_scalar(0.5)?.mul(&t.square()?.rsub_scalar(1.0)?)?.mul(&du)?)?
        } else {
            let cdf = x.mul_scalar(std::f64::consts::FRAC_1_SQRT_2)?.erf()?.add_scalar(1.0)?.mul_scalar(0.5)?;
            let pdf = x.square()?.mul_scalar(-0.5)?.exp()?.mul_scalar(1.0 / (2.0 * std::f64::consts::PI).sqrt())?;
            cdf.add(&x.mul(&pdf)?)?
        };
        g.mul(&slope)?.to_dtype(self.dtype())
    }

    /// The gradient of ReLU (and of any `x > threshold` cut): `grad` where `self >
    /// threshold`, zero where `self <= threshold` (PyTorch's `threshold_backward`; a
    /// NaN in `self` passes its gradient, and `threshold` is first rounded to the
    /// dtype). For ReLU, `self` may be the output as well as the input. `grad` has
    /// `self`'s shape and dtype. One fused pass where the backend has
    /// [`FusedOp::ThresholdBackward`], tensor ops otherwise.
    ///
    /// ```
    /// use tensor_core::Tensor;
    /// let y = Tensor::from_vec(vec![0.0f32, 2.0, -1.0], [3])?;
    /// let g = Tensor::from_vec(vec![5.0f32, 6.0, 7.0], [3])?;
    /// assert_eq!(y.threshold_backward(&g, 0.0)?.to_vec::<f32>()?, vec![0.0, 6.0, 0.0]);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn threshold_backward(&self, grad: &Tensor, threshold: f64) -> Result<Tensor> {
        let op = "threshold_backward";
        let _prof = crate::profiler::scope(op, &[self, grad]);
        require_float(op, self)?;
        check_grad(op, self, grad)?;
        let (x, g) = (self.contiguous()?, grad.contiguous()?);
        if x.layout() == g.layout() {
            let (xg, gg) = (x.storage().read(), g.storage().read());
            let fused = FusedOp::ThresholdBackward { x: &**xg, grad: &**gg, layout: x.layout(), threshold };
            if let Some(out) = crate::fused::run(self.device(), fused, &[self.dims()]) {
                return out?.pop().ok_or_else(|| Error::arg(op, "the fused kernel returned no output"));
            }
        }
        // The threshold as the dtype's value: compared in the dtype, as PyTorch does.
        let th = Tensor::full([], threshold, self.dtype(), self.device())?;
        g.masked_fill(&x.le(&th)?, 0.0)
    }

    /// Batch normalisation of an `[N, C, ...]` input per channel `C`.
    ///
    /// In training mode it normalises with the batch statistics (biased variance) and,
    /// when given, updates `running_mean`/`running_var` in place like PyTorch:
    /// `running = (1 - momentum) * running + momentum * batch_stat`, with the
    /// unbiased variance for `running_var`. In evaluation mode it normalises with the
    /// running statistics, which must then be given.
    #[allow(clippy::too_many_arguments)]
    pub fn batch_norm(
        &self,
        running_mean: Option<&Tensor>,
        running_var: Option<&Tensor>,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        training: bool,
        momentum: f64,
        eps: f64,
    ) -> Result<Tensor> {
        let _prof = crate::profiler::scope("batch_norm", &[self]);
        let op = "batch_norm";
        require_float(op, self)?;
        let r = self.rank();
        if r < 2 {
            return Err(Error::invalid_shape(op, self.dims(), "expected an input of shape [N, C, ...] (rank >= 2)"));
        }
        let c = self.dims()[1];
        check_param(op, "running_mean", self, running_mean, &[c])?;
        check_param(op, "running_var", self, running_var, &[c])?;
        check_param(op, "weight", self, weight, &[c])?;
        check_param(op, "bias", self, bias, &[c])?;
        let cd = compute_dtype(self.dtype());
        let x = self.contiguous()?.to_dtype(cd)?;
        let mut bshape = vec![1usize; r];
        bshape[1] = c;
        let per_channel = |t: &Tensor| -> Result<Tensor> { t.contiguous()?.to_dtype(cd)?.reshape_to(bshape.clone()) };
        let dims: Vec<isize> = (0..r as isize).filter(|&d| d != 1).collect();
        let (mean, var) = if training {
            let n = self.numel().checked_div(c).unwrap_or(0);
            if n <= 1 {
                return Err(Error::arg(
                    op,
                    format!("expected more than 1 value per channel when training, got input size {:?}", self.dims()),
                ));
            }
            let mean = x.mean(&dims, true)?;
            let var = x.sub(&mean)?.square()?.mean(&dims, true)?;
            if let Some(rm) = running_mean {
                let new =
                    rm.to_dtype(cd)?.mul_scalar(1.0 - momentum)?.add(&mean.reshape_to([c])?.mul_scalar(momentum)?)?;
                rm.copy_(&new)?;
            }
            if let Some(rv) = running_var {
                let unbiased = var.reshape_to([c])?.mul_scalar(n as f64 / (n as f64 - 1.0))?;
                let new = rv.to_dtype(cd)?.mul_scalar(1.0 - momentum)?.add(&unbiased.mul_scalar(momentum)?)?;
                rv.copy_(&new)?;
            }
            (mean, var)
        } else {
            match (running_mean, running_var) {
                (Some(m), Some(v)) => (per_channel(m)?, per_channel(v)?),
                _ => {
                    return Err(Error::arg(op, "running_mean and running_var must be given in evaluation mode"));
                }
            }
        };
        let mut y = x.sub(&mean)?.mul(&var.add_scalar(eps)?.rsqrt()?)?;
        if let Some(w) = weight {
            y = y.mul(&per_channel(w)?)?;
        }
        if let Some(b) = bias {
            y = y.add(&per_channel(b)?)?;
        }
        y.to_dtype(self.dtype())
    }

    /// A dropout mask shaped like `self`: each entry is `1 / (1 - p)` with probability
    /// `1 - p`, else 0, drawn from the global seeded generator. `p` must be in
    /// `[0, 1]`; `p = 1` gives all zeros (like PyTorch's dropout).
    pub fn dropout_mask(&self, p: f64) -> Result<Tensor> {
        with_global(|g| self.dropout_mask_with(g, p))
    }

    /// [`Tensor::dropout_mask`] with an explicit generator. An entry is kept when its
    /// uniform draw `u` (in element order) satisfies `u < 1 - p`.
    pub fn dropout_mask_with(&self, g: &mut Generator, p: f64) -> Result<Tensor> {
        require_float("dropout", self)?;
        if !(0.0..=1.0).contains(&p) {
            return Err(Error::arg("dropout", format!("dropout probability has to be between 0 and 1, but got {p}")));
        }
        let keep = 1.0 - p;
        let scale = if keep > 0.0 { 1.0 / keep } else { 0.0 };
        let v = g.try_uniform_f64(self.numel())?.into_iter().map(|u| if u < keep { scale } else { 0.0 }).collect();
        host_tensor(v, self.dims(), self.dtype(), self)
    }

    /// Dropout: in training, `self * mask` with [`Tensor::dropout_mask`]`(p)`;
    /// otherwise `self` unchanged.
    pub fn dropout(&self, p: f64, training: bool) -> Result<Tensor> {
        if !(0.0..=1.0).contains(&p) {
            return Err(Error::arg("dropout", format!("dropout probability has to be between 0 and 1, but got {p}")));
        }
        if !training || p == 0.0 {
            return Ok(self.clone());
        }
        self.mul(&self.dropout_mask(p)?)
    }
}

/// `exp(z) / sum(exp(z))` over the last dim of a max-shifted `z`.
fn softmax_of_shifted(z: &Tensor) -> Result<Tensor> {
    let e = z.exp()?;
    e.div(&e.sum(&[-1], true)?)
}
