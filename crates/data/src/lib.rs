//! # data
//!
//! Getting data in and out of tensors:
//!
//! - [`npy`]: NumPy `.npy` / `.npz` files, every dtype, C and Fortran order, both
//!   endiannesses on read; [`npy::NpzReader`] loads one array of an archive at a
//!   time, ZIP64 (over 4 GiB) included.
//! - [`idx`]: the IDX files of MNIST and Fashion-MNIST, plain or gzipped.
//! - [`Dataset`], [`TensorDataset`], [`Subset`], [`random_split`]: map-style data sets.
//! - [`DataLoader`]: shuffled, collated minibatches prepared by background workers,
//!   identical for a given seed and epoch whatever the number of workers.
//! - [`datasets`]: small data sets from a file, e.g. [`datasets::digits`] (8x8 digits).
//! - [`metrics`]: training metrics logged to CSV as a run goes, read back, written as
//!   JSON; drawn into a PNG with the cargo feature `plot`, a progress bar with `progress`.
//! - `ndarray` (cargo feature `ndarray`): conversions to and from `ndarray` arrays,
//!   zero-copy where the layout allows.
//!
//! ```
//! use data::{random_split, DataLoader, TensorDataset};
//! use std::sync::Arc;
//! use tensor_core::{DType, Device, Tensor};
//!
//! let dev = Device::cpu();
//! let x = Tensor::randn([100, 4], DType::F32, &dev)?;
//! let y = Tensor::arange(0.0, 100.0, 1.0, DType::I64, &dev)?;
//! let ds = Arc::new(TensorDataset::new(vec![x, y])?);
//! let parts = random_split(ds, [0.8, 0.2], 0)?;
//! let train = DataLoader::new(parts[0].clone(), 16)?.shuffle(1).num_workers(2);
//! let mut seen = 0;
//! for batch in &train {
//!     let batch = batch?;                  // [x rows, y rows]
//!     assert_eq!(batch[0].dims()[1], 4);
//!     seen += batch[1].numel();
//! }
//! assert_eq!(seen, 80);
//! # Ok::<(), tensor_core::Error>(())
//! ```
#![warn(missing_docs)]

mod dataset;
pub mod datasets;
pub mod idx;
mod loader;
pub mod metrics;
#[cfg(feature = "ndarray")]
pub mod ndarray;
pub mod npy;
mod npz;

pub use dataset::{random_split, Dataset, SplitLengths, Subset, TensorDataset};
pub use loader::{Batches, Collate, DataLoader, Order};
