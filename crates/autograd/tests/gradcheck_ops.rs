//! gradcheck (and gradgradcheck) for every `Var` op, on broadcast, 0-dim, size-1
//! and non-contiguous inputs.

use autograd::{gradcheck, gradgradcheck, Var};
use op_table::{non_contiguous, rand_t};
use tensor_core::{Result, Tensor};

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
fn gradgradcheck_softmax_and_conv2d() {
    let keep = ["softmax", "log_softmax", "conv2d"];
    run_gradgrad(nn_cases().into_iter().filter(|c| keep.contains(&c.name)).collect());
}

/// conv2d against a direct loop over output positions.
#[test]
fn conv2d_matches_a_naive_reference() -> Result<()> {
    let (x, w) = (r(1100, &[2, 4, 6, 5]), r(1101, &[4, 2, 3, 2]));
    let (s, p, d, g) = ([2usize, 1usize], [1usize, 2usize], [1usize, 2usize], 2usize);
    let y = Var::from(x.clone()).conv2d(&Var::from(w.clone()), None, s, p, d, g)?;
    let (xv, wv) = (x.to_vec_f64()?, w.to_vec_f64()?);
    let (n, c, h, wd) = (2, 4, 6, 5);
    let (o, cg, kh, kw) = (4, 2, 3, 2);
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
                    assert!((got - acc).abs() < 1e-12, "({b},{oc},{i},{j}): {got} vs {acc}");
                }
            }
        }
    }
    Ok(())
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
