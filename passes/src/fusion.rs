//! `fusion`: partitions a graph into fused kernels — a [`Schedule`].
//!
//! Which values get a buffer ("realized") decides everything else:
//! - inputs, non-uniform constants, graph outputs, `MatMul`, `Reduce` and `Concat` results are
//!   always realized (matmul and reduction results are expensive: they are kept, never
//!   recomputed);
//! - every other value is inlined into each kernel that needs it — elementwise chains, scalar
//!   constants, and movement ops (`Expand`, `Transpose`, `Slice`, `Reshape`), which become affine
//!   index maps on the loads. Cheap elementwise work is thus recomputed where it is used instead
//!   of being saved (for a training step: the backward recomputes `exp(x)` rather than reading a
//!   saved copy);
//! - a value is realized after all when inlining it is impossible or wasteful: when a kernel
//!   would evaluate it more often than it has elements (a broadcast), when a reshape of it cannot
//!   be expressed as an index map, or when a matmul operand is not a strided view of a buffer;
//! - a large value whose inlined computation has transcendental ops is realized when several
//!   kernels (as merged) would compute it at every point: layer norm + GELU's backward needed
//!   `erf` and `exp` in four kernels (see `Fuser::worth_sharing`).
//!
//! One kernel is built per realized value (reductions over their input's domain, concat
//! operands into slices of the result), then kernels over the same domain that do not depend on
//! each other are merged into one multi-output kernel, sharing their common work.

use crate::error::{Error, Result};
use crate::kernel::{
    Access, Buffer, BufferId, Instr, KOp, Kernel, MatMulStep, MatOperand, Role, Schedule, Step, Store,
    ValueId,
};
use kiln_ir::{BinaryOp, Graph, NodeId, Op, ReduceOp, Shape};
use std::collections::HashMap;

/// Why a kernel could not be built as asked: this node must get a buffer.
enum Build {
    Realize(NodeId),
    Fail(Error),
}

impl From<Error> for Build {
    fn from(e: Error) -> Build {
        Build::Fail(e)
    }
}

/// Kernel domain index → a node's multi-index, one affine row per node axis. With `flat`, rows
/// index that shape instead and the node is read at the row-major flat index (a reshape view).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Map {
    rows: Vec<(i64, Vec<i64>)>,
    flat: Option<Vec<usize>>,
}

impl Map {
    fn identity(shape: &[usize]) -> Map {
        let r = shape.len();
        Map { rows: (0..r).map(|k| (0, (0..r).map(|d| (d == k) as i64).collect())).collect(), flat: None }
    }

    /// Access into a row-major buffer of `shape` (the node's, or the flat view's).
    fn access(&self, node_shape: &[usize], domain_rank: usize) -> Access {
        let shape = self.flat.as_deref().unwrap_or(node_shape);
        let st = Shape::from(shape.to_vec()).strides();
        let mut a = Access { offset: 0, strides: vec![0; domain_rank] };
        for ((off, coef), &s) in self.rows.iter().zip(&st) {
            a.offset += off * s as i64;
            for (d, c) in coef.iter().enumerate() {
                a.strides[d] += c * s as i64;
            }
        }
        a
    }
}

/// Maps a node's index to its operand's index under numpy broadcasting (`from` → `to` shape).
fn broadcast_rows(map: &Map, from: &[usize], to: &[usize], rank: usize) -> Map {
    let lead = to.len() - from.len();
    let rows = from
        .iter()
        .enumerate()
        .map(
            |(k, &d)| {
                if d == 1 && to[k + lead] != 1 {
                    (0, vec![0; rank])
                } else {
                    map.rows[k + lead].clone()
                }
            },
        )
        .collect();
    Map { rows, flat: None }
}

/// A schedule as built for the current choice of realized nodes.
struct Built {
    schedule: Schedule,
    /// The node whose value each buffer holds.
    sources: Vec<NodeId>,
    /// For each step, the nodes it computes inline at every point of its domain.
    computed_in: Vec<Vec<NodeId>>,
}

struct Fuser<'g> {
    g: &'g Graph,
    realized: Vec<bool>,
}

struct KernelBuilder {
    domain: Vec<usize>,
    instrs: Vec<Instr>,
    memo: HashMap<(NodeId, Map), ValueId>,
    /// Elementwise nodes computed here at every point of the domain (not loaded).
    inlined: Vec<NodeId>,
}

impl KernelBuilder {
    fn new(domain: Vec<usize>) -> KernelBuilder {
        KernelBuilder { domain, instrs: Vec::new(), memo: HashMap::new(), inlined: Vec::new() }
    }

    fn push(&mut self, op: KOp, dtype: kiln_ir::DType) -> ValueId {
        self.instrs.push(Instr { op, dtype });
        self.instrs.len() - 1
    }

    fn numel(&self) -> usize {
        self.domain.iter().product()
    }
}

impl<'g> Fuser<'g> {
    /// Follows one movement op: the operand's map for a node read through `map`.
    fn through(&self, id: NodeId, map: &Map, rank: usize) -> std::result::Result<Map, Build> {
        let n = self.g.node(id);
        let x = self.g.operands(id)[0];
        let xs = &self.g.node(x).shape.0;
        match &n.op {
            Op::Reshape { .. } => Ok(match &map.flat {
                Some(_) => map.clone(),
                None => Map { rows: map.rows.clone(), flat: Some(n.shape.0.to_vec()) },
            }),
            _ if map.flat.is_some() => Err(Build::Realize(id)),
            Op::Expand { .. } => Ok(broadcast_rows(map, xs, &n.shape.0, rank)),
            Op::Transpose { perm } => {
                let mut rows = vec![(0, vec![0; rank]); perm.len()];
                for (i, &p) in perm.iter().enumerate() {
                    rows[p] = map.rows[i].clone();
                }
                Ok(Map { rows, flat: None })
            }
            Op::Slice { .. } => {
                let ranges =
                    n.op.slice_ranges(&Shape::from(xs.clone()))
                        .map_err(|m| Build::Fail(Error::Schedule(m)))?;
                let rows = ranges
                    .iter()
                    .zip(&map.rows)
                    .map(|(r, (off, coef))| {
                        (r.start as i64 + r.step * off, coef.iter().map(|c| c * r.step).collect())
                    })
                    .collect();
                Ok(Map { rows, flat: None })
            }
            _ => Err(Build::Fail(Error::Schedule(format!("{} is not a movement op", n.op.name())))),
        }
    }

    /// The value of node `id` at the kernel's domain points, read through `map`.
    fn emit(
        &self,
        kb: &mut KernelBuilder,
        id: NodeId,
        map: &Map,
        root: bool,
    ) -> std::result::Result<ValueId, Build> {
        if let Some(&v) = kb.memo.get(&(id, map.clone())) {
            return Ok(v);
        }
        let n = self.g.node(id);
        let rank = kb.domain.len();
        let v = if self.realized[id.index()] && !root {
            let access = map.access(&n.shape.0, rank);
            kb.push(KOp::Load { buffer: usize::MAX - id.index(), access }, n.dtype)
        } else {
            match &n.op {
                Op::Constant(lit) => match lit.uniform_value() {
                    Some(c) => kb.push(KOp::Const(c), n.dtype),
                    None => return Err(Build::Realize(id)),
                },
                Op::Input { .. } | Op::MatMul | Op::Reduce { .. } | Op::Concat { .. } => {
                    return Err(Build::Realize(id))
                }
                Op::Reshape { .. } | Op::Expand { .. } | Op::Transpose { .. } | Op::Slice { .. } => {
                    let m = self.through(id, map, rank)?;
                    let x = self.g.operands(id)[0];
                    self.emit(kb, x, &m, false)?
                }
                op => {
                    // Elementwise. Evaluating it more often than it has elements is wasteful.
                    if !root && n.shape.numel() < kb.numel() {
                        return Err(Build::Realize(id));
                    }
                    if !root {
                        kb.inlined.push(id);
                    }
                    let xs = self.g.operands(id);
                    let mut args = Vec::with_capacity(xs.len());
                    for &x in &xs {
                        let xshape = &self.g.node(x).shape.0;
                        let m = match &map.flat {
                            Some(_) if xshape != &n.shape.0 => return Err(Build::Realize(id)),
                            Some(_) => map.clone(),
                            None => broadcast_rows(map, xshape, &n.shape.0, rank),
                        };
                        args.push(self.emit(kb, x, &m, false)?);
                    }
                    let kop = match op {
                        Op::Unary(u) => KOp::Unary(*u, args[0]),
                        Op::Binary(b) => KOp::Binary(*b, args[0], args[1]),
                        Op::Compare(c) => KOp::Compare(*c, args[0], args[1]),
                        Op::Where => KOp::Where(args[0], args[1], args[2]),
                        Op::Cast { .. } => KOp::Cast(args[0]),
                        other => {
                            return Err(Build::Fail(Error::Schedule(format!("cannot fuse {}", other.name()))))
                        }
                    };
                    kb.push(kop, n.dtype)
                }
            }
        };
        kb.memo.insert((id, map.clone()), v);
        Ok(v)
    }

    /// The inlined value most worth a buffer of its own, if any: an elementwise value whose
    /// inlined computation includes transcendental ops and that several kernels (after merging)
    /// compute at every point. Realizing it computes those ops once, for a write and a read per
    /// element in each kernel that used it — far cheaper than an `erf` or `exp` per element
    /// (layer norm + GELU's backward recomputed `erf` and `exp` in four kernels).
    ///
    /// The choice maximises (kernels − 1) × transcendental ops saved; among equals, the smallest
    /// inlined computation wins (the value closest to the ops themselves, which the others are
    /// cheap arithmetic on). One value per call: the caller rebuilds, as realizing it changes what
    /// the other values cost and where kernels merge.
    fn worth_sharing(&self, computed_in: &[Vec<NodeId>]) -> Option<NodeId> {
        let g = self.g;
        let mut kernels: HashMap<NodeId, Vec<usize>> = HashMap::new();
        for (k, nodes) in computed_in.iter().enumerate() {
            for &n in nodes {
                let ks = kernels.entry(n).or_default();
                if ks.last() != Some(&k) {
                    ks.push(k);
                }
            }
        }
        use std::cmp::Reverse;
        // (saving, smaller computation first, earlier node first)
        type Key = (usize, Reverse<usize>, Reverse<usize>);
        let mut best: Option<(Key, NodeId)> = None;
        let (mut visit, mut stamp) = (vec![0u32; g.node_bound()], 0u32);
        let mut ids: Vec<NodeId> = kernels.keys().copied().collect();
        ids.sort_by_key(|n| n.index());
        for n in ids {
            let ks = &kernels[&n];
            if ks.len() < 2 || g.node(n).shape.numel() < MIN_SHARED_NUMEL {
                continue;
            }
            // The inlined computation of n: its operands up to realized values.
            // (`visit[m] == stamp`: m seen in this walk.)
            stamp += 1;
            visit[n.index()] = stamp;
            let (mut stack, mut size, mut heavy) = (vec![n], 1usize, 0usize);
            while let Some(m) = stack.pop() {
                heavy += transcendental(g, m) as usize;
                for x in g.operands(m) {
                    if !self.realized[x.index()] && visit[x.index()] != stamp {
                        visit[x.index()] = stamp;
                        size += 1;
                        stack.push(x);
                    }
                }
            }
            if heavy == 0 {
                continue;
            }
            let key = ((ks.len() - 1) * heavy, Reverse(size), Reverse(n.index()));
            if best.as_ref().is_none_or(|(b, _)| key > *b) {
                best = Some((key, n));
            }
        }
        best.map(|(_, n)| n)
    }

    /// A matmul operand as a strided view of a buffer: (node owning the buffer, access over
    /// the operand's own shape).
    fn view(&self, id: NodeId) -> std::result::Result<(NodeId, Access), Build> {
        let shape = self.g.node(id).shape.0.clone();
        let rank = shape.len();
        let (mut cur, mut map) = (id, Map::identity(&shape));
        loop {
            let n = self.g.node(cur);
            if self.realized[cur.index()] {
                return Ok((cur, map.access(&n.shape.0, rank)));
            }
            match n.op {
                Op::Reshape { .. } | Op::Expand { .. } | Op::Transpose { .. } | Op::Slice { .. } => {
                    map = self.through(cur, &map, rank)?;
                    cur = self.g.operands(cur)[0];
                }
                _ => return Err(Build::Realize(cur)),
            }
        }
    }

    fn build(&self) -> std::result::Result<Built, Build> {
        let g = self.g;
        let live = g.live_mask();
        let order = g.topo_order().map_err(|e| Build::Fail(e.into()))?;
        let mut s = Schedule::default();
        let mut buf_of: HashMap<NodeId, BufferId> = HashMap::new();
        let mut sources: Vec<NodeId> = Vec::new();
        let mut buffer = |s: &mut Schedule, id: NodeId, role: Role| -> BufferId {
            let n = g.node(id);
            s.buffers.push(Buffer { dtype: n.dtype, numel: n.shape.numel(), role, arena_offset: None });
            sources.push(id);
            buf_of.insert(id, s.buffers.len() - 1);
            s.buffers.len() - 1
        };
        for (k, &i) in g.inputs().iter().enumerate() {
            let b = buffer(&mut s, i, Role::Input(k));
            s.inputs.push(b);
        }
        let mut roots = Vec::new();
        for &id in &order {
            if !live[id.index()] || !self.realized[id.index()] || matches!(g.node(id).op, Op::Input { .. }) {
                continue;
            }
            match &g.node(id).op {
                Op::Constant(lit) if lit.uniform_value().is_none() => {
                    buffer(&mut s, id, Role::Constant(lit.clone()));
                }
                _ => {
                    buffer(&mut s, id, Role::Computed);
                    roots.push(id);
                }
            }
        }
        let mut steps: Vec<(Step, Vec<NodeId>)> = Vec::new();
        for (ki, &r) in roots.iter().enumerate() {
            let n = g.node(r);
            let out = buf_of[&r];
            let name = format!("k{ki}_{}", n.op.name().to_lowercase());
            match &n.op {
                Op::MatMul => {
                    let xs = g.operands(r);
                    let (a, b) = (self.view(xs[0])?, self.view(xs[1])?);
                    let mm = self.matmul(r, name, (buf_of[&a.0], a.1), (buf_of[&b.0], b.1), out);
                    steps.push((Step::MatMul(mm), vec![]));
                }
                Op::Concat { axis } => {
                    let ax = n.shape.axis(*axis).expect("verified");
                    let st = Shape::from(n.shape.0.clone()).strides();
                    let mut off = 0usize;
                    for (j, x) in g.operands(r).into_iter().enumerate() {
                        let xshape = g.node(x).shape.0.to_vec();
                        let mut kb = KernelBuilder::new(xshape.clone());
                        let v = self.emit(&mut kb, x, &Map::identity(&xshape), false)?;
                        let access = Access {
                            offset: (off * st[ax]) as i64,
                            strides: st.iter().map(|&v| v as i64).collect(),
                        };
                        off += xshape[ax];
                        let store = Store { buffer: out, value: v, access };
                        steps.push(finish(kb, format!("{name}{j}"), vec![], vec![store]));
                    }
                }
                Op::Reduce { op, axes, .. } => {
                    let x = g.operands(r)[0];
                    let xshape = g.node(x).shape.0.to_vec();
                    let axes = kiln_ir::op::reduce_axes(axes, xshape.len())
                        .map_err(|m| Build::Fail(Error::Schedule(m)))?;
                    let count: usize = axes.iter().map(|&a| xshape[a]).product();
                    let mut kb = KernelBuilder::new(xshape.clone());
                    let mut v = if count == 0 {
                        let fill = match op {
                            ReduceOp::Sum => 0.0,
                            ReduceOp::Mean => f64::NAN,
                            ReduceOp::Max => {
                                return Err(Build::Fail(Error::Schedule(format!(
                                    "{}: cannot reduce an empty axis with Max",
                                    n.op.name()
                                ))))
                            }
                        };
                        // Nothing to iterate over: the result is a constant over the outer points.
                        kb = KernelBuilder::new(
                            kiln_ir::op::reduced_shape(&Shape::from(xshape.clone()), &axes, true).0.to_vec(),
                        );
                        kb.push(KOp::Const(fill), n.dtype)
                    } else {
                        let x_v = self.emit(&mut kb, x, &Map::identity(&xshape), false)?;
                        let rop = if *op == ReduceOp::Max { ReduceOp::Max } else { ReduceOp::Sum };
                        kb.push(KOp::Reduce(rop, x_v), n.dtype)
                    };
                    if *op == ReduceOp::Mean && count > 0 {
                        // sum / n, exactly as the interpreter computes a mean (not sum · 1/n).
                        let c = kb.push(KOp::Const(count as f64), n.dtype);
                        v = kb.push(KOp::Binary(kiln_ir::BinaryOp::Div, v, c), n.dtype);
                    }
                    let red_axes = if count == 0 { vec![] } else { axes.clone() };
                    let kept = kiln_ir::op::reduced_shape(&Shape::from(xshape.clone()), &axes, true);
                    let kst = kept.strides();
                    let access = Access {
                        offset: 0,
                        strides: (0..kb.domain.len())
                            .map(|d| if axes.contains(&d) { 0 } else { kst[d] as i64 })
                            .collect(),
                    };
                    steps.push(finish(kb, name, red_axes, vec![Store { buffer: out, value: v, access }]));
                }
                _ => {
                    let shape = n.shape.0.to_vec();
                    let mut kb = KernelBuilder::new(shape.clone());
                    let v = self.emit(&mut kb, r, &Map::identity(&shape), true)?;
                    let store = Store { buffer: out, value: v, access: Access::contiguous(&shape) };
                    steps.push(finish(kb, name, vec![], vec![store]));
                }
            }
        }
        // Loads were emitted with placeholder ids (usize::MAX - node index): resolve them.
        for (step, _) in &mut steps {
            match step {
                Step::Kernel(k) => {
                    for ins in &mut k.instrs {
                        if let KOp::Load { buffer, .. } = &mut ins.op {
                            *buffer = buf_of[&NodeId::new(usize::MAX - *buffer)];
                        }
                    }
                }
                Step::MatMul(_) => {}
            }
        }
        let (steps, inlined): (Vec<Step>, Vec<Vec<NodeId>>) = steps.into_iter().unzip();
        let (merged, into) = merge(steps);
        s.steps = merged;
        let mut computed_in: Vec<Vec<NodeId>> = vec![Vec::new(); s.steps.len()];
        for (nodes, &j) in inlined.into_iter().zip(&into) {
            computed_in[j].extend(nodes);
        }
        for &o in g.outputs() {
            s.outputs.push((buf_of[&o], g.node(o).shape.0.to_vec()));
        }
        s.verify().map_err(Build::Fail)?;
        Ok(Built { schedule: s, sources, computed_in })
    }

    fn matmul(
        &self,
        r: NodeId,
        name: String,
        a: (BufferId, Access),
        b: (BufferId, Access),
        out: BufferId,
    ) -> MatMulStep {
        let g = self.g;
        let xs = g.operands(r);
        let (sa, sb) = (g.node(xs[0]).shape.0.clone(), g.node(xs[1]).shape.0.clone());
        let (m, k) = if sa.len() == 1 { (1, sa[0]) } else { (sa[sa.len() - 2], sa[sa.len() - 1]) };
        let n = if sb.len() == 1 { 1 } else { sb[sb.len() - 1] };
        let batch_a = if sa.len() > 2 { sa[..sa.len() - 2].to_vec() } else { vec![] };
        let batch_b = if sb.len() > 2 { sb[..sb.len() - 2].to_vec() } else { vec![] };
        let batch = kiln_ir::broadcast_shapes(&Shape::from(batch_a.clone()), &Shape::from(batch_b.clone()))
            .expect("verified")
            .0
            .to_vec();
        // Operand access over [batch.., rows, cols]: missing and size-1 batch dims broadcast.
        let operand =
            |(buf, acc): (BufferId, Access), shape: &[usize], own_batch: &[usize], vector_is_row: bool| {
                let mut strides = vec![0i64; batch.len()];
                let lead = batch.len() - own_batch.len();
                for (i, &d) in own_batch.iter().enumerate() {
                    strides[lead + i] = if d == 1 { 0 } else { acc.strides[i] };
                }
                let r = shape.len();
                if r == 1 {
                    if vector_is_row {
                        strides.extend([0, acc.strides[0]]);
                    } else {
                        strides.extend([acc.strides[0], 0]);
                    }
                } else {
                    strides.extend([acc.strides[r - 2], acc.strides[r - 1]]);
                }
                MatOperand { buffer: buf, access: Access { offset: acc.offset, strides } }
            };
        MatMulStep {
            name,
            dtype: g.node(r).dtype,
            batch: batch.clone(),
            m,
            k,
            n,
            a: operand(a, &sa, &batch_a, true),
            b: operand(b, &sb, &batch_b, false),
            out,
        }
    }
}

/// The kernel, and the nodes it computes inline at every point.
fn finish(
    kb: KernelBuilder,
    name: String,
    reduce_axes: Vec<usize>,
    stores: Vec<Store>,
) -> (Step, Vec<NodeId>) {
    (Step::Kernel(Kernel { name, domain: kb.domain, reduce_axes, instrs: kb.instrs, stores }), kb.inlined)
}

/// Merges each kernel into an earlier one over the same domain when it does not depend on
/// anything computed from that one on (so it can run at the earlier kernel's place).
/// Also returns, for each step given, the index of the step it ended up in.
fn merge(steps: Vec<Step>) -> (Vec<Step>, Vec<usize>) {
    let compatible = |o: &Kernel, k: &Kernel| {
        o.domain == k.domain
            && (o.reduce_axes == k.reduce_axes || o.reduce_axes.is_empty() || k.reduce_axes.is_empty())
            && o.instrs.len() + k.instrs.len() <= MAX_KERNEL_INSTRS
    };
    let mut out: Vec<Step> = Vec::new();
    let mut into = Vec::with_capacity(steps.len());
    for step in steps {
        let target = match &step {
            Step::Kernel(k) => {
                let r = step.reads();
                // The last step this one depends on, directly.
                let dep = out.iter().rposition(|p| p.writes().iter().any(|w| r.contains(w)));
                // It can join the kernel it depends on when every value it reads from it is
                // available there, at the same point (then the load becomes that value). A row
                // reduction joining an elementwise kernel makes it a reduction that also stores
                // values at every point (softmax's `exp(x − max)`, realized for the sum and the
                // division, is stored by the kernel that sums it); column reductions are left
                // alone (they would cut the elementwise kernel's parallelism on a GPU).
                let rows = |k: &Kernel| k.reduce_axes.contains(&(k.domain.len().wrapping_sub(1)));
                let join_dep = dep.filter(|&d| match &out[d] {
                    Step::Kernel(o) => {
                        (compatible(o, k)
                            && substitutable(o, k)
                            && (k.reduce_axes.is_empty() || (o.reduce_axes.is_empty() && rows(k))))
                            || (o.instrs.len() + k.instrs.len() <= MAX_KERNEL_INSTRS
                                && as_epilogue(o, k).is_some())
                    }
                    Step::MatMul(_) => false,
                });
                let start = dep.map_or(0, |d| d + 1);
                join_dep.or_else(|| {
                    (start..out.len()).find(|&j| matches!(&out[j], Step::Kernel(o) if compatible(o, k)))
                })
            }
            Step::MatMul(_) => None,
        };
        match (target, step) {
            (Some(j), Step::Kernel(k)) => {
                let Step::Kernel(o) = &mut out[j] else { unreachable!("target is a kernel") };
                let k = as_epilogue(o, &k).unwrap_or(k);
                absorb(o, k);
                into.push(j);
            }
            (_, step) => {
                out.push(step);
                into.push(out.len() - 1);
            }
        }
    }
    (out, into)
}

/// `k` rewritten to run after `o`'s reduction, once per outer point, if it can: `k` is
/// elementwise over exactly `o`'s outer shape (its domain with the reduced axes at 1), reads
/// `o`'s reduced results where `o` stores them, and everything it stores depends on them. This
/// turns the small per-row kernels of a normalisation (`1/sqrt(var + eps)`) into epilogues.
fn as_epilogue(o: &Kernel, k: &Kernel) -> Option<Kernel> {
    if o.reduce_axes.is_empty() || !k.reduce_axes.is_empty() {
        return None;
    }
    let outer: Vec<usize> =
        o.domain.iter().enumerate().map(|(i, &d)| if o.reduce_axes.contains(&i) { 1 } else { d }).collect();
    if k.domain != outer {
        return None;
    }
    let flat = |a: &Access| Access {
        offset: a.offset,
        strides: a
            .strides
            .iter()
            .enumerate()
            .map(|(i, &s)| if o.reduce_axes.contains(&i) { 0 } else { s })
            .collect(),
    };
    let post = o.post_reduce_mask();
    let inner = o.inner_mask();
    let mut from_o = vec![false; k.instrs.len()];
    let mut instrs = Vec::with_capacity(k.instrs.len());
    for (i, ins) in k.instrs.iter().enumerate() {
        let op = match &ins.op {
            KOp::Load { buffer, access } => {
                let access = flat(access);
                let stores: Vec<_> = o.stores.iter().filter(|s| s.buffer == *buffer).collect();
                if !stores.is_empty() {
                    if !stores.iter().all(|s| s.access == access && post[s.value] && !inner[s.value]) {
                        return None;
                    }
                    from_o[i] = true;
                }
                KOp::Load { buffer: *buffer, access }
            }
            other => {
                from_o[i] = other.operands().iter().any(|&a| from_o[a]);
                other.clone()
            }
        };
        instrs.push(Instr { op, dtype: ins.dtype });
    }
    if !k.stores.iter().all(|s| from_o[s.value]) {
        return None;
    }
    let stores = k.stores.iter().map(|s| Store { access: flat(&s.access), ..s.clone() }).collect();
    Some(Kernel { name: k.name.clone(), domain: o.domain.clone(), reduce_axes: vec![], instrs, stores })
}

/// Whether every load `k` makes of a buffer `o` stores reads exactly the stored points of a
/// value computed before any reduction in `o` (so it can be used directly).
fn substitutable(o: &Kernel, k: &Kernel) -> bool {
    let post = o.post_reduce_mask();
    k.instrs.iter().all(|i| match &i.op {
        KOp::Load { buffer, access } => {
            o.stores.iter().filter(|s| s.buffer == *buffer).all(|s| s.access == *access && !post[s.value])
        }
        _ => true,
    })
}

/// Appends `k`'s instructions and stores to `into`, reusing identical instructions.
fn absorb(into: &mut Kernel, k: Kernel) {
    let key = |i: &Instr| format!("{:?}", i);
    let mut seen: HashMap<String, ValueId> =
        into.instrs.iter().enumerate().map(|(i, ins)| (key(ins), i)).collect();
    let stored: HashMap<(BufferId, Access), ValueId> =
        into.stores.iter().map(|s| ((s.buffer, s.access.clone()), s.value)).collect();
    let mut remap = Vec::with_capacity(k.instrs.len());
    for ins in k.instrs {
        if let KOp::Load { buffer, access } = &ins.op {
            if let Some(&v) = stored.get(&(*buffer, access.clone())) {
                remap.push(v);
                continue;
            }
        }
        let r = |v: ValueId| remap[v];
        let op = match ins.op {
            KOp::Unary(u, a) => KOp::Unary(u, r(a)),
            KOp::Binary(b, x, y) => KOp::Binary(b, r(x), r(y)),
            KOp::Compare(c, x, y) => KOp::Compare(c, r(x), r(y)),
            KOp::Where(c, x, y) => KOp::Where(r(c), r(x), r(y)),
            KOp::Cast(a) => KOp::Cast(r(a)),
            KOp::Reduce(o, a) => KOp::Reduce(o, r(a)),
            other => other,
        };
        let ins = Instr { op, dtype: ins.dtype };
        let id = *seen.entry(key(&ins)).or_insert_with(|| {
            into.instrs.push(ins);
            into.instrs.len() - 1
        });
        remap.push(id);
    }
    if into.reduce_axes.is_empty() {
        into.reduce_axes = k.reduce_axes;
    }
    into.stores.extend(k.stores.into_iter().map(|s| Store { value: remap[s.value], ..s }));
    into.name = format!("{}+{}", into.name, k.name);
}

/// The longest chain of inlined ops in one kernel.
const MAX_INLINE_DEPTH: usize = 256;

/// Smallest value (in elements) that [`Fuser::worth_sharing`] gives a buffer: below it,
/// recomputing is cheaper than another kernel.
const MIN_SHARED_NUMEL: usize = 1 << 12;

/// Whether `op` costs tens of instructions per element (a polynomial or a call), unlike
/// arithmetic: what makes recomputing a value in several kernels expensive.
fn transcendental(g: &Graph, id: NodeId) -> bool {
    match &g.node(id).op {
        Op::Unary(u) => u.is_transcendental(),
        // x^c with a constant exponent is a few multiplications.
        Op::Binary(BinaryOp::Pow) => !matches!(g.node(g.operands(id)[1]).op, Op::Constant(_)),
        _ => false,
    }
}

/// Kernels are not merged beyond this many instructions (compile time grows faster than
/// linearly with function size, and merging long chains back together would undo the cut).
const MAX_KERNEL_INSTRS: usize = 1024;

/// Partitions `g` into a schedule of fused kernels and matmuls (see the module docs).
pub fn schedule(g: &Graph) -> Result<Schedule> {
    schedule_with_sources(g).map(|(s, _)| s)
}

/// [`schedule`], also returning the node of `g` whose value each buffer holds (one per buffer, in
/// buffer order): what dumps and pictures use to show which nodes each kernel computes.
pub fn schedule_with_sources(g: &Graph) -> Result<(Schedule, Vec<NodeId>)> {
    let mut f = Fuser { g, realized: vec![false; g.node_bound()] };
    for id in g.node_ids() {
        f.realized[id.index()] = match &g.node(id).op {
            Op::Input { .. } | Op::MatMul | Op::Reduce { .. } | Op::Concat { .. } => true,
            Op::Constant(l) => l.uniform_value().is_none(),
            _ => false,
        };
    }
    for &o in g.outputs() {
        f.realized[o.index()] = true;
    }
    // Bound how deep a chain of inlined ops can get: long chains (a loop that keeps building on
    // one value) are cut into kernels of at most MAX_INLINE_DEPTH ops, which also bounds the
    // recursion of `emit` and the size of each generated function.
    let mut depth = vec![0usize; g.node_bound()];
    for id in g.topo_order()? {
        if f.realized[id.index()] {
            continue;
        }
        let d = 1 + g.operands(id).iter().map(|o| depth[o.index()]).max().unwrap_or(0);
        if d >= MAX_INLINE_DEPTH {
            f.realized[id.index()] = true;
        } else {
            depth[id.index()] = d;
        }
    }
    loop {
        match f.build() {
            Ok(b) => match f.worth_sharing(&b.computed_in) {
                Some(n) => f.realized[n.index()] = true,
                None => return Ok((b.schedule, b.sources)),
            },
            Err(Build::Realize(n)) if !f.realized[n.index()] => f.realized[n.index()] = true,
            Err(Build::Realize(n)) => {
                return Err(Error::Schedule(format!("node {} was asked to be realized twice", n.index())))
            }
            Err(Build::Fail(e)) => return Err(e),
        }
    }
}
