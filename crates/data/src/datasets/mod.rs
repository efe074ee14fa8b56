//! Loaders for small, well-known data sets, each read from a file you point them at
//! (nothing is downloaded).
//!
//! - [`digits`]: scikit-learn's 8x8 handwritten digits (`digits.csv.gz`, 1797 images).
//!
//! MNIST and Fashion-MNIST come as IDX files: see [`crate::idx`].

pub mod digits;
