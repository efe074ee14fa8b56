//! Fused scaled dot-product attention on the CPU (f32, f64): no `L x S` score matrix.
//!
//! The forward takes one query row at a time: its scores against the keys it may see
//! go into a per-thread scratch row of `S` values, then the softmax (shifted by the
//! row max) weights the values; it also returns each row's log-sum-exp. The backward
//! (FlashAttention's) recomputes each row's probabilities from that log-sum-exp, with
//! `D_i = dO_i · O_i`: `ds_ij = p_ij (dO_i · v_j - D_i)`, `dq_i = scale Σ_j ds_ij k_j`,
//! `dk_j += scale ds_ij q_i`, `dv_j += p_ij dO_i`. Memory is linear in the sequence
//! length. The forward runs rows in parallel; the backward runs one (batch, head)
//! slice per task, rows in order, so the key and value gradients it accumulates do
//! not depend on the number of threads.

use num_traits::Float;
use rayon::prelude::*;

use super::{alloc, HostBuffer};
use crate::dtype::Elem;
use crate::{Layout, Result};

use crate::AttentionDims as Dims;

trait AttnFloat: Float + Elem + std::iter::Sum {
    /// `e^x` for `x <= 0`.
    fn exp_nonpos(x: Self) -> Self;
    fn slice(b: &HostBuffer) -> Option<&[Self]>;
}

impl AttnFloat for f32 {
    #[inline(always)]
    fn exp_nonpos(x: f32) -> f32 {
        super::reduce::exp_neg_f32(x)
    }
    fn slice(b: &HostBuffer) -> Option<&[f32]> {
        match b {
            HostBuffer::F32(v) => Some(v),
            _ => None,
        }
    }
}

impl AttnFloat for f64 {
    #[inline(always)]
    fn exp_nonpos(x: f64) -> f64 {
        x.exp()
    }
    fn slice(b: &HostBuffer) -> Option<&[f64]> {
        match b {
            HostBuffer::F64(v) => Some(v),
            _ => None,
        }
    }
}

#[inline(always)]
fn dot<T: AttnFloat>(a: &[T], b: &[T]) -> T {
    // Eight independent partial sums (vectorisable), combined in a fixed order.
    let mut acc = [T::zero(); 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] = acc[k] + x[k] * y[k];
        }
    }
    let mut s = T::zero();
    for (x, y) in ra.iter().zip(rb) {
        s = s + *x * *y;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + s
}

#[inline(always)]
fn axpy<T: AttnFloat>(y: &mut [T], a: T, x: &[T]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y = *y + a * *x;
    }
}

/// Keys query `i` may see.
#[inline(always)]
fn visible(i: usize, s: usize, causal: bool) -> usize {
    if causal {
        (i + 1).min(s)
    } else {
        s
    }
}

fn slices<'a, T: AttnFloat>(bufs: &[(&'a HostBuffer, &Layout)]) -> Option<Vec<&'a [T]>> {
    bufs.iter().map(|(b, l)| Some(&T::slice(b)?[l.contiguous_range()?])).collect()
}

/// Forward: `(out [bh, l, ev], lse [bh, l])`; `None` for dtypes or layouts it does not
/// take (the caller runs the composite).
pub fn forward(
    q: (&HostBuffer, &Layout),
    k: (&HostBuffer, &Layout),
    v: (&HostBuffer, &Layout),
    d: Dims,
    scale: f64,
    causal: bool,
) -> Option<Result<Vec<HostBuffer>>> {
    fn run<T: AttnFloat>(s: &[&[T]], d: Dims, scale: f64, causal: bool) -> Result<Vec<HostBuffer>> {
        let (q, k, v) = (s[0], s[1], s[2]);
        let mut out = alloc::uninit::<T>(d.bh * d.l * d.ev)?;
        let mut lse = alloc::uninit::<T>(d.bh * d.l)?;
        let scale = T::from_f64(scale);
        let row = |scores: &mut Vec<T>, (r, (o, lse)): (usize, (&mut [T], &mut T))| {
            let (b, i) = (r / d.l, r % d.l);
            let qi = &q[r * d.e..(r + 1) * d.e];
            let kb = &k[b * d.s * d.e..(b + 1) * d.s * d.e];
            let vb = &v[b * d.s * d.ev..(b + 1) * d.s * d.ev];
            let n = visible(i, d.s, causal);
            scores.clear();
            scores.extend(kb.chunks_exact(d.e).take(n).map(|kj| dot(qi, kj) * scale));
            let m = scores.iter().fold(T::neg_infinity(), |m, &x| if x > m || x.is_nan() { x } else { m });
            o.fill(T::zero());
            let mut sum = T::zero();
            for (p, vj) in scores.iter_mut().zip(vb.chunks_exact(d.ev)) {
                *p = T::exp_nonpos(*p - m);
                sum = sum + *p;
                axpy(o, *p, vj);
            }
            let inv = sum.recip();
            for x in o.iter_mut() {
                *x = *x * inv;
            }
            *lse = m + sum.ln();
        };
        if d.bh * d.l * d.s * (d.e + d.ev) >= 1 << 16 {
            out.par_chunks_mut(d.ev).zip(lse.par_iter_mut()).enumerate().for_each_init(Vec::new, row);
        } else {
            let mut scratch = Vec::new();
            out.chunks_mut(d.ev).zip(lse.iter_mut()).enumerate().for_each(|x| row(&mut scratch, x));
        }
        Ok(vec![T::wrap(out), T::wrap(lse)])
    }
    match q.0 {
        HostBuffer::F32(_) => Some(run::<f32>(&slices::<f32>(&[q, k, v])?, d, scale, causal)),
        HostBuffer::F64(_) => Some(run::<f64>(&slices::<f64>(&[q, k, v])?, d, scale, causal)),
        _ => None,
    }
}

/// Backward: `(dq, dk, dv)` from the forward's inputs, its output and log-sum-exp, and
/// the output's gradient `g`.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    q: (&HostBuffer, &Layout),
    k: (&HostBuffer, &Layout),
    v: (&HostBuffer, &Layout),
    out: (&HostBuffer, &Layout),
    lse: (&HostBuffer, &Layout),
    g: (&HostBuffer, &Layout),
    d: Dims,
    scale: f64,
    causal: bool,
) -> Option<Result<Vec<HostBuffer>>> {
    fn run<T: AttnFloat>(s: &[&[T]], d: Dims, scale: f64, causal: bool) -> Result<Vec<HostBuffer>> {
        let (q, k, v, o, lse, g) = (s[0], s[1], s[2], s[3], s[4], s[5]);
        let mut dq = alloc::uninit::<T>(d.bh * d.l * d.e)?;
        let mut dk = alloc::uninit::<T>(d.bh * d.s * d.e)?;
        let mut dv = alloc::uninit::<T>(d.bh * d.s * d.ev)?;
        let scale = T::from_f64(scale);
        #[allow(clippy::type_complexity)]
        let slice = |(b, ((dq, dk), dv)): (usize, ((&mut [T], &mut [T]), &mut [T]))| {
            dk.fill(T::zero());
            dv.fill(T::zero());
            let kb = &k[b * d.s * d.e..(b + 1) * d.s * d.e];
            let vb = &v[b * d.s * d.ev..(b + 1) * d.s * d.ev];
            for (i, dqi) in dq.chunks_exact_mut(d.e).enumerate() {
                let r = b * d.l + i;
                let qi = &q[r * d.e..(r + 1) * d.e];
                let (oi, gi) = (&o[r * d.ev..(r + 1) * d.ev], &g[r * d.ev..(r + 1) * d.ev]);
                let di = dot(gi, oi);
                let li = lse[r];
                dqi.fill(T::zero());
                let n = visible(i, d.s, causal);
                for j in 0..n {
                    let kj = &kb[j * d.e..(j + 1) * d.e];
                    let vj = &vb[j * d.ev..(j + 1) * d.ev];
                    // p <= 1 up to rounding; the clamp keeps NaN.
                    let x = dot(qi, kj) * scale - li;
                    let p = T::exp_nonpos(if x > T::zero() { T::zero() } else { x });
                    let ds = p * (dot(gi, vj) - di) * scale;
                    axpy(dqi, ds, kj);
                    axpy(&mut dk[j * d.e..(j + 1) * d.e], ds, qi);
                    axpy(&mut dv[j * d.ev..(j + 1) * d.ev], p, gi);
                }
            }
        };
        if d.bh > 1 && d.bh * d.l * d.s * (d.e + d.ev) >= 1 << 16 {
            dq.par_chunks_mut(d.l * d.e)
                .zip(dk.par_chunks_mut(d.s * d.e))
                .zip(dv.par_chunks_mut(d.s * d.ev))
                .enumerate()
                .for_each(slice);
        } else {
            dq.chunks_mut(d.l * d.e)
                .zip(dk.chunks_mut(d.s * d.e))
                .zip(dv.chunks_mut(d.s * d.ev))
                .enumerate()
                .for_each(slice);
        }
        Ok(vec![T::wrap(dq), T::wrap(dk), T::wrap(dv)])
    }
    let bufs = [q, k, v, out, lse, g];
    match q.0 {
        HostBuffer::F32(_) => Some(run::<f32>(&slices::<f32>(&bufs)?, d, scale, causal)),
        HostBuffer::F64(_) => Some(run::<f64>(&slices::<f64>(&bufs)?, d, scale, causal)),
        _ => None,
    }
}
