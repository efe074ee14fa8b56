//! `impl Backend for CudaBackend`: every primitive as a launch of a committed kernel
//! (matmul through cuBLAS, see `blas.rs`).

use half::{bf16, f16};
use tensor_core::HostBuffer;
use tensor_core::{
    Backend, BinaryOp, Buffer, DType, DeviceLocation, Elem, Error, FusedOp, Layout, OwnedBuffer, ReduceOp, Result,
    Scalar, ScanOp, UnaryOp,
};

use crate::device::{driver_err, CudaBackend, CudaBuffer};
use crate::geom::{contiguous_strides, Geom, RGeom};

/// Launches `$f` with `$cfg` on the backend's stream; the arguments must be local
/// variables (the launch reads them by reference).
macro_rules! launch {
    ($be:expr, $f:expr, $cfg:expr, $($a:ident),* $(,)?) => {{
        use cudarc::driver::PushKernelArg;
        let func = $f;
        let mut b = $be.stream.launch_builder(&func);
        $( b.arg(&$a); )*
        // SAFETY: the argument list matches the kernel's C signature (see kernels/*.cu)
        // and every pointer addresses memory the geometry keeps in bounds.
        unsafe { b.launch($cfg) }.map(|_| ()).map_err(|e| $crate::device::driver_err("kernel launch", e))
    }};
}
pub(crate) use launch;

/// The suffix of kernel names for a dtype.
pub(crate) fn sfx(dt: DType) -> &'static str {
    match dt {
        DType::Bool => "bool",
        DType::U8 => "u8",
        DType::I32 => "i32",
        DType::I64 => "i64",
        DType::F16 => "f16",
        DType::BF16 => "bf16",
        DType::F32 => "f32",
        DType::F64 => "f64",
    }
}

/// The code (from tensor-core's enum, as `kernels/ops.cuh` numbers it) and parameters
/// of a unary op: (code, p0, p1, clamp flags).
fn unary_code(op: UnaryOp) -> (i32, f64, f64, i32) {
    use UnaryOp::*;
    let (p0, p1, flags) = match op {
        LeakyRelu(p) | Elu(p) | PowScalar(p) | AddScalar(p) | MulScalar(p) => (p, 0.0, 0),
        Softplus { beta, threshold } => (beta, threshold, 0),
        Clamp(lo, hi) => (lo.unwrap_or(0.0), hi.unwrap_or(0.0), lo.is_some() as i32 | (hi.is_some() as i32) << 1),
        _ => (0.0, 0.0, 0),
    };
    (op.code(), p0, p1, flags)
}

/// An integer dtype's value of `v` as tensor-core's `Elem::from_f64` makes it
/// (saturating, NaN to 0), widened to i64.
fn int_param(dt: DType, v: f64) -> i64 {
    match dt {
        DType::U8 => u8::from_f64(v) as i64,
        DType::I32 => i32::from_f64(v) as i64,
        DType::Bool => bool::from_f64(v) as i64,
        _ => i64::from_f64(v),
    }
}

/// The little-endian bits of `value` converted to `dt`.
fn scalar_bits(dt: DType, value: Scalar) -> u64 {
    match dt {
        DType::Bool => bool::from_scalar(value) as u64,
        DType::U8 => u8::from_scalar(value) as u64,
        DType::I32 => i32::from_scalar(value) as u32 as u64,
        DType::I64 => i64::from_scalar(value) as u64,
        DType::F16 => f16::from_scalar(value).to_bits() as u64,
        DType::BF16 => bf16::from_scalar(value).to_bits() as u64,
        DType::F32 => f32::from_scalar(value).to_bits() as u64,
        DType::F64 => f64::from_scalar(value).to_bits(),
    }
}

/// The accumulator size of `reduce_partial_<dtype>` (see kernels/reduce.cu).
fn acc_size(dt: DType) -> usize {
    match dt {
        DType::F16 | DType::BF16 | DType::F32 => 4,
        _ => 8,
    }
}

fn next_pow2_threads(n: usize, max: usize) -> u32 {
    n.next_power_of_two().clamp(32, max) as u32
}

impl CudaBackend {
    fn unsupported(&self, op: &'static str, dtype: DType) -> Error {
        Error::Unsupported { op, dtype, device: self.dev_name() }
    }

    /// Copies the view `(src, src_layout)` into the view `(dst, dl)` with the copy kernel.
    pub(crate) fn copy_view(
        &self,
        src: &CudaBuffer,
        src_layout: &Layout,
        dst: &mut CudaBuffer,
        dl: &Layout,
    ) -> Result<()> {
        let n = src_layout.numel();
        if n == 0 {
            return Ok(());
        }
        let sz = src.dtype.size_in_bytes();
        let g = Geom::new(
            "copy_",
            src_layout.dims(),
            &[(dl.strides().to_vec(), dl.offset()), (src_layout.strides().to_vec(), src_layout.offset())],
        )?;
        let (o, x) = (self.ptr(dst, 0), self.ptr(src, 0));
        launch!(self, self.func("elementwise", &format!("copy_{sz}"))?, self.cfg(n), g, o, x)
    }

    /// A contiguous copy of the view.
    pub(crate) fn contiguous(&self, src: &CudaBuffer, l: &Layout) -> Result<CudaBuffer> {
        let mut out = self.alloc(src.dtype, l.numel())?;
        self.copy_view(src, l, &mut out, &Layout::contiguous(l.shape().clone()))?;
        Ok(out)
    }

    fn unary_impl(&self, op: UnaryOp, x: &CudaBuffer, l: &Layout) -> Result<CudaBuffer> {
        let dt = x.dtype;
        let n = l.numel();
        let (code, p0, p1, flags) = unary_code(op);
        if op.returns_bool() {
            let out = self.alloc(DType::Bool, n)?;
            if n == 0 {
                return Ok(out);
            }
            let g = Geom::with_output(op.name(), l.dims(), &[l])?;
            let (o, xp) = (self.ptr(&out, 0), self.ptr(x, 0));
            launch!(self, self.func("elementwise", &format!("unary_pred_{}", sfx(dt)))?, self.cfg(n), g, o, xp, code)?;
            return Ok(out);
        }
        if dt == DType::Bool {
            // Bool arithmetic: the ops below are the identity on {0, 1}; others are not defined.
            return match op {
                UnaryOp::Neg
                | UnaryOp::Abs
                | UnaryOp::Sign
                | UnaryOp::Floor
                | UnaryOp::Ceil
                | UnaryOp::Round
                | UnaryOp::Trunc
                | UnaryOp::Square
                | UnaryOp::Relu => self.contiguous(x, l),
                _ => Err(self.unsupported(op.name(), dt)),
            };
        }
        if op.float_only() && !dt.is_float() {
            return Err(self.unsupported(op.name(), dt));
        }
        let out = self.alloc(dt, n)?;
        if n == 0 {
            return Ok(out);
        }
        let g = Geom::with_output(op.name(), l.dims(), &[l])?;
        let (o, xp) = (self.ptr(&out, 0), self.ptr(x, 0));
        let f = self.func("elementwise", &format!("unary_{}", sfx(dt)))?;
        if dt.is_float() {
            launch!(self, f, self.cfg(n), g, o, xp, code, p0, p1, flags)?;
        } else {
            let (q0, q1) = (int_param(dt, p0), int_param(dt, p1));
            launch!(self, f, self.cfg(n), g, o, xp, code, q0, q1, flags)?;
        }
        Ok(out)
    }

    /// `out = a op b` where `out` is described by operand 0 of `g`.
    fn binary_launch(&self, op: BinaryOp, g: Geom, out: u64, a: u64, b: u64, dt: DType) -> Result<()> {
        let code = op.code();
        let name = if op.returns_bool() { format!("compare_{}", sfx(dt)) } else { format!("binary_{}", sfx(dt)) };
        let n = g.numel as usize;
        launch!(self, self.func("elementwise", &name)?, self.cfg(n), g, out, a, b, code)
    }

    /// Reduction over `dims` with the two-pass kernels.
    fn reduce_impl(&self, op: ReduceOp, x: &CudaBuffer, l: &Layout, dims: &[usize]) -> Result<CudaBuffer> {
        let dt = x.dtype;
        let g = RGeom::new(op.name(), l, dims, false)?;
        let (o_n, r_n) = (g.out_numel as usize, g.red_numel as usize);
        let bool_out = matches!(op, ReduceOp::All | ReduceOp::Any) || dt == DType::Bool;
        let out_dt = if matches!(op, ReduceOp::All | ReduceOp::Any) { DType::Bool } else { dt };
        let out = self.alloc(out_dt, o_n)?;
        if o_n == 0 {
            return Ok(out);
        }
        if r_n == 0 && matches!(op, ReduceOp::Max | ReduceOp::Min) {
            return Err(Error::arg(op.name(), "cannot reduce over a zero-size dimension (no identity)"));
        }
        // Split long reductions over several blocks when there are few outputs.
        let target_blocks = self.sm_count as usize * 4;
        let splits = if o_n >= target_blocks || r_n < 8192 {
            1
        } else {
            (target_blocks / o_n).clamp(1, r_n.div_ceil(4096)).min(1024)
        };
        let chunk = r_n.div_ceil(splits).max(1);
        let threads = next_pow2_threads(chunk, 512);
        let partial = self.alloc(DType::U8, o_n * splits * acc_size(dt))?;
        let code = op.code();
        let (xp, pp, op_p) = (self.ptr(x, 0), self.ptr(&partial, 0), self.ptr(&out, 0));
        let (splits_i, chunk_i, o_i) = (splits as i32, chunk as i64, o_n as i64);
        let cfg = cudarc::driver::LaunchConfig {
            grid_dim: (o_n.min(65535 * 32) as u32, splits as u32, 1),
            block_dim: (threads, 1, 1),
            shared_mem_bytes: 0,
        };
        launch!(
            self,
            self.func("reduce", &format!("reduce_partial_{}", sfx(dt)))?,
            cfg,
            g,
            xp,
            pp,
            code,
            splits_i,
            chunk_i
        )?;
        let fin = if bool_out { format!("reduce_final_bool_{}", sfx(dt)) } else { format!("reduce_final_{}", sfx(dt)) };
        launch!(self, self.func("reduce", &fin)?, self.cfg(o_n), pp, op_p, code, splits_i, o_i)?;
        drop(partial);
        Ok(out)
    }

    fn arg_reduce_impl(&self, op: ReduceOp, x: &CudaBuffer, l: &Layout, dim: usize) -> Result<CudaBuffer> {
        if l.dims()[dim] == 0 {
            return Err(Error::arg(op.name(), "cannot reduce over a zero-size dimension"));
        }
        let mut g = RGeom::new(op.name(), l, &[dim], true)?;
        // The kernel reads the single reduced dim through rstride[0].
        g.rrank = 1;
        let o_n = g.out_numel as usize;
        let out = self.alloc(DType::I64, o_n)?;
        if o_n == 0 {
            return Ok(out);
        }
        let is_max = (op == ReduceOp::ArgMax) as i32;
        let (xp, op_p) = (self.ptr(x, 0), self.ptr(&out, 0));
        let cfg = cudarc::driver::LaunchConfig {
            grid_dim: (o_n.min(65535 * 32) as u32, 1, 1),
            block_dim: (next_pow2_threads(l.dims()[dim], 256), 1, 1),
            shared_mem_bytes: 0,
        };
        launch!(self, self.func("reduce", &format!("arg_reduce_{}", sfx(x.dtype)))?, cfg, g, xp, op_p, is_max)?;
        Ok(out)
    }

    /// Sort of contiguous rows `[rows, n]` with the bitonic kernel (n <= 2048).
    fn sort_rows(&self, x: &CudaBuffer, rows: usize, n: usize, desc: bool) -> Result<(CudaBuffer, CudaBuffer)> {
        let dt = x.dtype;
        let vals = self.alloc(dt, rows * n)?;
        let idx = self.alloc(DType::I64, rows * n)?;
        if rows * n == 0 {
            return Ok((vals, idx));
        }
        let p = n.next_power_of_two();
        let key = match dt {
            DType::F64 => 8,
            DType::I64 => 8,
            DType::I32 | DType::F32 | DType::F16 | DType::BF16 => 4,
            DType::U8 | DType::Bool => 1,
        };
        let cfg = cudarc::driver::LaunchConfig {
            grid_dim: (rows.min(65535 * 32) as u32, 1, 1),
            block_dim: (p.clamp(32, 1024) as u32, 1, 1),
            shared_mem_bytes: (p * (key + 4) + 16) as u32,
        };
        let (xp, vp, ip) = (self.ptr(x, 0), self.ptr(&vals, 0), self.ptr(&idx, 0));
        let (rows_i, n_i, p_i, d_i) = (rows as i64, n as i32, p as i32, desc as i32);
        launch!(self, self.func("index", &format!("sort_{}", sfx(dt)))?, cfg, xp, vp, ip, rows_i, n_i, p_i, d_i)?;
        Ok((vals, idx))
    }

    /// Fused softmax / log-softmax over the last dim of a contiguous `[rows, cols]` view.
    fn softmax_impl(&self, x: &CudaBuffer, l: &Layout, log: bool) -> Result<CudaBuffer> {
        let (rows, cols) = (l.dims()[0], l.dims()[1]);
        let out = self.alloc(x.dtype, rows * cols)?;
        if rows * cols == 0 {
            return Ok(out);
        }
        // Rows of up to 16 K elements stay in registers, 16 per thread: small blocks,
        // so several fit on an SM and one block's reductions overlap another's loads.
        let threads = if cols <= 16 * 1024 { next_pow2_threads(cols.div_ceil(16), 1024) } else { 1024 };
        let cfg = cudarc::driver::LaunchConfig {
            grid_dim: (rows.min(65535 * 32) as u32, 1, 1),
            block_dim: (threads, 1, 1),
            shared_mem_bytes: 0,
        };
        let (xp, op_p) = (self.ptr(x, l.offset()), self.ptr(&out, 0));
        let (r, c, lg) = (rows as i64, cols as i64, log as i32);
        launch!(self, self.func("reduce", &format!("softmax_{}", sfx(x.dtype)))?, cfg, xp, op_p, r, c, lg)?;
        Ok(out)
    }
}

impl Backend for CudaBackend {
    fn location(&self) -> DeviceLocation {
        DeviceLocation::Cuda(self.ordinal)
    }

    fn zeros(&self, dtype: DType, len: usize) -> Result<OwnedBuffer> {
        Ok(OwnedBuffer::new(self.alloc_zeros(dtype, len)?))
    }

    fn upload(&self, data: HostBuffer) -> Result<OwnedBuffer> {
        let bytes = data.to_bytes();
        let mut b = self.alloc(data.dtype(), data.len())?;
        if !bytes.is_empty() {
            self.stream.memcpy_htod(&bytes, &mut b.data).map_err(|e| driver_err("cuMemcpyHtoDAsync", e))?;
            // The host bytes are staged before memcpy returns, but keep the order obvious.
            self.stream.synchronize().map_err(|e| driver_err("cuStreamSynchronize", e))?;
        }
        Ok(OwnedBuffer::new(b))
    }

    fn download(&self, buf: &dyn Buffer, layout: &Layout) -> Result<HostBuffer> {
        let b = self.buf("to_cpu", buf)?;
        let dt = b.dtype;
        let n = layout.numel();
        let sz = dt.size_in_bytes();
        let mut host = vec![0u8; n * sz];
        if n > 0 {
            let tmp;
            let (src, start) = match layout.contiguous_range() {
                Some(r) => (b, r.start),
                None => {
                    tmp = self.contiguous(b, layout)?;
                    (&tmp, 0)
                }
            };
            let view = src.data.slice(start * sz..(start + n) * sz);
            self.stream.memcpy_dtoh(&view, &mut host).map_err(|e| driver_err("cuMemcpyDtoHAsync", e))?;
            self.stream.synchronize().map_err(|e| driver_err("cuStreamSynchronize", e))?;
        }
        HostBuffer::from_bytes(dt, &host)
            .ok_or_else(|| Error::Backend { backend: "cuda".into(), msg: "download: byte count does not fit".into() })
    }

    fn copy_strided(&self, src: &dyn Buffer, src_l: &Layout, dst: &mut dyn Buffer, dst_l: &Layout) -> Result<()> {
        let s = self.buf("copy_", src)?;
        let d = self.buf_mut("copy_", dst)?;
        if s.dtype != d.dtype {
            return Err(Error::DTypeMismatch { op: "copy_", expected: d.dtype, got: s.dtype });
        }
        if src_l.dims() != dst_l.dims() {
            return Err(Error::shape("copy_", dst_l.dims(), src_l.dims(), "copy needs equal shapes"));
        }
        self.copy_view(s, src_l, d, dst_l)
    }

    fn fill(&self, dst: &mut dyn Buffer, dst_l: &Layout, value: Scalar) -> Result<()> {
        let d = self.buf_mut("fill_", dst)?;
        let n = dst_l.numel();
        if n == 0 {
            return Ok(());
        }
        let bits = scalar_bits(d.dtype, value);
        let g = Geom::new("fill_", dst_l.dims(), &[(dst_l.strides().to_vec(), dst_l.offset())])?;
        let o = self.ptr(d, 0);
        launch!(self, self.func("elementwise", &format!("fill_{}", d.dtype.size_in_bytes()))?, self.cfg(n), g, o, bits)
    }

    fn cast(&self, src: &dyn Buffer, l: &Layout, dtype: DType) -> Result<OwnedBuffer> {
        let s = self.buf("to", src)?;
        if s.dtype == dtype {
            return Ok(OwnedBuffer::new(self.contiguous(s, l)?));
        }
        let n = l.numel();
        let out = self.alloc(dtype, n)?;
        if n > 0 {
            let g = Geom::with_output("to", l.dims(), &[l])?;
            let (o, x) = (self.ptr(&out, 0), self.ptr(s, 0));
            let name = format!("cast_{}_{}", sfx(s.dtype), sfx(dtype));
            launch!(self, self.func("elementwise", &name)?, self.cfg(n), g, o, x)?;
        }
        Ok(OwnedBuffer::new(out))
    }

    fn unary(&self, op: UnaryOp, src: &dyn Buffer, l: &Layout) -> Result<OwnedBuffer> {
        let x = self.buf(op.name(), src)?;
        Ok(OwnedBuffer::new(self.unary_impl(op, x, l)?))
    }

    fn binary(
        &self,
        op: BinaryOp,
        lhs: &dyn Buffer,
        lhs_layout: &Layout,
        rhs: &dyn Buffer,
        rhs_layout: &Layout,
    ) -> Result<OwnedBuffer> {
        let (a, b) = (self.buf(op.name(), lhs)?, self.buf(op.name(), rhs)?);
        if a.dtype != b.dtype {
            return Err(Error::DTypeMismatch { op: op.name(), expected: a.dtype, got: b.dtype });
        }
        if lhs_layout.dims() != rhs_layout.dims() {
            return Err(Error::shape(
                op.name(),
                lhs_layout.dims(),
                rhs_layout.dims(),
                "backend expects broadcast layouts",
            ));
        }
        let n = lhs_layout.numel();
        let out_dt = if op.returns_bool() { DType::Bool } else { a.dtype };
        let out = self.alloc(out_dt, n)?;
        if n > 0 {
            let g = Geom::with_output(op.name(), lhs_layout.dims(), &[lhs_layout, rhs_layout])?;
            self.binary_launch(op, g, self.ptr(&out, 0), self.ptr(a, 0), self.ptr(b, 0), a.dtype)?;
        }
        Ok(OwnedBuffer::new(out))
    }

    fn binary_inplace(
        &self,
        op: BinaryOp,
        dst: &mut dyn Buffer,
        dst_l: &Layout,
        rhs: &dyn Buffer,
        rhs_layout: &Layout,
    ) -> Result<()> {
        let b = self.buf(op.name(), rhs)?;
        let d = self.buf_mut(op.name(), dst)?;
        if d.dtype != b.dtype {
            return Err(Error::DTypeMismatch { op: op.name(), expected: d.dtype, got: b.dtype });
        }
        if op.returns_bool() {
            return Err(Error::arg(op.name(), "in-place comparison is not supported; use the out-of-place op"));
        }
        if dst_l.dims() != rhs_layout.dims() {
            return Err(Error::shape(op.name(), dst_l.dims(), rhs_layout.dims(), "backend expects broadcast layouts"));
        }
        if dst_l.numel() == 0 {
            return Ok(());
        }
        let dop = (dst_l.strides().to_vec(), dst_l.offset());
        let g = Geom::new(
            op.name(),
            dst_l.dims(),
            &[dop.clone(), dop, (rhs_layout.strides().to_vec(), rhs_layout.offset())],
        )?;
        let dp = self.ptr(d, 0);
        self.binary_launch(op, g, dp, dp, self.ptr(b, 0), d.dtype)
    }

    fn where_cond(
        &self,
        cond: &dyn Buffer,
        cl: &Layout,
        a: &dyn Buffer,
        al: &Layout,
        b: &dyn Buffer,
        bl: &Layout,
    ) -> Result<OwnedBuffer> {
        let (c, x, y) = (self.buf("where", cond)?, self.buf("where", a)?, self.buf("where", b)?);
        if c.dtype != DType::Bool {
            return Err(Error::DTypeMismatch { op: "where", expected: DType::Bool, got: c.dtype });
        }
        if x.dtype != y.dtype {
            return Err(Error::DTypeMismatch { op: "where", expected: x.dtype, got: y.dtype });
        }
        let n = cl.numel();
        let out = self.alloc(x.dtype, n)?;
        if n > 0 {
            let g = Geom::with_output("where", cl.dims(), &[cl, al, bl])?;
            let (o, cp, xp, yp) = (self.ptr(&out, 0), self.ptr(c, 0), self.ptr(x, 0), self.ptr(y, 0));
            let name = format!("where_{}", x.dtype.size_in_bytes());
            launch!(self, self.func("elementwise", &name)?, self.cfg(n), g, o, cp, xp, yp)?;
        }
        Ok(OwnedBuffer::new(out))
    }

    fn reduce(&self, op: ReduceOp, src: &dyn Buffer, l: &Layout, dims: &[usize]) -> Result<OwnedBuffer> {
        let x = self.buf(op.name(), src)?;
        if matches!(op, ReduceOp::ArgMax | ReduceOp::ArgMin) {
            if dims.len() != 1 {
                return Err(Error::arg(op.name(), "argmax/argmin reduce exactly one dim"));
            }
            return Ok(OwnedBuffer::new(self.arg_reduce_impl(op, x, l, dims[0])?));
        }
        Ok(OwnedBuffer::new(self.reduce_impl(op, x, l, dims)?))
    }

    fn scan(&self, op: ScanOp, src: &dyn Buffer, l: &Layout, dim: usize) -> Result<OwnedBuffer> {
        let name = match op {
            ScanOp::CumSum => "cumsum",
            ScanOp::CumProd => "cumprod",
        };
        let x = self.buf(name, src)?;
        let n = l.numel();
        let out = self.alloc(x.dtype, n)?;
        if n == 0 {
            return Ok(OwnedBuffer::new(out));
        }
        let g = RGeom::new(name, l, &[dim], true)?;
        let (xp, op_p) = (self.ptr(x, 0), self.ptr(&out, 0));
        let prod = (op == ScanOp::CumProd) as i32;
        launch!(
            self,
            self.func("reduce", &format!("scan_{}", sfx(x.dtype)))?,
            self.cfg(g.out_numel as usize),
            g,
            xp,
            op_p,
            prod
        )?;
        Ok(OwnedBuffer::new(out))
    }

    fn matmul(
        &self,
        lhs: &dyn Buffer,
        lhs_layout: &Layout,
        rhs: &dyn Buffer,
        rhs_layout: &Layout,
    ) -> Result<OwnedBuffer> {
        let (a, b) = (self.buf("matmul", lhs)?, self.buf("matmul", rhs)?);
        Ok(OwnedBuffer::new(self.matmul_impl(a, lhs_layout, b, rhs_layout)?))
    }

    fn gather(
        &self,
        src: &dyn Buffer,
        src_layout: &Layout,
        index: &dyn Buffer,
        index_layout: &Layout,
        dim: usize,
    ) -> Result<OwnedBuffer> {
        let (s, i) = (self.buf("gather", src)?, self.buf("gather", index)?);
        if i.dtype != DType::I64 {
            return Err(Error::DTypeMismatch { op: "gather", expected: DType::I64, got: i.dtype });
        }
        let n = index_layout.numel();
        let out = self.alloc(s.dtype, n)?;
        if n > 0 {
            let mut sv = src_layout.strides().to_vec();
            let sd = sv[dim] as i64;
            sv[dim] = 0;
            let size = src_layout.dims()[dim] as i64;
            let g = Geom::new(
                "gather",
                index_layout.dims(),
                &[
                    (contiguous_strides(index_layout.dims()), 0),
                    (index_layout.strides().to_vec(), index_layout.offset()),
                    (sv, src_layout.offset()),
                ],
            )?;
            let (o, ip, sp) = (self.ptr(&out, 0), self.ptr(i, 0), self.ptr(s, 0));
            let name = format!("gather_{}", s.dtype.size_in_bytes());
            launch!(self, self.func("index", &name)?, self.cfg(n), g, o, ip, sp, sd, size)?;
        }
        Ok(OwnedBuffer::new(out))
    }

    fn scatter(
        &self,
        dst: &mut dyn Buffer,
        dl: &Layout,
        index: &dyn Buffer,
        index_layout: &Layout,
        src: &dyn Buffer,
        src_layout: &Layout,
        dim: usize,
        accumulate: bool,
    ) -> Result<()> {
        let (i, s) = (self.buf("scatter", index)?, self.buf("scatter", src)?);
        let d = self.buf_mut("scatter", dst)?;
        if i.dtype != DType::I64 {
            return Err(Error::DTypeMismatch { op: "scatter", expected: DType::I64, got: i.dtype });
        }
        if d.dtype != s.dtype {
            return Err(Error::DTypeMismatch { op: "scatter", expected: d.dtype, got: s.dtype });
        }
        let n = index_layout.numel();
        if n == 0 {
            return Ok(());
        }
        let mut dv = dl.strides().to_vec();
        let dd = dv[dim] as i64;
        dv[dim] = 0;
        let size = dl.dims()[dim] as i64;
        let g = Geom::new(
            "scatter",
            index_layout.dims(),
            &[
                (dv, dl.offset()),
                (index_layout.strides().to_vec(), index_layout.offset()),
                (src_layout.strides().to_vec(), src_layout.offset()),
            ],
        )?;
        let (dp, ip, sp) = (self.ptr(d, 0), self.ptr(i, 0), self.ptr(s, 0));
        let name = if accumulate {
            format!("scatter_add_{}", sfx(d.dtype))
        } else {
            format!("scatter_{}", d.dtype.size_in_bytes())
        };
        launch!(self, self.func("index", &name)?, self.cfg(n), g, dp, ip, sp, dd, size)
    }

    fn sort(&self, src: &dyn Buffer, l: &Layout, dim: usize, descending: bool) -> Result<(OwnedBuffer, OwnedBuffer)> {
        let x = self.buf("sort", src)?;
        let rank = l.rank();
        let n = l.dims()[dim];
        if n > 2048 {
            // Long rows: sort on the host (the bitonic kernel keeps a row in shared memory).
            let host = self.download(x, l)?;
            let cl = Layout::contiguous(l.shape().clone());
            let cpu = tensor_core::Device::cpu();
            let (v, i) = cpu.backend().sort(&host, &cl, dim, descending)?;
            let v = tensor_core::host::as_host_buffer(&*v).cloned().ok_or_else(|| Error::arg("sort", "host sort"))?;
            let i = tensor_core::host::as_host_buffer(&*i).cloned().ok_or_else(|| Error::arg("sort", "host sort"))?;
            return Ok((self.upload(v)?, self.upload(i)?));
        }
        // Move `dim` last, sort contiguous rows, move it back.
        let mut perm: Vec<usize> = (0..rank).filter(|&d| d != dim).collect();
        perm.push(dim);
        let pl = l.permute(&perm)?;
        let rows_buf = self.contiguous(x, &pl)?;
        let rows = l.numel().checked_div(n).unwrap_or(0);
        let (v, i) = self.sort_rows(&rows_buf, rows, n, descending)?;
        let mut inv = vec![0usize; rank];
        for (k, &p) in perm.iter().enumerate() {
            inv[p] = k;
        }
        let back = Layout::contiguous(pl.shape().clone()).permute(&inv)?;
        Ok((OwnedBuffer::new(self.contiguous(&v, &back)?), OwnedBuffer::new(self.contiguous(&i, &back)?)))
    }

    fn fused(&self, op: FusedOp<'_>) -> Option<Result<Vec<OwnedBuffer>>> {
        let one = |b: CudaBuffer| vec![OwnedBuffer::new(b)];
        match op {
            FusedOp::Softmax { x, layout, log } => {
                if layout.rank() != 2 || !layout.is_contiguous() || !x.dtype().is_float() {
                    return None;
                }
                let run = || self.softmax_impl(self.buf("softmax", x)?, layout, log).map(one);
                Some(run())
            }
            FusedOp::LayerNorm { x, layout, weight, bias, eps } => {
                if layout.rank() != 2 || !layout.is_contiguous() || !x.dtype().is_float() {
                    return None;
                }
                Some(self.layer_norm_buffers(x, layout, weight, bias, eps).map(|(y, _, _)| one(y)))
            }
            FusedOp::OptimizerStep { update: tensor_core::OptimizerUpdate::Adam(cfg), param, grad, mut state }
                if !cfg.amsgrad && state.len() == 2 =>
            {
                const OP: &str = "adam";
                let (v, m) = (state.pop()?, state.pop()?);
                let mut run = || -> Result<Vec<OwnedBuffer>> {
                    let p = self.buf_mut(OP, param.0)?;
                    let g = self.buf(OP, grad.0)?;
                    let mb = self.buf_mut(OP, m.0)?;
                    let vb = self.buf_mut(OP, v.0)?;
                    self.adam_launch((p, param.1), (g, grad.1), (mb, m.1), (vb, v.1), &cfg)?;
                    Ok(Vec::new())
                };
                Some(run())
            }
            _ => None,
        }
    }

    fn record_event(&self) -> Option<Result<Box<dyn tensor_core::DeviceEvent>>> {
        Some(self.timing_event().map(|e| Box::new(e) as Box<dyn tensor_core::DeviceEvent>))
    }

    fn synchronize(&self) -> Result<()> {
        self.sync()
    }
}
