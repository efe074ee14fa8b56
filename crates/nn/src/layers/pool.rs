//! Pooling layers: MaxPool2d, AvgPool2d, AdaptiveAvgPool2d.

use autograd::Var;
use tensor_core::{AvgPool2dOptions, MaxPool2dOptions, Result};

use crate::module::{Forward, Module, Visitor};

/// Max over `[kh, kw]` windows of `[N, C, H, W]` (or `[C, H, W]`).
///
/// Fields are public; build with [`MaxPool2d::new`] and struct-update syntax:
/// `MaxPool2d { padding: [1, 1], ..MaxPool2d::new([3, 3]) }`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxPool2d {
    /// Window size.
    pub kernel: [usize; 2],
    /// Step between windows (the kernel size by default).
    pub stride: [usize; 2],
    /// Implicit `-inf` padding on both sides.
    pub padding: [usize; 2],
    /// Spacing between window taps.
    pub dilation: [usize; 2],
    /// Round the output size up instead of down.
    pub ceil_mode: bool,
}

impl MaxPool2d {
    /// A pool with stride equal to the kernel, no padding, no dilation.
    pub fn new(kernel: [usize; 2]) -> MaxPool2d {
        MaxPool2d::with_options(kernel, MaxPool2dOptions::default())
    }

    /// A pool with the functional options (PyTorch's `nn.MaxPool2d(kernel, **options)`;
    /// a `None` stride is the kernel).
    pub fn with_options(kernel: [usize; 2], o: MaxPool2dOptions) -> MaxPool2d {
        MaxPool2d {
            kernel,
            stride: o.stride.unwrap_or(kernel),
            padding: o.padding,
            dilation: o.dilation,
            ceil_mode: o.ceil_mode,
        }
    }

    /// The layer's settings as [`Var::max_pool2d`] options.
    pub fn options(&self) -> MaxPool2dOptions {
        MaxPool2dOptions {
            stride: Some(self.stride),
            padding: self.padding,
            dilation: self.dilation,
            ceil_mode: self.ceil_mode,
        }
    }
}

impl Module for MaxPool2d {
    fn visit(&self, _v: &mut dyn Visitor) {}
}

impl Forward for MaxPool2d {
    fn forward(&self, x: &Var) -> Result<Var> {
        x.max_pool2d(self.kernel, self.options())
    }
}

/// Mean over `[kh, kw]` windows of `[N, C, H, W]` (or `[C, H, W]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AvgPool2d {
    /// Window size.
    pub kernel: [usize; 2],
    /// Step between windows (the kernel size by default).
    pub stride: [usize; 2],
    /// Implicit zero padding on both sides.
    pub padding: [usize; 2],
    /// Round the output size up instead of down.
    pub ceil_mode: bool,
    /// Count padding zeros in the divisor (PyTorch's default `true`).
    pub count_include_pad: bool,
    /// Divide every window's sum by this instead of its size (`None`).
    pub divisor_override: Option<usize>,
}

impl AvgPool2d {
    /// A pool with stride equal to the kernel and no padding.
    pub fn new(kernel: [usize; 2]) -> AvgPool2d {
        AvgPool2d::with_options(kernel, AvgPool2dOptions::default())
    }

    /// A pool with the functional options (PyTorch's `nn.AvgPool2d(kernel, **options)`;
    /// a `None` stride is the kernel).
    pub fn with_options(kernel: [usize; 2], o: AvgPool2dOptions) -> AvgPool2d {
        AvgPool2d {
            kernel,
            stride: o.stride.unwrap_or(kernel),
            padding: o.padding,
            ceil_mode: o.ceil_mode,
            count_include_pad: o.count_include_pad,
            divisor_override: o.divisor_override,
        }
    }

    /// The layer's settings as [`Var::avg_pool2d`] options.
    pub fn options(&self) -> AvgPool2dOptions {
        AvgPool2dOptions {
            stride: Some(self.stride),
            padding: self.padding,
            ceil_mode: self.ceil_mode,
            count_include_pad: self.count_include_pad,
            divisor_override: self.divisor_override,
        }
    }
}

impl Module for AvgPool2d {
    fn visit(&self, _v: &mut dyn Visitor) {}
}

impl Forward for AvgPool2d {
    fn forward(&self, x: &Var) -> Result<Var> {
        x.avg_pool2d(self.kernel, self.options())
    }
}

/// Mean pooling to a fixed `[oh, ow]` output whatever the input size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdaptiveAvgPool2d {
    /// The output's spatial size.
    pub output_size: [usize; 2],
}

impl AdaptiveAvgPool2d {
    /// A pool to `output_size`.
    pub fn new(output_size: [usize; 2]) -> AdaptiveAvgPool2d {
        AdaptiveAvgPool2d { output_size }
    }
}

impl Module for AdaptiveAvgPool2d {
    fn visit(&self, _v: &mut dyn Visitor) {}
}

impl Forward for AdaptiveAvgPool2d {
    fn forward(&self, x: &Var) -> Result<Var> {
        x.adaptive_avg_pool2d(self.output_size)
    }
}
