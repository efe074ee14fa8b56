//! Trains an MLP (or a small CNN) on Fashion-MNIST read from its IDX files, with the
//! `data` crate's DataLoader feeding shuffled minibatches from background threads.
//!
//! ```sh
//! sudo apt-get install dataset-fashion-mnist   # files in /usr/share/datasets/fashion-mnist
//! cargo run --release --example fashion_mnist -- [--arch mlp|cnn] [--epochs N] [--lr X]
//!     [--seed S] [--batch-size B] [--workers W] [--data-dir DIR]
//! ```
//! Prints the loss and accuracies after each epoch and the final test accuracy;
//! `--help` lists the flags.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use autograd::{no_grad, Var};
use clap::Parser;
use data::{DataLoader, TensorDataset};
use nn::loss::{cross_entropy, CrossEntropyOptions};
use nn::{Forward, Linear, Module, ReLU, Sequential};
use optim::{Adam, AdamOptions, Optimizer};
use tensor_core::{DType, Error, Result, Tensor};

const DEFAULT_DIR: &str = "/usr/share/datasets/fashion-mnist";
const FILES: [&str; 4] = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
];
/// Mean and standard deviation of the training pixels (scaled to [0, 1]).
const MEAN: f64 = 0.2860;
const STD: f64 = 0.3530;

#[derive(Clone, Copy, Debug, PartialEq, clap::ValueEnum)]
enum Arch {
    /// 784-256-128-10 with ReLUs.
    Mlp,
    /// Two 3x3 convolutions with max pooling, then a linear layer.
    Cnn,
}

/// Trains an MLP (or a small CNN) on Fashion-MNIST read from its IDX files, with the
/// DataLoader feeding shuffled minibatches from background threads.
#[derive(Parser, Debug)]
#[command(
    name = "fashion_mnist",
    after_help = "The data: `sudo apt-get install dataset-fashion-mnist` (files in /usr/share/datasets/fashion-mnist)."
)]
struct Config {
    /// The network to train.
    #[arg(long, value_enum, default_value = "mlp")]
    arch: Arch,
    /// Passes over the training set.
    #[arg(long, value_name = "N", default_value_t = 5)]
    epochs: usize,
    /// Learning rate (Adam).
    #[arg(long, value_name = "X", default_value_t = 1e-3)]
    lr: f64,
    /// Seed for the weights and the shuffles.
    #[arg(long, value_name = "S", default_value_t = 0)]
    seed: u64,
    /// Minibatch size.
    #[arg(long, value_name = "B", default_value_t = 64)]
    batch_size: usize,
    /// DataLoader worker threads.
    #[arg(long, value_name = "W", default_value_t = 2)]
    workers: usize,
    /// Folder holding the four IDX files.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DIR)]
    data_dir: PathBuf,
}

fn main() -> ExitCode {
    let cfg = Config::parse();
    let missing: Vec<PathBuf> = FILES.iter().map(|f| cfg.data_dir.join(f)).filter(|p| !p.is_file()).collect();
    if !missing.is_empty() {
        eprintln!("fashion_mnist: the Fashion-MNIST files are missing:");
        for p in &missing {
            eprintln!("  {}", p.display());
        }
        eprintln!("Install them with `sudo apt-get install dataset-fashion-mnist` (they go to {DEFAULT_DIR}),");
        eprintln!("or point --data-dir at a folder holding the four IDX files.");
        return ExitCode::FAILURE;
    }
    match run(&cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fashion_mnist: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Images as normalized f32 (`[n, 784]` for the MLP, `[n, 1, 28, 28]` for the CNN),
/// labels as i64.
fn load(dir: &Path, images: &str, labels: &str, arch: Arch) -> Result<TensorDataset> {
    let x = data::idx::read_idx(dir.join(images))?;
    let y = data::idx::read_idx(dir.join(labels))?.to_dtype(DType::I64)?;
    let n = x.dims()[0] as isize;
    let x = (&(&x.to_dtype(DType::F32)? * (1.0 / (255.0 * STD)))? - MEAN / STD)?;
    let x = match arch {
        Arch::Mlp => x.reshape(&[n, 784])?,
        Arch::Cnn => x.reshape(&[n, 1, 28, 28])?,
    };
    TensorDataset::new(vec![x, y])
}

fn build(arch: Arch) -> Result<Sequential> {
    Ok(match arch {
        Arch::Mlp => Sequential::new()
            .add(Linear::new(784, 256, true)?)
            .add(ReLU)
            .add(Linear::new(256, 128, true)?)
            .add(ReLU)
            .add(Linear::new(128, 10, true)?),
        Arch::Cnn => examples::train::small_cnn(28)?,
    })
}

fn evaluate(net: &Sequential, test: &DataLoader<TensorDataset, Vec<Tensor>>) -> Result<f64> {
    net.eval();
    let (mut correct, mut seen) = (0.0, 0usize);
    for batch in test {
        let batch = batch?;
        let logits = no_grad(|| net.forward(&Var::from(batch[0].clone())))?;
        correct += logits.tensor().argmax(1, false)?.eq(&batch[1])?.sum_all()?.to_scalar::<f64>()?;
        seen += batch[1].numel();
    }
    net.train();
    Ok(correct / seen.max(1) as f64)
}

fn run(cfg: &Config) -> Result<()> {
    if cfg.epochs == 0 {
        return Err(Error::arg("fashion_mnist", "--epochs must be positive"));
    }
    let t0 = Instant::now();
    let train = load(&cfg.data_dir, FILES[0], FILES[1], cfg.arch)?;
    let test = load(&cfg.data_dir, FILES[2], FILES[3], cfg.arch)?;
    println!(
        "fashion_mnist: {} train / {} test images (loaded in {:.1} s), {:?}, {} epochs, lr {}, batch {}, {} workers",
        train.tensors()[0].dims()[0],
        test.tensors()[0].dims()[0],
        t0.elapsed().as_secs_f64(),
        cfg.arch,
        cfg.epochs,
        cfg.lr,
        cfg.batch_size,
        cfg.workers
    );
    tensor_core::manual_seed(cfg.seed);
    let net = build(cfg.arch)?;
    let mut opt = Adam::new(net.parameters(), AdamOptions { lr: cfg.lr, ..Default::default() })?;
    let train = DataLoader::new(train, cfg.batch_size)?.shuffle(cfg.seed).num_workers(cfg.workers);
    let test = DataLoader::new(test, 1000)?.num_workers(cfg.workers);
    let ce = CrossEntropyOptions::default();
    let t_train = Instant::now();
    let mut acc = 0.0;
    for epoch in 0..cfg.epochs {
        let t_epoch = Instant::now();
        let (mut loss_sum, mut correct, mut seen) = (0.0, 0.0, 0usize);
        for batch in &train {
            let batch = batch?;
            let (x, y) = (&batch[0], &batch[1]);
            opt.zero_grad();
            let logits = net.forward(&Var::from(x.clone()))?;
            let loss = cross_entropy(&logits, y, &ce)?;
            loss.backward()?;
            opt.step()?;
            let n = y.numel();
            loss_sum += loss.tensor().to_scalar::<f64>()? * n as f64;
            correct += logits.tensor().argmax(1, false)?.eq(y)?.sum_all()?.to_scalar::<f64>()?;
            seen += n;
        }
        acc = evaluate(&net, &test)?;
        println!(
            "epoch {:>2}: loss {:.4}  train acc {:.4}  test acc {:.4}  ({:.1} s)",
            epoch + 1,
            loss_sum / seen as f64,
            correct / seen as f64,
            acc,
            t_epoch.elapsed().as_secs_f64()
        );
    }
    println!(
        "test accuracy: {acc:.4}  ({:.1} s training, {} parameters)",
        t_train.elapsed().as_secs_f64(),
        net.num_parameters()
    );
    Ok(())
}
