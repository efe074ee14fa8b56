//! The CPU fast path: one loop over the contiguous f32/f64 host buffers of a parameter,
//! its gradient and its state, instead of a chain of tensor ops (each of which would
//! allocate and walk the whole parameter).

use std::ops::{Add, Div, Mul, Neg, Sub};

use tensor_core::cpu::CpuBuffer;
use tensor_core::device::{lock_all, lock_in_order, Access};
use tensor_core::{DType, Result, Tensor};

/// The float types the fused loops run on.
pub(crate) trait Real:
    Copy
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
{
    fn of(v: f64) -> Self;
    fn sqrt(self) -> Self;
    fn slice(b: &CpuBuffer) -> Option<&[Self]>;
    fn slice_mut(b: &mut CpuBuffer) -> Option<&mut [Self]>;
    /// NaN-propagating maximum (like `torch.maximum`).
    fn maximum(self, o: Self) -> Self {
        #[allow(clippy::eq_op)] // `x != x` is the NaN test for this generic float
        let nan = self != self;
        if nan || self > o {
            self
        } else {
            o
        }
    }
    /// PyTorch's `lerp`: `a + w (b - a)` for `w < 0.5`, else `b - (b - a)(1 - w)`.
    fn lerp(a: Self, b: Self, w: f64) -> Self {
        if w < 0.5 {
            a + Self::of(w) * (b - a)
        } else {
            b - (b - a) * Self::of(1.0 - w)
        }
    }
}

impl Real for f32 {
    fn of(v: f64) -> Self {
        v as f32
    }
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
    fn slice(b: &CpuBuffer) -> Option<&[Self]> {
        match b {
            CpuBuffer::F32(v) => Some(v),
            _ => None,
        }
    }
    fn slice_mut(b: &mut CpuBuffer) -> Option<&mut [Self]> {
        match b {
            CpuBuffer::F32(v) => Some(v),
            _ => None,
        }
    }
}

impl Real for f64 {
    fn of(v: f64) -> Self {
        v
    }
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
    fn slice(b: &CpuBuffer) -> Option<&[Self]> {
        match b {
            CpuBuffer::F64(v) => Some(v),
            _ => None,
        }
    }
    fn slice_mut(b: &mut CpuBuffer) -> Option<&mut [Self]> {
        match b {
            CpuBuffer::F64(v) => Some(v),
            _ => None,
        }
    }
}

/// An elementwise update over a parameter, its gradient and its state buffers
/// (all of one length).
pub(crate) trait Kernel {
    fn run<T: Real>(&self, param: &mut [T], grad: &[T], state: &mut [&mut [T]]);
}

/// True when the fused loop can handle these tensors: all on the CPU, contiguous, of
/// the parameter's dtype (f32 or f64), the gradient and the state not sharing
/// storage with the parameter or each other.
pub(crate) fn applies(param: &Tensor, grad: &Tensor, state: &[&Tensor]) -> bool {
    let dt = param.dtype();
    if !matches!(dt, DType::F32 | DType::F64) || !param.device().is_cpu() {
        return false;
    }
    let mut all = vec![param, grad];
    all.extend_from_slice(state);
    for (i, t) in all.iter().enumerate() {
        if t.dtype() != dt || !t.device().is_cpu() || !t.is_contiguous() || t.dims() != param.dims() {
            return false;
        }
        if all[..i].iter().any(|u| u.same_storage(t)) {
            return false;
        }
    }
    true
}

/// Runs `k` on the host slices; `None` when the fast path does not apply (the caller
/// then uses tensor ops).
pub(crate) fn run<K: Kernel>(k: &K, param: &Tensor, grad: &Tensor, state: &[&Tensor]) -> Option<Result<()>> {
    if !applies(param, grad, state) {
        return None;
    }
    match param.dtype() {
        DType::F32 => run_typed::<f32, K>(k, param, grad, state),
        DType::F64 => run_typed::<f64, K>(k, param, grad, state),
        _ => None,
    }
}

fn run_typed<T: Real, K: Kernel>(k: &K, param: &Tensor, grad: &Tensor, state: &[&Tensor]) -> Option<Result<()>> {
    let pr = param.layout().contiguous_range()?;
    let gr = grad.layout().contiguous_range()?;
    let ranges: Vec<_> = state.iter().map(|s| s.layout().contiguous_range()).collect::<Option<_>>()?;
    // All locks at once, in the global order, so a concurrent in-place op on the same
    // tensors can't deadlock with this step.
    let mut reqs = Vec::with_capacity(state.len() + 2);
    reqs.push((&**grad.storage(), Access::Read));
    reqs.push((&**param.storage(), Access::Write));
    reqs.extend(state.iter().map(|s| (&**s.storage(), Access::Write)));
    let mut guards = lock_all(&reqs);
    let (head, sguards) = guards.split_at_mut(2);
    let [ggrd, pg] = head else { return None };
    let g = &T::slice(tensor_core::cpu::as_cpu_buffer(&***ggrd)?)?[gr];
    let mut slices: Vec<&mut [T]> = Vec::with_capacity(state.len());
    for (sg, r) in sguards.iter_mut().zip(ranges) {
        let b = tensor_core::cpu::as_cpu_buffer_mut(&mut **sg.as_mut()?)?;
        slices.push(&mut T::slice_mut(b)?[r]);
    }
    let p = &mut T::slice_mut(tensor_core::cpu::as_cpu_buffer_mut(&mut **pg.as_mut()?)?)?[pr];
    k.run(p, g, &mut slices);
    Some(Ok(()))
}

/// The device fast path of Adam/AdamW: the backend's fused update
/// ([`tensor_core::Backend::adam_update`]) for parameters off the CPU. `None` when the
/// tensors do not qualify (contiguous, one float dtype and device, one shape, distinct
/// storages) or the backend has no fused kernel.
pub(crate) fn device_adam(
    param: &Tensor,
    grad: &Tensor,
    exp_avg: &Tensor,
    exp_avg_sq: &Tensor,
    cfg: &tensor_core::AdamConfig,
) -> Option<Result<()>> {
    let dt = param.dtype();
    if !dt.is_float() || param.device().is_cpu() {
        return None;
    }
    let all = [param, grad, exp_avg, exp_avg_sq];
    for (i, t) in all.iter().enumerate() {
        if t.dtype() != dt
            || t.device().location() != param.device().location()
            || !t.is_contiguous()
            || t.dims() != param.dims()
        {
            return None;
        }
        if all[..i].iter().any(|u| u.same_storage(t)) {
            return None;
        }
    }
    let n = param.numel();
    let span = |t: &Tensor| tensor_core::Span { offset: t.layout().offset(), len: n };
    let [mut pw, gr, mut mw, mut vw] = lock_in_order([
        (&**param.storage(), Access::Write),
        (&**grad.storage(), Access::Read),
        (&**exp_avg.storage(), Access::Write),
        (&**exp_avg_sq.storage(), Access::Write),
    ]);
    param.device().backend().adam_update(
        (&mut **pw.as_mut()?, span(param)),
        (&**gr, span(grad)),
        (&mut **mw.as_mut()?, span(exp_avg)),
        (&mut **vw.as_mut()?, span(exp_avg_sq)),
        cfg,
    )
}
