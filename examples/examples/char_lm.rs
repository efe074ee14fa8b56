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

use examples::char_lm::{self, CharData, LmConfig, LmModel, SampleOptions};
use nn::Module;
use tensor_core::Generator;

fn usage() -> ExitCode {
    eprintln!(
        "usage: char_lm [--model gpt|lstm] [--iters N] [--seed S] [--eval-interval N] [--out DIR] [--device cpu|cuda|cuda:N]"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut cfg = LmConfig { out_dir: Some(PathBuf::from("runs/char_lm")), progress: true, ..Default::default() };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        let r: Result<(), String> = match a.as_str() {
            "--model" => val("--model").and_then(|v| match v.as_str() {
                "gpt" => {
                    cfg.model = LmModel::Gpt;
                    Ok(())
                }
                "lstm" => {
                    cfg.model = LmModel::Lstm;
                    Ok(())
                }
                other => Err(format!("unknown model {other:?} (gpt or lstm)")),
            }),
            "--iters" => val("--iters").and_then(|v| v.parse().map(|x| cfg.iters = x).map_err(|e| format!("{e}"))),
            "--seed" => val("--seed").and_then(|v| v.parse().map(|x| cfg.seed = x).map_err(|e| format!("{e}"))),
            "--eval-interval" => val("--eval-interval")
                .and_then(|v| v.parse().map(|x| cfg.eval_interval = x).map_err(|e| format!("{e}"))),
            "--out" => val("--out").map(|v| cfg.out_dir = Some(PathBuf::from(v))),
            "--device" => val("--device").and_then(|v| examples::parse_device(&v).map(|d| cfg.device = d)),
            "-h" | "--help" => return usage(),
            other => Err(format!("unknown argument {other}")),
        };
        if let Err(e) = r {
            eprintln!("char_lm: {e}");
            return usage();
        }
    }
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
