//! The kernel IR: what fusion produces and backends compile.
//!
//! A [`Schedule`] is a list of [`Step`]s over numbered [`Buffer`]s (flat, row-major element
//! arrays). A [`Kernel`] is one loop nest: it iterates over a `domain` (a shape), evaluates a
//! list of SSA [`Instr`]s at each point, and [`Store`]s values into buffers. Loads and stores
//! address buffers through affine [`Access`] maps (`offset + Σ strides[d]·i[d]`), which is how
//! broadcasting, transposes, slices and free reshapes are fused away. A kernel with
//! `reduce_axes` reduces over those axes of its domain: values that depend on a `Reduce` are
//! computed once per remaining ("outer") point, everything before it at every domain point.
//! Matrix products are [`MatMulStep`]s handed to a gemm library.
//!
//! [`execute`] is the reference executor of this IR (whole-domain evaluation with the reference
//! interpreter's per-op semantics): the oracle for the fusion pass and for compiled kernels.

use crate::error::{Error, Result};
use kiln_ir::interp::{eval_node, Value};
use kiln_ir::{BinaryOp, CompareOp, DType, Literal, Node, Op, ReduceOp, Shape, UnaryOp};
use std::fmt;

pub type BufferId = usize;
pub type ValueId = usize;

/// An affine map from a domain (or operand) index to a buffer element:
/// `offset + Σ strides[d] · i[d]`. Strides may be 0 (broadcast) or negative (reversed slice).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Access {
    pub offset: i64,
    pub strides: Vec<i64>,
}

impl Access {
    /// Row-major contiguous access of a buffer of `shape`, indexed by that shape.
    pub fn contiguous(shape: &[usize]) -> Access {
        let s = Shape::from(shape.to_vec()).strides();
        Access { offset: 0, strides: s.into_iter().map(|v| v as i64).collect() }
    }

    pub fn at(&self, idx: &[usize]) -> i64 {
        self.offset + self.strides.iter().zip(idx).map(|(&s, &i)| s * i as i64).sum::<i64>()
    }

    /// Smallest and largest element offsets touched over `shape` (for bounds checks).
    pub fn range(&self, shape: &[usize]) -> Option<(i64, i64)> {
        if shape.contains(&0) {
            return None;
        }
        let (mut lo, mut hi) = (self.offset, self.offset);
        for (&s, &d) in self.strides.iter().zip(shape) {
            let span = s * (d as i64 - 1);
            if span < 0 {
                lo += span;
            } else {
                hi += span;
            }
        }
        Some((lo, hi))
    }
}

/// One SSA instruction of a kernel.
#[derive(Clone, Debug, PartialEq)]
pub enum KOp {
    Load {
        buffer: BufferId,
        access: Access,
    },
    Const(f64),
    Unary(UnaryOp, ValueId),
    Binary(BinaryOp, ValueId, ValueId),
    Compare(CompareOp, ValueId, ValueId),
    Where(ValueId, ValueId, ValueId),
    /// Converts to the instruction's dtype.
    Cast(ValueId),
    /// Reduces a value over the kernel's `reduce_axes` (`Sum` or `Max`; a mean is a sum times a
    /// constant).
    Reduce(ReduceOp, ValueId),
}

impl KOp {
    /// The values this instruction reads, in operand order.
    pub fn operands(&self) -> Vec<ValueId> {
        match self {
            KOp::Load { .. } | KOp::Const(_) => vec![],
            KOp::Unary(_, a) | KOp::Cast(a) | KOp::Reduce(_, a) => vec![*a],
            KOp::Binary(_, a, b) | KOp::Compare(_, a, b) => vec![*a, *b],
            KOp::Where(c, a, b) => vec![*c, *a, *b],
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Instr {
    pub op: KOp,
    pub dtype: DType,
}

/// Writes a value into a buffer. Values computed after a reduction are stored once per outer
/// point, so their access has stride 0 on the reduced axes.
#[derive(Clone, Debug, PartialEq)]
pub struct Store {
    pub buffer: BufferId,
    pub value: ValueId,
    pub access: Access,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Kernel {
    pub name: String,
    pub domain: Vec<usize>,
    /// Axes of `domain` reduced by the kernel's `Reduce` instructions (sorted; empty: none).
    pub reduce_axes: Vec<usize>,
    pub instrs: Vec<Instr>,
    pub stores: Vec<Store>,
}

/// A strided matrix operand: `batch.. × rows × cols`, one stride per axis (0 broadcasts).
#[derive(Clone, Debug, PartialEq)]
pub struct MatOperand {
    pub buffer: BufferId,
    pub access: Access,
}

/// `out[b, m, n] = Σ_k a[b, m, k] · b[b, k, n]`, `out` contiguous `[batch.., m, n]`.
#[derive(Clone, Debug, PartialEq)]
pub struct MatMulStep {
    pub name: String,
    pub dtype: DType,
    pub batch: Vec<usize>,
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub a: MatOperand,
    pub b: MatOperand,
    pub out: BufferId,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    Kernel(Kernel),
    MatMul(MatMulStep),
}

/// Where a buffer's contents come from.
#[derive(Clone, Debug, PartialEq)]
pub enum Role {
    /// Graph input `k`.
    Input(usize),
    /// A constant tensor.
    Constant(Literal),
    /// Written by a step.
    Computed,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Buffer {
    pub dtype: DType,
    pub numel: usize,
    pub role: Role,
    /// Byte offset in the arena, once memory is planned (`Computed` buffers only).
    pub arena_offset: Option<usize>,
}

impl Buffer {
    pub fn bytes(&self) -> usize {
        self.numel * self.dtype.size_bytes()
    }
}

/// A graph compiled to steps over buffers.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Schedule {
    pub buffers: Vec<Buffer>,
    pub steps: Vec<Step>,
    /// Buffer of each graph input, in input order.
    pub inputs: Vec<BufferId>,
    /// Buffer and shape of each graph output, in output order.
    pub outputs: Vec<(BufferId, Vec<usize>)>,
    /// Bytes of the arena holding every `Computed` buffer (after planning; 0 before).
    pub arena_bytes: usize,
}

impl Step {
    /// Buffers this step reads (with repeats, in instruction order).
    pub fn reads(&self) -> Vec<BufferId> {
        match self {
            Step::Kernel(k) => k
                .instrs
                .iter()
                .filter_map(|i| if let KOp::Load { buffer, .. } = i.op { Some(buffer) } else { None })
                .collect(),
            Step::MatMul(m) => vec![m.a.buffer, m.b.buffer],
        }
    }

    /// Buffers this step writes (with repeats, in store order).
    pub fn writes(&self) -> Vec<BufferId> {
        match self {
            Step::Kernel(k) => k.stores.iter().map(|st| st.buffer).collect(),
            Step::MatMul(m) => vec![m.out],
        }
    }
}

// ----- checks ---------------------------------------------------------------------------------

impl Kernel {
    /// Whether value `v` varies over the reduced axes (is evaluated at every domain point).
    pub fn inner_mask(&self) -> Vec<bool> {
        let mut inner = vec![false; self.instrs.len()];
        for (i, ins) in self.instrs.iter().enumerate() {
            inner[i] = match &ins.op {
                KOp::Load { access, .. } => self.reduce_axes.iter().any(|&a| access.strides[a] != 0),
                KOp::Const(_) | KOp::Reduce(..) => false,
                op => op.operands().iter().any(|&a| inner[a]),
            };
        }
        inner
    }

    /// Whether value `v` is computed after (depends on) a reduction.
    pub fn post_reduce_mask(&self) -> Vec<bool> {
        let mut post = vec![false; self.instrs.len()];
        for (i, ins) in self.instrs.iter().enumerate() {
            post[i] = match &ins.op {
                KOp::Reduce(..) => true,
                op => op.operands().iter().any(|&a| post[a]),
            };
        }
        post
    }
}

impl Schedule {
    /// Checks the invariants backends rely on: SSA order, operand dtypes, access ranks, every
    /// load and store inside its buffer, no reduction of a reduced value, outer stores not
    /// varying over reduced axes. Generated code may assume all of this.
    pub fn verify(&self) -> Result<()> {
        let bad = |step: &str, msg: String| Err(Error::Schedule(format!("{step}: {msg}")));
        for step in &self.steps {
            match step {
                Step::Kernel(k) => {
                    let inner = k.inner_mask();
                    let post = k.post_reduce_mask();
                    if k.reduce_axes.iter().any(|&a| a >= k.domain.len()) {
                        return bad(&k.name, "reduce axis outside the domain".into());
                    }
                    let in_bounds = |b: BufferId, acc: &Access, shape: &[usize]| -> bool {
                        let Some(buf) = self.buffers.get(b) else { return false };
                        acc.strides.len() == shape.len()
                            && acc.range(shape).is_none_or(|(lo, hi)| lo >= 0 && (hi as usize) < buf.numel)
                    };
                    for (i, ins) in k.instrs.iter().enumerate() {
                        let args: Vec<usize> = match &ins.op {
                            KOp::Load { buffer, access } => {
                                if !in_bounds(*buffer, access, &k.domain) {
                                    return bad(&k.name, format!("load %{i} leaves buffer {buffer}"));
                                }
                                if self.buffers[*buffer].dtype != ins.dtype {
                                    return bad(&k.name, format!("load %{i} has the wrong dtype"));
                                }
                                vec![]
                            }
                            KOp::Const(_) => vec![],
                            KOp::Unary(_, a) | KOp::Cast(a) => vec![*a],
                            KOp::Reduce(_, a) => {
                                if post[*a] {
                                    return bad(
                                        &k.name,
                                        format!("reduce %{i} reduces an already reduced value"),
                                    );
                                }
                                vec![*a]
                            }
                            KOp::Binary(_, a, b) | KOp::Compare(_, a, b) => vec![*a, *b],
                            KOp::Where(c, a, b) => vec![*c, *a, *b],
                        };
                        if args.iter().any(|&a| a >= i) {
                            return bad(&k.name, format!("%{i} uses a value defined after it"));
                        }
                    }
                    for s in &k.stores {
                        if s.value >= k.instrs.len() || !in_bounds(s.buffer, &s.access, &k.domain) {
                            return bad(&k.name, format!("store to buffer {} is out of range", s.buffer));
                        }
                        if self.buffers[s.buffer].dtype != k.instrs[s.value].dtype {
                            return bad(&k.name, format!("store to buffer {} has the wrong dtype", s.buffer));
                        }
                        let outer = !inner[s.value] && post[s.value];
                        if outer && k.reduce_axes.iter().any(|&a| s.access.strides[a] != 0) {
                            return bad(&k.name, "a reduced value is stored along a reduced axis".into());
                        }
                    }
                }
                Step::MatMul(mm) => {
                    let mut sa = mm.batch.clone();
                    sa.extend([mm.m, mm.k]);
                    let mut sb = mm.batch.clone();
                    sb.extend([mm.k, mm.n]);
                    for (what, op, shape) in [("a", &mm.a, &sa), ("b", &mm.b, &sb)] {
                        let buf = &self.buffers[op.buffer];
                        let ok = op.access.strides.len() == shape.len()
                            && op
                                .access
                                .range(shape)
                                .is_none_or(|(lo, hi)| lo >= 0 && (hi as usize) < buf.numel);
                        if !ok {
                            return bad(&mm.name, format!("operand {what} leaves its buffer"));
                        }
                    }
                    let out: usize = mm.batch.iter().product::<usize>() * mm.m * mm.n;
                    if self.buffers[mm.out].numel != out {
                        return bad(&mm.name, "output buffer has the wrong size".into());
                    }
                }
            }
        }
        Ok(())
    }
}

// ----- reference execution --------------------------------------------------------------------

fn idx_iter(shape: &[usize]) -> impl Iterator<Item = Vec<usize>> + '_ {
    let n: usize = shape.iter().product();
    (0..n).map(move |mut f| {
        let mut idx = vec![0; shape.len()];
        for d in (0..shape.len()).rev() {
            idx[d] = f % shape[d];
            f /= shape[d];
        }
        idx
    })
}

fn gather(buf: &Value, access: &Access, shape: &[usize]) -> Value {
    let offs: Vec<usize> = idx_iter(shape).map(|i| access.at(&i) as usize).collect();
    let sh = ndarray::IxDyn(shape);
    macro_rules! g {
        ($a:expr, $v:ident) => {{
            let flat: Vec<_> = $a.iter().copied().collect();
            Value::$v(
                ndarray::ArrayD::from_shape_vec(sh, offs.iter().map(|&o| flat[o]).collect()).expect("shape"),
            )
        }};
    }
    match buf {
        Value::F32(a) => g!(a, F32),
        Value::F64(a) => g!(a, F64),
        Value::I64(a) => g!(a, I64),
        Value::Bool(a) => g!(a, Bool),
    }
}

fn scatter(buf: &mut Value, access: &Access, shape: &[usize], v: &Value) {
    let offs: Vec<usize> = idx_iter(shape).map(|i| access.at(&i) as usize).collect();
    macro_rules! s {
        ($a:expr, $src:expr) => {{
            let src: Vec<_> = $src.iter().copied().collect();
            let dst = $a.as_slice_mut().expect("buffers are contiguous");
            for (o, x) in offs.iter().zip(src) {
                dst[*o] = x;
            }
        }};
    }
    match (buf, v) {
        (Value::F32(a), Value::F32(b)) => s!(a, b),
        (Value::F64(a), Value::F64(b)) => s!(a, b),
        (Value::I64(a), Value::I64(b)) => s!(a, b),
        (Value::Bool(a), Value::Bool(b)) => s!(a, b),
        _ => unreachable!("verified dtypes"),
    }
}

/// The operands' shapes broadcast together (for the node passed to the interpreter).
fn bshape(vals: &[&Value]) -> Shape {
    vals.iter()
        .fold(Shape::scalar(), |s, v| kiln_ir::broadcast_shapes(&s, &v.shape()).expect("broadcastable"))
}

fn run_kernel(k: &Kernel, bufs: &mut [Value]) -> Result<()> {
    let outer_shape: Vec<usize> =
        k.domain.iter().enumerate().map(|(i, &d)| if k.reduce_axes.contains(&i) { 1 } else { d }).collect();
    let mut vals: Vec<Value> = Vec::with_capacity(k.instrs.len());
    let ierr = |e: kiln_ir::Error| Error::Schedule(format!("kernel {}: {e}", k.name));
    for ins in &k.instrs {
        let v = match &ins.op {
            // A load that does not vary over the reduced axes is the same at every inner point:
            // gather it once per outer point (it may feed post-reduction values).
            KOp::Load { buffer, access } if k.reduce_axes.iter().all(|&a| access.strides[a] == 0) => {
                gather(&bufs[*buffer], access, &outer_shape)
            }
            KOp::Load { buffer, access } => gather(&bufs[*buffer], access, &k.domain),
            KOp::Const(c) => {
                Value::from_literal(&Literal::scalar(ins.dtype, *c), &Shape::scalar()).map_err(ierr)?
            }
            KOp::Reduce(op, a) => {
                // Reduce over the reduced axes of the full domain (an outer operand is broadcast).
                let full = {
                    let node = Node {
                        op: Op::Expand { shape: k.domain.clone() },
                        dtype: ins.dtype,
                        shape: Shape::from(k.domain.clone()),
                    };
                    eval_node(&node, &[&vals[*a]]).map_err(ierr)?
                };
                let axes = k.reduce_axes.iter().map(|&a| a as i64).collect();
                let node = Node {
                    op: Op::Reduce { op: *op, axes, keepdims: true },
                    dtype: ins.dtype,
                    shape: Shape::from(outer_shape.clone()),
                };
                eval_node(&node, &[&full]).map_err(ierr)?
            }
            op => {
                let (iop, args): (Op, Vec<usize>) = match op {
                    KOp::Unary(u, a) => (Op::Unary(*u), vec![*a]),
                    KOp::Binary(b, x, y) => (Op::Binary(*b), vec![*x, *y]),
                    KOp::Compare(c, x, y) => (Op::Compare(*c), vec![*x, *y]),
                    KOp::Where(c, x, y) => (Op::Where, vec![*c, *x, *y]),
                    KOp::Cast(a) => (Op::Cast { to: ins.dtype }, vec![*a]),
                    _ => unreachable!("handled above"),
                };
                let refs: Vec<&Value> = args.iter().map(|&a| &vals[a]).collect();
                let node = Node { op: iop, dtype: ins.dtype, shape: bshape(&refs) };
                eval_node(&node, &refs).map_err(ierr)?
            }
        };
        vals.push(v);
    }
    let inner = k.inner_mask();
    let post = k.post_reduce_mask();
    for s in &k.stores {
        let v = &vals[s.value];
        let shape = if post[s.value] && !inner[s.value] { outer_shape.clone() } else { k.domain.clone() };
        let node = Node {
            op: Op::Expand { shape: shape.clone() },
            dtype: v.dtype(),
            shape: Shape::from(shape.clone()),
        };
        let full = eval_node(&node, &[v]).map_err(ierr)?;
        scatter(&mut bufs[s.buffer], &s.access, &shape, &full);
    }
    Ok(())
}

fn run_matmul(mm: &MatMulStep, bufs: &mut [Value]) -> Result<()> {
    let mut sa = mm.batch.clone();
    sa.extend([mm.m, mm.k]);
    let mut sb = mm.batch.clone();
    sb.extend([mm.k, mm.n]);
    let a = gather(&bufs[mm.a.buffer], &mm.a.access, &sa);
    let b = gather(&bufs[mm.b.buffer], &mm.b.access, &sb);
    let mut so = mm.batch.clone();
    so.extend([mm.m, mm.n]);
    let node = Node { op: Op::MatMul, dtype: mm.dtype, shape: Shape::from(so.clone()) };
    let out = eval_node(&node, &[&a, &b]).map_err(|e| Error::Schedule(format!("{}: {e}", mm.name)))?;
    scatter(&mut bufs[mm.out], &Access::contiguous(&so), &so, &out);
    Ok(())
}

/// Runs a schedule with the reference semantics: the oracle for fusion and compiled kernels.
pub fn execute(s: &Schedule, inputs: &[Value]) -> Result<Vec<Value>> {
    if inputs.len() != s.inputs.len() {
        return Err(Error::Schedule(format!(
            "schedule takes {} inputs, got {}",
            s.inputs.len(),
            inputs.len()
        )));
    }
    let mut bufs: Vec<Value> = s
        .buffers
        .iter()
        .map(|b| {
            let lit = match &b.role {
                Role::Constant(l) => l.clone(),
                _ => Literal::splat(b.dtype, 0.0, b.numel),
            };
            Value::from_literal(&lit, &Shape::from(vec![b.numel])).expect("sized")
        })
        .collect();
    for (k, v) in inputs.iter().enumerate() {
        let flat = v.to_literal();
        bufs[s.inputs[k]] = Value::from_literal(&flat, &Shape::from(vec![flat.len()])).expect("sized");
    }
    for step in &s.steps {
        match step {
            Step::Kernel(k) => run_kernel(k, &mut bufs)?,
            Step::MatMul(mm) => run_matmul(mm, &mut bufs)?,
        }
    }
    s.outputs
        .iter()
        .map(|(b, shape)| {
            Value::from_literal(&bufs[*b].to_literal(), &Shape::from(shape.clone()))
                .map_err(|e| Error::Schedule(e.to_string()))
        })
        .collect()
}

// ----- text -----------------------------------------------------------------------------------

fn access_text(a: &Access) -> String {
    format!("{}+[{}]", a.offset, a.strides.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(","))
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.buffers.iter().enumerate() {
            let role = match &b.role {
                Role::Input(k) => format!("input {k}"),
                Role::Constant(l) => format!("constant {}", kiln_ir::text::literal_text(l)),
                Role::Computed => match b.arena_offset {
                    Some(o) => format!("arena @{o}"),
                    None => "computed".into(),
                },
            };
            writeln!(f, "buffer b{i} : {}[{}] ({role})", b.dtype, b.numel)?;
        }
        for step in &self.steps {
            match step {
                Step::Kernel(k) => {
                    let red = if k.reduce_axes.is_empty() {
                        String::new()
                    } else {
                        format!(" reduce {:?}", k.reduce_axes)
                    };
                    writeln!(f, "kernel {} over {:?}{red} {{", k.name, k.domain)?;
                    for (i, ins) in k.instrs.iter().enumerate() {
                        let body = match &ins.op {
                            KOp::Load { buffer, access } => {
                                format!("load b{buffer}[{}]", access_text(access))
                            }
                            KOp::Const(c) => format!("const {c:?}"),
                            KOp::Unary(u, a) => format!("{}(%{a})", u.name()),
                            KOp::Binary(b, x, y) => format!("{}(%{x}, %{y})", b.name()),
                            KOp::Compare(c, x, y) => format!("{}(%{x}, %{y})", c.name()),
                            KOp::Where(c, x, y) => format!("Where(%{c}, %{x}, %{y})"),
                            KOp::Cast(a) => format!("Cast(%{a})"),
                            KOp::Reduce(r, a) => format!("{}(%{a})", r.name()),
                        };
                        writeln!(f, "  %{i} = {body} : {}", ins.dtype)?;
                    }
                    for s in &k.stores {
                        writeln!(f, "  store b{}[{}] = %{}", s.buffer, access_text(&s.access), s.value)?;
                    }
                    writeln!(f, "}}")?;
                }
                Step::MatMul(mm) => writeln!(
                    f,
                    "matmul {} : {} batch {:?} m={} k={} n={} a=b{}[{}] b=b{}[{}] -> b{}",
                    mm.name,
                    mm.dtype,
                    mm.batch,
                    mm.m,
                    mm.k,
                    mm.n,
                    mm.a.buffer,
                    access_text(&mm.a.access),
                    mm.b.buffer,
                    access_text(&mm.b.access),
                    mm.out
                )?,
            }
        }
        let outs: Vec<String> = self.outputs.iter().map(|(b, s)| format!("b{b}{s:?}")).collect();
        writeln!(f, "outputs {}", outs.join(", "))
    }
}
