//! Batched matmul: cuBLAS `GemmStridedBatchedEx` for the float dtypes (transposed views
//! become transpose flags; f16/bf16 accumulate in f32; TF32 only when allowed), and a
//! plain kernel for the integer dtypes.

use std::ffi::c_void;

use cudarc::cublas::sys::{cublasComputeType_t, cublasGemmAlgo_t, cublasOperation_t, cudaDataType};
use tensor_core::{DType, Error, Layout, Result};

use crate::device::{guarded, Blas, CudaBackend, CudaBuffer};
use crate::ops::{launch, sfx};

/// How one operand's `[rows, cols]` matrices sit in memory, as cuBLAS sees them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MatDesc {
    /// Column-major (a transposed row-major view) rather than row-major.
    pub col_major: bool,
    /// Leading dimension.
    pub ld: usize,
}

/// The cuBLAS description of matrices with element `(i, j)` at `i * rs + j * cs`, or
/// `None` when neither a row-major nor a column-major leading dimension fits.
pub(crate) fn describe(rows: usize, cols: usize, rs: usize, cs: usize) -> Option<MatDesc> {
    let row_major = (cs == 1 || cols == 1) && (rows == 1 || rs >= cols.max(1));
    if row_major {
        let ld = if rows == 1 { cols.max(1) } else { rs };
        return Some(MatDesc { col_major: false, ld });
    }
    let col_major = (rs == 1 || rows == 1) && (cols == 1 || cs >= rows.max(1));
    if col_major {
        let ld = if cols == 1 { rows.max(1) } else { cs };
        return Some(MatDesc { col_major: true, ld });
    }
    None
}

fn to_i32(op: &'static str, v: usize, what: &str) -> Result<i32> {
    i32::try_from(v).map_err(|_| Error::arg(op, format!("{what} = {v} exceeds cuBLAS's 32-bit limit")))
}

impl CudaBackend {
    /// `[b, m, k] x [b, k, n] -> [b, m, n]`, contiguous.
    pub(crate) fn matmul_impl(&self, a: &CudaBuffer, al: &Layout, b: &CudaBuffer, bl: &Layout) -> Result<CudaBuffer> {
        if al.rank() != 3 || bl.rank() != 3 || al.dims()[0] != bl.dims()[0] || al.dims()[2] != bl.dims()[1] {
            return Err(Error::shape("matmul", al.dims(), bl.dims(), "backend expects [b, m, k] x [b, k, n]"));
        }
        if a.dtype != b.dtype {
            return Err(Error::DTypeMismatch { op: "matmul", expected: a.dtype, got: b.dtype });
        }
        let dt = a.dtype;
        let (nb, m, k, n) = (al.dims()[0], al.dims()[1], al.dims()[2], bl.dims()[2]);
        if nb * m * n == 0 || k == 0 {
            return self.alloc_zeros(dt, nb * m * n);
        }
        if !dt.is_float() {
            return self.matmul_int(a, al, b, bl);
        }
        let out = self.alloc(dt, nb * m * n)?;
        // Operands cuBLAS cannot address directly are copied to contiguous first.
        let (a_tmp, b_tmp);
        let (a, al) = match describe(m, k, al.strides()[1], al.strides()[2]) {
            Some(_) => (a, al.clone()),
            None => {
                a_tmp = self.contiguous(a, al)?;
                (&a_tmp, Layout::contiguous([nb, m, k]))
            }
        };
        let (b, bl) = match describe(k, n, bl.strides()[1], bl.strides()[2]) {
            Some(_) => (b, bl.clone()),
            None => {
                b_tmp = self.contiguous(b, bl)?;
                (&b_tmp, Layout::contiguous([nb, k, n]))
            }
        };
        let da = describe(m, k, al.strides()[1], al.strides()[2]).ok_or_else(|| Error::arg("matmul", "layout"))?;
        let db = describe(k, n, bl.strides()[1], bl.strides()[2]).ok_or_else(|| Error::arg("matmul", "layout"))?;
        let stride_a = if nb == 1 { 0 } else { al.strides()[0] as i64 };
        let stride_b = if nb == 1 { 0 } else { bl.strides()[0] as i64 };
        // Row-major C = A B is column-major C^T = B^T A^T: cuBLAS's "A" is our B.
        let op = |d: MatDesc| if d.col_major { cublasOperation_t::CUBLAS_OP_T } else { cublasOperation_t::CUBLAS_OP_N };
        let (mi, ni, ki) = (to_i32("matmul", n, "n")?, to_i32("matmul", m, "m")?, to_i32("matmul", k, "k")?);
        let (lda, ldb) = (to_i32("matmul", db.ld, "ld")?, to_i32("matmul", da.ld, "ld")?);
        let batch = to_i32("matmul", nb, "batch")?;
        let (ty, compute) = match dt {
            DType::F32 if self.allow_tf32() => {
                (cudaDataType::CUDA_R_32F, cublasComputeType_t::CUBLAS_COMPUTE_32F_FAST_TF32)
            }
            DType::F32 => (cudaDataType::CUDA_R_32F, cublasComputeType_t::CUBLAS_COMPUTE_32F),
            DType::F64 => (cudaDataType::CUDA_R_64F, cublasComputeType_t::CUBLAS_COMPUTE_64F),
            DType::F16 => (cudaDataType::CUDA_R_16F, cublasComputeType_t::CUBLAS_COMPUTE_32F),
            _ => (cudaDataType::CUDA_R_16BF, cublasComputeType_t::CUBLAS_COMPUTE_32F),
        };
        let (one32, zero32, one64, zero64) = (1f32, 0f32, 1f64, 0f64);
        let (alpha, beta): (*const c_void, *const c_void) = if dt == DType::F64 {
            (&one64 as *const f64 as *const c_void, &zero64 as *const f64 as *const c_void)
        } else {
            (&one32 as *const f32 as *const c_void, &zero32 as *const f32 as *const c_void)
        };
        let pa = self.ptr(b, bl.offset()) as *const c_void;
        let pb = self.ptr(a, al.offset()) as *const c_void;
        let pc = self.ptr(&out, 0) as *mut c_void;
        let stride_c = (m * n) as i64;
        self.bind()?;
        let mut guard = self.blas.lock();
        if guard.is_none() {
            let stream = self.stream.clone();
            let h = guarded("loading cuBLAS", || {
                // SAFETY: only probes whether the library can be dlopened.
                if !unsafe { cudarc::cublas::sys::is_culib_present() } {
                    return Err(Error::Backend {
                        backend: "cuda".into(),
                        msg: "cuBLAS (libcublas.so.13) could not be loaded".into(),
                    });
                }
                cudarc::cublas::CudaBlas::new(stream)
                    .map_err(|e| Error::Backend { backend: "cuda".into(), msg: format!("cublasCreate: {e:?}") })
            })?;
            *guard = Some(Blas(h));
        }
        let Some(blas) = guard.as_ref() else {
            return Err(Error::Backend { backend: "cuda".into(), msg: "no cuBLAS handle".into() });
        };
        // SAFETY: pointers address the operands' first matrices; leading dimensions and
        // batch strides were derived from their layouts (or contiguous copies), and
        // alpha/beta live until the call returns (cuBLAS reads them on the host).
        let r = unsafe {
            cudarc::cublas::result::gemm_strided_batched_ex(
                *blas.0.handle(),
                op(db),
                op(da),
                mi,
                ni,
                ki,
                alpha,
                pa,
                ty,
                lda,
                stride_b,
                pb,
                ty,
                ldb,
                stride_a,
                beta,
                pc,
                ty,
                mi,
                stride_c,
                batch,
                compute,
                cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
        };
        r.map_err(|e| Error::Backend { backend: "cuda".into(), msg: format!("cublasGemmStridedBatchedEx: {e:?}") })?;
        Ok(out)
    }

    fn matmul_int(&self, a: &CudaBuffer, al: &Layout, b: &CudaBuffer, bl: &Layout) -> Result<CudaBuffer> {
        let (nb, m, k, n) = (al.dims()[0], al.dims()[1], al.dims()[2], bl.dims()[2]);
        let out = self.alloc(a.dtype, nb * m * n)?;
        let s = |l: &Layout, i: usize| l.strides()[i] as i64;
        let (pa, pb, pc) = (self.ptr(a, 0), self.ptr(b, 0), self.ptr(&out, 0));
        let (nb_i, m_i, n_i, k_i) = (nb as i64, m as i64, n as i64, k as i64);
        let (ao, as0, as1, as2) = (al.offset() as i64, s(al, 0), s(al, 1), s(al, 2));
        let (bo, bs0, bs1, bs2) = (bl.offset() as i64, s(bl, 0), s(bl, 1), s(bl, 2));
        let f = self.func("index", &format!("matmul_int_{}", sfx(a.dtype)))?;
        launch!(self, f, self.cfg(nb * m * n), pa, pb, pc, nb_i, m_i, n_i, k_i, ao, as0, as1, as2, bo, bs0, bs1, bs2)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_row_and_column_major_views() {
        // Contiguous [3, 4].
        assert_eq!(describe(3, 4, 4, 1), Some(MatDesc { col_major: false, ld: 4 }));
        // Its transpose [4, 3] with strides (1, 4).
        assert_eq!(describe(4, 3, 1, 4), Some(MatDesc { col_major: true, ld: 4 }));
        // A row slice of a wider matrix keeps ld.
        assert_eq!(describe(2, 3, 10, 1), Some(MatDesc { col_major: false, ld: 10 }));
        // A single row with any row stride.
        assert_eq!(describe(1, 5, 0, 1), Some(MatDesc { col_major: false, ld: 5 }));
        // A single column: stride 3 between rows reads as column-major with ld 3? No:
        // as row-major with ld 3 (cols == 1).
        assert_eq!(describe(4, 1, 3, 7), Some(MatDesc { col_major: false, ld: 3 }));
        // Step-2 columns cannot be addressed.
        assert_eq!(describe(3, 4, 8, 2), None);
        // Broadcast rows (stride 0) cannot either.
        assert_eq!(describe(3, 4, 0, 1), None);
    }
}
