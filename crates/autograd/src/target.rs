//! [`Target`]: how every loss takes its target (a constant tensor or a `Var`).

use tensor_core::Tensor;

use crate::var::Var;

mod sealed {
    pub trait Sealed {}
    impl Sealed for &tensor_core::Tensor {}
    impl Sealed for &crate::Var {}
}

/// A loss target: `&Tensor` (a constant) or `&Var` (differentiated through where
/// the loss is differentiable in its target, as in PyTorch). Every loss function
/// (`Var::mse_loss`, `Var::cross_entropy`, and all of `nn::loss`) takes its target
/// as `impl Target`, so callers pass whichever they have.
///
/// ```
/// use autograd::Var;
/// use tensor_core::Tensor;
/// let x = Var::param(Tensor::new(&[1.0f64, 3.0]))?;
/// let y = Tensor::new(&[0.0f64, 1.0]);
/// let a = x.mse_loss(&y)?; // a tensor target
/// let b = x.mse_loss(&Var::from(y.clone()))?; // a Var target, same value
/// assert_eq!(a.tensor().to_scalar::<f64>()?, 2.5);
/// assert_eq!(b.tensor().to_scalar::<f64>()?, 2.5);
/// # Ok::<(), tensor_core::Error>(())
/// ```
pub trait Target: sealed::Sealed {
    /// The target as a `Var` (a constant leaf for a tensor).
    fn to_var(&self) -> Var;
    /// The target's values.
    fn tensor(&self) -> &Tensor;
}

impl Target for &Tensor {
    fn to_var(&self) -> Var {
        Var::from((*self).clone())
    }
    fn tensor(&self) -> &Tensor {
        self
    }
}

impl Target for &Var {
    fn to_var(&self) -> Var {
        (*self).clone()
    }
    fn tensor(&self) -> &Tensor {
        Var::tensor(self)
    }
}
