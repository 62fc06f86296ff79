//! Reductions: sum, mean, max, min, var, std, norm — over everything or over dims.

use crate::error::Result;
use crate::ops::record::{apply, apply_composite};
use crate::tensor::Tensor;
use kiln_ir::{Graph, NodeId, Op, ReduceOp};

fn dims_i64(t: &Tensor, dims: &[i64]) -> Result<Vec<i64>> {
    dims.iter().map(|&d| t.axis(d).map(|a| a as i64)).collect()
}

/// Unbiased (`correction = 1`) or biased variance over `axes` (empty: all).
fn variance(
    g: &mut Graph,
    x: NodeId,
    axes: Vec<i64>,
    keepdim: bool,
    unbiased: bool,
) -> kiln_ir::Result<NodeId> {
    let shape = g.node(x).shape.clone();
    let n: usize = if axes.is_empty() {
        shape.numel()
    } else {
        axes.iter().map(|&a| shape.0[shape.axis(a).expect("checked")]).product()
    };
    let mu = g.reduce(ReduceOp::Mean, x, axes.clone(), true)?;
    let d = g.sub(x, mu)?;
    let sq = g.mul(d, d)?;
    let s = g.reduce(ReduceOp::Sum, sq, axes, keepdim)?;
    let denom = if unbiased { n as f64 - 1.0 } else { n as f64 };
    let k = g.scalar_like(x, 1.0 / denom);
    g.mul(s, k)
}

/// `sqrt(Σ x²)` whose gradient at 0 is 0, as PyTorch's norm backward masks it: the square root
/// is taken of `where(s == 0, 1, s)` so the untaken branch never produces `inf · 0`.
fn safe_norm(g: &mut Graph, x: NodeId, axes: Vec<i64>, keepdim: bool) -> kiln_ir::Result<NodeId> {
    let sq = g.mul(x, x)?;
    let s = g.reduce(ReduceOp::Sum, sq, axes, keepdim)?;
    let zero = g.scalar_like(s, 0.0);
    let one = g.scalar_like(s, 1.0);
    let is_zero = g.compare(kiln_ir::CompareOp::Equal, s, zero)?;
    let safe = g.where_(is_zero, one, s)?;
    let r = g.unary(kiln_ir::UnaryOp::Sqrt, safe)?;
    g.where_(is_zero, zero, r)
}

impl Tensor {
    /// Sum of all elements.
    pub fn sum(&self) -> Tensor {
        apply("SumBackward0", Op::Reduce { op: ReduceOp::Sum, axes: vec![], keepdims: false }, &[self])
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Sum over `dims`.
    pub fn sum_dim(&self, dims: &[i64], keepdim: bool) -> Result<Tensor> {
        let axes = dims_i64(self, dims)?;
        apply("SumBackward1", Op::Reduce { op: ReduceOp::Sum, axes, keepdims: keepdim }, &[self])
    }

    /// Mean of all elements.
    pub fn mean(&self) -> Tensor {
        apply("MeanBackward0", Op::Reduce { op: ReduceOp::Mean, axes: vec![], keepdims: false }, &[self])
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Mean over `dims`.
    pub fn mean_dim(&self, dims: &[i64], keepdim: bool) -> Result<Tensor> {
        let axes = dims_i64(self, dims)?;
        apply("MeanBackward1", Op::Reduce { op: ReduceOp::Mean, axes, keepdims: keepdim }, &[self])
    }

    /// Largest element (ties share the gradient evenly, as in PyTorch).
    pub fn max(&self) -> Tensor {
        apply("MaxBackward1", Op::Reduce { op: ReduceOp::Max, axes: vec![], keepdims: false }, &[self])
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Largest elements over `dims` (PyTorch's `amax`).
    pub fn amax(&self, dims: &[i64], keepdim: bool) -> Result<Tensor> {
        let axes = dims_i64(self, dims)?;
        apply("AmaxBackward0", Op::Reduce { op: ReduceOp::Max, axes, keepdims: keepdim }, &[self])
    }

    /// Smallest element.
    pub fn min(&self) -> Tensor {
        apply_composite("MinBackward1", &[self], |g, x| {
            let n = g.neg(x[0])?;
            let m = g.reduce(ReduceOp::Max, n, vec![], false)?;
            g.neg(m)
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Smallest elements over `dims` (PyTorch's `amin`).
    pub fn amin(&self, dims: &[i64], keepdim: bool) -> Result<Tensor> {
        let axes = dims_i64(self, dims)?;
        apply_composite("AminBackward0", &[self], |g, x| {
            let n = g.neg(x[0])?;
            let m = g.reduce(ReduceOp::Max, n, axes, keepdim)?;
            g.neg(m)
        })
    }

    /// Variance of all elements (unbiased, like PyTorch's default).
    pub fn var(&self) -> Tensor {
        apply_composite("VarBackward0", &[self], |g, x| variance(g, x[0], vec![], false, true))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Variance over `dims`; `unbiased` divides by `n - 1`.
    pub fn var_dim(&self, dims: &[i64], unbiased: bool, keepdim: bool) -> Result<Tensor> {
        let axes = dims_i64(self, dims)?;
        apply_composite("VarBackward0", &[self], |g, x| variance(g, x[0], axes, keepdim, unbiased))
    }

    /// Standard deviation of all elements (unbiased).
    pub fn std(&self) -> Tensor {
        apply_composite("StdBackward0", &[self], |g, x| {
            let v = variance(g, x[0], vec![], false, true)?;
            g.unary(kiln_ir::UnaryOp::Sqrt, v)
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Standard deviation over `dims`.
    pub fn std_dim(&self, dims: &[i64], unbiased: bool, keepdim: bool) -> Result<Tensor> {
        let axes = dims_i64(self, dims)?;
        apply_composite("StdBackward0", &[self], |g, x| {
            let v = variance(g, x[0], axes, keepdim, unbiased)?;
            g.unary(kiln_ir::UnaryOp::Sqrt, v)
        })
    }

    /// Euclidean norm of all elements.
    pub fn norm(&self) -> Tensor {
        apply_composite("NormBackward1", &[self], |g, x| safe_norm(g, x[0], vec![], false))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Euclidean norm over `dims`.
    pub fn norm_dim(&self, dims: &[i64], keepdim: bool) -> Result<Tensor> {
        let axes = dims_i64(self, dims)?;
        apply_composite("NormBackward1", &[self], |g, x| safe_norm(g, x[0], axes, keepdim))
    }
}
