//! Random creation ops: seeding, determinism (also across thread counts), ranges and
//! moments within statistical tolerances.

use std::sync::Mutex;

use tensor_core::{manual_seed, DType, Device, Generator, Tensor};

/// Tests in this file share the global generator; they take turns.
static GLOBAL: Mutex<()> = Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    GLOBAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn cpu() -> Device {
    Device::cpu()
}

/// One draw of every global-generator op, as f64 vectors.
fn draw_all() -> Vec<Vec<f64>> {
    let p = Tensor::full([300], 0.3, DType::F32, &cpu()).unwrap();
    vec![
        Tensor::rand([50_000], DType::F32, &cpu()).unwrap().to_vec_f64().unwrap(),
        Tensor::randn([50_001], DType::F64, &cpu()).unwrap().to_vec_f64().unwrap(),
        Tensor::uniform([7, 3], -1.0, 4.0, DType::BF16, &cpu()).unwrap().to_vec_f64().unwrap(),
        Tensor::normal([9], 2.0, 0.5, DType::F16, &cpu()).unwrap().to_vec_f64().unwrap(),
        p.bernoulli().unwrap().to_vec_f64().unwrap(),
        Tensor::bernoulli_p([300], 0.7, DType::F32, &cpu()).unwrap().to_vec_f64().unwrap(),
        Tensor::randint(-5, 5, [400], DType::I32, &cpu()).unwrap().to_vec_f64().unwrap(),
        Tensor::randperm(200, &cpu()).unwrap().to_vec_f64().unwrap(),
        // A kernel over random data, large enough to run on several threads.
        Tensor::randn([70_000], DType::F32, &cpu()).unwrap().exp().unwrap().to_vec_f64().unwrap(),
    ]
}

#[test]
fn same_seed_same_numbers_different_seed_different_numbers() {
    let _g = lock();
    manual_seed(1234);
    let a = draw_all();
    manual_seed(1234);
    let b = draw_all();
    manual_seed(1235);
    let c = draw_all();
    for (k, ((x, y), z)) in a.iter().zip(&b).zip(&c).enumerate() {
        assert_eq!(x, y, "op {k}: same seed gave different numbers");
        if x.len() > 20 {
            assert_ne!(x, z, "op {k}: different seeds gave the same numbers");
        }
    }
}

#[test]
fn numbers_do_not_depend_on_the_thread_count() {
    let _g = lock();
    manual_seed(99);
    let default = draw_all();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let single = pool.install(|| {
        manual_seed(99);
        draw_all()
    });
    assert_eq!(default, single);
}

#[test]
fn generator_state_round_trips() {
    let mut g = Generator::new(5);
    let _ = g.uniform_f64(10);
    let st = g.state();
    let a = Tensor::uniform_with(&mut g, [100], 0.0, 1.0, DType::F64, &cpu()).unwrap().to_vec_f64().unwrap();
    let mut h = Generator::new(0);
    h.set_state(st);
    let b = Tensor::uniform_with(&mut h, [100], 0.0, 1.0, DType::F64, &cpu()).unwrap().to_vec_f64().unwrap();
    assert_eq!(a, b);

    let _l = lock();
    manual_seed(8);
    let s = tensor_core::random::global_state();
    let x = Tensor::rand([64], DType::F32, &cpu()).unwrap().to_vec_f64().unwrap();
    tensor_core::random::set_global_state(s);
    let y = Tensor::rand([64], DType::F32, &cpu()).unwrap().to_vec_f64().unwrap();
    assert_eq!(x, y);
}

fn mean_var(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    (m, v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n)
}

const N: usize = 200_000;

#[test]
fn uniform_moments_and_range() {
    // `Tensor::rand` below draws from the global generator.
    let _g = lock();
    for dt in [DType::F32, DType::F64, DType::F16, DType::BF16] {
        let v =
            Tensor::uniform_with(&mut Generator::new(11), [N], -1.0, 3.0, dt, &cpu()).unwrap().to_vec_f64().unwrap();
        assert!(v.iter().all(|&x| (-1.0..3.0).contains(&x)), "{dt}: out of range");
        let (m, var) = mean_var(&v);
        // mean 1, variance (b-a)^2/12 = 4/3; standard error of the mean ~ 0.0026
        assert!((m - 1.0).abs() < 0.02, "{dt}: mean {m}");
        assert!((var - 4.0 / 3.0).abs() < 0.03, "{dt}: variance {var}");
        let r = Tensor::rand([N], dt, &cpu()).unwrap().to_vec_f64().unwrap();
        assert!(r.iter().all(|&x| (0.0..1.0).contains(&x)), "{dt}: rand out of [0, 1)");
    }
}

#[test]
fn normal_moments() {
    let v =
        Tensor::normal_with(&mut Generator::new(12), [N], 3.0, 2.0, DType::F64, &cpu()).unwrap().to_vec_f64().unwrap();
    let (m, var) = mean_var(&v);
    assert!((m - 3.0).abs() < 0.03, "mean {m}");
    assert!((var.sqrt() - 2.0).abs() < 0.03, "std {}", var.sqrt());
    // Skewness near 0 and kurtosis near 3.
    let sd = var.sqrt();
    let skew = v.iter().map(|x| ((x - m) / sd).powi(3)).sum::<f64>() / N as f64;
    let kurt = v.iter().map(|x| ((x - m) / sd).powi(4)).sum::<f64>() / N as f64;
    assert!(skew.abs() < 0.05, "skewness {skew}");
    assert!((kurt - 3.0).abs() < 0.1, "kurtosis {kurt}");
    // About 68.3% within one standard deviation.
    let within = v.iter().filter(|x| (*x - 3.0).abs() < 2.0).count() as f64 / N as f64;
    assert!((within - 0.6827).abs() < 0.01, "within 1 sd: {within}");
}

#[test]
fn bernoulli_and_randint_frequencies() {
    let _g = lock();
    manual_seed(3);
    let b = Tensor::bernoulli_p([N], 0.3, DType::F32, &cpu()).unwrap().to_vec_f64().unwrap();
    let m = b.iter().sum::<f64>() / N as f64;
    assert!((m - 0.3).abs() < 0.01, "bernoulli_p mean {m}");
    let p = Tensor::full([N], 0.8, DType::F64, &cpu()).unwrap();
    let m = p.bernoulli().unwrap().to_vec_f64().unwrap().iter().sum::<f64>() / N as f64;
    assert!((m - 0.8).abs() < 0.01, "bernoulli mean {m}");

    let r = Tensor::randint(-3, 7, [N], DType::I64, &cpu()).unwrap().to_vec::<i64>().unwrap();
    let mut counts = [0usize; 10];
    for x in &r {
        assert!((-3..7).contains(x));
        counts[(x + 3) as usize] += 1;
    }
    for (k, c) in counts.iter().enumerate() {
        let f = *c as f64 / N as f64;
        assert!((f - 0.1).abs() < 0.01, "value {} frequency {f}", k as i64 - 3);
    }
    // The full i64 range does not overflow.
    let w = Tensor::randint(i64::MIN, i64::MAX, [1000], DType::I64, &cpu()).unwrap().to_vec::<i64>().unwrap();
    assert!(w.iter().any(|&x| x < 0) && w.iter().any(|&x| x > 0));

    // randperm: every position equally likely to hold 0.
    let mut first = [0usize; 5];
    for _ in 0..5000 {
        let p = Tensor::randperm(5, &cpu()).unwrap().to_vec::<i64>().unwrap();
        first[p.iter().position(|&x| x == 0).unwrap()] += 1;
    }
    for c in first {
        assert!((c as f64 / 5000.0 - 0.2).abs() < 0.03, "randperm position counts {first:?}");
    }
}
