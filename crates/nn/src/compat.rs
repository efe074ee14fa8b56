//! Stand-ins for `Var` ops that autograd does not provide yet. Inherent `Var`
//! methods of the same name take precedence over these trait methods, so each
//! stand-in is shadowed (and this trait's import reported unused) as soon as the real
//! op lands; then it is deleted.

use autograd::Var;
use tensor_core::{DType, Error, Result, Tensor};

#[allow(dead_code)]
pub(crate) trait VarNnCompat {
    fn embedding(&self, indices: &Tensor) -> Result<Var>;
    fn conv1d(&self, w: &Var, b: Option<&Var>, s: usize, p: usize, d: usize, g: usize) -> Result<Var>;
    #[allow(clippy::too_many_arguments)]
    fn conv_transpose2d(
        &self,
        w: &Var,
        b: Option<&Var>,
        s: [usize; 2],
        p: [usize; 2],
        op: [usize; 2],
        d: [usize; 2],
        g: usize,
    ) -> Result<Var>;
    fn max_pool2d(&self, k: [usize; 2], s: [usize; 2], p: [usize; 2], d: [usize; 2], ceil: bool) -> Result<Var>;
    fn avg_pool2d(&self, k: [usize; 2], s: [usize; 2], p: [usize; 2], ceil: bool, cip: bool) -> Result<Var>;
    fn adaptive_avg_pool2d(&self, out: [usize; 2]) -> Result<Var>;
}

impl VarNnCompat for Var {
    fn embedding(&self, indices: &Tensor) -> Result<Var> {
        let (num, dim) = (self.dims()[0], self.dims()[1]);
        let idx = indices.to_dtype(DType::I64)?.to_vec::<i64>()?;
        let mut oh = vec![0.0; idx.len() * num];
        for (r, &i) in idx.iter().enumerate() {
            if i < 0 || i as usize >= num {
                return Err(Error::IndexOutOfRange { op: "embedding", index: i, dim: 0, size: num });
            }
            oh[r * num + i as usize] = 1.0;
        }
        let oh = Tensor::from_vec(oh, [idx.len(), num])?.to_dtype(self.dtype())?;
        let mut shape: Vec<isize> = indices.dims().iter().map(|&d| d as isize).collect();
        shape.push(dim as isize);
        Var::from(oh).matmul(self)?.reshape(&shape)
    }
    /// A 1-D convolution is a 2-D one over a height of 1.
    fn conv1d(&self, w: &Var, b: Option<&Var>, s: usize, p: usize, d: usize, g: usize) -> Result<Var> {
        let y = self.unsqueeze(2)?.conv2d(&w.unsqueeze(2)?, b, [1, s], [0, p], [1, d], g)?;
        y.squeeze(2)
    }
    /// The transposed convolution is the adjoint of `conv2d` in its input: the
    /// gradient of `<conv2d(u, w), x>` with respect to `u`, taken with `create_graph`
    /// so that it is itself differentiable in `x` and `w`.
    fn conv_transpose2d(
        &self,
        w: &Var,
        b: Option<&Var>,
        s: [usize; 2],
        p: [usize; 2],
        op: [usize; 2],
        d: [usize; 2],
        g: usize,
    ) -> Result<Var> {
        let name = "conv_transpose2d";
        let (x, unbatched) = batch4(name, self)?;
        if w.rank() != 4 || g == 0 || x.dims()[1] != w.dims()[0] || w.dims()[0] % g != 0 {
            return Err(Error::shape(name, x.dims(), w.dims(), format!("input and weight do not fit groups={g}")));
        }
        let (n, h, wd) = (x.dims()[0], x.dims()[2], x.dims()[3]);
        let cout = w.dims()[1] * g;
        let size = |i: usize, k: usize, len: usize| -> Result<usize> {
            ((len.max(1) - 1) * s[i] + d[i] * (k.max(1) - 1) + op[i] + 1)
                .checked_sub(2 * p[i])
                .filter(|&v| v > 0 && len > 0 && k > 0)
                .ok_or_else(|| Error::arg(name, "the output size would be empty or negative"))
        };
        let (ho, wo) = (size(0, w.dims()[2], h)?, size(1, w.dims()[3], wd)?);
        let recording = autograd::is_grad_enabled();
        let y = autograd::enable_grad(|| -> Result<Var> {
            let u = Var::param(Tensor::zeros([n, cout, ho, wo], x.dtype(), x.device())?)?;
            let inner = u.conv2d(w, None, s, p, d, g)?.mul(&x)?.sum(&[], false)?;
            let grads = autograd::grad(&[inner], &[u], None, recording)?;
            grads.into_iter().next().flatten().ok_or_else(|| Error::Autograd(format!("{name}: no gradient")))
        })?;
        let mut y = if recording { y } else { y.detach() };
        if let Some(b) = b {
            y = y.add(&b.reshape(&[1, cout as isize, 1, 1])?)?;
        }
        if unbatched {
            y.squeeze(0)
        } else {
            Ok(y)
        }
    }
    /// Max of the window's strided slices of the `-inf`-padded input.
    fn max_pool2d(&self, k: [usize; 2], s: [usize; 2], p: [usize; 2], d: [usize; 2], ceil: bool) -> Result<Var> {
        let op = "max_pool2d";
        let (x, unbatched) = batch4(op, self)?;
        let (h, w) = (x.dims()[2], x.dims()[3]);
        let oh = pool_out(op, h, k[0], s[0], p[0], d[0], ceil)?;
        let ow = pool_out(op, w, k[1], s[1], p[1], d[1], ceil)?;
        // Pad to cover every window (ceil mode may reach past the padding).
        let need_h = (oh - 1) * s[0] + d[0] * (k[0] - 1) + 1;
        let need_w = (ow - 1) * s[1] + d[1] * (k[1] - 1) + 1;
        let (bh, bw) = (need_h.saturating_sub(h + p[0]), need_w.saturating_sub(w + p[1]));
        let xp = x.pad_zeros(&[p[1], bw, p[0], bh])?;
        let (hp, wp) = (h + p[0] + bh, w + p[1] + bw);
        let pad: Vec<bool> = (0..hp * wp)
            .map(|i| {
                let (r, c) = (i / wp, i % wp);
                r < p[0] || r >= p[0] + h || c < p[1] || c >= p[1] + w
            })
            .collect();
        let pad_mask = Tensor::from_vec(pad, [hp, wp])?.to_device(x.device())?;
        let xp = xp.masked_fill(&pad_mask, f64::NEG_INFINITY)?;
        let mut out: Option<Var> = None;
        for i in 0..k[0] {
            for j in 0..k[1] {
                let (r0, c0) = ((i * d[0]) as isize, (j * d[1]) as isize);
                let sl = xp.slice(2, Some(r0), Some(r0 + ((oh - 1) * s[0] + 1) as isize), s[0])?.slice(
                    3,
                    Some(c0),
                    Some(c0 + ((ow - 1) * s[1] + 1) as isize),
                    s[1],
                )?;
                out = Some(match out {
                    None => sl,
                    Some(m) => m.maximum(&sl)?,
                });
            }
        }
        let y = out.ok_or_else(|| Error::arg(op, "empty kernel"))?;
        if unbatched {
            y.squeeze(0)
        } else {
            Ok(y)
        }
    }
    /// Window sums are separable: `A_h x A_w^T` with 0/1 band matrices, divided by
    /// PyTorch's per-window divisor (also separable).
    fn avg_pool2d(&self, k: [usize; 2], s: [usize; 2], p: [usize; 2], ceil: bool, cip: bool) -> Result<Var> {
        let op = "avg_pool2d";
        let (x, unbatched) = batch4(op, self)?;
        let (h, w) = (x.dims()[2], x.dims()[3]);
        let mh = avg_matrix(op, h, k[0], s[0], p[0], ceil, cip, x.dtype())?;
        let mw = avg_matrix(op, w, k[1], s[1], p[1], ceil, cip, x.dtype())?;
        let y = Var::from(mh).matmul(&x)?.matmul(&Var::from(mw.t()?))?;
        if unbatched {
            y.squeeze(0)
        } else {
            Ok(y)
        }
    }
    /// Adaptive average pooling is `P_h x P_w^T` with averaging matrices.
    fn adaptive_avg_pool2d(&self, out: [usize; 2]) -> Result<Var> {
        let op = "adaptive_avg_pool2d";
        let (x, unbatched) = batch4(op, self)?;
        let (h, w) = (x.dims()[2], x.dims()[3]);
        if out.contains(&0) || h == 0 || w == 0 {
            return Err(Error::invalid_shape(op, self.dims(), format!("cannot pool to {out:?}")));
        }
        let ph = adaptive_matrix(h, out[0], x.dtype())?;
        let pw = adaptive_matrix(w, out[1], x.dtype())?;
        let y = Var::from(ph).matmul(&x)?.matmul(&Var::from(pw.t()?))?;
        if unbatched {
            y.squeeze(0)
        } else {
            Ok(y)
        }
    }
}

fn batch4(op: &'static str, x: &Var) -> Result<(Var, bool)> {
    match x.rank() {
        4 => Ok((x.clone(), false)),
        3 => Ok((x.unsqueeze(0)?, true)),
        _ => Err(Error::invalid_shape(op, x.dims(), "expected a 3-D or 4-D input")),
    }
}

/// PyTorch's pooling output size.
fn pool_out(op: &'static str, n: usize, k: usize, s: usize, p: usize, d: usize, ceil: bool) -> Result<usize> {
    if k == 0 || s == 0 || d == 0 || p > k / 2 {
        return Err(Error::arg(op, format!("invalid kernel {k}, stride {s}, padding {p}, dilation {d}")));
    }
    let span = d * (k - 1) + 1;
    if n + 2 * p < span {
        return Err(Error::arg(op, format!("input size {n} is smaller than the window {span}")));
    }
    let num = n + 2 * p - span;
    let mut o = if ceil { num.div_ceil(s) + 1 } else { num / s + 1 };
    // The last window must start inside the input or the left padding.
    if ceil && (o - 1) * s >= n + p {
        o -= 1;
    }
    Ok(o)
}

#[allow(clippy::too_many_arguments)]
fn avg_matrix(
    op: &'static str,
    n: usize,
    k: usize,
    s: usize,
    p: usize,
    ceil: bool,
    cip: bool,
    dt: DType,
) -> Result<Tensor> {
    let o = pool_out(op, n, k, s, p, 1, ceil)?;
    let mut m = vec![0.0; o * n];
    for i in 0..o {
        let start = (i * s) as isize - p as isize;
        let end = (start + k as isize).min((n + p) as isize);
        let (lo, hi) = (start.max(0) as usize, end.min(n as isize).max(0) as usize);
        let div = if cip { (end - start) as f64 } else { (hi.saturating_sub(lo)) as f64 };
        for j in lo..hi {
            m[i * n + j] = 1.0 / div;
        }
    }
    Tensor::from_vec(m, [o, n])?.to_dtype(dt)
}

fn adaptive_matrix(n: usize, o: usize, dt: DType) -> Result<Tensor> {
    let mut m = vec![0.0; o * n];
    for i in 0..o {
        let lo = i * n / o;
        let hi = ((i + 1) * n).div_ceil(o);
        for j in lo..hi {
            m[i * n + j] = 1.0 / (hi - lo) as f64;
        }
    }
    Tensor::from_vec(m, [o, n])?.to_dtype(dt)
}
