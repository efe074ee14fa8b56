//! `cargo xtask bench`: the side-by-side CPU benchmark against PyTorch.
//!
//! Builds this stack's side (`examples/examples/bench.rs`) in release mode, finds a
//! Python that can import `torch` (PyPI's `torch` or Debian's `python3-torch`), and
//! runs the two sides alternately for several rounds at the same thread count. Each
//! side reports one median per workload per round; the table gives the median of those
//! with their min-max, the speed ratio and the goal, and is written to
//! `docs/benchmarks.md` together with the machine, the versions and the date. Text
//! after the `<!-- notes -->` marker in that file (the analysis) is kept.
//!
//! With `--candle`, the graph-overhead workload (W7) is also timed with candle
//! (`tools/bench/candle_side`, a standalone crate built into `target/candle-side`), in
//! the same rounds, and the table gains a candle column.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Options of `cargo xtask bench`.
pub struct Opts {
    rounds: usize,
    reps: usize,
    threads: usize,
    only: Option<String>,
    out: Option<PathBuf>,
    build: bool,
    candle: bool,
}

const BENCH_USAGE: &str =
    "usage: cargo xtask bench [--rounds N] [--reps N] [--threads N] [--only W1,W2,..] [--out FILE | --no-write] [--no-build] [--candle]";

impl Opts {
    /// Parses the arguments after `bench`.
    pub fn parse(root: &Path, args: &[String]) -> Result<Opts, String> {
        let mut o = Opts {
            rounds: 5,
            reps: 10,
            threads: 2,
            only: None,
            out: Some(root.join("docs/benchmarks.md")),
            build: true,
            candle: false,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut num = |name: &str| -> Result<usize, String> {
                it.next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&v: &usize| v > 0)
                    .ok_or_else(|| format!("{name} needs a positive number\n{BENCH_USAGE}"))
            };
            match a.as_str() {
                "--rounds" => o.rounds = num("--rounds")?,
                "--reps" => o.reps = num("--reps")?,
                "--threads" => o.threads = num("--threads")?,
                "--only" => o.only = Some(it.next().ok_or(BENCH_USAGE)?.clone()),
                "--out" => o.out = Some(PathBuf::from(it.next().ok_or(BENCH_USAGE)?)),
                "--no-write" => o.out = None,
                "--no-build" => o.build = false,
                "--candle" => o.candle = true,
                _ => return Err(format!("unknown argument {a}\n{BENCH_USAGE}")),
            }
        }
        Ok(o)
    }
}

/// One workload's samples: one per round per side.
#[derive(Default)]
struct Samples {
    unit: String,
    ours: Vec<f64>,
    torch: Vec<f64>,
    candle: Vec<f64>,
}

/// Which implementation produced a sample.
#[derive(Clone, Copy, PartialEq)]
enum Side {
    Ours,
    Torch,
    Candle,
}

/// Runs the benchmark.
pub fn run(root: &Path, o: &Opts) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    if o.build {
        println!("building this stack's side (release)...");
        let st = Command::new(&cargo)
            .current_dir(root)
            .args(["build", "--release", "--example", "bench"])
            .status()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        if !st.success() {
            return Err(format!("building the bench example failed ({st})"));
        }
    }
    let target = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| root.join("target"));
    let ours_bin = target.join("release/examples/bench");
    if !ours_bin.exists() {
        return Err(format!("{} is missing: run without --no-build", ours_bin.display()));
    }
    let candle_dir = root.join("tools/bench/candle_side");
    let candle_bin = target.join("candle-side/release/candle-side");
    let w7 = o.only.as_deref().is_none_or(|w| w.split(',').any(|x| x == "W7"));
    let candle = o.candle && w7;
    if candle && o.build {
        println!("building the candle side (release)...");
        let st = Command::new(&cargo)
            .current_dir(&candle_dir)
            .env("CARGO_TARGET_DIR", target.join("candle-side"))
            .args(["build", "--release"])
            .status()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        if !st.success() {
            return Err(format!("building {} failed ({st})", candle_dir.display()));
        }
    }
    if candle && !candle_bin.exists() {
        return Err(format!("{} is missing: run without --no-build", candle_bin.display()));
    }
    let torch = find_torch();
    match &torch {
        Some((py, v)) => println!("PyTorch side: torch {v} ({py})"),
        None => println!(
            "PyTorch side SKIPPED: no python3 here can `import torch` \
             (pip install torch, or apt-get install python3-torch); only this stack is measured"
        ),
    }
    let script = root.join("tools/bench/torch_side.py");
    let mut only_args: Vec<String> = vec!["--reps".into(), o.reps.to_string()];
    if let Some(w) = &o.only {
        only_args.extend(["--only".into(), w.clone()]);
    }
    let mut table: BTreeMap<String, Samples> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for round in 0..o.rounds {
        println!("round {}/{}", round + 1, o.rounds);
        // Alternate which side goes first, so neither always runs on a warmer machine.
        let sides: [bool; 2] = if round % 2 == 0 { [true, false] } else { [false, true] };
        for ours in sides {
            if ours {
                let out =
                    run_side(Command::new(&ours_bin).args(&only_args).env("RAYON_NUM_THREADS", o.threads.to_string()))?;
                collect(&mut table, &mut order, &out, Side::Ours);
            } else if let Some((py, _)) = &torch {
                let mut c = Command::new(py);
                c.arg(&script).args(["--threads", &o.threads.to_string()]).args(&only_args);
                collect(&mut table, &mut order, &run_side(&mut c)?, Side::Torch);
            }
        }
        if candle {
            let mut c = Command::new(&candle_bin);
            c.args(["--reps", &o.reps.to_string()]).env("RAYON_NUM_THREADS", o.threads.to_string());
            collect(&mut table, &mut order, &run_side(&mut c)?, Side::Candle);
        }
    }
    if o.only.as_deref().is_none_or(|w| w.split(',').any(|x| x == "W5")) {
        println!("peak memory of 300 W5 steps");
        let out = run_side(Command::new(&ours_bin).arg("--rss").env("RAYON_NUM_THREADS", o.threads.to_string()))?;
        collect(&mut table, &mut order, &out, Side::Ours);
        if let Some((py, _)) = &torch {
            let mut c = Command::new(py);
            c.arg(&script).args(["--threads", &o.threads.to_string(), "--rss"]);
            collect(&mut table, &mut order, &run_side(&mut c)?, Side::Torch);
        }
    }
    let md = render(&table, &order, o, torch.as_ref().map(|t| t.1.as_str()));
    println!("\n{md}");
    if let Some(path) = &o.out {
        let notes = std::fs::read_to_string(path)
            .ok()
            .and_then(|old| old.find(NOTES).map(|i| old[i..].to_string()))
            .unwrap_or_else(|| format!("{NOTES}\n"));
        std::fs::write(path, format!("{md}\n{notes}")).map_err(|e| format!("writing {}: {e}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

const NOTES: &str = "<!-- notes -->";

fn find_torch() -> Option<(String, String)> {
    for py in ["python3", "python"] {
        // An interpreter that is missing is skipped like one without torch.
        let Ok(out) = Command::new(py).args(["-c", "import torch; print(torch.__version__)"]).output() else {
            continue;
        };
        if out.status.success() {
            return Some((py.to_string(), String::from_utf8_lossy(&out.stdout).trim().to_string()));
        }
    }
    None
}

fn run_side(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{cmd:?} failed ({}):\n{}", out.status, String::from_utf8_lossy(&out.stderr)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One `{"workload": .., "unit": .., "value": ..}` line of a side's output (a `null`
/// value, a measurement that failed, is NaN), or `None` for any other line (other JSON
/// objects, a value that is not a number, text).
fn parse_result(line: &str) -> Option<(String, String, f64)> {
    let v: serde_json::Value = serde_json::from_str(line.trim()).ok()?;
    let value = if v["value"].is_null() { f64::NAN } else { v["value"].as_f64()? };
    Some((v["workload"].as_str()?.to_string(), v["unit"].as_str()?.to_string(), value))
}

/// Adds each `{"workload": .., "unit": .., "value": ..}` line of `out` to the table.
fn collect(table: &mut BTreeMap<String, Samples>, order: &mut Vec<String>, out: &str, side: Side) {
    for line in out.lines() {
        let Some((w, u, v)) = parse_result(line) else { continue };
        if side == Side::Candle && !table.contains_key(&w) {
            continue; // only workloads this stack also ran
        }
        if !table.contains_key(&w) {
            order.push(w.clone());
        }
        let s = table.entry(w).or_default();
        s.unit = u;
        match side {
            Side::Ours => s.ours.push(v),
            Side::Torch => s.torch.push(v),
            Side::Candle => s.candle.push(v),
        }
    }
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn cell(v: &[f64]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    let lo = v.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    format!("{} [{}-{}]", fmt(median(v)), fmt(lo), fmt(hi))
}

fn fmt(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// Higher is better for throughputs, lower for times and memory.
fn higher_is_better(unit: &str) -> bool {
    unit.ends_with("/s")
}

/// The goal of issue #6 for a workload: a speed ratio against PyTorch (this stack's
/// advantage, > 1 = faster or leaner), or an absolute bound.
enum Goal {
    Ratio(f64),
    AtMost(f64),
    None,
}

fn goal(workload: &str) -> Goal {
    match workload {
        w if w.starts_with("W1 matmul 1024") || w.starts_with("W1 matmul 2048") => Goal::Ratio(1.0),
        w if w.starts_with("W2") => Goal::Ratio(2.0),
        w if w.starts_with("W3") || w.starts_with("W4") || w.starts_with("W10") => Goal::Ratio(1.0),
        w if w.starts_with("W5 peak RSS") => Goal::Ratio(1.0),
        w if w.starts_with("W5") || w.starts_with("W6") || w.starts_with("W8") || w.starts_with("W9") => {
            Goal::Ratio(1.25)
        }
        w if w.starts_with("W7 graph") => Goal::AtMost(4.0),
        w if w.starts_with("W7 single") => Goal::AtMost(0.2),
        _ => Goal::None,
    }
}

fn render(table: &BTreeMap<String, Samples>, order: &[String], o: &Opts, torch: Option<&str>) -> String {
    let sh = |c: &str, a: &[&str]| {
        Command::new(c)
            .args(a)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mut md = String::new();
    md.push_str("# CPU benchmarks: this stack vs PyTorch\n\n");
    md.push_str("Written by `cargo xtask bench` (do not edit above the notes marker).\n\n");
    md.push_str(&format!("- date: {}\n", sh("date", &["-u", "+%Y-%m-%d %H:%M UTC"])));
    md.push_str(&format!("- machine: {cpu}, {cores} cores visible\n"));
    md.push_str(&format!(
        "- this stack: {}, release build, f32, {} threads (rayon)\n",
        sh("rustc", &["-V"]),
        o.threads
    ));
    match torch {
        Some(v) => md.push_str(&format!("- PyTorch: {v}, `torch.set_num_threads({})`\n", o.threads)),
        None => md.push_str("- PyTorch: not importable here, its side was skipped\n"),
    }
    md.push_str(&format!(
        "- method: {} rounds alternating the two sides; each round reports the median of {} timed repetitions after warm-up; \
         cells are the median over rounds [min-max]\n",
        o.rounds, o.reps
    ));
    let with_candle = table.values().any(|s| !s.candle.is_empty());
    if with_candle {
        md.push_str("- candle: `tools/bench/candle_side` (W7 only), run after the other two in each round\n");
    }
    md.push('\n');
    if with_candle {
        md.push_str("| workload | unit | this stack | PyTorch | candle | advantage | goal | met |\n");
        md.push_str("|---|---|---|---|---|---|---|---|\n");
    } else {
        md.push_str("| workload | unit | this stack | PyTorch | advantage | goal | met |\n");
        md.push_str("|---|---|---|---|---|---|---|\n");
    }
    for w in order {
        let s = &table[w];
        let (mo, mt) = (median(&s.ours), median(&s.torch));
        let adv = if higher_is_better(&s.unit) { mo / mt } else { mt / mo };
        let adv_s = if adv.is_finite() { format!("{adv:.2}x") } else { "-".into() };
        let (goal_s, met) = match goal(w) {
            Goal::Ratio(r) => (format!(">= {r:.2}x"), if adv.is_finite() { yes(adv >= r) } else { "-" }),
            Goal::AtMost(b) => (format!("<= {b} {}", s.unit), yes(mo <= b)),
            Goal::None => ("-".into(), "-"),
        };
        let candle_cell = if with_candle { format!(" {} |", cell(&s.candle)) } else { String::new() };
        md.push_str(&format!(
            "| {w} | {} | {} | {} |{candle_cell} {adv_s} | {goal_s} | {met} |\n",
            s.unit,
            cell(&s.ours),
            cell(&s.torch)
        ));
    }
    md.push_str(
        "\nadvantage: this stack's throughput over PyTorch's, or PyTorch's time (memory) over this stack's; above 1 \
         means this stack is faster (leaner).\n",
    );
    md
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_lines_parse_and_other_lines_do_not() {
        // This stack's side prints `"key": value`; the PyTorch side's json.dumps the same.
        let r = parse_result(r#"{"workload": "W1 matmul 256", "unit": "GFLOP/s", "value": 123.5}"#);
        assert_eq!(r, Some(("W1 matmul 256".into(), "GFLOP/s".into(), 123.5)));
        let r = parse_result(r#"{"workload":"W3, \"odd\" name","unit":"ms","value":2e-3}"#);
        assert_eq!(r, Some(("W3, \"odd\" name".into(), "ms".into(), 0.002)));
        let (_, _, v) = parse_result(r#"{"workload": "W5 peak RSS", "unit": "MB", "value": null}"#).unwrap();
        assert!(v.is_nan());
        for other in [r#"{"threads": 2}"#, r#"{"workload": "W1", "unit": "x", "value": "fast"}"#, "round 1/3", ""] {
            assert_eq!(parse_result(other), None, "{other}");
        }
    }

    #[test]
    fn collect_fills_the_table_in_first_seen_order() {
        let mut table = BTreeMap::new();
        let mut order = Vec::new();
        let ours = "{\"threads\": 2}\n{\"workload\": \"W2 add\", \"unit\": \"GB/s\", \"value\": 10}\n{\"workload\": \"W1 mm\", \"unit\": \"GFLOP/s\", \"value\": 5.5}\n";
        collect(&mut table, &mut order, ours, Side::Ours);
        collect(&mut table, &mut order, "{\"workload\": \"W2 add\", \"unit\": \"GB/s\", \"value\": 12}", Side::Torch);
        collect(&mut table, &mut order, "{\"workload\": \"W9 new\", \"unit\": \"ms\", \"value\": 1}", Side::Candle);
        assert_eq!(order, ["W2 add", "W1 mm"]);
        assert_eq!(table["W2 add"].ours, [10.0]);
        assert_eq!(table["W2 add"].torch, [12.0]);
        assert_eq!(table["W1 mm"].unit, "GFLOP/s");
        assert!(!table.contains_key("W9 new"));
    }
}
