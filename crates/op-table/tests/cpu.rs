//! The generic op-table tests on the CPU.

use op_table::{all_ops, compare, default_tol, non_contiguous, RefArray};
use tensor_core::Tensor;

fn round_to(w: &RefArray, dtype: tensor_core::DType) -> RefArray {
    if !matches!(dtype, tensor_core::DType::F16 | tensor_core::DType::BF16) {
        return w.clone();
    }
    let t = Tensor::from_vec(w.data.clone(), w.shape.clone()).and_then(|t| t.to_dtype(dtype));
    match t {
        Ok(t) => RefArray::from_tensor(&t),
        Err(_) => w.clone(),
    }
}

#[test]
fn every_sample_matches_its_reference_on_every_dtype() {
    let mut failures = Vec::new();
    let mut checked = 0usize;
    for op in all_ops() {
        assert!(!op.samples.is_empty(), "op {} has no samples", op.name);
        for &dt in &op.dtypes {
            let (mut rtol, mut atol) = default_tol(dt);
            if let Some((r, a)) = op.tol {
                rtol = rtol.max(r);
                atol = atol.max(a);
            }
            for s in &op.samples {
                let inputs = match s.inputs_as(dt) {
                    Ok(i) => i,
                    Err(e) => {
                        failures.push(format!("{} [{}] {}: casting inputs: {e}", op.name, dt, s.desc));
                        continue;
                    }
                };
                let refs: Vec<RefArray> = inputs.iter().map(RefArray::from_tensor).collect();
                let want = (s.reference)(&refs);
                match (s.op)(&inputs) {
                    Ok(got) => {
                        if got.len() != want.len() {
                            failures.push(format!(
                                "{} [{}] {}: {} outputs, expected {}",
                                op.name,
                                dt,
                                s.desc,
                                got.len(),
                                want.len()
                            ));
                            continue;
                        }
                        for (k, (g, w)) in got.iter().zip(&want).enumerate() {
                            // The exact answer rounded to the output dtype (an f16 result
                            // past 65504 is inf, as in PyTorch).
                            let w = &round_to(w, g.dtype());
                            if let Err(m) = compare(g, w, rtol, atol) {
                                failures.push(format!("{} [{}] {} output {k}: {m}", op.name, dt, s.desc));
                            }
                        }
                        checked += 1;
                    }
                    Err(e) => failures.push(format!("{} [{}] {}: error {e}", op.name, dt, s.desc)),
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} failures (of {checked} checked):\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn non_contiguous_inputs_match_contiguous() {
    let mut failures = Vec::new();
    for op in all_ops() {
        // `view` must refuse strides it cannot express, so it is exempt by design.
        if op.name == "view" {
            continue;
        }
        for &dt in &op.dtypes {
            for s in &op.samples {
                let Ok(inputs) = s.inputs_as(dt) else { continue };
                let Ok(a) = (s.op)(&inputs) else { continue };
                let nc: Vec<Tensor> = inputs.iter().map(|t| non_contiguous(t).expect("non-contiguous copy")).collect();
                match (s.op)(&nc) {
                    Ok(b) => {
                        for (x, y) in a.iter().zip(&b) {
                            let same = x.dims() == y.dims()
                                && x.to_vec_f64()
                                    .unwrap()
                                    .iter()
                                    .zip(y.to_vec_f64().unwrap())
                                    .all(|(p, q)| p == &q || (p.is_nan() && q.is_nan()));
                            if !same {
                                failures.push(format!("{} [{}] {}", op.name, dt, s.desc));
                            }
                        }
                    }
                    Err(e) => failures.push(format!("{} [{}] {}: {e}", op.name, dt, s.desc)),
                }
            }
        }
    }
    assert!(failures.is_empty(), "non-contiguous results differ:\n{}", failures.join("\n"));
}

#[test]
fn error_cases_give_the_right_error() {
    let mut failures = Vec::new();
    let mut n = 0;
    for op in all_ops() {
        for e in &op.errors {
            n += 1;
            match (e.run)() {
                Ok(()) => failures.push(format!("{}: {}: succeeded", op.name, e.desc)),
                Err(err) => {
                    if !(e.check)(&err) {
                        failures.push(format!("{}: {}: wrong error {err:?}", op.name, e.desc));
                    }
                }
            }
        }
    }
    assert!(n > 0);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
