//! The fused LSTM sequence: one direction of one layer over all its steps in one
//! kernel ([`FusedOp::LstmSequence`]) and its backpropagation through time
//! ([`FusedOp::LstmSequenceBackward`]). `nn::LSTM` calls these and falls back to tensor
//! ops where the device has no such kernel (both return `Ok(None)` there).

use super::nn::require_float;
use crate::backend::FusedOp;
use crate::fused::LstmDims;
use crate::{Error, Result, Tensor};

/// Checks that the first tensor is a float and that every tensor has its dtype and
/// device and the expected shape.
fn check(op: &'static str, named: &[(&str, &Tensor, Vec<usize>)]) -> Result<()> {
    let first = named[0].1;
    require_float(op, first)?;
    for (what, t, want) in named {
        first.same_device(op, t)?;
        if t.dtype() != first.dtype() {
            return Err(Error::DTypeMismatch { op, expected: first.dtype(), got: t.dtype() });
        }
        if t.dims() != want.as_slice() {
            return Err(Error::shape(op, t.dims(), want, format!("{what} has the wrong shape")));
        }
    }
    Ok(())
}

/// The sizes from `gi [steps, batch, 4 hidden]` and `w_hh_t [hidden, 4 hidden]`.
fn dims(op: &'static str, gi: &Tensor, w_hh_t: &Tensor) -> Result<LstmDims> {
    if w_hh_t.rank() != 2 || gi.rank() != 3 {
        return Err(Error::shape(
            op,
            gi.dims(),
            w_hh_t.dims(),
            "expected gi [steps, batch, 4 hidden] and w_hh_t [hidden, 4 hidden]",
        ));
    }
    let d = LstmDims { steps: gi.dims()[0], batch: gi.dims()[1], hidden: w_hh_t.dims()[0] };
    d.check(op)?;
    Ok(d)
}

impl Tensor {
    /// Runs one direction of one LSTM layer over a whole sequence in one fused kernel
    /// (gate order i, f, g, o, as PyTorch): at each step `gates = gi[t] + h w_hh_t`,
    /// `c = sigmoid(f) c + sigmoid(i) tanh(g)`, `h = sigmoid(o) tanh(c)`, starting from
    /// `(h0, c0)` and walking backwards in time when `reverse`.
    ///
    /// `gi` is `[steps, batch, 4 hidden]` (the input projection with both biases),
    /// `w_hh_t` the transposed recurrent weight `[hidden, 4 hidden]`, `h0` and `c0`
    /// `[batch, hidden]`, all of one float dtype on one device. Returns the states
    /// `[2, steps, batch, hidden]` (every step's `h`, then every step's `c`, at the
    /// step's own index) and the activated gates `[steps, batch, 4 hidden]`, which
    /// [`Tensor::lstm_sequence_backward_fused`] takes; or `None` where the device has
    /// no fused kernel for the dtype (compose it from tensor ops there). No autograd:
    /// `nn::LSTM` wraps it in a graph node.
    ///
    /// ```
    /// use tensor_core::{DType, Device, Tensor};
    /// let dev = Device::cpu();
    /// let (steps, batch, hidden) = (3, 2, 4);
    /// let gi = Tensor::randn([steps, batch, 4 * hidden], DType::F32, &dev)?;
    /// let w = Tensor::randn([hidden, 4 * hidden], DType::F32, &dev)?;
    /// let h0 = Tensor::zeros([batch, hidden], DType::F32, &dev)?;
    /// let (states, _gates) = Tensor::lstm_sequence_fused(&gi, &w, &h0, &h0, false)?.expect("the CPU has the kernel");
    /// assert_eq!(states.dims(), &[2, steps, batch, hidden]);
    /// // The first step from zero states: c = sigmoid(i) tanh(g), h = sigmoid(o) tanh(c).
    /// let g = gi.select(0, 0)?;
    /// let part = |k: isize| g.narrow(1, k * hidden as isize, hidden);
    /// let c = part(0)?.sigmoid()?.mul(&part(2)?.tanh()?)?;
    /// let h = part(3)?.sigmoid()?.mul(&c.tanh()?)?;
    /// assert!(states.select(0, 0)?.select(0, 0)?.allclose(&h, 1e-6, 1e-6, false)?);
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn lstm_sequence_fused(
        gi: &Tensor,
        w_hh_t: &Tensor,
        h0: &Tensor,
        c0: &Tensor,
        reverse: bool,
    ) -> Result<Option<(Tensor, Tensor)>> {
        let op = "lstm_sequence";
        let d = dims(op, gi, w_hh_t)?;
        let (t, n, h) = (d.steps, d.batch, d.hidden);
        check(
            op,
            &[
                ("gi", gi, vec![t, n, 4 * h]),
                ("w_hh_t", w_hh_t, vec![h, 4 * h]),
                ("h0", h0, vec![n, h]),
                ("c0", c0, vec![n, h]),
            ],
        )?;
        let c: Vec<Tensor> = [gi, w_hh_t, h0, c0].iter().map(|t| t.contiguous()).collect::<Result<_>>()?;
        let r = {
            let g: Vec<_> = c.iter().map(|t| t.storage().read()).collect();
            let inputs = [0, 1, 2, 3].map(|k| (&**g[k], c[k].layout()));
            let op = FusedOp::LstmSequence { inputs, dims: d, reverse };
            crate::fused::run(gi.device(), op, &[&[2, t, n, h], &[t, n, 4 * h]])
        };
        let Some(r) = r else { return Ok(None) };
        let mut outs = r?.into_iter();
        match (outs.next(), outs.next()) {
            (Some(s), Some(g)) => Ok(Some((s, g))),
            _ => Err(Error::arg(op, "the fused kernel returned too few outputs")),
        }
    }

    /// The gradients of [`Tensor::lstm_sequence_fused`] (backpropagation through time)
    /// from its inputs `w_hh_t`, `h0`, `c0`, its outputs `states` and `gates`, and the
    /// states' gradient `grad [2, steps, batch, hidden]`. Returns the gradients of
    /// `gi` `[steps, batch, 4 hidden]`, `h0` and `c0`; or `None` where the device has
    /// no fused kernel. The weight's gradient is the sum over steps of `h_{t-1}^T
    /// dgi_t`, one GEMM the caller does.
    ///
    /// ```
    /// use tensor_core::{DType, Device, Tensor};
    /// let dev = Device::cpu();
    /// let gi = Tensor::randn([5, 2, 12], DType::F64, &dev)?;
    /// let w = Tensor::randn([3, 12], DType::F64, &dev)?;
    /// let h0 = Tensor::randn([2, 3], DType::F64, &dev)?;
    /// let (s, g) = Tensor::lstm_sequence_fused(&gi, &w, &h0, &h0, false)?.expect("CPU");
    /// let grad = Tensor::ones([2, 5, 2, 3], DType::F64, &dev)?;
    /// let (dgi, dh0, dc0) = Tensor::lstm_sequence_backward_fused(&w, &h0, &h0, &s, &g, &grad, false)?.expect("CPU");
    /// assert_eq!(dgi.dims(), &[5, 2, 12]);
    /// assert_eq!((dh0.dims(), dc0.dims()), (&[2usize, 3][..], &[2usize, 3][..]));
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    #[allow(clippy::type_complexity)]
    pub fn lstm_sequence_backward_fused(
        w_hh_t: &Tensor,
        h0: &Tensor,
        c0: &Tensor,
        states: &Tensor,
        gates: &Tensor,
        grad: &Tensor,
        reverse: bool,
    ) -> Result<Option<(Tensor, Tensor, Tensor)>> {
        let op = "lstm_sequence_backward";
        let d = dims(op, gates, w_hh_t)?;
        let (t, n, h) = (d.steps, d.batch, d.hidden);
        check(
            op,
            &[
                ("w_hh_t", w_hh_t, vec![h, 4 * h]),
                ("h0", h0, vec![n, h]),
                ("c0", c0, vec![n, h]),
                ("states", states, vec![2, t, n, h]),
                ("gates", gates, vec![t, n, 4 * h]),
                ("grad", grad, vec![2, t, n, h]),
            ],
        )?;
        let c: Vec<Tensor> =
            [w_hh_t, h0, c0, states, gates, grad].iter().map(|t| t.contiguous()).collect::<Result<_>>()?;
        let r = {
            let g: Vec<_> = c.iter().map(|t| t.storage().read()).collect();
            let tensors = [0, 1, 2, 3, 4, 5].map(|k| (&**g[k], c[k].layout()));
            let op = FusedOp::LstmSequenceBackward { tensors, dims: d, reverse };
            crate::fused::run(gates.device(), op, &[&[t, n, 4 * h], &[n, h], &[n, h]])
        };
        let Some(r) = r else { return Ok(None) };
        let mut outs = r?.into_iter();
        match (outs.next(), outs.next(), outs.next()) {
            (Some(a), Some(b), Some(c)) => Ok(Some((a, b, c))),
            _ => Err(Error::arg(op, "the fused kernel returned too few outputs")),
        }
    }
}
