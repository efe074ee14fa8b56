//! The CPU backend's fused sliding-window ops ([`crate::FusedOp::MaxPool2d`],
//! [`crate::FusedOp::Im2col`], [`crate::FusedOp::Col2im`]) on contiguous f32/f64 host
//! buffers: max pooling (value and index in one pass), im2col and col2im. The generic paths build
//! these from padding, strided views and reductions, which walk every element through
//! a rank-6 index; these loops read each plane once, skip the padding arithmetically
//! and run one plane per task. Each returns `None` when its fast path does not apply.

use rayon::prelude::*;

use super::alloc;
use super::iter::PAR_THRESHOLD;
use crate::cpu::HostBuffer;
use crate::fused::Window2d;
use crate::{Elem, Layout, Result};

impl Window2d {
    /// Input coordinate of tap `k` of output position `o` along axis `a`, or `None` in
    /// the padding.
    #[inline(always)]
    fn at(&self, a: usize, o: usize, k: usize) -> Option<usize> {
        let v = (o * self.stride[a] + k * self.dilation[a]).checked_sub(self.padding[a])?;
        (v < self.size[a]).then_some(v)
    }

    /// The taps `k` of output position `o` along axis `a` that read inside the plane
    /// (those where [`Window2d::at`] is `Some`): one range, since the input coordinate
    /// `o * stride + k * dilation - padding` grows with `k`. Loops over it skip a
    /// huge padded kernel's padding arithmetically instead of tap by tap.
    fn taps(&self, a: usize, o: usize) -> std::ops::Range<usize> {
        let (p, n, d, k) = (self.padding[a], self.size[a], self.dilation[a], self.kernel[a]);
        // Window starts and `p + n` lie within the padded input, whose size fits.
        let base = o * self.stride[a];
        let lo = if base >= p { 0 } else { (p - base).div_ceil(d) };
        let hi = if base >= p + n { 0 } else { (p + n - 1 - base) / d + 1 };
        let lo = lo.min(k);
        lo..hi.clamp(lo, k)
    }
}

/// The contiguous f32/f64 data of `len` elements of a host view, or `None` (another
/// dtype, a strided view or a size that does not match the window).
fn with_data<R>(
    b: &HostBuffer,
    l: &Layout,
    len: usize,
    f32f: impl FnOnce(&[f32]) -> R,
    f64f: impl FnOnce(&[f64]) -> R,
) -> Option<R> {
    if !l.is_contiguous() || l.numel() != len {
        return None;
    }
    let r = l.contiguous_range()?;
    match b {
        HostBuffer::F32(v) => Some(f32f(v.get(r)?)),
        HostBuffer::F64(v) => Some(f64f(v.get(r)?)),
        _ => None,
    }
}

/// Runs `work(plane, chunk)` over `out` split into per-plane chunks, in parallel when
/// the job is large enough.
fn per_plane<T: Send>(out: &mut [T], chunk: usize, total_work: usize, work: impl Fn(usize, &mut [T]) + Sync + Send) {
    if chunk == 0 {
        return;
    }
    if total_work >= PAR_THRESHOLD {
        out.par_chunks_mut(chunk).enumerate().for_each(|(p, c)| work(p, c));
    } else {
        out.chunks_mut(chunk).enumerate().for_each(|(p, c)| work(p, c));
    }
}

/// One tap of a max-pool window: takes `v` (at input index `k`) when it is larger than
/// `best`, or NaN while `best` is not. Written as selects, not a branch: which tap wins
/// is data-dependent, and a mispredicted branch per tap cost 4x.
#[inline(always)]
fn pick<T: Copy + PartialOrd>(v: T, k: i64, best: &mut T, at: &mut i64) {
    #[allow(clippy::eq_op)] // `v != v` is the NaN test for this generic float
    let take = v > *best || (v != v && *best == *best);
    *best = if take { v } else { *best };
    *at = if take { k } else { *at };
}

/// Max pooling of a contiguous `[planes, h, w]` f32/f64 CPU tensor: the values
/// `[planes * oh * ow]` and the input-plane index of each (the first maximum wins;
/// NaN counts as the largest value and the first NaN wins).
pub(crate) fn max_pool(x: &HostBuffer, l: &Layout, g: &Window2d) -> Option<Result<(HostBuffer, HostBuffer)>> {
    fn run<T: Elem + PartialOrd>(x: &[T], g: &Window2d) -> Result<(HostBuffer, HostBuffer)> {
        let [h, w] = g.size;
        let [oh, ow] = g.out;
        let n = g.planes * oh * ow;
        let mut vals = alloc::uninit::<T>(n)?;
        let mut idx = alloc::uninit::<i64>(n)?;
        // Only a threshold test: saturate (a huge kernel's padding taps are skipped).
        let work = [oh, ow, g.kernel[0], g.kernel[1]].iter().fold(g.planes, |a, &b| a.saturating_mul(b));
        let mut pairs: Vec<(&mut [T], &mut [i64])> =
            vals.chunks_mut((oh * ow).max(1)).zip(idx.chunks_mut((oh * ow).max(1))).collect();
        let [kh, kw] = g.kernel;
        let one = |p: usize, (vo, io): &mut (&mut [T], &mut [i64])| {
            let plane = &x[p * h * w..(p + 1) * h * w];
            for oy in 0..oh {
                let ry = oy * g.stride[0];
                let rows_inside = ry >= g.padding[0] && ry + (kh - 1) * g.dilation[0] < h + g.padding[0];
                for ox in 0..ow {
                    let cx = ox * g.stride[1];
                    let inside = rows_inside && cx >= g.padding[1] && cx + (kw - 1) * g.dilation[1] < w + g.padding[1];
                    let (mut best, mut at);
                    if inside {
                        // The whole window lies in the plane: no bounds tests per tap.
                        let k0 = (ry - g.padding[0]) * w + cx - g.padding[1];
                        (best, at) = (plane[k0], k0 as i64);
                        for i in 0..kh {
                            for j in 0..kw {
                                let k = k0 + i * g.dilation[0] * w + j * g.dilation[1];
                                pick(plane[k], k as i64, &mut best, &mut at);
                            }
                        }
                    } else {
                        (best, at) = (T::from_f64(f64::NEG_INFINITY), -1);
                        for i in g.taps(0, oy) {
                            let Some(r) = g.at(0, oy, i) else { continue };
                            for j in g.taps(1, ox) {
                                let Some(q) = g.at(1, ox, j) else { continue };
                                let k = r * w + q;
                                if at < 0 {
                                    (best, at) = (plane[k], k as i64);
                                } else {
                                    pick(plane[k], k as i64, &mut best, &mut at);
                                }
                            }
                        }
                        at = at.max(0);
                    }
                    vo[oy * ow + ox] = best;
                    io[oy * ow + ox] = at;
                }
            }
        };
        if work >= PAR_THRESHOLD {
            pairs.par_iter_mut().enumerate().for_each(|(p, c)| one(p, c));
        } else {
            pairs.iter_mut().enumerate().for_each(|(p, c)| one(p, c));
        }
        drop(pairs);
        Ok((T::wrap(vals), HostBuffer::I64(idx)))
    }
    with_data(x, l, g.input_len(), |v| run(v, g), |v| run(v, g))
}

/// For a stride-1 row and kernel column `j`: the output columns `lo..hi` that read
/// inside the input row (input column `ox + j * dil - pad`); the columns before `lo`
/// and from `hi` on fall in the padding.
fn run_bounds(g: &Window2d, j: usize, w: usize, ow: usize) -> (usize, usize) {
    let shift = j * g.dilation[1];
    let lo = g.padding[1].saturating_sub(shift).min(ow);
    let hi = (w + g.padding[1]).saturating_sub(shift).clamp(lo, ow);
    (lo, hi)
}

/// im2col of one `[h, w]` plane into `o`, its `[kh * kw, oh * ow]` columns (zeros in
/// the padding; every element of `o` is written).
pub(crate) fn im2col_plane<T: Elem>(plane: &[T], g: &Window2d, o: &mut [T]) {
    let w = g.size[1];
    let [oh, ow] = g.out;
    let [kh, kw] = g.kernel;
    let zero = T::from_f64(0.0);
    for i in 0..kh {
        for j in 0..kw {
            let tap = &mut o[(i * kw + j) * oh * ow..(i * kw + j + 1) * oh * ow];
            for oy in 0..oh {
                let dst = &mut tap[oy * ow..(oy + 1) * ow];
                let Some(r) = g.at(0, oy, i) else {
                    dst.fill(zero);
                    continue;
                };
                let src = &plane[r * w..(r + 1) * w];
                if g.stride[1] == 1 {
                    // Output columns ox read input column ox + j*dil - pad:
                    // zeros, one contiguous run, zeros.
                    let (lo, hi) = run_bounds(g, j, w, ow);
                    dst[..lo].fill(zero);
                    if hi > lo {
                        let s0 = lo + j * g.dilation[1] - g.padding[1];
                        dst[lo..hi].copy_from_slice(&src[s0..s0 + hi - lo]);
                    }
                    dst[hi..].fill(zero);
                } else {
                    for (ox, d) in dst.iter_mut().enumerate() {
                        *d = match g.at(1, ox, j) {
                            Some(q) => src[q],
                            None => zero,
                        };
                    }
                }
            }
        }
    }
}

/// col2im of one plane's `[kh * kw, oh * ow]` columns `src`: adds every tap into its
/// position of the `[h, w]` plane `o`, dropping the padding.
pub(crate) fn col2im_plane<T: Elem + std::ops::Add<Output = T>>(src: &[T], g: &Window2d, o: &mut [T]) {
    let w = g.size[1];
    let [oh, ow] = g.out;
    let [kh, kw] = g.kernel;
    for i in 0..kh {
        for j in 0..kw {
            let tap = &src[(i * kw + j) * oh * ow..(i * kw + j + 1) * oh * ow];
            for oy in 0..oh {
                let Some(r) = g.at(0, oy, i) else { continue };
                let row = &mut o[r * w..(r + 1) * w];
                let src = &tap[oy * ow..(oy + 1) * ow];
                if g.stride[1] == 1 {
                    // The adjoint of im2col's contiguous run: one vectorisable add.
                    let (lo, hi) = run_bounds(g, j, w, ow);
                    if hi > lo {
                        let s0 = lo + j * g.dilation[1] - g.padding[1];
                        for (d, &v) in row[s0..s0 + hi - lo].iter_mut().zip(&src[lo..hi]) {
                            *d = *d + v;
                        }
                    }
                } else {
                    for (ox, &v) in src.iter().enumerate() {
                        if let Some(q) = g.at(1, ox, j) {
                            row[q] = row[q] + v;
                        }
                    }
                }
            }
        }
    }
}

/// im2col of a contiguous `[n, c, h, w]` f32/f64 CPU tensor (`g.planes = n * c`):
/// `[n, c * kh * kw, oh * ow]`, zeros in the padding.
pub(crate) fn im2col(x: &HostBuffer, l: &Layout, g: &Window2d) -> Option<Result<HostBuffer>> {
    fn run<T: Elem>(x: &[T], g: &Window2d) -> Result<HostBuffer> {
        let [h, w] = g.size;
        let chunk = g.kernel[0] * g.kernel[1] * g.out[0] * g.out[1];
        let mut out = alloc::uninit::<T>(g.planes * chunk)?;
        per_plane(&mut out, chunk, g.planes * chunk, |p, o| im2col_plane(&x[p * h * w..(p + 1) * h * w], g, o));
        Ok(T::wrap(out))
    }
    with_data(x, l, g.input_len(), |v| run(v, g), |v| run(v, g))
}

/// col2im of contiguous `[n, c * kh * kw, oh * ow]` f32/f64 CPU columns
/// (`g.planes = n * c`): sums every tap into its input position, dropping the
/// padding; returns `[n * c * h * w]`.
pub(crate) fn col2im(cols: &HostBuffer, l: &Layout, g: &Window2d) -> Option<Result<HostBuffer>> {
    fn run<T: Elem + std::ops::Add<Output = T>>(cols: &[T], g: &Window2d) -> Result<HostBuffer> {
        let [h, w] = g.size;
        let chunk = g.kernel[0] * g.kernel[1] * g.out[0] * g.out[1];
        let mut out = alloc::filled::<T>(g.planes * h * w, T::from_f64(0.0))?;
        per_plane(&mut out, h * w, g.planes * chunk, |p, o| col2im_plane(&cols[p * chunk..(p + 1) * chunk], g, o));
        Ok(T::wrap(out))
    }
    with_data(cols, l, g.columns_len(), |v| run(v, g), |v| run(v, g))
}
