//! Classifies the digits test set with the weights the `digits` example saved: loads
//! `runs/digits/model.safetensors`, rebuilds the network (CNN or MLP, read off the
//! weights), switches it to `eval()`, and runs inference under `no_grad`.
//!
//! ```sh
//! cargo run --release -p examples --example digits    # trains and saves the weights
//! cargo run --release -p examples --example predict -- [--weights PATH] [--seed S] [--show N] [--device cuda]
//! ```
//! Prints a few test images next to their labels and predictions, then the test
//! accuracy. Without saved weights it says to run the `digits` example first and exits
//! with status 1.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use examples::digits;
use examples::predict::{ascii_digit, run, TRAIN_COMMAND};
use examples::train::TEST_FRACTION;

/// Classifies the held-out digits with the weights the `digits` example saved.
#[derive(Parser, Debug)]
#[command(name = "predict", after_help = format!("Train and save the weights first with `{TRAIN_COMMAND}`."))]
struct Args {
    /// The saved weights (safetensors) to load.
    #[arg(long, value_name = "PATH", default_value = "runs/digits/model.safetensors")]
    weights: PathBuf,
    /// The seed the model was trained with: it picks the same held-out test images.
    #[arg(long, value_name = "S", default_value_t = 0)]
    seed: u64,
    /// How many test images to print next to their labels and predictions.
    #[arg(long, value_name = "N", default_value_t = 8)]
    show: usize,
    /// Where to run: cpu, cuda or cuda:N.
    #[arg(long, value_name = "DEVICE", default_value = "cpu", value_parser = examples::parse_device)]
    device: tensor_core::Device,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match main_inner(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("predict: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main_inner(args: &Args) -> tensor_core::Result<()> {
    let all = digits::load(digits::default_path())?;
    let (_, test) = all.split(TEST_FRACTION, args.seed)?;
    let report = run(&args.weights, &test, &args.device)?;
    println!(
        "predict: {:?} from {}, {} test images, on {}",
        report.arch,
        args.weights.display(),
        test.len(),
        args.device
    );
    let pixels = test.images.to_vec2::<f32>()?;
    let shown = args.show.min(test.len());
    for (row, chunk) in (0..shown).collect::<Vec<_>>().chunks(4).enumerate() {
        let pics: Vec<Vec<String>> = chunk.iter().map(|&i| ascii_digit(&pixels[i])).collect();
        for line in 0..8 {
            let cells: Vec<&str> = pics.iter().map(|p| p[line].as_str()).collect();
            println!("  {}", cells.join("    "));
        }
        let captions: Vec<String> = chunk
            .iter()
            .map(|&i| {
                let (label, pred) = report.pairs[i];
                format!("{label} -> {pred}{}", if label == pred { "  " } else { " x" })
            })
            .collect();
        println!("  {}", captions.iter().map(|c| format!("{c:<8}")).collect::<Vec<_>>().join("    "));
        if (row + 1) * 4 < shown {
            println!();
        }
    }
    let wrong = report.pairs.iter().filter(|(l, p)| l != p).count();
    println!("(label -> prediction; x marks a mistake)");
    println!("test accuracy: {:.4} ({} of {} wrong)", report.accuracy, wrong, test.len());
    Ok(())
}
