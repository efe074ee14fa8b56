//! The built-in layers, one file per family.

pub mod activation;
pub mod container;
pub mod conv;
pub mod dropout;
pub mod embedding;
pub mod linear;
pub mod norm;
pub mod pool;
pub mod shape;

use tensor_core::{DType, Device, Result, Tensor};

use crate::module::Param;

/// A new F32 CPU parameter drawn from `U(-bound, bound)` (PyTorch's default layer
/// initialisations are all of this form).
pub(crate) fn uniform_param(dims: &[usize], bound: f64) -> Result<Param> {
    Param::new(Tensor::uniform(dims.to_vec(), -bound, bound, DType::F32, &Device::cpu())?)
}

/// A new F32 CPU parameter filled with `value`.
pub(crate) fn full_param(dims: &[usize], value: f64) -> Result<Param> {
    Param::new(Tensor::full(dims.to_vec(), value, DType::F32, &Device::cpu())?)
}

/// `1 / sqrt(fan_in)`, or 0 for an empty fan (no values to draw).
pub(crate) fn inv_sqrt(fan_in: usize) -> f64 {
    if fan_in == 0 {
        0.0
    } else {
        1.0 / (fan_in as f64).sqrt()
    }
}
