//! Where and in what dtype new layers create their parameters and buffers: PyTorch's
//! `device=`/`dtype=` factory arguments and its `with torch.device(...)` scope, for
//! every layer at once.

use std::cell::RefCell;

use tensor_core::{default_dtype, DType, Device, Error, Result};

thread_local! {
    static SCOPES: RefCell<Vec<Factory>> = const { RefCell::new(Vec::new()) };
}

/// A dtype and a device for the layers built inside [`Factory::build`]; a field left
/// `None` falls back to the enclosing `build` and then to the defaults: the process-wide
/// [`tensor_core::default_dtype`] (F32 unless [`tensor_core::set_default_dtype`]
/// changed it) and the CPU.
///
/// Layers draw their initial values exactly as they would on the CPU in F32 and then
/// convert, so a model built in F64 or on a GPU starts from the same values (to the
/// precision of the dtype) as its F32 CPU twin seeded alike.
///
/// ```
/// use nn::{Factory, Linear, Module};
/// use tensor_core::{DType, Device};
///
/// // nn.Linear(3, 2, dtype=torch.float64, device=...)
/// let dev = Device::cpu(); // or Device::cuda(0)?
/// let fc = Factory::new().dtype(DType::F64).device(&dev).build(|| Linear::new(3, 2, true))?;
/// assert_eq!(fc.weight.tensor().dtype(), DType::F64);
/// // Outside `build`, the defaults apply again.
/// assert_eq!(Linear::new(3, 2, true)?.weight.tensor().dtype(), DType::F32);
/// # Ok::<(), tensor_core::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Factory {
    /// The float dtype of parameters and float buffers.
    pub dtype: Option<DType>,
    /// The device of parameters and buffers.
    pub device: Option<Device>,
}

impl Factory {
    /// No overrides: the enclosing scope's choices, else the defaults.
    pub fn new() -> Factory {
        Factory::default()
    }

    /// Sets the dtype (a float dtype; [`Factory::build`] refuses others).
    pub fn dtype(mut self, dtype: DType) -> Factory {
        self.dtype = Some(dtype);
        self
    }

    /// Sets the device.
    pub fn device(mut self, device: &Device) -> Factory {
        self.device = Some(device.clone());
        self
    }

    /// Runs `f` with this factory in force on the current thread: every layer `f`
    /// builds creates its parameters and buffers with this dtype and on this device.
    /// Scopes nest; the previous one is restored when `f` returns or fails.
    pub fn build<M>(&self, f: impl FnOnce() -> Result<M>) -> Result<M> {
        if let Some(d) = self.dtype {
            if !d.is_float() {
                return Err(Error::arg("Factory::build", format!("layers need a floating point dtype, got {d}")));
            }
        }
        struct Pop;
        impl Drop for Pop {
            fn drop(&mut self) {
                SCOPES.with(|s| s.borrow_mut().pop());
            }
        }
        SCOPES.with(|s| s.borrow_mut().push(self.clone()));
        let _pop = Pop;
        f()
    }

    /// The dtype and device a layer built now would use.
    pub fn current() -> (DType, Device) {
        SCOPES.with(|s| {
            let s = s.borrow();
            let dtype = s.iter().rev().find_map(|f| f.dtype).unwrap_or_else(default_dtype);
            let device = s.iter().rev().find_map(|f| f.device.clone()).unwrap_or_else(Device::cpu);
            (dtype, device)
        })
    }
}
