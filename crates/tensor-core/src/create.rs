//! Creating tensors: from Rust data, constants, ranges and random distributions.

use crate::cpu::HostBuffer;
use crate::dtype::Elem;
use crate::random::{try_vec, with_global, Generator};
use crate::{DType, Device, Error, Layout, Result, Scalar, Shape, Tensor};

/// The longest range `arange` builds (2^40 elements; far past any memory).
const MAX_RANGE_LEN: f64 = (1u64 << 40) as f64;

fn cpu_buffer_from_f64(v: Vec<f64>, dtype: DType) -> Result<HostBuffer> {
    let b = HostBuffer::F64(v);
    if dtype == DType::F64 {
        return Ok(b);
    }
    let l = Layout::contiguous([b.len()]);
    crate::cpu::cast_buffer(&b, &l, dtype)
}

fn on_device(buf: HostBuffer, shape: Shape, device: &Device) -> Result<Tensor> {
    let b = device.backend().upload(buf)?;
    Ok(Tensor::from_buffer(b, shape, device))
}

/// The number of elements of `dims`, or [`Error::InvalidShape`] naming `op` when
/// the product does not fit in `usize` (a shape with a 0 has no elements, whatever
/// its other sizes).
pub(crate) fn checked_numel(op: &'static str, dims: &[usize]) -> Result<usize> {
    if dims.contains(&0) {
        return Ok(0);
    }
    dims.iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| Error::invalid_shape(op, dims, "the number of elements does not fit in a 64-bit size"))
}

/// The number of elements of a `dims` tensor of `dtype`, or [`Error::InvalidShape`]
/// naming `op` when it or its size in bytes is beyond what any allocation can hold
/// (`isize::MAX` bytes). Sizes below that go on to the allocator, which reports
/// [`Error::OutOfMemory`] when it can't provide them.
pub(crate) fn checked_alloc(op: &'static str, dims: &[usize], dtype: DType) -> Result<usize> {
    let n = checked_numel(op, dims)?;
    if n.checked_mul(dtype.size_in_bytes()).is_none_or(|b| b > isize::MAX as usize) {
        return Err(Error::invalid_shape(
            op,
            dims,
            format!("{n} elements of {dtype} exceed the largest possible allocation ({} bytes)", isize::MAX),
        ));
    }
    Ok(n)
}

/// `a * b` for sizes, or [`Error::InvalidShape`] naming `op` (with the shape being
/// built, `dims`) on overflow.
pub(crate) fn mul_size(op: &'static str, dims: &[usize], a: usize, b: usize) -> Result<usize> {
    a.checked_mul(b).ok_or_else(|| Error::invalid_shape(op, dims, format!("size {a} * {b} overflows")))
}

/// `a + b` for sizes, or [`Error::InvalidShape`] naming `op` (with the shape being
/// built, `dims`) on overflow.
pub(crate) fn add_size(op: &'static str, dims: &[usize], a: usize, b: usize) -> Result<usize> {
    a.checked_add(b).ok_or_else(|| Error::invalid_shape(op, dims, format!("size {a} + {b} overflows")))
}

/// A host vector of `n` values `f(0), f(1), ..`, or [`Error::OutOfMemory`] when it
/// cannot be allocated.
pub(crate) fn try_collect<T>(n: usize, f: impl FnMut(usize) -> T) -> Result<Vec<T>> {
    let mut v = try_vec(n)?;
    v.extend((0..n).map(f));
    Ok(v)
}

impl Tensor {
    /// A CPU tensor owning `data`, with `shape` (its numel must match).
    ///
    /// ```
    /// use tensor_core::Tensor;
    /// let t = Tensor::from_vec(vec![1i64, 2, 3, 4, 5, 6], [2, 3])?;
    /// assert_eq!(t.dims(), &[2, 3]);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn from_vec<T: Elem>(data: Vec<T>, shape: impl Into<Shape>) -> Result<Tensor> {
        Tensor::from_cpu_buffer(T::wrap(data), shape)
    }

    /// A CPU tensor copied from a slice.
    pub fn from_slice<T: Elem>(data: &[T], shape: impl Into<Shape>) -> Result<Tensor> {
        Tensor::from_vec(data.to_vec(), shape)
    }

    /// A 1-D CPU tensor from a slice (PyTorch's `torch.tensor([..])`).
    pub fn new<T: Elem>(data: &[T]) -> Tensor {
        Tensor::from_cpu_buffer(T::wrap(data.to_vec()), [data.len()]).expect("numel matches by construction")
    }

    /// A 0-dim CPU tensor.
    pub fn scalar<T: Elem>(v: T) -> Tensor {
        Tensor::from_cpu_buffer(T::wrap(vec![v]), ()).expect("numel matches by construction")
    }

    /// A 0-dim tensor of `dtype` holding `v`, on `device`.
    ///
    /// Like `torch.tensor(v, dtype=..)`: an integer or bool `dtype` refuses a value it
    /// cannot hold (see [`Scalar::check_fits`]), a float `dtype` rounds it (1e39 as
    /// f32 is inf).
    pub fn scalar_on(v: impl Into<Scalar>, dtype: DType, device: &Device) -> Result<Tensor> {
        Tensor::scalar_operand("scalar_on", v.into(), dtype, device)
    }

    /// A 0-dim tensor of `dtype` holding `s`, as the scalar operand of the arithmetic
    /// op `op`: the value must fit an integer `dtype` (else an error naming `op`),
    /// while a float `dtype` takes it rounded (`1e39 * f32` is inf, like PyTorch).
    pub(crate) fn scalar_operand(op: &'static str, s: Scalar, dtype: DType, device: &Device) -> Result<Tensor> {
        if !dtype.is_float() {
            s.check_fits(op, dtype)?;
        }
        Tensor::fill_unchecked(Shape::new(&[]), s, dtype, device)
    }

    /// Moves (copies) the tensor to `device`; returns `self` when already there.
    pub fn to_device(&self, device: &Device) -> Result<Tensor> {
        if self.device() == device {
            return Ok(self.clone());
        }
        let host = self.to_cpu_buffer()?;
        on_device(host, self.shape().clone(), device)
    }

    /// A tensor of `shape` filled with `value`.
    ///
    /// Like PyTorch, a value that `dtype` cannot hold is an error, not a wrapped or
    /// saturated number: NaN, infinities or out-of-range values for an integer dtype
    /// (a float is truncated toward zero when in range; uint8 also takes integers
    /// down to -255, which wrap), finite values beyond the range of a float dtype.
    ///
    /// ```
    /// use tensor_core::{DType, Device, Tensor};
    /// assert!(Tensor::full([2], f64::NAN, DType::I64, &Device::cpu()).is_err());
    /// assert!(Tensor::full([2], 1e20, DType::I32, &Device::cpu()).is_err());
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn full(shape: impl Into<Shape>, value: impl Into<Scalar>, dtype: DType, device: &Device) -> Result<Tensor> {
        Tensor::full_named("full", shape.into(), value.into(), dtype, device)
    }

    /// [`Tensor::full`] reporting errors under the name `op`.
    fn full_named(op: &'static str, shape: Shape, value: Scalar, dtype: DType, device: &Device) -> Result<Tensor> {
        value.check_fits(op, dtype)?;
        checked_alloc(op, shape.dims(), dtype)?;
        Tensor::fill_unchecked(shape, value, dtype, device)
    }

    /// [`Tensor::full`] for a value already checked against `dtype` (or meant to be
    /// converted like an `as` cast).
    pub(crate) fn fill_unchecked(shape: Shape, value: Scalar, dtype: DType, device: &Device) -> Result<Tensor> {
        let numel = checked_alloc("full", shape.dims(), dtype)?;
        let mut buf = device.backend().zeros(dtype, numel)?;
        let zero = matches!(value, Scalar::F64(v) if v == 0.0 && v.is_sign_positive())
            || value == Scalar::I64(0)
            || value == Scalar::Bool(false);
        if !zero {
            device.backend().fill(&mut *buf, &Layout::contiguous(shape.clone()), value)?;
        }
        Ok(Tensor::from_buffer(buf, shape, device))
    }

    /// A tensor of zeros.
    ///
    /// ```
    /// use tensor_core::{DType, Device, Tensor};
    /// let z = Tensor::zeros([2, 3], DType::F32, &Device::cpu())?;
    /// assert_eq!(z.to_vec::<f32>()?, vec![0.0; 6]);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn zeros(shape: impl Into<Shape>, dtype: DType, device: &Device) -> Result<Tensor> {
        Tensor::full_named("zeros", shape.into(), Scalar::I64(0), dtype, device)
    }

    /// A tensor of ones.
    pub fn ones(shape: impl Into<Shape>, dtype: DType, device: &Device) -> Result<Tensor> {
        Tensor::full_named("ones", shape.into(), Scalar::I64(1), dtype, device)
    }

    /// Zeros with this tensor's shape, dtype and device.
    pub fn zeros_like(&self) -> Result<Tensor> {
        Tensor::full_named("zeros_like", self.shape().clone(), Scalar::I64(0), self.dtype(), self.device())
    }

    /// Ones with this tensor's shape, dtype and device.
    pub fn ones_like(&self) -> Result<Tensor> {
        Tensor::full_named("ones_like", self.shape().clone(), Scalar::I64(1), self.dtype(), self.device())
    }

    /// `value` with this tensor's shape, dtype and device.
    pub fn full_like(&self, value: impl Into<Scalar>) -> Result<Tensor> {
        Tensor::full_named("full_like", self.shape().clone(), value.into(), self.dtype(), self.device())
    }

    /// `[start, start + step, ...)` up to `end` (exclusive), like `torch.arange`.
    pub fn arange(start: f64, end: f64, step: f64, dtype: DType, device: &Device) -> Result<Tensor> {
        if step == 0.0 || !step.is_finite() || !start.is_finite() || !end.is_finite() {
            return Err(Error::arg("arange", format!("invalid range start={start} end={end} step={step}")));
        }
        if (end - start) * step < 0.0 {
            return Err(Error::arg("arange", "upper bound and larger bound inconsistent with step sign"));
        }
        let n = ((end - start) / step).ceil().max(0.0);
        if n.is_nan() || n >= MAX_RANGE_LEN {
            return Err(Error::arg(
                "arange",
                format!("range start={start} end={end} step={step} has too many elements"),
            ));
        }
        let n = n as usize;
        let v = try_collect(n, |i| start + i as f64 * step)?;
        on_device(cpu_buffer_from_f64(v, dtype)?, Shape::new(&[n]), device)
    }

    /// `steps` evenly spaced values from `start` to `end` inclusive.
    pub fn linspace(start: f64, end: f64, steps: usize, dtype: DType, device: &Device) -> Result<Tensor> {
        let v = if steps == 1 {
            vec![start]
        } else {
            let step = (end - start) / (steps as f64 - 1.0);
            // Like PyTorch, fill symmetric halves from both ends for exact endpoints.
            try_collect(steps, |i| {
                if i < steps / 2 {
                    start + step * i as f64
                } else {
                    end - step * (steps - 1 - i) as f64
                }
            })?
        };
        on_device(cpu_buffer_from_f64(v, dtype)?, Shape::new(&[steps]), device)
    }

    /// The `n x m` identity matrix (ones on the diagonal).
    pub fn eye(n: usize, m: usize, dtype: DType, device: &Device) -> Result<Tensor> {
        let numel = checked_alloc("eye", &[n, m], dtype)?;
        let out = Tensor::zeros([n, m], dtype, device)?;
        if numel > 0 {
            // The diagonal is a strided view with step m + 1 through the flat storage.
            let diag = Layout::new(Shape::new(&[n.min(m)]), smallvec::smallvec![m + 1], 0);
            let mut b = out.storage().write();
            device.backend().fill(&mut **b, &diag, Scalar::I64(1))?;
        }
        Ok(out)
    }

    /// Uniform values in `[low, high)` from the global generator.
    pub fn uniform(shape: impl Into<Shape>, low: f64, high: f64, dtype: DType, device: &Device) -> Result<Tensor> {
        with_global(|g| Tensor::uniform_with(g, shape, low, high, dtype, device))
    }

    /// Uniform values in `[low, high)` from an explicit generator.
    pub fn uniform_with(
        g: &mut Generator,
        shape: impl Into<Shape>,
        low: f64,
        high: f64,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let shape = shape.into();
        float_only("uniform", dtype)?;
        if low.is_nan() || high.is_nan() || low > high {
            return Err(Error::arg("uniform", format!("expected low <= high, got low={low} high={high}")));
        }
        // Keep only as many random bits as the dtype's significand holds, so that a
        // draw just below 1 can't round up to 1 (`rand` stays in [0, 1) in f16/f32).
        let bits = match dtype {
            DType::BF16 => 8,
            DType::F16 => 11,
            DType::F32 => 24,
            _ => 53,
        };
        let scale = (1u64 << bits) as f64;
        let v = g
            .try_uniform_f64(checked_numel("uniform", shape.dims())?)?
            .into_iter()
            .map(|u| low + (high - low) * ((u * scale).floor() / scale))
            .collect();
        on_device(cpu_buffer_from_f64(v, dtype)?, shape, device)
    }

    /// Uniform values in `[0, 1)` (PyTorch's `torch.rand`).
    pub fn rand(shape: impl Into<Shape>, dtype: DType, device: &Device) -> Result<Tensor> {
        Tensor::uniform(shape, 0.0, 1.0, dtype, device)
    }

    /// Standard normal values (PyTorch's `torch.randn`).
    pub fn randn(shape: impl Into<Shape>, dtype: DType, device: &Device) -> Result<Tensor> {
        Tensor::normal(shape, 0.0, 1.0, dtype, device)
    }

    /// Normal values with this mean and standard deviation from the global generator.
    pub fn normal(shape: impl Into<Shape>, mean: f64, std: f64, dtype: DType, device: &Device) -> Result<Tensor> {
        with_global(|g| Tensor::normal_with(g, shape, mean, std, dtype, device))
    }

    /// Normal values from an explicit generator.
    pub fn normal_with(
        g: &mut Generator,
        shape: impl Into<Shape>,
        mean: f64,
        std: f64,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let shape = shape.into();
        float_only("normal", dtype)?;
        if std.is_nan() || std < 0.0 {
            return Err(Error::arg("normal", format!("expected std >= 0, got {std}")));
        }
        let v = g.try_normal_f64(checked_numel("normal", shape.dims())?)?.into_iter().map(|z| mean + std * z).collect();
        on_device(cpu_buffer_from_f64(v, dtype)?, shape, device)
    }

    /// Draws 1 with probability `p` (per element of `self`, which holds
    /// probabilities), else 0, in `self`'s dtype (PyTorch's `torch.bernoulli`).
    pub fn bernoulli(&self) -> Result<Tensor> {
        with_global(|g| self.bernoulli_with(g))
    }

    /// [`Tensor::bernoulli`] with an explicit generator.
    pub fn bernoulli_with(&self, g: &mut Generator) -> Result<Tensor> {
        float_only("bernoulli", self.dtype())?;
        let p = self.to_vec_f64()?;
        if let Some(bad) = p.iter().find(|x| !(0.0..=1.0).contains(*x)) {
            return Err(Error::arg("bernoulli", format!("expected probabilities in [0, 1], got {bad}")));
        }
        let u = g.try_uniform_f64(p.len())?;
        let v = p.iter().zip(u).map(|(p, u)| if u < *p { 1.0 } else { 0.0 }).collect();
        on_device(cpu_buffer_from_f64(v, self.dtype())?, self.shape().clone(), self.device())
    }

    /// Bernoulli(p) samples of one probability for a whole shape.
    pub fn bernoulli_p(shape: impl Into<Shape>, p: f64, dtype: DType, device: &Device) -> Result<Tensor> {
        if !(0.0..=1.0).contains(&p) {
            return Err(Error::arg("bernoulli", format!("expected a probability in [0, 1], got {p}")));
        }
        let shape = shape.into();
        let n = checked_numel("bernoulli", shape.dims())?;
        let u = with_global(|g| g.try_uniform_f64(n))?;
        let v = u.into_iter().map(|u| if u < p { 1.0 } else { 0.0 }).collect();
        on_device(cpu_buffer_from_f64(v, dtype)?, shape, device)
    }

    /// Uniform integers in `[low, high)` (PyTorch's `torch.randint`).
    pub fn randint(low: i64, high: i64, shape: impl Into<Shape>, dtype: DType, device: &Device) -> Result<Tensor> {
        if high <= low {
            return Err(Error::arg("randint", format!("expected low < high, got low={low} high={high}")));
        }
        let shape = shape.into();
        // `high - low` may exceed i64::MAX; it always fits in u64.
        let span = high.wrapping_sub(low) as u64;
        let n = checked_numel("randint", shape.dims())?;
        let v = with_global(|g| try_collect(n, |_| low.wrapping_add(g.below(span) as i64)))?;
        let b = HostBuffer::I64(v);
        let b =
            if dtype == DType::I64 { b } else { crate::cpu::cast_buffer(&b, &Layout::contiguous([b.len()]), dtype)? };
        on_device(b, shape, device)
    }

    /// A random permutation of `0..n` as I64 (PyTorch's `torch.randperm`).
    pub fn randperm(n: usize, device: &Device) -> Result<Tensor> {
        if i64::try_from(n).is_err() {
            return Err(Error::arg("randperm", format!("n must fit in int64, got {n}")));
        }
        let p = with_global(|g| g.try_permutation_i64(n))?;
        on_device(HostBuffer::I64(p), Shape::new(&[n]), device)
    }
}

/// The I64 tensor `[0, 1, .., n - 1]` (or its reverse) on `device`: the index
/// ranges composite ops build, without `arange`'s float steps and length cap (a
/// huge `n` is an [`Error::OutOfMemory`], not an `arange` error).
pub(crate) fn index_range(n: usize, reversed: bool, device: &Device) -> Result<Tensor> {
    let v = try_collect(n, |i| if reversed { (n - 1 - i) as i64 } else { i as i64 })?;
    on_device(HostBuffer::I64(v), Shape::new(&[n]), device)
}

fn float_only(op: &'static str, dtype: DType) -> Result<()> {
    if dtype.is_float() {
        Ok(())
    } else {
        Err(Error::Unsupported { op, dtype, device: "any".into() })
    }
}
