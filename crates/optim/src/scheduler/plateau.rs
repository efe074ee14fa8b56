//! Reducing the learning rate when a metric stops improving.

use tensor_core::{Error, Result};

use super::{next_epoch, per_group, LrScheduler, SchedulerState};
use crate::Optimizer;

/// Whether a lower or a higher metric is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlateauMode {
    /// Lower is better (a loss).
    Min,
    /// Higher is better (an accuracy).
    Max,
}

/// How `threshold` is compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThresholdMode {
    /// Relative: better than `best * (1 ∓ threshold)`.
    Rel,
    /// Absolute: better than `best ∓ threshold`.
    Abs,
}

/// Options of [`ReduceLROnPlateau`]; `Default` gives PyTorch's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct ReduceLROnPlateauOptions {
    /// Lower or higher is better.
    pub mode: PlateauMode,
    /// Factor by which the rate is reduced (below 1).
    pub factor: f64,
    /// Epochs without improvement tolerated before reducing.
    pub patience: usize,
    /// Minimum change that counts as an improvement.
    pub threshold: f64,
    /// Relative or absolute threshold.
    pub threshold_mode: ThresholdMode,
    /// Epochs to wait after a reduction before counting bad epochs again.
    pub cooldown: usize,
    /// Lower bound on the rate (one value, or one per group).
    pub min_lr: Vec<f64>,
    /// Reductions smaller than this are skipped.
    pub eps: f64,
}

impl Default for ReduceLROnPlateauOptions {
    fn default() -> Self {
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
    }
}

/// Reduces the learning rate by `factor` when the metric has not improved for
/// `patience` epochs (PyTorch's `ReduceLROnPlateau`).
///
/// It is an [`LrScheduler`] driven by [`LrScheduler::step_with_metric`] (PyTorch's
/// `scheduler.step(metric)`); its plain [`LrScheduler::step`] is an error, since
/// there is nothing to decide without the metric. As in PyTorch, [`SequentialLR`]
/// and [`ChainedScheduler`] refuse it.
///
/// [`SequentialLR`]: crate::SequentialLR
/// [`ChainedScheduler`]: crate::ChainedScheduler
///
/// ```
/// use autograd::Var;
/// use optim::{LrScheduler, Optimizer, ReduceLROnPlateau, ReduceLROnPlateauOptions, Sgd, SgdOptions};
/// use tensor_core::Tensor;
///
/// let w = Var::param(Tensor::new(&[1.0f64]))?;
/// let mut opt = Sgd::new(vec![w], SgdOptions { lr: 1.0, ..Default::default() })?;
/// let o = ReduceLROnPlateauOptions { factor: 0.5, patience: 1, ..Default::default() };
/// let mut sched = ReduceLROnPlateau::new(&mut opt, o)?;
/// for loss in [1.0, 0.9, 0.95, 0.95, 0.95] {
///     sched.step_with_metric(&mut opt, loss)?;
/// }
/// assert!(sched.step(&mut opt).is_err()); // no metric, no decision
/// assert_eq!(opt.lr(), 0.5); // two epochs without improvement after 0.9 halve it once
/// # Ok::<(), tensor_core::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct ReduceLROnPlateau {
    o: ReduceLROnPlateauOptions,
    min_lrs: Vec<f64>,
    best: f64,
    num_bad_epochs: usize,
    cooldown_counter: usize,
    last_epoch: i64,
    last_lr: Vec<f64>,
}

impl ReduceLROnPlateau {
    /// A plateau scheduler for `opt` (unlike the epoch schedulers, creating it
    /// changes no rate, as in PyTorch).
    pub fn new(opt: &mut dyn Optimizer, o: ReduceLROnPlateauOptions) -> Result<Self> {
        const OP: &str = "ReduceLROnPlateau";
        if !(o.factor < 1.0) || o.factor.is_nan() {
            return Err(Error::arg(OP, format!("factor should be < 1.0, got {}", o.factor)));
        }
        if o.factor < 0.0 {
            return Err(Error::arg(OP, format!("factor should be >= 0, got {}", o.factor)));
        }
        if o.threshold.is_nan() {
            return Err(Error::arg(OP, "threshold is NaN"));
        }
        if !(o.eps >= 0.0) {
            return Err(Error::arg(OP, format!("eps should be >= 0, got {}", o.eps)));
        }
        let min_lrs = per_group(OP, "min_lr", &o.min_lr, opt.num_param_groups())?;
        if let Some(m) = min_lrs.iter().find(|m| !(**m >= 0.0)) {
            return Err(Error::arg(OP, format!("min_lr should be >= 0, got {m}")));
        }
        let best = match o.mode {
            PlateauMode::Min => f64::INFINITY,
            PlateauMode::Max => f64::NEG_INFINITY,
        };
        Ok(ReduceLROnPlateau {
            o,
            min_lrs,
            best,
            num_bad_epochs: 0,
            cooldown_counter: 0,
            last_epoch: 0,
            last_lr: opt.lrs(),
        })
    }

    fn is_better(&self, a: f64) -> bool {
        let (t, best) = (self.o.threshold, self.best);
        match (self.o.mode, self.o.threshold_mode) {
            (PlateauMode::Min, ThresholdMode::Rel) => a < best * (1.0 - t),
            (PlateauMode::Min, ThresholdMode::Abs) => a < best - t,
            (PlateauMode::Max, ThresholdMode::Rel) => a > best * (t + 1.0),
            (PlateauMode::Max, ThresholdMode::Abs) => a > best + t,
        }
    }

    /// The best metric so far.
    pub fn best(&self) -> f64 {
        self.best
    }

    /// Records this epoch's `metric` and reduces the rates if it has plateaued.
    fn record(&mut self, opt: &mut dyn Optimizer, metric: f64) -> Result<()> {
        if opt.num_param_groups() != self.min_lrs.len() {
            return Err(Error::arg(
                "ReduceLROnPlateau",
                format!(
                    "the optimizer has {} param groups, the scheduler was made for {}",
                    opt.num_param_groups(),
                    self.min_lrs.len()
                ),
            ));
        }
        self.last_epoch = next_epoch("ReduceLROnPlateau", self.last_epoch)?;
        if self.is_better(metric) {
            self.best = metric;
            self.num_bad_epochs = 0;
        } else {
            self.num_bad_epochs = self.num_bad_epochs.saturating_add(1);
        }
        if self.cooldown_counter > 0 {
            self.cooldown_counter -= 1;
            self.num_bad_epochs = 0;
        }
        if self.num_bad_epochs > self.o.patience {
            let lrs: Vec<f64> = opt
                .lrs()
                .iter()
                .zip(&self.min_lrs)
                .map(|(&old, &min)| {
                    let new = (old * self.o.factor).max(min);
                    if old - new > self.o.eps {
                        new
                    } else {
                        old
                    }
                })
                .collect();
            opt.set_lrs(&lrs)?;
            self.cooldown_counter = self.o.cooldown;
            self.num_bad_epochs = 0;
        }
        self.last_lr = opt.lrs();
        Ok(())
    }
}

/// The error of a plateau step without a metric.
fn needs_metric(what: &str) -> Error {
    Error::arg(
        "ReduceLROnPlateau",
        format!("{what} needs the metric: call step_with_metric(opt, metric) (PyTorch's scheduler.step(metric))"),
    )
}

impl LrScheduler for ReduceLROnPlateau {
    /// An error: the plateau decision needs the metric
    /// ([`LrScheduler::step_with_metric`]).
    fn step(&mut self, _opt: &mut dyn Optimizer) -> Result<()> {
        Err(needs_metric("step"))
    }

    /// Records this epoch's `metric` and reduces the rates if it has plateaued.
    fn step_with_metric(&mut self, opt: &mut dyn Optimizer, metric: f64) -> Result<()> {
        self.record(opt, metric)
    }

    /// An error: jumping to an epoch needs the metric too.
    fn step_to(&mut self, _opt: &mut dyn Optimizer, _epoch: i64) -> Result<()> {
        Err(needs_metric("step_to"))
    }

    fn requires_metric(&self) -> bool {
        true
    }

    /// The learning rates after the last step.
    fn last_lr(&self) -> Vec<f64> {
        self.last_lr.clone()
    }

    /// Number of epochs counted.
    fn last_epoch(&self) -> i64 {
        self.last_epoch
    }

    /// The counters, for checkpointing.
    fn state_dict(&self) -> SchedulerState {
        let mut s = SchedulerState { scheduler: "ReduceLROnPlateau".into(), ..Default::default() };
        s.values.insert("best".into(), vec![self.best]);
        s.values.insert("num_bad_epochs".into(), vec![self.num_bad_epochs as f64]);
        s.values.insert("cooldown_counter".into(), vec![self.cooldown_counter as f64]);
        s.values.insert("last_epoch".into(), vec![self.last_epoch as f64]);
        s.values.insert("last_lr".into(), self.last_lr.clone());
        s
    }

    /// Restores counters saved by [`LrScheduler::state_dict`].
    fn load_state_dict(&mut self, s: &SchedulerState) -> Result<()> {
        s.check_kind("ReduceLROnPlateau")?;
        let best = s.get1("best")?;
        if best.is_nan() {
            return Err(Error::arg("load_state_dict", "ReduceLROnPlateau state entry \"best\" is NaN"));
        }
        let bad = s.get_int("num_bad_epochs", 0)?;
        let cool = s.get_int("cooldown_counter", 0)?;
        let epoch = s.get_int("last_epoch", -(1i64 << 53))?;
        let last_lr = s.get_rates("last_lr", self.min_lrs.len())?;
        self.best = best;
        self.num_bad_epochs = usize::try_from(bad).unwrap_or(usize::MAX);
        self.cooldown_counter = usize::try_from(cool).unwrap_or(usize::MAX);
        self.last_epoch = epoch;
        self.last_lr = last_lr;
        Ok(())
    }

    fn rewind(&mut self) {
        self.last_epoch = self.last_epoch.saturating_sub(1);
    }

    /// An error, like [`LrScheduler::step`]: creating the scheduler already set
    /// everything up, and a step needs the metric.
    fn initial_step(&mut self, _opt: &mut dyn Optimizer) -> Result<()> {
        Err(needs_metric("initial_step"))
    }
}
