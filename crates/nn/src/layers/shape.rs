//! Shape layers: Flatten, Unflatten, Identity.

use autograd::Var;
use tensor_core::Result;

use crate::module::{Forward, Module, Visitor};

/// Flattens dims `start_dim..=end_dim` into one (by default all but the batch dim).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flatten {
    /// First dim flattened (1 by default).
    pub start_dim: isize,
    /// Last dim flattened (-1 by default).
    pub end_dim: isize,
}

impl Flatten {
    /// PyTorch's default: keep dim 0, flatten the rest.
    pub fn new() -> Flatten {
        Flatten { start_dim: 1, end_dim: -1 }
    }
}

impl Default for Flatten {
    fn default() -> Self {
        Flatten::new()
    }
}

impl Module for Flatten {
    fn visit(&self, _v: &mut dyn Visitor) {}
}

impl Forward for Flatten {
    fn forward(&self, x: &Var) -> Result<Var> {
        x.flatten(self.start_dim, self.end_dim)
    }
}

/// Splits dim `dim` into `sizes` (one of them may be -1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unflatten {
    /// The dim split.
    pub dim: isize,
    /// The sizes it is split into.
    pub sizes: Vec<isize>,
}

impl Unflatten {
    /// Splits `dim` into `sizes`.
    pub fn new(dim: isize, sizes: &[isize]) -> Unflatten {
        Unflatten { dim, sizes: sizes.to_vec() }
    }
}

impl Module for Unflatten {
    fn visit(&self, _v: &mut dyn Visitor) {}
}

impl Forward for Unflatten {
    fn forward(&self, x: &Var) -> Result<Var> {
        x.unflatten(self.dim, &self.sizes)
    }
}

/// Returns its input unchanged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Identity;

impl Module for Identity {
    fn visit(&self, _v: &mut dyn Visitor) {}
}

impl Forward for Identity {
    fn forward(&self, x: &Var) -> Result<Var> {
        Ok(x.clone())
    }
}
