//! `trace`: the IR graph a piece of tensor code records, for inspection.

use crate::error::Result;
use crate::expr::lower;
use crate::tensor::Tensor;
use kiln_ir::Graph;

/// Runs `f` and returns the graph that computes its results from the tensors it started from
/// (computed tensors become graph inputs `in0, in1, ...`). Nothing is computed.
///
/// ```
/// use kiln_frontend::{trace, Tensor};
/// let x = Tensor::ones(&[3]);
/// let g = trace(|| vec![(&x * 2.0).exp()]).unwrap();
/// assert!(g.to_text().contains("Exp("));
/// ```
pub fn trace(f: impl FnOnce() -> Vec<Tensor>) -> Result<Graph> {
    let outs = f();
    let exprs: Vec<_> = outs.iter().map(Tensor::expr).collect();
    let lowered = lower(&exprs)?;
    let ids: Vec<_> = exprs.iter().map(|e| lowered.node_of(e)).collect();
    let mut g = (*lowered.graph).clone();
    g.set_outputs(ids);
    Ok(g)
}
