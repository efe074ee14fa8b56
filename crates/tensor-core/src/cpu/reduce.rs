//! Reductions, scans and the fused softmax on the CPU.
//!
//! Every reduction has one canonical evaluation order that depends only on the
//! logical positions of the reduced elements (row-major over the reduced dims): they
//! are cut into blocks of [`BLOCK`]; inside a block, element `p` is folded into lane
//! `p % LANES`, except the last `len % LANES`, which are folded one by one into the
//! combined lanes; block results are combined in order. The traversal (along the
//! reduction, or across a tile of outputs when the reduced dims are outer), the
//! layout (contiguous, transposed, sliced, expanded) and the number of threads change
//! only the speed, never a bit of the result.

use num_traits::Float;
use rayon::prelude::*;
use smallvec::SmallVec;

use super::alloc;
use super::iter::{Plan, PAR_THRESHOLD};
use super::simd::{multiversion, Isa};
use super::{unsupported, with_dtype, with_float, Arith, HostBuffer};
use crate::backend::{ReduceOp, ScanOp};
use crate::dtype::Elem;
use crate::shape::Shape;
use crate::{Error, Layout, Result};

/// Independent accumulators inside a block (room for the compiler to vectorise).
const LANES: usize = 16;
/// Reduced elements per block; blocks of one output may run on different threads.
const BLOCK: usize = 1 << 16;
/// Outputs per tile when folding across outputs (reduced dims outer).
const TILE: usize = 256;

/// The kept and reduced parts of a layout; `red` has offset 0.
struct Split {
    kept: Layout,
    red: Layout,
}

fn split(l: &Layout, dims: &[usize]) -> Split {
    let mut kd: crate::shape::Dims = SmallVec::new();
    let mut ks: crate::shape::Dims = SmallVec::new();
    let mut rd: crate::shape::Dims = SmallVec::new();
    let mut rs: crate::shape::Dims = SmallVec::new();
    for d in 0..l.rank() {
        if dims.contains(&d) {
            rd.push(l.dims()[d]);
            rs.push(l.strides()[d]);
        } else {
            kd.push(l.dims()[d]);
            ks.push(l.strides()[d]);
        }
    }
    Split { kept: Layout::new(Shape(kd), ks, l.offset()), red: Layout::new(Shape(rd), rs, 0) }
}

/// Input offsets of every output element, in output (row-major) order.
fn bases(kept: &Layout) -> Vec<usize> {
    let mut out = Vec::with_capacity(kept.numel());
    Plan::new(kept.dims(), [kept]).for_each_run(|[o], [s], n| out.extend((0..n).map(|j| o + j * s)));
    out
}

/// Calls `f(offset, stride, len)` for the runs covering logical positions
/// `start..end` of the plan's index space.
fn for_range(plan: &Plan<1>, start: usize, end: usize, mut f: impl FnMut(usize, usize, usize)) {
    let inner_len = plan.inner_len;
    if inner_len == 0 || start >= end {
        return;
    }
    let st = plan.inner_strides[0];
    plan.for_rows(start / inner_len, (end - 1) / inner_len + 1, |r, [off]| {
        let lo = start.max(r * inner_len) - r * inner_len;
        let hi = end.min((r + 1) * inner_len) - r * inner_len;
        f(off + lo * st, st, hi - lo);
    });
}

/// A fold: `step` takes one element, `combine` merges two partial results.
trait Fold<T>: Sync {
    type Acc: Copy + Send + Sync;
    fn init(&self) -> Self::Acc;
    fn step(&self, acc: Self::Acc, x: T) -> Self::Acc;
    fn combine(&self, a: Self::Acc, b: Self::Acc) -> Self::Acc;
    /// Folds `x` (a multiple of [`LANES`] long) element `j` into lane `j % LANES`.
    #[inline(always)]
    fn step_lanes(&self, lanes: &mut [Self::Acc; LANES], x: &[T])
    where
        T: Copy,
    {
        step_lanes_plain(self, lanes, x);
    }
}

/// [`Fold::step_lanes`] as plain code, compiled for the baseline.
#[inline(always)]
fn step_lanes_plain<T: Copy, F: Fold<T> + ?Sized>(f: &F, lanes: &mut [F::Acc; LANES], x: &[T]) {
    for c in x.chunks_exact(LANES) {
        for j in 0..LANES {
            lanes[j] = f.step(lanes[j], c[j]);
        }
    }
}

macro_rules! fold {
    ($name:ident, $doc:literal, [$($bound:tt)*], $acc:ty, $init:expr, |$a:ident, $x:ident| $step:expr, |$p:ident, $q:ident| $comb:expr) => {
        #[doc = $doc]
        struct $name;
        impl<T: $($bound)*> Fold<T> for $name {
            type Acc = $acc;
            #[inline(always)]
            fn init(&self) -> $acc {
                $init
            }
            #[inline(always)]
            fn step(&self, $a: $acc, $x: T) -> $acc {
                $step
            }
            #[inline(always)]
            fn combine(&self, $p: $acc, $q: $acc) -> $acc {
                $comb
            }
        }
    };
}

/// Float sum, accumulated in f64.
struct SumF;
impl<T: Elem> Fold<T> for SumF {
    type Acc = f64;
    #[inline(always)]
    fn init(&self) -> f64 {
        0.0
    }
    #[inline(always)]
    fn step(&self, a: f64, x: T) -> f64 {
        a + x.to_f64()
    }
    #[inline(always)]
    fn combine(&self, p: f64, q: f64) -> f64 {
        p + q
    }
    #[inline(always)]
    fn step_lanes(&self, lanes: &mut [f64; LANES], x: &[T]) {
        if std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>() {
            // SAFETY: `T` is `f32`, so the slice's memory holds `x.len()` f32s.
            let x = unsafe { std::slice::from_raw_parts(x.as_ptr().cast::<f32>(), x.len()) };
            sum_lanes_f32(Isa::best(), lanes, x);
        } else {
            step_lanes_plain(self, lanes, x);
        }
    }
}

multiversion! {
    /// Adds f32 element `j` of `x` (a multiple of [`LANES`] long) into f64 lane
    /// `j % LANES`: the canonical order of [`SumF`], vectorised.
    fn sum_lanes_f32(lanes: &mut [f64; LANES], x: &[f32]) {
        let mut l = *lanes;
        for c in x.chunks_exact(LANES) {
            for j in 0..LANES {
                l[j] += c[j] as f64;
            }
        }
        *lanes = l;
    }
}

fold!(ProdF, "Float product, accumulated in f64.", [Elem], f64, 1.0, |a, x| a * x.to_f64(), |p, q| p * q);
fold!(SumI, "Wrapping integer sum in i64.", [Elem], i64, 0, |a, x| a.wrapping_add(x.to_scalar().to_i64()), |p, q| p
    .wrapping_add(q));
fold!(
    ProdI,
    "Wrapping integer product in i64.",
    [Elem],
    i64,
    1,
    |a, x| a.wrapping_mul(x.to_scalar().to_i64()),
    |p, q| p.wrapping_mul(q)
);
fold!(MaxF, "Maximum, NaN propagating.", [Arith], T, T::lowest(), |a, x| T::vmax(a, x), |p, q| T::vmax(p, q));
fold!(MinF, "Minimum, NaN propagating.", [Arith], T, T::highest(), |a, x| T::vmin(a, x), |p, q| T::vmin(p, q));
fold!(AllF, "Every element nonzero.", [Arith], bool, true, |a, x| a & T::nonzero(x), |p, q| p & q);
fold!(AnyF, "Some element nonzero.", [Arith], bool, false, |a, x| a | T::nonzero(x), |p, q| p | q);

fn combine_lanes<T, F: Fold<T>>(f: &F, lanes: &[F::Acc]) -> F::Acc {
    lanes.iter().fold(f.init(), |t, &l| f.combine(t, l))
}

/// The canonical fold of one block, fed run by run in logical order.
struct BlockAcc<'f, F: Fold<T>, T> {
    f: &'f F,
    lanes: [F::Acc; LANES],
    pos: usize,
    full: usize,
    tail: Option<F::Acc>,
}

impl<'f, T: Copy, F: Fold<T>> BlockAcc<'f, F, T> {
    fn new(f: &'f F, len: usize) -> Self {
        BlockAcc { f, lanes: [f.init(); LANES], pos: 0, full: len - len % LANES, tail: None }
    }

    #[inline]
    fn push_run(&mut self, x: &[T], off: usize, stride: usize, n: usize) {
        let f = self.f;
        let mut i = 0;
        while i < n {
            if self.pos < self.full {
                if stride == 1 && self.pos.is_multiple_of(LANES) {
                    let m = (self.full - self.pos).min(n - i) / LANES * LANES;
                    if m > 0 {
                        f.step_lanes(&mut self.lanes, &x[off + i..off + i + m]);
                        self.pos += m;
                        i += m;
                        continue;
                    }
                }
                let l = self.pos % LANES;
                self.lanes[l] = f.step(self.lanes[l], x[off + i * stride]);
            } else {
                let lanes = &self.lanes;
                let t = self.tail.get_or_insert_with(|| combine_lanes(f, lanes));
                *t = f.step(*t, x[off + i * stride]);
            }
            self.pos += 1;
            i += 1;
        }
    }

    fn finish(self) -> F::Acc {
        self.tail.unwrap_or_else(|| combine_lanes(self.f, &self.lanes))
    }
}

/// Folds along the reduction, one output (or one block of one output) at a time.
fn fold_along<T: Copy + Sync, F: Fold<T>>(f: &F, x: &[T], s: &Split) -> Vec<F::Acc> {
    let plan = Plan::new(s.red.dims(), [&s.red]);
    let r = s.red.numel();
    let nb = r.div_ceil(BLOCK);
    let bases = bases(&s.kept);
    let block = |base: usize, b: usize| {
        let (start, end) = (b * BLOCK, ((b + 1) * BLOCK).min(r));
        let mut acc = BlockAcc::new(f, end - start);
        for_range(&plan, start, end, |o, st, n| acc.push_run(x, base + o, st, n));
        acc.finish()
    };
    let output = |base: usize| (0..nb).fold(f.init(), |t, b| f.combine(t, block(base, b)));
    let out_n = bases.len();
    if out_n * r < PAR_THRESHOLD {
        bases.iter().map(|&b| output(b)).collect()
    } else if nb == 1 || out_n >= 4 * rayon::current_num_threads() {
        bases.par_iter().map(|&b| output(b)).collect()
    } else {
        let parts: Vec<F::Acc> = (0..out_n * nb).into_par_iter().map(|i| block(bases[i / nb], i % nb)).collect();
        parts.chunks(nb).map(|p| p.iter().fold(f.init(), |t, &a| f.combine(t, a))).collect()
    }
}

/// Folds across outputs: for reduced dims outer to kept dims whose inner run has
/// stride 1, each reduced position updates a tile of contiguous outputs at once.
fn fold_across<T: Copy + Sync, F: Fold<T>>(f: &F, x: &[T], s: &Split, kplan: &Plan<1>) -> Vec<F::Acc> {
    let rplan = Plan::new(s.red.dims(), [&s.red]);
    let r = s.red.numel();
    let nb = r.div_ceil(BLOCK);
    let nk = kplan.inner_len;
    let mut out = vec![f.init(); kplan.numel];
    let tile = |first: usize, o: &mut [F::Acc]| {
        let tw = o.len();
        let mut lanes = vec![f.init(); LANES * tw];
        let mut tail = vec![f.init(); tw];
        let fill_tail = |tail: &mut [F::Acc], lanes: &[F::Acc]| {
            for (j, t) in tail.iter_mut().enumerate() {
                *t = (0..LANES).fold(f.init(), |a, l| f.combine(a, lanes[l * tw + j]));
            }
        };
        for b in 0..nb {
            let (start, end) = (b * BLOCK, ((b + 1) * BLOCK).min(r));
            let full = (end - start) - (end - start) % LANES;
            lanes.fill(f.init());
            let mut pos = 0;
            for_range(&rplan, start, end, |off, st, n| {
                for i in 0..n {
                    let src = &x[first + off + i * st..][..tw];
                    if pos < full {
                        let l = &mut lanes[(pos % LANES) * tw..][..tw];
                        for (a, &v) in l.iter_mut().zip(src) {
                            *a = f.step(*a, v);
                        }
                    } else {
                        if pos == full {
                            fill_tail(&mut tail, &lanes);
                        }
                        for (a, &v) in tail.iter_mut().zip(src) {
                            *a = f.step(*a, v);
                        }
                    }
                    pos += 1;
                }
            });
            if full == end - start {
                fill_tail(&mut tail, &lanes);
            }
            for (o, &t) in o.iter_mut().zip(&tail) {
                *o = f.combine(*o, t);
            }
        }
    };
    let row = |ri: usize, row: &mut [F::Acc], par: bool| {
        let base = kplan.row_offsets(ri)[0];
        if par {
            row.par_chunks_mut(TILE).enumerate().for_each(|(ti, o)| tile(base + ti * TILE, o));
        } else {
            row.chunks_mut(TILE).enumerate().for_each(|(ti, o)| tile(base + ti * TILE, o));
        }
    };
    if out.len() * r < PAR_THRESHOLD {
        out.chunks_mut(nk).enumerate().for_each(|(ri, o)| row(ri, o, false));
    } else {
        out.par_chunks_mut(nk).enumerate().for_each(|(ri, o)| row(ri, o, true));
    }
    out
}

/// Picks the traversal: along the reduction when its inner run is contiguous,
/// across outputs when theirs is, else along.
fn fold_all<T: Copy + Sync, F: Fold<T>>(f: &F, x: &[T], s: &Split) -> Vec<F::Acc> {
    let r = s.red.numel();
    if s.kept.numel() == 1 && r <= BLOCK && r < PAR_THRESHOLD && s.red.is_contiguous() {
        // One small contiguous reduction (`x.sum()` of a small tensor): one block,
        // folded in place, in the canonical order.
        let mut acc = BlockAcc::new(f, r);
        acc.push_run(x, s.kept.offset(), 1, r);
        return vec![acc.finish()];
    }
    let rplan = Plan::new(s.red.dims(), [&s.red]);
    let kplan = Plan::new(s.kept.dims(), [&s.kept]);
    let along_ok = rplan.inner_strides[0] == 1 && rplan.inner_len > 1;
    if !along_ok && kplan.inner_strides[0] == 1 && kplan.inner_len > 1 && s.red.numel() > 0 {
        fold_across(f, x, s, &kplan)
    } else {
        fold_along(f, x, s)
    }
}

/// True when `v` replaces `best` as the arg-max (arg-min): the first NaN wins and
/// sticks, then strictly greater (smaller) values, so ties keep the first index.
#[inline(always)]
fn arg_better<T: Arith>(best: T, v: T, max: bool) -> bool {
    !T::is_nan(best) && (T::is_nan(v) || if max { v > best } else { v < best })
}

fn arg_reduce<T: Elem + Arith>(x: &[T], l: &Layout, dim: usize, max: bool) -> Vec<i64> {
    let s = split(l, &[dim]);
    let n = l.dims()[dim];
    let st = l.strides()[dim];
    let kplan = Plan::new(s.kept.dims(), [&s.kept]);
    let work = kplan.numel * n;
    if st != 1 && kplan.inner_strides[0] == 1 && kplan.inner_len > 1 {
        // Across outputs: each reduced position updates a tile of contiguous outputs.
        let nk = kplan.inner_len;
        let mut out = vec![0i64; kplan.numel];
        let row = |ri: usize, o: &mut [i64]| {
            let base = kplan.row_offsets(ri)[0];
            for (ti, idx) in o.chunks_mut(TILE).enumerate() {
                let first = base + ti * TILE;
                let mut best: Vec<T> = x[first..first + idx.len()].to_vec();
                for i in 1..n {
                    let src = &x[first + i * st..][..idx.len()];
                    for ((b, k), &v) in best.iter_mut().zip(idx.iter_mut()).zip(src) {
                        if arg_better(*b, v, max) {
                            *b = v;
                            *k = i as i64;
                        }
                    }
                }
            }
        };
        if work < PAR_THRESHOLD {
            out.chunks_mut(nk).enumerate().for_each(|(ri, o)| row(ri, o));
        } else {
            out.par_chunks_mut(nk).enumerate().for_each(|(ri, o)| row(ri, o));
        }
        return out;
    }
    let one = |base: usize| -> i64 {
        let mut best = x[base];
        let mut bi = 0i64;
        for i in 1..n {
            let v = x[base + i * st];
            if arg_better(best, v, max) {
                best = v;
                bi = i as i64;
            }
        }
        bi
    };
    let bases = bases(&s.kept);
    if work >= PAR_THRESHOLD {
        bases.par_iter().map(|&b| one(b)).collect()
    } else {
        bases.iter().map(|&b| one(b)).collect()
    }
}

/// Reduces over `dims`; output is contiguous with reduced dims of size 1.
pub fn reduce(op: ReduceOp, b: &HostBuffer, l: &Layout, dims: &[usize]) -> Result<HostBuffer> {
    if dims.iter().any(|&d| d >= l.rank()) {
        return Err(Error::arg(op.name(), format!("dims {dims:?} out of range for rank {}", l.rank())));
    }
    if matches!(op, ReduceOp::ArgMax | ReduceOp::ArgMin) {
        if dims.len() != 1 {
            return Err(Error::arg(op.name(), "argmax/argmin reduce exactly one dim"));
        }
        if l.dims()[dims[0]] == 0 {
            return Err(Error::arg(op.name(), "cannot reduce over a zero-size dimension"));
        }
        let max = op == ReduceOp::ArgMax;
        // The output and its index scratch: two words per kept element.
        super::alloc::ensure_room(l.numel() / l.dims()[dims[0]], 16)?;
        return Ok(with_dtype!(b, v, T => HostBuffer::I64(arg_reduce(v, l, dims[0], max))));
    }
    let s = split(l, dims);
    // The output, the accumulators and the input offsets of every output element
    // (views can broadcast a small buffer to an output no machine can hold).
    super::alloc::ensure_room(s.kept.numel(), 24)?;
    if s.red.numel() == 0 && matches!(op, ReduceOp::Max | ReduceOp::Min) {
        return Err(Error::arg(op.name(), "cannot reduce over a zero-size dimension (no identity)"));
    }
    Ok(match op {
        ReduceOp::Sum => with_dtype!(b, v, T => {
            if T::DTYPE.is_float() {
                T::wrap(fold_all(&SumF, v, &s).into_iter().map(T::from_f64).collect())
            } else {
                T::wrap(fold_all(&SumI, v, &s).into_iter().map(|a| T::from_scalar(a.into())).collect())
            }
        }),
        ReduceOp::Prod => with_dtype!(b, v, T => {
            if T::DTYPE.is_float() {
                T::wrap(fold_all(&ProdF, v, &s).into_iter().map(T::from_f64).collect())
            } else {
                T::wrap(fold_all(&ProdI, v, &s).into_iter().map(|a| T::from_scalar(a.into())).collect())
            }
        }),
        ReduceOp::Max => with_dtype!(b, v, T => T::wrap(fold_all(&MaxF, v, &s))),
        ReduceOp::Min => with_dtype!(b, v, T => T::wrap(fold_all(&MinF, v, &s))),
        ReduceOp::All => with_dtype!(b, v, T => HostBuffer::Bool(fold_all(&AllF, v, &s))),
        ReduceOp::Any => with_dtype!(b, v, T => HostBuffer::Bool(fold_all(&AnyF, v, &s))),
        ReduceOp::ArgMax | ReduceOp::ArgMin => unreachable!("handled above"),
    })
}

/// Cumulative sum / product along `dim` (floats accumulate in f64, integers wrap in
/// i64), sequential along the dim so the result is layout-independent.
pub fn scan(op: ScanOp, b: &HostBuffer, l: &Layout, dim: usize) -> Result<HostBuffer> {
    if dim >= l.rank() {
        return Err(Error::arg("scan", format!("dim {dim} out of range for rank {}", l.rank())));
    }
    let s = split(l, &[dim]);
    let n = l.dims()[dim];
    let st = l.strides()[dim];
    // The output (of the view's full size) and two offset tables over the kept dims.
    super::alloc::ensure_room(l.numel(), 8)?;
    super::alloc::ensure_room(s.kept.numel(), 16)?;
    let ibases = bases(&s.kept);
    // Output offsets of each kept position in the contiguous output.
    let out_strides = l.shape().contiguous_strides();
    let ost = out_strides[dim];
    let kept_shape: Vec<usize> = (0..l.rank()).filter(|&d| d != dim).map(|d| l.dims()[d]).collect();
    let kept_ostrides: crate::shape::Dims = (0..l.rank()).filter(|&d| d != dim).map(|d| out_strides[d]).collect();
    let obases = bases(&Layout::new(Shape::new(&kept_shape), kept_ostrides, 0));
    let sum = op == ScanOp::CumSum;
    with_dtype!(b, v, T => {
        let mut out = vec![T::default(); l.numel()];
        for (&ib, &ob) in ibases.iter().zip(&obases) {
            if T::DTYPE.is_float() {
                let mut acc = if sum { 0.0 } else { 1.0 };
                for i in 0..n {
                    let x = v[ib + i * st].to_f64();
                    acc = if sum { acc + x } else { acc * x };
                    out[ob + i * ost] = T::from_f64(acc);
                }
            } else {
                let mut acc: i64 = if sum { 0 } else { 1 };
                for i in 0..n {
                    let x = v[ib + i * st].to_scalar().to_i64();
                    acc = if sum { acc.wrapping_add(x) } else { acc.wrapping_mul(x) };
                    out[ob + i * ost] = T::from_scalar(acc.into());
                }
            }
        }
        Ok(T::wrap(out))
    })
}

fn softmax_rows<T: Elem + Float>(x: &[T], rows: usize, cols: usize, log: bool) -> Vec<T> {
    let mut out = vec![<T as num_traits::Zero>::zero(); rows * cols];
    let work = |(r, o): (usize, &mut [T])| {
        let row = &x[r * cols..(r + 1) * cols];
        let mut m = f32::NEG_INFINITY;
        for v in row {
            let v = Elem::to_f64(*v) as f32;
            if v > m || v.is_nan() {
                m = v;
            }
        }
        if m == f32::NEG_INFINITY {
            m = 0.0;
        }
        let mut sum = 0f32;
        for (o, v) in o.iter_mut().zip(row) {
            let e = (Elem::to_f64(*v) as f32 - m).exp();
            sum += e;
            *o = T::from_f64(e as f64);
        }
        if log {
            // (x - max) - log(sum) keeps precision for large |x|; x - (max + log(sum))
            // would round the shift first.
            let ls = sum.ln();
            for (o, v) in o.iter_mut().zip(row) {
                *o = T::from_f64(((Elem::to_f64(*v) as f32 - m) - ls) as f64);
            }
        } else {
            let inv = 1.0 / sum;
            for o in o.iter_mut() {
                *o = T::from_f64((Elem::to_f64(*o) as f32 * inv) as f64);
            }
        }
    };
    if rows * cols >= PAR_THRESHOLD {
        out.par_chunks_mut(cols.max(1)).enumerate().for_each(work);
    } else {
        out.chunks_mut(cols.max(1)).enumerate().for_each(work);
    }
    out
}

/// `e^x` for `x <= 0` in f32 (softmax's shifted inputs), written so loops over it
/// vectorise (no branches, no float-to-int casts): `2^n e^r` with `n = round(x / ln 2)`
/// taken from the mantissa of `x / ln 2 + 1.5 * 2^23`, `|r| <= ln 2 / 2`, a degree-6
/// polynomial for `e^r` (Cephes' coefficients, about 1 ulp) and `2^n` built from the
/// exponent bits. Below -87.3 (where `e^x` is subnormal) it returns 0; NaN stays NaN.
#[inline(always)]
pub(super) fn exp_neg_f32(x: f32) -> f32 {
    const LO: f32 = -87.336_55;
    const MAGIC: f32 = 12_582_912.0;
    // Not `x.max(LO)`: that would turn NaN into LO.
    let xc = if x < LO { LO } else { x };
    let t = xc * std::f32::consts::LOG2_E + MAGIC;
    let n = t - MAGIC;
    let r = xc - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_2e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 0.166_666_65;
    p = p * r + 0.5;
    let er = p * r * r + r + 1.0;
    // The low bits of `t` hold n (two's complement); 127 + n is the biased exponent.
    let ni = (t.to_bits() as i32).wrapping_sub(0x4B40_0000);
    let scale = f32::from_bits((ni.wrapping_add(127) as u32) << 23);
    let y = er * scale;
    if x < LO {
        0.0
    } else {
        y
    }
}

/// Lanes of the f32 softmax passes: 16 independent maxima and sums, one AVX-512
/// register, two AVX2 ones; the same order at every [`Isa`] level.
const SM_LANES: usize = 16;

multiversion! {
    /// One f32 softmax (or log-softmax) row: the max over 16 lanes, `exp(x - max)` into
    /// the output with its sum over 16 lanes in the same pass, then the scale (or the log
    /// shift). A NaN anywhere in a row makes the sum NaN, so the whole row comes out NaN,
    /// as in PyTorch.
    pub(super) fn softmax_row_f32(row: &[f32], o: &mut [f32], log: bool) {
        const L: usize = SM_LANES;
        let mut lanes = [f32::NEG_INFINITY; L];
        let chunks = row.chunks_exact(L);
        let tail = chunks.remainder();
        for c in chunks {
            for k in 0..L {
                lanes[k] = if c[k] > lanes[k] { c[k] } else { lanes[k] };
            }
        }
        let mut m = f32::NEG_INFINITY;
        for &v in lanes.iter().chain(tail) {
            if v > m {
                m = v;
            }
        }
        if m == f32::NEG_INFINITY {
            m = 0.0;
        }
        let mut sums = [0f32; L];
        let n = row.len() - row.len() % L;
        for (oc, xc) in o[..n].chunks_exact_mut(L).zip(row[..n].chunks_exact(L)) {
            for k in 0..L {
                let e = exp_neg_f32(xc[k] - m);
                oc[k] = e;
                sums[k] += e;
            }
        }
        let mut sum = 0f32;
        for (o, &v) in o[n..].iter_mut().zip(&row[n..]) {
            *o = exp_neg_f32(v - m);
            sum += *o;
        }
        for s in sums {
            sum += s;
        }
        if log {
            // (x - max) - log(sum) keeps precision for large |x|.
            let ls = sum.ln();
            for (o, &v) in o.iter_mut().zip(row) {
                *o = (v - m) - ls;
            }
        } else {
            let inv = 1.0 / sum;
            for o in o.iter_mut() {
                *o *= inv;
            }
        }
    }
}

/// f32 softmax rows without f64 round trips, each row [`softmax_row_f32`] at the
/// CPU's widest vector level.
fn softmax_rows_f32(x: &[f32], rows: usize, cols: usize, log: bool) -> Result<Vec<f32>> {
    let mut out = alloc::uninit::<f32>(rows * cols)?;
    let isa = Isa::best();
    let work = |(r, o): (usize, &mut [f32])| softmax_row_f32(isa, &x[r * cols..(r + 1) * cols], o, log);
    if rows * cols >= PAR_THRESHOLD {
        // Whole rows per task, a few per thread at least (rayon splits adaptively).
        out.par_chunks_mut(cols.max(1)).enumerate().for_each(work);
    } else {
        out.chunks_mut(cols.max(1)).enumerate().for_each(work);
    }
    Ok(out)
}

fn softmax_rows_f64(x: &[f64], rows: usize, cols: usize, log: bool) -> Vec<f64> {
    let mut out = vec![0.0; rows * cols];
    out.par_chunks_mut(cols.max(1)).enumerate().for_each(|(r, o)| {
        let row = &x[r * cols..(r + 1) * cols];
        let mut m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        if m == f64::NEG_INFINITY {
            m = 0.0;
        }
        let sum: f64 = row.iter().map(|v| (v - m).exp()).sum();
        for (o, v) in o.iter_mut().zip(row) {
            *o = if log { v - m - sum.ln() } else { (v - m).exp() / sum };
        }
    });
    out
}

/// Fused softmax over the last dim of a contiguous rank-2 view.
pub fn softmax_lastdim(b: &HostBuffer, l: &Layout, log: bool) -> Option<Result<HostBuffer>> {
    let r = l.contiguous_range()?;
    if l.rank() != 2 {
        return None;
    }
    let (rows, cols) = (l.dims()[0], l.dims()[1]);
    Some(match b {
        HostBuffer::F64(v) => Ok(HostBuffer::F64(softmax_rows_f64(&v[r], rows, cols, log))),
        HostBuffer::F32(v) => softmax_rows_f32(&v[r], rows, cols, log).map(HostBuffer::F32),
        _ => with_float!(b, v, T => Ok(T::wrap(softmax_rows(&v[r], rows, cols, log))),
            else Err(unsupported("softmax", b.dtype()))),
    })
}

#[cfg(test)]
mod isa_tests {
    use super::*;

    fn data(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 20.0
            })
            .collect()
    }

    /// Every dispatch level the CPU supports: the softmax and log-softmax rows match an
    /// f64 reference and give the same bits as the baseline, for widths around the lanes.
    #[test]
    fn softmax_rows_at_every_level_match_f64() {
        for cols in [1usize, 10, 15, 16, 17, 31, 33, 1023, 1025] {
            let x = data(cols, cols as u64);
            let m = x.iter().fold(f64::NEG_INFINITY, |a, &v| a.max(v as f64));
            let z: f64 = x.iter().map(|&v| (v as f64 - m).exp()).sum();
            for log in [false, true] {
                let mut first: Option<Vec<f32>> = None;
                for isa in Isa::supported() {
                    let mut o = vec![0f32; cols];
                    softmax_row_f32(isa, &x, &mut o, log);
                    for (i, (&got, &v)) in o.iter().zip(&x).enumerate() {
                        let want = if log { v as f64 - m - z.ln() } else { (v as f64 - m).exp() / z };
                        let tol = if log { 1e-5 * want.abs().max(1.0) } else { 1e-6 * want.abs() + 1e-12 };
                        assert!(
                            (got as f64 - want).abs() <= tol,
                            "{} cols {cols} log {log} [{i}]: {got} vs {want}",
                            isa.level()
                        );
                    }
                    match &first {
                        None => first = Some(o),
                        Some(f) => {
                            assert!(f.iter().zip(&o).all(|(a, b)| a.to_bits() == b.to_bits()), "{}", isa.level())
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn f32_sum_lanes_at_every_level_match_f64() {
        let x = data(LANES * 1000, 7);
        let exact: f64 = x.iter().map(|&v| v as f64).sum();
        let mut first = None;
        for isa in Isa::supported() {
            let mut lanes = [0f64; LANES];
            sum_lanes_f32(isa, &mut lanes, &x);
            let s: f64 = lanes.iter().sum();
            assert!((s - exact).abs() <= 1e-9 * exact.abs().max(1.0), "{}: {s} vs {exact}", isa.level());
            let bits: Vec<u64> = lanes.iter().map(|v| v.to_bits()).collect();
            match &first {
                None => first = Some(bits),
                Some(f) => assert_eq!(f, &bits, "{}", isa.level()),
            }
        }
    }
}
