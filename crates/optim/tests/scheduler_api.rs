//! The scheduler API: every options struct's `Default` against PyTorch's documented
//! defaults, `LinearLR`'s default warm-up against its formula, and
//! `ReduceLROnPlateau` driven through `dyn LrScheduler` like every other scheduler.

use autograd::Var;
use optim::*;
use tensor_core::Tensor;

fn sgd(lr: f64) -> Sgd {
    let w = Var::param(Tensor::new(&[1.0f64])).unwrap();
    Sgd::new(vec![w], SgdOptions { lr, ..Default::default() }).unwrap()
}

#[test]
fn scheduler_option_defaults_match_pytorch() {
    // torch.optim.lr_scheduler signatures (PyTorch 2.x).
    assert_eq!(StepLROptions::default(), StepLROptions { gamma: 0.1 });
    assert_eq!(MultiStepLROptions::default(), MultiStepLROptions { gamma: 0.1 });
    assert_eq!(ConstantLROptions::default(), ConstantLROptions { factor: 1.0 / 3.0, total_iters: 5 });
    assert_eq!(
        LinearLROptions::default(),
        LinearLROptions { start_factor: 1.0 / 3.0, end_factor: 1.0, total_iters: 5 }
    );
    assert_eq!(PolynomialLROptions::default(), PolynomialLROptions { total_iters: 5, power: 1.0 });
    assert_eq!(CosineAnnealingLROptions::default(), CosineAnnealingLROptions { eta_min: 0.0 });
    assert_eq!(
        CosineAnnealingWarmRestartsOptions::default(),
        CosineAnnealingWarmRestartsOptions { t_mult: 1, eta_min: 0.0 }
    );
    assert_eq!(
        ReduceLROnPlateauOptions::default(),
        ReduceLROnPlateauOptions {
            mode: PlateauMode::Min,
            factor: 0.1,
            patience: 10,
            threshold: 1e-4,
            threshold_mode: ThresholdMode::Rel,
            cooldown: 0,
            min_lr: vec![0.0],
            eps: 1e-8,
        }
    );
    assert_eq!(
        OneCycleOptions::default(),
        OneCycleOptions {
            pct_start: 0.3,
            anneal_strategy: AnnealStrategy::Cos,
            cycle_momentum: true,
            base_momentum: vec![0.85],
            max_momentum: vec![0.95],
            div_factor: 25.0,
            final_div_factor: 1e4,
            three_phase: false,
        }
    );
    assert_eq!(
        CyclicOptions::default(),
        CyclicOptions {
            step_size_up: 2000,
            step_size_down: None,
            mode: CyclicMode::Triangular,
            gamma: 1.0,
            cycle_momentum: true,
            base_momentum: vec![0.8],
            max_momentum: vec![0.9],
        }
    );
}

#[test]
fn linear_lr_default_is_a_warm_up_from_a_third() {
    let mut opt = sgd(0.3);
    let mut s = LinearLR::new(&mut opt, LinearLROptions::default()).unwrap();
    for e in 0..9usize {
        // Naive closed form: base * (1/3 + (1 - 1/3) * min(e, 5) / 5).
        let want = 0.3 * (1.0 / 3.0 + (2.0 / 3.0) * e.min(5) as f64 / 5.0);
        assert!((opt.lr() - want).abs() < 1e-12, "epoch {e}: {} vs {want}", opt.lr());
        s.step(&mut opt).unwrap();
    }
}

#[test]
fn constant_and_polynomial_defaults_follow_pytorch() {
    let mut opt = sgd(0.9);
    let mut s = ConstantLR::new(&mut opt, ConstantLROptions::default()).unwrap();
    for e in 0..7 {
        let want = if e < 5 { 0.3 } else { 0.9 };
        assert!((opt.lr() - want).abs() < 1e-12, "ConstantLR epoch {e}");
        s.step(&mut opt).unwrap();
    }
    let mut opt = sgd(1.0);
    let mut p = PolynomialLR::new(&mut opt, PolynomialLROptions::default()).unwrap();
    for e in 0..7 {
        let want = 1.0 - (e.min(5) as f64) / 5.0;
        assert!((opt.lr() - want).abs() < 1e-12, "PolynomialLR epoch {e}");
        p.step(&mut opt).unwrap();
    }
}

/// PyTorch's plateau rule (mode min, rel threshold, no cooldown), written out.
fn plateau_ref(lr0: f64, factor: f64, patience: usize, metrics: &[f64]) -> Vec<f64> {
    let (mut lr, mut best, mut bad, mut out) = (lr0, f64::INFINITY, 0usize, vec![]);
    for &m in metrics {
        if m < best * (1.0 - 1e-4) {
            best = m;
            bad = 0;
        } else {
            bad += 1;
        }
        if bad > patience {
            lr *= factor;
            bad = 0;
        }
        out.push(lr);
    }
    out
}

#[test]
fn reduce_lr_on_plateau_is_driven_through_the_trait() {
    let metrics = [1.0, 0.8, 0.85, 0.9, 0.7, 0.75, 0.76, 0.77, 0.78];
    let mut opts: Vec<Sgd> = (0..3).map(|_| sgd(1.0)).collect();
    let o = ReduceLROnPlateauOptions { factor: 0.5, patience: 1, ..Default::default() };
    let mut scheds: Vec<Box<dyn LrScheduler>> = vec![
        Box::new(StepLR::new(&mut opts[0], 3, StepLROptions { gamma: 0.5 }).unwrap()),
        Box::new(ReduceLROnPlateau::new(&mut opts[1], o).unwrap()),
        Box::new(LinearLR::new(&mut opts[2], LinearLROptions::default()).unwrap()),
    ];
    assert_eq!(scheds.iter().map(|s| s.requires_metric()).collect::<Vec<_>>(), vec![false, true, false]);
    let mut got: Vec<Vec<f64>> = vec![vec![]; 3];
    for &m in &metrics {
        for (i, (s, opt)) in scheds.iter_mut().zip(opts.iter_mut()).enumerate() {
            s.step_with_metric(opt, m).unwrap();
            got[i].push(opt.lr());
            assert_eq!(s.last_lr(), vec![opt.lr()]);
        }
    }
    assert_eq!(got[1], plateau_ref(1.0, 0.5, 1, &metrics));
    assert_eq!(got[1], vec![1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25, 0.125]);
    // The epoch schedulers ignored the metric: the same as plain steps.
    let mut opt = sgd(1.0);
    let mut plain = StepLR::new(&mut opt, 3, StepLROptions { gamma: 0.5 }).unwrap();
    let want: Vec<f64> = metrics
        .iter()
        .map(|_| {
            plain.step(&mut opt).unwrap();
            opt.lr()
        })
        .collect();
    assert_eq!(got[0], want);
    assert_eq!(scheds[1].last_epoch(), metrics.len() as i64);

    // Without a metric the plateau scheduler says what it needs and changes nothing.
    let before = scheds[1].state_dict();
    let e = scheds[1].step(&mut opts[1]).unwrap_err();
    assert!(e.to_string().contains("step_with_metric"), "{e}");
    assert!(scheds[1].step_to(&mut opts[1], 3).is_err());
    assert_eq!(scheds[1].state_dict(), before);

    // Its state round-trips through the trait.
    let mut fresh = ReduceLROnPlateau::new(&mut sgd(1.0), o_default()).unwrap();
    fresh.load_state_dict(&before).unwrap();
    assert_eq!(fresh.state_dict(), before);
}

fn o_default() -> ReduceLROnPlateauOptions {
    ReduceLROnPlateauOptions::default()
}

#[test]
fn composite_schedulers_refuse_reduce_lr_on_plateau_like_pytorch() {
    let mut opt = sgd(1.0);
    let p = ReduceLROnPlateau::new(&mut opt, o_default()).unwrap();
    let e = ExponentialLR::new(&mut opt, 0.9).unwrap();
    let err = SequentialLR::new(&mut opt, vec![Box::new(e), Box::new(p)], &[2]).unwrap_err();
    assert!(err.to_string().contains("ReduceLROnPlateau") && err.to_string().contains("index 1"), "{err}");
    let p = ReduceLROnPlateau::new(&mut opt, o_default()).unwrap();
    let err = ChainedScheduler::new(&mut opt, vec![Box::new(p)]).unwrap_err();
    assert!(err.to_string().contains("ReduceLROnPlateau"), "{err}");
}
