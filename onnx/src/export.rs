//! kiln IR → ONNX: every kiln primitive is an ONNX op of the same name (opset [`EXPORT_OPSET`]),
//! parameters become initializers, attributes that ONNX takes as inputs (shapes, axes, slice
//! bounds) become `Constant` nodes.

use crate::error::{Error, Result};
use crate::proto::{
    attribute_type, tensor_shape_proto, type_proto, AttributeProto, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use crate::tensor::{elem_type_of, from_value};
use kiln_ir::{Graph, NodeId, Op, Shape, Value};
use prost::Message;
use std::collections::HashMap;
use std::path::Path;

/// The default-domain opset exported models declare (Reduce* take their axes as inputs).
pub const EXPORT_OPSET: i64 = 18;
/// The ONNX IR version exported models declare (the one that goes with opset 18).
const IR_VERSION: i64 = 8;

/// Options for [`export_graph`].
#[derive(Clone, Debug)]
pub struct ExportOptions {
    /// One name per graph output; missing names default to `output_<i>`.
    pub output_names: Vec<String>,
    /// The ONNX graph's name.
    pub graph_name: String,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions { output_names: Vec::new(), graph_name: "kiln".into() }
    }
}

/// Encodes a model as protobuf bytes (what an `.onnx` file holds).
pub fn encode_model(m: &ModelProto) -> Vec<u8> {
    m.encode_to_vec()
}

/// Exports `g` to `path` (see [`export_graph`]).
pub fn export_file(
    g: &Graph,
    params: &[(String, Value)],
    opts: &ExportOptions,
    path: impl AsRef<Path>,
) -> Result<()> {
    let path = path.as_ref();
    let m = export_graph(g, params, opts).map_err(|e| e.in_file(path.display()))?;
    std::fs::write(path, encode_model(&m))
        .map_err(|e| Error::model(format!("cannot write: {e}")).in_file(path.display()))
}

/// Exports a kiln graph as an ONNX model. `params` gives the value of every parameter input
/// (they become initializers); plain inputs become graph inputs, in order.
///
/// ```
/// use kiln_ir::{DType, Graph, Value};
/// let mut g = Graph::new();
/// let x = g.input("x", DType::F32, [1, 2]);
/// let w = g.param("w", DType::F32, [2, 2]);
/// let y = g.matmul(x, w).unwrap();
/// g.set_outputs(vec![y]);
/// let wv = Value::from_f64(DType::F32, [2, 2], &[1.0, 0.0, 0.0, 1.0]).unwrap();
/// let m = kiln_onnx::export_graph(&g, &[("w".into(), wv)], &Default::default()).unwrap();
/// let graph = m.graph.unwrap();
/// assert_eq!(graph.initializer[0].name, "w");
/// assert_eq!(graph.node.iter().map(|n| n.op_type.as_str()).collect::<Vec<_>>(), ["MatMul", "Identity"]);
/// ```
pub fn export_graph(g: &Graph, params: &[(String, Value)], opts: &ExportOptions) -> Result<ModelProto> {
    g.verify().map_err(|e| Error::model(format!("cannot export an invalid graph: {e}")))?;
    let order = g.topo_order().map_err(|e| Error::model(e.to_string()))?;
    let live = g.live_mask();
    let mut names: HashMap<NodeId, String> = HashMap::new();
    let mut gp = GraphProto { name: opts.graph_name.clone(), ..Default::default() };
    let values: HashMap<&str, &Value> = params.iter().map(|(n, v)| (n.as_str(), v)).collect();
    let mut ex = Exporter { nodes: Vec::new(), fresh: 0 };

    for &id in &order {
        let node = g.node(id);
        if !live[id.index()] && !matches!(node.op, Op::Input { .. }) {
            continue;
        }
        let name = match &node.op {
            Op::Input { name, param } => {
                if *param {
                    let v = values.get(name.as_str()).ok_or_else(|| {
                        Error::at(format!("parameter '{name}'"), "no value was given for it")
                    })?;
                    if v.dtype() != node.dtype || v.shape() != node.shape {
                        return Err(Error::at(
                            format!("parameter '{name}'"),
                            format!(
                                "its value is {}{}, the graph declares {}{}",
                                v.dtype(),
                                v.shape(),
                                node.dtype,
                                node.shape
                            ),
                        ));
                    }
                    gp.initializer.push(from_value(v, name));
                } else {
                    gp.input.push(value_info(name, node.dtype, &node.shape));
                }
                name.clone()
            }
            _ => {
                let inputs: Vec<String> = g.operands(id).iter().map(|o| names[o].clone()).collect();
                let out = format!("v{}", id.index());
                ex.node(&node.op, inputs, &out, &node.shape)?;
                out
            }
        };
        names.insert(id, name);
    }
    for (i, &o) in g.outputs().iter().enumerate() {
        let name = opts.output_names.get(i).cloned().unwrap_or_else(|| format!("output_{i}"));
        let n = g.node(o);
        gp.output.push(value_info(&name, n.dtype, &n.shape));
        ex.nodes.push(NodeProto {
            input: vec![names[&o].clone()],
            output: vec![name],
            op_type: "Identity".into(),
            ..Default::default()
        });
    }
    gp.node = ex.nodes;
    Ok(ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: EXPORT_OPSET }],
        producer_name: "kiln".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(gp),
        ..Default::default()
    })
}

/// A copy of `g` whose outputs are followed by the gradient of its first output with respect to
/// each parameter or input named in `wrt` (in that order): a forward + reverse graph to export.
///
/// A scalar first output is seeded with 1; otherwise the graph gets a new input `grad_seed` of
/// the output's shape (the cotangent). A `wrt` the output does not depend on gets zeros.
pub fn with_gradients(g: &Graph, wrt: &[&str]) -> Result<Graph> {
    let mut g = g.clone();
    let &out = g.outputs().first().ok_or_else(|| Error::model("the graph has no output to differentiate"))?;
    let ids = wrt
        .iter()
        .map(|&w| g.input_named(w).ok_or_else(|| Error::model(format!("'{w}' is not an input of the graph"))))
        .collect::<Result<Vec<_>>>()?;
    let node = g.node(out).clone();
    if !node.dtype.is_float() {
        return Err(Error::model(format!("the first output is {}, not a float value", node.dtype)));
    }
    let seed = if node.shape.rank() == 0 {
        kiln_passes::ones_like(&mut g, out)
    } else {
        g.input("grad_seed", node.dtype, node.shape.clone())
    };
    let grads = kiln_passes::grad(&mut g, &[out], &[seed], &ids).map_err(|e| Error::model(e.to_string()))?;
    for (gr, &w) in grads.into_iter().zip(&ids) {
        let id = match gr {
            Some(id) => id,
            None => {
                let n = g.node(w).clone();
                let z = g.scalar(n.dtype, 0.0);
                g.expand(z, n.shape.0.clone()).map_err(|e| Error::model(e.to_string()))?
            }
        };
        g.push_output(id);
    }
    Ok(g)
}

fn value_info(name: &str, dtype: kiln_ir::DType, shape: &Shape) -> ValueInfoProto {
    use tensor_shape_proto::{dimension::Value as D, Dimension};
    let dims =
        shape.0.iter().map(|&d| Dimension { value: Some(D::DimValue(d as i64)), ..Default::default() });
    let t = type_proto::Tensor {
        elem_type: elem_type_of(dtype),
        shape: Some(TensorShapeProto { dim: dims.collect() }),
    };
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto { value: Some(type_proto::Value::TensorType(t)), ..Default::default() }),
        ..Default::default()
    }
}

struct Exporter {
    nodes: Vec<NodeProto>,
    fresh: usize,
}

impl Exporter {
    /// A `Constant` node holding `ints` (a 1-D int64 tensor); returns its output name.
    fn ints(&mut self, ints: &[i64]) -> String {
        self.fresh += 1;
        let name = format!("c{}", self.fresh);
        let v = Value::I64(ndarray::Array1::from(ints.to_vec()).into_dyn());
        self.nodes.push(NodeProto {
            output: vec![name.clone()],
            op_type: "Constant".into(),
            attribute: vec![AttributeProto {
                name: "value".into(),
                r#type: attribute_type::TENSOR,
                t: Some(from_value(&v, "")),
                ..Default::default()
            }],
            ..Default::default()
        });
        name
    }

    fn node(&mut self, op: &Op, mut inputs: Vec<String>, out: &str, shape: &Shape) -> Result<()> {
        let int_attr = |name: &str, i: i64| AttributeProto {
            name: name.into(),
            r#type: attribute_type::INT,
            i,
            ..Default::default()
        };
        let ints_attr = |name: &str, ints: Vec<i64>| AttributeProto {
            name: name.into(),
            r#type: attribute_type::INTS,
            ints,
            ..Default::default()
        };
        let mut attribute = Vec::new();
        let op_type = match op {
            Op::Input { .. } => return Err(Error::model("an input cannot be exported as a node")),
            Op::Constant(lit) => {
                let v = Value::from_literal(lit, shape).map_err(|e| Error::model(e.to_string()))?;
                attribute.push(AttributeProto {
                    name: "value".into(),
                    r#type: attribute_type::TENSOR,
                    t: Some(from_value(&v, "")),
                    ..Default::default()
                });
                "Constant"
            }
            Op::Cast { to } => {
                attribute.push(int_attr("to", elem_type_of(*to) as i64));
                "Cast"
            }
            Op::Reduce { op: r, axes, keepdims } => {
                // kiln's empty axes mean "all"; ONNX's too, but explicit axes read better.
                let rank = shape.rank() as i64 + if *keepdims { 0 } else { axes.len() as i64 };
                let axes: Vec<i64> = if axes.is_empty() { (0..rank).collect() } else { axes.clone() };
                if !axes.is_empty() {
                    inputs.push(self.ints(&axes));
                }
                attribute.push(int_attr("keepdims", *keepdims as i64));
                r.name()
            }
            Op::Reshape { shape: s } => {
                let dims: Vec<i64> = s.iter().map(|&d| d as i64).collect();
                inputs.push(self.ints(&dims));
                // ONNX reads 0 as "copy the input's dim" unless allowzero is set.
                if s.contains(&0) {
                    attribute.push(int_attr("allowzero", 1));
                }
                "Reshape"
            }
            Op::Expand { shape: s } => {
                let dims: Vec<i64> = s.iter().map(|&d| d as i64).collect();
                inputs.push(self.ints(&dims));
                "Expand"
            }
            Op::Transpose { perm } => {
                attribute.push(ints_attr("perm", perm.iter().map(|&p| p as i64).collect()));
                "Transpose"
            }
            Op::Slice { starts, ends, axes, steps } => {
                for v in [starts, ends, axes, steps] {
                    let name = self.ints(v);
                    inputs.push(name);
                }
                "Slice"
            }
            Op::Concat { axis } => {
                attribute.push(int_attr("axis", *axis));
                "Concat"
            }
            Op::Unary(_) | Op::Binary(_) | Op::Compare(_) | Op::Where | Op::MatMul => op.name(),
        };
        self.nodes.push(NodeProto {
            input: inputs,
            output: vec![out.into()],
            op_type: op_type.into(),
            attribute,
            ..Default::default()
        });
        Ok(())
    }
}
