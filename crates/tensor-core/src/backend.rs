//! The [`Backend`] trait: the small set of primitives every device implements, with
//! ops passed as enums. Composite ops (softmax, conv, losses, ...) are written once
//! in terms of these primitives, so a new backend gets every op for free.
//!
//! Contract for every method: buffers come with a [`Layout`] that may be strided
//! (transposed, sliced, broadcast with stride 0); outputs are new contiguous
//! buffers unless the method writes into `dst`. Shapes and dtypes have already been
//! checked by the tensor layer, so a backend only reports what it cannot do.

use std::any::Any;
use std::fmt::Debug;

use crate::cpu::{CpuStore, HostBuffer};
use crate::fused::{Conv2dDims, OptimizerUpdate, Window2d};
use num_traits::Float;

use crate::dtype::Elem;
use crate::{DType, Layout, Result, Scalar};

/// A device's opaque allocation of elements of one dtype.
pub trait Buffer: Any + Send + Sync + Debug {
    /// The element type.
    fn dtype(&self) -> DType;
    /// Number of elements.
    fn len(&self) -> usize;
    /// True when it holds no element.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Upcast for downcasting to the backend's concrete type.
    fn as_any(&self) -> &dyn Any;
    /// Mutable upcast for downcasting to the backend's concrete type.
    fn as_any_mut(&mut self) -> &mut dyn Any;
    /// The host vector, for the CPU backend's buffers (`None` for other devices):
    /// one call where a downcast through [`Buffer::as_any`] takes several.
    fn as_host(&self) -> Option<&HostBuffer> {
        None
    }
    /// Mutable variant of [`Buffer::as_host`].
    fn as_host_mut(&mut self) -> Option<&mut HostBuffer> {
        None
    }
}

/// A buffer owned by a tensor's storage: the CPU's host vector inline, so that a
/// small CPU tensor costs one allocation less than a boxed buffer, and any other
/// device's buffer boxed. Dereferences to `dyn Buffer`.
#[derive(Debug)]
pub enum OwnedBuffer {
    /// A host buffer, returned to the CPU buffer cache ([`crate::cpu::alloc`]) when dropped.
    Cpu(CpuStore),
    /// Any other device's buffer.
    Boxed(Box<dyn Buffer>),
}

impl OwnedBuffer {
    /// Boxes a device buffer (a backend outside this crate returns its buffers so).
    pub fn new(buf: impl Buffer) -> Self {
        OwnedBuffer::Boxed(Box::new(buf))
    }
}

impl From<HostBuffer> for OwnedBuffer {
    /// CPU storage, recycled into the buffer cache on drop.
    #[inline]
    fn from(b: HostBuffer) -> Self {
        OwnedBuffer::Cpu(CpuStore::new(b))
    }
}

impl std::ops::Deref for OwnedBuffer {
    type Target = dyn Buffer;
    #[inline]
    fn deref(&self) -> &(dyn Buffer + 'static) {
        match self {
            OwnedBuffer::Cpu(c) => c,
            OwnedBuffer::Boxed(b) => &**b,
        }
    }
}

impl std::ops::DerefMut for OwnedBuffer {
    #[inline]
    fn deref_mut(&mut self) -> &mut (dyn Buffer + 'static) {
        match self {
            OwnedBuffer::Cpu(c) => c,
            OwnedBuffer::Boxed(b) => &mut **b,
        }
    }
}

/// Where a device lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeviceLocation {
    /// Host memory.
    Cpu,
    /// A CUDA GPU with this ordinal.
    Cuda(usize),
}

impl std::fmt::Display for DeviceLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceLocation::Cpu => f.write_str("cpu"),
            DeviceLocation::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

/// Declares, for an op enum, its PyTorch names and the codes the CUDA kernels switch
/// on: `name()`, `code()` (the variant's position in this list) and `CODE_NAMES` (the
/// C constant of each code, `{prefix}_{VARIANT}` in upper snake case, which
/// [`kernel_op_codes_header`] writes into `kernels/ops.cuh`). The list is a `match`, so
/// a variant missing from it does not compile; its codes exist once, here.
macro_rules! op_names {
    ($E:ident, $prefix:literal { $($V:ident => $name:literal,)* }) => {
        impl $E {
            /// The op's name as in PyTorch.
            pub fn name(&self) -> &'static str {
                match self {
                    $($E::$V { .. } => $name,)*
                }
            }

            /// The op's code in the CUDA kernels (`kernels/ops.cuh`, generated from this
            /// enum by `cargo xtask ptx`).
            pub fn code(&self) -> i32 {
                #[allow(dead_code, clippy::enum_variant_names)]
                enum Code {
                    $($V,)*
                }
                match self {
                    $($E::$V { .. } => Code::$V as i32,)*
                }
            }

            /// The C constant of each code, in code order.
            pub const CODE_NAMES: &'static [&'static str] =
                &[$(concat!($prefix, "_", stringify!($V)),)*];
        }
    };
}

/// The C header `kernels/ops.cuh`: one `enum` of op codes per op enum, numbered as
/// [`UnaryOp::code`] and its siblings number them. `cargo xtask ptx` writes it, and
/// `cargo xtask ptx --check` (and a tensor-core test) fail when the file is stale.
#[doc(hidden)]
pub fn kernel_op_codes_header() -> String {
    let mut h = String::from(
        "// Generated from tensor-core's op enums (crates/tensor-core/src/backend.rs) by\n\
         // `cargo xtask ptx`; checked by `cargo xtask ptx --check`. Do not edit.\n\
         #pragma once\n",
    );
    let enums: [(&str, &[&str]); 4] = [
        ("UnaryOp", UnaryOp::CODE_NAMES),
        ("BinaryOp", BinaryOp::CODE_NAMES),
        ("ReduceOp", ReduceOp::CODE_NAMES),
        ("ScanOp", ScanOp::CODE_NAMES),
    ];
    for (enum_name, names) in enums {
        h.push_str(&format!("\n// {enum_name}\nenum {{\n"));
        for (code, name) in names.iter().enumerate() {
            h.push_str(&format!("    {} = {code},\n", c_constant(name)));
        }
        h.push_str("};\n");
    }
    h
}

/// `U_LeakyRelu` -> `U_LEAKY_RELU`.
fn c_constant(name: &str) -> String {
    let mut out = String::new();
    let mut prev_lower = false;
    for ch in name.chars() {
        if ch.is_ascii_uppercase() && prev_lower {
            out.push('_');
        }
        prev_lower = ch.is_ascii_lowercase() || ch.is_ascii_digit();
        out.push(ch.to_ascii_uppercase());
    }
    out
}

/// Elementwise ops of one input. Float-only ops receive float buffers (the tensor
/// layer casts integers first); the `Is*` predicates and `LogicalNot` return Bool.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnaryOp {
    /// `-x`
    Neg,
    /// `|x|`
    Abs,
    /// `e^x`
    Exp,
    /// natural log
    Log,
    /// `log(1 + x)`
    Log1p,
    /// `e^x - 1`
    Expm1,
    /// square root
    Sqrt,
    /// `1 / sqrt(x)`
    Rsqrt,
    /// sine
    Sin,
    /// cosine
    Cos,
    /// tangent
    Tan,
    /// hyperbolic tangent
    Tanh,
    /// `1 / (1 + e^-x)`
    Sigmoid,
    /// `max(x, 0)`
    Relu,
    /// `x` if positive, else `slope * x`
    LeakyRelu(f64),
    /// `x` if positive, else `alpha * (e^x - 1)`
    Elu(f64),
    /// `x * Phi(x)` with the exact erf
    Gelu,
    /// the tanh approximation of GELU
    GeluTanh,
    /// `x * sigmoid(x)`
    Silu,
    /// `log(sigmoid(x))`, as `min(x, 0) - log1p(e^-|x|)` so neither side overflows
    LogSigmoid,
    /// `x * tanh(softplus(x))`
    Mish,
    /// `log(1 + e^(beta x)) / beta`, linear above `threshold`
    Softplus {
        /// beta
        beta: f64,
        /// threshold
        threshold: f64,
    },
    /// -1, 0 or 1
    Sign,
    /// round toward -inf
    Floor,
    /// round toward +inf
    Ceil,
    /// round half to even
    Round,
    /// truncate toward 0
    Trunc,
    /// `1 / x`
    Recip,
    /// `x * x`
    Square,
    /// the error function
    Erf,
    /// `x ^ p` for a scalar exponent
    PowScalar(f64),
    /// clamp to `[min, max]` (either bound optional)
    Clamp(Option<f64>, Option<f64>),
    /// `x + c` (kept as an op so scalar arithmetic avoids a broadcast)
    AddScalar(f64),
    /// `x * c`
    MulScalar(f64),
    /// `x != x`, to Bool
    IsNan,
    /// `|x| == inf`, to Bool
    IsInf,
    /// `!x` on Bool (or `x == 0` on numbers), to Bool
    LogicalNot,
}

/// Runs one float formula over a whole buffer. The CPU backend implements it with its
/// elementwise loop; [`UnaryOp::float_formula`] calls it once per op, so each op's loop
/// is compiled for its own formula (no per-element `match`).
pub(crate) trait FloatMap<T> {
    /// What a map returns.
    type Out;
    /// Maps every element through `f`.
    fn map<F: Fn(T) -> T + Sync>(self, f: F) -> Self::Out;
}

impl UnaryOp {
    /// The op's formula on floats, the definition every backend's kernel follows: `m`
    /// runs it over the data. `None` for the Bool predicates (`IsNan`, `IsInf`,
    /// `LogicalNot`). Half types compute in f32 (PyTorch's "opmath"); scalar parameters
    /// are rounded to `T` once. A backend may replace single formulas with faster kernels
    /// of the same accuracy (the CPU backend's f32 `tanh`, `sigmoid` and `gelu`).
    pub(crate) fn float_formula<T: Elem + Float, M: FloatMap<T>>(self, m: M) -> Option<M::Out> {
        use UnaryOp::*;
        let c = |x: f64| T::from_f64(x);
        let (zero, one) = (T::zero(), T::one());
        Some(match self {
            Neg => m.map(|x| -x),
            Abs => m.map(|x| x.abs()),
            Exp => m.map(|x| x.exp()),
            Log => m.map(|x| x.ln()),
            Log1p => m.map(|x| x.ln_1p()),
            Expm1 => m.map(|x| x.exp_m1()),
            Sqrt => m.map(|x| x.sqrt()),
            Rsqrt => m.map(|x| x.sqrt().recip()),
            Sin => m.map(|x| x.sin()),
            Cos => m.map(|x| x.cos()),
            Tan => m.map(|x| x.tan()),
            Tanh => m.map(|x| x.tanh()),
            Sigmoid => m.map(move |x| one / (one + (-x).exp())),
            Relu => m.map(move |x| if x > zero || x.is_nan() { x } else { zero }),
            LeakyRelu(s) => {
                let s = c(s);
                m.map(move |x| if x > zero { x } else { x * s })
            }
            Elu(a) => {
                let a = c(a);
                m.map(move |x| if x > zero { x } else { a * x.exp_m1() })
            }
            Gelu => m.map(|x| {
                let xf = x.to_f64();
                T::from_f64(0.5 * xf * (1.0 + libm::erf(xf * std::f64::consts::FRAC_1_SQRT_2)))
            }),
            GeluTanh => m.map(|x| {
                let xf = x.to_f64();
                let k = (2.0 / std::f64::consts::PI).sqrt();
                T::from_f64(0.5 * xf * (1.0 + (k * (xf + 0.044715 * xf * xf * xf)).tanh()))
            }),
            Silu => m.map(move |x| x / (one + (-x).exp())),
            LogSigmoid => m.map(move |x| x.min(zero) - (-x.abs()).exp().ln_1p()),
            Mish => {
                // softplus(x) = log1p(e^x), linear above 20 as PyTorch's.
                let t = c(20.0);
                m.map(move |x| x * (if x > t { x } else { x.exp().ln_1p() }).tanh())
            }
            Softplus { beta, threshold } => {
                let (b, t) = (c(beta), c(threshold));
                m.map(move |x| if x * b > t { x } else { (x * b).exp().ln_1p() / b })
            }
            // -0.0 and NaN pass through (`x * 0`).
            Sign => m.map(move |x| {
                if x > zero {
                    one
                } else if x < zero {
                    -one
                } else {
                    x * zero
                }
            }),
            Floor => m.map(|x| x.floor()),
            Ceil => m.map(|x| x.ceil()),
            Round => m.map(|x| T::from_f64(x.to_f64().round_ties_even())),
            Trunc => m.map(|x| x.trunc()),
            Recip => m.map(|x| x.recip()),
            Square => m.map(|x| x * x),
            Erf => m.map(|x| T::from_f64(libm::erf(x.to_f64()))),
            PowScalar(2.0) => m.map(|x| x * x),
            PowScalar(0.5) => m.map(|x| x.sqrt()),
            PowScalar(1.0) => m.map(|x| x),
            PowScalar(p) => {
                let p = c(p);
                m.map(move |x| x.powf(p))
            }
            Clamp(lo, hi) => {
                let (lo, hi) = (lo.map(c), hi.map(c));
                m.map(move |x| {
                    let mut y = x;
                    if let Some(lo) = lo {
                        if y < lo {
                            y = lo
                        }
                    }
                    if let Some(hi) = hi {
                        if y > hi {
                            y = hi
                        }
                    }
                    y // NaN fails both comparisons and passes through
                })
            }
            AddScalar(s) => {
                let s = c(s);
                m.map(move |x| x + s)
            }
            MulScalar(s) => {
                let s = c(s);
                m.map(move |x| x * s)
            }
            IsNan | IsInf | LogicalNot => return None,
        })
    }
}

op_names! {
    UnaryOp, "U" {
        Neg => "neg",
        Abs => "abs",
        Exp => "exp",
        Log => "log",
        Log1p => "log1p",
        Expm1 => "expm1",
        Sqrt => "sqrt",
        Rsqrt => "rsqrt",
        Sin => "sin",
        Cos => "cos",
        Tan => "tan",
        Tanh => "tanh",
        Sigmoid => "sigmoid",
        Relu => "relu",
        LeakyRelu => "leaky_relu",
        Elu => "elu",
        Gelu => "gelu",
        GeluTanh => "gelu_tanh",
        Silu => "silu",
        LogSigmoid => "log_sigmoid",
        Mish => "mish",
        Softplus => "softplus",
        Sign => "sign",
        Floor => "floor",
        Ceil => "ceil",
        Round => "round",
        Trunc => "trunc",
        Recip => "reciprocal",
        Square => "square",
        Erf => "erf",
        PowScalar => "pow",
        Clamp => "clamp",
        AddScalar => "add",
        MulScalar => "mul",
        IsNan => "isnan",
        IsInf => "isinf",
        LogicalNot => "logical_not",
    }
}

impl UnaryOp {
    /// True when the op needs a float input (integers are cast to f32 first).
    pub fn float_only(&self) -> bool {
        use UnaryOp::*;
        !matches!(
            self,
            Neg | Abs
                | Relu
                | Sign
                | Square
                | Clamp(..)
                | AddScalar(_)
                | MulScalar(_)
                | IsNan
                | IsInf
                | LogicalNot
                | Floor
                | Ceil
                | Round
                | Trunc
        )
    }

    /// True when the op returns Bool.
    pub fn returns_bool(&self) -> bool {
        matches!(self, UnaryOp::IsNan | UnaryOp::IsInf | UnaryOp::LogicalNot)
    }
}

/// Elementwise ops of two inputs of the same dtype and (broadcast) shape.
/// Comparisons and logical ops return Bool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    /// `a + b`
    Add,
    /// `a - b`
    Sub,
    /// `a * b`
    Mul,
    /// `a / b` (floats; the tensor layer casts integers for true division)
    Div,
    /// `a ^ b`
    Pow,
    /// elementwise max (NaN propagates)
    Maximum,
    /// elementwise min (NaN propagates)
    Minimum,
    /// Python-style remainder (sign of the divisor)
    Remainder,
    /// `atan2(a, b)`
    Atan2,
    /// `a == b`
    Eq,
    /// `a != b`
    Ne,
    /// `a < b`
    Lt,
    /// `a <= b`
    Le,
    /// `a > b`
    Gt,
    /// `a >= b`
    Ge,
    /// logical and (nonzero is true)
    LogicalAnd,
    /// logical or
    LogicalOr,
    /// logical xor
    LogicalXor,
}

op_names! {
    BinaryOp, "B" {
        Add => "add",
        Sub => "sub",
        Mul => "mul",
        Div => "div",
        Pow => "pow",
        Maximum => "maximum",
        Minimum => "minimum",
        Remainder => "remainder",
        Atan2 => "atan2",
        Eq => "eq",
        Ne => "ne",
        Lt => "lt",
        Le => "le",
        Gt => "gt",
        Ge => "ge",
        LogicalAnd => "logical_and",
        LogicalOr => "logical_or",
        LogicalXor => "logical_xor",
    }
}

impl BinaryOp {
    /// True when the op returns Bool.
    pub fn returns_bool(&self) -> bool {
        use BinaryOp::*;
        matches!(self, Eq | Ne | Lt | Le | Gt | Ge | LogicalAnd | LogicalOr | LogicalXor)
    }
}

/// Reductions over a set of dims.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    /// sum
    Sum,
    /// product
    Prod,
    /// maximum (NaN propagates)
    Max,
    /// minimum (NaN propagates)
    Min,
    /// index of the maximum along one dim (first occurrence), as I64
    ArgMax,
    /// index of the minimum along one dim (first occurrence), as I64
    ArgMin,
    /// true if every element is nonzero, as Bool
    All,
    /// true if any element is nonzero, as Bool
    Any,
}

op_names! {
    ReduceOp, "R" {
        Sum => "sum",
        Prod => "prod",
        Max => "max",
        Min => "min",
        ArgMax => "argmax",
        ArgMin => "argmin",
        All => "all",
        Any => "any",
    }
}

/// Cumulative ops along one dim.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScanOp {
    /// running sum
    CumSum,
    /// running product
    CumProd,
}

op_names! {
    ScanOp, "S" {
        CumSum => "cumsum",
        CumProd => "cumprod",
    }
}

/// The sizes of a fused attention call ([`FusedOp::Attention`]): `bh` independent
/// slices (batch x heads) of `l` queries and `s` keys, with head dims `e` (queries and
/// keys) and `ev` (values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttentionDims {
    /// batch x heads
    pub bh: usize,
    /// queries per slice
    pub l: usize,
    /// keys per slice
    pub s: usize,
    /// query/key features
    pub e: usize,
    /// value features
    pub ev: usize,
}

/// The class targets of a fused cross-entropy ([`FusedOp::CrossEntropy`] and its
/// backward): per row `n` with target `t`, the loss is `-sum_c K[n, c] log_softmax(x)[n,
/// c]` with `K[n, c] = (1 - label_smoothing) w[t] [c == t] + label_smoothing w[c] / C`,
/// and 0 for a row whose target is `ignore_index`. A target outside `0..C` (other than
/// `ignore_index`) is an error.
#[derive(Clone, Copy, Debug)]
pub struct ClassTargets<'a> {
    /// The targets: contiguous I64 `[rows]`.
    pub target: (&'a dyn Buffer, &'a Layout),
    /// Optional class weights: contiguous `[cols]`, the logits' dtype (all 1 if none).
    pub weight: Option<(&'a dyn Buffer, &'a Layout)>,
    /// Rows with this target add nothing.
    pub ignore_index: i64,
    /// The share of the target spread over all classes, in `[0, 1]`.
    pub label_smoothing: f64,
}

/// A fused fast path a backend may offer through [`Backend::fused`]: the one way
/// specialised kernels are reached. Each has a composite fallback written with tensor
/// ops, so returning `None` from [`Backend::fused`] is always correct.
///
/// Ops that produce tensors return their outputs as new contiguous buffers, in the
/// order each variant lists; in-place ops return none.
#[derive(Debug)]
#[non_exhaustive]
pub enum FusedOp<'a> {
    /// Softmax (or log-softmax) over the last dim of a contiguous buffer of shape
    /// `[rows, cols]`. Output: the probabilities, same dtype.
    Softmax {
        /// input
        x: &'a dyn Buffer,
        /// its layout (contiguous, rank 2)
        layout: &'a Layout,
        /// log-softmax instead of softmax
        log: bool,
    },
    /// Layer normalisation over the last dim of a contiguous `[rows, cols]` buffer,
    /// with optional contiguous `[cols]` weight and bias of the same dtype. Output:
    /// `y` (the input's dtype).
    LayerNorm {
        /// input
        x: &'a dyn Buffer,
        /// its layout (contiguous, rank 2)
        layout: &'a Layout,
        /// optional scale and its layout
        weight: Option<(&'a dyn Buffer, &'a Layout)>,
        /// optional shift and its layout
        bias: Option<(&'a dyn Buffer, &'a Layout)>,
        /// added to the variance
        eps: f64,
    },
    /// The gradients of [`FusedOp::LayerNorm`] from the output's gradient `grad` (same
    /// layout as `x`), the statistics recomputed from `x`. Outputs: `dx` `[rows, cols]`
    /// (the input's dtype), and the weight's and bias's gradients `[cols]` (the sums over
    /// rows of `grad * x_hat` and of `grad`; computed whether or not there is a weight).
    LayerNormBackward {
        /// input of the forward
        x: &'a dyn Buffer,
        /// its layout (contiguous, rank 2), also `grad`'s
        layout: &'a Layout,
        /// gradient of the output
        grad: &'a dyn Buffer,
        /// optional scale and its layout
        weight: Option<(&'a dyn Buffer, &'a Layout)>,
        /// added to the variance
        eps: f64,
    },
    /// The gradient of [`FusedOp::MaxPool2d`]'s input: each element of `grad` added
    /// at its index in `indices` (I64, each in `0..h * w`) into a zeroed plane, for
    /// `planes` planes of `size = [h, w]`. `grad` and `indices` are contiguous with
    /// one `layout` of `planes * oh * ow` elements. Output: `[planes * h * w]`, the
    /// gradient's dtype.
    MaxPool2dBackward {
        /// gradient of the pooled output
        grad: &'a dyn Buffer,
        /// the pooled elements' indices in their input planes
        indices: &'a dyn Buffer,
        /// their layout (contiguous)
        layout: &'a Layout,
        /// number of planes (`batch * channels`)
        planes: usize,
        /// the input plane's `[h, w]`
        size: [usize; 2],
    },
    /// `grad * gelu'(x)` elementwise for `x` and `grad` of one contiguous layout (the
    /// exact erf GELU, or its tanh approximation). Output: same dtype.
    GeluBackward {
        /// input of the forward
        x: &'a dyn Buffer,
        /// gradient of the output
        grad: &'a dyn Buffer,
        /// their layout (contiguous)
        layout: &'a Layout,
        /// the tanh approximation instead of erf
        tanh: bool,
    },
    /// `grad` where `x > threshold`, zero elsewhere (also where `x` is NaN is the
    /// gradient passed: PyTorch's `x <= threshold ? 0 : grad`), for `x` and `grad` of
    /// one contiguous layout; the gradient of ReLU and of `threshold`. Output: same
    /// dtype.
    ThresholdBackward {
        /// input (or, for ReLU, output) of the forward
        x: &'a dyn Buffer,
        /// gradient of the output
        grad: &'a dyn Buffer,
        /// their layout (contiguous)
        layout: &'a Layout,
        /// the threshold, as the dtype's value
        threshold: f64,
    },
    /// Cross-entropy of each row of contiguous logits `[rows, cols]` with class
    /// targets (see [`ClassTargets`]), in one pass over each row. Outputs: the loss of
    /// each row `[rows]` in the logits' dtype and the row's log-sum-exp `[rows]` (for
    /// the backward) in the compute dtype (f32 for the half types, else the logits').
    CrossEntropy {
        /// the logits
        x: &'a dyn Buffer,
        /// their layout (contiguous, rank 2)
        layout: &'a Layout,
        /// the targets and how they weigh
        targets: ClassTargets<'a>,
    },
    /// The logits' gradient of [`FusedOp::CrossEntropy`], `grad[n] (softmax(x)[n, c]
    /// sum_c' K[n, c'] - K[n, c])`, from the logits, the forward's log-sum-exp and the
    /// rows' loss gradient `grad` (both contiguous `[rows]`; `lse` in the compute dtype,
    /// `grad` in the logits'). Output:
    /// `[rows, cols]`.
    CrossEntropyBackward {
        /// the logits
        x: &'a dyn Buffer,
        /// their layout (contiguous, rank 2)
        layout: &'a Layout,
        /// the forward's log-sum-exp of each row, with its layout
        lse: (&'a dyn Buffer, &'a Layout),
        /// the gradient of each row's loss, with its layout
        grad: (&'a dyn Buffer, &'a Layout),
        /// the targets and how they weigh
        targets: ClassTargets<'a>,
    },
    /// Scaled dot-product attention without a score matrix, over `dims.bh` independent
    /// slices: contiguous `q [bh, l, e]`, `k [bh, s, e]`, `v [bh, s, ev]`, optional
    /// top-left causal masking. Outputs: the attention `[bh, l, ev]` and each query's
    /// log-sum-exp of its scaled scores `[bh, l]` (for the backward).
    Attention {
        /// queries, keys and values with their layouts
        qkv: [(&'a dyn Buffer, &'a Layout); 3],
        /// the sizes
        dims: crate::AttentionDims,
        /// the factor of the scores
        scale: f64,
        /// query `i` sees keys `0..=i` only
        causal: bool,
    },
    /// The gradients of [`FusedOp::Attention`] from its inputs, its two outputs and the
    /// gradient of the attention (`[bh, l, ev]`). Outputs: `dq`, `dk`, `dv`.
    AttentionBackward {
        /// queries, keys, values, the attention, its log-sum-exp and its gradient
        tensors: [(&'a dyn Buffer, &'a Layout); 6],
        /// the sizes
        dims: crate::AttentionDims,
        /// the factor of the scores
        scale: f64,
        /// query `i` sees keys `0..=i` only
        causal: bool,
    },
    /// Max pooling of contiguous `[planes, h, w]` input. Outputs: the values
    /// `[planes * oh * ow]` and, as I64, the input-plane index of each maximum (the
    /// first maximum wins; NaN counts as the largest value).
    MaxPool2d {
        /// input
        x: &'a dyn Buffer,
        /// its layout (contiguous, `window.input_len()` elements)
        layout: &'a Layout,
        /// the window geometry
        window: Window2d,
    },
    /// im2col of contiguous `[planes, h, w]` input. Output: the columns
    /// `[planes, kh * kw, oh * ow]` (zeros in the padding).
    Im2col {
        /// input
        x: &'a dyn Buffer,
        /// its layout (contiguous, `window.input_len()` elements)
        layout: &'a Layout,
        /// the window geometry
        window: Window2d,
    },
    /// col2im, the adjoint of [`FusedOp::Im2col`]: sums contiguous columns
    /// `[planes, kh * kw, oh * ow]` into their input positions. Output: `[planes, h, w]`.
    Col2im {
        /// the columns
        cols: &'a dyn Buffer,
        /// their layout (contiguous, `window.columns_len()` elements)
        layout: &'a Layout,
        /// the window geometry
        window: Window2d,
    },
    /// 2-D convolution (cross-correlation) of contiguous `x [batch, in_channels, h, w]`
    /// with contiguous `weight [out_channels, in_channels / groups, kh, kw]` and an
    /// optional contiguous `bias [out_channels]`, all of one float dtype. Output:
    /// `[batch, out_channels, oh, ow]`.
    Conv2d {
        /// input
        x: (&'a dyn Buffer, &'a Layout),
        /// the filters
        weight: (&'a dyn Buffer, &'a Layout),
        /// optional per-output-channel shift
        bias: Option<(&'a dyn Buffer, &'a Layout)>,
        /// the geometry
        dims: Conv2dDims,
    },
    /// The gradients of [`FusedOp::Conv2d`] (without the bias's, which is the sum of
    /// `grad` over batch and plane) from its input, weight and the output's contiguous
    /// gradient `grad [batch, out_channels, oh, ow]`. Outputs, in this order and only
    /// those asked for: the input's gradient, the weight's gradient. The weight's
    /// gradient must not depend on the thread count.
    Conv2dBackward {
        /// input of the forward
        x: (&'a dyn Buffer, &'a Layout),
        /// the filters
        weight: (&'a dyn Buffer, &'a Layout),
        /// gradient of the output
        grad: (&'a dyn Buffer, &'a Layout),
        /// the geometry
        dims: Conv2dDims,
        /// compute the input's gradient
        input_grad: bool,
        /// compute the weight's gradient
        weight_grad: bool,
    },
    /// One direction of one LSTM layer over a whole sequence (gate order i, f, g, o):
    /// at each step `gates = gi[t] + h w_hh_t`, `c = sigmoid(f) c + sigmoid(i)
    /// tanh(g)`, `h = sigmoid(o) tanh(c)`, from `(h0, c0)`, backwards in time when
    /// `reverse`. Inputs, contiguous and of one float dtype: `gi [steps, batch, 4
    /// hidden]` (the input projection, biases included), `w_hh_t [hidden, 4 hidden]`,
    /// `h0` and `c0` `[batch, hidden]`. Outputs: the states `[2, steps, batch, hidden]`
    /// (every step's `h`, then every step's `c`, at the step's own index) and the
    /// activated gates `[steps, batch, 4 hidden]` (for the backward).
    LstmSequence {
        /// `gi`, `w_hh_t`, `h0`, `c0` with their layouts
        inputs: [(&'a dyn Buffer, &'a Layout); 4],
        /// the sizes
        dims: crate::fused::LstmDims,
        /// run from the last step to the first
        reverse: bool,
    },
    /// The gradients of [`FusedOp::LstmSequence`] (backpropagation through time) from
    /// `w_hh_t`, `h0`, `c0`, its two outputs and the states' gradient `[2, steps,
    /// batch, hidden]`, all contiguous. Outputs: the gradient of `gi` `[steps, batch, 4
    /// hidden]`, of `h0` and of `c0` `[batch, hidden]`. (The weight's gradient is one
    /// GEMM of the previous hidden states and `gi`'s gradient, left to the caller.)
    LstmSequenceBackward {
        /// `w_hh_t`, `h0`, `c0`, the states, the activated gates and the states'
        /// gradient with their layouts
        tensors: [(&'a dyn Buffer, &'a Layout); 6],
        /// the sizes
        dims: crate::fused::LstmDims,
        /// the forward ran from the last step to the first
        reverse: bool,
    },
    /// An optimizer's update, in place on the spans of `param` and `state` (distinct
    /// buffers of one float dtype, spans of one length) from `grad`: one pass instead
    /// of a chain of elementwise ops. Reached through [`crate::fused::optimizer_step`],
    /// which checks and locks the tensors.
    OptimizerStep {
        /// which optimizer, with its hyper-parameters
        update: OptimizerUpdate,
        /// the parameter, updated in place
        param: (&'a mut dyn Buffer, Span),
        /// its gradient
        grad: (&'a dyn Buffer, Span),
        /// the optimizer's state buffers, in the order [`OptimizerUpdate`]'s config documents
        state: Vec<(&'a mut dyn Buffer, Span)>,
    },
}

impl FusedOp<'_> {
    /// The op's name (PyTorch's where it has one), for errors and the profiler.
    pub fn name(&self) -> &'static str {
        match self {
            FusedOp::Softmax { log: false, .. } => "softmax",
            FusedOp::Softmax { log: true, .. } => "log_softmax",
            FusedOp::LayerNorm { .. } => "layer_norm",
            FusedOp::LayerNormBackward { .. } => "layer_norm_backward",
            FusedOp::GeluBackward { .. } => "gelu_backward",
            FusedOp::CrossEntropy { .. } => "cross_entropy",
            FusedOp::CrossEntropyBackward { .. } => "cross_entropy_backward",
            FusedOp::ThresholdBackward { .. } => "threshold_backward",
            FusedOp::Attention { .. } => "scaled_dot_product_attention",
            FusedOp::AttentionBackward { .. } => "scaled_dot_product_attention_backward",
            FusedOp::MaxPool2d { .. } => "max_pool2d",
            FusedOp::MaxPool2dBackward { .. } => "max_pool2d_backward",
            FusedOp::Im2col { .. } => "im2col",
            FusedOp::Col2im { .. } => "col2im",
            FusedOp::Conv2d { .. } => "conv2d",
            FusedOp::Conv2dBackward { .. } => "conv2d_backward",
            FusedOp::LstmSequence { .. } => "lstm_sequence",
            FusedOp::LstmSequenceBackward { .. } => "lstm_sequence_backward",
            FusedOp::OptimizerStep { update, .. } => update.name(),
        }
    }

    /// The dims of the op's main input (its layout's shape, or the parameter's length
    /// for an optimizer step), for the profiler.
    pub fn input_dims(&self) -> Vec<usize> {
        match self {
            FusedOp::Softmax { layout, .. }
            | FusedOp::LayerNorm { layout, .. }
            | FusedOp::LayerNormBackward { layout, .. }
            | FusedOp::GeluBackward { layout, .. }
            | FusedOp::ThresholdBackward { layout, .. }
            | FusedOp::CrossEntropy { layout, .. }
            | FusedOp::CrossEntropyBackward { layout, .. }
            | FusedOp::MaxPool2d { layout, .. }
            | FusedOp::MaxPool2dBackward { layout, .. }
            | FusedOp::Im2col { layout, .. }
            | FusedOp::Col2im { layout, .. } => layout.dims().to_vec(),
            FusedOp::Attention { qkv, .. } => qkv[0].1.dims().to_vec(),
            FusedOp::Conv2d { x, .. } | FusedOp::Conv2dBackward { x, .. } => x.1.dims().to_vec(),
            FusedOp::AttentionBackward { tensors, .. } => tensors[0].1.dims().to_vec(),
            FusedOp::LstmSequence { inputs, .. } => inputs[0].1.dims().to_vec(),
            FusedOp::LstmSequenceBackward { tensors, .. } => tensors[3].1.dims().to_vec(),
            FusedOp::OptimizerStep { param, .. } => vec![param.1.len],
        }
    }
}

/// A point in a device's queue of work (a CUDA event), for timing queued ops.
pub trait DeviceEvent: Send + Sync + Debug {
    /// Nanoseconds of device time from `start` (an earlier event of the same device) to
    /// `self`; waits for both to complete.
    fn elapsed_ns_since(&self, start: &dyn DeviceEvent) -> Result<u64>;
    /// For downcasting to the concrete event type.
    fn as_any(&self) -> &dyn Any;
}

/// A contiguous run of a buffer: `len` elements from element `offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// First element.
    pub offset: usize,
    /// Number of elements.
    pub len: usize,
}

/// The primitives a device implements. Object-safe: a device is an `Arc<dyn Backend>`.
pub trait Backend: Send + Sync + Debug {
    /// Where this backend lives.
    fn location(&self) -> DeviceLocation;

    /// A contiguous buffer of `len` zeros.
    fn zeros(&self, dtype: DType, len: usize) -> Result<OwnedBuffer>;

    /// Copies host data into a new buffer on this device.
    fn upload(&self, data: HostBuffer) -> Result<OwnedBuffer>;

    /// Copies the view `(buf, layout)` to the host, contiguous.
    fn download(&self, buf: &dyn Buffer, layout: &Layout) -> Result<HostBuffer>;

    /// Copies the view `src` into the view `dst` (same dtype and shape; `dst` is not
    /// aliased by `src`, the tensor layer copies first when it would be).
    fn copy_strided(&self, src: &dyn Buffer, src_l: &Layout, dst: &mut dyn Buffer, dst_l: &Layout) -> Result<()>;

    /// Writes `value` into every element of the view `dst`.
    fn fill(&self, dst: &mut dyn Buffer, dst_l: &Layout, value: Scalar) -> Result<()>;

    /// Converts the view to `dtype`, contiguous.
    fn cast(&self, src: &dyn Buffer, l: &Layout, dtype: DType) -> Result<OwnedBuffer>;

    /// Applies a unary op to the view, contiguous output.
    fn unary(&self, op: UnaryOp, src: &dyn Buffer, l: &Layout) -> Result<OwnedBuffer>;

    /// Applies a binary op; both layouts have the output's shape (broadcast dims
    /// have stride 0) and the same dtype. Contiguous output.
    fn binary(
        &self,
        op: BinaryOp,
        lhs: &dyn Buffer,
        lhs_layout: &Layout,
        rhs: &dyn Buffer,
        rhs_layout: &Layout,
    ) -> Result<OwnedBuffer>;

    /// `dst = dst op rhs` in place, `rhs_layout` already broadcast to `dst_l`'s shape.
    fn binary_inplace(
        &self,
        op: BinaryOp,
        dst: &mut dyn Buffer,
        dst_l: &Layout,
        rhs: &dyn Buffer,
        rhs_layout: &Layout,
    ) -> Result<()>;

    /// `cond ? a : b`; all three layouts have the output's shape, `cond` is Bool.
    fn where_cond(
        &self,
        cond: &dyn Buffer,
        cl: &Layout,
        a: &dyn Buffer,
        al: &Layout,
        b: &dyn Buffer,
        bl: &Layout,
    ) -> Result<OwnedBuffer>;

    /// Reduces over `dims` (sorted, unique; `ArgMax`/`ArgMin` get exactly one).
    /// The output is contiguous with the input's shape where reduced dims have size 1.
    fn reduce(&self, op: ReduceOp, src: &dyn Buffer, l: &Layout, dims: &[usize]) -> Result<OwnedBuffer>;

    /// Cumulative op along `dim`, contiguous output of the same shape.
    fn scan(&self, op: ScanOp, src: &dyn Buffer, l: &Layout, dim: usize) -> Result<OwnedBuffer>;

    /// Batched matrix product: `lhs` is `[b, m, k]`, `rhs` is `[b, k, n]` (any strides,
    /// batch stride may be 0); the output is a contiguous `[b, m, n]`.
    fn matmul(
        &self,
        lhs: &dyn Buffer,
        lhs_layout: &Layout,
        rhs: &dyn Buffer,
        rhs_layout: &Layout,
    ) -> Result<OwnedBuffer>;

    /// `out[i][j][k] = src[i][index[i][j][k]][k]` for `dim = 1` and likewise for other
    /// dims: the output has `index`'s shape. Indices are I64, already checked in range.
    fn gather(
        &self,
        src: &dyn Buffer,
        src_layout: &Layout,
        index: &dyn Buffer,
        index_layout: &Layout,
        dim: usize,
    ) -> Result<OwnedBuffer>;

    /// In place: `dst[index[i][j]][j] = src[i][j]` (or `+=` when `accumulate`) for
    /// `dim = 0`, likewise for other dims. `index` and `src` share a shape.
    #[allow(clippy::too_many_arguments)]
    fn scatter(
        &self,
        dst: &mut dyn Buffer,
        dl: &Layout,
        index: &dyn Buffer,
        index_layout: &Layout,
        src: &dyn Buffer,
        src_layout: &Layout,
        dim: usize,
        accumulate: bool,
    ) -> Result<()>;

    /// Sorts along `dim` (stable); returns `(values, indices as I64)`, contiguous.
    fn sort(&self, src: &dyn Buffer, l: &Layout, dim: usize, descending: bool) -> Result<(OwnedBuffer, OwnedBuffer)>;

    /// A fused fast path ([`FusedOp`]); `None` means "not here: use the composite".
    /// Outputs come back in the order the op's variant lists (none for in-place ops).
    fn fused(&self, _op: FusedOp<'_>) -> Option<Result<Vec<OwnedBuffer>>> {
        None
    }

    /// Records a timing event in the device's queue, for the profiler. `None` on
    /// devices that run ops synchronously (the CPU), whose wall time is the op's time.
    fn record_event(&self) -> Option<Result<Box<dyn DeviceEvent>>> {
        None
    }

    /// Waits for queued work to finish (a no-op on the CPU).
    fn synchronize(&self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod op_code_tests {
    use super::*;

    #[test]
    fn codes_are_positions_in_the_declaration_and_name_their_c_constant() {
        assert_eq!(UnaryOp::Neg.code(), 0);
        assert_eq!(UnaryOp::CODE_NAMES[UnaryOp::LeakyRelu(0.1).code() as usize], "U_LeakyRelu");
        assert_eq!(UnaryOp::CODE_NAMES[UnaryOp::Softplus { beta: 1.0, threshold: 20.0 }.code() as usize], "U_Softplus");
        assert_eq!(BinaryOp::CODE_NAMES[BinaryOp::LogicalXor.code() as usize], "B_LogicalXor");
        assert_eq!(ReduceOp::CODE_NAMES[ReduceOp::Any.code() as usize], "R_Any");
        assert_eq!(ScanOp::CumProd.code(), 1);
        assert_eq!(c_constant("U_LeakyRelu"), "U_LEAKY_RELU");
        assert_eq!(c_constant("U_Log1p"), "U_LOG1P");
        assert_eq!(c_constant("B_Atan2"), "B_ATAN2");
    }

    #[test]
    fn the_committed_kernel_header_is_generated_from_these_enums() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../kernels/ops.cuh");
        let committed = std::fs::read_to_string(path).expect("kernels/ops.cuh is in the repository");
        assert!(
            committed == kernel_op_codes_header(),
            "kernels/ops.cuh is stale: run `cargo xtask ptx` (it regenerates the header and the PTX)"
        );
        assert!(committed.contains("    U_SIGMOID = 12,\n") && committed.contains("    R_ANY = 7,\n"));
    }
}
