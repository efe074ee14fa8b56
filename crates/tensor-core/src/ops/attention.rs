//! Scaled dot-product attention (PyTorch's `F.scaled_dot_product_attention`),
//! composed from tensor ops: `softmax(q kᵀ · scale + mask) v`.
//!
//! The argument checks and the mask preparation are shared with autograd's `Var`
//! form through [`check_attention`], so both forms accept and reject the same inputs.
//!
//! A row of the scores with nothing to attend to (every key masked out) gives zeros,
//! with zero gradient, as PyTorch 2.5 and later do (`_safe_softmax`), rather than NaN.

use crate::backend::FusedOp;
use crate::shape::broadcast_shapes;
use crate::{AttentionDims, DType, Error, Result, Tensor};

use super::nn::compute_dtype;

const OP: &str = "scaled_dot_product_attention";

/// The keyword arguments of [`Tensor::scaled_dot_product_attention`] (PyTorch's
/// `attn_mask`, `dropout_p`, `is_causal` and `scale`); `Default` gives none of them.
#[derive(Clone, Copy, Debug, Default)]
pub struct AttentionOpts<'a> {
    /// A mask broadcastable to the scores' shape `[..., L, S]`: boolean (`true` =
    /// the query may attend to that key) or a float bias added to the scores (same
    /// dtype as the query; `-inf` masks out).
    pub attn_mask: Option<&'a Tensor>,
    /// Dropout probability applied to the attention weights (0 = none).
    pub dropout_p: f64,
    /// Causal masking, aligned top-left as PyTorch's: query `i` attends to keys
    /// `0..=i`. Cannot be combined with `attn_mask`.
    pub is_causal: bool,
    /// The scale of the scores; `None` is `1 / sqrt(E)` for a head dim `E`.
    pub scale: Option<f64>,
}

/// The checked form of an attention call: what to add to or mask out of the scores.
#[derive(Clone, Debug)]
pub struct AttentionPlan {
    /// The factor the scores `q kᵀ` are multiplied by.
    pub scale: f64,
    /// Where the scores are kept (boolean, broadcastable to `[..., L, S]`): from a
    /// boolean mask or `is_causal`.
    pub keep: Option<Tensor>,
    /// A float bias added to the scores.
    pub bias: Option<Tensor>,
    /// The dtype the composite computes in (f32 for half inputs).
    pub compute: DType,
}

fn dims_str(t: &Tensor) -> String {
    format!("{:?}", t.dims())
}

/// Checks the arguments of scaled dot-product attention (`q: [..., L, E]`,
/// `k: [..., S, E]`, `v: [..., S, Ev]`, leading dims broadcast) and prepares the mask.
pub fn check_attention(q: &Tensor, k: &Tensor, v: &Tensor, opts: &AttentionOpts<'_>) -> Result<AttentionPlan> {
    for t in [q, k, v] {
        if !t.dtype().is_float() {
            return Err(Error::Unsupported { op: OP, dtype: t.dtype(), device: t.device().to_string() });
        }
        if t.rank() < 2 {
            return Err(Error::invalid_shape(
                OP,
                t.dims(),
                "query, key and value need at least 2 dims ([..., sequence, features])",
            ));
        }
    }
    for t in [k, v] {
        if t.dtype() != q.dtype() {
            return Err(Error::DTypeMismatch { op: OP, expected: q.dtype(), got: t.dtype() });
        }
        if t.device() != q.device() {
            return Err(Error::DeviceMismatch { op: OP, lhs: q.device().to_string(), rhs: t.device().to_string() });
        }
    }
    let (qr, kr, vr) = (q.rank(), k.rank(), v.rank());
    let (l, e) = (q.dims()[qr - 2], q.dims()[qr - 1]);
    let (s, ek) = (k.dims()[kr - 2], k.dims()[kr - 1]);
    if ek != e {
        return Err(Error::shape(
            OP,
            q.dims(),
            k.dims(),
            format!("query {} and key {} differ in the feature dim ({e} vs {ek})", dims_str(q), dims_str(k)),
        ));
    }
    if v.dims()[vr - 2] != s {
        return Err(Error::shape(
            OP,
            k.dims(),
            v.dims(),
            format!("key {} and value {} differ in the sequence dim", dims_str(k), dims_str(v)),
        ));
    }
    let batch = broadcast_shapes(OP, &q.dims()[..qr - 2], &k.dims()[..kr - 2])?;
    let batch = broadcast_shapes(OP, &batch, &v.dims()[..vr - 2])?;
    let mut scores: Vec<usize> = batch.to_vec();
    scores.extend([l, s]);
    if !(0.0..=1.0).contains(&opts.dropout_p) {
        return Err(Error::arg(OP, format!("dropout_p has to be between 0 and 1, but got {}", opts.dropout_p)));
    }
    let scale = match opts.scale {
        Some(x) if !x.is_finite() => return Err(Error::arg(OP, format!("scale must be finite, got {x}"))),
        Some(x) => x,
        None if e == 0 => 1.0,
        None => 1.0 / (e as f64).sqrt(),
    };
    let compute = compute_dtype(q.dtype());
    let (mut keep, mut bias) = (None, None);
    if let Some(m) = opts.attn_mask {
        if opts.is_causal {
            return Err(Error::arg(OP, "an explicit attn_mask cannot be combined with is_causal = true"));
        }
        if m.device() != q.device() {
            return Err(Error::DeviceMismatch { op: OP, lhs: q.device().to_string(), rhs: m.device().to_string() });
        }
        if m.dtype() != DType::Bool && m.dtype() != q.dtype() {
            return Err(Error::DTypeMismatch { op: OP, expected: q.dtype(), got: m.dtype() });
        }
        let b = broadcast_shapes(OP, m.dims(), &scores)?;
        if b.to_vec() != scores {
            return Err(Error::shape(
                OP,
                m.dims(),
                &scores,
                format!("attn_mask {} does not broadcast to the scores' shape {scores:?}", dims_str(m)),
            ));
        }
        if m.dtype() == DType::Bool {
            keep = Some(m.clone());
        } else {
            bias = Some(m.to_dtype(compute)?);
        }
    } else if opts.is_causal {
        keep = Some(Tensor::ones([l, s], DType::Bool, q.device())?.tril(0)?);
    }
    Ok(AttentionPlan { scale, keep, bias, compute })
}

impl Tensor {
    /// Scaled dot-product attention, PyTorch's `F.scaled_dot_product_attention`:
    /// `softmax(q kᵀ · scale + mask) v` for `q: [..., L, E]`, `k: [..., S, E]`,
    /// `v: [..., S, Ev]` (leading dims broadcast), giving `[..., L, Ev]`. See
    /// [`AttentionOpts`] for the mask, dropout, causal and scale arguments. A query
    /// whose keys are all masked out gets zeros (as PyTorch 2.5+), not NaN.
    ///
    /// ```
    /// use tensor_core::{ops::attention::AttentionOpts, Tensor};
    /// let q = Tensor::from_vec(vec![1.0f32, 0.0, 0.0, 1.0], [2, 2])?;
    /// let v = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], [2, 2])?;
    /// let causal = AttentionOpts { is_causal: true, ..Default::default() };
    /// let out = Tensor::scaled_dot_product_attention(&q, &q, &v, causal)?;
    /// // The first query sees only the first key.
    /// assert_eq!(out.to_vec::<f32>()?[..2], [1.0, 2.0]);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn scaled_dot_product_attention(q: &Tensor, k: &Tensor, v: &Tensor, opts: AttentionOpts<'_>) -> Result<Tensor> {
        let _prof = crate::profiler::scope(OP, &[q, k, v]);
        let plan = check_attention(q, k, v, &opts)?;
        if let Some((out, _)) = Tensor::attention_forward_fused(q, k, v, opts)? {
            return Ok(out);
        }
        let dt = q.dtype();
        // Contiguous operands: the result then does not depend on the input layouts
        // (GEMM rounds differently for different strides).
        let c = |t: &Tensor| t.to_dtype(plan.compute)?.contiguous();
        let (q, k, v) = (c(q)?, c(k)?, c(v)?);
        let mut s = q.matmul(&k.transpose(-2, -1)?)?.mul_scalar(plan.scale)?;
        if let Some(keep) = &plan.keep {
            s = s.masked_fill(&keep.logical_not()?, f64::NEG_INFINITY)?;
        }
        if let Some(b) = &plan.bias {
            s = s.add(b)?;
        }
        let w = if s.numel() == 0 {
            s
        } else {
            // Rows with nothing to attend to: softmax over zeros there, then zeroed.
            let dead = s.amax(&[-1], true)?.eq_scalar(f64::NEG_INFINITY)?;
            s.masked_fill(&dead, 0.0)?.softmax(-1)?.masked_fill(&dead, 0.0)?
        };
        let w = w.dropout(opts.dropout_p, true)?;
        w.matmul(&v)?.to_dtype(dt)
    }
}

/// The sizes of a call the fused kernels take, or `None`: no dropout, no explicit mask
/// (causal is fine), f32 or f64, the same batch dims on `q`, `k` and `v` (no
/// broadcasting), nothing empty.
fn fused_dims(q: &Tensor, k: &Tensor, v: &Tensor, opts: &AttentionOpts<'_>) -> Option<AttentionDims> {
    let r = q.rank();
    if opts.dropout_p != 0.0 || opts.attn_mask.is_some() || !matches!(q.dtype(), DType::F32 | DType::F64) {
        return None;
    }
    if k.rank() != r
        || v.rank() != r
        || q.dims()[..r - 2] != k.dims()[..r - 2]
        || q.dims()[..r - 2] != v.dims()[..r - 2]
    {
        return None;
    }
    let d = AttentionDims {
        bh: q.dims()[..r - 2].iter().product(),
        l: q.dims()[r - 2],
        s: k.dims()[r - 2],
        e: q.dims()[r - 1],
        ev: v.dims()[r - 1],
    };
    (d.bh > 0 && d.l > 0 && d.s > 0 && d.e > 0 && d.ev > 0).then_some(d)
}

impl Tensor {
    /// The fused kernel of [`Tensor::scaled_dot_product_attention`] (no score matrix:
    /// memory linear in the sequence length), where the backend has one and the call
    /// qualifies (no dropout, no explicit mask, f32/f64, equal batch dims): the
    /// attention and each query's log-sum-exp of its scaled scores (`[..., L]`, for
    /// [`Tensor::attention_backward_fused`]). `Ok(None)`: use the composite. Autograd's
    /// form uses it; it is public for custom backwards.
    pub fn attention_forward_fused(
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        opts: AttentionOpts<'_>,
    ) -> Result<Option<(Tensor, Tensor)>> {
        let plan = check_attention(q, k, v, &opts)?;
        let Some(d) = fused_dims(q, k, v, &opts) else { return Ok(None) };
        let c = |t: &Tensor, r: usize, c: usize| t.contiguous()?.reshape_to([d.bh, r, c]);
        let (q3, k3, v3) = (c(q, d.l, d.e)?, c(k, d.s, d.e)?, c(v, d.s, d.ev)?);
        let (qg, kg, vg) = (q3.storage().read(), k3.storage().read(), v3.storage().read());
        let op = FusedOp::Attention {
            qkv: [(&**qg, q3.layout()), (&**kg, k3.layout()), (&**vg, v3.layout())],
            dims: d,
            scale: plan.scale,
            causal: opts.is_causal,
        };
        let Some(outs) = crate::fused::run(q.device(), op, &[&[d.bh, d.l, d.ev], &[d.bh, d.l]]) else {
            return Ok(None);
        };
        let mut outs = outs?.into_iter();
        let (Some(o), Some(lse)) = (outs.next(), outs.next()) else {
            return Err(Error::arg(OP, "the fused kernel returned too few outputs"));
        };
        let batch = &q.dims()[..q.rank() - 2];
        let shape = |tail: &[usize]| -> Vec<usize> { batch.iter().chain(tail).copied().collect() };
        Ok(Some((o.reshape_to(shape(&[d.l, d.ev]))?, lse.reshape_to(shape(&[d.l]))?)))
    }

    /// The gradients `(dq, dk, dv)` of [`Tensor::attention_forward_fused`] given its
    /// output `out`, log-sum-exp `lse` and the output's gradient `grad` (probabilities
    /// recomputed row by row, as FlashAttention's backward). `Ok(None)` where the
    /// forward would not have been fused.
    #[allow(clippy::too_many_arguments)]
    pub fn attention_backward_fused(
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        out: &Tensor,
        lse: &Tensor,
        grad: &Tensor,
        opts: AttentionOpts<'_>,
    ) -> Result<Option<(Tensor, Tensor, Tensor)>> {
        let plan = check_attention(q, k, v, &opts)?;
        let Some(d) = fused_dims(q, k, v, &opts) else { return Ok(None) };
        let r = q.rank();
        let mut want_out: Vec<usize> = q.dims()[..r - 2].to_vec();
        want_out.extend([d.l, d.ev]);
        for (what, t, want) in
            [("out", out, &want_out[..]), ("grad", grad, &want_out[..]), ("lse", lse, &want_out[..r - 1])]
        {
            if t.dims() != want || t.dtype() != q.dtype() {
                return Err(Error::shape(
                    "attention_backward_fused",
                    t.dims(),
                    want,
                    format!("{what} must be {want:?} of {} (it is {})", q.dtype(), t.dtype()),
                ));
            }
            q.same_device("attention_backward_fused", t)?;
        }
        let c = |t: &Tensor, r: usize, c: usize| t.contiguous()?.reshape_to([d.bh, r, c]);
        let ts = [
            c(q, d.l, d.e)?,
            c(k, d.s, d.e)?,
            c(v, d.s, d.ev)?,
            c(out, d.l, d.ev)?,
            c(lse, d.l, 1)?,
            c(grad, d.l, d.ev)?,
        ];
        let guards: Vec<_> = ts.iter().map(|t| t.storage().read()).collect();
        let tensors: [(&dyn crate::Buffer, &crate::Layout); 6] =
            std::array::from_fn(|i| (&**guards[i] as &dyn crate::Buffer, ts[i].layout()));
        let op = FusedOp::AttentionBackward { tensors, dims: d, scale: plan.scale, causal: opts.is_causal };
        let shapes: [&[usize]; 3] = [&[d.bh, d.l, d.e], &[d.bh, d.s, d.e], &[d.bh, d.s, d.ev]];
        let Some(outs) = crate::fused::run(q.device(), op, &shapes) else { return Ok(None) };
        let mut outs = outs?.into_iter();
        let (Some(dq), Some(dk), Some(dv)) = (outs.next(), outs.next(), outs.next()) else {
            return Err(Error::arg(OP, "the fused kernel returned too few outputs"));
        };
        Ok(Some((
            dq.reshape_to(q.shape().clone())?,
            dk.reshape_to(k.shape().clone())?,
            dv.reshape_to(v.shape().clone())?,
        )))
    }
}
