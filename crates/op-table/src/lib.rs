//! The op table: one [`OpInfo`] per public tensor op, each with [`Sample`]s (inputs,
//! the op to run, an independent f64 reference) and [`ErrorCase`]s.
//!
//! Generic tests walk the table: every sample on every claimed dtype against its
//! reference, non-contiguous inputs against contiguous ones, and every error case
//! against the `Error` variant it must produce. tensor-cuda runs the same table on
//! the GPU against the CPU, and autograd runs gradcheck over the differentiable
//! records.
#![warn(missing_docs)]

pub mod creation;
pub mod elementwise;
pub mod hostile;
pub mod index;
pub mod linalg;
pub mod nn;
pub mod reduce;
pub mod refs;
pub mod views;

use std::sync::Arc;

pub use refs::RefArray;
use tensor_core::{DType, Error, Result, Tensor};

/// Runs the op on inputs (already cast to the dtype under test).
pub type OpFn = Arc<dyn Fn(&[Tensor]) -> Result<Vec<Tensor>> + Send + Sync>;
/// Computes the expected outputs from the inputs, in f64.
pub type RefFn = Arc<dyn Fn(&[RefArray]) -> Vec<RefArray> + Send + Sync>;

/// One sample: inputs, how to run the op, and the reference.
#[derive(Clone)]
pub struct Sample {
    /// What the sample exercises (`"broadcast [3,1] x [4]"`, `"transposed"`, ...).
    pub desc: String,
    /// Inputs. Float inputs are given as F64 and cast to the dtype under test
    /// where `cast[i]` is true; index and mask inputs keep their dtype.
    pub inputs: Vec<Tensor>,
    /// Which inputs take the dtype under test.
    pub cast: Vec<bool>,
    /// The op.
    pub op: OpFn,
    /// The f64 reference.
    pub reference: RefFn,
}

impl Sample {
    /// A sample whose inputs all take the dtype under test.
    pub fn new(
        desc: impl Into<String>,
        inputs: Vec<Tensor>,
        op: impl Fn(&[Tensor]) -> Result<Vec<Tensor>> + Send + Sync + 'static,
        reference: impl Fn(&[RefArray]) -> Vec<RefArray> + Send + Sync + 'static,
    ) -> Self {
        let cast = vec![true; inputs.len()];
        Sample { desc: desc.into(), inputs, cast, op: Arc::new(op), reference: Arc::new(reference) }
    }

    /// Marks which inputs take the dtype under test (the rest keep theirs).
    pub fn with_cast(mut self, cast: Vec<bool>) -> Self {
        self.cast = cast;
        self
    }

    /// The inputs cast to `dtype` (where `cast` says so).
    pub fn inputs_as(&self, dtype: DType) -> Result<Vec<Tensor>> {
        self.inputs.iter().zip(&self.cast).map(|(t, &c)| if c { t.to_dtype(dtype) } else { Ok(t.clone()) }).collect()
    }
}

/// An input that must make the op fail, and the check on the error.
pub struct ErrorCase {
    /// What is wrong with the input.
    pub desc: String,
    /// Runs the op on the bad input.
    pub run: Box<dyn Fn() -> Result<()> + Send + Sync>,
    /// True when the error is the expected one.
    pub check: fn(&Error) -> bool,
}

impl ErrorCase {
    /// A case: `run` must fail with an error for which `check` holds.
    pub fn new<T>(
        desc: impl Into<String>,
        run: impl Fn() -> Result<T> + Send + Sync + 'static,
        check: fn(&Error) -> bool,
    ) -> Self {
        ErrorCase { desc: desc.into(), run: Box::new(move || run().map(|_| ())), check }
    }
}

/// Everything the generic tests know about one op.
pub struct OpInfo {
    /// The public name (the `Tensor` method or function).
    pub name: &'static str,
    /// The dtypes it claims to support.
    pub dtypes: Vec<DType>,
    /// Whether autograd must provide a gradient for it.
    pub differentiable: bool,
    /// Samples.
    pub samples: Vec<Sample>,
    /// Bad inputs.
    pub errors: Vec<ErrorCase>,
    /// Tolerance override `(rtol, atol)` applied on top of the dtype's defaults
    /// (the larger of the two wins).
    pub tol: Option<(f64, f64)>,
    /// Extra public names this record covers (aliases, scalar forms, in-place forms).
    pub covers: Vec<&'static str>,
}

impl OpInfo {
    /// A record with no samples yet.
    pub fn new(name: &'static str, dtypes: &[DType], differentiable: bool) -> Self {
        OpInfo {
            name,
            dtypes: dtypes.to_vec(),
            differentiable,
            samples: Vec::new(),
            errors: Vec::new(),
            tol: None,
            covers: Vec::new(),
        }
    }

    /// Adds a sample.
    pub fn sample(mut self, s: Sample) -> Self {
        self.samples.push(s);
        self
    }

    /// Adds an error case.
    pub fn error(mut self, e: ErrorCase) -> Self {
        self.errors.push(e);
        self
    }

    /// Sets a tolerance override.
    pub fn tol(mut self, rtol: f64, atol: f64) -> Self {
        self.tol = Some((rtol, atol));
        self
    }

    /// Declares extra public names covered by this record.
    pub fn covers(mut self, names: &[&'static str]) -> Self {
        self.covers.extend_from_slice(names);
        self
    }
}

/// Float dtypes.
pub const FLOATS: &[DType] = &[DType::F32, DType::F64, DType::F16, DType::BF16];
/// Float and integer dtypes.
pub const NUMERIC: &[DType] = &[DType::F32, DType::F64, DType::F16, DType::BF16, DType::I64, DType::I32, DType::U8];
/// Every dtype.
pub const ALL: &[DType] =
    &[DType::F32, DType::F64, DType::F16, DType::BF16, DType::I64, DType::I32, DType::U8, DType::Bool];

/// PyTorch's `assert_close` default tolerances `(rtol, atol)` per dtype.
pub fn default_tol(dtype: DType) -> (f64, f64) {
    match dtype {
        DType::F64 => (1e-7, 1e-7),
        DType::F32 => (1.3e-6, 1e-5),
        DType::F16 => (1e-3, 1e-5),
        DType::BF16 => (1.6e-2, 1e-5),
        _ => (0.0, 0.0),
    }
}

/// Every record of the table.
pub fn all_ops() -> Vec<OpInfo> {
    let mut v = Vec::new();
    v.extend(creation::ops());
    v.extend(elementwise::ops());
    v.extend(views::ops());
    v.extend(reduce::ops());
    v.extend(linalg::ops());
    v.extend(index::ops());
    v.extend(nn::ops());
    v
}

/// Compares `got` with `want` under `(rtol, atol)`; NaNs must match NaNs.
/// Returns a message naming the first mismatch.
pub fn compare(got: &Tensor, want: &RefArray, rtol: f64, atol: f64) -> std::result::Result<(), String> {
    if got.dims() != want.shape.as_slice() {
        return Err(format!("shape {:?}, expected {:?}", got.dims(), want.shape));
    }
    let g = got.to_vec_f64().map_err(|e| e.to_string())?;
    for (i, (a, b)) in g.iter().zip(&want.data).enumerate() {
        let ok = if a.is_nan() || b.is_nan() {
            a.is_nan() && b.is_nan()
        } else if a.is_infinite() || b.is_infinite() {
            a == b
        } else {
            (a - b).abs() <= atol + rtol * b.abs()
        };
        if !ok {
            return Err(format!("element {i}: got {a}, expected {b} (rtol {rtol}, atol {atol})"));
        }
    }
    Ok(())
}

/// Deterministic test data: `n` values in `[lo, hi)` from a seed.
pub fn data(seed: u64, n: usize, lo: f64, hi: f64) -> Vec<f64> {
    let mut g = tensor_core::Generator::new(seed);
    g.uniform_f64(n).into_iter().map(|u| lo + (hi - lo) * u).collect()
}

/// An F64 CPU tensor of deterministic values in `[lo, hi)`.
pub fn rand_t(seed: u64, shape: &[usize], lo: f64, hi: f64) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_vec(data(seed, n, lo, hi), shape.to_vec()).expect("numel matches")
}

/// An F64 tensor of small integers in `[lo, hi]` (exact in every dtype).
pub fn int_t(seed: u64, shape: &[usize], lo: i64, hi: i64) -> Tensor {
    let n = shape.iter().product();
    let v: Vec<f64> = data(seed, n, lo as f64, hi as f64 + 1.0).into_iter().map(f64::floor).collect();
    Tensor::from_vec(v, shape.to_vec()).expect("numel matches")
}

/// The same values as `t` in a non-contiguous layout (a transposed copy transposed
/// back, or every other element of a longer vector).
pub fn non_contiguous(t: &Tensor) -> Result<Tensor> {
    match t.rank() {
        0 => Ok(t.clone()),
        1 => {
            let n = t.dims()[0];
            let big = Tensor::zeros([2 * n], t.dtype(), t.device())?;
            let v = big.slice(0, Some(0), None, 2)?;
            v.copy_(t)?;
            Ok(v)
        }
        r => {
            let last = (r - 1) as isize;
            let c = t.transpose(0, last)?.contiguous()?;
            c.transpose(0, last)
        }
    }
}
