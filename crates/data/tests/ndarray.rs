//! Tensor <-> ndarray conversions (feature `ndarray`, turned on for tests by the
//! crate's dev-dependency on itself).
#![cfg(feature = "ndarray")]

use data::ndarray::{array_view, from_array, from_array_view, to_array};
use ndarray::{arr2, s, Array3, ArrayD, Axis, IxDyn};
use tensor_core::{DType, Device, Error, Tensor};

fn grid() -> Tensor {
    Tensor::arange(0.0, 24.0, 1.0, DType::F64, &Device::cpu()).unwrap().reshape(&[2, 3, 4]).unwrap()
}

fn reference() -> Array3<f64> {
    Array3::from_shape_fn((2, 3, 4), |(i, j, k)| (i * 12 + j * 4 + k) as f64)
}

#[test]
fn views_borrow_the_tensor_storage_for_any_layout() {
    let t = grid();
    let a = reference().into_dyn();
    let cases: Vec<(Tensor, ArrayD<f64>)> = vec![
        (t.clone(), a.clone()),
        (t.permute(&[2, 0, 1]).unwrap(), a.view().permuted_axes(IxDyn(&[2, 0, 1])).to_owned()),
        (t.narrow(2, 1, 2).unwrap(), a.slice(s![.., .., 1..3]).into_dyn().to_owned()),
        (t.select(1, 2).unwrap(), a.index_axis(Axis(1), 2).to_owned()),
        (t.slice(2, Some(0), None, 3).unwrap(), a.slice(s![.., .., ..;3]).into_dyn().to_owned()),
        (t.narrow(0, 1, 0).unwrap(), a.slice(s![1..1, .., ..]).into_dyn().to_owned()),
    ];
    for (view, want) in cases {
        let guard = array_view::<f64>(&view).unwrap();
        let v = guard.view();
        assert_eq!(v, want, "layout {:?} / {:?}", view.dims(), view.strides());
        if view.numel() > 0 {
            // Zero-copy: the first element is the storage element at the view's offset.
            let storage_start = array_view::<f64>(&t).unwrap().view().as_ptr();
            assert_eq!(v.as_ptr(), storage_start.wrapping_add(view.layout().offset()));
        }
    }
}

#[test]
fn broadcast_views_and_scalars() {
    let col = Tensor::new(&[1i64, 2, 3]).reshape(&[3, 1]).unwrap().expand(&[3, 4]).unwrap();
    // ndarray views may not alias: a broadcast layout is refused, and copied instead.
    assert!(matches!(array_view::<i64>(&col), Err(Error::InvalidArgument { ref msg, .. }) if msg.contains("to_array")));
    assert_eq!(to_array::<i64>(&col).unwrap(), arr2(&[[1i64; 4], [2; 4], [3; 4]]).into_dyn());
    let scalar = Tensor::new(&[5.0f32]).reshape(&[]).unwrap();
    assert_eq!(array_view::<f32>(&scalar).unwrap().view().into_dimensionality::<ndarray::Ix0>().unwrap()[()], 5.0);
}

#[test]
fn view_checks_dtype() {
    let t = grid();
    assert!(matches!(array_view::<f32>(&t), Err(Error::DTypeMismatch { .. })));
    assert!(matches!(to_array::<i64>(&t), Err(Error::DTypeMismatch { .. })));
}

#[test]
fn copies_both_ways_for_every_layout() {
    let t = grid();
    let a = reference().into_dyn();
    assert_eq!(to_array::<f64>(&t).unwrap(), a);
    assert_eq!(to_array::<f64>(&t.permute(&[2, 1, 0]).unwrap()).unwrap(), a.t());

    // Standard layout: the buffer moves into the tensor.
    let owned = reference();
    let ptr = owned.as_ptr();
    let moved = from_array(owned).unwrap();
    assert_eq!(moved.dims(), &[2, 3, 4]);
    assert_eq!(array_view::<f64>(&moved).unwrap().view().as_ptr(), ptr);
    assert_eq!(moved.to_vec::<f64>().unwrap(), t.to_vec::<f64>().unwrap());

    // Transposed (Fortran) and sliced owned arrays are copied in logical order.
    let f = reference().reversed_axes();
    assert_eq!(from_array(f.clone()).unwrap().to_vec::<f64>().unwrap(), f.iter().copied().collect::<Vec<_>>());
    let mut sliced = reference();
    sliced.slice_collapse(s![1.., 1.., ..]);
    let st = from_array(sliced.clone()).unwrap();
    assert_eq!(st.dims(), &[1, 2, 4]);
    assert_eq!(st.to_vec::<f64>().unwrap(), sliced.iter().copied().collect::<Vec<_>>());

    let v = a.slice(s![.., 1, ..;2]);
    let tv = from_array_view(&v).unwrap();
    assert_eq!(tv.dims(), &[2, 2]);
    assert_eq!(tv.to_vec::<f64>().unwrap(), vec![4.0, 6.0, 16.0, 18.0]);

    let b = ndarray::arr1(&[true, false]);
    assert_eq!(from_array(b).unwrap().to_vec::<bool>().unwrap(), vec![true, false]);
}
