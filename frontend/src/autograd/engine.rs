//! The backward engine: walks the recorded nodes from the roots in dependency order (later nodes
//! first when several are ready, like PyTorch), runs hooks, accumulates into `.grad` or captures
//! the gradients `autograd::grad` asked for, and frees saved values unless `retain_graph`.
//!
//! Each node's backward only *builds* lazy tensors; the gradients that end up in `.grad` (or are
//! returned) are realized together at the end, so the whole backward is one graph for the
//! compiler.

use crate::autograd::mode::set_grad_enabled;
use crate::autograd::node::{Edge, HookList, Kind, Node, RELEASED};
use crate::error::{Error, Result};
use crate::expr;
use crate::expr::FastMap;
use crate::tensor::Tensor;
use std::collections::BinaryHeap;
use std::sync::Arc;

pub(crate) struct Request {
    /// Where each root's gradient enters, and the gradient.
    pub roots: Vec<(Edge, Tensor)>,
    /// The tensors differentiated. Computed in the same graph as the gradients when still
    /// pending (PyTorch has them by then too): their intermediates are shared with the backward,
    /// so they need not be stored for a later, separate computation.
    pub outputs: Vec<Tensor>,
    pub retain_graph: bool,
    pub create_graph: bool,
    /// `Some(edges)`: capture the gradients flowing into these edges instead of accumulating
    /// into leaves (`autograd::grad`).
    pub capture: Option<Vec<Edge>>,
}

type Key = *const Node;

fn key(n: &Arc<Node>) -> Key {
    Arc::as_ptr(n)
}

/// Runs a backward pass. Returns the captured gradients (empty without `capture`).
pub(crate) fn run(req: Request) -> Result<Vec<Option<Tensor>>> {
    let _mode = set_grad_enabled(req.create_graph);

    // Discover the graph and count, for every node, the edges that lead into it. Nodes are
    // numbered in discovery order; everything below indexes by that number.
    let mut graph = Discovered::default();
    let mut stack: Vec<usize> = Vec::new();
    for (e, _) in &req.roots {
        let (i, new) = graph.visit(&e.node);
        if new {
            stack.push(i);
        }
    }
    while let Some(i) = stack.pop() {
        let n = graph.nodes[i].clone();
        for e in n.next.iter().flatten() {
            let (j, new) = graph.visit(&e.node);
            graph.deps[j] += 1;
            if new {
                stack.push(j);
            }
        }
    }
    let Discovered { index, nodes, deps } = graph;

    // Execution order: ready nodes, newest first.
    let mut order: Vec<usize> = Vec::with_capacity(nodes.len());
    let mut remaining = deps;
    let mut ready: BinaryHeap<(u64, usize)> = BinaryHeap::new();
    for (i, n) in nodes.iter().enumerate() {
        if remaining[i] == 0 {
            ready.push((n.seq, i));
        }
    }
    while let Some((_, i)) = ready.pop() {
        for e in nodes[i].next.iter().flatten() {
            let j = index[&key(&e.node)];
            remaining[j] -= 1;
            if remaining[j] == 0 {
                ready.push((e.node.seq, j));
            }
        }
        order.push(i);
    }

    // With `capture`, only nodes on a path to a captured edge run.
    let needed: Option<Vec<bool>> = req.capture.as_ref().map(|caps| {
        let mut need = vec![false; nodes.len()];
        for &i in order.iter().rev() {
            let n = &nodes[i];
            let is_target = caps.iter().any(|c| Arc::ptr_eq(&c.node, n));
            let feeds = n.next.iter().flatten().any(|e| need[index[&key(&e.node)]]);
            need[i] = is_target || feeds;
        }
        need
    });

    let mut buffers: Vec<Option<Vec<Option<Tensor>>>> = vec![None; nodes.len()];
    for (e, g) in req.roots {
        add_grad(&mut buffers[index[&key(&e.node)]], &e, g)?;
    }
    let mut captured: Vec<Option<Tensor>> = vec![None; req.capture.as_ref().map_or(0, Vec::len)];
    let mut to_realize: Vec<Tensor> = Vec::new();

    for &i in &order {
        let node = &nodes[i];
        let Some(mut buf) = buffers[i].take() else { continue };
        if let Some(need) = &needed {
            if !need[i] {
                continue;
            }
        }
        // Tensor hooks, then retain_grad, then capture (PyTorch's order).
        let hook_lists: Vec<(usize, HookList)> = match &node.kind {
            Kind::Accumulate(leaf) => vec![(0, Tensor(leaf.clone()).meta().hooks.clone())],
            _ => node.hooks.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        };
        for (nr, list) in hook_lists {
            let hooks = list.lock().unwrap_or_else(|p| p.into_inner()).clone();
            for (_, h) in hooks {
                if let Some(g) = &buf[nr] {
                    if let Some(r) = h(g) {
                        if r.shape() != g.shape() {
                            return Err(Error::Autograd(format!(
                                "hook '{}' has changed the size of value: expected {:?}, got {:?}",
                                node.name,
                                g.shape(),
                                r.shape()
                            )));
                        }
                        buf[nr] = Some(r);
                    }
                }
            }
        }
        let retained = node.retained.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for (nr, w) in retained {
            if let (Some(t), Some(g)) = (w.upgrade(), &buf[nr]) {
                let t = Tensor(t);
                accumulate(&t, g.clone(), req.create_graph);
                to_realize.push(t);
            }
        }
        if let Some(caps) = &req.capture {
            for (k, c) in caps.iter().enumerate() {
                if Arc::ptr_eq(&c.node, node) {
                    captured[k] = buf[c.input_nr].clone();
                }
            }
        }

        let outs = match &node.kind {
            Kind::Accumulate(leaf) => {
                if req.capture.is_none() {
                    if let Some(g) = buf[0].take() {
                        let leaf = Tensor(leaf.clone());
                        accumulate(&leaf, g, req.create_graph);
                        to_realize.push(leaf);
                    }
                }
                Vec::new()
            }
            Kind::Graph(plan) => apply_graph(node, plan, &buf)?,
            Kind::Custom(state) => state.backward(node, &buf)?,
        };
        for (e, g) in node.next.iter().zip(outs) {
            if let (Some(e), Some(g)) = (e, g) {
                add_grad(&mut buffers[index[&key(&e.node)]], e, g)?;
            }
        }
        if !req.retain_graph {
            release(node);
        }
    }

    // One realization for everything this pass produced.
    let mut exprs = Vec::new();
    for t in &to_realize {
        if let Some(g) = t.meta().grad.clone() {
            exprs.push(g.expr());
        }
    }
    exprs.extend(captured.iter().flatten().map(Tensor::expr));
    exprs.extend(req.outputs.iter().map(Tensor::expr).filter(|e| e.value().is_none()));
    expr::realize(&exprs)?;
    Ok(captured)
}

/// The backward graph reachable from the roots.
#[derive(Default)]
struct Discovered {
    index: FastMap<Key, usize>,
    nodes: Vec<Arc<Node>>,
    /// Per node: how many edges lead into it.
    deps: Vec<usize>,
}

impl Discovered {
    /// The node's number, and whether it was seen for the first time.
    fn visit(&mut self, n: &Arc<Node>) -> (usize, bool) {
        let next = self.nodes.len();
        let i = *self.index.entry(key(n)).or_insert(next);
        if i == next {
            self.nodes.push(n.clone());
            self.deps.push(0);
        }
        (i, i == next)
    }
}

fn add_grad(buf: &mut Option<Vec<Option<Tensor>>>, e: &Edge, g: Tensor) -> Result<()> {
    let buf = buf.get_or_insert_with(|| vec![None; e.node.outputs.len()]);
    let slot = &mut buf[e.input_nr];
    *slot = Some(match slot.take() {
        None => g,
        Some(prev) => prev.add(&g)?,
    });
    Ok(())
}

/// Adds `g` into `t.grad`: the first gradient is stored as is (detached unless `create_graph`);
/// later ones are added in place, or out of place under `create_graph` (as PyTorch does).
pub(crate) fn accumulate(t: &Tensor, g: Tensor, create_graph: bool) {
    let mut m = t.meta();
    match m.grad.take() {
        None => m.grad = Some(if create_graph { g } else { Tensor::from_expr(g.expr()) }),
        Some(old) if create_graph => {
            drop(m);
            let sum = old.add(&g).expect("a gradient has its tensor's shape");
            t.meta().grad = Some(sum);
        }
        Some(old) => {
            let sum = crate::expr::Expr::apply(
                kiln_ir::Op::Binary(kiln_ir::BinaryOp::Add),
                vec![old.expr(), g.expr()],
            )
            .expect("a gradient has its tensor's shape");
            old.0.storage.set(sum);
            old.bump_version();
            m.grad = Some(old);
        }
    }
}

fn apply_graph(
    node: &Arc<Node>,
    plan: &crate::autograd::plan::ReversePlan,
    buf: &[Option<Tensor>],
) -> Result<Vec<Option<Tensor>>> {
    let gy = match &buf[0] {
        Some(g) => g.clone(),
        None => {
            let (d, s) = &node.outputs[0];
            Tensor::zeros_typed(s.dims(), *d)
        }
    };
    let mut bound = plan.program.slots();
    {
        let saved = node.saved();
        let uses_any = plan.uses_result || plan.uses_input.iter().any(|&u| u);
        if saved.released && uses_any {
            return Err(Error::Autograd(RELEASED.into()));
        }
        for (i, n) in plan.inputs.iter().enumerate() {
            if let (Some(n), true) = (n, plan.uses_input[i]) {
                let s = saved.inputs[i].as_ref().expect("saved at record time");
                bound[n.index()] = Some(s.unpack()?);
            }
        }
        if plan.uses_result {
            let r = saved.result.as_ref().expect("saved at record time");
            bound[plan.output.index()] = Some(r.unpack(&node.name)?);
        }
    }
    bound[plan.seed.index()] = Some(gy);
    plan.program.run(&mut bound)?;
    Ok(plan.grads.iter().map(|g| g.and_then(|n| bound[n.index()].clone())).collect())
}

fn release(node: &Node) {
    let mut s = node.saved();
    s.released = true;
    s.inputs.iter_mut().for_each(|i| *i = None);
    s.result = None;
    drop(s);
    if let Kind::Custom(state) = &node.kind {
        state.release();
    }
}

#[cfg(test)]
mod tests {
    use crate::Tensor;

    #[test]
    fn backward_computes_the_differentiated_tensor_in_the_same_graph() {
        let x = Tensor::from_vec(vec![0.5f32, -1.0, 2.0], &[3]).unwrap().requires_grad_(true);
        let y = &(&x * &x) * &x.exp();
        assert!(y.expr().value().is_none());
        y.backward_with(Some(&y.ones_like()), false, false).unwrap();
        // y was computed with the gradient (so its factors, which only y holds, need not be
        // stored for a separate computation of y later).
        assert!(y.expr().value().is_some());
        let g = x.grad().unwrap().to_vec_f64().unwrap();
        for (gi, xi) in g.iter().zip([0.5f64, -1.0, 2.0]) {
            let want = (2.0 * xi + xi * xi) * xi.exp();
            assert!((gi - want).abs() < 1e-5 * want.abs().max(1.0), "{gi} vs {want}");
        }
    }
}
