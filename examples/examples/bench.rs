//! This stack's side of `cargo xtask bench`: the workloads of
//! `tools/bench/torch_side.py`, timed the same way (median of `--reps` repetitions
//! after warm-up), printed as one JSON object per line.
//!
//! ```text
//! RAYON_NUM_THREADS=2 cargo run --release --example bench -- --reps 10 [--only W1,W2] [--rss]
//! ```

use std::time::Instant;

use autograd::Var;
use clap::Parser;
use nn::loss::{cross_entropy, CrossEntropyOptions};
use nn::{Conv2d, Conv2dConfig, Forward, Linear, Module, ReLU, Sequential};
use optim::{Adam, AdamOptions, Optimizer, Sgd, SgdOptions};
use tensor_core::{DType, Device, Result, Tensor};

/// Median seconds of `reps` runs of `f` after three warm-up runs.
fn timeit(reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    for _ in 0..3 {
        f()?;
    }
    let mut ts = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t0 = Instant::now();
        f()?;
        ts.push(t0.elapsed().as_secs_f64());
    }
    ts.sort_by(f64::total_cmp);
    Ok(if ts.len() % 2 == 1 { ts[ts.len() / 2] } else { (ts[ts.len() / 2 - 1] + ts[ts.len() / 2]) / 2.0 })
}

/// One JSON line; a value that is not finite (a failed measurement) is `null`.
fn emit(name: &str, unit: &str, value: f64) {
    let value = if value.is_finite() { value.to_string() } else { "null".into() };
    println!("{{\"workload\": \"{name}\", \"unit\": \"{unit}\", \"value\": {value}}}");
}

fn mlp() -> Result<Sequential> {
    Ok(Sequential::new()
        .add(Linear::new(784, 512, true)?)
        .add(ReLU)
        .add(Linear::new(512, 256, true)?)
        .add(ReLU)
        .add(Linear::new(256, 10, true)?))
}

/// Peak resident set size of this process in MB (Linux), from `/proc/self/status`.
fn peak_rss_mb() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// This stack's side of `cargo xtask bench`: times the workloads of
/// `tools/bench/torch_side.py` and prints one JSON object per line.
#[derive(Parser, Debug)]
#[command(name = "bench")]
struct Args {
    /// Timed repetitions per workload (the median is reported), after three warm-up runs.
    #[arg(long, value_name = "N", default_value_t = 10)]
    reps: usize,
    /// Only these workloads (comma-separated, e.g. W1,W3).
    #[arg(long, value_name = "W1,W2,..", value_delimiter = ',')]
    only: Option<Vec<String>>,
    /// Measure the peak resident memory of 300 MLP training steps (W5) instead.
    #[arg(long)]
    rss: bool,
}

fn main() -> Result<()> {
    let Args { reps, only, rss } = Args::parse();
    let want = |w: &str| only.as_ref().is_none_or(|o| o.iter().any(|x| x == w));
    eprintln!("{{\"threads\": {}}}", rayon_threads());
    tensor_core::manual_seed(0);
    let dev = Device::cpu();
    let f32_ = DType::F32;

    if rss {
        let net = mlp()?;
        let mut opt = Adam::new(net.parameters(), AdamOptions { lr: 1e-3, ..Default::default() })?;
        let x = Var::from(Tensor::randn([128, 784], f32_, &dev)?);
        let y = Tensor::randint(0, 10, [128], DType::I64, &dev)?;
        for _ in 0..300 {
            opt.zero_grad();
            cross_entropy(&net.forward(&x)?, &y, &CrossEntropyOptions::default())?.backward()?;
            opt.step()?;
        }
        emit("W5 peak RSS", "MB", peak_rss_mb().unwrap_or(f64::NAN));
        return Ok(());
    }

    if want("W1") {
        for n in [256usize, 1024, 2048] {
            let a = Tensor::randn([n, n], f32_, &dev)?;
            let b = Tensor::randn([n, n], f32_, &dev)?;
            let r = if n < 2048 { reps } else { (reps / 2).max(3) };
            let t = timeit(r.max(3), || a.matmul(&b).map(drop))?;
            emit(&format!("W1 matmul {n}"), "GFLOP/s", 2.0 * (n as f64).powi(3) / t / 1e9);
        }
    }
    if want("W2") {
        let n = 16 * 1024 * 1024;
        let x = Tensor::randn([n], f32_, &dev)?;
        let y = Tensor::randn([n], f32_, &dev)?;
        let t = timeit(reps, || (&x + &y).map(drop))?;
        emit("W2 add 16M", "GB/s", 3.0 * 4.0 * n as f64 / t / 1e9);
        let t = timeit(reps, || x.relu().map(drop))?;
        emit("W2 relu 16M", "GB/s", 2.0 * 4.0 * n as f64 / t / 1e9);
        let m = Tensor::randn([4096, 4096], f32_, &dev)?;
        let v = Tensor::randn([4096], f32_, &dev)?;
        let t = timeit(reps, || (&m + &v).map(drop))?;
        emit("W2 bcast add 4096x4096+4096", "GB/s", (2.0 * 4.0 * 4096.0 * 4096.0 + 4.0 * 4096.0) / t / 1e9);
    }
    if want("W3") {
        let n = 16 * 1024 * 1024;
        let x = Tensor::randn([n], f32_, &dev)?;
        let t = timeit(reps, || x.sum_all().map(drop))?;
        emit("W3 sum 16M", "GB/s", 4.0 * n as f64 / t / 1e9);
        let s = Tensor::randn([4096, 1024], f32_, &dev)?;
        let t = timeit(reps, || s.softmax(-1).map(drop))?;
        emit("W3 softmax 4096x1024", "GB/s", 2.0 * 4.0 * 4096.0 * 1024.0 / t / 1e9);
    }
    if want("W4") {
        let x = Tensor::randn([32, 32, 32, 32], f32_, &dev)?;
        let conv = Conv2d::new(32, 64, [3, 3], Conv2dConfig { padding: [1, 1], ..Default::default() })?;
        let xv = Var::from(x.clone());
        let t = timeit(reps, || autograd::no_grad(|| conv.forward(&xv).map(drop)))?;
        emit("W4 conv2d fwd", "ms", t * 1e3);
        let xr = Var::param(x)?;
        let t = timeit(reps, || {
            conv.zero_grad();
            xr.zero_grad();
            conv.forward(&xr)?.sum(&[], false)?.backward()
        })?;
        emit("W4 conv2d fwd+bwd", "ms", t * 1e3);
    }
    if want("W5") {
        let net = mlp()?;
        let mut opt = Adam::new(net.parameters(), AdamOptions { lr: 1e-3, ..Default::default() })?;
        let x = Var::from(Tensor::randn([128, 784], f32_, &dev)?);
        let y = Tensor::randint(0, 10, [128], DType::I64, &dev)?;
        let ce = CrossEntropyOptions::default();
        let t = timeit(reps * 3, || {
            opt.zero_grad();
            cross_entropy(&net.forward(&x)?, &y, &ce)?.backward()?;
            opt.step()
        })?;
        emit("W5 MLP Adam step", "ms", t * 1e3);
    }
    if want("W6") {
        let net = examples::train::small_cnn(28)?;
        let mut opt = Sgd::new(net.parameters(), SgdOptions { lr: 0.01, momentum: 0.9, ..Default::default() })?;
        let x = Var::from(Tensor::randn([64, 1, 28, 28], f32_, &dev)?);
        let y = Tensor::randint(0, 10, [64], DType::I64, &dev)?;
        let ce = CrossEntropyOptions::default();
        let t = timeit(reps * 3, || {
            opt.zero_grad();
            cross_entropy(&net.forward(&x)?, &y, &ce)?.backward()?;
            opt.step()
        })?;
        emit("W6 CNN SGD step", "ms", t * 1e3);
    }
    // One training step of a char_lm model (batch 12, context 64) with the example's
    // recipe: AdamW with two groups, gradient clipping.
    use examples::char_lm::{lm_loss, LmConfig, LmModel};
    for (w, name, model) in [("W8", "W8 GPT AdamW step", LmModel::Gpt), ("W9", "W9 LSTM AdamW step", LmModel::Lstm)] {
        if !want(w) {
            continue;
        }
        let cfg = LmConfig { model, ..Default::default() };
        let model = cfg.build(65)?;
        let mut opt = cfg.adamw(model.as_ref())?;
        let params = model.parameters();
        let x = Var::from(Tensor::randint(0, 65, [12, 64], DType::I64, &dev)?);
        let y = Tensor::randint(0, 65, [12, 64], DType::I64, &dev)?;
        let t = timeit(reps * 3, || {
            opt.zero_grad();
            lm_loss(&model.forward(&x)?, &y)?.backward()?;
            optim::clip_grad_norm_(&params, 1.0, 2.0, false)?;
            opt.step()
        })?;
        emit(name, "ms", t * 1e3);
    }
    if want("W10") {
        // Causal attention forward + backward, batch 4, 4 heads, head dim 32.
        for t_len in [64usize, 256, 1024] {
            let mk = || Var::param(Tensor::randn([4, 4, t_len, 32], f32_, &dev)?);
            let (q, k, v) = (mk()?, mk()?, mk()?);
            let g = Var::from(Tensor::randn([4, 4, t_len, 32], f32_, &dev)?);
            let opts = tensor_core::AttentionOpts { is_causal: true, ..Default::default() };
            let t = timeit(reps, || {
                for x in [&q, &k, &v] {
                    x.zero_grad();
                }
                Var::scaled_dot_product_attention(&q, &k, &v, opts)?.mul(&g)?.sum(&[], false)?.backward()
            })?;
            emit(&format!("W10 attention fwd+bwd T={t_len}"), "ms", t * 1e3);
        }
    }
    if want("W7") {
        let a = Var::param(Tensor::randn([4, 4], f32_, &dev)?)?;
        let b = Var::param(Tensor::randn([4, 4], f32_, &dev)?)?;
        let t = timeit(5, || {
            for _ in 0..1000 {
                a.add(&b)?.mul(&b)?.sum(&[], false)?.backward()?;
            }
            Ok(())
        })?;
        emit("W7 graph add-mul-sum-backward", "us", t / 1000.0 * 1e6);
        let x = Tensor::randn([4, 4], f32_, &dev)?;
        let y = Tensor::randn([4, 4], f32_, &dev)?;
        let t = timeit(5, || {
            for _ in 0..1000 {
                drop(std::hint::black_box(&x + &y)?);
            }
            Ok(())
        })?;
        emit("W7 single 4x4 add", "us", t / 1000.0 * 1e6);
    }
    Ok(())
}

/// The size of the global rayon pool the CPU backend runs on (`RAYON_NUM_THREADS`).
fn rayon_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
}
