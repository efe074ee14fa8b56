//! Hostile input to checkpoints, schedulers and optimizer state: damaged files, counters
//! at the edge of their integer types, and nonsensical parameters are errors that say
//! what is wrong (never a panic, a wrapped counter or a silently changed model).

use autograd::Var;
use nn::{Forward, Linear, Module};
use optim::*;
use tensor_core::{Error, Tensor};

type Res<T> = Result<T, Error>;

/// The global random generator is shared by the test threads of this binary (a
/// restore sets it): tests that touch it hold this lock.
static RNG_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    RNG_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("optim-hostile-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("run.safetensors")
}

struct Run {
    model: Linear,
    opt: Sgd,
    sched: StepLR,
}

fn build(seed: u64) -> Res<Run> {
    tensor_core::manual_seed(seed);
    let model = Linear::new(4, 3, true)?;
    let mut opt = Sgd::new(model.parameters(), SgdOptions { lr: 0.1, momentum: 0.9, ..Default::default() })?;
    let sched = StepLR::new(&mut opt, 2, StepLROptions { gamma: 0.5 })?;
    Ok(Run { model, opt, sched })
}

fn train(r: &mut Run, steps: usize) -> Res<()> {
    let x = Var::from(Tensor::from_vec((0..8).map(|i| i as f32 * 0.25 - 1.0).collect::<Vec<_>>(), [2, 4])?);
    for _ in 0..steps {
        r.opt.zero_grad();
        r.model.forward(&x)?.square()?.sum_all()?.backward()?;
        r.opt.step()?;
        r.sched.step(&mut r.opt)?;
    }
    Ok(())
}

/// Every weight's bit pattern, by name.
type Bits = Vec<(String, Vec<u32>)>;

fn bits(m: &dyn Module) -> Res<Bits> {
    m.state_dict()
        .iter()
        .map(|(n, t)| Ok((n.to_string(), t.to_vec::<f32>()?.into_iter().map(f32::to_bits).collect())))
        .collect()
}

/// Saves a trained run's checkpoint; returns the path, the file's bytes and the
/// model's weights.
fn saved(name: &str) -> Res<(std::path::PathBuf, Vec<u8>, Bits)> {
    let mut r = build(3)?;
    train(&mut r, 3)?;
    let path = tmp(name);
    Checkpoint::capture(&r.model, &r.opt, Some(&r.sched as &dyn LrScheduler), 1, 3)?.save(&path)?;
    Ok((path.clone(), std::fs::read(&path).unwrap(), bits(&r.model)?))
}

/// Where the tensor data of a safetensors file starts (after the 8-byte length and
/// the JSON header).
fn data_start(bytes: &[u8]) -> usize {
    8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize
}

/// Loads `path` and restores it into a fresh run; asserts that this fails with a
/// format error naming the file and leaves the fresh model as it was.
fn assert_refused(path: &std::path::Path, what: &str) -> Res<Error> {
    let mut fresh = build(77)?;
    let before = bits(&fresh.model)?;
    let res = Checkpoint::load(path)
        .and_then(|ck| ck.restore(&fresh.model, &mut fresh.opt, Some(&mut fresh.sched as &mut dyn LrScheduler)));
    let e = match res {
        Err(e @ Error::Format { .. }) => e,
        other => panic!("{what}: expected a format error, got {other:?}"),
    };
    assert!(e.to_string().contains(&path.display().to_string()), "{what}: {e}");
    assert_eq!(bits(&fresh.model)?, before, "{what}: the model changed");
    Ok(e)
}

#[test]
fn a_checkpoint_with_one_flipped_bit_is_refused_with_and_without_its_sidecar() -> Res<()> {
    let _serial = serial();
    let (path, bytes, _) = saved("flip")?;
    let side = optim::sidecar(&path);
    let side_text = std::fs::read(&side).unwrap();
    let start = data_start(&bytes);
    // One bit in the first tensor byte, in the middle of the data and in the last byte,
    // and one in the JSON header (inside the checkpoint's metadata).
    let fmt = b"torch-rs-checkpoint/1";
    let header_pos = bytes.windows(fmt.len()).position(|w| w == fmt).expect("the format in the header") + fmt.len() - 1;
    assert!(header_pos < start);
    for (pos, bit) in [(start, 0), ((start + bytes.len()) / 2, 3), (bytes.len() - 1, 7), (header_pos, 1)] {
        let mut bad = bytes.clone();
        bad[pos] ^= 1 << bit;
        std::fs::write(&path, &bad).unwrap();
        // Against the sidecar: the length is right, the checksum is not.
        std::fs::write(&side, &side_text).unwrap();
        let e = assert_refused(&path, &format!("bit {bit} of byte {pos} with the sidecar"))?;
        let msg = e.to_string();
        assert!(msg.contains("sidecar") && msg.contains("fnv1a64"), "{msg}");
        // Without the sidecar the file's own digest still catches it.
        std::fs::remove_file(&side).unwrap();
        let e = assert_refused(&path, &format!("bit {bit} of byte {pos} without the sidecar"))?;
        assert!(e.to_string().contains("digest"), "{e}");
    }
    Ok(())
}

#[test]
fn a_truncated_or_extended_checkpoint_is_refused_against_its_sidecar() -> Res<()> {
    let _serial = serial();
    let (path, bytes, _) = saved("length")?;
    let side = optim::sidecar(&path);
    let side_text = std::fs::read(&side).unwrap();
    let mut longer = bytes.clone();
    longer.push(0);
    for (what, damaged) in [("one byte short", &bytes[..bytes.len() - 1]), ("one byte appended", &longer[..])] {
        std::fs::write(&path, damaged).unwrap();
        std::fs::write(&side, &side_text).unwrap();
        let e = assert_refused(&path, what)?;
        assert!(!e.to_string().is_empty());
        // Without the sidecar, the safetensors layout itself does not add up.
        std::fs::remove_file(&side).unwrap();
        assert_refused(&path, &format!("{what}, no sidecar"))?;
    }
    // The sidecar's own numbers are named: expected and found lengths.
    std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
    std::fs::write(&side, &side_text).unwrap();
    let e = assert_refused(&path, "short")?.to_string();
    assert!(e.contains(&format!("records {} bytes", bytes.len())), "{e}");
    assert!(e.contains(&format!("has {} bytes", bytes.len() - 1)), "{e}");
    Ok(())
}

#[test]
fn an_intact_checkpoint_loads_identically_with_and_without_its_sidecar() -> Res<()> {
    let _serial = serial();
    let (path, _, weights) = saved("intact")?;
    for with_sidecar in [true, false] {
        if !with_sidecar {
            std::fs::remove_file(optim::sidecar(&path)).unwrap();
        }
        let mut fresh = build(77)?;
        assert_ne!(bits(&fresh.model)?, weights);
        let ck = Checkpoint::load(&path)?;
        assert_eq!((ck.epoch, ck.step), (1, 3));
        ck.restore(&fresh.model, &mut fresh.opt, Some(&mut fresh.sched as &mut dyn LrScheduler))?;
        assert_eq!(bits(&fresh.model)?, weights);
        assert_eq!(fresh.sched.last_epoch(), 3);
    }
    Ok(())
}

#[test]
fn a_sidecar_of_another_save_or_a_damaged_sidecar_is_refused() -> Res<()> {
    let _serial = serial();
    let (path, _, _) = saved("stale")?;
    let side = optim::sidecar(&path);
    let old_side = std::fs::read(&side).unwrap();
    // A second save with other weights; then the first save's sidecar is put back.
    let mut r = build(5)?;
    train(&mut r, 1)?;
    Checkpoint::capture(&r.model, &r.opt, Some(&r.sched as &dyn LrScheduler), 2, 4)?.save(&path)?;
    assert_eq!(Checkpoint::load(&path)?.step, 4);
    std::fs::write(&side, &old_side).unwrap();
    let e = assert_refused(&path, "stale sidecar")?;
    assert!(e.to_string().contains("sidecar"), "{e}");
    // A sidecar that is not JSON, or lacks the checksum, names the sidecar.
    for text in ["{not json", "{\"file_bytes\": 3}"] {
        std::fs::write(&side, text).unwrap();
        let e = Checkpoint::load(&path).unwrap_err();
        assert!(matches!(e, Error::Format { .. }), "{e}");
        assert!(e.to_string().contains(&side.display().to_string()), "{e}");
    }
    Ok(())
}

#[test]
fn saving_replaces_a_stale_sidecar() -> Res<()> {
    let _serial = serial();
    let (path, _, _) = saved("resave")?;
    // A leftover sidecar that describes another file is replaced by the next save.
    std::fs::write(optim::sidecar(&path), "{\"file_bytes\": 1, \"file_fnv1a64\": \"0000000000000000\"}").unwrap();
    let mut r = build(9)?;
    train(&mut r, 2)?;
    Checkpoint::capture(&r.model, &r.opt, Some(&r.sched as &dyn LrScheduler), 0, 2)?.save(&path)?;
    assert_eq!(Checkpoint::load(&path)?.step, 2);
    Ok(())
}

#[test]
fn concurrent_checkpoint_saves_leave_a_matching_sidecar() -> Res<()> {
    let _serial = serial();
    let path = tmp("threads");
    let mut r = build(11)?;
    train(&mut r, 1)?;
    let ck = Checkpoint::capture(&r.model, &r.opt, Some(&r.sched as &dyn LrScheduler), 0, 1)?;
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let (ck, path) = (ck.clone(), path.clone());
            s.spawn(move || {
                for i in 0..5u64 {
                    let mut ck = ck.clone();
                    ck.step = 100 * t + i;
                    ck.save(&path).unwrap();
                }
            });
        }
    });
    let step = Checkpoint::load(&path)?.step;
    assert!(step % 100 == 4 && step / 100 < 4, "{step}");
    Ok(())
}

#[test]
fn an_optimizer_state_file_with_a_flipped_bit_is_refused() -> Res<()> {
    let mut r = build(13)?;
    train(&mut r, 2)?;
    let path = tmp("optstate").with_file_name("opt.safetensors");
    r.opt.state_dict()?.save(&path)?;
    let bytes = std::fs::read(&path).unwrap();
    let mut bad = bytes.clone();
    let pos = data_start(&bytes) + 2;
    bad[pos] ^= 0x10;
    std::fs::write(&path, &bad).unwrap();
    let e = OptimizerState::load(&path).unwrap_err();
    assert!(matches!(e, Error::Format { .. }) && e.to_string().contains("digest"), "{e}");
    std::fs::write(&path, &bytes).unwrap();
    let st = OptimizerState::load(&path)?;
    assert_eq!(st.state.len(), 2);
    Ok(())
}

fn sgd(lr: f64) -> Sgd {
    let w = Var::param(Tensor::new(&[1.0f64, 2.0])).unwrap();
    Sgd::new(vec![w], SgdOptions { lr, momentum: 0.9, ..Default::default() }).unwrap()
}

fn op_of(e: &Error) -> &'static str {
    match e {
        Error::InvalidArgument { op, .. } => op,
        other => panic!("expected an invalid-argument error, got {other:?}"),
    }
}

#[test]
fn stepping_past_the_largest_epoch_is_an_error_not_an_overflow() {
    let mut opt = sgd(0.1);
    let mut s = StepLR::new(&mut opt, 3, StepLROptions { gamma: 0.5 }).unwrap();
    s.step_to(&mut opt, i64::MAX).unwrap();
    let e = s.step(&mut opt).unwrap_err();
    assert_eq!(op_of(&e), "StepLR");
    assert!(e.to_string().contains("overflow"), "{e}");
    assert_eq!(s.last_epoch(), i64::MAX);

    let mut opt = sgd(0.1);
    let a = ExponentialLR::new(&mut opt, 0.9).unwrap();
    let b = ExponentialLR::new(&mut opt, 0.9).unwrap();
    let mut seq = SequentialLR::new(&mut opt, vec![Box::new(a), Box::new(b)], &[5]).unwrap();
    seq.step_to(&mut opt, i64::MAX).unwrap();
    let e = seq.step(&mut opt).unwrap_err();
    assert_eq!(op_of(&e), "SequentialLR");

    let mut opt = sgd(0.1);
    let mut c =
        CosineAnnealingWarmRestarts::new(&mut opt, 2, CosineAnnealingWarmRestartsOptions { t_mult: 1, eta_min: 0.0 })
            .unwrap();
    c.step_to(&mut opt, i64::MAX).unwrap();
    assert!(c.step(&mut opt).is_err());
}

#[test]
fn loading_an_epoch_that_no_integer_holds_is_an_error() {
    let mut opt = sgd(0.1);
    let mut s = StepLR::new(&mut opt, 3, StepLROptions { gamma: 0.5 }).unwrap();
    s.step(&mut opt).unwrap();
    let good = s.state_dict();
    for bad_epoch in ["1e300", "-1e300", "2.5", "\"nan\"", "\"inf\"", "9007199254740994"] {
        let json = good.to_json().replace("\"last_epoch\":[1.0]", &format!("\"last_epoch\":[{bad_epoch}]"));
        assert_ne!(json, good.to_json(), "the replacement must hit");
        let state = SchedulerState::from_json(&json).unwrap();
        let e = s.load_state_dict(&state).unwrap_err();
        assert!(e.to_string().contains("last_epoch"), "{bad_epoch}: {e}");
        assert_eq!(s.last_epoch(), 1, "{bad_epoch}: a failed load changed the scheduler");
    }
    // The largest exact value loads, and the next step still works.
    let json = good.to_json().replace("\"last_epoch\":[1.0]", "\"last_epoch\":[9007199254740992]");
    s.load_state_dict(&SchedulerState::from_json(&json).unwrap()).unwrap();
    assert_eq!(s.last_epoch(), 1 << 53);
    s.step(&mut opt).unwrap();
    // A step count that is not a whole number, and a wrong number of rates.
    let mut bad = good.clone();
    bad.values.insert("step_count".into(), vec![-3.0]);
    assert!(s.load_state_dict(&bad).unwrap_err().to_string().contains("step_count"));
    let mut bad = good.clone();
    bad.values.insert("last_lr".into(), vec![0.1, 0.2]);
    assert!(s.load_state_dict(&bad).unwrap_err().to_string().contains("last_lr"));
    let mut bad = good.clone();
    bad.values.remove("base_lrs");
    assert!(s.load_state_dict(&bad).unwrap_err().to_string().contains("base_lrs"));
}

#[test]
fn other_schedulers_refuse_out_of_range_counters_in_their_state() {
    let mut opt = sgd(0.1);
    let mut c =
        CosineAnnealingWarmRestarts::new(&mut opt, 2, CosineAnnealingWarmRestartsOptions { t_mult: 2, eta_min: 0.0 })
            .unwrap();
    let mut bad = c.state_dict();
    bad.values.insert("T_i".into(), vec![1e300]);
    assert!(c.load_state_dict(&bad).unwrap_err().to_string().contains("T_i"));
    let mut bad = c.state_dict();
    bad.values.insert("T_cur".into(), vec![f64::NAN]);
    assert!(c.load_state_dict(&bad).unwrap_err().to_string().contains("T_cur"));

    let mut p = ReduceLROnPlateau::new(&mut opt, ReduceLROnPlateauOptions::default()).unwrap();
    for key in ["num_bad_epochs", "cooldown_counter", "last_epoch"] {
        let mut bad = p.state_dict();
        bad.values.insert(key.into(), vec![1e300]);
        let e = p.load_state_dict(&bad).unwrap_err();
        assert!(e.to_string().contains(key), "{key}: {e}");
    }
    let mut ok = p.state_dict();
    ok.values.insert("num_bad_epochs".into(), vec![9007199254740992.0]);
    ok.values.insert("best".into(), vec![0.0]);
    p.load_state_dict(&ok).unwrap();
    p.step_with_metric(&mut opt, 1.0).unwrap(); // a bad epoch on top of 2^53 of them: no overflow
    assert_eq!(opt.lr(), 0.1 * 0.1);

    let a = ExponentialLR::new(&mut opt, 0.9).unwrap();
    let b = ExponentialLR::new(&mut opt, 0.9).unwrap();
    let mut seq = SequentialLR::new(&mut opt, vec![Box::new(a), Box::new(b)], &[5]).unwrap();
    let before = seq.state_dict();
    let mut bad = before.clone();
    bad.values.insert("last_epoch".into(), vec![1e300]);
    // Make a child's state differ so a half-applied load would show.
    bad.children[0].values.insert("last_epoch".into(), vec![42.0]);
    assert!(seq.load_state_dict(&bad).is_err());
    assert_eq!(seq.state_dict(), before, "a failed load changed the composite or its children");
}

#[test]
fn sizes_beyond_i64_do_not_wrap() {
    // StepLR: a step size beyond i64::MAX is never reached (it wrapped to -1 before,
    // which decayed every epoch).
    for step_size in [usize::MAX, i64::MAX as usize + 1, i64::MAX as usize] {
        let mut opt = sgd(0.1);
        let mut s = StepLR::new(&mut opt, step_size, StepLROptions { gamma: 0.5 }).unwrap();
        for _ in 0..3 {
            s.step(&mut opt).unwrap();
        }
        assert_eq!(opt.lr(), 0.1, "step_size {step_size}");
        s.step_to(&mut opt, 1 << 40).unwrap();
        assert_eq!(opt.lr(), 0.1, "step_size {step_size}");
    }
    // MultiStepLR: a milestone beyond i64::MAX never fires.
    let mut opt = sgd(0.1);
    let mut m = MultiStepLR::new(&mut opt, &[usize::MAX, 2], MultiStepLROptions { gamma: 0.5 }).unwrap();
    m.step_to(&mut opt, i64::MAX).unwrap();
    assert_eq!(opt.lr(), 0.05);
    // ConstantLR: the factor holds until a total_iters that is never reached.
    let mut opt = sgd(0.1);
    let mut c = ConstantLR::new(&mut opt, ConstantLROptions { factor: 0.5, total_iters: usize::MAX }).unwrap();
    c.step(&mut opt).unwrap();
    assert_eq!(opt.lr(), 0.05);
    c.step_to(&mut opt, 1000).unwrap();
    assert_eq!(opt.lr(), 0.05);
    // LinearLR and PolynomialLR over an enormous horizon barely move.
    let mut opt = sgd(0.1);
    let mut l =
        LinearLR::new(&mut opt, LinearLROptions { start_factor: 0.5, end_factor: 1.0, total_iters: usize::MAX })
            .unwrap();
    l.step(&mut opt).unwrap();
    assert!((opt.lr() - 0.05).abs() < 1e-15, "{}", opt.lr());
    let mut opt = sgd(0.1);
    let mut p = PolynomialLR::new(&mut opt, PolynomialLROptions { total_iters: usize::MAX, power: 2.0 }).unwrap();
    p.step(&mut opt).unwrap();
    assert!((opt.lr() - 0.1).abs() < 1e-15, "{}", opt.lr());
    // CosineAnnealingLR with a half period beyond i64::MAX / 2 (2 * T_max overflowed).
    for t_max in [usize::MAX, i64::MAX as usize] {
        let mut opt = sgd(0.1);
        let mut c = CosineAnnealingLR::new(&mut opt, t_max, CosineAnnealingLROptions::default()).unwrap();
        for _ in 0..3 {
            c.step(&mut opt).unwrap();
        }
        assert!((opt.lr() - 0.1).abs() < 1e-15, "T_max {t_max}: {}", opt.lr());
    }
    // Warm restarts: a period that outgrows 64 bits is an error, not a wrap.
    let mut opt = sgd(0.1);
    let mut w = CosineAnnealingWarmRestarts::new(
        &mut opt,
        1,
        CosineAnnealingWarmRestartsOptions { t_mult: 1 << 40, eta_min: 0.0 },
    )
    .unwrap();
    let e = w.step_to(&mut opt, i64::MAX).unwrap_err();
    assert_eq!(op_of(&e), "CosineAnnealingWarmRestarts");
    assert!(e.to_string().contains("overflow"), "{e}");
    let mut w = CosineAnnealingWarmRestarts::new(
        &mut opt,
        usize::MAX,
        CosineAnnealingWarmRestartsOptions { t_mult: 2, eta_min: 0.0 },
    )
    .unwrap();
    w.step(&mut opt).unwrap();
    assert!((opt.lr() - 0.1).abs() < 1e-15, "{}", opt.lr());
    // OneCycleLR over usize::MAX steps starts at max_lr / div_factor.
    let mut opt = sgd(0.1);
    OneCycleLR::new(&mut opt, 1.0, usize::MAX, OneCycleOptions::default()).unwrap();
    assert!((opt.lr() - 1.0 / 25.0).abs() < 1e-15, "{}", opt.lr());
}

#[test]
fn cyclic_lr_names_step_size_up() {
    let mut opt = sgd(0.1);
    for down in [None, Some(0), Some(4)] {
        let o = CyclicOptions { step_size_up: 0, step_size_down: down, ..Default::default() };
        let e = CyclicLR::new(&mut opt, &[0.01], &[0.1], o).unwrap_err();
        assert_eq!(op_of(&e), "CyclicLR");
        assert!(e.to_string().contains("step_size_up"), "{e}");
    }
    // A cycle with no falling half is fine: it saw-tooths.
    let o = CyclicOptions { step_size_up: 2, step_size_down: Some(0), cycle_momentum: true, ..Default::default() };
    let mut c = CyclicLR::new(&mut opt, &[0.0], &[1.0], o).unwrap();
    let mut lrs = vec![opt.lr()];
    for _ in 0..4 {
        c.step(&mut opt).unwrap();
        lrs.push(opt.lr());
    }
    assert_eq!(lrs, vec![0.0, 0.5, 0.0, 0.5, 0.0]);
}

#[test]
fn nonsensical_scheduler_parameters_are_refused_by_the_scheduler() {
    let mut opt = sgd(0.1);
    let check = |e: Error, op: &str, word: &str| {
        assert_eq!(op_of(&e), op, "{e}");
        assert!(e.to_string().contains(word), "{e}");
    };
    check(StepLR::new(&mut opt, 2, StepLROptions { gamma: f64::NAN }).unwrap_err(), "StepLR", "gamma");
    check(
        MultiStepLR::new(&mut opt, &[1], MultiStepLROptions { gamma: f64::INFINITY }).unwrap_err(),
        "MultiStepLR",
        "gamma",
    );
    check(ExponentialLR::new(&mut opt, f64::NAN).unwrap_err(), "ExponentialLR", "gamma");
    check(
        ConstantLR::new(&mut opt, ConstantLROptions { factor: 0.0, total_iters: 3 }).unwrap_err(),
        "ConstantLR",
        "factor",
    );
    check(
        ConstantLR::new(&mut opt, ConstantLROptions { factor: f64::NAN, total_iters: 3 }).unwrap_err(),
        "ConstantLR",
        "factor",
    );
    check(
        LinearLR::new(&mut opt, LinearLROptions { start_factor: 0.5, end_factor: f64::NAN, total_iters: 3 })
            .unwrap_err(),
        "LinearLR",
        "ending",
    );
    check(
        PolynomialLR::new(&mut opt, PolynomialLROptions { total_iters: 3, power: -1.0 }).unwrap_err(),
        "PolynomialLR",
        "power",
    );
    check(
        PolynomialLR::new(&mut opt, PolynomialLROptions { total_iters: 3, power: f64::NAN }).unwrap_err(),
        "PolynomialLR",
        "power",
    );
    check(
        CosineAnnealingLR::new(&mut opt, 0, CosineAnnealingLROptions::default()).unwrap_err(),
        "CosineAnnealingLR",
        "T_max",
    );
    check(
        CosineAnnealingLR::new(&mut opt, 5, CosineAnnealingLROptions { eta_min: f64::NAN }).unwrap_err(),
        "CosineAnnealingLR",
        "eta_min",
    );
    check(
        CosineAnnealingWarmRestarts::new(&mut opt, 2, CosineAnnealingWarmRestartsOptions { t_mult: 0, eta_min: 0.0 })
            .unwrap_err(),
        "CosineAnnealingWarmRestarts",
        "T_mult",
    );
    let cyc =
        |o: CyclicOptions, base: f64, max: f64, opt: &mut Sgd| CyclicLR::new(opt, &[base], &[max], o).unwrap_err();
    check(cyc(CyclicOptions::default(), f64::NAN, 0.1, &mut opt), "CyclicLR", "base_lr");
    check(cyc(CyclicOptions::default(), 0.01, f64::INFINITY, &mut opt), "CyclicLR", "max_lr");
    let exp = CyclicOptions { mode: CyclicMode::ExpRange, gamma: f64::NAN, ..Default::default() };
    check(cyc(exp, 0.01, 0.1, &mut opt), "CyclicLR", "gamma");
    let one = |o: OneCycleOptions, max: f64, opt: &mut Sgd| OneCycleLR::new(opt, max, 10, o).unwrap_err();
    check(one(OneCycleOptions::default(), f64::NAN, &mut opt), "OneCycleLR", "max_lr");
    check(one(OneCycleOptions { div_factor: 0.0, ..Default::default() }, 1.0, &mut opt), "OneCycleLR", "div_factor");
    check(
        one(OneCycleOptions { final_div_factor: -1.0, ..Default::default() }, 1.0, &mut opt),
        "OneCycleLR",
        "final_div_factor",
    );
    check(one(OneCycleOptions { pct_start: f64::NAN, ..Default::default() }, 1.0, &mut opt), "OneCycleLR", "pct_start");
    check(OneCycleLR::new(&mut opt, 1.0, 0, OneCycleOptions::default()).unwrap_err(), "OneCycleLR", "total_steps");
    let mut plateau = |o: ReduceLROnPlateauOptions| ReduceLROnPlateau::new(&mut opt, o).unwrap_err();
    let d = ReduceLROnPlateauOptions::default;
    check(plateau(ReduceLROnPlateauOptions { factor: -0.5, ..d() }), "ReduceLROnPlateau", "factor");
    check(plateau(ReduceLROnPlateauOptions { factor: f64::NAN, ..d() }), "ReduceLROnPlateau", "factor");
    check(plateau(ReduceLROnPlateauOptions { eps: f64::NAN, ..d() }), "ReduceLROnPlateau", "eps");
    check(plateau(ReduceLROnPlateauOptions { threshold: f64::NAN, ..d() }), "ReduceLROnPlateau", "threshold");
    check(plateau(ReduceLROnPlateauOptions { min_lr: vec![f64::NAN], ..d() }), "ReduceLROnPlateau", "min_lr");
    check(plateau(ReduceLROnPlateauOptions { min_lr: vec![-1.0], ..d() }), "ReduceLROnPlateau", "min_lr");
    // Nothing above touched the optimizer's rate.
    assert_eq!(opt.lr(), 0.1);
}

#[test]
fn a_one_cycle_phase_of_no_steps_is_finite() {
    // pct_start * total_steps = 1: the rising phase ends at step 0 (PyTorch divides by
    // zero there); the rate starts at the peak.
    let mut opt = sgd(0.1);
    let o = OneCycleOptions { pct_start: 0.1, anneal_strategy: AnnealStrategy::Linear, ..Default::default() };
    let mut s = OneCycleLR::new(&mut opt, 1.0, 10, o).unwrap();
    assert!((opt.lr() - 1.0).abs() < 1e-15, "{}", opt.lr());
    for _ in 0..9 {
        s.step(&mut opt).unwrap();
        assert!(opt.lr().is_finite());
    }
    let min = 1.0 / 25.0 / 1e4;
    assert!((opt.lr() - min).abs() < 1e-15, "{}", opt.lr());
}

#[test]
fn hostile_optimizer_hyperparameters_and_state_are_refused() {
    let w = || vec![Var::param(Tensor::new(&[1.0f64, 2.0])).unwrap()];
    let bad_sgd = [
        SgdOptions { lr: f64::NAN, ..Default::default() },
        SgdOptions { lr: -0.1, ..Default::default() },
        SgdOptions { lr: f64::INFINITY, ..Default::default() },
        SgdOptions { momentum: f64::NAN, ..Default::default() },
        SgdOptions { momentum: -0.5, ..Default::default() },
        SgdOptions { weight_decay: f64::NAN, ..Default::default() },
        SgdOptions { dampening: f64::NAN, ..Default::default() },
    ];
    for o in bad_sgd {
        let e = Sgd::new(w(), o.clone()).unwrap_err();
        assert_eq!(op_of(&e), "SGD", "{o:?}");
    }
    let bad_adam = [
        AdamOptions { lr: f64::NAN, ..Default::default() },
        AdamOptions { eps: f64::NAN, ..Default::default() },
        AdamOptions { eps: -1e-8, ..Default::default() },
        AdamOptions { betas: (f64::NAN, 0.999), ..Default::default() },
        AdamOptions { betas: (0.9, 1.0), ..Default::default() },
        AdamOptions { weight_decay: -1.0, ..Default::default() },
    ];
    for o in bad_adam {
        assert!(Adam::new(w(), o.clone()).is_err(), "{o:?}");
    }
    assert!(RmsProp::new(w(), RmsPropOptions { alpha: f64::NAN, ..Default::default() }).is_err());
    assert!(Adagrad::new(w(), AdagradOptions { eps: f64::NAN, ..Default::default() }).is_err());
    // Setters refuse too, and leave the rate alone.
    let mut opt = sgd(0.1);
    assert!(opt.set_lr(f64::NAN).is_err());
    assert!(opt.set_momentums(&[f64::NAN]).is_err());
    assert!(opt.set_lrs(&[0.1, 0.2]).is_err());
    assert_eq!(opt.lr(), 0.1);

    // A saved state whose step count is NaN, negative or infinite is refused.
    let ws = w();
    let mut adam = Adam::new(ws.clone(), AdamOptions::default()).unwrap();
    adam.zero_grad();
    ws[0].square().unwrap().sum_all().unwrap().backward().unwrap();
    adam.step().unwrap();
    let good = adam.state_dict().unwrap();
    for step in [f64::NAN, -1.0, f64::INFINITY] {
        let mut bad = good.clone();
        bad.state.get_mut(&0).unwrap().insert("step".into(), StateValue::Scalar(step));
        let e = adam.load_state_dict(&bad).unwrap_err();
        assert!(e.to_string().contains("step"), "{step}: {e}");
    }
    // A hyperparameter of the wrong kind, or NaN, is refused.
    let mut bad = good.clone();
    bad.param_groups[0].options.insert("lr".into(), Hyper::Bool(true));
    assert!(adam.load_state_dict(&bad).unwrap_err().to_string().contains("lr"));
    let mut bad = good.clone();
    bad.param_groups[0].options.insert("lr".into(), Hyper::Float(f64::NAN));
    assert!(adam.load_state_dict(&bad).is_err());
    adam.load_state_dict(&good).unwrap();
}
