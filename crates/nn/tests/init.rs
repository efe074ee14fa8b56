//! Initialiser statistics: bounds, standard deviations, gains, orthogonality, seeding,
//! and the default initialisation of layers.

use nn::init::{self, calculate_fan_in_and_fan_out, calculate_gain, FanMode, Nonlinearity};
use nn::*;
use tensor_core::{DType, Device, Generator, Tensor};

/// The global random generator is shared by the test threads of this binary: each
/// test holds this lock while it seeds and draws.
static RNG_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    RNG_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn param(dims: &[usize]) -> Param {
    Param::new(Tensor::zeros(dims.to_vec(), DType::F64, &Device::cpu()).unwrap()).unwrap()
}

fn stats(p: &Param) -> (f64, f64, f64) {
    let v = p.tensor().to_vec_f64().unwrap();
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let std = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
    let max = v.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    (mean, std, max)
}

#[test]
fn gains_and_fans_match_pytorch() {
    let _g = serial();
    assert_eq!(calculate_gain(Nonlinearity::Linear), 1.0);
    assert_eq!(calculate_gain(Nonlinearity::Conv), 1.0);
    assert_eq!(calculate_gain(Nonlinearity::Sigmoid), 1.0);
    assert!((calculate_gain(Nonlinearity::Tanh) - 5.0 / 3.0).abs() < 1e-15);
    assert!((calculate_gain(Nonlinearity::ReLU) - 2f64.sqrt()).abs() < 1e-15);
    assert!((calculate_gain(Nonlinearity::LeakyReLU(0.01)) - (2.0 / 1.0001f64).sqrt()).abs() < 1e-15);
    assert!((calculate_gain(Nonlinearity::LeakyReLU(5f64.sqrt())) - (1.0f64 / 3.0).sqrt()).abs() < 1e-15);
    assert_eq!(calculate_gain(Nonlinearity::SELU), 0.75);
    assert_eq!(calculate_fan_in_and_fan_out(&[16, 8, 3, 3]).unwrap(), (72, 144));
    assert_eq!(calculate_fan_in_and_fan_out(&[5, 7]).unwrap(), (7, 5));
    assert!(calculate_fan_in_and_fan_out(&[5]).is_err());
    assert!(init::kaiming_uniform_(&param(&[4]), FanMode::FanIn, Nonlinearity::ReLU).is_err());
}

#[test]
fn kaiming_bounds_and_std() {
    let _g = serial();
    tensor_core::manual_seed(0);
    let p = param(&[256, 128, 3]);
    let (fan_in, fan_out) = (384.0f64, 768.0f64);
    init::kaiming_uniform_(&p, FanMode::FanIn, Nonlinearity::ReLU).unwrap();
    let bound = 2f64.sqrt() * (3.0 / fan_in).sqrt();
    let (mean, std, max) = stats(&p);
    assert!(max <= bound && max > 0.99 * bound, "max {max} bound {bound}");
    assert!(mean.abs() < 0.01 * bound);
    assert!((std - bound / 3f64.sqrt()).abs() < 0.01 * std, "uniform std {std}");

    init::kaiming_normal_(&p, FanMode::FanOut, Nonlinearity::LeakyReLU(0.2)).unwrap();
    let want = calculate_gain(Nonlinearity::LeakyReLU(0.2)) / fan_out.sqrt();
    let (mean, std, _) = stats(&p);
    assert!(mean.abs() < 0.01 * want);
    assert!((std - want).abs() < 0.01 * want, "normal std {std} want {want}");
}

#[test]
fn xavier_bounds_and_std() {
    let _g = serial();
    tensor_core::manual_seed(1);
    let p = param(&[300, 200]);
    init::xavier_uniform_(&p, calculate_gain(Nonlinearity::Tanh)).unwrap();
    let bound = 5.0 / 3.0 * (6.0f64 / 500.0).sqrt();
    let (_, std, max) = stats(&p);
    assert!(max <= bound && max > 0.99 * bound);
    assert!((std - bound / 3f64.sqrt()).abs() < 0.01 * std);
    init::xavier_normal_(&p, 1.0).unwrap();
    let want = (2.0f64 / 500.0).sqrt();
    let (mean, std, _) = stats(&p);
    assert!(mean.abs() < 0.01 * want && (std - want).abs() < 0.01 * want, "std {std} want {want}");
}

#[test]
fn simple_fills() {
    let _g = serial();
    let p = param(&[3, 2]);
    init::constant_(&p, 2.5).unwrap();
    assert_eq!(p.tensor().to_vec_f64().unwrap(), vec![2.5; 6]);
    init::ones_(&p).unwrap();
    assert_eq!(p.tensor().to_vec_f64().unwrap(), vec![1.0; 6]);
    init::zeros_(&p).unwrap();
    assert_eq!(p.tensor().to_vec_f64().unwrap(), vec![0.0; 6]);
    let big = param(&[100, 100]);
    init::uniform_(&big, 2.0, 3.0).unwrap();
    let v = big.tensor().to_vec_f64().unwrap();
    assert!(v.iter().all(|&x| (2.0..3.0).contains(&x)));
    init::normal_(&big, 5.0, 0.5).unwrap();
    let (mean, std, _) = stats(&big);
    assert!((mean - 5.0).abs() < 0.02 && (std - 0.5).abs() < 0.01);
    // Initialisers run without recording a graph and keep the gradient flag.
    assert!(big.requires_grad());
}

fn gram(w: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    let mut g = vec![0.0; rows * rows];
    for i in 0..rows {
        for j in 0..rows {
            g[i * rows + j] = (0..cols).map(|k| w[i * cols + k] * w[j * cols + k]).sum();
        }
    }
    g
}

#[test]
fn orthogonal_gives_orthonormal_rows_or_columns() {
    let _g = serial();
    tensor_core::manual_seed(2);
    // Wide: W W^T = gain^2 I.
    let p = param(&[6, 4, 2]);
    init::orthogonal_(&p, 1.5).unwrap();
    let w = p.tensor().to_vec_f64().unwrap();
    let g = gram(&w, 6, 8);
    for i in 0..6 {
        for j in 0..6 {
            let want = if i == j { 2.25 } else { 0.0 };
            assert!((g[i * 6 + j] - want).abs() < 1e-12, "WW^T[{i}][{j}] = {}", g[i * 6 + j]);
        }
    }
    // Tall: W^T W = I.
    let p = param(&[9, 5]);
    init::orthogonal_(&p, 1.0).unwrap();
    let w = p.tensor().to_vec_f64().unwrap();
    let mut wt = vec![0.0; 45];
    for i in 0..9 {
        for j in 0..5 {
            wt[j * 9 + i] = w[i * 5 + j];
        }
    }
    let g = gram(&wt, 5, 9);
    for i in 0..5 {
        for j in 0..5 {
            let want = if i == j { 1.0 } else { 0.0 };
            assert!((g[i * 5 + j] - want).abs() < 1e-12);
        }
    }
    assert!(init::orthogonal_(&param(&[3]), 1.0).is_err());
}

#[test]
fn seeding_makes_initialisation_reproducible() {
    let _g = serial();
    let draw = |seed| {
        tensor_core::manual_seed(seed);
        Linear::new(7, 5, true).unwrap().weight.tensor().to_vec2::<f32>().unwrap()
    };
    assert_eq!(draw(42), draw(42));
    assert_ne!(draw(42), draw(43));
    let p = param(&[10, 10]);
    let q = param(&[10, 10]);
    init::xavier_uniform_with(&mut Generator::new(9), &p, 1.0).unwrap();
    init::xavier_uniform_with(&mut Generator::new(9), &q, 1.0).unwrap();
    assert!(p.tensor().equal(&q.tensor()).unwrap());
}

#[test]
fn layers_use_pytorch_default_initialisation() {
    let _g = serial();
    tensor_core::manual_seed(5);
    let fc = Linear::new(400, 300, true).unwrap();
    let b = 1.0 / 400f64.sqrt();
    let w = fc.weight.tensor().to_vec_f64().unwrap();
    assert!(w.iter().all(|x| x.abs() <= b) && w.iter().any(|x| x.abs() > 0.99 * b));
    assert!(fc.bias.as_ref().unwrap().tensor().to_vec_f64().unwrap().iter().all(|x| x.abs() <= b));
    let conv = Conv2d::new(8, 16, [3, 3], Conv2dConfig { groups: 2, ..Default::default() }).unwrap();
    assert_eq!(conv.weight.dims(), vec![16, 4, 3, 3]);
    let b = 1.0 / 36f64.sqrt();
    assert!(conv.weight.tensor().to_vec_f64().unwrap().iter().all(|x| x.abs() <= b));
    let ct = ConvTranspose2d::new(8, 6, [2, 2], Conv2dConfig { groups: 2, ..Default::default() }).unwrap();
    assert_eq!(ct.weight.dims(), vec![8, 3, 2, 2]);
    let b = 1.0 / 12f64.sqrt();
    assert!(ct.weight.tensor().to_vec_f64().unwrap().iter().all(|x| x.abs() <= b));
    let bl = Bilinear::new(9, 4, 2, true).unwrap();
    assert!(bl.weight.tensor().to_vec_f64().unwrap().iter().all(|x| x.abs() <= 1.0 / 3.0));
    let emb = Embedding::new(2000, 10, Some(3)).unwrap();
    let e = emb.weight.tensor().to_vec_f64().unwrap();
    assert!(e[30..40].iter().all(|&x| x == 0.0));
    let n = e.len() as f64;
    let std = (e.iter().map(|x| x * x).sum::<f64>() / n).sqrt();
    assert!((std - 1.0).abs() < 0.03, "embedding std {std}");
    let bn = BatchNorm2d::new(3).unwrap();
    assert_eq!(bn.weight.as_ref().unwrap().tensor().to_vec::<f32>().unwrap(), vec![1.0; 3]);
    assert_eq!(bn.running_var().unwrap().to_vec::<f32>().unwrap(), vec![1.0; 3]);
    let ln = LayerNorm::new(&[2, 3]).unwrap();
    assert_eq!(ln.bias.as_ref().unwrap().tensor().to_vec2::<f32>().unwrap(), vec![vec![0.0; 3]; 2]);
}
