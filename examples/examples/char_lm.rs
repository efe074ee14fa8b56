//! Trains a character-level GPT (or, with `--model lstm`, an LSTM) on tiny Shakespeare
//! (nanoGPT's CPU recipe) and samples from it.
//!
//! ```sh
//! cargo run --release --example char_lm -- [--model gpt|lstm] [--iters N] [--seed S] [--out DIR] [--device cpu|cuda|cuda:N] [--eval-interval N]
//! ```
//! Prints a progress bar, the train and validation loss on fixed batches every
//! `--eval-interval` iterations, the final validation loss, the time per step and a
//! generated sample; saves the weights (safetensors), the losses (CSV) and their curves
//! (PNG) in the output folder (default `runs/char_lm`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use examples::char_lm::{self, CharData, LmConfig, LmModel, SampleOptions};
use nn::Module;
use tensor_core::Generator;

/// Which network `--model` picks.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum ModelArg {
    /// The nanoGPT-style transformer (4 layers, 4 heads, 128 wide).
    Gpt,
    /// A two-layer LSTM.
    Lstm,
}

/// Trains a character-level GPT (or an LSTM) on tiny Shakespeare and samples from it;
/// saves the weights, the losses and their curves.
#[derive(Parser, Debug)]
#[command(name = "char_lm")]
struct Args {
    /// The network to train.
    #[arg(long, value_enum, default_value = "gpt")]
    model: ModelArg,
    /// Training iterations (optimizer steps).
    #[arg(long, value_name = "N", default_value_t = LmConfig::default().iters)]
    iters: usize,
    /// Seed for the weights, the batches and the sample.
    #[arg(long, value_name = "S", default_value_t = LmConfig::default().seed)]
    seed: u64,
    /// Evaluate the train and validation loss every N iterations.
    #[arg(long, value_name = "N", default_value_t = LmConfig::default().eval_interval)]
    eval_interval: usize,
    /// Output folder for model.safetensors, metrics.csv and curves.png.
    #[arg(long, value_name = "DIR", default_value = "runs/char_lm")]
    out: PathBuf,
    /// Where to train: cpu, cuda or cuda:N.
    #[arg(long, value_name = "DEVICE", default_value = "cpu", value_parser = examples::parse_device)]
    device: tensor_core::Device,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let cfg = LmConfig {
        model: match args.model {
            ModelArg::Gpt => LmModel::Gpt,
            ModelArg::Lstm => LmModel::Lstm,
        },
        iters: args.iters,
        seed: args.seed,
        eval_interval: args.eval_interval,
        out_dir: Some(args.out),
        progress: true,
        device: args.device,
        ..Default::default()
    };
    match main_inner(&cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("char_lm: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main_inner(cfg: &LmConfig) -> tensor_core::Result<()> {
    let data = CharData::load(&char_lm::default_path())?;
    tensor_core::manual_seed(cfg.seed);
    let model = cfg.build(data.vocab_size())?;
    model.to_device(&cfg.device)?;
    println!(
        "char_lm: {} train / {} val tokens, vocab {}, {} ({} parameters), \
         {} iterations, batch {} x {}, seed {}, on {}",
        data.train.len(),
        data.val.len(),
        data.vocab_size(),
        cfg.describe(),
        model.num_parameters(),
        cfg.iters,
        cfg.batch_size,
        cfg.context,
        cfg.seed,
        cfg.device
    );
    let hist = char_lm::train(model.as_ref(), &data, cfg)?;
    let (_, train_loss, val_loss) = hist.evals.last().copied().unwrap_or((0, f64::NAN, f64::NAN));
    println!(
        "final: train loss {train_loss:.4}, val loss {val_loss:.4} ({:.1} s in all, {:.1} ms per step median)",
        hist.total_secs,
        hist.median_step_secs() * 1e3
    );
    let mut g = Generator::new(cfg.seed.wrapping_add(2));
    let prompt = data.encode("\n")?;
    let toks = char_lm::sample(
        model.as_ref(),
        &prompt,
        200,
        cfg.context,
        SampleOptions { temperature: 0.8, top_k: 40 },
        &mut g,
    )?;
    println!("sample (temperature 0.8, top-k 40):\n{}", data.decode(&toks[prompt.len()..]));
    if let Some(dir) = &cfg.out_dir {
        let weights = dir.join("model.safetensors");
        model.state_dict().save(&weights)?;
        println!(
            "wrote {}, {} and {}",
            weights.display(),
            dir.join("metrics.csv").display(),
            dir.join("curves.png").display()
        );
    }
    Ok(())
}
