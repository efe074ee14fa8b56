//! Checkpoints of a whole training run: model weights, optimizer state, scheduler
//! state, the random generator's state and the epoch/step, so that a resumed run
//! continues bit for bit where the interrupted one stopped.
//!
//! A checkpoint is one safetensors file (the tensors, and every number as JSON in its
//! metadata) written atomically, plus a small human-readable JSON sidecar
//! (`<file>.json`) with the counters. The safetensors file alone is enough to resume;
//! the sidecar, written after it, also records the file's length and checksum.
//!
//! Integrity: [`Checkpoint::load`] refuses a file that does not match what was
//! saved. Two checks guard it:
//!
//! - the file's header carries a digest of its whole content (written by
//!   [`nn::StateDict::to_safetensors_bytes_with`]), so a flipped bit in a tensor or in
//!   the metadata is an error even without the sidecar;
//! - when the sidecar exists, the file's length and FNV-1a checksum must equal the
//!   ones it records (truncation, an appended byte, any changed byte).
//!
//! A missing sidecar is not an error: [`Checkpoint::save`] removes the old sidecar
//! before it replaces the file and writes the new one after, so a crash in between
//! leaves a complete file without a sidecar (never a sidecar that describes another
//! file), and copying only the `.safetensors` file is allowed. Such a file is still
//! checked against its own digest. Only files written before the digest existed and
//! without their sidecar load unchecked.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use nn::{Module, StateDict};
use serde_json::{json, Value};
use tensor_core::{Error, Result, Tensor};

use crate::scheduler::{LrScheduler, SchedulerState};
use crate::state::OptimizerState;
use crate::Optimizer;

const FORMAT: &str = "torch-rs-checkpoint/1";
const META_KEY: &str = "checkpoint";
const MODEL: &str = "model.";
const OPTIM: &str = "optimizer.";

/// Everything needed to resume training.
///
/// ```
/// use autograd::Var;
/// use nn::{Forward, Linear, Module};
/// use optim::{Checkpoint, Optimizer, Sgd, SgdOptions};
/// use tensor_core::Tensor;
///
/// let model = Linear::new(3, 1, true)?;
/// let mut opt = Sgd::new(model.parameters(), SgdOptions { lr: 0.1, momentum: 0.9, ..Default::default() })?;
/// let x = Var::from(Tensor::ones([4, 3], tensor_core::DType::F32, &tensor_core::Device::cpu())?);
/// opt.zero_grad();
/// model.forward(&x)?.sum(&[], false)?.backward()?;
/// opt.step()?;
///
/// let path = std::env::temp_dir().join(format!("ckpt-doc-{}.safetensors", std::process::id()));
/// Checkpoint::capture(&model, &opt, None, 1, 1)?.save(&path)?;
///
/// // Later, in a fresh process: build the same model and optimizer, then restore.
/// let model2 = Linear::new(3, 1, true)?;
/// let mut opt2 = Sgd::new(model2.parameters(), SgdOptions { lr: 0.1, momentum: 0.9, ..Default::default() })?;
/// let ck = Checkpoint::load(&path)?;
/// ck.restore(&model2, &mut opt2, None)?;
/// assert_eq!((ck.epoch, ck.step), (1, 1));
/// assert_eq!(model.weight.tensor().to_vec2::<f32>()?, model2.weight.tensor().to_vec2::<f32>()?);
/// # std::fs::remove_file(&path).ok();
/// # std::fs::remove_file(path.with_extension("safetensors.json")).ok();
/// # Ok::<(), tensor_core::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Checkpoint {
    /// The model's state dict (a snapshot: later training does not change it).
    pub model: StateDict,
    /// The optimizer's state (a snapshot).
    pub optimizer: OptimizerState,
    /// The scheduler's state, when the run has one.
    pub scheduler: Option<SchedulerState>,
    /// The global random generator's state ([`tensor_core::random::global_state`]).
    pub rng: (u64, u64),
    /// Completed epochs (the caller's counter).
    pub epoch: u64,
    /// Completed optimizer steps (the caller's counter).
    pub step: u64,
}

impl Checkpoint {
    /// Captures the state of a run now (deep copies of every tensor).
    pub fn capture(
        model: &dyn Module,
        optimizer: &dyn Optimizer,
        scheduler: Option<&dyn LrScheduler>,
        epoch: u64,
        step: u64,
    ) -> Result<Checkpoint> {
        let mut opt = optimizer.state_dict()?;
        for ps in opt.state.values_mut() {
            for v in ps.values_mut() {
                if let crate::StateValue::Tensor(t) = v {
                    *t = t.copy()?;
                }
            }
        }
        Ok(Checkpoint {
            model: model.state_dict().snapshot()?,
            optimizer: opt,
            scheduler: scheduler.map(|s| s.state_dict()),
            rng: tensor_core::random::global_state(),
            epoch,
            step,
        })
    }

    /// Puts the saved state back into a freshly built model, optimizer and scheduler
    /// (and the global random generator). The model is loaded strictly; if the
    /// optimizer or scheduler state does not fit, the model is put back as it was and
    /// the error says what did not fit.
    pub fn restore(
        &self,
        model: &dyn Module,
        optimizer: &mut dyn Optimizer,
        scheduler: Option<&mut dyn LrScheduler>,
    ) -> Result<()> {
        match (&self.scheduler, &scheduler) {
            (None, Some(_)) => {
                return Err(Error::arg("Checkpoint::restore", "the checkpoint has no scheduler state to restore"))
            }
            (Some(s), None) => {
                return Err(Error::arg(
                    "Checkpoint::restore",
                    format!("the checkpoint holds the state of a {} scheduler: pass it one", s.scheduler),
                ))
            }
            _ => {}
        }
        let before = model.state_dict().snapshot()?;
        model.load_state_dict(&self.model, true)?;
        let rest = (|| -> Result<()> {
            optimizer.load_state_dict(&self.optimizer)?;
            if let (Some(s), Some(sched)) = (&self.scheduler, scheduler) {
                sched.load_state_dict(s)?;
            }
            Ok(())
        })();
        if let Err(e) = rest {
            model.load_state_dict(&before, true)?;
            return Err(e);
        }
        tensor_core::random::set_global_state(self.rng);
        Ok(())
    }

    /// The metadata as JSON (u64 counters as strings: JSON numbers are doubles).
    fn meta(&self, optimizer_json: Value) -> Value {
        json!({
            "format": FORMAT,
            "epoch": self.epoch.to_string(),
            "step": self.step.to_string(),
            "rng": [self.rng.0.to_string(), self.rng.1.to_string()],
            "optimizer": optimizer_json,
            "scheduler": self.scheduler.as_ref().map(|s| serde_json::from_str::<Value>(&s.to_json()).unwrap_or(Value::Null)),
            "model_keys": self.model.keys(),
        })
    }

    /// Writes the checkpoint: removes the old sidecar, writes the safetensors file
    /// atomically (a temporary file in the same folder, flushed, renamed over `path`),
    /// then the JSON sidecar `<path>.json` the same way. A crash at any point leaves
    /// a complete checkpoint at `path` (the previous one or the new one, possibly
    /// without its sidecar, which [`Checkpoint::load`] accepts). Saves from several
    /// threads of one process are serialized, so the sidecar always describes the
    /// file next to it.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        static SAVING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let (opt_json, opt_tensors) = self.optimizer.to_parts()?;
        let mut all = StateDict::new();
        for (n, t) in self.model.iter() {
            all.insert(format!("{MODEL}{n}"), t.clone());
        }
        for (n, t) in opt_tensors {
            all.insert(format!("{OPTIM}{n}"), t);
        }
        let meta = self.meta(opt_json);
        let text = meta.to_string();
        let mut extra = HashMap::new();
        extra.insert(META_KEY.to_string(), text);
        let bytes = all.to_safetensors_bytes_with(extra)?;
        let _one_at_a_time = SAVING.lock().unwrap_or_else(|e| e.into_inner());
        let side_path = sidecar(path);
        match std::fs::remove_file(&side_path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::Io { path: side_path.display().to_string(), source: e })
            }
            _ => {}
        }
        nn::write_atomic(path, &bytes)?;
        let mut side = meta;
        side["file_bytes"] = json!(bytes.len());
        side["file_fnv1a64"] = json!(format!("{:016x}", fnv1a64(&bytes)));
        if let Some(o) = side.as_object_mut() {
            o.remove("optimizer");
        }
        let pretty = serde_json::to_string_pretty(&side)
            .map_err(|e| Error::Format { path: path.display().to_string(), msg: e.to_string() })?;
        nn::write_atomic(&side_path, pretty.as_bytes())
    }

    /// Reads a checkpoint written by [`Checkpoint::save`]. A truncated or corrupt file
    /// (its content digest, or its length and checksum against the sidecar when there
    /// is one: see the [`Checkpoint`] docs), or one that lacks a tensor its metadata
    /// lists, is an [`Error::Format`] naming the file and what is wrong, with the
    /// expected and the found values; nothing is half-loaded.
    pub fn load(path: impl AsRef<Path>) -> Result<Checkpoint> {
        let path = path.as_ref();
        let what = path.display().to_string();
        let fmt = |msg: String| Error::Format { path: what.clone(), msg };
        let bytes = std::fs::read(path).map_err(|e| Error::Io { path: what.clone(), source: e })?;
        // The sidecar first: it tells a truncated or damaged file apart with the
        // lengths and checksums, before the decoder meets whatever is broken.
        verify_sidecar(path, &bytes)?;
        let (all, meta) = StateDict::from_safetensors_bytes_with_metadata(&bytes, &what)?;
        let text = meta.get(META_KEY).ok_or_else(|| fmt(format!("no {META_KEY:?} metadata: not a checkpoint file")))?;
        let m: Value = serde_json::from_str(text).map_err(|e| fmt(format!("bad checkpoint metadata: {e}")))?;
        if m["format"].as_str() != Some(FORMAT) {
            return Err(fmt(format!("unknown checkpoint format {}", m["format"])));
        }
        let num = |v: &Value, name: &str| -> Result<u64> {
            v.as_str().and_then(|s| s.parse().ok()).ok_or_else(|| fmt(format!("bad or missing {name}")))
        };
        let epoch = num(&m["epoch"], "epoch")?;
        let step = num(&m["step"], "step")?;
        let rng = (num(&m["rng"][0], "rng state")?, num(&m["rng"][1], "rng state")?);
        let mut model = StateDict::new();
        let mut opt_tensors: BTreeMap<String, Tensor> = BTreeMap::new();
        for (n, t) in all.iter() {
            if let Some(k) = n.strip_prefix(MODEL) {
                model.insert(k, t.clone());
            } else if let Some(k) = n.strip_prefix(OPTIM) {
                opt_tensors.insert(k.to_string(), t.clone());
            } else {
                return Err(fmt(format!("unexpected tensor {n:?}")));
            }
        }
        let keys = m["model_keys"].as_array().ok_or_else(|| fmt("missing model_keys".into()))?;
        for k in keys {
            let k = k.as_str().ok_or_else(|| fmt("bad model key".into()))?;
            if model.get(k).is_none() {
                return Err(fmt(format!("model tensor {k:?} is missing")));
            }
        }
        if keys.len() != model.len() {
            return Err(fmt(format!("{} model tensors but the metadata lists {}", model.len(), keys.len())));
        }
        let optimizer = OptimizerState::from_parts(&m["optimizer"], &opt_tensors, &what)?;
        let scheduler = match &m["scheduler"] {
            Value::Null => None,
            v => Some(SchedulerState::from_json(&v.to_string()).map_err(|e| fmt(format!("bad scheduler state: {e}")))?),
        };
        Ok(Checkpoint { model, optimizer, scheduler, rng, epoch, step })
    }
}

/// `<path>.json`: the sidecar next to a checkpoint file.
pub fn sidecar(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".json");
    PathBuf::from(s)
}

/// Checks `bytes` (the file at `path`) against the length and checksum its sidecar
/// records; no sidecar passes (see the module docs), an unreadable or malformed one
/// is an error.
fn verify_sidecar(path: &Path, bytes: &[u8]) -> Result<()> {
    let side = sidecar(path);
    let side_name = side.display().to_string();
    let text = match std::fs::read(&side) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::Io { path: side_name, source: e }),
    };
    let bad_side = |msg: &str| Error::Format { path: side_name.clone(), msg: msg.to_string() };
    let v: Value = serde_json::from_slice(&text).map_err(|e| bad_side(&format!("bad sidecar JSON: {e}")))?;
    let want_len = v["file_bytes"].as_u64().ok_or_else(|| bad_side("missing or bad \"file_bytes\""))?;
    let want_sum = v["file_fnv1a64"]
        .as_str()
        .filter(|s| s.len() == 16)
        .and_then(|s| u64::from_str_radix(s, 16).ok())
        .ok_or_else(|| bad_side("missing or bad \"file_fnv1a64\""))?;
    let (got_len, got_sum) = (bytes.len() as u64, fnv1a64(bytes));
    if (got_len, got_sum) != (want_len, want_sum) {
        return Err(Error::Format {
            path: path.display().to_string(),
            msg: format!(
                "the sidecar {side_name} records {want_len} bytes with fnv1a64 {want_sum:016x}, the file has \
                 {got_len} bytes with fnv1a64 {got_sum:016x} (the file is corrupt, truncated or not the one saved)"
            ),
        });
    }
    Ok(())
}

fn fnv1a64(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf29ce484222325u64, |h, &x| (h ^ x as u64).wrapping_mul(0x100000001b3))
}
