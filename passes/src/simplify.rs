//! `simplify`: constant folding, algebraic identities, common-subexpression elimination by
//! hash-consing, and dead-code elimination, repeated until nothing changes.
//!
//! Every rewrite preserves values bit for bit on every input, with two documented exceptions
//! that IEEE arithmetic forces on any compiler that removes `x + 0`:
//! - `x + 0 → x` and `x - 0 → x` keep `-0.0` as `-0.0` where the original gave `+0.0`.
//! - nothing else: `x * 0 → 0` is applied to integers only, because for floats `inf * 0` and
//!   `NaN * 0` are NaN; `x - x`, `x / x` are left alone for the same reason.

use crate::error::Result;
use kiln_ir::interp::{eval_node, Value};
use kiln_ir::{BinaryOp, DType, Graph, Literal, Node, NodeId, Op, ReduceOp, Shape, UnaryOp};
use std::collections::HashMap;

/// Constants are folded only up to this many elements, so folding never turns a broadcast
/// scalar into a large literal.
const FOLD_LIMIT: usize = 64;

/// What [`simplify`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimplifyStats {
    pub folded: usize,
    pub rewritten: usize,
    pub merged: usize,
    pub removed: usize,
}

/// Simplifies `g` in place (inputs and the output list keep their meaning).
///
/// ```
/// let mut g = kiln_ir::parse("%0 = Input() {name=\"x\"} : f32[3]\n%1 = Constant() {value=[1.0]} : f32[]\n%2 = Mul(%0, %1) : f32[3]\n%3 = Neg(%2) : f32[3]\n%4 = Neg(%3) : f32[3]\nreturn %4\n").unwrap();
/// kiln_passes::simplify(&mut g).unwrap();
/// assert_eq!(g.to_text(), "%0 = Input() {name=\"x\"} : f32[3]\nreturn %0\n");
/// ```
pub fn simplify(g: &mut Graph) -> Result<SimplifyStats> {
    let mut stats = SimplifyStats::default();
    for _ in 0..16 {
        let before = stats;
        fold_and_rewrite(g, &mut stats)?;
        stats.merged += cse(g)?;
        stats.removed += g.remove_dead();
        if stats == before {
            break;
        }
    }
    Ok(stats)
}

fn literal_of(g: &Graph, id: NodeId) -> Option<&Literal> {
    match &g.node(id).op {
        Op::Constant(l) => Some(l),
        _ => None,
    }
}

/// The uniform value of a constant operand (`Some(1.0)` for a constant of ones), looking
/// through `Expand`s of constants (how broadcast seeds like `ones_like` are built).
fn uniform(g: &Graph, id: NodeId) -> Option<f64> {
    match &g.node(id).op {
        Op::Expand { .. } => uniform(g, g.operands(id)[0]),
        _ => literal_of(g, id)?.uniform_value(),
    }
}

fn fold_and_rewrite(g: &mut Graph, stats: &mut SimplifyStats) -> Result<()> {
    for id in g.topo_order()? {
        if !g.contains(id) || g.users(id).is_empty() && !g.outputs().contains(&id) {
            continue;
        }
        if let Some(c) = fold(g, id)? {
            g.replace_uses(id, c)?;
            stats.folded += 1;
            continue;
        }
        if let Some(r) = rewrite(g, id)? {
            // Rewrites may return a value of a smaller shape (`x * 1` with broadcasting): expand.
            let r = match_type(g, r, id)?;
            if r != id {
                g.replace_uses(id, r)?;
                stats.rewritten += 1;
            }
        }
    }
    Ok(())
}

/// Evaluates a node whose operands are all small constants.
fn fold(g: &mut Graph, id: NodeId) -> Result<Option<NodeId>> {
    let node = g.node(id);
    if matches!(node.op, Op::Input { .. } | Op::Constant(_)) || node.shape.numel() > FOLD_LIMIT {
        return Ok(None);
    }
    let ops = g.operands(id);
    let mut vals = Vec::with_capacity(ops.len());
    for &o in &ops {
        let n = g.node(o);
        match &n.op {
            Op::Constant(l) => vals.push(Value::from_literal(l, &n.shape)?),
            _ => return Ok(None),
        }
    }
    let refs: Vec<&Value> = vals.iter().collect();
    // Integer errors (division by zero) are left for run time to report.
    let Ok(v) = eval_node(node, &refs) else { return Ok(None) };
    let shape = node.shape.clone();
    Ok(Some(g.constant(v.to_literal(), shape)?))
}

/// Gives `r` the dtype and shape of `like` (an Expand when `r` broadcasts to it).
fn match_type(g: &mut Graph, r: NodeId, like: NodeId) -> Result<NodeId> {
    let (a, b) = (g.node(r), g.node(like));
    if a.shape == b.shape && a.dtype == b.dtype {
        return Ok(r);
    }
    if a.dtype != b.dtype || !kiln_ir::broadcasts_to(&a.shape, &b.shape) {
        return Ok(like);
    }
    let s = b.shape.0.clone();
    Ok(g.expand(r, s)?)
}

/// An algebraic identity for `id`, if one applies: the node to use instead.
fn rewrite(g: &mut Graph, id: NodeId) -> Result<Option<NodeId>> {
    let Node { op, dtype, shape } = g.node(id).clone();
    let xs = g.operands(id);
    let is = |g: &Graph, n: NodeId, v: f64| uniform(g, n) == Some(v);
    Ok(match op {
        Op::Binary(BinaryOp::Add) if is(g, xs[1], 0.0) => Some(xs[0]),
        Op::Binary(BinaryOp::Add) if is(g, xs[0], 0.0) => Some(xs[1]),
        Op::Binary(BinaryOp::Sub) if is(g, xs[1], 0.0) => Some(xs[0]),
        Op::Binary(BinaryOp::Mul) if is(g, xs[1], 1.0) => Some(xs[0]),
        Op::Binary(BinaryOp::Mul) if is(g, xs[0], 1.0) => Some(xs[1]),
        Op::Binary(BinaryOp::Mul) if dtype == DType::I64 && (is(g, xs[0], 0.0) || is(g, xs[1], 0.0)) => {
            let z = g.scalar(dtype, 0.0);
            Some(z)
        }
        Op::Binary(BinaryOp::Div) if is(g, xs[1], 1.0) => Some(xs[0]),
        Op::Binary(BinaryOp::Pow) if is(g, xs[1], 1.0) => Some(xs[0]),
        // x² as x·x: one correctly rounded multiply, as exact as powf and far cheaper.
        Op::Binary(BinaryOp::Pow) if is(g, xs[1], 2.0) && g.node(xs[0]).shape == shape => {
            Some(g.mul(xs[0], xs[0])?)
        }
        Op::Unary(UnaryOp::Neg) => match g.node(xs[0]).op {
            Op::Unary(UnaryOp::Neg) => Some(g.operands(xs[0])[0]),
            _ => None,
        },
        Op::Reshape { shape: to } => {
            let inner = xs[0];
            let single_use = g.users(inner).len() == 1 && !g.outputs().contains(&inner);
            match g.node(inner).op.clone() {
                _ if g.node(inner).shape.dims() == &to[..] => Some(inner),
                Op::Reshape { .. } => {
                    let src = g.operands(inner)[0];
                    Some(g.reshape(src, to)?)
                }
                // Dropping the kept unit axes of a reduction: reduce without keeping them.
                Op::Reduce { op, axes, keepdims: true } if single_use => {
                    let src = g.operands(inner)[0];
                    let r = g.reduce(op, src, axes, false)?;
                    (g.node(r).shape.dims() == &to[..]).then_some(r)
                }
                _ => None,
            }
        }
        Op::Transpose { perm } => {
            if perm.iter().enumerate().all(|(i, &p)| i == p) {
                Some(xs[0])
            } else if let Op::Transpose { perm: inner } = g.node(xs[0]).op.clone() {
                let src = g.operands(xs[0])[0];
                let composed: Vec<usize> = perm.iter().map(|&p| inner[p]).collect();
                if composed.iter().enumerate().all(|(i, &p)| i == p) {
                    Some(src)
                } else {
                    Some(g.transpose(src, composed)?)
                }
            } else if swaps_last_two(&perm) && g.node(xs[0]).op == Op::MatMul {
                transposed_product(g, xs[0])?
            } else {
                None
            }
        }
        Op::Expand { shape: to } => {
            let inner = xs[0];
            if g.node(inner).shape.dims() == &to[..] {
                Some(inner)
            } else if let Op::Expand { .. } = g.node(inner).op {
                let src = g.operands(inner)[0];
                Some(g.expand(src, to)?)
            } else {
                None
            }
        }
        Op::Cast { to } if g.node(xs[0]).dtype == to => Some(xs[0]),
        Op::Where if xs[1] == xs[2] => Some(xs[1]),
        Op::Concat { .. } if xs.len() == 1 => Some(xs[0]),
        Op::Slice { .. } if g.node(xs[0]).shape == shape && is_full_slice(g, &op, xs[0]) => Some(xs[0]),
        // Summing over extent-1 axes only moves data: a reshape.
        Op::Reduce { op: ReduceOp::Sum | ReduceOp::Mean | ReduceOp::Max, axes, .. } => {
            let s = &g.node(xs[0]).shape;
            let axes = kiln_ir::op::reduce_axes(&axes, s.rank()).unwrap_or_default();
            if axes.iter().all(|&a| s.0[a] == 1) && s.numel() == shape.numel() {
                Some(g.reshape(xs[0], shape.0.clone())?)
            } else {
                None
            }
        }
        _ => None,
    })
}

/// Whether `perm` swaps the last two axes and keeps the others.
fn swaps_last_two(perm: &[usize]) -> bool {
    let r = perm.len();
    r >= 2
        && perm[r - 2] == r - 1
        && perm[r - 1] == r - 2
        && perm[..r - 2].iter().enumerate().all(|(i, &p)| i == p)
}

/// `(a·b)ᵀ` as `bᵀ·aᵀ` when the product has no other user: the transposes of the operands fold
/// into the product's strides, so no transposed copy of the result is written. (The gradient of
/// `x·wᵀ` with respect to `w` is such a transposed product.) Each output element is the same
/// products summed in the same order, so values are unchanged.
fn transposed_product(g: &mut Graph, mm: NodeId) -> Result<Option<NodeId>> {
    let ops = g.operands(mm);
    let single_use = g.users(mm).len() == 1 && !g.outputs().contains(&mm);
    let (ra, rb) = (g.node(ops[0]).shape.rank(), g.node(ops[1]).shape.rank());
    if !single_use || ra < 2 || rb < 2 {
        return Ok(None);
    }
    let swap = |r: usize| -> Vec<usize> { (0..r - 2).chain([r - 1, r - 2]).collect() };
    let bt = g.transpose(ops[1], swap(rb))?;
    let at = g.transpose(ops[0], swap(ra))?;
    Ok(Some(g.matmul(bt, at)?))
}

fn is_full_slice(g: &Graph, op: &Op, x: NodeId) -> bool {
    let s: &Shape = &g.node(x).shape;
    op.slice_ranges(s)
        .is_ok_and(|rs| rs.iter().zip(&s.0).all(|(r, &d)| r.start == 0 && r.step == 1 && r.len == d))
}

/// Merges nodes with the same op, attributes, type and operands (constants by value). Returns how
/// many were merged.
fn cse(g: &mut Graph) -> Result<usize> {
    let mut seen: HashMap<(Op, Vec<NodeId>, DType, Shape), NodeId> = HashMap::new();
    let mut merged = 0;
    for id in g.topo_order()? {
        let n = g.node(id);
        if matches!(n.op, Op::Input { .. }) {
            continue;
        }
        let key = (n.op.clone(), g.operands(id), n.dtype, n.shape.clone());
        match seen.get(&key) {
            Some(&prev) => {
                g.replace_uses(id, prev)?;
                merged += 1;
            }
            None => {
                seen.insert(key, id);
            }
        }
    }
    Ok(merged)
}
