//! Proptest strategies for random **valid** graphs and their inputs, shared by the test suites of
//! every kiln crate (feature `testing`).
//!
//! - [`arb_graph`]`(cfg)`: graphs that pass [`Graph::verify`], built from the primitive ops with
//!   numpy broadcasting, size-1 and odd extents, ranks 0 to 4, reductions, matmuls (1-D, 2-D,
//!   batched), movement ops (reshape, transpose, expand, slice with negative indices and steps,
//!   concat) and constants. What is generated is controlled by [`GraphConfig`].
//! - [`arb_inputs`] / [`arb_graph_with_inputs`]: input data for a graph, for differential tests of
//!   passes and backends against the reference interpreter.
//! - [`arb_text_noise`] / [`arb_mutated_text`]: junk and damaged IR text for fuzzing the parser.
//!
//! A graph is a deterministic function of a vector of random "dice" ([`build_graph`]), so
//! proptest shrinks failures towards small dice: fewer nodes, simpler ops, size-1 extents.
//!
//! ```
//! use kiln_ir::testing::{arb_graph, GraphConfig, OpFamilies};
//! use proptest::prelude::*;
//! use proptest::test_runner::TestRunner;
//!
//! // Smooth, elementwise-only graphs of up to 8 nodes, e.g. for gradient checks.
//! let cfg = GraphConfig { max_nodes: 8, families: OpFamilies::ELEMENTWISE, ..GraphConfig::smooth() };
//! let mut runner = TestRunner::deterministic();
//! runner.run(&arb_graph(cfg), |g| {
//!     prop_assert!(g.verify().is_ok());
//!     Ok(())
//! }).unwrap();
//! ```

use crate::dtype::{broadcast_shapes, DType, Shape};
use crate::error::{Error, Result};
use crate::graph::{Graph, NodeId};
use crate::literal::Literal;
use crate::op::{matmul_shape, BinaryOp, CompareOp, Op, ReduceOp, SliceRange, UnaryOp};
use proptest::prelude::*;

/// Which op families [`arb_graph`] may use. Combine the presets or set fields directly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpFamilies {
    /// `Neg Abs Exp Log Sqrt Reciprocal Tanh Sigmoid Relu Erf Sin Cos Sign`.
    pub unary: bool,
    /// `Add Sub Mul Div Pow Max Min`, with broadcasting.
    pub binary: bool,
    /// `Equal Greater Less` feeding `Where`, or cast to a 0/1 mask. Needs `non_smooth`.
    pub compare_where: bool,
    /// `Cast` to another dtype and back (or to the same dtype).
    pub cast: bool,
    /// `ReduceSum ReduceMean ReduceMax` over random axis sets, with and without `keepdims`.
    pub reduce: bool,
    /// `MatMul`: 1-D, 2-D and batched with broadcast batch dimensions.
    pub matmul: bool,
    /// `Reshape` to a random factorisation of the element count.
    pub reshape: bool,
    /// `Transpose` by a random permutation.
    pub transpose: bool,
    /// `Expand` of size-1 extents and new leading axes.
    pub expand: bool,
    /// `Slice` with negative and out-of-range indices, steps of ±1, ±2, 3.
    pub slice: bool,
    /// `Concat` of 2 or 3 operands along a random axis.
    pub concat: bool,
    /// Stand-alone constants (tensors and scalars) as operands. Helper scalars (the `1` in
    /// `x*x + 1` for domain safety) are used even when this is off.
    pub constants: bool,
}

impl OpFamilies {
    /// Every family.
    pub const ALL: OpFamilies = OpFamilies {
        unary: true,
        binary: true,
        compare_where: true,
        cast: true,
        reduce: true,
        matmul: true,
        reshape: true,
        transpose: true,
        expand: true,
        slice: true,
        concat: true,
        constants: true,
    };
    /// No family: graphs of inputs only (a starting point for `..OpFamilies::NONE` updates).
    pub const NONE: OpFamilies = OpFamilies {
        unary: false,
        binary: false,
        compare_where: false,
        cast: false,
        reduce: false,
        matmul: false,
        reshape: false,
        transpose: false,
        expand: false,
        slice: false,
        concat: false,
        constants: false,
    };
    /// Elementwise ops and constants: what a fusion pass turns into a single loop.
    pub const ELEMENTWISE: OpFamilies = OpFamilies {
        unary: true,
        binary: true,
        compare_where: true,
        cast: true,
        constants: true,
        ..OpFamilies::NONE
    };
    /// Movement ops (reshape, transpose, expand, slice, concat) over unary/binary arithmetic.
    pub const MOVEMENT: OpFamilies = OpFamilies {
        unary: true,
        binary: true,
        reshape: true,
        transpose: true,
        expand: true,
        slice: true,
        concat: true,
        ..OpFamilies::NONE
    };
    /// Elementwise ops, reductions and matmuls: the shapes a fusion pass must group.
    pub const FUSION: OpFamilies = OpFamilies { reduce: true, matmul: true, ..OpFamilies::ELEMENTWISE };
}

impl Default for OpFamilies {
    fn default() -> Self {
        OpFamilies::ALL
    }
}

/// What [`arb_graph`] generates. `GraphConfig::default()` uses every op family on f32 and f64
/// graphs of up to 12 nodes; [`GraphConfig::smooth`] is the preset for gradient checks.
#[derive(Clone, Debug, PartialEq)]
pub struct GraphConfig {
    /// Upper bound on the number of non-input nodes (helper nodes included). The number of
    /// generation steps is random in `1..=max_nodes`; a step adds 1 to 5 nodes.
    pub max_nodes: usize,
    /// Inputs per graph: random in `1..=max_inputs` (at least one).
    pub max_inputs: usize,
    /// Outputs per graph: random in `1..=max_outputs` (at least one).
    pub max_outputs: usize,
    /// The float dtypes to choose from; each graph computes in one of them (casts go to another
    /// dtype and back). Non-float entries are ignored; empty means f32.
    pub dtypes: Vec<DType>,
    /// Largest rank of any value (inputs and results).
    pub max_rank: usize,
    /// Candidate extents for input shapes, constants, expands and matmul partners. Include `1`
    /// for broadcasting, odd sizes to catch vector-width tails, `0` for empty tensors.
    pub dims: Vec<usize>,
    /// Results with more elements than this are not generated.
    pub max_numel: usize,
    /// The op families to use.
    pub families: OpFamilies,
    /// Allow ops that are not differentiable everywhere: `Abs Relu Sign Max Min ReduceMax`,
    /// comparisons with `Where`, and casts through `i64` (which truncate; casting a non-finite
    /// value to an integer is backend-defined). Off for finite-difference gradient checks.
    pub non_smooth: bool,
    /// Mark some inputs as trainable parameters (`Graph::param`).
    pub params: bool,
    /// Keep `Log Sqrt Reciprocal` and the divisor of `Div` and base of `Pow` positive by feeding
    /// them `x*x + 1`, so that results stay finite for finite inputs (gradients too).
    pub domain_safe: bool,
    /// Sometimes use awkward constant values: `-0.0`, `0.1`, `1e-7`, subnormals, huge values,
    /// `inf`, `-inf`, `NaN`. For printer/parser tests; off for numeric tests.
    pub special_constants: bool,
    /// Allow slices that select nothing (zero-extent results).
    pub allow_empty: bool,
}

impl Default for GraphConfig {
    fn default() -> Self {
        GraphConfig {
            max_nodes: 12,
            max_inputs: 3,
            max_outputs: 3,
            dtypes: vec![DType::F32, DType::F64],
            max_rank: 4,
            dims: vec![1, 2, 3, 5],
            max_numel: 1024,
            families: OpFamilies::ALL,
            non_smooth: true,
            params: true,
            domain_safe: true,
            special_constants: false,
            allow_empty: false,
        }
    }
}

impl GraphConfig {
    /// Smooth ops only (see [`GraphConfig::non_smooth`]), domain-safe, f64: for gradient checks
    /// by finite differences.
    pub fn smooth() -> GraphConfig {
        GraphConfig { non_smooth: false, dtypes: vec![DType::F64], ..GraphConfig::default() }
    }

    /// Everything, including special constant values and empty slices: for the printer, the
    /// parser, the JSON form and the hash, which must handle any valid graph.
    pub fn exhaustive() -> GraphConfig {
        GraphConfig { special_constants: true, allow_empty: true, ..GraphConfig::default() }
    }

    /// The same config with another `max_nodes`.
    pub fn with_max_nodes(mut self, n: usize) -> GraphConfig {
        self.max_nodes = n;
        self
    }

    /// The same config with other op families.
    pub fn with_families(mut self, families: OpFamilies) -> GraphConfig {
        self.families = families;
        self
    }

    /// The same config computing in these dtypes.
    pub fn with_dtypes(mut self, dtypes: &[DType]) -> GraphConfig {
        self.dtypes = dtypes.to_vec();
        self
    }

    /// How many dice [`arb_graph`] draws for this config.
    pub fn dice_len(&self) -> usize {
        24 * self.max_nodes.max(1) + 64
    }
}

/// Random valid graphs as configured by `cfg` (see the [module docs](crate::testing)).
pub fn arb_graph(cfg: GraphConfig) -> impl Strategy<Value = Graph> {
    let n = cfg.dice_len();
    proptest::collection::vec(any::<u32>(), n..=n).prop_map(move |dice| build_graph(&cfg, &dice))
}

/// Random valid graphs together with input data for them (see [`arb_inputs`]).
pub fn arb_graph_with_inputs(cfg: GraphConfig) -> impl Strategy<Value = (Graph, Vec<Literal>)> {
    arb_graph(cfg).prop_flat_map(|g| {
        let inputs = arb_inputs(&g);
        (Just(g), inputs)
    })
}

/// One literal of `n` elements of `dtype`: floats in `[-2, 2)`, integers in `-5..5`, any bools.
pub fn arb_literal(dtype: DType, n: usize) -> BoxedStrategy<Literal> {
    use proptest::collection::vec;
    match dtype {
        DType::F32 => vec(-2.0f32..2.0, n..=n).prop_map(Literal::F32).boxed(),
        DType::F64 => vec(-2.0f64..2.0, n..=n).prop_map(Literal::F64).boxed(),
        DType::I64 => vec(-5i64..5, n..=n).prop_map(Literal::I64).boxed(),
        DType::Bool => vec(any::<bool>(), n..=n).prop_map(Literal::Bool).boxed(),
    }
}

/// Data for every input of `g`, in input order, as literals of the inputs' dtypes and element
/// counts (row-major). See [`arb_literal`] for the value ranges.
pub fn arb_inputs(g: &Graph) -> BoxedStrategy<Vec<Literal>> {
    let parts: Vec<BoxedStrategy<Literal>> = g
        .inputs()
        .iter()
        .map(|&i| {
            let n = g.node(i);
            arb_literal(n.dtype, n.shape.numel())
        })
        .collect();
    parts.boxed()
}

/// The random graph for `dice` (missing dice count as zero). Deterministic: the same dice always
/// give the same graph, so a failing case can be rebuilt from its dice.
pub fn build_graph(cfg: &GraphConfig, dice: &[u32]) -> Graph {
    Gen::new(cfg, dice).run().0
}

/// [`build_graph`], but fails if the generator ever built an op that shape inference rejects
/// (which it then skips). A test of the generator itself.
#[doc(hidden)]
pub fn build_graph_checked(cfg: &GraphConfig, dice: &[u32]) -> Result<Graph> {
    match Gen::new(cfg, dice).run() {
        (g, None) => Ok(g),
        (_, Some(e)) => Err(e),
    }
}

// ===== the generator ============================================================================

struct Dice<'a> {
    d: &'a [u32],
    i: usize,
}

impl Dice<'_> {
    fn next(&mut self) -> u32 {
        let v = self.d.get(self.i).copied().unwrap_or(0);
        self.i += 1;
        v
    }

    /// `0..n` (0 when `n == 0`).
    fn below(&mut self, n: usize) -> usize {
        let v = self.next() as usize;
        if n == 0 {
            0
        } else {
            v % n
        }
    }

    /// True with probability `pct`%; a zero die says no, so shrinking removes options.
    fn chance(&mut self, pct: u32) -> bool {
        self.next() % 100 >= 100 - pct.min(100)
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> Option<T> {
        let i = self.below(xs.len());
        xs.get(i).copied()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    Unary,
    Binary,
    CompareWhere,
    Cast,
    Reduce,
    MatMul,
    Reshape,
    Transpose,
    Expand,
    Slice,
    Concat,
    Constant,
}

struct Gen<'c, 'd> {
    cfg: &'c GraphConfig,
    dice: Dice<'d>,
    g: Graph,
    dtype: DType,
    dims: Vec<usize>,
    /// Values of the graph dtype that later steps may use.
    pool: Vec<NodeId>,
    /// The first op that inference rejected (a generator bug).
    rejected: Option<Error>,
}

const SPECIAL_VALUES: [f64; 12] = [
    -0.0,
    0.1,
    1e-7,
    1.0 / 3.0,
    5e-324,
    1.0e-40,
    3.4028234663852886e38,
    1e300,
    f64::INFINITY,
    f64::NEG_INFINITY,
    f64::NAN,
    123456.789,
];

impl<'c, 'd> Gen<'c, 'd> {
    fn new(cfg: &'c GraphConfig, dice: &'d [u32]) -> Self {
        let floats: Vec<DType> = cfg.dtypes.iter().copied().filter(|d| d.is_float()).collect();
        let mut dice = Dice { d: dice, i: 0 };
        let dtype = dice.pick(&floats).unwrap_or(DType::F32);
        let dims = if cfg.dims.is_empty() { vec![1, 2, 3] } else { cfg.dims.clone() };
        Gen { cfg, dice, g: Graph::new(), dtype, dims, pool: Vec::new(), rejected: None }
    }

    fn run(mut self) -> (Graph, Option<Error>) {
        let n_inputs = 1 + self.dice.below(self.cfg.max_inputs.max(1));
        let first = self.random_shape();
        for k in 0..n_inputs {
            let shape = if k == 0 {
                first.clone()
            } else if self.dice.chance(50) {
                self.partner_shape(&first)
            } else {
                self.random_shape()
            };
            let id = if self.cfg.params && self.dice.chance(35) {
                self.g.param(format!("p{k}"), self.dtype, shape)
            } else {
                self.g.input(format!("x{k}"), self.dtype, shape)
            };
            self.pool.push(id);
        }
        let families = self.families();
        let steps = 1 + self.dice.below(self.cfg.max_nodes.max(1));
        for _ in 0..steps {
            let Some(family) = self.dice.pick(&families) else { break };
            // A step adds up to 5 nodes (helpers included); undo it if it overshoots the budget.
            let saved = self.g.clone();
            let result = self.step(family);
            if self.g.len() - self.g.inputs().len() > self.cfg.max_nodes {
                self.g = saved;
            } else if let Some(id) = result {
                self.pool.push(id);
            }
        }
        self.choose_outputs();
        (self.g, self.rejected)
    }

    /// Enabled families, repeated by weight.
    fn families(&self) -> Vec<Family> {
        let f = self.cfg.families;
        let table = [
            (f.unary, Family::Unary, 3),
            (f.binary, Family::Binary, 4),
            (f.compare_where && self.cfg.non_smooth, Family::CompareWhere, 1),
            (f.cast, Family::Cast, 1),
            (f.reduce, Family::Reduce, 2),
            (f.matmul, Family::MatMul, 2),
            (f.reshape, Family::Reshape, 1),
            (f.transpose, Family::Transpose, 1),
            (f.expand, Family::Expand, 1),
            (f.slice, Family::Slice, 2),
            (f.concat, Family::Concat, 1),
            (f.constants, Family::Constant, 1),
        ];
        table.into_iter().filter(|t| t.0).flat_map(|(_, fam, w)| std::iter::repeat_n(fam, w)).collect()
    }

    fn step(&mut self, family: Family) -> Option<NodeId> {
        match family {
            Family::Unary => self.unary(),
            Family::Binary => self.binary(),
            Family::CompareWhere => self.compare_where(),
            Family::Cast => self.cast(),
            Family::Reduce => {
                let x = self.value();
                self.reduce(x, None)
            }
            Family::MatMul => self.matmul(),
            Family::Reshape => self.reshape(),
            Family::Transpose => self.transpose(),
            Family::Expand => self.expand(),
            Family::Slice => self.slice(),
            Family::Concat => self.concat(),
            Family::Constant => {
                let like = self.value();
                let s = self.shape(like);
                let shape = if self.dice.chance(50) { self.partner_shape(&s) } else { self.random_shape() };
                self.constant(shape)
            }
        }
    }

    // ----- helpers ------------------------------------------------------------------------

    /// Adds `op` if inference accepts it and the result is small enough.
    fn add(&mut self, op: Op, operands: &[NodeId]) -> Option<NodeId> {
        let types: Vec<(DType, Shape)> = operands
            .iter()
            .map(|&o| {
                let n = self.g.node(o);
                (n.dtype, n.shape.clone())
            })
            .collect();
        let refs: Vec<(DType, &Shape)> = types.iter().map(|(d, s)| (*d, s)).collect();
        match op.infer(&refs) {
            Err(e) => {
                self.rejected.get_or_insert(e);
                None
            }
            Ok((_, s)) if s.numel() > self.cfg.max_numel || s.rank() > self.cfg.max_rank => None,
            Ok(_) => match self.g.add(op, operands) {
                Ok(id) => Some(id),
                Err(e) => {
                    self.rejected.get_or_insert(e);
                    None
                }
            },
        }
    }

    fn shape(&self, id: NodeId) -> Shape {
        self.g.node(id).shape.clone()
    }

    fn rank(&self, id: NodeId) -> usize {
        self.g.node(id).shape.rank()
    }

    fn dim(&mut self) -> usize {
        self.dice.pick(&self.dims).unwrap_or(1)
    }

    fn random_shape(&mut self) -> Shape {
        let r = self.dice.below(self.cfg.max_rank + 1);
        Shape((0..r).map(|_| self.dim()).collect())
    }

    /// A shape that broadcasts with `s`: leading axes dropped or added, extents set to 1 (or a
    /// size-1 extent of `s` set to something else).
    fn partner_shape(&mut self, s: &Shape) -> Shape {
        let mut dims = s.dims().to_vec();
        let dropped = if self.dice.chance(30) { self.dice.below(dims.len() + 1) } else { 0 };
        dims.drain(..dropped);
        for d in dims.iter_mut() {
            if *d != 1 && self.dice.chance(30) {
                *d = 1;
            } else if *d == 1 && self.dice.chance(30) {
                *d = self.dice.pick(&self.dims).unwrap_or(1);
            }
        }
        if dropped == 0 && dims.len() < self.cfg.max_rank && self.dice.chance(20) {
            let d = self.dim();
            dims.insert(0, d);
        }
        Shape::from(dims)
    }

    fn value_of(&mut self) -> f64 {
        if self.cfg.special_constants && self.dice.chance(20) {
            return self.dice.pick(&SPECIAL_VALUES).unwrap_or(0.0);
        }
        (self.dice.below(33) as f64 - 16.0) / 4.0
    }

    fn constant(&mut self, shape: Shape) -> Option<NodeId> {
        if shape.numel() > self.cfg.max_numel {
            return None;
        }
        let n = shape.numel();
        let vals: Vec<f64> = (0..n).map(|_| self.value_of()).collect();
        let lit = match self.dtype {
            DType::F32 => Literal::F32(vals.iter().map(|&v| v as f32).collect()),
            _ => Literal::F64(vals),
        };
        match self.g.constant(lit, shape) {
            Ok(id) => Some(id),
            Err(e) => {
                self.rejected.get_or_insert(e);
                None
            }
        }
    }

    fn scalar(&mut self, v: f64) -> NodeId {
        self.g.scalar(self.dtype, v)
    }

    /// A pool value, biased towards recent ones so that chains get deep.
    fn value(&mut self) -> NodeId {
        let n = self.pool.len();
        let i = if self.dice.chance(50) { n - 1 - self.dice.below(n.min(3)) } else { self.dice.below(n) };
        self.pool[i]
    }

    /// A pool value satisfying `ok`, if any.
    fn value_where(&mut self, ok: impl Fn(&Gen<'_, '_>, NodeId) -> bool) -> Option<NodeId> {
        let first = self.value();
        if ok(self, first) {
            return Some(first);
        }
        let candidates: Vec<NodeId> = self.pool.iter().copied().filter(|&v| ok(self, v)).collect();
        self.dice.pick(&candidates)
    }

    /// A value that broadcasts with `a`: `a` itself, another pool value, a constant, or a
    /// keepdims reduction of `a`.
    fn partner(&mut self, a: NodeId) -> NodeId {
        let s = self.shape(a);
        let roll = self.dice.below(100);
        let max_rank = self.cfg.max_rank;
        if (15..55).contains(&roll) {
            let fits = |g: &Gen<'_, '_>, v: NodeId| {
                broadcast_shapes(&s, &g.g.node(v).shape).is_some_and(|b| b.rank() <= max_rank)
            };
            let candidates: Vec<NodeId> = self.pool.iter().copied().filter(|&v| fits(self, v)).collect();
            if let Some(v) = self.dice.pick(&candidates) {
                return v;
            }
        } else if (55..75).contains(&roll) && self.cfg.families.constants {
            let shape = self.partner_shape(&s);
            if let Some(c) = self.constant(shape) {
                return c;
            }
        } else if roll >= 75 && self.cfg.families.reduce && s.rank() > 0 {
            if let Some(r) = self.reduce(a, Some(true)) {
                return r;
            }
        }
        a
    }

    /// `x*x + 1`: positive and smooth.
    fn positive(&mut self, x: NodeId) -> Option<NodeId> {
        let sq = self.add(Op::Binary(BinaryOp::Mul), &[x, x])?;
        let one = self.scalar(1.0);
        self.add(Op::Binary(BinaryOp::Add), &[sq, one])
    }

    // ----- steps --------------------------------------------------------------------------

    fn unary(&mut self) -> Option<NodeId> {
        let ops: Vec<UnaryOp> = UnaryOp::ALL
            .into_iter()
            .filter(|u| self.cfg.non_smooth || !matches!(u, UnaryOp::Abs | UnaryOp::Relu | UnaryOp::Sign))
            .collect();
        let u = self.dice.pick(&ops)?;
        let mut x = self.value();
        if self.cfg.domain_safe && matches!(u, UnaryOp::Log | UnaryOp::Sqrt | UnaryOp::Reciprocal) {
            x = self.positive(x)?;
        }
        self.add(Op::Unary(u), &[x])
    }

    fn binary(&mut self) -> Option<NodeId> {
        let ops: Vec<BinaryOp> = BinaryOp::ALL
            .into_iter()
            .filter(|b| self.cfg.non_smooth || !matches!(b, BinaryOp::Max | BinaryOp::Min))
            .collect();
        let op = self.dice.pick(&ops)?;
        let a = self.value();
        let b = self.partner(a);
        let (mut a, mut b) = if self.dice.chance(50) { (b, a) } else { (a, b) };
        if self.cfg.domain_safe {
            match op {
                BinaryOp::Div => b = self.positive(b)?,
                BinaryOp::Pow => a = self.positive(a)?,
                _ => {}
            }
        }
        self.add(Op::Binary(op), &[a, b])
    }

    fn compare_where(&mut self) -> Option<NodeId> {
        let op = self.dice.pick(&CompareOp::ALL)?;
        let a = self.value();
        let b = self.partner(a);
        let cond = self.add(Op::Compare(op), &[a, b])?;
        match self.dice.below(4) {
            0 => self.add(Op::Where, &[cond, a, b]),
            1 => self.add(Op::Where, &[cond, b, a]),
            2 => {
                let v = self.value_of();
                let c = self.scalar(v);
                self.add(Op::Where, &[cond, a, c])
            }
            _ => self.add(Op::Cast { to: self.dtype }, &[cond]),
        }
    }

    fn cast(&mut self) -> Option<NodeId> {
        let x = self.value();
        let via = if self.cfg.non_smooth && self.dice.chance(30) {
            DType::I64
        } else if self.dtype == DType::F32 {
            DType::F64
        } else if self.cfg.non_smooth && self.dice.chance(50) {
            DType::F32
        } else {
            DType::F64
        };
        let y = self.add(Op::Cast { to: via }, &[x])?;
        if via == self.dtype {
            Some(y)
        } else {
            self.add(Op::Cast { to: self.dtype }, &[y])
        }
    }

    /// A reduction of `x` over a random axis set; `keepdims` random unless given.
    fn reduce(&mut self, x: NodeId, keepdims: Option<bool>) -> Option<NodeId> {
        let ops: Vec<ReduceOp> =
            ReduceOp::ALL.into_iter().filter(|r| self.cfg.non_smooth || *r != ReduceOp::Max).collect();
        let op = self.dice.pick(&ops)?;
        let r = self.rank(x);
        let mut axes: Vec<i64> = Vec::new();
        if r > 0 && !self.dice.chance(15) {
            let mut chosen: Vec<usize> = (0..r).filter(|_| self.dice.chance(50)).collect();
            if chosen.is_empty() {
                chosen.push(self.dice.below(r));
            }
            self.shuffle(&mut chosen);
            axes = chosen
                .into_iter()
                .map(|a| if self.dice.chance(30) { a as i64 - r as i64 } else { a as i64 })
                .collect();
        }
        let keepdims = keepdims.unwrap_or_else(|| self.dice.chance(50));
        self.add(Op::Reduce { op, axes, keepdims }, &[x])
    }

    fn shuffle<T>(&mut self, xs: &mut [T]) {
        for i in (1..xs.len()).rev() {
            let j = self.dice.below(i + 1);
            xs.swap(i, j);
        }
    }

    fn matmul(&mut self) -> Option<NodeId> {
        let a = self.value_where(|g, v| g.rank(v) >= 1)?;
        let sa = self.shape(a);
        let r = sa.rank();
        let k = sa.dims()[r - 1];
        let max_rank = self.cfg.max_rank;
        match self.dice.below(4) {
            0 => {
                let fits = |g: &Gen<'_, '_>, v: NodeId| {
                    matmul_shape(&sa, &g.g.node(v).shape).is_ok_and(|s| s.rank() <= max_rank)
                };
                let candidates: Vec<NodeId> = self.pool.iter().copied().filter(|&v| fits(self, v)).collect();
                if let Some(b) = self.dice.pick(&candidates) {
                    return self.add(Op::MatMul, &[a, b]);
                }
            }
            1 if r >= 2 => {
                let mut perm: Vec<usize> = (0..r).collect();
                perm.swap(r - 2, r - 1);
                let at = self.add(Op::Transpose { perm }, &[a])?;
                return self.add(Op::MatMul, &[a, at]);
            }
            3 => {
                // A constant on the left: [n, m] @ a.
                let m = if r == 1 { k } else { sa.dims()[r - 2] };
                let n = self.dim();
                let c = self.constant(Shape::from(vec![n, m]))?;
                return self.add(Op::MatMul, &[c, a]);
            }
            _ => {}
        }
        // A constant on the right: [k], [k, n] or batched [b.., k, n].
        let n = self.dim();
        let shape = match self.dice.below(3) {
            0 => vec![k],
            1 => vec![k, n],
            _ => {
                let mut s: Vec<usize> = if r > 2 { sa.dims()[..r - 2].to_vec() } else { Vec::new() };
                for d in s.iter_mut() {
                    if self.dice.chance(40) {
                        *d = 1;
                    }
                }
                if s.len() + 2 < max_rank && self.dice.chance(30) {
                    let d = self.dim();
                    s.insert(0, d);
                }
                s.extend([k, n]);
                s
            }
        };
        let c = self.constant(Shape::from(shape))?;
        self.add(Op::MatMul, &[a, c])
    }

    fn reshape(&mut self) -> Option<NodeId> {
        let x = self.value();
        let numel = self.g.node(x).shape.numel();
        let mut r = self.dice.below(self.cfg.max_rank + 1);
        if numel != 1 && r == 0 {
            r = 1;
        }
        let mut dims = vec![1usize; r];
        if numel == 0 {
            for d in dims.iter_mut() {
                *d = self.dice.pick(&self.dims).unwrap_or(1);
            }
            let at = self.dice.below(r);
            dims[at] = 0;
        } else {
            let mut n = numel;
            let mut p = 2;
            while n > 1 {
                while n % p != 0 {
                    p += 1;
                }
                n /= p;
                let at = self.dice.below(r);
                dims[at] *= p;
            }
        }
        self.add(Op::Reshape { shape: dims }, &[x])
    }

    fn transpose(&mut self) -> Option<NodeId> {
        let x = self.value();
        let mut perm: Vec<usize> = (0..self.rank(x)).collect();
        self.shuffle(&mut perm);
        self.add(Op::Transpose { perm }, &[x])
    }

    fn expand(&mut self) -> Option<NodeId> {
        let x = self.value();
        let mut dims = self.shape(x).0;
        for d in dims.iter_mut() {
            if *d == 1 && self.dice.chance(50) {
                *d = self.dice.pick(&self.dims).unwrap_or(1);
            }
        }
        while dims.len() < self.cfg.max_rank && self.dice.chance(30) {
            let d = self.dim();
            dims.insert(0, d);
        }
        self.add(Op::Expand { shape: dims.to_vec() }, &[x])
    }

    fn slice(&mut self) -> Option<NodeId> {
        let x = self.value_where(|g, v| g.rank(v) >= 1)?;
        let s = self.shape(x);
        let r = s.rank();
        let mut axes: Vec<usize> = (0..r).collect();
        self.shuffle(&mut axes);
        axes.truncate(1 + self.dice.below(r));
        let (mut starts, mut ends, mut steps, mut axis_attr) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for a in axes {
            let d = s.dims()[a] as i64;
            let step = self.dice.pick(&[1i64, 1, 1, 2, -1, -1, -2, 3]).unwrap_or(1);
            let spots = [0, 1, 2, d - 1, d, -1, -2, -d, d + 2, -d - 2, i64::MAX, i64::MIN];
            let mut start = self.dice.pick(&spots).unwrap_or(0);
            let mut end = self.dice.pick(&spots).unwrap_or(0);
            let empty = SliceRange::resolve(start, end, step, d as usize).map_or(true, |rg| rg.len == 0);
            if empty && !self.cfg.allow_empty {
                (start, end) = if step > 0 { (0, i64::MAX) } else { (-1, i64::MIN) };
            }
            starts.push(start);
            ends.push(end);
            steps.push(step);
            axis_attr.push(if self.dice.chance(30) { a as i64 - r as i64 } else { a as i64 });
        }
        self.add(Op::Slice { starts, ends, axes: axis_attr, steps }, &[x])
    }

    fn concat(&mut self) -> Option<NodeId> {
        let x = self.value_where(|g, v| g.rank(v) >= 1)?;
        let s = self.shape(x);
        let r = s.rank();
        let ax = self.dice.below(r);
        let mut parts = vec![x];
        let more = 1 + self.dice.below(2);
        for _ in 0..more {
            let part = match self.dice.below(4) {
                1 => {
                    let fits = |g: &Gen<'_, '_>, v: NodeId| {
                        let t = &g.g.node(v).shape;
                        t.rank() == r && (0..r).all(|i| i == ax || t.dims()[i] == s.dims()[i])
                    };
                    let candidates: Vec<NodeId> =
                        self.pool.iter().copied().filter(|&v| fits(self, v)).collect();
                    self.dice.pick(&candidates)
                }
                2 if self.cfg.families.constants => {
                    let mut dims = s.0.clone();
                    dims[ax] = self.dim();
                    self.constant(Shape::from(dims))
                }
                3 if s.dims()[ax] >= 1 => {
                    let end = 1 + self.dice.below(s.dims()[ax]) as i64;
                    let op =
                        Op::Slice { starts: vec![0], ends: vec![end], axes: vec![ax as i64], steps: vec![1] };
                    self.add(op, &[x])
                }
                _ => None,
            };
            parts.push(part.unwrap_or(x));
        }
        let axis = if self.dice.chance(30) { ax as i64 - r as i64 } else { ax as i64 };
        self.add(Op::Concat { axis }, &parts)
    }

    fn choose_outputs(&mut self) {
        let n_inputs = self.g.inputs().len();
        let last = if self.pool.len() > n_inputs { self.pool[self.pool.len() - 1] } else { self.pool[0] };
        let mut outputs = vec![last];
        let want = 1 + self.dice.below(self.cfg.max_outputs.max(1));
        let mut tries = 0;
        while outputs.len() < want && tries < 8 {
            tries += 1;
            let v = self.dice.pick(&self.pool).unwrap_or(last);
            if !outputs.contains(&v) {
                outputs.push(v);
            }
        }
        self.shuffle(&mut outputs);
        self.g.set_outputs(outputs);
    }
}

// ===== parser fuzzing ===========================================================================

/// Pieces of IR text, valid and not, for [`arb_text_noise`] and [`arb_mutated_text`].
const NOISE: &[&str] = &[
    "%0",
    "%1",
    "%2",
    "%x",
    "%",
    "=",
    "(",
    ")",
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\n",
    " ",
    "#",
    "\"",
    "\"x\"",
    "\"\\u{41}\"",
    "\\",
    "Input",
    "Constant",
    "Mul",
    "Add",
    "ReduceSum",
    "Slice",
    "Concat",
    "Cast",
    "Where",
    "MatMul",
    "Transpose",
    "Reshape",
    "Expand",
    "Mull",
    "return",
    "name",
    "param",
    "value",
    "axes",
    "keepdims",
    "shape",
    "perm",
    "starts",
    "ends",
    "steps",
    "axis",
    "to",
    "true",
    "false",
    "f32",
    "f64",
    "i64",
    "bool",
    "f16",
    "0",
    "1",
    "3",
    "-1",
    "2.5",
    "1e-7",
    "inf",
    "-inf",
    "NaN",
    "99999999999999999999",
    "-9223372036854775808",
    "9007199254740993",
    "é",
    "\t",
    "\r\n",
];

/// Random strings assembled from pieces of IR text (ops, ids, punctuation, numbers, keywords) —
/// mostly invalid, sometimes nearly valid. For fuzzing the parser: it must return `Ok` or `Err`,
/// never panic.
pub fn arb_text_noise() -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(NOISE), 0..60).prop_map(|parts| parts.concat())
}

/// The text of a random graph (from `cfg`) with 1–4 random edits: characters deleted, replaced
/// or inserted, noise pieces inserted, lines deleted, duplicated, swapped, or the text truncated.
pub fn arb_mutated_text(cfg: GraphConfig) -> impl Strategy<Value = String> {
    let edits = proptest::collection::vec((0u8..8, any::<u32>(), any::<u32>()), 1..5);
    (arb_graph(cfg), edits).prop_map(|(g, edits)| mutate_text(&g.to_text(), &edits))
}

/// Applies edits `(kind, a, b)` to `text` (see [`arb_mutated_text`]); always valid UTF-8.
pub fn mutate_text(text: &str, edits: &[(u8, u32, u32)]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for &(kind, a, b) in edits {
        let pos = |n: usize| if n == 0 { 0 } else { a as usize % n };
        match kind {
            0 if !chars.is_empty() => {
                let i = pos(chars.len());
                chars.remove(i);
            }
            1 if !chars.is_empty() => {
                let i = pos(chars.len());
                let pool: Vec<char> = "%=(){}[],:#\"\\-.0123456789aezF_ \n".chars().collect();
                chars[i] = pool[b as usize % pool.len()];
            }
            2 => {
                let i = pos(chars.len() + 1);
                let piece = NOISE[b as usize % NOISE.len()];
                chars.splice(i..i, piece.chars());
            }
            3 => {
                let i = pos(chars.len() + 1);
                chars.truncate(i);
            }
            _ => {
                let text: String = chars.iter().collect();
                let mut lines: Vec<&str> = text.lines().collect();
                if lines.is_empty() {
                    continue;
                }
                let i = pos(lines.len());
                let j = b as usize % lines.len();
                match kind {
                    4 => {
                        lines.remove(i);
                    }
                    5 => lines.insert(j, lines[i]),
                    _ => lines.swap(i, j),
                }
                chars = lines.join("\n").chars().collect();
            }
        }
    }
    chars.into_iter().collect()
}

// ===== hand-built sample graphs =================================================================

/// The seed example `z = w * x + b` with `x: f32[2,3]` an input and `w: f32[3]`, `b: f32[]`
/// parameters; outputs `z`.
pub fn sample_linear() -> Graph {
    let mut g = Graph::new();
    let x = g.input("x", DType::F32, [2, 3]);
    let w = g.param("w", DType::F32, [3]);
    let b = g.param("b", DType::F32, []);
    let wx = g.mul(w, x).expect("w * x");
    let z = g.add_(wx, b).expect("w * x + b");
    g.set_outputs(vec![z]);
    g
}

/// `y = x^2 * exp(x)` with `x: f64[4]` and the exponent a constant; outputs `y`.
pub fn sample_square_exp() -> Graph {
    let mut g = Graph::new();
    let x = g.input("x", DType::F64, [4]);
    let two = g.scalar(DType::F64, 2.0);
    let sq = g.pow(x, two).expect("x^2");
    let ex = g.unary(UnaryOp::Exp, x).expect("exp(x)");
    let y = g.mul(sq, ex).expect("x^2 * exp(x)");
    g.set_outputs(vec![y]);
    g
}

/// A graph that uses every op kind (and every unary, binary, compare and reduce op) at least
/// once, constants of every dtype and special float values. Not every node is live.
pub fn sample_every_op() -> Graph {
    let mut g = Graph::new();
    let x = g.input("x", DType::F32, [2, 3]);
    let w = g.param("w", DType::F32, [3, 4]);
    let c = g.constant(Literal::F32(vec![0.5, -1.0, 2.0]), [3]).expect("f32 constant");
    let ci = g.constant(Literal::I64(vec![1, -2]), [2]).expect("i64 constant");
    let cb = g.constant(Literal::Bool(vec![true, false, true]), [3]).expect("bool constant");
    let special = [f64::INFINITY, f64::NEG_INFINITY, f64::NAN, -0.0, 1e-7, 0.1];
    let cs = g.constant(Literal::F64(special.to_vec()), [2, 3]).expect("f64 constant");
    let mut outs = Vec::new();
    for u in UnaryOp::ALL {
        outs.push(g.unary(u, x).expect("unary"));
    }
    for b in BinaryOp::ALL {
        outs.push(g.binary(b, x, c).expect("binary"));
    }
    let mut conds = Vec::new();
    for op in CompareOp::ALL {
        conds.push(g.compare(op, x, c).expect("compare"));
    }
    let sel = g.where_(cb, x, c).expect("where");
    let sel2 = g.where_(conds[1], sel, x).expect("where");
    let wide = g.cast(x, DType::F64).expect("cast");
    let wide = g.add_(wide, cs).expect("f64 add");
    let ints = g.cast(ci, DType::F32).expect("cast");
    let sum = g.reduce(ReduceOp::Sum, x, vec![1], false).expect("sum");
    let max = g.reduce(ReduceOp::Max, x, vec![-1], true).expect("max");
    let mean = g.reduce(ReduceOp::Mean, x, vec![], false).expect("mean");
    let mm = g.matmul(x, w).expect("matmul");
    let rs = g.reshape(mm, vec![4, 1, 2]).expect("reshape");
    let tr = g.transpose(rs, vec![2, 0, 1]).expect("transpose");
    let ex = g.expand(max, vec![4, 2, 3]).expect("expand");
    let sl = g.slice(x, vec![0, -1], vec![i64::MAX, i64::MIN], vec![0, -1], vec![1, -2]).expect("slice");
    let cat = g.concat(&[x, sl, x], -1).expect("concat");
    g.set_outputs(vec![sel2, wide, ints, sum, mean, tr, ex, cat, outs[0]]);
    g
}
