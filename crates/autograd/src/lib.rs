//! Dynamic (define-by-run) automatic differentiation over tensor-core tensors.
#![warn(missing_docs)]
