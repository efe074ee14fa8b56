// Strided elementwise kernels: unary, binary (also in place), comparisons, where,
// cast, fill and strided copy. The op codes (U_*, B_*) come from ops.cuh, which
// `cargo xtask ptx` generates from tensor-core's UnaryOp and BinaryOp enums.
#include "common.cuh"
#include "ops.cuh"

// ---- unary ---------------------------------------------------------------------------

// Float unary op in the compute type C. Clamp flags: bit 0 = has lower, bit 1 = has upper.
template <class C>
__device__ __forceinline__ C float_unary(int op, C x, C p0, C p1, int flags) {
    const C zero = (C)0, one = (C)1;
    switch (op) {
        case U_NEG: return -x;
        case U_ABS: return m_fabs(x);
        case U_EXP: return m_exp(x);
        case U_LOG: return m_log(x);
        case U_LOG1P: return m_log1p(x);
        case U_EXPM1: return m_expm1(x);
        case U_SQRT: return m_sqrt(x);
        case U_RSQRT: return one / m_sqrt(x);
        case U_SIN: return m_sin(x);
        case U_COS: return m_cos(x);
        case U_TAN: return m_tan(x);
        case U_TANH: return m_tanh(x);
        case U_SIGMOID: return one / (one + m_exp(-x));
        case U_RELU: return (x > zero || is_nan(x)) ? x : zero;
        case U_LEAKY_RELU: return x > zero ? x : x * p0;
        case U_ELU: return x > zero ? x : p0 * m_expm1(x);
        case U_GELU: {
            double xd = (double)x;
            return (C)(0.5 * xd * (1.0 + erf(xd * 0.70710678118654752440)));
        }
        case U_GELU_TANH: {
            double xd = (double)x;
            double k = 0.79788456080286535588;  // sqrt(2 / pi)
            return (C)(0.5 * xd * (1.0 + tanh(k * (xd + 0.044715 * xd * xd * xd))));
        }
        case U_SILU: return x / (one + m_exp(-x));
        case U_LOG_SIGMOID: return (x < zero ? x : zero) - m_log1p(m_exp(-m_fabs(x)));
        case U_MISH: return x * m_tanh(x > (C)20 ? x : m_log1p(m_exp(x)));
        case U_SOFTPLUS: return (x * p0 > p1) ? x : m_log1p(m_exp(x * p0)) / p0;
        case U_SIGN: return x > zero ? one : (x < zero ? -one : x * zero);
        case U_FLOOR: return m_floor(x);
        case U_CEIL: return m_ceil(x);
        case U_ROUND: return m_rint(x);
        case U_TRUNC: return m_trunc(x);
        case U_RECIP: return one / x;
        case U_SQUARE: return x * x;
        case U_ERF: return (C)erf((double)x);
        case U_POW_SCALAR:
            if (p0 == (C)2) return x * x;
            if (p0 == (C)0.5) return m_sqrt(x);
            if (p0 == one) return x;
            return m_pow(x, p0);
        case U_CLAMP: {
            if (is_nan(x)) return x;
            C y = x;
            if ((flags & 1) && y < p0) y = p0;
            if ((flags & 2) && y > p1) y = p1;
            return y;
        }
        case U_ADD_SCALAR: return x + p0;
        case U_MUL_SCALAR: return x * p0;
        default: return x;
    }
}

// Wrapping integer helpers (signed overflow is undefined in C++: go through unsigned).
template <class T> struct Unsigned;
template <> struct Unsigned<u8> { typedef unsigned int type; };
template <> struct Unsigned<int> { typedef unsigned int type; };
template <> struct Unsigned<i64> { typedef u64 type; };
template <class T> __device__ __forceinline__ T w_add(T a, T b) {
    typedef typename Unsigned<T>::type U;
    return (T)((U)a + (U)b);
}
template <class T> __device__ __forceinline__ T w_sub(T a, T b) {
    typedef typename Unsigned<T>::type U;
    return (T)((U)a - (U)b);
}
template <class T> __device__ __forceinline__ T w_mul(T a, T b) {
    typedef typename Unsigned<T>::type U;
    return (T)((U)a * (U)b);
}

// `x < 0` without a warning for unsigned types.
template <class T> __device__ __forceinline__ bool neg(T x) { return x < (T)0; }
template <> __device__ __forceinline__ bool neg<u8>(u8) { return false; }

template <class T>
__device__ __forceinline__ T int_unary(int op, T x, i64 p0, i64 p1, int flags) {
    switch (op) {
        case U_NEG: return w_sub((T)0, x);
        case U_ABS: return neg(x) ? w_sub((T)0, x) : x;
        case U_RELU: return x > (T)0 ? x : (T)0;
        case U_SIGN: return x > (T)0 ? (T)1 : (neg(x) ? w_sub((T)0, (T)1) : (T)0);
        case U_SQUARE: return w_mul(x, x);
        case U_CLAMP: {
            T y = x;
            if ((flags & 1) && y < (T)p0) y = (T)p0;
            if ((flags & 2) && y > (T)p1) y = (T)p1;
            return y;
        }
        case U_ADD_SCALAR: return w_add(x, (T)p0);
        case U_MUL_SCALAR: return w_mul(x, (T)p0);
        default: return x;  // floor/ceil/round/trunc are the identity on integers
    }
}

// Operands: 0 = out, 1 = x. Float params arrive as doubles, integer params as i64
// (converted on the host like Elem::from_f64).
#define UNARY_FLOAT(S, T)                                                                       \
    extern "C" __global__ void unary_##S(Geom g, T* out, const T* x, int op, double p0, double p1, \
                                         int flags) {                                           \
        typedef Compute<T>::type C;                                                             \
        C q0 = (C)p0, q1 = (C)p1;                                                               \
        ew1(g, out, x, [=](T v) { return from_c<T>(float_unary<C>(op, to_c(v), q0, q1, flags)); }); \
    }
FOR_FLOATS(UNARY_FLOAT)

#define UNARY_INT(S, T)                                                                         \
    extern "C" __global__ void unary_##S(Geom g, T* out, const T* x, int op, i64 p0, i64 p1,    \
                                         int flags) {                                           \
        ew1(g, out, x, [=](T v) { return int_unary<T>(op, v, p0, p1, flags); });                \
    }
FOR_INTS(UNARY_INT)

// Predicates to Bool: isnan, isinf, logical_not.
#define UNARY_PRED(S, T)                                                                        \
    extern "C" __global__ void unary_pred_##S(Geom g, u8* out, const T* x, int op) {           \
        ew1(g, out, x, [=](T t) {                                                               \
            double v = to_f64(t);                                                               \
            u8 r;                                                                               \
            if (op == U_IS_NAN) r = v != v;                                                     \
            else if (op == U_IS_INF) r = (v == 1.0 / 0.0) || (v == -1.0 / 0.0);                 \
            else if (op == U_LOGICAL_NOT) r = (v == 0.0);                                       \
            else r = 0;                                                                         \
            return r;                                                                           \
        });                                                                                     \
    }
FOR_NUMERIC(UNARY_PRED)
UNARY_PRED(bool, u8)

// ---- binary --------------------------------------------------------------------------

template <class C>
__device__ __forceinline__ C float_binary(int op, C a, C b) {
    switch (op) {
        case B_ADD: return a + b;
        case B_SUB: return a - b;
        case B_MUL: return a * b;
        case B_DIV: return a / b;
        case B_POW: return m_pow(a, b);
        case B_MAXIMUM: return (is_nan(a) || a > b) ? a : b;
        case B_MINIMUM: return (is_nan(a) || a < b) ? a : b;
        case B_REMAINDER: {
            C r = m_fmod(a, b);
            if (r != (C)0 && ((r < (C)0) != (b < (C)0))) r += b;
            return r;
        }
        case B_ATAN2: return m_atan2(a, b);
        default: return a;
    }
}

template <class T>
__device__ __forceinline__ T int_pow(T a, T b) {
    if (neg(b)) {
        i64 av = (i64)a;
        if (av == 1) return (T)1;
        if (av == -1) return ((i64)b % 2 == 0) ? (T)1 : a;
        return (T)0;
    }
    typedef typename Unsigned<T>::type U;
    U base = (U)a, acc = 1;
    unsigned int e = (unsigned int)b;
    while (e) {
        if (e & 1u) acc *= base;
        base *= base;
        e >>= 1;
    }
    return (T)acc;
}

template <class T>
__device__ __forceinline__ T int_binary(int op, T a, T b) {
    switch (op) {
        case B_ADD: return w_add(a, b);
        case B_SUB: return w_sub(a, b);
        case B_MUL: return w_mul(a, b);
        case B_DIV: {
            if (b == (T)0) return (T)0;
            // i64::MIN / -1 wraps in Rust's wrapping_div.
            if (neg((T)-1) && b == (T)-1) return w_sub((T)0, a);
            T q = a / b;
            if ((a % b != (T)0) && (neg(a) != neg(b))) q = q - (T)1;
            return q;
        }
        case B_POW: return int_pow(a, b);
        case B_MAXIMUM: return a > b ? a : b;
        case B_MINIMUM: return a < b ? a : b;
        case B_REMAINDER: {
            if (b == (T)0) return (T)0;
            if (neg((T)-1) && b == (T)-1) return (T)0;
            T r = a % b;
            if (r != (T)0 && (neg(r) != neg(b))) r = w_add(r, b);
            return r;
        }
        case B_ATAN2: return from_f64<T>(atan2((double)a, (double)b));
        default: return a;
    }
}

__device__ __forceinline__ u8 bool_binary(int op, u8 a, u8 b) {
    bool x = a != 0, y = b != 0;
    switch (op) {
        case B_ADD: return x || y;
        case B_SUB: return x != y;
        case B_MUL: return x && y;
        case B_DIV: return x && y;
        case B_POW: return x || !y;
        case B_MAXIMUM: return x || y;
        case B_MINIMUM: return x && y;
        case B_REMAINDER: return 0;
        case B_ATAN2: return atan2((double)x, (double)y) != 0.0;
        default: return x;
    }
}

template <class C>
__device__ __forceinline__ u8 compare(int op, C a, C b, bool an, bool bn) {
    switch (op) {
        case B_EQ: return a == b;
        case B_NE: return a != b;
        case B_LT: return a < b;
        case B_LE: return a <= b;
        case B_GT: return a > b;
        case B_GE: return a >= b;
        case B_LOGICAL_AND: return an && bn;
        case B_LOGICAL_OR: return an || bn;
        case B_LOGICAL_XOR: return an != bn;
        default: return 0;
    }
}

// Operands: 0 = out (contiguous, or the strided destination for in-place ops), 1 = a, 2 = b.
#define BINARY_FLOAT(S, T)                                                                       \
    extern "C" __global__ void binary_##S(Geom g, T* out, const T* a, const T* b, int op) {      \
        typedef Compute<T>::type C;                                                              \
        ew2(g, out, a, b, [=](T x, T y) { return from_c<T>(float_binary<C>(op, to_c(x), to_c(y))); }); \
    }
FOR_FLOATS(BINARY_FLOAT)

#define BINARY_INT(S, T)                                                                         \
    extern "C" __global__ void binary_##S(Geom g, T* out, const T* a, const T* b, int op) {      \
        ew2(g, out, a, b, [=](T x, T y) { return int_binary<T>(op, x, y); });                     \
    }
FOR_INTS(BINARY_INT)

extern "C" __global__ void binary_bool(Geom g, u8* out, const u8* a, const u8* b, int op) {
    ew2(g, out, a, b, [=](u8 x, u8 y) { return (u8)bool_binary(op, x, y); });
}

#define COMPARE(S, T)                                                                            \
    extern "C" __global__ void compare_##S(Geom g, u8* out, const T* a, const T* b, int op) {    \
        typedef Compute<T>::type C;                                                              \
        ew2(g, out, a, b, [=](T u, T v) {                                                        \
            C x = to_c(u), y = to_c(v);                                                          \
            return (u8)compare<C>(op, x, y, x != (C)0, y != (C)0);                               \
        });                                                                                      \
    }
FOR_NUMERIC(COMPARE)
COMPARE(bool, u8)

// ---- where, fill, copy -----------------------------------------------------------------

// Operands: 0 = out (contiguous), 1 = cond (Bool), 2 = a, 3 = b. Kernels by element size.
#define WHERE(N, T)                                                                                  \
    extern "C" __global__ void where_##N(Geom g, T* out, const u8* c, const T* a, const T* b) {      \
        GRID_STRIDE(i, g.numel) {                                                                    \
            i64 off[4];                                                                              \
            offsets<4>(g, i, off);                                                                   \
            out[off[0]] = c[off[1]] ? a[off[2]] : b[off[3]];                                         \
        }                                                                                            \
    }
WHERE(1, u8)
WHERE(2, unsigned short)
WHERE(4, unsigned int)
WHERE(8, u64)

// Operand 0 = destination view; `bits` holds the value's bytes in the element type.
#define FILL(N, T)                                                              \
    extern "C" __global__ void fill_##N(Geom g, T* out, u64 bits) {             \
        T v = (T)bits;                                                          \
        ew0(g, out, [=]() { return v; });                                       \
    }
FILL(1, u8)
FILL(2, unsigned short)
FILL(4, unsigned int)
FILL(8, u64)

// Operands: 0 = destination view, 1 = source view.
#define COPY(N, T)                                                              \
    extern "C" __global__ void copy_##N(Geom g, T* out, const T* x) {           \
        ew1(g, out, x, [](T v) { return v; });                                  \
    }
COPY(1, u8)
COPY(2, unsigned short)
COPY(4, unsigned int)
COPY(8, u64)

// ---- cast ------------------------------------------------------------------------------


// Like tensor-core's cast: integers convert exactly (wrapping), everything else
// through f64 with saturation; to Bool is `x != 0`.
template <class S, class D>
__device__ __forceinline__ D cast_one(S x) {
    if (IsFloat<S>::value || IsFloat<D>::value) return from_f64<D>(to_f64(x));
    return (D)(i64)x;
}
template <> __device__ __forceinline__ f16 cast_one<float, f16>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ bf16 cast_one<float, bf16>(float x) { return __float2bfloat16_rn(x); }
template <> __device__ __forceinline__ float cast_one<f16, float>(f16 x) { return __half2float(x); }
template <> __device__ __forceinline__ float cast_one<bf16, float>(bf16 x) { return __bfloat162float(x); }

// Operands: 0 = out (contiguous), 1 = x.
#define CAST(SS, ST, DS, DT)                                                            \
    extern "C" __global__ void cast_##SS##_##DS(Geom g, DT* out, const ST* x) {         \
        ew1(g, out, x, [](ST v) { return cast_one<ST, DT>(v); });                       \
    }
#define CAST_TO_BOOL(SS, ST)                                                            \
    extern "C" __global__ void cast_##SS##_bool(Geom g, u8* out, const ST* x) {         \
        ew1(g, out, x, [](ST v) { return (u8)(to_f64(v) != 0.0); });                    \
    }
// bool sources read as 0/1 u8, which the integer path converts exactly.
#define CAST_FROM(SS, ST)                                                               \
    CAST(SS, ST, u8, u8) CAST(SS, ST, i32, int) CAST(SS, ST, i64, i64)                   \
    CAST(SS, ST, f16, f16) CAST(SS, ST, bf16, bf16) CAST(SS, ST, f32, float)             \
    CAST(SS, ST, f64, double) CAST_TO_BOOL(SS, ST)
FOR_NUMERIC(CAST_FROM)
CAST_FROM(bool, u8)
