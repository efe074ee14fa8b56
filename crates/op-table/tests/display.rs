//! `Display` prints tensors like PyTorch's `print(t)`.

use tensor_core::{DType, Device, Tensor};

#[test]
fn small_float_matrix() {
    let t = Tensor::from_vec(vec![1.5f32, -2.25, 3.125, 4.0], [2, 2]).unwrap();
    assert_eq!(format!("{t}"), "tensor([[ 1.5000, -2.2500],\n        [ 3.1250,  4.0000]])");
}

#[test]
fn float_vector_and_non_default_dtype() {
    let t = Tensor::new(&[0.5f64, 1.25]);
    assert_eq!(format!("{t}"), "tensor([0.5000, 1.2500], dtype=torch.float64)");
}

#[test]
fn float_modes_follow_pytorch() {
    // All integral: "1." style.
    assert_eq!(format!("{}", Tensor::new(&[1.0f32, -2.0, 30.0])), "tensor([ 1., -2., 30.])");
    assert_eq!(format!("{}", Tensor::zeros([2], DType::F32, &Device::cpu()).unwrap()), "tensor([0., 0.])");
    // A wide range switches to scientific notation.
    assert_eq!(format!("{}", Tensor::new(&[1e-5f64, 1.0])), "tensor([1.0000e-05, 1.0000e+00], dtype=torch.float64)");
    // Non-finite values are padded to the column width.
    assert_eq!(format!("{}", Tensor::new(&[1.0f32, 2.5, f32::NAN])), "tensor([1.0000, 2.5000,    nan])");
    assert_eq!(format!("{}", Tensor::scalar(1.5f32)), "tensor(1.5000)");
}

#[test]
fn int_tensors() {
    let t = Tensor::from_vec(vec![1i64, -20, 300, 4], [2, 2]).unwrap();
    assert_eq!(format!("{t}"), "tensor([[  1, -20],\n        [300,   4]])");
    let u = Tensor::new(&[1i32, 2, 3]);
    assert_eq!(format!("{u}"), "tensor([1, 2, 3], dtype=torch.int32)");
    assert_eq!(format!("{}", Tensor::scalar(7i64)), "tensor(7)");
}

#[test]
fn bool_and_3d() {
    let b = Tensor::new(&[true, false]);
    assert_eq!(format!("{b}"), "tensor([ True, False])");
    let t = Tensor::arange(0.0, 8.0, 1.0, DType::I64, &Device::cpu()).unwrap().reshape(&[2, 2, 2]).unwrap();
    assert_eq!(format!("{t}"), "tensor([[[0, 1],\n         [2, 3]],\n\n        [[4, 5],\n         [6, 7]]])");
}

#[test]
fn empty_tensor() {
    let t = Tensor::zeros([0, 3], DType::F32, &Device::cpu()).unwrap();
    assert_eq!(format!("{t}"), "tensor([], size=(0, 3))");
}

#[test]
fn summarises_past_1000_elements() {
    let t = Tensor::arange(0.0, 2000.0, 1.0, DType::I64, &Device::cpu()).unwrap();
    assert_eq!(format!("{t}"), "tensor([   0,    1,    2,  ..., 1997, 1998, 1999])");
    let m = Tensor::arange(0.0, 1001.0, 1.0, DType::I64, &Device::cpu()).unwrap();
    assert!(format!("{m}").contains("..."));
    let small = Tensor::arange(0.0, 1000.0, 1.0, DType::I64, &Device::cpu()).unwrap();
    assert!(!format!("{small}").contains("..."), "1000 elements are printed in full");
    let big = Tensor::zeros([40, 40], DType::I64, &Device::cpu()).unwrap();
    let s = format!("{big}");
    assert!(s.starts_with("tensor([[0, 0, 0,  ..., 0, 0, 0],\n        [0, 0, 0,  ..., 0, 0, 0],\n        [0, 0, 0,  ..., 0, 0, 0],\n        ...,\n"), "{s}");
    assert_eq!(s.lines().count(), 7);
}
