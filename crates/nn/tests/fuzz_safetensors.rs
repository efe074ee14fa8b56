//! Fuzzing the safetensors reader of [`StateDict`]: valid files, mutated (bit flips,
//! cuts, inserted and deleted bytes, overwritten headers, huge length fields, huge
//! numbers in the JSON header), must load to usable tensors or fail with a clean
//! format error: never a panic, a hang or an allocation out of proportion to the file.
//!
//! The inputs come from a fixed seed (`PROPTEST_RNG_SEED` picks another,
//! `PROPTEST_CASES` sets how many); run with `--nocapture` to see the counts.

#[path = "../../data/tests/fuzz_support/mod.rs"]
mod fuzz_support;

use std::collections::HashMap;
use std::time::Duration;

use nn::StateDict;
use tensor_core::{DType, Error, Tensor};

#[global_allocator]
static ALLOC: fuzz_support::Probe = fuzz_support::Probe;

fn sample(dtype: DType, shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::from_vec((0..n).map(|i| (i % 7) as f64 - 2.0).collect::<Vec<_>>(), shape.to_vec())
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

fn state_dict(entries: &[(&str, DType, &[usize])]) -> StateDict {
    let mut sd = StateDict::new();
    for (name, dtype, shape) in entries {
        sd.insert(*name, sample(*dtype, shape));
    }
    sd
}

/// The bytes of every tensor, so two state dicts can be compared exactly.
fn contents(sd: &StateDict) -> Vec<(String, DType, Vec<usize>, Vec<u8>)> {
    sd.iter()
        .map(|(n, t)| (n.to_string(), t.dtype(), t.dims().to_vec(), t.to_cpu_buffer().unwrap().to_bytes()))
        .collect()
}

#[test]
fn fuzz_safetensors() {
    let dicts = [
        state_dict(&[
            ("layer.weight", DType::F32, &[3, 4]),
            ("layer.bias", DType::F16, &[3]),
            ("emb", DType::BF16, &[2, 2]),
            ("count", DType::I64, &[]),
        ]),
        state_dict(&[
            ("mask", DType::Bool, &[5]),
            ("empty", DType::U8, &[0, 4]),
            ("ids", DType::I32, &[2, 1]),
            ("x", DType::F64, &[1]),
        ]),
    ];
    let mut bases: Vec<Vec<u8>> = dicts.iter().map(|d| d.to_safetensors_bytes().unwrap()).collect();
    let mut extra = HashMap::new();
    extra.insert("note".to_string(), "{\"epoch\": \"12\", \"shape\": [3, 4]}".to_string());
    bases.push(dicts[0].to_safetensors_bytes_with(extra).unwrap());
    let t = fuzz_support::fuzz(
        "safetensors",
        &bases,
        3000,
        |len| 16 * len + (1 << 20),
        Duration::from_secs(2),
        |_, b| match StateDict::from_safetensors_bytes(b, "f.safetensors") {
            Ok(sd) => {
                for (name, dtype, dims, data) in contents(&sd) {
                    let numel: usize = dims.iter().product();
                    assert_eq!(data.len(), numel * dtype.size_in_bytes(), "{name}: data and shape disagree");
                }
                for (_, t) in sd.iter() {
                    assert_eq!(t.to_vec_f64().unwrap().len(), t.numel());
                }
                true
            }
            Err(Error::Format { path, .. }) => {
                assert_eq!(path, "f.safetensors");
                false
            }
            Err(e) => panic!("expected a format error, got {e:?}"),
        },
    );
    assert!(t.loaded > 0 && t.errors > 0, "{t:?}");
    // The unmutated files load back to what was saved.
    for (d, b) in dicts.iter().zip(&bases) {
        assert_eq!(contents(&StateDict::from_safetensors_bytes(b, "ok").unwrap()), contents(d));
    }
}

#[test]
fn huge_header_lengths_and_shapes_are_errors() {
    let good = state_dict(&[("w", DType::F32, &[2])]).to_safetensors_bytes().unwrap();
    // The 8-byte header length, made huge, in a file of 20 bytes and in the real one.
    for len in [u64::MAX, 1 << 40, u32::MAX as u64, good.len() as u64] {
        for body in [&good[8..20], &good[8..]] {
            let mut b = len.to_le_bytes().to_vec();
            b.extend_from_slice(body);
            let (r, peak, _) = fuzz_support::measure(|| StateDict::from_safetensors_bytes(&b, "h"));
            assert!(matches!(r, Err(Error::Format { .. })), "header length {len}");
            assert!(peak < 1 << 20, "header length {len}: a {peak}-byte allocation");
        }
    }
    // Shapes whose element count overflows, or is zero while the other sizes overflow.
    let header = |shape: &str, end: usize| {
        let json = format!("{{\"w\":{{\"dtype\":\"F32\",\"shape\":{shape},\"data_offsets\":[0,{end}]}}}}");
        let mut b = (json.len() as u64).to_le_bytes().to_vec();
        b.extend_from_slice(json.as_bytes());
        b.extend(std::iter::repeat_n(0u8, end));
        b
    };
    for shape in
        ["[4294967296,4294967296]", "[18446744073709551615,2]", "[0,18446744073709551615,4]", "[4611686018427387904]"]
    {
        let r = StateDict::from_safetensors_bytes(&header(shape, 0), "s");
        assert!(matches!(r, Err(Error::Format { .. })), "{shape}: {:?}", r.map(|sd| contents(&sd)));
    }
    let sd = StateDict::from_safetensors_bytes(&header("[0,1048576]", 0), "s").unwrap();
    assert_eq!(sd.get("w").unwrap().dims(), &[0, 1048576]);
}
