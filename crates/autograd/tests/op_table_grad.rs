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
use tensor_core::ops::reduce::NormOrd;
use tensor_core::{DType, PadMode, Result, Tensor};

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
        "mish" => |x| x.mish(),
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
        "prod_all" => |x| x.prod_all(),
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
                | "as_strided"
                | "prod"
                | "var"
                | "std"
                | "var_mean"
                | "std_mean"
                | "logsumexp"
                | "norm"
                | "softmax"
                | "log_softmax"
        )
        || index_op(name)
        || nn_op(name)
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
        "as_strided" => {
            // The samples view a fresh copy; the view geometry is not visible, so try
            // the small ones.
            let n = out_shape.len();
            let numel = inputs.first().map_or(0, |t| t.numel());
            let shape: Vec<usize> = out_shape.iter().map(|&d| d as usize).collect();
            let stride_sets: Vec<Vec<usize>> = match n {
                0 => vec![vec![]],
                1 => (0..6).map(|a| vec![a]).collect(),
                _ => (0..6).flat_map(|a| (0..6).map(move |b| vec![a, b])).collect(),
            };
            for st in stride_sets {
                for off in 0..numel {
                    let (sh, st) = (shape.clone(), st.clone());
                    c.push(one(move |v| v[0].contiguous()?.as_strided(&sh, &st, off)));
                }
            }
        }
        "prod" | "var" | "std" | "logsumexp" | "var_mean" | "std_mean" => {
            for dims in dim_subsets(rank) {
                for keep in [false, true] {
                    let d = dims.clone();
                    match name {
                        "prod" => c.push(one(move |v| v[0].prod(&d, keep))),
                        "logsumexp" => c.push(one(move |v| v[0].logsumexp(&d, keep))),
                        _ => {
                            for corr in [0.0, 1.0, 2.0, 2.5] {
                                let d = d.clone();
                                c.push(match name {
                                    "var" => one(move |v| v[0].var(&d, corr, keep)),
                                    "std" => one(move |v| v[0].std(&d, corr, keep)),
                                    "var_mean" => Arc::new(move |v: &[Var]| {
                                        let (a, b) = v[0].var_mean(&d, corr, keep)?;
                                        Ok(vec![a, b])
                                    }),
                                    _ => Arc::new(move |v: &[Var]| {
                                        let (a, b) = v[0].std_mean(&d, corr, keep)?;
                                        Ok(vec![a, b])
                                    }),
                                });
                            }
                        }
                    }
                }
            }
        }
        "norm" => {
            let ords = [
                NormOrd::P(1.0),
                NormOrd::P(2.0),
                NormOrd::Fro,
                NormOrd::P(3.0),
                NormOrd::P(0.0),
                NormOrd::Inf,
                NormOrd::NegInf,
            ];
            for dims in dim_subsets(rank) {
                for keep in [false, true] {
                    for ord in ords {
                        let d = dims.clone();
                        c.push(one(move |v| v[0].norm(ord, &d, keep)));
                    }
                }
            }
        }
        "softmax" | "log_softmax" => {
            let log = name == "log_softmax";
            for d in -(rank.max(1) as isize)..rank.max(1) as isize {
                c.push(one(move |v| if log { v[0].log_softmax(d) } else { v[0].softmax(d) }));
            }
        }
        _ => {}
    }
    if index_op(name) {
        c.extend(index_candidates(name, inputs, out));
    }
    if nn_op(name) {
        c.extend(nn_candidates(name, inputs, out));
    }
    c
}

/// An error for a candidate that does not fit the sample's inputs.
fn unfit() -> tensor_core::Error {
    tensor_core::Error::arg("candidate", "does not fit the inputs")
}

fn index_op(name: &str) -> bool {
    matches!(
        name,
        "gather"
            | "scatter"
            | "scatter_add"
            | "index_select"
            | "index_add"
            | "masked_select"
            | "cat"
            | "stack"
            | "split"
            | "split_with_sizes"
            | "chunk"
            | "unbind"
            | "repeat"
            | "flip"
            | "roll"
            | "tril"
            | "triu"
            | "sort"
            | "topk"
    )
}

/// Candidates for the index/join records; index and mask inputs are plain tensors.
fn index_candidates(name: &str, inputs: &[Tensor], out: &[Tensor]) -> Vec<VarFn> {
    let mut c: Vec<VarFn> = Vec::new();
    let rank = inputs.first().map_or(0, |t| t.rank()) as isize;
    let dims: Vec<isize> = (-rank.max(1)..rank.max(1)).collect();
    let arity = inputs.len();
    match name {
        "gather" | "index_select" => {
            let sel = name == "index_select";
            for &d in &dims {
                c.push(one(move |v| {
                    let i = v.get(1).ok_or_else(unfit)?.tensor();
                    if sel {
                        v[0].index_select(d, i)
                    } else {
                        v[0].gather(d, i)
                    }
                }));
            }
        }
        "scatter" | "scatter_add" => {
            let add = name == "scatter_add";
            for &d in &dims {
                c.push(one(move |v| {
                    let (i, s) = (v.get(1).ok_or_else(unfit)?.tensor(), v.get(2).ok_or_else(unfit)?);
                    if add {
                        v[0].scatter_add(d, i, s)
                    } else {
                        v[0].scatter(d, i, s)
                    }
                }));
            }
        }
        "index_add" => {
            for &d in &dims {
                for alpha in [1.0, 2.0, -1.0, 0.5, 3.0, -2.0, -0.5, 1.5] {
                    c.push(one(move |v| {
                        let (i, s) = (v.get(1).ok_or_else(unfit)?.tensor(), v.get(2).ok_or_else(unfit)?);
                        v[0].index_add(d, i, s, alpha)
                    }));
                }
            }
        }
        "masked_select" => c.push(one(|v| v[0].masked_select(v.get(1).ok_or_else(unfit)?.tensor()))),
        "cat" | "stack" => {
            let stack = name == "stack";
            let r = if stack { rank + 1 } else { rank };
            for d in -r.max(1)..r.max(1) {
                c.push(one(move |v| if stack { Var::stack(v, d) } else { Var::cat(v, d) }));
                // Some samples pass the inputs as one tensor to split first.
                if arity == 1 {
                    for k in 1..=4usize {
                        c.push(one(move |v| {
                            let parts = v[0].unbind(0)?;
                            let parts: Vec<Var> = parts.into_iter().take(k).collect();
                            if stack {
                                Var::stack(&parts, d)
                            } else {
                                Var::cat(&parts, d)
                            }
                        }));
                    }
                }
            }
        }
        "split" | "split_with_sizes" | "chunk" | "unbind" => {
            for &d in &dims {
                let sizes: Vec<usize> = out
                    .iter()
                    .map(|o| o.dims().get(d.rem_euclid(rank.max(1)) as usize).copied().unwrap_or(0))
                    .collect();
                match name {
                    "split" => {
                        for size in 0..=8usize {
                            c.push(Arc::new(move |v: &[Var]| v[0].split(size, d)));
                        }
                    }
                    "split_with_sizes" => c.push(Arc::new(move |v: &[Var]| v[0].split_with_sizes(&sizes, d))),
                    "chunk" => {
                        for k in 1..=8usize {
                            c.push(Arc::new(move |v: &[Var]| v[0].chunk(k, d)));
                        }
                    }
                    _ => c.push(Arc::new(move |v: &[Var]| v[0].unbind(d))),
                }
            }
        }
        "repeat" => {
            if let (Some(x), Some(o)) = (inputs.first(), out.first()) {
                let r = o.rank();
                let mut base = vec![1usize; r.saturating_sub(x.rank())];
                base.extend(x.dims());
                if base.len() == r {
                    let reps: Vec<usize> =
                        o.dims().iter().zip(&base).map(|(&a, &b)| a.checked_div(b).unwrap_or(0)).collect();
                    c.push(one(move |v| v[0].repeat(&reps)));
                    if r > 0 {
                        // A zero-size input leaves the repeats ambiguous; try 1..=3.
                        for k in 1..=3 {
                            let mut reps = o.dims().to_vec();
                            for (i, &b) in base.iter().enumerate() {
                                reps[i] = reps[i].checked_div(b).unwrap_or(k);
                            }
                            c.push(one(move |v| v[0].repeat(&reps)));
                        }
                    }
                }
            }
        }
        "flip" => {
            for ds in dim_subsets(rank as usize) {
                c.push(one(move |v| v[0].flip(&ds)));
            }
        }
        "roll" => {
            for s in -6..=6isize {
                c.push(one(move |v| v[0].roll(&[s], &[])));
                for d in 0..rank {
                    c.push(one(move |v| v[0].roll(&[s], &[d])));
                }
            }
            for s0 in -4..=4isize {
                for s1 in -4..=4isize {
                    for d0 in 0..rank {
                        for d1 in 0..rank {
                            c.push(one(move |v| v[0].roll(&[s0, s1], &[d0, d1])));
                        }
                    }
                }
            }
        }
        "tril" | "triu" => {
            let lower = name == "tril";
            for k in -5..=5i64 {
                c.push(one(move |v| if lower { v[0].tril(k) } else { v[0].triu(k) }));
            }
        }
        "sort" => {
            for &d in &dims {
                for desc in [false, true] {
                    c.push(Arc::new(move |v: &[Var]| {
                        let (a, i) = v[0].sort(d, desc)?;
                        Ok(vec![a, Var::from(i)])
                    }));
                }
            }
        }
        "topk" => {
            for &d in &dims {
                let k = out.first().map_or(0, |o| {
                    if o.rank() == 0 {
                        1
                    } else {
                        o.dims()[d.rem_euclid(o.rank() as isize) as usize]
                    }
                });
                for largest in [true, false] {
                    c.push(Arc::new(move |v: &[Var]| {
                        let (a, i) = v[0].topk(k, d, largest, true)?;
                        Ok(vec![a, Var::from(i)])
                    }));
                }
            }
        }
        _ => {}
    }
    c
}

fn nn_op(name: &str) -> bool {
    matches!(
        name,
        "conv1d"
            | "conv2d"
            | "conv_transpose2d"
            | "unfold2d"
            | "fold2d"
            | "max_pool2d"
            | "max_pool2d_with_indices"
            | "avg_pool2d"
            | "adaptive_avg_pool2d"
            | "pad"
            | "embedding"
            | "layer_norm"
            | "batch_norm"
            | "batch_norm_stats"
            | "dropout"
    )
}

/// Output length of a convolution-like window along one dim (None if it does not fit).
fn conv_len(n: usize, k: usize, s: usize, p: usize, d: usize) -> Option<usize> {
    let ext = d * (k - 1) + 1;
    (n + 2 * p >= ext).then(|| (n + 2 * p - ext) / s + 1)
}

/// Output length of a pooling window along one dim, with PyTorch's ceil rule.
fn pool_len(n: usize, k: usize, s: usize, p: usize, d: usize, ceil: bool) -> Option<usize> {
    let ext = d * (k - 1) + 1;
    if n + 2 * p < ext || 2 * p > k {
        return None;
    }
    let span = n + 2 * p - ext;
    let mut o = if ceil { span.div_ceil(s) + 1 } else { span / s + 1 };
    if ceil && (o - 1) * s >= n + p {
        o -= 1;
    }
    Some(o)
}

/// The last two dims of a tensor (rank >= 2).
fn hw(t: &Tensor) -> Option<[usize; 2]> {
    let r = t.rank();
    (r >= 2).then(|| [t.dims()[r - 2], t.dims()[r - 1]])
}

/// Pairs `[a, b]` with `a, b` in `vals`.
fn pairs(vals: &[usize]) -> Vec<[usize; 2]> {
    vals.iter().flat_map(|&a| vals.iter().map(move |&b| [a, b])).collect()
}

/// Candidates for the nn records over small grids of their integer parameters.
fn nn_candidates(name: &str, inputs: &[Tensor], out: &[Tensor]) -> Vec<VarFn> {
    let mut c: Vec<VarFn> = Vec::new();
    let bias = |v: &[Var]| v.get(2).cloned();
    match name {
        "conv2d" => {
            let (Some(i), Some(w), Some(o)) =
                (inputs.first().and_then(hw), inputs.get(1).and_then(hw), out.first().and_then(hw))
            else {
                return c;
            };
            for s in pairs(&[1, 2]) {
                for p in pairs(&[0, 1, 2]) {
                    for d in pairs(&[1, 2]) {
                        if (0..2).any(|a| conv_len(i[a], w[a], s[a], p[a], d[a]) != Some(o[a])) {
                            continue;
                        }
                        for g in [1, 2, 3] {
                            c.push(one(move |v| {
                                v[0].conv2d(v.get(1).ok_or_else(unfit)?, bias(v).as_ref(), s, p, d, g)
                            }));
                        }
                    }
                }
            }
        }
        "conv1d" => {
            for s in 1..=3 {
                for p in 0..=2 {
                    for d in 1..=2 {
                        for g in 1..=3 {
                            c.push(one(move |v| {
                                v[0].conv1d(v.get(1).ok_or_else(unfit)?, bias(v).as_ref(), s, p, d, g)
                            }));
                        }
                    }
                }
            }
        }
        "conv_transpose2d" => {
            let (Some(i), Some(w), Some(o)) =
                (inputs.first().and_then(hw), inputs.get(1).and_then(hw), out.first().and_then(hw))
            else {
                return c;
            };
            for s in pairs(&[1, 2]) {
                for p in pairs(&[0, 1]) {
                    for op in pairs(&[0, 1]) {
                        for d in pairs(&[1, 2]) {
                            let len = |a: usize| {
                                ((i[a].max(1) - 1) * s[a] + d[a] * (w[a].max(1) - 1) + op[a] + 1).checked_sub(2 * p[a])
                            };
                            if (0..2).any(|a| len(a) != Some(o[a])) {
                                continue;
                            }
                            for g in [1, 2] {
                                c.push(one(move |v| {
                                    v[0].conv_transpose2d(v.get(1).ok_or_else(unfit)?, bias(v).as_ref(), s, p, op, d, g)
                                }));
                            }
                        }
                    }
                }
            }
        }
        "unfold2d" | "fold2d" => {
            let unfold = name == "unfold2d";
            let (Some(x), Some(o)) = (inputs.first(), out.first()) else { return c };
            // The plane, the number of blocks and kh * kw, read off the shapes.
            let (plane, blocks, taps) = if unfold {
                let (Some(p), Some(ob)) = (hw(x), hw(o)) else { return c };
                (p, ob[1], ob[0] / x.dims()[x.rank() - 3].max(1))
            } else {
                let (Some(p), Some(ib)) = (hw(o), hw(x)) else { return c };
                (p, ib[1], ib[0] / o.dims()[o.rank() - 3].max(1))
            };
            let size = Some(plane);
            for k in pairs(&[1, 2, 3]) {
                if k[0] * k[1] != taps {
                    continue;
                }
                for d in pairs(&[1, 2]) {
                    for p in pairs(&[0, 1, 2]) {
                        for s in pairs(&[1, 2, 3]) {
                            let n = |a: usize| conv_len(plane[a], k[a], s[a], p[a], d[a]);
                            if n(0).zip(n(1)).map(|(a, b)| a * b) != Some(blocks) {
                                continue;
                            }
                            if unfold {
                                c.push(one(move |v| v[0].unfold2d(k, d, p, s)));
                            } else if let Some(size) = size {
                                c.push(one(move |v| v[0].fold2d(size, k, d, p, s)));
                            }
                        }
                    }
                }
            }
        }
        "max_pool2d" | "max_pool2d_with_indices" => {
            let with = name == "max_pool2d_with_indices";
            let (Some(i), Some(o)) = (inputs.first().and_then(hw), out.first().and_then(hw)) else { return c };
            for k in pairs(&[2, 3]) {
                for s in pairs(&[1, 2]) {
                    for p in pairs(&[0, 1]) {
                        for d in pairs(&[1, 2]) {
                            for ceil in [false, true] {
                                if (0..2).any(|a| pool_len(i[a], k[a], s[a], p[a], d[a], ceil) != Some(o[a])) {
                                    continue;
                                }
                                c.push(Arc::new(move |v: &[Var]| {
                                    if with {
                                        let (a, i) = v[0].max_pool2d_with_indices(k, s, p, d, ceil)?;
                                        Ok(vec![a, Var::from(i)])
                                    } else {
                                        Ok(vec![v[0].max_pool2d(k, s, p, d, ceil)?])
                                    }
                                }));
                            }
                        }
                    }
                }
            }
        }
        "avg_pool2d" => {
            let (Some(i), Some(o)) = (inputs.first().and_then(hw), out.first().and_then(hw)) else { return c };
            for k in pairs(&[2, 3]) {
                for s in pairs(&[1, 2]) {
                    for p in pairs(&[0, 1]) {
                        for ceil in [false, true] {
                            if (0..2).any(|a| pool_len(i[a], k[a], s[a], p[a], 1, ceil) != Some(o[a])) {
                                continue;
                            }
                            for inc in [false, true] {
                                c.push(one(move |v| v[0].avg_pool2d(k, s, p, ceil, inc)));
                            }
                        }
                    }
                }
            }
        }
        "adaptive_avg_pool2d" => {
            if let Some(o) = out.first().filter(|o| o.rank() >= 2) {
                let size = [o.dims()[o.rank() - 2], o.dims()[o.rank() - 1]];
                c.push(one(move |v| v[0].adaptive_avg_pool2d(size)));
            }
        }
        "pad" => {
            if let (Some(x), Some(o)) = (inputs.first(), out.first()) {
                let grow: Vec<usize> = o.dims().iter().zip(x.dims()).map(|(a, b)| a.saturating_sub(*b)).collect();
                let r = grow.len();
                let mut modes = vec![PadMode::Reflect, PadMode::Replicate];
                modes.extend(scalar_grid(&[7.0]).into_iter().map(PadMode::Constant));
                // Every split of each trailing dim's growth into (left, right).
                for k in 1..=r {
                    let mut all: Vec<Vec<usize>> = vec![vec![]];
                    for i in 0..k {
                        let g = grow[r - 1 - i];
                        all = all
                            .into_iter()
                            .flat_map(|p| {
                                (0..=g).map(move |lo| {
                                    let mut q = p.clone();
                                    q.extend([lo, g - lo]);
                                    q
                                })
                            })
                            .collect();
                    }
                    for pads in all {
                        for &m in &modes {
                            let pads = pads.clone();
                            c.push(one(move |v| v[0].pad(&pads, m)));
                        }
                    }
                }
            }
        }
        "embedding" => c.push(one(|v| v[0].embedding(v.get(1).ok_or_else(unfit)?.tensor(), None))),
        "layer_norm" => {
            let rank = inputs.first().map_or(0, |t| t.rank());
            for k in 1..=rank {
                for (wi, bi) in [(Some(1usize), Some(2usize)), (Some(1), None), (None, Some(1)), (None, None)] {
                    c.push(one(move |v| {
                        let ns = v[0].dims()[v[0].rank() - k..].to_vec();
                        let w = match wi {
                            Some(i) => Some(v.get(i).ok_or_else(unfit)?),
                            None => None,
                        };
                        let b = match bi {
                            Some(i) => Some(v.get(i).ok_or_else(unfit)?),
                            None => None,
                        };
                        if v.len() != 1 + usize::from(wi.is_some()) + usize::from(bi.is_some()) {
                            return Err(unfit());
                        }
                        v[0].layer_norm(&ns, w, b, 1e-5)
                    }));
                }
            }
        }
        "batch_norm" => {
            // Training mode only: in evaluation the output depends on the running
            // statistics, which are constants (`&Tensor`) on a `Var`.
            for stats in [false, true] {
                for affine in [false, true] {
                    c.push(one(move |v| {
                        if v.len() != 1 + 2 * usize::from(stats) + 2 * usize::from(affine) {
                            return Err(unfit());
                        }
                        let a0 = if stats { 3 } else { 1 };
                        let (w, b) = if affine { (Some(&v[a0]), Some(&v[a0 + 1])) } else { (None, None) };
                        let (rm, rv) = if stats {
                            (Some(v[1].tensor().copy()?), Some(v[2].tensor().copy()?))
                        } else {
                            (None, None)
                        };
                        v[0].batch_norm(rm.as_ref(), rv.as_ref(), w, b, true, 0.1, 1e-5)
                    }));
                }
            }
        }
        "dropout" => {
            for p in [0.0, 0.5, 1.0] {
                for training in [false, true] {
                    c.push(one(move |v| v[0].dropout(p, training)));
                }
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

/// Samples with more float input elements than this are not gradchecked.
const MAX_GRADCHECK_INPUTS: usize = 2000;

#[test]
fn gradcheck_every_differentiable_op_table_record() {
    let mut missing = Vec::new();
    let mut unmatched_records = Vec::new();
    let mut unmatched_samples = Vec::new();
    let mut failures = Vec::new();
    let mut checked = 0usize;
    let mut skipped_large = Vec::new();
    let mut skipped_undefined = Vec::new();
    for op in all_ops().into_iter().filter(|o| o.differentiable) {
        if !known(op.name) {
            missing.push(op.name);
            continue;
        }
        let mut matched = 0usize;
        for s in &op.samples {
            let Ok(inputs) = inputs_f64(s) else { continue };
            // Samples whose float inputs cannot be F64 are not gradcheckable.
            if !inputs.iter().zip(&s.cast).any(|(t, &c)| c && t.dtype() == DType::F64) {
                continue;
            }
            // Derivatives are undefined at NaN/inf inputs, and at ties of the ops that
            // pick one element (central differences split the step between the tied
            // elements, the gradient goes to the chosen one).
            let floats: Vec<f64> = inputs
                .iter()
                .zip(&s.cast)
                .filter(|(t, &c)| c && t.dtype().is_float())
                .flat_map(|(t, _)| t.to_vec_f64().unwrap_or_default())
                .collect();
            let picks =
                matches!(op.name, "max_dim" | "min_dim" | "sort" | "topk" | "max_pool2d" | "max_pool2d_with_indices");
            let tied = picks && {
                let mut v = floats.clone();
                v.sort_by(f64::total_cmp);
                v.windows(2).any(|w| w[0] == w[1])
            };
            if tied || floats.iter().any(|x| !x.is_finite()) {
                skipped_undefined.push(format!("{}: {}", op.name, s.desc));
                continue;
            }
            // Central differences cost one forward per input element: the few large
            // samples (there for accumulation accuracy) are left to the forward tests.
            let n_in: usize = inputs.iter().zip(&s.cast).filter(|(_, &c)| c).map(|(t, _)| t.numel()).sum();
            if n_in > MAX_GRADCHECK_INPUTS {
                skipped_large.push(format!("{}: {}", op.name, s.desc));
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
    eprintln!("gradchecked {checked} op-table samples; skipped as too large: {skipped_large:?}");
    eprintln!("skipped at points where the derivative is undefined: {skipped_undefined:?}");
    assert!(missing.is_empty(), "differentiable op-table records with no Var counterpart: {missing:?}");
    assert!(unmatched_records.is_empty(), "records none of whose samples has a Var counterpart: {unmatched_records:?}");
    assert!(failures.is_empty(), "{} gradcheck failures:\n{}", failures.len(), failures.join("\n"));
}
