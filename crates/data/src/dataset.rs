//! [`Dataset`]: indexable collections of examples, with [`TensorDataset`] (rows of
//! tensors), [`Subset`] and [`random_split`].

use std::sync::Arc;

use tensor_core::{Error, Generator, Result, Tensor};

/// A collection of examples that can be fetched by index, like PyTorch's map-style
/// `Dataset`.
///
/// `get` returns `Err` instead of panicking (an index out of range, a file that
/// cannot be read); a [`DataLoader`](crate::DataLoader) passes such errors on as
/// `Err` batches.
///
/// ```
/// use data::Dataset;
/// use tensor_core::Result;
///
/// /// The squares 0, 1, 4, 9, ...
/// struct Squares(usize);
/// impl Dataset for Squares {
///     type Item = i64;
///     fn len(&self) -> usize { self.0 }
///     fn get(&self, i: usize) -> Result<i64> { Ok((i * i) as i64) }
/// }
/// assert_eq!(Squares(5).get(3)?, 9);
/// # Ok::<(), tensor_core::Error>(())
/// ```
pub trait Dataset {
    /// One example.
    type Item;
    /// The number of examples.
    fn len(&self) -> usize;
    /// True when there is no example.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The example at `index` (in `0..len()`).
    fn get(&self, index: usize) -> Result<Self::Item>;
}

impl<D: Dataset + ?Sized> Dataset for Arc<D> {
    type Item = D::Item;
    fn len(&self) -> usize {
        (**self).len()
    }
    fn get(&self, index: usize) -> Result<D::Item> {
        (**self).get(index)
    }
}

impl<D: Dataset + ?Sized> Dataset for Box<D> {
    type Item = D::Item;
    fn len(&self) -> usize {
        (**self).len()
    }
    fn get(&self, index: usize) -> Result<D::Item> {
        (**self).get(index)
    }
}

fn check_index(op: &'static str, index: usize, len: usize) -> Result<()> {
    if index >= len {
        return Err(Error::IndexOutOfRange { op, index: index as i64, dim: 0, size: len });
    }
    Ok(())
}

/// Rows of one or more tensors that share their first dimension (PyTorch's
/// `TensorDataset`): item `i` holds row `i` of each tensor, as views.
///
/// ```
/// use data::{Dataset, TensorDataset};
/// use tensor_core::Tensor;
///
/// let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], [3, 2])?;
/// let y = Tensor::from_vec(vec![0i64, 1, 0], [3])?;
/// let ds = TensorDataset::new(vec![x, y])?;
/// let item = ds.get(1)?;
/// assert_eq!(item[0].to_vec::<f32>()?, vec![3.0, 4.0]);
/// assert_eq!(item[1].to_scalar::<i64>()?, 1);
/// # Ok::<(), tensor_core::Error>(())
/// ```
#[derive(Clone)]
pub struct TensorDataset {
    tensors: Vec<Tensor>,
    len: usize,
}

impl TensorDataset {
    /// Pairs up the rows of `tensors`; they must all have at least one dim and the
    /// same size in dim 0.
    pub fn new(tensors: Vec<Tensor>) -> Result<Self> {
        const OP: &str = "TensorDataset";
        let first = tensors.first().ok_or_else(|| Error::arg(OP, "expected at least one tensor"))?;
        let len = *first.dims().first().ok_or_else(|| Error::arg(OP, "tensor 0 is zero-dimensional"))?;
        for (i, t) in tensors.iter().enumerate() {
            match t.dims().first() {
                None => return Err(Error::arg(OP, format!("tensor {i} is zero-dimensional"))),
                Some(&n) if n != len => {
                    return Err(Error::shape(
                        OP,
                        first.dims(),
                        t.dims(),
                        format!("size mismatch between tensors: tensor {i} has {n} rows, tensor 0 has {len}"),
                    ))
                }
                Some(_) => {}
            }
        }
        Ok(TensorDataset { tensors, len })
    }

    /// The tensors, in the order given.
    pub fn tensors(&self) -> &[Tensor] {
        &self.tensors
    }
}

impl Dataset for TensorDataset {
    type Item = Vec<Tensor>;
    fn len(&self) -> usize {
        self.len
    }
    fn get(&self, index: usize) -> Result<Vec<Tensor>> {
        check_index("TensorDataset::get", index, self.len)?;
        self.tensors.iter().map(|t| t.select(0, index as isize)).collect()
    }
}

/// The examples of a dataset at the given indices (PyTorch's `Subset`).
///
/// ```
/// use std::sync::Arc;
/// use data::{Dataset, Subset, TensorDataset};
/// use tensor_core::Tensor;
///
/// let ds = Arc::new(TensorDataset::new(vec![Tensor::from_vec(vec![10i64, 11, 12, 13], [4])?])?);
/// let sub = Subset::new(ds, vec![3, 1])?;
/// assert_eq!(sub.len(), 2);
/// assert_eq!(sub.get(0)?[0].to_scalar::<i64>()?, 13);
/// # Ok::<(), tensor_core::Error>(())
/// ```
pub struct Subset<D> {
    dataset: Arc<D>,
    indices: Vec<usize>,
}

impl<D> Clone for Subset<D> {
    fn clone(&self) -> Self {
        Subset { dataset: self.dataset.clone(), indices: self.indices.clone() }
    }
}

impl<D: Dataset> Subset<D> {
    /// The examples of `dataset` at `indices` (each in `0..dataset.len()`; repeats allowed).
    pub fn new(dataset: Arc<D>, indices: Vec<usize>) -> Result<Self> {
        let n = dataset.len();
        if let Some(&bad) = indices.iter().find(|&&i| i >= n) {
            return Err(Error::IndexOutOfRange { op: "Subset", index: bad as i64, dim: 0, size: n });
        }
        Ok(Subset { dataset, indices })
    }

    /// The indices into the underlying dataset.
    pub fn indices(&self) -> &[usize] {
        &self.indices
    }

    /// The underlying dataset.
    pub fn dataset(&self) -> &Arc<D> {
        &self.dataset
    }
}

impl<D: Dataset> Dataset for Subset<D> {
    type Item = D::Item;
    fn len(&self) -> usize {
        self.indices.len()
    }
    fn get(&self, index: usize) -> Result<D::Item> {
        check_index("Subset::get", index, self.indices.len())?;
        self.dataset.get(self.indices[index])
    }
}

/// How [`random_split`] sizes its parts: exact counts, or fractions of the dataset.
#[derive(Clone, Debug, PartialEq)]
pub enum SplitLengths {
    /// Exact sizes; they must add up to the dataset's length.
    Counts(Vec<usize>),
    /// Fractions in `[0, 1]` adding up to 1. Each part gets `floor(f * n)` examples and
    /// the remainder is dealt one by one to the parts in order, like PyTorch.
    Fractions(Vec<f64>),
}

impl From<Vec<usize>> for SplitLengths {
    fn from(v: Vec<usize>) -> Self {
        SplitLengths::Counts(v)
    }
}
impl From<&[usize]> for SplitLengths {
    fn from(v: &[usize]) -> Self {
        SplitLengths::Counts(v.to_vec())
    }
}
impl<const N: usize> From<[usize; N]> for SplitLengths {
    fn from(v: [usize; N]) -> Self {
        SplitLengths::Counts(v.to_vec())
    }
}
impl From<Vec<f64>> for SplitLengths {
    fn from(v: Vec<f64>) -> Self {
        SplitLengths::Fractions(v)
    }
}
impl From<&[f64]> for SplitLengths {
    fn from(v: &[f64]) -> Self {
        SplitLengths::Fractions(v.to_vec())
    }
}
impl<const N: usize> From<[f64; N]> for SplitLengths {
    fn from(v: [f64; N]) -> Self {
        SplitLengths::Fractions(v.to_vec())
    }
}

impl SplitLengths {
    /// The part sizes for a dataset of `n` examples.
    pub fn counts(&self, n: usize) -> Result<Vec<usize>> {
        const OP: &str = "random_split";
        match self {
            SplitLengths::Counts(c) => {
                let total = c.iter().try_fold(0usize, |a, &x| a.checked_add(x)).ok_or_else(|| {
                    Error::arg(
                        OP,
                        format!(
                            "sum of input lengths {c:?} overflows, so it cannot equal the length {n} of the dataset"
                        ),
                    )
                })?;
                if total != n {
                    return Err(Error::arg(
                        OP,
                        format!(
                            "sum of input lengths {c:?} is {total}, which does not equal the length {n} of the dataset"
                        ),
                    ));
                }
                Ok(c.clone())
            }
            SplitLengths::Fractions(f) => {
                // `contains` is false for NaN, so NaN fractions are rejected here too.
                if f.is_empty() || f.iter().any(|x| !(0.0..=1.0).contains(x)) {
                    return Err(Error::arg(OP, format!("fractions {f:?} must each lie in [0, 1]")));
                }
                let total: f64 = f.iter().sum();
                if (total - 1.0).abs() > 1e-6 {
                    return Err(Error::arg(OP, format!("fractions {f:?} add up to {total}, not 1")));
                }
                // `as usize` saturates, and each fraction is at most 1, so each part is
                // at most `n`; the sum is taken in u128 so that it cannot overflow.
                let mut c: Vec<usize> = f.iter().map(|x| ((x * n as f64).floor() as usize).min(n)).collect();
                // Fractions adding up to slightly more than 1 can overshoot by rounding.
                let mut total: u128 = c.iter().map(|&x| x as u128).sum();
                for x in c.iter_mut().rev() {
                    let take = total.saturating_sub(n as u128).min(*x as u128);
                    *x -= take as usize;
                    total -= take;
                }
                // Now `total <= n`: deal the remainder one by one to the parts in order,
                // computed per part (the remainder can be large for a huge dataset).
                let rest = n - total as usize;
                let parts = c.len();
                for (i, x) in c.iter_mut().enumerate() {
                    *x += rest / parts + usize::from(i < rest % parts);
                }
                Ok(c)
            }
        }
    }
}

/// Splits a dataset into non-overlapping random subsets (PyTorch's `random_split`).
///
/// `lengths` are counts (`[800, 200]`) or fractions (`[0.8, 0.2]`); the same `seed`
/// gives the same split.
///
/// ```
/// use std::sync::Arc;
/// use data::{random_split, Dataset, TensorDataset};
/// use tensor_core::{DType, Device, Tensor};
///
/// let x = Tensor::arange(0.0, 10.0, 1.0, DType::F32, &Device::cpu())?;
/// let ds = Arc::new(TensorDataset::new(vec![x])?);
/// let parts = random_split(ds, [0.7, 0.3], 42)?;
/// assert_eq!((parts[0].len(), parts[1].len()), (7, 3));
/// # Ok::<(), tensor_core::Error>(())
/// ```
pub fn random_split<D: Dataset>(
    dataset: Arc<D>,
    lengths: impl Into<SplitLengths>,
    seed: u64,
) -> Result<Vec<Subset<D>>> {
    let n = dataset.len();
    let counts = lengths.into().counts(n)?;
    let perm = permutation(seed, n)?;
    let mut start = 0;
    Ok(counts
        .into_iter()
        .map(|c| {
            let s = Subset { dataset: dataset.clone(), indices: perm[start..start + c].to_vec() };
            start += c;
            s
        })
        .collect())
}

/// A random permutation of `0..n` drawn from `seed`: the same one as
/// [`Generator::permutation`] (Fisher-Yates), but an allocation that cannot be had
/// (a dataset reporting billions of examples) is an `Err`, not an abort.
fn permutation(seed: u64, n: usize) -> Result<Vec<usize>> {
    let mut p: Vec<usize> = Vec::new();
    p.try_reserve_exact(n).map_err(|_| {
        Error::arg(
            "random_split",
            format!(
                "a dataset of {n} examples needs {n} indices ({} bytes), which cannot be allocated",
                n.saturating_mul(8)
            ),
        )
    })?;
    p.extend(0..n);
    let mut g = Generator::new(seed);
    for i in (1..n).rev() {
        let j = g.below(i as u64 + 1) as usize;
        p.swap(i, j);
    }
    Ok(p)
}
