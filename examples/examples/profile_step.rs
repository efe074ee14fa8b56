//! Profiles one training step of the digits CNN (batch 32), or with `--gpt`/`--lstm` of a
//! char_lm model (batch 12, context 64), and prints the op table; writes a Chrome trace
//! (open it in ui.perfetto.dev or chrome://tracing).
//!
//! ```sh
//! cargo run --release --example profile_step -- [--gpt | --lstm] [--out trace.json]
//! ```

use autograd::Var;
use clap::Parser;
use examples::char_lm::LmModel;
use examples::digits;
use examples::train::{build, Arch};
use nn::loss::{cross_entropy, CrossEntropyOptions};
use nn::{Forward, Module};
use optim::{Adam, AdamOptions, Optimizer};
use tensor_core::{profiler, Result, Tensor};

/// Profiles one training step (digits CNN by default) and prints the op table; writes
/// a Chrome trace (open it in ui.perfetto.dev or chrome://tracing).
#[derive(Parser, Debug)]
#[command(name = "profile_step")]
struct Args {
    /// Profile a step of the char_lm GPT (batch 12, context 64) instead.
    #[arg(long, conflicts_with = "lstm")]
    gpt: bool,
    /// Profile a step of the char_lm LSTM (batch 12, context 64) instead.
    #[arg(long)]
    lstm: bool,
    /// Where to write the Chrome trace.
    #[arg(long, value_name = "FILE", default_value = "runs/profile_step.json")]
    out: String,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let out = args.out;
    tensor_core::manual_seed(0);
    if args.gpt {
        return lm(&out, LmModel::Gpt);
    }
    if args.lstm {
        return lm(&out, LmModel::Lstm);
    }
    let data = digits::load(digits::default_path())?;
    let net = build(Arch::Cnn)?;
    let mut opt = Adam::new(net.parameters(), AdamOptions { lr: 3e-3, ..Default::default() })?;
    let idx = Tensor::arange(0.0, 32.0, 1.0, tensor_core::DType::I64, &tensor_core::Device::cpu())?;
    let x = Var::from(data.images.index_select(0, &idx)?.reshape(&[-1, 1, 8, 8])?);
    let y = data.labels.index_select(0, &idx)?;
    let ce = CrossEntropyOptions::default();
    let mut step = || -> Result<()> {
        opt.zero_grad();
        cross_entropy(&net.forward(&x)?, &y, &ce)?.backward()?;
        opt.step()
    };
    // Warm up (first-touch allocations), then profile one step.
    for _ in 0..5 {
        step()?;
    }
    report(&mut step, &out)
}

/// A char_lm model's training step on one fixed batch.
fn lm(out: &str, model: LmModel) -> Result<()> {
    use examples::char_lm::{self, CharData, Split};
    let data = CharData::load(&char_lm::default_path())?;
    let cfg = char_lm::LmConfig { model, ..Default::default() };
    let model = cfg.build(data.vocab_size())?;
    let mut opt = cfg.adamw(model.as_ref())?;
    let params = model.parameters();
    let (x, y) = data.batch(Split::Train, cfg.batch_size, cfg.context, &mut tensor_core::Generator::new(0))?;
    let x = Var::from(x);
    let mut step = || -> Result<()> {
        opt.zero_grad();
        char_lm::lm_loss(&model.forward(&x)?, &y)?.backward()?;
        optim::clip_grad_norm_(&params, 1.0, 2.0, false)?;
        opt.step()
    };
    let t = std::time::Instant::now();
    for _ in 0..20 {
        step()?;
    }
    println!("{:.2} ms per step (mean of 20, unprofiled)", t.elapsed().as_secs_f64() * 1e3 / 20.0);
    report(&mut step, out)
}

fn report(step: &mut dyn FnMut() -> Result<()>, out: &str) -> Result<()> {
    let (r, prof) = profiler::profile(step);
    r?;
    println!("{}", prof.table());
    if let Some(dir) = std::path::Path::new(&out).parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| tensor_core::Error::Io { path: dir.display().to_string(), source: e })?;
    }
    prof.save_chrome_trace(out)?;
    println!("wrote {out} ({} events)", prof.events().len());
    Ok(())
}
