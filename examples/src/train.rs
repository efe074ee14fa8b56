//! The digits trainer: the models, one epoch of minibatch training, evaluation, and
//! the run driver used by `cargo run --release --example digits` and by its test.

use std::path::PathBuf;

use autograd::{no_grad, Var};
use nn::loss::{cross_entropy, CrossEntropyOptions};
use nn::{Conv2d, Conv2dConfig, Flatten, Forward, Linear, MaxPool2d, Module, ReLU, Sequential};
use optim::{Adam, AdamOptions, CosineAnnealingLR, CosineAnnealingLROptions, LrScheduler, Optimizer};
use tensor_core::{Device, Error, Generator, Result, Tensor};

use crate::digits::Digits;
use data::metrics::MetricsLogger;

/// Which network to train.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// conv(1->16, 3x3, pad 1)-relu-maxpool2 -> conv(16->32, 3x3, pad 1)-relu-maxpool2 -> linear(128->10)
    Cnn,
    /// linear(64->128)-relu-linear(128->10)
    Mlp,
}

/// Settings of a run.
#[derive(Clone, Debug)]
pub struct Config {
    /// The network.
    pub arch: Arch,
    /// Passes over the training set.
    pub epochs: usize,
    /// Peak learning rate (Adam, cosine-annealed to 0).
    pub lr: f64,
    /// Seed for weights, the split and the shuffles.
    pub seed: u64,
    /// Minibatch size.
    pub batch_size: usize,
    /// Where the metrics CSV and the curve plot go (`None`: write nothing).
    pub out_dir: Option<PathBuf>,
    /// Show a progress bar per epoch.
    pub progress: bool,
    /// Where the model and the batches live (the data set stays on the CPU and each
    /// batch is copied over).
    pub device: Device,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            arch: Arch::Cnn,
            epochs: 30,
            lr: 3e-3,
            seed: 0,
            batch_size: 32,
            out_dir: None,
            progress: false,
            device: Device::cpu(),
        }
    }
}

/// Per-epoch numbers of a run.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// Mean training loss per epoch.
    pub train_loss: Vec<f64>,
    /// Training accuracy per epoch (on the minibatches as trained).
    pub train_acc: Vec<f64>,
    /// Test accuracy after each epoch.
    pub test_acc: Vec<f64>,
}

/// The small CNN of the digits, Fashion-MNIST and the bench's W6 step on `[n, 1, side,
/// side]` images: two 3x3 padded convolutions (1 -> 16 -> 32 channels), each with ReLU
/// and a 2x2 max pool, then a linear layer to 10 classes (weights from the global
/// seeded generator).
pub fn small_cnn(side: usize) -> Result<Sequential> {
    let c = |cin, cout| Conv2d::new(cin, cout, [3, 3], Conv2dConfig { padding: [1, 1], ..Default::default() });
    let cells = (side / 4) * (side / 4);
    Ok(Sequential::new()
        .add(c(1, 16)?)
        .add(ReLU)
        .add(MaxPool2d::new([2, 2]))
        .add(c(16, 32)?)
        .add(ReLU)
        .add(MaxPool2d::new([2, 2]))
        .add(Flatten::new())
        .add(Linear::new(32 * cells, 10, true)?))
}

/// Builds the network for `arch` (weights from the global seeded generator).
pub fn build(arch: Arch) -> Result<Sequential> {
    Ok(match arch {
        Arch::Cnn => small_cnn(8)?,
        Arch::Mlp => Sequential::new().add(Linear::new(64, 128, true)?).add(ReLU).add(Linear::new(128, 10, true)?),
    })
}

/// Fraction of the digits held out as the test set (seeded by [`Config::seed`]).
pub const TEST_FRACTION: f64 = 0.2;

/// Shapes a `[n, 64]` pixel batch for `arch` (`[n, 1, 8, 8]` for the CNN).
pub fn shape_input(x: &Tensor, arch: Arch) -> Result<Tensor> {
    match arch {
        Arch::Cnn => x.reshape(&[-1, 1, 8, 8]),
        Arch::Mlp => Ok(x.clone()),
    }
}

/// Accuracy of `net` on a data set (eval mode, no graph).
pub fn evaluate(net: &Sequential, data: &Digits, arch: Arch) -> Result<f64> {
    net.eval();
    let acc = no_grad(|| -> Result<f64> {
        let dev = net.parameters().first().map(|p| p.device().clone()).unwrap_or_else(Device::cpu);
        let logits = net.forward(&Var::from(shape_input(&data.images, arch)?.to_device(&dev)?))?;
        let pred = logits.tensor().argmax(1, false)?;
        let correct = pred.eq(&data.labels.to_device(&dev)?)?.sum_all()?.to_scalar::<f64>()?;
        Ok(correct / data.len() as f64)
    })?;
    net.train();
    Ok(acc)
}

/// Trains on a held-out split of `data` and returns the network and its history.
pub fn run(data: &Digits, cfg: &Config) -> Result<(Sequential, History)> {
    if cfg.batch_size == 0 || cfg.epochs == 0 {
        return Err(Error::arg("digits", "batch size and epochs must be positive"));
    }
    tensor_core::manual_seed(cfg.seed);
    let (train, test) = data.split(TEST_FRACTION, cfg.seed)?;
    let net = build(cfg.arch)?;
    net.to_device(&cfg.device)?;
    let params: Vec<Var> = net.parameters();
    let mut opt = Adam::new(params, AdamOptions { lr: cfg.lr, ..Default::default() })?;
    let steps_per_epoch = train.len().div_ceil(cfg.batch_size);
    let mut sched =
        CosineAnnealingLR::new(&mut opt, cfg.epochs * steps_per_epoch, CosineAnnealingLROptions::default())?;
    let mut shuffle = Generator::new(cfg.seed ^ 0x5157);
    let mut hist = History::default();
    let ce = CrossEntropyOptions::default();
    let mut log = match &cfg.out_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| Error::Io { path: dir.display().to_string(), source: e })?;
            Some(MetricsLogger::create(dir.join("metrics.csv"), &["train_loss", "train_acc", "test_acc"])?)
        }
        None => None,
    };
    for epoch in 0..cfg.epochs {
        let bar =
            cfg.progress.then(|| data::metrics::progress_bar(steps_per_epoch as u64, format!("epoch {}", epoch + 1)));
        let perm: Vec<i64> = shuffle.permutation(train.len()).into_iter().map(|i| i as i64).collect();
        let (mut loss_sum, mut correct, mut seen) = (0.0, 0.0, 0usize);
        for chunk in perm.chunks(cfg.batch_size) {
            let idx = Tensor::from_vec(chunk.to_vec(), [chunk.len()])?;
            let x = shape_input(&train.images.index_select(0, &idx)?, cfg.arch)?.to_device(&cfg.device)?;
            let y = train.labels.index_select(0, &idx)?.to_device(&cfg.device)?;
            opt.zero_grad();
            let logits = net.forward(&Var::from(x))?;
            let loss = cross_entropy(&logits, &y, &ce)?;
            loss.backward()?;
            opt.step()?;
            sched.step(&mut opt)?;
            let l = loss.tensor().to_scalar::<f64>()?;
            loss_sum += l * chunk.len() as f64;
            correct += logits.tensor().argmax(1, false)?.eq(&y)?.sum_all()?.to_scalar::<f64>()?;
            seen += chunk.len();
            if let Some(b) = &bar {
                b.set_message(format!("loss {:.4} acc {:.3}", loss_sum / seen as f64, correct / seen as f64));
                b.inc(1);
            }
        }
        hist.train_loss.push(loss_sum / seen as f64);
        hist.train_acc.push(correct / seen as f64);
        hist.test_acc.push(evaluate(&net, &test, cfg.arch)?);
        if let Some(log) = &mut log {
            log.log(epoch as u64 + 1, &[hist.train_loss[epoch], hist.train_acc[epoch], hist.test_acc[epoch]])?;
        }
        if let Some(b) = bar {
            b.finish_with_message(format!(
                "loss {:.4} acc {:.3} test acc {:.3}",
                hist.train_loss[epoch], hist.train_acc[epoch], hist.test_acc[epoch]
            ));
        }
    }
    if let (Some(log), Some(dir)) = (&log, &cfg.out_dir) {
        log.plot(dir.join("curves.png"), &[&["train_loss"], &["train_acc", "test_acc"]])?;
    }
    Ok((net, hist))
}
