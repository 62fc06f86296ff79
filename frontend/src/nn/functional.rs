//! Stateless neural-network functions (PyTorch's `torch.nn.functional`). Each is a decomposition
//! into primitive ops that autograd records as one node with PyTorch's name.

use crate::error::{Error, Result};
use crate::ops::record::apply_composite;
use crate::tensor::Tensor;
use kiln_ir::{CompareOp, DType, Literal, ReduceOp, UnaryOp};

/// Mean squared error `mean((input - target)²)`.
///
/// ```
/// use kiln_frontend::{nn::functional::mse_loss, Tensor};
/// let l = mse_loss(&Tensor::full(&[2], 3.0), &Tensor::ones(&[2])).unwrap();
/// assert_eq!(l.item().unwrap(), 4.0);
/// ```
pub fn mse_loss(input: &Tensor, target: &Tensor) -> Result<Tensor> {
    if input.shape() != target.shape() {
        return Err(Error::Op(format!(
            "mse_loss: input shape {:?} and target shape {:?} differ",
            input.shape(),
            target.shape()
        )));
    }
    let (a, b) = crate::ops::arith::promote("mse_loss", input, target)?;
    apply_composite("MseLossBackward0", &[&a, &b], |g, x| g.mse(x[0], x[1]))
}

/// Mean negative log-likelihood of class indices `target` (i64, `[N]`) under log-probabilities
/// `log_probs` (`[N, C]`).
pub fn nll_loss(log_probs: &Tensor, target: &Tensor) -> Result<Tensor> {
    if log_probs.dim() != 2 || target.dim() != 1 || target.shape()[0] != log_probs.shape()[0] {
        return Err(Error::Op(format!(
            "nll_loss: expected input [N, C] and target [N], got {:?} and {:?}",
            log_probs.shape(),
            target.shape()
        )));
    }
    if target.dtype() != DType::I64 {
        return Err(Error::Op(format!(
            "nll_loss: expected target of dtype i64 (class indices), got {}",
            target.dtype()
        )));
    }
    let (n, c) = (log_probs.shape()[0], log_probs.shape()[1]);
    // Class indices are data: check them (this computes the target if it is still pending).
    if let Some(bad) = target.to_vec_f64()?.into_iter().find(|&t| t < 0.0 || t >= c as f64) {
        return Err(Error::Op(format!("Target {bad} is out of bounds.")));
    }
    let classes = Tensor::constant(Literal::I64((0..c as i64).collect()), kiln_ir::Shape::from([1, c]));
    apply_composite("NllLossBackward0", &[log_probs, target, &classes], |g, x| {
        let t = g.reshape(x[1], vec![n, 1])?;
        let hit = g.compare(CompareOp::Equal, t, x[2])?;
        let dt = g.node(x[0]).dtype;
        let onehot = g.cast(hit, dt)?;
        let picked = g.mul(onehot, x[0])?;
        let per_row = g.reduce(ReduceOp::Sum, picked, vec![-1], false)?;
        let mean = g.reduce(ReduceOp::Mean, per_row, vec![], false)?;
        g.neg(mean)
    })
}

/// Softmax cross-entropy of `logits` (`[N, C]`) against class indices `target` (i64, `[N]`),
/// averaged over the batch: `nll_loss(log_softmax(logits))`, as PyTorch computes it.
///
/// ```
/// use kiln_frontend::{nn::functional::cross_entropy, Tensor};
/// let logits = Tensor::zeros(&[2, 4]).requires_grad_(true);
/// let target = Tensor::from_vec(vec![1i64, 3], &[2]).unwrap();
/// let loss = cross_entropy(&logits, &target).unwrap();
/// assert!((loss.item().unwrap() - 4f64.ln()).abs() < 1e-6);
/// assert_eq!(loss.grad_fn().unwrap().name(), "NllLossBackward0");
/// ```
pub fn cross_entropy(logits: &Tensor, target: &Tensor) -> Result<Tensor> {
    nll_loss(&logits.log_softmax(-1)?, target)
}

/// Layer normalisation over the trailing dims `normalized_shape` (biased variance, `eps` inside
/// the square root), with optional elementwise `weight` and `bias`.
pub fn layer_norm(
    x: &Tensor,
    normalized_shape: &[usize],
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
) -> Result<Tensor> {
    let k = normalized_shape.len();
    if k == 0 || k > x.dim() || x.shape()[x.dim() - k..] != *normalized_shape {
        return Err(Error::Op(format!(
            "layer_norm: normalized_shape {normalized_shape:?} does not match the trailing dims of input shape {:?}",
            x.shape()
        )));
    }
    for (what, t) in [("weight", weight), ("bias", bias)] {
        if let Some(t) = t {
            if t.shape() != normalized_shape {
                return Err(Error::Op(format!(
                    "layer_norm: {what} shape {:?} must equal normalized_shape {normalized_shape:?}",
                    t.shape()
                )));
            }
        }
    }
    let mut inputs = vec![x];
    inputs.extend(weight);
    inputs.extend(bias);
    let axes: Vec<i64> = (-(k as i64)..0).collect();
    let (has_w, has_b) = (weight.is_some(), bias.is_some());
    apply_composite("NativeLayerNormBackward0", &inputs, |g, xs| {
        let mu = g.reduce(ReduceOp::Mean, xs[0], axes.clone(), true)?;
        let xc = g.sub(xs[0], mu)?;
        let sq = g.mul(xc, xc)?;
        let var = g.reduce(ReduceOp::Mean, sq, axes, true)?;
        let e = g.scalar_like(xs[0], eps);
        let ve = g.add_(var, e)?;
        let sd = g.unary(UnaryOp::Sqrt, ve)?;
        let mut y = g.div(xc, sd)?;
        if has_w {
            y = g.mul(y, xs[1])?;
        }
        if has_b {
            y = g.add_(y, xs[if has_w { 2 } else { 1 }])?;
        }
        Ok(y)
    })
}

/// `x @ weightᵀ + bias` (PyTorch's `linear`, `weight` is `[out, in]`).
///
/// ```
/// use kiln_frontend::{nn::functional::linear, Tensor};
/// let y = linear(&Tensor::ones(&[4, 3]), &Tensor::ones(&[2, 3]), Some(&Tensor::ones(&[2]))).unwrap();
/// assert_eq!(y.shape(), &[4, 2]);
/// assert_eq!(y.to_vec_f64().unwrap(), vec![4.0; 8]);
/// ```
pub fn linear(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    if weight.dim() != 2 {
        return Err(Error::Op(format!("linear: weight must be 2-D [out, in], got {:?}", weight.shape())));
    }
    match bias {
        // One node, like PyTorch's addmm for a 2-D input with a bias.
        Some(b) if x.dim() == 2 => {
            let k = x.shape()[1];
            if weight.shape()[1] != k {
                return Err(Error::Op(format!(
                    "linear: mat1 and mat2 shapes cannot be multiplied ({}x{k} and {}x{})",
                    x.shape()[0],
                    weight.shape()[1],
                    weight.shape()[0]
                )));
            }
            let (x, w) = crate::ops::arith::promote("linear", x, weight)?;
            let (x, b) = crate::ops::arith::promote("linear", &x, b)?;
            apply_composite("AddmmBackward0", &[&x, &w, &b], |g, t| {
                let wt = g.transpose(t[1], vec![1, 0])?;
                let y = g.matmul(t[0], wt)?;
                g.add_(y, t[2])
            })
        }
        Some(b) => x.matmul(&weight.t()?)?.add(b),
        None => x.matmul(&weight.t()?),
    }
}
