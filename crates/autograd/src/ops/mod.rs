//! Differentiable ops on [`Var`], one file per family. Each op computes its forward
//! with tensor-core and records its backward next to it, written with `Var` ops so
//! that gradients can be differentiated again.

pub mod conv;
pub mod elementwise;
pub mod index;
pub mod linalg;
pub mod nn;
pub mod reduce;
pub mod views;

use smallvec::smallvec;
use tensor_core::{Result, Tensor};

use crate::graph::{record, record_with_output, should_record, SavedVar};
use crate::var::Var;

impl Var {
    /// Records a one-input op whose backward needs the input: `f(x, grad)`. The input
    /// is saved with its version, so changing it in place fails the backward.
    pub(crate) fn record_unary(
        &self,
        name: &'static str,
        out: Tensor,
        f: impl Fn(&Var, &Var) -> Result<Var> + Send + 'static,
    ) -> Var {
        if !should_record(&[self]) || !out.dtype().is_float() {
            return Var::from(out);
        }
        let x = SavedVar::new(self);
        record(name, out, &[self], move |g, _| Ok(smallvec![Some(f(&x.get()?, g)?)]))
    }

    /// Records a one-input op whose backward is a function of its output:
    /// `f(out, grad)` (exp, sigmoid, tanh, softmax, ...). The output is saved instead
    /// of the input, so the backward neither keeps the input alive nor computes the op
    /// again; changing the output in place fails the backward. Under `create_graph`
    /// `out` is linked to this op's node, so the gradient differentiates through the
    /// op again (the node must then still hold its backward: `retain_graph`).
    pub(crate) fn record_unary_saving_output(
        &self,
        name: &'static str,
        out: Tensor,
        f: impl Fn(&Var, &Var) -> Result<Var> + Send + 'static,
    ) -> Var {
        if !out.dtype().is_float() {
            return Var::from(out);
        }
        record_with_output(name, out, &[self], move |y| move |g, _| Ok(smallvec![Some(f(&y.get()?, g)?)]))
    }

    /// Records a one-input op whose backward needs both its input and its output:
    /// `f(x, out, grad)` (a norm). Both are saved as in [`Var::record_unary`] and
    /// [`Var::record_unary_saving_output`]; the output is not computed again.
    pub(crate) fn record_unary_saving_input_and_output(
        &self,
        name: &'static str,
        out: Tensor,
        f: impl Fn(&Var, &Var, &Var) -> Result<Var> + Send + 'static,
    ) -> Var {
        if !should_record(&[self]) || !out.dtype().is_float() {
            return Var::from(out);
        }
        let x = SavedVar::new(self);
        record_with_output(name, out, &[self], move |y| move |g, _| Ok(smallvec![Some(f(&x.get()?, &y.get()?, g)?)]))
    }

    /// Records a one-input op whose backward needs only the gradient: `f(grad)`.
    pub(crate) fn record_unary_grad_only(
        &self,
        name: &'static str,
        out: Tensor,
        f: impl Fn(&Var) -> Result<Var> + Send + 'static,
    ) -> Var {
        if !should_record(&[self]) || !out.dtype().is_float() {
            return Var::from(out);
        }
        record(name, out, &[self], move |g, _| Ok(smallvec![Some(f(g)?)]))
    }

    /// Records a two-input op whose backward needs both inputs:
    /// `f(a, b, grad, needs) -> (grad_a, grad_b)`; gradients may come back broadcast
    /// (the engine sums them to each input's shape).
    pub(crate) fn record_binary(
        &self,
        other: &Var,
        name: &'static str,
        out: Tensor,
        f: impl Fn(&Var, &Var, &Var, &[bool]) -> Result<(Option<Var>, Option<Var>)> + Send + 'static,
    ) -> Var {
        if !should_record(&[self, other]) || !out.dtype().is_float() {
            return Var::from(out);
        }
        let a = SavedVar::new(self);
        let b = SavedVar::new(other);
        record(name, out, &[self, other], move |g, needs| {
            let (ga, gb) = f(&a.get()?, &b.get()?, g, needs)?;
            Ok(smallvec![ga, gb])
        })
    }

    /// Records a two-input op whose backward needs only the gradient:
    /// `f(grad, needs) -> (grad_a, grad_b)`.
    pub(crate) fn record_binary_grad_only(
        &self,
        other: &Var,
        name: &'static str,
        out: Tensor,
        f: impl Fn(&Var, &[bool]) -> Result<(Option<Var>, Option<Var>)> + Send + 'static,
    ) -> Var {
        if !should_record(&[self, other]) || !out.dtype().is_float() {
            return Var::from(out);
        }
        record(name, out, &[self, other], move |g, needs| {
            let (ga, gb) = f(g, needs)?;
            Ok(smallvec![ga, gb])
        })
    }
}
