//! Transformer layers, PyTorch's `nn.TransformerEncoderLayer`, `TransformerDecoderLayer`,
//! `TransformerEncoder`, `TransformerDecoder` and `Transformer`.
//!
//! Several inputs and masks follow the crate's one rule (see [`MultiheadAttention`]):
//! [`Forward`] where one input is the common case, and `forward_with(inputs..,
//! &masks)` with a masks struct whose fields are PyTorch's keyword arguments.

use autograd::Var;
use tensor_core::{Error, Result, Tensor};

use super::attention::{MhaConfig, MhaOptions, MultiheadAttention};
use super::dropout::Dropout;
use super::linear::Linear;
use super::norm::LayerNorm;
use crate::init;
use crate::module::{Forward, Module, Visitor};

/// The feed-forward activation of a transformer layer (PyTorch's `activation="relu"`
/// or `"gelu"`; GELU is the exact, erf form).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Activation {
    /// `max(x, 0)`.
    #[default]
    ReLU,
    /// `x Φ(x)`.
    GELU,
}

impl Activation {
    fn apply(self, x: &Var) -> Result<Var> {
        match self {
            Activation::ReLU => x.relu(),
            Activation::GELU => x.gelu(),
        }
    }
}

/// The options shared by [`TransformerEncoderLayer`], [`TransformerDecoderLayer`] and
/// [`Transformer`]; `Default` is PyTorch's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct TransformerConfig {
    /// Width of the feed-forward hidden layer (2048).
    pub dim_feedforward: usize,
    /// Dropout after attention, inside and after the feed-forward block (0.1).
    pub dropout: f64,
    /// Feed-forward activation (ReLU).
    pub activation: Activation,
    /// LayerNorm epsilon (1e-5).
    pub layer_norm_eps: f64,
    /// Inputs and outputs are `[N, T, E]` rather than `[T, N, E]` (false).
    pub batch_first: bool,
    /// Pre-norm (`x + f(norm(x))`) rather than post-norm (`norm(x + f(x))`) (false).
    pub norm_first: bool,
    /// Biases in the linear layers and the norms (true).
    pub bias: bool,
}

impl Default for TransformerConfig {
    fn default() -> Self {
        TransformerConfig {
            dim_feedforward: 2048,
            dropout: 0.1,
            activation: Activation::ReLU,
            layer_norm_eps: 1e-5,
            batch_first: false,
            norm_first: false,
            bias: true,
        }
    }
}

/// The masks of an encoder layer or encoder (PyTorch's `src_mask`,
/// `src_key_padding_mask`, `is_causal`); see [`MhaOptions`] for their shapes and
/// conventions (boolean `true` = masked out).
#[derive(Clone, Copy, Debug, Default)]
pub struct EncoderMasks<'a> {
    /// `[S, S]` or `[N * nhead, S, S]`.
    pub src_mask: Option<&'a Tensor>,
    /// `[N, S]`.
    pub src_key_padding_mask: Option<&'a Tensor>,
    /// Causal self-attention.
    pub is_causal: bool,
}

/// The masks of a decoder layer or decoder (PyTorch's keyword arguments of the same
/// names); see [`MhaOptions`] for shapes and conventions.
#[derive(Clone, Copy, Debug, Default)]
pub struct DecoderMasks<'a> {
    /// Self-attention mask, `[T, T]` or `[N * nhead, T, T]`.
    pub tgt_mask: Option<&'a Tensor>,
    /// Cross-attention mask, `[T, S]` or `[N * nhead, T, S]`.
    pub memory_mask: Option<&'a Tensor>,
    /// `[N, T]`.
    pub tgt_key_padding_mask: Option<&'a Tensor>,
    /// `[N, S]`.
    pub memory_key_padding_mask: Option<&'a Tensor>,
    /// Causal self-attention.
    pub tgt_is_causal: bool,
    /// Causal cross-attention.
    pub memory_is_causal: bool,
}

fn check_dropout(op: &'static str, p: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&p) {
        return Err(Error::arg(op, format!("dropout probability has to be between 0 and 1, but got {p}")));
    }
    Ok(())
}

fn layer_norm(d_model: usize, cfg: &TransformerConfig) -> Result<LayerNorm> {
    let mut n = LayerNorm::with_options(&[d_model], cfg.layer_norm_eps, true)?;
    if !cfg.bias {
        n.bias = None;
    }
    Ok(n)
}

/// Copies a module's values into a freshly built one (PyTorch's `deepcopy` of a layer).
fn deep_copy<M: Module>(src: &M, fresh: M) -> Result<M> {
    fresh.load_state_dict(&src.state_dict(), true)?;
    fresh.set_training(src.is_training());
    Ok(fresh)
}

/// The feed-forward block: `linear2(dropout(activation(linear1(x))))`.
#[derive(Clone, Debug)]
struct FeedForward<'a> {
    linear1: &'a Linear,
    dropout: &'a Dropout,
    linear2: &'a Linear,
    activation: Activation,
}

impl FeedForward<'_> {
    fn forward(&self, x: &Var) -> Result<Var> {
        let h = self.activation.apply(&self.linear1.forward(x)?)?;
        self.linear2.forward(&self.dropout.forward(&h)?)
    }
}

/// One encoder layer: self-attention then a feed-forward block, each with a residual
/// connection, dropout and a LayerNorm (after, or before with `norm_first`). Names as
/// PyTorch's (`self_attn.in_proj_weight`, `linear1.weight`, `norm1.weight`, ...).
///
/// ```
/// use autograd::Var;
/// use nn::{EncoderMasks, Forward, TransformerConfig, TransformerEncoderLayer};
/// use tensor_core::{DType, Device, Tensor};
/// let cfg = TransformerConfig { dim_feedforward: 32, batch_first: true, ..Default::default() };
/// let layer = TransformerEncoderLayer::new(16, 4, cfg)?;
/// let x = Var::from(Tensor::randn([2, 7, 16], DType::F32, &Device::cpu())?);
/// assert_eq!(layer.forward(&x)?.dims(), &[2, 7, 16]);
/// let y = layer.forward_with(&x, &EncoderMasks { is_causal: true, ..Default::default() })?;
/// assert_eq!(y.dims(), &[2, 7, 16]);
/// # Ok::<(), tensor_core::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct TransformerEncoderLayer {
    /// Self-attention.
    pub self_attn: MultiheadAttention,
    /// `d_model -> dim_feedforward`.
    pub linear1: Linear,
    /// Dropout inside the feed-forward block.
    pub dropout: Dropout,
    /// `dim_feedforward -> d_model`.
    pub linear2: Linear,
    /// The norm of the attention half.
    pub norm1: LayerNorm,
    /// The norm of the feed-forward half.
    pub norm2: LayerNorm,
    /// Dropout after attention.
    pub dropout1: Dropout,
    /// Dropout after the feed-forward block.
    pub dropout2: Dropout,
    /// How the layer was built.
    pub config: TransformerConfig,
    /// Model width.
    pub d_model: usize,
    /// Number of attention heads.
    pub nhead: usize,
}

impl TransformerEncoderLayer {
    /// A layer of width `d_model` with `nhead` heads.
    pub fn new(d_model: usize, nhead: usize, cfg: TransformerConfig) -> Result<TransformerEncoderLayer> {
        check_dropout("TransformerEncoderLayer", cfg.dropout)?;
        let mha =
            MhaConfig { dropout: cfg.dropout, bias: cfg.bias, batch_first: cfg.batch_first, ..Default::default() };
        Ok(TransformerEncoderLayer {
            self_attn: MultiheadAttention::new(d_model, nhead, mha)?,
            linear1: Linear::new(d_model, cfg.dim_feedforward, cfg.bias)?,
            dropout: Dropout::new(cfg.dropout)?,
            linear2: Linear::new(cfg.dim_feedforward, d_model, cfg.bias)?,
            norm1: layer_norm(d_model, &cfg)?,
            norm2: layer_norm(d_model, &cfg)?,
            dropout1: Dropout::new(cfg.dropout)?,
            dropout2: Dropout::new(cfg.dropout)?,
            config: cfg,
            d_model,
            nhead,
        })
    }

    /// The layer on `src` (`[S, N, E]`, `[N, S, E]` with `batch_first`, or `[S, E]`)
    /// with masks.
    pub fn forward_with(&self, src: &Var, masks: &EncoderMasks<'_>) -> Result<Var> {
        let ff = FeedForward {
            linear1: &self.linear1,
            dropout: &self.dropout,
            linear2: &self.linear2,
            activation: self.config.activation,
        };
        let sa = |x: &Var| -> Result<Var> {
            let opts = MhaOptions {
                attn_mask: masks.src_mask,
                key_padding_mask: masks.src_key_padding_mask,
                need_weights: false,
                is_causal: masks.is_causal,
                ..Default::default()
            };
            self.dropout1.forward(&self.self_attn.forward_with(x, x, x, &opts)?.0)
        };
        let ff = |x: &Var| self.dropout2.forward(&ff.forward(x)?);
        if self.config.norm_first {
            let x = src.add(&sa(&self.norm1.forward(src)?)?)?;
            x.add(&ff(&self.norm2.forward(&x)?)?)
        } else {
            let x = self.norm1.forward(&src.add(&sa(src)?)?)?;
            self.norm2.forward(&x.add(&ff(&x)?)?)
        }
    }

    /// An independent copy with the same values (PyTorch's `copy.deepcopy`).
    pub fn deep_copy(&self) -> Result<TransformerEncoderLayer> {
        deep_copy(self, TransformerEncoderLayer::new(self.d_model, self.nhead, self.config.clone())?)
    }
}

impl Module for TransformerEncoderLayer {
    fn visit(&self, v: &mut dyn Visitor) {
        v.module("self_attn", &self.self_attn);
        v.module("linear1", &self.linear1);
        v.module("dropout", &self.dropout);
        v.module("linear2", &self.linear2);
        v.module("norm1", &self.norm1);
        v.module("norm2", &self.norm2);
        v.module("dropout1", &self.dropout1);
        v.module("dropout2", &self.dropout2);
    }
}

impl Forward for TransformerEncoderLayer {
    /// The layer without masks.
    fn forward(&self, x: &Var) -> Result<Var> {
        self.forward_with(x, &EncoderMasks::default())
    }
}

/// One decoder layer: self-attention over the target, cross-attention over the
/// encoder's output (`memory`), then a feed-forward block; residuals, dropout and
/// LayerNorms as [`TransformerEncoderLayer`]. Names as PyTorch's (`multihead_attn.*`,
/// `norm3.*`, ...). It has two inputs, so it has no [`Forward`]: call
/// [`forward_with`](TransformerDecoderLayer::forward_with).
///
/// ```
/// use autograd::Var;
/// use nn::{DecoderMasks, TransformerConfig, TransformerDecoderLayer};
/// use tensor_core::{DType, Device, Tensor};
/// let layer = TransformerDecoderLayer::new(8, 2, TransformerConfig { dim_feedforward: 16, ..Default::default() })?;
/// let tgt = Var::from(Tensor::randn([5, 3, 8], DType::F32, &Device::cpu())?); // [T, N, E]
/// let memory = Var::from(Tensor::randn([9, 3, 8], DType::F32, &Device::cpu())?); // [S, N, E]
/// let y = layer.forward_with(&tgt, &memory, &DecoderMasks { tgt_is_causal: true, ..Default::default() })?;
/// assert_eq!(y.dims(), &[5, 3, 8]);
/// # Ok::<(), tensor_core::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct TransformerDecoderLayer {
    /// Self-attention over the target.
    pub self_attn: MultiheadAttention,
    /// Cross-attention: queries from the target, keys and values from the memory.
    pub multihead_attn: MultiheadAttention,
    /// `d_model -> dim_feedforward`.
    pub linear1: Linear,
    /// Dropout inside the feed-forward block.
    pub dropout: Dropout,
    /// `dim_feedforward -> d_model`.
    pub linear2: Linear,
    /// The norm of the self-attention part.
    pub norm1: LayerNorm,
    /// The norm of the cross-attention part.
    pub norm2: LayerNorm,
    /// The norm of the feed-forward part.
    pub norm3: LayerNorm,
    /// Dropout after self-attention.
    pub dropout1: Dropout,
    /// Dropout after cross-attention.
    pub dropout2: Dropout,
    /// Dropout after the feed-forward block.
    pub dropout3: Dropout,
    /// How the layer was built.
    pub config: TransformerConfig,
    /// Model width.
    pub d_model: usize,
    /// Number of attention heads.
    pub nhead: usize,
}

impl TransformerDecoderLayer {
    /// A layer of width `d_model` with `nhead` heads.
    pub fn new(d_model: usize, nhead: usize, cfg: TransformerConfig) -> Result<TransformerDecoderLayer> {
        check_dropout("TransformerDecoderLayer", cfg.dropout)?;
        let mha =
            MhaConfig { dropout: cfg.dropout, bias: cfg.bias, batch_first: cfg.batch_first, ..Default::default() };
        Ok(TransformerDecoderLayer {
            self_attn: MultiheadAttention::new(d_model, nhead, mha.clone())?,
            multihead_attn: MultiheadAttention::new(d_model, nhead, mha)?,
            linear1: Linear::new(d_model, cfg.dim_feedforward, cfg.bias)?,
            dropout: Dropout::new(cfg.dropout)?,
            linear2: Linear::new(cfg.dim_feedforward, d_model, cfg.bias)?,
            norm1: layer_norm(d_model, &cfg)?,
            norm2: layer_norm(d_model, &cfg)?,
            norm3: layer_norm(d_model, &cfg)?,
            dropout1: Dropout::new(cfg.dropout)?,
            dropout2: Dropout::new(cfg.dropout)?,
            dropout3: Dropout::new(cfg.dropout)?,
            config: cfg,
            d_model,
            nhead,
        })
    }

    /// The layer on `tgt` (`[T, N, E]`, `[N, T, E]` with `batch_first`, or `[T, E]`)
    /// attending to `memory` (`[S, N, E]`, ...) with masks.
    pub fn forward_with(&self, tgt: &Var, memory: &Var, masks: &DecoderMasks<'_>) -> Result<Var> {
        let sa = |x: &Var| -> Result<Var> {
            let opts = MhaOptions {
                attn_mask: masks.tgt_mask,
                key_padding_mask: masks.tgt_key_padding_mask,
                need_weights: false,
                is_causal: masks.tgt_is_causal,
                ..Default::default()
            };
            self.dropout1.forward(&self.self_attn.forward_with(x, x, x, &opts)?.0)
        };
        let ca = |x: &Var| -> Result<Var> {
            let opts = MhaOptions {
                attn_mask: masks.memory_mask,
                key_padding_mask: masks.memory_key_padding_mask,
                need_weights: false,
                is_causal: masks.memory_is_causal,
                ..Default::default()
            };
            self.dropout2.forward(&self.multihead_attn.forward_with(x, memory, memory, &opts)?.0)
        };
        let block = FeedForward {
            linear1: &self.linear1,
            dropout: &self.dropout,
            linear2: &self.linear2,
            activation: self.config.activation,
        };
        let ff = |x: &Var| self.dropout3.forward(&block.forward(x)?);
        if self.config.norm_first {
            let x = tgt.add(&sa(&self.norm1.forward(tgt)?)?)?;
            let x = x.add(&ca(&self.norm2.forward(&x)?)?)?;
            x.add(&ff(&self.norm3.forward(&x)?)?)
        } else {
            let x = self.norm1.forward(&tgt.add(&sa(tgt)?)?)?;
            let x = self.norm2.forward(&x.add(&ca(&x)?)?)?;
            self.norm3.forward(&x.add(&ff(&x)?)?)
        }
    }

    /// An independent copy with the same values (PyTorch's `copy.deepcopy`).
    pub fn deep_copy(&self) -> Result<TransformerDecoderLayer> {
        deep_copy(self, TransformerDecoderLayer::new(self.d_model, self.nhead, self.config.clone())?)
    }
}

impl Module for TransformerDecoderLayer {
    fn visit(&self, v: &mut dyn Visitor) {
        v.module("self_attn", &self.self_attn);
        v.module("multihead_attn", &self.multihead_attn);
        v.module("linear1", &self.linear1);
        v.module("dropout", &self.dropout);
        v.module("linear2", &self.linear2);
        v.module("norm1", &self.norm1);
        v.module("norm2", &self.norm2);
        v.module("norm3", &self.norm3);
        v.module("dropout1", &self.dropout1);
        v.module("dropout2", &self.dropout2);
        v.module("dropout3", &self.dropout3);
    }
}

fn visit_layers<M: Module>(v: &mut dyn Visitor, layers: &[M], norm: &Option<LayerNorm>) {
    v.enter("layers");
    for (i, l) in layers.iter().enumerate() {
        v.module(&i.to_string(), l);
    }
    v.leave();
    if let Some(n) = norm {
        v.module("norm", n);
    }
}

/// A stack of encoder layers and an optional final norm (`layers.0.*`, ...,
/// `norm.*`).
///
/// ```
/// use autograd::Var;
/// use nn::{Forward, Module, TransformerConfig, TransformerEncoder, TransformerEncoderLayer};
/// use tensor_core::{DType, Device, Tensor};
/// let layer = TransformerEncoderLayer::new(8, 2, TransformerConfig { dim_feedforward: 16, ..Default::default() })?;
/// let enc = TransformerEncoder::new(&layer, 3, None)?;
/// assert!(enc.named_parameters().iter().any(|(n, _)| n == "layers.2.linear1.weight"));
/// let y = enc.forward(&Var::from(Tensor::randn([4, 2, 8], DType::F32, &Device::cpu())?))?;
/// assert_eq!(y.dims(), &[4, 2, 8]);
/// # Ok::<(), tensor_core::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct TransformerEncoder {
    /// The layers, applied in order.
    pub layers: Vec<TransformerEncoderLayer>,
    /// Applied after the last layer.
    pub norm: Option<LayerNorm>,
}

impl TransformerEncoder {
    /// `num_layers` independent copies of `layer` (same starting values, as PyTorch's
    /// clones) and an optional final norm.
    pub fn new(
        layer: &TransformerEncoderLayer,
        num_layers: usize,
        norm: Option<LayerNorm>,
    ) -> Result<TransformerEncoder> {
        let layers = (0..num_layers).map(|_| layer.deep_copy()).collect::<Result<_>>()?;
        Ok(TransformerEncoder { layers, norm })
    }

    /// The stack on `src` with masks (the same masks for every layer).
    pub fn forward_with(&self, src: &Var, masks: &EncoderMasks<'_>) -> Result<Var> {
        let mut x = src.clone();
        for l in &self.layers {
            x = l.forward_with(&x, masks)?;
        }
        match &self.norm {
            Some(n) => n.forward(&x),
            None => Ok(x),
        }
    }
}

impl Module for TransformerEncoder {
    fn visit(&self, v: &mut dyn Visitor) {
        visit_layers(v, &self.layers, &self.norm);
    }
}

impl Forward for TransformerEncoder {
    /// The stack without masks.
    fn forward(&self, x: &Var) -> Result<Var> {
        self.forward_with(x, &EncoderMasks::default())
    }
}

/// A stack of decoder layers and an optional final norm.
#[derive(Clone, Debug)]
pub struct TransformerDecoder {
    /// The layers, applied in order.
    pub layers: Vec<TransformerDecoderLayer>,
    /// Applied after the last layer.
    pub norm: Option<LayerNorm>,
}

impl TransformerDecoder {
    /// `num_layers` independent copies of `layer` and an optional final norm.
    pub fn new(
        layer: &TransformerDecoderLayer,
        num_layers: usize,
        norm: Option<LayerNorm>,
    ) -> Result<TransformerDecoder> {
        let layers = (0..num_layers).map(|_| layer.deep_copy()).collect::<Result<_>>()?;
        Ok(TransformerDecoder { layers, norm })
    }

    /// The stack on `tgt` attending to `memory`, with masks.
    pub fn forward_with(&self, tgt: &Var, memory: &Var, masks: &DecoderMasks<'_>) -> Result<Var> {
        let mut x = tgt.clone();
        for l in &self.layers {
            x = l.forward_with(&x, memory, masks)?;
        }
        match &self.norm {
            Some(n) => n.forward(&x),
            None => Ok(x),
        }
    }
}

impl Module for TransformerDecoder {
    fn visit(&self, v: &mut dyn Visitor) {
        visit_layers(v, &self.layers, &self.norm);
    }
}

/// The masks of [`Transformer::forward_with`], PyTorch's keyword arguments.
#[derive(Clone, Copy, Debug, Default)]
pub struct TransformerMasks<'a> {
    /// Encoder self-attention mask `[S, S]`.
    pub src_mask: Option<&'a Tensor>,
    /// Decoder self-attention mask `[T, T]` (e.g. [`generate_square_subsequent_mask`](crate::generate_square_subsequent_mask)).
    pub tgt_mask: Option<&'a Tensor>,
    /// Cross-attention mask `[T, S]`.
    pub memory_mask: Option<&'a Tensor>,
    /// `[N, S]`.
    pub src_key_padding_mask: Option<&'a Tensor>,
    /// `[N, T]`.
    pub tgt_key_padding_mask: Option<&'a Tensor>,
    /// `[N, S]`.
    pub memory_key_padding_mask: Option<&'a Tensor>,
    /// Causal encoder self-attention.
    pub src_is_causal: bool,
    /// Causal decoder self-attention.
    pub tgt_is_causal: bool,
    /// Causal cross-attention.
    pub memory_is_causal: bool,
}

/// The encoder-decoder transformer of "Attention Is All You Need", PyTorch's
/// `nn.Transformer`: an encoder and a decoder stack, each with a final LayerNorm,
/// every matrix re-initialised Xavier-uniform. Names: `encoder.layers.0.*`,
/// `encoder.norm.*`, `decoder.layers.0.*`, `decoder.norm.*`.
///
/// ```
/// use autograd::Var;
/// use nn::{generate_square_subsequent_mask, Transformer, TransformerConfig, TransformerMasks};
/// use tensor_core::{DType, Device, Tensor};
/// let cfg = TransformerConfig { dim_feedforward: 32, batch_first: true, ..Default::default() };
/// let model = Transformer::new(16, 4, 2, 2, cfg)?;
/// let src = Var::from(Tensor::randn([3, 10, 16], DType::F32, &Device::cpu())?);
/// let tgt = Var::from(Tensor::randn([3, 6, 16], DType::F32, &Device::cpu())?);
/// let causal = generate_square_subsequent_mask(6, DType::F32, &Device::cpu())?;
/// let y = model.forward_with(&src, &tgt, &TransformerMasks { tgt_mask: Some(&causal), ..Default::default() })?;
/// assert_eq!(y.dims(), &[3, 6, 16]);
/// # Ok::<(), tensor_core::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Transformer {
    /// The encoder stack (with its final norm).
    pub encoder: TransformerEncoder,
    /// The decoder stack (with its final norm).
    pub decoder: TransformerDecoder,
    /// Model width.
    pub d_model: usize,
    /// Number of heads.
    pub nhead: usize,
    /// Inputs are `[N, T, E]`.
    pub batch_first: bool,
}

impl Transformer {
    /// A transformer of width `d_model` with `nhead` heads, `num_encoder_layers` and
    /// `num_decoder_layers` layers (PyTorch's defaults are 512, 8, 6, 6).
    pub fn new(
        d_model: usize,
        nhead: usize,
        num_encoder_layers: usize,
        num_decoder_layers: usize,
        cfg: TransformerConfig,
    ) -> Result<Transformer> {
        let enc = TransformerEncoderLayer::new(d_model, nhead, cfg.clone())?;
        let dec = TransformerDecoderLayer::new(d_model, nhead, cfg.clone())?;
        let t = Transformer {
            encoder: TransformerEncoder::new(&enc, num_encoder_layers, Some(layer_norm(d_model, &cfg)?))?,
            decoder: TransformerDecoder::new(&dec, num_decoder_layers, Some(layer_norm(d_model, &cfg)?))?,
            d_model,
            nhead,
            batch_first: cfg.batch_first,
        };
        for (_, p) in t.named_parameters() {
            if p.dims().len() > 1 {
                init::xavier_uniform_(&p, 1.0)?;
            }
        }
        Ok(t)
    }

    /// Encodes `src` and decodes `tgt` against it: `[S, N, E]` and `[T, N, E]`
    /// (`[N, S, E]` and `[N, T, E]` with `batch_first`, or unbatched `[S, E]` and
    /// `[T, E]`), giving `[T, N, E]`.
    pub fn forward_with(&self, src: &Var, tgt: &Var, masks: &TransformerMasks<'_>) -> Result<Var> {
        const OP: &str = "Transformer";
        if src.rank() != tgt.rank() || !(2..=3).contains(&src.rank()) {
            return Err(Error::shape(OP, src.dims(), tgt.dims(), "src and tgt must both be rank 3 (or both rank 2)"));
        }
        let b = if self.batch_first { 0 } else { 1 };
        if src.rank() == 3 && src.dims()[b] != tgt.dims()[b] {
            return Err(Error::shape(OP, src.dims(), tgt.dims(), "the batch number of src and tgt must be equal"));
        }
        let e = src.rank() - 1;
        if src.dims()[e] != self.d_model || tgt.dims()[e] != self.d_model {
            return Err(Error::shape(
                OP,
                src.dims(),
                tgt.dims(),
                format!("the feature number of src and tgt must be equal to d_model ({})", self.d_model),
            ));
        }
        let enc = EncoderMasks {
            src_mask: masks.src_mask,
            src_key_padding_mask: masks.src_key_padding_mask,
            is_causal: masks.src_is_causal,
        };
        let memory = self.encoder.forward_with(src, &enc)?;
        let dec = DecoderMasks {
            tgt_mask: masks.tgt_mask,
            memory_mask: masks.memory_mask,
            tgt_key_padding_mask: masks.tgt_key_padding_mask,
            memory_key_padding_mask: masks.memory_key_padding_mask,
            tgt_is_causal: masks.tgt_is_causal,
            memory_is_causal: masks.memory_is_causal,
        };
        self.decoder.forward_with(tgt, &memory, &dec)
    }
}

impl Module for Transformer {
    fn visit(&self, v: &mut dyn Visitor) {
        v.module("encoder", &self.encoder);
        v.module("decoder", &self.decoder);
    }
}
