//! The backward engine, in one place:
//!
//! 1. Count, for every node reachable from the outputs, how many edges point at it
//!    (an explicit stack, no recursion).
//! 2. Run nodes whose count reached zero: their incoming gradients are complete.
//!    Each node's gradient is the sum of what its consumers sent; hooks may
//!    replace it; `retain_grad` copies it out.
//! 3. Each input gradient is made to fit its input: summed to the input's shape when
//!    it came back broadcast (the only un-broadcasting in the crate), cast to the
//!    input's dtype.
//! 4. Leaves accumulate into `.grad` (or are captured for [`grad`]).
//!
//! Without `retain_graph` each node's backward closure, and with it the tensors it
//! saved, is dropped as soon as it has run.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Hashes the engine's keys (node and leaf addresses) with one multiply: they are
/// already unique, and SipHash cost more than the rest of a small backward.
#[derive(Default)]
struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_usize(&mut self, x: usize) {
        // Fibonacci hashing; the low bits of an address are alignment zeros.
        self.0 = (x as u64 >> 4).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// Most backward passes touch a handful of nodes: up to this many entries an
/// [`AddrMap`] is a list searched in place, with no allocation and no hashing.
const SMALL_MAP: usize = 16;

/// A map keyed by addresses: a short inline list while small, a hash map beyond.
enum AddrMap<V> {
    Small(SmallVec<[(usize, V); 8]>),
    Big(HashMap<usize, V, BuildHasherDefault<AddrHasher>>),
}

impl<V> AddrMap<V> {
    fn new() -> Self {
        AddrMap::Small(SmallVec::new())
    }

    fn get(&self, k: usize) -> Option<&V> {
        match self {
            AddrMap::Small(v) => v.iter().find(|e| e.0 == k).map(|e| &e.1),
            AddrMap::Big(m) => m.get(&k),
        }
    }

    fn get_mut(&mut self, k: usize) -> Option<&mut V> {
        match self {
            AddrMap::Small(v) => v.iter_mut().find(|e| e.0 == k).map(|e| &mut e.1),
            AddrMap::Big(m) => m.get_mut(&k),
        }
    }

    fn contains_key(&self, k: usize) -> bool {
        self.get(k).is_some()
    }

    fn remove(&mut self, k: usize) -> Option<V> {
        match self {
            AddrMap::Small(v) => v.iter().position(|e| e.0 == k).map(|i| v.swap_remove(i).1),
            AddrMap::Big(m) => m.remove(&k),
        }
    }

    /// The entry for `k`, inserted with `V::default()` when missing.
    fn slot(&mut self, k: usize) -> &mut V
    where
        V: Default,
    {
        if let AddrMap::Small(v) = self {
            if v.len() >= SMALL_MAP && !v.iter().any(|e| e.0 == k) {
                let big = v.drain(..).collect();
                *self = AddrMap::Big(big);
            }
        }
        match self {
            AddrMap::Small(v) => {
                let i = match v.iter().position(|e| e.0 == k) {
                    Some(i) => i,
                    None => {
                        v.push((k, V::default()));
                        v.len() - 1
                    }
                };
                &mut v[i].1
            }
            AddrMap::Big(m) => m.entry(k).or_default(),
        }
    }
}

use std::sync::Arc;

use smallvec::SmallVec;
use tensor_core::shape::same_dims;
use tensor_core::{Error, Result, Tensor};

use crate::graph::{Edge, NodePtr};
use crate::mode::{is_anomaly_enabled, GradModeGuard};
use crate::var::{Var, VarInner};

/// What the engine keeps per reachable node.
#[derive(Default)]
struct Slot {
    /// Consumers whose gradient has not arrived yet.
    deps: usize,
    /// Whether the dependency pass has been through this node.
    visited: bool,
    /// The gradient summed so far.
    grad: Option<Var>,
}

/// What `autograd::grad` asks for: the gradient flowing into these variables.
enum Capture {
    Node(usize),
    Leaf(usize),
}

/// Sums `g` into the gradient in `slot`.
fn accumulate(slot: &mut Option<Var>, g: Var) -> Result<()> {
    *slot = Some(match slot.take() {
        Some(old) => add_into(old, &g)?,
        None => g,
    });
    Ok(())
}

/// `old + g`, written into `old`'s buffer when nothing can tell (no graph is being
/// built, and no other handle, view or saved tensor shares that buffer), like
/// PyTorch's in-place gradient accumulation; a new tensor otherwise.
fn add_into(old: Var, g: &Var) -> Result<Var> {
    let in_place = !crate::mode::is_grad_enabled()
        && Arc::strong_count(&old.0) == 1
        && old.node().is_none()
        && old.dtype() == g.dtype()
        && same_dims(old.dims(), g.dims())
        && old.tensor().is_exclusive();
    if in_place {
        old.tensor().add_(g.tensor())?;
        Ok(old)
    } else {
        old.add(g)
    }
}

/// Makes `g` fit an input of `shape`/`dtype`: un-broadcasts and casts.
fn fit(g: Var, edge: &Edge, op: &str) -> Result<Var> {
    let g = if !same_dims(g.dims(), edge.shape()) {
        g.sum_to(edge.shape()).map_err(|e| {
            Error::Autograd(format!(
                "{op}: backward returned a gradient of shape {:?} for an input of shape {:?}: {e}",
                g.dims(),
                edge.shape()
            ))
        })?
    } else {
        g
    };
    if g.dtype() != edge.dtype() {
        g.to_dtype(edge.dtype())
    } else {
        Ok(g)
    }
}

fn check_finite(op: &str, i: usize, g: &Var) -> Result<()> {
    if g.tensor().to_vec_f64()?.iter().any(|x| !x.is_finite()) {
        return Err(Error::Autograd(format!(
            "anomaly detected: function '{op}' returned nan or inf values in its gradient for input {i}"
        )));
    }
    Ok(())
}

/// Runs hooks; each may replace the gradient, with one of the same shape, dtype and
/// device (PyTorch's "hook has changed the size of value"): anything else would be
/// summed down or stored as a `.grad` that does not fit its variable. `whose` names
/// the variable in errors ("a leaf", "the output of mul").
fn run_hooks(hooks: &[(usize, crate::graph::Hook)], mut g: Var, whose: &dyn Fn() -> String) -> Result<Var> {
    for (id, h) in hooks {
        if let Some(r) = h(&g)? {
            let changed = if !same_dims(r.dims(), g.dims()) {
                Some(("size", format!("{:?}", g.dims()), format!("{:?}", r.dims())))
            } else if r.dtype() != g.dtype() {
                Some(("dtype", g.dtype().to_string(), r.dtype().to_string()))
            } else if r.device() != g.device() {
                Some(("device", g.device().to_string(), r.device().to_string()))
            } else {
                None
            };
            if let Some((what, expected, got)) = changed {
                return Err(Error::Autograd(format!(
                    "hook {id} on the gradient of {} has changed the {what} of the gradient: expected {expected}, got {got}",
                    whose()
                )));
            }
            g = r;
        }
    }
    Ok(g)
}

/// Stores a leaf's final gradient into `.grad`.
///
/// Without `create_graph`, a first gradient is taken over when nothing else holds
/// it (copied otherwise: a gradient may alias other gradients or be a broadcast
/// view), and a later one is added into the existing `.grad` in place when nothing
/// else can observe that buffer (like PyTorch's `grad += new`), out of place
/// otherwise, so a gradient the user kept from `grad()` never changes under them.
fn store_leaf_grad(leaf: &VarInner, g: Var, create_graph: bool) -> Result<()> {
    let mut slot = leaf.grad.lock();
    let new = match slot.take() {
        // The engine runs with grad mode on only under `create_graph`, so this adds
        // in place exactly when no graph is wanted and nothing else holds `.grad`.
        Some(old) => add_into(old, &g)?,
        None if create_graph => g,
        None => {
            let t = g.tensor();
            let owned = t.is_exclusive() && Arc::strong_count(&g.0) == 1;
            if owned {
                Var::from(t.clone())
            } else {
                Var::from(t.copy()?)
            }
        }
    };
    *slot = Some(new);
    Ok(())
}

/// Backpropagates `grads` from `outputs`. With `inputs`, returns the gradients
/// flowing into them instead of touching any `.grad`.
pub(crate) fn run(
    outputs: &[Var],
    grads: SmallVec<[Var; 1]>,
    retain_graph: bool,
    create_graph: bool,
    inputs: Option<&[Var]>,
) -> Result<Vec<Option<Var>>> {
    let _mode = GradModeGuard::new(create_graph);
    if outputs.len() != grads.len() {
        return Err(Error::Autograd(format!("got {} outputs but {} gradients", outputs.len(), grads.len())));
    }
    // Captures for autograd::grad.
    let mut captures: AddrMap<usize> = AddrMap::new();
    let mut captured: Vec<Option<Var>> = Vec::new();
    if let Some(ins) = inputs {
        for (i, v) in ins.iter().enumerate() {
            if !v.dtype().is_float() {
                return Err(Error::Autograd(format!(
                    "grad: input {i} has dtype {}; only floating point tensors have gradients",
                    v.dtype()
                )));
            }
            if !v.requires_grad() {
                return Err(Error::Autograd(format!("grad: input {i} does not require grad")));
            }
            let key = match v.node() {
                Some(n) => Capture::Node(n.key()),
                None => Capture::Leaf(Arc::as_ptr(v.inner()) as usize),
            };
            let k = match key {
                Capture::Node(k) | Capture::Leaf(k) => k,
            };
            *captures.slot(k) = i;
        }
        captured = vec![None; ins.len()];
    }

    // Seed: gradients of the outputs. One map holds, per reachable node, its
    // dependency count and the gradient summed so far.
    let mut nodes: AddrMap<Slot> = AddrMap::new();
    let mut leaf_order: SmallVec<[Arc<VarInner>; 4]> = SmallVec::new();
    let mut leaf_grads: AddrMap<Option<Var>> = AddrMap::new();
    let mut stack: SmallVec<[NodePtr; 8]> = SmallVec::new();
    for (i, (o, g)) in outputs.iter().zip(grads).enumerate() {
        if !o.dtype().is_float() {
            return Err(Error::Autograd(format!(
                "output {i} has dtype {}; only floating point tensors have gradients",
                o.dtype()
            )));
        }
        if !o.requires_grad() {
            return Err(Error::Autograd(format!(
                "element {i} of tensors does not require grad and does not have a grad_fn"
            )));
        }
        if g.dims() != o.dims() {
            return Err(Error::shape("backward", o.dims(), g.dims(), "grad must have the same shape as the output"));
        }
        let g = if g.dtype() != o.dtype() { g.to_dtype(o.dtype())? } else { g };
        match o.node() {
            Some(n) => {
                accumulate(&mut nodes.slot(n.key()).grad, g)?;
                stack.push(n.clone());
            }
            None => {
                let k = Arc::as_ptr(o.inner()) as usize;
                if !leaf_grads.contains_key(k) {
                    leaf_order.push(o.inner().clone());
                }
                accumulate(leaf_grads.slot(k), g)?;
            }
        }
    }

    // 1. Dependency counts over the reachable graph.
    let mut roots: SmallVec<[NodePtr; 8]> = SmallVec::new();
    while let Some(n) = stack.pop() {
        let slot = nodes.slot(n.key());
        if slot.visited {
            continue;
        }
        slot.visited = true;
        for e in n.edges.iter().flatten() {
            if let Edge::Node(c) = e {
                nodes.slot(c.key()).deps += 1;
                stack.push(c.clone());
            }
        }
        roots.push(n);
    }
    let mut ready: SmallVec<[NodePtr; 8]> =
        roots.into_iter().filter(|n| nodes.get(n.key()).is_some_and(|s| s.deps == 0)).collect();

    // 2-4. Run nodes in dependency order.
    let anomaly = is_anomaly_enabled();
    while let Some(node) = ready.pop() {
        let key = node.key();
        let mut g = nodes.get_mut(key).and_then(|s| s.grad.take());
        if let Some(gv) = g.take() {
            let hooks = node.hooks.snapshot();
            let gv =
                if hooks.is_empty() { gv } else { run_hooks(&hooks, gv, &|| format!("the output of {}", node.name))? };
            if inputs.is_none() {
                if let Some(r) = node.retained.get() {
                    let mut slot = r.grad.lock();
                    let add = if create_graph { gv.clone() } else { Var::from(gv.tensor().clone()) };
                    accumulate(&mut slot, add)?;
                }
            } else if let Some(&i) = captures.get(key) {
                accumulate(&mut captured[i], gv.clone())?;
            }
            g = Some(gv);
        }
        let input_grads = match g {
            Some(gv) => {
                let mut needs: SmallVec<[bool; 4]> = SmallVec::new();
                for e in &node.edges {
                    needs.push(e.is_some());
                }
                let _prof = tensor_core::profiler::scope_with(
                    || format!("{}.backward", node.name),
                    || vec![gv.dims().to_vec()],
                    || gv.device().to_string(),
                );
                let res = node
                    .backward
                    .call(&gv, &needs, !retain_graph)
                    .ok_or_else(|| Error::GraphFreed { op: node.name.to_string() })?;
                let grads = res.map_err(|e| match e {
                    Error::ModifiedInPlace { op, saved, now } if op.is_empty() => {
                        Error::ModifiedInPlace { op: node.name.to_string(), saved, now }
                    }
                    e => e,
                })?;
                if grads.len() != node.edges.len() {
                    return Err(Error::Autograd(format!(
                        "{}: backward returned {} gradients for {} inputs",
                        node.name,
                        grads.len(),
                        node.edges.len()
                    )));
                }
                grads
            }
            None => {
                if !retain_graph {
                    node.backward.free();
                }
                SmallVec::from_elem(None, node.edges.len())
            }
        };
        for (i, (edge, g)) in node.edges.iter().zip(input_grads).enumerate() {
            let Some(edge) = edge else { continue };
            let g = match g {
                Some(g) => {
                    let g = fit(g, edge, node.name)?;
                    if anomaly {
                        check_finite(node.name, i, &g)?;
                    }
                    Some(g)
                }
                None => None,
            };
            match edge {
                Edge::Node(c) => {
                    let slot = nodes.get_mut(c.key()).expect("every reachable node has a slot");
                    if let Some(g) = g {
                        accumulate(&mut slot.grad, g)?;
                    }
                    slot.deps -= 1;
                    if slot.deps == 0 {
                        ready.push(c.clone());
                    }
                }
                Edge::Leaf(w, _, _) => {
                    if let (Some(g), Some(leaf)) = (g, w.upgrade()) {
                        let k = Arc::as_ptr(&leaf) as usize;
                        if !leaf_grads.contains_key(k) {
                            leaf_order.push(leaf.clone());
                        }
                        accumulate(leaf_grads.slot(k), g)?;
                    }
                }
            }
        }
    }

    // A leaf replaced since the graph was recorded (a module moved to another device
    // or dtype) would take a gradient no optimizer reads: refuse before storing any.
    if inputs.is_none() {
        if let Some(old) = leaf_order.iter().find(|l| l.successor.get().is_some()) {
            return Err(Error::Autograd(format!(
                "backward: a leaf of shape {:?} ({}) was replaced (Module::to_device/to_dtype or Var::supersede) \
                 after this graph was recorded; run the forward again after moving",
                old.tensor.dims(),
                old.tensor.dtype()
            )));
        }
    }

    // Leaves: hooks, then accumulate or capture.
    for leaf in leaf_order {
        let k = Arc::as_ptr(&leaf) as usize;
        let Some(g) = leaf_grads.remove(k).flatten() else { continue };
        let hooks = leaf.hooks.snapshot();
        let g = if hooks.is_empty() { g } else { run_hooks(&hooks, g, &|| "a leaf".to_string())? };
        if inputs.is_some() {
            if let Some(&i) = captures.get(k) {
                accumulate(&mut captured[i], g)?;
            }
        } else {
            store_leaf_grad(&leaf, g, create_graph)?;
        }
    }
    Ok(captured)
}

/// The gradients of `outputs` with respect to `inputs` (PyTorch's
/// `torch.autograd.grad`), leaving every `.grad` untouched.
///
/// `grad_outputs` defaults to ones for one-element outputs. With `create_graph` the
/// returned gradients carry a graph (for higher-order derivatives) and the graph of
/// `outputs` is kept. An input the outputs do not depend on gets `None`.
///
/// ```
/// use autograd::{grad, Var};
/// use tensor_core::Tensor;
/// let x = Var::param(Tensor::new(&[3.0f64]))?;
/// let y = x.pow_scalar(3.0)?.sum(&[], false)?;          // x^3
/// let dy = grad(&[y], &[x.clone()], None, true)?[0].clone().unwrap();   // 3x^2
/// let d2y = grad(&[dy.sum(&[], false)?], &[x.clone()], None, false)?[0].clone().unwrap(); // 6x
/// assert_eq!(d2y.tensor().to_vec::<f64>()?, vec![18.0]);
/// assert!(x.grad().is_none());
/// # Ok::<(), tensor_core::Error>(())
/// ```
pub fn grad(
    outputs: &[Var],
    inputs: &[Var],
    grad_outputs: Option<&[Tensor]>,
    create_graph: bool,
) -> Result<Vec<Option<Var>>> {
    let grads = match grad_outputs {
        Some(g) => g.iter().map(|t| Var::from(t.clone())).collect(),
        None => outputs
            .iter()
            .map(|o| {
                if o.numel() != 1 {
                    return Err(Error::Autograd(format!(
                        "grad can be implicitly created only for scalar outputs, got shape {:?}",
                        o.dims()
                    )));
                }
                Ok(Var::from(o.tensor().ones_like()?))
            })
            .collect::<Result<SmallVec<_>>>()?,
    };
    run(outputs, grads, create_graph, create_graph, Some(inputs))
}

/// [`grad`] with gradient outputs that are themselves `Var`s (so the result can be
/// differentiated with respect to them too, as `gradgradcheck` needs) and an
/// explicit `retain_graph`.
pub fn grad_with(
    outputs: &[Var],
    inputs: &[Var],
    grad_outputs: &[Var],
    retain_graph: bool,
    create_graph: bool,
) -> Result<Vec<Option<Var>>> {
    run(outputs, grad_outputs.iter().cloned().collect(), retain_graph, create_graph, Some(inputs))
}
