//! Every case in tests/fixtures/rnn.json (computed with PyTorch by
//! tools/fixtures/make_rnn_fixtures.py) rebuilt here in F64 and loaded strictly from
//! PyTorch's state_dict: outputs, final states, input and initial-state gradients and
//! every parameter gradient must match to ~1e-10 relative.

use std::cell::Cell;

use autograd::Var;
use nn::*;
use serde_json::Value;
use tensor_core::{DType, Tensor};

const RTOL: f64 = 1e-10;
const ATOL: f64 = 1e-12;

fn load() -> (String, Vec<Value>) {
    let path = format!("{}/tests/fixtures/rnn.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {path}: {e}"));
    (v["torch_version"].as_str().expect("torch_version").to_string(), v["cases"].as_array().expect("cases").clone())
}

fn arr(v: &Value) -> Tensor {
    let shape: Vec<usize> =
        v["shape"].as_array().expect("shape").iter().map(|d| d.as_u64().unwrap() as usize).collect();
    let data: Vec<f64> = v["data"].as_array().expect("data").iter().map(|x| x.as_f64().unwrap()).collect();
    Tensor::from_vec(data, shape).unwrap()
}

fn us(v: &Value) -> usize {
    v.as_u64().unwrap_or_else(|| panic!("expected an integer, got {v}")) as usize
}

thread_local! {
    /// Largest relative difference seen (|a - b| / max(|b|, 1e-3)), for the report.
    static WORST: Cell<f64> = const { Cell::new(0.0) };
}

fn close(what: &str, got: &Tensor, want: &Tensor) {
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    let g = got.to_dtype(DType::F64).unwrap().to_vec_f64().unwrap();
    let w = want.to_vec_f64().unwrap();
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        let ok = (a - b).abs() <= ATOL + RTOL * b.abs();
        assert!(ok, "{what}: element {i}: got {a}, PyTorch {b} (diff {:e})", (a - b).abs());
        WORST.with(|c| c.set(c.get().max((a - b).abs() / b.abs().max(1e-3))));
    }
}

/// The layer a case describes.
enum Layer {
    Rnn(RNN),
    Lstm(LSTM),
    Gru(GRU),
    RnnCell(RNNCell),
    LstmCell(LSTMCell),
    GruCell(GRUCell),
}

impl Layer {
    fn build(case: &Value) -> Layer {
        let c = &case["cfg"];
        let (i, h) = (us(&c["input_size"]), us(&c["hidden_size"]));
        let bias = c["bias"].as_bool().unwrap();
        let nl = match c["nonlinearity"].as_str().unwrap() {
            "tanh" => Nonlinearity::Tanh,
            "relu" => Nonlinearity::ReLU,
            other => panic!("nonlinearity {other}"),
        };
        let (num_layers, batch_first, bidirectional) =
            (us(&c["num_layers"]), c["batch_first"].as_bool().unwrap(), c["bidirectional"].as_bool().unwrap());
        match case["kind"].as_str().unwrap() {
            "rnn" => Layer::Rnn(
                RNN::new(
                    i,
                    h,
                    RnnConfig { num_layers, nonlinearity: nl, bias, batch_first, dropout: 0.0, bidirectional },
                )
                .unwrap(),
            ),
            "lstm" => Layer::Lstm(
                LSTM::new(
                    i,
                    h,
                    LstmConfig {
                        num_layers,
                        bias,
                        batch_first,
                        dropout: 0.0,
                        bidirectional,
                        proj_size: us(&c["proj_size"]),
                    },
                )
                .unwrap(),
            ),
            "gru" => Layer::Gru(
                GRU::new(i, h, GruConfig { num_layers, bias, batch_first, dropout: 0.0, bidirectional }).unwrap(),
            ),
            "rnn_cell" => Layer::RnnCell(RNNCell::new(i, h, bias, nl).unwrap()),
            "lstm_cell" => Layer::LstmCell(LSTMCell::new(i, h, bias).unwrap()),
            "gru_cell" => Layer::GruCell(GRUCell::new(i, h, bias).unwrap()),
            other => panic!("rnn fixture kind {other:?} has no Rust path"),
        }
    }

    fn module(&self) -> &dyn Module {
        match self {
            Layer::Rnn(m) => m,
            Layer::Lstm(m) => m,
            Layer::Gru(m) => m,
            Layer::RnnCell(m) => m,
            Layer::LstmCell(m) => m,
            Layer::GruCell(m) => m,
        }
    }

    /// `(output sequence, h, c)`; cells have no output sequence, only LSTMs have `c`.
    fn run(
        &self,
        x: &Var,
        h0: Option<&Var>,
        c0: Option<&Var>,
        lengths: Option<&[usize]>,
    ) -> tensor_core::Result<(Option<Var>, Var, Option<Var>)> {
        let state = match (h0, c0) {
            (Some(h), Some(c)) => Some(LstmState { h: h.clone(), c: c.clone() }),
            _ => None,
        };
        Ok(match self {
            Layer::Rnn(m) => {
                let (o, h) = m.forward_with(x, h0, lengths)?;
                (Some(o), h, None)
            }
            Layer::Gru(m) => {
                let (o, h) = m.forward_with(x, h0, lengths)?;
                (Some(o), h, None)
            }
            Layer::Lstm(m) => {
                let (o, s) = m.forward_with(x, state.as_ref(), lengths)?;
                (Some(o), s.h, Some(s.c))
            }
            Layer::RnnCell(m) => (None, m.forward_with(x, h0)?, None),
            Layer::GruCell(m) => (None, m.forward_with(x, h0)?, None),
            Layer::LstmCell(m) => {
                let s = m.forward_with(x, state.as_ref())?;
                (None, s.h, Some(s.c))
            }
        })
    }
}

fn check_case(case: &Value) {
    let name = case["name"].as_str().unwrap();
    let layer = Layer::build(case);
    let m = layer.module();
    m.to_dtype(DType::F64).unwrap();
    let mut sd = StateDict::new();
    for (k, v) in case["params"].as_object().unwrap() {
        sd.insert(k.clone(), arr(v));
    }
    m.load_state_dict(&sd, true).unwrap_or_else(|e| panic!("{name}: load_state_dict: {e}"));
    // serde_json's maps are sorted, so PyTorch's order comes as its own list.
    let names: Vec<String> = m.named_parameters().into_iter().map(|(n, _)| n).collect();
    let torch_names: Vec<&str> = case["param_order"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(names, torch_names, "{name}: parameter names and order");

    let x = Var::param(arr(&case["input"])).unwrap();
    let h0 = case.get("h0").map(|v| Var::param(arr(v)).unwrap());
    let c0 = case.get("c0").map(|v| Var::param(arr(v)).unwrap());
    let lengths: Option<Vec<usize>> = case.get("lengths").map(|l| l.as_array().unwrap().iter().map(us).collect());
    let (out, h, c) =
        layer.run(&x, h0.as_ref(), c0.as_ref(), lengths.as_deref()).unwrap_or_else(|e| panic!("{name}: forward: {e}"));

    let mut loss = h.mul(&Var::from(arr(&case["upstream_h"]))).unwrap().sum_all().unwrap();
    close(&format!("{name} h_n"), h.tensor(), &arr(&case["h_n"]));
    match (&out, case.get("output")) {
        (Some(o), Some(want)) => {
            close(&format!("{name} output"), o.tensor(), &arr(want));
            let t = o.mul(&Var::from(arr(&case["upstream_output"]))).unwrap().sum_all().unwrap();
            loss = loss.add(&t).unwrap();
        }
        (None, None) => {}
        _ => panic!("{name}: output sequence present on one side only"),
    }
    match (&c, case.get("c_n")) {
        (Some(c), Some(want)) => {
            close(&format!("{name} c_n"), c.tensor(), &arr(want));
            let t = c.mul(&Var::from(arr(&case["upstream_c"]))).unwrap().sum_all().unwrap();
            loss = loss.add(&t).unwrap();
        }
        (None, None) => {}
        _ => panic!("{name}: cell state present on one side only"),
    }
    loss.backward().unwrap_or_else(|e| panic!("{name}: backward: {e}"));

    close(&format!("{name} input grad"), &x.grad().expect("input grad"), &arr(&case["input_grad"]));
    if let Some(h0) = &h0 {
        close(&format!("{name} h0 grad"), &h0.grad().expect("h0 grad"), &arr(&case["h0_grad"]));
    }
    if let Some(c0) = &c0 {
        close(&format!("{name} c0 grad"), &c0.grad().expect("c0 grad"), &arr(&case["c0_grad"]));
    }
    let want = case["param_grads"].as_object().unwrap();
    let params = m.named_parameters();
    assert_eq!(params.len(), want.len(), "{name}: parameter count");
    for (k, p) in &params {
        let w = want.get(k).unwrap_or_else(|| panic!("{name}: PyTorch has no grad for {k}"));
        close(&format!("{name} grad of {k}"), &p.grad().unwrap_or_else(|| panic!("{name}: no grad for {k}")), &arr(w));
    }
}

#[test]
fn rnn_layers_match_pytorch() {
    let (torch, cases) = load();
    assert!(cases.len() >= 19, "expected every fixture case, got {}", cases.len());
    for case in &cases {
        check_case(case);
    }
    let worst = WORST.with(Cell::get);
    println!("{} rnn fixture cases (PyTorch {torch}) match; largest relative difference {worst:e}", cases.len());
}

/// The `Forward` impls run from a zero state and return the output sequence (cells:
/// `h`), the same values `forward_with` gives.
#[test]
fn forward_is_forward_with_zero_state() {
    let (_, cases) = load();
    for case in cases.iter().filter(|c| c.get("h0").is_none() && c.get("lengths").is_none()) {
        let name = case["name"].as_str().unwrap();
        let layer = Layer::build(case);
        layer.module().to_dtype(DType::F64).unwrap();
        let x = Var::from(arr(&case["input"]));
        let (out, h, _) = layer.run(&x, None, None, None).unwrap();
        let via_forward = match &layer {
            Layer::Rnn(m) => m.forward(&x),
            Layer::Lstm(m) => m.forward(&x),
            Layer::Gru(m) => m.forward(&x),
            Layer::RnnCell(m) => m.forward(&x),
            Layer::LstmCell(m) => m.forward(&x),
            Layer::GruCell(m) => m.forward(&x),
        }
        .unwrap();
        let want = out.unwrap_or(h);
        assert_eq!(via_forward.tensor().to_vec_f64().unwrap(), want.tensor().to_vec_f64().unwrap(), "{name}");
    }
}
