//! 2-D pooling: the (padded) input is viewed as overlapping windows
//! `[N, C, OH, OW, kh, kw]` through strides, with no copy, and reduced over the
//! last two dims. Max-pool indices come from an argmax over each window mapped to a
//! position in the input plane; adaptive average pooling is two small GEMMs with
//! averaging matrices (it is separable).

use super::conv::view_step;
use super::nn::{compute_dtype, host_tensor, index_tensor, require_float, PadMode};
use crate::backend::FusedOp;
use crate::fused::Window2d;
use crate::{DType, Error, Layout, Result, Shape, Tensor};

/// Options of [`Tensor::max_pool2d`] and [`Tensor::max_pool2d_with_indices`] (and
/// autograd's `Var` versions) besides the required kernel size: PyTorch's
/// `F.max_pool2d` keyword arguments, with its defaults via `Default`. Sizes are
/// `[h, w]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxPool2dOptions {
    /// Step between windows; `None` (the default) is the kernel size, as in PyTorch.
    pub stride: Option<[usize; 2]>,
    /// Implicit `-inf` padding on both sides, at most half the kernel (`[0, 0]`).
    pub padding: [usize; 2],
    /// Spacing between window taps (`[1, 1]`).
    pub dilation: [usize; 2],
    /// Round the output size up instead of down (`false`).
    pub ceil_mode: bool,
}

impl Default for MaxPool2dOptions {
    fn default() -> Self {
        MaxPool2dOptions { stride: None, padding: [0, 0], dilation: [1, 1], ceil_mode: false }
    }
}

/// Options of [`Tensor::avg_pool2d`] (and autograd's `Var::avg_pool2d`) besides the
/// required kernel size: PyTorch's `F.avg_pool2d` keyword arguments, with its
/// defaults via `Default`. Sizes are `[h, w]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AvgPool2dOptions {
    /// Step between windows; `None` (the default) is the kernel size, as in PyTorch.
    pub stride: Option<[usize; 2]>,
    /// Implicit zero padding on both sides, at most half the kernel (`[0, 0]`).
    pub padding: [usize; 2],
    /// Round the output size up instead of down (`false`).
    pub ceil_mode: bool,
    /// Count the padding zeros in the divisor (`true`).
    pub count_include_pad: bool,
    /// Divide every window's sum by this instead of its size (`None`; must not be
    /// 0).
    pub divisor_override: Option<usize>,
}

impl Default for AvgPool2dOptions {
    fn default() -> Self {
        AvgPool2dOptions {
            stride: None,
            padding: [0, 0],
            ceil_mode: false,
            count_include_pad: true,
            divisor_override: None,
        }
    }
}

/// Output length and the extra right padding ceil mode needs, along one dim.
struct Axis {
    out: usize,
    extra: usize,
}

#[allow(clippy::too_many_arguments)]
fn axis(
    op: &'static str,
    dims: &[usize],
    n: usize,
    k: usize,
    s: usize,
    p: usize,
    d: usize,
    ceil_mode: bool,
) -> Result<Axis> {
    if k == 0 || s == 0 || d == 0 {
        return Err(Error::arg(op, format!("kernel size, stride and dilation must be positive, got {k}, {s}, {d}")));
    }
    if 2 * p > k {
        return Err(Error::arg(
            op,
            format!("pad should be at most half of the kernel size, but got pad={p} and kernel_size={k}"),
        ));
    }
    // `2 p <= k`, so `2 p` fits; the sums below are checked.
    let padded = n
        .checked_add(2 * p)
        .ok_or_else(|| Error::arg(op, format!("padding {p} of an input of size {n} overflows the padded size")))?;
    let Some(extent) = d.checked_mul(k - 1).and_then(|e| e.checked_add(1)) else {
        return Err(Error::invalid_shape(
            op,
            dims,
            format!("kernel size {k} with dilation {d} is larger than the padded input size {padded}"),
        ));
    };
    if padded < extent {
        return Err(Error::invalid_shape(
            op,
            dims,
            format!("kernel of extent {extent} is larger than the padded input size {padded}"),
        ));
    }
    let span = padded - extent;
    let mut out = if ceil_mode { span.div_ceil(s) + 1 } else { span / s + 1 };
    // The last window must start inside the input or the left padding:
    // `(out - 1) s < n + p`, compared by division since the product may overflow.
    if ceil_mode && out > 1 && (out - 1) > (n + p - 1) / s {
        out -= 1;
    }
    // In ceil mode the last window may end past the padded input (saturating: only
    // sizes no allocation can reach could overflow).
    let extra = (out - 1).saturating_mul(s).saturating_add(extent).saturating_sub(padded);
    Ok(Axis { out, extra })
}

/// Geometry shared by max and average pooling.
struct Pool {
    /// The op, for errors.
    op: &'static str,
    /// The input, batched and contiguous.
    x: Tensor,
    h: Axis,
    w: Axis,
    batched: bool,
}

/// Checks the input rank and sizes and returns the geometry.
#[allow(clippy::too_many_arguments)]
fn prepare(
    op: &'static str,
    x: &Tensor,
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
    ceil_mode: bool,
) -> Result<Pool> {
    require_float(op, x)?;
    let batched = match x.rank() {
        4 => true,
        3 => false,
        _ => {
            return Err(Error::invalid_shape(op, x.dims(), "expected a 3-D (unbatched) or 4-D (batched) input"));
        }
    };
    let x4 = if batched { x.contiguous()? } else { x.unsqueeze(0)?.contiguous()? };
    let (hh, ww) = (x4.dims()[2], x4.dims()[3]);
    if x4.dims()[1] == 0 || hh == 0 || ww == 0 {
        return Err(Error::invalid_shape(op, x.dims(), "expected non-empty channel and spatial dims"));
    }
    let h = axis(op, x.dims(), hh, kernel[0], stride[0], padding[0], dilation[0], ceil_mode)?;
    let w = axis(op, x.dims(), ww, kernel[1], stride[1], padding[1], dilation[1], ceil_mode)?;
    // The padded sizes fit (see `axis`); the generic path checks that the padded
    // input can be allocated, the direct one never builds it.
    crate::create::add_size(op, x.dims(), hh + 2 * padding[0], h.extra)?;
    crate::create::add_size(op, x.dims(), ww + 2 * padding[1], w.extra)?;
    Ok(Pool { op, x: x4, h, w, batched })
}

impl Pool {
    /// The windows `[N, C, OH, OW, kh, kw]` as a strided view of the input padded with
    /// `fill` (plus the extra right padding ceil mode needs).
    fn windows(
        &self,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        dilation: [usize; 2],
        fill: f64,
    ) -> Result<Tensor> {
        let pads = [padding[1], padding[1] + self.w.extra, padding[0], padding[0] + self.h.extra];
        // The padded input (its sizes fit: see `prepare`) must be allocatable.
        let d = self.x.dims();
        let padded = [d[0], d[1], d[2] + pads[2] + pads[3], d[3] + pads[0] + pads[1]];
        crate::create::checked_alloc(self.op, &padded, self.x.dtype())?;
        crate::create::checked_numel(self.op, &[d[0], d[1], self.h.out, self.w.out, kernel[0], kernel[1]])?;
        let padded = if pads == [0; 4] { self.x.clone() } else { self.x.pad(&pads, PadMode::Constant(fill))? };
        let d = padded.dims();
        let (n, c, hp, wp) = (d[0], d[1], d[2], d[3]);
        let l = Layout::new(
            Shape::new(&[n, c, self.h.out, self.w.out, kernel[0], kernel[1]]),
            [
                c * hp * wp,
                hp * wp,
                view_step(stride[0], self.h.out) * wp,
                view_step(stride[1], self.w.out),
                view_step(dilation[0], kernel[0]) * wp,
                view_step(dilation[1], kernel[1]),
            ]
            .into_iter()
            .collect(),
            padded.layout().offset(),
        );
        Ok(padded.with_layout(l))
    }

    /// Max pooling's values and input-plane indices `[N, C, OH, OW]` from the direct CPU
    /// loop, or `None` where it does not apply (then the windows are reduced).
    fn max_pool_direct(
        &self,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        dilation: [usize; 2],
    ) -> Result<Option<(Tensor, Tensor)>> {
        let d = self.x.dims();
        let window = Window2d {
            planes: d[0] * d[1],
            size: [d[2], d[3]],
            out: [self.h.out, self.w.out],
            kernel,
            stride,
            padding,
            dilation,
        };
        let fused = {
            let g = self.x.storage().read();
            let op = FusedOp::MaxPool2d { x: &**g, layout: self.x.layout(), window };
            let n = window.output_len();
            crate::fused::run(self.x.device(), op, &[&[n], &[n]])
        };
        let Some(r) = fused else { return Ok(None) };
        let [v, i]: [Tensor; 2] = r?.try_into().map_err(|_| Error::arg("max_pool2d", "the fused kernel's outputs"))?;
        if i.dtype() != DType::I64 {
            return Err(Error::DTypeMismatch { op: "max_pool2d", expected: DType::I64, got: i.dtype() });
        }
        let shape = [d[0], d[1], self.h.out, self.w.out];
        Ok(Some((v.reshape_to(shape)?, i.reshape_to(shape)?)))
    }

    /// Drops the batch dim again for unbatched inputs.
    fn finish(&self, t: Tensor) -> Result<Tensor> {
        if self.batched {
            Ok(t)
        } else {
            t.squeeze(0)
        }
    }
}

impl Tensor {
    /// 2-D max pooling of an `[N, C, H, W]` (or `[C, H, W]`) input. Padding counts
    /// as `-inf`; with `ceil_mode` the last window may run past the input (but must
    /// start inside it).
    ///
    /// ```
    /// use tensor_core::{DType, Device, MaxPool2dOptions, Tensor};
    /// let x = Tensor::arange(0.0, 16.0, 1.0, DType::F32, &Device::cpu())?.reshape(&[1, 1, 4, 4])?;
    /// // F.max_pool2d(x, 2): the stride defaults to the kernel size.
    /// let y = x.max_pool2d([2, 2], MaxPool2dOptions::default())?;
    /// assert_eq!(y.to_vec::<f32>()?, vec![5.0, 7.0, 13.0, 15.0]);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn max_pool2d(&self, kernel: [usize; 2], o: MaxPool2dOptions) -> Result<Tensor> {
        let (stride, padding, dilation, ceil_mode) = (o.stride.unwrap_or(kernel), o.padding, o.dilation, o.ceil_mode);
        let _prof = crate::profiler::scope("max_pool2d", &[self]);
        let p = prepare("max_pool2d", self, kernel, stride, padding, dilation, ceil_mode)?;
        if let Some((v, _)) = p.max_pool_direct(kernel, stride, padding, dilation)? {
            return p.finish(v);
        }
        let y = p.windows(kernel, stride, padding, dilation, f64::NEG_INFINITY)?.amax(&[-2, -1], false)?;
        p.finish(y)
    }

    /// [`Tensor::max_pool2d`] that also returns, for each output, the I64 index of
    /// the chosen element in the flattened `H * W` input plane (PyTorch's
    /// `return_indices=True`; the first maximum wins).
    pub fn max_pool2d_with_indices(&self, kernel: [usize; 2], o: MaxPool2dOptions) -> Result<(Tensor, Tensor)> {
        let (stride, padding, dilation, ceil_mode) = (o.stride.unwrap_or(kernel), o.padding, o.dilation, o.ceil_mode);
        let _prof = crate::profiler::scope("max_pool2d_with_indices", &[self]);
        let op = "max_pool2d_with_indices";
        let p = prepare(op, self, kernel, stride, padding, dilation, ceil_mode)?;
        if let Some((v, i)) = p.max_pool_direct(kernel, stride, padding, dilation)? {
            return Ok((p.finish(v)?, p.finish(i)?));
        }
        let (n, c) = (p.x.dims()[0], p.x.dims()[1]);
        let (oh, ow) = (p.h.out, p.w.out);
        let kk = crate::create::mul_size(op, self.dims(), kernel[0], kernel[1])?;
        crate::create::checked_numel(op, &[n, c, oh, ow, kk])?;
        let plane_taps = crate::create::checked_numel(op, &[oh, ow, kk])?;
        let win = p.windows(kernel, stride, padding, dilation, f64::NEG_INFINITY)?.reshape_to([n, c, oh, ow, kk])?;
        let values = win.amax(&[-1], false)?;
        let tap = win.argmax(-1, true)?;
        // Input-plane index of tap t of output (y, x); padding positions are never
        // chosen since they hold -inf and every window touches the input.
        let width = p.x.dims()[3] as i64;
        let mut table = crate::random::try_vec(plane_taps)?;
        for y in 0..oh {
            for x in 0..ow {
                for i in 0..kernel[0] {
                    for j in 0..kernel[1] {
                        let r = (y * stride[0] + i * dilation[0]) as i64 - padding[0] as i64;
                        let q = (x * stride[1] + j * dilation[1]) as i64 - padding[1] as i64;
                        table.push(r * width + q);
                    }
                }
            }
        }
        let table = index_tensor(table, &[oh, ow, kk], self)?.broadcast_to([n, c, oh, ow, kk])?;
        let idx = table.run2(&tap, [n, c, oh, ow, 1], |be, s, src_layout, i, index_layout| {
            be.gather(s, src_layout, i, index_layout, 4)
        })?;
        let idx = idx.reshape_to([n, c, oh, ow])?;
        Ok((p.finish(values)?, p.finish(idx)?))
    }

    /// The gradient of [`Tensor::max_pool2d_with_indices`]'s input: `self`, the
    /// gradient of the pooled output (`[N, C, OH, OW]` or `[C, OH, OW]`), added at
    /// `indices` (the forward's, I64, of the same shape, each in `0..H * W`) into zeros
    /// of the input's shape, whose plane is `input_size = [H, W]`. Elements chosen by
    /// several overlapping windows get the sum (PyTorch's
    /// `max_pool2d_with_indices_backward`). One pass on the CPU; zeros and
    /// [`Tensor::scatter_add`] elsewhere.
    ///
    /// ```
    /// use tensor_core::{MaxPool2dOptions, Tensor};
    /// let x = Tensor::from_vec(vec![1.0f32, 5.0, 2.0, 3.0], [1, 1, 2, 2])?;
    /// let (_, i) = x.max_pool2d_with_indices([2, 2], MaxPool2dOptions::default())?;
    /// let g = Tensor::from_vec(vec![7.0f32], [1, 1, 1, 1])?;
    /// assert_eq!(g.max_pool2d_backward(&i, [2, 2])?.to_vec::<f32>()?, vec![0.0, 7.0, 0.0, 0.0]);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn max_pool2d_backward(&self, indices: &Tensor, input_size: [usize; 2]) -> Result<Tensor> {
        let op = "max_pool2d_backward";
        let _prof = crate::profiler::scope(op, &[self, indices]);
        require_float(op, self)?;
        self.same_device(op, indices)?;
        if indices.dtype() != DType::I64 {
            return Err(Error::DTypeMismatch { op, expected: DType::I64, got: indices.dtype() });
        }
        if indices.dims() != self.dims() {
            return Err(Error::shape(op, self.dims(), indices.dims(), "indices must have the gradient's shape"));
        }
        let r = self.rank();
        if r != 3 && r != 4 {
            return Err(Error::invalid_shape(op, self.dims(), "expected a [N, C, OH, OW] or [C, OH, OW] gradient"));
        }
        let lead = &self.dims()[..r - 2];
        let mut out_dims = lead.to_vec();
        out_dims.extend(input_size);
        crate::create::checked_numel(op, &out_dims)?;
        let planes = crate::create::checked_numel(op, lead)?;
        let (g, i) = (self.contiguous()?, indices.contiguous()?);
        // The kernel reads both through one layout: contiguous views may still start
        // at different offsets (a narrowed gradient), and then the composite runs.
        let fused = if g.layout() != i.layout() {
            None
        } else {
            let (gg, ig) = (g.storage().read(), i.storage().read());
            let op = FusedOp::MaxPool2dBackward {
                grad: &**gg,
                indices: &**ig,
                layout: g.layout(),
                planes,
                size: input_size,
            };
            crate::fused::run(self.device(), op, &[&out_dims])
        };
        if let Some(out) = fused {
            return out?.pop().ok_or_else(|| Error::arg(op, "the fused kernel returned no output"));
        }
        let flat = |n: usize| lead.iter().copied().chain([n]).collect::<Vec<_>>();
        let per = self.dims()[r - 2] * self.dims()[r - 1];
        // Half types add up in f32 (overlapping windows sum several gradients).
        let cd = compute_dtype(self.dtype());
        let zeros = Tensor::zeros(flat(input_size[0] * input_size[1]), cd, self.device())?;
        let g = g.to_dtype(cd)?.reshape_to(flat(per))?;
        zeros.scatter_add((r - 2) as isize, &i.reshape_to(flat(per))?, &g)?.reshape_to(out_dims)?.to_dtype(self.dtype())
    }

    /// 2-D average pooling (PyTorch's `F.avg_pool2d`). Zero padding; the divisor is
    /// `divisor_override` when given, else the window size clipped to the padded
    /// input when `count_include_pad`, else the number of real input elements in
    /// the window (PyTorch's rules, also in `ceil_mode`).
    ///
    /// ```
    /// use tensor_core::{AvgPool2dOptions, DType, Device, Tensor};
    /// let x = Tensor::ones([1, 1, 2, 2], DType::F32, &Device::cpu())?;
    /// let o = AvgPool2dOptions { padding: [1, 1], count_include_pad: false, ..Default::default() };
    /// assert_eq!(x.avg_pool2d([2, 2], o)?.to_vec::<f32>()?, vec![1.0; 4]);
    /// let o = AvgPool2dOptions { padding: [1, 1], ..Default::default() }; // padding counts
    /// assert_eq!(x.avg_pool2d([2, 2], o)?.to_vec::<f32>()?, vec![0.25; 4]);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn avg_pool2d(&self, kernel: [usize; 2], o: AvgPool2dOptions) -> Result<Tensor> {
        let _prof = crate::profiler::scope("avg_pool2d", &[self]);
        let op = "avg_pool2d";
        let (stride, padding, ceil_mode, count_include_pad) =
            (o.stride.unwrap_or(kernel), o.padding, o.ceil_mode, o.count_include_pad);
        if o.divisor_override == Some(0) {
            return Err(Error::arg(op, "divisor_override must not be zero"));
        }
        require_float(op, self)?;
        let cd = compute_dtype(self.dtype());
        let p = prepare(op, &self.to_dtype(cd)?, kernel, stride, padding, [1, 1], ceil_mode)?;
        let sums = p.windows(kernel, stride, padding, [1, 1], 0.0)?.sum(&[-2, -1], false)?;
        let counts = |n: usize, k: usize, s: usize, pad: usize, out: usize| -> Vec<f64> {
            (0..out)
                .map(|o| {
                    let start = (o * s) as i64 - pad as i64;
                    let end = (start + k as i64).min((n + pad) as i64);
                    if count_include_pad {
                        (end - start) as f64
                    } else {
                        (end.min(n as i64) - start.max(0)) as f64
                    }
                })
                .collect()
        };
        let ch = counts(p.x.dims()[2], kernel[0], stride[0], padding[0], p.h.out);
        let cw = counts(p.x.dims()[3], kernel[1], stride[1], padding[1], p.w.out);
        let div: Vec<f64> = match o.divisor_override {
            Some(d) => vec![d as f64; ch.len() * cw.len()],
            None => ch.iter().flat_map(|a| cw.iter().map(move |b| a * b)).collect(),
        };
        let div = host_tensor(div, &[p.h.out, p.w.out], cd, self)?;
        p.finish(sums.div(&div)?.to_dtype(self.dtype())?)
    }

    /// Adaptive 2-D average pooling to `output_size`: output cell `i` averages input
    /// rows `floor(i H / OH) .. ceil((i + 1) H / OH)` (likewise for columns).
    pub fn adaptive_avg_pool2d(&self, output_size: [usize; 2]) -> Result<Tensor> {
        let _prof = crate::profiler::scope("adaptive_avg_pool2d", &[self]);
        let op = "adaptive_avg_pool2d";
        require_float(op, self)?;
        if !(self.rank() == 3 || self.rank() == 4) {
            return Err(Error::invalid_shape(op, self.dims(), "expected a 3-D (unbatched) or 4-D (batched) input"));
        }
        let r = self.rank();
        let (h, w) = (self.dims()[r - 2], self.dims()[r - 1]);
        if h == 0 || w == 0 {
            return Err(Error::invalid_shape(op, self.dims(), "expected non-empty spatial dims"));
        }
        let mut out_shape = self.dims().to_vec();
        out_shape[r - 2..].copy_from_slice(&output_size);
        crate::create::checked_numel(op, &out_shape)?;
        let cd = compute_dtype(self.dtype());
        // Row i of the averaging matrix holds 1/len over its window. Its size `out * n`
        // is checked, so every `i * n` and `(i + 1) * n` below fits.
        let averaging = |n: usize, out: usize| -> Result<Vec<f64>> {
            let len = crate::create::checked_numel(op, &[out, n])?;
            let mut m = crate::create::try_collect(len, |_| 0.0)?;
            for i in 0..out {
                let (a, b) = ((i * n) / out, ((i + 1) * n).div_ceil(out));
                for v in &mut m[i * n + a..i * n + b] {
                    *v = 1.0 / (b - a) as f64;
                }
            }
            Ok(m)
        };
        let ah = host_tensor(averaging(h, output_size[0])?, &[output_size[0], h], cd, self)?;
        let aw = host_tensor(averaging(w, output_size[1])?, &[output_size[1], w], cd, self)?;
        let x = self.contiguous()?.to_dtype(cd)?;
        ah.matmul(&x)?.matmul(&aw.t()?)?.to_dtype(self.dtype())
    }
}
