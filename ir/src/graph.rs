//! The graph: nodes (op + dtype + shape) on a petgraph `StableGraph`, ordered operands as edges,
//! ordered inputs and outputs.
//!
//! Invariants (checked by [`Graph::verify`]):
//! - every node's dtype and shape are what [`Op::infer`] gives for its operands;
//! - a node's incoming edges carry the operand positions `0..n` exactly once each;
//! - the graph is acyclic; every output exists;
//! - `inputs` lists every `Input` node exactly once, and nothing else.

use crate::dtype::{DType, Shape};
use crate::error::{Error, Result};
use crate::literal::Literal;
use crate::op::Op;
use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::{EdgeRef, NodeIndexable};
use petgraph::Direction;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// A node handle. Stable across removals of other nodes.
pub type NodeId = NodeIndex<u32>;

/// One operation in the graph with its result type.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub op: Op,
    pub dtype: DType,
    pub shape: Shape,
}

/// A computation graph. Cloning copies it.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    g: StableDiGraph<Node, u32, u32>,
    inputs: Vec<NodeId>,
    outputs: Vec<NodeId>,
}

impl Graph {
    pub fn new() -> Graph {
        Graph::default()
    }

    // ----- building -------------------------------------------------------------------------

    /// Adds a named graph input.
    pub fn input(&mut self, name: impl Into<String>, dtype: DType, shape: impl Into<Shape>) -> NodeId {
        self.add_input(name.into(), false, dtype, shape.into())
    }

    /// Adds a named trainable parameter (an input flagged as a parameter).
    pub fn param(&mut self, name: impl Into<String>, dtype: DType, shape: impl Into<Shape>) -> NodeId {
        self.add_input(name.into(), true, dtype, shape.into())
    }

    fn add_input(&mut self, name: String, param: bool, dtype: DType, shape: Shape) -> NodeId {
        let id = self.g.add_node(Node { op: Op::Input { name, param }, dtype, shape });
        self.inputs.push(id);
        id
    }

    /// Adds a constant; `lit` must hold exactly `shape.numel()` elements.
    pub fn constant(&mut self, lit: Literal, shape: impl Into<Shape>) -> Result<NodeId> {
        let shape = shape.into();
        if lit.len() != shape.numel() {
            return Err(Error::op(
                "Constant",
                format!("{} values given for shape {shape} ({} elements)", lit.len(), shape.numel()),
            ));
        }
        let dtype = lit.dtype();
        Ok(self.g.add_node(Node { op: Op::Constant(lit), dtype, shape }))
    }

    /// Adds a scalar constant of `dtype`.
    pub fn scalar(&mut self, dtype: DType, v: f64) -> NodeId {
        let node = Node { op: Op::Constant(Literal::scalar(dtype, v)), dtype, shape: Shape::scalar() };
        self.g.add_node(node)
    }

    /// Adds `op` applied to `operands` (in order), inferring its dtype and shape.
    pub fn add(&mut self, op: Op, operands: &[NodeId]) -> Result<NodeId> {
        let mut types = Vec::with_capacity(operands.len());
        for &o in operands {
            let n = self.try_node(o).ok_or_else(|| {
                Error::op(op.name(), format!("operand {} is not a node of this graph", o.index()))
            })?;
            types.push((n.dtype, &n.shape));
        }
        if matches!(op, Op::Input { .. } | Op::Constant(_)) {
            return Err(Error::op(op.name(), "use Graph::input/param/constant to add it"));
        }
        let (dtype, shape) = op.infer(&types)?;
        Ok(self.add_typed(Node { op, dtype, shape }, operands))
    }

    /// Adds a node whose type is already known to be right. Crate-internal: the parser and the
    /// JSON reader check the declared type against inference themselves.
    pub(crate) fn add_typed(&mut self, node: Node, operands: &[NodeId]) -> NodeId {
        let is_input = matches!(node.op, Op::Input { .. });
        let id = self.g.add_node(node);
        for (i, &o) in operands.iter().enumerate() {
            self.g.add_edge(o, id, i as u32);
        }
        if is_input {
            self.inputs.push(id);
        }
        id
    }

    pub fn set_outputs(&mut self, outputs: Vec<NodeId>) {
        self.outputs = outputs;
    }

    pub fn push_output(&mut self, id: NodeId) {
        self.outputs.push(id);
    }

    // ----- reading --------------------------------------------------------------------------

    pub fn inputs(&self) -> &[NodeId] {
        &self.inputs
    }

    pub fn outputs(&self) -> &[NodeId] {
        &self.outputs
    }

    /// The node `id`. Panics if it was removed or never existed: use [`Graph::try_node`] for
    /// ids of unknown origin.
    pub fn node(&self, id: NodeId) -> &Node {
        &self.g[id]
    }

    pub fn try_node(&self, id: NodeId) -> Option<&Node> {
        self.g.node_weight(id)
    }

    pub fn contains(&self, id: NodeId) -> bool {
        self.g.contains_node(id)
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.g.node_count()
    }

    pub fn is_empty(&self) -> bool {
        self.g.node_count() == 0
    }

    /// One past the largest node index ever used: the size for vectors indexed by `NodeId::index`.
    pub fn node_bound(&self) -> usize {
        self.g.node_bound()
    }

    /// All node ids in index order.
    pub fn node_ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.g.node_indices()
    }

    /// The operands of `id`, in order.
    pub fn operands(&self, id: NodeId) -> Vec<NodeId> {
        let mut es: Vec<(u32, NodeId)> =
            self.g.edges_directed(id, Direction::Incoming).map(|e| (*e.weight(), e.source())).collect();
        es.sort_unstable_by_key(|&(slot, _)| slot);
        es.into_iter().map(|(_, n)| n).collect()
    }

    /// Every use of `id`: (user, operand position). Sorted, so the order is deterministic.
    pub fn users(&self, id: NodeId) -> Vec<(NodeId, usize)> {
        let mut us: Vec<(NodeId, usize)> = self
            .g
            .edges_directed(id, Direction::Outgoing)
            .map(|e| (e.target(), *e.weight() as usize))
            .collect();
        us.sort_unstable();
        us
    }

    /// Finds an input by name.
    pub fn input_named(&self, name: &str) -> Option<NodeId> {
        self.inputs.iter().copied().find(|&i| matches!(&self.g[i].op, Op::Input { name: n, .. } if n == name))
    }

    /// The name of input `id`, if it is one.
    pub fn input_name(&self, id: NodeId) -> Option<&str> {
        match &self.try_node(id)?.op {
            Op::Input { name, .. } => Some(name),
            _ => None,
        }
    }

    /// A deterministic topological order: the inputs first (in input order), then every other
    /// node as soon as its operands are placed, lowest index first. `Err` names a node on a cycle.
    pub fn topo_order(&self) -> Result<Vec<NodeId>> {
        let n = self.g.node_bound();
        let mut pending = vec![0usize; n];
        let mut heap = BinaryHeap::new();
        for id in self.g.node_indices() {
            pending[id.index()] = self.g.edges_directed(id, Direction::Incoming).count();
            if pending[id.index()] == 0 && !matches!(self.g[id].op, Op::Input { .. }) {
                heap.push(Reverse(id));
            }
        }
        let mut order = Vec::with_capacity(self.g.node_count());
        let mut place = |id: NodeId, order: &mut Vec<NodeId>, heap: &mut BinaryHeap<Reverse<NodeId>>| {
            order.push(id);
            for e in self.g.edges_directed(id, Direction::Outgoing) {
                let t = e.target();
                pending[t.index()] -= 1;
                if pending[t.index()] == 0 {
                    heap.push(Reverse(t));
                }
            }
        };
        for &i in &self.inputs {
            if self.g.contains_node(i) {
                place(i, &mut order, &mut heap);
            }
        }
        while let Some(Reverse(id)) = heap.pop() {
            place(id, &mut order, &mut heap);
        }
        if order.len() != self.g.node_count() {
            let on_cycle = self
                .g
                .node_indices()
                .find(|&i| !order.contains(&i))
                .map(|i| format!("{} (index {})", self.g[i].op.name(), i.index()))
                .unwrap_or_default();
            return Err(Error::Graph(format!("the graph has a cycle through node {on_cycle}")));
        }
        Ok(order)
    }

    /// Nodes that the outputs depend on (including the outputs), as a mask by node index.
    pub fn live_mask(&self) -> Vec<bool> {
        let mut live = vec![false; self.g.node_bound()];
        let mut stack: Vec<NodeId> = self.outputs.iter().copied().filter(|&o| self.contains(o)).collect();
        while let Some(id) = stack.pop() {
            if std::mem::replace(&mut live[id.index()], true) {
                continue;
            }
            stack.extend(self.g.neighbors_directed(id, Direction::Incoming));
        }
        live
    }

    // ----- rewriting ------------------------------------------------------------------------

    /// Makes every user of `old` (and every output slot holding it) use `new` instead.
    /// `new` must have the same dtype and shape.
    pub fn replace_uses(&mut self, old: NodeId, new: NodeId) -> Result<()> {
        if old == new {
            return Ok(());
        }
        let (a, b) = (self.node(old), self.node(new));
        if a.dtype != b.dtype || a.shape != b.shape {
            return Err(Error::Graph(format!(
                "cannot replace a {}{} value with a {}{} one",
                a.dtype, a.shape, b.dtype, b.shape
            )));
        }
        for (user, slot) in self.users(old) {
            // A user may take `old` in several slots: `users` lists each slot once.
            let ids: Vec<_> = self
                .g
                .edges_connecting(old, user)
                .filter(|e| *e.weight() as usize == slot)
                .map(|e| e.id())
                .collect();
            for eid in ids {
                self.g.remove_edge(eid);
                self.g.add_edge(new, user, slot as u32);
            }
        }
        for o in &mut self.outputs {
            if *o == old {
                *o = new;
            }
        }
        Ok(())
    }

    /// Removes a node and its edges. Removing an input also drops it from the input list.
    pub fn remove(&mut self, id: NodeId) -> Option<Node> {
        self.inputs.retain(|&i| i != id);
        self.g.remove_node(id)
    }

    /// Removes every node the outputs do not depend on, except inputs (they are the graph's
    /// signature). Returns how many nodes were removed.
    pub fn remove_dead(&mut self) -> usize {
        let live = self.live_mask();
        let dead: Vec<NodeId> = self
            .g
            .node_indices()
            .filter(|&i| !live[i.index()] && !matches!(self.g[i].op, Op::Input { .. }))
            .collect();
        for &d in &dead {
            self.g.remove_node(d);
        }
        dead.len()
    }

    /// Mutable access to a node's op for in-place rewrites that keep its type (e.g. renaming an
    /// input). Callers that change the type must re-verify.
    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        &mut self.g[id]
    }

    /// The underlying petgraph graph, for algorithms (read-only).
    pub fn petgraph(&self) -> &StableDiGraph<Node, u32, u32> {
        &self.g
    }

    /// Operand types of `id`, for re-running inference.
    pub(crate) fn operand_types(&self, id: NodeId) -> Vec<(DType, Shape)> {
        self.operands(id).into_iter().map(|o| (self.g[o].dtype, self.g[o].shape.clone())).collect()
    }
}
