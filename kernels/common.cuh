// Shared definitions for every tensor-cuda kernel file.
//
// Element types, by the suffix used in kernel names:
//   bool -> unsigned char (0 or 1), u8 -> unsigned char, i32 -> int, i64 -> long long,
//   f16 -> __half, bf16 -> __nv_bfloat16, f32 -> float, f64 -> double.
// Geometry structs are passed BY VALUE; their layout must match the #[repr(C)]
// structs in crates/tensor-cuda/src/geom.rs.
#pragma once

#include <cuda_fp16.h>
#include <cuda_bf16.h>

#define MAX_RANK 8
#define MAX_OPS 4

typedef unsigned char u8;
typedef long long i64;
typedef unsigned long long u64;
typedef __half f16;
typedef __nv_bfloat16 bf16;

// Shape of the iteration space plus strides and offsets of up to MAX_OPS operands.
// Bit k of `contig` says operand k is contiguous (its offset is offset[k] + linear index).
struct Geom {
    int rank;
    int contig;
    i64 numel;
    i64 shape[MAX_RANK];
    i64 strides[MAX_OPS][MAX_RANK];
    i64 offset[MAX_OPS];
};

// Geometry of a reduction: kept dims (with input and output strides) and reduced dims.
struct RGeom {
    int krank;
    int rrank;
    i64 out_numel;
    i64 red_numel;
    i64 offset;
    i64 ostride_red;
    i64 kshape[MAX_RANK];
    i64 kstride[MAX_RANK];
    i64 kostride[MAX_RANK];
    i64 rshape[MAX_RANK];
    i64 rstride[MAX_RANK];
};

// Storage offsets of the first N operands for the linear index `i` of the iteration space.
template <int N>
__device__ __forceinline__ void offsets(const Geom& g, i64 i, i64* off) {
    if (((g.contig) & ((1 << N) - 1)) == ((1 << N) - 1)) {
#pragma unroll
        for (int k = 0; k < N; ++k) off[k] = g.offset[k] + i;
        return;
    }
#pragma unroll
    for (int k = 0; k < N; ++k) off[k] = g.offset[k];
    i64 rem = i;
#pragma unroll
    for (int d = MAX_RANK - 1; d >= 0; --d) {
        if (d < g.rank) {
            i64 s = g.shape[d];
            i64 c = rem % s;
            rem /= s;
#pragma unroll
            for (int k = 0; k < N; ++k) off[k] += c * g.strides[k][d];
        }
    }
#pragma unroll
    for (int k = 0; k < N; ++k) {
        if (g.contig & (1 << k)) off[k] = g.offset[k] + i;
    }
}

// Offset of the kept part (input and output) for output index `o` of a reduction.
__device__ __forceinline__ void kept_offsets(const RGeom& g, i64 o, i64* in_off, i64* out_off) {
    i64 a = g.offset, b = 0, rem = o;
#pragma unroll
    for (int d = MAX_RANK - 1; d >= 0; --d) {
        if (d < g.krank) {
            i64 s = g.kshape[d];
            i64 c = rem % s;
            rem /= s;
            a += c * g.kstride[d];
            b += c * g.kostride[d];
        }
    }
    *in_off = a;
    *out_off = b;
}

// Offset of reduced-space element `r` (relative to the kept base).
__device__ __forceinline__ i64 red_offset(const RGeom& g, i64 r) {
    if (g.rrank == 1) return r * g.rstride[0];
    i64 a = 0, rem = r;
#pragma unroll
    for (int d = MAX_RANK - 1; d >= 0; --d) {
        if (d < g.rrank) {
            i64 s = g.rshape[d];
            i64 c = rem % s;
            rem /= s;
            a += c * g.rstride[d];
        }
    }
    return a;
}

#define GRID_STRIDE(i, n) \
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (i64)blockDim.x * gridDim.x)

// ---- conversions through the compute type -------------------------------------------

// The type arithmetic is done in: float for f16/bf16/f32, double for f64, the type
// itself for integers.
template <class T> struct Compute { typedef T type; };
template <> struct Compute<f16> { typedef float type; };
template <> struct Compute<bf16> { typedef float type; };

__device__ __forceinline__ float to_c(f16 x) { return __half2float(x); }
__device__ __forceinline__ float to_c(bf16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_c(float x) { return x; }
__device__ __forceinline__ double to_c(double x) { return x; }
__device__ __forceinline__ int to_c(int x) { return x; }
__device__ __forceinline__ i64 to_c(i64 x) { return x; }
__device__ __forceinline__ u8 to_c(u8 x) { return x; }

template <class T> __device__ __forceinline__ T from_c(typename Compute<T>::type x) { return (T)x; }
template <> __device__ __forceinline__ f16 from_c<f16>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ bf16 from_c<bf16>(float x) { return __float2bfloat16_rn(x); }

// Value as double (exact for every type but i64 beyond 2^53).
__device__ __forceinline__ double to_f64(f16 x) { return (double)__half2float(x); }
__device__ __forceinline__ double to_f64(bf16 x) { return (double)__bfloat162float(x); }
__device__ __forceinline__ double to_f64(float x) { return (double)x; }
__device__ __forceinline__ double to_f64(double x) { return x; }
__device__ __forceinline__ double to_f64(int x) { return (double)x; }
__device__ __forceinline__ double to_f64(i64 x) { return (double)x; }
__device__ __forceinline__ double to_f64(u8 x) { return (double)x; }

// Saturating float -> integer conversion (NaN -> 0), like Rust's `as`.
template <class I> __device__ __forceinline__ I sat_int(double v, double lo, double hi) {
    if (v != v) return (I)0;
    if (v <= lo) return (I)lo;
    if (v >= hi) return (I)hi;
    return (I)v;
}

// From double, like tensor-core's Elem::from_f64.
template <class T> __device__ __forceinline__ T from_f64(double v);
template <> __device__ __forceinline__ f16 from_f64<f16>(double v) { return __double2half(v); }
template <> __device__ __forceinline__ bf16 from_f64<bf16>(double v) { return __double2bfloat16(v); }
template <> __device__ __forceinline__ float from_f64<float>(double v) { return (float)v; }
template <> __device__ __forceinline__ double from_f64<double>(double v) { return v; }
template <> __device__ __forceinline__ int from_f64<int>(double v) {
    return sat_int<int>(v, -2147483648.0, 2147483647.0);
}
template <> __device__ __forceinline__ i64 from_f64<i64>(double v) {
    if (v != v) return 0;
    if (v <= -9223372036854775808.0) return (i64)(-9223372036854775807LL - 1);
    if (v >= 9223372036854775807.0) return 9223372036854775807LL;
    return (i64)v;
}
template <> __device__ __forceinline__ u8 from_f64<u8>(double v) { return sat_int<u8>(v, 0.0, 255.0); }

// True for the float element types.
template <class T> struct IsFloat { enum { value = 0 }; };
template <> struct IsFloat<f16> { enum { value = 1 }; };
template <> struct IsFloat<bf16> { enum { value = 1 }; };
template <> struct IsFloat<float> { enum { value = 1 }; };
template <> struct IsFloat<double> { enum { value = 1 }; };

// ---- math wrappers that pick the float or double function ---------------------------

#define MATH1(name, ff, df) \
    __device__ __forceinline__ float name(float x) { return ff(x); } \
    __device__ __forceinline__ double name(double x) { return df(x); }
MATH1(m_exp, expf, exp)
MATH1(m_log, logf, log)
MATH1(m_log1p, log1pf, log1p)
MATH1(m_expm1, expm1f, expm1)
MATH1(m_sqrt, sqrtf, sqrt)
MATH1(m_rsqrt, rsqrtf, rsqrt)
MATH1(m_sin, sinf, sin)
MATH1(m_cos, cosf, cos)
MATH1(m_tan, tanf, tan)
MATH1(m_tanh, tanhf, tanh)
MATH1(m_floor, floorf, floor)
MATH1(m_ceil, ceilf, ceil)
MATH1(m_rint, rintf, rint)
MATH1(m_trunc, truncf, trunc)
MATH1(m_erf, erff, erf)
MATH1(m_fabs, fabsf, fabs)
#define MATH2(name, ff, df) \
    __device__ __forceinline__ float name(float x, float y) { return ff(x, y); } \
    __device__ __forceinline__ double name(double x, double y) { return df(x, y); }
MATH2(m_pow, powf, pow)
MATH2(m_fmod, fmodf, fmod)
MATH2(m_atan2, atan2f, atan2)

template <class C> __device__ __forceinline__ bool is_nan(C x) { return x != x; }

// ---- warp and block reductions ------------------------------------------------------

template <class T, class F>
__device__ __forceinline__ T warp_reduce(T v, F f) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = f(v, __shfl_down_sync(0xffffffffu, v, o));
    return v;
}

// Reduces `v` over the block; the result is valid in thread 0. `sh` needs 32 slots.
template <class T, class F>
__device__ __forceinline__ T block_reduce(T v, F f, T identity, T* sh) {
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
    v = warp_reduce(v, f);
    __syncthreads();
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    int nw = (blockDim.x + 31) >> 5;
    v = (threadIdx.x < nw) ? sh[lane] : identity;
    if (wid == 0) v = warp_reduce(v, f);
    return v;
}

// Like block_reduce, but every thread gets the result.
template <class T, class F>
__device__ __forceinline__ T block_allreduce(T v, F f, T identity, T* sh) {
    v = block_reduce(v, f, identity, sh);
    __syncthreads();
    if (threadIdx.x == 0) sh[0] = v;
    __syncthreads();
    T r = sh[0];
    __syncthreads();
    return r;
}

// ---- elementwise loops ------------------------------------------------------------------
//
// Each helper runs `f` over the iteration space of `g`. When every operand is contiguous
// and 16-byte aligned (and the element sizes agree) each thread moves 16-byte packs;
// when contiguous but unaligned it handles EW_ILP elements per step, loading all of
// them before it stores any; either way several loads are in flight per thread (a plain
// grid-stride loop keeps one, which leaves the memory system half idle). Otherwise it
// decodes strided offsets per element.
// Only the same element of an in-place operand is ever read and then written, so the
// reordering is safe when `out` aliases an input.
#define EW_ILP 4

// V elements of T loaded or stored as one 16-byte access.
template <class T, int V>
struct alignas(sizeof(T) * V) Pack {
    T v[V];
};

__device__ __forceinline__ bool aligned16(const void* p) { return ((unsigned long long)p & 15) == 0; }

template <class TO, class F>
__device__ __forceinline__ void ew0(const Geom& g, TO* out, F f) {
    if (g.contig & 1) {
        TO* o = out + g.offset[0];
        const i64 n = g.numel, st = (i64)blockDim.x * gridDim.x;
        for (i64 i0 = (i64)blockIdx.x * blockDim.x + threadIdx.x; i0 < n; i0 += EW_ILP * st) {
#pragma unroll
            for (int k = 0; k < EW_ILP; ++k) {
                i64 i = i0 + k * st;
                if (i < n) o[i] = f();
            }
        }
        return;
    }
    GRID_STRIDE(i, g.numel) {
        i64 off[1];
        offsets<1>(g, i, off);
        out[off[0]] = f();
    }
}

template <class TO, class TA, class F>
__device__ __forceinline__ void ew1(const Geom& g, TO* out, const TA* a, F f) {
    if ((g.contig & 3) == 3) {
        TO* o = out + g.offset[0];
        const TA* x = a + g.offset[1];
        const i64 n = g.numel, st = (i64)blockDim.x * gridDim.x;
        if constexpr (sizeof(TO) == sizeof(TA) && sizeof(TA) <= 8) {
            // 16-byte accesses when both ends are aligned; the tail goes element-wise.
            constexpr int V = 16 / sizeof(TA);
            if (aligned16(o) && aligned16(x)) {
                const i64 nv = n / V;
                const Pack<TA, V>* xv = (const Pack<TA, V>*)x;
                Pack<TO, V>* ov = (Pack<TO, V>*)o;
                GRID_STRIDE(j, nv) {
                    Pack<TA, V> u = xv[j];
                    Pack<TO, V> r;
#pragma unroll
                    for (int k = 0; k < V; ++k) r.v[k] = f(u.v[k]);
                    ov[j] = r;
                }
                for (i64 i = nv * V + (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += st) o[i] = f(x[i]);
                return;
            }
        }
        for (i64 i0 = (i64)blockIdx.x * blockDim.x + threadIdx.x; i0 < n; i0 += EW_ILP * st) {
            TA v[EW_ILP];
#pragma unroll
            for (int k = 0; k < EW_ILP; ++k) {
                i64 i = i0 + k * st;
                if (i < n) v[k] = x[i];
            }
#pragma unroll
            for (int k = 0; k < EW_ILP; ++k) {
                i64 i = i0 + k * st;
                if (i < n) o[i] = f(v[k]);
            }
        }
        return;
    }
    GRID_STRIDE(i, g.numel) {
        i64 off[2];
        offsets<2>(g, i, off);
        out[off[0]] = f(a[off[1]]);
    }
}

template <class TO, class TA, class TB, class F>
__device__ __forceinline__ void ew2(const Geom& g, TO* out, const TA* a, const TB* b, F f) {
    if ((g.contig & 7) == 7) {
        TO* o = out + g.offset[0];
        const TA* x = a + g.offset[1];
        const TB* y = b + g.offset[2];
        const i64 n = g.numel, st = (i64)blockDim.x * gridDim.x;
        if constexpr (sizeof(TO) == sizeof(TA) && sizeof(TA) == sizeof(TB) && sizeof(TA) <= 8) {
            constexpr int V = 16 / sizeof(TA);
            if (aligned16(o) && aligned16(x) && aligned16(y)) {
                const i64 nv = n / V;
                const Pack<TA, V>* xv = (const Pack<TA, V>*)x;
                const Pack<TB, V>* yv = (const Pack<TB, V>*)y;
                Pack<TO, V>* ov = (Pack<TO, V>*)o;
                GRID_STRIDE(j, nv) {
                    Pack<TA, V> u = xv[j];
                    Pack<TB, V> w = yv[j];
                    Pack<TO, V> r;
#pragma unroll
                    for (int k = 0; k < V; ++k) r.v[k] = f(u.v[k], w.v[k]);
                    ov[j] = r;
                }
                for (i64 i = nv * V + (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += st) o[i] = f(x[i], y[i]);
                return;
            }
        }
        for (i64 i0 = (i64)blockIdx.x * blockDim.x + threadIdx.x; i0 < n; i0 += EW_ILP * st) {
            TA u[EW_ILP];
            TB v[EW_ILP];
#pragma unroll
            for (int k = 0; k < EW_ILP; ++k) {
                i64 i = i0 + k * st;
                if (i < n) {
                    u[k] = x[i];
                    v[k] = y[i];
                }
            }
#pragma unroll
            for (int k = 0; k < EW_ILP; ++k) {
                i64 i = i0 + k * st;
                if (i < n) o[i] = f(u[k], v[k]);
            }
        }
        return;
    }
    GRID_STRIDE(i, g.numel) {
        i64 off[3];
        offsets<3>(g, i, off);
        out[off[0]] = f(a[off[1]], b[off[2]]);
    }
}

// Instantiates macro M(suffix, type) for each element type group.
#define FOR_FLOATS(M) M(f16, f16) M(bf16, bf16) M(f32, float) M(f64, double)
#define FOR_INTS(M) M(u8, u8) M(i32, int) M(i64, i64)
#define FOR_NUMERIC(M) FOR_FLOATS(M) FOR_INTS(M)
