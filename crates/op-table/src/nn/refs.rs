//! Naive f64 references for the nn ops: direct nested loops over [`RefArray`]s that
//! follow the textbook (and PyTorch's documented) definitions, sharing no code with
//! the library's im2col / strided-window implementations.

use crate::refs::{broadcast, strides, unravel};
use crate::RefArray;

/// Softmax (or log-softmax) along `dim`; a 0-dim input is a single-element row.
pub fn softmax(a: &RefArray, dim: usize, log: bool) -> RefArray {
    if a.shape.is_empty() {
        return RefArray::scalar(if log { 0.0 } else { 1.0 });
    }
    let n = a.shape[dim];
    let inner: usize = a.shape[dim + 1..].iter().product();
    let outer: usize = a.shape[..dim].iter().product();
    let mut out = vec![0.0; a.numel()];
    for o in 0..outer {
        for i in 0..inner {
            let at = |k: usize| o * n * inner + k * inner + i;
            let m = (0..n).map(|k| a.data[at(k)]).fold(f64::NEG_INFINITY, f64::max);
            let s: f64 = (0..n).map(|k| (a.data[at(k)] - m).exp()).sum();
            for k in 0..n {
                let z = a.data[at(k)] - m;
                out[at(k)] = if log { z - s.ln() } else { z.exp() / s };
            }
        }
    }
    RefArray::new(a.shape.clone(), out)
}

/// Direct 2-D convolution (cross-correlation) with zero padding.
#[allow(clippy::too_many_arguments)]
pub fn conv2d(
    x: &RefArray,
    w: &RefArray,
    b: Option<&RefArray>,
    stride: [usize; 2],
    pad: [usize; 2],
    dil: [usize; 2],
    groups: usize,
) -> RefArray {
    let (n, c, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    let (o, cg, kh, kw) = (w.shape[0], w.shape[1], w.shape[2], w.shape[3]);
    let oh = (h + 2 * pad[0] - dil[0] * (kh - 1) - 1) / stride[0] + 1;
    let ow = (wd + 2 * pad[1] - dil[1] * (kw - 1) - 1) / stride[1] + 1;
    let og = o / groups;
    assert_eq!(cg * groups, c, "reference conv2d: channel mismatch");
    let mut out = Vec::with_capacity(n * o * oh * ow);
    for ni in 0..n {
        for oc in 0..o {
            let g = oc / og;
            for y in 0..oh {
                for xx in 0..ow {
                    let mut acc = b.map_or(0.0, |b| b.data[oc]);
                    for ci in 0..cg {
                        for i in 0..kh {
                            for j in 0..kw {
                                let iy = (y * stride[0] + i * dil[0]) as isize - pad[0] as isize;
                                let ix = (xx * stride[1] + j * dil[1]) as isize - pad[1] as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                                    continue;
                                }
                                let xv = x.at(&[ni, g * cg + ci, iy as usize, ix as usize]);
                                acc += xv * w.at(&[oc, ci, i, j]);
                            }
                        }
                    }
                    out.push(acc);
                }
            }
        }
    }
    RefArray::new(vec![n, o, oh, ow], out)
}

/// 1-D convolution through the 2-D reference on a height-1 image.
pub fn conv1d(
    x: &RefArray,
    w: &RefArray,
    b: Option<&RefArray>,
    stride: usize,
    pad: usize,
    dil: usize,
    groups: usize,
) -> RefArray {
    let x4 = RefArray::new(vec![x.shape[0], x.shape[1], 1, x.shape[2]], x.data.clone());
    let w4 = RefArray::new(vec![w.shape[0], w.shape[1], 1, w.shape[2]], w.data.clone());
    let y = conv2d(&x4, &w4, b, [1, stride], [0, pad], [1, dil], groups);
    RefArray::new(vec![y.shape[0], y.shape[1], y.shape[3]], y.data)
}

/// Transposed 2-D convolution by its definition: every input pixel scatters
/// `x * w` into the output positions its kernel taps reach.
#[allow(clippy::too_many_arguments)]
pub fn conv_transpose2d(
    x: &RefArray,
    w: &RefArray,
    b: Option<&RefArray>,
    stride: [usize; 2],
    pad: [usize; 2],
    out_pad: [usize; 2],
    dil: [usize; 2],
    groups: usize,
) -> RefArray {
    let (n, c, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    let (og, kh, kw) = (w.shape[1], w.shape[2], w.shape[3]);
    let o = og * groups;
    let cg = c / groups;
    let oh = (h - 1) * stride[0] + dil[0] * (kh - 1) + out_pad[0] + 1 - 2 * pad[0];
    let ow = (wd - 1) * stride[1] + dil[1] * (kw - 1) + out_pad[1] + 1 - 2 * pad[1];
    let mut out = vec![0.0; n * o * oh * ow];
    for ni in 0..n {
        for ci in 0..c {
            let g = ci / cg;
            for y in 0..h {
                for xx in 0..wd {
                    let xv = x.at(&[ni, ci, y, xx]);
                    for oc in 0..og {
                        for i in 0..kh {
                            for j in 0..kw {
                                let ty = (y * stride[0] + i * dil[0]) as isize - pad[0] as isize;
                                let tx = (xx * stride[1] + j * dil[1]) as isize - pad[1] as isize;
                                if ty < 0 || tx < 0 || ty >= oh as isize || tx >= ow as isize {
                                    continue;
                                }
                                let oo = g * og + oc;
                                out[((ni * o + oo) * oh + ty as usize) * ow + tx as usize] +=
                                    xv * w.at(&[ci, oc, i, j]);
                            }
                        }
                    }
                }
            }
        }
    }
    if let Some(b) = b {
        for (k, v) in out.iter_mut().enumerate() {
            *v += b.data[(k / (oh * ow)) % o];
        }
    }
    RefArray::new(vec![n, o, oh, ow], out)
}

/// PyTorch's pooling output length (`pooling_output_shape`).
pub fn pool_out(n: usize, k: usize, s: usize, p: usize, d: usize, ceil: bool) -> usize {
    let num = (n + 2 * p) as isize - (d * (k - 1)) as isize - 1 + if ceil { s as isize - 1 } else { 0 };
    let mut out = num.div_euclid(s as isize) + 1;
    if ceil && (out - 1) * s as isize >= (n + p) as isize {
        out -= 1;
    }
    out as usize
}

/// Max pooling: `(values, flat H*W indices)`; the first maximum in row-major window
/// order wins, and the first NaN wins over any number (PyTorch propagates NaN);
/// padding never does.
pub fn max_pool2d(
    x: &RefArray,
    k: [usize; 2],
    s: [usize; 2],
    p: [usize; 2],
    d: [usize; 2],
    ceil: bool,
) -> (RefArray, RefArray) {
    let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    let oh = pool_out(h, k[0], s[0], p[0], d[0], ceil);
    let ow = pool_out(w, k[1], s[1], p[1], d[1], ceil);
    let mut vals = Vec::new();
    let mut idxs = Vec::new();
    for ni in 0..n {
        for ci in 0..c {
            for y in 0..oh {
                for xx in 0..ow {
                    let mut best = f64::NEG_INFINITY;
                    let mut bi = -1i64;
                    for i in 0..k[0] {
                        for j in 0..k[1] {
                            let iy = (y * s[0] + i * d[0]) as isize - p[0] as isize;
                            let ix = (xx * s[1] + j * d[1]) as isize - p[1] as isize;
                            if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                continue;
                            }
                            let v = x.at(&[ni, ci, iy as usize, ix as usize]);
                            if bi < 0 || (!best.is_nan() && (v.is_nan() || v > best)) {
                                best = v;
                                bi = iy as i64 * w as i64 + ix as i64;
                            }
                        }
                    }
                    vals.push(best);
                    idxs.push(bi as f64);
                }
            }
        }
    }
    (RefArray::new(vec![n, c, oh, ow], vals), RefArray::new(vec![n, c, oh, ow], idxs))
}

/// Average pooling with PyTorch's divisor rules.
pub fn avg_pool2d(
    x: &RefArray,
    k: [usize; 2],
    s: [usize; 2],
    p: [usize; 2],
    ceil: bool,
    include_pad: bool,
    divisor_override: Option<usize>,
) -> RefArray {
    let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    let oh = pool_out(h, k[0], s[0], p[0], 1, ceil);
    let ow = pool_out(w, k[1], s[1], p[1], 1, ceil);
    let mut out = Vec::new();
    for ni in 0..n {
        for ci in 0..c {
            for y in 0..oh {
                for xx in 0..ow {
                    let hs = (y * s[0]) as isize - p[0] as isize;
                    let ws = (xx * s[1]) as isize - p[1] as isize;
                    let he = (hs + k[0] as isize).min((h + p[0]) as isize);
                    let we = (ws + k[1] as isize).min((w + p[1]) as isize);
                    let pool = (he - hs) * (we - ws);
                    let (hs, ws) = (hs.max(0), ws.max(0));
                    let (he, we) = (he.min(h as isize), we.min(w as isize));
                    let mut sum = 0.0;
                    for iy in hs..he {
                        for ix in ws..we {
                            sum += x.at(&[ni, ci, iy as usize, ix as usize]);
                        }
                    }
                    let div = if include_pad { pool } else { (he - hs) * (we - ws) };
                    out.push(sum / divisor_override.map_or(div as f64, |d| d as f64));
                }
            }
        }
    }
    RefArray::new(vec![n, c, oh, ow], out)
}

/// Adaptive average pooling over the last two dims (any leading dims).
pub fn adaptive_avg_pool2d(x: &RefArray, out: [usize; 2]) -> RefArray {
    let r = x.shape.len();
    let (h, w) = (x.shape[r - 2], x.shape[r - 1]);
    let lead: usize = x.shape[..r - 2].iter().product();
    let mut data = Vec::new();
    for l in 0..lead {
        for y in 0..out[0] {
            let (y0, y1) = ((y * h) / out[0], ((y + 1) * h).div_ceil(out[0]));
            for xx in 0..out[1] {
                let (x0, x1) = ((xx * w) / out[1], ((xx + 1) * w).div_ceil(out[1]));
                let mut s = 0.0;
                for iy in y0..y1 {
                    for ix in x0..x1 {
                        s += x.data[l * h * w + iy * w + ix];
                    }
                }
                data.push(s / ((y1 - y0) * (x1 - x0)) as f64);
            }
        }
    }
    let mut shape = x.shape[..r - 2].to_vec();
    shape.extend(out);
    RefArray::new(shape, data)
}

/// Border handling of the reference `pad`.
#[derive(Clone, Copy)]
pub enum Mode {
    /// constant value
    Constant(f64),
    /// mirror
    Reflect,
    /// edge
    Replicate,
}

/// Padding by its definition: each output element reads the source index its mode
/// maps it to (or the constant).
pub fn pad(x: &RefArray, pads: &[usize], mode: Mode) -> RefArray {
    let r = x.shape.len();
    let mut lo = vec![0; r];
    let mut shape = x.shape.clone();
    for (i, p) in pads.chunks(2).enumerate() {
        lo[r - 1 - i] = p[0];
        shape[r - 1 - i] += p[0] + p[1];
    }
    let n: usize = shape.iter().product();
    let xs = strides(&x.shape);
    let data = (0..n)
        .map(|k| {
            let idx = unravel(k, &shape);
            let mut off = 0;
            for d in 0..r {
                let size = x.shape[d] as isize;
                let i = idx[d] as isize - lo[d] as isize;
                let src = if (0..size).contains(&i) {
                    i
                } else {
                    match mode {
                        Mode::Constant(v) => return v,
                        Mode::Reflect => {
                            if i < 0 {
                                -i
                            } else {
                                2 * (size - 1) - i
                            }
                        }
                        Mode::Replicate => i.clamp(0, size - 1),
                    }
                };
                off += src as usize * xs[d];
            }
            x.data[off]
        })
        .collect();
    RefArray::new(shape, data)
}

/// Row lookup: `out[i.., :] = w[idx[i..], :]`.
pub fn embedding(w: &RefArray, idx: &RefArray) -> RefArray {
    let dim = w.shape[1];
    let mut data = Vec::new();
    for &i in &idx.data {
        let i = i as usize;
        data.extend_from_slice(&w.data[i * dim..(i + 1) * dim]);
    }
    let mut shape = idx.shape.clone();
    shape.push(dim);
    RefArray::new(shape, data)
}

/// Layer norm over the trailing `k` dims.
pub fn layer_norm(x: &RefArray, k: usize, w: Option<&RefArray>, b: Option<&RefArray>, eps: f64) -> RefArray {
    let r = x.shape.len();
    let m: usize = x.shape[r - k..].iter().product();
    let mut out = vec![0.0; x.numel()];
    for (row, o) in x.data.chunks(m).zip(out.chunks_mut(m)) {
        let mean = row.iter().sum::<f64>() / m as f64;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / m as f64;
        for (j, (o, v)) in o.iter_mut().zip(row).enumerate() {
            let mut y = (v - mean) / (var + eps).sqrt();
            if let Some(w) = w {
                y *= w.data[j];
            }
            if let Some(b) = b {
                y += b.data[j];
            }
            *o = y;
        }
    }
    RefArray::new(x.shape.clone(), out)
}

/// Batch norm of `[N, C, ...]`: `(y, new running mean, new running var)`. In
/// training the running stats (when given) move toward the batch mean and the
/// unbiased batch variance.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm(
    x: &RefArray,
    rm: Option<&RefArray>,
    rv: Option<&RefArray>,
    w: Option<&RefArray>,
    b: Option<&RefArray>,
    training: bool,
    momentum: f64,
    eps: f64,
) -> (RefArray, Option<RefArray>, Option<RefArray>) {
    let (n, c) = (x.shape[0], x.shape[1]);
    let inner: usize = x.shape[2..].iter().product();
    let at = |ni: usize, ci: usize, k: usize| (ni * c + ci) * inner + k;
    let mut out = vec![0.0; x.numel()];
    let mut new_m = rm.cloned();
    let mut new_v = rv.cloned();
    for ci in 0..c {
        let vals: Vec<f64> =
            (0..n).flat_map(|ni| (0..inner).map(move |k| (ni, k))).map(|(ni, k)| x.data[at(ni, ci, k)]).collect();
        let cnt = vals.len() as f64;
        let (mean, var) = if training {
            let mean = vals.iter().sum::<f64>() / cnt;
            let var = vals.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / cnt;
            if let Some(m) = new_m.as_mut() {
                m.data[ci] = (1.0 - momentum) * m.data[ci] + momentum * mean;
            }
            if let Some(v) = new_v.as_mut() {
                v.data[ci] = (1.0 - momentum) * v.data[ci] + momentum * var * cnt / (cnt - 1.0);
            }
            (mean, var)
        } else {
            (rm.expect("eval needs running mean").data[ci], rv.expect("eval needs running var").data[ci])
        };
        for ni in 0..n {
            for k in 0..inner {
                let mut y = (x.data[at(ni, ci, k)] - mean) / (var + eps).sqrt();
                if let Some(w) = w {
                    y *= w.data[ci];
                }
                if let Some(b) = b {
                    y += b.data[ci];
                }
                out[at(ni, ci, k)] = y;
            }
        }
    }
    (RefArray::new(x.shape.clone(), out), new_m, new_v)
}

/// The number of `k`-tap blocks with dilation `d` and stride `s` along a dim of
/// size `n` padded by `p` on both sides.
fn blocks(n: usize, k: usize, d: usize, p: usize, s: usize) -> usize {
    (n + 2 * p - d * (k - 1) - 1) / s + 1
}

/// PyTorch's `F.unfold` of a batched `[N, C, H, W]` array: row
/// `(c * kh + i) * kw + j`, column `y * OW + x` holds input pixel
/// `(y s0 + i d0 - p0, x s1 + j d1 - p1)` of channel `c`, or 0 in the padding.
pub fn unfold2d(x: &RefArray, k: [usize; 2], d: [usize; 2], p: [usize; 2], s: [usize; 2]) -> RefArray {
    let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    let (oh, ow) = (blocks(h, k[0], d[0], p[0], s[0]), blocks(w, k[1], d[1], p[1], s[1]));
    let (rows, l) = (c * k[0] * k[1], oh * ow);
    let mut out = vec![0.0; n * rows * l];
    for b in 0..n {
        for ci in 0..c {
            for i in 0..k[0] {
                for j in 0..k[1] {
                    for y in 0..oh {
                        for xx in 0..ow {
                            let r = (y * s[0] + i * d[0]) as isize - p[0] as isize;
                            let q = (xx * s[1] + j * d[1]) as isize - p[1] as isize;
                            if r < 0 || q < 0 || r >= h as isize || q >= w as isize {
                                continue;
                            }
                            let row = (ci * k[0] + i) * k[1] + j;
                            out[(b * rows + row) * l + y * ow + xx] = x.at(&[b, ci, r as usize, q as usize]);
                        }
                    }
                }
            }
        }
    }
    RefArray::new(vec![n, rows, l], out)
}

/// PyTorch's `F.fold` of a batched `[N, C * kh * kw, L]` array into
/// `[N, C, size[0], size[1]]`: every block value is added to the pixel it came from
/// in [`unfold2d`]; values landing in the padding are dropped.
pub fn fold2d(
    cols: &RefArray,
    size: [usize; 2],
    k: [usize; 2],
    d: [usize; 2],
    p: [usize; 2],
    s: [usize; 2],
) -> RefArray {
    let (n, rows) = (cols.shape[0], cols.shape[1]);
    let c = rows / (k[0] * k[1]);
    let (h, w) = (size[0], size[1]);
    let (oh, ow) = (blocks(h, k[0], d[0], p[0], s[0]), blocks(w, k[1], d[1], p[1], s[1]));
    let mut out = vec![0.0; n * c * h * w];
    for b in 0..n {
        for ci in 0..c {
            for i in 0..k[0] {
                for j in 0..k[1] {
                    for y in 0..oh {
                        for xx in 0..ow {
                            let r = (y * s[0] + i * d[0]) as isize - p[0] as isize;
                            let q = (xx * s[1] + j * d[1]) as isize - p[1] as isize;
                            if r < 0 || q < 0 || r >= h as isize || q >= w as isize {
                                continue;
                            }
                            let row = (ci * k[0] + i) * k[1] + j;
                            out[((b * c + ci) * h + r as usize) * w + q as usize] += cols.at(&[b, row, y * ow + xx]);
                        }
                    }
                }
            }
        }
    }
    RefArray::new(vec![n, c, h, w], out)
}

/// Scaled dot-product attention by plain loops: `q: [..., L, E]`, `k: [..., S, E]`,
/// `v: [..., S, Ev]` (leading dims broadcast). `keep` (nonzero = attend) and `bias`
/// broadcast to `[..., L, S]`; a query with no key kept gives zeros.
pub fn attention(
    q: &RefArray,
    k: &RefArray,
    v: &RefArray,
    keep: Option<&RefArray>,
    bias: Option<&RefArray>,
    causal: bool,
    scale: f64,
) -> RefArray {
    let (qr, kr, vr) = (q.shape.len(), k.shape.len(), v.shape.len());
    let (l, e) = (q.shape[qr - 2], q.shape[qr - 1]);
    let s = k.shape[kr - 2];
    let ev = v.shape[vr - 1];
    let batch = broadcast(&broadcast(&q.shape[..qr - 2], &k.shape[..kr - 2]), &v.shape[..vr - 2]);
    let with = |tail: &[usize]| -> Vec<usize> { batch.iter().chain(tail).copied().collect() };
    let q = crate::views::ref_expand(q, &with(&[l, e]));
    let k = crate::views::ref_expand(k, &with(&[s, e]));
    let v = crate::views::ref_expand(v, &with(&[s, ev]));
    let keep = keep.map(|m| crate::views::ref_expand(m, &with(&[l, s])));
    let bias = bias.map(|m| crate::views::ref_expand(m, &with(&[l, s])));
    let nb: usize = batch.iter().product();
    let mut out = Vec::with_capacity(nb * l * ev);
    for b in 0..nb {
        for i in 0..l {
            let mut scores = Vec::with_capacity(s);
            for j in 0..s {
                let dot: f64 = (0..e).map(|c| q.data[(b * l + i) * e + c] * k.data[(b * s + j) * e + c]).sum();
                let at = (b * l + i) * s + j;
                let kept = keep.as_ref().is_none_or(|m| m.data[at] != 0.0) && (!causal || j <= i);
                let x = dot * scale + bias.as_ref().map_or(0.0, |m| m.data[at]);
                scores.push(if kept { x } else { f64::NEG_INFINITY });
            }
            let m = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let w: Vec<f64> = if m == f64::NEG_INFINITY {
                vec![0.0; s]
            } else {
                let ex: Vec<f64> = scores.iter().map(|x| (x - m).exp()).collect();
                let z: f64 = ex.iter().sum();
                ex.iter().map(|x| x / z).collect()
            };
            for c in 0..ev {
                out.push((0..s).map(|j| w[j] * v.data[(b * s + j) * ev + c]).sum());
            }
        }
    }
    RefArray::new(with(&[l, ev]), out)
}

/// RMS normalisation over the last `k` dims: `x / sqrt(mean(x^2) + eps) * w`.
pub fn rms_norm(x: &RefArray, k: usize, w: Option<&RefArray>, eps: f64) -> RefArray {
    let inner: usize = x.shape[x.shape.len() - k..].iter().product();
    let mut out = x.data.clone();
    if inner > 0 {
        for row in out.chunks_mut(inner) {
            let ms = row.iter().map(|v| v * v).sum::<f64>() / inner as f64;
            let r = 1.0 / (ms + eps).sqrt();
            for (j, v) in row.iter_mut().enumerate() {
                *v *= r * w.map_or(1.0, |w| w.data[j]);
            }
        }
    }
    RefArray::new(x.shape.clone(), out)
}

/// One LSTM direction over a sequence, step by step in f64 (gate order i, f, g, o):
/// `gi [T, N, 4H]`, `w [H, 4H]` (the transposed recurrent weight), `h0`, `c0` `[N,
/// H]`. Returns the states `[2, T, N, H]` (h then c per step) and the activated gates
/// `[T, N, 4H]`.
pub fn lstm_sequence(gi: &RefArray, w: &RefArray, h0: &RefArray, c0: &RefArray, reverse: bool) -> (RefArray, RefArray) {
    let (t, n, h) = (gi.shape[0], gi.shape[1], w.shape[0]);
    let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
    let mut states = vec![0.0; 2 * t * n * h];
    let mut acts = vec![0.0; t * n * 4 * h];
    let (mut hp, mut cp) = (h0.data.clone(), c0.data.clone());
    let steps: Vec<usize> = if reverse { (0..t).rev().collect() } else { (0..t).collect() };
    for s in steps {
        for r in 0..n {
            for j in 0..h {
                let pre = |k: usize| {
                    let col = k * h + j;
                    gi.data[(s * n + r) * 4 * h + col]
                        + (0..h).map(|p| hp[r * h + p] * w.data[p * 4 * h + col]).sum::<f64>()
                };
                let (i, f, g, o) = (sig(pre(0)), sig(pre(1)), pre(2).tanh(), sig(pre(3)));
                let c = f * cp[r * h + j] + i * g;
                let a = (s * n + r) * 4 * h + j;
                for (k, v) in [i, f, g, o].into_iter().enumerate() {
                    acts[a + k * h] = v;
                }
                states[(s * n + r) * h + j] = o * c.tanh();
                states[((t + s) * n + r) * h + j] = c;
            }
        }
        hp = states[s * n * h..(s + 1) * n * h].to_vec();
        cp = states[(t + s) * n * h..(t + s + 1) * n * h].to_vec();
    }
    (RefArray::new(vec![2, t, n, h], states), RefArray::new(vec![t, n, 4 * h], acts))
}

/// Backpropagation through time of [`lstm_sequence`] in f64 from the states'
/// gradient `grad [2, T, N, H]`: the gradients of `gi`, `h0` and `c0`.
pub fn lstm_sequence_backward(
    gi: &RefArray,
    w: &RefArray,
    h0: &RefArray,
    c0: &RefArray,
    grad: &RefArray,
    reverse: bool,
) -> [RefArray; 3] {
    let (t, n, h) = (gi.shape[0], gi.shape[1], w.shape[0]);
    let (states, acts) = lstm_sequence(gi, w, h0, c0, reverse);
    let (st, a) = (&states.data, &acts.data);
    let mut dgi = vec![0.0; t * n * 4 * h];
    let (mut dh, mut dc) = (vec![0.0; n * h], vec![0.0; n * h]);
    let steps: Vec<usize> = if reverse { (0..t).collect() } else { (0..t).rev().collect() };
    for s in steps {
        let prev = if reverse { (s + 1 < t).then_some(s + 1) } else { s.checked_sub(1) };
        let mut dc_prev = vec![0.0; n * h];
        for r in 0..n {
            for j in 0..h {
                let x = (s * n + r) * 4 * h + j;
                let (i, f, g, o) = (a[x], a[x + h], a[x + 2 * h], a[x + 3 * h]);
                let c = st[((t + s) * n + r) * h + j];
                let cp = match prev {
                    Some(p) => st[((t + p) * n + r) * h + j],
                    None => c0.data[r * h + j],
                };
                let dhs = grad.data[(s * n + r) * h + j] + dh[r * h + j];
                let tc = c.tanh();
                let dcs = grad.data[((t + s) * n + r) * h + j] + dc[r * h + j] + dhs * o * (1.0 - tc * tc);
                dgi[x] = dcs * g * i * (1.0 - i);
                dgi[x + h] = dcs * cp * f * (1.0 - f);
                dgi[x + 2 * h] = dcs * i * (1.0 - g * g);
                dgi[x + 3 * h] = dhs * tc * o * (1.0 - o);
                dc_prev[r * h + j] = dcs * f;
            }
        }
        // dh_prev = dgates w^T
        for r in 0..n {
            for p in 0..h {
                dh[r * h + p] = (0..4 * h).map(|col| dgi[(s * n + r) * 4 * h + col] * w.data[p * 4 * h + col]).sum();
            }
        }
        dc = dc_prev;
    }
    [RefArray::new(vec![t, n, 4 * h], dgi), RefArray::new(vec![n, h], dh), RefArray::new(vec![n, h], dc)]
}
