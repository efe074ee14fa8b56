//! `cargo xtask test-gpu [--bundle DIR]`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The test target that holds each package's GPU tests (`tests/gpu.rs` or
/// `tests/gpu/main.rs`): tensor-cuda's op table on CUDA, and the examples crate's
/// autograd, optim and digits-CNN checks on CUDA against the CPU.
pub const GPU_TEST: &str = "gpu";

/// The example that times the CUDA workloads (its PyTorch twin is
/// `tools/bench/torch_gpu.py`).
pub const GPU_BENCH: &str = "gpu_bench";

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Runs the GPU suites here; `REQUIRE_GPU=1` turns a missing GPU into a failure.
///
/// The tests run one at a time, as in the bundle's `run.sh`: several seed the global
/// random generator and compare a CUDA run with a CPU run drawn from it.
pub fn test(root: &Path) -> Result<(), String> {
    let mut cmd = Command::new(cargo());
    cmd.current_dir(root).env("REQUIRE_GPU", "1").args(["test", "--test", GPU_TEST, "--", "--test-threads=1"]);
    let st = cmd.status().map_err(|e| format!("cannot run cargo: {e}"))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("GPU tests failed ({st})"))
    }
}

/// Runs cargo with `args` (plus `--message-format=json`) and returns the executables
/// of the artifacts it reports, with the package each belongs to.
fn built_executables(root: &Path, args: &[&str]) -> Result<Vec<(String, String)>, String> {
    let out = Command::new(cargo())
        .current_dir(root)
        .args(args)
        .arg("--message-format=json")
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!("cargo {} failed ({})", args.join(" "), out.status));
    }
    Ok(artifact_executables(&String::from_utf8_lossy(&out.stdout)))
}

/// The `(package, executable)` of every `compiler-artifact` message with an executable
/// in cargo's `--message-format=json` output (one JSON object per line; other lines and
/// other messages are skipped).
fn artifact_executables(stdout: &str) -> Vec<(String, String)> {
    let mut exes = Vec::new();
    for line in stdout.lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        let Some(exe) = msg["executable"].as_str() else { continue };
        let pkg = msg["package_id"].as_str().map(package_name).unwrap_or_else(|| "pkg".into());
        exes.push((pkg, exe.to_string()));
    }
    exes
}

/// The package name in a cargo package id: `path+file:///w/crates/tensor-cuda#torch-rs-cuda@0.1.0`
/// names `torch-rs-cuda`, `path+file:///w/examples#0.1.0` (name and folder the same)
/// names `examples`, and the old form `examples 0.1.0 (path+file:///w/examples)` names
/// `examples`.
fn package_name(id: &str) -> String {
    if let Some((url, frag)) = id.rsplit_once('#') {
        match frag.split_once('@') {
            Some((name, _)) => name.to_string(),
            None => url.rsplit('/').next().unwrap_or(url).to_string(),
        }
    } else {
        id.split_whitespace().next().unwrap_or(id).to_string()
    }
}

fn write_script(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755));
    }
    Ok(())
}

fn copy(src: &Path, dst: &Path) -> Result<(), String> {
    std::fs::copy(src, dst).map(|_| ()).map_err(|e| format!("copying {} to {}: {e}", src.display(), dst.display()))
}

/// Builds release binaries of the GPU suites into `dir/bin` and the benchmark into
/// `dir/bench`, copies the data and the PyTorch script they need, and writes
/// `dir/run.sh` (the tests) and `dir/bench.sh` (both sides of the benchmark).
pub fn bundle(root: &Path, dir: &Path) -> Result<(), String> {
    let tests = built_executables(root, &["test", "--release", "--no-run", "--test", GPU_TEST])?;
    let benches = built_executables(root, &["build", "--release", "--example", GPU_BENCH])?;
    let bin = dir.join("bin");
    let bench = dir.join("bench");
    for d in [&bin, &bench, &dir.join("data")] {
        std::fs::create_dir_all(d).map_err(|e| format!("creating {}: {e}", d.display()))?;
    }
    let mut n = 0;
    for (pkg, exe) in &tests {
        let src = Path::new(exe);
        let file = src.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        let name = format!("{pkg}-{file}");
        copy(src, &bin.join(&name))?;
        println!("bundled {name}");
        n += 1;
    }
    if n == 0 {
        return Err("cargo produced no test binaries".into());
    }
    let (_, exe) = benches
        .iter()
        .find(|(_, e)| Path::new(e).file_name().is_some_and(|f| f == GPU_BENCH))
        .ok_or_else(|| format!("cargo produced no {GPU_BENCH} binary"))?;
    copy(Path::new(exe), &bench.join(GPU_BENCH))?;
    copy(&root.join("tools/bench/torch_gpu.py"), &bench.join("torch_gpu.py"))?;
    copy(&root.join("data/digits.csv.gz"), &dir.join("data/digits.csv.gz"))?;
    // The release profile keeps line tables for profiling; the bundle does not need
    // them (stripping takes each binary from ~200 MB to ~20 MB). Best effort.
    let mut stripped: Vec<PathBuf> = Vec::new();
    for d in [&bin, &bench] {
        for e in std::fs::read_dir(d).map_err(|e| format!("listing {}: {e}", d.display()))?.flatten() {
            if e.path().extension().is_none() {
                stripped.push(e.path());
            }
        }
    }
    match Command::new("strip").arg("--strip-all").args(&stripped).status() {
        Ok(st) if st.success() => println!("stripped {} binaries", stripped.len()),
        _ => println!("strip failed or is missing; the binaries keep their debug info"),
    }
    write_script(&dir.join("run.sh"), &format!("{LIB_SH}{RUN_SH}"))?;
    write_script(&dir.join("bench.sh"), &format!("{LIB_SH}{BENCH_SH}"))?;
    println!(
        "wrote {} ({n} test binaries) and {}; copy the folder to a GPU machine and run them",
        dir.join("run.sh").display(),
        dir.join("bench.sh").display()
    );
    Ok(())
}

/// The start of both scripts: finds the CUDA libraries and sets `LD_LIBRARY_PATH`.
const LIB_SH: &str = r#"#!/usr/bin/env bash
# Generated by `cargo xtask test-gpu --bundle`. Runs on a machine with an NVIDIA GPU, no
# cargo and no internet. Finds libcuda and the CUDA libraries (cuBLAS, NVRTC, NCCL,
# cuDNN) in the system paths, /usr/local/cuda, or a Python environment's nvidia/*/lib.
set -u
HERE="$(cd "$(dirname "$0")" && pwd)"
export DIGITS_PATH="$HERE/data/digits.csv.gz"
LIBS="$HERE/libs"
mkdir -p "$LIBS"

dirs=()
add() { [ -d "$1" ] && dirs+=("$1"); }
add /usr/local/cuda/lib64
add /usr/local/cuda/targets/x86_64-linux/lib
for d in /usr/local/cuda-*/lib64; do add "$d"; done
# Every Python on PATH that has the nvidia-* wheels (PyTorch's environment included).
for py in python3 python; do
  command -v "$py" >/dev/null 2>&1 || continue
  for nv in $("$py" -c 'import nvidia; print(" ".join(list(nvidia.__path__)))' 2>/dev/null); do
    for d in "$nv"/*/lib "$nv"/cu*/lib; do add "$d"; done
  done
done
for d in /usr/local/lib/python3*/dist-packages/nvidia/*/lib /usr/lib/python3*/site-packages/nvidia/*/lib \
         "$HOME"/.local/lib/python3*/site-packages/nvidia/*/lib /opt/conda/lib/python3*/site-packages/nvidia/*/lib \
         /opt/*/lib/python3*/site-packages/nvidia/*/lib; do
  add "$d"
done

# NCCL ships as libnccl.so.2, a name the bindings do not try: link libnccl.so to it.
for d in "${dirs[@]}"; do
  if [ -e "$d/libnccl.so.2" ] && [ ! -e "$LIBS/libnccl.so" ]; then ln -sf "$d/libnccl.so.2" "$LIBS/libnccl.so"; fi
done
LD_LIBRARY_PATH="$LIBS"
for d in "${dirs[@]}"; do LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$d"; done
export LD_LIBRARY_PATH="$LD_LIBRARY_PATH${LD_LIBRARY_PATH_ORIG:+:$LD_LIBRARY_PATH_ORIG}"

echo "== library search path"
echo "$LD_LIBRARY_PATH" | tr ':' '\n' | sed 's/^/  /'
echo "== libraries"
find_lib() {
  local name="$1" d
  IFS=: read -ra parts <<< "$LD_LIBRARY_PATH"
  for d in "${parts[@]}"; do
    if [ -e "$d/$name" ]; then echo "  $name: $d/$name"; return 0; fi
  done
  local sys
  sys=$(ldconfig -p 2>/dev/null | awk -v n="$name" '$1 == n {print $NF; exit}')
  if [ -n "$sys" ]; then echo "  $name: $sys"; return 0; fi
  echo "  $name: NOT FOUND"
  return 1
}
find_lib libcuda.so.1
find_lib libcublas.so.13 || find_lib libcublas.so.12 || true
find_lib libcublasLt.so.13 || find_lib libcublasLt.so.12 || true
find_lib libnvrtc.so.13 || true
find_lib libnccl.so || true
find_lib libcudnn.so.9 || true
command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
"#;

/// Runs every bundled test binary; prints `N passed, M failed` last.
const RUN_SH: &str = r#"
passed=0
failed=0
for t in "$HERE"/bin/*; do
  [ -x "$t" ] || continue
  echo "== $(basename "$t")"
  log="$(mktemp)"
  REQUIRE_GPU=1 "$t" --test-threads=1 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  p=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed; [0-9]+ failed' "$log" | awk '{s += $4} END {print s + 0}')
  f=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed; [0-9]+ failed' "$log" | awk '{s += $6} END {print s + 0}')
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    echo "$(basename "$t") exited with status $rc"
    f=1
  fi
  passed=$((passed + p))
  failed=$((failed + f))
  rm -f "$log"
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
"#;

/// Runs the benchmark on both sides (PyTorch when importable) and prints the table.
const BENCH_SH: &str = r#"
REPS="${1:-15}"
echo "== this stack"
"$HERE/bench/gpu_bench" --reps "$REPS" | tee "$HERE/ours.txt"
PY=""
for py in python3 python; do
  if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then PY="$py"; break; fi
done
if [ -z "$PY" ]; then
  echo "== PyTorch: skipped (no python with CUDA torch importable)"
  : > "$HERE/torch.txt"
else
  echo "== PyTorch"
  "$PY" "$HERE/bench/torch_gpu.py" --reps "$REPS" | tee "$HERE/torch.txt"
fi
echo "== table (ratio > 1: this stack is faster)"
awk '
  FNR == NR && $1 == "RESULT" { ours[$2] = $3; unit[$2] = $4; lo[$2] = $5; hi[$2] = $6; order[++n] = $2; next }
  $1 == "RESULT" { theirs[$2] = $3 }
  END {
    printf "%-24s %14s %14s %8s\n", "workload", "this stack", "PyTorch", "ratio"
    for (i = 1; i <= n; i++) {
      k = order[i]
      t = (k in theirs) ? sprintf("%.3f", theirs[k]) : "-"
      r = "-"
      if (k in theirs && theirs[k] > 0 && ours[k] > 0) r = sprintf("%.2fx", unit[k] == "ms" ? theirs[k] / ours[k] : ours[k] / theirs[k])
      printf "%-24s %10.3f %-3s %14s %8s   (min-max %s-%s)\n", k, ours[k], unit[k], t, r, lo[k], hi[k]
    }
  }' "$HERE/ours.txt" "$HERE/torch.txt"
"#;

#[cfg(test)]
mod tests {
    use super::*;

    /// Real lines of `cargo test --no-run --message-format=json` (trimmed), with a
    /// path holding a quote and a backslash that the old string search got wrong.
    #[test]
    fn executables_from_cargo_json() {
        let out = r#"{"reason":"compiler-artifact","package_id":"path+file:///w/crates/tensor-cuda#torch-rs-cuda@0.1.0","manifest_path":"/w/crates/tensor-cuda/Cargo.toml","target":{"kind":["test"],"name":"gpu"},"profile":{"test":true},"features":[],"filenames":["/w/target/release/deps/gpu-1a2b"],"executable":"/w/target/release/deps/gpu-1a2b","fresh":true}
{"reason":"compiler-artifact","package_id":"registry+https://github.com/rust-lang/crates.io-index#libc@0.2.180","target":{"kind":["lib"],"name":"libc"},"filenames":["/w/target/release/deps/liblibc.rlib"],"executable":null,"fresh":true}
{"reason":"compiler-message","package_id":"path+file:///w/examples#0.1.0","message":{"rendered":"warning: \"executable\":\"/not/this\""}}
not json at all
{"reason":"compiler-artifact","package_id":"path+file:///w/ex\"a\\mples#0.1.0","executable":"/w/t\"q\\x/gpu-9f","fresh":false}
{"reason":"build-finished","success":true}
"#;
        let exes = artifact_executables(out);
        assert_eq!(
            exes,
            vec![
                ("torch-rs-cuda".to_string(), "/w/target/release/deps/gpu-1a2b".to_string()),
                ("ex\"a\\mples".to_string(), "/w/t\"q\\x/gpu-9f".to_string()),
            ]
        );
    }

    #[test]
    fn package_names_from_ids() {
        assert_eq!(package_name("path+file:///w/crates/tensor-cuda#torch-rs-cuda@0.1.0"), "torch-rs-cuda");
        assert_eq!(package_name("path+file:///w/examples#0.1.0"), "examples");
        assert_eq!(package_name("examples 0.1.0 (path+file:///w/examples)"), "examples");
    }
}
