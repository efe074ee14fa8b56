//! Neural-network math on `Var`: softmax/log_softmax, logsumexp, var/std,
//! layer_norm, dropout, zero padding and the simple losses.
//!
//! Most are compositions of differentiable `Var` ops, so their gradients (of any
//! order) follow from the ops they are made of; softmax, log_softmax and std are
//! single ops whose backward uses their saved output.

use tensor_core::ops::attention::{check_attention, AttentionOpts};
use tensor_core::ops::nn::{check_rms_norm, compute_dtype};
use tensor_core::{ClassLossOptions, DType, Error, Result, Tensor};

use smallvec::smallvec;

use crate::graph::{record, should_record, Grads, SavedVar};
use crate::mode::is_grad_enabled;
use crate::target::Target;
use crate::var::Var;

/// The gradients of causal or unmasked attention `softmax(q kᵀ · scale) v` written with
/// differentiable `Var` ops (for `create_graph` through the fused forward):
/// `dv = pᵀ g`, `ds = p (g vᵀ - rowsum(g vᵀ p))`, `dq = ds k · scale`, `dk = dsᵀ q · scale`.
fn attention_grads(q: &Var, k: &Var, v: &Var, g: &Var, scale: f64, causal: bool) -> Result<(Var, Var, Var)> {
    let mut s = q.matmul(&k.transpose(-2, -1)?)?.mul_scalar(scale)?;
    if causal {
        let (l, n) = (q.dims()[q.rank() - 2], k.dims()[k.rank() - 2]);
        let keep = Tensor::ones([l, n], DType::Bool, q.device())?.tril(0)?;
        s = s.masked_fill(&keep.logical_not()?, f64::NEG_INFINITY)?;
    }
    let p = s.softmax(-1)?;
    let dv = p.transpose(-2, -1)?.matmul(g)?;
    let dp = g.matmul(&v.transpose(-2, -1)?)?;
    let ds = p.mul(&dp.sub(&dp.mul(&p)?.sum(&[-1], true)?)?)?;
    let dq = ds.matmul(k)?.mul_scalar(scale)?;
    let dk = ds.transpose(-2, -1)?.matmul(q)?.mul_scalar(scale)?;
    Ok((dq, dk, dv))
}

/// Layer norm's gradients `(dx, dweight, dbias)` written with differentiable `Var` ops
/// (for `create_graph`): `dx = (d - mean(d) - x̂ mean(d x̂)) / σ` with `d = g w`.
fn layer_norm_grads(x: &Var, g: &Var, ns: &[usize], w: Option<&Var>, eps: f64) -> Result<(Var, Var, Var)> {
    let (k, r) = (ns.len(), x.rank());
    let dims: Vec<isize> = (0..k as isize).map(|i| i - k as isize).collect();
    let xc = x.sub(&x.mean(&dims, true)?)?;
    let rstd = xc.square()?.mean(&dims, true)?.add_scalar(eps)?.rsqrt()?;
    let xhat = xc.mul(&rstd)?;
    let d = match w {
        Some(w) => g.mul(&w.to_dtype(x.dtype())?)?,
        None => g.clone(),
    };
    let a = d.mean(&dims, true)?;
    let b = d.mul(&xhat)?.mean(&dims, true)?;
    let dx = d.sub(&a)?.sub(&xhat.mul(&b)?)?.mul(&rstd)?;
    let lead: Vec<isize> = (0..(r - k) as isize).collect();
    let over_rows = |t: Var| if lead.is_empty() { Ok(t) } else { t.sum(&lead, false) };
    Ok((dx, over_rows(g.mul(&xhat)?)?, over_rows(g.clone())?))
}

impl Var {
    /// Scaled dot-product attention, `softmax(q kᵀ · scale + mask) v`, with the
    /// arguments, checks and semantics of [`Tensor::scaled_dot_product_attention`]
    /// (masks are plain tensors and get no gradient). A query whose keys are all
    /// masked out gives zeros and a zero gradient, as PyTorch 2.5+.
    ///
    /// ```
    /// use autograd::Var;
    /// use tensor_core::{AttentionOpts, Tensor};
    /// let q = Var::param(Tensor::from_vec(vec![0.5f64, -1.0, 2.0, 0.0], [2, 2])?)?;
    /// let v = Var::from(Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], [2, 2])?);
    /// let causal = AttentionOpts { is_causal: true, ..Default::default() };
    /// let out = Var::scaled_dot_product_attention(&q, &q, &v, causal)?;
    /// out.sum_all()?.backward()?;
    /// assert_eq!(q.grad().unwrap().dims(), &[2, 2]);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn scaled_dot_product_attention(q: &Var, k: &Var, v: &Var, opts: AttentionOpts<'_>) -> Result<Var> {
        let plan = check_attention(q.tensor(), k.tensor(), v.tensor(), &opts)?;
        if let Some((out, lse)) = Tensor::attention_forward_fused(q.tensor(), k.tensor(), v.tensor(), opts)? {
            if !should_record(&[q, k, v]) {
                return Ok(Var::from(out));
            }
            let (qs, ks, vs) = (SavedVar::new(q), SavedVar::new(k), SavedVar::new(v));
            let saved_out = out.clone();
            let (scale, causal) = (plan.scale, opts.is_causal);
            return Ok(record("scaled_dot_product_attention", out, &[q, k, v], move |g, _| {
                let (q, k, v) = (qs.get()?, ks.get()?, vs.get()?);
                let (dq, dk, dv) = if is_grad_enabled() {
                    attention_grads(&q, &k, &v, g, scale, causal)?
                } else {
                    let o = AttentionOpts { is_causal: causal, scale: Some(scale), ..Default::default() };
                    let t = |v: &Var| v.tensor().clone();
                    let Some((dq, dk, dv)) =
                        Tensor::attention_backward_fused(&t(&q), &t(&k), &t(&v), &saved_out, &lse, g.tensor(), o)?
                    else {
                        return Err(Error::Autograd("the fused attention backward is not available".into()));
                    };
                    (Var::from(dq), Var::from(dk), Var::from(dv))
                };
                Ok(smallvec![Some(dq), Some(dk), Some(dv)])
            }));
        }
        let dt = q.dtype();
        let c = |t: &Var| t.to_dtype(plan.compute)?.contiguous();
        let (q, k, v) = (c(q)?, c(k)?, c(v)?);
        let mut s = q.matmul(&k.transpose(-2, -1)?)?.mul_scalar(plan.scale)?;
        if let Some(keep) = &plan.keep {
            s = s.masked_fill(&keep.logical_not()?, f64::NEG_INFINITY)?;
        }
        if let Some(b) = &plan.bias {
            s = s.add(&Var::from(b.clone()))?;
        }
        let w = if s.numel() == 0 {
            s
        } else {
            let dead = s.tensor().amax(&[-1], true)?.eq_scalar(f64::NEG_INFINITY)?;
            s.masked_fill(&dead, 0.0)?.softmax(-1)?.masked_fill(&dead, 0.0)?
        };
        let w = w.dropout(opts.dropout_p, true)?;
        w.matmul(&v)?.to_dtype(dt)
    }

    /// `log(sum(exp(x)))` over `dims`, computed stably (shifted by the detached max).
    pub fn logsumexp(&self, dims: &[isize], keepdim: bool) -> Result<Var> {
        // (An empty input has no max; its sums are 0, so it is shifted by 0.)
        let m = if self.numel() == 0 { self.detach().sum(dims, true)? } else { self.detach().amax(dims, true)? };
        // An all -inf slice would give nan after the shift; shift by 0 there.
        let m = Var::from(m.tensor().masked_fill(&m.tensor().isinf()?, 0.0)?);
        let s = self.sub(&m)?.exp()?.sum(dims, true)?.log()?.add(&m)?;
        if keepdim {
            Ok(s)
        } else {
            let d = tensor_core::shape::normalize_dims("logsumexp", dims, self.rank())?;
            let shape: Vec<usize> =
                self.dims().iter().enumerate().filter(|(i, _)| !d.contains(i)).map(|(_, &s)| s).collect();
            s.reshape_to(shape)
        }
    }

    /// Softmax along `dim`, with tensor-core's fused (numerically stable) kernel.
    /// The backward uses the saved output: `y * (g - sum(g * y, dim))`.
    ///
    /// ```
    /// use autograd::Var;
    /// use tensor_core::Tensor;
    /// let x = Var::param(Tensor::new(&[1.0f64, 2.0, 3.0]))?;
    /// let p = x.softmax(0)?;
    /// let s: f64 = p.tensor().to_vec::<f64>()?.iter().sum();
    /// assert!((s - 1.0).abs() < 1e-12);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn softmax(&self, dim: isize) -> Result<Var> {
        let out = self.tensor().softmax(dim)?;
        if self.rank() == 0 {
            // A single element: softmax is the constant 1.
            return Ok(self.record_unary_grad_only("softmax", out, |g| g.zeros_like()));
        }
        Ok(self.record_unary_saving_output("softmax", out, move |y, g| {
            let gy = g.mul(y)?;
            gy.sub(&y.mul(&gy.sum(&[dim], true)?)?)
        }))
    }

    /// Log-softmax along `dim`, with tensor-core's fused kernel. The backward uses
    /// the saved output: `g - exp(y) * sum(g, dim)`.
    pub fn log_softmax(&self, dim: isize) -> Result<Var> {
        let out = self.tensor().log_softmax(dim)?;
        if self.rank() == 0 {
            // A single element: log-softmax is the constant 0.
            return Ok(self.record_unary_grad_only("log_softmax", out, |g| g.zeros_like()));
        }
        Ok(self
            .record_unary_saving_output("log_softmax", out, move |y, g| g.sub(&y.exp()?.mul(&g.sum(&[dim], true)?)?)))
    }

    /// Variance over `dims` with `correction` (1 = unbiased, PyTorch's default).
    pub fn var(&self, dims: &[isize], correction: f64, keepdim: bool) -> Result<Var> {
        let d = tensor_core::shape::normalize_dims("var", dims, self.rank())?;
        let n: usize = d.iter().map(|&i| self.dims()[i]).product();
        let mu = self.mean(dims, true)?;
        let ss = self.sub(&mu)?.square()?.sum(dims, keepdim)?;
        ss.div_scalar((n as f64 - correction).max(0.0))
    }

    /// Standard deviation over `dims` with `correction`. Where the deviation is 0
    /// (a constant slice) the gradient is 0 (a subgradient) instead of `0 / 0`.
    pub fn std(&self, dims: &[isize], correction: f64, keepdim: bool) -> Result<Var> {
        let v = self.var(dims, correction, keepdim)?;
        let out = v.tensor().sqrt()?;
        Ok(v.record_unary_saving_output("std", out, |s, g| {
            let zero = s.tensor().eq_scalar(0.0)?;
            g.div(&s.masked_fill(&zero, 1.0)?.mul_scalar(2.0)?)?.masked_fill(&zero, 0.0)
        }))
    }

    /// RMS normalisation over the trailing `normalized_shape` dims, with the checks
    /// and semantics of [`Tensor::rms_norm`] (`eps = None` is the dtype's machine
    /// epsilon).
    pub fn rms_norm(&self, normalized_shape: &[usize], weight: Option<&Var>, eps: Option<f64>) -> Result<Var> {
        let eps = check_rms_norm(self.tensor(), normalized_shape, weight.map(|w| w.tensor()), eps)?;
        let cd = compute_dtype(self.dtype());
        let x = self.to_dtype(cd)?;
        let k = normalized_shape.len() as isize;
        let dims: Vec<isize> = (0..k).map(|i| i - k).collect();
        let mut y = x.mul(&x.square()?.mean(&dims, true)?.add_scalar(eps)?.rsqrt()?)?;
        if let Some(w) = weight {
            y = y.mul(&w.to_dtype(cd)?)?;
        }
        y.to_dtype(self.dtype())
    }

    /// Layer normalisation over the trailing `normalized_shape` dims, with optional
    /// elementwise affine weight and bias: one op, whose forward is
    /// [`Tensor::layer_norm`] (fused where the backend has a kernel) and whose backward
    /// is [`Tensor::layer_norm_backward`]; under `create_graph` the backward is written
    /// with `Var` ops instead, so it can be differentiated again.
    pub fn layer_norm(
        &self,
        normalized_shape: &[usize],
        weight: Option<&Var>,
        bias: Option<&Var>,
        eps: f64,
    ) -> Result<Var> {
        let out =
            self.tensor().layer_norm(normalized_shape, weight.map(|w| w.tensor()), bias.map(|b| b.tensor()), eps)?;
        let mut inputs: Vec<&Var> = vec![self];
        inputs.extend(weight);
        inputs.extend(bias);
        if !should_record(&inputs) || !out.dtype().is_float() {
            return Ok(Var::from(out));
        }
        let x = SavedVar::new(self);
        let w = weight.map(SavedVar::new);
        let bias_dtype = bias.map(|b| b.dtype());
        let ns = normalized_shape.to_vec();
        Ok(record("layer_norm", out, &inputs, move |g, _| {
            let x = x.get()?;
            let w = w.as_ref().map(SavedVar::get).transpose()?;
            let (dx, dw, db) = if is_grad_enabled() {
                layer_norm_grads(&x, g, &ns, w.as_ref(), eps)?
            } else {
                let (dx, dw, db) =
                    x.tensor().layer_norm_backward(g.tensor(), &ns, w.as_ref().map(|w| w.tensor()), eps)?;
                (Var::from(dx), Var::from(dw), Var::from(db))
            };
            let mut grads: Grads = smallvec![Some(dx)];
            if let Some(w) = &w {
                grads.push(Some(dw.to_dtype(w.dtype())?));
            }
            if let Some(dt) = bias_dtype {
                grads.push(Some(db.to_dtype(dt)?));
            }
            Ok(grads)
        }))
    }

    /// Inverted dropout: zeroes each element with probability `p` and scales the rest
    /// by `1 / (1 - p)` when `training`; the identity otherwise.
    pub fn dropout(&self, p: f64, training: bool) -> Result<Var> {
        if !(0.0..=1.0).contains(&p) {
            return Err(Error::arg("dropout", format!("dropout probability has to be between 0 and 1, but got {p}")));
        }
        if !training || p == 0.0 {
            return Ok(self.clone());
        }
        if p == 1.0 {
            return self.mul_scalar(0.0);
        }
        let keep = Tensor::bernoulli_p(self.shape().clone(), 1.0 - p, self.dtype(), self.device())?;
        self.mul_t(&keep.mul_scalar(1.0 / (1.0 - p))?)
    }

    /// Zero padding of the last `pads.len() / 2` dims, PyTorch's `F.pad` order
    /// (`[left, right, top, bottom, ...]`, last dim first).
    pub fn pad_zeros(&self, pads: &[usize]) -> Result<Var> {
        if !pads.len().is_multiple_of(2) || pads.len() / 2 > self.rank() {
            return Err(Error::arg(
                "pad",
                format!("padding length {} is invalid for rank {}", pads.len(), self.rank()),
            ));
        }
        let mut x = self.clone();
        for (i, p) in pads.chunks(2).enumerate() {
            if p[0] == 0 && p[1] == 0 {
                continue;
            }
            let d = x.rank() - 1 - i;
            let mut shape = x.dims().to_vec();
            shape[d] += p[0] + p[1];
            x = x.slice_embed(&shape, d, p[0], 1)?;
        }
        Ok(x)
    }

    /// Mean squared error (`reduction = "mean"`); `nn::loss::mse_loss` has the
    /// options.
    pub fn mse_loss(&self, target: impl Target) -> Result<Var> {
        self.sub(&target.to_var())?.square()?.mean(&[], false)
    }

    /// Cross-entropy of logits `[N, C]` with integer class targets `[N]`: the mean
    /// over the rows whose target is not -100 (PyTorch's default reduction);
    /// `nn::loss::cross_entropy` has the options and the other shapes.
    pub fn cross_entropy(&self, target: impl Target) -> Result<Var> {
        let target = target.tensor();
        if self.rank() != 2 || target.rank() != 1 || target.dims()[0] != self.dims()[0] {
            return Err(Error::shape(
                "cross_entropy",
                self.dims(),
                target.dims(),
                "expected logits [N, C], target [N]",
            ));
        }
        let o = ClassLossOptions::default();
        let per = self.cross_entropy_rows(target, &o)?;
        let counted = target.to_dtype(DType::I64)?.to_vec::<i64>()?.iter().filter(|&&t| t != o.ignore_index).count();
        per.sum(&[], false)?.div_scalar(counted as f64)
    }

    /// The cross-entropy of each row of logits `[N, C]` with the class targets `[N]`
    /// (an integer tensor), with weights, `ignore_index` and label smoothing as in
    /// [`Tensor::cross_entropy_rows`]: the loss of each row, `[N]`. One fused op: its
    /// backward is [`Tensor::cross_entropy_rows_backward`] (one pass), or `Var` ops
    /// under `create_graph`.
    ///
    /// ```
    /// use autograd::Var;
    /// use tensor_core::{ClassLossOptions, Tensor};
    /// let x = Var::param(Tensor::from_vec(vec![0.0f64, 0.0], [1, 2])?)?;
    /// let t = Tensor::from_vec(vec![1i64], [1])?;
    /// x.cross_entropy_rows(&t, &ClassLossOptions::default())?.sum(&[], false)?.backward()?;
    /// assert_eq!(x.grad().unwrap().to_vec::<f64>()?, vec![0.5, -0.5]);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn cross_entropy_rows(&self, target: &Tensor, o: &ClassLossOptions) -> Result<Var> {
        let (loss, lse) = self.tensor().cross_entropy_rows(target, o)?;
        if !should_record(&[self]) {
            return Ok(Var::from(loss));
        }
        let x = SavedVar::new(self);
        let (t, o) = (target.clone(), o.clone());
        Ok(record("cross_entropy", loss, &[self], move |g, _| {
            let x = x.get()?;
            let dx = if is_grad_enabled() {
                // Differentiable again: g (softmax(x) sum_c K - K).
                let cd = compute_dtype(x.dtype());
                let k = t.cross_entropy_targets(x.dims()[1], &o, cd)?;
                let ksum = k.sum(&[1], true)?;
                let p = x.to_dtype(cd)?.softmax(1)?;
                g.to_dtype(cd)?.reshape(&[-1, 1])?.mul(&p.mul_t(&ksum)?.sub(&Var::from(k))?)?.to_dtype(x.dtype())?
            } else {
                Var::from(x.tensor().cross_entropy_rows_backward(&lse, &t, g.tensor(), &o)?)
            };
            Ok(smallvec![Some(dx)])
        }))
    }
}
