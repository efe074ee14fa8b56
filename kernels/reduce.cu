// Reductions over any set of dims (two passes: per-split partials, then a final
// combine), argmax/argmin, cumulative scans, and the fused softmax / log_softmax and
// layer_norm over the last dim.
#include "common.cuh"
#include "ops.cuh"

// Accumulator type: float for f16/bf16/f32, double for f64, i64 for integers and bool.
template <class T> struct Acc { typedef i64 type; };
template <> struct Acc<f16> { typedef float type; };
template <> struct Acc<bf16> { typedef float type; };
template <> struct Acc<float> { typedef float type; };
template <> struct Acc<double> { typedef double type; };

template <class A> __device__ __forceinline__ A acc_identity(int op) {
    switch (op) {
        case R_SUM: case R_ANY: return (A)0;
        case R_PROD: case R_ALL: return (A)1;
        case R_MAX: return (A)-1.0 / (A)0.0;
        default: return (A)1.0 / (A)0.0;
    }
}
template <> __device__ __forceinline__ i64 acc_identity<i64>(int op) {
    switch (op) {
        case R_SUM: case R_ANY: return 0;
        case R_PROD: case R_ALL: return 1;
        case R_MAX: return (i64)(-9223372036854775807LL - 1);
        default: return 9223372036854775807LL;
    }
}

template <class A> __device__ __forceinline__ A acc_combine(int op, A a, A b) {
    switch (op) {
        case R_SUM: return a + b;
        case R_PROD: return a * b;
        case R_MAX: return (is_nan(a) || a > b) ? a : b;
        case R_MIN: return (is_nan(a) || a < b) ? a : b;
        case R_ALL: return (a != (A)0) && (b != (A)0);
        default: return (a != (A)0) || (b != (A)0);
    }
}
template <> __device__ __forceinline__ i64 acc_combine<i64>(int op, i64 a, i64 b) {
    switch (op) {
        case R_SUM: return (i64)((u64)a + (u64)b);
        case R_PROD: return (i64)((u64)a * (u64)b);
        case R_MAX: return a > b ? a : b;
        case R_MIN: return a < b ? a : b;
        case R_ALL: return (a != 0) && (b != 0);
        default: return (a != 0) || (b != 0);
    }
}

template <class T> __device__ __forceinline__ typename Acc<T>::type acc_load(T x) {
    return (typename Acc<T>::type)to_c(x);
}

// Pass 1: grid (out_numel-chunks, splits). Block (o, s) folds elements
// [s*chunk, (s+1)*chunk) of output o's reduction into partial[o * splits + s].
template <class T>
__device__ void reduce_partial(const RGeom& g, const T* x, typename Acc<T>::type* partial, int op, int splits,
                               i64 chunk) {
    typedef typename Acc<T>::type A;
    __shared__ A sh[32];
    int s = blockIdx.y;
    i64 lo = (i64)s * chunk;
    i64 hi = lo + chunk;
    if (hi > g.red_numel) hi = g.red_numel;
    for (i64 o = blockIdx.x; o < g.out_numel; o += gridDim.x) {
        i64 base, ob;
        kept_offsets(g, o, &base, &ob);
        A acc = acc_identity<A>(op);
        for (i64 r = lo + threadIdx.x; r < hi; r += blockDim.x) acc = acc_combine<A>(op, acc, acc_load(x[base + red_offset(g, r)]));
        acc = block_reduce(acc, [op](A a, A b) { return acc_combine<A>(op, a, b); }, acc_identity<A>(op), sh);
        if (threadIdx.x == 0) partial[o * splits + s] = acc;
        __syncthreads();
    }
}

// Pass 2: one thread per output combines its `splits` partials in order.
// With BOOL_OUT the output is `acc != 0` (all/any, and every reduction of Bool).
template <class T, class O, bool BOOL_OUT>
__device__ void reduce_final(const typename Acc<T>::type* partial, O* out, int op, int splits, i64 out_numel) {
    typedef typename Acc<T>::type A;
    GRID_STRIDE(o, out_numel) {
        A acc = acc_identity<A>(op);
        for (int s = 0; s < splits; ++s) acc = acc_combine<A>(op, acc, partial[o * splits + s]);
        if (BOOL_OUT) {
            out[o] = (O)(acc != (A)0);
        } else {
            out[o] = (O)from_c<T>((typename Compute<T>::type)acc);
        }
    }
}

#define REDUCE(S, T)                                                                                    \
    extern "C" __global__ void reduce_partial_##S(RGeom g, const T* x, Acc<T>::type* partial, int op,   \
                                                  int splits, i64 chunk) {                              \
        reduce_partial<T>(g, x, partial, op, splits, chunk);                                            \
    }                                                                                                   \
    extern "C" __global__ void reduce_final_##S(const Acc<T>::type* partial, T* out, int op, int splits, \
                                                i64 out_numel) {                                        \
        reduce_final<T, T, false>(partial, out, op, splits, out_numel);                                        \
    }                                                                                                   \
    extern "C" __global__ void reduce_final_bool_##S(const Acc<T>::type* partial, u8* out, int op,      \
                                                     int splits, i64 out_numel) {                       \
        reduce_final<T, u8, true>(partial, out, op, splits, out_numel);                                       \
    }
FOR_NUMERIC(REDUCE)
REDUCE(bool, u8)

// ---- argmax / argmin -------------------------------------------------------------------

// One block per output; reduces (value, index) pairs over the single reduced dim.
// NaN wins (first NaN), then the larger (smaller) value, ties to the lower index.
template <class C>
__device__ __forceinline__ bool arg_better(C v, i64 i, C bv, i64 bi, bool is_max) {
    if (bi < 0) return i >= 0;
    if (i < 0) return false;
    bool vn = is_nan(v), bn = is_nan(bv);
    if (vn || bn) {
        if (vn && bn) return i < bi;
        return vn;
    }
    if (v == bv) return i < bi;
    return is_max ? (v > bv) : (v < bv);
}

template <class T>
__device__ void arg_reduce(const RGeom& g, const T* x, i64* out, int is_max) {
    typedef typename Compute<T>::type C;
    __shared__ C shv[32];
    __shared__ i64 shi[32];
    for (i64 o = blockIdx.x; o < g.out_numel; o += gridDim.x) {
        i64 base, ob;
        kept_offsets(g, o, &base, &ob);
        C bv = (C)0;
        i64 bi = -1;
        for (i64 r = threadIdx.x; r < g.red_numel; r += blockDim.x) {
            C v = to_c(x[base + r * g.rstride[0]]);
            if (arg_better(v, r, bv, bi, is_max != 0)) {
                bv = v;
                bi = r;
            }
        }
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) {
            C v = __shfl_down_sync(0xffffffffu, bv, off);
            i64 i = __shfl_down_sync(0xffffffffu, bi, off);
            if (arg_better(v, i, bv, bi, is_max != 0)) {
                bv = v;
                bi = i;
            }
        }
        int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
        if (lane == 0) {
            shv[wid] = bv;
            shi[wid] = bi;
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            int nw = (blockDim.x + 31) >> 5;
            for (int w = 1; w < nw; ++w) {
                if (arg_better(shv[w], shi[w], bv, bi, is_max != 0)) {
                    bv = shv[w];
                    bi = shi[w];
                }
            }
            out[o] = bi < 0 ? 0 : bi;
        }
        __syncthreads();
    }
}

#define ARG(S, T)                                                                               \
    extern "C" __global__ void arg_reduce_##S(RGeom g, const T* x, i64* out, int is_max) {      \
        arg_reduce<T>(g, x, out, is_max);                                                       \
    }
FOR_NUMERIC(ARG)
ARG(bool, u8)

// ---- cumsum / cumprod -------------------------------------------------------------------

// One thread per line along the scanned dim (rrank == 1); floats accumulate in double,
// integers in wrapping i64, like the CPU backend.
template <class T>
__device__ void scan_lines(const RGeom& g, const T* x, T* out, int prod) {
    GRID_STRIDE(o, g.out_numel) {
        i64 base, ob;
        kept_offsets(g, o, &base, &ob);
        i64 n = g.red_numel, st = g.rstride[0];
        if constexpr (IsFloat<T>::value) {
            double acc = prod ? 1.0 : 0.0;
            for (i64 r = 0; r < n; ++r) {
                double v = to_f64(x[base + r * st]);
                acc = prod ? acc * v : acc + v;
                out[ob + r * g.ostride_red] = from_f64<T>(acc);
            }
        } else {
            u64 acc = prod ? 1 : 0;
            for (i64 r = 0; r < n; ++r) {
                u64 v = (u64)(i64)x[base + r * st];
                acc = prod ? acc * v : acc + v;
                out[ob + r * g.ostride_red] = (T)(i64)acc;
            }
        }
    }
}

#define SCAN(S, T)                                                                              \
    extern "C" __global__ void scan_##S(RGeom g, const T* x, T* out, int prod) {                \
        scan_lines<T>(g, x, out, prod);                                                         \
    }
FOR_NUMERIC(SCAN)

// Bool lines accumulate as integers; the output is `acc != 0`.
extern "C" __global__ void scan_bool(RGeom g, const u8* x, u8* out, int prod) {
    GRID_STRIDE(o, g.out_numel) {
        i64 base, ob;
        kept_offsets(g, o, &base, &ob);
        u64 acc = prod ? 1 : 0;
        for (i64 r = 0; r < g.red_numel; ++r) {
            u64 v = x[base + r * g.rstride[0]] != 0;
            acc = prod ? acc * v : acc + v;
            out[ob + r * g.ostride_red] = acc != 0;
        }
    }
}

// ---- softmax / log_softmax over the last dim of a contiguous [rows, cols] -------------

// One block per row. f16/bf16/f32 compute in float, f64 in double. A row whose max is
// -inf uses 0 as its shift (as the CPU backend does). log-softmax is (x - max) - log(sum),
// never x - (max + log(sum)): the latter rounds at the magnitude of max.
template <class T>
__device__ void softmax_rows(const T* x, T* out, i64 rows, i64 cols, int log) {
    typedef typename Compute<T>::type C;
    __shared__ C sh[32];
    const C ninf = (C)-1.0 / (C)0.0;
    for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {
        const T* row = x + r * cols;
        T* orow = out + r * cols;
        C m = ninf;
        for (i64 c = threadIdx.x; c < cols; c += blockDim.x) {
            C v = to_c(row[c]);
            if (v > m || is_nan(v)) m = v;
        }
        m = block_allreduce(m, [](C a, C b) { return (is_nan(a) || a > b) ? a : b; }, ninf, sh);
        if (m == ninf) m = (C)0;
        C sum = (C)0;
        for (i64 c = threadIdx.x; c < cols; c += blockDim.x) sum += m_exp(to_c(row[c]) - m);
        sum = block_allreduce(sum, [](C a, C b) { return a + b; }, (C)0, sh);
        if (log) {
            C ls = m_log(sum);
            for (i64 c = threadIdx.x; c < cols; c += blockDim.x) orow[c] = from_c<T>((to_c(row[c]) - m) - ls);
        } else {
            C inv = (C)1 / sum;
            for (i64 c = threadIdx.x; c < cols; c += blockDim.x) orow[c] = from_c<T>(m_exp(to_c(row[c]) - m) * inv);
        }
    }
}

// The same for rows of at most VPT * blockDim.x elements: each thread keeps its part of
// the row in registers, so the row is read from memory once instead of three times.
template <class T, int VPT>
__device__ void softmax_rows_cached(const T* x, T* out, i64 rows, i64 cols, int log) {
    typedef typename Compute<T>::type C;
    __shared__ C sh[32];
    const C ninf = (C)-1.0 / (C)0.0;
    for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {
        const T* row = x + r * cols;
        T* orow = out + r * cols;
        C v[VPT];
        C m = ninf;
#pragma unroll
        for (int k = 0; k < VPT; ++k) {
            i64 c = threadIdx.x + (i64)k * blockDim.x;
            v[k] = c < cols ? to_c(row[c]) : ninf;
            if (v[k] > m || is_nan(v[k])) m = v[k];
        }
        m = block_allreduce(m, [](C a, C b) { return (is_nan(a) || a > b) ? a : b; }, ninf, sh);
        if (m == ninf) m = (C)0;
        C sum = (C)0;
#pragma unroll
        for (int k = 0; k < VPT; ++k) {
            i64 c = threadIdx.x + (i64)k * blockDim.x;
            if (c < cols) {
                v[k] = v[k] - m;
                sum += m_exp(v[k]);
            }
        }
        sum = block_allreduce(sum, [](C a, C b) { return a + b; }, (C)0, sh);
        const C ls = m_log(sum), inv = (C)1 / sum;
#pragma unroll
        for (int k = 0; k < VPT; ++k) {
            i64 c = threadIdx.x + (i64)k * blockDim.x;
            if (c < cols) orow[c] = from_c<T>(log ? v[k] - ls : m_exp(v[k]) * inv);
        }
    }
}

#define SOFTMAX(S, T)                                                                            \
    extern "C" __global__ void softmax_##S(const T* x, T* out, i64 rows, i64 cols, int log) {    \
        if (cols <= 16 * (i64)blockDim.x) softmax_rows_cached<T, 16>(x, out, rows, cols, log);  \
        else softmax_rows<T>(x, out, rows, cols, log);                                           \
    }
FOR_FLOATS(SOFTMAX)

// ---- layer_norm over the last dim of a contiguous [rows, cols] -------------------------

// One block per row: mean, then the (biased) variance of the deviations, then
// y = (x - mean) * rstd * w + b. `mean` and `rstd` (one per row, in the compute type)
// are saved for the backward pass when non-null.
template <class T>
__device__ void layer_norm_rows(const T* x, const T* w, const T* b, T* out, typename Compute<T>::type* mean_out,
                                typename Compute<T>::type* rstd_out, i64 rows, i64 cols, double eps) {
    typedef typename Compute<T>::type C;
    __shared__ C sh[32];
    for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {
        const T* row = x + r * cols;
        T* orow = out + r * cols;
        C s = (C)0;
        for (i64 c = threadIdx.x; c < cols; c += blockDim.x) s += to_c(row[c]);
        s = block_allreduce(s, [](C a, C b) { return a + b; }, (C)0, sh);
        C mean = s / (C)cols;
        C q = (C)0;
        for (i64 c = threadIdx.x; c < cols; c += blockDim.x) {
            C d = to_c(row[c]) - mean;
            q += d * d;
        }
        q = block_allreduce(q, [](C a, C b) { return a + b; }, (C)0, sh);
        C rstd = (C)1 / m_sqrt(q / (C)cols + (C)eps);
        for (i64 c = threadIdx.x; c < cols; c += blockDim.x) {
            C y = (to_c(row[c]) - mean) * rstd;
            if (w) y *= to_c(w[c]);
            if (b) y += to_c(b[c]);
            orow[c] = from_c<T>(y);
        }
        if (threadIdx.x == 0) {
            if (mean_out) mean_out[r] = mean;
            if (rstd_out) rstd_out[r] = rstd;
        }
    }
}

#define LAYER_NORM(S, T)                                                                          \
    extern "C" __global__ void layer_norm_##S(const T* x, const T* w, const T* b, T* out,         \
                                              Compute<T>::type* mean, Compute<T>::type* rstd,     \
                                              i64 rows, i64 cols, double eps) {                   \
        layer_norm_rows<T>(x, w, b, out, mean, rstd, rows, cols, eps);                            \
    }
FOR_FLOATS(LAYER_NORM)
