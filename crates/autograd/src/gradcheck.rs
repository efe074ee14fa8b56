//! Gradient checks against central finite differences in f64 (PyTorch's
//! `gradcheck`/`gradgradcheck`, with its default eps 1e-6, atol 1e-5, rtol 1e-3).

use tensor_core::{DType, Error, Generator, Result, Tensor};

use crate::engine::grad_with;
use crate::mode::{enable_grad, no_grad};
use crate::var::Var;

/// Tolerances and step of a gradient check.
#[derive(Clone, Copy, Debug)]
pub struct GradcheckOpts {
    /// Finite-difference step.
    pub eps: f64,
    /// Absolute tolerance.
    pub atol: f64,
    /// Relative tolerance (relative to the numerical value).
    pub rtol: f64,
}

impl Default for GradcheckOpts {
    fn default() -> Self {
        GradcheckOpts { eps: 1e-6, atol: 1e-5, rtol: 1e-3 }
    }
}

fn to_f64(t: &Tensor) -> Result<Tensor> {
    if t.dtype().is_float() {
        t.to_dtype(DType::F64)
    } else {
        Ok(t.clone())
    }
}

/// A copy of `t` (contiguous F64) with element `k` shifted by `delta`.
fn perturbed(t: &Tensor, k: usize, delta: f64) -> Result<Tensor> {
    let mut v = t.to_vec_f64()?;
    v[k] += delta;
    Tensor::from_vec(v, t.dims().to_vec())?.to_device(t.device())
}

/// Checks the gradients of `f` at `inputs` against finite differences. Float inputs
/// are converted to F64 (keeping their layout when already F64) and differentiated;
/// other inputs (indices, masks) are passed through.
///
/// ```
/// use autograd::{gradcheck, Var};
/// use tensor_core::Tensor;
/// let x = Tensor::from_vec(vec![0.5f64, -1.0, 2.0], [3])?;
/// gradcheck(|v: &[Var]| Ok(vec![v[0].tanh()?.mul(&v[0])?]), &[x])?;
/// # Ok::<(), tensor_core::Error>(())
/// ```
pub fn gradcheck(f: impl Fn(&[Var]) -> Result<Vec<Var>>, inputs: &[Tensor]) -> Result<()> {
    let numeric = |ts: &[Tensor]| -> Result<Vec<Tensor>> {
        no_grad(|| {
            let vs: Vec<Var> = ts.iter().map(|t| Var::from(t.clone())).collect();
            Ok(f(&vs)?.into_iter().map(|v| v.tensor().clone()).collect())
        })
    };
    let wrt: Vec<bool> = inputs.iter().map(|t| t.dtype().is_float()).collect();
    gradcheck_with(&f, numeric, inputs, &wrt, GradcheckOpts::default())
}

/// The general check: analytical gradients of `analytic` (a `Var` function) against
/// central differences of `numeric` (the same function on plain tensors, e.g. the
/// tensor op itself), for the inputs marked in `wrt`. Also checks that both compute
/// the same forward values.
pub fn gradcheck_with(
    analytic: impl Fn(&[Var]) -> Result<Vec<Var>>,
    numeric: impl Fn(&[Tensor]) -> Result<Vec<Tensor>>,
    inputs: &[Tensor],
    wrt: &[bool],
    opts: GradcheckOpts,
) -> Result<()> {
    let fail = |msg: String| Err(Error::Autograd(format!("gradcheck: {msg}")));
    let base: Vec<Tensor> = inputs.iter().map(to_f64).collect::<Result<_>>()?;
    let vars: Vec<Var> =
        base.iter().zip(wrt).map(|(t, &w)| Var::new(t.clone(), w && t.dtype().is_float())).collect::<Result<_>>()?;
    let wrt_idx: Vec<usize> = (0..vars.len()).filter(|&i| vars[i].requires_grad()).collect();
    let wrt_vars: Vec<Var> = wrt_idx.iter().map(|&i| vars[i].clone()).collect();
    let outs = enable_grad(|| analytic(&vars))?;
    let ref_outs = numeric(&base)?;
    if outs.len() != ref_outs.len() {
        return fail(format!("the Var function has {} outputs, the tensor function {}", outs.len(), ref_outs.len()));
    }
    for (k, (o, r)) in outs.iter().zip(&ref_outs).enumerate() {
        let ok = o.dims() == r.dims()
            && o.tensor().to_dtype(DType::F64)?.allclose(&r.to_dtype(DType::F64)?, 1e-7, 1e-7, true)?;
        if !ok {
            return fail(format!("forward output {k} differs between the Var and tensor functions"));
        }
    }
    // Analytical Jacobian, one backward per output element: jac[o][i][(j, k)].
    for (oi, o) in outs.iter().enumerate() {
        if !o.dtype().is_float() {
            continue;
        }
        let n_out = o.numel();
        let mut analytical: Vec<Vec<f64>> = wrt_vars.iter().map(|v| vec![0.0; n_out * v.numel()]).collect();
        if o.requires_grad() {
            for j in 0..n_out {
                let mut hot = vec![0.0; n_out];
                hot[j] = 1.0;
                let go = Tensor::from_vec(hot, o.dims().to_vec())?.to_dtype(o.dtype())?.to_device(o.device())?;
                let gs = grad_with(std::slice::from_ref(o), &wrt_vars, &[Var::from(go)], true, false)?;
                for (ii, g) in gs.into_iter().enumerate() {
                    if let Some(g) = g {
                        let v = g.tensor().to_vec_f64()?;
                        let m = wrt_vars[ii].numel();
                        analytical[ii][j * m..(j + 1) * m].copy_from_slice(&v);
                    }
                }
            }
        }
        // Numerical Jacobian by central differences, one input element at a time.
        for (ii, &i) in wrt_idx.iter().enumerate() {
            let m = base[i].numel();
            for k in 0..m {
                let mut plus = base.clone();
                plus[i] = perturbed(&base[i], k, opts.eps)?;
                let mut minus = base.clone();
                minus[i] = perturbed(&base[i], k, -opts.eps)?;
                let p = numeric(&plus)?[oi].to_vec_f64()?;
                let q = numeric(&minus)?[oi].to_vec_f64()?;
                for j in 0..n_out {
                    let num = (p[j] - q[j]) / (2.0 * opts.eps);
                    let ana = analytical[ii][j * m + k];
                    let ok = (ana - num).abs() <= opts.atol + opts.rtol * num.abs() || (ana.is_nan() && num.is_nan());
                    if !ok {
                        return fail(format!(
                            "Jacobian mismatch for output {oi} with respect to input {i}, \
                             output element {j}, input element {k}: analytical {ana}, numerical {num}"
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

/// Checks second derivatives: the gradient of `f` (with random output gradients `v`)
/// is itself gradient-checked against finite differences, with respect to the inputs
/// and `v` (PyTorch's `gradgradcheck`).
///
/// ```
/// use autograd::{gradgradcheck, Var};
/// use tensor_core::Tensor;
/// let x = Tensor::from_vec(vec![0.5f64, -1.0, 2.0], [3])?;
/// gradgradcheck(|v: &[Var]| Ok(vec![v[0].sin()?.mul(&v[0])?]), &[x])?;
/// # Ok::<(), tensor_core::Error>(())
/// ```
pub fn gradgradcheck(f: impl Fn(&[Var]) -> Result<Vec<Var>>, inputs: &[Tensor]) -> Result<()> {
    let wrt: Vec<bool> = inputs.iter().map(|t| t.dtype().is_float()).collect();
    gradgradcheck_with(f, inputs, &wrt, GradcheckOpts::default())
}

/// [`gradgradcheck`] with respect to the float inputs where `wrt` is true (the rest
/// are held constant), with explicit tolerances.
///
/// ```
/// use autograd::{gradgradcheck_with, GradcheckOpts, Var};
/// use tensor_core::Tensor;
/// let x = Tensor::from_vec(vec![0.5f64, -1.0], [2])?;
/// let c = Tensor::from_vec(vec![2.0f64, 3.0], [2])?;
/// let f = |v: &[Var]| Ok(vec![v[0].exp()?.mul(&v[1])?]);
/// gradgradcheck_with(f, &[x, c], &[true, false], GradcheckOpts::default())?;
/// # Ok::<(), tensor_core::Error>(())
/// ```
pub fn gradgradcheck_with(
    f: impl Fn(&[Var]) -> Result<Vec<Var>>,
    inputs: &[Tensor],
    wrt: &[bool],
    opts: GradcheckOpts,
) -> Result<()> {
    if wrt.len() != inputs.len() {
        return Err(Error::arg("gradgradcheck", format!("{} wrt flags for {} inputs", wrt.len(), inputs.len())));
    }
    let base: Vec<Tensor> = inputs.iter().map(to_f64).collect::<Result<_>>()?;
    let n_in = base.len();
    let wrt: Vec<bool> = base.iter().zip(wrt).map(|(t, &w)| w && t.dtype().is_float()).collect();
    // Output shapes, then seeded random output gradients.
    let outs = no_grad(|| f(&base.iter().map(|t| Var::from(t.clone())).collect::<Vec<_>>()))?;
    let mut gen = Generator::new(0x9a9a);
    let mut all = base.clone();
    let mut float_outs = Vec::new();
    for (k, o) in outs.iter().enumerate() {
        if o.dtype().is_float() {
            float_outs.push(k);
            let v: Vec<f64> = gen.uniform_f64(o.numel()).into_iter().map(|u| 2.0 * u - 1.0).collect();
            all.push(Tensor::from_vec(v, o.dims().to_vec())?.to_device(o.device())?);
        }
    }
    let first_order = |vars: &[Var]| -> Result<Vec<Var>> {
        let (xs, vs) = vars.split_at(n_in);
        let outs = f(xs)?;
        let xw: Vec<Var> = xs.iter().zip(&wrt).filter(|(_, &w)| w).map(|(x, _)| x.clone()).collect();
        let mut os = Vec::new();
        let mut gs = Vec::new();
        for (slot, &k) in float_outs.iter().enumerate() {
            if outs[k].requires_grad() {
                os.push(outs[k].clone());
                gs.push(vs[slot].clone());
            }
        }
        let grads = if os.is_empty() { vec![None; xw.len()] } else { grad_with(&os, &xw, &gs, true, true)? };
        grads.into_iter().zip(&xw).map(|(g, x)| g.map_or_else(|| x.zeros_like(), Ok)).collect()
    };
    let numeric = |ts: &[Tensor]| -> Result<Vec<Tensor>> {
        enable_grad(|| {
            let vars: Vec<Var> =
                ts.iter().enumerate().map(|(i, t)| Var::new(t.clone(), i >= n_in || wrt[i])).collect::<Result<_>>()?;
            Ok(first_order(&vars)?.into_iter().map(|v| v.tensor().clone()).collect())
        })
    };
    let all_wrt: Vec<bool> =
        all.iter().enumerate().map(|(i, t)| if i < n_in { wrt[i] } else { t.dtype().is_float() }).collect();
    gradcheck_with(first_order, numeric, &all, &all_wrt, opts)
}
