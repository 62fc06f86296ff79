//! The primitive op set: names, attributes, arity and the shape/dtype rule of each op.
//!
//! Ops follow ONNX names and semantics (numpy broadcasting, negative axes). The set is small on
//! purpose: composite operations (softmax, layer norm, gelu, losses) are built from these where
//! they are created, so autodiff, fusion and codegen each have few cases to handle.

use crate::dtype::{broadcast_shapes, broadcasts_to, normalize_axis, DType, Dims, Shape};
use crate::error::{Error, Result};
use crate::literal::Literal;
use serde::{Deserialize, Serialize};

/// Elementwise ops of one operand. The output has the operand's shape and dtype.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum UnaryOp {
    Neg,
    Abs,
    Exp,
    Log,
    Sqrt,
    Reciprocal,
    Tanh,
    Sigmoid,
    Relu,
    Erf,
    Sin,
    Cos,
    Sign,
}

impl UnaryOp {
    pub const ALL: [UnaryOp; 13] = [
        UnaryOp::Neg,
        UnaryOp::Abs,
        UnaryOp::Exp,
        UnaryOp::Log,
        UnaryOp::Sqrt,
        UnaryOp::Reciprocal,
        UnaryOp::Tanh,
        UnaryOp::Sigmoid,
        UnaryOp::Relu,
        UnaryOp::Erf,
        UnaryOp::Sin,
        UnaryOp::Cos,
        UnaryOp::Sign,
    ];

    pub fn name(self) -> &'static str {
        match self {
            UnaryOp::Neg => "Neg",
            UnaryOp::Abs => "Abs",
            UnaryOp::Exp => "Exp",
            UnaryOp::Log => "Log",
            UnaryOp::Sqrt => "Sqrt",
            UnaryOp::Reciprocal => "Reciprocal",
            UnaryOp::Tanh => "Tanh",
            UnaryOp::Sigmoid => "Sigmoid",
            UnaryOp::Relu => "Relu",
            UnaryOp::Erf => "Erf",
            UnaryOp::Sin => "Sin",
            UnaryOp::Cos => "Cos",
            UnaryOp::Sign => "Sign",
        }
    }

    /// Transcendental functions (exp, log, tanh, sigmoid, erf, sin, cos): computed by polynomial
    /// approximations, tens of instructions per element and a few ULP from the exact value,
    /// unlike the correctly rounded arithmetic ops.
    pub fn is_transcendental(self) -> bool {
        matches!(
            self,
            UnaryOp::Exp
                | UnaryOp::Log
                | UnaryOp::Tanh
                | UnaryOp::Sigmoid
                | UnaryOp::Erf
                | UnaryOp::Sin
                | UnaryOp::Cos
        )
    }

    /// Ops that are defined on integers too (the rest need a float operand).
    pub fn accepts_int(self) -> bool {
        matches!(self, UnaryOp::Neg | UnaryOp::Abs | UnaryOp::Relu | UnaryOp::Sign)
    }
}

/// Elementwise ops of two operands with numpy broadcasting; both operands have one dtype.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Max,
    Min,
}

impl BinaryOp {
    pub const ALL: [BinaryOp; 7] = [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Pow,
        BinaryOp::Max,
        BinaryOp::Min,
    ];

    pub fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "Add",
            BinaryOp::Sub => "Sub",
            BinaryOp::Mul => "Mul",
            BinaryOp::Div => "Div",
            BinaryOp::Pow => "Pow",
            BinaryOp::Max => "Max",
            BinaryOp::Min => "Min",
        }
    }
}

/// Elementwise comparisons with broadcasting; the result is `bool`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum CompareOp {
    Equal,
    Greater,
    Less,
}

impl CompareOp {
    pub const ALL: [CompareOp; 3] = [CompareOp::Equal, CompareOp::Greater, CompareOp::Less];

    pub fn name(self) -> &'static str {
        match self {
            CompareOp::Equal => "Equal",
            CompareOp::Greater => "Greater",
            CompareOp::Less => "Less",
        }
    }
}

/// Reductions over a set of axes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ReduceOp {
    Sum,
    Max,
    Mean,
}

impl ReduceOp {
    pub const ALL: [ReduceOp; 3] = [ReduceOp::Sum, ReduceOp::Max, ReduceOp::Mean];

    pub fn name(self) -> &'static str {
        match self {
            ReduceOp::Sum => "ReduceSum",
            ReduceOp::Max => "ReduceMax",
            ReduceOp::Mean => "ReduceMean",
        }
    }
}

/// An IR operation with its attributes.
///
/// Attributes are stored resolved where that makes every consumer simpler: `Reshape` and
/// `Expand` carry the full target shape (no `-1`/`0` placeholders), while axes may be negative
/// (ONNX) and are normalised by [`Op::infer`]'s helpers.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Op {
    /// A graph input. `param` marks trainable parameters (initializers in ONNX terms).
    Input {
        name: String,
        param: bool,
    },
    /// A constant tensor; its shape and dtype are the node's.
    Constant(Literal),
    Unary(UnaryOp),
    Binary(BinaryOp),
    Compare(CompareOp),
    /// `Where(cond, x, y)`: `x` where `cond` else `y`, all three broadcast.
    Where,
    Cast {
        to: DType,
    },
    /// Reduce over `axes` (empty = all axes), keeping reduced axes as size 1 when `keepdims`.
    Reduce {
        op: ReduceOp,
        axes: Vec<i64>,
        keepdims: bool,
    },
    /// Matrix product with numpy/ONNX semantics: 1-D operands are promoted, batch dims broadcast.
    MatMul,
    /// Same elements, new shape (same element count).
    Reshape {
        shape: Vec<usize>,
    },
    /// Permute axes: output axis `i` is input axis `perm[i]`.
    Transpose {
        perm: Vec<usize>,
    },
    /// Broadcast to `shape` (the operand must broadcast to it exactly).
    Expand {
        shape: Vec<usize>,
    },
    /// ONNX Slice with explicit `axes` and `steps`; negative starts/ends count from the end and are
    /// clamped like ONNX does.
    Slice {
        starts: Vec<i64>,
        ends: Vec<i64>,
        axes: Vec<i64>,
        steps: Vec<i64>,
    },
    /// Join operands along `axis`.
    Concat {
        axis: i64,
    },
}

/// How many operands an op takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arity {
    Exactly(usize),
    AtLeast(usize),
}

impl Op {
    /// The ONNX op name, as printed in the text form.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Input { .. } => "Input",
            Op::Constant(_) => "Constant",
            Op::Unary(u) => u.name(),
            Op::Binary(b) => b.name(),
            Op::Compare(c) => c.name(),
            Op::Where => "Where",
            Op::Cast { .. } => "Cast",
            Op::Reduce { op, .. } => op.name(),
            Op::MatMul => "MatMul",
            Op::Reshape { .. } => "Reshape",
            Op::Transpose { .. } => "Transpose",
            Op::Expand { .. } => "Expand",
            Op::Slice { .. } => "Slice",
            Op::Concat { .. } => "Concat",
        }
    }

    pub fn arity(&self) -> Arity {
        match self {
            Op::Input { .. } | Op::Constant(_) => Arity::Exactly(0),
            Op::Unary(_)
            | Op::Cast { .. }
            | Op::Reduce { .. }
            | Op::Reshape { .. }
            | Op::Transpose { .. }
            | Op::Expand { .. }
            | Op::Slice { .. } => Arity::Exactly(1),
            Op::Binary(_) | Op::Compare(_) | Op::MatMul => Arity::Exactly(2),
            Op::Where => Arity::Exactly(3),
            Op::Concat { .. } => Arity::AtLeast(1),
        }
    }

    /// True for ops computed independently per output element from broadcast operands.
    pub fn is_elementwise(&self) -> bool {
        matches!(self, Op::Unary(_) | Op::Binary(_) | Op::Compare(_) | Op::Where | Op::Cast { .. })
    }

    /// The dtype and shape of this op's result for the given operand types — the one shape rule
    /// per op that the builder, the parser and the verifier all use.
    pub fn infer(&self, operands: &[(DType, &Shape)]) -> Result<(DType, Shape)> {
        let name = self.name();
        let err = |msg: String| Error::op(name, msg);
        match self.arity() {
            Arity::Exactly(n) if operands.len() != n => {
                return Err(err(format!("expects {n} operand(s), got {}", operands.len())))
            }
            Arity::AtLeast(n) if operands.len() < n => {
                return Err(err(format!("expects at least {n} operand(s), got {}", operands.len())))
            }
            _ => {}
        }
        let float_only = |d: DType| -> Result<()> {
            if d.is_float() {
                Ok(())
            } else {
                Err(err(format!("expects a float operand, got {d}")))
            }
        };
        match self {
            Op::Input { .. } | Op::Constant(_) => {
                Err(err("has no operands; its type is declared, not inferred".into()))
            }
            Op::Unary(u) => {
                let (d, s) = operands[0];
                if d == DType::Bool || (!u.accepts_int() && !d.is_float()) {
                    return Err(err(format!("is not defined for {d}")));
                }
                Ok((d, s.clone()))
            }
            Op::Binary(_) | Op::Compare(_) => {
                let ((da, sa), (db, sb)) = (operands[0], operands[1]);
                if da != db {
                    return Err(err(format!("operand dtypes differ: {da} and {db}")));
                }
                if matches!(self, Op::Binary(_)) && da == DType::Bool {
                    return Err(err("is not defined for bool".into()));
                }
                let out = broadcast_shapes(sa, sb)
                    .ok_or_else(|| err(format!("shapes {sa} and {sb} cannot be broadcast together")))?;
                let dt = if matches!(self, Op::Compare(_)) { DType::Bool } else { da };
                Ok((dt, out))
            }
            Op::Where => {
                let ((dc, sc), (dx, sx), (dy, sy)) = (operands[0], operands[1], operands[2]);
                if dc != DType::Bool {
                    return Err(err(format!("condition must be bool, got {dc}")));
                }
                if dx != dy {
                    return Err(err(format!("branch dtypes differ: {dx} and {dy}")));
                }
                let s = broadcast_shapes(sx, sy)
                    .and_then(|s| broadcast_shapes(sc, &s))
                    .ok_or_else(|| err(format!("shapes {sc}, {sx} and {sy} cannot be broadcast together")))?;
                Ok((dx, s))
            }
            Op::Cast { to } => Ok((*to, operands[0].1.clone())),
            Op::Reduce { op, axes, keepdims } => {
                let (d, s) = operands[0];
                if d == DType::Bool || (*op == ReduceOp::Mean && !d.is_float()) {
                    return Err(err(format!("is not defined for {d}")));
                }
                let axes = reduce_axes(axes, s.rank()).map_err(err)?;
                Ok((d, reduced_shape(s, &axes, *keepdims)))
            }
            Op::MatMul => {
                let ((da, sa), (db, sb)) = (operands[0], operands[1]);
                if da != db {
                    return Err(err(format!("operand dtypes differ: {da} and {db}")));
                }
                float_only(da)?;
                Ok((da, matmul_shape(sa, sb).map_err(err)?))
            }
            Op::Reshape { shape } => {
                let (d, s) = operands[0];
                let to = Shape::from(shape.as_slice());
                if to.numel() != s.numel() {
                    return Err(err(format!(
                        "shape '{to}' is invalid for input of size {} (shape {s})",
                        s.numel()
                    )));
                }
                Ok((d, to))
            }
            Op::Transpose { perm } => {
                let (d, s) = operands[0];
                check_perm(perm, s.rank()).map_err(err)?;
                Ok((d, Shape(perm.iter().map(|&p| s.0[p]).collect())))
            }
            Op::Expand { shape } => {
                let (d, s) = operands[0];
                let to = Shape::from(shape.as_slice());
                if !broadcasts_to(s, &to) {
                    return Err(err(format!("shape {s} cannot be expanded to {to}")));
                }
                Ok((d, to))
            }
            Op::Slice { .. } => {
                let (d, s) = operands[0];
                let dims = self.slice_ranges(s).map_err(err)?;
                Ok((d, Shape(dims.iter().map(|r| r.len).collect())))
            }
            Op::Concat { axis } => {
                let (d0, s0) = operands[0];
                let ax = normalize_axis(*axis, s0.rank())
                    .ok_or_else(|| err(format!("axis {axis} is out of range for rank {}", s0.rank())))?;
                let mut out = s0.clone();
                for &(d, s) in &operands[1..] {
                    if d != d0 {
                        return Err(err(format!("operand dtypes differ: {d0} and {d}")));
                    }
                    let same_rest =
                        s.rank() == s0.rank() && (0..s.rank()).all(|i| i == ax || s.0[i] == s0.0[i]);
                    if !same_rest {
                        return Err(err(format!(
                            "shapes {s0} and {s} differ outside the concatenation axis {ax}"
                        )));
                    }
                    out.0[ax] = out.0[ax]
                        .checked_add(s.0[ax])
                        .ok_or_else(|| err("the concatenated extent overflows".into()))?;
                }
                Ok((d0, out))
            }
        }
    }

    /// For a `Slice`, the resolved range of every input axis (untouched axes are full ranges).
    pub fn slice_ranges(&self, input: &Shape) -> Result<Vec<SliceRange>, String> {
        let Op::Slice { starts, ends, axes, steps } = self else {
            return Err("not a Slice".into());
        };
        let n = starts.len();
        if ends.len() != n || axes.len() != n || steps.len() != n {
            return Err(format!(
                "starts, ends, axes and steps must have one length, got {}, {}, {} and {}",
                n,
                ends.len(),
                axes.len(),
                steps.len()
            ));
        }
        let mut out: Vec<SliceRange> =
            input.0.iter().map(|&d| SliceRange { start: 0, step: 1, len: d }).collect();
        let mut seen = vec![false; input.rank()];
        for i in 0..n {
            let ax = normalize_axis(axes[i], input.rank())
                .ok_or_else(|| format!("axis {} is out of range for rank {}", axes[i], input.rank()))?;
            if std::mem::replace(&mut seen[ax], true) {
                return Err(format!("axis {ax} appears twice"));
            }
            out[ax] = SliceRange::resolve(starts[i], ends[i], steps[i], input.0[ax])?;
        }
        Ok(out)
    }
}

/// One axis of a resolved slice: elements `start, start+step, ...`, `len` of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SliceRange {
    pub start: usize,
    pub step: i64,
    pub len: usize,
}

impl SliceRange {
    /// ONNX Slice semantics for one axis of extent `dim`: negative indices count from the end,
    /// out-of-range indices are clamped (to `[0, dim]` for positive steps, `[-1, dim-1]` for
    /// negative ones).
    pub fn resolve(start: i64, end: i64, step: i64, dim: usize) -> Result<SliceRange, String> {
        if step == 0 {
            return Err("slice step cannot be zero".into());
        }
        let d = dim as i64;
        let adj = |v: i64| if v < 0 { v + d } else { v };
        let (s, e) = if step > 0 {
            (adj(start).clamp(0, d), adj(end).clamp(0, d))
        } else {
            (adj(start).clamp(-1, d - 1), adj(end).clamp(-1, d - 1))
        };
        // Written so that no intermediate overflows, even for steps near i64::MIN/MAX.
        let len = if step > 0 {
            if e > s {
                (e - s - 1) as u64 / step as u64 + 1
            } else {
                0
            }
        } else if s > e {
            (s - e - 1) as u64 / step.unsigned_abs() + 1
        } else {
            0
        };
        let start = if len == 0 { 0 } else { s as usize };
        Ok(SliceRange { start, step, len: len as usize })
    }
}

/// Normalises reduction axes: empty means all; negative axes count from the end; sorted, unique.
pub fn reduce_axes(axes: &[i64], rank: usize) -> Result<Vec<usize>, String> {
    if axes.is_empty() {
        return Ok((0..rank).collect());
    }
    let mut out = Vec::with_capacity(axes.len());
    for &a in axes {
        let n = normalize_axis(a, rank).ok_or_else(|| format!("axis {a} is out of range for rank {rank}"))?;
        if out.contains(&n) {
            return Err(format!("axis {a} appears twice"));
        }
        out.push(n);
    }
    out.sort_unstable();
    Ok(out)
}

/// The shape left after reducing normalised `axes`.
pub fn reduced_shape(s: &Shape, axes: &[usize], keepdims: bool) -> Shape {
    let mut out = Dims::with_capacity(s.rank());
    for (i, &d) in s.0.iter().enumerate() {
        if axes.contains(&i) {
            if keepdims {
                out.push(1);
            }
        } else {
            out.push(d);
        }
    }
    Shape(out)
}

/// numpy `matmul` shape rule.
pub fn matmul_shape(a: &Shape, b: &Shape) -> Result<Shape, String> {
    if a.rank() == 0 || b.rank() == 0 {
        return Err(format!("both operands must be at least 1-D, got {a} and {b}"));
    }
    let a2 = if a.rank() == 1 { Shape::from([1, a.0[0]]) } else { a.clone() };
    let b2 = if b.rank() == 1 { Shape::from([b.0[0], 1]) } else { b.clone() };
    let (m, k) = (a2.0[a2.rank() - 2], a2.0[a2.rank() - 1]);
    let (k2, n) = (b2.0[b2.rank() - 2], b2.0[b2.rank() - 1]);
    if k != k2 {
        return Err(format!(
            "mat1 and mat2 shapes cannot be multiplied ({a} and {b}: inner dimensions {k} and {k2} differ)"
        ));
    }
    let ba = Shape::from(&a2.0[..a2.rank() - 2]);
    let bb = Shape::from(&b2.0[..b2.rank() - 2]);
    let batch = broadcast_shapes(&ba, &bb)
        .ok_or_else(|| format!("batch dimensions {ba} and {bb} cannot be broadcast together"))?;
    let mut out = batch.0;
    if a.rank() > 1 {
        out.push(m);
    }
    if b.rank() > 1 {
        out.push(n);
    }
    Ok(Shape(out))
}

fn check_perm(perm: &[usize], rank: usize) -> Result<(), String> {
    let mut seen = vec![false; rank];
    if perm.len() != rank {
        return Err(format!("perm {perm:?} has {} entries for rank {rank}", perm.len()));
    }
    for &p in perm {
        if p >= rank || std::mem::replace(&mut seen[p], true) {
            return Err(format!("perm {perm:?} is not a permutation of 0..{rank}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[usize]) -> Shape {
        Shape::from(v.to_vec())
    }

    #[test]
    fn matmul_shapes_follow_numpy() {
        assert_eq!(matmul_shape(&s(&[2, 3]), &s(&[3, 4])), Ok(s(&[2, 4])));
        assert_eq!(matmul_shape(&s(&[3]), &s(&[3, 4])), Ok(s(&[4])));
        assert_eq!(matmul_shape(&s(&[2, 3]), &s(&[3])), Ok(s(&[2])));
        assert_eq!(matmul_shape(&s(&[3]), &s(&[3])), Ok(s(&[])));
        assert_eq!(matmul_shape(&s(&[5, 1, 2, 3]), &s(&[4, 3, 6])), Ok(s(&[5, 4, 2, 6])));
        let e = matmul_shape(&s(&[2, 3]), &s(&[4, 5])).unwrap_err();
        assert!(e.contains("[2, 3]") && e.contains("[4, 5]"), "{e}");
    }

    #[test]
    fn slices_resolve_like_onnx() {
        let r = SliceRange::resolve(1, 1000, 2, 7).unwrap();
        assert_eq!((r.start, r.step, r.len), (1, 2, 3));
        let r = SliceRange::resolve(-1, i64::MIN, -1, 4).unwrap();
        assert_eq!((r.start, r.step, r.len), (3, -1, 4));
        let r = SliceRange::resolve(3, 1, 1, 4).unwrap();
        assert_eq!(r.len, 0);
        assert!(SliceRange::resolve(0, 1, 0, 4).is_err());
        assert_eq!(SliceRange::resolve(0, 10, i64::MAX, 10).unwrap().len, 1);
        assert_eq!(SliceRange::resolve(9, -100, i64::MIN, 10).unwrap().len, 1);
    }

    #[test]
    fn reduce_axes_normalise() {
        assert_eq!(reduce_axes(&[], 3), Ok(vec![0, 1, 2]));
        assert_eq!(reduce_axes(&[-1, 0], 3), Ok(vec![0, 2]));
        assert!(reduce_axes(&[1, -2], 3).is_err());
        assert!(reduce_axes(&[3], 3).is_err());
    }
}
