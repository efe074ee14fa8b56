//! Matrix products: `matmul` in all its ranks (and `mm`, `bmm`, `mv`, `dot`, `outer`).

use tensor_core::{Result, Tensor};

use crate::var::Var;

/// Gradients of `a @ b` (PyTorch's matmul rules) given the output gradient `g`.
/// Batch dims come back broadcast; the engine sums them to each input's shape.
fn matmul_grads(a: &Var, b: &Var, g: &Var, n: &[bool]) -> Result<(Option<Var>, Option<Var>)> {
    let (ra, rb) = (a.rank(), b.rank());
    let a2 = if ra == 1 { a.unsqueeze(0)? } else { a.clone() };
    let b2 = if rb == 1 { b.unsqueeze(1)? } else { b.clone() };
    let mut g2 = g.clone();
    if rb == 1 {
        g2 = g2.unsqueeze(-1)?;
    }
    if ra == 1 {
        g2 = g2.unsqueeze(-2)?;
    }
    // A 2-D operand stored transposed (`x @ w.t()`, as in a linear layer) gets its
    // gradient computed as the transpose of a contiguous product, laid out like the
    // operand (PyTorch does the same): a leaf behind the transpose then receives a
    // contiguous gradient it can keep without a strided copy.
    let ga = if n[0] {
        let ga = if ra == 2 && rb == 2 && col_major(a) { b2.matmul(&g2.mt()?)?.mt()? } else { g2.matmul(&b2.mt()?)? };
        Some(if ra == 1 { ga.squeeze(-2)? } else { ga })
    } else {
        None
    };
    let gb = if n[1] {
        // A 2-D `b` broadcast against a batched `a` (a linear layer on `[B, T, K]`): the
        // batch folds into one GEMM over `B * T` rows, instead of a product per batch
        // element summed afterwards.
        let (a2, g2) = if ra >= 3 && rb == 2 {
            let rows = a2.dims()[..ra - 1].iter().product::<usize>() as isize;
            let k = a2.dims()[ra - 1] as isize;
            let nn = g2.dims()[g2.rank() - 1] as isize;
            (a2.reshape(&[rows, k])?, g2.reshape(&[rows, nn])?)
        } else {
            (a2, g2.clone())
        };
        let flat = a2.rank() == 2;
        let gb = if flat && rb == 2 && col_major(b) { g2.mt()?.matmul(&a2)?.mt()? } else { a2.mt()?.matmul(&g2)? };
        Some(if rb == 1 { gb.squeeze(-1)? } else { gb })
    } else {
        None
    };
    Ok((ga, gb))
}

/// True for a 2-D view that is the transpose of a contiguous matrix (and not itself
/// contiguous).
fn col_major(v: &Var) -> bool {
    let l = v.tensor().layout();
    !l.is_contiguous() && l.strides()[0] == 1 && l.strides()[1] == l.dims()[0]
}

impl Var {
    fn matmul_like(&self, other: &Var, name: &'static str, out: Tensor) -> Var {
        self.record_binary(other, name, out, matmul_grads)
    }

    /// Matrix product with PyTorch's rules (1-D operands, broadcast batch dims).
    ///
    /// ```
    /// use autograd::Var;
    /// use tensor_core::Tensor;
    /// let a = Var::param(Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], [2, 2])?)?;
    /// let b = Var::from(Tensor::from_vec(vec![1.0f64, 0.0, 0.0, 1.0], [2, 2])?);
    /// a.matmul(&b)?.sum(&[], false)?.backward()?;
    /// assert_eq!(a.grad().unwrap().to_vec::<f64>()?, vec![1.0; 4]);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn matmul(&self, other: &Var) -> Result<Var> {
        let out = self.tensor().matmul(other.tensor())?;
        Ok(self.matmul_like(other, "matmul", out))
    }

    /// 2-D matrix product.
    pub fn mm(&self, other: &Var) -> Result<Var> {
        let out = self.tensor().mm(other.tensor())?;
        Ok(self.matmul_like(other, "mm", out))
    }

    /// Batched matrix product of 3-D tensors.
    pub fn bmm(&self, other: &Var) -> Result<Var> {
        let out = self.tensor().bmm(other.tensor())?;
        Ok(self.matmul_like(other, "bmm", out))
    }

    /// Matrix-vector product.
    pub fn mv(&self, v: &Var) -> Result<Var> {
        let out = self.tensor().mv(v.tensor())?;
        Ok(self.matmul_like(v, "mv", out))
    }

    /// Dot product of two 1-D tensors.
    pub fn dot(&self, other: &Var) -> Result<Var> {
        let out = self.tensor().dot(other.tensor())?;
        Ok(self.matmul_like(other, "dot", out))
    }

    /// Outer product of two 1-D tensors.
    pub fn outer(&self, other: &Var) -> Result<Var> {
        if self.rank() != 1 || other.rank() != 1 {
            return Err(tensor_core::Error::shape("outer", self.dims(), other.dims(), "expected two 1D tensors"));
        }
        self.unsqueeze(1)?.mul(&other.unsqueeze(0)?)
    }
}
