//! A shortened digits run must reach a real accuracy (the full run reaches >= 0.97).

use examples::digits;
use examples::train::{run, Arch, Config};

#[test]
fn short_cnn_run_learns_digits() -> tensor_core::Result<()> {
    let data = digits::load(digits::default_path())?;
    assert_eq!(data.len(), 1797);
    let cfg = Config { arch: Arch::Cnn, epochs: 4, lr: 5e-3, seed: 1, ..Default::default() };
    let (_, hist) = run(&data, &cfg)?;
    let acc = *hist.test_acc.last().expect("one entry per epoch");
    assert!(acc >= 0.90, "test accuracy after 4 epochs: {acc}");
    assert!(hist.train_loss[3] < hist.train_loss[0], "loss did not go down: {:?}", hist.train_loss);
    Ok(())
}

#[test]
fn short_mlp_run_learns_digits() -> tensor_core::Result<()> {
    let data = digits::load(digits::default_path())?;
    let cfg = Config { arch: Arch::Mlp, epochs: 5, lr: 5e-3, seed: 2, ..Default::default() };
    let (_, hist) = run(&data, &cfg)?;
    let acc = *hist.test_acc.last().expect("one entry per epoch");
    assert!(acc >= 0.92, "MLP test accuracy after 5 epochs: {acc}");
    Ok(())
}

#[test]
fn missing_file_is_an_error_not_a_panic() {
    let r = digits::load(std::path::Path::new("/nonexistent/digits.csv.gz"));
    assert!(matches!(r, Err(tensor_core::Error::Io { .. })));
}
