//! Op-table records for the matrix products: `matmul` over every rank combination
//! PyTorch defines (with broadcast batch dims), `mm`, `bmm`, `mv`, `dot`, `outer`.
//!
//! Inputs are small integers, exact in every dtype, so the products are exact where
//! the dtype can hold them and the checks are about indexing, strides and shapes;
//! views (transposed, sliced with a step, expanded with stride 0) reach the GEMM
//! as strides.

use tensor_core::{DType, Error, Result, Tensor};

use crate::refs::{broadcast, unravel};
use crate::{call, fn2, Fn2, Operand};
use crate::{int_t, rand_t, ErrorCase, OpInfo, RefArray, Sample, NUMERIC};

/// Dtypes of the products (bool is refused; u8 would wrap on these sums).
const MATMUL_DTYPES: &[DType] = &[DType::F32, DType::F64, DType::F16, DType::BF16, DType::I64, DType::I32];

/// PyTorch's `matmul` on reference arrays, with naive loops.
pub fn ref_matmul(a: &RefArray, b: &RefArray) -> RefArray {
    let (ra, rb) = (a.shape.len(), b.shape.len());
    let a2 = if ra == 1 { RefArray::new(vec![1, a.shape[0]], a.data.clone()) } else { a.clone() };
    let b2 = if rb == 1 { RefArray::new(vec![b.shape[0], 1], b.data.clone()) } else { b.clone() };
    let (m, k) = (a2.shape[a2.shape.len() - 2], a2.shape[a2.shape.len() - 1]);
    let n = b2.shape[b2.shape.len() - 1];
    let batch = broadcast(&a2.shape[..a2.shape.len() - 2], &b2.shape[..b2.shape.len() - 2]);
    let nb: usize = batch.iter().product();
    let mut data = Vec::with_capacity(nb * m * n);
    for bi in 0..nb {
        let bidx = unravel(bi, &batch);
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0;
                for p in 0..k {
                    let mut ia = bidx.clone();
                    ia.extend([i, p]);
                    let mut ib = bidx.clone();
                    ib.extend([p, j]);
                    s += a2.at_broadcast(&ia) * b2.at_broadcast(&ib);
                }
                data.push(s);
            }
        }
    }
    let mut shape = batch;
    if ra > 1 {
        shape.push(m);
    }
    if rb > 1 {
        shape.push(n);
    }
    RefArray::new(shape, data)
}

/// How an operand is laid out before the product, mirrored in the reference.
#[derive(Clone, Copy, Debug)]
enum Lay {
    Plain,
    /// Stored transposed (last two dims), viewed back with `transpose(-2, -1)`.
    T,
    /// Every other row of a twice-as-tall tensor (dim -2 with a step).
    Step,
    /// Dim -2 is stride 0: `[.., 1, c]` expanded to `[.., r, c]`.
    Expand(usize),
}

/// The stored tensor for `lay` holding the logical values of `shape`, and the view
/// that recovers them.
fn stored(seed: u64, shape: &[usize], lay: Lay) -> Tensor {
    let r = shape.len();
    match lay {
        Lay::Plain => int_t(seed, shape, -3, 3),
        Lay::T => {
            let mut s = shape.to_vec();
            s.swap(r - 2, r - 1);
            int_t(seed, &s, -3, 3)
        }
        Lay::Step => {
            let mut s = shape.to_vec();
            s[r - 2] *= 2;
            int_t(seed, &s, -3, 3)
        }
        Lay::Expand(_) => {
            let mut s = shape.to_vec();
            s[r - 2] = 1;
            int_t(seed, &s, -3, 3)
        }
    }
}

fn view<T: Operand>(t: &T, lay: Lay) -> Result<T> {
    match lay {
        Lay::Plain => Ok(t.clone()),
        Lay::T => t.transpose(-2, -1),
        Lay::Step => t.slice(-2, None, None, 2),
        Lay::Expand(rows) => {
            let mut s: Vec<isize> = t.tensor().dims().iter().map(|&d| d as isize).collect();
            let r = s.len();
            s[r - 2] = rows as isize;
            t.expand(&s)
        }
    }
}

fn view_ref(a: &RefArray, lay: Lay) -> RefArray {
    let r = a.shape.len();
    let mut shape = a.shape.clone();
    match lay {
        Lay::Plain => return a.clone(),
        Lay::T => shape.swap(r - 2, r - 1),
        Lay::Step => shape[r - 2] = a.shape[r - 2].div_ceil(2),
        Lay::Expand(rows) => shape[r - 2] = rows,
    }
    let data = (0..shape.iter().product())
        .map(|i| {
            let mut idx = unravel(i, &shape);
            match lay {
                Lay::T => idx.swap(r - 2, r - 1),
                Lay::Step => idx[r - 2] *= 2,
                Lay::Expand(_) => idx[r - 2] = 0,
                Lay::Plain => {}
            }
            a.at(&idx)
        })
        .collect();
    RefArray::new(shape, data)
}

fn pair(desc: &str, (sa, la): (&[usize], Lay), (sb, lb): (&[usize], Lay), op: &Fn2) -> Sample {
    Sample::call(
        desc,
        vec![stored(1, sa, la), stored(2, sb, lb)],
        call!([op] | x | Ok(vec![op.run(&view(&x[0], la)?, &view(&x[1], lb)?)?])),
        move |x| vec![ref_matmul(&view_ref(&x[0], la), &view_ref(&x[1], lb))],
    )
}

fn plain(desc: &str, sa: &[usize], sb: &[usize], op: &Fn2) -> Sample {
    pair(desc, (sa, Lay::Plain), (sb, Lay::Plain), op)
}

fn is_shape(e: &Error) -> bool {
    matches!(e, Error::ShapeMismatch { .. })
}

fn f(shape: &[usize]) -> Tensor {
    rand_t(7, shape, -1.0, 1.0)
}

fn matmul() -> OpInfo {
    let mm = &fn2!(|a, b| a.matmul(b));
    let (p, t, s) = (Lay::Plain, Lay::T, Lay::Step);
    let mut info = OpInfo::new("matmul", MATMUL_DTYPES, true)
        .sample(plain("1-D x 1-D (dot)", &[4], &[4], mm))
        .sample(plain("1-D x 2-D", &[3], &[3, 4], mm))
        .sample(plain("2-D x 1-D", &[2, 3], &[3], mm))
        .sample(plain("2-D x 2-D", &[2, 3], &[3, 4], mm))
        .sample(plain("3-D x 2-D", &[2, 2, 3], &[3, 4], mm))
        .sample(plain("2-D x 3-D", &[2, 3], &[2, 3, 4], mm))
        .sample(plain("1-D x 3-D", &[3], &[2, 3, 4], mm))
        .sample(plain("3-D x 1-D", &[2, 2, 3], &[3], mm))
        .sample(plain("3-D x 3-D", &[2, 3, 4], &[2, 4, 5], mm))
        .sample(plain("4-D x 3-D, batch broadcast [2,1] with [5]", &[2, 1, 3, 4], &[5, 4, 2], mm))
        .sample(plain("batch broadcast [1] with [3]", &[1, 3, 4], &[3, 4, 2], mm))
        .sample(plain("size-1 m and n: [1,3] x [3,1]", &[1, 3], &[3, 1], mm))
        .sample(plain("k = 0 gives zeros", &[2, 0], &[0, 3], mm))
        .sample(plain("m = 0", &[0, 3], &[3, 4], mm))
        .sample(plain("n = 0", &[2, 3], &[3, 0], mm))
        .sample(plain("batch 0", &[0, 2, 3], &[3, 4], mm))
        .sample(plain("1-D x 1-D of length 0", &[0], &[0], mm))
        .sample(pair("transposed lhs", (&[3, 5], t), (&[5, 4], p), mm))
        .sample(pair("transposed rhs", (&[3, 5], p), (&[5, 4], t), mm))
        .sample(pair("both transposed, batched", (&[2, 3, 5], t), (&[2, 5, 4], t), mm))
        .sample(pair("step-sliced lhs rows", (&[3, 5], s), (&[5, 4], p), mm))
        .sample(pair("step-sliced rhs rows, batched", (&[2, 3, 5], p), (&[5, 4], s), mm))
        .sample(pair("expanded lhs rows (stride 0)", (&[4, 5], Lay::Expand(4)), (&[5, 3], p), mm))
        .sample(pair("expanded rhs rows (stride 0)", (&[2, 5], p), (&[5, 3], Lay::Expand(5)), mm))
        .sample(plain("larger [64,64] x [64,64] (parallel GEMM)", &[64, 64], &[64, 64], mm))
        .sample(plain("many small batches [40,3,4] x [40,4,5]", &[40, 3, 4], &[40, 4, 5], mm))
        .sample(pair("larger transposed [70,50]^T x [70,60]", (&[50, 70], t), (&[70, 60], p), mm));
    // Expanded batch dims (stride 0 in the batch) with a non-mergeable layout.
    info = info.sample(Sample::call(
        "expanded batch dims [3,1,2,4] -> [3,2,2,4] x [4,3]",
        vec![int_t(3, &[3, 1, 2, 4], -3, 3), int_t(4, &[4, 3], -3, 3)],
        call!(|x| Ok(vec![x[0].expand(&[3, 2, 2, 4])?.matmul(&x[1])?])),
        |x| {
            let a = &x[0];
            let e = RefArray::new(vec![3, 2, 2, 4], (0..48).map(|i| a.at(&[i / 16, 0, (i / 4) % 2, i % 4])).collect());
            vec![ref_matmul(&e, &x[1])]
        },
    ));
    info.errors.push(ErrorCase::new(
        "inner sizes differ: 2x3 by 4x2",
        || f(&[2, 3]).matmul(&f(&[4, 2])),
        |e| matches!(e, Error::ShapeMismatch { msg, .. } if msg.contains("cannot multiply 2x3 by 4x2")),
    ));
    info.errors.push(ErrorCase::new("1-D lengths differ", || f(&[3]).matmul(&f(&[4])), is_shape));
    info.errors.push(ErrorCase::new("batch dims do not broadcast", || f(&[2, 3, 4]).matmul(&f(&[3, 4, 5])), is_shape));
    info.errors.push(ErrorCase::new("0-dim operand", || f(&[]).matmul(&f(&[3])), is_shape));
    info.errors.push(ErrorCase::new(
        "f32 x f64",
        || f(&[2, 3]).to_dtype(DType::F32)?.matmul(&f(&[3, 2])),
        |e| matches!(e, Error::DTypeMismatch { .. }),
    ));
    info.errors.push(ErrorCase::new(
        "bool operands",
        || {
            let b = f(&[2, 2]).gt_scalar(0.0)?;
            b.matmul(&b)
        },
        |e| matches!(e, Error::Unsupported { .. }),
    ));
    info
}

fn others() -> Vec<OpInfo> {
    let (p, t) = (Lay::Plain, Lay::T);
    let mm = &fn2!(|a, b| a.mm(b));
    let bmm = &fn2!(|a, b| a.bmm(b));
    let mv = &fn2!(|a, b| a.mv(b));
    let dot = &fn2!(|a, b| a.dot(b));
    let mut v = vec![
        OpInfo::new("mm", MATMUL_DTYPES, true)
            .sample(plain("[2,3] x [3,4]", &[2, 3], &[3, 4], mm))
            .sample(pair("transposed rhs", (&[2, 3], p), (&[3, 4], t), mm))
            .sample(plain("k = 0", &[2, 0], &[0, 4], mm))
            .sample(plain("size-1", &[1, 1], &[1, 1], mm))
            .error(ErrorCase::new("3-D lhs", || f(&[2, 2, 3]).mm(&f(&[3, 4])), is_shape))
            .error(ErrorCase::new("1-D rhs", || f(&[2, 3]).mm(&f(&[3])), is_shape))
            .error(ErrorCase::new(
                "inner sizes differ",
                || f(&[2, 3]).mm(&f(&[4, 2])),
                |e| matches!(e, Error::ShapeMismatch { op: "mm", msg, .. } if msg.contains("2x3 by 4x2")),
            )),
        OpInfo::new("bmm", MATMUL_DTYPES, true)
            .sample(plain("[2,3,4] x [2,4,5]", &[2, 3, 4], &[2, 4, 5], bmm))
            .sample(pair("transposed lhs", (&[3, 2, 4], t), (&[3, 4, 2], p), bmm))
            .sample(plain("batch 0", &[0, 3, 4], &[0, 4, 5], bmm))
            .error(ErrorCase::new("batch sizes differ", || f(&[2, 3, 4]).bmm(&f(&[3, 4, 5])), is_shape))
            .error(ErrorCase::new("no broadcasting of batch 1", || f(&[1, 3, 4]).bmm(&f(&[2, 4, 5])), is_shape))
            .error(ErrorCase::new("2-D operands", || f(&[3, 4]).bmm(&f(&[4, 5])), is_shape))
            .error(ErrorCase::new("inner sizes differ", || f(&[2, 3, 4]).bmm(&f(&[2, 5, 4])), is_shape)),
        OpInfo::new("mv", MATMUL_DTYPES, true)
            .sample(plain("[3,4] x [4]", &[3, 4], &[4], mv))
            .sample(pair("transposed matrix", (&[3, 4], t), (&[4], p), mv))
            .sample(plain("k = 0", &[3, 0], &[0], mv))
            .sample(plain("m = 0", &[0, 4], &[4], mv))
            .error(ErrorCase::new("2-D vector", || f(&[3, 4]).mv(&f(&[4, 1])), is_shape))
            .error(ErrorCase::new("length differs", || f(&[3, 4]).mv(&f(&[3])), is_shape)),
        OpInfo::new("dot", MATMUL_DTYPES, true)
            .sample(plain("length 5", &[5], &[5], dot))
            .sample(plain("length 1", &[1], &[1], dot))
            .sample(plain("length 0 gives 0", &[0], &[0], dot))
            .sample(plain("long (100)", &[100], &[100], dot))
            .error(ErrorCase::new("lengths differ", || f(&[3]).dot(&f(&[4])), is_shape))
            .error(ErrorCase::new("2-D operand", || f(&[3, 1]).dot(&f(&[3])), is_shape)),
    ];
    let outer_ref = |x: &[RefArray]| {
        let (a, b) = (&x[0], &x[1]);
        let data = a.data.iter().flat_map(|&p| b.data.iter().map(move |&q| p * q)).collect();
        vec![RefArray::new(vec![a.numel(), b.numel()], data)]
    };
    let outer = |desc: &str, n: usize, m: usize| {
        Sample::call(
            desc,
            vec![int_t(5, &[n], -3, 3), int_t(6, &[m], -3, 3)],
            call!(|x| Ok(vec![x[0].outer(&x[1])?])),
            outer_ref,
        )
    };
    v.push(
        OpInfo::new("outer", NUMERIC, true)
            .sample(outer("[3] x [4]", 3, 4))
            .sample(outer("[1] x [1]", 1, 1))
            .sample(outer("[0] x [4]", 0, 4))
            .sample(outer("[3] x [0]", 3, 0))
            .error(ErrorCase::new("2-D operand", || f(&[3, 1]).outer(&f(&[3])), is_shape))
            .error(ErrorCase::new("0-dim operand", || f(&[3]).outer(&f(&[])), is_shape)),
    );
    v
}

/// The records of this family.
pub fn ops() -> Vec<OpInfo> {
    let mut v = vec![matmul()];
    v.extend(others());
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_matmul_matches_hand_values() {
        let a = RefArray::new(vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]);
        let b = RefArray::new(vec![2], vec![1.0, 1.0]);
        assert_eq!(ref_matmul(&a, &a).data, vec![7.0, 10.0, 15.0, 22.0]);
        assert_eq!(ref_matmul(&a, &b).data, vec![3.0, 7.0]);
        assert_eq!(ref_matmul(&b, &a).data, vec![4.0, 6.0]);
        assert_eq!(ref_matmul(&b, &b).shape, Vec::<usize>::new());
        assert_eq!(view_ref(&a, Lay::T).data, vec![1.0, 3.0, 2.0, 4.0]);
        assert_eq!(view_ref(&a, Lay::Step).data, vec![1.0, 2.0]);
        assert_eq!(view_ref(&a, Lay::Expand(3)).data, vec![1.0, 2.0, 1.0, 2.0, 1.0, 2.0]);
    }
}
