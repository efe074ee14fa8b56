//! Batched matrix multiply on the `gemm` crate (f32, f64, f16 natively; bf16 through
//! f32; integers with a plain loop, since no fast integer GEMM is needed for training).

use gemm::{gemm, Parallelism};
use half::f16;
use rayon::prelude::*;

use super::{with_dtype, HostBuffer};
use crate::dtype::Elem;
use crate::{Error, Layout, Result};

/// Work (m*n*k) above which one product uses all threads.
const PAR_WORK: usize = 48 * 48 * 48;

#[derive(Clone, Copy)]
struct Dims {
    b: usize,
    m: usize,
    k: usize,
    n: usize,
    /// lhs strides: batch, row (m), col (k)
    ls: [isize; 3],
    /// rhs strides: batch, row (k), col (n)
    rs: [isize; 3],
}

fn dims(lhs_layout: &Layout, rhs_layout: &Layout) -> Result<Dims> {
    if lhs_layout.rank() != 3
        || rhs_layout.rank() != 3
        || lhs_layout.dims()[0] != rhs_layout.dims()[0]
        || lhs_layout.dims()[2] != rhs_layout.dims()[1]
    {
        return Err(Error::shape(
            "matmul",
            lhs_layout.dims(),
            rhs_layout.dims(),
            "backend expects [b, m, k] x [b, k, n]",
        ));
    }
    let s = |l: &Layout, i: usize| l.strides()[i] as isize;
    Ok(Dims {
        b: lhs_layout.dims()[0],
        m: lhs_layout.dims()[1],
        k: lhs_layout.dims()[2],
        n: rhs_layout.dims()[2],
        ls: [s(lhs_layout, 0), s(lhs_layout, 1), s(lhs_layout, 2)],
        rs: [s(rhs_layout, 0), s(rhs_layout, 1), s(rhs_layout, 2)],
    })
}

/// Copies the `[rows, cols]` view `src[i * rs + j * cs]` into `dst` row-major (`dst[i *
/// cols + j]`). Blocks of rows: a column-major source (`rs == 1`) is then read in
/// contiguous runs, and the block's destination lines stay in cache across columns
/// (reading many columns at once would thrash a cache set when `cs` is a multiple
/// of 4 KiB).
pub(super) fn pack_rows<T: Copy + Send + Sync>(
    src: &[T],
    (rows, cols): (usize, usize),
    (rs, cs): (usize, usize),
    dst: &mut [T],
) {
    const BLOCK: usize = 32;
    if rows == 0 || cols == 0 {
        return;
    }
    let block = |bi: usize, d: &mut [T]| {
        let i0 = bi * BLOCK;
        let n = d.len() / cols;
        for j in 0..cols {
            if rs == 1 {
                let col = &src[j * cs + i0..j * cs + i0 + n];
                for (ii, &v) in col.iter().enumerate() {
                    d[ii * cols + j] = v;
                }
            } else {
                for ii in 0..n {
                    d[ii * cols + j] = src[(i0 + ii) * rs + j * cs];
                }
            }
        }
    };
    let dst = &mut dst[..rows * cols];
    if rows * cols >= 1 << 16 {
        dst.par_chunks_mut(BLOCK * cols).enumerate().for_each(|(bi, d)| block(bi, d));
    } else {
        dst.chunks_mut(BLOCK * cols).enumerate().for_each(|(bi, d)| block(bi, d));
    }
}

/// Whether to repack a column-major right operand before `gemm`: the crate packs
/// such an operand with strided reads that cost up to 2.6x on a `[64, 1024] x [1024,
/// 288]` product (a conv's or a linear layer's weight-gradient shape), while a
/// row-major copy costs one pass over `k * n` elements, paid back once `m` is a
/// few rows.
fn repack_rhs(d: &Dims) -> bool {
    d.rs[1] == 1 && d.rs[2] != 1 && d.m >= 16 && d.k >= 32 && d.n >= 2
}

/// Runs `gemm` for each batch of a natively supported float type.
fn gemm_batched<T: Elem + num_traits::Zero + num_traits::One>(
    a: &[T],
    ao: usize,
    bm: &[T],
    bo: usize,
    d: &Dims,
) -> Result<Vec<T>> {
    // Saturating: a product past `usize::MAX` fails the allocation below cleanly.
    let mn = d.m.saturating_mul(d.n);
    // An empty batch must not reach `gemm`: it would read operands that hold no element.
    if mn == 0 || d.k == 0 || d.b == 0 {
        return super::alloc::filled(d.b.saturating_mul(mn), T::zero());
    }
    // A column-major right operand is copied row-major first (see `repack_rhs`); a
    // broadcast one (batch stride 0) once. The products' bits do not change: `gemm`
    // packs either layout into the same panels.
    let packed = if repack_rhs(d) {
        let kn = d.k.saturating_mul(d.n);
        let batches = if d.rs[0] == 0 { 1 } else { d.b };
        let mut p = super::alloc::uninit::<T>(batches.saturating_mul(kn))?;
        for (bi, dst) in p.chunks_mut(kn).enumerate() {
            let off = (bo as isize + bi as isize * d.rs[0]) as usize;
            pack_rows(&bm[off..], (d.k, d.n), (d.rs[1] as usize, d.rs[2] as usize), dst);
        }
        Some(p)
    } else {
        None
    };
    let (bm, bo, d) = match &packed {
        Some(p) => {
            let rs0 = if d.rs[0] == 0 { 0 } else { d.k.saturating_mul(d.n) as isize };
            (&p[..], 0, Dims { rs: [rs0, d.n as isize, 1], ..*d })
        }
        None => (bm, bo, *d),
    };
    let d = &d;
    // `gemm` is called with `read_dst = false`: it overwrites every output element.
    let mut out = super::alloc::uninit::<T>(d.b.saturating_mul(mn))?;
    // Few rows (an RNN step's [N, H] x [H, 4H]): one thread is faster than waking the
    // pool unless the right operand alone is large (1.5x at [12, 256] x [256, 1024]).
    let big = mn.saturating_mul(d.k) >= PAR_WORK && (d.m >= 32 || d.n.saturating_mul(d.k) >= 1 << 22);
    let one = |bi: usize, o: &mut [T], par: Parallelism| {
        let lo = ao as isize + bi as isize * d.ls[0];
        let ro = bo as isize + bi as isize * d.rs[0];
        // SAFETY: `matmul` checked that every (batch, row, col) reachable through these
        // strides lies inside the buffers (`Layout::check_fits`); `o` is a fresh m*n
        // block.
        unsafe {
            gemm(
                d.m,
                d.n,
                d.k,
                o.as_mut_ptr(),
                1,
                d.n as isize,
                false,
                a.as_ptr().offset(lo),
                d.ls[2],
                d.ls[1],
                bm.as_ptr().offset(ro),
                d.rs[2],
                d.rs[1],
                T::zero(),
                T::one(),
                false,
                false,
                false,
                par,
            )
        }
    };
    // With at least one product per thread, whole products go to the threads: each
    // runs single-threaded on its own block, which beats splitting every product
    // across the threads (a conv's [64, 288] x [288, 1024] products: 1.7x). `gemm`
    // splits over output blocks, never over k, so both ways give the same bits.
    if big && d.b < rayon::current_num_threads() {
        for (bi, o) in out.chunks_mut(mn).enumerate() {
            one(bi, o, Parallelism::Rayon(0));
        }
    } else if d.b > 1 {
        out.par_chunks_mut(mn).enumerate().for_each(|(bi, o)| one(bi, o, Parallelism::None));
    } else {
        one(0, &mut out, Parallelism::None);
    }
    if let Some(p) = packed {
        super::alloc::recycle(T::wrap(p));
    }
    Ok(out)
}

fn naive<T: Elem>(a: &[T], ao: usize, bm: &[T], bo: usize, d: &Dims) -> Result<Vec<T>> {
    let mut out = super::alloc::filled(d.b.saturating_mul(d.m).saturating_mul(d.n), T::default())?;
    for bi in 0..d.b {
        for i in 0..d.m {
            for j in 0..d.n {
                let mut acc: i64 = 0;
                for p in 0..d.k {
                    let x =
                        a[(ao as isize + bi as isize * d.ls[0] + i as isize * d.ls[1] + p as isize * d.ls[2]) as usize];
                    let y = bm
                        [(bo as isize + bi as isize * d.rs[0] + p as isize * d.rs[1] + j as isize * d.rs[2]) as usize];
                    acc = acc.wrapping_add(x.to_scalar().to_i64().wrapping_mul(y.to_scalar().to_i64()));
                }
                out[(bi * d.m + i) * d.n + j] = T::from_scalar(acc.into());
            }
        }
    }
    Ok(out)
}

/// `[b, m, k] x [b, k, n] -> [b, m, n]`.
pub fn matmul(a: &HostBuffer, la: &Layout, b: &HostBuffer, lb: &Layout) -> Result<HostBuffer> {
    let d = dims(la, lb)?;
    // `gemm` gets raw pointers and strides: every element the views reach must lie
    // inside the buffers, whatever the caller built.
    la.check_fits("matmul", a.len())?;
    lb.check_fits("matmul", b.len())?;
    let (ao, bo) = (la.offset(), lb.offset());
    Ok(match (a, b) {
        (HostBuffer::F32(x), HostBuffer::F32(y)) => HostBuffer::F32(gemm_batched(x, ao, y, bo, &d)?),
        (HostBuffer::F64(x), HostBuffer::F64(y)) => HostBuffer::F64(gemm_batched(x, ao, y, bo, &d)?),
        (HostBuffer::F16(x), HostBuffer::F16(y)) => HostBuffer::F16(gemm_batched::<f16>(x, ao, y, bo, &d)?),
        (HostBuffer::BF16(_), HostBuffer::BF16(_)) => {
            let fa = super::elementwise::cast(a, la, crate::DType::F32)?;
            let fb = super::elementwise::cast(b, lb, crate::DType::F32)?;
            let (ca, cb) = (Layout::contiguous(la.shape().clone()), Layout::contiguous(lb.shape().clone()));
            let r = matmul(&fa, &ca, &fb, &cb)?;
            let lr = Layout::contiguous([d.b, d.m, d.n]);
            super::elementwise::cast(&r, &lr, crate::DType::BF16)?
        }
        _ if a.dtype() == b.dtype() => with_dtype!(a, x, T => {
            let y = T::unwrap_ref(b).expect("dtype checked above");
            T::wrap(naive(x, ao, y, bo, &d)?)
        }),
        _ => return Err(Error::DTypeMismatch { op: "matmul", expected: a.dtype(), got: b.dtype() }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Products whose right operand is column-major (repacked row-major first) agree
    /// with an f64 reference, batched, broadcast and single, and with the same
    /// product on a row-major copy of the operand bit for bit.
    #[test]
    fn column_major_rhs_is_repacked_correctly() {
        let val = |i: usize| ((i * 7919) % 23) as f64 / 11.0 - 1.0;
        for (b, m, k, n, rs0_zero) in [(1, 20, 40, 7, true), (3, 16, 33, 50, false), (4, 17, 64, 3, true)] {
            let a: Vec<f32> = (0..b * m * k).map(|i| val(i) as f32).collect();
            // rhs stored as [batches, n, k]: element (p, j) of batch bi at bi * n * k + j * k + p.
            let batches = if rs0_zero { 1 } else { b };
            let r: Vec<f32> = (0..batches * n * k).map(|i| val(i + 5) as f32).collect();
            let rs0 = if rs0_zero { 0 } else { (n * k) as isize };
            let col = Dims { b, m, k, n, ls: [(m * k) as isize, k as isize, 1], rs: [rs0, 1, k as isize] };
            assert!(repack_rhs(&col));
            let got = gemm_batched(&a, 0, &r, 0, &col).unwrap();
            // The same operand row-major.
            let mut rm = vec![0f32; batches * k * n];
            for bi in 0..batches {
                for p in 0..k {
                    for j in 0..n {
                        rm[bi * k * n + p * n + j] = r[bi * n * k + j * k + p];
                    }
                }
            }
            let row = Dims { rs: [if rs0_zero { 0 } else { (k * n) as isize }, n as isize, 1], ..col };
            assert!(!repack_rhs(&row));
            assert_eq!(gemm_batched(&a, 0, &rm, 0, &row).unwrap(), got);
            for bi in 0..b {
                let rb = if rs0_zero { 0 } else { bi };
                for i in 0..m {
                    for j in 0..n {
                        let e: f64 =
                            (0..k).map(|p| a[bi * m * k + i * k + p] as f64 * r[rb * n * k + j * k + p] as f64).sum();
                        let v = got[(bi * m + i) * n + j] as f64;
                        assert!((v - e).abs() < 1e-4, "{b}x{m}x{k}x{n}: {v} vs {e}");
                    }
                }
            }
        }
    }
}
