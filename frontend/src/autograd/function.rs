//! User-defined differentiable functions (PyTorch's `torch.autograd.Function`).

use crate::autograd::mode::{is_grad_enabled, no_grad};
use crate::autograd::node::{gradient_edge, Kind, Node, Saved, SavedTensor, RELEASED};
use crate::error::{Error, Result};
use crate::tensor::{Meta, Tensor, TensorImpl};
use std::any::Any;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A differentiable function with a hand-written backward.
///
/// `forward` runs without recording; `backward` receives one gradient per output and returns one
/// optional gradient per input (`None`: that input gets no gradient). Apply it with
/// [`FunctionExt::apply`].
///
/// ```
/// use kiln_frontend::{autograd::{Context, Function, FunctionExt}, Result, Tensor};
///
/// struct Square;
/// impl Function for Square {
///     fn forward(&self, ctx: &mut Context, x: &[Tensor]) -> Result<Vec<Tensor>> {
///         ctx.save_for_backward(&[&x[0]])?;
///         Ok(vec![x[0].mul(&x[0])?])
///     }
///     fn backward(&self, ctx: &Context, g: &[Tensor]) -> Result<Vec<Option<Tensor>>> {
///         let x = &ctx.saved_tensors()?[0];
///         Ok(vec![Some(g[0].mul(&(x * 2.0))?)])
///     }
/// }
///
/// let x = Tensor::full(&[1], 3.0).requires_grad_(true);
/// let y = Square.apply(&[&x]).unwrap().remove(0);
/// assert_eq!(y.grad_fn().unwrap().name(), "SquareBackward");
/// y.backward().unwrap();
/// assert_eq!(x.grad().unwrap().item().unwrap(), 6.0);
/// ```
pub trait Function: Send + Sync + 'static {
    fn forward(&self, ctx: &mut Context, inputs: &[Tensor]) -> Result<Vec<Tensor>>;
    fn backward(&self, ctx: &Context, grad_outputs: &[Tensor]) -> Result<Vec<Option<Tensor>>>;

    /// The `grad_fn` name: the type's name followed by `Backward`, as PyTorch does.
    fn name(&self) -> String {
        let full = std::any::type_name::<Self>();
        let short = full.rsplit("::").next().unwrap_or(full);
        format!("{short}Backward")
    }
}

/// Applies a [`Function`] (PyTorch's `Function.apply`).
pub trait FunctionExt: Function + Sized {
    /// Runs `forward` on `inputs` and, if any input requires grad, records a node whose backward
    /// is `self.backward`.
    fn apply(self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        apply_function(Arc::new(self), inputs)
    }
}

impl<F: Function> FunctionExt for F {}

/// What `forward` leaves for `backward`: saved tensors (version-checked, freed after backward
/// unless `retain_graph`) and any other values by name.
pub struct Context {
    saved: Vec<SavedTensor>,
    released: bool,
    needs_input_grad: Vec<bool>,
    values: HashMap<String, Box<dyn Any + Send + Sync>>,
}

impl Context {
    /// Saves tensors for `backward` (inputs or outputs of `forward`).
    pub fn save_for_backward(&mut self, tensors: &[&Tensor]) -> Result<()> {
        self.saved = tensors.iter().map(|t| SavedTensor::new(t)).collect::<Result<_>>()?;
        Ok(())
    }

    /// The tensors given to `save_for_backward`. Errors if they were modified in place since, or
    /// freed by an earlier backward without `retain_graph`.
    pub fn saved_tensors(&self) -> Result<Vec<Tensor>> {
        if self.released {
            return Err(Error::Autograd(RELEASED.into()));
        }
        self.saved.iter().map(SavedTensor::unpack).collect()
    }

    /// Whether input `i` needs a gradient.
    pub fn needs_input_grad(&self, i: usize) -> bool {
        self.needs_input_grad.get(i).copied().unwrap_or(false)
    }

    /// Keeps a non-tensor value for `backward` (PyTorch's `ctx.flag = ...`).
    pub fn set<T: Any + Send + Sync>(&mut self, name: &str, value: T) {
        self.values.insert(name.to_string(), Box::new(value));
    }

    /// A value kept with [`Context::set`].
    pub fn get<T: Any + Send + Sync>(&self, name: &str) -> Option<&T> {
        self.values.get(name).and_then(|v| v.downcast_ref())
    }
}

/// A recorded custom function: the function and its context.
pub(crate) struct CustomState {
    func: Arc<dyn DynFunction>,
    ctx: Mutex<Context>,
    n_inputs: usize,
}

/// Object-safe view of `Function` (its `name` has a default that needs `Self: Sized`).
trait DynFunction: Send + Sync {
    fn backward(&self, ctx: &Context, g: &[Tensor]) -> Result<Vec<Option<Tensor>>>;
}

impl<F: Function> DynFunction for F {
    fn backward(&self, ctx: &Context, g: &[Tensor]) -> Result<Vec<Option<Tensor>>> {
        Function::backward(self, ctx, g)
    }
}

impl CustomState {
    pub(crate) fn backward(&self, node: &Node, buf: &[Option<Tensor>]) -> Result<Vec<Option<Tensor>>> {
        let grads: Vec<Tensor> = buf
            .iter()
            .zip(&node.outputs)
            .map(|(g, (d, s))| g.clone().unwrap_or_else(|| Tensor::zeros_typed(s, *d)))
            .collect();
        let ctx = self.ctx.lock().unwrap_or_else(|p| p.into_inner());
        let out = self.func.backward(&ctx, &grads)?;
        if out.len() != self.n_inputs {
            return Err(Error::Autograd(format!(
                "function {} returned an incorrect number of gradients (expected {}, got {})",
                node.name,
                self.n_inputs,
                out.len()
            )));
        }
        for (i, (g, e)) in out.iter().zip(&node.next).enumerate() {
            if let (Some(g), Some(e)) = (g, e) {
                let want = &e.node.outputs[e.input_nr].1;
                if g.shape() != &want[..] {
                    return Err(Error::Autograd(format!(
                        "Function {} returned an invalid gradient at index {i} - got {:?} but expected shape compatible with {:?}",
                        node.name,
                        g.shape(),
                        &want[..]
                    )));
                }
            }
        }
        Ok(out)
    }

    pub(crate) fn release(&self) {
        let mut ctx = self.ctx.lock().unwrap_or_else(|p| p.into_inner());
        ctx.released = true;
        ctx.saved.clear();
    }
}

fn apply_function<F: Function>(f: Arc<F>, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
    let needs: Vec<bool> = inputs.iter().map(|t| t.requires_grad()).collect();
    let record = is_grad_enabled() && needs.iter().any(|&n| n);
    let mut ctx = Context {
        saved: Vec::new(),
        released: false,
        needs_input_grad: needs.clone(),
        values: HashMap::new(),
    };
    let outs = {
        let _g = no_grad();
        let owned: Vec<Tensor> = inputs.iter().map(|t| (*t).clone()).collect();
        f.forward(&mut ctx, &owned)?
    };
    if !record {
        return Ok(outs);
    }
    let next = inputs.iter().zip(&needs).map(|(t, &n)| if n { gradient_edge(t) } else { None }).collect();
    let outputs = outs.iter().map(|o| (o.dtype(), o.0.shape.clone())).collect();
    let state = CustomState { func: f.clone(), ctx: Mutex::new(ctx), n_inputs: inputs.len() };
    let node =
        Node::new(Cow::Owned(f.name()), Kind::Custom(Arc::new(state)), next, outputs, Saved::default());
    // Each output aliases what forward returned (same storage and version counter), so tensors
    // forward saved are version-checked against later in-place changes of the outputs.
    Ok(outs
        .iter()
        .enumerate()
        .map(|(nr, o)| {
            Tensor(Arc::new(TensorImpl {
                dtype: o.dtype(),
                shape: o.0.shape.clone(),
                storage: o.0.storage.alias(),
                version: o.0.version.alias(),
                meta: Mutex::new(Meta { grad_fn: Some(node.clone()), output_nr: nr, ..Meta::default() }),
                inference: o.0.inference,
                is_view: false,
            }))
        })
        .collect())
}
