//! The canonical structural hash of a graph: the key of the compile cache.
//!
//! [`Graph::structural_hash`] covers every op with its attributes (constant values by bit
//! pattern, with all NaNs treated alike), every dtype and shape, the wiring including operand
//! order, which inputs are parameters, and the ordered inputs and outputs. It deliberately leaves
//! out:
//!
//! - **node ids and insertion order** — the same computation built in a different order hashes
//!   the same;
//! - **input names** — inputs are identified by their position in the input list, so two graphs
//!   that compute the same thing from differently named inputs share compiled code.
//!
//! How it works: every node gets a Merkle hash of its op, type and its operands' hashes in order
//! (an input hashes its position in the input list, param flag and type). The graph hash then
//! combines the input types in order, the output hashes in order, and the sorted multiset of
//! `(node hash, number of uses)` over all nodes, which also captures sharing (`a + a` vs two
//! equal subtrees) and dead nodes.
//!
//! The hash function is FNV-1a over a fixed little-endian encoding with a final avalanche step,
//! so values are stable across runs, platforms and Rust versions. It is a 64-bit hash: a cache
//! that must never confuse two graphs should confirm a hit by comparing the graphs' text.

use crate::dtype::{DType, Shape};
use crate::graph::{Graph, NodeId};
use crate::literal::Literal;
use crate::op::Op;

/// FNV-1a (64-bit) with a murmur3 finaliser: small, fixed and platform-independent.
#[derive(Clone, Copy, Debug)]
pub struct StableHasher(u64);

impl Default for StableHasher {
    fn default() -> Self {
        StableHasher::new()
    }
}

impl StableHasher {
    /// A hasher in its fixed initial state.
    pub fn new() -> StableHasher {
        StableHasher(0xcbf2_9ce4_8422_2325)
    }

    /// Feeds raw bytes.
    pub fn bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= b as u64;
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// Feeds a u64 as 8 little-endian bytes.
    pub fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }

    /// Feeds an i64 as 8 little-endian bytes.
    pub fn i64(&mut self, v: i64) {
        self.u64(v as u64);
    }

    /// Feeds a length or index (as a u64, the same on every platform).
    pub fn usize(&mut self, v: usize) {
        self.u64(v as u64);
    }

    /// Feeds a string, length-prefixed so that concatenations cannot collide.
    pub fn str(&mut self, s: &str) {
        self.usize(s.len());
        self.bytes(s.as_bytes());
    }

    /// The hash of everything fed so far.
    pub fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^= h >> 33;
        h
    }
}

fn dtype_tag(d: DType) -> u64 {
    match d {
        DType::F32 => 1,
        DType::F64 => 2,
        DType::I64 => 3,
        DType::Bool => 4,
    }
}

fn hash_type(h: &mut StableHasher, d: DType, s: &Shape) {
    h.u64(dtype_tag(d));
    h.usize(s.rank());
    for &x in s.dims() {
        h.usize(x);
    }
}

fn hash_ints(h: &mut StableHasher, xs: &[i64]) {
    h.usize(xs.len());
    for &x in xs {
        h.i64(x);
    }
}

fn hash_usizes(h: &mut StableHasher, xs: &[usize]) {
    h.usize(xs.len());
    for &x in xs {
        h.usize(x);
    }
}

fn hash_literal(h: &mut StableHasher, lit: &Literal) {
    h.u64(dtype_tag(lit.dtype()));
    h.usize(lit.len());
    match lit {
        Literal::F32(v) => {
            v.iter().for_each(|x| h.u64(if x.is_nan() { u32::MAX as u64 } else { x.to_bits() as u64 }))
        }
        Literal::F64(v) => v.iter().for_each(|x| h.u64(if x.is_nan() { u64::MAX } else { x.to_bits() })),
        Literal::I64(v) => v.iter().for_each(|&x| h.i64(x)),
        Literal::Bool(v) => v.iter().for_each(|&x| h.u64(x as u64)),
    }
}

/// Feeds an op and its attributes, except an input's name (see the [module docs](crate::hash)).
/// The op name identifies the variant; attributes follow in a fixed order.
pub fn hash_op(h: &mut StableHasher, op: &Op) {
    h.str(op.name());
    match op {
        Op::Input { name: _, param } => h.u64(*param as u64),
        Op::Constant(lit) => hash_literal(h, lit),
        Op::Cast { to } => h.u64(dtype_tag(*to)),
        Op::Reduce { op: _, axes, keepdims } => {
            hash_ints(h, axes);
            h.u64(*keepdims as u64);
        }
        Op::Reshape { shape } | Op::Expand { shape } => hash_usizes(h, shape),
        Op::Transpose { perm } => hash_usizes(h, perm),
        Op::Slice { starts, ends, axes, steps } => {
            for xs in [starts, ends, axes, steps] {
                hash_ints(h, xs);
            }
        }
        Op::Concat { axis } => h.i64(*axis),
        Op::Unary(_) | Op::Binary(_) | Op::Compare(_) | Op::Where | Op::MatMul => {}
    }
}

impl Graph {
    /// The canonical structural hash (see the [module docs](crate::hash) for what it covers).
    ///
    /// ```
    /// use kiln_ir::{DType, Graph};
    /// let build = |name: &str| {
    ///     let mut g = Graph::new();
    ///     let x = g.input(name, DType::F32, [3]);
    ///     let y = g.neg(x).unwrap();
    ///     g.set_outputs(vec![y]);
    ///     g
    /// };
    /// // Input names do not matter; the computation does.
    /// assert_eq!(build("x").structural_hash(), build("input0").structural_hash());
    /// ```
    pub fn structural_hash(&self) -> u64 {
        let mut h = StableHasher::new();
        h.str("kiln-ir graph v1");
        let order = match self.topo_order() {
            Ok(order) => order,
            Err(_) => {
                // A cyclic graph has no Merkle hash; hash its text instead so the value is still
                // deterministic (it depends on node ids, which a cycle makes unavoidable).
                h.str("cyclic");
                h.str(&self.to_text());
                return h.finish();
            }
        };
        let mut merkle = vec![0u64; self.node_bound()];
        let mut uses = vec![0usize; self.node_bound()];
        for &id in &order {
            let node = self.node(id);
            let mut nh = StableHasher::new();
            hash_op(&mut nh, &node.op);
            hash_type(&mut nh, node.dtype, &node.shape);
            if let Op::Input { .. } = node.op {
                let pos = self.inputs().iter().position(|&i| i == id).map_or(u64::MAX, |p| p as u64);
                nh.u64(pos);
            }
            let operands = self.operands(id);
            nh.usize(operands.len());
            for o in operands {
                nh.u64(merkle[o.index()]);
                uses[o.index()] += 1;
            }
            merkle[id.index()] = nh.finish();
        }
        let known = |id: NodeId| self.contains(id);
        h.usize(self.inputs().len());
        for &i in self.inputs() {
            h.u64(if known(i) { merkle[i.index()] } else { 0 });
        }
        h.usize(self.outputs().len());
        for &o in self.outputs() {
            if known(o) {
                uses[o.index()] += 1;
                h.u64(merkle[o.index()]);
            } else {
                h.u64(0);
            }
        }
        let mut multiset: Vec<(u64, usize)> =
            order.iter().map(|&id| (merkle[id.index()], uses[id.index()])).collect();
        multiset.sort_unstable();
        h.usize(multiset.len());
        for (m, u) in multiset {
            h.u64(m);
            h.usize(u);
        }
        h.finish()
    }
}
