//! Strided iteration shared by the CPU kernels (a small TensorIterator).
//!
//! A set of `K` views with the same shape is coalesced (adjacent dims merged where
//! every operand allows it, size-1 dims dropped) into an outer index space and one
//! inner run. Kernels receive the inner run as `(base offsets, inner strides, len)`
//! and specialise on stride 1 / stride 0, which is where vectorisation happens.

use rayon::prelude::*;
use smallvec::SmallVec;

use crate::Layout;

/// Below this many elements a kernel runs on the calling thread.
pub const PAR_THRESHOLD: usize = 1 << 15;

/// Elements per piece of [`for_chunks`].
pub const CHUNK: usize = 1 << 14;

/// Runs `work(start, piece)` over the [`CHUNK`]-element pieces of `out` (`start` is
/// the index of the piece's first element), on the pool when `out` has
/// [`PAR_THRESHOLD`] elements or more: the driver of the contiguous elementwise
/// kernels. The pieces depend only on the length, never on the thread count.
pub fn for_chunks<T: Send>(out: &mut [T], work: impl Fn(usize, &mut [T]) + Sync) {
    let run = |(c, o): (usize, &mut [T])| work(c * CHUNK, o);
    if out.len() >= PAR_THRESHOLD {
        out.par_chunks_mut(CHUNK).enumerate().for_each(run);
    } else {
        out.chunks_mut(CHUNK).enumerate().for_each(run);
    }
}

/// The coalesced iteration space of `K` same-shape views.
#[derive(Debug, Clone)]
pub struct Plan<const K: usize> {
    /// Outer dims (outermost first).
    outer_dims: SmallVec<[usize; 6]>,
    /// Outer strides per operand.
    outer_strides: [SmallVec<[usize; 6]>; K],
    /// Base offsets per operand.
    offsets: [usize; K],
    /// Length of the innermost run.
    pub inner_len: usize,
    /// Innermost stride per operand.
    pub inner_strides: [usize; K],
    /// Total elements.
    pub numel: usize,
}

#[allow(clippy::needless_range_loop)]
impl<const K: usize> Plan<K> {
    /// Builds the plan for views that all have `shape`.
    pub fn new(shape: &[usize], layouts: [&Layout; K]) -> Self {
        let numel: usize = shape.iter().product();
        // Every operand contiguous (the common case, and the one small ops need fast):
        // one run, no coalescing.
        if layouts.iter().all(|l| l.is_contiguous()) {
            return Plan {
                outer_dims: SmallVec::new(),
                outer_strides: std::array::from_fn(|_| SmallVec::new()),
                offsets: std::array::from_fn(|k| layouts[k].offset()),
                inner_len: numel,
                inner_strides: [1; K],
                numel,
            };
        }
        // Collect non-trivial dims.
        let mut dims: SmallVec<[usize; 6]> = SmallVec::new();
        let mut strides: [SmallVec<[usize; 6]>; K] = std::array::from_fn(|_| SmallVec::new());
        for (i, &d) in shape.iter().enumerate() {
            if d == 1 {
                continue;
            }
            dims.push(d);
            for k in 0..K {
                strides[k].push(layouts[k].strides()[i]);
            }
        }
        // Merge dim j into j-1 when every operand is contiguous across the pair.
        let mut j = dims.len();
        while j > 1 {
            j -= 1;
            let mergeable = (0..K).all(|k| strides[k][j - 1] == strides[k][j] * dims[j]);
            if mergeable {
                dims[j - 1] *= dims[j];
                dims.remove(j);
                for s in strides.iter_mut() {
                    s[j - 1] = s[j];
                    s.remove(j);
                }
            }
        }
        let offsets = std::array::from_fn(|k| layouts[k].offset());
        if dims.is_empty() {
            return Plan {
                outer_dims: SmallVec::new(),
                outer_strides: std::array::from_fn(|_| SmallVec::new()),
                offsets,
                inner_len: if numel == 0 { 0 } else { 1 },
                inner_strides: [1; K],
                numel,
            };
        }
        let inner_len = dims.pop().unwrap_or(1);
        let inner_strides = std::array::from_fn(|k| strides[k].pop().unwrap_or(1));
        Plan { outer_dims: dims, outer_strides: strides, offsets, inner_len, inner_strides, numel }
    }

    /// Number of inner runs.
    pub fn rows(&self) -> usize {
        self.numel.checked_div(self.inner_len).unwrap_or(0)
    }

    /// Base offsets of row `r`.
    #[inline]
    pub fn row_offsets(&self, mut r: usize) -> [usize; K] {
        let mut off = self.offsets;
        for d in (0..self.outer_dims.len()).rev() {
            let size = self.outer_dims[d];
            let i = r % size;
            r /= size;
            for k in 0..K {
                off[k] += i * self.outer_strides[k][d];
            }
        }
        off
    }

    /// Calls `f(row_index, offsets)` for rows `start..end`, stepping offsets
    /// incrementally.
    #[inline]
    pub fn for_rows(&self, start: usize, end: usize, mut f: impl FnMut(usize, [usize; K])) {
        if start >= end {
            return;
        }
        let nd = self.outer_dims.len();
        let mut idx: SmallVec<[usize; 6]> = SmallVec::from_elem(0, nd);
        let mut r = start;
        for d in (0..nd).rev() {
            idx[d] = r % self.outer_dims[d];
            r /= self.outer_dims[d];
        }
        let mut off = self.row_offsets(start);
        for row in start..end {
            f(row, off);
            // increment the multi-index
            for d in (0..nd).rev() {
                idx[d] += 1;
                for k in 0..K {
                    off[k] += self.outer_strides[k][d];
                }
                if idx[d] < self.outer_dims[d] {
                    break;
                }
                for k in 0..K {
                    off[k] -= self.outer_strides[k][d] * self.outer_dims[d];
                }
                idx[d] = 0;
            }
        }
    }

    /// Runs `kernel(out_piece, offsets, inner_strides)` over every inner run, writing
    /// a contiguous output `out` (len = numel). Splits across threads when large:
    /// by rows when there are many, otherwise inside the inner run. The pieces and
    /// the per-element arithmetic do not depend on the thread count.
    pub fn run<T: Send>(&self, out: &mut [T], kernel: impl Fn(&mut [T], [usize; K], [usize; K]) + Sync) {
        debug_assert_eq!(out.len(), self.numel);
        if self.numel == 0 {
            return;
        }
        let n = self.inner_len;
        let rows = self.rows();
        let strides = self.inner_strides;
        if self.numel < PAR_THRESHOLD {
            self.for_rows(0, rows, |r, off| kernel(&mut out[r * n..(r + 1) * n], off, strides));
        } else if rows >= 2 * rayon::current_num_threads() && n < PAR_THRESHOLD {
            let rows_per = (PAR_THRESHOLD / n).max(1);
            out.par_chunks_mut(rows_per * n).enumerate().for_each(|(c, chunk)| {
                let r0 = c * rows_per;
                let r1 = (r0 + chunk.len() / n).min(rows);
                self.for_rows(r0, r1, |r, off| kernel(&mut chunk[(r - r0) * n..(r - r0 + 1) * n], off, strides));
            });
        } else {
            const PIECE: usize = 1 << 14;
            out.par_chunks_mut(n).enumerate().for_each(|(r, row)| {
                let base = self.row_offsets(r);
                row.par_chunks_mut(PIECE).enumerate().for_each(|(p, piece)| {
                    let off = std::array::from_fn(|k| base[k] + p * PIECE * strides[k]);
                    kernel(piece, off, strides);
                });
            });
        }
    }

    /// Calls `f(offsets, inner_strides, len)` for each inner run sequentially.
    pub fn for_each_run(&self, mut f: impl FnMut([usize; K], [usize; K], usize)) {
        if self.numel == 0 {
            return;
        }
        let n = self.inner_len;
        let strides = self.inner_strides;
        self.for_rows(0, self.rows(), |_, off| f(off, strides, n));
    }
}

/// The one stride that walks a small view in a single run: 1 for a contiguous view,
/// 0 for a single element broadcast to every position; `None` otherwise, and for
/// views large enough to be worth splitting across threads. Small ops take this
/// path and skip building a [`Plan`].
#[inline]
fn flat_stride(l: &Layout) -> Option<usize> {
    if l.numel() >= PAR_THRESHOLD {
        return None;
    }
    if l.is_contiguous() {
        Some(1)
    } else if l.strides().iter().all(|&s| s == 0) {
        Some(0)
    } else {
        None
    }
}

/// Maps a strided view into a contiguous output: `out[i] = f(src[...])`.
#[inline]
pub fn map1<A: Copy + Sync, O: Send>(src: &[A], l: &Layout, out: &mut [O], f: impl Fn(A) -> O + Sync) {
    let kernel = |o: &mut [O], [off]: [usize; 1], [s]: [usize; 1]| {
        if s == 1 {
            let n = o.len();
            for (o, a) in o.iter_mut().zip(&src[off..off + n]) {
                *o = f(*a);
            }
        } else {
            for (i, o) in o.iter_mut().enumerate() {
                *o = f(src[off + i * s]);
            }
        }
    };
    if let Some(s) = flat_stride(l) {
        if !out.is_empty() {
            kernel(out, [l.offset()], [s]);
        }
        return;
    }
    Plan::new(l.dims(), [l]).run(out, kernel);
}

/// Maps two same-shape strided views into a contiguous output.
#[inline]
pub fn map2<A: Copy + Sync, B: Copy + Sync, O: Send>(
    a: &[A],
    la: &Layout,
    b: &[B],
    lb: &Layout,
    out: &mut [O],
    f: impl Fn(A, B) -> O + Sync,
) {
    let kernel = |o: &mut [O], [oa, ob]: [usize; 2], [sa, sb]: [usize; 2]| {
        let n = o.len();
        match (sa, sb) {
            (1, 1) => {
                for ((o, x), y) in o.iter_mut().zip(&a[oa..oa + n]).zip(&b[ob..ob + n]) {
                    *o = f(*x, *y);
                }
            }
            (1, 0) => {
                let y = b[ob];
                for (o, x) in o.iter_mut().zip(&a[oa..oa + n]) {
                    *o = f(*x, y);
                }
            }
            (0, 1) => {
                let x = a[oa];
                for (o, y) in o.iter_mut().zip(&b[ob..ob + n]) {
                    *o = f(x, *y);
                }
            }
            _ => {
                for (i, o) in o.iter_mut().enumerate() {
                    *o = f(a[oa + i * sa], b[ob + i * sb]);
                }
            }
        }
    };
    if let (Some(sa), Some(sb)) = (flat_stride(la), flat_stride(lb)) {
        if !out.is_empty() {
            kernel(out, [la.offset(), lb.offset()], [sa, sb]);
        }
        return;
    }
    Plan::new(la.dims(), [la, lb]).run(out, kernel);
}

/// Maps three same-shape strided views into a contiguous output.
#[allow(clippy::too_many_arguments)]
pub fn map3<A: Copy + Sync, B: Copy + Sync, C: Copy + Sync, O: Send>(
    a: &[A],
    la: &Layout,
    b: &[B],
    lb: &Layout,
    c: &[C],
    lc: &Layout,
    out: &mut [O],
    f: impl Fn(A, B, C) -> O + Sync,
) {
    let plan = Plan::new(la.dims(), [la, lb, lc]);
    plan.run(out, |o, [oa, ob, oc], [sa, sb, sc]| {
        for (i, o) in o.iter_mut().enumerate() {
            *o = f(a[oa + i * sa], b[ob + i * sb], c[oc + i * sc]);
        }
    });
}

/// Visits a strided destination view in place together with a same-shape source
/// view: `f(&mut dst[..], src[..])`. Sequential when small, else parallel over rows
/// (rows of a non-overlapping destination never alias).
pub fn zip_inplace<D: Send, S: Copy + Sync>(
    dst: &mut [D],
    dl: &Layout,
    src: &[S],
    src_layout: &Layout,
    f: impl Fn(&mut D, S) + Sync,
) {
    if let (Some(1), Some(ss)) = (flat_stride(dl), flat_stride(src_layout)) {
        let (od, os, n) = (dl.offset(), src_layout.offset(), dl.numel());
        if n == 0 {
            // A zero-size view may carry an offset past the end of its storage.
            return;
        }
        if ss == 1 {
            for (d, s) in dst[od..od + n].iter_mut().zip(&src[os..os + n]) {
                f(d, *s);
            }
        } else {
            let s = src[os];
            for d in &mut dst[od..od + n] {
                f(d, s);
            }
        }
        return;
    }
    let plan = Plan::new(dl.dims(), [dl, src_layout]);
    if plan.numel == 0 {
        return;
    }
    if dl.is_contiguous() && plan.numel >= PAR_THRESHOLD && plan.rows() == 1 {
        let (o0, s0) = (dl.offset(), src_layout.offset());
        let ss = plan.inner_strides[1];
        dst[o0..o0 + plan.numel].par_chunks_mut(1 << 14).enumerate().for_each(|(p, piece)| {
            let sb = s0 + p * (1 << 14) * ss;
            if ss == 1 {
                let n = piece.len();
                for (d, s) in piece.iter_mut().zip(&src[sb..sb + n]) {
                    f(d, *s);
                }
            } else {
                for (i, d) in piece.iter_mut().enumerate() {
                    f(d, src[sb + i * ss]);
                }
            }
        });
        return;
    }
    plan.for_each_run(|[od, os], [sd, ss], n| {
        if sd == 1 && ss == 1 {
            for (d, s) in dst[od..od + n].iter_mut().zip(&src[os..os + n]) {
                f(d, *s);
            }
        } else {
            for i in 0..n {
                f(&mut dst[od + i * sd], src[os + i * ss]);
            }
        }
    });
}
