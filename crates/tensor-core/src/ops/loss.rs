//! Fused losses: the cross-entropy of rows of logits with class targets, in one pass
//! over each row forward and one backward (log-softmax, the weighted pick of the
//! target, label smoothing and the gradient never materialised apart).

use crate::backend::{ClassTargets, FusedOp};
use crate::ops::nn::{compute_dtype, require_float};
use crate::{DType, Error, Result, Tensor};

/// How class targets weigh in [`Tensor::cross_entropy_rows`] (PyTorch's
/// `F.cross_entropy` options; the defaults are PyTorch's).
#[derive(Clone, Debug)]
pub struct ClassLossOptions {
    /// A weight per class, `[C]` (`None`: all 1).
    pub weight: Option<Tensor>,
    /// Rows with this target add nothing and get no gradient (-100).
    pub ignore_index: i64,
    /// The share of each target spread evenly over all classes, in `[0, 1]` (0).
    pub label_smoothing: f64,
}

impl Default for ClassLossOptions {
    fn default() -> Self {
        ClassLossOptions { weight: None, ignore_index: -100, label_smoothing: 0.0 }
    }
}

/// The checked operands: `(rows, classes, I64 targets, weight in the logits' dtype)`,
/// the last two contiguous.
fn check(
    op: &'static str,
    x: &Tensor,
    target: &Tensor,
    o: &ClassLossOptions,
) -> Result<(usize, usize, Tensor, Option<Tensor>)> {
    require_float(op, x)?;
    if x.rank() != 2 {
        return Err(Error::invalid_shape(op, x.dims(), "expected logits of shape [N, C]"));
    }
    let (n, c) = (x.dims()[0], x.dims()[1]);
    let t = check_target(op, target, n)?;
    x.same_device(op, target)?;
    if !(0.0..=1.0).contains(&o.label_smoothing) {
        return Err(Error::arg(op, format!("label_smoothing must be between 0.0 and 1.0, got {}", o.label_smoothing)));
    }
    let w = match &o.weight {
        None => None,
        Some(w) => {
            x.same_device(op, w)?;
            if !w.dtype().is_float() {
                return Err(Error::DTypeMismatch { op, expected: x.dtype(), got: w.dtype() });
            }
            if w.dims() != [c] {
                return Err(Error::shape(op, x.dims(), w.dims(), "weight must have one entry per class"));
            }
            Some(w.to_dtype(x.dtype())?.contiguous()?)
        }
    };
    Ok((n, c, t, w))
}

/// Integer `[n]` targets, as contiguous I64.
fn check_target(op: &'static str, target: &Tensor, n: usize) -> Result<Tensor> {
    if target.dtype().is_float() || target.dtype() == DType::Bool {
        return Err(Error::DTypeMismatch { op, expected: DType::I64, got: target.dtype() });
    }
    if target.dims() != [n] {
        return Err(Error::shape(op, &[n], target.dims(), "expected one class target per row"));
    }
    target.to_dtype(DType::I64)?.contiguous()
}

/// Checks a `[rows]` operand of the backward (`lse`, `grad`) against the logits: one
/// `dtype` value per row.
fn check_rows(op: &'static str, x: &Tensor, t: &Tensor, what: &str, dtype: DType) -> Result<Tensor> {
    x.same_device(op, t)?;
    if t.dims() != [x.dims()[0]] || t.dtype() != dtype {
        return Err(Error::shape(
            op,
            x.dims(),
            t.dims(),
            format!("{what} must be one {dtype} value per row of the logits (got {})", t.dtype()),
        ));
    }
    t.contiguous()
}

impl Tensor {
    /// The cross-entropy of each row of logits `self [N, C]` with the class index
    /// `target [N]` (an integer tensor): `-sum_c K[n, c] log_softmax(self)[n, c]`,
    /// where `K[n, c] = (1 - ε) w[t_n] [c == t_n] + ε w[c] / C` (`ε` the label
    /// smoothing, `w` the class weights), and 0 for rows whose target is
    /// `ignore_index`. Returns the loss of each row `[N]` in `self`'s dtype and each
    /// row's log-sum-exp `[N]` (for [`Tensor::cross_entropy_rows_backward`]) in the
    /// compute dtype (f32 for the half types, else `self`'s).
    /// A target outside `0..C` other than `ignore_index` is an error. The reductions
    /// of PyTorch's `F.cross_entropy` are then a sum of the rows, divided (for the
    /// mean) by the summed weights of the counted targets.
    ///
    /// One pass over each row where the backend has [`FusedOp::CrossEntropy`];
    /// log-softmax and [`Tensor::cross_entropy_targets`] otherwise.
    ///
    /// ```
    /// use tensor_core::{ClassLossOptions, Tensor};
    /// let x = Tensor::from_vec(vec![0.0f64, 0.0, 5.0, 5.0], [2, 2])?;
    /// let t = Tensor::from_vec(vec![1i64, -100], [2])?;
    /// let (loss, lse) = x.cross_entropy_rows(&t, &ClassLossOptions::default())?;
    /// let l = loss.to_vec::<f64>()?;
    /// assert!((l[0] - 2f64.ln()).abs() < 1e-12 && l[1] == 0.0);
    /// assert!((lse.to_vec::<f64>()?[1] - (5.0 + 2f64.ln())).abs() < 1e-12);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn cross_entropy_rows(&self, target: &Tensor, o: &ClassLossOptions) -> Result<(Tensor, Tensor)> {
        let op = "cross_entropy";
        let _prof = crate::profiler::scope(op, &[self, target]);
        let (n, c, t, w) = check(op, self, target, o)?;
        let x = self.contiguous()?;
        {
            let (xg, tg) = (x.storage().read(), t.storage().read());
            let wg = w.as_ref().map(|w| w.storage().read());
            let targets = ClassTargets {
                target: (&**tg, t.layout()),
                weight: wg.as_ref().zip(w.as_ref()).map(|(g, w)| (&***g, w.layout())),
                ignore_index: o.ignore_index,
                label_smoothing: o.label_smoothing,
            };
            let fused = FusedOp::CrossEntropy { x: &**xg, layout: x.layout(), targets };
            if let Some(out) = crate::fused::run(self.device(), fused, &[&[n], &[n]]) {
                let mut out = out?;
                let lse = out.pop();
                return match (out.pop(), lse) {
                    (Some(l), Some(s)) => Ok((l, s)),
                    _ => Err(Error::arg(op, "the fused kernel returned too few outputs")),
                };
            }
        }
        let cd = compute_dtype(self.dtype());
        let xc = x.to_dtype(cd)?;
        let k = t.cross_entropy_targets(c, o, cd)?;
        let lse = xc.logsumexp(&[1], true)?;
        // Only the terms with weight count: a -inf logit (a masked class) or a NaN in
        // an ignored row must not turn 0 * inf into NaN, as PyTorch picks the target.
        let per = lse.sub(&xc)?.mul(&k)?.masked_fill(&k.eq_scalar(0.0)?, 0.0)?.sum(&[1], false)?;
        Ok((per.to_dtype(self.dtype())?, lse.reshape(&[n as isize])?))
    }

    /// The gradient of [`Tensor::cross_entropy_rows`] with respect to the logits
    /// `self [N, C]`: `grad[n] (softmax(self)[n, c] sum_c' K[n, c'] - K[n, c])`,
    /// from the forward's log-sum-exp `lse [N]` (in the compute dtype, as the forward
    /// returns it) and the gradient of each row's loss `grad [N]` (in `self`'s dtype),
    /// with the forward's `target` and options.
    /// One pass over each row where the backend has [`FusedOp::CrossEntropyBackward`].
    ///
    /// ```
    /// use tensor_core::{ClassLossOptions, Tensor};
    /// let x = Tensor::from_vec(vec![0.0f64, 0.0], [1, 2])?;
    /// let t = Tensor::from_vec(vec![1i64], [1])?;
    /// let o = ClassLossOptions::default();
    /// let (_, lse) = x.cross_entropy_rows(&t, &o)?;
    /// let g = Tensor::from_vec(vec![1.0f64], [1])?;
    /// assert_eq!(x.cross_entropy_rows_backward(&lse, &t, &g, &o)?.to_vec::<f64>()?, vec![0.5, -0.5]);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn cross_entropy_rows_backward(
        &self,
        lse: &Tensor,
        target: &Tensor,
        grad: &Tensor,
        o: &ClassLossOptions,
    ) -> Result<Tensor> {
        let op = "cross_entropy_backward";
        let _prof = crate::profiler::scope(op, &[self, grad]);
        let (n, c, t, w) = check(op, self, target, o)?;
        let cd = compute_dtype(self.dtype());
        let (lse, grad) = (check_rows(op, self, lse, "lse", cd)?, check_rows(op, self, grad, "grad", self.dtype())?);
        let x = self.contiguous()?;
        {
            let (xg, tg, sg, gg) =
                (x.storage().read(), t.storage().read(), lse.storage().read(), grad.storage().read());
            let wg = w.as_ref().map(|w| w.storage().read());
            let targets = ClassTargets {
                target: (&**tg, t.layout()),
                weight: wg.as_ref().zip(w.as_ref()).map(|(g, w)| (&***g, w.layout())),
                ignore_index: o.ignore_index,
                label_smoothing: o.label_smoothing,
            };
            let fused = FusedOp::CrossEntropyBackward {
                x: &**xg,
                layout: x.layout(),
                lse: (&**sg, lse.layout()),
                grad: (&**gg, grad.layout()),
                targets,
            };
            if let Some(out) = crate::fused::run(self.device(), fused, &[&[n, c]]) {
                return out?.pop().ok_or_else(|| Error::arg(op, "the fused kernel returned no output"));
            }
        }
        let k = t.cross_entropy_targets(c, o, cd)?;
        let col = |v: &Tensor| v.to_dtype(cd)?.reshape(&[n as isize, 1]);
        let p = x.to_dtype(cd)?.sub(&col(&lse)?)?.exp()?;
        let ksum = k.sum(&[1], true)?;
        // Ignored rows get no gradient, whatever their logits hold.
        let dx = col(&grad)?.mul(&p.mul(&ksum)?.sub(&k)?)?;
        dx.masked_fill(&ksum.eq_scalar(0.0)?.broadcast_to([n, c])?, 0.0)?.to_dtype(self.dtype())
    }

    /// The weights `K [N, C]` of [`Tensor::cross_entropy_rows`] for the class targets
    /// `self [N]` (an integer tensor) over `classes` classes, in the float `dtype`:
    /// row `n` is `(1 - ε) w[t_n]` at class `t_n` plus `ε w / C`, all zero where the
    /// target is `ignore_index`; so that the loss of a row is `-sum_c K[n, c]
    /// log_softmax(x)[n, c]`. A target outside `0..classes` other than `ignore_index`
    /// is an error.
    ///
    /// ```
    /// use tensor_core::{ClassLossOptions, DType, Tensor};
    /// let t = Tensor::from_vec(vec![2i64, -100], [2])?;
    /// let o = ClassLossOptions { label_smoothing: 0.3, ..Default::default() };
    /// let k = t.cross_entropy_targets(3, &o, DType::F64)?.to_vec::<f64>()?;
    /// let want = [0.1, 0.1, 0.8, 0.0, 0.0, 0.0];
    /// assert!(k.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-12));
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn cross_entropy_targets(&self, classes: usize, o: &ClassLossOptions, dtype: DType) -> Result<Tensor> {
        let op = "cross_entropy_targets";
        if !dtype.is_float() {
            return Err(Error::DTypeMismatch { op, expected: DType::F32, got: dtype });
        }
        if self.rank() != 1 {
            return Err(Error::invalid_shape(op, self.dims(), "expected class targets of shape [N]"));
        }
        let n = self.dims()[0];
        let t = check_target(op, self, n)?;
        if !(0.0..=1.0).contains(&o.label_smoothing) {
            return Err(Error::arg(
                op,
                format!("label_smoothing must be between 0.0 and 1.0, got {}", o.label_smoothing),
            ));
        }
        let w = match &o.weight {
            None => None,
            Some(w) if w.dims() == [classes] && w.dtype().is_float() => {
                self.same_device(op, w)?;
                Some(w.to_dtype(dtype)?.reshape(&[1, classes as isize])?)
            }
            Some(w) => {
                return Err(Error::shape(
                    op,
                    &[classes],
                    w.dims(),
                    format!("weight must be one float per class (got {})", w.dtype()),
                ))
            }
        };
        // The targets are read once to check them (as every kernel does).
        for &v in &t.to_vec::<i64>()? {
            if v != o.ignore_index && (v < 0 || v as u64 >= classes as u64) {
                return Err(Error::IndexOutOfRange { op, index: v, dim: 1, size: classes });
            }
        }
        if classes == 0 {
            // Every target was ignored (checked above).
            return Tensor::zeros([n, 0], dtype, self.device());
        }
        let ignored = t.eq_scalar(o.ignore_index)?;
        let counted = ignored.to_dtype(dtype)?.rsub_scalar(1.0)?.reshape(&[n as isize, 1])?;
        let eps = o.label_smoothing;
        let mut k = t.masked_fill(&ignored, 0)?.one_hot(classes as i64)?.to_dtype(dtype)?.mul_scalar(1.0 - eps)?;
        if eps > 0.0 {
            k = k.add_scalar(eps / classes as f64)?;
        }
        if let Some(w) = &w {
            k = k.mul(w)?;
        }
        k.mul(&counted)
    }
}
