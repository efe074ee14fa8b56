//! Neural-network math on `Var`: softmax/log_softmax, logsumexp, var/std,
//! layer_norm, dropout and conv2d.
//!
//! These are compositions of differentiable `Var` ops, so their gradients (of any
//! order) follow from the ops they are made of.

use tensor_core::{DType, Error, Result, Tensor};

use crate::var::Var;

impl Var {
    /// `log(sum(exp(x)))` over `dims`, computed stably (shifted by the detached max).
    pub fn logsumexp(&self, dims: &[isize], keepdim: bool) -> Result<Var> {
        let m = self.detach().amax(dims, true)?;
        // An all -inf slice would give nan after the shift; shift by 0 there.
        let m = Var::from(m.tensor().masked_fill(&m.tensor().isinf()?, 0.0)?);
        let s = self.sub(&m)?.exp()?.sum(dims, true)?.log()?.add(&m)?;
        if keepdim {
            Ok(s)
        } else {
            let d = tensor_core::shape::normalize_dims("logsumexp", dims, self.rank())?;
            let shape: Vec<usize> =
                self.dims().iter().enumerate().filter(|(i, _)| !d.contains(i)).map(|(_, &s)| s).collect();
            s.reshape_to(shape)
        }
    }

    /// Softmax along `dim`.
    ///
    /// ```
    /// use autograd::Var;
    /// use tensor_core::Tensor;
    /// let x = Var::param(Tensor::new(&[1.0f64, 2.0, 3.0]))?;
    /// let p = x.softmax(0)?;
    /// let s: f64 = p.tensor().to_vec::<f64>()?.iter().sum();
    /// assert!((s - 1.0).abs() < 1e-12);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn softmax(&self, dim: isize) -> Result<Var> {
        self.log_softmax(dim)?.exp()
    }

    /// Log-softmax along `dim`.
    pub fn log_softmax(&self, dim: isize) -> Result<Var> {
        if self.rank() == 0 {
            tensor_core::shape::normalize_dim_scalar_ok("log_softmax", dim, 0)?;
            return self.sub(self);
        }
        self.sub(&self.logsumexp(&[dim], true)?)
    }

    /// Variance over `dims` with `correction` (1 = unbiased, PyTorch's default).
    pub fn var(&self, dims: &[isize], correction: f64, keepdim: bool) -> Result<Var> {
        let d = tensor_core::shape::normalize_dims("var", dims, self.rank())?;
        let n: usize = d.iter().map(|&i| self.dims()[i]).product();
        let mu = self.mean(dims, true)?;
        let ss = self.sub(&mu)?.square()?.sum(dims, keepdim)?;
        ss.div_scalar((n as f64 - correction).max(0.0))
    }

    /// Standard deviation over `dims` with `correction`.
    pub fn std(&self, dims: &[isize], correction: f64, keepdim: bool) -> Result<Var> {
        self.var(dims, correction, keepdim)?.sqrt()
    }

    /// Layer normalisation over the trailing `normalized_shape` dims, with optional
    /// elementwise affine weight and bias.
    pub fn layer_norm(
        &self,
        normalized_shape: &[usize],
        weight: Option<&Var>,
        bias: Option<&Var>,
        eps: f64,
    ) -> Result<Var> {
        let k = normalized_shape.len();
        if k > self.rank() || self.dims()[self.rank() - k..] != *normalized_shape {
            return Err(Error::shape(
                "layer_norm",
                self.dims(),
                normalized_shape,
                "input's trailing dims must equal normalized_shape",
            ));
        }
        let dims: Vec<isize> = (self.rank() - k..self.rank()).map(|d| d as isize).collect();
        let mu = self.mean(&dims, true)?;
        let xc = self.sub(&mu)?;
        let var = xc.square()?.mean(&dims, true)?;
        let mut y = xc.mul(&var.add_scalar(eps)?.rsqrt()?)?;
        if let Some(w) = weight {
            y = y.mul(w)?;
        }
        if let Some(b) = bias {
            y = y.add(b)?;
        }
        Ok(y)
    }

    /// Inverted dropout: zeroes each element with probability `p` and scales the rest
    /// by `1 / (1 - p)` when `training`; the identity otherwise.
    pub fn dropout(&self, p: f64, training: bool) -> Result<Var> {
        if !(0.0..=1.0).contains(&p) {
            return Err(Error::arg("dropout", format!("dropout probability has to be between 0 and 1, but got {p}")));
        }
        if !training || p == 0.0 {
            return Ok(self.clone());
        }
        if p == 1.0 {
            return self.mul_scalar(0.0);
        }
        let keep = Tensor::bernoulli_p(self.shape().clone(), 1.0 - p, self.dtype(), self.device())?;
        self.mul_t(&keep.mul_scalar(1.0 / (1.0 - p))?)
    }

    /// Zero padding of the last `pads.len() / 2` dims, PyTorch's `F.pad` order
    /// (`[left, right, top, bottom, ...]`, last dim first).
    pub fn pad_zeros(&self, pads: &[usize]) -> Result<Var> {
        if pads.len() % 2 != 0 || pads.len() / 2 > self.rank() {
            return Err(Error::arg("pad", format!("padding length {} is invalid for rank {}", pads.len(), self.rank())));
        }
        let mut x = self.clone();
        for (i, p) in pads.chunks(2).enumerate() {
            if p[0] == 0 && p[1] == 0 {
                continue;
            }
            let d = x.rank() - 1 - i;
            let mut shape = x.dims().to_vec();
            shape[d] += p[0] + p[1];
            x = x.slice_embed(&shape, d, p[0], 1)?;
        }
        Ok(x)
    }

    /// 2-D convolution (cross-correlation) of `[N, C, H, W]` with weight
    /// `[O, C / groups, KH, KW]`, as a sum over kernel offsets of strided-slice x
    /// matmul products (each differentiable, so every order of gradient works).
    pub fn conv2d(
        &self,
        weight: &Var,
        bias: Option<&Var>,
        stride: [usize; 2],
        padding: [usize; 2],
        dilation: [usize; 2],
        groups: usize,
    ) -> Result<Var> {
        if self.rank() != 4 || weight.rank() != 4 {
            return Err(Error::shape("conv2d", self.dims(), weight.dims(), "expected a 4-D input and a 4-D weight"));
        }
        let (n, c, h, w) = (self.dims()[0], self.dims()[1], self.dims()[2], self.dims()[3]);
        let (o, cg, kh, kw) = (weight.dims()[0], weight.dims()[1], weight.dims()[2], weight.dims()[3]);
        if groups == 0 || c % groups != 0 || o % groups != 0 || cg * groups != c {
            return Err(Error::shape(
                "conv2d",
                self.dims(),
                weight.dims(),
                format!("channels {c} and weight {o}x{cg} do not fit groups={groups}"),
            ));
        }
        if stride.contains(&0) || dilation.contains(&0) {
            return Err(Error::arg("conv2d", "stride and dilation must be positive"));
        }
        let (hp, wp) = (h + 2 * padding[0], w + 2 * padding[1]);
        let (ekh, ekw) = (dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1);
        if kh == 0 || kw == 0 || hp < ekh || wp < ekw {
            return Err(Error::shape("conv2d", self.dims(), weight.dims(), "kernel larger than the padded input"));
        }
        let (oh, ow) = ((hp - ekh) / stride[0] + 1, (wp - ekw) / stride[1] + 1);
        let x = self.pad_zeros(&[padding[1], padding[1], padding[0], padding[0]])?;
        let og = o / groups;
        let mut out: Option<Var> = None;
        for g in 0..groups {
            let xg = x.narrow(1, (g * cg) as isize, cg)?;
            let wg = weight.narrow(0, (g * og) as isize, og)?;
            let mut acc: Option<Var> = None;
            for i in 0..kh {
                for j in 0..kw {
                    let (r0, c0) = (i * dilation[0], j * dilation[1]);
                    let patch = xg
                        .slice(2, Some(r0 as isize), Some((r0 + (oh - 1) * stride[0] + 1) as isize), stride[0])?
                        .slice(3, Some(c0 as isize), Some((c0 + (ow - 1) * stride[1] + 1) as isize), stride[1])?
                        .reshape(&[n as isize, cg as isize, (oh * ow) as isize])?;
                    let wk = wg.select(3, j as isize)?.select(2, i as isize)?; // [og, cg]
                    let term = wk.matmul(&patch)?; // [n, og, oh*ow]
                    acc = Some(match acc {
                        None => term,
                        Some(a) => a.add(&term)?,
                    });
                }
            }
            let acc = acc.ok_or_else(|| Error::arg("conv2d", "empty kernel"))?;
            let part = if groups == 1 {
                acc
            } else {
                acc.slice_embed(&[n, o, oh * ow], 1, g * og, 1)?
            };
            out = Some(match out {
                None => part,
                Some(a) => a.add(&part)?,
            });
        }
        let mut y = out.ok_or_else(|| Error::arg("conv2d", "groups must be positive"))?.reshape(&[
            n as isize,
            o as isize,
            oh as isize,
            ow as isize,
        ])?;
        if let Some(b) = bias {
            y = y.add(&b.reshape(&[1, o as isize, 1, 1])?)?;
        }
        Ok(y)
    }

    /// Mean squared error (`reduction = "mean"`).
    pub fn mse_loss(&self, target: &Var) -> Result<Var> {
        self.sub(target)?.square()?.mean(&[], false)
    }

    /// Cross-entropy of logits `[N, C]` with integer class targets `[N]` (mean over
    /// the batch).
    pub fn cross_entropy(&self, target: &Tensor) -> Result<Var> {
        if self.rank() != 2 || target.rank() != 1 || target.dims()[0] != self.dims()[0] {
            return Err(Error::shape("cross_entropy", self.dims(), target.dims(), "expected logits [N, C], target [N]"));
        }
        let c = self.dims()[1];
        let classes = Tensor::arange(0.0, c as f64, 1.0, DType::I64, self.device())?.reshape(&[1, c as isize])?;
        let hot = classes.eq(&target.to_dtype(DType::I64)?.reshape(&[-1, 1])?)?;
        let lp = self.log_softmax(1)?;
        lp.mul_t(&hot.to_dtype(self.dtype())?)?.sum(&[], false)?.div_scalar(-(self.dims()[0] as f64))
    }
}
