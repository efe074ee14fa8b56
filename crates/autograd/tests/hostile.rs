//! Hostile input to autograd: empty kernels and sizes that overflow in the
//! convolutions, and gradient hooks that return a gradient of another shape or dtype,
//! are errors that name what is wrong (never a panic, never a `.grad` that does not
//! fit its variable).

use autograd::Var;
use tensor_core::{Conv1dOptions, Conv2dOptions, ConvTranspose2dOptions, DType, Device, Error, Result, Tensor};

fn ones(shape: &[usize]) -> Tensor {
    Tensor::ones(shape.to_vec(), DType::F64, &Device::cpu()).unwrap()
}

fn param(shape: &[usize]) -> Var {
    Var::param(ones(shape)).unwrap()
}

/// The op of a shape or argument error.
fn op_of(e: &Error) -> &'static str {
    match e {
        Error::ShapeMismatch { op, .. } | Error::InvalidShape { op, .. } | Error::InvalidArgument { op, .. } => op,
        other => panic!("expected a shape or argument error, got {other:?}"),
    }
}

#[test]
fn an_empty_kernel_is_an_error_in_every_convolution() {
    let x = param(&[1, 1, 4, 4]);
    for w in [[1, 1, 0, 0], [1, 1, 0, 3], [1, 1, 3, 0]] {
        let e = x.conv2d(&param(&w), None, Conv2dOptions::default()).unwrap_err();
        assert_eq!(op_of(&e), "conv2d", "{e}");
        assert!(e.to_string().contains("kernel size"), "{e}");
        let e = x.conv_transpose2d(&param(&w), None, ConvTranspose2dOptions::default()).unwrap_err();
        assert_eq!(op_of(&e), "conv_transpose2d", "{e}");
        // Unbatched input too.
        let e = param(&[1, 4, 4]).conv2d(&param(&w), None, Conv2dOptions::default()).unwrap_err();
        assert_eq!(op_of(&e), "conv2d", "{e}");
    }
    let e = param(&[1, 1, 5]).conv1d(&param(&[1, 1, 0]), None, Conv1dOptions::default()).unwrap_err();
    assert_eq!(op_of(&e), "conv1d", "{e}");
    assert!(e.to_string().contains("kernel size"), "{e}");
    // Padding does not make an empty kernel valid.
    assert!(x.conv2d(&param(&[1, 1, 0, 0]), None, Conv2dOptions { padding: [2, 2], ..Default::default() }).is_err());
}

#[test]
fn zero_stride_or_dilation_is_an_error() {
    let x = param(&[1, 1, 4, 4]);
    let w = param(&[1, 1, 2, 2]);
    for (stride, dilation) in [([0, 1], [1, 1]), ([1, 1], [1, 0])] {
        let e = x.conv2d(&w, None, Conv2dOptions { stride, dilation, ..Default::default() }).unwrap_err();
        assert_eq!(op_of(&e), "conv2d", "{e}");
        let e = x
            .conv_transpose2d(&w, None, ConvTranspose2dOptions { stride, dilation, ..Default::default() })
            .unwrap_err();
        assert_eq!(op_of(&e), "conv_transpose2d", "{e}");
    }
    assert!(param(&[1, 1, 5])
        .conv1d(&param(&[1, 1, 2]), None, Conv1dOptions { stride: 0, ..Default::default() })
        .is_err());
    assert!(param(&[1, 1, 5])
        .conv1d(&param(&[1, 1, 2]), None, Conv1dOptions { dilation: 0, ..Default::default() })
        .is_err());
}

#[test]
fn sizes_that_overflow_are_errors() {
    let x = param(&[1, 1, 4, 4]);
    let w = param(&[1, 1, 2, 2]);
    // Padding and dilation whose arithmetic leaves usize.
    let e = x.conv2d(&w, None, Conv2dOptions { padding: [usize::MAX / 2 + 1, 0], ..Default::default() }).unwrap_err();
    assert_eq!(op_of(&e), "conv2d", "{e}");
    let e = x.conv2d(&w, None, Conv2dOptions { dilation: [usize::MAX, 1], ..Default::default() }).unwrap_err();
    assert_eq!(op_of(&e), "conv2d", "{e}");
    // A stride or dilation that makes the transposed output size overflow.
    let e = x
        .conv_transpose2d(&w, None, ConvTranspose2dOptions { stride: [usize::MAX, 1], ..Default::default() })
        .unwrap_err();
    assert_eq!(op_of(&e), "conv_transpose2d", "{e}");
    let e = x
        .conv_transpose2d(&w, None, ConvTranspose2dOptions { dilation: [usize::MAX, 1], ..Default::default() })
        .unwrap_err();
    assert_eq!(op_of(&e), "conv_transpose2d", "{e}");
    let e = x
        .conv_transpose2d(&w, None, ConvTranspose2dOptions { padding: [usize::MAX, 0], ..Default::default() })
        .unwrap_err();
    assert_eq!(op_of(&e), "conv_transpose2d", "{e}");
    // A large but representable stride still works: one window.
    let y = x.conv2d(&w, None, Conv2dOptions { stride: [usize::MAX, usize::MAX], ..Default::default() }).unwrap();
    assert_eq!(y.dims(), &[1, 1, 1, 1]);
    assert_eq!(y.tensor().to_vec::<f64>().unwrap(), vec![4.0]);
}

#[test]
fn a_leaf_hook_that_changes_the_shape_or_dtype_is_an_error() -> Result<()> {
    let x = param(&[2, 3]);
    x.register_hook(|g| Ok(Some(g.sum(&[0], false)?)))?; // [2, 3] -> [3]
    let e = x.mul_scalar(2.0)?.sum_all()?.backward().unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::Autograd(_)), "{e}");
    assert!(msg.contains("hook") && msg.contains("changed the size"), "{msg}");
    assert!(msg.contains("expected [2, 3], got [3]"), "{msg}");
    assert!(x.grad().is_none(), "the leaf got a gradient of the wrong shape");

    let y = param(&[2]);
    y.register_hook(|g| Ok(Some(g.to_dtype(DType::F32)?)))?;
    let e = y.square()?.sum_all()?.backward().unwrap_err();
    assert!(
        e.to_string().contains("changed the dtype") && e.to_string().contains("expected float64, got float32"),
        "{e}"
    );
    assert!(y.grad().is_none());
    Ok(())
}

#[test]
fn a_non_leaf_hook_that_changes_the_shape_is_an_error_naming_the_op() -> Result<()> {
    let x = param(&[2, 3]);
    let h = x.mul_scalar(3.0)?;
    // Broadcastable to [2, 3]: the engine would otherwise have summed it down.
    h.register_hook(|g| Ok(Some(g.unsqueeze(0)?.expand(&[4, 2, 3])?)))?;
    let e = h.sum_all()?.backward().unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("changed the size") && msg.contains("the output of mul"), "{msg}");
    assert!(msg.contains("expected [2, 3], got [4, 2, 3]"), "{msg}");
    assert!(x.grad().is_none());
    Ok(())
}

#[test]
fn a_hook_that_keeps_shape_and_dtype_still_replaces_the_gradient() -> Result<()> {
    let x = param(&[3]);
    let h = x.mul_scalar(2.0)?;
    h.register_hook(|g| Ok(Some(g.mul_scalar(10.0)?)))?;
    x.register_hook(|g| Ok(Some(g.add_scalar(1.0)?)))?;
    h.sum_all()?.backward()?;
    assert_eq!(x.grad().unwrap().to_vec::<f64>()?, vec![21.0; 3]);
    Ok(())
}
