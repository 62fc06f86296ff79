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
use smallvec::SmallVec;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};

/// A lazily computed array.
pub(crate) struct Expr {
    pub dtype: DType,
    pub shape: Shape,
    /// The op that computes this expr (`None` for values that were never pending). Immutable and
    /// kept after realization, so the lowering walk reads it without locking or cloning.
    op: Option<Op>,
    /// Hash of (op, dtype, shape), computed once when the op is recorded: the lowering walk's
    /// structural key combines these instead of hashing every op again on every step.
    op_hash: u64,
    state: Mutex<State>,
}

/// The operands of a pending expr: inline for the usual one or two (an allocation per recorded
/// op showed in the per-step profile).
pub(crate) type Operands = SmallVec<[Arc<Expr>; 2]>;

enum State {
    Pending(Operands),
    Ready(Arc<Value>),
}

impl Expr {
    /// A computed value.
    pub fn ready(v: Value) -> Arc<Expr> {
        Arc::new(Expr {
            dtype: v.dtype(),
            shape: v.shape(),
            op: None,
            op_hash: 0,
            state: Mutex::new(State::Ready(Arc::new(v))),
        })
    }

    /// A pending op whose result type was already inferred by the caller.
    pub fn pending(op: Op, inputs: Operands, dtype: DType, shape: Shape) -> Arc<Expr> {
        let op_hash = Expr::op_hash(&op, dtype, &shape);
        Expr::pending_hashed(op, inputs, dtype, shape, op_hash)
    }

    /// [`Expr::pending`] with `op_hash` = [`Expr::op_hash`] of the same op and type, computed
    /// beforehand (a replayed program knows it).
    pub fn pending_hashed(op: Op, inputs: Operands, dtype: DType, shape: Shape, op_hash: u64) -> Arc<Expr> {
        debug_assert_eq!(op_hash, Expr::op_hash(&op, dtype, &shape));
        Arc::new(Expr { dtype, shape, op: Some(op), op_hash, state: Mutex::new(State::Pending(inputs)) })
    }

    /// The hash of (op, dtype, shape) that the lowering walk's structural key combines.
    pub fn op_hash(op: &Op, dtype: DType, shape: &Shape) -> u64 {
        let mut h = FxHasher::default();
        op.hash(&mut h);
        dtype.hash(&mut h);
        shape.hash(&mut h);
        h.finish()
    }

    /// A constant (kept in the graph as a `Constant` node, so passes can fold it).
    pub fn constant(lit: Literal, shape: Shape) -> Arc<Expr> {
        let dtype = lit.dtype();
        Expr::pending(Op::Constant(lit), Operands::new(), dtype, shape)
    }

    /// `op(inputs)`, typed by the op's shape rule.
    pub fn apply(op: Op, inputs: Operands) -> Result<Arc<Expr>> {
        let (dtype, shape) = Expr::infer(&op, &inputs)?;
        Ok(Expr::pending(op, inputs, dtype, shape))
    }

    /// The type of `op(inputs)` by the op's shape rule.
    pub fn infer(op: &Op, inputs: &[Arc<Expr>]) -> Result<(DType, Shape)> {
        Ok(match inputs {
            // The common arities without collecting the operand types first.
            [a] => op.infer(&[(a.dtype, &a.shape)])?,
            [a, b] => op.infer(&[(a.dtype, &a.shape), (b.dtype, &b.shape)])?,
            _ => {
                let types: Vec<(DType, &Shape)> = inputs.iter().map(|e| (e.dtype, &e.shape)).collect();
                op.infer(&types)?
            }
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The value if it has been computed.
    pub fn value(&self) -> Option<Arc<Value>> {
        match &*self.lock() {
            State::Ready(v) => Some(v.clone()),
            State::Pending(_) => None,
        }
    }

    /// The literal of a pending `Constant`.
    pub fn literal(&self) -> Option<Literal> {
        self.pending_constant().cloned()
    }

    /// For a pending `Constant`: the hash of its literal and type (`None` otherwise). Equal
    /// literals of equal type give equal hashes.
    pub fn constant_hash(&self) -> Option<u64> {
        self.pending_constant().map(|_| self.op_hash)
    }

    /// The literal of a pending `Constant`, borrowed.
    pub fn pending_constant(&self) -> Option<&Literal> {
        match &self.op {
            Some(Op::Constant(l)) if matches!(&*self.lock(), State::Pending(_)) => Some(l),
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
            // The last reference to a large computed value: give its memory back for reuse.
            if Arc::strong_count(v) > 1 || !kiln_codegen::recycle::wants(v) {
                return;
            }
            let v = std::mem::replace(v, EMPTY.with(Arc::clone));
            if let Ok(v) = Arc::try_unwrap(v) {
                kiln_codegen::recycle::give(v);
            }
            return;
        }
        let State::Pending(inputs) = state else { return };
        // Nothing to unlink unless an operand is dropped here for the last time.
        if inputs.iter().all(|e| Arc::strong_count(e) > 1) {
            return;
        }
        let mut stack: SmallVec<[Arc<Expr>; 8]> = inputs.drain(..).collect();
        while let Some(e) = stack.pop() {
            if let Ok(mut inner) = Arc::try_unwrap(e) {
                if let State::Pending(inputs) = inner.state.get_mut().unwrap_or_else(|p| p.into_inner()) {
                    stack.extend(inputs.drain(..));
                }
            }
        }
    }
}

/// `v` as a pending constant of `dtype` broadcast to `dims` (a plain constant for a scalar).
///
/// Small ones are shared through a per-thread cache: an optimiser step zeroes its gradients and
/// scales by the same learning rate every step, and making these exprs anew each time showed in
/// the per-step profile. Sharing is sound because an expr never changes except by being
/// computed; a cached one that was computed since (it is a tensor's value, and was read) is
/// replaced rather than handed out again, so constants stay foldable.
pub(crate) fn filled(dtype: DType, v: f64, dims: &[usize]) -> Arc<Expr> {
    /// Largest broadcast cached (a computed one is kept until replaced: bound its size).
    const MAX_CACHED_NUMEL: usize = 4096;
    const ENTRIES: usize = 16;
    type Cache = Vec<(DType, u64, SmallVec<[usize; 4]>, Arc<Expr>)>;
    thread_local! {
        static FILLED: std::cell::RefCell<Cache> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let make = || {
        let c = Expr::constant(Literal::scalar(dtype, v), Shape::scalar());
        if dims.is_empty() {
            return c;
        }
        Expr::apply(Op::Expand { shape: dims.to_vec() }, smallvec::smallvec![c])
            .expect("a scalar expands to any shape")
    };
    if dims.iter().product::<usize>() > MAX_CACHED_NUMEL {
        return make();
    }
    let bits = v.to_bits();
    FILLED.with(|cache| {
        let Ok(mut cache) = cache.try_borrow_mut() else { return make() };
        let hit = cache.iter().position(|(d, b, s, _)| *d == dtype && *b == bits && s.as_slice() == dims);
        if let Some(i) = hit {
            if cache[i].3.value().is_none() {
                return cache[i].3.clone();
            }
            cache.remove(i);
        }
        let e = make();
        if cache.len() >= ENTRIES {
            cache.remove(0);
        }
        cache.push((dtype, bits, SmallVec::from_slice(dims), e.clone()));
        e
    })
}

/// Computes every expr in `targets` (and any pending expr behind them that something else still
/// holds, so it is not computed twice) in one graph on the current backend.
pub(crate) fn realize(targets: &[Arc<Expr>]) -> Result<()> {
    let lowered = lower(targets)?;
    if lowered.graph.outputs().is_empty() {
        return Ok(());
    }
    let outs = backend::current()?
        .run_keyed(lowered.key, &lowered.graph, lowered.input_values())
        .map_err(Error::from)?;
    for (e, v) in lowered.outputs().iter().zip(outs) {
        *e.lock() = State::Ready(Arc::new(v));
    }
    Ok(())
}

/// The graph that computes `targets`, with the values of its inputs and the exprs its outputs
/// belong to. `key` identifies the graph's structure (the compile-cache key).
pub(crate) struct Lowered {
    pub key: u64,
    pub graph: Arc<Graph>,
    walk: Walk,
}

impl Drop for Lowered {
    /// Gives the walk's buffers back for the next lowering on this thread (a small training step
    /// lowers a few graphs per step; allocating the maps and lists each time showed in profiles).
    fn drop(&mut self) {
        let mut w = std::mem::take(&mut self.walk);
        w.clear();
        SCRATCH.with(|s| {
            if let Ok(mut s) = s.try_borrow_mut() {
                *s = Some(w);
            }
        });
    }
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Option<Walk>> = const { std::cell::RefCell::new(None) };
}

impl Lowered {
    /// The values of the graph's inputs, in order.
    pub fn input_values(&self) -> &[Arc<Value>] {
        &self.walk.input_values
    }

    /// The exprs the graph's outputs compute, in order.
    pub fn outputs(&self) -> &[Arc<Expr>] {
        &self.walk.outputs
    }

    /// The graph node computing `e` (which must have been lowered). Graphs are built one node
    /// per walked expr, in post-order, so the node is the expr's position in that order.
    pub fn node_of(&self, e: &Arc<Expr>) -> NodeId {
        let i = self.walk.index[&(Arc::as_ptr(e) as usize)];
        NodeId::new(self.walk.entries[i as usize].pos as usize)
    }
}

/// Graphs already built, by structural key: a training loop lowers the same structure every
/// step, and only its input values change.
static GRAPHS: Mutex<Option<FastMap<u64, Arc<Graph>>>> = Mutex::new(None);
const GRAPH_CACHE_LIMIT: usize = 512;

/// One expr reached by the lowering walk.
struct Entry {
    expr: Arc<Expr>,
    /// The value, if the expr was computed when the walk reached it (it becomes a graph input).
    value: Option<Arc<Value>>,
    /// Its operands (entry indices) as `edges[edges_start..edges_end]`, if it was pending.
    edges_start: u32,
    edges_end: u32,
    /// How many operand slots of walked pending exprs refer to it (each holds one `Arc`).
    parents: u32,
    /// How many times it appears among the targets.
    target_refs: u32,
    expanded: bool,
    /// Position in post-order (= its graph node).
    pos: u32,
    /// Pending and computed from constants alone.
    from_constants: bool,
}

/// The pending DAG behind some targets, each expr once, with its state as the walk saw it.
/// Another thread may realize an expr meanwhile; the graph must match what was walked, so every
/// expr's state is read exactly once.
/// Its buffers are reused from one lowering to the next (see `Drop for Lowered`).
#[derive(Default)]
struct Walk {
    index: FastMap<usize, u32>,
    entries: Vec<Entry>,
    edges: Vec<u32>,
    order: Vec<u32>,
    stack: Vec<(u32, bool)>,
    /// What `lower` fills in: the graph's input values, the exprs its outputs compute, and
    /// their positions in post-order.
    input_values: Vec<Arc<Value>>,
    outputs: Vec<Arc<Expr>>,
    out_pos: Vec<usize>,
}

impl Walk {
    fn clear(&mut self) {
        self.index.clear();
        self.entries.clear();
        self.edges.clear();
        self.order.clear();
        self.stack.clear();
        self.input_values.clear();
        self.outputs.clear();
        self.out_pos.clear();
    }

    fn new(targets: &[Arc<Expr>]) -> Walk {
        let mut w = SCRATCH.with(|s| s.try_borrow_mut().ok().and_then(|mut s| s.take())).unwrap_or_default();
        // Iterative post-order (graphs can be long chains).
        let mut stack = std::mem::take(&mut w.stack);
        for t in targets.iter().rev() {
            let i = w.discover(t);
            w.entries[i as usize].target_refs += 1;
            stack.push((i, false));
        }
        while let Some((i, done)) = stack.pop() {
            let iu = i as usize;
            if done {
                w.entries[iu].pos = w.order.len() as u32;
                w.order.push(i);
                continue;
            }
            if w.entries[iu].expanded {
                continue;
            }
            w.entries[iu].expanded = true;
            let e = w.entries[iu].expr.clone();
            let start = w.edges.len() as u32;
            match &*e.lock() {
                State::Ready(v) => w.entries[iu].value = Some(v.clone()),
                State::Pending(inputs) => {
                    for x in inputs {
                        let j = w.discover(x);
                        w.entries[j as usize].parents += 1;
                        w.edges.push(j);
                    }
                }
            }
            let end = w.edges.len() as u32;
            (w.entries[iu].edges_start, w.entries[iu].edges_end) = (start, end);
            stack.push((i, true));
            for k in (start..end).rev() {
                let j = w.edges[k as usize];
                if !w.entries[j as usize].expanded {
                    stack.push((j, false));
                }
            }
        }
        w.stack = stack;
        w
    }

    fn discover(&mut self, e: &Arc<Expr>) -> u32 {
        let next = self.entries.len() as u32;
        let i = *self.index.entry(Arc::as_ptr(e) as usize).or_insert(next);
        if i == next {
            self.entries.push(Entry {
                expr: e.clone(),
                value: None,
                edges_start: 0,
                edges_end: 0,
                parents: 0,
                target_refs: 0,
                expanded: false,
                pos: 0,
                from_constants: false,
            });
        }
        i
    }

    fn operands(&self, entry: &Entry) -> &[u32] {
        &self.edges[entry.edges_start as usize..entry.edges_end as usize]
    }
}

/// Lowers the pending DAG behind `targets`. Computed exprs become inputs named `in0, in1, ...`;
/// pending constants become `Constant` nodes. The walk computes a structural key from the
/// per-expr hashes taken when each op was recorded, plus the wiring and which nodes are
/// outputs; the petgraph graph is only built the first time a key is seen.
pub(crate) fn lower(targets: &[Arc<Expr>]) -> Result<Lowered> {
    let mut walk = Walk::new(targets);

    // Structure key, input values, and what to store: the targets, and pending exprs held
    // outside this DAG (by tensors, saved values) — computing them now avoids computing them
    // again later.
    let mut h = FxHasher::default();
    let (mut input_values, mut outputs, mut out_pos) = (
        std::mem::take(&mut walk.input_values),
        std::mem::take(&mut walk.outputs),
        std::mem::take(&mut walk.out_pos),
    );
    for p in 0..walk.order.len() {
        let i = walk.order[p] as usize;
        // Values computed from constants alone (a `ones_like` seed, a broadcast zero): cheaper
        // to recompute than to store, so they are never stored for outside holders.
        let from_constants = walk.entries[i].value.is_none()
            && walk.operands(&walk.entries[i]).iter().all(|&j| walk.entries[j as usize].from_constants);
        walk.entries[i].from_constants = from_constants;
        let en = &walk.entries[i];
        let e = &en.expr;
        let pending = match &en.value {
            Some(v) => {
                e.dtype.hash(&mut h);
                e.shape.hash(&mut h);
                h.write_u8(0xff);
                input_values.push(v.clone());
                false
            }
            None => {
                h.write_u64(e.op_hash);
                let ops = walk.operands(en);
                h.write_usize(ops.len());
                ops.iter().for_each(|&j| h.write_u64(u64::from(walk.entries[j as usize].pos)));
                !matches!(e.op, Some(Op::Constant(_)))
            }
        };
        // References inside this walk: its entry, each operand slot of a walked pending expr.
        // Target slices are the caller's, so count them too.
        let internal = 1 + en.parents as usize + en.target_refs as usize;
        let held_outside = Arc::strong_count(e) > internal && !from_constants;
        let is_target = en.target_refs > 0;
        let constant_target = is_target && en.value.is_none() && !pending;
        if (pending && (is_target || held_outside)) || constant_target {
            outputs.push(e.clone());
            out_pos.push(p);
            h.write_usize(p);
        }
    }
    let key = h.finish();
    (walk.input_values, walk.outputs, walk.out_pos) = (input_values, outputs, out_pos);

    let cached = GRAPHS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_or_insert_with(FastMap::default)
        .get(&key)
        .cloned();
    let graph = match cached {
        Some(g) => g,
        None => {
            let g = Arc::new(build_graph(&walk, &walk.out_pos)?);
            let mut cache = GRAPHS.lock().unwrap_or_else(|p| p.into_inner());
            let cache = cache.get_or_insert_with(FastMap::default);
            if cache.len() >= GRAPH_CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(key, g.clone());
            g
        }
    };
    Ok(Lowered { key, graph, walk })
}

fn build_graph(walk: &Walk, out_pos: &[usize]) -> Result<Graph> {
    let mut g = Graph::new();
    let mut nodes: Vec<NodeId> = Vec::with_capacity(walk.order.len());
    let mut n_inputs = 0;
    for &i in &walk.order {
        let en = &walk.entries[i as usize];
        let e = &en.expr;
        let node = match (&en.value, &e.op) {
            (Some(_), _) => {
                n_inputs += 1;
                g.input(format!("in{}", n_inputs - 1), e.dtype, e.shape.clone())
            }
            (None, Some(Op::Constant(lit))) => g.constant(lit.clone(), e.shape.clone())?,
            (None, Some(op)) => {
                let operands: Vec<NodeId> =
                    walk.operands(en).iter().map(|&j| nodes[walk.entries[j as usize].pos as usize]).collect();
                g.add(op.clone(), &operands)?
            }
            (None, None) => {
                return Err(Error::Op("internal: a pending value without its op".into()));
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

pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, BuildHasherDefault<FxHasher>>;

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_ir::{BinaryOp, UnaryOp};

    fn leaf() -> Arc<Expr> {
        Expr::ready(Value::from_f64(DType::F32, [3], &[1.0, 2.0, 3.0]).unwrap())
    }

    fn chain(x: &Arc<Expr>) -> (Arc<Expr>, Arc<Expr>) {
        let two = Expr::constant(Literal::scalar(DType::F32, 2.0), Shape::scalar());
        let b = Expr::apply(Op::Binary(BinaryOp::Mul), smallvec::smallvec![x.clone(), two]).unwrap();
        let c = Expr::apply(Op::Unary(UnaryOp::Exp), smallvec::smallvec![b.clone()]).unwrap();
        (b, c)
    }

    #[test]
    fn only_targets_and_values_held_elsewhere_become_outputs() {
        // An intermediate referenced only inside the DAG is fused away, not stored.
        let x = leaf();
        let (b, c) = chain(&x);
        drop(b);
        let l = lower(std::slice::from_ref(&c)).unwrap();
        assert_eq!(l.outputs().len(), 1);
        assert!(Arc::ptr_eq(&l.outputs()[0], &c));
        assert_eq!(l.input_values().len(), 1);

        // Held by someone else (a tensor, a saved value): stored too, so it is not recomputed.
        let (b, c) = chain(&x);
        let l = lower(std::slice::from_ref(&c)).unwrap();
        assert_eq!(l.outputs().len(), 2);
        assert!(l.outputs().iter().any(|o| Arc::ptr_eq(o, &b)));
    }

    #[test]
    fn values_made_of_constants_alone_are_recomputed_not_stored() {
        let x = leaf();
        let one = Expr::constant(Literal::scalar(DType::F32, 1.0), Shape::scalar());
        let ones = Expr::apply(Op::Expand { shape: vec![3] }, smallvec::smallvec![one]).unwrap();
        let y = Expr::apply(Op::Binary(BinaryOp::Mul), smallvec::smallvec![x, ones.clone()]).unwrap();
        // `ones` is held outside (this test holds it), yet only the target is stored.
        let l = lower(std::slice::from_ref(&y)).unwrap();
        assert_eq!(l.outputs().len(), 1);
        assert!(Arc::ptr_eq(&l.outputs()[0], &y));
    }

    #[test]
    fn the_key_tells_apart_shared_and_distinct_inputs() {
        let (x, y) = (leaf(), leaf());
        let mul = |a: &Arc<Expr>, b: &Arc<Expr>| {
            Expr::apply(Op::Binary(BinaryOp::Mul), smallvec::smallvec![a.clone(), b.clone()])
        };
        let same = lower(&[mul(&x, &x).unwrap()]).unwrap();
        let distinct = lower(&[mul(&x, &y).unwrap()]).unwrap();
        assert_ne!(same.key, distinct.key);
        assert_eq!((same.input_values().len(), distinct.input_values().len()), (1, 2));
        // The same structure over other values has the same key.
        let again = lower(&[mul(&y, &y).unwrap()]).unwrap();
        assert_eq!(same.key, again.key);
    }
}
