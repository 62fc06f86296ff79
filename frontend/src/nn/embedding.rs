//! `Embedding`: a lookup table of vectors.

use super::{init, Module};
use crate::error::{Error, Result};
use crate::ops::record::apply_composite;
use crate::tensor::Tensor;
use kiln_ir::{CompareOp, DType, Literal, Shape};

/// A table of `num_embeddings` vectors of size `embedding_dim`, indexed by i64 tensors of any
/// shape (PyTorch's `nn.Embedding`; `weight` starts `N(0, 1)`). The output has the indices'
/// shape followed by `embedding_dim`.
///
/// The IR has no gather op yet, so the lookup is a one-hot matrix times the table: its
/// gradient is the scatter-add PyTorch computes, at `O(indices · num_embeddings · dim)` cost —
/// right for small vocabularies.
///
/// ```
/// use kiln_frontend::nn::{Embedding, Module};
/// use kiln_frontend::Tensor;
/// let e = Embedding::new(10, 3);
/// let idx = Tensor::from_vec(vec![1i64, 4, 4, 9], &[2, 2]).unwrap();
/// assert_eq!(e.forward(&idx).unwrap().shape(), &[2, 2, 3]);
/// let err = e.forward(&Tensor::from_vec(vec![10i64], &[1]).unwrap()).unwrap_err();
/// assert!(err.to_string().contains("index 10 is out of range"), "{err}");
/// ```
pub struct Embedding {
    pub weight: Tensor,
}

impl Embedding {
    /// An f32 table drawn from `N(0, 1)`.
    pub fn new(num_embeddings: usize, embedding_dim: usize) -> Embedding {
        Embedding {
            weight: init::normal(&[num_embeddings, embedding_dim], 0.0, 1.0, DType::F32).requires_grad_(true),
        }
    }

    /// A table with the given `[num_embeddings, embedding_dim]` values (PyTorch's
    /// `from_pretrained(freeze=False)`).
    pub fn from_weight(weight: Tensor) -> Result<Embedding> {
        if weight.dim() != 2 || !weight.dtype().is_float() {
            return Err(Error::Op(format!(
                "Embedding: weight must be a 2-D float tensor, got {} {:?}",
                weight.dtype(),
                weight.shape()
            )));
        }
        let weight = weight.detach();
        weight.set_requires_grad(true)?;
        Ok(Embedding { weight })
    }

    pub fn num_embeddings(&self) -> usize {
        self.weight.shape()[0]
    }

    pub fn embedding_dim(&self) -> usize {
        self.weight.shape()[1]
    }
}

impl Module for Embedding {
    fn forward(&self, indices: &Tensor) -> Result<Tensor> {
        if indices.dtype() != DType::I64 {
            return Err(Error::Op(format!(
                "Embedding: expected indices of dtype i64, got {}",
                indices.dtype()
            )));
        }
        let (v, d) = (self.num_embeddings(), self.embedding_dim());
        // Indices are data: check them (this computes them if they are still pending).
        if let Some((at, bad)) =
            indices.to_vec_f64()?.into_iter().enumerate().find(|(_, i)| *i < 0.0 || *i >= v as f64)
        {
            return Err(Error::Op(format!(
                "Embedding: index {bad} is out of range in self (position {at} of indices {:?}; the table has {v} rows, valid indices are 0..{v})",
                indices.shape()
            )));
        }
        let n = indices.numel();
        let rows = Tensor::constant(Literal::I64((0..v as i64).collect()), Shape::from(vec![1, v]));
        let mut out_shape = indices.shape().to_vec();
        out_shape.push(d);
        apply_composite("EmbeddingBackward0", &[&self.weight, indices, &rows], |g, x| {
            let idx = g.reshape(x[1], vec![n, 1])?;
            let hit = g.compare(CompareOp::Equal, idx, x[2])?;
            let dt = g.node(x[0]).dtype;
            let onehot = g.cast(hit, dt)?;
            let y = g.matmul(onehot, x[0])?;
            g.reshape(y, out_shape)
        })
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        vec![("weight".to_string(), self.weight.clone())]
    }
}
