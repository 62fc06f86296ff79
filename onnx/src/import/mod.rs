//! ONNX → kiln IR: a `ModelProto`'s graph becomes a [`Graph`] of kiln primitives.
//!
//! - Graph inputs (those that are not initializers) become `Input` nodes, in order.
//! - Float initializers become parameters (`Input { param: true }`) whose values are returned
//!   beside the graph, so they can be trained; integer and bool initializers (shapes, axes,
//!   masks) become `Constant`s, because ops such as Reshape need their values at import time.
//! - Every node is lowered to primitives by [`ops::lower`]; composites (Gemm, Softmax,
//!   LayerNormalization, Gelu, ...) become the same decompositions `kiln_ir::composite` builds.
//! - Values computable at import time (constants and what is computed only from them, e.g. a
//!   `Shape → Slice → Concat` chain feeding a Reshape) are evaluated with the reference
//!   interpreter so that ops needing constant operands can read them.
//! - Outputs keep the model's order; their declared types are checked against kiln's inference.

mod attrs;
mod ops;

pub use ops::SUPPORTED_OPS;

use crate::error::{Error, Result};
use crate::proto::{type_proto, ModelProto, NodeProto, ValueInfoProto};
use crate::tensor::{dtype_of, to_value};
use kiln_ir::{DType, Graph, Literal, NodeId, Op, Shape, Value};
use prost::Message;
use std::collections::HashMap;
use std::path::Path;

/// Options for [`import_bytes`] / [`import_model`].
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// Graph inputs to replace by constants with these values (e.g. a Reshape's shape input,
    /// which kiln needs at import time because its shapes are static).
    pub bind: HashMap<String, Value>,
    /// Concrete shapes for graph inputs declared with symbolic dimensions (`batch`, `N`, ...).
    pub shapes: HashMap<String, Vec<usize>>,
}

/// A model imported into kiln's IR.
#[derive(Clone, Debug)]
pub struct Imported {
    /// The graph: inputs first (the model's inputs in order, then one parameter per float
    /// initializer), outputs in the model's order.
    pub graph: Graph,
    /// The value of every parameter input, by name, in the order of the graph's parameters.
    pub initializers: Vec<(String, Value)>,
    /// The model's output names, one per graph output.
    pub output_names: Vec<String>,
    /// The version of the default (`ai.onnx`) opset the model was written for.
    pub opset: i64,
}

/// Imports the `.onnx` file at `path`. Errors name the file, and the node when there is one.
///
/// ```no_run
/// let m = kiln_onnx::import_file("model.onnx").unwrap();
/// println!("{}", m.graph.to_text());
/// for (name, value) in &m.initializers {
///     println!("{name}: {:?}", value.shape());
/// }
/// ```
pub fn import_file(path: impl AsRef<Path>) -> Result<Imported> {
    import_file_with(path, &ImportOptions::default())
}

/// [`import_file`] with options.
pub fn import_file_with(path: impl AsRef<Path>, opts: &ImportOptions) -> Result<Imported> {
    let path = path.as_ref();
    let bytes =
        std::fs::read(path).map_err(|e| Error::model(format!("cannot read: {e}")).in_file(path.display()))?;
    import_bytes(&bytes, opts).map_err(|e| e.in_file(path.display()))
}

/// Decodes a serialized `ModelProto`. Truncated or corrupt bytes give an error, never a panic.
pub fn decode_model(bytes: &[u8]) -> Result<ModelProto> {
    ModelProto::decode(bytes).map_err(|e| Error::model(format!("not a valid ONNX model (protobuf: {e})")))
}

/// Imports a serialized `ModelProto`.
pub fn import_bytes(bytes: &[u8], opts: &ImportOptions) -> Result<Imported> {
    import_model(&decode_model(bytes)?, opts)
}

/// The opset version of the default domain.
fn default_opset(m: &ModelProto) -> Result<i64> {
    m.opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .ok_or_else(|| Error::model("the model imports no version of the default ONNX opset"))
}

/// Imports a decoded model.
pub fn import_model(m: &ModelProto, opts: &ImportOptions) -> Result<Imported> {
    let opset = default_opset(m)?;
    let gp = m.graph.as_ref().ok_or_else(|| Error::model("the model has no graph"))?;
    let mut cx = Cx { g: Graph::new(), env: HashMap::new(), consts: HashMap::new(), opset };

    let init_names: std::collections::HashSet<&str> =
        gp.initializer.iter().map(|t| t.name.as_str()).collect();
    for vi in gp.input.iter().filter(|vi| !init_names.contains(vi.name.as_str())) {
        let what = format!("input '{}'", vi.name);
        if let Some(v) = opts.bind.get(&vi.name) {
            let id = cx.constant(v).map_err(|m| Error::at(&what, m))?;
            cx.define(&vi.name, id).map_err(|m| Error::at(&what, m))?;
            continue;
        }
        let (dtype, shape) = value_type(vi, opts.shapes.get(&vi.name)).map_err(|m| Error::at(&what, m))?;
        let id = cx.g.input(vi.name.clone(), dtype, shape);
        cx.define(&vi.name, id).map_err(|m| Error::at(&what, m))?;
    }
    let mut initializers = Vec::new();
    for t in &gp.initializer {
        let what = format!("initializer '{}'", t.name);
        let v = to_value(t, &what)?;
        let id = if v.dtype().is_float() {
            let id = cx.g.param(t.name.clone(), v.dtype(), v.shape());
            initializers.push((t.name.clone(), v));
            id
        } else {
            cx.constant(&v).map_err(|m| Error::at(&what, m))?
        };
        cx.define(&t.name, id).map_err(|m| Error::at(&what, m))?;
    }
    for (i, n) in gp.node.iter().enumerate() {
        cx.node(n).map_err(|m| Error::at(node_label(n, i), m))?;
    }
    let mut outputs = Vec::new();
    let mut output_names = Vec::new();
    for vi in &gp.output {
        let what = format!("output '{}'", vi.name);
        let id = *cx.env.get(&vi.name).ok_or_else(|| Error::at(&what, "no node or input produces it"))?;
        check_declared(&cx.g, id, vi).map_err(|m| Error::at(&what, m))?;
        outputs.push(id);
        output_names.push(vi.name.clone());
    }
    cx.g.set_outputs(outputs);
    cx.g.remove_dead();
    cx.g.verify().map_err(|e| Error::model(format!("the imported graph is invalid: {e}")))?;
    Ok(Imported { graph: cx.g, initializers, output_names, opset })
}

/// `name (OpType)`, or `#index (OpType)` for unnamed nodes.
fn node_label(n: &NodeProto, index: usize) -> String {
    if n.name.is_empty() {
        format!("node #{index} ({})", n.op_type)
    } else {
        format!("node '{}' ({})", n.name, n.op_type)
    }
}

/// The dtype and static shape a `ValueInfoProto` declares (`shape` overrides symbolic dims).
fn value_type(vi: &ValueInfoProto, shape: Option<&Vec<usize>>) -> Result<(DType, Vec<usize>), String> {
    let Some(type_proto::Value::TensorType(t)) = vi.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        return Err("only tensor-typed inputs are supported (not sequences, maps or optionals)".into());
    };
    let dtype = dtype_of(t.elem_type)?;
    if let Some(s) = shape {
        return Ok((dtype, s.clone()));
    }
    let dims = t.shape.as_ref().ok_or("the input declares no shape; pass one with ImportOptions::shapes")?;
    let mut out = Vec::with_capacity(dims.dim.len());
    for d in &dims.dim {
        use crate::proto::tensor_shape_proto::dimension::Value as D;
        match &d.value {
            Some(D::DimValue(v)) if *v >= 0 => out.push(*v as usize),
            Some(D::DimParam(p)) => {
                return Err(format!(
                    "dimension '{p}' is symbolic; kiln's shapes are static: pass a concrete shape with ImportOptions::shapes"
                ))
            }
            _ => return Err("a dimension is unknown; pass a concrete shape with ImportOptions::shapes".into()),
        }
    }
    crate::tensor::shape_of(&out.iter().map(|&d| d as i64).collect::<Vec<_>>())?;
    Ok((dtype, out))
}

/// Checks an output's declared element type and (known) dims against what kiln inferred.
fn check_declared(g: &Graph, id: NodeId, vi: &ValueInfoProto) -> Result<(), String> {
    let Some(type_proto::Value::TensorType(t)) = vi.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        return Ok(());
    };
    let node = g.node(id);
    if t.elem_type != 0 {
        let d = dtype_of(t.elem_type)?;
        if d != node.dtype {
            return Err(format!("declared as {d}, but kiln computes {}", node.dtype));
        }
    }
    if let Some(s) = &t.shape {
        use crate::proto::tensor_shape_proto::dimension::Value as D;
        let rank_ok = s.dim.len() == node.shape.rank();
        let dims_ok = rank_ok
            && s.dim
                .iter()
                .zip(node.shape.dims())
                .all(|(d, &n)| !matches!(d.value, Some(D::DimValue(v)) if v != n as i64));
        if !dims_ok {
            return Err(format!(
                "declared with {} dims that differ from kiln's shape {}",
                s.dim.len(),
                node.shape
            ));
        }
    }
    Ok(())
}

/// The import state: the graph being built and the value name → node map.
pub(crate) struct Cx {
    pub g: Graph,
    env: HashMap<String, NodeId>,
    /// Values known at import time (constants and what is computed from constants only).
    consts: HashMap<NodeId, Value>,
    pub opset: i64,
}

/// Values computed at import time stay small: shape arithmetic, not weights.
const FOLD_LIMIT: usize = 1 << 16;

impl Cx {
    fn define(&mut self, name: &str, id: NodeId) -> Result<(), String> {
        if name.is_empty() {
            return Ok(());
        }
        if self.env.insert(name.to_string(), id).is_some() {
            return Err(format!("value '{name}' is defined twice"));
        }
        Ok(())
    }

    fn node(&mut self, n: &NodeProto) -> Result<(), String> {
        if !(n.domain.is_empty() || n.domain == "ai.onnx") {
            return Err(format!("op domain '{}' is not supported (only the default ONNX domain)", n.domain));
        }
        let outs = ops::lower(self, n)?;
        for (name, id) in n.output.iter().zip(outs) {
            if let Some(id) = id {
                self.define(name, id)?;
            } else if !name.is_empty() {
                return Err(format!("output '{name}' is not supported by kiln's lowering of this op"));
            }
        }
        Ok(())
    }

    /// The node holding input `i` of `n` (required).
    pub fn input(&self, n: &NodeProto, i: usize) -> Result<NodeId, String> {
        self.opt_input(n, i)?.ok_or_else(|| format!("input {i} is required"))
    }

    /// The node holding input `i` of `n`, or `None` when it is absent (missing or `""`).
    pub fn opt_input(&self, n: &NodeProto, i: usize) -> Result<Option<NodeId>, String> {
        match n.input.get(i).map(String::as_str) {
            None | Some("") => Ok(None),
            Some(name) => self
                .env
                .get(name)
                .copied()
                .map(Some)
                .ok_or_else(|| format!("input '{name}' is not defined before use")),
        }
    }

    /// Adds `op(operands)`; if every operand is known at import time, the result is too.
    pub fn add(&mut self, op: Op, operands: &[NodeId]) -> Result<NodeId, String> {
        let id = self.g.add(op, operands).map_err(|e| e.to_string())?;
        self.fold(id, operands);
        Ok(id)
    }

    fn fold(&mut self, id: NodeId, operands: &[NodeId]) {
        if self.g.node(id).shape.numel() > FOLD_LIMIT || !operands.iter().all(|o| self.consts.contains_key(o))
        {
            return;
        }
        let vals: Vec<&Value> = operands.iter().map(|o| &self.consts[o]).collect();
        if let Ok(v) = kiln_ir::interp::eval_node(self.g.node(id), &vals) {
            self.consts.insert(id, v);
        }
    }

    /// Adds a constant holding `v`.
    pub fn constant(&mut self, v: &Value) -> Result<NodeId, String> {
        let id = self.g.constant(v.to_literal(), v.shape()).map_err(|e| e.to_string())?;
        if v.numel() <= FOLD_LIMIT {
            self.consts.insert(id, v.clone());
        }
        Ok(id)
    }

    /// A scalar constant of `dtype`.
    pub fn scalar(&mut self, dtype: DType, v: f64) -> NodeId {
        let id = self.g.scalar(dtype, v);
        self.consts.insert(
            id,
            Value::from_literal(&Literal::scalar(dtype, v), &Shape::scalar()).expect("one element"),
        );
        id
    }

    /// A scalar constant with the dtype of `like`.
    pub fn scalar_like(&mut self, like: NodeId, v: f64) -> NodeId {
        let d = self.g.node(like).dtype;
        self.scalar(d, v)
    }

    /// The value of `id` if it is known at import time.
    pub fn const_value(&self, id: NodeId) -> Option<&Value> {
        self.consts.get(&id)
    }

    /// The integer elements of input `i`, which must be known at import time (shapes, axes,
    /// slice bounds). `what` names the input in errors.
    pub fn const_ints(&self, n: &NodeProto, i: usize, what: &str) -> Result<Option<Vec<i64>>, String> {
        let Some(id) = self.opt_input(n, i)? else { return Ok(None) };
        let v = self.const_value(id).ok_or_else(|| {
            format!(
                "the {what} input '{}' must be a constant or an initializer (kiln's shapes are static; \
                 computing it at run time is not supported)",
                n.input[i]
            )
        })?;
        match v {
            Value::I64(a) => Ok(Some(a.iter().copied().collect())),
            other => Err(format!("the {what} input must be int64, got {}", other.dtype())),
        }
    }

    /// A constant scalar float input (Clip's bounds, Dropout's ratio), if present.
    pub fn const_scalar(&self, n: &NodeProto, i: usize, what: &str) -> Result<Option<f64>, String> {
        let Some(id) = self.opt_input(n, i)? else { return Ok(None) };
        let v = self.const_value(id).ok_or_else(|| format!("the {what} input must be a constant"))?;
        v.scalar_f64().map(Some).ok_or_else(|| format!("the {what} input must hold one element"))
    }

    pub fn shape(&self, id: NodeId) -> Vec<usize> {
        self.g.node(id).shape.0.to_vec()
    }

    pub fn dtype(&self, id: NodeId) -> DType {
        self.g.node(id).dtype
    }
}
