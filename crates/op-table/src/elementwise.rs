//! Op-table records for the elementwise ops (`ops/elementwise.rs`) and the in-place
//! ops (`ops/inplace.rs`).
//!
//! Every record gets the same battery of layouts: same shape, broadcast pairs
//! (`[3,1] x [4]`, `[2,3] x [3]`, 0-dim with `[2,3]`), zero-size, size-1 dims, and
//! non-contiguous views made inside the op (transposed, sliced with a step,
//! expanded), each with an f64 reference written on [`RefArray`].

use std::sync::Arc;

use tensor_core::{DType, Error, Result, Scalar, Tensor, ALL_DTYPES};

use crate::refs::{broadcast, unravel};
use crate::views::{ref_expand, ref_slice, ref_t};
use crate::{call, call1, fn1, fn2, fn_s, Fn1, Fn2, FnS, Operand};
use crate::{data, int_t, rand_t, ErrorCase, OpInfo, RefArray, Sample, ALL, FLOATS, NUMERIC};

/// Floats and the signed integers (ops where `u8` would wrap).
const SIGNED: &[DType] = &[DType::F32, DType::F64, DType::F16, DType::BF16, DType::I64, DType::I32];
/// The integer dtypes.
const INTS: &[DType] = &[DType::I64, DType::I32, DType::U8];

type Gen = fn(u64, &[usize]) -> Tensor;
type URef = Arc<dyn Fn(f64) -> f64 + Send + Sync>;
type BRef = Arc<dyn Fn(f64, f64) -> f64 + Send + Sync>;
type RView = fn(&RefArray) -> RefArray;

/// An op of a record: written once for `Tensor` and `Var` (differentiable records),
/// or on tensors only (the rest).
#[derive(Clone)]
enum Op<Both, TensorOnly> {
    Both(Both),
    Tensor(TensorOnly),
}
type Op1 = Op<Fn1, Arc<dyn Fn(&Tensor) -> Result<Tensor> + Send + Sync>>;
type Op2 = Op<Fn2, Arc<dyn Fn(&Tensor, &Tensor) -> Result<Tensor> + Send + Sync>>;
type OpS = Op<FnS, Arc<dyn Fn(&Tensor, Scalar) -> Result<Tensor> + Send + Sync>>;

// ---------------------------------------------------------------- input domains

fn any(seed: u64, s: &[usize]) -> Tensor {
    rand_t(seed, s, -3.0, 3.0)
}
fn wide(seed: u64, s: &[usize]) -> Tensor {
    rand_t(seed, s, -5.0, 5.0)
}
fn pos(seed: u64, s: &[usize]) -> Tensor {
    rand_t(seed, s, 0.1, 5.0)
}
fn nonneg(seed: u64, s: &[usize]) -> Tensor {
    rand_t(seed, s, 0.0, 5.0)
}
fn big(seed: u64, s: &[usize]) -> Tensor {
    rand_t(seed, s, 5.0, 10.0)
}
fn gt_m1(seed: u64, s: &[usize]) -> Tensor {
    rand_t(seed, s, -0.9, 4.0)
}
fn tan_dom(seed: u64, s: &[usize]) -> Tensor {
    rand_t(seed, s, -1.2, 1.2)
}
fn ints(seed: u64, s: &[usize]) -> Tensor {
    int_t(seed, s, -2, 2)
}
fn base3(seed: u64, s: &[usize]) -> Tensor {
    int_t(seed, s, 0, 3)
}
fn exps(seed: u64, s: &[usize]) -> Tensor {
    int_t(seed, s, 0, 3)
}
fn from_fn(seed: u64, s: &[usize], f: impl Fn(usize, f64) -> f64) -> Tensor {
    let n = s.iter().product();
    let v = data(seed, n, -3.0, 3.0).into_iter().enumerate().map(|(i, x)| f(i, x)).collect();
    Tensor::from_vec(v, s.to_vec()).expect("numel matches")
}
/// Values in `±[0.25, 3.25)`.
fn away(seed: u64, s: &[usize]) -> Tensor {
    from_fn(seed, s, |_, x| if x < 0.0 { x - 0.25 } else { x + 0.25 })
}
/// Values in `±[1, 4)` (nonzero after truncation to an integer).
fn away1(seed: u64, s: &[usize]) -> Tensor {
    from_fn(seed, s, |_, x| if x < 0.0 { x - 1.0 } else { x + 1.0 })
}
/// Finite values mixed with NaN and infinities.
fn special(seed: u64, s: &[usize]) -> Tensor {
    from_fn(seed, s, |i, x| match i % 5 {
        1 => f64::NAN,
        2 => f64::INFINITY,
        3 => f64::NEG_INFINITY,
        _ => x,
    })
}
/// Multiples of 0.5 in `[0, 9.5]`: exact in every float dtype.
fn halves(seed: u64, s: &[usize]) -> Tensor {
    from_fn(seed, s, |_, x| ((x + 3.0) * 10.0 / 3.0).floor() / 2.0 + 0.0)
}

fn t(v: &[f64], shape: &[usize]) -> Tensor {
    Tensor::from_vec(v.to_vec(), shape.to_vec()).expect("numel matches")
}

// ---------------------------------------------------------------- layouts

/// A view an op applies to an input before its call (on a `Tensor` or a `Var`).
#[derive(Clone, Copy)]
enum View {
    Id,
    /// `t()`.
    Tr,
    /// `[:, 1::2]`.
    Step,
    /// `expand([3, 4])`.
    Exp34,
}
use View::{Exp34 as exp34, Id as id, Step as step, Tr as tr};

impl View {
    fn apply<T: Operand>(self, x: &T) -> Result<T> {
        match self {
            View::Id => Ok(x.clone()),
            View::Tr => x.t(),
            View::Step => x.slice(1, Some(1), None, 2),
            View::Exp34 => x.expand(&[3, 4]),
        }
    }
}

fn rid(a: &RefArray) -> RefArray {
    a.clone()
}
fn rstep(a: &RefArray) -> RefArray {
    ref_slice(a, 1, 1, 4, 2)
}
fn rexp34(a: &RefArray) -> RefArray {
    ref_expand(a, &[3, 4])
}

/// `(description, input shape, view applied inside the op, the same view on the reference)`.
fn unary_layouts() -> Vec<(&'static str, Vec<usize>, View, RView)> {
    vec![
        ("[3,4]", vec![3, 4], id, rid),
        ("0-dim", vec![], id, rid),
        ("zero-size [0,3]", vec![0, 3], id, rid),
        ("size-1 dims [1,5,1]", vec![1, 5, 1], id, rid),
        ("transposed [4,3].t()", vec![4, 3], tr, ref_t),
        ("step slice [3,8][:, 1::2]", vec![3, 8], step, rstep),
        ("expanded [3,1] -> [3,4]", vec![3, 1], exp34, rexp34),
    ]
}

type Pair = (&'static str, Vec<usize>, View, RView, Vec<usize>, View, RView);

fn binary_layouts() -> Vec<Pair> {
    vec![
        ("same shape [3,4]", vec![3, 4], id, rid, vec![3, 4], id, rid),
        ("broadcast [3,1] x [4]", vec![3, 1], id, rid, vec![4], id, rid),
        ("broadcast [2,3] x [3]", vec![2, 3], id, rid, vec![3], id, rid),
        ("broadcast 0-dim x [2,3]", vec![], id, rid, vec![2, 3], id, rid),
        ("broadcast [2,3] x 0-dim", vec![2, 3], id, rid, vec![], id, rid),
        ("0-dim x 0-dim", vec![], id, rid, vec![], id, rid),
        ("zero-size [0,3] x [3]", vec![0, 3], id, rid, vec![3], id, rid),
        ("size-1 dims [1,4,1] x [3,1,2]", vec![1, 4, 1], id, rid, vec![3, 1, 2], id, rid),
        ("transposed [4,3].t() x [3,4]", vec![4, 3], tr, ref_t, vec![3, 4], id, rid),
        ("[3,4] x step slice [3,8][:, 1::2]", vec![3, 4], id, rid, vec![3, 8], step, rstep),
        ("expanded [3,1]->[3,4] x [3,4]", vec![3, 1], exp34, rexp34, vec![3, 4], id, rid),
        ("[3,4] x expanded [3,1]->[3,4]", vec![3, 4], id, rid, vec![3, 1], exp34, rexp34),
        ("transposed x transposed", vec![4, 3], tr, ref_t, vec![4, 3], tr, ref_t),
    ]
}

// ---------------------------------------------------------------- sample builders

/// A sample running `op` on `inputs`: on `Tensor` and `Var` when the op is written
/// for both, else on tensors only.
fn sample_of<B: Clone + Send + Sync + 'static, O: Clone + Send + Sync + 'static>(
    desc: impl Into<String>,
    inputs: Vec<Tensor>,
    op: &Op<B, O>,
    both: impl FnOnce(B) -> crate::Call,
    tensor_only: impl FnOnce(O) -> crate::OpFn,
    reference: impl Fn(&[RefArray]) -> Vec<RefArray> + Send + Sync + 'static,
) -> Sample {
    match op.clone() {
        Op::Both(b) => Sample::call(desc, inputs, both(b), reference),
        Op::Tensor(o) => {
            let f = tensor_only(o);
            Sample::new(desc, inputs, move |x| f(x), reference)
        }
    }
}

fn unary_samples(op: &Op1, f: &URef, gen: Gen, full: bool) -> Vec<Sample> {
    let mut out = Vec::new();
    for (k, (desc, shape, view, rview)) in unary_layouts().into_iter().enumerate() {
        if !full && !matches!(k, 0 | 1 | 4) {
            continue;
        }
        let f = f.clone();
        out.push(sample_of(
            desc,
            vec![gen(k as u64 + 1, &shape)],
            op,
            |op| call1!([op] | x | op.run(&view.apply(x)?)),
            |op| Arc::new(move |x| Ok(vec![op(&view.apply(&x[0])?)?])),
            move |r| vec![rview(&r[0]).map(&*f)],
        ));
    }
    out
}

fn binary_samples(op: &Op2, f: &BRef, ga: Gen, gb: Gen) -> Vec<Sample> {
    let mut out = Vec::new();
    for (k, (desc, sa, va, ra, sb, vb, rb)) in binary_layouts().into_iter().enumerate() {
        let f = f.clone();
        let k = k as u64;
        out.push(sample_of(
            desc,
            vec![ga(10 + k, &sa), gb(40 + k, &sb)],
            op,
            |op| call!([op] | x | Ok(vec![op.run(&va.apply(&x[0])?, &vb.apply(&x[1])?)?])),
            |op| Arc::new(move |x| Ok(vec![op(&va.apply(&x[0])?, &vb.apply(&x[1])?)?])),
            move |r| vec![ra(&r[0]).zip(&rb(&r[1]), &*f)],
        ));
    }
    // Both operands the same tensor (aliasing).
    let f2 = f.clone();
    out.push(sample_of(
        "aliased operands x op x",
        vec![ga(99, &[2, 3])],
        op,
        |op| call1!([op] | x | op.run(x, x)),
        |op| Arc::new(move |x| Ok(vec![op(&x[0], &x[0])?])),
        move |r| vec![r[0].zip(&r[0], &*f2)],
    ));
    out
}

fn scalar_samples(op: &OpS, f: &BRef, gen: Gen, scalars: &[Scalar]) -> Vec<Sample> {
    let mut out = Vec::new();
    for (i, &s) in scalars.iter().enumerate() {
        for (k, (desc, shape, view, rview)) in unary_layouts().into_iter().enumerate() {
            if (i > 0 || !matches!(k, 0 | 1 | 2 | 4)) && k != 0 {
                continue;
            }
            let f = f.clone();
            out.push(sample_of(
                format!("scalar {s:?}, {desc}"),
                vec![gen(70 + k as u64, &shape)],
                op,
                |op| call1!([op] | x | op.run(&view.apply(x)?, s)),
                |op| Arc::new(move |x| Ok(vec![op(&view.apply(&x[0])?, s)?])),
                move |r| vec![rview(&r[0]).map(|a| f(a, s.to_f64()))],
            ));
        }
    }
    out
}

fn uref(f: impl Fn(f64) -> f64 + Send + Sync + 'static) -> URef {
    Arc::new(f)
}

/// A differentiable unary record with the full layout battery.
fn unary(
    name: &'static str,
    dtypes: &[DType],
    gen: Gen,
    op: Fn1,
    f: impl Fn(f64) -> f64 + Send + Sync + 'static,
) -> OpInfo {
    let mut info = OpInfo::new(name, dtypes, true);
    info.samples = unary_samples(&Op::Both(op), &uref(f), gen, true);
    info
}

/// A unary record without a gradient, on tensors only.
fn unary_nd(
    name: &'static str,
    dtypes: &[DType],
    gen: Gen,
    op: impl Fn(&Tensor) -> Result<Tensor> + Send + Sync + 'static,
    f: impl Fn(f64) -> f64 + Send + Sync + 'static,
) -> OpInfo {
    let mut info = OpInfo::new(name, dtypes, false);
    info.samples = unary_samples(&Op::Tensor(Arc::new(op)), &uref(f), gen, true);
    info
}

/// A binary record: tensor-tensor samples, and the scalar form's samples.
/// Differentiable when the ops are written for both `Tensor` and `Var`.
fn binary(
    (name, sname): (&'static str, &'static str),
    dtypes: &[DType],
    (ga, gb): (Gen, Gen),
    (op, sop): (Op2, OpS),
    f: impl Fn(f64, f64) -> f64 + Send + Sync + 'static,
    scalars: &[Scalar],
) -> OpInfo {
    let f: BRef = Arc::new(f);
    let diff = matches!(op, Op::Both(_));
    let mut info = OpInfo::new(name, dtypes, diff).covers(&[sname]);
    info.samples = binary_samples(&op, &f, ga, gb);
    info.samples.extend(scalar_samples(&sop, &f, ga, scalars));
    info
}

/// A binary op and its scalar form, written once for `Tensor` and `Var`.
fn both2(op: Fn2, sop: FnS) -> (Op2, OpS) {
    (Op::Both(op), Op::Both(sop))
}

/// A binary op and its scalar form on tensors only.
fn tensor2(
    op: impl Fn(&Tensor, &Tensor) -> Result<Tensor> + Send + Sync + 'static,
    sop: impl Fn(&Tensor, Scalar) -> Result<Tensor> + Send + Sync + 'static,
) -> (Op2, OpS) {
    (Op::Tensor(Arc::new(op)), Op::Tensor(Arc::new(sop)))
}

// ---------------------------------------------------------------- references

/// erf by its everywhere-positive series
/// `erf(x) = 2/sqrt(pi) e^(-x^2) sum_n 2^n x^(2n+1) / (1*3*...*(2n+1))`.
pub fn erf_ref(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let ax = x.abs();
    if ax > 6.0 {
        return x.signum();
    }
    let (mut term, mut sum, mut n) = (ax, ax, 0.0);
    while term > sum * 1e-18 {
        n += 1.0;
        term *= 2.0 * ax * ax / (2.0 * n + 1.0);
        sum += term;
    }
    x.signum() * 2.0 / std::f64::consts::PI.sqrt() * (-ax * ax).exp() * sum
}

fn sigmoid_ref(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn bool_to_f64(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

fn rem_ref(a: f64, b: f64) -> f64 {
    // Python's `a % b`: a - b * floor(a / b), computed exactly via fmod.
    let r = a % b;
    if r != 0.0 && (r < 0.0) != (b < 0.0) {
        r + b
    } else {
        r
    }
}

fn max_ref(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

fn min_ref(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

fn clamp_ref(x: f64, lo: Option<f64>, hi: Option<f64>) -> f64 {
    if x.is_nan() {
        return x;
    }
    let mut y = x;
    if let Some(l) = lo {
        y = y.max(l);
    }
    if let Some(h) = hi {
        y = y.min(h);
    }
    y
}

/// `cond != 0 ? a : b`, the three broadcast together.
fn where_ref(c: &RefArray, a: &RefArray, b: &RefArray) -> RefArray {
    let shape = broadcast(&broadcast(&c.shape, &a.shape), &b.shape);
    let n: usize = shape.iter().product();
    let data = (0..n)
        .map(|i| {
            let idx = unravel(i, &shape);
            if c.at_broadcast(&idx) != 0.0 {
                a.at_broadcast(&idx)
            } else {
                b.at_broadcast(&idx)
            }
        })
        .collect();
    RefArray::new(shape, data)
}

fn is_shape(e: &Error) -> bool {
    matches!(e, Error::ShapeMismatch { .. })
}
fn is_dtype(e: &Error) -> bool {
    matches!(e, Error::DTypeMismatch { .. })
}
fn is_arg(e: &Error) -> bool {
    matches!(e, Error::InvalidArgument { .. })
}
fn is_unsupported(e: &Error) -> bool {
    matches!(e, Error::Unsupported { .. })
}
fn is_index(e: &Error) -> bool {
    matches!(e, Error::IndexOutOfRange { .. })
}

/// Fails unless `t` has dtype `dt` (lets a sample check a result dtype).
fn want(t: Tensor, dt: DType) -> Result<Tensor> {
    if t.dtype() != dt {
        return Err(Error::arg("op-table", format!("result dtype {}, expected {dt}", t.dtype())));
    }
    Ok(t)
}

fn i(v: i64) -> Scalar {
    Scalar::I64(v)
}
fn fl(v: f64) -> Scalar {
    Scalar::F64(v)
}

// ---------------------------------------------------------------- records

fn arith_ops() -> Vec<OpInfo> {
    let mut v = vec![
        binary(
            ("add", "add_scalar"),
            NUMERIC,
            (any, any),
            both2(fn2!(|a, b| a.add(b)), fn_s!(|a, s| a.add_scalar(s))),
            |a, b| a + b,
            &[i(2), fl(1.5)],
        )
        .error(ErrorCase::new("broadcast failure [2,3] + [4]", || any(1, &[2, 3]).add(&any(2, &[4])), is_shape))
        .error(ErrorCase::new(
            "broadcast failure [2,3] + [3,2]",
            || any(1, &[2, 3]).add(&any(2, &[3, 2])),
            is_shape,
        )),
        binary(
            ("sub", "sub_scalar"),
            NUMERIC,
            (big, nonneg),
            both2(fn2!(|a, b| a.sub(b)), fn_s!(|a, s| a.sub_scalar(s))),
            |a, b| a - b,
            &[i(2), fl(0.5)],
        )
        .error(ErrorCase::new(
            "bool - bool",
            || any(1, &[3]).to_dtype(DType::Bool)?.sub(&any(2, &[3]).to_dtype(DType::Bool)?),
            is_unsupported,
        ))
        .error(ErrorCase::new("broadcast failure", || any(1, &[2]).sub(&any(2, &[3])), is_shape)),
        binary(
            ("mul", "mul_scalar"),
            NUMERIC,
            (any, any),
            both2(fn2!(|a, b| a.mul(b)), fn_s!(|a, s| a.mul_scalar(s))),
            |a, b| a * b,
            &[i(3), fl(0.5)],
        )
        .error(ErrorCase::new("broadcast failure", || any(1, &[2, 3]).mul(&any(2, &[2])), is_shape)),
        binary(
            ("div", "div_scalar"),
            FLOATS,
            (any, away),
            both2(fn2!(|a, b| a.div(b)), fn_s!(|a, s| a.div_scalar(s))),
            |a, b| a / b,
            &[fl(4.0), fl(-0.3), i(3)],
        )
        .error(ErrorCase::new("broadcast failure", || any(1, &[4]).div(&any(2, &[5])), is_shape)),
        // True division of integers gives f32 (division by zero gives inf/nan).
        binary(
            ("div", "div_scalar"),
            INTS,
            (ints, ints),
            tensor2(|a, b| want(a.div(b)?, DType::F32), |a, s| want(a.div_scalar(s)?, DType::F32)),
            |a, b| a / b,
            &[i(4), fl(2.5)],
        )
        .tol(1.3e-6, 1e-5),
        binary(
            ("pow", "pow_scalar"),
            FLOATS,
            (pos, any),
            both2(fn2!(|a, b| a.pow(b)), fn_s!(|a, s| a.pow_scalar(s))),
            f64::powf,
            &[fl(2.0), fl(0.5), fl(-1.5), fl(1.0), i(3)],
        ),
        binary(
            ("pow", "pow_scalar"),
            INTS,
            (base3, exps),
            tensor2(|a, b| a.pow(b), |a, s| a.pow_scalar(s)),
            f64::powf,
            &[i(2), i(0)],
        ),
        binary(
            ("maximum", "maximum_scalar"),
            NUMERIC,
            (any, any),
            both2(fn2!(|a, b| a.maximum(b)), fn_s!(|a, s| a.maximum_scalar(s))),
            max_ref,
            &[fl(0.5), i(1)],
        )
        .error(ErrorCase::new("broadcast failure", || any(1, &[2, 3]).maximum(&any(2, &[2])), is_shape)),
        binary(
            ("minimum", "minimum_scalar"),
            NUMERIC,
            (any, any),
            both2(fn2!(|a, b| a.minimum(b)), fn_s!(|a, s| a.minimum_scalar(s))),
            min_ref,
            &[fl(0.5), i(1)],
        ),
        binary(
            ("remainder", "remainder_scalar"),
            SIGNED,
            (away1, away1),
            both2(fn2!(|a, b| a.remainder(b)), fn_s!(|a, s| a.remainder_scalar(s))),
            rem_ref,
            &[fl(1.5), i(-2), i(3)],
        ),
        binary(
            ("atan2", "atan2_scalar"),
            FLOATS,
            (any, any),
            both2(fn2!(|a, b| a.atan2(b)), fn_s!(|a, s| a.atan2_scalar(s))),
            f64::atan2,
            &[fl(0.5), fl(-2.0)],
        ),
    ];
    // NaN propagation of maximum/minimum (float dtypes; integer casts turn NaN into 0).
    let nans = || vec![t(&[f64::NAN, 1.0, 2.0, f64::NAN], &[4]), t(&[1.0, f64::NAN, 3.0, f64::NAN], &[4])];
    v[7].samples.push(Sample::new(
        "NaN propagates",
        nans(),
        |x| Ok(vec![x[0].maximum(&x[1])?]),
        |r| vec![r[0].zip(&r[1], max_ref)],
    ));
    v[8].samples.push(Sample::new(
        "NaN propagates",
        nans(),
        |x| Ok(vec![x[0].minimum(&x[1])?]),
        |r| vec![r[0].zip(&r[1], min_ref)],
    ));
    v
}

fn compare_ops() -> Vec<OpInfo> {
    macro_rules! cmp {
        ($name:literal, $sname:literal, $m:ident, $ms:ident, $f:expr) => {
            binary(
                ($name, $sname),
                ALL,
                (ints, ints),
                tensor2(|a, b| want(a.$m(b)?, DType::Bool), |a, s| want(a.$ms(s)?, DType::Bool)),
                |a: f64, b: f64| bool_to_f64($f(a, b)),
                &[i(0), fl(0.5)],
            )
            .error(ErrorCase::new("broadcast failure", || ints(1, &[2, 3]).$m(&ints(2, &[4])), is_shape))
        };
    }
    vec![
        cmp!("eq", "eq_scalar", eq, eq_scalar, |a, b| a == b),
        cmp!("ne", "ne_scalar", ne, ne_scalar, |a, b| a != b),
        cmp!("lt", "lt_scalar", lt, lt_scalar, |a, b| a < b),
        cmp!("le", "le_scalar", le, le_scalar, |a, b| a <= b),
        cmp!("gt", "gt_scalar", gt, gt_scalar, |a, b| a > b),
        cmp!("ge", "ge_scalar", ge, ge_scalar, |a, b| a >= b),
        cmp!("logical_and", "logical_and_scalar", logical_and, logical_and_scalar, |a, b| a != 0.0 && b != 0.0),
        cmp!("logical_or", "logical_or_scalar", logical_or, logical_or_scalar, |a, b| a != 0.0 || b != 0.0),
        cmp!("logical_xor", "logical_xor_scalar", logical_xor, logical_xor_scalar, |a, b| (a != 0.0) != (b != 0.0)),
        unary_nd("logical_not", ALL, ints, |x| want(x.logical_not()?, DType::Bool), |a| bool_to_f64(a == 0.0)),
    ]
}

fn unary_ops() -> Vec<OpInfo> {
    let gelu = |x: f64| 0.5 * x * (1.0 + erf_ref(x / 2f64.sqrt()));
    let gelu_tanh = |x: f64| {
        let k = (2.0 / std::f64::consts::PI).sqrt();
        0.5 * x * (1.0 + (k * (x + 0.044715 * x.powi(3))).tanh())
    };
    let softplus = |x: f64, b: f64, th: f64| if b * x > th { x } else { (1.0 + (b * x).exp()).ln() / b };
    let mut v = vec![
        unary("neg", SIGNED, any, fn1!(|x| x.neg()), |a| -a).error(ErrorCase::new(
            "neg of bool",
            || ints(1, &[3]).to_dtype(DType::Bool)?.neg(),
            is_unsupported,
        )),
        unary("abs", NUMERIC, any, fn1!(|x| x.abs()), f64::abs),
        unary("exp", FLOATS, any, fn1!(|x| x.exp()), f64::exp),
        unary("log", FLOATS, pos, fn1!(|x| x.log()), f64::ln),
        unary("log1p", FLOATS, gt_m1, fn1!(|x| x.log1p()), |a| (1.0 + a).ln()),
        unary("expm1", FLOATS, any, fn1!(|x| x.expm1()), |a| a.exp() - 1.0),
        unary("sqrt", FLOATS, pos, fn1!(|x| x.sqrt()), f64::sqrt),
        unary("rsqrt", FLOATS, pos, fn1!(|x| x.rsqrt()), |a| 1.0 / a.sqrt()),
        unary("sin", FLOATS, any, fn1!(|x| x.sin()), f64::sin),
        unary("cos", FLOATS, any, fn1!(|x| x.cos()), f64::cos),
        unary("tan", FLOATS, tan_dom, fn1!(|x| x.tan()), f64::tan),
        unary("tanh", FLOATS, any, fn1!(|x| x.tanh()), f64::tanh),
        unary("sigmoid", FLOATS, wide, fn1!(|x| x.sigmoid()), sigmoid_ref),
        unary("relu", NUMERIC, any, fn1!(|x| x.relu()), |a| if a > 0.0 { a } else { 0.0 }),
        unary("gelu", FLOATS, wide, fn1!(|x| x.gelu()), gelu),
        unary("gelu_tanh", FLOATS, wide, fn1!(|x| x.gelu_tanh()), gelu_tanh),
        unary("silu", FLOATS, wide, fn1!(|x| x.silu()), |a| a * sigmoid_ref(a)),
        unary("log_sigmoid", FLOATS, wide, fn1!(|x| x.log_sigmoid()), |a| a.min(0.0) - (-a.abs()).exp().ln_1p()),
        unary("mish", FLOATS, wide, fn1!(|x| x.mish()), |a| a * (if a > 20.0 { a } else { a.exp().ln_1p() }).tanh()),
        unary_nd(
            "sign",
            NUMERIC,
            any,
            |x| x.sign(),
            |a| {
                if a > 0.0 {
                    1.0
                } else if a < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            },
        ),
        unary_nd("floor", NUMERIC, any, |x| x.floor(), f64::floor),
        unary_nd("ceil", NUMERIC, any, |x| x.ceil(), f64::ceil),
        unary_nd("round", NUMERIC, any, |x| x.round(), f64::round_ties_even),
        unary_nd("trunc", NUMERIC, any, |x| x.trunc(), f64::trunc),
        unary("reciprocal", FLOATS, away, fn1!(|x| x.reciprocal()), |a| 1.0 / a),
        unary("square", NUMERIC, any, fn1!(|x| x.square()), |a| a * a),
        unary("erf", FLOATS, any, fn1!(|x| x.erf()), erf_ref),
        unary_nd("isnan", NUMERIC, special, |x| want(x.isnan()?, DType::Bool), |a| bool_to_f64(a.is_nan())),
        unary_nd("isinf", NUMERIC, special, |x| want(x.isinf()?, DType::Bool), |a| bool_to_f64(a.is_infinite())),
        unary_nd("isfinite", NUMERIC, special, |x| want(x.isfinite()?, DType::Bool), |a| bool_to_f64(a.is_finite())),
    ];
    // Parameterised activations: the default parameters with every layout, others on a few.
    let mut leaky =
        unary("leaky_relu", FLOATS, any, fn1!(|x| x.leaky_relu(0.01)), |a| if a > 0.0 { a } else { 0.01 * a });
    leaky.samples.extend(unary_samples(
        &Op::Both(fn1!(|x| x.leaky_relu(0.2))),
        &uref(|a| if a > 0.0 { a } else { 0.2 * a }),
        any,
        false,
    ));
    let mut elu = unary("elu", FLOATS, any, fn1!(|x| x.elu(1.0)), |a| if a > 0.0 { a } else { a.exp() - 1.0 });
    for alpha in [0.5, 0.0, -0.6] {
        elu.samples.extend(unary_samples(
            &Op::Both(fn1!(|x| x.elu(alpha))),
            &uref(move |a| if a > 0.0 { a } else { alpha * (a.exp() - 1.0) }),
            any,
            false,
        ));
    }
    let mut sp = unary("softplus", FLOATS, wide, fn1!(|x| x.softplus(1.0, 20.0)), move |a| softplus(a, 1.0, 20.0));
    sp.samples.extend(unary_samples(
        &Op::Both(fn1!(|x| x.softplus(2.0, 1.0))),
        &uref(move |a| softplus(a, 2.0, 1.0)),
        wide,
        false,
    ));
    sp.samples.push(Sample::call(
        "large inputs stay finite",
        vec![t(&[30.0, 100.0, -100.0], &[3])],
        call1!(|x| x.softplus(1.0, 20.0)),
        move |r| vec![r[0].map(|a| softplus(a, 1.0, 20.0))],
    ));
    v.extend([leaky, elu, sp]);

    // round: ties go to even.
    let halves_t = || t(&[-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.49, 1.51, 3.5], &[9]);
    if let Some(r) = v.iter_mut().find(|o| o.name == "round") {
        r.samples.push(Sample::new(
            "ties to even",
            vec![halves_t()],
            |x| Ok(vec![x[0].round()?]),
            |r| vec![r[0].map(f64::round_ties_even)],
        ));
    }

    let bounds: [(Option<f64>, Option<f64>); 4] =
        [(Some(-1.0), Some(2.0)), (Some(0.0), None), (None, Some(1.0)), (Some(2.0), Some(-1.0))];
    let mut clamp =
        unary("clamp", SIGNED, any, fn1!(|x| x.clamp(Some(-1.0), Some(2.0))), |a| clamp_ref(a, Some(-1.0), Some(2.0)));
    for (lo, hi) in bounds.into_iter().skip(1) {
        clamp.samples.extend(unary_samples(
            &Op::Both(fn1!([lo, hi] | x | x.clamp(lo, hi))),
            &uref(move |a| clamp_ref(a, lo, hi)),
            any,
            false,
        ));
    }
    clamp.samples.extend(unary_samples(
        &Op::Both(fn1!(|x| x.clamp(Some(-1.0), Some(1.0)))),
        &uref(|a| clamp_ref(a, Some(-1.0), Some(1.0))),
        special,
        false,
    ));
    clamp = clamp.error(ErrorCase::new("no bounds", || any(1, &[3]).clamp(None, None), is_arg));
    v.push(clamp);
    v
}

fn select_ops() -> Vec<OpInfo> {
    fn mask(seed: u64, s: &[usize]) -> Tensor {
        ints(seed, s).gt_scalar(0).expect("comparison of an f64 tensor")
    }
    let wc = |desc: &str, c: Tensor, a: Tensor, b: Tensor, va: View, ra: RView| {
        Sample::call(
            desc,
            vec![c, a, b],
            call!(|x| Ok(vec![T::where_cond(x[0].tensor(), &va.apply(&x[1])?, &x[2])?])),
            move |r| vec![where_ref(&r[0], &ra(&r[1]), &r[2])],
        )
        .with_cast(vec![false, true, true])
    };
    let where_cond = OpInfo::new("where_cond", ALL, true)
        .sample(wc("same shape", mask(1, &[3, 4]), any(2, &[3, 4]), any(3, &[3, 4]), id, rid))
        .sample(wc("broadcast cond [3,1], a [4], b 0-dim", mask(4, &[3, 1]), any(5, &[4]), any(6, &[]), id, rid))
        .sample(wc("0-dim cond", mask(7, &[]), any(8, &[2, 3]), any(9, &[2, 3]), id, rid))
        .sample(wc("zero-size", mask(10, &[0, 3]), any(11, &[0, 3]), any(12, &[3]), id, rid))
        .sample(wc("transposed a", mask(13, &[3, 4]), any(14, &[4, 3]), any(15, &[3, 4]), tr, ref_t))
        .sample(wc("expanded a", mask(16, &[3, 4]), any(17, &[3, 1]), any(18, &[3, 4]), exp34, rexp34))
        .sample(
            Sample::call(
                "cond aliases b (bool)",
                vec![mask(19, &[2, 3]), any(20, &[2, 3])],
                call!(|x| Ok(vec![T::where_cond(x[0].tensor(), &x[1].to_dtype(DType::Bool)?, &x[0])?])),
                |r| vec![where_ref(&r[0], &r[1].map(|a| bool_to_f64(a != 0.0)), &r[0])],
            )
            .with_cast(vec![false, true]),
        )
        .error(ErrorCase::new(
            "non-bool cond",
            || Tensor::where_cond(&any(1, &[3]), &any(2, &[3]), &any(3, &[3])),
            is_dtype,
        ))
        .error(ErrorCase::new(
            "broadcast failure",
            || Tensor::where_cond(&mask(1, &[3]), &any(2, &[2]), &any(3, &[3])),
            is_shape,
        ));

    let mf = |desc: &str, x: Tensor, m: Tensor, view: View, rview: RView, value: Scalar| {
        Sample::call(
            desc,
            vec![x, m],
            call!(|x| Ok(vec![view.apply(&x[0])?.masked_fill(x[1].tensor(), value)?])),
            move |r| {
                let x = rview(&r[0]);
                let shape = x.shape.clone();
                let m = ref_expand(&r[1], &shape);
                vec![RefArray::new(
                    shape,
                    x.data.iter().zip(&m.data).map(|(&a, &c)| if c != 0.0 { value.to_f64() } else { a }).collect(),
                )]
            },
        )
        .with_cast(vec![true, false])
    };
    let masked_fill = OpInfo::new("masked_fill", NUMERIC, true)
        .sample(mf("same shape, float value", any(1, &[3, 4]), mask(2, &[3, 4]), id, rid, fl(7.0)))
        .sample(mf("mask [3,1] broadcast, int value", any(3, &[3, 4]), mask(4, &[3, 1]), id, rid, i(3)))
        .sample(mf("0-dim mask", any(5, &[2, 3]), mask(6, &[]), id, rid, fl(-0.0)))
        .sample(mf("0-dim self", any(7, &[]), mask(8, &[]), id, rid, fl(2.0)))
        .sample(mf("zero-size", any(9, &[0, 3]), mask(10, &[3]), id, rid, fl(1.0)))
        .sample(mf("transposed self", any(11, &[4, 3]), mask(12, &[3, 4]), tr, ref_t, fl(5.0)))
        .error(ErrorCase::new("non-bool mask", || any(1, &[3]).masked_fill(&any(2, &[3]), 1.0), is_dtype))
        .error(ErrorCase::new("mask not broadcastable", || any(1, &[3]).masked_fill(&mask(2, &[4]), 1.0), is_shape))
        .error(ErrorCase::new("mask larger than self", || any(1, &[3]).masked_fill(&mask(2, &[2, 3]), 1.0), is_shape));

    vec![where_cond, masked_fill]
}

fn cast_ops() -> Vec<OpInfo> {
    let mut info = OpInfo::new("to_dtype", ALL, false).covers(&["cast"]);
    for target in ALL_DTYPES {
        let f = move |a: f64| -> f64 {
            if target == DType::Bool {
                bool_to_f64(a != 0.0)
            } else if target.is_float() {
                a
            } else {
                a.trunc()
            }
        };
        for (k, (desc, shape, view, rview)) in unary_layouts().into_iter().enumerate() {
            if !matches!(k, 0 | 1 | 2 | 4) {
                continue;
            }
            info.samples.push(Sample::new(
                format!("to {target}, {desc}"),
                vec![halves(k as u64 + 1, &shape)],
                move |x| Ok(vec![want(view.apply(&x[0])?.to_dtype(target)?, target)?]),
                move |r| vec![rview(&r[0]).map(f)],
            ));
        }
        if target != DType::U8 {
            info.samples.push(Sample::new(
                format!("to {target}, negative integers"),
                vec![ints(9, &[2, 3])],
                move |x| Ok(vec![want(x[0].to_dtype(target)?, target)?]),
                move |r| vec![r[0].map(f)],
            ));
        }
    }
    // Float to integer truncates toward zero; integer casts wrap.
    info.samples.push(
        Sample::new(
            "f64 -> i64 truncates toward zero",
            vec![t(&[-2.7, -0.5, 0.5, 2.7, 1e10], &[5])],
            |x| Ok(vec![x[0].to_dtype(DType::I64)?]),
            |_| vec![RefArray::new(vec![5], vec![-2.0, 0.0, 0.0, 2.0, 1e10])],
        )
        .with_cast(vec![false]),
    );
    info.samples.push(
        Sample::new(
            "i64 -> u8 wraps",
            vec![Tensor::new(&[-1i64, 256, 300, 255])],
            |x| Ok(vec![x[0].to_dtype(DType::U8)?]),
            |_| vec![RefArray::new(vec![4], vec![255.0, 0.0, 44.0, 255.0])],
        )
        .with_cast(vec![false]),
    );
    info.samples.push(
        Sample::new(
            "NaN -> bool is true",
            vec![t(&[f64::NAN, 0.0, -0.0, 0.1], &[4])],
            |x| Ok(vec![x[0].to_dtype(DType::Bool)?]),
            |_| vec![RefArray::new(vec![4], vec![1.0, 0.0, 0.0, 1.0])],
        )
        .with_cast(vec![false]),
    );
    vec![info]
}

fn misc_ops() -> Vec<OpInfo> {
    let mut rsub = OpInfo::new("rsub_scalar", SIGNED, true);
    rsub.samples = scalar_samples(
        &Op::Both(fn_s!(|x, s| x.rsub_scalar(s))),
        &(Arc::new(|a: f64, s: f64| s - a) as BRef),
        any,
        &[i(2), fl(1.5)],
    );
    let mut rdiv = OpInfo::new("rdiv_scalar", FLOATS, true);
    rdiv.samples = scalar_samples(
        &Op::Both(fn_s!(|x, s| x.rdiv_scalar(s))),
        &(Arc::new(|a: f64, s: f64| s / a) as BRef),
        away,
        &[fl(3.0), i(-2)],
    );

    // The std::ops operators, through references and by value.
    let ops2 = |desc: &str, op: Fn2, f: fn(f64, f64) -> f64| {
        Sample::call(
            desc,
            vec![any(1, &[3, 1]), away(2, &[4])],
            call!([op] | x | Ok(vec![op.run(&x[0], &x[1])?])),
            move |r| vec![r[0].zip(&r[1], f)],
        )
    };
    let ops1 = |desc: &str, op: Fn1, f: fn(f64) -> f64| {
        Sample::call(desc, vec![away(3, &[2, 3])], call1!([op] | x | op.run(x)), move |r| vec![r[0].map(f)])
    };
    let operators = OpInfo::new("operators", FLOATS, true)
        .sample(ops2("&a + &b", fn2!(|a, b| a + b), |a, b| a + b))
        .sample(ops2("a - b", fn2!(|a, b| a.clone() - b.clone()), |a, b| a - b))
        .sample(ops2("a * &b", fn2!(|a, b| a.clone() * b), |a, b| a * b))
        .sample(ops2("&a / &b", fn2!(|a, b| a / b), |a, b| a / b))
        .sample(ops1("-&a", fn1!(|a| -a), |a| -a))
        .sample(ops1("-a", fn1!(|a| -(a.clone())), |a| -a))
        .sample(ops1("&a + 2.0", fn1!(|a| a + 2.0), |a| a + 2.0))
        .sample(ops1("a * 0.5", fn1!(|a| a.clone() * 0.5), |a| a * 0.5))
        .sample(ops1("2.0 - &a", fn1!(|a| 2.0 - a), |a| 2.0 - a))
        .sample(ops1("3.0 / &a", fn1!(|a| 3.0 / a), |a| 3.0 / a))
        .sample(ops1("&a / 4.0", fn1!(|a| a / 4.0), |a| a / 4.0))
        .error(ErrorCase::new("broadcast failure in +", || &any(1, &[2]) + &any(2, &[3]), is_shape));

    // PyTorch's type promotion (inputs keep their own dtypes).
    let p = |desc: &str, a: Tensor, b: Tensor, op: fn(&Tensor, &Tensor) -> Result<Tensor>, dt: DType, out: Vec<f64>| {
        let shape = vec![out.len()];
        Sample::new(
            desc,
            vec![a, b],
            move |x| Ok(vec![want(op(&x[0], &x[1])?, dt)?]),
            move |_| vec![RefArray::new(shape.clone(), out.clone())],
        )
        .with_cast(vec![false, false])
    };
    let f32s = |v: &[f32]| Tensor::new(v);
    let f64s = |v: &[f64]| Tensor::new(v);
    let i64s = |v: &[i64]| Tensor::new(v);
    fn bools(v: &[bool]) -> Tensor {
        Tensor::new(v)
    }
    let cast = |x: Tensor, d: DType| x.to_dtype(d).expect("cast");
    let promotion = OpInfo::new("promotion", &[DType::F64], false)
        .covers(&["result_type"])
        .sample(p(
            "f32 + f64 -> f64",
            f32s(&[0.5, 1.0]),
            f64s(&[0.25, 2.0]),
            |a, b| a.add(b),
            DType::F64,
            vec![0.75, 3.0],
        ))
        .sample(p("f32 + i64 -> f32", f32s(&[0.5, 1.0]), i64s(&[2, 3]), |a, b| a.add(b), DType::F32, vec![2.5, 4.0]))
        .sample(p(
            "i64 / i64 -> f32",
            i64s(&[7, 1, -3]),
            i64s(&[2, 4, 2]),
            |a, b| a.div(b),
            DType::F32,
            vec![3.5, 0.25, -1.5],
        ))
        .sample(p("i64 + 2.5 -> f32", i64s(&[1, 2]), i64s(&[0]), |a, _| a.add_scalar(2.5), DType::F32, vec![3.5, 4.5]))
        .sample(p("i64 + 2 -> i64", i64s(&[1, 2]), i64s(&[0]), |a, _| a.add_scalar(2), DType::I64, vec![3.0, 4.0]))
        .sample(p(
            "i32 + i64 -> i64",
            cast(i64s(&[1, 2]), DType::I32),
            i64s(&[5, 6]),
            |a, b| a.add(b),
            DType::I64,
            vec![6.0, 8.0],
        ))
        .sample(p(
            "u8 * i32 -> i32",
            cast(i64s(&[3, 200]), DType::U8),
            cast(i64s(&[-1, 2]), DType::I32),
            |a, b| a.mul(b),
            DType::I32,
            vec![-3.0, 400.0],
        ))
        .sample(p(
            "f16 + bf16 -> f32",
            cast(f64s(&[0.5, 1.5]), DType::F16),
            cast(f64s(&[0.25, 2.0]), DType::BF16),
            |a, b| a.add(b),
            DType::F32,
            vec![0.75, 3.5],
        ))
        .sample(p(
            "f16 * 2.5 stays f16",
            cast(f64s(&[0.5, 2.0]), DType::F16),
            i64s(&[0]),
            |a, _| a.mul_scalar(2.5),
            DType::F16,
            vec![1.25, 5.0],
        ))
        .sample(p(
            "i32 + i64 scalar stays i32",
            cast(i64s(&[1, 2]), DType::I32),
            i64s(&[0]),
            |a, _| a.add_scalar(5),
            DType::I32,
            vec![6.0, 7.0],
        ))
        .sample(p(
            "u8 - 2 wraps in u8",
            cast(i64s(&[1, 5]), DType::U8),
            i64s(&[0]),
            |a, _| a.sub_scalar(2),
            DType::U8,
            vec![255.0, 3.0],
        ))
        .sample(p(
            "bool + i64 -> i64",
            bools(&[true, false]),
            i64s(&[2, 3]),
            |a, b| a.add(b),
            DType::I64,
            vec![3.0, 3.0],
        ))
        .sample(p(
            "bool + bool -> bool (or)",
            bools(&[true, false, false]),
            bools(&[true, true, false]),
            |a, b| a.add(b),
            DType::Bool,
            vec![1.0, 1.0, 0.0],
        ))
        .sample(p(
            "bool * bool -> bool (and)",
            bools(&[true, false, true]),
            bools(&[true, true, false]),
            |a, b| a.mul(b),
            DType::Bool,
            vec![1.0, 0.0, 0.0],
        ))
        .sample(p(
            "bool / bool -> f32",
            bools(&[true, false]),
            bools(&[true, true]),
            |a, b| a.div(b),
            DType::F32,
            vec![1.0, 0.0],
        ))
        .sample(p(
            "f32 tensor + f64 0-dim -> f32",
            f32s(&[0.5, 1.0]),
            Tensor::scalar(0.25f64),
            |a, b| a.add(b),
            DType::F32,
            vec![0.75, 1.25],
        ))
        .sample(p(
            "f16 tensor * f32 0-dim -> f16",
            cast(f64s(&[0.5, 1.0]), DType::F16),
            Tensor::scalar(2.0f32),
            |a, b| a.mul(b),
            DType::F16,
            vec![1.0, 2.0],
        ))
        .sample(p(
            "i64 tensor + f64 0-dim -> f64",
            i64s(&[1, 2]),
            Tensor::scalar(0.5f64),
            |a, b| a.add(b),
            DType::F64,
            vec![1.5, 2.5],
        ))
        .sample(p(
            "i32 tensor + i64 0-dim -> i32",
            cast(i64s(&[1, 2]), DType::I32),
            Tensor::scalar(3i64),
            |a, b| a.add(b),
            DType::I32,
            vec![4.0, 5.0],
        ))
        .sample(p(
            "0-dim + 0-dim promotes normally",
            f32s(&[1.5]).reshape(&[]).expect("view"),
            Tensor::scalar(0.5f64),
            |a, b| a.add(b)?.reshape(&[1]),
            DType::F64,
            vec![2.0],
        ))
        .sample(p("exp of i64 -> f32", i64s(&[0]), i64s(&[0]), |a, _| a.exp(), DType::F32, vec![1.0]))
        .sample(p("sqrt of i64 -> f32", i64s(&[4, 9]), i64s(&[0]), |a, _| a.sqrt(), DType::F32, vec![2.0, 3.0]))
        .sample(p(
            "pow_scalar(0.5) of i64 -> f32",
            i64s(&[4, 9]),
            i64s(&[0]),
            |a, _| a.pow_scalar(0.5),
            DType::F32,
            vec![2.0, 3.0],
        ))
        .sample(p("abs of i64 stays i64", i64s(&[-4, 9]), i64s(&[0]), |a, _| a.abs(), DType::I64, vec![4.0, 9.0]))
        .sample(p(
            "2 / i64 -> f32",
            i64s(&[1, 2, 4]),
            i64s(&[0]),
            |a, _| a.rdiv_scalar(2),
            DType::F32,
            vec![2.0, 1.0, 0.5],
        ))
        .sample(p(
            "5 - u8 wraps in u8",
            cast(i64s(&[1, 7]), DType::U8),
            i64s(&[0]),
            |a, _| a.rsub_scalar(5),
            DType::U8,
            vec![4.0, 254.0],
        ))
        .sample(p("2.0 * i64 (operator) -> f32", i64s(&[1, 3]), i64s(&[0]), |a, _| 2.0 * a, DType::F32, vec![2.0, 6.0]))
        .sample(p(
            "eq of f32 and i64 -> bool",
            f32s(&[1.0, 1.5]),
            i64s(&[1, 1]),
            |a, b| a.eq(b),
            DType::Bool,
            vec![1.0, 0.0],
        ))
        .sample(p(
            "where promotes a and b",
            bools(&[true, false]),
            i64s(&[1, 2]),
            |c, b| Tensor::where_cond(c, &Tensor::new(&[0.5f32, 0.5]).to_device(c.device())?, b),
            DType::F32,
            vec![0.5, 2.0],
        ))
        .error(ErrorCase::new("bool - bool", || bools(&[true]).sub(&bools(&[false])), is_unsupported));
    vec![rsub, rdiv, operators, promotion]
}

// ---------------------------------------------------------------- in-place

type IOp = Arc<dyn Fn(&Tensor, &Tensor) -> Result<()> + Send + Sync>;
type IUOp = Arc<dyn Fn(&Tensor) -> Result<()> + Send + Sync>;

/// `f` applied in place to the odd columns of `a` (the step-slice destination),
/// with `b` broadcast to the slice's shape.
fn ref_into_step(a: &RefArray, b: &RefArray, f: &dyn Fn(f64, f64) -> f64) -> (RefArray, RefArray) {
    let view = ref_slice(a, 1, 1, 4, 2);
    let upd = view.zip(&ref_expand(b, &view.shape), f);
    let mut whole = a.clone();
    for r in 0..a.shape[0] {
        for c in 0..4 {
            whole.data[r * a.shape[1] + 1 + 2 * c] = upd.data[r * 4 + c];
        }
    }
    (upd, whole)
}

/// Samples of `dst op= src`: destinations contiguous, transposed and step-sliced
/// (the untouched rest checked too), sources broadcast and aliased.
fn inplace_samples(op: &IOp, f: &BRef, ga: Gen, gb: Gen) -> Vec<Sample> {
    let mut out = Vec::new();
    let srcs: [(&str, Vec<usize>); 4] =
        [("same shape", vec![3, 4]), ("src [4]", vec![4]), ("src [3,1]", vec![3, 1]), ("src 0-dim", vec![])];
    for (k, (sdesc, sshape)) in srcs.into_iter().enumerate() {
        let k = k as u64;
        let (o, ff) = (op.clone(), f.clone());
        out.push(Sample::new(
            format!("contiguous dst, {sdesc}"),
            vec![ga(1 + k, &[3, 4]), gb(11 + k, &sshape)],
            move |x| {
                let d = x[0].copy()?;
                o(&d, &x[1])?;
                Ok(vec![d])
            },
            move |r| vec![r[0].zip(&r[1], &*ff)],
        ));
        let (o, ff) = (op.clone(), f.clone());
        out.push(Sample::new(
            format!("transposed dst, {sdesc}"),
            vec![ga(21 + k, &[4, 3]), gb(31 + k, &sshape)],
            move |x| {
                let d = x[0].copy()?.t()?;
                o(&d, &x[1])?;
                Ok(vec![d])
            },
            move |r| vec![ref_t(&r[0]).zip(&r[1], &*ff)],
        ));
        let (o, ff) = (op.clone(), f.clone());
        out.push(Sample::new(
            format!("step-slice dst, {sdesc}"),
            vec![ga(41 + k, &[3, 8]), gb(51 + k, &sshape)],
            move |x| {
                let whole = x[0].copy()?;
                let d = whole.slice(1, Some(1), None, 2)?;
                o(&d, &x[1])?;
                Ok(vec![d, whole])
            },
            move |r| {
                let (a, b) = ref_into_step(&r[0], &r[1], &*ff);
                vec![a, b]
            },
        ));
    }
    let (o, ff) = (op.clone(), f.clone());
    out.push(Sample::new(
        "zero-size dst",
        vec![ga(61, &[0, 3]), gb(62, &[3])],
        move |x| {
            let d = x[0].copy()?;
            o(&d, &x[1])?;
            Ok(vec![d])
        },
        move |r| vec![r[0].zip(&r[1], &*ff)],
    ));
    let (o, ff) = (op.clone(), f.clone());
    out.push(Sample::new(
        "0-dim dst",
        vec![ga(63, &[]), gb(64, &[])],
        move |x| {
            let d = x[0].copy()?;
            o(&d, &x[1])?;
            Ok(vec![d])
        },
        move |r| vec![r[0].zip(&r[1], &*ff)],
    ));
    let (o, ff) = (op.clone(), f.clone());
    out.push(Sample::new(
        "src is dst",
        vec![ga(65, &[3, 3])],
        move |x| {
            let d = x[0].copy()?;
            o(&d, &d)?;
            Ok(vec![d])
        },
        move |r| vec![r[0].zip(&r[0], &*ff)],
    ));
    let (o, ff) = (op.clone(), f.clone());
    out.push(Sample::new(
        "src is dst transposed (overlapping)",
        vec![ga(66, &[3, 3])],
        move |x| {
            let d = x[0].copy()?;
            o(&d, &d.t()?)?;
            Ok(vec![d])
        },
        move |r| vec![r[0].zip(&ref_t(&r[0]), &*ff)],
    ));
    out
}

/// Samples of a unary in-place op on contiguous, transposed, step-sliced, 0-dim and
/// zero-size destinations.
fn inplace_unary_samples(op: &IUOp, f: &URef, gen: Gen) -> Vec<Sample> {
    let mut out = Vec::new();
    let plain = |desc: &str, shape: &[usize], seed: u64| {
        let (o, ff) = (op.clone(), f.clone());
        Sample::new(
            desc,
            vec![gen(seed, shape)],
            move |x| {
                let d = x[0].copy()?;
                o(&d)?;
                Ok(vec![d])
            },
            move |r| vec![r[0].map(&*ff)],
        )
    };
    out.push(plain("contiguous [3,4]", &[3, 4], 1));
    out.push(plain("0-dim", &[], 2));
    out.push(plain("zero-size", &[0, 3], 3));
    let (o, ff) = (op.clone(), f.clone());
    out.push(Sample::new(
        "transposed dst",
        vec![gen(4, &[4, 3])],
        move |x| {
            let d = x[0].copy()?.t()?;
            o(&d)?;
            Ok(vec![d])
        },
        move |r| vec![ref_t(&r[0]).map(&*ff)],
    ));
    let (o, ff) = (op.clone(), f.clone());
    out.push(Sample::new(
        "step-slice dst",
        vec![gen(5, &[3, 8])],
        move |x| {
            let whole = x[0].copy()?;
            let d = whole.slice(1, Some(1), None, 2)?;
            o(&d)?;
            Ok(vec![d, whole])
        },
        move |r| {
            let (a, b) = ref_into_step(&r[0], &RefArray::scalar(0.0), &|a, _| ff(a));
            vec![a, b]
        },
    ));
    out
}

fn inplace_ops() -> Vec<OpInfo> {
    fn expanded() -> Result<Tensor> {
        any(1, &[3, 1]).expand(&[3, 4])
    }
    fn int_t3() -> Tensor {
        ints(1, &[3]).to_dtype(DType::I64).expect("cast")
    }
    let rec = |name: &'static str,
               dtypes: &[DType],
               ga: Gen,
               gb: Gen,
               op: fn(&Tensor, &Tensor) -> Result<()>,
               f: fn(f64, f64) -> f64| {
        let mut info = OpInfo::new(name, dtypes, false);
        info.samples = inplace_samples(&(Arc::new(op) as IOp), &(Arc::new(f) as BRef), ga, gb);
        info.error(ErrorCase::new("dst is an expanded view", move || op(&expanded()?, &any(2, &[3, 4])), is_arg))
            .error(ErrorCase::new(
                "src does not broadcast to dst",
                move || op(&any(1, &[3, 4]), &any(2, &[3])),
                is_shape,
            ))
            .error(ErrorCase::new("src larger than dst", move || op(&any(1, &[3, 4]), &any(2, &[2, 3, 4])), is_shape))
    };
    let irec = |name: &'static str, dtypes: &[DType], gen: Gen, op: fn(&Tensor) -> Result<()>, f: fn(f64) -> f64| {
        let mut info = OpInfo::new(name, dtypes, false);
        info.samples = inplace_unary_samples(&(Arc::new(op) as IUOp), &(Arc::new(f) as URef), gen);
        info.error(ErrorCase::new("dst is an expanded view", move || op(&expanded()?), is_arg))
    };
    let mut v = vec![
        rec("add_", NUMERIC, any, any, |d, s| d.add_(s), |a, b| a + b)
            .error(ErrorCase::new("i64 += f32 tensor", || int_t3().add_(&any(2, &[3]).to_dtype(DType::F32)?), is_arg))
            .error(ErrorCase::new("bool += i64 tensor", || int_t3().to_dtype(DType::Bool)?.add_(&int_t3()), is_arg)),
        rec("sub_", SIGNED, big, nonneg, |d, s| d.sub_(s), |a, b| a - b),
        rec("mul_", NUMERIC, any, any, |d, s| d.mul_(s), |a, b| a * b),
        rec("div_", FLOATS, any, away, |d, s| d.div_(s), |a, b| a / b).error(ErrorCase::new(
            "i64 /= i64 (true division needs a float dst)",
            || int_t3().div_(&int_t3()),
            is_arg,
        )),
        rec("copy_", ALL, any, any, |d, s| d.copy_(s), |_, b| b).error(ErrorCase::new(
            "0-dim dst, [2] src",
            || any(1, &[]).copy_(&any(2, &[2])),
            is_shape,
        )),
        irec("add_scalar_", NUMERIC, any, |d| d.add_scalar_(3), |a| a + 3.0).error(ErrorCase::new(
            "i64 += 2.5",
            || int_t3().add_scalar_(2.5),
            is_arg,
        )),
        irec("mul_scalar_", NUMERIC, any, |d| d.mul_scalar_(2), |a| a * 2.0).error(ErrorCase::new(
            "i64 *= 0.5",
            || int_t3().mul_scalar_(0.5),
            is_arg,
        )),
        irec("fill_", NUMERIC, any, |d| d.fill_(3), |_| 3.0),
        irec("zero_", ALL, any, |d| d.zero_(), |_| 0.0),
        irec("clamp_", FLOATS, any, |d| d.clamp_(Some(-0.5), Some(1.5)), |a| clamp_ref(a, Some(-0.5), Some(1.5)))
            .error(ErrorCase::new("no bounds", || any(1, &[3]).clamp_(None, None), is_arg)),
    ];
    // Float-valued scalar forms on float dtypes.
    {
        let o: IUOp = Arc::new(|d| d.add_scalar_(-1.5));
        let f: URef = Arc::new(|a| a - 1.5);
        let mut fr = OpInfo::new("add_scalar_", FLOATS, false);
        fr.samples = inplace_unary_samples(&o, &f, any);
        v.push(fr);
    }
    {
        let o: IUOp = Arc::new(|d| d.fill_(-2.5));
        let f: URef = Arc::new(|_| -2.5);
        let mut fr = OpInfo::new("fill_", FLOATS, false);
        fr.samples = inplace_unary_samples(&o, &f, any);
        v.push(fr);
        let o: IUOp = Arc::new(|d| d.mul_scalar_(0.25));
        let f: URef = Arc::new(|a| a * 0.25);
        let mut fr = OpInfo::new("mul_scalar_", FLOATS, false);
        fr.samples = inplace_unary_samples(&o, &f, any);
        v.push(fr);
    }
    // copy_ converts dtypes: an f64 source of 0/1 values into every destination dtype.
    if let Some(c) = v.iter_mut().find(|o| o.name == "copy_") {
        c.samples.push(
            Sample::new(
                "f64 src cast into dst dtype",
                vec![any(5, &[3, 4]), int_t(6, &[4], 0, 1)],
                |x| {
                    let d = x[0].copy()?;
                    d.copy_(&x[1])?;
                    Ok(vec![want(d, x[0].dtype())?])
                },
                |r| vec![ref_expand(&r[1], &[3, 4])],
            )
            .with_cast(vec![true, false]),
        );
    }
    let sa = |desc: &str, dshape: &[usize], sshape: &[usize], dim: isize, start: isize, d0: usize, len: usize| {
        let dshape2 = dshape.to_vec();
        Sample::new(
            desc,
            vec![any(1, dshape), any(2, sshape)],
            move |x| {
                let d = x[0].copy()?;
                d.slice_assign(dim, start, &x[1])?;
                Ok(vec![d])
            },
            move |r| {
                let ddim = if dim < 0 { (dim + dshape2.len() as isize) as usize } else { dim as usize };
                let n: usize = dshape2.iter().product();
                let mut out = r[0].clone();
                let mut sub_shape = dshape2.clone();
                sub_shape[ddim] = len;
                let src = ref_expand(&r[1], &sub_shape);
                for k in 0..n {
                    let idx = unravel(k, &dshape2);
                    if idx[ddim] >= d0 && idx[ddim] < d0 + len {
                        let mut j = idx.clone();
                        j[ddim] -= d0;
                        out.data[k] = src.at(&j);
                    }
                }
                vec![out]
            },
        )
    };
    v.push(
        OpInfo::new("slice_assign", ALL, false)
            .sample(sa("columns 2..4 of [4,5]", &[4, 5], &[4, 2], 1, 2, 2, 2))
            .sample(sa("last two rows (negative start)", &[4, 5], &[2, 5], 0, -2, 2, 2))
            .sample(sa("one row from a lower-rank src", &[4, 5], &[5], 0, 1, 1, 1))
            .sample(sa("src [1,2] broadcast over rows", &[4, 5], &[1, 2], 1, 0, 0, 2))
            .error(ErrorCase::new(
                "region past the end",
                || any(1, &[4, 5]).slice_assign(1, 4, &any(2, &[4, 2])),
                is_index,
            ))
            .error(ErrorCase::new(
                "dim out of range",
                || any(1, &[4, 5]).slice_assign(2, 0, &any(2, &[4, 2])),
                |e| matches!(e, Error::DimOutOfRange { .. }),
            ))
            .error(ErrorCase::new(
                "src shape mismatch",
                || any(1, &[4, 5]).slice_assign(1, 0, &any(2, &[3, 2])),
                is_shape,
            )),
    );
    v
}

/// The records of this family.
pub fn ops() -> Vec<OpInfo> {
    let mut v = arith_ops();
    v.extend(compare_ops());
    v.extend(unary_ops());
    v.extend(select_ops());
    v.extend(cast_ops());
    v.extend(misc_ops());
    v.extend(inplace_ops());
    v
}
