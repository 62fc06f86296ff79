//! One lowering per ONNX op: the node's inputs and attributes → kiln primitive nodes.
//!
//! Where an op changed between opset versions (attributes that became inputs, Softmax's 2-D
//! coercion before opset 13, ...), the version the model imports decides. Semantics follow the
//! ONNX operator specification; composites use the decompositions of `kiln_ir::composite`.

use super::attrs::Attrs;
use super::Cx;
use crate::proto::NodeProto;
use crate::tensor::dtype_of;
use kiln_ir::{
    broadcast_shapes, normalize_axis, BinaryOp, CompareOp, DType, NodeId, Op, ReduceOp, UnaryOp, Value,
};

type Outs = Vec<Option<NodeId>>;

/// The ops [`lower`] accepts, for documentation and error messages.
pub const SUPPORTED_OPS: &[&str] = &[
    "Abs",
    "Add",
    "And",
    "Cast",
    "CastLike",
    "Clip",
    "Concat",
    "Constant",
    "ConstantOfShape",
    "Cos",
    "Div",
    "Dropout",
    "Equal",
    "Erf",
    "Exp",
    "Expand",
    "Flatten",
    "Gelu",
    "Gemm",
    "Greater",
    "GreaterOrEqual",
    "Identity",
    "LayerNormalization",
    "LeakyRelu",
    "Less",
    "LessOrEqual",
    "Log",
    "LogSoftmax",
    "MatMul",
    "Max",
    "Mean",
    "Min",
    "Mul",
    "Neg",
    "Not",
    "Or",
    "Pow",
    "Reciprocal",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceMax",
    "ReduceMean",
    "ReduceMin",
    "ReduceSum",
    "ReduceSumSquare",
    "Relu",
    "Reshape",
    "Shape",
    "Sigmoid",
    "Sign",
    "Sin",
    "Size",
    "Slice",
    "Softmax",
    "Sqrt",
    "Squeeze",
    "Sub",
    "Sum",
    "Tanh",
    "Transpose",
    "Unsqueeze",
    "Where",
];

/// Lowers node `n`; returns one node per ONNX output (`None` for an optional output kiln does
/// not produce).
pub(crate) fn lower(cx: &mut Cx, n: &NodeProto) -> Result<Outs, String> {
    let a = Attrs(&n.attribute);
    let one = |id: NodeId| Ok(vec![Some(id)]);
    let op = n.op_type.as_str();
    if let Some(u) = unary(op) {
        let x = cx.input(n, 0)?;
        return one(cx.add(Op::Unary(u), &[x])?);
    }
    if let Some(b) = binary(op) {
        let (x, mut y) = (cx.input(n, 0)?, cx.input(n, 1)?);
        // Pow alone allows an exponent of another type; it is cast to the base's.
        if b == BinaryOp::Pow && cx.dtype(y) != cx.dtype(x) {
            y = cx.add(Op::Cast { to: cx.dtype(x) }, &[y])?;
        }
        return one(cx.add(Op::Binary(b), &[x, y])?);
    }
    match op {
        "Equal" | "Less" | "Greater" => {
            let c = match op {
                "Equal" => CompareOp::Equal,
                "Less" => CompareOp::Less,
                _ => CompareOp::Greater,
            };
            let (x, y) = (cx.input(n, 0)?, cx.input(n, 1)?);
            one(cx.add(Op::Compare(c), &[x, y])?)
        }
        "LessOrEqual" | "GreaterOrEqual" => {
            let c = if op == "LessOrEqual" { CompareOp::Greater } else { CompareOp::Less };
            let (x, y) = (cx.input(n, 0)?, cx.input(n, 1)?);
            let opposite = cx.add(Op::Compare(c), &[x, y])?;
            one(not(cx, opposite)?)
        }
        "Not" => {
            let x = cx.input(n, 0)?;
            one(not(cx, x)?)
        }
        "And" | "Or" => {
            let (x, y) = (cx.input(n, 0)?, cx.input(n, 1)?);
            let (t, f) = (cx.scalar(DType::Bool, 1.0), cx.scalar(DType::Bool, 0.0));
            let r = if op == "And" { cx.add(Op::Where, &[x, y, f])? } else { cx.add(Op::Where, &[x, t, y])? };
            one(r)
        }
        "Max" | "Min" | "Sum" | "Mean" => {
            let b = match op {
                "Max" => BinaryOp::Max,
                "Min" => BinaryOp::Min,
                _ => BinaryOp::Add,
            };
            let xs = (0..n.input.len()).map(|i| cx.input(n, i)).collect::<Result<Vec<_>, _>>()?;
            let (&first, rest) = xs.split_first().ok_or("expects at least one input")?;
            let mut acc = first;
            for &x in rest {
                acc = cx.add(Op::Binary(b), &[acc, x])?;
            }
            if op == "Mean" && xs.len() > 1 {
                let k = cx.scalar_like(acc, xs.len() as f64);
                acc = cx.add(Op::Binary(BinaryOp::Div), &[acc, k])?;
            }
            one(acc)
        }
        "Where" => {
            let (c, x, y) = (cx.input(n, 0)?, cx.input(n, 1)?, cx.input(n, 2)?);
            one(cx.add(Op::Where, &[c, x, y])?)
        }
        "MatMul" => {
            let (x, y) = (cx.input(n, 0)?, cx.input(n, 1)?);
            one(cx.add(Op::MatMul, &[x, y])?)
        }
        "Identity" => one(cx.input(n, 0)?),
        "Cast" => {
            let x = cx.input(n, 0)?;
            let to = dtype_of(a.int("to", 0)? as i32).map_err(|m| format!("Cast 'to': {m}"))?;
            one(cx.add(Op::Cast { to }, &[x])?)
        }
        "CastLike" => {
            let (x, like) = (cx.input(n, 0)?, cx.input(n, 1)?);
            one(cx.add(Op::Cast { to: cx.dtype(like) }, &[x])?)
        }
        "Constant" => one(constant(cx, &a)?),
        "Shape" => {
            let s = cx.shape(cx.input(n, 0)?);
            let r = s.len() as i64;
            let clampi = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
            let (start, end) = (clampi(a.int("start", 0)?), clampi(a.int("end", r)?));
            let dims: Vec<i64> =
                s.get(start..end.max(start)).unwrap_or(&[]).iter().map(|&d| d as i64).collect();
            one(int_constant(cx, dims)?)
        }
        "Size" => {
            let n_el = cx.g.node(cx.input(n, 0)?).shape.numel() as i64;
            let v = Value::I64(ndarray::arr0(n_el).into_dyn());
            one(cx.constant(&v)?)
        }
        "ConstantOfShape" => {
            let dims = cx.const_ints(n, 0, "shape")?.ok_or("input 0 is required")?;
            let shape = crate::tensor::shape_of(&dims)?;
            let fill = match a.tensor("value")? {
                Some(t) => crate::tensor::to_value(t, "value").map_err(|e| e.reason)?,
                None => Value::F32(ndarray::arr0(0.0f32).into_dyn()),
            };
            if fill.numel() != 1 {
                return Err("the 'value' attribute must hold one element".into());
            }
            one(filled(cx, &fill, shape)?)
        }
        "Transpose" => {
            let x = cx.input(n, 0)?;
            let rank = cx.shape(x).len();
            let perm = match a.ints("perm")? {
                Some(p) => p.iter().map(|&v| axis(v, rank)).collect::<Result<Vec<_>, _>>()?,
                None => (0..rank).rev().collect(),
            };
            one(cx.add(Op::Transpose { perm }, &[x])?)
        }
        "Reshape" => {
            let x = cx.input(n, 0)?;
            let target = if cx.opset < 5 {
                a.ints("shape")?.ok_or("the 'shape' attribute is required")?
            } else {
                cx.const_ints(n, 1, "shape")?.ok_or("input 1 (shape) is required")?
            };
            let shape = reshape_target(&cx.shape(x), &target, a.int("allowzero", 0)? != 0)?;
            one(cx.add(Op::Reshape { shape }, &[x])?)
        }
        "Flatten" => {
            let x = cx.input(n, 0)?;
            let s = cx.shape(x);
            let ax = if s.is_empty() { 0 } else { axis_incl(a.int("axis", 1)?, s.len())? };
            let shape = vec![prod(&s[..ax]), prod(&s[ax..])];
            one(cx.add(Op::Reshape { shape }, &[x])?)
        }
        "Expand" => {
            let x = cx.input(n, 0)?;
            let dims = cx.const_ints(n, 1, "shape")?.ok_or("input 1 (shape) is required")?;
            let to = kiln_ir::Shape::from(crate::tensor::shape_of(&dims)?);
            let from = cx.g.node(x).shape.clone();
            // ONNX Expand broadcasts both ways: the result has the broadcast of both shapes.
            let out = broadcast_shapes(&from, &to)
                .ok_or_else(|| format!("shape {from} cannot be expanded to {to}"))?;
            one(cx.add(Op::Expand { shape: out.0.to_vec() }, &[x])?)
        }
        "Squeeze" | "Unsqueeze" => {
            let x = cx.input(n, 0)?;
            let axes = if cx.opset < 13 { a.ints("axes")? } else { cx.const_ints(n, 1, "axes")? };
            let s = cx.shape(x);
            let shape = if op == "Squeeze" {
                squeezed(&s, axes)?
            } else {
                unsqueezed(&s, &axes.ok_or("axes are required")?)?
            };
            one(cx.add(Op::Reshape { shape }, &[x])?)
        }
        "Slice" => {
            let x = cx.input(n, 0)?;
            let rank = cx.shape(x).len();
            let (starts, ends, axes, steps) = if cx.opset < 10 {
                (a.ints("starts")?, a.ints("ends")?, a.ints("axes")?, None)
            } else {
                (
                    cx.const_ints(n, 1, "starts")?,
                    cx.const_ints(n, 2, "ends")?,
                    cx.const_ints(n, 3, "axes")?,
                    cx.const_ints(n, 4, "steps")?,
                )
            };
            let starts = starts.ok_or("starts are required")?;
            let ends = ends.ok_or("ends are required")?;
            let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
            let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
            if axes.len() > rank {
                return Err(format!("{} axes for a rank-{rank} input", axes.len()));
            }
            one(cx.add(Op::Slice { starts, ends, axes, steps }, &[x])?)
        }
        "Concat" => {
            let xs = (0..n.input.len()).map(|i| cx.input(n, i)).collect::<Result<Vec<_>, _>>()?;
            if !a.has("axis") {
                return Err("the 'axis' attribute is required".into());
            }
            one(cx.add(Op::Concat { axis: a.int("axis", 0)? }, &xs)?)
        }
        "ReduceSum" | "ReduceMean" | "ReduceMax" | "ReduceMin" | "ReduceSumSquare" | "ReduceL1"
        | "ReduceL2" | "ReduceLogSum" | "ReduceLogSumExp" => one(reduce(cx, n, &a)?),
        "Gemm" => one(gemm(cx, n, &a)?),
        "Softmax" | "LogSoftmax" => {
            let x = cx.input(n, 0)?;
            let log = op == "LogSoftmax";
            if cx.opset >= 13 {
                let ax = a.int("axis", -1)?;
                return one(softmax(cx, x, ax, log)?);
            }
            // Before opset 13 the input is viewed as 2-D [prod(d[..axis]), prod(d[axis..])].
            let s = cx.shape(x);
            let ax = axis_incl(a.int("axis", 1)?, s.len())?;
            let flat = cx.add(Op::Reshape { shape: vec![prod(&s[..ax]), prod(&s[ax..])] }, &[x])?;
            let y = softmax(cx, flat, 1, log)?;
            one(cx.add(Op::Reshape { shape: s }, &[y])?)
        }
        "LayerNormalization" => layer_norm(cx, n, &a),
        "Gelu" => {
            let x = cx.input(n, 0)?;
            match a.string("approximate")?.as_deref().unwrap_or("none") {
                "none" => one(cx.g.gelu(x).map_err(|e| e.to_string())?),
                "tanh" => one(gelu_tanh(cx, x)?),
                other => Err(format!("approximate = '{other}' is not supported (only 'none' and 'tanh')")),
            }
        }
        "Clip" => {
            let x = cx.input(n, 0)?;
            let (lo, hi) = if cx.opset < 11 {
                let lo = a.has("min").then(|| a.float("min", 0.0)).transpose()?;
                let hi = a.has("max").then(|| a.float("max", 0.0)).transpose()?;
                (lo.map(|v| cx.scalar_like(x, v as f64)), hi.map(|v| cx.scalar_like(x, v as f64)))
            } else {
                (cx.opt_input(n, 1)?, cx.opt_input(n, 2)?)
            };
            let mut y = x;
            // Lower bound first, then upper: with min > max every element becomes max, as
            // ONNX specifies.
            if let Some(lo) = lo {
                let below = cx.add(Op::Compare(CompareOp::Less), &[y, lo])?;
                y = cx.add(Op::Where, &[below, lo, y])?;
            }
            if let Some(hi) = hi {
                let above = cx.add(Op::Compare(CompareOp::Greater), &[y, hi])?;
                y = cx.add(Op::Where, &[above, hi, y])?;
            }
            one(y)
        }
        "LeakyRelu" => {
            let x = cx.input(n, 0)?;
            let alpha = cx.scalar_like(x, a.float("alpha", 0.01)? as f64);
            let zero = cx.scalar_like(x, 0.0);
            let neg = cx.add(Op::Compare(CompareOp::Less), &[x, zero])?;
            let ax = cx.add(Op::Binary(BinaryOp::Mul), &[x, alpha])?;
            one(cx.add(Op::Where, &[neg, ax, x])?)
        }
        "Dropout" => dropout(cx, n, &a),
        other => Err(format!(
            "op '{other}' is not supported by kiln's ONNX importer (supported: {})",
            SUPPORTED_OPS.join(", ")
        )),
    }
}

fn unary(op: &str) -> Option<UnaryOp> {
    UnaryOp::ALL.into_iter().find(|u| u.name() == op)
}

fn binary(op: &str) -> Option<BinaryOp> {
    // Max and Min are variadic in ONNX: handled with Sum and Mean.
    BinaryOp::ALL.into_iter().filter(|b| !matches!(b, BinaryOp::Max | BinaryOp::Min)).find(|b| b.name() == op)
}

fn not(cx: &mut Cx, x: NodeId) -> Result<NodeId, String> {
    let (t, f) = (cx.scalar(DType::Bool, 1.0), cx.scalar(DType::Bool, 0.0));
    cx.add(Op::Where, &[x, f, t])
}

/// An axis in `0..rank` (negative counts from the end).
fn axis(a: i64, rank: usize) -> Result<usize, String> {
    normalize_axis(a, rank).ok_or_else(|| format!("axis {a} is out of range for rank {rank}"))
}

/// An axis in `0..=rank` (Flatten's and Softmax's split points).
fn axis_incl(a: i64, rank: usize) -> Result<usize, String> {
    let r = rank as i64;
    let v = if a < 0 { a + r } else { a };
    if (0..=r).contains(&v) {
        Ok(v as usize)
    } else {
        Err(format!("axis {a} is out of range for rank {rank}"))
    }
}

/// The element count of `dims`, saturating (shapes in a damaged model can be absurd; kiln's
/// shape inference then reports them instead of overflowing).
fn prod(dims: &[usize]) -> usize {
    kiln_ir::Shape::from(dims).numel()
}

/// A tensor of `shape` filled with the single element of `fill`: a scalar constant broadcast
/// by `Expand`, so that no buffer of the full size exists until a backend needs one (a model
/// may declare huge shapes).
fn filled(cx: &mut Cx, fill: &Value, shape: Vec<usize>) -> Result<NodeId, String> {
    let v = Value::from_literal(&fill.to_literal(), &kiln_ir::Shape::scalar()).map_err(|e| e.to_string())?;
    let c = cx.constant(&v)?;
    cx.add(Op::Expand { shape }, &[c])
}

/// A 1-D int64 constant (Shape's result).
fn int_constant(cx: &mut Cx, v: Vec<i64>) -> Result<NodeId, String> {
    cx.constant(&Value::I64(ndarray::Array1::from(v).into_dyn()))
}

fn constant(cx: &mut Cx, a: &Attrs) -> Result<NodeId, String> {
    let v = if let Some(t) = a.tensor("value")? {
        crate::tensor::to_value(t, "value").map_err(|e| e.reason)?
    } else if a.has("value_float") {
        Value::F32(ndarray::arr0(a.float("value_float", 0.0)?).into_dyn())
    } else if let Some(fs) = a.floats("value_floats")? {
        Value::F32(ndarray::Array1::from(fs).into_dyn())
    } else if a.has("value_int") {
        Value::I64(ndarray::arr0(a.int("value_int", 0)?).into_dyn())
    } else if let Some(is) = a.ints("value_ints")? {
        Value::I64(ndarray::Array1::from(is).into_dyn())
    } else {
        return Err("only the value, value_float(s) and value_int(s) attributes are supported \
                    (string and sparse constants are not supported)"
            .into());
    };
    cx.constant(&v)
}

/// ONNX Reshape's target: `0` copies the input's dim (unless `allowzero`), one `-1` is inferred.
fn reshape_target(from: &[usize], target: &[i64], allowzero: bool) -> Result<Vec<usize>, String> {
    let numel = prod(from);
    let mut out = Vec::with_capacity(target.len());
    let mut infer = None;
    for (i, &d) in target.iter().enumerate() {
        match d {
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            0 if !allowzero => out.push(*from.get(i).ok_or_else(|| {
                format!("shape {target:?}: dim {i} is 0 but the input has rank {}", from.len())
            })?),
            d if d < 0 => {
                return Err(format!(
                    "shape {target:?} is invalid (only one -1 is allowed, no other negative dims)"
                ))
            }
            d => out.push(usize::try_from(d).map_err(|_| format!("shape {target:?} is too large"))?),
        }
    }
    if let Some(i) = infer {
        let known =
            out.iter().enumerate().filter(|&(j, _)| j != i).fold(1usize, |n, (_, &d)| n.saturating_mul(d));
        if known == 0 || numel % known != 0 {
            return Err(format!("shape {target:?} is invalid for an input of shape {from:?}"));
        }
        out[i] = numel / known;
    }
    Ok(out)
}

fn squeezed(s: &[usize], axes: Option<Vec<i64>>) -> Result<Vec<usize>, String> {
    let Some(axes) = axes else {
        return Ok(s.iter().copied().filter(|&d| d != 1).collect());
    };
    let axes = axes.iter().map(|&v| axis(v, s.len())).collect::<Result<Vec<_>, _>>()?;
    for &ax in &axes {
        if s[ax] != 1 {
            return Err(format!("cannot squeeze axis {ax} of extent {}", s[ax]));
        }
    }
    Ok(s.iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, &d)| d).collect())
}

fn unsqueezed(s: &[usize], axes: &[i64]) -> Result<Vec<usize>, String> {
    let rank = s.len() + axes.len();
    let mut ones = vec![false; rank];
    for &v in axes {
        let ax = axis(v, rank)?;
        if std::mem::replace(&mut ones[ax], true) {
            return Err(format!("axis {v} appears twice"));
        }
    }
    let mut rest = s.iter();
    Ok(ones.iter().map(|&one| if one { 1 } else { *rest.next().unwrap_or(&1) }).collect())
}

fn reduce(cx: &mut Cx, n: &NodeProto, a: &Attrs) -> Result<NodeId, String> {
    let op = n.op_type.as_str();
    let x = cx.input(n, 0)?;
    // Axes moved from an attribute to an input in opset 13 for ReduceSum, 18 for the others.
    let axes_as_input = cx.opset >= if op == "ReduceSum" { 13 } else { 18 };
    let axes = if axes_as_input { cx.const_ints(n, 1, "axes")? } else { a.ints("axes")? };
    let axes = axes.unwrap_or_default();
    if axes.is_empty() && axes_as_input && a.int("noop_with_empty_axes", 0)? != 0 {
        return Ok(x);
    }
    let keep = a.int("keepdims", 1)? != 0;
    let shape = cx.g.node(x).shape.clone();
    let reduced = kiln_ir::op::reduce_axes(&axes, shape.rank())?;
    if reduced.iter().any(|&ax| shape.0[ax] == 0) {
        // An empty reduction is the op's identity element, known at import time.
        let fill = match op {
            "ReduceMax" | "ReduceLogSum" | "ReduceLogSumExp" => f64::NEG_INFINITY,
            "ReduceMin" => f64::INFINITY,
            "ReduceMean" => f64::NAN,
            _ => 0.0,
        };
        let out = kiln_ir::op::reduced_shape(&shape, &reduced, keep);
        let v = Value::from_literal(&kiln_ir::Literal::scalar(cx.dtype(x), fill), &kiln_ir::Shape::scalar())
            .map_err(|e| e.to_string())?;
        return filled(cx, &v, out.0.to_vec());
    }
    let r = |cx: &mut Cx, op: ReduceOp, v: NodeId| {
        cx.add(Op::Reduce { op, axes: axes.clone(), keepdims: keep }, &[v])
    };
    let un = |cx: &mut Cx, u: UnaryOp, v: NodeId| cx.add(Op::Unary(u), &[v]);
    match op {
        "ReduceSum" => r(cx, ReduceOp::Sum, x),
        "ReduceMean" => r(cx, ReduceOp::Mean, x),
        "ReduceMax" => r(cx, ReduceOp::Max, x),
        "ReduceMin" => {
            let nx = un(cx, UnaryOp::Neg, x)?;
            let m = r(cx, ReduceOp::Max, nx)?;
            un(cx, UnaryOp::Neg, m)
        }
        "ReduceSumSquare" | "ReduceL2" => {
            let sq = cx.add(Op::Binary(BinaryOp::Mul), &[x, x])?;
            let s = r(cx, ReduceOp::Sum, sq)?;
            if op == "ReduceL2" {
                un(cx, UnaryOp::Sqrt, s)
            } else {
                Ok(s)
            }
        }
        "ReduceL1" => {
            let ab = un(cx, UnaryOp::Abs, x)?;
            r(cx, ReduceOp::Sum, ab)
        }
        "ReduceLogSum" => {
            let s = r(cx, ReduceOp::Sum, x)?;
            un(cx, UnaryOp::Log, s)
        }
        _ => {
            // log Σ exp(x) = m + log Σ exp(x - m), m = max(x) (kept dims for the broadcast).
            let m = cx.add(Op::Reduce { op: ReduceOp::Max, axes: axes.clone(), keepdims: true }, &[x])?;
            let sh = cx.add(Op::Binary(BinaryOp::Sub), &[x, m])?;
            let e = un(cx, UnaryOp::Exp, sh)?;
            let s = cx.add(Op::Reduce { op: ReduceOp::Sum, axes: axes.clone(), keepdims: true }, &[e])?;
            let l = un(cx, UnaryOp::Log, s)?;
            let y = cx.add(Op::Binary(BinaryOp::Add), &[l, m])?;
            if keep {
                Ok(y)
            } else {
                let out = kiln_ir::op::reduced_shape(&shape, &reduced, false);
                cx.add(Op::Reshape { shape: out.0.to_vec() }, &[y])
            }
        }
    }
}

fn gemm(cx: &mut Cx, n: &NodeProto, a: &Attrs) -> Result<NodeId, String> {
    let (mut x, mut w) = (cx.input(n, 0)?, cx.input(n, 1)?);
    for (id, attr) in [(&mut x, "transA"), (&mut w, "transB")] {
        if cx.shape(*id).len() != 2 {
            return Err(format!("inputs A and B must be 2-D, got {:?}", cx.shape(*id)));
        }
        if a.int(attr, 0)? != 0 {
            *id = cx.add(Op::Transpose { perm: vec![1, 0] }, &[*id])?;
        }
    }
    let mut y = cx.add(Op::MatMul, &[x, w])?;
    let alpha = a.float("alpha", 1.0)?;
    if alpha != 1.0 {
        let k = cx.scalar_like(y, alpha as f64);
        y = cx.add(Op::Binary(BinaryOp::Mul), &[y, k])?;
    }
    if let Some(mut c) = cx.opt_input(n, 2)? {
        let beta = a.float("beta", 1.0)?;
        if beta != 1.0 {
            let k = cx.scalar_like(c, beta as f64);
            c = cx.add(Op::Binary(BinaryOp::Mul), &[c, k])?;
        }
        y = cx.add(Op::Binary(BinaryOp::Add), &[y, c])?;
        if cx.shape(y)
            != cx.shape(x).iter().take(1).chain(cx.shape(w).iter().skip(1)).copied().collect::<Vec<_>>()
        {
            return Err(format!("C of shape {:?} does not broadcast to A·B", cx.shape(c)));
        }
    }
    Ok(y)
}

fn softmax(cx: &mut Cx, x: NodeId, ax: i64, log: bool) -> Result<NodeId, String> {
    axis(ax, cx.shape(x).len())?;
    let r = if log { cx.g.log_softmax(x, ax) } else { cx.g.softmax(x, ax) };
    r.map_err(|e| e.to_string())
}

/// tanh-approximated GELU: `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`.
fn gelu_tanh(cx: &mut Cx, x: NodeId) -> Result<NodeId, String> {
    let mul = |cx: &mut Cx, a, b| cx.add(Op::Binary(BinaryOp::Mul), &[a, b]);
    let x2 = mul(cx, x, x)?;
    let x3 = mul(cx, x2, x)?;
    let c = cx.scalar_like(x, 0.044715);
    let cx3 = mul(cx, x3, c)?;
    let inner = cx.add(Op::Binary(BinaryOp::Add), &[x, cx3])?;
    let k = cx.scalar_like(x, (2.0 / std::f64::consts::PI).sqrt());
    let arg = mul(cx, inner, k)?;
    let t = cx.add(Op::Unary(UnaryOp::Tanh), &[arg])?;
    let one = cx.scalar_like(x, 1.0);
    let onep = cx.add(Op::Binary(BinaryOp::Add), &[one, t])?;
    let half = cx.scalar_like(x, 0.5);
    let hx = mul(cx, half, x)?;
    mul(cx, hx, onep)
}

/// LayerNormalization (opset 17): normalise over axes `axis..rank`, then scale and shift.
/// Outputs: Y, Mean, InvStdDev (the last two with the reduced axes kept as 1).
fn layer_norm(cx: &mut Cx, n: &NodeProto, a: &Attrs) -> Result<Outs, String> {
    let x = cx.input(n, 0)?;
    let scale = cx.input(n, 1)?;
    let bias = cx.opt_input(n, 2)?;
    let rank = cx.shape(x).len();
    let ax = axis(a.int("axis", -1)?, rank)?;
    let eps = a.float("epsilon", 1e-5)? as f64;
    let axes: Vec<i64> = (ax as i64..rank as i64).collect();
    let mean = cx.add(Op::Reduce { op: ReduceOp::Mean, axes: axes.clone(), keepdims: true }, &[x])?;
    let d = cx.add(Op::Binary(BinaryOp::Sub), &[x, mean])?;
    let sq = cx.add(Op::Binary(BinaryOp::Mul), &[d, d])?;
    let var = cx.add(Op::Reduce { op: ReduceOp::Mean, axes, keepdims: true }, &[sq])?;
    let e = cx.scalar_like(x, eps);
    let ve = cx.add(Op::Binary(BinaryOp::Add), &[var, e])?;
    let sd = cx.add(Op::Unary(UnaryOp::Sqrt), &[ve])?;
    let inv = cx.add(Op::Unary(UnaryOp::Reciprocal), &[sd])?;
    let normed = cx.add(Op::Binary(BinaryOp::Mul), &[d, inv])?;
    let mut y = cx.add(Op::Binary(BinaryOp::Mul), &[normed, scale])?;
    if let Some(b) = bias {
        y = cx.add(Op::Binary(BinaryOp::Add), &[y, b])?;
    }
    if cx.shape(y) != cx.shape(x) {
        return Err(format!("Scale/B do not broadcast to the input's shape {:?}", cx.shape(x)));
    }
    Ok(vec![Some(y), Some(mean), Some(inv)])
}

/// Dropout at inference: the identity, with an all-true mask. Training mode (which draws random
/// masks) is refused unless the ratio is 0.
fn dropout(cx: &mut Cx, n: &NodeProto, a: &Attrs) -> Result<Outs, String> {
    let x = cx.input(n, 0)?;
    let training = if cx.opset >= 12 {
        let mode = match cx.opt_input(n, 2)? {
            None => false,
            Some(id) => {
                cx.const_value(id).and_then(Value::scalar_f64).ok_or(
                    "the training_mode input must be a constant (training-mode Dropout is not supported)",
                )? != 0.0
            }
        };
        // The ratio only matters in training mode.
        mode && cx.const_scalar(n, 1, "ratio")?.unwrap_or(0.5) != 0.0
    } else {
        cx.opset < 7 && a.int("is_test", 0)? == 0 && a.float("ratio", 0.5)? != 0.0
    };
    if training {
        return Err(
            "Dropout in training mode (random masks) is not supported; export the model for inference".into(),
        );
    }
    let mask = if n.output.get(1).is_some_and(|s| !s.is_empty()) {
        let t = Value::Bool(ndarray::arr0(true).into_dyn());
        Some(filled(cx, &t, cx.shape(x))?)
    } else {
        None
    };
    Ok(vec![Some(x), mask])
}
