//! Schedules that scale the learning rate by simple factors: step, multi-step,
//! constant, linear, exponential, polynomial, lambda and multiplicative.

use tensor_core::{Error, Result};

use super::{check_finite, impl_scheduler, Base, Formula};
use crate::Optimizer;

fn cur(opt: &dyn Optimizer) -> Vec<f64> {
    opt.lrs()
}

/// Options of [`StepLR`] (PyTorch's defaults via `Default`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepLROptions {
    /// The factor applied every `step_size` epochs (0.1).
    pub gamma: f64,
}

impl Default for StepLROptions {
    fn default() -> Self {
        StepLROptions { gamma: 0.1 }
    }
}

/// Multiplies the rate by `gamma` every `step_size` epochs (PyTorch's `StepLR`).
#[derive(Clone, Debug)]
pub struct StepLR {
    base: Base,
    step_size: usize,
    gamma: f64,
}

impl StepLR {
    /// A step schedule on `opt` (performs the epoch-0 step).
    pub fn new(opt: &mut dyn Optimizer, step_size: usize, o: StepLROptions) -> Result<Self> {
        let gamma = o.gamma;
        if step_size == 0 {
            return Err(Error::arg("StepLR", "step_size must be positive"));
        }
        check_finite("StepLR", "gamma", gamma)?;
        let mut s = StepLR { base: Base::new(opt)?, step_size, gamma };
        super::LrScheduler::initial_step(&mut s, opt)?;
        Ok(s)
    }
}

impl Formula for StepLR {
    const KIND: &'static str = "StepLR";
    fn base(&self) -> &Base {
        &self.base
    }
    fn base_mut(&mut self) -> &mut Base {
        &mut self.base
    }
    fn get_lr(&mut self, opt: &mut dyn Optimizer) -> Result<Vec<f64>> {
        // In i128: every epoch and every step size fit, so no cast wraps.
        let e = self.base.last_epoch as i128;
        let lrs = cur(opt);
        if e == 0 || e.rem_euclid(self.step_size as i128) != 0 {
            return Ok(lrs);
        }
        Ok(lrs.iter().map(|l| l * self.gamma).collect())
    }
    fn closed_form(&self) -> Option<Vec<f64>> {
        let k = (self.base.last_epoch as i128).div_euclid(self.step_size as i128) as f64;
        Some(self.base.base_lrs.iter().map(|b| b * self.gamma.powf(k)).collect())
    }
}
impl_scheduler!(StepLR);

/// Options of [`MultiStepLR`] (PyTorch's defaults via `Default`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MultiStepLROptions {
    /// The factor applied at each milestone (0.1).
    pub gamma: f64,
}

impl Default for MultiStepLROptions {
    fn default() -> Self {
        MultiStepLROptions { gamma: 0.1 }
    }
}

/// Multiplies the rate by `gamma` at each milestone epoch (PyTorch's `MultiStepLR`;
/// a milestone listed twice multiplies twice).
#[derive(Clone, Debug)]
pub struct MultiStepLR {
    base: Base,
    /// In i128, so that every `usize` milestone compares exactly with an `i64` epoch.
    milestones: Vec<i128>,
    gamma: f64,
}

impl MultiStepLR {
    /// A multi-step schedule on `opt` (performs the epoch-0 step).
    pub fn new(opt: &mut dyn Optimizer, milestones: &[usize], o: MultiStepLROptions) -> Result<Self> {
        let gamma = o.gamma;
        check_finite("MultiStepLR", "gamma", gamma)?;
        let mut m: Vec<i128> = milestones.iter().map(|&x| x as i128).collect();
        m.sort_unstable();
        let mut s = MultiStepLR { base: Base::new(opt)?, milestones: m, gamma };
        super::LrScheduler::initial_step(&mut s, opt)?;
        Ok(s)
    }
}

impl Formula for MultiStepLR {
    const KIND: &'static str = "MultiStepLR";
    fn base(&self) -> &Base {
        &self.base
    }
    fn base_mut(&mut self) -> &mut Base {
        &mut self.base
    }
    fn get_lr(&mut self, opt: &mut dyn Optimizer) -> Result<Vec<f64>> {
        let e = self.base.last_epoch as i128;
        let n = self.milestones.iter().filter(|&&m| m == e).count();
        let lrs = cur(opt);
        if n == 0 {
            return Ok(lrs);
        }
        Ok(lrs.iter().map(|l| l * self.gamma.powf(n as f64)).collect())
    }
    fn closed_form(&self) -> Option<Vec<f64>> {
        let k = self.milestones.partition_point(|&m| m <= self.base.last_epoch as i128) as f64;
        Some(self.base.base_lrs.iter().map(|b| b * self.gamma.powf(k)).collect())
    }
}
impl_scheduler!(MultiStepLR);

/// Options of [`ConstantLR`] (PyTorch's defaults via `Default`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConstantLROptions {
    /// The factor applied until `total_iters`, in `(0, 1]` (1/3).
    pub factor: f64,
    /// The epoch at which the factor is lifted (5).
    pub total_iters: usize,
}

impl Default for ConstantLROptions {
    fn default() -> Self {
        ConstantLROptions { factor: 1.0 / 3.0, total_iters: 5 }
    }
}

/// Multiplies the rate by `factor` until epoch `total_iters` (PyTorch's `ConstantLR`).
#[derive(Clone, Debug)]
pub struct ConstantLR {
    base: Base,
    factor: f64,
    /// In i128, so that every `usize` count compares exactly with an `i64` epoch.
    total_iters: i128,
}

impl ConstantLR {
    /// A constant-factor warm-up on `opt`; `factor` in `(0, 1]`. A factor of 0 is
    /// refused: the rate could never be scaled back up at `total_iters` (PyTorch
    /// divides by zero there).
    pub fn new(opt: &mut dyn Optimizer, o: ConstantLROptions) -> Result<Self> {
        let ConstantLROptions { factor, total_iters } = o;
        if !(factor > 0.0 && factor <= 1.0) {
            return Err(Error::arg("ConstantLR", format!("constant multiplicative factor {factor} not in (0, 1]")));
        }
        let mut s = ConstantLR { base: Base::new(opt)?, factor, total_iters: total_iters as i128 };
        super::LrScheduler::initial_step(&mut s, opt)?;
        Ok(s)
    }
}

impl Formula for ConstantLR {
    const KIND: &'static str = "ConstantLR";
    fn base(&self) -> &Base {
        &self.base
    }
    fn base_mut(&mut self) -> &mut Base {
        &mut self.base
    }
    fn get_lr(&mut self, opt: &mut dyn Optimizer) -> Result<Vec<f64>> {
        let e = self.base.last_epoch as i128;
        let lrs = cur(opt);
        Ok(if e == 0 {
            lrs.iter().map(|l| l * self.factor).collect()
        } else if e != self.total_iters {
            lrs
        } else {
            lrs.iter().map(|l| l * (1.0 / self.factor)).collect()
        })
    }
    fn closed_form(&self) -> Option<Vec<f64>> {
        let done = if self.base.last_epoch as i128 >= self.total_iters { 1.0 } else { 0.0 };
        Some(self.base.base_lrs.iter().map(|b| b * (self.factor + done * (1.0 - self.factor))).collect())
    }
}
impl_scheduler!(ConstantLR);

/// Options of [`LinearLR`] (PyTorch's defaults via `Default`: a warm-up from a third
/// of the rate to the full rate over 5 epochs). A decay names its factors:
/// `LinearLROptions { start_factor: 1.0, end_factor: 0.1, total_iters: 10 }`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinearLROptions {
    /// The factor at epoch 0, in `(0, 1]` (1/3).
    pub start_factor: f64,
    /// The factor from `total_iters` on, in `[0, 1]` (1.0).
    pub end_factor: f64,
    /// Epochs over which the factor moves (5).
    pub total_iters: usize,
}

impl Default for LinearLROptions {
    fn default() -> Self {
        LinearLROptions { start_factor: 1.0 / 3.0, end_factor: 1.0, total_iters: 5 }
    }
}

/// Scales the rate linearly from `start_factor` to `end_factor` over `total_iters`
/// epochs (PyTorch's `LinearLR`).
///
/// ```
/// use autograd::Var;
/// use optim::{LinearLR, LinearLROptions, LrScheduler, Optimizer, Sgd, SgdOptions};
/// use tensor_core::Tensor;
///
/// let w = Var::param(Tensor::new(&[1.0f64]))?;
/// let mut opt = Sgd::new(vec![w], SgdOptions { lr: 0.3, ..Default::default() })?;
/// // PyTorch's default: warm up from lr / 3 to lr over 5 epochs.
/// let mut sched = LinearLR::new(&mut opt, LinearLROptions::default())?;
/// assert!((opt.lr() - 0.1).abs() < 1e-12);
/// for _ in 0..5 {
///     sched.step(&mut opt)?;
/// }
/// assert!((opt.lr() - 0.3).abs() < 1e-12);
/// # Ok::<(), tensor_core::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct LinearLR {
    base: Base,
    start_factor: f64,
    end_factor: f64,
    /// In i128, so that every `usize` count compares exactly with an `i64` epoch.
    total_iters: i128,
}

impl LinearLR {
    /// A linear warm-up (or decay) on `opt`; `start_factor` in `(0, 1]`, `end_factor`
    /// in `[0, 1]`, `total_iters` positive.
    pub fn new(opt: &mut dyn Optimizer, o: LinearLROptions) -> Result<Self> {
        let LinearLROptions { start_factor, end_factor, total_iters } = o;
        if !(start_factor > 0.0 && start_factor <= 1.0) {
            return Err(Error::arg("LinearLR", format!("starting multiplicative factor {start_factor} not in (0, 1]")));
        }
        if !(0.0..=1.0).contains(&end_factor) {
            return Err(Error::arg("LinearLR", format!("ending multiplicative factor {end_factor} not in [0, 1]")));
        }
        if total_iters == 0 {
            return Err(Error::arg("LinearLR", "total_iters must be positive"));
        }
        let mut s = LinearLR { base: Base::new(opt)?, start_factor, end_factor, total_iters: total_iters as i128 };
        super::LrScheduler::initial_step(&mut s, opt)?;
        Ok(s)
    }
}

impl Formula for LinearLR {
    const KIND: &'static str = "LinearLR";
    fn base(&self) -> &Base {
        &self.base
    }
    fn base_mut(&mut self) -> &mut Base {
        &mut self.base
    }
    fn get_lr(&mut self, opt: &mut dyn Optimizer) -> Result<Vec<f64>> {
        let e = self.base.last_epoch;
        let lrs = cur(opt);
        if e == 0 {
            return Ok(lrs.iter().map(|l| l * self.start_factor).collect());
        }
        if e as i128 > self.total_iters {
            return Ok(lrs);
        }
        let (s, f, t) = (self.start_factor, self.end_factor, self.total_iters as f64);
        let m = 1.0 + (f - s) / (t * s + (e as f64 - 1.0) * (f - s));
        Ok(lrs.iter().map(|l| l * m).collect())
    }
    fn closed_form(&self) -> Option<Vec<f64>> {
        let (s, f, t) = (self.start_factor, self.end_factor, self.total_iters);
        let e = (self.base.last_epoch as i128).min(t) as f64;
        Some(self.base.base_lrs.iter().map(|b| b * (s + (f - s) * e / t as f64)).collect())
    }
}
impl_scheduler!(LinearLR);

/// Multiplies the rate by `gamma` every epoch (PyTorch's `ExponentialLR`).
#[derive(Clone, Debug)]
pub struct ExponentialLR {
    base: Base,
    gamma: f64,
}

impl ExponentialLR {
    /// An exponential decay on `opt` by `gamma` per epoch (required in PyTorch too,
    /// which has no other option, so there is no options struct).
    pub fn new(opt: &mut dyn Optimizer, gamma: f64) -> Result<Self> {
        check_finite("ExponentialLR", "gamma", gamma)?;
        let mut s = ExponentialLR { base: Base::new(opt)?, gamma };
        super::LrScheduler::initial_step(&mut s, opt)?;
        Ok(s)
    }
}

impl Formula for ExponentialLR {
    const KIND: &'static str = "ExponentialLR";
    fn base(&self) -> &Base {
        &self.base
    }
    fn base_mut(&mut self) -> &mut Base {
        &mut self.base
    }
    fn get_lr(&mut self, opt: &mut dyn Optimizer) -> Result<Vec<f64>> {
        let lrs = cur(opt);
        if self.base.last_epoch == 0 {
            return Ok(lrs);
        }
        Ok(lrs.iter().map(|l| l * self.gamma).collect())
    }
    fn closed_form(&self) -> Option<Vec<f64>> {
        let e = self.base.last_epoch as f64;
        Some(self.base.base_lrs.iter().map(|b| b * self.gamma.powf(e)).collect())
    }
}
impl_scheduler!(ExponentialLR);

/// Options of [`PolynomialLR`] (PyTorch's defaults via `Default`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PolynomialLROptions {
    /// Epochs until the rate reaches 0 (5).
    pub total_iters: usize,
    /// The polynomial's power (1.0, a linear decay).
    pub power: f64,
}

impl Default for PolynomialLROptions {
    fn default() -> Self {
        PolynomialLROptions { total_iters: 5, power: 1.0 }
    }
}

/// Decays the rate as `(1 - t / total_iters)^power` (PyTorch's `PolynomialLR`).
#[derive(Clone, Debug)]
pub struct PolynomialLR {
    base: Base,
    /// In i128, so that every `usize` count compares exactly with an `i64` epoch.
    total_iters: i128,
    power: f64,
}

impl PolynomialLR {
    /// A polynomial decay on `opt`.
    pub fn new(opt: &mut dyn Optimizer, o: PolynomialLROptions) -> Result<Self> {
        let PolynomialLROptions { total_iters, power } = o;
        if total_iters == 0 {
            return Err(Error::arg("PolynomialLR", "total_iters must be positive"));
        }
        if !(power >= 0.0 && power.is_finite()) {
            // A negative power divides by zero when the rate reaches 0 at total_iters.
            return Err(Error::arg("PolynomialLR", format!("power must be finite and >= 0, got {power}")));
        }
        let mut s = PolynomialLR { base: Base::new(opt)?, total_iters: total_iters as i128, power };
        super::LrScheduler::initial_step(&mut s, opt)?;
        Ok(s)
    }
}

impl Formula for PolynomialLR {
    const KIND: &'static str = "PolynomialLR";
    fn base(&self) -> &Base {
        &self.base
    }
    fn base_mut(&mut self) -> &mut Base {
        &mut self.base
    }
    fn get_lr(&mut self, opt: &mut dyn Optimizer) -> Result<Vec<f64>> {
        let e = self.base.last_epoch;
        let lrs = cur(opt);
        if e == 0 || e as i128 > self.total_iters {
            return Ok(lrs);
        }
        let t = self.total_iters as f64;
        let f = ((1.0 - e as f64 / t) / (1.0 - (e as f64 - 1.0) / t)).powf(self.power);
        Ok(lrs.iter().map(|l| l * f).collect())
    }
    fn closed_form(&self) -> Option<Vec<f64>> {
        let t = self.total_iters as f64;
        let e = (self.base.last_epoch as i128).min(self.total_iters) as f64;
        Some(self.base.base_lrs.iter().map(|b| b * (1.0 - e / t).powf(self.power)).collect())
    }
}
impl_scheduler!(PolynomialLR);

/// A user function of the epoch.
pub type LrLambda = Box<dyn Fn(i64) -> f64 + Send + Sync>;

/// The same function for each of `n` groups.
fn shared_lambda(n: usize, f: impl Fn(i64) -> f64 + Send + Sync + 'static) -> Vec<LrLambda> {
    let f = std::sync::Arc::new(f);
    (0..n)
        .map(|_| {
            let f = f.clone();
            Box::new(move |e| f(e)) as LrLambda
        })
        .collect()
}

/// One function per parameter group, or an error naming the scheduler.
fn check_lambdas(kind: &'static str, opt: &dyn Optimizer, lambdas: &[LrLambda]) -> Result<()> {
    if lambdas.len() != opt.num_param_groups() {
        return Err(Error::arg(kind, format!("expected {} lr_lambdas, got {}", opt.num_param_groups(), lambdas.len())));
    }
    Ok(())
}

/// Sets the rate to `base_lr * f(epoch)` (PyTorch's `LambdaLR`).
pub struct LambdaLR {
    base: Base,
    lambdas: Vec<LrLambda>,
}

impl std::fmt::Debug for LambdaLR {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LambdaLR").field("last_epoch", &self.base.last_epoch).finish()
    }
}

impl LambdaLR {
    /// One function for every group.
    pub fn new(opt: &mut dyn Optimizer, f: impl Fn(i64) -> f64 + Send + Sync + 'static) -> Result<Self> {
        let lambdas = shared_lambda(opt.num_param_groups(), f);
        Self::per_group(opt, lambdas)
    }

    /// One function per group.
    pub fn per_group(opt: &mut dyn Optimizer, lambdas: Vec<LrLambda>) -> Result<Self> {
        check_lambdas("LambdaLR", opt, &lambdas)?;
        let mut s = LambdaLR { base: Base::new(opt)?, lambdas };
        super::LrScheduler::initial_step(&mut s, opt)?;
        Ok(s)
    }
}

impl Formula for LambdaLR {
    const KIND: &'static str = "LambdaLR";
    fn base(&self) -> &Base {
        &self.base
    }
    fn base_mut(&mut self) -> &mut Base {
        &mut self.base
    }
    fn get_lr(&mut self, _opt: &mut dyn Optimizer) -> Result<Vec<f64>> {
        let e = self.base.last_epoch;
        Ok(self.base.base_lrs.iter().zip(&self.lambdas).map(|(b, f)| b * f(e)).collect())
    }
}
impl_scheduler!(LambdaLR);

/// Multiplies the rate by `f(epoch)` every epoch after the first (PyTorch's
/// `MultiplicativeLR`).
pub struct MultiplicativeLR {
    base: Base,
    lambdas: Vec<LrLambda>,
}

impl std::fmt::Debug for MultiplicativeLR {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MultiplicativeLR").field("last_epoch", &self.base.last_epoch).finish()
    }
}

impl MultiplicativeLR {
    /// One function for every group.
    pub fn new(opt: &mut dyn Optimizer, f: impl Fn(i64) -> f64 + Send + Sync + 'static) -> Result<Self> {
        let lambdas = shared_lambda(opt.num_param_groups(), f);
        Self::per_group(opt, lambdas)
    }

    /// One function per group.
    pub fn per_group(opt: &mut dyn Optimizer, lambdas: Vec<LrLambda>) -> Result<Self> {
        check_lambdas("MultiplicativeLR", opt, &lambdas)?;
        let mut s = MultiplicativeLR { base: Base::new(opt)?, lambdas };
        super::LrScheduler::initial_step(&mut s, opt)?;
        Ok(s)
    }
}

impl Formula for MultiplicativeLR {
    const KIND: &'static str = "MultiplicativeLR";
    fn base(&self) -> &Base {
        &self.base
    }
    fn base_mut(&mut self) -> &mut Base {
        &mut self.base
    }
    fn get_lr(&mut self, opt: &mut dyn Optimizer) -> Result<Vec<f64>> {
        let e = self.base.last_epoch;
        let lrs = cur(opt);
        if e <= 0 {
            return Ok(lrs);
        }
        Ok(lrs.iter().zip(&self.lambdas).map(|(l, f)| l * f(e)).collect())
    }
}
impl_scheduler!(MultiplicativeLR);
