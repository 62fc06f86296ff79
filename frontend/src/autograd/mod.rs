//! Autograd: recording, the backward engine, `grad`, hooks, modes and custom functions.

pub(crate) mod engine;
pub mod function;
pub mod gradcheck;
pub mod mode;
pub(crate) mod node;
pub(crate) mod plan;
mod tensor_api;

pub use function::{Context, Function, FunctionExt};
pub use gradcheck::{gradcheck, gradgradcheck, GradcheckOptions};
pub use node::GradFn;
pub use tensor_api::HookHandle;

use crate::error::{Error, Result};
use crate::tensor::Tensor;
use engine::Request;
use node::gradient_edge;

/// Options of [`grad`] (PyTorch's keyword arguments).
#[derive(Clone, Debug, Default)]
pub struct GradOptions {
    /// Incoming gradients, one per output; `None` entries (or an empty list) mean ones for
    /// one-element outputs.
    pub grad_outputs: Vec<Option<Tensor>>,
    /// Keep saved values so the graph can be differentiated again. Defaults to `create_graph`.
    pub retain_graph: Option<bool>,
    /// Record the backward itself, so the gradients can be differentiated (higher order).
    pub create_graph: bool,
    /// Return `None` for inputs the outputs do not depend on instead of an error.
    pub allow_unused: bool,
}

/// The gradients of `outputs` with respect to `inputs` (PyTorch's `torch.autograd.grad`),
/// without touching any `.grad`.
///
/// ```
/// use kiln_frontend::{autograd::{grad, GradOptions}, Tensor};
/// let x = Tensor::full(&[], 5.0).requires_grad_(true);
/// let y = x.pow(3.0);
/// let opts = GradOptions { create_graph: true, ..Default::default() };
/// let g = grad(&[&y], &[&x], opts).unwrap().remove(0).unwrap();
/// assert_eq!(g.item().unwrap(), 75.0);
/// let h = grad(&[&g], &[&x], GradOptions::default()).unwrap().remove(0).unwrap();
/// assert_eq!(h.item().unwrap(), 30.0);
/// ```
pub fn grad(outputs: &[&Tensor], inputs: &[&Tensor], opts: GradOptions) -> Result<Vec<Option<Tensor>>> {
    let roots = roots(outputs, &opts.grad_outputs)?;
    let mut capture = engine::Few::with_capacity(inputs.len());
    for (i, t) in inputs.iter().enumerate() {
        capture.push(gradient_edge(t).ok_or_else(|| {
            Error::Autograd(format!("One of the differentiated Tensors (input {i}) does not require grad"))
        })?);
    }
    let retain_graph = opts.retain_graph.unwrap_or(opts.create_graph);
    let got = engine::run(Request {
        roots,
        outputs: outputs.iter().map(|t| (*t).clone()).collect(),
        retain_graph,
        create_graph: opts.create_graph,
        capture: Some(capture),
    })?;
    if !opts.allow_unused && got.iter().any(Option::is_none) {
        return Err(Error::Autograd(
            "One of the differentiated Tensors appears to not have been used in the graph. Set allow_unused=True if this is the desired behavior.".into(),
        ));
    }
    Ok(got)
}

/// Accumulates the gradients of `outputs` into the `.grad` of the leaves they depend on
/// (PyTorch's `torch.autograd.backward`).
pub fn backward(
    outputs: &[&Tensor],
    grad_outputs: &[Option<Tensor>],
    retain_graph: bool,
    create_graph: bool,
) -> Result<()> {
    let roots = roots(outputs, grad_outputs)?;
    let outputs = outputs.iter().map(|t| (*t).clone()).collect();
    engine::run(Request {
        roots,
        outputs,
        retain_graph: retain_graph || create_graph,
        create_graph,
        capture: None,
    })?;
    Ok(())
}

/// Pairs each output with its incoming gradient, checking PyTorch's preconditions.
fn roots(outputs: &[&Tensor], grads: &[Option<Tensor>]) -> Result<engine::Few<(node::Edge, engine::Grad)>> {
    if !grads.is_empty() && grads.len() != outputs.len() {
        return Err(Error::Autograd(format!(
            "grad can be implicitly created only for scalar outputs: got {} grad_outputs for {} outputs",
            grads.len(),
            outputs.len()
        )));
    }
    let mut roots = engine::Few::with_capacity(outputs.len());
    for (i, out) in outputs.iter().enumerate() {
        let edge = gradient_edge(out).ok_or_else(|| {
            Error::Autograd(format!(
                "element {i} of tensors does not require grad and does not have a grad_fn"
            ))
        })?;
        let g = match grads.get(i).cloned().flatten() {
            Some(g) => {
                if g.shape() != out.shape() {
                    return Err(Error::Autograd(format!(
                        "Mismatch in shape: grad_output[{i}] has a shape of {:?} and output[{i}] has a shape of {:?}.",
                        g.shape(),
                        out.shape()
                    )));
                }
                engine::Grad::Tensor(if g.dtype() != out.dtype() { g.to_dtype(out.dtype()) } else { g })
            }
            None => {
                if out.numel() != 1 {
                    return Err(Error::Autograd(
                        "grad can be implicitly created only for scalar outputs".into(),
                    ));
                }
                // A pending constant, not a computed value: it folds into the backward graph.
                engine::Grad::ones_like(out)
            }
        };
        roots.push((edge, g));
    }
    Ok(roots)
}
