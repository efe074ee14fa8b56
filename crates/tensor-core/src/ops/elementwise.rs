//! Elementwise ops on tensors: NumPy broadcasting, PyTorch type promotion, scalar
//! forms, comparisons, `where`, casts and the `+ - * /` operators.

use crate::backend::{BinaryOp, UnaryOp};
use crate::shape::{broadcast_shapes, same_dims};
use crate::{DType, Error, Layout, Result, Scalar, Tensor};

macro_rules! unary_fns {
    ($($(#[$m:meta])* $name:ident => $op:expr;)*) => {
        $(
            $(#[$m])*
            pub fn $name(&self) -> Result<Tensor> {
                self.unary($op)
            }
        )*
    };
}

macro_rules! binary_fns {
    ($($(#[$m:meta])* $name:ident, $sname:ident => $op:expr;)*) => {
        $(
            $(#[$m])*
            pub fn $name(&self, other: &Tensor) -> Result<Tensor> {
                self.binary($op, other)
            }
            #[doc = concat!("[`Tensor::", stringify!($name), "`] with a scalar right operand.")]
            pub fn $sname(&self, other: impl Into<Scalar>) -> Result<Tensor> {
                self.binary_scalar($op, other.into())
            }
        )*
    };
}

impl Tensor {
    /// Converts to `dtype` (a copy; returns `self` when the dtype already matches).
    pub fn to_dtype(&self, dtype: DType) -> Result<Tensor> {
        if self.dtype() == dtype {
            return Ok(self.clone());
        }
        let shape = self.shape().clone();
        self.run1(shape, |be, b, l| be.cast(b, l, dtype))
    }

    /// Alias of [`Tensor::to_dtype`].
    pub fn cast(&self, dtype: DType) -> Result<Tensor> {
        self.to_dtype(dtype)
    }

    /// Applies a unary op (integers are cast to f32 for float-only ops).
    ///
    /// On integer tensors the scalar parameters of `AddScalar`/`MulScalar` must be
    /// integers that fit the dtype, and `Clamp` bounds must not be NaN or lie wholly
    /// outside the dtype's range; anything else is an error rather than a wrapped or
    /// saturated number.
    pub fn unary(&self, op: UnaryOp) -> Result<Tensor> {
        let x = if op.float_only() && !self.dtype().is_float() { self.to_dtype(DType::F32)? } else { self.clone() };
        if self.dtype() == DType::Bool && !op.returns_bool() && !op.float_only() {
            return Err(Error::Unsupported { op: op.name(), dtype: DType::Bool, device: self.device().to_string() });
        }
        if x.dtype().is_int() {
            check_int_params(op, x.dtype())?;
        }
        let shape = x.shape().clone();
        x.run1(shape, |be, b, l| be.unary(op, b, l))
    }

    /// PyTorch's result type of two tensor operands: like [`DType::promote`], except
    /// that a 0-dim tensor facing a dimensioned one only decides the dtype when its
    /// category (bool < integer < float) is higher, so `f16_tensor * f32_scalar_tensor`
    /// stays f16 and `i64_tensor + f64_scalar_tensor` is f64.
    pub fn result_type(a: &Tensor, b: &Tensor) -> DType {
        let (da, db) = (a.dtype(), b.dtype());
        match (a.rank() == 0, b.rank() == 0) {
            (true, false) if category(da) <= category(db) => db,
            (false, true) if category(db) <= category(da) => da,
            _ => DType::promote(da, db),
        }
    }

    /// The dtype a binary op computes in, and the dtype of its result.
    fn binary_dtypes(op: BinaryOp, promoted: DType) -> (DType, DType) {
        let mut c = promoted;
        // True division and float-only ops promote integers to the default float.
        if matches!(op, BinaryOp::Div | BinaryOp::Atan2) && !c.is_float() {
            c = DType::F32;
        }
        let out = if op.returns_bool() { DType::Bool } else { c };
        (c, out)
    }

    /// Applies a binary op with broadcasting and type promotion.
    pub fn binary(&self, op: BinaryOp, other: &Tensor) -> Result<Tensor> {
        self.same_device(op.name(), other)?;
        let same_shape = same_dims(self.dims(), other.dims());
        let shape =
            if same_shape { self.shape().clone() } else { broadcast_shapes(op.name(), self.dims(), other.dims())? };
        let (c, _) = Tensor::binary_dtypes(op, Tensor::result_type(self, other));
        // On bool, `+` is `or` and `*` is `and` (like PyTorch); `-` and the rest fail.
        let bool_ok = matches!(op, BinaryOp::Maximum | BinaryOp::Minimum | BinaryOp::Add | BinaryOp::Mul);
        if c == DType::Bool && !op.returns_bool() && !bool_ok {
            return Err(Error::Unsupported { op: op.name(), dtype: DType::Bool, device: self.device().to_string() });
        }
        if self.dtype() == c && other.dtype() == c && same_shape {
            // Same shape and dtype: nothing to cast or broadcast.
            return self.run2(other, shape, |be, x, lx, y, ly| be.binary(op, x, lx, y, ly));
        }
        let a = self.to_dtype(c)?;
        let b = other.to_dtype(c)?;
        let la = a.layout().broadcast_to(&shape)?;
        let lb = b.layout().broadcast_to(&shape)?;
        let out_shape = shape.clone();
        a.run2(&b, out_shape, |be, x, _, y, _| be.binary(op, x, &la, y, &lb))
    }

    /// Applies a binary op with a scalar right operand (promotion treats the scalar
    /// like PyTorch treats a Python number: it never widens the tensor's dtype).
    ///
    /// On integer dtypes the scalar must fit the dtype, and a zero divisor
    /// (`remainder`) or a negative exponent (`pow`) is an error, like PyTorch.
    pub fn binary_scalar(&self, op: BinaryOp, s: Scalar) -> Result<Tensor> {
        let mut c = s.promote_with(self.dtype());
        if matches!(op, BinaryOp::Div | BinaryOp::Atan2) && !c.is_float() {
            c = DType::F32;
        }
        if c.is_int() {
            // Checked here as well as in the CPU kernel, so every backend reports it.
            if matches!(op, BinaryOp::Div | BinaryOp::Remainder) && s.to_i64() == 0 {
                return Err(int_division_by_zero(op));
            }
            if op == BinaryOp::Pow && s.to_i64() < 0 {
                return Err(int_negative_power());
            }
        }
        let x = self.to_dtype(c)?;
        // Float fast paths that need no broadcast operand. Integers take the general
        // path so that wrapping (u8 - 2) and i64 scalars beyond 2^53 stay exact;
        // division keeps a true division (not a multiply by the reciprocal).
        if c.is_float() {
            let as_f = s.to_f64();
            match op {
                BinaryOp::Add => return x.unary(UnaryOp::AddScalar(as_f)),
                BinaryOp::Sub => return x.unary(UnaryOp::AddScalar(-as_f)),
                BinaryOp::Mul => return x.unary(UnaryOp::MulScalar(as_f)),
                BinaryOp::Pow => return x.unary(UnaryOp::PowScalar(as_f)),
                _ => {}
            }
        }
        let t = Tensor::scalar_operand(op.name(), s, c, self.device())?;
        x.binary(op, &t)
    }

    binary_fns! {
        /// `self + other` with broadcasting.
        add, add_scalar => BinaryOp::Add;
        /// `self - other` with broadcasting.
        sub, sub_scalar => BinaryOp::Sub;
        /// `self * other` with broadcasting.
        mul, mul_scalar => BinaryOp::Mul;
        /// `self / other` (true division: integers give f32).
        div, div_scalar => BinaryOp::Div;
        /// `self ^ other`.
        pow, pow_scalar => BinaryOp::Pow;
        /// Elementwise maximum (NaN propagates).
        maximum, maximum_scalar => BinaryOp::Maximum;
        /// Elementwise minimum (NaN propagates).
        minimum, minimum_scalar => BinaryOp::Minimum;
        /// Python-style remainder (result has the divisor's sign).
        remainder, remainder_scalar => BinaryOp::Remainder;
        /// `atan2(self, other)`.
        atan2, atan2_scalar => BinaryOp::Atan2;
        /// `self == other`, as Bool.
        eq, eq_scalar => BinaryOp::Eq;
        /// `self != other`, as Bool.
        ne, ne_scalar => BinaryOp::Ne;
        /// `self < other`, as Bool.
        lt, lt_scalar => BinaryOp::Lt;
        /// `self <= other`, as Bool.
        le, le_scalar => BinaryOp::Le;
        /// `self > other`, as Bool.
        gt, gt_scalar => BinaryOp::Gt;
        /// `self >= other`, as Bool.
        ge, ge_scalar => BinaryOp::Ge;
        /// Logical and (nonzero is true), as Bool.
        logical_and, logical_and_scalar => BinaryOp::LogicalAnd;
        /// Logical or, as Bool.
        logical_or, logical_or_scalar => BinaryOp::LogicalOr;
        /// Logical xor, as Bool.
        logical_xor, logical_xor_scalar => BinaryOp::LogicalXor;
    }

    /// `other - self` for a scalar `other` (PyTorch's `rsub`).
    pub fn rsub_scalar(&self, other: impl Into<Scalar>) -> Result<Tensor> {
        let s = other.into();
        Tensor::scalar_operand("rsub", s, s.promote_with(self.dtype()), self.device())?.sub(self)
    }

    /// `other / self` for a scalar `other`.
    pub fn rdiv_scalar(&self, other: impl Into<Scalar>) -> Result<Tensor> {
        let s = other.into();
        Tensor::scalar_operand("div", s, s.promote_with(self.dtype()), self.device())?.div(self)
    }

    unary_fns! {
        /// `-x`
        neg => UnaryOp::Neg;
        /// `|x|`
        abs => UnaryOp::Abs;
        /// `e^x`
        exp => UnaryOp::Exp;
        /// Natural logarithm.
        log => UnaryOp::Log;
        /// `log(1 + x)`, accurate near 0.
        log1p => UnaryOp::Log1p;
        /// `e^x - 1`, accurate near 0.
        expm1 => UnaryOp::Expm1;
        /// Square root.
        sqrt => UnaryOp::Sqrt;
        /// `1 / sqrt(x)`.
        rsqrt => UnaryOp::Rsqrt;
        /// Sine.
        sin => UnaryOp::Sin;
        /// Cosine.
        cos => UnaryOp::Cos;
        /// Tangent.
        tan => UnaryOp::Tan;
        /// Hyperbolic tangent.
        tanh => UnaryOp::Tanh;
        /// Logistic sigmoid.
        sigmoid => UnaryOp::Sigmoid;
        /// `max(x, 0)`.
        relu => UnaryOp::Relu;
        /// GELU with the exact erf (PyTorch's default `approximate='none'`).
        gelu => UnaryOp::Gelu;
        /// GELU with the tanh approximation (`approximate='tanh'`).
        gelu_tanh => UnaryOp::GeluTanh;
        /// `x * sigmoid(x)` (a.k.a. swish).
        silu => UnaryOp::Silu;
        /// `log(sigmoid(x))` without overflow for large `|x|` (PyTorch's `F.logsigmoid`).
        log_sigmoid => UnaryOp::LogSigmoid;
        /// `x * tanh(softplus(x))` (Mish, Misra 2019).
        mish => UnaryOp::Mish;
        /// -1, 0 or 1.
        sign => UnaryOp::Sign;
        /// Round toward -inf.
        floor => UnaryOp::Floor;
        /// Round toward +inf.
        ceil => UnaryOp::Ceil;
        /// Round half to even (like `torch.round`).
        round => UnaryOp::Round;
        /// Round toward zero.
        trunc => UnaryOp::Trunc;
        /// `1 / x`.
        reciprocal => UnaryOp::Recip;
        /// `x * x`.
        square => UnaryOp::Square;
        /// The error function.
        erf => UnaryOp::Erf;
        /// NaN test, as Bool.
        isnan => UnaryOp::IsNan;
        /// Infinity test, as Bool.
        isinf => UnaryOp::IsInf;
        /// Logical not (zero is false), as Bool.
        logical_not => UnaryOp::LogicalNot;
    }

    /// `x` if positive, else `slope * x` (PyTorch's default slope is 0.01).
    pub fn leaky_relu(&self, slope: f64) -> Result<Tensor> {
        self.unary(UnaryOp::LeakyRelu(slope))
    }

    /// `x` if positive, else `alpha * (e^x - 1)`.
    pub fn elu(&self, alpha: f64) -> Result<Tensor> {
        self.unary(UnaryOp::Elu(alpha))
    }

    /// `log(1 + e^(beta x)) / beta`, linear where `beta x > threshold`
    /// (PyTorch's defaults are beta 1, threshold 20).
    pub fn softplus(&self, beta: f64, threshold: f64) -> Result<Tensor> {
        self.unary(UnaryOp::Softplus { beta, threshold })
    }

    /// Clamps to `[min, max]`; either bound may be `None`. On an integer tensor a NaN
    /// bound, a `min` above the dtype's largest value or a `max` below its smallest
    /// is an error (the result could not be stored).
    pub fn clamp(&self, min: Option<f64>, max: Option<f64>) -> Result<Tensor> {
        if min.is_none() && max.is_none() {
            return Err(Error::arg("clamp", "at least one of 'min' or 'max' must not be None"));
        }
        self.unary(UnaryOp::Clamp(min, max))
    }

    /// `true` where finite.
    pub fn isfinite(&self) -> Result<Tensor> {
        self.isnan()?.logical_or(&self.isinf()?)?.logical_not()
    }

    /// `cond ? self : other`, all three broadcast together (PyTorch's
    /// `torch.where(cond, self, other)`).
    pub fn where_cond(cond: &Tensor, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        a.same_device("where", b)?;
        a.same_device("where", cond)?;
        if cond.dtype() != DType::Bool {
            return Err(Error::DTypeMismatch { op: "where", expected: DType::Bool, got: cond.dtype() });
        }
        let s = broadcast_shapes("where", a.dims(), b.dims())?;
        let s = broadcast_shapes("where", cond.dims(), &s)?;
        let c = Tensor::result_type(a, b);
        let (a, b) = (a.to_dtype(c)?, b.to_dtype(c)?);
        let lc = cond.layout().broadcast_to(&s)?;
        let la = a.layout().broadcast_to(&s)?;
        let lb = b.layout().broadcast_to(&s)?;
        let [gc, ga, gb] = crate::device::lock_in_order([
            (&**cond.storage(), crate::device::Access::Read),
            (&**a.storage(), crate::device::Access::Read),
            (&**b.storage(), crate::device::Access::Read),
        ]);
        let out = a.device().backend().where_cond(&**gc, &lc, &**ga, &la, &**gb, &lb)?;
        Ok(Tensor::from_buffer(out, s, a.device()))
    }

    /// `mask ? value : self` (PyTorch's `masked_fill`), `mask` broadcast to `self`.
    pub fn masked_fill(&self, mask: &Tensor, value: impl Into<Scalar>) -> Result<Tensor> {
        if mask.dtype() != DType::Bool {
            return Err(Error::DTypeMismatch { op: "masked_fill", expected: DType::Bool, got: mask.dtype() });
        }
        let s = broadcast_shapes("masked_fill", mask.dims(), self.dims())?;
        if s.dims() != self.dims() {
            return Err(Error::shape(
                "masked_fill",
                self.dims(),
                mask.dims(),
                "mask must broadcast to the tensor's shape",
            ));
        }
        let value = value.into();
        value.check_fits("masked_fill", self.dtype())?;
        let v = Tensor::fill_unchecked(crate::Shape::new(&[]), value, self.dtype(), self.device())?;
        Tensor::where_cond(mask, &v, self)
    }

    /// True when shapes match and all elements are within `atol + rtol * |other|`
    /// (NaNs equal when `equal_nan`).
    pub fn allclose(&self, other: &Tensor, rtol: f64, atol: f64, equal_nan: bool) -> Result<bool> {
        if self.dims() != other.dims() {
            return Ok(false);
        }
        let a = self.to_vec_f64()?;
        let b = other.to_vec_f64()?;
        Ok(a.iter().zip(&b).all(|(x, y)| {
            if x.is_nan() || y.is_nan() {
                return equal_nan && x.is_nan() && y.is_nan();
            }
            x == y || (x - y).abs() <= atol + rtol * y.abs()
        }))
    }

    /// True when shapes and every element match exactly.
    pub fn equal(&self, other: &Tensor) -> Result<bool> {
        Ok(self.dims() == other.dims() && self.dtype() == other.dtype() && self.to_vec_f64()? == other.to_vec_f64()?)
    }

    /// The layout of `self` broadcast to `shape`, for callers that drive backends.
    pub fn broadcast_layout(&self, shape: &[usize]) -> Result<Layout> {
        self.layout().broadcast_to(shape)
    }
}

/// PyTorch's error for an integer division or remainder by zero.
pub(crate) fn int_division_by_zero(op: BinaryOp) -> Error {
    Error::arg(op.name(), "ZeroDivisionError: integer division or remainder by zero")
}

/// PyTorch's error for an integer raised to a negative integer power.
pub(crate) fn int_negative_power() -> Error {
    Error::arg("pow", "Integers to negative integer powers are not allowed.")
}

/// The largest finite value of a float dtype.
fn float_max(dtype: DType) -> f64 {
    match dtype {
        DType::F16 => half::f16::MAX.to_f64(),
        DType::BF16 => half::bf16::MAX.to_f64(),
        DType::F32 => f32::MAX as f64,
        _ => f64::MAX,
    }
}

/// `[lowest, highest]` of an integer dtype as f64 (exact: both are small or powers
/// of two), with the upper end exclusive for I64, whose maximum is not an f64.
fn int_range(dtype: DType) -> (f64, f64, bool) {
    match dtype {
        DType::U8 => (0.0, 255.0, true),
        DType::I32 => (i32::MIN as f64, i32::MAX as f64, true),
        _ => (-9_223_372_036_854_775_808.0, 9_223_372_036_854_775_808.0, false),
    }
}

impl Scalar {
    /// Checks that this value can be stored in an element of `dtype` without
    /// overflow, PyTorch's checked scalar conversion (used by `full`, `masked_fill`,
    /// `pad`, scalar operands of integer arithmetic, ...).
    ///
    /// Integer dtypes refuse NaN, infinities and values outside their range (a float
    /// in range is truncated toward zero; uint8 also takes integers down to -255,
    /// which wrap like PyTorch's `a - b` on uint8). Float dtypes refuse finite values
    /// beyond their largest finite value (NaN and infinities are kept). Bool takes
    /// anything (nonzero is true). The error names `op`, the value and the dtype.
    ///
    /// ```
    /// use tensor_core::{DType, Scalar};
    /// assert!(Scalar::F64(2.9).check_fits("full", DType::I32).is_ok());
    /// assert!(Scalar::F64(f64::NAN).check_fits("full", DType::I64).is_err());
    /// assert!(Scalar::I64(1 << 40).check_fits("full", DType::I32).is_err());
    /// assert!(Scalar::F64(1e5).check_fits("full", DType::F16).is_err());
    /// ```
    pub fn check_fits(self, op: &'static str, dtype: DType) -> Result<()> {
        let ok = match (self, dtype) {
            (Scalar::Bool(_), _) | (_, DType::Bool | DType::F64) => true,
            (Scalar::I64(_), DType::I64) => true,
            (Scalar::I64(v), DType::I32) => i32::try_from(v).is_ok(),
            (Scalar::I64(v), DType::U8) => (-255..=255).contains(&v),
            (Scalar::I64(v), d) if d.is_float() => (v as f64).abs() <= float_max(d),
            (Scalar::F64(v), d) if d.is_float() => !v.is_finite() || v.abs() <= float_max(d),
            (Scalar::F64(v), d) => {
                let (lo, hi, hi_inclusive) = int_range(d);
                v >= lo && (v < hi || (hi_inclusive && v == hi))
            }
            (Scalar::I64(_), _) => true,
        };
        if ok {
            Ok(())
        } else {
            Err(Error::arg(op, format!("value {self} cannot be converted to type {dtype} without overflow")))
        }
    }
}

/// The integer-tensor checks of [`Tensor::unary`]'s scalar parameters.
fn check_int_params(op: UnaryOp, dtype: DType) -> Result<()> {
    let name = op.name();
    match op {
        UnaryOp::AddScalar(s) | UnaryOp::MulScalar(s) => {
            if s.fract() != 0.0 {
                return Err(Error::arg(name, format!("scalar {s} is not an integer, so it can't apply to {dtype}")));
            }
            Scalar::F64(s).check_fits(name, dtype)
        }
        UnaryOp::Clamp(lo, hi) => {
            let (min, max, _) = int_range(dtype);
            let bad = |v: f64, what: &str| {
                Err(Error::arg(name, format!("{what} {v} cannot be converted to type {dtype} without overflow")))
            };
            match (lo, hi) {
                (Some(v), _) if v.is_nan() || v > max => bad(v, "min"),
                (_, Some(v)) if v.is_nan() || v < min => bad(v, "max"),
                _ => Ok(()),
            }
        }
        _ => Ok(()),
    }
}

/// Type-promotion category: 0 bool, 1 integer, 2 float.
fn category(d: DType) -> u8 {
    if d == DType::Bool {
        0
    } else if d.is_float() {
        2
    } else {
        1
    }
}

macro_rules! impl_op {
    ($trait:ident, $method:ident, $fn:ident, $sfn:ident) => {
        impl std::ops::$trait<&Tensor> for &Tensor {
            type Output = Result<Tensor>;
            #[track_caller]
            fn $method(self, rhs: &Tensor) -> Result<Tensor> {
                Tensor::$fn(&self, rhs)
            }
        }
        impl std::ops::$trait<Tensor> for Tensor {
            type Output = Result<Tensor>;
            #[track_caller]
            fn $method(self, rhs: Tensor) -> Result<Tensor> {
                Tensor::$fn(&self, &rhs)
            }
        }
        impl std::ops::$trait<&Tensor> for Tensor {
            type Output = Result<Tensor>;
            #[track_caller]
            fn $method(self, rhs: &Tensor) -> Result<Tensor> {
                Tensor::$fn(&self, rhs)
            }
        }
        impl std::ops::$trait<f64> for &Tensor {
            type Output = Result<Tensor>;
            #[track_caller]
            fn $method(self, rhs: f64) -> Result<Tensor> {
                Tensor::$sfn(&self, rhs)
            }
        }
        impl std::ops::$trait<f64> for Tensor {
            type Output = Result<Tensor>;
            #[track_caller]
            fn $method(self, rhs: f64) -> Result<Tensor> {
                Tensor::$sfn(&self, rhs)
            }
        }
        impl std::ops::$trait<&Tensor> for f64 {
            type Output = Result<Tensor>;
            #[track_caller]
            fn $method(self, rhs: &Tensor) -> Result<Tensor> {
                Tensor::scalar_operand(stringify!($fn), Scalar::F64(self), rhs.dtype().to_float(), rhs.device())?
                    .$fn(rhs)
            }
        }
    };
}
impl_op!(Add, add, add, add_scalar);
impl_op!(Sub, sub, sub, sub_scalar);
impl_op!(Mul, mul, mul, mul_scalar);
impl_op!(Div, div, div, div_scalar);

impl std::ops::Neg for &Tensor {
    type Output = Result<Tensor>;
    fn neg(self) -> Result<Tensor> {
        Tensor::neg(self)
    }
}
impl std::ops::Neg for Tensor {
    type Output = Result<Tensor>;
    fn neg(self) -> Result<Tensor> {
        Tensor::neg(&self)
    }
}
