//! The [`Optimizer`] trait, parameter groups and [`Optim`], the generic optimizer that
//! every concrete one ([`crate::Sgd`], [`crate::Adam`], ...) is built on.

use std::collections::BTreeMap;
use std::fmt;

use autograd::Var;
use tensor_core::{Error, Result, Tensor};

use crate::state::{GroupState, Hyper, OptimizerState, ParamState};

/// What every optimizer offers: a parameter update, gradient clearing, and access to
/// the per-group hyperparameters that learning-rate schedulers change.
///
/// Object safe, so schedulers take `&mut dyn Optimizer`.
pub trait Optimizer {
    /// Updates every parameter that requires grad and has a gradient, in place.
    fn step(&mut self) -> Result<()>;

    /// Every parameter, group by group.
    fn params(&self) -> Vec<Var>;

    /// Sets every parameter's gradient to `None` (PyTorch's default
    /// `zero_grad(set_to_none=True)`).
    fn zero_grad(&mut self) {
        for p in self.params() {
            p.zero_grad();
        }
    }

    /// The name of the algorithm (`"sgd"`, `"adam"`, ...).
    fn name(&self) -> &'static str;

    /// Number of parameter groups (at least one).
    fn num_param_groups(&self) -> usize;

    /// The learning rate of every group.
    fn lrs(&self) -> Vec<f64>;

    /// Sets the learning rate of every group; `lrs` has one value per group.
    fn set_lrs(&mut self, lrs: &[f64]) -> Result<()>;

    /// The momentum-like coefficient of every group: `momentum` for SGD and RMSprop,
    /// `betas.0` for Adam and AdamW, `None` when the algorithm has none (Adagrad).
    fn momentums(&self) -> Vec<Option<f64>>;

    /// Sets the momentum-like coefficient of every group (see
    /// [`Optimizer::momentums`]); an error for algorithms without one.
    fn set_momentums(&mut self, momentums: &[f64]) -> Result<()>;

    /// The `initial_lr` a scheduler recorded in each group (`None` until one did).
    fn initial_lrs(&self) -> Vec<Option<f64>>;

    /// Records each group's `initial_lr` (schedulers do this when they are created).
    fn set_initial_lrs(&mut self, lrs: &[f64]) -> Result<()>;

    /// A copy of the optimizer's state (per-parameter buffers and the group options)
    /// for checkpointing.
    fn state_dict(&self) -> Result<OptimizerState>;

    /// Restores a state from [`Optimizer::state_dict`]: the groups must hold the same
    /// numbers of parameters with the same shapes. Group options (learning rates
    /// included) are taken from `state`.
    fn load_state_dict(&mut self, state: &OptimizerState) -> Result<()>;

    /// The learning rate of the first group.
    fn lr(&self) -> f64 {
        self.lrs().first().copied().unwrap_or(0.0)
    }

    /// Sets the learning rate of every group to `lr`.
    fn set_lr(&mut self, lr: f64) -> Result<()> {
        let n = self.num_param_groups();
        self.set_lrs(&vec![lr; n])
    }
}

/// Options of one parameter group of some algorithm (learning rate, weight decay, ...).
pub trait GroupOptions: Clone + fmt::Debug {
    /// The learning rate.
    fn lr(&self) -> f64;
    /// Sets the learning rate.
    fn set_lr(&mut self, lr: f64);
    /// The momentum-like coefficient, if the algorithm has one.
    fn momentum(&self) -> Option<f64> {
        None
    }
    /// Sets the momentum-like coefficient; the default says the algorithm has none.
    fn set_momentum(&mut self, momentum: f64) -> Result<()> {
        let _ = momentum;
        Err(Error::arg("set_momentum", "this optimizer has no momentum or betas to set"))
    }
    /// Checks the values (learning rate not negative, betas in [0, 1), ...).
    fn validate(&self) -> Result<()>;
    /// The options as named values (PyTorch's `param_groups` keys).
    fn to_map(&self) -> BTreeMap<String, Hyper>;
    /// Reads options written by [`GroupOptions::to_map`].
    fn from_map(map: &BTreeMap<String, Hyper>) -> Result<Self>;
}

/// How an algorithm updates one parameter: the piece a new optimizer implements to
/// get groups, schedulers, checkpointing and the [`Optimizer`] trait from [`Optim`].
pub trait Rule {
    /// Per-group options.
    type Options: GroupOptions;
    /// Per-parameter state (momentum buffers, moments, step count).
    type State: Clone;
    /// The algorithm's name (`"adam"`).
    const NAME: &'static str;

    /// Updates `param` in place from `grad`, creating `state` on the first call.
    fn update(options: &Self::Options, param: &Tensor, grad: &Tensor, state: &mut Option<Self::State>) -> Result<()>;

    /// The state as named tensors and numbers (copies, so later steps don't change
    /// the snapshot).
    fn save_state(state: &Self::State) -> Result<ParamState>;

    /// Rebuilds a state saved by [`Rule::save_state`] for `param` (tensors are copied to
    /// the parameter's device and dtype and their shapes checked).
    fn load_state(saved: &ParamState, param: &Tensor) -> Result<Self::State>;
}

/// A set of parameters sharing options (PyTorch's `param_groups` entry).
#[derive(Clone)]
pub struct ParamGroup<O> {
    /// The parameters.
    pub params: Vec<Var>,
    /// Their options.
    pub options: O,
    /// The learning rate a scheduler started from (PyTorch's `initial_lr`).
    pub initial_lr: Option<f64>,
}

impl<O: fmt::Debug> fmt::Debug for ParamGroup<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParamGroup")
            .field("params", &self.params.len())
            .field("options", &self.options)
            .field("initial_lr", &self.initial_lr)
            .finish()
    }
}

/// A generic optimizer: parameter groups, lazily created per-parameter state and the
/// update [`Rule`] `R`. The concrete optimizers are aliases: `Sgd = Optim<SgdRule>`.
///
/// ```
/// use autograd::Var;
/// use optim::{Optimizer, Sgd, SgdOptions};
/// use tensor_core::Tensor;
///
/// let w = Var::param(Tensor::new(&[1.0f64, -2.0]))?;
/// let mut opt = Sgd::new(vec![w.clone()], SgdOptions { lr: 0.1, momentum: 0.9, ..Default::default() })?;
/// opt.zero_grad();
/// let loss = (&w * &w)?.sum(&[], false)?;   // d/dw = 2w
/// loss.backward()?;
/// opt.step()?;
/// assert_eq!(w.tensor().to_vec::<f64>()?, vec![0.8, -1.6]);
/// # Ok::<(), tensor_core::Error>(())
/// ```
pub struct Optim<R: Rule> {
    groups: Vec<ParamGroup<R::Options>>,
    state: Vec<Vec<Option<R::State>>>,
}

impl<R: Rule> fmt::Debug for Optim<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(R::NAME).field("param_groups", &self.groups).finish()
    }
}

impl<R: Rule> Optim<R> {
    /// An optimizer with one group holding `params`.
    pub fn new(params: impl IntoIterator<Item = Var>, options: R::Options) -> Result<Self> {
        Self::with_groups(vec![(params.into_iter().collect(), options)])
    }

    /// An optimizer with several groups, each with its own options.
    pub fn with_groups(groups: Vec<(Vec<Var>, R::Options)>) -> Result<Self> {
        if groups.is_empty() {
            return Err(Error::arg(R::NAME, "optimizer got an empty parameter list"));
        }
        let mut opt = Optim { groups: Vec::new(), state: Vec::new() };
        for (params, options) in groups {
            opt.add_param_group(params, options)?;
        }
        Ok(opt)
    }

    /// Adds a group (PyTorch's `add_param_group`): fails on an empty list, invalid
    /// options, or a parameter that already belongs to a group.
    pub fn add_param_group(&mut self, params: Vec<Var>, options: R::Options) -> Result<()> {
        if params.is_empty() {
            return Err(Error::arg(R::NAME, "optimizer got an empty parameter list"));
        }
        options.validate()?;
        for (i, p) in params.iter().enumerate() {
            let p = &p.latest();
            let dup_here = params[..i].iter().any(|q| q.latest().same(p));
            let dup_before = self.groups.iter().any(|g| g.params.iter().any(|q| q.latest().same(p)));
            if dup_here || dup_before {
                return Err(Error::arg(R::NAME, "some parameters appear more than once in the parameter groups"));
            }
            if !p.is_leaf() {
                return Err(Error::arg(R::NAME, "can't optimize a non-leaf Var"));
            }
            if !p.dtype().is_float() {
                return Err(Error::arg(R::NAME, format!("can only optimize float parameters, got {}", p.dtype())));
            }
        }
        self.state.push(vec![None; params.len()]);
        self.groups.push(ParamGroup { params, options, initial_lr: None });
        Ok(())
    }

    /// The parameter groups. A parameter moved since the last step may still be held
    /// as the variable it replaced: [`Var::latest`] gives the current one.
    pub fn param_groups(&self) -> &[ParamGroup<R::Options>] {
        &self.groups
    }

    /// The options of group `group`.
    pub fn options(&self, group: usize) -> Result<&R::Options> {
        self.groups.get(group).map(|g| &g.options).ok_or_else(|| self.bad_group(group))
    }

    /// Replaces the options of group `group` (validated).
    pub fn set_options(&mut self, group: usize, options: R::Options) -> Result<()> {
        options.validate()?;
        let e = self.bad_group(group);
        self.groups.get_mut(group).ok_or(e)?.options = options;
        Ok(())
    }

    /// The state of parameter `index` of group `group` (`None` before its first update).
    pub fn state(&self, group: usize, index: usize) -> Option<&R::State> {
        self.state.get(group)?.get(index)?.as_ref()
    }

    /// Takes up the leaves that replaced this optimizer's parameters
    /// ([`Var::supersede`], which `Module::to_device`/`to_dtype` use), converting
    /// their state to the new device and dtype, as PyTorch's optimizers keep working
    /// after `model.to(...)`. One atomic load per parameter when nothing moved.
    fn follow_moves(&mut self) -> Result<()> {
        for (group, states) in self.groups.iter_mut().zip(self.state.iter_mut()) {
            for (p, st) in group.params.iter_mut().zip(states.iter_mut()) {
                if !p.is_superseded() {
                    continue;
                }
                let new = p.latest();
                if let Some(old) = st.as_ref() {
                    *st = Some(R::load_state(&R::save_state(old)?, new.tensor())?);
                }
                *p = new;
            }
        }
        Ok(())
    }

    fn bad_group(&self, group: usize) -> Error {
        Error::arg(R::NAME, format!("param group {group} out of range: the optimizer has {}", self.groups.len()))
    }

    fn check_len(&self, what: &str, n: usize) -> Result<()> {
        if n != self.groups.len() {
            return Err(Error::arg(
                R::NAME,
                format!("{what}: expected one value per param group ({}), got {n}", self.groups.len()),
            ));
        }
        Ok(())
    }
}

impl<R: Rule> Optimizer for Optim<R> {
    fn step(&mut self) -> Result<()> {
        let _guard = autograd::NoGradGuard::new();
        self.follow_moves()?;
        for (group, states) in self.groups.iter().zip(self.state.iter_mut()) {
            for (p, st) in group.params.iter().zip(states.iter_mut()) {
                if !p.requires_grad() {
                    continue;
                }
                let Some(grad) = p.grad() else { continue };
                R::update(&group.options, p.tensor(), &grad, st)?;
            }
        }
        Ok(())
    }

    fn params(&self) -> Vec<Var> {
        self.groups.iter().flat_map(|g| g.params.iter().map(Var::latest)).collect()
    }

    fn name(&self) -> &'static str {
        R::NAME
    }

    fn num_param_groups(&self) -> usize {
        self.groups.len()
    }

    fn lrs(&self) -> Vec<f64> {
        self.groups.iter().map(|g| g.options.lr()).collect()
    }

    fn set_lrs(&mut self, lrs: &[f64]) -> Result<()> {
        self.check_len("set_lrs", lrs.len())?;
        // Schedulers may legitimately step past their end (PyTorch's linear OneCycleLR
        // then extrapolates below zero), so only NaN is refused here.
        if lrs.iter().any(|l| l.is_nan()) {
            return Err(Error::arg(R::NAME, "invalid learning rate: NaN"));
        }
        for (g, &lr) in self.groups.iter_mut().zip(lrs) {
            g.options.set_lr(lr);
        }
        Ok(())
    }

    fn momentums(&self) -> Vec<Option<f64>> {
        self.groups.iter().map(|g| g.options.momentum()).collect()
    }

    fn set_momentums(&mut self, momentums: &[f64]) -> Result<()> {
        self.check_len("set_momentums", momentums.len())?;
        for (g, &m) in self.groups.iter_mut().zip(momentums) {
            g.options.set_momentum(m)?;
        }
        Ok(())
    }

    fn initial_lrs(&self) -> Vec<Option<f64>> {
        self.groups.iter().map(|g| g.initial_lr).collect()
    }

    fn set_initial_lrs(&mut self, lrs: &[f64]) -> Result<()> {
        self.check_len("set_initial_lrs", lrs.len())?;
        for (g, &lr) in self.groups.iter_mut().zip(lrs) {
            g.initial_lr = Some(lr);
        }
        Ok(())
    }

    fn state_dict(&self) -> Result<OptimizerState> {
        let mut param_groups = Vec::with_capacity(self.groups.len());
        let mut state = BTreeMap::new();
        let mut index = 0usize;
        for (g, states) in self.groups.iter().zip(&self.state) {
            let mut options = g.options.to_map();
            if let Some(i) = g.initial_lr {
                options.insert("initial_lr".into(), Hyper::Float(i));
            }
            let params: Vec<usize> = (index..index + g.params.len()).collect();
            for (k, st) in states.iter().enumerate() {
                if let Some(st) = st {
                    state.insert(index + k, R::save_state(st)?);
                }
            }
            index += g.params.len();
            param_groups.push(GroupState { options, params });
        }
        Ok(OptimizerState { optimizer: R::NAME.to_string(), param_groups, state })
    }

    fn load_state_dict(&mut self, sd: &OptimizerState) -> Result<()> {
        const OP: &str = "load_state_dict";
        if sd.optimizer != R::NAME {
            return Err(Error::arg(
                OP,
                format!("state is for optimizer {:?}, this one is {:?}", sd.optimizer, R::NAME),
            ));
        }
        if sd.param_groups.len() != self.groups.len() {
            return Err(Error::arg(
                OP,
                format!(
                    "loaded state dict has {} parameter groups, the optimizer has {}",
                    sd.param_groups.len(),
                    self.groups.len()
                ),
            ));
        }
        // Check and convert everything first so a failure leaves the optimizer unchanged.
        let mut new_options = Vec::with_capacity(self.groups.len());
        let mut new_state = Vec::with_capacity(self.groups.len());
        let mut new_initial = Vec::with_capacity(self.groups.len());
        for (gi, (g, saved)) in self.groups.iter().zip(&sd.param_groups).enumerate() {
            if saved.params.len() != g.params.len() {
                return Err(Error::arg(
                    OP,
                    format!(
                        "param group {gi}: the loaded state has {} parameters, the optimizer's group has {}",
                        saved.params.len(),
                        g.params.len()
                    ),
                ));
            }
            let options = R::Options::from_map(&saved.options)?;
            options.validate()?;
            let initial = match saved.options.get("initial_lr") {
                Some(Hyper::Float(v)) => Some(*v),
                Some(other) => return Err(Error::arg(OP, format!("initial_lr must be a number, got {other:?}"))),
                None => None,
            };
            let mut states = Vec::with_capacity(g.params.len());
            for (p, id) in g.params.iter().zip(&saved.params) {
                let st = match sd.state.get(id) {
                    Some(ps) => Some(R::load_state(ps, p.latest().tensor()).map_err(|e| match e {
                        Error::InvalidArgument { op, msg } => {
                            Error::InvalidArgument { op, msg: format!("param group {gi}, parameter {id}: {msg}") }
                        }
                        other => other,
                    })?),
                    None => None,
                };
                states.push(st);
            }
            new_options.push(options);
            new_state.push(states);
            new_initial.push(initial);
        }
        for ((g, o), i) in self.groups.iter_mut().zip(new_options).zip(new_initial) {
            g.options = o;
            g.initial_lr = i;
        }
        self.state = new_state;
        Ok(())
    }
}

/// Checks that a hyperparameter is finite and at least `min`.
pub(crate) fn check_min(op: &'static str, name: &str, v: f64, min: f64) -> Result<()> {
    if !(v >= min) || !v.is_finite() {
        return Err(Error::arg(op, format!("invalid {name} value: {v} (must be finite and >= {min})")));
    }
    Ok(())
}

/// Checks `0 <= v < 1`.
pub(crate) fn check_unit(op: &'static str, name: &str, v: f64) -> Result<()> {
    if !(0.0..1.0).contains(&v) {
        return Err(Error::arg(op, format!("invalid {name} value: {v} (must be in [0, 1))")));
    }
    Ok(())
}
