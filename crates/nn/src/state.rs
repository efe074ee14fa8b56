//! [`StateDict`]: named tensors of a model, loading them back with PyTorch's checks,
//! and safetensors files.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};
use tensor_core::HostBuffer;
use tensor_core::{DType, Device, Error, Result, Tensor};

use crate::module::{Buffer, Param};

/// Named tensors in insertion order (PyTorch's `OrderedDict` state dict).
///
/// ```
/// use nn::{Linear, Module, StateDict};
/// let a = Linear::new(3, 2, true)?;
/// let b = Linear::new(3, 2, true)?;
/// let path = std::env::temp_dir().join(format!("nn-doc-{}.safetensors", std::process::id()));
/// a.save(&path)?;
/// b.load(&path)?;
/// assert_eq!(a.weight.tensor().to_vec2::<f32>()?, b.weight.tensor().to_vec2::<f32>()?);
/// assert_eq!(StateDict::load(&path)?.keys(), ["weight", "bias"]);
/// # std::fs::remove_file(&path).ok();
/// # Ok::<(), tensor_core::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct StateDict {
    entries: Vec<(String, Tensor)>,
    index: HashMap<String, usize>,
}

/// Keys that did not line up in a non-strict [`crate::Module::load_state_dict`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IncompatibleKeys {
    /// Names the module has but the state dict lacks (left unchanged).
    pub missing_keys: Vec<String>,
    /// Names in the state dict that the module does not have (ignored).
    pub unexpected_keys: Vec<String>,
}

impl IncompatibleKeys {
    /// True when every key matched.
    pub fn is_empty(&self) -> bool {
        self.missing_keys.is_empty() && self.unexpected_keys.is_empty()
    }
}

impl StateDict {
    /// An empty state dict.
    pub fn new() -> StateDict {
        StateDict::default()
    }

    /// Adds or replaces `name`.
    pub fn insert(&mut self, name: impl Into<String>, t: Tensor) {
        let name = name.into();
        match self.index.get(&name) {
            Some(&i) => self.entries[i].1 = t,
            None => {
                self.index.insert(name.clone(), self.entries.len());
                self.entries.push((name, t));
            }
        }
    }

    /// The tensor stored under `name`.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.index.get(name).map(|&i| &self.entries[i].1)
    }

    /// Removes `name`, returning its tensor.
    pub fn remove(&mut self, name: &str) -> Option<Tensor> {
        let i = self.index.remove(name)?;
        let (_, t) = self.entries.remove(i);
        for v in self.index.values_mut() {
            if *v > i {
                *v -= 1;
            }
        }
        Some(t)
    }

    /// The names, in order.
    pub fn keys(&self) -> Vec<String> {
        self.entries.iter().map(|(n, _)| n.clone()).collect()
    }

    /// `(name, tensor)` pairs, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.entries.iter().map(|(n, t)| (n.as_str(), t))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A deep copy (the live tensors of a model's state dict keep changing as it
    /// trains; a snapshot does not).
    pub fn snapshot(&self) -> Result<StateDict> {
        let mut sd = StateDict::new();
        for (n, t) in &self.entries {
            sd.insert(n.clone(), t.copy()?);
        }
        Ok(sd)
    }

    /// The safetensors encoding of these tensors (all dtypes; order kept in the
    /// metadata).
    pub fn to_safetensors_bytes(&self) -> Result<Vec<u8>> {
        self.to_safetensors_bytes_with(HashMap::new())
    }

    /// [`StateDict::to_safetensors_bytes`] with extra string metadata in the file's
    /// header (checkpoints keep their counters there).
    ///
    /// The header also records a digest of the whole content (every metadata entry
    /// and every tensor's name, dtype, shape and bytes) under `nn.fnv1a64`, which
    /// [`StateDict::from_safetensors_bytes_with_metadata`] checks; an entry of that
    /// name in `extra` is replaced.
    pub fn to_safetensors_bytes_with(&self, extra: HashMap<String, String>) -> Result<Vec<u8>> {
        let mut owned: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::with_capacity(self.entries.len());
        for (n, t) in &self.entries {
            let bytes = t.contiguous()?.to_cpu_buffer()?.to_bytes();
            owned.push((n.clone(), st_dtype(t.dtype()), t.dims().to_vec(), bytes));
        }
        let mut meta = extra;
        meta.remove(DIGEST_KEY);
        meta.insert(ORDER_KEY.to_string(), self.keys().join("\n"));
        meta.insert("format".to_string(), "pt".to_string());
        let dtypes: Vec<String> = owned.iter().map(|(_, dt, _, _)| dt.to_string()).collect();
        let digest = content_digest(
            &meta,
            owned.iter().zip(&dtypes).map(|((n, _, s, b), dt)| (n.as_str(), dt.as_str(), s.as_slice(), b.as_slice())),
        );
        meta.insert(DIGEST_KEY.to_string(), format!("{digest:016x}"));
        let mut views = Vec::with_capacity(owned.len());
        for (n, dt, shape, bytes) in &owned {
            let v = TensorView::new(*dt, shape.clone(), bytes)
                .map_err(|e| Error::arg("StateDict::save", format!("tensor {n}: {e}")))?;
            views.push((n.clone(), v));
        }
        safetensors::serialize(views, Some(meta)).map_err(|e| Error::arg("StateDict::save", e.to_string()))
    }

    /// Decodes safetensors bytes (on the CPU). `what` names the source in errors.
    pub fn from_safetensors_bytes(bytes: &[u8], what: &str) -> Result<StateDict> {
        Ok(Self::from_safetensors_bytes_with_metadata(bytes, what)?.0)
    }

    /// [`StateDict::from_safetensors_bytes`], also returning the header's string
    /// metadata (without the digest entry).
    ///
    /// A file written by [`StateDict::to_safetensors_bytes_with`] carries a digest of
    /// its content: when it does not match what the file decodes to (a flipped bit in
    /// a tensor or in the metadata), this is an [`Error::Format`] naming `what`, the
    /// recorded and the computed digest. Files without one (written by PyTorch, or by
    /// versions before the digest) are decoded unchecked, as before.
    pub fn from_safetensors_bytes_with_metadata(
        bytes: &[u8],
        what: &str,
    ) -> Result<(StateDict, HashMap<String, String>)> {
        let fmt = |msg: String| Error::Format { path: what.to_string(), msg };
        let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| fmt(e.to_string()))?;
        let (_, meta) = safetensors::SafeTensors::read_metadata(bytes).map_err(|e| fmt(e.to_string()))?;
        let mut extra: HashMap<String, String> = meta.metadata().clone().unwrap_or_default().into_iter().collect();
        if let Some(recorded) = extra.remove(DIGEST_KEY) {
            let want = u64::from_str_radix(&recorded, 16)
                .ok()
                .filter(|_| recorded.len() == 16)
                .ok_or_else(|| fmt(format!("malformed content digest {recorded:?} in the header")))?;
            let views = st.tensors();
            let dtypes: Vec<String> = views.iter().map(|(_, v)| v.dtype().to_string()).collect();
            let got = content_digest(
                &extra,
                views.iter().zip(&dtypes).map(|((n, v), dt)| (n.as_str(), dt.as_str(), v.shape(), v.data())),
            );
            if got != want {
                return Err(fmt(format!(
                    "content digest mismatch: the header records fnv1a64 {want:016x}, the contents hash to \
                     {got:016x} (the file is corrupt)"
                )));
            }
        }
        let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
        names.sort();
        if let Some(order) = extra.get(ORDER_KEY) {
            let listed: Vec<String> = order.split('\n').filter(|s| !s.is_empty()).map(String::from).collect();
            let mut sorted = listed.clone();
            sorted.sort();
            if sorted == names {
                names = listed;
            }
        }
        let mut sd = StateDict::new();
        for n in names {
            let v = st.tensor(&n).map_err(|e| fmt(format!("tensor {n}: {e}")))?;
            let dtype = match v.dtype() {
                Dtype::BOOL => DType::Bool,
                Dtype::U8 => DType::U8,
                Dtype::I32 => DType::I32,
                Dtype::I64 => DType::I64,
                Dtype::F16 => DType::F16,
                Dtype::BF16 => DType::BF16,
                Dtype::F32 => DType::F32,
                Dtype::F64 => DType::F64,
                other => return Err(fmt(format!("tensor {n}: unsupported dtype {other:?}"))),
            };
            // Like NumPy: the product of the nonzero sizes must fit in an isize, also
            // when another size is zero (the strides of such a shape are still used).
            let mut nonzero = v.shape().iter().filter(|&&d| d != 0);
            if nonzero.try_fold(1usize, |a, &d| a.checked_mul(d).filter(|&p| p <= isize::MAX as usize)).is_none() {
                return Err(fmt(format!("tensor {n}: shape {:?} is too big to address", v.shape())));
            }
            let numel: usize = v.shape().iter().product();
            if v.data().len() != numel * dtype.size_in_bytes() {
                return Err(fmt(format!("tensor {n}: {} bytes for shape {:?}", v.data().len(), v.shape())));
            }
            let buf = HostBuffer::from_bytes(dtype, v.data())
                .ok_or_else(|| fmt(format!("tensor {n}: data does not fit dtype {dtype}")))?;
            sd.insert(n, Tensor::from_cpu_buffer(buf, v.shape().to_vec())?);
        }
        Ok((sd, extra))
    }

    /// Writes a safetensors file atomically (see [`write_atomic`]).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        write_atomic(path.as_ref(), &self.to_safetensors_bytes()?)
    }

    /// Reads a safetensors file; a corrupt or truncated file is an `Err`.
    pub fn load(path: impl AsRef<Path>) -> Result<StateDict> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::Io { path: path.display().to_string(), source: e })?;
        StateDict::from_safetensors_bytes(&bytes, &path.display().to_string())
    }

    /// Moves every tensor to `device`.
    pub fn to_device(&self, device: &Device) -> Result<StateDict> {
        let mut sd = StateDict::new();
        for (n, t) in &self.entries {
            sd.insert(n.clone(), t.to_device(device)?);
        }
        Ok(sd)
    }
}

const ORDER_KEY: &str = "nn.order";

/// The metadata key under which [`StateDict::to_safetensors_bytes_with`] records the
/// file's content digest (see [`StateDict::from_safetensors_bytes_with_metadata`]).
const DIGEST_KEY: &str = "nn.fnv1a64";

/// 64-bit FNV-1a, continued from `h` (start from [`FNV_OFFSET`]). Any change of one
/// byte changes the result (every step is a bijection of the state), so a flipped bit
/// is always detected.
fn fnv1a64_update(h: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(h, |h, &x| (h ^ x as u64).wrapping_mul(0x100000001b3))
}

/// The starting state of [`fnv1a64_update`].
const FNV_OFFSET: u64 = 0xcbf29ce484222325;

/// The content digest of a safetensors file: every metadata entry but the digest
/// itself (sorted by key) and every tensor (sorted by name: name, dtype, shape and
/// bytes), each length-prefixed so that no two different contents give the same
/// stream. It does not depend on the header's layout, only on what it decodes to.
fn content_digest<'a>(
    meta: &HashMap<String, String>,
    tensors: impl Iterator<Item = (&'a str, &'a str, &'a [usize], &'a [u8])>,
) -> u64 {
    let mut h = FNV_OFFSET;
    let field = |h: &mut u64, b: &[u8]| {
        *h = fnv1a64_update(*h, &(b.len() as u64).to_le_bytes());
        *h = fnv1a64_update(*h, b);
    };
    let mut keys: Vec<&String> = meta.keys().filter(|k| k.as_str() != DIGEST_KEY).collect();
    keys.sort();
    field(&mut h, &(keys.len() as u64).to_le_bytes());
    for k in keys {
        field(&mut h, k.as_bytes());
        field(&mut h, meta[k].as_bytes());
    }
    let mut ts: Vec<_> = tensors.collect();
    ts.sort_by(|a, b| a.0.cmp(b.0));
    field(&mut h, &(ts.len() as u64).to_le_bytes());
    for (name, dtype, shape, data) in ts {
        field(&mut h, name.as_bytes());
        field(&mut h, dtype.as_bytes());
        let dims: Vec<u8> = shape.iter().flat_map(|&d| (d as u64).to_le_bytes()).collect();
        field(&mut h, &dims);
        field(&mut h, data);
    }
    h
}

/// Distinguishes the temporary files of concurrent writers within one process.
static TMP_COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A temporary name next to `path` that no other writer uses: the process id, a
/// per-process counter and the clock (so a reused process id does not meet an old
/// leftover either), e.g. `.model.safetensors.4242.7.1a2b3c.tmp`.
fn tmp_path(path: &Path, file_name: &std::ffi::OsStr) -> std::path::PathBuf {
    let n = TMP_COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".{}.{n}.{:x}.tmp", std::process::id(), nanos as u64));
    path.with_file_name(tmp_name)
}

/// Writes `bytes` to `path` atomically: a temporary file of its own in the same
/// folder (created exclusively, so concurrent writers, in this process or another,
/// never share one), flushed to disk, then renamed over `path` (and the folder
/// synced). A crash at any point leaves either the old file or the new one, never a
/// mix; of concurrent writers, the last rename wins whole. On an error the temporary
/// file is removed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |e: std::io::Error| Error::Io { path: path.display().to_string(), source: e };
    let file_name = path
        .file_name()
        .ok_or_else(|| Error::arg("write_atomic", format!("{} does not name a file", path.display())))?;
    // A clash with an existing file (a leftover, or a clock and counter that met one)
    // is retried under a new name; the file created is only ever this writer's.
    let mut attempt = 0;
    let (tmp, mut f) = loop {
        let tmp = tmp_path(path, file_name);
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(f) => break (tmp, f),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 16 => attempt += 1,
            Err(e) => return Err(io(e)),
        }
    };
    let mut write = || -> std::io::Result<()> {
        f.write_all(bytes)?;
        f.sync_all()
    };
    let written = write();
    drop(f);
    let result = written.and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(e));
    }
    // Make the rename itself durable (best effort: not every platform can open a
    // folder).
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

fn st_dtype(d: DType) -> Dtype {
    match d {
        DType::Bool => Dtype::BOOL,
        DType::U8 => Dtype::U8,
        DType::I32 => Dtype::I32,
        DType::I64 => Dtype::I64,
        DType::F16 => Dtype::F16,
        DType::BF16 => Dtype::BF16,
        DType::F32 => Dtype::F32,
        DType::F64 => Dtype::F64,
    }
}

/// Checks everything first, then copies, so a failed load changes nothing.
pub(crate) fn load_into(
    params: Vec<(String, Param)>,
    buffers: Vec<(String, Buffer)>,
    sd: &StateDict,
    strict: bool,
) -> Result<IncompatibleKeys> {
    let mut keys = IncompatibleKeys::default();
    let mut mismatches = Vec::new();
    let mut check = |name: &str, dims: Vec<usize>| {
        match sd.get(name) {
        None => keys.missing_keys.push(name.to_string()),
        Some(t) if t.dims() != dims.as_slice() => mismatches.push(format!(
            "size mismatch for {name}: copying a tensor with shape {:?} from the state dict, the shape in the current model is {dims:?}",
            t.dims()
        )),
        Some(_) => {}
    }
    };
    for (n, p) in &params {
        check(n, p.dims());
    }
    for (n, b) in &buffers {
        check(n, b.tensor().dims().to_vec());
    }
    let known: std::collections::HashSet<&str> =
        params.iter().map(|(n, _)| n.as_str()).chain(buffers.iter().map(|(n, _)| n.as_str())).collect();
    keys.unexpected_keys = sd.iter().map(|(n, _)| n).filter(|n| !known.contains(n)).map(String::from).collect();

    let mut errors = Vec::new();
    if strict {
        if !keys.missing_keys.is_empty() {
            errors.push(format!("missing key(s) in state_dict: {}", quoted(&keys.missing_keys)));
        }
        if !keys.unexpected_keys.is_empty() {
            errors.push(format!("unexpected key(s) in state_dict: {}", quoted(&keys.unexpected_keys)));
        }
    }
    errors.extend(mismatches);
    if !errors.is_empty() {
        return Err(Error::arg("load_state_dict", format!("error(s) in loading state_dict: {}", errors.join("; "))));
    }
    let _g = autograd::NoGradGuard::new();
    for (n, p) in &params {
        if let Some(t) = sd.get(n) {
            p.copy_from(t)?;
        }
    }
    for (n, b) in &buffers {
        if let Some(t) = sd.get(n) {
            b.copy_from(t)?;
        }
    }
    Ok(keys)
}

fn quoted(v: &[String]) -> String {
    v.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", ")
}
