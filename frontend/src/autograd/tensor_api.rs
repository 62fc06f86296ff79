//! The autograd side of `Tensor`: flags, `.grad`, `grad_fn`, hooks, `detach`/`data`, backward.

use crate::autograd::node::{Hook, HookList};
use crate::autograd::GradFn;
use crate::error::{Error, Result};
use crate::tensor::{Meta, Tensor, TensorImpl, Version};
use std::sync::{Arc, Mutex, Weak};

/// Removes a hook registered with [`Tensor::register_hook`].
pub struct HookHandle {
    list: Weak<Mutex<Vec<(u64, Hook)>>>,
    id: u64,
}

impl HookHandle {
    /// Unregisters the hook; it will not be called again.
    pub fn remove(self) {
        if let Some(l) = self.list.upgrade() {
            l.lock().unwrap_or_else(|p| p.into_inner()).retain(|(i, _)| *i != self.id);
        }
    }
}

impl Tensor {
    /// Whether gradients are computed for this tensor.
    pub fn requires_grad(&self) -> bool {
        let m = self.meta();
        m.requires_grad || m.grad_fn.is_some()
    }

    /// A leaf is a tensor not produced by a recorded op (user-created, or made under no_grad).
    pub fn is_leaf(&self) -> bool {
        self.meta().grad_fn.is_none()
    }

    /// Sets whether this leaf requires grad and returns the same tensor (PyTorch's
    /// `requires_grad_`). Panics where PyTorch raises: see [`Tensor::set_requires_grad`].
    ///
    /// ```
    /// let x = kiln_frontend::Tensor::ones(&[2]).requires_grad_(true);
    /// assert!(x.requires_grad() && x.is_leaf());
    /// ```
    pub fn requires_grad_(self, requires_grad: bool) -> Tensor {
        if let Err(e) = self.set_requires_grad(requires_grad) {
            panic!("{e}");
        }
        self
    }

    /// Sets whether this leaf requires grad. Errors for non-leaves and non-float dtypes, with
    /// PyTorch's messages.
    pub fn set_requires_grad(&self, requires_grad: bool) -> Result<()> {
        let mut m = self.meta();
        if m.grad_fn.is_some() {
            if requires_grad {
                return Ok(());
            }
            return Err(Error::Autograd("you can only change requires_grad flags of leaf variables. If you want to use a computed variable in a subgraph that doesn't require differentiation use var_no_grad = var.detach().".into()));
        }
        if requires_grad && !self.dtype().is_float() {
            return Err(Error::Autograd(
                "only Tensors of floating point and complex dtype can require gradients".into(),
            ));
        }
        m.requires_grad = requires_grad;
        Ok(())
    }

    /// The accumulated gradient, if any (PyTorch's `.grad`). For non-leaves it is kept only after
    /// [`Tensor::retain_grad`].
    pub fn grad(&self) -> Option<Tensor> {
        self.meta().grad.clone()
    }

    /// Replaces (or clears, with `None`) the accumulated gradient.
    pub fn set_grad(&self, grad: Option<Tensor>) -> Result<()> {
        if let Some(g) = &grad {
            if g.shape() != self.shape() {
                return Err(Error::Autograd(format!(
                    "assigned grad has data of a different size: expected {:?}, got {:?}",
                    self.shape(),
                    g.shape()
                )));
            }
        }
        self.meta().grad = grad;
        Ok(())
    }

    /// The node that created this tensor (`None` for leaves).
    pub fn grad_fn(&self) -> Option<GradFn> {
        self.meta().grad_fn.clone().map(GradFn)
    }

    /// Keeps this non-leaf's gradient in `.grad` during backward (a no-op on leaves).
    pub fn retain_grad(&self) -> Result<()> {
        let mut m = self.meta();
        let Some(f) = m.grad_fn.clone() else {
            if m.requires_grad {
                return Ok(());
            }
            return Err(Error::Autograd("can't retain_grad on Tensor that has requires_grad=False".into()));
        };
        if !m.retains_grad {
            m.retains_grad = true;
            f.retain(m.output_nr, Arc::downgrade(&self.0));
        }
        Ok(())
    }

    /// Whether this non-leaf keeps its gradient.
    pub fn retains_grad(&self) -> bool {
        self.meta().retains_grad
    }

    /// Registers a hook called with this tensor's gradient during backward; if it returns a
    /// tensor, that replaces the gradient. Hooks run in registration order.
    ///
    /// ```
    /// use kiln_frontend::Tensor;
    /// use std::sync::{Arc, atomic::{AtomicUsize, Ordering}};
    /// let x = Tensor::ones(&[3]).requires_grad_(true);
    /// let y = &x * 2.0;
    /// let calls = Arc::new(AtomicUsize::new(0));
    /// let c = calls.clone();
    /// let h = y.register_hook(move |g| { c.fetch_add(1, Ordering::SeqCst); Some(g * 10.0) }).unwrap();
    /// y.sum().backward().unwrap();
    /// assert_eq!(x.grad().unwrap().to_vec_f64().unwrap(), vec![20.0; 3]);
    /// h.remove();
    /// assert_eq!(calls.load(Ordering::SeqCst), 1);
    /// ```
    pub fn register_hook<F>(&self, hook: F) -> Result<HookHandle>
    where
        F: Fn(&Tensor) -> Option<Tensor> + Send + Sync + 'static,
    {
        let list: HookList = {
            let mut m = self.meta();
            match (&m.grad_fn, m.requires_grad) {
                (Some(f), _) => f.hooks_of(m.output_nr),
                (None, true) => m.hooks.get_or_insert_with(Default::default).clone(),
                (None, false) => {
                    return Err(Error::Autograd(
                        "cannot register a hook on a tensor that doesn't require gradient".into(),
                    ))
                }
            }
        };
        let id = crate::autograd::node::next_id();
        list.lock().unwrap_or_else(|p| p.into_inner()).push((id, Arc::new(hook)));
        Ok(HookHandle { list: Arc::downgrade(&list), id })
    }

    /// A tensor with the same data (shared storage and version counter) and no history.
    pub fn detach(&self) -> Tensor {
        Tensor(Arc::new(TensorImpl {
            dtype: self.0.dtype,
            shape: self.0.shape.clone(),
            storage: self.0.storage.alias(),
            version: self.0.version.alias(),
            meta: Mutex::new(Meta::default()),
            inference: self.0.inference,
            is_view: false,
        }))
    }

    /// PyTorch's `.data`: the same storage, untracked — in-place changes through it are not
    /// seen by autograd's version checks.
    pub fn data(&self) -> Tensor {
        Tensor(Arc::new(TensorImpl {
            dtype: self.0.dtype,
            shape: self.0.shape.clone(),
            storage: self.0.storage.alias(),
            version: Version::default(),
            meta: Mutex::new(Meta::default()),
            inference: self.0.inference,
            is_view: false,
        }))
    }

    /// `backward()` of a one-element tensor: accumulates gradients into the leaves' `.grad`.
    ///
    /// ```
    /// use kiln_frontend::Tensor;
    /// let x = Tensor::ones(&[2, 2]).requires_grad_(true);
    /// let out = ((&x + 2.0) * (&x + 2.0) * 3.0).mean();
    /// out.backward().unwrap();
    /// assert_eq!(x.grad().unwrap().to_vec_f64().unwrap(), vec![4.5; 4]);
    /// ```
    pub fn backward(&self) -> Result<()> {
        crate::autograd::backward(&[self], &[], false, false)
    }

    /// `backward(gradient, retain_graph, create_graph)`. `gradient` is required for tensors with
    /// more than one element.
    pub fn backward_with(
        &self,
        gradient: Option<&Tensor>,
        retain_graph: bool,
        create_graph: bool,
    ) -> Result<()> {
        crate::autograd::backward(&[self], &[gradient.cloned()], retain_graph, create_graph)
    }
}
