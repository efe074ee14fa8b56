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
//! [`ROWS_MAX_KEYS`] keys the same algorithm runs one query row at a time instead
//! (GEMM calls on such small blocks cost more than they save): the slice's keys (and
//! values, in the backward) are transposed once, and a row's scores are computed
//! [`KEYS`] keys at a time in registers ([`scores_t`]); the forward's rows go in
//! blocks of [`ROW_BLOCK`] per task.

use gemm::{gemm, Parallelism};
use num_traits::Float;
use rayon::prelude::*;

use super::simd::{multiversion, Isa};
use super::{alloc, HostBuffer};
use crate::dtype::Elem;
use crate::{Error, Layout, Result};

use crate::AttentionDims as Dims;

trait AttnFloat: Float + Elem + std::iter::Sum {
    /// `e^x` for `x <= 0`.
    fn exp_nonpos(x: Self) -> Self;
    fn slice(b: &HostBuffer) -> Option<&[Self]>;
    /// [`fwd_row`], compiled for the widest vector level for f32.
    #[allow(clippy::too_many_arguments)]
    fn fwd_row(
        qi: &[Self],
        kt: &[Self],
        vb: &[Self],
        d: Dims,
        n: usize,
        scale: Self,
        scores: &mut Vec<Self>,
        o: &mut [Self],
    ) -> Self {
        fwd_row(qi, kt, vb, d, n, scale, scores, o)
    }
    /// [`softmax_rows`], compiled for the widest vector level for f32.
    fn softmax_rows(sc: &mut [Self], ld: usize, rows: usize, n: usize, lse: &mut [Self]) {
        softmax_rows(sc, ld, rows, n, lse)
    }
    /// [`probs_rows`], compiled for the widest vector level for f32.
    fn probs_rows(p: &mut [Self], ld: usize, rows: usize, n: usize, lse: &[Self]) {
        probs_rows(p, ld, rows, n, lse)
    }
    /// [`bwd_slice`], compiled for the widest vector level for f32.
    #[allow(clippy::too_many_arguments)]
    fn bwd_slice(
        s: &[&[Self]],
        b: usize,
        d: Dims,
        scale: Self,
        causal: bool,
        dq: &mut [Self],
        dk: &mut [Self],
        dv: &mut [Self],
    ) {
        bwd_slice(s, b, d, scale, causal, dq, dk, dv)
    }
}

multiversion! {
    /// [`fwd_row`] on f32.
    fn fwd_row_f32(
        qi: &[f32], kt: &[f32], vb: &[f32], d: Dims, n: usize, scale: f32, scores: &mut Vec<f32>, o: &mut [f32],
    ) -> f32 {
        fwd_row(qi, kt, vb, d, n, scale, scores, o)
    }
}

multiversion! {
    /// [`softmax_rows`] on f32.
    fn softmax_rows_f32(sc: &mut [f32], ld: usize, rows: usize, n: usize, lse: &mut [f32]) {
        softmax_rows(sc, ld, rows, n, lse)
    }
}

multiversion! {
    /// [`probs_rows`] on f32.
    fn probs_rows_f32(p: &mut [f32], ld: usize, rows: usize, n: usize, lse: &[f32]) {
        probs_rows(p, ld, rows, n, lse)
    }
}

multiversion! {
    /// [`bwd_slice`] on f32.
    fn bwd_slice_f32(
        s: &[&[f32]], b: usize, d: Dims, scale: f32, causal: bool, dq: &mut [f32], dk: &mut [f32], dv: &mut [f32],
    ) {
        bwd_slice(s, b, d, scale, causal, dq, dk, dv)
    }
}

impl AttnFloat for f32 {
    #[inline(always)]
    fn exp_nonpos(x: f32) -> f32 {
        super::reduce::exp_neg_f32(x)
    }
    fn fwd_row(
        qi: &[f32],
        kt: &[f32],
        vb: &[f32],
        d: Dims,
        n: usize,
        scale: f32,
        sc: &mut Vec<f32>,
        o: &mut [f32],
    ) -> f32 {
        fwd_row_f32(Isa::best(), qi, kt, vb, d, n, scale, sc, o)
    }
    fn bwd_slice(
        s: &[&[f32]],
        b: usize,
        d: Dims,
        scale: f32,
        causal: bool,
        dq: &mut [f32],
        dk: &mut [f32],
        dv: &mut [f32],
    ) {
        bwd_slice_f32(Isa::best(), s, b, d, scale, causal, dq, dk, dv)
    }
    fn softmax_rows(sc: &mut [f32], ld: usize, rows: usize, n: usize, lse: &mut [f32]) {
        softmax_rows_f32(Isa::best(), sc, ld, rows, n, lse)
    }
    fn probs_rows(p: &mut [f32], ld: usize, rows: usize, n: usize, lse: &[f32]) {
        probs_rows_f32(Isa::best(), p, ld, rows, n, lse)
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

/// The row kernels compute a query's scores this many keys at a time, in registers.
const KEYS: usize = 16;

/// Query rows per task of [`forward_rows`].
const ROW_BLOCK: usize = 16;

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
        if let Err(e) = check_lens("scaled_dot_product_attention", d, &s) {
            return Some(Err(e));
        }
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
        if let Err(e) = check_lens("scaled_dot_product_attention_backward", d, &s) {
            return Some(Err(e));
        }
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

/// Checks a descriptor against its buffers (a hand-built [`crate::FusedOp`] may be
/// wrong): every size positive, and `q, k, v` (then `out, lse, g` for the backward)
/// of `[bh, l, e]`, `[bh, s, e]`, `[bh, s, ev]` (`[bh, l, ev]`, `[bh, l]`, `[bh, l, ev]`)
/// elements.
fn check_lens<T>(op: &'static str, d: Dims, s: &[&[T]]) -> Result<()> {
    if [d.bh, d.l, d.s, d.e, d.ev].contains(&0) {
        return Err(Error::arg(op, format!("attention sizes must be positive, got {d:?}")));
    }
    let want =
        [[d.bh, d.l, d.e], [d.bh, d.s, d.e], [d.bh, d.s, d.ev], [d.bh, d.l, d.ev], [d.bh, d.l, 1], [d.bh, d.l, d.ev]];
    for (i, (x, w)) in s.iter().zip(want).enumerate() {
        let n = w.iter().try_fold(1usize, |a, &b| a.checked_mul(b));
        if n != Some(x.len()) {
            return Err(Error::arg(op, format!("operand {i} has {} elements, but {d:?} needs {w:?}", x.len())));
        }
    }
    Ok(())
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

/// `dst[c * sp + j] = src[j * cols + c]`: the `rows x cols` row-major `src`
/// transposed, its rows padded with zeros to `sp` (>= `rows`) columns.
fn transpose_padded<T: AttnFloat>(src: &[T], rows: usize, cols: usize, sp: usize, dst: &mut Vec<T>) {
    dst.clear();
    dst.resize(cols * sp, T::zero());
    for (j, r) in src.chunks_exact(cols).take(rows).enumerate() {
        for (c, &x) in r.iter().enumerate() {
            dst[c * sp + j] = x;
        }
    }
}

/// `out[j] = scale * Σ_c x[c] mt[c * sp + j]` for `j < np` (a multiple of [`KEYS`],
/// at most `sp`): `x` against the columns of a transposed matrix, [`KEYS`] columns at
/// a time in registers (no horizontal sums). The sum over `c` goes in four
/// interleaved partial sums (`c mod 4`, so the additions' latency overlaps), combined
/// in a fixed order.
#[inline(always)]
fn scores_t<T: AttnFloat>(x: &[T], mt: &[T], sp: usize, np: usize, scale: T, out: &mut [T]) {
    #[inline(always)]
    fn add_row<T: AttnFloat>(acc: &mut [T; KEYS], xc: T, m: &[T]) {
        let m = &m[..KEYS];
        for k in 0..KEYS {
            acc[k] = acc[k] + xc * m[k];
        }
    }
    let x4 = x.chunks_exact(4);
    let (rest, c_rest) = (x4.remainder(), x.len() - x.len() % 4);
    for (j0, o) in (0..np).step_by(KEYS).zip(out[..np].chunks_exact_mut(KEYS)) {
        let mut acc = [[T::zero(); KEYS]; 4];
        for (c4, xs) in x4.clone().enumerate() {
            for (u, acc) in acc.iter_mut().enumerate() {
                add_row(acc, xs[u], &mt[(c4 * 4 + u) * sp + j0..]);
            }
        }
        for (r, &xc) in rest.iter().enumerate() {
            add_row(&mut acc[r], xc, &mt[(c_rest + r) * sp + j0..]);
        }
        for k in 0..KEYS {
            o[k] = ((acc[0][k] + acc[1][k]) + (acc[2][k] + acc[3][k])) * scale;
        }
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
            T::softmax_rows(sc, d.s, rows, n, &mut lse[i0..i0 + rows]);
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
            T::probs_rows(p, d.s, rows, n, &lse[b * d.l + i0..b * d.l + i0 + rows]);
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

/// The softmax of the first `n` entries of `rows` rows (row stride `ld`) in place,
/// each row's log-sum-exp into `lse`.
#[inline(always)]
fn softmax_rows<T: AttnFloat>(sc: &mut [T], ld: usize, rows: usize, n: usize, lse: &mut [T]) {
    for (r, row) in sc.chunks_mut(ld).take(rows).enumerate() {
        let row = &mut row[..n];
        let m = row.iter().fold(T::neg_infinity(), |m, &x| if x > m || x.is_nan() { x } else { m });
        // The exponentials in their own pass, so it vectorises; the sum in order.
        for p in row.iter_mut() {
            *p = T::exp_nonpos(*p - m);
        }
        let sum = row.iter().fold(T::zero(), |s, &p| s + p);
        let inv = sum.recip();
        for p in row.iter_mut() {
            *p = *p * inv;
        }
        lse[r] = m + sum.ln();
    }
}

/// The probabilities `exp(x - lse)` of the first `n` scores of `rows` rows in place.
#[inline(always)]
fn probs_rows<T: AttnFloat>(p: &mut [T], ld: usize, rows: usize, n: usize, lse: &[T]) {
    for (row, &li) in p.chunks_mut(ld).take(rows).zip(lse) {
        for x in row[..n].iter_mut() {
            let y = *x - li;
            // p <= 1 up to rounding; the clamp keeps NaN.
            *x = T::exp_nonpos(if y > T::zero() { T::zero() } else { y });
        }
    }
}

/// One query row of the forward against its `n` visible keys (`kt`: the slice's keys
/// transposed by [`transpose_padded`] to `d.s` rounded up to [`KEYS`] columns): writes
/// the attention row into `o`, returns the row's log-sum-exp.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn fwd_row<T: AttnFloat>(
    qi: &[T],
    kt: &[T],
    vb: &[T],
    d: Dims,
    n: usize,
    scale: T,
    scores: &mut Vec<T>,
    o: &mut [T],
) -> T {
    let sp = d.s.next_multiple_of(KEYS);
    scores.resize(sp, T::zero());
    scores_t(qi, kt, sp, n.next_multiple_of(KEYS), scale, scores);
    let scores = &mut scores[..n];
    let m = scores.iter().fold(T::neg_infinity(), |m, &x| if x > m || x.is_nan() { x } else { m });
    // The exponentials in their own pass, so it vectorises.
    for p in scores.iter_mut() {
        *p = T::exp_nonpos(*p - m);
    }
    o.fill(T::zero());
    let mut sum = T::zero();
    for (&p, vj) in scores.iter().zip(vb.chunks_exact(d.ev)) {
        sum = sum + p;
        axpy(o, p, vj);
    }
    let inv = sum.recip();
    for x in o.iter_mut() {
        *x = *x * inv;
    }
    m + sum.ln()
}

/// The backward of one (batch, head) slice `b`, a query row at a time.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn bwd_slice<T: AttnFloat>(
    s: &[&[T]],
    b: usize,
    d: Dims,
    scale: T,
    causal: bool,
    dq: &mut [T],
    dk: &mut [T],
    dv: &mut [T],
) {
    let (q, k, v, o, lse, g) = (s[0], s[1], s[2], s[3], s[4], s[5]);
    dk.fill(T::zero());
    dv.fill(T::zero());
    let kb = &k[b * d.s * d.e..(b + 1) * d.s * d.e];
    let vb = &v[b * d.s * d.ev..(b + 1) * d.s * d.ev];
    let sp = d.s.next_multiple_of(KEYS);
    let (mut kt, mut vt) = (Vec::new(), Vec::new());
    transpose_padded(kb, d.s, d.e, sp, &mut kt);
    transpose_padded(vb, d.s, d.ev, sp, &mut vt);
    let (mut ps, mut gv) = (vec![T::zero(); sp], vec![T::zero(); sp]);
    for (i, dqi) in dq.chunks_exact_mut(d.e).enumerate() {
        let r = b * d.l + i;
        let qi = &q[r * d.e..(r + 1) * d.e];
        let (oi, gi) = (&o[r * d.ev..(r + 1) * d.ev], &g[r * d.ev..(r + 1) * d.ev]);
        let di = dot(gi, oi);
        let li = lse[r];
        dqi.fill(T::zero());
        let n = visible_keys(i, 1, d.s, causal);
        let np = n.next_multiple_of(KEYS);
        scores_t(qi, &kt, sp, np, scale, &mut ps);
        // The probabilities in their own pass, so it vectorises.
        for x in ps[..n].iter_mut() {
            let y = *x - li;
            // p <= 1 up to rounding; the clamp keeps NaN.
            *x = T::exp_nonpos(if y > T::zero() { T::zero() } else { y });
        }
        // dO_i · v_j for every visible key.
        scores_t(gi, &vt, sp, np, T::one(), &mut gv);
        for (j, (&p, &gvj)) in ps[..n].iter().zip(&gv[..n]).enumerate() {
            let kj = &kb[j * d.e..(j + 1) * d.e];
            let ds = p * (gvj - di) * scale;
            axpy(dqi, ds, kj);
            axpy(&mut dk[j * d.e..(j + 1) * d.e], ds, qi);
            axpy(&mut dv[j * d.ev..(j + 1) * d.ev], p, gi);
        }
    }
}

/// [`forward`] one query row at a time (for short sequences, where GEMM calls cost more
/// than they save).
fn forward_rows<T: AttnFloat>(s: &[&[T]], d: Dims, scale: f64, causal: bool) -> Result<Vec<HostBuffer>> {
    let (q, k, v) = (s[0], s[1], s[2]);
    let mut out = alloc::uninit::<T>(d.bh * d.l * d.ev)?;
    let mut lse = alloc::uninit::<T>(d.bh * d.l)?;
    let scale = T::from_f64(scale);
    let par = d.bh * d.l * d.s * (d.e + d.ev) >= 1 << 16;
    // Blocks of one row when blocks of ROW_BLOCK rows would give the pool few tasks.
    let rb = if d.bh * d.l.div_ceil(ROW_BLOCK) >= 32 { ROW_BLOCK } else { 1 };
    // A (batch, head) slice: its keys transposed once, then its queries in blocks of
    // `rb` rows (each row's result depends only on the row).
    let slice = |(b, (o, lse)): (usize, (&mut [T], &mut [T]))| {
        let mut kt = Vec::new();
        transpose_padded(&k[b * d.s * d.e..(b + 1) * d.s * d.e], d.s, d.e, d.s.next_multiple_of(KEYS), &mut kt);
        let vb = &v[b * d.s * d.ev..(b + 1) * d.s * d.ev];
        let block = |(blk, (o, lse)): (usize, (&mut [T], &mut [T]))| {
            let mut scores = Vec::new();
            for (r, (o, lse)) in o.chunks_mut(d.ev).zip(lse.iter_mut()).enumerate() {
                let i = blk * rb + r;
                let qi = &q[(b * d.l + i) * d.e..(b * d.l + i + 1) * d.e];
                *lse = T::fwd_row(qi, &kt, vb, d, visible_keys(i, 1, d.s, causal), scale, &mut scores, o);
            }
        };
        if par {
            o.par_chunks_mut(rb * d.ev).zip(lse.par_chunks_mut(rb)).enumerate().for_each(block);
        } else {
            o.chunks_mut(rb * d.ev).zip(lse.chunks_mut(rb)).enumerate().for_each(block);
        }
    };
    if par {
        out.par_chunks_mut(d.l * d.ev).zip(lse.par_chunks_mut(d.l)).enumerate().for_each(slice);
    } else {
        out.chunks_mut(d.l * d.ev).zip(lse.chunks_mut(d.l)).enumerate().for_each(slice);
    }
    Ok(vec![T::wrap(out), T::wrap(lse)])
}

/// [`backward`] one query row at a time.
fn backward_rows<T: AttnFloat>(s: &[&[T]], d: Dims, scale: f64, causal: bool) -> Result<Vec<HostBuffer>> {
    let mut dq = alloc::uninit::<T>(d.bh * d.l * d.e)?;
    let mut dk = alloc::uninit::<T>(d.bh * d.s * d.e)?;
    let mut dv = alloc::uninit::<T>(d.bh * d.s * d.ev)?;
    let scale = T::from_f64(scale);
    #[allow(clippy::type_complexity)]
    let slice = |(b, ((dq, dk), dv)): (usize, ((&mut [T], &mut [T]), &mut [T]))| {
        T::bwd_slice(s, b, d, scale, causal, dq, dk, dv)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn vals(seed: usize, len: usize) -> Vec<f32> {
        (0..len).map(|i| (((i + seed * 7907) * 7919) % 61) as f32 / 30.0 - 1.0).collect()
    }

    /// A descriptor whose sizes do not fit its buffers (or has a zero size) is an error
    /// naming the op, not a panic; one that fits runs.
    #[test]
    fn a_descriptor_that_does_not_fit_its_buffers_is_an_error() {
        let buf = |n: usize| HostBuffer::F32(vals(n, n));
        let lay = |n: usize| Layout::contiguous(n);
        let (q, k, v) = (buf(2 * 3 * 4), buf(2 * 5 * 4), buf(2 * 5 * 6));
        let (lq, lk, lv) = (lay(24), lay(40), lay(60));
        let good = Dims { bh: 2, l: 3, s: 5, e: 4, ev: 6 };
        let run = |d: Dims| forward((&q, &lq), (&k, &lk), (&v, &lv), d, 0.5, true);
        let outs = run(good).expect("f32 takes the fused path").expect("sizes fit");
        let HostBuffer::F32(o) = &outs[0] else { panic!("f32 output") };
        assert!(o.len() == 2 * 3 * 6 && o.iter().all(|x| x.is_finite()));
        for bad in [Dims { l: 4, ..good }, Dims { ev: 0, ..good }, Dims { bh: usize::MAX, ..good }] {
            let err = run(bad).expect("f32 takes the fused path").expect_err("sizes do not fit");
            assert!(err.to_string().contains("scaled_dot_product_attention"), "{err}");
        }
        let (lse, g) = (buf(6), buf(36));
        let (ll, lg) = (lay(6), lay(36));
        let d = Dims { s: 4, ..good };
        let err = backward((&q, &lq), (&k, &lk), (&v, &lv), (&g, &lg), (&lse, &ll), (&g, &lg), d, 0.5, false)
            .expect("f32 takes the fused path")
            .expect_err("k and v are 5 keys long");
        assert!(err.to_string().contains("scaled_dot_product_attention_backward"), "{err}");
    }

    /// The f32 kernels give the same bits at every vector level this CPU supports, and
    /// the forward row matches an f64 reference.
    #[test]
    fn every_vector_level_gives_the_same_bits() {
        let d = Dims { bh: 1, l: 5, s: 37, e: 19, ev: 21 };
        let (q, k, v) = (vals(1, d.l * d.e), vals(2, d.s * d.e), vals(3, d.s * d.ev));
        let (o, g) = (vals(4, d.l * d.ev), vals(5, d.l * d.ev));
        let lse: Vec<f32> = vals(6, d.l).iter().map(|x| x + 3.0).collect();
        let mut first = None;
        for isa in Isa::supported() {
            let mut row = vec![0f32; d.ev];
            let mut kt = Vec::new();
            transpose_padded(&k, d.s, d.e, d.s.next_multiple_of(KEYS), &mut kt);
            let l = fwd_row_f32(isa, &q[..d.e], &kt, &v, d, 30, 0.3, &mut Vec::new(), &mut row);
            // f64 reference of the row.
            let sc: Vec<f64> = (0..30)
                .map(|j| (0..d.e).map(|c| q[c] as f64 * k[j * d.e + c] as f64).sum::<f64>() * 0.3f32 as f64)
                .collect();
            let m = sc.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = sc.iter().map(|x| (x - m).exp()).sum();
            assert!((l as f64 - (m + z.ln())).abs() < 1e-5, "{isa:?} lse");
            for (c, &x) in row.iter().enumerate() {
                let e: f64 = sc.iter().enumerate().map(|(j, s)| (s - m).exp() / z * v[j * d.ev + c] as f64).sum();
                assert!((x as f64 - e).abs() < 1e-5, "{isa:?} out[{c}]: {x} vs {e}");
            }
            let (mut dq, mut dk, mut dv) = (vec![0f32; d.l * d.e], vec![0f32; d.s * d.e], vec![0f32; d.s * d.ev]);
            bwd_slice_f32(isa, &[&q, &k, &v, &o, &lse, &g], 0, d, 0.3, true, &mut dq, &mut dk, &mut dv);
            let mut sc = vals(7, 3 * 40);
            let mut ls = vec![0f32; 3];
            softmax_rows_f32(isa, &mut sc, 40, 3, 33, &mut ls);
            let mut p = vals(8, 3 * 40);
            probs_rows_f32(isa, &mut p, 40, 3, 35, &lse[..3]);
            let all = (l, row, dq, dk, dv, sc, ls, p);
            match &first {
                None => first = Some(all),
                Some(f) => assert!(f == &all, "{isa:?} differs from the baseline"),
            }
        }
    }
}
