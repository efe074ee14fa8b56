//! [`Layout`]: how a tensor's elements sit in its storage (shape, strides in
//! elements, offset). Every view op is arithmetic on a layout; no data moves.

use smallvec::SmallVec;

use crate::shape::{normalize_dim, same_dims, Dims, Shape};
use crate::{Error, Result};

/// Shape, strides (in elements) and starting offset of a view into a storage.
///
/// A broadcast (expanded) dimension has stride 0.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Layout {
    shape: Shape,
    strides: Dims,
    offset: usize,
}

impl Clone for Layout {
    #[inline]
    fn clone(&self) -> Self {
        Layout { shape: self.shape.clone(), strides: SmallVec::from_slice(&self.strides), offset: self.offset }
    }
}

impl Layout {
    /// A contiguous row-major layout of `shape` starting at offset 0.
    pub fn contiguous(shape: impl Into<Shape>) -> Self {
        let shape = shape.into();
        let strides = shape.contiguous_strides();
        Layout { shape, strides, offset: 0 }
    }

    /// A layout from its parts, for the crate's own view arithmetic: the caller
    /// promises the ranks agree and every reachable element is in bounds.
    pub(crate) fn new(shape: Shape, strides: Dims, offset: usize) -> Self {
        debug_assert_eq!(shape.rank(), strides.len());
        Layout { shape, strides, offset }
    }

    /// A layout from its parts, checked: `strides` must have one entry per dim of
    /// `shape`, and the furthest element must have an index that fits in `usize`.
    /// Whether the view fits a particular storage is checked when it is attached to
    /// one ([`crate::Tensor::from_parts`] and the crate-private `with_layout`).
    ///
    /// ```
    /// use tensor_core::Layout;
    /// let l = Layout::from_parts([2, 3], &[1, 2], 0)?; // a transposed 3x2
    /// assert_eq!(l.span(), (0, 6));
    /// assert!(Layout::from_parts([2, 3], &[1], 0).is_err());
    /// # Ok::<(), tensor_core::Error>(())
    /// ```
    pub fn from_parts(shape: impl Into<Shape>, strides: &[usize], offset: usize) -> Result<Self> {
        let shape = shape.into();
        if shape.rank() != strides.len() {
            return Err(Error::invalid_shape(
                "Layout::from_parts",
                &shape,
                format!("{} strides given for a shape of rank {}", strides.len(), shape.rank()),
            ));
        }
        let l = Layout { shape, strides: SmallVec::from_slice(strides), offset };
        if l.checked_end().is_none() {
            return Err(Error::invalid_shape(
                "Layout::from_parts",
                l.dims(),
                format!("strides {strides:?} and offset {offset} reach past usize::MAX"),
            ));
        }
        Ok(l)
    }

    /// One past the furthest storage index the view reaches (`offset` for a zero-size
    /// view, which reaches nothing), or `None` when that index overflows `usize`.
    pub fn checked_end(&self) -> Option<usize> {
        if self.shape.contains(&0) {
            return Some(self.offset);
        }
        let mut max = self.offset;
        for (d, s) in self.shape.iter().zip(&self.strides) {
            max = max.checked_add((d - 1).checked_mul(*s)?)?;
        }
        max.checked_add(1)
    }

    /// Fails unless every element this view reaches lies inside a storage of `len`
    /// elements (and the ranks of shape and strides agree). Backends call it before
    /// handing raw pointers to a library; constructors call it on every layout that
    /// safe code can attach to a storage.
    pub fn check_fits(&self, op: &'static str, len: usize) -> Result<()> {
        let fits = self.strides.len() == self.shape.rank() && self.checked_end().is_some_and(|e| e <= len);
        if fits || (self.strides.len() == self.shape.rank() && self.shape.contains(&0)) {
            return Ok(());
        }
        Err(Error::arg(
            op,
            format!(
                "a view of shape {:?} with strides {:?} and offset {} reaches past the end of a storage of {len} elements",
                self.dims(),
                self.strides(),
                self.offset
            ),
        ))
    }

    /// The shape.
    pub fn shape(&self) -> &Shape {
        &self.shape
    }

    /// The sizes as a slice.
    pub fn dims(&self) -> &[usize] {
        &self.shape
    }

    /// The strides in elements.
    pub fn strides(&self) -> &[usize] {
        &self.strides
    }

    /// The offset of element `[0, 0, ...]` in the storage.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Number of dims.
    pub fn rank(&self) -> usize {
        self.shape.rank()
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.numel()
    }

    /// True when the elements are in row-major order with no gaps (size-1 dims may
    /// have any stride).
    pub fn is_contiguous(&self) -> bool {
        let mut expected = 1usize;
        for i in (0..self.rank()).rev() {
            let d = self.shape[i];
            if d != 1 {
                if self.strides[i] != expected {
                    return false;
                }
                expected *= d;
            }
        }
        true
    }

    /// The storage range `[start, end)` the view can touch (empty for zero-size views).
    /// Saturates at `usize::MAX` for a layout whose reach overflows (see
    /// [`Layout::checked_end`]).
    pub fn span(&self) -> (usize, usize) {
        (self.offset, self.checked_end().unwrap_or(usize::MAX))
    }

    /// The contiguous slice `[offset, offset + numel)` when the view is contiguous.
    pub fn contiguous_range(&self) -> Option<std::ops::Range<usize>> {
        if self.is_contiguous() {
            Some(self.offset..self.offset + self.numel())
        } else {
            None
        }
    }

    /// Storage offset of a multi-index.
    pub fn offset_of(&self, index: &[usize]) -> usize {
        self.offset + index.iter().zip(&self.strides).map(|(i, s)| i * s).sum::<usize>()
    }

    /// Reorders dims: `perm[i]` is the source dim that becomes dim `i`.
    pub fn permute(&self, perm: &[usize]) -> Result<Layout> {
        let r = self.rank();
        if perm.len() != r {
            return Err(Error::arg(
                "permute",
                format!("number of dims in permutation ({}) does not match the tensor's rank {r}", perm.len()),
            ));
        }
        let mut seen = vec![false; r];
        for &p in perm {
            if p >= r || seen[p] {
                return Err(Error::arg("permute", format!("{perm:?} is not a permutation of 0..{r}")));
            }
            seen[p] = true;
        }
        let shape = Shape(perm.iter().map(|&p| self.shape[p]).collect());
        let strides = perm.iter().map(|&p| self.strides[p]).collect();
        Ok(Layout { shape, strides, offset: self.offset })
    }

    /// Swaps two dims.
    pub fn transpose(&self, a: usize, b: usize) -> Layout {
        let mut l = self.clone();
        l.shape.0.swap(a, b);
        l.strides.swap(a, b);
        l
    }

    /// Keeps `len` entries of dim `dim` starting at `start`.
    pub fn narrow(&self, dim: usize, start: usize, len: usize) -> Layout {
        let mut l = self.clone();
        l.offset += start * self.strides[dim];
        l.shape.0[dim] = len;
        l
    }

    /// Keeps entries `start, start+step, ...` (`len` of them) of dim `dim`.
    pub fn slice_step(&self, dim: usize, start: usize, len: usize, step: usize) -> Layout {
        let mut l = self.narrow(dim, start, len);
        // With fewer than two entries the stride is never used (and `step` may be huge).
        if len > 1 {
            l.strides[dim] *= step;
        }
        l
    }

    /// Removes dim `dim` by fixing its index.
    pub fn select(&self, dim: usize, index: usize) -> Layout {
        let mut l = self.clone();
        l.offset += index * self.strides[dim];
        l.shape.0.remove(dim);
        l.strides.remove(dim);
        l
    }

    /// Inserts a size-1 dim at `dim` (0..=rank).
    pub fn unsqueeze(&self, dim: usize) -> Layout {
        let mut l = self.clone();
        let stride = if dim < self.rank() { self.strides[dim] * self.shape[dim] } else { 1 };
        l.shape.0.insert(dim, 1);
        l.strides.insert(dim, stride);
        l
    }

    /// Removes a size-1 dim.
    pub fn squeeze(&self, dim: usize) -> Layout {
        debug_assert_eq!(self.shape[dim], 1);
        let mut l = self.clone();
        l.shape.0.remove(dim);
        l.strides.remove(dim);
        l
    }

    /// Broadcasts to `shape` (NumPy rules): new leading dims and size-1 dims get stride 0.
    pub fn broadcast_to(&self, shape: &[usize]) -> Result<Layout> {
        if same_dims(self.dims(), shape) {
            return Ok(self.clone());
        }
        let r = shape.len();
        if r < self.rank() {
            return Err(Error::shape(
                "expand",
                self.dims(),
                shape,
                "the number of sizes provided must be greater or equal to the number of dimensions in the tensor",
            ));
        }
        // Keep every shape addressable: a materialised copy must fit in memory space.
        let fits =
            shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).is_some_and(|n| n <= isize::MAX as usize / 16);
        if !fits {
            return Err(Error::shape("expand", self.dims(), shape, "the expanded shape has too many elements"));
        }
        let extra = r - self.rank();
        let mut strides: Dims = SmallVec::from_elem(0, r);
        for i in 0..r {
            if i < extra {
                continue;
            }
            let (d, s) = (self.shape[i - extra], self.strides[i - extra]);
            if d == shape[i] {
                strides[i] = s;
            } else if d == 1 {
                strides[i] = 0;
            } else {
                return Err(Error::shape(
                    "expand",
                    self.dims(),
                    shape,
                    format!(
                        "the expanded size ({}) must match the existing size ({d}) at non-singleton dimension {i}",
                        shape[i]
                    ),
                ));
            }
        }
        Ok(Layout { shape: Shape::new(shape), strides, offset: self.offset })
    }

    /// A view with a new shape of the same numel, without copying, when the strides
    /// allow it (PyTorch's `view` rule). `None` when a copy would be needed.
    pub fn reshape_view(&self, new_shape: &[usize]) -> Option<Layout> {
        if self.is_contiguous() {
            let mut l = Layout::contiguous(Shape::new(new_shape));
            l.offset = self.offset;
            return Some(l);
        }
        if self.numel() == 0 {
            return Some(Layout::contiguous(Shape::new(new_shape)));
        }
        // Walk the old dims from the innermost outwards in chunks whose dims are
        // contiguous among themselves; each chunk must be covered exactly by a run
        // of new dims, which then inherit strides from the chunk's base stride.
        let old_shape = self.dims();
        let old_strides = self.strides();
        let mut new_strides: Dims = SmallVec::from_elem(0, new_shape.len());
        let mut view_d = new_shape.len() as isize - 1;
        let mut chunk_base = *old_strides.last()?;
        let mut tensor_numel = 1usize;
        let mut view_numel = 1usize;
        for td in (0..old_shape.len()).rev() {
            tensor_numel *= old_shape[td];
            let chunk_ends = td == 0 || (old_shape[td - 1] != 1 && old_strides[td - 1] != tensor_numel * chunk_base);
            if chunk_ends {
                while view_d >= 0 && (view_numel < tensor_numel || new_shape[view_d as usize] == 1) {
                    new_strides[view_d as usize] = view_numel * chunk_base;
                    view_numel *= new_shape[view_d as usize];
                    view_d -= 1;
                }
                if view_numel != tensor_numel {
                    return None;
                }
                if td > 0 {
                    chunk_base = old_strides[td - 1];
                    tensor_numel = 1;
                    view_numel = 1;
                }
            }
        }
        if view_d != -1 {
            return None;
        }
        Some(Layout { shape: Shape::new(new_shape), strides: new_strides, offset: self.offset })
    }

    /// A layout with explicit sizes and strides on the same storage (`as_strided`).
    pub fn as_strided(&self, shape: &[usize], strides: &[usize], offset: usize) -> Layout {
        Layout { shape: Shape::new(shape), strides: SmallVec::from_slice(strides), offset }
    }

    /// Normalises `dim` against this layout's rank.
    pub fn dim(&self, op: &'static str, dim: isize) -> Result<usize> {
        normalize_dim(op, dim, self.rank())
    }
}
