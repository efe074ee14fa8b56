//! Stochastic gradient descent with momentum, dampening, Nesterov momentum, weight
//! decay and `maximize` (PyTorch's `torch.optim.SGD`).

use std::collections::BTreeMap;

use tensor_core::{Error, Result, Tensor};

use crate::optimizer::{check_min, GroupOptions, Optim, Rule};
use crate::state::{get_b, get_f, load_opt_buffer, save_buffer, Hyper, ParamState};
use tensor_core::fused::{optimizer_step, OptimizerUpdate, SgdConfig};

/// Options of an [`Sgd`] group. `Default` gives PyTorch's defaults (`lr = 1e-3`, no
/// momentum).
#[derive(Clone, Debug, PartialEq)]
pub struct SgdOptions {
    /// Learning rate.
    pub lr: f64,
    /// Momentum factor (0 disables the buffer).
    pub momentum: f64,
    /// Dampening for momentum.
    pub dampening: f64,
    /// L2 penalty added to the gradient.
    pub weight_decay: f64,
    /// Nesterov momentum (needs `momentum > 0` and `dampening == 0`).
    pub nesterov: bool,
    /// Maximize the objective instead of minimizing it.
    pub maximize: bool,
    /// Use the fused single-loop kernel where one exists (contiguous f32/f64 CPU
    /// tensors); `false` forces the tensor-op path. Both give the same values.
    pub fused: bool,
}

impl Default for SgdOptions {
    fn default() -> Self {
        SgdOptions {
            lr: 1e-3,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
            maximize: false,
            fused: true,
        }
    }
}

impl GroupOptions for SgdOptions {
    fn lr(&self) -> f64 {
        self.lr
    }
    fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }
    fn momentum(&self) -> Option<f64> {
        Some(self.momentum)
    }
    fn set_momentum(&mut self, momentum: f64) -> Result<()> {
        check_min("SGD", "momentum", momentum, 0.0)?;
        self.momentum = momentum;
        Ok(())
    }
    fn validate(&self) -> Result<()> {
        check_min("SGD", "learning rate", self.lr, 0.0)?;
        check_min("SGD", "momentum", self.momentum, 0.0)?;
        check_min("SGD", "weight_decay", self.weight_decay, 0.0)?;
        if !self.dampening.is_finite() {
            return Err(Error::arg("SGD", format!("invalid dampening value: {}", self.dampening)));
        }
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return Err(Error::arg("SGD", "Nesterov momentum requires a momentum and zero dampening"));
        }
        Ok(())
    }
    fn to_map(&self) -> BTreeMap<String, Hyper> {
        BTreeMap::from([
            ("lr".into(), Hyper::Float(self.lr)),
            ("momentum".into(), Hyper::Float(self.momentum)),
            ("dampening".into(), Hyper::Float(self.dampening)),
            ("weight_decay".into(), Hyper::Float(self.weight_decay)),
            ("nesterov".into(), Hyper::Bool(self.nesterov)),
            ("maximize".into(), Hyper::Bool(self.maximize)),
            ("fused".into(), Hyper::Bool(self.fused)),
        ])
    }
    fn from_map(m: &BTreeMap<String, Hyper>) -> Result<Self> {
        Ok(SgdOptions {
            lr: get_f(m, "lr")?,
            momentum: get_f(m, "momentum")?,
            dampening: get_f(m, "dampening")?,
            weight_decay: get_f(m, "weight_decay")?,
            nesterov: get_b(m, "nesterov")?,
            maximize: get_b(m, "maximize")?,
            fused: get_b(m, "fused")?,
        })
    }
}

/// Per-parameter SGD state.
#[derive(Clone, Debug)]
pub struct SgdState {
    /// The momentum buffer (created from the first gradient when `momentum > 0`).
    pub momentum_buffer: Option<Tensor>,
}

/// The SGD update rule.
#[derive(Clone, Copy, Debug)]
pub struct SgdRule;

/// Stochastic gradient descent (PyTorch's `torch.optim.SGD`):
///
/// ```text
/// g = ±grad + weight_decay * p
/// b = g (first step) or momentum * b + (1 - dampening) * g
/// g = g + momentum * b (nesterov) or b
/// p = p - lr * g
/// ```
pub type Sgd = Optim<SgdRule>;

impl Rule for SgdRule {
    type Options = SgdOptions;
    type State = SgdState;
    const NAME: &'static str = "sgd";

    fn update(o: &SgdOptions, param: &Tensor, grad: &Tensor, state: &mut Option<SgdState>) -> Result<()> {
        let st = state.get_or_insert(SgdState { momentum_buffer: None });
        if o.fused {
            let cfg = |first_step| SgdConfig {
                lr: o.lr,
                momentum: o.momentum,
                dampening: o.dampening,
                weight_decay: o.weight_decay,
                nesterov: o.nesterov,
                maximize: o.maximize,
                first_step,
            };
            if o.momentum == 0.0 {
                if optimizer_step(&OptimizerUpdate::Sgd(cfg(false)), param, grad, &[])? {
                    return Ok(());
                }
            } else {
                let (buf, first) = match &st.momentum_buffer {
                    Some(b) => (b.clone(), false),
                    None => (param.zeros_like()?, true),
                };
                if optimizer_step(&OptimizerUpdate::Sgd(cfg(first)), param, grad, &[&buf])? {
                    st.momentum_buffer = Some(buf);
                    return Ok(());
                }
            }
        }
        let mut d = if o.maximize { grad.neg()? } else { grad.clone() };
        if o.weight_decay != 0.0 {
            d = d.add(&param.mul_scalar(o.weight_decay)?)?;
        }
        if o.momentum != 0.0 {
            let buf = match &st.momentum_buffer {
                Some(b) => {
                    b.mul_scalar_(o.momentum)?;
                    b.add_(&d.mul_scalar(1.0 - o.dampening)?)?;
                    b.clone()
                }
                None => {
                    let b = d.to_dtype(param.dtype())?.copy()?;
                    st.momentum_buffer = Some(b.clone());
                    b
                }
            };
            d = if o.nesterov { d.add(&buf.mul_scalar(o.momentum)?)? } else { buf };
        }
        param.sub_(&d.mul_scalar(o.lr)?)
    }

    fn save_state(s: &SgdState) -> Result<ParamState> {
        let mut m = ParamState::new();
        if let Some(b) = &s.momentum_buffer {
            m.insert("momentum_buffer".into(), save_buffer(b)?);
        }
        Ok(m)
    }

    fn load_state(saved: &ParamState, param: &Tensor) -> Result<SgdState> {
        Ok(SgdState { momentum_buffer: load_opt_buffer(saved, "momentum_buffer", param)? })
    }
}
