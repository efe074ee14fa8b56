//! Hostile inputs: sizes near `usize::MAX`, zero-size kernels, integer division by
//! zero, NaN/inf/out-of-range values stored into integers, negative integer powers,
//! huge padding, dilation and stride, huge creation sizes. Every case must fail
//! with an error that names the op the caller used (or, for sizes that are
//! representable but far beyond any memory, [`Error::OutOfMemory`]); none may panic,
//! abort, hang or return a value.
//!
//! The cases stay cheap: each fails before allocating anything large (sizes that
//! would reach the allocator are beyond the address space, so the request itself
//! fails at once).
//!
//! `tests/hostile.rs` walks [`cases`] with each case under `catch_unwind`.

use tensor_core::{
    AvgPool2dOptions, BinaryOp, Conv1dOptions, Conv2dOptions, ConvTranspose2dOptions, DType, Device, Error,
    MaxPool2dOptions, PadMode, Result, Tensor,
};

/// One hostile call and the error it must produce.
pub struct HostileCase {
    /// The op the error must name (`None`: the error is [`Error::OutOfMemory`],
    /// which names a device, not an op).
    pub op: Option<&'static str>,
    /// What is hostile about the input.
    pub desc: String,
    /// Makes the call.
    pub run: Box<dyn Fn() -> Result<()> + Send + Sync>,
    /// True when the error has the expected kind.
    pub check: fn(&Error) -> bool,
}

impl HostileCase {
    fn new<T>(
        op: Option<&'static str>,
        desc: &str,
        check: fn(&Error) -> bool,
        run: impl Fn() -> Result<T> + Send + Sync + 'static,
    ) -> Self {
        HostileCase { op, desc: desc.to_string(), run: Box::new(move || run().map(|_| ())), check }
    }

    /// Checks an outcome of [`HostileCase::run`]: `Ok(())` when it is the expected
    /// error, else a message saying what came back.
    pub fn judge(&self, outcome: &Result<()>) -> std::result::Result<(), String> {
        let e = match outcome {
            Ok(()) => return Err("succeeded".to_string()),
            Err(e) => e,
        };
        if !(self.check)(e) {
            return Err(format!("wrong kind of error: {e:?}"));
        }
        match (self.op, error_op(e)) {
            (None, _) => Ok(()),
            (Some(want), Some(got)) if want == got => Ok(()),
            (Some(want), got) => Err(format!("error names {got:?}, expected {want:?}: {e}")),
        }
    }
}

/// A case whose error must name `op` and satisfy `check`.
fn named<T>(
    op: &'static str,
    desc: &str,
    check: fn(&Error) -> bool,
    run: impl Fn() -> Result<T> + Send + Sync + 'static,
) -> HostileCase {
    HostileCase::new(Some(op), desc, check, run)
}

/// A case that must fail with [`Error::OutOfMemory`].
fn out_of_memory<T>(desc: &str, run: impl Fn() -> Result<T> + Send + Sync + 'static) -> HostileCase {
    HostileCase::new(None, desc, is_oom, run)
}

/// The op an error names, for the variants that carry one.
pub fn error_op(e: &Error) -> Option<&str> {
    match e {
        Error::ShapeMismatch { op, .. }
        | Error::InvalidShape { op, .. }
        | Error::DTypeMismatch { op, .. }
        | Error::DeviceMismatch { op, .. }
        | Error::DimOutOfRange { op, .. }
        | Error::IndexOutOfRange { op, .. }
        | Error::Unsupported { op, .. }
        | Error::InvalidArgument { op, .. } => Some(op),
        Error::ModifiedInPlace { op, .. } | Error::GraphFreed { op } => Some(op),
        _ => None,
    }
}

fn is_arg(e: &Error) -> bool {
    matches!(e, Error::InvalidArgument { .. })
}
fn is_bad_shape(e: &Error) -> bool {
    matches!(e, Error::InvalidShape { .. })
}
fn is_shape_mismatch(e: &Error) -> bool {
    matches!(e, Error::ShapeMismatch { .. })
}
fn is_oom(e: &Error) -> bool {
    matches!(e, Error::OutOfMemory { .. })
}
/// An argument or shape error (the op decides which describes the input better).
fn is_arg_or_shape(e: &Error) -> bool {
    is_arg(e) || is_bad_shape(e) || is_shape_mismatch(e)
}
/// The error of a value that does not fit the dtype.
fn is_overflow(e: &Error) -> bool {
    matches!(e, Error::InvalidArgument { msg, .. } if msg.contains("without overflow"))
}
fn is_zero_div(e: &Error) -> bool {
    matches!(e, Error::InvalidArgument { msg, .. } if msg.contains("ZeroDivisionError"))
}
fn is_neg_pow(e: &Error) -> bool {
    matches!(e, Error::InvalidArgument { msg, .. } if msg.contains("negative integer powers"))
}

fn cpu() -> Device {
    Device::cpu()
}
fn ints(v: &[i64], dtype: DType) -> Result<Tensor> {
    Tensor::new(v).to_dtype(dtype)
}
fn image(shape: [usize; 4]) -> Result<Tensor> {
    Tensor::ones(shape, DType::F32, &cpu())
}
fn bool_mask(n: usize) -> Result<Tensor> {
    Tensor::ones([n], DType::Bool, &cpu())
}

/// Half of `usize::MAX`: doubling it (twice the padding) just fits, adding the
/// input size then overflows.
const HALF: usize = usize::MAX / 2;
/// Sizes whose squares overflow `usize`.
const BIG: usize = 1 << 40;

/// Every hostile case.
pub fn cases() -> Vec<HostileCase> {
    let mut v = Vec::new();
    v.extend(integer_arithmetic());
    v.extend(scalar_conversions());
    v.extend(padding_and_windows());
    v.extend(creation());
    v.extend(composites());
    v
}

fn integer_arithmetic() -> Vec<HostileCase> {
    let mut v = Vec::new();
    for dt in [DType::I64, DType::I32, DType::U8] {
        v.push(named("remainder", &format!("{dt} remainder by a zero element"), is_zero_div, move || {
            ints(&[7, 8, 9], dt)?.remainder(&ints(&[2, 0, 3], dt)?)
        }));
    }
    v.extend([
        named("remainder", "integer remainder by a broadcast zero", is_zero_div, || {
            ints(&[7, 8, 9], DType::I64)?.remainder(&ints(&[0], DType::I64)?)
        }),
        named("remainder", "i32 remainder_scalar(0)", is_zero_div, || ints(&[7, 8], DType::I32)?.remainder_scalar(0)),
        named("remainder", "in-place integer remainder by zero", is_zero_div, || {
            ints(&[7, 8], DType::I64)?.binary_(BinaryOp::Remainder, &ints(&[1, 0], DType::I64)?)
        }),
        named("remainder", "transposed integer divisor holding a zero", is_zero_div, || {
            let d = Tensor::from_vec(vec![1i64, 2, 3, 0], [2, 2])?.t()?;
            Tensor::ones([2, 2], DType::I64, &cpu())?.remainder(&d)
        }),
        named("pow", "integer pow by a negative exponent element", is_neg_pow, || {
            ints(&[2, 3], DType::I64)?.pow(&ints(&[1, -1], DType::I64)?)
        }),
        named("pow", "i32 pow_scalar(-1)", is_neg_pow, || ints(&[2, 3], DType::I32)?.pow_scalar(-1)),
        named("pow", "in-place integer pow by a negative exponent", is_neg_pow, || {
            ints(&[2, 3], DType::I64)?.binary_(BinaryOp::Pow, &ints(&[-2], DType::I64)?)
        }),
    ]);
    v
}

fn scalar_conversions() -> Vec<HostileCase> {
    let o = is_overflow;
    let dev = cpu;
    vec![
        named("full", "full(NaN) as i64", o, move || Tensor::full([2], f64::NAN, DType::I64, &dev())),
        named("full", "full(inf) as i32", o, move || Tensor::full([2], f64::INFINITY, DType::I32, &dev())),
        named("full", "full(-inf) as u8", o, move || Tensor::full([2], f64::NEG_INFINITY, DType::U8, &dev())),
        named("full", "full(1e20) as i32", o, move || Tensor::full([2], 1e20, DType::I32, &dev())),
        named("full", "full(1e19) as i64", o, move || Tensor::full([2], 1e19, DType::I64, &dev())),
        named("full", "full(2^40) as i32", o, move || Tensor::full([2], 1i64 << 40, DType::I32, &dev())),
        named("full", "full(300) as u8", o, move || Tensor::full([2], 300i64, DType::U8, &dev())),
        named("full", "full(-0.5) as u8", o, move || Tensor::full([2], -0.5, DType::U8, &dev())),
        named("full", "full(1e5) as f16", o, move || Tensor::full([2], 1e5, DType::F16, &dev())),
        named("full", "full(1e39) as f32", o, move || Tensor::full([2], 1e39, DType::F32, &dev())),
        named("full_like", "full_like(NaN) of i64", o, || ints(&[1], DType::I64)?.full_like(f64::NAN)),
        named("scalar_on", "scalar_on(NaN) as i64", o, move || Tensor::scalar_on(f64::NAN, DType::I64, &dev())),
        named("masked_fill", "masked_fill(NaN) of i64", o, || {
            ints(&[1, 2], DType::I64)?.masked_fill(&bool_mask(2)?, f64::NAN)
        }),
        named("masked_fill", "masked_fill(1e20) of i32", o, || {
            ints(&[1, 2], DType::I32)?.masked_fill(&bool_mask(2)?, 1e20)
        }),
        named("add", "i32 + 2^40", o, || ints(&[1], DType::I32)?.add_scalar(1i64 << 40)),
        named("mul", "u8 * i64::MAX", o, || ints(&[1], DType::U8)?.mul_scalar(i64::MAX)),
        named("maximum", "maximum(u8, 300)", o, || ints(&[1], DType::U8)?.maximum_scalar(300i64)),
        named("rsub", "2^40 - i32", o, || ints(&[1], DType::I32)?.rsub_scalar(1i64 << 40)),
        named("clamp", "clamp(min = NaN) of i64", o, || ints(&[1], DType::I64)?.clamp(Some(f64::NAN), None)),
        named("clamp", "clamp(min = 1e20) of i32", o, || ints(&[1], DType::I32)?.clamp(Some(1e20), None)),
        named("clamp", "clamp(max = -1e20) of i32", o, || ints(&[1], DType::I32)?.clamp(None, Some(-1e20))),
        named("clamp", "clamp_(max = NaN) of u8", o, || ints(&[1], DType::U8)?.clamp_(None, Some(f64::NAN))),
        named("pad", "constant pad with NaN into i64", o, || {
            ints(&[1], DType::I64)?.pad(&[1, 1], PadMode::Constant(f64::NAN))
        }),
        named("pad", "constant pad with 1e20 into i32", o, || {
            ints(&[1], DType::I32)?.pad(&[1, 1], PadMode::Constant(1e20))
        }),
    ]
}

fn ones(shape: &[usize]) -> Result<Tensor> {
    Tensor::ones(shape.to_vec(), DType::F32, &cpu())
}

fn padding_and_windows() -> Vec<HostileCase> {
    let (arg, bad, mis, either) = (is_arg, is_bad_shape, is_shape_mismatch, is_arg_or_shape);
    let zero = PadMode::Constant(0.0);
    vec![
        named("pad", "pad by usize::MAX", bad, move || ones(&[3])?.pad(&[usize::MAX, 1], zero)),
        named("pad", "pads summing past usize::MAX", bad, || ones(&[3])?.pad(&[HALF, HALF], PadMode::Replicate)),
        named("pad", "padded numel past usize::MAX", bad, move || {
            image([1, 1, 1, 1])?.pad(&[BIG, BIG, BIG, BIG], zero)
        }),
        named("pad", "padded bytes past isize::MAX", bad, move || {
            Tensor::ones([1], DType::F64, &cpu())?.pad(&[0, 1 << 62], zero)
        }),
        named("pad", "reflect pad by usize::MAX", either, || ones(&[3])?.pad(&[usize::MAX, 0], PadMode::Reflect)),
        named("conv2d", "conv2d padding near usize::MAX", arg, || {
            image([1, 1, 3, 3])?.conv2d(
                &image([1, 1, 2, 2])?,
                None,
                Conv2dOptions { padding: [HALF, 0], ..Default::default() },
            )
        }),
        named("conv2d", "conv2d output numel past usize::MAX", bad, || {
            image([1, 1, 3, 3])?.conv2d(
                &image([1, 1, 2, 2])?,
                None,
                Conv2dOptions { padding: [BIG, BIG], ..Default::default() },
            )
        }),
        named("conv2d", "conv2d dilation * (k - 1) overflows", mis, || {
            image([1, 1, 3, 3])?.conv2d(
                &image([1, 1, 3, 3])?,
                None,
                Conv2dOptions { dilation: [usize::MAX, 1], ..Default::default() },
            )
        }),
        named("conv2d", "conv2d stride 0", arg, || {
            image([1, 1, 3, 3])?.conv2d(
                &image([1, 1, 2, 2])?,
                None,
                Conv2dOptions { stride: [0, 1], ..Default::default() },
            )
        }),
        named("conv2d", "conv2d zero-size kernel", mis, || {
            image([1, 1, 3, 3])?.conv2d(&image([1, 1, 0, 2])?, None, Conv2dOptions::default())
        }),
        named("conv1d", "conv1d padding usize::MAX", arg, || {
            ones(&[1, 1, 4])?.conv1d(
                &ones(&[1, 1, 2])?,
                None,
                Conv1dOptions { padding: usize::MAX, ..Default::default() },
            )
        }),
        named("conv1d", "conv1d dilation usize::MAX", mis, || {
            ones(&[1, 1, 4])?.conv1d(
                &ones(&[1, 1, 2])?,
                None,
                Conv1dOptions { dilation: usize::MAX, ..Default::default() },
            )
        }),
        named("conv_transpose2d", "conv_transpose2d stride usize::MAX", arg, || {
            image([1, 1, 2, 2])?.conv_transpose2d(
                &image([1, 1, 2, 2])?,
                None,
                ConvTranspose2dOptions { stride: [usize::MAX, 1], ..Default::default() },
            )
        }),
        named("conv_transpose2d", "conv_transpose2d dilation usize::MAX", arg, || {
            image([1, 1, 2, 2])?.conv_transpose2d(
                &image([1, 1, 2, 2])?,
                None,
                ConvTranspose2dOptions { dilation: [usize::MAX, 1], ..Default::default() },
            )
        }),
        named("conv_transpose2d", "conv_transpose2d output numel past usize::MAX", bad, || {
            image([1, 1, 2, 2])?.conv_transpose2d(
                &image([1, 1, 2, 2])?,
                None,
                ConvTranspose2dOptions { stride: [BIG, BIG], ..Default::default() },
            )
        }),
        named("unfold2d", "unfold2d padding usize::MAX", arg, || {
            image([1, 1, 3, 3])?.unfold2d([2, 2], [1, 1], [usize::MAX, 0], [1, 1])
        }),
        named("unfold2d", "unfold2d dilation usize::MAX", bad, || {
            image([1, 1, 3, 3])?.unfold2d([2, 2], [usize::MAX, 1], [0, 0], [1, 1])
        }),
        named("unfold2d", "unfold2d output numel past usize::MAX", bad, || {
            image([1, 1, 3, 3])?.unfold2d([2, 2], [1, 1], [BIG, BIG], [1, 1])
        }),
        named("unfold2d", "unfold2d zero-size kernel", arg, || {
            image([1, 1, 3, 3])?.unfold2d([0, 2], [1, 1], [0, 0], [1, 1])
        }),
        named("unfold2d", "unfold2d stride 0", arg, || image([1, 1, 3, 3])?.unfold2d([2, 2], [1, 1], [0, 0], [1, 0])),
        named("fold2d", "fold2d padding usize::MAX", arg, || {
            ones(&[1, 4, 4])?.fold2d([3, 3], [2, 2], [1, 1], [usize::MAX, 0], [1, 1])
        }),
        named("fold2d", "fold2d with a block count past usize::MAX", bad, || {
            ones(&[1, 4, 4])?.fold2d([3, 3], [2, 2], [1, 1], [BIG, BIG], [1, 1])
        }),
        named("max_pool2d", "max_pool2d dilation usize::MAX", bad, || {
            image([1, 1, 4, 4])?.max_pool2d(
                [2, 2],
                MaxPool2dOptions { stride: Some([1, 1]), dilation: [usize::MAX, 1], ..Default::default() },
            )
        }),
        named("max_pool2d", "max_pool2d kernel usize::MAX", bad, || {
            image([1, 1, 4, 4])?
                .max_pool2d([usize::MAX, 2], MaxPool2dOptions { stride: Some([1, 1]), ..Default::default() })
        }),
        named("max_pool2d", "f16 max_pool2d padded numel past usize::MAX", bad, || {
            let x = image([1, 1, 1, 1])?.to_dtype(DType::F16)?;
            x.max_pool2d(
                [2 * BIG, 2 * BIG],
                MaxPool2dOptions { stride: Some([1, 1]), padding: [BIG, BIG], ..Default::default() },
            )
        }),
        named("max_pool2d", "max_pool2d stride 0", arg, || {
            image([1, 1, 4, 4])?.max_pool2d([2, 2], MaxPool2dOptions { stride: Some([0, 1]), ..Default::default() })
        }),
        named("max_pool2d", "max_pool2d zero-size kernel", arg, || {
            image([1, 1, 4, 4])?.max_pool2d([0, 2], MaxPool2dOptions { stride: Some([1, 1]), ..Default::default() })
        }),
        named("max_pool2d_with_indices", "max_pool2d_with_indices dilation usize::MAX", bad, || {
            image([1, 1, 4, 4])?.max_pool2d_with_indices(
                [2, 2],
                MaxPool2dOptions {
                    stride: Some([1, 1]),
                    dilation: [1, usize::MAX],
                    ceil_mode: true,
                    ..Default::default()
                },
            )
        }),
        named("avg_pool2d", "avg_pool2d padded numel past usize::MAX", bad, || {
            image([1, 1, 1, 1])?.avg_pool2d(
                [2 * BIG, 2 * BIG],
                AvgPool2dOptions { stride: Some([1, 1]), padding: [BIG, BIG], ..Default::default() },
            )
        }),
        named("avg_pool2d", "avg_pool2d padded plane of usize::MAX rows", bad, || {
            image([1, 1, 1, 1])?.avg_pool2d(
                [usize::MAX, 1],
                AvgPool2dOptions {
                    stride: Some([usize::MAX, 1]),
                    padding: [HALF, 0],
                    ceil_mode: true,
                    ..Default::default()
                },
            )
        }),
        named("avg_pool2d", "avg_pool2d zero-size kernel", arg, || {
            image([1, 1, 4, 4])?.avg_pool2d([2, 0], AvgPool2dOptions { stride: Some([1, 1]), ..Default::default() })
        }),
        named("adaptive_avg_pool2d", "adaptive_avg_pool2d output usize::MAX", bad, || {
            image([1, 1, 4, 4])?.adaptive_avg_pool2d([usize::MAX, 2])
        }),
        named("adaptive_avg_pool2d", "adaptive_avg_pool2d output numel past usize::MAX", bad, || {
            image([1, 1, 4, 4])?.adaptive_avg_pool2d([BIG, BIG])
        }),
        // Representable, but far beyond memory: the averaging matrix can't be allocated.
        out_of_memory("adaptive_avg_pool2d output of 2^50 rows", || {
            image([1, 1, 4, 4])?.adaptive_avg_pool2d([1 << 50, 1])
        }),
    ]
}

fn creation() -> Vec<HostileCase> {
    let (arg, bad) = (is_arg, is_bad_shape);
    let (f32_, dev) = (DType::F32, cpu);
    vec![
        named("full", "full of numel past usize::MAX", bad, move || Tensor::full([usize::MAX, 2], 1.0, f32_, &dev())),
        named("full", "full of bytes past isize::MAX", bad, move || Tensor::full([1 << 62], 1.0, f32_, &dev())),
        named("zeros", "zeros of numel past usize::MAX", bad, move || Tensor::zeros([BIG, BIG], f32_, &dev())),
        named("ones", "ones of numel past usize::MAX", bad, move || Tensor::ones([3, usize::MAX], DType::U8, &dev())),
        named("eye", "eye(usize::MAX, 2)", bad, move || Tensor::eye(usize::MAX, 2, f32_, &dev())),
        named("eye", "eye(2^40, 2^40)", bad, move || Tensor::eye(BIG, BIG, f32_, &dev())),
        named("eye", "eye of bytes past isize::MAX", bad, move || Tensor::eye(1 << 31, 1 << 31, DType::F64, &dev())),
        named("arange", "arange with step 0", arg, move || Tensor::arange(0.0, 1.0, 0.0, f32_, &dev())),
        named("arange", "arange with a NaN step", arg, move || Tensor::arange(0.0, 1.0, f64::NAN, f32_, &dev())),
        named("arange", "arange with a tiny step", arg, move || Tensor::arange(0.0, 1.0, 1e-300, f32_, &dev())),
        named("arange", "arange over the whole f64 range", arg, move || {
            Tensor::arange(-f64::MAX, f64::MAX, 1.0, DType::I64, &dev())
        }),
        named("randperm", "randperm(usize::MAX)", arg, move || Tensor::randperm(usize::MAX, &dev())),
        named("uniform", "rand of numel past usize::MAX", bad, move || Tensor::rand([BIG, BIG], f32_, &dev())),
        named("normal", "randn of numel past usize::MAX", bad, move || Tensor::randn([usize::MAX, 3], f32_, &dev())),
        named("randint", "randint of numel past usize::MAX", bad, move || {
            Tensor::randint(0, 5, [BIG, BIG], DType::I64, &dev())
        }),
        named("bernoulli", "bernoulli_p of numel past usize::MAX", bad, move || {
            Tensor::bernoulli_p([BIG, BIG], 0.5, f32_, &dev())
        }),
        // Representable sizes beyond the address space: the request fails at once.
        out_of_memory("randperm(2^60)", move || Tensor::randperm(1 << 60, &dev())),
        out_of_memory("linspace with usize::MAX steps", move || Tensor::linspace(0.0, 1.0, usize::MAX, f32_, &dev())),
        out_of_memory("linspace with 2^60 steps", move || Tensor::linspace(0.0, 1.0, 1 << 60, f32_, &dev())),
        out_of_memory("rand of 2^60 elements", move || Tensor::rand([1 << 60], f32_, &dev())),
        out_of_memory("randn of 2^60 elements", move || Tensor::randn([1 << 60], DType::F64, &dev())),
    ]
}

fn composites() -> Vec<HostileCase> {
    let (arg, bad) = (is_arg, is_bad_shape);
    // A view of `n` equal elements that owns one.
    let wide = |n: usize| Tensor::new(&[1.0f64]).expand(&[n as isize]);
    vec![
        named("one_hot", "one_hot(i64::MAX)", bad, || Tensor::new(&[1i64]).one_hot(i64::MAX)),
        named("one_hot", "one_hot(i64::MAX) of two indices", bad, || Tensor::new(&[1i64, 0]).one_hot(i64::MAX)),
        named("one_hot", "one_hot(-1) of index i64::MAX", arg, || Tensor::new(&[i64::MAX]).one_hot(-1)),
        named("one_hot", "one_hot(2^40) of 2^40 (expanded) indices", bad, || {
            Tensor::new(&[0i64]).expand(&[BIG as isize])?.one_hot(BIG as i64)
        }),
        named("repeat", "repeat by usize::MAX", bad, || Tensor::new(&[1i64, 2]).repeat(&[usize::MAX])),
        named("repeat", "repeat numel past usize::MAX", bad, || Tensor::new(&[1i64, 2]).repeat(&[BIG, BIG])),
        // `expand` keeps views below isize::MAX / 16 elements.
        named("cat", "cat of views whose bytes pass isize::MAX", bad, move || {
            let n = isize::MAX as usize / 16;
            Tensor::cat(&[wide(n)?, wide(n)?, wide(n)?], 0)
        }),
        named("cat", "cat of views whose sizes sum past usize::MAX", bad, move || {
            let views = (0..40).map(|_| wide(isize::MAX as usize / 16)).collect::<Result<Vec<_>>>()?;
            Tensor::cat(&views, 0)
        }),
        named("norm", "inf norm of an empty tensor", arg, || {
            Tensor::zeros([0], DType::F32, &cpu())?.norm(f64::INFINITY, &[], false)
        }),
        named("norm", "-inf norm over an empty dim", arg, || {
            Tensor::zeros([3, 0], DType::F32, &cpu())?.norm(f64::NEG_INFINITY, &[1], false)
        }),
    ]
}
