//! Pooling layers: MaxPool2d, AvgPool2d, AdaptiveAvgPool2d.

use autograd::Var;
use tensor_core::Result;

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
        MaxPool2d { kernel, stride: kernel, padding: [0, 0], dilation: [1, 1], ceil_mode: false }
    }
}

impl Module for MaxPool2d {
    fn visit(&self, _v: &mut dyn Visitor) {}
}

impl Forward for MaxPool2d {
    fn forward(&self, x: &Var) -> Result<Var> {
        x.max_pool2d(self.kernel, self.stride, self.padding, self.dilation, self.ceil_mode)
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
}

impl AvgPool2d {
    /// A pool with stride equal to the kernel and no padding.
    pub fn new(kernel: [usize; 2]) -> AvgPool2d {
        AvgPool2d { kernel, stride: kernel, padding: [0, 0], ceil_mode: false, count_include_pad: true }
    }
}

impl Module for AvgPool2d {
    fn visit(&self, _v: &mut dyn Visitor) {}
}

impl Forward for AvgPool2d {
    fn forward(&self, x: &Var) -> Result<Var> {
        x.avg_pool2d(self.kernel, self.stride, self.padding, self.ceil_mode, self.count_include_pad)
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
