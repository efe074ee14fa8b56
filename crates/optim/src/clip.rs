//! Gradient clipping: [`clip_grad_norm_`] and [`clip_grad_value_`] (PyTorch's
//! `torch.nn.utils.clip_grad_norm_` / `clip_grad_value_`).

use autograd::Var;
use tensor_core::{DType, Error, Result};

/// Scales the gradients of `params` so that their global `norm_type`-norm (the norm of
/// all gradients taken together) is at most `max_norm`, and returns that total norm
/// before clipping. Parameters without a gradient are ignored.
///
/// `norm_type` is any `p > 0` or `f64::INFINITY` (the largest absolute value). The
/// scale is `max_norm / (total + 1e-6)`, applied only when it is below 1 (PyTorch's
/// rule). With `error_if_nonfinite` a NaN or infinite total norm is an error and no
/// gradient is changed; without it the gradients are scaled by the non-finite
/// coefficient, as PyTorch does.
///
/// ```
/// use autograd::Var;
/// use optim::clip_grad_norm_;
/// use tensor_core::Tensor;
///
/// let w = Var::param(Tensor::new(&[0.0f64, 0.0]))?;
/// w.set_grad(Some(Tensor::new(&[3.0f64, 4.0])))?;     // norm 5
/// let total = clip_grad_norm_(&[w.clone()], 1.0, 2.0, false)?;
/// assert_eq!(total, 5.0);
/// let g = w.grad().unwrap().to_vec::<f64>()?;
/// assert!((g[0] - 0.6).abs() < 1e-6 && (g[1] - 0.8).abs() < 1e-6);
/// # Ok::<(), tensor_core::Error>(())
/// ```
pub fn clip_grad_norm_(params: &[Var], max_norm: f64, norm_type: f64, error_if_nonfinite: bool) -> Result<f64> {
    const OP: &str = "clip_grad_norm_";
    if !(norm_type > 0.0) {
        return Err(Error::arg(OP, format!("norm_type must be positive or infinity, got {norm_type}")));
    }
    if max_norm.is_nan() {
        return Err(Error::arg(OP, "max_norm is NaN"));
    }
    let grads: Vec<_> = params.iter().filter_map(|p| p.grad()).collect();
    if grads.is_empty() {
        return Ok(0.0);
    }
    let total = total_norm(&grads, norm_type)?;
    if error_if_nonfinite && !total.is_finite() {
        return Err(Error::arg(
            OP,
            format!(
                "the total norm of order {norm_type} for gradients from `parameters` is non-finite ({total}), so it \
                 cannot be clipped; pass error_if_nonfinite = false to clip anyway"
            ),
        ));
    }
    let coef = max_norm / (total + 1e-6);
    // PyTorch clamps the coefficient to 1 and multiplies; `x * 1.0 == x`, so skip it.
    if coef < 1.0 || coef.is_nan() {
        for g in &grads {
            g.mul_scalar_(coef)?;
        }
    }
    Ok(total)
}

/// The global `norm_type`-norm of `grads` (norm of the per-tensor norms).
fn total_norm(grads: &[tensor_core::Tensor], norm_type: f64) -> Result<f64> {
    let mut per = Vec::with_capacity(grads.len());
    for g in grads {
        let n = if g.numel() == 0 {
            0.0
        } else if norm_type == f64::INFINITY {
            g.abs()?.max_all()?.to_dtype(DType::F64)?.to_vec_f64()?[0]
        } else if norm_type == 2.0 {
            g.square()?.sum_all()?.to_dtype(DType::F64)?.to_vec_f64()?[0].sqrt()
        } else if norm_type == 1.0 {
            g.abs()?.sum_all()?.to_dtype(DType::F64)?.to_vec_f64()?[0]
        } else {
            g.abs()?.pow_scalar(norm_type)?.sum_all()?.to_dtype(DType::F64)?.to_vec_f64()?[0].powf(1.0 / norm_type)
        };
        per.push(n);
    }
    Ok(if norm_type == f64::INFINITY {
        per.iter().fold(0.0f64, |a, &b| if b.is_nan() || a.is_nan() { f64::NAN } else { a.max(b) })
    } else {
        per.iter().map(|n| n.powf(norm_type)).sum::<f64>().powf(1.0 / norm_type)
    })
}

/// Clamps every gradient of `params` to `[-clip_value, clip_value]` in place.
///
/// ```
/// use autograd::Var;
/// use optim::clip_grad_value_;
/// use tensor_core::Tensor;
///
/// let w = Var::param(Tensor::new(&[0.0f32, 0.0, 0.0]))?;
/// w.set_grad(Some(Tensor::new(&[-3.0f32, 0.5, 2.0])))?;
/// clip_grad_value_(&[w.clone()], 1.0)?;
/// assert_eq!(w.grad().unwrap().to_vec::<f32>()?, vec![-1.0, 0.5, 1.0]);
/// # Ok::<(), tensor_core::Error>(())
/// ```
pub fn clip_grad_value_(params: &[Var], clip_value: f64) -> Result<()> {
    if !(clip_value >= 0.0) {
        return Err(Error::arg("clip_grad_value_", format!("clip_value must be >= 0, got {clip_value}")));
    }
    for g in params.iter().filter_map(|p| p.grad()) {
        g.clamp_(Some(-clip_value), Some(clip_value))?;
    }
    Ok(())
}
