//! Checkpoints: a resumed run is bit-for-bit the uninterrupted one; damaged files,
//! missing tensors and wrong shapes are errors that say which; a failed restore
//! changes nothing; an interrupted save leaves the previous checkpoint intact.

use autograd::Var;
use nn::loss::{cross_entropy, CrossEntropyOptions};
use nn::{Dropout, Forward, Linear, Module, ReLU, Sequential, StateDict};
use optim::{Adam, AdamOptions, Checkpoint, LrScheduler, Optimizer, StepLR, StepLROptions};
use tensor_core::{Device, Error, Tensor};

type Res<T> = Result<T, Error>;

/// The global random generator is shared by the test threads of this binary: each
/// test holds this lock while it seeds and draws.
static RNG_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    RNG_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

struct Run {
    model: Sequential,
    opt: Adam,
    sched: StepLR,
}

fn build(hidden: usize) -> Res<Run> {
    let model = Sequential::new()
        .add(Linear::new(8, hidden, true)?)
        .add(ReLU)
        .add(Dropout::new(0.2)?)
        .add(Linear::new(hidden, 3, true)?);
    let mut opt = Adam::new(model.parameters(), AdamOptions { lr: 0.01, amsgrad: true, ..Default::default() })?;
    let sched = StepLR::new(&mut opt, 4, StepLROptions { gamma: 0.5 })?;
    Ok(Run { model, opt, sched })
}

fn data() -> Res<(Tensor, Tensor)> {
    let mut g = tensor_core::Generator::new(42);
    let x: Vec<f32> = g.normal_f64(64 * 8).into_iter().map(|v| v as f32).collect();
    let y: Vec<i64> = (0..64).map(|i| (i * 7 % 3) as i64).collect();
    Ok((Tensor::from_vec(x, [64, 8])?, Tensor::from_vec(y, [64])?))
}

/// `steps` minibatch steps; batches and dropout masks come from the global generator.
fn train(r: &mut Run, steps: usize, x: &Tensor, y: &Tensor) -> Res<()> {
    for _ in 0..steps {
        let idx = Tensor::randperm(64, &Device::cpu())?.narrow(0, 0, 16)?;
        let xb = Var::from(x.index_select(0, &idx)?);
        let yb = y.index_select(0, &idx)?;
        r.opt.zero_grad();
        cross_entropy(&r.model.forward(&xb)?, &yb, &CrossEntropyOptions::default())?.backward()?;
        r.opt.step()?;
        r.sched.step(&mut r.opt)?;
    }
    Ok(())
}

fn bits(m: &dyn Module) -> Res<Vec<(String, Vec<u32>)>> {
    m.state_dict()
        .iter()
        .map(|(n, t)| Ok((n.to_string(), t.to_vec::<f32>()?.into_iter().map(f32::to_bits).collect())))
        .collect()
}

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("optim-ckpt-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("run.safetensors")
}

#[test]
fn resumed_training_is_bit_identical_to_uninterrupted() -> Res<()> {
    let _serial = serial();
    let (x, y) = data()?;
    let (n, m) = (7, 9);
    tensor_core::manual_seed(1);
    let mut full = build(16)?;
    train(&mut full, n + m, &x, &y)?;

    tensor_core::manual_seed(1);
    let mut first = build(16)?;
    train(&mut first, n, &x, &y)?;
    let path = tmp("resume");
    Checkpoint::capture(&first.model, &first.opt, Some(&first.sched as &dyn LrScheduler), 0, n as u64)?.save(&path)?;
    // Training on after the capture must not change what was saved.
    train(&mut first, 3, &x, &y)?;

    // A fresh run with other weights and another random state, then restored.
    tensor_core::manual_seed(999);
    let mut resumed = build(16)?;
    let ck = Checkpoint::load(&path)?;
    assert_eq!(ck.step, n as u64);
    ck.restore(&resumed.model, &mut resumed.opt, Some(&mut resumed.sched as &mut dyn LrScheduler))?;
    assert_eq!(resumed.sched.last_epoch(), n as i64);
    train(&mut resumed, m, &x, &y)?;

    assert_eq!(bits(&resumed.model)?, bits(&full.model)?);
    assert_eq!(resumed.opt.lrs(), full.opt.lrs());
    // The sidecar holds the counters in plain JSON.
    let side =
        std::fs::read_to_string(optim::sidecar(&path)).map_err(|e| Error::Io { path: "sidecar".into(), source: e })?;
    assert!(side.contains("\"step\": \"7\""), "{side}");
    Ok(())
}

fn saved(name: &str) -> Res<(std::path::PathBuf, Vec<u8>)> {
    tensor_core::manual_seed(3);
    let (x, y) = data()?;
    let mut r = build(16)?;
    train(&mut r, 2, &x, &y)?;
    let path = tmp(name);
    Checkpoint::capture(&r.model, &r.opt, Some(&r.sched as &dyn LrScheduler), 1, 2)?.save(&path)?;
    let bytes = std::fs::read(&path).unwrap();
    Ok((path, bytes))
}

#[test]
fn truncated_or_corrupt_files_are_errors() -> Res<()> {
    let _serial = serial();
    let (path, bytes) = saved("corrupt")?;
    for cut in [0, 4, 8, 20, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        match Checkpoint::load(&path) {
            Err(Error::Format { .. }) => {}
            other => panic!("truncated at {cut}: expected a format error, got {other:?}"),
        }
    }
    // A damaged JSON header.
    let mut bad = bytes.clone();
    bad[12] = b'}';
    std::fs::write(&path, &bad).unwrap();
    assert!(matches!(Checkpoint::load(&path), Err(Error::Format { .. })));
    // A plain state dict is not a checkpoint (without a sidecar; with the old one it
    // is not the file the sidecar describes either).
    Linear::new(2, 2, true)?.save(&path)?;
    assert!(Checkpoint::load(&path).unwrap_err().to_string().contains("sidecar"));
    std::fs::remove_file(optim::sidecar(&path)).unwrap();
    let e = Checkpoint::load(&path).unwrap_err();
    assert!(e.to_string().contains("not a checkpoint"), "{e}");
    // A missing file names the file.
    let e = Checkpoint::load(path.with_file_name("nope.safetensors")).unwrap_err();
    assert!(e.to_string().contains("nope.safetensors"), "{e}");
    Ok(())
}

#[test]
fn a_file_missing_a_tensor_its_metadata_lists_is_an_error() -> Res<()> {
    let _serial = serial();
    let (path, bytes) = saved("missing")?;
    // Rewritten files carry a fresh content digest; without the sidecar (which would
    // refuse them for their length first) the metadata checks are what remains.
    std::fs::remove_file(optim::sidecar(&path)).unwrap();
    let (mut sd, meta) = StateDict::from_safetensors_bytes_with_metadata(&bytes, "x")?;
    sd.remove("model.3.bias").expect("the checkpoint holds model.3.bias");
    std::fs::write(&path, sd.to_safetensors_bytes_with(meta.clone())?).unwrap();
    let e = Checkpoint::load(&path).unwrap_err();
    assert!(e.to_string().contains("3.bias"), "{e}");

    let (mut sd, _) = StateDict::from_safetensors_bytes_with_metadata(&bytes, "x")?;
    let name = sd.keys().into_iter().find(|k| k.starts_with("optimizer.")).expect("optimizer tensors");
    sd.remove(&name);
    std::fs::write(&path, sd.to_safetensors_bytes_with(meta)?).unwrap();
    let e = Checkpoint::load(&path).unwrap_err();
    assert!(e.to_string().contains(name.trim_start_matches("optimizer.")), "{e}");
    Ok(())
}

#[test]
fn restoring_into_the_wrong_model_is_an_error_and_changes_nothing() -> Res<()> {
    let _serial = serial();
    let (path, _) = saved("shape")?;
    let ck = Checkpoint::load(&path)?;
    tensor_core::manual_seed(5);
    let mut other = build(12)?; // hidden size differs: every shape of layer 0 and 3
    let before = bits(&other.model)?;
    let e = ck.restore(&other.model, &mut other.opt, Some(&mut other.sched as &mut dyn LrScheduler)).unwrap_err();
    assert!(e.to_string().contains("0.weight"), "{e}");
    assert_eq!(bits(&other.model)?, before);
    // Missing scheduler: an error before anything is touched.
    let mut same = build(16)?;
    let before = bits(&same.model)?;
    let e = ck.restore(&same.model, &mut same.opt, None).unwrap_err();
    assert!(e.to_string().contains("StepLR"), "{e}");
    assert_eq!(bits(&same.model)?, before);
    Ok(())
}

#[test]
fn an_interrupted_save_leaves_the_previous_checkpoint_intact() -> Res<()> {
    let _serial = serial();
    let (path, bytes) = saved("atomic")?;
    // A crash mid-save leaves at most a partial temporary file next to the checkpoint:
    // the temporary name is never the checkpoint's own.
    let partial = path.with_file_name(format!(".run.safetensors.{}.tmp", std::process::id() + 1));
    std::fs::write(&partial, &bytes[..bytes.len() / 3]).unwrap();
    let ck = Checkpoint::load(&path)?;
    assert_eq!((ck.epoch, ck.step), (1, 2));
    // A failing save (the target is a folder) leaves the old file and no temporary.
    let dir_target = path.with_file_name("folder.safetensors");
    std::fs::create_dir_all(&dir_target).unwrap();
    assert!(ck.save(&dir_target).is_err());
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp") && e.path() != partial)
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // Saving again over the old checkpoint replaces it whole.
    ck.save(&path)?;
    assert_eq!(Checkpoint::load(&path)?.step, 2);
    Ok(())
}
