//! Host data: [`HostBuffer`], one typed vector per dtype. It is how data crosses
//! between the host and any backend (uploads, downloads, file formats such as npy and
//! safetensors), and the CPU backend's own storage.

use std::any::Any;
use std::marker::PhantomData;

use half::{bf16, f16};
use parking_lot::RwLockReadGuard;

use crate::backend::{Buffer, OwnedBuffer};
use crate::cpu::{alloc, with_dtype};
use crate::dtype::Elem;
use crate::{DType, Error, Layout, Result, Scalar, Tensor};

/// A host buffer: one typed vector per dtype.
#[derive(Clone, Debug, PartialEq)]
pub enum HostBuffer {
    /// bool elements
    Bool(Vec<bool>),
    /// u8 elements
    U8(Vec<u8>),
    /// i32 elements
    I32(Vec<i32>),
    /// i64 elements
    I64(Vec<i64>),
    /// f16 elements
    F16(Vec<f16>),
    /// bf16 elements
    BF16(Vec<bf16>),
    /// f32 elements
    F32(Vec<f32>),
    /// f64 elements
    F64(Vec<f64>),
}

impl HostBuffer {
    /// The dtype of the elements.
    pub fn dtype(&self) -> DType {
        match self {
            HostBuffer::Bool(_) => DType::Bool,
            HostBuffer::U8(_) => DType::U8,
            HostBuffer::I32(_) => DType::I32,
            HostBuffer::I64(_) => DType::I64,
            HostBuffer::F16(_) => DType::F16,
            HostBuffer::BF16(_) => DType::BF16,
            HostBuffer::F32(_) => DType::F32,
            HostBuffer::F64(_) => DType::F64,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        with_dtype!(self, v, T => v.len())
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `len` zeros of `dtype`; [`Error::OutOfMemory`] when the memory can't be had.
    pub fn zeros(dtype: DType, len: usize) -> Result<HostBuffer> {
        Ok(match dtype {
            DType::Bool => HostBuffer::Bool(alloc::filled(len, false)?),
            DType::U8 => HostBuffer::U8(alloc::filled(len, 0)?),
            DType::I32 => HostBuffer::I32(alloc::filled(len, 0)?),
            DType::I64 => HostBuffer::I64(alloc::filled(len, 0)?),
            DType::F16 => HostBuffer::F16(alloc::filled(len, f16::ZERO)?),
            DType::BF16 => HostBuffer::BF16(alloc::filled(len, bf16::ZERO)?),
            DType::F32 => HostBuffer::F32(alloc::filled(len, 0.0)?),
            DType::F64 => HostBuffer::F64(alloc::filled(len, 0.0)?),
        })
    }

    /// Element `i` as f64.
    pub fn get_f64(&self, i: usize) -> f64 {
        with_dtype!(self, v, T => v[i].to_f64())
    }

    /// Element `i` as a [`Scalar`].
    pub fn get_scalar(&self, i: usize) -> Scalar {
        with_dtype!(self, v, T => v[i].to_scalar())
    }

    /// All elements converted to f64.
    pub fn to_f64_vec(&self) -> Vec<f64> {
        with_dtype!(self, v, T => v.iter().map(|x| x.to_f64()).collect())
    }

    /// Raw little-endian bytes of the elements (bool as 0/1 bytes).
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            HostBuffer::Bool(v) => v.iter().map(|&b| b as u8).collect(),
            HostBuffer::U8(v) => v.clone(),
            HostBuffer::I32(v) => bytemuck::cast_slice(v).to_vec(),
            HostBuffer::I64(v) => bytemuck::cast_slice(v).to_vec(),
            HostBuffer::F16(v) => bytemuck::cast_slice(v).to_vec(),
            HostBuffer::BF16(v) => bytemuck::cast_slice(v).to_vec(),
            HostBuffer::F32(v) => bytemuck::cast_slice(v).to_vec(),
            HostBuffer::F64(v) => bytemuck::cast_slice(v).to_vec(),
        }
    }

    /// Builds a buffer from little-endian bytes; `None` when the length does not fit
    /// the dtype.
    pub fn from_bytes(dtype: DType, bytes: &[u8]) -> Option<HostBuffer> {
        let sz = dtype.size_in_bytes();
        if !bytes.len().is_multiple_of(sz) {
            return None;
        }
        fn pod<T: bytemuck::Pod>(b: &[u8]) -> Vec<T> {
            b.chunks_exact(std::mem::size_of::<T>()).map(bytemuck::pod_read_unaligned).collect()
        }
        Some(match dtype {
            DType::Bool => HostBuffer::Bool(bytes.iter().map(|&b| b != 0).collect()),
            DType::U8 => HostBuffer::U8(bytes.to_vec()),
            DType::I32 => HostBuffer::I32(pod(bytes)),
            DType::I64 => HostBuffer::I64(pod(bytes)),
            DType::F16 => HostBuffer::F16(pod(bytes)),
            DType::BF16 => HostBuffer::BF16(pod(bytes)),
            DType::F32 => HostBuffer::F32(pod(bytes)),
            DType::F64 => HostBuffer::F64(pod(bytes)),
        })
    }
}

impl Buffer for HostBuffer {
    fn dtype(&self) -> DType {
        HostBuffer::dtype(self)
    }
    fn len(&self) -> usize {
        HostBuffer::len(self)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn as_host(&self) -> Option<&HostBuffer> {
        Some(self)
    }
    fn as_host_mut(&mut self) -> Option<&mut HostBuffer> {
        Some(self)
    }
}

/// The host buffer behind a CPU tensor's storage (`None` for other devices).
#[inline]
pub fn as_host_buffer(b: &dyn Buffer) -> Option<&HostBuffer> {
    b.as_host()
}

/// Mutable variant of [`as_host_buffer`].
#[inline]
pub fn as_host_buffer_mut(b: &mut dyn Buffer) -> Option<&mut HostBuffer> {
    b.as_host_mut()
}

/// A CPU tensor's elements, borrowed for reading without a copy: the one checked way
/// to reach a tensor's host memory from outside tensor-core (ndarray views, zero-copy
/// exports). Made by [`Tensor::read_host`].
///
/// While it lives, in-place writes to the same storage wait for it: drop it before
/// calling an in-place op (such as `add_`) on that tensor, or on a view sharing its
/// storage, from the same thread.
pub struct HostRead<'a, T> {
    guard: RwLockReadGuard<'a, OwnedBuffer>,
    layout: &'a Layout,
    _elem: PhantomData<T>,
}

impl<T: Elem> HostRead<'_, T> {
    /// The storage's elements from the view's offset to the end of the storage: element
    /// `idx` of the view is `data()[sum(idx[d] * strides[d])]` with the strides of
    /// [`layout`](Self::layout), and every such position is in range.
    pub fn data(&self) -> &[T] {
        let all = self.guard.as_host().and_then(T::unwrap_ref).map(Vec::as_slice).unwrap_or(&[]);
        all.get(self.layout.offset()..).unwrap_or(&[])
    }

    /// The view's shape, strides and offset.
    pub fn layout(&self) -> &Layout {
        self.layout
    }

    /// The elements in logical (row-major) order as one slice, when the view is
    /// contiguous; `None` for strided views.
    pub fn as_slice(&self) -> Option<&[T]> {
        if !self.layout.is_contiguous() {
            return None;
        }
        self.data().get(..self.layout.numel())
    }
}

impl Tensor {
    /// Borrows a CPU tensor's elements for reading, without copying; see [`HostRead`].
    ///
    /// Errors when `T` does not match the dtype, the tensor is not on the CPU, or its
    /// view does not lie inside its storage.
    ///
    /// ```
    /// use tensor_core::Tensor;
    /// let t = Tensor::from_vec(vec![1f32, 2., 3., 4., 5., 6.], [2, 3])?;
    /// let col = t.narrow(1, 1, 1)?; // a strided view: [[2], [5]]
    /// let r = col.read_host::<f32>()?;
    /// assert_eq!(r.layout().strides(), &[3, 1]);
    /// assert_eq!((r.data()[0], r.data()[3]), (2.0, 5.0));
    /// assert_eq!(t.read_host::<f32>()?.as_slice(), Some(&[1f32, 2., 3., 4., 5., 6.][..]));
    /// assert!(t.read_host::<f64>().is_err());
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn read_host<T: Elem>(&self) -> Result<HostRead<'_, T>> {
        const OP: &str = "read_host";
        if T::DTYPE != self.dtype() {
            return Err(Error::DTypeMismatch { op: OP, expected: T::DTYPE, got: self.dtype() });
        }
        if !self.device().is_cpu() {
            return Err(Error::Unsupported { op: OP, dtype: self.dtype(), device: self.device().to_string() });
        }
        let guard = self.storage().read();
        let len = match guard.as_host().and_then(T::unwrap_ref) {
            Some(v) => v.len(),
            None => return Err(Error::arg(OP, "the tensor's storage is not a host buffer of its dtype")),
        };
        self.layout().check_fits(OP, len)?;
        Ok(HostRead { guard, layout: self.layout(), _elem: PhantomData })
    }
}

#[cfg(test)]
mod tests {
    use crate::{DType, Device, HostBuffer, Tensor};

    #[test]
    fn a_storage_shrunk_through_its_lock_gives_errors_not_out_of_bounds_reads() {
        // The storage lock is crate-private, but a backend bug could still leave a buffer
        // shorter than a view of it: every backend entry point (and `read_host`) checks the
        // view against the buffer it gets.
        let a = Tensor::ones([64, 64], DType::F32, &Device::cpu()).unwrap();
        let b = Tensor::ones([64, 64], DType::F32, &Device::cpu()).unwrap();
        *a.storage().write() = HostBuffer::F32(vec![1.0; 4]).into();
        let e = a.matmul(&b).unwrap_err();
        assert!(e.to_string().contains("matmul") && e.to_string().contains("4 elements"), "{e}");
        assert!(b.matmul(&a).is_err());
        assert!(a.to_vec::<f32>().is_err());
        assert!(a.read_host::<f32>().is_err());
        assert_eq!(b.read_host::<f32>().unwrap().as_slice().map(<[f32]>::len), Some(64 * 64));
        assert!(a.relu().is_err());
        assert!((&a + &b).is_err());
        assert!(b.add_(&a).is_err());
        assert!(a.add_(&b).is_err());
        assert!(a.sum_all().is_err());
        assert!(a.cumsum(0).is_err());
        assert!(a.to_dtype(DType::F64).is_err());
        assert!(a.fill_(0.0).is_err());
        assert!(a.softmax(-1).is_err());
        assert!(a.sort(-1, false).is_err());
        let idx = Tensor::zeros([64, 64], DType::I64, &Device::cpu()).unwrap();
        assert!(a.gather(1, &idx).is_err());
        assert!(b.scatter_(1, &idx, &a).is_err());
        // `b` itself is untouched by the failed calls.
        assert!(b.to_vec::<f32>().unwrap().iter().all(|&x| x == 1.0));
    }
}
