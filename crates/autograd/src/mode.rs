//! Thread-local modes: grad mode (`no_grad`, `enable_grad`, [`NoGradGuard`]) and
//! anomaly detection.

use std::cell::Cell;

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
    static ANOMALY: Cell<bool> = const { Cell::new(false) };
}

/// True when ops on this thread record a graph (the default).
pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(|g| g.get())
}

/// Turns graph recording on or off for this thread; returns the previous setting.
pub fn set_grad_enabled(enabled: bool) -> bool {
    GRAD_ENABLED.with(|g| g.replace(enabled))
}

/// Restores the previous grad mode when dropped.
///
/// ```
/// use autograd::{is_grad_enabled, GradModeGuard};
/// {
///     let _g = GradModeGuard::new(false);
///     assert!(!is_grad_enabled());
/// }
/// assert!(is_grad_enabled());
/// ```
#[must_use = "the mode is restored when the guard is dropped"]
pub struct GradModeGuard {
    prev: bool,
}

impl GradModeGuard {
    /// Sets grad mode to `enabled` until the guard is dropped.
    pub fn new(enabled: bool) -> Self {
        GradModeGuard { prev: set_grad_enabled(enabled) }
    }
}

impl Drop for GradModeGuard {
    fn drop(&mut self) {
        set_grad_enabled(self.prev);
    }
}

/// A guard that disables graph recording until dropped (PyTorch's `torch.no_grad()`
/// as a context manager).
#[must_use = "grad mode is restored when the guard is dropped"]
pub struct NoGradGuard {
    _guard: GradModeGuard,
}

impl NoGradGuard {
    /// Disables recording on this thread until the guard is dropped.
    pub fn new() -> Self {
        NoGradGuard { _guard: GradModeGuard::new(false) }
    }
}

impl Default for NoGradGuard {
    fn default() -> Self {
        NoGradGuard::new()
    }
}

/// Runs `f` with graph recording disabled: ops inside record nothing.
///
/// ```
/// use autograd::{no_grad, Var};
/// use tensor_core::Tensor;
/// let w = Var::param(Tensor::new(&[1.0f32, 2.0]))?;
/// let y = no_grad(|| w.mul_scalar(2.0))?;
/// assert!(!y.requires_grad());
/// # Ok::<(), tensor_core::Error>(())
/// ```
pub fn no_grad<R>(f: impl FnOnce() -> R) -> R {
    let _g = GradModeGuard::new(false);
    f()
}

/// Runs `f` with graph recording enabled (inside a `no_grad` region, for example).
pub fn enable_grad<R>(f: impl FnOnce() -> R) -> R {
    let _g = GradModeGuard::new(true);
    f()
}

/// True while anomaly detection is on for this thread.
pub fn is_anomaly_enabled() -> bool {
    ANOMALY.with(|a| a.get())
}

/// Runs `f` with anomaly detection: the first backward function that produces a NaN
/// or infinite gradient makes the backward fail with an error naming that op
/// (PyTorch's `torch.autograd.detect_anomaly()`). Slow: every gradient is checked.
pub fn detect_anomaly<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            ANOMALY.with(|a| a.set(self.0));
        }
    }
    let _r = Restore(ANOMALY.with(|a| a.replace(true)));
    f()
}
