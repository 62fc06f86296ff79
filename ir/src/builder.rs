//! Shorthand constructors on [`Graph`] for every op, so that passes read like the math they build.
//! Each one is [`Graph::add`] with the op spelled out: shape inference and errors are the same.

use crate::dtype::DType;
use crate::error::Result;
use crate::graph::{Graph, NodeId};
use crate::op::{BinaryOp, CompareOp, Op, ReduceOp, UnaryOp};

impl Graph {
    pub fn unary(&mut self, op: UnaryOp, x: NodeId) -> Result<NodeId> {
        self.add(Op::Unary(op), &[x])
    }

    pub fn binary(&mut self, op: BinaryOp, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.add(Op::Binary(op), &[a, b])
    }

    pub fn compare(&mut self, op: CompareOp, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.add(Op::Compare(op), &[a, b])
    }

    pub fn add_(&mut self, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.binary(BinaryOp::Add, a, b)
    }

    pub fn sub(&mut self, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.binary(BinaryOp::Sub, a, b)
    }

    pub fn mul(&mut self, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.binary(BinaryOp::Mul, a, b)
    }

    pub fn div(&mut self, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.binary(BinaryOp::Div, a, b)
    }

    pub fn pow(&mut self, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.binary(BinaryOp::Pow, a, b)
    }

    pub fn neg(&mut self, x: NodeId) -> Result<NodeId> {
        self.unary(UnaryOp::Neg, x)
    }

    pub fn where_(&mut self, cond: NodeId, x: NodeId, y: NodeId) -> Result<NodeId> {
        self.add(Op::Where, &[cond, x, y])
    }

    pub fn cast(&mut self, x: NodeId, to: DType) -> Result<NodeId> {
        self.add(Op::Cast { to }, &[x])
    }

    pub fn reduce(&mut self, op: ReduceOp, x: NodeId, axes: Vec<i64>, keepdims: bool) -> Result<NodeId> {
        self.add(Op::Reduce { op, axes, keepdims }, &[x])
    }

    pub fn matmul(&mut self, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.add(Op::MatMul, &[a, b])
    }

    pub fn reshape(&mut self, x: NodeId, shape: impl AsRef<[usize]>) -> Result<NodeId> {
        self.add(Op::Reshape { shape: shape.as_ref().to_vec() }, &[x])
    }

    pub fn transpose(&mut self, x: NodeId, perm: Vec<usize>) -> Result<NodeId> {
        self.add(Op::Transpose { perm }, &[x])
    }

    pub fn expand(&mut self, x: NodeId, shape: impl AsRef<[usize]>) -> Result<NodeId> {
        self.add(Op::Expand { shape: shape.as_ref().to_vec() }, &[x])
    }

    pub fn slice(
        &mut self,
        x: NodeId,
        starts: Vec<i64>,
        ends: Vec<i64>,
        axes: Vec<i64>,
        steps: Vec<i64>,
    ) -> Result<NodeId> {
        self.add(Op::Slice { starts, ends, axes, steps }, &[x])
    }

    pub fn concat(&mut self, xs: &[NodeId], axis: i64) -> Result<NodeId> {
        self.add(Op::Concat { axis }, xs)
    }

    /// A scalar constant with the dtype of `like`.
    pub fn scalar_like(&mut self, like: NodeId, v: f64) -> NodeId {
        let d = self.node(like).dtype;
        self.scalar(d, v)
    }
}
