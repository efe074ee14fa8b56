//! # autograd
//!
//! Dynamic (define-by-run) automatic differentiation over tensor-core tensors, in the
//! manner of PyTorch's autograd.
//!
//! A [`Var`] is a [`Tensor`](tensor_core::Tensor) plus its place in the graph. Every
//! op on `Var`s computes its result with tensor-core and, when an input requires a
//! gradient and grad mode is on, records a backward closure next to it. Calling
//! [`Var::backward`] runs the recorded graph in reverse and accumulates gradients
//! into the leaves' `.grad`.
//!
//! ```
//! use autograd::Var;
//! use tensor_core::Tensor;
//!
//! let w = Var::param(Tensor::from_vec(vec![0.5f32, -1.0, -2.0, 1.0], [2, 2])?)?;
//! let x = Var::from(Tensor::from_vec(vec![1.0f32, 2.0], [1, 2])?);
//! let loss = x.matmul(&w)?.relu()?.sum(&[], false)?;     // relu(x @ w).sum()
//! loss.backward()?;
//! // d loss / d w[i][j] = x[i] where (x @ w)[j] > 0: column 0 is -3.5 (dead), column 1 is 1.
//! assert_eq!(w.grad().unwrap().to_vec::<f32>()?, vec![0.0, 1.0, 0.0, 2.0]);
//! # Ok::<(), tensor_core::Error>(())
//! ```
//!
//! - Grad mode is thread-local: [`no_grad`], [`enable_grad`], [`NoGradGuard`].
//! - Higher-order gradients: backward closures are written with `Var` ops, so with
//!   `create_graph` a gradient has a graph of its own ([`grad`]).
//! - Memory: an op whose derivative is a function of its output (exp, sigmoid, tanh,
//!   softmax, ...) saves that output, not its input, and its backward does not run
//!   the op again; under `create_graph` the saved output still differentiates
//!   through the op (which then needs `retain_graph`, as in PyTorch).
//! - Safety: modifying a saved tensor in place makes the backward fail with
//!   `Error::ModifiedInPlace`; a second backward through a freed graph is
//!   `Error::GraphFreed`; [`detect_anomaly`] names the op that produced a NaN.
//! - Checks: [`gradcheck`], [`gradgradcheck`]; a graph can be drawn with
//!   [`Var::to_dot`].
#![warn(missing_docs)]

mod dot;
mod engine;
mod function;
mod gradcheck;
mod graph;
mod mode;
pub mod ops;
mod target;
mod var;

pub use engine::{grad, grad_with};
pub use function::{apply, Context, Function};
pub use gradcheck::{gradcheck, gradcheck_with, gradgradcheck, gradgradcheck_with, GradcheckOpts};
pub use mode::{
    detect_anomaly, enable_grad, is_anomaly_enabled, is_grad_enabled, no_grad, set_grad_enabled, GradModeGuard,
    NoGradGuard,
};
pub use target::Target;
pub use var::{HookId, Var};
