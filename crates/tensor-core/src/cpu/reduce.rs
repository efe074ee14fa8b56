//! Reductions, scans and the fused softmax on the CPU.
//!
//! Every reduction folds fixed-size blocks and combines them in a fixed order, so the
//! result does not depend on the number of threads.

use num_traits::Float;
use rayon::prelude::*;
use smallvec::SmallVec;

use super::iter::{Plan, PAR_THRESHOLD};
use super::{unsupported, with_dtype, with_float, Arith, CpuBuffer};
use crate::backend::{ReduceOp, ScanOp};
use crate::dtype::Elem;
use crate::shape::Shape;
use crate::{Error, Layout, Result};

/// Size of the blocks a long run is cut into for parallel reduction.
const BLOCK: usize = 1 << 16;

/// The part of a layout that is reduced (offset 0) and the offsets of each output.
struct Split {
    red: Layout,
    bases: Vec<usize>,
    red_numel: usize,
}

fn split(l: &Layout, dims: &[usize]) -> Split {
    let rank = l.rank();
    let mut kd: SmallVec<[usize; 6]> = SmallVec::new();
    let mut ks: SmallVec<[usize; 6]> = SmallVec::new();
    let mut rd: SmallVec<[usize; 6]> = SmallVec::new();
    let mut rs: SmallVec<[usize; 6]> = SmallVec::new();
    for d in 0..rank {
        if dims.contains(&d) {
            rd.push(l.dims()[d]);
            rs.push(l.strides()[d]);
        } else {
            kd.push(l.dims()[d]);
            ks.push(l.strides()[d]);
        }
    }
    let kept = Layout::new(Shape(kd), ks, l.offset());
    let red = Layout::new(Shape(rd), rs, 0);
    let mut bases = vec![0usize; kept.numel()];
    let plan = Plan::new(kept.dims(), [&kept]);
    let mut i = 0;
    plan.for_each_run(|[o], [s], n| {
        for j in 0..n {
            bases[i] = o + j * s;
            i += 1;
        }
    });
    let red_numel = red.numel();
    Split { red, bases, red_numel }
}

/// A fold over runs of elements.
trait Fold<T>: Sync {
    type Acc: Copy + Send;
    fn init(&self) -> Self::Acc;
    fn run(&self, acc: Self::Acc, x: &[T], off: usize, stride: usize, n: usize) -> Self::Acc;
    fn combine(&self, a: Self::Acc, b: Self::Acc) -> Self::Acc;
}

struct SumF;
impl<T: Elem> Fold<T> for SumF {
    type Acc = f64;
    fn init(&self) -> f64 {
        0.0
    }
    #[inline]
    fn run(&self, acc: f64, x: &[T], off: usize, stride: usize, n: usize) -> f64 {
        if stride == 1 {
            // Eight independent lanes so the compiler can vectorise the adds.
            let s = &x[off..off + n];
            let mut lanes = [0f64; 8];
            let chunks = s.chunks_exact(8);
            let rest = chunks.remainder();
            for c in chunks {
                for j in 0..8 {
                    lanes[j] += c[j].to_f64();
                }
            }
            let mut t = acc;
            for l in lanes {
                t += l;
            }
            for v in rest {
                t += Elem::to_f64(*v);
            }
            t
        } else {
            let mut t = acc;
            for i in 0..n {
                t += x[off + i * stride].to_f64();
            }
            t
        }
    }
    fn combine(&self, a: f64, b: f64) -> f64 {
        a + b
    }
}

struct SumI;
impl<T: Elem> Fold<T> for SumI {
    type Acc = i64;
    fn init(&self) -> i64 {
        0
    }
    fn run(&self, acc: i64, x: &[T], off: usize, stride: usize, n: usize) -> i64 {
        let mut t = acc;
        for i in 0..n {
            t = t.wrapping_add(x[off + i * stride].to_scalar().to_i64());
        }
        t
    }
    fn combine(&self, a: i64, b: i64) -> i64 {
        a.wrapping_add(b)
    }
}

struct ProdF;
impl<T: Elem> Fold<T> for ProdF {
    type Acc = f64;
    fn init(&self) -> f64 {
        1.0
    }
    fn run(&self, acc: f64, x: &[T], off: usize, stride: usize, n: usize) -> f64 {
        let mut t = acc;
        for i in 0..n {
            t *= x[off + i * stride].to_f64();
        }
        t
    }
    fn combine(&self, a: f64, b: f64) -> f64 {
        a * b
    }
}

struct ProdI;
impl<T: Elem> Fold<T> for ProdI {
    type Acc = i64;
    fn init(&self) -> i64 {
        1
    }
    fn run(&self, acc: i64, x: &[T], off: usize, stride: usize, n: usize) -> i64 {
        let mut t = acc;
        for i in 0..n {
            t = t.wrapping_mul(x[off + i * stride].to_scalar().to_i64());
        }
        t
    }
    fn combine(&self, a: i64, b: i64) -> i64 {
        a.wrapping_mul(b)
    }
}

struct MaxMin(bool);
impl<T: Elem + Arith> Fold<T> for MaxMin {
    type Acc = T;
    fn init(&self) -> T {
        if self.0 {
            T::lowest()
        } else {
            T::highest()
        }
    }
    #[inline]
    fn run(&self, acc: T, x: &[T], off: usize, stride: usize, n: usize) -> T {
        let mut t = acc;
        if self.0 {
            for i in 0..n {
                t = T::vmax(t, x[off + i * stride]);
            }
        } else {
            for i in 0..n {
                t = T::vmin(t, x[off + i * stride]);
            }
        }
        t
    }
    fn combine(&self, a: T, b: T) -> T {
        if self.0 {
            T::vmax(a, b)
        } else {
            T::vmin(a, b)
        }
    }
}

struct AllAny(bool);
impl<T: Elem + Arith> Fold<T> for AllAny {
    type Acc = bool;
    fn init(&self) -> bool {
        self.0
    }
    fn run(&self, acc: bool, x: &[T], off: usize, stride: usize, n: usize) -> bool {
        let mut t = acc;
        for i in 0..n {
            let nz = T::nonzero(x[off + i * stride]);
            t = if self.0 { t && nz } else { t || nz };
        }
        t
    }
    fn combine(&self, a: bool, b: bool) -> bool {
        if self.0 {
            a && b
        } else {
            a || b
        }
    }
}

/// Folds every output element; returns one accumulator per output.
fn fold_all<T: Sync, F: Fold<T>>(f: &F, x: &[T], s: &Split) -> Vec<F::Acc> {
    let plan = Plan::new(s.red.dims(), [&s.red]);
    let fold_one = |base: usize| -> F::Acc {
        let mut acc = f.init();
        plan.for_each_run(|[o], [st], n| acc = f.run(acc, x, base + o, st, n));
        acc
    };
    let out_n = s.bases.len();
    if out_n == 1 && s.red_numel >= PAR_THRESHOLD && plan.rows() == 1 {
        // One long run: fold fixed blocks in parallel, combine in order.
        let base = s.bases[0];
        let st = plan.inner_strides[0];
        let n = plan.inner_len;
        let nblocks = n.div_ceil(BLOCK);
        let parts: Vec<F::Acc> = (0..nblocks)
            .into_par_iter()
            .map(|b| {
                let start = b * BLOCK;
                let len = BLOCK.min(n - start);
                f.run(f.init(), x, base + start * st, st, len)
            })
            .collect();
        let mut acc = f.init();
        for p in parts {
            acc = f.combine(acc, p);
        }
        return vec![acc];
    }
    if out_n * s.red_numel >= PAR_THRESHOLD && out_n > 1 {
        s.bases.par_iter().map(|&b| fold_one(b)).collect()
    } else {
        s.bases.iter().map(|&b| fold_one(b)).collect()
    }
}

fn arg_reduce<T: Elem + Arith>(x: &[T], l: &Layout, dim: usize, max: bool) -> Vec<i64> {
    let s = split(l, &[dim]);
    let n = l.dims()[dim];
    let st = l.strides()[dim];
    let one = |base: usize| -> i64 {
        let mut best = x[base];
        let mut bi = 0i64;
        for i in 1..n {
            let v = x[base + i * st];
            if T::is_nan(best) {
                break;
            }
            let better = if T::is_nan(v) {
                true
            } else if max {
                v > best
            } else {
                v < best
            };
            if better {
                best = v;
                bi = i as i64;
            }
        }
        bi
    };
    if s.bases.len() * n >= PAR_THRESHOLD {
        s.bases.par_iter().map(|&b| one(b)).collect()
    } else {
        s.bases.iter().map(|&b| one(b)).collect()
    }
}

/// Reduces over `dims`; output is contiguous with reduced dims of size 1.
pub fn reduce(op: ReduceOp, b: &CpuBuffer, l: &Layout, dims: &[usize]) -> Result<CpuBuffer> {
    if matches!(op, ReduceOp::ArgMax | ReduceOp::ArgMin) {
        if dims.len() != 1 {
            return Err(Error::arg(op.name(), "argmax/argmin reduce exactly one dim"));
        }
        if l.dims()[dims[0]] == 0 {
            return Err(Error::arg(op.name(), "cannot reduce over a zero-size dimension"));
        }
        let max = op == ReduceOp::ArgMax;
        return Ok(with_dtype!(b, v, T => CpuBuffer::I64(arg_reduce(v, l, dims[0], max))));
    }
    let s = split(l, dims);
    if s.red_numel == 0 && matches!(op, ReduceOp::Max | ReduceOp::Min) {
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
        ReduceOp::Max | ReduceOp::Min => {
            let m = MaxMin(op == ReduceOp::Max);
            with_dtype!(b, v, T => T::wrap(fold_all(&m, v, &s)))
        }
        ReduceOp::All | ReduceOp::Any => {
            let m = AllAny(op == ReduceOp::All);
            with_dtype!(b, v, T => CpuBuffer::Bool(fold_all(&m, v, &s)))
        }
        ReduceOp::ArgMax | ReduceOp::ArgMin => unreachable!("handled above"),
    })
}

/// Cumulative sum / product along `dim`.
pub fn scan(op: ScanOp, b: &CpuBuffer, l: &Layout, dim: usize) -> Result<CpuBuffer> {
    let s = split(l, &[dim]);
    let n = l.dims()[dim];
    let st = l.strides()[dim];
    // Output index of element (base k, position i): contiguous layout of l's shape.
    let out_strides = l.shape().contiguous_strides();
    let ost = out_strides[dim];
    // Output base offsets, in the same order as `s.bases`.
    let kept_shape: Vec<usize> = (0..l.rank()).filter(|&d| d != dim).map(|d| l.dims()[d]).collect();
    let kept_ostrides: SmallVec<[usize; 6]> = (0..l.rank()).filter(|&d| d != dim).map(|d| out_strides[d]).collect();
    let ok = Layout::new(Shape::new(&kept_shape), kept_ostrides, 0);
    let mut obases = Vec::with_capacity(s.bases.len());
    Plan::new(ok.dims(), [&ok]).for_each_run(|[o], [so], m| {
        for j in 0..m {
            obases.push(o + j * so);
        }
    });
    with_dtype!(b, v, T => {
        let is_float = T::DTYPE.is_float();
        let mut out = vec![T::default(); l.numel()];
        for (k, &base) in s.bases.iter().enumerate() {
            let ob = obases[k];
            if is_float {
                let mut acc = if op == ScanOp::CumSum { 0.0 } else { 1.0 };
                for i in 0..n {
                    let x = v[base + i * st].to_f64();
                    acc = if op == ScanOp::CumSum { acc + x } else { acc * x };
                    out[ob + i * ost] = T::from_f64(acc);
                }
            } else {
                let mut acc: i64 = if op == ScanOp::CumSum { 0 } else { 1 };
                for i in 0..n {
                    let x = v[base + i * st].to_scalar().to_i64();
                    acc = if op == ScanOp::CumSum { acc.wrapping_add(x) } else { acc.wrapping_mul(x) };
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
            let ls = sum.ln() + m;
            for (o, v) in o.iter_mut().zip(row) {
                *o = T::from_f64((Elem::to_f64(*v) as f32 - ls) as f64);
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
pub fn softmax_lastdim(b: &CpuBuffer, l: &Layout, log: bool) -> Option<Result<CpuBuffer>> {
    let r = l.contiguous_range()?;
    if l.rank() != 2 {
        return None;
    }
    let (rows, cols) = (l.dims()[0], l.dims()[1]);
    Some(match b {
        CpuBuffer::F64(v) => Ok(CpuBuffer::F64(softmax_rows_f64(&v[r], rows, cols, log))),
        _ => with_float!(b, v, T => Ok(T::wrap(softmax_rows(&v[r], rows, cols, log))),
            else Err(unsupported("softmax", b.dtype()))),
    })
}
