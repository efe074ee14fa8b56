//! # tensor-cuda
//!
//! The CUDA backend of tensor-core: a [`CudaBackend`] implementing
//! [`tensor_core::Backend`] from outside the core, so every tensor-core op (and every
//! composite built on the primitives) runs on NVIDIA GPUs.
//!
//! - Kernels are CUDA C++ in the repository's `kernels/`, compiled to PTX by
//!   `cargo xtask ptx` with a pinned NVRTC 13.0 (PTX ISA 9.0, loadable by driver 580+)
//!   and committed; the PTX is embedded with `include_str!` and JIT-compiled by the
//!   driver on first use. Building this crate needs no CUDA toolkit.
//! - The driver, cuBLAS and NVRTC are loaded at run time (cudarc's `dynamic-loading`),
//!   so a machine without CUDA builds and runs everything; [`cuda_device`] then returns
//!   an error instead of panicking.
//! - Every op is queued on one stream per device; allocations are stream-ordered
//!   (`cuMemAllocAsync`). Out of memory is [`tensor_core::Error::OutOfMemory`].
//! - matmul is cuBLAS `GemmStridedBatchedEx`; transposed views become transpose flags,
//!   f16/bf16 accumulate in f32, f32 uses TF32 only after
//!   [`CudaBackend::set_allow_tf32`].
//!
//! ```
//! use tensor_core::{DType, Device, Tensor};
//! use tensor_cuda::CudaDeviceExt;
//!
//! let Ok(gpu) = Device::cuda(0) else {
//!     println!("no CUDA device; skipping");
//!     return Ok(());
//! };
//! let x = Tensor::arange(0.0, 6.0, 1.0, DType::F32, &Device::cpu())?.reshape(&[2, 3])?;
//! let y = x.to_device(&gpu)?.exp()?.to_device(&Device::cpu())?;
//! assert_eq!(y.dims(), &[2, 3]);
//! # Ok::<(), tensor_core::Error>(())
//! ```
#![warn(missing_docs)]

mod blas;
mod device;
mod fused;
pub mod geom;
mod ops;

pub use device::{cuda_backend, cuda_device, cuda_is_available, device_count, CudaBackend, CudaBuffer, CudaDeviceExt};
pub use tensor_core::AdamConfig;

/// Waits for all queued work on CUDA device `ordinal`.
pub fn synchronize(ordinal: usize) -> tensor_core::Result<()> {
    cuda_backend(ordinal)?.sync()
}

/// The reason CUDA cannot be used here, or `None` when device 0 opens. Tests print it
/// when they skip.
pub fn unavailable_reason() -> Option<String> {
    cuda_device(0).err().map(|e| e.to_string())
}
