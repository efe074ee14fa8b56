//! The upper layers on CUDA against the CPU: autograd gradients of every kind of op,
//! optim's fused Adam through the backend, and the digits CNN's training step and a
//! short training run.
//!
//! Without a usable GPU every test prints why and passes; with `REQUIRE_GPU=1` it fails
//! instead. `cargo xtask test-gpu` runs this file (and bundles it with `--bundle`).

use autograd::Var;
use examples::digits;
use examples::train::{build, run, Arch, Config};
use nn::loss::{cross_entropy, CrossEntropyOptions};
use nn::{Forward, Module};
use optim::{Adam, AdamOptions, AdamW, AdamWOptions, Optimizer};
use tensor_core::{
    AvgPool2dOptions, Conv1dOptions, Conv2dOptions, ConvTranspose2dOptions, DType, Device, Generator, MaxPool2dOptions,
    PadMode, Result, Tensor,
};
use tensor_cuda::cuda_device;

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

fn normal(g: &mut Generator, dims: &[usize]) -> Tensor {
    let n = dims.iter().product();
    Tensor::from_slice(&g.normal_f64(n), dims.to_vec()).unwrap().to_dtype(DType::F32).unwrap()
}

fn index(vals: &[i64], dims: &[usize]) -> Tensor {
    Tensor::from_slice(vals, dims.to_vec()).unwrap()
}

/// `|a - b| <= atol + rtol |b|` elementwise; the message names the worst element.
fn assert_close(what: &str, got: &Tensor, want: &Tensor, rtol: f64, atol: f64) {
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    let g = got.to_device(&Device::cpu()).unwrap().to_vec_f64().unwrap();
    let w = want.to_vec_f64().unwrap();
    let mut worst = (0.0f64, 0usize);
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        let err = (a - b).abs() - (atol + rtol * b.abs());
        if err.is_nan() || err > worst.0 {
            worst = (if err.is_nan() { f64::INFINITY } else { err }, i);
        }
    }
    assert!(worst.0 <= 0.0, "{what}: element {} is {} on CUDA, {} on the CPU", worst.1, g[worst.1], w[worst.1]);
}

type Case = (&'static str, Vec<Vec<usize>>, Box<dyn Fn(&[Var], &Device) -> Result<Var>>);

fn case(name: &'static str, shapes: &[&[usize]], f: impl Fn(&[Var], &Device) -> Result<Var> + 'static) -> Case {
    (name, shapes.iter().map(|s| s.to_vec()).collect(), Box::new(f))
}

/// One op of each kind, written with `Var` ops; index and mask tensors are made on the
/// CPU and moved to the op's device.
fn cases() -> Vec<Case> {
    let on = |t: Tensor, d: &Device| t.to_device(d);
    vec![
        case("add broadcast", &[&[3, 4], &[4]], |v, _| v[0].add(&v[1])),
        case("sub mul div", &[&[3, 4], &[3, 1], &[1, 4]], |v, _| v[0].sub(&v[1])?.mul(&v[2])?.div(&v[2].exp()?)),
        case("pow", &[&[5], &[5]], |v, _| v[0].exp()?.pow(&v[1])),
        case("maximum", &[&[4, 3], &[4, 3]], |v, _| v[0].maximum(&v[1])),
        case("unary chain", &[&[17]], |v, _| {
            v[0].tanh()?.add(&v[0].sigmoid()?)?.add(&v[0].sin()?)?.add(&v[0].gelu()?)?.add(&v[0].relu()?)
        }),
        case("exp log sqrt", &[&[6]], |v, _| v[0].exp()?.add_scalar(1.0)?.log()?.sqrt()),
        case("leaky elu softplus clamp", &[&[9]], |v, _| {
            v[0].leaky_relu(0.1)?
                .add(&v[0].elu(1.0)?)?
                .add(&v[0].softplus(1.0, 20.0)?)?
                .add(&v[0].clamp(Some(-0.5), Some(0.5))?)
        }),
        case("sum dims", &[&[3, 4, 5]], |v, _| v[0].sum(&[0, 2], true)),
        case("mean", &[&[3, 4, 5]], |v, _| v[0].mean(&[1], false)),
        case("prod", &[&[3, 4]], |v, _| v[0].prod(&[1], false)),
        case("amax", &[&[3, 7]], |v, _| v[0].amax(&[1], false)),
        case("max_dim", &[&[5, 6]], |v, _| Ok(v[0].max_dim(0, false)?.0)),
        case("var std", &[&[4, 6]], |v, _| v[0].var(&[1], 1.0, false)?.add(&v[0].std(&[1], 1.0, false)?)),
        case("norm", &[&[4, 6]], |v, _| v[0].norm(2.0, &[1], false)),
        case("logsumexp", &[&[4, 6]], |v, _| v[0].logsumexp(&[1], false)),
        case("cumsum", &[&[4, 6]], |v, _| v[0].cumsum(1)),
        case("softmax", &[&[5, 33]], |v, _| v[0].softmax(-1)),
        case("log_softmax dim 0", &[&[5, 33]], |v, _| v[0].log_softmax(0)),
        case("matmul 2d", &[&[7, 5], &[5, 3]], |v, _| v[0].matmul(&v[1])),
        case("matmul batched broadcast", &[&[2, 3, 4, 5], &[5, 6]], |v, _| v[0].matmul(&v[1])),
        case("matmul transposed", &[&[5, 7], &[3, 5]], |v, _| v[0].t()?.matmul(&v[1].t()?)),
        case("mv outer", &[&[4, 3], &[3]], |v, _| v[0].mv(&v[1])?.unsqueeze(1)?.mul(&v[0])),
        case("views", &[&[2, 3, 4]], |v, _| {
            v[0].permute(&[2, 0, 1])?.reshape(&[4, 6])?.narrow(1, 1, 4)?.transpose(0, 1)?.contiguous()
        }),
        case("expand slice select", &[&[3, 1]], |v, _| {
            v[0].expand(&[3, 5])?.slice(1, Some(0), Some(5), 2)?.select(0, 1)
        }),
        case("cat stack", &[&[2, 3], &[4, 3]], |v, _| {
            let a = Var::cat(&[v[0].clone(), v[1].clone()], 0)?;
            let b = Var::cat(&[v[1].flip(&[0])?.roll(&[1], &[0])?, v[0].repeat(&[1, 1])?], 0)?;
            Var::stack(&[a, b], 1)
        }),
        case("gather", &[&[3, 4]], move |v, d| v[0].gather(1, &on(index(&[0, 3, 3, 1, 2, 2], &[3, 2]), d)?)),
        case("index_select", &[&[5, 3]], move |v, d| v[0].index_select(0, &on(index(&[4, 0, 4, 2], &[4]), d)?)),
        case("scatter_add", &[&[3, 4], &[2, 4]], move |v, d| {
            v[0].scatter_add(0, &on(index(&[0, 1, 2, 0, 2, 2, 1, 0], &[2, 4]), d)?, &v[1])
        }),
        case("index_add", &[&[4, 3], &[3, 3]], move |v, d| {
            v[0].index_add(0, &on(index(&[3, 0, 3], &[3]), d)?, &v[1], 2.0)
        }),
        case("masked_fill where", &[&[3, 4], &[3, 4]], |v, _| {
            let mask = v[0].tensor().gt_scalar(0.0)?;
            Var::where_cond(&mask, &v[0], &v[1])?.masked_fill(&v[1].tensor().lt_scalar(-0.5)?, 0.0)
        }),
        case("sort topk", &[&[3, 8]], |v, _| {
            Ok(v[0].sort(1, true)?.0.add(&v[0].flip(&[1])?)?.topk(3, 1, true, true)?.0)
        }),
        case("tril", &[&[4, 4]], |v, _| v[0].tril(0)),
        case("conv2d", &[&[2, 3, 7, 6], &[4, 3, 3, 3], &[4]], |v, _| {
            v[0].conv2d(&v[1], Some(&v[2]), Conv2dOptions { padding: [1, 1], ..Default::default() })
        }),
        case("conv2d strided grouped", &[&[2, 4, 9, 8], &[6, 2, 3, 2]], |v, _| {
            v[0].conv2d(&v[1], None, Conv2dOptions { stride: [2, 1], padding: [0, 1], dilation: [1, 2], groups: 2 })
        }),
        case("conv1d", &[&[2, 3, 11], &[5, 3, 4]], |v, _| {
            v[0].conv1d(&v[1], None, Conv1dOptions { stride: 2, padding: 1, ..Default::default() })
        }),
        case("conv_transpose2d", &[&[2, 4, 5, 5], &[4, 3, 3, 3], &[3]], |v, _| {
            v[0].conv_transpose2d(
                &v[1],
                Some(&v[2]),
                ConvTranspose2dOptions {
                    stride: [2, 2],
                    padding: [1, 1],
                    output_padding: [1, 0],
                    ..Default::default()
                },
            )
        }),
        case("max_pool2d", &[&[2, 3, 8, 7]], |v, _| {
            v[0].max_pool2d([2, 2], MaxPool2dOptions { stride: Some([2, 2]), ceil_mode: true, ..Default::default() })
        }),
        case("max_pool2d overlapping padded", &[&[1, 2, 7, 7]], |v, _| {
            v[0].max_pool2d([3, 3], MaxPool2dOptions { stride: Some([2, 2]), padding: [1, 1], ..Default::default() })
        }),
        case("avg_pool2d", &[&[2, 3, 8, 8]], |v, _| {
            v[0].avg_pool2d([3, 3], AvgPool2dOptions { stride: Some([2, 2]), padding: [1, 1], ..Default::default() })
        }),
        case("adaptive_avg_pool2d", &[&[2, 3, 7, 9]], |v, _| v[0].adaptive_avg_pool2d([3, 4])),
        case("pad modes", &[&[1, 2, 4, 5]], |v, _| {
            v[0].pad(&[1, 2, 2, 1], PadMode::Reflect)?
                .add_scalar(0.0)?
                .pad(&[1, 1, 0, 0], PadMode::Replicate)?
                .pad(&[2, 0], PadMode::Constant(0.5))
        }),
        case("layer_norm", &[&[4, 10], &[10], &[10]], |v, _| v[0].layer_norm(&[10], Some(&v[1]), Some(&v[2]), 1e-5)),
        case("batch_norm train", &[&[6, 3, 4, 4], &[3], &[3]], |v, _| {
            v[0].batch_norm(None, None, Some(&v[1]), Some(&v[2]), true, 0.1, 1e-5)
        }),
        case("embedding", &[&[10, 4]], move |v, d| {
            v[0].embedding(&on(index(&[1, 7, 7, 0, 9, 1], &[2, 3]), d)?, Some(0))
        }),
        case("cross_entropy", &[&[6, 5]], move |v, d| v[0].cross_entropy(&on(index(&[0, 4, 2, 2, 1, 3], &[6]), d)?)),
        case("mse_loss", &[&[6, 5], &[6, 5]], |v, _| v[0].mse_loss(&v[1])),
    ]
}

#[test]
fn autograd_gradients_on_cuda_match_cpu() {
    let Some(dev) = gpu("autograd_gradients_on_cuda_match_cpu") else { return };
    let cpu = Device::cpu();
    let mut rng = Generator::new(7);
    let mut failures = Vec::new();
    let all = cases();
    for (name, shapes, f) in &all {
        let data: Vec<Tensor> = shapes.iter().map(|s| normal(&mut rng, s)).collect();
        let run_on = |d: &Device, seed_grad: &Option<Tensor>| -> Result<(Tensor, Vec<Tensor>, Tensor)> {
            let vars: Vec<Var> = data.iter().map(|t| Var::new(t.to_device(d)?, true)).collect::<Result<_>>()?;
            let out = f(&vars, d)?;
            let g = match seed_grad {
                Some(g) => g.clone(),
                None => Tensor::ones(out.dims().to_vec(), out.dtype(), &Device::cpu())?,
            };
            out.backward_with(&g.to_device(d)?)?;
            let grads = vars
                .iter()
                .map(|v| match v.grad() {
                    Some(g) => g.to_device(&Device::cpu()),
                    None => Tensor::zeros(v.dims().to_vec(), v.dtype(), &Device::cpu()),
                })
                .collect::<Result<_>>()?;
            Ok((out.tensor().to_device(&Device::cpu())?, grads, g))
        };
        // A first CPU run gives the output's shape; the seed gradient is random.
        let seed = match run_on(&cpu, &None) {
            Ok((_, _, ones)) => normal(&mut rng, ones.dims()),
            Err(e) => {
                failures.push(format!("{name}: CPU failed: {e}"));
                continue;
            }
        };
        let (want_out, want_grads, _) = run_on(&cpu, &Some(seed.clone())).unwrap();
        match run_on(&dev, &Some(seed)) {
            Ok((out, grads, _)) => {
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    assert_close(&format!("{name}: output"), &out, &want_out, 1e-4, 1e-5);
                    for (i, (g, w)) in grads.iter().zip(&want_grads).enumerate() {
                        assert_close(&format!("{name}: grad of input {i}"), g, w, 1e-4, 1e-5);
                    }
                }));
                if let Err(p) = r {
                    let msg = p
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    failures.push(msg);
                }
            }
            Err(e) => failures.push(format!("{name}: CUDA error: {e}")),
        }
    }
    println!("autograd on CUDA: {} cases, {} failures", all.len(), failures.len());
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

/// Adam and AdamW through optim on CUDA (the backend's fused kernel) follow the CPU's
/// updates over several steps.
#[test]
fn fused_adam_through_optim_matches_cpu() {
    let Some(dev) = gpu("fused_adam_through_optim_matches_cpu") else { return };
    let mut rng = Generator::new(11);
    let p0 = normal(&mut rng, &[33, 7]);
    let grads: Vec<Tensor> = (0..4).map(|_| normal(&mut rng, &[33, 7])).collect();
    for decoupled in [false, true] {
        let run_on = |d: &Device| -> Result<Tensor> {
            // A copy: `to_device` onto the same device shares storage, and the run
            // updates its parameter in place.
            let p = Var::param(p0.to_device(d)?.copy()?)?;
            let mut opt: Box<dyn Optimizer> = if decoupled {
                Box::new(AdamW::new(
                    vec![p.clone()],
                    AdamWOptions { lr: 0.05, weight_decay: 0.1, ..Default::default() },
                )?)
            } else {
                Box::new(Adam::new(vec![p.clone()], AdamOptions { lr: 0.05, weight_decay: 0.1, ..Default::default() })?)
            };
            for g in &grads {
                p.set_grad(Some(g.to_device(d)?))?;
                opt.step()?;
            }
            p.tensor().to_device(&Device::cpu())
        };
        let want = run_on(&Device::cpu()).unwrap();
        let got = run_on(&dev).unwrap();
        // f32 rounding differs between the two kernels (lerp against b1 m + (1 - b1) g,
        // and the order of the denominator's terms); after four steps that is ~1e-6.
        assert_close(&format!("adam decoupled={decoupled}"), &got, &want, 1e-4, 1e-5);
        assert!(got.sub(&p0).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap() > 0.1);
    }
}

/// One training step of the digits CNN (forward, cross-entropy, backward, Adam) on
/// CUDA against the same step on the CPU from the same weights and batch.
#[test]
fn digits_cnn_step_on_cuda_matches_cpu() {
    let Some(dev) = gpu("digits_cnn_step_on_cuda_matches_cpu") else { return };
    let data = digits::load(digits::default_path()).unwrap();
    let idx = Tensor::arange(0.0, 64.0, 1.0, DType::I64, &Device::cpu()).unwrap();
    let x = data.images.index_select(0, &idx).unwrap().reshape(&[-1, 1, 8, 8]).unwrap();
    let y = data.labels.index_select(0, &idx).unwrap();
    type Named = Vec<(String, Tensor)>;
    let step = |d: &Device| -> Result<(f64, Named, Named)> {
        tensor_core::manual_seed(3);
        let net = build(Arch::Cnn)?;
        net.to_device(d)?;
        let mut opt = Adam::new(net.parameters(), AdamOptions { lr: 1e-2, ..Default::default() })?;
        opt.zero_grad();
        let logits = net.forward(&Var::from(x.to_device(d)?))?;
        let loss = cross_entropy(&logits, &y.to_device(d)?, &CrossEntropyOptions::default())?;
        loss.backward()?;
        let grads = net
            .named_parameters()
            .into_iter()
            .map(|(n, p)| Ok((n, p.grad().expect("every parameter has a gradient").to_device(&Device::cpu())?)))
            .collect::<Result<_>>()?;
        opt.step()?;
        let params = net
            .named_parameters()
            .into_iter()
            .map(|(n, p)| Ok((n, p.tensor().to_device(&Device::cpu())?)))
            .collect::<Result<_>>()?;
        Ok((loss.tensor().to_scalar::<f64>()?, grads, params))
    };
    let (l_cpu, g_cpu, p_cpu) = step(&Device::cpu()).unwrap();
    let (l_gpu, g_gpu, p_gpu) = step(&dev).unwrap();
    assert!((l_cpu - l_gpu).abs() < 1e-5 * l_cpu.abs().max(1.0), "loss {l_gpu} on CUDA, {l_cpu} on the CPU");
    assert_eq!(g_cpu.len(), 6);
    for ((n, g), (_, w)) in g_gpu.iter().zip(&g_cpu) {
        assert_close(&format!("grad of {n}"), g, w, 1e-3, 1e-5);
    }
    for ((n, g), (_, w)) in p_gpu.iter().zip(&p_cpu) {
        assert_close(&format!("{n} after the step"), g, w, 1e-4, 1e-5);
    }
}

/// Three epochs of the headline example on CUDA learn as well as on the CPU.
#[test]
fn digits_training_on_cuda_learns_like_cpu() {
    let Some(dev) = gpu("digits_training_on_cuda_learns_like_cpu") else { return };
    let data = digits::load(digits::default_path()).unwrap();
    let cfg = Config { arch: Arch::Cnn, epochs: 3, lr: 5e-3, seed: 1, ..Default::default() };
    let (_, h_cpu) = run(&data, &cfg).unwrap();
    let t0 = std::time::Instant::now();
    let (_, h_gpu) = run(&data, &Config { device: dev, ..cfg }).unwrap();
    println!(
        "digits 3 epochs: CUDA test acc {:.4} ({:.2} s), CPU {:.4}; losses CUDA {:?} CPU {:?}",
        h_gpu.test_acc[2],
        t0.elapsed().as_secs_f64(),
        h_cpu.test_acc[2],
        h_gpu.train_loss,
        h_cpu.train_loss
    );
    assert!(h_gpu.test_acc[2] > 0.85, "CUDA test accuracy {}", h_gpu.test_acc[2]);
    assert!((h_gpu.test_acc[2] - h_cpu.test_acc[2]).abs() < 0.03);
    for (a, b) in h_gpu.train_loss.iter().zip(&h_cpu.train_loss) {
        assert!((a - b).abs() < 0.02 * b.max(0.1), "epoch losses {a} (CUDA) vs {b} (CPU)");
    }
}

/// The profiler times CUDA primitives with events: a large matmul's device time is
/// positive and within the synchronised wall time of the whole profiled closure.
#[test]
fn profiler_records_cuda_event_times() {
    let Some(dev) = gpu("profiler_records_cuda_event_times") else { return };
    let a = Tensor::randn([2048, 2048], DType::F32, &dev).unwrap();
    let b = Tensor::randn([2048, 2048], DType::F32, &dev).unwrap();
    a.matmul(&b).unwrap();
    dev.synchronize().unwrap();
    let t0 = std::time::Instant::now();
    let (_, prof) = tensor_core::profiler::profile(|| {
        let c = a.matmul(&b).unwrap();
        (&c + &a).unwrap();
        dev.synchronize().unwrap();
    });
    let wall = t0.elapsed().as_nanos() as u64;
    let mm = prof.events().iter().find(|e| e.name == "matmul").expect("a matmul event");
    let d = mm.device_ns.expect("CUDA ops carry a device time");
    println!("matmul 2048: device {d} ns, queued in {} ns, whole closure {wall} ns", mm.dur_ns);
    assert!(d > 10_000 && d <= wall, "device time {d} ns, closure {wall} ns");
    let add = prof.events().iter().find(|e| e.name == "binary.add").expect("an add event");
    assert!(add.device_ns.is_some_and(|x| x > 0));
    let table = prof.table();
    assert!(table.contains("Device time total"), "{table}");
    println!("{table}");
}
