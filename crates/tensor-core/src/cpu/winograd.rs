//! Winograd F(4x4, 3x3): the CPU backend's f32 path for 3x3, stride-1 convolutions
//! with enough channels, forward and both gradients.
//!
//! Each 4x4 block of outputs ("tile") comes from a 6x6 patch of input `d` as
//! `Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A` (Lavin & Gray 2015, points 0, ±1, ±2, ∞): the
//! transformed patches of all input channels meet the transformed weights in 36
//! independent GEMMs (one per point `ξ` of the 6x6 transform), `[o, c] x [c, tiles]`,
//! which is 36 multiply-adds per 16 outputs per channel pair instead of 144, so 4x
//! fewer than im2col + GEMM. The transforms are adds and multiplies by small powers
//! of two, vectorised over 16 tiles at a time at the CPU's widest vector level.
//!
//! Tiles are processed in blocks sized so that a block's transformed input and the
//! GEMM's output (`36 * (c + o)` floats per tile) stay near the L2 cache: whole images
//! per block when they are small, else bands of tile rows of one image. The blocks
//! depend on the sizes only, never on the thread count, and each output element is
//! computed by one block, so the result has the same bits for any thread count.
//!
//! Accuracy: the transforms scale values by up to 8 and back, so the f32 result
//! differs from an exact convolution by a few units of 1e-6 relative to
//! `Σ|x|·|w|` (the test asserts 1e-5), where im2col + GEMM differs by about 1e-7.
//! PyTorch's oneDNN and cuDNN make the same trade for this shape.
//!
//! Setting the environment variable `TORCH_RS_CONV_WINOGRAD=0` (read once) turns the
//! path off, for im2col's accuracy or to compare the two.
//!
//! The input gradient of a stride-1 3x3 convolution with padding `p <= 2` is itself
//! one: the output gradient convolved with the weight turned by 180° and its channel
//! axes swapped, with padding `2 - p`; [`input_grad`] runs it through the same code.
//! The weight gradient ([`weight_grad`]) is the adjoint of the forward's product.

use gemm::Parallelism;
use rayon::prelude::*;

use super::alloc;
use super::conv::{gemm_into, Mat};
use super::simd::{multiversion, Isa};
use crate::fused::Conv2dDims;
use crate::{Error, Result};

/// Tiles transformed together (the lanes of the vector code).
const L: usize = 16;

/// Bytes of one block's transformed input and GEMM output together.
const BLOCK_BYTES: usize = 1 << 20;

/// Channels (input and output) below which im2col + GEMM is as fast: the transforms
/// cost per channel what the GEMM saves per channel pair.
const MIN_CHANNELS: usize = 8;

/// Multiply-adds below which a whole convolution runs on the calling thread.
const PAR_WORK: usize = 1 << 18;

/// True when [`forward`] (and [`input_grad`]) handle the convolution: 3x3, stride 1,
/// no dilation, one group, padding at most 2, at least [`MIN_CHANNELS`] input and
/// output channels. The caller checks the dtype (f32).
pub(crate) fn applies(d: &Conv2dDims) -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let on = *ON.get_or_init(|| std::env::var("TORCH_RS_CONV_WINOGRAD").map_or(true, |v| v.trim() != "0"));
    let g = &d.window;
    // The descriptor's output size must be the one a 3x3 stride-1 window gives (the
    // kernels derive it), and not empty.
    let fits = |a: usize| g.out[a] >= 1 && g.out[a].checked_add(2) == g.size[a].checked_add(2 * g.padding[a]);
    on && d.groups == 1
        && g.kernel == [3, 3]
        && g.stride == [1, 1]
        && g.dilation == [1, 1]
        && g.padding[0] <= 2
        && g.padding[1] <= 2
        && d.in_channels >= MIN_CHANNELS
        && d.out_channels >= MIN_CHANNELS
        && fits(0)
        && fits(1)
}

/// One convolution: input `[n, c, h, w]` to output `[n, o, oh, ow]`, with the padding
/// `(py, px)` and the tile grid `th x tw` covering the output.
#[derive(Clone, Copy, Debug)]
struct Plan {
    n: usize,
    c: usize,
    o: usize,
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    py: usize,
    px: usize,
    th: usize,
    tw: usize,
}

impl Plan {
    fn new(n: usize, (c, o): (usize, usize), (h, w): (usize, usize), (py, px): (usize, usize)) -> Plan {
        // A 3x3 window at stride 1: `out = in + 2p - 2` (never negative when the
        // geometry was checked, or when built from a checked one as its adjoint).
        let (oh, ow) = ((h + 2 * py).saturating_sub(2), (w + 2 * px).saturating_sub(2));
        Plan { n, c, o, h, w, oh, ow, py, px, th: oh.div_ceil(4), tw: ow.div_ceil(4) }
    }

    /// Tiles of one image.
    fn tiles(&self) -> usize {
        self.th * self.tw
    }

    /// Row length of the input's and the output gradient's frames.
    fn frame_widths(&self) -> (usize, usize) {
        (self.tw * 4 + 2, self.tw * 4)
    }

    /// Elements of the input's (`extra = 2`) or the output gradient's (`extra = 0`)
    /// frames of the largest block of `tasks` (each task's first block is its largest).
    fn frame_len(&self, tasks: &[Task], extra: usize) -> usize {
        let b = tasks.first().map_or(Block { i0: 0, imgs: 0, ty0: 0, rows: 0 }, |t| t.1[0]);
        b.imgs * (b.rows * 4 + extra) * (self.tw * 4 + extra)
    }
}

/// Tiles transformed and multiplied together: `imgs` images from `i0` (relative to
/// the task's first image), tile rows `ty0..ty0 + rows` of each.
#[derive(Clone, Copy, Debug)]
struct Block {
    i0: usize,
    imgs: usize,
    ty0: usize,
    rows: usize,
}

impl Block {
    fn len(&self, tw: usize) -> usize {
        self.imgs * self.rows * tw
    }

    /// Image (relative to the task), tile row and tile column of the block's tile `t`.
    #[inline(always)]
    fn tile(&self, tw: usize, t: usize) -> (usize, usize, usize) {
        let per = self.rows * tw;
        let r = t % per;
        (self.i0 + t / per, self.ty0 + r / tw, r % tw)
    }

    /// The tile after `(img, ty, tx)` in the block's order (no division).
    #[inline(always)]
    fn next(&self, tw: usize, (img, ty, tx): (usize, usize, usize)) -> (usize, usize, usize) {
        if tx + 1 < tw {
            (img, ty, tx + 1)
        } else if ty + 1 < self.ty0 + self.rows {
            (img, ty + 1, 0)
        } else {
            (img + 1, self.ty0, 0)
        }
    }
}

/// Lane-major values of 36 points for [`L`] tiles: `[i][j][lane]`.
type Lanes = [[[f32; L]; 6]; 6];

/// Copies the block's rows of channel `ch` of each of its images into `dst`, as
/// `[imgs][hb][wp]` frames in which frame row `r` and column `q` hold the plane's
/// value at `(ty0 * 4 + r - py, q - px)`, zero outside the plane: every tile's patch
/// then lies inside its frame, and the gathers need no bounds tests. `src` holds the
/// task's `[imgs, chans, h, w]` planes; `wp >= w + px`. Columns outside `px..px + w`
/// are never written: `dst` starts zeroed and keeps its frame geometry.
#[allow(clippy::too_many_arguments)]
fn frame(
    src: &[f32],
    chans: usize,
    ch: usize,
    (h, w): (usize, usize),
    b: &Block,
    (hb, wp): (usize, usize),
    (py, px): (usize, usize),
    dst: &mut [f32],
) {
    for li in 0..b.imgs {
        let plane = &src[((b.i0 + li) * chans + ch) * h * w..][..h * w];
        for (r, row) in dst[li * hb * wp..(li + 1) * hb * wp].chunks_exact_mut(wp).enumerate() {
            let fr = b.ty0 * 4 + r;
            if fr < py || fr - py >= h {
                row.fill(0.0);
            } else {
                row[px..px + w].copy_from_slice(&plane[(fr - py) * w..][..w]);
            }
        }
    }
}

/// Copies `len <= L` values, as fixed-size vector moves when `len == L`.
#[inline(always)]
fn copy_lanes(dst: &mut [f32], src: &[f32], len: usize) {
    if len == L {
        dst[..L].copy_from_slice(&src[..L]);
    } else {
        for (d, s) in dst[..len].iter_mut().zip(&src[..len]) {
            *d = *s;
        }
    }
}

/// A work unit: a run of whole images (their indices) and its blocks in order.
type Task = (std::ops::Range<usize>, Vec<Block>);

/// Work units, each a run of whole images with its blocks, and the most tiles of any
/// block. A function of the sizes only.
fn schedule(p: &Plan) -> (Vec<Task>, usize) {
    let per_tile = 36 * (p.c + p.o) * std::mem::size_of::<f32>();
    let budget = (BLOCK_BYTES / per_tile).max(L);
    let t = p.tiles();
    if t <= budget {
        let nb = (budget / t.max(1)).max(1);
        let tasks: Vec<_> = (0..p.n)
            .step_by(nb)
            .map(|i| {
                let imgs = nb.min(p.n - i);
                (i..i + imgs, vec![Block { i0: 0, imgs, ty0: 0, rows: p.th }])
            })
            .collect();
        (tasks, nb.min(p.n) * t)
    } else {
        let rows = (budget / p.tw).max(1);
        let bands: Vec<_> =
            (0..p.th).step_by(rows).map(|ty0| Block { i0: 0, imgs: 1, ty0, rows: rows.min(p.th - ty0) }).collect();
        ((0..p.n).map(|i| (i..i + 1, bands.clone())).collect(), rows * p.tw)
    }
}

/// `Bᵀ d` for six lanes of values `d[0..6]`.
#[inline(always)]
fn bt(d: &[[f32; L]; 6]) -> [[f32; L]; 6] {
    let mut o = [[0f32; L]; 6];
    for l in 0..L {
        let [d0, d1, d2, d3, d4, d5] = [d[0][l], d[1][l], d[2][l], d[3][l], d[4][l], d[5][l]];
        o[0][l] = 4.0 * d0 - 5.0 * d2 + d4;
        o[1][l] = (d3 + d4) - 4.0 * (d1 + d2);
        o[2][l] = (d4 - d3) + 4.0 * (d1 - d2);
        o[3][l] = (d4 - d2) + 2.0 * (d3 - d1);
        o[4][l] = (d4 - d2) - 2.0 * (d3 - d1);
        o[5][l] = 4.0 * d1 - 5.0 * d3 + d5;
    }
    o
}

/// `Aᵀ m` for six lanes of values `m[0..6]`.
#[inline(always)]
fn at(m: &[[f32; L]; 6]) -> [[f32; L]; 4] {
    let mut o = [[0f32; L]; 4];
    for l in 0..L {
        let [m0, m1, m2, m3, m4, m5] = [m[0][l], m[1][l], m[2][l], m[3][l], m[4][l], m[5][l]];
        let (s12, d12, s34, d34) = (m1 + m2, m1 - m2, m3 + m4, m3 - m4);
        o[0][l] = m0 + s12 + s34;
        o[1][l] = d12 + 2.0 * d34;
        o[2][l] = s12 + 4.0 * s34;
        o[3][l] = d12 + 8.0 * d34 + m5;
    }
    o
}

/// `A y` for four lanes of values `y[0..4]` (the adjoint of [`at`]).
#[inline(always)]
fn a6(y: &[[f32; L]; 4]) -> [[f32; L]; 6] {
    let mut o = [[0f32; L]; 6];
    for l in 0..L {
        let [y0, y1, y2, y3] = [y[0][l], y[1][l], y[2][l], y[3][l]];
        let (s02, s13) = (y0 + y2, y1 + y3);
        let (e, f) = (y0 + 4.0 * y2, 2.0 * y1 + 8.0 * y3);
        o[0][l] = y0;
        o[1][l] = s02 + s13;
        o[2][l] = s02 - s13;
        o[3][l] = e + f;
        o[4][l] = e - f;
        o[5][l] = y3;
    }
    o
}

/// Copies the `K x K` patch at each of `len <= L` tiles from the block's tile `t0` out
/// of `fr` (`[imgs][hb][wp]` [`frame`]s) into lane order: `d[i][j][lane]`. Lanes from
/// `len` on keep stale values: they are transformed but never stored.
#[inline(always)]
fn gather<const K: usize>(
    fr: &[f32],
    (hb, wp): (usize, usize),
    p: &Plan,
    b: &Block,
    t0: usize,
    len: usize,
    d: &mut [[[f32; L]; K]; K],
) {
    let mut at = b.tile(p.tw, t0);
    for lane in 0..len {
        let (img, ty, tx) = at;
        at = b.next(p.tw, at);
        let base = ((img - b.i0) * hb + (ty - b.ty0) * 4) * wp + tx * 4;
        for (i, di) in d.iter_mut().enumerate() {
            let row = &fr[base + i * wp..][..K];
            for (j, dij) in di.iter_mut().enumerate() {
                dij[lane] = row[j];
            }
        }
    }
}

multiversion! {
    /// The weight gradient's transform of `len <= L` output-gradient tiles from the
    /// block's tile `t0`: `z[ξ * stride + lane] = (A e Aᵀ)[ξ]` for the tile's 4x4
    /// gradient `e`, read from `fr`, one output channel's [`frame`]s (`[imgs][rows *
    /// 4][wp]`, zero past the output's edge).
    fn grad_chunk(fr: &[f32], wp: usize, p: &Plan, b: &Block, t0: usize, len: usize, z: &mut [f32], stride: usize, e: &mut [[[f32; L]; 4]; 4]) {
        gather(fr, (b.rows * 4, wp), p, b, t0, len, e);
        // Columns, then rows: q[a][c] = (A e)[a][c], then (q Aᵀ)[a][k] = (A q[a])[k].
        let mut q = [[[0f32; L]; 4]; 6];
        for c in 0..4 {
            let col = a6(&[e[0][c], e[1][c], e[2][c], e[3][c]]);
            for a in 0..6 {
                q[a][c] = col[a];
            }
        }
        for (a, qa) in q.iter().enumerate() {
            let row = a6(qa);
            for (k, rk) in row.iter().enumerate() {
                copy_lanes(&mut z[(a * 6 + k) * stride..], rk, len);
            }
        }
    }
}

multiversion! {
    /// Transforms `len <= L` tiles from the block's tile `t0`: `v[ξ * stride + lane] =
    /// (Bᵀ d B)[ξ]` for the tile's 6x6 patch `d`, read from `fr`, one input channel's
    /// [`frame`]s (`[imgs][rows * 4 + 2][wp]`).
    fn input_chunk(fr: &[f32], wp: usize, p: &Plan, b: &Block, t0: usize, len: usize, v: &mut [f32], stride: usize, d: &mut Lanes) {
        gather(fr, (b.rows * 4 + 2, wp), p, b, t0, len, d);
        // Columns, then rows: t[a][j] = (Bᵀ d)[a][j], then (t B)[a][k] = (Bᵀ t[a])[k].
        let mut t = [[[0f32; L]; 6]; 6];
        for j in 0..6 {
            let col = bt(&[d[0][j], d[1][j], d[2][j], d[3][j], d[4][j], d[5][j]]);
            for a in 0..6 {
                t[a][j] = col[a];
            }
        }
        for (a, ta) in t.iter().enumerate() {
            let row = bt(ta);
            for (k, rk) in row.iter().enumerate() {
                copy_lanes(&mut v[(a * 6 + k) * stride..], rk, len);
            }
        }
    }
}

multiversion! {
    /// The inverse transform of `len <= L` tiles from the block's tile `t0` of output
    /// channel `oc`: `m[ξ * stride + lane]` holds the products, and each tile's 4x4
    /// outputs `Aᵀ m A + bias` (clipped at the image's edge) go to `out`, the task's
    /// output.
    fn output_chunk(m: &[f32], stride: usize, p: &Plan, b: &Block, oc: usize, t0: usize, len: usize, bias: f32, out: &mut [f32], mm: &mut Lanes) {
        // Lanes from `len` on keep stale values: they are transformed but never stored.
        for (a, ma) in mm.iter_mut().enumerate() {
            for (k, mak) in ma.iter_mut().enumerate() {
                copy_lanes(mak, &m[(a * 6 + k) * stride..], len);
            }
        }
        let mut s = [[[0f32; L]; 6]; 4];
        for k in 0..6 {
            let col = at(&[mm[0][k], mm[1][k], mm[2][k], mm[3][k], mm[4][k], mm[5][k]]);
            for r in 0..4 {
                s[r][k] = col[r];
            }
        }
        let y = [at(&s[0]), at(&s[1]), at(&s[2]), at(&s[3])];
        let ohw = p.oh * p.ow;
        let mut at = b.tile(p.tw, t0);
        for lane in 0..len {
            let (img, ty, tx) = at;
            at = b.next(p.tw, at);
            let plane = &mut out[(img * p.o + oc) * ohw..][..ohw];
            let (rows, cols) = ((p.oh - ty * 4).min(4), (p.ow - tx * 4).min(4));
            for (r, yr) in y.iter().enumerate().take(rows) {
                let dst = &mut plane[(ty * 4 + r) * p.ow + tx * 4..][..cols];
                for (s, o) in dst.iter_mut().enumerate() {
                    *o = yr[s][lane] + bias;
                }
            }
        }
    }
}

/// The weight transform `G` (6x3).
const G_MATRIX: [[f64; 3]; 6] = [
    [0.25, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

/// The transformed weights `u[ξ][o][c] = (G g Gᵀ)[ξ]` of the `o x c` kernels given by
/// `g(o, c)` (each `[ky][kx]`), computed in f64 and rounded once.
fn weights(o: usize, c: usize, g: impl Fn(usize, usize) -> [[f32; 3]; 3]) -> Result<Vec<f32>> {
    const G: [[f64; 3]; 6] = G_MATRIX;
    let mut u = alloc::uninit::<f32>(36 * o * c)?;
    for oc in 0..o {
        for ci in 0..c {
            let k = g(oc, ci);
            // t = G k (6x3), then u = t Gᵀ (6x6).
            let mut t = [[0f64; 3]; 6];
            for (a, ta) in t.iter_mut().enumerate() {
                for (j, tj) in ta.iter_mut().enumerate() {
                    *tj = (0..3).map(|i| G[a][i] * k[i][j] as f64).sum();
                }
            }
            for (a, ta) in t.iter().enumerate() {
                for (b, gb) in G.iter().enumerate() {
                    let v: f64 = (0..3).map(|j| ta[j] * gb[j]).sum();
                    u[((a * 6 + b) * o + oc) * c + ci] = v as f32;
                }
            }
        }
    }
    Ok(u)
}

/// Runs the convolution `p` of `x` with transformed weights `u` (and `bias`).
fn run(x: &[f32], u: &[f32], bias: Option<&[f32]>, p: &Plan) -> Result<Vec<f32>> {
    let (img_in, img_out) = (p.c * p.h * p.w, p.o * p.oh * p.ow);
    if x.len() < p.n * img_in || u.len() < 36 * p.o * p.c || bias.is_some_and(|b| b.len() < p.o) {
        return Err(Error::arg("conv2d", "a Winograd convolution operand is smaller than its geometry"));
    }
    let mut out = alloc::uninit::<f32>(p.n * img_out)?;
    if out.is_empty() {
        return Ok(out);
    }
    let (tasks, most) = schedule(p);
    let isa = Isa::best();
    // One task: its images' blocks in order, with scratch `v` ([ξ][c][tiles]) and
    // `m` ([ξ][o][tiles]) for the largest block.
    let task = |imgs: &std::ops::Range<usize>, blocks: &[Block], y: &mut [f32], v: &mut [f32], m: &mut [f32], par| {
        let xt = &x[imgs.start * img_in..imgs.end * img_in];
        let mut lanes: Lanes = [[[0f32; L]; 6]; 6];
        let mut fr = alloc::filled::<f32>(p.frame_len(&tasks, 2), 0.0)?;
        let wp = p.frame_widths().0;
        for b in blocks {
            let nt = b.len(p.tw);
            for ci in 0..p.c {
                frame(xt, p.c, ci, (p.h, p.w), b, (b.rows * 4 + 2, wp), (p.py, p.px), &mut fr);
                for t0 in (0..nt).step_by(L) {
                    input_chunk(isa, &fr, wp, p, b, t0, L.min(nt - t0), &mut v[ci * nt + t0..], p.c * nt, &mut lanes);
                }
            }
            for xi in 0..36 {
                let a = Mat { data: &u[xi * p.o * p.c..], rs: p.c, cs: 1 };
                let bm = Mat { data: &v[xi * p.c * nt..], rs: nt, cs: 1 };
                gemm_into((p.o, nt, p.c), &mut m[xi * p.o * nt..], false, a, bm, par)?;
            }
            for oc in 0..p.o {
                let bv = bias.map_or(0.0, |b| b[oc]);
                for t0 in (0..nt).step_by(L) {
                    output_chunk(isa, &m[oc * nt + t0..], p.o * nt, p, b, oc, t0, L.min(nt - t0), bv, y, &mut lanes);
                }
            }
        }
        Ok::<(), Error>(())
    };
    let threads = rayon::current_num_threads();
    let work = p.n.saturating_mul(p.tiles()).saturating_mul(36 * p.c * p.o);
    let parallel = work >= PAR_WORK && threads > 1;
    let scratch = |_| -> Result<(Vec<f32>, Vec<f32>)> {
        Ok((alloc::uninit::<f32>(36 * p.c * most)?, alloc::uninit::<f32>(36 * p.o * most)?))
    };
    if parallel && tasks.len() >= threads {
        // Whole tasks per thread, one scratch each.
        let per = tasks.len().div_ceil(threads);
        let mut rest = &mut out[..];
        let mut jobs = Vec::new();
        for group in tasks.chunks(per) {
            let imgs = group.last().map_or(0, |t| t.0.end) - group[0].0.start;
            let (head, tail) = std::mem::take(&mut rest).split_at_mut(imgs * img_out);
            jobs.push((group, head));
            rest = tail;
        }
        jobs.into_par_iter().try_for_each(|(group, y)| {
            let (mut v, mut m) = scratch(())?;
            let first = group[0].0.start;
            for (imgs, blocks) in group {
                let yt = &mut y[(imgs.start - first) * img_out..(imgs.end - first) * img_out];
                task(imgs, blocks, yt, &mut v, &mut m, Parallelism::None)?;
            }
            Ok(())
        })?;
    } else {
        let par = if parallel { Parallelism::Rayon(0) } else { Parallelism::None };
        let (mut v, mut m) = scratch(())?;
        for (imgs, blocks) in &tasks {
            let yt = &mut out[imgs.start * img_out..imgs.end * img_out];
            task(imgs, blocks, yt, &mut v, &mut m, par)?;
        }
    }
    Ok(out)
}

/// The weight gradient `[o, c, 3, 3]` of a convolution [`applies`] accepts, from the
/// contiguous input `[n, c, h, w]` and output gradient `[n, o, oh, ow]`.
///
/// By the adjoint of the forward's `Y = Aᵀ [U ⊙ V] A` with `U = G g Gᵀ`: each tile adds
/// `(A dY Aᵀ) ⊙ V` to `dU`, one GEMM per point `[o, tiles] x [tiles, c]`, and the
/// gradient is `Gᵀ dU G`. Runs of blocks accumulate into a number of slots fixed by
/// the sizes, added in order, so the bits do not depend on the thread count.
pub(crate) fn weight_grad(x: &[f32], gy: &[f32], d: &Conv2dDims) -> Result<Vec<f32>> {
    const G: [[f64; 3]; 6] = G_MATRIX;
    const MAX_SLOTS: usize = 16;
    let g = &d.window;
    let (c, o) = (d.in_channels, d.out_channels);
    let p = Plan::new(d.batch, (c, o), (g.size[0], g.size[1]), (g.padding[0], g.padding[1]));
    let (img_in, img_out) = (p.c * p.h * p.w, p.o * p.oh * p.ow);
    if x.len() < p.n * img_in || gy.len() < p.n * img_out {
        return Err(Error::arg("conv2d_backward", "a Winograd convolution operand is smaller than its geometry"));
    }
    let (tasks, most) = schedule(&p);
    let isa = Isa::best();
    let du_len = 36 * o * c;
    let slots = tasks.len().clamp(1, MAX_SLOTS);
    let mut parts = alloc::filled::<f32>(slots * du_len, 0.0)?;
    // One slot: its run of tasks' blocks in order, accumulating into `du`.
    let slot = |run: &[Task], du: &mut [f32], par: Parallelism| -> Result<()> {
        let mut v = alloc::uninit::<f32>(36 * c * most)?;
        let mut vt = alloc::uninit::<f32>(c * most)?;
        let mut z = alloc::uninit::<f32>(36 * o * most)?;
        let mut lanes: Lanes = [[[0f32; L]; 6]; 6];
        let mut e = [[[0f32; L]; 4]; 4];
        let mut fx = alloc::filled::<f32>(p.frame_len(&tasks, 2), 0.0)?;
        let mut fg = alloc::filled::<f32>(p.frame_len(&tasks, 0), 0.0)?;
        let (wx, wg) = p.frame_widths();
        let mut first = true;
        for (imgs, blocks) in run {
            let xt = &x[imgs.start * img_in..imgs.end * img_in];
            let gt = &gy[imgs.start * img_out..imgs.end * img_out];
            for b in blocks {
                let nt = b.len(p.tw);
                for ci in 0..c {
                    frame(xt, c, ci, (p.h, p.w), b, (b.rows * 4 + 2, wx), (p.py, p.px), &mut fx);
                    for t0 in (0..nt).step_by(L) {
                        input_chunk(
                            isa,
                            &fx,
                            wx,
                            &p,
                            b,
                            t0,
                            L.min(nt - t0),
                            &mut v[ci * nt + t0..],
                            c * nt,
                            &mut lanes,
                        );
                    }
                }
                for oc in 0..o {
                    frame(gt, o, oc, (p.oh, p.ow), b, (b.rows * 4, wg), (0, 0), &mut fg);
                    for t0 in (0..nt).step_by(L) {
                        grad_chunk(isa, &fg, wg, &p, b, t0, L.min(nt - t0), &mut z[oc * nt + t0..], o * nt, &mut e);
                    }
                }
                for xi in 0..36 {
                    // du[ξ] (o x c) += z[ξ] (o x nt) * v[ξ]ᵀ (nt x c), v[ξ] packed to
                    // [nt, c] first (`gemm` reads a column-major right operand slowly).
                    super::matmul::pack_rows(&v[xi * c * nt..(xi + 1) * c * nt], (nt, c), (1, nt), &mut vt);
                    let a = Mat { data: &z[xi * o * nt..], rs: nt, cs: 1 };
                    let bm = Mat { data: &vt, rs: c, cs: 1 };
                    gemm_into((o, c, nt), &mut du[xi * o * c..], !first, a, bm, par)?;
                }
                first = false;
            }
        }
        Ok(())
    };
    let threads = rayon::current_num_threads();
    let work = p.n.saturating_mul(p.tiles()).saturating_mul(36 * c * o);
    let parallel = work >= PAR_WORK && threads > 1;
    let per = tasks.len().div_ceil(slots).max(1);
    let jobs: Vec<_> = tasks.chunks(per).zip(parts.chunks_mut(du_len)).collect();
    if parallel && jobs.len() >= threads {
        jobs.into_par_iter().try_for_each(|(run, du)| slot(run, du, Parallelism::None))?;
    } else {
        let par = if parallel { Parallelism::Rayon(0) } else { Parallelism::None };
        jobs.into_iter().try_for_each(|(run, du)| slot(run, du, par))?;
    }
    // Slots in order (one with no task holds zeros), then gw = Gᵀ dU G in f64.
    let (sum, rest) = parts.split_at_mut(du_len);
    for part in rest.chunks_exact(du_len) {
        for (a, b) in sum.iter_mut().zip(part) {
            *a += *b;
        }
    }
    let mut gw = alloc::uninit::<f32>(o * c * 9)?;
    for oc in 0..o {
        for ci in 0..c {
            // t = dU G (6x3), then gw = Gᵀ t (3x3).
            let mut t = [[0f64; 3]; 6];
            for (a, ta) in t.iter_mut().enumerate() {
                for (bi, gb) in G.iter().enumerate() {
                    let du = sum[((a * 6 + bi) * o + oc) * c + ci] as f64;
                    for kx in 0..3 {
                        ta[kx] += du * gb[kx];
                    }
                }
            }
            for ky in 0..3 {
                for kx in 0..3 {
                    let v: f64 = G.iter().zip(&t).map(|(ga, ta)| ga[ky] * ta[kx]).sum();
                    gw[(oc * c + ci) * 9 + ky * 3 + kx] = v as f32;
                }
            }
        }
    }
    Ok(gw)
}

/// The forward `[n, o, oh, ow]` of a convolution [`applies`] accepts, from contiguous
/// input `[n, c, h, w]`, weight `[o, c, 3, 3]` and bias `[o]`.
pub(crate) fn forward(x: &[f32], w: &[f32], bias: Option<&[f32]>, d: &Conv2dDims) -> Result<Vec<f32>> {
    let g = &d.window;
    let (c, o) = (d.in_channels, d.out_channels);
    if w.len() < o * c * 9 {
        return Err(Error::arg("conv2d", "a Winograd convolution weight is smaller than its geometry"));
    }
    let u = weights(o, c, |oc, ci| {
        let k = &w[(oc * c + ci) * 9..][..9];
        [[k[0], k[1], k[2]], [k[3], k[4], k[5]], [k[6], k[7], k[8]]]
    })?;
    let p = Plan::new(d.batch, (c, o), (g.size[0], g.size[1]), (g.padding[0], g.padding[1]));
    debug_assert_eq!((p.oh, p.ow), (g.out[0], g.out[1]));
    run(x, &u, bias, &p)
}

/// The input gradient `[n, c, h, w]` of a convolution [`applies`] accepts, from the
/// contiguous output gradient `[n, o, oh, ow]` and weight `[o, c, 3, 3]`.
pub(crate) fn input_grad(gy: &[f32], w: &[f32], d: &Conv2dDims) -> Result<Vec<f32>> {
    let g = &d.window;
    let (c, o) = (d.in_channels, d.out_channels);
    if w.len() < o * c * 9 {
        return Err(Error::arg("conv2d_backward", "a Winograd convolution weight is smaller than its geometry"));
    }
    // Output channel ci of the adjoint reads input channel oc through w[oc][ci] turned
    // by 180°.
    let u = weights(c, o, |ci, oc| {
        let k = &w[(oc * c + ci) * 9..][..9];
        [[k[8], k[7], k[6]], [k[5], k[4], k[3]], [k[2], k[1], k[0]]]
    })?;
    let p = Plan::new(d.batch, (o, c), (g.out[0], g.out[1]), (2 - g.padding[0], 2 - g.padding[1]));
    debug_assert_eq!((p.oh, p.ow), (g.size[0], g.size[1]));
    run(gy, &u, None, &p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fused::Window2d;

    fn dims(n: usize, c: usize, o: usize, hw: [usize; 2], p: [usize; 2]) -> Conv2dDims {
        let out = |a: usize| hw[a] + 2 * p[a] - 2;
        Conv2dDims {
            batch: n,
            in_channels: c,
            out_channels: o,
            groups: 1,
            window: Window2d {
                planes: n * c,
                size: hw,
                out: [out(0), out(1)],
                kernel: [3, 3],
                stride: [1, 1],
                padding: p,
                dilation: [1, 1],
            },
        }
    }

    /// [`conv`](super::super::conv)'s test values in [-1, 1), rounded to f32.
    fn values(len: usize, seed: u64) -> Vec<f32> {
        super::super::conv::tests::values(len, seed).iter().map(|&v| v as f32).collect()
    }

    /// The direct convolution in f64, and `Σ|x|·|w|` (+ |b|) per output for the error
    /// bound.
    fn naive(x: &[f32], w: &[f32], b: Option<&[f32]>, d: &Conv2dDims) -> (Vec<f64>, Vec<f64>) {
        let g = &d.window;
        let (n, c, o) = (d.batch, d.in_channels, d.out_channels);
        let ([h, wd], [oh, ow]) = (g.size, g.out);
        let mut y = vec![0.0; n * o * oh * ow];
        let mut mag = vec![0.0; y.len()];
        for i in 0..n {
            for oc in 0..o {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let bv = b.map_or(0.0, |b| b[oc] as f64);
                        let (mut s, mut m) = (bv, bv.abs());
                        for ci in 0..c {
                            for ky in 0..3 {
                                for kx in 0..3 {
                                    let r = (oy + ky) as i64 - g.padding[0] as i64;
                                    let q = (ox + kx) as i64 - g.padding[1] as i64;
                                    if r < 0 || q < 0 || r >= h as i64 || q >= wd as i64 {
                                        continue;
                                    }
                                    let xv = x[((i * c + ci) * h + r as usize) * wd + q as usize] as f64;
                                    let wv = w[((oc * c + ci) * 3 + ky) * 3 + kx] as f64;
                                    s += xv * wv;
                                    m += (xv * wv).abs();
                                }
                            }
                        }
                        let at = ((i * o + oc) * oh + oy) * ow + ox;
                        (y[at], mag[at]) = (s, m);
                    }
                }
            }
        }
        (y, mag)
    }

    /// The exact gradients of `sum(y * gy)` for the direct convolution in f64, each
    /// with `Σ|term|` per element for the error bound: `(gx, gx_mag, gw, gw_mag)`.
    fn naive_grads(x: &[f32], w: &[f32], gy: &[f32], d: &Conv2dDims) -> [Vec<f64>; 4] {
        let g = &d.window;
        let (n, c, o) = (d.batch, d.in_channels, d.out_channels);
        let ([h, wd], [oh, ow]) = (g.size, g.out);
        let [mut gx, mut gxm] = [vec![0.0; x.len()], vec![0.0; x.len()]];
        let [mut gw, mut gwm] = [vec![0.0; w.len()], vec![0.0; w.len()]];
        for i in 0..n {
            for oc in 0..o {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let e = gy[((i * o + oc) * oh + oy) * ow + ox] as f64;
                        for ci in 0..c {
                            for ky in 0..3 {
                                for kx in 0..3 {
                                    let r = (oy + ky) as i64 - g.padding[0] as i64;
                                    let q = (ox + kx) as i64 - g.padding[1] as i64;
                                    if r < 0 || q < 0 || r >= h as i64 || q >= wd as i64 {
                                        continue;
                                    }
                                    let xi = ((i * c + ci) * h + r as usize) * wd + q as usize;
                                    let wi = ((oc * c + ci) * 3 + ky) * 3 + kx;
                                    gx[xi] += e * w[wi] as f64;
                                    gxm[xi] += (e * w[wi] as f64).abs();
                                    gw[wi] += e * x[xi] as f64;
                                    gwm[wi] += (e * x[xi] as f64).abs();
                                }
                            }
                        }
                    }
                }
            }
        }
        [gx, gxm, gw, gwm]
    }

    /// Shapes with padding 0, 1 and 2, outputs that are and are not multiples of 4,
    /// partial lane groups, several images per block, and (with many channels) bands
    /// of tile rows.
    fn cases() -> Vec<Conv2dDims> {
        vec![
            dims(2, 8, 8, [8, 8], [1, 1]),
            dims(3, 9, 10, [7, 11], [0, 2]),
            dims(1, 8, 12, [5, 5], [2, 1]),
            dims(33, 16, 8, [6, 6], [1, 1]),
            dims(2, 200, 160, [46, 38], [1, 1]),
            // 64 tiles per image over a 56-tile budget: bands of 7 tile rows and 1.
            dims(2, 64, 64, [32, 30], [1, 2]),
        ]
    }

    #[test]
    fn forward_matches_a_direct_f64_convolution() {
        for (t, d) in cases().into_iter().enumerate() {
            d.check("test").unwrap();
            assert!(applies(&d));
            let x = values(d.window.input_len(), 3 * t as u64 + 1);
            let w = values(d.weight_len(), 3 * t as u64 + 2);
            let b = values(d.out_channels, 3 * t as u64 + 3);
            for bias in [None, Some(&b[..])] {
                let (want, mag) = naive(&x, &w, bias, &d);
                let got = forward(&x, &w, bias, &d).unwrap();
                assert_eq!(got.len(), want.len());
                for (j, (a, e)) in got.iter().zip(&want).enumerate() {
                    let err = (*a as f64 - e).abs();
                    assert!(err <= 1e-5 * mag[j] + 1e-6, "case {t} at {j}: {a} vs {e} (scale {})", mag[j]);
                }
            }
        }
    }

    #[test]
    fn both_gradients_match_the_direct_convolution_s_adjoint() {
        for (t, d) in cases().into_iter().enumerate() {
            let x = values(d.window.input_len(), 7 * t as u64 + 1);
            let w = values(d.weight_len(), 7 * t as u64 + 2);
            let gy = values(d.output_len(), 7 * t as u64 + 3);
            let [ex, exm, ew, ewm] = naive_grads(&x, &w, &gy, &d);
            let gx = input_grad(&gy, &w, &d).unwrap();
            let gw = weight_grad(&x, &gy, &d).unwrap();
            assert_eq!((gx.len(), gw.len()), (ex.len(), ew.len()));
            for (j, (a, e)) in gx.iter().zip(&ex).enumerate() {
                assert!((*a as f64 - e).abs() <= 1e-5 * exm[j] + 1e-6, "case {t} dx[{j}]: {a} vs {e}");
            }
            for (j, (a, e)) in gw.iter().zip(&ew).enumerate() {
                assert!((*a as f64 - e).abs() <= 1e-5 * ewm[j] + 1e-6, "case {t} dw[{j}]: {a} vs {e}");
            }
        }
    }

    #[test]
    fn every_vector_level_and_thread_count_gives_the_same_bits() {
        let d = dims(6, 16, 24, [13, 10], [1, 1]);
        let x = values(d.window.input_len(), 11);
        let w = values(d.weight_len(), 12);
        let b = values(24, 13);
        let u = weights(24, 16, |oc, ci| {
            let k = &w[(oc * 16 + ci) * 9..][..9];
            [[k[0], k[1], k[2]], [k[3], k[4], k[5]], [k[6], k[7], k[8]]]
        })
        .unwrap();
        let p = Plan::new(6, (16, 24), (13, 10), (1, 1));
        let first = forward(&x, &w, Some(&b), &d).unwrap();
        for threads in [1, 2, 3, 7] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            assert_eq!(pool.install(|| forward(&x, &w, Some(&b), &d).unwrap()), first, "{threads} threads");
            let gy = &first;
            let one = weight_grad(&x, gy, &d).unwrap();
            assert_eq!(pool.install(|| weight_grad(&x, gy, &d).unwrap()), one, "{threads} threads");
        }
        // The chunk kernels at each level, on one block.
        let (tasks, most) = schedule(&p);
        let blk = tasks[0].1[0];
        let nt = blk.len(p.tw);
        assert!(nt <= most && nt > L, "the block spans several lane groups");
        let reference = |isa: Isa| {
            let mut lanes: Lanes = [[[0f32; L]; 6]; 6];
            let (wx, wg) = p.frame_widths();
            let mut fx = vec![0f32; p.frame_len(&tasks, 2)];
            let mut fg = vec![0f32; p.frame_len(&tasks, 0)];
            let mut v = vec![0f32; 36 * p.c * nt];
            for ci in 0..p.c {
                frame(&x, p.c, ci, (p.h, p.w), &blk, (blk.rows * 4 + 2, wx), (p.py, p.px), &mut fx);
                for t0 in (0..nt).step_by(L) {
                    input_chunk(
                        isa,
                        &fx,
                        wx,
                        &p,
                        &blk,
                        t0,
                        L.min(nt - t0),
                        &mut v[ci * nt + t0..],
                        p.c * nt,
                        &mut lanes,
                    );
                }
            }
            let mut y = vec![0f32; p.n * p.o * p.oh * p.ow];
            for t0 in (0..nt).step_by(L) {
                output_chunk(isa, &v[t0..], p.c * nt, &p, &blk, 0, t0, L.min(nt - t0), 0.5, &mut y, &mut lanes);
            }
            let mut z = vec![0f32; 36 * nt];
            let mut e = [[[0f32; L]; 4]; 4];
            frame(&y, p.o, 0, (p.oh, p.ow), &blk, (blk.rows * 4, wg), (0, 0), &mut fg);
            for t0 in (0..nt).step_by(L) {
                grad_chunk(isa, &fg, wg, &p, &blk, t0, L.min(nt - t0), &mut z[t0..], nt, &mut e);
            }
            (v, y, z)
        };
        let base = reference(Isa::supported()[0]);
        for isa in Isa::supported() {
            assert_eq!(reference(isa), base, "level {}", isa.level());
        }
        assert_eq!(u.len(), 36 * 24 * 16);
    }

    #[test]
    fn the_shapes_it_takes() {
        assert!(applies(&dims(1, 8, 8, [4, 4], [1, 1])));
        assert!(!applies(&dims(1, 7, 8, [4, 4], [1, 1])), "too few input channels");
        assert!(!applies(&dims(1, 8, 4, [4, 4], [1, 1])), "too few output channels");
        let mut d = dims(1, 8, 8, [9, 9], [1, 1]);
        d.window.stride = [2, 2];
        assert!(!applies(&d));
        let mut d = dims(1, 8, 8, [9, 9], [3, 3]);
        d.window.out = [11, 11];
        assert!(!applies(&d), "padding 3 has no stride-1 adjoint");
        let mut d = dims(2, 8, 8, [9, 9], [1, 1]);
        d.groups = 2;
        assert!(!applies(&d));
        // A descriptor whose output is not the window's (or is empty) goes to im2col.
        let mut d = dims(1, 8, 8, [4, 2], [0, 0]);
        assert_eq!(d.window.out, [2, 0]);
        assert!(!applies(&d), "empty output");
        d.window.out = [2, 1];
        assert!(!applies(&d), "an output wider than the window gives");
    }
}
