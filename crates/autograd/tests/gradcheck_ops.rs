//! gradcheck and gradgradcheck for the `Var`-only ops (losses, `pad_zeros`, `mt`,
//! `sum_to`, which have no tensor form and so no op-table record), and the checks
//! that are not table-shaped: a naive convolution loop, the fold/unfold adjoint,
//! where max-pooling routes its gradient, embedding's padding row, batch norm's
//! running statistics, error messages and integer inputs. Every tensor op's
//! gradients are checked over the op table in `op_table_grad.rs`.

use autograd::{gradcheck, gradgradcheck, Var};
use op_table::{rand_t, RefArray};
use tensor_core::{
    ClassLossOptions, Conv1dOptions, Conv2dOptions, ConvTranspose2dOptions, MaxPool2dOptions, PadMode, Result, Tensor,
};

type VarFn = Box<dyn Fn(&[Var]) -> Result<Vec<Var>>>;

struct Case {
    name: &'static str,
    inputs: Vec<Tensor>,
    f: VarFn,
}

fn case(name: &'static str, inputs: Vec<Tensor>, f: impl Fn(&[Var]) -> Result<Var> + 'static) -> Case {
    Case { name, inputs, f: Box::new(move |v| Ok(vec![f(v)?])) }
}

/// Values in [-2, 2).
fn r(seed: u64, shape: &[usize]) -> Tensor {
    rand_t(seed, shape, -2.0, 2.0)
}

/// A transposed view of random values with the given (final) shape.
fn tr(seed: u64, shape: &[usize]) -> Tensor {
    let mut s = shape.to_vec();
    s.reverse();
    let n = s.len() as isize;
    let perm: Vec<isize> = (0..n).rev().collect();
    r(seed, &s).permute(&perm).unwrap()
}

fn ix(v: &[i64], shape: &[usize]) -> Tensor {
    Tensor::from_vec(v.to_vec(), shape.to_vec()).unwrap()
}

/// The `Var` ops with no tensor counterpart.
fn var_only_cases() -> Vec<Case> {
    vec![
        case("mt", vec![r(700, &[2, 3, 4])], |v| v[0].mt()),
        case("sum_to", vec![r(710, &[2, 3, 4])], |v| v[0].sum_to(&[3, 1])),
        case("sum_to 0-dim", vec![tr(711, &[2, 3])], |v| v[0].sum_to(&[])),
        case("pad_zeros", vec![r(1011, &[2, 3])], |v| v[0].pad_zeros(&[1, 2, 0, 1])),
        case("pad_zeros transposed", vec![tr(1012, &[3, 4])], |v| v[0].pad_zeros(&[0, 1])),
        case("mse_loss", vec![r(1017, &[3, 2]), r(1018, &[3, 2])], |v| v[0].mse_loss(&v[1])),
        case("mse_loss 0-dim", vec![r(1019, &[]), r(1020, &[])], |v| v[0].mse_loss(&v[1])),
        case("cross_entropy", vec![r(1021, &[4, 3])], |v| v[0].cross_entropy(&ix(&[0, 2, 1, 2], &[4]))),
        case("cross_entropy transposed logits", vec![tr(1022, &[3, 5])], |v| v[0].cross_entropy(&ix(&[4, 0, 4], &[3]))),
        case("cross_entropy_rows weighted, smoothed, one row ignored", vec![r(1023, &[4, 5])], |v| {
            let o =
                ClassLossOptions { weight: Some(rand_t(1024, &[5], 0.1, 2.0)), ignore_index: 3, label_smoothing: 0.2 };
            v[0].cross_entropy_rows(&ix(&[0, 4, 3, 2], &[4]), &o)
        }),
        case("cross_entropy_rows transposed logits", vec![tr(1025, &[3, 6])], |v| {
            v[0].cross_entropy_rows(&ix(&[5, -100, 1], &[3]), &ClassLossOptions::default())
        }),
    ]
}

#[test]
fn gradcheck_and_gradgradcheck_var_only_ops() {
    let mut failures = Vec::new();
    let cases = var_only_cases();
    let n = cases.len();
    for c in cases {
        if let Err(e) = gradcheck(&c.f, &c.inputs) {
            failures.push(format!("{}: {e}", c.name));
        }
        if let Err(e) = gradgradcheck(&c.f, &c.inputs) {
            failures.push(format!("{} (second derivatives): {e}", c.name));
        }
    }
    assert!(failures.is_empty(), "{} of {n} cases failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn conv2d_matches_a_naive_reference() -> Result<()> {
    type Geom = ([usize; 4], [usize; 4], [usize; 2], [usize; 2], [usize; 2], usize);
    let geoms: [Geom; 4] = [
        ([2, 4, 6, 5], [4, 2, 3, 2], [2, 1], [1, 2], [1, 2], 2),
        ([1, 2, 1, 1], [3, 2, 5, 5], [1, 1], [2, 2], [1, 1], 1),
        ([1, 1, 2, 3], [2, 1, 3, 5], [1, 1], [1, 3], [1, 1], 1),
        ([2, 2, 4, 4], [2, 2, 2, 2], [1, 1], [0, 3], [1, 3], 1),
    ];
    for (xd, wdims, s, p, d, g) in geoms {
        conv2d_case(xd, wdims, s, p, d, g)?;
    }
    Ok(())
}

fn conv2d_case(xd: [usize; 4], wdims: [usize; 4], s: [usize; 2], p: [usize; 2], d: [usize; 2], g: usize) -> Result<()> {
    let (x, w) = (r(1100, &xd), r(1101, &wdims));
    let y = Var::from(x.clone()).conv2d(
        &Var::from(w.clone()),
        None,
        Conv2dOptions { stride: s, padding: p, dilation: d, groups: g },
    )?;
    let (xv, wv) = (x.to_vec_f64()?, w.to_vec_f64()?);
    let [n, c, h, wd] = xd;
    let [o, cg, kh, kw] = wdims;
    let oh = (h + 2 * p[0] - d[0] * (kh - 1) - 1) / s[0] + 1;
    let ow = (wd + 2 * p[1] - d[1] * (kw - 1) - 1) / s[1] + 1;
    assert_eq!(y.dims(), &[n, o, oh, ow]);
    let yv = y.tensor().to_vec_f64()?;
    let og = o / g;
    for b in 0..n {
        for oc in 0..o {
            let grp = oc / og;
            for i in 0..oh {
                for j in 0..ow {
                    let mut acc = 0.0;
                    for ci in 0..cg {
                        for a in 0..kh {
                            for e in 0..kw {
                                let hi = (i * s[0] + a * d[0]) as isize - p[0] as isize;
                                let wi = (j * s[1] + e * d[1]) as isize - p[1] as isize;
                                if hi < 0 || wi < 0 || hi >= h as isize || wi >= wd as isize {
                                    continue;
                                }
                                let cc = grp * cg + ci;
                                acc += xv[((b * c + cc) * h + hi as usize) * wd + wi as usize]
                                    * wv[((oc * cg + ci) * kh + a) * kw + e];
                            }
                        }
                    }
                    let got = yv[((b * o + oc) * oh + i) * ow + j];
                    assert!((got - acc).abs() < 1e-12, "{xd:?} * {wdims:?} ({b},{oc},{i},{j}): {got} vs {acc}");
                }
            }
        }
    }
    let f = move |v: &[Var]| {
        Ok(vec![v[0].conv2d(&v[1], None, Conv2dOptions { stride: s, padding: p, dilation: d, groups: g })?])
    };
    gradcheck(f, &[x, w]).map_err(|e| tensor_core::Error::Autograd(format!("{xd:?} * {wdims:?}: {e}")))
}

#[test]
fn norm_of_a_zero_vector_has_a_zero_gradient() -> Result<()> {
    let x = Var::param(Tensor::zeros([3], tensor_core::DType::F64, &Default::default())?)?;
    x.norm(2.0, &[], false)?.backward()?;
    assert_eq!(x.grad().unwrap().to_vec::<f64>()?, vec![0.0; 3]);
    Ok(())
}

/// The Var ops agree with the tensor-core forwards and, for the transposed
/// convolution, with op-table's naive loop.
#[test]
fn conv_and_pool_forwards_match_tensor_core() -> Result<()> {
    let (x, w, b) = (r(1700, &[2, 4, 3, 5]), r(1701, &[4, 3, 3, 2]), r(1702, &[6]));
    let (s, pd, op, d, g) = ([2usize, 1], [1usize, 0], [1usize, 0], [1usize, 2], 2usize);
    let y = Var::from(x.clone()).conv_transpose2d(
        &Var::from(w.clone()),
        Some(&Var::from(b.clone())),
        ConvTranspose2dOptions { stride: s, padding: pd, output_padding: op, groups: g, dilation: d },
    )?;
    let want = x.conv_transpose2d(
        &w,
        Some(&b),
        ConvTranspose2dOptions { stride: s, padding: pd, output_padding: op, groups: g, dilation: d },
    )?;
    assert!(y.tensor().allclose(&want, 1e-12, 1e-12, false)?);
    let naive = op_table::nn::refs::conv_transpose2d(
        &RefArray::from_tensor(&x),
        &RefArray::from_tensor(&w),
        Some(&RefArray::from_tensor(&b)),
        s,
        pd,
        op,
        d,
        g,
    );
    assert!(op_table::compare(y.tensor(), &naive, 1e-12, 1e-12).is_ok());
    let x2 = tr(1703, &[2, 4, 6, 5]);
    let w2 = r(1704, &[6, 2, 3, 2]);
    let y2 = Var::from(x2.clone()).conv2d(
        &Var::from(w2.clone()),
        None,
        Conv2dOptions { stride: [2, 1], padding: [1, 2], dilation: [1, 2], groups: 2 },
    )?;
    assert!(y2.tensor().allclose(
        &x2.conv2d(&w2, None, Conv2dOptions { stride: [2, 1], padding: [1, 2], dilation: [1, 2], groups: 2 })?,
        1e-12,
        1e-12,
        false
    )?);
    let y3 = Var::from(x2.clone()).max_pool2d(
        [3, 2],
        MaxPool2dOptions { stride: Some([2, 2]), padding: [1, 1], ceil_mode: true, ..Default::default() },
    )?;
    assert!(y3.tensor().equal(&x2.max_pool2d(
        [3, 2],
        MaxPool2dOptions { stride: Some([2, 2]), padding: [1, 1], ceil_mode: true, ..Default::default() }
    )?)?);
    Ok(())
}

/// `unfold2d` and `fold2d` are adjoint: <unfold(x), c> == <x, fold(c)>.
#[test]
fn fold2d_is_the_adjoint_of_unfold2d() -> Result<()> {
    let x = r(1710, &[2, 3, 7, 6]);
    let (k, d, pd, s) = ([3, 2], [2, 1], [1, 2], [2, 3]);
    let u = x.unfold2d(k, d, pd, s)?;
    let c = r(1711, u.dims());
    let lhs = u.mul(&c)?.sum_all()?.to_scalar::<f64>()?;
    let rhs = x.mul(&c.fold2d([7, 6], k, d, pd, s)?)?.sum_all()?.to_scalar::<f64>()?;
    assert!((lhs - rhs).abs() < 1e-10, "{lhs} vs {rhs}");
    Ok(())
}

#[test]
fn max_pool2d_routes_the_gradient_to_the_argmax() -> Result<()> {
    let x = Var::param(Tensor::from_vec(vec![1.0f64, 5.0, 2.0, 0.0, 3.0, 4.0, 9.0, 8.0, 7.0], [1, 1, 3, 3])?)?;
    let (y, idx) =
        x.max_pool2d_with_indices([2, 2], MaxPool2dOptions { stride: Some([1, 1]), ..Default::default() })?;
    assert_eq!(idx.to_vec::<i64>()?, vec![1, 1, 6, 7]);
    y.backward_with(&Tensor::from_vec(vec![1.0f64, 10.0, 100.0, 1000.0], [1, 1, 2, 2])?)?;
    assert_eq!(x.grad().unwrap().to_vec::<f64>()?, vec![0.0, 11.0, 0.0, 0.0, 0.0, 0.0, 100.0, 1000.0, 0.0]);
    Ok(())
}

#[test]
fn embedding_padding_idx_row_gets_no_gradient_and_duplicates_add() -> Result<()> {
    let w = Var::param(r(1720, &[4, 2]))?;
    let idx = ix(&[1, 3, 1, 1, 0], &[5]);
    let y = w.embedding(&idx, Some(3))?;
    assert_eq!(y.tensor().to_vec_f64()?.len(), 10);
    y.sum_all()?.backward()?;
    assert_eq!(w.grad().unwrap().to_vec::<f64>()?, vec![1.0, 1.0, 3.0, 3.0, 0.0, 0.0, 0.0, 0.0]);
    assert!(w.embedding(&idx, Some(4)).is_err());
    Ok(())
}

#[test]
fn batch_norm_updates_running_stats_like_tensor_core() -> Result<()> {
    let x = r(1730, &[4, 3, 2]);
    let (rm1, rv1) = (Tensor::new(&[0.1f64, 0.2, 0.3]), Tensor::new(&[1.0f64, 2.0, 0.5]));
    let (rm2, rv2) = (rm1.copy()?, rv1.copy()?);
    let y = Var::from(x.clone()).batch_norm(Some(&rm1), Some(&rv1), None, None, true, 0.2, 1e-5)?;
    let want = x.batch_norm(Some(&rm2), Some(&rv2), None, None, true, 0.2, 1e-5)?;
    assert!(y.tensor().allclose(&want, 1e-12, 1e-12, false)?);
    assert!(rm1.allclose(&rm2, 1e-12, 1e-12, false)?);
    assert!(rv1.allclose(&rv2, 1e-12, 1e-12, false)?);
    Ok(())
}

// ------------------------------------------------------------ errors

fn err_names(r: Result<Var>, op: &str) {
    match r {
        Ok(_) => panic!("{op}: expected an error"),
        Err(e) => assert!(e.to_string().contains(op), "error {e} does not name {op}"),
    }
}

#[test]
fn new_ops_report_bad_shapes_naming_the_op() {
    let x = || Var::from(r(1800, &[1, 2, 5, 5]));
    err_names(x().conv2d(&Var::from(r(1801, &[3, 3, 2, 2])), None, Conv2dOptions::default()), "conv2d");
    err_names(x().conv2d(&Var::from(r(1801, &[3, 2, 7, 2])), None, Conv2dOptions::default()), "conv2d");
    err_names(
        x().conv2d(&Var::from(r(1801, &[3, 2, 2, 2])), Some(&Var::from(r(1802, &[2]))), Conv2dOptions::default()),
        "conv2d",
    );
    err_names(
        Var::from(r(1803, &[1, 2, 5])).conv1d(&Var::from(r(1804, &[1, 3, 2])), None, Conv1dOptions::default()),
        "conv1d",
    );
    err_names(
        x().conv_transpose2d(&Var::from(r(1805, &[3, 1, 2, 2])), None, ConvTranspose2dOptions::default()),
        "conv_transpose2d",
    );
    err_names(
        x().conv_transpose2d(
            &Var::from(r(1805, &[2, 1, 2, 2])),
            None,
            ConvTranspose2dOptions { output_padding: [1, 0], ..Default::default() },
        ),
        "conv_transpose2d",
    );
    err_names(Var::cat(&[Var::from(r(1806, &[2, 3])), Var::from(r(1807, &[3, 2]))], 0), "cat");
    err_names(Var::stack(&[Var::from(r(1806, &[2, 3])), Var::from(r(1807, &[3, 2]))], 0), "stack");
    err_names(
        Var::from(r(1808, &[4, 3])).index_add(0, &ix(&[0], &[1]), &Var::from(r(1809, &[2, 3])), 1.0),
        "index_add",
    );
    err_names(Var::from(r(1810, &[4, 3])).gather(1, &ix(&[3], &[1, 1])), "gather");
    err_names(Var::from(r(1811, &[4])).embedding(&ix(&[0], &[1]), None), "embedding");
    err_names(
        Var::from(r(1812, &[4, 4])).max_pool2d([2, 2], MaxPool2dOptions { stride: Some([2, 2]), ..Default::default() }),
        "max_pool2d",
    );
    err_names(Var::from(r(1813, &[1, 8, 5])).fold2d([3, 3], [2, 2], [1, 1], [0, 0], [1, 1]), "fold2d");
    err_names(x().unfold2d([6, 1], [1, 1], [0, 0], [1, 1]), "unfold2d");
    err_names(x().pad(&[5, 0], PadMode::Reflect), "pad");
    err_names(x().batch_norm(None, None, Some(&Var::from(r(1814, &[3]))), None, true, 0.1, 1e-5), "batch_norm");
    err_names(x().batch_norm(None, None, None, None, false, 0.1, 1e-5), "batch_norm");
    err_names(Var::from(r(1815, &[2, 3])).prod(&[2], false), "prod");
    err_names(Var::from(r(1816, &[2, 3])).norm(f64::NAN, &[], false), "norm");
}

#[test]
fn integer_inputs_get_no_gradient() -> Result<()> {
    let xi = Tensor::new(&[1i64, 2, 3]);
    assert!(Var::param(xi.clone()).is_err());
    // Integer data flows through the ops without a graph.
    let y = Var::from(xi.clone()).gather(0, &ix(&[2, 0], &[2]))?;
    assert!(!y.requires_grad());
    assert_eq!(y.tensor().to_vec::<i64>()?, vec![3, 1]);
    let xf = Var::param(r(1820, &[1, 1, 3, 3]))?;
    let wi = Var::from(Tensor::ones([1, 1, 2, 2], tensor_core::DType::I64, &Default::default())?);
    assert!(xf.conv2d(&wi, None, Conv2dOptions::default()).is_err());
    let xi4 = Var::from(Tensor::ones([1, 1, 3, 3], tensor_core::DType::I64, &Default::default())?);
    assert!(xi4.conv2d(&wi, None, Conv2dOptions::default()).is_err());
    assert!(autograd::grad(&[y.to_dtype(tensor_core::DType::F64)?.sum_all()?], &[Var::from(xi)], None, false).is_err());
    Ok(())
}
