//! Reductions and matmul give bit-identical results whatever the thread count and
//! whatever the layout of the same logical values.

use tensor_core::{DType, Device, Tensor};

fn in_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("thread pool").install(f)
}

fn bits(t: &Tensor) -> Vec<u64> {
    t.to_vec_f64().expect("readable").into_iter().map(f64::to_bits).collect()
}

fn data(rows: usize, cols: usize) -> Tensor {
    let v: Vec<f32> = (0..rows * cols).map(|i| ((i * 7919 % 1000) as f32 - 500.0) * 1e-3 + 1e-7 * i as f32).collect();
    Tensor::from_vec(v, [rows, cols]).expect("shape matches")
}

#[test]
fn reductions_do_not_depend_on_thread_count() -> tensor_core::Result<()> {
    let x = data(700, 300);
    let run = || -> tensor_core::Result<Vec<Vec<u64>>> {
        Ok(vec![
            bits(&x.sum_all()?),
            bits(&x.sum(&[0], false)?),
            bits(&x.sum(&[1], false)?),
            bits(&x.t()?.sum(&[1], false)?),
            bits(&x.prod(&[0], false)?),
            bits(&x.amax(&[0], false)?),
            bits(&x.argmin(0, false)?),
            bits(&x.var(&[1], 1.0, false)?),
            bits(&x.logsumexp(&[0], false)?),
        ])
    };
    let one = in_pool(1, run)?;
    let two = in_pool(2, run)?;
    let five = in_pool(5, run)?;
    assert_eq!(one, two);
    assert_eq!(one, five);
    Ok(())
}

#[test]
fn reductions_do_not_depend_on_layout() -> tensor_core::Result<()> {
    let x = data(700, 300).to_dtype(DType::F64)?;
    // The same logical values stored transposed.
    let y = x.t()?.contiguous()?.t()?;
    for dims in [&[][..], &[0], &[1], &[0, 1]] {
        assert_eq!(bits(&x.sum(dims, false)?), bits(&y.sum(dims, false)?), "sum over {dims:?}");
        assert_eq!(bits(&x.prod(dims, true)?), bits(&y.prod(dims, true)?), "prod over {dims:?}");
    }
    assert_eq!(bits(&x.argmax(0, false)?), bits(&y.argmax(0, false)?));
    assert_eq!(bits(&x.argmax(1, false)?), bits(&y.argmax(1, false)?));
    Ok(())
}

#[test]
fn large_sums_match_a_naive_f64_sum() -> tensor_core::Result<()> {
    let (r, c) = (1000, 300);
    let x = data(r, c);
    let v = x.to_vec::<f32>()?;
    let total: f64 = v.iter().map(|&a| a as f64).sum();
    let got = x.sum_all()?.to_scalar::<f64>()?;
    assert!((got - total).abs() <= 1e-6 * total.abs().max(1.0), "{got} vs {total}");
    let col0 = x.sum(&[0], false)?.to_vec::<f32>()?;
    for (j, g) in col0.iter().enumerate() {
        let want: f64 = (0..r).map(|i| v[i * c + j] as f64).sum();
        assert!((*g as f64 - want).abs() <= 1e-5 * want.abs().max(1.0), "column {j}: {g} vs {want}");
    }
    let m = x.mean(&[1], true)?;
    assert_eq!(m.dims(), &[r, 1]);
    Ok(())
}

#[test]
fn matmul_does_not_depend_on_thread_count() -> tensor_core::Result<()> {
    let a = data(120, 90);
    let b = data(90, 150);
    let run = || -> tensor_core::Result<Vec<u64>> { Ok(bits(&a.matmul(&b)?)) };
    assert_eq!(in_pool(1, run)?, in_pool(2, run)?);
    assert_eq!(in_pool(1, run)?, in_pool(3, run)?);
    // A batch of two products: with one or two threads each product runs whole on one
    // thread; with three, the products are split across the threads in turn.
    let ab = data(240, 90).reshape_to([2, 120, 90])?;
    let bb = data(180, 150).reshape_to([2, 90, 150])?;
    let run = || -> tensor_core::Result<Vec<u64>> { Ok(bits(&ab.matmul(&bb)?)) };
    assert_eq!(in_pool(1, run)?, in_pool(2, run)?);
    assert_eq!(in_pool(1, run)?, in_pool(3, run)?);
    Ok(())
}

#[test]
fn matmul_f32_matches_f64_reference_on_random_data() -> tensor_core::Result<()> {
    let dev = Device::cpu();
    let a = Tensor::randn([3, 33, 47], DType::F64, &dev)?;
    let b = Tensor::randn([47, 29], DType::F64, &dev)?;
    let want = a.matmul(&b)?.to_vec_f64()?;
    let (av, bv) = (a.to_vec_f64()?, b.to_vec_f64()?);
    // naive f64 check of the f64 product itself
    for bi in 0..3 {
        for i in 0..33 {
            for j in 0..29 {
                let s: f64 = (0..47).map(|p| av[(bi * 33 + i) * 47 + p] * bv[p * 29 + j]).sum();
                assert!((want[(bi * 33 + i) * 29 + j] - s).abs() < 1e-12);
            }
        }
    }
    for dt in [DType::F32, DType::F16, DType::BF16] {
        let prod = a.to_dtype(dt)?.matmul(&b.to_dtype(dt)?.t()?.contiguous()?.t()?)?.to_vec_f64()?;
        let tol = match dt {
            DType::F32 => 1e-4,
            DType::F16 => 5e-2,
            _ => 3e-1,
        };
        for (g, w) in prod.iter().zip(&want) {
            assert!((g - w).abs() <= tol * (1.0 + w.abs()), "{dt}: {g} vs {w}");
        }
    }
    Ok(())
}
