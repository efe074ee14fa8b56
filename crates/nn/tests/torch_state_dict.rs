//! A state dict written by PyTorch (`safetensors.torch.save_file(model.state_dict())`,
//! see tools/fixtures/make_torch_state_dict.py) loads strictly into the same model
//! built here, which then gives PyTorch's outputs.

use autograd::{no_grad, Var};
use nn::{
    BatchNorm2d, Conv2d, Conv2dConfig, Flatten, Forward, LayerNorm, Linear, MaxPool2d, Module, ReLU, Sequential,
    StateDict,
};
use tensor_core::{Error, Tensor};

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn model() -> Result<Sequential, Error> {
    Ok(Sequential::new()
        .add(Conv2d::new(2, 4, [3, 3], Conv2dConfig { padding: [1, 1], ..Default::default() })?)
        .add(BatchNorm2d::new(4)?)
        .add(ReLU)
        .add(MaxPool2d::new([2, 2]))
        .add(Flatten::new())
        .add(Linear::new(36, 5, true)?)
        .add(LayerNorm::new(&[5])?))
}

#[test]
fn pytorch_state_dict_loads_and_reproduces_its_outputs() -> Result<(), Error> {
    let text = std::fs::read_to_string(fixture("torch_small_cnn.json")).expect("fixture json");
    let j: serde_json::Value = serde_json::from_str(&text).expect("valid json");
    let floats =
        |k: &str| -> Vec<f32> { j[k].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect() };
    let dims =
        |k: &str| -> Vec<usize> { j[k].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect() };

    let sd = StateDict::load(fixture("torch_small_cnn.safetensors"))?;
    let keys: Vec<String> = j["keys"].as_array().unwrap().iter().map(|k| k.as_str().unwrap().to_string()).collect();
    let mut ours = sd.keys();
    ours.sort();
    let mut theirs = keys.clone();
    theirs.sort();
    assert_eq!(ours, theirs);

    let net = model()?;
    let missing = net.load_state_dict(&sd, true)?;
    assert!(missing.is_empty());
    // The loaded values are PyTorch's (running statistics included).
    for k in ["1.running_mean", "1.running_var", "5.weight"] {
        let mine = net.state_dict().get(k).expect("key").to_vec::<f32>()?;
        assert_eq!(mine, sd.get(k).expect("key").to_vec::<f32>()?, "{k}");
    }
    net.eval();
    let x = Tensor::from_vec(floats("input"), dims("input_shape"))?;
    let y = no_grad(|| net.forward(&Var::from(x)))?;
    assert_eq!(y.dims(), dims("output_shape").as_slice());
    let want = floats("output");
    for (a, b) in y.tensor().to_vec::<f32>()?.iter().zip(&want) {
        assert!((a - b).abs() <= 1e-5 + 1e-4 * b.abs(), "{a} vs {b}");
    }
    Ok(())
}

#[test]
fn a_pytorch_state_dict_for_another_model_is_rejected_with_the_reasons() -> Result<(), Error> {
    let sd = StateDict::load(fixture("torch_small_cnn.safetensors"))?;
    // Linear sized 36 -> 6 instead of 36 -> 5, and no LayerNorm.
    let other = Sequential::new()
        .add(Conv2d::new(2, 4, [3, 3], Conv2dConfig { padding: [1, 1], ..Default::default() })?)
        .add(BatchNorm2d::new(4)?)
        .add(ReLU)
        .add(MaxPool2d::new([2, 2]))
        .add(Flatten::new())
        .add(Linear::new(36, 6, true)?);
    let before = other.state_dict().snapshot()?;
    let e = other.load_state_dict(&sd, true).unwrap_err().to_string();
    assert!(e.contains("5.weight") && e.contains("6.weight"), "{e}");
    // Nothing changed.
    for (k, t) in before.iter() {
        assert_eq!(t.to_vec_f64()?, other.state_dict().get(k).expect("key").to_vec_f64()?, "{k}");
    }
    Ok(())
}
