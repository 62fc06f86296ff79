//! The verifier: checks every invariant of [`Graph`] and names the node that breaks one.

use crate::error::{Error, Result};
use crate::graph::{Graph, NodeId};
use crate::op::{Arity, Op};
use petgraph::Direction;

impl Graph {
    /// Checks operand counts and positions, that each node's dtype and shape are what its op
    /// infers, that the graph is acyclic, that outputs exist and that the input list is exact.
    /// Errors name the node by its position in the printed (topological) order.
    pub fn verify(&self) -> Result<()> {
        let order = self.topo_order()?;
        let mut printed = vec![usize::MAX; self.node_bound()];
        for (i, &id) in order.iter().enumerate() {
            printed[id.index()] = i;
        }
        let fail = |id: NodeId, msg: String| Error::Verify {
            node: printed[id.index()],
            op: self.node(id).op.name().to_string(),
            msg,
        };
        for &id in &order {
            let node = self.node(id);
            let mut slots: Vec<u32> =
                self.petgraph().edges_directed(id, Direction::Incoming).map(|e| *e.weight()).collect();
            slots.sort_unstable();
            if slots.iter().enumerate().any(|(i, &s)| s as usize != i) {
                return Err(fail(id, format!("operand positions {slots:?} are not 0..{}", slots.len())));
            }
            match (&node.op, node.op.arity()) {
                (Op::Input { .. }, _) => {
                    if !self.inputs().contains(&id) {
                        return Err(fail(id, "is an Input missing from the graph's input list".into()));
                    }
                }
                (Op::Constant(lit), _) => {
                    if lit.dtype() != node.dtype || lit.len() != node.shape.numel() {
                        return Err(fail(
                            id,
                            format!(
                                "holds {} {} values but is typed {}{}",
                                lit.len(),
                                lit.dtype(),
                                node.dtype,
                                node.shape
                            ),
                        ));
                    }
                }
                (op, Arity::Exactly(_) | Arity::AtLeast(_)) => {
                    let types = self.operand_types(id);
                    let refs: Vec<_> = types.iter().map(|(d, s)| (*d, s)).collect();
                    let (d, s) = op.infer(&refs).map_err(|e| fail(id, e.to_string()))?;
                    if d != node.dtype || s != node.shape {
                        return Err(fail(
                            id,
                            format!("is typed {}{} but its operands give {d}{s}", node.dtype, node.shape),
                        ));
                    }
                }
            }
        }
        for (k, &i) in self.inputs().iter().enumerate() {
            if !self.contains(i) || !matches!(self.node(i).op, Op::Input { .. }) {
                return Err(Error::Graph(format!("input {k} is not an Input node of this graph")));
            }
            if self.inputs()[..k].contains(&i) {
                return Err(Error::Graph(format!("input {k} is listed twice")));
            }
        }
        for (k, &o) in self.outputs().iter().enumerate() {
            if !self.contains(o) {
                return Err(Error::Graph(format!("output {k} refers to a node that does not exist")));
            }
        }
        Ok(())
    }
}
