//! Fused layer norm (forward and backward) and GELU backward on the CPU, in f32 and f64
//! (other dtypes take the composites). Row statistics are recomputed in f64 from the
//! input (mean first, then the variance of the centred row). The weight and bias
//! gradients are summed per chunk of rows whose size depends only on the shape, and
//! the chunks' partial sums are combined in order, so no result depends on the number
//! of threads.

use rayon::prelude::*;

use super::iter::{for_chunks, PAR_THRESHOLD};
use super::simd::{multiversion, Isa};
use super::{alloc, HostBuffer};
use crate::dtype::Elem;
use crate::{Layout, Result};

/// Parallel rows at least; more when there are many rows, so that there are at most
/// [`MAX_CHUNKS`] partial sums of the weight gradient.
const MIN_CHUNK_ROWS: usize = 32;
const MAX_CHUNKS: usize = 64;

/// Rows per task of the forward (at most).
const FORWARD_ROWS: usize = 8;

/// `Σ f(a[i], b[i])` in eight interleaved f64 partial sums combined in a fixed
/// order: vectorisable, and the order depends only on the length.
#[inline(always)]
fn lane_sum(a: &[f64], b: &[f64], f: impl Fn(f64, f64) -> f64) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f64; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail = ca.remainder().iter().zip(cb.remainder()).fold(0.0, |t, (&x, &y)| t + f(x, y));
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += f(x[k], y[k]);
        }
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// The row in f64 into `xh`, normalised in place (`(x - mean) / sqrt(var + eps)`, the
/// biased variance of the centred row); returns `1 / sqrt(var + eps)`.
#[inline(always)]
fn normalise<T: Elem>(row: &[T], xh: &mut [f64], eps: f64) -> f64 {
    let n = row.len() as f64;
    for (h, v) in xh.iter_mut().zip(row) {
        *h = v.to_f64();
    }
    let mean = lane_sum(xh, xh, |x, _| x) / n;
    for h in xh.iter_mut() {
        *h -= mean;
    }
    let var = lane_sum(xh, xh, |x, y| x * y) / n;
    let rstd = 1.0 / (var + eps).sqrt();
    for h in xh.iter_mut() {
        *h *= rstd;
    }
    rstd
}

/// Layer norm of the rows of `x` (`o.len() / cols` rows of `cols`) into `o`.
#[inline(always)]
fn forward_rows<T: Elem>(x: &[T], w: Option<&[T]>, b: Option<&[T]>, o: &mut [T], cols: usize, eps: f64) {
    let mut xh = vec![0f64; cols];
    for (row, o) in x.chunks_exact(cols).zip(o.chunks_exact_mut(cols)) {
        normalise(row, &mut xh, eps);
        if let Some(w) = w {
            for (h, w) in xh.iter_mut().zip(w) {
                *h *= w.to_f64();
            }
        }
        if let Some(b) = b {
            for (h, b) in xh.iter_mut().zip(b) {
                *h += b.to_f64();
            }
        }
        for (o, &h) in o.iter_mut().zip(&xh) {
            *o = T::from_f64(h);
        }
    }
}

/// The backward of [`forward_rows`] for the rows of `x` and their gradient `g`: `dx`
/// into `o`, the rows' weight and bias gradients added into `dw` and `db`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn backward_rows<T: Elem>(
    x: &[T],
    g: &[T],
    w: Option<&[T]>,
    o: &mut [T],
    dw: &mut [f64],
    db: &mut [f64],
    cols: usize,
    eps: f64,
) {
    let n = cols as f64;
    let (mut xh, mut d) = (vec![0f64; cols], vec![0f64; cols]);
    let (dw, db) = (&mut dw[..cols], &mut db[..cols]);
    for ((row, gr), orow) in x.chunks_exact(cols).zip(g.chunks_exact(cols)).zip(o.chunks_exact_mut(cols)) {
        let rstd = normalise(row, &mut xh, eps);
        // d = g w, and the parameters' gradients.
        for ((d, g), db) in d.iter_mut().zip(gr).zip(db.iter_mut()) {
            *d = g.to_f64();
            *db += *d;
        }
        for ((dw, &g), &h) in dw.iter_mut().zip(&d).zip(&xh) {
            *dw += g * h;
        }
        if let Some(w) = w {
            for (d, w) in d.iter_mut().zip(w) {
                *d *= w.to_f64();
            }
        }
        let a = lane_sum(&d, &d, |x, _| x) / n;
        let b = lane_sum(&d, &xh, |x, y| x * y) / n;
        for ((o, &d), &h) in orow.iter_mut().zip(&d).zip(&xh) {
            *o = T::from_f64(rstd * (d - a - h * b));
        }
    }
}

multiversion! {
    /// [`forward_rows`] in f32, compiled per vector level (the same bits at each).
    fn forward_rows_f32(x: &[f32], w: Option<&[f32]>, b: Option<&[f32]>, o: &mut [f32], cols: usize, eps: f64) {
        forward_rows(x, w, b, o, cols, eps)
    }
}

multiversion! {
    /// [`backward_rows`] in f32, compiled per vector level (the same bits at each).
    fn backward_rows_f32(
        x: &[f32],
        g: &[f32],
        w: Option<&[f32]>,
        o: &mut [f32],
        dw: &mut [f64],
        db: &mut [f64],
        cols: usize,
        eps: f64,
    ) {
        backward_rows(x, g, w, o, dw, db, cols, eps)
    }
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

    /// [`forward_rows`], at the vector level `isa` where the dtype has such kernels.
    fn forward_rows(
        _isa: Isa,
        x: &[Self],
        w: Option<&[Self]>,
        b: Option<&[Self]>,
        o: &mut [Self],
        cols: usize,
        eps: f64,
    ) {
        forward_rows(x, w, b, o, cols, eps)
    }

    /// [`backward_rows`], at the vector level `isa` where the dtype has such kernels.
    #[allow(clippy::too_many_arguments)]
    fn backward_rows(
        _isa: Isa,
        x: &[Self],
        g: &[Self],
        w: Option<&[Self]>,
        o: &mut [Self],
        dw: &mut [f64],
        db: &mut [f64],
        cols: usize,
        eps: f64,
    ) {
        backward_rows(x, g, w, o, dw, db, cols, eps)
    }
}

impl FloatSlice for f32 {
    fn slice(b: &HostBuffer) -> Option<&[f32]> {
        match b {
            HostBuffer::F32(v) => Some(v),
            _ => None,
        }
    }

    fn forward_rows(isa: Isa, x: &[f32], w: Option<&[f32]>, b: Option<&[f32]>, o: &mut [f32], cols: usize, eps: f64) {
        forward_rows_f32(isa, x, w, b, o, cols, eps)
    }

    fn backward_rows(
        isa: Isa,
        x: &[f32],
        g: &[f32],
        w: Option<&[f32]>,
        o: &mut [f32],
        dw: &mut [f64],
        db: &mut [f64],
        cols: usize,
        eps: f64,
    ) {
        backward_rows_f32(isa, x, g, w, o, dw, db, cols, eps)
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
        let isa = Isa::best();
        // Rows are independent: any split gives the same bits. Fewer rows per task
        // when there are few rows, so that the pool still gets tasks.
        let piece = cols * FORWARD_ROWS.min(rows.div_ceil(64)).max(1);
        let work =
            |(c, o): (usize, &mut [T])| T::forward_rows(isa, &x[c * piece..c * piece + o.len()], w, b, o, cols, eps);
        if rows * cols >= PAR_THRESHOLD {
            out.par_chunks_mut(piece).enumerate().for_each(work);
        } else {
            out.chunks_mut(piece).enumerate().for_each(work);
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
        let chunk_rows = MIN_CHUNK_ROWS.max(rows.div_ceil(MAX_CHUNKS));
        let isa = Isa::best();
        let chunk = |(c, o): (usize, &mut [T])| -> (Vec<f64>, Vec<f64>) {
            let (mut dw, mut db) = (vec![0f64; cols], vec![0f64; cols]);
            let r = c * chunk_rows * cols..c * chunk_rows * cols + o.len();
            T::backward_rows(isa, &x[r.clone()], &g[r], w, o, &mut dw, &mut db, cols, eps);
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
        for_chunks(&mut out, |base, o| {
            for (k, o) in o.iter_mut().enumerate() {
                *o = T::from_f64(g[base + k].to_f64() * f(x[base + k].to_f64()));
            }
        });
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
        for_chunks(&mut out, |base, o| {
            let (x, g) = (&x[base..base + o.len()], &g[base..base + o.len()]);
            for ((o, &x), &g) in o.iter_mut().zip(x).zip(g) {
                *o = if x <= th { zero } else { g };
            }
        });
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
    for_chunks(&mut out, |s, o| threshold_backward_f32_run(isa, &x[s..s + o.len()], &g[s..s + o.len()], o, th));
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

multiversion! {
    /// `o = g * gelu'(x)` over `min` of the lengths (branch-free, so it vectorises).
    fn gelu_backward_f32_run(x: &[f32], g: &[f32], o: &mut [f32]) {
        for ((o, &x), &g) in o.iter_mut().zip(x).zip(g) {
            *o = g * gelu_slope_f32(x);
        }
    }
}

fn gelu_backward_f32(x: &[f32], g: &[f32]) -> Result<HostBuffer> {
    let mut out = alloc::uninit::<f32>(x.len())?;
    let isa = Isa::best();
    for_chunks(&mut out, |s, o| gelu_backward_f32_run(isa, &x[s..s + o.len()], &g[s..s + o.len()], o));
    Ok(HostBuffer::F32(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vals(seed: usize, len: usize) -> Vec<f32> {
        (0..len).map(|i| (((i + seed * 7907) * 7919) % 97) as f32 / 24.0 - 2.0).collect()
    }

    /// Every vector level: the f32 layer norm's forward and backward give the same bits,
    /// and match a naive f64 layer norm and its gradients, for widths around the
    /// eight lanes, with and without weight and bias.
    #[test]
    fn layer_norm_rows_at_every_level_match_f64() {
        let eps = 1e-5;
        for cols in [1usize, 7, 8, 9, 24, 37] {
            let rows = 3;
            let (x, g) = (vals(1, rows * cols), vals(2, rows * cols));
            let (w, b) = (vals(3, cols), vals(4, cols));
            for affine in [false, true] {
                let (wo, bo) = if affine { (Some(&w[..]), Some(&b[..])) } else { (None, None) };
                // The f64 reference: y = xh w + b; dx = rstd (d - mean(d) - xh mean(d xh)).
                let (mut y, mut dx) = (vec![0f64; rows * cols], vec![0f64; rows * cols]);
                let (mut dw, mut db) = (vec![0f64; cols], vec![0f64; cols]);
                for r in 0..rows {
                    let row: Vec<f64> = x[r * cols..(r + 1) * cols].iter().map(|&v| v as f64).collect();
                    let mean = row.iter().sum::<f64>() / cols as f64;
                    let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / cols as f64;
                    let rstd = 1.0 / (var + eps).sqrt();
                    let xh: Vec<f64> = row.iter().map(|v| (v - mean) * rstd).collect();
                    let wj = |j: usize| if affine { w[j] as f64 } else { 1.0 };
                    let gr = |j: usize| g[r * cols + j] as f64;
                    let d: Vec<f64> = (0..cols).map(|j| gr(j) * wj(j)).collect();
                    let ma = d.iter().sum::<f64>() / cols as f64;
                    let mb = (0..cols).map(|j| d[j] * xh[j]).sum::<f64>() / cols as f64;
                    for j in 0..cols {
                        y[r * cols + j] = xh[j] * wj(j) + if affine { b[j] as f64 } else { 0.0 };
                        dx[r * cols + j] = rstd * (d[j] - ma - xh[j] * mb);
                        dw[j] += gr(j) * xh[j];
                        db[j] += gr(j);
                    }
                }
                let mut first: Option<(Vec<f32>, Vec<f32>, Vec<f64>)> = None;
                for isa in Isa::supported() {
                    let mut o = vec![f32::NAN; rows * cols];
                    forward_rows_f32(isa, &x, wo, bo, &mut o, cols, eps);
                    let mut od = vec![f32::NAN; rows * cols];
                    let (mut pw, mut pb) = (vec![0f64; cols], vec![0f64; cols]);
                    backward_rows_f32(isa, &x, &g, wo, &mut od, &mut pw, &mut pb, cols, eps);
                    for (got, want) in [(&o, &y), (&od, &dx)] {
                        for (i, (&a, &e)) in got.iter().zip(want.iter()).enumerate() {
                            let tol = 1e-5 * (1.0 + e.abs());
                            assert!((a as f64 - e).abs() <= tol, "{} cols {cols} [{i}]: {a} vs {e}", isa.level());
                        }
                    }
                    for (got, want) in [(&pw, &dw), (&pb, &db)] {
                        for (&a, &e) in got.iter().zip(want.iter()) {
                            assert!((a - e).abs() <= 1e-9 * (1.0 + e.abs()), "{} cols {cols}: {a} vs {e}", isa.level());
                        }
                    }
                    let bits = (o, od, pw);
                    match &first {
                        None => first = Some(bits),
                        Some(f) => {
                            let same = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
                            assert!(same(&f.0, &bits.0) && same(&f.1, &bits.1) && f.2 == bits.2, "{}", isa.level());
                        }
                    }
                }
            }
        }
    }

    /// Every vector level: the f32 GELU backward gives the scalar formula's bits.
    #[test]
    fn gelu_backward_at_every_level() {
        let special = [f32::NAN, 0.0, -0.0, f32::INFINITY, f32::NEG_INFINITY, -30.0, 1e-20];
        for n in [0usize, 1, 15, 16, 17, 40] {
            let x: Vec<f32> =
                (0..n).map(|i| if i % 4 == 0 { special[i % special.len()] } else { i as f32 * 0.31 - 6.0 }).collect();
            let g: Vec<f32> = (0..n).map(|i| i as f32 - 7.5).collect();
            for isa in Isa::supported() {
                let mut o = vec![f32::NAN; n];
                gelu_backward_f32_run(isa, &x, &g, &mut o);
                for i in 0..n {
                    let want = g[i] * gelu_slope_f32(x[i]);
                    assert_eq!(o[i].to_bits(), want.to_bits(), "{} n {n} x {}", isa.level(), x[i]);
                }
            }
        }
    }

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
