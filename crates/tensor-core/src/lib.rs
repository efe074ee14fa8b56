//! # tensor-core
//!
//! N-dimensional tensors for Rust that feel like PyTorch's: one untyped [`Tensor`]
//! (dtype and rank are runtime values), NumPy broadcasting, PyTorch's type
//! promotion, views that share storage, and a pluggable [`Backend`] (the CPU backend
//! is built in; CUDA lives in `tensor-cuda`). Every fallible op returns
//! [`Result`], operators included.
//!
//! ```
//! use tensor_core::{DType, Device, Tensor};
//!
//! let dev = Device::cpu();
//! let x = Tensor::arange(0.0, 6.0, 1.0, DType::F32, &dev)?.reshape(&[2, 3])?;
//! let w = Tensor::ones([3, 2], DType::F32, &dev)?;
//! let y = x.matmul(&w)?.relu()?;            // [2, 2]
//! let s = (&y * 0.5)?.sum_all()?;
//! assert_eq!(s.to_scalar::<f32>()?, 0.5 * (3.0 + 3.0 + 12.0 + 12.0));
//! # Ok::<(), tensor_core::Error>(())
//! ```
#![warn(missing_docs)]

pub mod backend;
pub mod cpu;
mod create;
pub mod device;
mod display;
pub mod dtype;
pub mod error;
pub mod fused;
pub mod host;
pub mod layout;
pub mod ops;
pub mod profiler;
pub mod random;
pub mod shape;
mod tensor;
mod view;

pub use backend::{
    AttentionDims, Backend, BinaryOp, Buffer, ClassTargets, DeviceEvent, DeviceLocation, FusedOp, OwnedBuffer,
    ReduceOp, ScanOp, Span, UnaryOp,
};
pub use cpu::CpuIsa;
pub use device::{Device, Storage};
pub use dtype::{default_dtype, set_default_dtype, DType, Elem, Scalar, ALL_DTYPES};
pub use error::{Error, Result};
pub use fused::{AdamConfig, Conv2dDims, LstmDims, OptimizerUpdate, Window2d};
pub use host::{HostBuffer, HostRead};
pub use layout::Layout;
pub use ops::attention::AttentionOpts;
pub use ops::conv::{Conv1dOptions, Conv2dOptions, ConvTranspose2dOptions};
pub use ops::loss::ClassLossOptions;
pub use ops::nn::PadMode;
pub use ops::pool::{AvgPool2dOptions, MaxPool2dOptions};
pub use random::{manual_seed, Generator};
pub use shape::Shape;
pub use tensor::Tensor;

/// The vector instruction set the CPU kernels use on this machine: the widest the
/// CPU supports, capped by the environment variable `TORCH_RS_CPU_ISA` (`baseline`,
/// `avx2`, `avx512`). Every level computes the same bits; only the speed differs.
///
/// ```
/// println!("CPU kernels use {}", tensor_core::cpu_isa());
/// ```
pub fn cpu_isa() -> CpuIsa {
    cpu::simd::Isa::best().level()
}
