//! User-defined differentiable functions (PyTorch's `torch.autograd.Function`).

use tensor_core::{Result, Tensor};

use crate::graph::{record, should_record, SavedVar};
use crate::var::Var;

/// What a [`Function`]'s forward hands to its backward: saved tensors (checked for
/// in-place changes) and anything else the function stores in itself.
#[derive(Default)]
pub struct Context {
    saved: Vec<SavedVar>,
    /// Which inputs need a gradient (filled in for `backward`).
    needs_input_grad: Vec<bool>,
}

impl Context {
    /// Saves tensors for the backward (PyTorch's `ctx.save_for_backward`).
    pub fn save_for_backward(&mut self, tensors: &[&Tensor]) {
        self.saved.extend(tensors.iter().map(|t| SavedVar::tensor(t)));
    }

    /// The saved tensors; `Error::ModifiedInPlace` if one was changed in place since.
    pub fn saved_tensors(&self) -> Result<Vec<Tensor>> {
        self.saved.iter().map(|s| s.tensor_checked()).collect()
    }

    /// Whether input `i` needs a gradient.
    pub fn needs_input_grad(&self, i: usize) -> bool {
        self.needs_input_grad.get(i).copied().unwrap_or(false)
    }
}

/// An op with a hand-written gradient.
///
/// ```
/// use autograd::{Context, Function, Var};
/// use tensor_core::{Result, Tensor};
///
/// /// `x^3` with its derivative written by hand.
/// struct Cube;
/// impl Function for Cube {
///     fn forward(&self, ctx: &mut Context, inputs: &[&Tensor]) -> Result<Tensor> {
///         ctx.save_for_backward(&[inputs[0]]);
///         inputs[0].pow_scalar(3.0)
///     }
///     fn backward(&self, ctx: &Context, grad: &Var) -> Result<Vec<Option<Var>>> {
///         let x = Var::from(ctx.saved_tensors()?[0].clone());
///         Ok(vec![Some(grad.mul(&x.square()?.mul_scalar(3.0)?)?)])
///     }
/// }
///
/// let x = Var::param(Tensor::new(&[2.0f64]))?;
/// let y = autograd::apply(Cube, &[&x])?;
/// y.sum(&[], false)?.backward()?;
/// assert_eq!(x.grad().unwrap().to_vec::<f64>()?, vec![12.0]);
/// # Ok::<(), tensor_core::Error>(())
/// ```
pub trait Function: Send + Sync + 'static {
    /// Computes the output from the input tensors; may save tensors in `ctx`.
    fn forward(&self, ctx: &mut Context, inputs: &[&Tensor]) -> Result<Tensor>;

    /// Given the output's gradient, returns one gradient (or `None`) per input.
    /// Written with `Var` ops it can itself be differentiated (`create_graph`).
    fn backward(&self, ctx: &Context, grad: &Var) -> Result<Vec<Option<Var>>>;

    /// The name shown in errors and graph dumps.
    fn name(&self) -> &'static str {
        let n = std::any::type_name::<Self>();
        n.rsplit("::").next().unwrap_or(n)
    }
}

/// Runs a [`Function`] on `inputs` and records its backward.
pub fn apply<F: Function>(f: F, inputs: &[&Var]) -> Result<Var> {
    let mut ctx = Context::default();
    let ts: Vec<&Tensor> = inputs.iter().map(|v| v.tensor()).collect();
    let out = crate::mode::no_grad(|| f.forward(&mut ctx, &ts))?;
    if !should_record(inputs) || !out.dtype().is_float() {
        return Ok(Var::from(out));
    }
    let name = f.name();
    let n = inputs.len();
    let ctx = parking_lot::Mutex::new(ctx);
    Ok(record(name, out, inputs, move |g, needs| {
        let mut c = ctx.lock();
        c.needs_input_grad = needs.to_vec();
        let grads = f.backward(&c, g)?;
        if grads.len() != n {
            return Err(tensor_core::Error::Autograd(format!(
                "function {name} returned {} gradients for {n} inputs",
                grads.len()
            )));
        }
        Ok(grads.into())
    }))
}
