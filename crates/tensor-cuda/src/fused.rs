//! Fused kernels, reached through [`tensor_core::Backend::fused`]: the Adam/AdamW
//! update ([`tensor_core::FusedOp::OptimizerStep`], which optim's Adam and AdamW use
//! through [`tensor_core::fused::optimizer_step`]) and layer norm
//! ([`tensor_core::FusedOp::LayerNorm`], which `Tensor::layer_norm` uses).

use tensor_core::{Buffer, DType, Error, Layout, Result};

use crate::device::{CudaBackend, CudaBuffer};
use crate::ops::{launch, sfx};

use tensor_core::AdamConfig;

impl CudaBackend {
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

    /// Layer normalisation over the last dim of a contiguous `[rows, cols]` float
    /// buffer on this device ([`tensor_core::FusedOp::LayerNorm`]), with optional
    /// contiguous `[cols]` weight and bias of its dtype. Returns `(y, mean, rstd)`;
    /// `mean` and `rstd` have one entry per row (f32, or f64 for f64 input).
    pub(crate) fn layer_norm_buffers(
        &self,
        x: &dyn Buffer,
        layout: &Layout,
        weight: Option<(&dyn Buffer, &Layout)>,
        bias: Option<(&dyn Buffer, &Layout)>,
        eps: f64,
    ) -> Result<(CudaBuffer, CudaBuffer, CudaBuffer)> {
        const OP: &str = "layer_norm";
        let xb = self.buf(OP, x)?;
        if !xb.dtype.is_float() || layout.rank() != 2 || !layout.is_contiguous() {
            return Err(Error::Unsupported { op: OP, dtype: xb.dtype, device: self.dev_name() });
        }
        layout.check_fits(OP, xb.len)?;
        let (rows, cols) = (layout.dims()[0], layout.dims()[1]);
        let mut params = [0u64; 2];
        for (slot, p) in params.iter_mut().zip([weight, bias]) {
            let Some((b, l)) = p else { continue };
            let pb = self.buf(OP, b)?;
            if l.dims() != [cols] || pb.dtype != xb.dtype || !l.is_contiguous() {
                return Err(Error::shape(OP, layout.dims(), l.dims(), "weight and bias must be contiguous [last dim]"));
            }
            l.check_fits(OP, pb.len)?;
            *slot = self.ptr(pb, l.offset());
        }
        let stat_dt = if xb.dtype == DType::F64 { DType::F64 } else { DType::F32 };
        let out = self.alloc(xb.dtype, layout.numel())?;
        let mean = self.alloc(stat_dt, rows)?;
        let rstd = self.alloc(stat_dt, rows)?;
        if rows > 0 && cols > 0 {
            let xp = self.ptr(xb, layout.offset());
            let [wp, bp] = params;
            let (op_, mp, rp) = (self.ptr(&out, 0), self.ptr(&mean, 0), self.ptr(&rstd, 0));
            let (r, c) = (rows as i64, cols as i64);
            let cfg = cudarc::driver::LaunchConfig {
                grid_dim: (rows.min(65535 * 32) as u32, 1, 1),
                block_dim: (cols.next_power_of_two().clamp(32, 1024) as u32, 1, 1),
                shared_mem_bytes: 0,
            };
            let f = self.func("reduce", &format!("layer_norm_{}", sfx(xb.dtype)))?;
            launch!(self, f, cfg, xp, wp, bp, op_, mp, rp, r, c, eps)?;
        }
        Ok((out, mean, rstd))
    }
}
