//! The serde JSON form of a graph: [`Graph::to_json`] and [`Graph::from_json`].
//!
//! ```json
//! {
//!   "version": 1,
//!   "nodes": [
//!     { "op": { "Input": { "name": "x", "param": false } }, "dtype": "f32", "shape": [3] },
//!     { "op": { "Constant": { "dtype": "f32", "data": ["2.0"] } }, "dtype": "f32", "shape": [] },
//!     { "op": { "Binary": "Mul" }, "operands": [0, 1], "dtype": "f32", "shape": [3] }
//!   ],
//!   "inputs": [0],
//!   "outputs": [2]
//! }
//! ```
//!
//! Nodes are listed in [`Graph::topo_order`] order and refer to their operands (and the graph to
//! its inputs and outputs) by position in `nodes`. `op` is the serde form of [`Op`], except that
//! the elements of a float `Constant` are JSON *strings* in Rust's shortest round-trip form
//! (`"0.1"`, `"inf"`, `"NaN"`): JSON has no infinities or NaN, and serde_json's default number
//! parser is not exact for every f64, while these strings read back bit for bit (NaN payloads
//! aside, as in the text form). The reader also accepts plain JSON numbers there.

use crate::dtype::{DType, Shape};
use crate::error::{Error, Result};
use crate::graph::{Graph, Node, NodeId};
use crate::literal::Literal;
use crate::op::Op;
use crate::text::{check_dims, check_op_limits, type_text};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The current version of the JSON form.
pub const JSON_VERSION: u32 = 1;

/// The serialized graph: nodes in topological order, operands by index into `nodes`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphJson {
    /// Format version; [`JSON_VERSION`].
    #[serde(default = "default_version")]
    pub version: u32,
    /// Every node, each defined after its operands.
    pub nodes: Vec<NodeJson>,
    /// The graph inputs in order (indices of `Input` nodes).
    pub inputs: Vec<usize>,
    /// The graph outputs in order.
    pub outputs: Vec<usize>,
}

fn default_version() -> u32 {
    JSON_VERSION
}

/// One serialized node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeJson {
    /// The serde form of [`Op`] (float constants as strings, see the [module docs](crate::json)).
    pub op: Value,
    /// Operand node indices, in operand order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operands: Vec<usize>,
    /// The declared result dtype.
    pub dtype: DType,
    /// The declared result shape.
    pub shape: Shape,
}

impl Graph {
    /// The serializable mirror of this graph (what [`Graph::to_json`] writes).
    ///
    /// A graph with a cycle has no topological order; its nodes are then listed in index order
    /// and the result does not read back.
    pub fn to_json_value(&self) -> GraphJson {
        let order = self.topo_order().unwrap_or_else(|_| self.node_ids().collect());
        let mut index = vec![usize::MAX; self.node_bound()];
        for (i, &id) in order.iter().enumerate() {
            index[id.index()] = i;
        }
        let at = |id: NodeId| index.get(id.index()).copied().unwrap_or(usize::MAX);
        let nodes = order
            .iter()
            .map(|&id| {
                let n = self.node(id);
                NodeJson {
                    op: op_to_value(&n.op),
                    operands: self.operands(id).into_iter().map(at).collect(),
                    dtype: n.dtype,
                    shape: n.shape.clone(),
                }
            })
            .collect();
        GraphJson {
            version: JSON_VERSION,
            nodes,
            inputs: self.inputs().iter().map(|&i| at(i)).collect(),
            outputs: self.outputs().iter().map(|&o| at(o)).collect(),
        }
    }

    /// The graph as pretty-printed, deterministic JSON (see the [module docs](crate::json)).
    ///
    /// ```
    /// use kiln_ir::{DType, Graph};
    /// let mut g = Graph::new();
    /// let x = g.input("x", DType::F64, [2]);
    /// let y = g.neg(x).unwrap();
    /// g.set_outputs(vec![y]);
    /// let back = Graph::from_json(&g.to_json()).unwrap();
    /// assert_eq!(back.to_text(), g.to_text());
    /// ```
    pub fn to_json(&self) -> String {
        // Serializing a tree of strings, numbers and maps cannot fail.
        serde_json::to_string_pretty(&self.to_json_value()).unwrap_or_default()
    }

    /// Reads the JSON form. Checks that operands refer to earlier nodes, that `inputs` lists each
    /// `Input` node exactly once, that outputs exist and that each declared type is what shape
    /// inference gives. Errors are [`Error::Json`] naming the node (`node 3: ...`) or, for
    /// malformed JSON, serde_json's line and column.
    pub fn from_json(src: &str) -> Result<Graph> {
        let doc: GraphJson = serde_json::from_str(src).map_err(|e| Error::Json(e.to_string()))?;
        Graph::from_json_value(&doc)
    }

    /// Builds a graph from its serializable mirror, with the checks of [`Graph::from_json`].
    pub fn from_json_value(doc: &GraphJson) -> Result<Graph> {
        let jerr = |msg: String| Error::Json(msg);
        if doc.version != JSON_VERSION {
            return Err(jerr(format!("unsupported version {} (expected {JSON_VERSION})", doc.version)));
        }
        let n = doc.nodes.len();
        let mut ops = Vec::with_capacity(n);
        for (i, node) in doc.nodes.iter().enumerate() {
            let op = op_from_value(&node.op).map_err(|m| jerr(format!("node {i}: op: {m}")))?;
            check_dims(node.shape.dims()).map_err(|m| jerr(format!("node {i}: shape: {m}")))?;
            ops.push(op);
        }
        // Inputs: each an Input node, listed once; every Input node listed.
        let mut listed = vec![false; n];
        for (k, &i) in doc.inputs.iter().enumerate() {
            if i >= n {
                return Err(jerr(format!("inputs[{k}]: node {i} does not exist ({n} nodes)")));
            }
            if !matches!(ops[i], Op::Input { .. }) {
                return Err(jerr(format!("inputs[{k}]: node {i} is a {}, not an Input", ops[i].name())));
            }
            if std::mem::replace(&mut listed[i], true) {
                return Err(jerr(format!("inputs[{k}]: node {i} is listed twice")));
            }
        }
        for (i, op) in ops.iter().enumerate() {
            if matches!(op, Op::Input { .. }) && !listed[i] {
                return Err(jerr(format!("node {i}: an Input missing from the inputs list")));
            }
        }
        let mut g = Graph::new();
        let mut ids: Vec<Option<NodeId>> = vec![None; n];
        // Inputs first, in input order, so that the graph's input list is `inputs`.
        for &i in &doc.inputs {
            let node = &doc.nodes[i];
            if !node.operands.is_empty() {
                return Err(jerr(format!("node {i}: Input takes no operands")));
            }
            let Op::Input { name, param } = &ops[i] else { continue };
            let (name, d, s) = (name.clone(), node.dtype, node.shape.clone());
            ids[i] = Some(if *param { g.param(name, d, s) } else { g.input(name, d, s) });
        }
        for (i, (node, op)) in doc.nodes.iter().zip(ops).enumerate() {
            let op_name = op.name();
            let at = |msg: String| jerr(format!("node {i} ({op_name}): {msg}"));
            match op {
                Op::Input { .. } => {}
                Op::Constant(lit) => {
                    if !node.operands.is_empty() {
                        return Err(at("takes no operands".into()));
                    }
                    if lit.dtype() != node.dtype {
                        return Err(at(format!("holds {} values but is typed {}", lit.dtype(), node.dtype)));
                    }
                    let id = g.constant(lit, node.shape.clone()).map_err(|e| at(e.to_string()))?;
                    ids[i] = Some(id);
                }
                op => {
                    let mut operands = Vec::with_capacity(node.operands.len());
                    for (k, &o) in node.operands.iter().enumerate() {
                        match ids.get(o).copied().flatten() {
                            Some(id) if o < i => operands.push(id),
                            _ => {
                                return Err(at(format!(
                                    "operand {k} refers to node {o}, which is not defined before it"
                                )))
                            }
                        }
                    }
                    let types: Vec<(DType, Shape)> = operands
                        .iter()
                        .map(|&o| {
                            let n = g.node(o);
                            (n.dtype, n.shape.clone())
                        })
                        .collect();
                    let shapes: Vec<&Shape> = types.iter().map(|(_, s)| s).collect();
                    check_op_limits(&op, &shapes).map_err(&at)?;
                    let refs: Vec<(DType, &Shape)> = types.iter().map(|(d, s)| (*d, s)).collect();
                    let (d, s) = op.infer(&refs).map_err(|e| at(e.to_string()))?;
                    if d != node.dtype || s != node.shape {
                        return Err(at(format!(
                            "is typed {} but its operands give {}",
                            type_text(node.dtype, &node.shape),
                            type_text(d, &s)
                        )));
                    }
                    ids[i] = Some(g.add_typed(Node { op, dtype: d, shape: s }, &operands));
                }
            }
        }
        let mut outputs = Vec::with_capacity(doc.outputs.len());
        for (k, &o) in doc.outputs.iter().enumerate() {
            let id = ids
                .get(o)
                .copied()
                .flatten()
                .ok_or_else(|| jerr(format!("outputs[{k}]: node {o} does not exist ({n} nodes)")))?;
            outputs.push(id);
        }
        g.set_outputs(outputs);
        Ok(g)
    }
}

/// The serde form of an op, with float constant elements as strings.
fn op_to_value(op: &Op) -> Value {
    match op {
        Op::Constant(lit) => {
            let strings = |v: Vec<String>| Value::Array(v.into_iter().map(Value::String).collect());
            let data = match lit {
                Literal::F32(v) => strings(v.iter().map(|x| format!("{x:?}")).collect()),
                Literal::F64(v) => strings(v.iter().map(|x| format!("{x:?}")).collect()),
                Literal::I64(v) => Value::Array(v.iter().map(|&x| Value::from(x)).collect()),
                Literal::Bool(v) => Value::Array(v.iter().map(|&x| Value::Bool(x)).collect()),
            };
            let mut body = serde_json::Map::new();
            body.insert("dtype".into(), Value::String(lit.dtype().name().into()));
            body.insert("data".into(), data);
            let mut outer = serde_json::Map::new();
            outer.insert("Constant".into(), Value::Object(body));
            Value::Object(outer)
        }
        op => serde_json::to_value(op).unwrap_or(Value::Null),
    }
}

/// Reads an op, accepting float constant elements as strings or numbers.
fn op_from_value(v: &Value) -> Result<Op, String> {
    let constant = v.as_object().filter(|m| m.len() == 1).and_then(|m| m.get("Constant"));
    let Some(body) = constant else {
        return serde_json::from_value::<Op>(v.clone()).map_err(|e| e.to_string());
    };
    let body = body.as_object().ok_or("Constant: expected an object with \"dtype\" and \"data\"")?;
    if let Some(k) = body.keys().find(|k| *k != "dtype" && *k != "data") {
        return Err(format!("Constant: unknown field `{k}`, expected `dtype` or `data`"));
    }
    let dtype = body.get("dtype").ok_or("Constant: missing field `dtype`")?;
    let dtype: DType = serde_json::from_value(dtype.clone()).map_err(|e| format!("Constant: dtype: {e}"))?;
    let data = body.get("data").ok_or("Constant: missing field `data`")?;
    let data = data.as_array().ok_or("Constant: data: expected an array")?;
    let bad = |i: usize, x: &Value| format!("Constant: data[{i}]: expected {dtype} value, found {x}");
    Ok(Op::Constant(match dtype {
        DType::F32 | DType::F64 => {
            let mut out = Vec::with_capacity(data.len());
            for (i, x) in data.iter().enumerate() {
                let v = match x {
                    Value::Number(n) => n.as_f64(),
                    Value::String(s) => match dtype {
                        DType::F32 => s.parse::<f32>().ok().map(|f| f as f64),
                        _ => s.parse::<f64>().ok(),
                    },
                    _ => None,
                };
                out.push(v.ok_or_else(|| bad(i, x))?);
            }
            if dtype == DType::F32 {
                // Strings were parsed as f32 directly, so this narrowing is exact for them.
                Literal::F32(out.into_iter().map(|x| x as f32).collect())
            } else {
                Literal::F64(out)
            }
        }
        DType::I64 => Literal::I64(
            data.iter()
                .enumerate()
                .map(|(i, x)| x.as_i64().ok_or_else(|| bad(i, x)))
                .collect::<Result<_, _>>()?,
        ),
        DType::Bool => Literal::Bool(
            data.iter()
                .enumerate()
                .map(|(i, x)| x.as_bool().ok_or_else(|| bad(i, x)))
                .collect::<Result<_, _>>()?,
        ),
    }))
}
