//! Gather, scatter and sort on the CPU.

use rayon::prelude::*;

use super::iter::{Plan, PAR_THRESHOLD};
use super::{with_dtype, Arith, HostBuffer};
use crate::dtype::Elem;
use crate::{DType, Error, Layout, Result};

fn indices<'a>(b: &'a HostBuffer, op: &'static str) -> Result<&'a [i64]> {
    match b {
        HostBuffer::I64(v) => Ok(v),
        _ => Err(Error::DTypeMismatch { op, expected: DType::I64, got: b.dtype() }),
    }
}

/// For each element of `index_layout`'s index space, the src offset with `dim`'s coordinate
/// replaced by the index value: `out = src[.., index[..], ..]`.
pub fn gather(
    src: &HostBuffer,
    src_layout: &Layout,
    index: &HostBuffer,
    index_layout: &Layout,
    dim: usize,
) -> Result<HostBuffer> {
    let idx = indices(index, "gather")?;
    // A view of src with index's shape whose `dim` stride is 0; the index value then
    // adds `value * src_stride[dim]`.
    let mut st: crate::shape::Dims = smallvec::SmallVec::from_slice(src_layout.strides());
    st[dim] = 0;
    let sv = Layout::new(index_layout.shape().clone(), st, src_layout.offset());
    let sd = src_layout.strides()[dim];
    let size = src_layout.dims()[dim] as i64;
    with_dtype!(src, v, T => {
        let mut out = super::alloc::filled(index_layout.numel(), T::default())?;
        let plan = Plan::new(index_layout.dims(), [index_layout, &sv]);
        plan.run(&mut out, |o, [oi, os], [si, ss]| {
            for (j, o) in o.iter_mut().enumerate() {
                let i = idx[oi + j * si];
                let i = if i < 0 { i + size } else { i };
                *o = v[os + j * ss + i as usize * sd];
            }
        });
        Ok(T::wrap(out))
    })
}

/// `dst[.., index[..], ..] = src[..]` (or `+=`), in place.
#[allow(clippy::too_many_arguments)]
pub fn scatter(
    dst: &mut HostBuffer,
    dl: &Layout,
    index: &HostBuffer,
    index_layout: &Layout,
    src: &HostBuffer,
    src_layout: &Layout,
    dim: usize,
    accumulate: bool,
) -> Result<()> {
    let idx = indices(index, "scatter")?;
    if dst.dtype() != src.dtype() {
        return Err(Error::DTypeMismatch { op: "scatter", expected: dst.dtype(), got: src.dtype() });
    }
    let mut st: crate::shape::Dims = smallvec::SmallVec::from_slice(dl.strides());
    st[dim] = 0;
    let dv = Layout::new(index_layout.shape().clone(), st, dl.offset());
    let dd = dl.strides()[dim];
    let size = dl.dims()[dim] as i64;
    // Sequential: scattered writes may collide, and the order must be deterministic.
    with_dtype!(dst, d, T => {
        let s = T::unwrap_ref(src).expect("dtype checked above");
        let plan = Plan::new(index_layout.dims(), [index_layout, &dv, src_layout]);
        plan.for_each_run(|[oi, od, os], [si, sd, ss], n| {
            for j in 0..n {
                let i = idx[oi + j * si];
                let i = if i < 0 { i + size } else { i };
                let p = od + j * sd + i as usize * dd;
                let x = s[os + j * ss];
                d[p] = if accumulate { T::add(d[p], x) } else { x };
            }
        });
    });
    Ok(())
}

fn sort_typed<T: Elem + Arith>(v: &[T], l: &Layout, dim: usize, descending: bool) -> Result<(Vec<T>, Vec<i64>)> {
    // Move `dim` last, make rows contiguous, sort each row.
    let rank = l.rank();
    let mut perm: Vec<usize> = (0..rank).filter(|&d| d != dim).collect();
    perm.push(dim);
    let pl = l.permute(&perm).expect("valid permutation");
    let n = l.dims()[dim];
    let total = l.numel();
    let mut vals = super::alloc::uninit::<T>(total)?;
    super::iter::map1(v, &pl, &mut vals, |x| x);
    let mut idx = super::alloc::uninit::<i64>(total)?;
    let cmp = |a: &T, b: &T| -> std::cmp::Ordering {
        // NaN sorts as the largest value, like PyTorch.
        match (T::is_nan(*a), T::is_nan(*b)) {
            (true, true) => std::cmp::Ordering::Equal,
            (true, false) => std::cmp::Ordering::Greater,
            (false, true) => std::cmp::Ordering::Less,
            _ => a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal),
        }
    };
    let work = |(row, ix): (&mut [T], &mut [i64])| {
        let mut order: Vec<usize> = (0..row.len()).collect();
        if descending {
            order.sort_by(|&i, &j| cmp(&row[j], &row[i]));
        } else {
            order.sort_by(|&i, &j| cmp(&row[i], &row[j]));
        }
        let copy: Vec<T> = row.to_vec();
        for (k, &o) in order.iter().enumerate() {
            row[k] = copy[o];
            ix[k] = o as i64;
        }
    };
    if n > 0 {
        if total >= PAR_THRESHOLD {
            vals.par_chunks_mut(n).zip(idx.par_chunks_mut(n)).for_each(work);
        } else {
            vals.chunks_mut(n).zip(idx.chunks_mut(n)).for_each(work);
        }
    }
    // Back to the original dim order.
    let mut inv = vec![0usize; rank];
    for (i, &p) in perm.iter().enumerate() {
        inv[p] = i;
    }
    let pshape: Vec<usize> = perm.iter().map(|&p| l.dims()[p]).collect();
    let back = Layout::contiguous(pshape).permute(&inv).expect("valid permutation");
    let mut v2 = super::alloc::uninit::<T>(total)?;
    super::iter::map1(&vals, &back, &mut v2, |x| x);
    let mut i2 = super::alloc::uninit::<i64>(total)?;
    super::iter::map1(&idx, &back, &mut i2, |x| x);
    Ok((v2, i2))
}

/// Stable sort along `dim`.
pub fn sort(src: &HostBuffer, l: &Layout, dim: usize, descending: bool) -> Result<(HostBuffer, HostBuffer)> {
    Ok(with_dtype!(src, v, T => {
        let (vals, idx) = sort_typed(v, l, dim, descending)?;
        (T::wrap(vals), HostBuffer::I64(idx))
    }))
}
