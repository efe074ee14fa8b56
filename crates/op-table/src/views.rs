//! Op-table records for the view ops (`view.rs`), plus reference helpers that
//! rearrange a [`RefArray`] by plain index arithmetic (shared by the other families
//! to build non-contiguous samples).

use tensor_core::{DType, Error, Tensor};

use crate::refs::unravel;
use crate::{call1, fn1, Fn1};
use crate::{rand_t, ErrorCase, OpInfo, RefArray, Sample, ALL};

/// An array of `shape` whose element at each index `i` is `a[src(i)]`.
pub fn ref_gather(a: &RefArray, shape: &[usize], src: impl Fn(&[usize]) -> Vec<usize>) -> RefArray {
    let n: usize = shape.iter().product();
    let data = (0..n).map(|i| a.at(&src(&unravel(i, shape)))).collect();
    RefArray::new(shape.to_vec(), data)
}

/// `a.permute(perm)`: dim `d` of the result is dim `perm[d]` of `a`.
pub fn ref_permute(a: &RefArray, perm: &[usize]) -> RefArray {
    let shape: Vec<usize> = perm.iter().map(|&p| a.shape[p]).collect();
    ref_gather(a, &shape, |idx| {
        let mut src = vec![0; perm.len()];
        for (d, &p) in perm.iter().enumerate() {
            src[p] = idx[d];
        }
        src
    })
}

/// The transpose of a 2-D array.
pub fn ref_t(a: &RefArray) -> RefArray {
    ref_permute(a, &[1, 0])
}

/// Entries `start, start + step, ...` (`len` of them) of dim `dim`.
pub fn ref_slice(a: &RefArray, dim: usize, start: usize, len: usize, step: usize) -> RefArray {
    let mut shape = a.shape.clone();
    shape[dim] = len;
    ref_gather(a, &shape, |idx| {
        let mut src = idx.to_vec();
        src[dim] = start + idx[dim] * step;
        src
    })
}

/// Index `i` of dim `dim`, the dim removed.
pub fn ref_select(a: &RefArray, dim: usize, i: usize) -> RefArray {
    let mut shape = a.shape.clone();
    shape.remove(dim);
    ref_gather(a, &shape, |idx| {
        let mut src = idx.to_vec();
        src.insert(dim, i);
        src
    })
}

/// NumPy broadcast of `a` to `shape`.
pub fn ref_expand(a: &RefArray, shape: &[usize]) -> RefArray {
    let n: usize = shape.iter().product();
    let data = (0..n).map(|i| a.at_broadcast(&unravel(i, shape))).collect();
    RefArray::new(shape.to_vec(), data)
}

/// The same row-major data under a new shape.
pub fn ref_reshape(a: &RefArray, shape: &[usize]) -> RefArray {
    RefArray::new(shape.to_vec(), a.data.clone())
}

fn is_dim(e: &Error) -> bool {
    matches!(e, Error::DimOutOfRange { .. })
}
fn is_index(e: &Error) -> bool {
    matches!(e, Error::IndexOutOfRange { .. })
}
fn is_arg(e: &Error) -> bool {
    matches!(e, Error::InvalidArgument { .. })
}
fn is_shape(e: &Error) -> bool {
    matches!(e, Error::ShapeMismatch { .. })
}

fn x(seed: u64, shape: &[usize]) -> Tensor {
    rand_t(seed, shape, -3.0, 3.0)
}

/// A one-input sample whose op is written once for `Tensor` and `Var`.
fn s1(desc: &str, t: Tensor, op: Fn1, r: impl Fn(&RefArray) -> RefArray + Send + Sync + 'static) -> Sample {
    Sample::call(desc, vec![t], call1!([op] | x | op.run(x)), move |a| vec![r(&a[0])])
}

fn reshape_ops() -> Vec<OpInfo> {
    let reshape = OpInfo::new("reshape", ALL, true)
        .covers(&["reshape_to"])
        .sample(s1("[2,3,4] -> [6,4]", x(1, &[2, 3, 4]), fn1!(|t| t.reshape(&[6, 4])), |a| ref_reshape(a, &[6, 4])))
        .sample(s1("[2,3,4] -> [4,-1]", x(2, &[2, 3, 4]), fn1!(|t| t.reshape(&[4, -1])), |a| ref_reshape(a, &[4, 6])))
        .sample(s1("0-dim -> [1,1]", x(3, &[]), fn1!(|t| t.reshape(&[1, 1])), |a| ref_reshape(a, &[1, 1])))
        .sample(s1("[1] -> 0-dim", x(4, &[1]), fn1!(|t| t.reshape(&[])), |a| ref_reshape(a, &[])))
        .sample(s1("zero-size [0,3] -> [3,0,2]", x(5, &[0, 3]), fn1!(|t| t.reshape(&[3, 0, 2])), |a| {
            ref_reshape(a, &[3, 0, 2])
        }))
        .sample(s1("transposed [4,3].t() -> [12] (copies)", x(6, &[4, 3]), fn1!(|t| t.t()?.reshape(&[12])), |a| {
            ref_reshape(&ref_t(a), &[12])
        }))
        .sample(s1(
            "step slice [3,8][:, ::2] -> [2,6]",
            x(7, &[3, 8]),
            fn1!(|t| t.slice(1, None, None, 2)?.reshape(&[2, 6])),
            |a| ref_reshape(&ref_slice(a, 1, 0, 4, 2), &[2, 6]),
        ))
        .sample(s1(
            "expanded [3,1] -> [3,4] -> [2,6]",
            x(8, &[3, 1]),
            fn1!(|t| t.expand(&[3, 4])?.reshape(&[2, 6])),
            |a| ref_reshape(&ref_expand(a, &[3, 4]), &[2, 6]),
        ))
        .sample(s1("reshape_to [2,3,4] -> [24]", x(9, &[2, 3, 4]), fn1!(|t| t.reshape_to([24])), |a| {
            ref_reshape(a, &[24])
        }))
        .error(ErrorCase::new("numel mismatch", || x(1, &[2, 3]).reshape(&[4, 2]), is_shape))
        .error(ErrorCase::new("two -1", || x(1, &[2, 3]).reshape(&[-1, -1]), is_arg))
        .error(ErrorCase::new("negative size", || x(1, &[2, 3]).reshape(&[-2, 3]), is_arg))
        .error(ErrorCase::new("-1 with zero-size rest", || x(1, &[0, 3]).reshape(&[0, -1]), is_shape))
        .error(ErrorCase::new("-1 not dividing", || x(1, &[2, 3]).reshape(&[4, -1]), is_shape));

    let view = OpInfo::new("view", ALL, true)
        .sample(s1("[2,3,4] -> [3,-1]", x(1, &[2, 3, 4]), fn1!(|t| t.view(&[3, -1])), |a| ref_reshape(a, &[3, 8])))
        .sample(s1(
            "view of a transposed tensor splitting one dim",
            x(2, &[4, 6]),
            fn1!(|t| t.t()?.view(&[2, 3, 4])),
            |a| ref_reshape(&ref_t(a), &[2, 3, 4]),
        ))
        .sample(s1(
            "view of a step slice keeping the sliced dim",
            x(3, &[2, 3, 8]),
            fn1!(|t| t.slice(2, Some(1), None, 2)?.view(&[6, 4])),
            |a| ref_reshape(&ref_slice(a, 2, 1, 4, 2), &[6, 4]),
        ))
        .sample(s1("zero-size", x(4, &[0, 4]), fn1!(|t| t.view(&[2, 0, 2])), |a| ref_reshape(a, &[2, 0, 2])))
        .error(ErrorCase::new(
            "view on a transposed tensor merging dims",
            || {
                let r = x(1, &[3, 4]).t()?.view(&[12]);
                match &r {
                    Err(e) if !e.to_string().contains("reshape") => {
                        Err(Error::arg("test", format!("error does not suggest reshape: {e}")))
                    }
                    _ => r,
                }
            },
            is_shape,
        ))
        .error(ErrorCase::new("numel mismatch", || x(1, &[2, 3]).view(&[5]), is_shape));

    let contiguous = OpInfo::new("contiguous", ALL, true)
        .covers(&["copy"])
        .sample(s1("already contiguous", x(1, &[2, 3]), fn1!(|t| t.contiguous()), |a| a.clone()))
        .sample(s1("transposed", x(2, &[2, 3]), fn1!(|t| t.t()?.contiguous()), ref_t))
        .sample(s1("expanded", x(3, &[3, 1]), fn1!(|t| t.expand(&[3, 4])?.contiguous()), |a| ref_expand(a, &[3, 4])))
        .sample(s1("copy of a step slice", x(4, &[3, 8]), fn1!(|t| t.slice(1, Some(1), None, 3)?.copy()), |a| {
            ref_slice(a, 1, 1, 3, 3)
        }))
        .sample(s1("copy of 0-dim", x(5, &[]), fn1!(|t| t.copy()), |a| a.clone()))
        .sample(s1("copy of zero-size", x(6, &[2, 0]), fn1!(|t| t.t()?.copy()), ref_t));

    vec![reshape, view, contiguous]
}

fn permute_ops() -> Vec<OpInfo> {
    let permute = OpInfo::new("permute", ALL, true)
        .sample(s1("[2,3,4] (2,0,1)", x(1, &[2, 3, 4]), fn1!(|t| t.permute(&[2, 0, 1])), |a| {
            ref_permute(a, &[2, 0, 1])
        }))
        .sample(s1("negative dims (-1,-3,-2)", x(2, &[2, 3, 4]), fn1!(|t| t.permute(&[-1, -3, -2])), |a| {
            ref_permute(a, &[2, 0, 1])
        }))
        .sample(s1("0-dim ()", x(3, &[]), fn1!(|t| t.permute(&[])), |a| a.clone()))
        .sample(s1("zero-size", x(4, &[0, 3]), fn1!(|t| t.permute(&[1, 0])), ref_t))
        .sample(s1("of a step slice", x(5, &[3, 8]), fn1!(|t| t.slice(1, None, None, 2)?.permute(&[1, 0])), |a| {
            ref_t(&ref_slice(a, 1, 0, 4, 2))
        }))
        .error(ErrorCase::new("repeated dim", || x(1, &[2, 3]).permute(&[0, 0]), is_arg))
        .error(ErrorCase::new("wrong length", || x(1, &[2, 3]).permute(&[0]), is_arg))
        .error(ErrorCase::new("dim out of range", || x(1, &[2, 3]).permute(&[0, 2]), is_dim));

    let transpose = OpInfo::new("transpose", ALL, true)
        .sample(s1("[2,3,4] (0,2)", x(1, &[2, 3, 4]), fn1!(|t| t.transpose(0, 2)), |a| ref_permute(a, &[2, 1, 0])))
        .sample(s1("negative (-1,-2)", x(2, &[2, 3, 4]), fn1!(|t| t.transpose(-1, -2)), |a| ref_permute(a, &[0, 2, 1])))
        .sample(s1("same dim", x(3, &[2, 3]), fn1!(|t| t.transpose(1, 1)), |a| a.clone()))
        .sample(s1("0-dim (0,0)", x(4, &[]), fn1!(|t| t.transpose(0, -1)), |a| a.clone()))
        .sample(s1("size-1 dims", x(5, &[1, 3, 1]), fn1!(|t| t.transpose(0, 1)), |a| ref_permute(a, &[1, 0, 2])))
        .error(ErrorCase::new("dim out of range", || x(1, &[2, 3]).transpose(0, 2), is_dim))
        .error(ErrorCase::new("0-dim dim 1", || x(1, &[]).transpose(0, 1), is_dim));

    let t = OpInfo::new("t", ALL, true)
        .sample(s1("[2,3]", x(1, &[2, 3]), fn1!(|t| t.t()), ref_t))
        .sample(s1("1-D unchanged", x(2, &[4]), fn1!(|t| t.t()), |a| a.clone()))
        .sample(s1("0-dim unchanged", x(3, &[]), fn1!(|t| t.t()), |a| a.clone()))
        .sample(s1("of a transposed tensor", x(4, &[3, 2]), fn1!(|t| t.t()?.t()), |a| a.clone()))
        .error(ErrorCase::new("3-D", || x(1, &[2, 3, 4]).t(), is_arg));

    vec![permute, transpose, t]
}

fn slicing_ops() -> Vec<OpInfo> {
    let narrow = OpInfo::new("narrow", ALL, true)
        .sample(s1("[4,5] dim 1 1..4", x(1, &[4, 5]), fn1!(|t| t.narrow(1, 1, 3)), |a| ref_slice(a, 1, 1, 3, 1)))
        .sample(s1("negative dim and start", x(2, &[4, 5]), fn1!(|t| t.narrow(-2, -3, 2)), |a| {
            ref_slice(a, 0, 1, 2, 1)
        }))
        .sample(s1("empty result", x(3, &[4, 5]), fn1!(|t| t.narrow(0, 4, 0)), |a| ref_slice(a, 0, 4, 0, 1)))
        .sample(s1("of a transposed tensor", x(4, &[5, 4]), fn1!(|t| t.t()?.narrow(1, 2, 3)), |a| {
            ref_slice(&ref_t(a), 1, 2, 3, 1)
        }))
        .error(ErrorCase::new("past the end", || x(1, &[4, 5]).narrow(1, 3, 3), is_index))
        .error(ErrorCase::new("start too negative", || x(1, &[4, 5]).narrow(1, -6, 1), is_index))
        .error(ErrorCase::new("huge length", || x(1, &[4, 5]).narrow(1, 1, usize::MAX), is_index))
        .error(ErrorCase::new("dim out of range", || x(1, &[4, 5]).narrow(2, 0, 1), is_dim))
        .error(ErrorCase::new("0-dim", || x(1, &[]).narrow(0, 0, 1), is_dim));

    let slice = OpInfo::new("slice", ALL, true)
        .sample(s1("[6] 1:-1:2", x(1, &[6]), fn1!(|t| t.slice(0, Some(1), Some(-1), 2)), |a| ref_slice(a, 0, 1, 2, 2)))
        .sample(s1("[3,8] ::3", x(2, &[3, 8]), fn1!(|t| t.slice(1, None, None, 3)), |a| ref_slice(a, 1, 0, 3, 3)))
        .sample(s1("[3,8] -5: (negative start)", x(3, &[3, 8]), fn1!(|t| t.slice(-1, Some(-5), None, 1)), |a| {
            ref_slice(a, 1, 3, 5, 1)
        }))
        .sample(s1("out-of-range bounds clamp", x(4, &[3, 8]), fn1!(|t| t.slice(1, Some(-100), Some(100), 4)), |a| {
            ref_slice(a, 1, 0, 2, 4)
        }))
        .sample(s1("start past end gives empty", x(5, &[3, 8]), fn1!(|t| t.slice(1, Some(6), Some(2), 1)), |a| {
            ref_slice(a, 1, 6, 0, 1)
        }))
        .sample(s1(
            "huge step keeps one element",
            x(6, &[3, 8]),
            fn1!(|t| t.slice(1, Some(2), None, usize::MAX)),
            |a| ref_slice(a, 1, 2, 1, 1),
        ))
        .sample(s1(
            "slice of a slice",
            x(7, &[3, 12]),
            fn1!(|t| t.slice(1, Some(1), None, 2)?.slice(1, Some(1), None, 2)),
            |a| ref_slice(a, 1, 3, 3, 4),
        ))
        .sample(s1("zero-size dim", x(8, &[0, 4]), fn1!(|t| t.slice(1, Some(1), None, 2)), |a| {
            ref_slice(a, 1, 1, 2, 2)
        }))
        .error(ErrorCase::new("step 0", || x(1, &[4]).slice(0, None, None, 0), is_arg))
        .error(ErrorCase::new("dim out of range", || x(1, &[4]).slice(1, None, None, 1), is_dim));

    let select = OpInfo::new("select", ALL, true)
        .sample(s1("[3,4] dim 0 index 1", x(1, &[3, 4]), fn1!(|t| t.select(0, 1)), |a| ref_select(a, 0, 1)))
        .sample(s1("[3,4] dim -1 index -1", x(2, &[3, 4]), fn1!(|t| t.select(-1, -1)), |a| ref_select(a, 1, 3)))
        .sample(s1("1-D to 0-dim", x(3, &[5]), fn1!(|t| t.select(0, 2)), |a| ref_select(a, 0, 2)))
        .sample(s1("of a transposed tensor", x(4, &[4, 3]), fn1!(|t| t.t()?.select(1, 2)), |a| {
            ref_select(&ref_t(a), 1, 2)
        }))
        .error(ErrorCase::new("index too large", || x(1, &[3, 4]).select(0, 3), is_index))
        .error(ErrorCase::new("index too negative", || x(1, &[3, 4]).select(1, -5), is_index))
        .error(ErrorCase::new("dim out of range", || x(1, &[3, 4]).select(2, 0), is_dim))
        .error(ErrorCase::new("0-dim", || x(1, &[]).select(0, 0), is_dim));

    vec![narrow, slice, select]
}

fn shape_ops() -> Vec<OpInfo> {
    let squeeze = OpInfo::new("squeeze", ALL, true)
        .covers(&["squeeze_all"])
        .sample(s1("[1,3,1] dim 0", x(1, &[1, 3, 1]), fn1!(|t| t.squeeze(0)), |a| ref_reshape(a, &[3, 1])))
        .sample(s1("[1,3,1] dim -1", x(2, &[1, 3, 1]), fn1!(|t| t.squeeze(-1)), |a| ref_reshape(a, &[1, 3])))
        .sample(s1("non-1 dim unchanged", x(3, &[1, 3, 1]), fn1!(|t| t.squeeze(1)), |a| a.clone()))
        .sample(s1("0-dim", x(4, &[]), fn1!(|t| t.squeeze(0)), |a| a.clone()))
        .sample(s1("squeeze_all", x(5, &[1, 3, 1, 2, 1]), fn1!(|t| Ok(t.squeeze_all())), |a| ref_reshape(a, &[3, 2])))
        .sample(s1("squeeze_all to 0-dim", x(6, &[1, 1]), fn1!(|t| Ok(t.squeeze_all())), |a| ref_reshape(a, &[])))
        .sample(s1(
            "squeeze_all of a transposed tensor",
            x(7, &[3, 1, 2]),
            fn1!(|t| Ok(t.permute(&[1, 2, 0])?.squeeze_all())),
            |a| ref_t(&ref_reshape(a, &[3, 2])),
        ))
        .error(ErrorCase::new("dim out of range", || x(1, &[1, 3]).squeeze(2), is_dim))
        .error(ErrorCase::new("0-dim dim 1", || x(1, &[]).squeeze(1), is_dim));

    let unsqueeze = OpInfo::new("unsqueeze", ALL, true)
        .sample(s1("[3,4] at 0", x(1, &[3, 4]), fn1!(|t| t.unsqueeze(0)), |a| ref_reshape(a, &[1, 3, 4])))
        .sample(s1("[3,4] at 2 (end)", x(2, &[3, 4]), fn1!(|t| t.unsqueeze(2)), |a| ref_reshape(a, &[3, 4, 1])))
        .sample(s1("[3,4] at -1", x(3, &[3, 4]), fn1!(|t| t.unsqueeze(-1)), |a| ref_reshape(a, &[3, 4, 1])))
        .sample(s1("0-dim", x(4, &[]), fn1!(|t| t.unsqueeze(0)), |a| ref_reshape(a, &[1])))
        .sample(s1("of a transposed tensor", x(5, &[4, 3]), fn1!(|t| t.t()?.unsqueeze(1)), |a| {
            ref_reshape(&ref_t(a), &[3, 1, 4])
        }))
        .error(ErrorCase::new("dim too large", || x(1, &[3, 4]).unsqueeze(3), is_dim))
        .error(ErrorCase::new("dim too negative", || x(1, &[3, 4]).unsqueeze(-4), is_dim));

    let expand = OpInfo::new("expand", ALL, true)
        .covers(&["broadcast_to", "expand_as"])
        .sample(s1("[3,1] -> [3,4]", x(1, &[3, 1]), fn1!(|t| t.expand(&[3, 4])), |a| ref_expand(a, &[3, 4])))
        .sample(s1(
            "[3,1] -> [2,-1,4] (new leading dim, -1 keeps)",
            x(2, &[3, 1]),
            fn1!(|t| t.expand(&[2, -1, 4])),
            |a| ref_expand(a, &[2, 3, 4]),
        ))
        .sample(s1("0-dim -> [2,3]", x(3, &[]), fn1!(|t| t.expand(&[2, 3])), |a| ref_expand(a, &[2, 3])))
        .sample(s1("[1] -> [0] (zero-size)", x(4, &[1]), fn1!(|t| t.expand(&[0])), |a| ref_expand(a, &[0])))
        .sample(s1("broadcast_to [4] -> [2,4]", x(5, &[4]), fn1!(|t| t.broadcast_to([2, 4])), |a| {
            ref_expand(a, &[2, 4])
        }))
        .sample(s1(
            "expand_as",
            x(6, &[1, 3]),
            fn1!(|t| t.expand_as(&crate::lift(Tensor::zeros([2, 3], DType::F32, t.tensor().device())?))),
            |a| ref_expand(a, &[2, 3]),
        ))
        .sample(s1("expand of a transposed tensor", x(7, &[1, 3]), fn1!(|t| t.t()?.expand(&[3, 2])), |a| {
            ref_expand(&ref_t(a), &[3, 2])
        }))
        .error(ErrorCase::new("non-1 dim", || x(1, &[3, 2]).expand(&[3, 4]), is_shape))
        .error(ErrorCase::new("fewer dims", || x(1, &[3, 1]).expand(&[3]), is_shape))
        .error(ErrorCase::new("-1 in a new leading dim", || x(1, &[3]).expand(&[-1, 3]), is_arg))
        .error(ErrorCase::new("negative size", || x(1, &[3, 1]).expand(&[3, -2]), is_arg))
        .error(ErrorCase::new("broadcast_to mismatch", || x(1, &[3]).broadcast_to([4]), is_shape));

    let flatten = OpInfo::new("flatten", ALL, true)
        .covers(&["unflatten"])
        .sample(s1("[2,3,4] all", x(1, &[2, 3, 4]), fn1!(|t| t.flatten(0, -1)), |a| ref_reshape(a, &[24])))
        .sample(s1("[2,3,4] 1..=2", x(2, &[2, 3, 4]), fn1!(|t| t.flatten(1, 2)), |a| ref_reshape(a, &[2, 12])))
        .sample(s1("single dim", x(3, &[2, 3, 4]), fn1!(|t| t.flatten(1, 1)), |a| a.clone()))
        .sample(s1("0-dim gives [1]", x(4, &[]), fn1!(|t| t.flatten(0, -1)), |a| ref_reshape(a, &[1])))
        .sample(s1("of a transposed tensor", x(5, &[4, 3]), fn1!(|t| t.t()?.flatten(0, 1)), |a| {
            ref_reshape(&ref_t(a), &[12])
        }))
        .sample(s1("unflatten [2,12] dim 1 -> (3,-1)", x(6, &[2, 12]), fn1!(|t| t.unflatten(1, &[3, -1])), |a| {
            ref_reshape(a, &[2, 3, 4])
        }))
        .sample(s1("unflatten dim -1", x(7, &[6]), fn1!(|t| t.unflatten(-1, &[2, 3])), |a| ref_reshape(a, &[2, 3])))
        .error(ErrorCase::new("start after end", || x(1, &[2, 3, 4]).flatten(2, 1), is_arg))
        .error(ErrorCase::new("dim out of range", || x(1, &[2, 3, 4]).flatten(0, 3), is_dim))
        .error(ErrorCase::new("0-dim bad dim", || x(1, &[]).flatten(2, 3), is_dim))
        .error(ErrorCase::new("unflatten sizes mismatch", || x(1, &[2, 12]).unflatten(1, &[5, 2]), is_shape))
        .error(ErrorCase::new("unflatten dim out of range", || x(1, &[2, 12]).unflatten(2, &[12]), is_dim));

    let as_strided = OpInfo::new("as_strided", ALL, true)
        .sample(s1(
            "[6] as [2,2] strides (1,2) (overlapping windows)",
            x(1, &[6]),
            fn1!(|t| t.copy()?.as_strided(&[2, 2], &[1, 2], 1)),
            |a| ref_gather(a, &[2, 2], |i| vec![1 + i[0] + 2 * i[1]]),
        ))
        .sample(s1("[3,4] as a diagonal", x(2, &[3, 4]), fn1!(|t| t.copy()?.as_strided(&[3], &[5], 0)), |a| {
            ref_gather(a, &[3], |i| vec![i[0], i[0]])
        }))
        .sample(s1("zero-size", x(3, &[4]), fn1!(|t| t.copy()?.as_strided(&[0, 2], &[1, 1], 0)), |a| {
            ref_gather(a, &[0, 2], |_| vec![0])
        }))
        .sample(s1("0-dim at an offset", x(4, &[5]), fn1!(|t| t.copy()?.as_strided(&[], &[], 4)), |a| {
            ref_gather(a, &[], |_| vec![4])
        }))
        .error(ErrorCase::new("outside the storage", || x(1, &[6]).as_strided(&[2, 3], &[3, 1], 1), is_arg))
        .error(ErrorCase::new("rank mismatch", || x(1, &[6]).as_strided(&[2, 3], &[3], 0), is_arg))
        .error(ErrorCase::new("overflowing strides", || x(1, &[6]).as_strided(&[2, 3], &[usize::MAX, 1], 0), is_arg));

    vec![squeeze, unsqueeze, expand, flatten, as_strided]
}

/// The records of this family.
pub fn ops() -> Vec<OpInfo> {
    let mut v = reshape_ops();
    v.extend(permute_ops());
    v.extend(slicing_ops());
    v.extend(shape_ops());
    v
}
