//! Parameter initialisers, as `torch.nn.init`: they overwrite a [`Param`] in place.
//!
//! Random ones draw from tensor-core's global generator (seed it with
//! [`tensor_core::manual_seed`]); each has a `_with` form taking an explicit
//! [`Generator`].
//!
//! ```
//! use nn::{init, Linear};
//! use nn::init::{FanMode, Nonlinearity};
//! tensor_core::manual_seed(0);
//! let fc = Linear::new(256, 128, true)?;
//! init::kaiming_uniform_(&fc.weight, FanMode::FanIn, Nonlinearity::ReLU)?;
//! let bound = (6.0f64 / 256.0).sqrt();
//! assert!(fc.weight.tensor().to_vec_f64()?.iter().all(|w| w.abs() <= bound));
//! # Ok::<(), tensor_core::Error>(())
//! ```

use tensor_core::random::with_global;
use tensor_core::{Error, Generator, Result, Tensor};

use crate::module::Param;

/// Which fan a variance-scaling initialiser keeps the variance of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FanMode {
    /// Inputs per output: preserves the variance of activations in the forward pass.
    FanIn,
    /// Outputs per input: preserves the variance of gradients in the backward pass.
    FanOut,
}

/// The non-linearity following a layer, for [`calculate_gain`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Nonlinearity {
    /// Identity (gain 1).
    Linear,
    /// Any convolution (gain 1).
    Conv,
    /// Sigmoid (gain 1).
    Sigmoid,
    /// Tanh (gain 5/3).
    Tanh,
    /// ReLU (gain sqrt(2)).
    ReLU,
    /// Leaky ReLU with this negative slope (gain sqrt(2 / (1 + slope^2))).
    LeakyReLU(f64),
    /// SELU (gain 3/4).
    SELU,
}

/// The recommended gain for a non-linearity (`torch.nn.init.calculate_gain`).
pub fn calculate_gain(nl: Nonlinearity) -> f64 {
    match nl {
        Nonlinearity::Linear | Nonlinearity::Conv | Nonlinearity::Sigmoid => 1.0,
        Nonlinearity::Tanh => 5.0 / 3.0,
        Nonlinearity::ReLU => 2f64.sqrt(),
        Nonlinearity::LeakyReLU(s) => (2.0 / (1.0 + s * s)).sqrt(),
        Nonlinearity::SELU => 0.75,
    }
}

/// `(fan_in, fan_out)` of a weight shape: `[out, in, k...]` gives
/// `(in * prod(k), out * prod(k))`. Needs at least 2 dims.
pub fn calculate_fan_in_and_fan_out(dims: &[usize]) -> Result<(usize, usize)> {
    if dims.len() < 2 {
        return Err(Error::invalid_shape(
            "calculate_fan_in_and_fan_out",
            dims,
            "fan in and fan out can not be computed for a tensor with fewer than 2 dimensions",
        ));
    }
    let receptive: usize = dims[2..].iter().product();
    Ok((dims[1] * receptive, dims[0] * receptive))
}

fn fan(dims: &[usize], mode: FanMode) -> Result<usize> {
    let (i, o) = calculate_fan_in_and_fan_out(dims)?;
    Ok(match mode {
        FanMode::FanIn => i,
        FanMode::FanOut => o,
    })
}

fn fill(p: &Param, t: Tensor) -> Result<()> {
    let _g = autograd::NoGradGuard::new();
    p.copy_from(&t)
}

/// Fills with `U(low, high)`.
pub fn uniform_(p: &Param, low: f64, high: f64) -> Result<()> {
    with_global(|g| uniform_with(g, p, low, high))
}

/// [`uniform_`] from an explicit generator.
pub fn uniform_with(g: &mut Generator, p: &Param, low: f64, high: f64) -> Result<()> {
    let t = p.tensor();
    fill(p, Tensor::uniform_with(g, t.dims().to_vec(), low, high, t.dtype(), t.device())?)
}

/// Fills with `N(mean, std^2)`.
pub fn normal_(p: &Param, mean: f64, std: f64) -> Result<()> {
    with_global(|g| normal_with(g, p, mean, std))
}

/// [`normal_`] from an explicit generator.
pub fn normal_with(g: &mut Generator, p: &Param, mean: f64, std: f64) -> Result<()> {
    let t = p.tensor();
    fill(p, Tensor::normal_with(g, t.dims().to_vec(), mean, std, t.dtype(), t.device())?)
}

/// Fills with `value`.
pub fn constant_(p: &Param, value: f64) -> Result<()> {
    let _g = autograd::NoGradGuard::new();
    p.tensor().fill_(value)
}

/// Fills with zeros.
pub fn zeros_(p: &Param) -> Result<()> {
    constant_(p, 0.0)
}

/// Fills with ones.
pub fn ones_(p: &Param) -> Result<()> {
    constant_(p, 1.0)
}

/// Glorot uniform: `U(-b, b)` with `b = gain * sqrt(6 / (fan_in + fan_out))`.
pub fn xavier_uniform_(p: &Param, gain: f64) -> Result<()> {
    with_global(|g| xavier_uniform_with(g, p, gain))
}

/// [`xavier_uniform_`] from an explicit generator.
pub fn xavier_uniform_with(g: &mut Generator, p: &Param, gain: f64) -> Result<()> {
    let (i, o) = calculate_fan_in_and_fan_out(&p.dims())?;
    let b = gain * (6.0 / (i + o) as f64).sqrt();
    uniform_with(g, p, -b, b)
}

/// Glorot normal: `N(0, std^2)` with `std = gain * sqrt(2 / (fan_in + fan_out))`.
pub fn xavier_normal_(p: &Param, gain: f64) -> Result<()> {
    with_global(|g| xavier_normal_with(g, p, gain))
}

/// [`xavier_normal_`] from an explicit generator.
pub fn xavier_normal_with(g: &mut Generator, p: &Param, gain: f64) -> Result<()> {
    let (i, o) = calculate_fan_in_and_fan_out(&p.dims())?;
    normal_with(g, p, 0.0, gain * (2.0 / (i + o) as f64).sqrt())
}

/// He uniform: `U(-b, b)` with `b = gain * sqrt(3 / fan)`, the gain of `nl`.
/// PyTorch's default `kaiming_uniform_(w)` is `Nonlinearity::LeakyReLU(0.0)`, and
/// layers' default weights use `LeakyReLU(sqrt(5))`.
pub fn kaiming_uniform_(p: &Param, mode: FanMode, nl: Nonlinearity) -> Result<()> {
    with_global(|g| kaiming_uniform_with(g, p, mode, nl))
}

/// [`kaiming_uniform_`] from an explicit generator.
pub fn kaiming_uniform_with(g: &mut Generator, p: &Param, mode: FanMode, nl: Nonlinearity) -> Result<()> {
    let f = fan(&p.dims(), mode)?;
    if f == 0 {
        return Ok(()); // PyTorch warns and leaves a zero-element tensor alone
    }
    let b = calculate_gain(nl) * (3.0 / f as f64).sqrt();
    uniform_with(g, p, -b, b)
}

/// He normal: `N(0, std^2)` with `std = gain / sqrt(fan)`.
pub fn kaiming_normal_(p: &Param, mode: FanMode, nl: Nonlinearity) -> Result<()> {
    with_global(|g| kaiming_normal_with(g, p, mode, nl))
}

/// [`kaiming_normal_`] from an explicit generator.
pub fn kaiming_normal_with(g: &mut Generator, p: &Param, mode: FanMode, nl: Nonlinearity) -> Result<()> {
    let f = fan(&p.dims(), mode)?;
    if f == 0 {
        return Ok(());
    }
    normal_with(g, p, 0.0, calculate_gain(nl) / (f as f64).sqrt())
}

/// A (semi-)orthogonal matrix times `gain`: the weight viewed as `[dims[0], rest]`
/// has orthonormal rows (or columns, when it has more rows than columns). Made by
/// QR of a normal matrix with the signs of R's diagonal folded in, like PyTorch.
pub fn orthogonal_(p: &Param, gain: f64) -> Result<()> {
    with_global(|g| orthogonal_with(g, p, gain))
}

/// [`orthogonal_`] from an explicit generator.
pub fn orthogonal_with(g: &mut Generator, p: &Param, gain: f64) -> Result<()> {
    let dims = p.dims();
    if dims.len() < 2 {
        return Err(Error::invalid_shape("orthogonal_", &dims, "only tensors with 2 or more dimensions are supported"));
    }
    let rows = dims[0];
    let cols = p.numel().checked_div(rows).unwrap_or(0);
    if rows == 0 || cols == 0 {
        return Ok(());
    }
    // Work on the tall orientation m x n (m >= n).
    let (m, n) = if rows < cols { (cols, rows) } else { (rows, cols) };
    let a = g.normal_f64(m * n); // row-major m x n
    let q = thin_q(&a, m, n);
    let mut out = vec![0.0; rows * cols];
    for i in 0..rows {
        for j in 0..cols {
            // q is m x n; when rows < cols the weight is q^T.
            out[i * cols + j] = gain * if rows < cols { q[j * n + i] } else { q[i * n + j] };
        }
    }
    let t = p.tensor();
    let w = Tensor::from_vec(out, dims.clone())?.to_dtype(t.dtype())?.to_device(t.device())?;
    fill(p, w)
}

/// Q of the thin QR decomposition of the m x n (m >= n) matrix `a` with R's diagonal
/// positive (Gram-Schmidt's natural convention, and the one PyTorch gets by folding
/// in the signs of R's diagonal). Modified Gram-Schmidt, re-orthogonalised once.
fn thin_q(a: &[f64], m: usize, n: usize) -> Vec<f64> {
    let mut q = a.to_vec();
    for j in 0..n {
        for _pass in 0..2 {
            for k in 0..j {
                let dot: f64 = (0..m).map(|i| q[i * n + k] * q[i * n + j]).sum();
                for i in 0..m {
                    q[i * n + j] -= dot * q[i * n + k];
                }
            }
            let norm: f64 = (0..m).map(|i| q[i * n + j] * q[i * n + j]).sum::<f64>().sqrt();
            if norm > 0.0 {
                for i in 0..m {
                    q[i * n + j] /= norm;
                }
            }
        }
    }
    q
}
