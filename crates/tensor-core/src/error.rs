//! The one error type shared by every crate of the stack.

use crate::DType;

/// Result alias used throughout the stack.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a tensor operation.
///
/// Each variant names the op and the values involved, so a message reads like
/// PyTorch's: `matmul: cannot multiply [2, 3] by [4, 2]`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Two shapes that had to agree (or broadcast) did not.
    #[error("{op}: shape mismatch between {lhs:?} and {rhs:?}{}", fmt_msg(msg))]
    ShapeMismatch {
        /// The op that failed.
        op: &'static str,
        /// The first shape involved.
        lhs: Vec<usize>,
        /// The second shape involved.
        rhs: Vec<usize>,
        /// Extra explanation.
        msg: String,
    },
    /// A shape argument was invalid on its own (bad reshape, negative size, ...).
    #[error("{op}: invalid shape {shape:?}: {msg}")]
    InvalidShape {
        /// The op that failed.
        op: &'static str,
        /// The offending shape.
        shape: Vec<usize>,
        /// What is wrong with it.
        msg: String,
    },
    /// Two dtypes that had to agree did not.
    #[error("{op}: dtype mismatch, expected {expected} but got {got}")]
    DTypeMismatch {
        /// The op that failed.
        op: &'static str,
        /// The dtype the op needed.
        expected: DType,
        /// The dtype it was given.
        got: DType,
    },
    /// Tensors on different devices met in one op.
    #[error("{op}: expected all tensors on the same device, got {lhs} and {rhs}")]
    DeviceMismatch {
        /// The op that failed.
        op: &'static str,
        /// The first device.
        lhs: String,
        /// The second device.
        rhs: String,
    },
    /// A dimension index outside `[-rank, rank)`.
    #[error("{op}: dimension {dim} out of range for a tensor of rank {rank}")]
    DimOutOfRange {
        /// The op that failed.
        op: &'static str,
        /// The dimension asked for.
        dim: isize,
        /// The tensor's rank.
        rank: usize,
    },
    /// An index outside the size of its dimension.
    #[error("{op}: index {index} out of range for dimension {dim} of size {size}")]
    IndexOutOfRange {
        /// The op that failed.
        op: &'static str,
        /// The index asked for.
        index: i64,
        /// The dimension indexed.
        dim: usize,
        /// The size of that dimension.
        size: usize,
    },
    /// The op does not support this dtype on this device.
    #[error("{op}: not supported for dtype {dtype} on {device}")]
    Unsupported {
        /// The op that failed.
        op: &'static str,
        /// The dtype involved.
        dtype: DType,
        /// The device involved.
        device: String,
    },
    /// An argument value was invalid (negative probability, zero step, ...).
    #[error("{op}: {msg}")]
    InvalidArgument {
        /// The op that failed.
        op: &'static str,
        /// What is wrong.
        msg: String,
    },
    /// A device ran out of memory.
    #[error("out of memory on {device}: tried to allocate {bytes} bytes")]
    OutOfMemory {
        /// The device.
        device: String,
        /// The size of the failed allocation.
        bytes: usize,
    },
    /// A tensor saved for backward was changed in place after it was saved.
    #[error("{op}: a tensor needed for the gradient was modified in place (saved at version {saved}, now {now})")]
    ModifiedInPlace {
        /// The op whose backward found the change.
        op: String,
        /// The version when saved.
        saved: u64,
        /// The version now.
        now: u64,
    },
    /// Backward through a graph whose buffers were already freed.
    #[error("{op}: trying to backward through the graph a second time; pass retain_graph on the first backward")]
    GraphFreed {
        /// The op whose saved tensors were freed.
        op: String,
    },
    /// An autograd failure not covered by another variant.
    #[error("autograd: {0}")]
    Autograd(String),
    /// A backend (driver, library) reported an error.
    #[error("{backend} backend: {msg}")]
    Backend {
        /// The backend name.
        backend: String,
        /// What it said.
        msg: String,
    },
    /// A file could not be read or written.
    #[error("io error on {path}: {source}")]
    Io {
        /// The file involved.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file's contents were malformed.
    #[error("format error in {path}: {msg}")]
    Format {
        /// The file involved.
        path: String,
        /// What is wrong with it.
        msg: String,
    },
}

fn fmt_msg(msg: &str) -> String {
    if msg.is_empty() {
        String::new()
    } else {
        format!(": {msg}")
    }
}

impl Error {
    /// Shorthand for [`Error::ShapeMismatch`].
    pub fn shape(op: &'static str, lhs: &[usize], rhs: &[usize], msg: impl Into<String>) -> Self {
        Error::ShapeMismatch { op, lhs: lhs.to_vec(), rhs: rhs.to_vec(), msg: msg.into() }
    }

    /// Shorthand for [`Error::InvalidArgument`].
    pub fn arg(op: &'static str, msg: impl Into<String>) -> Self {
        Error::InvalidArgument { op, msg: msg.into() }
    }

    /// Shorthand for [`Error::InvalidShape`].
    pub fn invalid_shape(op: &'static str, shape: &[usize], msg: impl Into<String>) -> Self {
        Error::InvalidShape { op, shape: shape.to_vec(), msg: msg.into() }
    }
}
