//! Convolutions: Conv1d, Conv2d, ConvTranspose2d.

use autograd::Var;
use tensor_core::{Conv1dOptions, Conv2dOptions, ConvTranspose2dOptions, Error, Result};

use super::{inv_sqrt, uniform_param};
use crate::module::{Forward, Module, Param, Visitor};

/// Options of [`Conv1d`] (PyTorch's defaults via `Default`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv1dConfig {
    /// Step between windows.
    pub stride: usize,
    /// Zeros added on both sides.
    pub padding: usize,
    /// Spacing between kernel taps.
    pub dilation: usize,
    /// Channel groups (both channel counts must divide by it).
    pub groups: usize,
    /// Whether the layer has a bias.
    pub bias: bool,
}

impl Default for Conv1dConfig {
    fn default() -> Self {
        Conv1dConfig { stride: 1, padding: 0, dilation: 1, groups: 1, bias: true }
    }
}

/// Options of [`Conv2d`] and [`ConvTranspose2d`] (PyTorch's defaults via `Default`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dConfig {
    /// Step between windows, `[h, w]`.
    pub stride: [usize; 2],
    /// Zeros added on both sides, `[h, w]`.
    pub padding: [usize; 2],
    /// Extra size added to one side of the output (transposed convolution only).
    pub output_padding: [usize; 2],
    /// Spacing between kernel taps.
    pub dilation: [usize; 2],
    /// Channel groups.
    pub groups: usize,
    /// Whether the layer has a bias.
    pub bias: bool,
}

impl Default for Conv2dConfig {
    fn default() -> Self {
        Conv2dConfig {
            stride: [1, 1],
            padding: [0, 0],
            output_padding: [0, 0],
            dilation: [1, 1],
            groups: 1,
            bias: true,
        }
    }
}

fn check_groups(op: &'static str, cin: usize, cout: usize, groups: usize) -> Result<()> {
    if groups == 0 || !cin.is_multiple_of(groups) || !cout.is_multiple_of(groups) {
        return Err(Error::arg(
            op,
            format!("in_channels ({cin}) and out_channels ({cout}) must both be divisible by groups ({groups})"),
        ));
    }
    Ok(())
}

/// Checks the kernel, stride and dilation of a new layer (all positive) and returns
/// the fan-in `channels_per_group * prod(kernel)` (checked: sizes come from users).
fn check_config(
    op: &'static str,
    per_group: usize,
    kernel: &[usize],
    stride: &[usize],
    dilation: &[usize],
) -> Result<usize> {
    for (name, v) in [("kernel_size", kernel), ("stride", stride), ("dilation", dilation)] {
        if v.contains(&0) {
            return Err(Error::arg(op, format!("{name} must be positive, got {v:?}")));
        }
    }
    kernel
        .iter()
        .try_fold(per_group, |a, &k| a.checked_mul(k))
        .ok_or_else(|| Error::arg(op, format!("the weight size {per_group} x {kernel:?} per output channel overflows")))
}

fn check_input(op: &'static str, x: &Var, rank: usize, cin: usize) -> Result<()> {
    let r = x.rank();
    // `r + 1 - rank`: the channel dim, 1 batched and 0 unbatched (never below 0 once
    // the rank is one of the two).
    if !(r == rank || r + 1 == rank) || x.dims()[r + 1 - rank] != cin {
        return Err(Error::invalid_shape(
            op,
            x.dims(),
            format!("expected a {rank}-D (batched) or {}-D (unbatched) input with {cin} channels", rank - 1),
        ));
    }
    Ok(())
}

/// Runs `f` on a batched input, adding and removing the batch dim for an unbatched one.
fn batched(x: &Var, rank: usize, f: impl FnOnce(&Var) -> Result<Var>) -> Result<Var> {
    if x.rank() == rank {
        f(x)
    } else {
        f(&x.unsqueeze(0)?)?.squeeze(0)
    }
}

/// 1-D convolution over `[N, C_in, L]` (or `[C_in, L]`).
///
/// Weight `[C_out, C_in / groups, k]` and bias start as `U(-1/sqrt(fan_in),
/// 1/sqrt(fan_in))` with `fan_in = C_in / groups * k`, like PyTorch.
#[derive(Clone, Debug)]
pub struct Conv1d {
    /// `[out_channels, in_channels / groups, kernel]`.
    pub weight: Param,
    /// `[out_channels]`.
    pub bias: Option<Param>,
    /// The options.
    pub config: Conv1dConfig,
}

impl Conv1d {
    /// A layer with `kernel` taps.
    pub fn new(in_channels: usize, out_channels: usize, kernel: usize, config: Conv1dConfig) -> Result<Conv1d> {
        check_groups("Conv1d", in_channels, out_channels, config.groups)?;
        let cg = in_channels / config.groups;
        let fan_in = check_config("Conv1d", cg, &[kernel], &[config.stride], &[config.dilation])?;
        let b = inv_sqrt(fan_in);
        Ok(Conv1d {
            weight: uniform_param(&[out_channels, cg, kernel], b)?,
            bias: if config.bias { Some(uniform_param(&[out_channels], b)?) } else { None },
            config,
        })
    }
}

impl Module for Conv1d {
    fn visit(&self, v: &mut dyn Visitor) {
        v.param("weight", &self.weight);
        v.opt_param("bias", &self.bias);
    }
}

impl Forward for Conv1d {
    fn forward(&self, x: &Var) -> Result<Var> {
        let w = self.weight.var();
        check_input("Conv1d", x, 3, w.dims()[1] * self.config.groups)?;
        let b = self.bias.as_ref().map(|b| b.var());
        let c = self.config;
        let o = Conv1dOptions { stride: c.stride, padding: c.padding, dilation: c.dilation, groups: c.groups };
        batched(x, 3, |x| x.conv1d(&w, b.as_ref(), o))
    }
}

/// 2-D convolution over `[N, C_in, H, W]` (or `[C_in, H, W]`).
///
/// Weight `[C_out, C_in / groups, kh, kw]` and bias start as `U(-1/sqrt(fan_in),
/// 1/sqrt(fan_in))` with `fan_in = C_in / groups * kh * kw`, like PyTorch.
///
/// ```
/// use autograd::Var;
/// use nn::{Conv2d, Conv2dConfig, Forward};
/// use tensor_core::{DType, Device, Tensor};
/// let conv = Conv2d::new(1, 8, [3, 3], Conv2dConfig { padding: [1, 1], ..Default::default() })?;
/// let y = conv.forward(&Var::from(Tensor::zeros([2, 1, 8, 8], DType::F32, &Device::cpu())?))?;
/// assert_eq!(y.dims(), &[2, 8, 8, 8]);
/// # Ok::<(), tensor_core::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Conv2d {
    /// `[out_channels, in_channels / groups, kh, kw]`.
    pub weight: Param,
    /// `[out_channels]`.
    pub bias: Option<Param>,
    /// The options.
    pub config: Conv2dConfig,
}

impl Conv2d {
    /// A layer with a `[kh, kw]` kernel.
    pub fn new(in_channels: usize, out_channels: usize, kernel: [usize; 2], config: Conv2dConfig) -> Result<Conv2d> {
        check_groups("Conv2d", in_channels, out_channels, config.groups)?;
        let cg = in_channels / config.groups;
        let fan_in = check_config("Conv2d", cg, &kernel, &config.stride, &config.dilation)?;
        let b = inv_sqrt(fan_in);
        Ok(Conv2d {
            weight: uniform_param(&[out_channels, cg, kernel[0], kernel[1]], b)?,
            bias: if config.bias { Some(uniform_param(&[out_channels], b)?) } else { None },
            config,
        })
    }
}

impl Module for Conv2d {
    fn visit(&self, v: &mut dyn Visitor) {
        v.param("weight", &self.weight);
        v.opt_param("bias", &self.bias);
    }
}

impl Forward for Conv2d {
    fn forward(&self, x: &Var) -> Result<Var> {
        let w = self.weight.var();
        check_input("Conv2d", x, 4, w.dims()[1] * self.config.groups)?;
        let b = self.bias.as_ref().map(|b| b.var());
        let c = self.config;
        let o = Conv2dOptions { stride: c.stride, padding: c.padding, dilation: c.dilation, groups: c.groups };
        batched(x, 4, |x| x.conv2d(&w, b.as_ref(), o))
    }
}

/// 2-D transposed convolution (the gradient of a convolution) over `[N, C_in, H, W]`.
///
/// Weight `[C_in, C_out / groups, kh, kw]`; PyTorch's initialisation takes
/// `fan_in = C_out / groups * kh * kw` (from that weight's layout).
#[derive(Clone, Debug)]
pub struct ConvTranspose2d {
    /// `[in_channels, out_channels / groups, kh, kw]`.
    pub weight: Param,
    /// `[out_channels]`.
    pub bias: Option<Param>,
    /// The options.
    pub config: Conv2dConfig,
}

impl ConvTranspose2d {
    /// A layer with a `[kh, kw]` kernel.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel: [usize; 2],
        config: Conv2dConfig,
    ) -> Result<ConvTranspose2d> {
        check_groups("ConvTranspose2d", in_channels, out_channels, config.groups)?;
        let og = out_channels / config.groups;
        let fan_in = check_config("ConvTranspose2d", og, &kernel, &config.stride, &config.dilation)?;
        for d in 0..2 {
            if config.output_padding[d] >= config.stride[d].max(config.dilation[d]) {
                return Err(Error::arg(
                    "ConvTranspose2d",
                    format!(
                        "output padding {:?} must be smaller than either stride {:?} or dilation {:?}",
                        config.output_padding, config.stride, config.dilation
                    ),
                ));
            }
        }
        let b = inv_sqrt(fan_in);
        Ok(ConvTranspose2d {
            weight: uniform_param(&[in_channels, og, kernel[0], kernel[1]], b)?,
            bias: if config.bias { Some(uniform_param(&[out_channels], b)?) } else { None },
            config,
        })
    }
}

impl Module for ConvTranspose2d {
    fn visit(&self, v: &mut dyn Visitor) {
        v.param("weight", &self.weight);
        v.opt_param("bias", &self.bias);
    }
}

impl Forward for ConvTranspose2d {
    fn forward(&self, x: &Var) -> Result<Var> {
        let w = self.weight.var();
        check_input("ConvTranspose2d", x, 4, w.dims()[0])?;
        let b = self.bias.as_ref().map(|b| b.var());
        let c = self.config;
        let o = ConvTranspose2dOptions {
            stride: c.stride,
            padding: c.padding,
            output_padding: c.output_padding,
            groups: c.groups,
            dilation: c.dilation,
        };
        batched(x, 4, |x| x.conv_transpose2d(&w, b.as_ref(), o))
    }
}
