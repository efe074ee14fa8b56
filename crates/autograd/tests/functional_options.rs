//! The functional conv/pool options: `Default` is PyTorch's keyword defaults, a
//! `None` stride is the kernel size, and `divisor_override` divides forward and
//! backward alike.

use autograd::Var;
use tensor_core::{
    AvgPool2dOptions, Conv1dOptions, Conv2dOptions, ConvTranspose2dOptions, DType, Device, MaxPool2dOptions, Tensor,
};

#[test]
fn conv_and_pool_option_defaults_match_pytorch() {
    // F.conv1d/conv2d(stride=1, padding=0, dilation=1, groups=1),
    // F.conv_transpose2d(stride=1, padding=0, output_padding=0, groups=1, dilation=1),
    // F.max_pool2d(stride=None, padding=0, dilation=1, ceil_mode=False),
    // F.avg_pool2d(stride=None, padding=0, ceil_mode=False, count_include_pad=True,
    // divisor_override=None).
    assert_eq!(Conv1dOptions::default(), Conv1dOptions { stride: 1, padding: 0, dilation: 1, groups: 1 });
    assert_eq!(
        Conv2dOptions::default(),
        Conv2dOptions { stride: [1, 1], padding: [0, 0], dilation: [1, 1], groups: 1 }
    );
    assert_eq!(
        ConvTranspose2dOptions::default(),
        ConvTranspose2dOptions { stride: [1, 1], padding: [0, 0], output_padding: [0, 0], groups: 1, dilation: [1, 1] }
    );
    assert_eq!(
        MaxPool2dOptions::default(),
        MaxPool2dOptions { stride: None, padding: [0, 0], dilation: [1, 1], ceil_mode: false }
    );
    assert_eq!(
        AvgPool2dOptions::default(),
        AvgPool2dOptions {
            stride: None,
            padding: [0, 0],
            ceil_mode: false,
            count_include_pad: true,
            divisor_override: None
        }
    );
}

#[test]
fn pool_stride_defaults_to_the_kernel() {
    let x =
        Var::from(Tensor::arange(0.0, 36.0, 1.0, DType::F64, &Device::cpu()).unwrap().reshape(&[1, 1, 6, 6]).unwrap());
    let d = x.max_pool2d([3, 2], MaxPool2dOptions::default()).unwrap();
    let e = x.max_pool2d([3, 2], MaxPool2dOptions { stride: Some([3, 2]), ..Default::default() }).unwrap();
    assert_eq!(d.dims(), &[1, 1, 2, 3]);
    assert!(d.tensor().equal(e.tensor()).unwrap());
    let a = x.avg_pool2d([2, 3], AvgPool2dOptions::default()).unwrap();
    assert_eq!(a.dims(), &[1, 1, 3, 2]);
    // Window (0, 0) covers rows 0-1, columns 0-2: mean of 0, 1, 2, 6, 7, 8.
    assert_eq!(a.tensor().to_vec::<f64>().unwrap()[0], 4.0);
}

#[test]
fn divisor_override_divides_forward_and_backward() {
    let x = Var::param(Tensor::ones([1, 1, 4, 4], DType::F64, &Device::cpu()).unwrap()).unwrap();
    let o = AvgPool2dOptions { padding: [1, 1], divisor_override: Some(2), ..Default::default() };
    let y = x.avg_pool2d([2, 2], o).unwrap();
    // Corner windows hold one real element, edge windows two, inner ones four.
    let v = y.tensor().to_vec::<f64>().unwrap();
    assert_eq!(v, vec![0.5, 1.0, 0.5, 1.0, 2.0, 1.0, 0.5, 1.0, 0.5]);
    y.sum_all().unwrap().backward().unwrap();
    // Every input element is in exactly one window (stride 2): gradient 1 / 2.
    assert_eq!(x.grad().unwrap().to_vec::<f64>().unwrap(), vec![0.5; 16]);
    assert!(x.avg_pool2d([2, 2], AvgPool2dOptions { divisor_override: Some(0), ..Default::default() }).is_err());
}
