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
pub struct Device(Arc<DeviceInner>);

struct DeviceInner {
    backend: Arc<dyn Backend>,
    /// The same backend with every primitive recorded, handed out while a
    /// [`crate::profiler::profile`] is being taken.
    profiled: Profiled,
}

static CPU_DEVICE: OnceLock<Device> = OnceLock::new();

impl Device {
    /// The host CPU.
    pub fn cpu() -> Device {
        CPU_DEVICE.get_or_init(|| Device::from_backend(CpuBackend::shared())).clone()
    }

    /// A device served by a backend implemented outside this crate (e.g. CUDA).
    pub fn from_backend(backend: Arc<dyn Backend>) -> Device {
        Device(Arc::new(DeviceInner { profiled: Profiled(backend.clone()), backend }))
    }

    /// The backend behind this device.
    #[inline]
    pub fn backend(&self) -> &dyn Backend {
        if crate::profiler::is_enabled() {
            &self.0.profiled
        } else {
            &*self.0.backend
        }
    }

    /// The backend as a shared handle.
    pub fn backend_arc(&self) -> Arc<dyn Backend> {
        self.0.backend.clone()
    }

    /// Where the device lives.
    pub fn location(&self) -> DeviceLocation {
        self.0.backend.location()
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
        self.0.backend.synchronize()
    }
}

impl Default for Device {
    fn default() -> Self {
        Device::cpu()
    }
}

impl PartialEq for Device {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.location() == other.location()
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
