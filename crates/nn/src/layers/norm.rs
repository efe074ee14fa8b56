//! Normalisation layers: BatchNorm1d/2d, LayerNorm, GroupNorm.
//!
//! The normalisation is composed from differentiable `Var` ops (mean, biased
//! variance, `rsqrt`), so autograd derives the backward exactly.

use autograd::Var;
use tensor_core::{DType, Error, Result, Tensor};

use super::full_param;
use crate::module::{Buffer, Forward, Module, Param, Training, Visitor};

/// Checks `eps` (finite and >= 0: a negative one takes the square root of a negative
/// variance, NaN poisons every output).
fn check_eps(op: &'static str, eps: f64) -> Result<()> {
    if !(eps >= 0.0 && eps.is_finite()) {
        return Err(Error::arg(op, format!("eps must be finite and >= 0, got {eps}")));
    }
    Ok(())
}

/// `(x - mean) / sqrt(var + eps)` over `dims` with the biased variance; also returns
/// the batch mean and variance (keepdim).
fn normalize(x: &Var, dims: &[isize], eps: f64) -> Result<(Var, Var, Var)> {
    let mean = x.mean(dims, true)?;
    let xc = x.sub(&mean)?;
    let var = xc.square()?.mean(dims, true)?;
    let y = xc.mul(&var.add_scalar(eps)?.rsqrt()?)?;
    Ok((y, mean, var))
}

/// Batch normalisation shared by [`BatchNorm1d`] and [`BatchNorm2d`].
#[derive(Clone, Debug)]
pub struct BatchNorm {
    /// `[C]` scale (`None` without `affine`). Starts at 1.
    pub weight: Option<Param>,
    /// `[C]` shift. Starts at 0.
    pub bias: Option<Param>,
    /// `[C]` running mean (`None` without `track_running_stats`).
    pub running_mean: Option<Buffer>,
    /// `[C]` running (unbiased) variance.
    pub running_var: Option<Buffer>,
    /// Batches seen in training (an I64 scalar).
    pub num_batches_tracked: Option<Buffer>,
    /// Weight of the newest batch in the running averages; `None` for a cumulative
    /// average (`1 / num_batches_tracked`).
    pub momentum: Option<f64>,
    /// Added to the variance.
    pub eps: f64,
    /// Train/eval mode.
    pub training: Training,
    num_features: usize,
    op: &'static str,
    ranks: &'static [usize],
}

/// Options of the batch-norm layers (PyTorch's defaults via `Default`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNormConfig {
    /// Added to the variance (1e-5).
    pub eps: f64,
    /// Running-average momentum (`Some(0.1)`; `None` for a cumulative average).
    pub momentum: Option<f64>,
    /// Learnable scale and shift (true).
    pub affine: bool,
    /// Keep running statistics for evaluation (true).
    pub track_running_stats: bool,
}

impl Default for BatchNormConfig {
    fn default() -> Self {
        BatchNormConfig { eps: 1e-5, momentum: Some(0.1), affine: true, track_running_stats: true }
    }
}

impl BatchNorm {
    fn build(c: usize, cfg: BatchNormConfig, op: &'static str, ranks: &'static [usize]) -> Result<BatchNorm> {
        check_eps(op, cfg.eps)?;
        super::check_size(&[c])?;
        if let Some(m) = cfg.momentum {
            if !(0.0..=1.0).contains(&m) {
                return Err(Error::arg(op, format!("momentum must be in [0, 1] (or None), got {m}")));
            }
        }
        let cpu = tensor_core::Device::cpu();
        let (rm, rv, nbt) = if cfg.track_running_stats {
            (
                Some(Buffer::new(super::place(Tensor::zeros([c], DType::F32, &cpu)?, true)?)),
                Some(Buffer::new(super::place(Tensor::ones([c], DType::F32, &cpu)?, true)?)),
                Some(Buffer::new(super::place(Tensor::zeros(Vec::<usize>::new(), DType::I64, &cpu)?, false)?)),
            )
        } else {
            (None, None, None)
        };
        Ok(BatchNorm {
            weight: if cfg.affine { Some(full_param(&[c], 1.0)?) } else { None },
            bias: if cfg.affine { Some(full_param(&[c], 0.0)?) } else { None },
            running_mean: rm,
            running_var: rv,
            num_batches_tracked: nbt,
            momentum: cfg.momentum,
            eps: cfg.eps,
            training: Training::new(),
            num_features: c,
            op,
            ranks,
        })
    }

    /// Number of channels.
    pub fn num_features(&self) -> usize {
        self.num_features
    }

    /// The `[C]` running mean (PyTorch's `bn.running_mean`): a shared handle to the
    /// buffer, `None` without `track_running_stats`.
    ///
    /// ```
    /// use autograd::Var;
    /// use nn::{BatchNorm1d, Forward};
    /// use tensor_core::Tensor;
    /// let bn = BatchNorm1d::new(2)?;
    /// bn.forward(&Var::from(Tensor::from_vec(vec![1.0f32, 10.0, 3.0, 20.0], [2, 2])?))?;
    /// assert_eq!(bn.running_mean().unwrap().to_vec::<f32>()?, vec![0.2, 1.5]);
    /// assert_eq!(bn.num_batches_tracked(), Some(1));
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn running_mean(&self) -> Option<Tensor> {
        self.running_mean.as_ref().map(Buffer::tensor)
    }

    /// The `[C]` running (unbiased) variance (PyTorch's `bn.running_var`), `None`
    /// without `track_running_stats`.
    pub fn running_var(&self) -> Option<Tensor> {
        self.running_var.as_ref().map(Buffer::tensor)
    }

    /// Batches seen in training (PyTorch's `bn.num_batches_tracked`), `None` without
    /// `track_running_stats`, or when the buffer does not hold one integer (a
    /// state dict loaded it with another shape).
    pub fn num_batches_tracked(&self) -> Option<i64> {
        let t = self.num_batches_tracked.as_ref()?.tensor();
        if t.numel() != 1 {
            return None;
        }
        t.to_dtype(DType::I64).ok()?.reshape(&[]).ok()?.to_scalar::<i64>().ok()
    }

    fn run(&self, x: &Var) -> Result<Var> {
        let r = x.rank();
        if !self.ranks.contains(&r) || x.dims()[1] != self.num_features {
            return Err(Error::invalid_shape(
                self.op,
                x.dims(),
                format!("expected a {:?}-D input with {} channels in dim 1", self.ranks, self.num_features),
            ));
        }
        let c = self.num_features;
        let dims: Vec<isize> = (0..r as isize).filter(|&d| d != 1).collect();
        let mut cshape = vec![1isize; r];
        cshape[1] = c as isize;
        let use_batch = self.training.get() || self.running_mean.is_none();
        let y = if use_batch {
            let n = x.numel() / c.max(1);
            if n <= 1 {
                return Err(Error::arg(
                    self.op,
                    format!("expected more than 1 value per channel when training, got input size {:?}", x.dims()),
                ));
            }
            let (y, mean, var) = normalize(x, &dims, self.eps)?;
            if self.training.get() {
                self.update_stats(mean.tensor(), var.tensor(), n)?;
            }
            y
        } else {
            let (rm, rv) = match (&self.running_mean, &self.running_var) {
                (Some(m), Some(v)) => (m.tensor(), v.tensor()),
                _ => return Err(Error::arg(self.op, "running statistics are missing in evaluation mode")),
            };
            let mean = Var::from(rm.to_dtype(x.dtype())?.reshape(&cshape)?);
            let inv = Var::from(rv.to_dtype(x.dtype())?.add_scalar(self.eps)?.rsqrt()?.reshape(&cshape)?);
            x.sub(&mean)?.mul(&inv)?
        };
        let y = match &self.weight {
            Some(w) => y.mul(&w.var().reshape(&cshape)?)?,
            None => y,
        };
        match &self.bias {
            Some(b) => y.add(&b.var().reshape(&cshape)?),
            None => Ok(y),
        }
    }

    fn update_stats(&self, mean: &Tensor, var: &Tensor, n: usize) -> Result<()> {
        let (Some(rm), Some(rv)) = (&self.running_mean, &self.running_var) else {
            return Ok(());
        };
        let mut tracked = 0i64;
        if let Some(nbt) = &self.num_batches_tracked {
            let t = nbt.tensor();
            t.add_scalar_(1)?;
            tracked = t.to_dtype(DType::I64)?.to_scalar::<i64>()?;
        }
        let f = match self.momentum {
            Some(m) => m,
            None => 1.0 / tracked.max(1) as f64,
        };
        let c = self.num_features;
        let (rm, rv) = (rm.tensor(), rv.tensor());
        let mean = mean.reshape_to([c])?.to_dtype(rm.dtype())?;
        let unbiased = var.reshape_to([c])?.mul_scalar(n as f64 / (n as f64 - 1.0))?.to_dtype(rv.dtype())?;
        rm.copy_(&rm.mul_scalar(1.0 - f)?.add(&mean.mul_scalar(f)?)?)?;
        rv.copy_(&rv.mul_scalar(1.0 - f)?.add(&unbiased.mul_scalar(f)?)?)?;
        Ok(())
    }
}

impl Module for BatchNorm {
    fn visit(&self, v: &mut dyn Visitor) {
        v.training(&self.training);
        v.opt_param("weight", &self.weight);
        v.opt_param("bias", &self.bias);
        if let Some(b) = &self.running_mean {
            v.buffer("running_mean", b);
        }
        if let Some(b) = &self.running_var {
            v.buffer("running_var", b);
        }
        if let Some(b) = &self.num_batches_tracked {
            v.buffer("num_batches_tracked", b);
        }
    }
}

impl Forward for BatchNorm {
    fn forward(&self, x: &Var) -> Result<Var> {
        self.run(x)
    }
}

macro_rules! batch_norm_layer {
    ($(#[$m:meta])* $name:ident, $ranks:expr) => {
        $(#[$m])*
        #[derive(Clone, Debug)]
        pub struct $name(pub BatchNorm);

        impl $name {
            /// A layer over `num_features` channels with PyTorch's defaults.
            pub fn new(num_features: usize) -> Result<$name> {
                $name::with_config(num_features, BatchNormConfig::default())
            }

            /// A layer with explicit options.
            pub fn with_config(num_features: usize, config: BatchNormConfig) -> Result<$name> {
                Ok($name(BatchNorm::build(num_features, config, stringify!($name), $ranks)?))
            }
        }

        impl std::ops::Deref for $name {
            type Target = BatchNorm;
            fn deref(&self) -> &BatchNorm {
                &self.0
            }
        }

        impl Module for $name {
            fn visit(&self, v: &mut dyn Visitor) {
                self.0.visit(v)
            }
        }

        impl Forward for $name {
            fn forward(&self, x: &Var) -> Result<Var> {
                self.0.run(x)
            }
        }
    };
}

batch_norm_layer!(
    /// Batch normalisation of `[N, C]` or `[N, C, L]` per channel. In training it uses
    /// the batch statistics and updates the running ones; in evaluation it uses the
    /// running ones. Running statistics are buffers (in the state dict).
    ///
    /// ```
    /// use autograd::Var;
    /// use nn::{BatchNorm1d, Forward, Module};
    /// use tensor_core::{Device, DType, Tensor};
    /// let bn = BatchNorm1d::new(2)?;
    /// let x = Var::from(Tensor::from_vec(vec![1.0f32, 10.0, 3.0, 20.0], [2, 2])?);
    /// bn.forward(&x)?;
    /// let keys: Vec<String> = bn.state_dict().keys();
    /// assert_eq!(keys, ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]);
    /// assert_eq!(bn.running_mean().unwrap().to_vec::<f32>()?, vec![0.2, 1.5]);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    BatchNorm1d,
    &[2, 3]
);

batch_norm_layer!(
    /// Batch normalisation of `[N, C, H, W]` per channel (see [`BatchNorm1d`]).
    BatchNorm2d,
    &[4]
);

/// RMS normalisation over the trailing `normalized_shape` dims (PyTorch's
/// `nn.RMSNorm`): `x / sqrt(mean(x²) + eps) * weight`, the weight starting at 1.
/// `eps = None` is the input dtype's machine epsilon, as PyTorch's default.
///
/// ```
/// use autograd::Var;
/// use nn::{Forward, Module, RMSNorm};
/// use tensor_core::Tensor;
/// let norm = RMSNorm::new(&[2])?;
/// let y = norm.forward(&Var::from(Tensor::from_vec(vec![3.0f32, 4.0], [1, 2])?))?;
/// let rms = 12.5f32.sqrt();
/// assert!((y.tensor().to_vec::<f32>()?[1] - 4.0 / rms).abs() < 1e-6);
/// assert_eq!(norm.state_dict().keys(), ["weight"]);
/// # Ok::<(), tensor_core::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct RMSNorm {
    /// Scale, shaped `normalized_shape` (`None` without `elementwise_affine`).
    pub weight: Option<Param>,
    /// The trailing dims normalised over.
    pub normalized_shape: Vec<usize>,
    /// Added to the mean square (`None`: the dtype's machine epsilon).
    pub eps: Option<f64>,
}

impl RMSNorm {
    /// A layer with the default `eps` and a learnable scale.
    pub fn new(normalized_shape: &[usize]) -> Result<RMSNorm> {
        RMSNorm::with_options(normalized_shape, None, true)
    }

    /// A layer with explicit `eps` and `elementwise_affine`.
    pub fn with_options(normalized_shape: &[usize], eps: Option<f64>, elementwise_affine: bool) -> Result<RMSNorm> {
        if normalized_shape.is_empty() {
            return Err(Error::arg("RMSNorm", "normalized_shape must have at least one dim"));
        }
        if let Some(e) = eps {
            check_eps("RMSNorm", e)?;
        }
        let weight = if elementwise_affine { Some(full_param(normalized_shape, 1.0)?) } else { None };
        Ok(RMSNorm { weight, normalized_shape: normalized_shape.to_vec(), eps })
    }
}

impl Module for RMSNorm {
    fn visit(&self, v: &mut dyn Visitor) {
        v.opt_param("weight", &self.weight);
    }
}

impl Forward for RMSNorm {
    fn forward(&self, x: &Var) -> Result<Var> {
        let w = self.weight.as_ref().map(|w| w.var());
        x.rms_norm(&self.normalized_shape, w.as_ref(), self.eps)
    }
}

/// Layer normalisation over the trailing `normalized_shape` dims, with an
/// elementwise scale (starts at 1) and shift (starts at 0).
#[derive(Clone, Debug)]
pub struct LayerNorm {
    /// Scale, shaped `normalized_shape` (`None` without `elementwise_affine`).
    pub weight: Option<Param>,
    /// Shift.
    pub bias: Option<Param>,
    /// The trailing dims normalised over.
    pub normalized_shape: Vec<usize>,
    /// Added to the variance.
    pub eps: f64,
}

impl LayerNorm {
    /// A layer with `eps = 1e-5` and a learnable scale and shift.
    pub fn new(normalized_shape: &[usize]) -> Result<LayerNorm> {
        LayerNorm::with_options(normalized_shape, 1e-5, true)
    }

    /// A layer with explicit `eps` and `elementwise_affine`.
    pub fn with_options(normalized_shape: &[usize], eps: f64, elementwise_affine: bool) -> Result<LayerNorm> {
        if normalized_shape.is_empty() {
            return Err(Error::arg("LayerNorm", "normalized_shape must have at least one dim"));
        }
        check_eps("LayerNorm", eps)?;
        let (w, b) = if elementwise_affine {
            (Some(full_param(normalized_shape, 1.0)?), Some(full_param(normalized_shape, 0.0)?))
        } else {
            (None, None)
        };
        Ok(LayerNorm { weight: w, bias: b, normalized_shape: normalized_shape.to_vec(), eps })
    }
}

impl Module for LayerNorm {
    fn visit(&self, v: &mut dyn Visitor) {
        v.opt_param("weight", &self.weight);
        v.opt_param("bias", &self.bias);
    }
}

impl Forward for LayerNorm {
    fn forward(&self, x: &Var) -> Result<Var> {
        let k = self.normalized_shape.len();
        let r = x.rank();
        if k > r || x.dims()[r - k..] != self.normalized_shape[..] {
            return Err(Error::shape(
                "LayerNorm",
                x.dims(),
                &self.normalized_shape,
                "the input's trailing dims must equal normalized_shape",
            ));
        }
        // One op (a fused kernel forward and backward where the backend has one).
        let (w, b) = (self.weight.as_ref().map(Param::var), self.bias.as_ref().map(Param::var));
        x.layer_norm(&self.normalized_shape, w.as_ref(), b.as_ref(), self.eps)
    }
}

/// Group normalisation: `[N, C, *]` normalised over each group of `C / G` channels
/// (and all spatial positions), then a per-channel scale and shift.
#[derive(Clone, Debug)]
pub struct GroupNorm {
    /// `[C]` scale (starts at 1).
    pub weight: Option<Param>,
    /// `[C]` shift (starts at 0).
    pub bias: Option<Param>,
    /// Number of groups.
    pub num_groups: usize,
    /// Number of channels.
    pub num_channels: usize,
    /// Added to the variance.
    pub eps: f64,
}

impl GroupNorm {
    /// `num_groups` groups over `num_channels` channels (which it must divide).
    pub fn new(num_groups: usize, num_channels: usize) -> Result<GroupNorm> {
        GroupNorm::with_options(num_groups, num_channels, 1e-5, true)
    }

    /// With explicit `eps` and `affine`.
    pub fn with_options(num_groups: usize, num_channels: usize, eps: f64, affine: bool) -> Result<GroupNorm> {
        if num_groups == 0 || !num_channels.is_multiple_of(num_groups) {
            return Err(Error::arg(
                "GroupNorm",
                format!("num_channels ({num_channels}) must be divisible by num_groups ({num_groups})"),
            ));
        }
        check_eps("GroupNorm", eps)?;
        let (w, b) = if affine {
            (Some(full_param(&[num_channels], 1.0)?), Some(full_param(&[num_channels], 0.0)?))
        } else {
            (None, None)
        };
        Ok(GroupNorm { weight: w, bias: b, num_groups, num_channels, eps })
    }
}

impl Module for GroupNorm {
    fn visit(&self, v: &mut dyn Visitor) {
        v.opt_param("weight", &self.weight);
        v.opt_param("bias", &self.bias);
    }
}

impl Forward for GroupNorm {
    fn forward(&self, x: &Var) -> Result<Var> {
        let r = x.rank();
        if r < 2 || x.dims()[1] != self.num_channels {
            return Err(Error::invalid_shape(
                "GroupNorm",
                x.dims(),
                format!("expected an input [N, {}, *]", self.num_channels),
            ));
        }
        let n = x.dims()[0] as isize;
        let shape: Vec<isize> = x.dims().iter().map(|&d| d as isize).collect();
        // The group size is spelled out (not -1): with an empty batch, -1 would be
        // ambiguous and reshape would refuse it.
        let per_group = x.dims()[2..]
            .iter()
            .try_fold(self.num_channels / self.num_groups, |a, &d| a.checked_mul(d))
            .filter(|&p| p <= isize::MAX as usize)
            .ok_or_else(|| Error::invalid_shape("GroupNorm", x.dims(), "the size of a group overflows"))?;
        let g = x.reshape(&[n, self.num_groups as isize, per_group as isize])?;
        let (y, _, _) = normalize(&g, &[-1], self.eps)?;
        let mut y = y.reshape(&shape)?;
        let mut cshape = vec![1isize; r];
        cshape[1] = self.num_channels as isize;
        if let Some(w) = &self.weight {
            y = y.mul(&w.var().reshape(&cshape)?)?;
        }
        match &self.bias {
            Some(b) => y.add(&b.var().reshape(&cshape)?),
            None => Ok(y),
        }
    }
}
