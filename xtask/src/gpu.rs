//! `cargo xtask test-gpu [--bundle DIR]`.

use std::path::Path;
use std::process::Command;

/// Packages whose test suites run on the GPU.
pub const GPU_PACKAGES: &[&str] = &["tensor-cuda"];

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Runs the GPU suites here; `REQUIRE_GPU=1` turns a missing GPU into a failure.
pub fn test(root: &Path) -> Result<(), String> {
    let mut cmd = Command::new(cargo());
    cmd.current_dir(root).env("REQUIRE_GPU", "1").arg("test");
    for p in GPU_PACKAGES {
        cmd.args(["-p", p]);
    }
    let st = cmd.status().map_err(|e| format!("cannot run cargo: {e}"))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("GPU tests failed ({st})"))
    }
}

/// Builds release test binaries of the GPU suites into `dir/bin` and writes `dir/run.sh`.
pub fn bundle(root: &Path, dir: &Path) -> Result<(), String> {
    let mut cmd = Command::new(cargo());
    cmd.current_dir(root).args(["test", "--release", "--no-run", "--message-format=json"]);
    for p in GPU_PACKAGES {
        cmd.args(["-p", p]);
    }
    let out = cmd.stderr(std::process::Stdio::inherit()).output().map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!("building the test binaries failed ({})", out.status));
    }
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).map_err(|e| format!("creating {}: {e}", bin.display()))?;
    let mut n = 0;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if !line.contains("\"reason\":\"compiler-artifact\"") || !line.contains("\"test\":true") {
            continue;
        }
        let Some(exe) = json_string(line, "executable") else { continue };
        let src = Path::new(&exe);
        let name = src.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        std::fs::copy(src, bin.join(&name)).map_err(|e| format!("copying {exe}: {e}"))?;
        println!("bundled {name}");
        n += 1;
    }
    if n == 0 {
        return Err("cargo produced no test binaries".into());
    }
    let run = dir.join("run.sh");
    std::fs::write(&run, RUN_SH).map_err(|e| format!("writing {}: {e}", run.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o755));
    }
    println!("wrote {} ({n} test binaries); copy the folder to a GPU machine and run it", run.display());
    Ok(())
}

/// The value of `"key":"..."` in one line of cargo's JSON (paths need no unescaping
/// beyond `\\` and `\"`).
fn json_string(line: &str, key: &str) -> Option<String> {
    let pat = format!("\"{key}\":\"");
    let start = line.find(&pat)? + pat.len();
    let mut out = String::new();
    let mut chars = line[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return Some(out),
            c => out.push(c),
        }
    }
    None
}

const RUN_SH: &str = r#"#!/usr/bin/env bash
# Runs the bundled tensor-cuda GPU test binaries on a machine with an NVIDIA GPU, no
# cargo and no internet. Finds libcuda and the CUDA libraries (cuBLAS, NVRTC, NCCL,
# cuDNN) in the system paths, /usr/local/cuda, or a Python environment's nvidia/*/lib.
# Prints `N passed, M failed` last; exits non-zero when anything failed.
set -u
HERE="$(cd "$(dirname "$0")" && pwd)"
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
