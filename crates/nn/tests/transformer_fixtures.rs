//! MultiheadAttention and the transformer layers against PyTorch: every case in
//! tests/fixtures/transformer.json (made by tools/fixtures/make_transformer_fixtures.py)
//! is rebuilt here in F64, loads PyTorch's state dict strictly (so the parameter names
//! and shapes are PyTorch's), and must match the outputs, input gradients and parameter
//! gradients to ~1e-10 relative.

use std::collections::BTreeMap;

use autograd::Var;
use nn::*;
use serde_json::Value;
use tensor_core::{DType, Device, Tensor};

const RTOL: f64 = 1e-9;
const ATOL: f64 = 1e-11;

fn cases() -> Vec<Value> {
    let path = format!("{}/tests/fixtures/transformer.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {path}: {e}"));
    v["cases"].as_array().expect("cases array").clone()
}

/// A fixture array: F64 (null = -inf), or Bool when marked so.
fn arr(v: &Value) -> Tensor {
    let shape: Vec<usize> =
        v["shape"].as_array().expect("shape").iter().map(|d| d.as_u64().unwrap() as usize).collect();
    let data = v["data"].as_array().expect("data");
    if v.get("bool").is_some() {
        let b: Vec<bool> = data.iter().map(|x| x.as_bool().unwrap()).collect();
        return Tensor::from_vec(b, shape).unwrap();
    }
    let d: Vec<f64> = data.iter().map(|x| x.as_f64().unwrap_or(f64::NEG_INFINITY)).collect();
    Tensor::from_vec(d, shape).unwrap()
}

fn map(v: &Value) -> BTreeMap<String, Tensor> {
    v.as_object().unwrap().iter().map(|(k, v)| (k.clone(), arr(v))).collect()
}

fn close(what: &str, got: &Tensor, want: &Tensor) {
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    let g = got.to_dtype(DType::F64).unwrap().to_vec_f64().unwrap();
    let w = want.to_vec_f64().unwrap();
    let mut worst = 0.0f64;
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        let err = (a - b).abs();
        assert!(err <= ATOL + RTOL * b.abs(), "{what}: element {i}: got {a}, PyTorch {b} (diff {err:e})");
        worst = worst.max(err);
    }
}

fn cfg_of(c: &Value) -> TransformerConfig {
    let d = TransformerConfig::default();
    TransformerConfig {
        dim_feedforward: c.get("dim_feedforward").map_or(d.dim_feedforward, |v| v.as_u64().unwrap() as usize),
        dropout: c.get("dropout").map_or(d.dropout, |v| v.as_f64().unwrap()),
        activation: match c.get("activation").and_then(Value::as_str) {
            Some("gelu") => Activation::GELU,
            _ => Activation::ReLU,
        },
        batch_first: c.get("batch_first").and_then(Value::as_bool).unwrap_or(false),
        norm_first: c.get("norm_first").and_then(Value::as_bool).unwrap_or(false),
        bias: c.get("bias").and_then(Value::as_bool).unwrap_or(true),
        ..d
    }
}

fn us(c: &Value, k: &str) -> usize {
    c[k].as_u64().unwrap_or_else(|| panic!("ctor.{k}")) as usize
}

/// Loads the case's parameters into `m` strictly and in F64.
fn load(name: &str, case: &Value, m: &dyn Module) {
    m.to_dtype(DType::F64).unwrap();
    let mut sd = StateDict::new();
    for (k, v) in map(&case["params"]) {
        sd.insert(k, v);
    }
    m.load_state_dict(&sd, true).unwrap_or_else(|e| panic!("{name}: load_state_dict: {e}"));
}

/// Compares the outputs, then backpropagates `sum(out * upstream)` and compares grads.
fn check(name: &str, case: &Value, m: &dyn Module, inputs: &BTreeMap<String, Var>, outs: &BTreeMap<String, Var>) {
    let want = map(&case["outputs"]);
    assert_eq!(outs.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>(), "{name}: outputs");
    let ups = map(&case["upstream"]);
    let mut loss: Option<Var> = None;
    for (k, y) in outs {
        close(&format!("{name} {k}"), y.tensor(), &want[k]);
        let term = y.mul(&Var::from(ups[k].clone())).unwrap().sum_all().unwrap();
        loss = Some(match loss {
            Some(l) => l.add(&term).unwrap(),
            None => term,
        });
    }
    loss.unwrap().backward().unwrap_or_else(|e| panic!("{name}: backward: {e}"));
    for (k, g) in map(&case["input_grads"]) {
        close(&format!("{name} grad of input {k}"), &inputs[&k].grad().expect("input grad"), &g);
    }
    let want = map(&case["param_grads"]);
    let params = m.named_parameters();
    assert_eq!(params.len(), want.len(), "{name}: parameter count");
    for (k, p) in params {
        let g = p.grad().unwrap_or_else(|| panic!("{name}: no grad for {k}"));
        close(&format!("{name} grad of {k}"), &g, &want[&k]);
    }
}

fn run_case(case: &Value) {
    let name = case["name"].as_str().unwrap();
    let c = &case["ctor"];
    let inputs: BTreeMap<String, Var> =
        map(&case["inputs"]).into_iter().map(|(k, t)| (k, Var::param(t).unwrap())).collect();
    let masks = map(&case["masks"]);
    let mask = |k: &str| masks.get(k);
    let kw = &case["kwargs"];
    let flag = |k: &str, d: bool| kw.get(k).and_then(Value::as_bool).unwrap_or(d);
    let mut outs = BTreeMap::new();
    match case["kind"].as_str().unwrap() {
        "mha" => {
            let cfg = MhaConfig {
                bias: c.get("bias").and_then(Value::as_bool).unwrap_or(true),
                add_bias_kv: c.get("add_bias_kv").and_then(Value::as_bool).unwrap_or(false),
                add_zero_attn: c.get("add_zero_attn").and_then(Value::as_bool).unwrap_or(false),
                kdim: c.get("kdim").map(|v| v.as_u64().unwrap() as usize),
                vdim: c.get("vdim").map(|v| v.as_u64().unwrap() as usize),
                batch_first: c.get("batch_first").and_then(Value::as_bool).unwrap_or(false),
                ..Default::default()
            };
            let m = MultiheadAttention::new(us(c, "embed_dim"), us(c, "num_heads"), cfg).unwrap();
            load(name, case, &m);
            let (q, k, v) = match inputs.get("x") {
                Some(x) => (x, x, x),
                None => (&inputs["query"], &inputs["key"], &inputs["value"]),
            };
            let opts = MhaOptions {
                key_padding_mask: mask("key_padding_mask"),
                attn_mask: mask("attn_mask"),
                need_weights: flag("need_weights", true),
                average_attn_weights: flag("average_attn_weights", true),
                is_causal: flag("is_causal", false),
            };
            let (y, w) = m.forward_with(q, k, v, &opts).unwrap_or_else(|e| panic!("{name}: {e}"));
            outs.insert("out".to_string(), y);
            if let Some(w) = w {
                outs.insert("weights".to_string(), w);
            }
            check(name, case, &m, &inputs, &outs);
        }
        "encoder_layer" => {
            let m = TransformerEncoderLayer::new(us(c, "d_model"), us(c, "nhead"), cfg_of(c)).unwrap();
            load(name, case, &m);
            let masks = EncoderMasks {
                src_mask: mask("src_mask"),
                src_key_padding_mask: mask("src_key_padding_mask"),
                is_causal: false,
            };
            outs.insert("out".into(), m.forward_with(&inputs["src"], &masks).unwrap_or_else(|e| panic!("{name}: {e}")));
            check(name, case, &m, &inputs, &outs);
        }
        "encoder" => {
            let layer = TransformerEncoderLayer::new(us(c, "d_model"), us(c, "nhead"), cfg_of(c)).unwrap();
            let norm = LayerNorm::new(&[us(c, "d_model")]).unwrap();
            let m = TransformerEncoder::new(&layer, us(c, "num_layers"), Some(norm)).unwrap();
            load(name, case, &m);
            let masks = EncoderMasks { src_key_padding_mask: mask("src_key_padding_mask"), ..Default::default() };
            outs.insert("out".into(), m.forward_with(&inputs["src"], &masks).unwrap_or_else(|e| panic!("{name}: {e}")));
            check(name, case, &m, &inputs, &outs);
        }
        "decoder_layer" => {
            let m = TransformerDecoderLayer::new(us(c, "d_model"), us(c, "nhead"), cfg_of(c)).unwrap();
            load(name, case, &m);
            let masks = DecoderMasks {
                tgt_mask: mask("tgt_mask"),
                memory_mask: mask("memory_mask"),
                tgt_key_padding_mask: mask("tgt_key_padding_mask"),
                memory_key_padding_mask: mask("memory_key_padding_mask"),
                ..Default::default()
            };
            let y = m.forward_with(&inputs["tgt"], &inputs["memory"], &masks).unwrap_or_else(|e| panic!("{name}: {e}"));
            outs.insert("out".into(), y);
            check(name, case, &m, &inputs, &outs);
        }
        "transformer" => {
            let m = Transformer::new(
                us(c, "d_model"),
                us(c, "nhead"),
                us(c, "num_encoder_layers"),
                us(c, "num_decoder_layers"),
                cfg_of(c),
            )
            .unwrap();
            load(name, case, &m);
            let masks = TransformerMasks {
                tgt_mask: mask("tgt_mask"),
                src_key_padding_mask: mask("src_key_padding_mask"),
                memory_key_padding_mask: mask("memory_key_padding_mask"),
                ..Default::default()
            };
            let y = m.forward_with(&inputs["src"], &inputs["tgt"], &masks).unwrap_or_else(|e| panic!("{name}: {e}"));
            outs.insert("out".into(), y);
            check(name, case, &m, &inputs, &outs);
        }
        k => panic!("{name}: no Rust path for kind {k}"),
    }
}

#[test]
fn every_case_matches_pytorch() {
    let cases = cases();
    assert!(cases.len() >= 12, "{} cases", cases.len());
    for case in &cases {
        run_case(case);
    }
}

/// `is_causal` alone (no mask; PyTorch needs the mask too) gives the same as the
/// fixture's explicit causal mask, through both the weights path and the fused path.
#[test]
fn is_causal_alone_matches_the_causal_mask() {
    let case = cases().into_iter().find(|c| c["name"] == "mha_causal").unwrap();
    let want = arr(&case["outputs"]["out"]);
    let m = MultiheadAttention::new(8, 2, MhaConfig { batch_first: true, ..Default::default() }).unwrap();
    load("mha_causal", &case, &m);
    let x = Var::from(arr(&case["inputs"]["x"]));
    for need_weights in [false, true] {
        let opts = MhaOptions { is_causal: true, need_weights, ..Default::default() };
        let (y, _) = m.forward_with(&x, &x, &x, &opts).unwrap();
        close(&format!("is_causal alone (need_weights {need_weights})"), y.tensor(), &want);
    }
    // The Forward (self-attention, no mask) differs from the causal result.
    let plain = m.forward(&x).unwrap().tensor().to_vec_f64().unwrap();
    assert!(plain.iter().zip(want.to_vec_f64().unwrap()).any(|(a, b)| (a - b).abs() > 1e-3));
}

/// A query whose keys are all masked gives zeros (output and weights) and finite grads.
#[test]
fn fully_masked_rows_give_zeros() {
    tensor_core::manual_seed(7);
    let m = MultiheadAttention::new(4, 2, MhaConfig { batch_first: true, bias: false, ..Default::default() }).unwrap();
    m.to_dtype(DType::F64).unwrap();
    let x = Var::param(Tensor::randn([1, 3, 4], DType::F64, &Device::cpu()).unwrap()).unwrap();
    // Query 1 may attend to nothing.
    let mask = Tensor::from_vec(vec![false, false, false, true, true, true, false, true, false], [3, 3]).unwrap();
    for need_weights in [true, false] {
        let opts = MhaOptions { attn_mask: Some(&mask), need_weights, ..Default::default() };
        let (y, w) = m.forward_with(&x, &x, &x, &opts).unwrap();
        // Row 1 of the attention output is zero, so the output there is out_proj's bias (none): 0.
        let yv = y.tensor().to_vec_f64().unwrap();
        assert!(yv[4..8].iter().all(|&v| v == 0.0), "{yv:?}");
        assert!(yv[..4].iter().chain(&yv[8..]).all(|v| v.is_finite() && *v != 0.0));
        if let Some(w) = w {
            let wv = w.tensor().to_vec_f64().unwrap();
            assert_eq!(&wv[3..6], &[0.0; 3]);
            assert!((wv[0..3].iter().sum::<f64>() - 1.0).abs() < 1e-12);
        }
        y.sum_all().unwrap().backward().unwrap();
        assert!(x.grad().unwrap().to_vec_f64().unwrap().iter().all(|v| v.is_finite()));
        x.zero_grad();
    }
}

#[test]
fn transformer_state_dict_names_are_pytorchs() {
    let m = Transformer::new(8, 2, 1, 1, TransformerConfig { dim_feedforward: 16, ..Default::default() }).unwrap();
    let names: Vec<String> = m.named_parameters().into_iter().map(|(n, _)| n).collect();
    for want in [
        "encoder.layers.0.self_attn.in_proj_weight",
        "encoder.layers.0.self_attn.out_proj.bias",
        "encoder.layers.0.linear2.weight",
        "encoder.layers.0.norm2.bias",
        "encoder.norm.weight",
        "decoder.layers.0.multihead_attn.in_proj_bias",
        "decoder.layers.0.norm3.weight",
        "decoder.norm.bias",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} missing from {names:?}");
    }
    assert_eq!(names.len(), 12 + 2 + 18 + 2, "{names:?}");
}

#[test]
fn bad_inputs_are_errors_naming_the_shapes() {
    assert!(MultiheadAttention::new(10, 3, MhaConfig::default()).is_err());
    assert!(MultiheadAttention::new(8, 2, MhaConfig { dropout: 1.5, ..Default::default() }).is_err());
    let m = MultiheadAttention::new(8, 2, MhaConfig::default()).unwrap();
    let x = |d: &[usize]| Var::from(Tensor::zeros(d.to_vec(), DType::F32, &Device::cpu()).unwrap());
    let err = |r: tensor_core::Result<(Var, Option<Var>)>| match r {
        Err(e) => e.to_string(),
        Ok(_) => panic!("expected an error"),
    };
    let e = err(m.forward_with(&x(&[5, 2, 7]), &x(&[5, 2, 8]), &x(&[5, 2, 8]), &MhaOptions::default()));
    assert!(e.contains("MultiheadAttention") && e.contains("[5, 2, 7]"), "{e}");
    let e = err(m.forward_with(&x(&[5, 2, 8]), &x(&[6, 3, 8]), &x(&[6, 3, 8]), &MhaOptions::default()));
    assert!(e.contains("batch"), "{e}");
    let e = err(m.forward_with(&x(&[5, 2, 8]), &x(&[6, 2, 8]), &x(&[7, 2, 8]), &MhaOptions::default()));
    assert!(e.contains("[6, 2, 8]") && e.contains("[7, 2, 8]"), "{e}");
    let bad_mask = Tensor::zeros([5, 5], DType::Bool, &Device::cpu()).unwrap();
    let opts = MhaOptions { attn_mask: Some(&bad_mask), ..Default::default() };
    let e = err(m.forward_with(&x(&[5, 2, 8]), &x(&[6, 2, 8]), &x(&[6, 2, 8]), &opts));
    assert!(e.contains("attn_mask") && e.contains("[5, 5]"), "{e}");
    let bad_kpm = Tensor::zeros([2, 5], DType::Bool, &Device::cpu()).unwrap();
    let opts = MhaOptions { key_padding_mask: Some(&bad_kpm), ..Default::default() };
    let e = err(m.forward_with(&x(&[5, 2, 8]), &x(&[6, 2, 8]), &x(&[6, 2, 8]), &opts));
    assert!(e.contains("key_padding_mask") && e.contains("[2, 6]"), "{e}");
    let int_mask = Tensor::zeros([5, 6], DType::I64, &Device::cpu()).unwrap();
    let opts = MhaOptions { attn_mask: Some(&int_mask), ..Default::default() };
    assert!(err(m.forward_with(&x(&[5, 2, 8]), &x(&[6, 2, 8]), &x(&[6, 2, 8]), &opts)).contains("boolean or floating"));
    let t = Transformer::new(8, 2, 1, 1, TransformerConfig { dim_feedforward: 8, ..Default::default() }).unwrap();
    let e = t.forward_with(&x(&[5, 2, 8]), &x(&[4, 3, 8]), &TransformerMasks::default()).err().unwrap().to_string();
    assert!(e.contains("batch number"), "{e}");
    let e = t.forward_with(&x(&[5, 2, 6]), &x(&[4, 2, 6]), &TransformerMasks::default()).err().unwrap().to_string();
    assert!(e.contains("d_model"), "{e}");
    assert!(generate_square_subsequent_mask(3, DType::I64, &Device::cpu()).is_err());
    assert!(generate_square_subsequent_mask(usize::MAX, DType::F32, &Device::cpu()).is_err());
}

/// Dropout acts in training mode only; eval is deterministic.
#[test]
fn dropout_only_in_training() {
    tensor_core::manual_seed(3);
    let cfg = TransformerConfig { dim_feedforward: 16, dropout: 0.5, ..Default::default() };
    let layer = TransformerEncoderLayer::new(8, 2, cfg).unwrap();
    let x = Var::from(Tensor::randn([4, 2, 8], DType::F32, &Device::cpu()).unwrap());
    let a = layer.forward(&x).unwrap().tensor().to_vec_f64().unwrap();
    let b = layer.forward(&x).unwrap().tensor().to_vec_f64().unwrap();
    assert_ne!(a, b);
    layer.eval();
    let a = layer.forward(&x).unwrap().tensor().to_vec_f64().unwrap();
    let b = layer.forward(&x).unwrap().tensor().to_vec_f64().unwrap();
    assert_eq!(a, b);
}
