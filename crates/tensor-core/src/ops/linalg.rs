//! Matrix products with PyTorch's `matmul` semantics on the backend's GEMM.

use crate::shape::broadcast_shapes;
use crate::{DType, Error, Result, Tensor};

impl Tensor {
    /// Matrix product with PyTorch's rules: 1-D x 1-D is a dot product, 1-D operands
    /// get a dim prepended/appended and removed again, batch dims broadcast.
    /// Transposed views are passed to the GEMM as strides, never copied. Both operands
    /// must have the same dtype (like PyTorch; bool is not supported); integers
    /// multiply exactly with wrapping.
    ///
    /// ```
    /// use tensor_core::Tensor;
    /// let a = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], [2, 2])?;
    /// let b = a.matmul(&a.t()?)?;
    /// assert_eq!(b.to_vec2::<f32>()?, vec![vec![5.0, 11.0], vec![11.0, 25.0]]);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn matmul(&self, other: &Tensor) -> Result<Tensor> {
        matmul_impl("matmul", self, other)
    }

    /// Batched matrix product of two 3-D tensors `[b, n, m] x [b, m, p]`.
    pub fn bmm(&self, other: &Tensor) -> Result<Tensor> {
        if self.rank() != 3 || other.rank() != 3 {
            return Err(Error::shape("bmm", self.dims(), other.dims(), "batch1 and batch2 must be 3D tensors"));
        }
        if self.dims()[0] != other.dims()[0] {
            return Err(Error::shape("bmm", self.dims(), other.dims(), "batch sizes must match"));
        }
        matmul_impl("bmm", self, other)
    }

    /// 2-D matrix product (`torch.mm`).
    pub fn mm(&self, other: &Tensor) -> Result<Tensor> {
        if self.rank() != 2 || other.rank() != 2 {
            return Err(Error::shape("mm", self.dims(), other.dims(), "both arguments must be 2D"));
        }
        matmul_impl("mm", self, other)
    }

    /// Matrix-vector product (`torch.mv`).
    pub fn mv(&self, v: &Tensor) -> Result<Tensor> {
        if self.rank() != 2 || v.rank() != 1 {
            return Err(Error::shape("mv", self.dims(), v.dims(), "expected a 2D matrix and a 1D vector"));
        }
        matmul_impl("mv", self, v)
    }

    /// Dot product of two 1-D tensors of equal length.
    pub fn dot(&self, other: &Tensor) -> Result<Tensor> {
        if self.rank() != 1 || other.rank() != 1 || self.dims() != other.dims() {
            return Err(Error::shape("dot", self.dims(), other.dims(), "expected two 1D tensors of the same length"));
        }
        matmul_impl("dot", self, other)
    }

    /// Outer product of two 1-D tensors.
    pub fn outer(&self, other: &Tensor) -> Result<Tensor> {
        if self.rank() != 1 || other.rank() != 1 {
            return Err(Error::shape("outer", self.dims(), other.dims(), "expected two 1D tensors"));
        }
        self.unsqueeze(1)?.mul(&other.unsqueeze(0)?)
    }
}

/// Views `t` (shape `batch.. x r x c`) as `[nb, r, c]`, copying only if the batch
/// dims cannot be merged.
fn collapse_batch(t: &Tensor, nb: usize, r: usize, c: usize) -> Result<(Tensor, crate::Layout)> {
    let l = t.layout();
    let rank = l.rank();
    let bd = &l.dims()[..rank - 2];
    let bs = &l.strides()[..rank - 2];
    // find a single stride for the flattened batch
    let mut ok = true;
    let mut stride = 0usize;
    let nontrivial: Vec<(usize, usize)> = bd.iter().zip(bs).filter(|(d, _)| **d != 1).map(|(d, s)| (*d, *s)).collect();
    if let Some(&(_, s_last)) = nontrivial.last() {
        stride = s_last;
        for w in nontrivial.windows(2) {
            if w[0].1 != w[1].1 * w[1].0 {
                ok = false;
            }
        }
    }
    if ok {
        let nl = l.as_strided(&[nb, r, c], &[stride, l.strides()[rank - 2], l.strides()[rank - 1]], l.offset());
        return Ok((t.clone(), nl));
    }
    let tc = t.contiguous()?;
    let nl = crate::Layout::contiguous([nb, r, c]);
    Ok((tc, nl))
}

/// [`Tensor::matmul`], reporting errors under the name `op`.
fn matmul_impl(op: &'static str, this: &Tensor, other: &Tensor) -> Result<Tensor> {
    this.same_device(op, other)?;
    let (ra, rb) = (this.rank(), other.rank());
    if ra == 0 || rb == 0 {
        return Err(Error::shape(op, this.dims(), other.dims(), "both arguments to matmul need to be at least 1D"));
    }
    if this.dtype() != other.dtype() {
        return Err(Error::DTypeMismatch { op, expected: this.dtype(), got: other.dtype() });
    }
    if this.dtype() == DType::Bool {
        return Err(Error::Unsupported { op, dtype: DType::Bool, device: this.device().to_string() });
    }
    let a2 = if ra == 1 { this.unsqueeze(0)? } else { this.clone() };
    let b2 = if rb == 1 { other.unsqueeze(1)? } else { other.clone() };
    let (m, k) = (a2.dims()[a2.rank() - 2], a2.dims()[a2.rank() - 1]);
    let (k2, n) = (b2.dims()[b2.rank() - 2], b2.dims()[b2.rank() - 1]);
    if k != k2 {
        return Err(Error::shape(op, this.dims(), other.dims(), format!("cannot multiply {m}x{k} by {k2}x{n}")));
    }
    let batch_a = &a2.dims()[..a2.rank() - 2];
    let batch_b = &b2.dims()[..b2.rank() - 2];
    let batch = broadcast_shapes(op, batch_a, batch_b)?;
    let nb: usize = batch.numel();
    let mut sa = batch.dims().to_vec();
    sa.extend([m, k]);
    let mut sb = batch.dims().to_vec();
    sb.extend([k, n]);
    let la = a2.layout().broadcast_to(&sa)?;
    let lb = b2.layout().broadcast_to(&sb)?;
    // Collapse batch dims into one: possible as a view when the batch strides
    // are mergeable; otherwise copy that operand.
    let (a3, la3) = collapse_batch(&a2.with_layout(la), nb, m, k)?;
    let (b3, lb3) = collapse_batch(&b2.with_layout(lb), nb, k, n)?;
    // A right operand shared by every batch element (a linear layer's weight against
    // `[B, T, K]`) with the left's rows evenly spaced across batches: one GEMM over
    // `nb * m` rows instead of `nb` small ones.
    let (sa3, sb3) = (la3.strides(), lb3.strides());
    let out = if nb > 1 && sb3[0] == 0 && m > 0 && sa3[0] == m * sa3[1] {
        let la1 = la3.as_strided(&[1, nb * m, k], &[0, sa3[1], sa3[2]], la3.offset());
        let lb1 = lb3.as_strided(&[1, k, n], &[0, sb3[1], sb3[2]], lb3.offset());
        a3.run2(&b3, [1, nb * m, n], |be, x, _, y, _| be.matmul(x, &la1, y, &lb1))?.reshape_to([nb, m, n])?
    } else {
        a3.run2(&b3, [nb, m, n], |be, x, _, y, _| be.matmul(x, &la3, y, &lb3))?
    };
    let mut final_shape: Vec<usize> = batch.dims().to_vec();
    if ra > 1 {
        final_shape.push(m);
    }
    if rb > 1 {
        final_shape.push(n);
    }
    out.reshape_to(final_shape)
}
