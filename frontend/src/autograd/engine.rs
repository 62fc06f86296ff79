//! The backward engine: walks the recorded nodes from the roots in dependency order (later nodes
//! first when several are ready, like PyTorch), runs hooks, accumulates into `.grad` or captures
//! the gradients `autograd::grad` asked for, and frees saved values unless `retain_graph`.
//!
//! Each node's backward only *builds* lazy tensors; the gradients that end up in `.grad` (or are
//! returned) are realized together at the end, so the whole backward is one graph for the
//! compiler.

use crate::autograd::mode::{is_grad_enabled, set_grad_enabled};
use crate::autograd::node::{Edge, HookList, Kind, Node, RELEASED};
use crate::autograd::plan::ReversePlan;
use crate::error::{Error, Result};
use crate::expr;
use crate::expr::Expr;
use crate::expr::FastMap;
use crate::tensor::{Meta, Tensor};
use kiln_ir::{BinaryOp, Op};
use smallvec::SmallVec;
use std::cell::RefCell;
use std::collections::BinaryHeap;
use std::sync::Arc;

/// A request's lists: inline for the usual one or two entries (a tiny step runs a backward or
/// two per step).
pub(crate) type Few<T> = SmallVec<[T; 2]>;

pub(crate) struct Request {
    /// Where each root's gradient enters, and the gradient.
    pub roots: Few<(Edge, Grad)>,
    /// The tensors differentiated. Computed in the same graph as the gradients when still
    /// pending (PyTorch has them by then too): their intermediates are shared with the backward,
    /// so they need not be stored for a later, separate computation.
    pub outputs: Few<Tensor>,
    pub retain_graph: bool,
    pub create_graph: bool,
    /// `Some(edges)`: capture the gradients flowing into these edges instead of accumulating
    /// into leaves (`autograd::grad`).
    pub capture: Option<Few<Edge>>,
}

type Key = *const Node;

/// An absent edge in `Scratch::succ`.
const NONE: usize = usize::MAX;

fn key(n: &Arc<Node>) -> Key {
    Arc::as_ptr(n)
}

/// The gradients of one node's outputs (or of its inputs, coming back from its backward):
/// inline for the usual one or two.
pub(crate) type Grads = SmallVec<[Option<Grad>; 2]>;

/// A gradient flowing through the engine. A backward that is not recorded passes bare lazy
/// values from node to node and makes a tensor only where one is needed (a hook, retain_grad,
/// a captured gradient, a custom function, `.grad`): a tensor per intermediate gradient
/// showed in the per-step profile of small training steps.
#[derive(Clone)]
pub(crate) enum Grad {
    Tensor(Tensor),
    /// A value and whether a view op made it (the tensor it becomes is flagged as a view).
    Expr(Arc<Expr>, bool),
}

impl Grad {
    /// The implicit seed of a one-element output: a pending constant one, a tensor only if
    /// something asks for one.
    pub(crate) fn ones_like(t: &Tensor) -> Grad {
        Grad::Expr(t.filled_expr(1.0), false)
    }

    fn expr(&self) -> Arc<Expr> {
        match self {
            Grad::Tensor(t) => t.expr(),
            Grad::Expr(e, _) => e.clone(),
        }
    }

    fn into_tensor(self) -> Tensor {
        match self {
            Grad::Tensor(t) => t,
            Grad::Expr(e, view) => Tensor::build(e, Meta::default(), view),
        }
    }

    /// The gradient as a tensor (made once, then kept).
    fn tensor(&mut self) -> &Tensor {
        if let Grad::Expr(e, view) = self {
            *self = Grad::Tensor(Tensor::build(e.clone(), Meta::default(), *view));
        }
        match self {
            Grad::Tensor(t) => t,
            Grad::Expr(..) => unreachable!("converted above"),
        }
    }

    /// `self + other`: a bare sum when both are bare values of one dtype.
    fn add(self, other: Grad) -> Result<Grad> {
        match (self, other) {
            (Grad::Expr(a, _), Grad::Expr(b, _)) if a.dtype == b.dtype && !is_grad_enabled() => {
                let sum = Expr::apply(Op::Binary(BinaryOp::Add), smallvec::smallvec![a, b])?;
                Ok(Grad::Expr(sum, false))
            }
            (a, b) => Ok(Grad::Tensor(a.into_tensor().add(&b.into_tensor())?)),
        }
    }
}

/// The engine's working lists, reused from one pass to the next on a thread (a small training
/// step runs a backward every step; allocating these each time showed in profiles). A pass
/// started inside another (a hook or a custom function calling `backward`) gets fresh ones.
#[derive(Default)]
struct Scratch {
    /// Nodes are numbered in discovery order; everything indexes by that number.
    index: FastMap<Key, usize>,
    nodes: Vec<Arc<Node>>,
    /// Per node: the numbers of the nodes its edges lead to (`NONE` for an absent edge), as
    /// `succ[succ_at[i]..][..node.next.len()]`: later phases follow edges without hashing.
    succ: Vec<usize>,
    succ_at: Vec<usize>,
    /// Per node: edges leading into it not yet processed.
    remaining: Vec<usize>,
    stack: Vec<usize>,
    order: Vec<usize>,
    ready: BinaryHeap<(u64, usize)>,
    needed: Vec<bool>,
    buffers: Vec<Option<Grads>>,
}

impl Scratch {
    /// The node's number, and whether it was seen for the first time.
    fn visit(&mut self, n: &Arc<Node>) -> (usize, bool) {
        let next = self.nodes.len();
        let i = *self.index.entry(key(n)).or_insert(next);
        if i == next {
            self.nodes.push(n.clone());
            self.remaining.push(0);
            self.succ_at.push(0);
        }
        (i, i == next)
    }

    /// The numbers of the nodes node `i`'s edges lead to, one per edge.
    fn succ(&self, i: usize) -> &[usize] {
        &self.succ[self.succ_at[i]..self.succ_at[i] + self.nodes[i].next.len()]
    }

    fn clear(&mut self) {
        self.index.clear();
        self.nodes.clear();
        self.succ.clear();
        self.succ_at.clear();
        self.remaining.clear();
        self.stack.clear();
        self.order.clear();
        self.ready.clear();
        self.needed.clear();
        self.buffers.clear();
    }
}

thread_local! {
    static SCRATCH: RefCell<Option<Scratch>> = const { RefCell::new(None) };
}

/// Runs a backward pass. Returns the captured gradients (empty without `capture`).
pub(crate) fn run(req: Request) -> Result<Vec<Option<Tensor>>> {
    let mut s = SCRATCH.with(|c| c.try_borrow_mut().ok().and_then(|mut c| c.take())).unwrap_or_default();
    let res = run_with(&mut s, req);
    s.clear();
    SCRATCH.with(|c| {
        if let Ok(mut c) = c.try_borrow_mut() {
            *c = Some(s);
        }
    });
    res
}

fn run_with(s: &mut Scratch, req: Request) -> Result<Vec<Option<Tensor>>> {
    let _mode = set_grad_enabled(req.create_graph);

    // Discover the graph and count, for every node, the edges that lead into it.
    for (e, _) in &req.roots {
        let (i, new) = s.visit(&e.node);
        if new {
            s.stack.push(i);
        }
    }
    while let Some(i) = s.stack.pop() {
        let n = s.nodes[i].clone();
        s.succ_at[i] = s.succ.len();
        for e in n.next.iter() {
            let Some(e) = e else {
                s.succ.push(NONE);
                continue;
            };
            let (j, new) = s.visit(&e.node);
            s.succ.push(j);
            s.remaining[j] += 1;
            if new {
                s.stack.push(j);
            }
        }
    }

    // Execution order: ready nodes, newest first.
    for (i, n) in s.nodes.iter().enumerate() {
        if s.remaining[i] == 0 {
            s.ready.push((n.seq, i));
        }
    }
    while let Some((_, i)) = s.ready.pop() {
        for k in 0..s.nodes[i].next.len() {
            let j = s.succ(i)[k];
            if j == NONE {
                continue;
            }
            s.remaining[j] -= 1;
            if s.remaining[j] == 0 {
                s.ready.push((s.nodes[j].seq, j));
            }
        }
        s.order.push(i);
    }

    // With `capture`, only nodes on a path to a captured edge run.
    if let Some(caps) = &req.capture {
        s.needed.resize(s.nodes.len(), false);
        for k in (0..s.order.len()).rev() {
            let i = s.order[k];
            let is_target = caps.iter().any(|c| Arc::ptr_eq(&c.node, &s.nodes[i]));
            let feeds = s.succ(i).iter().any(|&j| j != NONE && s.needed[j]);
            s.needed[i] = is_target || feeds;
        }
    }

    s.buffers.resize(s.nodes.len(), None);
    for (e, g) in req.roots {
        let i = s.index[&key(&e.node)];
        add_grad(&mut s.buffers[i], &e, g)?;
    }
    let mut captured: Vec<Option<Tensor>> = vec![None; req.capture.as_ref().map_or(0, |c| c.len())];
    let mut to_realize: Few<Tensor> = Few::new();

    for k in 0..s.order.len() {
        let i = s.order[k];
        let node = &s.nodes[i].clone();
        let Some(mut buf) = s.buffers[i].take() else { continue };
        if req.capture.is_some() && !s.needed[i] {
            continue;
        }
        // Tensor hooks, then retain_grad, then capture (PyTorch's order).
        let observers = node.observers().unwrap_or_default();
        let hook_lists: Vec<(usize, HookList)> = match &node.kind {
            Kind::Accumulate(leaf) => {
                Tensor(leaf.clone()).meta().hooks.iter().map(|l| (0, l.clone())).collect()
            }
            _ => observers.hooks,
        };
        let hooks_ran = !hook_lists.is_empty();
        for (nr, list) in hook_lists {
            let hooks = list.lock().unwrap_or_else(|p| p.into_inner()).clone();
            for (_, h) in hooks {
                if let Some(g) = &mut buf[nr] {
                    let g = g.tensor();
                    if let Some(r) = h(g) {
                        if r.shape() != g.shape() {
                            return Err(Error::Autograd(format!(
                                "hook '{}' has changed the size of value: expected {:?}, got {:?}",
                                node.name,
                                g.shape(),
                                r.shape()
                            )));
                        }
                        buf[nr] = Some(Grad::Tensor(r));
                    }
                }
            }
        }
        // A hook may have asked for more (read again after hooks ran, as before them otherwise).
        let retained =
            if hooks_ran { node.observers().unwrap_or_default().retained } else { observers.retained };
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
                    captured[k] = buf[c.input_nr].as_mut().map(|g| g.tensor().clone());
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
                Grads::new()
            }
            Kind::Graph(plan) => apply_graph(node, plan, &buf)?,
            Kind::Custom(state) => {
                let grads: SmallVec<[Option<Tensor>; 2]> =
                    buf.into_iter().map(|g| g.map(Grad::into_tensor)).collect();
                state.backward(node, &grads)?.into_iter().map(|g| g.map(Grad::Tensor)).collect()
            }
        };
        for (k, (e, g)) in node.next.iter().zip(outs).enumerate() {
            if let (Some(e), Some(g)) = (e, g) {
                let j = s.succ(i)[k];
                add_grad(&mut s.buffers[j], e, g)?;
            }
        }
        if !req.retain_graph {
            release(node);
        }
    }

    // With `create_graph` the gradients are recorded values like any other op's result: they
    // stay lazy, so a following `grad`/`backward` of them (a higher-order derivative) computes
    // the whole chain in one graph. Otherwise one realization for everything this pass produced.
    if req.create_graph {
        return Ok(captured);
    }
    let mut exprs: SmallVec<[Arc<crate::expr::Expr>; 4]> = SmallVec::new();
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

fn add_grad(buf: &mut Option<Grads>, e: &Edge, g: Grad) -> Result<()> {
    let buf = buf.get_or_insert_with(|| smallvec::smallvec![None; e.node.outputs.len()]);
    let slot = &mut buf[e.input_nr];
    *slot = Some(match slot.take() {
        None => g,
        Some(prev) => prev.add(g)?,
    });
    Ok(())
}

/// Adds `g` into `t.grad`: the first gradient is stored as is (detached unless `create_graph`);
/// later ones are added in place, or out of place under `create_graph` (as PyTorch does).
fn accumulate(t: &Tensor, g: Grad, create_graph: bool) {
    let mut m = t.meta();
    match m.grad.take() {
        None => m.grad = Some(if create_graph { g.into_tensor() } else { Tensor::from_expr(g.expr()) }),
        Some(old) if create_graph => {
            drop(m);
            let sum = old.add(&g.into_tensor()).expect("a gradient has its tensor's shape");
            t.meta().grad = Some(sum);
        }
        Some(old) => {
            let sum = crate::expr::Expr::apply(
                kiln_ir::Op::Binary(kiln_ir::BinaryOp::Add),
                smallvec::smallvec![old.expr(), g.expr()],
            )
            .expect("a gradient has its tensor's shape");
            old.0.storage.set(sum);
            old.bump_version();
            m.grad = Some(old);
        }
    }
}

/// Runs a node's reverse program. Recorded (`create_graph`: grad mode is on) it replays tensor
/// ops; otherwise it replays bare exprs and makes tensors only for the gradients it returns.
fn apply_graph(node: &Arc<Node>, plan: &ReversePlan, buf: &[Option<Grad>]) -> Result<Grads> {
    let gy = match &buf[0] {
        Some(g) => g.clone(),
        None => {
            let (d, s) = &node.outputs[0];
            Grad::Tensor(Tensor::zeros_typed(s, *d))
        }
    };
    // The saved values, version-checked.
    let mut inputs: SmallVec<[Option<Tensor>; 2]> = SmallVec::new();
    let recorded = is_grad_enabled();
    let (result_tensor, result_expr) = {
        let saved = node.saved();
        let uses_any = plan.uses_result || plan.uses_input.iter().any(|&u| u);
        if saved.released && uses_any {
            return Err(Error::Autograd(RELEASED.into()));
        }
        for (i, n) in plan.inputs.iter().enumerate() {
            let used = n.is_some() && plan.uses_input[i];
            let s = if used {
                Some(saved.inputs[i].as_ref().expect("saved at record time").unpack()?)
            } else {
                None
            };
            inputs.push(s);
        }
        match &saved.result {
            Some(r) if plan.uses_result && recorded => (Some(r.unpack(&node.name)?), None),
            Some(r) if plan.uses_result => (None, Some(r.unpack_expr(&node.name)?)),
            _ => (None, None),
        }
    };
    let bound_nodes =
        plan.inputs.iter().zip(&inputs).filter_map(|(n, t)| Some((n.as_ref()?.index(), t.as_ref()?)));
    if recorded {
        return plan.program.with_slots(|bound: &mut [Option<Tensor>]| {
            for (n, t) in bound_nodes {
                bound[n] = Some(t.clone());
            }
            if let Some(r) = result_tensor {
                bound[plan.output.index()] = Some(r);
            }
            bound[plan.seed.index()] = Some(gy.into_tensor());
            plan.program.run(bound)?;
            Ok(plan
                .grads
                .iter()
                .map(|g| g.and_then(|n| bound[n.index()].clone()).map(Grad::Tensor))
                .collect())
        });
    }
    plan.program.with_slots(|bound: &mut [Option<Arc<Expr>>]| {
        for (n, t) in bound_nodes.clone() {
            bound[n] = Some(t.expr());
        }
        if let Some(r) = &result_expr {
            bound[plan.output.index()] = Some(r.clone());
        }
        bound[plan.seed.index()] = Some(gy.expr());
        plan.program.run(bound)?;
        // A gradient that is a bound value is that tensor (as the tensor replay would give);
        // a replayed one becomes a new tensor, flagged as a view if a view op made it.
        let mut grads = Grads::new();
        for g in &plan.grads {
            let Some(n) = *g else {
                grads.push(None);
                continue;
            };
            let i = n.index();
            let t = if i == plan.seed.index() {
                gy.clone()
            } else if let Some((_, t)) = bound_nodes.clone().find(|(b, _)| *b == i) {
                Grad::Tensor(t.clone())
            } else if i == plan.output.index() && result_expr.is_some() {
                let saved = node.saved();
                Grad::Tensor(saved.result.as_ref().expect("saved at record time").unpack(&node.name)?)
            } else {
                match &bound[i] {
                    Some(e) => Grad::Expr(e.clone(), plan.program.is_view(i)),
                    None => {
                        grads.push(None);
                        continue;
                    }
                }
            };
            grads.push(Some(t));
        }
        Ok(grads)
    })
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
