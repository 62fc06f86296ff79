//! How a recorded op is differentiated: its forward as a small IR graph (a template), with the
//! reverse graph appended by the autodiff pass. The backward of a node replays the reverse part
//! as tensor ops, so it is lazy, fusable with everything else, and — under `create_graph` —
//! recorded again for higher-order gradients.

use crate::error::Result;
use crate::expr::Expr;
use crate::ops::record::default_name;
use crate::tensor::Tensor;
use kiln_ir::{DType, Graph, NodeId, Op, Shape};
use smallvec::SmallVec;
use std::cell::RefCell;
use std::sync::Arc;
use std::thread::LocalKey;

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
        let exposed: Vec<NodeId> = grads.iter().flatten().copied().collect();
        let program = Program::new(&graph, &order, &exposed);
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

pub(crate) struct Step {
    node: usize,
    op: Op,
    dtype: DType,
    shape: Shape,
    /// [`Expr::op_hash`] of (op, dtype, shape): the template fixes the operand types, so a
    /// replay on exprs needs neither the shape rule nor the hash again.
    hash: u64,
    operands: Vec<usize>,
    /// The operands' types in the template.
    operand_types: Vec<(DType, Shape)>,
    /// For a `Constant` step: its value, made once and shared by every replay (an expr is
    /// immutable, and a constant computes the same value each time).
    constant: Option<Arc<Expr>>,
    /// The same as a tensor, for replays on tensors, unless the step's value leaves the program
    /// (a caller could change a tensor it is handed in place). Internal constants are only read:
    /// as operands of recorded ops they are embedded in the ops' templates, never saved.
    constant_tensor: Option<Tensor>,
}

impl Step {
    /// Whether operands of these types are what the template was built for (then the step's
    /// own type and hash hold; a hook may have changed a gradient's dtype, for one).
    fn typed_as_planned<'a>(&self, types: impl Iterator<Item = (DType, &'a [usize])>) -> bool {
        types.zip(&self.operand_types).all(|((d, s), (pd, ps))| d == *pd && s == ps.dims())
    }
}

impl Program {
    /// Replays `order` (nodes of `g`, in topological order); the values of `exposed` nodes are
    /// handed to callers.
    pub fn new(g: &Graph, order: &[NodeId], exposed: &[NodeId]) -> Program {
        let steps = order
            .iter()
            .map(|&n| {
                let node = g.node(n);
                let operands = g.operands(n).iter().map(|o| o.index()).collect();
                let operand_types =
                    g.operands(n).iter().map(|&o| (g.node(o).dtype, g.node(o).shape.clone())).collect();
                let hash = Expr::op_hash(&node.op, node.dtype, &node.shape);
                let constant = match &node.op {
                    Op::Constant(lit) => Some(Expr::constant(lit.clone(), node.shape.clone())),
                    _ => None,
                };
                let constant_tensor =
                    constant.as_ref().filter(|_| !exposed.contains(&n)).map(|c| Tensor::from_expr(c.clone()));
                Step {
                    node: n.index(),
                    op: node.op.clone(),
                    dtype: node.dtype,
                    shape: node.shape.clone(),
                    hash,
                    operands,
                    operand_types,
                    constant,
                    constant_tensor,
                }
            })
            .collect();
        Program { steps, slots: g.node_bound() }
    }

    /// Calls `f` with empty slots for [`Program::run`], reused across calls on this thread (a
    /// backward runs one program per node).
    pub fn with_slots<T: Replay, R>(&self, f: impl FnOnce(&mut [Option<T>]) -> R) -> R {
        let mut v = T::spare().with(|s| s.borrow_mut().pop()).unwrap_or_default();
        v.resize(self.slots, None);
        let r = f(&mut v);
        v.clear();
        T::spare().with(|s| s.borrow_mut().push(v));
        r
    }

    /// Runs the steps. `bound[node index]` holds the values given for the graph's inputs; every
    /// replayed node is stored there too. On tensors, ops record gradients iff grad mode is on;
    /// on exprs nothing is recorded.
    pub fn run<T: Replay>(&self, bound: &mut [Option<T>]) -> Result<()> {
        for s in &self.steps {
            let t = {
                let mut refs: SmallVec<[&T; 4]> = SmallVec::with_capacity(s.operands.len());
                for &o in &s.operands {
                    refs.push(bound[o].as_ref().ok_or_else(|| unbound(&s.op))?);
                }
                T::step(s, &refs)?
            };
            bound[s.node] = Some(t);
        }
        Ok(())
    }

    /// Whether node `n` is replayed by a view op (its tensor is then flagged as a view, as the
    /// tensor op would have made it).
    pub fn is_view(&self, n: usize) -> bool {
        self.steps.iter().any(|s| s.node == n && crate::ops::record::is_view_op(&s.op))
    }
}

/// What a program can be replayed on: tensors (recorded under grad mode, for higher-order
/// gradients) or bare exprs (a backward that is not recorded needs no tensor per intermediate).
pub(crate) trait Replay: Clone + Sized + 'static {
    /// The value of step `s` (a constant, or its op applied to `operands`).
    fn step(s: &Step, operands: &[&Self]) -> Result<Self>;
    /// Spare slot lists for [`Program::with_slots`] (a stack: programs may run inside programs).
    fn spare() -> &'static LocalKey<RefCell<Vec<Vec<Option<Self>>>>>;
}

thread_local! {
    static TENSOR_SLOTS: RefCell<Vec<Vec<Option<Tensor>>>> = const { RefCell::new(Vec::new()) };
    static EXPR_SLOTS: RefCell<Vec<Vec<Option<Arc<Expr>>>>> = const { RefCell::new(Vec::new()) };
}

impl Replay for Tensor {
    fn step(s: &Step, operands: &[&Tensor]) -> Result<Tensor> {
        if let Some(t) = &s.constant_tensor {
            return Ok(t.clone());
        }
        if let Some(c) = &s.constant {
            return Ok(Tensor::from_expr(c.clone()));
        }
        let typed = s.typed_as_planned(operands.iter().map(|t| (t.dtype(), t.shape())));
        let typed = typed.then(|| (s.dtype, s.shape.clone(), s.hash));
        crate::ops::record::apply_typed(default_name(&s.op), s.op.clone(), operands, typed)
    }
    fn spare() -> &'static LocalKey<RefCell<Vec<Vec<Option<Tensor>>>>> {
        &TENSOR_SLOTS
    }
}

impl Replay for Arc<Expr> {
    fn step(s: &Step, operands: &[&Arc<Expr>]) -> Result<Arc<Expr>> {
        if let Some(c) = &s.constant {
            return Ok(c.clone());
        }
        let typed_as_planned = s.typed_as_planned(operands.iter().map(|e| (e.dtype, e.shape.dims())));
        let mut inputs = crate::expr::Operands::new();
        for &e in operands {
            inputs.push(e.clone());
        }
        let operands = inputs;
        if !typed_as_planned {
            // Not what the template was built for (a hook changed a gradient's dtype): the op's
            // own rule decides, or reports the error.
            return Expr::apply(s.op.clone(), operands);
        }
        Ok(Expr::pending_hashed(s.op.clone(), operands, s.dtype, s.shape.clone(), s.hash))
    }
    fn spare() -> &'static LocalKey<RefCell<Vec<Vec<Option<Arc<Expr>>>>>> {
        &EXPR_SLOTS
    }
}

fn unbound(op: &Op) -> crate::Error {
    crate::Error::Op(format!("internal: an operand of a replayed {op:?} is unbound"))
}
