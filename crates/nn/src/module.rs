//! [`Module`], [`Forward`], [`Param`], [`Buffer`] and the [`Visitor`] that everything
//! else (naming, modes, freezing, moving, saving) is built on.
//!
//! A module says what it holds in one place, its [`Module::visit`] body: one line per
//! parameter, buffer, mode flag or child module. Every other method of [`Module`] is a
//! provided method written once in terms of that visit.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use autograd::Var;
use parking_lot::RwLock;
use tensor_core::{DType, Device, Error, Result, Tensor};

use crate::state::{IncompatibleKeys, StateDict};

/// A trainable parameter: a shared leaf [`Var`] that requires grad.
///
/// Cloning a `Param` (or a module holding one) shares it: both handles see the same
/// values and the same `.grad`. [`Module::to_device`] and [`Module::to_dtype`] keep the
/// parameter: the variable behind the handle is superseded ([`Var::supersede`]) by one
/// on the new device or dtype, and an optimizer built before the move follows it at
/// its next step, as in PyTorch.
#[derive(Clone)]
pub struct Param(Arc<RwLock<Var>>);

impl Param {
    /// A new parameter holding `t` (a float tensor); it requires grad.
    pub fn new(t: Tensor) -> Result<Param> {
        Ok(Param(Arc::new(RwLock::new(Var::param(t)?))))
    }

    /// The parameter as a [`Var`] to compute with (a cheap shared handle).
    pub fn var(&self) -> Var {
        self.0.read().clone()
    }

    /// The current value.
    pub fn tensor(&self) -> Tensor {
        self.0.read().tensor().clone()
    }

    /// The accumulated gradient, `None` until a backward reaches it.
    pub fn grad(&self) -> Option<Tensor> {
        self.0.read().grad()
    }

    /// Clears the gradient (sets it to `None`).
    pub fn zero_grad(&self) {
        self.0.read().zero_grad()
    }

    /// The shape.
    pub fn dims(&self) -> Vec<usize> {
        self.0.read().dims().to_vec()
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.0.read().numel()
    }

    /// True unless frozen.
    pub fn requires_grad(&self) -> bool {
        self.0.read().requires_grad()
    }

    /// Freezes (`false`) or unfreezes (`true`) this parameter.
    pub fn set_requires_grad(&self, requires_grad: bool) -> Result<()> {
        self.0.read().set_requires_grad(requires_grad)
    }

    /// Overwrites the values in place (shapes must match; the dtype is converted).
    /// The variable stays the same, so optimizers holding it see the new values.
    pub fn copy_from(&self, src: &Tensor) -> Result<()> {
        let v = self.0.read();
        if src.dims() != v.dims() {
            return Err(Error::shape("Param::copy_from", v.dims(), src.dims(), "a parameter keeps its shape"));
        }
        let src = src.to_device(v.device())?.to_dtype(v.dtype())?;
        v.tensor().copy_(&src)
    }

    /// Gives this parameter the value `t`, which may live on another device or have
    /// another float dtype but must keep the shape (PyTorch's `param.data = t`). The
    /// variable behind the handle is superseded ([`Var::supersede`]): `requires_grad`,
    /// hooks and the (converted) gradient carry over, and optimizers holding the old
    /// variable follow to the new one at their next step.
    ///
    /// ```
    /// use nn::Param;
    /// use tensor_core::{DType, Tensor};
    ///
    /// let p = Param::new(Tensor::new(&[1.0f32, 2.0]))?;
    /// let before = p.var();
    /// p.set_data(p.tensor().to_dtype(DType::F64)?)?;
    /// assert_eq!(p.tensor().dtype(), DType::F64);
    /// assert!(before.latest().same(&p.var()));
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn set_data(&self, t: Tensor) -> Result<()> {
        let mut v = self.0.write();
        let new = v.supersede(t)?;
        *v = new;
        Ok(())
    }

    /// True when both handles are the same parameter.
    pub fn same(&self, other: &Param) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl std::fmt::Debug for Param {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = self.0.read();
        write!(f, "Param(shape={:?}, dtype={}, requires_grad={})", v.dims(), v.dtype(), v.requires_grad())
    }
}

/// A non-trainable tensor a module keeps and saves (BatchNorm's running statistics).
/// Shared between clones, like [`Param`].
#[derive(Clone)]
pub struct Buffer(Arc<RwLock<Tensor>>);

impl Buffer {
    /// A buffer holding `t`.
    pub fn new(t: Tensor) -> Buffer {
        Buffer(Arc::new(RwLock::new(t)))
    }

    /// The current value (a shared handle: in-place updates write into the buffer).
    pub fn tensor(&self) -> Tensor {
        self.0.read().clone()
    }

    /// Replaces the tensor behind this handle.
    pub fn replace(&self, t: Tensor) {
        *self.0.write() = t;
    }

    /// Overwrites the values in place (shapes must match; the dtype is converted).
    pub fn copy_from(&self, src: &Tensor) -> Result<()> {
        let t = self.0.read();
        if src.dims() != t.dims() {
            return Err(Error::shape("Buffer::copy_from", t.dims(), src.dims(), "a buffer keeps its shape"));
        }
        t.copy_(&src.to_device(t.device())?.to_dtype(t.dtype())?)
    }
}

impl std::fmt::Debug for Buffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = self.0.read();
        write!(f, "Buffer(shape={:?}, dtype={})", t.dims(), t.dtype())
    }
}

/// A module's train/eval flag (PyTorch's `module.training`). Starts in training mode.
///
/// Cloning copies the current mode; clones then switch independently.
#[derive(Debug)]
pub struct Training(AtomicBool);

impl Training {
    /// A flag in training mode.
    pub fn new() -> Training {
        Training(AtomicBool::new(true))
    }

    /// True in training mode.
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Sets the mode.
    pub fn set(&self, training: bool) {
        self.0.store(training, Ordering::Relaxed)
    }
}

impl Default for Training {
    fn default() -> Self {
        Training::new()
    }
}

impl Clone for Training {
    fn clone(&self) -> Self {
        Training(AtomicBool::new(self.get()))
    }
}

/// What [`Module::visit`] shows its contents to. Implement it to walk a model in a
/// new way; [`Module`]'s provided methods are all visitors.
pub trait Visitor {
    /// A parameter named `name` (relative to the current module).
    fn param(&mut self, name: &str, p: &Param);
    /// A buffer named `name`.
    fn buffer(&mut self, _name: &str, _b: &Buffer) {}
    /// The current module's train/eval flag.
    fn training(&mut self, _flag: &Training) {}
    /// Entering the child module `name`.
    fn enter(&mut self, _name: &str) {}
    /// Leaving the child module entered last.
    fn leave(&mut self) {}
}

impl dyn Visitor + '_ {
    /// Visits child module `m` under `name` ("features" gives "features.weight").
    pub fn module(&mut self, name: &str, m: &dyn Module) {
        self.enter(name);
        m.visit(self);
        self.leave();
    }

    /// Visits an optional parameter (a layer's `bias`).
    pub fn opt_param(&mut self, name: &str, p: &Option<Param>) {
        if let Some(p) = p {
            self.param(name, p);
        }
    }
}

/// Callback for each parameter visited.
type ParamFn<'a> = &'a mut dyn FnMut(&str, &Param);
/// Callback for each buffer visited.
type BufferFn<'a> = &'a mut dyn FnMut(&str, &Buffer);

/// Calls closures with full dotted names ("features.0.weight").
struct Walk<'a> {
    path: Vec<String>,
    on_param: Option<ParamFn<'a>>,
    on_buffer: Option<BufferFn<'a>>,
    on_flag: Option<&'a mut dyn FnMut(&Training)>,
}

impl Walk<'_> {
    fn full(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.path.join("."))
        }
    }
}

impl Visitor for Walk<'_> {
    fn param(&mut self, name: &str, p: &Param) {
        let full = self.full(name);
        if let Some(f) = self.on_param.as_mut() {
            f(&full, p)
        }
    }
    fn buffer(&mut self, name: &str, b: &Buffer) {
        let full = self.full(name);
        if let Some(f) = self.on_buffer.as_mut() {
            f(&full, b)
        }
    }
    fn training(&mut self, flag: &Training) {
        if let Some(f) = self.on_flag.as_mut() {
            f(flag)
        }
    }
    fn enter(&mut self, name: &str) {
        self.path.push(name.to_string());
    }
    fn leave(&mut self) {
        self.path.pop();
    }
}

/// A network building block that owns parameters, buffers and child modules.
///
/// Implement [`Module::visit`] (one line per field); everything else is provided.
/// Parameters that appear twice (shared weights) are reported once, under the first
/// name, like PyTorch.
///
/// A custom module in a few lines:
///
/// ```
/// use autograd::Var;
/// use nn::{Forward, Linear, Module, Visitor};
/// use tensor_core::{DType, Device, Result, Tensor};
///
/// struct Mlp {
///     fc1: Linear,
///     fc2: Linear,
/// }
///
/// impl Module for Mlp {
///     fn visit(&self, v: &mut dyn Visitor) {
///         v.module("fc1", &self.fc1);
///         v.module("fc2", &self.fc2);
///     }
/// }
///
/// impl Forward for Mlp {
///     fn forward(&self, x: &Var) -> Result<Var> {
///         self.fc2.forward(&self.fc1.forward(x)?.relu()?)
///     }
/// }
///
/// let m = Mlp { fc1: Linear::new(4, 8, true)?, fc2: Linear::new(8, 2, true)? };
/// let names: Vec<String> = m.named_parameters().into_iter().map(|(n, _)| n).collect();
/// assert_eq!(names, ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]);
/// assert_eq!(m.num_parameters(), 4 * 8 + 8 + 8 * 2 + 2);
/// let y = m.forward(&Var::from(Tensor::zeros([3, 4], DType::F32, &Device::cpu())?))?;
/// assert_eq!(y.dims(), &[3, 2]);
/// # Ok::<(), tensor_core::Error>(())
/// ```
pub trait Module {
    /// Shows this module's parameters, buffers, mode flag and children to `v`.
    fn visit(&self, v: &mut dyn Visitor);

    /// Every parameter with its dotted name, in visiting order (shared ones once).
    fn named_parameters(&self) -> Vec<(String, Param)> {
        let mut out: Vec<(String, Param)> = Vec::new();
        let mut f = |n: &str, p: &Param| {
            if !out.iter().any(|(_, q)| q.same(p)) {
                out.push((n.to_string(), p.clone()));
            }
        };
        let mut w = Walk { path: Vec::new(), on_param: Some(&mut f), on_buffer: None, on_flag: None };
        self.visit(&mut w);
        out
    }

    /// Every parameter as a [`Var`], ready for an optimizer.
    fn parameters(&self) -> Vec<Var> {
        self.named_parameters().into_iter().map(|(_, p)| p.var()).collect()
    }

    /// Every buffer with its dotted name.
    fn named_buffers(&self) -> Vec<(String, Buffer)> {
        let mut out = Vec::new();
        let mut f = |n: &str, b: &Buffer| out.push((n.to_string(), b.clone()));
        let mut w = Walk { path: Vec::new(), on_param: None, on_buffer: Some(&mut f), on_flag: None };
        self.visit(&mut w);
        out
    }

    /// Sets training (`true`) or evaluation mode on this module and every child.
    fn set_training(&self, training: bool) {
        let mut f = |t: &Training| t.set(training);
        let mut w = Walk { path: Vec::new(), on_param: None, on_buffer: None, on_flag: Some(&mut f) };
        self.visit(&mut w);
    }

    /// Training mode (dropout active, batch statistics used and tracked).
    fn train(&self) {
        self.set_training(true)
    }

    /// Evaluation mode (dropout off, running statistics used).
    fn eval(&self) {
        self.set_training(false)
    }

    /// The mode of the first flag visited (this module's own, when it has one);
    /// `true` for a module without any flag.
    fn is_training(&self) -> bool {
        let mut found = None;
        let mut f = |t: &Training| {
            if found.is_none() {
                found = Some(t.get());
            }
        };
        let mut w = Walk { path: Vec::new(), on_param: None, on_buffer: None, on_flag: Some(&mut f) };
        self.visit(&mut w);
        found.unwrap_or(true)
    }

    /// Stops gradients for every parameter (`requires_grad = false`).
    fn freeze(&self) -> Result<()> {
        for (_, p) in self.named_parameters() {
            p.set_requires_grad(false)?;
        }
        Ok(())
    }

    /// Makes every parameter trainable again.
    fn unfreeze(&self) -> Result<()> {
        for (_, p) in self.named_parameters() {
            p.set_requires_grad(true)?;
        }
        Ok(())
    }

    /// Total number of parameter elements.
    fn num_parameters(&self) -> usize {
        self.named_parameters().iter().map(|(_, p)| p.numel()).sum()
    }

    /// Number of elements in parameters that require grad.
    fn num_trainable_parameters(&self) -> usize {
        self.named_parameters().iter().filter(|(_, p)| p.requires_grad()).map(|(_, p)| p.numel()).sum()
    }

    /// Clears every parameter's gradient (sets it to `None`).
    fn zero_grad(&self) {
        for (_, p) in self.named_parameters() {
            p.zero_grad();
        }
    }

    /// Moves every parameter (with its gradient) and buffer to `device`, in place:
    /// the parameters stay the same, so an optimizer built before the move keeps
    /// training them (see [`Param::set_data`]). Run the forward again after moving.
    ///
    /// ```
    /// use nn::{Linear, Module};
    /// use tensor_core::{DType, Device};
    ///
    /// let m = Linear::new(3, 2, true)?;
    /// let held = m.parameters();          // what an optimizer holds
    /// m.to_device(&Device::cpu())?;      // or a CUDA device
    /// m.to_dtype(DType::F64)?;
    /// assert!(held.iter().all(|v| v.latest().dtype() == DType::F64));
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    fn to_device(&self, device: &Device) -> Result<()> {
        for (_, p) in self.named_parameters() {
            p.set_data(p.tensor().to_device(device)?)?;
        }
        for (_, b) in self.named_buffers() {
            b.replace(b.tensor().to_device(device)?);
        }
        Ok(())
    }

    /// Converts floating-point parameters and buffers to `dtype` (a float dtype);
    /// integer buffers such as `num_batches_tracked` keep theirs, like PyTorch's
    /// `module.to(dtype)`.
    fn to_dtype(&self, dtype: DType) -> Result<()> {
        if !dtype.is_float() {
            return Err(Error::arg("Module::to_dtype", format!("expected a floating point dtype, got {dtype}")));
        }
        for (_, p) in self.named_parameters() {
            p.set_data(p.tensor().to_dtype(dtype)?.contiguous()?)?;
        }
        for (_, b) in self.named_buffers() {
            let t = b.tensor();
            if t.dtype().is_float() {
                b.replace(t.to_dtype(dtype)?.contiguous()?);
            }
        }
        Ok(())
    }

    /// Calls `f` on every parameter with its dotted name: the way to run an
    /// initialiser over a model (`nn::init`), choosing by name or shape.
    ///
    /// ```
    /// use nn::{init, Linear, Module};
    /// let m = Linear::new(3, 2, true)?;
    /// m.apply(&mut |name, p| if name.ends_with("bias") { init::zeros_(p) } else { Ok(()) })?;
    /// assert_eq!(m.bias.as_ref().unwrap().tensor().to_vec::<f32>()?, vec![0.0, 0.0]);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    fn apply(&self, f: &mut dyn FnMut(&str, &Param) -> Result<()>) -> Result<()> {
        for (n, p) in self.named_parameters() {
            f(&n, &p)?;
        }
        Ok(())
    }

    /// Parameters and buffers by name (shared handles to the live tensors; copy
    /// them to keep a snapshot).
    fn state_dict(&self) -> StateDict {
        let entries = std::cell::RefCell::new(Vec::<(String, Tensor)>::new());
        let mut fp = |n: &str, p: &Param| entries.borrow_mut().push((n.to_string(), p.tensor()));
        let mut fb = |n: &str, b: &Buffer| entries.borrow_mut().push((n.to_string(), b.tensor()));
        let mut w = Walk { path: Vec::new(), on_param: Some(&mut fp), on_buffer: Some(&mut fb), on_flag: None };
        self.visit(&mut w);
        drop(w);
        // Visiting order (each layer visits its parameters, then its buffers, then its
        // children) is PyTorch's state_dict order. A shared tensor is kept once.
        let mut sd = StateDict::new();
        for (n, t) in entries.into_inner() {
            if sd.get(&n).is_none() {
                sd.insert(n, t);
            }
        }
        sd
    }

    /// Copies values from `sd` into this module's parameters and buffers (in place,
    /// so optimizers keep working). Shapes must match. With `strict`, missing and
    /// unexpected keys are an error too; without, they are returned. Nothing is
    /// changed when it returns an error.
    fn load_state_dict(&self, sd: &StateDict, strict: bool) -> Result<IncompatibleKeys> {
        // Every name, shared parameters under each of theirs (as state_dict has them).
        let params = std::cell::RefCell::new(Vec::new());
        let buffers = std::cell::RefCell::new(Vec::new());
        let mut fp = |n: &str, p: &Param| params.borrow_mut().push((n.to_string(), p.clone()));
        let mut fb = |n: &str, b: &Buffer| buffers.borrow_mut().push((n.to_string(), b.clone()));
        let mut w = Walk { path: Vec::new(), on_param: Some(&mut fp), on_buffer: Some(&mut fb), on_flag: None };
        self.visit(&mut w);
        drop(w);
        crate::state::load_into(params.into_inner(), buffers.into_inner(), sd, strict)
    }

    /// Saves [`Module::state_dict`] as a safetensors file (written atomically).
    fn save(&self, path: impl AsRef<std::path::Path>) -> Result<()>
    where
        Self: Sized,
    {
        self.state_dict().save(path)
    }

    /// Loads a safetensors file written by [`Module::save`] (strictly).
    fn load(&self, path: impl AsRef<std::path::Path>) -> Result<()>
    where
        Self: Sized,
    {
        let sd = StateDict::load(path)?;
        self.load_state_dict(&sd, true).map(|_| ())
    }
}

/// A module that maps one input to one output: the one method a layer writes.
pub trait Forward: Module {
    /// Runs the module on `x`.
    fn forward(&self, x: &Var) -> Result<Var>;
}

impl<M: Module + ?Sized> Module for Box<M> {
    fn visit(&self, v: &mut dyn Visitor) {
        (**self).visit(v)
    }
}

impl<M: Forward + ?Sized> Forward for Box<M> {
    fn forward(&self, x: &Var) -> Result<Var> {
        (**self).forward(x)
    }
}

impl<M: Module + ?Sized> Module for Arc<M> {
    fn visit(&self, v: &mut dyn Visitor) {
        (**self).visit(v)
    }
}

impl<M: Forward + ?Sized> Forward for Arc<M> {
    fn forward(&self, x: &Var) -> Result<Var> {
        (**self).forward(x)
    }
}
