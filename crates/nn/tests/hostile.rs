//! Hostile input to nn: concurrent saves to one file, damaged state-dict files, empty
//! kernels and zero strides, bad softmax dims, nonsensical norm parameters and sizes
//! that overflow are errors that say what is wrong (never a panic or silently
//! corrupted weights).

use autograd::Var;
use nn::*;
use tensor_core::{DType, Device, Error, Tensor};

type Res<T> = Result<T, Error>;

fn tmp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("nn-hostile-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn weights(m: &dyn Module) -> Vec<(String, Vec<u32>)> {
    m.state_dict()
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_vec::<f32>().unwrap().into_iter().map(f32::to_bits).collect()))
        .collect()
}

fn tmp_files(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect()
}

#[test]
fn many_threads_saving_to_one_path_all_succeed() -> Res<()> {
    let dir = tmp_dir("threads");
    let path = dir.join("model.safetensors");
    // 8 models with different weights; each thread saves its own several times.
    let models: Vec<Linear> = (0..8).map(|_| Linear::new(16, 8, true)).collect::<Res<_>>()?;
    let written: Vec<_> = models.iter().map(|m| weights(m)).collect();
    std::thread::scope(|s| {
        let handles: Vec<_> = models
            .iter()
            .map(|m| {
                let path = path.clone();
                s.spawn(move || (0..6).map(|_| m.save(&path)).collect::<Vec<_>>())
            })
            .collect();
        for h in handles {
            for r in h.join().unwrap() {
                r.unwrap();
            }
        }
    });
    let loaded = Linear::new(16, 8, true)?;
    loaded.load(&path)?;
    assert!(written.contains(&weights(&loaded)), "the final file is none of the states written");
    assert!(tmp_files(&dir).is_empty(), "temporary files left: {:?}", tmp_files(&dir));
    Ok(())
}

#[test]
fn a_failed_atomic_write_leaves_no_temporary_file() {
    let dir = tmp_dir("fail");
    let target = dir.join("a-folder");
    std::fs::create_dir_all(&target).unwrap();
    let e = write_atomic(&target, b"abc").unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e}");
    assert!(tmp_files(&dir).is_empty(), "{:?}", tmp_files(&dir));
    // A leftover temporary file of a crashed writer does not stop the next one.
    std::fs::write(dir.join(".x.bin.1.0.0.tmp"), b"partial").unwrap();
    write_atomic(&dir.join("x.bin"), b"whole").unwrap();
    assert_eq!(std::fs::read(dir.join("x.bin")).unwrap(), b"whole");
}

#[test]
fn a_state_dict_file_with_a_flipped_bit_is_refused_and_changes_nothing() -> Res<()> {
    let dir = tmp_dir("flip");
    let path = dir.join("m.safetensors");
    let saved = Linear::new(5, 4, true)?;
    saved.save(&path)?;
    let bytes = std::fs::read(&path).unwrap();
    let start = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    for pos in [start, start + 7, bytes.len() - 1] {
        let mut bad = bytes.clone();
        bad[pos] ^= 0x04;
        std::fs::write(&path, &bad).unwrap();
        let target = Linear::new(5, 4, true)?;
        let before = weights(&target);
        let e = target.load(&path).unwrap_err();
        assert!(matches!(e, Error::Format { .. }), "{e}");
        assert!(e.to_string().contains("digest") && e.to_string().contains("m.safetensors"), "{e}");
        assert_eq!(weights(&target), before);
        assert!(StateDict::load(&path).is_err());
    }
    // One more byte at the end, one byte fewer: refused by the layout itself.
    for damaged in [&bytes[..bytes.len() - 1], &[bytes.as_slice(), &[0]].concat()[..]] {
        std::fs::write(&path, damaged).unwrap();
        assert!(matches!(StateDict::load(&path), Err(Error::Format { .. })));
    }
    // The intact file loads exactly, and its digest is not part of the metadata seen.
    std::fs::write(&path, &bytes).unwrap();
    let target = Linear::new(5, 4, true)?;
    target.load(&path)?;
    assert_eq!(weights(&target), weights(&saved));
    let (_, meta) = StateDict::from_safetensors_bytes_with_metadata(&bytes, "m")?;
    assert!(meta.keys().all(|k| !k.contains("fnv")), "{meta:?}");
    // Re-encoding with that metadata gives a file that decodes (a fresh digest).
    let sd = StateDict::from_safetensors_bytes(&bytes, "m")?;
    assert_eq!(StateDict::from_safetensors_bytes(&sd.to_safetensors_bytes_with(meta)?, "again")?.keys(), sd.keys());
    Ok(())
}

fn conv_op(e: &Error) -> &'static str {
    match e {
        Error::InvalidArgument { op, .. } => op,
        other => panic!("expected an invalid-argument error, got {other:?}"),
    }
}

#[test]
fn conv_layers_refuse_empty_kernels_and_zero_strides_at_construction() {
    let d = Conv2dConfig::default;
    let cases: Vec<(Result<Conv2d, Error>, &str)> = vec![
        (Conv2d::new(1, 1, [0, 0], d()), "kernel_size"),
        (Conv2d::new(1, 1, [3, 0], d()), "kernel_size"),
        (Conv2d::new(1, 1, [3, 3], Conv2dConfig { stride: [0, 1], ..d() }), "stride"),
        (Conv2d::new(1, 1, [3, 3], Conv2dConfig { dilation: [1, 0], ..d() }), "dilation"),
        (Conv2d::new(1, 1, [usize::MAX, 2], d()), "overflows"),
    ];
    for (r, word) in cases {
        let e = r.unwrap_err();
        assert_eq!(conv_op(&e), "Conv2d");
        assert!(e.to_string().contains(word), "{e}");
    }
    let t = ConvTranspose2d::new(1, 1, [0, 2], d()).unwrap_err();
    assert_eq!(conv_op(&t), "ConvTranspose2d");
    assert!(t.to_string().contains("kernel_size"), "{t}");
    let t = ConvTranspose2d::new(1, 1, [2, 2], Conv2dConfig { stride: [0, 0], ..d() }).unwrap_err();
    assert!(t.to_string().contains("stride"), "{t}");
    let c1 = Conv1dConfig::default;
    for (r, word) in [
        (Conv1d::new(1, 1, 0, c1()), "kernel_size"),
        (Conv1d::new(1, 1, 3, Conv1dConfig { stride: 0, ..c1() }), "stride"),
        (Conv1d::new(1, 1, 3, Conv1dConfig { dilation: 0, ..c1() }), "dilation"),
    ] {
        let e = r.unwrap_err();
        assert_eq!(conv_op(&e), "Conv1d");
        assert!(e.to_string().contains(word), "{e}");
    }
}

#[test]
fn conv_layers_take_unbatched_input() -> Res<()> {
    let x = Tensor::randn([2, 3, 6, 5], DType::F32, &Device::cpu())?;
    let one = x.narrow(0, 1, 1)?.squeeze(0)?; // [3, 6, 5]
    let conv = Conv2d::new(3, 4, [3, 2], Conv2dConfig::default())?;
    let batched = conv.forward(&Var::from(x.clone()))?.tensor().narrow(0, 1, 1)?.squeeze(0)?;
    let unbatched = conv.forward(&Var::from(one.clone()))?.tensor().clone();
    assert_eq!(unbatched.dims(), &[4, 4, 4]);
    assert_eq!(unbatched.to_vec::<f32>()?, batched.to_vec::<f32>()?);
    let tconv = ConvTranspose2d::new(3, 2, [2, 2], Conv2dConfig::default())?;
    assert_eq!(tconv.forward(&Var::from(one.clone()))?.dims(), &[2, 7, 6]);
    let c1 = Conv1d::new(3, 2, 3, Conv1dConfig::default())?;
    let seq = Tensor::randn([3, 8], DType::F32, &Device::cpu())?;
    assert_eq!(c1.forward(&Var::from(seq))?.dims(), &[2, 6]);
    // Wrong ranks are errors naming the layer.
    for bad in [vec![5usize], vec![3, 5], vec![1, 1, 3, 6, 5]] {
        let e = conv.forward(&Var::from(Tensor::zeros(bad.clone(), DType::F32, &Device::cpu())?)).unwrap_err();
        assert!(matches!(e, Error::InvalidShape { op: "Conv2d", .. }), "{bad:?}: {e}");
    }
    let e = c1.forward(&Var::from(Tensor::zeros([8], DType::F32, &Device::cpu())?)).unwrap_err();
    assert!(matches!(e, Error::InvalidShape { op: "Conv1d", .. }), "{e}");
    Ok(())
}

#[test]
fn softmax_layers_name_themselves_for_a_bad_dim() -> Res<()> {
    let x = Var::from(Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0, 5.0, 7.0], [2, 3])?);
    for dim in [2isize, -3, 100, isize::MIN] {
        let e = Softmax::new(dim).forward(&x).unwrap_err();
        assert!(matches!(e, Error::DimOutOfRange { op: "Softmax", rank: 2, .. }), "{dim}: {e}");
        let e = LogSoftmax::new(dim).forward(&x).unwrap_err();
        assert!(matches!(e, Error::DimOutOfRange { op: "LogSoftmax", rank: 2, .. }), "{dim}: {e}");
    }
    // Valid dims still compute softmax: row sums of 1 and the reference values.
    let p = Softmax::new(-1).forward(&x)?.tensor().to_vec::<f64>()?;
    let z: f64 = [1.0f64, 2.0, 3.0].iter().map(|v| v.exp()).sum();
    assert!((p[0] - 1f64.exp() / z).abs() < 1e-15);
    let lp = LogSoftmax::new(0).forward(&x)?.tensor().to_vec::<f64>()?;
    assert!((lp[0] - (1.0 - (1f64.exp() + 4f64.exp()).ln())).abs() < 1e-14);
    // A 0-dim input takes dims 0 and -1 only.
    let s = Var::from(Tensor::from_vec(vec![3.0f64], Vec::<usize>::new())?);
    assert_eq!(Softmax::new(0).forward(&s)?.tensor().to_vec::<f64>()?, vec![1.0]);
    assert!(Softmax::new(1).forward(&s).is_err());
    Ok(())
}

#[test]
fn norm_layers_refuse_nonsensical_eps_and_momentum() {
    for eps in [f64::NAN, -1e-5, f64::INFINITY] {
        let cfg = BatchNormConfig { eps, ..Default::default() };
        let e = BatchNorm1d::with_config(3, cfg).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { op: "BatchNorm1d", .. }) && e.to_string().contains("eps"), "{e}");
        let e = BatchNorm2d::with_config(3, cfg).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { op: "BatchNorm2d", .. }), "{e}");
        let e = LayerNorm::with_options(&[3], eps, true).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { op: "LayerNorm", .. }), "{e}");
        let e = GroupNorm::with_options(1, 3, eps, true).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { op: "GroupNorm", .. }), "{e}");
    }
    for m in [f64::NAN, -0.1, 1.5] {
        let e = BatchNorm1d::with_config(3, BatchNormConfig { momentum: Some(m), ..Default::default() }).unwrap_err();
        assert!(e.to_string().contains("momentum"), "{e}");
    }
    assert!(BatchNorm1d::with_config(3, BatchNormConfig { momentum: None, eps: 0.0, ..Default::default() }).is_ok());
    assert!(GroupNorm::new(0, 4).is_err());
    assert!(Dropout::new(f64::NAN).is_err());
}

#[test]
fn group_norm_takes_an_empty_batch() -> Res<()> {
    let g = GroupNorm::new(2, 4)?;
    let y = g.forward(&Var::from(Tensor::zeros([0, 4, 3], DType::F32, &Device::cpu())?))?;
    assert_eq!(y.dims(), &[0, 4, 3]);
    // And a normal batch matches the by-hand normalisation of each group.
    let x = Tensor::from_vec((0..8).map(|v| v as f32).collect::<Vec<_>>(), [1, 4, 2])?;
    let y = g.forward(&Var::from(x))?.tensor().to_vec::<f32>()?;
    let (mean, var) = (1.5f32, 1.25f32);
    let want: Vec<f32> = (0..4).map(|v| (v as f32 - mean) / (var + 1e-5).sqrt()).collect();
    for (a, b) in y[..4].iter().zip(&want) {
        assert!((a - b).abs() < 1e-5, "{y:?}");
    }
    for (a, b) in y[4..].iter().zip(&want) {
        assert!((a - b).abs() < 1e-5, "{y:?}");
    }
    Ok(())
}

#[test]
fn pooling_and_sizes_from_users_are_errors_not_panics() -> Res<()> {
    let x = Var::from(Tensor::ones([1, 1, 4, 4], DType::F32, &Device::cpu())?);
    assert!(MaxPool2d::new([0, 0]).forward(&x).is_err());
    assert!(AvgPool2d::new([0, 2]).forward(&x).is_err());
    let zero_stride = MaxPool2d { stride: [0, 1], ..MaxPool2d::new([2, 2]) };
    assert!(zero_stride.forward(&x).is_err());
    assert!(AvgPool2d { stride: [1, 0], ..AvgPool2d::new([2, 2]) }.forward(&x).is_err());
    // Layer sizes whose weight cannot exist.
    for e in [
        Linear::new(usize::MAX, 2, true).map(|_| ()).unwrap_err(),
        Linear::new(1 << 62, 1, false).map(|_| ()).unwrap_err(),
        Embedding::new(usize::MAX, 2, None).map(|_| ()).unwrap_err(),
        BatchNorm1d::new(usize::MAX).map(|_| ()).unwrap_err(),
        LayerNorm::new(&[usize::MAX, 2]).map(|_| ()).unwrap_err(),
    ] {
        assert!(e.to_string().contains("overflows"), "{e}");
    }
    assert!(Conv2d::new(1 << 40, 1 << 40, [1 << 20, 1 << 20], Conv2dConfig::default()).is_err());
    Ok(())
}

#[test]
fn a_strict_load_with_missing_or_misshapen_keys_changes_nothing() -> Res<()> {
    let m = Linear::new(3, 2, true)?;
    let before = weights(&m);
    let mut sd = Linear::new(3, 2, true)?.state_dict().snapshot()?;
    sd.remove("bias");
    let e = m.load_state_dict(&sd, true).unwrap_err();
    assert!(e.to_string().contains("bias"), "{e}");
    assert_eq!(weights(&m), before);
    // Integer values of any size convert like PyTorch's copy_ (no panic), shapes must match.
    let mut sd = StateDict::new();
    sd.insert("weight", Tensor::from_vec(vec![i64::MAX, i64::MIN, 0, 1, -1, 7], [2, 3])?);
    sd.insert("bias", Tensor::from_vec(vec![1i64, 2, 3], [3])?);
    let e = m.load_state_dict(&sd, true).unwrap_err();
    assert!(e.to_string().contains("size mismatch for bias"), "{e}");
    assert_eq!(weights(&m), before);
    sd.insert("bias", Tensor::from_vec(vec![1i64, 2], [2])?);
    m.load_state_dict(&sd, true)?;
    assert_eq!(m.weight.tensor().to_vec::<f32>()?, vec![i64::MAX as f32, i64::MIN as f32, 0.0, 1.0, -1.0, 7.0]);
    Ok(())
}
