//! [`RefArray`]: a plain f64 n-d array for writing reference implementations that
//! share no code with the library.

use tensor_core::Tensor;

/// A row-major f64 array.
#[derive(Clone, Debug, PartialEq)]
pub struct RefArray {
    /// The shape.
    pub shape: Vec<usize>,
    /// The values, row-major.
    pub data: Vec<f64>,
}

impl RefArray {
    /// An array from its parts.
    pub fn new(shape: Vec<usize>, data: Vec<f64>) -> Self {
        assert_eq!(shape.iter().product::<usize>(), data.len(), "reference array shape/data mismatch");
        RefArray { shape, data }
    }

    /// A 0-dim array.
    pub fn scalar(v: f64) -> Self {
        RefArray { shape: vec![], data: vec![v] }
    }

    /// Reads a tensor's values.
    pub fn from_tensor(t: &Tensor) -> Self {
        RefArray { shape: t.dims().to_vec(), data: t.to_vec_f64().expect("readable tensor") }
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.data.len()
    }

    /// Row-major strides.
    pub fn strides(&self) -> Vec<usize> {
        strides(&self.shape)
    }

    /// Element at a multi-index.
    pub fn at(&self, idx: &[usize]) -> f64 {
        let s = self.strides();
        self.data[idx.iter().zip(&s).map(|(i, s)| i * s).sum::<usize>()]
    }

    /// Applies `f` elementwise.
    pub fn map(&self, f: impl Fn(f64) -> f64) -> RefArray {
        RefArray { shape: self.shape.clone(), data: self.data.iter().map(|&x| f(x)).collect() }
    }

    /// Broadcasts two arrays (NumPy rules) and applies `f`.
    pub fn zip(&self, other: &RefArray, f: impl Fn(f64, f64) -> f64) -> RefArray {
        let shape = broadcast(&self.shape, &other.shape);
        let n: usize = shape.iter().product();
        let data = (0..n)
            .map(|i| {
                let idx = unravel(i, &shape);
                f(self.at_broadcast(&idx), other.at_broadcast(&idx))
            })
            .collect();
        RefArray { shape, data }
    }

    /// Element at an index of a broadcast shape (leading dims dropped, size-1 dims
    /// pinned to 0).
    pub fn at_broadcast(&self, idx: &[usize]) -> f64 {
        let extra = idx.len() - self.shape.len();
        let own: Vec<usize> =
            self.shape.iter().enumerate().map(|(d, &s)| if s == 1 { 0 } else { idx[d + extra] }).collect();
        self.at(&own)
    }
}

/// Row-major strides of a shape.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Multi-index of flat position `i`.
pub fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for d in (0..shape.len()).rev() {
        idx[d] = i % shape[d];
        i /= shape[d];
    }
    idx
}

/// NumPy broadcast of two shapes (panics on mismatch: references get valid input).
pub fn broadcast(a: &[usize], b: &[usize]) -> Vec<usize> {
    let r = a.len().max(b.len());
    (0..r)
        .map(|i| {
            let da = if i + a.len() >= r { a[i + a.len() - r] } else { 1 };
            let db = if i + b.len() >= r { b[i + b.len() - r] } else { 1 };
            if da == 1 {
                db
            } else {
                assert!(db == 1 || db == da, "reference broadcast mismatch");
                da
            }
        })
        .collect()
}
