//! Graph overhead: record and backpropagate a tiny graph (4x4 add, mul, sum,
//! backward), 1000 iterations per sample. With 4x4 tensors the arithmetic is
//! negligible; the figure is the cost of recording and running the graph.

use autograd::Var;
use criterion::{criterion_group, criterion_main, Criterion};
use tensor_core::{DType, Device, Tensor};

fn graph_overhead(c: &mut Criterion) {
    let dev = Device::cpu();
    let a = Var::param(Tensor::randn([4, 4], DType::F32, &dev).expect("randn")).expect("param");
    let b = Var::param(Tensor::randn([4, 4], DType::F32, &dev).expect("randn")).expect("param");
    c.bench_function("add_mul_sum_backward_4x4_x1000", |bench| {
        bench.iter(|| {
            for _ in 0..1000 {
                let y = a.add(&b).and_then(|s| s.mul(&b)).and_then(|p| p.sum(&[], false)).expect("forward");
                y.backward().expect("backward");
            }
        })
    });
}

criterion_group!(benches, graph_overhead);
criterion_main!(benches);
