//! Adam and AdamW (PyTorch's `torch.optim.Adam` and `torch.optim.AdamW`), with
//! AMSGrad, L2 or decoupled weight decay, and `maximize`.

use std::collections::BTreeMap;

use tensor_core::{Result, Tensor};

use crate::optimizer::{check_min, check_unit, GroupOptions, Optim, Rule};
use crate::state::{
    get_b, get_f, get_pair, load_buffer, load_opt_buffer, load_scalar, save_buffer, Hyper, ParamState, StateValue,
};
use tensor_core::fused::{optimizer_step, AdamConfig, OptimizerUpdate};

macro_rules! adam_options {
    ($(#[$m:meta])* $name:ident, $op:literal, $wd:expr) => {
        $(#[$m])*
        #[derive(Clone, Debug, PartialEq)]
        pub struct $name {
            /// Learning rate.
            pub lr: f64,
            /// Decay rates of the first and second moment estimates.
            pub betas: (f64, f64),
            /// Added to the denominator for numerical stability.
            pub eps: f64,
            /// Weight decay.
            pub weight_decay: f64,
            /// Use the AMSGrad variant (the maximum of past second moments).
            pub amsgrad: bool,
            /// Maximize the objective instead of minimizing it.
            pub maximize: bool,
            /// Use a fused single-pass kernel where one exists: contiguous f32/f64 CPU
            /// tensors, or the device's fused update ([`tensor_core::fused::optimizer_step`]; CUDA: every float dtype,
            /// without amsgrad). `false` forces the tensor-op path. The same values up
            /// to rounding (bit-identical on the CPU).
            pub fused: bool,
        }

        impl Default for $name {
            fn default() -> Self {
                $name {
                    lr: 1e-3,
                    betas: (0.9, 0.999),
                    eps: 1e-8,
                    weight_decay: $wd,
                    amsgrad: false,
                    maximize: false,
                    fused: true,
                }
            }
        }

        impl GroupOptions for $name {
            fn lr(&self) -> f64 {
                self.lr
            }
            fn set_lr(&mut self, lr: f64) {
                self.lr = lr;
            }
            /// `betas.0`.
            fn momentum(&self) -> Option<f64> {
                Some(self.betas.0)
            }
            /// Sets `betas.0`.
            fn set_momentum(&mut self, momentum: f64) -> Result<()> {
                check_unit($op, "beta parameter at index 0", momentum)?;
                self.betas.0 = momentum;
                Ok(())
            }
            fn validate(&self) -> Result<()> {
                check_min($op, "learning rate", self.lr, 0.0)?;
                check_min($op, "epsilon", self.eps, 0.0)?;
                check_unit($op, "beta parameter at index 0", self.betas.0)?;
                check_unit($op, "beta parameter at index 1", self.betas.1)?;
                check_min($op, "weight_decay", self.weight_decay, 0.0)
            }
            fn to_map(&self) -> BTreeMap<String, Hyper> {
                BTreeMap::from([
                    ("lr".into(), Hyper::Float(self.lr)),
                    ("betas".into(), Hyper::Pair(self.betas.0, self.betas.1)),
                    ("eps".into(), Hyper::Float(self.eps)),
                    ("weight_decay".into(), Hyper::Float(self.weight_decay)),
                    ("amsgrad".into(), Hyper::Bool(self.amsgrad)),
                    ("maximize".into(), Hyper::Bool(self.maximize)),
                    ("fused".into(), Hyper::Bool(self.fused)),
                ])
            }
            fn from_map(m: &BTreeMap<String, Hyper>) -> Result<Self> {
                Ok($name {
                    lr: get_f(m, "lr")?,
                    betas: get_pair(m, "betas")?,
                    eps: get_f(m, "eps")?,
                    weight_decay: get_f(m, "weight_decay")?,
                    amsgrad: get_b(m, "amsgrad")?,
                    maximize: get_b(m, "maximize")?,
                    fused: get_b(m, "fused")?,
                })
            }
        }

        impl $name {
            fn common(&self) -> Common {
                Common {
                    lr: self.lr,
                    betas: self.betas,
                    eps: self.eps,
                    weight_decay: self.weight_decay,
                    amsgrad: self.amsgrad,
                    maximize: self.maximize,
                    fused: self.fused,
                }
            }
        }
    };
}

adam_options! {
    /// Options of an [`Adam`] group. `Default` gives PyTorch's defaults (`lr = 1e-3`,
    /// `betas = (0.9, 0.999)`, `eps = 1e-8`, no weight decay); weight decay here is an
    /// L2 penalty added to the gradient.
    AdamOptions, "Adam", 0.0
}

adam_options! {
    /// Options of an [`AdamW`] group. `Default` gives PyTorch's defaults (as Adam, but
    /// `weight_decay = 1e-2`), decoupled: `p *= 1 - lr * weight_decay` before the step.
    AdamWOptions, "AdamW", 1e-2
}

struct Common {
    lr: f64,
    betas: (f64, f64),
    eps: f64,
    weight_decay: f64,
    amsgrad: bool,
    maximize: bool,
    fused: bool,
}

/// Per-parameter Adam state.
#[derive(Clone, Debug)]
pub struct AdamState {
    /// Number of updates so far.
    pub step: f64,
    /// First moment estimate.
    pub exp_avg: Tensor,
    /// Second moment estimate.
    pub exp_avg_sq: Tensor,
    /// Running maximum of `exp_avg_sq` (AMSGrad only).
    pub max_exp_avg_sq: Option<Tensor>,
}

/// The Adam update rule.
#[derive(Clone, Copy, Debug)]
pub struct AdamRule;

/// The AdamW update rule (Adam with decoupled weight decay).
#[derive(Clone, Copy, Debug)]
pub struct AdamWRule;

/// Adam (PyTorch's `torch.optim.Adam`):
///
/// ```text
/// g = ±grad + weight_decay * p
/// m = lerp(m, g, 1 - beta1);  v = beta2 * v + (1 - beta2) * g²
/// v̂ = max(v̂, v) (amsgrad) or v
/// p = p - lr / (1 - beta1^t) * m / (sqrt(v̂) / sqrt(1 - beta2^t) + eps)
/// ```
///
/// ```
/// use autograd::Var;
/// use optim::{Adam, AdamOptions, Optimizer};
/// use tensor_core::Tensor;
///
/// let w = Var::param(Tensor::new(&[1.0f32, -1.0]))?;
/// let mut opt = Adam::new(vec![w.clone()], AdamOptions { lr: 0.1, ..Default::default() })?;
/// opt.zero_grad();
/// (&w * &w)?.sum(&[], false)?.backward()?;
/// opt.step()?;
/// // Adam's first step moves each weight by lr, whatever the gradient's size.
/// let v = w.tensor().to_vec::<f32>()?;
/// assert!((v[0] - 0.9).abs() < 1e-6 && (v[1] + 0.9).abs() < 1e-6);
/// # Ok::<(), tensor_core::Error>(())
/// ```
pub type Adam = Optim<AdamRule>;

/// AdamW (PyTorch's `torch.optim.AdamW`): Adam with decoupled weight decay,
/// `p *= 1 - lr * weight_decay` before the Adam step.
pub type AdamW = Optim<AdamWRule>;

fn adam_update(
    o: &Common,
    decoupled: bool,
    param: &Tensor,
    grad: &Tensor,
    state: &mut Option<AdamState>,
) -> Result<()> {
    let st = match state {
        Some(s) => s,
        None => state.insert(AdamState {
            step: 0.0,
            exp_avg: param.zeros_like()?,
            exp_avg_sq: param.zeros_like()?,
            max_exp_avg_sq: if o.amsgrad { Some(param.zeros_like()?) } else { None },
        }),
    };
    if o.amsgrad && st.max_exp_avg_sq.is_none() {
        st.max_exp_avg_sq = Some(param.zeros_like()?);
    }
    st.step += 1.0;
    if o.fused {
        let cfg = AdamConfig {
            lr: o.lr,
            beta1: o.betas.0,
            beta2: o.betas.1,
            eps: o.eps,
            weight_decay: o.weight_decay,
            decoupled,
            maximize: o.maximize,
            amsgrad: o.amsgrad,
            step: st.step as u64,
        };
        let mut bufs = vec![&st.exp_avg, &st.exp_avg_sq];
        bufs.extend(st.max_exp_avg_sq.as_ref().filter(|_| o.amsgrad));
        if optimizer_step(&OptimizerUpdate::Adam(cfg), param, grad, &bufs)? {
            return Ok(());
        }
    }
    let (b1, b2) = o.betas;
    let mut g = if o.maximize { grad.neg()? } else { grad.clone() };
    if o.weight_decay != 0.0 {
        if decoupled {
            param.mul_scalar_(1.0 - o.lr * o.weight_decay)?;
        } else {
            g = g.add(&param.mul_scalar(o.weight_decay)?)?;
        }
    }
    // lerp(m, g, 1 - b1) in PyTorch's form for a weight below one half.
    let w = 1.0 - b1;
    if w < 0.5 {
        st.exp_avg.add_(&g.sub(&st.exp_avg)?.mul_scalar(w)?)?;
    } else {
        let d = g.sub(&st.exp_avg)?.mul_scalar(1.0 - w)?;
        st.exp_avg.copy_(&g.sub(&d)?)?;
    }
    st.exp_avg_sq.mul_scalar_(b2)?;
    st.exp_avg_sq.add_(&g.mul_scalar(1.0 - b2)?.mul(&g)?)?;
    let bc1 = 1.0 - b1.powf(st.step);
    let bc2_sqrt = (1.0 - b2.powf(st.step)).sqrt();
    let vhat = match &st.max_exp_avg_sq {
        Some(vm) if o.amsgrad => {
            vm.copy_(&vm.maximum(&st.exp_avg_sq)?)?;
            vm.clone()
        }
        _ => st.exp_avg_sq.clone(),
    };
    let denom = vhat.sqrt()?.div_scalar(bc2_sqrt)?.add_scalar(o.eps)?;
    param.add_(&st.exp_avg.div(&denom)?.mul_scalar(-(o.lr / bc1))?)
}

fn save(s: &AdamState) -> Result<ParamState> {
    let mut m = ParamState::new();
    m.insert("step".into(), StateValue::Scalar(s.step));
    m.insert("exp_avg".into(), save_buffer(&s.exp_avg)?);
    m.insert("exp_avg_sq".into(), save_buffer(&s.exp_avg_sq)?);
    if let Some(v) = &s.max_exp_avg_sq {
        m.insert("max_exp_avg_sq".into(), save_buffer(v)?);
    }
    Ok(m)
}

fn load(saved: &ParamState, param: &Tensor) -> Result<AdamState> {
    Ok(AdamState {
        step: load_scalar(saved, "step")?,
        exp_avg: load_buffer(saved, "exp_avg", param)?,
        exp_avg_sq: load_buffer(saved, "exp_avg_sq", param)?,
        max_exp_avg_sq: load_opt_buffer(saved, "max_exp_avg_sq", param)?,
    })
}

impl Rule for AdamRule {
    type Options = AdamOptions;
    type State = AdamState;
    const NAME: &'static str = "adam";

    fn update(o: &AdamOptions, param: &Tensor, grad: &Tensor, state: &mut Option<AdamState>) -> Result<()> {
        adam_update(&o.common(), false, param, grad, state)
    }
    fn save_state(s: &AdamState) -> Result<ParamState> {
        save(s)
    }
    fn load_state(saved: &ParamState, param: &Tensor) -> Result<AdamState> {
        load(saved, param)
    }
}

impl Rule for AdamWRule {
    type Options = AdamWOptions;
    type State = AdamState;
    const NAME: &'static str = "adamw";

    fn update(o: &AdamWOptions, param: &Tensor, grad: &Tensor, state: &mut Option<AdamState>) -> Result<()> {
        adam_update(&o.common(), true, param, grad, state)
    }
    fn save_state(s: &AdamState) -> Result<ParamState> {
        save(s)
    }
    fn load_state(saved: &ParamState, param: &Tensor) -> Result<AdamState> {
        load(saved, param)
    }
}
