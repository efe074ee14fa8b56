#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

// Everything in tensor-core at the root, as `torch.*` is in PyTorch: `Tensor`,
// `DType`, `Device`, `Error`, `Result`, `manual_seed`, `profiler`, ...
#[doc(inline)]
pub use tensor_core::*;

/// The tensor layer on its own (`torch-rs-core`): what the root re-exports, by its
/// crate name.
pub use tensor_core;

/// Dynamic automatic differentiation (`torch-rs-autograd`): [`Var`], `backward`,
/// [`no_grad`], custom [`autograd::Function`]s, `gradcheck`.
pub use autograd;

/// Layers, losses, initialisers and state dicts (`torch-rs-nn`), as `torch.nn`.
pub use nn;

/// Optimizers, learning-rate schedulers, gradient clipping and checkpoints
/// (`torch-rs-optim`), as `torch.optim`.
pub use optim;

/// `.npy`/`.npz` files, datasets, the `DataLoader` and training metrics (`torch-rs-data`), as
/// `torch.utils.data` (feature `data`, on by default).
#[cfg(feature = "data")]
pub use data;

/// The CUDA backend (`torch-rs-cuda`, feature `cuda`): `use torch_rs::cuda::CudaDeviceExt`
/// gives `Device::cuda(n)`.
#[cfg(feature = "cuda")]
pub use tensor_cuda as cuda;

pub use autograd::{no_grad, Var};

/// The names most programs use: `use torch_rs::prelude::*;`.
pub mod prelude {
    pub use crate::nn::{Forward, Module};
    pub use crate::optim::{LrScheduler, Optimizer};
    pub use crate::{no_grad, DType, Device, Tensor, Var};
    #[cfg(feature = "cuda")]
    pub use tensor_cuda::CudaDeviceExt;
}
