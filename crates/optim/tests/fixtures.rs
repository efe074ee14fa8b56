//! Optimizers and schedulers against trajectories computed by PyTorch
//! (tools/fixtures/make_nn_fixtures.py writes tests/fixtures/*.json).

use autograd::Var;
use optim::*;
use serde_json::Value;
use tensor_core::{DType, Device, Tensor};

type R<T> = tensor_core::Result<T>;

fn load(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {path}: {e}"))
}

fn arr(v: &Value) -> (Vec<usize>, Vec<f64>) {
    let shape = v["shape"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect();
    let data = v["data"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    (shape, data)
}

fn tensor(v: &Value) -> Tensor {
    let (shape, data) = arr(v);
    Tensor::from_vec(data, shape).unwrap()
}

fn f(cfg: &Value, key: &str, default: f64) -> f64 {
    cfg.get(key).and_then(|x| x.as_f64()).unwrap_or(default)
}

fn b(cfg: &Value, key: &str) -> bool {
    cfg.get(key).and_then(|x| x.as_bool()).unwrap_or(false)
}

fn close(what: &str, got: &[f64], want: &[f64], rtol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let tol = rtol * w.abs().max(1e-3);
        assert!((g - w).abs() <= tol, "{what}[{i}]: got {g}, want {w} (diff {})", (g - w).abs());
    }
}

/// The fixture script's objective:
/// `sum((w - 0.5)^2 * arange(1, n + 1).reshape(w.shape)) + sum(sin(b)) + 0.1 * sum(w) * sum(b)`.
fn objective(w: &Var, b: &Var) -> R<Var> {
    let n = w.numel();
    let k = Var::constant(
        Tensor::arange(1.0, n as f64 + 1.0, 1.0, DType::F64, &Device::cpu())?.reshape_to(w.dims().to_vec())?,
    );
    let quad = w.sub_scalar(0.5)?.square()?.mul(&k)?.sum_all()?;
    let sin = b.sin()?.sum_all()?;
    let cross = w.sum_all()?.mul(&b.sum_all()?)?.mul_scalar(0.1)?;
    quad.add(&sin)?.add(&cross)
}

fn make_optimizer(name: &str, cfg: &Value, params: Vec<Var>, fused: bool) -> Box<dyn Optimizer> {
    let lr = f(cfg, "lr", f64::NAN);
    let betas = cfg.get("betas").map(|x| (x[0].as_f64().unwrap(), x[1].as_f64().unwrap()));
    match name {
        "sgd" => Box::new(
            Sgd::new(
                params,
                SgdOptions {
                    lr,
                    momentum: f(cfg, "momentum", 0.0),
                    dampening: f(cfg, "dampening", 0.0),
                    weight_decay: f(cfg, "weight_decay", 0.0),
                    nesterov: b(cfg, "nesterov"),
                    maximize: b(cfg, "maximize"),
                    fused,
                },
            )
            .unwrap(),
        ),
        "adam" => Box::new(
            Adam::new(
                params,
                AdamOptions {
                    lr,
                    betas: betas.unwrap_or((0.9, 0.999)),
                    weight_decay: f(cfg, "weight_decay", 0.0),
                    amsgrad: b(cfg, "amsgrad"),
                    fused,
                    ..Default::default()
                },
            )
            .unwrap(),
        ),
        "adamw" => Box::new(
            AdamW::new(
                params,
                AdamWOptions {
                    lr,
                    betas: betas.unwrap_or((0.9, 0.999)),
                    weight_decay: f(cfg, "weight_decay", 1e-2),
                    amsgrad: b(cfg, "amsgrad"),
                    fused,
                    ..Default::default()
                },
            )
            .unwrap(),
        ),
        "rmsprop" => Box::new(
            RmsProp::new(
                params,
                RmsPropOptions {
                    lr,
                    alpha: f(cfg, "alpha", 0.99),
                    weight_decay: f(cfg, "weight_decay", 0.0),
                    momentum: f(cfg, "momentum", 0.0),
                    centered: b(cfg, "centered"),
                    fused,
                    ..Default::default()
                },
            )
            .unwrap(),
        ),
        "adagrad" => Box::new(
            Adagrad::new(
                params,
                AdagradOptions {
                    lr,
                    lr_decay: f(cfg, "lr_decay", 0.0),
                    weight_decay: f(cfg, "weight_decay", 0.0),
                    initial_accumulator_value: f(cfg, "initial_accumulator_value", 0.0),
                    fused,
                    ..Default::default()
                },
            )
            .unwrap(),
        ),
        other => panic!("unknown optimizer fixture case {other:?}"),
    }
}

const OPT_KEYS: &[&str] = &[
    "lr",
    "momentum",
    "dampening",
    "weight_decay",
    "nesterov",
    "maximize",
    "betas",
    "amsgrad",
    "alpha",
    "centered",
    "lr_decay",
    "initial_accumulator_value",
];

#[test]
fn optimizers_match_pytorch() {
    let fx = load("optimizers.json");
    let cases = fx["cases"].as_array().unwrap();
    assert!(cases.len() >= 14);
    for fused in [true, false] {
        for case in cases {
            let name = case["name"].as_str().unwrap();
            let cfg = &case["cfg"];
            for k in cfg.as_object().unwrap().keys() {
                assert!(OPT_KEYS.contains(&k.as_str()), "{name}: config key {k:?} is not handled by this test");
            }
            let w = Var::param(tensor(&case["w0"])).unwrap();
            let bb = Var::param(tensor(&case["b0"])).unwrap();
            let mut opt = make_optimizer(name, cfg, vec![w.clone(), bb.clone()], fused);
            let steps = case["steps"].as_array().unwrap();
            assert_eq!(steps.len(), 25);
            for (i, s) in steps.iter().enumerate() {
                opt.zero_grad();
                objective(&w, &bb).unwrap().backward().unwrap();
                opt.step().unwrap();
                let what = format!("{name} {cfg} fused={fused} step {i}");
                close(&format!("{what} w"), &w.tensor().to_vec::<f64>().unwrap(), &arr(&s["w"]).1, 1e-9);
                close(&format!("{what} b"), &bb.tensor().to_vec::<f64>().unwrap(), &arr(&s["b"]).1, 1e-9);
            }
        }
    }
}

/// An f32 run follows the f64 trajectory closely (the fused f32 kernel and the tensor
/// path both work in the parameter's dtype).
#[test]
fn optimizers_f32_track_f64() {
    let fx = load("optimizers.json");
    for case in fx["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        for fused in [true, false] {
            let w = Var::param(tensor(&case["w0"]).to_dtype(DType::F32).unwrap()).unwrap();
            let bb = Var::param(tensor(&case["b0"]).to_dtype(DType::F32).unwrap()).unwrap();
            let mut opt = make_optimizer(name, &case["cfg"], vec![w.clone(), bb.clone()], fused);
            for _ in 0..5 {
                opt.zero_grad();
                // Gradients in f64, cast to f32: isolates the optimizer's arithmetic.
                let w64 = Var::param(w.tensor().to_dtype(DType::F64).unwrap()).unwrap();
                let b64 = Var::param(bb.tensor().to_dtype(DType::F64).unwrap()).unwrap();
                objective(&w64, &b64).unwrap().backward().unwrap();
                w.set_grad(Some(w64.grad().unwrap().to_dtype(DType::F32).unwrap())).unwrap();
                bb.set_grad(Some(b64.grad().unwrap().to_dtype(DType::F32).unwrap())).unwrap();
                opt.step().unwrap();
            }
            let want = &case["steps"][4];
            let got: Vec<f64> = w.tensor().to_vec::<f32>().unwrap().iter().map(|&x| x as f64).collect();
            close(&format!("{name} f32 fused={fused} w"), &got, &arr(&want["w"]).1, 1e-4);
        }
    }
}

fn sched_cfg_keys(name: &str) -> &'static [&'static str] {
    match name {
        "step" => &["step_size", "gamma"],
        "multistep" => &["milestones", "gamma"],
        "exponential" => &["gamma"],
        "constant" => &["factor", "total_iters"],
        "linear" => &["start_factor", "end_factor", "total_iters"],
        "polynomial" => &["total_iters", "power"],
        "cosine" => &["t_max", "eta_min"],
        "cosine_warm_restarts" => &["t_0", "t_mult", "eta_min"],
        n if n.starts_with("onecycle") => {
            &["max_lr", "total_steps", "pct_start", "anneal_strategy", "div_factor", "final_div_factor", "three_phase"]
        }
        n if n.starts_with("cyclic") => &["base_lr", "max_lr", "step_size_up", "step_size_down", "mode", "gamma"],
        "lambda" | "multiplicative" => &["factor"],
        "sequential" => &["start_factor", "total_iters", "gamma", "milestone"],
        "chained" => &["factor", "total_iters", "gamma"],
        n if n.starts_with("plateau") => {
            &["mode", "factor", "patience", "threshold", "threshold_mode", "cooldown", "min_lr"]
        }
        other => panic!("unknown scheduler fixture case {other:?}"),
    }
}

enum Sched {
    Epoch(Box<dyn LrScheduler>),
    Plateau(ReduceLROnPlateau),
}

fn u(cfg: &Value, k: &str) -> usize {
    cfg[k].as_u64().unwrap_or_else(|| panic!("config {k}")) as usize
}

fn make_scheduler(name: &str, cfg: &Value, opt: &mut dyn Optimizer) -> R<Sched> {
    let g = |k: &str| cfg[k].as_f64().unwrap_or_else(|| panic!("config {k}"));
    let e = |s: Box<dyn LrScheduler>| Ok(Sched::Epoch(s));
    match name {
        "step" => e(Box::new(StepLR::new(opt, u(cfg, "step_size"), StepLROptions { gamma: g("gamma") })?)),
        "multistep" => {
            let m: Vec<usize> =
                cfg["milestones"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect();
            e(Box::new(MultiStepLR::new(opt, &m, MultiStepLROptions { gamma: g("gamma") })?))
        }
        "exponential" => e(Box::new(ExponentialLR::new(opt, g("gamma"))?)),
        "constant" => e(Box::new(ConstantLR::new(
            opt,
            ConstantLROptions { factor: g("factor"), total_iters: u(cfg, "total_iters") },
        )?)),
        "linear" => e(Box::new(LinearLR::new(
            opt,
            LinearLROptions {
                start_factor: g("start_factor"),
                end_factor: g("end_factor"),
                total_iters: u(cfg, "total_iters"),
            },
        )?)),
        "polynomial" => e(Box::new(PolynomialLR::new(
            opt,
            PolynomialLROptions { total_iters: u(cfg, "total_iters"), power: g("power") },
        )?)),
        "cosine" => e(Box::new(CosineAnnealingLR::new(
            opt,
            u(cfg, "t_max"),
            CosineAnnealingLROptions { eta_min: g("eta_min") },
        )?)),
        "cosine_warm_restarts" => e(Box::new(CosineAnnealingWarmRestarts::new(
            opt,
            u(cfg, "t_0"),
            CosineAnnealingWarmRestartsOptions { t_mult: u(cfg, "t_mult"), eta_min: g("eta_min") },
        )?)),
        n if n.starts_with("onecycle") => {
            let o = OneCycleOptions {
                pct_start: g("pct_start"),
                anneal_strategy: match cfg["anneal_strategy"].as_str().unwrap() {
                    "cos" => AnnealStrategy::Cos,
                    "linear" => AnnealStrategy::Linear,
                    s => panic!("anneal strategy {s}"),
                },
                div_factor: g("div_factor"),
                final_div_factor: g("final_div_factor"),
                three_phase: cfg.get("three_phase").and_then(|x| x.as_bool()).unwrap_or(false),
                ..Default::default()
            };
            e(Box::new(OneCycleLR::new(opt, g("max_lr"), u(cfg, "total_steps"), o)?))
        }
        n if n.starts_with("cyclic") => {
            let o = CyclicOptions {
                step_size_up: u(cfg, "step_size_up"),
                step_size_down: Some(u(cfg, "step_size_down")),
                mode: match cfg["mode"].as_str().unwrap() {
                    "triangular" => CyclicMode::Triangular,
                    "triangular2" => CyclicMode::Triangular2,
                    "exp_range" => CyclicMode::ExpRange,
                    m => panic!("cyclic mode {m}"),
                },
                gamma: g("gamma"),
                ..Default::default()
            };
            e(Box::new(CyclicLR::new(opt, &[g("base_lr")], &[g("max_lr")], o)?))
        }
        "lambda" => {
            let k = g("factor");
            e(Box::new(LambdaLR::new(opt, move |ep| k.powf(ep as f64))?))
        }
        "multiplicative" => {
            let k = g("factor");
            e(Box::new(MultiplicativeLR::new(opt, move |_| k)?))
        }
        "sequential" => {
            let a = LinearLR::new(
                opt,
                LinearLROptions {
                    start_factor: g("start_factor"),
                    end_factor: 1.0,
                    total_iters: u(cfg, "total_iters"),
                },
            )?;
            let b = ExponentialLR::new(opt, g("gamma"))?;
            e(Box::new(SequentialLR::new(opt, vec![Box::new(a), Box::new(b)], &[u(cfg, "milestone")])?))
        }
        "chained" => {
            let a =
                ConstantLR::new(opt, ConstantLROptions { factor: g("factor"), total_iters: u(cfg, "total_iters") })?;
            let b = ExponentialLR::new(opt, g("gamma"))?;
            e(Box::new(ChainedScheduler::new(opt, vec![Box::new(a), Box::new(b)])?))
        }
        n if n.starts_with("plateau") => {
            let o = ReduceLROnPlateauOptions {
                mode: match cfg["mode"].as_str().unwrap() {
                    "min" => PlateauMode::Min,
                    "max" => PlateauMode::Max,
                    m => panic!("mode {m}"),
                },
                factor: g("factor"),
                patience: u(cfg, "patience"),
                threshold: g("threshold"),
                threshold_mode: match cfg["threshold_mode"].as_str().unwrap() {
                    "rel" => ThresholdMode::Rel,
                    "abs" => ThresholdMode::Abs,
                    m => panic!("threshold mode {m}"),
                },
                cooldown: u(cfg, "cooldown"),
                min_lr: vec![g("min_lr")],
                ..Default::default()
            };
            Ok(Sched::Plateau(ReduceLROnPlateau::new(opt, o)?))
        }
        other => panic!("unknown scheduler fixture case {other:?}"),
    }
}

fn fixture_optimizer(kind: &str) -> Box<dyn Optimizer> {
    let p = Var::param(Tensor::zeros([1], DType::F64, &Device::cpu()).unwrap()).unwrap();
    match kind {
        "adam" => {
            Box::new(Adam::new(vec![p], AdamOptions { lr: 0.1, betas: (0.9, 0.999), ..Default::default() }).unwrap())
        }
        "sgd" => Box::new(Sgd::new(vec![p], SgdOptions { lr: 0.1, momentum: 0.9, ..Default::default() }).unwrap()),
        other => panic!("unknown fixture optimizer {other:?}"),
    }
}

fn run_schedule(case: &Value, resume_at: Option<usize>) -> (Vec<f64>, Vec<f64>) {
    let name = case["name"].as_str().unwrap();
    let cfg = &case["cfg"];
    let n = case["lrs"].as_array().unwrap().len();
    let metrics: Option<Vec<f64>> =
        case.get("metrics").map(|m| m.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect());
    let kind = case["optimizer"].as_str().unwrap();
    let mut opt = fixture_optimizer(kind);
    let mut sched = make_scheduler(name, cfg, &mut *opt).unwrap();
    let (mut lrs, mut moms) = (Vec::new(), Vec::new());
    for i in 0..n {
        if Some(i) == resume_at {
            // Checkpoint and restore into fresh objects mid-run.
            let osd = opt.state_dict().unwrap();
            let ssd = match &sched {
                Sched::Epoch(s) => s.state_dict(),
                Sched::Plateau(p) => p.state_dict(),
            };
            let ssd = SchedulerState::from_json(&ssd.to_json()).unwrap();
            let mut opt2 = fixture_optimizer(kind);
            let mut sched2 = make_scheduler(name, cfg, &mut *opt2).unwrap();
            opt2.load_state_dict(&osd).unwrap();
            match &mut sched2 {
                Sched::Epoch(s) => s.load_state_dict(&ssd).unwrap(),
                Sched::Plateau(p) => p.load_state_dict(&ssd).unwrap(),
            }
            opt = opt2;
            sched = sched2;
        }
        lrs.push(opt.lr());
        moms.push(opt.momentums()[0].unwrap_or(f64::NAN));
        opt.step().unwrap();
        match &mut sched {
            Sched::Epoch(s) => s.step(&mut *opt).unwrap(),
            Sched::Plateau(p) => p.step_with_metric(&mut *opt, metrics.as_ref().unwrap()[i]).unwrap(),
        }
    }
    (lrs, moms)
}

#[test]
fn schedulers_match_pytorch() {
    let fx = load("schedulers.json");
    let cases = fx["cases"].as_array().unwrap();
    assert!(cases.len() >= 20);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let allowed = sched_cfg_keys(name);
        for k in case["cfg"].as_object().unwrap().keys() {
            assert!(allowed.contains(&k.as_str()), "{name}: config key {k:?} is not handled by this test");
        }
        let want_lrs: Vec<f64> = case["lrs"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        assert_eq!(want_lrs.len(), 300, "{name}");
        for resume in [None, Some(137)] {
            let (lrs, moms) = run_schedule(case, resume);
            close(&format!("{name} lr (resume {resume:?})"), &lrs, &want_lrs, 1e-9);
            if let Some(m) = case.get("momentum") {
                let want: Vec<f64> = m.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
                close(&format!("{name} momentum (resume {resume:?})"), &moms, &want, 1e-9);
            }
        }
    }
}
