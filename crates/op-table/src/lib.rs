//! The op table: one [`OpInfo`] per public tensor op, each with [`Sample`]s (inputs,
//! the op to run, an independent f64 reference) and [`ErrorCase`]s.
//!
//! Generic tests walk the table: every sample on every claimed dtype against its
//! reference, non-contiguous inputs against contiguous ones, and every error case
//! against the `Error` variant it must produce. tensor-cuda runs the same table on
//! the GPU against the CPU, and autograd runs gradcheck over the differentiable
//! records.
//!
//! A sample of a differentiable record states its call once, with [`call!`] (or
//! [`fn1!`]/[`fn2!`] inside the batteries): the macro compiles the same body for
//! [`Tensor`] and for autograd's [`Var`], so the gradient tests run exactly the call
//! the forward tests run.
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

#[doc(hidden)]
pub use autograd::Var;
pub use refs::RefArray;
use tensor_core::{DType, Error};
#[doc(hidden)]
pub use tensor_core::{Result, Scalar, Tensor};

/// Runs the op on inputs (already cast to the dtype under test).
pub type OpFn = Arc<dyn Fn(&[Tensor]) -> Result<Vec<Tensor>> + Send + Sync>;
/// The same call on `Var`s (recorded by autograd).
pub type VarOpFn = Arc<dyn Fn(&[Var]) -> Result<Vec<Var>> + Send + Sync>;

/// What the op-table's generic helpers need from an operand, implemented by
/// [`Tensor`] and [`Var`] (each method is the type's own op of the same name).
pub trait Operand: Clone + From<Tensor> + Send + Sync + 'static {
    /// The value (a `Var`'s tensor, or the tensor itself).
    fn tensor(&self) -> &Tensor;
    /// `t()`.
    fn t(&self) -> Result<Self>;
    /// `transpose(d0, d1)`.
    fn transpose(&self, d0: isize, d1: isize) -> Result<Self>;
    /// `slice(dim, start, end, step)`.
    fn slice(&self, dim: isize, start: Option<isize>, end: Option<isize>, step: usize) -> Result<Self>;
    /// `expand(shape)`.
    fn expand(&self, shape: &[isize]) -> Result<Self>;
    /// `embedding(indices)` (a `Var` without a padding index).
    fn embedding_lookup(&self, indices: &Tensor) -> Result<Self>;
    /// This type's side of a unary [`Fn1`].
    fn pick1(f: &Fn1) -> &(dyn Fn(&Self) -> Result<Self> + Send + Sync);
    /// This type's side of a binary [`Fn2`].
    fn pick2(f: &Fn2) -> &(dyn Fn(&Self, &Self) -> Result<Self> + Send + Sync);
    /// This type's side of a tensor-scalar [`FnS`].
    fn pick_s(f: &FnS) -> &(dyn Fn(&Self, Scalar) -> Result<Self> + Send + Sync);
}

macro_rules! operand {
    ($ty:ident, $side:ident, |$s:ident| $as_tensor:expr, |$e:ident, $i:ident| $embedding:expr) => {
        impl Operand for $ty {
            fn tensor(&self) -> &Tensor {
                let $s = self;
                $as_tensor
            }
            fn t(&self) -> Result<Self> {
                $ty::t(self)
            }
            fn transpose(&self, d0: isize, d1: isize) -> Result<Self> {
                $ty::transpose(self, d0, d1)
            }
            fn slice(&self, dim: isize, start: Option<isize>, end: Option<isize>, step: usize) -> Result<Self> {
                $ty::slice(self, dim, start, end, step)
            }
            fn expand(&self, shape: &[isize]) -> Result<Self> {
                $ty::expand(self, shape)
            }
            fn embedding_lookup(&self, indices: &Tensor) -> Result<Self> {
                let ($e, $i) = (self, indices);
                $embedding
            }
            fn pick1(f: &Fn1) -> &(dyn Fn(&Self) -> Result<Self> + Send + Sync) {
                &*f.$side
            }
            fn pick2(f: &Fn2) -> &(dyn Fn(&Self, &Self) -> Result<Self> + Send + Sync) {
                &*f.$side
            }
            fn pick_s(f: &FnS) -> &(dyn Fn(&Self, Scalar) -> Result<Self> + Send + Sync) {
                &*f.$side
            }
        }
    };
}
operand!(Tensor, tensor, |t| t, |t, i| t.embedding(i));
operand!(Var, var, |v| v.tensor(), |v, i| v.embedding(i, None));

/// A call on a sample's inputs, written once and compiled for [`Tensor`] and [`Var`]
/// (made by [`call!`]).
#[derive(Clone)]
pub struct Call {
    /// The tensor form.
    pub tensor: OpFn,
    /// The `Var` form.
    pub var: VarOpFn,
}

/// How a sample runs its op: written once for `Tensor` and `Var` (the samples of
/// differentiable records), or on tensors only.
#[derive(Clone)]
pub enum Run {
    /// Both forms, from [`call!`].
    Both(Call),
    /// The tensor form only (ops without a gradient).
    Tensor(OpFn),
}

/// A unary op on one operand type.
pub type UnaryFn<T> = Arc<dyn Fn(&T) -> Result<T> + Send + Sync>;
/// A binary op on one operand type.
pub type BinaryFn<T> = Arc<dyn Fn(&T, &T) -> Result<T> + Send + Sync>;
/// A tensor-scalar op on one operand type.
pub type ScalarFn<T> = Arc<dyn Fn(&T, Scalar) -> Result<T> + Send + Sync>;

/// A unary op written once for both operand types (made by [`fn1!`]).
#[derive(Clone)]
pub struct Fn1 {
    /// The tensor form.
    pub tensor: UnaryFn<Tensor>,
    /// The `Var` form.
    pub var: UnaryFn<Var>,
}

/// A binary op written once for both operand types (made by [`fn2!`]).
#[derive(Clone)]
pub struct Fn2 {
    /// The tensor form.
    pub tensor: BinaryFn<Tensor>,
    /// The `Var` form.
    pub var: BinaryFn<Var>,
}

/// A tensor-scalar op written once for both operand types (made by [`fn_s!`]).
#[derive(Clone)]
pub struct FnS {
    /// The tensor form.
    pub tensor: ScalarFn<Tensor>,
    /// The `Var` form.
    pub var: ScalarFn<Var>,
}

/// A plain tensor as an operand of type `T` (itself, or a `Var` without a gradient):
/// the index outputs of `max_dim`, `sort`, ... in a body written for both types.
pub fn lift<T: From<Tensor>>(t: Tensor) -> T {
    T::from(t)
}

impl Fn1 {
    /// Runs the side for `T`.
    pub fn run<T: Operand>(&self, x: &T) -> Result<T> {
        T::pick1(self)(x)
    }
}
impl Fn2 {
    /// Runs the side for `T`.
    pub fn run<T: Operand>(&self, a: &T, b: &T) -> Result<T> {
        T::pick2(self)(a, b)
    }
}
impl FnS {
    /// Runs the side for `T`.
    pub fn run<T: Operand>(&self, x: &T, s: Scalar) -> Result<T> {
        T::pick_s(self)(x, s)
    }
}

/// A [`Call`] from one body over the inputs `x: &[T]`, returning `Result<Vec<T>>`,
/// compiled with `T = Tensor` and `T = Var` (write `T::cat`, `lift(index_tensor)`,
/// and `x[i].tensor()` for an input the op takes as a plain tensor). Variables the
/// body uses that are not `Copy` are listed first, in brackets, to be cloned into
/// both forms.
///
/// ```
/// use op_table::call;
/// let dims = vec![0isize];
/// let c = call!([dims] |x| Ok(vec![x[0].sum(&dims, false)?, x[0].exp()?]));
/// let t = tensor_core::Tensor::new(&[1f64, 2.0]);
/// assert_eq!((c.tensor)(&[t.clone()]).unwrap()[0].to_vec_f64().unwrap(), [3.0]);
/// let v = op_table::Var::from(t);
/// assert_eq!((c.var)(&[v]).unwrap()[1].tensor().to_vec_f64().unwrap(), [1f64.exp(), 2f64.exp()]);
/// ```
#[macro_export]
macro_rules! call {
    ($([$($cap:ident),* $(,)?])? |$x:ident| $body:expr) => {
        $crate::Call {
            tensor: {
                $($(let $cap = $cap.clone();)*)?
                ::std::sync::Arc::new(move |$x: &[$crate::Tensor]| -> $crate::Result<Vec<$crate::Tensor>> {
                    #[allow(dead_code)]
                    type T = $crate::Tensor;
                    #[allow(unused_imports)]
                    use $crate::Operand as _;
                    $body
                })
            },
            var: {
                $($(let $cap = $cap.clone();)*)?
                ::std::sync::Arc::new(move |$x: &[$crate::Var]| -> $crate::Result<Vec<$crate::Var>> {
                    #[allow(dead_code)]
                    type T = $crate::Var;
                    #[allow(unused_imports)]
                    use $crate::Operand as _;
                    $body
                })
            },
        }
    };
}

/// A [`Call`] of one output from one body over the first input `x: &T`, returning
/// `Result<T>` (the one-input form of [`call!`]).
#[macro_export]
macro_rules! call1 {
    ($([$($cap:ident),* $(,)?])? |$x:ident| $body:expr) => {
        $crate::call!($([$($cap),*])? |inputs| Ok(vec![{
            let $x = &inputs[0];
            $body
        }?]))
    };
}

/// A [`Fn1`] from one body over `x: &T` returning `Result<T>`.
#[macro_export]
macro_rules! fn1 {
    ($([$($cap:ident),* $(,)?])? |$x:ident| $body:expr) => {
        $crate::Fn1 {
            tensor: {
                $($(let $cap = $cap.clone();)*)?
                ::std::sync::Arc::new(move |$x: &$crate::Tensor| -> $crate::Result<$crate::Tensor> {
                    #[allow(dead_code)]
                    type T = $crate::Tensor;
                    #[allow(unused_imports)]
                    use $crate::Operand as _;
                    $body
                })
            },
            var: {
                $($(let $cap = $cap.clone();)*)?
                ::std::sync::Arc::new(move |$x: &$crate::Var| -> $crate::Result<$crate::Var> {
                    #[allow(dead_code)]
                    type T = $crate::Var;
                    #[allow(unused_imports)]
                    use $crate::Operand as _;
                    $body
                })
            },
        }
    };
}

/// A [`Fn2`] from one body over `a: &T, b: &T` returning `Result<T>`.
#[macro_export]
macro_rules! fn2 {
    (|$a:ident, $b:ident| $body:expr) => {
        $crate::Fn2 {
            tensor: ::std::sync::Arc::new(
                move |$a: &$crate::Tensor, $b: &$crate::Tensor| -> $crate::Result<$crate::Tensor> { $body },
            ),
            var: ::std::sync::Arc::new(move |$a: &$crate::Var, $b: &$crate::Var| -> $crate::Result<$crate::Var> {
                $body
            }),
        }
    };
}

/// A [`FnS`] from one body over `x: &T, s: Scalar` returning `Result<T>`.
#[macro_export]
macro_rules! fn_s {
    (|$x:ident, $s:ident| $body:expr) => {
        $crate::FnS {
            tensor: ::std::sync::Arc::new(
                move |$x: &$crate::Tensor, $s: $crate::Scalar| -> $crate::Result<$crate::Tensor> { $body },
            ),
            var: ::std::sync::Arc::new(move |$x: &$crate::Var, $s: $crate::Scalar| -> $crate::Result<$crate::Var> {
                $body
            }),
        }
    };
}
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
    /// Inputs the `Var` form reads as plain tensors (running statistics): the
    /// gradient tests hold them constant.
    pub constant: Vec<bool>,
    /// The op.
    pub op: OpFn,
    /// The same call on `Var`s, for the gradient tests (every gradcheckable sample of
    /// a differentiable record has one).
    pub var_op: Option<VarOpFn>,
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
        let constant = vec![false; inputs.len()];
        Sample {
            desc: desc.into(),
            inputs,
            cast,
            constant,
            op: Arc::new(op),
            var_op: None,
            reference: Arc::new(reference),
        }
    }

    /// A sample whose call is written once for `Tensor` and `Var` (see [`call!`]).
    pub fn call(
        desc: impl Into<String>,
        inputs: Vec<Tensor>,
        call: Call,
        reference: impl Fn(&[RefArray]) -> Vec<RefArray> + Send + Sync + 'static,
    ) -> Self {
        let (cast, constant) = (vec![true; inputs.len()], vec![false; inputs.len()]);
        Sample {
            desc: desc.into(),
            inputs,
            cast,
            constant,
            op: call.tensor,
            var_op: Some(call.var),
            reference: Arc::new(reference),
        }
    }

    /// A sample that runs `run` (written once for both operand types, or on tensors only).
    pub fn run(
        desc: impl Into<String>,
        inputs: Vec<Tensor>,
        run: Run,
        reference: impl Fn(&[RefArray]) -> Vec<RefArray> + Send + Sync + 'static,
    ) -> Self {
        match run {
            Run::Both(c) => Sample::call(desc, inputs, c, reference),
            Run::Tensor(op) => Sample::new(desc, inputs, move |x| op(x), reference),
        }
    }

    /// Marks inputs the `Var` form reads as plain tensors (held constant by the
    /// gradient tests).
    pub fn with_constants(mut self, inputs: &[usize]) -> Self {
        for &i in inputs {
            self.constant[i] = true;
        }
        self
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
