//! Embedding lookup tables.

use autograd::Var;
use tensor_core::{DType, Device, Error, Result, Tensor};

use crate::module::{Forward, Module, Param, Visitor};

/// A table of `num_embeddings` vectors of size `embedding_dim`, looked up by I64
/// indices: `[*] -> [*, embedding_dim]`. Starts as `N(0, 1)`.
///
/// With `padding_idx`, that row starts at zero and never receives a gradient.
///
/// With [`max_norm`](Embedding::with_max_norm), as PyTorch's `max_norm`/`norm_type`,
/// each forward first rescales in place (outside autograd) every looked-up row whose
/// `norm_type`-norm exceeds `max_norm` to norm `max_norm` (times `max_norm / (norm +
/// 1e-7)`, exactly as PyTorch's `embedding_renorm_`), so the table itself changes.
///
/// ```
/// use autograd::Var;
/// use nn::{Embedding, Forward};
/// use tensor_core::Tensor;
/// let emb = Embedding::new(10, 3, Some(0))?;
/// let y = emb.forward(&Var::from(Tensor::new(&[0i64, 4, 0])))?;
/// assert_eq!(y.dims(), &[3, 3]);
/// assert_eq!(y.tensor().select(0, 0)?.to_vec::<f32>()?, vec![0.0; 3]);
/// # Ok::<(), tensor_core::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Embedding {
    /// `[num_embeddings, embedding_dim]`.
    pub weight: Param,
    /// The row that stays zero and gets no gradient.
    pub padding_idx: Option<usize>,
    /// Rows looked up are renormalised to at most this norm (see the type's docs).
    pub max_norm: Option<f64>,
    /// The `p` of the norm `max_norm` bounds (2 by default; `f64::INFINITY` for the
    /// largest magnitude).
    pub norm_type: f64,
}

impl Embedding {
    /// A table with `N(0, 1)` rows (the `padding_idx` row zero).
    pub fn new(num_embeddings: usize, embedding_dim: usize, padding_idx: Option<usize>) -> Result<Embedding> {
        if let Some(p) = padding_idx {
            if p >= num_embeddings {
                return Err(Error::arg(
                    "Embedding",
                    format!("padding_idx {p} must be within num_embeddings ({num_embeddings})"),
                ));
            }
        }
        super::check_size(&[num_embeddings, embedding_dim])?;
        let w = Tensor::randn([num_embeddings, embedding_dim], DType::F32, &Device::cpu())?;
        if let Some(p) = padding_idx {
            w.narrow(0, p as isize, 1)?.fill_(0.0)?;
        }
        Ok(Embedding { weight: Param::new(super::place(w, true)?)?, padding_idx, max_norm: None, norm_type: 2.0 })
    }

    /// Bounds the norm of each looked-up row, as PyTorch's `Embedding(..., max_norm,
    /// norm_type)`. `max_norm` must be a non-negative number and `norm_type` positive
    /// (infinity allowed).
    ///
    /// ```
    /// use autograd::Var;
    /// use nn::{Embedding, Forward};
    /// use tensor_core::Tensor;
    /// let emb = Embedding::new(4, 3, None)?.with_max_norm(1.0, 2.0)?;
    /// emb.weight.tensor().fill_(2.0)?;
    /// emb.forward(&Var::from(Tensor::new(&[1i64, 1])))?;
    /// let row = emb.weight.tensor().select(0, 1)?.to_vec::<f32>()?;
    /// let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
    /// assert!((norm - 1.0).abs() < 1e-5);
    /// // Rows not looked up are left alone.
    /// assert_eq!(emb.weight.tensor().select(0, 0)?.to_vec::<f32>()?, vec![2.0; 3]);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn with_max_norm(mut self, max_norm: f64, norm_type: f64) -> Result<Embedding> {
        if max_norm.is_nan() || max_norm < 0.0 || norm_type.is_nan() || norm_type <= 0.0 {
            return Err(Error::arg(
                "Embedding",
                format!("max_norm ({max_norm}) must be >= 0 and norm_type ({norm_type}) > 0"),
            ));
        }
        self.max_norm = Some(max_norm);
        self.norm_type = norm_type;
        Ok(self)
    }

    /// PyTorch's `embedding_renorm_`: the rows of `idx` with a norm above `max_norm`
    /// scaled in place by `max_norm / (norm + 1e-7)`.
    fn renorm(&self, idx: &Tensor, max_norm: f64) -> Result<()> {
        let w = self.weight.tensor();
        let (n, d) = (self.num_embeddings(), self.embedding_dim());
        let mut ids = idx.to_dtype(DType::I64)?.to_vec::<i64>()?;
        ids.sort_unstable();
        ids.dedup();
        if let Some(&bad) = ids.iter().find(|&&i| i < 0 || i as u64 >= n as u64) {
            return Err(Error::IndexOutOfRange { op: "Embedding", index: bad, dim: 0, size: n });
        }
        let dev = w.device().clone();
        let uniq = Tensor::from_vec(ids.clone(), [ids.len()])?.to_device(&dev)?;
        let norms = w.index_select(0, &uniq)?.norm(self.norm_type, &[1], false)?.to_dtype(DType::F64)?;
        let (mut rows, mut scales) = (Vec::new(), Vec::new());
        for (&i, &nv) in ids.iter().zip(&norms.to_vec::<f64>()?) {
            if nv > max_norm {
                rows.push(i);
                scales.push(max_norm / (nv + 1e-7));
            }
        }
        if rows.is_empty() {
            return Ok(());
        }
        let k = rows.len();
        let sel = Tensor::from_vec(rows, [k])?.to_device(&dev)?;
        let scaled = w.index_select(0, &sel)?;
        scaled.mul_(&Tensor::from_vec(scales, [k, 1])?.to_dtype(w.dtype())?.to_device(&dev)?)?;
        let at = sel.unsqueeze(1)?.expand(&[k as isize, d as isize])?.contiguous()?;
        w.scatter_(0, &at, &scaled)
    }

    /// Number of rows.
    pub fn num_embeddings(&self) -> usize {
        self.weight.dims()[0]
    }

    /// Size of each row.
    pub fn embedding_dim(&self) -> usize {
        self.weight.dims()[1]
    }
}

impl Module for Embedding {
    fn visit(&self, v: &mut dyn Visitor) {
        v.param("weight", &self.weight);
    }
}

impl Forward for Embedding {
    /// `x` holds I64 (or I32) indices.
    fn forward(&self, x: &Var) -> Result<Var> {
        let idx = x.tensor();
        if !matches!(idx.dtype(), DType::I64 | DType::I32) {
            return Err(Error::DTypeMismatch { op: "Embedding", expected: DType::I64, got: idx.dtype() });
        }
        if let Some(m) = self.max_norm {
            // Checked before the table changes, as the lookup would check it after.
            if idx.device() != self.weight.tensor().device() {
                return Err(Error::DeviceMismatch {
                    op: "Embedding",
                    lhs: self.weight.tensor().device().to_string(),
                    rhs: idx.device().to_string(),
                });
            }
            self.renorm(idx, m)?;
        }
        self.weight.var().embedding(idx, self.padding_idx)
    }
}
