//! Rotary position embeddings (RoFormer's RoPE, as used by GPT-NeoX and LLaMA).

use autograd::Var;
use tensor_core::{DType, Device, Error, Result, Tensor};

use super::check_size;

const OP: &str = "rotary_embedding";

/// Rotates `x` (`[..., T, D]`, `D` even) by position: feature `i < D/2` and its partner
/// `i + D/2` at position `t` turn by the angle `t · θ_i`, with `cos`/`sin` shaped
/// `[T, D]` (see [`RotaryEmbedding::cos_sin`]) and broadcast over the leading dims:
/// `x · cos + rotate_half(x) · sin`, where `rotate_half([a, b]) = [-b, a]`. This is the
/// "half-split" layout of GPT-NeoX and Hugging Face's LLaMA (not the interleaved pairs of
/// the original RoFormer code). Differentiable in `x`.
///
/// ```
/// use autograd::Var;
/// use nn::{apply_rotary_emb, RotaryEmbedding};
/// use tensor_core::{DType, Device, Tensor};
/// let rope = RotaryEmbedding::new(4, 16, 10000.0)?;
/// let (cos, sin) = rope.cos_sin(0, 3, DType::F64, &Device::cpu())?;
/// let q = Var::from(Tensor::ones([1, 2, 3, 4], DType::F64, &Device::cpu())?); // [B, H, T, D]
/// let r = apply_rotary_emb(&q, &cos, &sin)?;
/// // Position 0 is not rotated; rotations keep the norm.
/// let v = r.tensor().to_vec::<f64>()?;
/// assert_eq!(&v[..4], &[1.0; 4]);
/// assert!((v[4..8].iter().map(|x| x * x).sum::<f64>() - 4.0).abs() < 1e-12);
/// # Ok::<(), tensor_core::Error>(())
/// ```
pub fn apply_rotary_emb(x: &Var, cos: &Tensor, sin: &Tensor) -> Result<Var> {
    let r = x.rank();
    if r < 2 || !x.dims()[r - 1].is_multiple_of(2) {
        return Err(Error::invalid_shape(OP, x.dims(), "expected [..., T, D] with an even head dim D"));
    }
    let (t, d) = (x.dims()[r - 2], x.dims()[r - 1]);
    for (name, c) in [("cos", cos), ("sin", sin)] {
        if c.dims() != [t, d] {
            return Err(Error::shape(OP, x.dims(), c.dims(), format!("{name} must be [T, D] = [{t}, {d}]")));
        }
    }
    let (cos, sin) = (Var::from(cos.to_dtype(x.dtype())?), Var::from(sin.to_dtype(x.dtype())?));
    let half = d / 2;
    let x1 = x.narrow(-1, 0, half)?;
    let x2 = x.narrow(-1, half as isize, half)?;
    let rotated = Var::cat(&[x2.neg()?, x1], -1)?;
    x.mul(&cos)?.add(&rotated.mul(&sin)?)
}

/// The angles of rotary embeddings: `θ_i = base^(-2i / D)` for `i < D/2`, with a
/// `cos`/`sin` table for positions `0..max_seq_len` computed once in f64.
#[derive(Clone, Debug)]
pub struct RotaryEmbedding {
    /// Head dim `D` (even).
    pub dim: usize,
    /// Positions in the table.
    pub max_seq_len: usize,
    /// The base of the frequencies (10000 in RoFormer and LLaMA).
    pub base: f64,
    cos: Tensor,
    sin: Tensor,
}

impl RotaryEmbedding {
    /// The table for head dim `dim` (even) and `max_seq_len` positions.
    pub fn new(dim: usize, max_seq_len: usize, base: f64) -> Result<RotaryEmbedding> {
        if dim == 0 || !dim.is_multiple_of(2) {
            return Err(Error::arg("RotaryEmbedding", format!("dim must be even and positive, got {dim}")));
        }
        if !(base.is_finite() && base > 0.0) {
            return Err(Error::arg("RotaryEmbedding", format!("base must be positive and finite, got {base}")));
        }
        check_size(&[2, max_seq_len, dim])?;
        let half = dim / 2;
        let mut cos = Vec::new();
        let mut sin = Vec::new();
        cos.try_reserve_exact(max_seq_len * dim).map_err(|_| Error::arg("RotaryEmbedding", "table too large"))?;
        sin.try_reserve_exact(max_seq_len * dim).map_err(|_| Error::arg("RotaryEmbedding", "table too large"))?;
        for t in 0..max_seq_len {
            for j in 0..dim {
                let theta = base.powf(-2.0 * (j % half) as f64 / dim as f64);
                let a = t as f64 * theta;
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
        Ok(RotaryEmbedding {
            dim,
            max_seq_len,
            base,
            cos: Tensor::from_vec(cos, [max_seq_len, dim])?,
            sin: Tensor::from_vec(sin, [max_seq_len, dim])?,
        })
    }

    /// `cos` and `sin` for positions `start..start + len`, `[len, D]` in `dtype` on
    /// `device`.
    pub fn cos_sin(&self, start: usize, len: usize, dtype: DType, device: &Device) -> Result<(Tensor, Tensor)> {
        if start.checked_add(len).is_none_or(|end| end > self.max_seq_len) {
            return Err(Error::arg(
                "RotaryEmbedding",
                format!("positions {start}..{start}+{len} exceed max_seq_len {}", self.max_seq_len),
            ));
        }
        let part = |t: &Tensor| t.narrow(0, start as isize, len)?.to_dtype(dtype)?.to_device(device);
        Ok((part(&self.cos)?, part(&self.sin)?))
    }

    /// Applies the rotation to queries and keys `[..., T, D]` whose first position is
    /// `start` (non-zero when decoding with a cache).
    pub fn apply(&self, q: &Var, k: &Var, start: usize) -> Result<(Var, Var)> {
        let r = q.rank();
        if r < 2 || k.rank() < 2 {
            return Err(Error::shape(OP, q.dims(), k.dims(), "expected queries and keys [..., T, D]"));
        }
        let t = q.dims()[r - 2];
        let (cos, sin) = self.cos_sin(start, t, q.dtype(), q.device())?;
        let qr = apply_rotary_emb(q, &cos, &sin)?;
        let kt = k.dims()[k.rank() - 2];
        let kr = if kt == t {
            apply_rotary_emb(k, &cos, &sin)?
        } else {
            let (c, s) = self.cos_sin(start, kt, k.dtype(), k.device())?;
            apply_rotary_emb(k, &c, &s)?
        };
        Ok((qr, kr))
    }
}
