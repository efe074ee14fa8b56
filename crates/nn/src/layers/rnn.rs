//! Recurrent layers: [`RNN`], [`LSTM`], [`GRU`] and their one-step cells [`RNNCell`],
//! [`LSTMCell`], [`GRUCell`], with PyTorch's parameter names, shapes, gate order and
//! initialisation, so a PyTorch `state_dict` loads unchanged.
//!
//! Each layer implements [`Forward`] for the common case (input only, zero initial
//! state, the output sequence back) and has an inherent `forward_with` taking an
//! optional initial state and, for the multi-layer layers, optional per-sequence
//! lengths (PyTorch's packed sequences, without a packed type: steps past a
//! sequence's length leave its state alone and give zero output).
//!
//! The input projection of a whole sequence is one matmul per layer and direction;
//! each step then does one matmul of the state against the fused gate weights.

use autograd::Var;
use tensor_core::{Error, Result, Tensor};

use super::lstm_seq::lstm_sequence;
use super::{check_size, inv_sqrt, uniform_param};
use crate::module::{Forward, Module, Param, Training, Visitor};

/// The activation of an [`RNN`] or [`RNNCell`] (PyTorch's `nonlinearity`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Nonlinearity {
    /// `tanh` (PyTorch's default).
    #[default]
    Tanh,
    /// `relu`.
    ReLU,
}

/// The state of an LSTM or LSTM cell: hidden state `h` and cell state `c`.
///
/// For [`LSTM`] both are `[num_layers * num_directions, N, _]` (`[.., _]` without the
/// batch dim for unbatched input), `h` with `proj_size` features when the layer
/// projects, `hidden_size` otherwise; `c` always has `hidden_size`. For [`LSTMCell`]
/// both are `[N, hidden_size]` (or `[hidden_size]`).
#[derive(Clone, Debug)]
pub struct LstmState {
    /// Hidden state.
    pub h: Var,
    /// Cell state.
    pub c: Var,
}

/// Which recurrence a cell runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Rnn(Nonlinearity),
    Lstm,
    Gru,
}

impl Kind {
    /// Number of gates stacked in `weight_ih`'s rows.
    fn gates(self) -> usize {
        match self {
            Kind::Rnn(_) => 1,
            Kind::Lstm => 4,
            Kind::Gru => 3,
        }
    }
}

/// `a * b` for sizes given by a user, as an error naming `op` when it overflows.
fn mul(op: &'static str, a: usize, b: usize) -> Result<usize> {
    a.checked_mul(b).ok_or_else(|| Error::invalid_shape(op, &[a, b], "the layer's size overflows"))
}

/// The parameters of one cell (one layer and direction of a multi-layer layer).
#[derive(Clone, Debug)]
struct Weights {
    weight_ih: Param,
    weight_hh: Param,
    bias_ih: Option<Param>,
    bias_hh: Option<Param>,
    weight_hr: Option<Param>,
}

impl Weights {
    /// PyTorch's shapes, all drawn from `U(-1/sqrt(hidden), 1/sqrt(hidden))`.
    fn new(op: &'static str, kind: Kind, input: usize, hidden: usize, proj: usize, bias: bool) -> Result<Weights> {
        let rows = mul(op, kind.gates(), hidden)?;
        let h_out = if proj > 0 { proj } else { hidden };
        let b = inv_sqrt(hidden);
        Ok(Weights {
            weight_ih: uniform_param(&[rows, input], b)?,
            weight_hh: uniform_param(&[rows, h_out], b)?,
            bias_ih: if bias { Some(uniform_param(&[rows], b)?) } else { None },
            bias_hh: if bias { Some(uniform_param(&[rows], b)?) } else { None },
            weight_hr: if proj > 0 { Some(uniform_param(&[proj, hidden], b)?) } else { None },
        })
    }

    /// Visits in PyTorch's order, each name ending in `suffix` ("_l1_reverse").
    fn visit(&self, v: &mut dyn Visitor, suffix: &str) {
        v.param(&format!("weight_ih{suffix}"), &self.weight_ih);
        v.param(&format!("weight_hh{suffix}"), &self.weight_hh);
        if let Some(b) = &self.bias_ih {
            v.param(&format!("bias_ih{suffix}"), b);
        }
        if let Some(b) = &self.bias_hh {
            v.param(&format!("bias_hh{suffix}"), b);
        }
        if let Some(w) = &self.weight_hr {
            v.param(&format!("weight_hr{suffix}"), w);
        }
    }

    fn prepare(&self, kind: Kind) -> Result<Step> {
        Step::new(
            kind,
            &self.weight_ih,
            &self.weight_hh,
            self.bias_ih.as_ref(),
            self.bias_hh.as_ref(),
            self.weight_hr.as_ref(),
        )
    }
}

/// A cell's weights arranged once per forward: transposed for `x @ W^T`, and the
/// biases folded where they can be.
struct Step {
    kind: Kind,
    w_ih_t: Var,
    /// Added to the input projection: `b_ih`, plus `b_hh` except for the GRU, whose
    /// `b_hn` sits inside `r * (W_hn h + b_hn)`.
    b_in: Option<Var>,
    w_hh_t: Var,
    /// The GRU's `b_hh`, added to each step's `h @ W_hh^T`.
    b_hh: Option<Var>,
    w_hr_t: Option<Var>,
}

impl Step {
    fn new(
        kind: Kind,
        w_ih: &Param,
        w_hh: &Param,
        b_ih: Option<&Param>,
        b_hh: Option<&Param>,
        w_hr: Option<&Param>,
    ) -> Result<Step> {
        let (b_in, b_hh) = match (b_ih, b_hh, kind) {
            (Some(bi), Some(bh), Kind::Gru) => (Some(bi.var()), Some(bh.var())),
            (Some(bi), Some(bh), _) => (Some(bi.var().add(&bh.var())?), None),
            (bi, bh, _) => (bi.map(Param::var), bh.map(Param::var)),
        };
        Ok(Step {
            kind,
            w_ih_t: w_ih.var().t()?,
            b_in,
            // Contiguous once per forward: every step multiplies by it, and GEMM with
            // few rows is several times slower on a transposed view.
            w_hh_t: w_hh.var().t()?.contiguous()?,
            b_hh,
            w_hr_t: w_hr.map(|w| w.var().t()).transpose()?,
        })
    }

    /// `x @ W_ih^T + b` over the last dim (a whole sequence at once).
    fn project(&self, x: &Var) -> Result<Var> {
        let y = x.matmul(&self.w_ih_t)?;
        match &self.b_in {
            Some(b) => y.add(b),
            None => Ok(y),
        }
    }

    /// One step from the projected input `gi` (`[N, gates * hidden]`) and the state;
    /// returns the new `h` and, for the LSTM, the new `c`.
    fn step(&self, gi: &Var, h: &Var, c: Option<&Var>) -> Result<(Var, Option<Var>)> {
        let mut gh = h.matmul(&self.w_hh_t)?;
        if let Some(b) = &self.b_hh {
            gh = gh.add(b)?;
        }
        match self.kind {
            Kind::Rnn(nl) => {
                let a = gi.add(&gh)?;
                let h = match nl {
                    Nonlinearity::Tanh => a.tanh()?,
                    Nonlinearity::ReLU => a.relu()?,
                };
                Ok((h, None))
            }
            Kind::Lstm => {
                let c = c.expect("an LSTM step is always given a cell state");
                let g = gi.add(&gh)?.chunk(4, -1)?;
                let (i, f, cand, o) = (g[0].sigmoid()?, g[1].sigmoid()?, g[2].tanh()?, g[3].sigmoid()?);
                let c = f.mul(c)?.add(&i.mul(&cand)?)?;
                let mut h = o.mul(&c.tanh()?)?;
                if let Some(w) = &self.w_hr_t {
                    h = h.matmul(w)?;
                }
                Ok((h, Some(c)))
            }
            Kind::Gru => {
                let a = gi.chunk(3, -1)?;
                let b = gh.chunk(3, -1)?;
                let r = a[0].add(&b[0])?.sigmoid()?;
                let z = a[1].add(&b[1])?.sigmoid()?;
                let n = a[2].add(&r.mul(&b[2])?)?.tanh()?;
                // (1 - z) * n + z * h
                Ok((n.add(&z.mul(&h.sub(&n)?)?)?, None))
            }
        }
    }
}

/// Checks a cell's input (`[N, in]` or `[in]`) and state (`[N, H]` or `[H]`, same
/// batching); returns them batched, and whether the input was unbatched.
fn cell_inputs(
    op: &'static str,
    input_size: usize,
    hidden: usize,
    input: &Var,
    states: &[(&str, Option<&Var>)],
) -> Result<(Var, Vec<Var>, bool)> {
    if !(1..=2).contains(&input.rank()) || input.dims()[input.rank() - 1] != input_size {
        return Err(Error::shape(
            op,
            input.dims(),
            &[input_size],
            format!("expected input of shape [N, {input_size}] or [{input_size}] (input_size={input_size})"),
        ));
    }
    let unbatched = input.rank() == 1;
    let x = if unbatched { input.unsqueeze(0)? } else { input.clone() };
    let n = x.dims()[0];
    let want: Vec<usize> = if unbatched { vec![hidden] } else { vec![n, hidden] };
    let mut out = Vec::with_capacity(states.len());
    for (name, s) in states {
        out.push(match s {
            Some(s) => {
                if s.dims() != want.as_slice() {
                    return Err(Error::shape(
                        op,
                        s.dims(),
                        &want,
                        format!("expected {name} of shape {want:?} for input of shape {:?}", input.dims()),
                    ));
                }
                if unbatched {
                    s.unsqueeze(0)?
                } else {
                    (*s).clone()
                }
            }
            None => Var::zeros([n, hidden], x.dtype(), x.device())?,
        });
    }
    Ok((x, out, unbatched))
}

/// The slices of `v` along dim 0, taken by halving: the gradient of a slice embeds
/// it in its parent's shape, so `T` slices of the whole would cost `T^2` in the
/// backward; halving costs `T log T`.
fn unbind_halving(v: &Var, out: &mut Vec<Var>) -> Result<()> {
    let t = v.dims()[0];
    if t == 1 {
        out.push(v.select(0, 0)?);
        return Ok(());
    }
    let half = t / 2;
    unbind_halving(&v.narrow(0, 0, half)?, out)?;
    unbind_halving(&v.narrow(0, half as isize, t - half)?, out)
}

/// Removes the batch dim added for an unbatched input.
fn unbatch(v: Var, unbatched: bool) -> Result<Var> {
    if unbatched {
        v.squeeze(0)
    } else {
        Ok(v)
    }
}

/// What the three cells share: size accessors and visiting their four parameters.
macro_rules! cell_common {
    ($ty:ident) => {
        impl $ty {
            /// Number of input features.
            pub fn input_size(&self) -> usize {
                self.weight_ih.dims()[1]
            }

            /// Number of hidden features.
            pub fn hidden_size(&self) -> usize {
                self.weight_hh.dims()[1]
            }
        }

        impl Module for $ty {
            fn visit(&self, v: &mut dyn Visitor) {
                v.param("weight_ih", &self.weight_ih);
                v.param("weight_hh", &self.weight_hh);
                v.opt_param("bias_ih", &self.bias_ih);
                v.opt_param("bias_hh", &self.bias_hh);
            }
        }
    };
}

/// An Elman RNN cell: `h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh)`, with `act` tanh
/// or ReLU.
///
/// Input `[N, input_size]` or unbatched `[input_size]`; state and output
/// `[N, hidden_size]` (or `[hidden_size]`). Weights start as `U(-1/sqrt(hidden),
/// 1/sqrt(hidden))`, like PyTorch.
///
/// ```
/// use autograd::Var;
/// use nn::{Forward, Nonlinearity, RNNCell};
/// use tensor_core::{DType, Device, Tensor};
/// let cell = RNNCell::new(3, 5, true, Nonlinearity::Tanh)?;
/// let x = Var::from(Tensor::ones([2, 3], DType::F32, &Device::cpu())?);
/// let h1 = cell.forward(&x)?;
/// let h2 = cell.forward_with(&x, Some(&h1))?;
/// assert_eq!(h2.dims(), &[2, 5]);
/// # Ok::<(), tensor_core::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct RNNCell {
    /// `[hidden_size, input_size]`.
    pub weight_ih: Param,
    /// `[hidden_size, hidden_size]`.
    pub weight_hh: Param,
    /// `[hidden_size]`, when the cell has biases.
    pub bias_ih: Option<Param>,
    /// `[hidden_size]`, when the cell has biases.
    pub bias_hh: Option<Param>,
    /// The activation.
    pub nonlinearity: Nonlinearity,
}

impl RNNCell {
    /// A cell from `input_size` to `hidden_size` features.
    pub fn new(input_size: usize, hidden_size: usize, bias: bool, nonlinearity: Nonlinearity) -> Result<RNNCell> {
        let w = Weights::new("RNNCell", Kind::Rnn(nonlinearity), input_size, hidden_size, 0, bias)?;
        Ok(RNNCell {
            weight_ih: w.weight_ih,
            weight_hh: w.weight_hh,
            bias_ih: w.bias_ih,
            bias_hh: w.bias_hh,
            nonlinearity,
        })
    }

    /// One step from state `h` (zeros when `None`); returns the new state.
    pub fn forward_with(&self, input: &Var, h: Option<&Var>) -> Result<Var> {
        let (x, s, unbatched) = cell_inputs("RNNCell", self.input_size(), self.hidden_size(), input, &[("h", h)])?;
        let kind = Kind::Rnn(self.nonlinearity);
        let st = Step::new(kind, &self.weight_ih, &self.weight_hh, self.bias_ih.as_ref(), self.bias_hh.as_ref(), None)?;
        let (h, _) = st.step(&st.project(&x)?, &s[0], None)?;
        unbatch(h, unbatched)
    }
}

cell_common!(RNNCell);

impl Forward for RNNCell {
    /// One step from a zero state.
    fn forward(&self, x: &Var) -> Result<Var> {
        self.forward_with(x, None)
    }
}

/// An LSTM cell with PyTorch's gate order (input, forget, cell, output):
/// `c' = f * c + i * g`, `h' = o * tanh(c')`.
///
/// Input `[N, input_size]` or unbatched `[input_size]`; `h` and `c` `[N, hidden_size]`
/// (or `[hidden_size]`). `weight_ih` is `[4 * hidden, input]`, `weight_hh`
/// `[4 * hidden, hidden]`, all drawn from `U(-1/sqrt(hidden), 1/sqrt(hidden))`.
///
/// ```
/// use autograd::Var;
/// use nn::{LSTMCell, Module};
/// use tensor_core::{DType, Device, Tensor};
/// let cell = LSTMCell::new(3, 4, true)?;
/// let mut state = None;
/// for _ in 0..5 {
///     let x = Var::from(Tensor::randn([2, 3], DType::F32, &Device::cpu())?);
///     state = Some(cell.forward_with(&x, state.as_ref())?);
/// }
/// let state = state.unwrap();
/// assert_eq!((state.h.dims(), state.c.dims()), (&[2, 4][..], &[2, 4][..]));
/// assert_eq!(cell.named_parameters()[0].0, "weight_ih");
/// # Ok::<(), tensor_core::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct LSTMCell {
    /// `[4 * hidden_size, input_size]`.
    pub weight_ih: Param,
    /// `[4 * hidden_size, hidden_size]`.
    pub weight_hh: Param,
    /// `[4 * hidden_size]`, when the cell has biases.
    pub bias_ih: Option<Param>,
    /// `[4 * hidden_size]`, when the cell has biases.
    pub bias_hh: Option<Param>,
}

impl LSTMCell {
    /// A cell from `input_size` to `hidden_size` features.
    pub fn new(input_size: usize, hidden_size: usize, bias: bool) -> Result<LSTMCell> {
        let w = Weights::new("LSTMCell", Kind::Lstm, input_size, hidden_size, 0, bias)?;
        Ok(LSTMCell { weight_ih: w.weight_ih, weight_hh: w.weight_hh, bias_ih: w.bias_ih, bias_hh: w.bias_hh })
    }

    /// One step from `state` (zeros when `None`); returns the new `(h, c)`.
    pub fn forward_with(&self, input: &Var, state: Option<&LstmState>) -> Result<LstmState> {
        let (h, c) = (state.map(|s| &s.h), state.map(|s| &s.c));
        let (x, s, unbatched) =
            cell_inputs("LSTMCell", self.input_size(), self.hidden_size(), input, &[("h", h), ("c", c)])?;
        let st = Step::new(
            Kind::Lstm,
            &self.weight_ih,
            &self.weight_hh,
            self.bias_ih.as_ref(),
            self.bias_hh.as_ref(),
            None,
        )?;
        let (h, c) = st.step(&st.project(&x)?, &s[0], Some(&s[1]))?;
        let c = c.expect("an LSTM step returns a cell state");
        Ok(LstmState { h: unbatch(h, unbatched)?, c: unbatch(c, unbatched)? })
    }
}

cell_common!(LSTMCell);

impl Forward for LSTMCell {
    /// One step from a zero state; returns `h`.
    fn forward(&self, x: &Var) -> Result<Var> {
        Ok(self.forward_with(x, None)?.h)
    }
}

/// A GRU cell with PyTorch's gate order (reset, update, new):
/// `n = tanh(W_in x + b_in + r * (W_hn h + b_hn))`, `h' = (1 - z) * n + z * h`.
///
/// Input `[N, input_size]` or unbatched `[input_size]`; state `[N, hidden_size]` (or
/// `[hidden_size]`). `weight_ih` is `[3 * hidden, input]`, `weight_hh`
/// `[3 * hidden, hidden]`, all drawn from `U(-1/sqrt(hidden), 1/sqrt(hidden))`.
#[derive(Clone, Debug)]
pub struct GRUCell {
    /// `[3 * hidden_size, input_size]`.
    pub weight_ih: Param,
    /// `[3 * hidden_size, hidden_size]`.
    pub weight_hh: Param,
    /// `[3 * hidden_size]`, when the cell has biases.
    pub bias_ih: Option<Param>,
    /// `[3 * hidden_size]`, when the cell has biases.
    pub bias_hh: Option<Param>,
}

impl GRUCell {
    /// A cell from `input_size` to `hidden_size` features.
    pub fn new(input_size: usize, hidden_size: usize, bias: bool) -> Result<GRUCell> {
        let w = Weights::new("GRUCell", Kind::Gru, input_size, hidden_size, 0, bias)?;
        Ok(GRUCell { weight_ih: w.weight_ih, weight_hh: w.weight_hh, bias_ih: w.bias_ih, bias_hh: w.bias_hh })
    }

    /// One step from state `h` (zeros when `None`); returns the new state.
    pub fn forward_with(&self, input: &Var, h: Option<&Var>) -> Result<Var> {
        let (x, s, unbatched) = cell_inputs("GRUCell", self.input_size(), self.hidden_size(), input, &[("h", h)])?;
        let st =
            Step::new(Kind::Gru, &self.weight_ih, &self.weight_hh, self.bias_ih.as_ref(), self.bias_hh.as_ref(), None)?;
        let (h, _) = st.step(&st.project(&x)?, &s[0], None)?;
        unbatch(h, unbatched)
    }
}

cell_common!(GRUCell);

impl Forward for GRUCell {
    /// One step from a zero state.
    fn forward(&self, x: &Var) -> Result<Var> {
        self.forward_with(x, None)
    }
}

/// Options of [`RNN`], with PyTorch's defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RnnConfig {
    /// Stacked layers (default 1).
    pub num_layers: usize,
    /// The activation (default tanh).
    pub nonlinearity: Nonlinearity,
    /// Whether the cells have `bias_ih`/`bias_hh` (default true).
    pub bias: bool,
    /// Input and output as `[N, T, _]` instead of `[T, N, _]` (default false; states
    /// keep the batch in dim 1 either way).
    pub batch_first: bool,
    /// Dropout on each layer's output but the last's, in training mode (default 0).
    pub dropout: f64,
    /// Run a second direction over the reversed sequence (default false).
    pub bidirectional: bool,
}

impl Default for RnnConfig {
    fn default() -> Self {
        RnnConfig {
            num_layers: 1,
            nonlinearity: Nonlinearity::Tanh,
            bias: true,
            batch_first: false,
            dropout: 0.0,
            bidirectional: false,
        }
    }
}

/// Options of [`LSTM`], with PyTorch's defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LstmConfig {
    /// Stacked layers (default 1).
    pub num_layers: usize,
    /// Whether the cells have `bias_ih`/`bias_hh` (default true).
    pub bias: bool,
    /// Input and output as `[N, T, _]` instead of `[T, N, _]` (default false; states
    /// keep the batch in dim 1 either way).
    pub batch_first: bool,
    /// Dropout on each layer's output but the last's, in training mode (default 0).
    pub dropout: f64,
    /// Run a second direction over the reversed sequence (default false).
    pub bidirectional: bool,
    /// When non-zero, `h` is projected to this many features by `weight_hr_l{k}`
    /// (must be smaller than `hidden_size`; default 0).
    pub proj_size: usize,
}

impl Default for LstmConfig {
    fn default() -> Self {
        LstmConfig { num_layers: 1, bias: true, batch_first: false, dropout: 0.0, bidirectional: false, proj_size: 0 }
    }
}

/// Options of [`GRU`], with PyTorch's defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GruConfig {
    /// Stacked layers (default 1).
    pub num_layers: usize,
    /// Whether the cells have `bias_ih`/`bias_hh` (default true).
    pub bias: bool,
    /// Input and output as `[N, T, _]` instead of `[T, N, _]` (default false; states
    /// keep the batch in dim 1 either way).
    pub batch_first: bool,
    /// Dropout on each layer's output but the last's, in training mode (default 0).
    pub dropout: f64,
    /// Run a second direction over the reversed sequence (default false).
    pub bidirectional: bool,
}

impl Default for GruConfig {
    fn default() -> Self {
        GruConfig { num_layers: 1, bias: true, batch_first: false, dropout: 0.0, bidirectional: false }
    }
}

/// What [`RNN`], [`LSTM`] and [`GRU`] share: the stack of cells and its options.
#[derive(Clone, Debug)]
struct Stack {
    op: &'static str,
    kind: Kind,
    input_size: usize,
    hidden_size: usize,
    proj_size: usize,
    num_layers: usize,
    batch_first: bool,
    dropout: f64,
    bidirectional: bool,
    /// Layer-major, direction-minor.
    cells: Vec<Weights>,
    training: Training,
}

/// The options [`Stack::new`] takes, from any of the three configs.
struct StackOptions {
    num_layers: usize,
    bias: bool,
    batch_first: bool,
    dropout: f64,
    bidirectional: bool,
    proj_size: usize,
}

/// The state a [`Stack`] runs from and returns: `h` and, for the LSTM, `c`.
struct StackState {
    h: Var,
    c: Option<Var>,
}

impl Stack {
    fn new(op: &'static str, kind: Kind, input_size: usize, hidden_size: usize, o: StackOptions) -> Result<Stack> {
        if hidden_size == 0 {
            return Err(Error::arg(op, "hidden_size must be greater than zero"));
        }
        if o.num_layers == 0 {
            return Err(Error::arg(op, "num_layers must be greater than zero"));
        }
        if !(0.0..=1.0).contains(&o.dropout) {
            return Err(Error::arg(op, format!("dropout must be a probability in [0, 1], got {}", o.dropout)));
        }
        if o.proj_size >= hidden_size && o.proj_size > 0 {
            return Err(Error::arg(
                op,
                format!(
                    "proj_size has to be smaller than hidden_size, got proj_size={} and hidden_size={hidden_size}",
                    o.proj_size
                ),
            ));
        }
        let dirs = if o.bidirectional { 2 } else { 1 };
        let h_out = if o.proj_size > 0 { o.proj_size } else { hidden_size };
        // All the weights together must fit before any is drawn (an absurd num_layers
        // is an error, not an allocation loop that runs out of memory).
        let rows = mul(op, kind.gates(), hidden_size)?;
        let widest = input_size.max(mul(op, dirs, h_out)?);
        let per_cell = [widest, h_out, 2]
            .iter()
            .try_fold(0usize, |a, &b| a.checked_add(b))
            .and_then(|w| w.checked_mul(rows))
            .and_then(|n| n.checked_add(o.proj_size.checked_mul(hidden_size)?))
            .ok_or_else(|| Error::invalid_shape(op, &[rows, widest], "the layer's size overflows"))?;
        let total = [o.num_layers, dirs, per_cell];
        check_size(&total).map_err(|_| Error::invalid_shape(op, &total, "the layer's weights overflow"))?;
        let mut cells = Vec::new();
        for layer in 0..o.num_layers {
            let input = if layer == 0 { input_size } else { mul(op, dirs, h_out)? };
            for _ in 0..dirs {
                cells.push(Weights::new(op, kind, input, hidden_size, o.proj_size, o.bias)?);
            }
        }
        Ok(Stack {
            op,
            kind,
            input_size,
            hidden_size,
            proj_size: o.proj_size,
            num_layers: o.num_layers,
            batch_first: o.batch_first,
            dropout: o.dropout,
            bidirectional: o.bidirectional,
            cells,
            training: Training::new(),
        })
    }

    fn dirs(&self) -> usize {
        if self.bidirectional {
            2
        } else {
            1
        }
    }

    /// Features of `h` (and of each direction's output).
    fn h_out(&self) -> usize {
        if self.proj_size > 0 {
            self.proj_size
        } else {
            self.hidden_size
        }
    }

    fn visit(&self, v: &mut dyn Visitor) {
        v.training(&self.training);
        let dirs = self.dirs();
        for (i, w) in self.cells.iter().enumerate() {
            let rev = if i % dirs == 1 { "_reverse" } else { "" };
            w.visit(v, &format!("_l{}{rev}", i / dirs));
        }
    }

    /// Checks an initial state `s` against `[layers * dirs, (N,) features]` and
    /// returns it batched.
    fn check_state(&self, name: &str, s: &Var, n: usize, features: usize, unbatched: bool) -> Result<Var> {
        let ld = self.num_layers * self.dirs();
        let want: Vec<usize> = if unbatched { vec![ld, features] } else { vec![ld, n, features] };
        if s.dims() != want.as_slice() {
            return Err(Error::shape(
                self.op,
                s.dims(),
                &want,
                format!(
                    "expected {name} of shape {want:?} (num_layers * num_directions, {}{features})",
                    if unbatched { "" } else { "batch, " }
                ),
            ));
        }
        if unbatched {
            s.unsqueeze(1)
        } else {
            Ok(s.clone())
        }
    }

    /// Per step, a `[N, 1]` Bool mask of the sequences already past their length
    /// (`None` where every sequence is still running).
    fn pad_masks(&self, lengths: &[usize], n: usize, t: usize, x: &Var) -> Result<Vec<Option<Tensor>>> {
        if lengths.len() != n {
            return Err(Error::arg(
                self.op,
                format!("expected {n} lengths (one per batch element of input {:?}), got {}", x.dims(), lengths.len()),
            ));
        }
        if let Some(&bad) = lengths.iter().find(|&&l| l == 0 || l > t) {
            return Err(Error::arg(
                self.op,
                format!("every length must be in [1, {t}] (the sequence length of input {:?}), got {bad}", x.dims()),
            ));
        }
        (0..t)
            .map(|step| {
                if lengths.iter().all(|&l| l > step) {
                    return Ok(None);
                }
                let m: Vec<bool> = lengths.iter().map(|&l| step >= l).collect();
                Ok(Some(Tensor::from_vec(m, [n, 1])?.to_device(x.device())?))
            })
            .collect()
    }

    /// The whole forward: output sequence and final state (see the layers' docs).
    fn run(
        &self,
        input: &Var,
        h0: Option<&Var>,
        c0: Option<&Var>,
        lengths: Option<&[usize]>,
    ) -> Result<(Var, StackState)> {
        let op = self.op;
        let in_size = self.input_size;
        if !(2..=3).contains(&input.rank()) || input.dims()[input.rank() - 1] != in_size {
            let (a, b) = if self.batch_first { ("N, T", "batch_first") } else { ("T, N", "sequence first") };
            return Err(Error::shape(
                op,
                input.dims(),
                &[in_size],
                format!(
                    "expected input of shape [{a}, {in_size}] ({b}) or unbatched [T, {in_size}] (input_size={in_size})"
                ),
            ));
        }
        let unbatched = input.rank() == 2;
        let x = if unbatched {
            input.unsqueeze(1)?
        } else if self.batch_first {
            input.transpose(0, 1)?
        } else {
            input.clone()
        };
        let (t, n) = (x.dims()[0], x.dims()[1]);
        if t == 0 {
            return Err(Error::invalid_shape(op, input.dims(), "expected a sequence of at least one step"));
        }
        let h_out = self.h_out();
        let h0 = h0.map(|h| self.check_state("h_0", h, n, h_out, unbatched)).transpose()?;
        let c0 = match (self.kind, c0) {
            (Kind::Lstm, Some(c)) => Some(self.check_state("c_0", c, n, self.hidden_size, unbatched)?),
            _ => None,
        };
        let masks = match lengths {
            Some(l) => self.pad_masks(l, n, t, &x)?,
            None => vec![None; t],
        };
        let dirs = self.dirs();
        let is_lstm = self.kind == Kind::Lstm;
        let (mut hs, mut cs) = (Vec::new(), Vec::new());
        let mut layer_in = x;
        for layer in 0..self.num_layers {
            if layer > 0 {
                layer_in = layer_in.dropout(self.dropout, self.training.get())?;
            }
            let mut outs = Vec::with_capacity(dirs);
            for d in 0..dirs {
                let idx = layer * dirs + d;
                let st = self.cells[idx].prepare(self.kind)?;
                let gi = st.project(&layer_in)?;
                let h = match &h0 {
                    Some(h0) => h0.select(0, idx as isize)?,
                    None => Var::zeros([n, h_out], gi.dtype(), gi.device())?,
                };
                let c = match (&c0, is_lstm) {
                    (Some(c0), _) => Some(c0.select(0, idx as isize)?),
                    (None, true) => Some(Var::zeros([n, self.hidden_size], gi.dtype(), gi.device())?),
                    (None, false) => None,
                };
                let (seq, h, c) = match &c {
                    // The LSTM without projection or lengths: one node for the sequence.
                    Some(c0) if st.w_hr_t.is_none() && masks.iter().all(Option::is_none) => {
                        let (seq, h, c) = lstm_sequence(&gi, &st.w_hh_t, &h, c0, d == 1)?;
                        (seq, h, Some(c))
                    }
                    _ => {
                        let mut gis = Vec::with_capacity(t);
                        unbind_halving(&gi, &mut gis)?;
                        run_direction(&st, &gis, h, c, &masks, d == 1)?
                    }
                };
                outs.push(seq);
                hs.push(h);
                if let Some(c) = c {
                    cs.push(c);
                }
            }
            layer_in = if dirs == 1 { outs.pop().expect("one direction ran") } else { Var::cat(&outs, 2)? };
        }
        let mut out = layer_in;
        let mut h = Var::stack(&hs, 0)?;
        let mut c = if is_lstm { Some(Var::stack(&cs, 0)?) } else { None };
        if unbatched {
            out = out.squeeze(1)?;
            h = h.squeeze(1)?;
            c = c.map(|c| c.squeeze(1)).transpose()?;
        } else if self.batch_first {
            out = out.transpose(0, 1)?;
        }
        Ok((out, StackState { h, c }))
    }
}

/// Runs one direction of one layer over the projected inputs `gis` (one `[N, G]` per
/// step) from `(h, c)`, backwards when `reverse`; returns the `[T, N, H_out]` outputs
/// and the final state.
fn run_direction(
    st: &Step,
    gis: &[Var],
    mut h: Var,
    mut c: Option<Var>,
    masks: &[Option<Tensor>],
    reverse: bool,
) -> Result<(Var, Var, Option<Var>)> {
    let t = gis.len();
    let mut seq: Vec<Option<Var>> = vec![None; t];
    let order: Box<dyn Iterator<Item = usize>> = if reverse { Box::new((0..t).rev()) } else { Box::new(0..t) };
    for step in order {
        let (h_new, c_new) = st.step(&gis[step], &h, c.as_ref())?;
        match &masks[step] {
            // Finished sequences keep their state and output zeros; the reverse
            // direction thus starts from h_0 at each sequence's own last step.
            Some(pad) => {
                seq[step] = Some(h_new.masked_fill(pad, 0.0)?);
                h = Var::where_cond(pad, &h, &h_new)?;
                if let (Some(c_old), Some(c_new)) = (&c, &c_new) {
                    c = Some(Var::where_cond(pad, c_old, c_new)?);
                }
            }
            None => {
                seq[step] = Some(h_new.clone());
                h = h_new;
                c = c_new;
            }
        }
    }
    let seq: Vec<Var> = seq.into_iter().map(|v| v.expect("every step produced an output")).collect();
    Ok((Var::stack(&seq, 0)?, h, c))
}

/// Common accessors of the three multi-layer layers.
macro_rules! stack_accessors {
    ($ty:ident) => {
        impl $ty {
            /// Number of input features.
            pub fn input_size(&self) -> usize {
                self.core.input_size
            }

            /// Number of hidden features.
            pub fn hidden_size(&self) -> usize {
                self.core.hidden_size
            }

            /// Number of stacked layers.
            pub fn num_layers(&self) -> usize {
                self.core.num_layers
            }

            /// True when the layer runs both directions.
            pub fn bidirectional(&self) -> bool {
                self.core.bidirectional
            }

            /// True when input and output put the batch first.
            pub fn batch_first(&self) -> bool {
                self.core.batch_first
            }

            /// The dropout probability between layers.
            pub fn dropout(&self) -> f64 {
                self.core.dropout
            }
        }

        impl Module for $ty {
            fn visit(&self, v: &mut dyn Visitor) {
                self.core.visit(v)
            }
        }
    };
}

/// A multi-layer Elman RNN: each layer runs [`RNNCell`]'s recurrence over the sequence.
///
/// Input `[T, N, input_size]` (`[N, T, input_size]` with `batch_first`) or unbatched
/// `[T, input_size]`; output `[T, N, D * hidden_size]` (D = 2 when bidirectional),
/// and `h_n` `[num_layers * D, N, hidden_size]`. Parameters are named as in PyTorch
/// (`weight_ih_l0`, `bias_hh_l1_reverse`, ...), each `U(-1/sqrt(hidden), 1/sqrt(hidden))`.
///
/// [`Forward`] runs from a zero state and returns the output;
/// [`RNN::forward_with`] takes an initial state and sequence lengths.
#[derive(Clone, Debug)]
pub struct RNN {
    core: Stack,
}

impl RNN {
    /// An RNN from `input_size` to `hidden_size` features.
    pub fn new(input_size: usize, hidden_size: usize, cfg: RnnConfig) -> Result<RNN> {
        let o = StackOptions {
            num_layers: cfg.num_layers,
            bias: cfg.bias,
            batch_first: cfg.batch_first,
            dropout: cfg.dropout,
            bidirectional: cfg.bidirectional,
            proj_size: 0,
        };
        Ok(RNN { core: Stack::new("RNN", Kind::Rnn(cfg.nonlinearity), input_size, hidden_size, o)? })
    }

    /// Runs from `h0` (`[num_layers * D, N, hidden]`, zeros when `None`); returns the
    /// output sequence and `h_n`.
    ///
    /// With `lengths` (one per batch element, each in `[1, T]`), a sequence's steps
    /// past its length leave its state unchanged and output zeros, as PyTorch's
    /// `pack_padded_sequence` / `pad_packed_sequence(.., total_length=T)` do;
    /// `h_n` is each sequence's state at its last step.
    pub fn forward_with(&self, input: &Var, h0: Option<&Var>, lengths: Option<&[usize]>) -> Result<(Var, Var)> {
        let (out, s) = self.core.run(input, h0, None, lengths)?;
        Ok((out, s.h))
    }
}

stack_accessors!(RNN);

impl Forward for RNN {
    /// The output sequence from a zero state.
    fn forward(&self, x: &Var) -> Result<Var> {
        Ok(self.forward_with(x, None, None)?.0)
    }
}

/// A multi-layer LSTM: each layer runs [`LSTMCell`]'s recurrence over the sequence,
/// optionally projecting `h` to `proj_size` features (`h = W_hr h`).
///
/// Input `[T, N, input_size]` (`[N, T, input_size]` with `batch_first`) or unbatched
/// `[T, input_size]`; output `[T, N, D * H_out]` (D = 2 when bidirectional,
/// `H_out = proj_size` when set, else `hidden_size`); `h_n` `[num_layers * D, N, H_out]`
/// and `c_n` `[num_layers * D, N, hidden_size]`. Parameters are named as in PyTorch
/// (`weight_ih_l0`, `weight_hr_l1_reverse`, ...), each `U(-1/sqrt(hidden), 1/sqrt(hidden))`.
///
/// ```
/// use autograd::Var;
/// use nn::{Forward, LstmConfig, LSTM, Module};
/// use tensor_core::{DType, Device, Tensor};
/// let lstm = LSTM::new(3, 8, LstmConfig { num_layers: 2, bidirectional: true, batch_first: true, ..Default::default() })?;
/// let x = Var::from(Tensor::randn([4, 6, 3], DType::F32, &Device::cpu())?); // [N, T, in]
/// assert_eq!(lstm.forward(&x)?.dims(), &[4, 6, 16]);
/// // Sequences of lengths 6, 2, 5 and 1: padded steps leave the state alone.
/// let (out, state) = lstm.forward_with(&x, None, Some(&[6, 2, 5, 1]))?;
/// assert_eq!((out.dims(), state.h.dims(), state.c.dims()), (&[4, 6, 16][..], &[4, 4, 8][..], &[4, 4, 8][..]));
/// assert_eq!(lstm.named_parameters()[4].0, "weight_ih_l0_reverse");
/// # Ok::<(), tensor_core::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct LSTM {
    core: Stack,
}

impl LSTM {
    /// An LSTM from `input_size` to `hidden_size` features.
    pub fn new(input_size: usize, hidden_size: usize, cfg: LstmConfig) -> Result<LSTM> {
        let o = StackOptions {
            num_layers: cfg.num_layers,
            bias: cfg.bias,
            batch_first: cfg.batch_first,
            dropout: cfg.dropout,
            bidirectional: cfg.bidirectional,
            proj_size: cfg.proj_size,
        };
        Ok(LSTM { core: Stack::new("LSTM", Kind::Lstm, input_size, hidden_size, o)? })
    }

    /// Features of `h` after projection (0 when the layer does not project).
    pub fn proj_size(&self) -> usize {
        self.core.proj_size
    }

    /// Runs from `state` (`h_0` and `c_0`, zeros when `None`); returns the output
    /// sequence and `(h_n, c_n)`.
    ///
    /// With `lengths` (one per batch element, each in `[1, T]`), a sequence's steps
    /// past its length leave its state unchanged and output zeros, as PyTorch's
    /// `pack_padded_sequence` / `pad_packed_sequence(.., total_length=T)` do;
    /// `h_n`/`c_n` are each sequence's state at its last step, and the reverse
    /// direction starts there.
    pub fn forward_with(
        &self,
        input: &Var,
        state: Option<&LstmState>,
        lengths: Option<&[usize]>,
    ) -> Result<(Var, LstmState)> {
        let (out, s) = self.core.run(input, state.map(|s| &s.h), state.map(|s| &s.c), lengths)?;
        Ok((out, LstmState { h: s.h, c: s.c.expect("the LSTM returns a cell state") }))
    }
}

stack_accessors!(LSTM);

impl Forward for LSTM {
    /// The output sequence from a zero state.
    fn forward(&self, x: &Var) -> Result<Var> {
        Ok(self.forward_with(x, None, None)?.0)
    }
}

/// A multi-layer GRU: each layer runs [`GRUCell`]'s recurrence over the sequence.
///
/// Input `[T, N, input_size]` (`[N, T, input_size]` with `batch_first`) or unbatched
/// `[T, input_size]`; output `[T, N, D * hidden_size]` (D = 2 when bidirectional),
/// and `h_n` `[num_layers * D, N, hidden_size]`. Parameters are named as in PyTorch
/// (`weight_ih_l0`, `bias_hh_l1_reverse`, ...), each `U(-1/sqrt(hidden), 1/sqrt(hidden))`.
///
/// [`Forward`] runs from a zero state and returns the output;
/// [`GRU::forward_with`] takes an initial state and sequence lengths.
#[derive(Clone, Debug)]
pub struct GRU {
    core: Stack,
}

impl GRU {
    /// A GRU from `input_size` to `hidden_size` features.
    pub fn new(input_size: usize, hidden_size: usize, cfg: GruConfig) -> Result<GRU> {
        let o = StackOptions {
            num_layers: cfg.num_layers,
            bias: cfg.bias,
            batch_first: cfg.batch_first,
            dropout: cfg.dropout,
            bidirectional: cfg.bidirectional,
            proj_size: 0,
        };
        Ok(GRU { core: Stack::new("GRU", Kind::Gru, input_size, hidden_size, o)? })
    }

    /// Runs from `h0` (`[num_layers * D, N, hidden]`, zeros when `None`); returns the
    /// output sequence and `h_n`.
    ///
    /// With `lengths` (one per batch element, each in `[1, T]`), a sequence's steps
    /// past its length leave its state unchanged and output zeros, as PyTorch's
    /// `pack_padded_sequence` / `pad_packed_sequence(.., total_length=T)` do;
    /// `h_n` is each sequence's state at its last step.
    pub fn forward_with(&self, input: &Var, h0: Option<&Var>, lengths: Option<&[usize]>) -> Result<(Var, Var)> {
        let (out, s) = self.core.run(input, h0, None, lengths)?;
        Ok((out, s.h))
    }
}

stack_accessors!(GRU);

impl Forward for GRU {
    /// The output sequence from a zero state.
    fn forward(&self, x: &Var) -> Result<Var> {
        Ok(self.forward_with(x, None, None)?.0)
    }
}
