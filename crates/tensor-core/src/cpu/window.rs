//! The CPU backend's fused sliding-window ops ([`crate::FusedOp::MaxPool2d`],
//! [`crate::FusedOp::Im2col`], [`crate::FusedOp::Col2im`]) on contiguous f32/f64 host
//! buffers: max pooling (value and index in one pass), im2col and col2im. The generic paths build
//! these from padding, strided views and reductions, which walk every element through
//! a rank-6 index; these loops read each plane once, skip the padding arithmetically
//! and run one plane per task. Each returns `None` when its fast path does not apply.

use rayon::prelude::*;

use super::alloc;
use super::iter::PAR_THRESHOLD;
use super::simd::{multiversion, Isa};
use crate::cpu::HostBuffer;
use crate::fused::Window2d;
use crate::{Elem, Error, Layout, Result};

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
    // Bitwise `|` and `&`, not short-circuits: in `window_run`'s lane loops they stay
    // vector masks.
    #[allow(clippy::eq_op)] // `v != v` is the NaN test for this generic float
    let take = (v > *best) | ((v != v) & (*best == *best));
    *best = if take { v } else { *best };
    *at = if take { k } else { *at };
}

/// Max pooling over a run of outputs whose windows lie inside the plane. Output `o`
/// of the run reads `src[tap + o * stride]` for each offset in `taps` (in the
/// window's row-major order), input index `k0 + tap + o * stride`. The outputs go
/// [`POOL_LANES`] at a time, a window's taps one after another across all lanes:
/// the lanes are independent, so the compares and selects run as vectors, instead of
/// one output's chain of data-dependent branches (which the compiler made of the
/// per-output loop's selects, mispredicting on every other tap).
trait PoolElem: Elem + PartialOrd {
    /// The run at the CPU's widest vector level `isa`.
    fn window_run(isa: Isa, stride: usize, src: &[Self], taps: &[usize], k0: i64, best: &mut [Self], at: &mut [i64]);
}

macro_rules! pool_elem {
    ($t:ty, $f:ident) => {
        multiversion! {
            #[doc = concat!("[`PoolElem::window_run`] for ", stringify!($t), ".")]
            fn $f(stride: usize, src: &[$t], taps: &[usize], k0: i64, best: &mut [$t], at: &mut [i64]) {
                // Constant strides for the common cases, so the reads' offsets fold.
                match stride {
                    1 => window_run(1, src, taps, k0, best, at),
                    2 => window_run(2, src, taps, k0, best, at),
                    s => window_run(s, src, taps, k0, best, at),
                }
            }
        }
        impl PoolElem for $t {
            fn window_run(
                isa: Isa,
                stride: usize,
                src: &[$t],
                taps: &[usize],
                k0: i64,
                best: &mut [$t],
                at: &mut [i64],
            ) {
                $f(isa, stride, src, taps, k0, best, at)
            }
        }
    };
}
pool_elem!(f32, window_run_f32);
pool_elem!(f64, window_run_f64);

/// Outputs per block of [`PoolElem::window_run`]: one AVX-512 register of f32.
const POOL_LANES: usize = 16;

/// [`PoolElem::window_run`]'s body. A last, partial block repeats its last output
/// in the spare lanes and stores only its own.
#[inline(always)]
fn window_run<T: Copy + PartialOrd>(stride: usize, src: &[T], taps: &[usize], k0: i64, best: &mut [T], at: &mut [i64]) {
    const L: usize = POOL_LANES;
    let Some((&t0, rest)) = taps.split_first() else { return };
    for (c, (bc, ac)) in best.chunks_mut(L).zip(at.chunks_mut(L)).enumerate() {
        let (first, last) = (c * L, c * L + bc.len() - 1);
        let lane = |l: usize| (first + l).min(last) * stride;
        let mut bv = [src[t0 + lane(0)]; L];
        let mut av = [0i64; L];
        for l in 0..L {
            bv[l] = src[t0 + lane(l)];
            av[l] = k0 + (t0 + lane(l)) as i64;
        }
        for &t in rest {
            let mut vv = bv;
            for (l, v) in vv.iter_mut().enumerate() {
                *v = src[t + lane(l)];
            }
            let kt = k0 + t as i64;
            for l in 0..L {
                pick(vv[l], kt + lane(l) as i64, &mut bv[l], &mut av[l]);
            }
        }
        bc.copy_from_slice(&bv[..bc.len()]);
        ac.copy_from_slice(&av[..ac.len()]);
    }
}

impl Window2d {
    /// The output columns `lo..hi` whose windows lie inside the plane horizontally
    /// (every tap's input column is in `0..w`).
    fn inner_cols(&self) -> (usize, usize) {
        let (p, w, s) = (self.padding[1], self.size[1], self.stride[1]);
        let reach = (self.kernel[1] - 1) * self.dilation[1];
        // ox * s >= p and ox * s + reach < w + p.
        let hi = (w + p).checked_sub(reach).map_or(0, |lim| lim.div_ceil(s)).min(self.out[1]);
        (p.div_ceil(s).min(hi), hi)
    }
}

/// Max pooling of a contiguous `[planes, h, w]` f32/f64 CPU tensor: the values
/// `[planes * oh * ow]` and the input-plane index of each (the first maximum wins;
/// NaN counts as the largest value and the first NaN wins).
pub(crate) fn max_pool(x: &HostBuffer, l: &Layout, g: &Window2d) -> Option<Result<(HostBuffer, HostBuffer)>> {
    max_pool_at(Isa::best(), x, l, g)
}

/// [`max_pool`] at vector level `isa`.
fn max_pool_at(isa: Isa, x: &HostBuffer, l: &Layout, g: &Window2d) -> Option<Result<(HostBuffer, HostBuffer)>> {
    fn run<T: PoolElem>(isa: Isa, x: &[T], g: &Window2d) -> Result<(HostBuffer, HostBuffer)> {
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
        let (c_lo, c_hi) = g.inner_cols();
        // Offsets of a window's taps from its first, in row-major order, for windows
        // inside the plane (then kh <= h and kw <= w: a huge padded kernel has none).
        let inside = c_hi > c_lo && (kh - 1) * g.dilation[0] < h;
        let taps: Vec<usize> = if inside {
            (0..kh).flat_map(|i| (0..kw).map(move |j| i * g.dilation[0] * w + j * g.dilation[1])).collect()
        } else {
            Vec::new()
        };
        // One output whose window may reach into the padding, tap by tap.
        let edge = |plane: &[T], oy: usize, ox: usize| -> (T, i64) {
            let (mut best, mut at) = (T::from_f64(f64::NEG_INFINITY), -1);
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
            (best, at.max(0))
        };
        let one = |p: usize, (vo, io): &mut (&mut [T], &mut [i64])| {
            let plane = &x[p * h * w..(p + 1) * h * w];
            for oy in 0..oh {
                let ry = oy * g.stride[0];
                let rows_inside = ry >= g.padding[0] && ry + (kh - 1) * g.dilation[0] < h + g.padding[0];
                let (lo, hi) = if rows_inside { (c_lo, c_hi) } else { (0, 0) };
                for ox in (0..lo).chain(hi.max(lo)..ow) {
                    (vo[oy * ow + ox], io[oy * ow + ox]) = edge(plane, oy, ox);
                }
                if hi > lo {
                    // Whole windows inside the plane: the run of outputs lo..hi at once.
                    let base = (ry - g.padding[0]) * w + lo * g.stride[1] - g.padding[1];
                    let (vb, ib) = (&mut vo[oy * ow + lo..oy * ow + hi], &mut io[oy * ow + lo..oy * ow + hi]);
                    T::window_run(isa, g.stride[1], &plane[base..], &taps, base as i64, vb, ib);
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
    with_data(x, l, g.input_len(), |v| run(isa, v, g), |v| run(isa, v, g))
}

/// Max pooling's input gradient: for each of `planes` planes of `size = [h, w]`, the
/// contiguous `grad` elements added at their `indices` (contiguous I64, one layout
/// `l` of `planes * per_plane` elements) into a zeroed plane, one plane per task.
/// An index outside the plane is an error; `None` for other dtypes or views.
pub(crate) fn max_pool_backward(
    grad: &HostBuffer,
    indices: &HostBuffer,
    l: &Layout,
    planes: usize,
    size: [usize; 2],
) -> Option<Result<HostBuffer>> {
    const OP: &str = "max_pool2d_backward";
    fn run<T: Elem + std::ops::Add<Output = T>>(
        g: &[T],
        idx: &[i64],
        planes: usize,
        size: [usize; 2],
    ) -> Result<HostBuffer> {
        let bad = |why: String| Error::arg(OP, why);
        let hw = size[0].checked_mul(size[1]).ok_or_else(|| bad(format!("plane {size:?} is too large")))?;
        let n = planes.checked_mul(hw).ok_or_else(|| bad(format!("{planes} planes of {size:?} are too many")))?;
        if planes == 0 || !g.len().is_multiple_of(planes) {
            return match g.len() {
                0 => Ok(T::wrap(alloc::filled::<T>(n, T::from_f64(0.0))?)),
                len => Err(bad(format!("{len} gradient elements do not split into {planes} planes"))),
            };
        }
        let per = g.len() / planes;
        if per == 0 {
            return Ok(T::wrap(alloc::filled::<T>(n, T::from_f64(0.0))?));
        }
        // Each task zeroes its own plane just before adding into it (in cache, in
        // parallel), instead of one zero-filling pass over the whole output first.
        let mut out = alloc::uninit::<T>(n)?;
        let one = |(o, (gp, ip)): (&mut [T], (&[T], &[i64]))| -> Result<()> {
            o.fill(T::from_f64(0.0));
            for (&k, &v) in ip.iter().zip(gp) {
                let Some(d) = usize::try_from(k).ok().and_then(|k| o.get_mut(k)) else {
                    return Err(bad(format!("index {k} is outside the {}x{} input plane", size[0], size[1])));
                };
                *d = *d + v;
            }
            Ok(())
        };
        if hw == 0 {
            // No plane to write into: only an empty gradient fits.
            return match idx.first() {
                Some(&k) => Err(bad(format!("index {k} is outside the {}x{} input plane", size[0], size[1]))),
                None => Ok(T::wrap(out)),
            };
        }
        if n >= PAR_THRESHOLD {
            out.par_chunks_mut(hw).zip(g.par_chunks(per).zip(idx.par_chunks(per))).try_for_each(one)?;
        } else {
            out.chunks_mut(hw).zip(g.chunks(per).zip(idx.chunks(per))).try_for_each(one)?;
        }
        Ok(T::wrap(out))
    }
    let r = l.contiguous_range()?;
    let HostBuffer::I64(idx) = indices else { return None };
    let idx = idx.get(r.clone())?;
    match grad {
        HostBuffer::F32(v) => Some(run(v.get(r)?, idx, planes, size)),
        HostBuffer::F64(v) => Some(run(v.get(r)?, idx, planes, size)),
        _ => None,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Naive max pooling in f64 straight from the definition: each window's taps in
    /// row-major order, the first valid tap to start, then a strictly larger value or
    /// the first NaN takes over.
    fn naive(x: &[f64], g: &Window2d) -> (Vec<f64>, Vec<i64>) {
        let [h, w] = g.size;
        let (mut vals, mut idx) = (vec![], vec![]);
        for p in 0..g.planes {
            for oy in 0..g.out[0] {
                for ox in 0..g.out[1] {
                    let mut best: Option<(f64, i64)> = None;
                    for i in 0..g.kernel[0] {
                        for j in 0..g.kernel[1] {
                            let r = (oy * g.stride[0] + i * g.dilation[0]) as i64 - g.padding[0] as i64;
                            let q = (ox * g.stride[1] + j * g.dilation[1]) as i64 - g.padding[1] as i64;
                            if r < 0 || q < 0 || r >= h as i64 || q >= w as i64 {
                                continue;
                            }
                            let (k, v) = (r * w as i64 + q, x[p * h * w + (r * w as i64 + q) as usize]);
                            best = match best {
                                None => Some((v, k)),
                                Some((b, _)) if v > b || (v.is_nan() && !b.is_nan()) => Some((v, k)),
                                keep => keep,
                            };
                        }
                    }
                    let (v, k) = best.expect("every window touches the input");
                    vals.push(v);
                    idx.push(k);
                }
            }
        }
        (vals, idx)
    }

    fn out_size(n: usize, k: usize, s: usize, p: usize, d: usize, ceil: bool) -> usize {
        let span = n + 2 * p - d * (k - 1) - 1;
        let mut o = if ceil { span.div_ceil(s) } else { span / s } + 1;
        // PyTorch's rule: the last window must start inside the input or left padding.
        if ceil && (o - 1) * s >= n + p {
            o -= 1;
        }
        o
    }

    /// Every vector level the CPU runs, f32 and f64, strides 1, 2 (the vector paths)
    /// and 3, with padding, dilation and ceil mode: values and indices equal the naive
    /// reference's, with ties (values from a small set) and NaNs in the data.
    #[test]
    fn max_pool_matches_naive_at_every_level() {
        let cases = [
            // kernel, stride, padding, dilation, ceil
            ([2, 2], [2, 2], [0, 0], [1, 1], false),
            ([3, 3], [1, 1], [1, 1], [1, 1], false),
            ([3, 3], [2, 2], [1, 1], [1, 1], true),
            ([2, 3], [1, 2], [1, 1], [2, 1], false),
            ([3, 2], [3, 3], [1, 0], [1, 2], true),
            ([1, 1], [2, 1], [0, 0], [1, 1], false),
        ];
        let (planes, h, w) = (3, 9, 13);
        let mut s = 7u64;
        let x64: Vec<f64> = (0..planes * h * w)
            .map(|i| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                if i % 17 == 5 {
                    f64::NAN
                } else {
                    ((s >> 59) as f64) - 8.0
                }
            })
            .collect();
        let x32: Vec<f32> = x64.iter().map(|&v| v as f32).collect();
        let l = Layout::contiguous([planes, h, w]);
        for (kernel, stride, padding, dilation, ceil) in cases {
            let out = [0, 1].map(|a| out_size([h, w][a], kernel[a], stride[a], padding[a], dilation[a], ceil));
            let g = Window2d { planes, size: [h, w], out, kernel, stride, padding, dilation };
            let (want_v, want_i) = naive(&x64, &g);
            for isa in Isa::supported() {
                for buf in [HostBuffer::F32(x32.clone()), HostBuffer::F64(x64.clone())] {
                    let (v, i) = max_pool_at(isa, &buf, &l, &g).expect("contiguous f32/f64").unwrap();
                    let v: Vec<f64> = match v {
                        HostBuffer::F32(v) => v.iter().map(|&x| x as f64).collect(),
                        HostBuffer::F64(v) => v,
                        _ => unreachable!(),
                    };
                    let HostBuffer::I64(i) = i else { unreachable!() };
                    assert_eq!(i, want_i, "{isa:?} kernel {kernel:?} stride {stride:?}");
                    for (a, b) in v.iter().zip(&want_v) {
                        assert!(a == b || (a.is_nan() && b.is_nan()), "{isa:?} {kernel:?}: {a} vs {b}");
                    }
                }
            }
        }
    }
}
