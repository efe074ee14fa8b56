//! Op-table records for the indexing and joining ops (`ops/index.rs`): gather and
//! scatter forms, `masked_select`, `cat`/`stack`, `split`/`chunk`/`unbind`,
//! `repeat`, `flip`, `roll`, `tril`/`triu`, `one_hot`, `sort`/`argsort`/`topk`.
//!
//! Index and mask inputs keep their dtype ([`Sample::with_cast`]); references are
//! plain loops over [`RefArray`] indices.

use std::cmp::Ordering;
use std::sync::Arc;

use tensor_core::{DType, Error, Result, Tensor};

use crate::refs::unravel;
use crate::{call, call1, Run};
use crate::{int_t, non_contiguous, rand_t, ErrorCase, OpInfo, RefArray, Sample, ALL, NUMERIC};

// ---------------------------------------------------------------- references

/// An array of `shape` whose element at each multi-index `i` is `a[src(i)]`.
fn ref_pick(a: &RefArray, shape: &[usize], src: impl Fn(&[usize]) -> Vec<usize>) -> RefArray {
    let n: usize = shape.iter().product();
    let data = (0..n).map(|i| a.at(&src(&unravel(i, shape)))).collect();
    RefArray::new(shape.to_vec(), data)
}

/// Flat position of a multi-index in a row-major array of `shape`.
fn flat(shape: &[usize], idx: &[usize]) -> usize {
    idx.iter().zip(shape).fold(0, |acc, (i, s)| acc * s + i)
}

/// `out[i] = a[i with dim replaced by index[i]]`, out shaped like `index`.
fn ref_gather(a: &RefArray, dim: usize, index: &RefArray) -> RefArray {
    let data = (0..index.numel())
        .map(|i| {
            let mut m = unravel(i, &index.shape);
            m[dim] = index.data[i] as usize;
            a.at(&m)
        })
        .collect();
    RefArray::new(index.shape.clone(), data)
}

/// `out = a; out[i with dim replaced by index[i]] (+)= src[i]` for every `i` of `index`.
fn ref_scatter(a: &RefArray, dim: usize, index: &RefArray, src: &RefArray, add: bool) -> RefArray {
    let mut out = a.clone();
    for i in 0..index.numel() {
        let m = unravel(i, &index.shape);
        let v = src.at(&m);
        let mut t = m;
        t[dim] = index.data[i] as usize;
        let p = flat(&a.shape, &t);
        out.data[p] = if add { out.data[p] + v } else { v };
    }
    out
}

/// Slices `index[k]` of `a` along `dim`, for each `k`.
fn ref_index_select(a: &RefArray, dim: usize, index: &[f64]) -> RefArray {
    let mut shape = a.shape.clone();
    shape[dim] = index.len();
    ref_pick(a, &shape, |m| {
        let mut s = m.to_vec();
        s[dim] = index[m[dim]] as usize;
        s
    })
}

/// `out = a; out[.., index[k], ..] += alpha * src[.., k, ..]`.
fn ref_index_add(a: &RefArray, dim: usize, index: &[f64], src: &RefArray, alpha: f64) -> RefArray {
    let mut out = a.clone();
    for i in 0..src.numel() {
        let mut m = unravel(i, &src.shape);
        m[dim] = index[m[dim]] as usize;
        let p = flat(&a.shape, &m);
        out.data[p] += alpha * src.data[i];
    }
    out
}

fn ref_masked_select(a: &RefArray, mask: &RefArray) -> RefArray {
    let shape = crate::refs::broadcast(&a.shape, &mask.shape);
    let n: usize = shape.iter().product();
    let data: Vec<f64> = (0..n)
        .map(|i| unravel(i, &shape))
        .filter(|m| mask.at_broadcast(m) != 0.0)
        .map(|m| a.at_broadcast(&m))
        .collect();
    RefArray::new(vec![data.len()], data)
}

fn ref_cat(parts: &[RefArray], dim: usize) -> RefArray {
    let parts: Vec<&RefArray> = parts.iter().filter(|p| p.shape != [0]).collect();
    let mut shape = parts[0].shape.clone();
    shape[dim] = parts.iter().map(|p| p.shape[dim]).sum();
    let n: usize = shape.iter().product();
    let data = (0..n)
        .map(|i| {
            let mut m = unravel(i, &shape);
            let mut k = 0;
            while m[dim] >= parts[k].shape[dim] {
                m[dim] -= parts[k].shape[dim];
                k += 1;
            }
            parts[k].at(&m)
        })
        .collect();
    RefArray::new(shape, data)
}

fn ref_narrow(a: &RefArray, dim: usize, start: usize, len: usize) -> RefArray {
    let mut shape = a.shape.clone();
    shape[dim] = len;
    ref_pick(a, &shape, |m| {
        let mut s = m.to_vec();
        s[dim] += start;
        s
    })
}

fn ref_unsqueeze(a: &RefArray, dim: usize) -> RefArray {
    let mut shape = a.shape.clone();
    shape.insert(dim, 1);
    RefArray::new(shape, a.data.clone())
}

fn ref_repeat(a: &RefArray, reps: &[usize]) -> RefArray {
    let extra = reps.len() - a.shape.len();
    let base: Vec<usize> = (0..reps.len()).map(|i| if i < extra { 1 } else { a.shape[i - extra] }).collect();
    let shape: Vec<usize> = reps.iter().zip(&base).map(|(r, b)| r * b).collect();
    ref_pick(a, &shape, |m| m[extra..].iter().zip(&base[extra..]).map(|(i, b)| i % b).collect())
}

fn ref_flip(a: &RefArray, dims: &[usize]) -> RefArray {
    ref_pick(a, &a.shape.clone(), |m| {
        let mut s = m.to_vec();
        for &d in dims {
            s[d] = a.shape[d] - 1 - m[d];
        }
        s
    })
}

fn ref_roll(a: &RefArray, shifts: &[i64], dims: &[usize]) -> RefArray {
    ref_pick(a, &a.shape.clone(), |m| {
        let mut s = m.to_vec();
        for (&k, &d) in shifts.iter().zip(dims) {
            let n = a.shape[d] as i64;
            s[d] = (s[d] as i64 - k).rem_euclid(n) as usize;
        }
        s
    })
}

fn ref_tri(a: &RefArray, diagonal: i64, lower: bool) -> RefArray {
    let r = a.shape.len();
    let mut out = a.clone();
    for i in 0..a.numel() {
        let m = unravel(i, &a.shape);
        let off = m[r - 1] as i64 - m[r - 2] as i64;
        let keep = if lower { off <= diagonal } else { off >= diagonal };
        if !keep {
            out.data[i] = 0.0;
        }
    }
    out
}

fn ref_one_hot(a: &RefArray, classes: usize) -> RefArray {
    let mut shape = a.shape.clone();
    shape.push(classes);
    let mut data = vec![0.0; a.numel() * classes];
    for (i, &v) in a.data.iter().enumerate() {
        data[i * classes + v as usize] = 1.0;
    }
    RefArray::new(shape, data)
}

/// Ascending order with NaN above everything.
fn nan_last(x: f64, y: f64) -> Ordering {
    match (x.is_nan(), y.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
    }
}

/// Stable sort of each line along `dim`, keeping the first `k` entries:
/// `(values, indices)`.
fn ref_sort(a: &RefArray, dim: usize, descending: bool, k: usize) -> (RefArray, RefArray) {
    let n = a.shape[dim];
    let mut shape = a.shape.clone();
    shape[dim] = k;
    let total: usize = shape.iter().product();
    let mut vals = vec![0.0; total];
    let mut idx = vec![0.0; total];
    // One line per position of the other dims.
    let mut line_shape = a.shape.clone();
    line_shape[dim] = 1;
    let lines: usize = line_shape.iter().product();
    for l in 0..lines {
        let base = unravel(l, &line_shape);
        let mut line: Vec<(usize, f64)> = (0..n)
            .map(|j| {
                let mut m = base.clone();
                m[dim] = j;
                (j, a.at(&m))
            })
            .collect();
        // `sort_by` is stable; a reversed comparator keeps ties in input order.
        if descending {
            line.sort_by(|p, q| nan_last(q.1, p.1));
        } else {
            line.sort_by(|p, q| nan_last(p.1, q.1));
        }
        for (j, &(o, v)) in line.iter().take(k).enumerate() {
            let mut m = base.clone();
            m[dim] = j;
            let p = flat(&shape, &m);
            vals[p] = v;
            idx[p] = o as f64;
        }
    }
    (RefArray::new(shape.clone(), vals), RefArray::new(shape, idx))
}

// ---------------------------------------------------------------- helpers

fn x(seed: u64, shape: &[usize]) -> Tensor {
    rand_t(seed, shape, -3.0, 3.0)
}

/// An I64 index tensor.
fn ix(v: &[i64], shape: &[usize]) -> Tensor {
    Tensor::from_vec(v.to_vec(), shape.to_vec()).expect("index data matches its shape")
}

/// A Bool mask.
fn mask(v: &[bool], shape: &[usize]) -> Tensor {
    Tensor::from_vec(v.to_vec(), shape.to_vec()).expect("mask data matches its shape")
}

fn is_dim(e: &Error) -> bool {
    matches!(e, Error::DimOutOfRange { .. })
}
fn is_index(e: &Error) -> bool {
    matches!(e, Error::IndexOutOfRange { .. })
}
fn is_arg(e: &Error) -> bool {
    matches!(e, Error::InvalidArgument { .. })
}
fn is_shape(e: &Error) -> bool {
    matches!(e, Error::ShapeMismatch { .. })
}
fn is_dtype(e: &Error) -> bool {
    matches!(e, Error::DTypeMismatch { .. })
}

/// A sample of one data input and one index input (the index keeps its dtype).
fn s_di(
    desc: &str,
    t: Tensor,
    index: Tensor,
    op: Run,
    r: impl Fn(&RefArray, &RefArray) -> RefArray + Send + Sync + 'static,
) -> Sample {
    Sample::run(desc, vec![t, index], op, move |a| vec![r(&a[0], &a[1])]).with_cast(vec![true, false])
}

/// A sample of `(self, index, src)` with `self` and `src` cast.
fn s_dis(
    desc: &str,
    t: Tensor,
    index: Tensor,
    src: Tensor,
    op: Run,
    r: impl Fn(&RefArray, &RefArray, &RefArray) -> RefArray + Send + Sync + 'static,
) -> Sample {
    Sample::run(desc, vec![t, index, src], op, move |a| vec![r(&a[0], &a[1], &a[2])]).with_cast(vec![true, false, true])
}

/// A sample of one data input.
fn s1(desc: &str, t: Tensor, op: Run, r: impl Fn(&RefArray) -> RefArray + Send + Sync + 'static) -> Sample {
    Sample::run(desc, vec![t], op, move |a| vec![r(&a[0])])
}

/// A sample of one data input and several outputs.
fn s1n(desc: &str, t: Tensor, op: Run, r: impl Fn(&RefArray) -> Vec<RefArray> + Send + Sync + 'static) -> Sample {
    Sample::run(desc, vec![t], op, move |a| r(&a[0]))
}

/// A sample over a list of data inputs.
fn sn(desc: &str, ts: Vec<Tensor>, op: Run, r: impl Fn(&[RefArray]) -> RefArray + Send + Sync + 'static) -> Sample {
    Sample::run(desc, ts, op, move |a| vec![r(a)])
}

/// `|t, i| ...`: a data input and a plain index tensor, one output; written once for
/// `Tensor` and `Var`.
macro_rules! di {
    (|$t:ident, $i:ident| $body:expr) => {
        Run::Both(call!(|x| {
            let ($t, $i) = (&x[0], x[1].tensor());
            Ok(vec![$body?])
        }))
    };
}

/// `|t, i, s|`: self, a plain index tensor and a source.
macro_rules! dis {
    (|$t:ident, $i:ident, $s:ident| $body:expr) => {
        Run::Both(call!(|x| {
            let ($t, $i, $s) = (&x[0], x[1].tensor(), &x[2]);
            Ok(vec![$body?])
        }))
    };
}

/// `|t| ...` of one input, one output.
macro_rules! un {
    (|$t:ident| $body:expr) => {
        Run::Both(call1!(|$t| $body))
    };
}

/// `|t| ...` of one input returning `Result<Vec<_>>`.
macro_rules! many {
    ($([$($cap:ident),*])? |$t:ident| $body:expr) => {
        Run::Both(call!($([$($cap),*])? |x| {
            let $t = &x[0];
            $body
        }))
    };
}

/// `|ts| ...` over all inputs, one output.
macro_rules! list {
    (|$t:ident| $body:expr) => {
        Run::Both(call!(|x| {
            let $t = x;
            Ok(vec![$body?])
        }))
    };
}

/// An op without a gradient on `(self, index, src)` tensors.
fn t_dis(f: impl Fn(&Tensor, &Tensor, &Tensor) -> Result<Tensor> + Send + Sync + 'static) -> Run {
    Run::Tensor(Arc::new(move |x| Ok(vec![f(&x[0], &x[1], &x[2])?])))
}

/// An op without a gradient on one tensor.
fn t_un(f: impl Fn(&Tensor) -> Result<Tensor> + Send + Sync + 'static) -> Run {
    Run::Tensor(Arc::new(move |x| Ok(vec![f(&x[0])?])))
}

/// Both results of a two-output op (the second may be a plain index tensor).
fn two<T, U: Into<T>>(t: Result<(T, U)>) -> Result<Vec<T>> {
    let (a, b) = t?;
    Ok(vec![a, b.into()])
}

/// Runs an in-place op on a strided copy of `t` (so the write goes through strides)
/// and returns the written tensor.
fn in_place(t: &Tensor, f: impl FnOnce(&Tensor) -> Result<()>) -> Result<Tensor> {
    let dst = non_contiguous(t)?;
    f(&dst)?;
    Ok(dst)
}

// ---------------------------------------------------------------- gather / scatter

fn gather_ops() -> Vec<OpInfo> {
    let gather = OpInfo::new("gather", ALL, true)
        .sample(s_di(
            "[3,4] dim 1, index [3,2]",
            x(1, &[3, 4]),
            ix(&[0, 3, 1, 1, 2, 0], &[3, 2]),
            di!(|t, i| t.gather(1, i)),
            |a, i| ref_gather(a, 1, i),
        ))
        .sample(s_di(
            "[3,4] dim -2, index [2,4] smaller than input",
            x(2, &[3, 4]),
            ix(&[2, 0, 1, 2, 0, 0, 2, 1], &[2, 4]),
            di!(|t, i| t.gather(-2, i)),
            |a, i| ref_gather(a, 0, i),
        ))
        .sample(s_di(
            "[2,3,4] dim 2, index [2,2,5] repeats indices",
            x(3, &[2, 3, 4]),
            int_t(4, &[2, 2, 5], 0, 3).to_dtype(DType::I64).expect("cast"),
            di!(|t, i| t.gather(2, i)),
            |a, i| ref_gather(a, 2, i),
        ))
        .sample(s_di(
            "transposed input [4,3].t()",
            x(5, &[4, 3]),
            ix(&[3, 0, 1, 2, 2, 2], &[3, 2]),
            di!(|t, i| t.t()?.gather(1, i)),
            |a, i| {
                let at = ref_pick(a, &[3, 4], |m| vec![m[1], m[0]]);
                ref_gather(&at, 1, i)
            },
        ))
        .sample(s_di(
            "expanded index [1,3] -> [4,3]",
            x(6, &[4, 3]),
            ix(&[2, 0, 1], &[1, 3]),
            di!(|t, i| t.gather(0, &i.expand(&[4, 3])?)),
            |a, i| {
                let ie = RefArray::new(vec![4, 3], (0..12).map(|k| i.data[k % 3]).collect());
                ref_gather(a, 0, &ie)
            },
        ))
        .sample(s_di("0-dim input and index", x(7, &[]), ix(&[0], &[]), di!(|t, i| t.gather(0, i)), |a, _| a.clone()))
        .sample(s_di("zero-size index [3,0]", x(8, &[3, 4]), ix(&[], &[3, 0]), di!(|t, i| t.gather(1, i)), |_, _| {
            RefArray::new(vec![3, 0], vec![])
        }))
        .error(ErrorCase::new("index out of range", || x(1, &[3, 4]).gather(1, &ix(&[4], &[1, 1])), is_index))
        .error(ErrorCase::new("negative index", || x(1, &[3, 4]).gather(1, &ix(&[-1], &[1, 1])), is_index))
        .error(ErrorCase::new(
            "F32 index",
            || x(1, &[3, 4]).gather(1, &Tensor::zeros([1, 1], DType::F32, &Default::default())?),
            is_dtype,
        ))
        .error(ErrorCase::new(
            "I32 index",
            || x(1, &[3, 4]).gather(1, &ix(&[0], &[1, 1]).to_dtype(DType::I32)?),
            is_dtype,
        ))
        .error(ErrorCase::new("dim out of range", || x(1, &[3, 4]).gather(2, &ix(&[0], &[1, 1])), is_dim))
        .error(ErrorCase::new("index rank differs", || x(1, &[3, 4]).gather(1, &ix(&[0], &[1])), is_shape))
        .error(ErrorCase::new("index larger outside dim", || x(1, &[3, 4]).gather(1, &ix(&[0; 4], &[4, 1])), is_shape));

    let idx_2x4 = || ix(&[1, 0, 2, 2, 0, 2, 1, 0], &[2, 4]);
    let ref_sc = |add: bool| move |a: &RefArray, i: &RefArray, s: &RefArray| ref_scatter(a, 0, i, s, add);
    let scatter = OpInfo::new("scatter", ALL, true)
        .sample(s_dis(
            "[3,4] dim 0, distinct rows per column",
            x(10, &[3, 4]),
            idx_2x4(),
            x(11, &[2, 4]),
            dis!(|t, i, s| t.scatter(0, i, s)),
            ref_sc(false),
        ))
        .sample(s_dis(
            "[3,4] dim -1, src larger than index",
            x(12, &[3, 4]),
            ix(&[3, 0, 1, 2], &[2, 2]),
            x(13, &[3, 5]),
            dis!(|t, i, s| t.scatter(-1, i, s)),
            |a, i, s| ref_scatter(a, 1, i, s, false),
        ))
        .sample(s_dis(
            "transposed self",
            x(14, &[4, 3]),
            ix(&[2, 0, 1], &[1, 3]),
            x(15, &[1, 3]),
            dis!(|t, i, s| t.t()?.scatter(1, i, s)),
            |a, i, s| ref_scatter(&ref_pick(a, &[3, 4], |m| vec![m[1], m[0]]), 1, i, s, false),
        ))
        .sample(s_dis("0-dim", x(16, &[]), ix(&[0], &[]), x(17, &[]), dis!(|t, i, s| t.scatter(0, i, s)), |_, _, s| {
            s.clone()
        }))
        .sample(s_dis(
            "zero-size index",
            x(18, &[3, 4]),
            ix(&[], &[0, 4]),
            x(19, &[0, 4]),
            dis!(|t, i, s| t.scatter(0, i, s)),
            |a, _, _| a.clone(),
        ))
        .error(ErrorCase::new("index out of range", || x(1, &[3]).scatter(0, &ix(&[3], &[1]), &x(2, &[1])), is_index))
        .error(ErrorCase::new(
            "src dtype differs",
            || x(1, &[3]).scatter(0, &ix(&[0], &[1]), &x(2, &[1]).to_dtype(DType::F32)?),
            is_dtype,
        ))
        .error(ErrorCase::new("F64 index", || x(1, &[3]).scatter(0, &x(3, &[1]), &x(2, &[1])), is_dtype))
        .error(ErrorCase::new(
            "index larger than src",
            || x(1, &[3]).scatter(0, &ix(&[0, 1], &[2]), &x(2, &[1])),
            is_shape,
        ))
        .error(ErrorCase::new("dim out of range", || x(1, &[3]).scatter(1, &ix(&[0], &[1]), &x(2, &[1])), is_dim));

    let scatter_ = OpInfo::new("scatter_", ALL, false)
        .sample(s_dis(
            "in place into a strided [3,4]",
            x(20, &[3, 4]),
            idx_2x4(),
            x(21, &[2, 4]),
            t_dis(|t, i, s| in_place(t, |d| d.scatter_(0, i, s))),
            ref_sc(false),
        ))
        .error(ErrorCase::new(
            "into an expanded view",
            || x(1, &[1, 3]).expand(&[2, 3])?.scatter_(0, &ix(&[0], &[1, 1]), &x(2, &[1, 1])),
            is_arg,
        ));

    let dup_idx = || ix(&[0, 2, 0, 2, 2, 2, 0, 1, 0, 0, 1, 1], &[3, 4]);
    let scatter_add = OpInfo::new("scatter_add", NUMERIC, true)
        .sample(s_dis(
            "[3,4] dim 0 with duplicate indices",
            int_t(30, &[3, 4], 0, 5),
            dup_idx(),
            int_t(31, &[3, 4], 0, 5),
            dis!(|t, i, s| t.scatter_add(0, i, s)),
            ref_sc(true),
        ))
        .sample(s_dis(
            "[2,5] dim -1 all into one slot",
            int_t(32, &[2, 5], 0, 5),
            ix(&[4; 6], &[2, 3]),
            int_t(33, &[2, 3], 0, 5),
            dis!(|t, i, s| t.scatter_add(-1, i, s)),
            |a, i, s| ref_scatter(a, 1, i, s, true),
        ))
        .sample(s_dis(
            "expanded src",
            int_t(34, &[3, 4], 0, 5),
            dup_idx(),
            int_t(35, &[1, 4], 0, 5),
            dis!(|t, i, s| t.scatter_add(0, i, &s.expand(&[3, 4])?)),
            |a, i, s| {
                let se = RefArray::new(vec![3, 4], (0..12).map(|k| s.data[k % 4]).collect());
                ref_scatter(a, 0, i, &se, true)
            },
        ))
        .sample(s_dis(
            "zero-size self dim with empty index",
            int_t(36, &[0, 3], 0, 5),
            ix(&[], &[0, 3]),
            int_t(37, &[0, 3], 0, 5),
            dis!(|t, i, s| t.scatter_add(0, i, s)),
            |a, _, _| a.clone(),
        ))
        .error(ErrorCase::new(
            "index out of range",
            || x(1, &[3, 2]).scatter_add(0, &ix(&[0, 5], &[1, 2]), &x(2, &[1, 2])),
            is_index,
        ));

    let scatter_add_ = OpInfo::new("scatter_add_", NUMERIC, false)
        .sample(s_dis(
            "in place with duplicates",
            int_t(38, &[3, 4], 0, 5),
            dup_idx(),
            int_t(39, &[3, 4], 0, 5),
            t_dis(|t, i, s| in_place(t, |d| d.scatter_add_(0, i, s))),
            ref_sc(true),
        ))
        .sample(s_dis(
            "src aliasing self",
            int_t(40, &[3, 4], 0, 5),
            dup_idx(),
            int_t(41, &[3, 4], 0, 5),
            t_dis(|t, i, _| in_place(t, |d| d.scatter_add_(0, i, d))),
            |a, i, _| ref_scatter(a, 0, i, a, true),
        ))
        .error(ErrorCase::new(
            "negative index",
            || x(1, &[3, 2]).scatter_add_(0, &ix(&[-1, 0], &[1, 2]), &x(2, &[1, 2])),
            is_index,
        ));

    vec![gather, scatter, scatter_, scatter_add, scatter_add_]
}

fn index_ops() -> Vec<OpInfo> {
    let index_select = OpInfo::new("index_select", ALL, true)
        .sample(s_di(
            "[4,3] dim 0 with repeats",
            x(50, &[4, 3]),
            ix(&[3, 0, 3, 1], &[4]),
            di!(|t, i| t.index_select(0, i)),
            |a, i| ref_index_select(a, 0, &i.data),
        ))
        .sample(s_di(
            "[2,3,4] dim -1",
            x(51, &[2, 3, 4]),
            ix(&[1, 3], &[2]),
            di!(|t, i| t.index_select(-1, i)),
            |a, i| ref_index_select(a, 2, &i.data),
        ))
        .sample(s_di(
            "transposed input, 0-dim index",
            x(52, &[4, 3]),
            ix(&[2], &[]),
            di!(|t, i| t.t()?.index_select(1, i)),
            |a, i| ref_index_select(&ref_pick(a, &[3, 4], |m| vec![m[1], m[0]]), 1, &i.data),
        ))
        .sample(s_di(
            "I32 index",
            x(53, &[5]),
            ix(&[4, 0], &[2]),
            di!(|t, i| t.index_select(0, &i.to_dtype(DType::I32)?)),
            |a, i| ref_index_select(a, 0, &i.data),
        ))
        .sample(s_di("empty index", x(54, &[3, 2]), ix(&[], &[0]), di!(|t, i| t.index_select(0, i)), |_, _| {
            RefArray::new(vec![0, 2], vec![])
        }))
        .sample(s_di("0-dim input", x(55, &[]), ix(&[0], &[1]), di!(|t, i| t.index_select(0, i)), |a, _| a.clone()))
        .error(ErrorCase::new("index out of range", || x(1, &[3, 2]).index_select(0, &ix(&[3], &[1])), is_index))
        .error(ErrorCase::new("negative index", || x(1, &[3, 2]).index_select(1, &ix(&[-1], &[1])), is_index))
        .error(ErrorCase::new("2-D index", || x(1, &[3, 2]).index_select(0, &ix(&[0, 1], &[1, 2])), is_shape))
        .error(ErrorCase::new("F64 index", || x(1, &[3, 2]).index_select(0, &x(2, &[1])), is_dtype))
        .error(ErrorCase::new("dim out of range", || x(1, &[3, 2]).index_select(-3, &ix(&[0], &[1])), is_dim));

    let index_add = OpInfo::new("index_add", NUMERIC, true)
        .sample(s_dis(
            "[4,3] dim 0, duplicates, alpha 1",
            int_t(60, &[4, 3], 0, 5),
            ix(&[3, 0, 3, 1, 3], &[5]),
            int_t(61, &[5, 3], 0, 5),
            dis!(|t, i, s| t.index_add(0, i, s, 1i64)),
            |a, i, s| ref_index_add(a, 0, &i.data, s, 1.0),
        ))
        .sample(s_dis(
            "[2,4] dim -1, alpha 2",
            int_t(62, &[2, 4], 0, 5),
            ix(&[2, 2, 0], &[3]),
            int_t(63, &[2, 3], 0, 5),
            dis!(|t, i, s| t.index_add(-1, i, s, 2i64)),
            |a, i, s| ref_index_add(a, 1, &i.data, s, 2.0),
        ))
        .sample(s_dis(
            "transposed source",
            int_t(64, &[3, 2], 0, 5),
            ix(&[1, 0, 1], &[3]),
            int_t(65, &[2, 3], 0, 5),
            dis!(|t, i, s| t.index_add(0, i, &s.t()?, 1i64)),
            |a, i, s| ref_index_add(a, 0, &i.data, &ref_pick(s, &[3, 2], |m| vec![m[1], m[0]]), 1.0),
        ))
        .sample(s_dis(
            "empty index",
            int_t(66, &[3, 2], 0, 5),
            ix(&[], &[0]),
            int_t(67, &[0, 2], 0, 5),
            dis!(|t, i, s| t.index_add(0, i, s, 1i64)),
            |a, _, _| a.clone(),
        ))
        .error(ErrorCase::new(
            "index out of range",
            || x(1, &[3, 2]).index_add(0, &ix(&[3], &[1]), &x(2, &[1, 2]), 1.0),
            is_index,
        ))
        .error(ErrorCase::new(
            "source shape",
            || x(1, &[3, 2]).index_add(0, &ix(&[0], &[1]), &x(2, &[1, 3]), 1.0),
            is_shape,
        ))
        .error(ErrorCase::new(
            "source dtype",
            || x(1, &[3, 2]).index_add(0, &ix(&[0], &[1]), &x(2, &[1, 2]).to_dtype(DType::F32)?, 1.0),
            is_dtype,
        ));

    let index_add_ = OpInfo::new("index_add_", NUMERIC, false)
        .sample(s_dis(
            "in place into strided [4,3]",
            int_t(68, &[4, 3], 0, 5),
            ix(&[3, 0, 3], &[3]),
            int_t(69, &[3, 3], 0, 5),
            t_dis(|t, i, s| in_place(t, |d| d.index_add_(0, i, s, 1i64))),
            |a, i, s| ref_index_add(a, 0, &i.data, s, 1.0),
        ))
        .error(ErrorCase::new(
            "2-D index",
            || x(1, &[3, 2]).index_add_(0, &ix(&[0], &[1, 1]), &x(2, &[1, 2]), 1.0),
            is_shape,
        ));

    let masked_select = OpInfo::new("masked_select", ALL, true)
        .sample(s_di(
            "[2,3] same-shape mask",
            x(70, &[2, 3]),
            mask(&[true, false, true, false, false, true], &[2, 3]),
            di!(|t, m| t.masked_select(m)),
            ref_masked_select,
        ))
        .sample(s_di(
            "broadcast mask [3] over [2,3]",
            x(71, &[2, 3]),
            mask(&[false, true, true], &[3]),
            di!(|t, m| t.masked_select(m)),
            ref_masked_select,
        ))
        .sample(s_di(
            "input [3,1] broadcast with mask [2,1,4]",
            x(72, &[3, 1]),
            mask(&[true, false, false, true, true, true, false, false], &[2, 1, 4]),
            di!(|t, m| t.masked_select(m)),
            ref_masked_select,
        ))
        .sample(s_di(
            "all false",
            x(73, &[4]),
            mask(&[false; 4], &[4]),
            di!(|t, m| t.masked_select(m)),
            ref_masked_select,
        ))
        .sample(s_di("0-dim", x(74, &[]), mask(&[true], &[]), di!(|t, m| t.masked_select(m)), ref_masked_select))
        .sample(s_di(
            "zero-size",
            x(75, &[0, 2]),
            mask(&[], &[0, 2]),
            di!(|t, m| t.masked_select(m)),
            ref_masked_select,
        ))
        .error(ErrorCase::new("I64 mask", || x(1, &[3]).masked_select(&ix(&[1, 0, 1], &[3])), is_dtype))
        .error(ErrorCase::new("mask shape", || x(1, &[3]).masked_select(&mask(&[true, false], &[2])), is_shape));

    vec![index_select, index_add, index_add_, masked_select]
}

// ---------------------------------------------------------------- joining and splitting

fn join_ops() -> Vec<OpInfo> {
    let cat = OpInfo::new("cat", ALL, true)
        .sample(sn(
            "three along dim 0",
            vec![x(80, &[2, 3]), x(81, &[1, 3]), x(82, &[3, 3])],
            list!(|t| T::cat(t, 0)),
            |a| ref_cat(a, 0),
        ))
        .sample(sn(
            "dim -1 with a transposed input",
            vec![x(83, &[2, 3]), x(84, &[4, 2])],
            list!(|t| T::cat(&[t[0].clone(), t[1].t()?], -1)),
            |a| ref_cat(&[a[0].clone(), ref_pick(&a[1], &[2, 4], |m| vec![m[1], m[0]])], 1),
        ))
        .sample(sn(
            "middle dim of 3-D, with a zero-size part",
            vec![x(85, &[2, 1, 2]), x(86, &[2, 0, 2]), x(87, &[2, 2, 2])],
            list!(|t| T::cat(&[&t[0], &t[1], &t[2]], 1)),
            |a| ref_cat(a, 1),
        ))
        .sample(sn("legacy empty [0] skipped", vec![x(88, &[2, 2]), x(89, &[0])], list!(|t| T::cat(t, 1)), |a| {
            ref_cat(a, 1)
        }))
        .sample(sn("single tensor", vec![x(90, &[3])], list!(|t| T::cat(t, 0)), |a| ref_cat(a, 0)))
        .sample(sn(
            "empty views at an offset past their storage",
            vec![x(94, &[0, 3, 2])],
            list!(|t| {
                let v = t[0].transpose(0, 1)?;
                T::cat(&[v.select(0, 2)?, v.select(0, 1)?], 1)
            }),
            |_| RefArray::new(vec![0, 4], vec![]),
        ))
        .sample(sn(
            "expanded input",
            vec![x(91, &[1, 3]), x(92, &[1, 3])],
            list!(|t| T::cat(&[t[0].expand(&[2, 3])?, t[1].clone()], 0)),
            |a| {
                let e = RefArray::new(vec![2, 3], (0..6).map(|k| a[0].data[k % 3]).collect());
                ref_cat(&[e, a[1].clone()], 0)
            },
        ))
        .sample(
            sn(
                "promotes with an I64 input",
                vec![x(93, &[2]), ix(&[7, -2], &[2])],
                list!(|t| {
                    let c = T::cat(t, 0)?;
                    let want = DType::promote(t[0].dtype(), DType::I64);
                    if c.dtype() != want {
                        return Err(Error::DTypeMismatch { op: "cat", expected: want, got: c.dtype() });
                    }
                    Ok(c)
                }),
                |a| ref_cat(a, 0),
            )
            .with_cast(vec![true, false]),
        )
        .error(ErrorCase::new("mismatched shapes", || Tensor::cat(&[x(1, &[2, 3]), x(2, &[2, 4])], 0), is_shape))
        .error(ErrorCase::new("mismatched ranks", || Tensor::cat(&[x(1, &[2, 3]), x(2, &[3])], 0), is_shape))
        .error(ErrorCase::new("empty list", || Tensor::cat(&[] as &[Tensor], 0), is_arg))
        .error(ErrorCase::new("0-dim input", || Tensor::cat(&[x(1, &[]), x(2, &[])], 0), is_arg))
        .error(ErrorCase::new("dim out of range", || Tensor::cat(&[x(1, &[2]), x(2, &[2])], 1), is_dim));

    let stack = OpInfo::new("stack", ALL, true)
        .sample(sn("two [2,3] at dim 0", vec![x(100, &[2, 3]), x(101, &[2, 3])], list!(|t| T::stack(t, 0)), |a| {
            ref_cat(&[ref_unsqueeze(&a[0], 0), ref_unsqueeze(&a[1], 0)], 0)
        }))
        .sample(sn(
            "three [2,3] at dim -1 (new last)",
            vec![x(102, &[2, 3]), x(103, &[2, 3]), x(104, &[2, 3])],
            list!(|t| T::stack(t, -1)),
            |a| ref_cat(&a.iter().map(|r| ref_unsqueeze(r, 2)).collect::<Vec<_>>(), 2),
        ))
        .sample(sn("0-dim inputs", vec![x(105, &[]), x(106, &[])], list!(|t| T::stack(t, 0)), |a| {
            RefArray::new(vec![2], vec![a[0].data[0], a[1].data[0]])
        }))
        .sample(sn(
            "zero-size inputs at dim 1",
            vec![x(107, &[0, 2]), x(108, &[0, 2])],
            list!(|t| T::stack(t, 1)),
            |_| RefArray::new(vec![0, 2, 2], vec![]),
        ))
        .error(ErrorCase::new("shapes differ", || Tensor::stack(&[x(1, &[2, 3]), x(2, &[3, 2])], 0), is_shape))
        .error(ErrorCase::new("dim out of range", || Tensor::stack(&[x(1, &[2]), x(2, &[2])], 2), is_dim))
        .error(ErrorCase::new("empty list", || Tensor::stack(&[] as &[&Tensor], 0), is_arg));

    let split = OpInfo::new("split", ALL, true)
        .sample(s1n("[5,2] by 2 along dim 0", x(110, &[5, 2]), many!(|t| t.split(2, 0)), |a| {
            vec![ref_narrow(a, 0, 0, 2), ref_narrow(a, 0, 2, 2), ref_narrow(a, 0, 4, 1)]
        }))
        .sample(s1n("[2,6] by 3 along dim -1", x(111, &[2, 6]), many!(|t| t.split(3, -1)), |a| {
            vec![ref_narrow(a, 1, 0, 3), ref_narrow(a, 1, 3, 3)]
        }))
        .sample(s1n("size larger than dim", x(112, &[3]), many!(|t| t.split(10, 0)), |a| vec![a.clone()]))
        .sample(s1n("zero-size dim, size 0", x(113, &[0, 2]), many!(|t| t.split(0, 0)), |a| vec![a.clone()]))
        .error(ErrorCase::new("split size 0", || x(1, &[3]).split(0, 0), is_arg))
        .error(ErrorCase::new("0-dim", || x(1, &[]).split(1, 0), is_dim));

    let split_with_sizes = OpInfo::new("split_with_sizes", ALL, true)
        .sample(s1n(
            "[2,6] into 1,0,5 along dim 1",
            x(115, &[2, 6]),
            many!(|t| t.split_with_sizes(&[1, 0, 5], 1)),
            |a| vec![ref_narrow(a, 1, 0, 1), ref_narrow(a, 1, 1, 0), ref_narrow(a, 1, 1, 5)],
        ))
        .sample(s1n(
            "transposed [3,4].t() into 3,1 along dim 0",
            x(116, &[3, 4]),
            many!(|t| t.t()?.split_with_sizes(&[3, 1], 0)),
            |a| {
                let at = ref_pick(a, &[4, 3], |m| vec![m[1], m[0]]);
                vec![ref_narrow(&at, 0, 0, 3), ref_narrow(&at, 0, 3, 1)]
            },
        ))
        .error(ErrorCase::new("sizes do not add up", || x(1, &[4]).split_with_sizes(&[1, 2], 0), is_arg));

    let chunk = OpInfo::new("chunk", ALL, true)
        .sample(s1n("6 into 4 chunks gives 3 of 2", x(120, &[6]), many!(|t| t.chunk(4, 0)), |a| {
            (0..3).map(|i| ref_narrow(a, 0, 2 * i, 2)).collect()
        }))
        .sample(s1n("[2,5] into 2 along dim -1", x(121, &[2, 5]), many!(|t| t.chunk(2, -1)), |a| {
            vec![ref_narrow(a, 1, 0, 3), ref_narrow(a, 1, 3, 2)]
        }))
        .sample(s1n("more chunks than entries", x(122, &[2]), many!(|t| t.chunk(5, 0)), |a| {
            vec![ref_narrow(a, 0, 0, 1), ref_narrow(a, 0, 1, 1)]
        }))
        .sample(s1n("zero-size dim gives empty chunks", x(123, &[0, 3]), many!(|t| t.chunk(2, 0)), |a| {
            vec![a.clone(), a.clone()]
        }))
        .error(ErrorCase::new("0 chunks", || x(1, &[3]).chunk(0, 0), is_arg))
        .error(ErrorCase::new("dim out of range", || x(1, &[3]).chunk(2, 1), is_dim));

    let unbind = OpInfo::new("unbind", ALL, true)
        .sample(s1n("[3,2] along dim 0", x(125, &[3, 2]), many!(|t| t.unbind(0)), |a| {
            (0..3).map(|i| RefArray::new(vec![2], a.data[2 * i..2 * i + 2].to_vec())).collect()
        }))
        .sample(s1n("[2,3] along dim -1", x(126, &[2, 3]), many!(|t| t.unbind(-1)), |a| {
            (0..3).map(|j| RefArray::new(vec![2], vec![a.data[j], a.data[3 + j]])).collect()
        }))
        .error(ErrorCase::new("dim out of range", || x(1, &[3]).unbind(1), is_dim));

    vec![cat, stack, split, split_with_sizes, chunk, unbind]
}

// ---------------------------------------------------------------- rearranging

fn rearrange_ops() -> Vec<OpInfo> {
    let repeat = OpInfo::new("repeat", ALL, true)
        .sample(s1("[2,3] by [2,1]", x(130, &[2, 3]), un!(|t| t.repeat(&[2, 1])), |a| ref_repeat(a, &[2, 1])))
        .sample(s1("[3] by [2,2] adds a dim", x(131, &[3]), un!(|t| t.repeat(&[2, 2])), |a| ref_repeat(a, &[2, 2])))
        .sample(s1("0-dim by [3]", x(132, &[]), un!(|t| t.repeat(&[3])), |a| ref_repeat(a, &[3])))
        .sample(s1("zero repeat", x(133, &[2]), un!(|t| t.repeat(&[0, 2])), |a| ref_repeat(a, &[0, 2])))
        .sample(s1("transposed [3,2].t() by [1,2]", x(134, &[3, 2]), un!(|t| t.t()?.repeat(&[1, 2])), |a| {
            ref_repeat(&ref_pick(a, &[2, 3], |m| vec![m[1], m[0]]), &[1, 2])
        }))
        .sample(s1("all ones copies", x(135, &[2, 2]), un!(|t| t.repeat(&[1, 1])), |a| a.clone()))
        .error(ErrorCase::new("fewer repeats than dims", || x(1, &[2, 2]).repeat(&[2]), is_arg));

    let flip = OpInfo::new("flip", ALL, true)
        .sample(s1("[3,4] dim 0", x(140, &[3, 4]), un!(|t| t.flip(&[0])), |a| ref_flip(a, &[0])))
        .sample(s1("[2,3,4] dims 0,-1", x(141, &[2, 3, 4]), un!(|t| t.flip(&[0, -1])), |a| ref_flip(a, &[0, 2])))
        .sample(s1("no dims", x(142, &[3]), un!(|t| t.flip(&[])), |a| a.clone()))
        .sample(s1("0-dim", x(143, &[]), un!(|t| t.flip(&[0])), |a| a.clone()))
        .sample(s1("zero-size", x(144, &[0, 3]), un!(|t| t.flip(&[0, 1])), |a| ref_flip(a, &[0, 1])))
        .sample(s1("expanded [1,3] -> [2,3] dim 1", x(145, &[1, 3]), un!(|t| t.expand(&[2, 3])?.flip(&[1])), |a| {
            let e = RefArray::new(vec![2, 3], (0..6).map(|k| a.data[k % 3]).collect());
            ref_flip(&e, &[1])
        }))
        .error(ErrorCase::new("repeated dim", || x(1, &[3, 2]).flip(&[0, -2]), is_arg))
        .error(ErrorCase::new("dim out of range", || x(1, &[3, 2]).flip(&[2]), is_dim));

    let roll = OpInfo::new("roll", ALL, true)
        .sample(s1("[5] by 2", x(150, &[5]), un!(|t| t.roll(&[2], &[0])), |a| ref_roll(a, &[2], &[0])))
        .sample(s1("[5] by -7", x(151, &[5]), un!(|t| t.roll(&[-7], &[0])), |a| ref_roll(a, &[-7], &[0])))
        .sample(s1("[3,4] by (1,-1) on (0,1)", x(152, &[3, 4]), un!(|t| t.roll(&[1, -1], &[0, 1])), |a| {
            ref_roll(a, &[1, -1], &[0, 1])
        }))
        .sample(s1("[3,4] flattened by 5", x(153, &[3, 4]), un!(|t| t.roll(&[5], &[])), |a| {
            let f = RefArray::new(vec![12], a.data.clone());
            RefArray::new(vec![3, 4], ref_roll(&f, &[5], &[0]).data)
        }))
        .sample(s1("shift of a full turn", x(154, &[2, 3]), un!(|t| t.roll(&[3], &[-1])), |a| a.clone()))
        .sample(s1("zero-size", x(155, &[0, 3]), un!(|t| t.roll(&[1], &[0])), |a| a.clone()))
        .error(ErrorCase::new("shifts and dims differ", || x(1, &[3, 2]).roll(&[1, 1], &[0]), is_arg))
        .error(ErrorCase::new("two shifts without dims", || x(1, &[3, 2]).roll(&[1, 1], &[]), is_arg))
        .error(ErrorCase::new("dim out of range", || x(1, &[3, 2]).roll(&[1], &[2]), is_dim));

    let tril = OpInfo::new("tril", ALL, true)
        .sample(s1("[3,4] diagonal 0", x(160, &[3, 4]), un!(|t| t.tril(0)), |a| ref_tri(a, 0, true)))
        .sample(s1("[4,3] diagonal -1", x(161, &[4, 3]), un!(|t| t.tril(-1)), |a| ref_tri(a, -1, true)))
        .sample(s1("[2,3,3] batched, diagonal 1", x(162, &[2, 3, 3]), un!(|t| t.tril(1)), |a| ref_tri(a, 1, true)))
        .sample(s1("transposed", x(163, &[4, 3]), un!(|t| t.t()?.tril(0)), |a| {
            ref_tri(&ref_pick(a, &[3, 4], |m| vec![m[1], m[0]]), 0, true)
        }))
        .sample(s1("zero-size", x(164, &[0, 3]), un!(|t| t.tril(0)), |a| a.clone()))
        .error(ErrorCase::new("1-D input", || x(1, &[3]).tril(0), is_arg));

    let triu = OpInfo::new("triu", ALL, true)
        .sample(s1("[3,4] diagonal 0", x(170, &[3, 4]), un!(|t| t.triu(0)), |a| ref_tri(a, 0, false)))
        .sample(s1("[3,4] diagonal 2", x(171, &[3, 4]), un!(|t| t.triu(2)), |a| ref_tri(a, 2, false)))
        .sample(s1("[2,2,3] batched, diagonal -5", x(172, &[2, 2, 3]), un!(|t| t.triu(-5)), |a| ref_tri(a, -5, false)))
        .sample(s1("expanded", x(173, &[1, 3]), un!(|t| t.expand(&[3, 3])?.triu(0)), |a| {
            let e = RefArray::new(vec![3, 3], (0..9).map(|k| a.data[k % 3]).collect());
            ref_tri(&e, 0, false)
        }))
        .error(ErrorCase::new("0-dim input", || x(1, &[]).triu(0), is_arg));

    let one_hot = OpInfo::new("one_hot", &[DType::I64], false)
        .sample(s1("[4] with 3 classes", ix(&[0, 2, 1, 2], &[4]), t_un(|t| t.one_hot(3)), |a| ref_one_hot(a, 3)))
        .sample(s1("[2,2] inferred classes", ix(&[1, 4, 0, 1], &[2, 2]), t_un(|t| t.one_hot(-1)), |a| {
            ref_one_hot(a, 5)
        }))
        .sample(s1("0-dim", ix(&[1], &[]), t_un(|t| t.one_hot(2)), |a| ref_one_hot(a, 2)))
        .sample(s1("zero-size", ix(&[], &[0]), t_un(|t| t.one_hot(3)), |a| ref_one_hot(a, 3)))
        .error(ErrorCase::new("value too large", || ix(&[0, 3], &[2]).one_hot(3), is_index))
        .error(ErrorCase::new("negative value", || ix(&[0, -1], &[2]).one_hot(3), is_index))
        .error(ErrorCase::new("F64 input", || x(1, &[2]).one_hot(3), is_dtype))
        .error(ErrorCase::new("infer from empty", || ix(&[], &[0]).one_hot(-1), is_arg));

    vec![repeat, flip, roll, tril, triu, one_hot]
}

// ---------------------------------------------------------------- sorting

/// Values with NaN, ties and both signs.
fn with_nan_and_ties() -> Tensor {
    let n = f64::NAN;
    Tensor::from_vec(vec![2.0, n, -1.0, 2.0, 0.5, n, -1.0, 3.0, 2.0, 0.0, -4.0, 0.5], [3, 4]).expect("12 values")
}

fn sort_ops() -> Vec<OpInfo> {
    let sort = |dim: isize, desc: bool| many!(|t| two(t.sort(dim, desc)));
    let rsort = |dim: usize, desc: bool| {
        move |a: &RefArray| {
            let (v, i) = ref_sort(a, dim, desc, a.shape[dim]);
            vec![v, i]
        }
    };
    let sort_rec = OpInfo::new("sort", NUMERIC, true)
        .sample(s1n("NaN and ties, last dim ascending", with_nan_and_ties(), sort(-1, false), rsort(1, false)))
        .sample(s1n("NaN and ties, dim 0 descending", with_nan_and_ties(), sort(0, true), rsort(0, true)))
        .sample(s1n("[2,3,5] dim 1", x(180, &[2, 3, 5]), sort(1, false), rsort(1, false)))
        .sample(s1n("small integers (many ties) descending", int_t(181, &[20], 0, 3), sort(0, true), rsort(0, true)))
        .sample(s1n("transposed", x(182, &[4, 3]), many!(|t| two(t.t()?.sort(1, false))), |a| {
            let (v, i) = ref_sort(&ref_pick(a, &[3, 4], |m| vec![m[1], m[0]]), 1, false, 4);
            vec![v, i]
        }))
        .sample(s1n("0-dim", x(183, &[]), sort(0, false), |a| vec![a.clone(), RefArray::scalar(0.0)]))
        .sample(s1n("zero-size", x(184, &[0, 3]), sort(0, false), |a| vec![a.clone(), a.clone()]))
        .error(ErrorCase::new("dim out of range", || x(1, &[3]).sort(1, false), is_dim));

    let argsort = OpInfo::new("argsort", NUMERIC, false)
        .sample(s1("NaN and ties descending", with_nan_and_ties(), t_un(|t| t.argsort(1, true)), |a| {
            ref_sort(a, 1, true, 4).1
        }))
        .sample(s1("[6] ascending", x(185, &[6]), t_un(|t| t.argsort(0, false)), |a| ref_sort(a, 0, false, 6).1))
        .error(ErrorCase::new("dim out of range", || x(1, &[3]).argsort(-2, false), is_dim));

    let topk = |k: usize, dim: isize, largest: bool| many!(|t| two(t.topk(k, dim, largest, true)));
    let rtopk = |k: usize, dim: usize, largest: bool| {
        move |a: &RefArray| {
            let (v, i) = ref_sort(a, dim, largest, k);
            vec![v, i]
        }
    };
    let topk_rec = OpInfo::new("topk", NUMERIC, true)
        .sample(s1n("k 2 largest, last dim, NaN and ties", with_nan_and_ties(), topk(2, -1, true), rtopk(2, 1, true)))
        .sample(s1n("k 2 smallest, dim 0", with_nan_and_ties(), topk(2, 0, false), rtopk(2, 0, false)))
        .sample(s1n("[2,7] k 7", x(190, &[2, 7]), topk(7, 1, true), rtopk(7, 1, true)))
        .sample(s1n("k 0", x(191, &[2, 3]), topk(0, 1, true), rtopk(0, 1, true)))
        .sample(s1n("0-dim k 1", x(192, &[]), topk(1, 0, true), |a| vec![a.clone(), RefArray::scalar(0.0)]))
        .sample(s1n("ties among integers", int_t(193, &[12], 0, 2), topk(5, 0, true), rtopk(5, 0, true)))
        .error(ErrorCase::new("k larger than the dim", || x(1, &[3]).topk(4, 0, true, true), is_index))
        .error(ErrorCase::new("dim out of range", || x(1, &[3]).topk(1, 1, true, true), is_dim));

    vec![sort_rec, argsort, topk_rec]
}

/// The records of this family.
pub fn ops() -> Vec<OpInfo> {
    let mut v = gather_ops();
    v.extend(index_ops());
    v.extend(join_ops());
    v.extend(rearrange_ops());
    v.extend(sort_ops());
    v
}
