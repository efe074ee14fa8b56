//! The character language model trainer behind `cargo run --release --example char_lm`
//! and its test: the tiny Shakespeare text, a nanoGPT-style GPT, the training recipe
//! (nanoGPT's CPU recipe for this data), evaluation on fixed batches and sampling.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use autograd::{no_grad, Var};
use nn::loss::{cross_entropy, CrossEntropyOptions};
use nn::{init, Embedding, Forward, LayerNorm, Linear, LstmConfig, Module, Param, Visitor, GELU, LSTM};
use optim::{clip_grad_norm_, AdamW, AdamWOptions, Optimizer};
use tensor_core::{AttentionOpts, DType, Device, Error, Generator, Result, Tensor};

use data::metrics::MetricsLogger;

/// Path of `data/tinyshakespeare.txt.gz`: `$CHAR_LM_DATA` when set, else this
/// repository's copy (else `data/tinyshakespeare.txt.gz` under the working directory,
/// for binaries moved off the machine that built them).
pub fn default_path() -> PathBuf {
    if let Some(p) = std::env::var_os("CHAR_LM_DATA") {
        return p.into();
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/tinyshakespeare.txt.gz");
    if built.exists() {
        built
    } else {
        Path::new("data/tinyshakespeare.txt.gz").to_path_buf()
    }
}

/// A text as character tokens, split as nanoGPT does: the first 90% trains, the rest
/// validates.
#[derive(Clone, Debug)]
pub struct CharData {
    /// The distinct bytes of the text, sorted: token `i` is `vocab[i]`.
    pub vocab: Vec<u8>,
    /// Training tokens.
    pub train: Vec<i64>,
    /// Validation tokens.
    pub val: Vec<i64>,
}

/// Which split a batch comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// The first 90%.
    Train,
    /// The last 10%.
    Val,
}

impl CharData {
    /// Tokenises `text` (bytes as characters) and splits it.
    pub fn from_text(text: &[u8]) -> Result<CharData> {
        let mut seen = [false; 256];
        for &b in text {
            seen[b as usize] = true;
        }
        let vocab: Vec<u8> = (0..=255u8).filter(|&b| seen[b as usize]).collect();
        let mut index = [0i64; 256];
        for (i, &b) in vocab.iter().enumerate() {
            index[b as usize] = i as i64;
        }
        let tokens: Vec<i64> = text.iter().map(|&b| index[b as usize]).collect();
        let n_train = tokens.len() * 9 / 10;
        let (train, val) = tokens.split_at(n_train);
        Ok(CharData { vocab, train: train.to_vec(), val: val.to_vec() })
    }

    /// Reads a gzip-compressed text file.
    pub fn load(path: &Path) -> Result<CharData> {
        let io = |e: std::io::Error| Error::Io { path: path.display().to_string(), source: e };
        let f = std::fs::File::open(path).map_err(io)?;
        let mut text = Vec::new();
        flate2::read::GzDecoder::new(f).read_to_end(&mut text).map_err(io)?;
        CharData::from_text(&text)
    }

    /// Number of distinct tokens.
    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    /// Tokens of `s` (an error for a character outside the vocabulary).
    pub fn encode(&self, s: &str) -> Result<Vec<i64>> {
        s.bytes()
            .map(|b| {
                self.vocab.iter().position(|&v| v == b).map(|i| i as i64).ok_or_else(|| {
                    Error::arg("CharData::encode", format!("character {:?} is not in the vocabulary", b as char))
                })
            })
            .collect()
    }

    /// The text of `tokens` (out-of-range tokens as `?`).
    pub fn decode(&self, tokens: &[i64]) -> String {
        tokens
            .iter()
            .map(|&t| usize::try_from(t).ok().and_then(|i| self.vocab.get(i)).map_or('?', |&b| b as char))
            .collect()
    }

    fn tokens(&self, split: Split) -> &[i64] {
        match split {
            Split::Train => &self.train,
            Split::Val => &self.val,
        }
    }

    /// `batch` random windows of `context + 1` tokens from `split`: inputs `[batch,
    /// context]` and next-token targets `[batch, context]` (I64, on the CPU).
    pub fn batch(&self, split: Split, batch: usize, context: usize, g: &mut Generator) -> Result<(Tensor, Tensor)> {
        let data = self.tokens(split);
        if data.len() <= context + 1 {
            return Err(Error::arg(
                "CharData::batch",
                format!("{} tokens cannot hold a window of {}", data.len(), context + 1),
            ));
        }
        let (mut x, mut y) = (Vec::with_capacity(batch * context), Vec::with_capacity(batch * context));
        for _ in 0..batch {
            let i = g.below((data.len() - context - 1) as u64) as usize;
            x.extend_from_slice(&data[i..i + context]);
            y.extend_from_slice(&data[i + 1..i + context + 1]);
        }
        Ok((Tensor::from_vec(x, [batch, context])?, Tensor::from_vec(y, [batch, context])?))
    }
}

/// The shape of the GPT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GptConfig {
    /// Number of tokens.
    pub vocab_size: usize,
    /// Longest context (rows of the position table).
    pub block_size: usize,
    /// Number of transformer blocks.
    pub n_layer: usize,
    /// Attention heads per block.
    pub n_head: usize,
    /// Width of the residual stream.
    pub n_embd: usize,
}

/// Causal self-attention: one `[C, 3C]` projection to queries, keys and values, `n_head`
/// heads through `scaled_dot_product_attention(is_causal)`, and an output projection.
#[derive(Clone, Debug)]
pub struct CausalSelfAttention {
    /// Queries, keys and values in one projection.
    pub c_attn: Linear,
    /// The output projection (a residual projection: scaled init).
    pub c_proj: Linear,
    /// Number of heads.
    pub n_head: usize,
}

impl Module for CausalSelfAttention {
    fn visit(&self, v: &mut dyn Visitor) {
        v.module("c_attn", &self.c_attn);
        v.module("c_proj", &self.c_proj);
    }
}

impl Forward for CausalSelfAttention {
    /// `[B, T, C] -> [B, T, C]`.
    fn forward(&self, x: &Var) -> Result<Var> {
        let (b, t, c) = match *x.dims() {
            [b, t, c] => (b as isize, t as isize, c),
            _ => return Err(Error::arg("CausalSelfAttention", format!("expected [B, T, C], got {:?}", x.dims()))),
        };
        let h = self.n_head as isize;
        let d = (c / self.n_head) as isize;
        let qkv = self.c_attn.forward(x)?.split(c, 2)?;
        let heads = |v: &Var| v.view(&[b, t, h, d])?.transpose(1, 2);
        let (q, k, v) = (heads(&qkv[0])?, heads(&qkv[1])?, heads(&qkv[2])?);
        let opts = AttentionOpts { is_causal: true, ..Default::default() };
        let y = Var::scaled_dot_product_attention(&q, &k, &v, opts)?;
        self.c_proj.forward(&y.transpose(1, 2)?.reshape(&[b, t, c as isize])?)
    }
}

/// The feed-forward half of a block: `C -> 4C`, GELU, `4C -> C`.
#[derive(Clone, Debug)]
pub struct Mlp {
    /// The widening layer.
    pub c_fc: Linear,
    /// The narrowing layer (a residual projection: scaled init).
    pub c_proj: Linear,
}

impl Module for Mlp {
    fn visit(&self, v: &mut dyn Visitor) {
        v.module("c_fc", &self.c_fc);
        v.module("c_proj", &self.c_proj);
    }
}

impl Forward for Mlp {
    fn forward(&self, x: &Var) -> Result<Var> {
        self.c_proj.forward(&GELU::new().forward(&self.c_fc.forward(x)?)?)
    }
}

/// A pre-norm transformer block: `x + attn(ln_1(x))`, then `x + mlp(ln_2(x))`.
#[derive(Clone, Debug)]
pub struct Block {
    /// Norm before attention.
    pub ln_1: LayerNorm,
    /// Causal self-attention.
    pub attn: CausalSelfAttention,
    /// Norm before the MLP.
    pub ln_2: LayerNorm,
    /// The MLP.
    pub mlp: Mlp,
}

impl Module for Block {
    fn visit(&self, v: &mut dyn Visitor) {
        v.module("ln_1", &self.ln_1);
        v.module("attn", &self.attn);
        v.module("ln_2", &self.ln_2);
        v.module("mlp", &self.mlp);
    }
}

impl Forward for Block {
    fn forward(&self, x: &Var) -> Result<Var> {
        let x = x.add(&self.attn.forward(&self.ln_1.forward(x)?)?)?;
        x.add(&self.mlp.forward(&self.ln_2.forward(&x)?)?)
    }
}

/// A decoder-only transformer (nanoGPT's `GPT`): token and position embeddings, pre-norm
/// blocks, a final LayerNorm, and an output layer tied to the token embedding.
/// Parameter names follow nanoGPT's (`transformer.h.0.attn.c_attn.weight`, ...).
#[derive(Clone, Debug)]
pub struct Gpt {
    /// The shape.
    pub config: GptConfig,
    /// Token embedding, also the output layer's weight.
    pub wte: Embedding,
    /// Learned position embedding.
    pub wpe: Embedding,
    /// The blocks.
    pub h: Vec<Block>,
    /// Final norm.
    pub ln_f: LayerNorm,
}

struct Transformer<'a>(&'a Gpt);

impl Module for Transformer<'_> {
    fn visit(&self, v: &mut dyn Visitor) {
        let g = self.0;
        v.module("wte", &g.wte);
        v.module("wpe", &g.wpe);
        for (i, b) in g.h.iter().enumerate() {
            v.module(&format!("h.{i}"), b);
        }
        v.module("ln_f", &g.ln_f);
    }
}

impl Module for Gpt {
    fn visit(&self, v: &mut dyn Visitor) {
        v.module("transformer", &Transformer(self));
    }
}

impl Gpt {
    /// A model initialised as nanoGPT's: linear and embedding weights `N(0, 0.02)`, the
    /// residual projections `N(0, 0.02 / sqrt(2 n_layer))`, biases 0, norms 1 and 0
    /// (from the global seeded generator).
    pub fn new(config: GptConfig) -> Result<Gpt> {
        let c = config.n_embd;
        if config.n_head == 0 || !c.is_multiple_of(config.n_head) {
            return Err(Error::arg("Gpt", format!("n_embd {c} must be a multiple of n_head {}", config.n_head)));
        }
        let block = || -> Result<Block> {
            Ok(Block {
                ln_1: LayerNorm::new(&[c])?,
                attn: CausalSelfAttention {
                    c_attn: Linear::new(c, 3 * c, true)?,
                    c_proj: Linear::new(c, c, true)?,
                    n_head: config.n_head,
                },
                ln_2: LayerNorm::new(&[c])?,
                mlp: Mlp { c_fc: Linear::new(c, 4 * c, true)?, c_proj: Linear::new(4 * c, c, true)? },
            })
        };
        let gpt = Gpt {
            config,
            wte: Embedding::new(config.vocab_size, c, None)?,
            wpe: Embedding::new(config.block_size, c, None)?,
            h: (0..config.n_layer).map(|_| block()).collect::<Result<_>>()?,
            ln_f: LayerNorm::new(&[c])?,
        };
        let resid_std = 0.02 / ((2 * config.n_layer) as f64).sqrt();
        gpt.apply(&mut |name, p| {
            if name.ends_with("c_proj.weight") {
                init::normal_(p, 0.0, resid_std)
            } else if name.contains(".ln_") {
                Ok(())
            } else if name.ends_with(".bias") {
                init::zeros_(p)
            } else {
                init::normal_(p, 0.0, 0.02)
            }
        })?;
        Ok(gpt)
    }
}

impl Forward for Gpt {
    /// I64 tokens `[B, T]` (T at most `block_size`) to logits `[B, T, vocab_size]`.
    fn forward(&self, idx: &Var) -> Result<Var> {
        let t = match *idx.dims() {
            [_, t] if t <= self.config.block_size => t,
            _ => {
                return Err(Error::arg(
                    "Gpt",
                    format!("expected tokens [B, T] with T <= {}, got {:?}", self.config.block_size, idx.dims()),
                ))
            }
        };
        let pos = self.wpe.weight.var().narrow(0, 0, t)?;
        let mut x = self.wte.forward(idx)?.add(&pos)?;
        for b in &self.h {
            x = b.forward(&x)?;
        }
        let x = self.ln_f.forward(&x)?;
        x.matmul(&self.wte.weight.var().t()?)
    }
}

/// A recurrent character model of about the GPT's size (PyTorch's
/// `word_language_model` example): token embedding, a stacked LSTM, a linear decoder.
/// Names: `encoder.weight`, `rnn.weight_ih_l0`, ..., `decoder.weight`, `decoder.bias`.
#[derive(Clone, Debug)]
pub struct LstmLm {
    /// Token embedding `[vocab, n_embd]`.
    pub encoder: Embedding,
    /// The recurrence (`batch_first`).
    pub rnn: LSTM,
    /// Hidden state to logits.
    pub decoder: Linear,
}

impl LstmLm {
    /// A model with `n_embd`-wide embeddings and `num_layers` LSTM layers of `hidden`
    /// units; embedding and decoder weights `U(-0.1, 0.1)`, decoder bias 0, the LSTM
    /// PyTorch's default (from the global seeded generator).
    pub fn new(vocab_size: usize, n_embd: usize, hidden: usize, num_layers: usize) -> Result<LstmLm> {
        let cfg = LstmConfig { num_layers, batch_first: true, ..Default::default() };
        let m = LstmLm {
            encoder: Embedding::new(vocab_size, n_embd, None)?,
            rnn: LSTM::new(n_embd, hidden, cfg)?,
            decoder: Linear::new(hidden, vocab_size, true)?,
        };
        init::uniform_(&m.encoder.weight, -0.1, 0.1)?;
        init::uniform_(&m.decoder.weight, -0.1, 0.1)?;
        if let Some(b) = &m.decoder.bias {
            init::zeros_(b)?;
        }
        Ok(m)
    }
}

impl Module for LstmLm {
    fn visit(&self, v: &mut dyn Visitor) {
        v.module("encoder", &self.encoder);
        v.module("rnn", &self.rnn);
        v.module("decoder", &self.decoder);
    }
}

impl Forward for LstmLm {
    /// I64 tokens `[B, T]` to logits `[B, T, vocab_size]` (from a zero state).
    fn forward(&self, idx: &Var) -> Result<Var> {
        if idx.rank() != 2 {
            return Err(Error::arg("LstmLm", format!("expected tokens [B, T], got {:?}", idx.dims())));
        }
        self.decoder.forward(&self.rnn.forward(&self.encoder.forward(idx)?)?)
    }
}

/// Which model [`LmConfig::build`] makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LmModel {
    /// The nanoGPT GPT ([`Gpt`]).
    #[default]
    Gpt,
    /// The LSTM model ([`LstmLm`]).
    Lstm,
}

/// The parameters weight decay applies to (matrices: dim >= 2) and the others.
pub fn decay_groups(m: &dyn Module) -> (Vec<Var>, Vec<Var>) {
    let (mut decay, mut rest) = (Vec::new(), Vec::new());
    for (_, p) in m.named_parameters() {
        if p.dims().len() >= 2 {
            decay.push(p.var())
        } else {
            rest.push(p.var())
        }
    }
    (decay, rest)
}

/// nanoGPT's schedule: linear warm-up over `warmup` iterations, then cosine from `lr`
/// down to `min_lr` at `decay_iters`, flat after.
pub fn lr_at(it: usize, lr: f64, min_lr: f64, warmup: usize, decay_iters: usize) -> f64 {
    if it < warmup {
        return lr * (it + 1) as f64 / (warmup + 1) as f64;
    }
    if it > decay_iters {
        return min_lr;
    }
    let ratio = (it - warmup) as f64 / (decay_iters.saturating_sub(warmup)).max(1) as f64;
    min_lr + 0.5 * (1.0 + (std::f64::consts::PI * ratio).cos()) * (lr - min_lr)
}

/// Settings of a training run (defaults: nanoGPT's CPU recipe for tiny Shakespeare).
#[derive(Clone, Debug)]
pub struct LmConfig {
    /// Training iterations.
    pub iters: usize,
    /// Sequences per batch.
    pub batch_size: usize,
    /// Tokens per sequence.
    pub context: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Final learning rate.
    pub min_lr: f64,
    /// Linear warm-up iterations.
    pub warmup: usize,
    /// AdamW's betas.
    pub betas: (f64, f64),
    /// Weight decay on matrices.
    pub weight_decay: f64,
    /// Gradient norm clip (0: none).
    pub grad_clip: f64,
    /// Evaluate every this many iterations (and after the last).
    pub eval_interval: usize,
    /// Fixed batches per split for evaluation.
    pub eval_batches: usize,
    /// Seed of the weights, batches and samples.
    pub seed: u64,
    /// Where the model and batches live.
    pub device: Device,
    /// Show a progress bar.
    pub progress: bool,
    /// Where the metrics CSV and the curves go (`None`: nothing written).
    pub out_dir: Option<PathBuf>,
    /// Layers, heads and width of the GPT.
    pub n_layer: usize,
    /// Attention heads.
    pub n_head: usize,
    /// Residual width (also the LSTM model's embedding width).
    pub n_embd: usize,
    /// Which model to train.
    pub model: LmModel,
    /// Hidden units per LSTM layer.
    pub lstm_hidden: usize,
    /// LSTM layers.
    pub lstm_layers: usize,
}

impl Default for LmConfig {
    fn default() -> Self {
        LmConfig {
            iters: 2000,
            batch_size: 12,
            context: 64,
            lr: 1e-3,
            min_lr: 1e-4,
            warmup: 100,
            betas: (0.9, 0.99),
            weight_decay: 0.1,
            grad_clip: 1.0,
            eval_interval: 250,
            eval_batches: 20,
            seed: 0,
            device: Device::cpu(),
            progress: false,
            out_dir: None,
            n_layer: 4,
            n_head: 4,
            n_embd: 128,
            model: LmModel::Gpt,
            lstm_hidden: 256,
            lstm_layers: 2,
        }
    }
}

impl LmConfig {
    /// The GPT this run trains, for a vocabulary of `vocab_size` tokens (context
    /// `self.context`).
    pub fn gpt_config(&self, vocab_size: usize) -> GptConfig {
        GptConfig {
            vocab_size,
            block_size: self.context,
            n_layer: self.n_layer,
            n_head: self.n_head,
            n_embd: self.n_embd,
        }
    }

    /// The model this run trains ([`LmConfig::model`]), for `vocab_size` tokens, on
    /// the CPU (from the global seeded generator).
    pub fn build(&self, vocab_size: usize) -> Result<Box<dyn Forward>> {
        Ok(match self.model {
            LmModel::Gpt => Box::new(Gpt::new(self.gpt_config(vocab_size))?),
            LmModel::Lstm => Box::new(LstmLm::new(vocab_size, self.n_embd, self.lstm_hidden, self.lstm_layers)?),
        })
    }

    /// One line naming the model's shape.
    pub fn describe(&self) -> String {
        match self.model {
            LmModel::Gpt => format!("GPT {} layers x {} heads x {} wide", self.n_layer, self.n_head, self.n_embd),
            LmModel::Lstm => {
                format!("LSTM {} layers x {} hidden, embedding {}", self.lstm_layers, self.lstm_hidden, self.n_embd)
            }
        }
    }

    /// The recipe's optimiser for `model`: AdamW with weight decay on the matrices only
    /// ([`decay_groups`]).
    pub fn adamw(&self, model: &dyn Module) -> Result<AdamW> {
        let (decay, rest) = decay_groups(model);
        let opts = |wd| AdamWOptions { lr: self.lr, betas: self.betas, weight_decay: wd, ..Default::default() };
        AdamW::with_groups(vec![(decay, opts(self.weight_decay)), (rest, opts(0.0))])
    }
}

/// What a run measured.
#[derive(Clone, Debug, Default)]
pub struct LmHistory {
    /// `(iteration, train loss, validation loss)` at each evaluation.
    pub evals: Vec<(usize, f64, f64)>,
    /// Wall time of each training step, in seconds.
    pub step_secs: Vec<f64>,
    /// Wall time of the whole run (steps and evaluations), in seconds.
    pub total_secs: f64,
}

impl LmHistory {
    /// The last evaluation's validation loss.
    pub fn final_val_loss(&self) -> Option<f64> {
        self.evals.last().map(|e| e.2)
    }

    /// The median step time, in seconds.
    pub fn median_step_secs(&self) -> f64 {
        let mut s = self.step_secs.clone();
        s.sort_by(f64::total_cmp);
        s.get(s.len() / 2).copied().unwrap_or(0.0)
    }
}

/// Mean next-token loss of `model` over `batches` (evaluation mode, no graph).
pub fn evaluate(model: &dyn Forward, batches: &[(Tensor, Tensor)], device: &Device) -> Result<f64> {
    model.eval();
    let r = no_grad(|| -> Result<f64> {
        let mut sum = 0.0;
        for (x, y) in batches {
            let logits = model.forward(&Var::from(x.to_device(device)?))?;
            sum += lm_loss(&logits, &y.to_device(device)?)?.tensor().to_scalar::<f64>()?;
        }
        Ok(sum / batches.len().max(1) as f64)
    });
    model.train();
    r
}

/// Cross-entropy of logits `[B, T, V]` against targets `[B, T]`.
pub fn lm_loss(logits: &Var, targets: &Tensor) -> Result<Var> {
    let v = *logits.dims().last().unwrap_or(&0) as isize;
    cross_entropy(&logits.reshape(&[-1, v])?, &targets.reshape(&[-1])?, &CrossEntropyOptions::default())
}

/// Trains `model` on `data` with the recipe in `cfg` and returns what it measured.
pub fn train(model: &dyn Forward, data: &CharData, cfg: &LmConfig) -> Result<LmHistory> {
    if cfg.iters == 0 || cfg.batch_size == 0 || cfg.context == 0 || cfg.eval_interval == 0 {
        return Err(Error::arg("char_lm", "iterations, batch size, context and eval interval must be positive"));
    }
    let mut opt = cfg.adamw(model)?;
    let params = model.parameters();
    let mut eval_g = Generator::new(cfg.seed.wrapping_add(1));
    let fixed = |split, g: &mut Generator| -> Result<Vec<(Tensor, Tensor)>> {
        (0..cfg.eval_batches).map(|_| data.batch(split, cfg.batch_size, cfg.context, g)).collect()
    };
    let eval_train = fixed(Split::Train, &mut eval_g)?;
    let eval_val = fixed(Split::Val, &mut eval_g)?;
    let mut g = Generator::new(cfg.seed ^ 0xc4a2);
    let mut log = match &cfg.out_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| Error::Io { path: dir.display().to_string(), source: e })?;
            Some(MetricsLogger::create(dir.join("metrics.csv"), &["train_loss", "val_loss"])?)
        }
        None => None,
    };
    let mut hist = LmHistory::default();
    let t0 = Instant::now();
    let bar = cfg.progress.then(|| data::metrics::progress_bar(cfg.iters as u64, "train"));
    let mut eval = |it: usize, hist: &mut LmHistory| -> Result<()> {
        let tl = evaluate(model, &eval_train, &cfg.device)?;
        let vl = evaluate(model, &eval_val, &cfg.device)?;
        hist.evals.push((it, tl, vl));
        if let Some(log) = &mut log {
            log.log(it as u64, &[tl, vl])?;
        }
        let line = format!("iter {it}: train loss {tl:.4}, val loss {vl:.4}");
        match &bar {
            Some(b) if !b.is_hidden() => b.println(line),
            _ => println!("{line}"),
        }
        Ok(())
    };
    eval(0, &mut hist)?;
    let mut smoothed = None;
    for it in 0..cfg.iters {
        let ts = Instant::now();
        opt.set_lr(lr_at(it, cfg.lr, cfg.min_lr, cfg.warmup, cfg.iters))?;
        let (x, y) = data.batch(Split::Train, cfg.batch_size, cfg.context, &mut g)?;
        let (x, y) = (x.to_device(&cfg.device)?, y.to_device(&cfg.device)?);
        opt.zero_grad();
        let loss = lm_loss(&model.forward(&Var::from(x))?, &y)?;
        loss.backward()?;
        if cfg.grad_clip > 0.0 {
            clip_grad_norm_(&params, cfg.grad_clip, 2.0, false)?;
        }
        opt.step()?;
        let l = loss.tensor().to_scalar::<f64>()?;
        hist.step_secs.push(ts.elapsed().as_secs_f64());
        let s = smoothed.map_or(l, |s: f64| 0.9 * s + 0.1 * l);
        smoothed = Some(s);
        if let Some(b) = &bar {
            b.set_message(format!("loss {s:.4}"));
            b.inc(1);
        }
        if (it + 1) % cfg.eval_interval == 0 || it + 1 == cfg.iters {
            eval(it + 1, &mut hist)?;
        }
    }
    if let Some(b) = bar {
        b.finish();
    }
    hist.total_secs = t0.elapsed().as_secs_f64();
    if let (Some(log), Some(dir)) = (&log, &cfg.out_dir) {
        log.plot(dir.join("curves.png"), &[&["train_loss", "val_loss"]])?;
    }
    Ok(hist)
}

/// How [`sample`] draws each token.
#[derive(Clone, Copy, Debug)]
pub struct SampleOptions {
    /// Divides the logits before the softmax (below 1: sharper).
    pub temperature: f64,
    /// Only the `top_k` likeliest tokens can be drawn.
    pub top_k: usize,
}

/// Continues `prompt` by `n` tokens: the last `context` tokens in, the next token drawn
/// from the softmax of the last logits over the temperature, kept to the `top_k`
/// likeliest. Runs on the device of the model's parameters.
pub fn sample(
    model: &dyn Forward,
    prompt: &[i64],
    n: usize,
    context: usize,
    opts: SampleOptions,
    g: &mut Generator,
) -> Result<Vec<i64>> {
    let SampleOptions { temperature, top_k } = opts;
    if prompt.is_empty() || temperature.is_nan() || temperature <= 0.0 || top_k == 0 || context == 0 {
        return Err(Error::arg(
            "sample",
            format!("needs a prompt, context >= 1, temperature > 0 and top_k >= 1 (got context {context}, temperature {temperature}, top_k {top_k})"),
        ));
    }
    let device = model.parameters().first().map_or_else(Device::cpu, |p| p.device().clone());
    let device = &device;
    model.eval();
    let r = no_grad(|| -> Result<Vec<i64>> {
        let mut toks = prompt.to_vec();
        for _ in 0..n {
            let win = &toks[toks.len().saturating_sub(context)..];
            let x = Tensor::from_vec(win.to_vec(), [1, win.len()])?.to_device(device)?;
            let out = model.forward(&Var::from(x))?;
            let logits = out.tensor();
            let last: Vec<f64> = logits.select(1, win.len() as isize - 1)?.to_dtype(DType::F64)?.to_vec::<f64>()?;
            toks.push(draw(&last, temperature, top_k, g) as i64);
        }
        Ok(toks)
    });
    model.train();
    r
}

/// Index drawn from `softmax(logits / temperature)` restricted to the `top_k` largest.
fn draw(logits: &[f64], temperature: f64, top_k: usize, g: &mut Generator) -> usize {
    if logits.is_empty() {
        return 0;
    }
    let mut sorted: Vec<f64> = logits.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let cut = sorted[top_k.min(sorted.len()) - 1];
    let max = sorted[0];
    let w: Vec<f64> = logits.iter().map(|&l| if l < cut { 0.0 } else { ((l - max) / temperature).exp() }).collect();
    let total: f64 = w.iter().sum();
    let mut u = g.uniform_f64(1)[0] * total;
    for (i, wi) in w.iter().enumerate() {
        if u < *wi {
            return i;
        }
        u -= wi;
    }
    w.iter().rposition(|&x| x > 0.0).unwrap_or(0)
}

/// A parameter's handle by name (for tests and tools).
pub fn param(m: &dyn Module, name: &str) -> Option<Param> {
    m.named_parameters().into_iter().find(|(n, _)| n == name).map(|(_, p)| p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nanogpt_schedule() {
        assert!((lr_at(0, 1e-3, 1e-4, 100, 2000) - 1e-3 / 101.0).abs() < 1e-15);
        assert!((lr_at(100, 1e-3, 1e-4, 100, 2000) - 1e-3).abs() < 1e-15);
        assert!((lr_at(1050, 1e-3, 1e-4, 100, 2000) - 5.5e-4).abs() < 1e-12);
        assert!((lr_at(2000, 1e-3, 1e-4, 100, 2000) - 1e-4).abs() < 1e-15);
    }

    #[test]
    fn tokens_round_trip_and_split() {
        let d = CharData::from_text(b"hello world, hello!").unwrap();
        assert_eq!(d.vocab, b" !,dehlorw".to_vec());
        assert_eq!(d.train.len(), 17);
        let all: Vec<i64> = d.train.iter().chain(&d.val).copied().collect();
        assert_eq!(d.decode(&all), "hello world, hello!");
        assert_eq!(d.encode("low").unwrap(), vec![6, 7, 9]);
        assert!(d.encode("z").is_err());
    }

    #[test]
    fn draw_respects_top_k() {
        let mut g = Generator::new(3);
        for _ in 0..200 {
            let i = draw(&[0.0, 5.0, 4.9, -1.0], 1.0, 2, &mut g);
            assert!(i == 1 || i == 2);
        }
    }
}
