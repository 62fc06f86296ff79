//! Optimisers (PyTorch's `torch.optim`): [`SGD`], [`Adam`], [`AdamW`].
//!
//! A step runs under `no_grad` and only records lazy tensor ops: the updates of every parameter
//! and of the optimiser's state are then computed together as one graph, so the compiler fuses
//! them and, because the step-dependent numbers (learning rate, bias corrections) enter as data
//! rather than constants, the graph has the same structure every step and is compiled once.
//!
//! ```
//! use kiln_frontend::nn::{functional::mse_loss, Linear, Module};
//! use kiln_frontend::optim::{Optimizer, SGD};
//! use kiln_frontend::Tensor;
//! let model = Linear::new(2, 1);
//! let mut opt = SGD::new(model.parameters(), 0.1).unwrap();
//! let (x, y) = (Tensor::ones(&[4, 2]), Tensor::full(&[4, 1], 3.0));
//! let first = mse_loss(&model.forward(&x).unwrap(), &y).unwrap().item().unwrap();
//! for _ in 0..20 {
//!     opt.zero_grad();
//!     mse_loss(&model.forward(&x).unwrap(), &y).unwrap().backward().unwrap();
//!     opt.step().unwrap();
//! }
//! assert!(mse_loss(&model.forward(&x).unwrap(), &y).unwrap().item().unwrap() < first / 100.0);
//! ```

mod adam;
mod sgd;

pub use adam::{Adam, AdamOptions, AdamW};
pub use sgd::{SgdOptions, SGD};

use crate::error::{Error, Result};
use crate::tensor::Tensor;
use kiln_ir::DType;

/// What every optimiser does.
pub trait Optimizer {
    /// Updates every parameter that has a gradient (parameters without one are skipped).
    fn step(&mut self) -> Result<()>;

    /// The parameters being optimised.
    fn params(&self) -> &[Tensor];

    /// The learning rate.
    fn lr(&self) -> f64;

    /// Changes the learning rate (for schedules). Takes effect at the next step without
    /// recompiling: the rate is an input of the update graph.
    fn set_lr(&mut self, lr: f64);

    /// Clears the parameters' gradients by setting them to `None` (PyTorch ≥ 2.0's default,
    /// `set_to_none=True`): the next backward writes fresh gradients instead of adding to
    /// zeros.
    fn zero_grad(&mut self) {
        for p in self.params() {
            p.set_grad(None).expect("clearing a gradient cannot fail");
        }
    }
}

/// Checks that every tensor can be optimised (float leaves), PyTorch's messages.
fn check_params(params: &[Tensor]) -> Result<()> {
    if params.is_empty() {
        return Err(Error::Op("optimizer got an empty parameter list".into()));
    }
    for (i, p) in params.iter().enumerate() {
        if !p.is_leaf() {
            return Err(Error::Op(format!("can't optimize a non-leaf Tensor (parameter {i})")));
        }
        if !p.dtype().is_float() {
            return Err(Error::Op(format!(
                "can't optimize parameter {i} of dtype {}: not a float",
                p.dtype()
            )));
        }
    }
    Ok(())
}

fn check(ok: bool, what: &str, v: f64) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(Error::Op(format!("Invalid {what}: {v}")))
    }
}

/// A 0-d computed tensor: it enters the update graph as an input, so its value can change from
/// step to step without changing the graph's structure (and its compiled code).
fn scalar_input(v: f64, dtype: DType) -> Tensor {
    Tensor::full_typed(&[], v, dtype)
}

/// A new tensor holding `t`'s current value but not sharing its storage: an in-place change
/// of `t` later (e.g. `grad.zero_()`) does not reach it.
fn snapshot(t: &Tensor) -> Tensor {
    Tensor::from_expr(t.expr())
}
