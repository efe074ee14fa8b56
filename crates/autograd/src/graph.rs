//! The recorded graph: one [`Node`] per op output, edges to the nodes (or leaves) of
//! its inputs, the op's backward closure, and the tensors it saved.
//!
//! Ownership only points backward in time (output -> node -> inputs), leaves are
//! referenced weakly, and an op's saved output ([`SavedOutput`]) keeps only its
//! tensor and a weak link to its own node, so the graph has no reference cycles.
//! Dropping goes through a thread-local queue so that a chain of any length is
//! freed without recursion.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use smallvec::SmallVec;
use tensor_core::{DType, Error, Result, Shape, Tensor};

use crate::var::{Var, VarInner};

/// One gradient (or `None`) per input of an op; inline for the usual one or two.
pub(crate) type Grads = SmallVec<[Option<Var>; 2]>;

/// A node's backward function, kept in the node's own allocation: given the gradient
/// of the output and which inputs need a gradient, returns one gradient (or `None`)
/// per input.
pub(crate) trait Backward: Send + Sync {
    /// Runs the function; with `free`, drops it (and the tensors it saved) as soon
    /// as it returns. `None` when it was freed before.
    fn call(&self, g: &Var, needs: &[bool], free: bool) -> Option<Result<Grads>>;
    /// Drops the function and what it saved.
    fn free(&self);
    /// True once the function was freed.
    fn is_freed(&self) -> bool;
}

impl<F: Fn(&Var, &[bool]) -> Result<Grads> + Send> Backward for Mutex<Option<F>> {
    fn call(&self, g: &Var, needs: &[bool], free: bool) -> Option<Result<Grads>> {
        if free {
            let f = self.lock().take()?;
            Some(f(g, needs))
        } else {
            let f = self.lock();
            Some(f.as_ref()?(g, needs))
        }
    }

    fn free(&self) {
        self.lock().take();
    }

    fn is_freed(&self) -> bool {
        self.lock().is_none()
    }
}

/// A gradient hook: inspects a gradient and may return a replacement.
pub(crate) type Hook = Arc<dyn Fn(&Var) -> Result<Option<Var>> + Send + Sync>;

/// The hooks registered on a variable, with a flag that lets a backward skip the
/// lock when none ever were (the common case).
#[derive(Default)]
pub(crate) struct Hooks {
    any: AtomicBool,
    list: Mutex<Vec<(usize, Hook)>>,
}

impl Hooks {
    /// Registers `hook` under `id`.
    pub(crate) fn push(&self, id: usize, hook: Hook) {
        self.list.lock().push((id, hook));
        self.any.store(true, Ordering::Release);
    }

    /// Removes hook `id`; true when it was registered.
    pub(crate) fn remove(&self, id: usize) -> bool {
        let mut list = self.list.lock();
        let before = list.len();
        list.retain(|(i, _)| *i != id);
        list.len() != before
    }

    /// A copy of the hooks, so that they run without the lock held (a hook may
    /// register another); no lock and no allocation when none were ever registered.
    pub(crate) fn snapshot(&self) -> Vec<(usize, Hook)> {
        if !self.any.load(Ordering::Acquire) {
            return Vec::new();
        }
        self.list.lock().clone()
    }
}

/// Where an input's gradient goes.
pub(crate) enum Edge {
    /// A non-leaf input: its producing node.
    Node(NodePtr),
    /// A leaf input that requires grad (weak: a dropped leaf cannot be observed).
    Leaf(Weak<VarInner>, Shape, DType),
}

impl Edge {
    /// Shape of the input this edge feeds.
    pub(crate) fn shape(&self) -> &[usize] {
        match self {
            Edge::Node(n) => n.shape.dims(),
            Edge::Leaf(_, s, _) => s.dims(),
        }
    }

    /// Dtype of the input this edge feeds.
    pub(crate) fn dtype(&self) -> DType {
        match self {
            Edge::Node(n) => n.dtype,
            Edge::Leaf(_, _, d) => *d,
        }
    }
}

/// The output `Var` a node keeps its gradient for after `retain_grad()`, with a flag
/// that lets a backward skip the lock when it was never asked.
#[derive(Default)]
pub(crate) struct Retained {
    any: AtomicBool,
    var: Mutex<Option<Weak<VarInner>>>,
}

impl Retained {
    /// Keeps the gradient for `v` (held weakly: a dropped output needs none).
    pub(crate) fn set(&self, v: Weak<VarInner>) {
        *self.var.lock() = Some(v);
        self.any.store(true, Ordering::Release);
    }

    /// The output to give the gradient to, if it asked and is still alive.
    pub(crate) fn get(&self) -> Option<Arc<VarInner>> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        self.var.lock().as_ref().and_then(|w| w.upgrade())
    }
}

/// One recorded op. `B` is the backward function, stored inline (one allocation
/// per node) and reached through `dyn Backward`.
pub(crate) struct Node<B: ?Sized + Backward = dyn Backward> {
    /// The op's name, used in errors and graph dumps.
    pub name: &'static str,
    /// One entry per input; `None` for inputs that need no gradient.
    pub edges: SmallVec<[Option<Edge>; 2]>,
    /// Output shape and dtype.
    pub shape: Shape,
    /// Output dtype.
    pub dtype: DType,
    /// Hooks registered on the (non-leaf) output.
    pub hooks: Hooks,
    /// The output `Var` when `retain_grad()` was called on it.
    pub retained: Retained,
    /// The backward closure; freed after a backward without `retain_graph`.
    pub backward: B,
}

/// A shared pointer to a node whose drop never recurses.
pub(crate) struct NodePtr(Option<Arc<Node>>);

impl NodePtr {
    pub(crate) fn new(node: Arc<Node>) -> Self {
        NodePtr(Some(node))
    }

    fn arc(&self) -> &Arc<Node> {
        self.0.as_ref().expect("NodePtr is only empty while being dropped")
    }

    /// Identity of the node (its address).
    pub(crate) fn key(&self) -> usize {
        Arc::as_ptr(self.arc()) as *const () as usize
    }
}

impl Clone for NodePtr {
    fn clone(&self) -> Self {
        NodePtr(Some(self.arc().clone()))
    }
}

impl std::ops::Deref for NodePtr {
    type Target = Node;
    fn deref(&self) -> &Node {
        self.arc()
    }
}

impl Drop for NodePtr {
    fn drop(&mut self) {
        if let Some(a) = self.0.take() {
            defer_drop(a);
        }
    }
}

struct DropQueue {
    draining: bool,
    queue: Vec<Arc<Node>>,
}

thread_local! {
    static DROPS: RefCell<DropQueue> = const { RefCell::new(DropQueue { draining: false, queue: Vec::new() }) };
}

/// Drops `n`; when it is the last reference, its children are queued instead of
/// dropped recursively, and the outermost call drains the queue.
fn defer_drop(n: Arc<Node>) {
    if Arc::strong_count(&n) > 1 {
        return; // not the last reference: just a decrement
    }
    let res = DROPS.try_with(|cell| {
        let mut q = cell.borrow_mut();
        q.queue.push(n);
        if q.draining {
            return;
        }
        q.draining = true;
        drop(q);
        loop {
            let next = cell.borrow_mut().queue.pop();
            match next {
                Some(node) => drop(node),
                None => break,
            }
        }
        cell.borrow_mut().draining = false;
    });
    // During thread teardown the queue is gone; `n` was moved into the closure
    // only if it ran, otherwise it is dropped here normally.
    let _ = res;
}

/// A tensor saved for backward together with its storage version, and enough of
/// its `Var` to rebuild it (so a backward written with `Var` ops can itself be
/// differentiated).
pub(crate) struct SavedVar {
    tensor: Tensor,
    version: u64,
    node: Option<NodePtr>,
    leaf: Option<Weak<VarInner>>,
}

impl SavedVar {
    /// Saves an input `Var`.
    pub(crate) fn new(v: &Var) -> Self {
        let inner = v.inner();
        let (node, leaf) = match &inner.node {
            Some(n) => (Some(n.clone()), None),
            None if v.requires_grad() => (None, Some(Arc::downgrade(inner))),
            None => (None, None),
        };
        SavedVar { tensor: inner.tensor.clone(), version: inner.tensor.version(), node, leaf }
    }

    /// Saves a plain tensor (indices, a mask, an output used only to build a mask): a
    /// constant in the backward. An output the backward computes with is a
    /// [`SavedOutput`] instead, so that it can be differentiated through.
    pub(crate) fn tensor(t: &Tensor) -> Self {
        SavedVar { tensor: t.clone(), version: t.version(), node: None, leaf: None }
    }

    /// The saved value as a `Var`, or `ModifiedInPlace` if its storage was written
    /// since it was saved (the engine fills in the op name).
    pub(crate) fn get(&self) -> Result<Var> {
        let now = self.tensor.version();
        if now != self.version {
            return Err(Error::ModifiedInPlace { op: String::new(), saved: self.version, now });
        }
        if let Some(n) = &self.node {
            return Ok(Var::from_node(self.tensor.clone(), n.clone()));
        }
        if let Some(l) = &self.leaf {
            if let Some(inner) = l.upgrade() {
                return Ok(Var::from_inner(inner));
            }
        }
        Ok(Var::from(self.tensor.clone()))
    }

    /// The saved tensor, version-checked.
    pub(crate) fn tensor_checked(&self) -> Result<Tensor> {
        let now = self.tensor.version();
        if now != self.version {
            return Err(Error::ModifiedInPlace { op: String::new(), saved: self.version, now });
        }
        Ok(self.tensor.clone())
    }
}

/// An op's own output saved for its backward (PyTorch's saved output): the tensor
/// (sharing the output's storage, so saving costs nothing) and its version, and a
/// weak link to the node that produced it.
///
/// The link is weak because that node owns this value: a strong one would be a
/// cycle (node -> backward -> saved output -> node) and the graph would never be
/// freed. It is only followed while the node's backward runs, when the engine holds
/// the node, so it always resolves then.
pub(crate) struct SavedOutput {
    tensor: Tensor,
    version: u64,
    node: Weak<Node>,
}

impl SavedOutput {
    /// The saved output as a `Var`, or `ModifiedInPlace` if its storage was written
    /// since it was saved (the engine fills in the op name).
    ///
    /// While a graph is being built (`create_graph`), the `Var` is an output of the
    /// node that produced it, so a backward formula written with it differentiates
    /// through the op again; otherwise it is a constant.
    pub(crate) fn get(&self) -> Result<Var> {
        let now = self.tensor.version();
        if now != self.version {
            return Err(Error::ModifiedInPlace { op: String::new(), saved: self.version, now });
        }
        if crate::mode::is_grad_enabled() {
            if let Some(node) = self.node.upgrade() {
                return Ok(Var::from_node(self.tensor.clone(), NodePtr::new(node)));
            }
        }
        Ok(Var::from(self.tensor.clone()))
    }
}

/// True when an op on these inputs must be recorded.
#[inline]
pub(crate) fn should_record(inputs: &[&Var]) -> bool {
    inputs.iter().any(|v| v.requires_grad()) && crate::mode::is_grad_enabled()
}

/// Wraps `out` as the output of op `name` on `inputs`, recording `backward` when
/// grad mode is on and some input requires grad.
pub(crate) fn record(
    name: &'static str,
    out: Tensor,
    inputs: &[&Var],
    backward: impl Fn(&Var, &[bool]) -> Result<Grads> + Send + 'static,
) -> Var {
    if !should_record(inputs) {
        return Var::from(out);
    }
    let node = new_node(name, &out, inputs, |_| backward);
    Var::from_node(out, NodePtr::new(node))
}

/// [`record`] for a backward that needs the op's output: `backward(saved)` builds
/// the backward function around the saved output.
pub(crate) fn record_with_output<F>(
    name: &'static str,
    out: Tensor,
    inputs: &[&Var],
    backward: impl FnOnce(SavedOutput) -> F,
) -> Var
where
    F: Fn(&Var, &[bool]) -> Result<Grads> + Send + 'static,
{
    if !should_record(inputs) {
        return Var::from(out);
    }
    let (tensor, version) = (out.clone(), out.version());
    let node = new_node(name, &out, inputs, |node| backward(SavedOutput { tensor, version, node }));
    Var::from_node(out, NodePtr::new(node))
}

/// A node for op `name` on `inputs` with output `out`; `backward` is given a weak
/// link to the node itself (for [`SavedOutput`]).
fn new_node<F>(name: &'static str, out: &Tensor, inputs: &[&Var], backward: impl FnOnce(Weak<Node>) -> F) -> Arc<Node>
where
    F: Fn(&Var, &[bool]) -> Result<Grads> + Send + 'static,
{
    let mut edges = SmallVec::with_capacity(inputs.len());
    for v in inputs {
        edges.push(v.edge());
    }
    let node = Arc::new_cyclic(|this: &Weak<Node<Mutex<Option<F>>>>| {
        let this: Weak<Node> = this.clone();
        Node::<Mutex<Option<F>>> {
            name,
            edges,
            shape: out.shape().clone(),
            dtype: out.dtype(),
            hooks: Hooks::default(),
            retained: Retained::default(),
            backward: Mutex::new(Some(backward(this))),
        }
    });
    node
}
