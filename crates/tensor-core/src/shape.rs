//! [`Shape`]: the sizes of a tensor's dimensions, plus dim normalisation and
//! NumPy broadcasting rules.

use smallvec::SmallVec;
use std::fmt;

use crate::{Error, Result};

/// Inline storage for dims: up to 4 dims without a heap allocation (a tensor handle
/// then fits in 128 bytes, which the system allocator recycles fastest).
pub type Dims = SmallVec<[usize; 4]>;

/// `a == b` for sizes or strides, as a short loop: slice equality calls `memcmp`,
/// which costs more than the comparison itself for a handful of words, and the hot
/// paths of small ops compare shapes several times per op.
#[inline]
pub fn same_dims(a: &[usize], b: &[usize]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// The sizes of a tensor's dimensions.
#[derive(PartialEq, Eq, Hash, Default)]
pub struct Shape(pub Dims);

impl Clone for Shape {
    #[inline]
    fn clone(&self) -> Self {
        // A block copy; `SmallVec`'s own `clone` goes element by element through
        // `extend`, and shapes are cloned on every tensor handle clone.
        Shape(SmallVec::from_slice(&self.0))
    }
}

impl FromIterator<usize> for Shape {
    fn from_iter<I: IntoIterator<Item = usize>>(iter: I) -> Self {
        Shape(iter.into_iter().collect())
    }
}

impl Shape {
    /// A shape from a slice of sizes.
    pub fn new(dims: &[usize]) -> Self {
        Shape(SmallVec::from_slice(dims))
    }

    /// The 0-dim (scalar) shape.
    pub fn scalar() -> Self {
        Shape(SmallVec::new())
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.0.len()
    }

    /// Total number of elements (1 for a scalar).
    ///
    /// Saturates at `usize::MAX` when the product overflows (a shape no memory can
    /// hold): allocating that many elements then fails with
    /// [`crate::Error::OutOfMemory`] instead of wrapping to a small size.
    /// [`Shape::checked_numel`] tells the two apart.
    #[inline]
    pub fn numel(&self) -> usize {
        self.0.iter().fold(1usize, |acc, &d| acc.saturating_mul(d))
    }

    /// Total number of elements, or `None` when the product overflows `usize`.
    pub fn checked_numel(&self) -> Option<usize> {
        self.0.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
    }

    /// The sizes as a slice.
    pub fn dims(&self) -> &[usize] {
        &self.0
    }

    /// Row-major (C order) strides of a contiguous tensor of this shape.
    pub fn contiguous_strides(&self) -> Dims {
        let mut s: Dims = SmallVec::from_elem(1, self.rank());
        let mut acc = 1usize;
        for i in (0..self.rank()).rev() {
            s[i] = acc;
            // Saturating: only a zero-size shape can have a product of the other
            // sizes past usize::MAX, and its strides never address an element.
            acc = acc.saturating_mul(self.0[i].max(1));
        }
        s
    }
}

impl std::ops::Deref for Shape {
    type Target = [usize];
    fn deref(&self) -> &[usize] {
        &self.0
    }
}

impl fmt::Debug for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &self.0[..])
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &self.0[..])
    }
}

impl From<&[usize]> for Shape {
    fn from(d: &[usize]) -> Self {
        Shape::new(d)
    }
}
impl<const N: usize> From<[usize; N]> for Shape {
    fn from(d: [usize; N]) -> Self {
        Shape::new(&d)
    }
}
impl<const N: usize> From<&[usize; N]> for Shape {
    fn from(d: &[usize; N]) -> Self {
        Shape::new(d)
    }
}
impl From<Vec<usize>> for Shape {
    fn from(d: Vec<usize>) -> Self {
        Shape(SmallVec::from_vec(d))
    }
}
impl From<&Vec<usize>> for Shape {
    fn from(d: &Vec<usize>) -> Self {
        Shape::new(d)
    }
}
impl From<()> for Shape {
    fn from(_: ()) -> Self {
        Shape::scalar()
    }
}
impl From<usize> for Shape {
    fn from(d: usize) -> Self {
        Shape::new(&[d])
    }
}
impl From<(usize, usize)> for Shape {
    fn from(d: (usize, usize)) -> Self {
        Shape::new(&[d.0, d.1])
    }
}
impl From<(usize, usize, usize)> for Shape {
    fn from(d: (usize, usize, usize)) -> Self {
        Shape::new(&[d.0, d.1, d.2])
    }
}
impl From<(usize, usize, usize, usize)> for Shape {
    fn from(d: (usize, usize, usize, usize)) -> Self {
        Shape::new(&[d.0, d.1, d.2, d.3])
    }
}

/// Turns a possibly negative dim into an index in `[0, rank)`.
pub fn normalize_dim(op: &'static str, dim: isize, rank: usize) -> Result<usize> {
    let r = rank as isize;
    let d = if dim < 0 { dim + r } else { dim };
    if d < 0 || d >= r {
        return Err(Error::DimOutOfRange { op, dim, rank });
    }
    Ok(d as usize)
}

/// Like [`normalize_dim`] but a 0-dim tensor accepts dims 0 and -1 (PyTorch's rule
/// for reductions over scalars). Returns `None` for that scalar case.
pub fn normalize_dim_scalar_ok(op: &'static str, dim: isize, rank: usize) -> Result<Option<usize>> {
    if rank == 0 {
        if dim == 0 || dim == -1 {
            return Ok(None);
        }
        return Err(Error::DimOutOfRange { op, dim, rank });
    }
    normalize_dim(op, dim, rank).map(Some)
}

/// Normalises a list of dims, refusing duplicates. An empty list means "all dims".
pub fn normalize_dims(op: &'static str, dims: &[isize], rank: usize) -> Result<Dims> {
    if dims.is_empty() {
        return Ok((0..rank).collect());
    }
    let mut out = Dims::new();
    for &d in dims {
        if let Some(n) = normalize_dim_scalar_ok(op, d, rank)? {
            if out.contains(&n) {
                return Err(Error::arg(op, format!("dim {n} appears multiple times in the list of dims")));
            }
            out.push(n)
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// NumPy broadcasting of two shapes.
pub fn broadcast_shapes(op: &'static str, a: &[usize], b: &[usize]) -> Result<Shape> {
    let rank = a.len().max(b.len());
    let mut out: Dims = SmallVec::from_elem(0, rank);
    for i in 0..rank {
        let da = if i + a.len() >= rank { a[i + a.len() - rank] } else { 1 };
        let db = if i + b.len() >= rank { b[i + b.len() - rank] } else { 1 };
        out[i] = if da == db {
            da
        } else if da == 1 {
            db
        } else if db == 1 {
            da
        } else {
            return Err(Error::shape(
                op,
                a,
                b,
                format!("the size of dimension {i} ({da} vs {db}) cannot be broadcast"),
            ));
        };
    }
    Ok(Shape(out))
}
