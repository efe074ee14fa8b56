//! Runnable examples for the stack: the digits data set, a small training loop
//! shared by the `digits` example and its test, training-loop helpers (metrics CSV
//! and curves, a progress bar), and the guide (`docs/guide.md`),
//! whose code blocks run as this crate's doctests.
#![warn(missing_docs)]

pub mod char_lm;
pub mod digits;
pub mod metrics;
pub mod train;

#[doc = include_str!("../../docs/guide.md")]
pub mod guide {}
