//! Conversions between [`Tensor`] and [`ndarray`] arrays (feature `ndarray`).
//!
//! - [`array_view`] borrows a CPU tensor's buffer as an [`ArrayViewD`] without
//!   copying, for any strided layout except broadcast (stride-0) ones.
//! - [`from_array`] moves an owned standard-layout array's buffer into a tensor
//!   without copying (other layouts are copied in logical order).
//! - [`to_array`] and [`from_array_view`] copy, and work for any device and layout.
//!
//! ```
//! use data::ndarray::{array_view, from_array, to_array};
//! use ndarray::{arr2, ArrayD};
//! use tensor_core::Tensor;
//!
//! let a = arr2(&[[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]]).into_dyn();
//! let t = from_array(a.clone())?;                // moves the buffer
//! let tt = t.t()?;                               // a strided view, no copy
//! let guard = array_view::<f32>(&tt)?;           // borrows the same storage
//! assert_eq!(guard.view(), a.t());
//! let back: ArrayD<f32> = to_array(&tt)?;        // copies
//! assert_eq!(back, a.t());
//! # Ok::<(), tensor_core::Error>(())
//! ```

use ::ndarray::{ArrayBase, ArrayD, ArrayViewD, Data, Dimension, IxDyn, ShapeBuilder};
use tensor_core::{Elem, Error, HostRead, Result, Tensor};

/// Copies a tensor (any device, any layout) into an owned array. `T` must match the dtype.
pub fn to_array<T: Elem>(tensor: &Tensor) -> Result<ArrayD<T>> {
    let v = tensor.to_vec::<T>()?;
    ArrayD::from_shape_vec(IxDyn(tensor.dims()), v).map_err(|e| Error::arg("to_array", e.to_string()))
}

/// Turns an owned array into a CPU tensor, moving its buffer when the array is in
/// standard (row-major, gapless) layout and copying in logical order otherwise.
pub fn from_array<T: Elem, D: Dimension>(array: ::ndarray::Array<T, D>) -> Result<Tensor> {
    let shape = array.shape().to_vec();
    let n = array.len();
    let v = if array.is_standard_layout() {
        let (v, offset) = array.into_raw_vec_and_offset();
        let offset = offset.unwrap_or(0);
        if offset == 0 && v.len() == n {
            v
        } else {
            v[offset..offset + n].to_vec()
        }
    } else {
        array.iter().copied().collect()
    };
    Tensor::from_vec(v, shape)
}

/// Copies any array or view into a CPU tensor (logical order).
pub fn from_array_view<T: Elem, S: Data<Elem = T>, D: Dimension>(array: &ArrayBase<S, D>) -> Result<Tensor> {
    let v = match array.as_slice() {
        Some(s) => s.to_vec(),
        None => array.iter().copied().collect(),
    };
    Tensor::from_vec(v, array.shape().to_vec())
}

/// A CPU tensor's storage, locked for reading, from which [`view`](Self::view)
/// borrows an [`ArrayViewD`].
///
/// While the guard lives, in-place writes to the same storage wait for it: drop the
/// guard before calling an in-place op (such as `add_`) on that tensor or on a view
/// sharing its storage from the same thread, or that thread deadlocks.
pub struct TensorArrayView<'a, T> {
    host: HostRead<'a, T>,
}

/// Borrows a CPU tensor as an ndarray view, without copying.
///
/// Errors when `T` does not match the dtype or the tensor is not on the CPU (use
/// [`to_array`] there), or its layout is a broadcast (stride-0) one.
pub fn array_view<T: Elem>(tensor: &Tensor) -> Result<TensorArrayView<'_, T>> {
    let g = TensorArrayView { host: tensor.read_host::<T>().map_err(|e| rename(e, "array_view"))? };
    g.try_view()?;
    Ok(g)
}

/// An error of `read_host` as one of `op`.
fn rename(e: Error, op: &'static str) -> Error {
    match e {
        Error::DTypeMismatch { expected, got, .. } => Error::DTypeMismatch { op, expected, got },
        Error::Unsupported { dtype, device, .. } => Error::Unsupported { op, dtype, device },
        Error::InvalidArgument { msg, .. } => Error::arg(op, msg),
        e => e,
    }
}

impl<T: Elem> TensorArrayView<'_, T> {
    /// The tensor's elements as an array view with the tensor's shape and strides.
    pub fn view(&self) -> ArrayViewD<'_, T> {
        self.try_view().expect("array_view checked the buffer and layout when the guard was made")
    }

    fn try_view(&self) -> Result<ArrayViewD<'_, T>> {
        const OP: &str = "array_view";
        let layout = self.host.layout();
        let (dims, strides) = (layout.dims(), layout.strides());
        // ndarray views may not alias, so broadcast (stride-0) layouts cannot be borrowed.
        if dims.iter().zip(strides).any(|(&d, &s)| d > 1 && s == 0) {
            return Err(Error::arg(
                OP,
                format!("layout {dims:?} with strides {strides:?} is broadcast (stride 0); copy it with to_array"),
            ));
        }
        ArrayViewD::from_shape(IxDyn(dims).strides(IxDyn(strides)), self.host.data())
            .map_err(|e| Error::arg(OP, format!("layout {dims:?} with strides {strides:?}: {e}")))
    }
}
