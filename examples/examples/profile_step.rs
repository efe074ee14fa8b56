//! Profiles one training step of the digits CNN (batch 32), or with `--gpt`/`--lstm` of a
//! char_lm model (batch 12, context 64), or with `--conv`/`--cnn` the bench's W4 conv2d
//! forward+backward and W6 CNN SGD step, and prints the op table; writes a Chrome trace
//! (open it in ui.perfetto.dev or chrome://tracing).
//!
//! ```sh
//! cargo run --release --example profile_step -- [--gpt | --lstm | --conv | --cnn] [--out trace.json]
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
    /// Profile the bench's W4 instead: conv2d 32->64 3x3 on [32, 32, 32, 32], forward and
    /// backward.
    #[arg(long)]
    conv: bool,
    /// Profile the bench's W6 instead: an SGD step of a two-conv CNN on [64, 1, 28, 28].
    #[arg(long)]
    cnn: bool,
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
    if args.conv || args.cnn {
        return bench_conv(&out, args.cnn);
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

/// The bench's W4 (`cnn = false`) or W6 step, on random data.
fn bench_conv(out: &str, cnn: bool) -> Result<()> {
    use nn::{Conv2d, Conv2dConfig};
    use optim::{Sgd, SgdOptions};
    use tensor_core::{DType, Device};
    let dev = Device::cpu();
    let mut step: Box<dyn FnMut() -> Result<()>> = if cnn {
        let net = examples::train::small_cnn(28)?;
        let mut opt = Sgd::new(net.parameters(), SgdOptions { lr: 0.01, momentum: 0.9, ..Default::default() })?;
        let x = Var::from(Tensor::randn([64, 1, 28, 28], DType::F32, &dev)?);
        let y = Tensor::randint(0, 10, [64], DType::I64, &dev)?;
        let ce = CrossEntropyOptions::default();
        Box::new(move || {
            opt.zero_grad();
            cross_entropy(&net.forward(&x)?, &y, &ce)?.backward()?;
            opt.step()
        })
    } else {
        let conv = Conv2d::new(32, 64, [3, 3], Conv2dConfig { padding: [1, 1], ..Default::default() })?;
        let x = Var::param(Tensor::randn([32, 32, 32, 32], DType::F32, &dev)?)?;
        Box::new(move || {
            conv.zero_grad();
            x.zero_grad();
            conv.forward(&x)?.sum(&[], false)?.backward()
        })
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
