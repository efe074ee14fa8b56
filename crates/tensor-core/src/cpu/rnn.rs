//! The CPU backend's fused LSTM sequence ([`crate::FusedOp::LstmSequence`] and its
//! backward) on contiguous f32/f64 host buffers.
//!
//! Written with tensor ops, one step of the recurrence is a dozen small ops (a GEMM,
//! an add, the activations, the cell update, a concatenation of the gates), each
//! allocating its output, and the sequence then stacks every step's states: at batch
//! 12 and 256 hidden units the ops around the GEMM cost more than the GEMM. These
//! kernels write every step straight into the output buffers: the GEMM writes `h
//! w_hh_t` into the step's gates, and one pass per row adds the input projection and
//! turns them into the activated gates, the cell and the hidden state, with the
//! arithmetic of the tensor ops in their order (so the same bits).
//! The backward is the same walk in reverse, one pass for the gates' gradient, then
//! the GEMM of the next `dh` against the recurrent weight.
//!
//! Each step splits the hidden units into blocks of [`BLOCK`] (a number fixed by the
//! sizes, never by the thread count) and runs the blocks on the pool: a block's GEMM
//! only reads its columns of the weight, so each core keeps part of the weight in
//! cache, and the results have the same bits for any number of threads.

use gemm::{gemm, Parallelism};
use num_traits::{Float, One, Zero};
use rayon::prelude::*;

use super::alloc;
use super::conv::{data, View};
use super::elementwise::{sigmoid_f32, tanh_f32};
use super::simd::{multiversion, Isa};
use crate::cpu::HostBuffer;
use crate::fused::LstmDims;
use crate::{Elem, Error, Result};

/// Hidden units per block of a step's work.
const BLOCK: usize = 128;

/// Multiply-adds of one step below which the blocks run on the calling thread.
const PAR_WORK: usize = 1 << 18;

/// The float types the kernels run on, with their elementwise cell math.
pub(crate) trait RnnElem: Elem + Float + Zero + One {
    /// The forward cell over one row's block: the gates `x + hw` (input projection
    /// plus recurrent product, per gate `i, f, g, o`) are activated into `hw` in
    /// place; writes `c = f cp + i g` and `h = o tanh(c)`.
    fn cell(isa: Isa, x: [&[Self]; 4], hw: [&mut [Self]; 4], cp: &[Self], c: &mut [Self], h: &mut [Self]);

    /// The backward cell over one row's block: from the activated gates, the cell
    /// `c`, the previous cell `cp`, the states' gradients `gh`, `gc` and the carried
    /// `dh`, `dc` (updated to the previous step's `dc`), writes the gates' gradients.
    #[allow(clippy::too_many_arguments)]
    fn cell_backward(
        isa: Isa,
        act: [&[Self]; 4],
        c: &[Self],
        cp: &[Self],
        gh: &[Self],
        gc: &[Self],
        dh: &[Self],
        dc: &mut [Self],
        d: [&mut [Self]; 4],
    );
}

/// The backward cell's arithmetic for one unit, in the order the tensor-op fallback
/// uses: returns `(di, df, dg, do, dc_prev)`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn cell_grad<T: Float>(i: T, f: T, g: T, o: T, tc: T, cp: T, dh: T, dc_in: T) -> (T, T, T, T, T) {
    let one = T::one();
    let dc = dc_in + (dh * o) * (one - tc * tc);
    (
        (dc * g) * (i * (one - i)),
        (dc * cp) * (f * (one - f)),
        (dc * i) * (one - g * g),
        (dh * tc) * (o * (one - o)),
        dc * f,
    )
}

/// The forward cell's arithmetic for one unit from its four gate pre-activations
/// and the previous cell, in the tensor ops' order: returns the activated gates `(i,
/// f, g, o)`, the cell and the hidden state.
#[inline(always)]
fn cell_one<T: Float>(pre: [T; 4], cp: T, sig: impl Fn(T) -> T, tanh: impl Fn(T) -> T) -> ([T; 4], T, T) {
    let (i, f, g, o) = (sig(pre[0]), sig(pre[1]), tanh(pre[2]), sig(pre[3]));
    let c = f * cp + i * g;
    ([i, f, g, o], c, o * tanh(c))
}

multiversion! {
    /// [`RnnElem::cell`] for f32, with the branch-free `sigmoid` and `tanh` of the
    /// elementwise ops (the same bits as those ops).
    fn cell_f32(
        xi: &[f32], xf: &[f32], xg: &[f32], xo: &[f32],
        i: &mut [f32], f: &mut [f32], g: &mut [f32], o: &mut [f32], cp: &[f32], c: &mut [f32], h: &mut [f32],
    ) {
        let n = c.len();
        let (xi, xf, xg, xo) = (&xi[..n], &xf[..n], &xg[..n], &xo[..n]);
        let (i, f, g, o, cp, h) = (&mut i[..n], &mut f[..n], &mut g[..n], &mut o[..n], &cp[..n], &mut h[..n]);
        for j in 0..n {
            let pre = [xi[j] + i[j], xf[j] + f[j], xg[j] + g[j], xo[j] + o[j]];
            let ([ii, ff, gg, oo], cc, hh) = cell_one(pre, cp[j], sigmoid_f32, tanh_f32);
            (i[j], f[j], g[j], o[j], c[j], h[j]) = (ii, ff, gg, oo, cc, hh);
        }
    }
}

multiversion! {
    /// [`RnnElem::cell_backward`] for f32.
    fn cell_backward_f32(
        i: &[f32], f: &[f32], g: &[f32], o: &[f32], c: &[f32], cp: &[f32], gh: &[f32], gc: &[f32], dh: &[f32],
        dc: &mut [f32], di: &mut [f32], df: &mut [f32], dg: &mut [f32], d_o: &mut [f32],
    ) {
        let n = dc.len();
        let (i, f, g, o, c, cp, gh, gc, dh) = (&i[..n], &f[..n], &g[..n], &o[..n], &c[..n], &cp[..n], &gh[..n], &gc[..n], &dh[..n]);
        let (di, df, dg, d_o) = (&mut di[..n], &mut df[..n], &mut dg[..n], &mut d_o[..n]);
        for j in 0..n {
            let (a, b, e, k, p) = cell_grad(i[j], f[j], g[j], o[j], tanh_f32(c[j]), cp[j], gh[j] + dh[j], gc[j] + dc[j]);
            di[j] = a;
            df[j] = b;
            dg[j] = e;
            d_o[j] = k;
            dc[j] = p;
        }
    }
}

impl RnnElem for f32 {
    fn cell(isa: Isa, x: [&[f32]; 4], hw: [&mut [f32]; 4], cp: &[f32], c: &mut [f32], h: &mut [f32]) {
        let [i, f, g, o] = hw;
        cell_f32(isa, x[0], x[1], x[2], x[3], i, f, g, o, cp, c, h)
    }
    fn cell_backward(
        isa: Isa,
        a: [&[f32]; 4],
        c: &[f32],
        cp: &[f32],
        gh: &[f32],
        gc: &[f32],
        dh: &[f32],
        dc: &mut [f32],
        d: [&mut [f32]; 4],
    ) {
        let [di, df, dg, d_o] = d;
        cell_backward_f32(isa, a[0], a[1], a[2], a[3], c, cp, gh, gc, dh, dc, di, df, dg, d_o)
    }
}

impl RnnElem for f64 {
    fn cell(_: Isa, x: [&[f64]; 4], hw: [&mut [f64]; 4], cp: &[f64], c: &mut [f64], h: &mut [f64]) {
        // The formulas of the elementwise ops, for the same bits.
        let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
        let [i, f, g, o] = hw;
        for j in 0..c.len() {
            let pre = [x[0][j] + i[j], x[1][j] + f[j], x[2][j] + g[j], x[3][j] + o[j]];
            let ([ii, ff, gg, oo], cc, hh) = cell_one(pre, cp[j], sig, f64::tanh);
            (i[j], f[j], g[j], o[j], c[j], h[j]) = (ii, ff, gg, oo, cc, hh);
        }
    }
    fn cell_backward(
        _: Isa,
        a: [&[f64]; 4],
        c: &[f64],
        cp: &[f64],
        gh: &[f64],
        gc: &[f64],
        dh: &[f64],
        dc: &mut [f64],
        d: [&mut [f64]; 4],
    ) {
        let [di, df, dg, d_o] = d;
        for j in 0..dc.len() {
            let (x, y, z, w, p) =
                cell_grad(a[0][j], a[1][j], a[2][j], a[3][j], c[j].tanh(), cp[j], gh[j] + dh[j], gc[j] + dc[j]);
            (di[j], df[j], dg[j], d_o[j], dc[j]) = (x, y, z, w, p);
        }
    }
}

/// A raw pointer the blocks of one step share: each block only touches its own
/// columns.
#[derive(Clone, Copy)]
struct Shared<T>(*mut T);
// SAFETY: the blocks write disjoint elements (their own hidden units' columns) and
// read what no block writes during the same phase; `run_blocks` joins them before
// the next phase.
unsafe impl<T> Send for Shared<T> {}
unsafe impl<T> Sync for Shared<T> {}

/// `dst[m, n] (row stride dst_rs) = a[m, k] (row stride a_rs) * b[k, n] (row stride
/// b_rs)`, all with unit column stride.
///
/// # Safety
/// Every element the three views reach must be valid (and `dst`'s writable, aliased
/// by no operand and by no other thread).
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_rows<T: RnnElem>(
    (m, n, k): (usize, usize, usize),
    dst: *mut T,
    dst_rs: usize,
    a: *const T,
    a_rs: usize,
    b: *const T,
    b_rs: usize,
) {
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    // SAFETY: the caller's contract.
    unsafe {
        gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            false,
            a,
            1,
            a_rs as isize,
            b,
            1,
            b_rs as isize,
            T::zero(),
            T::one(),
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}

/// Runs `f(j0, width)` for each block of hidden units, on the pool when the step is
/// big enough.
fn run_blocks(d: &LstmDims, f: impl Fn(usize, usize) + Sync) {
    let h = d.hidden;
    let blocks = h.div_ceil(BLOCK);
    let one = |b: usize| f(b * BLOCK, BLOCK.min(h - b * BLOCK));
    if blocks > 1 && d.batch * h * h * 4 >= PAR_WORK && rayon::current_num_threads() > 1 {
        (0..blocks).into_par_iter().for_each(one);
    } else {
        (0..blocks).for_each(one);
    }
}

/// The step before `s` in the walk's order, if any.
fn prev(s: usize, steps: usize, reverse: bool) -> Option<usize> {
    if reverse {
        (s + 1 < steps).then_some(s + 1)
    } else {
        s.checked_sub(1)
    }
}

/// The steps in the walk's order.
fn walk(steps: usize, reverse: bool) -> impl Iterator<Item = usize> {
    (0..steps).map(move |k| if reverse { steps - 1 - k } else { k })
}

/// The forward over checked sizes: `(states, gates)` (see [`crate::FusedOp::LstmSequence`]).
fn forward<T: RnnElem>(
    gi: &[T],
    w_t: &[T],
    h0: &[T],
    c0: &[T],
    d: &LstmDims,
    reverse: bool,
) -> Result<(Vec<T>, Vec<T>)> {
    let (steps, n, h) = (d.steps, d.batch, d.hidden);
    let (step, g4) = (n * h, 4 * h);
    let mut gates = alloc::uninit::<T>(gi.len())?;
    let mut states = alloc::uninit::<T>(2 * steps * step)?;
    let isa = Isa::best();
    let (gp, sp) = (Shared(gates.as_mut_ptr()), Shared(states.as_mut_ptr()));
    for s in walk(steps, reverse) {
        let p = prev(s, steps, reverse);
        run_blocks(d, |j0, w| {
            // SAFETY: `check` bounded every size; this block reads the previous step's
            // whole `h` (written by the last step, joined) and writes its own columns
            // `j0..j0 + w` of step `s`'s four gates, `h` and `c`, which no other block
            // touches.
            unsafe {
                let (gp, sp) = (gp, sp);
                let g = gp.0.add(s * n * g4);
                let h_prev = match p {
                    Some(p) => sp.0.add(p * step) as *const T,
                    None => h0.as_ptr(),
                };
                for k in 0..4 {
                    gemm_rows((n, w, h), g.add(k * h + j0), g4, h_prev, h, w_t.as_ptr().add(k * h + j0), g4);
                }
                for r in 0..n {
                    let row = g.add(r * g4 + j0);
                    let gate = |k: usize| std::slice::from_raw_parts_mut(row.add(k * h), w);
                    let x = s * n * g4 + r * g4 + j0;
                    let xk = |k: usize| &gi[x + k * h..x + k * h + w];
                    let cp = match p {
                        Some(p) => std::slice::from_raw_parts(sp.0.add((steps + p) * step + r * h + j0), w),
                        None => &c0[r * h + j0..r * h + j0 + w],
                    };
                    let c = std::slice::from_raw_parts_mut(sp.0.add((steps + s) * step + r * h + j0), w);
                    let hh = std::slice::from_raw_parts_mut(sp.0.add(s * step + r * h + j0), w);
                    T::cell(isa, [xk(0), xk(1), xk(2), xk(3)], [gate(0), gate(1), gate(2), gate(3)], cp, c, hh);
                }
            }
        });
    }
    Ok((states, gates))
}

/// The backward over checked sizes: `(dgi, dh0, dc0)` (see
/// [`crate::FusedOp::LstmSequenceBackward`]).
#[allow(clippy::too_many_arguments)]
fn backward<T: RnnElem>(
    w_t: &[T],
    c0: &[T],
    states: &[T],
    gates: &[T],
    grad: &[T],
    d: &LstmDims,
    reverse: bool,
) -> Result<(Vec<T>, Vec<T>, Vec<T>)> {
    let (steps, n, h) = (d.steps, d.batch, d.hidden);
    let (step, g4) = (n * h, 4 * h);
    // The recurrent weight `[4h, h]` row-major, so the GEMM below reads rows.
    let mut w = alloc::uninit::<T>(w_t.len())?;
    super::matmul::pack_rows(w_t, (g4, h), (1, g4), &mut w);
    let mut dgi = alloc::uninit::<T>(gates.len())?;
    let mut dh = alloc::filled::<T>(step, T::zero())?;
    let mut dc = alloc::filled::<T>(step, T::zero())?;
    let isa = Isa::best();
    let (dgp, dhp, dcp) = (Shared(dgi.as_mut_ptr()), Shared(dh.as_mut_ptr()), Shared(dc.as_mut_ptr()));
    let cs = &states[steps * step..];
    for s in walk(steps, !reverse) {
        let p = prev(s, steps, reverse);
        run_blocks(d, |j0, wd| {
            // SAFETY: this block reads and writes its own columns `j0..j0 + wd` of
            // `dh`, `dc` and step `s`'s four gate gradients only.
            unsafe {
                let (dgp, dhp, dcp) = (dgp, dhp, dcp);
                for r in 0..n {
                    let (o, go) = (r * h + j0, s * n * g4 + r * g4 + j0);
                    let act = |k: usize| &gates[go + k * h..go + k * h + wd];
                    let dg = |k: usize| std::slice::from_raw_parts_mut(dgp.0.add(go + k * h), wd);
                    let cp = match p {
                        Some(p) => &cs[p * step + o..p * step + o + wd],
                        None => &c0[o..o + wd],
                    };
                    T::cell_backward(
                        isa,
                        [act(0), act(1), act(2), act(3)],
                        &cs[s * step + o..s * step + o + wd],
                        cp,
                        &grad[s * step + o..s * step + o + wd],
                        &grad[(steps + s) * step + o..(steps + s) * step + o + wd],
                        std::slice::from_raw_parts(dhp.0.add(o), wd),
                        std::slice::from_raw_parts_mut(dcp.0.add(o), wd),
                        [dg(0), dg(1), dg(2), dg(3)],
                    );
                }
            }
        });
        run_blocks(d, |j0, wd| {
            // SAFETY: the gate gradients of step `s` are complete (the blocks above
            // were joined); this block writes its own columns of `dh` only.
            unsafe {
                let (dgp, dhp) = (dgp, dhp);
                gemm_rows((n, wd, g4), dhp.0.add(j0), h, dgp.0.add(s * n * g4), g4, w.as_ptr().add(j0), h);
            }
        });
    }
    alloc::recycle(T::wrap(w));
    Ok((dgi, dh, dc))
}

/// Fails unless `d` is valid.
fn checked(d: &LstmDims, op: &'static str) -> Result<(usize, usize, usize)> {
    d.check(op)?;
    let size = |v: Option<usize>| v.ok_or_else(|| Error::arg(op, "LSTM sizes overflow"));
    Ok((size(d.gates_len())?, size(d.states_len())?, size(d.weight_len())?))
}

/// [`forward`] on host views `gi`, `w_hh_t`, `h0`, `c0`: `None` unless all are
/// contiguous f32 or all f64 with the sizes of `d`.
pub(crate) fn forward_host(v: [View<'_>; 4], d: &LstmDims, reverse: bool) -> Option<Result<Vec<HostBuffer>>> {
    fn run<T: RnnElem>(v: [View<'_>; 4], d: &LstmDims, reverse: bool) -> Option<Result<Vec<HostBuffer>>> {
        let (gl, _, wl) = match checked(d, "lstm_sequence") {
            Ok(s) => s,
            Err(e) => return Some(Err(e)),
        };
        let hl = d.batch * d.hidden;
        let gi = data::<T>(v[0].0, v[0].1, gl)?;
        let w = data::<T>(v[1].0, v[1].1, wl)?;
        let h0 = data::<T>(v[2].0, v[2].1, hl)?;
        let c0 = data::<T>(v[3].0, v[3].1, hl)?;
        // On the pool: each step's blocks are then stolen by workers that are still
        // awake, instead of every step waking the pool from outside.
        Some(rayon::scope(|_| forward(gi, w, h0, c0, d, reverse)).map(|(s, g)| vec![T::wrap(s), T::wrap(g)]))
    }
    match v[0].0 {
        HostBuffer::F32(_) => run::<f32>(v, d, reverse),
        HostBuffer::F64(_) => run::<f64>(v, d, reverse),
        _ => None,
    }
}

/// [`backward`] on host views `w_hh_t`, `h0`, `c0`, states, gates, the states'
/// gradient, like [`forward_host`].
pub(crate) fn backward_host(v: [View<'_>; 6], d: &LstmDims, reverse: bool) -> Option<Result<Vec<HostBuffer>>> {
    fn run<T: RnnElem>(v: [View<'_>; 6], d: &LstmDims, reverse: bool) -> Option<Result<Vec<HostBuffer>>> {
        let (gl, sl, wl) = match checked(d, "lstm_sequence_backward") {
            Ok(s) => s,
            Err(e) => return Some(Err(e)),
        };
        let hl = d.batch * d.hidden;
        let w = data::<T>(v[0].0, v[0].1, wl)?;
        // h0 is not needed: only the weight's gradient reads the hidden states.
        data::<T>(v[1].0, v[1].1, hl)?;
        let c0 = data::<T>(v[2].0, v[2].1, hl)?;
        let states = data::<T>(v[3].0, v[3].1, sl)?;
        let gates = data::<T>(v[4].0, v[4].1, gl)?;
        let grad = data::<T>(v[5].0, v[5].1, sl)?;
        Some(
            rayon::scope(|_| backward(w, c0, states, gates, grad, d, reverse))
                .map(|(a, b, c)| vec![T::wrap(a), T::wrap(b), T::wrap(c)]),
        )
    }
    match v[0].0 {
        HostBuffer::F32(_) => run::<f32>(v, d, reverse),
        HostBuffer::F64(_) => run::<f64>(v, d, reverse),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vals(seed: usize, len: usize, scale: f64) -> Vec<f64> {
        (0..len).map(|i| (((i + seed * 7907) * 7919) % 61) as f64 / 30.0 - 1.0).map(|v| v * scale).collect()
    }

    /// The backward of the f64 kernel against central finite differences of its own
    /// forward, on `L = sum(grad * states)`, for every input coordinate, both
    /// directions.
    #[test]
    fn backward_matches_finite_differences() {
        let d = LstmDims { steps: 3, batch: 2, hidden: 3 };
        let (t, n, h) = (d.steps, d.batch, d.hidden);
        let gi = vals(1, t * n * 4 * h, 1.0);
        let w = vals(2, h * 4 * h, 0.4);
        let (h0, c0) = (vals(3, n * h, 1.0), vals(4, n * h, 1.0));
        let grad = vals(5, 2 * t * n * h, 1.0);
        for reverse in [false, true] {
            let loss = |gi: &[f64], h0: &[f64], c0: &[f64]| -> f64 {
                let (s, _) = forward(gi, &w, h0, c0, &d, reverse).unwrap();
                s.iter().zip(&grad).map(|(a, b)| a * b).sum()
            };
            let (s, g) = forward(&gi, &w, &h0, &c0, &d, reverse).unwrap();
            let (dgi, dh0, dc0) = backward(&w, &c0, &s, &g, &grad, &d, reverse).unwrap();
            let eps = 1e-6;
            let fd = |which: usize, k: usize| {
                let mut x = [gi.clone(), h0.clone(), c0.clone()];
                x[which][k] += eps;
                let up = loss(&x[0], &x[1], &x[2]);
                x[which][k] -= 2.0 * eps;
                (up - loss(&x[0], &x[1], &x[2])) / (2.0 * eps)
            };
            for (which, got) in [(0, &dgi), (1, &dh0), (2, &dc0)] {
                for (k, &v) in got.iter().enumerate() {
                    let e = fd(which, k);
                    assert!(
                        (v - e).abs() < 1e-7 * (1.0 + e.abs()),
                        "reverse {reverse}, input {which}[{k}]: {v} vs {e}"
                    );
                }
            }
        }
    }

    /// Forward and backward in f32 give the same bits on 1, 2 and 3 threads, over
    /// sizes that split the hidden units into blocks and run them on the pool.
    #[test]
    fn bits_do_not_depend_on_the_thread_count() {
        let d = LstmDims { steps: 3, batch: 5, hidden: 2 * BLOCK + 7 };
        assert!(d.batch * d.hidden * d.hidden * 4 >= PAR_WORK);
        let (t, n, h) = (d.steps, d.batch, d.hidden);
        let f = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<f32>>();
        let gi = f(vals(1, t * n * 4 * h, 1.0));
        let w = f(vals(2, h * 4 * h, 0.05));
        let (h0, c0) = (f(vals(3, n * h, 1.0)), f(vals(4, n * h, 1.0)));
        let grad = f(vals(5, 2 * t * n * h, 1.0));
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let (s, g) = forward(&gi, &w, &h0, &c0, &d, true).unwrap();
                let b = backward(&w, &c0, &s, &g, &grad, &d, true).unwrap();
                (s, g, b)
            })
        };
        let one = run(1);
        for threads in [2, 3] {
            assert!(run(threads) == one, "{threads} threads");
        }
    }

    /// The f32 cells give the same bits at every vector level this CPU supports,
    /// within f32 rounding of the f64 cells.
    #[test]
    fn every_vector_level_gives_the_same_cells() {
        let m = 37;
        let f = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<f32>>();
        let x: Vec<Vec<f64>> = (0..4).map(|k| vals(k, m, 3.0)).collect();
        let hw: Vec<Vec<f64>> = (0..4).map(|k| vals(k + 4, m, 2.0)).collect();
        let (cp, gh, gc, dh, dc) =
            (vals(9, m, 1.0), vals(10, m, 1.0), vals(11, m, 1.0), vals(12, m, 1.0), vals(13, m, 1.0));
        let mut want = hw.clone();
        let (mut wc, mut wh) = (vec![0.0; m], vec![0.0; m]);
        {
            let [a, b, c, e] = &mut want[..] else { unreachable!() };
            f64::cell(Isa::best(), [&x[0], &x[1], &x[2], &x[3]], [a, b, c, e], &cp, &mut wc, &mut wh);
        }
        let mut wd = vec![vec![0.0; m]; 4];
        let mut wdc = dc.clone();
        {
            let [a, b, c, e] = &mut wd[..] else { unreachable!() };
            f64::cell_backward(
                Isa::best(),
                [&want[0], &want[1], &want[2], &want[3]],
                &wc,
                &cp,
                &gh,
                &gc,
                &dh,
                &mut wdc,
                [a, b, c, e],
            );
        }
        let mut first: Option<Vec<Vec<f32>>> = None;
        for isa in Isa::supported() {
            let mut g: Vec<Vec<f32>> = hw.iter().cloned().map(f).collect();
            let (mut c, mut h) = (vec![0f32; m], vec![0f32; m]);
            let xs: Vec<Vec<f32>> = x.iter().cloned().map(f).collect();
            {
                let [a, b, cc, e] = &mut g[..] else { unreachable!() };
                f32::cell(isa, [&xs[0], &xs[1], &xs[2], &xs[3]], [a, b, cc, e], &f(cp.clone()), &mut c, &mut h);
            }
            let mut d = vec![vec![0f32; m]; 4];
            let mut dcv = f(dc.clone());
            {
                let [a, b, cc, e] = &mut d[..] else { unreachable!() };
                let (cp, gh, gc, dh) = (f(cp.clone()), f(gh.clone()), f(gc.clone()), f(dh.clone()));
                f32::cell_backward(isa, [&g[0], &g[1], &g[2], &g[3]], &c, &cp, &gh, &gc, &dh, &mut dcv, [a, b, cc, e]);
            }
            let all: Vec<Vec<f32>> = g.iter().chain([&c, &h]).chain(d.iter()).chain([&dcv]).cloned().collect();
            let refs: Vec<&Vec<f64>> = want.iter().chain([&wc, &wh]).chain(wd.iter()).chain([&wdc]).collect();
            for (k, (got, e)) in all.iter().zip(&refs).enumerate() {
                for (j, (&v, &e)) in got.iter().zip(e.iter()).enumerate() {
                    assert!((v as f64 - e).abs() < 2e-5 * (1.0 + e.abs()), "{isa:?} output {k}[{j}]: {v} vs {e}");
                }
            }
            match &first {
                None => first = Some(all),
                Some(f) => assert!(f == &all, "{isa:?} differs from the baseline"),
            }
        }
    }
}
