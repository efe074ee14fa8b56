//! Convolutions as im2col + GEMM.
//!
//! `conv2d` hands the device's fused kernel ([`FusedOp::Conv2d`]; the CPU's runs
//! image by image with the columns in a cached scratch) the whole convolution, and
//! [`Tensor::conv2d_backward_fused`] its gradients. Where a device has no such
//! kernel, `conv2d` pads once, views the padded input as overlapping windows
//! `[N, C, kh, kw, OH, OW]` through strides (no copy), copies that view into one
//! contiguous column buffer `[N, groups, C/groups * kh * kw, OH * OW]`, and runs one
//! batched GEMM against the weight viewed as `[groups, O/groups, C/groups * kh * kw]`.
//! The product already has the `[N, O, OH, OW]` memory order, so no output permute
//! is needed. `conv1d` is `conv2d` on a height-1 image. `conv_transpose2d` runs the
//! GEMM the other way (weight transposed times input) and scatters the columns back
//! with one strided in-place add per kernel tap (col2im).

use super::nn::{check_param, compute_dtype, require_float, PadMode};
use crate::backend::FusedOp;
use crate::fused::{Conv2dDims, Window2d};
use crate::{Error, Layout, Result, Shape, Tensor};

/// Options of [`Tensor::conv1d`] (and autograd's `Var::conv1d`): PyTorch's
/// `F.conv1d` keyword arguments, with its defaults via `Default`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv1dOptions {
    /// Step between windows (1).
    pub stride: usize,
    /// Zeros added on both sides (0).
    pub padding: usize,
    /// Spacing between kernel taps (1).
    pub dilation: usize,
    /// Channel groups; both channel counts must divide by it (1).
    pub groups: usize,
}

impl Default for Conv1dOptions {
    fn default() -> Self {
        Conv1dOptions { stride: 1, padding: 0, dilation: 1, groups: 1 }
    }
}

/// Options of [`Tensor::conv2d`] (and autograd's `Var::conv2d`): PyTorch's
/// `F.conv2d` keyword arguments, with its defaults via `Default`. Sizes are
/// `[h, w]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dOptions {
    /// Step between windows (`[1, 1]`).
    pub stride: [usize; 2],
    /// Zeros added on both sides (`[0, 0]`).
    pub padding: [usize; 2],
    /// Spacing between kernel taps (`[1, 1]`).
    pub dilation: [usize; 2],
    /// Channel groups; both channel counts must divide by it (1).
    pub groups: usize,
}

impl Default for Conv2dOptions {
    fn default() -> Self {
        Conv2dOptions { stride: [1, 1], padding: [0, 0], dilation: [1, 1], groups: 1 }
    }
}

/// Options of [`Tensor::conv_transpose2d`] (and autograd's
/// `Var::conv_transpose2d`): PyTorch's `F.conv_transpose2d` keyword arguments, with
/// its defaults via `Default`. Sizes are `[h, w]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvTranspose2dOptions {
    /// Stride of the convolution this one transposes (`[1, 1]`).
    pub stride: [usize; 2],
    /// Its padding: `dilation * (k - 1) - padding` zeros of implicit input padding
    /// (`[0, 0]`).
    pub padding: [usize; 2],
    /// Extra size added to one side of the output, smaller than the stride or the
    /// dilation (`[0, 0]`).
    pub output_padding: [usize; 2],
    /// Channel groups (1).
    pub groups: usize,
    /// Spacing between kernel taps (`[1, 1]`).
    pub dilation: [usize; 2],
}

impl Default for ConvTranspose2dOptions {
    fn default() -> Self {
        ConvTranspose2dOptions { stride: [1, 1], padding: [0, 0], output_padding: [0, 0], groups: 1, dilation: [1, 1] }
    }
}

/// Checks that the input and the weight agree on device and dtype.
fn check_pair(op: &'static str, x: &Tensor, w: &Tensor) -> Result<()> {
    x.same_device(op, w)?;
    require_float(op, x)?;
    if x.dtype() != w.dtype() {
        return Err(Error::DTypeMismatch { op, expected: x.dtype(), got: w.dtype() });
    }
    Ok(())
}

/// Fails when any of the sizes is 0.
fn check_positive(op: &'static str, what: &str, v: &[usize]) -> Result<()> {
    if v.contains(&0) {
        return Err(Error::arg(op, format!("{what} must be positive, got {v:?}")));
    }
    Ok(())
}

/// The output length of a window of `k` taps, dilation `d`, stride `s` sliding over
/// `n` (already padded) positions; `None` when the kernel does not fit (also when
/// its extent `d (k - 1) + 1` overflows: then it is larger than any input). `k` and
/// `s` are positive.
fn windows(n: usize, k: usize, s: usize, d: usize) -> Option<usize> {
    let extent = d.checked_mul(k - 1)?.checked_add(1)?;
    if n < extent {
        None
    } else {
        Some((n - extent) / s + 1)
    }
}

/// The padded sizes `size + 2 * padding` of a plane, or an error naming `op` when
/// they overflow.
pub(crate) fn padded_plane(op: &'static str, size: [usize; 2], padding: [usize; 2]) -> Result<[usize; 2]> {
    let one = |n: usize, p: usize| p.checked_mul(2).and_then(|p2| n.checked_add(p2));
    match (one(size[0], padding[0]), one(size[1], padding[1])) {
        (Some(h), Some(w)) => Ok([h, w]),
        _ => Err(Error::arg(op, format!("padding {padding:?} of a {size:?} plane overflows the padded size"))),
    }
}

/// The step of a strided view along a dim of `count` positions: `step` itself, or 0
/// when the dim has at most one position (then any stride or dilation is allowed,
/// however large, and must not enter the layout arithmetic).
pub(crate) fn view_step(step: usize, count: usize) -> usize {
    if count > 1 {
        step
    } else {
        0
    }
}

/// Adds the per-channel `bias` (shape `[C]`) to a fresh `[N, C, ...]` output in place.
fn add_bias(out: &Tensor, bias: Option<&Tensor>) -> Result<()> {
    if let Some(b) = bias {
        let mut s = vec![1usize; out.rank()];
        s[1] = out.dims()[1];
        out.add_(&b.to_dtype(out.dtype())?.reshape_to(s)?)?;
    }
    Ok(())
}

/// Checks a batched conv2d's arguments and returns its geometry.
fn conv2d_plan(
    op: &'static str,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    o: Conv2dOptions,
) -> Result<Conv2dDims> {
    let Conv2dOptions { stride, padding, dilation, groups } = o;
    let (n, c, h, wd) = (x.dims()[0], x.dims()[1], x.dims()[2], x.dims()[3]);
    let (o, cg, kh, kw) = (w.dims()[0], w.dims()[1], w.dims()[2], w.dims()[3]);
    if c % groups != 0 || o % groups != 0 || cg * groups != c {
        return Err(Error::shape(
            op,
            x.dims(),
            w.dims(),
            format!(
                "expected weight [out, in/groups, kh, kw] with in = {c} input channels, out divisible by groups = {groups}"
            ),
        ));
    }
    check_param(op, "bias", x, bias, &[o])?;
    if kh == 0 || kw == 0 {
        return Err(Error::shape(op, x.dims(), w.dims(), "kernel sizes must be positive"));
    }
    let [hp, wp] = padded_plane(op, [h, wd], padding)?;
    let (oh, ow) = match (windows(hp, kh, stride[0], dilation[0]), windows(wp, kw, stride[1], dilation[1])) {
        (Some(a), Some(b)) => (a, b),
        _ => {
            return Err(Error::shape(
                op,
                x.dims(),
                w.dims(),
                format!(
                    "kernel size (with dilation {dilation:?}) can't be greater than the padded input size [{hp}, {wp}]"
                ),
            ))
        }
    };
    // The column buffer [N, C, kh, kw, OH, OW] is the largest intermediate.
    crate::create::checked_numel(op, &[n, c, kh, kw, oh, ow])?;
    crate::create::checked_numel(op, &[n, o, oh, ow])?;
    let window = Window2d { planes: n * c, size: [h, wd], out: [oh, ow], kernel: [kh, kw], stride, padding, dilation };
    Ok(Conv2dDims { batch: n, in_channels: c, out_channels: o, groups, window })
}

/// The shared conv2d body on a batched `[N, C, H, W]` input: the device's fused
/// kernel where it has one, else im2col and one batched GEMM.
fn conv2d_batched(op: &'static str, x: &Tensor, w: &Tensor, bias: Option<&Tensor>, o: Conv2dOptions) -> Result<Tensor> {
    let Conv2dOptions { stride, padding, dilation, groups } = o;
    let d = conv2d_plan(op, x, w, bias, o)?;
    let cd = compute_dtype(x.dtype());
    let c = |t: &Tensor| t.to_dtype(cd)?.contiguous();
    let (xc, wc) = (c(x)?, c(w)?);
    let bc = bias.map(c).transpose()?;
    let fused = {
        let (xg, wg) = (xc.storage().read(), wc.storage().read());
        let bg = bc.as_ref().map(|b| b.storage().read());
        let op = FusedOp::Conv2d {
            x: (&**xg, xc.layout()),
            weight: (&**wg, wc.layout()),
            bias: bg.as_ref().zip(bc.as_ref()).map(|(g, b)| (&***g, b.layout())),
            dims: d,
        };
        crate::fused::run(x.device(), op, &[&[d.output_len()]])
    };
    let [oh, ow] = d.window.out;
    let (n, o) = (d.batch, d.out_channels);
    if let Some(r) = fused {
        let y = r?.pop().ok_or_else(|| Error::arg(op, "the fused kernel returned no output"))?;
        return y.reshape_to([n, o, oh, ow])?.to_dtype(x.dtype());
    }
    let [kh, kw] = d.window.kernel;
    let k = d.in_channels / groups * kh * kw;
    let cols = im2col(&xc, [kh, kw], dilation, padding, stride, [oh, ow])?.reshape_to([n, groups, k, oh * ow])?;
    let wm = wc.reshape_to([groups, o / groups, k])?;
    let out = wm.matmul(&cols)?.reshape_to([n, o, oh, ow])?;
    add_bias(&out, bias)?;
    out.to_dtype(x.dtype())
}

/// im2col on a batched `[N, C, H, W]` input whose window counts `[oh, ow]` are
/// already checked: pads once, views the padded input as overlapping windows
/// `[N, C, kh, kw, OH, OW]` through strides (no copy) and copies that view into
/// `[N, C * kh * kw, OH * OW]`.
fn im2col(
    x: &Tensor,
    kernel: [usize; 2],
    dilation: [usize; 2],
    padding: [usize; 2],
    stride: [usize; 2],
    out: [usize; 2],
) -> Result<Tensor> {
    let (n, c, h, w) = (x.dims()[0], x.dims()[1], x.dims()[2], x.dims()[3]);
    let window = Window2d { planes: n * c, size: [h, w], out, kernel, stride, padding, dilation };
    let fused = {
        let g = x.storage().read();
        let op = FusedOp::Im2col { x: &**g, layout: x.layout(), window };
        crate::fused::run(x.device(), op, &[&[window.columns_len()]])
    };
    if let Some(r) = fused {
        return r?.remove(0).reshape_to([n, c * kernel[0] * kernel[1], out[0] * out[1]]);
    }
    let [hp, wp] = padded_plane("im2col", [h, w], padding)?;
    let xp = if padding == [0, 0] {
        x.contiguous()?
    } else {
        x.pad(&[padding[1], padding[1], padding[0], padding[0]], PadMode::Constant(0.0))?
    };
    let win = Layout::new(
        Shape::new(&[n, c, kernel[0], kernel[1], out[0], out[1]]),
        [
            c * hp * wp,
            hp * wp,
            view_step(dilation[0], kernel[0]) * wp,
            view_step(dilation[1], kernel[1]),
            view_step(stride[0], out[0]) * wp,
            view_step(stride[1], out[1]),
        ]
        .into_iter()
        .collect(),
        xp.layout().offset(),
    );
    xp.with_layout(win).contiguous()?.reshape_to([n, c * kernel[0] * kernel[1], out[0] * out[1]])
}

/// col2im: the adjoint of [`im2col`]. Sums the columns `[N, C * kh * kw, OH * OW]`
/// into a zero `[N, C, H + 2 pad, W + 2 pad]` canvas with one strided in-place add
/// per kernel tap, then crops the padding. Half types come back as f32.
#[allow(clippy::too_many_arguments)]
fn col2im(
    cols: &Tensor,
    c: usize,
    size: [usize; 2],
    kernel: [usize; 2],
    dilation: [usize; 2],
    padding: [usize; 2],
    stride: [usize; 2],
    out: [usize; 2],
) -> Result<Tensor> {
    let n = cols.dims()[0];
    let window = Window2d { planes: n * c, size, out, kernel, stride, padding, dilation };
    let fused = {
        let g = cols.storage().read();
        let op = FusedOp::Col2im { cols: &**g, layout: cols.layout(), window };
        crate::fused::run(cols.device(), op, &[&[window.input_len()]])
    };
    if let Some(r) = fused {
        return r?.remove(0).reshape_to([n, c, size[0], size[1]]);
    }
    let (kh, kw) = (kernel[0], kernel[1]);
    let [hp, wp] = padded_plane("col2im", size, padding)?;
    let cd = compute_dtype(cols.dtype());
    let cols = cols.to_dtype(cd)?.reshape_to([n, c, kh, kw, out[0], out[1]])?;
    let full = Tensor::zeros([n, c, hp, wp], cd, cols.device())?;
    for i in 0..kh {
        for j in 0..kw {
            let dst = Layout::new(
                Shape::new(&[n, c, out[0], out[1]]),
                [c * hp * wp, hp * wp, view_step(stride[0], out[0]) * wp, view_step(stride[1], out[1])]
                    .into_iter()
                    .collect(),
                i * dilation[0] * wp + j * dilation[1],
            );
            full.with_layout(dst).add_(&cols.select(2, i as isize)?.select(2, j as isize)?)?;
        }
    }
    let y = if padding == [0, 0] {
        full
    } else {
        full.narrow(2, padding[0] as isize, size[0])?.narrow(3, padding[1] as isize, size[1])?.contiguous()?
    };
    Ok(y)
}

/// Checks the block geometry shared by `unfold2d` and `fold2d` and returns the
/// number of blocks `[OH, OW]` over the `size` plane.
fn block_counts(
    op: &'static str,
    dims: &[usize],
    size: [usize; 2],
    kernel: [usize; 2],
    dilation: [usize; 2],
    padding: [usize; 2],
    stride: [usize; 2],
) -> Result<[usize; 2]> {
    check_positive(op, "kernel_size", &kernel)?;
    check_positive(op, "dilation", &dilation)?;
    check_positive(op, "stride", &stride)?;
    let [hp, wp] = padded_plane(op, size, padding)?;
    match (windows(hp, kernel[0], stride[0], dilation[0]), windows(wp, kernel[1], stride[1], dilation[1])) {
        (Some(a), Some(b)) if a > 0 && b > 0 => Ok([a, b]),
        _ => Err(Error::invalid_shape(
            op,
            dims,
            format!(
                "kernel {kernel:?} with dilation {dilation:?} does not fit the padded plane [{hp}, {wp}] (size {size:?}, padding {padding:?})"
            ),
        )),
    }
}

/// Runs `f` on a batched view of `x`: adds a batch dim of 1 when `x` has rank
/// `batched_rank - 1` and removes it from the result.
fn with_batch(
    op: &'static str,
    x: &Tensor,
    w: &Tensor,
    batched_rank: usize,
    f: impl FnOnce(&Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    if w.rank() != batched_rank {
        return Err(Error::shape(op, x.dims(), w.dims(), format!("expected a {batched_rank}-D weight")));
    }
    if x.rank() == batched_rank {
        f(x)
    } else if x.rank() + 1 == batched_rank {
        f(&x.unsqueeze(0)?)?.squeeze(0)
    } else {
        Err(Error::shape(
            op,
            x.dims(),
            w.dims(),
            format!("expected a {}-D (unbatched) or {batched_rank}-D (batched) input", batched_rank - 1),
        ))
    }
}

impl Tensor {
    /// 1-D convolution (cross-correlation, like PyTorch's `F.conv1d`) of an
    /// `[N, C, L]` (or unbatched `[C, L]`) input with a `[out, C/groups, k]` weight
    /// and an optional `[out]` bias.
    pub fn conv1d(&self, weight: &Tensor, bias: Option<&Tensor>, o: Conv1dOptions) -> Result<Tensor> {
        let Conv1dOptions { stride, padding, dilation, groups } = o;
        let _prof = crate::profiler::scope("conv1d", &[self, weight]);
        let op = "conv1d";
        check_pair(op, self, weight)?;
        check_positive(op, "stride, dilation and groups", &[stride, dilation, groups])?;
        let o2 = Conv2dOptions { stride: [1, stride], padding: [0, padding], dilation: [1, dilation], groups };
        with_batch(op, self, weight, 3, |x| {
            let w2 = weight.unsqueeze(2)?;
            let y = conv2d_batched(op, &x.unsqueeze(2)?, &w2, bias, o2).map_err(|e| match e {
                // Report the shapes the caller passed, not the 2-D views.
                Error::ShapeMismatch { msg, .. } => Error::shape(op, x.dims(), weight.dims(), msg),
                e => e,
            })?;
            y.squeeze(2)
        })
    }

    /// 2-D convolution (cross-correlation, like PyTorch's `F.conv2d`) of an
    /// `[N, C, H, W]` (or unbatched `[C, H, W]`) input with an
    /// `[out, C/groups, kh, kw]` weight and an optional `[out]` bias. Output
    /// `[N, out, OH, OW]` with `OH = (H + 2 pad - dil (kh - 1) - 1) / stride + 1`.
    ///
    /// ```
    /// use tensor_core::{Conv2dOptions, DType, Device, Tensor};
    /// let dev = Device::cpu();
    /// let x = Tensor::arange(0.0, 16.0, 1.0, DType::F32, &dev)?.reshape(&[1, 1, 4, 4])?;
    /// let w = Tensor::ones([1, 1, 2, 2], DType::F32, &dev)?;
    /// let y = x.conv2d(&w, None, Conv2dOptions { stride: [2, 2], ..Default::default() })?;
    /// assert_eq!(y.dims(), &[1, 1, 2, 2]);
    /// assert_eq!(y.to_vec::<f32>()?, vec![10.0, 18.0, 42.0, 50.0]);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn conv2d(&self, weight: &Tensor, bias: Option<&Tensor>, o: Conv2dOptions) -> Result<Tensor> {
        let Conv2dOptions { stride, dilation, groups, .. } = o;
        let _prof = crate::profiler::scope("conv2d", &[self, weight]);
        let op = "conv2d";
        check_pair(op, self, weight)?;
        check_positive(op, "stride", &stride)?;
        check_positive(op, "dilation", &dilation)?;
        check_positive(op, "groups", &[groups])?;
        with_batch(op, self, weight, 4, |x| conv2d_batched(op, x, weight, bias, o))
    }

    /// The gradients of [`Tensor::conv2d`] of a batched `[N, C, H, W]` input `x` and
    /// weight `w` from the output's gradient `grad [N, out, OH, OW]`, through the
    /// device's fused kernel (PyTorch's `convolution_backward`): `(dx, dw)`, each only
    /// when asked for (`input_grad`, `weight_grad`). The bias's gradient is
    /// `grad.sum([0, 2, 3])`. `Ok(None)` where the device has no fused kernel for the
    /// dtype; the weight's gradient has the same bits for any number of threads.
    ///
    /// ```
    /// use tensor_core::{Conv2dOptions, Tensor};
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], [1, 1, 2, 2])?;
    /// let w = Tensor::from_vec(vec![10.0f64], [1, 1, 1, 1])?;
    /// let g = Tensor::from_vec(vec![1.0f64, 0.0, 0.0, 2.0], [1, 1, 2, 2])?;
    /// let (dx, dw) = Tensor::conv2d_backward_fused(&x, &w, &g, Conv2dOptions::default(), true, true)?
    ///     .expect("the CPU has the fused kernel");
    /// assert_eq!(dx.unwrap().to_vec::<f64>()?, vec![10.0, 0.0, 0.0, 20.0]);
    /// assert_eq!(dw.unwrap().to_vec::<f64>()?, vec![9.0]); // 1 * 1 + 4 * 2
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    #[allow(clippy::type_complexity)]
    pub fn conv2d_backward_fused(
        x: &Tensor,
        w: &Tensor,
        grad: &Tensor,
        o: Conv2dOptions,
        input_grad: bool,
        weight_grad: bool,
    ) -> Result<Option<(Option<Tensor>, Option<Tensor>)>> {
        let Conv2dOptions { stride, dilation, groups, .. } = o;
        let op = "conv2d_backward";
        check_pair(op, x, w)?;
        check_positive(op, "stride", &stride)?;
        check_positive(op, "dilation", &dilation)?;
        check_positive(op, "groups", &[groups])?;
        if x.rank() != 4 || w.rank() != 4 {
            return Err(Error::shape(op, x.dims(), w.dims(), "expected a 4-D input and a 4-D weight"));
        }
        let d = conv2d_plan(op, x, w, None, o)?;
        let [oh, ow] = d.window.out;
        let out = [d.batch, d.out_channels, oh, ow];
        if grad.dims() != out {
            return Err(Error::shape(op, grad.dims(), &out, "the output's gradient must have the output's shape"));
        }
        if grad.dtype() != x.dtype() || grad.device() != x.device() {
            return Err(Error::arg(
                op,
                format!(
                    "the output's gradient is {} on {}, the input {} on {}",
                    grad.dtype(),
                    grad.device(),
                    x.dtype(),
                    x.device()
                ),
            ));
        }
        if !input_grad && !weight_grad {
            return Ok(Some((None, None)));
        }
        let cd = compute_dtype(x.dtype());
        let c = |t: &Tensor| t.to_dtype(cd)?.contiguous();
        let (xc, wc, gc) = (c(x)?, c(w)?, c(grad)?);
        let mut shapes: Vec<&[usize]> = Vec::new();
        if input_grad {
            shapes.push(x.dims());
        }
        if weight_grad {
            shapes.push(w.dims());
        }
        let fused = {
            let (xg, wg, gg) = (xc.storage().read(), wc.storage().read(), gc.storage().read());
            let op = FusedOp::Conv2dBackward {
                x: (&**xg, xc.layout()),
                weight: (&**wg, wc.layout()),
                grad: (&**gg, gc.layout()),
                dims: d,
                input_grad,
                weight_grad,
            };
            crate::fused::run(x.device(), op, &shapes)
        };
        let Some(r) = fused else { return Ok(None) };
        let mut outs = r?.into_iter();
        let mut next = |want: bool| -> Result<Option<Tensor>> {
            if !want {
                return Ok(None);
            }
            let t = outs.next().ok_or_else(|| Error::arg(op, "the fused kernel returned too few outputs"))?;
            t.to_dtype(x.dtype()).map(Some)
        };
        let dx = next(input_grad)?;
        let dw = next(weight_grad)?;
        Ok(Some((dx, dw)))
    }

    /// Extracts sliding blocks (PyTorch's `F.unfold`, im2col): an `[N, C, H, W]` (or
    /// unbatched `[C, H, W]`) input becomes `[N, C * kh * kw, L]`, where column `l`
    /// holds the (zero-padded) `kh x kw` block at output position `l` of the
    /// `OH x OW` grid (`OH = (H + 2 pad - dil (kh - 1) - 1) / stride + 1`), channel
    /// major, then kernel row, then kernel column.
    ///
    /// ```
    /// use tensor_core::{DType, Device, Tensor};
    /// let x = Tensor::arange(0.0, 9.0, 1.0, DType::F32, &Device::cpu())?.reshape(&[1, 1, 3, 3])?;
    /// let cols = x.unfold2d([2, 2], [1, 1], [0, 0], [1, 1])?;
    /// assert_eq!(cols.dims(), &[1, 4, 4]);
    /// // Column 0 is the top-left 2x2 block [0, 1, 3, 4].
    /// assert_eq!(cols.select(2, 0)?.to_vec::<f32>()?, vec![0.0, 1.0, 3.0, 4.0]);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn unfold2d(
        &self,
        kernel: [usize; 2],
        dilation: [usize; 2],
        padding: [usize; 2],
        stride: [usize; 2],
    ) -> Result<Tensor> {
        let op = "unfold2d";
        let x = match self.rank() {
            4 => self.clone(),
            3 => self.unsqueeze(0)?,
            _ => {
                return Err(Error::invalid_shape(op, self.dims(), "expected a 3-D (unbatched) or 4-D (batched) input"))
            }
        };
        let size = [x.dims()[2], x.dims()[3]];
        let out = block_counts(op, self.dims(), size, kernel, dilation, padding, stride)?;
        let d = x.dims();
        crate::create::checked_numel(op, &[d[0], d[1], kernel[0], kernel[1], out[0], out[1]])?;
        let y = im2col(&x, kernel, dilation, padding, stride, out)?;
        if self.rank() == 3 {
            y.squeeze(0)
        } else {
            Ok(y)
        }
    }

    /// Combines sliding blocks into a tensor (PyTorch's `F.fold`, col2im), the
    /// adjoint of [`Tensor::unfold2d`]: an `[N, C * kh * kw, L]` (or unbatched
    /// `[C * kh * kw, L]`) input becomes `[N, C, H, W]` with `[H, W] = output_size`;
    /// values of overlapping blocks are summed and the padding is cropped. `L` must
    /// equal the number of blocks that fit the padded output.
    ///
    /// ```
    /// use tensor_core::{DType, Device, Tensor};
    /// let ones = Tensor::ones([1, 4, 4], DType::F32, &Device::cpu())?;
    /// // How many 2x2 blocks cover each pixel of a 3x3 plane.
    /// let y = ones.fold2d([3, 3], [2, 2], [1, 1], [0, 0], [1, 1])?;
    /// assert_eq!(y.to_vec::<f32>()?, vec![1.0, 2.0, 1.0, 2.0, 4.0, 2.0, 1.0, 2.0, 1.0]);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn fold2d(
        &self,
        output_size: [usize; 2],
        kernel: [usize; 2],
        dilation: [usize; 2],
        padding: [usize; 2],
        stride: [usize; 2],
    ) -> Result<Tensor> {
        let op = "fold2d";
        let x = match self.rank() {
            3 => self.clone(),
            2 => self.unsqueeze(0)?,
            _ => {
                return Err(Error::invalid_shape(op, self.dims(), "expected a 2-D (unbatched) or 3-D (batched) input"))
            }
        };
        let out = block_counts(op, self.dims(), output_size, kernel, dilation, padding, stride)?;
        let (ck, l) = (x.dims()[1], x.dims()[2]);
        let kk = crate::create::mul_size(op, self.dims(), kernel[0], kernel[1])?;
        if ck % kk != 0 {
            return Err(Error::invalid_shape(
                op,
                self.dims(),
                format!("expected the block dim ({ck}) to be divisible by the kernel size {kernel:?}"),
            ));
        }
        if out[0].checked_mul(out[1]) != Some(l) {
            return Err(Error::invalid_shape(
                op,
                self.dims(),
                format!(
                    "expected {out:?} blocks for output_size {output_size:?}, kernel {kernel:?}, dilation {dilation:?}, padding {padding:?}, stride {stride:?}, got {l}"
                ),
            ));
        }
        let planes = crate::create::mul_size(op, self.dims(), x.dims()[0], ck / kk)?;
        crate::create::checked_numel(op, &[planes, output_size[0], output_size[1]])?;
        let y = col2im(&x.contiguous()?, ck / kk, output_size, kernel, dilation, padding, stride, out)?;
        let y = y.to_dtype(self.dtype())?;
        if self.rank() == 2 {
            y.squeeze(0)
        } else {
            Ok(y)
        }
    }

    /// 2-D transposed convolution (the gradient of `conv2d` with respect to its
    /// input) of an `[N, Cin, H, W]` (or unbatched) input with a
    /// `[Cin, out/groups, kh, kw]` weight. Output size
    /// `(H - 1) stride - 2 pad + dil (kh - 1) + output_padding + 1`;
    /// `output_padding` must be smaller than the stride or the dilation (PyTorch's
    /// `F.conv_transpose2d`).
    pub fn conv_transpose2d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        o: ConvTranspose2dOptions,
    ) -> Result<Tensor> {
        let ConvTranspose2dOptions { stride, padding, output_padding, groups, dilation } = o;
        let _prof = crate::profiler::scope("conv_transpose2d", &[self, weight]);
        let op = "conv_transpose2d";
        check_pair(op, self, weight)?;
        check_positive(op, "stride", &stride)?;
        check_positive(op, "dilation", &dilation)?;
        check_positive(op, "groups", &[groups])?;
        for i in 0..2 {
            if output_padding[i] >= stride[i].max(dilation[i]) {
                return Err(Error::arg(
                    op,
                    format!(
                        "output padding {output_padding:?} must be smaller than either stride {stride:?} or dilation {dilation:?}"
                    ),
                ));
            }
        }
        with_batch(op, self, weight, 4, |x| {
            conv_transpose2d_batched(op, x, weight, bias, stride, padding, output_padding, dilation, groups)
        })
    }
}

#[allow(clippy::too_many_arguments)]
fn conv_transpose2d_batched(
    op: &'static str,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    stride: [usize; 2],
    padding: [usize; 2],
    output_padding: [usize; 2],
    dilation: [usize; 2],
    groups: usize,
) -> Result<Tensor> {
    let (n, c, h, wd) = (x.dims()[0], x.dims()[1], x.dims()[2], x.dims()[3]);
    let (wc, og, kh, kw) = (w.dims()[0], w.dims()[1], w.dims()[2], w.dims()[3]);
    if wc != c || c % groups != 0 {
        return Err(Error::shape(
            op,
            x.dims(),
            w.dims(),
            format!(
                "expected weight [in, out/groups, kh, kw] with in = {c} input channels divisible by groups = {groups}"
            ),
        ));
    }
    let o = og * groups;
    check_param(op, "bias", x, bias, &[o])?;
    if kh == 0 || kw == 0 || h == 0 || wd == 0 {
        return Err(Error::shape(op, x.dims(), w.dims(), "spatial and kernel sizes must be positive"));
    }
    // Full (uncropped) output extent; the result is its [pad, pad + out) window.
    let full_extent = |n: usize, s: usize, d: usize, k: usize, op_: usize| {
        (n - 1).checked_mul(s)?.checked_add(d.checked_mul(k - 1)?)?.checked_add(op_)?.checked_add(1)
    };
    let (hf, wf) = match (
        full_extent(h, stride[0], dilation[0], kh, output_padding[0]),
        full_extent(wd, stride[1], dilation[1], kw, output_padding[1]),
    ) {
        (Some(a), Some(b)) => (a, b),
        _ => {
            return Err(Error::arg(
                op,
                format!(
                    "the output size of input {:?} with kernel [{kh}, {kw}], stride {stride:?}, dilation {dilation:?} and output padding {output_padding:?} overflows",
                    x.dims()
                ),
            ))
        }
    };
    if hf <= padding[0].saturating_mul(2) || wf <= padding[1].saturating_mul(2) {
        return Err(Error::shape(
            op,
            x.dims(),
            w.dims(),
            format!("padding {padding:?} leaves an empty output (uncropped size [{hf}, {wf}])"),
        ));
    }
    let (oh, ow) = (hf - 2 * padding[0], wf - 2 * padding[1]);
    crate::create::checked_numel(op, &[n, o, hf, wf])?;
    crate::create::checked_numel(op, &[n, o, kh, kw, h, wd])?;
    let cd = compute_dtype(x.dtype());
    let cin = c / groups;
    let kc = og * kh * kw;
    let xm = x.contiguous()?.to_dtype(cd)?.reshape_to([n, groups, cin, h * wd])?;
    let wt = w.contiguous()?.to_dtype(cd)?.reshape_to([groups, cin, kc])?.transpose(1, 2)?;
    // cols[n, o, i, j, y, x]: the contribution of input pixel (y, x) through tap (i, j).
    let cols = wt.matmul(&xm)?.reshape_to([n, o, kh, kw, h, wd])?;
    let full = Tensor::zeros([n, o, hf, wf], cd, x.device())?;
    for i in 0..kh {
        for j in 0..kw {
            let dst = Layout::new(
                Shape::new(&[n, o, h, wd]),
                [o * hf * wf, hf * wf, view_step(stride[0], h) * wf, view_step(stride[1], wd)].into_iter().collect(),
                i * dilation[0] * wf + j * dilation[1],
            );
            full.with_layout(dst).add_(&cols.select(2, i as isize)?.select(2, j as isize)?)?;
        }
    }
    let out = full.narrow(2, padding[0] as isize, oh)?.narrow(3, padding[1] as isize, ow)?.contiguous()?;
    add_bias(&out, bias)?;
    out.to_dtype(x.dtype())
}
