//! `Linear`: `y = x Wᵀ + b`.

use super::{functional, init, Module};
use crate::error::Result;
use crate::tensor::Tensor;
use kiln_ir::DType;

/// A fully connected layer (PyTorch's `nn.Linear`): `weight` is `[out, in]`, `bias` `[out]`.
/// Both start like PyTorch's: weight kaiming-uniform with `a = √5`, i.e.
/// `U(-1/√in, 1/√in)`, and bias `U(-1/√in, 1/√in)`.
///
/// ```
/// use kiln_frontend::nn::{Linear, Module};
/// let l = Linear::new(3, 2);
/// assert_eq!(l.weight.shape(), &[2, 3]);
/// assert_eq!(l.forward(&kiln_frontend::Tensor::ones(&[5, 3])).unwrap().shape(), &[5, 2]);
/// ```
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl Linear {
    /// An f32 layer with a bias.
    pub fn new(in_features: usize, out_features: usize) -> Linear {
        Linear::with_options(in_features, out_features, true, DType::F32)
    }

    /// A layer with or without a bias, of float `dtype`.
    pub fn with_options(in_features: usize, out_features: usize, bias: bool, dtype: DType) -> Linear {
        let weight = init::kaiming_uniform(&[out_features, in_features], 5f64.sqrt(), dtype)
            .expect("a 2-D shape has fans")
            .requires_grad_(true);
        let bound = if in_features > 0 { 1.0 / (in_features as f64).sqrt() } else { 0.0 };
        let bias = bias.then(|| init::uniform(&[out_features], -bound, bound, dtype).requires_grad_(true));
        Linear { weight, bias }
    }

    pub fn in_features(&self) -> usize {
        self.weight.shape()[1]
    }

    pub fn out_features(&self) -> usize {
        self.weight.shape()[0]
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        functional::linear(x, &self.weight, self.bias.as_ref())
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut p = vec![("weight".to_string(), self.weight.clone())];
        p.extend(self.bias.clone().map(|b| ("bias".to_string(), b)));
        p
    }
}
