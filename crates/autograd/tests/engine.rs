//! The engine's promises: accumulation, errors, modes, hooks, `grad`, custom
//! functions, anomaly mode, DOT export, long graphs and memory.

use std::sync::Arc;

use autograd::{apply, detect_anomaly, grad, no_grad, Context, Function, NoGradGuard, Var};
use tensor_core::{DType, Device, Error, Result, Tensor};

fn t(v: &[f64], shape: &[usize]) -> Tensor {
    Tensor::from_vec(v.to_vec(), shape.to_vec()).unwrap()
}

fn vals(x: &Tensor) -> Vec<f64> {
    x.to_vec_f64().unwrap()
}

#[test]
fn gradients_accumulate_over_two_backward_calls() -> Result<()> {
    let x = Var::param(t(&[1.0, 2.0, 3.0], &[3]))?;
    for _ in 0..2 {
        let y = x.mul(&x)?.sum(&[], false)?;
        y.backward()?;
    }
    assert_eq!(vals(&x.grad().unwrap()), vec![4.0, 8.0, 12.0]);
    x.zero_grad();
    assert!(x.grad().is_none());
    Ok(())
}

#[test]
fn broadcast_gradients_are_summed_to_the_input_shape() -> Result<()> {
    let a = Var::param(t(&[1.0, 2.0, 3.0], &[3, 1]))?;
    let b = Var::param(t(&[10.0, 20.0, 30.0, 40.0], &[4]))?;
    a.mul(&b)?.sum(&[], false)?.backward()?;
    assert_eq!(vals(&a.grad().unwrap()), vec![100.0; 3]);
    assert_eq!(a.grad().unwrap().dims(), &[3, 1]);
    assert_eq!(vals(&b.grad().unwrap()), vec![6.0; 4]);
    Ok(())
}

#[test]
fn a_leaf_used_twice_gets_the_sum_and_owns_its_grad() -> Result<()> {
    let x = Var::param(t(&[1.0, 2.0], &[2]))?;
    let y = Var::param(t(&[5.0, 7.0], &[2]))?;
    // add passes one gradient tensor to both inputs: the stored grads must not alias.
    x.add(&y)?.sum(&[], false)?.backward()?;
    let gx = x.grad().unwrap();
    let gy = y.grad().unwrap();
    assert!(!gx.same_storage(&gy));
    gx.mul_scalar_(3.0)?;
    assert_eq!(vals(&y.grad().unwrap()), vec![1.0, 1.0]);
    Ok(())
}

#[test]
fn accumulation_reuses_the_grad_buffer_but_never_changes_a_kept_gradient() -> Result<()> {
    let x = Var::param(t(&[1.0, 2.0, 3.0], &[3]))?;
    let step = || x.mul(&x)?.sum(&[], false)?.backward(); // adds 2x to .grad
    step()?;
    let first = Arc::as_ptr(x.grad().unwrap().storage());
    step()?;
    // Nothing else held `.grad`: the second gradient went into the same buffer.
    assert_eq!(Arc::as_ptr(x.grad().unwrap().storage()), first);
    assert_eq!(vals(&x.grad().unwrap()), vec![4.0, 8.0, 12.0]);
    // A gradient the user keeps is a value: later backwards leave it alone.
    let kept = x.grad().unwrap();
    step()?;
    assert_eq!(vals(&kept), vec![4.0, 8.0, 12.0]);
    assert_eq!(vals(&x.grad().unwrap()), vec![6.0, 12.0, 18.0]);
    // So is a view of it.
    let view = x.grad().unwrap().reshape(&[3, 1])?;
    drop(kept);
    step()?;
    assert_eq!(vals(&view), vec![6.0, 12.0, 18.0]);
    assert_eq!(vals(&x.grad().unwrap()), vec![8.0, 16.0, 24.0]);
    // And a gradient kept as a `Var`, as a graph built from it would.
    let as_var = x.grad_var().unwrap();
    step()?;
    assert_eq!(vals(as_var.tensor()), vec![8.0, 16.0, 24.0]);
    assert_eq!(vals(&x.grad().unwrap()), vec![10.0, 20.0, 30.0]);
    Ok(())
}

#[test]
fn modified_in_place_names_the_op() -> Result<()> {
    let x = Var::param(t(&[1.0, 2.0], &[2]))?;
    let y = x.mul_scalar(1.0)?; // a non-leaf whose values we will clobber
    let z = y.sin()?.sum(&[], false)?; // sin saves its input y
    y.tensor().add_scalar_(1.0)?;
    match z.backward() {
        Err(Error::ModifiedInPlace { op, saved, now }) => {
            assert_eq!(op, "sin");
            assert!(now > saved);
        }
        other => panic!("expected ModifiedInPlace, got {other:?}"),
    }
    Ok(())
}

/// An op's name, the op, and the profiler names of what its forward runs.
type OpWithPrims = (&'static str, fn(&Var) -> Result<Var>, &'static [&'static str]);

/// Ops whose derivative is a function of their output, each with the primitives its
/// forward runs: their backward must not run them again.
fn output_saving_ops() -> Vec<OpWithPrims> {
    vec![
        ("exp", |x| x.exp(), &["unary.exp"]),
        ("sigmoid", |x| x.sigmoid(), &["unary.sigmoid"]),
        ("tanh", |x| x.tanh(), &["unary.tanh"]),
        ("softmax", |x| x.softmax(-1), &["softmax", "fused.softmax"]),
        ("log_softmax", |x| x.log_softmax(0), &["log_softmax", "fused.log_softmax"]),
        ("sqrt", |x| x.sqrt(), &["unary.sqrt"]),
    ]
}

/// Ops whose backward needs their input too, but reuses their saved output.
fn input_and_output_saving_ops() -> Vec<OpWithPrims> {
    vec![("norm", |x| x.norm(2.0, &[-1], false), &["unary.sqrt"])]
}

#[test]
fn backward_reuses_the_saved_output_instead_of_running_the_forward_again() -> Result<()> {
    use tensor_core::profiler::profile;
    for (name, f, forward_prims) in output_saving_ops().into_iter().chain(input_and_output_saving_ops()) {
        let x = Var::param(Tensor::rand([3, 4], DType::F32, &Device::cpu())?)?;
        let (y, fwd) = profile(|| f(&x));
        let y = y?;
        assert_eq!(y.grad_fn_name(), Some(name));
        // The forward does run these (so their absence below means something).
        for p in forward_prims {
            assert!(fwd.events().iter().any(|e| e.name == *p), "{name}: forward ran no {p}");
        }
        let loss = y.mul(&Var::from(Tensor::rand(y.shape().clone(), DType::F32, &Device::cpu())?))?.sum(&[], false)?;
        let (r, bwd) = profile(|| loss.backward());
        r?;
        assert!(bwd.events().iter().any(|e| e.name == format!("{name}.backward")), "{name}: backward not profiled");
        for p in forward_prims {
            assert!(!bwd.events().iter().any(|e| e.name == *p), "{name}: backward ran the forward's {p} again");
        }
        assert!(x.grad().is_some());
    }
    Ok(())
}

#[test]
fn an_op_saving_its_output_does_not_keep_its_input_alive() -> Result<()> {
    for (name, f, _) in output_saving_ops() {
        let x = Var::param(Tensor::rand([2, 3], DType::F64, &Device::cpu())?)?;
        let h = x.mul_scalar(2.0)?;
        let weak_h = Arc::downgrade(h.tensor().storage());
        let y = f(&h)?;
        drop(h);
        assert!(weak_h.upgrade().is_none(), "{name} kept its input alive");
        y.sum(&[], false)?.backward()?;
        assert!(x.grad().is_some());
    }
    Ok(())
}

#[test]
fn modifying_a_saved_output_in_place_fails_the_backward_naming_the_op() -> Result<()> {
    for (name, f, _) in output_saving_ops().into_iter().chain(input_and_output_saving_ops()) {
        let x = Var::param(t(&[0.5, 1.0, 2.0, 3.0], &[2, 2]))?;
        let y = f(&x)?;
        let z = y.sum(&[], false)?; // sum saves nothing: only the op saved y
        y.tensor().mul_scalar_(2.0)?;
        match z.backward() {
            Err(Error::ModifiedInPlace { op, saved, now }) => {
                assert_eq!(op, name);
                assert!(now > saved);
            }
            other => panic!("{name}: expected ModifiedInPlace, got {other:?}"),
        }
    }
    Ok(())
}

#[test]
fn a_saved_output_is_no_reference_cycle() -> Result<()> {
    for (name, f, _) in output_saving_ops().into_iter().chain(input_and_output_saving_ops()) {
        // The graph (and the output it saved) lives as long as something refers to it.
        let x = Var::param(Tensor::rand([2, 3], DType::F64, &Device::cpu())?)?;
        let y = f(&x)?;
        let weak_y = Arc::downgrade(y.tensor().storage());
        let loss = y.sum(&[], false)?;
        drop(y);
        assert!(weak_y.upgrade().is_some(), "{name}: the node saved its output");
        drop(loss);
        assert!(weak_y.upgrade().is_none(), "{name}: the output and its node keep each other alive");
        // A create_graph gradient refers to the node through the saved output (for
        // second derivatives); dropping the leaf that holds it frees everything.
        let x = Var::param(Tensor::rand([2, 3], DType::F64, &Device::cpu())?)?;
        let weak_x = Arc::downgrade(x.tensor().storage());
        let y = f(&x)?;
        let weak_y = Arc::downgrade(y.tensor().storage());
        y.sum(&[], false)?.backward_opts(true, true)?;
        assert!(x.grad_var().is_some_and(|g| g.requires_grad()), "{name}: create_graph gave a constant gradient");
        drop(y);
        drop(x);
        assert!(weak_x.upgrade().is_none() && weak_y.upgrade().is_none(), "{name}: create_graph made a cycle");
    }
    Ok(())
}

#[test]
fn second_derivatives_go_through_the_saved_output() -> Result<()> {
    let xs = [-1.5, 0.25, 2.0];
    let x = Var::param(t(&xs, &[3]))?;
    // d/dx exp = exp, d2/dx2 exp = exp; d2/dx2 tanh = -2 tanh (1 - tanh^2).
    let dy = grad(&[x.exp()?.sum(&[], false)?], &[x.clone()], None, true)?[0].clone().unwrap();
    let d2 = grad(&[dy.sum(&[], false)?], &[x.clone()], None, false)?[0].clone().unwrap();
    for (a, v) in vals(d2.tensor()).iter().zip(xs) {
        assert!((a - v.exp()).abs() < 1e-12, "{a} vs {}", v.exp());
    }
    let dy = grad(&[x.tanh()?.sum(&[], false)?], &[x.clone()], None, true)?[0].clone().unwrap();
    let d2 = grad(&[dy.sum(&[], false)?], &[x.clone()], None, false)?[0].clone().unwrap();
    for (a, v) in vals(d2.tensor()).iter().zip(xs) {
        let want = -2.0 * v.tanh() * (1.0 - v.tanh() * v.tanh());
        assert!((a - want).abs() < 1e-12, "{a} vs {want}");
    }
    // Like PyTorch, a gradient built without retain_graph cannot be differentiated
    // through an op that saved its output: that op's backward is gone.
    let x = Var::param(t(&xs, &[3]))?;
    x.exp()?.sum(&[], false)?.backward_opts(false, true)?;
    match x.grad_var().unwrap().sum(&[], false)?.backward() {
        Err(Error::GraphFreed { op }) => assert_eq!(op, "exp"),
        other => panic!("expected GraphFreed, got {other:?}"),
    }
    Ok(())
}

#[test]
fn second_backward_without_retain_graph_is_graph_freed() -> Result<()> {
    let x = Var::param(t(&[1.0, 2.0], &[2]))?;
    let y = x.sin()?.sum(&[], false)?;
    y.backward()?;
    match y.backward() {
        Err(Error::GraphFreed { op }) => assert_eq!(op, "sum"),
        other => panic!("expected GraphFreed, got {other:?}"),
    }
    // With retain_graph both calls work and accumulate.
    let x = Var::param(t(&[0.0], &[1]))?;
    let y = x.sin()?.sum(&[], false)?;
    y.backward_opts(true, false)?;
    y.backward()?;
    assert_eq!(vals(&x.grad().unwrap()), vec![2.0]);
    Ok(())
}

#[test]
fn anomaly_mode_names_the_op_that_produced_nan() -> Result<()> {
    let x = Var::param(t(&[0.0, 1.0], &[2]))?;
    let y = x.sqrt()?.sum(&[], false)?; // d sqrt / dx at 0 is inf
    let r = detect_anomaly(|| y.backward());
    match r {
        Err(Error::Autograd(m)) => assert!(m.contains("'sqrt'"), "{m}"),
        other => panic!("expected anomaly error, got {other:?}"),
    }
    // Without anomaly mode the same backward succeeds with an inf gradient.
    let x = Var::param(t(&[0.0, 1.0], &[2]))?;
    x.sqrt()?.sum(&[], false)?.backward()?;
    assert!(vals(&x.grad().unwrap())[0].is_infinite());
    Ok(())
}

#[test]
fn backward_on_a_non_scalar_is_an_error_and_backward_with_works() -> Result<()> {
    let x = Var::param(t(&[1.0, 2.0], &[2]))?;
    let y = x.mul_scalar(3.0)?;
    assert!(matches!(y.backward(), Err(Error::Autograd(_))));
    y.backward_with(&t(&[1.0, 10.0], &[2]))?;
    assert_eq!(vals(&x.grad().unwrap()), vec![3.0, 30.0]);
    let bad = y.backward_with(&t(&[1.0, 1.0, 1.0], &[3]));
    assert!(matches!(bad, Err(Error::ShapeMismatch { .. }) | Err(Error::GraphFreed { .. })));
    Ok(())
}

#[test]
fn integer_tensors_cannot_require_or_get_gradients() -> Result<()> {
    let i = Tensor::from_vec(vec![1i64, 2], [2])?;
    assert!(matches!(Var::param(i.clone()), Err(Error::Autograd(_))));
    let v = Var::from(i);
    assert!(matches!(v.set_requires_grad(true), Err(Error::Autograd(_))));
    assert!(matches!(grad(&[v.sum(&[], false)?], &[v.clone()], None, false), Err(Error::Autograd(_))));
    Ok(())
}

#[test]
fn no_grad_records_nothing_and_guards_restore() -> Result<()> {
    let x = Var::param(t(&[1.0], &[1]))?;
    let y = no_grad(|| x.exp())?;
    assert!(!y.requires_grad() && y.is_leaf());
    {
        let _g = NoGradGuard::new();
        assert!(!x.mul(&x)?.requires_grad());
        assert!(autograd::enable_grad(|| x.mul(&x))?.requires_grad());
    }
    assert!(x.mul(&x)?.requires_grad());
    Ok(())
}

#[test]
fn retain_grad_and_hooks() -> Result<()> {
    let x = Var::param(t(&[1.0, 2.0], &[2]))?;
    let h = x.mul_scalar(2.0)?;
    h.retain_grad()?;
    let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let s2 = seen.clone();
    h.register_hook(move |g| {
        s2.lock().push(g.tensor().to_vec_f64()?);
        Ok(None)
    })?;
    // A leaf hook that doubles the gradient before it is accumulated.
    let id = x.register_hook(|g| Ok(Some(g.mul_scalar(2.0)?)))?;
    h.mul(&h)?.sum(&[], false)?.backward()?;
    assert_eq!(vals(&h.grad().unwrap()), vec![4.0, 8.0]);
    assert_eq!(seen.lock().clone(), vec![vec![4.0, 8.0]]);
    assert_eq!(vals(&x.grad().unwrap()), vec![16.0, 32.0]);
    assert!(x.remove_hook(id));
    x.zero_grad();
    x.mul_scalar(2.0)?.sum(&[], false)?.backward()?;
    assert_eq!(vals(&x.grad().unwrap()), vec![2.0, 2.0]);
    Ok(())
}

#[test]
fn grad_leaves_dot_grad_untouched_and_gives_higher_orders() -> Result<()> {
    let x = Var::param(t(&[2.0], &[1]))?;
    let y = x.pow_scalar(4.0)?.sum(&[], false)?;
    let g1 = grad(&[y], &[x.clone()], None, true)?[0].clone().unwrap(); // 4x^3 = 32
    assert_eq!(vals(g1.tensor()), vec![32.0]);
    let g2 = grad(&[g1.sum(&[], false)?], &[x.clone()], None, true)?[0].clone().unwrap(); // 12x^2 = 48
    assert_eq!(vals(g2.tensor()), vec![48.0]);
    let g3 = grad(&[g2.sum(&[], false)?], &[x.clone()], None, false)?[0].clone().unwrap(); // 24x = 48
    assert_eq!(vals(g3.tensor()), vec![48.0]);
    assert!(x.grad().is_none());
    // Gradient with respect to a non-leaf, and an unused input.
    let a = Var::param(t(&[3.0], &[1]))?;
    let unused = Var::param(t(&[3.0], &[1]))?;
    let h = a.mul_scalar(2.0)?;
    let out = h.square()?.sum(&[], false)?;
    let gs = grad(&[out], &[h.clone(), unused], None, false)?;
    assert_eq!(vals(gs[0].as_ref().unwrap().tensor()), vec![12.0]);
    assert!(gs[1].is_none());
    Ok(())
}

#[test]
fn create_graph_backward_gives_a_differentiable_grad() -> Result<()> {
    let x = Var::param(t(&[3.0], &[1]))?;
    x.pow_scalar(3.0)?.sum(&[], false)?.backward_opts(false, true)?;
    let g = x.grad_var().unwrap(); // 3x^2 = 27
    assert!(g.requires_grad());
    x.zero_grad();
    g.sum(&[], false)?.backward()?; // 6x = 18
    assert_eq!(vals(&x.grad().unwrap()), vec![18.0]);
    Ok(())
}

/// `y = x * k` with `k` a constant held by the function, and a deliberately wrong
/// gradient scale to show that the hand-written backward is what runs.
struct Scale(f64);
impl Function for Scale {
    fn forward(&self, ctx: &mut Context, inputs: &[&Tensor]) -> Result<Tensor> {
        ctx.save_for_backward(&[inputs[0]]);
        inputs[0].mul_scalar(self.0)
    }
    fn backward(&self, ctx: &Context, grad: &Var) -> Result<Vec<Option<Var>>> {
        assert!(ctx.needs_input_grad(0));
        let _ = ctx.saved_tensors()?;
        Ok(vec![Some(grad.mul_scalar(self.0 * 10.0)?)])
    }
}

#[test]
fn custom_functions_use_their_backward_and_check_saved_versions() -> Result<()> {
    let x = Var::param(t(&[1.0, 2.0], &[2]))?;
    let y = apply(Scale(2.0), &[&x])?;
    assert_eq!(vals(y.tensor()), vec![2.0, 4.0]);
    assert_eq!(y.grad_fn_name(), Some("Scale"));
    y.sum(&[], false)?.backward()?;
    assert_eq!(vals(&x.grad().unwrap()), vec![20.0, 20.0]);
    // The input it saved is a leaf: modifying it in place is caught.
    let x = Var::param(t(&[1.0], &[1]))?;
    let y = apply(Scale(2.0), &[&x])?.sum(&[], false)?;
    no_grad(|| x.tensor().add_scalar_(1.0))?;
    assert!(matches!(y.backward(), Err(Error::ModifiedInPlace { op, .. }) if op == "Scale"));
    Ok(())
}

#[test]
fn dot_export_shows_ops_shapes_and_leaves() -> Result<()> {
    let w = Var::param(t(&[1.0; 6], &[2, 3]))?;
    let x = Var::from(t(&[1.0; 3], &[3]));
    let y = w.matmul(&x)?.relu()?.sum(&[], false)?;
    let dot = y.to_dot();
    assert!(dot.starts_with("digraph"));
    for needle in ["matmul", "relu", "sum", "(2, 3)", "requires_grad", "(2)"] {
        assert!(dot.contains(needle), "{needle} missing from\n{dot}");
    }
    // The constant input is not drawn as a leaf: exactly one leaf node.
    assert_eq!(dot.matches("fillcolor=lightblue").count(), 1);
    Ok(())
}

#[test]
fn vars_on_different_devices_return_the_tensor_error() -> Result<()> {
    // Only one device exists on a CPU-only machine; a dtype error shows the
    // tensor-core error comes through unchanged.
    let a = Var::param(t(&[1.0, 2.0], &[2]))?;
    let b = Var::param(t(&[1.0, 2.0, 3.0], &[3]))?;
    assert!(matches!(a.add(&b), Err(Error::ShapeMismatch { op: "add", .. })));
    Ok(())
}

#[test]
fn dropping_a_chain_of_100k_ops_does_not_overflow_the_stack() -> Result<()> {
    // A small thread stack makes a recursive drop fail loudly.
    let h = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(|| -> Result<()> {
            let x = Var::param(Tensor::ones([1], DType::F32, &Device::cpu())?)?;
            let mut y = x.clone();
            for _ in 0..100_000 {
                y = y.mul_scalar(1.0)?;
            }
            drop(y);
            // A long chain also backpropagates without recursion.
            let mut y = x.clone();
            for _ in 0..20_000 {
                y = y.add_scalar(0.0)?;
            }
            y.sum(&[], false)?.backward()?;
            assert_eq!(x.grad().unwrap().to_vec::<f32>()?, vec![1.0]);
            Ok(())
        })
        .unwrap();
    h.join().unwrap()
}

#[test]
fn memory_returns_to_baseline_after_training_like_iterations() -> Result<()> {
    let dev = Device::cpu();
    let w = Var::param(Tensor::randn([8, 4], DType::F32, &dev)?)?;
    let b = Var::param(Tensor::zeros([4], DType::F32, &dev)?)?;
    let mut watched = Vec::new();
    for _ in 0..200 {
        let x = Var::from(Tensor::randn([16, 8], DType::F32, &dev)?);
        let h = x.matmul(&w)?.add(&b)?;
        let a = h.tanh()?;
        let loss = a.mul(&a)?.mean(&[], false)?;
        watched.push(Arc::downgrade(h.tensor().storage()));
        watched.push(Arc::downgrade(a.tensor().storage()));
        watched.push(Arc::downgrade(x.tensor().storage()));
        loss.backward()?;
        no_grad(|| -> Result<()> {
            w.tensor().sub_(&w.grad().unwrap().mul_scalar(0.1)?)?;
            b.tensor().sub_(&b.grad().unwrap().mul_scalar(0.1)?)?;
            Ok(())
        })?;
        w.zero_grad();
        b.zero_grad();
    }
    let live = watched.iter().filter(|w| w.upgrade().is_some()).count();
    assert_eq!(live, 0, "{live} intermediate storages are still alive");
    // A graph kept for a second backward is released when its output is dropped.
    let x = Var::param(Tensor::randn([4], DType::F32, &dev)?)?;
    let h = x.exp()?;
    let weak_h = Arc::downgrade(h.tensor().storage());
    let y = h.sin()?.sum(&[], false)?;
    y.backward_opts(true, false)?;
    drop(h);
    assert!(weak_h.upgrade().is_some(), "sin saved its input");
    drop(y);
    assert!(weak_h.upgrade().is_none(), "the retained graph leaked");
    // create_graph stores a grad whose graph refers back to the leaf: no cycle.
    let x = Var::param(Tensor::randn([4], DType::F32, &dev)?)?;
    let weak_x = Arc::downgrade(x.tensor().storage());
    x.pow_scalar(3.0)?.sum(&[], false)?.backward_opts(false, true)?;
    drop(x);
    assert!(weak_x.upgrade().is_none(), "create_graph made a reference cycle");
    Ok(())
}

#[test]
fn display_shows_values_and_grad_fn() -> Result<()> {
    let x = Var::param(t(&[1.0], &[1]))?;
    assert!(format!("{x}").contains("requires_grad=true"));
    let y = x.exp()?;
    assert!(format!("{y}").contains("grad_fn=<exp>"));
    Ok(())
}

#[test]
fn a_weight_used_transposed_gets_a_contiguous_gradient() -> Result<()> {
    // y = x @ w^T as in a linear layer, loss = sum(c * y): dL/dw = c^T x, dL/dx = c w.
    let (b, i, o) = (3, 4, 5);
    let xv: Vec<f64> = (0..b * i).map(|k| (k as f64 * 0.37).sin()).collect();
    let wv: Vec<f64> = (0..o * i).map(|k| (k as f64 * 0.53).cos()).collect();
    let cv: Vec<f64> = (0..b * o).map(|k| 1.0 + k as f64 * 0.1).collect();
    let x = Var::param(t(&xv, &[b, i]))?;
    let w = Var::param(t(&wv, &[o, i]))?;
    let c = Var::from(t(&cv, &[b, o]));
    x.matmul(&w.t()?)?.mul(&c)?.sum(&[], false)?.backward()?;
    let gw = w.grad().unwrap();
    assert!(gw.is_contiguous());
    let mut want_w = vec![0.0; o * i];
    let mut want_x = vec![0.0; b * i];
    for r in 0..b {
        for q in 0..o {
            for k in 0..i {
                want_w[q * i + k] += cv[r * o + q] * xv[r * i + k];
                want_x[r * i + k] += cv[r * o + q] * wv[q * i + k];
            }
        }
    }
    for (got, want) in vals(&gw).iter().zip(&want_w).chain(vals(&x.grad().unwrap()).iter().zip(&want_x)) {
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    }
    // The same with the transposed operand on the left: y = x^T @ v.
    let v = Var::param(t(&cv, &[b, o]))?;
    let xt = Var::param(t(&xv, &[b, i]))?;
    xt.t()?.matmul(&v)?.sum(&[], false)?.backward()?;
    let gx = xt.grad().unwrap();
    assert!(gx.is_contiguous());
    // d/dx[r][k] of sum_{k,q} sum_r x[r][k] v[r][q] = sum_q v[r][q]
    for r in 0..b {
        let want: f64 = cv[r * o..(r + 1) * o].iter().sum();
        for k in 0..i {
            assert!((vals(&gx)[r * i + k] - want).abs() < 1e-12);
        }
    }
    Ok(())
}
