//! Rotary embeddings against an f64 rotation written out pair by pair, plus gradcheck
//! and the relative-position property that makes RoPE useful.

use autograd::{gradcheck, Var};
use nn::{apply_rotary_emb, RotaryEmbedding};
use tensor_core::{DType, Device, Tensor};

/// Pair (i, i + D/2) at position t turned by t * base^(-2i/D), computed directly.
fn naive(x: &[f64], t_len: usize, d: usize, start: usize, base: f64) -> Vec<f64> {
    let half = d / 2;
    let mut out = x.to_vec();
    for (row, chunk) in x.chunks(d).enumerate() {
        let t = (row % t_len + start) as f64;
        for i in 0..half {
            let angle = t * base.powf(-((2 * i) as f64) / d as f64);
            let (a, b) = (chunk[i], chunk[i + half]);
            out[row * d + i] = a * angle.cos() - b * angle.sin();
            out[row * d + i + half] = a * angle.sin() + b * angle.cos();
        }
    }
    out
}

#[test]
fn matches_the_pairwise_rotation() {
    tensor_core::manual_seed(5);
    let (b, h, t, d) = (2, 3, 7, 8);
    let rope = RotaryEmbedding::new(d, 32, 10000.0).unwrap();
    let q = Tensor::randn([b, h, t, d], DType::F64, &Device::cpu()).unwrap();
    let k = Tensor::randn([b, h, t, d], DType::F64, &Device::cpu()).unwrap();
    for start in [0, 5] {
        let (qr, kr) = rope.apply(&Var::from(q.clone()), &Var::from(k.clone()), start).unwrap();
        for (got, x) in [(qr, &q), (kr, &k)] {
            let want = naive(&x.to_vec_f64().unwrap(), t, d, start, 10000.0);
            for (a, w) in got.tensor().to_vec_f64().unwrap().iter().zip(&want) {
                assert!((a - w).abs() < 1e-12, "start {start}: {a} vs {w}");
            }
        }
    }
    // f32 inputs agree with the f64 reference to f32 precision.
    let (qr, _) = rope.apply(&Var::from(q.to_dtype(DType::F32).unwrap()), &Var::from(k.clone()), 0).unwrap();
    assert_eq!(qr.dtype(), DType::F32);
    let want = naive(&q.to_vec_f64().unwrap(), t, d, 0, 10000.0);
    for (a, w) in qr.tensor().to_vec_f64().unwrap().iter().zip(&want) {
        assert!((a - w).abs() < 1e-5, "{a} vs {w}");
    }
}

/// q·k after rotation depends only on the distance between the positions.
#[test]
fn scores_depend_on_relative_position_only() {
    let d = 6;
    let rope = RotaryEmbedding::new(d, 64, 100.0).unwrap();
    let q = Tensor::from_vec(vec![0.3f64, -1.0, 0.7, 0.2, 0.5, -0.4], [1, d]).unwrap();
    let k = Tensor::from_vec(vec![-0.6f64, 0.1, 0.9, -0.3, 0.8, 0.05], [1, d]).unwrap();
    let score = |tq: usize, tk: usize| {
        let (cq, sq) = rope.cos_sin(tq, 1, DType::F64, &Device::cpu()).unwrap();
        let (ck, sk) = rope.cos_sin(tk, 1, DType::F64, &Device::cpu()).unwrap();
        let a = apply_rotary_emb(&Var::from(q.clone()), &cq, &sq).unwrap().tensor().to_vec_f64().unwrap();
        let b = apply_rotary_emb(&Var::from(k.clone()), &ck, &sk).unwrap().tensor().to_vec_f64().unwrap();
        a.iter().zip(&b).map(|(x, y)| x * y).sum::<f64>()
    };
    for (tq, tk) in [(3, 1), (10, 8), (40, 38)] {
        assert!((score(tq, tk) - score(2, 0)).abs() < 1e-12);
    }
    assert!((score(5, 0) - score(2, 0)).abs() > 1e-3);
}

#[test]
fn gradients_match_finite_differences() {
    tensor_core::manual_seed(9);
    let rope = RotaryEmbedding::new(4, 8, 10000.0).unwrap();
    let (cos, sin) = rope.cos_sin(1, 3, DType::F64, &Device::cpu()).unwrap();
    let x = Tensor::randn([2, 3, 4], DType::F64, &Device::cpu()).unwrap();
    gradcheck(|v| Ok(vec![apply_rotary_emb(&v[0], &cos, &sin)?]), &[x]).unwrap();
}

#[test]
fn bad_arguments_are_errors() {
    assert!(RotaryEmbedding::new(5, 8, 10000.0).is_err());
    assert!(RotaryEmbedding::new(4, 8, -1.0).is_err());
    assert!(RotaryEmbedding::new(4, usize::MAX / 2, 10000.0).is_err());
    let rope = RotaryEmbedding::new(4, 8, 10000.0).unwrap();
    let e = rope.cos_sin(6, 3, DType::F32, &Device::cpu()).err().unwrap().to_string();
    assert!(e.contains("max_seq_len 8"), "{e}");
    assert!(rope.cos_sin(usize::MAX, 2, DType::F32, &Device::cpu()).is_err());
    let (cos, sin) = rope.cos_sin(0, 3, DType::F32, &Device::cpu()).unwrap();
    let x = Var::from(Tensor::zeros([2, 4, 4], DType::F32, &Device::cpu()).unwrap());
    let e = apply_rotary_emb(&x, &cos, &sin).err().unwrap().to_string();
    assert!(e.contains("[2, 4, 4]") && e.contains("[3, 4]"), "{e}");
    let odd = Var::from(Tensor::zeros([3, 5], DType::F32, &Device::cpu()).unwrap());
    assert!(apply_rotary_emb(&odd, &cos, &sin).is_err());
}
