//! The CPU backend: typed host vectors, multi-threaded strided kernels, GEMM through
//! the `gemm` crate.

pub mod alloc;
mod arith;
mod elementwise;
mod index;
pub mod iter;
mod matmul;
mod optim;
mod reduce;
pub(crate) mod window;

use std::any::Any;
use std::sync::{Arc, OnceLock};

use half::{bf16, f16};

pub use arith::Arith;

use crate::backend::{Backend, BinaryOp, Buffer, DeviceLocation, FusedOp, OwnedBuffer, ReduceOp, ScanOp, UnaryOp};
use crate::dtype::Elem;
use crate::{DType, Error, Layout, Result, Scalar};

/// A host buffer: one typed vector per dtype.
#[derive(Clone, Debug, PartialEq)]
pub enum CpuBuffer {
    /// bool elements
    Bool(Vec<bool>),
    /// u8 elements
    U8(Vec<u8>),
    /// i32 elements
    I32(Vec<i32>),
    /// i64 elements
    I64(Vec<i64>),
    /// f16 elements
    F16(Vec<f16>),
    /// bf16 elements
    BF16(Vec<bf16>),
    /// f32 elements
    F32(Vec<f32>),
    /// f64 elements
    F64(Vec<f64>),
}

/// Runs `$body` with `$v` bound to the typed vector and `$T` to its element type.
macro_rules! with_dtype {
    ($buf:expr, $v:ident, $T:ident => $body:expr) => {
        match $buf {
            CpuBuffer::Bool($v) => {
                #[allow(dead_code)]
                type $T = bool;
                $body
            }
            CpuBuffer::U8($v) => {
                #[allow(dead_code)]
                type $T = u8;
                $body
            }
            CpuBuffer::I32($v) => {
                #[allow(dead_code)]
                type $T = i32;
                $body
            }
            CpuBuffer::I64($v) => {
                #[allow(dead_code)]
                type $T = i64;
                $body
            }
            CpuBuffer::F16($v) => {
                #[allow(dead_code)]
                type $T = half::f16;
                $body
            }
            CpuBuffer::BF16($v) => {
                #[allow(dead_code)]
                type $T = half::bf16;
                $body
            }
            CpuBuffer::F32($v) => {
                #[allow(dead_code)]
                type $T = f32;
                $body
            }
            CpuBuffer::F64($v) => {
                #[allow(dead_code)]
                type $T = f64;
                $body
            }
        }
    };
}
pub(crate) use with_dtype;

/// Runs `$body` for float buffers only; other dtypes evaluate `$else`.
macro_rules! with_float {
    ($buf:expr, $v:ident, $T:ident => $body:expr, else $other:expr) => {
        match $buf {
            CpuBuffer::F16($v) => {
                #[allow(dead_code)]
                type $T = half::f16;
                $body
            }
            CpuBuffer::BF16($v) => {
                #[allow(dead_code)]
                type $T = half::bf16;
                $body
            }
            CpuBuffer::F32($v) => {
                #[allow(dead_code)]
                type $T = f32;
                $body
            }
            CpuBuffer::F64($v) => {
                #[allow(dead_code)]
                type $T = f64;
                $body
            }
            #[allow(unreachable_patterns)]
            _ => $other,
        }
    };
}
pub(crate) use with_float;

impl CpuBuffer {
    /// The dtype of the elements.
    pub fn dtype(&self) -> DType {
        match self {
            CpuBuffer::Bool(_) => DType::Bool,
            CpuBuffer::U8(_) => DType::U8,
            CpuBuffer::I32(_) => DType::I32,
            CpuBuffer::I64(_) => DType::I64,
            CpuBuffer::F16(_) => DType::F16,
            CpuBuffer::BF16(_) => DType::BF16,
            CpuBuffer::F32(_) => DType::F32,
            CpuBuffer::F64(_) => DType::F64,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        with_dtype!(self, v, T => v.len())
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `len` zeros of `dtype`; [`Error::OutOfMemory`] when the memory can't be had.
    pub fn zeros(dtype: DType, len: usize) -> Result<CpuBuffer> {
        Ok(match dtype {
            DType::Bool => CpuBuffer::Bool(alloc::filled(len, false)?),
            DType::U8 => CpuBuffer::U8(alloc::filled(len, 0)?),
            DType::I32 => CpuBuffer::I32(alloc::filled(len, 0)?),
            DType::I64 => CpuBuffer::I64(alloc::filled(len, 0)?),
            DType::F16 => CpuBuffer::F16(alloc::filled(len, f16::ZERO)?),
            DType::BF16 => CpuBuffer::BF16(alloc::filled(len, bf16::ZERO)?),
            DType::F32 => CpuBuffer::F32(alloc::filled(len, 0.0)?),
            DType::F64 => CpuBuffer::F64(alloc::filled(len, 0.0)?),
        })
    }

    /// Element `i` as f64.
    pub fn get_f64(&self, i: usize) -> f64 {
        with_dtype!(self, v, T => v[i].to_f64())
    }

    /// Element `i` as a [`Scalar`].
    pub fn get_scalar(&self, i: usize) -> Scalar {
        with_dtype!(self, v, T => v[i].to_scalar())
    }

    /// All elements converted to f64.
    pub fn to_f64_vec(&self) -> Vec<f64> {
        with_dtype!(self, v, T => v.iter().map(|x| x.to_f64()).collect())
    }

    /// Raw little-endian bytes of the elements (bool as 0/1 bytes).
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            CpuBuffer::Bool(v) => v.iter().map(|&b| b as u8).collect(),
            CpuBuffer::U8(v) => v.clone(),
            CpuBuffer::I32(v) => bytemuck::cast_slice(v).to_vec(),
            CpuBuffer::I64(v) => bytemuck::cast_slice(v).to_vec(),
            CpuBuffer::F16(v) => bytemuck::cast_slice(v).to_vec(),
            CpuBuffer::BF16(v) => bytemuck::cast_slice(v).to_vec(),
            CpuBuffer::F32(v) => bytemuck::cast_slice(v).to_vec(),
            CpuBuffer::F64(v) => bytemuck::cast_slice(v).to_vec(),
        }
    }

    /// Builds a buffer from little-endian bytes; `None` when the length does not fit
    /// the dtype.
    pub fn from_bytes(dtype: DType, bytes: &[u8]) -> Option<CpuBuffer> {
        let sz = dtype.size_in_bytes();
        if bytes.len() % sz != 0 {
            return None;
        }
        fn pod<T: bytemuck::Pod>(b: &[u8]) -> Vec<T> {
            b.chunks_exact(std::mem::size_of::<T>()).map(bytemuck::pod_read_unaligned).collect()
        }
        Some(match dtype {
            DType::Bool => CpuBuffer::Bool(bytes.iter().map(|&b| b != 0).collect()),
            DType::U8 => CpuBuffer::U8(bytes.to_vec()),
            DType::I32 => CpuBuffer::I32(pod(bytes)),
            DType::I64 => CpuBuffer::I64(pod(bytes)),
            DType::F16 => CpuBuffer::F16(pod(bytes)),
            DType::BF16 => CpuBuffer::BF16(pod(bytes)),
            DType::F32 => CpuBuffer::F32(pod(bytes)),
            DType::F64 => CpuBuffer::F64(pod(bytes)),
        })
    }
}

impl Buffer for CpuBuffer {
    fn dtype(&self) -> DType {
        CpuBuffer::dtype(self)
    }
    fn len(&self) -> usize {
        CpuBuffer::len(self)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn as_cpu(&self) -> Option<&CpuBuffer> {
        Some(self)
    }
    fn as_cpu_mut(&mut self) -> Option<&mut CpuBuffer> {
        Some(self)
    }
}

/// The CPU device's backend.
#[derive(Debug, Default)]
pub struct CpuBackend;

static CPU: OnceLock<Arc<CpuBackend>> = OnceLock::new();

impl CpuBackend {
    /// The process-wide CPU backend.
    pub fn shared() -> Arc<CpuBackend> {
        CPU.get_or_init(|| Arc::new(CpuBackend)).clone()
    }
}

/// The CPU backend's storage: a [`CpuBuffer`] that goes back to the buffer cache
/// ([`alloc`]) when the last tensor using it is dropped.
#[derive(Debug)]
pub struct CpuStore(CpuBuffer);

impl CpuStore {
    /// Wraps a host buffer.
    pub fn new(b: CpuBuffer) -> Self {
        CpuStore(b)
    }
}

impl Drop for CpuStore {
    fn drop(&mut self) {
        alloc::recycle(std::mem::replace(&mut self.0, CpuBuffer::U8(Vec::new())));
    }
}

impl Buffer for CpuStore {
    fn dtype(&self) -> DType {
        self.0.dtype()
    }
    fn len(&self) -> usize {
        self.0.len()
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn as_cpu(&self) -> Option<&CpuBuffer> {
        Some(&self.0)
    }
    fn as_cpu_mut(&mut self) -> Option<&mut CpuBuffer> {
        Some(&mut self.0)
    }
}

/// The host buffer behind a CPU tensor's storage (`None` for other devices).
#[inline]
pub fn as_cpu_buffer(b: &dyn Buffer) -> Option<&CpuBuffer> {
    b.as_cpu()
}

/// Mutable variant of [`as_cpu_buffer`].
#[inline]
pub fn as_cpu_buffer_mut(b: &mut dyn Buffer) -> Option<&mut CpuBuffer> {
    b.as_cpu_mut()
}

/// Downcasts a buffer that must belong to the CPU backend.
pub(crate) fn cpu(b: &dyn Buffer) -> Result<&CpuBuffer> {
    as_cpu_buffer(b)
        .ok_or_else(|| Error::Backend { backend: "cpu".into(), msg: format!("expected a CPU buffer, got {b:?}") })
}

/// Mutable variant of [`cpu`].
pub(crate) fn cpu_mut(b: &mut dyn Buffer) -> Result<&mut CpuBuffer> {
    as_cpu_buffer_mut(b).ok_or_else(|| Error::Backend { backend: "cpu".into(), msg: "expected a CPU buffer".into() })
}

/// Downcasts a CPU buffer and checks that the view `l` lies inside it. Every backend
/// entry point takes its operands through this (or [`view_mut`]), so a layout that
/// reaches past its buffer is an error, never an out-of-bounds access.
fn view<'a>(op: &'static str, b: &'a dyn Buffer, l: &Layout) -> Result<&'a CpuBuffer> {
    let c = cpu(b)?;
    l.check_fits(op, c.len())?;
    Ok(c)
}

/// Mutable variant of [`view`].
fn view_mut<'a>(op: &'static str, b: &'a mut dyn Buffer, l: &Layout) -> Result<&'a mut CpuBuffer> {
    let c = cpu_mut(b)?;
    l.check_fits(op, c.len())?;
    Ok(c)
}

impl Backend for CpuBackend {
    fn location(&self) -> DeviceLocation {
        DeviceLocation::Cpu
    }

    fn zeros(&self, dtype: DType, len: usize) -> Result<OwnedBuffer> {
        Ok(OwnedBuffer::from(CpuBuffer::zeros(dtype, len)?))
    }

    fn upload(&self, data: CpuBuffer) -> Result<OwnedBuffer> {
        Ok(OwnedBuffer::from(data))
    }

    fn download(&self, buf: &dyn Buffer, layout: &Layout) -> Result<CpuBuffer> {
        elementwise::contiguous(view("download", buf, layout)?, layout)
    }

    fn copy_strided(&self, src: &dyn Buffer, src_l: &Layout, dst: &mut dyn Buffer, dst_l: &Layout) -> Result<()> {
        let s = view("copy_", src, src_l)?;
        let d = view_mut("copy_", dst, dst_l)?;
        elementwise::copy_strided(s, src_l, d, dst_l)
    }

    fn fill(&self, dst: &mut dyn Buffer, dst_l: &Layout, value: Scalar) -> Result<()> {
        elementwise::fill(view_mut("fill_", dst, dst_l)?, dst_l, value);
        Ok(())
    }

    fn cast(&self, src: &dyn Buffer, l: &Layout, dtype: DType) -> Result<OwnedBuffer> {
        elementwise::cast(view("to_dtype", src, l)?, l, dtype).map(OwnedBuffer::from)
    }

    fn unary(&self, op: UnaryOp, src: &dyn Buffer, l: &Layout) -> Result<OwnedBuffer> {
        elementwise::unary(op, view(op.name(), src, l)?, l).map(OwnedBuffer::from)
    }

    fn binary(
        &self,
        op: BinaryOp,
        lhs: &dyn Buffer,
        ll: &Layout,
        rhs: &dyn Buffer,
        rl: &Layout,
    ) -> Result<OwnedBuffer> {
        let (a, b) = (view(op.name(), lhs, ll)?, view(op.name(), rhs, rl)?);
        elementwise::binary(op, a, ll, b, rl).map(OwnedBuffer::from)
    }

    fn binary_inplace(
        &self,
        op: BinaryOp,
        dst: &mut dyn Buffer,
        dst_l: &Layout,
        rhs: &dyn Buffer,
        rl: &Layout,
    ) -> Result<()> {
        let r = view(op.name(), rhs, rl)?;
        elementwise::binary_inplace(op, view_mut(op.name(), dst, dst_l)?, dst_l, r, rl)
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
        let (c, a, b) = (view("where", cond, cl)?, view("where", a, al)?, view("where", b, bl)?);
        elementwise::where_cond(c, cl, a, al, b, bl).map(OwnedBuffer::from)
    }

    fn reduce(&self, op: ReduceOp, src: &dyn Buffer, l: &Layout, dims: &[usize]) -> Result<OwnedBuffer> {
        reduce::reduce(op, view(op.name(), src, l)?, l, dims).map(OwnedBuffer::from)
    }

    fn scan(&self, op: ScanOp, src: &dyn Buffer, l: &Layout, dim: usize) -> Result<OwnedBuffer> {
        reduce::scan(op, view(op.name(), src, l)?, l, dim).map(OwnedBuffer::from)
    }

    fn matmul(&self, lhs: &dyn Buffer, ll: &Layout, rhs: &dyn Buffer, rl: &Layout) -> Result<OwnedBuffer> {
        matmul::matmul(cpu(lhs)?, ll, cpu(rhs)?, rl).map(OwnedBuffer::from)
    }

    fn gather(
        &self,
        src: &dyn Buffer,
        sl: &Layout,
        index: &dyn Buffer,
        il: &Layout,
        dim: usize,
    ) -> Result<OwnedBuffer> {
        index::gather(view("gather", src, sl)?, sl, view("gather", index, il)?, il, dim).map(OwnedBuffer::from)
    }

    fn scatter(
        &self,
        dst: &mut dyn Buffer,
        dl: &Layout,
        index: &dyn Buffer,
        il: &Layout,
        src: &dyn Buffer,
        sl: &Layout,
        dim: usize,
        accumulate: bool,
    ) -> Result<()> {
        let (i, s) = (view("scatter", index, il)?, view("scatter", src, sl)?);
        index::scatter(view_mut("scatter", dst, dl)?, dl, i, il, s, sl, dim, accumulate)
    }

    fn sort(&self, src: &dyn Buffer, l: &Layout, dim: usize, descending: bool) -> Result<(OwnedBuffer, OwnedBuffer)> {
        let (v, i) = index::sort(view("sort", src, l)?, l, dim, descending)?;
        Ok((v.into(), i.into()))
    }

    fn fused(&self, op: FusedOp<'_>) -> Option<Result<Vec<OwnedBuffer>>> {
        let name = op.name();
        let checked = |b, l: &Layout| view(name, b, l);
        let window_ok = |w: &crate::Window2d| w.check(name);
        let columns_ok = |w: &crate::Window2d| w.check_columns(name);
        let one = |r: Result<CpuBuffer>| r.map(|b| vec![OwnedBuffer::from(b)]);
        match op {
            FusedOp::Softmax { x, layout, log } => {
                let b = match checked(x, layout) {
                    Ok(b) => b,
                    Err(e) => return Some(Err(e)),
                };
                reduce::softmax_lastdim(b, layout, log).map(one)
            }
            FusedOp::MaxPool2d { x, layout, window } => {
                let b = match checked(x, layout).and_then(|b| window_ok(&window).map(|_| b)) {
                    Ok(b) => b,
                    Err(e) => return Some(Err(e)),
                };
                window::max_pool(b, layout, &window).map(|r| r.map(|(v, i)| vec![v.into(), i.into()]))
            }
            FusedOp::Im2col { x, layout, window } => {
                let b = match checked(x, layout).and_then(|b| columns_ok(&window).map(|_| b)) {
                    Ok(b) => b,
                    Err(e) => return Some(Err(e)),
                };
                window::im2col(b, layout, &window).map(one)
            }
            FusedOp::Col2im { cols, layout, window } => {
                let b = match checked(cols, layout).and_then(|b| columns_ok(&window).map(|_| b)) {
                    Ok(b) => b,
                    Err(e) => return Some(Err(e)),
                };
                window::col2im(b, layout, &window).map(one)
            }
            FusedOp::OptimizerStep { update, param, grad, state } => {
                optim::step(&update, param, grad, state).map(|r| r.map(|()| Vec::new()))
            }
            // Layer norm runs as its composite on the CPU.
            _ => None,
        }
    }
}

pub(crate) fn unsupported(op: &'static str, dtype: DType) -> Error {
    Error::Unsupported { op, dtype, device: "cpu".into() }
}

/// Converts a host view to `dtype` (a contiguous copy).
pub fn cast_buffer(b: &CpuBuffer, l: &Layout, dtype: DType) -> Result<CpuBuffer> {
    elementwise::cast(b, l, dtype)
}
