#![allow(clippy::type_complexity)] // tables of optimizer constructors in tests
//! Optimizer behaviour: groups, zero_grad, frozen parameters, checkpoints, clipping,
//! and errors.

use autograd::Var;
use optim::*;
use tensor_core::{DType, Device, Error, Tensor};

type R<T> = tensor_core::Result<T>;

fn vals(v: &Var) -> Vec<f64> {
    v.tensor().to_dtype(DType::F64).unwrap().to_vec::<f64>().unwrap()
}

/// `sum(k * w^2) + sum(sin(b))` with a fixed weighting, so every parameter has a
/// different gradient.
fn loss(w: &Var, b: &Var) -> R<Var> {
    let k = Var::constant(
        Tensor::arange(1.0, w.numel() as f64 + 1.0, 1.0, w.dtype(), &Device::cpu())?.reshape_to(w.dims().to_vec())?,
    );
    w.square()?.mul(&k)?.sum_all()?.add(&b.sin()?.sum_all()?)
}

fn params(dtype: DType) -> (Var, Var) {
    let w =
        Var::param(Tensor::from_vec(vec![0.3f64, -0.7, 1.1, 0.2, -0.4, 0.9], [2, 3]).unwrap().to_dtype(dtype).unwrap())
            .unwrap();
    let b = Var::param(Tensor::from_vec(vec![0.5f64, -1.5, 2.0], [3]).unwrap().to_dtype(dtype).unwrap()).unwrap();
    (w, b)
}

fn train(opt: &mut dyn Optimizer, w: &Var, b: &Var, steps: usize) {
    for _ in 0..steps {
        opt.zero_grad();
        loss(w, b).unwrap().backward().unwrap();
        opt.step().unwrap();
    }
}

#[test]
fn sgd_single_step_by_hand() {
    let (w, b) = params(DType::F64);
    let w0 = vals(&w);
    let mut opt = Sgd::new(vec![w.clone(), b.clone()], SgdOptions { lr: 0.1, ..Default::default() }).unwrap();
    train(&mut opt, &w, &b, 1);
    for (i, (now, before)) in vals(&w).iter().zip(&w0).enumerate() {
        let grad = 2.0 * (i + 1) as f64 * before;
        assert!((now - (before - 0.1 * grad)).abs() < 1e-15);
    }
}

#[test]
fn param_groups_use_their_own_lr() {
    let (w, b) = params(DType::F64);
    let (w2, b2) = params(DType::F64);
    let mut grouped = Sgd::with_groups(vec![
        (vec![w.clone()], SgdOptions { lr: 0.1, ..Default::default() }),
        (vec![b.clone()], SgdOptions { lr: 0.01, momentum: 0.5, ..Default::default() }),
    ])
    .unwrap();
    assert_eq!(grouped.lrs(), vec![0.1, 0.01]);
    assert_eq!(grouped.num_param_groups(), 2);
    // The same run as two separate optimizers.
    let mut a = Sgd::new(vec![w2.clone()], SgdOptions { lr: 0.1, ..Default::default() }).unwrap();
    let mut c = Sgd::new(vec![b2.clone()], SgdOptions { lr: 0.01, momentum: 0.5, ..Default::default() }).unwrap();
    for _ in 0..4 {
        grouped.zero_grad();
        loss(&w, &b).unwrap().backward().unwrap();
        grouped.step().unwrap();
        a.zero_grad();
        c.zero_grad();
        loss(&w2, &b2).unwrap().backward().unwrap();
        a.step().unwrap();
        c.step().unwrap();
    }
    assert_eq!(vals(&w), vals(&w2));
    assert_eq!(vals(&b), vals(&b2));
    grouped.set_lr(0.5).unwrap();
    assert_eq!(grouped.lrs(), vec![0.5, 0.5]);
    grouped.set_lrs(&[0.2, 0.3]).unwrap();
    assert_eq!(grouped.lrs(), vec![0.2, 0.3]);
    assert!(grouped.set_lrs(&[0.2]).is_err());
    assert!(grouped.set_lrs(&[0.2, f64::NAN]).is_err());
}

#[test]
fn add_param_group_and_duplicates() {
    let (w, b) = params(DType::F32);
    let mut opt = Adam::new(vec![w.clone()], AdamOptions::default()).unwrap();
    opt.add_param_group(vec![b.clone()], AdamOptions { lr: 0.5, ..Default::default() }).unwrap();
    assert_eq!(opt.lrs(), vec![1e-3, 0.5]);
    let e = opt.add_param_group(vec![w.clone()], AdamOptions::default()).unwrap_err();
    assert!(e.to_string().contains("more than once"), "{e}");
    assert!(Sgd::new(vec![w.clone(), w.clone()], SgdOptions::default()).is_err());
    assert!(Sgd::new(Vec::<Var>::new(), SgdOptions::default()).is_err());
    let int = Var::constant(Tensor::new(&[1i64, 2]));
    assert!(Sgd::new(vec![int], SgdOptions::default()).is_err());
}

#[test]
fn invalid_options_are_errors() {
    let (w, _) = params(DType::F32);
    let p = || vec![w.clone()];
    assert!(Sgd::new(p(), SgdOptions { lr: -1.0, ..Default::default() }).is_err());
    assert!(Sgd::new(p(), SgdOptions { nesterov: true, ..Default::default() }).is_err());
    assert!(Sgd::new(p(), SgdOptions { nesterov: true, momentum: 0.9, dampening: 0.1, ..Default::default() }).is_err());
    assert!(Adam::new(p(), AdamOptions { betas: (1.0, 0.999), ..Default::default() }).is_err());
    assert!(Adam::new(p(), AdamOptions { betas: (0.9, -0.1), ..Default::default() }).is_err());
    assert!(AdamW::new(p(), AdamWOptions { eps: -1.0, ..Default::default() }).is_err());
    assert!(RmsProp::new(p(), RmsPropOptions { alpha: -0.5, ..Default::default() }).is_err());
    assert!(Adagrad::new(p(), AdagradOptions { lr_decay: -0.5, ..Default::default() }).is_err());
    let e = Sgd::new(p(), SgdOptions { lr: f64::NAN, ..Default::default() }).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument { op: "SGD", .. }), "{e}");
}

#[test]
fn zero_grad_sets_none() {
    let (w, b) = params(DType::F64);
    let mut opt = RmsProp::new(vec![w.clone(), b.clone()], RmsPropOptions::default()).unwrap();
    loss(&w, &b).unwrap().backward().unwrap();
    assert!(w.grad().is_some() && b.grad().is_some());
    opt.zero_grad();
    assert!(w.grad().is_none() && b.grad().is_none());
    // A step with no gradients changes nothing and creates no state.
    let before = vals(&w);
    opt.step().unwrap();
    assert_eq!(vals(&w), before);
    assert!(opt.state(0, 0).is_none());
}

#[test]
fn frozen_and_gradless_params_are_skipped() {
    let (w, b) = params(DType::F64);
    let mut opt = Adam::new(vec![w.clone(), b.clone()], AdamOptions { lr: 0.1, ..Default::default() }).unwrap();
    loss(&w, &b).unwrap().backward().unwrap();
    // Freeze b after its gradient was computed: the step must not touch it.
    b.set_requires_grad(false).unwrap();
    let (w0, b0) = (vals(&w), vals(&b));
    let v0 = b.tensor().version();
    opt.step().unwrap();
    assert_ne!(vals(&w), w0);
    assert_eq!(vals(&b), b0);
    assert_eq!(b.tensor().version(), v0);
    assert!(opt.state(0, 1).is_none());
    assert_eq!(opt.state(0, 0).unwrap().step, 1.0);
    // A parameter without a gradient is skipped too.
    b.set_requires_grad(true).unwrap();
    b.zero_grad();
    opt.step().unwrap();
    assert_eq!(vals(&b), b0);
    assert_eq!(opt.state(0, 0).unwrap().step, 2.0);
}

#[test]
fn step_updates_in_place_and_bumps_version() {
    let (w, b) = params(DType::F32);
    let storage = w.tensor().storage_id();
    let v0 = w.tensor().version();
    let mut opt = AdamW::new(vec![w.clone(), b.clone()], AdamWOptions::default()).unwrap();
    train(&mut opt, &w, &b, 1);
    assert_eq!(w.tensor().storage_id(), storage);
    assert!(w.tensor().version() > v0);
    assert!(autograd::is_grad_enabled());
}

#[test]
fn state_lives_on_the_param_device_and_dtype() {
    let (w, b) = params(DType::F32);
    let mut opt = RmsProp::new(
        vec![w.clone(), b.clone()],
        RmsPropOptions { momentum: 0.9, centered: true, ..Default::default() },
    )
    .unwrap();
    train(&mut opt, &w, &b, 1);
    let st = opt.state(0, 0).unwrap();
    assert_eq!(st.square_avg.dtype(), DType::F32);
    assert_eq!(st.square_avg.dims(), &[2, 3]);
    assert!(st.square_avg.device().is_cpu());
    assert!(st.momentum_buffer.is_some() && st.grad_avg.is_some());
}

/// Half-precision and non-contiguous parameters take the tensor-op path; it must agree
/// with the fused one.
#[test]
fn tensor_path_handles_non_contiguous_params() {
    let base = Tensor::from_vec(vec![0.3f64, -0.7, 1.1, 0.2, -0.4, 0.9], [3, 2]).unwrap();
    let wt = Var::param(base.t().unwrap()).unwrap(); // [2, 3], transposed view
    assert!(!wt.tensor().is_contiguous());
    let w = Var::param(base.t().unwrap().contiguous().unwrap()).unwrap();
    let (_, b1) = params(DType::F64);
    let (_, b2) = params(DType::F64);
    let o = AdamOptions { lr: 0.05, amsgrad: true, weight_decay: 0.1, ..Default::default() };
    let mut a = Adam::new(vec![wt.clone(), b1.clone()], o.clone()).unwrap();
    let mut c = Adam::new(vec![w.clone(), b2.clone()], o).unwrap();
    train(&mut a, &wt, &b1, 5);
    train(&mut c, &w, &b2, 5);
    for (x, y) in vals(&wt).iter().zip(vals(&w)) {
        assert!((x - y).abs() < 1e-12, "{x} vs {y}");
    }
}

#[test]
fn bf16_params_train() {
    let (w, b) = params(DType::BF16);
    let mut opt =
        Sgd::new(vec![w.clone(), b.clone()], SgdOptions { lr: 0.05, momentum: 0.9, ..Default::default() }).unwrap();
    let l0 = vals(&w).iter().enumerate().map(|(i, x)| (i + 1) as f64 * x * x).sum::<f64>();
    train(&mut opt, &w, &b, 10);
    let l1 = vals(&w).iter().enumerate().map(|(i, x)| (i + 1) as f64 * x * x).sum::<f64>();
    assert!(l1 < 0.5 * l0, "{l0} -> {l1}");
    assert_eq!(opt.state(0, 0).unwrap().momentum_buffer.as_ref().unwrap().dtype(), DType::BF16);
}

fn resume_case(make: &dyn Fn(Vec<Var>) -> Box<dyn Optimizer>, dtype: DType, via_file: bool) {
    let (n, m) = (4, 5);
    // Straight run of n + m steps.
    let (w, b) = params(dtype);
    let mut opt = make(vec![w.clone(), b.clone()]);
    train(&mut *opt, &w, &b, n + m);
    let straight = (vals(&w), vals(&b));
    // n steps, checkpoint, then m steps in a new optimizer.
    let (w, b) = params(dtype);
    let mut opt = make(vec![w.clone(), b.clone()]);
    train(&mut *opt, &w, &b, n);
    let mut sd = opt.state_dict().unwrap();
    // Keep training the first optimizer: the snapshot must not change.
    train(&mut *opt, &w, &b, 1);
    let (w, b) = params(dtype);
    let mut first = make(vec![w.clone(), b.clone()]);
    train(&mut *first, &w, &b, n);
    if via_file {
        let dir = std::env::temp_dir().join(format!("optim-test-{}-{}", std::process::id(), opt.name()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{dtype}.safetensors"));
        sd.save(&path).unwrap();
        sd = OptimizerState::load(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
    let mut second = make(vec![w.clone(), b.clone()]);
    second.load_state_dict(&sd).unwrap();
    train(&mut *second, &w, &b, m);
    assert_eq!((vals(&w), vals(&b)), straight, "{} resumed differently", opt.name());
}

#[test]
fn state_dict_round_trip_resumes_bit_exactly() {
    let makers: Vec<Box<dyn Fn(Vec<Var>) -> Box<dyn Optimizer>>> = vec![
        Box::new(|p| {
            Box::new(Sgd::new(p, SgdOptions { lr: 0.01, momentum: 0.9, nesterov: true, ..Default::default() }).unwrap())
        }),
        Box::new(|p| Box::new(Adam::new(p, AdamOptions { lr: 0.01, amsgrad: true, ..Default::default() }).unwrap())),
        Box::new(|p| Box::new(AdamW::new(p, AdamWOptions { lr: 0.01, ..Default::default() }).unwrap())),
        Box::new(|p| {
            Box::new(RmsProp::new(p, RmsPropOptions { momentum: 0.5, centered: true, ..Default::default() }).unwrap())
        }),
        Box::new(|p| Box::new(Adagrad::new(p, AdagradOptions { lr_decay: 0.1, ..Default::default() }).unwrap())),
    ];
    for make in &makers {
        for dtype in [DType::F64, DType::F32] {
            resume_case(make.as_ref(), dtype, false);
            resume_case(make.as_ref(), dtype, true);
        }
    }
}

#[test]
fn state_dict_contents() {
    let (w, b) = params(DType::F64);
    let mut opt = Adam::with_groups(vec![
        (vec![w.clone()], AdamOptions { lr: 0.1, ..Default::default() }),
        (vec![b.clone()], AdamOptions { lr: 0.2, amsgrad: true, ..Default::default() }),
    ])
    .unwrap();
    train(&mut opt, &w, &b, 2);
    let sd = opt.state_dict().unwrap();
    assert_eq!(sd.optimizer, "adam");
    assert_eq!(sd.param_groups[0].params, vec![0]);
    assert_eq!(sd.param_groups[1].params, vec![1]);
    assert_eq!(sd.param_groups[1].options["lr"], Hyper::Float(0.2));
    assert_eq!(sd.param_groups[1].options["betas"], Hyper::Pair(0.9, 0.999));
    assert!(matches!(sd.state[&0]["step"], StateValue::Scalar(s) if s == 2.0));
    assert!(sd.state[&1].contains_key("max_exp_avg_sq"));
    assert!(!sd.state[&0].contains_key("max_exp_avg_sq"));
}

#[test]
fn load_state_dict_errors() {
    let (w, b) = params(DType::F64);
    let mut adam = Adam::new(vec![w.clone(), b.clone()], AdamOptions::default()).unwrap();
    train(&mut adam, &w, &b, 1);
    let sd = adam.state_dict().unwrap();
    // Wrong algorithm.
    let mut sgd = Sgd::new(vec![w.clone(), b.clone()], SgdOptions::default()).unwrap();
    let e = sgd.load_state_dict(&sd).unwrap_err();
    assert!(e.to_string().contains("adam"), "{e}");
    // Wrong number of parameters in the group.
    let mut one = Adam::new(vec![w.clone()], AdamOptions::default()).unwrap();
    let e = one.load_state_dict(&sd).unwrap_err();
    assert!(e.to_string().contains("parameters"), "{e}");
    // Wrong number of groups.
    let mut two =
        Adam::with_groups(vec![(vec![w.clone()], AdamOptions::default()), (vec![b.clone()], AdamOptions::default())])
            .unwrap();
    assert!(two.load_state_dict(&sd).is_err());
    // Shapes swapped: a state buffer no longer matches its parameter.
    let mut swapped = Adam::new(vec![b.clone(), w.clone()], AdamOptions::default()).unwrap();
    let e = swapped.load_state_dict(&sd).unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { .. }), "{e}");
    assert!(swapped.state(0, 0).is_none(), "a failed load must leave the optimizer unchanged");
    // Missing option.
    let mut bad = sd.clone();
    bad.param_groups[0].options.remove("eps");
    let mut fresh = Adam::new(vec![w.clone(), b.clone()], AdamOptions::default()).unwrap();
    let e = fresh.load_state_dict(&bad).unwrap_err();
    assert!(e.to_string().contains("eps"), "{e}");
    // Missing buffer.
    let mut bad = sd.clone();
    bad.state.get_mut(&0).unwrap().remove("exp_avg");
    let e = fresh.load_state_dict(&bad).unwrap_err();
    assert!(e.to_string().contains("exp_avg"), "{e}");
    // Not an optimizer file.
    let e = OptimizerState::load("/nonexistent/optim.safetensors").unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e}");
}

#[test]
fn clip_grad_norm_matches_hand_computed_norms() {
    let a = Var::param(Tensor::zeros([2, 2], DType::F64, &Device::cpu()).unwrap()).unwrap();
    let b = Var::param(Tensor::zeros([3], DType::F64, &Device::cpu()).unwrap()).unwrap();
    let frozen = Var::param(Tensor::zeros([1], DType::F64, &Device::cpu()).unwrap()).unwrap(); // no grad
    let ga = [1.0, -2.0, 3.0, -4.0];
    let gb = [0.5, 6.0, -1.5];
    let set = || {
        a.set_grad(Some(Tensor::from_vec(ga.to_vec(), [2, 2]).unwrap())).unwrap();
        b.set_grad(Some(Tensor::from_vec(gb.to_vec(), [3]).unwrap())).unwrap();
    };
    let all: Vec<f64> = ga.iter().chain(&gb).copied().collect();
    let ps = [a.clone(), b.clone(), frozen.clone()];
    for p in [1.0, 2.0, 3.0, f64::INFINITY] {
        set();
        let want = if p.is_infinite() {
            all.iter().fold(0.0f64, |m, x| m.max(x.abs()))
        } else {
            all.iter().map(|x| x.abs().powf(p)).sum::<f64>().powf(1.0 / p)
        };
        let total = clip_grad_norm_(&ps, 2.0, p, true).unwrap();
        assert!((total - want).abs() < 1e-12 * want, "p={p}: {total} vs {want}");
        let coef = 2.0 / (want + 1e-6);
        let got: Vec<f64> = a
            .grad()
            .unwrap()
            .to_vec::<f64>()
            .unwrap()
            .into_iter()
            .chain(b.grad().unwrap().to_vec::<f64>().unwrap())
            .collect();
        for (g, x) in got.iter().zip(&all) {
            assert!((g - x * coef).abs() < 1e-12, "p={p}");
        }
        assert!(frozen.grad().is_none());
    }
    // Below the limit: unchanged.
    set();
    let total = clip_grad_norm_(&ps, 100.0, 2.0, false).unwrap();
    let l2 = all.iter().map(|x| x * x).sum::<f64>().sqrt(); // sqrt(68.5)
    assert!((total - l2).abs() < 1e-12, "{total} vs {l2}");
    assert_eq!(a.grad().unwrap().to_vec::<f64>().unwrap(), ga.to_vec());
    // Bad norm types.
    assert!(clip_grad_norm_(&ps, 1.0, 0.0, false).is_err());
    assert!(clip_grad_norm_(&ps, 1.0, -2.0, false).is_err());
    // No gradients at all: norm 0.
    assert_eq!(clip_grad_norm_(&[frozen], 1.0, 2.0, true).unwrap(), 0.0);
}

#[test]
fn clip_grad_norm_error_if_nonfinite() {
    let a = Var::param(Tensor::zeros([3], DType::F32, &Device::cpu()).unwrap()).unwrap();
    for bad in [f32::NAN, f32::INFINITY] {
        a.set_grad(Some(Tensor::new(&[1.0f32, bad, 2.0]))).unwrap();
        let e = clip_grad_norm_(std::slice::from_ref(&a), 1.0, 2.0, true).unwrap_err();
        assert!(e.to_string().contains("non-finite"), "{e}");
        // The gradient is left alone.
        assert_eq!(a.grad().unwrap().to_vec::<f32>().unwrap()[0], 1.0);
        // Without the check the norm is returned and the grads scaled (PyTorch's behaviour).
        let n = clip_grad_norm_(std::slice::from_ref(&a), 1.0, 2.0, false).unwrap();
        assert!(!n.is_finite());
    }
}

#[test]
fn clip_grad_value_clamps() {
    let a = Var::param(Tensor::zeros([4], DType::F64, &Device::cpu()).unwrap()).unwrap();
    a.set_grad(Some(Tensor::new(&[-3.0f64, -0.5, 0.25, 9.0]))).unwrap();
    clip_grad_value_(std::slice::from_ref(&a), 0.5).unwrap();
    assert_eq!(a.grad().unwrap().to_vec::<f64>().unwrap(), vec![-0.5, -0.5, 0.25, 0.5]);
    assert!(clip_grad_value_(&[a], -1.0).is_err());
}

#[test]
fn momentum_setters() {
    let (w, _) = params(DType::F64);
    let mut sgd = Sgd::new(vec![w.clone()], SgdOptions { momentum: 0.9, ..Default::default() }).unwrap();
    sgd.set_momentums(&[0.8]).unwrap();
    assert_eq!(sgd.momentums(), vec![Some(0.8)]);
    let mut adam = Adam::new(vec![w.clone()], AdamOptions::default()).unwrap();
    adam.set_momentums(&[0.85]).unwrap();
    assert_eq!(adam.options(0).unwrap().betas, (0.85, 0.999));
    assert!(adam.set_momentums(&[1.5]).is_err());
    let mut ada = Adagrad::new(vec![w.clone()], AdagradOptions::default()).unwrap();
    assert_eq!(ada.momentums(), vec![None]);
    assert!(ada.set_momentums(&[0.9]).is_err());
    // Schedulers that cycle momentum refuse an optimizer without one.
    assert!(OneCycleLR::new(&mut ada, 0.1, 10, OneCycleOptions::default()).is_err());
    assert!(CyclicLR::new(&mut ada, &[0.01], &[0.1], CyclicOptions::default()).is_err());
    let no_cycle = CyclicOptions { cycle_momentum: false, ..Default::default() };
    assert!(CyclicLR::new(&mut ada, &[0.01], &[0.1], no_cycle).is_ok());
}

#[test]
fn scheduler_errors() {
    let (w, _) = params(DType::F64);
    let mut opt = Sgd::new(vec![w.clone()], SgdOptions { lr: 0.1, ..Default::default() }).unwrap();
    assert!(StepLR::new(&mut opt, 0, StepLROptions { gamma: 0.5 }).is_err());
    assert!(LinearLR::new(&mut opt, LinearLROptions { start_factor: 0.0, end_factor: 1.0, total_iters: 5 }).is_err());
    assert!(ConstantLR::new(&mut opt, ConstantLROptions { factor: 1.5, total_iters: 5 }).is_err());
    assert!(CosineAnnealingWarmRestarts::new(
        &mut opt,
        0,
        CosineAnnealingWarmRestartsOptions { t_mult: 1, eta_min: 0.0 }
    )
    .is_err());
    assert!(ReduceLROnPlateau::new(&mut opt, ReduceLROnPlateauOptions { factor: 1.0, ..Default::default() }).is_err());
    let a = StepLR::new(&mut opt, 3, StepLROptions { gamma: 0.5 }).unwrap();
    assert!(SequentialLR::new(&mut opt, vec![Box::new(a)], &[3]).is_err());
    // OneCycleLR refuses to step past total_steps.
    let mut one = OneCycleLR::new(&mut opt, 1.0, 3, OneCycleOptions::default()).unwrap();
    for _ in 0..3 {
        one.step(&mut opt).unwrap();
    }
    let e = one.step(&mut opt).unwrap_err();
    assert!(e.to_string().contains("total steps"), "{e}");
    // A state for another scheduler kind is refused.
    let mut s = StepLR::new(&mut opt, 3, StepLROptions { gamma: 0.5 }).unwrap();
    let e = s.load_state_dict(&one.state_dict()).unwrap_err();
    assert!(e.to_string().contains("OneCycleLR"), "{e}");
}
