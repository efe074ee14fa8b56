//! [`Var`]: a tensor plus its place in the autograd graph.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use smallvec::smallvec;
use tensor_core::{DType, Device, Error, Result, Shape, Tensor};

use crate::graph::{Edge, Hook, Hooks, NodePtr};

pub(crate) struct VarInner {
    pub(crate) tensor: Tensor,
    pub(crate) requires_grad: AtomicBool,
    pub(crate) node: Option<NodePtr>,
    /// The accumulated gradient (leaves, and non-leaves after `retain_grad`).
    pub(crate) grad: Mutex<Option<Var>>,
    /// Hooks on a leaf (a non-leaf's hooks live on its node).
    pub(crate) hooks: Hooks,
    /// The leaf that took this one's place ([`Var::supersede`]), set at most once.
    pub(crate) successor: OnceLock<Var>,
}

/// A differentiable tensor handle: a [`Tensor`] plus an optional graph node, a
/// `requires_grad` flag and, for leaves, an accumulated gradient.
///
/// Cloning is cheap and shares the gradient (a cloned parameter handle sees the same
/// `.grad`). `Var` does not deref to `Tensor`: [`Var::tensor`] is explicit, so an
/// untracked op cannot slip in by accident. Ops mirror the `Tensor` method names and
/// return `Result<Var>`; operators work on `&Var` and return `Result<Var>` too.
///
/// ```
/// use autograd::Var;
/// use tensor_core::Tensor;
///
/// let x = Var::param(Tensor::new(&[1.0f64, 2.0, 3.0]))?;
/// let y = (&x * &x)?.sum(&[], false)?;      // sum(x^2)
/// y.backward()?;
/// assert_eq!(x.grad().unwrap().to_vec::<f64>()?, vec![2.0, 4.0, 6.0]);
/// # Ok::<(), tensor_core::Error>(())
/// ```
#[derive(Clone)]
pub struct Var(pub(crate) Arc<VarInner>);

/// Identifies a hook registered with [`Var::register_hook`], for removal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HookId(usize);

static NEXT_HOOK: AtomicUsize = AtomicUsize::new(0);

fn float_check(op: &'static str, t: &Tensor) -> Result<()> {
    if !t.dtype().is_float() {
        return Err(Error::Autograd(format!(
            "{op}: only tensors of floating point dtype can require gradients, got {}",
            t.dtype()
        )));
    }
    Ok(())
}

impl From<Tensor> for Var {
    /// A constant (a leaf that does not require grad).
    fn from(t: Tensor) -> Var {
        Var(Arc::new(VarInner {
            tensor: t,
            requires_grad: AtomicBool::new(false),
            node: None,
            grad: Mutex::new(None),
            hooks: Hooks::default(),
            successor: OnceLock::new(),
        }))
    }
}

impl Var {
    /// A leaf; `requires_grad` asks for its gradient (float dtypes only).
    pub fn new(t: Tensor, requires_grad: bool) -> Result<Var> {
        if requires_grad {
            float_check("Var::new", &t)?;
        }
        let v = Var::from(t);
        v.0.requires_grad.store(requires_grad, Ordering::Relaxed);
        Ok(v)
    }

    /// A leaf that requires grad (a trainable parameter).
    pub fn param(t: Tensor) -> Result<Var> {
        Var::new(t, true)
    }

    /// A constant that never requires grad (same as `Var::from`).
    pub fn constant(t: Tensor) -> Var {
        Var::from(t)
    }

    pub(crate) fn from_node(t: Tensor, node: NodePtr) -> Var {
        Var(Arc::new(VarInner {
            tensor: t,
            requires_grad: AtomicBool::new(true),
            node: Some(node),
            grad: Mutex::new(None),
            hooks: Hooks::default(),
            successor: OnceLock::new(),
        }))
    }

    pub(crate) fn from_inner(inner: Arc<VarInner>) -> Var {
        Var(inner)
    }

    pub(crate) fn inner(&self) -> &Arc<VarInner> {
        &self.0
    }

    pub(crate) fn node(&self) -> Option<&NodePtr> {
        self.0.node.as_ref()
    }

    /// The edge an op on this input records, `None` when it needs no gradient.
    pub(crate) fn edge(&self) -> Option<Edge> {
        match &self.0.node {
            Some(n) => Some(Edge::Node(n.clone())),
            None if self.requires_grad() => {
                Some(Edge::Leaf(Arc::downgrade(&self.0), self.0.tensor.shape().clone(), self.0.tensor.dtype()))
            }
            None => None,
        }
    }

    /// Zeros of `shape` (a constant).
    pub fn zeros(shape: impl Into<Shape>, dtype: DType, device: &Device) -> Result<Var> {
        Ok(Var::from(Tensor::zeros(shape, dtype, device)?))
    }

    /// Ones of `shape` (a constant).
    pub fn ones(shape: impl Into<Shape>, dtype: DType, device: &Device) -> Result<Var> {
        Ok(Var::from(Tensor::ones(shape, dtype, device)?))
    }

    /// Standard normal values of `shape`, as a leaf with the given `requires_grad`.
    pub fn randn(shape: impl Into<Shape>, dtype: DType, device: &Device, requires_grad: bool) -> Result<Var> {
        Var::new(Tensor::randn(shape, dtype, device)?, requires_grad)
    }

    /// The underlying tensor (no graph).
    pub fn tensor(&self) -> &Tensor {
        &self.0.tensor
    }

    /// The shape.
    pub fn shape(&self) -> &Shape {
        self.0.tensor.shape()
    }

    /// The sizes as a slice.
    pub fn dims(&self) -> &[usize] {
        self.0.tensor.dims()
    }

    /// Number of dims.
    pub fn rank(&self) -> usize {
        self.0.tensor.rank()
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.0.tensor.numel()
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.0.tensor.dtype()
    }

    /// The device.
    pub fn device(&self) -> &Device {
        self.0.tensor.device()
    }

    /// Size of dim `d` (negative counts from the end).
    pub fn size(&self, d: isize) -> Result<usize> {
        self.0.tensor.size(d)
    }

    /// True when a gradient flows to (or through) this variable.
    pub fn requires_grad(&self) -> bool {
        self.0.node.is_some() || self.0.requires_grad.load(Ordering::Relaxed)
    }

    /// Sets `requires_grad` on a leaf (PyTorch's `requires_grad_`). Fails on a
    /// non-leaf or a non-float leaf.
    pub fn set_requires_grad(&self, requires_grad: bool) -> Result<()> {
        if self.0.node.is_some() {
            return Err(Error::Autograd(
                "you can only change requires_grad flags of leaf variables; use detach() first".into(),
            ));
        }
        if requires_grad {
            float_check("set_requires_grad", self.tensor())?;
        }
        self.0.requires_grad.store(requires_grad, Ordering::Relaxed);
        Ok(())
    }

    /// True for variables created by the user (not by a recorded op).
    pub fn is_leaf(&self) -> bool {
        self.0.node.is_none()
    }

    /// The name of the op that produced this variable (`None` for leaves).
    pub fn grad_fn_name(&self) -> Option<&'static str> {
        self.0.node.as_ref().map(|n| n.name)
    }

    /// The accumulated gradient, `None` until a backward reaches this variable.
    pub fn grad(&self) -> Option<Tensor> {
        self.0.grad.lock().as_ref().map(|g| g.tensor().clone())
    }

    /// The accumulated gradient as a `Var` (with a graph after a backward with
    /// `create_graph`).
    pub fn grad_var(&self) -> Option<Var> {
        self.0.grad.lock().clone()
    }

    /// Replaces the gradient (checked against this variable's shape).
    pub fn set_grad(&self, grad: Option<Tensor>) -> Result<()> {
        if let Some(g) = &grad {
            if g.dims() != self.dims() {
                return Err(Error::shape("set_grad", self.dims(), g.dims(), "assigned grad has a different shape"));
            }
            if g.dtype() != self.dtype() {
                return Err(Error::DTypeMismatch { op: "set_grad", expected: self.dtype(), got: g.dtype() });
            }
        }
        *self.0.grad.lock() = grad.map(Var::from);
        Ok(())
    }

    /// Clears the gradient (sets it to `None`, like PyTorch's default `zero_grad`).
    pub fn zero_grad(&self) {
        *self.0.grad.lock() = None;
    }

    /// Asks a non-leaf to keep its gradient in `.grad` during backward (a no-op on
    /// leaves; an error on a variable that does not require grad).
    pub fn retain_grad(&self) -> Result<()> {
        match &self.0.node {
            Some(n) => {
                n.retained.set(Arc::downgrade(&self.0));
                Ok(())
            }
            None if self.requires_grad() => Ok(()),
            None => Err(Error::Autograd("can't retain_grad on a variable that does not require grad".into())),
        }
    }

    /// Registers a hook called with this variable's gradient during backward; it may
    /// return a replacement gradient, which must have the gradient's shape, dtype and
    /// device (otherwise the backward fails with an error naming the hook, as
    /// PyTorch's "hook has changed the size of value"). On a leaf it runs once on the
    /// summed gradient before it is accumulated into `.grad`.
    pub fn register_hook(&self, f: impl Fn(&Var) -> Result<Option<Var>> + Send + Sync + 'static) -> Result<HookId> {
        if !self.requires_grad() {
            return Err(Error::Autograd("cannot register a hook on a variable that does not require grad".into()));
        }
        let id = NEXT_HOOK.fetch_add(1, Ordering::Relaxed);
        let hook: Hook = Arc::new(f);
        match &self.0.node {
            Some(n) => n.hooks.push(id, hook),
            None => self.0.hooks.push(id, hook),
        }
        Ok(HookId(id))
    }

    /// Removes a hook; returns whether it was registered here.
    pub fn remove_hook(&self, id: HookId) -> bool {
        match &self.0.node {
            Some(n) => n.hooks.remove(id.0),
            None => self.0.hooks.remove(id.0),
        }
    }

    /// The same values, cut from the graph (shares storage; never requires grad).
    pub fn detach(&self) -> Var {
        Var::from(self.tensor().clone())
    }

    /// True when both handles are the same variable.
    pub fn same(&self, other: &Var) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// A new leaf holding `t` that takes this leaf's place: what
    /// `nn::Module::to_device`/`to_dtype` do to each parameter (PyTorch's
    /// `param.data = t`).
    ///
    /// `t` must have this variable's shape; its dtype and device may differ. The new
    /// leaf keeps `requires_grad` and the registered hooks, and gets the gradient
    /// converted to `t`'s dtype and device. Holders of the old handle can reach the new
    /// one with [`Var::latest`]: optimizers do so at every step, so an optimizer built
    /// before a move keeps training the moved parameters. A backward through a graph
    /// recorded before the move fails while the old leaf is still held (say by an
    /// optimizer that has not stepped since), since its gradient would land there;
    /// run the forward again after moving.
    /// Fails on a non-leaf, on a shape change, and on a leaf already superseded (move
    /// [`Var::latest`] instead).
    ///
    /// ```
    /// use autograd::Var;
    /// use tensor_core::{DType, Tensor};
    ///
    /// let w = Var::param(Tensor::new(&[1.0f32, 2.0]))?;
    /// let w64 = w.supersede(w.tensor().to_dtype(DType::F64)?)?;
    /// assert!(w.latest().same(&w64) && w.is_superseded());
    /// assert_eq!(w64.dtype(), DType::F64);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn supersede(&self, t: Tensor) -> Result<Var> {
        const OP: &str = "Var::supersede";
        if self.0.node.is_some() {
            return Err(Error::Autograd(format!(
                "{OP}: only a leaf can be replaced, this variable was produced by {}",
                self.grad_fn_name().unwrap_or("an op")
            )));
        }
        if t.dims() != self.dims() {
            return Err(Error::shape(OP, self.dims(), t.dims(), "the replacement must keep the shape"));
        }
        let rg = self.0.requires_grad.load(Ordering::Relaxed);
        let new = Var::new(t, rg)?;
        if let Some(g) = self.grad() {
            let g = g.to_device(new.device())?.to_dtype(new.dtype())?;
            *new.0.grad.lock() = Some(Var::from(g));
        }
        for (id, hook) in self.0.hooks.snapshot() {
            new.0.hooks.push(id, hook);
        }
        self.0.successor.set(new.clone()).map_err(|_| {
            Error::Autograd(format!(
                "{OP}: this leaf (shape {:?}, {}) was already replaced; replace its latest() instead",
                self.dims(),
                self.dtype()
            ))
        })?;
        Ok(new)
    }

    /// The leaf that now stands for this one: itself, or the end of the chain of
    /// [`Var::supersede`] replacements.
    pub fn latest(&self) -> Var {
        let mut v = self.clone();
        while let Some(next) = v.0.successor.get() {
            v = next.clone();
        }
        v
    }

    /// True when [`Var::supersede`] replaced this leaf.
    pub fn is_superseded(&self) -> bool {
        self.0.successor.get().is_some()
    }

    /// Backpropagates from a one-element variable: accumulates `d self / d leaf` into
    /// every leaf's `.grad`. Frees the graph's saved tensors.
    pub fn backward(&self) -> Result<()> {
        self.backward_opts(false, false)
    }

    /// [`Var::backward`] with PyTorch's `retain_graph` and `create_graph` options.
    pub fn backward_opts(&self, retain_graph: bool, create_graph: bool) -> Result<()> {
        if self.numel() != 1 {
            return Err(Error::Autograd(format!(
                "grad can be implicitly created only for scalar outputs, got shape {:?}; use backward_with",
                self.dims()
            )));
        }
        let ones = self.tensor().ones_like()?;
        crate::engine::run(std::slice::from_ref(self), smallvec![Var::from(ones)], retain_graph, create_graph, None)
            .map(|_| ())
    }

    /// Backpropagates with an explicit gradient of this variable's shape (for
    /// non-scalar outputs).
    pub fn backward_with(&self, grad: &Tensor) -> Result<()> {
        self.backward_with_opts(grad, false, false)
    }

    /// [`Var::backward_with`] with `retain_graph` and `create_graph`.
    pub fn backward_with_opts(&self, grad: &Tensor, retain_graph: bool, create_graph: bool) -> Result<()> {
        crate::engine::run(
            std::slice::from_ref(self),
            smallvec![Var::from(grad.clone())],
            retain_graph,
            create_graph,
            None,
        )
        .map(|_| ())
    }

    /// A Graphviz DOT description of the graph that produced this variable.
    pub fn to_dot(&self) -> String {
        crate::dot::to_dot(self)
    }
}

impl fmt::Display for Var {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.tensor())?;
        match self.grad_fn_name() {
            Some(n) => write!(f, ", grad_fn=<{n}>"),
            None if self.requires_grad() => write!(f, ", requires_grad=true"),
            None => Ok(()),
        }
    }
}

impl fmt::Debug for Var {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Var(shape={:?}, dtype={}, requires_grad={}, grad_fn={:?})",
            self.dims(),
            self.dtype(),
            self.requires_grad(),
            self.grad_fn_name()
        )
    }
}
