//! Cyclical schedules that also cycle momentum: the 1cycle policy and CyclicLR.

use std::f64::consts::PI;

use tensor_core::{Error, Result};

use super::{check_finite, impl_scheduler, per_group, Base, Formula};
use crate::Optimizer;

/// How [`OneCycleLR`] interpolates within a phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnnealStrategy {
    /// Cosine annealing (PyTorch's `'cos'`).
    Cos,
    /// Linear annealing (`'linear'`).
    Linear,
}

/// Options of [`OneCycleLR`] besides `max_lr` and `total_steps`; `Default` gives
/// PyTorch's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct OneCycleOptions {
    /// Fraction of the steps spent increasing the rate.
    pub pct_start: f64,
    /// Interpolation within a phase.
    pub anneal_strategy: AnnealStrategy,
    /// Cycle momentum (or Adam's `beta1`) inversely to the rate.
    pub cycle_momentum: bool,
    /// Lowest momentum (one value, or one per group).
    pub base_momentum: Vec<f64>,
    /// Highest momentum (one value, or one per group).
    pub max_momentum: Vec<f64>,
    /// `initial_lr = max_lr / div_factor`.
    pub div_factor: f64,
    /// `min_lr = initial_lr / final_div_factor`.
    pub final_div_factor: f64,
    /// Use three phases (up, down to `initial_lr`, then annihilate) instead of two.
    pub three_phase: bool,
}

impl Default for OneCycleOptions {
    fn default() -> Self {
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
    }
}

#[derive(Clone, Copy, Debug)]
enum Level {
    Initial,
    Max,
    Min,
}

#[derive(Clone, Copy, Debug)]
struct Phase {
    end_step: f64,
    start_lr: Level,
    end_lr: Level,
    start_momentum_max: bool,
    end_momentum_max: bool,
}

/// The 1cycle policy (PyTorch's `OneCycleLR`): the rate rises from
/// `max_lr / div_factor` to `max_lr`, then anneals to a tiny minimum, while momentum
/// moves the opposite way. Step it once per batch, `total_steps` times.
#[derive(Clone, Debug)]
pub struct OneCycleLR {
    base: Base,
    /// In i128, so that every `usize` count compares exactly with an `i64` step.
    total_steps: i128,
    phases: Vec<Phase>,
    anneal: AnnealStrategy,
    cycle_momentum: bool,
    initial_lrs: Vec<f64>,
    max_lrs: Vec<f64>,
    min_lrs: Vec<f64>,
    base_momentums: Vec<f64>,
    max_momentums: Vec<f64>,
}

impl OneCycleLR {
    /// A 1cycle schedule on `opt` peaking at `max_lr` in every group.
    pub fn new(opt: &mut dyn Optimizer, max_lr: f64, total_steps: usize, options: OneCycleOptions) -> Result<Self> {
        Self::with_max_lrs(opt, &[max_lr], total_steps, options)
    }

    /// A 1cycle schedule with one peak rate per group.
    pub fn with_max_lrs(
        opt: &mut dyn Optimizer,
        max_lrs: &[f64],
        total_steps: usize,
        o: OneCycleOptions,
    ) -> Result<Self> {
        const OP: &str = "OneCycleLR";
        if total_steps == 0 {
            return Err(Error::arg(OP, "expected a positive total_steps"));
        }
        if !(0.0..=1.0).contains(&o.pct_start) {
            return Err(Error::arg(OP, format!("expected pct_start in [0, 1], got {}", o.pct_start)));
        }
        let n = opt.num_param_groups();
        let max_lrs = per_group(OP, "max_lr", max_lrs, n)?;
        for &m in &max_lrs {
            check_finite(OP, "max_lr", m)?;
        }
        for (name, v) in [("div_factor", o.div_factor), ("final_div_factor", o.final_div_factor)] {
            if !(v > 0.0 && v.is_finite()) {
                return Err(Error::arg(OP, format!("expected a finite positive {name}, got {v}")));
            }
        }
        let ts = total_steps as f64;
        let phase = |end_step, start_lr, end_lr, smax, emax| Phase {
            end_step,
            start_lr,
            end_lr,
            start_momentum_max: smax,
            end_momentum_max: emax,
        };
        let phases = if o.three_phase {
            vec![
                phase(o.pct_start * ts - 1.0, Level::Initial, Level::Max, true, false),
                phase(2.0 * o.pct_start * ts - 2.0, Level::Max, Level::Initial, false, true),
                phase(ts - 1.0, Level::Initial, Level::Min, true, true),
            ]
        } else {
            vec![
                phase(o.pct_start * ts - 1.0, Level::Initial, Level::Max, true, false),
                phase(ts - 1.0, Level::Max, Level::Min, false, true),
            ]
        };
        let initial_lrs: Vec<f64> = max_lrs.iter().map(|m| m / o.div_factor).collect();
        let min_lrs: Vec<f64> = initial_lrs.iter().map(|i| i / o.final_div_factor).collect();
        let (mut base_momentums, mut max_momentums) = (Vec::new(), Vec::new());
        if o.cycle_momentum {
            if opt.momentums().iter().any(|m| m.is_none()) {
                return Err(Error::arg(OP, "optimizer must support momentum or beta1 with `cycle_momentum` enabled"));
            }
            base_momentums = per_group(OP, "base_momentum", &o.base_momentum, n)?;
            max_momentums = per_group(OP, "max_momentum", &o.max_momentum, n)?;
            opt.set_momentums(&max_momentums)?;
        }
        opt.set_initial_lrs(&initial_lrs)?;
        let mut s = OneCycleLR {
            base: Base::new(opt)?,
            total_steps: total_steps as i128,
            phases,
            anneal: o.anneal_strategy,
            cycle_momentum: o.cycle_momentum,
            initial_lrs,
            max_lrs,
            min_lrs,
            base_momentums,
            max_momentums,
        };
        super::LrScheduler::initial_step(&mut s, opt)?;
        Ok(s)
    }

    fn anneal(&self, start: f64, end: f64, pct: f64) -> f64 {
        match self.anneal {
            AnnealStrategy::Cos => end + (start - end) / 2.0 * ((PI * pct).cos() + 1.0),
            AnnealStrategy::Linear => (end - start) * pct + start,
        }
    }
}

impl Formula for OneCycleLR {
    const KIND: &'static str = "OneCycleLR";
    fn base(&self) -> &Base {
        &self.base
    }
    fn base_mut(&mut self) -> &mut Base {
        &mut self.base
    }
    fn get_lr(&mut self, opt: &mut dyn Optimizer) -> Result<Vec<f64>> {
        let step = self.base.last_epoch;
        if step as i128 > self.total_steps {
            return Err(Error::arg(
                "OneCycleLR",
                format!("tried to step {step} times; the specified number of total steps is {}", self.total_steps),
            ));
        }
        let step = step as f64;
        let mut lrs = Vec::with_capacity(self.max_lrs.len());
        let mut moms = Vec::with_capacity(self.max_lrs.len());
        for g in 0..self.max_lrs.len() {
            let level = |l: Level| match l {
                Level::Initial => self.initial_lrs[g],
                Level::Max => self.max_lrs[g],
                Level::Min => self.min_lrs[g],
            };
            let mom = |is_max: bool| {
                if !self.cycle_momentum {
                    0.0
                } else if is_max {
                    self.max_momentums[g]
                } else {
                    self.base_momentums[g]
                }
            };
            let mut start = 0.0;
            for (i, p) in self.phases.iter().enumerate() {
                if step <= p.end_step || i == self.phases.len() - 1 {
                    // A phase of no steps (a pct_start that rounds it away) is complete
                    // at once, where PyTorch would divide by zero.
                    let len = p.end_step - start;
                    let pct = if len > 0.0 { (step - start) / len } else { 1.0 };
                    lrs.push(self.anneal(level(p.start_lr), level(p.end_lr), pct));
                    moms.push(self.anneal(mom(p.start_momentum_max), mom(p.end_momentum_max), pct));
                    break;
                }
                start = p.end_step;
            }
        }
        if self.cycle_momentum {
            opt.set_momentums(&moms)?;
        }
        Ok(lrs)
    }
}
impl_scheduler!(OneCycleLR);

/// The shape of a [`CyclicLR`] cycle.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CyclicMode {
    /// A triangle of constant height.
    Triangular,
    /// A triangle whose height halves every cycle.
    Triangular2,
    /// A triangle scaled by `gamma^iteration`.
    ExpRange,
}

/// Options of [`CyclicLR`] besides the rate bounds; `Default` gives PyTorch's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct CyclicOptions {
    /// Steps in the increasing half of a cycle.
    pub step_size_up: usize,
    /// Steps in the decreasing half (defaults to `step_size_up`).
    pub step_size_down: Option<usize>,
    /// Cycle shape.
    pub mode: CyclicMode,
    /// Decay constant of [`CyclicMode::ExpRange`].
    pub gamma: f64,
    /// Cycle momentum (or Adam's `beta1`) inversely to the rate.
    pub cycle_momentum: bool,
    /// Lowest momentum (one value, or one per group).
    pub base_momentum: Vec<f64>,
    /// Highest momentum (one value, or one per group).
    pub max_momentum: Vec<f64>,
}

impl Default for CyclicOptions {
    fn default() -> Self {
        CyclicOptions {
            step_size_up: 2000,
            step_size_down: None,
            mode: CyclicMode::Triangular,
            gamma: 1.0,
            cycle_momentum: true,
            base_momentum: vec![0.8],
            max_momentum: vec![0.9],
        }
    }
}

/// Cyclical learning rates (PyTorch's `CyclicLR`): the rate cycles between `base_lr`
/// and `max_lr`, momentum the opposite way. Step it once per batch.
#[derive(Clone, Debug)]
pub struct CyclicLR {
    base: Base,
    max_lrs: Vec<f64>,
    total_size: f64,
    step_ratio: f64,
    mode: CyclicMode,
    gamma: f64,
    cycle_momentum: bool,
    base_momentums: Vec<f64>,
    max_momentums: Vec<f64>,
}

impl CyclicLR {
    /// A cyclic schedule on `opt` between `base_lr` and `max_lr` (one value for all
    /// groups, or one per group).
    pub fn new(opt: &mut dyn Optimizer, base_lr: &[f64], max_lr: &[f64], o: CyclicOptions) -> Result<Self> {
        const OP: &str = "CyclicLR";
        let n = opt.num_param_groups();
        let base_lrs = per_group(OP, "base_lr", base_lr, n)?;
        let max_lrs = per_group(OP, "max_lr", max_lr, n)?;
        for (name, v) in base_lrs.iter().map(|&b| ("base_lr", b)).chain(max_lrs.iter().map(|&m| ("max_lr", m))) {
            check_finite(OP, name, v)?;
        }
        // The rising half divides by its length (step_size_up / cycle length): with
        // no rising step the very first step would be 0 / 0.
        if o.step_size_up == 0 {
            return Err(Error::arg(OP, "step_size_up must be positive, got 0"));
        }
        if o.mode == CyclicMode::ExpRange && !(o.gamma > 0.0 && o.gamma.is_finite()) {
            return Err(Error::arg(
                OP,
                format!("gamma must be finite and positive in exp_range mode, got {}", o.gamma),
            ));
        }
        opt.set_lrs(&base_lrs)?;
        let up = o.step_size_up as f64;
        let down = o.step_size_down.map(|d| d as f64).unwrap_or(up);
        let total_size = up + down;
        let (mut base_momentums, mut max_momentums) = (Vec::new(), Vec::new());
        if o.cycle_momentum {
            if opt.momentums().iter().any(|m| m.is_none()) {
                return Err(Error::arg(OP, "optimizer must support momentum or beta1 with `cycle_momentum` enabled"));
            }
            base_momentums = per_group(OP, "base_momentum", &o.base_momentum, n)?;
            max_momentums = per_group(OP, "max_momentum", &o.max_momentum, n)?;
            opt.set_momentums(&max_momentums)?;
        }
        let mut base = Base::new(opt)?;
        base.base_lrs = base_lrs;
        let mut s = CyclicLR {
            base,
            max_lrs,
            total_size,
            step_ratio: up / total_size,
            mode: o.mode,
            gamma: o.gamma,
            cycle_momentum: o.cycle_momentum,
            base_momentums,
            max_momentums,
        };
        super::LrScheduler::initial_step(&mut s, opt)?;
        Ok(s)
    }

    fn scale(&self, cycle: f64, iteration: f64) -> f64 {
        match self.mode {
            CyclicMode::Triangular => 1.0,
            CyclicMode::Triangular2 => 1.0 / 2f64.powf(cycle - 1.0),
            CyclicMode::ExpRange => self.gamma.powf(iteration),
        }
    }
}

impl Formula for CyclicLR {
    const KIND: &'static str = "CyclicLR";
    fn base(&self) -> &Base {
        &self.base
    }
    fn base_mut(&mut self) -> &mut Base {
        &mut self.base
    }
    fn get_lr(&mut self, opt: &mut dyn Optimizer) -> Result<Vec<f64>> {
        let e = self.base.last_epoch as f64;
        let cycle = (1.0 + e / self.total_size).floor();
        let x = 1.0 + e / self.total_size - cycle;
        let factor = if x <= self.step_ratio { x / self.step_ratio } else { (x - 1.0) / (self.step_ratio - 1.0) };
        let scale = self.scale(cycle, e);
        let lrs = self.base.base_lrs.iter().zip(&self.max_lrs).map(|(b, m)| b + (m - b) * factor * scale).collect();
        if self.cycle_momentum {
            let moms: Vec<f64> = self
                .base_momentums
                .iter()
                .zip(&self.max_momentums)
                .map(|(b, m)| m - (m - b) * factor * scale)
                .collect();
            opt.set_momentums(&moms)?;
        }
        Ok(lrs)
    }
}
impl_scheduler!(CyclicLR);
