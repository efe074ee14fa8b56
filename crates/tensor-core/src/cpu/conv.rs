//! The CPU backend's fused 2-D convolution ([`crate::FusedOp::Conv2d`] and its
//! backward) on contiguous f32/f64 host buffers.
//!
//! The generic path is im2col over the whole batch, then one batched GEMM: it writes
//! and reads back a column buffer `kh * kw` times the input (38 MB for a 32-image
//! 32-channel 32x32 batch), and its backward adds a `[batch, out, in * kh * kw]`
//! weight-gradient product that is summed afterwards. These kernels instead walk the
//! batch image by image: one image's columns go to a scratch buffer that stays in
//! cache and feed the GEMM at once; a 1x1, stride-1, unpadded convolution needs no
//! columns at all (the image is its own column matrix). The bias is written into the
//! output before the GEMM accumulates onto it.
//!
//! The weight's gradient sums over images. Each of a fixed number of slots (chosen
//! from the sizes, never from the thread count) accumulates its run of images in
//! order, and the slots are then added in order, so the result has the same bits
//! whatever the number of threads.

use gemm::{gemm, Parallelism};
use num_traits::{One, Zero};
use rayon::prelude::*;

use super::alloc;
use super::window::{col2im_plane, im2col_plane};
use super::winograd;
use crate::cpu::HostBuffer;
use crate::fused::Conv2dDims;
use crate::{Elem, Error, Layout, Result};

/// Multiply-adds below which a whole convolution runs on the calling thread.
const PAR_WORK: usize = 1 << 18;

/// Upper bound on the elements of all the weight-gradient slots together.
const SLOT_BUDGET: usize = 1 << 22;

/// Most weight-gradient slots (images are spread over at most this many).
const MAX_SLOTS: usize = 16;

/// The float types the kernels run on.
pub(crate) trait ConvElem: Elem + Zero + One {}
impl<T: Elem + Zero + One> ConvElem for T {}

/// A row-major or transposed view of a matrix inside a slice: element `(r, c)` is
/// `data[r * rs + c * cs]`.
#[derive(Clone, Copy)]
pub(super) struct Mat<'a, T> {
    pub(super) data: &'a [T],
    pub(super) rs: usize,
    pub(super) cs: usize,
}

/// `dst[m, n]` (row-major, row stride `n`) `= (dst if acc) + a[m, k] * b[k, n]`.
/// Fails (never reads out of bounds) when a view does not fit its slice.
pub(super) fn gemm_into<T: ConvElem>(
    (m, n, k): (usize, usize, usize),
    dst: &mut [T],
    acc: bool,
    a: Mat<'_, T>,
    b: Mat<'_, T>,
    par: Parallelism,
) -> Result<()> {
    if m == 0 || n == 0 {
        return Ok(());
    }
    let last = |v: &Mat<'_, T>, r: usize, c: usize| (r - 1) * v.rs + (c - 1) * v.cs;
    if dst.len() < m * n {
        return Err(Error::arg("conv2d", "a convolution GEMM output does not fit its buffer"));
    }
    if k == 0 {
        if !acc {
            dst[..m * n].fill(T::zero());
        }
        return Ok(());
    }
    if a.data.len() <= last(&a, m, k) || b.data.len() <= last(&b, k, n) {
        return Err(Error::arg("conv2d", "a convolution GEMM operand does not fit its buffer"));
    }
    // SAFETY: the checks above keep every element the three views reach inside their
    // slices; `dst` is a unique borrow that no operand aliases.
    unsafe {
        gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            acc,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            T::one(),
            T::one(),
            false,
            false,
            false,
            par,
        );
    }
    Ok(())
}

/// The sizes every kernel needs, derived once from checked [`Conv2dDims`].
#[derive(Clone, Copy)]
struct Geom {
    /// input channels, output channels, groups
    c: usize,
    o: usize,
    groups: usize,
    /// one input plane, one output plane, kernel taps
    hw: usize,
    l: usize,
    kk: usize,
    /// rows of one group's columns (`c / groups * kk`), output channels per group
    kg: usize,
    og: usize,
    /// a 1x1, stride-1, unpadded convolution: the image is its own column matrix
    pointwise: bool,
}

impl Geom {
    fn new(d: &Conv2dDims) -> Geom {
        let g = &d.window;
        let kk = g.kernel[0] * g.kernel[1];
        Geom {
            c: d.in_channels,
            o: d.out_channels,
            groups: d.groups,
            hw: g.size[0] * g.size[1],
            l: g.out[0] * g.out[1],
            kk,
            kg: d.in_channels / d.groups * kk,
            og: d.out_channels / d.groups,
            pointwise: g.kernel == [1, 1] && g.stride == [1, 1] && g.padding == [0, 0],
        }
    }

    /// Elements of one image's columns `[c * kk, l]` (none when pointwise).
    fn cols_len(&self) -> usize {
        if self.pointwise {
            0
        } else {
            self.c * self.kk * self.l
        }
    }

    /// Multiply-adds of one image's GEMM.
    fn work(&self) -> usize {
        self.o * self.kg * self.l
    }
}

/// One image's column matrix `[c * kk, l]`: the image itself when pointwise, else
/// im2col into `scratch`.
fn columns<'a, T: ConvElem>(xi: &'a [T], d: &Conv2dDims, g: &Geom, scratch: &'a mut [T]) -> &'a [T] {
    if g.pointwise {
        return xi;
    }
    for (plane, cols) in xi.chunks_exact(g.hw).zip(scratch.chunks_exact_mut(g.kk * g.l)) {
        im2col_plane(plane, &d.window, cols);
    }
    scratch
}

/// Splits `v` into consecutive pieces of the given lengths.
fn split_lengths<T>(mut v: &mut [T], lens: impl Iterator<Item = usize>) -> Vec<&mut [T]> {
    let mut out = Vec::new();
    for n in lens {
        let (head, tail) = std::mem::take(&mut v).split_at_mut(n);
        out.push(head);
        v = tail;
    }
    out
}

/// Image ranges of `parts` near-equal consecutive runs of `n` images.
fn runs(n: usize, parts: usize) -> Vec<std::ops::Range<usize>> {
    (0..parts).map(|s| s * n / parts..(s + 1) * n / parts).collect()
}

/// The forward: `[batch, o, oh, ow]` from contiguous input, weight and bias.
pub(crate) fn forward<T: ConvElem>(x: &[T], w: &[T], bias: Option<&[T]>, d: &Conv2dDims) -> Result<Vec<T>> {
    let g = Geom::new(d);
    let n = d.batch;
    if x.len() < n * g.c * g.hw || w.len() < d.weight_len() || bias.is_some_and(|b| b.len() < g.o) {
        return Err(Error::arg("conv2d", "a convolution operand is smaller than its geometry"));
    }
    let mut out = alloc::uninit::<T>(n * g.o * g.l)?;
    if out.is_empty() {
        return Ok(out);
    }
    let image = |i: usize, yi: &mut [T], scratch: &mut [T], par: Parallelism| -> Result<()> {
        let cols = columns(&x[i * g.c * g.hw..(i + 1) * g.c * g.hw], d, &g, scratch);
        if let Some(b) = bias {
            for (row, &bv) in yi.chunks_exact_mut(g.l).zip(b) {
                row.fill(bv);
            }
        }
        for gi in 0..g.groups {
            let wg = Mat { data: &w[gi * g.og * g.kg..], rs: g.kg, cs: 1 };
            let cg = Mat { data: &cols[gi * g.kg * g.l..], rs: g.l, cs: 1 };
            gemm_into((g.og, g.l, g.kg), &mut yi[gi * g.og * g.l..], bias.is_some(), wg, cg, par)?;
        }
        Ok(())
    };
    let threads = rayon::current_num_threads();
    let parallel = g.work().saturating_mul(n) >= PAR_WORK && threads > 1;
    if parallel && n >= threads {
        // Whole images per thread, one scratch each.
        let parts = runs(n, threads);
        let mut scratch = alloc::uninit::<T>(threads * g.cols_len())?;
        let outs = split_lengths(&mut out, parts.iter().map(|r| r.len() * g.o * g.l));
        let scr = scratch.chunks_mut(g.cols_len().max(1));
        parts.into_par_iter().zip(outs).zip(scr.collect::<Vec<_>>()).try_for_each(|((r, y), s)| {
            for (i, yi) in r.zip(y.chunks_exact_mut(g.o * g.l)) {
                image(i, yi, s, Parallelism::None)?;
            }
            Ok(())
        })
    } else {
        let par = if parallel { Parallelism::Rayon(0) } else { Parallelism::None };
        let mut scratch = alloc::uninit::<T>(g.cols_len())?;
        out.chunks_exact_mut(g.o * g.l).enumerate().try_for_each(|(i, yi)| image(i, yi, &mut scratch, par))
    }?;
    Ok(out)
}

/// The input's and the weight's gradients, each when asked for.
type Grads<T> = (Option<Vec<T>>, Option<Vec<T>>);

/// The backward: the input's gradient `[batch, c, h, w]` and the weight's
/// `[o, c / groups, kh, kw]`, each when asked for, from contiguous input, weight and
/// output gradient `gy [batch, o, oh, ow]`.
pub(crate) fn backward<T: ConvElem>(
    x: &[T],
    w: &[T],
    gy: &[T],
    d: &Conv2dDims,
    need_gx: bool,
    need_gw: bool,
) -> Result<Grads<T>> {
    let g = Geom::new(d);
    let n = d.batch;
    let wl = d.weight_len();
    if x.len() < n * g.c * g.hw || w.len() < wl || gy.len() < n * g.o * g.l {
        return Err(Error::arg("conv2d_backward", "a convolution operand is smaller than its geometry"));
    }
    let mut gx = if need_gx { Some(alloc::filled::<T>(n * g.c * g.hw, T::zero())?) } else { None };
    // Weight-gradient slots: a count fixed by the sizes, so the sum's order is too.
    let slots = if need_gw { n.clamp(1, MAX_SLOTS).min((SLOT_BUDGET / wl.max(1)).max(1)) } else { 1 };
    let mut parts = if need_gw { alloc::filled::<T>(slots * wl, T::zero())? } else { Vec::new() };
    let threads = rayon::current_num_threads();
    let work = g.work().saturating_mul(n);
    let parallel = work >= PAR_WORK && threads > 1;
    // Image runs: the weight-gradient slots, or (input gradient only) one per thread.
    let nruns = if need_gw { slots } else { threads.min(n).max(1) };
    let by_run = parallel && nruns >= threads;
    let par = if parallel && !by_run { Parallelism::Rayon(0) } else { Parallelism::None };
    let cols_len = g.cols_len();
    let run = |r: std::ops::Range<usize>, gxr: &mut [T], part: &mut [T]| -> Result<()> {
        let mut cols_s = alloc::uninit::<T>(if need_gw { cols_len } else { 0 })?;
        let mut gcols = alloc::uninit::<T>(if need_gx { cols_len } else { 0 })?;
        let mut gyt = alloc::uninit::<T>(if need_gw { g.o * g.l } else { 0 })?;
        let first = r.start;
        for i in r {
            let xi = &x[i * g.c * g.hw..(i + 1) * g.c * g.hw];
            let gyi = &gy[i * g.o * g.l..(i + 1) * g.o * g.l];
            if need_gw {
                let cols = columns(xi, d, &g, &mut cols_s);
                // gy_i transposed to [l, o], so that both GEMM operands are row-major
                // (`gemm` reads a column-major right operand far slower).
                super::matmul::pack_rows(gyi, (g.l, g.o), (1, g.l), &mut gyt);
                for gi in 0..g.groups {
                    // part_g[kg, og] += cols_g[kg, l] * gy_g[og, l]^T
                    let a = Mat { data: &cols[gi * g.kg * g.l..], rs: g.l, cs: 1 };
                    let b = Mat { data: &gyt[gi * g.og..], rs: g.o, cs: 1 };
                    gemm_into((g.kg, g.og, g.l), &mut part[gi * g.og * g.kg..], i != first, a, b, par)?;
                }
            }
            if need_gx {
                let gxi = &mut gxr[(i - first) * g.c * g.hw..(i - first + 1) * g.c * g.hw];
                for gi in 0..g.groups {
                    // gcols_g[kg, l] = w_g[og, kg]^T * gy_g[og, l]
                    let a = Mat { data: &w[gi * g.og * g.kg..], rs: 1, cs: g.kg };
                    let b = Mat { data: &gyi[gi * g.og * g.l..], rs: g.l, cs: 1 };
                    let dst = if g.pointwise { &mut gxi[gi * g.kg * g.l..] } else { &mut gcols[gi * g.kg * g.l..] };
                    gemm_into((g.kg, g.l, g.og), dst, false, a, b, par)?;
                }
                if !g.pointwise {
                    for (plane, cols) in gxi.chunks_exact_mut(g.hw).zip(gcols.chunks_exact(g.kk * g.l)) {
                        col2im_plane(cols, &d.window, plane);
                    }
                }
            }
        }
        Ok(())
    };
    let ranges = runs(n, nruns);
    let gx_runs = match gx.as_mut() {
        Some(v) => split_lengths(v, ranges.iter().map(|r| r.len() * g.c * g.hw)),
        None => ranges.iter().map(|_| &mut [][..]).collect(),
    };
    let part_runs: Vec<&mut [T]> =
        if need_gw { parts.chunks_mut(wl.max(1)).collect() } else { ranges.iter().map(|_| &mut [][..]).collect() };
    let jobs: Vec<_> = ranges.into_iter().zip(gx_runs).zip(part_runs).collect();
    if by_run {
        jobs.into_par_iter().try_for_each(|((r, gxr), part)| run(r, gxr, part))?;
    } else {
        jobs.into_iter().try_for_each(|((r, gxr), part)| run(r, gxr, part))?;
    }
    let gw = if need_gw {
        // Slots in order (a slot with no image holds zeros and adds nothing), each
        // group's `[kg, og]` block transposed back to the weight's `[og, kg]`.
        let mut gw = alloc::uninit::<T>(wl)?;
        let block = g.og * g.kg;
        for gi in 0..g.groups {
            for j in 0..g.og {
                for r in 0..g.kg {
                    let at = gi * block + r * g.og + j;
                    let mut v = parts[at];
                    for p in parts.chunks_exact(wl.max(1)).skip(1) {
                        v = v + p[at];
                    }
                    gw[gi * block + j * g.kg + r] = v;
                }
            }
        }
        Some(gw)
    } else {
        None
    };
    Ok((gx, gw))
}

/// The contiguous data of a host view of `len` elements of `T`, or `None` (another
/// dtype, a strided view, a size that does not match).
pub(super) fn data<'a, T: Elem>(b: &'a HostBuffer, l: &Layout, len: usize) -> Option<&'a [T]> {
    if l.numel() != len {
        return None;
    }
    T::unwrap_ref(b)?.get(l.contiguous_range()?)
}

/// A host view with its layout.
pub(crate) type View<'a> = (&'a HostBuffer, &'a Layout);

/// [`forward`] on host views: `None` unless all are contiguous f32 or all f64 with
/// the geometry's sizes (`dims` already checked).
pub(crate) fn forward_host(
    x: View<'_>,
    w: View<'_>,
    bias: Option<View<'_>>,
    d: &Conv2dDims,
) -> Option<Result<HostBuffer>> {
    fn run<T: ConvElem>(
        x: View<'_>,
        w: View<'_>,
        bias: Option<View<'_>>,
        d: &Conv2dDims,
    ) -> Option<Result<HostBuffer>> {
        let xs = data::<T>(x.0, x.1, d.window.input_len())?;
        let ws = data::<T>(w.0, w.1, d.weight_len())?;
        let bs = match bias {
            Some((b, l)) => Some(data::<T>(b, l, d.out_channels)?),
            None => None,
        };
        Some(forward(xs, ws, bs, d).map(T::wrap))
    }
    match x.0 {
        HostBuffer::F32(_) if winograd::applies(d) => {
            let xs = data::<f32>(x.0, x.1, d.window.input_len())?;
            let ws = data::<f32>(w.0, w.1, d.weight_len())?;
            let bs = match bias {
                Some((b, l)) => Some(data::<f32>(b, l, d.out_channels)?),
                None => None,
            };
            Some(winograd::forward(xs, ws, bs, d).map(f32::wrap))
        }
        HostBuffer::F32(_) => run::<f32>(x, w, bias, d),
        HostBuffer::F64(_) => run::<f64>(x, w, bias, d),
        _ => None,
    }
}

/// [`backward`] on host views, like [`forward_host`]; the outputs asked for, in order.
pub(crate) fn backward_host(
    x: View<'_>,
    w: View<'_>,
    gy: View<'_>,
    d: &Conv2dDims,
    need_gx: bool,
    need_gw: bool,
) -> Option<Result<Vec<HostBuffer>>> {
    fn run<T: ConvElem>(
        x: View<'_>,
        w: View<'_>,
        gy: View<'_>,
        d: &Conv2dDims,
        need: (bool, bool),
    ) -> Option<Result<Vec<HostBuffer>>> {
        let xs = data::<T>(x.0, x.1, d.window.input_len())?;
        let ws = data::<T>(w.0, w.1, d.weight_len())?;
        let gs = data::<T>(gy.0, gy.1, d.output_len())?;
        Some(backward(xs, ws, gs, d, need.0, need.1).map(|(gx, gw)| gx.into_iter().chain(gw).map(T::wrap).collect()))
    }
    match x.0 {
        HostBuffer::F32(_) if winograd::applies(d) => {
            let xs = data::<f32>(x.0, x.1, d.window.input_len())?;
            let ws = data::<f32>(w.0, w.1, d.weight_len())?;
            let gs = data::<f32>(gy.0, gy.1, d.output_len())?;
            let gx = need_gx.then(|| winograd::input_grad(gs, ws, d));
            let gw = need_gw.then(|| winograd::weight_grad(xs, gs, d));
            Some(gx.into_iter().chain(gw).map(|r| r.map(f32::wrap)).collect())
        }
        HostBuffer::F32(_) => run::<f32>(x, w, gy, d, (need_gx, need_gw)),
        HostBuffer::F64(_) => run::<f64>(x, w, gy, d, (need_gx, need_gw)),
        _ => None,
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::fused::Window2d;

    /// A direct f64 convolution: `y[i, oc, oy, ox] = b[oc] + sum x * w`.
    fn naive(x: &[f64], w: &[f64], b: Option<&[f64]>, d: &Conv2dDims) -> Vec<f64> {
        let g = &d.window;
        let (n, c, o, groups) = (d.batch, d.in_channels, d.out_channels, d.groups);
        let ([h, wd], [oh, ow], [kh, kw]) = (g.size, g.out, g.kernel);
        let (cg, og) = (c / groups, o / groups);
        let mut y = vec![0.0; n * o * oh * ow];
        for i in 0..n {
            for oc in 0..o {
                let grp = oc / og;
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut s = b.map_or(0.0, |b| b[oc]);
                        for ci in 0..cg {
                            for ky in 0..kh {
                                for kx in 0..kw {
                                    let r = (oy * g.stride[0] + ky * g.dilation[0]) as i64 - g.padding[0] as i64;
                                    let q = (ox * g.stride[1] + kx * g.dilation[1]) as i64 - g.padding[1] as i64;
                                    if r < 0 || q < 0 || r >= h as i64 || q >= wd as i64 {
                                        continue;
                                    }
                                    let xc = grp * cg + ci;
                                    let xv = x[((i * c + xc) * h + r as usize) * wd + q as usize];
                                    s += xv * w[((oc * cg + ci) * kh + ky) * kw + kx];
                                }
                            }
                        }
                        y[((i * o + oc) * oh + oy) * ow + ox] = s;
                    }
                }
            }
        }
        y
    }

    /// Deterministic values in [-1, 1).
    pub(in crate::cpu) fn values(len: usize, seed: u64) -> Vec<f64> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 11) as f64 / (1u64 << 52) as f64 - 1.0
            })
            .collect()
    }

    #[allow(clippy::too_many_arguments)]
    fn dims(
        n: usize,
        c: usize,
        o: usize,
        groups: usize,
        hw: [usize; 2],
        k: [usize; 2],
        s: usize,
        p: usize,
        dl: usize,
    ) -> Conv2dDims {
        let out = |a: usize| (hw[a] + 2 * p - dl * (k[a] - 1) - 1) / s + 1;
        Conv2dDims {
            batch: n,
            in_channels: c,
            out_channels: o,
            groups,
            window: Window2d {
                planes: n * c,
                size: hw,
                out: [out(0), out(1)],
                kernel: k,
                stride: [s, s],
                padding: [p, p],
                dilation: [dl, dl],
            },
        }
    }

    /// Shapes covering 3x3 with padding, stride 2, dilation, groups, 1x1 (pointwise
    /// and strided), and batches below, at and above the slot and thread counts.
    fn cases() -> Vec<Conv2dDims> {
        vec![
            dims(2, 3, 4, 1, [5, 6], [3, 3], 1, 1, 1),
            dims(3, 4, 6, 2, [7, 5], [3, 2], 2, 1, 1),
            dims(1, 2, 3, 1, [9, 9], [3, 3], 1, 2, 2),
            dims(5, 6, 4, 1, [4, 4], [1, 1], 1, 0, 1),
            dims(4, 6, 6, 3, [5, 5], [1, 1], 2, 0, 1),
            dims(37, 3, 5, 1, [6, 6], [3, 3], 1, 1, 1),
            dims(20, 8, 16, 1, [12, 12], [3, 3], 1, 1, 1),
        ]
    }

    #[test]
    fn forward_matches_a_direct_f64_convolution() {
        for (t, d) in cases().into_iter().enumerate() {
            d.check("test").unwrap();
            let x = values(d.batch * d.in_channels * d.window.size[0] * d.window.size[1], 3 * t as u64 + 1);
            let w = values(d.weight_len(), 3 * t as u64 + 2);
            let b = values(d.out_channels, 3 * t as u64 + 3);
            for bias in [None, Some(&b[..])] {
                let want = naive(&x, &w, bias, &d);
                let got = forward(&x, &w, bias, &d).unwrap();
                for (a, e) in got.iter().zip(&want) {
                    assert!((a - e).abs() < 1e-12, "case {t}: {a} vs {e}");
                }
                let (xf, wf): (Vec<f32>, Vec<f32>) =
                    (x.iter().map(|&v| v as f32).collect(), w.iter().map(|&v| v as f32).collect());
                let bf: Vec<f32> = b.iter().map(|&v| v as f32).collect();
                let got = forward(&xf, &wf, bias.map(|_| &bf[..]), &d).unwrap();
                for (a, e) in got.iter().zip(&want) {
                    assert!((*a as f64 - e).abs() < 1e-4 * (1.0 + e.abs()), "case {t} f32: {a} vs {e}");
                }
            }
        }
    }

    #[test]
    fn backward_is_the_adjoint_of_the_direct_convolution() {
        // d/dx and d/dw of sum(y * gy) for the naive convolution, by linearity: the
        // naive forward of unit inputs gives each partial derivative exactly.
        for (t, d) in cases().into_iter().enumerate() {
            let xl = d.batch * d.in_channels * d.window.size[0] * d.window.size[1];
            let x = values(xl, 5 * t as u64 + 1);
            let w = values(d.weight_len(), 5 * t as u64 + 2);
            let gy = values(d.output_len(), 5 * t as u64 + 3);
            let dot = |y: &[f64]| y.iter().zip(&gy).map(|(a, b)| a * b).sum::<f64>();
            let (gx, gw) = backward(&x, &w, &gy, &d, true, true).unwrap();
            let (gx, gw) = (gx.unwrap(), gw.unwrap());
            let mut unit = vec![0.0; xl];
            for j in (0..xl).step_by(1 + xl / 97) {
                unit[j] = 1.0;
                let e = dot(&naive(&unit, &w, None, &d));
                unit[j] = 0.0;
                assert!((gx[j] - e).abs() < 1e-12, "case {t} dx[{j}]: {} vs {e}", gx[j]);
            }
            let mut unit = vec![0.0; d.weight_len()];
            for j in 0..unit.len() {
                unit[j] = 1.0;
                let e = dot(&naive(&x, &unit, None, &d));
                unit[j] = 0.0;
                assert!((gw[j] - e).abs() < 1e-11, "case {t} dw[{j}]: {} vs {e}", gw[j]);
            }
            // Each gradient alone is the same as both together.
            assert_eq!(backward(&x, &w, &gy, &d, true, false).unwrap().0.unwrap(), gx);
            assert_eq!(backward(&x, &w, &gy, &d, false, true).unwrap().1.unwrap(), gw);
        }
    }

    #[test]
    fn weight_gradient_bits_do_not_depend_on_the_thread_count() {
        let d = dims(20, 8, 16, 1, [12, 12], [3, 3], 1, 1, 1);
        let x: Vec<f32> = values(20 * 8 * 144, 7).iter().map(|&v| v as f32).collect();
        let w: Vec<f32> = values(d.weight_len(), 8).iter().map(|&v| v as f32).collect();
        let gy: Vec<f32> = values(d.output_len(), 9).iter().map(|&v| v as f32).collect();
        let on = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| backward(&x, &w, &gy, &d, true, true).unwrap())
        };
        let one = on(1);
        for t in [2, 3, 8] {
            let r = on(t);
            assert_eq!(r.1, one.1, "{t} threads");
            assert_eq!(r.0, one.0, "{t} threads");
        }
    }

    #[test]
    fn inconsistent_geometry_is_an_error() {
        let mut d = dims(2, 3, 4, 1, [5, 6], [3, 3], 1, 1, 1);
        d.window.planes = 5;
        assert!(d.check("conv2d").is_err());
        let mut d = dims(2, 4, 6, 2, [5, 6], [3, 3], 1, 1, 1);
        d.groups = 4;
        assert!(d.check("conv2d").is_err());
        let x = values(10, 1);
        let d = dims(2, 3, 4, 1, [5, 6], [3, 3], 1, 1, 1);
        assert!(forward(&x, &values(d.weight_len(), 2), None, &d).is_err());
    }
}
