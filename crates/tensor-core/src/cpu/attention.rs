//! Fused scaled dot-product attention on the CPU (f32, f64): no `L x S` score matrix.
//!
//! Each (batch, head) slice is one task; inside it, queries go in blocks of [`BQ`]
//! rows. The forward computes a block's scores against the keys it may see with one
//! GEMM into a `BQ x S` scratch (memory linear in the sequence length), takes the
//! softmax of each row (shifted by its max) in place, multiplies by the values with a
//! second GEMM, and returns each row's log-sum-exp. The backward (FlashAttention's)
//! recomputes a block's probabilities `P` from that log-sum-exp and, with
//! `D_i = dO_i · O_i`: `dV += Pᵀ dO`, `dS = P ∘ (dO Vᵀ - D) · scale`, `dQ = dS K`,
//! `dK += dSᵀ Q`, all GEMMs on the block. Blocks run in order inside a task and the
//! GEMMs run single-threaded, so no result depends on the number of threads. Up to
//! [`ROWS_MAX_KEYS`] keys the same algorithm runs one query row at a time with dot
//! products instead (GEMM calls on such small blocks cost more than they save).

use gemm::{gemm, Parallelism};
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

/// Query rows per block.
const BQ: usize = 64;

/// Up to this many keys, a query row at a time ([`forward_rows`]) beats the GEMMs.
const ROWS_MAX_KEYS: usize = 128;

/// A row-major matrix view inside a slice: element `(i, j)` at `off + i * rs + j * cs`.
#[derive(Clone, Copy)]
struct Mat {
    off: usize,
    rs: usize,
    cs: usize,
}

/// `dst[m x n] (row-major, row stride ld) = (acc ? dst : 0) + alpha * a[m x k] @ b[k x n]`.
#[allow(clippy::too_many_arguments)]
fn mm<T: AttnFloat>(
    (m, n, k): (usize, usize, usize),
    dst: &mut [T],
    ld: usize,
    acc: bool,
    alpha: T,
    a: &[T],
    am: Mat,
    b: &[T],
    bm: Mat,
) {
    if m == 0 || n == 0 || k == 0 {
        if !acc {
            for r in dst.chunks_mut(ld.max(1)).take(m) {
                r[..n].fill(T::zero());
            }
        }
        return;
    }
    let last = |x: Mat, r: usize, c: usize| x.off + (r - 1) * x.rs + (c - 1) * x.cs;
    // The callers build every view from the sizes they allocate; this keeps `gemm`'s
    // reads and writes inside the slices should one ever be wrong.
    if last(am, m, k) >= a.len() || last(bm, k, n) >= b.len() || (m - 1) * ld + n > dst.len() {
        unreachable!("attention GEMM view outside its buffer");
    }
    // SAFETY: the three views lie inside their slices (checked above); `dst` is
    // exclusively borrowed and does not overlap `a` or `b`.
    unsafe {
        gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            ld as isize,
            acc,
            a.as_ptr().add(am.off),
            am.cs as isize,
            am.rs as isize,
            b.as_ptr().add(bm.off),
            bm.cs as isize,
            bm.rs as isize,
            T::one(),
            alpha,
            false,
            false,
            false,
            Parallelism::None,
        )
    }
}

/// Keys the block of rows `i0..i0 + rows` may see, and masks (sets to -inf) the
/// scores of row `i` past key `i` when causal.
fn mask_block<T: AttnFloat>(sc: &mut [T], ld: usize, i0: usize, rows: usize, n: usize, causal: bool) {
    if causal {
        for (r, row) in sc.chunks_mut(ld).take(rows).enumerate() {
            let first_hidden = (i0 + r + 1).min(n);
            row[first_hidden..n].fill(T::neg_infinity());
        }
    }
}

fn visible_keys(i0: usize, rows: usize, s: usize, causal: bool) -> usize {
    if causal {
        (i0 + rows).min(s)
    } else {
        s
    }
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
    fn run<T: AttnFloat>(
        bufs: &[(&HostBuffer, &Layout)],
        d: Dims,
        scale: f64,
        causal: bool,
    ) -> Option<Result<Vec<HostBuffer>>> {
        let s = slices::<T>(bufs)?;
        Some(if d.s <= ROWS_MAX_KEYS {
            forward_rows(&s, d, scale, causal)
        } else {
            forward_blocks(&s, d, scale, causal)
        })
    }
    match q.0 {
        HostBuffer::F32(_) => run::<f32>(&[q, k, v], d, scale, causal),
        HostBuffer::F64(_) => run::<f64>(&[q, k, v], d, scale, causal),
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
    fn run<T: AttnFloat>(
        bufs: &[(&HostBuffer, &Layout)],
        d: Dims,
        scale: f64,
        causal: bool,
    ) -> Option<Result<Vec<HostBuffer>>> {
        let s = slices::<T>(bufs)?;
        Some(if d.s <= ROWS_MAX_KEYS {
            backward_rows(&s, d, scale, causal)
        } else {
            backward_blocks(&s, d, scale, causal)
        })
    }
    let bufs = [q, k, v, out, lse, g];
    match q.0 {
        HostBuffer::F32(_) => run::<f32>(&bufs, d, scale, causal),
        HostBuffer::F64(_) => run::<f64>(&bufs, d, scale, causal),
        _ => None,
    }
}

fn slices<'a, T: AttnFloat>(bufs: &[(&'a HostBuffer, &Layout)]) -> Option<Vec<&'a [T]>> {
    bufs.iter().map(|(b, l)| Some(&T::slice(b)?[l.contiguous_range()?])).collect()
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

/// [`forward`] in GEMM blocks of [`BQ`] queries.
fn forward_blocks<T: AttnFloat>(s: &[&[T]], d: Dims, scale: f64, causal: bool) -> Result<Vec<HostBuffer>> {
    let (q, k, v) = (s[0], s[1], s[2]);
    let mut out = alloc::uninit::<T>(d.bh * d.l * d.ev)?;
    let mut lse = alloc::uninit::<T>(d.bh * d.l)?;
    let scale = T::from_f64(scale);
    let slice = |sc: &mut Vec<T>, (b, (o, lse)): (usize, (&mut [T], &mut [T]))| {
        sc.resize(BQ * d.s, T::zero());
        for i0 in (0..d.l).step_by(BQ) {
            let rows = BQ.min(d.l - i0);
            let n = visible_keys(i0, rows, d.s, causal);
            let qm = Mat { off: (b * d.l + i0) * d.e, rs: d.e, cs: 1 };
            // Kᵀ: element (c, j) is k[j, c].
            let ktm = Mat { off: b * d.s * d.e, rs: 1, cs: d.e };
            mm((rows, n, d.e), sc, d.s, false, scale, q, qm, k, ktm);
            mask_block(sc, d.s, i0, rows, n, causal);
            for (r, row) in sc.chunks_mut(d.s).take(rows).enumerate() {
                let row = &mut row[..n];
                let m = row.iter().fold(T::neg_infinity(), |m, &x| if x > m || x.is_nan() { x } else { m });
                let mut sum = T::zero();
                for p in row.iter_mut() {
                    *p = T::exp_nonpos(*p - m);
                    sum = sum + *p;
                }
                let inv = sum.recip();
                for p in row.iter_mut() {
                    *p = *p * inv;
                }
                lse[i0 + r] = m + sum.ln();
            }
            let vm = Mat { off: b * d.s * d.ev, rs: d.ev, cs: 1 };
            let pm = Mat { off: 0, rs: d.s, cs: 1 };
            mm((rows, d.ev, n), &mut o[i0 * d.ev..], d.ev, false, T::one(), sc, pm, v, vm);
        }
    };
    let work = d.bh * d.l * d.s * (d.e + d.ev);
    if d.bh > 1 && work >= 1 << 16 {
        out.par_chunks_mut(d.l * d.ev).zip(lse.par_chunks_mut(d.l)).enumerate().for_each_init(Vec::new, slice);
    } else {
        let mut sc = Vec::new();
        out.chunks_mut(d.l * d.ev).zip(lse.chunks_mut(d.l)).enumerate().for_each(|x| slice(&mut sc, x));
    }
    Ok(vec![T::wrap(out), T::wrap(lse)])
}

/// [`backward`] in GEMM blocks of [`BQ`] queries.
fn backward_blocks<T: AttnFloat>(s: &[&[T]], d: Dims, scale: f64, causal: bool) -> Result<Vec<HostBuffer>> {
    let (q, k, v, o, lse, g) = (s[0], s[1], s[2], s[3], s[4], s[5]);
    let mut dq = alloc::uninit::<T>(d.bh * d.l * d.e)?;
    let mut dk = alloc::uninit::<T>(d.bh * d.s * d.e)?;
    let mut dv = alloc::uninit::<T>(d.bh * d.s * d.ev)?;
    let scale = T::from_f64(scale);
    #[allow(clippy::type_complexity)]
    let slice = |bufs: &mut (Vec<T>, Vec<T>), (b, ((dq, dk), dv)): (usize, ((&mut [T], &mut [T]), &mut [T]))| {
        let (p, ds) = bufs;
        p.resize(BQ * d.s, T::zero());
        ds.resize(BQ * d.s, T::zero());
        dk.fill(T::zero());
        dv.fill(T::zero());
        for i0 in (0..d.l).step_by(BQ) {
            let rows = BQ.min(d.l - i0);
            let n = visible_keys(i0, rows, d.s, causal);
            let qm = Mat { off: (b * d.l + i0) * d.e, rs: d.e, cs: 1 };
            let gm = Mat { off: (b * d.l + i0) * d.ev, rs: d.ev, cs: 1 };
            let ktm = Mat { off: b * d.s * d.e, rs: 1, cs: d.e };
            let km = Mat { off: b * d.s * d.e, rs: d.e, cs: 1 };
            let vtm = Mat { off: b * d.s * d.ev, rs: 1, cs: d.ev };
            // P = exp(scale q kᵀ - lse), masked entries 0.
            mm((rows, n, d.e), p, d.s, false, scale, q, qm, k, ktm);
            mask_block(p, d.s, i0, rows, n, causal);
            for (r, row) in p.chunks_mut(d.s).take(rows).enumerate() {
                let li = lse[b * d.l + i0 + r];
                for x in row[..n].iter_mut() {
                    let y = *x - li;
                    // p <= 1 up to rounding; the clamp keeps NaN.
                    *x = T::exp_nonpos(if y > T::zero() { T::zero() } else { y });
                }
            }
            // dV += Pᵀ dO.
            let ptm = Mat { off: 0, rs: 1, cs: d.s };
            mm((n, d.ev, rows), dv, d.ev, true, T::one(), p, ptm, g, gm);
            // dS = P (dO vᵀ - D) scale.
            mm((rows, n, d.ev), ds, d.s, false, T::one(), g, gm, v, vtm);
            for r in 0..rows {
                let row0 = (b * d.l + i0 + r) * d.ev;
                let (gi, oi) = (&g[row0..row0 + d.ev], &o[row0..row0 + d.ev]);
                let di = gi.iter().zip(oi).fold(T::zero(), |a, (&x, &y)| a + x * y);
                for (x, &pv) in ds[r * d.s..r * d.s + n].iter_mut().zip(&p[r * d.s..r * d.s + n]) {
                    *x = pv * (*x - di) * scale;
                }
            }
            // dQ = dS K; dK += dSᵀ Q.
            let dsm = Mat { off: 0, rs: d.s, cs: 1 };
            mm((rows, d.e, n), &mut dq[i0 * d.e..], d.e, false, T::one(), ds, dsm, k, km);
            let dstm = Mat { off: 0, rs: 1, cs: d.s };
            mm((n, d.e, rows), dk, d.e, true, T::one(), ds, dstm, q, qm);
        }
    };
    let work = d.bh * d.l * d.s * (d.e + d.ev);
    if d.bh > 1 && work >= 1 << 16 {
        dq.par_chunks_mut(d.l * d.e)
            .zip(dk.par_chunks_mut(d.s * d.e))
            .zip(dv.par_chunks_mut(d.s * d.ev))
            .enumerate()
            .for_each_init(|| (Vec::new(), Vec::new()), slice);
    } else {
        let mut bufs = (Vec::new(), Vec::new());
        dq.chunks_mut(d.l * d.e)
            .zip(dk.chunks_mut(d.s * d.e))
            .zip(dv.chunks_mut(d.s * d.ev))
            .enumerate()
            .for_each(|x| slice(&mut bufs, x));
    }
    Ok(vec![T::wrap(dq), T::wrap(dk), T::wrap(dv)])
}

/// [`forward`] one query row at a time (for short sequences, where GEMM calls cost more
/// than they save).
fn forward_rows<T: AttnFloat>(s: &[&[T]], d: Dims, scale: f64, causal: bool) -> Result<Vec<HostBuffer>> {
    let (q, k, v) = (s[0], s[1], s[2]);
    let mut out = alloc::uninit::<T>(d.bh * d.l * d.ev)?;
    let mut lse = alloc::uninit::<T>(d.bh * d.l)?;
    let scale = T::from_f64(scale);
    let row = |scores: &mut Vec<T>, (r, (o, lse)): (usize, (&mut [T], &mut T))| {
        let (b, i) = (r / d.l, r % d.l);
        let qi = &q[r * d.e..(r + 1) * d.e];
        let kb = &k[b * d.s * d.e..(b + 1) * d.s * d.e];
        let vb = &v[b * d.s * d.ev..(b + 1) * d.s * d.ev];
        let n = visible_keys(i, 1, d.s, causal);
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

/// [`backward`] one query row at a time.
fn backward_rows<T: AttnFloat>(s: &[&[T]], d: Dims, scale: f64, causal: bool) -> Result<Vec<HostBuffer>> {
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
            let n = visible_keys(i, 1, d.s, causal);
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
