//! Kernel geometry passed BY VALUE to the kernels: `#[repr(C)]` mirrors of the `Geom`
//! and `RGeom` structs of `kernels/common.cuh`, built from tensor-core layouts with
//! adjacent dims merged where every operand allows it.

use cudarc::driver::DeviceRepr;
use tensor_core::{Error, Layout, Result};

/// Highest rank the kernels index directly (after merging dims).
pub const MAX_RANK: usize = 8;
/// Most operands one elementwise kernel addresses.
pub const MAX_OPS: usize = 4;

/// The iteration space of an elementwise kernel and up to [`MAX_OPS`] strided operands.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Geom {
    /// Number of dims in use.
    pub rank: i32,
    /// Bit k set: operand k is contiguous over the iteration space.
    pub contig: i32,
    /// Number of elements in the iteration space.
    pub numel: i64,
    /// Sizes.
    pub shape: [i64; MAX_RANK],
    /// Strides in elements, per operand.
    pub strides: [[i64; MAX_RANK]; MAX_OPS],
    /// Offsets in elements, per operand.
    pub offset: [i64; MAX_OPS],
}

// SAFETY: plain old data with the same layout as the C struct the kernels take by value.
unsafe impl DeviceRepr for Geom {}

/// The geometry of a reduction or scan: kept dims and reduced dims.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RGeom {
    /// Number of kept dims.
    pub krank: i32,
    /// Number of reduced dims.
    pub rrank: i32,
    /// Product of the kept sizes.
    pub out_numel: i64,
    /// Product of the reduced sizes.
    pub red_numel: i64,
    /// Input offset.
    pub offset: i64,
    /// Output stride along the scanned dim (scans only).
    pub ostride_red: i64,
    /// Kept sizes.
    pub kshape: [i64; MAX_RANK],
    /// Input strides of the kept dims.
    pub kstride: [i64; MAX_RANK],
    /// Output strides of the kept dims.
    pub kostride: [i64; MAX_RANK],
    /// Reduced sizes.
    pub rshape: [i64; MAX_RANK],
    /// Input strides of the reduced dims.
    pub rstride: [i64; MAX_RANK],
}

// SAFETY: as for Geom.
unsafe impl DeviceRepr for RGeom {}

/// Drops size-1 dims and merges dim `d` into `d + 1` when every stride list allows it.
/// Returns the merged sizes and strides (one list per operand).
pub fn coalesce(shape: &[usize], strides: &[Vec<usize>]) -> (Vec<usize>, Vec<Vec<usize>>) {
    let mut s: Vec<usize> = Vec::new();
    let mut st: Vec<Vec<usize>> = vec![Vec::new(); strides.len()];
    for d in 0..shape.len() {
        if shape[d] == 1 {
            continue;
        }
        if !s.is_empty() {
            let n = s.len() - 1;
            let mergeable = strides.iter().zip(&st).all(|(src, acc)| acc[n] == src[d] * shape[d]);
            if mergeable {
                s[n] *= shape[d];
                for (acc, src) in st.iter_mut().zip(strides) {
                    acc[n] = src[d];
                }
                continue;
            }
        }
        s.push(shape[d]);
        for (acc, src) in st.iter_mut().zip(strides) {
            acc.push(src[d]);
        }
    }
    (s, st)
}

fn rank_error(op: &'static str, shape: &[usize]) -> Error {
    Error::invalid_shape(op, shape, format!("the CUDA kernels index at most {MAX_RANK} non-mergeable dims"))
}

/// True when `strides` are the row-major strides of `shape` (size-1 dims ignored).
fn is_row_major(shape: &[usize], strides: &[usize]) -> bool {
    let mut expected = 1;
    for d in (0..shape.len()).rev() {
        if shape[d] != 1 {
            if strides[d] != expected {
                return false;
            }
            expected *= shape[d];
        }
    }
    true
}

impl Geom {
    /// Geometry for iterating `shape` over operands given as (strides, offset); every
    /// stride list has `shape.len()` entries.
    pub fn new(op: &'static str, shape: &[usize], ops: &[(Vec<usize>, usize)]) -> Result<Geom> {
        debug_assert!(ops.len() <= MAX_OPS);
        let strides: Vec<Vec<usize>> = ops.iter().map(|o| o.0.clone()).collect();
        let (s, st) = coalesce(shape, &strides);
        if s.len() > MAX_RANK {
            return Err(rank_error(op, shape));
        }
        let mut g = Geom { rank: s.len() as i32, numel: shape.iter().product::<usize>() as i64, ..Default::default() };
        for (d, &n) in s.iter().enumerate() {
            g.shape[d] = n as i64;
        }
        for (k, (o, stk)) in ops.iter().zip(&st).enumerate() {
            g.offset[k] = o.1 as i64;
            for (d, &x) in stk.iter().enumerate() {
                g.strides[k][d] = x as i64;
            }
            if is_row_major(&s, stk) {
                g.contig |= 1 << k;
            }
        }
        Ok(g)
    }

    /// Geometry over `shape` with a fresh contiguous output as operand 0 and the given
    /// layouts (all of that shape) as operands 1.. .
    pub fn with_output(op: &'static str, shape: &[usize], inputs: &[&Layout]) -> Result<Geom> {
        let mut ops = vec![(contiguous_strides(shape), 0usize)];
        ops.extend(inputs.iter().map(|l| (l.strides().to_vec(), l.offset())));
        Geom::new(op, shape, &ops)
    }
}

/// Row-major strides of `shape`.
pub fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut st = vec![0; shape.len()];
    let mut acc = 1;
    for d in (0..shape.len()).rev() {
        st[d] = acc;
        acc *= shape[d];
    }
    st
}

impl RGeom {
    /// Geometry reducing layout `l` over `dims` (sorted, unique). The output is the
    /// contiguous kept shape. For scans pass one dim and `scan = true`: the output then
    /// has `l`'s full shape, contiguous.
    pub fn new(op: &'static str, l: &Layout, dims: &[usize], scan: bool) -> Result<RGeom> {
        let rank = l.rank();
        let full_out = contiguous_strides(l.dims());
        let kept: Vec<usize> = (0..rank).filter(|d| !dims.contains(d)).collect();
        let kshape: Vec<usize> = kept.iter().map(|&d| l.dims()[d]).collect();
        let kin: Vec<usize> = kept.iter().map(|&d| l.strides()[d]).collect();
        let kout: Vec<usize> =
            if scan { kept.iter().map(|&d| full_out[d]).collect() } else { contiguous_strides(&kshape) };
        let (ks, kst) = coalesce(&kshape, &[kin, kout]);
        let rshape: Vec<usize> = dims.iter().map(|&d| l.dims()[d]).collect();
        let rin: Vec<usize> = dims.iter().map(|&d| l.strides()[d]).collect();
        let (rs, rst) = if scan {
            // A scan keeps its single dim even when it has size 1.
            (rshape.clone(), vec![rin])
        } else {
            coalesce(&rshape, &[rin])
        };
        if ks.len() > MAX_RANK || rs.len() > MAX_RANK {
            return Err(rank_error(op, l.dims()));
        }
        let mut g = RGeom {
            krank: ks.len() as i32,
            rrank: rs.len() as i32,
            out_numel: kshape.iter().product::<usize>() as i64,
            red_numel: rshape.iter().product::<usize>() as i64,
            offset: l.offset() as i64,
            ostride_red: if scan && !dims.is_empty() { full_out[dims[0]] as i64 } else { 0 },
            ..Default::default()
        };
        for d in 0..ks.len() {
            g.kshape[d] = ks[d] as i64;
            g.kstride[d] = kst[0][d] as i64;
            g.kostride[d] = kst[1][d] as i64;
        }
        for d in 0..rs.len() {
            g.rshape[d] = rs[d] as i64;
            g.rstride[d] = rst[0][d] as i64;
        }
        // An empty reduced list (all reduced dims had size 1) still reads element 0.
        if g.rrank == 0 {
            g.rrank = 1;
            g.rshape[0] = 1;
            g.rstride[0] = 0;
        }
        Ok(g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalesce_merges_contiguous_dims_and_keeps_broadcast_apart() {
        // [2, 3, 4] contiguous with a [1, 3, 1]-style broadcast second operand.
        let (s, st) = coalesce(&[2, 3, 4], &[vec![12, 4, 1], vec![0, 1, 0]]);
        assert_eq!(s, vec![2, 3, 4]);
        assert_eq!(st, vec![vec![12, 4, 1], vec![0, 1, 0]]);
        let (s, st) = coalesce(&[2, 3, 4], &[vec![12, 4, 1], vec![12, 4, 1]]);
        assert_eq!(s, vec![24]);
        assert_eq!(st, vec![vec![1], vec![1]]);
        // A transposed operand blocks the merge; size-1 dims vanish.
        let (s, st) = coalesce(&[3, 1, 2], &[vec![2, 7, 1], vec![1, 9, 3]]);
        assert_eq!(s, vec![3, 2]);
        assert_eq!(st, vec![vec![2, 1], vec![1, 3]]);
    }

    #[test]
    fn geom_flags_contiguous_operands() {
        let l = Layout::contiguous([4, 5]).transpose(0, 1);
        let g = Geom::with_output("t", &[5, 4], &[&l]).expect("rank fits");
        assert_eq!(g.contig & 1, 1);
        assert_eq!(g.contig & 2, 0);
        assert_eq!(g.numel, 20);
        assert_eq!(std::mem::size_of::<Geom>(), 8 + 8 + 64 + 256 + 32);
    }

    #[test]
    fn rgeom_splits_kept_and_reduced_dims() {
        let l = Layout::contiguous([2, 3, 4]);
        let g = RGeom::new("sum", &l, &[1], false).expect("rank fits");
        assert_eq!((g.out_numel, g.red_numel), (8, 3));
        assert_eq!(&g.kshape[..2], &[2, 4]);
        assert_eq!(&g.kstride[..2], &[12, 1]);
        assert_eq!(&g.kostride[..2], &[4, 1]);
        assert_eq!(g.rstride[0], 4);
        let s = RGeom::new("cumsum", &l, &[2], true).expect("rank fits");
        assert_eq!((s.krank, s.out_numel, s.ostride_red), (1, 6, 1));
        assert_eq!(s.kostride[0], 4);
    }

    #[test]
    fn too_many_dims_is_an_error() {
        let shape = [2usize; 9];
        let l = Layout::contiguous(shape).permute(&[8, 7, 6, 5, 4, 3, 2, 1, 0]).expect("perm");
        assert!(Geom::with_output("t", &shape, &[&l]).is_err());
    }
}
