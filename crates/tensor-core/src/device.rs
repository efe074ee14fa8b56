//! [`Device`]: a handle to a backend, and [`Storage`]: a device buffer with a
//! version counter.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::backend::{Backend, DeviceLocation, OwnedBuffer};
use crate::cpu::CpuBackend;
use crate::profiler::Profiled;

/// Where a tensor's data lives: a cheap handle to an `Arc<dyn Backend>`.
///
/// ```
/// use tensor_core::Device;
/// let cpu = Device::cpu();
/// assert_eq!(cpu.to_string(), "cpu");
/// ```
#[derive(Clone)]
pub struct Device(Repr);

/// The CPU is a unit variant, so that the many device handles small CPU tensors copy
/// (every new storage holds one) cost no reference counting.
#[derive(Clone)]
enum Repr {
    Cpu,
    Other(Arc<DeviceInner>),
}

struct DeviceInner {
    backend: Arc<dyn Backend>,
    /// The same backend with every primitive recorded, handed out while a
    /// [`crate::profiler::profile`] is being taken.
    profiled: Profiled,
}

static CPU_INNER: OnceLock<DeviceInner> = OnceLock::new();

impl DeviceInner {
    fn new(backend: Arc<dyn Backend>) -> Self {
        DeviceInner { profiled: Profiled(backend.clone()), backend }
    }
}

impl Device {
    /// The host CPU.
    #[inline]
    pub fn cpu() -> Device {
        Device(Repr::Cpu)
    }

    /// A device served by a backend implemented outside this crate (e.g. CUDA).
    pub fn from_backend(backend: Arc<dyn Backend>) -> Device {
        Device(Repr::Other(Arc::new(DeviceInner::new(backend))))
    }

    #[inline]
    fn inner(&self) -> &DeviceInner {
        match &self.0 {
            Repr::Cpu => CPU_INNER.get_or_init(|| DeviceInner::new(CpuBackend::shared())),
            Repr::Other(d) => d,
        }
    }

    /// The backend behind this device.
    #[inline]
    pub fn backend(&self) -> &dyn Backend {
        let inner = self.inner();
        if crate::profiler::is_enabled() {
            &inner.profiled
        } else {
            &*inner.backend
        }
    }

    /// The backend as a shared handle.
    pub fn backend_arc(&self) -> Arc<dyn Backend> {
        self.inner().backend.clone()
    }

    /// Where the device lives.
    pub fn location(&self) -> DeviceLocation {
        match &self.0 {
            Repr::Cpu => DeviceLocation::Cpu,
            Repr::Other(d) => d.backend.location(),
        }
    }

    /// True for the CPU.
    pub fn is_cpu(&self) -> bool {
        self.location() == DeviceLocation::Cpu
    }

    /// True for a CUDA device.
    pub fn is_cuda(&self) -> bool {
        matches!(self.location(), DeviceLocation::Cuda(_))
    }

    /// Waits for queued work on the device.
    pub fn synchronize(&self) -> crate::Result<()> {
        self.inner().backend.synchronize()
    }
}

impl Default for Device {
    fn default() -> Self {
        Device::cpu()
    }
}

impl PartialEq for Device {
    fn eq(&self, other: &Self) -> bool {
        matches!((&self.0, &other.0), (Repr::Cpu, Repr::Cpu)) || self.location() == other.location()
    }
}
impl Eq for Device {}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Device({})", self.location())
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.location())
    }
}

/// A device buffer shared by every view of it, with a version counter that in-place
/// writes bump (autograd uses it to detect modified saved tensors).
///
/// Its lock is tensor-core's own: ops take it in one global order so that no two
/// threads can deadlock, and check every view against the buffer under it. Outside
/// tensor-core, read a CPU tensor's memory through [`Tensor::read_host`](crate::Tensor::read_host).
pub struct Storage {
    buf: RwLock<OwnedBuffer>,
    version: AtomicU64,
    device: Device,
}

impl Storage {
    /// Wraps a buffer.
    pub fn new(buf: OwnedBuffer, device: Device) -> Self {
        Storage { buf: RwLock::new(buf), version: AtomicU64::new(0), device }
    }

    /// Read access to the buffer.
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, OwnedBuffer> {
        self.buf.read()
    }

    /// Write access to the buffer; bumps the version.
    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, OwnedBuffer> {
        self.version.fetch_add(1, Ordering::Relaxed);
        self.buf.write()
    }

    /// Write access to `dst` and read access to `src` (two different storages),
    /// taken in the one global lock order ([`lock_in_order`]), so that two threads
    /// running `a.add_(&b)` and `b.add_(&a)` can't deadlock.
    pub(crate) fn write_read<'a>(
        dst: &'a Storage,
        src: &'a Storage,
    ) -> (RwLockWriteGuard<'a, OwnedBuffer>, RwLockReadGuard<'a, OwnedBuffer>) {
        debug_assert!(!std::ptr::eq(dst, src), "write_read needs two storages");
        if order_key(dst) < order_key(src) {
            let d = dst.write();
            (d, src.buf.read())
        } else {
            let r = src.buf.read();
            (dst.write(), r)
        }
    }

    /// Read access to two storages in the global lock order; `None` for the second
    /// when both are the same storage (its one guard serves both).
    pub(crate) fn read2<'a>(
        a: &'a Storage,
        b: &'a Storage,
    ) -> (RwLockReadGuard<'a, OwnedBuffer>, Option<RwLockReadGuard<'a, OwnedBuffer>>) {
        if std::ptr::eq(a, b) {
            (a.read(), None)
        } else if order_key(a) < order_key(b) {
            let ga = a.read();
            (ga, Some(b.read()))
        } else {
            let gb = b.read();
            (a.read(), Some(gb))
        }
    }

    /// The number of in-place writes so far.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Relaxed)
    }

    /// The device holding the buffer.
    pub fn device(&self) -> &Device {
        &self.device
    }
}

/// The global lock order: storages are locked in increasing address order.
#[inline]
fn order_key(s: &Storage) -> usize {
    s as *const Storage as usize
}

/// Whether [`lock_in_order`] takes a storage for reading or writing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// Shared access.
    Read,
    /// Exclusive access (bumps the storage's version).
    Write,
}

/// A lock taken by [`lock_in_order`].
pub(crate) enum StorageGuard<'a> {
    /// A shared lock.
    Read(RwLockReadGuard<'a, OwnedBuffer>),
    /// An exclusive lock.
    Write(RwLockWriteGuard<'a, OwnedBuffer>),
}

impl std::ops::Deref for StorageGuard<'_> {
    type Target = OwnedBuffer;
    fn deref(&self) -> &OwnedBuffer {
        match self {
            StorageGuard::Read(g) => g,
            StorageGuard::Write(g) => g,
        }
    }
}

impl StorageGuard<'_> {
    /// The buffer of an exclusive lock; `None` for a shared one.
    pub(crate) fn as_mut(&mut self) -> Option<&mut OwnedBuffer> {
        match self {
            StorageGuard::Read(_) => None,
            StorageGuard::Write(g) => Some(&mut **g),
        }
    }
}

/// Locks several storages at once in the one global order (increasing address), so
/// that any two threads locking overlapping sets, in any roles, can't deadlock. Every
/// op that holds more than one storage lock takes them this way (or through
/// [`Storage::write_read`] / [`Storage::read2`], which follow the same order).
///
/// A storage may appear several times for reading (it is locked once per request,
/// recursively, which never waits behind a queued writer); it must not appear twice
/// when one of the requests is a write.
///
pub(crate) fn lock_in_order<'a, const N: usize>(reqs: [(&'a Storage, Access); N]) -> [StorageGuard<'a>; N] {
    let mut order: [usize; N] = std::array::from_fn(|i| i);
    let mut out: [Option<StorageGuard<'a>>; N] = std::array::from_fn(|_| None);
    lock_into(&reqs, &mut order, &mut out);
    out.map(|g| g.expect("every request was locked"))
}

/// [`lock_in_order`] for a number of storages known only at run time.
pub(crate) fn lock_all<'a>(reqs: &[(&'a Storage, Access)]) -> Vec<StorageGuard<'a>> {
    let mut order: Vec<usize> = (0..reqs.len()).collect();
    let mut out: Vec<Option<StorageGuard<'a>>> = (0..reqs.len()).map(|_| None).collect();
    lock_into(reqs, &mut order, &mut out);
    out.into_iter().map(|g| g.expect("every request was locked")).collect()
}

fn lock_into<'a>(reqs: &[(&'a Storage, Access)], order: &mut [usize], out: &mut [Option<StorageGuard<'a>>]) {
    order.sort_unstable_by_key(|&i| order_key(reqs[i].0));
    let mut prev: Option<(&Storage, Access)> = None;
    for &i in order.iter() {
        let (s, access): (&'a Storage, Access) = reqs[i];
        let again = prev.is_some_and(|(p, _)| std::ptr::eq(p, s));
        debug_assert!(
            !(again && (access == Access::Write || prev.is_some_and(|(_, a)| a == Access::Write))),
            "lock_in_order: a storage written must appear once"
        );
        out[i] = Some(match access {
            Access::Write => StorageGuard::Write(s.write()),
            Access::Read if again => StorageGuard::Read(s.buf.read_recursive()),
            Access::Read => StorageGuard::Read(s.buf.read()),
        });
        prev = Some((s, access));
    }
}

impl fmt::Debug for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Storage({}, v{})", self.device, self.version())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_handle_and_a_cpu_backend_handle_are_one_device() {
        let a = Device::cpu();
        let b = Device::from_backend(CpuBackend::shared());
        assert!(a == b, "cpu() == from_backend(cpu)");
        assert!(b == a, "from_backend(cpu) == cpu()");
        assert!(a == a.clone(), "a clone is the same device");
        assert_eq!((a.location(), b.location()), (DeviceLocation::Cpu, DeviceLocation::Cpu));
        assert!(a.is_cpu() && !a.is_cuda());
        // Both reach the same backend, which serves allocations.
        let buf = a.backend().zeros(crate::DType::F32, 3).unwrap();
        assert_eq!((buf.len(), buf.dtype()), (3, crate::DType::F32));
        assert_eq!(a.backend_arc().location(), DeviceLocation::Cpu);
    }
}
