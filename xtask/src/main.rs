//! `cargo xtask <command>`: project automation.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("test") => std::process::exit(run("cargo", &["test", "--workspace"])),
        _ => {
            eprintln!("usage: cargo xtask <test>");
            std::process::exit(2);
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
