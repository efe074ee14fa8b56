//! Descriptors of the fused fast paths a backend may offer through
//! [`Backend::fused`](crate::Backend::fused): the sliding-window geometry of pooling
//! and convolution ([`Window2d`]), the optimizer updates ([`OptimizerUpdate`] with one
//! config per optimizer), and [`optimizer_step`], the checked tensor-level entry point
//! optimizers call (PyTorch's `_fused_adam_` and friends).
//!
//! Every fused op has a composite fallback written with tensor ops, so a backend that
//! returns `None` is always correct; fast paths only make it faster.

use crate::backend::{Buffer, FusedOp, Span};
use crate::device::{lock_all, Access};
use crate::{Error, Result, Tensor};

/// Geometry of a 2-D sliding window over `planes` planes of `size[0] x size[1]`
/// elements (batch times channels for pooling and convolution), producing an
/// `out[0] x out[1]` grid per plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window2d {
    /// Number of planes (batch times channels).
    pub planes: usize,
    /// Input plane size `[h, w]`.
    pub size: [usize; 2],
    /// Output grid `[oh, ow]`.
    pub out: [usize; 2],
    /// Kernel size `[kh, kw]`.
    pub kernel: [usize; 2],
    /// Stride.
    pub stride: [usize; 2],
    /// Implicit padding on both sides (reads there are zeros, or skipped by pooling).
    pub padding: [usize; 2],
    /// Spacing between kernel taps.
    pub dilation: [usize; 2],
}

impl Window2d {
    /// Checks that the geometry is safe to walk: nonzero kernel, stride and dilation;
    /// an output grid of at most `(size + 2 pad - dil (k - 1) - 1) / stride + 2` per
    /// axis (the floor size, plus one for `ceil_mode`); every tap coordinate
    /// `o * stride + k * dilation` and the padded size in range; and the input and
    /// output element counts in range. Backends call it before trusting a descriptor;
    /// taps that land in the padding are skipped (pooling) or read as zero (im2col).
    pub fn check(&self, op: &'static str) -> Result<()> {
        let bad = |msg: String| Err(Error::arg(op, msg));
        for a in 0..2 {
            if self.kernel[a] == 0 || self.stride[a] == 0 || self.dilation[a] == 0 {
                return bad(format!("kernel, stride and dilation must be positive, got {self:?}"));
            }
            let padded = self.padding[a].checked_mul(2).and_then(|p| p.checked_add(self.size[a]));
            let span = (self.kernel[a] - 1).checked_mul(self.dilation[a]).and_then(|s| s.checked_add(1));
            let reach = self.out[a].saturating_sub(1).checked_mul(self.stride[a]).and_then(|r| r.checked_add(span?));
            let (Some(padded), Some(span), Some(_)) = (padded, span, reach) else {
                return bad(format!("window sizes overflow: {self:?}"));
            };
            let floor = if padded >= span { (padded - span) / self.stride[a] + 1 } else { 0 };
            if self.out[a] > floor + 1 {
                return bad(format!(
                    "output size {} along axis {a} is past the window's ({floor}, or {} in ceil mode): {self:?}",
                    self.out[a],
                    floor + 1
                ));
            }
        }
        let total = |dims: [usize; 2]| dims[0].checked_mul(dims[1]).and_then(|p| p.checked_mul(self.planes));
        if total(self.size).is_none() || total(self.out).is_none() {
            return bad(format!("window sizes overflow: {self:?}"));
        }
        Ok(())
    }

    /// [`check`](Self::check), and that the im2col column count
    /// [`columns_len`](Self::columns_len) is in range.
    pub fn check_columns(&self, op: &'static str) -> Result<()> {
        self.check(op)?;
        let cols = self.kernel[0].checked_mul(self.kernel[1]).and_then(|k| k.checked_mul(self.output_len()));
        if cols.is_none() {
            return Err(Error::arg(op, format!("window sizes overflow: {self:?}")));
        }
        Ok(())
    }

    /// Elements of the input: `planes * h * w`.
    pub fn input_len(&self) -> usize {
        self.planes * self.size[0] * self.size[1]
    }

    /// Elements of the pooled output: `planes * oh * ow`.
    pub fn output_len(&self) -> usize {
        self.planes * self.out[0] * self.out[1]
    }

    /// Elements of the im2col columns: `planes * kh * kw * oh * ow`.
    pub fn columns_len(&self) -> usize {
        self.output_len() * self.kernel[0] * self.kernel[1]
    }
}

/// Geometry of a 2-D convolution for [`FusedOp::Conv2d`] and
/// its backward: `x [batch, in_channels, h, w]` (so `window.planes = batch *
/// in_channels`), `weight [out_channels, in_channels / groups, kh, kw]` and output
/// `[batch, out_channels, oh, ow]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dDims {
    /// Images in the batch.
    pub batch: usize,
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Channel groups (both channel counts divide by it).
    pub groups: usize,
    /// The sliding window over each input plane.
    pub window: Window2d,
}

impl Conv2dDims {
    /// [`Window2d::check_columns`], and that the channel counts, groups and planes
    /// agree and the weight, output and per-image column sizes are in range.
    /// Backends call it before trusting a descriptor.
    pub fn check(&self, op: &'static str) -> Result<()> {
        self.window.check_columns(op)?;
        let (n, c, o, g) = (self.batch, self.in_channels, self.out_channels, self.groups);
        if g == 0 || c % g != 0 || o % g != 0 || n.checked_mul(c) != Some(self.window.planes) {
            return Err(Error::arg(op, format!("inconsistent convolution geometry: {self:?}")));
        }
        let [kh, kw] = self.window.kernel;
        let [oh, ow] = self.window.out;
        let sizes = [
            [o, c / g, kh, kw], // weight
            [n, o, oh, ow],     // output
            [c, kh, kw, oh],    // one image's columns, times ow below
        ];
        for s in sizes {
            if s.iter().try_fold(ow.max(1), |a: usize, &b| a.checked_mul(b)).is_none() {
                return Err(Error::arg(op, format!("convolution sizes overflow: {self:?}")));
            }
        }
        Ok(())
    }

    /// Elements of the weight: `out_channels * in_channels / groups * kh * kw`.
    pub fn weight_len(&self) -> usize {
        self.out_channels * (self.in_channels / self.groups.max(1)) * self.window.kernel[0] * self.window.kernel[1]
    }

    /// Elements of the output: `batch * out_channels * oh * ow`.
    pub fn output_len(&self) -> usize {
        self.batch * self.out_channels * self.window.out[0] * self.window.out[1]
    }
}

/// Sizes of one direction of one LSTM layer over a whole sequence, for
/// [`FusedOp::LstmSequence`] and its backward: `steps` time steps of `batch` rows
/// with `hidden` units (four gates of `hidden` columns each).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LstmDims {
    /// Time steps (at least one).
    pub steps: usize,
    /// Rows of every step.
    pub batch: usize,
    /// Hidden units.
    pub hidden: usize,
}

impl LstmDims {
    /// Checks that there is a step and that every buffer size (`steps * batch * 4 *
    /// hidden` gates, `2 * steps * batch * hidden` states, the `hidden * 4 * hidden`
    /// weight) is in range. Backends call it before trusting a descriptor.
    pub fn check(&self, op: &'static str) -> Result<()> {
        let fits = [self.gates_len(), self.states_len(), self.weight_len()].iter().all(Option::is_some);
        if self.steps == 0 || !fits {
            return Err(Error::arg(op, format!("invalid LSTM sizes: {self:?}")));
        }
        Ok(())
    }

    /// Elements of the gates of every step, `steps * batch * 4 * hidden`.
    pub fn gates_len(&self) -> Option<usize> {
        self.steps.checked_mul(self.batch)?.checked_mul(self.hidden)?.checked_mul(4)
    }

    /// Elements of the hidden and cell states of every step, `2 * steps * batch * hidden`.
    pub fn states_len(&self) -> Option<usize> {
        self.steps.checked_mul(self.batch)?.checked_mul(self.hidden)?.checked_mul(2)
    }

    /// Elements of the recurrent weight, `hidden * 4 * hidden`.
    pub fn weight_len(&self) -> Option<usize> {
        self.hidden.checked_mul(self.hidden)?.checked_mul(4)
    }
}

/// Hyper-parameters of one fused SGD step (PyTorch's `torch.optim.SGD`). State: none
/// without momentum, else `[momentum_buffer]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdConfig {
    /// Learning rate.
    pub lr: f64,
    /// Momentum factor (0 for plain SGD).
    pub momentum: f64,
    /// Dampening of the momentum.
    pub dampening: f64,
    /// L2 penalty.
    pub weight_decay: f64,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// Ascend instead of descend.
    pub maximize: bool,
    /// The first step with momentum: the buffer is set to the gradient, not blended.
    pub first_step: bool,
}

/// Hyper-parameters of one fused Adam / AdamW step, with PyTorch's names and
/// defaults. State: `[exp_avg, exp_avg_sq]`, plus `max_exp_avg_sq` with `amsgrad`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    /// Learning rate.
    pub lr: f64,
    /// Decay of the first moment.
    pub beta1: f64,
    /// Decay of the second moment.
    pub beta2: f64,
    /// Added to the denominator.
    pub eps: f64,
    /// Weight decay (L2 for Adam, decoupled for AdamW).
    pub weight_decay: f64,
    /// AdamW's decoupled weight decay instead of Adam's L2 penalty.
    pub decoupled: bool,
    /// Ascend instead of descend.
    pub maximize: bool,
    /// Keep the running maximum of the second moment (a third state buffer).
    pub amsgrad: bool,
    /// The step number, starting at 1 (for the bias corrections).
    pub step: u64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
            maximize: false,
            amsgrad: false,
            step: 1,
        }
    }
}

/// Hyper-parameters of one fused Adagrad step (PyTorch's `torch.optim.Adagrad`).
/// State: `[sum]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdagradConfig {
    /// The step's learning rate, already decayed: `lr / (1 + (step - 1) lr_decay)`.
    pub lr: f64,
    /// L2 penalty.
    pub weight_decay: f64,
    /// Added to the denominator.
    pub eps: f64,
    /// Ascend instead of descend.
    pub maximize: bool,
}

/// Hyper-parameters of one fused RMSprop step (PyTorch's `torch.optim.RMSprop`).
/// State: `[square_avg]`, then `grad_avg` when `centered`, then `momentum_buffer`
/// when `momentum > 0`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RmsPropConfig {
    /// Learning rate.
    pub lr: f64,
    /// Smoothing constant of the square average.
    pub alpha: f64,
    /// Added to the denominator.
    pub eps: f64,
    /// L2 penalty.
    pub weight_decay: f64,
    /// Momentum factor (0 for none).
    pub momentum: f64,
    /// Normalise by the variance estimate instead of the raw second moment.
    pub centered: bool,
    /// Ascend instead of descend.
    pub maximize: bool,
}

/// One optimizer's update of a parameter from its gradient and state buffers.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum OptimizerUpdate {
    /// SGD with optional momentum.
    Sgd(SgdConfig),
    /// Adam or AdamW.
    Adam(AdamConfig),
    /// Adagrad.
    Adagrad(AdagradConfig),
    /// RMSprop.
    RmsProp(RmsPropConfig),
}

impl OptimizerUpdate {
    /// The optimizer's name as in PyTorch.
    pub fn name(&self) -> &'static str {
        match self {
            OptimizerUpdate::Sgd(_) => "sgd",
            OptimizerUpdate::Adam(c) if c.decoupled => "adamw",
            OptimizerUpdate::Adam(_) => "adam",
            OptimizerUpdate::Adagrad(_) => "adagrad",
            OptimizerUpdate::RmsProp(_) => "rmsprop",
        }
    }

    /// How many state buffers the update reads and writes, in the order each config
    /// documents.
    pub fn state_len(&self) -> usize {
        match self {
            OptimizerUpdate::Sgd(c) => usize::from(c.momentum != 0.0),
            OptimizerUpdate::Adam(c) => 2 + usize::from(c.amsgrad),
            OptimizerUpdate::Adagrad(_) => 1,
            OptimizerUpdate::RmsProp(c) => 1 + usize::from(c.centered) + usize::from(c.momentum > 0.0),
        }
    }
}

/// Runs `update` on `param` in place through its device's fused kernel, in one pass
/// over the parameter, its gradient and its `state` buffers (PyTorch's
/// `_fused_adam_`, `_fused_sgd_`, ...). Returns `Ok(false)` when the fast path does
/// not apply (tensors not all contiguous with one shape, float dtype and device, or
/// sharing storage, or no fused kernel on the device): the caller then runs the same
/// update with tensor ops. All storages are locked at once, in the global lock order.
///
/// ```
/// use tensor_core::fused::{optimizer_step, OptimizerUpdate, SgdConfig};
/// use tensor_core::Tensor;
/// let p = Tensor::new(&[1.0f32, 2.0]);
/// let g = Tensor::new(&[0.5f32, -1.0]);
/// let cfg = SgdConfig {
///     lr: 0.1, momentum: 0.0, dampening: 0.0, weight_decay: 0.0,
///     nesterov: false, maximize: false, first_step: true,
/// };
/// assert!(optimizer_step(&OptimizerUpdate::Sgd(cfg), &p, &g, &[])?);
/// assert_eq!(p.to_vec::<f32>()?, vec![0.95, 2.1]);
/// # Ok::<(), tensor_core::Error>(())
/// ```
pub fn optimizer_step(update: &OptimizerUpdate, param: &Tensor, grad: &Tensor, state: &[&Tensor]) -> Result<bool> {
    let op = update.name();
    if state.len() != update.state_len() {
        return Err(Error::arg(
            op,
            format!("the fused update takes {} state buffers, got {}", update.state_len(), state.len()),
        ));
    }
    let dt = param.dtype();
    if !dt.is_float() {
        return Ok(false);
    }
    let mut all = Vec::with_capacity(state.len() + 2);
    all.push(param);
    all.push(grad);
    all.extend_from_slice(state);
    for (i, t) in all.iter().enumerate() {
        if t.dtype() != dt || t.device() != param.device() || !t.is_contiguous() || t.dims() != param.dims() {
            return Ok(false);
        }
        if all[..i].iter().any(|u| u.same_storage(t)) {
            return Ok(false);
        }
    }
    let n = param.numel();
    let span = |t: &Tensor| Span { offset: t.layout().offset(), len: n };
    let mut requests = Vec::with_capacity(all.len());
    requests.push((&**param.storage(), Access::Write));
    requests.push((&**grad.storage(), Access::Read));
    requests.extend(state.iter().map(|s| (&**s.storage(), Access::Write)));
    let mut guards = lock_all(&requests);
    let (head, rest) = guards.split_at_mut(2);
    let [param_guard, grad_guard] = head else { unreachable!("two leading guards") };
    let locked = || Error::arg(op, "storage not locked for writing");
    let grad_buf: &dyn Buffer = &***grad_guard;
    let mut state_bufs = Vec::with_capacity(rest.len());
    for (g, t) in rest.iter_mut().zip(state) {
        state_bufs.push((&mut **g.as_mut().ok_or_else(locked)?, span(t)));
    }
    let fused = FusedOp::OptimizerStep {
        update: *update,
        param: (&mut **param_guard.as_mut().ok_or_else(locked)?, span(param)),
        grad: (grad_buf, span(grad)),
        state: state_bufs,
    };
    match param.device().backend().fused(fused) {
        None => Ok(false),
        Some(r) => r.map(|_| true),
    }
}

/// Runs `op` on `device`'s backend and wraps its outputs as contiguous tensors of
/// `shapes`, checking their number and sizes (a backend from outside this crate is
/// not trusted to get them right). `None` when the backend has no kernel for `op`.
pub(crate) fn run(device: &crate::Device, op: FusedOp<'_>, shapes: &[&[usize]]) -> Option<Result<Vec<Tensor>>> {
    let name = op.name();
    let outs = match device.backend().fused(op)? {
        Ok(o) => o,
        Err(e) => return Some(Err(e)),
    };
    if outs.len() != shapes.len() {
        return Some(Err(Error::Backend {
            backend: device.to_string(),
            msg: format!("{name}: the fused kernel returned {} outputs, expected {}", outs.len(), shapes.len()),
        }));
    }
    Some(
        outs.into_iter()
            .zip(shapes)
            .map(|(b, s)| Tensor::from_parts(b, crate::Layout::contiguous(s.to_vec()), device.clone()))
            .collect(),
    )
}
