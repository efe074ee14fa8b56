//! Max pooling against a naive f64 reference: values and indices, with ties, NaN and
//! -inf in the data, over strides, padding, dilation and ceil mode, on contiguous
//! inputs (the direct loop) and strided ones (the generic path).

use tensor_core::{DType, Tensor};

/// Output length along one axis, PyTorch's rule.
fn out_len(n: usize, k: usize, s: usize, p: usize, d: usize, ceil: bool) -> usize {
    let span = (n + 2 * p - d * (k - 1) - 1) as f64 / s as f64;
    let mut o = if ceil { span.ceil() } else { span.floor() } as usize + 1;
    if ceil && (o - 1) * s >= n + p {
        o -= 1;
    }
    o
}

/// Naive max pooling of `[planes, h, w]`: the first maximum wins, the first NaN wins
/// over any number.
#[allow(clippy::too_many_arguments)]
fn reference(
    x: &[f64],
    planes: usize,
    h: usize,
    w: usize,
    k: [usize; 2],
    s: [usize; 2],
    p: [usize; 2],
    d: [usize; 2],
    ceil: bool,
) -> (Vec<f64>, Vec<i64>) {
    let (oh, ow) = (out_len(h, k[0], s[0], p[0], d[0], ceil), out_len(w, k[1], s[1], p[1], d[1], ceil));
    let (mut vals, mut idx) = (vec![], vec![]);
    for pl in 0..planes {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut best: Option<(f64, i64)> = None;
                for i in 0..k[0] {
                    for j in 0..k[1] {
                        let r = (oy * s[0] + i * d[0]) as isize - p[0] as isize;
                        let c = (ox * s[1] + j * d[1]) as isize - p[1] as isize;
                        if r < 0 || c < 0 || r >= h as isize || c >= w as isize {
                            continue;
                        }
                        let at = r as usize * w + c as usize;
                        let v = x[pl * h * w + at];
                        let take = match best {
                            None => true,
                            Some((b, _)) => !b.is_nan() && (v.is_nan() || v > b),
                        };
                        if take {
                            best = Some((v, at as i64));
                        }
                    }
                }
                let (v, i) = best.expect("every window holds an input element");
                vals.push(v);
                idx.push(i);
            }
        }
    }
    (vals, idx)
}

fn same(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
}

#[test]
fn max_pool2d_matches_a_naive_reference() -> tensor_core::Result<()> {
    let (n, c, h, w) = (2usize, 3usize, 9usize, 8usize);
    let planes = n * c;
    // Few distinct values (many ties), a NaN in some windows, -inf in others.
    let mut x: Vec<f64> = (0..planes * h * w).map(|i| ((i * 7919) % 5) as f64 - 2.0).collect();
    for (i, v) in x.iter_mut().enumerate() {
        if i % 37 == 5 {
            *v = f64::NAN;
        } else if i % 23 == 3 {
            *v = f64::NEG_INFINITY;
        }
    }
    let geoms = [
        ([2, 2], [2, 2], [0, 0], [1, 1], false),
        ([3, 3], [1, 1], [1, 1], [1, 1], false),
        ([3, 2], [2, 1], [1, 1], [1, 2], false),
        ([3, 3], [2, 2], [1, 0], [2, 1], true),
        ([2, 3], [3, 2], [0, 1], [1, 1], true),
    ];
    for dt in [DType::F32, DType::F64] {
        let t = Tensor::from_vec(x.clone(), [n, c, h, w])?.to_dtype(dt)?;
        // The same values behind a transposed layout take the generic path.
        let strided = t.transpose(2, 3)?.contiguous()?.transpose(2, 3)?;
        assert!(!strided.is_contiguous());
        for (k, s, p, d, ceil) in geoms {
            let (rv, ri) = reference(&t.to_vec_f64()?, planes, h, w, k, s, p, d, ceil);
            for input in [&t, &strided] {
                let (v, i) = input.max_pool2d_with_indices(k, s, p, d, ceil)?;
                let what =
                    format!("{dt} k{k:?} s{s:?} p{p:?} d{d:?} ceil {ceil}, contiguous {}", input.is_contiguous());
                assert!(same(&v.to_vec_f64()?, &rv), "{what}: values differ");
                assert_eq!(i.to_vec::<i64>()?, ri, "{what}: indices differ");
                assert!(same(&input.max_pool2d(k, s, p, d, ceil)?.to_vec_f64()?, &rv), "{what}: max_pool2d values");
            }
        }
    }
    Ok(())
}
