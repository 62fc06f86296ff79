//! Recording: every tensor op goes through [`apply`] (one primitive IR op) or [`apply_composite`]
//! (a decomposition into primitives that autograd sees as one node, like PyTorch's `GeluBackward0`).
//! Both build the lazy value; when gradients are recorded they also create the `grad_fn` node.

use crate::autograd::mode::is_grad_enabled;
use crate::autograd::node::{gradient_edge, Edges, Kind, Node, Saved, SavedResult, SavedTensor};
use crate::autograd::plan::{Program, ReversePlan, Template};
use crate::error::Result;
use crate::expr::{Expr, FastMap, FxHasher, Operands};
use crate::tensor::{Dims, Meta, Tensor};
use kiln_ir::{BinaryOp, DType, Graph, Literal, NodeId, Op, ReduceOp, Shape, UnaryOp};
use smallvec::SmallVec;
use std::borrow::Cow;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

impl Tensor {
    /// A constant tensor (kept as a `Constant` in the graph, so passes can fold it).
    pub(crate) fn constant(lit: Literal, shape: Shape) -> Tensor {
        Tensor::from_expr(Expr::constant(lit, shape))
    }
}

fn records(inputs: &[&Tensor], out_is_float: bool) -> bool {
    out_is_float && is_grad_enabled() && inputs.iter().any(|t| t.requires_grad())
}

pub(crate) fn is_view_op(op: &Op) -> bool {
    matches!(op, Op::Reshape { .. } | Op::Transpose { .. } | Op::Expand { .. } | Op::Slice { .. })
}

/// `op(inputs)` as a new tensor; its `grad_fn` (if recorded) is called `name`.
pub(crate) fn apply(name: &'static str, op: Op, inputs: &[&Tensor]) -> Result<Tensor> {
    apply_typed(name, op, inputs, None)
}

/// [`apply`], given the result's type and [`Expr::op_hash`] when the caller knows them already
/// (a replayed reverse program whose operands have the types its template was built for).
pub(crate) fn apply_typed(
    name: &'static str,
    op: Op,
    inputs: &[&Tensor],
    typed: Option<(DType, Shape, u64)>,
) -> Result<Tensor> {
    // Plain pushes rather than `collect` into the inline lists: for two or three items the
    // generic `extend` costs several times the work (it showed in the per-step profile).
    let mut operands = Operands::new();
    for t in inputs {
        operands.push(t.expr());
    }
    let (dtype, shape, hash) = match typed {
        Some(t) => t,
        None => {
            let (d, s) = Expr::infer(&op, &operands)?;
            let h = Expr::op_hash(&op, d, &s);
            (d, s, h)
        }
    };
    let view = is_view_op(&op);
    // Each input's autograd state is read once (it is behind a lock).
    let mut requires = Flags::new();
    if dtype.is_float() && is_grad_enabled() {
        for t in inputs {
            requires.push(t.requires_grad());
        }
    }
    if !requires.iter().any(|&r| r) {
        return Ok(Tensor::build(
            Expr::pending_hashed(op, operands, dtype, shape, hash),
            Meta::default(),
            view,
        ));
    }
    let mut needs = Flags::new();
    for (t, &r) in inputs.iter().zip(&requires) {
        needs.push(r && t.dtype().is_float());
    }
    let key = KeyOf { op: &op, inputs, operands: &operands, requires: &requires, needs: &needs };
    let plan = cached_plan(&key, || {
        let (mut graph, nodes) = template_inputs(inputs);
        let output = graph.add(op.clone(), &nodes.iter().map(|n| n.1).collect::<Vec<_>>())?;
        ReversePlan::new(Template { graph, inputs: nodes.iter().map(|n| n.0).collect(), output }, &needs)
    })?;
    let expr = Expr::pending_hashed(op, operands, dtype, shape, hash);
    record(Cow::Borrowed(name), plan, inputs, &needs, expr, view)
}

/// What identifies a primitive op's reverse plan: the op, each operand's type (and value, for
/// the constants embedded in the template) and which operands need gradients.
struct PlanKey {
    op: Op,
    inputs: Vec<(kiln_ir::DType, Shape, Option<Literal>)>,
    needs: Vec<bool>,
}

/// The plan key of a recorded op, borrowed from what `apply` already has in hand.
struct KeyOf<'a> {
    op: &'a Op,
    inputs: &'a [&'a Tensor],
    /// The inputs' current exprs.
    operands: &'a [Arc<Expr>],
    /// Per input: whether it requires grad (its constant, if any, is then not embedded).
    requires: &'a [bool],
    needs: &'a [bool],
}

impl KeyOf<'_> {
    /// The literal input `i` embeds in the template, borrowed.
    fn constant(&self, i: usize) -> Option<&Literal> {
        if self.requires[i] {
            return None;
        }
        self.operands[i].pending_constant()
    }

    fn to_key(&self) -> PlanKey {
        let inputs = (0..self.inputs.len())
            .map(|i| (self.inputs[i].dtype(), Shape::new(self.inputs[i].shape()), self.constant(i).cloned()))
            .collect();
        PlanKey { op: self.op.clone(), inputs, needs: self.needs.to_vec() }
    }

    /// Whether `k` is this key (compared in place: building a key to look one up would
    /// allocate on every recorded op).
    fn is(&self, k: &PlanKey) -> bool {
        k.op == *self.op
            && k.needs == self.needs
            && k.inputs.len() == self.inputs.len()
            && k.inputs.iter().zip(self.inputs).enumerate().all(|(i, ((d, s, lit), t))| {
                *d == t.dtype() && s.dims() == t.shape() && lit.as_ref() == self.constant(i)
            })
    }

    /// The hash of the key, computed without building it.
    fn hash(&self) -> u64 {
        let mut h = FxHasher::default();
        self.op.hash(&mut h);
        for (i, t) in self.inputs.iter().enumerate() {
            t.dtype().hash(&mut h);
            t.shape().hash(&mut h);
            if !self.requires[i] {
                // Only pending constants are embedded; hash the operand's op hash, which covers
                // the literal, rather than cloning the literal.
                self.operands[i].constant_hash().hash(&mut h);
            }
        }
        self.needs.hash(&mut h);
        h.finish()
    }
}

/// Reverse plans of primitive ops, shared: a training loop records the same ops every step, and
/// running the autodiff pass for each of them every time would dominate small steps. Keyed by
/// [`KeyOf::hash`]; a bucket holds the (rare) keys with equal hashes.
type PlanBuckets = FastMap<u64, Vec<(PlanKey, Arc<ReversePlan>)>>;
static PLANS: Mutex<Option<PlanBuckets>> = Mutex::new(None);
const PLAN_CACHE_LIMIT: usize = 4096;

fn cached_plan(key: &KeyOf<'_>, make: impl FnOnce() -> Result<ReversePlan>) -> Result<Arc<ReversePlan>> {
    let h = key.hash();
    {
        let mut cache = PLANS.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = cache.get_or_insert_with(FastMap::default).get(&h);
        if let Some((_, p)) = bucket.and_then(|b| b.iter().find(|(k, _)| key.is(k))) {
            return Ok(p.clone());
        }
    }
    let plan = Arc::new(make()?);
    let mut cache = PLANS.lock().unwrap_or_else(|p| p.into_inner());
    let cache = cache.get_or_insert_with(FastMap::default);
    if cache.len() >= PLAN_CACHE_LIMIT {
        cache.clear();
    }
    cache.entry(h).or_default().push((key.to_key(), plan.clone()));
    Ok(plan)
}

/// Per operand flags (requires grad, needs grad), inline for the usual few operands.
type Flags = smallvec::SmallVec<[bool; 4]>;

fn needs_grad(inputs: &[&Tensor]) -> Flags {
    inputs.iter().map(|t| t.requires_grad() && t.dtype().is_float()).collect()
}

/// The literal of an operand that the template embeds as a constant.
fn constant_operand(t: &Tensor) -> Option<Literal> {
    if t.requires_grad() {
        return None;
    }
    t.expr().literal()
}

/// A composite: `build` appends primitives computing it from the inputs' nodes. The forward value
/// is those primitives; autograd records one node named `name` whose backward is the autodiff of
/// the whole decomposition.
pub(crate) fn apply_composite(
    name: &'static str,
    inputs: &[&Tensor],
    build: impl FnOnce(&mut Graph, &[NodeId]) -> kiln_ir::Result<NodeId>,
) -> Result<Tensor> {
    let (mut graph, nodes) = template_inputs(inputs);
    let output = build(&mut graph, &nodes.iter().map(|n| n.1).collect::<Vec<_>>())?;
    let template = Template { graph, inputs: nodes.iter().map(|n| n.0).collect(), output };
    let value = {
        let _g = crate::autograd::mode::no_grad();
        let g = &template.graph;
        let mut bound = vec![None; g.node_bound()];
        for (t, n) in inputs.iter().zip(&template.inputs) {
            if let Some(n) = n {
                bound[n.index()] = Some((*t).clone());
            }
        }
        let order: Vec<NodeId> = g.topo_order()?.into_iter().filter(|n| bound[n.index()].is_none()).collect();
        Program::new(g, &order, &[template.output]).run(&mut bound)?;
        bound[template.output.index()].clone().expect("the template's output was replayed")
    };
    let expr = value.expr();
    if !records(inputs, expr.dtype.is_float()) {
        return Ok(Tensor::from_expr(expr));
    }
    let needs = needs_grad(inputs);
    let plan = Arc::new(ReversePlan::new(template, &needs)?);
    record(Cow::Borrowed(name), plan, inputs, &needs, expr, false)
}

/// A graph with one node per input: constant operands that need no gradient are embedded as
/// `Constant`s (so rules like `x.pow(2)` fold), everything else is an `Input`.
fn template_inputs(inputs: &[&Tensor]) -> (Graph, Vec<(Option<NodeId>, NodeId)>) {
    let mut g = Graph::new();
    let nodes = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let e = t.expr();
            match constant_operand(t) {
                Some(lit) => (None, g.constant(lit, e.shape.clone()).expect("a literal matches its shape")),
                None => {
                    let n = g.input(format!("x{i}"), e.dtype, e.shape.clone());
                    (Some(n), n)
                }
            }
        })
        .collect();
    (g, nodes)
}

fn record(
    name: Cow<'static, str>,
    plan: Arc<ReversePlan>,
    inputs: &[&Tensor],
    needs: &[bool],
    expr: Arc<Expr>,
    view: bool,
) -> Result<Tensor> {
    let mut next = Edges::new();
    for (t, &n) in inputs.iter().zip(needs) {
        next.push(if n { gradient_edge(t) } else { None });
    }
    let mut saved_inputs = SmallVec::new();
    for (t, &u) in inputs.iter().zip(&plan.uses_input) {
        saved_inputs.push(if u { Some(SavedTensor::new(t)?) } else { None });
    }
    let uses_result = plan.uses_result;
    let outputs = smallvec::smallvec![(expr.dtype, Dims::from_slice(expr.shape.dims()))];
    let saved = Saved { released: false, inputs: saved_inputs, result: None };
    let node = Node::new(name, Kind::Graph(plan), next, outputs, saved);
    let out = Tensor::build(expr, Meta { grad_fn: Some(node.clone()), ..Meta::default() }, view);
    if uses_result {
        node.saved().result = Some(SavedResult {
            expr: out.expr(),
            version_counter: out.0.version.shared(),
            version: 0,
            node: Arc::downgrade(&node),
        });
    }
    Ok(out)
}

/// Applies one primitive IR op to tensors, recorded like the Tensor method that computes it (its
/// `grad_fn` has PyTorch's name). This is how graphs from elsewhere (an imported ONNX model, a
/// replayed reverse graph) run as tensor code. `Input` and `Constant` have no operands: they are
/// an error here.
///
/// ```
/// use kiln_frontend::{apply_op, Tensor};
/// use kiln_ir::{BinaryOp, Op};
/// let x = Tensor::ones(&[2]).requires_grad_(true);
/// let y = apply_op(&Op::Binary(BinaryOp::Mul), &[&x, &x]).unwrap();
/// assert_eq!(y.grad_fn().unwrap().name(), "MulBackward0");
/// ```
pub fn apply_op(op: &Op, inputs: &[&Tensor]) -> Result<Tensor> {
    if matches!(op, Op::Input { .. } | Op::Constant(_)) {
        return Err(crate::Error::Op(format!("apply_op: {} has no operands to apply it to", op.name())));
    }
    apply(default_name(op), op.clone(), inputs)
}

/// The `grad_fn` name of an IR op replayed in a backward pass (under `create_graph`).
pub(crate) fn default_name(op: &Op) -> &'static str {
    match op {
        Op::Input { .. } | Op::Constant(_) => "ConstantBackward0",
        Op::Unary(u) => match u {
            UnaryOp::Neg => "NegBackward0",
            UnaryOp::Abs => "AbsBackward0",
            UnaryOp::Exp => "ExpBackward0",
            UnaryOp::Log => "LogBackward0",
            UnaryOp::Sqrt => "SqrtBackward0",
            UnaryOp::Reciprocal => "ReciprocalBackward0",
            UnaryOp::Tanh => "TanhBackward0",
            UnaryOp::Sigmoid => "SigmoidBackward0",
            UnaryOp::Relu => "ReluBackward0",
            UnaryOp::Erf => "ErfBackward0",
            UnaryOp::Sin => "SinBackward0",
            UnaryOp::Cos => "CosBackward0",
            UnaryOp::Sign => "SignBackward0",
        },
        Op::Binary(b) => match b {
            BinaryOp::Add => "AddBackward0",
            BinaryOp::Sub => "SubBackward0",
            BinaryOp::Mul => "MulBackward0",
            BinaryOp::Div => "DivBackward0",
            BinaryOp::Pow => "PowBackward1",
            BinaryOp::Max => "MaximumBackward0",
            BinaryOp::Min => "MinimumBackward0",
        },
        Op::Compare(_) => "CompareBackward0",
        Op::Where => "WhereBackward0",
        Op::Cast { .. } => "ToCopyBackward0",
        Op::Reduce { op, .. } => match op {
            ReduceOp::Sum => "SumBackward1",
            ReduceOp::Mean => "MeanBackward1",
            ReduceOp::Max => "AmaxBackward0",
        },
        Op::MatMul => "MmBackward0",
        Op::Reshape { .. } => "ViewBackward0",
        Op::Transpose { .. } => "PermuteBackward0",
        Op::Expand { .. } => "ExpandBackward0",
        Op::Slice { .. } => "SliceBackward0",
        Op::Concat { .. } => "CatBackward0",
    }
}
