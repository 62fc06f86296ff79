//! `LayerNorm`.

use super::{functional, Module};
use crate::error::Result;
use crate::tensor::Tensor;
use kiln_ir::DType;

/// Layer normalisation over the trailing `normalized_shape` dims with a learnable elementwise
/// affine (`weight` starts at ones, `bias` at zeros), PyTorch's `nn.LayerNorm` (eps `1e-5`,
/// biased variance).
///
/// ```
/// use kiln_frontend::nn::{LayerNorm, Module};
/// use kiln_frontend::Tensor;
/// let ln = LayerNorm::new(&[4]);
/// let y = ln.forward(&Tensor::arange(0.0, 8.0, 1.0).unwrap().reshape(&[2, 4]).unwrap()).unwrap();
/// let row: Vec<f64> = y.to_vec_f64().unwrap()[..4].to_vec();
/// assert!((row.iter().sum::<f64>()).abs() < 1e-5);
/// assert_eq!(ln.named_parameters()[0].0, "weight");
/// ```
pub struct LayerNorm {
    pub normalized_shape: Vec<usize>,
    pub eps: f64,
    /// `None` without elementwise affine.
    pub weight: Option<Tensor>,
    pub bias: Option<Tensor>,
}

impl LayerNorm {
    /// With elementwise affine, eps `1e-5`, f32.
    pub fn new(normalized_shape: &[usize]) -> LayerNorm {
        LayerNorm::with_options(normalized_shape, 1e-5, true, DType::F32)
    }

    pub fn with_options(
        normalized_shape: &[usize],
        eps: f64,
        elementwise_affine: bool,
        dtype: DType,
    ) -> LayerNorm {
        let param = |v| Tensor::full_typed(normalized_shape, v, dtype).requires_grad_(true);
        LayerNorm {
            normalized_shape: normalized_shape.to_vec(),
            eps,
            weight: elementwise_affine.then(|| param(1.0)),
            bias: elementwise_affine.then(|| param(0.0)),
        }
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        functional::layer_norm(x, &self.normalized_shape, self.weight.as_ref(), self.bias.as_ref(), self.eps)
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut p = Vec::new();
        p.extend(self.weight.clone().map(|w| ("weight".to_string(), w)));
        p.extend(self.bias.clone().map(|b| ("bias".to_string(), b)));
        p
    }
}
