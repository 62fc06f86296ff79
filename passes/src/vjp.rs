//! Vector–Jacobian products: the one place that knows how each op routes gradients back.
//!
//! Every rule is built from ordinary IR ops and refers to the forward values (operands `x`, result
//! `y`) as graph nodes, so the reverse graph is itself differentiable (higher-order gradients).
//! Where an op is not differentiable at a point, the rule follows PyTorch's documented choice
//! (`tools/autograd/derivatives.yaml` and the autograd mechanics note); each such choice is written
//! at its rule.

use crate::autodiff::{full_like, sum_to};
use crate::error::Result;
use kiln_ir::{BinaryOp, CompareOp, Graph, NodeId, Op, ReduceOp, Shape, SliceRange, UnaryOp};

/// The gradient contribution of node `y = op(xs)` to its operand `xs[slot]`, given the incoming
/// gradient `gy` (same type as `y`). `None` means the operand receives no gradient through this
/// op (non-float operand, comparison, `Where` condition, integer casts).
pub fn vjp(g: &mut Graph, y: NodeId, xs: &[NodeId], slot: usize, gy: NodeId) -> Result<Option<NodeId>> {
    let x = xs[slot];
    if !g.node(x).dtype.is_float() {
        return Ok(None);
    }
    let op = g.node(y).op.clone();
    let dx = match op {
        Op::Input { .. } | Op::Constant(_) => return Ok(None),
        Op::Unary(u) => Some(unary(g, u, x, y, gy)?),
        Op::Binary(b) => Some(binary(g, b, xs, slot, y, gy)?),
        // Comparisons produce bool: no gradient flows into their operands.
        Op::Compare(_) => None,
        Op::Where => {
            // d/dx where(c, x, z) = where(c, gy, 0); the condition has no gradient.
            let c = xs[0];
            let zero = g.scalar_like(gy, 0.0);
            match slot {
                0 => None,
                1 => Some(g.where_(c, gy, zero)?),
                _ => Some(g.where_(c, zero, gy)?),
            }
        }
        Op::Cast { to } => {
            // Only float-to-float casts carry gradients (cast back); int/bool casts cut the graph.
            let from = g.node(x).dtype;
            to.is_float().then(|| g.cast(gy, from)).transpose()?
        }
        Op::Reduce { op, axes, keepdims } => Some(reduce(g, op, &axes, keepdims, x, y, gy)?),
        Op::MatMul => Some(matmul(g, xs, slot, gy)?),
        Op::Reshape { .. } => {
            let s = g.node(x).shape.0.clone();
            Some(g.reshape(gy, s)?)
        }
        Op::Transpose { perm } => {
            let mut inv = vec![0; perm.len()];
            for (i, &p) in perm.iter().enumerate() {
                inv[p] = i;
            }
            Some(g.transpose(gy, inv)?)
        }
        Op::Expand { .. } => {
            let s = g.node(x).shape.clone();
            Some(sum_to(g, gy, &s)?)
        }
        Op::Slice { .. } => Some(slice(g, &op, x, gy)?),
        Op::Concat { axis } => {
            let ax = g.node(y).shape.axis(axis).expect("verified axis");
            let offset: usize = xs[..slot].iter().map(|&o| g.node(o).shape.0[ax]).sum();
            let len = g.node(x).shape.0[ax];
            Some(g.slice(gy, vec![offset as i64], vec![(offset + len) as i64], vec![ax as i64], vec![1])?)
        }
    };
    // Elementwise ops broadcast their operands: undo it.
    match dx {
        Some(d) if op_broadcasts(&g.node(y).op) => {
            let s = g.node(x).shape.clone();
            Ok(Some(sum_to(g, d, &s)?))
        }
        other => Ok(other),
    }
}

fn op_broadcasts(op: &Op) -> bool {
    matches!(op, Op::Binary(_) | Op::Where)
}

fn unary(g: &mut Graph, u: UnaryOp, x: NodeId, y: NodeId, gy: NodeId) -> Result<NodeId> {
    Ok(match u {
        UnaryOp::Neg => g.neg(gy)?,
        // abs'(0) = 0: PyTorch uses sgn(x), and sign(0) = 0.
        UnaryOp::Abs => {
            let s = g.unary(UnaryOp::Sign, x)?;
            g.mul(gy, s)?
        }
        UnaryOp::Exp => g.mul(gy, y)?,
        UnaryOp::Log => g.div(gy, x)?,
        // sqrt'(x) = 1 / (2 sqrt(x)), written with the result as PyTorch does: sqrt'(0) = inf.
        UnaryOp::Sqrt => {
            let two = g.scalar_like(y, 2.0);
            let d = g.mul(two, y)?;
            g.div(gy, d)?
        }
        UnaryOp::Reciprocal => {
            let yy = g.mul(y, y)?;
            let m = g.mul(gy, yy)?;
            g.neg(m)?
        }
        UnaryOp::Tanh => {
            let one = g.scalar_like(y, 1.0);
            let yy = g.mul(y, y)?;
            let d = g.sub(one, yy)?;
            g.mul(gy, d)?
        }
        UnaryOp::Sigmoid => {
            let one = g.scalar_like(y, 1.0);
            let om = g.sub(one, y)?;
            let d = g.mul(y, om)?;
            g.mul(gy, d)?
        }
        // relu'(0) = 0 (PyTorch's threshold_backward passes the gradient only where result > 0).
        UnaryOp::Relu => {
            let zero = g.scalar_like(y, 0.0);
            let pos = g.compare(CompareOp::Greater, y, zero)?;
            g.where_(pos, gy, zero)?
        }
        UnaryOp::Erf => {
            let k = g.scalar_like(x, std::f64::consts::FRAC_2_SQRT_PI);
            let xx = g.mul(x, x)?;
            let nxx = g.neg(xx)?;
            let e = g.unary(UnaryOp::Exp, nxx)?;
            let d = g.mul(k, e)?;
            g.mul(gy, d)?
        }
        UnaryOp::Sin => {
            let c = g.unary(UnaryOp::Cos, x)?;
            g.mul(gy, c)?
        }
        UnaryOp::Cos => {
            let s = g.unary(UnaryOp::Sin, x)?;
            let m = g.mul(gy, s)?;
            g.neg(m)?
        }
        // sign is piecewise constant: PyTorch's sign backward is zeros_like(x).
        UnaryOp::Sign => full_like(g, x, 0.0),
    })
}

fn binary(g: &mut Graph, b: BinaryOp, xs: &[NodeId], slot: usize, y: NodeId, gy: NodeId) -> Result<NodeId> {
    let (a, c) = (xs[0], xs[1]);
    Ok(match (b, slot) {
        (BinaryOp::Add, _) => gy,
        (BinaryOp::Sub, 0) => gy,
        (BinaryOp::Sub, _) => g.neg(gy)?,
        (BinaryOp::Mul, 0) => g.mul(gy, c)?,
        (BinaryOp::Mul, _) => g.mul(gy, a)?,
        (BinaryOp::Div, 0) => g.div(gy, c)?,
        // d/db a/b = -a / b².
        (BinaryOp::Div, _) => {
            let ga = g.mul(gy, a)?;
            let n = g.neg(ga)?;
            let bb = g.mul(c, c)?;
            g.div(n, bb)?
        }
        (BinaryOp::Pow, 0) => pow_base(g, a, c, gy)?,
        // d/db a^b = a^b · ln a; PyTorch masks it to 0 where a == 0 and b >= 0 (the limit).
        (BinaryOp::Pow, _) => {
            let l = g.unary(UnaryOp::Log, a)?;
            let yl = g.mul(y, l)?;
            let v = g.mul(gy, yl)?;
            let zero = g.scalar_like(a, 0.0);
            let b_neg = g.compare(CompareOp::Less, c, zero)?;
            let inner = g.where_(b_neg, v, zero)?;
            let a_zero = g.compare(CompareOp::Equal, a, zero)?;
            g.where_(a_zero, inner, v)?
        }
        // Ties send half the gradient to each side, as PyTorch's maximum/minimum do.
        (BinaryOp::Max, s) => tie_split(g, CompareOp::Greater, xs, s, gy)?,
        (BinaryOp::Min, s) => tie_split(g, CompareOp::Less, xs, s, gy)?,
    })
}

/// d/da a^b = b · a^(b-1), and 0 where b == 0 (PyTorch's pow_backward). A constant exponent
/// (the common `x.pow(2)`) is folded into new constants so the reverse graph stays small.
fn pow_base(g: &mut Graph, a: NodeId, b: NodeId, gy: NodeId) -> Result<NodeId> {
    if let Op::Constant(lit) = &g.node(b).op {
        if let Some(c) = lit.uniform_value() {
            if c == 0.0 {
                return Ok(full_like(g, gy, 0.0));
            }
            let dt = g.node(b).dtype;
            let (cn, cm1) = (g.scalar(dt, c), g.scalar(dt, c - 1.0));
            let p = g.pow(a, cm1)?;
            let d = g.mul(cn, p)?;
            return Ok(g.mul(gy, d)?);
        }
    }
    let one = g.scalar_like(b, 1.0);
    let zero = g.scalar_like(b, 0.0);
    let bm1 = g.sub(b, one)?;
    let p = g.pow(a, bm1)?;
    let d = g.mul(b, p)?;
    let v = g.mul(gy, d)?;
    let b_zero = g.compare(CompareOp::Equal, b, zero)?;
    Ok(g.where_(b_zero, zero, v)?)
}

/// Gradient of max/min to operand `slot`: all of `gy` where that side wins, half at ties.
fn tie_split(g: &mut Graph, wins: CompareOp, xs: &[NodeId], slot: usize, gy: NodeId) -> Result<NodeId> {
    let (me, other) = if slot == 0 { (xs[0], xs[1]) } else { (xs[1], xs[0]) };
    let win = g.compare(wins, me, other)?;
    let tie = g.compare(CompareOp::Equal, me, other)?;
    let half = g.scalar_like(gy, 0.5);
    let zero = g.scalar_like(gy, 0.0);
    let hg = g.mul(gy, half)?;
    let at_tie = g.where_(tie, hg, zero)?;
    Ok(g.where_(win, gy, at_tie)?)
}

fn reduce(
    g: &mut Graph,
    op: ReduceOp,
    axes: &[i64],
    keepdims: bool,
    x: NodeId,
    y: NodeId,
    gy: NodeId,
) -> Result<NodeId> {
    let xs = g.node(x).shape.clone();
    let axes = kiln_ir::op::reduce_axes(axes, xs.rank()).map_err(crate::Error::Autodiff)?;
    let kept = kiln_ir::op::reduced_shape(&xs, &axes, true);
    let keep = |g: &mut Graph, v: NodeId| -> Result<NodeId> {
        Ok(if keepdims { v } else { g.reshape(v, kept.0.clone())? })
    };
    let gk = keep(g, gy)?;
    Ok(match op {
        ReduceOp::Sum => g.expand(gk, xs.0.clone())?,
        ReduceOp::Mean => {
            let count: usize = axes.iter().map(|&a| xs.0[a]).product();
            let inv = g.scalar_like(gy, 1.0 / count as f64);
            let scaled = g.mul(gk, inv)?;
            g.expand(scaled, xs.0.clone())?
        }
        // Ties share the gradient evenly, like PyTorch's amax/max() backward
        // (evenly_distribute_backward): grad · [x == max] / count(x == max).
        ReduceOp::Max => {
            let yk = keep(g, y)?;
            let eq = g.compare(CompareOp::Equal, x, yk)?;
            let dt = g.node(x).dtype;
            let mask = g.cast(eq, dt)?;
            let count = g.reduce(ReduceOp::Sum, mask, axes.iter().map(|&a| a as i64).collect(), true)?;
            let share = g.div(gk, count)?;
            g.mul(mask, share)?
        }
    })
}

fn transpose_last2(g: &mut Graph, v: NodeId) -> Result<NodeId> {
    let r = g.node(v).shape.rank();
    let mut perm: Vec<usize> = (0..r).collect();
    perm.swap(r - 2, r - 1);
    Ok(g.transpose(v, perm)?)
}

/// MatMul with numpy semantics: promote 1-D operands, multiply by the transposed other side,
/// sum broadcast batch dims away, and drop the promoted dims again.
fn matmul(g: &mut Graph, xs: &[NodeId], slot: usize, gy: NodeId) -> Result<NodeId> {
    let (a, b) = (xs[0], xs[1]);
    let (sa, sb) = (g.node(a).shape.clone(), g.node(b).shape.clone());
    let promoted = |s: &Shape, front: bool| match (s.rank(), front) {
        (1, true) => Shape::from(vec![1, s.0[0]]),
        (1, false) => Shape::from(vec![s.0[0], 1]),
        _ => s.clone(),
    };
    let (s_a2, s_b2) = (promoted(&sa, true), promoted(&sb, false));
    let out2 = kiln_ir::op::matmul_shape(&s_a2, &s_b2).map_err(crate::Error::Autodiff)?;
    let gy2 = if g.node(gy).shape == out2 { gy } else { g.reshape(gy, out2.0.clone())? };
    // Only the other operand is read: promote just that one.
    let (d2, target2, target) = if slot == 0 {
        let b2 = if s_b2 == sb { b } else { g.reshape(b, s_b2.0.clone())? };
        let bt = transpose_last2(g, b2)?;
        (g.matmul(gy2, bt)?, s_a2, sa)
    } else {
        let a2 = if s_a2 == sa { a } else { g.reshape(a, s_a2.0.clone())? };
        let at = transpose_last2(g, a2)?;
        (g.matmul(at, gy2)?, s_b2, sb)
    };
    let d2 = sum_to(g, d2, &target2)?;
    Ok(if target2 == target { d2 } else { g.reshape(d2, target.0)? })
}

/// Slice routes the gradient back into a zero tensor of the input's shape. Per sliced axis:
/// undo a negative step by reversing, interleave zeros for steps > 1, then pad with zeros before
/// and after — all with Slice, Reshape, Expand and Concat.
fn slice(g: &mut Graph, op: &Op, x: NodeId, gy: NodeId) -> Result<NodeId> {
    let xs = g.node(x).shape.clone();
    let ranges = op.slice_ranges(&xs).map_err(crate::Error::Autodiff)?;
    if ranges.iter().any(|r| r.len == 0) {
        return Ok(full_like(g, x, 0.0));
    }
    let mut cur = gy;
    for (ax, (r, &dim)) in ranges.iter().zip(&xs.0).enumerate() {
        let SliceRange { start, step, len } = *r;
        if step == 1 && len == dim {
            continue;
        }
        let (first, stride) = if step < 0 {
            let rev = g.slice(cur, vec![-1], vec![i64::MIN], vec![ax as i64], vec![-1])?;
            cur = rev;
            ((start as i64 + (len as i64 - 1) * step) as usize, (-step) as usize)
        } else {
            (start, step as usize)
        };
        if stride > 1 && len > 1 {
            cur = interleave_zeros(g, cur, ax, stride)?;
        }
        let extent = (len - 1) * stride + 1;
        cur = pad_axis(g, cur, ax, first, dim - first - extent)?;
    }
    Ok(cur)
}

/// `[.., L, ..]` → `[.., (L-1)·k + 1, ..]` with `k-1` zeros between consecutive elements.
fn interleave_zeros(g: &mut Graph, v: NodeId, ax: usize, k: usize) -> Result<NodeId> {
    let s = g.node(v).shape.clone();
    let len = s.0[ax];
    let mut split = s.0.to_vec();
    split.insert(ax + 1, 1);
    let col = g.reshape(v, split.clone())?;
    let mut zshape = split.clone();
    zshape[ax + 1] = k - 1;
    let z = zeros(g, v, zshape);
    let both = g.concat(&[col, z], (ax + 1) as i64)?;
    let mut flat = s.0.to_vec();
    flat[ax] = len * k;
    let spread = g.reshape(both, flat)?;
    Ok(g.slice(spread, vec![0], vec![((len - 1) * k + 1) as i64], vec![ax as i64], vec![1])?)
}

/// Zero-pads `v` with `before` and `after` elements along `ax`.
fn pad_axis(g: &mut Graph, v: NodeId, ax: usize, before: usize, after: usize) -> Result<NodeId> {
    let s = g.node(v).shape.clone();
    let mut parts = Vec::with_capacity(3);
    for (n, is_data) in [(before, false), (0, true), (after, false)] {
        if is_data {
            parts.push(v);
        } else if n > 0 {
            let mut zs = s.0.to_vec();
            zs[ax] = n;
            parts.push(zeros(g, v, zs));
        }
    }
    if parts.len() == 1 {
        return Ok(v);
    }
    Ok(g.concat(&parts, ax as i64)?)
}

fn zeros(g: &mut Graph, like: NodeId, shape: Vec<usize>) -> NodeId {
    let z = g.scalar_like(like, 0.0);
    g.expand(z, shape).expect("a scalar expands to any shape")
}
