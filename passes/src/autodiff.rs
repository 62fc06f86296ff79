//! Reverse-mode autodiff as a graph pass.
//!
//! [`grad`] appends the reverse graph of `outputs` to the same [`Graph`] and returns the nodes that
//! hold the gradients. The reverse graph is built from ordinary IR ops (the rules are in
//! [`crate::vjp`]), so calling [`grad`] again on a gradient gives second and higher derivatives.
//!
//! Only what is needed is built: a node gets a reverse node only if it lies on a path from one of
//! the `wrt` nodes to one of the `outputs`, and only float values carry gradients.

use crate::error::{Error, Result};
use crate::vjp::vjp;
use kiln_ir::{Graph, NodeId, Shape};

/// Appends the reverse graph of `outputs` and returns, for each node in `wrt`, the node holding
///
/// `d/d wrt [ Σ_i <seeds[i], outputs[i]> ]`
///
/// (a vector–Jacobian product), or `None` when `wrt` does not reach any output through float
/// values (the frontend maps this to `None` / `allow_unused`). Each seed must have its output's
/// dtype and shape; [`ones_like`] makes the usual seed for a scalar loss.
///
/// ```
/// use kiln_ir::{DType, Graph};
/// use kiln_passes::{grad, ones_like};
/// let mut g = Graph::new();
/// let x = g.input("x", DType::F64, [3]);
/// let y = g.mul(x, x).unwrap();
/// let seed = ones_like(&mut g, y);
/// let dx = grad(&mut g, &[y], &[seed], &[x]).unwrap()[0].unwrap();
/// g.set_outputs(vec![y, dx]);
/// g.verify().unwrap();
/// assert_eq!(g.node(dx).shape.dims(), &[3]);
/// ```
pub fn grad(
    g: &mut Graph,
    outputs: &[NodeId],
    seeds: &[NodeId],
    wrt: &[NodeId],
) -> Result<Vec<Option<NodeId>>> {
    check_request(g, outputs, seeds, wrt)?;
    let order = g.topo_order()?;
    let bound = g.node_bound();
    let is_float = |g: &Graph, id: NodeId| g.node(id).dtype.is_float();

    // Forward: nodes that depend on some `wrt`. Backward: nodes some output depends on.
    let mut from_wrt = vec![false; bound];
    for &w in wrt {
        from_wrt[w.index()] = is_float(g, w);
    }
    for &id in &order {
        if !from_wrt[id.index()] && is_float(g, id) {
            from_wrt[id.index()] = g.operands(id).iter().any(|o| from_wrt[o.index()]);
        }
    }
    let mut to_out = vec![false; bound];
    for &o in outputs {
        to_out[o.index()] = true;
    }
    for &id in order.iter().rev() {
        if to_out[id.index()] {
            for o in g.operands(id) {
                to_out[o.index()] = true;
            }
        }
    }
    let needed: Vec<bool> = (0..bound).map(|i| from_wrt[i] && to_out[i]).collect();

    // Gradient contributions per node, summed when the node is reached in reverse order (all of
    // its users come after it in topological order, so its gradient is complete by then).
    let mut parts: Vec<Vec<NodeId>> = vec![Vec::new(); bound];
    let mut total: Vec<Option<NodeId>> = vec![None; bound];
    for (&o, &s) in outputs.iter().zip(seeds) {
        if needed[o.index()] {
            parts[o.index()].push(s);
        }
    }
    for &id in order.iter().rev() {
        if !needed[id.index()] || parts[id.index()].is_empty() {
            continue;
        }
        let gy = sum_parts(g, std::mem::take(&mut parts[id.index()]))?;
        total[id.index()] = Some(gy);
        let operands = g.operands(id);
        for (slot, &x) in operands.iter().enumerate() {
            if needed[x.index()] {
                if let Some(dx) = vjp(g, id, &operands, slot, gy)? {
                    parts[x.index()].push(dx);
                }
            }
        }
    }
    Ok(wrt.iter().map(|w| total[w.index()]).collect())
}

fn check_request(g: &Graph, outputs: &[NodeId], seeds: &[NodeId], wrt: &[NodeId]) -> Result<()> {
    if outputs.len() != seeds.len() {
        return Err(Error::Autodiff(format!(
            "{} outputs but {} seeds: give one incoming gradient per output",
            outputs.len(),
            seeds.len()
        )));
    }
    let missing = |what: &str, k: usize| Error::Autodiff(format!("{what} {k} is not a node of this graph"));
    for (k, (&o, &s)) in outputs.iter().zip(seeds).enumerate() {
        let (on, sn) = (
            g.try_node(o).ok_or_else(|| missing("output", k))?,
            g.try_node(s).ok_or_else(|| missing("seed", k))?,
        );
        if on.dtype != sn.dtype || on.shape != sn.shape {
            return Err(Error::Autodiff(format!(
                "seed {k} is {}{} but output {k} is {}{}: the incoming gradient must match the output",
                sn.dtype, sn.shape, on.dtype, on.shape
            )));
        }
    }
    for (k, &w) in wrt.iter().enumerate() {
        g.try_node(w).ok_or_else(|| missing("wrt", k))?;
    }
    Ok(())
}

fn sum_parts(g: &mut Graph, parts: Vec<NodeId>) -> Result<NodeId> {
    let mut it = parts.into_iter();
    let first = it.next().expect("called with at least one part");
    it.try_fold(first, |acc, p| Ok(g.add_(acc, p)?))
}

/// A tensor of ones with the dtype and shape of `like`: a scalar constant, expanded if needed.
pub fn ones_like(g: &mut Graph, like: NodeId) -> NodeId {
    full_like(g, like, 1.0)
}

/// `v` broadcast-constant with the dtype and shape of `like` (a scalar `Constant`, `Expand`ed).
pub(crate) fn full_like(g: &mut Graph, like: NodeId, v: f64) -> NodeId {
    let shape = g.node(like).shape.clone();
    let s = g.scalar_like(like, v);
    if shape.rank() == 0 {
        s
    } else {
        g.expand(s, shape.0).expect("a scalar expands to any shape")
    }
}

/// Sums `v` down to `target` — the inverse of numpy broadcasting: leading axes that `target`
/// lacks and axes where `target` has extent 1 are summed. Returns `v` itself when the shapes
/// already agree.
pub fn sum_to(g: &mut Graph, v: NodeId, target: &Shape) -> Result<NodeId> {
    let s = g.node(v).shape.clone();
    if &s == target {
        return Ok(v);
    }
    let lead = s.rank().checked_sub(target.rank()).ok_or_else(|| {
        Error::Autodiff(format!("cannot sum a {s} value down to the larger shape {target}"))
    })?;
    let axes: Vec<i64> = (0..s.rank())
        .filter(|&i| i < lead || (target.0[i - lead] == 1 && s.0[i] != 1))
        .map(|i| i as i64)
        .collect();
    let summed = if axes.is_empty() { v } else { g.reduce(kiln_ir::ReduceOp::Sum, v, axes, true)? };
    if &g.node(summed).shape == target {
        Ok(summed)
    } else {
        Ok(g.reshape(summed, target.0.clone())?)
    }
}
