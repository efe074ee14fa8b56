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
    pub fn read(&self) -> RwLockReadGuard<'_, OwnedBuffer> {
        self.buf.read()
    }

    /// Write access to the buffer; bumps the version.
    pub fn write(&self) -> RwLockWriteGuard<'_, OwnedBuffer> {
        self.version.fetch_add(1, Ordering::Relaxed);
        self.buf.write()
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
