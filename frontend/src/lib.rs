//! # kiln-frontend
//!
//! The Tensor API with PyTorch's autograd semantics. A [`Tensor`] is a cheap handle to a lazily
//! computed value; ops record into a DAG that is lowered to `kiln_ir` graphs and run on the
//! current backend when a value is needed. Autograd (`backward`, [`autograd::grad`], hooks,
//! modes, custom functions) follows PyTorch, with its messages.
//!
//! ```
//! use kiln_frontend::Tensor;
//! let x = Tensor::ones(&[2, 2]).requires_grad_(true);
//! let y = &x + 2.0;
//! let z = &y * &y * 3.0;
//! let out = z.mean();
//! out.backward().unwrap();
//! assert_eq!(x.grad().unwrap().to_vec_f64().unwrap(), vec![4.5; 4]);
//! ```

pub mod autograd;
mod backend;
mod creation;
mod device;
pub mod error;
mod expr;
pub mod nn;
mod ops;
pub mod optim;
mod print;
mod random;
mod tensor;
mod trace;

pub use autograd::mode::{
    enable_grad, inference_mode, is_grad_enabled, is_inference_mode_enabled, no_grad, set_grad_enabled,
    GradModeGuard,
};
pub use autograd::{GradFn, HookHandle};
pub use backend::{backend_name, set_backend};
pub use creation::{Element, TensorOptions};
pub use device::{device, set_device, Device};
pub use error::{Error, Result};
pub use kiln_codegen::{jit_stats, CacheStats};
pub use kiln_ir::DType;
pub use ops::record::apply_op;
pub use random::manual_seed;
pub use tensor::{realize, Tensor};
pub use trace::trace;
