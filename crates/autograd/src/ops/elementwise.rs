//! Elementwise ops (unary, binary with broadcasting, scalar forms, comparisons,
//! `where`, casts) and the `+ - * /` operators on `&Var`.

use std::f64::consts::PI;

use tensor_core::{DType, Result, Scalar, Tensor};

use crate::var::Var;

/// A float tensor of 0/1 from a Bool mask, in `dtype`.
fn mask_f(mask: &Tensor, dtype: DType) -> Result<Tensor> {
    mask.to_dtype(dtype)
}

macro_rules! unary_ops {
    ($($(#[$m:meta])* $name:ident => |$x:ident, $g:ident| $body:expr;)*) => {
        $(
            $(#[$m])*
            pub fn $name(&self) -> Result<Var> {
                let out = self.tensor().$name()?;
                Ok(self.record_unary(stringify!($name), out, |$x: &Var, $g: &Var| $body))
            }
        )*
    };
}

/// Unary ops whose derivative is a function of their output: the backward gets the
/// saved output `y` (not the input) and never runs the op again.
macro_rules! output_unary_ops {
    ($($(#[$m:meta])* $name:ident => |$y:ident, $g:ident| $body:expr;)*) => {
        $(
            $(#[$m])*
            pub fn $name(&self) -> Result<Var> {
                let out = self.tensor().$name()?;
                Ok(self.record_unary_saving_output(stringify!($name), out, |$y: &Var, $g: &Var| $body))
            }
        )*
    };
}

macro_rules! zero_grad_ops {
    ($($(#[$m:meta])* $name:ident;)*) => {
        $(
            $(#[$m])*
            pub fn $name(&self) -> Result<Var> {
                let out = self.tensor().$name()?;
                Ok(self.record_unary_grad_only(stringify!($name), out, |g: &Var| g.zeros_like()))
            }
        )*
    };
}

macro_rules! compare_ops {
    ($($(#[$m:meta])* $name:ident, $sname:ident;)*) => {
        $(
            $(#[$m])*
            pub fn $name(&self, other: &Var) -> Result<Var> {
                Ok(Var::from(self.tensor().$name(other.tensor())?))
            }
            #[doc = concat!("[`Var::", stringify!($name), "`] with a scalar (not differentiable).")]
            pub fn $sname(&self, other: impl Into<Scalar>) -> Result<Var> {
                Ok(Var::from(self.tensor().$sname(other)?))
            }
        )*
    };
}

impl Var {
    /// A constant of zeros like `self`.
    pub(crate) fn zeros_like(&self) -> Result<Var> {
        Ok(Var::from(self.tensor().zeros_like()?))
    }

    /// `self * t` for a constant tensor `t`.
    pub(crate) fn mul_t(&self, t: &Tensor) -> Result<Var> {
        self.mul(&Var::from(t.clone()))
    }

    output_unary_ops! {
        /// `e^x`.
        exp => |y, g| g.mul(y);
        /// `e^x - 1`.
        expm1 => |y, g| g.mul(&y.add_scalar(1.0)?);
        /// Square root.
        sqrt => |y, g| g.div(&y.mul_scalar(2.0)?);
        /// `1 / sqrt(x)` (derivative `-y^3 / 2`).
        rsqrt => |y, g| g.mul(&y.pow_scalar(3.0)?.mul_scalar(-0.5)?);
        /// Tangent (derivative `1 + y^2`).
        tan => |y, g| g.mul(&y.square()?.add_scalar(1.0)?);
        /// Hyperbolic tangent (derivative `1 - y^2`).
        tanh => |y, g| g.mul(&y.square()?.rsub_scalar(1.0)?);
        /// Logistic sigmoid (derivative `y (1 - y)`).
        sigmoid => |y, g| g.mul(&y.mul(&y.rsub_scalar(1.0)?)?);
        /// `max(x, 0)` (the gradient is zero where `y <= 0`, as PyTorch's): one fused pass,
        /// [`Tensor::threshold_backward`], or `Var` ops under `create_graph`.
        relu => |y, g| {
            if !crate::mode::is_grad_enabled() {
                return Ok(Var::from(y.tensor().threshold_backward(g.tensor(), 0.0)?));
            }
            g.masked_fill(&y.tensor().le_scalar(0.0)?, 0.0)
        };
        /// `1 / x` (derivative `-y^2`).
        reciprocal => |y, g| g.mul(&y.square()?)?.neg();
    }

    unary_ops! {
        /// Natural logarithm.
        log => |x, g| g.div(x);
        /// `log(1 + x)`.
        log1p => |x, g| g.div(&x.add_scalar(1.0)?);
        /// Sine.
        sin => |x, g| g.mul(&x.cos()?);
        /// Cosine.
        cos => |x, g| g.mul(&x.sin()?.neg()?);
        /// GELU (exact erf form). The backward is [`Tensor::gelu_backward`] (one fused
        /// pass), or `Var` ops under `create_graph`.
        gelu => |x, g| {
            if !crate::mode::is_grad_enabled() {
                return Ok(Var::from(x.tensor().gelu_backward(g.tensor(), false)?));
            }
            let cdf = x.mul_scalar(std::f64::consts::FRAC_1_SQRT_2)?.erf()?.add_scalar(1.0)?.mul_scalar(0.5)?;
            let pdf = x.square()?.mul_scalar(-0.5)?.exp()?.mul_scalar(1.0 / (2.0 * PI).sqrt())?;
            g.mul(&cdf.add(&x.mul(&pdf)?)?)
        };
        /// GELU (tanh approximation); backward as [`Var::gelu`]'s.
        gelu_tanh => |x, g| {
            if !crate::mode::is_grad_enabled() {
                return Ok(Var::from(x.tensor().gelu_backward(g.tensor(), true)?));
            }
            let k = (2.0 / PI).sqrt();
            let x2 = x.square()?;
            let u = x.mul(&x2.mul_scalar(0.044715)?.add_scalar(1.0)?)?.mul_scalar(k)?;
            let t = u.tanh()?;
            let du = x2.mul_scalar(3.0 * 0.044715)?.add_scalar(1.0)?.mul_scalar(k)?;
            let left = t.add_scalar(1.0)?.mul_scalar(0.5)?;
            let right = x.mul_scalar(0.5)?.mul(&t.square()?.rsub_scalar(1.0)?)?.mul(&du)?;
            g.mul(&left.add(&right)?)
        };
        /// `x * tanh(softplus(x))` (derivative `tanh(sp) + x sigmoid(x) (1 - tanh(sp)^2)`).
        mish => |x, g| {
            let t = x.softplus(1.0, 20.0)?.tanh()?;
            let slope = x.mul(&x.sigmoid()?)?.mul(&t.square()?.rsub_scalar(1.0)?)?;
            g.mul(&t.add(&slope)?)
        };
        /// `log(sigmoid(x))` (derivative `sigmoid(-x)`).
        log_sigmoid => |x, g| g.mul(&x.neg()?.sigmoid()?);
        /// `x * sigmoid(x)`.
        silu => |x, g| {
            let s = x.sigmoid()?;
            g.mul(&s.mul(&x.mul(&s.rsub_scalar(1.0)?)?.add_scalar(1.0)?)?)
        };
        /// `x * x`.
        square => |x, g| g.mul(&x.mul_scalar(2.0)?);
        /// The error function.
        erf => |x, g| g.mul(&x.square()?.neg()?.exp()?.mul_scalar(2.0 / PI.sqrt())?);
        /// `|x|` (gradient `sign(x)`, 0 at 0).
        abs => |x, g| g.mul_t(&x.tensor().sign()?);
    }

    zero_grad_ops! {
        /// -1, 0 or 1 (zero gradient).
        sign;
        /// Round toward -inf (zero gradient).
        floor;
        /// Round toward +inf (zero gradient).
        ceil;
        /// Round half to even (zero gradient).
        round;
        /// Round toward zero (zero gradient).
        trunc;
    }

    /// `-x`.
    pub fn neg(&self) -> Result<Var> {
        let out = self.tensor().neg()?;
        Ok(self.record_unary_grad_only("neg", out, |g| g.neg()))
    }

    /// `x` if positive, else `slope * x`.
    pub fn leaky_relu(&self, slope: f64) -> Result<Var> {
        let out = self.tensor().leaky_relu(slope)?;
        Ok(self.record_unary("leaky_relu", out, move |x, g| {
            let pos = x.tensor().gt_scalar(0.0)?;
            let d = Tensor::where_cond(
                &pos,
                &Tensor::scalar_on(1.0, g.dtype(), g.device())?,
                &Tensor::scalar_on(slope, g.dtype(), g.device())?,
            )?;
            g.mul_t(&d)
        }))
    }

    /// `x` if positive, else `alpha * (e^x - 1)`.
    ///
    /// For `alpha >= 0` the backward uses the output (`y > 0` exactly where `x > 0`,
    /// and the derivative below is `y + alpha`), like PyTorch; a negative `alpha`
    /// breaks both facts, so the input is saved instead.
    pub fn elu(&self, alpha: f64) -> Result<Var> {
        let out = self.tensor().elu(alpha)?;
        if alpha >= 0.0 {
            return Ok(self.record_unary_saving_output("elu", out, move |y, g| {
                let pos = y.tensor().gt_scalar(0.0)?;
                let one = Var::from(Tensor::scalar_on(1.0, g.dtype(), g.device())?);
                g.mul(&Var::where_cond(&pos, &one, &y.add_scalar(alpha)?)?)
            }));
        }
        Ok(self.record_unary("elu", out, move |x, g| {
            let pos = Var::from(x.tensor().gt_scalar(0.0)?);
            let neg = x.exp()?.mul_scalar(alpha)?;
            let d = Var::where_cond(pos.tensor(), &Var::from(Tensor::scalar_on(1.0, g.dtype(), g.device())?), &neg)?;
            g.mul(&d)
        }))
    }

    /// `log(1 + e^(beta x)) / beta`, linear above `threshold`.
    pub fn softplus(&self, beta: f64, threshold: f64) -> Result<Var> {
        let out = self.tensor().softplus(beta, threshold)?;
        Ok(self.record_unary("softplus", out, move |x, g| {
            let lin = x.tensor().mul_scalar(beta)?.gt_scalar(threshold)?;
            let s = x.mul_scalar(beta)?.sigmoid()?;
            let d = Var::where_cond(&lin, &Var::from(Tensor::scalar_on(1.0, g.dtype(), g.device())?), &s)?;
            g.mul(&d)
        }))
    }

    /// Clamps to `[min, max]`; the gradient passes where `min <= x <= max`.
    pub fn clamp(&self, min: Option<f64>, max: Option<f64>) -> Result<Var> {
        let out = self.tensor().clamp(min, max)?;
        Ok(self.record_unary("clamp", out, move |x, g| {
            let t = x.tensor();
            let mut m = t.isnan()?.logical_not()?;
            if let Some(lo) = min {
                m = m.logical_and(&t.ge_scalar(lo)?)?;
            }
            if let Some(hi) = max {
                m = m.logical_and(&t.le_scalar(hi)?)?;
            }
            g.mul_t(&mask_f(&m, g.dtype())?)
        }))
    }

    /// `x ^ p` for a scalar exponent.
    pub fn pow_scalar(&self, p: impl Into<Scalar>) -> Result<Var> {
        let p = p.into();
        let out = self.tensor().pow_scalar(p)?;
        let pf = p.to_f64();
        Ok(self.record_unary("pow", out, move |x, g| {
            if pf == 0.0 {
                return g.zeros_like();
            }
            g.mul(&x.pow_scalar(pf - 1.0)?.mul_scalar(pf)?)
        }))
    }

    /// `x + s`.
    pub fn add_scalar(&self, s: impl Into<Scalar>) -> Result<Var> {
        let out = self.tensor().add_scalar(s)?;
        Ok(self.record_unary_grad_only("add", out, |g| Ok(g.clone())))
    }

    /// `x - s`.
    pub fn sub_scalar(&self, s: impl Into<Scalar>) -> Result<Var> {
        let out = self.tensor().sub_scalar(s)?;
        Ok(self.record_unary_grad_only("sub", out, |g| Ok(g.clone())))
    }

    /// `x * s`.
    pub fn mul_scalar(&self, s: impl Into<Scalar>) -> Result<Var> {
        let s = s.into();
        let out = self.tensor().mul_scalar(s)?;
        Ok(self.record_unary_grad_only("mul", out, move |g| g.mul_scalar(s)))
    }

    /// `x / s`.
    pub fn div_scalar(&self, s: impl Into<Scalar>) -> Result<Var> {
        let s = s.into();
        let out = self.tensor().div_scalar(s)?;
        Ok(self.record_unary_grad_only("div", out, move |g| g.div_scalar(s)))
    }

    /// `s - x`.
    pub fn rsub_scalar(&self, s: impl Into<Scalar>) -> Result<Var> {
        let out = self.tensor().rsub_scalar(s)?;
        Ok(self.record_unary_grad_only("rsub", out, |g| g.neg()))
    }

    /// `s / x`.
    pub fn rdiv_scalar(&self, s: impl Into<Scalar>) -> Result<Var> {
        let s = s.into();
        let out = self.tensor().rdiv_scalar(s)?;
        Ok(self.record_unary("rdiv", out, move |x, g| g.mul(&x.square()?.reciprocal()?.mul_scalar(-s.to_f64())?)))
    }

    /// Elementwise `max(x, s)` (ties split the gradient in half, like PyTorch).
    pub fn maximum_scalar(&self, s: impl Into<Scalar>) -> Result<Var> {
        let s = s.into().to_f64();
        let out = self.tensor().maximum_scalar(s)?;
        Ok(self.record_unary("maximum", out, move |x, g| g.mul_t(&tie_mask(x.tensor(), s, true)?.to_dtype(g.dtype())?)))
    }

    /// Elementwise `min(x, s)`.
    pub fn minimum_scalar(&self, s: impl Into<Scalar>) -> Result<Var> {
        let s = s.into().to_f64();
        let out = self.tensor().minimum_scalar(s)?;
        Ok(self
            .record_unary("minimum", out, move |x, g| g.mul_t(&tie_mask(x.tensor(), s, false)?.to_dtype(g.dtype())?)))
    }

    /// Python-style remainder by a scalar (gradient 1).
    pub fn remainder_scalar(&self, s: impl Into<Scalar>) -> Result<Var> {
        let out = self.tensor().remainder_scalar(s)?;
        Ok(self.record_unary_grad_only("remainder", out, |g| Ok(g.clone())))
    }

    /// `atan2(x, s)`.
    pub fn atan2_scalar(&self, s: impl Into<Scalar>) -> Result<Var> {
        let s = s.into().to_f64();
        let out = self.tensor().atan2_scalar(s)?;
        Ok(self.record_unary("atan2", out, move |x, g| g.mul_scalar(s)?.div(&x.square()?.add_scalar(s * s)?)))
    }

    /// `self + other` with broadcasting.
    pub fn add(&self, other: &Var) -> Result<Var> {
        let out = self.tensor().add(other.tensor())?;
        Ok(self
            .record_binary_grad_only(other, "add", out, |g, n| Ok((n[0].then(|| g.clone()), n[1].then(|| g.clone())))))
    }

    /// `self - other` with broadcasting.
    pub fn sub(&self, other: &Var) -> Result<Var> {
        let out = self.tensor().sub(other.tensor())?;
        Ok(self
            .record_binary_grad_only(other, "sub", out, |g, n| Ok((n[0].then(|| g.clone()), opt(n[1], || g.neg())?))))
    }

    /// `self * other` with broadcasting.
    pub fn mul(&self, other: &Var) -> Result<Var> {
        let out = self.tensor().mul(other.tensor())?;
        Ok(self.record_binary(other, "mul", out, |a, b, g, n| Ok((opt(n[0], || g.mul(b))?, opt(n[1], || g.mul(a))?))))
    }

    /// `self / other` with broadcasting.
    pub fn div(&self, other: &Var) -> Result<Var> {
        let out = self.tensor().div(other.tensor())?;
        Ok(self.record_binary(other, "div", out, |a, b, g, n| {
            let ga = opt(n[0], || g.div(b))?;
            let gb = opt(n[1], || g.mul(a)?.div(&b.square()?)?.neg())?;
            Ok((ga, gb))
        }))
    }

    /// `self ^ other` with broadcasting.
    pub fn pow(&self, other: &Var) -> Result<Var> {
        let out = self.tensor().pow(other.tensor())?;
        Ok(self.record_binary(other, "pow", out, |a, b, g, n| {
            let ga = opt(n[0], || {
                let d = b.mul(&a.pow(&b.sub_scalar(1.0)?)?)?;
                // d/da a^b is 0 where b == 0 (PyTorch's convention, avoids 0 * inf).
                let bz = b.tensor().eq_scalar(0.0)?;
                let d = Var::where_cond(&bz, &d.zeros_like()?, &d)?;
                g.mul(&d)
            })?;
            let gb = opt(n[1], || {
                let d = a.pow(b)?.mul(&a.log()?)?;
                // 0^b with b >= 0 contributes nothing (PyTorch masks the log(0)).
                let az = a.tensor().eq_scalar(0.0)?.logical_and(&b.tensor().ge_scalar(0.0)?)?;
                let d = Var::where_cond(&az, &d.zeros_like()?, &d)?;
                g.mul(&d)
            })?;
            Ok((ga, gb))
        }))
    }

    /// Elementwise maximum (ties split the gradient in half).
    pub fn maximum(&self, other: &Var) -> Result<Var> {
        let out = self.tensor().maximum(other.tensor())?;
        Ok(self.record_binary(other, "maximum", out, |a, b, g, n| minmax_grads(a, b, g, n, true)))
    }

    /// Elementwise minimum (ties split the gradient in half).
    pub fn minimum(&self, other: &Var) -> Result<Var> {
        let out = self.tensor().minimum(other.tensor())?;
        Ok(self.record_binary(other, "minimum", out, |a, b, g, n| minmax_grads(a, b, g, n, false)))
    }

    /// `atan2(self, other)`.
    pub fn atan2(&self, other: &Var) -> Result<Var> {
        let out = self.tensor().atan2(other.tensor())?;
        Ok(self.record_binary(other, "atan2", out, |a, b, g, n| {
            let den = a.square()?.add(&b.square()?)?;
            Ok((opt(n[0], || g.mul(b)?.div(&den))?, opt(n[1], || g.mul(a)?.div(&den)?.neg())?))
        }))
    }

    /// Python-style remainder: `a - b * floor(a / b)`.
    pub fn remainder(&self, other: &Var) -> Result<Var> {
        let out = self.tensor().remainder(other.tensor())?;
        Ok(self.record_binary(other, "remainder", out, |a, b, g, n| {
            let q = a.tensor().div(b.tensor())?.floor()?;
            Ok((n[0].then(|| g.clone()), opt(n[1], || g.mul_t(&q)?.neg())?))
        }))
    }

    /// `cond ? a : b` with broadcasting; `cond` is a Bool tensor.
    pub fn where_cond(cond: &Tensor, a: &Var, b: &Var) -> Result<Var> {
        let out = Tensor::where_cond(cond, a.tensor(), b.tensor())?;
        let c = cond.clone();
        Ok(a.record_binary_grad_only(b, "where", out, move |g, n| {
            let z = g.zeros_like()?;
            let ga = opt(n[0], || Var::where_cond(&c, g, &z))?;
            let gb = opt(n[1], || Var::where_cond(&c, &z, g))?;
            Ok((ga, gb))
        }))
    }

    /// `mask ? value : self`.
    pub fn masked_fill(&self, mask: &Tensor, value: impl Into<Scalar>) -> Result<Var> {
        let out = self.tensor().masked_fill(mask, value)?;
        let m = mask.clone();
        Ok(self.record_unary_grad_only("masked_fill", out, move |g| g.masked_fill(&m, 0.0)))
    }

    /// Converts to `dtype`; the gradient is cast back.
    pub fn to_dtype(&self, dtype: DType) -> Result<Var> {
        if dtype == self.dtype() {
            return Ok(self.clone());
        }
        let out = self.tensor().to_dtype(dtype)?;
        Ok(self.record_unary_grad_only("to_dtype", out, |g| Ok(g.clone())))
    }

    compare_ops! {
        /// `self == other`, as Bool (not differentiable).
        eq, eq_scalar;
        /// `self != other`, as Bool.
        ne, ne_scalar;
        /// `self < other`, as Bool.
        lt, lt_scalar;
        /// `self <= other`, as Bool.
        le, le_scalar;
        /// `self > other`, as Bool.
        gt, gt_scalar;
        /// `self >= other`, as Bool.
        ge, ge_scalar;
    }

    /// NaN test (not differentiable).
    pub fn isnan(&self) -> Result<Var> {
        Ok(Var::from(self.tensor().isnan()?))
    }

    /// Infinity test (not differentiable).
    pub fn isinf(&self) -> Result<Var> {
        Ok(Var::from(self.tensor().isinf()?))
    }

    /// Finite test (not differentiable).
    pub fn isfinite(&self) -> Result<Var> {
        Ok(Var::from(self.tensor().isfinite()?))
    }
}

/// `Some(f())` when `need`, else `None`.
fn opt(need: bool, f: impl FnOnce() -> Result<Var>) -> Result<Option<Var>> {
    if need {
        f().map(Some)
    } else {
        Ok(None)
    }
}

/// 1 where `x` wins against `s`, 0.5 at ties, 0 elsewhere.
fn tie_mask(x: &Tensor, s: f64, max: bool) -> Result<Tensor> {
    let win = if max { x.gt_scalar(s)? } else { x.lt_scalar(s)? };
    let tie = x.eq_scalar(s)?;
    win.to_dtype(DType::F64)?.add(&tie.to_dtype(DType::F64)?.mul_scalar(0.5)?)
}

fn minmax_grads(a: &Var, b: &Var, g: &Var, n: &[bool], max: bool) -> Result<(Option<Var>, Option<Var>)> {
    let (at, bt) = (a.tensor(), b.tensor());
    let win = if max { at.gt(bt)? } else { at.lt(bt)? };
    let tie = at.eq(bt)?;
    let wa = win.to_dtype(g.dtype())?.add(&tie.to_dtype(g.dtype())?.mul_scalar(0.5)?)?;
    let ga = opt(n[0], || g.mul_t(&wa))?;
    let gb = opt(n[1], || g.mul_t(&wa.rsub_scalar(1.0)?))?;
    Ok((ga, gb))
}

/// `&Var op &Var`, `Var op Var` and the mixed forms, `var op f64` and `f64 op var`
/// (`$lfn(rhs, lhs)` computes `lhs op rhs` with the scalar on the left).
macro_rules! impl_var_op {
    ($trait:ident, $method:ident, $fn:ident, $sfn:ident, $lfn:ident) => {
        impl std::ops::$trait<&Var> for &Var {
            type Output = Result<Var>;
            fn $method(self, rhs: &Var) -> Result<Var> {
                Var::$fn(self, rhs)
            }
        }
        impl std::ops::$trait<Var> for Var {
            type Output = Result<Var>;
            fn $method(self, rhs: Var) -> Result<Var> {
                Var::$fn(&self, &rhs)
            }
        }
        impl std::ops::$trait<&Var> for Var {
            type Output = Result<Var>;
            fn $method(self, rhs: &Var) -> Result<Var> {
                Var::$fn(&self, rhs)
            }
        }
        impl std::ops::$trait<Var> for &Var {
            type Output = Result<Var>;
            fn $method(self, rhs: Var) -> Result<Var> {
                Var::$fn(self, &rhs)
            }
        }
        impl std::ops::$trait<f64> for &Var {
            type Output = Result<Var>;
            fn $method(self, rhs: f64) -> Result<Var> {
                Var::$sfn(self, rhs)
            }
        }
        impl std::ops::$trait<f64> for Var {
            type Output = Result<Var>;
            fn $method(self, rhs: f64) -> Result<Var> {
                Var::$sfn(&self, rhs)
            }
        }
        impl std::ops::$trait<&Var> for f64 {
            type Output = Result<Var>;
            fn $method(self, rhs: &Var) -> Result<Var> {
                Var::$lfn(rhs, self)
            }
        }
        impl std::ops::$trait<Var> for f64 {
            type Output = Result<Var>;
            fn $method(self, rhs: Var) -> Result<Var> {
                Var::$lfn(&rhs, self)
            }
        }
    };
}
impl_var_op!(Add, add, add, add_scalar, add_scalar);
impl_var_op!(Sub, sub, sub, sub_scalar, rsub_scalar);
impl_var_op!(Mul, mul, mul, mul_scalar, mul_scalar);
impl_var_op!(Div, div, div, div_scalar, rdiv_scalar);

impl std::ops::Neg for &Var {
    type Output = Result<Var>;
    fn neg(self) -> Result<Var> {
        Var::neg(self)
    }
}

impl std::ops::Neg for Var {
    type Output = Result<Var>;
    fn neg(self) -> Result<Var> {
        Var::neg(&self)
    }
}
