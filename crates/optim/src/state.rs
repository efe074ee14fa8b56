//! Checkpoint structures: [`OptimizerState`] (PyTorch's optimizer `state_dict`) and
//! their files (a safetensors file whose metadata holds the numbers as JSON).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde_json::{json, Map, Value};
use tensor_core::{Error, Result, Tensor};

/// A hyperparameter value in a saved parameter group.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Hyper {
    /// A number (learning rate, weight decay, ...).
    Float(f64),
    /// A flag (nesterov, amsgrad, ...).
    Bool(bool),
    /// A pair (Adam's betas).
    Pair(f64, f64),
}

/// One entry of a parameter's saved state.
#[derive(Clone, Debug)]
pub enum StateValue {
    /// A buffer (momentum, moments).
    Tensor(Tensor),
    /// A number (the step count).
    Scalar(f64),
}

/// The saved state of one parameter: named buffers and numbers (`"exp_avg"`, `"step"`).
pub type ParamState = BTreeMap<String, StateValue>;

/// A saved parameter group: its options and the indices of its parameters (counting
/// across all groups in order, as PyTorch does).
#[derive(Clone, Debug, PartialEq)]
pub struct GroupState {
    /// The options by PyTorch's names (`"lr"`, `"betas"`, ...), plus `"initial_lr"`
    /// once a scheduler set it.
    pub options: BTreeMap<String, Hyper>,
    /// Indices of the group's parameters.
    pub params: Vec<usize>,
}

/// An optimizer's checkpoint, like PyTorch's `optimizer.state_dict()`: per-parameter
/// state keyed by parameter index, and the parameter groups.
#[derive(Clone, Debug)]
pub struct OptimizerState {
    /// The algorithm that wrote it (`"adam"`); loading into another one fails.
    pub optimizer: String,
    /// The parameter groups.
    pub param_groups: Vec<GroupState>,
    /// Per-parameter state for the parameters updated at least once.
    pub state: BTreeMap<usize, ParamState>,
}

const META_KEY: &str = "optimizer_state";

fn hyper_json(h: &Hyper) -> Value {
    match h {
        Hyper::Float(v) => json!(v),
        Hyper::Bool(b) => json!(b),
        Hyper::Pair(a, b) => json!([a, b]),
    }
}

fn hyper_from_json(path: &str, v: &Value) -> Result<Hyper> {
    let bad = || Error::Format { path: path.to_string(), msg: format!("bad hyperparameter value {v}") };
    match v {
        Value::Bool(b) => Ok(Hyper::Bool(*b)),
        Value::Number(n) => n.as_f64().map(Hyper::Float).ok_or_else(bad),
        Value::Array(a) if a.len() == 2 => match (a[0].as_f64(), a[1].as_f64()) {
            (Some(x), Some(y)) => Ok(Hyper::Pair(x, y)),
            _ => Err(bad()),
        },
        _ => Err(bad()),
    }
}

impl OptimizerState {
    /// The numbers as JSON (tensors are referred to by their file names).
    fn metadata_json(&self) -> Value {
        let groups: Vec<Value> = self
            .param_groups
            .iter()
            .map(|g| {
                let mut m = Map::new();
                for (k, v) in &g.options {
                    m.insert(k.clone(), hyper_json(v));
                }
                json!({"options": Value::Object(m), "params": g.params})
            })
            .collect();
        let mut state = Map::new();
        for (i, ps) in &self.state {
            let mut scalars = Map::new();
            let mut tensors = Vec::new();
            for (k, v) in ps {
                match v {
                    StateValue::Scalar(s) => {
                        scalars.insert(k.clone(), json!(s));
                    }
                    StateValue::Tensor(_) => tensors.push(k.clone()),
                }
            }
            state.insert(i.to_string(), json!({"scalars": Value::Object(scalars), "tensors": tensors}));
        }
        json!({"optimizer": self.optimizer, "param_groups": groups, "state": Value::Object(state)})
    }

    /// The numbers as JSON and the buffers as named tensors (`{index}.{key}`... named
    /// `state.{index}.{key}`), checking that every number can be written as JSON.
    pub(crate) fn to_parts(&self) -> Result<(Value, Vec<(String, Tensor)>)> {
        let finite = |h: &Hyper| match h {
            Hyper::Float(v) => v.is_finite(),
            Hyper::Pair(a, b) => a.is_finite() && b.is_finite(),
            Hyper::Bool(_) => true,
        };
        let all_finite = self.param_groups.iter().all(|g| g.options.values().all(finite))
            && self.state.values().flat_map(|ps| ps.values()).all(|v| match v {
                StateValue::Scalar(s) => s.is_finite(),
                StateValue::Tensor(_) => true,
            });
        if !all_finite {
            return Err(Error::arg(
                "OptimizerState::save",
                "the optimizer state holds a non-finite number, which JSON cannot store",
            ));
        }
        let mut tensors = Vec::new();
        for (i, ps) in &self.state {
            for (k, v) in ps {
                if let StateValue::Tensor(t) = v {
                    tensors.push((format!("state.{i}.{k}"), t.clone()));
                }
            }
        }
        Ok((self.metadata_json(), tensors))
    }

    /// Rebuilds a state from [`OptimizerState::to_parts`]'s output; `what` names the
    /// source in errors.
    pub(crate) fn from_parts(meta: &Value, tensors: &BTreeMap<String, Tensor>, what: &str) -> Result<OptimizerState> {
        let fmt = |msg: String| Error::Format { path: what.to_string(), msg };
        let optimizer = meta["optimizer"].as_str().ok_or_else(|| fmt("missing optimizer name".into()))?.to_string();
        let mut param_groups = Vec::new();
        for g in meta["param_groups"].as_array().ok_or_else(|| fmt("missing param_groups".into()))? {
            let mut options = BTreeMap::new();
            for (k, v) in g["options"].as_object().ok_or_else(|| fmt("group without options".into()))? {
                options.insert(k.clone(), hyper_from_json(what, v)?);
            }
            let params = g["params"]
                .as_array()
                .ok_or_else(|| fmt("group without params".into()))?
                .iter()
                .map(|v| v.as_u64().map(|u| u as usize).ok_or_else(|| fmt(format!("bad param index {v}"))))
                .collect::<Result<Vec<_>>>()?;
            param_groups.push(GroupState { options, params });
        }
        let mut state = BTreeMap::new();
        let mut used = 0usize;
        for (i, entry) in meta["state"].as_object().ok_or_else(|| fmt("missing state".into()))? {
            let index: usize = i.parse().map_err(|_| fmt(format!("bad state index {i:?}")))?;
            let mut ps = ParamState::new();
            if let Some(sc) = entry["scalars"].as_object() {
                for (k, v) in sc {
                    let x = v.as_f64().ok_or_else(|| fmt(format!("bad scalar {k:?}")))?;
                    ps.insert(k.clone(), StateValue::Scalar(x));
                }
            }
            for k in entry["tensors"].as_array().map(|a| a.as_slice()).unwrap_or(&[]) {
                let k = k.as_str().ok_or_else(|| fmt("bad tensor key".into()))?;
                let name = format!("state.{index}.{k}");
                let t = tensors.get(&name).ok_or_else(|| fmt(format!("optimizer tensor {name:?} is missing")))?;
                ps.insert(k.to_string(), StateValue::Tensor(t.clone()));
                used += 1;
            }
            state.insert(index, ps);
        }
        if used != tensors.len() {
            return Err(fmt(format!("{} optimizer tensors but the metadata lists {used}", tensors.len())));
        }
        Ok(OptimizerState { optimizer, param_groups, state })
    }

    /// Writes the state to a safetensors file atomically: buffers as tensors named
    /// `state.{index}.{key}`, everything else as JSON in the file's metadata.
    ///
    /// Floats round-trip exactly (so a resumed run is bit-identical); non-finite
    /// hyperparameters cannot be written as JSON and give an error.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let (meta, tensors) = self.to_parts().map_err(|e| match e {
            Error::InvalidArgument { msg, .. } => Error::Format { path: path.display().to_string(), msg },
            e => e,
        })?;
        let mut sd = nn::StateDict::new();
        for (n, t) in tensors {
            sd.insert(n, t);
        }
        let mut extra = HashMap::new();
        extra.insert(META_KEY.to_string(), meta.to_string());
        nn::write_atomic(path, &sd.to_safetensors_bytes_with(extra)?)
    }

    /// Reads a file written by [`OptimizerState::save`] (tensors land on the CPU;
    /// `load_state_dict` moves them to each parameter's device).
    pub fn load(path: impl AsRef<Path>) -> Result<OptimizerState> {
        let path = path.as_ref();
        let pstr = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| Error::Io { path: pstr.clone(), source: e })?;
        let (sd, meta) = nn::StateDict::from_safetensors_bytes_with_metadata(&bytes, &pstr)?;
        let text = meta.get(META_KEY).ok_or_else(|| Error::Format {
            path: pstr.clone(),
            msg: format!("no {META_KEY:?} metadata: not an optimizer state file"),
        })?;
        let meta: Value =
            serde_json::from_str(text).map_err(|e| Error::Format { path: pstr.clone(), msg: e.to_string() })?;
        let tensors: BTreeMap<String, Tensor> = sd.iter().map(|(n, t)| (n.to_string(), t.clone())).collect();
        Self::from_parts(&meta, &tensors, &pstr)
    }
}

/// Reads a float option from a saved group.
pub(crate) fn get_f(map: &BTreeMap<String, Hyper>, key: &str) -> Result<f64> {
    match map.get(key) {
        Some(Hyper::Float(v)) => Ok(*v),
        Some(o) => Err(Error::arg("load_state_dict", format!("option {key:?} must be a number, got {o:?}"))),
        None => Err(Error::arg("load_state_dict", format!("param group is missing option {key:?}"))),
    }
}

/// Reads a flag from a saved group.
pub(crate) fn get_b(map: &BTreeMap<String, Hyper>, key: &str) -> Result<bool> {
    match map.get(key) {
        Some(Hyper::Bool(v)) => Ok(*v),
        Some(o) => Err(Error::arg("load_state_dict", format!("option {key:?} must be a flag, got {o:?}"))),
        None => Err(Error::arg("load_state_dict", format!("param group is missing option {key:?}"))),
    }
}

/// Reads a pair from a saved group.
pub(crate) fn get_pair(map: &BTreeMap<String, Hyper>, key: &str) -> Result<(f64, f64)> {
    match map.get(key) {
        Some(Hyper::Pair(a, b)) => Ok((*a, *b)),
        Some(o) => Err(Error::arg("load_state_dict", format!("option {key:?} must be a pair, got {o:?}"))),
        None => Err(Error::arg("load_state_dict", format!("param group is missing option {key:?}"))),
    }
}

/// A saved buffer, checked against and moved to `param`'s shape, device and dtype
/// (always a fresh copy, so the optimizer never aliases the checkpoint).
pub(crate) fn load_buffer(saved: &ParamState, key: &str, param: &Tensor) -> Result<Tensor> {
    match saved.get(key) {
        Some(StateValue::Tensor(t)) => {
            if t.dims() != param.dims() {
                return Err(Error::shape(
                    "load_state_dict",
                    param.dims(),
                    t.dims(),
                    format!("state buffer {key:?} has a different shape from its parameter"),
                ));
            }
            t.to_device(param.device())?.to_dtype(param.dtype())?.copy()
        }
        Some(_) => Err(Error::arg("load_state_dict", format!("state entry {key:?} must be a tensor"))),
        None => Err(Error::arg("load_state_dict", format!("state is missing buffer {key:?}"))),
    }
}

/// A saved optional buffer (`None` when absent).
pub(crate) fn load_opt_buffer(saved: &ParamState, key: &str, param: &Tensor) -> Result<Option<Tensor>> {
    if saved.contains_key(key) {
        load_buffer(saved, key, param).map(Some)
    } else {
        Ok(None)
    }
}

/// A saved count (the optimizers' `step`): finite and not negative, since every
/// update raises the betas to its power (a NaN or negative step would silently turn
/// the bias corrections into garbage).
pub(crate) fn load_scalar(saved: &ParamState, key: &str) -> Result<f64> {
    let v = match saved.get(key) {
        Some(StateValue::Scalar(v)) => *v,
        Some(StateValue::Tensor(t)) if t.numel() == 1 => t.to_vec_f64()?[0],
        Some(_) => return Err(Error::arg("load_state_dict", format!("state entry {key:?} must be a number"))),
        None => return Err(Error::arg("load_state_dict", format!("state is missing {key:?}"))),
    };
    if !(v >= 0.0 && v.is_finite()) {
        return Err(Error::arg("load_state_dict", format!("state entry {key:?} must be finite and >= 0, got {v}")));
    }
    Ok(v)
}

/// A copy of a buffer for a snapshot.
pub(crate) fn save_buffer(t: &Tensor) -> Result<StateValue> {
    Ok(StateValue::Tensor(t.copy()?))
}
