//! Composing schedulers: one after another ([`SequentialLR`]) or all at once
//! ([`ChainedScheduler`]).

use tensor_core::{Error, Result};

use super::{next_epoch, LrScheduler, SchedulerState};
use crate::Optimizer;

/// Runs schedulers one after another, switching at the milestone epochs (PyTorch's
/// `SequentialLR`). The schedulers must have been created on the same optimizer;
/// like PyTorch, it refuses [`ReduceLROnPlateau`](crate::ReduceLROnPlateau), whose
/// steps need a metric.
///
/// ```
/// use autograd::Var;
/// use optim::{ExponentialLR, LinearLR, LinearLROptions, LrScheduler, Optimizer, SequentialLR, Sgd, SgdOptions};
/// use tensor_core::Tensor;
///
/// let w = Var::param(Tensor::new(&[1.0f64]))?;
/// let mut opt = Sgd::new(vec![w], SgdOptions { lr: 1.0, ..Default::default() })?;
/// // Linear warm-up for 2 epochs, then exponential decay.
/// let warm = LinearLR::new(&mut opt, LinearLROptions { start_factor: 0.5, end_factor: 1.0, total_iters: 2 })?;
/// let decay = ExponentialLR::new(&mut opt, 0.5)?;
/// let mut sched = SequentialLR::new(&mut opt, vec![Box::new(warm), Box::new(decay)], &[2])?;
/// let mut lrs = vec![];
/// for _ in 0..5 {
///     lrs.push(opt.lr());
///     sched.step(&mut opt)?;
/// }
/// assert_eq!(lrs, vec![0.5, 0.75, 1.0, 0.5, 0.25]);
/// # Ok::<(), tensor_core::Error>(())
/// ```
pub struct SequentialLR {
    schedulers: Vec<Box<dyn LrScheduler>>,
    /// In i128, so that every `usize` milestone compares exactly with an `i64` epoch.
    milestones: Vec<i128>,
    last_epoch: i64,
    last_lr: Vec<f64>,
}

impl std::fmt::Debug for SequentialLR {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SequentialLR")
            .field("milestones", &self.milestones)
            .field("last_epoch", &self.last_epoch)
            .finish()
    }
}

impl SequentialLR {
    /// Switches from `schedulers[i]` to `schedulers[i + 1]` at `milestones[i]`; needs
    /// one milestone fewer than schedulers, increasing.
    pub fn new(
        opt: &mut dyn Optimizer,
        mut schedulers: Vec<Box<dyn LrScheduler>>,
        milestones: &[usize],
    ) -> Result<Self> {
        if schedulers.is_empty() {
            return Err(Error::arg("SequentialLR", "expects at least one scheduler"));
        }
        refuse_metric_schedulers("SequentialLR", &schedulers)?;
        if milestones.len() + 1 != schedulers.len() {
            return Err(Error::arg(
                "SequentialLR",
                format!(
                    "expects one milestone fewer than schedulers, got {} schedulers and {} milestones",
                    schedulers.len(),
                    milestones.len()
                ),
            ));
        }
        if milestones.windows(2).any(|w| w[0] > w[1]) {
            return Err(Error::arg("SequentialLR", "milestones must be non-decreasing"));
        }
        // Back to the initial rates, undo the step every scheduler made when it was
        // created, and redo only the first one's.
        let cur = opt.lrs();
        let init: Vec<f64> = opt.initial_lrs().iter().zip(&cur).map(|(i, c)| i.unwrap_or(*c)).collect();
        opt.set_lrs(&init)?;
        for s in schedulers.iter_mut() {
            s.rewind();
        }
        schedulers[0].initial_step(opt)?;
        let last_lr = schedulers[0].last_lr();
        Ok(SequentialLR {
            schedulers,
            milestones: milestones.iter().map(|&m| m as i128).collect(),
            last_epoch: 0,
            last_lr,
        })
    }
}

impl LrScheduler for SequentialLR {
    fn step(&mut self, opt: &mut dyn Optimizer) -> Result<()> {
        let e = next_epoch("SequentialLR", self.last_epoch)?;
        self.last_epoch = e;
        let idx = self.milestones.partition_point(|&m| m <= e as i128);
        let s = &mut self.schedulers[idx];
        if idx > 0 && self.milestones[idx - 1] == e as i128 {
            s.step_to(opt, 0)?;
        } else {
            s.step(opt)?;
        }
        self.last_lr = s.last_lr();
        Ok(())
    }

    /// Jumps the active scheduler; the composite's own epoch becomes `epoch`.
    fn step_to(&mut self, opt: &mut dyn Optimizer, epoch: i64) -> Result<()> {
        self.last_epoch = epoch;
        let idx = self.milestones.partition_point(|&m| m <= epoch as i128);
        let start = if idx > 0 { self.milestones[idx - 1] } else { 0 };
        let s = &mut self.schedulers[idx];
        // start <= epoch (or start is 0), so the difference is an i64 again.
        s.step_to(opt, (epoch as i128 - start) as i64)?;
        self.last_lr = s.last_lr();
        Ok(())
    }

    fn last_lr(&self) -> Vec<f64> {
        self.last_lr.clone()
    }

    fn last_epoch(&self) -> i64 {
        self.last_epoch
    }

    fn state_dict(&self) -> SchedulerState {
        let mut s = SchedulerState { scheduler: "SequentialLR".into(), ..Default::default() };
        s.values.insert("last_epoch".into(), vec![self.last_epoch as f64]);
        s.values.insert("last_lr".into(), self.last_lr.clone());
        s.children = self.schedulers.iter().map(|c| c.state_dict()).collect();
        s
    }

    fn load_state_dict(&mut self, state: &SchedulerState) -> Result<()> {
        state.check_kind("SequentialLR")?;
        // Own entries first: a bad one must not leave the children loaded.
        let last_epoch = state.get_int("last_epoch", -(1i64 << 53))?;
        let last_lr = state.get_rates("last_lr", self.last_lr.len())?;
        load_children("SequentialLR", &mut self.schedulers, state)?;
        self.last_epoch = last_epoch;
        self.last_lr = last_lr;
        Ok(())
    }

    fn rewind(&mut self) {
        self.last_epoch = self.last_epoch.saturating_sub(1);
    }

    fn initial_step(&mut self, opt: &mut dyn Optimizer) -> Result<()> {
        self.step(opt)
    }
}

/// PyTorch's refusal of `ReduceLROnPlateau` in the composite schedulers: they step
/// their children without a metric.
fn refuse_metric_schedulers(kind: &'static str, schedulers: &[Box<dyn LrScheduler>]) -> Result<()> {
    match schedulers.iter().position(|s| s.requires_metric()) {
        Some(i) => Err(Error::arg(
            kind,
            format!("does not support ReduceLROnPlateau (or another scheduler that steps on a metric), got one at index {i}"),
        )),
        None => Ok(()),
    }
}

fn load_children(kind: &str, children: &mut [Box<dyn LrScheduler>], state: &SchedulerState) -> Result<()> {
    state.check_kind(kind)?;
    if state.children.len() != children.len() {
        return Err(Error::arg(
            "load_state_dict",
            format!("{kind} state has {} schedulers, this one has {}", state.children.len(), children.len()),
        ));
    }
    // Check every child's state first (by loading into a snapshot) so that a failure
    // leaves the composite unchanged.
    let saved: Vec<SchedulerState> = children.iter().map(|c| c.state_dict()).collect();
    for (i, (c, s)) in children.iter_mut().zip(&state.children).enumerate() {
        if let Err(e) = c.load_state_dict(s) {
            for (c, old) in children.iter_mut().zip(&saved).take(i) {
                c.load_state_dict(old)?;
            }
            return Err(e);
        }
    }
    Ok(())
}

/// Steps every scheduler at each step, so their factors compose (PyTorch's
/// `ChainedScheduler`). The schedulers must have been created on the same optimizer,
/// in this order; like PyTorch, it refuses
/// [`ReduceLROnPlateau`](crate::ReduceLROnPlateau).
pub struct ChainedScheduler {
    schedulers: Vec<Box<dyn LrScheduler>>,
    last_lr: Vec<f64>,
}

impl std::fmt::Debug for ChainedScheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainedScheduler").field("schedulers", &self.schedulers.len()).finish()
    }
}

impl ChainedScheduler {
    /// Chains `schedulers`; `opt` gives the starting rates.
    pub fn new(opt: &mut dyn Optimizer, schedulers: Vec<Box<dyn LrScheduler>>) -> Result<Self> {
        if schedulers.is_empty() {
            return Err(Error::arg("ChainedScheduler", "expects at least one scheduler"));
        }
        refuse_metric_schedulers("ChainedScheduler", &schedulers)?;
        Ok(ChainedScheduler { schedulers, last_lr: opt.lrs() })
    }
}

impl LrScheduler for ChainedScheduler {
    fn step(&mut self, opt: &mut dyn Optimizer) -> Result<()> {
        for s in self.schedulers.iter_mut() {
            s.step(opt)?;
        }
        self.last_lr = opt.lrs();
        Ok(())
    }

    fn step_to(&mut self, opt: &mut dyn Optimizer, epoch: i64) -> Result<()> {
        for s in self.schedulers.iter_mut() {
            s.step_to(opt, epoch)?;
        }
        self.last_lr = opt.lrs();
        Ok(())
    }

    fn last_lr(&self) -> Vec<f64> {
        self.last_lr.clone()
    }

    fn last_epoch(&self) -> i64 {
        self.schedulers.last().map(|s| s.last_epoch()).unwrap_or(0)
    }

    fn state_dict(&self) -> SchedulerState {
        let mut s = SchedulerState { scheduler: "ChainedScheduler".into(), ..Default::default() };
        s.values.insert("last_lr".into(), self.last_lr.clone());
        s.children = self.schedulers.iter().map(|c| c.state_dict()).collect();
        s
    }

    fn load_state_dict(&mut self, state: &SchedulerState) -> Result<()> {
        state.check_kind("ChainedScheduler")?;
        let last_lr = state.get_rates("last_lr", self.last_lr.len())?;
        load_children("ChainedScheduler", &mut self.schedulers, state)?;
        self.last_lr = last_lr;
        Ok(())
    }

    fn rewind(&mut self) {
        for s in self.schedulers.iter_mut() {
            s.rewind();
        }
    }

    fn initial_step(&mut self, opt: &mut dyn Optimizer) -> Result<()> {
        for s in self.schedulers.iter_mut() {
            s.initial_step(opt)?;
        }
        self.last_lr = opt.lrs();
        Ok(())
    }
}
