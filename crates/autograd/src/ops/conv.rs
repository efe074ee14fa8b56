//! Convolutions, pooling, padding, embedding and batch normalisation on `Var`.
//!
//! Convolutions are im2col + GEMM: [`Var::unfold2d`] (im2col) and [`Var::fold2d`]
//! (col2im) are each other's adjoint. `conv2d` runs tensor-core's conv2d (the device's
//! fused kernel where it has one) and its fused backward; with `create_graph` its
//! gradients are `unfold2d`/`fold2d` and batched matmuls, so gradients of any order
//! are recorded. `conv_transpose2d` is a matmul then `fold2d`. Pooling records linear
//! backwards whose own backwards are the forward ops again.

use tensor_core::{
    AvgPool2dOptions, Conv1dOptions, Conv2dOptions, ConvTranspose2dOptions, DType, Error, MaxPool2dOptions, PadMode,
    Result, Tensor,
};

use smallvec::smallvec;

use crate::graph::{record, should_record, Grads, SavedVar};
use crate::mode::is_grad_enabled;
use crate::var::Var;

/// Blocks of `k` taps with dilation `d` and stride `s` over `n` padded positions
/// (`None` when there is none: an empty kernel, or one wider than `n`).
fn windows(n: usize, k: usize, s: usize, d: usize) -> Option<usize> {
    let extent = d.checked_mul(k.checked_sub(1)?)?.checked_add(1)?;
    (s > 0 && n >= extent).then(|| (n - extent) / s + 1)
}

/// `n + 2 * p`, or an error naming `op` when the padded size does not fit a `usize`.
fn padded(op: &'static str, x: &Var, w: &Var, n: usize, p: usize) -> Result<usize> {
    p.checked_mul(2)
        .and_then(|pp| n.checked_add(pp))
        .ok_or_else(|| Error::shape(op, x.dims(), w.dims(), format!("padding {p} overflows the input size {n}")))
}

/// The product of `dims`, or an error naming `op` when it does not fit a `usize`.
fn product(op: &'static str, x: &Var, w: &Var, dims: &[usize]) -> Result<usize> {
    dims.iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| Error::shape(op, x.dims(), w.dims(), format!("the product of {dims:?} overflows")))
}

/// Shared argument checks of the convolutions: float dtypes that agree, positive
/// stride/dilation/groups, and a `[rank]`-D weight with a `rank` or `rank - 1` input.
fn check_conv(
    op: &'static str,
    x: &Var,
    w: &Var,
    rank: usize,
    stride: &[usize],
    dilation: &[usize],
    groups: usize,
) -> Result<()> {
    if !x.dtype().is_float() {
        return Err(Error::Unsupported { op, dtype: x.dtype(), device: x.device().to_string() });
    }
    if x.dtype() != w.dtype() {
        return Err(Error::DTypeMismatch { op, expected: x.dtype(), got: w.dtype() });
    }
    if stride.contains(&0) || dilation.contains(&0) || groups == 0 {
        return Err(Error::arg(
            op,
            format!("stride {stride:?}, dilation {dilation:?} and groups {groups} must be positive"),
        ));
    }
    if w.rank() != rank || !(x.rank() == rank || x.rank() + 1 == rank) {
        return Err(Error::shape(
            op,
            x.dims(),
            w.dims(),
            format!("expected a {}-D (unbatched) or {rank}-D (batched) input and a {rank}-D weight", rank - 1),
        ));
    }
    // The kernel is the weight's trailing dims: an empty one has no taps (and no
    // output size), so it is refused here, before any size arithmetic.
    let kernel = &w.dims()[2..];
    if kernel.contains(&0) {
        return Err(Error::shape(op, x.dims(), w.dims(), format!("kernel size {kernel:?} must be positive")));
    }
    Ok(())
}

/// Checks an optional bias of shape `[o]`.
fn check_bias(op: &'static str, x: &Var, bias: Option<&Var>, o: usize) -> Result<()> {
    if let Some(b) = bias {
        if b.dims() != [o] {
            return Err(Error::shape(op, x.dims(), b.dims(), format!("bias should have shape [{o}]")));
        }
    }
    Ok(())
}

/// Adds a per-channel bias `[o]` to `[N, o, ...]`.
fn add_bias(y: Var, bias: Option<&Var>) -> Result<Var> {
    match bias {
        Some(b) => {
            let mut s = vec![1usize; y.rank()];
            s[1] = b.numel();
            y.add(&b.reshape_to(s)?)
        }
        None => Ok(y),
    }
}

/// Renames a shape error from an inner op to `op` with the caller's shapes.
fn rename<'a>(op: &'static str, x: &'a Var, w: &'a Var) -> impl Fn(Error) -> Error + 'a {
    move |e| match e {
        Error::ShapeMismatch { msg, .. } | Error::InvalidShape { msg, .. } => Error::shape(op, x.dims(), w.dims(), msg),
        Error::InvalidArgument { msg, .. } => Error::arg(op, msg),
        e => e,
    }
}

/// Row `o` of a pooling matrix `[out, n]` holds `1 / divisor` over the input
/// positions of window `o` (window start `o * s - p`, `k` taps). `divisor` is the
/// caller's fixed one (`Some`), else PyTorch's window count; with a fixed divisor
/// `d` the 2-D matrix is `A_h A_w / d`, so the height pass takes it and the width
/// pass divides by 1.
fn avg_matrix(
    n: usize,
    out: usize,
    k: usize,
    s: usize,
    p: usize,
    count_include_pad: bool,
    divisor: Option<f64>,
) -> Vec<f64> {
    let mut m = vec![0.0; out * n];
    for o in 0..out {
        let start = (o * s) as i64 - p as i64;
        let end = (start + k as i64).min((n + p) as i64);
        let (lo, hi) = (start.max(0), end.min(n as i64));
        let div = divisor.unwrap_or(if count_include_pad { end - start } else { hi - lo } as f64);
        for j in lo..hi {
            m[o * n + j as usize] = 1.0 / div;
        }
    }
    m
}

/// Row `i` of an adaptive pooling matrix averages `floor(i n / out)..ceil((i + 1) n / out)`.
fn adaptive_matrix(n: usize, out: usize) -> Vec<f64> {
    let mut m = vec![0.0; out * n];
    for i in 0..out {
        let (a, b) = ((i * n) / out, ((i + 1) * n).div_ceil(out));
        for v in &mut m[i * n + a..i * n + b] {
            *v = 1.0 / (b - a) as f64;
        }
    }
    m
}

/// A host matrix as a tensor of `like`'s dtype and device.
fn host(v: Vec<f64>, shape: [usize; 2], like: &Var) -> Result<Tensor> {
    Tensor::from_vec(v, shape.to_vec())?.to_dtype(like.dtype())?.to_device(like.device())
}

/// The adjoint of the separable pooling `ah @ x @ aw^T`: `ah^T @ g @ aw`.
fn separable_adjoint(g: &Var, ah: &Tensor, aw: &Tensor) -> Result<Var> {
    Var::from(ah.t()?).matmul(g)?.matmul(&Var::from(aw.clone()))
}

/// The input's and weight's gradients of a batched conv2d from the output's gradient
/// `g`, in differentiable `Var` ops (im2col's adjoint and batched GEMMs): the path
/// for `create_graph` and for devices without a fused convolution backward.
fn conv2d_grads(
    x: &Var,
    w: &Var,
    g: &Var,
    opts: Conv2dOptions,
    need_x: bool,
    need_w: bool,
) -> Result<(Option<Var>, Option<Var>)> {
    let Conv2dOptions { stride, padding, dilation, groups } = opts;
    let (n, c, h, wd) = (x.dims()[0], x.dims()[1], x.dims()[2], x.dims()[3]);
    let (o, cg, kh, kw) = (w.dims()[0], w.dims()[1], w.dims()[2], w.dims()[3]);
    let l = g.dims()[2] * g.dims()[3];
    let (og, kg) = (o / groups, cg * kh * kw);
    let gy = g.reshape_to([n, groups, og, l])?;
    let dx = if need_x {
        // [groups, kg, og] x [n, groups, og, l]: each image's column gradients.
        let wt = w.reshape_to([groups, og, kg])?.transpose(-2, -1)?;
        let gcols = wt.matmul(&gy)?.reshape_to([n, c * kh * kw, l])?;
        Some(gcols.fold2d([h, wd], [kh, kw], dilation, padding, stride)?)
    } else {
        None
    };
    let dw = if need_w {
        let cols = x.unfold2d([kh, kw], dilation, padding, stride)?.reshape_to([n, groups, kg, l])?;
        Some(gy.matmul(&cols.transpose(-2, -1)?)?.sum(&[0], false)?.reshape_to([o, cg, kh, kw])?)
    } else {
        None
    };
    Ok((dx, dw))
}

impl Var {
    /// Extracts sliding blocks (im2col, PyTorch's `F.unfold`): `[N, C, H, W]` (or
    /// `[C, H, W]`) to `[N, C * kh * kw, L]`. The backward is [`Var::fold2d`].
    pub fn unfold2d(
        &self,
        kernel: [usize; 2],
        dilation: [usize; 2],
        padding: [usize; 2],
        stride: [usize; 2],
    ) -> Result<Var> {
        let out = self.tensor().unfold2d(kernel, dilation, padding, stride)?;
        let r = self.rank();
        let size = [self.dims()[r - 2], self.dims()[r - 1]];
        Ok(self.record_unary_grad_only("unfold2d", out, move |g| g.fold2d(size, kernel, dilation, padding, stride)))
    }

    /// Sums sliding blocks into a tensor (col2im, PyTorch's `F.fold`): `[N, C * kh *
    /// kw, L]` (or unbatched) to `[N, C, H, W]`. The backward is [`Var::unfold2d`].
    pub fn fold2d(
        &self,
        output_size: [usize; 2],
        kernel: [usize; 2],
        dilation: [usize; 2],
        padding: [usize; 2],
        stride: [usize; 2],
    ) -> Result<Var> {
        let out = self.tensor().fold2d(output_size, kernel, dilation, padding, stride)?;
        Ok(self.record_unary_grad_only("fold2d", out, move |g| g.unfold2d(kernel, dilation, padding, stride)))
    }

    /// 2-D convolution (cross-correlation) of `[N, C, H, W]` (or `[C, H, W]`) with
    /// weight `[O, C / groups, kh, kw]` and an optional bias `[O]`, through
    /// [`Tensor::conv2d`] and [`Tensor::conv2d_backward_fused`]; with `create_graph`
    /// the gradients are [`Var::unfold2d`], [`Var::fold2d`] and batched GEMMs.
    ///
    /// The options are PyTorch's keyword arguments with its defaults
    /// ([`Conv2dOptions`]).
    ///
    /// ```
    /// use autograd::Var;
    /// use tensor_core::{Conv2dOptions, DType, Device, Tensor};
    /// let x = Var::param(Tensor::arange(0.0, 16.0, 1.0, DType::F64, &Device::cpu())?.reshape(&[1, 1, 4, 4])?)?;
    /// let w = Var::param(Tensor::ones([1, 1, 2, 2], DType::F64, &Device::cpu())?)?;
    /// // F.conv2d(x, w, stride=2)
    /// let y = x.conv2d(&w, None, Conv2dOptions { stride: [2, 2], ..Default::default() })?;
    /// assert_eq!(y.tensor().to_vec::<f64>()?, vec![10.0, 18.0, 42.0, 50.0]);
    /// y.sum_all()?.backward()?;
    /// assert_eq!(x.grad().unwrap().to_vec::<f64>()?, vec![1.0; 16]);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn conv2d(&self, weight: &Var, bias: Option<&Var>, opts: Conv2dOptions) -> Result<Var> {
        let _prof = tensor_core::profiler::scope("conv2d", &[self.tensor(), weight.tensor()]);
        let op = "conv2d";
        let Conv2dOptions { stride, padding, dilation, groups } = opts;
        check_conv(op, self, weight, 4, &stride, &dilation, groups)?;
        if self.rank() == 3 {
            return self.unsqueeze(0)?.conv2d(weight, bias, opts)?.squeeze(0);
        }
        let (n, c, h, w) = (self.dims()[0], self.dims()[1], self.dims()[2], self.dims()[3]);
        let (o, cg, kh, kw) = (weight.dims()[0], weight.dims()[1], weight.dims()[2], weight.dims()[3]);
        if c % groups != 0 || o % groups != 0 || cg.checked_mul(groups) != Some(c) {
            return Err(Error::shape(
                op,
                self.dims(),
                weight.dims(),
                format!("expected weight [out, in/groups, kh, kw] with in = {c} input channels, out divisible by groups = {groups}"),
            ));
        }
        check_bias(op, self, bias, o)?;
        let (hp, wp) = (padded(op, self, weight, h, padding[0])?, padded(op, self, weight, w, padding[1])?);
        let (Some(oh), Some(ow)) = (windows(hp, kh, stride[0], dilation[0]), windows(wp, kw, stride[1], dilation[1]))
        else {
            return Err(Error::shape(
                op,
                self.dims(),
                weight.dims(),
                format!(
                    "kernel size (with dilation {dilation:?}) can't be greater than the padded input size [{hp}, {wp}]"
                ),
            ));
        };
        product(op, self, weight, &[n, c, kh, kw, oh, ow])?;
        let bt = bias.map(|b| b.tensor());
        let y = self.tensor().conv2d(weight.tensor(), bt, opts).map_err(rename(op, self, weight))?;
        let mut inputs = vec![self, weight];
        inputs.extend(bias);
        if !should_record(&inputs) {
            return Ok(Var::from(y));
        }
        let (xs, ws) = (SavedVar::new(self), SavedVar::new(weight));
        let has_bias = bias.is_some();
        Ok(record("conv2d", y, &inputs, move |g, needs| {
            let (x, w) = (xs.get()?, ws.get()?);
            let (need_x, need_w) = (needs[0], needs[1]);
            // With create_graph the gradients must be differentiable: Var ops.
            let fused = if is_grad_enabled() {
                None
            } else {
                Tensor::conv2d_backward_fused(x.tensor(), w.tensor(), g.tensor(), opts, need_x, need_w)?
            };
            let (dx, dw) = match fused {
                Some((dx, dw)) => (dx.map(Var::from), dw.map(Var::from)),
                None => conv2d_grads(&x, &w, g, opts, need_x, need_w)?,
            };
            let mut grads: Grads = smallvec![dx, dw];
            if has_bias {
                grads.push(if needs[2] { Some(g.sum(&[0, 2, 3], false)?) } else { None });
            }
            Ok(grads)
        }))
    }

    /// 1-D convolution of `[N, C, L]` (or `[C, L]`) with weight `[O, C / groups, k]`
    /// (PyTorch's `F.conv1d`, options [`Conv1dOptions`]): [`Var::conv2d`] over a
    /// height of 1.
    pub fn conv1d(&self, weight: &Var, bias: Option<&Var>, o: Conv1dOptions) -> Result<Var> {
        let op = "conv1d";
        let Conv1dOptions { stride, padding, dilation, groups } = o;
        check_conv(op, self, weight, 3, &[stride], &[dilation], groups)?;
        let o2 = Conv2dOptions { stride: [1, stride], padding: [0, padding], dilation: [1, dilation], groups };
        let y = self.unsqueeze(-2)?.conv2d(&weight.unsqueeze(2)?, bias, o2).map_err(rename(op, self, weight))?;
        y.squeeze(-2)
    }

    /// 2-D transposed convolution of `[N, Cin, H, W]` (or unbatched) with weight
    /// `[Cin, O / groups, kh, kw]`: a batched GEMM to columns, then
    /// [`Var::fold2d`]. Output size `(H - 1) stride - 2 pad + dil (kh - 1) +
    /// output_padding + 1` (PyTorch's `F.conv_transpose2d`, options
    /// [`ConvTranspose2dOptions`]).
    pub fn conv_transpose2d(&self, weight: &Var, bias: Option<&Var>, o: ConvTranspose2dOptions) -> Result<Var> {
        let _prof = tensor_core::profiler::scope("conv_transpose2d", &[self.tensor(), weight.tensor()]);
        let op = "conv_transpose2d";
        let ConvTranspose2dOptions { stride, padding, output_padding, groups, dilation } = o;
        check_conv(op, self, weight, 4, &stride, &dilation, groups)?;
        for i in 0..2 {
            if output_padding[i] >= stride[i].max(dilation[i]) {
                return Err(Error::arg(
                    op,
                    format!("output padding {output_padding:?} must be smaller than either stride {stride:?} or dilation {dilation:?}"),
                ));
            }
        }
        if self.rank() == 3 {
            return self.unsqueeze(0)?.conv_transpose2d(weight, bias, o)?.squeeze(0);
        }
        let (n, c, h, w) = (self.dims()[0], self.dims()[1], self.dims()[2], self.dims()[3]);
        let (wc, og, kh, kw) = (weight.dims()[0], weight.dims()[1], weight.dims()[2], weight.dims()[3]);
        if wc != c || c % groups != 0 {
            return Err(Error::shape(
                op,
                self.dims(),
                weight.dims(),
                format!("expected weight [in, out/groups, kh, kw] with in = {c} input channels divisible by groups = {groups}"),
            ));
        }
        let o = product(op, self, weight, &[og, groups])?;
        check_bias(op, self, bias, o)?;
        if kh == 0 || kw == 0 || h == 0 || w == 0 {
            return Err(Error::shape(op, self.dims(), weight.dims(), "spatial and kernel sizes must be positive"));
        }
        // (n - 1) * stride + dilation * (k - 1) + 1 + output_padding, checked.
        let full = |n: usize, s: usize, d: usize, k: usize, op_: usize| {
            (n - 1).checked_mul(s)?.checked_add(d.checked_mul(k - 1)?)?.checked_add(1)?.checked_add(op_)
        };
        let too_big = || {
            Error::shape(
                op,
                self.dims(),
                weight.dims(),
                format!("the output size overflows with stride {stride:?} and dilation {dilation:?}"),
            )
        };
        let hf0 = full(h, stride[0], dilation[0], kh, 0).ok_or_else(too_big)?;
        let wf0 = full(w, stride[1], dilation[1], kw, 0).ok_or_else(too_big)?;
        let hf = full(h, stride[0], dilation[0], kh, output_padding[0]).ok_or_else(too_big)?;
        let wf = full(w, stride[1], dilation[1], kw, output_padding[1]).ok_or_else(too_big)?;
        if padding.iter().any(|&p| p > usize::MAX / 2) || hf <= 2 * padding[0] || wf <= 2 * padding[1] {
            return Err(Error::shape(
                op,
                self.dims(),
                weight.dims(),
                format!("padding {padding:?} leaves an empty output (uncropped size [{hf}, {wf}])"),
            ));
        }
        let (oh, ow) = (hf - 2 * padding[0], wf - 2 * padding[1]);
        let cin = c / groups;
        let kc = product(op, self, weight, &[og, kh, kw])?;
        let okk = product(op, self, weight, &[o, kh, kw])?;
        let xm = self.reshape_to([n, groups, cin, h * w])?;
        let wt = weight.reshape_to([groups, cin, kc])?.transpose(1, 2)?;
        let cols = wt.matmul(&xm)?.reshape_to([n, okk, h * w])?;
        let y = if output_padding == [0, 0] {
            cols.fold2d([oh, ow], [kh, kw], dilation, padding, stride)?
        } else {
            // The extra rows/columns of output padding receive no block: fold the
            // uncropped extent, pad it with zeros, then crop.
            cols.fold2d([hf0, wf0], [kh, kw], dilation, [0, 0], stride)?
                .pad_zeros(&[0, output_padding[1], 0, output_padding[0]])?
                .narrow(2, padding[0] as isize, oh)?
                .narrow(3, padding[1] as isize, ow)?
        };
        add_bias(y, bias)
    }

    /// 2-D max pooling over `kernel` windows with PyTorch's semantics (`F.max_pool2d`:
    /// the stride defaults to the kernel, `-inf` padding, dilation, `ceil_mode`; see
    /// [`MaxPool2dOptions`]); the gradient goes to the first maximum of each window.
    ///
    /// ```
    /// use autograd::Var;
    /// use tensor_core::{DType, Device, MaxPool2dOptions, Tensor};
    /// let x = Var::param(Tensor::arange(0.0, 16.0, 1.0, DType::F64, &Device::cpu())?.reshape(&[1, 1, 4, 4])?)?;
    /// let y = x.max_pool2d([2, 2], MaxPool2dOptions::default())?; // F.max_pool2d(x, 2)
    /// assert_eq!(y.tensor().to_vec::<f64>()?, vec![5.0, 7.0, 13.0, 15.0]);
    /// let o = MaxPool2dOptions { stride: Some([1, 1]), padding: [1, 1], ..Default::default() };
    /// assert_eq!(x.max_pool2d([3, 3], o)?.dims(), &[1, 1, 4, 4]);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn max_pool2d(&self, kernel: [usize; 2], o: MaxPool2dOptions) -> Result<Var> {
        Ok(self.max_pool2d_with_indices(kernel, o)?.0)
    }

    /// [`Var::max_pool2d`] that also returns the I64 index of each maximum in its
    /// flattened `H * W` plane. The backward scatter-adds the gradient at those
    /// indices (its own backward gathers them again).
    pub fn max_pool2d_with_indices(&self, kernel: [usize; 2], o: MaxPool2dOptions) -> Result<(Var, Tensor)> {
        let _prof = tensor_core::profiler::scope("max_pool2d_with_indices", &[self.tensor()]);
        let (vals, idx) = self.tensor().max_pool2d_with_indices(kernel, o)?;
        let shape = self.dims().to_vec();
        let saved = SavedVar::tensor(&idx);
        let v = self.record_unary_grad_only("max_pool2d", vals, move |g| {
            let r = shape.len();
            if !crate::mode::is_grad_enabled() {
                // One fused pass; the scatter below is differentiable (create_graph).
                let i = saved.tensor_checked()?;
                return Ok(Var::from(g.tensor().max_pool2d_backward(&i, [shape[r - 2], shape[r - 1]])?));
            }
            let mut zs = shape[..r - 2].to_vec();
            zs.push(shape[r - 2] * shape[r - 1]);
            let mut gs = shape[..r - 2].to_vec();
            gs.push(g.dims()[r - 2] * g.dims()[r - 1]);
            let i = saved.tensor_checked()?.reshape_to(gs.clone())?;
            Var::zeros(zs, g.dtype(), g.device())?
                .scatter_add((r - 2) as isize, &i, &g.reshape_to(gs)?)?
                .reshape_to(shape.clone())
        });
        Ok((v, idx))
    }

    /// 2-D average pooling over `kernel` windows with PyTorch's rules
    /// (`F.avg_pool2d`: the stride defaults to the kernel, `count_include_pad`,
    /// `ceil_mode`, `divisor_override`; see [`AvgPool2dOptions`]). Pooling is
    /// separable, so the backward is `A_h^T g A_w` with the pooling matrices.
    pub fn avg_pool2d(&self, kernel: [usize; 2], o: AvgPool2dOptions) -> Result<Var> {
        let _prof = tensor_core::profiler::scope("avg_pool2d", &[self.tensor()]);
        let out = self.tensor().avg_pool2d(kernel, o)?;
        let (stride, padding, cip) = (o.stride.unwrap_or(kernel), o.padding, o.count_include_pad);
        let (dh, dw) = match o.divisor_override {
            Some(d) => (Some(d as f64), Some(1.0)),
            None => (None, None),
        };
        let r = self.rank();
        let (h, w, oh, ow) = (self.dims()[r - 2], self.dims()[r - 1], out.dims()[r - 2], out.dims()[r - 1]);
        let ah = host(avg_matrix(h, oh, kernel[0], stride[0], padding[0], cip, dh), [oh, h], self)?;
        let aw = host(avg_matrix(w, ow, kernel[1], stride[1], padding[1], cip, dw), [ow, w], self)?;
        Ok(self.record_unary_grad_only("avg_pool2d", out, move |g| separable_adjoint(g, &ah, &aw)))
    }

    /// Adaptive 2-D average pooling to `output_size` (PyTorch's windows); the
    /// backward is `A_h^T g A_w` with the averaging matrices.
    pub fn adaptive_avg_pool2d(&self, output_size: [usize; 2]) -> Result<Var> {
        let _prof = tensor_core::profiler::scope("adaptive_avg_pool2d", &[self.tensor()]);
        let out = self.tensor().adaptive_avg_pool2d(output_size)?;
        let r = self.rank();
        let (h, w) = (self.dims()[r - 2], self.dims()[r - 1]);
        let [oh, ow] = output_size;
        let ah = host(adaptive_matrix(h, oh), [oh, h], self)?;
        let aw = host(adaptive_matrix(w, ow), [ow, w], self)?;
        Ok(self.record_unary_grad_only("adaptive_avg_pool2d", out, move |g| separable_adjoint(g, &ah, &aw)))
    }

    /// Pads with `pads` in PyTorch's order (last dim first, `(left, right)` pairs)
    /// and `mode`. Constant padding crops the gradient; reflect and replicate
    /// padding are index selections whose gradients add up the mirrored or
    /// repeated positions.
    pub fn pad(&self, pads: &[usize], mode: PadMode) -> Result<Var> {
        let r = self.rank();
        if !pads.len().is_multiple_of(2) || pads.len() > 2 * r {
            return Err(Error::arg(
                "pad",
                format!(
                    "padding length must be even and at most twice the input rank {r}, got {} values for shape {:?}",
                    pads.len(),
                    self.dims()
                ),
            ));
        }
        let per_dim: Vec<(usize, usize, usize)> =
            pads.chunks(2).enumerate().map(|(i, p)| (r - 1 - i, p[0], p[1])).collect();
        if let PadMode::Constant(_) = mode {
            let out = self.tensor().pad(pads, mode)?;
            let shape = self.dims().to_vec();
            return Ok(self.record_unary_grad_only("pad", out, move |g| {
                let mut x = g.clone();
                for &(d, lo, _) in &per_dim {
                    x = x.narrow(d as isize, lo as isize, shape[d])?;
                }
                Ok(x)
            }));
        }
        let reflect = mode == PadMode::Reflect;
        let mut x = self.clone();
        for &(d, lo, hi) in &per_dim {
            if lo == 0 && hi == 0 {
                continue;
            }
            let size = self.dims()[d];
            if reflect && (lo >= size || hi >= size) {
                return Err(Error::arg(
                    "pad",
                    format!(
                        "reflect padding ({lo}, {hi}) must be smaller than dim {d} of input shape {:?}",
                        self.dims()
                    ),
                ));
            }
            if size == 0 {
                return Err(Error::arg(
                    "pad",
                    format!("cannot replicate-pad the empty dim {d} of input shape {:?}", self.dims()),
                ));
            }
            let last = size as i64 - 1;
            let idx: Vec<i64> = (0..(size + lo + hi) as i64)
                .map(|o| {
                    let i = o - lo as i64;
                    if !reflect {
                        i.clamp(0, last)
                    } else if i < 0 {
                        -i
                    } else if i > last {
                        2 * last - i
                    } else {
                        i
                    }
                })
                .collect();
            let n = idx.len();
            let idx = Tensor::from_vec(idx, [n])?.to_device(self.device())?;
            x = x.index_select(d as isize, &idx)?;
        }
        if x.same(self) {
            x = x.copy()?;
        }
        Ok(x)
    }

    /// Looks up rows of this `[num_embeddings, dim]` weight by I64 (or I32)
    /// `indices`: `indices.shape + [dim]`. The gradient is index-added back
    /// (repeated indices add up); the `padding_idx` row gets none.
    ///
    /// ```
    /// use autograd::Var;
    /// use tensor_core::Tensor;
    /// let w = Var::param(Tensor::from_vec(vec![0.0f64, 1.0, 10.0, 11.0, 20.0, 21.0], [3, 2])?)?;
    /// let e = w.embedding(&Tensor::new(&[2i64, 0, 2]), Some(0))?;
    /// e.sum_all()?.backward()?;
    /// assert_eq!(w.grad().unwrap().to_vec::<f64>()?, vec![0.0, 0.0, 0.0, 0.0, 2.0, 2.0]);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn embedding(&self, indices: &Tensor, padding_idx: Option<usize>) -> Result<Var> {
        let out = self.tensor().embedding(indices)?;
        let (num, dim) = (self.dims()[0], self.dims()[1]);
        if let Some(p) = padding_idx {
            if p >= num {
                return Err(Error::arg("embedding", format!("padding_idx {p} must be within num_embeddings ({num})")));
            }
        }
        let idx = indices.to_dtype(DType::I64)?.reshape(&[-1])?;
        let n = idx.numel();
        let pad_rows = match padding_idx {
            Some(p) => Some(idx.eq_scalar(p as i64)?.reshape_to([n, 1])?),
            None => None,
        };
        Ok(self.record_unary_grad_only("embedding", out, move |g| {
            let mut g2 = g.reshape_to([n, dim])?;
            if let Some(m) = &pad_rows {
                g2 = g2.masked_fill(m, 0.0)?;
            }
            Var::zeros([num, dim], g.dtype(), g.device())?.index_add(0, &idx, &g2, 1.0)
        }))
    }

    /// Batch normalisation of `[N, C, ...]` per channel. In training it normalises
    /// with the batch statistics (biased variance, differentiable) and updates the
    /// given running statistics in place (`running = (1 - momentum) running +
    /// momentum batch_stat`, unbiased variance); in evaluation it uses the running
    /// statistics as constants.
    #[allow(clippy::too_many_arguments)]
    pub fn batch_norm(
        &self,
        running_mean: Option<&Tensor>,
        running_var: Option<&Tensor>,
        weight: Option<&Var>,
        bias: Option<&Var>,
        training: bool,
        momentum: f64,
        eps: f64,
    ) -> Result<Var> {
        let _prof = tensor_core::profiler::scope("batch_norm", &[self.tensor()]);
        let op = "batch_norm";
        if !self.dtype().is_float() {
            return Err(Error::Unsupported { op, dtype: self.dtype(), device: self.device().to_string() });
        }
        let r = self.rank();
        if r < 2 {
            return Err(Error::invalid_shape(op, self.dims(), "expected an input of shape [N, C, ...] (rank >= 2)"));
        }
        let c = self.dims()[1];
        for (what, t) in [("running_mean", running_mean), ("running_var", running_var)] {
            if let Some(t) = t {
                if t.dims() != [c] {
                    return Err(Error::shape(op, self.dims(), t.dims(), format!("{what} should have shape [{c}]")));
                }
            }
        }
        check_bias(op, self, weight, c)?;
        check_bias(op, self, bias, c)?;
        let mut bshape = vec![1usize; r];
        bshape[1] = c;
        let dims: Vec<isize> = (0..r as isize).filter(|&d| d != 1).collect();
        let (mean, var) = if training {
            let n = self.numel().checked_div(c).unwrap_or(0);
            if n <= 1 {
                return Err(Error::arg(
                    op,
                    format!("expected more than 1 value per channel when training, got input size {:?}", self.dims()),
                ));
            }
            let mean = self.mean(&dims, true)?;
            let var = self.sub(&mean)?.square()?.mean(&dims, true)?;
            if let Some(rm) = running_mean {
                let m = mean.tensor().reshape_to([c])?.to_dtype(rm.dtype())?;
                rm.copy_(&rm.mul_scalar(1.0 - momentum)?.add(&m.mul_scalar(momentum)?)?)?;
            }
            if let Some(rv) = running_var {
                let v = var.tensor().reshape_to([c])?.mul_scalar(n as f64 / (n as f64 - 1.0))?.to_dtype(rv.dtype())?;
                rv.copy_(&rv.mul_scalar(1.0 - momentum)?.add(&v.mul_scalar(momentum)?)?)?;
            }
            (mean, var)
        } else {
            match (running_mean, running_var) {
                (Some(m), Some(v)) => (
                    Var::from(m.to_dtype(self.dtype())?.reshape_to(bshape.clone())?),
                    Var::from(v.to_dtype(self.dtype())?.reshape_to(bshape.clone())?),
                ),
                _ => return Err(Error::arg(op, "running_mean and running_var must be given in evaluation mode")),
            }
        };
        let mut y = self.sub(&mean)?.mul(&var.add_scalar(eps)?.rsqrt()?)?;
        if let Some(w) = weight {
            y = y.mul(&w.reshape_to(bshape.clone())?)?;
        }
        if let Some(b) = bias {
            y = y.add(&b.reshape_to(bshape)?)?;
        }
        Ok(y)
    }
}
