//! Adagrad (PyTorch's `torch.optim.Adagrad`) with learning-rate decay, weight decay and
//! an initial accumulator value.

use std::collections::BTreeMap;

use tensor_core::{Error, Result, Tensor};

use crate::optimizer::{check_min, GroupOptions, Optim, Rule};
use crate::state::{get_b, get_f, load_buffer, load_scalar, save_buffer, Hyper, ParamState, StateValue};
use tensor_core::fused::{optimizer_step, AdagradConfig, OptimizerUpdate};

/// Options of an [`Adagrad`] group. `Default` gives PyTorch's defaults (`lr = 1e-2`,
/// `eps = 1e-10`, everything else 0).
#[derive(Clone, Debug, PartialEq)]
pub struct AdagradOptions {
    /// Learning rate.
    pub lr: f64,
    /// Learning-rate decay: step `t` uses `lr / (1 + (t - 1) * lr_decay)`.
    pub lr_decay: f64,
    /// L2 penalty added to the gradient.
    pub weight_decay: f64,
    /// Starting value of the sum of squared gradients.
    pub initial_accumulator_value: f64,
    /// Added to the denominator for numerical stability.
    pub eps: f64,
    /// Maximize the objective instead of minimizing it.
    pub maximize: bool,
    /// Use the fused single-loop kernel where one exists (contiguous f32/f64 CPU
    /// tensors); `false` forces the tensor-op path.
    pub fused: bool,
}

impl Default for AdagradOptions {
    fn default() -> Self {
        AdagradOptions {
            lr: 1e-2,
            lr_decay: 0.0,
            weight_decay: 0.0,
            initial_accumulator_value: 0.0,
            eps: 1e-10,
            maximize: false,
            fused: true,
        }
    }
}

impl GroupOptions for AdagradOptions {
    fn lr(&self) -> f64 {
        self.lr
    }
    fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }
    fn validate(&self) -> Result<()> {
        check_min("Adagrad", "learning rate", self.lr, 0.0)?;
        check_min("Adagrad", "lr_decay", self.lr_decay, 0.0)?;
        check_min("Adagrad", "weight_decay", self.weight_decay, 0.0)?;
        check_min("Adagrad", "initial_accumulator_value", self.initial_accumulator_value, 0.0)?;
        check_min("Adagrad", "epsilon", self.eps, 0.0)
    }
    fn to_map(&self) -> BTreeMap<String, Hyper> {
        BTreeMap::from([
            ("lr".into(), Hyper::Float(self.lr)),
            ("lr_decay".into(), Hyper::Float(self.lr_decay)),
            ("weight_decay".into(), Hyper::Float(self.weight_decay)),
            ("initial_accumulator_value".into(), Hyper::Float(self.initial_accumulator_value)),
            ("eps".into(), Hyper::Float(self.eps)),
            ("maximize".into(), Hyper::Bool(self.maximize)),
            ("fused".into(), Hyper::Bool(self.fused)),
        ])
    }
    fn from_map(m: &BTreeMap<String, Hyper>) -> Result<Self> {
        Ok(AdagradOptions {
            lr: get_f(m, "lr")?,
            lr_decay: get_f(m, "lr_decay")?,
            weight_decay: get_f(m, "weight_decay")?,
            initial_accumulator_value: get_f(m, "initial_accumulator_value")?,
            eps: get_f(m, "eps")?,
            maximize: get_b(m, "maximize")?,
            fused: get_b(m, "fused")?,
        })
    }
}

/// Per-parameter Adagrad state.
#[derive(Clone, Debug)]
pub struct AdagradState {
    /// Number of updates so far.
    pub step: f64,
    /// Sum of squared gradients (starting at `initial_accumulator_value`).
    pub sum: Tensor,
}

/// The Adagrad update rule.
#[derive(Clone, Copy, Debug)]
pub struct AdagradRule;

/// Adagrad (PyTorch's `torch.optim.Adagrad`):
///
/// ```text
/// g = ±grad + weight_decay * p
/// s = s + g²
/// p = p - lr / (1 + (t - 1) * lr_decay) * g / (sqrt(s) + eps)
/// ```
pub type Adagrad = Optim<AdagradRule>;

impl Rule for AdagradRule {
    type Options = AdagradOptions;
    type State = AdagradState;
    const NAME: &'static str = "adagrad";

    fn update(o: &AdagradOptions, param: &Tensor, grad: &Tensor, state: &mut Option<AdagradState>) -> Result<()> {
        let st = match state {
            Some(s) => s,
            None => state.insert(AdagradState { step: 0.0, sum: param.full_like(o.initial_accumulator_value)? }),
        };
        st.step += 1.0;
        let clr = o.lr / (1.0 + (st.step - 1.0) * o.lr_decay);
        if o.fused {
            let cfg = AdagradConfig { lr: clr, weight_decay: o.weight_decay, eps: o.eps, maximize: o.maximize };
            if optimizer_step(&OptimizerUpdate::Adagrad(cfg), param, grad, &[&st.sum])? {
                return Ok(());
            }
        }
        let mut g = if o.maximize { grad.neg()? } else { grad.clone() };
        if o.weight_decay != 0.0 {
            g = g.add(&param.mul_scalar(o.weight_decay)?)?;
        }
        st.sum.add_(&g.mul(&g)?)?;
        let std = st.sum.sqrt()?.add_scalar(o.eps)?;
        param.add_(&g.div(&std)?.mul_scalar(-clr)?)
    }

    fn save_state(s: &AdagradState) -> Result<ParamState> {
        let mut m = ParamState::new();
        m.insert("step".into(), StateValue::Scalar(s.step));
        m.insert("sum".into(), save_buffer(&s.sum)?);
        Ok(m)
    }

    fn load_state(saved: &ParamState, param: &Tensor) -> Result<AdagradState> {
        let step = load_scalar(saved, "step")?;
        if !(step >= 0.0) {
            return Err(Error::arg("load_state_dict", format!("invalid Adagrad step {step}")));
        }
        Ok(AdagradState { step, sum: load_buffer(saved, "sum", param)? })
    }
}
