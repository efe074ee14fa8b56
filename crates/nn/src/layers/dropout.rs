//! Dropout.

use autograd::Var;
use tensor_core::{Error, Result, Tensor};

use crate::module::{Forward, Module, Training, Visitor};

/// Zeroes each element with probability `p` in training and scales the rest by
/// `1 / (1 - p)`; the identity in evaluation mode. The mask comes from tensor-core's
/// seeded global generator.
///
/// ```
/// use autograd::Var;
/// use nn::{Dropout, Forward, Module};
/// use tensor_core::{DType, Device, Tensor};
/// let d = Dropout::new(0.5)?;
/// let x = Var::from(Tensor::ones([1000], DType::F64, &Device::cpu())?);
/// let y = d.forward(&x)?.tensor().to_vec::<f64>()?;
/// assert!(y.iter().all(|&v| v == 0.0 || v == 2.0));
/// d.eval();
/// assert_eq!(d.forward(&x)?.tensor().to_vec::<f64>()?, vec![1.0; 1000]);
/// # Ok::<(), tensor_core::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Dropout {
    /// Probability of zeroing an element.
    pub p: f64,
    /// Train/eval mode.
    pub training: Training,
}

impl Dropout {
    /// Dropout with probability `p` in `[0, 1]`.
    pub fn new(p: f64) -> Result<Dropout> {
        if !(0.0..=1.0).contains(&p) {
            return Err(Error::arg("Dropout", format!("dropout probability has to be between 0 and 1, but got {p}")));
        }
        Ok(Dropout { p, training: Training::new() })
    }
}

impl Module for Dropout {
    fn visit(&self, v: &mut dyn Visitor) {
        v.training(&self.training);
    }
}

impl Forward for Dropout {
    fn forward(&self, x: &Var) -> Result<Var> {
        if !self.training.get() || self.p == 0.0 {
            return Ok(x.clone());
        }
        if !x.dtype().is_float() {
            return Err(Error::arg("Dropout", format!("expected a floating point input, got {}", x.dtype())));
        }
        let mask = if self.p >= 1.0 {
            x.tensor().zeros_like()?
        } else {
            Tensor::bernoulli_p(x.dims().to_vec(), 1.0 - self.p, x.dtype(), x.device())?
                .mul_scalar(1.0 / (1.0 - self.p))?
        };
        x.mul(&Var::from(mask))
    }
}
