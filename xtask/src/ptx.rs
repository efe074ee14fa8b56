//! `cargo xtask ptx [--check]`: compiles `kernels/*.cu` to PTX with NVRTC from pinned
//! PyPI wheels, assembles the PTX with ptxas for sm_80 and sm_90, and writes (or checks)
//! `crates/tensor-cuda/ptx/` with its manifest.

use std::ffi::{c_char, c_int, CStr, CString};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::sha256::hex_digest;

/// The wheels, pinned: NVRTC 13.0 emits PTX ISA 9.0, which driver 580 (CUDA 13.0) loads.
/// A newer NVRTC would emit PTX that older drivers reject.
pub const PINS: [&str; 3] = ["nvidia-cuda-nvrtc==13.0.88", "nvidia-cuda-runtime==13.0.96", "nvidia-cuda-nvcc==13.0.88"];
/// The virtual architecture the PTX targets (the lowest with bf16 arithmetic).
const ARCH: &str = "compute_80";
/// Real architectures ptxas must accept the PTX for.
const SM: [&str; 2] = ["sm_80", "sm_90"];
/// The newest PTX ISA a CUDA 13.0 driver (580) loads.
const MAX_PTX_ISA: (u32, u32) = (9, 0);

type Res<T> = Result<T, String>;

/// Paths of the installed tools.
struct Tools {
    lib: PathBuf,
    include: PathBuf,
    ptxas: PathBuf,
}

/// Installs the pinned wheels into `<target>/cuda-tools` unless already there.
fn install_tools(root: &Path) -> Res<Tools> {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    let dir = target.join("cuda-tools");
    let cu = dir.join("nvidia").join("cu13");
    let tools = Tools { lib: cu.join("lib"), include: cu.join("include"), ptxas: cu.join("bin").join("ptxas") };
    let stamp = dir.join(".pins");
    let want = PINS.join("\n");
    let have = std::fs::read_to_string(&stamp).unwrap_or_default();
    let complete = tools.lib.join("libnvrtc.so.13").exists()
        && tools.include.join("cuda_fp16.h").exists()
        && tools.include.join("cuda_bf16.h").exists()
        && tools.ptxas.exists();
    if have == want && complete {
        return Ok(tools);
    }
    eprintln!("installing {} into {}", PINS.join(" "), dir.display());
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let status = Command::new(&python)
        .args(["-m", "pip", "install", "--quiet", "--no-deps", "--upgrade", "--target"])
        .arg(&dir)
        .args(PINS)
        .status()
        .map_err(|e| format!("cannot run {python} -m pip: {e}"))?;
    if !status.success() {
        return Err(format!("pip install of {} failed ({status})", PINS.join(" ")));
    }
    std::fs::write(&stamp, want).map_err(|e| format!("writing {}: {e}", stamp.display()))?;
    for p in [tools.lib.join("libnvrtc.so.13"), tools.include.join("cuda_fp16.h"), tools.ptxas.clone()] {
        if !p.exists() {
            return Err(format!("{} missing after installing the wheels", p.display()));
        }
    }
    Ok(tools)
}

type NvrtcProgram = *mut std::ffi::c_void;

/// NVRTC loaded with dlopen.
struct Nvrtc {
    _builtins: libloading::Library,
    lib: libloading::Library,
}

impl Nvrtc {
    fn load(libdir: &Path) -> Res<Nvrtc> {
        // NVRTC dlopens libnvrtc-builtins by soname; loading it first by absolute path
        // (globally) makes that lookup find it without LD_LIBRARY_PATH.
        let open = |name: &str| -> Res<libloading::Library> {
            let p = libdir.join(name);
            // SAFETY: loading NVIDIA's NVRTC libraries; their initialisers are benign.
            unsafe {
                libloading::os::unix::Library::open(
                    Some(&p),
                    libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_GLOBAL,
                )
            }
            .map(libloading::Library::from)
            .map_err(|e| format!("cannot load {}: {e}", p.display()))
        };
        let builtins = open("libnvrtc-builtins.so.13.0")?;
        let lib = open("libnvrtc.so.13")?;
        Ok(Nvrtc { _builtins: builtins, lib })
    }

    fn version(&self) -> Res<(i32, i32)> {
        let (mut a, mut b) = (0, 0);
        // SAFETY: nvrtcVersion(int*, int*) writes two ints.
        unsafe {
            let f: libloading::Symbol<unsafe extern "C" fn(*mut c_int, *mut c_int) -> c_int> =
                self.lib.get(b"nvrtcVersion\0").map_err(|e| e.to_string())?;
            self.check(f(&mut a, &mut b), "nvrtcVersion")?;
        }
        Ok((a, b))
    }

    fn check(&self, code: c_int, what: &str) -> Res<()> {
        if code == 0 {
            return Ok(());
        }
        // SAFETY: nvrtcGetErrorString returns a static C string.
        let msg = unsafe {
            self.lib
                .get::<unsafe extern "C" fn(c_int) -> *const c_char>(b"nvrtcGetErrorString\0")
                .ok()
                .map(|f| CStr::from_ptr(f(code)).to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        Err(format!("{what} failed: {msg} ({code})"))
    }

    /// Compiles one source to PTX; returns (ptx, log).
    fn compile(&self, name: &str, src: &str, opts: &[String]) -> Res<(String, String)> {
        let csrc = CString::new(src).map_err(|e| e.to_string())?;
        let cname = CString::new(name).map_err(|e| e.to_string())?;
        let copts: Vec<CString> = opts.iter().map(|o| CString::new(o.as_str()).expect("no NUL in options")).collect();
        let optp: Vec<*const c_char> = copts.iter().map(|o| o.as_ptr()).collect();
        // SAFETY: the NVRTC C API used as documented; every pointer outlives the call.
        unsafe {
            type Create = unsafe extern "C" fn(
                *mut NvrtcProgram,
                *const c_char,
                *const c_char,
                c_int,
                *const *const c_char,
                *const *const c_char,
            ) -> c_int;
            type CompileFn = unsafe extern "C" fn(NvrtcProgram, c_int, *const *const c_char) -> c_int;
            type SizeFn = unsafe extern "C" fn(NvrtcProgram, *mut usize) -> c_int;
            type GetFn = unsafe extern "C" fn(NvrtcProgram, *mut c_char) -> c_int;
            type Destroy = unsafe extern "C" fn(*mut NvrtcProgram) -> c_int;
            let sym = |n: &[u8]| -> Res<*const ()> {
                self.lib.get::<*const ()>(n).map(|s| *s).map_err(|e| format!("NVRTC symbol missing: {e}"))
            };
            let create: Create = std::mem::transmute(sym(b"nvrtcCreateProgram\0")?);
            let compile: CompileFn = std::mem::transmute(sym(b"nvrtcCompileProgram\0")?);
            let log_size: SizeFn = std::mem::transmute(sym(b"nvrtcGetProgramLogSize\0")?);
            let get_log: GetFn = std::mem::transmute(sym(b"nvrtcGetProgramLog\0")?);
            let ptx_size: SizeFn = std::mem::transmute(sym(b"nvrtcGetPTXSize\0")?);
            let get_ptx: GetFn = std::mem::transmute(sym(b"nvrtcGetPTX\0")?);
            let destroy: Destroy = std::mem::transmute(sym(b"nvrtcDestroyProgram\0")?);

            let mut prog: NvrtcProgram = std::ptr::null_mut();
            self.check(
                create(&mut prog, csrc.as_ptr(), cname.as_ptr(), 0, std::ptr::null(), std::ptr::null()),
                "nvrtcCreateProgram",
            )?;
            let rc = compile(prog, optp.len() as c_int, optp.as_ptr());
            let mut n = 0usize;
            let mut log = String::new();
            if log_size(prog, &mut n) == 0 && n > 1 {
                let mut buf = vec![0u8; n];
                get_log(prog, buf.as_mut_ptr() as *mut c_char);
                log = String::from_utf8_lossy(&buf[..n - 1]).into_owned();
            }
            if rc != 0 {
                destroy(&mut prog);
                return Err(format!("NVRTC failed to compile {name}:\n{log}"));
            }
            let mut n = 0usize;
            self.check(ptx_size(prog, &mut n), "nvrtcGetPTXSize")?;
            let mut buf = vec![0u8; n];
            self.check(get_ptx(prog, buf.as_mut_ptr() as *mut c_char), "nvrtcGetPTX")?;
            destroy(&mut prog);
            while buf.last() == Some(&0) {
                buf.pop();
            }
            Ok((String::from_utf8(buf).map_err(|e| e.to_string())?, log))
        }
    }
}

/// The committed outputs of one run.
struct Output {
    /// (file name, PTX text)
    ptx: Vec<(String, String)>,
    manifest: String,
}

fn read(p: &Path) -> Res<String> {
    std::fs::read_to_string(p).map_err(|e| format!("reading {}: {e}", p.display()))
}

/// Kernel sources (`*.cu`) and shared headers (`*.cuh`), sorted by name.
fn sources(kdir: &Path) -> Res<(Vec<PathBuf>, Vec<PathBuf>)> {
    let mut cu = Vec::new();
    let mut cuh = Vec::new();
    for e in std::fs::read_dir(kdir).map_err(|e| format!("reading {}: {e}", kdir.display()))? {
        let p = e.map_err(|e| e.to_string())?.path();
        match p.extension().and_then(|x| x.to_str()) {
            Some("cu") => cu.push(p),
            Some("cuh") => cuh.push(p),
            _ => {}
        }
    }
    cu.sort();
    cuh.sort();
    if cu.is_empty() {
        return Err(format!("no .cu files in {}", kdir.display()));
    }
    Ok((cu, cuh))
}

fn file_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Compiles every kernel file; returns the PTX and the manifest text.
fn compile_all(root: &Path, tools: &Tools) -> Res<Output> {
    let kdir = root.join("kernels");
    let (cu, cuh) = sources(&kdir)?;
    let nvrtc = Nvrtc::load(&tools.lib)?;
    let (maj, min) = nvrtc.version()?;
    if (maj, min) != (13, 0) {
        return Err(format!("expected NVRTC 13.0, found {maj}.{min}"));
    }
    // Include paths are given relative to the repository root so nothing machine
    // specific can reach the PTX; NVRTC resolves them against the working directory.
    let inc = tools.include.strip_prefix(root).map(Path::to_path_buf).unwrap_or_else(|_| tools.include.clone());
    let opts: Vec<String> = vec![
        format!("--gpu-architecture={ARCH}"),
        "-std=c++17".into(),
        "-I".into(),
        "kernels".into(),
        "-I".into(),
        inc.to_string_lossy().into_owned(),
    ];
    let prev = std::env::current_dir().map_err(|e| e.to_string())?;
    std::env::set_current_dir(root).map_err(|e| e.to_string())?;
    let mut manifest = String::new();
    let _ = writeln!(manifest, "# Generated by `cargo xtask ptx`; checked by `cargo xtask ptx --check`. Do not edit.");
    let _ = writeln!(manifest, "compiler NVRTC {maj}.{min} ({})", PINS.join(", "));
    let _ = writeln!(manifest, "options --gpu-architecture={ARCH} -std=c++17 -I kernels -I <nvidia/cu13/include>");
    let _ = writeln!(manifest, "assembled-with ptxas {}", SM.join(" "));
    for h in &cuh {
        let _ = writeln!(manifest, "header {} sha256 {}", file_name(h), hex_digest(read(h)?.as_bytes()));
    }
    let mut ptx = Vec::new();
    let mut result = Ok(());
    for f in &cu {
        let name = file_name(f);
        let src = read(f)?;
        match nvrtc.compile(&name, &src, &opts) {
            Ok((p, log)) => {
                if !log.trim().is_empty() {
                    eprintln!("NVRTC log for {name}:\n{log}");
                }
                let out = name.replace(".cu", ".ptx");
                let _ = writeln!(
                    manifest,
                    "source {name} sha256 {} -> {out} sha256 {}",
                    hex_digest(src.as_bytes()),
                    hex_digest(p.as_bytes())
                );
                ptx.push((out, p));
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    std::env::set_current_dir(prev).map_err(|e| e.to_string())?;
    result?;
    Ok(Output { ptx, manifest })
}

/// The `.version` of a PTX file.
fn ptx_isa(ptx: &str) -> Option<(u32, u32)> {
    let line = ptx.lines().find(|l| l.trim_start().starts_with(".version"))?;
    let v = line.split_whitespace().nth(1)?;
    let (a, b) = v.split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Per-function resource use parsed from `ptxas -v`.
#[derive(Default, Clone)]
struct Usage {
    regs: u32,
    smem: u32,
    spill_st: u32,
    spill_ld: u32,
    stack: u32,
}

fn num_before(s: &str, unit: &str) -> Option<u32> {
    let i = s.find(unit)?;
    s[..i].split_whitespace().last()?.parse().ok()
}

/// Assembles one PTX text with ptxas for `sm`; returns per-function usage.
fn ptxas(tools: &Tools, ptx_path: &Path, sm: &str) -> Res<Vec<(String, Usage)>> {
    let out = std::env::temp_dir().join(format!("xtask-ptxas-{}-{sm}.cubin", std::process::id()));
    let o = Command::new(&tools.ptxas)
        .arg("-v")
        .arg(format!("-arch={sm}"))
        .arg(ptx_path)
        .arg("-o")
        .arg(&out)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", tools.ptxas.display()))?;
    let _ = std::fs::remove_file(&out);
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    if !o.status.success() {
        return Err(format!("ptxas -arch={sm} rejected {}:\n{text}", ptx_path.display()));
    }
    let mut funcs: Vec<(String, Usage)> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            let name = rest.split('\'').next().unwrap_or("").to_string();
            funcs.push((name, Usage::default()));
        } else if let Some((_, u)) = funcs.last_mut() {
            if line.contains("bytes stack frame") {
                u.stack = num_before(line, "bytes stack frame").unwrap_or(0);
                u.spill_st = num_before(line, "bytes spill stores").unwrap_or(0);
                u.spill_ld = num_before(line, "bytes spill loads").unwrap_or(0);
            } else if line.contains("Used") && line.contains("registers") {
                u.regs = num_before(line, "registers").unwrap_or(0);
                u.smem = num_before(line, "bytes smem").unwrap_or(0);
            }
        }
        if line.starts_with("ptxas error") || line.starts_with("ptxas fatal") {
            return Err(format!("ptxas -arch={sm} reported an error for {}:\n{text}", ptx_path.display()));
        }
    }
    Ok(funcs)
}

/// Runs ptxas for every architecture over the PTX files in `dir` and prints the usage.
fn assemble_all(tools: &Tools, dir: &Path, files: &[String]) -> Res<()> {
    let mut spills = 0;
    for f in files {
        let p = dir.join(f);
        let text = read(&p)?;
        match ptx_isa(&text) {
            Some(v) if v <= MAX_PTX_ISA => {}
            Some(v) => {
                return Err(format!(
                    "{f}: PTX ISA {}.{} is newer than {}.{} (what driver 580 loads)",
                    v.0, v.1, MAX_PTX_ISA.0, MAX_PTX_ISA.1
                ))
            }
            None => return Err(format!("{f}: no .version line")),
        }
        let per_sm: Vec<Vec<(String, Usage)>> = SM.iter().map(|sm| ptxas(tools, &p, sm)).collect::<Res<_>>()?;
        println!("{f}: {} kernels", per_sm[0].len());
        println!("  {:<34} {}", "kernel", SM.map(|s| format!("{s}: regs smem spill(st/ld) stack")).join(" | "));
        for (i, (name, _)) in per_sm[0].iter().enumerate() {
            let cols: Vec<String> = per_sm
                .iter()
                .map(|v| {
                    let u = v.get(i).map(|x| x.1.clone()).unwrap_or_default();
                    if u.spill_st + u.spill_ld > 0 {
                        spills += 1;
                    }
                    format!("{:>4} {:>6} {:>5}/{:<5} {:>5}", u.regs, u.smem, u.spill_st, u.spill_ld, u.stack)
                })
                .collect();
            println!("  {name:<34} {}", cols.join(" | "));
        }
    }
    println!("ptxas {}: all PTX assembled ({spills} kernel/arch pairs with spills)", SM.join(", "));
    Ok(())
}

/// Writes (or with `check`, verifies) `kernels/ops.cuh`, the op codes the kernels
/// switch on, generated from tensor-core's op enums, and checks that every kernel file
/// handles every code: each `U_*`, `B_*` and `R_*` constant must appear as a `case`
/// label (or an `op == ` test) in some `.cu` file, so an op added to an enum without
/// its CUDA formula fails here, before any GPU run.
fn op_codes(root: &Path, check: bool) -> Res<()> {
    let path = root.join("kernels").join("ops.cuh");
    let header = tensor_core::backend::kernel_op_codes_header();
    if check {
        match std::fs::read_to_string(&path) {
            Ok(old) if old == header => {}
            _ => return Err(format!("{} is stale (run `cargo xtask ptx`)", path.display())),
        }
    } else {
        std::fs::write(&path, &header).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    let (cu, _) = sources(&root.join("kernels"))?;
    let mut kernels = String::new();
    for f in &cu {
        kernels.push_str(&read(f)?);
    }
    // Codes served by other kernels than a switch on the code: arg-reductions have
    // their own kernel, scans take a flag.
    let elsewhere = ["R_ARG_MAX", "R_ARG_MIN", "S_CUM_SUM", "S_CUM_PROD"];
    let missing: Vec<&str> = header
        .lines()
        .filter_map(|l| l.trim().split(" = ").next().filter(|n| n.len() > 2 && n.as_bytes()[1] == b'_'))
        .filter(|n| !elsewhere.contains(n))
        .filter(|n| !kernels.contains(&format!("case {n}:")) && !kernels.contains(&format!("op == {n}")))
        .collect();
    if !missing.is_empty() {
        return Err(format!("kernels/*.cu have no `case` for op codes: {}", missing.join(", ")));
    }
    println!("ops.cuh: {} op codes, every one handled by a kernel", header.matches(" = ").count());
    Ok(())
}

/// `cargo xtask ptx [--check]`.
pub fn run(root: &Path, check: bool) -> Res<()> {
    op_codes(root, check)?;
    let tools = install_tools(root)?;
    let out = compile_all(root, &tools)?;
    let pdir = root.join("crates").join("tensor-cuda").join("ptx");
    let names: Vec<String> = out.ptx.iter().map(|(n, _)| n.clone()).collect();
    if check {
        let mut stale = Vec::new();
        for (n, text) in &out.ptx {
            match std::fs::read_to_string(pdir.join(n)) {
                Ok(old) if &old == text => {}
                Ok(_) => stale.push(format!("{n} differs from a fresh compile")),
                Err(_) => stale.push(format!("{n} is missing")),
            }
        }
        match std::fs::read_to_string(pdir.join("manifest.txt")) {
            Ok(m) if m == out.manifest => {}
            Ok(_) => stale.push("manifest.txt differs".into()),
            Err(_) => stale.push("manifest.txt is missing".into()),
        }
        if let Ok(rd) = std::fs::read_dir(&pdir) {
            for e in rd.flatten() {
                let n = file_name(&e.path());
                if n.ends_with(".ptx") && !names.contains(&n) {
                    stale.push(format!("{n} has no kernel source"));
                }
            }
        }
        if !stale.is_empty() {
            return Err(format!("committed PTX is stale (run `cargo xtask ptx`):\n  {}", stale.join("\n  ")));
        }
        assemble_all(&tools, &pdir, &names)?;
        println!("ptx --check: {} PTX files up to date", names.len());
        return Ok(());
    }
    // Assemble from a temp dir first so a failing ptxas leaves the committed files alone.
    let tmp = std::env::temp_dir().join(format!("xtask-ptx-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).map_err(|e| e.to_string())?;
    for (n, text) in &out.ptx {
        std::fs::write(tmp.join(n), text).map_err(|e| e.to_string())?;
    }
    let r = assemble_all(&tools, &tmp, &names);
    let _ = std::fs::remove_dir_all(&tmp);
    r?;
    std::fs::create_dir_all(&pdir).map_err(|e| e.to_string())?;
    if let Ok(rd) = std::fs::read_dir(&pdir) {
        for e in rd.flatten() {
            if file_name(&e.path()).ends_with(".ptx") && !names.contains(&file_name(&e.path())) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    for (n, text) in &out.ptx {
        std::fs::write(pdir.join(n), text).map_err(|e| e.to_string())?;
    }
    std::fs::write(pdir.join("manifest.txt"), &out.manifest).map_err(|e| e.to_string())?;
    println!("wrote {} PTX files and manifest.txt to {}", names.len(), pdir.display());
    Ok(())
}
