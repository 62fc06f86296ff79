//! How a recorded op is differentiated: its forward as a small IR graph (a template), with the
//! reverse graph appended by the autodiff pass. The backward of a node replays the reverse part
//! as tensor ops, so it is lazy, fusable with everything else, and — under `create_graph` —
//! recorded again for higher-order gradients.

use crate::error::Result;
use crate::tensor::Tensor;
use kiln_ir::{Graph, NodeId, Op};
use std::collections::HashMap;

/// The forward of one recorded op as a graph: an `Input` per tensor input (or an embedded
/// `Constant` for constant operands, so rules such as `x.pow(2)` fold), and its output node.
pub(crate) struct Template {
    pub graph: Graph,
    /// Per tensor input: its `Input` node, or `None` when it was embedded as a constant.
    pub inputs: Vec<Option<NodeId>>,
    pub output: NodeId,
}

/// A template with its reverse graph.
pub(crate) struct ReversePlan {
    pub graph: Graph,
    pub inputs: Vec<Option<NodeId>>,
    pub output: NodeId,
    pub seed: NodeId,
    /// Per tensor input: the node holding its gradient, if it gets one.
    pub grads: Vec<Option<NodeId>>,
    /// Nodes to replay, in topological order (everything the gradients need except the template's
    /// inputs, its output and the seed, which are bound to tensors).
    pub order: Vec<NodeId>,
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
        let order =
            graph.topo_order()?.into_iter().filter(|n| live[n.index()] && !bound.contains(n)).collect();
        let uses_input = inputs.iter().map(|i| i.is_some_and(|i| live[i.index()])).collect();
        let uses_result = live[output.index()];
        Ok(ReversePlan { graph, inputs, output, seed, grads, order, uses_input, uses_result })
    }
}

/// Replays `order` (nodes of `g`) as tensor ops. `bound` maps nodes already given as tensors;
/// every replayed node is added to it. Ops record gradients iff grad mode is on.
pub(crate) fn replay(g: &Graph, order: &[NodeId], bound: &mut HashMap<NodeId, Tensor>) -> Result<()> {
    for &n in order {
        let node = g.node(n);
        let t = match &node.op {
            Op::Constant(lit) => Tensor::constant(lit.clone(), node.shape.clone()),
            Op::Input { name, .. } => {
                return Err(crate::Error::Op(format!(
                    "internal: input '{name}' of a replayed graph is unbound"
                )))
            }
            op => {
                let xs: Vec<Tensor> = g.operands(n).iter().map(|o| bound[o].clone()).collect();
                let refs: Vec<&Tensor> = xs.iter().collect();
                crate::ops::record::apply(crate::ops::record::default_name(op), op.clone(), &refs)?
            }
        };
        bound.insert(n, t);
    }
    Ok(())
}
