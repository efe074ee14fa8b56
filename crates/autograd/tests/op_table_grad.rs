//! gradcheck and gradgradcheck over every differentiable record of the op table.
//!
//! A sample states its call once (`op_table::call!`), compiled for `Tensor` and for
//! `Var`, so this file runs exactly the call the forward tests run: the `Var` form's
//! forward must equal the tensor form's, its analytical gradients must match central
//! differences of the tensor form, and (on the small samples) its second derivatives
//! must match finite differences of its gradients. The test fails when a
//! gradcheckable sample of a differentiable record has no `Var` form, or on any
//! mismatch.

use autograd::{gradcheck_with, gradgradcheck_with, GradcheckOpts, Var};
use op_table::{all_ops, OpInfo, Sample};
use tensor_core::{DType, Result, Tensor};

/// Samples with more float input elements than this are not gradchecked (central
/// differences cost one forward per element; the few large samples are there for
/// accumulation accuracy and stay with the forward tests).
const MAX_GRADCHECK_INPUTS: usize = 2000;
/// Samples with more float input and output elements than this are not
/// gradgradchecked (each element costs two backward passes).
const MAX_GRADGRAD_ELEMENTS: usize = 160;

/// The ops that pick one element (a tie splits the central difference between the
/// tied elements while the gradient goes to the chosen one).
fn picks(name: &str) -> bool {
    matches!(name, "max_dim" | "min_dim" | "sort" | "topk" | "max_pool2d" | "max_pool2d_with_indices")
}

/// The ops whose gradient jumps where inputs tie (the max and min reductions and
/// the ops that pick one element): second derivatives are not checked at ties.
fn jumps_at_ties(name: &str) -> bool {
    picks(name) || matches!(name, "amax" | "amin" | "max_all" | "min_all")
}

/// Ops whose second derivative is zero almost everywhere but whose first
/// derivative jumps at points the finite differences of the gradient can straddle
/// (the quotient's floor, the winner of a max): not gradgradchecked.
fn kinked(name: &str) -> bool {
    matches!(name, "remainder" | "maximum" | "minimum")
}

/// Whether two float inputs under test are equal.
fn has_ties(inputs: &[Tensor], cast: &[bool]) -> bool {
    let mut v: Vec<f64> = inputs
        .iter()
        .zip(cast)
        .filter(|(t, &c)| c && t.dtype().is_float())
        .flat_map(|(t, _)| t.to_vec_f64().unwrap_or_default())
        .collect();
    v.sort_by(f64::total_cmp);
    v.windows(2).any(|w| w[0] == w[1])
}

fn inputs_f64(s: &Sample) -> Result<Vec<Tensor>> {
    s.inputs.iter().zip(&s.cast).map(|(t, &c)| if c { t.to_dtype(DType::F64) } else { Ok(t.clone()) }).collect()
}

/// Why a sample is not gradchecked, if it is not.
fn skip_reason(op: &OpInfo, s: &Sample, inputs: &[Tensor]) -> Option<&'static str> {
    if !inputs.iter().zip(&s.cast).any(|(t, &c)| c && t.dtype() == DType::F64) {
        return Some("no float input");
    }
    let floats: Vec<f64> = inputs
        .iter()
        .zip(&s.cast)
        .filter(|(t, &c)| c && t.dtype().is_float())
        .flat_map(|(t, _)| t.to_vec_f64().unwrap_or_default())
        .collect();
    if floats.iter().any(|x| !x.is_finite()) {
        return Some("NaN or infinite input");
    }
    if picks(op.name) && has_ties(inputs, &s.cast) {
        return Some("tied inputs");
    }
    if floats.len() > MAX_GRADCHECK_INPUTS {
        return Some("large");
    }
    None
}

fn same(a: &[Var], b: &[Tensor]) -> std::result::Result<(), String> {
    if a.len() != b.len() {
        return Err(format!("{} outputs, the tensor form gives {}", a.len(), b.len()));
    }
    for (k, (x, y)) in a.iter().zip(b).enumerate() {
        let ok = x.dims() == y.dims()
            && x.tensor()
                .to_dtype(DType::F64)
                .and_then(|p| p.allclose(&y.to_dtype(DType::F64)?, 1e-12, 1e-12, true))
                .unwrap_or(false);
        if !ok {
            return Err(format!("output {k} differs from the tensor form's"));
        }
    }
    Ok(())
}

#[test]
fn gradcheck_every_differentiable_op_table_record() {
    let mut no_var_form = Vec::new();
    let mut unchecked_records = Vec::new();
    let mut failures = Vec::new();
    let (mut checked, mut gradgrad_checked) = (0usize, 0usize);
    let mut skipped = Vec::new();
    for op in all_ops().into_iter().filter(|o| o.differentiable) {
        let mut checked_here = 0usize;
        for s in &op.samples {
            let Ok(inputs) = inputs_f64(s) else { continue };
            if let Some(why) = skip_reason(&op, s, &inputs) {
                skipped.push(format!("{}: {} ({why})", op.name, s.desc));
                continue;
            }
            let Some(var_op) = s.var_op.clone() else {
                no_var_form.push(format!("{}: {}", op.name, s.desc));
                continue;
            };
            let label = format!("{} [{}]", op.name, s.desc);
            let want = match (s.op)(&inputs) {
                Ok(w) => w,
                Err(e) => {
                    failures.push(format!("{label}: tensor form failed: {e}"));
                    continue;
                }
            };
            let vars: Vec<Var> = inputs.iter().map(|t| Var::from(t.clone())).collect();
            match var_op(&vars).map_err(|e| e.to_string()).and_then(|got| same(&got, &want)) {
                Ok(()) => {}
                Err(e) => {
                    failures.push(format!("{label}: Var form: {e}"));
                    continue;
                }
            }
            let wrt: Vec<bool> = inputs
                .iter()
                .zip(s.cast.iter().zip(&s.constant))
                .map(|(t, (&c, &k))| c && !k && t.dtype().is_float())
                .collect();
            let sop = s.op.clone();
            let opts = GradcheckOpts::default();
            if let Err(e) = gradcheck_with(|v| var_op(v), |t| sop(t), &inputs, &wrt, opts) {
                failures.push(format!("{label}: {e}"));
                continue;
            }
            checked += 1;
            checked_here += 1;
            let elements: usize = inputs.iter().chain(&want).filter(|t| t.dtype().is_float()).map(|t| t.numel()).sum();
            // Second derivatives are undefined where the output is not finite (a
            // variance of one element) and, for the max-like ops, at ties.
            let finite_out = want.iter().all(|t| t.to_vec_f64().is_ok_and(|v| v.iter().all(|x| x.is_finite())));
            if finite_out
                && !kinked(op.name)
                && !(jumps_at_ties(op.name) && has_ties(&inputs, &s.cast))
                && elements <= MAX_GRADGRAD_ELEMENTS
            {
                if let Err(e) = gradgradcheck_with(|v| var_op(v), &inputs, &wrt, opts) {
                    failures.push(format!("{label} (second derivatives): {e}"));
                }
                gradgrad_checked += 1;
            }
        }
        if checked_here == 0 && !op.samples.is_empty() {
            unchecked_records.push(op.name);
        }
    }
    eprintln!("gradchecked {checked} op-table samples, gradgradchecked {gradgrad_checked}");
    eprintln!("not gradchecked ({}): {skipped:?}", skipped.len());
    assert!(
        no_var_form.is_empty(),
        "gradcheckable samples with no Var form (write them with call!):\n{}",
        no_var_form.join("\n")
    );
    assert!(unchecked_records.is_empty(), "differentiable records with no gradchecked sample: {unchecked_records:?}");
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    // The table is large: a silent filter bug would show as a collapse of this count.
    assert!(checked > 300, "only {checked} samples gradchecked");
}
