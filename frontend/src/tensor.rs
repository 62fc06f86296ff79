//! `Tensor`: a cheap handle (an `Arc`) to a lazily computed array plus its autograd state.

use crate::autograd::node::{HookList, Node};
use crate::error::{Error, Result};
use crate::expr::Expr;
use kiln_ir::interp::Value;
use kiln_ir::DType;
use smallvec::SmallVec;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

/// An n-dimensional array that records the operations applied to it, like a PyTorch tensor.
///
/// `Clone` copies the handle: both handles are the same tensor (PyTorch's `b = a`). The deep copy
/// that is recorded in the graph is [`Tensor::deep_clone`] (PyTorch's `clone()`).
///
/// ```
/// use kiln_frontend::Tensor;
/// let x = Tensor::ones(&[2, 2]).requires_grad_(true);
/// let y = &x + 2.0;
/// assert_eq!(y.grad_fn().unwrap().name(), "AddBackward0");
/// assert_eq!(y.to_vec_f64().unwrap(), vec![3.0; 4]);
/// ```
#[derive(Clone)]
pub struct Tensor(pub(crate) Arc<TensorImpl>);

/// A tensor's extents, inline for up to four dimensions: tensors are made by the dozen per step
/// and copying the shape must not allocate.
pub(crate) type Dims = SmallVec<[usize; 4]>;

pub(crate) struct TensorImpl {
    pub dtype: DType,
    pub shape: Dims,
    /// The current value. Shared by `detach()` and `data()` aliases; in-place ops swap it.
    pub storage: Storage,
    /// Bumped by every in-place op. Shared by `detach()` aliases, not by `data()` ones.
    pub version: Version,
    pub meta: Mutex<Meta>,
    /// Created in inference mode: may not be saved for backward.
    pub inference: bool,
    /// Made by a view op (reshape, transpose, slice, ...). kiln's views do not alias their base,
    /// so in-place ops on them are refused rather than silently diverging from PyTorch.
    pub is_view: bool,
}

/// A tensor's slot for its current value. Owned by the tensor until an alias (`detach()`,
/// `data()`, a custom function's output) must see its in-place changes: then the slot moves
/// into a shared cell both point at. Most tensors of a traced step are never aliased, and a
/// separate allocation per tensor showed in the per-step profile.
pub(crate) struct Storage(Mutex<Slot>);

enum Slot {
    Own(Arc<Expr>),
    Shared(Arc<Mutex<Arc<Expr>>>),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Storage {
    pub fn new(e: Arc<Expr>) -> Storage {
        Storage(Mutex::new(Slot::Own(e)))
    }

    pub fn get(&self) -> Arc<Expr> {
        match &*lock(&self.0) {
            Slot::Own(e) => e.clone(),
            Slot::Shared(c) => lock(c).clone(),
        }
    }

    pub fn set(&self, e: Arc<Expr>) {
        match &mut *lock(&self.0) {
            Slot::Own(old) => *old = e,
            Slot::Shared(c) => *lock(c) = e,
        }
    }

    /// Another handle to the same slot (this one becomes shared if it was not).
    pub fn alias(&self) -> Storage {
        let mut slot = lock(&self.0);
        let cell = match &*slot {
            Slot::Shared(c) => c.clone(),
            Slot::Own(e) => {
                let c = Arc::new(Mutex::new(e.clone()));
                *slot = Slot::Shared(c.clone());
                c
            }
        };
        Storage(Mutex::new(Slot::Shared(cell)))
    }

    /// Whether both handles are the same shared slot.
    fn same(&self, other: &Storage) -> bool {
        // One lock at a time (two threads comparing the same pair in opposite orders).
        let cell = |s: &Storage| match &*lock(&s.0) {
            Slot::Shared(c) => Some(Arc::as_ptr(c)),
            Slot::Own(_) => None,
        };
        cell(self).is_some_and(|a| cell(other) == Some(a))
    }
}

/// A tensor's version counter, allocated on first need (a bump, or an alias or saved value that
/// must share it): most tensors of a traced step are never modified in place, and an allocation
/// per tensor showed in the per-step profile. Until then the version is `start`.
#[derive(Default)]
pub(crate) struct Version {
    start: u64,
    shared: OnceLock<Arc<AtomicU64>>,
}

impl Version {
    /// A fresh counter starting at `v`.
    pub fn starting_at(v: u64) -> Version {
        Version { start: v, shared: OnceLock::new() }
    }

    pub fn get(&self) -> u64 {
        self.shared.get().map_or(self.start, |c| c.load(Ordering::SeqCst))
    }

    pub fn bump(&self) {
        self.shared().fetch_add(1, Ordering::SeqCst);
    }

    /// The counter itself, for aliases and saved values that must see later bumps.
    pub fn shared(&self) -> Arc<AtomicU64> {
        self.shared.get_or_init(|| Arc::new(AtomicU64::new(self.start))).clone()
    }

    /// Another handle to the same counter.
    pub fn alias(&self) -> Version {
        let c = Version::default();
        let _ = c.shared.set(self.shared());
        c
    }
}

/// Autograd state of one tensor.
#[derive(Default)]
pub(crate) struct Meta {
    /// For leaves: whether gradients are accumulated into `grad`.
    pub requires_grad: bool,
    pub grad_fn: Option<Arc<Node>>,
    pub output_nr: usize,
    pub grad: Option<Tensor>,
    pub retains_grad: bool,
    /// Hooks of a leaf (a non-leaf's hooks live on its `grad_fn`), created by the first one.
    pub hooks: Option<HookList>,
    pub grad_accumulator: Weak<Node>,
}

impl Tensor {
    // ----- construction (crate-internal) ------------------------------------------------------

    pub(crate) fn build(expr: Arc<Expr>, meta: Meta, is_view: bool) -> Tensor {
        Tensor(Arc::new(TensorImpl {
            dtype: expr.dtype,
            shape: Dims::from_slice(expr.shape.dims()),
            storage: Storage::new(expr),
            version: Version::default(),
            meta: Mutex::new(meta),
            inference: crate::autograd::mode::is_inference_mode_enabled(),
            is_view,
        }))
    }

    /// A tensor without autograd history holding `expr`.
    pub(crate) fn from_expr(expr: Arc<Expr>) -> Tensor {
        Tensor::build(expr, Meta::default(), false)
    }

    /// A tensor (no autograd history) holding `v`, without copying its elements.
    ///
    /// ```
    /// use kiln_frontend::Tensor;
    /// use kiln_ir::Value;
    /// let v = Value::from_f64(kiln_ir::DType::F32, [2], &[1.0, 2.0]).unwrap();
    /// assert_eq!(Tensor::from_value(v).to_vec_f32()?, vec![1.0, 2.0]);
    /// # Ok::<(), kiln_frontend::Error>(())
    /// ```
    pub fn from_value(v: Value) -> Tensor {
        Tensor::from_expr(Expr::ready(v))
    }

    /// A constant of this tensor's dtype (used for scalars in arithmetic).
    pub(crate) fn scalar_like(&self, v: f64) -> Tensor {
        Tensor::from_expr(crate::expr::filled(self.0.dtype, v, &[]))
    }

    pub(crate) fn expr(&self) -> Arc<Expr> {
        self.0.storage.get()
    }

    pub(crate) fn meta(&self) -> MutexGuard<'_, Meta> {
        self.0.meta.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn version(&self) -> u64 {
        self.0.version.get()
    }

    pub(crate) fn bump_version(&self) {
        self.0.version.bump();
    }

    /// True if `a` and `b` are handles to the same tensor.
    pub fn same(a: &Tensor, b: &Tensor) -> bool {
        Arc::ptr_eq(&a.0, &b.0)
    }

    /// True if `a` and `b` share storage (e.g. one is the other's `detach()` or `data()`).
    pub fn shares_storage(a: &Tensor, b: &Tensor) -> bool {
        Tensor::same(a, b) || a.0.storage.same(&b.0.storage)
    }

    // ----- type and shape ---------------------------------------------------------------------

    pub fn dtype(&self) -> DType {
        self.0.dtype
    }

    /// The extent of each dimension (PyTorch's `shape` / `size()`).
    pub fn shape(&self) -> &[usize] {
        &self.0.shape
    }

    /// Number of dimensions.
    pub fn dim(&self) -> usize {
        self.0.shape.len()
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.0.shape.iter().fold(1usize, |n, &d| n.saturating_mul(d))
    }

    /// Extent of dimension `d` (negative counts from the end).
    pub fn size(&self, d: i64) -> Result<usize> {
        let ax = self.axis(d)?;
        Ok(self.0.shape[ax])
    }

    pub(crate) fn axis(&self, d: i64) -> Result<usize> {
        kiln_ir::normalize_axis(d, self.dim()).ok_or_else(|| {
            let r = self.dim() as i64;
            Error::Op(format!(
                "Dimension out of range (expected to be in range of [{}, {}], but got {d})",
                -r.max(1),
                (r - 1).max(0)
            ))
        })
    }

    // ----- values -----------------------------------------------------------------------------

    /// Computes the value (and everything pending behind it).
    pub(crate) fn value(&self) -> Result<Arc<Value>> {
        self.expr().get()
    }

    /// The elements in row-major order, as f64.
    pub fn to_vec_f64(&self) -> Result<Vec<f64>> {
        Ok(self.value()?.to_f64_vec())
    }

    /// The elements in row-major order, as f32.
    pub fn to_vec_f32(&self) -> Result<Vec<f32>> {
        Ok(match &*self.value()? {
            Value::F32(a) => a.iter().copied().collect(),
            other => other.to_f64_vec().into_iter().map(|v| v as f32).collect(),
        })
    }

    /// The value of a one-element tensor (PyTorch's `item()`).
    ///
    /// ```
    /// let t = kiln_frontend::Tensor::full(&[1], 2.5);
    /// assert_eq!(t.item().unwrap(), 2.5);
    /// assert!(kiln_frontend::Tensor::ones(&[2]).item().is_err());
    /// ```
    pub fn item(&self) -> Result<f64> {
        if self.numel() != 1 {
            return Err(Error::Op(format!(
                "a Tensor with {} elements cannot be converted to Scalar",
                self.numel()
            )));
        }
        Ok(self.value()?.scalar_f64().expect("one element"))
    }

    /// The value as an `ndarray` array of f64.
    pub fn to_ndarray_f64(&self) -> Result<ndarray::ArrayD<f64>> {
        let v = self.to_vec_f64()?;
        ndarray::ArrayD::from_shape_vec(self.shape().to_vec(), v).map_err(|e| Error::Op(e.to_string()))
    }

    /// The value as an `ndarray` array of f32.
    pub fn to_ndarray_f32(&self) -> Result<ndarray::ArrayD<f32>> {
        let v = self.to_vec_f32()?;
        ndarray::ArrayD::from_shape_vec(self.shape().to_vec(), v).map_err(|e| Error::Op(e.to_string()))
    }
}

// Tensor is shared across threads (SEEDS 9.1).
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Tensor>();
};

/// Computes the pending values of `tensors` (`&[Tensor]` or `&[&Tensor]`) now, together in one
/// graph, without copying them out (what JAX's `block_until_ready` is for: timing, or ending a
/// step's lazy work at a point of your choosing). Values already computed cost nothing.
///
/// ```
/// use kiln_frontend::{realize, Tensor};
/// let x = Tensor::from_vec(vec![1.0f32, 2.0], &[2])?;
/// let (y, z) = (x.exp(), &x * 2.0);
/// realize(&[&y, &z])?;
/// assert_eq!(z.to_vec_f32()?, vec![2.0, 4.0]);
/// # Ok::<(), kiln_frontend::Error>(())
/// ```
pub fn realize<T: std::borrow::Borrow<Tensor>>(tensors: &[T]) -> Result<()> {
    let exprs: Vec<Arc<Expr>> = tensors.iter().map(|t| t.borrow().expr()).collect();
    crate::expr::realize(&exprs)
}
