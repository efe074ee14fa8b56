// Gather, scatter (plain and accumulating with atomics), per-row bitonic sort, and a
// naive batched matmul for the integer dtypes (cuBLAS does the floats).
#include "common.cuh"

// Iteration space: the index tensor's shape. Operands: 0 = out (contiguous), 1 = index
// (I64), 2 = src with the gathered dim's stride set to 0. `sd` is src's real stride
// along that dim and `size` its length (negative indices wrap once).
#define GATHER(N, T)                                                                                  \
    extern "C" __global__ void gather_##N(Geom g, T* out, const i64* index, const T* src, i64 sd,     \
                                          i64 size) {                                                 \
        GRID_STRIDE(i, g.numel) {                                                                     \
            i64 off[3];                                                                               \
            offsets<3>(g, i, off);                                                                    \
            i64 k = index[off[1]];                                                                    \
            if (k < 0) k += size;                                                                     \
            out[off[0]] = src[off[2] + k * sd];                                                       \
        }                                                                                             \
    }
GATHER(1, u8)
GATHER(2, unsigned short)
GATHER(4, unsigned int)
GATHER(8, u64)

// Iteration space: the index tensor's shape. Operands: 0 = dst with the scattered dim's
// stride set to 0, 1 = index, 2 = src. `dd` is dst's real stride along the dim.
// Colliding plain writes leave one of the written values (unspecified which, as in PyTorch).
#define SCATTER(N, T)                                                                                 \
    extern "C" __global__ void scatter_##N(Geom g, T* dst, const i64* index, const T* src, i64 dd,    \
                                           i64 size) {                                                \
        GRID_STRIDE(i, g.numel) {                                                                     \
            i64 off[3];                                                                               \
            offsets<3>(g, i, off);                                                                    \
            i64 k = index[off[1]];                                                                    \
            if (k < 0) k += size;                                                                     \
            dst[off[0] + k * dd] = src[off[2]];                                                       \
        }                                                                                             \
    }
SCATTER(1, u8)
SCATTER(2, unsigned short)
SCATTER(4, unsigned int)
SCATTER(8, u64)

// Atomic accumulation for every dtype. Bytes (u8 wraps, Bool ors) go through a
// compare-and-swap on the aligned 32-bit word that holds them.
__device__ __forceinline__ void atomic_acc(float* p, float v) { atomicAdd(p, v); }
__device__ __forceinline__ void atomic_acc(double* p, double v) { atomicAdd(p, v); }
__device__ __forceinline__ void atomic_acc(f16* p, f16 v) { atomicAdd(p, v); }
__device__ __forceinline__ void atomic_acc(bf16* p, bf16 v) { atomicAdd(p, v); }
__device__ __forceinline__ void atomic_acc(int* p, int v) { atomicAdd(p, v); }
__device__ __forceinline__ void atomic_acc(i64* p, i64 v) { atomicAdd((u64*)p, (u64)v); }
template <bool IS_BOOL>
__device__ __forceinline__ void atomic_acc_byte(u8* p, u8 v) {
    size_t addr = (size_t)p;
    unsigned int* word = (unsigned int*)(addr & ~(size_t)3);
    unsigned int shift = (unsigned int)(addr & 3) * 8;
    unsigned int old = *word, assumed;
    do {
        assumed = old;
        unsigned int cur = (assumed >> shift) & 0xffu;
        unsigned int nv = IS_BOOL ? ((cur | v) != 0) : ((cur + v) & 0xffu);
        unsigned int repl = (assumed & ~(0xffu << shift)) | (nv << shift);
        old = atomicCAS(word, assumed, repl);
    } while (old != assumed);
}
__device__ __forceinline__ void atomic_acc(u8* p, u8 v) { atomic_acc_byte<false>(p, v); }

#define SCATTER_ADD(S, T)                                                                             \
    extern "C" __global__ void scatter_add_##S(Geom g, T* dst, const i64* index, const T* src, i64 dd, \
                                               i64 size) {                                            \
        GRID_STRIDE(i, g.numel) {                                                                     \
            i64 off[3];                                                                               \
            offsets<3>(g, i, off);                                                                    \
            i64 k = index[off[1]];                                                                    \
            if (k < 0) k += size;                                                                     \
            atomic_acc(dst + off[0] + k * dd, src[off[2]]);                                           \
        }                                                                                             \
    }
FOR_NUMERIC(SCATTER_ADD)

extern "C" __global__ void scatter_add_bool(Geom g, u8* dst, const i64* index, const u8* src, i64 dd, i64 size) {
    GRID_STRIDE(i, g.numel) {
        i64 off[3];
        offsets<3>(g, i, off);
        i64 k = index[off[1]];
        if (k < 0) k += size;
        atomic_acc_byte<true>(dst + off[0] + k * dd, src[off[2]] != 0);
    }
}

// ---- sort ------------------------------------------------------------------------------

// Stable order: NaN is the largest value; equal keys keep their original order; padding
// (index -1) always goes last.
template <class C>
__device__ __forceinline__ bool sort_before(C a, int ia, C b, int ib, bool desc) {
    if (ia < 0) return false;
    if (ib < 0) return true;
    bool an = is_nan(a), bn = is_nan(b);
    if (an || bn) {
        if (an && bn) return ia < ib;
        return desc ? an : bn;
    }
    if (a == b) return ia < ib;
    return desc ? (a > b) : (a < b);
}

// One block per row of a contiguous [rows, n] input; `p` is n rounded up to a power of
// two and dynamic shared memory holds p keys (compute type) and p int indices.
template <class T>
__device__ void bitonic_rows(const T* x, T* vals, i64* idx, i64 rows, int n, int p, int desc) {
    typedef typename Compute<T>::type C;
    extern __shared__ __align__(16) unsigned char smem[];
    C* key = (C*)smem;
    // Indices start at the next 16-byte boundary after the keys (1-byte keys would
    // otherwise misalign them); the host adds 16 bytes of slack.
    int* ix = (int*)(smem + ((p * sizeof(C) + 15) & ~(size_t)15));
    for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {
        for (int i = threadIdx.x; i < p; i += blockDim.x) {
            if (i < n) {
                key[i] = to_c(x[r * n + i]);
                ix[i] = i;
            } else {
                key[i] = (C)0;
                ix[i] = -1;
            }
        }
        __syncthreads();
        for (int k = 2; k <= p; k <<= 1) {
            for (int j = k >> 1; j > 0; j >>= 1) {
                for (int i = threadIdx.x; i < p; i += blockDim.x) {
                    int l = i ^ j;
                    if (l > i) {
                        bool up = (i & k) == 0;
                        bool lb = sort_before(key[l], ix[l], key[i], ix[i], desc != 0);
                        if (lb == up) {
                            C tk = key[i];
                            key[i] = key[l];
                            key[l] = tk;
                            int ti = ix[i];
                            ix[i] = ix[l];
                            ix[l] = ti;
                        }
                    }
                }
                __syncthreads();
            }
        }
        for (int i = threadIdx.x; i < n; i += blockDim.x) {
            vals[r * n + i] = x[r * n + ix[i]];
            idx[r * n + i] = ix[i];
        }
        __syncthreads();
    }
}

#define SORT(S, T)                                                                                   \
    extern "C" __global__ void sort_##S(const T* x, T* vals, i64* idx, i64 rows, int n, int p, int desc) { \
        bitonic_rows<T>(x, vals, idx, rows, n, p, desc);                                             \
    }
FOR_NUMERIC(SORT)
SORT(bool, u8)

// ---- integer matmul ---------------------------------------------------------------------

// out[b, i, j] = sum_p a[b, i, p] * b[b, p, j] with wrapping i64 accumulation; one thread
// per output element. Strides in elements: s[0..3] for a (batch, row, col), s[3..6] for b.
#define MATMUL_INT(S, T, CONV)                                                                           \
    extern "C" __global__ void matmul_int_##S(const T* a, const T* bm, T* out, i64 nb, i64 m, i64 n,  \
                                              i64 k, i64 ao, i64 as0, i64 as1, i64 as2, i64 bo,       \
                                              i64 bs0, i64 bs1, i64 bs2) {                            \
        GRID_STRIDE(t, nb * m * n) {                                                                  \
            i64 j = t % n, i = (t / n) % m, b = t / (n * m);                                          \
            u64 acc = 0;                                                                              \
            for (i64 q = 0; q < k; ++q) {                                                             \
                i64 x = (i64)a[ao + b * as0 + i * as1 + q * as2];                                     \
                i64 y = (i64)bm[bo + b * bs0 + q * bs1 + j * bs2];                                    \
                acc += (u64)x * (u64)y;                                                               \
            }                                                                                         \
            out[t] = CONV;                                                                            \
        }                                                                                             \
    }
MATMUL_INT(u8, u8, (u8)acc)
MATMUL_INT(i32, int, (int)(i64)acc)
MATMUL_INT(i64, i64, (i64)acc)
MATMUL_INT(bool, u8, (u8)(acc != 0))
