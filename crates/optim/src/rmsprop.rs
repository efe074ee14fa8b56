//! RMSprop (PyTorch's `torch.optim.RMSprop`), plain or centered, with momentum and
//! weight decay.

use std::collections::BTreeMap;

use tensor_core::{Result, Tensor};

use crate::optimizer::{check_min, GroupOptions, Optim, Rule};
use crate::state::{
    get_b, get_f, load_buffer, load_opt_buffer, load_scalar, save_buffer, Hyper, ParamState, StateValue,
};
use tensor_core::fused::{optimizer_step, OptimizerUpdate, RmsPropConfig};

/// Options of an [`RmsProp`] group. `Default` gives PyTorch's defaults (`lr = 1e-2`,
/// `alpha = 0.99`, `eps = 1e-8`).
#[derive(Clone, Debug, PartialEq)]
pub struct RmsPropOptions {
    /// Learning rate.
    pub lr: f64,
    /// Smoothing constant of the squared-gradient average.
    pub alpha: f64,
    /// Added to the denominator for numerical stability.
    pub eps: f64,
    /// L2 penalty added to the gradient.
    pub weight_decay: f64,
    /// Momentum factor (0 disables the buffer).
    pub momentum: f64,
    /// Normalise by an estimate of the gradient's variance instead of its second moment.
    pub centered: bool,
    /// Maximize the objective instead of minimizing it.
    pub maximize: bool,
    /// Use the fused single-loop kernel where one exists (contiguous f32/f64 CPU
    /// tensors); `false` forces the tensor-op path.
    pub fused: bool,
}

impl Default for RmsPropOptions {
    fn default() -> Self {
        RmsPropOptions {
            lr: 1e-2,
            alpha: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
            momentum: 0.0,
            centered: false,
            maximize: false,
            fused: true,
        }
    }
}

impl GroupOptions for RmsPropOptions {
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
        check_min("RMSprop", "momentum", momentum, 0.0)?;
        self.momentum = momentum;
        Ok(())
    }
    fn validate(&self) -> Result<()> {
        check_min("RMSprop", "learning rate", self.lr, 0.0)?;
        check_min("RMSprop", "epsilon", self.eps, 0.0)?;
        check_min("RMSprop", "momentum", self.momentum, 0.0)?;
        check_min("RMSprop", "weight_decay", self.weight_decay, 0.0)?;
        check_min("RMSprop", "alpha", self.alpha, 0.0)
    }
    fn to_map(&self) -> BTreeMap<String, Hyper> {
        BTreeMap::from([
            ("lr".into(), Hyper::Float(self.lr)),
            ("alpha".into(), Hyper::Float(self.alpha)),
            ("eps".into(), Hyper::Float(self.eps)),
            ("weight_decay".into(), Hyper::Float(self.weight_decay)),
            ("momentum".into(), Hyper::Float(self.momentum)),
            ("centered".into(), Hyper::Bool(self.centered)),
            ("maximize".into(), Hyper::Bool(self.maximize)),
            ("fused".into(), Hyper::Bool(self.fused)),
        ])
    }
    fn from_map(m: &BTreeMap<String, Hyper>) -> Result<Self> {
        Ok(RmsPropOptions {
            lr: get_f(m, "lr")?,
            alpha: get_f(m, "alpha")?,
            eps: get_f(m, "eps")?,
            weight_decay: get_f(m, "weight_decay")?,
            momentum: get_f(m, "momentum")?,
            centered: get_b(m, "centered")?,
            maximize: get_b(m, "maximize")?,
            fused: get_b(m, "fused")?,
        })
    }
}

/// Per-parameter RMSprop state.
#[derive(Clone, Debug)]
pub struct RmsPropState {
    /// Number of updates so far.
    pub step: f64,
    /// Running average of squared gradients.
    pub square_avg: Tensor,
    /// Momentum buffer (when `momentum > 0`).
    pub momentum_buffer: Option<Tensor>,
    /// Running average of gradients (centered only).
    pub grad_avg: Option<Tensor>,
}

/// The RMSprop update rule.
#[derive(Clone, Copy, Debug)]
pub struct RmsPropRule;

/// RMSprop (PyTorch's `torch.optim.RMSprop`):
///
/// ```text
/// g = ±grad + weight_decay * p
/// s = alpha * s + (1 - alpha) * g²
/// a = lerp(a, g, 1 - alpha); d = sqrt(s - a²) + eps (centered) or sqrt(s) + eps
/// b = momentum * b + g / d; p -= lr * b (momentum) or p -= lr * g / d
/// ```
pub type RmsProp = Optim<RmsPropRule>;

impl Rule for RmsPropRule {
    type Options = RmsPropOptions;
    type State = RmsPropState;
    const NAME: &'static str = "rmsprop";

    fn update(o: &RmsPropOptions, param: &Tensor, grad: &Tensor, state: &mut Option<RmsPropState>) -> Result<()> {
        let st = match state {
            Some(s) => s,
            None => state.insert(RmsPropState {
                step: 0.0,
                square_avg: param.zeros_like()?,
                momentum_buffer: None,
                grad_avg: None,
            }),
        };
        if o.momentum > 0.0 && st.momentum_buffer.is_none() {
            st.momentum_buffer = Some(param.zeros_like()?);
        }
        if o.centered && st.grad_avg.is_none() {
            st.grad_avg = Some(param.zeros_like()?);
        }
        st.step += 1.0;
        if o.fused {
            let mut bufs = vec![&st.square_avg];
            if o.centered {
                bufs.extend(st.grad_avg.as_ref());
            }
            if o.momentum > 0.0 {
                bufs.extend(st.momentum_buffer.as_ref());
            }
            let cfg = RmsPropConfig {
                lr: o.lr,
                alpha: o.alpha,
                eps: o.eps,
                weight_decay: o.weight_decay,
                momentum: o.momentum,
                centered: o.centered,
                maximize: o.maximize,
            };
            if optimizer_step(&OptimizerUpdate::RmsProp(cfg), param, grad, &bufs)? {
                return Ok(());
            }
        }
        let mut g = if o.maximize { grad.neg()? } else { grad.clone() };
        if o.weight_decay != 0.0 {
            g = g.add(&param.mul_scalar(o.weight_decay)?)?;
        }
        st.square_avg.mul_scalar_(o.alpha)?;
        st.square_avg.add_(&g.mul_scalar(1.0 - o.alpha)?.mul(&g)?)?;
        let avg = match (&st.grad_avg, o.centered) {
            (Some(ga), true) => {
                let w = 1.0 - o.alpha;
                if w < 0.5 {
                    ga.add_(&g.sub(ga)?.mul_scalar(w)?)?;
                } else {
                    let d = g.sub(ga)?.mul_scalar(1.0 - w)?;
                    ga.copy_(&g.sub(&d)?)?;
                }
                st.square_avg.sub(&ga.mul(ga)?)?.sqrt()?
            }
            _ => st.square_avg.sqrt()?,
        }
        .add_scalar(o.eps)?;
        match (&st.momentum_buffer, o.momentum > 0.0) {
            (Some(b), true) => {
                b.mul_scalar_(o.momentum)?;
                b.add_(&g.div(&avg)?)?;
                param.add_(&b.mul_scalar(-o.lr)?)
            }
            _ => param.add_(&g.div(&avg)?.mul_scalar(-o.lr)?),
        }
    }

    fn save_state(s: &RmsPropState) -> Result<ParamState> {
        let mut m = ParamState::new();
        m.insert("step".into(), StateValue::Scalar(s.step));
        m.insert("square_avg".into(), save_buffer(&s.square_avg)?);
        if let Some(b) = &s.momentum_buffer {
            m.insert("momentum_buffer".into(), save_buffer(b)?);
        }
        if let Some(b) = &s.grad_avg {
            m.insert("grad_avg".into(), save_buffer(b)?);
        }
        Ok(m)
    }

    fn load_state(saved: &ParamState, param: &Tensor) -> Result<RmsPropState> {
        Ok(RmsPropState {
            step: load_scalar(saved, "step")?,
            square_avg: load_buffer(saved, "square_avg", param)?,
            momentum_buffer: load_opt_buffer(saved, "momentum_buffer", param)?,
            grad_avg: load_opt_buffer(saved, "grad_avg", param)?,
        })
    }
}
