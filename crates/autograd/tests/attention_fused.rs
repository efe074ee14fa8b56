//! The fused attention (forward and FlashAttention-style backward) against the
//! composite it replaces, at sizes where it runs on several threads, with both of its
//! kernels (a query row at a time up to 128 keys, GEMM blocks of 64 queries beyond). A mask
//! that keeps everything (or the causal triangle, given as a boolean mask) sends the
//! same call down the composite path.

use autograd::Var;
use tensor_core::{AttentionOpts, DType, Device, Result, Tensor};

fn grads(q: &Tensor, k: &Tensor, v: &Tensor, g: &Tensor, opts: AttentionOpts<'_>) -> Result<Vec<Tensor>> {
    let (q, k, v) = (Var::param(q.clone())?, Var::param(k.clone())?, Var::param(v.clone())?);
    let out = Var::scaled_dot_product_attention(&q, &k, &v, opts)?;
    out.mul(&Var::from(g.clone()))?.sum(&[], false)?.backward()?;
    let mut r = vec![out.tensor().clone()];
    for x in [q, k, v] {
        r.push(x.grad().expect("a gradient"));
    }
    Ok(r)
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    let (a, b) = (a.to_vec_f64().unwrap(), b.to_vec_f64().unwrap());
    assert_eq!(a.len(), b.len());
    a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

fn check(dtype: DType, causal: bool, l: usize, s: usize, tol: f64) -> Result<()> {
    let dev = Device::cpu();
    tensor_core::manual_seed(5);
    let q = Tensor::randn([2, 3, l, 16], dtype, &dev)?;
    let k = Tensor::randn([2, 3, s, 16], dtype, &dev)?;
    let v = Tensor::randn([2, 3, s, 24], dtype, &dev)?;
    let g = Tensor::randn([2, 3, l, 24], dtype, &dev)?;
    let (fused, prof) = tensor_core::profiler::profile(|| {
        grads(&q, &k, &v, &g, AttentionOpts { is_causal: causal, ..Default::default() })
    });
    let fused = fused?;
    // Both fused kernels ran (and no score-sized softmax).
    let names: Vec<&str> = prof.events().iter().map(|e| e.name.as_str()).collect();
    assert!(names.contains(&"fused.scaled_dot_product_attention"), "{names:?}");
    assert!(names.contains(&"fused.scaled_dot_product_attention_backward"), "{names:?}");
    assert!(!names.iter().any(|n| n.contains("softmax")), "{names:?}");
    let keep = if causal {
        Tensor::ones([l, s], DType::Bool, &dev)?.tril(0)?
    } else {
        Tensor::ones([l, s], DType::Bool, &dev)?
    };
    let composite = grads(&q, &k, &v, &g, AttentionOpts { attn_mask: Some(&keep), ..Default::default() })?;
    for (name, (a, b)) in ["out", "dq", "dk", "dv"].iter().zip(fused.iter().zip(&composite)) {
        let d = max_diff(a, b);
        assert!(d < tol, "{dtype} causal={causal} L={l} S={s}: {name} differs by {d}");
    }
    Ok(())
}

#[test]
fn fused_matches_composite_in_f64() -> Result<()> {
    check(DType::F64, true, 70, 70, 1e-12)?;
    check(DType::F64, false, 50, 90, 1e-12)?;
    check(DType::F64, true, 90, 40, 1e-12)?;
    // GEMM blocks: several query blocks, a partial last one, causal both ways.
    check(DType::F64, true, 150, 150, 1e-12)?;
    check(DType::F64, false, 70, 200, 1e-12)?;
    check(DType::F64, true, 200, 140, 1e-12)?;
    check(DType::F64, true, 100, 300, 1e-12)
}

#[test]
fn fused_matches_composite_in_f32() -> Result<()> {
    check(DType::F32, true, 70, 70, 2e-5)?;
    check(DType::F32, false, 50, 90, 2e-5)?;
    check(DType::F32, true, 150, 150, 2e-5)?;
    check(DType::F32, false, 70, 200, 2e-5)
}

#[test]
fn fused_gradients_are_the_same_for_any_thread_count() -> Result<()> {
    let dev = Device::cpu();
    tensor_core::manual_seed(9);
    let (q, k, v, g) = (
        Tensor::randn([4, 2, 64, 16], DType::F32, &dev)?,
        Tensor::randn([4, 2, 64, 16], DType::F32, &dev)?,
        Tensor::randn([4, 2, 64, 16], DType::F32, &dev)?,
        Tensor::randn([4, 2, 64, 16], DType::F32, &dev)?,
    );
    let opts = AttentionOpts { is_causal: true, ..Default::default() };
    let many = grads(&q, &k, &v, &g, opts)?;
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a pool")
        .install(|| grads(&q, &k, &v, &g, opts))?;
    for (a, b) in many.iter().zip(&one) {
        assert_eq!(a.to_vec::<f32>()?, b.to_vec::<f32>()?);
    }
    Ok(())
}
