//! The `predict` example's code path: weights saved after a short training run load
//! into a fresh network whose test accuracy is exactly the in-memory model's.

use autograd::{no_grad, Var};
use examples::digits;
use examples::predict::{self, load_model};
use examples::train::{evaluate, run, shape_input, Arch, Config, TEST_FRACTION};
use nn::{Forward, Module};
use tensor_core::{Device, Error};

fn tmp(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("predict-test-{name}-{}.safetensors", std::process::id()))
}

#[test]
fn saved_weights_predict_like_the_trained_model() -> tensor_core::Result<()> {
    let all = digits::load(digits::default_path())?;
    let (_, test) = all.split(TEST_FRACTION, 3)?;
    for (arch, name) in [(Arch::Mlp, "mlp"), (Arch::Cnn, "cnn")] {
        // A few steps of training: one epoch on big batches.
        let cfg = Config { arch, epochs: 1, batch_size: 256, lr: 5e-3, seed: 3, ..Default::default() };
        let (net, _) = run(&all, &cfg)?;
        let path = tmp(name);
        net.state_dict().save(&path)?;

        // The accuracy computed directly from the in-memory model.
        let direct = evaluate(&net, &test, arch)?;
        let logits = no_grad(|| net.forward(&Var::from(shape_input(&test.images, arch)?)))?;
        let direct_pred = logits.tensor().argmax(1, false)?.to_vec::<i64>()?;

        let report = predict::run(&path, &test, &Device::cpu())?;
        std::fs::remove_file(&path).ok();
        assert_eq!(report.arch, arch);
        assert_eq!(report.accuracy, direct, "{name}: predict vs the in-memory model");
        assert_eq!(report.pairs.len(), test.len());
        let pred: Vec<i64> = report.pairs.iter().map(|p| p.1).collect();
        assert_eq!(pred, direct_pred, "{name}");
        assert_eq!(report.pairs.iter().map(|p| p.0).collect::<Vec<_>>(), test.labels.to_vec::<i64>()?);
        // Trained, not random: well above chance (0.1) after one epoch.
        assert!(report.accuracy > 0.3, "{name}: accuracy {}", report.accuracy);
    }
    Ok(())
}

#[test]
fn loaded_model_is_in_eval_mode_and_records_no_graph() -> tensor_core::Result<()> {
    tensor_core::manual_seed(5);
    let net = examples::train::build(Arch::Mlp)?;
    let path = tmp("eval");
    net.state_dict().save(&path)?;
    let (loaded, arch) = load_model(&path, &Device::cpu())?;
    std::fs::remove_file(&path).ok();
    assert_eq!(arch, Arch::Mlp);
    assert!(!loaded.is_training());
    let x = tensor_core::Tensor::zeros([3, 64], tensor_core::DType::F32, &Device::cpu())?;
    let pred = predict::predict(&loaded, arch, &x)?;
    assert_eq!(pred.dims(), &[3]);
    assert!(loaded.parameters().iter().all(|p| p.grad().is_none()));
    Ok(())
}

#[test]
fn missing_weights_say_to_run_digits_first() {
    let path = std::path::Path::new("/nonexistent/runs/digits/model.safetensors");
    let err = predict::run(path, &digits::load(digits::default_path()).unwrap(), &Device::cpu()).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("--example digits") && msg.contains("first"), "{msg}");
}

#[test]
fn weights_of_another_model_are_an_error() -> tensor_core::Result<()> {
    let mut sd = nn::StateDict::new();
    sd.insert("weight", tensor_core::Tensor::zeros([2, 2], tensor_core::DType::F32, &Device::cpu())?);
    let path = tmp("other");
    sd.save(&path)?;
    let r = load_model(&path, &Device::cpu());
    std::fs::remove_file(&path).ok();
    assert!(r.is_err());
    Ok(())
}

/// The binary exits with a non-zero status and the advice, not a panic.
#[test]
fn predict_binary_without_weights_fails_cleanly() {
    let Some(exe) = example_binary("predict") else {
        // Built by `cargo test --workspace --all-targets` / `cargo build --examples`;
        // the library path above is tested either way.
        eprintln!("predict binary not built; its library path is tested above");
        return;
    };
    let out =
        std::process::Command::new(exe).args(["--weights", "/nonexistent/model.safetensors"]).output().expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("run `cargo run --release -p examples --example digits` first"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// `target/<profile>/examples/<name>` next to this test's binary, when built.
fn example_binary(name: &str) -> Option<std::path::PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let profile_dir = exe.parent()?.parent()?; // target/<profile>/deps/<test> -> target/<profile>
    let p = profile_dir.join("examples").join(name);
    p.is_file().then_some(p)
}
