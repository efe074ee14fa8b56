//! Loss functions with PyTorch's formulas, defaults and reductions
//! (`torch.nn.functional`).
//!
//! Every loss is `loss(input: &Var, target: impl Target, options: &XOptions)`: the
//! target is a `&Tensor` or a `&Var` ([`Target`]), and everything PyTorch takes as a
//! keyword argument lives in a named options struct whose `Default` is PyTorch's
//! default, so `&Default::default()` is `F.mse_loss(x, y)` and two optional tensors
//! (`weight`, `pos_weight`) can never be swapped by position.
//!
//! Each is composed from differentiable `Var` ops; constants that depend only on the
//! targets (class weights picked per sample, one-hot rows) are computed once up front.
//!
//! ```
//! use autograd::Var;
//! use nn::loss::{cross_entropy, mse_loss, CrossEntropyOptions, MseLossOptions, Reduction};
//! use tensor_core::Tensor;
//! let logits = Var::param(Tensor::from_vec(vec![2.0f64, 0.0, 0.0, 0.0, 3.0, 0.0], [2, 3])?)?;
//! let target = Tensor::new(&[0i64, 1]);
//! let loss = cross_entropy(&logits, &target, &CrossEntropyOptions::default())?;
//! loss.backward()?;
//! let expect = ((1.0 + 2.0 * (-2.0f64).exp()).ln() + (1.0 + 2.0 * (-3.0f64).exp()).ln()) / 2.0;
//! assert!((loss.tensor().to_scalar::<f64>()? - expect).abs() < 1e-12);
//! assert_eq!(logits.grad().unwrap().dims(), &[2, 3]);
//!
//! // A Var target works the same way; options default to PyTorch's.
//! let x = Var::param(Tensor::new(&[1.0f64, 2.0]))?;
//! let y = Var::from(Tensor::new(&[0.0f64, 0.0]));
//! let sum = mse_loss(&x, &y, &MseLossOptions { reduction: Reduction::Sum })?;
//! assert_eq!(sum.tensor().to_scalar::<f64>()?, 5.0);
//! # Ok::<(), tensor_core::Error>(())
//! ```

pub use autograd::Target;
use autograd::Var;
use tensor_core::{ClassLossOptions, DType, Error, Result, Tensor};

/// How per-element losses are combined.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reduction {
    /// The mean (weighted by class weights where the loss has them).
    #[default]
    Mean,
    /// The sum.
    Sum,
    /// No reduction: one loss per element (or sample).
    None,
    /// The sum divided by the batch size (`kl_div` only, its mathematically correct
    /// mean).
    BatchMean,
}

fn reduce(op: &'static str, loss: Var, r: Reduction) -> Result<Var> {
    match r {
        Reduction::Mean => loss.mean(&[], false),
        Reduction::Sum => loss.sum(&[], false),
        Reduction::None => Ok(loss),
        Reduction::BatchMean => Err(Error::arg(op, "reduction BatchMean is only supported by kl_div")),
    }
}

/// The target as a `Var` with the input's shape checked.
fn same_shape(op: &'static str, input: &Var, target: impl Target) -> Result<Var> {
    let t = target.to_var();
    if input.dims() != t.dims() {
        return Err(Error::shape(op, input.dims(), t.dims(), "input and target must have the same shape"));
    }
    Ok(t)
}

fn scalar_like(v: f64, like: &Var) -> Result<Tensor> {
    Tensor::scalar_on(v, like.dtype(), like.device())
}

/// Options of [`mse_loss`] (PyTorch's `F.mse_loss` defaults via `Default`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MseLossOptions {
    /// The reduction (`Mean`).
    pub reduction: Reduction,
}

/// Options of [`l1_loss`] (PyTorch's `F.l1_loss` defaults via `Default`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct L1LossOptions {
    /// The reduction (`Mean`).
    pub reduction: Reduction,
}

/// Options of [`smooth_l1_loss`] (PyTorch's `F.smooth_l1_loss` defaults via
/// `Default`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SmoothL1LossOptions {
    /// Where the loss turns from quadratic to linear (1.0; 0 is the L1 loss).
    pub beta: f64,
    /// The reduction (`Mean`).
    pub reduction: Reduction,
}

impl Default for SmoothL1LossOptions {
    fn default() -> Self {
        SmoothL1LossOptions { beta: 1.0, reduction: Reduction::Mean }
    }
}

/// Options of [`huber_loss`] (PyTorch's `F.huber_loss` defaults via `Default`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HuberLossOptions {
    /// Where the loss turns from quadratic to linear (1.0).
    pub delta: f64,
    /// The reduction (`Mean`).
    pub reduction: Reduction,
}

impl Default for HuberLossOptions {
    fn default() -> Self {
        HuberLossOptions { delta: 1.0, reduction: Reduction::Mean }
    }
}

/// Mean squared error: `(x - y)^2` (PyTorch's `F.mse_loss`).
///
/// ```
/// use autograd::Var;
/// use nn::loss::mse_loss;
/// use tensor_core::Tensor;
/// let x = Var::param(Tensor::new(&[1.0f64, 3.0]))?;
/// let loss = mse_loss(&x, &Tensor::new(&[0.0f64, 1.0]), &Default::default())?;
/// assert_eq!(loss.tensor().to_scalar::<f64>()?, 2.5);
/// # Ok::<(), tensor_core::Error>(())
/// ```
pub fn mse_loss(input: &Var, target: impl Target, o: &MseLossOptions) -> Result<Var> {
    let t = same_shape("mse_loss", input, target)?;
    reduce("mse_loss", input.sub(&t)?.square()?, o.reduction)
}

/// Mean absolute error: `|x - y|` (PyTorch's `F.l1_loss`).
pub fn l1_loss(input: &Var, target: impl Target, o: &L1LossOptions) -> Result<Var> {
    let t = same_shape("l1_loss", input, target)?;
    reduce("l1_loss", input.sub(&t)?.abs()?, o.reduction)
}

/// Quadratic below `beta` and linear above: `0.5 d^2 / beta` if `|d| < beta`, else
/// `|d| - 0.5 beta` (`beta = 0` is the L1 loss; PyTorch's `F.smooth_l1_loss`).
pub fn smooth_l1_loss(input: &Var, target: impl Target, o: &SmoothL1LossOptions) -> Result<Var> {
    let op = "smooth_l1_loss";
    let t = same_shape(op, input, target)?;
    let beta = o.beta;
    if beta.is_nan() || beta < 0.0 {
        return Err(Error::arg(op, format!("beta must be non-negative, got {beta}")));
    }
    if beta == 0.0 {
        return l1_loss(input, &t, &L1LossOptions { reduction: o.reduction });
    }
    let d = input.sub(&t)?;
    let ad = d.abs()?;
    let quad = d.square()?.mul_scalar(0.5 / beta)?;
    let lin = ad.sub_scalar(0.5 * beta)?;
    let small = ad.tensor().lt_scalar(beta)?;
    reduce(op, Var::where_cond(&small, &quad, &lin)?, o.reduction)
}

/// Huber loss: `0.5 d^2` if `|d| < delta`, else `delta (|d| - 0.5 delta)`
/// (PyTorch's `F.huber_loss`).
pub fn huber_loss(input: &Var, target: impl Target, o: &HuberLossOptions) -> Result<Var> {
    let op = "huber_loss";
    let t = same_shape(op, input, target)?;
    let delta = o.delta;
    if delta.is_nan() || delta <= 0.0 {
        return Err(Error::arg(op, format!("delta must be positive, got {delta}")));
    }
    let d = input.sub(&t)?;
    let ad = d.abs()?;
    let quad = d.square()?.mul_scalar(0.5)?;
    let lin = ad.sub_scalar(0.5 * delta)?.mul_scalar(delta)?;
    let small = ad.tensor().lt_scalar(delta)?;
    reduce(op, Var::where_cond(&small, &quad, &lin)?, o.reduction)
}

/// Options of [`cross_entropy`] (PyTorch's `F.cross_entropy` defaults via `Default`).
#[derive(Clone, Debug)]
pub struct CrossEntropyOptions {
    /// A `[C]` weight per class.
    pub weight: Option<Tensor>,
    /// Samples with this target contribute nothing (class-index targets only; -100
    /// by default, like PyTorch).
    pub ignore_index: i64,
    /// Mixes the target with the uniform distribution: `(1 - e) y + e / C`.
    pub label_smoothing: f64,
    /// The reduction (`Mean` divides by the summed weights of the counted samples).
    pub reduction: Reduction,
}

impl Default for CrossEntropyOptions {
    fn default() -> Self {
        CrossEntropyOptions { weight: None, ignore_index: -100, label_smoothing: 0.0, reduction: Reduction::Mean }
    }
}

/// Options of [`nll_loss`] (PyTorch's `F.nll_loss` defaults via `Default`).
#[derive(Clone, Debug)]
pub struct NllLossOptions {
    /// A `[C]` weight per class.
    pub weight: Option<Tensor>,
    /// Samples with this target contribute nothing (-100, like PyTorch).
    pub ignore_index: i64,
    /// The reduction (`Mean` divides by the summed weights of the counted samples).
    pub reduction: Reduction,
}

impl Default for NllLossOptions {
    fn default() -> Self {
        NllLossOptions { weight: None, ignore_index: -100, reduction: Reduction::Mean }
    }
}

/// Puts classes last and flattens: `[N, C, d...]` -> `[M, C]`, `[C]` -> `[1, C]`.
fn classes_last(op: &'static str, x: &Var) -> Result<(Var, usize)> {
    match x.rank() {
        0 => Err(Error::invalid_shape(op, x.dims(), "expected an input of shape [C], [N, C] or [N, C, d1, ...]")),
        1 => Ok((x.unsqueeze(0)?, x.dims()[0])),
        2 => Ok((x.clone(), x.dims()[1])),
        r => {
            let c = x.dims()[1];
            let mut perm: Vec<isize> = vec![0];
            perm.extend(2..r as isize);
            perm.push(1);
            Ok((x.permute(&perm)?.reshape(&[-1, c as isize])?, c))
        }
    }
}

fn class_weights(op: &'static str, weight: Option<&Tensor>, c: usize) -> Result<Vec<f64>> {
    match weight {
        None => Ok(vec![1.0; c]),
        Some(w) if w.dims() == [c] => w.to_vec_f64(),
        Some(w) => Err(Error::shape(op, w.dims(), &[c], "weight must have one entry per class")),
    }
}

/// `-(logp * K).sum(1)` with K built from class-index targets, then the reduction.
#[allow(clippy::too_many_arguments)]
fn index_loss(
    op: &'static str,
    input: &Var,
    logp: &Var,
    c: usize,
    target: &Tensor,
    weight: Option<&Tensor>,
    ignore_index: i64,
    eps: f64,
    reduction: Reduction,
) -> Result<Var> {
    // The expected target shape: the input's without the class dim.
    let expect: Vec<usize> = match input.rank() {
        1 => vec![],
        _ => input.dims().iter().enumerate().filter(|&(i, _)| i != 1).map(|(_, &d)| d).collect(),
    };
    if target.dims() != expect.as_slice() {
        return Err(Error::shape(op, input.dims(), target.dims(), format!("expected a target of shape {expect:?}")));
    }
    if target.dtype().is_float() || target.dtype() == DType::Bool {
        return Err(Error::DTypeMismatch { op, expected: DType::I64, got: target.dtype() });
    }
    let t: Vec<i64> = target.to_dtype(DType::I64)?.to_vec::<i64>()?;
    let w = class_weights(op, weight, c)?;
    let m = t.len();
    let mut k = vec![0.0f64; m * c];
    let mut denom = 0.0;
    for (n, &ti) in t.iter().enumerate() {
        if ti == ignore_index {
            continue;
        }
        if ti < 0 || ti as usize >= c {
            return Err(Error::IndexOutOfRange { op, index: ti, dim: 1, size: c });
        }
        let ti = ti as usize;
        denom += w[ti];
        let row = &mut k[n * c..(n + 1) * c];
        if eps > 0.0 {
            for (kc, wc) in row.iter_mut().zip(&w) {
                *kc = eps / c as f64 * wc;
            }
        }
        row[ti] += (1.0 - eps) * w[ti];
    }
    let kt = Tensor::from_vec(k, [m, c])?.to_dtype(logp.dtype())?.to_device(logp.device())?;
    let per = logp.mul(&Var::from(kt))?.sum(&[1], false)?.neg()?;
    match reduction {
        Reduction::None => per.reshape(&expect.iter().map(|&d| d as isize).collect::<Vec<_>>()),
        Reduction::Sum => per.sum(&[], false),
        // 0 / 0 = NaN when every sample is ignored, like PyTorch.
        Reduction::Mean => per.sum(&[], false)?.div_scalar(denom),
        Reduction::BatchMean => Err(Error::arg(op, "reduction BatchMean is only supported by kl_div")),
    }
}

/// Cross-entropy with class-index targets: the fused per-row loss
/// ([`Var::cross_entropy_rows`]), then the reduction.
fn class_index_loss(
    op: &'static str,
    input: &Var,
    x2: &Var,
    c: usize,
    target: &Tensor,
    o: &CrossEntropyOptions,
) -> Result<Var> {
    let expect = target_shape(input);
    if target.dims() != expect.as_slice() {
        return Err(Error::shape(op, input.dims(), target.dims(), format!("expected a target of shape {expect:?}")));
    }
    if let Some(w) = &o.weight {
        if w.dims() != [c] {
            return Err(Error::shape(op, w.dims(), &[c], "weight must have one entry per class"));
        }
    }
    let t = target.reshape(&[-1])?;
    let rows =
        ClassLossOptions { weight: o.weight.clone(), ignore_index: o.ignore_index, label_smoothing: o.label_smoothing };
    let per = x2.cross_entropy_rows(&t, &rows)?;
    match o.reduction {
        Reduction::None => per.reshape(&expect.iter().map(|&d| d as isize).collect::<Vec<_>>()),
        Reduction::Sum => per.sum(&[], false),
        Reduction::Mean => {
            // The summed weights of the counted targets (0 / 0 = NaN when every
            // sample is ignored, like PyTorch); the kernel has checked the targets.
            let w = class_weights(op, o.weight.as_ref(), c)?;
            let t = t.to_dtype(DType::I64)?.to_vec::<i64>()?;
            let denom: f64 = t
                .iter()
                .filter(|&&ti| ti != o.ignore_index)
                .map(|&ti| usize::try_from(ti).ok().and_then(|i| w.get(i)).copied().unwrap_or(0.0))
                .sum();
            per.sum(&[], false)?.div_scalar(denom)
        }
        Reduction::BatchMean => Err(Error::arg(op, "reduction BatchMean is only supported by kl_div")),
    }
}

/// The shape of class-index targets: the input's without the class dim.
fn target_shape(input: &Var) -> Vec<usize> {
    match input.rank() {
        1 => vec![],
        _ => input.dims().iter().enumerate().filter(|&(i, _)| i != 1).map(|(_, &d)| d).collect(),
    }
}

fn check_smoothing(op: &'static str, eps: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&eps) {
        return Err(Error::arg(op, format!("label_smoothing must be between 0.0 and 1.0, got {eps}")));
    }
    Ok(())
}

/// Cross-entropy of logits `[N, C]` (or `[C]`, or `[N, C, d...]`) against either class
/// indices (an integer tensor shaped like the input without dim 1) or class
/// probabilities (a float tensor or `Var` shaped like the input; a `Var` target gets
/// a gradient), exactly as PyTorch's `F.cross_entropy`: with `weight`, the mean is
/// divided by the summed weights of the non-ignored targets (also for the
/// label-smoothing term); with probabilities, by the number of samples.
pub fn cross_entropy(input: &Var, target: impl Target, o: &CrossEntropyOptions) -> Result<Var> {
    let _prof = tensor_core::profiler::scope("cross_entropy", &[input.tensor(), target.tensor()]);
    let op = "cross_entropy";
    check_smoothing(op, o.label_smoothing)?;
    let (x2, c) = classes_last(op, input)?;
    if !target.tensor().dtype().is_float() {
        return class_index_loss(op, input, &x2, c, target.tensor(), o);
    }
    let logp = x2.log_softmax(1)?;
    // Probabilities.
    let target = target.to_var();
    if target.dims() != input.dims() {
        return Err(Error::shape(op, input.dims(), target.dims(), "probability targets must match the input's shape"));
    }
    let w = class_weights(op, o.weight.as_ref(), c)?;
    let eps = o.label_smoothing;
    let (t2, _) = classes_last(op, &target.to_dtype(logp.dtype())?)?;
    let wt = Tensor::from_vec(w, [1, c])?.to_dtype(logp.dtype())?.to_device(logp.device())?;
    let k = t2.mul_scalar(1.0 - eps)?.add_scalar(eps / c as f64)?.mul(&Var::from(wt))?;
    let per = logp.mul(&k)?.sum(&[1], false)?.neg()?;
    let m = per.dims()[0];
    match o.reduction {
        Reduction::None => {
            let shape: Vec<isize> = match input.rank() {
                1 => vec![],
                _ => input.dims().iter().enumerate().filter(|&(i, _)| i != 1).map(|(_, &d)| d as isize).collect(),
            };
            per.reshape(&shape)
        }
        Reduction::Sum => per.sum(&[], false),
        Reduction::Mean => per.sum(&[], false)?.div_scalar(m as f64),
        Reduction::BatchMean => Err(Error::arg(op, "reduction BatchMean is only supported by kl_div")),
    }
}

/// Negative log-likelihood of log-probabilities `[N, C]` (or `[C]`, `[N, C, d...]`)
/// for class-index targets; `weight`, `ignore_index` and the weighted mean as in
/// [`cross_entropy`] (PyTorch's `F.nll_loss`).
pub fn nll_loss(input: &Var, target: impl Target, o: &NllLossOptions) -> Result<Var> {
    let op = "nll_loss";
    let (x2, c) = classes_last(op, input)?;
    index_loss(op, input, &x2, c, target.tensor(), o.weight.as_ref(), o.ignore_index, 0.0, o.reduction)
}

fn check_weight(op: &'static str, what: &str, input: &Var, w: Option<&Tensor>) -> Result<Option<Var>> {
    match w {
        None => Ok(None),
        Some(w) => {
            // The weight must broadcast to the input.
            if w.rank() > input.rank()
                || w.dims().iter().rev().zip(input.dims().iter().rev()).any(|(&a, &b)| a != 1 && a != b)
            {
                return Err(Error::shape(op, input.dims(), w.dims(), format!("{what} must broadcast to the input")));
            }
            Ok(Some(Var::from(w.to_dtype(input.dtype())?.to_device(input.device())?)))
        }
    }
}

/// Options of [`binary_cross_entropy`] (PyTorch's `F.binary_cross_entropy`
/// defaults via `Default`).
#[derive(Clone, Debug, Default)]
pub struct BceOptions {
    /// A rescaling weight of each element's loss, broadcast to the input (`None`).
    pub weight: Option<Tensor>,
    /// The reduction (`Mean`).
    pub reduction: Reduction,
}

/// Options of [`binary_cross_entropy_with_logits`] (PyTorch's
/// `F.binary_cross_entropy_with_logits` defaults via `Default`). The two weights
/// are named fields, so one cannot be passed for the other.
#[derive(Clone, Debug, Default)]
pub struct BceWithLogitsOptions {
    /// A rescaling weight of each element's loss, broadcast to the input (`None`).
    pub weight: Option<Tensor>,
    /// A weight of the positive term, one per class, broadcast along the last dim
    /// (`None`): `pos_weight > 1` raises recall, `< 1` precision.
    pub pos_weight: Option<Tensor>,
    /// The reduction (`Mean`).
    pub reduction: Reduction,
}

/// Options of [`kl_div`] (PyTorch's `F.kl_div` defaults via `Default`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KlDivOptions {
    /// The reduction (`Mean`, as PyTorch; [`Reduction::BatchMean`] is the true KL
    /// mean).
    pub reduction: Reduction,
    /// Whether the target is given as log-probabilities (`false`).
    pub log_target: bool,
}

/// Binary cross-entropy of probabilities `x` in `[0, 1]`:
/// `-w (y log x + (1 - y) log(1 - x))`, each log clamped at -100 like PyTorch's
/// `F.binary_cross_entropy`.
pub fn binary_cross_entropy(input: &Var, target: impl Target, o: &BceOptions) -> Result<Var> {
    let op = "binary_cross_entropy";
    let target = same_shape(op, input, target)?;
    if input.numel() > 0 {
        let lo = input.tensor().min_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        let hi = input.tensor().max_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        if !(lo >= 0.0 && hi <= 1.0) {
            return Err(Error::arg(op, "all elements of input should be between 0 and 1"));
        }
    }
    let w = check_weight(op, "weight", input, o.weight.as_ref())?;
    let lx = input.log()?.clamp(Some(-100.0), None)?;
    let l1x = input.rsub_scalar(1.0)?.log()?.clamp(Some(-100.0), None)?;
    let mut loss = target.mul(&lx)?.add(&target.rsub_scalar(1.0)?.mul(&l1x)?)?.neg()?;
    if let Some(w) = w {
        loss = loss.mul(&w)?;
    }
    reduce(op, loss, o.reduction)
}

/// Binary cross-entropy on logits (numerically stable sigmoid + BCE, PyTorch's
/// `F.binary_cross_entropy_with_logits`):
/// `(1 - y) x + (1 + (pos_weight - 1) y) softplus(-x)`, times `weight`.
///
/// ```
/// use autograd::Var;
/// use nn::loss::{binary_cross_entropy_with_logits, BceWithLogitsOptions};
/// use tensor_core::Tensor;
/// let x = Var::param(Tensor::new(&[0.0f64]))?;
/// let y = Tensor::new(&[1.0f64]);
/// let o = BceWithLogitsOptions { pos_weight: Some(Tensor::new(&[3.0f64])), ..Default::default() };
/// let loss = binary_cross_entropy_with_logits(&x, &y, &o)?;
/// assert!((loss.tensor().to_scalar::<f64>()? - 3.0 * 2f64.ln()).abs() < 1e-12);
/// # Ok::<(), tensor_core::Error>(())
/// ```
pub fn binary_cross_entropy_with_logits(input: &Var, target: impl Target, o: &BceWithLogitsOptions) -> Result<Var> {
    let op = "binary_cross_entropy_with_logits";
    let target = same_shape(op, input, target)?;
    let w = check_weight(op, "weight", input, o.weight.as_ref())?;
    let pw = check_weight(op, "pos_weight", input, o.pos_weight.as_ref())?;
    // softplus(-x) = m + log(e^-m + e^(-x-m)) with m = max(-x, 0): no overflow.
    let negx = input.neg()?;
    let m = negx.clamp(Some(0.0), None)?;
    let sp = m.neg()?.exp()?.add(&negx.sub(&m)?.exp()?)?.log()?.add(&m)?;
    let sp = match pw {
        Some(pw) => pw.sub_scalar(1.0)?.mul(&target)?.add_scalar(1.0)?.mul(&sp)?,
        None => sp,
    };
    let mut loss = target.rsub_scalar(1.0)?.mul(input)?.add(&sp)?;
    if let Some(w) = w {
        loss = loss.mul(&w)?;
    }
    reduce(op, loss, o.reduction)
}

/// Kullback-Leibler divergence `KL(target || input)` with `input` as
/// log-probabilities (PyTorch's `F.kl_div`): `y (log y - x)` pointwise (0 where
/// `y = 0`), or with `log_target`, `e^y (y - x)`. [`Reduction::BatchMean`] divides
/// the sum by the batch size (dim 0), which is the true KL mean; `Mean` averages
/// over every element.
pub fn kl_div(input: &Var, target: impl Target, o: &KlDivOptions) -> Result<Var> {
    let op = "kl_div";
    let target = same_shape(op, input, target)?;
    let loss = if o.log_target {
        target.exp()?.mul(&target.sub(input)?)?
    } else {
        let t = target.tensor();
        let pos = t.gt_scalar(0.0)?;
        let safe = Tensor::where_cond(&pos, t, &scalar_like(1.0, &target)?)?;
        let ylogy = Tensor::where_cond(&pos, &t.mul(&safe.log()?)?, &scalar_like(0.0, &target)?)?;
        Var::from(ylogy).sub(&target.mul(input)?)?
    };
    match o.reduction {
        Reduction::BatchMean => {
            let n = if input.rank() == 0 { 1 } else { input.dims()[0] };
            loss.sum(&[], false)?.div_scalar(n as f64)
        }
        r => reduce(op, loss, r),
    }
}
