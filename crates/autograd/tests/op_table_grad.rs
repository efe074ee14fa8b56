#![allow(clippy::type_complexity, clippy::arc_with_non_send_sync)] // test-only tables of closures on one thread
//! gradcheck over every differentiable record of the op table.
//!
//! A sample's op is a closure on tensors, so this file keeps its own table from a
//! record's name to the `Var` ops that can express it, with their parameters
//! enumerated or inferred (a sample may also pre-transform an input with a view).
//! For each sample the `Var` candidate whose forward equals the sample's output is
//! gradchecked: its analytical gradient against central differences of the
//! sample's own tensor closure. The test fails when a differentiable record has no
//! entry here, when none of a record's samples finds its `Var` counterpart, or on
//! any gradient mismatch.

use std::sync::Arc;

use autograd::{gradcheck_with, GradcheckOpts, Var};
use op_table::{all_ops, Sample};
use tensor_core::{DType, Result, Tensor};

type VarFn = Arc<dyn Fn(&[Var]) -> Result<Vec<Var>>>;

fn one(f: impl Fn(&[Var]) -> Result<Var> + 'static) -> VarFn {
    Arc::new(move |v| Ok(vec![f(v)?]))
}

/// Scalars a sample may have used, plus values inferred from the data.
fn scalar_grid(extra: &[f64]) -> Vec<f64> {
    let mut g = vec![
        0.0, 1.0, -1.0, 2.0, -2.0, 3.0, -3.0, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 0.25, 0.7, -0.7, 4.0, 0.1, 0.2, 0.3,
        10.0, 0.01, 5.0, -5.0, 0.75, 1.25, 1.75, -0.25,
    ];
    g.extend_from_slice(extra);
    g
}

/// Values inferred from `(x, out)` pairs of a one-input sample: `out - x`,
/// `x - out`, `out / x`, `x / out`, `ln(out) / ln(x)`, and `out` itself.
fn inferred(x: &Tensor, out: &Tensor) -> Vec<f64> {
    let (Ok(xs), Ok(os)) = (x.to_vec_f64(), out.to_vec_f64()) else { return Vec::new() };
    let mut v = Vec::new();
    for (a, b) in xs.iter().zip(&os).take(4) {
        v.extend([b - a, a - b, *b]);
        if *a != 0.0 {
            v.push(b / a);
        }
        if *b != 0.0 {
            v.push(a / b);
        }
        if *a > 0.0 && *a != 1.0 && *b > 0.0 {
            v.push(b.ln() / a.ln());
        }
        if *a < 0.0 && a.exp_m1() != 0.0 {
            v.push(b / a.exp_m1());
        }
    }
    v.retain(|x| x.is_finite());
    v
}

/// All subsets of `0..rank` as dim lists (the empty list means all dims).
fn dim_subsets(rank: usize) -> Vec<Vec<isize>> {
    (0..(1usize << rank)).map(|m| (0..rank).filter(|d| m >> d & 1 == 1).map(|d| d as isize).collect()).collect()
}

fn permutations(n: usize) -> Vec<Vec<isize>> {
    if n == 0 {
        return vec![vec![]];
    }
    let mut out = Vec::new();
    for p in permutations(n - 1) {
        for i in 0..=p.len() {
            let mut q = p.clone();
            q.insert(i, (n - 1) as isize);
            out.push(q);
        }
    }
    out
}

type U = fn(&Var) -> Result<Var>;
type B = fn(&Var, &Var) -> Result<Var>;
type S = fn(&Var, f64) -> Result<Var>;

fn unary_fn(name: &str) -> Option<U> {
    Some(match name {
        "neg" => |x| x.neg(),
        "abs" => |x| x.abs(),
        "exp" => |x| x.exp(),
        "log" => |x| x.log(),
        "log1p" => |x| x.log1p(),
        "expm1" => |x| x.expm1(),
        "sqrt" => |x| x.sqrt(),
        "rsqrt" => |x| x.rsqrt(),
        "sin" => |x| x.sin(),
        "cos" => |x| x.cos(),
        "tan" => |x| x.tan(),
        "tanh" => |x| x.tanh(),
        "sigmoid" => |x| x.sigmoid(),
        "relu" => |x| x.relu(),
        "gelu" => |x| x.gelu(),
        "gelu_tanh" => |x| x.gelu_tanh(),
        "silu" => |x| x.silu(),
        "sign" => |x| x.sign(),
        "floor" => |x| x.floor(),
        "ceil" => |x| x.ceil(),
        "round" => |x| x.round(),
        "trunc" => |x| x.trunc(),
        "reciprocal" => |x| x.reciprocal(),
        "square" => |x| x.square(),
        "erf" => |x| x.erf(),
        "contiguous" => |x| x.contiguous(),
        "copy" => |x| x.copy(),
        "t" => |x| x.t(),
        "sum_all" => |x| x.sum_all(),
        "mean_all" => |x| x.mean_all(),
        "max_all" => |x| x.max_all(),
        "min_all" => |x| x.min_all(),
        "squeeze_all" => |x| x.squeeze_all(),
        _ => return None,
    })
}

fn binary_fn(name: &str) -> Option<(B, S)> {
    Some(match name {
        "add" => (|a, b| a.add(b), |a, s| a.add_scalar(s)),
        "sub" => (|a, b| a.sub(b), |a, s| a.sub_scalar(s)),
        "mul" => (|a, b| a.mul(b), |a, s| a.mul_scalar(s)),
        "div" => (|a, b| a.div(b), |a, s| a.div_scalar(s)),
        "pow" => (|a, b| a.pow(b), |a, s| a.pow_scalar(s)),
        "maximum" => (|a, b| a.maximum(b), |a, s| a.maximum_scalar(s)),
        "minimum" => (|a, b| a.minimum(b), |a, s| a.minimum_scalar(s)),
        "remainder" => (|a, b| a.remainder(b), |a, s| a.remainder_scalar(s)),
        "atan2" => (|a, b| a.atan2(b), |a, s| a.atan2_scalar(s)),
        "matmul" => (|a, b| a.matmul(b), |a, _| Ok(a.clone())),
        "mm" => (|a, b| a.mm(b), |a, _| Ok(a.clone())),
        "bmm" => (|a, b| a.bmm(b), |a, _| Ok(a.clone())),
        "mv" => (|a, b| a.mv(b), |a, _| Ok(a.clone())),
        "dot" => (|a, b| a.dot(b), |a, _| Ok(a.clone())),
        "outer" => (|a, b| a.outer(b), |a, _| Ok(a.clone())),
        _ => return None,
    })
}

/// Scalar-parameter unary ops.
fn param_fn(name: &str) -> Option<S> {
    Some(match name {
        "leaky_relu" => |x, s| x.leaky_relu(s),
        "elu" => |x, s| x.elu(s),
        "rsub_scalar" => |x, s| x.rsub_scalar(s),
        "rdiv_scalar" => |x, s| x.rdiv_scalar(s),
        "pow_scalar" => |x, s| x.pow_scalar(s),
        "add_scalar" => |x, s| x.add_scalar(s),
        "sub_scalar" => |x, s| x.sub_scalar(s),
        "mul_scalar" => |x, s| x.mul_scalar(s),
        "div_scalar" => |x, s| x.div_scalar(s),
        _ => return None,
    })
}

/// Names this table knows (a differentiable record with another name fails the test).
fn known(name: &str) -> bool {
    unary_fn(name).is_some()
        || binary_fn(name).is_some()
        || param_fn(name).is_some()
        || matches!(
            name,
            "softplus"
                | "clamp"
                | "where_cond"
                | "masked_fill"
                | "operators"
                | "reshape"
                | "view"
                | "reshape_to"
                | "flatten"
                | "unflatten"
                | "squeeze"
                | "unsqueeze"
                | "expand"
                | "broadcast_to"
                | "expand_as"
                | "permute"
                | "transpose"
                | "narrow"
                | "slice"
                | "select"
                | "sum"
                | "mean"
                | "amax"
                | "amin"
                | "max_dim"
                | "min_dim"
                | "cumsum"
                | "cumprod"
                | "to_dtype"
        )
}

/// Candidate `Var` functions for a sample of record `name` (before pre-transforms).
fn candidates(name: &str, inputs: &[Tensor], out: &[Tensor]) -> Vec<VarFn> {
    let mut c: Vec<VarFn> = Vec::new();
    let rank = inputs.first().map_or(0, |t| t.rank());
    let out_shape: Vec<isize> = out.first().map_or(vec![], |o| o.dims().iter().map(|&d| d as isize).collect());
    let extra = match (inputs.first(), out.first()) {
        (Some(x), Some(o)) if x.dims() == o.dims() => inferred(x, o),
        _ => Vec::new(),
    };
    if let Some(f) = unary_fn(name) {
        c.push(one(move |v| f(&v[0])));
    }
    let scalar_ops: Vec<S> = match name {
        "operators" => ["add", "sub", "mul", "div"].iter().filter_map(|n| binary_fn(n).map(|b| b.1)).collect(),
        _ => binary_fn(name).map(|b| vec![b.1]).into_iter().flatten().chain(param_fn(name)).collect(),
    };
    if inputs.len() == 1 {
        for s in scalar_grid(&extra) {
            for &f in &scalar_ops {
                c.push(one(move |v| f(&v[0], s)));
            }
            if name == "operators" {
                c.push(one(move |v| v[0].rsub_scalar(s)));
                c.push(one(move |v| v[0].rdiv_scalar(s)));
            }
        }
    }
    if name == "operators" {
        c.push(one(|v| v[0].neg()));
        for n in ["add", "sub", "mul", "div"] {
            if let Some((f, _)) = binary_fn(n) {
                c.push(one(move |v| {
                    if v.len() < 2 {
                        return Err(tensor_core::Error::arg("candidate", "needs two inputs"));
                    }
                    f(&v[0], &v[1])
                }));
            }
        }
    }
    if let Some((f, _)) = binary_fn(name) {
        c.push(one(move |v| {
            if v.len() < 2 {
                return Err(tensor_core::Error::arg("candidate", "needs two inputs"));
            }
            f(&v[0], &v[1])
        }));
    }
    match name {
        "softplus" => {
            for beta in [1.0, 2.0, 0.5, 1.5, 3.0] {
                for th in [20.0, 1.0, 2.0, 0.5, 5.0, 10.0] {
                    c.push(one(move |v| v[0].softplus(beta, th)));
                }
            }
        }
        "clamp" => {
            let os = out.first().and_then(|o| o.to_vec_f64().ok()).unwrap_or_default();
            let lo = os.iter().cloned().fold(f64::INFINITY, f64::min);
            let hi = os.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            for (a, b) in [(Some(lo), Some(hi)), (Some(lo), None), (None, Some(hi))] {
                c.push(one(move |v| v[0].clamp(a, b)));
            }
        }
        "where_cond" => c.push(one(|v| {
            if v.len() < 3 {
                return Err(tensor_core::Error::arg("candidate", "needs three inputs"));
            }
            Var::where_cond(v[0].tensor(), &v[1], &v[2])
        })),
        "masked_fill" => {
            for s in scalar_grid(&out.first().and_then(|o| o.to_vec_f64().ok()).unwrap_or_default()) {
                c.push(one(move |v| {
                    if v.len() < 2 {
                        return Err(tensor_core::Error::arg("candidate", "needs two inputs"));
                    }
                    v[0].masked_fill(v[1].tensor(), s)
                }));
            }
        }
        "to_dtype" => c.push(one(|v| v[0].to_dtype(DType::F64))),
        "reshape" | "view" | "reshape_to" | "flatten" | "unflatten" | "squeeze" | "unsqueeze" => {
            let s = out_shape.clone();
            c.push(one(move |v| v[0].reshape(&s)));
        }
        "expand" | "broadcast_to" => {
            let s = out_shape.clone();
            c.push(one(move |v| v[0].expand(&s)));
        }
        "expand_as" => c.push(one(|v| v[0].expand_as(&v[1]))),
        "permute" | "transpose" => {
            for p in permutations(rank) {
                c.push(one(move |v| v[0].permute(&p)));
            }
        }
        "narrow" | "slice" | "select" => {
            for d in 0..rank {
                let n = inputs[0].dims()[d] as isize;
                for start in 0..n.max(1) {
                    for step in 1..=n.max(1) as usize {
                        c.push(one(move |v| v[0].slice(d as isize, Some(start), None, step)));
                        for end in start..=n {
                            c.push(one(move |v| v[0].slice(d as isize, Some(start), Some(end), step)));
                        }
                    }
                    c.push(one(move |v| v[0].select(d as isize, start)));
                }
            }
        }
        "sum" | "mean" | "amax" | "amin" => {
            for dims in dim_subsets(rank) {
                for keep in [false, true] {
                    let d = dims.clone();
                    c.push(match name {
                        "sum" => one(move |v| v[0].sum(&d, keep)),
                        "mean" => one(move |v| v[0].mean(&d, keep)),
                        "amax" => one(move |v| v[0].amax(&d, keep)),
                        _ => one(move |v| v[0].amin(&d, keep)),
                    });
                }
            }
        }
        "max_dim" | "min_dim" => {
            let max = name == "max_dim";
            for d in 0..rank.max(1) as isize {
                for keep in [false, true] {
                    c.push(Arc::new(move |v: &[Var]| {
                        let (a, i) = if max { v[0].max_dim(d, keep)? } else { v[0].min_dim(d, keep)? };
                        Ok(vec![a, Var::from(i)])
                    }));
                }
            }
        }
        "cumsum" | "cumprod" => {
            let prod = name == "cumprod";
            for d in 0..rank.max(1) as isize {
                c.push(one(move |v| if prod { v[0].cumprod(d) } else { v[0].cumsum(d) }));
            }
        }
        _ => {}
    }
    c
}

/// View pre-transforms a sample may apply to its first input.
fn pre_transforms(rank: usize) -> Vec<Arc<dyn Fn(&Var) -> Result<Var>>> {
    let mut p: Vec<Arc<dyn Fn(&Var) -> Result<Var>>> = vec![Arc::new(|x: &Var| Ok(x.clone()))];
    if rank >= 2 {
        p.push(Arc::new(|x: &Var| x.transpose(0, -1)));
        p.push(Arc::new(|x: &Var| x.transpose(-2, -1)));
    }
    for d in 0..rank as isize {
        p.push(Arc::new(move |x: &Var| x.slice(d, None, None, 2)));
    }
    p
}

fn same(a: &[Var], b: &[Tensor]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.dims() == y.dims()
                && x.tensor()
                    .to_dtype(DType::F64)
                    .and_then(|p| p.allclose(&y.to_dtype(DType::F64)?, 1e-9, 1e-9, true))
                    .unwrap_or(false)
        })
}

fn inputs_f64(s: &Sample) -> Result<Vec<Tensor>> {
    s.inputs.iter().zip(&s.cast).map(|(t, &c)| if c { t.to_dtype(DType::F64) } else { Ok(t.clone()) }).collect()
}

/// Finds the candidate that reproduces the sample's forward.
fn matching(name: &str, s: &Sample, inputs: &[Tensor]) -> Option<VarFn> {
    let want = (s.op)(inputs).ok()?;
    let vars: Vec<Var> = inputs.iter().map(|t| Var::from(t.clone())).collect();
    let rank = inputs.first().map_or(0, |t| t.rank());
    for pre in pre_transforms(rank) {
        let mut transformed = vars.clone();
        if let Some(first) = vars.first() {
            match pre(first) {
                Ok(x) => transformed[0] = x,
                Err(_) => continue,
            }
        }
        let t_inputs: Vec<Tensor> = transformed.iter().map(|v| v.tensor().clone()).collect();
        for cand in candidates(name, &t_inputs, &want) {
            if let Ok(got) = cand(&transformed) {
                if same(&got, &want) {
                    let pre = pre.clone();
                    return Some(Arc::new(move |v: &[Var]| {
                        let mut v = v.to_vec();
                        if let Some(first) = v.first().cloned() {
                            v[0] = pre(&first)?;
                        }
                        cand(&v)
                    }));
                }
            }
        }
    }
    None
}

/// Samples with more input elements than this are not gradchecked.
const MAX_GRADCHECK_INPUTS: usize = 2048;

#[test]
fn gradcheck_every_differentiable_op_table_record() {
    let mut missing = Vec::new();
    let mut unmatched_records = Vec::new();
    let mut unmatched_samples = Vec::new();
    let mut failures = Vec::new();
    let mut checked = 0usize;
    let mut skipped_large = 0usize;
    for op in all_ops().into_iter().filter(|o| o.differentiable) {
        if !known(op.name) {
            missing.push(op.name);
            continue;
        }
        let mut matched = 0usize;
        for s in &op.samples {
            let Ok(inputs) = inputs_f64(s) else { continue };
            // The large samples exercise the forward's parallel paths; a numerical
            // Jacobian of them would cost billions of evaluations. Their gradients are
            // the same code as the small samples'.
            if inputs.iter().map(|t| t.numel()).sum::<usize>() > MAX_GRADCHECK_INPUTS {
                skipped_large += 1;
                continue;
            }
            // Samples whose float inputs cannot be F64 are not gradcheckable.
            if !inputs.iter().zip(&s.cast).any(|(t, &c)| c && t.dtype() == DType::F64) {
                continue;
            }
            let Some(f) = matching(op.name, s, &inputs) else {
                unmatched_samples.push(format!("{}: {}", op.name, s.desc));
                continue;
            };
            matched += 1;
            let sop = s.op.clone();
            let wrt: Vec<bool> = inputs.iter().zip(&s.cast).map(|(t, &c)| c && t.dtype().is_float()).collect();
            let r = gradcheck_with(|v| f(v), |t| sop(t), &inputs, &wrt, GradcheckOpts::default());
            checked += 1;
            if let Err(e) = r {
                failures.push(format!("{} [{}]: {e}", op.name, s.desc));
            }
        }
        if matched == 0 && !op.samples.is_empty() {
            unmatched_records.push(op.name);
        }
    }
    if !unmatched_samples.is_empty() {
        eprintln!(
            "{} samples use forms this table cannot reproduce (not gradchecked):\n{}",
            unmatched_samples.len(),
            unmatched_samples.join("\n")
        );
    }
    eprintln!("gradchecked {checked} op-table samples ({skipped_large} large samples skipped)");
    assert!(missing.is_empty(), "differentiable op-table records with no Var counterpart: {missing:?}");
    assert!(unmatched_records.is_empty(), "records none of whose samples has a Var counterpart: {unmatched_records:?}");
    assert!(failures.is_empty(), "{} gradcheck failures:\n{}", failures.len(), failures.join("\n"));
}
