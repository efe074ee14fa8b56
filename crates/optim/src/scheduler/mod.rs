//! Learning-rate schedulers. A scheduler is separate from the optimizer: it computes
//! the next learning rate of every group from its own counters (and, for PyTorch's
//! recursive forms, the rates currently set) and applies them with
//! [`Optimizer::set_lrs`] (and [`Optimizer::set_momentums`] for the ones that cycle
//! momentum). Values match PyTorch's `torch.optim.lr_scheduler` step for step.
//!
//! Constructors are uniform: `X::new(&mut opt, required..., XOptions)`, where the
//! options struct holds every optional PyTorch argument and its `Default` is
//! PyTorch's defaults (`LinearLR::new(&mut opt, LinearLROptions::default())` is
//! PyTorch's `LinearLR(opt)`, a warm-up from a third of the rate).
//!
//! As in PyTorch, creating a scheduler performs its first step (epoch 0), which may
//! change the learning rate; call [`LrScheduler::step`] once per epoch (or batch)
//! after `optimizer.step()`, or [`LrScheduler::step_with_metric`] with the
//! validation metric, which every scheduler accepts and [`ReduceLROnPlateau`]
//! needs.
//!
//! ```
//! use autograd::Var;
//! use optim::{LrScheduler, Optimizer, Sgd, SgdOptions, StepLR, StepLROptions};
//! use tensor_core::Tensor;
//!
//! let w = Var::param(Tensor::new(&[1.0f32]))?;
//! let mut opt = Sgd::new(vec![w], SgdOptions { lr: 0.1, ..Default::default() })?;
//! let mut sched = StepLR::new(&mut opt, 2, StepLROptions { gamma: 0.5 })?;
//! let mut lrs = vec![];
//! for _epoch in 0..5 {
//!     lrs.push(opt.lr());
//!     // ... train: opt.zero_grad(); loss.backward()?; opt.step()?; ...
//!     sched.step(&mut opt)?;
//! }
//! assert_eq!(lrs, vec![0.1, 0.1, 0.05, 0.05, 0.025]);
//! # Ok::<(), tensor_core::Error>(())
//! ```

mod basic;
mod compose;
mod cosine;
mod cyclic;
mod plateau;

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};
use tensor_core::{Error, Result};

pub use basic::{
    ConstantLR, ConstantLROptions, ExponentialLR, LambdaLR, LinearLR, LinearLROptions, MultiStepLR, MultiStepLROptions,
    MultiplicativeLR, PolynomialLR, PolynomialLROptions, StepLR, StepLROptions,
};
pub use compose::{ChainedScheduler, SequentialLR};
pub use cosine::{
    CosineAnnealingLR, CosineAnnealingLROptions, CosineAnnealingWarmRestarts, CosineAnnealingWarmRestartsOptions,
};
pub use cyclic::{AnnealStrategy, CyclicLR, CyclicMode, CyclicOptions, OneCycleLR, OneCycleOptions};
pub use plateau::{PlateauMode, ReduceLROnPlateau, ReduceLROnPlateauOptions, ThresholdMode};

use crate::Optimizer;

/// A learning-rate schedule driven by epoch (or batch) counts, or by a metric
/// ([`ReduceLROnPlateau`]).
///
/// Every scheduler is one, so a training loop can hold `Box<dyn LrScheduler>` and
/// drive any of them with [`LrScheduler::step_with_metric`], which the epoch-driven
/// ones accept and ignore the metric of:
///
/// ```
/// use autograd::Var;
/// use optim::{LrScheduler, Optimizer, ReduceLROnPlateau, ReduceLROnPlateauOptions, Sgd, SgdOptions, StepLR, StepLROptions};
/// use tensor_core::Tensor;
///
/// // One end-of-epoch hook for every kind of scheduler.
/// fn epoch_end(s: &mut dyn LrScheduler, opt: &mut dyn Optimizer, val_loss: f64) -> tensor_core::Result<()> {
///     s.step_with_metric(opt, val_loss)
/// }
/// let w = Var::param(Tensor::new(&[1.0f64]))?;
/// let mut opt = Sgd::new(vec![w], SgdOptions { lr: 1.0, ..Default::default() })?;
/// let o = ReduceLROnPlateauOptions { patience: 0, ..Default::default() };
/// let mut plateau = ReduceLROnPlateau::new(&mut opt, o)?;
/// for val_loss in [1.0, 1.0] {
///     epoch_end(&mut plateau, &mut opt, val_loss)?;
/// }
/// assert!((opt.lr() - 0.1).abs() < 1e-12); // no improvement on the second epoch
/// let mut step = StepLR::new(&mut opt, 1, StepLROptions { gamma: 0.5 })?;
/// epoch_end(&mut step, &mut opt, 1.0)?; // the metric is ignored
/// assert!((opt.lr() - 0.05).abs() < 1e-12);
/// # Ok::<(), tensor_core::Error>(())
/// ```
pub trait LrScheduler {
    /// Advances one epoch and sets the optimizer's learning rates (PyTorch's
    /// `scheduler.step()`). An error for [`ReduceLROnPlateau`], which needs the
    /// metric ([`LrScheduler::step_with_metric`]).
    fn step(&mut self, opt: &mut dyn Optimizer) -> Result<()>;

    /// Advances one epoch given this epoch's `metric` (PyTorch's
    /// `scheduler.step(metric)`, for [`ReduceLROnPlateau`]); schedulers driven by
    /// epoch counts ignore the metric and [`LrScheduler::step`].
    fn step_with_metric(&mut self, opt: &mut dyn Optimizer, metric: f64) -> Result<()> {
        let _ = metric;
        self.step(opt)
    }

    /// Whether the schedule needs a metric to step ([`ReduceLROnPlateau`]); such a
    /// scheduler cannot go in a [`SequentialLR`] or a [`ChainedScheduler`], as in
    /// PyTorch.
    fn requires_metric(&self) -> bool {
        false
    }

    /// Jumps to `epoch` (PyTorch's deprecated `scheduler.step(epoch)`): uses the
    /// closed form where the schedule has one. [`SequentialLR`] uses it at milestones.
    fn step_to(&mut self, opt: &mut dyn Optimizer, epoch: i64) -> Result<()>;

    /// The learning rates this scheduler set last (PyTorch's `get_last_lr()`).
    fn last_lr(&self) -> Vec<f64>;

    /// The current epoch count (0 right after creation).
    fn last_epoch(&self) -> i64;

    /// The scheduler's counters and parameters, for checkpointing (user closures of
    /// [`LambdaLR`] and [`MultiplicativeLR`] are not included, as in PyTorch).
    fn state_dict(&self) -> SchedulerState;

    /// Restores counters saved by [`LrScheduler::state_dict`].
    fn load_state_dict(&mut self, state: &SchedulerState) -> Result<()>;

    /// Steps back the epoch counter by one ([`SequentialLR`] undoes the first step its
    /// schedulers made when they were created).
    fn rewind(&mut self);

    /// Resets the step count and performs a step (PyTorch's `_initial_step`).
    fn initial_step(&mut self, opt: &mut dyn Optimizer) -> Result<()>;
}

/// A scheduler's saved state: named numbers, and the states of the schedulers it
/// composes ([`SequentialLR`], [`ChainedScheduler`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SchedulerState {
    /// Which scheduler wrote it (`"StepLR"`); loading into another kind fails.
    pub scheduler: String,
    /// Counters and parameters by name (`"last_epoch"`, `"base_lrs"`, ...).
    pub values: BTreeMap<String, Vec<f64>>,
    /// The states of composed schedulers, in order.
    pub children: Vec<SchedulerState>,
}

impl SchedulerState {
    /// The state as JSON (floats round-trip exactly; non-finite values become the
    /// strings `"inf"`, `"-inf"`, `"nan"`).
    pub fn to_json(&self) -> String {
        self.to_value().to_string()
    }

    fn to_value(&self) -> Value {
        let mut vals = Map::new();
        for (k, v) in &self.values {
            let arr: Vec<Value> = v
                .iter()
                .map(|x| {
                    if x.is_finite() {
                        json!(x)
                    } else if x.is_nan() {
                        json!("nan")
                    } else if *x > 0.0 {
                        json!("inf")
                    } else {
                        json!("-inf")
                    }
                })
                .collect();
            vals.insert(k.clone(), Value::Array(arr));
        }
        let children: Vec<Value> = self.children.iter().map(|c| c.to_value()).collect();
        json!({"scheduler": self.scheduler, "values": Value::Object(vals), "children": children})
    }

    /// Parses [`SchedulerState::to_json`]'s output.
    pub fn from_json(text: &str) -> Result<SchedulerState> {
        let v: Value =
            serde_json::from_str(text).map_err(|e| Error::arg("SchedulerState::from_json", e.to_string()))?;
        Self::from_value(&v)
    }

    fn from_value(v: &Value) -> Result<SchedulerState> {
        let bad = |m: &str| Error::arg("SchedulerState::from_json", m.to_string());
        let scheduler = v["scheduler"].as_str().ok_or_else(|| bad("missing scheduler name"))?.to_string();
        let mut values = BTreeMap::new();
        for (k, arr) in v["values"].as_object().ok_or_else(|| bad("missing values"))? {
            let xs = arr
                .as_array()
                .ok_or_else(|| bad("values must be arrays"))?
                .iter()
                .map(|x| match x {
                    Value::String(s) if s == "inf" => Ok(f64::INFINITY),
                    Value::String(s) if s == "-inf" => Ok(f64::NEG_INFINITY),
                    Value::String(s) if s == "nan" => Ok(f64::NAN),
                    _ => x.as_f64().ok_or_else(|| bad("values must be numbers")),
                })
                .collect::<Result<Vec<f64>>>()?;
            values.insert(k.clone(), xs);
        }
        let children = match v["children"].as_array() {
            Some(cs) => cs.iter().map(Self::from_value).collect::<Result<Vec<_>>>()?,
            None => Vec::new(),
        };
        Ok(SchedulerState { scheduler, values, children })
    }

    pub(crate) fn get(&self, key: &str) -> Result<&[f64]> {
        self.values
            .get(key)
            .map(|v| v.as_slice())
            .ok_or_else(|| Error::arg("load_state_dict", format!("{} state is missing {key:?}", self.scheduler)))
    }

    pub(crate) fn get1(&self, key: &str) -> Result<f64> {
        match self.get(key)? {
            [x] => Ok(*x),
            other => Err(Error::arg(
                "load_state_dict",
                format!("{} state entry {key:?} must hold one number, got {}", self.scheduler, other.len()),
            )),
        }
    }

    /// An integer counter: a whole number in `[min, 2^53]` (JSON numbers are
    /// doubles, exact up to 2^53; anything else is a damaged or foreign state, not
    /// something to round into a counter).
    pub(crate) fn get_int(&self, key: &str, min: i64) -> Result<i64> {
        let x = self.get1(key)?;
        if !(x.fract() == 0.0 && x >= min as f64 && x.abs() <= MAX_COUNT) {
            return Err(Error::arg(
                "load_state_dict",
                format!("{} state entry {key:?} must be a whole number in [{min}, 2^53], got {x}", self.scheduler),
            ));
        }
        Ok(x as i64)
    }

    /// A list of `n` numbers, none of them NaN.
    pub(crate) fn get_rates(&self, key: &str, n: usize) -> Result<Vec<f64>> {
        let v = self.get(key)?;
        if v.len() != n {
            return Err(Error::arg(
                "load_state_dict",
                format!("{} state entry {key:?} has {} values for {n} param groups", self.scheduler, v.len()),
            ));
        }
        if v.iter().any(|x| x.is_nan()) {
            return Err(Error::arg("load_state_dict", format!("{} state entry {key:?} holds NaN", self.scheduler)));
        }
        Ok(v.to_vec())
    }

    pub(crate) fn check_kind(&self, kind: &str) -> Result<()> {
        if self.scheduler != kind {
            return Err(Error::arg(
                "load_state_dict",
                format!("state is for scheduler {:?}, this one is {kind:?}", self.scheduler),
            ));
        }
        Ok(())
    }
}

/// The largest magnitude a saved counter may have: 2^53, where doubles stop holding
/// every integer.
const MAX_COUNT: f64 = 9_007_199_254_740_992.0;

/// `e + 1`, or an error naming the scheduler when the epoch counter would overflow.
pub(crate) fn next_epoch(kind: &'static str, e: i64) -> Result<i64> {
    e.checked_add(1)
        .ok_or_else(|| Error::arg(kind, format!("the epoch counter overflows: last_epoch {e} cannot be advanced")))
}

/// Checks that a scheduler parameter is finite (NaN or an infinity would only turn
/// into a NaN learning rate later, reported against the optimizer).
pub(crate) fn check_finite(op: &'static str, name: &str, v: f64) -> Result<()> {
    if !v.is_finite() {
        return Err(Error::arg(op, format!("{name} must be finite, got {v}")));
    }
    Ok(())
}

/// Counters every epoch-based scheduler keeps (PyTorch's `LRScheduler` fields).
#[derive(Clone, Debug)]
pub(crate) struct Base {
    pub base_lrs: Vec<f64>,
    pub last_epoch: i64,
    pub step_count: u64,
    pub last_lr: Vec<f64>,
}

impl Base {
    /// Records `initial_lr` in groups that have none (PyTorch's `setdefault`) and takes
    /// the base rates from it.
    pub fn new(opt: &mut dyn Optimizer) -> Result<Base> {
        let cur = opt.lrs();
        let init: Vec<f64> = opt.initial_lrs().iter().zip(&cur).map(|(i, c)| i.unwrap_or(*c)).collect();
        opt.set_initial_lrs(&init)?;
        Ok(Base { base_lrs: init, last_epoch: -1, step_count: 0, last_lr: cur })
    }

    pub fn save(&self, kind: &str) -> SchedulerState {
        let mut values = BTreeMap::new();
        values.insert("base_lrs".into(), self.base_lrs.clone());
        values.insert("last_epoch".into(), vec![self.last_epoch as f64]);
        values.insert("step_count".into(), vec![self.step_count as f64]);
        values.insert("last_lr".into(), self.last_lr.clone());
        SchedulerState { scheduler: kind.to_string(), values, children: Vec::new() }
    }

    /// Restores the counters from `s`; checks everything before changing anything.
    pub fn load(&mut self, s: &SchedulerState, kind: &str) -> Result<()> {
        s.check_kind(kind)?;
        let base_lrs = s.get("base_lrs")?;
        if base_lrs.len() != self.base_lrs.len() {
            return Err(Error::arg(
                "load_state_dict",
                format!("state has {} param groups, the scheduler has {}", base_lrs.len(), self.base_lrs.len()),
            ));
        }
        let base_lrs = s.get_rates("base_lrs", self.base_lrs.len())?;
        let last_epoch = s.get_int("last_epoch", -(MAX_COUNT as i64))?;
        let step_count = s.get_int("step_count", 0)? as u64;
        let last_lr = s.get_rates("last_lr", self.base_lrs.len())?;
        self.base_lrs = base_lrs;
        self.last_epoch = last_epoch;
        self.step_count = step_count;
        self.last_lr = last_lr;
        Ok(())
    }
}

/// The per-scheduler formulas behind the shared [`LrScheduler`] implementation.
pub(crate) trait Formula {
    const KIND: &'static str;
    fn base(&self) -> &Base;
    fn base_mut(&mut self) -> &mut Base;
    /// PyTorch's `get_lr()` at `base().last_epoch` (may read the current rates, and
    /// may set momentum).
    fn get_lr(&mut self, opt: &mut dyn Optimizer) -> Result<Vec<f64>>;
    /// PyTorch's `_get_closed_form_lr()`, when the schedule has one.
    fn closed_form(&self) -> Option<Vec<f64>> {
        None
    }
    /// Moves the epoch counter: `None` for a plain step, `Some(e)` to jump.
    fn advance(&mut self, epoch: Option<i64>) -> Result<()> {
        let b = self.base_mut();
        b.last_epoch = match epoch {
            Some(e) => e,
            None => next_epoch(Self::KIND, b.last_epoch)?,
        };
        Ok(())
    }
    fn save_extra(&self, _s: &mut SchedulerState) {}
    fn load_extra(&mut self, _s: &SchedulerState) -> Result<()> {
        Ok(())
    }
}

pub(crate) fn do_step<F: Formula>(f: &mut F, opt: &mut dyn Optimizer, epoch: Option<i64>) -> Result<()> {
    if opt.num_param_groups() != f.base().base_lrs.len() {
        return Err(Error::arg(
            F::KIND,
            format!(
                "the optimizer has {} param groups, the scheduler was made for {}",
                opt.num_param_groups(),
                f.base().base_lrs.len()
            ),
        ));
    }
    f.advance(epoch)?;
    let b = f.base_mut();
    b.step_count = b.step_count.saturating_add(1);
    let lrs = match epoch.and_then(|_| f.closed_form()) {
        Some(l) => l,
        None => f.get_lr(opt)?,
    };
    opt.set_lrs(&lrs)?;
    f.base_mut().last_lr = lrs;
    Ok(())
}

macro_rules! impl_scheduler {
    ($t:ty) => {
        impl $crate::scheduler::LrScheduler for $t {
            fn step(&mut self, opt: &mut dyn $crate::Optimizer) -> tensor_core::Result<()> {
                $crate::scheduler::do_step(self, opt, None)
            }
            fn step_to(&mut self, opt: &mut dyn $crate::Optimizer, epoch: i64) -> tensor_core::Result<()> {
                $crate::scheduler::do_step(self, opt, Some(epoch))
            }
            fn last_lr(&self) -> Vec<f64> {
                $crate::scheduler::Formula::base(self).last_lr.clone()
            }
            fn last_epoch(&self) -> i64 {
                $crate::scheduler::Formula::base(self).last_epoch
            }
            fn state_dict(&self) -> $crate::scheduler::SchedulerState {
                let mut s = $crate::scheduler::Formula::base(self).save(<$t as $crate::scheduler::Formula>::KIND);
                $crate::scheduler::Formula::save_extra(self, &mut s);
                s
            }
            fn load_state_dict(&mut self, s: &$crate::scheduler::SchedulerState) -> tensor_core::Result<()> {
                let saved = $crate::scheduler::Formula::base(self).clone();
                $crate::scheduler::Formula::base_mut(self).load(s, <$t as $crate::scheduler::Formula>::KIND)?;
                if let Err(e) = $crate::scheduler::Formula::load_extra(self, s) {
                    *$crate::scheduler::Formula::base_mut(self) = saved;
                    return Err(e);
                }
                Ok(())
            }
            fn rewind(&mut self) {
                let b = $crate::scheduler::Formula::base_mut(self);
                b.last_epoch = b.last_epoch.saturating_sub(1);
            }
            fn initial_step(&mut self, opt: &mut dyn $crate::Optimizer) -> tensor_core::Result<()> {
                $crate::scheduler::Formula::base_mut(self).step_count = 0;
                $crate::scheduler::do_step(self, opt, None)
            }
        }
    };
}
pub(crate) use impl_scheduler;

/// Checks that a per-group list has one value per group (or one value for all).
pub(crate) fn per_group(op: &'static str, what: &str, v: &[f64], groups: usize) -> Result<Vec<f64>> {
    match v.len() {
        1 => Ok(vec![v[0]; groups]),
        n if n == groups => Ok(v.to_vec()),
        n => Err(Error::arg(op, format!("expected {groups} values for {what}, got {n}"))),
    }
}
