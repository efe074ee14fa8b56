//! `Module::to_device`/`to_dtype` keep parameter identity: an optimizer built before a
//! move keeps training the moved parameters (issue #19). References are naive f64
//! loops written here, independent of the library's ops.

use autograd::Var;
use nn::{Forward, Linear, Module};
use optim::{Adam, AdamOptions, Optimizer, Sgd, SgdOptions};
use tensor_core::{DType, Device, Tensor};

type R = tensor_core::Result<()>;

const N: usize = 6;
const X: [[f64; 2]; N] = [[0.5, -1.0], [1.5, 0.25], [-0.75, 2.0], [0.1, 0.3], [2.0, -0.5], [-1.2, -0.4]];
const Y: [f64; N] = [0.3, 1.1, -0.8, 0.2, 1.6, -1.0];

fn data(dtype: DType) -> tensor_core::Result<(Var, Var)> {
    let x: Vec<f64> = X.iter().flatten().copied().collect();
    let x = Tensor::new(x.as_slice()).reshape(&[N as isize, 2])?.to_dtype(dtype)?;
    let y = Tensor::new(&Y).reshape(&[N as isize, 1])?.to_dtype(dtype)?;
    Ok((Var::from(x), Var::from(y)))
}

/// Mean squared error written with basic Var ops.
fn loss(m: &Linear, x: &Var, y: &Var) -> tensor_core::Result<Var> {
    let d = m.forward(x)?.sub(y)?;
    d.mul(&d)?.mean_all()
}

fn values(p: &nn::Param) -> tensor_core::Result<Vec<f64>> {
    p.tensor().to_dtype(DType::F64)?.to_vec::<f64>()
}

/// The gradient of mean((x w + b - y)^2) over the dataset, in f64.
fn naive_grad(w: &[f64; 2], b: f64) -> ([f64; 2], f64) {
    let (mut gw, mut gb) = ([0.0; 2], 0.0);
    for (x, y) in X.iter().zip(Y) {
        let r = x[0] * w[0] + x[1] * w[1] + b - y;
        gw[0] += 2.0 * r * x[0] / N as f64;
        gw[1] += 2.0 * r * x[1] / N as f64;
        gb += 2.0 * r / N as f64;
    }
    (gw, gb)
}

#[test]
fn sgd_built_before_to_dtype_keeps_training_with_its_momentum() -> R {
    let m = Linear::new(2, 1, true)?;
    let (mut w, mut b) = {
        let v = values(&m.weight)?;
        ([v[0], v[1]], values(m.bias.as_ref().unwrap())?[0])
    };
    let (lr, mu) = (0.1, 0.9);
    let mut opt = Sgd::new(m.parameters(), SgdOptions { lr, momentum: mu, ..Default::default() })?;
    // The reference: SGD with momentum in f64 (buffer = grad at the first step).
    let (mut bw, mut bb) = ([0.0f64; 2], 0.0f64);
    for step in 0..8 {
        if step == 2 {
            m.to_dtype(DType::F64)?; // after the momentum buffers exist
            m.to_device(&Device::cpu())?;
        }
        let dtype = if step < 2 { DType::F32 } else { DType::F64 };
        let (x, y) = data(dtype)?;
        opt.zero_grad();
        loss(&m, &x, &y)?.backward()?;
        opt.step()?;
        let (gw, gb) = naive_grad(&w, b);
        for k in 0..2 {
            bw[k] = if step == 0 { gw[k] } else { mu * bw[k] + gw[k] };
            w[k] -= lr * bw[k];
        }
        bb = if step == 0 { gb } else { mu * bb + gb };
        b -= lr * bb;
    }
    assert_eq!(m.weight.tensor().dtype(), DType::F64);
    let got = values(&m.weight)?;
    for k in 0..2 {
        assert!((got[k] - w[k]).abs() < 1e-5, "weight {k}: {} vs reference {}", got[k], w[k]);
    }
    let gb = values(m.bias.as_ref().unwrap())?[0];
    assert!((gb - b).abs() < 1e-5, "bias: {gb} vs reference {b}");
    // The optimizer now holds the moved variables themselves.
    assert!(opt.params().iter().zip(m.parameters()).all(|(a, b)| a.same(&b)));
    Ok(())
}

#[test]
fn adam_state_follows_the_parameters_to_the_new_dtype() -> R {
    let m = Linear::new(2, 1, true)?;
    let mut opt = Adam::new(m.parameters(), AdamOptions { lr: 0.05, ..Default::default() })?;
    let (x, y) = data(DType::F32)?;
    let first = loss(&m, &x, &y)?.to_vec_f64()?;
    opt.zero_grad();
    loss(&m, &x, &y)?.backward()?;
    opt.step()?;
    m.to_dtype(DType::F64)?;
    let (x, y) = data(DType::F64)?;
    for _ in 0..30 {
        opt.zero_grad();
        loss(&m, &x, &y)?.backward()?;
        opt.step()?;
    }
    let st = opt.state(0, 0).expect("the weight has Adam state");
    assert_eq!(st.exp_avg.dtype(), DType::F64);
    assert_eq!(st.exp_avg_sq.dtype(), DType::F64);
    assert_eq!(st.step, 31.0);
    let last = loss(&m, &x, &y)?.to_vec_f64()?;
    assert!(last[0] < 0.5 * first[0], "loss {} -> {}", first[0], last[0]);
    Ok(())
}

trait ToVecF64 {
    fn to_vec_f64(&self) -> tensor_core::Result<Vec<f64>>;
}
impl ToVecF64 for Var {
    fn to_vec_f64(&self) -> tensor_core::Result<Vec<f64>> {
        self.tensor().to_dtype(DType::F64)?.to_vec::<f64>()
    }
}

#[test]
fn backward_through_a_graph_recorded_before_the_move_is_an_error() -> R {
    let m = Linear::new(2, 1, true)?;
    // The optimizer holds the pre-move variables until its next step, as in the
    // common mistake of moving between the forward and the backward.
    let mut opt = Sgd::new(m.parameters(), SgdOptions { lr: 0.1, ..Default::default() })?;
    let (x, y) = data(DType::F32)?;
    let l = loss(&m, &x, &y)?;
    m.to_dtype(DType::F64)?;
    let e = l.backward().unwrap_err().to_string();
    assert!(e.contains("replaced") && (e.contains("[1, 2]") || e.contains("[1]")), "{e}");
    assert!(m.weight.grad().is_none());
    // Running the forward again after the move trains the moved parameters.
    let (x, y) = data(DType::F64)?;
    let before = values(&m.weight)?;
    loss(&m, &x, &y)?.backward()?;
    opt.step()?;
    assert_ne!(values(&m.weight)?, before);
    Ok(())
}

#[test]
fn gradients_and_hooks_move_with_the_parameter() -> R {
    let m = Linear::new(2, 1, false)?;
    let (x, y) = data(DType::F32)?;
    loss(&m, &x, &y)?.backward()?;
    let g32 = m.weight.grad().unwrap().to_dtype(DType::F64)?.to_vec::<f64>()?;
    let w = m.weight.var();
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let s = seen.clone();
    w.register_hook(move |_| {
        s.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(None)
    })?;
    m.to_dtype(DType::F64)?;
    let g = m.weight.grad().expect("the gradient moved too");
    assert_eq!(g.dtype(), DType::F64);
    assert_eq!(g.to_vec::<f64>()?, g32);
    let (x, y) = data(DType::F64)?;
    loss(&m, &x, &y)?.backward()?;
    assert_eq!(seen.load(std::sync::atomic::Ordering::Relaxed), 1, "the hook runs on the moved parameter");
    Ok(())
}

#[test]
fn supersede_refuses_non_leaves_shape_changes_and_stale_handles() -> R {
    let w = Var::param(Tensor::new(&[1.0f32, 2.0]))?;
    let y = w.mul_scalar(2.0)?;
    assert!(y.supersede(Tensor::new(&[0.0f32, 0.0])).unwrap_err().to_string().contains("only a leaf"));
    let e = w.supersede(Tensor::new(&[1.0f32, 2.0, 3.0])).unwrap_err().to_string();
    assert!(e.contains("Var::supersede") && e.contains("[2]") && e.contains("[3]"), "{e}");
    let w2 = w.supersede(Tensor::new(&[5.0f64, 6.0]))?;
    assert!(w.supersede(Tensor::new(&[0.0f32, 0.0])).unwrap_err().to_string().contains("already replaced"));
    let w3 = w.latest().supersede(Tensor::new(&[7.0f32, 8.0]))?;
    assert!(w.latest().same(&w3) && w2.latest().same(&w3));
    assert_eq!(w.latest().tensor().to_vec::<f32>()?, vec![7.0, 8.0]);
    Ok(())
}
