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
    pub fn batch_indices(&self, epoch: u64) -> Vec<Vec<usize>> {
        let n = self.dataset.len();
        let order: Vec<usize> = match self.shuffle {
            // Mixing the epoch in with an odd constant keeps nearby (seed, epoch) pairs apart.
            Some(seed) => {
                Generator::new(seed ^ (epoch.wrapping_add(1)).wrapping_mul(0x9E37_79B9_7F4A_7C15)).permutation(n)
            }
            None => (0..n).collect(),
        };
        order.chunks(self.batch_size).take(self.len()).map(<[usize]>::to_vec).collect()
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
        let batches = self.batch_indices(epoch);
        let total = batches.len();
        let dataset = self.dataset.clone();
        let collate = self.collate.clone();
        let job: Job<B> = Arc::new(move |b: usize| -> Result<B> {
            let items = batches[b].iter().map(|&i| dataset.get(i)).collect::<Result<Vec<_>>>()?;
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
