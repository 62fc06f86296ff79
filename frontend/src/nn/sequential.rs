//! `Sequential`: modules applied one after another.

use super::Module;
use crate::error::Result;
use crate::tensor::Tensor;

/// Applies its modules in order (PyTorch's `nn.Sequential`). Parameters are named by position:
/// `"0.weight"`, `"2.bias"`, ... — the keys PyTorch gives the same model.
///
/// ```
/// use kiln_frontend::nn::{Linear, Module, Sequential, Tanh};
/// let mut m = Sequential::new().append(Linear::new(2, 3)).append(Tanh);
/// assert_eq!(m.len(), 2);
/// m.eval();
/// assert!(!m.is_training());
/// ```
pub struct Sequential {
    layers: Vec<Box<dyn Module + Send + Sync>>,
    training: bool,
}

impl Sequential {
    pub fn new() -> Sequential {
        Sequential { layers: Vec::new(), training: true }
    }

    /// Appends a module and returns the container (builder style, like PyTorch's `append`).
    pub fn append<M: Module + Send + Sync + 'static>(mut self, module: M) -> Sequential {
        self.push(module);
        self
    }

    /// Appends a module.
    pub fn push<M: Module + Send + Sync + 'static>(&mut self, mut module: M) {
        module.set_training(self.training);
        self.layers.push(Box::new(module));
    }

    pub fn len(&self) -> usize {
        self.layers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// The `i`-th module.
    pub fn get(&self, i: usize) -> Option<&(dyn Module + Send + Sync)> {
        self.layers.get(i).map(|b| &**b)
    }

    pub fn is_training(&self) -> bool {
        self.training
    }
}

impl Default for Sequential {
    fn default() -> Sequential {
        Sequential::new()
    }
}

impl Module for Sequential {
    fn forward(&self, input: &Tensor) -> Result<Tensor> {
        let mut x = input.clone();
        for layer in &self.layers {
            x = layer.forward(&x)?;
        }
        Ok(x)
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        self.layers.iter().enumerate().flat_map(|(i, l)| l.prefixed(&i.to_string())).collect()
    }

    fn set_training(&mut self, training: bool) {
        self.training = training;
        for l in &mut self.layers {
            l.set_training(training);
        }
    }
}
