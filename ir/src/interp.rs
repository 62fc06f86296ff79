//! The reference interpreter on `ndarray`: the oracle every other backend is tested against.
//!
//! Simple and obviously right beats fast here. Every op is one arm of one `match` (behind
//! [`eval_node`]), computed in the node's own dtype (f32 elementwise ops run in f32) with
//! ONNX/numpy semantics:
//!
//! - broadcasting follows numpy; `Max`/`Min` (binary and `ReduceMax`) propagate NaN like
//!   PyTorch's `maximum`; `Relu` and `Sign` keep NaN; `Sigmoid` is computed stably, so it is
//!   exactly 0 or 1 for large `|x|` and never NaN for finite `x`; `Erf` uses `libm`.
//! - integer `Add`/`Sub`/`Mul`/`Neg`/`Abs`/`Pow` wrap on overflow (like numpy); integer `Div`
//!   truncates toward zero (like ONNX/C); division by zero and a negative integer exponent are
//!   errors, not panics.
//! - `Cast` float → i64 truncates toward zero and saturates at the i64 range; NaN becomes 0.
//!   Anything → bool is `x != 0` (so NaN → true); bool → number is 0/1.
//! - `ReduceSum` over an empty axis is 0, `ReduceMean` over one is NaN (0/0), `ReduceMax` over one
//!   is an error (it has no identity). Sums (`ReduceSum`, `ReduceMean`, `MatMul`) accumulate
//!   sequentially, f32 ones in f64 with a single rounding at the end, so that the oracle is closer
//!   to the exact result than any backend's f32 accumulator.
//! - Comparisons are defined for every dtype (bool orders `false < true`, like numpy); a
//!   comparison with NaN is false.
//!
//! Every result is checked against the node's declared dtype and shape, so an interpreter bug or
//! an unverified graph shows up as an [`Error::Interp`] rather than a wrong answer.

use crate::dtype::{broadcast_shapes, normalize_axis, DType, Shape};
use crate::error::{Error, Result};
use crate::graph::{Graph, Node, NodeId};
use crate::literal::Literal;
use crate::op::{
    matmul_shape, reduce_axes, reduced_shape, Arity, BinaryOp, CompareOp, Op, ReduceOp, SliceRange, UnaryOp,
};
use ndarray::{Array3, ArrayD, Axis, IxDyn, LinalgScalar};
use std::borrow::{Borrow, Cow};
use std::collections::HashMap;
use std::fmt::Debug;

// ----- values -----------------------------------------------------------------------------------

/// A tensor value: an n-dimensional array of one of the four dtypes.
///
/// Equality (`==`) is exact and elementwise (so `NaN != NaN`); use [`allclose`] to compare results
/// of different backends. Values computed by the interpreter are in standard (row-major) layout;
/// inputs may have any layout.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    F32(ArrayD<f32>),
    F64(ArrayD<f64>),
    I64(ArrayD<i64>),
    Bool(ArrayD<bool>),
}

/// Applies `$body` to the array inside a value, whatever its dtype.
macro_rules! each_value {
    ($v:expr, $a:ident => $body:expr) => {
        match $v {
            Value::F32($a) => $body,
            Value::F64($a) => $body,
            Value::I64($a) => $body,
            Value::Bool($a) => $body,
        }
    };
}

/// Maps the array inside a value to a new array of the same dtype.
macro_rules! map_value {
    ($v:expr, $a:ident => $body:expr) => {
        match $v {
            Value::F32($a) => Value::F32($body),
            Value::F64($a) => Value::F64($body),
            Value::I64($a) => Value::I64($body),
            Value::Bool($a) => Value::Bool($body),
        }
    };
}

impl Value {
    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            Value::F32(_) => DType::F32,
            Value::F64(_) => DType::F64,
            Value::I64(_) => DType::I64,
            Value::Bool(_) => DType::Bool,
        }
    }

    /// The shape (`[]` for a scalar).
    pub fn shape(&self) -> Shape {
        Shape::from(each_value!(self, a => a.shape().to_vec()))
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        each_value!(self, a => a.len())
    }

    /// The value of a `Constant`: `lit`'s elements in row-major order, shaped `shape`.
    pub fn from_literal(lit: &Literal, shape: &Shape) -> Result<Value> {
        literal_value(lit, shape).map_err(|m| Error::Interp(format!("Constant: {m}")))
    }

    /// A value of `dtype` and `shape` from row-major `data`, converted like [`Literal::splat`]:
    /// `as` casts for numbers (float → i64 truncates, NaN → 0), `x != 0` for bool.
    pub fn from_f64(dtype: DType, shape: impl Into<Shape>, data: &[f64]) -> Result<Value> {
        let shape = shape.into();
        let conv = || -> Result<Value, String> {
            Ok(match dtype {
                DType::F32 => Value::F32(from_vec(&shape.0, data.iter().map(|&v| v as f32).collect())?),
                DType::F64 => Value::F64(from_vec(&shape.0, data.to_vec())?),
                DType::I64 => Value::I64(from_vec(&shape.0, data.iter().map(|&v| v as i64).collect())?),
                DType::Bool => Value::Bool(from_vec(&shape.0, data.iter().map(|&v| v != 0.0).collect())?),
            })
        };
        conv().map_err(|m| Error::Interp(format!("Value::from_f64: {m}")))
    }

    /// The elements in row-major order as a [`Literal`] (the inverse of [`Value::from_literal`]),
    /// e.g. for constant folding.
    pub fn to_literal(&self) -> Literal {
        match self {
            Value::F32(a) => Literal::F32(a.iter().copied().collect()),
            Value::F64(a) => Literal::F64(a.iter().copied().collect()),
            Value::I64(a) => Literal::I64(a.iter().copied().collect()),
            Value::Bool(a) => Literal::Bool(a.iter().copied().collect()),
        }
    }

    /// The elements in row-major order, widened to f64 (bool as 0/1).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        each_value!(self, a => a.iter().map(|&x| x.cast_f64()).collect())
    }

    /// The single element as f64 when the value has exactly one element (any rank).
    pub fn scalar_f64(&self) -> Option<f64> {
        if self.numel() != 1 {
            return None;
        }
        each_value!(self, a => a.iter().next().map(|&x| x.cast_f64()))
    }

    /// The array if this is an f32 value.
    pub fn as_f32(&self) -> Option<&ArrayD<f32>> {
        f32::view_of(self)
    }

    /// The array if this is an f64 value.
    pub fn as_f64(&self) -> Option<&ArrayD<f64>> {
        f64::view_of(self)
    }

    /// The array if this is an i64 value.
    pub fn as_i64(&self) -> Option<&ArrayD<i64>> {
        i64::view_of(self)
    }

    /// The array if this is a bool value.
    pub fn as_bool(&self) -> Option<&ArrayD<bool>> {
        bool::view_of(self)
    }

    /// The same value in standard (row-major, contiguous) layout.
    fn into_standard(self) -> Value {
        fn std<T: Clone>(a: ArrayD<T>) -> ArrayD<T> {
            if a.is_standard_layout() {
                a
            } else {
                a.as_standard_layout().into_owned()
            }
        }
        map_value!(self, a => std(a))
    }
}

impl From<ArrayD<f32>> for Value {
    fn from(a: ArrayD<f32>) -> Value {
        Value::F32(a)
    }
}

impl From<ArrayD<f64>> for Value {
    fn from(a: ArrayD<f64>) -> Value {
        Value::F64(a)
    }
}

impl From<ArrayD<i64>> for Value {
    fn from(a: ArrayD<i64>) -> Value {
        Value::I64(a)
    }
}

impl From<ArrayD<bool>> for Value {
    fn from(a: ArrayD<bool>) -> Value {
        Value::Bool(a)
    }
}

/// True when `a` and `b` have the same dtype and shape and every pair of float elements satisfies
/// `|a - b| <= atol + rtol * |b|` (numpy's `isclose`: `b` is the reference), with NaN equal to NaN at the same position
/// and infinities required to match exactly. i64 and bool elements must be equal.
pub fn allclose(a: &Value, b: &Value, rtol: f64, atol: f64) -> bool {
    if a.dtype() != b.dtype() || a.shape() != b.shape() {
        return false;
    }
    let close = |x: f64, y: f64| {
        if x.is_nan() || y.is_nan() {
            x.is_nan() && y.is_nan()
        } else if x.is_infinite() || y.is_infinite() {
            x == y
        } else {
            (x - y).abs() <= atol + rtol * y.abs()
        }
    };
    match (a, b) {
        (Value::F32(x), Value::F32(y)) => x.iter().zip(y.iter()).all(|(&p, &q)| close(p as f64, q as f64)),
        (Value::F64(x), Value::F64(y)) => x.iter().zip(y.iter()).all(|(&p, &q)| close(p, q)),
        _ => a == b,
    }
}

// ----- running a graph --------------------------------------------------------------------------

/// Evaluates `g` on `inputs` (one value per [`Graph::inputs`], in order) and returns the values of
/// [`Graph::outputs`], in order.
///
/// Only the nodes the outputs depend on are evaluated, and each intermediate value is dropped once
/// its last user has run. Errors ([`Error::Interp`]) name the offending input, or the node by its
/// position in [`Graph::topo_order`] (`%n`, as in the printed form) and its op.
///
/// ```
/// use kiln_ir::interp::{run, Value};
/// use kiln_ir::{DType, Graph};
///
/// let mut g = Graph::new();
/// let x = g.input("x", DType::F64, [3]);
/// let y = g.mul(x, x).unwrap();
/// g.set_outputs(vec![y]);
///
/// let x_val = Value::from_f64(DType::F64, [3], &[1.0, -2.0, 3.0]).unwrap();
/// let out = run(&g, &[x_val]).unwrap();
/// assert_eq!(out[0].to_f64_vec(), vec![1.0, 4.0, 9.0]);
///
/// // Inputs are checked against the graph's declared types.
/// let wrong = Value::from_f64(DType::F32, [3], &[1.0, 2.0, 3.0]).unwrap();
/// let err = run(&g, &[wrong]).unwrap_err().to_string();
/// assert!(err.contains("'x'") && err.contains("f64[3]"), "{err}");
/// ```
pub fn run<V: Borrow<Value>>(g: &Graph, inputs: &[V]) -> Result<Vec<Value>> {
    let slots = execute(g, inputs, true)?;
    g.outputs()
        .iter()
        .enumerate()
        .map(|(k, o)| {
            slots[o.index()]
                .as_deref()
                .cloned()
                .ok_or_else(|| Error::Interp(format!("output {k} was not computed (interpreter bug)")))
        })
        .collect()
}

/// Like [`run`], but evaluates every node of the graph (dead ones too) and returns all their
/// values, for debugging. An error in a dead node is an error here.
pub fn run_all<V: Borrow<Value>>(g: &Graph, inputs: &[V]) -> Result<HashMap<NodeId, Value>> {
    let slots = execute(g, inputs, false)?;
    Ok(g.node_ids().filter_map(|id| Some((id, slots[id.index()].as_deref()?.clone()))).collect())
}

/// Evaluates one non-input node on its operand values and checks the result against the node's
/// declared dtype and shape. Useful for constant folding.
pub fn eval_node(node: &Node, operands: &[&Value]) -> Result<Value> {
    eval_checked(node, operands).map_err(|m| Error::Interp(format!("{}: {m}", node.op.name())))
}

/// Checks `inputs` against the graph's inputs.
fn check_inputs<V: Borrow<Value>>(g: &Graph, inputs: &[V]) -> Result<()> {
    if inputs.len() != g.inputs().len() {
        return Err(Error::Interp(format!(
            "the graph has {} input(s) but {} value(s) were given",
            g.inputs().len(),
            inputs.len()
        )));
    }
    for (k, (&id, v)) in g.inputs().iter().zip(inputs).enumerate() {
        let v: &Value = v.borrow();
        let node =
            g.try_node(id).ok_or_else(|| Error::Interp(format!("input {k} is not a node of the graph")))?;
        let name = g.input_name(id).unwrap_or("?");
        if v.dtype() != node.dtype || v.shape() != node.shape {
            return Err(Error::Interp(format!(
                "input '{name}' (#{k}) expects {}{}, got {}{}",
                node.dtype,
                node.shape,
                v.dtype(),
                v.shape()
            )));
        }
    }
    Ok(())
}

/// Evaluates the graph; returns a slot per node index. With `live_only`, dead nodes are skipped and
/// values are freed after their last use (outputs are kept).
fn execute<'a, V: Borrow<Value>>(
    g: &Graph,
    inputs: &'a [V],
    live_only: bool,
) -> Result<Vec<Option<Cow<'a, Value>>>> {
    check_inputs(g, inputs)?;
    for (k, &o) in g.outputs().iter().enumerate() {
        if !g.contains(o) {
            return Err(Error::Interp(format!("output {k} refers to a node that does not exist")));
        }
    }
    let order = g.topo_order()?;
    let bound = g.node_bound();
    let live = if live_only { g.live_mask() } else { vec![true; bound] };
    let input_pos: HashMap<NodeId, usize> = g.inputs().iter().enumerate().map(|(k, &id)| (id, k)).collect();

    // Remaining uses of each value by live nodes; outputs are pinned and never freed.
    let mut uses = vec![0usize; bound];
    let mut pinned = vec![!live_only; bound];
    for &id in order.iter().filter(|id| live[id.index()]) {
        for o in g.operands(id) {
            uses[o.index()] += 1;
        }
    }
    for &o in g.outputs() {
        pinned[o.index()] = true;
    }

    let mut slots: Vec<Option<Cow<'a, Value>>> = (0..bound).map(|_| None).collect();
    for (pos, &id) in order.iter().enumerate() {
        if !live[id.index()] {
            continue;
        }
        let node = g.node(id);
        let fail = |m: String| Error::Interp(format!("node %{pos} ({}): {m}", node.op.name()));
        let operands = g.operands(id);
        let value = if let Op::Input { name, .. } = &node.op {
            let k = input_pos
                .get(&id)
                .ok_or_else(|| fail(format!("input '{name}' is missing from the graph's input list")))?;
            Cow::Borrowed(inputs[*k].borrow())
        } else {
            let args = operands
                .iter()
                .map(|o| {
                    slots[o.index()]
                        .as_deref()
                        .ok_or_else(|| fail(format!("operand {} has no value (interpreter bug)", o.index())))
                })
                .collect::<Result<Vec<&Value>>>()?;
            Cow::Owned(eval_checked(node, &args).map_err(fail)?)
        };
        slots[id.index()] = Some(value);
        if live_only {
            for o in operands {
                uses[o.index()] -= 1;
                if uses[o.index()] == 0 && !pinned[o.index()] {
                    slots[o.index()] = None;
                }
            }
        }
    }
    Ok(slots)
}

// ----- one node ---------------------------------------------------------------------------------

fn eval_checked(node: &Node, args: &[&Value]) -> Result<Value, String> {
    let v = compute(&node.op, &node.shape, args)?.into_standard();
    if v.dtype() != node.dtype || v.shape() != node.shape {
        return Err(format!(
            "computed {}{} but the node is typed {}{} (an interpreter bug or an unverified graph)",
            v.dtype(),
            v.shape(),
            node.dtype,
            node.shape
        ));
    }
    Ok(v)
}

/// The one place per op: evaluates `op` (declared `shape`) on `args`.
fn compute(op: &Op, shape: &Shape, args: &[&Value]) -> Result<Value, String> {
    match op.arity() {
        Arity::Exactly(n) if args.len() != n => {
            return Err(format!("expects {n} operand(s), got {}", args.len()))
        }
        Arity::AtLeast(n) if args.len() < n => {
            return Err(format!("expects at least {n} operand(s), got {}", args.len()))
        }
        _ => {}
    }
    match op {
        Op::Input { name, .. } => Err(format!("input '{name}' has no value here")),
        Op::Constant(lit) => literal_value(lit, shape),
        Op::Unary(u) => unary(*u, args[0]),
        Op::Binary(b) => binary(*b, args[0], args[1]),
        Op::Compare(c) => compare(*c, args[0], args[1]),
        Op::Where => where_(args[0], args[1], args[2]),
        Op::Cast { to } => Ok(each_value!(args[0], a => cast(a, *to))),
        Op::Reduce { op, axes, keepdims } => reduce(*op, axes, *keepdims, args[0]),
        Op::MatMul => match (args[0], args[1]) {
            (Value::F32(a), Value::F32(b)) => {
                Ok(Value::F32(matmul(&a.mapv(f64::from), &b.mapv(f64::from))?.mapv(|c| c as f32)))
            }
            (Value::F64(a), Value::F64(b)) => Ok(Value::F64(matmul(a, b)?)),
            (a, b) => Err(not_defined(&[a, b])),
        },
        Op::Reshape { shape } => Ok(map_value!(args[0], a => reshape(a, shape)?)),
        Op::Transpose { perm } => Ok(map_value!(args[0], a => transpose(a, perm)?)),
        Op::Expand { shape } => Ok(map_value!(args[0], a => expand(a, shape)?)),
        Op::Slice { .. } => {
            let ranges = op.slice_ranges(&args[0].shape())?;
            Ok(map_value!(args[0], a => slice(a, &ranges)?))
        }
        Op::Concat { axis } => {
            let rank = args[0].shape().rank();
            let ax = normalize_axis(*axis, rank)
                .ok_or_else(|| format!("axis {axis} is out of range for rank {rank}"))?;
            Ok(map_value!(args[0], a => concat(a, args, ax)?))
        }
    }
}

fn not_defined(args: &[&Value]) -> String {
    let names: Vec<&str> = args.iter().map(|v| v.dtype().name()).collect();
    format!("is not defined for operands of dtype {}", names.join(", "))
}

fn literal_value(lit: &Literal, shape: &Shape) -> Result<Value, String> {
    if lit.len() != shape.numel() {
        return Err(format!("{} values given for shape {shape} ({} elements)", lit.len(), shape.numel()));
    }
    Ok(match lit {
        Literal::F32(v) => Value::F32(from_vec(&shape.0, v.clone())?),
        Literal::F64(v) => Value::F64(from_vec(&shape.0, v.clone())?),
        Literal::I64(v) => Value::I64(from_vec(&shape.0, v.clone())?),
        Literal::Bool(v) => Value::Bool(from_vec(&shape.0, v.clone())?),
    })
}

// ----- element types ----------------------------------------------------------------------------

/// What the interpreter needs of every element type: its `Value` variant and conversions.
trait Elem: Copy + PartialOrd + Debug + 'static {
    const DTYPE: DType;
    fn view_of(v: &Value) -> Option<&ArrayD<Self>>;
    fn cast_f32(self) -> f32;
    fn cast_f64(self) -> f64;
    /// Truncates toward zero, saturating; NaN → 0 (Rust's `as`).
    fn cast_i64(self) -> i64;
    fn cast_bool(self) -> bool;
}

macro_rules! impl_elem_num {
    ($t:ty, $variant:ident) => {
        impl Elem for $t {
            const DTYPE: DType = DType::$variant;
            fn view_of(v: &Value) -> Option<&ArrayD<Self>> {
                match v {
                    Value::$variant(a) => Some(a),
                    _ => None,
                }
            }
            fn cast_f32(self) -> f32 {
                self as f32
            }
            fn cast_f64(self) -> f64 {
                self as f64
            }
            fn cast_i64(self) -> i64 {
                self as i64
            }
            fn cast_bool(self) -> bool {
                self != (0 as $t)
            }
        }
    };
}

impl_elem_num!(f32, F32);
impl_elem_num!(f64, F64);
impl_elem_num!(i64, I64);

impl Elem for bool {
    const DTYPE: DType = DType::Bool;
    fn view_of(v: &Value) -> Option<&ArrayD<Self>> {
        match v {
            Value::Bool(a) => Some(a),
            _ => None,
        }
    }
    fn cast_f32(self) -> f32 {
        self as u8 as f32
    }
    fn cast_f64(self) -> f64 {
        self as u8 as f64
    }
    fn cast_i64(self) -> i64 {
        self as i64
    }
    fn cast_bool(self) -> bool {
        self
    }
}

/// The float element types, with the few functions `num_traits::Float` lacks.
trait Float: num_traits::Float + LinalgScalar + Elem {
    fn erf(self) -> Self;
    fn of(v: f64) -> Self;
}

impl Float for f32 {
    fn erf(self) -> f32 {
        libm::erff(self)
    }
    fn of(v: f64) -> f32 {
        v as f32
    }
}

impl Float for f64 {
    fn erf(self) -> f64 {
        libm::erf(self)
    }
    fn of(v: f64) -> f64 {
        v
    }
}

/// NaN-propagating maximum (ONNX `Max`, PyTorch `maximum`).
fn maximum<F: Float>(a: F, b: F) -> F {
    if a.is_nan() || b.is_nan() {
        F::nan()
    } else if a >= b {
        a
    } else {
        b
    }
}

/// NaN-propagating minimum.
fn minimum<F: Float>(a: F, b: F) -> F {
    if a.is_nan() || b.is_nan() {
        F::nan()
    } else if a <= b {
        a
    } else {
        b
    }
}

// ----- elementwise ------------------------------------------------------------------------------

fn float_unary<F: Float>(op: UnaryOp) -> fn(F) -> F {
    match op {
        UnaryOp::Neg => |x| -x,
        UnaryOp::Abs => |x| x.abs(),
        UnaryOp::Exp => |x| x.exp(),
        UnaryOp::Log => |x| x.ln(),
        UnaryOp::Sqrt => |x| x.sqrt(),
        UnaryOp::Reciprocal => |x| F::one() / x,
        UnaryOp::Tanh => |x| x.tanh(),
        UnaryOp::Sigmoid => |x| {
            if x >= F::zero() {
                F::one() / (F::one() + (-x).exp())
            } else {
                let e = x.exp();
                e / (F::one() + e)
            }
        },
        UnaryOp::Relu => |x| if x < F::zero() { F::zero() } else { x },
        UnaryOp::Erf => |x| Float::erf(x),
        UnaryOp::Sin => |x| x.sin(),
        UnaryOp::Cos => |x| x.cos(),
        UnaryOp::Sign => |x| {
            if x > F::zero() {
                F::one()
            } else if x < F::zero() {
                -F::one()
            } else {
                x * F::zero() // NaN stays NaN, ±0 stays 0
            }
        },
    }
}

fn int_unary(op: UnaryOp) -> Option<fn(i64) -> i64> {
    match op {
        UnaryOp::Neg => Some(i64::wrapping_neg),
        UnaryOp::Abs => Some(i64::wrapping_abs),
        UnaryOp::Relu => Some(|x| x.max(0)),
        UnaryOp::Sign => Some(i64::signum),
        _ => None,
    }
}

fn unary(op: UnaryOp, x: &Value) -> Result<Value, String> {
    match x {
        Value::F32(a) => Ok(Value::F32(a.mapv(float_unary(op)))),
        Value::F64(a) => Ok(Value::F64(a.mapv(float_unary(op)))),
        Value::I64(a) => int_unary(op).map(|f| Value::I64(a.mapv(f))).ok_or_else(|| not_defined(&[x])),
        Value::Bool(_) => Err(not_defined(&[x])),
    }
}

fn float_binary<F: Float>(op: BinaryOp) -> fn(F, F) -> F {
    match op {
        BinaryOp::Add => |a, b| a + b,
        BinaryOp::Sub => |a, b| a - b,
        BinaryOp::Mul => |a, b| a * b,
        BinaryOp::Div => |a, b| a / b,
        BinaryOp::Pow => |a, b| a.powf(b),
        BinaryOp::Max => maximum,
        BinaryOp::Min => minimum,
    }
}

fn int_binary(op: BinaryOp, a: i64, b: i64) -> Result<i64, String> {
    match op {
        BinaryOp::Add => Ok(a.wrapping_add(b)),
        BinaryOp::Sub => Ok(a.wrapping_sub(b)),
        BinaryOp::Mul => Ok(a.wrapping_mul(b)),
        BinaryOp::Div if b == 0 => Err("integer division by zero".into()),
        BinaryOp::Div => Ok(a.wrapping_div(b)),
        BinaryOp::Pow => int_pow(a, b),
        BinaryOp::Max => Ok(a.max(b)),
        BinaryOp::Min => Ok(a.min(b)),
    }
}

/// `a^e` for `e >= 0`, wrapping on overflow (by repeated squaring).
fn int_pow(a: i64, e: i64) -> Result<i64, String> {
    if e < 0 {
        return Err(format!("integer power with a negative exponent ({e}) is not defined"));
    }
    let (mut base, mut e, mut acc) = (a, e as u64, 1i64);
    while e > 0 {
        if e & 1 == 1 {
            acc = acc.wrapping_mul(base);
        }
        base = base.wrapping_mul(base);
        e >>= 1;
    }
    Ok(acc)
}

fn binary(op: BinaryOp, a: &Value, b: &Value) -> Result<Value, String> {
    match (a, b) {
        (Value::F32(x), Value::F32(y)) => {
            let f = float_binary(op);
            Ok(Value::F32(zip2(x, y, |p, q| Ok(f(p, q)))?))
        }
        (Value::F64(x), Value::F64(y)) => {
            let f = float_binary(op);
            Ok(Value::F64(zip2(x, y, |p, q| Ok(f(p, q)))?))
        }
        (Value::I64(x), Value::I64(y)) => Ok(Value::I64(zip2(x, y, |p, q| int_binary(op, p, q))?)),
        _ => Err(not_defined(&[a, b])),
    }
}

fn compare_fn<T: PartialOrd>(op: CompareOp) -> fn(T, T) -> bool {
    match op {
        CompareOp::Equal => |a, b| a == b,
        CompareOp::Greater => |a, b| a > b,
        CompareOp::Less => |a, b| a < b,
    }
}

fn compare(op: CompareOp, a: &Value, b: &Value) -> Result<Value, String> {
    fn go<T: Elem>(op: CompareOp, x: &ArrayD<T>, y: &ArrayD<T>) -> Result<Value, String> {
        let f = compare_fn::<T>(op);
        Ok(Value::Bool(zip2(x, y, |p, q| Ok(f(p, q)))?))
    }
    match (a, b) {
        (Value::F32(x), Value::F32(y)) => go(op, x, y),
        (Value::F64(x), Value::F64(y)) => go(op, x, y),
        (Value::I64(x), Value::I64(y)) => go(op, x, y),
        (Value::Bool(x), Value::Bool(y)) => go(op, x, y),
        _ => Err(not_defined(&[a, b])),
    }
}

fn where_(c: &Value, x: &Value, y: &Value) -> Result<Value, String> {
    let Value::Bool(c) = c else {
        return Err(format!("condition must be bool, got {}", c.dtype()));
    };
    match (x, y) {
        (Value::F32(x), Value::F32(y)) => Ok(Value::F32(select(c, x, y)?)),
        (Value::F64(x), Value::F64(y)) => Ok(Value::F64(select(c, x, y)?)),
        (Value::I64(x), Value::I64(y)) => Ok(Value::I64(select(c, x, y)?)),
        (Value::Bool(x), Value::Bool(y)) => Ok(Value::Bool(select(c, x, y)?)),
        _ => Err(format!("branch dtypes differ: {} and {}", x.dtype(), y.dtype())),
    }
}

fn cast<T: Elem>(a: &ArrayD<T>, to: DType) -> Value {
    match to {
        DType::F32 => Value::F32(a.mapv(T::cast_f32)),
        DType::F64 => Value::F64(a.mapv(T::cast_f64)),
        DType::I64 => Value::I64(a.mapv(T::cast_i64)),
        DType::Bool => Value::Bool(a.mapv(T::cast_bool)),
    }
}

// ----- broadcasting helpers ---------------------------------------------------------------------

fn shape_of<T>(a: &ArrayD<T>) -> Shape {
    Shape::from(a.shape().to_vec())
}

fn from_vec<T>(shape: &[usize], data: Vec<T>) -> Result<ArrayD<T>, String> {
    ArrayD::from_shape_vec(IxDyn(shape), data).map_err(|e| format!("cannot shape data as {shape:?}: {e}"))
}

fn broadcast_err(shapes: &[Shape]) -> String {
    let s: Vec<String> = shapes.iter().map(|s| s.to_string()).collect();
    format!("shapes {} cannot be broadcast together", s.join(" and "))
}

/// `f` applied to numpy-broadcast pairs of elements, in row-major order of the result.
fn zip2<A: Copy, B: Copy, C>(
    a: &ArrayD<A>,
    b: &ArrayD<B>,
    mut f: impl FnMut(A, B) -> Result<C, String>,
) -> Result<ArrayD<C>, String> {
    let (sa, sb) = (shape_of(a), shape_of(b));
    let out = broadcast_shapes(&sa, &sb).ok_or_else(|| broadcast_err(&[sa, sb]))?;
    let av = a.broadcast(IxDyn(&out.0)).ok_or("broadcast failed")?;
    let bv = b.broadcast(IxDyn(&out.0)).ok_or("broadcast failed")?;
    let data = av.iter().zip(bv.iter()).map(|(&x, &y)| f(x, y)).collect::<Result<Vec<C>, String>>()?;
    from_vec(&out.0, data)
}

/// `Where`: `x` where `c` else `y`, all three broadcast.
fn select<T: Copy>(c: &ArrayD<bool>, x: &ArrayD<T>, y: &ArrayD<T>) -> Result<ArrayD<T>, String> {
    let (sc, sx, sy) = (shape_of(c), shape_of(x), shape_of(y));
    let out = broadcast_shapes(&sx, &sy)
        .and_then(|s| broadcast_shapes(&sc, &s))
        .ok_or_else(|| broadcast_err(&[sc, sx, sy]))?;
    let cv = c.broadcast(IxDyn(&out.0)).ok_or("broadcast failed")?;
    let xv = x.broadcast(IxDyn(&out.0)).ok_or("broadcast failed")?;
    let yv = y.broadcast(IxDyn(&out.0)).ok_or("broadcast failed")?;
    let data = cv.iter().zip(xv.iter()).zip(yv.iter()).map(|((&c, &x), &y)| if c { x } else { y }).collect();
    from_vec(&out.0, data)
}

// ----- reductions -------------------------------------------------------------------------------

fn reduce(op: ReduceOp, axes: &[i64], keepdims: bool, x: &Value) -> Result<Value, String> {
    let shape = x.shape();
    let axes = reduce_axes(axes, shape.rank())?;
    let out = reduced_shape(&shape, &axes, keepdims);
    let count: usize = axes.iter().map(|&a| shape.0[a]).product();
    if op == ReduceOp::Max && count == 0 {
        return Err(format!("cannot reduce over an empty axis (input shape {shape}, axes {axes:?})"));
    }
    fn mean<F: Float>(a: &ArrayD<F>, axes: &[usize], out: &Shape, count: usize) -> Result<ArrayD<F>, String> {
        let n = F::of(count as f64);
        Ok(fold(a, axes, out, F::zero(), |s, v| s + v)?.mapv(|s| s / n))
    }
    match (op, x) {
        (ReduceOp::Sum, Value::F32(a)) => {
            Ok(Value::F32(fold(&a.mapv(f64::from), &axes, &out, 0.0, |s, v| s + v)?.mapv(|s| s as f32)))
        }
        (ReduceOp::Sum, Value::F64(a)) => Ok(Value::F64(fold(a, &axes, &out, 0.0, |s, v| s + v)?)),
        (ReduceOp::Sum, Value::I64(a)) => Ok(Value::I64(fold(a, &axes, &out, 0, i64::wrapping_add)?)),
        (ReduceOp::Max, Value::F32(a)) => Ok(Value::F32(fold(a, &axes, &out, f32::NEG_INFINITY, maximum)?)),
        (ReduceOp::Max, Value::F64(a)) => Ok(Value::F64(fold(a, &axes, &out, f64::NEG_INFINITY, maximum)?)),
        (ReduceOp::Max, Value::I64(a)) => Ok(Value::I64(fold(a, &axes, &out, i64::MIN, i64::max)?)),
        (ReduceOp::Mean, Value::F32(a)) => {
            Ok(Value::F32(mean(&a.mapv(f64::from), &axes, &out, count)?.mapv(|m| m as f32)))
        }
        (ReduceOp::Mean, Value::F64(a)) => Ok(Value::F64(mean(a, &axes, &out, count)?)),
        _ => Err(not_defined(&[x])),
    }
}

/// Folds `a` sequentially over each of `axes` (normalised, sorted) and shapes the result `out`.
fn fold<T: Copy>(
    a: &ArrayD<T>,
    axes: &[usize],
    out: &Shape,
    init: T,
    f: impl Fn(T, T) -> T,
) -> Result<ArrayD<T>, String> {
    let mut r = a.clone();
    for &ax in axes.iter().rev() {
        r = r.fold_axis(Axis(ax), init, |&acc, &v| f(acc, v));
    }
    reshape(&r, &out.0)
}

// ----- matmul -----------------------------------------------------------------------------------

/// numpy `matmul`: 1-D operands are promoted (and the promoted axis removed from the result),
/// batch axes broadcast; each batch is one 2-D `dot`.
fn matmul<F: LinalgScalar>(a: &ArrayD<F>, b: &ArrayD<F>) -> Result<ArrayD<F>, String> {
    let (sa, sb) = (shape_of(a), shape_of(b));
    let out = matmul_shape(&sa, &sb)?;
    let a2 = if sa.rank() == 1 { vec![1, sa.0[0]] } else { sa.0.to_vec() };
    let b2 = if sb.rank() == 1 { vec![sb.0[0], 1] } else { sb.0.to_vec() };
    let (ra, rb) = (a2.len(), b2.len());
    let (m, k, n) = (a2[ra - 2], a2[ra - 1], b2[rb - 1]);
    let (ba, bb) = (Shape::from(a2[..ra - 2].to_vec()), Shape::from(b2[..rb - 2].to_vec()));
    let batch = broadcast_shapes(&ba, &bb).ok_or_else(|| broadcast_err(&[ba, bb]))?;
    let nb = batch.numel();
    // Each operand broadcast to [batch.., rows, cols], then flattened to [nb, rows, cols].
    let to3 = |x: &ArrayD<F>, promoted: &[usize], rows: usize, cols: usize| -> Result<Array3<F>, String> {
        let x = reshape(x, promoted)?;
        let full: Vec<usize> = batch.0.iter().copied().chain([rows, cols]).collect();
        let v = x.broadcast(IxDyn(&full)).ok_or("broadcast failed")?;
        Array3::from_shape_vec((nb, rows, cols), v.iter().copied().collect()).map_err(|e| e.to_string())
    };
    let (a3, b3) = (to3(a, &a2, m, k)?, to3(b, &b2, k, n)?);
    let mut data = Vec::with_capacity(nb * m * n);
    for i in 0..nb {
        let c = a3.index_axis(Axis(0), i).dot(&b3.index_axis(Axis(0), i));
        data.extend(c.iter().copied());
    }
    from_vec(&out.0, data)
}

// ----- data movement ----------------------------------------------------------------------------

/// Same elements in row-major order, new shape.
fn reshape<T: Copy>(a: &ArrayD<T>, shape: &[usize]) -> Result<ArrayD<T>, String> {
    let n: usize = shape.iter().product();
    if n != a.len() {
        return Err(format!("cannot reshape {} elements to {}", a.len(), Shape::from(shape.to_vec())));
    }
    from_vec(shape, a.iter().copied().collect())
}

fn transpose<T: Copy>(a: &ArrayD<T>, perm: &[usize]) -> Result<ArrayD<T>, String> {
    let mut seen = vec![false; a.ndim()];
    let valid = perm.len() == a.ndim()
        && perm.iter().all(|&p| p < a.ndim() && !std::mem::replace(&mut seen[p], true));
    if !valid {
        return Err(format!("perm {perm:?} is not a permutation of 0..{}", a.ndim()));
    }
    Ok(a.view().permuted_axes(IxDyn(perm)).as_standard_layout().into_owned())
}

fn expand<T: Copy>(a: &ArrayD<T>, shape: &[usize]) -> Result<ArrayD<T>, String> {
    let v = a.broadcast(IxDyn(shape)).ok_or_else(|| {
        format!("shape {} cannot be expanded to {}", shape_of(a), Shape::from(shape.to_vec()))
    })?;
    from_vec(shape, v.iter().copied().collect())
}

/// Output element `idx` is input element `start + idx * step` on every axis.
fn slice<T: Copy>(a: &ArrayD<T>, ranges: &[SliceRange]) -> Result<ArrayD<T>, String> {
    if ranges.len() != a.ndim() {
        return Err(format!("{} slice ranges for rank {}", ranges.len(), a.ndim()));
    }
    for (ax, r) in ranges.iter().enumerate() {
        if r.len == 0 {
            continue;
        }
        let last = (r.len as i64 - 1).checked_mul(r.step).and_then(|d| d.checked_add(r.start as i64));
        let in_bounds = |i: i64| (0..a.shape()[ax] as i64).contains(&i);
        if !in_bounds(r.start as i64) || !last.is_some_and(in_bounds) {
            return Err(format!("slice range {r:?} is out of bounds for axis {ax} of {}", shape_of(a)));
        }
    }
    let lens: Vec<usize> = ranges.iter().map(|r| r.len).collect();
    Ok(ArrayD::from_shape_fn(IxDyn(&lens), |idx| {
        let src: Vec<usize> = ranges
            .iter()
            .enumerate()
            .map(|(k, r)| (r.start as i64 + idx[k] as i64 * r.step) as usize)
            .collect();
        a[IxDyn(&src)]
    }))
}

/// Concatenation of `args` (all of `like`'s dtype) along normalised axis `ax`.
fn concat<T: Elem>(_like: &ArrayD<T>, args: &[&Value], ax: usize) -> Result<ArrayD<T>, String> {
    let views = args
        .iter()
        .map(|v| {
            T::view_of(v)
                .map(|a| a.view())
                .ok_or_else(|| format!("operand dtypes differ: {} and {}", T::DTYPE, v.dtype()))
        })
        .collect::<Result<Vec<_>, String>>()?;
    ndarray::concatenate(Axis(ax), &views).map_err(|e| {
        let shapes: Vec<String> = args.iter().map(|v| v.shape().to_string()).collect();
        format!("cannot concatenate shapes {} along axis {ax}: {e}", shapes.join(", "))
    })
}
