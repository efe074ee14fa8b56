//! Tensor ops, one file per family. Each family's methods are inherent methods on
//! [`crate::Tensor`].

pub mod attention;
pub mod conv;
pub mod elementwise;
pub mod index;
pub mod inplace;
pub mod linalg;
pub mod loss;
pub mod nn;
pub mod pool;
pub mod reduce;
pub mod rnn;
