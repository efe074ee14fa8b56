//! Every layer and loss case in tests/fixtures/{layers,losses}.json (computed with
//! PyTorch by tools/fixtures/make_nn_fixtures.py) rebuilt here in F64: outputs, input
//! gradients, parameter gradients and state after the step (BatchNorm running stats)
//! must match to ~1e-10 relative. A case name without a Rust path fails the test.

use autograd::Var;
use nn::loss::{self, CrossEntropyOptions, Reduction};
use nn::*;
use serde_json::Value;
use tensor_core::{DType, Tensor};

const RTOL: f64 = 1e-10;
const ATOL: f64 = 1e-12;

fn load(name: &str) -> Vec<Value> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {path}: {e}"));
    v["cases"].as_array().expect("cases array").clone()
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

fn pair(v: &Value) -> [usize; 2] {
    let a = v.as_array().unwrap_or_else(|| panic!("expected a pair, got {v}"));
    [us(&a[0]), us(&a[1])]
}

fn close(what: &str, got: &Tensor, want: &Tensor) {
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    let g = got.to_dtype(DType::F64).unwrap().to_vec_f64().unwrap();
    let w = want.to_vec_f64().unwrap();
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        let ok = (a - b).abs() <= ATOL + RTOL * b.abs() || (a.is_nan() && b.is_nan());
        assert!(ok, "{what}: element {i}: got {a}, PyTorch {b} (diff {:e})", (a - b).abs());
    }
}

/// Runs `y = f(x)`, backward of `sum(y * upstream)`, and checks everything recorded.
fn check_layer(case: &Value, m: &dyn Forward) {
    let name = case["name"].as_str().unwrap();
    m.to_dtype(DType::F64).unwrap();
    let mut sd = StateDict::new();
    for (k, v) in case["params"].as_object().unwrap() {
        sd.insert(k.clone(), arr(v));
    }
    m.load_state_dict(&sd, true).unwrap_or_else(|e| panic!("{name}: load_state_dict: {e}"));
    m.set_training(case["train"].as_bool().unwrap());
    let x = Var::param(arr(&case["input"])).unwrap();
    let y = m.forward(&x).unwrap_or_else(|e| panic!("{name}: forward: {e}"));
    close(&format!("{name} output"), y.tensor(), &arr(&case["output"]));
    let g = Var::from(arr(&case["upstream"]));
    y.mul(&g).unwrap().sum(&[], false).unwrap().backward().unwrap_or_else(|e| panic!("{name}: backward: {e}"));
    if let Some(ig) = case.get("input_grad") {
        close(&format!("{name} input grad"), &x.grad().expect("input grad"), &arr(ig));
    }
    check_params(name, case, m);
}

fn check_params(name: &str, case: &Value, m: &dyn Module) {
    let params = m.named_parameters();
    let want = case["param_grads"].as_object().unwrap();
    assert_eq!(params.len(), want.len(), "{name}: parameter count");
    for (k, p) in &params {
        let w = want.get(k).unwrap_or_else(|| panic!("{name}: PyTorch has no grad for {k}"));
        close(&format!("{name} grad of {k}"), &p.grad().unwrap_or_else(|| panic!("{name}: no grad for {k}")), &arr(w));
    }
    let sd = m.state_dict();
    let after = case["state_after"].as_object().unwrap();
    assert_eq!(sd.len(), after.len(), "{name}: state dict keys {:?}", sd.keys());
    for (k, v) in after {
        close(&format!("{name} state {k}"), sd.get(k).unwrap_or_else(|| panic!("{name}: no state {k}")), &arr(v));
    }
}

fn conv2d_cfg(cfg: &Value) -> Conv2dConfig {
    Conv2dConfig {
        stride: pair(&cfg["stride"]),
        padding: pair(&cfg["pad"]),
        output_padding: cfg.get("out_pad").map(pair).unwrap_or([0, 0]),
        dilation: pair(&cfg["dil"]),
        groups: us(&cfg["groups"]),
        bias: true,
    }
}

fn bn_cfg(cfg: &Value) -> BatchNormConfig {
    BatchNormConfig {
        momentum: Some(cfg["momentum"].as_f64().unwrap()),
        eps: cfg["eps"].as_f64().unwrap(),
        ..Default::default()
    }
}

/// The layer a fixture case describes; `None` for cases with their own path.
fn build(case: &Value) -> Option<Box<dyn Forward>> {
    let name = case["name"].as_str().unwrap();
    let cfg = &case["cfg"];
    Some(match name {
        "linear" | "linear_nobias" => {
            Box::new(Linear::new(us(&cfg["in"]), us(&cfg["out"]), cfg["bias"].as_bool().unwrap()).unwrap())
        }
        "conv1d" => Box::new(
            Conv1d::new(
                us(&cfg["cin"]),
                us(&cfg["cout"]),
                us(&cfg["k"]),
                Conv1dConfig {
                    stride: us(&cfg["stride"]),
                    padding: us(&cfg["pad"]),
                    dilation: us(&cfg["dil"]),
                    groups: us(&cfg["groups"]),
                    bias: true,
                },
            )
            .unwrap(),
        ),
        "conv2d" => Box::new(Conv2d::new(us(&cfg["cin"]), us(&cfg["cout"]), pair(&cfg["k"]), conv2d_cfg(cfg)).unwrap()),
        "conv_transpose2d" => {
            Box::new(ConvTranspose2d::new(us(&cfg["cin"]), us(&cfg["cout"]), pair(&cfg["k"]), conv2d_cfg(cfg)).unwrap())
        }
        "maxpool2d" => Box::new(MaxPool2d {
            stride: pair(&cfg["stride"]),
            padding: pair(&cfg["pad"]),
            ceil_mode: cfg["ceil"].as_bool().unwrap(),
            ..MaxPool2d::new(pair(&cfg["k"]))
        }),
        "avgpool2d" => Box::new(AvgPool2d {
            stride: pair(&cfg["stride"]),
            padding: pair(&cfg["pad"]),
            ceil_mode: cfg["ceil"].as_bool().unwrap(),
            ..AvgPool2d::new(pair(&cfg["k"]))
        }),
        "adaptive_avgpool2d" => Box::new(AdaptiveAvgPool2d::new(pair(&cfg["out"]))),
        "batchnorm1d" => Box::new(BatchNorm1d::with_config(us(&cfg["c"]), bn_cfg(cfg)).unwrap()),
        "batchnorm2d" => Box::new(BatchNorm2d::with_config(us(&cfg["c"]), bn_cfg(cfg)).unwrap()),
        "layernorm" => {
            let shape: Vec<usize> = cfg["shape"].as_array().unwrap().iter().map(us).collect();
            Box::new(LayerNorm::with_options(&shape, cfg["eps"].as_f64().unwrap(), true).unwrap())
        }
        "groupnorm" => Box::new(
            GroupNorm::with_options(us(&cfg["groups"]), us(&cfg["c"]), cfg["eps"].as_f64().unwrap(), true).unwrap(),
        ),
        "relu" => Box::new(ReLU),
        "leaky_relu" => Box::new(LeakyReLU::new(0.1)),
        "elu" => Box::new(ELU::new(0.7)),
        "gelu" => Box::new(GELU::new()),
        "gelu_tanh" => Box::new(GELU::tanh()),
        "silu" => Box::new(SiLU),
        "tanh" => Box::new(Tanh),
        "sigmoid" => Box::new(Sigmoid),
        "softmax" => Box::new(Softmax::new(1)),
        "log_softmax" => Box::new(LogSoftmax::new(1)),
        "flatten" => Box::new(Flatten::new()),
        "identity" => Box::new(Identity),
        "bilinear" | "embedding" => return None,
        other => panic!("layer fixture case {other:?} has no Rust test path"),
    })
}

fn check_bilinear(case: &Value) {
    let cfg = &case["cfg"];
    let m = Bilinear::new(us(&cfg["in1"]), us(&cfg["in2"]), us(&cfg["out"]), true).unwrap();
    m.to_dtype(DType::F64).unwrap();
    let mut sd = StateDict::new();
    for (k, v) in case["params"].as_object().unwrap() {
        sd.insert(k.clone(), arr(v));
    }
    m.load_state_dict(&sd, true).unwrap();
    let a = Var::param(arr(&case["input"])).unwrap();
    let b = Var::param(arr(&case["input2"])).unwrap();
    let y = m.forward2(&a, &b).unwrap();
    close("bilinear output", y.tensor(), &arr(&case["output"]));
    y.mul(&Var::from(arr(&case["upstream"]))).unwrap().sum(&[], false).unwrap().backward().unwrap();
    close("bilinear input grad", &a.grad().unwrap(), &arr(&case["input_grad"]));
    close("bilinear input2 grad", &b.grad().unwrap(), &arr(&case["input2_grad"]));
    check_params("bilinear", case, &m);
}

fn check_embedding(case: &Value) {
    let cfg = &case["cfg"];
    let m = Embedding::new(us(&cfg["num"]), us(&cfg["dim"]), Some(us(&cfg["padding_idx"]))).unwrap();
    m.to_dtype(DType::F64).unwrap();
    let mut sd = StateDict::new();
    sd.insert("weight", arr(&case["params"]["weight"]));
    m.load_state_dict(&sd, true).unwrap();
    let idx: Vec<i64> = case["indices"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
    let shape: Vec<usize> = case["indices_shape"].as_array().unwrap().iter().map(us).collect();
    let x = Var::from(Tensor::from_vec(idx, shape).unwrap());
    let y = m.forward(&x).unwrap();
    close("embedding output", y.tensor(), &arr(&case["output"]));
    y.mul(&Var::from(arr(&case["upstream"]))).unwrap().sum(&[], false).unwrap().backward().unwrap();
    check_params("embedding", case, &m);
}

#[test]
fn layers_match_pytorch() {
    let cases = load("layers.json");
    assert!(cases.len() >= 30);
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let name = case["name"].as_str().unwrap().to_string();
        let r = std::panic::catch_unwind(|| match build(case) {
            Some(m) => check_layer(case, &*m),
            None if name == "bilinear" => check_bilinear(case),
            None => check_embedding(case),
        });
        if let Err(e) = r {
            let msg = e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()));
            failures.push(format!("case {i} ({name}): {}", msg.unwrap_or_default()));
        }
    }
    assert!(failures.is_empty(), "{} failing layer cases:\n{}", failures.len(), failures.join("\n"));
}

fn reduction(s: &str) -> Reduction {
    match s {
        "mean" => Reduction::Mean,
        "sum" => Reduction::Sum,
        "none" => Reduction::None,
        "batchmean" => Reduction::BatchMean,
        other => panic!("unknown reduction {other}"),
    }
}

fn ce_opts(case: &Value, r: Reduction) -> CrossEntropyOptions {
    let o = &case["opts"];
    CrossEntropyOptions {
        weight: o.get("weight").map(arr),
        ignore_index: o.get("ignore_index").and_then(Value::as_i64).unwrap_or(-100),
        label_smoothing: o.get("label_smoothing").and_then(Value::as_f64).unwrap_or(0.0),
        reduction: r,
    }
}

fn check_loss(case: &Value) {
    let name = case["name"].as_str().unwrap();
    let r = reduction(case["reduction"].as_str().unwrap());
    let x = Var::param(arr(&case["input"])).unwrap();
    let target = || Var::from(arr(&case["target"]));
    let idx = || {
        let t: Vec<i64> = case["target_idx"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
        Tensor::new(&t)
    };
    let opt_arr = |k: &str| case.get("opts").and_then(|o| o.get(k)).map(arr);
    let y = match name {
        "mse" => loss::mse_loss(&x, &target(), &loss::MseLossOptions { reduction: r }),
        "l1" => loss::l1_loss(&x, &target(), &loss::L1LossOptions { reduction: r }),
        "smooth_l1" => loss::smooth_l1_loss(&x, &target(), &loss::SmoothL1LossOptions { beta: 0.5, reduction: r }),
        "huber" => loss::huber_loss(&x, &target(), &loss::HuberLossOptions { delta: 0.7, reduction: r }),
        "cross_entropy" => loss::cross_entropy(&x, &idx(), &ce_opts(case, r)),
        "cross_entropy_probs" => loss::cross_entropy(&x, &arr(&case["target"]), &ce_opts(case, r)),
        "nll" => {
            let o = ce_opts(case, r);
            let o = loss::NllLossOptions { weight: o.weight, ignore_index: o.ignore_index, reduction: r };
            loss::nll_loss(&x, &idx(), &o)
        }
        "bce" => loss::binary_cross_entropy(&x, &target(), &loss::BceOptions { weight: None, reduction: r }),
        "bce_with_logits" => {
            let o =
                loss::BceWithLogitsOptions { pos_weight: opt_arr("pos_weight"), reduction: r, ..Default::default() };
            loss::binary_cross_entropy_with_logits(&x, &target(), &o)
        }
        "kl_div" => {
            let log_target = case["opts"]["log_target"].as_bool().unwrap();
            loss::kl_div(&x, &target(), &loss::KlDivOptions { reduction: r, log_target })
        }
        other => panic!("loss fixture case {other:?} has no Rust test path"),
    }
    .unwrap_or_else(|e| panic!("{name}: {e}"));
    let what = format!("{name} ({}, opts {})", case["reduction"], case.get("opts").unwrap_or(&Value::Null));
    close(&format!("{what} output"), y.tensor(), &arr(&case["output"]));
    y.mul(&Var::from(arr(&case["upstream"]))).unwrap().sum(&[], false).unwrap().backward().unwrap();
    close(&format!("{what} input grad"), &x.grad().unwrap(), &arr(&case["input_grad"]));
}

#[test]
fn losses_match_pytorch() {
    let cases = load("losses.json");
    // 18 cases per reduction (mean, sum, none) in tools/fixtures/make_nn_fixtures.py.
    assert_eq!(cases.len(), 54);
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        if let Err(e) = std::panic::catch_unwind(|| check_loss(case)) {
            let msg = e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()));
            failures.push(format!("case {i}: {}", msg.unwrap_or_default()));
        }
    }
    assert!(failures.is_empty(), "{} failing loss cases:\n{}", failures.len(), failures.join("\n"));
}
