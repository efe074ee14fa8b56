//! Inference with the weights the `digits` example saves
//! (`runs/digits/model.safetensors`): rebuild the network, load the state dict, switch
//! to `eval()`, and classify under `no_grad`. Used by
//! `cargo run --release -p examples --example predict` and by its test.

use std::path::Path;

use autograd::{no_grad, Var};
use nn::{Forward, Module, Sequential, StateDict};
use tensor_core::{Device, Error, Result, Tensor};

use crate::digits::Digits;
use crate::train::{build, shape_input, Arch};

/// The command that trains and saves the weights `predict` loads.
pub const TRAIN_COMMAND: &str = "cargo run --release -p examples --example digits";

/// Which network a saved state dict belongs to: the CNN's first layer is a
/// convolution (a rank-4 `0.weight`), the MLP's a linear layer (rank 2).
pub fn arch_of(sd: &StateDict) -> Result<Arch> {
    match sd.get("0.weight").map(|w| w.dims().len()) {
        Some(4) => Ok(Arch::Cnn),
        Some(2) => Ok(Arch::Mlp),
        _ => Err(Error::arg(
            "predict",
            format!("not a digits model: expected a `0.weight` of rank 4 (CNN) or 2 (MLP), found keys {:?}", sd.keys()),
        )),
    }
}

/// Loads the weights at `path` into a freshly built network of the right
/// architecture on `device`, in eval mode.
///
/// A missing file is an [`Error::Io`] that says to run the `digits` example first;
/// weights that do not fit the network (a missing or extra tensor, a wrong shape) are
/// an `Err` too.
pub fn load_model(path: &Path, device: &Device) -> Result<(Sequential, Arch)> {
    if !path.is_file() {
        return Err(Error::Io {
            path: path.display().to_string(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no saved weights here; run `{TRAIN_COMMAND}` first to train the model and save them"),
            ),
        });
    }
    let sd = StateDict::load(path)?;
    let arch = arch_of(&sd)?;
    let net = build(arch)?;
    net.load_state_dict(&sd, true)?;
    net.to_device(device)?;
    net.eval();
    Ok((net, arch))
}

/// The predicted class of every `[64]` pixel row of `images` (`[n]` I64, on the CPU):
/// the arg-max of the logits, computed under `no_grad` (no graph is recorded).
/// Call `net.eval()` first (as [`load_model`] does).
pub fn predict(net: &Sequential, arch: Arch, images: &Tensor) -> Result<Tensor> {
    let dev = net.parameters().first().map(|p| p.device().clone()).unwrap_or_else(Device::cpu);
    no_grad(|| -> Result<Tensor> {
        let x = Var::from(shape_input(images, arch)?.to_device(&dev)?);
        let logits = net.forward(&x)?;
        debug_assert!(!logits.requires_grad());
        logits.tensor().argmax(1, false)?.to_device(&Device::cpu())
    })
}

/// What [`run`] found.
#[derive(Clone, Debug)]
pub struct Report {
    /// The network the weights belong to.
    pub arch: Arch,
    /// Fraction of `data` classified correctly.
    pub accuracy: f64,
    /// `(label, predicted)` for every image of `data`, in order.
    pub pairs: Vec<(i64, i64)>,
}

/// Loads the weights at `weights` and classifies every image of `data`.
pub fn run(weights: &Path, data: &Digits, device: &Device) -> Result<Report> {
    let (net, arch) = load_model(weights, device)?;
    let pred = predict(&net, arch, &data.images)?.to_vec::<i64>()?;
    let labels = data.labels.to_vec::<i64>()?;
    let correct = pred.iter().zip(&labels).filter(|(p, l)| p == l).count();
    let accuracy = if labels.is_empty() { 0.0 } else { correct as f64 / labels.len() as f64 };
    Ok(Report { arch, accuracy, pairs: labels.into_iter().zip(pred).collect() })
}

/// An 8x8 digit (64 values in `[0, 1]`) as 8 lines of text, darker pixels as denser
/// characters.
pub fn ascii_digit(pixels: &[f32]) -> Vec<String> {
    const SHADES: [char; 5] = [' ', '.', ':', 'o', '@'];
    pixels
        .chunks(8)
        .map(|row| row.iter().map(|&p| SHADES[((p.clamp(0.0, 1.0) * 4.0).round()) as usize]).collect())
        .collect()
}
