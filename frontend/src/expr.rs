//! Lazy values: the data side of a tensor.
//!
//! An [`Expr`] is either a computed array or an op waiting for its inputs. Ops only build `Expr`s;
//! [`realize`] lowers the pending part of the DAG behind the requested exprs to one
//! [`kiln_ir::Graph`] (computed exprs become graph inputs), runs it on the current backend, and
//! stores the results. A realized expr drops its inputs, so memory held by a traced step is
//! released as soon as the values that depend on it exist.

use crate::backend;
use crate::error::{Error, Result};
use kiln_ir::interp::Value;
use kiln_ir::{DType, Graph, Literal, NodeId, Op, Shape};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};

/// A lazily computed array.
pub(crate) struct Expr {
    pub dtype: DType,
    pub shape: Shape,
    state: Mutex<State>,
}

enum State {
    Pending { op: Op, inputs: Vec<Arc<Expr>> },
    Ready(Arc<Value>),
}

impl Expr {
    /// A computed value.
    pub fn ready(v: Value) -> Arc<Expr> {
        Arc::new(Expr { dtype: v.dtype(), shape: v.shape(), state: Mutex::new(State::Ready(Arc::new(v))) })
    }

    /// A pending op whose result type was already inferred by the caller.
    pub fn pending(op: Op, inputs: Vec<Arc<Expr>>, dtype: DType, shape: Shape) -> Arc<Expr> {
        Arc::new(Expr { dtype, shape, state: Mutex::new(State::Pending { op, inputs }) })
    }

    /// A constant (kept in the graph as a `Constant` node, so passes can fold it).
    pub fn constant(lit: Literal, shape: Shape) -> Arc<Expr> {
        let dtype = lit.dtype();
        Expr::pending(Op::Constant(lit), Vec::new(), dtype, shape)
    }

    /// `op(inputs)`, typed by the op's shape rule.
    pub fn apply(op: Op, inputs: Vec<Arc<Expr>>) -> Result<Arc<Expr>> {
        let types: Vec<(DType, &Shape)> = inputs.iter().map(|e| (e.dtype, &e.shape)).collect();
        let (dtype, shape) = op.infer(&types)?;
        Ok(Expr::pending(op, inputs, dtype, shape))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The value if it has been computed.
    pub fn value(&self) -> Option<Arc<Value>> {
        match &*self.lock() {
            State::Ready(v) => Some(v.clone()),
            State::Pending { .. } => None,
        }
    }

    /// The literal of a pending `Constant`.
    pub fn literal(&self) -> Option<Literal> {
        match &*self.lock() {
            State::Pending { op: Op::Constant(l), .. } => Some(l.clone()),
            _ => None,
        }
    }

    /// Computes the value (with everything pending behind it) if needed.
    pub fn get(self: &Arc<Self>) -> Result<Arc<Value>> {
        if let Some(v) = self.value() {
            return Ok(v);
        }
        realize(std::slice::from_ref(self))?;
        Ok(self.value().expect("realize stores every target"))
    }
}

thread_local! {
    /// A placeholder swapped in for a value being recycled.
    static EMPTY: Arc<Value> = Arc::new(Value::F32(ndarray::ArrayD::zeros(ndarray::IxDyn(&[0]))));
}

impl Drop for Expr {
    /// Long chains of pending exprs (a loop that keeps building on one tensor) would otherwise be
    /// dropped recursively and overflow the stack: unlink them iteratively.
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        if let State::Ready(v) = state {
            // The last reference to a computed value: give its memory back for reuse.
            let v = std::mem::replace(v, EMPTY.with(Arc::clone));
            if let Ok(v) = Arc::try_unwrap(v) {
                kiln_codegen::recycle::give(v);
            }
            return;
        }
        let State::Pending { inputs, .. } = state else { return };
        let mut stack = std::mem::take(inputs);
        while let Some(e) = stack.pop() {
            if let Ok(mut inner) = Arc::try_unwrap(e) {
                if let State::Pending { inputs, .. } =
                    inner.state.get_mut().unwrap_or_else(|p| p.into_inner())
                {
                    stack.append(inputs);
                }
            }
        }
    }
}

/// Computes every expr in `targets` (and any pending expr behind them that something else still
/// holds, so it is not computed twice) in one graph on the current backend.
pub(crate) fn realize(targets: &[Arc<Expr>]) -> Result<()> {
    let lowered = lower(targets)?;
    if lowered.graph.outputs().is_empty() {
        return Ok(());
    }
    let outs = backend::current()?
        .run_keyed(lowered.key, &lowered.graph, &lowered.input_values)
        .map_err(Error::from)?;
    for (e, v) in lowered.outputs.iter().zip(outs) {
        *e.lock() = State::Ready(Arc::new(v));
    }
    Ok(())
}

/// The graph that computes `targets`, with the values of its inputs and the exprs its outputs
/// belong to. `key` identifies the graph's structure (the compile-cache key).
pub(crate) struct Lowered {
    pub key: u64,
    pub graph: Arc<Graph>,
    pub input_values: Vec<Arc<Value>>,
    pub outputs: Vec<Arc<Expr>>,
    positions: FastMap<usize, usize>,
}

impl Lowered {
    /// The graph node computing `e` (which must have been lowered). Graphs are built one node
    /// per walked expr, in walk order, so the node is the expr's position.
    pub fn node_of(&self, e: &Arc<Expr>) -> NodeId {
        NodeId::new(self.positions[&(Arc::as_ptr(e) as usize)])
    }
}

/// Graphs already built, by structural key: a training loop lowers the same structure every
/// step, and only its input values change.
static GRAPHS: Mutex<Option<HashMap<u64, Arc<Graph>>>> = Mutex::new(None);
const GRAPH_CACHE_LIMIT: usize = 512;

/// Lowers the pending DAG behind `targets`. Computed exprs become inputs named `in0, in1, ...`;
/// pending constants become `Constant` nodes. The walk computes a structural key (ops, types,
/// wiring, which nodes are outputs); the petgraph graph is only built the first time a key is
/// seen.
pub(crate) fn lower(targets: &[Arc<Expr>]) -> Result<Lowered> {
    // Post-order walk over pending exprs, iterative (graphs can be long chains).
    let ptr = |e: &Arc<Expr>| Arc::as_ptr(e) as usize;
    let mut order: Vec<Arc<Expr>> = Vec::new();
    let mut pos: FastMap<usize, usize> = FastMap::default(); // expr → position in `order`
    let mut parent_refs: FastMap<usize, usize> = FastMap::default();
    // Each expr's state is read once, when the walk reaches it: another thread may realize it
    // meanwhile, and the graph must match what was walked.
    let mut snaps: Vec<Snap> = Vec::new();
    let mut pending_snap: FastMap<usize, Snap> = FastMap::default();
    let mut stack: Vec<(Arc<Expr>, bool)> = targets.iter().rev().map(|t| (t.clone(), false)).collect();
    while let Some((e, expanded)) = stack.pop() {
        if pos.contains_key(&ptr(&e)) {
            continue;
        }
        if expanded {
            pos.insert(ptr(&e), order.len());
            snaps.push(pending_snap.remove(&ptr(&e)).expect("snapshot taken when expanded"));
            order.push(e);
            continue;
        }
        if pending_snap.contains_key(&ptr(&e)) {
            continue;
        }
        let snap = match &*e.lock() {
            State::Pending { op, inputs } => Snap::Pending(op.clone(), inputs.clone()),
            State::Ready(v) => Snap::Ready(v.clone()),
        };
        let inputs = match &snap {
            Snap::Pending(_, inputs) => inputs.clone(),
            Snap::Ready(_) => Vec::new(),
        };
        pending_snap.insert(ptr(&e), snap);
        stack.push((e, true));
        for i in inputs.iter().rev() {
            *parent_refs.entry(ptr(i)).or_default() += 1;
            if !pos.contains_key(&ptr(i)) {
                stack.push((i.clone(), false));
            }
        }
    }

    // Structure key, input values, and what to store: the targets, and pending exprs held
    // outside this DAG (by tensors, saved values) — computing them now avoids computing them
    // again later.
    let mut h = FxHasher::default();
    let mut input_values = Vec::new();
    let mut outputs = Vec::new();
    let mut out_pos = Vec::new();
    for (i, (e, snap)) in order.iter().zip(&snaps).enumerate() {
        e.dtype.hash(&mut h);
        e.shape.hash(&mut h);
        let pending = match snap {
            Snap::Ready(v) => {
                h.write_u8(0xff);
                input_values.push(v.clone());
                false
            }
            Snap::Pending(op, inputs) => {
                op.hash(&mut h);
                h.write_usize(inputs.len());
                inputs.iter().for_each(|x| h.write_usize(pos[&ptr(x)]));
                !matches!(op, Op::Constant(_))
            }
        };
        let target_refs = targets.iter().filter(|t| Arc::ptr_eq(t, e)).count();
        let is_target = target_refs > 0;
        // References: `order` holds one, each parent in the DAG one, each target entry one.
        let internal = 1 + parent_refs.get(&ptr(e)).copied().unwrap_or(0) + target_refs;
        let held_outside = Arc::strong_count(e) > internal;
        let constant_target = is_target && matches!(snap, Snap::Pending(..)) && !pending;
        if (pending && (is_target || held_outside)) || constant_target {
            outputs.push(e.clone());
            out_pos.push(i);
            h.write_usize(i);
        }
    }
    let key = h.finish();

    let cached =
        GRAPHS.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(HashMap::new).get(&key).cloned();
    let graph = match cached {
        Some(g) => g,
        None => {
            let g = Arc::new(build_graph(&order, &snaps, &pos, &out_pos)?);
            let mut cache = GRAPHS.lock().unwrap_or_else(|p| p.into_inner());
            let cache = cache.get_or_insert_with(HashMap::new);
            if cache.len() >= GRAPH_CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(key, g.clone());
            g
        }
    };
    Ok(Lowered { key, graph, input_values, outputs, positions: pos })
}

/// An expr's state as the lowering walk saw it.
enum Snap {
    Ready(Arc<Value>),
    Pending(Op, Vec<Arc<Expr>>),
}

fn build_graph(
    order: &[Arc<Expr>],
    snaps: &[Snap],
    pos: &FastMap<usize, usize>,
    out_pos: &[usize],
) -> Result<Graph> {
    let mut g = Graph::new();
    let mut nodes: Vec<NodeId> = Vec::with_capacity(order.len());
    let mut n_inputs = 0;
    for (e, snap) in order.iter().zip(snaps) {
        let node = match snap {
            Snap::Ready(_) => {
                n_inputs += 1;
                g.input(format!("in{}", n_inputs - 1), e.dtype, e.shape.clone())
            }
            Snap::Pending(Op::Constant(lit), _) => g.constant(lit.clone(), e.shape.clone())?,
            Snap::Pending(op, inputs) => {
                let operands: Vec<NodeId> =
                    inputs.iter().map(|i| nodes[pos[&(Arc::as_ptr(i) as usize)]]).collect();
                g.add(op.clone(), &operands)?
            }
        };
        nodes.push(node);
    }
    g.set_outputs(out_pos.iter().map(|&i| nodes[i]).collect());
    Ok(g)
}

/// A small, fast, in-process hasher (the multiply-rotate scheme of rustc's FxHash) for the
/// lowering walk's pointer maps and structure key: SipHash and byte-wise FNV showed up in the
/// per-step profile of small training steps. Not stable across processes — the key only has
/// to identify structures within one run.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(b));
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;
