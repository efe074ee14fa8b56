//! The candle side of bench workload W7 ("graph overhead"): the same computation as
//! `W7` in `examples/examples/bench.rs` and `tools/bench/torch_side.py`, timed the same
//! way (median of `--reps` samples after three warm-up samples, 1000 iterations per
//! sample), printed as one JSON object per line.
//!
//! * `W7 graph add-mul-sum-backward`: `a`, `b` are 4x4 f32 `Var`s (random normal);
//!   one iteration is `y = ((a + b) * b).sum_all(); grads = y.backward()`, and the
//!   returned `GradStore` is dropped at the end of the iteration.
//! * `W7 single 4x4 add`: `&x + &y` of two plain 4x4 f32 tensors, result dropped.
//!
//! Before timing, one iteration is checked: the gradient of `a` must equal `b` and the
//! gradient of `b` must equal `a + 2b` (to within 1e-5), else the program exits with an
//! error. This crate is standalone (not a member of the parent workspace):
//!
//! ```text
//! CARGO_TARGET_DIR=/tmp/candle-target cargo run --release --manifest-path tools/bench/candle_side/Cargo.toml -- --reps 5
//! ```
//!
//! `--only W7` is accepted and ignored, for compatibility with the other bench scripts.

use std::hint::black_box;
use std::process::ExitCode;
use std::time::Instant;

use candle_core::{Device, Result, Tensor, Var};

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

fn emit(name: &str, unit: &str, value: f64) {
    println!("{{\"workload\": \"{name}\", \"unit\": \"{unit}\", \"value\": {value}}}");
}

/// Largest absolute elementwise difference of two same-shaped 2-D f32 tensors.
fn max_abs_diff(x: &Tensor, y: &Tensor) -> Result<f32> {
    (x - y)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()
}

/// Runs one W7 iteration and checks the gradients against the closed form:
/// d/da sum((a+b)*b) = b, d/db sum((a+b)*b) = a + 2b.
fn check_gradients(a: &Var, b: &Var) -> Result<bool> {
    let (at, bt) = (a.as_tensor(), b.as_tensor());
    let grads = ((at + bt)? * bt)?.sum_all()?.backward()?;
    let ga = grads.get(at).ok_or_else(|| candle_core::Error::Msg("no gradient for a".into()))?;
    let gb = grads.get(bt).ok_or_else(|| candle_core::Error::Msg("no gradient for b".into()))?;
    let want_gb = (at + (bt * 2.0)?)?;
    eprintln!("candle-side check: grad(a) = {:?}", ga.to_vec2::<f32>()?);
    eprintln!("candle-side check: b       = {:?}", bt.to_vec2::<f32>()?);
    eprintln!("candle-side check: grad(b) = {:?}", gb.to_vec2::<f32>()?);
    eprintln!("candle-side check: a + 2b  = {:?}", want_gb.to_vec2::<f32>()?);
    let (da, db) = (max_abs_diff(ga, bt)?, max_abs_diff(gb, &want_gb)?);
    eprintln!("candle-side check: max|grad(a) - b| = {da:e}, max|grad(b) - (a + 2b)| = {db:e}");
    Ok(da <= 1e-5 && db <= 1e-5)
}

fn run(reps: usize) -> Result<bool> {
    let dev = Device::Cpu;
    let a = Var::randn(0f32, 1f32, (4, 4), &dev)?;
    let b = Var::randn(0f32, 1f32, (4, 4), &dev)?;
    if !check_gradients(&a, &b)? {
        eprintln!("candle-side: gradient check FAILED");
        return Ok(false);
    }
    let (at, bt) = (a.as_tensor(), b.as_tensor());
    let t = timeit(reps, || {
        for _ in 0..1000 {
            let grads = ((at + bt)? * bt)?.sum_all()?.backward()?;
            drop(black_box(grads));
        }
        Ok(())
    })?;
    emit("W7 graph add-mul-sum-backward", "us", t / 1000.0 * 1e6);

    let x = Tensor::randn(0f32, 1f32, (4, 4), &dev)?;
    let y = Tensor::randn(0f32, 1f32, (4, 4), &dev)?;
    let t = timeit(reps, || {
        for _ in 0..1000 {
            drop(black_box(&x + &y)?);
        }
        Ok(())
    })?;
    emit("W7 single 4x4 add", "us", t / 1000.0 * 1e6);
    Ok(true)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut reps = 5usize;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--reps" => {
                i += 1;
                match args.get(i).and_then(|s| s.parse().ok()) {
                    Some(n) if n > 0 => reps = n,
                    _ => {
                        eprintln!("--reps needs a positive integer");
                        return ExitCode::from(2);
                    }
                }
            }
            // Accepted for compatibility with the other bench scripts; only W7 exists here.
            "--only" => i += 1,
            s if s.starts_with("--only=") => {}
            other => {
                eprintln!("unknown argument {other:?} (usage: [--reps N] [--only W7])");
                return ExitCode::from(2);
            }
        }
        i += 1;
    }
    match run(reps) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("candle-side: error: {e}");
            ExitCode::FAILURE
        }
    }
}
