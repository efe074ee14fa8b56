//! Optimizers, learning-rate schedulers and gradient clipping, with PyTorch's names,
//! defaults and update formulas (`torch.optim`, `torch.optim.lr_scheduler`,
//! `torch.nn.utils.clip_grad_norm_`).
//!
//! - [`Optimizer`]: `step()`, `zero_grad()` (sets gradients to `None`), per-group
//!   learning rates and momentum, `state_dict()` / `load_state_dict()` for exact
//!   resuming (and [`OptimizerState::save`] / [`OptimizerState::load`] for files).
//! - [`Sgd`], [`Adam`], [`AdamW`], [`RmsProp`], [`Adagrad`]: each is [`Optim`] with an
//!   update [`Rule`]; parameter groups carry their own options. Updates run in place
//!   under no-grad, with a fused loop on contiguous f32/f64 CPU tensors and tensor ops
//!   everywhere else. State is created lazily on the parameter's device; frozen
//!   parameters and parameters without a gradient are skipped.
//! - Schedulers ([`StepLR`], [`CosineAnnealingLR`], [`OneCycleLR`], ...) are separate
//!   objects that set the optimizer's rates through [`Optimizer::set_lrs`].
//! - [`clip_grad_norm_`] and [`clip_grad_value_`].
//!
//! ```
//! use autograd::Var;
//! use optim::{clip_grad_norm_, CosineAnnealingLR, CosineAnnealingLROptions, LrScheduler, Optimizer, Sgd, SgdOptions};
//! use tensor_core::Tensor;
//!
//! // Minimise (w - 3)^2 with SGD + momentum and a cosine schedule.
//! let w = Var::param(Tensor::new(&[0.0f64]))?;
//! let opts = SgdOptions { lr: 0.1, momentum: 0.5, ..Default::default() };
//! let mut opt = Sgd::new(vec![w.clone()], opts)?;
//! let mut sched = CosineAnnealingLR::new(&mut opt, 100, CosineAnnealingLROptions::default())?;
//! for _ in 0..100 {
//!     opt.zero_grad();
//!     let loss = w.sub_scalar(3.0)?.square()?.sum(&[], false)?;
//!     loss.backward()?;
//!     clip_grad_norm_(&opt.params(), 10.0, 2.0, true)?;
//!     opt.step()?;
//!     sched.step(&mut opt)?;
//! }
//! assert!((w.tensor().to_vec::<f64>()?[0] - 3.0).abs() < 0.05);
//! # Ok::<(), tensor_core::Error>(())
//! ```
#![warn(missing_docs)]
// `!(x >= 0.0)` is used on purpose: it also rejects NaN, which `x < 0.0` would accept.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

mod adagrad;
mod adam;
mod checkpoint;
mod clip;
mod optimizer;
mod rmsprop;
pub mod scheduler;
mod sgd;
mod state;

pub use adagrad::{Adagrad, AdagradOptions, AdagradRule, AdagradState};
pub use adam::{Adam, AdamOptions, AdamRule, AdamState, AdamW, AdamWOptions, AdamWRule};
pub use checkpoint::{sidecar, Checkpoint};
pub use clip::{clip_grad_norm_, clip_grad_value_};
pub use optimizer::{GroupOptions, Optim, Optimizer, ParamGroup, Rule};
pub use rmsprop::{RmsProp, RmsPropOptions, RmsPropRule, RmsPropState};
pub use scheduler::{
    AnnealStrategy, ChainedScheduler, ConstantLR, ConstantLROptions, CosineAnnealingLR, CosineAnnealingLROptions,
    CosineAnnealingWarmRestarts, CosineAnnealingWarmRestartsOptions, CyclicLR, CyclicMode, CyclicOptions,
    ExponentialLR, LambdaLR, LinearLR, LinearLROptions, LrScheduler, MultiStepLR, MultiStepLROptions, MultiplicativeLR,
    OneCycleLR, OneCycleOptions, PlateauMode, PolynomialLR, PolynomialLROptions, ReduceLROnPlateau,
    ReduceLROnPlateauOptions, SchedulerState, SequentialLR, StepLR, StepLROptions, ThresholdMode,
};
pub use sgd::{Sgd, SgdOptions, SgdRule, SgdState};
pub use state::{GroupState, Hyper, OptimizerState, ParamState, StateValue};
