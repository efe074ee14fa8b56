//! Op-table records for the nn ops (softmax, convolutions, pooling, padding,
//! embedding, normalisation, dropout), checked against the naive loops in
//! [`refs`].

pub mod refs;

use tensor_core::{
    AttentionOpts, AvgPool2dOptions, Conv1dOptions, Conv2dOptions, ConvTranspose2dOptions, DType, Error, Generator,
    MaxPool2dOptions, PadMode, Tensor,
};

use crate::call;
use crate::{int_t, rand_t, ErrorCase, OpInfo, RefArray, Sample, FLOATS, NUMERIC};

fn shape_err(e: &Error) -> bool {
    matches!(e, Error::ShapeMismatch { lhs, rhs, .. } if !lhs.is_empty() && !rhs.is_empty())
}
fn invalid_shape(e: &Error) -> bool {
    matches!(e, Error::InvalidShape { .. })
}
fn arg_err(e: &Error) -> bool {
    matches!(e, Error::InvalidArgument { .. })
}
fn dim_err(e: &Error) -> bool {
    matches!(e, Error::DimOutOfRange { .. })
}
fn dtype_err(e: &Error) -> bool {
    matches!(e, Error::DTypeMismatch { .. })
}
fn unsupported(e: &Error) -> bool {
    matches!(e, Error::Unsupported { .. })
}
fn index_err(e: &Error) -> bool {
    matches!(e, Error::IndexOutOfRange { .. })
}

/// An F64 tensor of values in [-1, 1).
fn r(seed: u64, shape: &[usize]) -> Tensor {
    rand_t(seed, shape, -1.0, 1.0)
}

/// A permuted (non-contiguous) F64 tensor with logical shape `shape` (rank >= 2):
/// the last two dims are stored transposed.
fn transposed(seed: u64, shape: &[usize]) -> Tensor {
    let k = shape.len();
    let mut s = shape.to_vec();
    s.swap(k - 2, k - 1);
    r(seed, &s).transpose(-2, -1).expect("rank >= 2")
}

/// A reference array with a leading batch dim of 1 added (or dropped).
fn batch1(a: &RefArray) -> RefArray {
    let mut s = vec![1];
    s.extend(&a.shape);
    RefArray::new(s, a.data.clone())
}
fn unbatch(a: RefArray) -> RefArray {
    RefArray::new(a.shape[1..].to_vec(), a.data)
}

fn idx_t(v: &[i64], shape: &[usize]) -> Tensor {
    Tensor::from_vec(v.to_vec(), shape.to_vec()).expect("numel matches")
}

fn softmax_record(name: &'static str, log: bool) -> OpInfo {
    let s = move |desc: &str, x: Tensor, d: isize| {
        let rank = x.rank();
        let dd = if rank == 0 { 0 } else { d.rem_euclid(rank as isize) as usize };
        Sample::call(
            desc,
            vec![x],
            call!(|i| Ok(vec![if log { i[0].log_softmax(d)? } else { i[0].softmax(d)? }])),
            move |a| vec![refs::softmax(&a[0], dd, log)],
        )
    };
    OpInfo::new(name, FLOATS, true)
        .sample(s("last dim", r(1, &[3, 5]), -1))
        .sample(s("first dim of 3-D", rand_t(2, &[4, 3, 2], -3.0, 3.0), 0))
        .sample(s("middle dim", r(3, &[2, 3, 4]), 1))
        .sample(s("large values (stability)", rand_t(4, &[2, 6], 995.0, 1000.0), 1))
        .sample(s("large negative values", rand_t(5, &[3, 4], -1000.0, -990.0), -1))
        .sample(s("1-D", r(6, &[7]), 0))
        .sample(s("0-dim", Tensor::scalar(0.7f64), 0))
        .sample(s("size-1 dim", r(7, &[3, 1]), 1))
        .sample(s("zero-size", r(8, &[0, 4]), 1))
        .sample(s("transposed input", transposed(9, &[4, 3]), 1))
        .sample(s("expanded input", r(10, &[1, 5]).expand(&[3, 5]).expect("expand"), 0))
        .error(ErrorCase::new("dim out of range", || r(1, &[2, 3]).softmax(2), dim_err))
        .error(ErrorCase::new("dim out of range (log)", || r(1, &[2, 3]).log_softmax(-3), dim_err))
        .error(ErrorCase::new("integer input", || Tensor::new(&[1i64, 2]).softmax(0), unsupported))
}

#[allow(clippy::too_many_arguments)]
fn conv2d_sample(
    desc: &str,
    x: Tensor,
    w_shape: &[usize],
    bias: bool,
    s: [usize; 2],
    p: [usize; 2],
    d: [usize; 2],
    g: usize,
    seed: u64,
) -> Sample {
    let mut inputs = vec![x, r(seed, w_shape)];
    if bias {
        inputs.push(r(seed + 1, &[w_shape[0]]));
    }
    Sample::call(
        desc,
        inputs,
        call!(|i| Ok(vec![i[0].conv2d(
            &i[1],
            i.get(2),
            Conv2dOptions { stride: s, padding: p, dilation: d, groups: g }
        )?])),
        move |a| {
            if a[0].shape.len() == 3 {
                vec![unbatch(refs::conv2d(&batch1(&a[0]), &a[1], a.get(2), s, p, d, g))]
            } else {
                vec![refs::conv2d(&a[0], &a[1], a.get(2), s, p, d, g)]
            }
        },
    )
}

/// conv2d on the shapes the CPU runs through Winograd F(4x4, 3x3) in f32 (3x3, stride
/// 1, 8+ channels each side), in its own record for its tolerance: the transforms'
/// rounding scales with `Σ|x·w|` over the window, not with `|y|` (a few 1e-6 of it;
/// here up to ~2e-5 absolute on outputs near 1).
fn conv2d_winograd_record() -> OpInfo {
    OpInfo::new("conv2d", &[DType::F32, DType::F64], true)
        .tol(1e-4, 1e-4)
        .sample(conv2d_sample(
            "3x3 stride 1, 8 -> 10 channels, pad [1, 2]",
            r(11, &[2, 8, 7, 9]),
            &[10, 8, 3, 3],
            true,
            [1, 1],
            [1, 2],
            [1, 1],
            1,
            21,
        ))
        .sample(conv2d_sample(
            "3x3 stride 1, 12 -> 8 channels, no pad",
            r(12, &[3, 12, 9, 6]),
            &[8, 12, 3, 3],
            false,
            [1, 1],
            [0, 0],
            [1, 1],
            1,
            22,
        ))
}

fn conv2d_record() -> OpInfo {
    let x = |seed, shape: &[usize]| r(seed, shape);
    OpInfo::new("conv2d", FLOATS, true)
        .sample(conv2d_sample(
            "3x3, bias, batch 2",
            x(1, &[2, 3, 5, 5]),
            &[4, 3, 3, 3],
            true,
            [1, 1],
            [0, 0],
            [1, 1],
            1,
            11,
        ))
        .sample(conv2d_sample(
            "stride 2, pad 1",
            x(2, &[1, 2, 7, 6]),
            &[3, 2, 3, 3],
            false,
            [2, 2],
            [1, 1],
            [1, 1],
            1,
            12,
        ))
        .sample(conv2d_sample(
            "non-square kernel, dilation, mixed stride/pad",
            x(3, &[2, 2, 6, 7]),
            &[2, 2, 2, 3],
            true,
            [1, 2],
            [1, 2],
            [2, 1],
            1,
            13,
        ))
        .sample(conv2d_sample("groups 2", x(4, &[2, 4, 5, 5]), &[6, 2, 3, 3], true, [1, 1], [1, 1], [1, 1], 2, 14))
        .sample(conv2d_sample(
            "depthwise, stride 2",
            x(5, &[1, 3, 4, 4]),
            &[3, 1, 2, 2],
            false,
            [2, 2],
            [0, 0],
            [1, 1],
            3,
            15,
        ))
        .sample(conv2d_sample("1x1", x(6, &[2, 3, 4, 4]), &[5, 3, 1, 1], true, [1, 1], [0, 0], [1, 1], 1, 16))
        .sample(conv2d_sample(
            "kernel = padded input",
            x(7, &[1, 1, 2, 3]),
            &[2, 1, 4, 3],
            false,
            [1, 1],
            [1, 0],
            [1, 1],
            1,
            17,
        ))
        .sample(conv2d_sample("unbatched", x(8, &[3, 5, 4]), &[2, 3, 2, 2], true, [1, 1], [1, 1], [1, 1], 1, 18))
        .sample(conv2d_sample(
            "transposed input",
            transposed(9, &[2, 2, 5, 6]),
            &[3, 2, 3, 2],
            true,
            [2, 1],
            [0, 1],
            [1, 2],
            1,
            19,
        ))
        .sample(conv2d_sample("batch 0", x(10, &[0, 2, 4, 4]), &[3, 2, 3, 3], true, [1, 1], [0, 0], [1, 1], 1, 20))
        .covers(&["conv2d_backward_fused"])
        .error(ErrorCase::new(
            "backward: gradient shape is not the output's",
            || {
                Tensor::conv2d_backward_fused(
                    &r(1, &[1, 1, 4, 4]),
                    &r(2, &[1, 1, 3, 3]),
                    &r(3, &[1, 1, 3, 3]),
                    Conv2dOptions::default(),
                    true,
                    true,
                )
                .map(|_| Tensor::new(&[0.0f32]))
            },
            shape_err,
        ))
        .error(ErrorCase::new(
            "2-D input",
            || r(1, &[4, 4]).conv2d(&r(2, &[1, 1, 2, 2]), None, Conv2dOptions::default()),
            shape_err,
        ))
        .error(ErrorCase::new(
            "3-D weight",
            || r(1, &[1, 1, 4, 4]).conv2d(&r(2, &[1, 1, 2]), None, Conv2dOptions::default()),
            shape_err,
        ))
        .error(ErrorCase::new(
            "channel mismatch",
            || r(1, &[1, 3, 4, 4]).conv2d(&r(2, &[2, 2, 2, 2]), None, Conv2dOptions::default()),
            shape_err,
        ))
        .error(ErrorCase::new(
            "groups do not divide the output channels",
            || {
                r(1, &[1, 4, 4, 4]).conv2d(
                    &r(2, &[3, 2, 2, 2]),
                    None,
                    Conv2dOptions { groups: 2, ..Default::default() },
                )
            },
            shape_err,
        ))
        .error(ErrorCase::new(
            "kernel larger than padded input",
            || r(1, &[1, 1, 3, 3]).conv2d(&r(2, &[1, 1, 4, 4]), None, Conv2dOptions::default()),
            shape_err,
        ))
        .error(ErrorCase::new(
            "dilated kernel larger than padded input",
            || {
                r(1, &[1, 1, 4, 4]).conv2d(
                    &r(2, &[1, 1, 3, 3]),
                    None,
                    Conv2dOptions { dilation: [2, 2], ..Default::default() },
                )
            },
            shape_err,
        ))
        .error(ErrorCase::new(
            "bias of wrong size",
            || r(1, &[1, 1, 4, 4]).conv2d(&r(2, &[2, 1, 2, 2]), Some(&r(3, &[3])), Conv2dOptions::default()),
            shape_err,
        ))
        .error(ErrorCase::new(
            "zero stride",
            || {
                r(1, &[1, 1, 4, 4]).conv2d(
                    &r(2, &[1, 1, 2, 2]),
                    None,
                    Conv2dOptions { stride: [0, 1], ..Default::default() },
                )
            },
            arg_err,
        ))
        .error(ErrorCase::new(
            "zero groups",
            || {
                r(1, &[1, 1, 4, 4]).conv2d(
                    &r(2, &[1, 1, 2, 2]),
                    None,
                    Conv2dOptions { groups: 0, ..Default::default() },
                )
            },
            arg_err,
        ))
        .error(ErrorCase::new(
            "dtype mismatch",
            || r(1, &[1, 1, 4, 4]).conv2d(&r(2, &[1, 1, 2, 2]).to_dtype(DType::F32)?, None, Conv2dOptions::default()),
            dtype_err,
        ))
}

#[allow(clippy::too_many_arguments)]
fn conv1d_sample(
    desc: &str,
    x: Tensor,
    w_shape: &[usize],
    bias: bool,
    s: usize,
    p: usize,
    d: usize,
    g: usize,
) -> Sample {
    let mut inputs = vec![x, r(40, w_shape)];
    if bias {
        inputs.push(r(41, &[w_shape[0]]));
    }
    Sample::call(
        desc,
        inputs,
        call!(|i| Ok(vec![i[0].conv1d(
            &i[1],
            i.get(2),
            Conv1dOptions { stride: s, padding: p, dilation: d, groups: g }
        )?])),
        move |a| {
            if a[0].shape.len() == 2 {
                vec![unbatch(refs::conv1d(&batch1(&a[0]), &a[1], a.get(2), s, p, d, g))]
            } else {
                vec![refs::conv1d(&a[0], &a[1], a.get(2), s, p, d, g)]
            }
        },
    )
}

fn conv1d_record() -> OpInfo {
    OpInfo::new("conv1d", FLOATS, true)
        .sample(conv1d_sample("k3, bias, batch 2", r(1, &[2, 3, 10]), &[4, 3, 3], true, 1, 0, 1, 1))
        .sample(conv1d_sample("stride 2, pad 1, dilation 2", r(2, &[1, 2, 11]), &[3, 2, 3], false, 2, 1, 2, 1))
        .sample(conv1d_sample("groups 3", r(3, &[2, 6, 8]), &[3, 2, 3], true, 1, 2, 1, 3))
        .sample(conv1d_sample("unbatched", r(4, &[3, 7]), &[2, 3, 4], true, 3, 1, 1, 1))
        .sample(conv1d_sample("transposed input", transposed(5, &[2, 3, 6]), &[2, 3, 2], false, 1, 0, 1, 1))
        .error(ErrorCase::new(
            "4-D input",
            || r(1, &[1, 1, 1, 4]).conv1d(&r(2, &[1, 1, 2]), None, Conv1dOptions::default()),
            shape_err,
        ))
        .error(ErrorCase::new(
            "channel mismatch",
            || r(1, &[1, 2, 5]).conv1d(&r(2, &[1, 3, 2]), None, Conv1dOptions::default()),
            shape_err,
        ))
        .error(ErrorCase::new(
            "kernel larger than padded input",
            || r(1, &[1, 1, 3]).conv1d(&r(2, &[1, 1, 6]), None, Conv1dOptions { padding: 1, ..Default::default() }),
            shape_err,
        ))
        .error(ErrorCase::new(
            "zero dilation",
            || r(1, &[1, 1, 5]).conv1d(&r(2, &[1, 1, 2]), None, Conv1dOptions { dilation: 0, ..Default::default() }),
            arg_err,
        ))
}

#[allow(clippy::too_many_arguments)]
fn convt_sample(
    desc: &str,
    x: Tensor,
    w_shape: &[usize],
    bias: bool,
    s: [usize; 2],
    p: [usize; 2],
    op: [usize; 2],
    d: [usize; 2],
    g: usize,
) -> Sample {
    let mut inputs = vec![x, r(50, w_shape)];
    if bias {
        inputs.push(r(51, &[w_shape[1] * g]));
    }
    Sample::call(
        desc,
        inputs,
        call!(|i| Ok(vec![i[0].conv_transpose2d(
            &i[1],
            i.get(2),
            ConvTranspose2dOptions { stride: s, padding: p, output_padding: op, groups: g, dilation: d }
        )?])),
        move |a| {
            if a[0].shape.len() == 3 {
                vec![unbatch(refs::conv_transpose2d(&batch1(&a[0]), &a[1], a.get(2), s, p, op, d, g))]
            } else {
                vec![refs::conv_transpose2d(&a[0], &a[1], a.get(2), s, p, op, d, g)]
            }
        },
    )
}

fn conv_transpose2d_record() -> OpInfo {
    OpInfo::new("conv_transpose2d", FLOATS, true)
        .sample(convt_sample(
            "3x3, bias, batch 2",
            r(1, &[2, 3, 4, 4]),
            &[3, 2, 3, 3],
            true,
            [1, 1],
            [0, 0],
            [0, 0],
            [1, 1],
            1,
        ))
        .sample(convt_sample(
            "stride 2, pad 1, output_padding 1",
            r(2, &[1, 2, 3, 4]),
            &[2, 3, 3, 3],
            false,
            [2, 2],
            [1, 1],
            [1, 1],
            [1, 1],
            1,
        ))
        .sample(convt_sample(
            "non-square kernel, dilation 2, stride (2, 1)",
            r(3, &[2, 2, 3, 3]),
            &[2, 2, 2, 3],
            true,
            [2, 1],
            [0, 1],
            [0, 1],
            [1, 2],
            1,
        ))
        .sample(convt_sample("groups 2", r(4, &[1, 4, 3, 3]), &[4, 3, 2, 2], true, [2, 2], [0, 0], [0, 0], [1, 1], 2))
        .sample(convt_sample("unbatched", r(5, &[2, 3, 2]), &[2, 1, 2, 2], false, [1, 2], [1, 0], [0, 1], [1, 1], 1))
        .sample(convt_sample(
            "transposed input",
            transposed(6, &[2, 2, 3, 4]),
            &[2, 2, 3, 2],
            true,
            [1, 1],
            [1, 1],
            [0, 0],
            [1, 1],
            1,
        ))
        .error(ErrorCase::new(
            "weight in-channels mismatch",
            || r(1, &[1, 3, 4, 4]).conv_transpose2d(&r(2, &[2, 2, 3, 3]), None, ConvTranspose2dOptions::default()),
            shape_err,
        ))
        .error(ErrorCase::new(
            "2-D input",
            || r(1, &[4, 4]).conv_transpose2d(&r(2, &[1, 1, 3, 3]), None, ConvTranspose2dOptions::default()),
            shape_err,
        ))
        .error(ErrorCase::new(
            "output_padding not smaller than stride or dilation",
            || {
                r(1, &[1, 1, 4, 4]).conv_transpose2d(
                    &r(2, &[1, 1, 3, 3]),
                    None,
                    ConvTranspose2dOptions { stride: [2, 2], output_padding: [2, 0], ..Default::default() },
                )
            },
            arg_err,
        ))
        .error(ErrorCase::new(
            "padding leaves nothing",
            || {
                r(1, &[1, 1, 1, 1]).conv_transpose2d(
                    &r(2, &[1, 1, 1, 1]),
                    None,
                    ConvTranspose2dOptions { padding: [1, 1], ..Default::default() },
                )
            },
            shape_err,
        ))
}

type PoolArgs = ([usize; 2], [usize; 2], [usize; 2], [usize; 2], bool);

fn max_pool_cases() -> Vec<(&'static str, Tensor, PoolArgs)> {
    vec![
        ("2x2 stride 2, batch 2", r(1, &[2, 3, 6, 6]), ([2, 2], [2, 2], [0, 0], [1, 1], false)),
        ("3x3 stride 2 pad 1", r(2, &[1, 2, 7, 7]), ([3, 3], [2, 2], [1, 1], [1, 1], false)),
        ("ceil_mode", r(3, &[1, 2, 6, 6]), ([3, 3], [2, 2], [0, 0], [1, 1], true)),
        ("ceil_mode with padding", r(4, &[2, 1, 5, 6]), ([3, 2], [2, 2], [1, 1], [1, 1], true)),
        ("dilation 2", r(5, &[1, 2, 7, 6]), ([2, 2], [1, 1], [0, 1], [2, 2], false)),
        ("non-square kernel and stride", r(6, &[1, 3, 5, 8]), ([2, 3], [1, 2], [1, 1], [1, 1], false)),
        ("unbatched", r(7, &[2, 4, 5]), ([2, 2], [1, 2], [0, 0], [1, 1], false)),
        ("transposed input", transposed(8, &[2, 2, 5, 6]), ([3, 3], [1, 1], [1, 0], [1, 1], true)),
    ]
}

fn pool_ref(a: &RefArray, f: impl Fn(&RefArray) -> Vec<RefArray>) -> Vec<RefArray> {
    if a.shape.len() == 3 {
        f(&batch1(a)).into_iter().map(unbatch).collect()
    } else {
        f(a)
    }
}

fn max_pool_errors(op: OpInfo, with_indices: bool) -> OpInfo {
    let run = move |x: Tensor, k: [usize; 2], s: [usize; 2], p: [usize; 2], d: [usize; 2]| {
        if with_indices {
            x.max_pool2d_with_indices(
                k,
                MaxPool2dOptions { stride: Some(s), padding: p, dilation: d, ..Default::default() },
            )
            .map(|_| ())
        } else {
            x.max_pool2d(k, MaxPool2dOptions { stride: Some(s), padding: p, dilation: d, ..Default::default() })
                .map(|_| ())
        }
    };
    op.error(ErrorCase::new("2-D input", move || run(r(1, &[4, 4]), [2, 2], [2, 2], [0, 0], [1, 1]), invalid_shape))
        .error(ErrorCase::new(
            "kernel larger than input",
            move || run(r(1, &[1, 1, 3, 3]), [4, 4], [1, 1], [0, 0], [1, 1]),
            invalid_shape,
        ))
        .error(ErrorCase::new(
            "padding over half the kernel",
            move || run(r(1, &[1, 1, 5, 5]), [2, 2], [1, 1], [2, 2], [1, 1]),
            arg_err,
        ))
        .error(ErrorCase::new("zero stride", move || run(r(1, &[1, 1, 5, 5]), [2, 2], [0, 1], [0, 0], [1, 1]), arg_err))
        .error(ErrorCase::new(
            "integer input",
            move || {
                run(
                    Tensor::zeros([1, 1, 4, 4], DType::I64, &tensor_core::Device::cpu())?,
                    [2, 2],
                    [2, 2],
                    [0, 0],
                    [1, 1],
                )
            },
            unsupported,
        ))
}

fn max_pool2d_record() -> OpInfo {
    let mut op = OpInfo::new("max_pool2d", FLOATS, true);
    for (desc, x, (k, s, p, d, c)) in max_pool_cases() {
        op = op.sample(Sample::call(
            desc,
            vec![x],
            call!(|i| Ok(vec![
                i[0].max_pool2d(k, MaxPool2dOptions { stride: Some(s), padding: p, dilation: d, ceil_mode: c })?
            ])),
            move |a| pool_ref(&a[0], |x| vec![refs::max_pool2d(x, k, s, p, d, c).0]),
        ));
    }
    max_pool_errors(op, false)
}

fn max_pool2d_with_indices_record() -> OpInfo {
    let mut op = OpInfo::new("max_pool2d_with_indices", FLOATS, true);
    for (desc, x, (k, s, p, d, c)) in max_pool_cases() {
        op = op.sample(Sample::call(
            desc,
            vec![x],
            call!(|i| {
                let (v, ix) = i[0].max_pool2d_with_indices(
                    k,
                    MaxPool2dOptions { stride: Some(s), padding: p, dilation: d, ceil_mode: c },
                )?;
                Ok(vec![v, crate::lift(ix)])
            }),
            move |a| {
                pool_ref(&a[0], |x| {
                    let (v, ix) = refs::max_pool2d(x, k, s, p, d, c);
                    vec![v, ix]
                })
            },
        ));
    }
    max_pool_errors(op, true)
}

fn max_pool2d_backward_record() -> OpInfo {
    let mut op = OpInfo::new("max_pool2d_backward", FLOATS, false);
    for (desc, x, (k, s, p, d, c)) in max_pool_cases() {
        let o = MaxPool2dOptions { stride: Some(s), padding: p, dilation: d, ceil_mode: c };
        let (v, _) = x.max_pool2d_with_indices(k, o).expect("the forward of a valid case");
        let g = r(40, v.dims());
        let size = [x.dims()[x.rank() - 2], x.dims()[x.rank() - 1]];
        op = op.sample(Sample::new(
            desc,
            vec![x, g],
            move |i| {
                let (_, ix) = i[0].max_pool2d_with_indices(k, o)?;
                Ok(vec![i[1].max_pool2d_backward(&ix, size)?])
            },
            move |a| {
                // The naive forward's indices, then each gradient element added there.
                let (x, g) = (&a[0], &a[1]);
                let (x4, g4) = if x.shape.len() == 3 { (batch1(x), batch1(g)) } else { (x.clone(), g.clone()) };
                let ix = refs::max_pool2d(&x4, k, s, p, d, c).1;
                let plane = size[0] * size[1];
                let per = g4.data.len() / (g4.shape[0] * g4.shape[1]).max(1);
                let mut out = vec![0.0; x.data.len()];
                for (j, (&gv, &k)) in g4.data.iter().zip(&ix.data).enumerate() {
                    out[j / per * plane + k as usize] += gv;
                }
                vec![RefArray::new(x.shape.clone(), out)]
            },
        ));
    }
    // A gradient that is a view into a larger buffer (as `cat`'s backward hands each
    // part): contiguous, but at an offset the indices do not share.
    let x = r(1, &[2, 3, 6, 6]);
    let g = r(41, &[4, 3, 3, 3]).narrow(0, 1, 2).expect("narrow");
    op = op.sample(Sample::new(
        "gradient at an offset in its buffer",
        vec![x, g],
        |i| {
            let (_, ix) = i[0].max_pool2d_with_indices([2, 2], MaxPool2dOptions::default())?;
            Ok(vec![i[1].max_pool2d_backward(&ix, [6, 6])?])
        },
        |a| {
            let ix = refs::max_pool2d(&a[0], [2, 2], [2, 2], [0, 0], [1, 1], false).1;
            let mut out = vec![0.0; a[0].data.len()];
            for (j, (&gv, &k)) in a[1].data.iter().zip(&ix.data).enumerate() {
                out[j / 9 * 36 + k as usize] += gv;
            }
            vec![RefArray::new(a[0].shape.clone(), out)]
        },
    ));
    let i64s = |v: Vec<i64>, s: &[usize]| Tensor::from_vec(v, s.to_vec());
    op.error(ErrorCase::new(
        "index outside the plane",
        move || r(1, &[1, 1, 1, 2]).max_pool2d_backward(&i64s(vec![0, 4], &[1, 1, 1, 2])?, [2, 2]),
        arg_err,
    ))
    .error(ErrorCase::new(
        "negative index",
        move || r(1, &[1, 1, 1, 2]).max_pool2d_backward(&i64s(vec![-1, 0], &[1, 1, 1, 2])?, [2, 2]),
        arg_err,
    ))
    .error(ErrorCase::new(
        "indices of another shape",
        move || r(1, &[1, 1, 1, 2]).max_pool2d_backward(&i64s(vec![0], &[1, 1, 1, 1])?, [2, 2]),
        shape_err,
    ))
    .error(ErrorCase::new(
        "I32 indices",
        move || r(1, &[1, 1, 1, 1]).max_pool2d_backward(&Tensor::from_vec(vec![0i32], [1, 1, 1, 1])?, [2, 2]),
        dtype_err,
    ))
    .error(ErrorCase::new(
        "2-D gradient",
        move || r(1, &[1, 2]).max_pool2d_backward(&i64s(vec![0, 1], &[1, 2])?, [2, 2]),
        invalid_shape,
    ))
    .error(ErrorCase::new(
        "integer gradient",
        move || Tensor::from_vec(vec![1i64], [1, 1, 1])?.max_pool2d_backward(&i64s(vec![0], &[1, 1, 1])?, [1, 1]),
        unsupported,
    ))
}

fn avg_pool2d_record() -> OpInfo {
    type Args = ([usize; 2], [usize; 2], [usize; 2], bool, bool, Option<usize>);
    let cases: Vec<(&str, Tensor, Args)> = vec![
        ("2x2 stride 2, batch 2", r(1, &[2, 3, 6, 6]), ([2, 2], [2, 2], [0, 0], false, true, None)),
        ("3x3 stride 2 pad 1, count_include_pad", r(2, &[1, 2, 7, 7]), ([3, 3], [2, 2], [1, 1], false, true, None)),
        ("3x3 stride 2 pad 1, exclude pad", r(3, &[1, 2, 7, 7]), ([3, 3], [2, 2], [1, 1], false, false, None)),
        ("ceil_mode, include pad", r(4, &[2, 1, 6, 5]), ([3, 2], [2, 2], [1, 1], true, true, None)),
        ("ceil_mode, exclude pad", r(5, &[2, 1, 6, 5]), ([3, 2], [2, 2], [1, 1], true, false, None)),
        ("ceil_mode, no pad", r(6, &[1, 2, 6, 6]), ([3, 3], [2, 2], [0, 0], true, true, None)),
        ("non-square kernel", r(7, &[1, 3, 5, 8]), ([2, 3], [1, 2], [1, 1], false, true, None)),
        ("unbatched", r(8, &[2, 4, 5]), ([2, 2], [1, 2], [0, 0], false, true, None)),
        ("transposed input", transposed(9, &[2, 2, 5, 6]), ([3, 3], [1, 1], [1, 0], true, false, None)),
        ("divisor_override, pad 1", r(10, &[1, 2, 5, 5]), ([3, 3], [2, 2], [1, 1], false, true, Some(3))),
        (
            "divisor_override, ceil_mode, exclude pad",
            r(11, &[2, 1, 6, 5]),
            ([3, 2], [2, 2], [1, 1], true, false, Some(5)),
        ),
    ];
    let mut op = OpInfo::new("avg_pool2d", FLOATS, true);
    for (desc, x, (k, s, p, c, inc, div)) in cases {
        let o = AvgPool2dOptions {
            stride: Some(s),
            padding: p,
            ceil_mode: c,
            count_include_pad: inc,
            divisor_override: div,
        };
        op = op.sample(Sample::call(desc, vec![x], call!(|i| Ok(vec![i[0].avg_pool2d(k, o)?])), move |a| {
            pool_ref(&a[0], |x| vec![refs::avg_pool2d(x, k, s, p, c, inc, div)])
        }));
    }
    op.error(ErrorCase::new(
        "zero divisor_override",
        || r(1, &[1, 1, 4, 4]).avg_pool2d([2, 2], AvgPool2dOptions { divisor_override: Some(0), ..Default::default() }),
        arg_err,
    ))
    .error(ErrorCase::new(
        "5-D input",
        || r(1, &[1, 1, 1, 4, 4]).avg_pool2d([2, 2], AvgPool2dOptions { stride: Some([2, 2]), ..Default::default() }),
        invalid_shape,
    ))
    .error(ErrorCase::new(
        "padding over half the kernel",
        || {
            r(1, &[1, 1, 5, 5])
                .avg_pool2d([3, 3], AvgPool2dOptions { stride: Some([1, 1]), padding: [2, 2], ..Default::default() })
        },
        arg_err,
    ))
    .error(ErrorCase::new(
        "kernel larger than padded input",
        || {
            r(1, &[1, 1, 2, 2])
                .avg_pool2d([5, 5], AvgPool2dOptions { stride: Some([1, 1]), padding: [1, 1], ..Default::default() })
        },
        invalid_shape,
    ))
}

fn adaptive_avg_pool2d_record() -> OpInfo {
    let cases: Vec<(&str, Tensor, [usize; 2])> = vec![
        ("uneven windows", r(1, &[2, 3, 7, 5]), [3, 2]),
        ("global", r(2, &[2, 2, 4, 6]), [1, 1]),
        ("even division", r(3, &[1, 2, 4, 4]), [2, 2]),
        ("output larger than input", r(4, &[1, 1, 3, 3]), [4, 5]),
        ("unbatched", r(5, &[3, 5, 5]), [2, 3]),
        ("transposed input", transposed(6, &[2, 2, 5, 6]), [3, 4]),
    ];
    let mut op = OpInfo::new("adaptive_avg_pool2d", FLOATS, true);
    for (desc, x, o) in cases {
        op = op.sample(Sample::call(desc, vec![x], call!(|i| Ok(vec![i[0].adaptive_avg_pool2d(o)?])), move |a| {
            vec![refs::adaptive_avg_pool2d(&a[0], o)]
        }));
    }
    op.error(ErrorCase::new("2-D input", || r(1, &[4, 4]).adaptive_avg_pool2d([2, 2]), invalid_shape))
        .error(ErrorCase::new("empty spatial dim", || r(1, &[1, 1, 0, 4]).adaptive_avg_pool2d([2, 2]), invalid_shape))
}

fn pad_record() -> OpInfo {
    let cases: Vec<(&str, Tensor, Vec<usize>, PadMode, refs::Mode)> = vec![
        ("constant, last dim", int_t(1, &[2, 3], -5, 5), vec![1, 2], PadMode::Constant(3.0), refs::Mode::Constant(3.0)),
        (
            "constant, two dims",
            int_t(2, &[2, 3, 4], -5, 5),
            vec![1, 2, 0, 1],
            PadMode::Constant(0.0),
            refs::Mode::Constant(0.0),
        ),
        (
            "constant, all three dims",
            int_t(3, &[2, 2, 2], -5, 5),
            vec![1, 0, 0, 2, 1, 1],
            PadMode::Constant(7.0),
            refs::Mode::Constant(7.0),
        ),
        ("reflect 1-D", int_t(4, &[5], -5, 5), vec![2, 4], PadMode::Reflect, refs::Mode::Reflect),
        ("reflect two dims", int_t(5, &[1, 3, 4], -5, 5), vec![1, 3, 2, 1], PadMode::Reflect, refs::Mode::Reflect),
        (
            "replicate two dims",
            int_t(6, &[2, 3, 3], -5, 5),
            vec![2, 0, 1, 3],
            PadMode::Replicate,
            refs::Mode::Replicate,
        ),
        ("replicate size-1 dim", int_t(7, &[2, 1], -5, 5), vec![2, 2], PadMode::Replicate, refs::Mode::Replicate),
        ("zero pads", int_t(8, &[2, 3], -5, 5), vec![0, 0], PadMode::Reflect, refs::Mode::Reflect),
        (
            "constant on zero-size",
            int_t(9, &[0, 3], -5, 5),
            vec![1, 1],
            PadMode::Constant(2.0),
            refs::Mode::Constant(2.0),
        ),
        (
            "transposed input, reflect",
            transposed(10, &[3, 4]).mul_scalar(5.0).expect("mul").floor().expect("floor"),
            vec![1, 2, 2, 1],
            PadMode::Reflect,
            refs::Mode::Reflect,
        ),
    ];
    let mut op = OpInfo::new("pad", NUMERIC, true);
    for (desc, x, pads, mode, rmode) in cases {
        let p2 = pads.clone();
        op = op.sample(Sample::call(desc, vec![x], call!([pads] | i | Ok(vec![i[0].pad(&pads, mode)?])), move |a| {
            vec![refs::pad(&a[0], &p2, rmode)]
        }));
    }
    op.error(ErrorCase::new("odd pad length", || r(1, &[2, 3]).pad(&[1], PadMode::Constant(0.0)), arg_err))
        .error(ErrorCase::new("more pads than dims", || r(1, &[3]).pad(&[1, 1, 1, 1], PadMode::Constant(0.0)), arg_err))
        .error(ErrorCase::new(
            "reflect pad equal to the dim size",
            || r(1, &[2, 3]).pad(&[3, 0], PadMode::Reflect),
            arg_err,
        ))
        .error(ErrorCase::new("replicate an empty dim", || r(1, &[2, 0]).pad(&[1, 0], PadMode::Replicate), arg_err))
}

fn embedding_record() -> OpInfo {
    let s = |desc: &str, w: Tensor, idx: Tensor| {
        Sample::call(desc, vec![w, idx], call!(|i| Ok(vec![i[0].embedding_lookup(i[1].tensor())?])), |a| {
            vec![refs::embedding(&a[0], &a[1])]
        })
        .with_cast(vec![true, false])
    };
    OpInfo::new("embedding", NUMERIC, true)
        .sample(s("2-D indices", int_t(1, &[5, 3], -9, 9), idx_t(&[0, 4, 2, 2, 1, 3], &[2, 3])))
        .sample(s("1-D indices with repeats", r(2, &[4, 2]), idx_t(&[3, 3, 0], &[3])))
        .sample(s("0-dim index", r(3, &[4, 3]), Tensor::scalar(2i64)))
        .sample(s("empty indices", r(4, &[4, 3]), idx_t(&[], &[0])))
        .sample(s("I32 indices", r(5, &[3, 2]), Tensor::from_vec(vec![2i32, 0], [2]).expect("numel")))
        .sample(s("transposed weight", transposed(6, &[5, 4]), idx_t(&[1, 0, 4], &[3, 1])))
        .error(ErrorCase::new("index too large", || r(1, &[3, 2]).embedding(&idx_t(&[0, 3], &[2])), index_err))
        .error(ErrorCase::new("negative index", || r(1, &[3, 2]).embedding(&idx_t(&[-1], &[1])), index_err))
        .error(ErrorCase::new("float indices", || r(1, &[3, 2]).embedding(&r(2, &[2])), dtype_err))
        .error(ErrorCase::new("1-D weight", || r(1, &[3]).embedding(&idx_t(&[0], &[1])), shape_err))
}

fn layer_norm_record() -> OpInfo {
    let s = |desc: &str, x: Tensor, ns: Vec<usize>, w: bool, b: bool| {
        let mut inputs = vec![x];
        if w {
            inputs.push(rand_t(30, &ns, 0.5, 1.5));
        }
        if b {
            inputs.push(r(31, &ns));
        }
        let k = ns.len();
        Sample::call(
            desc,
            inputs,
            call!(
                [ns] | i | {
                    let wt = if w { Some(&i[1]) } else { None };
                    let bt = if b { Some(&i[if w { 2 } else { 1 }]) } else { None };
                    Ok(vec![i[0].layer_norm(&ns, wt, bt, 1e-5)?])
                }
            ),
            move |a| {
                let wt = if w { Some(&a[1]) } else { None };
                let bt = if b { Some(&a[if w { 2 } else { 1 }]) } else { None };
                vec![refs::layer_norm(&a[0], k, wt, bt, 1e-5)]
            },
        )
    };
    OpInfo::new("layer_norm", FLOATS, true)
        .sample(s("last dim, affine", r(1, &[2, 3, 4]), vec![4], true, true))
        .sample(s("two dims, no affine", r(2, &[2, 3, 4]), vec![3, 4], false, false))
        .sample(s("1-D input, weight only", r(3, &[6]), vec![6], true, false))
        .sample(s("bias only", r(4, &[3, 5]), vec![5], false, true))
        .sample(s("offset values (stability)", rand_t(5, &[3, 8], 50.0, 52.0), vec![8], true, true))
        .sample(s("transposed input", transposed(6, &[3, 4]), vec![4], true, true))
        .error(ErrorCase::new("shape mismatch", || r(1, &[2, 3]).layer_norm(&[4], None, None, 1e-5), shape_err))
        .error(ErrorCase::new("empty normalized_shape", || r(1, &[2, 3]).layer_norm(&[], None, None, 1e-5), arg_err))
        .error(ErrorCase::new(
            "weight of wrong shape",
            || r(1, &[2, 3]).layer_norm(&[3], Some(&r(2, &[2])), None, 1e-5),
            shape_err,
        ))
}

/// Batch-norm sample; the op copies the running stats so the sample's inputs stay
/// untouched, and returns `[y]` or `[y, running_mean, running_var]`.
fn bn_sample(desc: &str, x: Tensor, stats: bool, affine: bool, training: bool, return_stats: bool) -> Sample {
    let c = x.dims()[1];
    let mut inputs = vec![x];
    if stats {
        inputs.push(r(60, &[c]));
        inputs.push(rand_t(61, &[c], 0.5, 2.0));
    }
    if affine {
        inputs.push(rand_t(62, &[c], 0.5, 1.5));
        inputs.push(r(63, &[c]));
    }
    let (m, eps) = (0.1, 1e-5);
    let a0 = if stats { 3 } else { 1 };
    Sample::call(
        desc,
        inputs,
        call!(|i| {
            let rm = if stats { Some(i[1].tensor().copy()?) } else { None };
            let rv = if stats { Some(i[2].tensor().copy()?) } else { None };
            let (w, b) = if affine { (Some(&i[a0]), Some(&i[a0 + 1])) } else { (None, None) };
            let y = i[0].batch_norm(rm.as_ref(), rv.as_ref(), w, b, training, m, eps)?;
            let mut out = vec![y];
            if return_stats {
                out.extend(rm.map(crate::lift));
                out.extend(rv.map(crate::lift));
            }
            Ok(out)
        }),
        move |a| {
            let (w, b) = if affine { (Some(&a[a0]), Some(&a[a0 + 1])) } else { (None, None) };
            let (rm, rv) = if stats { (Some(&a[1]), Some(&a[2])) } else { (None, None) };
            let (y, nm, nv) = refs::batch_norm(&a[0], rm, rv, w, b, training, m, eps);
            let mut out = vec![y];
            if return_stats {
                out.extend(nm);
                out.extend(nv);
            }
            out
        },
    )
    .with_constants(if stats { &[1, 2] } else { &[] })
}

fn batch_norm_record() -> OpInfo {
    OpInfo::new("batch_norm", FLOATS, true)
        .sample(bn_sample("training, 2-D input, affine", r(1, &[6, 3]), true, true, true, false))
        .sample(bn_sample("training, 4-D input, affine", r(2, &[2, 3, 3, 2]), true, true, true, false))
        .sample(bn_sample("training, no running stats, no affine", r(3, &[3, 2, 4]), false, false, true, false))
        .sample(bn_sample("eval with running stats", r(4, &[2, 3, 2, 2]), true, true, false, false))
        .sample(bn_sample("eval, no affine", r(5, &[4, 2]), true, false, false, false))
        .sample(bn_sample("transposed input", transposed(6, &[2, 3, 4, 3]), true, true, true, false))
        .error(ErrorCase::new(
            "running_mean of wrong size",
            || r(1, &[4, 3]).batch_norm(Some(&r(2, &[2])), Some(&r(3, &[3])), None, None, true, 0.1, 1e-5),
            shape_err,
        ))
        .error(ErrorCase::new(
            "weight of wrong size",
            || r(1, &[4, 3]).batch_norm(None, None, Some(&r(2, &[4])), None, true, 0.1, 1e-5),
            shape_err,
        ))
        .error(ErrorCase::new(
            "eval without running stats",
            || r(1, &[4, 3]).batch_norm(None, None, None, None, false, 0.1, 1e-5),
            arg_err,
        ))
        .error(ErrorCase::new(
            "one value per channel in training",
            || r(1, &[1, 3]).batch_norm(None, None, None, None, true, 0.1, 1e-5),
            arg_err,
        ))
        .error(ErrorCase::new(
            "1-D input",
            || r(1, &[3]).batch_norm(None, None, None, None, true, 0.1, 1e-5),
            invalid_shape,
        ))
}

/// The in-place running-statistics update of `batch_norm` in training mode (not
/// differentiable: the stats are buffers).
fn batch_norm_stats_record() -> OpInfo {
    OpInfo::new("batch_norm_running_stats", FLOATS, false)
        .sample(bn_sample("2-D input", r(1, &[5, 3]), true, false, true, true))
        .sample(bn_sample("4-D input, affine", r(2, &[3, 2, 2, 3]), true, true, true, true))
        .sample(bn_sample("eval leaves stats unchanged", r(3, &[3, 2, 2]), true, true, false, true))
}

fn dropout_record() -> OpInfo {
    let s = |desc: &str, p: f64, training: bool, zero: bool| {
        Sample::call(desc, vec![r(1, &[3, 4])], call!(|i| Ok(vec![i[0].dropout(p, training)?])), move |a| {
            vec![if zero { a[0].map(|_| 0.0) } else { a[0].clone() }]
        })
    };
    OpInfo::new("dropout", FLOATS, true)
        .sample(s("eval is identity", 0.5, false, false))
        .sample(s("p = 0 is identity", 0.0, true, false))
        .sample(s("p = 1 zeroes everything", 1.0, true, true))
        .error(ErrorCase::new("p > 1", || r(1, &[3]).dropout(1.5, true), arg_err))
        .error(ErrorCase::new("p < 0", || r(1, &[3]).dropout(-0.1, true), arg_err))
        .error(ErrorCase::new("p NaN", || r(1, &[3]).dropout(f64::NAN, false), arg_err))
}

fn dropout_mask_record() -> OpInfo {
    let seeded = |desc: &str, shape: &[usize], p: f64, seed: u64| {
        Sample::new(
            desc,
            vec![r(1, shape)],
            move |i| Ok(vec![i[0].dropout_mask_with(&mut Generator::new(seed), p)?]),
            move |a| {
                let keep = 1.0 - p;
                let u = Generator::new(seed).uniform_f64(a[0].numel());
                let v = u.into_iter().map(|u| if u < keep { 1.0 / keep } else { 0.0 }).collect();
                vec![RefArray::new(a[0].shape.clone(), v)]
            },
        )
    };
    OpInfo::new("dropout_mask", FLOATS, false)
        .covers(&["dropout_mask_with"])
        .sample(seeded("explicit generator, p = 0.3", &[4, 5], 0.3, 11))
        .sample(seeded("explicit generator, p = 0.5, 3-D", &[2, 3, 4], 0.5, 12))
        .sample(seeded("p = 0 keeps everything", &[3, 3], 0.0, 13))
        .sample(seeded("p = 1 drops everything", &[3, 3], 1.0, 14))
        .sample(seeded("zero-size", &[0, 3], 0.2, 15))
        .sample(Sample::new(
            "global generator: entries are 0 or 1/(1-p)",
            vec![r(2, &[6, 7])],
            |i| {
                let m = i[0].dropout_mask(0.5)?;
                Ok(vec![m.mul(&m.sub_scalar(2.0)?)?])
            },
            |a| vec![a[0].map(|_| 0.0)],
        ))
        .sample(Sample::new(
            "dropout in training: each output is 0 or x/(1-p)",
            vec![r(3, &[5, 6])],
            |i| {
                let y = i[0].dropout(0.5, true)?;
                Ok(vec![y.mul(&y.sub(&i[0].mul_scalar(2.0)?)?)?])
            },
            |a| vec![a[0].map(|_| 0.0)],
        ))
        .error(ErrorCase::new("p > 1", || r(1, &[3]).dropout_mask(1.01), arg_err))
        .error(ErrorCase::new("p < 0", || r(1, &[3]).dropout_mask_with(&mut Generator::new(1), -0.5), arg_err))
        .error(ErrorCase::new("integer tensor", || Tensor::new(&[1i64, 2]).dropout_mask(0.5), unsupported))
}

type Geometry = ([usize; 2], [usize; 2], [usize; 2], [usize; 2]);

fn unfold2d_sample(desc: &str, x: Tensor, geo: Geometry) -> Sample {
    let (k, d, p, s) = geo;
    Sample::call(desc, vec![x], call!(|i| Ok(vec![i[0].unfold2d(k, d, p, s)?])), move |a| {
        if a[0].shape.len() == 3 {
            vec![unbatch(refs::unfold2d(&batch1(&a[0]), k, d, p, s))]
        } else {
            vec![refs::unfold2d(&a[0], k, d, p, s)]
        }
    })
}

fn unfold2d_record() -> OpInfo {
    OpInfo::new("unfold2d", FLOATS, true)
        .sample(unfold2d_sample("2x2 blocks of [2,3,4,5]", r(1, &[2, 3, 4, 5]), ([2, 2], [1, 1], [0, 0], [1, 1])))
        .sample(unfold2d_sample(
            "3x2, stride 2, pad 1, dilation 2",
            r(2, &[1, 2, 7, 6]),
            ([3, 2], [2, 1], [1, 1], [2, 1]),
        ))
        .sample(unfold2d_sample("unbatched [2,5,5], pad 2", r(3, &[2, 5, 5]), ([3, 3], [1, 1], [2, 0], [1, 2])))
        .sample(unfold2d_sample("transposed input", transposed(4, &[2, 2, 4, 3]), ([2, 2], [1, 1], [1, 0], [1, 1])))
        .sample(unfold2d_sample("1x1 kernel", r(5, &[1, 3, 2, 3]), ([1, 1], [1, 1], [0, 0], [1, 1])))
        .error(ErrorCase::new(
            "kernel larger than the padded input",
            || r(1, &[1, 1, 3, 3]).unfold2d([4, 2], [1, 1], [0, 0], [1, 1]),
            invalid_shape,
        ))
        .error(ErrorCase::new("2-D input", || r(1, &[3, 3]).unfold2d([2, 2], [1, 1], [0, 0], [1, 1]), invalid_shape))
        .error(ErrorCase::new("zero stride", || r(1, &[1, 1, 3, 3]).unfold2d([2, 2], [1, 1], [0, 0], [0, 1]), arg_err))
}

fn fold2d_sample(desc: &str, cols: Tensor, size: [usize; 2], geo: Geometry) -> Sample {
    let (k, d, p, s) = geo;
    Sample::call(desc, vec![cols], call!(|i| Ok(vec![i[0].fold2d(size, k, d, p, s)?])), move |a| {
        if a[0].shape.len() == 2 {
            vec![unbatch(refs::fold2d(&batch1(&a[0]), size, k, d, p, s))]
        } else {
            vec![refs::fold2d(&a[0], size, k, d, p, s)]
        }
    })
}

fn fold2d_record() -> OpInfo {
    OpInfo::new("fold2d", FLOATS, true)
        // [4,5] plane, 2x2 blocks: 3 x 4 = 12 blocks.
        .sample(fold2d_sample("2x2 blocks into [4,5]", r(1, &[2, 12, 12]), [4, 5], ([2, 2], [1, 1], [0, 0], [1, 1])))
        // [7,6] plane, 3x2 blocks, dilation [2,1], pad 1, stride [2,1]: 3 x 7 blocks.
        .sample(fold2d_sample(
            "3x2, stride 2, pad 1, dilation 2",
            r(2, &[1, 12, 21]),
            [7, 6],
            ([3, 2], [2, 1], [1, 1], [2, 1]),
        ))
        // Unbatched, [5,5] plane, 3x3 blocks, pad [2,0], stride [1,2]: 7 x 2 blocks.
        .sample(fold2d_sample("unbatched, pad 2", r(3, &[18, 14]), [5, 5], ([3, 3], [1, 1], [2, 0], [1, 2])))
        .sample(fold2d_sample("transposed input", transposed(4, &[1, 8, 6]), [3, 4], ([2, 2], [1, 1], [0, 0], [1, 1])))
        .error(ErrorCase::new(
            "wrong number of blocks",
            || r(1, &[1, 4, 5]).fold2d([3, 3], [2, 2], [1, 1], [0, 0], [1, 1]),
            invalid_shape,
        ))
        .error(ErrorCase::new(
            "block dim not divisible by the kernel size",
            || r(1, &[1, 5, 4]).fold2d([3, 3], [2, 2], [1, 1], [0, 0], [1, 1]),
            invalid_shape,
        ))
        .error(ErrorCase::new(
            "4-D input",
            || r(1, &[1, 4, 2, 2]).fold2d([3, 3], [2, 2], [1, 1], [0, 0], [1, 1]),
            invalid_shape,
        ))
}

/// One attention sample: `(q, k, v)` and an optional mask as a fourth input (a
/// float mask takes the dtype under test and is a constant for the `Var` form).
#[allow(clippy::too_many_arguments)]
fn sdpa_sample(
    desc: &str,
    (q, k, v): (Tensor, Tensor, Tensor),
    mask: Option<Tensor>,
    dropout_p: f64,
    is_causal: bool,
    scale: Option<f64>,
) -> Sample {
    let e = q.dims()[q.rank() - 1];
    let ref_scale = scale.unwrap_or(1.0 / (e as f64).sqrt());
    let bool_mask = mask.as_ref().map(|m| m.dtype() == DType::Bool);
    let mut inputs = vec![q, k, v];
    inputs.extend(mask);
    let n = inputs.len();
    let sample = Sample::call(
        desc,
        inputs,
        call!(|x| {
            let opts = AttentionOpts { attn_mask: x.get(3).map(|m| m.tensor()), dropout_p, is_causal, scale };
            Ok(vec![T::scaled_dot_product_attention(&x[0], &x[1], &x[2], opts)?])
        }),
        move |a| {
            let (keep, bias) = match bool_mask {
                Some(true) => (a.get(3), None),
                Some(false) => (None, a.get(3)),
                None => (None, None),
            };
            let out = refs::attention(&a[0], &a[1], &a[2], keep, bias, is_causal, ref_scale);
            vec![if dropout_p == 1.0 { out.map(|_| 0.0) } else { out }]
        },
    );
    match bool_mask {
        Some(true) => sample.with_cast(vec![true, true, true, false]),
        Some(false) => sample.with_constants(&[n - 1]),
        None => sample,
    }
}

fn bool_t(v: &[bool], shape: &[usize]) -> Tensor {
    Tensor::from_vec(v.to_vec(), shape.to_vec()).expect("numel matches")
}

fn sdpa_record() -> OpInfo {
    let qkv = |seed: u64, q: &[usize], k: &[usize], v: &[usize]| (r(seed, q), r(seed + 1, k), r(seed + 2, v));
    // Row 1 of this [3,5] mask is all false: that query attends to nothing.
    let keep = || {
        bool_t(
            &[true, false, true, true, false, false, false, false, false, false, true, true, true, true, true],
            &[3, 5],
        )
    };
    let mut bias = vec![0.0; 2 * 3 * 5];
    for (i, b) in bias.iter_mut().enumerate() {
        *b = if i % 7 == 3 { f64::NEG_INFINITY } else { (i as f64 * 0.37).sin() };
    }
    let bias = Tensor::from_vec(bias, [2, 1, 3, 5]).expect("numel matches");
    let s = sdpa_sample;
    OpInfo::new("scaled_dot_product_attention", FLOATS, true)
        // The fused forward is what this record's unmasked f32/f64 samples run; its
        // backward is what the gradcheck of those samples runs (autograd's form), and
        // autograd's tests compare both with the composite at sizes that go parallel.
        .covers(&["check_attention", "attention_forward_fused", "attention_backward_fused"])
        .sample(s(
            "causal, 2 heads x 150 (fused GEMM-block kernel)",
            qkv(29, &[1, 2, 150, 8], &[1, 2, 150, 8], &[1, 2, 150, 8]),
            None,
            0.0,
            true,
            None,
        ))
        .sample(s(
            "causal, 8 heads x 40 (fused kernel, threads)",
            qkv(28, &[2, 4, 40, 16], &[2, 4, 40, 16], &[2, 4, 40, 16]),
            None,
            0.0,
            true,
            None,
        ))
        .sample(s("[2,3,4] x [2,5,4], no mask", qkv(1, &[2, 3, 4], &[2, 5, 4], &[2, 5, 3]), None, 0.0, false, None))
        .sample(s("heads [2,2,3,4]", qkv(4, &[2, 2, 3, 4], &[2, 2, 3, 4], &[2, 2, 3, 2]), None, 0.0, false, None))
        .sample(s(
            "bool mask [3,5] broadcast, one query fully masked (zeros)",
            qkv(7, &[2, 3, 4], &[2, 5, 4], &[2, 5, 3]),
            Some(keep()),
            0.0,
            false,
            None,
        ))
        .sample(s(
            "float mask [2,1,3,5] with -inf entries over heads",
            qkv(10, &[2, 2, 3, 4], &[2, 2, 5, 4], &[2, 2, 5, 3]),
            Some(bias),
            0.0,
            false,
            None,
        ))
        .sample(s("causal, square", qkv(13, &[2, 4, 3], &[2, 4, 3], &[2, 4, 3]), None, 0.0, true, None))
        .sample(s("causal, more queries than keys", qkv(16, &[5, 3], &[3, 3], &[3, 2]), None, 0.0, true, None))
        .sample(s(
            "causal, fewer queries than keys",
            qkv(19, &[2, 3, 4], &[2, 5, 4], &[2, 5, 4]),
            None,
            0.0,
            true,
            None,
        ))
        .sample(s("explicit scale 0.3", qkv(22, &[3, 4], &[5, 4], &[5, 2]), None, 0.0, false, Some(0.3)))
        .sample(s(
            "broadcast leading dims: q [2,3,4], k [1,5,4], v [5,3]",
            qkv(25, &[2, 3, 4], &[1, 5, 4], &[5, 3]),
            None,
            0.0,
            false,
            None,
        ))
        .sample(s("no keys (S = 0) gives zeros", qkv(28, &[2, 3, 4], &[2, 0, 4], &[2, 0, 3]), None, 0.0, false, None))
        .sample(s(
            "transposed (non-contiguous) inputs",
            (transposed(31, &[2, 4, 3]), transposed(32, &[2, 5, 3]), transposed(33, &[2, 5, 2])),
            None,
            0.0,
            true,
            None,
        ))
        .sample(s("dropout_p = 1 drops every weight", qkv(34, &[3, 4], &[5, 4], &[5, 2]), None, 1.0, false, None))
        .error(ErrorCase::new(
            "feature dims differ",
            || Tensor::scaled_dot_product_attention(&r(1, &[3, 4]), &r(2, &[5, 3]), &r(3, &[5, 2]), Default::default()),
            shape_err,
        ))
        .error(ErrorCase::new(
            "key and value lengths differ",
            || Tensor::scaled_dot_product_attention(&r(1, &[3, 4]), &r(2, &[5, 4]), &r(3, &[4, 2]), Default::default()),
            shape_err,
        ))
        .error(ErrorCase::new(
            "mask with is_causal",
            || {
                let m = bool_t(&[true; 15], &[3, 5]);
                let opts = AttentionOpts { attn_mask: Some(&m), is_causal: true, ..Default::default() };
                Tensor::scaled_dot_product_attention(&r(1, &[3, 4]), &r(2, &[5, 4]), &r(3, &[5, 2]), opts)
            },
            arg_err,
        ))
        .error(ErrorCase::new(
            "integer mask",
            || {
                let m = idx_t(&[1; 15], &[3, 5]);
                let opts = AttentionOpts { attn_mask: Some(&m), ..Default::default() };
                Tensor::scaled_dot_product_attention(&r(1, &[3, 4]), &r(2, &[5, 4]), &r(3, &[5, 2]), opts)
            },
            dtype_err,
        ))
        .error(ErrorCase::new(
            "mask larger than the scores",
            || {
                let m = bool_t(&[true; 30], &[2, 3, 5]);
                let opts = AttentionOpts { attn_mask: Some(&m), ..Default::default() };
                Tensor::scaled_dot_product_attention(&r(1, &[3, 4]), &r(2, &[5, 4]), &r(3, &[5, 2]), opts)
            },
            shape_err,
        ))
        .error(ErrorCase::new(
            "1-D query",
            || Tensor::scaled_dot_product_attention(&r(1, &[4]), &r(2, &[5, 4]), &r(3, &[5, 2]), Default::default()),
            invalid_shape,
        ))
        .error(ErrorCase::new(
            "integer inputs",
            || {
                let i = idx_t(&[1; 8], &[2, 4]);
                Tensor::scaled_dot_product_attention(&i, &i, &i, Default::default())
            },
            unsupported,
        ))
        .error(ErrorCase::new(
            "dropout_p 1.5",
            || {
                let opts = AttentionOpts { dropout_p: 1.5, ..Default::default() };
                Tensor::scaled_dot_product_attention(&r(1, &[3, 4]), &r(2, &[5, 4]), &r(3, &[5, 2]), opts)
            },
            arg_err,
        ))
        .error(ErrorCase::new(
            "infinite scale",
            || {
                let opts = AttentionOpts { scale: Some(f64::INFINITY), ..Default::default() };
                Tensor::scaled_dot_product_attention(&r(1, &[3, 4]), &r(2, &[5, 4]), &r(3, &[5, 2]), opts)
            },
            arg_err,
        ))
        .error(ErrorCase::new(
            "key dtype differs",
            || {
                let k = r(2, &[5, 4]).to_dtype(DType::F32)?;
                Tensor::scaled_dot_product_attention(&r(1, &[3, 4]), &k, &r(3, &[5, 2]), Default::default())
            },
            dtype_err,
        ))
        .error(ErrorCase::new(
            "batch dims do not broadcast",
            || {
                Tensor::scaled_dot_product_attention(
                    &r(1, &[2, 3, 4]),
                    &r(2, &[3, 5, 4]),
                    &r(3, &[3, 5, 2]),
                    Default::default(),
                )
            },
            shape_err,
        ))
}

/// `Σ g · f(x)` differentiated by central differences in f64: the independent
/// reference of the backward records.
fn fd_grad(x: &[f64], h: f64, loss: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let mut xs = x.to_vec();
    (0..x.len())
        .map(|i| {
            xs[i] = x[i] + h;
            let up = loss(&xs);
            xs[i] = x[i] - h;
            let down = loss(&xs);
            xs[i] = x[i];
            (up - down) / (2.0 * h)
        })
        .collect()
}

fn layer_norm_backward_record() -> OpInfo {
    // Inputs: x, grad, then the weight when `w`. The reference differentiates
    // `Σ grad · layer_norm(x, w, b)` by central differences (w = 1 and b = 0 stand in
    // for a missing weight or bias: their gradients are defined either way).
    let s = |desc: &str, x: Tensor, ns: Vec<usize>, w: bool| {
        let g = r(40, x.dims());
        let mut inputs = vec![x, g];
        if w {
            inputs.push(rand_t(41, &ns, 0.5, 1.5));
        }
        let k = ns.len();
        Sample::new(
            desc,
            inputs,
            move |i| {
                let (dx, dw, db) = i[0].layer_norm_backward(&i[1], &ns, i.get(2), 1e-5)?;
                Ok(vec![dx, dw, db])
            },
            move |a| {
                let (x, g) = (&a[0], &a[1]);
                let cols: usize = x.shape[x.shape.len() - k..].iter().product();
                let ns_shape = x.shape[x.shape.len() - k..].to_vec();
                let ones = RefArray::new(ns_shape.clone(), vec![1.0; cols]);
                let w = a.get(2).unwrap_or(&ones).clone();
                let zeros = RefArray::new(ns_shape.clone(), vec![0.0; cols]);
                let dot = |y: &RefArray| y.data.iter().zip(&g.data).map(|(a, b)| a * b).sum::<f64>();
                let h = 1e-5;
                // Rows are independent: differentiate each row's share of the sum alone.
                let mut dx = Vec::with_capacity(x.numel());
                for (row, gr) in x.data.chunks(cols).zip(g.data.chunks(cols)) {
                    dx.extend(fd_grad(row, h, |v| {
                        let y = refs::layer_norm(&RefArray::new(ns_shape.clone(), v.to_vec()), k, Some(&w), None, 1e-5);
                        y.data.iter().zip(gr).map(|(a, b)| a * b).sum::<f64>()
                    }));
                }
                let dw = fd_grad(&w.data, h, |v| {
                    dot(&refs::layer_norm(x, k, Some(&RefArray::new(ns_shape.clone(), v.to_vec())), None, 1e-5))
                });
                let db = fd_grad(&zeros.data, h, |v| {
                    dot(&refs::layer_norm(x, k, None, Some(&RefArray::new(ns_shape.clone(), v.to_vec())), 1e-5))
                });
                vec![
                    RefArray::new(x.shape.clone(), dx),
                    RefArray::new(ns_shape.clone(), dw),
                    RefArray::new(ns_shape.clone(), db),
                ]
            },
        )
    };
    OpInfo::new("layer_norm_backward", FLOATS, false)
        .sample(s("last dim, weight", r(1, &[2, 3, 4]), vec![4], true))
        .sample(s("two dims, no weight", r(2, &[2, 3, 4]), vec![3, 4], false))
        .sample(s("1-D input", r(3, &[6]), vec![6], true))
        .sample(s("offset values (stability)", rand_t(5, &[3, 8], 50.0, 52.0), vec![8], true))
        .sample(s("transposed input", transposed(6, &[3, 4]), vec![4], true))
        .sample(s("many rows (several chunks, threads)", r(7, &[260, 130]), vec![130], true))
        .error(ErrorCase::new(
            "grad of another shape",
            || r(1, &[2, 3]).layer_norm_backward(&r(2, &[3, 2]), &[3], None, 1e-5),
            shape_err,
        ))
        .error(ErrorCase::new(
            "normalized_shape not trailing",
            || r(1, &[2, 3]).layer_norm_backward(&r(2, &[2, 3]), &[2], None, 1e-5),
            shape_err,
        ))
        .error(ErrorCase::new(
            "weight of wrong shape",
            || r(1, &[2, 3]).layer_norm_backward(&r(2, &[2, 3]), &[3], Some(&r(3, &[2])), 1e-5),
            shape_err,
        ))
}

fn gelu_backward_record() -> OpInfo {
    let s = |desc: &str, x: Tensor, tanh: bool| {
        let g = r(50, x.dims());
        Sample::new(
            desc,
            vec![x, g],
            move |i| Ok(vec![i[0].gelu_backward(&i[1], tanh)?]),
            move |a| {
                let gelu = |x: f64| {
                    if tanh {
                        let k = (2.0 / std::f64::consts::PI).sqrt();
                        0.5 * x * (1.0 + (k * (x + 0.044715 * x.powi(3))).tanh())
                    } else {
                        0.5 * x * (1.0 + crate::elementwise::erf_ref(x / 2f64.sqrt()))
                    }
                };
                let h = 1e-5;
                let d = a[0].data.iter().zip(&a[1].data).map(|(&x, &g)| g * (gelu(x + h) - gelu(x - h)) / (2.0 * h));
                vec![RefArray::new(a[0].shape.clone(), d.collect())]
            },
        )
    };
    OpInfo::new("gelu_backward", FLOATS, false)
        .sample(s("erf", rand_t(1, &[3, 70], -4.0, 4.0), false))
        .sample(s("tanh", rand_t(2, &[3, 70], -4.0, 4.0), true))
        .sample(s("large (threads)", rand_t(3, &[200, 300], -6.0, 6.0), false))
        .sample(s("transposed", transposed(4, &[5, 6]), false))
        .error(ErrorCase::new("grad of another shape", || r(1, &[2, 3]).gelu_backward(&r(2, &[3]), false), shape_err))
        .error(ErrorCase::new(
            "integer input",
            || Tensor::from_vec(vec![1i64], [1])?.gelu_backward(&Tensor::from_vec(vec![1i64], [1])?, false),
            unsupported,
        ))
}

fn threshold_backward_record() -> OpInfo {
    let s = |desc: &str, x: Tensor, th: f64| {
        let g = r(51, x.dims());
        Sample::new(
            desc,
            vec![x, g],
            move |i| Ok(vec![i[0].threshold_backward(&i[1], th)?]),
            move |a| {
                // NaN passes (it is not <= the threshold).
                let d = a[0].data.iter().zip(&a[1].data).map(|(&x, &g)| if x <= th { 0.0 } else { g });
                vec![RefArray::new(a[0].shape.clone(), d.collect())]
            },
        )
    };
    // Whole numbers put elements exactly on the threshold.
    let ties = rand_t(5, &[4, 9], -3.0, 3.0).round().expect("round");
    let nan = Tensor::from_vec(vec![f64::NAN, -1.0, 0.0, 1.0, f64::INFINITY, f64::NEG_INFINITY], [6]).expect("vec");
    OpInfo::new("threshold_backward", FLOATS, false)
        .sample(s("relu (0)", r(1, &[3, 70]), 0.0))
        .sample(s("ties at 0 and 1", ties.clone(), 0.0))
        .sample(s("threshold 1", ties, 1.0))
        .sample(s("NaN and infinities", nan, 0.0))
        .sample(s("large (threads)", r(3, &[200, 300]), 0.25))
        .sample(s("transposed", transposed(4, &[5, 6]), 0.0))
        .sample(s("empty", r(6, &[0, 4]), 0.0))
        .error(ErrorCase::new(
            "grad of another shape",
            || r(1, &[2, 3]).threshold_backward(&r(2, &[3]), 0.0),
            shape_err,
        ))
        .error(ErrorCase::new(
            "integer input",
            || Tensor::from_vec(vec![1i64], [1])?.threshold_backward(&Tensor::from_vec(vec![1i64], [1])?, 0.0),
            unsupported,
        ))
}

/// Naive f64 cross-entropy of rows: each row's loss, log-sum-exp and weights `K`
/// (`(1 - eps) w[t]` at the target plus `eps w / C`; zero for ignored rows).
#[allow(clippy::type_complexity)]
fn ce_ref(x: &RefArray, t: &[i64], w: Option<&[f64]>, ignore: i64, eps: f64) -> (Vec<f64>, Vec<f64>, Vec<Vec<f64>>) {
    let c = x.shape[1];
    let (mut loss, mut lse, mut ks) = (vec![], vec![], vec![]);
    for (n, &tn) in t.iter().enumerate() {
        let row = &x.data[n * c..(n + 1) * c];
        let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let z = m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
        let wc = |j: usize| w.map_or(1.0, |w| w[j]);
        let k: Vec<f64> = (0..c)
            .map(|j| match tn {
                tn if tn == ignore => 0.0,
                tn => eps * wc(j) / c as f64 + if j as i64 == tn { (1.0 - eps) * wc(j) } else { 0.0 },
            })
            .collect();
        // Only weighted terms (PyTorch picks the target: a -inf elsewhere adds nothing).
        loss.push(-(0..c).filter(|&j| k[j] != 0.0).map(|j| k[j] * (row[j] - z)).sum::<f64>());
        lse.push(z);
        ks.push(k);
    }
    (loss, lse, ks)
}

/// A case of the cross-entropy records: (desc, logits, targets, weighted, ignore, eps).
type CeCase = (&'static str, Tensor, Vec<i64>, bool, i64, f64);

fn ce_cases() -> Vec<CeCase> {
    let t = |n: usize, c: usize, seed: u64| -> Vec<i64> {
        (0..n as u64).map(|i| ((i * 7 + seed) % c as u64) as i64).collect()
    };
    vec![
        ("plain", rand_t(1, &[6, 10], -4.0, 4.0), t(6, 10, 1), false, -100, 0.0),
        ("weighted", rand_t(2, &[5, 7], -4.0, 4.0), t(5, 7, 2), true, -100, 0.0),
        ("smoothed", rand_t(3, &[5, 7], -4.0, 4.0), t(5, 7, 3), false, -100, 0.1),
        (
            "weighted, smoothed, ignored rows",
            rand_t(4, &[6, 17], -4.0, 4.0),
            vec![0, -100, 16, 5, -100, 9],
            true,
            -100,
            0.3,
        ),
        ("ignore_index a class", rand_t(5, &[4, 5], -4.0, 4.0), vec![2, 4, 2, 0], false, 2, 0.0),
        ("large (threads)", rand_t(6, &[300, 65], -6.0, 6.0), t(300, 65, 6), false, -100, 0.0),
        ("transposed logits", transposed(7, &[5, 6]), t(5, 6, 7), true, -100, 0.2),
        ("one class", rand_t(8, &[3, 1], -4.0, 4.0), vec![0, 0, 0], false, -100, 0.0),
        ("no rows", rand_t(9, &[0, 4], -4.0, 4.0), vec![], false, -100, 0.0),
        ("-inf logits (masked classes), one in an ignored row", masked_logits(), vec![0, -100, 3], true, -100, 0.0),
    ]
}

/// Logits with -inf entries away from the targets.
fn masked_logits() -> Tensor {
    let ninf = f64::NEG_INFINITY;
    Tensor::from_vec(vec![1.0, ninf, 0.5, 2.0, ninf, 1.0, 2.0, 3.0, 0.0, 1.0, ninf, 3.0], [3, 4]).expect("vec")
}

fn ce_opts(w: Option<&Tensor>, ignore: i64, eps: f64) -> tensor_core::ClassLossOptions {
    tensor_core::ClassLossOptions { weight: w.cloned(), ignore_index: ignore, label_smoothing: eps }
}

fn cross_entropy_rows_record() -> OpInfo {
    let mut op = OpInfo::new("cross_entropy_rows", FLOATS, false);
    for (desc, x, t, weighted, ignore, eps) in ce_cases() {
        let c = x.dims()[1];
        let w = rand_t(60, &[c], 0.2, 2.0);
        let tt = Tensor::from_vec(t.clone(), [t.len()]).expect("targets");
        op = op.sample(Sample::new(
            desc,
            vec![x, w],
            move |i| {
                let (l, s) = i[0].cross_entropy_rows(&tt, &ce_opts(weighted.then_some(&i[1]), ignore, eps))?;
                Ok(vec![l, s])
            },
            move |a| {
                let (loss, lse, _) = ce_ref(&a[0], &t, weighted.then_some(&a[1].data[..]), ignore, eps);
                let n = loss.len();
                vec![RefArray::new(vec![n], loss), RefArray::new(vec![n], lse)]
            },
        ));
    }
    let x = || r(1, &[2, 3]);
    let t = |v: Vec<i64>| Tensor::from_vec(v, [2]);
    let d = tensor_core::ClassLossOptions::default();
    op.error(ErrorCase::new(
        "target past the classes",
        move || Ok(x().cross_entropy_rows(&t(vec![0, 3])?, &d)?.0),
        index_err,
    ))
    .error(ErrorCase::new(
        "negative target",
        move || Ok(x().cross_entropy_rows(&t(vec![-1, 0])?, &Default::default())?.0),
        index_err,
    ))
    .error(ErrorCase::new(
        "float targets",
        move || Ok(x().cross_entropy_rows(&r(2, &[2]), &Default::default())?.0),
        dtype_err,
    ))
    .error(ErrorCase::new(
        "one target too few",
        move || Ok(x().cross_entropy_rows(&Tensor::from_vec(vec![0i64], [1])?, &Default::default())?.0),
        shape_err,
    ))
    .error(ErrorCase::new(
        "rank-1 logits",
        move || Ok(r(1, &[3]).cross_entropy_rows(&t(vec![0, 1])?, &Default::default())?.0),
        invalid_shape,
    ))
    .error(ErrorCase::new(
        "label smoothing above 1",
        move || Ok(x().cross_entropy_rows(&t(vec![0, 1])?, &ce_opts(None, -100, 1.5))?.0),
        arg_err,
    ))
    .error(ErrorCase::new(
        "weight of the wrong length",
        move || Ok(x().cross_entropy_rows(&t(vec![0, 1])?, &ce_opts(Some(&r(3, &[2])), -100, 0.0))?.0),
        shape_err,
    ))
    .error(ErrorCase::new(
        "integer logits",
        || {
            let x = Tensor::from_vec(vec![1i64, 2], [1, 2])?;
            Ok(x.cross_entropy_rows(&Tensor::from_vec(vec![0i64], [1])?, &Default::default())?.0)
        },
        unsupported,
    ))
}

fn cross_entropy_rows_backward_record() -> OpInfo {
    let mut op = OpInfo::new("cross_entropy_rows_backward", FLOATS, false);
    for (desc, x, t, weighted, ignore, eps) in ce_cases() {
        let (n, c) = (x.dims()[0], x.dims()[1]);
        let w = rand_t(61, &[c], 0.2, 2.0);
        let g = rand_t(62, &[n], -2.0, 2.0);
        let tt = Tensor::from_vec(t.clone(), [t.len()]).expect("targets");
        op = op.sample(Sample::new(
            desc,
            vec![x, w, g],
            move |i| {
                let o = ce_opts(weighted.then_some(&i[1]), ignore, eps);
                let (_, lse) = i[0].cross_entropy_rows(&tt, &o)?;
                Ok(vec![i[0].cross_entropy_rows_backward(&lse, &tt, &i[2], &o)?])
            },
            move |a| {
                let (_, lse, ks) = ce_ref(&a[0], &t, weighted.then_some(&a[1].data[..]), ignore, eps);
                let mut dx = vec![0.0; n * c];
                for (row, k) in ks.iter().enumerate() {
                    let ksum: f64 = k.iter().sum();
                    for j in 0..c {
                        let p = (a[0].data[row * c + j] - lse[row]).exp();
                        dx[row * c + j] = a[2].data[row] * (p * ksum - k[j]);
                    }
                }
                vec![RefArray::new(vec![n, c], dx)]
            },
        ));
    }
    let x = || r(1, &[2, 3]);
    let t = || Tensor::from_vec(vec![0i64, 2], [2]);
    op.error(ErrorCase::new(
        "lse of the wrong length",
        move || x().cross_entropy_rows_backward(&r(2, &[3]), &t()?, &r(3, &[2]), &Default::default()),
        shape_err,
    ))
    .error(ErrorCase::new(
        "grad of another dtype",
        move || {
            x().cross_entropy_rows_backward(&r(2, &[2]), &t()?, &r(3, &[2]).to_dtype(DType::F32)?, &Default::default())
        },
        shape_err,
    ))
    .error(ErrorCase::new(
        "target past the classes",
        move || {
            let t = Tensor::from_vec(vec![0i64, 7], [2])?;
            x().cross_entropy_rows_backward(&r(2, &[2]), &t, &r(3, &[2]), &Default::default())
        },
        index_err,
    ))
}

fn cross_entropy_targets_record() -> OpInfo {
    let mut op = OpInfo::new("cross_entropy_targets", FLOATS, false);
    for (desc, t, c, ignore, eps) in [
        ("smoothed", vec![0i64, 3, -100, 2], 4usize, -100i64, 0.25),
        ("ignore_index a class", vec![1, 1, 0], 3, 1, 0.0),
        ("no rows", vec![], 5, -100, 0.1),
    ] {
        let w = rand_t(63, &[c], 0.2, 2.0);
        let tt = Tensor::from_vec(t.clone(), [t.len()]).expect("targets");
        op = op.sample(Sample::new(
            desc,
            vec![w],
            move |i| Ok(vec![tt.cross_entropy_targets(c, &ce_opts(Some(&i[0]), ignore, eps), i[0].dtype())?]),
            move |a| {
                let x = RefArray::new(vec![t.len(), c], vec![0.0; t.len() * c]);
                let k = ce_ref(&x, &t, Some(&a[0].data), ignore, eps).2;
                vec![RefArray::new(vec![t.len(), c], k.concat())]
            },
        ));
    }
    op.error(ErrorCase::new(
        "target past the classes",
        || Tensor::from_vec(vec![4i64], [1])?.cross_entropy_targets(4, &Default::default(), DType::F32),
        index_err,
    ))
    .error(ErrorCase::new(
        "integer dtype",
        || Tensor::from_vec(vec![0i64], [1])?.cross_entropy_targets(4, &Default::default(), DType::I32),
        dtype_err,
    ))
    .error(ErrorCase::new(
        "rank-2 targets",
        || Tensor::from_vec(vec![0i64], [1, 1])?.cross_entropy_targets(4, &Default::default(), DType::F32),
        invalid_shape,
    ))
}

fn lstm_sequence_record() -> OpInfo {
    // gi, the transposed recurrent weight, h0, c0 (and the states' gradient).
    let inputs = |seed: u64, t: usize, n: usize, h: usize| {
        vec![
            r(seed, &[t, n, 4 * h]),
            rand_t(seed + 1, &[h, 4 * h], -0.3, 0.3),
            r(seed + 2, &[n, h]),
            r(seed + 3, &[n, h]),
        ]
    };
    let fwd = |desc: &str, i: Vec<Tensor>, reverse: bool| {
        Sample::new(
            desc,
            i,
            move |i| {
                let (s, g) = Tensor::lstm_sequence_fused(&i[0], &i[1], &i[2], &i[3], reverse)?
                    .ok_or_else(|| Error::arg("lstm_sequence", "no fused kernel on the CPU"))?;
                Ok(vec![s, g])
            },
            move |a| {
                let (s, g) = refs::lstm_sequence(&a[0], &a[1], &a[2], &a[3], reverse);
                vec![s, g]
            },
        )
    };
    let bwd = |desc: &str, mut i: Vec<Tensor>, reverse: bool| {
        let d = i[0].dims().to_vec();
        i.push(r(77, &[2, d[0], d[1], d[2] / 4]));
        Sample::new(
            desc,
            i,
            move |i| {
                let no = || Error::arg("lstm_sequence", "no fused kernel on the CPU");
                let (s, g) = Tensor::lstm_sequence_fused(&i[0], &i[1], &i[2], &i[3], reverse)?.ok_or_else(no)?;
                let (a, b, c) = Tensor::lstm_sequence_backward_fused(&i[1], &i[2], &i[3], &s, &g, &i[4], reverse)?
                    .ok_or_else(no)?;
                Ok(vec![a, b, c])
            },
            move |a| refs::lstm_sequence_backward(&a[0], &a[1], &a[2], &a[3], &a[4], reverse).into(),
        )
    };
    OpInfo::new("lstm_sequence_fused", &[DType::F32, DType::F64], false)
        .sample(fwd("T 4, batch 3, hidden 5", inputs(1, 4, 3, 5), false))
        .sample(fwd("reverse", inputs(2, 4, 3, 5), true))
        .sample(fwd("hidden 130 (two blocks, threads)", inputs(3, 3, 5, 130), false))
        .sample(fwd(
            "transposed gi",
            vec![transposed(4, &[3, 3, 8]), rand_t(5, &[2, 8], -0.3, 0.3), r(6, &[3, 2]), r(7, &[3, 2])],
            false,
        ))
        .sample(bwd("backward", inputs(8, 4, 3, 5), false))
        .sample(bwd("backward, reverse", inputs(9, 4, 3, 5), true))
        .sample(bwd("backward, hidden 130", inputs(10, 3, 5, 130), false))
        .sample(bwd("backward, one step", inputs(11, 1, 2, 3), true))
        .covers(&["lstm_sequence_backward_fused"])
        .error(ErrorCase::new(
            "gi's last dim is not 4 hidden",
            || Tensor::lstm_sequence_fused(&r(1, &[2, 3, 7]), &r(2, &[2, 8]), &r(3, &[3, 2]), &r(4, &[3, 2]), false),
            shape_err,
        ))
        .error(ErrorCase::new(
            "no steps",
            || Tensor::lstm_sequence_fused(&r(1, &[0, 3, 8]), &r(2, &[2, 8]), &r(3, &[3, 2]), &r(4, &[3, 2]), false),
            arg_err,
        ))
        .error(ErrorCase::new(
            "c0 of another dtype",
            || {
                let c0 = r(4, &[3, 2]).to_dtype(DType::F32)?;
                Tensor::lstm_sequence_fused(&r(1, &[2, 3, 8]), &r(2, &[2, 8]), &r(3, &[3, 2]), &c0, false)
            },
            dtype_err,
        ))
        .error(ErrorCase::new(
            "integer gi",
            || {
                let gi = Tensor::from_vec(vec![1i64; 16], [2, 1, 8])?;
                Tensor::lstm_sequence_fused(&gi, &r(2, &[2, 8]), &r(3, &[1, 2]), &r(4, &[1, 2]), false)
            },
            |e| !e.to_string().is_empty(),
        ))
        .error(ErrorCase::new(
            "backward: grad of another shape",
            || {
                let (w, h0) = (r(2, &[2, 8]), r(3, &[3, 2]));
                let (s, g) = Tensor::lstm_sequence_fused(&r(1, &[2, 3, 8]), &w, &h0, &h0, false)?.expect("CPU");
                Tensor::lstm_sequence_backward_fused(&w, &h0, &h0, &s, &g, &r(5, &[2, 2, 3, 3]), false)
            },
            shape_err,
        ))
}

fn rms_norm_record() -> OpInfo {
    let s = |desc: &str, x: Tensor, ns: Vec<usize>, w: bool, eps: Option<f64>| {
        let mut inputs = vec![x];
        if w {
            inputs.push(rand_t(35, &ns, 0.5, 1.5));
        }
        let k = ns.len();
        Sample::call(desc, inputs, call!([ns] | i | Ok(vec![i[0].rms_norm(&ns, i.get(1), eps)?])), move |a| {
            // The default eps is the machine epsilon of the dtype under test; the
            // reference runs in f64, where it is negligible next to these inputs.
            vec![refs::rms_norm(&a[0], k, a.get(1), eps.unwrap_or(0.0))]
        })
    };
    OpInfo::new("rms_norm", FLOATS, true)
        .covers(&["check_rms_norm", "machine_eps", "compute_dtype"])
        .sample(s("last dim, weight", r(1, &[2, 3, 4]), vec![4], true, Some(1e-6)))
        .sample(s("two dims, no weight", r(2, &[2, 3, 4]), vec![3, 4], false, Some(1e-6)))
        .sample(s(
            "default eps (inputs large enough for it not to matter)",
            rand_t(3, &[3, 5], 2.0, 5.0),
            vec![5],
            true,
            None,
        ))
        .sample(s("large eps", r(4, &[3, 5]), vec![5], false, Some(0.5)))
        .sample(s("1-D input", r(5, &[6]), vec![6], true, Some(1e-6)))
        .sample(s("offset values", rand_t(6, &[3, 8], 50.0, 52.0), vec![8], true, Some(1e-6)))
        .sample(s("transposed input", transposed(7, &[3, 4]), vec![4], true, Some(1e-6)))
        .sample(s("zero-size batch", r(8, &[0, 4]), vec![4], true, Some(1e-6)))
        .error(ErrorCase::new("shape mismatch", || r(1, &[2, 3]).rms_norm(&[4], None, None), shape_err))
        .error(ErrorCase::new("empty normalized_shape", || r(1, &[2, 3]).rms_norm(&[], None, None), arg_err))
        .error(ErrorCase::new(
            "weight of wrong shape",
            || r(1, &[2, 3]).rms_norm(&[3], Some(&r(2, &[2])), None),
            shape_err,
        ))
        .error(ErrorCase::new("negative eps", || r(1, &[2, 3]).rms_norm(&[3], None, Some(-1.0)), arg_err))
        .error(ErrorCase::new("integer input", || Tensor::new(&[1i64, 2]).rms_norm(&[2], None, None), unsupported))
        .error(ErrorCase::new(
            "weight dtype differs",
            || r(1, &[2, 3]).rms_norm(&[3], Some(&r(2, &[3]).to_dtype(DType::F32)?), None),
            dtype_err,
        ))
}

/// The records of this family.
pub fn ops() -> Vec<OpInfo> {
    vec![
        sdpa_record(),
        rms_norm_record(),
        layer_norm_backward_record(),
        gelu_backward_record(),
        threshold_backward_record(),
        cross_entropy_rows_record(),
        cross_entropy_rows_backward_record(),
        cross_entropy_targets_record(),
        lstm_sequence_record(),
        softmax_record("softmax", false),
        softmax_record("log_softmax", true),
        conv1d_record(),
        conv2d_record(),
        conv2d_winograd_record(),
        conv_transpose2d_record(),
        unfold2d_record(),
        fold2d_record(),
        max_pool2d_record(),
        max_pool2d_with_indices_record(),
        max_pool2d_backward_record(),
        avg_pool2d_record(),
        adaptive_avg_pool2d_record(),
        pad_record(),
        embedding_record(),
        layer_norm_record(),
        batch_norm_record(),
        batch_norm_stats_record(),
        dropout_record(),
        dropout_mask_record(),
    ]
}
