//! In-place ops: they write through the storage lock and bump its version counter.

use crate::backend::BinaryOp;
use crate::shape::same_dims;
use crate::{DType, Error, Layout, Result, Scalar, Tensor};

impl Tensor {
    /// Fails when this view overlaps itself (a broadcast view), which an in-place
    /// write would make ambiguous.
    fn check_writable(&self, op: &'static str) -> Result<()> {
        if self.strides().iter().zip(self.dims()).any(|(&s, &d)| s == 0 && d > 1) {
            return Err(Error::arg(
                op,
                "unsupported operation: more than one element of the written-to tensor refers to a single memory location; clone() it first",
            ));
        }
        Ok(())
    }

    /// `self op= other` in place, `other` broadcast to `self`'s shape and cast to
    /// `self`'s dtype.
    pub fn binary_(&self, op: BinaryOp, other: &Tensor) -> Result<()> {
        let name = op.name();
        self.same_device(name, other)?;
        self.check_writable(name)?;
        if other.dtype() == self.dtype() && same_dims(other.dims(), self.dims()) && !other.same_storage(self) {
            // Nothing to broadcast, cast or copy (the hot case: gradient accumulation).
            check_result_dtype(op, self.dtype(), self.dtype())?;
            return self.binary_from(op, other, other.layout());
        }
        let rhs_layout = other.layout().broadcast_to(self.dims()).map_err(|_| {
            Error::shape(
                name,
                self.dims(),
                other.dims(),
                "the right operand must broadcast to the in-place tensor's shape",
            )
        })?;
        check_result_dtype(op, self.dtype(), DType::promote(self.dtype(), other.dtype()))?;
        let mut src = other.to_dtype(self.dtype())?;
        let mut rhs_layout =
            if src.same_storage(other) { rhs_layout } else { src.layout().broadcast_to(self.dims())? };
        if src.same_storage(self) {
            // Reading and writing one storage: read from a copy.
            src = src.copy()?;
            rhs_layout = src.layout().broadcast_to(self.dims())?;
        }
        self.binary_from(op, &src, &rhs_layout)
    }

    /// The write of [`Tensor::binary_`]: `src` (viewed through `rhs_layout`, which has this
    /// tensor's shape) has this tensor's dtype and does not share its storage.
    fn binary_from(&self, op: BinaryOp, src: &Tensor, rhs_layout: &Layout) -> Result<()> {
        let (mut d, g) = crate::Storage::write_read(self.storage(), src.storage());
        self.device().backend().binary_inplace(op, &mut **d, self.layout(), &**g, rhs_layout)
    }

    /// In-place `self += other`.
    pub fn add_(&self, other: &Tensor) -> Result<()> {
        self.binary_(BinaryOp::Add, other)
    }

    /// In-place `self -= other`.
    pub fn sub_(&self, other: &Tensor) -> Result<()> {
        self.binary_(BinaryOp::Sub, other)
    }

    /// In-place `self *= other`.
    pub fn mul_(&self, other: &Tensor) -> Result<()> {
        self.binary_(BinaryOp::Mul, other)
    }

    /// In-place `self /= other`.
    pub fn div_(&self, other: &Tensor) -> Result<()> {
        self.binary_(BinaryOp::Div, other)
    }

    /// `self op= s` in place; fails when the scalar would promote the result past
    /// `self`'s dtype (an integer tensor times 0.5), like PyTorch.
    fn binary_scalar_(&self, op: BinaryOp, s: Scalar) -> Result<()> {
        check_result_dtype(op, self.dtype(), s.promote_with(self.dtype()))?;
        self.binary_(op, &Tensor::scalar_on(s, self.dtype(), self.device())?)
    }

    /// In-place `self += s`.
    pub fn add_scalar_(&self, s: impl Into<Scalar>) -> Result<()> {
        self.binary_scalar_(BinaryOp::Add, s.into())
    }

    /// In-place `self *= s`.
    pub fn mul_scalar_(&self, s: impl Into<Scalar>) -> Result<()> {
        self.binary_scalar_(BinaryOp::Mul, s.into())
    }

    /// Copies `src` (broadcast to `self`'s shape, cast to `self`'s dtype) into this
    /// view, e.g. a narrow/slice of a larger tensor.
    ///
    /// ```
    /// use tensor_core::{DType, Device, Tensor};
    /// let t = Tensor::zeros([2, 3], DType::F32, &Device::cpu())?;
    /// t.narrow(1, 1, 2)?.copy_(&Tensor::new(&[5.0f32, 6.0]))?;
    /// assert_eq!(t.to_vec::<f32>()?, vec![0.0, 5.0, 6.0, 0.0, 5.0, 6.0]);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn copy_(&self, src: &Tensor) -> Result<()> {
        self.same_device("copy_", src)?;
        self.check_writable("copy_")?;
        let mut s = src.to_dtype(self.dtype())?;
        if s.same_storage(self) {
            s = s.copy()?;
        }
        let src_layout = s.layout().broadcast_to(self.dims()).map_err(|_| {
            Error::shape("copy_", self.dims(), src.dims(), "the source must broadcast to the destination's shape")
        })?;
        if self.numel() == 0 {
            // Nothing to copy; an empty view may point past the end of its storage.
            return Ok(());
        }
        let (mut d, g) = crate::Storage::write_read(self.storage(), s.storage());
        self.device().backend().copy_strided(&**g, &src_layout, &mut **d, self.layout())
    }

    /// Writes `value` into every element of this view.
    pub fn fill_(&self, value: impl Into<Scalar>) -> Result<()> {
        self.check_writable("fill_")?;
        let value = value.into();
        value.check_fits("fill_", self.dtype())?;
        let mut d = self.storage().write();
        self.device().backend().fill(&mut **d, self.layout(), value)
    }

    /// Writes zeros into this view.
    pub fn zero_(&self) -> Result<()> {
        self.fill_(0i64)
    }

    /// Clamps in place.
    pub fn clamp_(&self, min: Option<f64>, max: Option<f64>) -> Result<()> {
        let c = self.clamp(min, max)?;
        self.copy_(&c)
    }

    /// Applies `f` to this view and writes the result back (for in-place variants of
    /// any out-of-place op).
    pub fn apply_(&self, f: impl FnOnce(&Tensor) -> Result<Tensor>) -> Result<()> {
        let r = f(self)?;
        self.copy_(&r)
    }

    /// Writes `src` into the region `[start, start + src.size(dim))` of dim `dim`
    /// (slice assignment, `t[.., a:b, ..] = src`).
    pub fn slice_assign(&self, dim: isize, start: isize, src: &Tensor) -> Result<()> {
        let d = self.layout().dim("slice_assign", dim)?;
        let len = if src.rank() == self.rank() { src.dims()[d] } else { 1 };
        self.narrow(dim, start, len)?.copy_(src)
    }

    /// A contiguous layout of this tensor's shape (helper for backend callers).
    pub fn contiguous_layout(&self) -> Layout {
        Layout::contiguous(self.shape().clone())
    }
}

/// Fails when `promoted` (the type PyTorch would compute `dst op src` in) can't be
/// stored back into `dst` without changing category: an integer tensor can't take a
/// float result, a bool tensor an integer one, and true division needs a float `dst`.
fn check_result_dtype(op: BinaryOp, dst: DType, promoted: DType) -> Result<()> {
    let category = |d: DType| {
        if d == DType::Bool {
            0
        } else if d.is_float() {
            2
        } else {
            1
        }
    };
    let result = if op == BinaryOp::Div && !promoted.is_float() { DType::F32 } else { promoted };
    if category(result) > category(dst) {
        return Err(Error::arg(
            op.name(),
            format!("result type {result} can't be cast to the desired output type {dst} of an in-place op"),
        ));
    }
    Ok(())
}
