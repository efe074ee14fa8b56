//! One direction of one LSTM layer over a whole sequence as a single autograd node:
//! the forward runs the recurrence on tensors, the backward is backpropagation through
//! time written by hand, with the recurrent weight's gradient as one GEMM over all
//! steps (cuDNN's and oneDNN's layout of the work) instead of a `[4H, H]` product and
//! accumulation per step.

use autograd::{apply, is_grad_enabled, Context, Function, Var};
use tensor_core::{Error, Result, Tensor};

/// Inputs: `gi` `[T, N, 4H]` (the input projection, biases included), `w_hh_t`
/// `[H, 4H]` (the recurrent weight transposed, contiguous), `h0` and `c0` `[N, H]`.
/// Output: `[2, T, N, H]`, the hidden states then the cell states of every step, at
/// each step's own index (also when `reverse`). Runs the device's fused kernel
/// ([`Tensor::lstm_sequence_fused`]) where it has one, else the steps as tensor ops.
struct LstmSeq {
    reverse: bool,
}

/// The order the steps run in.
fn order(t: usize, reverse: bool) -> Box<dyn Iterator<Item = usize>> {
    if reverse {
        Box::new((0..t).rev())
    } else {
        Box::new(0..t)
    }
}

/// Each step's previous state, at the step's own index: `[T, N, H]`.
fn previous(seq: &Tensor, init: &Tensor, reverse: bool) -> Result<Tensor> {
    let t = seq.dims()[0] as isize;
    let init = init.unsqueeze(0)?;
    if reverse {
        Tensor::cat(&[seq.narrow(0, 1, (t - 1) as usize)?, init], 0)
    } else {
        Tensor::cat(&[init, seq.narrow(0, 0, (t - 1) as usize)?], 0)
    }
}

impl Function for LstmSeq {
    fn forward(&self, ctx: &mut Context, inputs: &[&Tensor]) -> Result<Tensor> {
        let (gi, w_t, h0, c0) = (inputs[0], inputs[1], inputs[2], inputs[3]);
        let (states, gates) = match Tensor::lstm_sequence_fused(gi, w_t, h0, c0, self.reverse)? {
            Some(r) => r,
            None => self.composed_forward(gi, w_t, h0, c0)?,
        };
        ctx.save_for_backward(&[w_t, h0, c0, &states, &gates]);
        Ok(states)
    }

    fn backward(&self, ctx: &Context, grad: &Var) -> Result<Vec<Option<Var>>> {
        if is_grad_enabled() {
            return Err(Error::Autograd(
                "LSTM: the fused sequence backward cannot be differentiated again (create_graph); \
                 run the layer with per-sequence lengths to take the step-by-step path"
                    .into(),
            ));
        }
        let saved = ctx.saved_tensors()?;
        let (w_t, h0, c0, states, acts) = (&saved[0], &saved[1], &saved[2], &saved[3], &saved[4]);
        let g = grad.tensor();
        let (hs, cs) = (&states.select(0, 0)?, &states.select(0, 1)?);
        let (t, hsz) = (hs.dims()[0], w_t.dims()[0]);
        let (dgi, dh0, dc0) = match Tensor::lstm_sequence_backward_fused(w_t, h0, c0, states, acts, g, self.reverse)? {
            Some(r) => r,
            None => self.composed_backward(w_t, h0, c0, cs, acts, g)?,
        };
        let dw = if ctx.needs_input_grad(1) {
            // The gradient of w_hh_t, sum over steps of h_{t-1}^T dgates_t: one
            // [H, T*N] x [T*N, 4H] GEMM.
            let n = hs.dims()[1];
            let h_prev = previous(hs, h0, self.reverse)?.reshape(&[(t * n) as isize, hsz as isize])?;
            let d2 = dgi.reshape(&[(t * n) as isize, (4 * hsz) as isize])?;
            Some(Var::from(h_prev.t()?.matmul(&d2)?))
        } else {
            None
        };
        Ok(vec![Some(Var::from(dgi)), dw, Some(Var::from(dh0)), Some(Var::from(dc0))])
    }

    fn name(&self) -> &'static str {
        "lstm_sequence"
    }
}

impl LstmSeq {
    /// The forward with tensor ops, where the device has no fused kernel: the states
    /// `[2, T, N, H]` and the activated gates `[T, N, 4H]`.
    fn composed_forward(&self, gi: &Tensor, w_t: &Tensor, h0: &Tensor, c0: &Tensor) -> Result<(Tensor, Tensor)> {
        let (t, hsz) = (gi.dims()[0], w_t.dims()[0]);
        let (mut h, mut c) = (h0.clone(), c0.clone());
        let mut hs: Vec<Option<Tensor>> = vec![None; t];
        let mut cs: Vec<Option<Tensor>> = vec![None; t];
        let mut acts: Vec<Option<Tensor>> = vec![None; t];
        for s in order(t, self.reverse) {
            let gates = gi.select(0, s as isize)?.add(&h.matmul(w_t)?)?;
            // sigmoid for i, f, o; tanh for the candidate g (columns 2H..3H).
            let sig = gates.sigmoid()?;
            let g = gates.narrow(1, 2 * hsz as isize, hsz)?.tanh()?;
            let gate = |k: usize| sig.narrow(1, (k * hsz) as isize, hsz);
            let (i, f, o) = (gate(0)?, gate(1)?, gate(3)?);
            c = f.mul(&c)?.add(&i.mul(&g)?)?;
            h = o.mul(&c.tanh()?)?;
            let act = Tensor::cat(&[i, f, g, o], 1)?;
            acts[s] = Some(act);
            hs[s] = Some(h.clone());
            cs[s] = Some(c.clone());
        }
        let unwrap = |v: Vec<Option<Tensor>>| -> Result<Vec<Tensor>> {
            v.into_iter().map(|x| x.ok_or_else(|| Error::Autograd("LSTM: a step did not run".into()))).collect()
        };
        let states = Tensor::stack(&[Tensor::stack(&unwrap(hs)?, 0)?, Tensor::stack(&unwrap(cs)?, 0)?], 0)?;
        Ok((states, Tensor::stack(&unwrap(acts)?, 0)?))
    }

    /// The backward with tensor ops, where the device has no fused kernel: the
    /// gradients of `gi`, `h0` and `c0`.
    fn composed_backward(
        &self,
        w_t: &Tensor,
        h0: &Tensor,
        c0: &Tensor,
        cs: &Tensor,
        acts: &Tensor,
        g: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let (t, hsz) = (cs.dims()[0], w_t.dims()[0]);
        // [4H, H], contiguous: the product below has few rows.
        let w_hh = w_t.t()?.contiguous()?;
        let (gh, gc) = (g.select(0, 0)?, g.select(0, 1)?);
        let c_prev = previous(cs, c0, self.reverse)?;
        let mut dh_next = h0.zeros_like()?;
        let mut dc_next = c0.zeros_like()?;
        let mut dgates: Vec<Option<Tensor>> = vec![None; t];
        for s in order(t, !self.reverse) {
            let si = s as isize;
            let act = acts.select(0, si)?;
            let part = |k: usize| act.narrow(1, (k * hsz) as isize, hsz);
            let (i, f, gg, o) = (part(0)?, part(1)?, part(2)?, part(3)?);
            let dh = gh.select(0, si)?.add(&dh_next)?;
            let tc = cs.select(0, si)?.tanh()?;
            // dc = gc + dc_next + dh * o * (1 - tanh(c)^2)
            let dc = gc.select(0, si)?.add(&dc_next)?.add(&dh.mul(&o)?.mul(&tc.square()?.rsub_scalar(1.0)?)?)?;
            let sig_grad = |y: &Tensor, d: Tensor| -> Result<Tensor> { d.mul(&y.mul(&y.rsub_scalar(1.0)?)?) };
            let di = sig_grad(&i, dc.mul(&gg)?)?;
            let df = sig_grad(&f, dc.mul(&c_prev.select(0, si)?)?)?;
            let dg = dc.mul(&i)?.mul(&gg.square()?.rsub_scalar(1.0)?)?;
            let d_o = sig_grad(&o, dh.mul(&tc)?)?;
            let dgate = Tensor::cat(&[di, df, dg, d_o], 1)?;
            dc_next = dc.mul(&f)?;
            dh_next = dgate.matmul(&w_hh)?;
            dgates[s] = Some(dgate);
        }
        let dgates: Vec<Tensor> = dgates
            .into_iter()
            .map(|x| x.ok_or_else(|| Error::Autograd("LSTM: a step did not run backward".into())))
            .collect::<Result<_>>()?;
        Ok((Tensor::stack(&dgates, 0)?, dh_next, dc_next))
    }
}

/// Runs the recurrence `gates = gi[t] + h w_hh_t` (gate order i, f, g, o) over all
/// steps (backwards when `reverse`) from `(h0, c0)`; returns the hidden states
/// `[T, N, H]`, and the final `h` and `c` `[N, H]`.
pub(crate) fn lstm_sequence(gi: &Var, w_hh_t: &Var, h0: &Var, c0: &Var, reverse: bool) -> Result<(Var, Var, Var)> {
    let out = apply(LstmSeq { reverse }, &[gi, w_hh_t, h0, c0])?;
    let t = gi.dims()[0] as isize;
    let last = if reverse { 0 } else { t - 1 };
    let hs = out.select(0, 0)?;
    let h = hs.select(0, last)?;
    let c = out.select(0, 1)?.select(0, last)?;
    Ok((hs, h, c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tensor_core::{DType, Device};

    /// The tensor-op path (devices without the fused kernel) and the CPU's fused
    /// kernel agree, forward and backward, in both directions.
    #[test]
    fn composed_path_matches_the_fused_kernel() {
        let dev = Device::cpu();
        let r =
            |s: &[usize], k: f64| Tensor::randn(s.to_vec(), DType::F64, &dev).and_then(|t| t.mul_scalar(k)).unwrap();
        let (t, n, h) = (4, 3, 5);
        let (gi, w, h0, c0) = (r(&[t, n, 4 * h], 1.0), r(&[h, 4 * h], 0.3), r(&[n, h], 1.0), r(&[n, h], 1.0));
        let grad = r(&[2, t, n, h], 1.0);
        let close = |a: &Tensor, b: &Tensor| assert!(a.allclose(b, 1e-12, 1e-12, false).unwrap(), "{a:?} vs {b:?}");
        for reverse in [false, true] {
            let f = LstmSeq { reverse };
            let (s, g) = f.composed_forward(&gi, &w, &h0, &c0).unwrap();
            let (fs, fg) = Tensor::lstm_sequence_fused(&gi, &w, &h0, &c0, reverse).unwrap().unwrap();
            close(&s, &fs);
            close(&g, &fg);
            let cs = s.select(0, 1).unwrap();
            let (a, b, c) = f.composed_backward(&w, &h0, &c0, &cs, &g, &grad).unwrap();
            let (fa, fb, fc) =
                Tensor::lstm_sequence_backward_fused(&w, &h0, &c0, &fs, &fg, &grad, reverse).unwrap().unwrap();
            close(&a, &fa);
            close(&b, &fb);
            close(&c, &fc);
        }
    }
}
