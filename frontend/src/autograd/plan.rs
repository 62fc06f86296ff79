//! How a recorded op is differentiated: its forward as a small IR graph (a template), with the
//! reverse graph appended by the autodiff pass. The backward of a node replays the reverse part
//! as tensor ops, so it is lazy, fusable with everything else, and — under `create_graph` —
//! recorded again for higher-order gradients.

use crate::error::Result;
use crate::tensor::Tensor;
use kiln_ir::{Graph, NodeId, Op, Shape};
use smallvec::SmallVec;
use std::cell::RefCell;

thread_local! {
    /// Spare slot lists for [`Program::with_slots`] (a stack: programs may run inside programs).
    static SLOTS: RefCell<Vec<Vec<Option<Tensor>>>> = const { RefCell::new(Vec::new()) };
}

/// The forward of one recorded op as a graph: an `Input` per tensor input (or an embedded
/// `Constant` for constant operands, so rules such as `x.pow(2)` fold), and its output node.
pub(crate) struct Template {
    pub graph: Graph,
    /// Per tensor input: its `Input` node, or `None` when it was embedded as a constant.
    pub inputs: Vec<Option<NodeId>>,
    pub output: NodeId,
}

/// A template with its reverse graph, compiled to a replay program.
pub(crate) struct ReversePlan {
    pub inputs: Vec<Option<NodeId>>,
    pub output: NodeId,
    pub seed: NodeId,
    /// Per tensor input: the node holding its gradient, if it gets one.
    pub grads: Vec<Option<NodeId>>,
    /// The nodes to replay (everything the gradients need except the template's inputs, its
    /// output and the seed, which are bound to tensors).
    pub program: Program,
    /// Which inputs, and whether the result, the backward reads (what must be saved).
    pub uses_input: Vec<bool>,
    pub uses_result: bool,
}

impl ReversePlan {
    /// Appends the reverse graph for the inputs marked in `needs`.
    pub fn new(t: Template, needs: &[bool]) -> Result<ReversePlan> {
        let Template { mut graph, inputs, output } = t;
        let seed = {
            let n = graph.node(output);
            let (d, s) = (n.dtype, n.shape.clone());
            graph.input("grad_output", d, s)
        };
        let wrt: Vec<NodeId> =
            inputs.iter().zip(needs).filter_map(|(i, &n)| if n { *i } else { None }).collect();
        let found = kiln_passes::grad(&mut graph, &[output], &[seed], &wrt)?;
        let mut it = found.into_iter();
        let grads: Vec<Option<NodeId>> = inputs
            .iter()
            .zip(needs)
            .map(|(i, &n)| if n && i.is_some() { it.next().flatten() } else { None })
            .collect();

        // Everything the gradients depend on.
        let mut live = vec![false; graph.node_bound()];
        let mut stack: Vec<NodeId> = grads.iter().flatten().copied().collect();
        while let Some(n) = stack.pop() {
            if !std::mem::replace(&mut live[n.index()], true) {
                stack.extend(graph.operands(n));
            }
        }
        let bound: Vec<NodeId> = inputs.iter().flatten().copied().chain([output, seed]).collect();
        let order: Vec<NodeId> =
            graph.topo_order()?.into_iter().filter(|n| live[n.index()] && !bound.contains(n)).collect();
        let program = Program::new(&graph, &order);
        let uses_input = inputs.iter().map(|i| i.is_some_and(|i| live[i.index()])).collect();
        let uses_result = live[output.index()];
        Ok(ReversePlan { inputs, output, seed, grads, program, uses_input, uses_result })
    }
}

/// Nodes of a graph to replay as tensor ops, with their operands resolved once (a backward
/// replays the same plan every step; walking petgraph edges each time showed in profiles).
pub(crate) struct Program {
    steps: Vec<Step>,
    /// Slots a run needs: the graph's node bound.
    pub slots: usize,
}

struct Step {
    node: usize,
    op: Op,
    shape: Shape,
    operands: Vec<usize>,
}

impl Program {
    /// Replays `order` (nodes of `g`, in topological order).
    pub fn new(g: &Graph, order: &[NodeId]) -> Program {
        let steps = order
            .iter()
            .map(|&n| {
                let node = g.node(n);
                let operands = g.operands(n).iter().map(|o| o.index()).collect();
                Step { node: n.index(), op: node.op.clone(), shape: node.shape.clone(), operands }
            })
            .collect();
        Program { steps, slots: g.node_bound() }
    }

    /// Calls `f` with empty slots for [`Program::run`], reused across calls on this thread (a
    /// backward runs one program per node).
    pub fn with_slots<R>(&self, f: impl FnOnce(&mut [Option<Tensor>]) -> R) -> R {
        let mut v = SLOTS.with(|s| s.borrow_mut().pop()).unwrap_or_default();
        v.resize(self.slots, None);
        let r = f(&mut v);
        v.clear();
        SLOTS.with(|s| s.borrow_mut().push(v));
        r
    }

    /// Runs the steps as tensor ops. `bound[node index]` holds the tensors given for the graph's
    /// inputs; every replayed node is stored there too. Ops record gradients iff grad mode is on.
    pub fn run(&self, bound: &mut [Option<Tensor>]) -> Result<()> {
        for s in &self.steps {
            let t = match &s.op {
                Op::Constant(lit) => Tensor::constant(lit.clone(), s.shape.clone()),
                op => {
                    let mut refs: SmallVec<[&Tensor; 4]> = SmallVec::with_capacity(s.operands.len());
                    for &o in &s.operands {
                        refs.push(bound[o].as_ref().ok_or_else(|| unbound(op))?);
                    }
                    crate::ops::record::apply_op(op, &refs)?
                }
            };
            bound[s.node] = Some(t);
        }
        Ok(())
    }
}

fn unbound(op: &Op) -> crate::Error {
    crate::Error::Op(format!("internal: an operand of a replayed {op:?} is unbound"))
}
