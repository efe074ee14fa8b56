//! The graph-overhead loop of `benches/graph_overhead.rs` (4x4 add, mul, sum,
//! backward) as a plain program, for profilers that want one process and no
//! harness (`valgrind --tool=callgrind`, `perf record`):
//!
//! ```text
//! cargo run --release -p torch-rs-autograd --example graph_overhead -- 20000
//! ```
//!
//! Prints the mean time per iteration.

use autograd::Var;
use tensor_core::{DType, Device, Result, Tensor};

fn main() -> Result<()> {
    let iters: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let dev = Device::cpu();
    let a = Var::param(Tensor::randn([4, 4], DType::F32, &dev)?)?;
    let b = Var::param(Tensor::randn([4, 4], DType::F32, &dev)?)?;
    let t0 = std::time::Instant::now();
    for _ in 0..iters {
        a.add(&b)?.mul(&b)?.sum(&[], false)?.backward()?;
    }
    let per = t0.elapsed().as_secs_f64() / iters.max(1) as f64;
    println!("{iters} iterations, {:.3} us per iteration", per * 1e6);
    // d/da sum((a + b) * b) = b, summed over every iteration.
    let ga = a.grad().expect("a has a gradient").to_vec::<f32>()?;
    let want = b.tensor().to_vec::<f32>()?;
    let worst = ga
        .iter()
        .zip(&want)
        .map(|(g, w)| (g - w * iters as f32).abs() / (w.abs() * iters as f32).max(1.0))
        .fold(0.0f32, f32::max);
    println!("largest relative error of a.grad against iters * b: {worst:.2e}");
    Ok(())
}
