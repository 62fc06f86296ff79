//! `Dropout`: zeroes elements at random while training.

use super::Module;
use crate::error::{Error, Result};
use crate::ops::record::apply_composite;
use crate::random::with_rng;
use crate::tensor::Tensor;
use rand::Rng;

/// Zeroes each element with probability `p` in training mode and scales the survivors by
/// `1 / (1 - p)`, so the expected value is unchanged; the identity in evaluation mode
/// (PyTorch's `nn.Dropout`). The mask is drawn on the host from the generator
/// [`manual_seed`](crate::manual_seed) seeds and enters the graph as data, so a training step
/// keeps one structure (and one compiled kernel) whatever the mask.
///
/// ```
/// use kiln_frontend::nn::{Dropout, Module};
/// use kiln_frontend::Tensor;
/// let mut d = Dropout::new(0.5).unwrap();
/// let y = d.forward(&Tensor::ones(&[1000])).unwrap().to_vec_f64().unwrap();
/// assert!(y.iter().all(|&v| v == 0.0 || v == 2.0));
/// d.eval();
/// assert_eq!(d.forward(&Tensor::ones(&[3])).unwrap().to_vec_f64().unwrap(), vec![1.0; 3]);
/// assert!(Dropout::new(1.5).is_err());
/// ```
#[derive(Clone, Debug)]
pub struct Dropout {
    p: f64,
    training: bool,
}

impl Dropout {
    pub fn new(p: f64) -> Result<Dropout> {
        if !(0.0..=1.0).contains(&p) {
            return Err(Error::Op(format!("dropout probability has to be between 0 and 1, but got {p}")));
        }
        Ok(Dropout { p, training: true })
    }

    pub fn p(&self) -> f64 {
        self.p
    }

    pub fn is_training(&self) -> bool {
        self.training
    }
}

impl Module for Dropout {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if !self.training || self.p == 0.0 {
            return Ok(x.clone());
        }
        if !x.dtype().is_float() {
            return Err(Error::Op(format!("dropout: expected a floating point input, got {}", x.dtype())));
        }
        let scale = if self.p < 1.0 { 1.0 / (1.0 - self.p) } else { 0.0 };
        let mask: Vec<f64> = with_rng(|r| {
            (0..x.numel()).map(|_| if r.random::<f64>() >= self.p { scale } else { 0.0 }).collect()
        });
        let mask = Tensor::from_vec_typed(mask, x.shape(), x.dtype())?;
        apply_composite("NativeDropoutBackward0", &[x, &mask], |g, t| g.mul(t[0], t[1]))
    }

    fn set_training(&mut self, training: bool) {
        self.training = training;
    }
}
