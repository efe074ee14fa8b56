//! A cache of freed CPU buffers, so that a training loop that makes the same shapes
//! every step reuses memory instead of asking the OS for fresh pages (which the kernel
//! must zero and fault in: for a 64 MB output that costs more than the arithmetic).
//!
//! Buffers of at least [`MIN_BYTES`] are kept on drop, keyed by dtype and length, up to
//! a total of [`cache_limit`] bytes (1 GiB by default, `TENSOR_CPU_CACHE_MB` or
//! [`set_cache_limit`] to change, 0 to turn the cache off). A buffer taken from the
//! cache holds stale (but valid) values: kernels that take one overwrite every element.
//! [`empty_cache`] gives everything back, like `torch.cuda.empty_cache()`.
//!
//! Fresh blocks of 4 MiB and more ask Linux for transparent huge pages before they are
//! first touched (see `advise_huge`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{LazyLock, Mutex};

use super::HostBuffer;
use crate::dtype::Elem;
use crate::{DType, Error, Result};

/// Smaller buffers are left to the system allocator, which serves them fast.
pub const MIN_BYTES: usize = 32 * 1024;

const UNSET: usize = usize::MAX;
static LIMIT: AtomicUsize = AtomicUsize::new(UNSET);

#[derive(Default)]
struct Cache {
    free: HashMap<(DType, usize), Vec<HostBuffer>>,
    bytes: usize,
}

static CACHE: LazyLock<Mutex<Cache>> = LazyLock::new(|| Mutex::new(Cache::default()));

fn lock() -> std::sync::MutexGuard<'static, Cache> {
    // A panic while holding the lock leaves the map consistent (every update is one
    // insert or remove), so a poisoned lock is still usable.
    CACHE.lock().unwrap_or_else(|e| e.into_inner())
}

/// The most bytes the cache keeps.
pub fn cache_limit() -> usize {
    match LIMIT.load(Ordering::Relaxed) {
        UNSET => {
            let mb = std::env::var("TENSOR_CPU_CACHE_MB").ok().and_then(|v| v.trim().parse::<usize>().ok());
            let bytes = mb.map_or(1 << 30, |m| m.saturating_mul(1 << 20));
            LIMIT.store(bytes, Ordering::Relaxed);
            bytes
        }
        n => n,
    }
}

/// Sets the most bytes the cache keeps (0 turns it off) and drops what is over it.
pub fn set_cache_limit(bytes: usize) {
    LIMIT.store(bytes, Ordering::Relaxed);
    if bytes == 0 {
        empty_cache();
    } else {
        let mut c = lock();
        while c.bytes > bytes {
            let Some(key) = c.free.keys().next().copied() else { break };
            if let Some(list) = c.free.remove(&key) {
                c.bytes -= list.len() * key.0.size_in_bytes() * key.1;
            }
        }
    }
}

/// Frees every cached buffer.
pub fn empty_cache() {
    let mut c = lock();
    c.free.clear();
    c.bytes = 0;
}

/// Bytes held by the cache now.
pub fn cached_bytes() -> usize {
    lock().bytes
}

/// A vector of `len` elements of `T` whose values are unspecified (stale values of a
/// reused buffer, or `T::default()`): for outputs that a kernel fully overwrites.
///
/// Fails with [`Error::OutOfMemory`] instead of aborting when the system cannot
/// provide the memory (or the byte size does not fit in an `isize`).
pub(crate) fn uninit<T: Elem>(len: usize) -> Result<Vec<T>> {
    if len.saturating_mul(std::mem::size_of::<T>()) >= MIN_BYTES {
        if let Some(v) = take::<T>(len) {
            return Ok(v);
        }
    }
    fresh(len, T::default())
}

/// A vector of `len` copies of `value` (reusing a cached buffer when one fits).
/// Fails like [`uninit`].
pub(crate) fn filled<T: Elem>(len: usize, value: T) -> Result<Vec<T>> {
    if len.saturating_mul(std::mem::size_of::<T>()) >= MIN_BYTES {
        if let Some(mut v) = take::<T>(len) {
            fill(&mut v, value);
            return Ok(v);
        }
    }
    fresh(len, value)
}

/// Checks, before a kernel that builds its output and index scratch with plain
/// vectors, that `elems` elements of `elem_bytes` bytes each can be had: an
/// [`Error::OutOfMemory`] now instead of an abort halfway through. Sizes under
/// 256 MiB are taken on trust; larger ones are reserved once and released.
pub(crate) fn ensure_room(elems: usize, elem_bytes: usize) -> Result<()> {
    const TRUSTED: usize = 256 << 20;
    let bytes = elems.checked_mul(elem_bytes).filter(|&b| b <= isize::MAX as usize);
    let Some(bytes) = bytes else {
        return Err(Error::OutOfMemory { device: "cpu".into(), bytes: elems.saturating_mul(elem_bytes) });
    };
    if bytes >= TRUSTED {
        let mut probe: Vec<u8> = Vec::new();
        probe.try_reserve_exact(bytes).map_err(|_| Error::OutOfMemory { device: "cpu".into(), bytes })?;
    }
    Ok(())
}

/// The error for a CPU allocation of `len` elements of `T` that failed.
pub(crate) fn oom<T>(len: usize) -> Error {
    Error::OutOfMemory { device: "cpu".into(), bytes: len.saturating_mul(std::mem::size_of::<T>()) }
}

/// A newly allocated vector of `len` copies of `value`. Large zero-filled buffers come
/// from `alloc_zeroed` (`calloc`: fresh pages from the OS cost nothing to zero up
/// front); small ones from `malloc` and a short fill, since `calloc` skips the
/// allocator's per-thread cache. Every path is fallible: a failed allocation is an
/// [`Error::OutOfMemory`], never an abort.
fn fresh<T: Elem>(len: usize, value: T) -> Result<Vec<T>> {
    let bytes = len.checked_mul(std::mem::size_of::<T>()).filter(|&b| b <= isize::MAX as usize);
    let Some(bytes) = bytes else { return Err(oom::<T>(len)) };
    if bytes >= MIN_BYTES && value.to_f64().to_bits() == 0 {
        return zeroed(len);
    }
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| oom::<T>(len))?;
    advise_huge(v.as_ptr() as usize, bytes);
    v.resize(len, value);
    Ok(v)
}

/// Buffers of at least this many bytes ask for transparent huge pages.
const HUGE_MIN_BYTES: usize = 4 << 20;

/// The huge-page size on x86-64 and aarch64 Linux with 4 KiB base pages.
const HUGE_PAGE: usize = 2 << 20;

/// The whole huge pages inside `[addr, addr + bytes)`: their start and length, or
/// `None` when the block is under [`HUGE_MIN_BYTES`] or holds no whole huge page.
fn huge_range(addr: usize, bytes: usize) -> Option<(usize, usize)> {
    if bytes < HUGE_MIN_BYTES {
        return None;
    }
    let end = addr.checked_add(bytes)?;
    let start = addr.checked_next_multiple_of(HUGE_PAGE)?;
    let len = end.checked_sub(start)? / HUGE_PAGE * HUGE_PAGE;
    (len > 0).then_some((start, len))
}

/// Asks Linux to back the huge pages inside a large block (fresh from the OS, so
/// usually not yet touched; a block glibc serves from its heap may be) with
/// transparent huge pages (`madvise(MADV_HUGEPAGE)`; it matters where THP is in
/// `madvise` mode, the common default). A streaming kernel then takes one page fault
/// and one TLB entry per 2 MiB instead of 512, and the hardware prefetcher is not
/// stopped at every 4 KiB boundary: summing 64 MB went from ~2.1 to ~1.7 ms on 2 cores.
/// Only advice: where THP is off, or on other systems, nothing changes.
fn advise_huge(addr: usize, bytes: usize) {
    #[cfg(target_os = "linux")]
    if let Some((start, len)) = huge_range(addr, bytes) {
        // SAFETY: the range lies inside a live allocation this process owns; the
        // advice changes how its pages are backed, never their contents, and a
        // failure (e.g. THP compiled out) is harmless, so the result is ignored.
        unsafe {
            libc::madvise(start as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = huge_range(addr, bytes);
}

/// `len` zeros from the zeroing allocator.
fn zeroed<T: Elem>(len: usize) -> Result<Vec<T>> {
    let layout = std::alloc::Layout::array::<T>(len).map_err(|_| oom::<T>(len))?;
    if layout.size() == 0 {
        return Ok(Vec::new());
    }
    // SAFETY: `layout` has a non-zero size. Every `Elem` type (the trait is sealed to
    // bool, u8, i32, i64, f16, bf16, f32, f64) is valid as all-zero bytes (false, 0, +0.0), so the zeroed block
    // holds `len` initialised values; the vector takes ownership of the block with
    // the same layout it was allocated with (capacity = length = `len`).
    unsafe {
        let p = std::alloc::alloc_zeroed(layout) as *mut T;
        if p.is_null() {
            return Err(oom::<T>(len));
        }
        // A large zeroed block comes fresh from the OS, its pages not yet faulted in.
        advise_huge(p as usize, layout.size());
        Ok(Vec::from_raw_parts(p, len, len))
    }
}

/// Fills in parallel for large buffers.
fn fill<T: Elem>(v: &mut [T], value: T) {
    use rayon::prelude::*;
    const CHUNK: usize = 1 << 16;
    if v.len() > 4 * CHUNK {
        v.par_chunks_mut(CHUNK).for_each(|c| c.fill(value));
    } else {
        v.fill(value);
    }
}

fn take<T: Elem>(len: usize) -> Option<Vec<T>> {
    let mut c = lock();
    let list = c.free.get_mut(&(T::DTYPE, len))?;
    let mut buf = list.pop()?;
    if list.is_empty() {
        c.free.remove(&(T::DTYPE, len));
    }
    c.bytes -= len * std::mem::size_of::<T>();
    drop(c);
    T::unwrap_mut(&mut buf).map(std::mem::take)
}

/// Keeps `buf` for reuse when it is large enough and fits under the limit.
pub(crate) fn recycle(buf: HostBuffer) {
    let (dtype, len) = (buf.dtype(), buf.len());
    let bytes = len * dtype.size_in_bytes();
    if bytes < MIN_BYTES {
        return;
    }
    let limit = cache_limit();
    let mut c = lock();
    if c.bytes + bytes > limit {
        return;
    }
    c.bytes += bytes;
    c.free.entry((dtype, len)).or_default().push(buf);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recycled_buffer_is_reused_and_filled_values_are_exact() {
        // A length no other test uses, so the parallel test threads do not interfere.
        let n = MIN_BYTES + 13;
        recycle(HostBuffer::F32(vec![7.0; n]));
        let stale = take::<f32>(n).expect("the buffer was cached");
        assert!(stale.len() == n && stale.iter().all(|&x| x == 7.0));
        recycle(HostBuffer::F32(stale));
        let v: Vec<f32> = filled(n, 1.5).unwrap();
        assert!(v.len() == n && v.iter().all(|&x| x == 1.5));
        assert!(take::<f32>(n).is_none(), "filled took the cached buffer");
        // Small buffers are never cached.
        recycle(HostBuffer::F32(vec![0.0; 9]));
        assert!(take::<f32>(9).is_none());
    }

    #[test]
    fn huge_range_is_the_whole_huge_pages_inside_the_block() {
        let mb = 1 << 20;
        // Too small, whatever the alignment.
        assert_eq!(huge_range(0, HUGE_MIN_BYTES - 1), None);
        // Aligned: every page.
        assert_eq!(huge_range(4 * mb, 8 * mb), Some((4 * mb, 8 * mb)));
        // Unaligned start and end: from the next boundary, whole pages only.
        assert_eq!(huge_range(16, 8 * mb), Some((2 * mb, 6 * mb)));
        assert_eq!(huge_range(2 * mb + 16, 4 * mb), Some((4 * mb, 2 * mb)));
        // Near the top of the address space: no overflow.
        assert_eq!(huge_range(usize::MAX - 16, 8 * mb), None);
        // Fresh large buffers (which take the advice) hold their values.
        let n = HUGE_MIN_BYTES / 4 + 3;
        let v: Vec<f32> = fresh(n, 2.5).unwrap();
        assert!(v.len() == n && v.iter().all(|&x| x == 2.5));
        let z: Vec<f64> = fresh(n, 0.0).unwrap();
        assert!(z.len() == n && z.iter().all(|&x| x.to_bits() == 0));
    }
}
