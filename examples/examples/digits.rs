//! Trains a small CNN (or an MLP) on the 8x8 handwritten digits that ship in `data/`.
//!
//! ```sh
//! cargo run --release --example digits -- [--mlp] [--epochs N] [--lr X] [--seed S] [--out DIR] [--device cuda]
//! ```
//! Prints the held-out test accuracy, saves the weights (safetensors), the per-epoch
//! metrics (CSV) and a PNG of the loss and accuracy curves in the output folder
//! (default `runs/digits`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use examples::digits;
use examples::train::{run, Arch, Config};
use nn::Module;

fn usage() -> ExitCode {
    eprintln!("usage: digits [--mlp] [--epochs N] [--lr X] [--seed S] [--batch-size B] [--out DIR] [--device cpu|cuda|cuda:N]");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut cfg = Config { out_dir: Some(PathBuf::from("runs/digits")), progress: true, ..Default::default() };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        let r: Result<(), String> = match a.as_str() {
            "--mlp" => {
                cfg.arch = Arch::Mlp;
                Ok(())
            }
            "--cnn" => {
                cfg.arch = Arch::Cnn;
                Ok(())
            }
            "--epochs" => val("--epochs").and_then(|v| v.parse().map(|x| cfg.epochs = x).map_err(|e| format!("{e}"))),
            "--lr" => val("--lr").and_then(|v| v.parse().map(|x| cfg.lr = x).map_err(|e| format!("{e}"))),
            "--seed" => val("--seed").and_then(|v| v.parse().map(|x| cfg.seed = x).map_err(|e| format!("{e}"))),
            "--batch-size" => {
                val("--batch-size").and_then(|v| v.parse().map(|x| cfg.batch_size = x).map_err(|e| format!("{e}")))
            }
            "--out" => val("--out").map(|v| cfg.out_dir = Some(PathBuf::from(v))),
            "--device" => val("--device").and_then(|v| examples::parse_device(&v).map(|d| cfg.device = d)),
            "-h" | "--help" => return usage(),
            other => Err(format!("unknown argument {other}")),
        };
        if let Err(e) = r {
            eprintln!("digits: {e}");
            return usage();
        }
    }
    match main_inner(&cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("digits: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main_inner(cfg: &Config) -> tensor_core::Result<()> {
    let data = digits::load(&digits::default_path())?;
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
