//! Cosine annealing, with and without warm restarts.

use std::f64::consts::PI;

use tensor_core::{Error, Result};

use super::{check_finite, impl_scheduler, next_epoch, Base, Formula, SchedulerState};
use crate::Optimizer;

/// Options of [`CosineAnnealingLR`] (PyTorch's defaults via `Default`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CosineAnnealingLROptions {
    /// The lowest rate (0.0).
    pub eta_min: f64,
}

/// Cosine annealing from the base rate to `eta_min` over `t_max` epochs, back up over
/// the next `t_max`, and so on (PyTorch's `CosineAnnealingLR`, in its recursive form,
/// so it composes with other schedulers the same way).
#[derive(Clone, Debug)]
pub struct CosineAnnealingLR {
    base: Base,
    /// In i128: `2 * t_max` and `e - 1 - t_max` are exact for every `usize` and `i64`.
    t_max: i128,
    eta_min: f64,
}

impl CosineAnnealingLR {
    /// A cosine schedule on `opt` with half-period `t_max` epochs.
    pub fn new(opt: &mut dyn Optimizer, t_max: usize, o: CosineAnnealingLROptions) -> Result<Self> {
        let eta_min = o.eta_min;
        if t_max == 0 {
            return Err(Error::arg("CosineAnnealingLR", "T_max must be positive"));
        }
        check_finite("CosineAnnealingLR", "eta_min", eta_min)?;
        let mut s = CosineAnnealingLR { base: Base::new(opt)?, t_max: t_max as i128, eta_min };
        super::LrScheduler::initial_step(&mut s, opt)?;
        Ok(s)
    }
}

impl Formula for CosineAnnealingLR {
    const KIND: &'static str = "CosineAnnealingLR";
    fn base(&self) -> &Base {
        &self.base
    }
    fn base_mut(&mut self) -> &mut Base {
        &mut self.base
    }
    fn get_lr(&mut self, opt: &mut dyn Optimizer) -> Result<Vec<f64>> {
        let e = self.base.last_epoch;
        let (t, eta) = (self.t_max, self.eta_min);
        let lrs = opt.lrs();
        if e == 0 {
            return Ok(lrs);
        }
        let bases = &self.base.base_lrs;
        if self.base.step_count == 1 && e > 0 {
            return Ok(bases
                .iter()
                .map(|b| eta + (b - eta) * (1.0 + (e as f64 * PI / t as f64).cos()) / 2.0)
                .collect());
        }
        if (e as i128 - 1 - t).rem_euclid(2 * t) == 0 {
            return Ok(lrs
                .iter()
                .zip(bases)
                .map(|(l, b)| l + (b - eta) * (1.0 - (PI / t as f64).cos()) / 2.0)
                .collect());
        }
        let (ef, tf) = (e as f64, t as f64);
        let ratio = (1.0 + (PI * ef / tf).cos()) / (1.0 + (PI * (ef - 1.0) / tf).cos());
        Ok(lrs.iter().map(|l| ratio * (l - eta) + eta).collect())
    }
    fn closed_form(&self) -> Option<Vec<f64>> {
        let (e, t, eta) = (self.base.last_epoch as f64, self.t_max as f64, self.eta_min);
        Some(self.base.base_lrs.iter().map(|b| eta + (b - eta) * (1.0 + (PI * e / t).cos()) / 2.0).collect())
    }
}
impl_scheduler!(CosineAnnealingLR);

/// Options of [`CosineAnnealingWarmRestarts`] (PyTorch's defaults via `Default`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CosineAnnealingWarmRestartsOptions {
    /// The factor by which the period grows after each restart, `>= 1` (1).
    pub t_mult: usize,
    /// The lowest rate (0.0).
    pub eta_min: f64,
}

impl Default for CosineAnnealingWarmRestartsOptions {
    fn default() -> Self {
        CosineAnnealingWarmRestartsOptions { t_mult: 1, eta_min: 0.0 }
    }
}

/// Cosine annealing with warm restarts (SGDR): the period starts at `t_0` epochs and
/// is multiplied by `t_mult` after each restart (PyTorch's
/// `CosineAnnealingWarmRestarts`).
#[derive(Clone, Debug)]
pub struct CosineAnnealingWarmRestarts {
    base: Base,
    t_0: u64,
    /// The current period; growing it past `u64::MAX` is an error, not a wrap.
    t_i: u64,
    t_mult: u64,
    eta_min: f64,
    t_cur: f64,
}

impl CosineAnnealingWarmRestarts {
    /// SGDR on `opt` with a first period of `t_0 >= 1` epochs.
    pub fn new(opt: &mut dyn Optimizer, t_0: usize, o: CosineAnnealingWarmRestartsOptions) -> Result<Self> {
        let CosineAnnealingWarmRestartsOptions { t_mult, eta_min } = o;
        if t_0 == 0 {
            return Err(Error::arg("CosineAnnealingWarmRestarts", "T_0 must be a positive integer"));
        }
        if t_mult == 0 {
            return Err(Error::arg("CosineAnnealingWarmRestarts", "T_mult must be an integer >= 1"));
        }
        check_finite("CosineAnnealingWarmRestarts", "eta_min", eta_min)?;
        let mut s = CosineAnnealingWarmRestarts {
            base: Base::new(opt)?,
            t_0: t_0 as u64,
            t_i: t_0 as u64,
            t_mult: t_mult as u64,
            eta_min,
            t_cur: -1.0,
        };
        super::LrScheduler::initial_step(&mut s, opt)?;
        Ok(s)
    }
}

impl Formula for CosineAnnealingWarmRestarts {
    const KIND: &'static str = "CosineAnnealingWarmRestarts";
    fn base(&self) -> &Base {
        &self.base
    }
    fn base_mut(&mut self) -> &mut Base {
        &mut self.base
    }
    fn get_lr(&mut self, _opt: &mut dyn Optimizer) -> Result<Vec<f64>> {
        let eta = self.eta_min;
        let c = (1.0 + (PI * self.t_cur / self.t_i as f64).cos()) / 2.0;
        Ok(self.base.base_lrs.iter().map(|b| eta + (b - eta) * c).collect())
    }
    fn advance(&mut self, epoch: Option<i64>) -> Result<()> {
        const OP: &str = "CosineAnnealingWarmRestarts";
        let overflow = || Error::arg(OP, "the restart period overflows: T_0 * T_mult^n does not fit in 64 bits");
        let epoch = match epoch {
            None if self.base.last_epoch < 0 => Some(0),
            e => e,
        };
        // Everything is computed first and assigned last, so an error changes nothing.
        match epoch {
            None => {
                let last_epoch = next_epoch(OP, self.base.last_epoch)?;
                let (mut t_cur, mut t_i) = (self.t_cur + 1.0, self.t_i);
                if t_cur >= t_i as f64 {
                    t_cur -= t_i as f64;
                    t_i = t_i.checked_mul(self.t_mult).ok_or_else(overflow)?;
                }
                (self.base.last_epoch, self.t_cur, self.t_i) = (last_epoch, t_cur, t_i);
            }
            Some(e) => {
                if e < 0 {
                    return Err(Error::arg(OP, format!("expected a non-negative epoch, got {e}")));
                }
                let eu = e as u64;
                let (t_cur, t_i) = if eu >= self.t_0 {
                    if self.t_mult == 1 {
                        ((eu % self.t_0) as f64, self.t_i)
                    } else {
                        let (t0, tm) = (self.t_0 as f64, self.t_mult as f64);
                        let n = ((e as f64 / t0 * (tm - 1.0) + 1.0).ln() / tm.ln()).floor();
                        let n = u32::try_from(n as i64).map_err(|_| overflow())?;
                        let t_i =
                            self.t_mult.checked_pow(n).and_then(|p| p.checked_mul(self.t_0)).ok_or_else(overflow)?;
                        (e as f64 - t0 * (tm.powi(n as i32) - 1.0) / (tm - 1.0), t_i)
                    }
                } else {
                    (e as f64, self.t_0)
                };
                (self.base.last_epoch, self.t_cur, self.t_i) = (e, t_cur, t_i);
            }
        }
        Ok(())
    }
    fn save_extra(&self, s: &mut SchedulerState) {
        s.values.insert("T_i".into(), vec![self.t_i as f64]);
        s.values.insert("T_cur".into(), vec![self.t_cur]);
    }
    fn load_extra(&mut self, s: &SchedulerState) -> Result<()> {
        let t_i = s.get_int("T_i", 1)? as u64;
        let t_cur = s.get1("T_cur")?;
        if !t_cur.is_finite() {
            return Err(Error::arg("load_state_dict", format!("invalid T_cur {t_cur}")));
        }
        self.t_i = t_i;
        self.t_cur = t_cur;
        Ok(())
    }
}
impl_scheduler!(CosineAnnealingWarmRestarts);
