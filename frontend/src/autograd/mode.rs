//! Thread-local autograd modes: `no_grad`, `enable_grad`, `set_grad_enabled`, `inference_mode`.
//! Each returns an RAII guard that restores the previous mode when dropped, so modes nest.

use std::cell::Cell;
use std::marker::PhantomData;

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
    static INFERENCE: Cell<bool> = const { Cell::new(false) };
}

/// Whether ops record gradients on this thread now.
pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(|g| g.get())
}

/// Whether this thread is in inference mode.
pub fn is_inference_mode_enabled() -> bool {
    INFERENCE.with(|g| g.get())
}

/// Restores the previous grad mode (and inference mode) when dropped. Not `Send`: a mode belongs
/// to the thread that set it.
#[must_use = "the mode ends when the guard is dropped"]
pub struct GradModeGuard {
    prev_grad: bool,
    prev_inference: bool,
    _not_send: PhantomData<*const ()>,
}

impl Drop for GradModeGuard {
    fn drop(&mut self) {
        GRAD_ENABLED.with(|g| g.set(self.prev_grad));
        INFERENCE.with(|g| g.set(self.prev_inference));
    }
}

fn set_modes(grad: bool, inference: bool) -> GradModeGuard {
    let guard = GradModeGuard {
        prev_grad: is_grad_enabled(),
        prev_inference: is_inference_mode_enabled(),
        _not_send: PhantomData,
    };
    GRAD_ENABLED.with(|g| g.set(grad));
    INFERENCE.with(|g| g.set(inference));
    guard
}

/// Sets whether ops record gradients until the guard drops (PyTorch's `torch.set_grad_enabled`).
///
/// ```
/// use kiln_frontend::{set_grad_enabled, is_grad_enabled};
/// {
///     let _g = set_grad_enabled(false);
///     assert!(!is_grad_enabled());
/// }
/// assert!(is_grad_enabled());
/// ```
pub fn set_grad_enabled(enabled: bool) -> GradModeGuard {
    set_modes(enabled, is_inference_mode_enabled())
}

/// Disables gradient recording until the guard drops (`with torch.no_grad():`).
///
/// ```
/// use kiln_frontend::{no_grad, Tensor};
/// let w = Tensor::ones(&[2]).requires_grad_(true);
/// let y = {
///     let _g = no_grad();
///     &w * 2.0
/// };
/// assert!(!y.requires_grad());
/// ```
pub fn no_grad() -> GradModeGuard {
    set_grad_enabled(false)
}

/// Re-enables gradient recording inside a `no_grad` region until the guard drops.
pub fn enable_grad() -> GradModeGuard {
    set_grad_enabled(true)
}

/// Inference mode (`torch.inference_mode()`): no recording, and tensors created here are
/// inference tensors, which cannot later be saved for backward.
pub fn inference_mode() -> GradModeGuard {
    set_modes(false, true)
}
