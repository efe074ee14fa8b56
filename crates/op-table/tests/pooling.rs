//! Max pooling against a naive f64 reference: values and indices, with ties, NaN and
//! -inf in the data, over strides, padding, dilation and ceil mode, on contiguous
//! inputs (the direct loop) and strided ones (the generic path). The reference is
//! the op table's (`op_table::nn::refs::max_pool2d`).

use op_table::nn::refs::max_pool2d;
use op_table::RefArray;
use tensor_core::{DType, MaxPool2dOptions, Tensor};

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
            let (rv, ri) = max_pool2d(&RefArray::from_tensor(&t), k, s, p, d, ceil);
            let (rv, ri): (Vec<f64>, Vec<i64>) = (rv.data, ri.data.iter().map(|&i| i as i64).collect());
            for input in [&t, &strided] {
                let (v, i) = input.max_pool2d_with_indices(
                    k,
                    MaxPool2dOptions { stride: Some(s), padding: p, dilation: d, ceil_mode: ceil },
                )?;
                let what =
                    format!("{dt} k{k:?} s{s:?} p{p:?} d{d:?} ceil {ceil}, contiguous {}", input.is_contiguous());
                assert!(same(&v.to_vec_f64()?, &rv), "{what}: values differ");
                assert_eq!(i.to_vec::<i64>()?, ri, "{what}: indices differ");
                assert!(
                    same(
                        &input
                            .max_pool2d(
                                k,
                                MaxPool2dOptions { stride: Some(s), padding: p, dilation: d, ceil_mode: ceil }
                            )?
                            .to_vec_f64()?,
                        &rv
                    ),
                    "{what}: max_pool2d values"
                );
            }
        }
    }
    Ok(())
}
