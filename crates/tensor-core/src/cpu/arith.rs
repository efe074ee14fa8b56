//! Per-element arithmetic for every dtype, monomorphised so that hot loops contain no
//! dispatch. Integers wrap like PyTorch's; f16/bf16 compute through f32.

use half::{bf16, f16};

use crate::dtype::Elem;

/// Arithmetic every dtype supports.
pub trait Arith: Elem {
    /// `a + b`
    fn add(a: Self, b: Self) -> Self;
    /// `a - b`
    fn sub(a: Self, b: Self) -> Self;
    /// `a * b`
    fn mul(a: Self, b: Self) -> Self;
    /// `a / b` (integer division by zero gives 0 instead of trapping)
    fn div(a: Self, b: Self) -> Self;
    /// Python-style remainder
    fn rem(a: Self, b: Self) -> Self;
    /// `a ^ b`
    fn vpow(a: Self, b: Self) -> Self;
    /// max with NaN propagation
    fn vmax(a: Self, b: Self) -> Self;
    /// min with NaN propagation
    fn vmin(a: Self, b: Self) -> Self;
    /// `-a`
    fn neg(a: Self) -> Self;
    /// `|a|`
    fn abs(a: Self) -> Self;
    /// sign as -1, 0, 1
    fn sign(a: Self) -> Self;
    /// additive identity
    fn vzero() -> Self;
    /// multiplicative identity
    fn vone() -> Self;
    /// true unless zero
    fn nonzero(a: Self) -> bool;
    /// NaN test (false for non-floats)
    fn is_nan(a: Self) -> bool;
    /// lowest value (identity of max)
    fn lowest() -> Self;
    /// highest value (identity of min)
    fn highest() -> Self;
}

macro_rules! float_arith {
    ($t:ty) => {
        impl Arith for $t {
            #[inline(always)]
            fn add(a: Self, b: Self) -> Self {
                a + b
            }
            #[inline(always)]
            fn sub(a: Self, b: Self) -> Self {
                a - b
            }
            #[inline(always)]
            fn mul(a: Self, b: Self) -> Self {
                a * b
            }
            #[inline(always)]
            fn div(a: Self, b: Self) -> Self {
                a / b
            }
            #[inline(always)]
            fn rem(a: Self, b: Self) -> Self {
                let r = a % b;
                if r != 0.0 && ((r < 0.0) != (b < 0.0)) {
                    r + b
                } else {
                    r
                }
            }
            #[inline(always)]
            fn vpow(a: Self, b: Self) -> Self {
                a.powf(b)
            }
            #[inline(always)]
            fn vmax(a: Self, b: Self) -> Self {
                if a.is_nan() || a > b {
                    a
                } else if b.is_nan() {
                    b
                } else {
                    b
                }
            }
            #[inline(always)]
            fn vmin(a: Self, b: Self) -> Self {
                if a.is_nan() || a < b {
                    a
                } else {
                    b
                }
            }
            #[inline(always)]
            fn neg(a: Self) -> Self {
                -a
            }
            #[inline(always)]
            fn abs(a: Self) -> Self {
                a.abs()
            }
            #[inline(always)]
            fn sign(a: Self) -> Self {
                if a > 0.0 {
                    1.0
                } else if a < 0.0 {
                    -1.0
                } else {
                    a * 0.0
                }
            }
            fn vzero() -> Self {
                0.0
            }
            fn vone() -> Self {
                1.0
            }
            #[inline(always)]
            fn nonzero(a: Self) -> bool {
                a != 0.0
            }
            #[inline(always)]
            fn is_nan(a: Self) -> bool {
                a.is_nan()
            }
            fn lowest() -> Self {
                <$t>::NEG_INFINITY
            }
            fn highest() -> Self {
                <$t>::INFINITY
            }
        }
    };
}
float_arith!(f32);
float_arith!(f64);

macro_rules! half_arith {
    ($t:ty) => {
        impl Arith for $t {
            #[inline(always)]
            fn add(a: Self, b: Self) -> Self {
                <$t>::from_f32(a.to_f32() + b.to_f32())
            }
            #[inline(always)]
            fn sub(a: Self, b: Self) -> Self {
                <$t>::from_f32(a.to_f32() - b.to_f32())
            }
            #[inline(always)]
            fn mul(a: Self, b: Self) -> Self {
                <$t>::from_f32(a.to_f32() * b.to_f32())
            }
            #[inline(always)]
            fn div(a: Self, b: Self) -> Self {
                <$t>::from_f32(a.to_f32() / b.to_f32())
            }
            #[inline(always)]
            fn rem(a: Self, b: Self) -> Self {
                <$t>::from_f32(<f32 as Arith>::rem(a.to_f32(), b.to_f32()))
            }
            #[inline(always)]
            fn vpow(a: Self, b: Self) -> Self {
                <$t>::from_f32(a.to_f32().powf(b.to_f32()))
            }
            #[inline(always)]
            fn vmax(a: Self, b: Self) -> Self {
                <$t>::from_f32(<f32 as Arith>::vmax(a.to_f32(), b.to_f32()))
            }
            #[inline(always)]
            fn vmin(a: Self, b: Self) -> Self {
                <$t>::from_f32(<f32 as Arith>::vmin(a.to_f32(), b.to_f32()))
            }
            #[inline(always)]
            fn neg(a: Self) -> Self {
                -a
            }
            #[inline(always)]
            fn abs(a: Self) -> Self {
                <$t>::from_f32(a.to_f32().abs())
            }
            #[inline(always)]
            fn sign(a: Self) -> Self {
                <$t>::from_f32(<f32 as Arith>::sign(a.to_f32()))
            }
            fn vzero() -> Self {
                <$t>::ZERO
            }
            fn vone() -> Self {
                <$t>::ONE
            }
            #[inline(always)]
            fn nonzero(a: Self) -> bool {
                a.to_f32() != 0.0
            }
            #[inline(always)]
            fn is_nan(a: Self) -> bool {
                a.is_nan()
            }
            fn lowest() -> Self {
                <$t>::NEG_INFINITY
            }
            fn highest() -> Self {
                <$t>::INFINITY
            }
        }
    };
}
half_arith!(f16);
half_arith!(bf16);

macro_rules! int_arith {
    ($t:ty, $signed:expr) => {
        #[allow(unused_comparisons)]
        impl Arith for $t {
            #[inline(always)]
            fn add(a: Self, b: Self) -> Self {
                a.wrapping_add(b)
            }
            #[inline(always)]
            fn sub(a: Self, b: Self) -> Self {
                a.wrapping_sub(b)
            }
            #[inline(always)]
            fn mul(a: Self, b: Self) -> Self {
                a.wrapping_mul(b)
            }
            #[inline(always)]
            fn div(a: Self, b: Self) -> Self {
                if b == 0 {
                    0
                } else {
                    // floor division, like Python and torch.div(rounding_mode="floor")
                    let q = a.wrapping_div(b);
                    if (a % b != 0) && ((a < 0) != (b < 0)) {
                        q - 1
                    } else {
                        q
                    }
                }
            }
            #[inline(always)]
            fn rem(a: Self, b: Self) -> Self {
                if b == 0 {
                    return 0;
                }
                let r = a.wrapping_rem(b);
                if r != 0 && ((r < 0) != (b < 0)) {
                    r + b
                } else {
                    r
                }
            }
            #[inline(always)]
            fn vpow(a: Self, b: Self) -> Self {
                if b < 0 as $t {
                    // integer pow with a negative exponent: 1/a^n truncated
                    match a as i64 {
                        1 => 1 as $t,
                        -1 => {
                            if (b as i64) % 2 == 0 {
                                1 as $t
                            } else {
                                a
                            }
                        }
                        _ => 0 as $t,
                    }
                } else {
                    a.wrapping_pow(b as u32)
                }
            }
            #[inline(always)]
            fn vmax(a: Self, b: Self) -> Self {
                if a > b {
                    a
                } else {
                    b
                }
            }
            #[inline(always)]
            fn vmin(a: Self, b: Self) -> Self {
                if a < b {
                    a
                } else {
                    b
                }
            }
            #[inline(always)]
            fn neg(a: Self) -> Self {
                (0 as $t).wrapping_sub(a)
            }
            #[inline(always)]
            #[allow(unused_comparisons)]
            fn abs(a: Self) -> Self {
                if a < 0 as $t {
                    (0 as $t).wrapping_sub(a)
                } else {
                    a
                }
            }
            #[inline(always)]
            #[allow(unused_comparisons)]
            fn sign(a: Self) -> Self {
                if a > 0 as $t {
                    1
                } else if a < 0 as $t {
                    (0 as $t).wrapping_sub(1)
                } else {
                    0
                }
            }
            fn vzero() -> Self {
                0
            }
            fn vone() -> Self {
                1
            }
            #[inline(always)]
            fn nonzero(a: Self) -> bool {
                a != 0
            }
            #[inline(always)]
            fn is_nan(_: Self) -> bool {
                false
            }
            fn lowest() -> Self {
                <$t>::MIN
            }
            fn highest() -> Self {
                <$t>::MAX
            }
        }
    };
}
int_arith!(i64, true);
int_arith!(i32, true);
int_arith!(u8, false);

impl Arith for bool {
    fn add(a: Self, b: Self) -> Self {
        a || b
    }
    fn sub(a: Self, b: Self) -> Self {
        a ^ b
    }
    fn mul(a: Self, b: Self) -> Self {
        a && b
    }
    fn div(a: Self, b: Self) -> Self {
        a && b
    }
    fn rem(_: Self, _: Self) -> Self {
        false
    }
    fn vpow(a: Self, b: Self) -> Self {
        a || !b
    }
    fn vmax(a: Self, b: Self) -> Self {
        a || b
    }
    fn vmin(a: Self, b: Self) -> Self {
        a && b
    }
    fn neg(a: Self) -> Self {
        a
    }
    fn abs(a: Self) -> Self {
        a
    }
    fn sign(a: Self) -> Self {
        a
    }
    fn vzero() -> Self {
        false
    }
    fn vone() -> Self {
        true
    }
    fn nonzero(a: Self) -> bool {
        a
    }
    fn is_nan(_: Self) -> bool {
        false
    }
    fn lowest() -> Self {
        false
    }
    fn highest() -> Self {
        true
    }
}
