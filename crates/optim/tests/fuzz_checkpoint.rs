//! Fuzzing [`Checkpoint::load`]: a saved checkpoint file, mutated (bit flips, cuts,
//! inserted and deleted bytes, overwritten headers, huge length fields, huge numbers
//! in the JSON metadata) and written over the original next to its sidecar, must load
//! or fail with a clean error: never a panic, a hang or an allocation out of
//! proportion to the file.
//!
//! The inputs come from a fixed seed (`PROPTEST_RNG_SEED` picks another,
//! `PROPTEST_CASES` sets how many); run with `--nocapture` to see the counts,
//! including how many damaged files loaded as a checkpoint different from the one
//! saved.

#[path = "../../data/tests/fuzz_support/mod.rs"]
mod fuzz_support;

use std::cell::Cell;
use std::path::PathBuf;
use std::time::Duration;

use autograd::Var;
use nn::{Forward, Linear, Module, ReLU, Sequential};
use optim::{
    Adam, AdamOptions, Checkpoint, LrScheduler, Optimizer, Sgd, SgdOptions, StateValue, StepLR, StepLROptions,
};
use tensor_core::{DType, Device, Error, Tensor};

#[global_allocator]
static ALLOC: fuzz_support::Probe = fuzz_support::Probe;

fn model() -> Sequential {
    Sequential::new().add(Linear::new(4, 3, true).unwrap()).add(ReLU).add(Linear::new(3, 2, true).unwrap())
}

fn step(model: &Sequential, opt: &mut dyn Optimizer) {
    let x = Var::from(Tensor::ones([5, 4], DType::F32, &Device::cpu()).unwrap());
    opt.zero_grad();
    model.forward(&x).unwrap().sum(&[], false).unwrap().backward().unwrap();
    opt.step().unwrap();
}

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("optim_fuzz_{}_{name}.safetensors", std::process::id()))
}

/// Everything a checkpoint holds, tensors as raw bytes, as one comparable string.
fn fingerprint(ck: &Checkpoint) -> String {
    let bytes = |t: &Tensor| (t.dtype(), t.dims().to_vec(), t.to_cpu_buffer().unwrap().to_bytes());
    let model: Vec<_> = ck.model.iter().map(|(n, t)| (n.to_string(), bytes(t))).collect();
    let state: Vec<_> = ck
        .optimizer
        .state
        .iter()
        .map(|(i, ps)| {
            let entries: Vec<_> = ps
                .iter()
                .map(|(k, v)| match v {
                    StateValue::Tensor(t) => format!("{k}={:?}", bytes(t)),
                    StateValue::Scalar(x) => format!("{k}={:#x}", x.to_bits()),
                })
                .collect();
            (i, entries)
        })
        .collect();
    format!(
        "{model:?} {} {:?} {state:?} {:?} {:?} {} {}",
        ck.optimizer.optimizer, ck.optimizer.param_groups, ck.scheduler, ck.rng, ck.epoch, ck.step
    )
}

#[test]
fn fuzz_checkpoint() {
    // Two runs: Adam (amsgrad) with a StepLR scheduler, and SGD with momentum without one.
    let m1 = model();
    let mut adam = Adam::new(m1.parameters(), AdamOptions { lr: 0.01, amsgrad: true, ..Default::default() }).unwrap();
    let mut sched = StepLR::new(&mut adam, 2, StepLROptions { gamma: 0.5 }).unwrap();
    for _ in 0..2 {
        step(&m1, &mut adam);
        sched.step(&mut adam).unwrap();
    }
    let m2 = model();
    let mut sgd = Sgd::new(m2.parameters(), SgdOptions { lr: 0.1, momentum: 0.9, ..Default::default() }).unwrap();
    step(&m2, &mut sgd);
    let checkpoints = [
        Checkpoint::capture(&m1, &adam, Some(&sched as &dyn LrScheduler), 3, 4).unwrap(),
        Checkpoint::capture(&m2, &sgd, None, 1, 1).unwrap(),
    ];
    let paths: Vec<PathBuf> = (0..checkpoints.len()).map(|i| tmp(&format!("base{i}"))).collect();
    let mut bases = Vec::new();
    let mut want = Vec::new();
    for (ck, path) in checkpoints.iter().zip(&paths) {
        ck.save(path).unwrap();
        bases.push(std::fs::read(path).unwrap());
        let back = Checkpoint::load(path).unwrap();
        assert_eq!(fingerprint(&back), fingerprint(ck), "an undamaged checkpoint loads as saved");
        want.push(fingerprint(ck));
    }
    let changed = Cell::new(0usize);
    let t = fuzz_support::fuzz(
        "checkpoint",
        &bases,
        1500,
        |len| 16 * len + (1 << 20),
        Duration::from_secs(2),
        |i, b| {
            std::fs::write(&paths[i], b).unwrap();
            match Checkpoint::load(&paths[i]) {
                Ok(ck) => {
                    if fingerprint(&ck) != want[i] {
                        changed.set(changed.get() + 1);
                    }
                    true
                }
                Err(Error::Format { path, .. }) => {
                    assert!(path.contains("optim_fuzz_"), "{path}");
                    false
                }
                Err(e) => panic!("expected a format error, got {e:?}"),
            }
        },
    );
    eprintln!("fuzz checkpoint: {} damaged files loaded as a different checkpoint", changed.get());
    for p in &paths {
        std::fs::remove_file(p).ok();
        std::fs::remove_file(optim::sidecar(p)).ok();
    }
    assert!(t.errors > 0, "{t:?}");
}
