//! Elementwise CPU kernels: copies, fills, casts, unary and binary maps, where.

use num_traits::Float;

use std::sync::atomic::{AtomicBool, Ordering};

use super::iter::{for_chunks, map1, map2, map3, zip_inplace, Plan};
use super::simd::{multiversion, Isa};
use super::{unsupported, with_dtype, with_float, Arith, HostBuffer};
use crate::backend::{BinaryOp, UnaryOp};
use crate::dtype::Elem;
use crate::{DType, Error, Layout, Result, Scalar};

/// A contiguous copy of the view.
pub fn contiguous(b: &HostBuffer, l: &Layout) -> Result<HostBuffer> {
    Ok(with_dtype!(b, v, T => {
        if l.numel() == 0 {
            // A zero-size view may carry an offset past the end of its storage.
            return Ok(T::wrap(Vec::new()));
        }
        if let Some(r) = l.contiguous_range() {
            let mut out = super::alloc::uninit::<T>(l.numel())?;
            out.copy_from_slice(&v[r]);
            return Ok(T::wrap(out));
        }
        let mut out = super::alloc::uninit::<T>(l.numel())?;
        map1(v, l, &mut out, |x| x);
        T::wrap(out)
    }))
}

/// Copies view `src` into view `dst` (same dtype and shape).
pub fn copy_strided(src: &HostBuffer, src_layout: &Layout, dst: &mut HostBuffer, dl: &Layout) -> Result<()> {
    if src.dtype() != dst.dtype() {
        return Err(Error::DTypeMismatch { op: "copy_", expected: dst.dtype(), got: src.dtype() });
    }
    with_dtype!(dst, d, T => {
        let s = T::unwrap_ref(src).expect("dtype checked above");
        if let (Some(dr), Some(sr)) = (dl.contiguous_range(), src_layout.contiguous_range()) {
            d[dr].copy_from_slice(&s[sr]);
        } else {
            zip_inplace(d, dl, s, src_layout, |o, x| *o = x);
        }
    });
    Ok(())
}

/// Fills the view with `value`.
pub fn fill(dst: &mut HostBuffer, dl: &Layout, value: Scalar) {
    with_dtype!(dst, d, T => {
        let x = T::from_scalar(value);
        if let Some(r) = dl.contiguous_range() {
            d[r].fill(x);
        } else {
            // The source is a single element broadcast with stride 0.
            let one = [x];
            let src_layout = Layout::new(dl.shape().clone(), smallvec::SmallVec::from_elem(0, dl.rank()), 0);
            zip_inplace(d, dl, &one, &src_layout, |o, v| *o = v);
        }
    })
}

fn cast_into<S: Elem, D: Elem>(s: &[S], l: &Layout) -> Result<Vec<D>> {
    let mut out = super::alloc::uninit::<D>(l.numel())?;
    let exact_int = !S::DTYPE.is_float() && !D::DTYPE.is_float();
    if exact_int {
        map1(s, l, &mut out, |x| D::from_scalar(x.to_scalar()));
    } else {
        map1(s, l, &mut out, |x| D::from_f64(x.to_f64()));
    }
    Ok(out)
}

/// Converts the view to `dtype`.
pub fn cast(b: &HostBuffer, l: &Layout, dtype: DType) -> Result<HostBuffer> {
    if b.dtype() == dtype {
        return contiguous(b, l);
    }
    // f32 <-> half conversions are hot (mixed precision); keep them off the f64 path.
    match (b, dtype) {
        (HostBuffer::F32(v), DType::F16) => {
            let mut out = super::alloc::uninit::<half::f16>(l.numel())?;
            map1(v, l, &mut out, half::f16::from_f32);
            return Ok(HostBuffer::F16(out));
        }
        (HostBuffer::F32(v), DType::BF16) => {
            let mut out = super::alloc::uninit::<half::bf16>(l.numel())?;
            map1(v, l, &mut out, half::bf16::from_f32);
            return Ok(HostBuffer::BF16(out));
        }
        (HostBuffer::F16(v), DType::F32) => {
            let mut out = super::alloc::uninit::<f32>(l.numel())?;
            map1(v, l, &mut out, |x| x.to_f32());
            return Ok(HostBuffer::F32(out));
        }
        (HostBuffer::BF16(v), DType::F32) => {
            let mut out = super::alloc::uninit::<f32>(l.numel())?;
            map1(v, l, &mut out, |x| x.to_f32());
            return Ok(HostBuffer::F32(out));
        }
        _ => {}
    }
    Ok(with_dtype!(b, s, S => match dtype {
        DType::Bool => HostBuffer::Bool({
            let mut out = super::alloc::uninit::<bool>(l.numel())?;
            map1(s, l, &mut out, |x: S| x.to_f64() != 0.0);
            out
        }),
        DType::U8 => HostBuffer::U8(cast_into(s, l)?),
        DType::I32 => HostBuffer::I32(cast_into(s, l)?),
        DType::I64 => HostBuffer::I64(cast_into(s, l)?),
        DType::F16 => HostBuffer::F16(cast_into(s, l)?),
        DType::BF16 => HostBuffer::BF16(cast_into(s, l)?),
        DType::F32 => HostBuffer::F32(cast_into(s, l)?),
        DType::F64 => HostBuffer::F64(cast_into(s, l)?),
    }))
}

#[inline(always)]
fn map_same_dtype<T: Elem>(v: &[T], l: &Layout, f: impl Fn(T) -> T + Sync) -> Result<HostBuffer> {
    let mut out = super::alloc::uninit::<T>(l.numel())?;
    map1(v, l, &mut out, f);
    Ok(T::wrap(out))
}

#[inline(always)]
fn map_to_bool<T: Elem>(v: &[T], l: &Layout, f: impl Fn(T) -> bool + Sync) -> Result<HostBuffer> {
    let mut out = super::alloc::uninit::<bool>(l.numel())?;
    map1(v, l, &mut out, f);
    Ok(HostBuffer::Bool(out))
}

/// The CPU loop [`UnaryOp::float_formula`] runs its formula through.
struct CpuMap<'a, T> {
    v: &'a [T],
    l: &'a Layout,
}

impl<T: Elem> crate::backend::FloatMap<T> for CpuMap<'_, T> {
    type Out = Result<HostBuffer>;
    #[inline(always)]
    fn map<F: Fn(T) -> T + Sync>(self, f: F) -> Result<HostBuffer> {
        map_same_dtype(self.v, self.l, f)
    }
}

fn float_unary<T: Elem + Float>(op: UnaryOp, v: &[T], l: &Layout) -> Result<HostBuffer> {
    match op {
        UnaryOp::IsNan => map_to_bool(v, l, |x| x.is_nan()),
        UnaryOp::IsInf => map_to_bool(v, l, |x| x.is_infinite()),
        UnaryOp::LogicalNot => map_to_bool(v, l, |x| x == T::zero()),
        _ => op.float_formula(CpuMap { v, l }).unwrap_or_else(|| Err(unsupported(op.name(), T::DTYPE))),
    }
}

fn int_unary<T: Elem + Arith>(op: UnaryOp, v: &[T], l: &Layout) -> Result<HostBuffer> {
    use UnaryOp::*;
    match op {
        Neg => map_same_dtype(v, l, T::neg),
        Abs => map_same_dtype(v, l, T::abs),
        Relu => {
            let z = T::vzero();
            map_same_dtype(v, l, move |x| if x > z { x } else { z })
        }
        Sign => map_same_dtype(v, l, T::sign),
        Square => map_same_dtype(v, l, |x| T::mul(x, x)),
        Floor | Ceil | Round | Trunc => map_same_dtype(v, l, |x| x),
        Clamp(lo, hi) => {
            // Round the bounds inward so that results always lie within them.
            let lo = lo.map(|v| T::from_f64(v.ceil()));
            let hi = hi.map(|v| T::from_f64(v.floor()));
            map_same_dtype(v, l, move |x| {
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
                y
            })
        }
        AddScalar(s) => {
            let s = T::from_f64(s);
            map_same_dtype(v, l, move |x| T::add(x, s))
        }
        MulScalar(s) => {
            let s = T::from_f64(s);
            map_same_dtype(v, l, move |x| T::mul(x, s))
        }
        IsNan | IsInf => Ok(HostBuffer::Bool(super::alloc::filled(l.numel(), false)?)),
        LogicalNot => map_to_bool(v, l, |x| !T::nonzero(x)),
        _ => Err(unsupported(op.name(), T::DTYPE)),
    }
}

/// `tanh` in f32 without branches or libm calls, so loops over it vectorise (libm's
/// `tanhf` per element made an LSTM step's gates cost more than its GEMM):
/// `(1 - e) / (1 + e)` with `e = exp(-2|x|)`, and below `|x| = 0.125`, where that
/// difference cancels, the Taylor series to `x^9`. Within about 4e-7 relative.
#[inline(always)]
pub(super) fn tanh_f32(x: f32) -> f32 {
    let a = x.abs();
    let e = super::reduce::exp_neg_f32(-2.0 * a);
    let big = (1.0 - e) / (1.0 + e);
    let a2 = a * a;
    let small = a * (1.0 + a2 * (-1.0 / 3.0 + a2 * (2.0 / 15.0 + a2 * (-17.0 / 315.0 + a2 * (62.0 / 2835.0)))));
    let t = if a < 0.125 { small } else { big };
    t.copysign(x)
}

/// The logistic sigmoid in f32 without branches or libm calls: with `e = exp(-|x|)`,
/// `1 / (1 + e)` for `x >= 0` and `e / (1 + e)` below (no cancellation either side).
#[inline(always)]
pub(super) fn sigmoid_f32(x: f32) -> f32 {
    let e = super::reduce::exp_neg_f32(-x.abs());
    let r = 1.0 / (1.0 + e);
    if x >= 0.0 {
        r
    } else {
        e * r
    }
}

/// The f32 unary ops with branch-free formulas (no libm calls), which run on
/// contiguous input through [`fast_unary_run`], compiled per vector level.
#[derive(Clone, Copy, Debug)]
enum FastUnary {
    Tanh,
    Sigmoid,
    /// The exact (erf) GELU, `x Φ(x)`, with a branch-free Φ instead of libm's erf.
    Gelu,
}

impl FastUnary {
    /// The fast form of `op`, if it has one.
    fn of(op: UnaryOp) -> Option<FastUnary> {
        match op {
            UnaryOp::Tanh => Some(FastUnary::Tanh),
            UnaryOp::Sigmoid => Some(FastUnary::Sigmoid),
            UnaryOp::Gelu => Some(FastUnary::Gelu),
            _ => None,
        }
    }

    /// The op on one element (what [`fast_unary_run`] computes per element).
    #[inline(always)]
    fn apply(self, x: f32) -> f32 {
        match self {
            FastUnary::Tanh => tanh_f32(x),
            FastUnary::Sigmoid => sigmoid_f32(x),
            FastUnary::Gelu => x * super::norm::normal_cdf_f32(x).0,
        }
    }
}

multiversion! {
    /// `o[i] = op(x[i])` over `min(x.len(), o.len())` elements. The match is outside
    /// the loops so each loop is one op's straight-line formula, which vectorises; no
    /// FMA contraction, so every level gives the same bits.
    fn fast_unary_run(op: FastUnary, x: &[f32], o: &mut [f32]) {
        #[inline(always)]
        fn each(x: &[f32], o: &mut [f32], f: impl Fn(f32) -> f32) {
            for (o, &x) in o.iter_mut().zip(x) {
                *o = f(x);
            }
        }
        match op {
            FastUnary::Tanh => each(x, o, tanh_f32),
            FastUnary::Sigmoid => each(x, o, sigmoid_f32),
            FastUnary::Gelu => each(x, o, |x| x * super::norm::normal_cdf_f32(x).0),
        }
    }
}

/// Applies a unary op.
///
/// f16/bf16 compute in f32 and round once at the end (PyTorch's "opmath"), so
/// composite formulas (sigmoid, silu, softplus, ...) and scalar parameters keep f32
/// accuracy instead of rounding to half precision at every step.
pub fn unary(op: UnaryOp, b: &HostBuffer, l: &Layout) -> Result<HostBuffer> {
    if matches!(b, HostBuffer::F16(_) | HostBuffer::BF16(_)) && !op.returns_bool() {
        let cl = Layout::contiguous(l.shape().clone());
        if let HostBuffer::F32(v) = cast(b, l, DType::F32)? {
            let out = float_unary::<f32>(op, &v, &cl)?;
            return cast(&out, &cl, b.dtype());
        }
    }
    if let (Some(fast), HostBuffer::F32(v)) = (FastUnary::of(op), b) {
        if let Some(r) = l.contiguous_range().filter(|_| l.numel() > 0) {
            let x = &v[r];
            let mut out = super::alloc::uninit::<f32>(x.len())?;
            let isa = Isa::best();
            for_chunks(&mut out, |s, o| fast_unary_run(isa, fast, &x[s..s + o.len()], o));
            return Ok(HostBuffer::F32(out));
        }
        return map_same_dtype(v, l, move |x| fast.apply(x));
    }
    with_float!(b, v, T => float_unary::<T>(op, v, l), else {
        with_dtype!(b, v, T => int_unary::<T>(op, v, l))
    })
}

#[inline(always)]
fn bmap<T: Elem>(a: &[T], la: &Layout, b: &[T], lb: &Layout, f: impl Fn(T, T) -> T + Sync) -> Result<HostBuffer> {
    let mut out = super::alloc::uninit::<T>(la.numel())?;
    map2(a, la, b, lb, &mut out, f);
    Ok(T::wrap(out))
}

#[inline(always)]
fn cmap<T: Elem>(a: &[T], la: &Layout, b: &[T], lb: &Layout, f: impl Fn(T, T) -> bool + Sync) -> Result<HostBuffer> {
    let mut out = super::alloc::uninit::<bool>(la.numel())?;
    map2(a, la, b, lb, &mut out, f);
    Ok(HostBuffer::Bool(out))
}

/// True for a right operand that an integer `op` can't take: a zero divisor of
/// `div`/`remainder`, a negative exponent of `pow`. Always false for floats and bool.
#[inline(always)]
fn int_operand_bad<T: Elem + Arith>(op: BinaryOp, y: T) -> bool {
    T::DTYPE.is_int()
        && match op {
            BinaryOp::Div | BinaryOp::Remainder => y == T::vzero(),
            BinaryOp::Pow => y < T::vzero(),
            _ => false,
        }
}

/// The error for an operand [`int_operand_bad`] refused.
fn int_operand_error(op: BinaryOp) -> Error {
    match op {
        BinaryOp::Pow => crate::ops::elementwise::int_negative_power(),
        _ => crate::ops::elementwise::int_division_by_zero(op),
    }
}

/// `div`, `remainder` or `pow` of integers: like [`bmap`], plus a flag raised (and
/// then an error) when some right operand is refused by [`int_operand_bad`]. The
/// flag is only written on the rare bad element, so the loop stays as fast.
fn checked_int_bmap<T: Elem + Arith>(
    op: BinaryOp,
    a: &[T],
    la: &Layout,
    b: &[T],
    lb: &Layout,
    f: impl Fn(T, T) -> T + Sync,
) -> Result<HostBuffer> {
    let bad = AtomicBool::new(false);
    let out = bmap(a, la, b, lb, |x, y| {
        if int_operand_bad(op, y) {
            bad.store(true, Ordering::Relaxed);
            T::vzero()
        } else {
            f(x, y)
        }
    })?;
    if bad.load(Ordering::Relaxed) {
        return Err(int_operand_error(op));
    }
    Ok(out)
}

fn binary_typed<T: Elem + Arith>(op: BinaryOp, a: &[T], la: &Layout, b: &[T], lb: &Layout) -> Result<HostBuffer> {
    use BinaryOp::*;
    if T::DTYPE.is_int() {
        match op {
            Div => return checked_int_bmap(op, a, la, b, lb, T::div),
            Remainder => return checked_int_bmap(op, a, la, b, lb, T::rem),
            Pow => return checked_int_bmap(op, a, la, b, lb, T::vpow),
            _ => {}
        }
    }
    match op {
        Add => bmap(a, la, b, lb, T::add),
        Sub => bmap(a, la, b, lb, T::sub),
        Mul => bmap(a, la, b, lb, T::mul),
        Div => bmap(a, la, b, lb, T::div),
        Pow => bmap(a, la, b, lb, T::vpow),
        Maximum => bmap(a, la, b, lb, T::vmax),
        Minimum => bmap(a, la, b, lb, T::vmin),
        Remainder => bmap(a, la, b, lb, T::rem),
        Atan2 => bmap(a, la, b, lb, |x, y| T::from_f64(x.to_f64().atan2(y.to_f64()))),
        Eq => cmap(a, la, b, lb, |x, y| x == y),
        Ne => cmap(a, la, b, lb, |x, y| x != y),
        Lt => cmap(a, la, b, lb, |x, y| x < y),
        Le => cmap(a, la, b, lb, |x, y| x <= y),
        Gt => cmap(a, la, b, lb, |x, y| x > y),
        Ge => cmap(a, la, b, lb, |x, y| x >= y),
        LogicalAnd => cmap(a, la, b, lb, |x, y| T::nonzero(x) && T::nonzero(y)),
        LogicalOr => cmap(a, la, b, lb, |x, y| T::nonzero(x) || T::nonzero(y)),
        LogicalXor => cmap(a, la, b, lb, |x, y| T::nonzero(x) != T::nonzero(y)),
    }
}

/// Applies a binary op to two same-dtype, same-shape views.
pub fn binary(op: BinaryOp, a: &HostBuffer, la: &Layout, b: &HostBuffer, lb: &Layout) -> Result<HostBuffer> {
    if a.dtype() != b.dtype() {
        return Err(Error::DTypeMismatch { op: op.name(), expected: a.dtype(), got: b.dtype() });
    }
    with_dtype!(a, x, T => {
        let y = T::unwrap_ref(b).expect("dtype checked above");
        binary_typed::<T>(op, x, la, y, lb)
    })
}

/// `dst = dst op rhs` in place.
pub fn binary_inplace(
    op: BinaryOp,
    dst: &mut HostBuffer,
    dl: &Layout,
    rhs: &HostBuffer,
    rhs_layout: &Layout,
) -> Result<()> {
    if dst.dtype() != rhs.dtype() {
        return Err(Error::DTypeMismatch { op: op.name(), expected: dst.dtype(), got: rhs.dtype() });
    }
    if op.returns_bool() {
        return Err(Error::arg(op.name(), "in-place comparison is not supported; use the out-of-place op"));
    }
    with_dtype!(dst, d, T => {
        let s = T::unwrap_ref(rhs).expect("dtype checked above");
        // Integer division by zero or a negative power: refuse before writing anything.
        if T::DTYPE.is_int() && matches!(op, BinaryOp::Div | BinaryOp::Remainder | BinaryOp::Pow) {
            let mut bad = false;
            Plan::new(rhs_layout.dims(), [rhs_layout]).for_each_run(|[o], [st], n| {
                bad |= (0..n).any(|j| int_operand_bad(op, s[o + j * st]));
            });
            if bad {
                return Err(int_operand_error(op));
            }
        }
        use BinaryOp::*;
        match op {
            Add => zip_inplace(d, dl, s, rhs_layout, |o, x| *o = T::add(*o, x)),
            Sub => zip_inplace(d, dl, s, rhs_layout, |o, x| *o = T::sub(*o, x)),
            Mul => zip_inplace(d, dl, s, rhs_layout, |o, x| *o = T::mul(*o, x)),
            Div => zip_inplace(d, dl, s, rhs_layout, |o, x| *o = T::div(*o, x)),
            Pow => zip_inplace(d, dl, s, rhs_layout, |o, x| *o = T::vpow(*o, x)),
            Maximum => zip_inplace(d, dl, s, rhs_layout, |o, x| *o = T::vmax(*o, x)),
            Minimum => zip_inplace(d, dl, s, rhs_layout, |o, x| *o = T::vmin(*o, x)),
            Remainder => zip_inplace(d, dl, s, rhs_layout, |o, x| *o = T::rem(*o, x)),
            Atan2 => zip_inplace(d, dl, s, rhs_layout, |o, x| *o = T::from_f64(o.to_f64().atan2(x.to_f64()))),
            _ => unreachable!("comparisons rejected above"),
        }
    });
    Ok(())
}

/// `cond ? a : b`.
pub fn where_cond(
    c: &HostBuffer,
    lc: &Layout,
    a: &HostBuffer,
    la: &Layout,
    b: &HostBuffer,
    lb: &Layout,
) -> Result<HostBuffer> {
    let HostBuffer::Bool(cv) = c else {
        return Err(Error::DTypeMismatch { op: "where", expected: DType::Bool, got: c.dtype() });
    };
    if a.dtype() != b.dtype() {
        return Err(Error::DTypeMismatch { op: "where", expected: a.dtype(), got: b.dtype() });
    }
    Ok(with_dtype!(a, x, T => {
        let y = T::unwrap_ref(b).expect("dtype checked above");
        let mut out = super::alloc::uninit::<T>(lc.numel())?;
        map3(cv, lc, x, la, y, lb, &mut out, |c, x, y| if c { x } else { y });
        T::wrap(out)
    }))
}

#[cfg(test)]
mod tests {
    use super::{fast_unary_run, sigmoid_f32, tanh_f32, FastUnary, Isa};

    /// Every vector level of the contiguous kernel gives the scalar formula's bits
    /// (NaN, infinities, signed zeros, large and tiny values included), for lengths
    /// around the vector widths; the scalar formulas are checked against f64 below and
    /// GELU against libm's erf in op-table.
    #[test]
    fn fast_unary_every_level_gives_the_scalar_bits() {
        let special = [f32::NAN, 0.0, -0.0, 1e-30, -3.5, 0.124, 7.0, f32::INFINITY, f32::NEG_INFINITY, -88.5, 20.0];
        for n in [0usize, 1, 7, 8, 15, 16, 17, 33, 100] {
            let x: Vec<f32> =
                (0..n).map(|i| if i % 3 == 0 { special[i % special.len()] } else { i as f32 * 0.37 - 9.0 }).collect();
            for op in [FastUnary::Tanh, FastUnary::Sigmoid, FastUnary::Gelu] {
                for isa in Isa::supported() {
                    let mut o = vec![f32::NAN; n];
                    fast_unary_run(isa, op, &x, &mut o);
                    for i in 0..n {
                        let want = op.apply(x[i]);
                        assert_eq!(o[i].to_bits(), want.to_bits(), "{op:?} {} n {n} x {}", isa.level(), x[i]);
                    }
                }
            }
        }
    }

    /// Every 997th f32 bit pattern in [-20, 20] (plus the edges), against f64.
    #[test]
    fn fast_tanh_and_sigmoid_match_f64() {
        let mut worst = (0.0f64, 0.0f64);
        let mut xs: Vec<f32> =
            (0..u32::MAX / 997).map(|i| f32::from_bits(i * 997)).filter(|x| x.abs() <= 20.0).collect();
        xs.extend([0.0, -0.0, 0.125, -0.125, 1e-30, 88.0, -88.0, 1e30, -1e30]);
        for x in xs.iter().flat_map(|&x| [x, -x]) {
            let xf = x as f64;
            let (t, s) = (xf.tanh(), 1.0 / (1.0 + (-xf).exp()));
            let et = (tanh_f32(x) as f64 - t).abs() / t.abs().max(f64::MIN_POSITIVE);
            let es = (sigmoid_f32(x) as f64 - s).abs() / s.max(f64::MIN_POSITIVE);
            // Relative for normal results; sigmoid of very negative x is subnormal.
            if s > 1e-37 {
                worst.1 = worst.1.max(es);
            }
            if t != 0.0 {
                worst.0 = worst.0.max(et);
            }
        }
        assert!(worst.0 < 5e-7, "tanh: worst relative error {:e}", worst.0);
        assert!(worst.1 < 5e-7, "sigmoid: worst relative error {:e}", worst.1);
        for (x, t, s) in [(f32::INFINITY, 1.0, 1.0), (f32::NEG_INFINITY, -1.0, 0.0)] {
            assert_eq!((tanh_f32(x), sigmoid_f32(x)), (t, s));
        }
        assert!(tanh_f32(f32::NAN).is_nan() && sigmoid_f32(f32::NAN).is_nan());
        assert_eq!(tanh_f32(-0.0).to_bits(), (-0.0f32).to_bits());
    }
}
