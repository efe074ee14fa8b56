//! Fused layer norm (forward and backward) and GELU backward on the CPU, in f32 and f64
//! (other dtypes take the composites). Row statistics are recomputed in f64 from the
//! input (mean first, then the variance of the centred row). The weight and bias
//! gradients are summed per chunk of rows whose size depends only on the shape, and
//! the chunks' partial sums are combined in order, so no result depends on the number
//! of threads.

use rayon::prelude::*;

use super::iter::PAR_THRESHOLD;
use super::simd::{multiversion, Isa};
use super::{alloc, HostBuffer};
use crate::dtype::Elem;
use crate::{Layout, Result};

/// Parallel rows at least; more when there are many rows, so that there are at most
/// [`MAX_CHUNKS`] partial sums of the weight gradient.
const MIN_CHUNK_ROWS: usize = 32;
const MAX_CHUNKS: usize = 64;

/// `(mean, 1 / sqrt(var + eps))` of a row (biased variance).
#[inline]
fn stats<T: Elem>(row: &[T], eps: f64) -> (f64, f64) {
    let n = row.len() as f64;
    let mean = row.iter().map(|v| v.to_f64()).sum::<f64>() / n;
    let var = row
        .iter()
        .map(|v| {
            let d = v.to_f64() - mean;
            d * d
        })
        .sum::<f64>()
        / n;
    (mean, 1.0 / (var + eps).sqrt())
}

fn rows_cols(l: &Layout) -> Option<(std::ops::Range<usize>, usize, usize)> {
    let r = l.contiguous_range()?;
    (l.rank() == 2 && l.dims()[1] > 0).then(|| (r, l.dims()[0], l.dims()[1]))
}

/// The `[cols]` slice of an optional contiguous parameter of `x`'s dtype.
fn param<'a, T: FloatSlice>(p: Option<(&'a HostBuffer, &Layout)>, cols: usize) -> Option<Option<&'a [T]>> {
    match p {
        None => Some(None),
        Some((b, l)) => {
            let r = l.contiguous_range().filter(|r| r.len() == cols)?;
            Some(Some(&T::slice(b)?[r]))
        }
    }
}

/// Typed access to a host buffer of one float dtype.
trait FloatSlice: Elem {
    fn slice(b: &HostBuffer) -> Option<&[Self]>;
}

impl FloatSlice for f32 {
    fn slice(b: &HostBuffer) -> Option<&[f32]> {
        match b {
            HostBuffer::F32(v) => Some(v),
            _ => None,
        }
    }
}

impl FloatSlice for f64 {
    fn slice(b: &HostBuffer) -> Option<&[f64]> {
        match b {
            HostBuffer::F64(v) => Some(v),
            _ => None,
        }
    }
}

/// Layer norm over the last dim of a contiguous `[rows, cols]` view; `None` for
/// dtypes or layouts this kernel does not take.
pub fn layer_norm(
    x: &HostBuffer,
    l: &Layout,
    weight: Option<(&HostBuffer, &Layout)>,
    bias: Option<(&HostBuffer, &Layout)>,
    eps: f64,
) -> Option<Result<HostBuffer>> {
    fn run<T: FloatSlice>(
        x: &HostBuffer,
        l: &Layout,
        weight: Option<(&HostBuffer, &Layout)>,
        bias: Option<(&HostBuffer, &Layout)>,
        eps: f64,
    ) -> Option<Result<HostBuffer>> {
        let (r, rows, cols) = rows_cols(l)?;
        let x = &T::slice(x)?[r];
        let (w, b) = (param::<T>(weight, cols)?, param::<T>(bias, cols)?);
        let mut out = match alloc::uninit::<T>(rows * cols) {
            Ok(o) => o,
            Err(e) => return Some(Err(e)),
        };
        let work = |(i, o): (usize, &mut [T])| {
            let row = &x[i * cols..(i + 1) * cols];
            let (mean, rstd) = stats(row, eps);
            for (j, (o, v)) in o.iter_mut().zip(row).enumerate() {
                let mut y = (v.to_f64() - mean) * rstd;
                if let Some(w) = w {
                    y *= w[j].to_f64();
                }
                if let Some(b) = b {
                    y += b[j].to_f64();
                }
                *o = T::from_f64(y);
            }
        };
        if rows * cols >= PAR_THRESHOLD {
            out.par_chunks_mut(cols).enumerate().for_each(work);
        } else {
            out.chunks_mut(cols).enumerate().for_each(work);
        }
        Some(Ok(T::wrap(out)))
    }
    match x {
        HostBuffer::F32(_) => run::<f32>(x, l, weight, bias, eps),
        HostBuffer::F64(_) => run::<f64>(x, l, weight, bias, eps),
        _ => None,
    }
}

/// The gradients of [`layer_norm`]: `dx`, and the weight's and bias's (`[cols]`).
pub fn layer_norm_backward(
    x: &HostBuffer,
    l: &Layout,
    grad: &HostBuffer,
    weight: Option<(&HostBuffer, &Layout)>,
    eps: f64,
) -> Option<Result<Vec<HostBuffer>>> {
    fn run<T: FloatSlice>(
        x: &HostBuffer,
        l: &Layout,
        grad: &HostBuffer,
        weight: Option<(&HostBuffer, &Layout)>,
        eps: f64,
    ) -> Option<Result<Vec<HostBuffer>>> {
        let (r, rows, cols) = rows_cols(l)?;
        let (x, g) = (&T::slice(x)?[r.clone()], &T::slice(grad)?[r]);
        let w = param::<T>(weight, cols)?;
        let mut dx = match alloc::uninit::<T>(rows * cols) {
            Ok(o) => o,
            Err(e) => return Some(Err(e)),
        };
        let n = cols as f64;
        let chunk_rows = MIN_CHUNK_ROWS.max(rows.div_ceil(MAX_CHUNKS));
        let chunk = |(c, o): (usize, &mut [T])| -> (Vec<f64>, Vec<f64>) {
            let (mut dw, mut db) = (vec![0f64; cols], vec![0f64; cols]);
            for (k, orow) in o.chunks_mut(cols).enumerate() {
                let i = c * chunk_rows + k;
                let (row, gr) = (&x[i * cols..(i + 1) * cols], &g[i * cols..(i + 1) * cols]);
                let (mean, rstd) = stats(row, eps);
                let (mut a, mut b) = (0f64, 0f64);
                for j in 0..cols {
                    let xh = (row[j].to_f64() - mean) * rstd;
                    let gj = gr[j].to_f64();
                    let d = w.map_or(gj, |w| gj * w[j].to_f64());
                    a += d;
                    b += d * xh;
                    dw[j] += gj * xh;
                    db[j] += gj;
                }
                let (a, b) = (a / n, b / n);
                for (j, o) in orow.iter_mut().enumerate() {
                    let xh = (row[j].to_f64() - mean) * rstd;
                    let gj = gr[j].to_f64();
                    let d = w.map_or(gj, |w| gj * w[j].to_f64());
                    *o = T::from_f64(rstd * (d - a - xh * b));
                }
            }
            (dw, db)
        };
        let parts: Vec<(Vec<f64>, Vec<f64>)> = if rows * cols >= PAR_THRESHOLD {
            dx.par_chunks_mut(chunk_rows * cols).enumerate().map(chunk).collect()
        } else {
            dx.chunks_mut(chunk_rows * cols).enumerate().map(chunk).collect()
        };
        let (mut dw, mut db) = (vec![0f64; cols], vec![0f64; cols]);
        for (pw, pb) in &parts {
            for j in 0..cols {
                dw[j] += pw[j];
                db[j] += pb[j];
            }
        }
        let cast = |v: Vec<f64>| T::wrap(v.into_iter().map(T::from_f64).collect());
        Some(Ok(vec![T::wrap(dx), cast(dw), cast(db)]))
    }
    match x {
        HostBuffer::F32(_) => run::<f32>(x, l, grad, weight, eps),
        HostBuffer::F64(_) => run::<f64>(x, l, grad, weight, eps),
        _ => None,
    }
}

/// `grad * gelu'(x)` for contiguous `x` and `grad` of layout `l`.
pub fn gelu_backward(x: &HostBuffer, grad: &HostBuffer, l: &Layout, tanh: bool) -> Option<Result<HostBuffer>> {
    fn run<T: FloatSlice>(x: &HostBuffer, grad: &HostBuffer, l: &Layout, tanh: bool) -> Option<Result<HostBuffer>> {
        let r = l.contiguous_range()?;
        let (x, g) = (&T::slice(x)?[r.clone()], &T::slice(grad)?[r]);
        let mut out = match alloc::uninit::<T>(x.len()) {
            Ok(o) => o,
            Err(e) => return Some(Err(e)),
        };
        let f = move |x: f64| -> f64 {
            use std::f64::consts::{FRAC_1_SQRT_2, PI};
            if tanh {
                let k = (2.0 / PI).sqrt();
                let x2 = x * x;
                let t = (k * x * (1.0 + 0.044715 * x2)).tanh();
                let du = k * (1.0 + 3.0 * 0.044715 * x2);
                0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du
            } else {
                let cdf = 0.5 * (1.0 + libm::erf(x * FRAC_1_SQRT_2));
                let pdf = (-0.5 * x * x).exp() / (2.0 * PI).sqrt();
                cdf + x * pdf
            }
        };
        let work = |(c, o): (usize, &mut [T])| {
            let base = c * CHUNK;
            for (k, o) in o.iter_mut().enumerate() {
                *o = T::from_f64(g[base + k].to_f64() * f(x[base + k].to_f64()));
            }
        };
        const CHUNK: usize = 1 << 14;
        if x.len() >= PAR_THRESHOLD {
            out.par_chunks_mut(CHUNK).enumerate().for_each(work);
        } else {
            out.chunks_mut(CHUNK).enumerate().for_each(work);
        }
        Some(Ok(T::wrap(out)))
    }
    match x {
        HostBuffer::F32(xv) if !tanh => {
            let (r, HostBuffer::F32(gv)) = (l.contiguous_range()?, grad) else { return None };
            Some(gelu_backward_f32(&xv[r.clone()], &gv[r]))
        }
        HostBuffer::F32(_) => run::<f32>(x, grad, l, tanh),
        HostBuffer::F64(_) => run::<f64>(x, grad, l, tanh),
        _ => None,
    }
}

/// `x <= threshold ? 0 : grad` for contiguous `x` and `grad` of layout `l` (f32 and
/// f64; the threshold as the dtype's value, as PyTorch casts it).
pub fn threshold_backward(x: &HostBuffer, grad: &HostBuffer, l: &Layout, threshold: f64) -> Option<Result<HostBuffer>> {
    fn run<T: FloatSlice + PartialOrd>(
        x: &HostBuffer,
        grad: &HostBuffer,
        l: &Layout,
        th: T,
    ) -> Option<Result<HostBuffer>> {
        let r = l.contiguous_range()?;
        let (x, g) = (&T::slice(x)?[r.clone()], &T::slice(grad)?[r]);
        let mut out = match alloc::uninit::<T>(x.len()) {
            Ok(o) => o,
            Err(e) => return Some(Err(e)),
        };
        let zero = T::from_f64(0.0);
        const CHUNK: usize = 1 << 14;
        let work = |(c, o): (usize, &mut [T])| {
            let base = c * CHUNK;
            let (x, g) = (&x[base..base + o.len()], &g[base..base + o.len()]);
            for ((o, &x), &g) in o.iter_mut().zip(x).zip(g) {
                *o = if x <= th { zero } else { g };
            }
        };
        if x.len() >= PAR_THRESHOLD {
            out.par_chunks_mut(CHUNK).enumerate().for_each(work);
        } else {
            out.chunks_mut(CHUNK).enumerate().for_each(work);
        }
        Some(Ok(T::wrap(out)))
    }
    match (x, grad) {
        (HostBuffer::F32(xv), HostBuffer::F32(gv)) => {
            let r = l.contiguous_range()?;
            Some(threshold_backward_f32(&xv[r.clone()], &gv[r], threshold as f32))
        }
        (HostBuffer::F64(_), _) => run::<f64>(x, grad, l, threshold),
        _ => None,
    }
}

multiversion! {
    /// `o = x <= th ? 0 : g` with the select as a bit mask (a plain `if` here compiles
    /// to a branch per element, mispredicted half the time on ReLU's data).
    pub(super) fn threshold_backward_f32_run(x: &[f32], g: &[f32], o: &mut [f32], th: f32) {
        let n = o.len().min(x.len()).min(g.len());
        let (x, g, o) = (&x[..n], &g[..n], &mut o[..n]);
        for i in 0..n {
            // NaN is not <= th, so its gradient passes.
            let keep = ((x[i] <= th) as u32).wrapping_sub(1);
            o[i] = f32::from_bits(g[i].to_bits() & keep);
        }
    }
}

fn threshold_backward_f32(x: &[f32], g: &[f32], th: f32) -> Result<HostBuffer> {
    let mut out = alloc::uninit::<f32>(x.len())?;
    let isa = Isa::best();
    const CHUNK: usize = 1 << 14;
    let work = |(c, o): (usize, &mut [f32])| {
        let base = c * CHUNK;
        threshold_backward_f32_run(isa, &x[base..base + o.len()], &g[base..base + o.len()], o, th);
    };
    if x.len() >= PAR_THRESHOLD {
        out.par_chunks_mut(CHUNK).enumerate().for_each(work);
    } else {
        out.chunks_mut(CHUNK).enumerate().for_each(work);
    }
    Ok(HostBuffer::F32(out))
}

/// `Φ(x) + x φ(x)` in f32 without branches (so the loop vectorises): Abramowitz and
/// Stegun's 7.1.26 for `erfc(|x| / √2) = t P(t) e^{-x²/2}` (absolute error below
/// 1.5e-7), whose exponential is also the normal density's.
#[inline(always)]
pub(super) fn gelu_slope_f32(x: f32) -> f32 {
    let (cdf, e) = normal_cdf_f32(x);
    // 1 / sqrt(2π)
    cdf + x * e * 0.398_942_3
}

/// `(Φ(x), e^{-x²/2})` in f32 without branches (see [`gelu_slope_f32`]).
#[inline(always)]
pub(super) fn normal_cdf_f32(x: f32) -> (f32, f32) {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [0.254_829_6, -0.284_496_74, 1.421_413_7, -1.453_152_1, 1.061_405_4];
    let z = x.abs() * std::f32::consts::FRAC_1_SQRT_2;
    let t = 1.0 / (1.0 + P * z);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    let e = super::reduce::exp_neg_f32(-0.5 * x * x);
    let tail = 0.5 * poly * e; // Φ(-|x|)
    let cdf = if x < 0.0 { tail } else { 1.0 - tail };
    (cdf, e)
}

fn gelu_backward_f32(x: &[f32], g: &[f32]) -> Result<HostBuffer> {
    let mut out = alloc::uninit::<f32>(x.len())?;
    const CHUNK: usize = 1 << 14;
    let work = |(c, o): (usize, &mut [f32])| {
        let base = c * CHUNK;
        let (x, g) = (&x[base..base + o.len()], &g[base..base + o.len()]);
        for ((o, &x), &g) in o.iter_mut().zip(x).zip(g) {
            *o = g * gelu_slope_f32(x);
        }
    };
    if x.len() >= PAR_THRESHOLD {
        out.par_chunks_mut(CHUNK).enumerate().for_each(work);
    } else {
        out.chunks_mut(CHUNK).enumerate().for_each(work);
    }
    Ok(HostBuffer::F32(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every vector level: the f32 threshold backward is `x <= th ? 0 : g` exactly,
    /// NaN and infinities included, for lengths around the 16 lanes.
    #[test]
    fn threshold_backward_at_every_level() {
        let special = [f32::NAN, 0.0, -0.0, 0.5, f32::INFINITY, f32::NEG_INFINITY, -1.0, 2.0];
        for n in [0usize, 1, 15, 16, 17, 40] {
            let x: Vec<f32> = (0..n).map(|i| special[i % special.len()]).collect();
            let g: Vec<f32> = (0..n).map(|i| i as f32 - 7.5).collect();
            for th in [0.0f32, 0.5] {
                for isa in Isa::supported() {
                    let mut o = vec![f32::NAN; n];
                    threshold_backward_f32_run(isa, &x, &g, &mut o, th);
                    for i in 0..n {
                        let want = if x[i] <= th { 0.0 } else { g[i] };
                        assert_eq!(o[i].to_bits(), want.to_bits(), "{} n {n} th {th} [{i}]", isa.level());
                    }
                }
            }
        }
    }
}
