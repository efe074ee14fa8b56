//! The CPU backend's fused optimizer updates ([`crate::FusedOp::OptimizerStep`]): one
//! loop over the contiguous f32/f64 host slices of a parameter, its gradient and its
//! state, instead of a chain of tensor ops (each of which would allocate and walk the
//! whole parameter). Each formula matches the optimizer's composite form in `optim`
//! (PyTorch's `foreach=False` path), operation for operation.

use std::ops::{Add, Div, Mul, Neg, Sub};

use super::HostBuffer;
use crate::backend::{Buffer, Span};
use crate::fused::{AdagradConfig, AdamConfig, OptimizerUpdate, RmsPropConfig, SgdConfig};
use crate::{Error, Result};

/// The float types the fused loops run on.
trait Real:
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
    fn slice(b: &HostBuffer) -> Option<&[Self]>;
    fn slice_mut(b: &mut HostBuffer) -> Option<&mut [Self]>;
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

macro_rules! real {
    ($t:ty, $variant:ident) => {
        impl Real for $t {
            fn of(v: f64) -> Self {
                v as $t
            }
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            fn slice(b: &HostBuffer) -> Option<&[Self]> {
                match b {
                    HostBuffer::$variant(v) => Some(v),
                    _ => None,
                }
            }
            fn slice_mut(b: &mut HostBuffer) -> Option<&mut [Self]> {
                match b {
                    HostBuffer::$variant(v) => Some(v),
                    _ => None,
                }
            }
        }
    };
}
real!(f32, F32);
real!(f64, F64);

/// Runs `update` in place; `None` when the buffers are not f32/f64 host buffers of
/// one dtype (the caller then uses tensor ops).
pub(crate) fn step(
    update: &OptimizerUpdate,
    param: (&mut dyn Buffer, Span),
    grad: (&dyn Buffer, Span),
    state: Vec<(&mut dyn Buffer, Span)>,
) -> Option<Result<()>> {
    let dt = param.0.dtype();
    if grad.0.dtype() != dt || state.iter().any(|(b, _)| b.dtype() != dt) {
        return None;
    }
    match dt {
        crate::DType::F32 => step_typed::<f32>(update, param, grad, state),
        crate::DType::F64 => step_typed::<f64>(update, param, grad, state),
        _ => None,
    }
}

/// The span's slice of a host buffer, checked against the buffer's length.
fn span_of<'a, T: Real>(b: &'a HostBuffer, s: Span, op: &'static str) -> Option<Result<&'a [T]>> {
    let v = T::slice(b)?;
    Some(s.offset.checked_add(s.len).and_then(|end| v.get(s.offset..end)).ok_or_else(|| bad_span(op, s, v.len())))
}

fn bad_span(op: &'static str, s: Span, len: usize) -> Error {
    Error::arg(op, format!("span {s:?} does not fit a buffer of {len} elements"))
}

fn step_typed<T: Real>(
    update: &OptimizerUpdate,
    param: (&mut dyn Buffer, Span),
    grad: (&dyn Buffer, Span),
    state: Vec<(&mut dyn Buffer, Span)>,
) -> Option<Result<()>> {
    let op = update.name();
    if state.len() != update.state_len() {
        return Some(Err(Error::arg(
            op,
            format!("expected {} state buffers, got {}", update.state_len(), state.len()),
        )));
    }
    let n = param.1.len;
    if grad.1.len != n || state.iter().any(|(_, s)| s.len != n) {
        return Some(Err(Error::arg(op, "the parameter, gradient and state spans must have one length")));
    }
    let g = match span_of::<T>(grad.0.as_host()?, grad.1, op)? {
        Ok(g) => g,
        Err(e) => return Some(Err(e)),
    };
    let mut slices: Vec<&mut [T]> = Vec::with_capacity(state.len());
    for (b, s) in state {
        let v = T::slice_mut(b.as_host_mut()?)?;
        let len = v.len();
        match s.offset.checked_add(n).and_then(|end| v.get_mut(s.offset..end)) {
            Some(x) => slices.push(x),
            None => return Some(Err(bad_span(op, s, len))),
        }
    }
    let pv = T::slice_mut(param.0.as_host_mut()?)?;
    let len = pv.len();
    let Some(p) = param.1.offset.checked_add(n).and_then(|end| pv.get_mut(param.1.offset..end)) else {
        return Some(Err(bad_span(op, param.1, len)));
    };
    match update {
        OptimizerUpdate::Sgd(c) => sgd(c, p, g, &mut slices),
        OptimizerUpdate::Adam(c) => adam(c, p, g, &mut slices),
        OptimizerUpdate::Adagrad(c) => adagrad(c, p, g, &mut slices),
        OptimizerUpdate::RmsProp(c) => rmsprop(c, p, g, &mut slices),
    }
    Some(Ok(()))
}

fn sgd<T: Real>(c: &SgdConfig, p: &mut [T], g: &[T], state: &mut [&mut [T]]) {
    let (wd, mom, damp, lr) = (T::of(c.weight_decay), T::of(c.momentum), T::of(1.0 - c.dampening), T::of(-c.lr));
    let use_wd = c.weight_decay != 0.0;
    match state {
        [] => {
            for (p, &g) in p.iter_mut().zip(g) {
                let mut d = if c.maximize { -g } else { g };
                if use_wd {
                    d = d + wd * *p;
                }
                *p = *p + lr * d;
            }
        }
        [buf, ..] => {
            for ((p, &g), b) in p.iter_mut().zip(g).zip(buf.iter_mut()) {
                let mut d = if c.maximize { -g } else { g };
                if use_wd {
                    d = d + wd * *p;
                }
                *b = if c.first_step { d } else { *b * mom + damp * d };
                d = if c.nesterov { d + mom * *b } else { *b };
                *p = *p + lr * d;
            }
        }
    }
}

fn adam<T: Real>(c: &AdamConfig, p: &mut [T], g: &[T], state: &mut [&mut [T]]) {
    let t = c.step as f64;
    let bc1 = 1.0 - c.beta1.powf(t);
    let bc2_sqrt = T::of((1.0 - c.beta2.powf(t)).sqrt());
    let step_size = T::of(-(c.lr / bc1));
    let eps = T::of(c.eps);
    let (wd, w1, one_m_b2, b2) = (T::of(c.weight_decay), 1.0 - c.beta1, T::of(1.0 - c.beta2), T::of(c.beta2));
    let decay = T::of(1.0 - c.lr * c.weight_decay);
    let l2 = !c.decoupled && c.weight_decay != 0.0;
    let dec = c.decoupled && c.weight_decay != 0.0;
    let (m, v, vmax) = match state {
        [m, v] => (m, v, None),
        [m, v, vmax, ..] => (m, v, Some(vmax)),
        _ => return,
    };
    // One length for every slice, so the loop has no bounds checks and vectorizes
    // (without this the step ran about 1.4x slower on W5).
    let n = p.len();
    let (m, v, g) = (&mut m[..n], &mut v[..n], &g[..n]);
    let mut vmax = vmax.map(|x| &mut x[..n]);
    for i in 0..n {
        let mut gi = if c.maximize { -g[i] } else { g[i] };
        let mut pi = p[i];
        if dec {
            pi = pi * decay;
        }
        if l2 {
            gi = gi + wd * pi;
        }
        let mi = T::lerp(m[i], gi, w1);
        let vi = v[i] * b2 + one_m_b2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        let vhat = match vmax.as_deref_mut() {
            Some(vm) => {
                let x = vm[i].maximum(vi);
                vm[i] = x;
                x
            }
            None => vi,
        };
        let denom = vhat.sqrt() / bc2_sqrt + eps;
        p[i] = pi + step_size * (mi / denom);
    }
}

fn adagrad<T: Real>(c: &AdagradConfig, p: &mut [T], g: &[T], state: &mut [&mut [T]]) {
    let (wd, eps, clr) = (T::of(c.weight_decay), T::of(c.eps), T::of(-c.lr));
    let Some(sum) = state.first_mut() else { return };
    for ((p, &g), s) in p.iter_mut().zip(g).zip(sum.iter_mut()) {
        let mut gi = if c.maximize { -g } else { g };
        if c.weight_decay != 0.0 {
            gi = gi + wd * *p;
        }
        *s = *s + gi * gi;
        *p = *p + clr * (gi / (s.sqrt() + eps));
    }
}

fn rmsprop<T: Real>(c: &RmsPropConfig, p: &mut [T], g: &[T], state: &mut [&mut [T]]) {
    let (alpha, one_m_alpha, eps, wd, lr, mom) =
        (T::of(c.alpha), T::of(1.0 - c.alpha), T::of(c.eps), T::of(c.weight_decay), T::of(-c.lr), T::of(c.momentum));
    let (square_avg, rest) = match state {
        [sq, rest @ ..] => (sq, rest),
        [] => return,
    };
    // State order: square_avg, then grad_avg (centered), then momentum_buffer.
    let (mut grad_avg, rest) = match (c.centered, rest) {
        (true, [ga, rest @ ..]) => (Some(ga), rest),
        (_, rest) => (None, rest),
    };
    let mut momentum_buffer = match (c.momentum > 0.0, rest) {
        (true, [b, ..]) => Some(b),
        _ => None,
    };
    for i in 0..p.len() {
        let mut gi = if c.maximize { -g[i] } else { g[i] };
        if c.weight_decay != 0.0 {
            gi = gi + wd * p[i];
        }
        let s = square_avg[i] * alpha + one_m_alpha * gi * gi;
        square_avg[i] = s;
        let avg = match grad_avg.as_deref_mut() {
            Some(ga) => {
                let a = T::lerp(ga[i], gi, 1.0 - c.alpha);
                ga[i] = a;
                (s + -(a * a)).sqrt()
            }
            None => s.sqrt(),
        } + eps;
        match momentum_buffer.as_deref_mut() {
            Some(b) => {
                let x = b[i] * mom + gi / avg;
                b[i] = x;
                p[i] = p[i] + lr * x;
            }
            None => p[i] = p[i] + lr * (gi / avg),
        }
    }
}
