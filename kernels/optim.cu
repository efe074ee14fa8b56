// The fused Adam / AdamW parameter update (one pass over param, grad and both moments).
#include "common.cuh"

// m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2;
// p -= lr * (m / bc1) / (sqrt(v / bc2) + eps)
// where g includes `wd * p` for Adam (L2, decoupled == 0), while AdamW (decoupled != 0)
// first scales p by (1 - lr * wd). bc1 = 1 - b1^t and bc2 = 1 - b2^t come from the host.
// `maximize` negates the gradient. Moments are stored in the parameter's dtype and the
// arithmetic is done in float (double for f64).
template <class T>
__device__ void adam_update(T* p, const T* grad, T* m, T* v, i64 n, double lr, double b1, double b2, double eps,
                            double wd, double bc1, double bc2, int decoupled, int maximize) {
    typedef typename Compute<T>::type C;
    const C clr = (C)lr, cb1 = (C)b1, cb2 = (C)b2, ceps = (C)eps, cwd = (C)wd;
    const C step = clr / (C)bc1, bc2s = m_sqrt((C)bc2);
    GRID_STRIDE(i, n) {
        C x = to_c(p[i]);
        C g = to_c(grad[i]);
        if (maximize) g = -g;
        if (cwd != (C)0) {
            if (decoupled) x = x * ((C)1 - clr * cwd);
            else g = g + cwd * x;
        }
        C mi = cb1 * to_c(m[i]) + ((C)1 - cb1) * g;
        C vi = cb2 * to_c(v[i]) + ((C)1 - cb2) * g * g;
        x = x - step * mi / (m_sqrt(vi) / bc2s + ceps);
        m[i] = from_c<T>(mi);
        v[i] = from_c<T>(vi);
        p[i] = from_c<T>(x);
    }
}

#define ADAM(S, T)                                                                                   \
    extern "C" __global__ void adam_##S(T* p, const T* g, T* m, T* v, i64 n, double lr, double b1,    \
                                        double b2, double eps, double wd, double bc1, double bc2,     \
                                        int decoupled, int maximize) {                               \
        adam_update<T>(p, g, m, v, n, lr, b1, b2, eps, wd, bc1, bc2, decoupled, maximize);           \
    }
FOR_FLOATS(ADAM)
