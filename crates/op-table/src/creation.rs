//! Op-table records for the creation ops (`create.rs`).
//!
//! Random ops cannot have a value reference; their records check properties that
//! hold for any seed (ranges, support, determinism under one seed). Moments and the
//! global generator's seeding are tested in `tests/random.rs`.

use half::{bf16, f16};
use tensor_core::{DType, Device, Error, Generator, Result, Scalar, Tensor};

use crate::views::ref_reshape;
use crate::{int_t, rand_t, ErrorCase, OpInfo, RefArray, Sample, ALL, FLOATS, NUMERIC};

fn is_arg(e: &Error) -> bool {
    matches!(e, Error::InvalidArgument { .. })
}

/// A 0-dim input whose only job is to carry the dtype under test into the op.
fn dtype_carrier() -> Tensor {
    Tensor::scalar(0.0f64)
}

/// Rebuilds `x` from a typed Rust vector with `build` (dispatching on its dtype).
macro_rules! rebuild {
    ($x:expr, |$v:ident| $build:expr) => {{
        let x: &Tensor = $x;
        match x.dtype() {
            DType::F32 => {
                let $v = x.to_vec::<f32>()?;
                $build
            }
            DType::F64 => {
                let $v = x.to_vec::<f64>()?;
                $build
            }
            DType::F16 => {
                let $v = x.to_vec::<f16>()?;
                $build
            }
            DType::BF16 => {
                let $v = x.to_vec::<bf16>()?;
                $build
            }
            DType::I64 => {
                let $v = x.to_vec::<i64>()?;
                $build
            }
            DType::I32 => {
                let $v = x.to_vec::<i32>()?;
                $build
            }
            DType::U8 => {
                let $v = x.to_vec::<u8>()?;
                $build
            }
            DType::Bool => {
                let $v = x.to_vec::<bool>()?;
                $build
            }
        }
    }};
}

/// One element per check, 1 where it holds: the reference is all ones.
fn checks(v: &[bool]) -> Tensor {
    Tensor::new(&v.iter().map(|&b| if b { 1.0 } else { 0.0 }).collect::<Vec<f64>>())
}
fn ones_ref(n: usize) -> Vec<RefArray> {
    vec![RefArray::new(vec![n], vec![1.0; n])]
}

fn from_data_ops() -> Vec<OpInfo> {
    let src = || rand_t(1, &[2, 3], -3.0, 3.0);
    let from_vec = OpInfo::new("from_vec", ALL, false)
        .covers(&["from_slice", "new", "scalar"])
        .sample(Sample::new(
            "from_vec [2,3] -> [3,2]",
            vec![src()],
            |x| Ok(vec![rebuild!(&x[0], |v| Tensor::from_vec(v, [3, 2])?)]),
            |r| vec![ref_reshape(&r[0], &[3, 2])],
        ))
        .sample(Sample::new(
            "from_slice as 0-dim",
            vec![rand_t(2, &[], -3.0, 3.0)],
            |x| Ok(vec![rebuild!(&x[0], |v| Tensor::from_slice(&v, ())?)]),
            |r| vec![r[0].clone()],
        ))
        .sample(Sample::new(
            "from_vec zero-size [0,4]",
            vec![rand_t(3, &[0], -3.0, 3.0)],
            |x| Ok(vec![rebuild!(&x[0], |v| Tensor::from_vec(v, [0, 4])?)]),
            |_| vec![RefArray::new(vec![0, 4], vec![])],
        ))
        .sample(Sample::new(
            "new (1-D)",
            vec![src()],
            |x| Ok(vec![rebuild!(&x[0], |v| Tensor::new(&v))]),
            |r| vec![ref_reshape(&r[0], &[6])],
        ))
        .sample(Sample::new(
            "scalar",
            vec![src()],
            |x| Ok(vec![rebuild!(&x[0], |v| Tensor::scalar(v[4]))]),
            |r| vec![RefArray::scalar(r[0].data[4])],
        ))
        .error(ErrorCase::new(
            "numel mismatch",
            || Tensor::from_vec(vec![1.0f32; 5], [2, 3]),
            |e| matches!(e, Error::InvalidShape { .. }),
        ))
        .error(ErrorCase::new(
            "from_slice numel mismatch",
            || Tensor::from_slice(&[1i64, 2], [3]),
            |e| matches!(e, Error::InvalidShape { .. }),
        ));

    let to_device = OpInfo::new("to_device", ALL, false)
        .sample(Sample::new(
            "cpu to cpu",
            vec![rand_t(4, &[2, 3], -3.0, 3.0)],
            |x| Ok(vec![x[0].to_device(&Device::cpu())?]),
            |r| vec![r[0].clone()],
        ))
        .sample(Sample::new(
            "transposed view",
            vec![rand_t(5, &[3, 2], -3.0, 3.0)],
            |x| Ok(vec![x[0].t()?.to_device(&Device::cpu())?]),
            |r| vec![crate::views::ref_t(&r[0])],
        ));
    vec![from_vec, to_device]
}

fn constant_ops() -> Vec<OpInfo> {
    let c = |desc: &str, shape: Vec<usize>, value: f64, op: fn(&Tensor) -> Result<Tensor>| {
        Sample::new(
            desc,
            vec![dtype_carrier()],
            move |x| {
                let t = op(&x[0])?;
                if t.dtype() != x[0].dtype() {
                    return Err(Error::arg("op-table", format!("created {} instead of {}", t.dtype(), x[0].dtype())));
                }
                Ok(vec![t])
            },
            move |_| vec![RefArray::new(shape.clone(), vec![value; shape.iter().product()])],
        )
    };
    let like = || rand_t(6, &[2, 3], -3.0, 3.0);
    let full = OpInfo::new("full", ALL, false)
        .covers(&["zeros", "ones", "zeros_like", "ones_like", "full_like", "scalar_on"])
        .sample(c("full [2,3] of 1", vec![2, 3], 1.0, |x| Tensor::full([2, 3], 1i64, x.dtype(), x.device())))
        .sample(c("full 0-dim of true", vec![], 1.0, |x| Tensor::full((), true, x.dtype(), x.device())))
        .sample(c("full zero-size [0,4]", vec![0, 4], 1.0, |x| Tensor::full([0, 4], 1i64, x.dtype(), x.device())))
        .sample(c("zeros [3,1,2]", vec![3, 1, 2], 0.0, |x| Tensor::zeros([3, 1, 2], x.dtype(), x.device())))
        .sample(c("ones [4]", vec![4], 1.0, |x| Tensor::ones([4], x.dtype(), x.device())))
        .sample(c("scalar_on 1", vec![], 1.0, |x| Tensor::scalar_on(1i64, x.dtype(), x.device())))
        .sample(c("scalar_on 0", vec![], 0.0, |x| Tensor::scalar_on(Scalar::F64(0.0), x.dtype(), x.device())))
        .sample(Sample::new(
            "zeros_like / ones_like / full_like of a transposed view",
            vec![like()],
            |x| {
                let v = x[0].t()?;
                let (z, o, f) = (v.zeros_like()?, v.ones_like()?, v.full_like(1i64)?);
                for r in [&z, &o, &f] {
                    if r.dtype() != x[0].dtype() || !r.is_contiguous() {
                        return Err(Error::arg("op-table", "*_like must keep the dtype and be contiguous"));
                    }
                }
                Ok(vec![z, o, f])
            },
            |_| {
                vec![
                    RefArray::new(vec![3, 2], vec![0.0; 6]),
                    RefArray::new(vec![3, 2], vec![1.0; 6]),
                    RefArray::new(vec![3, 2], vec![1.0; 6]),
                ]
            },
        ));
    let full_f = OpInfo::new("full", FLOATS, false)
        .sample(c("full of -2.5", vec![2, 2], -2.5, |x| Tensor::full([2, 2], -2.5, x.dtype(), x.device())))
        .sample(c("full_like of 0.5", vec![2, 3], 0.5, |x| {
            Tensor::zeros([2, 3], x.dtype(), x.device())?.full_like(0.5)
        }))
        .sample(c("full of inf", vec![2], f64::INFINITY, |x| Tensor::full([2], f64::INFINITY, x.dtype(), x.device())));
    let full_i = OpInfo::new("full", NUMERIC, false)
        .sample(c("full of 7", vec![3], 7.0, |x| Tensor::full([3], 7i64, x.dtype(), x.device())));
    vec![full, full_f, full_i]
}

fn range_ops() -> Vec<OpInfo> {
    let r = |desc: &str, op: fn(DType) -> Result<Tensor>, want: Vec<f64>| {
        Sample::new(
            desc,
            vec![dtype_carrier()],
            move |x| Ok(vec![op(x[0].dtype())?]),
            move |_| vec![RefArray::new(vec![want.len()], want.clone())],
        )
    };
    fn cpu() -> Device {
        Device::cpu()
    }
    let lin = |start: f64, end: f64, n: usize| -> Vec<f64> {
        (0..n).map(|i| if n == 1 { start } else { start + (end - start) * i as f64 / (n - 1) as f64 }).collect()
    };
    let arange = OpInfo::new("arange", NUMERIC, false)
        .sample(r("0..5", |d| Tensor::arange(0.0, 5.0, 1.0, d, &cpu()), vec![0.0, 1.0, 2.0, 3.0, 4.0]))
        .sample(r("2..9 step 3", |d| Tensor::arange(2.0, 9.0, 3.0, d, &cpu()), vec![2.0, 5.0, 8.0]))
        .sample(r("empty 3..3", |d| Tensor::arange(3.0, 3.0, 1.0, d, &cpu()), vec![]))
        .sample(r("descending 6..0 step -2", |d| Tensor::arange(6.0, 0.0, -2.0, d, &cpu()), vec![6.0, 4.0, 2.0]))
        .error(ErrorCase::new("step 0", || Tensor::arange(0.0, 1.0, 0.0, DType::F32, &Device::cpu()), is_arg))
        .error(ErrorCase::new("step sign wrong", || Tensor::arange(0.0, 5.0, -1.0, DType::F32, &Device::cpu()), is_arg))
        .error(ErrorCase::new("NaN bound", || Tensor::arange(0.0, f64::NAN, 1.0, DType::F32, &Device::cpu()), is_arg))
        .error(ErrorCase::new(
            "too many elements",
            || Tensor::arange(0.0, 1e300, 1e-300, DType::F32, &Device::cpu()),
            is_arg,
        ));
    let arange_f = OpInfo::new("arange", FLOATS, false)
        .sample(r("1..2.5 step 0.5", |d| Tensor::arange(1.0, 2.5, 0.5, d, &cpu()), vec![1.0, 1.5, 2.0]))
        .sample(r(
            "0..1 step 0.25 (end excluded)",
            |d| Tensor::arange(0.0, 1.0, 0.25, d, &cpu()),
            vec![0.0, 0.25, 0.5, 0.75],
        ))
        .sample(r("-1..-2.5 step -0.5", |d| Tensor::arange(-1.0, -2.5, -0.5, d, &cpu()), vec![-1.0, -1.5, -2.0]));
    let linspace = OpInfo::new("linspace", FLOATS, false)
        .sample(r("0..1, 5 steps", |d| Tensor::linspace(0.0, 1.0, 5, d, &cpu()), lin(0.0, 1.0, 5)))
        .sample(r("-1..2, 7 steps", |d| Tensor::linspace(-1.0, 2.0, 7, d, &cpu()), lin(-1.0, 2.0, 7)))
        .sample(r("descending 1..0, 3 steps", |d| Tensor::linspace(1.0, 0.0, 3, d, &cpu()), lin(1.0, 0.0, 3)))
        .sample(r("1 step gives start", |d| Tensor::linspace(3.0, 5.0, 1, d, &cpu()), vec![3.0]))
        .sample(r("0 steps gives empty", |d| Tensor::linspace(3.0, 5.0, 0, d, &cpu()), vec![]))
        .sample(r("0.1..0.7, 10 steps ends exact", |d| Tensor::linspace(0.1, 0.7, 10, d, &cpu()), lin(0.1, 0.7, 10)));
    let linspace_i = OpInfo::new("linspace", NUMERIC, false).sample(r(
        "0..8, 5 steps",
        |d| Tensor::linspace(0.0, 8.0, 5, d, &cpu()),
        vec![0.0, 2.0, 4.0, 6.0, 8.0],
    ));
    let e = |desc: &str, n: usize, m: usize| {
        Sample::new(
            desc,
            vec![dtype_carrier()],
            move |x| Ok(vec![Tensor::eye(n, m, x[0].dtype(), x[0].device())?]),
            move |_| {
                let v = (0..n * m).map(|k| if k / m == k % m { 1.0 } else { 0.0 }).collect();
                vec![RefArray::new(vec![n, m], v)]
            },
        )
    };
    let eye = OpInfo::new("eye", ALL, false)
        .sample(e("3x3", 3, 3))
        .sample(e("2x4", 2, 4))
        .sample(e("4x2", 4, 2))
        .sample(e("0x3", 0, 3));
    vec![arange, arange_f, linspace, linspace_i, eye]
}

fn random_ops() -> Vec<OpInfo> {
    const N: usize = 20_000;
    let in_range = |v: &[f64], lo: f64, hi: f64| v.iter().all(|&x| x >= lo && x < hi);
    let uniform = OpInfo::new("uniform", FLOATS, false)
        .covers(&["rand"])
        .sample(Sample::new(
            "values in [low, high), same seed same values",
            vec![dtype_carrier()],
            move |x| {
                let d = x[0].dtype();
                let a =
                    Tensor::uniform_with(&mut Generator::new(3), [N], -2.0, 3.0, d, &Device::cpu())?.to_vec_f64()?;
                let b =
                    Tensor::uniform_with(&mut Generator::new(3), [N], -2.0, 3.0, d, &Device::cpu())?.to_vec_f64()?;
                let c =
                    Tensor::uniform_with(&mut Generator::new(4), [N], -2.0, 3.0, d, &Device::cpu())?.to_vec_f64()?;
                Ok(vec![checks(&[in_range(&a, -2.0, 3.0), a == b, a != c])])
            },
            move |_| ones_ref(3),
        ))
        .sample(Sample::new(
            "rand in [0, 1), never 1 after rounding",
            vec![dtype_carrier()],
            move |x| {
                let a = Tensor::rand([N, 4], x[0].dtype(), &Device::cpu())?;
                let ok = a.dims() == [N, 4] && a.dtype() == x[0].dtype() && in_range(&a.to_vec_f64()?, 0.0, 1.0);
                Ok(vec![checks(&[ok])])
            },
            |_| ones_ref(1),
        ))
        .error(ErrorCase::new("low > high", || Tensor::uniform([2], 1.0, 0.0, DType::F32, &Device::cpu()), is_arg))
        .error(ErrorCase::new("NaN bound", || Tensor::uniform([2], f64::NAN, 0.0, DType::F32, &Device::cpu()), is_arg))
        .error(ErrorCase::new(
            "integer dtype",
            || Tensor::rand([2], DType::I64, &Device::cpu()),
            |e| matches!(e, Error::Unsupported { .. }),
        ));
    let normal = OpInfo::new("normal", FLOATS, false)
        .covers(&["randn"])
        .sample(Sample::new(
            "finite, same seed same values",
            vec![dtype_carrier()],
            |x| {
                let d = x[0].dtype();
                let a =
                    Tensor::normal_with(&mut Generator::new(9), [N + 1], 1.0, 2.0, d, &Device::cpu())?.to_vec_f64()?;
                let b =
                    Tensor::normal_with(&mut Generator::new(9), [N + 1], 1.0, 2.0, d, &Device::cpu())?.to_vec_f64()?;
                let r = Tensor::randn([5, 3], d, &Device::cpu())?;
                Ok(vec![checks(&[a.iter().all(|v| v.is_finite()), a == b, r.dims() == [5, 3] && r.dtype() == d])])
            },
            |_| ones_ref(3),
        ))
        .sample(Sample::new(
            "std 0 gives the mean",
            vec![dtype_carrier()],
            |x| Ok(vec![Tensor::normal([4], 1.5, 0.0, x[0].dtype(), &Device::cpu())?]),
            |_| vec![RefArray::new(vec![4], vec![1.5; 4])],
        ))
        .error(ErrorCase::new("negative std", || Tensor::normal([2], 0.0, -1.0, DType::F32, &Device::cpu()), is_arg));
    let bernoulli = OpInfo::new("bernoulli", FLOATS, false)
        .covers(&["bernoulli_p"])
        .sample(Sample::new(
            "p of 0 and 1 is exact",
            vec![int_t(7, &[3, 4], 0, 1)],
            |x| Ok(vec![x[0].bernoulli()?]),
            |r| vec![r[0].clone()],
        ))
        .sample(Sample::new(
            "p of 0.5 gives 0/1 of both kinds",
            vec![Tensor::full([N], 0.5, DType::F64, &Device::cpu()).expect("full")],
            |x| {
                let v = x[0].bernoulli_with(&mut Generator::new(1))?.to_vec_f64()?;
                let b = Tensor::bernoulli_p([N], 0.5, x[0].dtype(), &Device::cpu())?.to_vec_f64()?;
                let binary =
                    |v: &[f64]| v.iter().all(|&x| x == 0.0 || x == 1.0) && v.contains(&0.0) && v.contains(&1.0);
                Ok(vec![checks(&[binary(&v), binary(&b)])])
            },
            |_| ones_ref(2),
        ))
        .error(ErrorCase::new("p out of range", || Tensor::new(&[0.5f32, 1.5]).bernoulli(), is_arg))
        .error(ErrorCase::new("p NaN", || Tensor::new(&[f32::NAN]).bernoulli(), is_arg))
        .error(ErrorCase::new(
            "bernoulli_p out of range",
            || Tensor::bernoulli_p([2], -0.1, DType::F32, &Device::cpu()),
            is_arg,
        ));
    let randint = OpInfo::new("randint", NUMERIC, false)
        .covers(&["randperm"])
        .sample(Sample::new(
            "values in [low, high), every value drawn",
            vec![dtype_carrier()],
            |x| {
                let v = Tensor::randint(2, 9, [N], x[0].dtype(), &Device::cpu())?.to_vec_f64()?;
                let all_seen = (2..9).all(|k| v.contains(&(k as f64)));
                Ok(vec![checks(&[v.iter().all(|&x| (2.0..9.0).contains(&x) && x.fract() == 0.0), all_seen])])
            },
            |_| ones_ref(2),
        ))
        .sample(Sample::new(
            "randperm is a permutation",
            vec![dtype_carrier()],
            |_| {
                let p = Tensor::randperm(100, &Device::cpu())?;
                let mut v = p.to_vec::<i64>()?;
                let moved = v.iter().enumerate().any(|(i, &x)| i as i64 != x);
                v.sort_unstable();
                let e = Tensor::randperm(0, &Device::cpu())?;
                Ok(vec![checks(&[
                    v == (0..100).collect::<Vec<i64>>(),
                    moved,
                    e.dims() == [0] && e.dtype() == DType::I64,
                ])])
            },
            |_| ones_ref(3),
        ))
        .error(ErrorCase::new("high <= low", || Tensor::randint(3, 3, [2], DType::I64, &Device::cpu()), is_arg));
    vec![uniform, normal, bernoulli, randint]
}

/// The records of this family.
pub fn ops() -> Vec<OpInfo> {
    let mut v = from_data_ops();
    v.extend(constant_ops());
    v.extend(range_ops());
    v.extend(random_ops());
    v
}
