//! Op-table records for the reductions: sums, products, extrema and their indices,
//! logical reductions, statistics, norms and cumulative ops.
//!
//! Every reduction runs over a shared set of cases (all dims, single and multiple
//! dims, negative and unsorted dims, keepdim, 0-dim, size-1, zero-size, transposed,
//! sliced with a step, expanded, long and large inputs) against references that
//! gather the reduced elements with plain loops.

use std::sync::Arc;

use tensor_core::ops::reduce::NormOrd;
use tensor_core::{Error, Result, Tensor};

use crate::refs::unravel;
use crate::{call, rand_t, ErrorCase, OpInfo, Operand, RefArray, Sample, Var, ALL, FLOATS, NUMERIC};

/// A view applied to the input before reducing, mirrored in the reference.
#[derive(Clone, Debug)]
enum View {
    None,
    /// 2-D transpose.
    T,
    /// Every other index of dim 0.
    Step,
    /// `[1, n]` expanded to `[m, n]`.
    Expand(usize),
}

impl View {
    fn apply<T: Operand>(&self, t: &T) -> Result<T> {
        match self {
            View::None => Ok(t.clone()),
            View::T => t.t(),
            View::Step => t.slice(0, None, None, 2),
            View::Expand(m) => t.expand(&[*m as isize, t.tensor().dims()[1] as isize]),
        }
    }

    fn apply_ref(&self, a: &RefArray) -> RefArray {
        match self {
            View::None => a.clone(),
            View::T => {
                let (r, c) = (a.shape[0], a.shape[1]);
                let data = (0..c * r).map(|i| a.data[(i % r) * c + i / r]).collect();
                RefArray::new(vec![c, r], data)
            }
            View::Step => {
                let rows = a.shape[0].div_ceil(2);
                let inner: usize = a.shape[1..].iter().product();
                let data = (0..rows).flat_map(|i| a.data[2 * i * inner..(2 * i + 1) * inner].to_vec()).collect();
                let mut shape = a.shape.clone();
                shape[0] = rows;
                RefArray::new(shape, data)
            }
            View::Expand(m) => {
                let n = a.shape[1];
                RefArray::new(vec![*m, n], (0..m * n).map(|i| a.data[i % n]).collect())
            }
        }
    }
}

/// One input layout and reduction spec shared by the reduction records.
#[derive(Clone)]
struct Case {
    desc: String,
    input: Tensor,
    view: View,
    dims: Vec<isize>,
    keepdim: bool,
}

fn case(desc: &str, input: Tensor, view: View, dims: &[isize], keepdim: bool) -> Case {
    Case { desc: desc.to_string(), input, view, dims: dims.to_vec(), keepdim }
}

/// Which inputs a reduction accepts beyond the common cases.
#[derive(Clone, Copy)]
struct Opts {
    /// Zero-size reduced sets (sum, prod, all, any, mean, var: yes; max, argmax: no).
    empty: bool,
    /// Large inputs (tens of thousands of elements, crossing the parallel and block
    /// thresholds).
    large: bool,
    /// Value range of the random inputs.
    lo: f64,
    hi: f64,
}

const STD: Opts = Opts { empty: true, large: true, lo: -2.0, hi: 2.0 };

fn cases(o: Opts) -> Vec<Case> {
    let r = |seed, shape: &[usize]| rand_t(seed, shape, o.lo, o.hi);
    let mut v = vec![
        case("all dims of [3,4]", r(1, &[3, 4]), View::None, &[], false),
        case("dim 0 keepdim of [3,4]", r(2, &[3, 4]), View::None, &[0], true),
        case("dim -1 of [3,4]", r(3, &[3, 4]), View::None, &[-1], false),
        case("dims [0,2] of [2,3,4]", r(4, &[2, 3, 4]), View::None, &[0, 2], false),
        case("dims [2,0] keepdim of [2,3,4]", r(5, &[2, 3, 4]), View::None, &[2, 0], true),
        case("middle dim of [2,3,5]", r(6, &[2, 3, 5]), View::None, &[1], false),
        case("dims [-1,-2] of [2,3,4]", r(7, &[2, 3, 4]), View::None, &[-1, -2], true),
        case("0-dim, all dims", r(8, &[]), View::None, &[], false),
        case("0-dim, dim 0 keepdim", r(9, &[]), View::None, &[0], true),
        case("size-1 dim 0 of [1,5]", r(10, &[1, 5]), View::None, &[0], false),
        case("size-1 dim 1 of [5,1]", r(11, &[5, 1]), View::None, &[1], true),
        case("transposed [4,3]^T, dim 0", r(12, &[4, 3]), View::T, &[0], false),
        case("transposed [4,3]^T, dim 1", r(13, &[4, 3]), View::T, &[1], false),
        case("step-2 slice of [6,4], dim 1", r(14, &[6, 4]), View::Step, &[1], false),
        case("step-2 slice of [7,4], all", r(15, &[7, 4]), View::Step, &[], false),
        case("expanded [1,4] -> [3,4], dim 0", r(16, &[1, 4]), View::Expand(3), &[0], false),
        case("expanded [1,4] -> [3,4], dim 1", r(17, &[1, 4]), View::Expand(3), &[1], true),
        case("rows with a lane tail: [41,37] dim 0", r(18, &[41, 37]), View::None, &[0], false),
        case("long rows: [5,70] dim 1", r(19, &[5, 70]), View::None, &[1], false),
        case("zero-size output: [0,3] dim 1", r(20, &[0, 3]), View::None, &[1], false),
    ];
    if o.empty {
        v.push(case("zero-size reduced dim: [0,3] dim 0", r(21, &[0, 3]), View::None, &[0], false));
        v.push(case("zero-size tensor, all dims", r(22, &[2, 0]), View::None, &[], true));
    }
    if o.large {
        v.push(case("large [300,300] dim 0 (across outputs, parallel)", r(23, &[300, 300]), View::None, &[0], false));
        v.push(case("large [300,300] dim 1 (parallel)", r(24, &[300, 300]), View::None, &[1], false));
        v.push(case("large [300,300] all dims (two blocks)", r(25, &[300, 300]), View::None, &[], false));
        v.push(case("large transposed [300,290]^T dim 1", r(26, &[300, 290]), View::T, &[1], false));
    }
    v
}

/// NaNs and ties, for the extrema and their indices.
fn nan_and_tie_cases() -> Vec<Case> {
    let nan = f64::NAN;
    let t = |v: Vec<f64>, s: [usize; 2]| Tensor::from_vec(v, s).expect("shape matches data");
    vec![
        case("NaN propagates, dim 1", t(vec![1.0, nan, 3.0, 4.0, 5.0, 6.0], [2, 3]), View::None, &[1], false),
        case("NaN propagates, dim 0", t(vec![1.0, nan, 3.0, 4.0, 5.0, nan], [2, 3]), View::None, &[0], false),
        case("NaN propagates, all", t(vec![1.0, 2.0, 3.0, nan, 5.0, 6.0], [2, 3]), View::None, &[], false),
        case("ties keep the first, dim 1", t(vec![2.0, 5.0, 5.0, 1.0, 1.0, 0.0], [2, 3]), View::None, &[1], false),
        case("ties keep the first, dim 0", t(vec![2.0, 5.0, 5.0, 2.0, 5.0, 7.0], [2, 3]), View::None, &[0], false),
    ]
}

/// The reduced dims of a reference array: normalised, sorted; none for a 0-dim array.
fn ref_dims(rank: usize, dims: &[isize]) -> Vec<usize> {
    if rank == 0 {
        return Vec::new();
    }
    let mut d: Vec<usize> = if dims.is_empty() {
        (0..rank).collect()
    } else {
        dims.iter().map(|&d| if d < 0 { (d + rank as isize) as usize } else { d as usize }).collect()
    };
    d.sort_unstable();
    d
}

/// Applies `f` to the reduced elements (in row-major order) of every output.
fn ref_reduce(a: &RefArray, dims: &[isize], keepdim: bool, f: impl Fn(&[f64]) -> f64) -> RefArray {
    let rank = a.shape.len();
    let red = ref_dims(rank, dims);
    let kept_shape: Vec<usize> = (0..rank).map(|i| if red.contains(&i) { 1 } else { a.shape[i] }).collect();
    let red_shape: Vec<usize> = red.iter().map(|&i| a.shape[i]).collect();
    let n_out: usize = kept_shape.iter().product();
    let n_red: usize = red_shape.iter().product();
    let data = (0..n_out)
        .map(|o| {
            let oi = unravel(o, &kept_shape);
            let vals: Vec<f64> = (0..n_red)
                .map(|r| {
                    let ri = unravel(r, &red_shape);
                    let mut idx = oi.clone();
                    for (k, &d) in red.iter().enumerate() {
                        idx[d] = ri[k];
                    }
                    a.at(&idx)
                })
                .collect();
            f(&vals)
        })
        .collect();
    let shape = if keepdim { kept_shape } else { (0..rank).filter(|i| !red.contains(i)).map(|i| a.shape[i]).collect() };
    RefArray::new(shape, data)
}

fn r_sum(v: &[f64]) -> f64 {
    let mut s = 0.0;
    for x in v {
        s += x;
    }
    s
}

fn r_prod(v: &[f64]) -> f64 {
    let mut p = 1.0;
    for x in v {
        p *= x;
    }
    p
}

fn r_mean(v: &[f64]) -> f64 {
    r_sum(v) / v.len() as f64
}

fn r_max(v: &[f64]) -> f64 {
    let mut m = f64::NEG_INFINITY;
    for &x in v {
        if x.is_nan() {
            return x;
        }
        if x > m {
            m = x;
        }
    }
    m
}

fn r_min(v: &[f64]) -> f64 {
    -r_max(&v.iter().map(|x| -x).collect::<Vec<_>>())
}

/// Index of the first NaN, else of the first maximum (`max`) or minimum.
fn r_arg(v: &[f64], max: bool) -> f64 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x.is_nan() {
            return i as f64;
        }
        if (max && x > v[best]) || (!max && x < v[best]) {
            best = i;
        }
    }
    best as f64
}

fn r_var(v: &[f64], correction: f64) -> f64 {
    let m = r_mean(v);
    let mut ss = 0.0;
    for x in v {
        ss += (x - m) * (x - m);
    }
    ss / (v.len() as f64 - correction).max(0.0)
}

fn r_logsumexp(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NEG_INFINITY;
    }
    let m = r_max(v);
    if m.is_nan() || m.is_infinite() {
        return m;
    }
    let mut s = 0.0;
    for x in v {
        s += (x - m).exp();
    }
    m + s.ln()
}

fn r_norm(v: &[f64], ord: NormOrd) -> f64 {
    let abs: Vec<f64> = v.iter().map(|x| x.abs()).collect();
    match ord {
        NormOrd::Inf => r_max(&abs),
        NormOrd::NegInf => r_min(&abs),
        NormOrd::Fro => r_sum(&abs.iter().map(|x| x * x).collect::<Vec<_>>()).sqrt(),
        NormOrd::P(0.0) => abs.iter().filter(|&&x| x != 0.0).count() as f64,
        NormOrd::P(p) => r_sum(&abs.iter().map(|x| x.powf(p)).collect::<Vec<_>>()).powf(1.0 / p),
    }
}

type RefReduceFn = Arc<dyn Fn(&RefArray, &[isize], bool) -> Vec<RefArray> + Send + Sync>;

/// A reduction `(input, dims, keepdim)`, written once for `Tensor` and `Var` with
/// [`red!`] (differentiable records), or on tensors only.
#[derive(Clone)]
struct Red {
    tensor: TensorRed,
    var: Option<VarRed>,
}

/// A [`Red`] with both forms from one body.
macro_rules! red {
    (|$t:ident, $d:pat_param, $k:pat_param| $body:expr) => {
        Red {
            tensor: Arc::new(move |$t: &Tensor, $d: &[isize], $k: bool| -> Result<Vec<Tensor>> { $body }),
            var: Some(Arc::new(move |$t: &Var, $d: &[isize], $k: bool| -> Result<Vec<Var>> { $body })),
        }
    };
}

/// A [`Red`] on tensors only (the reductions without a gradient).
fn red_nd(f: impl Fn(&Tensor, &[isize], bool) -> Result<Vec<Tensor>> + Send + Sync + 'static) -> Red {
    Red { tensor: Arc::new(f), var: None }
}

/// Samples of one reduction over `cases`.
fn samples(cases: Vec<Case>, op: Red, reference: RefReduceFn) -> Vec<Sample> {
    cases
        .into_iter()
        .map(|c| {
            let reference = reference.clone();
            let (v1, v2, d1, d2) = (c.view.clone(), c.view, c.dims.clone(), c.dims);
            let k = c.keepdim;
            let r = move |x: &[RefArray]| reference(&v2.apply_ref(&x[0]), &d2, k);
            match &op.var {
                Some(var) => {
                    let (tensor, var) = (op.tensor.clone(), var.clone());
                    Sample::call(
                        c.desc,
                        vec![c.input],
                        call!([v1, d1, tensor, var] | x | T::run_red(&tensor, &var, &v1.apply(&x[0])?, &d1, k)),
                        r,
                    )
                }
                None => {
                    let tensor = op.tensor.clone();
                    Sample::new(c.desc, vec![c.input], move |x| tensor(&v1.apply(&x[0])?, &d1, k), r)
                }
            }
        })
        .collect()
}

type TensorRed = Arc<dyn Fn(&Tensor, &[isize], bool) -> Result<Vec<Tensor>> + Send + Sync>;
type VarRed = Arc<dyn Fn(&Var, &[isize], bool) -> Result<Vec<Var>> + Send + Sync>;

/// Picks the side of a [`Red`] for the operand type.
trait RunRed: Sized {
    fn run_red(t: &TensorRed, v: &VarRed, x: &Self, d: &[isize], k: bool) -> Result<Vec<Self>>;
}
impl RunRed for Tensor {
    fn run_red(t: &TensorRed, _: &VarRed, x: &Self, d: &[isize], k: bool) -> Result<Vec<Self>> {
        t(x, d, k)
    }
}
impl RunRed for Var {
    fn run_red(_: &TensorRed, v: &VarRed, x: &Self, d: &[isize], k: bool) -> Result<Vec<Self>> {
        v(x, d, k)
    }
}

fn record(
    name: &'static str,
    dtypes: &[tensor_core::DType],
    cases: Vec<Case>,
    op: Red,
    reference: impl Fn(&RefArray, &[isize], bool) -> Vec<RefArray> + Send + Sync + 'static,
) -> OpInfo {
    let mut info = OpInfo::new(name, dtypes, op.var.is_some());
    info.samples = samples(cases, op, Arc::new(reference));
    info
}

fn is_dim(e: &Error) -> bool {
    matches!(e, Error::DimOutOfRange { .. })
}
fn is_arg(e: &Error) -> bool {
    matches!(e, Error::InvalidArgument { .. })
}
fn is_unsupported(e: &Error) -> bool {
    matches!(e, Error::Unsupported { .. })
}

/// The error cases every dims-taking reduction shares.
fn dim_errors(name: &str, op: fn(&Tensor, &[isize]) -> Result<Tensor>) -> Vec<ErrorCase> {
    let t = || rand_t(1, &[2, 3], -1.0, 1.0);
    let s = || rand_t(2, &[], -1.0, 1.0);
    vec![
        ErrorCase::new(format!("{name}: dim 2 of a rank-2 tensor"), move || op(&t(), &[2]), is_dim),
        ErrorCase::new(format!("{name}: dim -3 of a rank-2 tensor"), move || op(&t(), &[-3]), is_dim),
        ErrorCase::new(format!("{name}: dim 1 of a 0-dim tensor"), move || op(&s(), &[1]), is_dim),
        ErrorCase::new(format!("{name}: duplicate dims [0, -2]"), move || op(&t(), &[0, -2]), is_arg),
    ]
}

fn with_errors(mut info: OpInfo, errors: Vec<ErrorCase>) -> OpInfo {
    info.errors.extend(errors);
    info
}

fn one<T>(t: Result<T>) -> Result<Vec<T>> {
    Ok(vec![t?])
}

/// Both results of a two-output op (the second may be a plain index tensor).
fn two<T, U: Into<T>>(t: Result<(T, U)>) -> Result<Vec<T>> {
    let (a, b) = t?;
    Ok(vec![a, b.into()])
}

fn int_input() -> Tensor {
    crate::int_t(3, &[2, 3], -3, 3).to_dtype(tensor_core::DType::I64).expect("cast to i64")
}

fn empty_input() -> Tensor {
    rand_t(4, &[0, 3], -1.0, 1.0)
}

fn sum_like() -> Vec<OpInfo> {
    let prod_opts = Opts { empty: true, large: false, lo: 0.5, hi: 1.5 };
    let mut prod_cases = cases(prod_opts);
    prod_cases.push(case("large [200,100] dim 0", rand_t(30, &[200, 100], 0.97, 1.03), View::None, &[0], false));
    // Zeros: the gradient of a product with one zero is the product of the others
    // at the zero and 0 elsewhere; with two zeros it is 0 everywhere.
    let t23 = |v: Vec<f64>| Tensor::from_vec(v, [2, 3]).expect("shape matches data");
    prod_cases.push(case(
        "one zero in a row, dim 1",
        t23(vec![1.5, 0.0, 2.0, -1.0, 0.5, 3.0]),
        View::None,
        &[1],
        false,
    ));
    prod_cases.push(case("two zeros, all dims", t23(vec![0.0, 0.0, 2.0, -1.0, 0.5, 3.0]), View::None, &[], false));
    vec![
        with_errors(
            record("sum", ALL, cases(STD), red!(|t, d, k| one(t.sum(d, k))), |a, d, k| {
                vec![ref_reduce(a, d, k, r_sum)]
            })
            .covers(&["sum_all"]),
            dim_errors("sum", |t, d| t.sum(d, false)),
        ),
        record("sum_all", ALL, cases(STD), red!(|t, _, _| one(t.sum_all())), |a, _, _| {
            vec![ref_reduce(a, &[], false, r_sum)]
        }),
        with_errors(
            record("prod", ALL, prod_cases, red!(|t, d, k| one(t.prod(d, k))), |a, d, k| {
                vec![ref_reduce(a, d, k, r_prod)]
            }),
            dim_errors("prod", |t, d| t.prod(d, false)),
        ),
        record("prod_all", ALL, cases(prod_opts), red!(|t, _, _| one(t.prod_all())), |a, _, _| {
            vec![ref_reduce(a, &[], false, r_prod)]
        }),
        with_errors(
            record("mean", FLOATS, cases(STD), red!(|t, d, k| one(t.mean(d, k))), |a, d, k| {
                vec![ref_reduce(a, d, k, r_mean)]
            }),
            {
                let mut e = dim_errors("mean", |t, d| t.mean(d, false));
                e.push(ErrorCase::new("mean of an i64 tensor", || int_input().mean(&[], false), is_unsupported));
                e.push(ErrorCase::new(
                    "mean of a bool tensor",
                    || int_input().gt_scalar(0)?.mean(&[0], false),
                    is_unsupported,
                ));
                e
            },
        ),
        with_errors(
            record("mean_all", FLOATS, cases(STD), red!(|t, _, _| one(t.mean_all())), |a, _, _| {
                vec![ref_reduce(a, &[], false, r_mean)]
            }),
            vec![ErrorCase::new("mean_all of an i64 tensor", || int_input().mean_all(), is_unsupported)],
        ),
        with_errors(
            record("all", ALL, cases(STD), red_nd(|t, d, k| one(t.all(d, k))), |a, d, k| {
                vec![ref_reduce(a, d, k, |v| v.iter().all(|&x| x != 0.0) as u8 as f64)]
            }),
            dim_errors("all", |t, d| t.all(d, false)),
        ),
        with_errors(
            record("any", ALL, cases(STD), red_nd(|t, d, k| one(t.any(d, k))), |a, d, k| {
                vec![ref_reduce(a, d, k, |v| v.iter().any(|&x| x != 0.0) as u8 as f64)]
            }),
            dim_errors("any", |t, d| t.any(d, false)),
        ),
    ]
}

fn extrema() -> Vec<OpInfo> {
    let no_empty = Opts { empty: false, ..STD };
    let ext = || {
        let mut c = cases(no_empty);
        c.extend(nan_and_tie_cases());
        c
    };
    // The whole-tensor extrema have no identity: PyTorch errors on any empty input.
    let ext_all = || ext().into_iter().filter(|c| c.input.numel() > 0).collect::<Vec<_>>();
    // Single-dim cases for the ops that take one dim.
    let one_dim = || {
        ext()
            .into_iter()
            .filter(|c| c.dims.len() == 1 || (c.input.rank() == 0 && c.dims.is_empty()))
            .map(|mut c| {
                if c.dims.is_empty() {
                    c.dims = vec![0];
                }
                c
            })
            .collect::<Vec<_>>()
    };
    let empty_err = |name: &'static str, f: fn(&Tensor) -> Result<Tensor>| {
        ErrorCase::new(format!("{name} over a zero-size dim"), move || f(&empty_input()), is_arg)
    };
    let arg_ref = |max: bool| {
        move |a: &RefArray, d: &[isize], k: bool| -> Vec<RefArray> {
            let d = if a.shape.is_empty() { vec![] } else { d.to_vec() };
            let r = ref_reduce(a, &d, k, |v| r_arg(v, max));
            if a.shape.is_empty() {
                vec![RefArray::scalar(0.0)]
            } else {
                vec![r]
            }
        }
    };
    vec![
        with_errors(
            record("amax", ALL, ext(), red!(|t, d, k| one(t.amax(d, k))), |a, d, k| vec![ref_reduce(a, d, k, r_max)]),
            {
                let mut e = dim_errors("amax", |t, d| t.amax(d, false));
                e.push(empty_err("amax", |t| t.amax(&[0], false)));
                e
            },
        ),
        with_errors(
            record("amin", ALL, ext(), red!(|t, d, k| one(t.amin(d, k))), |a, d, k| vec![ref_reduce(a, d, k, r_min)]),
            {
                let mut e = dim_errors("amin", |t, d| t.amin(d, false));
                e.push(empty_err("amin", |t| t.amin(&[0], true)));
                e
            },
        ),
        with_errors(
            record("max_all", ALL, ext_all(), red!(|t, _, _| one(t.max_all())), |a, _, _| {
                vec![ref_reduce(a, &[], false, r_max)]
            }),
            vec![empty_err("max_all", |t| t.max_all())],
        ),
        with_errors(
            record("min_all", ALL, ext_all(), red!(|t, _, _| one(t.min_all())), |a, _, _| {
                vec![ref_reduce(a, &[], false, r_min)]
            }),
            vec![empty_err("min_all", |t| t.min_all())],
        ),
        with_errors(
            record("argmax", NUMERIC, one_dim(), red_nd(|t, d, k| one(t.argmax(d[0], k))), arg_ref(true)),
            vec![
                empty_err("argmax", |t| t.argmax(0, false)),
                ErrorCase::new(
                    "argmax dim 2 of a rank-2 tensor",
                    || rand_t(1, &[2, 3], 0.0, 1.0).argmax(2, false),
                    is_dim,
                ),
                ErrorCase::new("argmax dim 1 of a 0-dim tensor", || rand_t(1, &[], 0.0, 1.0).argmax(1, false), is_dim),
            ],
        ),
        with_errors(
            record("argmin", NUMERIC, one_dim(), red_nd(|t, d, k| one(t.argmin(d[0], k))), arg_ref(false)),
            vec![
                empty_err("argmin", |t| t.argmin(0, true)),
                ErrorCase::new(
                    "argmin dim -3 of a rank-2 tensor",
                    || rand_t(1, &[2, 3], 0.0, 1.0).argmin(-3, false),
                    is_dim,
                ),
            ],
        ),
        with_errors(
            record("max_dim", NUMERIC, one_dim(), red!(|t, d, k| two(t.max_dim(d[0], k))), move |a, d, k| {
                let mut v = vec![ref_reduce(a, d, k, r_max)];
                v.extend(arg_ref(true)(a, d, k));
                v
            }),
            vec![empty_err("max_dim", |t| t.max_dim(0, false).map(|p| p.0))],
        ),
        with_errors(
            record("min_dim", NUMERIC, one_dim(), red!(|t, d, k| two(t.min_dim(d[0], k))), move |a, d, k| {
                let mut v = vec![ref_reduce(a, d, k, r_min)];
                v.extend(arg_ref(false)(a, d, k));
                v
            }),
            vec![empty_err("min_dim", |t| t.min_dim(0, false).map(|p| p.0))],
        ),
    ]
}

fn statistics() -> Vec<OpInfo> {
    // Correction 1 (PyTorch's default), 0 (population) and one past N for the size-1 cases.
    let var_cases = |c: f64| {
        cases(STD)
            .into_iter()
            .map(move |mut k| {
                k.desc = format!("{} (correction {c})", k.desc);
                (k, c)
            })
            .collect::<Vec<_>>()
    };
    let mut var = OpInfo::new("var", FLOATS, true);
    let mut std = OpInfo::new("std", FLOATS, true);
    let mut var_mean = OpInfo::new("var_mean", FLOATS, true);
    let mut std_mean = OpInfo::new("std_mean", FLOATS, true);
    for corr in [1.0, 0.0, 2.5] {
        let cs: Vec<Case> = var_cases(corr).into_iter().map(|(k, _)| k).collect();
        var.samples.extend(samples(
            cs.clone(),
            red!(|t, d, k| one(t.var(d, corr, k))),
            Arc::new(move |a, d, k| vec![ref_reduce(a, d, k, |v| r_var(v, corr))]),
        ));
        std.samples.extend(samples(
            cs.clone(),
            red!(|t, d, k| one(t.std(d, corr, k))),
            Arc::new(move |a, d, k| vec![ref_reduce(a, d, k, |v| r_var(v, corr).sqrt())]),
        ));
        var_mean.samples.extend(samples(
            cs.clone(),
            red!(|t, d, k| two(t.var_mean(d, corr, k))),
            Arc::new(move |a, d, k| vec![ref_reduce(a, d, k, |v| r_var(v, corr)), ref_reduce(a, d, k, r_mean)]),
        ));
        std_mean.samples.extend(samples(
            cs,
            red!(|t, d, k| two(t.std_mean(d, corr, k))),
            Arc::new(move |a, d, k| vec![ref_reduce(a, d, k, |v| r_var(v, corr).sqrt()), ref_reduce(a, d, k, r_mean)]),
        ));
    }
    var.errors = dim_errors("var", |t, d| t.var(d, 1.0, false));
    var.errors.push(ErrorCase::new("var of an i64 tensor", || int_input().var(&[], 1.0, false), is_unsupported));
    var.errors.push(ErrorCase::new(
        "var with a NaN correction",
        || rand_t(1, &[3], 0.0, 1.0).var(&[], f64::NAN, false),
        is_arg,
    ));
    std.errors = dim_errors("std", |t, d| t.std(d, 1.0, false));
    std.errors.push(ErrorCase::new("std of an i64 tensor", || int_input().std(&[0], 0.0, true), is_unsupported));
    var_mean.errors.push(ErrorCase::new(
        "var_mean of an i64 tensor",
        || int_input().var_mean(&[], 1.0, false),
        is_unsupported,
    ));
    std_mean.errors.push(ErrorCase::new(
        "std_mean dim 5",
        || rand_t(1, &[2, 3], 0.0, 1.0).std_mean(&[5], 1.0, false),
        is_dim,
    ));

    let mut lse_cases = cases(Opts { lo: -30.0, hi: 30.0, ..STD });
    let inf = f64::INFINITY;
    let t = |v: Vec<f64>| Tensor::from_vec(v, [2, 3]).expect("shape matches data");
    lse_cases.push(case(
        "huge values stay finite",
        t(vec![1000.0, 1001.0, 999.0, -1000.0, -1001.0, -999.0]),
        View::None,
        &[1],
        false,
    ));
    lse_cases.push(case(
        "-inf rows give -inf, +inf gives +inf",
        t(vec![-inf, -inf, -inf, 1.0, inf, 2.0]),
        View::None,
        &[1],
        true,
    ));
    lse_cases.push(case("NaN propagates", t(vec![f64::NAN, 1.0, 2.0, 3.0, 4.0, 5.0]), View::None, &[0], false));
    let logsumexp = with_errors(
        record("logsumexp", FLOATS, lse_cases, red!(|t, d, k| one(t.logsumexp(d, k))), |a, d, k| {
            vec![ref_reduce(a, d, k, r_logsumexp)]
        }),
        dim_errors("logsumexp", |t, d| t.logsumexp(d, false)),
    );

    let mut norm = OpInfo::new("norm", FLOATS, true);
    let ords: [(NormOrd, &str, bool); 7] = [
        (NormOrd::P(1.0), "p=1", true),
        (NormOrd::P(2.0), "p=2", true),
        (NormOrd::Fro, "fro", true),
        (NormOrd::P(3.0), "p=3", true),
        (NormOrd::P(0.0), "p=0", true),
        (NormOrd::Inf, "inf", false),
        (NormOrd::NegInf, "-inf", false),
    ];
    for (ord, label, empty) in ords {
        let cs = cases(Opts { empty, ..STD })
            .into_iter()
            .map(|mut c| {
                c.desc = format!("{label}: {}", c.desc);
                c
            })
            .collect();
        norm.samples.extend(samples(
            cs,
            red!(|t, d, k| one(t.norm(ord, d, k))),
            Arc::new(move |a, d, k| vec![ref_reduce(a, d, k, |v| r_norm(v, ord))]),
        ));
    }
    norm.samples.push(Sample::call(
        "f64 order 2.0 converts to NormOrd::P(2)",
        vec![rand_t(40, &[3, 4], -2.0, 2.0)],
        call!(|x| one(x[0].norm(2.0, &[1], false))),
        |a| vec![ref_reduce(&a[0], &[1], false, |v| r_norm(v, NormOrd::P(2.0)))],
    ));
    norm.samples.push(Sample::call(
        "f64 order INFINITY converts to NormOrd::Inf",
        vec![rand_t(41, &[3, 4], -2.0, 2.0)],
        call!(|x| one(x[0].norm(f64::INFINITY, &[0], true))),
        |a| vec![ref_reduce(&a[0], &[0], true, |v| r_norm(v, NormOrd::Inf))],
    ));
    norm.samples.push(Sample::call(
        "p=0.5 of positive values, dim 1",
        vec![rand_t(42, &[3, 4], 0.5, 2.0)],
        call!(|x| one(x[0].norm(0.5, &[1], false))),
        |a| vec![ref_reduce(&a[0], &[1], false, |v| r_norm(v, NormOrd::P(0.5)))],
    ));
    norm.errors = dim_errors("norm", |t, d| t.norm(2.0, d, false));
    norm.errors.push(ErrorCase::new("norm of an i64 tensor", || int_input().norm(1.0, &[], false), is_unsupported));
    norm.errors.push(ErrorCase::new(
        "norm with p = NaN",
        || rand_t(1, &[3], 0.0, 1.0).norm(f64::NAN, &[], false),
        is_arg,
    ));
    norm.errors.push(ErrorCase::new(
        "inf norm of an empty tensor",
        || empty_input().norm(NormOrd::Inf, &[], false),
        is_arg,
    ));
    norm.errors.push(ErrorCase::new(
        "-inf norm over a zero-size dim",
        || empty_input().norm(f64::NEG_INFINITY, &[0], false),
        is_arg,
    ));

    vec![var, std, var_mean, std_mean, logsumexp, norm]
}

/// Running fold along `dim` of a reference array.
fn ref_scan(a: &RefArray, dim: isize, sum: bool) -> RefArray {
    let rank = a.shape.len();
    if rank == 0 {
        return a.clone();
    }
    let d = if dim < 0 { (dim + rank as isize) as usize } else { dim as usize };
    let data = (0..a.numel())
        .map(|i| {
            let idx = unravel(i, &a.shape);
            let mut acc = if sum { 0.0 } else { 1.0 };
            for j in 0..=idx[d] {
                let mut k = idx.clone();
                k[d] = j;
                acc = if sum { acc + a.at(&k) } else { acc * a.at(&k) };
            }
            acc
        })
        .collect();
    RefArray::new(a.shape.clone(), data)
}

fn scans() -> Vec<OpInfo> {
    let scan_cases = |lo: f64, hi: f64| -> Vec<(String, Tensor, View, isize)> {
        let r = |seed, shape: &[usize]| rand_t(seed, shape, lo, hi);
        vec![
            ("dim 0 of [3,4]".into(), r(1, &[3, 4]), View::None, 0),
            ("dim -1 of [3,4]".into(), r(2, &[3, 4]), View::None, -1),
            ("middle dim of [2,3,4]".into(), r(3, &[2, 3, 4]), View::None, 1),
            ("0-dim, dim 0".into(), r(4, &[]), View::None, 0),
            ("0-dim, dim -1".into(), r(5, &[]), View::None, -1),
            ("size-1 dim of [1,5]".into(), r(6, &[1, 5]), View::None, 0),
            ("zero-size dim 0 of [0,3]".into(), r(7, &[0, 3]), View::None, 0),
            ("dim 0 of zero-size [3,0]".into(), r(8, &[3, 0]), View::None, 0),
            ("transposed [4,3]^T dim 1".into(), r(9, &[4, 3]), View::T, 1),
            ("step-2 slice of [6,4] dim 0".into(), r(10, &[6, 4]), View::Step, 0),
            ("expanded [1,4] -> [3,4] dim 0".into(), r(11, &[1, 4]), View::Expand(3), 0),
            ("long [50,3] dim 0".into(), r(12, &[50, 3]), View::None, 0),
            (
                "with zeros, dim 1".into(),
                Tensor::from_vec(vec![1.5, 0.0, 2.0, -1.0, 0.0, 3.0], [2, 3]).expect("shape matches data"),
                View::None,
                1,
            ),
        ]
    };
    let mk = |name: &'static str, sum: bool, lo: f64, hi: f64| {
        let mut info = OpInfo::new(name, ALL, true);
        for (desc, input, view, dim) in scan_cases(lo, hi) {
            let (v1, v2) = (view.clone(), view);
            info.samples.push(Sample::call(
                desc,
                vec![input],
                call!(
                    [v1] | x | {
                        let t = v1.apply(&x[0])?;
                        one(if sum { t.cumsum(dim) } else { t.cumprod(dim) })
                    }
                ),
                move |x| vec![ref_scan(&v2.apply_ref(&x[0]), dim, sum)],
            ));
        }
        let f: fn(&Tensor, isize) -> Result<Tensor> = if sum { |t, d| t.cumsum(d) } else { |t, d| t.cumprod(d) };
        info.errors.push(ErrorCase::new(
            format!("{name} dim 2 of a rank-2 tensor"),
            move || f(&rand_t(1, &[2, 3], 0.0, 1.0), 2),
            is_dim,
        ));
        info.errors.push(ErrorCase::new(
            format!("{name} dim 1 of a 0-dim tensor"),
            move || f(&rand_t(1, &[], 0.0, 1.0), 1),
            is_dim,
        ));
        info
    };
    vec![mk("cumsum", true, -2.0, 2.0), mk("cumprod", false, 0.5, 1.5)]
}

/// The records of this family.
pub fn ops() -> Vec<OpInfo> {
    let mut v = sum_like();
    v.extend(extrema());
    v.extend(statistics());
    v.extend(scans());
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_reduce_matches_hand_values() {
        let a = RefArray::new(vec![2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(ref_reduce(&a, &[0], false, r_sum).data, vec![5.0, 7.0, 9.0]);
        assert_eq!(ref_reduce(&a, &[-1], true, r_sum).shape, vec![2, 1]);
        assert_eq!(ref_reduce(&a, &[], false, r_prod).data, vec![720.0]);
        assert_eq!(r_arg(&[1.0, 3.0, 3.0], true), 1.0);
        assert_eq!(r_arg(&[1.0, f64::NAN, 0.0], false), 1.0);
        assert_eq!(View::T.apply_ref(&a).data, vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        assert_eq!(View::Step.apply_ref(&a).data, vec![1.0, 2.0, 3.0]);
        assert_eq!(ref_scan(&a, 1, true).data, vec![1.0, 3.0, 6.0, 4.0, 9.0, 15.0]);
    }
}
