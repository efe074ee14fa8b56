//! Module plumbing: naming, state dicts and safetensors files, strict loading,
//! freezing, train/eval, cloning, moving, and bad input.

use autograd::Var;
use nn::*;
use tensor_core::{DType, Device, Error, Tensor};

struct Net {
    features: Sequential,
    head: Linear,
    norm: BatchNorm1d,
}

impl Module for Net {
    fn visit(&self, v: &mut dyn Visitor) {
        v.module("features", &self.features);
        v.module("head", &self.head);
        v.module("norm", &self.norm);
    }
}

impl Forward for Net {
    fn forward(&self, x: &Var) -> tensor_core::Result<Var> {
        self.norm.forward(&self.head.forward(&self.features.forward(x)?)?)
    }
}

fn net() -> Net {
    Net {
        features: Sequential::new()
            .add(Linear::new(4, 6, true).unwrap())
            .add(ReLU)
            .add(Dropout::new(0.5).unwrap())
            .add(Linear::new(6, 5, false).unwrap()),
        head: Linear::new(5, 3, true).unwrap(),
        norm: BatchNorm1d::new(3).unwrap(),
    }
}

fn tmp(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("nn-test-{}-{name}", std::process::id()))
}

#[test]
fn named_parameters_use_pytorch_names() {
    let m = net();
    let names: Vec<String> = m.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "features.0.weight",
            "features.0.bias",
            "features.3.weight",
            "head.weight",
            "head.bias",
            "norm.weight",
            "norm.bias"
        ]
    );
    let buffers: Vec<String> = m.named_buffers().into_iter().map(|(n, _)| n).collect();
    assert_eq!(buffers, ["norm.running_mean", "norm.running_var", "norm.num_batches_tracked"]);
    assert_eq!(m.num_parameters(), 4 * 6 + 6 + 6 * 5 + 5 * 3 + 3 + 3 + 3);
    assert_eq!(m.parameters().len(), 7);
    let keys = m.state_dict().keys();
    assert_eq!(keys.len(), 10);
    assert_eq!(keys[7], "norm.running_mean");
}

#[test]
fn shared_parameters_are_listed_once_and_clones_share() {
    let fc = Linear::new(3, 3, true).unwrap();
    let seq = Sequential::new().add(fc.clone()).add(fc.clone());
    assert_eq!(seq.named_parameters().len(), 2);
    assert_eq!(seq.state_dict().len(), 4); // both names, like PyTorch
    let copy = fc.clone();
    tensor_core::manual_seed(3);
    init::normal_(&copy.weight, 0.0, 1.0).unwrap();
    assert_eq!(copy.weight.tensor().to_vec2::<f32>().unwrap(), fc.weight.tensor().to_vec2::<f32>().unwrap());
}

#[test]
fn state_dict_round_trips_through_safetensors() {
    tensor_core::manual_seed(1);
    let a = net();
    // Move the running stats away from their defaults.
    a.forward(&Var::from(Tensor::randn([8, 4], DType::F32, &Device::cpu()).unwrap())).unwrap();
    let path = tmp("roundtrip.safetensors");
    a.save(&path).unwrap();
    let b = net();
    b.load(&path).unwrap();
    let (sa, sb) = (a.state_dict(), b.state_dict());
    assert_eq!(sa.keys(), sb.keys());
    for (k, t) in sa.iter() {
        let u = sb.get(k).unwrap();
        assert_eq!(t.dtype(), u.dtype(), "{k}");
        assert!(t.equal(u).unwrap(), "{k} differs after the round trip");
    }
    assert_eq!(sb.get("norm.num_batches_tracked").unwrap().to_scalar::<i64>().unwrap(), 1);
    // The file keeps the state dict's order.
    assert_eq!(StateDict::load(&path).unwrap().keys(), sa.keys());
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn safetensors_keep_every_dtype() {
    let mut sd = StateDict::new();
    sd.insert("f32", Tensor::new(&[1.5f32, -2.0]));
    sd.insert("f64", Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], [2, 2]).unwrap());
    sd.insert("f16", Tensor::new(&[1.0f32, 0.5]).to_dtype(DType::F16).unwrap());
    sd.insert("bf16", Tensor::new(&[1.0f32, 0.25]).to_dtype(DType::BF16).unwrap());
    sd.insert("i64", Tensor::new(&[7i64, -9]));
    sd.insert("i32", Tensor::new(&[3i32]));
    sd.insert("u8", Tensor::new(&[255u8, 0]));
    sd.insert("bool", Tensor::new(&[true, false, true]));
    sd.insert("scalar", Tensor::scalar(4i64));
    sd.insert("transposed", Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], [2, 3]).unwrap().t().unwrap());
    let path = tmp("dtypes.safetensors");
    sd.save(&path).unwrap();
    let back = StateDict::load(&path).unwrap();
    assert_eq!(back.keys(), sd.keys());
    for (k, t) in sd.iter() {
        let u = back.get(k).unwrap();
        assert_eq!((u.dtype(), u.dims()), (t.dtype(), t.dims()), "{k}");
        assert!(t.equal(u).unwrap(), "{k}");
    }
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn corrupt_or_truncated_files_are_errors() {
    let m = Linear::new(3, 2, true).unwrap();
    let path = tmp("corrupt.safetensors");
    m.save(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    for cut in [0, 4, 8, 20, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        assert!(m.load(&path).is_err(), "truncated at {cut} loaded");
    }
    let mut garbage = bytes.clone();
    for b in garbage.iter_mut().skip(8).take(40) {
        *b = b'#';
    }
    std::fs::write(&path, &garbage).unwrap();
    assert!(matches!(StateDict::load(&path), Err(Error::Format { .. })));
    // A huge header length.
    let mut huge = bytes.clone();
    huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    std::fs::write(&path, &huge).unwrap();
    assert!(StateDict::load(&path).is_err());
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(m.load(&path), Err(Error::Io { .. })));
    // No temporary files are left next to a saved file.
    let dir = std::env::temp_dir().join(format!("nn-test-{}-atomic", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    m.save(dir.join("w.safetensors")).unwrap();
    let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, [std::ffi::OsString::from("w.safetensors")]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn strict_load_lists_missing_unexpected_and_mismatched() {
    let m = Linear::new(3, 2, true).unwrap();
    let before = m.weight.tensor().to_vec2::<f32>().unwrap();
    let mut sd = StateDict::new();
    sd.insert("weight", Tensor::zeros([2, 4], DType::F32, &Device::cpu()).unwrap());
    sd.insert("extra", Tensor::zeros([1], DType::F32, &Device::cpu()).unwrap());
    let err = m.load_state_dict(&sd, true).unwrap_err().to_string();
    assert!(err.contains("\"bias\""), "{err}");
    assert!(err.contains("\"extra\""), "{err}");
    assert!(err.contains("size mismatch for weight"), "{err}");
    assert!(err.contains("[2, 4]") && err.contains("[2, 3]"), "{err}");
    // Shape mismatches fail even when not strict; nothing was changed.
    assert!(m.load_state_dict(&sd, false).is_err());
    assert_eq!(m.weight.tensor().to_vec2::<f32>().unwrap(), before);
    // Non-strict reports the keys and loads what matches.
    sd.insert("weight", Tensor::ones([2, 3], DType::F64, &Device::cpu()).unwrap());
    let keys = m.load_state_dict(&sd, false).unwrap();
    assert_eq!(keys.missing_keys, ["bias"]);
    assert_eq!(keys.unexpected_keys, ["extra"]);
    assert_eq!(m.weight.tensor().to_vec2::<f32>().unwrap(), vec![vec![1.0; 3]; 2]);
    assert_eq!(m.weight.tensor().dtype(), DType::F32);
}

#[test]
fn loading_keeps_the_parameter_identity() {
    let m = Linear::new(2, 1, false).unwrap();
    let handle = m.parameters()[0].clone();
    let mut sd = StateDict::new();
    sd.insert("weight", Tensor::from_vec(vec![5.0f32, 6.0], [1, 2]).unwrap());
    m.load_state_dict(&sd, true).unwrap();
    assert_eq!(handle.tensor().to_vec2::<f32>().unwrap(), vec![vec![5.0, 6.0]]);
}

#[test]
fn freeze_stops_gradients() {
    let m = net();
    m.eval();
    m.features.freeze().unwrap();
    assert_eq!(m.num_trainable_parameters(), 5 * 3 + 3 + 3 + 3);
    let x = Var::from(Tensor::ones([2, 4], DType::F32, &Device::cpu()).unwrap());
    m.forward(&x).unwrap().sum(&[], false).unwrap().backward().unwrap();
    for (n, p) in m.named_parameters() {
        assert_eq!(p.grad().is_some(), !n.starts_with("features"), "{n}");
    }
    m.unfreeze().unwrap();
    assert_eq!(m.num_trainable_parameters(), m.num_parameters());
    m.zero_grad();
    assert!(m.named_parameters().iter().all(|(_, p)| p.grad().is_none()));
}

#[test]
fn train_and_eval_switch_dropout_and_batchnorm() {
    tensor_core::manual_seed(7);
    let m = net();
    assert!(m.is_training() && m.features.is_training());
    m.eval();
    assert!(!m.is_training() && !m.norm.is_training() && !m.features.is_training());
    let d = Dropout::new(0.3).unwrap();
    let x = Var::from(Tensor::ones([20000], DType::F64, &Device::cpu()).unwrap());
    let y = d.forward(&x).unwrap().tensor().to_vec::<f64>().unwrap();
    let zeros = y.iter().filter(|&&v| v == 0.0).count() as f64 / y.len() as f64;
    assert!((zeros - 0.3).abs() < 0.02, "dropped fraction {zeros}");
    assert!(y.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.7).abs() < 1e-12));
    d.eval();
    assert_eq!(d.forward(&x).unwrap().tensor().to_vec::<f64>().unwrap(), vec![1.0; 20000]);

    let bn = BatchNorm1d::new(2).unwrap();
    let x = Var::from(Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 6.0], [2, 2]).unwrap());
    let y = bn.forward(&x).unwrap().tensor().to_vec::<f32>().unwrap();
    // Training: batch statistics, each channel normalised to +-1 (up to eps).
    assert!((y[0] + 1.0).abs() < 1e-4 && (y[2] - 1.0).abs() < 1e-4);
    let rm = bn.running_mean().unwrap().to_vec::<f32>().unwrap();
    let rv = bn.running_var().unwrap().to_vec::<f32>().unwrap();
    assert_eq!(rm, vec![0.2, 0.4]);
    assert!((rv[0] - (0.9 + 0.1 * 2.0)).abs() < 1e-6 && (rv[1] - (0.9 + 0.1 * 8.0)).abs() < 1e-6);
    bn.eval();
    let y = bn.forward(&x).unwrap().tensor().to_vec::<f32>().unwrap();
    assert!((y[0] - (1.0 - 0.2) / (1.1f32 + 1e-5).sqrt()).abs() < 1e-6);
    // Evaluation does not touch the running statistics.
    assert_eq!(bn.running_mean().unwrap().to_vec::<f32>().unwrap(), vec![0.2, 0.4]);
    assert_eq!(bn.num_batches_tracked(), Some(1));
}

#[test]
fn cumulative_batchnorm_momentum() {
    let bn = BatchNorm1d::with_config(1, BatchNormConfig { momentum: None, ..Default::default() }).unwrap();
    for (a, b) in [(0.0f32, 2.0), (4.0, 6.0)] {
        bn.forward(&Var::from(Tensor::from_vec(vec![a, b], [2, 1]).unwrap())).unwrap();
    }
    // A plain average of the two batch means (1 and 5).
    assert_eq!(bn.running_mean().unwrap().to_vec::<f32>().unwrap(), vec![3.0]);
}

#[test]
fn to_dtype_and_to_device_keep_names_and_integer_buffers() {
    let m = net();
    m.to_dtype(DType::F64).unwrap();
    for (k, t) in m.state_dict().iter() {
        let want = if k.ends_with("num_batches_tracked") { DType::I64 } else { DType::F64 };
        assert_eq!(t.dtype(), want, "{k}");
    }
    assert!(m.to_dtype(DType::I32).is_err());
    m.to_device(&Device::cpu()).unwrap();
    assert!(m.parameters().iter().all(|p| p.requires_grad()));
    let y = m.forward(&Var::from(Tensor::ones([3, 4], DType::F64, &Device::cpu()).unwrap())).unwrap();
    assert_eq!(y.dtype(), DType::F64);
}

#[test]
fn sequential_and_module_list_index_and_name_children() {
    let layers: Vec<Box<dyn Forward>> = vec![Box::new(Linear::new(2, 2, true).unwrap()), Box::new(Tanh)];
    let s = Sequential::from(layers);
    assert_eq!(s.len(), 2);
    assert_eq!(s[0].num_parameters(), 6);
    assert!(s.get(2).is_none());
    let mut l = ModuleList::new();
    l.push(Linear::new(2, 3, false).unwrap()).push(Linear::new(3, 1, false).unwrap());
    let names: Vec<String> = l.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["0.weight", "1.weight"]);
    let mut y = Var::from(Tensor::ones([4, 2], DType::F32, &Device::cpu()).unwrap());
    for m in l.iter() {
        y = m.forward(&y).unwrap();
    }
    assert_eq!(y.dims(), &[4, 1]);
    let u = Unflatten::new(1, &[2, -1]);
    let z = u.forward(&Var::from(Tensor::ones([3, 6], DType::F32, &Device::cpu()).unwrap())).unwrap();
    assert_eq!(z.dims(), &[3, 2, 3]);
    assert_eq!(Flatten::new().forward(&z).unwrap().dims(), &[3, 6]);
}

#[test]
fn apply_runs_an_initialiser_by_name() {
    let m = net();
    m.apply(&mut |name, p| if name.ends_with("bias") { init::constant_(p, 0.5) } else { Ok(()) }).unwrap();
    let b = m.head.bias.as_ref().unwrap().tensor().to_vec::<f32>().unwrap();
    assert_eq!(b, vec![0.5; 3]);
}

#[test]
fn bad_inputs_are_errors_naming_the_layer() {
    let x = Var::from(Tensor::ones([2, 5], DType::F32, &Device::cpu()).unwrap());
    let e = Linear::new(4, 3, true).unwrap().forward(&x).unwrap_err().to_string();
    assert!(e.contains("Linear"), "{e}");
    let e = BatchNorm1d::new(4).unwrap().forward(&x).unwrap_err().to_string();
    assert!(e.contains("BatchNorm1d"), "{e}");
    let e = BatchNorm2d::new(5).unwrap().forward(&x).unwrap_err().to_string();
    assert!(e.contains("BatchNorm2d"), "{e}");
    let one = Var::from(Tensor::ones([1, 5], DType::F32, &Device::cpu()).unwrap());
    assert!(BatchNorm1d::new(5).unwrap().forward(&one).is_err(), "one value per channel in training");
    assert!(LayerNorm::new(&[4]).unwrap().forward(&x).is_err());
    assert!(GroupNorm::new(3, 4).is_err());
    assert!(Dropout::new(1.5).is_err());
    assert!(Conv2d::new(3, 4, [3, 3], Conv2dConfig { groups: 2, ..Default::default() }).is_err());
    let e = Conv2d::new(3, 4, [3, 3], Conv2dConfig::default()).unwrap().forward(&x).unwrap_err().to_string();
    assert!(e.contains("Conv2d"), "{e}");
    assert!(Embedding::new(3, 2, Some(3)).is_err());
    let emb = Embedding::new(3, 2, None).unwrap();
    assert!(emb.forward(&Var::from(Tensor::new(&[0i64, 3]))).is_err());
    assert!(emb.forward(&Var::from(Tensor::new(&[-1i64]))).is_err());
    let b = Bilinear::new(2, 3, 1, true).unwrap();
    assert!(b.forward2(&x, &x).is_err());
}

#[test]
fn embedding_max_norm_renormalises_the_rows_looked_up_like_pytorch() {
    // An f64 reference of PyTorch's embedding_renorm_: each distinct looked-up row with
    // norm > max_norm is scaled by max_norm / (norm + 1e-7); the others stay.
    for (p, max_norm) in [(2.0, 1.5), (1.0, 2.0), (f64::INFINITY, 0.7), (3.0, 1.0)] {
        let emb = Embedding::new(6, 4, None).unwrap().with_max_norm(max_norm, p).unwrap();
        let before: Vec<f64> = emb.weight.tensor().to_dtype(DType::F64).unwrap().to_vec::<f64>().unwrap();
        let ids = [4i64, 1, 4, 0, 5];
        let y = emb.forward(&Var::from(Tensor::from_vec(ids.to_vec(), [5]).unwrap())).unwrap();
        let after: Vec<f64> = emb.weight.tensor().to_dtype(DType::F64).unwrap().to_vec::<f64>().unwrap();
        for r in 0..6 {
            let row = &before[r * 4..r * 4 + 4];
            let norm = if p.is_infinite() {
                row.iter().fold(0.0f64, |m, v| m.max(v.abs()))
            } else {
                row.iter().map(|v| v.abs().powf(p)).sum::<f64>().powf(1.0 / p)
            };
            let scale = if ids.contains(&(r as i64)) && norm > max_norm { max_norm / (norm + 1e-7) } else { 1.0 };
            for c in 0..4 {
                let (want, got) = (row[c] * scale, after[r * 4 + c]);
                assert!((want - got).abs() <= 1e-6 * want.abs().max(1.0), "p {p} row {r}: {got} vs {want}");
            }
        }
        // The lookup sees the renormalised table.
        let y: Vec<f32> = y.tensor().to_vec::<f32>().unwrap();
        for (k, &i) in ids.iter().enumerate() {
            for c in 0..4 {
                assert_eq!(y[k * 4 + c] as f64, after[i as usize * 4 + c]);
            }
        }
    }
    let emb = Embedding::new(3, 2, None).unwrap();
    assert!(emb.clone().with_max_norm(-1.0, 2.0).is_err());
    assert!(emb.clone().with_max_norm(1.0, 0.0).is_err());
    assert!(emb.clone().with_max_norm(f64::NAN, 2.0).is_err());
    let emb = emb.with_max_norm(0.1, 2.0).unwrap();
    let before = emb.weight.tensor().to_vec::<f32>().unwrap();
    let e = emb.forward(&Var::from(Tensor::new(&[0i64, 3]))).unwrap_err();
    assert!(matches!(e, Error::IndexOutOfRange { op: "Embedding", index: 3, .. }), "{e}");
    assert_eq!(emb.weight.tensor().to_vec::<f32>().unwrap(), before, "a bad index changes nothing");
}

#[test]
fn loss_errors() {
    use nn::loss::*;
    let x = Var::from(Tensor::zeros([3, 4], DType::F64, &Device::cpu()).unwrap());
    let o = CrossEntropyOptions::default();
    let e = cross_entropy(&x, &Tensor::new(&[0i64, 4, 1]), &o).unwrap_err();
    assert!(matches!(e, Error::IndexOutOfRange { op: "cross_entropy", index: 4, .. }), "{e}");
    assert!(cross_entropy(&x, &Tensor::new(&[0i64, -2, 1]), &o).is_err());
    assert!(cross_entropy(&x, &Tensor::new(&[0i64, 1]), &o).is_err());
    let w = CrossEntropyOptions { weight: Some(Tensor::new(&[1.0f64, 2.0])), ..Default::default() };
    assert!(cross_entropy(&x, &Tensor::new(&[0i64, 1, 2]), &w).is_err());
    let ls = CrossEntropyOptions { label_smoothing: 1.5, ..Default::default() };
    assert!(cross_entropy(&x, &Tensor::new(&[0i64, 1, 2]), &ls).is_err());
    // Everything ignored: the mean is NaN like PyTorch.
    let ig = CrossEntropyOptions { ignore_index: 1, ..Default::default() };
    let l = cross_entropy(&x, &Tensor::new(&[1i64, 1, 1]), &ig).unwrap();
    assert!(l.tensor().to_scalar::<f64>().unwrap().is_nan());
    let y = Var::from(Tensor::zeros([3, 3], DType::F64, &Device::cpu()).unwrap());
    assert!(mse_loss(&x, &y, &MseLossOptions::default()).is_err());
    assert!(mse_loss(&x, &x, &MseLossOptions { reduction: Reduction::BatchMean }).is_err());
    let big = Var::from(Tensor::full([3, 4], 1.5, DType::F64, &Device::cpu()).unwrap());
    assert!(binary_cross_entropy(&big, &x, &BceOptions::default()).is_err());
}

#[test]
fn cross_entropy_handles_spatial_and_unbatched_inputs() {
    use nn::loss::*;
    tensor_core::manual_seed(11);
    let x4 = Tensor::randn([2, 3, 2, 2], DType::F64, &Device::cpu()).unwrap();
    let t = Tensor::from_vec(vec![0i64, 1, 2, 1, 2, 2, 0, 1], [2, 2, 2]).unwrap();
    let o = CrossEntropyOptions { reduction: Reduction::None, ..Default::default() };
    let per = cross_entropy(&Var::from(x4.clone()), &t, &o).unwrap();
    assert_eq!(per.dims(), &[2, 2, 2]);
    // Each spatial position equals the same loss computed on its own [1, C] row.
    let xv = x4.to_vec_f64().unwrap();
    let tv = t.to_vec::<i64>().unwrap();
    let pv = per.tensor().to_vec_f64().unwrap();
    for n in 0..2 {
        for p in 0..4 {
            let row: Vec<f64> = (0..3).map(|c| xv[n * 12 + c * 4 + p]).collect();
            let lse = row.iter().map(|v| v.exp()).sum::<f64>().ln();
            let want = lse - row[tv[n * 4 + p] as usize];
            assert!((pv[n * 4 + p] - want).abs() < 1e-12);
        }
    }
    let x1 = Var::from(Tensor::new(&[1.0f64, 2.0, 3.0]));
    let l = cross_entropy(&x1, &Tensor::scalar(2i64), &CrossEntropyOptions::default()).unwrap();
    let want = (1f64.exp() + 2f64.exp() + 3f64.exp()).ln() - 3.0;
    assert!((l.tensor().to_scalar::<f64>().unwrap() - want).abs() < 1e-12);
}

#[test]
fn batchnorm_statistics_accessors() {
    let bn = BatchNorm2d::new(3).unwrap();
    assert_eq!(bn.running_mean().unwrap().to_vec::<f32>().unwrap(), vec![0.0; 3]);
    assert_eq!(bn.running_var().unwrap().to_vec::<f32>().unwrap(), vec![1.0; 3]);
    assert_eq!(bn.num_batches_tracked(), Some(0));
    let x = Var::from(Tensor::from_vec((0..12).map(|v| v as f32).collect(), [2, 3, 2, 1]).unwrap());
    bn.forward(&x).unwrap();
    bn.forward(&x).unwrap();
    assert_eq!(bn.num_batches_tracked(), Some(2));
    // The accessors are handles onto the buffers the state dict sees.
    assert_eq!(
        bn.running_mean().unwrap().to_vec::<f32>().unwrap(),
        bn.state_dict().get("running_mean").unwrap().to_vec::<f32>().unwrap()
    );
    let off =
        BatchNorm2d::with_config(3, BatchNormConfig { track_running_stats: false, ..Default::default() }).unwrap();
    assert!(off.running_mean().is_none() && off.running_var().is_none());
    assert_eq!(off.num_batches_tracked(), None);
}
