//! What the PyTorch fixtures cannot show for the recurrent layers: dropout between
//! layers (random, so absent from the fixtures) acts only in training mode and never
//! after the last layer; padded steps are ignored; bad sizes, shapes and lengths are
//! errors that name the layer and the shapes, never panics.

use autograd::Var;
use nn::*;
use tensor_core::{manual_seed, DType, Device, Tensor};

fn randn(dims: &[usize]) -> Var {
    Var::from(Tensor::randn(dims.to_vec(), DType::F64, &Device::cpu()).unwrap())
}

fn vals(v: &Var) -> Vec<f64> {
    v.tensor().to_vec_f64().unwrap()
}

fn lstm(input: usize, hidden: usize, cfg: LstmConfig) -> LSTM {
    let m = LSTM::new(input, hidden, cfg).unwrap();
    m.to_dtype(DType::F64).unwrap();
    m
}

fn err_text<T: std::fmt::Debug>(r: tensor_core::Result<T>) -> String {
    r.expect_err("expected an error").to_string()
}

#[test]
fn dropout_between_layers_only_in_training() {
    manual_seed(7);
    let cfg = LstmConfig { num_layers: 2, dropout: 0.5, ..Default::default() };
    let m = lstm(3, 4, cfg);
    let plain = lstm(3, 4, LstmConfig { dropout: 0.0, ..cfg });
    plain.load_state_dict(&m.state_dict(), true).unwrap();
    let x = randn(&[6, 2, 3]);

    m.eval();
    assert!(!m.is_training());
    let a = vals(&m.forward(&x).unwrap());
    assert_eq!(a, vals(&m.forward(&x).unwrap()), "eval mode is deterministic");
    assert_eq!(a, vals(&plain.forward(&x).unwrap()), "eval mode ignores dropout");

    m.train();
    let b = vals(&m.forward(&x).unwrap());
    assert_ne!(a, b, "training mode drops between layers");
    assert_eq!(b.len(), a.len());
}

#[test]
fn dropout_one_zeroes_the_second_layers_input() {
    // With p = 1 the second layer sees zeros: the same as that layer alone on zeros.
    let m = lstm(3, 4, LstmConfig { num_layers: 2, dropout: 1.0, bidirectional: true, ..Default::default() });
    let top = lstm(8, 4, LstmConfig { bidirectional: true, ..Default::default() });
    let mut sd = StateDict::new();
    for (k, v) in m.state_dict().iter() {
        if k.contains("_l1") {
            sd.insert(k.replace("_l1", "_l0"), v.clone());
        }
    }
    top.load_state_dict(&sd, true).unwrap();
    let x = randn(&[5, 2, 3]);
    let want = top.forward(&Var::zeros([5, 2, 8], DType::F64, &Device::cpu()).unwrap()).unwrap();
    assert_eq!(vals(&m.forward(&x).unwrap()), vals(&want));
}

#[test]
fn no_dropout_after_the_last_layer() {
    manual_seed(3);
    let m = GRU::new(3, 4, GruConfig { dropout: 0.9, ..Default::default() }).unwrap();
    m.to_dtype(DType::F64).unwrap();
    let x = randn(&[4, 2, 3]);
    let train = vals(&m.forward(&x).unwrap());
    m.eval();
    assert_eq!(train, vals(&m.forward(&x).unwrap()));
}

#[test]
fn padded_steps_are_ignored() {
    let m = lstm(3, 4, LstmConfig { num_layers: 2, bidirectional: true, batch_first: true, ..Default::default() });
    let x = randn(&[3, 5, 3]);
    let lengths = [5, 2, 4];
    let (out, s) = m.forward_with(&x, None, Some(&lengths)).unwrap();
    // Garbage in the padding changes nothing.
    let mut data = vals(&x);
    for (n, &len) in lengths.iter().enumerate() {
        for t in len..5 {
            for f in 0..3 {
                data[(n * 5 + t) * 3 + f] = 1e3;
            }
        }
    }
    let x2 = Var::from(Tensor::from_vec(data, [3, 5, 3]).unwrap());
    let (out2, s2) = m.forward_with(&x2, None, Some(&lengths)).unwrap();
    assert_eq!(vals(&out), vals(&out2));
    assert_eq!(vals(&s.h), vals(&s2.h));
    assert_eq!(vals(&s.c), vals(&s2.c));
    // Padded outputs are zero; full lengths are the same as none.
    let o = vals(&out);
    assert!(o[(5 + 3) * 8..(5 + 4) * 8].iter().all(|&v| v == 0.0), "sequence 1, step 3");
    let (full, _) = m.forward_with(&x, None, Some(&[5, 5, 5])).unwrap();
    assert_eq!(vals(&full), vals(&m.forward(&x).unwrap()));
}

#[test]
fn parameter_names_and_shapes_follow_pytorch() {
    let m = LSTM::new(
        7,
        20,
        LstmConfig { num_layers: 2, bidirectional: true, proj_size: 5, bias: false, ..Default::default() },
    )
    .unwrap();
    let got: Vec<(String, Vec<usize>)> = m.named_parameters().into_iter().map(|(n, p)| (n, p.dims())).collect();
    let want: Vec<(String, Vec<usize>)> = [
        ("weight_ih_l0", vec![80, 7]),
        ("weight_hh_l0", vec![80, 5]),
        ("weight_hr_l0", vec![5, 20]),
        ("weight_ih_l0_reverse", vec![80, 7]),
        ("weight_hh_l0_reverse", vec![80, 5]),
        ("weight_hr_l0_reverse", vec![5, 20]),
        ("weight_ih_l1", vec![80, 10]),
        ("weight_hh_l1", vec![80, 5]),
        ("weight_hr_l1", vec![5, 20]),
        ("weight_ih_l1_reverse", vec![80, 10]),
        ("weight_hh_l1_reverse", vec![80, 5]),
        ("weight_hr_l1_reverse", vec![5, 20]),
    ]
    .into_iter()
    .map(|(n, d)| (n.to_string(), d))
    .collect();
    assert_eq!(got, want);
    let bound = 1.0 / 20f64.sqrt();
    for (n, p) in m.named_parameters() {
        let v = p.tensor().to_vec_f64().unwrap();
        assert!(v.iter().all(|x| x.abs() <= bound), "{n} outside U(-1/sqrt(hidden), 1/sqrt(hidden))");
    }
}

#[test]
fn bad_configs_are_errors() {
    let e = err_text(LSTM::new(3, 4, LstmConfig { proj_size: 4, ..Default::default() }));
    assert!(e.contains("LSTM") && e.contains("proj_size") && e.contains("hidden_size=4"), "{e}");
    for p in [-0.1, 1.5, f64::NAN] {
        let e = err_text(GRU::new(3, 4, GruConfig { dropout: p, ..Default::default() }));
        assert!(e.contains("GRU") && e.contains("dropout"), "{e}");
    }
    assert!(err_text(RNN::new(3, 0, RnnConfig::default())).contains("hidden_size"));
    assert!(err_text(RNN::new(3, 4, RnnConfig { num_layers: 0, ..Default::default() })).contains("num_layers"));
    // Sizes that overflow are errors before anything is allocated.
    assert!(LSTM::new(3, usize::MAX / 2, LstmConfig::default()).is_err());
    assert!(GRU::new(usize::MAX / 4, 1 << 40, GruConfig::default()).is_err());
    assert!(LSTMCell::new(3, usize::MAX / 3, true).is_err());
    let e = err_text(GRU::new(3, 4, GruConfig { num_layers: usize::MAX / 8, ..Default::default() }));
    assert!(e.contains("GRU") && e.contains("overflow"), "{e}");
}

#[test]
fn bad_inputs_are_errors_naming_the_shapes() {
    let m = lstm(3, 4, LstmConfig { num_layers: 2, ..Default::default() });
    let e = err_text(m.forward(&randn(&[5, 3])).and_then(|_| m.forward(&randn(&[2, 5, 2, 3]))));
    assert!(e.contains("LSTM") && e.contains("[2, 5, 2, 3]"), "{e}");
    let e = err_text(m.forward(&randn(&[5, 2, 7])));
    assert!(e.contains("LSTM") && e.contains("[5, 2, 7]") && e.contains("input_size=3"), "{e}");
    let e = err_text(m.forward(&randn(&[0, 2, 3])));
    assert!(e.contains("LSTM") && e.contains("[0, 2, 3]"), "{e}");

    let x = randn(&[5, 2, 3]);
    let good = LstmState { h: randn(&[2, 2, 4]), c: randn(&[2, 2, 4]) };
    assert!(m.forward_with(&x, Some(&good), None).is_ok());
    let bad_h = LstmState { h: randn(&[1, 2, 4]), ..good.clone() };
    let e = err_text(m.forward_with(&x, Some(&bad_h), None));
    assert!(e.contains("LSTM") && e.contains("[1, 2, 4]") && e.contains("[2, 2, 4]") && e.contains("h_0"), "{e}");
    let bad_c = LstmState { c: randn(&[2, 3, 4]), ..good.clone() };
    let e = err_text(m.forward_with(&x, Some(&bad_c), None));
    assert!(e.contains("c_0") && e.contains("[2, 3, 4]"), "{e}");

    for lengths in [&[5][..], &[5, 0], &[6, 5], &[1, 2, 3]] {
        let e = err_text(m.forward_with(&x, None, Some(lengths)));
        assert!(e.contains("LSTM") && e.contains("[5, 2, 3]") && e.contains("length"), "{lengths:?}: {e}");
    }

    let g = GRU::new(3, 4, GruConfig { bidirectional: true, ..Default::default() }).unwrap();
    g.to_dtype(DType::F64).unwrap();
    let e = err_text(g.forward_with(&randn(&[5, 3]), Some(&randn(&[2, 1, 4])), None));
    assert!(e.contains("GRU") && e.contains("[2, 1, 4]") && e.contains("[2, 4]"), "{e}");
}

#[test]
fn bad_cell_inputs_are_errors() {
    let c = GRUCell::new(3, 4, true).unwrap();
    c.to_dtype(DType::F64).unwrap();
    let e = err_text(c.forward(&randn(&[2, 5])));
    assert!(e.contains("GRUCell") && e.contains("[2, 5]"), "{e}");
    let e = err_text(c.forward(&randn(&[2, 2, 3])));
    assert!(e.contains("GRUCell") && e.contains("[2, 2, 3]"), "{e}");
    let e = err_text(c.forward_with(&randn(&[2, 3]), Some(&randn(&[4]))));
    assert!(e.contains("GRUCell") && e.contains("[4]") && e.contains("[2, 4]"), "{e}");
    let l = LSTMCell::new(3, 4, true).unwrap();
    l.to_dtype(DType::F64).unwrap();
    let s = LstmState { h: randn(&[2, 4]), c: randn(&[3, 4]) };
    let e = err_text(l.forward_with(&randn(&[2, 3]), Some(&s)));
    assert!(e.contains("LSTMCell") && e.contains("[3, 4]"), "{e}");
    let r = RNNCell::new(3, 4, false, Nonlinearity::ReLU).unwrap();
    assert!(r.forward(&Var::from(Tensor::ones([3], DType::F32, &Device::cpu()).unwrap())).unwrap().dims() == [4]);
}

#[test]
fn f32_layers_train() {
    // The default dtype: a loss backpropagates to every parameter.
    let m = GRU::new(3, 4, GruConfig { num_layers: 2, bidirectional: true, ..Default::default() }).unwrap();
    let x = Var::from(Tensor::randn([4, 2, 3], DType::F32, &Device::cpu()).unwrap());
    let (out, h) = m.forward_with(&x, None, Some(&[4, 3])).unwrap();
    out.sum_all().unwrap().add(&h.sum_all().unwrap()).unwrap().backward().unwrap();
    for (n, p) in m.named_parameters() {
        assert!(p.grad().is_some(), "{n}");
    }
}

#[test]
fn edge_cases_do_not_panic() {
    let m = lstm(3, 4, LstmConfig { bidirectional: true, ..Default::default() });
    // An F32 input into an F64 layer is an error from the op, not a panic.
    let x32 = Var::from(Tensor::randn([5, 2, 3], DType::F32, &Device::cpu()).unwrap());
    assert!(m.forward(&x32).is_err());
    // An empty batch gives empty outputs.
    let (out, s) = m.forward_with(&randn(&[5, 0, 3]), None, Some(&[])).unwrap();
    assert_eq!((out.dims(), s.h.dims()), (&[5, 0, 8][..], &[2, 0, 4][..]));
    // Unbatched input takes one length.
    let x = randn(&[5, 3]);
    let (a, sa) = m.forward_with(&x, None, Some(&[3])).unwrap();
    let (b, sb) = m.forward_with(&x.narrow(0, 0, 3).unwrap(), None, None).unwrap();
    assert_eq!(vals(&a)[..3 * 8], vals(&b)[..]);
    assert!(vals(&a)[3 * 8..].iter().all(|&v| v == 0.0));
    assert_eq!((vals(&sa.h), vals(&sa.c)), (vals(&sb.h), vals(&sb.c)));
}

#[test]
fn fused_lstm_refuses_create_graph_instead_of_wrong_second_derivatives() {
    let m = lstm(3, 4, LstmConfig::default());
    let x = Var::param(Tensor::randn([5, 2, 3], DType::F64, &Device::cpu()).unwrap()).unwrap();
    let out = m.forward(&x).unwrap().sum_all().unwrap();
    let Err(e) = out.backward_opts(false, true) else { panic!("create_graph through the fused LSTM must fail") };
    assert!(e.to_string().contains("create_graph"), "{e}");
    // A plain backward works and reaches every parameter.
    m.forward(&x).unwrap().sum_all().unwrap().backward().unwrap();
    assert!(m.named_parameters().iter().all(|(_, p)| p.grad().is_some()));
}
