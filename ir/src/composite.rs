//! Composite operations as decompositions into primitives, built on a [`Graph`].
//!
//! These are not ops of the IR: each function appends the primitive nodes that compute it, so
//! autodiff, fusion and every backend see only primitives. The frontend's `nn::functional` and
//! the ONNX importer build these same decompositions.

use crate::error::Result;
use crate::graph::{Graph, NodeId};
use crate::op::{ReduceOp, UnaryOp};

impl Graph {
    /// `log_softmax(x)` along `axis`, stabilised by subtracting the maximum:
    /// `x - m - log(Σ exp(x - m))`, `m = max(x)`.
    pub fn log_softmax(&mut self, x: NodeId, axis: i64) -> Result<NodeId> {
        let m = self.reduce(ReduceOp::Max, x, vec![axis], true)?;
        self.log_softmax_shifted(x, m, axis)
    }

    /// `log_softmax(x)` along `axis` with the stabilising shift `m` given (any value constant
    /// along `axis`, kept as a dim of 1; the result does not depend on it): `(x - m) - log Σ
    /// exp(x - m)`. The frontend passes a max it does not differentiate.
    pub fn log_softmax_shifted(&mut self, x: NodeId, m: NodeId, axis: i64) -> Result<NodeId> {
        let shifted = self.sub(x, m)?;
        let e = self.unary(UnaryOp::Exp, shifted)?;
        let s = self.reduce(ReduceOp::Sum, e, vec![axis], true)?;
        let ls = self.unary(UnaryOp::Log, s)?;
        self.sub(shifted, ls)
    }

    /// `softmax(x)` along `axis`: `exp(x - m) / Σ exp(x - m)`, `m = max(x)`.
    pub fn softmax(&mut self, x: NodeId, axis: i64) -> Result<NodeId> {
        let m = self.reduce(ReduceOp::Max, x, vec![axis], true)?;
        self.softmax_shifted(x, m, axis)
    }

    /// `softmax(x)` along `axis` with the stabilising shift `m` given (see
    /// [`Graph::log_softmax_shifted`]).
    pub fn softmax_shifted(&mut self, x: NodeId, m: NodeId, axis: i64) -> Result<NodeId> {
        let shifted = self.sub(x, m)?;
        let e = self.unary(UnaryOp::Exp, shifted)?;
        let s = self.reduce(ReduceOp::Sum, e, vec![axis], true)?;
        self.div(e, s)
    }

    /// Mean softmax cross-entropy of `logits` `[N, C]` against one-hot (or soft) `targets`
    /// `[N, C]`: `-mean_n Σ_c targets · log_softmax(logits)`.
    pub fn softmax_cross_entropy(&mut self, logits: NodeId, targets: NodeId) -> Result<NodeId> {
        let ls = self.log_softmax(logits, -1)?;
        let prod = self.mul(targets, ls)?;
        let per_row = self.reduce(ReduceOp::Sum, prod, vec![-1], false)?;
        let mean = self.reduce(ReduceOp::Mean, per_row, vec![], false)?;
        self.neg(mean)
    }

    /// Layer normalisation over the last axis (biased variance, like PyTorch):
    /// `(x - mean) / sqrt(var + eps)`. Scale and shift are separate multiplies/adds.
    pub fn layer_norm(&mut self, x: NodeId, eps: f64) -> Result<NodeId> {
        let mu = self.reduce(ReduceOp::Mean, x, vec![-1], true)?;
        let xc = self.sub(x, mu)?;
        let sq = self.mul(xc, xc)?;
        let var = self.reduce(ReduceOp::Mean, sq, vec![-1], true)?;
        let e = self.scalar_like(x, eps);
        let ve = self.add_(var, e)?;
        let sd = self.unary(UnaryOp::Sqrt, ve)?;
        self.div(xc, sd)
    }

    /// Exact GELU: `0.5 · x · (1 + erf(x / √2))`.
    pub fn gelu(&mut self, x: NodeId) -> Result<NodeId> {
        let k = self.scalar_like(x, std::f64::consts::FRAC_1_SQRT_2);
        let xs = self.mul(x, k)?;
        let e = self.unary(UnaryOp::Erf, xs)?;
        let one = self.scalar_like(x, 1.0);
        let onep = self.add_(one, e)?;
        let half = self.scalar_like(x, 0.5);
        let hx = self.mul(half, x)?;
        self.mul(hx, onep)
    }

    /// Mean squared error: `mean((a - b)²)`.
    pub fn mse(&mut self, a: NodeId, b: NodeId) -> Result<NodeId> {
        let d = self.sub(a, b)?;
        let sq = self.mul(d, d)?;
        self.reduce(ReduceOp::Mean, sq, vec![], false)
    }
}
