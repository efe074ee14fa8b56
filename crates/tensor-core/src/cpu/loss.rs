//! Fused cross-entropy over rows of logits ([`crate::FusedOp::CrossEntropy`] and its
//! backward): one pass per row for the loss and its log-sum-exp, one for the gradient,
//! with the rows split over threads (each row's arithmetic is fixed, so the bits do not
//! depend on the thread count).

use rayon::prelude::*;

use super::alloc;
use super::iter::PAR_THRESHOLD;
use super::reduce::exp_neg_f32;
use super::simd::{multiversion, Isa};
use super::HostBuffer;
use crate::{Error, Layout, Result};

/// The per-call constants of a cross-entropy, its targets read and checked.
struct Rows<'a, T> {
    cols: usize,
    /// Each row's class, `None` for an ignored row.
    target: Vec<Option<usize>>,
    /// The class weights (empty: all 1).
    weight: &'a [T],
    /// `sum_c w[c]` (or `cols`).
    weight_sum: T,
    smoothing: T,
}

/// The float types of the kernel, with the exponential each one uses.
trait CeFloat: num_traits::Float + Send + Sync + 'static {
    fn exp_le0(self) -> Self;
    fn from_f64(v: f64) -> Self;
}

impl CeFloat for f32 {
    #[inline(always)]
    fn exp_le0(self) -> f32 {
        exp_neg_f32(self)
    }
    fn from_f64(v: f64) -> f32 {
        v as f32
    }
}

impl CeFloat for f64 {
    #[inline(always)]
    fn exp_le0(self) -> f64 {
        self.exp()
    }
    fn from_f64(v: f64) -> f64 {
        v
    }
}

const OP: &str = "cross_entropy";

/// Reads and checks the targets (every one in `0..cols` or `ignore_index`).
fn read_targets<'a, T: CeFloat>(
    op: &'static str,
    target: &[i64],
    cols: usize,
    weight: &'a [T],
    ignore_index: i64,
    label_smoothing: f64,
) -> Result<Rows<'a, T>> {
    let target = target
        .iter()
        .map(|&t| match t {
            t if t == ignore_index => Ok(None),
            t if t >= 0 && (t as u64) < cols as u64 => Ok(Some(t as usize)),
            t => Err(Error::IndexOutOfRange { op, index: t, dim: 1, size: cols }),
        })
        .collect::<Result<Vec<_>>>()?;
    let weight_sum =
        if weight.is_empty() { T::from_f64(cols as f64) } else { weight.iter().fold(T::zero(), |a, &w| a + w) };
    Ok(Rows { cols, target, weight, weight_sum, smoothing: T::from_f64(label_smoothing) })
}

/// The maximum (0 for an empty or all `-inf` row) and `log(sum exp(x - max))`.
#[inline(always)]
fn row_lse<T: CeFloat>(row: &[T]) -> T {
    const L: usize = 16;
    let mut lanes = [T::neg_infinity(); L];
    let chunks = row.chunks_exact(L);
    let tail = chunks.remainder();
    for c in chunks {
        for k in 0..L {
            lanes[k] = if c[k] > lanes[k] { c[k] } else { lanes[k] };
        }
    }
    let mut m = T::neg_infinity();
    for &v in lanes.iter().chain(tail) {
        if v > m {
            m = v;
        }
    }
    if m == T::neg_infinity() {
        m = T::zero();
    }
    let mut sums = [T::zero(); L];
    let chunks = row.chunks_exact(L);
    let tail = chunks.remainder();
    for c in chunks {
        for k in 0..L {
            sums[k] = sums[k] + (c[k] - m).exp_le0();
        }
    }
    let mut sum = T::zero();
    for &v in tail {
        sum = sum + (v - m).exp_le0();
    }
    for s in sums {
        sum = sum + s;
    }
    m + sum.ln()
}

/// One row's `(loss, lse)`.
#[inline(always)]
fn row_forward<T: CeFloat>(rows: &Rows<'_, T>, row: &[T], t: Option<usize>) -> (T, T) {
    let lse = row_lse(row);
    let Some(t) = t else { return (T::zero(), lse) };
    let w = |c: usize| if rows.weight.is_empty() { T::one() } else { rows.weight[c] };
    let eps = rows.smoothing;
    let mut loss = (T::one() - eps) * w(t) * (lse - row[t]);
    if eps > T::zero() {
        // sum_c w[c] (lse - x[c]) eps / C, each term >= 0 (no cancellation).
        let s = if rows.weight.is_empty() {
            row.iter().fold(T::zero(), |a, &x| a + (lse - x))
        } else {
            row.iter().zip(rows.weight).fold(T::zero(), |a, (&x, &w)| a + w * (lse - x))
        };
        loss = loss + eps / T::from_f64(rows.cols as f64) * s;
    }
    (loss, lse)
}

/// `e^(x - lse)`, the exponent clamped at 0: with the forward's `lse` it never is
/// above 0 beyond rounding, and a caller's wrong `lse` must not overflow the fast
/// exponential (NaN stays NaN).
#[inline(always)]
fn prob<T: CeFloat>(x: T, lse: T) -> T {
    let d = x - lse;
    (if d > T::zero() { T::zero() } else { d }).exp_le0()
}

/// One row's gradient into `o`.
#[inline(always)]
fn row_backward<T: CeFloat>(rows: &Rows<'_, T>, row: &[T], t: Option<usize>, lse: T, g: T, o: &mut [T]) {
    let Some(t) = t else {
        o.fill(T::zero());
        return;
    };
    let eps = rows.smoothing;
    let wt = if rows.weight.is_empty() { T::one() } else { rows.weight[t] };
    let spread = eps / T::from_f64(rows.cols as f64);
    // sum_c K[n, c]
    let ksum = (T::one() - eps) * wt + spread * rows.weight_sum;
    let scale = g * ksum;
    if rows.weight.is_empty() || eps == T::zero() {
        let sub = g * spread;
        for (o, &x) in o.iter_mut().zip(row) {
            *o = scale * prob(x, lse) - sub;
        }
    } else {
        let gs = g * spread;
        for ((o, &x), &w) in o.iter_mut().zip(row).zip(rows.weight) {
            *o = scale * prob(x, lse) - gs * w;
        }
    }
    o[t] = o[t] - g * (T::one() - eps) * wt;
}

multiversion! {
    fn forward_rows_f32(rows: &Rows<'_, f32>, x: &[f32], first: usize, loss: &mut [f32], lse: &mut [f32]) {
        for (k, (l, s)) in loss.iter_mut().zip(lse.iter_mut()).enumerate() {
            let n = first + k;
            (*l, *s) = row_forward(rows, &x[n * rows.cols..(n + 1) * rows.cols], rows.target[n]);
        }
    }
}

multiversion! {
    fn backward_rows_f32(rows: &Rows<'_, f32>, x: &[f32], first: usize, lse: &[f32], g: &[f32], o: &mut [f32]) {
        let c = rows.cols;
        for (k, o) in o.chunks_exact_mut(c).enumerate() {
            let n = first + k;
            row_backward(rows, &x[n * c..(n + 1) * c], rows.target[n], lse[n], g[n], o);
        }
    }
}

/// Rows per task: about 16K elements.
fn rows_per_task(cols: usize) -> usize {
    ((1 << 14) / cols.max(1)).max(1)
}

fn forward_typed<T: CeFloat + crate::dtype::Elem>(
    rows: &Rows<'_, T>,
    x: &[T],
    n: usize,
    run: impl Fn(usize, &mut [T], &mut [T]) + Sync,
) -> Result<(Vec<T>, Vec<T>)> {
    let (mut loss, mut lse) = (alloc::uninit::<T>(n)?, alloc::uninit::<T>(n)?);
    let per = rows_per_task(rows.cols);
    let work = |(i, (l, s)): (usize, (&mut [T], &mut [T]))| run(i * per, l, s);
    if x.len() >= PAR_THRESHOLD {
        loss.par_chunks_mut(per).zip(lse.par_chunks_mut(per)).enumerate().for_each(work);
    } else {
        loss.chunks_mut(per).zip(lse.chunks_mut(per)).enumerate().for_each(work);
    }
    Ok((loss, lse))
}

fn backward_typed<T: CeFloat + crate::dtype::Elem>(
    rows: &Rows<'_, T>,
    x: &[T],
    run: impl Fn(usize, &mut [T]) + Sync,
) -> Result<Vec<T>> {
    let mut out = alloc::uninit::<T>(x.len())?;
    if rows.cols == 0 {
        return Ok(out);
    }
    let per = rows_per_task(rows.cols);
    let work = |(i, o): (usize, &mut [T])| run(i * per, o);
    if x.len() >= PAR_THRESHOLD {
        out.par_chunks_mut(per * rows.cols).enumerate().for_each(work);
    } else {
        out.chunks_mut(per * rows.cols).enumerate().for_each(work);
    }
    Ok(out)
}

/// A contiguous `[n]` slice of an optional view.
fn part<'a, T>(v: &'a [T], l: &Layout) -> Option<&'a [T]> {
    v.get(l.contiguous_range()?)
}

/// The loss and log-sum-exp of each row of contiguous `x [rows, cols]`; `None` for
/// dtypes other than f32 and f64, or views the kernel does not take.
pub(crate) fn cross_entropy(
    x: &HostBuffer,
    l: &Layout,
    target: (&HostBuffer, &Layout),
    weight: Option<(&HostBuffer, &Layout)>,
    ignore_index: i64,
    label_smoothing: f64,
) -> Option<Result<Vec<HostBuffer>>> {
    let (n, cols) = match l.dims() {
        &[n, c] => (n, c),
        _ => return None,
    };
    let r = l.contiguous_range()?;
    let HostBuffer::I64(t) = target.0 else { return None };
    let t = part(t, target.1).filter(|t| t.len() == n)?;
    macro_rules! go {
        ($v:expr, $W:ident, $T:ty, $rows_fn:expr) => {{
            let x: &[$T] = $v.get(r)?;
            let w: &[$T] = match weight {
                None => &[],
                Some((HostBuffer::$W(w), wl)) => part(w, wl).filter(|w| w.len() == cols)?,
                Some(_) => return None,
            };
            let rows = match read_targets(OP, t, cols, w, ignore_index, label_smoothing) {
                Ok(r) => r,
                Err(e) => return Some(Err(e)),
            };
            let f = $rows_fn;
            Some(
                forward_typed(&rows, x, n, |first, lo, ls| f(&rows, x, first, lo, ls))
                    .map(|(a, b)| vec![HostBuffer::$W(a), HostBuffer::$W(b)]),
            )
        }};
    }
    match x {
        HostBuffer::F32(v) => {
            let isa = Isa::best();
            go!(v, F32, f32, move |rows: &Rows<'_, f32>, x: &[f32], first, lo: &mut [f32], ls: &mut [f32]| {
                forward_rows_f32(isa, rows, x, first, lo, ls)
            })
        }
        HostBuffer::F64(v) => {
            go!(v, F64, f64, |rows: &Rows<'_, f64>, x: &[f64], first: usize, lo: &mut [f64], ls: &mut [f64]| {
                for (k, (a, b)) in lo.iter_mut().zip(ls.iter_mut()).enumerate() {
                    let i = first + k;
                    (*a, *b) = row_forward(rows, &x[i * rows.cols..(i + 1) * rows.cols], rows.target[i]);
                }
            })
        }
        _ => None,
    }
}

/// The logits' gradient of [`cross_entropy`] from the rows' log-sum-exp `lse` and loss
/// gradient `grad` (contiguous `[rows]`, the logits' dtype).
#[allow(clippy::too_many_arguments)]
pub(crate) fn cross_entropy_backward(
    x: &HostBuffer,
    l: &Layout,
    lse: (&HostBuffer, &Layout),
    grad: (&HostBuffer, &Layout),
    target: (&HostBuffer, &Layout),
    weight: Option<(&HostBuffer, &Layout)>,
    ignore_index: i64,
    label_smoothing: f64,
) -> Option<Result<HostBuffer>> {
    const OP: &str = "cross_entropy_backward";
    let (n, cols) = match l.dims() {
        &[n, c] => (n, c),
        _ => return None,
    };
    let r = l.contiguous_range()?;
    let HostBuffer::I64(t) = target.0 else { return None };
    let t = part(t, target.1).filter(|t| t.len() == n)?;
    macro_rules! go {
        ($v:expr, $W:ident, $T:ty, $rows_fn:expr) => {{
            let x: &[$T] = $v.get(r)?;
            let (HostBuffer::$W(s), HostBuffer::$W(g)) = (lse.0, grad.0) else { return None };
            let s = part(s, lse.1).filter(|s| s.len() == n)?;
            let g = part(g, grad.1).filter(|g| g.len() == n)?;
            let w: &[$T] = match weight {
                None => &[],
                Some((HostBuffer::$W(w), wl)) => part(w, wl).filter(|w| w.len() == cols)?,
                Some(_) => return None,
            };
            let rows = match read_targets(OP, t, cols, w, ignore_index, label_smoothing) {
                Ok(r) => r,
                Err(e) => return Some(Err(e)),
            };
            let f = $rows_fn;
            Some(backward_typed(&rows, x, |first, o| f(&rows, x, first, s, g, o)).map(HostBuffer::$W))
        }};
    }
    match x {
        HostBuffer::F32(v) => {
            let isa = Isa::best();
            go!(v, F32, f32, move |rows: &Rows<'_, f32>, x: &[f32], first, s: &[f32], g: &[f32], o: &mut [f32]| {
                backward_rows_f32(isa, rows, x, first, s, g, o)
            })
        }
        HostBuffer::F64(v) => {
            go!(v, F64, f64, |rows: &Rows<'_, f64>, x: &[f64], first: usize, s: &[f64], g: &[f64], o: &mut [f64]| {
                let c = rows.cols;
                for (k, o) in o.chunks_exact_mut(c).enumerate() {
                    let i = first + k;
                    row_backward(rows, &x[i * c..(i + 1) * c], rows.target[i], s[i], g[i], o);
                }
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 16.0
            })
            .collect()
    }

    /// Every vector level: the loss, log-sum-exp and gradient of f32 rows match an f64
    /// reference (with weights and smoothing) and give the same bits at every level.
    #[test]
    fn rows_at_every_level_match_f64() {
        for cols in [1usize, 10, 16, 17, 65, 300] {
            let nrows = 5;
            let x = data(nrows * cols, cols as u64);
            let w: Vec<f32> = data(cols, 99).iter().map(|v| v.abs() / 8.0 + 0.1).collect();
            let t: Vec<i64> = (0..nrows as i64).map(|i| if i == 2 { -100 } else { (i * 7) % cols as i64 }).collect();
            for (weighted, eps) in [(false, 0.0), (true, 0.0), (false, 0.2), (true, 0.3)] {
                let wv: &[f32] = if weighted { &w } else { &[] };
                let rows = read_targets(OP, &t, cols, wv, -100, eps).unwrap();
                let mut first: Option<Vec<u32>> = None;
                for isa in Isa::supported() {
                    let (mut loss, mut lse) = (vec![0f32; nrows], vec![0f32; nrows]);
                    forward_rows_f32(isa, &rows, &x, 0, &mut loss, &mut lse);
                    let g: Vec<f32> = (0..nrows).map(|i| 0.5 + i as f32).collect();
                    let mut dx = vec![0f32; nrows * cols];
                    backward_rows_f32(isa, &rows, &x, 0, &lse, &g, &mut dx);
                    for n in 0..nrows {
                        let row: Vec<f64> = x[n * cols..(n + 1) * cols].iter().map(|&v| v as f64).collect();
                        let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                        let z = m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
                        let wf = |c: usize| if weighted { w[c] as f64 } else { 1.0 };
                        let k: Vec<f64> = (0..cols)
                            .map(|c| match t[n] {
                                -100 => 0.0,
                                tn => {
                                    eps * wf(c) / cols as f64 + if c as i64 == tn { (1.0 - eps) * wf(c) } else { 0.0 }
                                }
                            })
                            .collect();
                        let want: f64 = -(0..cols).map(|c| k[c] * (row[c] - z)).sum::<f64>();
                        let ks: f64 = k.iter().sum();
                        assert!((lse[n] as f64 - z).abs() <= 1e-5 * z.abs().max(1.0), "lse {cols} {n}");
                        assert!(
                            (loss[n] as f64 - want).abs() <= 1e-5 * want.abs().max(1.0),
                            "loss {cols} {n}: {} vs {want}",
                            loss[n]
                        );
                        for c in 0..cols {
                            let d = g[n] as f64 * ((row[c] - z).exp() * ks - k[c]);
                            let got = dx[n * cols + c] as f64;
                            assert!((got - d).abs() <= 1e-5 * g[n] as f64, "dx {cols} {n} {c}: {got} vs {d}");
                        }
                    }
                    let bits: Vec<u32> = loss.iter().chain(&lse).chain(&dx).map(|v| v.to_bits()).collect();
                    match &first {
                        None => first = Some(bits),
                        Some(f) => assert_eq!(f, &bits, "{}", isa.level()),
                    }
                }
            }
        }
    }

    #[test]
    fn a_target_out_of_range_is_an_error() {
        let e = read_targets::<f32>(OP, &[0, 3], 3, &[], -100, 0.0).err().unwrap();
        assert!(matches!(e, Error::IndexOutOfRange { index: 3, size: 3, .. }), "{e}");
        let e = read_targets::<f32>(OP, &[-1], 3, &[], -100, 0.0).err().unwrap();
        assert!(matches!(e, Error::IndexOutOfRange { index: -1, .. }), "{e}");
        assert!(read_targets::<f32>(OP, &[-100, 2], 3, &[], -100, 0.0).is_ok());
    }
}
