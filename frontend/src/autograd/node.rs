//! The recorded backward graph: one [`Node`] per differentiable op (PyTorch's `grad_fn`), edges to
//! the nodes of its inputs, the values it saved, and the hooks registered on its outputs.
//!
//! Ownership is one-way so no `Arc` cycle can form: a tensor owns its `grad_fn`; a node owns the
//! nodes of its inputs and the input tensors it saved; a saved *result* keeps only the value and a
//! weak link back to the node; an `AccumulateGrad` node owns its leaf, which links back weakly.

use crate::autograd::function::CustomState;
use crate::autograd::plan::ReversePlan;
use crate::error::{Error, Result};
use crate::expr::Expr;
use crate::tensor::{Dims, Meta, Tensor, TensorImpl};
use kiln_ir::{DType, Shape};
use smallvec::{smallvec, SmallVec};
use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

/// A gradient hook: sees the gradient, may return a replacement.
pub type Hook = Arc<dyn Fn(&Tensor) -> Option<Tensor> + Send + Sync>;

/// Hooks in registration order, each with the id its handle removes it by.
pub(crate) type HookList = Arc<Mutex<Vec<(u64, Hook)>>>;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

pub(crate) fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// Where a gradient goes: input `input_nr` of `node`.
#[derive(Clone)]
pub(crate) struct Edge {
    pub node: Arc<Node>,
    pub input_nr: usize,
}

/// A node's edges, one per input (inline for the usual one or two: recording allocates
/// per op, and small steps record dozens).
pub(crate) type Edges = SmallVec<[Option<Edge>; 2]>;

pub(crate) enum Kind {
    /// An op (or composite) differentiated by the autodiff pass.
    Graph(Arc<ReversePlan>),
    /// A user-defined `autograd::Function`.
    Custom(Arc<CustomState>),
    /// Accumulates into a leaf's `.grad`.
    Accumulate(Arc<TensorImpl>),
}

pub(crate) struct Node {
    pub name: Cow<'static, str>,
    /// Creation order: the engine runs later nodes first when several are ready.
    pub seq: u64,
    pub kind: Kind,
    pub next: Edges,
    /// dtype and shape of each output, to make zero gradients for outputs that received none.
    pub outputs: SmallVec<[(DType, Dims); 1]>,
    pub saved: Mutex<Saved>,
    /// What was registered on this node's outputs, made by the first registration (most nodes
    /// never have any: one lock and one pointer each, the engine checks it once per node).
    pub observers: Mutex<Option<Box<Observers>>>,
}

/// Hooks and `retain_grad` requests on a node's output tensors.
#[derive(Clone, Default)]
pub(crate) struct Observers {
    /// Hooks registered on the node's output tensors: (output_nr, hooks).
    pub hooks: Vec<(usize, HookList)>,
    /// Output tensors that asked to `retain_grad()`.
    pub retained: Vec<(usize, Weak<TensorImpl>)>,
}

/// Values saved for backward. Released after a backward without `retain_graph`.
#[derive(Default)]
pub(crate) struct Saved {
    pub released: bool,
    /// One slot per input; `None` where the backward does not need that input.
    pub inputs: SmallVec<[Option<SavedTensor>; 2]>,
    pub result: Option<SavedResult>,
}

/// An input saved for backward, with the version it had then.
pub(crate) struct SavedTensor {
    pub tensor: Tensor,
    pub version: u64,
}

/// The node's own output, saved without a strong link back to the node.
pub(crate) struct SavedResult {
    pub expr: Arc<Expr>,
    pub version_counter: Arc<AtomicU64>,
    pub version: u64,
    pub node: Weak<Node>,
}

pub(crate) const RELEASED: &str = "Trying to backward through the graph a second time (or directly access saved tensors after they have already been freed). Saved intermediate values of the graph are freed when you call .backward() or autograd.grad(). Specify retain_graph=True if you need to backward through the graph a second time or if you need to access saved tensors after calling backward.";

fn modified(shape: &[usize], dtype: DType, now: u64, then: u64, output_of: Option<&str>) -> Error {
    let kind = match dtype {
        DType::F32 => "FloatTensor",
        DType::F64 => "DoubleTensor",
        DType::I64 => "LongTensor",
        DType::Bool => "BoolTensor",
    };
    let shape = Shape::new(shape);
    let of = output_of.map(|n| format!(", which is output 0 of {n},")).unwrap_or_default();
    Error::Autograd(format!(
        "one of the variables needed for gradient computation has been modified by an inplace operation: [kiln.{kind} {shape}]{of} is at version {now}; expected version {then} instead. Hint: the operation that failed was the backward of a node recorded before the in-place change; compute with a copy (deep_clone) if you need to modify the tensor."
    ))
}

impl SavedTensor {
    pub fn new(t: &Tensor) -> Result<SavedTensor> {
        if t.0.inference {
            return Err(Error::Autograd(
                "Inference tensors cannot be saved for backward. To work around you can make a clone to get a normal tensor and use it in autograd.".into(),
            ));
        }
        Ok(SavedTensor { tensor: t.clone(), version: t.version() })
    }

    pub fn unpack(&self) -> Result<Tensor> {
        let now = self.tensor.version();
        if now != self.version {
            let name = self.tensor.grad_fn().map(|g| g.name().to_string());
            return Err(modified(
                &self.tensor.0.shape,
                self.tensor.dtype(),
                now,
                self.version,
                name.as_deref(),
            ));
        }
        Ok(self.tensor.clone())
    }
}

impl SavedResult {
    pub fn unpack(&self, owner: &str) -> Result<Tensor> {
        let expr = self.unpack_expr(owner)?;
        let meta = Meta { grad_fn: self.node.upgrade(), ..Meta::default() };
        Ok(Tensor::build(expr, meta, false))
    }

    /// The saved value alone (version-checked), for a backward that is not recorded.
    pub fn unpack_expr(&self, owner: &str) -> Result<Arc<Expr>> {
        let now = self.version_counter.load(Ordering::SeqCst);
        if now != self.version {
            return Err(modified(self.expr.shape.dims(), self.expr.dtype, now, self.version, Some(owner)));
        }
        Ok(self.expr.clone())
    }
}

impl Node {
    pub fn new(
        name: Cow<'static, str>,
        kind: Kind,
        next: Edges,
        outputs: SmallVec<[(DType, Dims); 1]>,
        saved: Saved,
    ) -> Arc<Node> {
        Arc::new(Node {
            name,
            seq: next_id(),
            kind,
            next,
            outputs,
            saved: Mutex::new(saved),
            observers: Mutex::new(None),
        })
    }

    pub fn saved(&self) -> MutexGuard<'_, Saved> {
        self.saved.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The hook list of output `nr`, created on first use.
    pub fn hooks_of(&self, nr: usize) -> HookList {
        let mut o = self.observers.lock().unwrap_or_else(|p| p.into_inner());
        let hs = &mut o.get_or_insert_with(Default::default).hooks;
        if let Some((_, l)) = hs.iter().find(|(n, _)| *n == nr) {
            return l.clone();
        }
        let l = HookList::default();
        hs.push((nr, l.clone()));
        l
    }

    /// Keeps output `nr`'s gradient in `t.grad` during backward.
    pub fn retain(&self, nr: usize, t: Weak<TensorImpl>) {
        let mut o = self.observers.lock().unwrap_or_else(|p| p.into_inner());
        o.get_or_insert_with(Default::default).retained.push((nr, t));
    }

    /// A copy of what is registered (`None` when nothing is).
    pub fn observers(&self) -> Option<Observers> {
        self.observers.lock().unwrap_or_else(|p| p.into_inner()).as_deref().cloned()
    }
}

/// The edge a gradient for `t` flows into: its `grad_fn`, or its leaf's `AccumulateGrad`
/// (created on first use and shared while alive). `None` if `t` does not require grad.
pub(crate) fn gradient_edge(t: &Tensor) -> Option<Edge> {
    let mut m = t.meta();
    if let Some(f) = &m.grad_fn {
        return Some(Edge { node: f.clone(), input_nr: m.output_nr });
    }
    if !m.requires_grad {
        return None;
    }
    if let Some(acc) = m.grad_accumulator.upgrade() {
        return Some(Edge { node: acc, input_nr: 0 });
    }
    let acc = Node::new(
        Cow::Borrowed("AccumulateGrad"),
        Kind::Accumulate(t.0.clone()),
        Edges::new(),
        smallvec![(t.dtype(), t.0.shape.clone())],
        Saved::default(),
    );
    m.grad_accumulator = Arc::downgrade(&acc);
    Some(Edge { node: acc, input_nr: 0 })
}

/// A view of a tensor's `grad_fn` (PyTorch's `tensor.grad_fn`). Equality is identity.
#[derive(Clone)]
pub struct GradFn(pub(crate) Arc<Node>);

impl GradFn {
    /// The node's name, e.g. `"MulBackward0"` or `"AccumulateGrad"`.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The nodes gradients flow to next, one per input: `(node, input_nr)`, `None` for inputs that
    /// do not require grad (PyTorch prints those as `(None, 0)`).
    ///
    /// ```
    /// use kiln_frontend::Tensor;
    /// let w = Tensor::rand(&[1]).requires_grad_(true);
    /// let y = &w * &Tensor::ones(&[1]);
    /// let next = y.grad_fn().unwrap().next_functions();
    /// assert_eq!(next[0].0.as_ref().unwrap().name(), "AccumulateGrad");
    /// assert!(next[1].0.is_none());
    /// ```
    pub fn next_functions(&self) -> Vec<(Option<GradFn>, usize)> {
        self.0
            .next
            .iter()
            .map(|e| match e {
                Some(e) => (Some(GradFn(e.node.clone())), e.input_nr),
                None => (None, 0),
            })
            .collect()
    }

    /// A tensor the node saved for backward, by PyTorch's name: `"self"`, `"other"` (inputs 0
    /// and 1; `"input{i}"` for further ones), `"result"`. `Ok(None)` if this node did not save
    /// it; an error if the saved values were already freed by a backward pass.
    ///
    /// ```
    /// use kiln_frontend::Tensor;
    /// let x = Tensor::rand(&[3]).requires_grad_(true);
    /// let y = x.exp();
    /// let saved = y.grad_fn().unwrap().saved_tensor("result").unwrap().unwrap();
    /// assert_eq!(saved.to_vec_f64().unwrap(), y.to_vec_f64().unwrap());
    /// ```
    pub fn saved_tensor(&self, name: &str) -> Result<Option<Tensor>> {
        let idx = match name {
            "result" => None,
            "self" => Some(0),
            "other" => Some(1),
            n => match n.strip_prefix("input").and_then(|i| i.parse().ok()) {
                Some(i) => Some(i),
                None => return Ok(None),
            },
        };
        let s = self.0.saved();
        if s.released {
            // Freed: an error if this node had saved that value, as PyTorch reports it.
            let had = match &self.0.kind {
                Kind::Graph(p) => {
                    idx.map_or(p.uses_result, |i| p.uses_input.get(i).copied().unwrap_or(false))
                }
                _ => false,
            };
            return if had { Err(Error::Autograd(RELEASED.into())) } else { Ok(None) };
        }
        match idx {
            None => s.result.as_ref().map(|r| r.unpack(&self.0.name)).transpose(),
            Some(i) => s.inputs.get(i).and_then(|o| o.as_ref()).map(|t| t.unpack()).transpose(),
        }
    }
}

impl PartialEq for GradFn {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl fmt::Debug for GradFn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{}>", self.0.name)
    }
}

impl Drop for Node {
    /// Long recorded chains (a loop that keeps building on one tensor) would otherwise be freed
    /// recursively through `next` edges and saved tensors and overflow the stack: unlink the
    /// nodes this one owns iteratively instead.
    fn drop(&mut self) {
        let mut stack: SmallVec<[Arc<Node>; 8]> = self.next.drain(..).flatten().map(|e| e.node).collect();
        let take_saved = |saved: &mut Saved, stack: &mut SmallVec<[Arc<Node>; 8]>| {
            for t in saved.inputs.drain(..).flatten() {
                if let Ok(inner) = Arc::try_unwrap(t.tensor.0) {
                    let meta = inner.meta.into_inner().unwrap_or_else(|p| p.into_inner());
                    stack.extend(meta.grad_fn);
                }
            }
        };
        take_saved(self.saved.get_mut().unwrap_or_else(|p| p.into_inner()), &mut stack);
        while let Some(n) = stack.pop() {
            if let Ok(mut inner) = Arc::try_unwrap(n) {
                stack.extend(inner.next.drain(..).flatten().map(|e| e.node));
                take_saved(inner.saved.get_mut().unwrap_or_else(|p| p.into_inner()), &mut stack);
                // `inner` now owns nothing deep; dropping it recurses at most one level.
            }
        }
    }
}
