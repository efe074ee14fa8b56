//! Embedding lookup tables.

use autograd::Var;
use tensor_core::{DType, Device, Error, Result, Tensor};

use crate::module::{Forward, Module, Param, Visitor};

/// A table of `num_embeddings` vectors of size `embedding_dim`, looked up by I64
/// indices: `[*] -> [*, embedding_dim]`. Starts as `N(0, 1)`.
///
/// With `padding_idx`, that row starts at zero and never receives a gradient.
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
        Ok(Embedding { weight: Param::new(super::place(w, true)?)?, padding_idx })
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
        self.weight.var().embedding(idx, self.padding_idx)
    }
}
