//! `cargo xtask <command>`: project automation.
//!
//! - `test`: `cargo test --workspace`.
//! - `ptx [--check]`: compile `kernels/*.cu` to the committed PTX of tensor-cuda (see
//!   [`ptx`]); `--check` fails when the committed PTX is stale or does not assemble.
//! - `bench [--rounds N] [--reps N] [--threads N] [--only W1,..]`: the side-by-side CPU
//!   benchmark against PyTorch (see [`mod@bench`]); writes `docs/benchmarks.md`.
//! - `test-gpu [--bundle DIR]`: run the GPU test suites with `REQUIRE_GPU=1`, or build
//!   them as release binaries into `DIR` with a `run.sh` for a GPU machine without cargo.

mod bench;
mod gpu;
mod ptx;
mod sha256;

use std::path::PathBuf;

const USAGE: &str = "usage: cargo xtask <test | ptx [--check] | bench [options] | test-gpu [--bundle DIR]>";

/// The workspace root (xtask lives one level below it).
fn root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(PathBuf::from).unwrap_or(here)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match args.first().map(String::as_str) {
        Some("test") => run("cargo", &["test", "--workspace"]),
        Some("ptx") => {
            let check = match &args[1..] {
                [] => false,
                [c] if c == "--check" => true,
                _ => {
                    eprintln!("{USAGE}");
                    std::process::exit(2);
                }
            };
            report(ptx::run(&root(), check))
        }
        Some("bench") => match bench::Opts::parse(&root(), &args[1..]) {
            Ok(o) => report(bench::run(&root(), &o)),
            Err(e) => {
                eprintln!("{e}");
                2
            }
        },
        Some("test-gpu") => match &args[1..] {
            [] => report(gpu::test(&root())),
            [b, dir] if b == "--bundle" => report(gpu::bundle(&root(), &PathBuf::from(dir))),
            _ => {
                eprintln!("{USAGE}");
                2
            }
        },
        _ => {
            eprintln!("{USAGE}");
            2
        }
    };
    std::process::exit(code);
}

fn report(r: Result<(), String>) -> i32 {
    match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn run(cmd: &str, args: &[&str]) -> i32 {
    match std::process::Command::new(cmd).args(args).status() {
        Ok(s) => s.code().unwrap_or(1),
        Err(e) => {
            eprintln!("failed to run {cmd}: {e}");
            1
        }
    }
}
