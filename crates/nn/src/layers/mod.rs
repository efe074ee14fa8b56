//! The built-in layers, one file per family.

pub mod activation;
pub mod attention;
pub mod container;
pub mod conv;
pub mod dropout;
pub mod embedding;
pub mod linear;
mod lstm_seq;
pub mod norm;
pub mod pool;
pub mod rnn;
pub mod rope;
pub mod shape;
pub mod transformer;

use tensor_core::{DType, Device, Error, Result, Tensor};

use crate::factory::Factory;
use crate::module::Param;

/// Checks that a layer's parameter shape (from user sizes) has an element count that
/// fits, before anything is allocated.
pub(crate) fn check_size(dims: &[usize]) -> Result<()> {
    let bytes = dims.iter().try_fold(DType::F64.size_in_bytes(), |a, &d| a.checked_mul(d));
    if bytes.is_none_or(|b| b > isize::MAX as usize) {
        return Err(Error::invalid_shape("Param::new", dims, "the parameter's size overflows"));
    }
    Ok(())
}

/// Converts an initial value made in F32 on the CPU to the dtype (when `float`) and
/// device of the current [`Factory`] scope.
pub(crate) fn place(t: Tensor, float: bool) -> Result<Tensor> {
    let (dtype, device) = Factory::current();
    let t = if float && t.dtype() != dtype { t.to_dtype(dtype)? } else { t };
    if t.device() == &device {
        Ok(t)
    } else {
        t.to_device(&device)
    }
}

/// A new parameter drawn from `U(-bound, bound)` (PyTorch's default layer
/// initialisations are all of this form), in the current [`Factory`]'s dtype and device.
pub(crate) fn uniform_param(dims: &[usize], bound: f64) -> Result<Param> {
    check_size(dims)?;
    Param::new(place(Tensor::uniform(dims.to_vec(), -bound, bound, DType::F32, &Device::cpu())?, true)?)
}

/// A new parameter filled with `value`, in the current [`Factory`]'s dtype and device.
pub(crate) fn full_param(dims: &[usize], value: f64) -> Result<Param> {
    check_size(dims)?;
    Param::new(place(Tensor::full(dims.to_vec(), value, DType::F32, &Device::cpu())?, true)?)
}

/// `1 / sqrt(fan_in)`, or 0 for an empty fan (no values to draw).
pub(crate) fn inv_sqrt(fan_in: usize) -> f64 {
    if fan_in == 0 {
        0.0
    } else {
        1.0 / (fan_in as f64).sqrt()
    }
}
