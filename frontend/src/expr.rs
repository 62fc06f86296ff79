//! Lazy values: the data side of a tensor.
//!
//! An [`Expr`] is either a computed array or an op waiting for its inputs. Ops only build `Expr`s;
//! [`realize`] lowers the pending part of the DAG behind the requested exprs to one
//! [`kiln_ir::Graph`] (computed exprs become graph inputs), runs it on the current backend, and
//! stores the results. A realized expr drops its inputs, so memory held by a traced step is
//! released as soon as the values that depend on it exist.

use crate::backend;
use crate::error::{Error, Result};
use kiln_ir::interp::Value;
use kiln_ir::{DType, Graph, Literal, NodeId, Op, Shape};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// A lazily computed array.
pub(crate) struct Expr {
    pub dtype: DType,
    pub shape: Shape,
    state: Mutex<State>,
}

enum State {
    Pending { op: Op, inputs: Vec<Arc<Expr>> },
    Ready(Arc<Value>),
}

impl Expr {
    /// A computed value.
    pub fn ready(v: Value) -> Arc<Expr> {
        Arc::new(Expr { dtype: v.dtype(), shape: v.shape(), state: Mutex::new(State::Ready(Arc::new(v))) })
    }

    /// A pending op whose result type was already inferred by the caller.
    pub fn pending(op: Op, inputs: Vec<Arc<Expr>>, dtype: DType, shape: Shape) -> Arc<Expr> {
        Arc::new(Expr { dtype, shape, state: Mutex::new(State::Pending { op, inputs }) })
    }

    /// A constant (kept in the graph as a `Constant` node, so passes can fold it).
    pub fn constant(lit: Literal, shape: Shape) -> Arc<Expr> {
        let dtype = lit.dtype();
        Expr::pending(Op::Constant(lit), Vec::new(), dtype, shape)
    }

    /// `op(inputs)`, typed by the op's shape rule.
    pub fn apply(op: Op, inputs: Vec<Arc<Expr>>) -> Result<Arc<Expr>> {
        let types: Vec<(DType, &Shape)> = inputs.iter().map(|e| (e.dtype, &e.shape)).collect();
        let (dtype, shape) = op.infer(&types)?;
        Ok(Expr::pending(op, inputs, dtype, shape))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The value if it has been computed.
    pub fn value(&self) -> Option<Arc<Value>> {
        match &*self.lock() {
            State::Ready(v) => Some(v.clone()),
            State::Pending { .. } => None,
        }
    }

    /// The literal of a pending `Constant`.
    pub fn literal(&self) -> Option<Literal> {
        match &*self.lock() {
            State::Pending { op: Op::Constant(l), .. } => Some(l.clone()),
            _ => None,
        }
    }

    /// Computes the value (with everything pending behind it) if needed.
    pub fn get(self: &Arc<Self>) -> Result<Arc<Value>> {
        if let Some(v) = self.value() {
            return Ok(v);
        }
        realize(std::slice::from_ref(self))?;
        Ok(self.value().expect("realize stores every target"))
    }
}

impl Drop for Expr {
    /// Long chains of pending exprs (a loop that keeps building on one tensor) would otherwise be
    /// dropped recursively and overflow the stack: unlink them iteratively.
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        let State::Pending { inputs, .. } = state else { return };
        let mut stack = std::mem::take(inputs);
        while let Some(e) = stack.pop() {
            if let Ok(mut inner) = Arc::try_unwrap(e) {
                if let State::Pending { inputs, .. } =
                    inner.state.get_mut().unwrap_or_else(|p| p.into_inner())
                {
                    stack.append(inputs);
                }
            }
        }
    }
}

/// Computes every expr in `targets` (and any pending expr behind them that something else still
/// holds, so it is not computed twice) in one graph on the current backend.
pub(crate) fn realize(targets: &[Arc<Expr>]) -> Result<()> {
    let lowered = lower(targets)?;
    if lowered.graph.outputs().is_empty() {
        return Ok(());
    }
    let outs = backend::current()?.run(&lowered.graph, &lowered.input_values).map_err(Error::from)?;
    for (e, v) in lowered.outputs.iter().zip(outs) {
        *e.lock() = State::Ready(Arc::new(v));
    }
    Ok(())
}

/// The graph that computes `targets`, with the values of its inputs and the exprs its outputs
/// belong to.
pub(crate) struct Lowered {
    pub graph: Graph,
    pub input_values: Vec<Value>,
    pub outputs: Vec<Arc<Expr>>,
    nodes: HashMap<usize, NodeId>,
}

impl Lowered {
    /// The graph node computing `e` (which must have been lowered).
    pub fn node_of(&self, e: &Arc<Expr>) -> NodeId {
        self.nodes[&(Arc::as_ptr(e) as usize)]
    }
}

/// Lowers the pending DAG behind `targets` to a graph. Computed exprs become inputs named
/// `in0, in1, ...`; pending constants become `Constant` nodes.
pub(crate) fn lower(targets: &[Arc<Expr>]) -> Result<Lowered> {
    // Post-order walk over pending exprs, iterative (graphs can be long chains).
    let key = |e: &Arc<Expr>| Arc::as_ptr(e) as usize;
    let mut order: Vec<Arc<Expr>> = Vec::new();
    let mut ids: HashMap<usize, usize> = HashMap::new(); // expr → position in `order`
    let mut parent_refs: HashMap<usize, usize> = HashMap::new();
    let mut stack: Vec<(Arc<Expr>, bool)> = targets.iter().rev().map(|t| (t.clone(), false)).collect();
    while let Some((e, expanded)) = stack.pop() {
        if ids.contains_key(&key(&e)) {
            continue;
        }
        if expanded {
            ids.insert(key(&e), order.len());
            order.push(e);
            continue;
        }
        let inputs = match &*e.lock() {
            State::Pending { inputs, .. } => inputs.clone(),
            State::Ready(_) => Vec::new(),
        };
        stack.push((e, true));
        for i in inputs.iter().rev() {
            *parent_refs.entry(key(i)).or_default() += 1;
            if !ids.contains_key(&key(i)) {
                stack.push((i.clone(), false));
            }
        }
    }

    let mut g = Graph::new();
    let mut input_values = Vec::new();
    let mut nodes: Vec<NodeId> = Vec::with_capacity(order.len());
    for e in &order {
        let node = match &*e.lock() {
            State::Ready(v) => {
                input_values.push((**v).clone());
                g.input(format!("in{}", input_values.len() - 1), e.dtype, e.shape.clone())
            }
            State::Pending { op: Op::Constant(lit), .. } => g.constant(lit.clone(), e.shape.clone())?,
            State::Pending { op, inputs } => {
                let operands: Vec<NodeId> = inputs.iter().map(|i| nodes[ids[&key(i)]]).collect();
                g.add(op.clone(), &operands)?
            }
        };
        nodes.push(node);
    }

    // Outputs: the targets, and pending exprs held outside this DAG (by tensors, saved values):
    // computing them now avoids computing them again later.
    let mut outputs = Vec::new();
    let mut out_nodes = Vec::new();
    let is_target = |e: &Arc<Expr>| targets.iter().any(|t| Arc::ptr_eq(t, e));
    for (pos, e) in order.iter().enumerate() {
        let pending = e.value().is_none();
        // References: `order` holds one, each parent in the DAG one, each target slice entry one.
        let internal = 1
            + parent_refs.get(&key(e)).copied().unwrap_or(0)
            + targets.iter().filter(|t| Arc::ptr_eq(t, e)).count();
        let held_outside = Arc::strong_count(e) > internal;
        let is_const = matches!(g.node(nodes[pos]).op, Op::Constant(_));
        if pending && (is_target(e) || (held_outside && !is_const)) {
            outputs.push(e.clone());
            out_nodes.push(nodes[pos]);
        }
    }
    g.set_outputs(out_nodes);
    let nodes = order.iter().zip(&nodes).map(|(e, &n)| (key(e), n)).collect();
    Ok(Lowered { graph: g, input_values, outputs, nodes })
}
