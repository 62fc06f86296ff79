//! The [`Module`] trait: PyTorch's `nn.Module` as a Rust trait.

use crate::error::Result;
use crate::tensor::Tensor;

/// A layer or model: a `forward` function plus the parameters it owns.
///
/// Implementors write [`forward`](Module::forward), list their own and their children's
/// parameters in [`named_parameters`](Module::named_parameters) (children's names prefixed
/// with `"child."`, as PyTorch's `state_dict` keys are), and, if they behave differently when
/// training, keep the flag set by [`set_training`](Module::set_training) and forward it to
/// their children. Everything else is provided.
///
/// Parameters are leaf tensors that require grad; the handles returned are the module's own
/// (a `Tensor` clone shares its value), so an optimiser built from `parameters()` updates the
/// module in place.
///
/// ```
/// use kiln_frontend::nn::{Linear, Module};
/// use kiln_frontend::{Result, Tensor};
///
/// /// y = tanh(W₂ tanh(W₁ x)), a module made of two others.
/// struct TwoLayer { a: Linear, b: Linear }
/// impl Module for TwoLayer {
///     fn forward(&self, x: &Tensor) -> Result<Tensor> {
///         Ok(self.b.forward(&self.a.forward(x)?.tanh())?.tanh())
///     }
///     fn named_parameters(&self) -> Vec<(String, Tensor)> {
///         let mut p = kiln_frontend::nn::Module::prefixed(&self.a, "a");
///         p.extend(self.b.prefixed("b"));
///         p
///     }
/// }
///
/// let m = TwoLayer { a: Linear::new(3, 5), b: Linear::new(5, 1) };
/// assert_eq!(m.parameters().len(), 4);
/// assert_eq!(m.named_parameters()[2].0, "b.weight");
/// m.requires_grad_(false); // freeze
/// assert!(m.parameters().iter().all(|p| !p.requires_grad()));
/// ```
pub trait Module {
    /// Applies the module to `input`.
    fn forward(&self, input: &Tensor) -> Result<Tensor>;

    /// The parameters with their dotted names (`"0.weight"`, `"encoder.bias"`), in registration
    /// order. Modules without parameters keep the default (none).
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }

    /// Switches training mode on or off (what [`train`](Module::train) and
    /// [`eval`](Module::eval) call). Modules whose `forward` depends on it, and containers, must
    /// implement it; the default ignores it.
    fn set_training(&mut self, _training: bool) {}

    /// The parameters, in the order of [`named_parameters`](Module::named_parameters).
    fn parameters(&self) -> Vec<Tensor> {
        self.named_parameters().into_iter().map(|(_, p)| p).collect()
    }

    /// The named parameters with `prefix.` in front of each name (for containers).
    fn prefixed(&self, prefix: &str) -> Vec<(String, Tensor)> {
        self.named_parameters().into_iter().map(|(n, p)| (format!("{prefix}.{n}"), p)).collect()
    }

    /// Training mode: e.g. [`Dropout`](super::Dropout) drops.
    fn train(&mut self) {
        self.set_training(true)
    }

    /// Evaluation mode: e.g. [`Dropout`](super::Dropout) is the identity.
    fn eval(&mut self) {
        self.set_training(false)
    }

    /// Sets `requires_grad` on every parameter (`false` freezes the module).
    fn requires_grad_(&self, requires_grad: bool) {
        for p in self.parameters() {
            p.set_requires_grad(requires_grad).expect("parameters are float leaves");
        }
    }

    /// Clears every parameter's gradient (`set_to_none`, PyTorch ≥ 2.0's default).
    fn zero_grad(&self) {
        for p in self.parameters() {
            p.set_grad(None).expect("clearing a gradient cannot fail");
        }
    }

    /// The total number of parameter elements.
    fn num_parameters(&self) -> usize {
        self.parameters().iter().map(Tensor::numel).sum()
    }
}

impl<M: Module + ?Sized> Module for Box<M> {
    fn forward(&self, input: &Tensor) -> Result<Tensor> {
        (**self).forward(input)
    }
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        (**self).named_parameters()
    }
    fn set_training(&mut self, training: bool) {
        (**self).set_training(training)
    }
}
