//! The CUDA device: driver discovery that never panics, the [`CudaBackend`] with its
//! stream, kernel modules and cuBLAS handle, and [`CudaBuffer`].

use std::any::Any;
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use cudarc::driver::sys::CUresult;
use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr, DriverError, LaunchConfig,
};
use parking_lot::Mutex;
use tensor_core::{Buffer, DType, Device, Error, Result};

/// The committed PTX of `kernels/*.cu` (see `cargo xtask ptx`).
pub(crate) const MODULES: [(&str, &str); 4] = [
    ("elementwise", include_str!("../ptx/elementwise.ptx")),
    ("reduce", include_str!("../ptx/reduce.ptx")),
    ("index", include_str!("../ptx/index.ptx")),
    ("optim", include_str!("../ptx/optim.ptx")),
];

/// A device allocation of `len` elements of one dtype (stored as raw bytes).
pub struct CudaBuffer {
    pub(crate) data: CudaSlice<u8>,
    pub(crate) dtype: DType,
    pub(crate) len: usize,
    pub(crate) ordinal: usize,
}

impl std::fmt::Debug for CudaBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaBuffer(cuda:{}, {}, {} elements)", self.ordinal, self.dtype, self.len)
    }
}

impl Buffer for CudaBuffer {
    fn dtype(&self) -> DType {
        self.dtype
    }
    fn len(&self) -> usize {
        self.len
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// A cuBLAS handle; cuBLAS handles may be used from any thread but not concurrently,
/// so it sits behind a mutex.
pub(crate) struct Blas(pub(crate) cudarc::cublas::CudaBlas);
// SAFETY: the handle is only used while holding the backend's mutex.
unsafe impl Send for Blas {}

/// The backend of one CUDA device: a context, one stream every op is queued on (so
/// ops are ordered and allocations are stream-ordered), the kernel modules (loaded on
/// first use) and a cuBLAS handle (created on first matmul).
pub struct CudaBackend {
    pub(crate) ordinal: usize,
    pub(crate) ctx: Arc<CudaContext>,
    pub(crate) stream: Arc<CudaStream>,
    modules: Mutex<HashMap<&'static str, Arc<CudaModule>>>,
    functions: Mutex<HashMap<String, CudaFunction>>,
    pub(crate) blas: Mutex<Option<Blas>>,
    pub(crate) allow_tf32: AtomicBool,
    pub(crate) sm_count: u32,
}

impl std::fmt::Debug for CudaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaBackend(cuda:{})", self.ordinal)
    }
}

/// The error for a failed driver call.
pub(crate) fn driver_err(what: &str, e: DriverError) -> Error {
    Error::Backend { backend: "cuda".into(), msg: format!("{what}: {e:?}") }
}

/// Runs `f`, turning a panic inside the CUDA bindings (missing library or symbol) into
/// an error.
pub(crate) fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Err(Error::Backend { backend: "cuda".into(), msg: format!("{what}: {msg}") })
        }
    }
}

/// Checks that a CUDA driver library can be loaded, without letting the bindings panic.
fn driver_present() -> Result<()> {
    // Our own dlopen first: the usual soname of the driver library.
    // SAFETY: loading the NVIDIA driver library runs its initialisers, nothing else.
    let ours = ["libcuda.so.1", "libcuda.so"].iter().any(|n| unsafe { libloading::Library::new(*n) }.is_ok());
    // SAFETY: is_culib_present only tries to dlopen the candidate names.
    let theirs = guarded("looking for libcuda", || Ok(unsafe { cudarc::driver::sys::is_culib_present() }))?;
    if ours || theirs {
        Ok(())
    } else {
        Err(Error::Backend {
            backend: "cuda".into(),
            msg: "no CUDA driver: libcuda.so.1 could not be loaded (no NVIDIA driver installed?)".into(),
        })
    }
}

/// Number of CUDA devices; 0 when there is no driver or no GPU (never panics).
pub fn device_count() -> usize {
    if driver_present().is_err() {
        return 0;
    }
    guarded("cuDeviceGetCount", || CudaContext::device_count().map_err(|e| driver_err("cuDeviceGetCount", e)))
        .map(|n| n.max(0) as usize)
        .unwrap_or(0)
}

/// True when at least one CUDA device can be used.
pub fn cuda_is_available() -> bool {
    device_count() > 0
}

static DEVICES: Mutex<Option<HashMap<usize, Arc<CudaBackend>>>> = Mutex::new(None);

/// The CUDA device `ordinal` (one shared backend per ordinal). Errors, never panics,
/// when there is no driver, no such device, or the driver is too old for the bindings.
///
/// ```
/// use tensor_cuda::cuda_device;
/// match cuda_device(0) {
///     Ok(dev) => assert!(dev.is_cuda()),
///     Err(e) => println!("no GPU here: {e}"),
/// }
/// ```
pub fn cuda_device(ordinal: usize) -> Result<Device> {
    Ok(Device::from_backend(cuda_backend(ordinal)?))
}

/// The shared backend of device `ordinal` (see [`cuda_device`]).
pub fn cuda_backend(ordinal: usize) -> Result<Arc<CudaBackend>> {
    let mut reg = DEVICES.lock();
    let map = reg.get_or_insert_with(HashMap::new);
    if let Some(b) = map.get(&ordinal) {
        return Ok(b.clone());
    }
    let b = Arc::new(CudaBackend::new(ordinal)?);
    map.insert(ordinal, b.clone());
    Ok(b)
}

impl CudaBackend {
    fn new(ordinal: usize) -> Result<CudaBackend> {
        driver_present()?;
        let n =
            guarded("cuDeviceGetCount", || CudaContext::device_count().map_err(|e| driver_err("cuDeviceGetCount", e)))?;
        if ordinal >= n.max(0) as usize {
            return Err(Error::arg("cuda_device", format!("CUDA device {ordinal} requested but {n} device(s) found")));
        }
        guarded("creating the CUDA context", || {
            let ctx = CudaContext::new(ordinal).map_err(|e| driver_err("cuCtxCreate", e))?;
            // Every op is queued on one stream, so cudarc's per-buffer events are not needed.
            // SAFETY: no buffer has been created on this context yet.
            unsafe { ctx.disable_event_tracking() };
            let stream = ctx.new_stream().map_err(|e| driver_err("cuStreamCreate", e))?;
            set_pool_release_threshold(&ctx, u64::MAX);
            let sm_count = ctx
                .attribute(cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
                .map(|v| v.max(1) as u32)
                .unwrap_or(80);
            Ok(CudaBackend {
                ordinal,
                ctx,
                stream,
                modules: Mutex::new(HashMap::new()),
                functions: Mutex::new(HashMap::new()),
                blas: Mutex::new(None),
                allow_tf32: AtomicBool::new(false),
                sm_count,
            })
        })
    }

    /// The device ordinal.
    pub fn ordinal(&self) -> usize {
        self.ordinal
    }

    /// Allows (or forbids, the default) TF32 tensor-core math in f32 matmuls on this
    /// device, like `torch.backends.cuda.matmul.allow_tf32`.
    pub fn set_allow_tf32(&self, allow: bool) {
        self.allow_tf32.store(allow, Ordering::Relaxed);
    }

    /// Whether f32 matmuls may use TF32.
    pub fn allow_tf32(&self) -> bool {
        self.allow_tf32.load(Ordering::Relaxed)
    }

    /// The device's name as the driver reports it.
    pub fn name(&self) -> Result<String> {
        self.ctx.name().map_err(|e| driver_err("cuDeviceGetName", e))
    }

    /// `"cuda:N"`.
    pub(crate) fn dev_name(&self) -> String {
        format!("cuda:{}", self.ordinal)
    }

    pub(crate) fn bind(&self) -> Result<()> {
        self.ctx.bind_to_thread().map_err(|e| driver_err("cuCtxSetCurrent", e))
    }

    /// Maps a driver error; out-of-memory becomes [`Error::OutOfMemory`].
    pub(crate) fn err(&self, what: &str, e: DriverError, bytes: usize) -> Error {
        if e.0 == CUresult::CUDA_ERROR_OUT_OF_MEMORY {
            Error::OutOfMemory { device: self.dev_name(), bytes }
        } else {
            driver_err(what, e)
        }
    }

    /// A new uninitialised buffer (stream-ordered allocation).
    pub(crate) fn alloc(&self, dtype: DType, len: usize) -> Result<CudaBuffer> {
        self.bind()?;
        let bytes = len * dtype.size_in_bytes();
        // SAFETY: the memory is written by a kernel or copy before anything reads it.
        let data = match unsafe { self.stream.alloc::<u8>(bytes.max(1)) } {
            Ok(d) => d,
            Err(e) if e.0 == CUresult::CUDA_ERROR_OUT_OF_MEMORY => {
                // The pool keeps freed memory (see `set_pool_release_threshold`): give it
                // back to the driver and try once more before reporting OOM.
                self.empty_cache()?;
                unsafe { self.stream.alloc::<u8>(bytes.max(1)) }.map_err(|e| self.err("cuMemAllocAsync", e, bytes))?
            }
            Err(e) => return Err(self.err("cuMemAllocAsync", e, bytes)),
        };
        Ok(CudaBuffer { data, dtype, len, ordinal: self.ordinal })
    }

    /// Returns the memory that freed tensors left in this device's pool to the driver
    /// (like `torch.cuda.empty_cache()`), after the queued work finishes.
    pub fn empty_cache(&self) -> Result<()> {
        self.sync()?;
        let mut pool: cudarc::driver::sys::CUmemoryPool = std::ptr::null_mut();
        // SAFETY: plain driver calls on this context's device with a valid out-pointer.
        let r = unsafe {
            match cudarc::driver::sys::cuDeviceGetDefaultMemPool(&mut pool, self.ctx.cu_device()) {
                CUresult::CUDA_SUCCESS => cudarc::driver::sys::cuMemPoolTrimTo(pool, 0),
                e => e,
            }
        };
        match r {
            CUresult::CUDA_SUCCESS => Ok(()),
            e => Err(driver_err("cuMemPoolTrimTo", cudarc::driver::DriverError(e))),
        }
    }

    /// A new zero-filled buffer.
    pub(crate) fn alloc_zeros(&self, dtype: DType, len: usize) -> Result<CudaBuffer> {
        let mut b = self.alloc(dtype, len)?;
        self.stream.memset_zeros(&mut b.data).map_err(|e| driver_err("cuMemsetD8Async", e))?;
        Ok(b)
    }

    /// Device address of element `elem` of `b`.
    pub(crate) fn ptr(&self, b: &CudaBuffer, elem: usize) -> u64 {
        let (p, _sync) = b.data.device_ptr(&self.stream);
        p + (elem * b.dtype.size_in_bytes()) as u64
    }

    /// Downcasts a buffer that must live on this device.
    pub(crate) fn buf<'a>(&self, op: &'static str, b: &'a dyn Buffer) -> Result<&'a CudaBuffer> {
        match b.as_any().downcast_ref::<CudaBuffer>() {
            Some(c) if c.ordinal == self.ordinal => Ok(c),
            Some(c) => Err(Error::DeviceMismatch { op, lhs: self.dev_name(), rhs: format!("cuda:{}", c.ordinal) }),
            None => Err(Error::DeviceMismatch { op, lhs: self.dev_name(), rhs: format!("{b:?}") }),
        }
    }

    /// Mutable variant of [`CudaBackend::buf`].
    pub(crate) fn buf_mut<'a>(&self, op: &'static str, b: &'a mut dyn Buffer) -> Result<&'a mut CudaBuffer> {
        let desc = format!("{b:?}");
        match b.as_any_mut().downcast_mut::<CudaBuffer>() {
            Some(c) if c.ordinal == self.ordinal => Ok(c),
            Some(c) => Err(Error::DeviceMismatch { op, lhs: self.dev_name(), rhs: format!("cuda:{}", c.ordinal) }),
            None => Err(Error::DeviceMismatch { op, lhs: self.dev_name(), rhs: desc }),
        }
    }

    /// The kernel `name` of module `module` (loaded and cached on first use).
    pub(crate) fn func(&self, module: &'static str, name: &str) -> Result<CudaFunction> {
        if let Some(f) = self.functions.lock().get(name) {
            return Ok(f.clone());
        }
        let m = {
            let mut mods = self.modules.lock();
            match mods.get(module) {
                Some(m) => m.clone(),
                None => {
                    let src = MODULES.iter().find(|(n, _)| *n == module).map(|(_, s)| *s).ok_or_else(|| {
                        Error::Backend { backend: "cuda".into(), msg: format!("no kernel module {module}") }
                    })?;
                    self.bind()?;
                    let m = self
                        .ctx
                        .load_module(cudarc::nvrtc::Ptx::from_src(src))
                        .map_err(|e| driver_err(&format!("loading the PTX of {module}"), e))?;
                    mods.insert(module, m.clone());
                    m
                }
            }
        };
        let f = m.load_function(name).map_err(|e| driver_err(&format!("kernel {name} in {module}"), e))?;
        self.functions.lock().insert(name.to_string(), f.clone());
        Ok(f)
    }

    /// A 1-D grid-stride launch configuration for `n` items.
    pub(crate) fn cfg(&self, n: usize) -> LaunchConfig {
        let threads = 256u32;
        let blocks = n.div_ceil(threads as usize).clamp(1, (self.sm_count as usize) * 32) as u32;
        LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (threads, 1, 1), shared_mem_bytes: 0 }
    }

    /// Waits for every queued op of this device.
    pub fn sync(&self) -> Result<()> {
        self.bind()?;
        self.stream.synchronize().map_err(|e| driver_err("cuStreamSynchronize", e))
    }
}

/// Lets the device's default memory pool keep up to `bytes` of freed memory across
/// synchronisations (its default is 0: everything freed goes back to the driver at each
/// sync, and the next allocation maps fresh pages). With the maximum, a steady-state
/// loop reuses its memory as PyTorch's caching allocator does;
/// [`CudaBackend::empty_cache`] returns it. Best effort: a failure leaves the default.
fn set_pool_release_threshold(ctx: &Arc<CudaContext>, bytes: u64) {
    use cudarc::driver::sys;
    let mut pool: sys::CUmemoryPool = std::ptr::null_mut();
    let mut value = bytes;
    // SAFETY: driver calls with valid out-pointers; the attribute takes a u64.
    unsafe {
        if sys::cuDeviceGetDefaultMemPool(&mut pool, ctx.cu_device()) == CUresult::CUDA_SUCCESS {
            let _ = sys::cuMemPoolSetAttribute(
                pool,
                sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
                &mut value as *mut u64 as *mut std::ffi::c_void,
            );
        }
    }
}

/// A CUDA event recorded on a device's stream (timing enabled), for the profiler.
#[derive(Debug)]
pub struct CudaTimingEvent(cudarc::driver::CudaEvent);

impl tensor_core::DeviceEvent for CudaTimingEvent {
    fn elapsed_ns_since(&self, start: &dyn tensor_core::DeviceEvent) -> Result<u64> {
        let start = start.as_any().downcast_ref::<CudaTimingEvent>().ok_or_else(|| Error::Backend {
            backend: "cuda".into(),
            msg: "elapsed time between events of different devices".into(),
        })?;
        let ms = start.0.elapsed_ms(&self.0).map_err(|e| driver_err("cuEventElapsedTime", e))?;
        Ok((ms.max(0.0) as f64 * 1e6) as u64)
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl CudaBackend {
    /// Records a timing event at the current end of this device's stream.
    pub fn timing_event(&self) -> Result<CudaTimingEvent> {
        self.bind()?;
        self.stream
            .record_event(Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT))
            .map(CudaTimingEvent)
            .map_err(|e| driver_err("cuEventRecord", e))
    }
}

/// `Device::cuda(ordinal)` for tensor-core's [`Device`].
pub trait CudaDeviceExt: Sized {
    /// The CUDA device `ordinal`; see [`cuda_device`].
    fn cuda(ordinal: usize) -> Result<Self>;
}

impl CudaDeviceExt for Device {
    fn cuda(ordinal: usize) -> Result<Device> {
        cuda_device(ordinal)
    }
}
