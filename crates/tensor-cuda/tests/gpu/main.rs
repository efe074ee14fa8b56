//! GPU tests of tensor-cuda: the whole op table on CUDA against the CPU backend, plus
//! the CUDA-specific paths (cuBLAS layouts, TF32, fused kernels, errors).
//!
//! Without a usable GPU every test that needs one prints why and passes; with
//! `REQUIRE_GPU=1` it fails instead.

use op_table::{all_ops, compare, default_tol, non_contiguous, RefArray};
use tensor_core::{DType, Device, Error, OptimizerUpdate, Tensor};
use tensor_cuda::{cuda_backend, cuda_device, cuda_is_available, device_count, AdamConfig, CudaDeviceExt};

/// The GPU, or `None` (after printing why) when there is none and `REQUIRE_GPU` is unset.
fn gpu(test: &str) -> Option<Device> {
    match cuda_device(0) {
        Ok(d) => Some(d),
        Err(e) => {
            if std::env::var("REQUIRE_GPU").is_ok_and(|v| v == "1") {
                panic!("{test}: REQUIRE_GPU=1 but CUDA device 0 is unusable: {e}");
            }
            eprintln!("{test}: skipped, no usable CUDA device: {e}");
            None
        }
    }
}

fn cpu() -> Device {
    Device::cpu()
}

#[test]
fn missing_gpu_is_an_error_not_a_panic() {
    let n = device_count();
    assert_eq!(cuda_is_available(), n > 0);
    match Device::cuda(0) {
        Ok(d) => assert!(n > 0 && d.is_cuda()),
        Err(e) => {
            assert_eq!(n, 0, "device_count() = {n} but device 0 failed: {e}");
            assert!(!e.to_string().is_empty());
        }
    }
    assert!(cuda_device(n + 1000).is_err());
    assert!(tensor_cuda::synchronize(n + 1000).is_err());
}

/// Runs every op-table sample on CUDA and on the CPU and compares them with the
/// dtype's tolerances; non-contiguous CUDA inputs must give the same results.
#[test]
fn op_table_on_cuda_matches_cpu() {
    let Some(dev) = gpu("op_table_on_cuda_matches_cpu") else { return };
    let mut failures = Vec::new();
    let (mut checked, mut records) = (0usize, 0usize);
    for op in all_ops() {
        records += 1;
        for &dt in &op.dtypes {
            let (mut rtol, mut atol) = default_tol(dt);
            if let Some((r, a)) = op.tol {
                rtol = rtol.max(r);
                atol = atol.max(a);
            }
            for s in &op.samples {
                let tag = format!("{} [{dt}] {}", op.name, s.desc);
                let Ok(inputs) = s.inputs_as(dt) else { continue };
                // The CPU reference of each variant runs on the same layouts (a view op
                // may fail on a non-contiguous input on both devices alike).
                let want_contiguous = (s.op)(&inputs);
                let want_strided =
                    inputs.iter().map(non_contiguous).collect::<Result<Vec<_>, _>>().and_then(|v| (s.op)(&v));
                let on_gpu: Result<Vec<Tensor>, Error> = inputs.iter().map(|t| t.to_device(&dev)).collect();
                let on_gpu = match on_gpu {
                    Ok(v) => v,
                    Err(e) => {
                        failures.push(format!("{tag}: upload: {e}"));
                        continue;
                    }
                };
                type Inputs = Result<Vec<Tensor>, Error>;
                let variants: Vec<(&str, Inputs, &Inputs)> = vec![
                    ("contiguous", Ok(on_gpu.clone()), &want_contiguous),
                    ("non-contiguous", on_gpu.iter().map(non_contiguous).collect(), &want_strided),
                ];
                for (kind, ins, want) in variants {
                    let ins = match ins {
                        Ok(v) => v,
                        Err(e) => {
                            failures.push(format!("{tag} ({kind}): preparing inputs: {e}"));
                            continue;
                        }
                    };
                    let got = (s.op)(&ins);
                    match (want, got) {
                        (Ok(w), Ok(g)) => {
                            if w.len() != g.len() {
                                failures.push(format!("{tag} ({kind}): {} outputs, CPU gave {}", g.len(), w.len()));
                                continue;
                            }
                            for (k, (w, g)) in w.iter().zip(&g).enumerate() {
                                if g.dtype() != w.dtype() {
                                    failures.push(format!(
                                        "{tag} ({kind}) output {k}: dtype {} vs {}",
                                        g.dtype(),
                                        w.dtype()
                                    ));
                                    continue;
                                }
                                let g = match g.to_device(&cpu()) {
                                    Ok(g) => g,
                                    Err(e) => {
                                        failures.push(format!("{tag} ({kind}) output {k}: download: {e}"));
                                        continue;
                                    }
                                };
                                if let Err(m) = compare(&g, &RefArray::from_tensor(w), rtol, atol) {
                                    failures.push(format!("{tag} ({kind}) output {k}: {m}"));
                                }
                            }
                            checked += 1;
                        }
                        (Err(_), Err(_)) => checked += 1,
                        (Ok(_), Err(e)) => failures.push(format!("{tag} ({kind}): CUDA error {e}")),
                        (Err(e), Ok(_)) => {
                            failures.push(format!("{tag} ({kind}): CPU failed ({e}) but CUDA succeeded"))
                        }
                    }
                }
            }
        }
    }
    println!("op table on CUDA: {records} records, {checked} sample runs checked, {} failures", failures.len());
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

fn close(a: &[f64], b: &[f64], tol: f64) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol * (1.0 + y.abs()))
}

#[test]
fn matmul_layouts_and_tf32() {
    let Some(dev) = gpu("matmul_layouts_and_tf32") else { return };
    let a = Tensor::randn([3, 17, 9], DType::F32, &cpu()).unwrap();
    let b = Tensor::randn([3, 9, 5], DType::F32, &cpu()).unwrap();
    let want = a.matmul(&b).unwrap().to_vec_f64().unwrap();
    let (ga, gb) = (a.to_device(&dev).unwrap(), b.to_device(&dev).unwrap());
    // Plain, transposed (via a transposed copy viewed back), and sliced operands.
    let got = ga.matmul(&gb).unwrap().to_vec_f64().unwrap();
    assert!(close(&got, &want, 1e-5));
    let at = ga.transpose(1, 2).unwrap().contiguous().unwrap().transpose(1, 2).unwrap();
    assert!(!at.is_contiguous());
    let got = at.matmul(&gb).unwrap().to_vec_f64().unwrap();
    assert!(close(&got, &want, 1e-5));
    for dt in [DType::F64, DType::F16, DType::BF16, DType::I64] {
        let (x, y) = (a.to_dtype(dt).unwrap(), b.to_dtype(dt).unwrap());
        let w = x.matmul(&y).unwrap().to_vec_f64().unwrap();
        let g = x.to_device(&dev).unwrap().matmul(&y.to_device(&dev).unwrap()).unwrap().to_vec_f64().unwrap();
        let tol = match dt {
            DType::F16 => 1e-2,
            DType::BF16 => 5e-2,
            _ => 1e-9,
        };
        assert!(close(&g, &w, tol), "{dt}");
    }
    let be = cuda_backend(0).unwrap();
    be.set_allow_tf32(true);
    let got = ga.matmul(&gb).unwrap().to_vec_f64().unwrap();
    be.set_allow_tf32(false);
    assert!(close(&got, &want, 1e-2));
}

#[test]
fn out_of_memory_and_device_mismatch_are_errors() {
    let Some(dev) = gpu("out_of_memory_and_device_mismatch_are_errors") else { return };
    match Tensor::zeros([1usize << 46], DType::F32, &dev) {
        Err(Error::OutOfMemory { bytes, .. }) => assert_eq!(bytes, 4usize << 46),
        other => panic!("expected OutOfMemory, got {other:?}"),
    }
    let x = Tensor::ones([3], DType::F32, &cpu()).unwrap();
    let y = x.to_device(&dev).unwrap();
    assert!(matches!(&x + &y, Err(Error::DeviceMismatch { .. })));
    dev.synchronize().unwrap();
}

#[test]
fn long_reductions_sorts_and_softmax() {
    let Some(dev) = gpu("long_reductions_sorts_and_softmax") else { return };
    // A sum long enough to take the split (two-pass) path.
    let n = 1usize << 22;
    let ones = Tensor::ones([n], DType::F32, &dev).unwrap();
    assert_eq!(ones.sum_all().unwrap().to_vec_f64().unwrap(), vec![n as f64]);
    // Sorting rows longer than the bitonic kernel's limit, and shorter ones.
    for len in [5usize, 1000, 3000] {
        for desc in [false, true] {
            let x = Tensor::randn([2, len], DType::F32, &cpu()).unwrap();
            let gx = x.to_device(&dev).unwrap();
            let (cv, ci) = x.sort(1, desc).unwrap();
            let (gv, gi) = gx.sort(1, desc).unwrap();
            assert_eq!(gv.to_vec_f64().unwrap(), cv.to_vec_f64().unwrap(), "len {len}");
            assert_eq!(gi.to_vec::<i64>().unwrap(), ci.to_vec::<i64>().unwrap(), "len {len}");
        }
    }
    // The fused softmax (reached through Backend::fused) against the CPU's.
    for log in [false, true] {
        let x = Tensor::randn([7, 300], DType::F32, &cpu()).unwrap();
        let gx = x.to_device(&dev).unwrap();
        let (want, got) = if log {
            (x.log_softmax(-1).unwrap(), gx.log_softmax(-1).unwrap())
        } else {
            (x.softmax(-1).unwrap(), gx.softmax(-1).unwrap())
        };
        assert!(close(&got.to_vec_f64().unwrap(), &want.to_vec_f64().unwrap(), 1e-5));
    }
}

#[test]
fn fused_adam_and_layer_norm_match_references() {
    let Some(dev) = gpu("fused_adam_and_layer_norm_match_references") else { return };
    let p0: Vec<f64> = (0..10).map(|i| i as f64 * 0.3 - 1.0).collect();
    let g0: Vec<f64> = (0..10).map(|i| (i as f64 * 0.7).sin()).collect();
    let up =
        |v: &[f64]| Tensor::from_slice(v, [v.len()]).unwrap().to_dtype(DType::F32).unwrap().to_device(&dev).unwrap();
    let (p, g, m, v) = (up(&p0), up(&g0), up(&[0.0; 10]), up(&[0.0; 10]));
    let cfg = AdamConfig { lr: 0.1, weight_decay: 0.01, decoupled: true, ..Default::default() };
    for step in 1..=3u64 {
        let update = OptimizerUpdate::Adam(AdamConfig { step, ..cfg });
        assert!(tensor_core::fused::optimizer_step(&update, &p, &g, &[&m, &v]).unwrap(), "no fused Adam on CUDA");
    }
    // Reference AdamW in f64.
    let (mut rp, mut rm, mut rv) = (p0.clone(), vec![0.0; 10], vec![0.0; 10]);
    for step in 1..=3 {
        for i in 0..10 {
            rp[i] *= 1.0 - cfg.lr * cfg.weight_decay;
            rm[i] = cfg.beta1 * rm[i] + (1.0 - cfg.beta1) * g0[i];
            rv[i] = cfg.beta2 * rv[i] + (1.0 - cfg.beta2) * g0[i] * g0[i];
            let mh = rm[i] / (1.0 - cfg.beta1.powi(step));
            let vh = rv[i] / (1.0 - cfg.beta2.powi(step));
            rp[i] -= cfg.lr * mh / (vh.sqrt() + cfg.eps);
        }
    }
    assert!(close(&p.to_vec_f64().unwrap(), &rp, 1e-5));

    let rows: Vec<f64> = (0..12).map(|i| ((i * 7) % 5) as f64 - 2.0).collect();
    let x = up(&rows).reshape(&[3, 4]).unwrap();
    let w = up(&[1.0, 2.0, 0.5, -1.0]);
    let b = up(&[0.0, 0.1, 0.2, 0.3]);
    // Tensor::layer_norm reaches the fused kernel (FusedOp::LayerNorm) on CUDA.
    let y = x.layer_norm(&[4], Some(&w), Some(&b), 1e-5).unwrap();
    let yv = y.to_vec_f64().unwrap();
    for r in 0..3 {
        let row = &rows[r * 4..r * 4 + 4];
        let mu = row.iter().sum::<f64>() / 4.0;
        let var = row.iter().map(|x| (x - mu) * (x - mu)).sum::<f64>() / 4.0;
        for c in 0..4 {
            let want = (row[c] - mu) / (var + 1e-5).sqrt() * [1.0, 2.0, 0.5, -1.0][c] + [0.0, 0.1, 0.2, 0.3][c];
            assert!((yv[r * 4 + c] - want).abs() < 1e-5, "row {r} col {c}");
        }
    }
}
