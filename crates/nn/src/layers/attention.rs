//! Multi-head attention, PyTorch's `nn.MultiheadAttention`.
//!
//! A layer with several inputs keeps the one-input [`Forward`] for its common case
//! (self-attention of `x`) and adds an inherent `forward_with(inputs.., &options)`
//! whose options struct has PyTorch's keyword arguments as fields with `Default`s;
//! the transformer layers follow the same rule.

use autograd::Var;
use tensor_core::{AttentionOpts, DType, Error, Result, Tensor};

use super::linear::Linear;
use super::{check_size, full_param};
use crate::init;
use crate::module::{Forward, Module, Param, Training, Visitor};

const OP: &str = "MultiheadAttention";

/// How a [`MultiheadAttention`] is built; `Default` is PyTorch's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct MhaConfig {
    /// Dropout on the attention weights (training only).
    pub dropout: f64,
    /// Biases on the input and output projections.
    pub bias: bool,
    /// Learned `bias_k`/`bias_v` appended to the keys and values as one extra position.
    pub add_bias_kv: bool,
    /// A zero key and value appended (after the heads are split) as one extra position.
    pub add_zero_attn: bool,
    /// Feature size of the keys (`None` = `embed_dim`).
    pub kdim: Option<usize>,
    /// Feature size of the values (`None` = `embed_dim`).
    pub vdim: Option<usize>,
    /// Inputs and output are `[N, L, E]` instead of `[L, N, E]`.
    pub batch_first: bool,
}

impl Default for MhaConfig {
    fn default() -> Self {
        MhaConfig {
            dropout: 0.0,
            bias: true,
            add_bias_kv: false,
            add_zero_attn: false,
            kdim: None,
            vdim: None,
            batch_first: false,
        }
    }
}

/// The keyword arguments of [`MultiheadAttention::forward_with`]; `Default` is
/// PyTorch's (`need_weights` and `average_attn_weights` true).
#[derive(Clone, Copy, Debug)]
pub struct MhaOptions<'a> {
    /// `[N, S]` (or `[S]` unbatched): boolean, `true` = this key is padding and is
    /// ignored; or a float bias added to the scores.
    pub key_padding_mask: Option<&'a Tensor>,
    /// `[L, S]` or `[N * num_heads, L, S]` (`[num_heads, L, S]` unbatched): boolean,
    /// `true` = this query may **not** attend to this key (PyTorch's MHA convention,
    /// the opposite of `scaled_dot_product_attention`'s); or a float bias.
    pub attn_mask: Option<&'a Tensor>,
    /// Also return the attention weights (computed explicitly, not through the
    /// fused kernel).
    pub need_weights: bool,
    /// Average the returned weights over the heads (`[N, L, S]`) rather than
    /// returning them per head (`[N, num_heads, L, S]`).
    pub average_attn_weights: bool,
    /// Causal attention. With an `attn_mask` it is only a hint (as PyTorch: the mask
    /// is used as given); without one a causal mask is applied (PyTorch requires the
    /// mask here; this accepts the flag alone).
    pub is_causal: bool,
}

impl Default for MhaOptions<'_> {
    fn default() -> Self {
        MhaOptions {
            key_padding_mask: None,
            attn_mask: None,
            need_weights: true,
            average_attn_weights: true,
            is_causal: false,
        }
    }
}

/// Multi-head attention: `softmax(q kᵀ / sqrt(d) + mask) v` over `num_heads` heads of
/// `embed_dim / num_heads` features, with input projections for the query, key and
/// value and an output projection, as PyTorch's `nn.MultiheadAttention` (same
/// parameter names, shapes, initialisation and masks, so a PyTorch state dict loads
/// strictly).
///
/// A query whose keys are all masked out gives a zero output and zero weights (PyTorch
/// gives zeros from its fused path and NaN from the path that returns weights).
///
/// ```
/// use autograd::Var;
/// use nn::{Forward, MhaConfig, MhaOptions, Module, MultiheadAttention};
/// use tensor_core::{DType, Device, Tensor};
/// let mha = MultiheadAttention::new(16, 4, MhaConfig { batch_first: true, ..Default::default() })?;
/// let x = Var::from(Tensor::randn([2, 5, 16], DType::F32, &Device::cpu())?);
/// // Self-attention through `Forward` ...
/// assert_eq!(mha.forward(&x)?.dims(), &[2, 5, 16]);
/// // ... or every argument through `forward_with`: key 3 of each sequence is padding.
/// let pad = Tensor::from_vec(vec![false, false, false, true, false, false, false, false, true, true], [2, 5])?;
/// let opts = MhaOptions { key_padding_mask: Some(&pad), ..Default::default() };
/// let (y, w) = mha.forward_with(&x, &x, &x, &opts)?;
/// assert_eq!((y.dims(), w.unwrap().dims()), (&[2usize, 5, 16][..], &[2usize, 5, 5][..]));
/// assert_eq!(mha.named_parameters()[0].0, "in_proj_weight");
/// # Ok::<(), tensor_core::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct MultiheadAttention {
    /// `[3 * embed_dim, embed_dim]`: the query, key and value projections stacked
    /// (when `kdim == vdim == embed_dim`).
    pub in_proj_weight: Option<Param>,
    /// `[embed_dim, embed_dim]` (when `kdim` or `vdim` differ from `embed_dim`).
    pub q_proj_weight: Option<Param>,
    /// `[embed_dim, kdim]`.
    pub k_proj_weight: Option<Param>,
    /// `[embed_dim, vdim]`.
    pub v_proj_weight: Option<Param>,
    /// `[3 * embed_dim]` (starts at 0).
    pub in_proj_bias: Option<Param>,
    /// `[1, 1, embed_dim]` (with `add_bias_kv`).
    pub bias_k: Option<Param>,
    /// `[1, 1, embed_dim]` (with `add_bias_kv`).
    pub bias_v: Option<Param>,
    /// The output projection (its bias starts at 0).
    pub out_proj: Linear,
    /// Model width.
    pub embed_dim: usize,
    /// Number of heads.
    pub num_heads: usize,
    /// Feature size of the keys.
    pub kdim: usize,
    /// Feature size of the values.
    pub vdim: usize,
    /// Dropout on the attention weights.
    pub dropout: f64,
    /// See [`MhaConfig::add_zero_attn`].
    pub add_zero_attn: bool,
    /// Inputs are `[N, L, E]`.
    pub batch_first: bool,
    /// Train/eval mode (dropout).
    pub training: Training,
}

impl MultiheadAttention {
    /// A layer of width `embed_dim` with `num_heads` heads (`embed_dim` must divide
    /// evenly). Initialised as PyTorch: Xavier-uniform input projections, zero biases,
    /// the output projection a default [`Linear`] with a zero bias, Xavier-normal
    /// `bias_k`/`bias_v`.
    pub fn new(embed_dim: usize, num_heads: usize, cfg: MhaConfig) -> Result<MultiheadAttention> {
        if embed_dim == 0 || num_heads == 0 || !embed_dim.is_multiple_of(num_heads) {
            return Err(Error::arg(
                OP,
                format!("embed_dim ({embed_dim}) must be positive and divisible by num_heads ({num_heads})"),
            ));
        }
        if !(0.0..=1.0).contains(&cfg.dropout) {
            return Err(Error::arg(
                OP,
                format!("dropout probability has to be between 0 and 1, but got {}", cfg.dropout),
            ));
        }
        let (kdim, vdim) = (cfg.kdim.unwrap_or(embed_dim), cfg.vdim.unwrap_or(embed_dim));
        let xavier = |dims: &[usize]| -> Result<Param> {
            let p = full_param(dims, 0.0)?;
            init::xavier_uniform_(&p, 1.0)?;
            Ok(p)
        };
        let (mut in_proj_weight, mut q_proj_weight, mut k_proj_weight, mut v_proj_weight) = (None, None, None, None);
        if kdim == embed_dim && vdim == embed_dim {
            check_size(&[3, embed_dim, embed_dim])?;
            in_proj_weight = Some(xavier(&[3 * embed_dim, embed_dim])?);
        } else {
            q_proj_weight = Some(xavier(&[embed_dim, embed_dim])?);
            k_proj_weight = Some(xavier(&[embed_dim, kdim])?);
            v_proj_weight = Some(xavier(&[embed_dim, vdim])?);
        }
        check_size(&[3, embed_dim])?;
        let in_proj_bias = if cfg.bias { Some(full_param(&[3 * embed_dim], 0.0)?) } else { None };
        let out_proj = Linear::new(embed_dim, embed_dim, cfg.bias)?;
        if let Some(b) = &out_proj.bias {
            init::zeros_(b)?;
        }
        let (bias_k, bias_v) = if cfg.add_bias_kv {
            let normal = || -> Result<Param> {
                let p = full_param(&[1, 1, embed_dim], 0.0)?;
                init::xavier_normal_(&p, 1.0)?;
                Ok(p)
            };
            (Some(normal()?), Some(normal()?))
        } else {
            (None, None)
        };
        Ok(MultiheadAttention {
            in_proj_weight,
            q_proj_weight,
            k_proj_weight,
            v_proj_weight,
            in_proj_bias,
            bias_k,
            bias_v,
            out_proj,
            embed_dim,
            num_heads,
            kdim,
            vdim,
            dropout: cfg.dropout,
            add_zero_attn: cfg.add_zero_attn,
            batch_first: cfg.batch_first,
            training: Training::new(),
        })
    }

    /// Features per head.
    pub fn head_dim(&self) -> usize {
        self.embed_dim / self.num_heads
    }

    /// Attention of `query` (`[L, N, E]`, `[N, L, E]` with `batch_first`, or `[L, E]`
    /// unbatched) over `key` (`[S, N, kdim]`, ...) and `value` (`[S, N, vdim]`, ...).
    /// Returns the output shaped like the query and, with `need_weights`, the
    /// attention weights `[N, L, S]` (or `[N, num_heads, L, S]` without
    /// `average_attn_weights`; no `N` when unbatched).
    pub fn forward_with(
        &self,
        query: &Var,
        key: &Var,
        value: &Var,
        opts: &MhaOptions<'_>,
    ) -> Result<(Var, Option<Var>)> {
        let batched = self.check_inputs(query, key, value)?;
        // Canonical layout: [N, L, E].
        let canon = |x: &Var| -> Result<Var> {
            if !batched {
                x.unsqueeze(0)
            } else if self.batch_first {
                Ok(x.clone())
            } else {
                x.transpose(0, 1)
            }
        };
        let (q_in, k_in, v_in) = (canon(query)?, canon(key)?, canon(value)?);
        let (n, l, s0) = (q_in.dims()[0], q_in.dims()[1], k_in.dims()[1]);
        let (q, mut k, mut v) = self.project(query, key, value, &q_in, &k_in, &v_in)?;
        let mut s = s0;
        let mut mask = self.merged_mask(opts, batched, n, l, s0, q.dtype())?;
        if let (Some(bk), Some(bv)) = (&self.bias_k, &self.bias_v) {
            let e = self.embed_dim as isize;
            k = Var::cat(&[k, bk.var().expand(&[n as isize, 1, e])?], 1)?;
            v = Var::cat(&[v, bv.var().expand(&[n as isize, 1, e])?], 1)?;
            s += 1;
            mask = pad_key(mask, q.dtype())?;
        }
        let (h, d) = (self.num_heads as isize, self.head_dim() as isize);
        let heads = |x: &Var, len: usize| x.view(&[n as isize, len as isize, h, d])?.transpose(1, 2);
        let (q, mut k, mut v) = (heads(&q, l)?, heads(&k, s)?, heads(&v, s)?);
        if self.add_zero_attn {
            let z = Var::from(Tensor::zeros([n, self.num_heads, 1, self.head_dim()], q.dtype(), q.device())?);
            k = Var::cat(&[k, z.clone()], 2)?;
            v = Var::cat(&[v, z], 2)?;
            mask = pad_key(mask, q.dtype())?;
        }
        let p = if self.training.get() { self.dropout } else { 0.0 };
        // Causal without a mask of the user's and nothing appended: the fused path's flag.
        let causal_flag = opts.is_causal && mask.is_none() && opts.attn_mask.is_none() && s == s0;
        let mask = match (&mask, opts.is_causal && opts.attn_mask.is_none() && !causal_flag) {
            (m, false) => m.clone(),
            (m, true) => {
                // Causal over the original keys, the appended positions stay visible.
                let causal = causal_bias(l, s0, s, q.dtype(), q.device())?;
                Some(match m {
                    Some(m) => m.add(&causal)?,
                    None => causal,
                })
            }
        };
        let (out, weights) = if opts.need_weights {
            let scale = 1.0 / (self.head_dim() as f64).sqrt();
            let mut scores = q.matmul(&k.transpose(-2, -1)?)?.mul_scalar(scale)?;
            if let Some(m) = &mask {
                scores = scores.add(&Var::from(m.clone()))?;
            }
            if causal_flag {
                let keep = Tensor::ones([l, s], DType::Bool, q.device())?.tril(0)?;
                scores = scores.masked_fill(&keep.logical_not()?, f64::NEG_INFINITY)?;
            }
            let w = if scores.numel() == 0 {
                scores
            } else {
                let dead = scores.tensor().amax(&[-1], true)?.eq_scalar(f64::NEG_INFINITY)?;
                scores.masked_fill(&dead, 0.0)?.softmax(-1)?.masked_fill(&dead, 0.0)?
            };
            let w = w.dropout(p, true)?;
            let out = w.matmul(&v)?;
            let w = if opts.average_attn_weights { w.mean(&[1], false)? } else { w };
            (out, Some(if batched { w } else { w.squeeze(0)? }))
        } else {
            let sdpa = AttentionOpts { attn_mask: mask.as_ref(), dropout_p: p, is_causal: causal_flag, scale: None };
            (Var::scaled_dot_product_attention(&q, &k, &v, sdpa)?, None)
        };
        let out = out.transpose(1, 2)?.reshape(&[n as isize, l as isize, self.embed_dim as isize])?;
        let out = self.out_proj.forward(&out)?;
        let out = if !batched {
            out.squeeze(0)?
        } else if self.batch_first {
            out
        } else {
            out.transpose(0, 1)?
        };
        Ok((out, weights))
    }

    /// Checks ranks and feature sizes; returns whether the inputs are batched.
    fn check_inputs(&self, query: &Var, key: &Var, value: &Var) -> Result<bool> {
        let r = query.rank();
        if r != 2 && r != 3 {
            return Err(Error::invalid_shape(
                OP,
                query.dims(),
                "expected a query of rank 3 ([L, N, E] or batch_first [N, L, E]) or 2 (unbatched [L, E])",
            ));
        }
        if key.rank() != r || value.rank() != r {
            return Err(Error::shape(
                OP,
                key.dims(),
                value.dims(),
                format!("key and value must have the query's rank {r}"),
            ));
        }
        for (name, t, want) in [("query", query, self.embed_dim), ("key", key, self.kdim), ("value", value, self.vdim)]
        {
            if t.dims()[r - 1] != want {
                return Err(Error::invalid_shape(OP, t.dims(), format!("the {name}'s last dim must be {want}")));
            }
        }
        if key.dims()[..r - 1] != value.dims()[..r - 1] {
            return Err(Error::shape(
                OP,
                key.dims(),
                value.dims(),
                "key and value must agree in every dim but the last",
            ));
        }
        if r == 3 {
            let b = if self.batch_first { 0 } else { 1 };
            if query.dims()[b] != key.dims()[b] {
                return Err(Error::shape(OP, query.dims(), key.dims(), "query and key must have the same batch size"));
            }
        }
        Ok(r == 3)
    }

    /// The three input projections, `[N, L|S, E]` each; one GEMM when the query, key
    /// and value are the same variable.
    fn project(&self, query: &Var, key: &Var, value: &Var, q: &Var, k: &Var, v: &Var) -> Result<(Var, Var, Var)> {
        let e = self.embed_dim as isize;
        let bias = |i: isize| -> Result<Option<Var>> {
            self.in_proj_bias.as_ref().map(|b| b.var().narrow(0, i * e, self.embed_dim)).transpose()
        };
        let lin = |x: &Var, w: &Var, b: Option<Var>| -> Result<Var> {
            let y = x.matmul(&w.t()?)?;
            match b {
                Some(b) => y.add(&b),
                None => Ok(y),
            }
        };
        match (&self.in_proj_weight, &self.q_proj_weight, &self.k_proj_weight, &self.v_proj_weight) {
            (Some(w), ..) => {
                let w = w.var();
                if query.same(key) && key.same(value) {
                    let b = self.in_proj_bias.as_ref().map(Param::var);
                    let qkv = lin(q, &w, b)?.split(self.embed_dim, 2)?;
                    return Ok((qkv[0].clone(), qkv[1].clone(), qkv[2].clone()));
                }
                let part = |i: isize| w.narrow(0, i * e, self.embed_dim);
                Ok((lin(q, &part(0)?, bias(0)?)?, lin(k, &part(1)?, bias(1)?)?, lin(v, &part(2)?, bias(2)?)?))
            }
            (None, Some(wq), Some(wk), Some(wv)) => {
                Ok((lin(q, &wq.var(), bias(0)?)?, lin(k, &wk.var(), bias(1)?)?, lin(v, &wv.var(), bias(2)?)?))
            }
            _ => Err(Error::arg(OP, "the layer has neither in_proj_weight nor q/k/v_proj_weight")),
        }
    }

    /// The user's masks as one float bias broadcastable to `[N, H, L, S]`.
    fn merged_mask(
        &self,
        opts: &MhaOptions<'_>,
        batched: bool,
        n: usize,
        l: usize,
        s: usize,
        dtype: DType,
    ) -> Result<Option<Tensor>> {
        let h = self.num_heads;
        let attn = match opts.attn_mask {
            None => None,
            Some(m) => {
                let m4 = match (m.dims(), batched) {
                    (&[ml, ms], _) if (ml, ms) == (l, s) => m.reshape(&[1, 1, l as isize, s as isize])?,
                    (&[b, ml, ms], true) if (b, ml, ms) == (n * h, l, s) => {
                        m.reshape(&[n as isize, h as isize, l as isize, s as isize])?
                    }
                    (&[b, ml, ms], false) if (b, ml, ms) == (h, l, s) => {
                        m.reshape(&[1, h as isize, l as isize, s as isize])?
                    }
                    _ => {
                        let want = if batched {
                            format!("[{l}, {s}] or [{}, {l}, {s}]", n * h)
                        } else {
                            format!("[{l}, {s}] or [{h}, {l}, {s}]")
                        };
                        return Err(Error::invalid_shape(OP, m.dims(), format!("attn_mask must be {want}")));
                    }
                };
                Some(to_bias("attn_mask", &m4, dtype)?)
            }
        };
        let kpm = match opts.key_padding_mask {
            None => None,
            Some(m) => {
                let ok = if batched { m.dims() == [n, s] } else { m.dims() == [s] };
                if !ok {
                    let want = if batched { format!("[{n}, {s}]") } else { format!("[{s}]") };
                    return Err(Error::invalid_shape(OP, m.dims(), format!("key_padding_mask must be {want}")));
                }
                let m4 = m.reshape(&[if batched { n as isize } else { 1 }, 1, 1, s as isize])?;
                Some(to_bias("key_padding_mask", &m4, dtype)?)
            }
        };
        Ok(match (attn, kpm) {
            (Some(a), Some(k)) => Some(a.add(&k)?),
            (a, k) => a.or(k),
        })
    }
}

/// A mask as an additive float bias: boolean `true` (masked) gives `-inf`.
fn to_bias(name: &str, m: &Tensor, dtype: DType) -> Result<Tensor> {
    match m.dtype() {
        DType::Bool => Tensor::zeros(m.dims().to_vec(), dtype, m.device())?.masked_fill(m, f64::NEG_INFINITY),
        d if d.is_float() => m.to_dtype(dtype),
        d => Err(Error::arg(OP, format!("{name} must be boolean or floating point, got {d}"))),
    }
}

/// Appends one visible key position (a zero column) to a bias.
fn pad_key(mask: Option<Tensor>, dtype: DType) -> Result<Option<Tensor>> {
    mask.map(|m| {
        let mut dims = m.dims().to_vec();
        *dims.last_mut().expect("a 4-d mask") = 1;
        Tensor::cat(&[m.clone(), Tensor::zeros(dims, dtype, m.device())?], -1)
    })
    .transpose()
}

/// `[L, S]`: `-inf` where key `j < s0` lies after query `i`, 0 elsewhere.
fn causal_bias(l: usize, s0: usize, s: usize, dtype: DType, device: &tensor_core::Device) -> Result<Tensor> {
    let mut data = vec![0.0f64; l * s];
    for i in 0..l {
        for j in (i + 1).min(s0)..s0 {
            data[i * s + j] = f64::NEG_INFINITY;
        }
    }
    Tensor::from_vec(data, [l, s])?.to_dtype(dtype)?.to_device(device)
}

impl Module for MultiheadAttention {
    fn visit(&self, v: &mut dyn Visitor) {
        v.opt_param("in_proj_weight", &self.in_proj_weight);
        v.opt_param("q_proj_weight", &self.q_proj_weight);
        v.opt_param("k_proj_weight", &self.k_proj_weight);
        v.opt_param("v_proj_weight", &self.v_proj_weight);
        v.opt_param("in_proj_bias", &self.in_proj_bias);
        v.opt_param("bias_k", &self.bias_k);
        v.opt_param("bias_v", &self.bias_v);
        v.module("out_proj", &self.out_proj);
        v.training(&self.training);
    }
}

impl Forward for MultiheadAttention {
    /// Self-attention of `x` (query = key = value), no masks, no weights returned.
    fn forward(&self, x: &Var) -> Result<Var> {
        let opts = MhaOptions { need_weights: false, ..Default::default() };
        Ok(self.forward_with(x, x, x, &opts)?.0)
    }
}

/// PyTorch's `nn.Transformer.generate_square_subsequent_mask(sz)`: a float `[sz, sz]`
/// mask, `-inf` above the diagonal and 0 on and below it (query `i` sees keys `0..=i`).
///
/// ```
/// let m = nn::generate_square_subsequent_mask(3, tensor_core::DType::F32, &tensor_core::Device::cpu())?;
/// assert_eq!(m.to_vec::<f32>()?, vec![0.0, f32::NEG_INFINITY, f32::NEG_INFINITY, 0.0, 0.0, f32::NEG_INFINITY, 0.0, 0.0, 0.0]);
/// # Ok::<(), tensor_core::Error>(())
/// ```
pub fn generate_square_subsequent_mask(sz: usize, dtype: DType, device: &tensor_core::Device) -> Result<Tensor> {
    check_size(&[sz, sz])?;
    if !dtype.is_float() {
        return Err(Error::arg(
            "generate_square_subsequent_mask",
            format!("expected a floating point dtype, got {dtype}"),
        ));
    }
    causal_bias(sz, sz, sz, dtype, device)
}
