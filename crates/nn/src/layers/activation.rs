//! Activation functions as modules (for [`crate::Sequential`]).

use autograd::Var;
use tensor_core::Result;

use crate::module::{Forward, Module, Visitor};

macro_rules! simple_activation {
    ($($(#[$m:meta])* $name:ident => $f:ident;)*) => {
        $(
            $(#[$m])*
            #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
            pub struct $name;

            impl Module for $name {
                fn visit(&self, _v: &mut dyn Visitor) {}
            }

            impl Forward for $name {
                fn forward(&self, x: &Var) -> Result<Var> {
                    x.$f()
                }
            }
        )*
    };
}

simple_activation! {
    /// `max(x, 0)`.
    ReLU => relu;
    /// `x * sigmoid(x)` (Swish).
    SiLU => silu;
    /// Hyperbolic tangent.
    Tanh => tanh;
    /// Logistic sigmoid.
    Sigmoid => sigmoid;
}

/// `x` if positive, else `negative_slope * x`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LeakyReLU {
    /// Slope for negative inputs (PyTorch's default 0.01).
    pub negative_slope: f64,
}

impl LeakyReLU {
    /// With the given slope.
    pub fn new(negative_slope: f64) -> LeakyReLU {
        LeakyReLU { negative_slope }
    }
}

impl Default for LeakyReLU {
    fn default() -> Self {
        LeakyReLU::new(0.01)
    }
}

impl Module for LeakyReLU {
    fn visit(&self, _v: &mut dyn Visitor) {}
}

impl Forward for LeakyReLU {
    fn forward(&self, x: &Var) -> Result<Var> {
        x.leaky_relu(self.negative_slope)
    }
}

/// `x` if positive, else `alpha * (e^x - 1)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ELU {
    /// Scale of the negative part (PyTorch's default 1.0).
    pub alpha: f64,
}

impl ELU {
    /// With the given `alpha`.
    pub fn new(alpha: f64) -> ELU {
        ELU { alpha }
    }
}

impl Default for ELU {
    fn default() -> Self {
        ELU::new(1.0)
    }
}

impl Module for ELU {
    fn visit(&self, _v: &mut dyn Visitor) {}
}

impl Forward for ELU {
    fn forward(&self, x: &Var) -> Result<Var> {
        x.elu(self.alpha)
    }
}

/// GELU: `x * Phi(x)` exactly (erf), or its tanh approximation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GELU {
    /// Use the tanh approximation (PyTorch's `approximate="tanh"`).
    pub tanh_approximation: bool,
}

impl GELU {
    /// The exact (erf) form.
    pub fn new() -> GELU {
        GELU { tanh_approximation: false }
    }

    /// The tanh approximation.
    pub fn tanh() -> GELU {
        GELU { tanh_approximation: true }
    }
}

impl Module for GELU {
    fn visit(&self, _v: &mut dyn Visitor) {}
}

impl Forward for GELU {
    fn forward(&self, x: &Var) -> Result<Var> {
        if self.tanh_approximation {
            x.gelu_tanh()
        } else {
            x.gelu()
        }
    }
}

/// Softmax along `dim`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Softmax {
    /// The dim normalised over.
    pub dim: isize,
}

impl Softmax {
    /// Softmax along `dim`.
    pub fn new(dim: isize) -> Softmax {
        Softmax { dim }
    }
}

impl Module for Softmax {
    fn visit(&self, _v: &mut dyn Visitor) {}
}

impl Forward for Softmax {
    fn forward(&self, x: &Var) -> Result<Var> {
        // Checked here so that a bad dim is reported against this layer, not against
        // the reduction softmax is computed with.
        tensor_core::shape::normalize_dim_scalar_ok("Softmax", self.dim, x.rank())?;
        x.softmax(self.dim)
    }
}

/// Log-softmax along `dim`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogSoftmax {
    /// The dim normalised over.
    pub dim: isize,
}

impl LogSoftmax {
    /// Log-softmax along `dim`.
    pub fn new(dim: isize) -> LogSoftmax {
        LogSoftmax { dim }
    }
}

impl Module for LogSoftmax {
    fn visit(&self, _v: &mut dyn Visitor) {}
}

impl Forward for LogSoftmax {
    fn forward(&self, x: &Var) -> Result<Var> {
        tensor_core::shape::normalize_dim_scalar_ok("LogSoftmax", self.dim, x.rank())?;
        x.log_softmax(self.dim)
    }
}
