//! Trains a small CNN (or an MLP) on the 8x8 handwritten digits that ship in `data/`.
//!
//! ```sh
//! cargo run --release --example digits -- [--mlp] [--epochs N] [--lr X] [--seed S] [--batch-size B] [--out DIR] [--device cuda]
//! ```
//! Prints the held-out test accuracy, saves the weights (safetensors), the per-epoch
//! metrics (CSV) and a PNG of the loss and accuracy curves in the output folder
//! (default `runs/digits`); `--help` lists the flags. The `predict` example loads the
//! saved weights.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use examples::digits;
use examples::train::{run, Arch, Config};
use nn::Module;

/// Trains a small CNN (or an MLP) on the 8x8 handwritten digits in `data/`, prints the
/// test accuracy, and saves the weights, the per-epoch metrics and their curves.
#[derive(Parser, Debug)]
#[command(
    name = "digits",
    after_help = "Then `cargo run --release -p examples --example predict` classifies the test set with the saved weights."
)]
struct Args {
    /// Train the MLP (linear 64-128-10) instead of the CNN.
    #[arg(long, conflicts_with = "cnn")]
    mlp: bool,
    /// Train the CNN (two 3x3 convolutions, the default).
    #[arg(long)]
    cnn: bool,
    /// Passes over the training set.
    #[arg(long, value_name = "N", default_value_t = Config::default().epochs)]
    epochs: usize,
    /// Peak learning rate (Adam, cosine-annealed to 0).
    #[arg(long, value_name = "X", default_value_t = Config::default().lr)]
    lr: f64,
    /// Seed for the weights, the train/test split and the shuffles.
    #[arg(long, value_name = "S", default_value_t = Config::default().seed)]
    seed: u64,
    /// Minibatch size.
    #[arg(long, value_name = "B", default_value_t = Config::default().batch_size)]
    batch_size: usize,
    /// Output folder for model.safetensors, metrics.csv and curves.png.
    #[arg(long, value_name = "DIR", default_value = "runs/digits")]
    out: PathBuf,
    /// Where to train: cpu, cuda or cuda:N.
    #[arg(long, value_name = "DEVICE", default_value = "cpu", value_parser = examples::parse_device)]
    device: tensor_core::Device,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let cfg = Config {
        arch: if args.mlp { Arch::Mlp } else { Arch::Cnn },
        epochs: args.epochs,
        lr: args.lr,
        seed: args.seed,
        batch_size: args.batch_size,
        out_dir: Some(args.out),
        progress: true,
        device: args.device,
    };
    match main_inner(&cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("digits: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main_inner(cfg: &Config) -> tensor_core::Result<()> {
    let data = digits::load(digits::default_path())?;
    println!(
        "digits: {} images, {:?}, {} epochs, lr {}, seed {}, on {}",
        data.len(),
        cfg.arch,
        cfg.epochs,
        cfg.lr,
        cfg.seed,
        cfg.device
    );
    let t0 = Instant::now();
    let (net, hist) = run(&data, cfg)?;
    let secs = t0.elapsed().as_secs_f64();
    let acc = *hist.test_acc.last().unwrap_or(&0.0);
    println!("test accuracy: {acc:.4}  ({secs:.1} s, {} parameters)", net.num_parameters());
    if let Some(dir) = &cfg.out_dir {
        std::fs::create_dir_all(dir)
            .map_err(|e| tensor_core::Error::Io { path: dir.display().to_string(), source: e })?;
        let weights = dir.join("model.safetensors");
        net.state_dict().save(&weights)?;
        println!(
            "wrote {}, {} and {}",
            weights.display(),
            dir.join("metrics.csv").display(),
            dir.join("curves.png").display()
        );
    }
    Ok(())
}
