//! Element types: the runtime [`DType`] tag, the [`Elem`] trait that ties a Rust type to
//! its tag, and [`Scalar`], a dtype-erased single value.

use half::{bf16, f16};
use std::fmt;

use crate::cpu::HostBuffer;

/// The element type of a tensor, known at run time (like `torch.dtype`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    /// Boolean (one byte per element).
    Bool,
    /// Unsigned 8-bit integer.
    U8,
    /// Signed 32-bit integer.
    I32,
    /// Signed 64-bit integer (the dtype of indices).
    I64,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    BF16,
    /// IEEE single precision (the default float dtype).
    F32,
    /// IEEE double precision.
    F64,
}

/// Every dtype, in promotion order.
pub const ALL_DTYPES: [DType; 8] =
    [DType::Bool, DType::U8, DType::I32, DType::I64, DType::F16, DType::BF16, DType::F32, DType::F64];

impl DType {
    /// Size of one element in bytes.
    pub fn size_in_bytes(self) -> usize {
        match self {
            DType::Bool | DType::U8 => 1,
            DType::F16 | DType::BF16 => 2,
            DType::I32 | DType::F32 => 4,
            DType::I64 | DType::F64 => 8,
        }
    }

    /// True for the floating-point dtypes.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F16 | DType::BF16 | DType::F32 | DType::F64)
    }

    /// True for the integer dtypes (not Bool).
    pub fn is_int(self) -> bool {
        matches!(self, DType::U8 | DType::I32 | DType::I64)
    }

    /// Short lower-case name as PyTorch prints it (`float32`, `int64`, ...).
    pub fn name(self) -> &'static str {
        match self {
            DType::Bool => "bool",
            DType::U8 => "uint8",
            DType::I32 => "int32",
            DType::I64 => "int64",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::F32 => "float32",
            DType::F64 => "float64",
        }
    }

    /// The safetensors / NumPy style short code (`F32`, `I64`, `BOOL`, ...).
    pub fn code(self) -> &'static str {
        match self {
            DType::Bool => "BOOL",
            DType::U8 => "U8",
            DType::I32 => "I32",
            DType::I64 => "I64",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
            DType::F32 => "F32",
            DType::F64 => "F64",
        }
    }

    /// Category used by type promotion: 0 bool, 1 integer, 2 float.
    fn category(self) -> u8 {
        if self == DType::Bool {
            0
        } else if self.is_int() {
            1
        } else {
            2
        }
    }

    /// PyTorch's result type of a binary op between two tensors of these dtypes.
    ///
    /// Floats beat integers beat bool; within a category the wider type wins
    /// (`f16` with `bf16` gives `f32`, like PyTorch).
    pub fn promote(a: DType, b: DType) -> DType {
        if a == b {
            return a;
        }
        let (ca, cb) = (a.category(), b.category());
        if ca != cb {
            return if ca > cb { a } else { b };
        }
        match (a, b) {
            (DType::F16, DType::BF16) | (DType::BF16, DType::F16) => DType::F32,
            _ => a.max(b),
        }
    }

    /// The dtype a float-only op computes in for an input of this dtype
    /// (integers and bool go to the default float, `f32`).
    pub fn to_float(self) -> DType {
        if self.is_float() {
            self
        } else {
            DType::F32
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A single value of any dtype, used for fills, scalar operands and `item()`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Scalar {
    /// A floating-point value.
    F64(f64),
    /// An integer value.
    I64(i64),
    /// A boolean value.
    Bool(bool),
}

impl Scalar {
    /// The value as f64 (true is 1.0).
    pub fn to_f64(self) -> f64 {
        match self {
            Scalar::F64(v) => v,
            Scalar::I64(v) => v as f64,
            Scalar::Bool(v) => v as u8 as f64,
        }
    }

    /// The value as i64 (floats truncate toward zero).
    pub fn to_i64(self) -> i64 {
        match self {
            Scalar::F64(v) => v as i64,
            Scalar::I64(v) => v,
            Scalar::Bool(v) => v as i64,
        }
    }

    /// The dtype a tensor made from this scalar alone gets (f32 for floats, i64 for ints).
    pub fn default_dtype(self) -> DType {
        match self {
            Scalar::F64(_) => DType::F32,
            Scalar::I64(_) => DType::I64,
            Scalar::Bool(_) => DType::Bool,
        }
    }

    /// PyTorch's promotion of a tensor dtype with a Python scalar: the scalar only
    /// raises the category (int tensor + 2.5 -> f32), never the width.
    pub fn promote_with(self, t: DType) -> DType {
        let sd = self.default_dtype();
        if sd.category() > t.category() {
            sd
        } else {
            t
        }
    }
}

impl From<f64> for Scalar {
    fn from(v: f64) -> Self {
        Scalar::F64(v)
    }
}
impl From<f32> for Scalar {
    fn from(v: f32) -> Self {
        Scalar::F64(v as f64)
    }
}
impl From<i64> for Scalar {
    fn from(v: i64) -> Self {
        Scalar::I64(v)
    }
}
impl From<i32> for Scalar {
    fn from(v: i32) -> Self {
        Scalar::I64(v as i64)
    }
}
impl From<usize> for Scalar {
    fn from(v: usize) -> Self {
        Scalar::I64(v as i64)
    }
}
impl From<bool> for Scalar {
    fn from(v: bool) -> Self {
        Scalar::Bool(v)
    }
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::F64(v) => write!(f, "{v}"),
            Scalar::I64(v) => write!(f, "{v}"),
            Scalar::Bool(v) => write!(f, "{v}"),
        }
    }
}

/// Keeps [`Elem`] closed to the eight element types: kernels rely on every `Elem`
/// being a plain value type that is valid as all-zero bytes.
mod sealed {
    pub trait Sealed {}
}

/// A Rust type that can be a tensor element: one of `bool, u8, i32, i64, f16, bf16,
/// f32, f64` (the trait is sealed).
///
/// Conversions go through f64, which is exact for every supported type except i64
/// beyond 2^53 (integer kernels never round-trip through it).
pub trait Elem: sealed::Sealed + Copy + Send + Sync + PartialOrd + Default + fmt::Debug + 'static {
    /// The runtime tag of this type.
    const DTYPE: DType;
    /// Converts to f64.
    fn to_f64(self) -> f64;
    /// Converts from f64 (saturating/truncating like an `as` cast for integers).
    fn from_f64(v: f64) -> Self;
    /// Converts from a [`Scalar`], keeping integers exact.
    fn from_scalar(s: Scalar) -> Self {
        Self::from_f64(s.to_f64())
    }
    /// Converts to a [`Scalar`].
    fn to_scalar(self) -> Scalar;
    /// Wraps a vector of this type as a CPU buffer.
    fn wrap(v: Vec<Self>) -> HostBuffer;
    /// Borrows the vector inside a CPU buffer of this type.
    fn unwrap_ref(b: &HostBuffer) -> Option<&Vec<Self>>;
    /// Mutably borrows the vector inside a CPU buffer of this type.
    fn unwrap_mut(b: &mut HostBuffer) -> Option<&mut Vec<Self>>;
}

macro_rules! impl_elem {
    ($t:ty, $dt:ident, $to:expr, $from:expr, $toscalar:expr, $fromscalar:expr) => {
        impl sealed::Sealed for $t {}
        impl Elem for $t {
            const DTYPE: DType = DType::$dt;
            #[inline(always)]
            fn to_f64(self) -> f64 {
                let f: fn($t) -> f64 = $to;
                f(self)
            }
            #[inline(always)]
            fn from_f64(v: f64) -> Self {
                let f: fn(f64) -> $t = $from;
                f(v)
            }
            #[inline(always)]
            fn from_scalar(s: Scalar) -> Self {
                let f: fn(Scalar) -> $t = $fromscalar;
                f(s)
            }
            #[inline(always)]
            fn to_scalar(self) -> Scalar {
                let f: fn($t) -> Scalar = $toscalar;
                f(self)
            }
            fn wrap(v: Vec<Self>) -> HostBuffer {
                HostBuffer::$dt(v)
            }
            fn unwrap_ref(b: &HostBuffer) -> Option<&Vec<Self>> {
                match b {
                    HostBuffer::$dt(v) => Some(v),
                    _ => None,
                }
            }
            fn unwrap_mut(b: &mut HostBuffer) -> Option<&mut Vec<Self>> {
                match b {
                    HostBuffer::$dt(v) => Some(v),
                    _ => None,
                }
            }
        }
    };
}

impl_elem!(f32, F32, |x| x as f64, |v| v as f32, |x| Scalar::F64(x as f64), |s| s.to_f64() as f32);
impl_elem!(f64, F64, |x| x, |v| v, Scalar::F64, |s| s.to_f64());
impl_elem!(f16, F16, |x| x.to_f64(), f16::from_f64, |x| Scalar::F64(x.to_f64()), |s| f16::from_f64(s.to_f64()));
impl_elem!(bf16, BF16, |x| x.to_f64(), bf16::from_f64, |x| Scalar::F64(x.to_f64()), |s| bf16::from_f64(s.to_f64()));
impl_elem!(i64, I64, |x| x as f64, |v| v as i64, Scalar::I64, |s| s.to_i64());
impl_elem!(i32, I32, |x| x as f64, |v| v as i32, |x| Scalar::I64(x as i64), |s| s.to_i64() as i32);
impl_elem!(u8, U8, |x| x as f64, |v| v as u8, |x| Scalar::I64(x as i64), |s| s.to_i64() as u8);
impl_elem!(bool, Bool, |x| x as u8 as f64, |v| v != 0.0, Scalar::Bool, |s| match s {
    Scalar::Bool(b) => b,
    Scalar::I64(i) => i != 0,
    Scalar::F64(f) => f != 0.0,
});

/// The process-wide default float dtype, as an index into [`ALL_DTYPES`].
static DEFAULT_FLOAT: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(6);

/// The default floating point dtype (`F32` unless [`set_default_dtype`] changed it):
/// the dtype `nn` layers create their parameters in (PyTorch's
/// `torch.get_default_dtype()`).
pub fn default_dtype() -> DType {
    ALL_DTYPES[DEFAULT_FLOAT.load(std::sync::atomic::Ordering::Relaxed) as usize]
}

/// Sets the process-wide default floating point dtype (PyTorch's
/// `torch.set_default_dtype`) and returns the previous one; fails on a non-float dtype.
///
/// ```
/// use tensor_core::{default_dtype, set_default_dtype, DType};
///
/// assert_eq!(default_dtype(), DType::F32);
/// let before = set_default_dtype(DType::F64)?;
/// assert_eq!(default_dtype(), DType::F64);
/// set_default_dtype(before)?;
/// assert!(set_default_dtype(DType::I64).is_err());
/// # Ok::<(), tensor_core::Error>(())
/// ```
pub fn set_default_dtype(dtype: DType) -> crate::Result<DType> {
    if !dtype.is_float() {
        return Err(crate::Error::arg(
            "set_default_dtype",
            format!("only floating point dtypes can be the default, got {dtype}"),
        ));
    }
    let i = ALL_DTYPES.iter().position(|&d| d == dtype).expect("ALL_DTYPES lists every dtype");
    let old = DEFAULT_FLOAT.swap(i as u8, std::sync::atomic::Ordering::Relaxed);
    Ok(ALL_DTYPES[old as usize])
}
