//! The GPU side of the CUDA benchmark (issue: tensor-cuda speed). Times, on CUDA
//! device 0: a device-to-device copy (the bandwidth ceiling), `a + b` on 64M f32,
//! softmax over the last dim of (4096, 4096) f32, matmul 4096³ in f32, TF32 and bf16,
//! and one training step of the digits CNN (batch 32, Adam). `tools/bench/torch_gpu.py`
//! times the same in PyTorch; the bundle's `bench.sh` runs both and prints the table.
//!
//! ```sh
//! cargo run --release --example gpu_bench -- [--reps N]
//! ```
//! Prints one `RESULT <name> <median> <unit> <min> <max>` line per workload. Each sample
//! is a batch of launches between two device synchronisations, divided by the batch.

use std::process::ExitCode;
use std::time::Instant;

use autograd::Var;
use clap::Parser;
use examples::train::{build, Arch};
use nn::loss::{cross_entropy, CrossEntropyOptions};
use nn::{Forward, Module};
use optim::{Adam, AdamOptions, Optimizer};
use tensor_core::{DType, Device, Result, Tensor};
use tensor_cuda::{cuda_backend, cuda_device};

/// Median, min and max seconds per call of `f`, from `reps` samples of `batch` calls.
fn time(dev: &Device, reps: usize, batch: usize, mut f: impl FnMut() -> Result<()>) -> Result<(f64, f64, f64)> {
    for _ in 0..3 {
        f()?;
    }
    dev.synchronize()?;
    let mut s = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t0 = Instant::now();
        for _ in 0..batch {
            f()?;
        }
        dev.synchronize()?;
        s.push(t0.elapsed().as_secs_f64() / batch as f64);
    }
    s.sort_by(f64::total_cmp);
    Ok((s[s.len() / 2], s[0], s[s.len() - 1]))
}

fn report(name: &str, unit: &str, t: (f64, f64, f64), per_sec: impl Fn(f64) -> f64) {
    // A rate is larger for a shorter time: min time gives the max rate.
    let (med, lo, hi) =
        if unit == "ms" { (t.0 * 1e3, t.1 * 1e3, t.2 * 1e3) } else { (per_sec(t.0), per_sec(t.2), per_sec(t.1)) };
    println!("RESULT {name} {med:.4} {unit} {lo:.4} {hi:.4}");
}

/// Times the CUDA workloads on device 0 (the GPU side of the CUDA benchmark; its
/// PyTorch twin is `tools/bench/torch_gpu.py`).
#[derive(Parser, Debug)]
#[command(name = "gpu_bench")]
struct Args {
    /// Samples per workload (median, min and max are printed).
    #[arg(long, value_name = "N", default_value_t = 15, value_parser = clap::value_parser!(u32).range(1..))]
    reps: u32,
}

fn main() -> ExitCode {
    let reps = Args::parse().reps as usize;
    match bench(reps) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gpu_bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn bench(reps: usize) -> Result<()> {
    let dev = cuda_device(0)?;
    let be = cuda_backend(0)?;
    let f32r = |dims: &[usize]| Tensor::randn(dims.to_vec(), DType::F32, &dev);
    println!("device: {dev}");

    // Bandwidth ceiling: copy 256 MiB into a preallocated tensor (read + write).
    let n = 64usize << 20;
    let a = f32r(&[n])?;
    let b = f32r(&[n])?;
    let dst = Tensor::zeros([n], DType::F32, &dev)?;
    let gb = |bytes: f64| move |s: f64| bytes / s / 1e9;
    let t = time(&dev, reps, 10, || dst.copy_(&a))?;
    report("copy_64M_f32", "GB/s", t, gb(8.0 * n as f64));
    let t = time(&dev, reps, 10, || (&a + &b).map(drop))?;
    report("add_64M_f32", "GB/s", t, gb(12.0 * n as f64));
    drop((a, b, dst));

    let x = f32r(&[4096, 4096])?;
    let t = time(&dev, reps, 10, || x.softmax(-1).map(drop))?;
    report("softmax_4096x4096_f32", "GB/s", t, gb(8.0 * 4096.0 * 4096.0));

    let m = 4096usize;
    let flops = 2.0 * (m * m * m) as f64;
    let tf = move |s: f64| flops / s / 1e12;
    let (p, q) = (f32r(&[m, m])?, f32r(&[m, m])?);
    be.set_allow_tf32(false);
    let t = time(&dev, reps, 3, || p.matmul(&q).map(drop))?;
    report("matmul_4096_f32", "TFLOP/s", t, tf);
    be.set_allow_tf32(true);
    let t = time(&dev, reps, 5, || p.matmul(&q).map(drop))?;
    report("matmul_4096_tf32", "TFLOP/s", t, tf);
    be.set_allow_tf32(false);
    let (pb, qb) = (p.to_dtype(DType::BF16)?, q.to_dtype(DType::BF16)?);
    let t = time(&dev, reps, 10, || pb.matmul(&qb).map(drop))?;
    report("matmul_4096_bf16", "TFLOP/s", t, tf);
    drop((p, q, pb, qb, x));

    // One digits-CNN training step: batch 32 of 8x8 images, Adam.
    tensor_core::manual_seed(0);
    let net = build(Arch::Cnn)?;
    net.to_device(&dev)?;
    let mut opt = Adam::new(net.parameters(), AdamOptions { lr: 3e-3, ..Default::default() })?;
    let xb = Tensor::rand([32, 1, 8, 8], DType::F32, &dev)?;
    let yb = Tensor::randint(0, 10, [32], DType::I64, &dev)?;
    let ce = CrossEntropyOptions::default();
    let t = time(&dev, reps, 20, || {
        opt.zero_grad();
        let loss = cross_entropy(&net.forward(&Var::from(xb.clone()))?, &yb, &ce)?;
        loss.backward()?;
        opt.step()
    })?;
    report("digits_cnn_step", "ms", t, |s| s);
    Ok(())
}
