//! Hostile inputs on the CPU: every case of `op_table::hostile` must come back as
//! the right error (naming the op called), never a panic, an abort or a value; and
//! the huge-but-valid parameters next to them must still compute the right values.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use op_table::hostile::{cases, error_op};
use tensor_core::{
    BinaryOp, Conv2dOptions, ConvTranspose2dOptions, DType, Device, Error, HostBuffer, MaxPool2dOptions, OwnedBuffer,
    PadMode, Scalar, Tensor,
};

/// A hostile case must fail fast: it never gets near real work or memory.
const FAST: Duration = Duration::from_secs(5);

#[test]
fn every_hostile_case_fails_with_the_right_error() {
    let mut failures = Vec::new();
    let all = cases();
    assert!(all.len() > 50, "only {} cases", all.len());
    for case in &all {
        let name = format!("{} ({})", case.desc, case.op.unwrap_or("out of memory"));
        let start = Instant::now();
        match catch_unwind(AssertUnwindSafe(|| (case.run)())) {
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(format!("{name}: panicked: {msg}"));
            }
            Ok(outcome) => {
                if let Err(m) = case.judge(&outcome) {
                    failures.push(format!("{name}: {m}"));
                }
            }
        }
        if start.elapsed() > FAST {
            failures.push(format!("{name}: took {:?}", start.elapsed()));
        }
    }
    assert!(failures.is_empty(), "{} of {} hostile cases failed:\n{}", failures.len(), all.len(), failures.join("\n"));
}

fn ints(v: &[i64], dtype: DType) -> Tensor {
    Tensor::new(v).to_dtype(dtype).expect("cast")
}

fn op_of(e: &Error) -> String {
    error_op(e).unwrap_or("<none>").to_string()
}

#[test]
fn integer_remainder_and_pow_still_compute_without_bad_operands() {
    // Python semantics: the remainder has the divisor's sign.
    for dt in [DType::I64, DType::I32] {
        let r = ints(&[7, -7, 7, -7], dt).remainder(&ints(&[3, 3, -3, -3], dt)).expect("remainder");
        assert_eq!(r.to_vec_f64().expect("values"), vec![1.0, 2.0, -2.0, -1.0]);
        let p = ints(&[2, -3, 5], dt).pow(&ints(&[3, 3, 0], dt)).expect("pow");
        assert_eq!(p.to_vec_f64().expect("values"), vec![8.0, -27.0, 1.0]);
    }
    let r = ints(&[200, 7], DType::U8).remainder_scalar(6).expect("remainder_scalar");
    assert_eq!(r.to_vec::<u8>().expect("values"), vec![2, 1]);
    // True division of integers is float division: x / 0 is inf, not an error.
    let q = ints(&[1, -1, 0], DType::I64).div(&ints(&[0, 0, 0], DType::I64)).expect("div");
    let q = q.to_vec::<f32>().expect("values");
    assert_eq!((q[0], q[1]), (f32::INFINITY, f32::NEG_INFINITY));
    assert!(q[2].is_nan());
    // Floats keep IEEE semantics.
    let f = Tensor::new(&[1.0f64]).remainder_scalar(0.0).expect("float remainder");
    assert!(f.to_vec::<f64>().expect("values")[0].is_nan());
    let f = Tensor::new(&[2.0f32]).pow_scalar(-1.0).expect("float pow");
    assert_eq!(f.to_vec::<f32>().expect("values"), vec![0.5]);
}

#[test]
fn backend_integer_division_by_zero_is_an_error() {
    // Integer `div` reaches a backend only through direct calls (the tensor layer
    // divides integers in f32); the CPU kernel must still refuse a zero divisor.
    let dev = Device::cpu();
    let (ga, gb): (OwnedBuffer, OwnedBuffer) = (HostBuffer::I32(vec![7, 8]).into(), HostBuffer::I32(vec![2, 0]).into());
    let layout = tensor_core::Layout::contiguous([2]);
    for op in [BinaryOp::Div, BinaryOp::Remainder] {
        let Err(e) = dev.backend().binary(op, &*ga, &layout, &*gb, &layout) else {
            panic!("{} by zero must fail", op.name());
        };
        assert_eq!(op_of(&e), op.name());
        assert!(e.to_string().contains("ZeroDivisionError"), "{e}");
    }
    let ok = dev.backend().binary(BinaryOp::Div, &*ga, &layout, &*ga, &layout).expect("nonzero divisors");
    let t = Tensor::from_parts(ok, tensor_core::Layout::contiguous([2]), dev.clone()).expect("fits");
    assert_eq!(t.to_vec::<i32>().expect("values"), vec![1, 1]);
}

#[test]
fn refused_in_place_integer_ops_leave_the_tensor_unchanged() {
    let t = ints(&[7, 8, 9], DType::I64);
    let e = t.binary_(BinaryOp::Remainder, &ints(&[2, 0, 4], DType::I64)).expect_err("zero divisor");
    assert_eq!(op_of(&e), "remainder");
    let e = t.binary_(BinaryOp::Pow, &ints(&[2, -1, 1], DType::I64)).expect_err("negative power");
    assert_eq!(op_of(&e), "pow");
    assert_eq!(t.to_vec::<i64>().expect("values"), vec![7, 8, 9]);
    t.binary_(BinaryOp::Remainder, &ints(&[2], DType::I64)).expect("broadcast nonzero divisor");
    assert_eq!(t.to_vec::<i64>().expect("values"), vec![1, 0, 1]);
}

#[test]
fn scalar_values_that_fit_still_convert() {
    let dev = Device::cpu();
    let cases: Vec<(Scalar, DType, f64)> = vec![
        (Scalar::F64(2.9), DType::I32, 2.0),
        (Scalar::F64(-2.9), DType::I64, -2.0),
        (Scalar::F64(2147483647.0), DType::I32, 2147483647.0),
        (Scalar::F64(-2147483648.0), DType::I32, -2147483648.0),
        (Scalar::I64(i64::MIN), DType::I64, i64::MIN as f64),
        (Scalar::F64(-(2f64.powi(63))), DType::I64, i64::MIN as f64),
        (Scalar::F64(255.0), DType::U8, 255.0),
        // uint8 takes negative integers down to -255 (two's complement), like PyTorch.
        (Scalar::I64(-1), DType::U8, 255.0),
        (Scalar::I64(-255), DType::U8, 1.0),
        (Scalar::F64(65504.0), DType::F16, 65504.0),
        (Scalar::F64(f64::INFINITY), DType::F16, f64::INFINITY),
        (Scalar::F64(1e39), DType::F64, 1e39),
        (Scalar::F64(f64::NAN), DType::Bool, 1.0),
        (Scalar::I64(7), DType::Bool, 1.0),
    ];
    for (s, dt, want) in cases {
        let t = Tensor::full([2], s, dt, &dev).unwrap_or_else(|e| panic!("full({s}) as {dt}: {e}"));
        assert_eq!(t.to_vec_f64().expect("values"), vec![want; 2], "full({s}) as {dt}");
    }
    // Just past the ends.
    for (s, dt) in [
        (Scalar::F64(2147483648.0), DType::I32),
        (Scalar::F64(-2147483649.0), DType::I32),
        (Scalar::F64(2f64.powi(63)), DType::I64),
        (Scalar::I64(-256), DType::U8),
        (Scalar::F64(65505.0), DType::F16),
    ] {
        let e = Tensor::full([2], s, dt, &dev).err().unwrap_or_else(|| panic!("full({s}) as {dt} must fail"));
        assert_eq!(op_of(&e), "full");
        assert!(e.to_string().contains(&format!("value {s} cannot be converted to type {dt} without overflow")), "{e}");
    }
    // Float arithmetic with a huge scalar overflows to inf like PyTorch, no error.
    let x = Tensor::new(&[1.0f32]);
    assert_eq!((1e39 * &x).expect("mul").to_vec::<f32>().expect("values"), vec![f32::INFINITY]);
    assert_eq!(x.maximum_scalar(1e39).expect("maximum").to_vec::<f32>().expect("values"), vec![f32::INFINITY]);
    let s = Tensor::scalar_on(1e39, DType::F32, &dev).expect("scalar_on rounds floats");
    assert_eq!(s.to_vec::<f32>().expect("values"), vec![f32::INFINITY]);
    let y = Tensor::new(&[1.0f32]);
    y.add_scalar_(1e39).expect("in-place add");
    assert_eq!(y.to_vec::<f32>().expect("values"), vec![f32::INFINITY]);
    // Integer arithmetic with scalars that fit is unchanged (u8 wraps).
    let u = ints(&[1, 7], DType::U8);
    assert_eq!(u.sub_scalar(2).expect("sub").to_vec::<u8>().expect("values"), vec![255, 5]);
    assert_eq!(u.add_scalar(-1).expect("add").to_vec::<u8>().expect("values"), vec![0, 6]);
    // Integer clamps with bounds outside the dtype's range that leave values alone.
    let i = ints(&[-5, 0, 5], DType::I32);
    let c = i.clamp(Some(f64::NEG_INFINITY), Some(1e20)).expect("wide clamp");
    assert_eq!(c.to_vec::<i32>().expect("values"), vec![-5, 0, 5]);
    let c = i.clamp(Some(-1e20), Some(2.5)).expect("clamp");
    assert_eq!(c.to_vec::<i32>().expect("values"), vec![-5, 0, 2]);
    // Masked fill and constant pads with values that fit.
    let m = i.masked_fill(&Tensor::new(&[true, false, true]), 2.7).expect("masked_fill");
    assert_eq!(m.to_vec::<i32>().expect("values"), vec![2, 0, 2]);
    let p = i.pad(&[1, 0], PadMode::Constant(-7.0)).expect("pad");
    assert_eq!(p.to_vec::<i32>().expect("values"), vec![-7, -5, 0, 5]);
}

#[test]
fn huge_but_harmless_window_parameters_compute_the_right_values() {
    let dev = Device::cpu();
    let x = Tensor::arange(0.0, 9.0, 1.0, DType::F32, &dev).expect("arange").reshape(&[1, 1, 3, 3]).expect("view");
    // A 1-tap kernel ignores its dilation; a single output ignores its stride.
    let w = Tensor::ones([1, 1, 1, 1], DType::F32, &dev).expect("ones");
    let a = x
        .conv2d(&w, None, Conv2dOptions { dilation: [usize::MAX, usize::MAX], ..Default::default() })
        .expect("conv2d, huge dilation");
    assert_eq!(a.to_vec::<f32>().expect("values"), (0..9).map(|v| v as f32).collect::<Vec<_>>());
    let w3 = Tensor::ones([1, 1, 3, 3], DType::F32, &dev).expect("ones");
    let b = x
        .conv2d(&w3, None, Conv2dOptions { stride: [usize::MAX, usize::MAX], ..Default::default() })
        .expect("conv2d, huge stride");
    assert_eq!(b.to_vec::<f32>().expect("values"), vec![36.0]);
    let u = x.unfold2d([1, 1], [usize::MAX, usize::MAX], [0, 0], [usize::MAX, 1]).expect("unfold2d");
    assert_eq!(u.to_vec::<f32>().expect("values"), vec![0.0, 1.0, 2.0]);
    // The same through the generic paths: a non-contiguous f32 input for conv, f16
    // for pooling (the direct loops take contiguous f32/f64 only).
    let xnc = Tensor::arange(0.0, 9.0, 1.0, DType::F32, &dev)
        .and_then(|t| t.reshape(&[3, 3])?.t()?.contiguous()?.t()?.unsqueeze(0)?.unsqueeze(0))
        .expect("transposed view");
    assert!(!xnc.is_contiguous());
    let c =
        xnc.conv2d(&w3, None, Conv2dOptions { stride: [usize::MAX, 1], ..Default::default() }).expect("generic conv2d");
    assert_eq!(c.to_vec::<f32>().expect("values"), vec![36.0]);
    let c = xnc
        .conv2d(&w, None, Conv2dOptions { dilation: [usize::MAX, usize::MAX], ..Default::default() })
        .expect("generic conv2d");
    assert_eq!(c.to_vec::<f32>().expect("values"), (0..9).map(|v| v as f32).collect::<Vec<_>>());
    let x16 = x.to_dtype(DType::F16).expect("f16");
    let m = x16
        .max_pool2d([3, 3], MaxPool2dOptions { stride: Some([usize::MAX, usize::MAX]), ..Default::default() })
        .expect("generic max_pool2d");
    assert_eq!(m.to_vec_f64().expect("values"), vec![8.0]);
    let m = x16
        .max_pool2d(
            [1, 1],
            MaxPool2dOptions { stride: Some([2, 2]), dilation: [usize::MAX, usize::MAX], ..Default::default() },
        )
        .expect("generic max_pool2d");
    assert_eq!(m.to_vec_f64().expect("values"), vec![0.0, 2.0, 6.0, 8.0]);
    let t = x
        .conv_transpose2d(&w, None, ConvTranspose2dOptions { dilation: [usize::MAX, usize::MAX], ..Default::default() })
        .expect("conv_transpose2d, 1-tap kernel with huge dilation");
    assert_eq!(t.to_vec::<f32>().expect("values"), (0..9).map(|v| v as f32).collect::<Vec<_>>());
    // A max-pool window far larger than the input, mostly padding: one pass over the
    // few real taps, not over the padding (2^40 taps per window would hang).
    let one = Tensor::full([1, 1, 1, 1], 3.0, DType::F32, &dev).expect("full");
    let k = 1usize << 40;
    let (v, i) = one
        .max_pool2d_with_indices(
            [k, k],
            MaxPool2dOptions { stride: Some([1, 1]), padding: [k / 2, k / 2], ..Default::default() },
        )
        .expect("huge window");
    assert_eq!(v.dims(), &[1, 1, 2, 2]);
    assert_eq!(v.to_vec::<f32>().expect("values"), vec![3.0; 4]);
    assert_eq!(i.to_vec::<i64>().expect("indices"), vec![0; 4]);
    let k = usize::MAX;
    let v = one
        .max_pool2d(
            [k, 1],
            MaxPool2dOptions { stride: Some([1, 1]), padding: [k / 2, 0], ceil_mode: true, ..Default::default() },
        )
        .expect("usize::MAX window");
    assert_eq!(v.to_vec::<f32>().expect("values"), vec![3.0]);
    // Adaptive pooling to an empty output.
    let e = x.adaptive_avg_pool2d([0, 2]).expect("empty adaptive pool");
    assert_eq!(e.dims(), &[1, 1, 0, 2]);
}

#[test]
fn creation_ops_still_build_the_right_values() {
    let dev = Device::cpu();
    let e = Tensor::eye(2, 3, DType::I32, &dev).expect("eye");
    assert_eq!(e.to_vec::<i32>().expect("values"), vec![1, 0, 0, 0, 1, 0]);
    let e = Tensor::eye(3, 2, DType::Bool, &dev).expect("eye");
    assert_eq!(e.to_vec::<bool>().expect("values"), vec![true, false, false, true, false, false]);
    assert_eq!(Tensor::eye(0, 5, DType::F32, &dev).expect("empty eye").dims(), &[0, 5]);
    assert_eq!(Tensor::eye(4, 0, DType::F32, &dev).expect("empty eye").dims(), &[4, 0]);
    let l = Tensor::linspace(0.0, 1.0, 0, DType::F32, &dev).expect("empty linspace");
    assert_eq!(l.dims(), &[0]);
    // randperm draws the same permutation as the generator's own shuffle.
    tensor_core::manual_seed(11);
    let p = Tensor::randperm(10, &dev).expect("randperm").to_vec::<i64>().expect("values");
    let want: Vec<i64> = tensor_core::Generator::new(11).permutation(10).into_iter().map(|v| v as i64).collect();
    assert_eq!(p, want);
    // A failed huge draw does not advance the generator.
    let mut g = tensor_core::Generator::new(5);
    assert!(matches!(g.try_uniform_f64(1 << 60), Err(Error::OutOfMemory { .. })));
    assert!(matches!(g.try_normal_f64(usize::MAX), Err(Error::OutOfMemory { .. })));
    assert_eq!(g.state(), (5, 0));
    assert_eq!(g.try_uniform_f64(3).expect("draw"), tensor_core::Generator::new(5).uniform_f64(3));
    // one_hot with an inferred class count, tril/triu and flip (built on index ranges).
    let h = Tensor::new(&[2i64, 0]).one_hot(-1).expect("one_hot");
    assert_eq!(h.to_vec2::<i64>().expect("values"), vec![vec![0, 0, 1], vec![1, 0, 0]]);
    let t = Tensor::from_vec(vec![1i64, 2, 3, 4, 5, 6], [2, 3]).expect("matrix");
    assert_eq!(t.tril(0).expect("tril").to_vec::<i64>().expect("values"), vec![1, 0, 0, 4, 5, 0]);
    assert_eq!(t.triu(1).expect("triu").to_vec::<i64>().expect("values"), vec![0, 2, 3, 0, 0, 6]);
    assert_eq!(t.flip(&[1]).expect("flip").to_vec::<i64>().expect("values"), vec![3, 2, 1, 6, 5, 4]);
}

#[test]
fn norms_of_empty_tensors_follow_pytorch() {
    let z = Tensor::zeros([0, 3], DType::F32, &Device::cpu()).expect("zeros");
    // The sum-based norms of nothing are 0; the inf norms are errors naming norm.
    assert_eq!(z.norm(2.0, &[], false).expect("2-norm").to_vec::<f32>().expect("value"), vec![0.0]);
    // Reducing the non-empty dim of an empty tensor gives an empty result, no error.
    assert_eq!(z.norm(f64::INFINITY, &[1], false).expect("inf norm").dims(), &[0]);
    let e = z.norm(f64::INFINITY, &[0], false).expect_err("no identity");
    assert_eq!(op_of(&e), "norm");
}
