//! Datasets, splits and the DataLoader: order, determinism across worker counts,
//! epochs, drop_last, collate, error propagation and early drop.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use data::{random_split, Collate, DataLoader, Dataset, SplitLengths, Subset, TensorDataset};
use tensor_core::{DType, Device, Error, Result, Tensor};

fn rows(n: usize) -> TensorDataset {
    let x = Tensor::arange(0.0, (2 * n) as f64, 1.0, DType::F32, &Device::cpu())
        .unwrap()
        .reshape(&[n as isize, 2])
        .unwrap();
    let y = Tensor::arange(0.0, n as f64, 1.0, DType::I64, &Device::cpu()).unwrap();
    TensorDataset::new(vec![x, y]).unwrap()
}

/// The example ids of each batch (from the label column).
fn ids<D>(loader: &DataLoader<D, Vec<Tensor>>, epoch: u64) -> Vec<Vec<i64>>
where
    D: Dataset<Item = Vec<Tensor>> + Send + Sync + 'static,
{
    loader.iter_epoch(epoch).map(|b| b.unwrap()[1].to_vec::<i64>().unwrap()).collect()
}

#[test]
fn tensor_dataset_items_and_errors() {
    let ds = rows(4);
    assert_eq!(ds.len(), 4);
    let it = ds.get(2).unwrap();
    assert_eq!(it[0].to_vec::<f32>().unwrap(), vec![4.0, 5.0]);
    assert_eq!(it[1].to_scalar::<i64>().unwrap(), 2);
    assert!(matches!(ds.get(4), Err(Error::IndexOutOfRange { index: 4, size: 4, .. })));
    let a = Tensor::zeros([3, 2], DType::F32, &Device::cpu()).unwrap();
    let b = Tensor::zeros([4], DType::F32, &Device::cpu()).unwrap();
    assert!(TensorDataset::new(vec![a.clone(), b]).is_err());
    assert!(TensorDataset::new(vec![]).is_err());
    assert!(TensorDataset::new(vec![Tensor::new(&[1.0f32]).reshape(&[]).unwrap()]).is_err());
}

#[test]
fn subset_and_random_split() {
    let ds = Arc::new(rows(10));
    let sub = Subset::new(ds.clone(), vec![9, 0, 9]).unwrap();
    assert_eq!(sub.get(0).unwrap()[1].to_scalar::<i64>().unwrap(), 9);
    assert!(sub.get(3).is_err());
    assert!(Subset::new(ds.clone(), vec![10]).is_err());

    let parts = random_split(ds.clone(), [6, 3, 1], 5).unwrap();
    let mut all: Vec<usize> = parts.iter().flat_map(|p| p.indices().to_vec()).collect();
    assert_eq!(parts.iter().map(|p| p.len()).collect::<Vec<_>>(), vec![6, 3, 1]);
    all.sort();
    assert_eq!(all, (0..10).collect::<Vec<_>>(), "the parts partition the dataset");
    let again = random_split(ds.clone(), vec![6, 3, 1], 5).unwrap();
    assert_eq!(parts[0].indices(), again[0].indices(), "same seed, same split");
    let other = random_split(ds.clone(), [6, 3, 1], 6).unwrap();
    assert_ne!(parts[0].indices(), other[0].indices());
    assert!(random_split(ds.clone(), [6, 3], 0).is_err());
    assert!(random_split(ds.clone(), [0.5, 0.6], 0).is_err());
    assert!(random_split(ds.clone(), [1.5, -0.5], 0).is_err());
}

#[test]
fn fraction_remainders_go_to_the_first_parts() {
    // PyTorch: floor(0.33 * 10) = 3 each, the one left over goes to part 0.
    assert_eq!(SplitLengths::from([0.34, 0.33, 0.33]).counts(10).unwrap(), vec![4, 3, 3]);
    assert_eq!(SplitLengths::from([0.5, 0.5]).counts(7).unwrap(), vec![4, 3]);
    assert_eq!(SplitLengths::from(vec![1.0, 0.0]).counts(3).unwrap(), vec![3, 0]);
    // Fractions a hair over 1 must not overshoot the dataset.
    let c = SplitLengths::from([0.5000004, 0.5000004]).counts(1_000_000).unwrap();
    assert_eq!(c.iter().sum::<usize>(), 1_000_000);
}

#[test]
fn sequential_batches_in_order() {
    let loader = DataLoader::new(rows(7), 3).unwrap();
    assert_eq!(loader.len(), 3);
    let b: Vec<Vec<Tensor>> = loader.iter().map(|b| b.unwrap()).collect();
    assert_eq!(b[0][0].dims(), &[3, 2]);
    assert_eq!(b[0][0].to_vec2::<f32>().unwrap(), vec![vec![0.0, 1.0], vec![2.0, 3.0], vec![4.0, 5.0]]);
    assert_eq!(ids(&loader, 0), vec![vec![0, 1, 2], vec![3, 4, 5], vec![6]]);
    let dropped = DataLoader::new(rows(7), 3).unwrap().drop_last(true);
    assert_eq!(dropped.len(), 2);
    assert_eq!(ids(&dropped, 0), vec![vec![0, 1, 2], vec![3, 4, 5]]);
    assert!(DataLoader::new(rows(7), 0).is_err());
    let tiny = DataLoader::new(rows(2), 3).unwrap().drop_last(true);
    assert!(tiny.is_empty() && tiny.iter().next().is_none());
}

#[test]
fn shuffle_is_a_seeded_per_epoch_permutation_whatever_the_workers() {
    let make = |workers| DataLoader::new(rows(23), 4).unwrap().shuffle(99).num_workers(workers);
    let reference: Vec<Vec<Vec<i64>>> = (0..3).map(|e| ids(&make(0), e)).collect();
    for workers in [1, 3, 8, 40] {
        let l = make(workers).prefetch_factor(1);
        for (e, want) in reference.iter().enumerate() {
            assert_eq!(&ids(&l, e as u64), want, "{workers} workers, epoch {e}");
        }
    }
    for epoch in &reference {
        let mut seen: Vec<i64> = epoch.iter().flatten().copied().collect();
        seen.sort();
        assert_eq!(seen, (0..23).collect::<Vec<_>>(), "each epoch visits every example once");
        assert_eq!(epoch.iter().map(Vec::len).collect::<Vec<_>>(), vec![4, 4, 4, 4, 4, 3]);
    }
    assert_ne!(reference[0], reference[1], "epochs reshuffle");
    assert_ne!(reference[0][0..2], [vec![0, 1, 2, 3], vec![4, 5, 6, 7]], "the order is shuffled");
    // `for batch in &loader` walks epochs 0, 1, ... in turn.
    let l = make(2);
    let first: Vec<Vec<i64>> = (&l).into_iter().map(|b| b.unwrap()[1].to_vec::<i64>().unwrap()).collect();
    let second: Vec<Vec<i64>> = (&l).into_iter().map(|b| b.unwrap()[1].to_vec::<i64>().unwrap()).collect();
    assert_eq!((first, second), (reference[0].clone(), reference[1].clone()));
    l.set_epoch(2);
    assert_eq!(l.iter().map(|b| b.unwrap()[1].to_vec::<i64>().unwrap()).collect::<Vec<_>>(), reference[2]);
    let other_seed = DataLoader::new(rows(23), 4).unwrap().shuffle(100);
    assert_ne!(ids(&other_seed, 0), reference[0]);
}

/// Numbers 0..n; fails on `bad`; counts calls.
struct Flaky {
    n: usize,
    bad: usize,
    calls: Arc<AtomicUsize>,
}

impl Dataset for Flaky {
    type Item = (Tensor, i64);
    fn len(&self) -> usize {
        self.n
    }
    fn get(&self, i: usize) -> Result<(Tensor, i64)> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if i == self.bad {
            return Err(Error::arg("Flaky", format!("example {i} is broken")));
        }
        Ok((Tensor::new(&[i as f64, -(i as f64)]), i as i64 * 10))
    }
}

#[test]
fn errors_come_out_as_err_batches_and_iteration_goes_on() {
    for workers in [0, 1, 3] {
        let ds = Flaky { n: 10, bad: 4, calls: Arc::new(AtomicUsize::new(0)) };
        let loader = DataLoader::new(ds, 3).unwrap().num_workers(workers);
        let out: Vec<Result<(Tensor, Tensor)>> = loader.iter().collect();
        assert_eq!(out.len(), 4);
        match &out[1] {
            Err(Error::InvalidArgument { msg, .. }) => assert!(msg.contains("example 4"), "{msg}"),
            other => panic!("batch 1 should fail, got {:?}", other.as_ref().map(|_| ())),
        }
        let (x, y) = out[3].as_ref().unwrap();
        assert_eq!(x.to_vec2::<f64>().unwrap(), vec![vec![9.0, -9.0]]);
        assert_eq!(y.to_vec::<i64>().unwrap(), vec![90]);
        assert!(out[0].is_ok() && out[2].is_ok());
    }
}

#[test]
fn dropping_early_stops_and_joins_workers() {
    let calls = Arc::new(AtomicUsize::new(0));
    let ds = Flaky { n: 10_000, bad: usize::MAX, calls: calls.clone() };
    let loader = DataLoader::new(ds, 10).unwrap().num_workers(3).prefetch_factor(2);
    let mut it = loader.iter();
    let first = it.next().unwrap().unwrap();
    assert_eq!(first.1.to_vec::<i64>().unwrap(), (0..10).map(|i| i * 10).collect::<Vec<_>>());
    drop(it); // joins the workers: after this, no more calls can happen
    let after_drop = calls.load(Ordering::SeqCst);
    // Each worker made at most its queue (2) plus one in flight plus the one taken.
    assert!(after_drop <= 10 * (3 * 3 + 1), "workers ran ahead: {after_drop} gets");
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert_eq!(calls.load(Ordering::SeqCst), after_drop, "no worker is still running");
}

#[test]
fn custom_collate_and_scalar_items() {
    struct Ints(usize);
    impl Dataset for Ints {
        type Item = i64;
        fn len(&self) -> usize {
            self.0
        }
        fn get(&self, i: usize) -> Result<i64> {
            Ok(i as i64)
        }
    }
    let default = DataLoader::new(Ints(5), 2).unwrap();
    let b: Vec<Tensor> = default.iter().map(|b| b.unwrap()).collect();
    assert_eq!(b[2].to_vec::<i64>().unwrap(), vec![4]);
    let sums = DataLoader::new(Ints(5), 2).unwrap().num_workers(2).collate_fn(|v: Vec<i64>| Ok(v.iter().sum::<i64>()));
    assert_eq!(sums.iter().map(|b| b.unwrap()).collect::<Vec<_>>(), vec![1, 5, 4]);
    let custom = DataLoader::with_collate(Ints(3), 3, |v: Vec<i64>| Ok(v.len())).unwrap();
    assert_eq!(custom.iter().next().unwrap().unwrap(), 3);
    // Collating examples of different shapes is an error, not a panic.
    let mixed = vec![Tensor::new(&[1.0f32]), Tensor::new(&[1.0f32, 2.0])];
    assert!(Tensor::collate(mixed).is_err());
    let ragged = vec![vec![Tensor::new(&[1.0f32])], vec![]];
    assert!(<Vec<Tensor>>::collate(ragged).is_err());
}

#[test]
fn workers_run_on_other_threads() {
    struct WhoAmI;
    impl Dataset for WhoAmI {
        type Item = String;
        fn len(&self) -> usize {
            6
        }
        fn get(&self, _: usize) -> Result<String> {
            Ok(std::thread::current().name().unwrap_or("?").to_string())
        }
    }
    let l = DataLoader::with_collate(WhoAmI, 1, |v: Vec<String>| Ok(v[0].clone())).unwrap().num_workers(3);
    let names: HashSet<String> = l.iter().map(|b| b.unwrap()).collect();
    let want: HashSet<String> = (0..3).map(|w| format!("data-loader-{w}")).collect();
    assert_eq!(names, want);
}

/// A dataset of `n` examples that makes each one on demand (a tiny tensor holding its
/// index), so `n` can be far more than memory could list.
struct Endless(usize);

impl Dataset for Endless {
    type Item = Tensor;
    fn len(&self) -> usize {
        self.0
    }
    fn get(&self, i: usize) -> Result<Tensor> {
        if i >= self.0 {
            return Err(Error::IndexOutOfRange { op: "Endless", index: i as i64, dim: 0, size: self.0 });
        }
        Ok(Tensor::new(&[i as i64]))
    }
}

fn op_of(r: Result<Vec<usize>>) -> String {
    match r {
        Err(Error::InvalidArgument { op, msg }) => format!("{op}: {msg}"),
        other => panic!("expected an argument error, got {other:?}"),
    }
}

#[test]
fn random_split_sizes_that_overflow_or_are_not_numbers_are_errors() {
    // Counts that sum past usize::MAX.
    let m = op_of(SplitLengths::from([usize::MAX, 2]).counts(1));
    assert!(m.starts_with("random_split: ") && m.contains("overflows"), "{m}");
    let m = op_of(SplitLengths::from(vec![usize::MAX; 3]).counts(usize::MAX));
    assert!(m.starts_with("random_split: "), "{m}");
    // Fractions that are NaN, negative, above 1 or infinite.
    for f in [vec![f64::NAN, 1.0], vec![f64::NAN], vec![-0.5, 1.5], vec![1.5], vec![f64::INFINITY], vec![]] {
        let m = op_of(SplitLengths::from(f.clone()).counts(10));
        assert!(m.starts_with("random_split: "), "{f:?}: {m}");
    }
    let ds = Arc::new(rows(4));
    assert!(matches!(
        random_split(ds.clone(), [f64::NAN, 1.0], 0),
        Err(Error::InvalidArgument { op: "random_split", .. })
    ));
    assert!(matches!(random_split(ds, [usize::MAX, 5], 0), Err(Error::InvalidArgument { op: "random_split", .. })));
}

#[test]
fn random_split_fractions_of_huge_lengths() {
    // Fractions a hair under 1 leave a remainder of about n * 1e-6 parts to deal:
    // dealt arithmetically, not one by one.
    let n = usize::MAX;
    let c = SplitLengths::from([0.4999995, 0.5]).counts(n).unwrap();
    assert_eq!(c.iter().map(|&x| x as u128).sum::<u128>(), n as u128);
    for (part, f) in c.iter().zip([0.4999995, 0.5]) {
        assert!((*part as f64 / n as f64 - f).abs() < 1e-6, "{c:?}");
    }
    let c = SplitLengths::from([1.0, 0.0000005]).counts(n).unwrap();
    assert_eq!(c.iter().map(|&x| x as u128).sum::<u128>(), n as u128);
    // Matches dealing one by one (PyTorch) where that is cheap: a remainder of 3.
    assert_eq!(SplitLengths::from([0.25, 0.25, 0.25, 0.2499995]).counts(11).unwrap(), vec![3, 3, 3, 2]);
    // A dataset too long to list its indices: an error, not an abort.
    let m = match random_split(Arc::new(Endless(usize::MAX)), [usize::MAX], 0) {
        Err(Error::InvalidArgument { op, msg }) => format!("{op}: {msg}"),
        Err(e) => panic!("expected an argument error, got {e}"),
        Ok(_) => panic!("expected an error"),
    };
    assert!(m.starts_with("random_split: ") && m.contains("cannot be allocated"), "{m}");
}

#[test]
fn a_loader_over_2_pow_40_examples_starts_at_once() {
    const N: usize = 1 << 40;
    let t0 = std::time::Instant::now();
    for workers in [0, 2] {
        // In order: the first batches are 0, 1, 2, ...
        let seq = DataLoader::new(Endless(N), 4).unwrap().num_workers(workers);
        assert_eq!(seq.len(), N / 4);
        let first: Vec<Vec<i64>> = seq.iter().take(3).map(|b| b.unwrap().to_vec::<i64>().unwrap()).collect();
        assert_eq!(first, vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![8, 9, 10, 11]]);

        // Shuffled: indices in range, distinct, the same for the same seed and epoch
        // whatever the workers, different for another epoch.
        let shuffled = DataLoader::new(Endless(N), 64).unwrap().shuffle(11).num_workers(workers);
        let draw = |epoch| -> Vec<i64> {
            shuffled.iter_epoch(epoch).take(16).flat_map(|b| b.unwrap().to_vec::<i64>().unwrap()).collect()
        };
        let e0 = draw(0);
        assert_eq!(e0.len(), 16 * 64);
        assert!(e0.iter().all(|&i| (0..N as i64).contains(&i)));
        let distinct: HashSet<i64> = e0.iter().copied().collect();
        assert_eq!(distinct.len(), e0.len(), "an index came twice");
        // Spread over the whole range, not bunched at the start: about half above N/2.
        let high = e0.iter().filter(|&&i| i >= (N / 2) as i64).count();
        assert!((400..624).contains(&high), "{high} of 1024 in the upper half");
        assert_eq!(draw(0), e0, "seed-stable");
        assert_ne!(draw(1), e0, "epochs reshuffle");
        // The order the loader reports is the one it iterates.
        let order = shuffled.order(0);
        assert_eq!(order.len(), N);
        assert_eq!(order.batch(1, 64).iter().map(|&i| i as i64).collect::<Vec<_>>(), e0[64..128]);
    }
    assert!(t0.elapsed() < std::time::Duration::from_secs(20), "took {:?}", t0.elapsed());
}

#[test]
fn small_shuffles_keep_their_fisher_yates_order() {
    // Up to Order::MATERIALISE_MAX examples, an epoch is the generator's permutation,
    // cut into batches (the order existing runs were trained with).
    let loader = DataLoader::new(rows(23), 4).unwrap().shuffle(99);
    let key = 99 ^ 1u64.wrapping_mul(0x9E37_79B9_7F4A_7C15); // epoch 0
    let perm = tensor_core::Generator::new(key).permutation(23);
    let want: Vec<Vec<i64>> = perm.chunks(4).map(|c| c.iter().map(|&i| i as i64).collect()).collect();
    assert_eq!(ids(&loader, 0), want);
    assert_eq!(loader.batch_indices(0), perm.chunks(4).map(<[usize]>::to_vec).collect::<Vec<_>>());
}
