//! gradcheck (and gradgradcheck) for every `Var` op, on broadcast, 0-dim, size-1
//! and non-contiguous inputs.

use autograd::{gradcheck, gradgradcheck, Var};
use op_table::{non_contiguous, rand_t, RefArray};
use tensor_core::ops::reduce::NormOrd;
use tensor_core::{PadMode, Result, Tensor};

type VarFn = Box<dyn Fn(&[Var]) -> Result<Vec<Var>>>;

struct Case {
    name: &'static str,
    inputs: Vec<Tensor>,
    f: VarFn,
}

fn case(name: &'static str, inputs: Vec<Tensor>, f: impl Fn(&[Var]) -> Result<Var> + 'static) -> Case {
    Case { name, inputs, f: Box::new(move |v| Ok(vec![f(v)?])) }
}

/// Values in [-2, 2).
fn r(seed: u64, shape: &[usize]) -> Tensor {
    rand_t(seed, shape, -2.0, 2.0)
}

/// Values in [0.5, 2) (positive, away from 0).
fn p(seed: u64, shape: &[usize]) -> Tensor {
    rand_t(seed, shape, 0.5, 2.0)
}

/// A transposed view of random values with the given (final) shape.
fn tr(seed: u64, shape: &[usize]) -> Tensor {
    let mut s = shape.to_vec();
    s.reverse();
    let n = s.len() as isize;
    let perm: Vec<isize> = (0..n).rev().collect();
    r(seed, &s).permute(&perm).unwrap()
}

fn unary_cases() -> Vec<Case> {
    type U = fn(&Var) -> Result<Var>;
    let ops: Vec<(&'static str, U, bool)> = vec![
        ("neg", |x| x.neg(), false),
        ("exp", |x| x.exp(), false),
        ("log", |x| x.log(), true),
        ("log1p", |x| x.log1p(), true),
        ("expm1", |x| x.expm1(), false),
        ("sqrt", |x| x.sqrt(), true),
        ("rsqrt", |x| x.rsqrt(), true),
        ("sin", |x| x.sin(), false),
        ("cos", |x| x.cos(), false),
        ("tan", |x| x.mul_scalar(0.5)?.tan(), false),
        ("tanh", |x| x.tanh(), false),
        ("sigmoid", |x| x.sigmoid(), false),
        ("relu", |x| x.relu(), false),
        ("gelu", |x| x.gelu(), false),
        ("gelu_tanh", |x| x.gelu_tanh(), false),
        ("silu", |x| x.silu(), false),
        ("reciprocal", |x| x.reciprocal(), true),
        ("square", |x| x.square(), false),
        ("erf", |x| x.erf(), false),
        ("abs", |x| x.abs(), false),
        ("sign", |x| x.sign(), false),
        ("floor", |x| x.floor(), false),
        ("ceil", |x| x.ceil(), false),
        ("round", |x| x.round(), false),
        ("trunc", |x| x.trunc(), false),
        ("leaky_relu", |x| x.leaky_relu(0.1), false),
        ("elu", |x| x.elu(0.7), false),
        ("elu alpha 0", |x| x.elu(0.0), false),
        ("elu negative alpha", |x| x.elu(-0.6), false),
        ("softplus", |x| x.softplus(1.5, 2.0), false),
        ("clamp", |x| x.clamp(Some(-1.0), Some(1.0)), false),
        ("clamp_min", |x| x.clamp(Some(-0.5), None), false),
        ("pow_scalar", |x| x.pow_scalar(2.5), true),
        ("pow_scalar_int", |x| x.pow_scalar(3.0), false),
        ("add_scalar", |x| x.add_scalar(2.0), false),
        ("sub_scalar", |x| x.sub_scalar(2.0), false),
        ("mul_scalar", |x| x.mul_scalar(-3.0), false),
        ("div_scalar", |x| x.div_scalar(4.0), false),
        ("rsub_scalar", |x| x.rsub_scalar(1.5), false),
        ("rdiv_scalar", |x| x.rdiv_scalar(2.0), true),
        ("maximum_scalar", |x| x.maximum_scalar(0.3), false),
        ("minimum_scalar", |x| x.minimum_scalar(0.3), false),
        ("remainder_scalar", |x| x.remainder_scalar(0.7), false),
        ("atan2_scalar", |x| x.atan2_scalar(0.7), false),
        ("masked_fill", |x| x.masked_fill(&x.tensor().gt_scalar(0.5)?, 3.0), false),
    ];
    let mut out = Vec::new();
    for (i, (name, f, positive)) in ops.into_iter().enumerate() {
        let s = 100 + 10 * i as u64;
        let gen = if positive { p } else { r };
        out.push(case(name, vec![gen(s, &[2, 3])], move |v| f(&v[0])));
        out.push(case(name, vec![gen(s + 1, &[])], move |v| f(&v[0])));
        out.push(case(name, vec![non_contiguous(&gen(s + 2, &[3, 2])).unwrap()], move |v| f(&v[0])));
        out.push(case(name, vec![gen(s + 3, &[0, 2])], move |v| f(&v[0])));
    }
    out
}

fn binary_cases() -> Vec<Case> {
    type B = fn(&Var, &Var) -> Result<Var>;
    let ops: Vec<(&'static str, B, bool)> = vec![
        ("add", |a, b| a.add(b), false),
        ("sub", |a, b| a.sub(b), false),
        ("mul", |a, b| a.mul(b), false),
        ("div", |a, b| a.div(b), true),
        ("pow", |a, b| a.pow(b), true),
        ("maximum", |a, b| a.maximum(b), false),
        ("minimum", |a, b| a.minimum(b), false),
        ("atan2", |a, b| a.atan2(b), true),
        ("remainder", |a, b| a.remainder(b), true),
        ("operator +", |a, b| a + b, false),
        ("operator -", |a, b| a - b, false),
        ("operator *", |a, b| a * b, false),
        ("operator /", |a, b| a / b, true),
        ("where", |a, b| Var::where_cond(&a.tensor().gt(b.tensor())?, a, b), false),
    ];
    let mut out = Vec::new();
    for (i, (name, f, positive)) in ops.into_iter().enumerate() {
        let s = 500 + 10 * i as u64;
        let gen = if positive { p } else { r };
        // A negative base with a fractional exponent is NaN (as in PyTorch), so pow
        // gets positive bases.
        let first = if name == "pow" { p } else { r };
        let t6 = if name == "pow" { p(s + 6, &[2, 3]).t().unwrap() } else { tr(s + 6, &[3, 2]) };
        out.push(case(name, vec![first(s, &[2, 3]), gen(s + 1, &[2, 3])], move |v| f(&v[0], &v[1])));
        out.push(case(name, vec![first(s + 2, &[3, 1]), gen(s + 3, &[4])], move |v| f(&v[0], &v[1])));
        out.push(case(name, vec![first(s + 4, &[]), gen(s + 5, &[2, 2])], move |v| f(&v[0], &v[1])));
        out.push(case(name, vec![t6, gen(s + 7, &[1, 2])], move |v| f(&v[0], &v[1])));
    }
    // pow with a positive base on the left for the exponent's gradient.
    out.push(case("pow base", vec![p(590, &[2, 3]), r(591, &[2, 3])], |v| v[0].pow(&v[1])));
    out
}

fn view_cases() -> Vec<Case> {
    let x = || r(700, &[2, 3, 4]);
    let xt = || tr(701, &[2, 3, 4]);
    vec![
        case("view", vec![x()], |v| v[0].view(&[6, -1])),
        case("reshape", vec![xt()], |v| v[0].reshape(&[4, 6])),
        case("reshape_to", vec![x()], |v| v[0].reshape_to([24])),
        case("flatten", vec![xt()], |v| v[0].flatten(1, 2)),
        case("unflatten", vec![x()], |v| v[0].unflatten(2, &[2, 2])),
        case("contiguous", vec![xt()], |v| v[0].contiguous()),
        case("copy", vec![xt()], |v| v[0].copy()),
        case("permute", vec![x()], |v| v[0].permute(&[2, 0, 1])),
        case("transpose", vec![xt()], |v| v[0].transpose(0, -1)),
        case("t", vec![r(702, &[3, 5])], |v| v[0].t()),
        case("mt", vec![x()], |v| v[0].mt()),
        case("narrow", vec![xt()], |v| v[0].narrow(1, 1, 2)),
        case("narrow negative", vec![x()], |v| v[0].narrow(-1, -3, 2)),
        case("slice", vec![x()], |v| v[0].slice(2, Some(1), None, 2)),
        case("slice clamp", vec![xt()], |v| v[0].slice(1, Some(-100), Some(100), 2)),
        case("select", vec![xt()], |v| v[0].select(1, -1)),
        case("select 1-D", vec![r(703, &[5])], |v| v[0].select(0, 2)),
        case("unsqueeze", vec![x()], |v| v[0].unsqueeze(-1)),
        case("squeeze", vec![r(704, &[2, 1, 3])], |v| v[0].squeeze(1)),
        case("squeeze_all", vec![r(705, &[1, 3, 1])], |v| v[0].squeeze_all()),
        case("expand", vec![r(706, &[3, 1])], |v| v[0].expand(&[2, 3, 4])),
        case("broadcast_to", vec![r(707, &[])], |v| v[0].broadcast_to([2, 2])),
        case("expand_as", vec![r(708, &[1, 4]), r(709, &[3, 4])], |v| v[0].expand_as(&v[1])?.mul(&v[1])),
        case("sum_to", vec![r(710, &[2, 3, 4])], |v| v[0].sum_to(&[3, 1])),
        case("view of a view", vec![x()], |v| v[0].transpose(0, 1)?.narrow(0, 1, 2)?.reshape(&[-1])),
    ]
}

fn reduce_cases() -> Vec<Case> {
    let x = || r(800, &[2, 3, 4]);
    let xt = || tr(801, &[2, 3, 4]);
    vec![
        case("sum all", vec![xt()], |v| v[0].sum(&[], false)),
        case("sum dims keepdim", vec![x()], |v| v[0].sum(&[0, -1], true)),
        case("sum dim", vec![xt()], |v| v[0].sum(&[1], false)),
        case("sum 0-dim", vec![r(802, &[])], |v| v[0].sum(&[], false)),
        case("sum zero-size", vec![r(803, &[0, 3])], |v| v[0].sum(&[0], false)),
        case("sum_all", vec![x()], |v| v[0].sum_all()),
        case("mean", vec![xt()], |v| v[0].mean(&[1, 2], false)),
        case("mean keepdim", vec![x()], |v| v[0].mean(&[0], true)),
        case("mean_all", vec![x()], |v| v[0].mean_all()),
        case("amax", vec![xt()], |v| v[0].amax(&[1], false)),
        case("amax keepdim", vec![x()], |v| v[0].amax(&[0, 2], true)),
        case("amin", vec![x()], |v| v[0].amin(&[-1], false)),
        case("amax ties", vec![Tensor::from_vec(vec![1.0f64, 3.0, 3.0, 2.0], [2, 2]).unwrap()], |v| {
            v[0].amax(&[], false)
        }),
        case("max_all", vec![x()], |v| v[0].max_all()),
        case("min_all", vec![xt()], |v| v[0].min_all()),
        case("max_dim", vec![xt()], |v| Ok(v[0].max_dim(1, false)?.0)),
        case("max_dim keepdim", vec![x()], |v| Ok(v[0].max_dim(-1, true)?.0)),
        case("min_dim", vec![x()], |v| Ok(v[0].min_dim(0, false)?.0)),
        case("cumsum", vec![xt()], |v| v[0].cumsum(1)),
        case("cumsum last", vec![x()], |v| v[0].cumsum(-1)),
        case("cumprod", vec![xt()], |v| v[0].cumprod(2)),
        case(
            "cumprod with zeros",
            vec![Tensor::from_vec(vec![1.5f64, 0.0, 2.0, -1.0, 0.0, 3.0], [2, 3]).unwrap()],
            |v| v[0].cumprod(1),
        ),
    ]
}

fn linalg_cases() -> Vec<Case> {
    vec![
        case("matmul 2x2", vec![r(900, &[3, 4]), r(901, &[4, 2])], |v| v[0].matmul(&v[1])),
        case("matmul transposed", vec![tr(902, &[3, 4]), tr(903, &[4, 2])], |v| v[0].matmul(&v[1])),
        case("matmul 1-D x 1-D", vec![r(904, &[4]), r(905, &[4])], |v| v[0].matmul(&v[1])),
        case("matmul 1-D x 3-D", vec![r(906, &[4]), r(907, &[2, 4, 3])], |v| v[0].matmul(&v[1])),
        case("matmul 3-D x 1-D", vec![r(908, &[2, 3, 4]), r(909, &[4])], |v| v[0].matmul(&v[1])),
        case("matmul broadcast batch", vec![r(910, &[2, 1, 3, 4]), r(911, &[3, 4, 2])], |v| v[0].matmul(&v[1])),
        case("matmul 2-D x 3-D", vec![r(912, &[3, 4]), r(913, &[2, 4, 2])], |v| v[0].matmul(&v[1])),
        case("mm", vec![r(914, &[2, 3]), r(915, &[3, 2])], |v| v[0].mm(&v[1])),
        case("bmm", vec![r(916, &[2, 2, 3]), tr(917, &[2, 3, 2])], |v| v[0].bmm(&v[1])),
        case("mv", vec![r(918, &[2, 3]), r(919, &[3])], |v| v[0].mv(&v[1])),
        case("dot", vec![r(920, &[3]), r(921, &[3])], |v| v[0].dot(&v[1])),
        case("outer", vec![r(922, &[3]), r(923, &[2])], |v| v[0].outer(&v[1])),
    ]
}

fn nn_cases() -> Vec<Case> {
    vec![
        case("softmax", vec![r(1000, &[2, 3, 4])], |v| v[0].softmax(1)),
        case("softmax last transposed", vec![tr(1001, &[3, 4])], |v| v[0].softmax(-1)),
        case("log_softmax", vec![r(1002, &[2, 5])], |v| v[0].log_softmax(-1)),
        case("log_softmax dim 0", vec![tr(1003, &[3, 2])], |v| v[0].log_softmax(0)),
        case("logsumexp", vec![r(1004, &[3, 4])], |v| v[0].logsumexp(&[1], false)),
        case("var", vec![r(1005, &[3, 4])], |v| v[0].var(&[1], 1.0, false)),
        case("std", vec![r(1006, &[3, 4])], |v| v[0].std(&[], 0.0, true)),
        case("layer_norm", vec![r(1007, &[2, 3, 4]), r(1008, &[4]), r(1009, &[4])], |v| {
            v[0].layer_norm(&[4], Some(&v[1]), Some(&v[2]), 1e-5)
        }),
        case("layer_norm 2 dims no affine", vec![r(1010, &[2, 3, 4])], |v| v[0].layer_norm(&[3, 4], None, None, 1e-5)),
        case("pad_zeros", vec![r(1011, &[2, 3])], |v| v[0].pad_zeros(&[1, 2, 0, 1])),
        case("conv2d", vec![r(1012, &[2, 2, 5, 5]), r(1013, &[3, 2, 3, 3]), r(1014, &[3])], |v| {
            v[0].conv2d(&v[1], Some(&v[2]), [1, 1], [1, 1], [1, 1], 1)
        }),
        case("conv2d stride dilation groups", vec![r(1015, &[1, 4, 7, 6]), r(1016, &[2, 2, 2, 2])], |v| {
            v[0].conv2d(&v[1], None, [2, 1], [0, 1], [2, 1], 2)
        }),
        case("mse_loss", vec![r(1017, &[3, 2]), r(1018, &[3, 2])], |v| v[0].mse_loss(&v[1])),
        case("cross_entropy", vec![r(1019, &[4, 3])], |v| {
            v[0].cross_entropy(&Tensor::from_vec(vec![0i64, 2, 1, 2], [4])?)
        }),
    ]
}

#[test]
fn gradcheck_nn() {
    run_all(nn_cases());
}

#[test]
fn gradgradcheck_softmax_std_and_conv2d() {
    let keep = ["softmax", "softmax last transposed", "log_softmax", "log_softmax dim 0", "std", "conv2d"];
    run_gradgrad(nn_cases().into_iter().filter(|c| keep.contains(&c.name)).collect());
}

/// conv2d against a direct loop over output positions, and its gradients by finite
/// differences; the geometries include kernels wider than the input with the padding
/// making up the difference.
#[test]
fn conv2d_matches_a_naive_reference() -> Result<()> {
    type Geom = ([usize; 4], [usize; 4], [usize; 2], [usize; 2], [usize; 2], usize);
    let geoms: [Geom; 4] = [
        ([2, 4, 6, 5], [4, 2, 3, 2], [2, 1], [1, 2], [1, 2], 2),
        ([1, 2, 1, 1], [3, 2, 5, 5], [1, 1], [2, 2], [1, 1], 1),
        ([1, 1, 2, 3], [2, 1, 3, 5], [1, 1], [1, 3], [1, 1], 1),
        ([2, 2, 4, 4], [2, 2, 2, 2], [1, 1], [0, 3], [1, 3], 1),
    ];
    for (xd, wdims, s, p, d, g) in geoms {
        conv2d_case(xd, wdims, s, p, d, g)?;
    }
    Ok(())
}

fn conv2d_case(xd: [usize; 4], wdims: [usize; 4], s: [usize; 2], p: [usize; 2], d: [usize; 2], g: usize) -> Result<()> {
    let (x, w) = (r(1100, &xd), r(1101, &wdims));
    let y = Var::from(x.clone()).conv2d(&Var::from(w.clone()), None, s, p, d, g)?;
    let (xv, wv) = (x.to_vec_f64()?, w.to_vec_f64()?);
    let [n, c, h, wd] = xd;
    let [o, cg, kh, kw] = wdims;
    let oh = (h + 2 * p[0] - d[0] * (kh - 1) - 1) / s[0] + 1;
    let ow = (wd + 2 * p[1] - d[1] * (kw - 1) - 1) / s[1] + 1;
    assert_eq!(y.dims(), &[n, o, oh, ow]);
    let yv = y.tensor().to_vec_f64()?;
    let og = o / g;
    for b in 0..n {
        for oc in 0..o {
            let grp = oc / og;
            for i in 0..oh {
                for j in 0..ow {
                    let mut acc = 0.0;
                    for ci in 0..cg {
                        for a in 0..kh {
                            for e in 0..kw {
                                let hi = (i * s[0] + a * d[0]) as isize - p[0] as isize;
                                let wi = (j * s[1] + e * d[1]) as isize - p[1] as isize;
                                if hi < 0 || wi < 0 || hi >= h as isize || wi >= wd as isize {
                                    continue;
                                }
                                let cc = grp * cg + ci;
                                acc += xv[((b * c + cc) * h + hi as usize) * wd + wi as usize]
                                    * wv[((oc * cg + ci) * kh + a) * kw + e];
                            }
                        }
                    }
                    let got = yv[((b * o + oc) * oh + i) * ow + j];
                    assert!((got - acc).abs() < 1e-12, "{xd:?} * {wdims:?} ({b},{oc},{i},{j}): {got} vs {acc}");
                }
            }
        }
    }
    let f = move |v: &[Var]| Ok(vec![v[0].conv2d(&v[1], None, s, p, d, g)?]);
    gradcheck(f, &[x, w]).map_err(|e| tensor_core::Error::Autograd(format!("{xd:?} * {wdims:?}: {e}")))
}

fn run_all(cases: Vec<Case>) {
    let mut failures = Vec::new();
    let n = cases.len();
    for c in cases {
        let dims: Vec<Vec<usize>> = c.inputs.iter().map(|t| t.dims().to_vec()).collect();
        if let Err(e) = gradcheck(&c.f, &c.inputs) {
            failures.push(format!("{} {dims:?}: {e}", c.name));
        }
    }
    assert!(failures.is_empty(), "{} of {n} gradchecks failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn gradcheck_elementwise() {
    let mut c = unary_cases();
    c.extend(binary_cases());
    run_all(c);
}

#[test]
fn gradcheck_views() {
    run_all(view_cases());
}

#[test]
fn gradcheck_reductions() {
    run_all(reduce_cases());
}

#[test]
fn gradcheck_linalg() {
    run_all(linalg_cases());
}

fn run_gradgrad(cases: Vec<Case>) {
    let mut failures = Vec::new();
    let n = cases.len();
    for c in cases {
        if let Err(e) = gradgradcheck(&c.f, &c.inputs) {
            failures.push(format!("{}: {e}", c.name));
        }
    }
    assert!(failures.is_empty(), "{} of {n} gradgradchecks failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn gradgradcheck_elementwise() {
    let skip = ["sign", "floor", "ceil", "round", "trunc", "remainder_scalar", "remainder", "maximum", "minimum"];
    let cases = unary_cases()
        .into_iter()
        .chain(binary_cases())
        .filter(|c| !skip.contains(&c.name) && c.inputs.iter().all(|t| t.numel() > 0 && t.rank() == 2))
        .collect();
    run_gradgrad(cases);
}

#[test]
fn gradgradcheck_reductions_and_matmul() {
    let keep = ["sum dims keepdim", "mean", "amax", "max_dim", "cumsum", "cumprod"];
    let mut cases: Vec<Case> = reduce_cases().into_iter().filter(|c| keep.contains(&c.name)).collect();
    cases.extend(linalg_cases());
    run_gradgrad(cases);
}

// ------------------------------------------------------------ index / join ops

fn ix(v: &[i64], shape: &[usize]) -> Tensor {
    Tensor::from_vec(v.to_vec(), shape.to_vec()).unwrap()
}

fn multi(name: &'static str, inputs: Vec<Tensor>, f: impl Fn(&[Var]) -> Result<Vec<Var>> + 'static) -> Case {
    Case { name, inputs, f: Box::new(f) }
}

fn index_cases() -> Vec<Case> {
    let dup = || ix(&[0, 0, 3, 1, 2, 1, 3, 3, 3], &[3, 3]);
    vec![
        case("gather duplicates", vec![r(1200, &[3, 4])], move |v| v[0].gather(1, &dup())),
        case("gather transposed dim 0", vec![tr(1201, &[3, 4])], |v| {
            v[0].gather(0, &ix(&[2, 0, 1, 2, 2, 2, 0, 1], &[2, 4]))
        }),
        case("gather 0-dim", vec![r(1202, &[])], |v| v[0].gather(0, &ix(&[0], &[]))),
        case("scatter_add duplicates", vec![r(1203, &[3, 4]), r(1204, &[2, 4])], |v| {
            v[0].scatter_add(0, &ix(&[0, 1, 2, 0, 0, 1, 1, 0], &[2, 4]), &v[1])
        }),
        case("scatter_add src larger than index", vec![tr(1205, &[3, 4]), r(1206, &[3, 5])], |v| {
            v[0].scatter_add(1, &ix(&[3, 3, 0, 1], &[2, 2]), &v[1])
        }),
        case("scatter", vec![r(1207, &[3, 4]), r(1208, &[2, 4])], |v| {
            v[0].scatter(0, &ix(&[0, 1, 2, 0, 1, 2, 0, 2], &[2, 4]), &v[1])
        }),
        case("index_select duplicates", vec![tr(1209, &[4, 3])], |v| v[0].index_select(0, &ix(&[2, 0, 2, 3], &[4]))),
        case("index_select dim 1", vec![r(1210, &[2, 3, 4])], |v| v[0].index_select(-2, &ix(&[1, 1], &[2]))),
        case("index_add duplicates alpha", vec![r(1211, &[4, 3]), r(1212, &[3, 3])], |v| {
            v[0].index_add(0, &ix(&[1, 1, 3], &[3]), &v[1], 2.0)
        }),
        case("masked_select broadcast", vec![r(1213, &[2, 3])], |v| {
            v[0].masked_select(&Tensor::new(&[true, false, true]))
        }),
        case("cat dim 1", vec![r(1214, &[2, 3]), tr(1215, &[2, 2]), r(1216, &[2, 1])], |v| {
            Var::cat(&[v[0].clone(), v[1].clone(), v[2].clone()], 1)
        }),
        case("cat with 1-D empty", vec![r(1217, &[2, 3]), r(1218, &[0])], |v| {
            Var::cat(&[v[0].clone(), v[1].clone()], 0)
        }),
        case("stack dim -1", vec![r(1219, &[2, 3]), tr(1220, &[2, 3])], |v| {
            Var::stack(&[v[0].clone(), v[1].clone()], -1)
        }),
        multi("split", vec![r(1221, &[5, 2])], |v| v[0].split(2, 0)),
        multi("split_with_sizes", vec![tr(1222, &[2, 6])], |v| v[0].split_with_sizes(&[1, 0, 3, 2], 1)),
        multi("chunk", vec![r(1223, &[3, 7])], |v| v[0].chunk(3, -1)),
        multi("unbind", vec![tr(1224, &[3, 2])], |v| v[0].unbind(1)),
        case("repeat extra leading", vec![r(1225, &[2, 3])], |v| v[0].repeat(&[2, 1, 3])),
        case("repeat transposed", vec![tr(1226, &[2, 3])], |v| v[0].repeat(&[3, 2])),
        case("flip", vec![tr(1227, &[3, 4])], |v| v[0].flip(&[0, -1])),
        case("roll", vec![r(1228, &[3, 4])], |v| v[0].roll(&[1, -5], &[0, 1])),
        case("roll flattened", vec![tr(1229, &[3, 4])], |v| v[0].roll(&[5], &[])),
        case("tril", vec![tr(1230, &[3, 4])], |v| v[0].tril(-1)),
        case("triu batched", vec![r(1231, &[2, 3, 3])], |v| v[0].triu(1)),
        case("sort descending", vec![tr(1232, &[3, 4])], |v| Ok(v[0].sort(1, true)?.0)),
        case("sort 0-dim", vec![r(1233, &[])], |v| Ok(v[0].sort(0, false)?.0)),
        case("topk", vec![r(1234, &[4, 3])], |v| Ok(v[0].topk(2, 0, true, true)?.0)),
        case("topk smallest", vec![tr(1235, &[3, 5])], |v| Ok(v[0].topk(3, -1, false, true)?.0)),
    ]
}

#[test]
fn gradcheck_index_ops() {
    run_all(index_cases());
}

#[test]
fn gradgradcheck_index_ops() {
    let keep = [
        "gather duplicates",
        "scatter_add duplicates",
        "scatter",
        "index_select duplicates",
        "index_add duplicates alpha",
        "masked_select broadcast",
        "cat dim 1",
        "repeat extra leading",
        "roll",
        "flip",
        "sort descending",
    ];
    run_gradgrad(index_cases().into_iter().filter(|c| keep.contains(&c.name)).collect());
}

// ------------------------------------------------------------ more reductions

fn more_reduce_cases() -> Vec<Case> {
    let zeros1 = || Tensor::from_vec(vec![1.5f64, 0.0, 2.0, -1.0, 0.5, 3.0], [2, 3]).unwrap();
    let zeros2 = || Tensor::from_vec(vec![0.0f64, 0.0, 2.0, -1.0, 0.5, 3.0], [2, 3]).unwrap();
    vec![
        case("prod dim", vec![tr(1300, &[3, 4])], |v| v[0].prod(&[1], false)),
        case("prod dims keepdim", vec![r(1301, &[2, 3, 2])], |v| v[0].prod(&[0, 2], true)),
        case("prod all", vec![r(1302, &[2, 3])], |v| v[0].prod(&[], false)),
        case("prod_all 0-dim", vec![r(1303, &[])], |v| v[0].prod_all()),
        case("prod one zero", vec![zeros1()], |v| v[0].prod(&[1], false)),
        case("prod two zeros", vec![zeros2()], |v| v[0].prod(&[], false)),
        case("norm 1", vec![tr(1304, &[3, 4])], |v| v[0].norm(1.0, &[1], false)),
        case("norm 2", vec![r(1305, &[3, 4])], |v| v[0].norm(2.0, &[], false)),
        case("norm fro keepdim", vec![r(1306, &[2, 3, 2])], |v| v[0].norm(NormOrd::Fro, &[0, 2], true)),
        case("norm 3", vec![tr(1307, &[3, 4])], |v| v[0].norm(3.0, &[0], false)),
        case("norm 0.5", vec![p(1308, &[3, 4])], |v| v[0].norm(0.5, &[1], false)),
        case("norm inf", vec![r(1309, &[3, 4])], |v| v[0].norm(f64::INFINITY, &[1], false)),
        case("norm -inf", vec![r(1310, &[3, 4])], |v| v[0].norm(NormOrd::NegInf, &[], false)),
        case("norm 0", vec![r(1311, &[3, 4])], |v| v[0].norm(0.0, &[1], false)),
        multi("var_mean", vec![r(1312, &[3, 4])], |v| {
            let (a, b) = v[0].var_mean(&[1], 1.0, false)?;
            Ok(vec![a, b])
        }),
        multi("std_mean", vec![tr(1313, &[3, 4])], |v| {
            let (a, b) = v[0].std_mean(&[0], 0.0, true)?;
            Ok(vec![a, b])
        }),
    ]
}

#[test]
fn gradcheck_more_reductions() {
    run_all(more_reduce_cases());
}

#[test]
fn gradgradcheck_prod_and_norm() {
    let keep = [
        "prod dim",
        "prod dims keepdim",
        "prod one zero",
        "norm 1",
        "norm 2",
        "norm 3",
        "norm 0.5",
        "norm inf",
        "norm fro keepdim",
    ];
    run_gradgrad(more_reduce_cases().into_iter().filter(|c| keep.contains(&c.name)).collect());
}

#[test]
fn norm_of_a_zero_vector_has_a_zero_gradient() -> Result<()> {
    let x = Var::param(Tensor::zeros([3], tensor_core::DType::F64, &Default::default())?)?;
    x.norm(2.0, &[], false)?.backward()?;
    assert_eq!(x.grad().unwrap().to_vec::<f64>()?, vec![0.0; 3]);
    Ok(())
}

// ------------------------------------------------------------ conv / pool / nn

fn conv_cases() -> Vec<Case> {
    vec![
        case("unfold2d", vec![r(1400, &[2, 2, 4, 5])], |v| v[0].unfold2d([2, 3], [1, 1], [1, 0], [1, 2])),
        case("unfold2d dilation unbatched", vec![tr(1401, &[2, 5, 6])], |v| {
            v[0].unfold2d([2, 2], [2, 1], [1, 1], [2, 1])
        }),
        case("fold2d", vec![r(1402, &[2, 12, 12])], |v| v[0].fold2d([4, 5], [2, 2], [1, 1], [0, 0], [1, 1])),
        case("fold2d pad stride dilation", vec![r(1403, &[1, 8, 12])], |v| {
            // [5,6] plane, 2x2 blocks, dilation [2,1], pad 1, stride [2,2]: 3 x 4 blocks.
            v[0].fold2d([5, 6], [2, 2], [2, 1], [1, 1], [2, 2])
        }),
        case("conv2d unbatched transposed", vec![tr(1404, &[2, 4, 5]), r(1405, &[3, 2, 2, 3]), r(1406, &[3])], |v| {
            v[0].conv2d(&v[1], Some(&v[2]), [1, 2], [1, 1], [1, 1], 1)
        }),
        case("conv2d depthwise dilation", vec![r(1407, &[2, 3, 6, 6]), r(1408, &[6, 1, 2, 2])], |v| {
            v[0].conv2d(&v[1], None, [2, 2], [1, 0], [2, 2], 3)
        }),
        case("conv1d", vec![r(1409, &[2, 4, 9]), r(1410, &[4, 2, 3]), r(1411, &[4])], |v| {
            v[0].conv1d(&v[1], Some(&v[2]), 2, 1, 2, 2)
        }),
        case("conv1d unbatched", vec![tr(1412, &[3, 6]), r(1413, &[2, 3, 2])], |v| {
            v[0].conv1d(&v[1], None, 1, 0, 1, 1)
        }),
        case("conv_transpose2d", vec![r(1414, &[2, 3, 3, 4]), r(1415, &[3, 2, 3, 2]), r(1416, &[2])], |v| {
            v[0].conv_transpose2d(&v[1], Some(&v[2]), [1, 1], [0, 0], [0, 0], [1, 1], 1)
        }),
        case("conv_transpose2d stride pad output_padding", vec![r(1417, &[1, 2, 3, 3]), r(1418, &[2, 3, 3, 3])], |v| {
            v[0].conv_transpose2d(&v[1], None, [2, 2], [1, 1], [1, 0], [1, 1], 1)
        }),
        case("conv_transpose2d groups dilation", vec![tr(1419, &[1, 4, 3, 2]), r(1420, &[4, 1, 2, 2])], |v| {
            v[0].conv_transpose2d(&v[1], None, [1, 2], [0, 1], [0, 1], [2, 1], 2)
        }),
        case("conv_transpose2d unbatched", vec![r(1421, &[2, 3, 3]), r(1422, &[2, 1, 2, 2])], |v| {
            v[0].conv_transpose2d(&v[1], None, [2, 1], [1, 0], [1, 0], [1, 1], 1)
        }),
    ]
}

fn pool_cases() -> Vec<Case> {
    vec![
        case("max_pool2d", vec![r(1500, &[2, 2, 4, 4])], |v| v[0].max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false)),
        case("max_pool2d pad dilation", vec![tr(1501, &[1, 2, 6, 5])], |v| {
            v[0].max_pool2d([3, 2], [2, 1], [1, 1], [1, 2], false)
        }),
        case("max_pool2d ceil_mode", vec![r(1502, &[1, 2, 6, 6])], |v| {
            v[0].max_pool2d([3, 3], [2, 2], [0, 0], [1, 1], true)
        }),
        case("max_pool2d overlapping unbatched", vec![r(1503, &[2, 4, 5])], |v| {
            v[0].max_pool2d([2, 2], [1, 1], [0, 0], [1, 1], false)
        }),
        case("avg_pool2d", vec![r(1504, &[2, 2, 4, 4])], |v| v[0].avg_pool2d([2, 2], [2, 2], [0, 0], false, true)),
        case("avg_pool2d pad exclude", vec![tr(1505, &[1, 2, 5, 5])], |v| {
            v[0].avg_pool2d([3, 3], [2, 2], [1, 1], false, false)
        }),
        case("avg_pool2d ceil include", vec![r(1506, &[2, 1, 6, 5])], |v| {
            v[0].avg_pool2d([3, 2], [2, 2], [1, 1], true, true)
        }),
        case("avg_pool2d ceil exclude unbatched", vec![r(1507, &[2, 6, 5])], |v| {
            v[0].avg_pool2d([3, 2], [2, 2], [1, 1], true, false)
        }),
        case("adaptive_avg_pool2d", vec![r(1508, &[2, 2, 7, 5])], |v| v[0].adaptive_avg_pool2d([3, 2])),
        case("adaptive_avg_pool2d larger", vec![tr(1509, &[1, 3, 3])], |v| v[0].adaptive_avg_pool2d([4, 5])),
    ]
}

fn misc_nn_cases() -> Vec<Case> {
    let idx = || ix(&[3, 0, 3, 1, 3, 2], &[2, 3]);
    vec![
        case("embedding duplicates", vec![r(1600, &[4, 3])], move |v| v[0].embedding(&idx(), None)),
        case("embedding transposed I32", vec![tr(1601, &[5, 2])], |v| {
            v[0].embedding(&Tensor::from_vec(vec![4i32, 4, 0], [3])?, None)
        }),
        case("batch_norm training affine", vec![r(1602, &[4, 3, 2]), p(1603, &[3]), r(1604, &[3])], |v| {
            v[0].batch_norm(None, None, Some(&v[1]), Some(&v[2]), true, 0.1, 1e-5)
        }),
        case("batch_norm training 2-D", vec![tr(1605, &[5, 2])], |v| {
            let (rm, rv) =
                (Tensor::zeros([2], v[0].dtype(), v[0].device())?, Tensor::ones([2], v[0].dtype(), v[0].device())?);
            v[0].batch_norm(Some(&rm), Some(&rv), None, None, true, 0.1, 1e-5)
        }),
        case("batch_norm eval", vec![r(1606, &[2, 3, 2, 2]), p(1607, &[3])], |v| {
            let rm = Tensor::new(&[0.1f64, -0.2, 0.3]);
            let rv = Tensor::new(&[0.5f64, 1.5, 2.0]);
            v[0].batch_norm(Some(&rm), Some(&rv), Some(&v[1]), None, false, 0.1, 1e-5)
        }),
        case("pad constant", vec![tr(1608, &[3, 4])], |v| v[0].pad(&[1, 2, 0, 1], PadMode::Constant(1.5))),
        case("pad reflect", vec![r(1609, &[2, 3, 4])], |v| v[0].pad(&[3, 1, 2, 2], PadMode::Reflect)),
        case("pad replicate", vec![tr(1610, &[3, 4])], |v| v[0].pad(&[2, 3, 1, 0], PadMode::Replicate)),
    ]
}

#[test]
fn gradcheck_conv() {
    run_all(conv_cases());
}

#[test]
fn gradcheck_pool() {
    run_all(pool_cases());
}

#[test]
fn gradcheck_misc_nn() {
    run_all(misc_nn_cases());
}

#[test]
fn gradgradcheck_conv_pool_nn() {
    let mut cases = conv_cases();
    cases.extend(
        pool_cases()
            .into_iter()
            .filter(|c| matches!(c.name, "max_pool2d" | "avg_pool2d pad exclude" | "adaptive_avg_pool2d")),
    );
    cases.extend(misc_nn_cases().into_iter().filter(|c| c.name != "batch_norm training 2-D"));
    run_gradgrad(cases);
}

/// The Var ops agree with the tensor-core forwards and, for the transposed
/// convolution, with op-table's naive loop.
#[test]
fn conv_and_pool_forwards_match_tensor_core() -> Result<()> {
    let (x, w, b) = (r(1700, &[2, 4, 3, 5]), r(1701, &[4, 3, 3, 2]), r(1702, &[6]));
    let (s, pd, op, d, g) = ([2usize, 1], [1usize, 0], [1usize, 0], [1usize, 2], 2usize);
    let y =
        Var::from(x.clone()).conv_transpose2d(&Var::from(w.clone()), Some(&Var::from(b.clone())), s, pd, op, d, g)?;
    let want = x.conv_transpose2d(&w, Some(&b), s, pd, op, d, g)?;
    assert!(y.tensor().allclose(&want, 1e-12, 1e-12, false)?);
    let naive = op_table::nn::refs::conv_transpose2d(
        &RefArray::from_tensor(&x),
        &RefArray::from_tensor(&w),
        Some(&RefArray::from_tensor(&b)),
        s,
        pd,
        op,
        d,
        g,
    );
    assert!(op_table::compare(y.tensor(), &naive, 1e-12, 1e-12).is_ok());
    let x2 = tr(1703, &[2, 4, 6, 5]);
    let w2 = r(1704, &[6, 2, 3, 2]);
    let y2 = Var::from(x2.clone()).conv2d(&Var::from(w2.clone()), None, [2, 1], [1, 2], [1, 2], 2)?;
    assert!(y2.tensor().allclose(&x2.conv2d(&w2, None, [2, 1], [1, 2], [1, 2], 2)?, 1e-12, 1e-12, false)?);
    let y3 = Var::from(x2.clone()).max_pool2d([3, 2], [2, 2], [1, 1], [1, 1], true)?;
    assert!(y3.tensor().equal(&x2.max_pool2d([3, 2], [2, 2], [1, 1], [1, 1], true)?)?);
    Ok(())
}

/// `unfold2d` and `fold2d` are adjoint: <unfold(x), c> == <x, fold(c)>.
#[test]
fn fold2d_is_the_adjoint_of_unfold2d() -> Result<()> {
    let x = r(1710, &[2, 3, 7, 6]);
    let (k, d, pd, s) = ([3, 2], [2, 1], [1, 2], [2, 3]);
    let u = x.unfold2d(k, d, pd, s)?;
    let c = r(1711, u.dims());
    let lhs = u.mul(&c)?.sum_all()?.to_scalar::<f64>()?;
    let rhs = x.mul(&c.fold2d([7, 6], k, d, pd, s)?)?.sum_all()?.to_scalar::<f64>()?;
    assert!((lhs - rhs).abs() < 1e-10, "{lhs} vs {rhs}");
    Ok(())
}

#[test]
fn max_pool2d_routes_the_gradient_to_the_argmax() -> Result<()> {
    let x = Var::param(Tensor::from_vec(vec![1.0f64, 5.0, 2.0, 0.0, 3.0, 4.0, 9.0, 8.0, 7.0], [1, 1, 3, 3])?)?;
    let (y, idx) = x.max_pool2d_with_indices([2, 2], [1, 1], [0, 0], [1, 1], false)?;
    assert_eq!(idx.to_vec::<i64>()?, vec![1, 1, 6, 7]);
    y.backward_with(&Tensor::from_vec(vec![1.0f64, 10.0, 100.0, 1000.0], [1, 1, 2, 2])?)?;
    assert_eq!(x.grad().unwrap().to_vec::<f64>()?, vec![0.0, 11.0, 0.0, 0.0, 0.0, 0.0, 100.0, 1000.0, 0.0]);
    Ok(())
}

#[test]
fn embedding_padding_idx_row_gets_no_gradient_and_duplicates_add() -> Result<()> {
    let w = Var::param(r(1720, &[4, 2]))?;
    let idx = ix(&[1, 3, 1, 1, 0], &[5]);
    let y = w.embedding(&idx, Some(3))?;
    assert_eq!(y.tensor().to_vec_f64()?.len(), 10);
    y.sum_all()?.backward()?;
    assert_eq!(w.grad().unwrap().to_vec::<f64>()?, vec![1.0, 1.0, 3.0, 3.0, 0.0, 0.0, 0.0, 0.0]);
    assert!(w.embedding(&idx, Some(4)).is_err());
    Ok(())
}

#[test]
fn batch_norm_updates_running_stats_like_tensor_core() -> Result<()> {
    let x = r(1730, &[4, 3, 2]);
    let (rm1, rv1) = (Tensor::new(&[0.1f64, 0.2, 0.3]), Tensor::new(&[1.0f64, 2.0, 0.5]));
    let (rm2, rv2) = (rm1.copy()?, rv1.copy()?);
    let y = Var::from(x.clone()).batch_norm(Some(&rm1), Some(&rv1), None, None, true, 0.2, 1e-5)?;
    let want = x.batch_norm(Some(&rm2), Some(&rv2), None, None, true, 0.2, 1e-5)?;
    assert!(y.tensor().allclose(&want, 1e-12, 1e-12, false)?);
    assert!(rm1.allclose(&rm2, 1e-12, 1e-12, false)?);
    assert!(rv1.allclose(&rv2, 1e-12, 1e-12, false)?);
    Ok(())
}

// ------------------------------------------------------------ errors

fn err_names(r: Result<Var>, op: &str) {
    match r {
        Ok(_) => panic!("{op}: expected an error"),
        Err(e) => assert!(e.to_string().contains(op), "error {e} does not name {op}"),
    }
}

#[test]
fn new_ops_report_bad_shapes_naming_the_op() {
    let x = || Var::from(r(1800, &[1, 2, 5, 5]));
    err_names(x().conv2d(&Var::from(r(1801, &[3, 3, 2, 2])), None, [1, 1], [0, 0], [1, 1], 1), "conv2d");
    err_names(x().conv2d(&Var::from(r(1801, &[3, 2, 7, 2])), None, [1, 1], [0, 0], [1, 1], 1), "conv2d");
    err_names(
        x().conv2d(&Var::from(r(1801, &[3, 2, 2, 2])), Some(&Var::from(r(1802, &[2]))), [1, 1], [0, 0], [1, 1], 1),
        "conv2d",
    );
    err_names(Var::from(r(1803, &[1, 2, 5])).conv1d(&Var::from(r(1804, &[1, 3, 2])), None, 1, 0, 1, 1), "conv1d");
    err_names(
        x().conv_transpose2d(&Var::from(r(1805, &[3, 1, 2, 2])), None, [1, 1], [0, 0], [0, 0], [1, 1], 1),
        "conv_transpose2d",
    );
    err_names(
        x().conv_transpose2d(&Var::from(r(1805, &[2, 1, 2, 2])), None, [1, 1], [0, 0], [1, 0], [1, 1], 1),
        "conv_transpose2d",
    );
    err_names(Var::cat(&[Var::from(r(1806, &[2, 3])), Var::from(r(1807, &[3, 2]))], 0), "cat");
    err_names(Var::stack(&[Var::from(r(1806, &[2, 3])), Var::from(r(1807, &[3, 2]))], 0), "stack");
    err_names(
        Var::from(r(1808, &[4, 3])).index_add(0, &ix(&[0], &[1]), &Var::from(r(1809, &[2, 3])), 1.0),
        "index_add",
    );
    err_names(Var::from(r(1810, &[4, 3])).gather(1, &ix(&[3], &[1, 1])), "gather");
    err_names(Var::from(r(1811, &[4])).embedding(&ix(&[0], &[1]), None), "embedding");
    err_names(Var::from(r(1812, &[4, 4])).max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false), "max_pool2d");
    err_names(Var::from(r(1813, &[1, 8, 5])).fold2d([3, 3], [2, 2], [1, 1], [0, 0], [1, 1]), "fold2d");
    err_names(x().unfold2d([6, 1], [1, 1], [0, 0], [1, 1]), "unfold2d");
    err_names(x().pad(&[5, 0], PadMode::Reflect), "pad");
    err_names(x().batch_norm(None, None, Some(&Var::from(r(1814, &[3]))), None, true, 0.1, 1e-5), "batch_norm");
    err_names(x().batch_norm(None, None, None, None, false, 0.1, 1e-5), "batch_norm");
    err_names(Var::from(r(1815, &[2, 3])).prod(&[2], false), "prod");
    err_names(Var::from(r(1816, &[2, 3])).norm(f64::NAN, &[], false), "norm");
}

#[test]
fn integer_inputs_get_no_gradient() -> Result<()> {
    let xi = Tensor::new(&[1i64, 2, 3]);
    assert!(Var::param(xi.clone()).is_err());
    // Integer data flows through the ops without a graph.
    let y = Var::from(xi.clone()).gather(0, &ix(&[2, 0], &[2]))?;
    assert!(!y.requires_grad());
    assert_eq!(y.tensor().to_vec::<i64>()?, vec![3, 1]);
    let xf = Var::param(r(1820, &[1, 1, 3, 3]))?;
    let wi = Var::from(Tensor::ones([1, 1, 2, 2], tensor_core::DType::I64, &Default::default())?);
    assert!(xf.conv2d(&wi, None, [1, 1], [0, 0], [1, 1], 1).is_err());
    let xi4 = Var::from(Tensor::ones([1, 1, 3, 3], tensor_core::DType::I64, &Default::default())?);
    assert!(xi4.conv2d(&wi, None, [1, 1], [0, 0], [1, 1], 1).is_err());
    assert!(autograd::grad(&[y.to_dtype(tensor_core::DType::F64)?.sum_all()?], &[Var::from(xi)], None, false).is_err());
    Ok(())
}
