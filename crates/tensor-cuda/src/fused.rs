//! Fused kernels: the Adam/AdamW update (also reached through
//! [`tensor_core::Backend::adam_update`], which optim's Adam and AdamW use) and
//! layer_norm (called on [`CudaBackend`] directly).

use tensor_core::device::{lock_in_order, Access};
use tensor_core::{DType, Error, Layout, OwnedBuffer, Result, Tensor};

use crate::device::{CudaBackend, CudaBuffer};
use crate::ops::{launch, sfx};

/// Hyper-parameters of one Adam / AdamW step: tensor-core's [`tensor_core::AdamConfig`],
/// which optim hands to [`tensor_core::Backend::adam_update`].
pub use tensor_core::AdamConfig;

fn cuda_buf<'a>(be: &CudaBackend, op: &'static str, b: &'a dyn tensor_core::Buffer) -> Result<&'a CudaBuffer> {
    be.buf(op, b)
}

impl CudaBackend {
    fn check_tensor(&self, op: &'static str, t: &Tensor, like: &Tensor) -> Result<()> {
        if t.device().location() != tensor_core::DeviceLocation::Cuda(self.ordinal) {
            return Err(Error::DeviceMismatch { op, lhs: self.dev_name(), rhs: t.device().to_string() });
        }
        if t.dtype() != like.dtype() {
            return Err(Error::DTypeMismatch { op, expected: like.dtype(), got: t.dtype() });
        }
        if t.dims() != like.dims() {
            return Err(Error::shape(op, like.dims(), t.dims(), "all tensors must have the same shape"));
        }
        if !t.is_contiguous() {
            return Err(Error::arg(op, "tensors must be contiguous"));
        }
        Ok(())
    }

    /// One fused Adam/AdamW step, in place on `param`, `exp_avg` and `exp_avg_sq`
    /// (contiguous float tensors of one shape and dtype on this device, in distinct
    /// storages).
    pub fn adam_step(
        &self,
        param: &Tensor,
        grad: &Tensor,
        exp_avg: &Tensor,
        exp_avg_sq: &Tensor,
        cfg: &AdamConfig,
    ) -> Result<()> {
        const OP: &str = "adam_step";
        for t in [param, grad, exp_avg, exp_avg_sq] {
            self.check_tensor(OP, t, param)?;
        }
        if !param.dtype().is_float() {
            return Err(Error::Unsupported { op: OP, dtype: param.dtype(), device: self.dev_name() });
        }
        if cfg.step == 0 {
            return Err(Error::arg(OP, "step counts from 1"));
        }
        let ids = [param.storage_id(), grad.storage_id(), exp_avg.storage_id(), exp_avg_sq.storage_id()];
        for i in 0..4 {
            for j in i + 1..4 {
                if ids[i] == ids[j] {
                    return Err(Error::arg(OP, "param, grad and the moments must not share storage"));
                }
            }
        }
        let n = param.numel();
        if n == 0 {
            return Ok(());
        }
        // All four locks at once, in tensor-core's global lock order.
        let [mut pw, gr, mut mw, mut vw] = lock_in_order([
            (&**param.storage(), Access::Write),
            (&**grad.storage(), Access::Read),
            (&**exp_avg.storage(), Access::Write),
            (&**exp_avg_sq.storage(), Access::Write),
        ]);
        let locked = || Error::arg(OP, "storage not locked for writing");
        let span = |t: &Tensor| tensor_core::Span { offset: t.layout().offset(), len: n };
        self.adam_launch(
            (self.buf_mut(OP, &mut **pw.as_mut().ok_or_else(locked)?)?, span(param)),
            (cuda_buf(self, OP, &**gr)?, span(grad)),
            (self.buf_mut(OP, &mut **mw.as_mut().ok_or_else(locked)?)?, span(exp_avg)),
            (self.buf_mut(OP, &mut **vw.as_mut().ok_or_else(locked)?)?, span(exp_avg_sq)),
            cfg,
        )
    }

    /// Launches the fused Adam kernel on four distinct buffers of one float dtype.
    pub(crate) fn adam_launch(
        &self,
        param: (&mut CudaBuffer, tensor_core::Span),
        grad: (&CudaBuffer, tensor_core::Span),
        exp_avg: (&mut CudaBuffer, tensor_core::Span),
        exp_avg_sq: (&mut CudaBuffer, tensor_core::Span),
        cfg: &AdamConfig,
    ) -> Result<()> {
        const OP: &str = "adam_step";
        let dt = param.0.dtype;
        let n = param.1.len;
        for (b, s) in [(&*param.0, param.1), (grad.0, grad.1), (&*exp_avg.0, exp_avg.1), (&*exp_avg_sq.0, exp_avg_sq.1)]
        {
            if b.dtype != dt {
                return Err(Error::DTypeMismatch { op: OP, expected: dt, got: b.dtype });
            }
            if s.len != n || s.offset.checked_add(s.len).is_none_or(|e| e > b.len) {
                return Err(Error::arg(OP, format!("span {s:?} does not fit a buffer of {} elements", b.len)));
            }
        }
        if !dt.is_float() {
            return Err(Error::Unsupported { op: OP, dtype: dt, device: self.dev_name() });
        }
        if cfg.step == 0 {
            return Err(Error::arg(OP, "step counts from 1"));
        }
        if n == 0 {
            return Ok(());
        }
        let pp = self.ptr(param.0, param.1.offset);
        let gp = self.ptr(grad.0, grad.1.offset);
        let mp = self.ptr(exp_avg.0, exp_avg.1.offset);
        let vp = self.ptr(exp_avg_sq.0, exp_avg_sq.1.offset);
        let t = cfg.step as f64;
        let (bc1, bc2) = (1.0 - cfg.beta1.powf(t), 1.0 - cfg.beta2.powf(t));
        let (lr, b1, b2, eps, wd) = (cfg.lr, cfg.beta1, cfg.beta2, cfg.eps, cfg.weight_decay);
        let (n_i, dec, max) = (n as i64, cfg.decoupled as i32, cfg.maximize as i32);
        let f = self.func("optim", &format!("adam_{}", sfx(dt)))?;
        launch!(self, f, self.cfg(n), pp, gp, mp, vp, n_i, lr, b1, b2, eps, wd, bc1, bc2, dec, max)
    }

    /// Layer normalisation over the last dim of a contiguous float tensor `x` on this
    /// device, with optional `weight` and `bias` of the last dim's size. Returns
    /// `(y, mean, rstd)`; `mean` and `rstd` have one entry per row (f32, or f64 for f64
    /// input) for the backward pass.
    pub fn layer_norm(
        &self,
        x: &Tensor,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        eps: f64,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        const OP: &str = "layer_norm";
        self.check_tensor(OP, x, x)?;
        if !x.dtype().is_float() || x.rank() == 0 {
            return Err(Error::Unsupported { op: OP, dtype: x.dtype(), device: self.dev_name() });
        }
        let cols = x.dims()[x.rank() - 1];
        let rows: usize = x.dims()[..x.rank() - 1].iter().product();
        for t in [weight, bias].into_iter().flatten() {
            if t.dims() != [cols] || t.dtype() != x.dtype() || !t.is_contiguous() {
                return Err(Error::shape(OP, x.dims(), t.dims(), "weight and bias must be contiguous [last dim]"));
            }
            if t.device().location() != tensor_core::DeviceLocation::Cuda(self.ordinal) {
                return Err(Error::DeviceMismatch { op: OP, lhs: self.dev_name(), rhs: t.device().to_string() });
            }
        }
        let stat_dt = if x.dtype() == DType::F64 { DType::F64 } else { DType::F32 };
        let out = self.alloc(x.dtype(), x.numel())?;
        let mean = self.alloc(stat_dt, rows)?;
        let rstd = self.alloc(stat_dt, rows)?;
        if rows > 0 && cols > 0 {
            let xr = x.storage().read();
            let wr = weight.map(|w| w.storage().read());
            let br = bias.map(|b| b.storage().read());
            let xp = self.ptr(cuda_buf(self, OP, &**xr)?, x.layout().offset());
            let wp = match (&wr, weight) {
                (Some(g), Some(w)) => self.ptr(cuda_buf(self, OP, &***g)?, w.layout().offset()),
                _ => 0u64,
            };
            let bp = match (&br, bias) {
                (Some(g), Some(b)) => self.ptr(cuda_buf(self, OP, &***g)?, b.layout().offset()),
                _ => 0u64,
            };
            let (op_, mp, rp) = (self.ptr(&out, 0), self.ptr(&mean, 0), self.ptr(&rstd, 0));
            let (r, c) = (rows as i64, cols as i64);
            let cfg = cudarc::driver::LaunchConfig {
                grid_dim: (rows.min(65535 * 32) as u32, 1, 1),
                block_dim: (cols.next_power_of_two().clamp(32, 1024) as u32, 1, 1),
                shared_mem_bytes: 0,
            };
            let f = self.func("reduce", &format!("layer_norm_{}", sfx(x.dtype())))?;
            launch!(self, f, cfg, xp, wp, bp, op_, mp, rp, r, c, eps)?;
        }
        let dev = x.device().clone();
        let mut stat_shape = x.dims().to_vec();
        stat_shape.pop();
        let stat = Layout::contiguous(stat_shape);
        Ok((
            Tensor::from_parts(OwnedBuffer::new(out), Layout::contiguous(x.shape().clone()), dev.clone())?,
            Tensor::from_parts(OwnedBuffer::new(mean), stat.clone(), dev.clone())?,
            Tensor::from_parts(OwnedBuffer::new(rstd), stat, dev)?,
        ))
    }
}
