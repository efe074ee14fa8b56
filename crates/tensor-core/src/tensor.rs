//! [`Tensor`]: the untyped n-d array handle, its accessors and its conversions out to
//! Rust values.

use std::sync::Arc;

use crate::backend::{Buffer, OwnedBuffer};
use crate::cpu::HostBuffer;
use crate::device::{Device, Storage};
use crate::dtype::Elem;
use crate::{DType, Error, Layout, Result, Scalar, Shape};

/// An n-dimensional array on some device, with a runtime dtype.
///
/// Cloning is cheap (an `Arc` increment and a copy of the inline shape and strides);
/// views share storage with the tensor they come from.
///
/// ```
/// use tensor_core::Tensor;
/// let a = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], [2, 2])?;
/// let b = a.t()?;                       // a view, no copy
/// let c = (&a + &b)?;
/// assert_eq!(c.to_vec2::<f32>()?, vec![vec![2.0, 5.0], vec![5.0, 8.0]]);
/// # Ok::<(), tensor_core::Error>(())
/// ```
#[derive(Clone)]
pub struct Tensor {
    storage: Arc<Storage>,
    layout: Layout,
    dtype: DType,
}

impl Tensor {
    /// Builds a tensor from a buffer on `device` and a layout into it (a backend
    /// implemented outside this crate wraps its results this way).
    ///
    /// Fails unless every element the layout reaches lies inside the buffer, so no
    /// safe caller can build a view that reads past the end of its storage.
    ///
    /// ```
    /// use tensor_core::HostBuffer;
    /// use tensor_core::{Device, Layout, Tensor};
    /// let buf = HostBuffer::F32(vec![1.0, 2.0, 3.0, 4.0]).into();
    /// let t = Tensor::from_parts(buf, Layout::contiguous([2, 2]), Device::cpu())?;
    /// assert_eq!(t.t()?.to_vec::<f32>()?, vec![1.0, 3.0, 2.0, 4.0]);
    /// let small = HostBuffer::F32(vec![1.0; 4]).into();
    /// assert!(Tensor::from_parts(small, Layout::contiguous([512, 512]), Device::cpu()).is_err());
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn from_parts(buf: OwnedBuffer, layout: Layout, device: Device) -> Result<Tensor> {
        layout.check_fits("from_parts", buf.len())?;
        Ok(Tensor::from_parts_unchecked(buf, layout, device))
    }

    /// [`Tensor::from_parts`] for layouts this crate computed itself.
    fn from_parts_unchecked(buf: OwnedBuffer, layout: Layout, device: Device) -> Tensor {
        let dtype = buf.dtype();
        Tensor { storage: Arc::new(Storage::new(buf, device)), layout, dtype }
    }

    /// A contiguous tensor owning `buf`, which a backend made for exactly `shape`.
    pub(crate) fn from_buffer(buf: OwnedBuffer, shape: impl Into<Shape>, device: &Device) -> Tensor {
        let layout = Layout::contiguous(shape);
        debug_assert!(layout.check_fits("from_buffer", buf.len()).is_ok());
        Tensor::from_parts_unchecked(buf, layout, device.clone())
    }

    /// A contiguous CPU tensor owning a host buffer.
    pub fn from_cpu_buffer(buf: HostBuffer, shape: impl Into<Shape>) -> Result<Tensor> {
        let shape = shape.into();
        if buf.len() != shape.numel() {
            return Err(Error::invalid_shape(
                "from_vec",
                &shape,
                format!("shape has {} elements but the data has {}", shape.numel(), buf.len()),
            ));
        }
        Ok(Tensor::from_parts_unchecked(buf.into(), Layout::contiguous(shape), Device::cpu()))
    }

    /// Another view of the same storage, with a layout this crate computed (and so
    /// knows to lie inside the storage). Safe callers outside the crate use the
    /// checked [`Tensor::as_strided`].
    pub(crate) fn with_layout(&self, layout: Layout) -> Tensor {
        Tensor { storage: self.storage.clone(), layout, dtype: self.dtype }
    }

    /// True when nothing else can observe this tensor's memory: no clone of this
    /// handle, no view and no other tensor shares its storage, and the view covers
    /// the whole storage contiguously. Writing to such a tensor in place (the
    /// autograd engine accumulating `.grad`, say) changes no value anyone else holds.
    ///
    /// ```
    /// use tensor_core::Tensor;
    /// let t = Tensor::zeros([2, 3], tensor_core::DType::F32, &tensor_core::Device::cpu())?;
    /// assert!(t.is_exclusive());
    /// let v = t.reshape(&[3, 2])?;
    /// assert!(!t.is_exclusive()); // `v` shares the storage
    /// drop(v);
    /// assert!(t.is_exclusive());
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn is_exclusive(&self) -> bool {
        Arc::strong_count(&self.storage) == 1
            && Arc::weak_count(&self.storage) == 0
            && self.layout.offset() == 0
            && self.layout.is_contiguous()
            && self.storage.read().len() == self.numel()
    }

    /// The storage behind this view.
    pub fn storage(&self) -> &Arc<Storage> {
        &self.storage
    }

    /// The layout (shape, strides, offset) of this view.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The shape.
    pub fn shape(&self) -> &Shape {
        self.layout.shape()
    }

    /// The sizes as a slice.
    pub fn dims(&self) -> &[usize] {
        self.layout.dims()
    }

    /// The size of dim `d` (negative counts from the end).
    pub fn size(&self, d: isize) -> Result<usize> {
        let d = self.layout().dim("size", d)?;
        Ok(self.dims()[d])
    }

    /// The strides in elements.
    pub fn strides(&self) -> &[usize] {
        self.layout.strides()
    }

    /// Number of dims.
    pub fn rank(&self) -> usize {
        self.layout.rank()
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.layout.numel()
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The device holding the data.
    pub fn device(&self) -> &Device {
        self.storage.device()
    }

    /// True when the view is row-major without gaps.
    pub fn is_contiguous(&self) -> bool {
        self.layout.is_contiguous()
    }

    /// The storage's in-place write counter (like PyTorch's `_version`).
    pub fn version(&self) -> u64 {
        self.storage.version()
    }

    /// True when both views share one storage.
    pub fn same_storage(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.storage, &other.storage)
    }

    /// A stable identifier of the storage (for aliasing checks and profiling).
    pub fn storage_id(&self) -> usize {
        Arc::as_ptr(&self.storage) as *const () as usize
    }

    /// Copies the data to the host as a contiguous buffer.
    pub fn to_cpu_buffer(&self) -> Result<HostBuffer> {
        let buf = self.storage().read();
        self.device().backend().download(&**buf, self.layout())
    }

    /// The elements in row-major order. `T` must match the dtype.
    pub fn to_vec<T: Elem>(&self) -> Result<Vec<T>> {
        if T::DTYPE != self.dtype() {
            return Err(Error::DTypeMismatch { op: "to_vec", expected: T::DTYPE, got: self.dtype() });
        }
        let mut b = self.to_cpu_buffer()?;
        T::unwrap_mut(&mut b).map(std::mem::take).ok_or(Error::DTypeMismatch {
            op: "to_vec",
            expected: T::DTYPE,
            got: self.dtype(),
        })
    }

    /// The elements converted to f64, row-major.
    pub fn to_vec_f64(&self) -> Result<Vec<f64>> {
        Ok(self.to_cpu_buffer()?.to_f64_vec())
    }

    /// A 2-D tensor as rows.
    pub fn to_vec2<T: Elem>(&self) -> Result<Vec<Vec<T>>> {
        if self.rank() != 2 {
            return Err(Error::arg("to_vec2", format!("expected a 2-D tensor, got shape {:?}", self.dims())));
        }
        let v = self.to_vec::<T>()?;
        let c = self.dims()[1];
        if c == 0 {
            return Ok(vec![Vec::new(); self.dims()[0]]);
        }
        Ok(v.chunks(c).map(|r| r.to_vec()).collect())
    }

    /// A 3-D tensor as nested rows.
    pub fn to_vec3<T: Elem>(&self) -> Result<Vec<Vec<Vec<T>>>> {
        if self.rank() != 3 {
            return Err(Error::arg("to_vec3", format!("expected a 3-D tensor, got shape {:?}", self.dims())));
        }
        let v = self.to_vec::<T>()?;
        let (b, c) = (self.dims()[1], self.dims()[2]);
        if b * c == 0 {
            return Ok(vec![vec![Vec::new(); b]; self.dims()[0]]);
        }
        Ok(v.chunks(b * c).map(|m| m.chunks(c).map(|r| r.to_vec()).collect()).collect())
    }

    /// The single value of a one-element tensor, as `T` (converted from any dtype).
    pub fn to_scalar<T: Elem>(&self) -> Result<T> {
        Ok(T::from_scalar(self.item()?))
    }

    /// The single value of a one-element tensor (PyTorch's `item()`).
    pub fn item(&self) -> Result<Scalar> {
        if self.numel() != 1 {
            return Err(Error::arg(
                "item",
                format!("a Tensor with {} elements cannot be converted to a scalar", self.numel()),
            ));
        }
        Ok(self.to_cpu_buffer()?.get_scalar(0))
    }

    /// Checks that `other` lives on the same device.
    pub(crate) fn same_device(&self, op: &'static str, other: &Tensor) -> Result<()> {
        if self.device() != other.device() {
            return Err(Error::DeviceMismatch { op, lhs: self.device().to_string(), rhs: other.device().to_string() });
        }
        Ok(())
    }

    /// Runs a backend op that reads this tensor and returns a new buffer, wrapping
    /// the result as a contiguous tensor of `shape`.
    pub(crate) fn run1(
        &self,
        shape: impl Into<Shape>,
        f: impl FnOnce(&dyn crate::backend::Backend, &dyn Buffer, &Layout) -> Result<OwnedBuffer>,
    ) -> Result<Tensor> {
        let buf = self.storage().read();
        let out = f(self.device().backend(), &**buf, self.layout())?;
        Ok(Tensor::from_buffer(out, shape, self.device()))
    }

    /// Like [`Tensor::run1`] for two inputs (read-locks both storages).
    pub(crate) fn run2(
        &self,
        other: &Tensor,
        shape: impl Into<Shape>,
        f: impl FnOnce(&dyn crate::backend::Backend, &dyn Buffer, &Layout, &dyn Buffer, &Layout) -> Result<OwnedBuffer>,
    ) -> Result<Tensor> {
        let (a, b) = Storage::read2(self.storage(), other.storage());
        let bb: &dyn Buffer = match &b {
            Some(g) => &***g,
            None => &**a,
        };
        let out = f(self.device().backend(), &**a, self.layout(), bb, other.layout())?;
        Ok(Tensor::from_buffer(out, shape, self.device()))
    }
}

// SAFETY-free guarantee: the handle is shareable across threads.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Tensor>();
};
