//! Property tests: layout algebra against a naive index model, broadcasting against
//! the NumPy rule, and "no op panics" on random shapes and arguments.

use std::panic::{catch_unwind, AssertUnwindSafe};

use op_table::views::{ref_expand, ref_permute, ref_reshape, ref_select, ref_slice};
use op_table::RefArray;
use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use tensor_core::shape::broadcast_shapes;
use tensor_core::{DType, Device, Tensor};

/// `0, 1, 2, ...` in `shape`, as f64: every element names its own storage position.
fn iota(shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::from_vec((0..n).map(|i| i as f64).collect::<Vec<f64>>(), shape.to_vec()).expect("numel matches")
}

fn iota_ref(shape: &[usize]) -> RefArray {
    let n: usize = shape.iter().product();
    RefArray::new(shape.to_vec(), (0..n).map(|i| i as f64).collect())
}

fn vals(t: &Tensor) -> Vec<f64> {
    t.to_vec_f64().expect("readable")
}

fn shape_st(max_rank: usize, lo: usize, hi: usize) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(lo..=hi, 0..=max_rank)
}

/// A fixed seed so CI runs the same cases every time; set `PROPTEST_RNG_SEED` to
/// explore others.
fn seed() -> RngSeed {
    RngSeed::Fixed(std::env::var("PROPTEST_RNG_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_2026))
}

fn cfg() -> ProptestConfig {
    ProptestConfig { cases: 64, rng_seed: seed(), ..ProptestConfig::default() }
}

/// A view step, its arguments reduced modulo the current shape so it is always valid.
#[derive(Clone, Debug)]
enum Step {
    Narrow(usize, usize, usize),
    Slice(usize, usize, usize),
    Permute(Vec<usize>),
    Select(usize, usize),
    Unsqueeze(usize),
    Expand(usize, usize),
    Reshape(usize),
    Transpose(usize, usize),
}

fn step_st() -> impl Strategy<Value = Step> {
    let u = 0usize..64;
    prop_oneof![
        (u.clone(), u.clone(), u.clone()).prop_map(|(a, b, c)| Step::Narrow(a, b, c)),
        (u.clone(), u.clone(), 1usize..4).prop_map(|(a, b, c)| Step::Slice(a, b, c)),
        prop::collection::vec(0usize..1000, 6).prop_map(Step::Permute),
        (u.clone(), u.clone()).prop_map(|(a, b)| Step::Select(a, b)),
        u.clone().prop_map(Step::Unsqueeze),
        (u.clone(), 1usize..4).prop_map(|(a, b)| Step::Expand(a, b)),
        u.clone().prop_map(Step::Reshape),
        (u.clone(), u).prop_map(|(a, b)| Step::Transpose(a, b)),
    ]
}

/// Applies `step` to the tensor and to the materialised model.
fn apply(t: &Tensor, m: &RefArray, step: &Step) -> Option<(Tensor, RefArray)> {
    let r = m.shape.len();
    let dims = &m.shape;
    Some(match *step {
        Step::Narrow(d, s, l) if r > 0 => {
            let d = d % r;
            let s = s % (dims[d] + 1);
            let l = l % (dims[d] - s + 1);
            (t.narrow(d as isize, s as isize, l).ok()?, ref_slice(m, d, s, l, 1))
        }
        Step::Slice(d, s, step) if r > 0 => {
            let d = d % r;
            let s = s % (dims[d] + 1);
            let len = (dims[d] - s).div_ceil(step);
            (t.slice(d as isize, Some(s as isize), None, step).ok()?, ref_slice(m, d, s, len, step))
        }
        Step::Permute(ref keys) => {
            let mut perm: Vec<usize> = (0..r).collect();
            perm.sort_by_key(|&i| keys[i % keys.len()] * 8 + i);
            let p: Vec<isize> = perm.iter().map(|&x| x as isize).collect();
            (t.permute(&p).ok()?, ref_permute(m, &perm))
        }
        Step::Select(d, i) if r > 0 && dims[d % r] > 0 => {
            let d = d % r;
            let i = i % dims[d];
            (t.select(d as isize, i as isize).ok()?, ref_select(m, d, i))
        }
        Step::Unsqueeze(d) if r < 6 => {
            let d = d % (r + 1);
            let mut s = dims.clone();
            s.insert(d, 1);
            (t.unsqueeze(d as isize).ok()?, ref_reshape(m, &s))
        }
        Step::Expand(d, n) if r > 0 && dims[d % r] == 1 => {
            let mut s = dims.clone();
            s[d % r] = n;
            let si: Vec<isize> = s.iter().map(|&x| x as isize).collect();
            (t.expand(&si).ok()?, ref_expand(m, &s))
        }
        Step::Reshape(k) => {
            // Merge two adjacent dims, or flatten everything.
            let mut s = dims.clone();
            if r >= 2 {
                let d = k % (r - 1);
                let merged = s[d] * s[d + 1];
                s.splice(d..d + 2, [merged]);
            } else {
                s = vec![m.numel()];
            }
            let si: Vec<isize> = s.iter().map(|&x| x as isize).collect();
            (t.reshape(&si).ok()?, ref_reshape(m, &s))
        }
        Step::Transpose(a, b) if r > 0 => {
            let (a, b) = (a % r, b % r);
            let mut perm: Vec<usize> = (0..r).collect();
            perm.swap(a, b);
            (t.transpose(a as isize, b as isize).ok()?, ref_permute(m, &perm))
        }
        _ => return None,
    })
}

/// A shape of the same numel as `n`, made of divisors picked by `picks`.
fn refactor(n: usize, picks: &[usize]) -> Vec<usize> {
    if n == 0 {
        return vec![picks.first().copied().unwrap_or(0) % 3, 0];
    }
    let mut rest = n;
    let mut out = Vec::new();
    for &p in picks {
        if rest == 1 {
            break;
        }
        let divs: Vec<usize> = (1..=rest).filter(|d| rest.is_multiple_of(*d)).collect();
        let d = divs[p % divs.len()];
        out.push(d);
        rest /= d;
    }
    out.push(rest);
    out
}

proptest! {
    #![proptest_config(cfg())]

    #[test]
    fn permute_then_inverse_is_identity(shape in shape_st(5, 0, 4), keys in prop::collection::vec(0usize..100, 5)) {
        let r = shape.len();
        let x = iota(&shape);
        let mut perm: Vec<usize> = (0..r).collect();
        perm.sort_by_key(|&i| keys[i] * 8 + i);
        let p: Vec<isize> = perm.iter().map(|&d| d as isize).collect();
        let mut inv = vec![0isize; r];
        for (i, &d) in perm.iter().enumerate() {
            inv[d] = i as isize;
        }
        let y = x.permute(&p).unwrap();
        prop_assert_eq!(vals(&y), ref_permute(&iota_ref(&shape), &perm).data);
        prop_assert!(y.same_storage(&x));
        let z = y.permute(&inv).unwrap();
        prop_assert_eq!(z.dims(), x.dims());
        prop_assert_eq!(z.strides(), x.strides());
        prop_assert_eq!(vals(&z), vals(&x));
    }

    #[test]
    fn view_chains_match_the_index_model(shape in shape_st(4, 0, 5), steps in prop::collection::vec(step_st(), 1..8)) {
        let mut t = iota(&shape);
        let mut m = iota_ref(&shape);
        for s in &steps {
            if let Some((t2, m2)) = apply(&t, &m, s) {
                prop_assert_eq!(t2.dims(), m2.shape.as_slice(), "after {:?}", s);
                prop_assert_eq!(vals(&t2), m2.data.clone(), "after {:?}", s);
                t = t2;
                m = m2;
            }
        }
        // Whatever the chain, a contiguous copy holds the same values.
        prop_assert_eq!(vals(&t.contiguous().unwrap()), m.data);
    }

    #[test]
    fn reshape_view_when_some_keeps_element_order(
        shape in shape_st(4, 0, 5),
        steps in prop::collection::vec(step_st(), 0..5),
        picks in prop::collection::vec(0usize..1000, 0..5),
    ) {
        let mut t = iota(&shape);
        let mut m = iota_ref(&shape);
        for s in &steps {
            if let Some((t2, m2)) = apply(&t, &m, s) {
                t = t2;
                m = m2;
            }
        }
        let new = refactor(t.numel(), &picks);
        let want = vals(&t.contiguous().unwrap().reshape_to(new.clone()).unwrap());
        prop_assert_eq!(&want, &m.data);
        match t.layout().reshape_view(&new) {
            Some(l) => {
                prop_assert_eq!(l.dims(), new.as_slice());
                let v = t.as_strided(l.dims(), l.strides(), l.offset()).unwrap();
                prop_assert_eq!(vals(&v), want.clone());
                let si: Vec<isize> = new.iter().map(|&d| d as isize).collect();
                let viewed = t.view(&si).unwrap();
                prop_assert!(viewed.same_storage(&t));
                prop_assert_eq!(vals(&viewed), want);
            }
            None => {
                prop_assert!(!t.is_contiguous(), "a contiguous layout must always be viewable");
                let si: Vec<isize> = new.iter().map(|&d| d as isize).collect();
                prop_assert!(t.view(&si).is_err());
            }
        }
    }

    #[test]
    fn broadcast_shapes_matches_the_numpy_rule(
        base in shape_st(4, 0, 4),
        drop_a in 0usize..5,
        drop_b in 0usize..5,
        ones_a in prop::collection::vec(any::<bool>(), 4),
        ones_b in prop::collection::vec(any::<bool>(), 4),
        bump in prop::option::of((0usize..4, 2usize..4)),
    ) {
        let derive = |drop: usize, ones: &[bool]| -> Vec<usize> {
            let s = &base[drop.min(base.len())..];
            s.iter().enumerate().map(|(i, &d)| if ones[i % ones.len()] { 1 } else { d }).collect()
        };
        let a = derive(drop_a, &ones_a);
        let mut b = derive(drop_b, &ones_b);
        if let Some((i, v)) = bump {
            if !b.is_empty() {
                let k = i % b.len();
                b[k] += v; // often makes the pair incompatible
            }
        }
        // The naive rule.
        let r = a.len().max(b.len());
        let mut naive = Some(Vec::new());
        for i in 0..r {
            let da = if i + a.len() >= r { a[i + a.len() - r] } else { 1 };
            let db = if i + b.len() >= r { b[i + b.len() - r] } else { 1 };
            let d = if da == db || db == 1 { Some(da) } else if da == 1 { Some(db) } else { None };
            naive = naive.and_then(|mut v: Vec<usize>| d.map(|d| { v.push(d); v }));
        }
        let got = broadcast_shapes("test", &a, &b);
        match (&naive, &got) {
            (Some(n), Ok(g)) => prop_assert_eq!(n.as_slice(), g.dims()),
            (None, Err(_)) => {}
            _ => prop_assert!(false, "{:?} x {:?}: naive {:?}, got {:?}", a, b, naive, got),
        }
        let (x, y) = (iota(&a), iota(&b).mul_scalar(0.5).unwrap());
        match x.add(&y) {
            Ok(s) => {
                let n = naive.expect("add succeeded on incompatible shapes");
                let want = iota_ref(&a).zip(&iota_ref(&b), |p, q| p + 0.5 * q);
                prop_assert_eq!(s.dims(), n.as_slice());
                prop_assert_eq!(vals(&s), want.data);
            }
            Err(_) => prop_assert!(naive.is_none()),
        }
    }
}

// ---------------------------------------------------------------- no panics

#[derive(Clone, Debug)]
struct Call {
    shape: Vec<usize>,
    other: Vec<usize>,
    dtype: usize,
    op: usize,
    a: isize,
    b: isize,
    c: isize,
    list: Vec<isize>,
}

fn arg_st() -> impl Strategy<Value = isize> {
    prop_oneof![8 => -6isize..6, 1 => Just(isize::MAX), 1 => Just(isize::MIN), 1 => Just(-1isize)]
}

fn call_st() -> impl Strategy<Value = Call> {
    (
        shape_st(4, 0, 4),
        shape_st(4, 0, 4),
        0usize..8,
        0usize..64,
        arg_st(),
        arg_st(),
        arg_st(),
        prop::collection::vec(arg_st(), 0..5),
    )
        .prop_map(|(shape, other, dtype, op, a, b, c, list)| Call { shape, other, dtype, op, a, b, c, list })
}

const DTYPES: [DType; 8] =
    [DType::F32, DType::F64, DType::F16, DType::BF16, DType::I64, DType::I32, DType::U8, DType::Bool];

/// Runs one op; errors are fine, the point is that it returns.
fn run_call(c: &Call) -> Result<(), tensor_core::Error> {
    let dt = DTYPES[c.dtype];
    let x = iota(&c.shape).to_dtype(dt)?;
    let y = iota(&c.other).to_dtype(DTYPES[(c.dtype + c.op) % 8])?;
    let dims: Vec<isize> = c.list.clone();
    let sizes: Vec<usize> = c.list.iter().map(|&v| v.unsigned_abs() % 5).collect();
    let (a, b, cc) = (c.a, c.b, c.c);
    let ua = a.unsigned_abs();
    let keep = a % 2 == 0;
    let r = match c.op {
        0 => x.reshape(&dims),
        1 => x.view(&dims),
        2 => x.permute(&dims),
        3 => x.transpose(a, b),
        4 => x.narrow(a, b, cc.unsigned_abs()),
        5 => x.slice(a, Some(b), Some(cc), c.list.len()),
        6 => x.select(a, b),
        7 => x.squeeze(a),
        8 => x.unsqueeze(a),
        9 => x.expand(&dims),
        10 => x.flatten(a, b),
        11 => x.unflatten(a, &dims),
        12 => x.as_strided(&sizes, &c.list.iter().map(|&v| v.unsigned_abs()).collect::<Vec<_>>(), ua),
        13 => x.sum(&dims, keep),
        14 => x.mean(&dims, keep),
        15 => x.amax(&dims, keep),
        16 => x.amin(&dims, keep),
        17 => x.argmax(a, keep),
        18 => x.argmin(a, keep),
        19 => x.cumsum(a),
        20 => x.cumprod(a),
        21 => x.max_dim(a, keep).map(|p| p.0),
        22 => x.matmul(&y),
        23 => x.mm(&y),
        24 => x.bmm(&y),
        25 => x.mv(&y),
        26 => x.dot(&y),
        27 => x.outer(&y),
        28 => x.add(&y),
        29 => x.div(&y),
        30 => x.pow(&y),
        31 => x.remainder(&y),
        32 => x.lt(&y),
        33 => x.logical_xor(&y),
        34 => x.maximum(&y),
        35 => Tensor::where_cond(&y, &x, &y),
        36 => x.masked_fill(&y, a as i64),
        37 => x.clamp(Some(a as f64), if b > 0 { Some(b as f64) } else { None }),
        38 => x.exp(),
        39 => x.neg(),
        40 => x.relu(),
        41 => x.round(),
        42 => x.gelu(),
        43 => x.isfinite(),
        44 => x.to_dtype(DTYPES[ua % 8]),
        45 => x.add_scalar(a as i64),
        46 => x.pow_scalar(a as f64),
        47 => x.rdiv_scalar(a as i64),
        48 => x.remainder_scalar(a as i64),
        49 => x.add_(&y).map(|_| x.clone()),
        50 => x.div_(&y).map(|_| x.clone()),
        51 => x.copy_(&y).map(|_| x.clone()),
        52 => x.expand(&dims).and_then(|e| e.fill_(1i64).map(|_| e)),
        53 => x.slice_assign(a, b, &y).map(|_| x.clone()),
        54 => x.mul_scalar_(a as f64 / 2.0).map(|_| x.clone()),
        55 => x.clamp_(Some(a as f64), None).map(|_| x.clone()),
        56 => x.leaky_relu(a as f64),
        57 => x.softplus(a as f64, b as f64),
        58 => Tensor::arange(a as f64, b as f64, cc as f64 / 2.0, dt, &Device::cpu()),
        59 => Tensor::linspace(a as f64, b as f64, sizes.iter().sum(), dt, &Device::cpu()),
        60 => Tensor::eye(ua % 5, b.unsigned_abs() % 5, dt, &Device::cpu()),
        61 => Tensor::randint(a as i64, b as i64, sizes, dt, &Device::cpu()),
        62 => x.bernoulli(),
        _ => Tensor::full(sizes, a as i64, dt, &Device::cpu()),
    }?;
    if r.numel() <= 1 << 16 {
        r.to_vec_f64()?;
    }
    let _ = format!("{r}");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, rng_seed: seed(), ..ProptestConfig::default() })]

    #[test]
    fn no_op_panics_on_random_shapes_and_arguments(c in call_st()) {
        let out = catch_unwind(AssertUnwindSafe(|| run_call(&c)));
        prop_assert!(out.is_ok(), "panicked on {:?}", c);
    }
}
