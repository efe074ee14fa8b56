//! [`DataLoader`]: minibatches of a [`Dataset`], optionally shuffled, collated into
//! tensors, and prepared ahead of time by background worker threads.
//!
//! Determinism: the batches depend only on the dataset, the batch size, the shuffle
//! seed and the epoch, never on the number of workers or on timing. Worker `w`
//! prepares batches `w, w + W, w + 2W, ...` into its own bounded queue and the
//! iterator takes them round-robin, so batches come out in order.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use tensor_core::{Error, Generator, Result, Tensor};

use crate::Dataset;

/// Turns a list of examples into one batch (PyTorch's `default_collate`).
///
/// Tensors are stacked along a new dim 0; a `Vec` of tensors or a tuple is collated
/// position by position; numbers become a 1-D tensor.
///
/// ```
/// use data::Collate;
/// use tensor_core::Tensor;
///
/// let items = vec![
///     (Tensor::from_vec(vec![1.0f32, 2.0], [2])?, 0i64),
///     (Tensor::from_vec(vec![3.0f32, 4.0], [2])?, 1i64),
/// ];
/// let (x, y) = Collate::collate(items)?;
/// assert_eq!(x.dims(), &[2, 2]);
/// assert_eq!(y.to_vec::<i64>()?, vec![0, 1]);
/// # Ok::<(), tensor_core::Error>(())
/// ```
pub trait Collate: Sized {
    /// The batched form.
    type Batch;
    /// Collates a non-empty list of examples.
    fn collate(items: Vec<Self>) -> Result<Self::Batch>;
}

impl Collate for Tensor {
    type Batch = Tensor;
    fn collate(items: Vec<Tensor>) -> Result<Tensor> {
        Tensor::stack(&items, 0)
    }
}

impl Collate for Vec<Tensor> {
    type Batch = Vec<Tensor>;
    fn collate(items: Vec<Vec<Tensor>>) -> Result<Vec<Tensor>> {
        let width = items.first().map_or(0, Vec::len);
        if let Some((i, it)) = items.iter().enumerate().find(|(_, it)| it.len() != width) {
            return Err(Error::arg(
                "collate",
                format!("example {i} has {} tensors but example 0 has {width}", it.len()),
            ));
        }
        let mut columns: Vec<Vec<Tensor>> = (0..width).map(|_| Vec::with_capacity(items.len())).collect();
        for item in items {
            for (col, t) in columns.iter_mut().zip(item) {
                col.push(t);
            }
        }
        columns.iter().map(|c| Tensor::stack(c, 0)).collect()
    }
}

macro_rules! collate_tuple {
    ($($T:ident $v:ident $x:ident),+) => {
        impl<$($T: Collate),+> Collate for ($($T,)+) {
            type Batch = ($($T::Batch,)+);
            fn collate(items: Vec<Self>) -> Result<Self::Batch> {
                $(let mut $v = Vec::with_capacity(items.len());)+
                for ($($x,)+) in items {
                    $($v.push($x);)+
                }
                Ok(($($T::collate($v)?,)+))
            }
        }
    };
}
collate_tuple!(A a xa);
collate_tuple!(A a xa, B b xb);
collate_tuple!(A a xa, B b xb, C c xc);
collate_tuple!(A a xa, B b xb, C c xc, D d xd);

macro_rules! collate_scalar {
    ($($t:ty),+) => {$(
        impl Collate for $t {
            type Batch = Tensor;
            fn collate(items: Vec<$t>) -> Result<Tensor> {
                let n = items.len();
                Tensor::from_vec(items, [n])
            }
        }
    )+};
}
collate_scalar!(bool, u8, i32, i64, f32, f64, half::f16, half::bf16);

/// The collate function of a loader.
type CollateFn<I, B> = Arc<dyn Fn(Vec<I>) -> Result<B> + Send + Sync>;

/// Minibatches of a dataset (PyTorch's `DataLoader`).
///
/// Configure with the builder methods, then iterate: `for batch in &loader` runs one
/// epoch and the next `for` runs the next epoch (reshuffled), or pick the epoch with
/// [`iter_epoch`](Self::iter_epoch). Each item is `Result<batch>`: an error from
/// [`Dataset::get`] or from the collate function comes out as an `Err` batch and
/// iteration goes on with the next one.
///
/// With `num_workers(n)`, `n > 0`, background threads fetch and collate batches
/// ahead of the consumer, each keeping at most `prefetch_factor` finished batches
/// queued. Dropping the iterator early stops and joins the workers.
///
/// ```
/// use data::{DataLoader, TensorDataset};
/// use tensor_core::{DType, Device, Tensor};
///
/// let x = Tensor::arange(0.0, 10.0, 1.0, DType::F32, &Device::cpu())?.reshape(&[5, 2])?;
/// let y = Tensor::from_vec(vec![0i64, 1, 0, 1, 1], [5])?;
/// let loader = DataLoader::new(TensorDataset::new(vec![x, y])?, 2)?
///     .shuffle(7)
///     .drop_last(true)
///     .num_workers(2);
/// assert_eq!(loader.len(), 2);
/// let mut rows = 0;
/// for batch in &loader {
///     let batch = batch?;                       // [xb, yb]
///     assert_eq!(batch[0].dims(), &[2, 2]);
///     rows += batch[1].numel();
/// }
/// assert_eq!(rows, 4);
/// # Ok::<(), tensor_core::Error>(())
/// ```
pub struct DataLoader<D: Dataset, B> {
    dataset: Arc<D>,
    batch_size: usize,
    shuffle: Option<u64>,
    drop_last: bool,
    num_workers: usize,
    prefetch_factor: usize,
    collate: CollateFn<D::Item, B>,
    next_epoch: AtomicU64,
}

impl<D> DataLoader<D, <D::Item as Collate>::Batch>
where
    D: Dataset,
    D::Item: Collate + 'static,
{
    /// Batches of `batch_size` examples collated with [`Collate`], in order, on the
    /// calling thread. `batch_size` must be positive.
    pub fn new(dataset: D, batch_size: usize) -> Result<Self> {
        Self::with_collate(dataset, batch_size, <D::Item as Collate>::collate)
    }
}

impl<D: Dataset, B> DataLoader<D, B>
where
    D::Item: 'static,
{
    /// Like [`new`](Self::new) with a custom collate function.
    pub fn with_collate(
        dataset: D,
        batch_size: usize,
        collate: impl Fn(Vec<D::Item>) -> Result<B> + Send + Sync + 'static,
    ) -> Result<Self> {
        if batch_size == 0 {
            return Err(Error::arg("DataLoader", "batch_size should be a positive integer, got 0"));
        }
        Ok(DataLoader {
            dataset: Arc::new(dataset),
            batch_size,
            shuffle: None,
            drop_last: false,
            num_workers: 0,
            prefetch_factor: 2,
            collate: Arc::new(collate),
            next_epoch: AtomicU64::new(0),
        })
    }

    /// Replaces the collate function.
    pub fn collate_fn<B2>(
        self,
        collate: impl Fn(Vec<D::Item>) -> Result<B2> + Send + Sync + 'static,
    ) -> DataLoader<D, B2> {
        DataLoader {
            dataset: self.dataset,
            batch_size: self.batch_size,
            shuffle: self.shuffle,
            drop_last: self.drop_last,
            num_workers: self.num_workers,
            prefetch_factor: self.prefetch_factor,
            collate: Arc::new(collate),
            next_epoch: self.next_epoch,
        }
    }

    /// Reshuffles every epoch: the order of epoch `e` is a permutation drawn from
    /// `seed` and `e`, so the same seed and epoch always give the same batches.
    pub fn shuffle(mut self, seed: u64) -> Self {
        self.shuffle = Some(seed);
        self
    }

    /// Drops the last batch when it would be smaller than `batch_size`.
    pub fn drop_last(mut self, drop_last: bool) -> Self {
        self.drop_last = drop_last;
        self
    }

    /// Prepares batches on `n` background threads (0: on the calling thread).
    pub fn num_workers(mut self, n: usize) -> Self {
        self.num_workers = n;
        self
    }

    /// How many finished batches each worker may keep queued (at least 1; default 2).
    pub fn prefetch_factor(mut self, n: usize) -> Self {
        self.prefetch_factor = n.max(1);
        self
    }

    /// Sets the epoch that the next [`iter`](Self::iter) will run.
    pub fn set_epoch(&self, epoch: u64) {
        self.next_epoch.store(epoch, Ordering::Relaxed);
    }

    /// The dataset.
    pub fn dataset(&self) -> &Arc<D> {
        &self.dataset
    }

    /// The batch size.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// The number of batches in one epoch.
    pub fn len(&self) -> usize {
        let n = self.dataset.len();
        if self.drop_last {
            n / self.batch_size
        } else {
            n.div_ceil(self.batch_size)
        }
    }

    /// True when an epoch has no batch.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The dataset indices of each batch of `epoch`.
    ///
    /// This lists every index of the epoch at once (8 bytes each); iterating the
    /// loader does not, it computes each batch's indices when the batch is prepared
    /// (see [`order`](Self::order)).
    pub fn batch_indices(&self, epoch: u64) -> Vec<Vec<usize>> {
        let order = self.order(epoch);
        (0..self.len()).map(|b| order.batch(b, self.batch_size)).collect()
    }

    /// The order in which epoch `epoch` visits the examples.
    ///
    /// Without shuffling it is `0, 1, 2, ...`. With [`shuffle`](Self::shuffle), a
    /// dataset of up to [`Order::MATERIALISE_MAX`] examples is visited in the order
    /// of a Fisher-Yates permutation drawn from the seed and the epoch (held as one
    /// vector of indices); a larger one in the order of a keyed Feistel permutation of
    /// `0..len` from the same seed and epoch, computed index by index, so no memory
    /// grows with the dataset's length.
    pub fn order(&self, epoch: u64) -> Order {
        let n = self.dataset.len();
        match self.shuffle {
            None => Order(Kind::Sequential { len: n }),
            Some(seed) => {
                // Mixing the epoch in with an odd constant keeps nearby (seed, epoch) pairs apart.
                let key = seed ^ (epoch.wrapping_add(1)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                if n <= Order::MATERIALISE_MAX {
                    Order(Kind::Shuffled(Arc::new(Generator::new(key).permutation(n))))
                } else {
                    Order(Kind::Keyed(Feistel::new(key, n)))
                }
            }
        }
    }
}

/// The order of the examples in one epoch of a [`DataLoader`] (see
/// [`DataLoader::order`]): a bijection from positions `0..len` to dataset indices.
///
/// ```
/// use data::{DataLoader, Dataset};
/// use tensor_core::Result;
///
/// /// A dataset far too long to list its indices.
/// struct Huge;
/// impl Dataset for Huge {
///     type Item = u8;
///     fn len(&self) -> usize { 1 << 50 }
///     fn get(&self, i: usize) -> Result<u8> { Ok(i as u8) }
/// }
/// let order = DataLoader::new(Huge, 4)?.shuffle(3).order(0);
/// let first = order.batch(0, 4);
/// assert!(first.iter().all(|&i| i < 1 << 50));
/// assert_eq!(order.len(), 1 << 50);
/// # Ok::<(), tensor_core::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Order(Kind);

#[derive(Clone, Debug)]
enum Kind {
    /// `0, 1, ..., len - 1`.
    Sequential { len: usize },
    /// A permutation held in memory.
    Shuffled(Arc<Vec<usize>>),
    /// A keyed permutation computed per position.
    Keyed(Feistel),
}

impl Order {
    /// Shuffled datasets up to this length hold their permutation in memory (at most
    /// 128 MiB); longer ones use a keyed Feistel permutation.
    pub const MATERIALISE_MAX: usize = 1 << 24;

    /// The number of positions.
    pub fn len(&self) -> usize {
        match &self.0 {
            Kind::Sequential { len } => *len,
            Kind::Shuffled(p) => p.len(),
            Kind::Keyed(f) => f.len,
        }
    }

    /// True when there is no position.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The dataset index at position `k` (in `0..len()`), or `None` past the end.
    pub fn get(&self, k: usize) -> Option<usize> {
        match &self.0 {
            Kind::Sequential { len } => (k < *len).then_some(k),
            Kind::Shuffled(p) => p.get(k).copied(),
            Kind::Keyed(f) => f.get(k),
        }
    }

    /// The dataset indices of batch `b` of `batch_size` positions (the last batch may
    /// be shorter; past the end, empty).
    pub fn batch(&self, b: usize, batch_size: usize) -> Vec<usize> {
        let n = self.len();
        let start = b.saturating_mul(batch_size).min(n);
        let end = start.saturating_add(batch_size).min(n);
        (start..end).filter_map(|k| self.get(k)).collect()
    }
}

/// A random permutation of `0..len` computed one position at a time: a balanced
/// Feistel network on the smallest even number of bits that covers `len`, with
/// round keys drawn from a seed, restricted to `0..len` by cycle walking (positions
/// that land outside are mapped again until they land inside; the domain is less than
/// `4 * len`, so that takes under four steps on average).
#[derive(Clone, Debug)]
struct Feistel {
    len: usize,
    /// Bits per half.
    half: u32,
    keys: [u64; Feistel::ROUNDS],
}

impl Feistel {
    const ROUNDS: usize = 8;

    /// The permutation of `0..len` for `seed`.
    fn new(seed: u64, len: usize) -> Feistel {
        let bits = usize::BITS - len.saturating_sub(1).leading_zeros();
        let g = Generator::new(seed);
        Feistel { len, half: bits.div_ceil(2), keys: std::array::from_fn(|r| g.bits_at(r as u64)) }
    }

    /// The image of `k`, or `None` when `k >= len`.
    fn get(&self, k: usize) -> Option<usize> {
        if k >= self.len {
            return None;
        }
        let mut x = k as u64;
        loop {
            x = self.permute(x);
            if x < self.len as u64 {
                return Some(x as usize);
            }
        }
    }

    /// One pass of the network on `0..4^half`.
    fn permute(&self, x: u64) -> u64 {
        let mask = (1u64 << self.half) - 1;
        let (mut l, mut r) = (x >> self.half, x & mask);
        for &k in &self.keys {
            let f = Generator::new(k).bits_at(r) & mask;
            (l, r) = (r, l ^ f);
        }
        (l << self.half) | r
    }
}

impl<D, B> DataLoader<D, B>
where
    D: Dataset + Send + Sync + 'static,
    B: Send + 'static,
{
    /// The batches of the next epoch (0 first, then 1, ...; see
    /// [`set_epoch`](Self::set_epoch)).
    pub fn iter(&self) -> Batches<B> {
        let epoch = self.next_epoch.fetch_add(1, Ordering::Relaxed);
        self.iter_epoch(epoch)
    }

    /// The batches of epoch `epoch`, leaving the epoch counter alone.
    pub fn iter_epoch(&self, epoch: u64) -> Batches<B> {
        let order = self.order(epoch);
        let (total, batch_size) = (self.len(), self.batch_size);
        let dataset = self.dataset.clone();
        let collate = self.collate.clone();
        let job: Job<B> = Arc::new(move |b: usize| -> Result<B> {
            let items = order.batch(b, batch_size).into_iter().map(|i| dataset.get(i)).collect::<Result<Vec<_>>>()?;
            collate(items)
        });
        let workers = self.num_workers.min(total);
        if workers == 0 {
            return Batches { job, next: 0, total, workers: None };
        }
        let stop = Arc::new(AtomicBool::new(false));
        let mut receivers = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        for w in 0..workers {
            let (tx, rx) = sync_channel(self.prefetch_factor);
            let (wjob, wstop) = (job.clone(), stop.clone());
            let spawned = std::thread::Builder::new().name(format!("data-loader-{w}")).spawn(move || {
                for b in (w..total).step_by(workers) {
                    if wstop.load(Ordering::Relaxed) || tx.send(wjob(b)).is_err() {
                        break;
                    }
                }
            });
            match spawned {
                Ok(h) => {
                    receivers.push(rx);
                    handles.push(h);
                }
                // No thread to be had: fall back to preparing batches on the caller.
                Err(_) => {
                    let pool = Workers { receivers, handles, stop };
                    drop(pool);
                    return Batches { job, next: 0, total, workers: None };
                }
            }
        }
        Batches { job, next: 0, total, workers: Some(Workers { receivers, handles, stop }) }
    }
}

impl<D, B> IntoIterator for &DataLoader<D, B>
where
    D: Dataset + Send + Sync + 'static,
    B: Send + 'static,
{
    type Item = Result<B>;
    type IntoIter = Batches<B>;
    fn into_iter(self) -> Batches<B> {
        self.iter()
    }
}

/// Fetches and collates batch `b` of an epoch.
type Job<B> = Arc<dyn Fn(usize) -> Result<B> + Send + Sync>;

struct Workers<B> {
    receivers: Vec<Receiver<Result<B>>>,
    handles: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl<B> Drop for Workers<B> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Dropping the receivers first unblocks workers waiting on a full queue.
        self.receivers.clear();
        for h in self.handles.drain(..) {
            // A worker that panicked has already reported it; its batch came out as Err.
            let _ = h.join();
        }
    }
}

/// One epoch of batches from a [`DataLoader`], in order.
pub struct Batches<B> {
    job: Job<B>,
    next: usize,
    total: usize,
    workers: Option<Workers<B>>,
}

impl<B> Iterator for Batches<B> {
    type Item = Result<B>;

    fn next(&mut self) -> Option<Result<B>> {
        if self.next >= self.total {
            // Finished: release the threads now rather than when the iterator is dropped.
            self.workers = None;
            return None;
        }
        let b = self.next;
        self.next += 1;
        match &self.workers {
            None => Some((self.job)(b)),
            Some(w) => match w.receivers[b % w.receivers.len()].recv() {
                Ok(r) => Some(r),
                Err(_) => {
                    self.next = self.total;
                    self.workers = None;
                    Some(Err(Error::arg("DataLoader", format!("the worker preparing batch {b} died (it panicked)"))))
                }
            },
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.total - self.next.min(self.total);
        (n, Some(n))
    }
}

impl<B> ExactSizeIterator for Batches<B> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feistel_is_a_permutation_for_every_small_length() {
        for len in (0..=300).chain([1023, 1024, 1025, 4097]) {
            for seed in [0, 1, 0xDEAD_BEEF] {
                let f = Feistel::new(seed, len);
                let mut seen = vec![false; len];
                for k in 0..len {
                    let i = f.get(k).expect("in range");
                    assert!(!seen[i], "len {len} seed {seed}: {i} hit twice");
                    seen[i] = true;
                }
                assert_eq!(f.get(len), None);
            }
        }
    }

    #[test]
    fn feistel_shuffles_and_depends_on_the_seed() {
        let a: Vec<usize> = (0..1000).map(|k| Feistel::new(1, 1000).get(k).unwrap()).collect();
        let b: Vec<usize> = (0..1000).map(|k| Feistel::new(2, 1000).get(k).unwrap()).collect();
        assert_ne!(a, b);
        // Few fixed points, as for a uniform permutation (expected 1).
        assert!(a.iter().enumerate().filter(|(k, &i)| *k == i).count() < 8);
        // Neighbouring positions land far apart on average (uniform: about len / 3).
        let mean_gap = a.windows(2).map(|w| w[0].abs_diff(w[1])).sum::<usize>() / 999;
        assert!((200..470).contains(&mean_gap), "mean gap {mean_gap}");
    }

    #[test]
    fn feistel_covers_the_top_of_usize() {
        let f = Feistel::new(7, usize::MAX);
        let got: Vec<usize> = (0..64).map(|k| f.get(usize::MAX - 1 - k).unwrap()).collect();
        let mut distinct = got.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), 64);
    }
}
