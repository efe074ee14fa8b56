//! Optimizers, learning-rate schedulers and gradient clipping.
#![warn(missing_docs)]
