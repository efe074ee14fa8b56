//! The functional loss API: option defaults against PyTorch's documented ones,
//! targets taken as `&Tensor` or `&Var` alike, and `pos_weight` kept apart from
//! `weight` in `binary_cross_entropy_with_logits`.

use autograd::Var;
use nn::loss::*;
use tensor_core::Tensor;

fn val(v: &Var) -> f64 {
    v.tensor().to_scalar::<f64>().unwrap()
}

fn t(v: &[f64], shape: &[usize]) -> Tensor {
    Tensor::from_vec(v.to_vec(), shape.to_vec()).unwrap()
}

#[test]
fn loss_option_defaults_match_pytorch() {
    // torch.nn.functional signatures: reduction='mean' everywhere, beta=1.0,
    // delta=1.0, weight=None, pos_weight=None, ignore_index=-100,
    // label_smoothing=0.0, log_target=False.
    assert_eq!(MseLossOptions::default(), MseLossOptions { reduction: Reduction::Mean });
    assert_eq!(L1LossOptions::default(), L1LossOptions { reduction: Reduction::Mean });
    assert_eq!(SmoothL1LossOptions::default(), SmoothL1LossOptions { beta: 1.0, reduction: Reduction::Mean });
    assert_eq!(HuberLossOptions::default(), HuberLossOptions { delta: 1.0, reduction: Reduction::Mean });
    assert_eq!(KlDivOptions::default(), KlDivOptions { reduction: Reduction::Mean, log_target: false });
    let ce = CrossEntropyOptions::default();
    assert!(ce.weight.is_none());
    assert_eq!((ce.ignore_index, ce.label_smoothing, ce.reduction), (-100, 0.0, Reduction::Mean));
    let nll = NllLossOptions::default();
    assert!(nll.weight.is_none());
    assert_eq!((nll.ignore_index, nll.reduction), (-100, Reduction::Mean));
    let bce = BceOptions::default();
    assert!(bce.weight.is_none());
    assert_eq!(bce.reduction, Reduction::Mean);
    let bcel = BceWithLogitsOptions::default();
    assert!(bcel.weight.is_none() && bcel.pos_weight.is_none());
    assert_eq!(bcel.reduction, Reduction::Mean);
}

/// Naive f64 `F.binary_cross_entropy_with_logits` (mean):
/// `-w [p y log s(x) + (1 - y) log(1 - s(x))]`, `p` broadcast along the last dim.
fn bce_logits_ref(x: &[f64], y: &[f64], classes: usize, weight: Option<&[f64]>, pos: Option<&[f64]>) -> f64 {
    let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
    let total: f64 = (0..x.len())
        .map(|i| {
            let c = i % classes;
            let p = pos.map_or(1.0, |p| p[c]);
            let w = weight.map_or(1.0, |w| w[c]);
            -w * (p * y[i] * sig(x[i]).ln() + (1.0 - y[i]) * (1.0 - sig(x[i])).ln())
        })
        .sum();
    total / x.len() as f64
}

#[test]
fn bce_with_logits_pos_weight_matches_reference_and_differs_from_weight() {
    let xs = [0.5, -1.2, 2.0, -0.3, 0.8, -2.5];
    let ys = [1.0, 0.0, 1.0, 0.0, 1.0, 1.0];
    let pw = [2.0, 0.5, 3.0];
    let x = Var::param(t(&xs, &[2, 3])).unwrap();
    let y = t(&ys, &[2, 3]);
    let pos = BceWithLogitsOptions { pos_weight: Some(t(&pw, &[3])), ..Default::default() };
    let got_pos = val(&binary_cross_entropy_with_logits(&x, &y, &pos).unwrap());
    let want_pos = bce_logits_ref(&xs, &ys, 3, None, Some(&pw));
    assert!((got_pos - want_pos).abs() < 1e-12, "{got_pos} vs {want_pos}");

    let weight = BceWithLogitsOptions { weight: Some(t(&pw, &[3])), ..Default::default() };
    let got_w = val(&binary_cross_entropy_with_logits(&x, &y, &weight).unwrap());
    let want_w = bce_logits_ref(&xs, &ys, 3, Some(&pw), None);
    assert!((got_w - want_w).abs() < 1e-12, "{got_w} vs {want_w}");
    // The same tensor as pos_weight and as weight means different losses.
    assert!((got_pos - got_w).abs() > 0.05, "{got_pos} vs {got_w}");

    let plain = val(&binary_cross_entropy_with_logits(&x, &y, &Default::default()).unwrap());
    assert!((plain - bce_logits_ref(&xs, &ys, 3, None, None)).abs() < 1e-12);
    // A pos_weight that does not broadcast is named in the error.
    let bad = BceWithLogitsOptions { pos_weight: Some(t(&[1.0, 2.0], &[2])), ..Default::default() };
    let e = binary_cross_entropy_with_logits(&x, &y, &bad).unwrap_err();
    assert!(e.to_string().contains("pos_weight"), "{e}");
}

#[test]
fn tensor_and_var_targets_give_the_same_losses() {
    let xs = [0.2, 0.7, 0.4, 0.9];
    let ys = [0.0, 1.0, 0.5, 0.25];
    let x = Var::param(t(&xs, &[2, 2])).unwrap();
    let yt = t(&ys, &[2, 2]);
    let yv = Var::from(yt.clone());
    let pairs: Vec<(f64, f64)> = vec![
        (val(&mse_loss(&x, &yt, &Default::default()).unwrap()), val(&mse_loss(&x, &yv, &Default::default()).unwrap())),
        (val(&l1_loss(&x, &yt, &Default::default()).unwrap()), val(&l1_loss(&x, &yv, &Default::default()).unwrap())),
        (
            val(&smooth_l1_loss(&x, &yt, &Default::default()).unwrap()),
            val(&smooth_l1_loss(&x, &yv, &Default::default()).unwrap()),
        ),
        (
            val(&huber_loss(&x, &yt, &Default::default()).unwrap()),
            val(&huber_loss(&x, &yv, &Default::default()).unwrap()),
        ),
        (
            val(&binary_cross_entropy(&x, &yt, &Default::default()).unwrap()),
            val(&binary_cross_entropy(&x, &yv, &Default::default()).unwrap()),
        ),
        (
            val(&binary_cross_entropy_with_logits(&x, &yt, &Default::default()).unwrap()),
            val(&binary_cross_entropy_with_logits(&x, &yv, &Default::default()).unwrap()),
        ),
        (val(&kl_div(&x, &yt, &Default::default()).unwrap()), val(&kl_div(&x, &yv, &Default::default()).unwrap())),
        (
            val(&cross_entropy(&x, &yt, &Default::default()).unwrap()),
            val(&cross_entropy(&x, &yv, &Default::default()).unwrap()),
        ),
    ];
    for (i, (a, b)) in pairs.iter().enumerate() {
        assert!(a.is_finite() && a == b, "loss {i}: {a} vs {b}");
    }
    // The default smooth L1 (beta 1) and MSE against naive formulas.
    let d: Vec<f64> = xs.iter().zip(&ys).map(|(a, b)| a - b).collect();
    let sl1 = d.iter().map(|d| if d.abs() < 1.0 { 0.5 * d * d } else { d.abs() - 0.5 }).sum::<f64>() / 4.0;
    assert!((pairs[2].0 - sl1).abs() < 1e-15);
    assert!((pairs[0].0 - d.iter().map(|d| d * d).sum::<f64>() / 4.0).abs() < 1e-15);
}

#[test]
fn var_targets_get_gradients() {
    let x = Var::from(t(&[1.0, 3.0], &[2]));
    let y = Var::param(t(&[0.0, 1.0], &[2])).unwrap();
    mse_loss(&x, &y, &Default::default()).unwrap().backward().unwrap();
    // d/dy mean((x - y)^2) = -(x - y).
    assert_eq!(y.grad().unwrap().to_vec::<f64>().unwrap(), vec![-1.0, -2.0]);

    // Soft cross-entropy targets: d/dy = -log_softmax(x) / N.
    let logits = Var::from(t(&[1.0, 2.0, 0.5, 0.0], &[2, 2]));
    let p = Var::param(t(&[0.3, 0.7, 1.0, 0.0], &[2, 2])).unwrap();
    cross_entropy(&logits, &p, &Default::default()).unwrap().backward().unwrap();
    let lsm = logits.tensor().log_softmax(1).unwrap().to_vec::<f64>().unwrap();
    let g = p.grad().unwrap().to_vec::<f64>().unwrap();
    for (gi, li) in g.iter().zip(&lsm) {
        assert!((gi + li / 2.0).abs() < 1e-12, "{gi} vs {}", -li / 2.0);
    }
}

#[test]
fn nll_loss_takes_its_own_options() {
    let lp = Var::from(t(&[-0.1, -2.0, -3.0, -0.5], &[2, 2]));
    let y = Tensor::new(&[0i64, 1]);
    let o = NllLossOptions { weight: Some(t(&[1.0, 3.0], &[2])), ..Default::default() };
    // Weighted mean: (1 * 0.1 + 3 * 0.5) / (1 + 3).
    let l = val(&nll_loss(&lp, &y, &o).unwrap());
    assert!((l - 1.6 / 4.0).abs() < 1e-12);
    let ig = NllLossOptions { ignore_index: 1, reduction: Reduction::Sum, ..Default::default() };
    assert!((val(&nll_loss(&lp, &y, &ig).unwrap()) - 0.1).abs() < 1e-12);
}
