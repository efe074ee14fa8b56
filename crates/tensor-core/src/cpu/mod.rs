//! The CPU backend: typed host vectors, multi-threaded strided kernels, GEMM through
//! the `gemm` crate.

pub mod alloc;
mod arith;
mod attention;
mod conv;
mod elementwise;
mod index;
pub mod iter;
mod loss;
mod matmul;
mod norm;
mod optim;
mod reduce;
mod rnn;
pub mod simd;
pub(crate) mod window;
mod winograd;

use std::any::Any;
use std::sync::{Arc, OnceLock};

pub use arith::Arith;
pub use simd::CpuIsa;

use crate::backend::{Backend, BinaryOp, Buffer, DeviceLocation, FusedOp, OwnedBuffer, ReduceOp, ScanOp, UnaryOp};
pub(crate) use crate::host::{as_host_buffer, as_host_buffer_mut, HostBuffer};
use crate::{DType, Error, Layout, Result, Scalar};

/// Runs `$body` with `$v` bound to the typed vector and `$T` to its element type.
macro_rules! with_dtype {
    ($buf:expr, $v:ident, $T:ident => $body:expr) => {
        match $buf {
            HostBuffer::Bool($v) => {
                #[allow(dead_code)]
                type $T = bool;
                $body
            }
            HostBuffer::U8($v) => {
                #[allow(dead_code)]
                type $T = u8;
                $body
            }
            HostBuffer::I32($v) => {
                #[allow(dead_code)]
                type $T = i32;
                $body
            }
            HostBuffer::I64($v) => {
                #[allow(dead_code)]
                type $T = i64;
                $body
            }
            HostBuffer::F16($v) => {
                #[allow(dead_code)]
                type $T = half::f16;
                $body
            }
            HostBuffer::BF16($v) => {
                #[allow(dead_code)]
                type $T = half::bf16;
                $body
            }
            HostBuffer::F32($v) => {
                #[allow(dead_code)]
                type $T = f32;
                $body
            }
            HostBuffer::F64($v) => {
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
            HostBuffer::F16($v) => {
                #[allow(dead_code)]
                type $T = half::f16;
                $body
            }
            HostBuffer::BF16($v) => {
                #[allow(dead_code)]
                type $T = half::bf16;
                $body
            }
            HostBuffer::F32($v) => {
                #[allow(dead_code)]
                type $T = f32;
                $body
            }
            HostBuffer::F64($v) => {
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

/// The CPU backend's storage: a [`HostBuffer`] that goes back to the buffer cache
/// ([`alloc`]) when the last tensor using it is dropped.
#[derive(Debug)]
pub struct CpuStore(HostBuffer);

impl CpuStore {
    /// Wraps a host buffer.
    pub fn new(b: HostBuffer) -> Self {
        CpuStore(b)
    }
}

impl Drop for CpuStore {
    fn drop(&mut self) {
        alloc::recycle(std::mem::replace(&mut self.0, HostBuffer::U8(Vec::new())));
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
    fn as_host(&self) -> Option<&HostBuffer> {
        Some(&self.0)
    }
    fn as_host_mut(&mut self) -> Option<&mut HostBuffer> {
        Some(&mut self.0)
    }
}

/// Downcasts a buffer that must belong to the CPU backend.
pub(crate) fn cpu(b: &dyn Buffer) -> Result<&HostBuffer> {
    as_host_buffer(b)
        .ok_or_else(|| Error::Backend { backend: "cpu".into(), msg: format!("expected a CPU buffer, got {b:?}") })
}

/// Mutable variant of [`cpu`].
pub(crate) fn cpu_mut(b: &mut dyn Buffer) -> Result<&mut HostBuffer> {
    as_host_buffer_mut(b).ok_or_else(|| Error::Backend { backend: "cpu".into(), msg: "expected a CPU buffer".into() })
}

/// Downcasts a CPU buffer and checks that the view `l` lies inside it. Every backend
/// entry point takes its operands through this (or [`view_mut`]), so a layout that
/// reaches past its buffer is an error, never an out-of-bounds access.
fn view<'a>(op: &'static str, b: &'a dyn Buffer, l: &Layout) -> Result<&'a HostBuffer> {
    let c = cpu(b)?;
    l.check_fits(op, c.len())?;
    Ok(c)
}

/// [`view`] of an optional parameter.
#[allow(clippy::type_complexity)]
fn opt_view<'a>(
    op: &'static str,
    p: Option<(&'a dyn Buffer, &'a Layout)>,
) -> Result<Option<(&'a HostBuffer, &'a Layout)>> {
    p.map(|(b, l)| view(op, b, l).map(|b| (b, l))).transpose()
}

/// Mutable variant of [`view`].
fn view_mut<'a>(op: &'static str, b: &'a mut dyn Buffer, l: &Layout) -> Result<&'a mut HostBuffer> {
    let c = cpu_mut(b)?;
    l.check_fits(op, c.len())?;
    Ok(c)
}

impl Backend for CpuBackend {
    fn location(&self) -> DeviceLocation {
        DeviceLocation::Cpu
    }

    fn zeros(&self, dtype: DType, len: usize) -> Result<OwnedBuffer> {
        Ok(OwnedBuffer::from(HostBuffer::zeros(dtype, len)?))
    }

    fn upload(&self, data: HostBuffer) -> Result<OwnedBuffer> {
        Ok(OwnedBuffer::from(data))
    }

    fn download(&self, buf: &dyn Buffer, layout: &Layout) -> Result<HostBuffer> {
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
        lhs_layout: &Layout,
        rhs: &dyn Buffer,
        rhs_layout: &Layout,
    ) -> Result<OwnedBuffer> {
        let (a, b) = (view(op.name(), lhs, lhs_layout)?, view(op.name(), rhs, rhs_layout)?);
        elementwise::binary(op, a, lhs_layout, b, rhs_layout).map(OwnedBuffer::from)
    }

    fn binary_inplace(
        &self,
        op: BinaryOp,
        dst: &mut dyn Buffer,
        dst_l: &Layout,
        rhs: &dyn Buffer,
        rhs_layout: &Layout,
    ) -> Result<()> {
        let r = view(op.name(), rhs, rhs_layout)?;
        elementwise::binary_inplace(op, view_mut(op.name(), dst, dst_l)?, dst_l, r, rhs_layout)
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

    fn matmul(
        &self,
        lhs: &dyn Buffer,
        lhs_layout: &Layout,
        rhs: &dyn Buffer,
        rhs_layout: &Layout,
    ) -> Result<OwnedBuffer> {
        matmul::matmul(cpu(lhs)?, lhs_layout, cpu(rhs)?, rhs_layout).map(OwnedBuffer::from)
    }

    fn gather(
        &self,
        src: &dyn Buffer,
        src_layout: &Layout,
        index: &dyn Buffer,
        index_layout: &Layout,
        dim: usize,
    ) -> Result<OwnedBuffer> {
        index::gather(
            view("gather", src, src_layout)?,
            src_layout,
            view("gather", index, index_layout)?,
            index_layout,
            dim,
        )
        .map(OwnedBuffer::from)
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
        let (i, s) = (view("scatter", index, index_layout)?, view("scatter", src, src_layout)?);
        index::scatter(view_mut("scatter", dst, dl)?, dl, i, index_layout, s, src_layout, dim, accumulate)
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
        let one = |r: Result<HostBuffer>| r.map(|b| vec![OwnedBuffer::from(b)]);
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
            FusedOp::MaxPool2dBackward { grad, indices, layout, planes, size } => {
                let (g, i) = match (checked(grad, layout), checked(indices, layout)) {
                    (Ok(g), Ok(i)) => (g, i),
                    (Err(e), _) | (_, Err(e)) => return Some(Err(e)),
                };
                window::max_pool_backward(g, i, layout, planes, size).map(one)
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
            FusedOp::LayerNorm { x, layout, weight, bias, eps } => {
                let (b, w, bi) = match (checked(x, layout), opt_view(name, weight), opt_view(name, bias)) {
                    (Ok(b), Ok(w), Ok(bi)) => (b, w, bi),
                    (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return Some(Err(e)),
                };
                norm::layer_norm(b, layout, w, bi, eps).map(one)
            }
            FusedOp::LayerNormBackward { x, layout, grad, weight, eps } => {
                let (b, g, w) = match (checked(x, layout), checked(grad, layout), opt_view(name, weight)) {
                    (Ok(b), Ok(g), Ok(w)) => (b, g, w),
                    (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return Some(Err(e)),
                };
                norm::layer_norm_backward(b, layout, g, w, eps)
                    .map(|r| r.map(|v| v.into_iter().map(OwnedBuffer::from).collect()))
            }
            FusedOp::Attention { qkv, dims, scale, causal } => {
                let v: Result<Vec<_>> = qkv.iter().map(|&(b, l)| checked(b, l).map(|b| (b, l))).collect();
                match v {
                    Ok(v) => attention::forward(v[0], v[1], v[2], dims, scale, causal)
                        .map(|r| r.map(|v| v.into_iter().map(OwnedBuffer::from).collect())),
                    Err(e) => Some(Err(e)),
                }
            }
            FusedOp::AttentionBackward { tensors, dims, scale, causal } => {
                let v: Result<Vec<_>> = tensors.iter().map(|&(b, l)| checked(b, l).map(|b| (b, l))).collect();
                match v {
                    Ok(v) => attention::backward(v[0], v[1], v[2], v[3], v[4], v[5], dims, scale, causal)
                        .map(|r| r.map(|v| v.into_iter().map(OwnedBuffer::from).collect())),
                    Err(e) => Some(Err(e)),
                }
            }
            FusedOp::Conv2d { x, weight, bias, dims } => {
                let views = dims
                    .check(name)
                    .and_then(|_| Ok((checked(x.0, x.1)?, checked(weight.0, weight.1)?, opt_view(name, bias)?)));
                match views {
                    Ok((xb, wb, bb)) => conv::forward_host((xb, x.1), (wb, weight.1), bb, &dims).map(one),
                    Err(e) => Some(Err(e)),
                }
            }
            FusedOp::Conv2dBackward { x, weight, grad, dims, input_grad, weight_grad } => {
                let views = dims
                    .check(name)
                    .and_then(|_| Ok((checked(x.0, x.1)?, checked(weight.0, weight.1)?, checked(grad.0, grad.1)?)));
                match views {
                    Ok((xb, wb, gb)) => {
                        conv::backward_host((xb, x.1), (wb, weight.1), (gb, grad.1), &dims, input_grad, weight_grad)
                            .map(|r| r.map(|v| v.into_iter().map(OwnedBuffer::from).collect()))
                    }
                    Err(e) => Some(Err(e)),
                }
            }
            FusedOp::LstmSequence { inputs, dims, reverse } => {
                let v: Result<Vec<_>> = inputs.iter().map(|&(b, l)| checked(b, l).map(|b| (b, l))).collect();
                match v {
                    Ok(v) => rnn::forward_host([v[0], v[1], v[2], v[3]], &dims, reverse)
                        .map(|r| r.map(|v| v.into_iter().map(OwnedBuffer::from).collect())),
                    Err(e) => Some(Err(e)),
                }
            }
            FusedOp::LstmSequenceBackward { tensors, dims, reverse } => {
                let v: Result<Vec<_>> = tensors.iter().map(|&(b, l)| checked(b, l).map(|b| (b, l))).collect();
                match v {
                    Ok(v) => rnn::backward_host([v[0], v[1], v[2], v[3], v[4], v[5]], &dims, reverse)
                        .map(|r| r.map(|v| v.into_iter().map(OwnedBuffer::from).collect())),
                    Err(e) => Some(Err(e)),
                }
            }
            FusedOp::GeluBackward { x, grad, layout, tanh } => {
                let (b, g) = match (checked(x, layout), checked(grad, layout)) {
                    (Ok(b), Ok(g)) => (b, g),
                    (Err(e), _) | (_, Err(e)) => return Some(Err(e)),
                };
                norm::gelu_backward(b, g, layout, tanh).map(one)
            }
            FusedOp::CrossEntropy { x, layout, targets } => {
                let v = checked(x, layout).and_then(|b| Ok((b, class_targets(name, &targets)?)));
                match v {
                    Ok((b, (t, w))) => {
                        loss::cross_entropy(b, layout, t, w, targets.ignore_index, targets.label_smoothing)
                            .map(|r| r.map(|v| v.into_iter().map(OwnedBuffer::from).collect()))
                    }
                    Err(e) => Some(Err(e)),
                }
            }
            FusedOp::CrossEntropyBackward { x, layout, lse, grad, targets } => {
                let v = checked(x, layout).and_then(|b| {
                    Ok((b, checked(lse.0, lse.1)?, checked(grad.0, grad.1)?, class_targets(name, &targets)?))
                });
                match v {
                    Ok((b, s, g, (t, w))) => loss::cross_entropy_backward(
                        b,
                        layout,
                        (s, lse.1),
                        (g, grad.1),
                        t,
                        w,
                        targets.ignore_index,
                        targets.label_smoothing,
                    )
                    .map(one),
                    Err(e) => Some(Err(e)),
                }
            }
            FusedOp::ThresholdBackward { x, grad, layout, threshold } => {
                let (b, g) = match (checked(x, layout), checked(grad, layout)) {
                    (Ok(b), Ok(g)) => (b, g),
                    (Err(e), _) | (_, Err(e)) => return Some(Err(e)),
                };
                norm::threshold_backward(b, g, layout, threshold).map(one)
            }
        }
    }
}

/// The host views of a cross-entropy's targets and optional weight.
#[allow(clippy::type_complexity)]
fn class_targets<'a>(
    name: &'static str,
    t: &crate::ClassTargets<'a>,
) -> Result<((&'a HostBuffer, &'a Layout), Option<(&'a HostBuffer, &'a Layout)>)> {
    Ok(((view(name, t.target.0, t.target.1)?, t.target.1), opt_view(name, t.weight)?))
}

pub(crate) fn unsupported(op: &'static str, dtype: DType) -> Error {
    Error::Unsupported { op, dtype, device: "cpu".into() }
}

/// Converts a host view to `dtype` (a contiguous copy).
pub fn cast_buffer(b: &HostBuffer, l: &Layout, dtype: DType) -> Result<HostBuffer> {
    elementwise::cast(b, l, dtype)
}
