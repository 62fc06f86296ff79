//! [`Model`]: an imported ONNX model as trainable tensor code.
//!
//! `forward` replays the imported graph op by op through the Tensor API, so it records into
//! the autograd trace exactly like hand-written tensor code: `backward()` reaches the model's
//! parameters (its float initializers), which are leaf tensors with `requires_grad`.

use crate::error::{Error, Result};
use crate::import::{import_file_with, ImportOptions, Imported};
use crate::proto::ModelProto;
use kiln_frontend::Tensor;
use kiln_ir::{BinaryOp, CompareOp, DType, Graph, NodeId, Op, ReduceOp, UnaryOp, Value};
use std::collections::HashMap;
use std::path::Path;

/// Loads the `.onnx` file at `path` as a [`Model`].
///
/// ```no_run
/// use kiln_frontend::Tensor;
/// let model = kiln_onnx::load("mlp.onnx").unwrap();
/// let x = Tensor::ones(&[4, 3]);
/// let y = model.forward(&[x]).unwrap().remove(0);
/// y.sum().backward().unwrap();
/// for (name, p) in model.named_parameters() {
///     println!("{name}: {:?}", p.grad().map(|g| g.shape().to_vec()));
/// }
/// ```
pub fn load(path: impl AsRef<Path>) -> Result<Model> {
    load_with(path, &ImportOptions::default())
}

/// [`load`] with import options (bound inputs, concrete shapes for symbolic dims).
pub fn load_with(path: impl AsRef<Path>, opts: &ImportOptions) -> Result<Model> {
    let path = path.as_ref();
    let mut m = Model::new(import_file_with(path, opts)?);
    m.file = Some(path.display().to_string());
    Ok(m)
}

/// An imported model: its graph, and its parameters as trainable tensors.
pub struct Model {
    graph: Graph,
    params: Vec<(String, Tensor)>,
    output_names: Vec<String>,
    file: Option<String>,
}

fn tensor_of(v: &Value) -> Tensor {
    match v {
        Value::F32(a) => Tensor::from_ndarray(a),
        Value::F64(a) => Tensor::from_ndarray(a),
        Value::I64(a) => Tensor::from_ndarray(a),
        Value::Bool(a) => Tensor::from_ndarray(a),
    }
}

impl Model {
    /// A model from an import result; parameters start at the initializers' values.
    pub fn new(imported: Imported) -> Model {
        let params = imported
            .initializers
            .iter()
            .map(|(n, v)| (n.clone(), tensor_of(v).requires_grad_(true)))
            .collect();
        Model { graph: imported.graph, params, output_names: imported.output_names, file: None }
    }

    /// The imported graph (parameters are its `param` inputs).
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The names of the inputs [`Model::forward`] takes, in order.
    pub fn input_names(&self) -> Vec<&str> {
        self.graph
            .inputs()
            .iter()
            .filter_map(|&i| match &self.graph.node(i).op {
                Op::Input { name, param: false } => Some(name.as_str()),
                _ => None,
            })
            .collect()
    }

    /// The model's output names, one per tensor [`Model::forward`] returns.
    pub fn output_names(&self) -> &[String] {
        &self.output_names
    }

    /// The parameters (float initializers) as leaf tensors that require grad.
    pub fn parameters(&self) -> Vec<Tensor> {
        self.params.iter().map(|(_, t)| t.clone()).collect()
    }

    /// The parameters with their ONNX names.
    pub fn named_parameters(&self) -> Vec<(String, Tensor)> {
        self.params.clone()
    }

    fn err(&self, msg: String) -> kiln_frontend::Error {
        let e = Error::model(msg);
        match &self.file {
            Some(f) => e.in_file(f).into(),
            None => e.into(),
        }
    }

    /// Runs the model on `inputs` (one per [`Model::input_names`], with the declared dtypes and
    /// shapes). Recorded like any tensor code: gradients flow to the parameters and to inputs
    /// that require grad.
    pub fn forward(&self, inputs: &[Tensor]) -> kiln_frontend::Result<Vec<Tensor>> {
        let g = &self.graph;
        let mut vals: HashMap<NodeId, Tensor> = HashMap::new();
        let (mut next_input, mut next_param) = (inputs.iter(), self.params.iter());
        let expected = self.input_names().len();
        if inputs.len() != expected {
            return Err(self.err(format!("forward expects {expected} input(s), got {}", inputs.len())));
        }
        let order = g.topo_order()?;
        for id in order {
            let node = g.node(id);
            let operands: Vec<Tensor> = g.operands(id).iter().map(|o| vals[o].clone()).collect();
            let t = match &node.op {
                Op::Input { name, param } => {
                    let t = if *param { next_param.next().map(|p| &p.1) } else { next_input.next() };
                    let t = t.ok_or_else(|| self.err(format!("no value for input '{name}'")))?;
                    if t.dtype() != node.dtype || t.shape() != node.shape.dims() {
                        return Err(self.err(format!(
                            "input '{name}' expects {}{}, got {}{:?}",
                            node.dtype,
                            node.shape,
                            t.dtype(),
                            t.shape()
                        )));
                    }
                    t.clone()
                }
                Op::Constant(lit) => tensor_of(&Value::from_literal(lit, &node.shape)?),
                op => self.apply(op, &operands)?,
            };
            vals.insert(id, t);
        }
        Ok(g.outputs().iter().map(|o| vals[o].clone()).collect())
    }

    /// One IR op through the Tensor API (so it is recorded).
    fn apply(&self, op: &Op, x: &[Tensor]) -> kiln_frontend::Result<Tensor> {
        let ints = |v: &[usize]| v.iter().map(|&d| d as i64).collect::<Vec<_>>();
        Ok(match op {
            Op::Unary(u) => match u {
                UnaryOp::Neg => x[0].neg(),
                UnaryOp::Abs => x[0].abs(),
                UnaryOp::Exp => x[0].exp(),
                UnaryOp::Log => x[0].log(),
                UnaryOp::Sqrt => x[0].sqrt(),
                UnaryOp::Reciprocal => x[0].reciprocal(),
                UnaryOp::Tanh => x[0].tanh(),
                UnaryOp::Sigmoid => x[0].sigmoid(),
                UnaryOp::Relu => x[0].relu(),
                UnaryOp::Erf => x[0].erf(),
                UnaryOp::Sin => x[0].sin(),
                UnaryOp::Cos => x[0].cos(),
                UnaryOp::Sign => x[0].sign(),
            },
            Op::Binary(b) => match b {
                BinaryOp::Add => x[0].add(&x[1])?,
                BinaryOp::Sub => x[0].sub(&x[1])?,
                BinaryOp::Mul => x[0].mul(&x[1])?,
                BinaryOp::Div => x[0].div(&x[1])?,
                BinaryOp::Pow => x[0].pow_tensor(&x[1])?,
                BinaryOp::Max => x[0].maximum(&x[1])?,
                BinaryOp::Min => x[0].minimum(&x[1])?,
            },
            Op::Compare(c) => match c {
                CompareOp::Equal => x[0].eq_t(&x[1])?,
                CompareOp::Greater => x[0].gt(&x[1])?,
                CompareOp::Less => x[0].lt(&x[1])?,
            },
            Op::Where => Tensor::where_(&x[0], &x[1], &x[2])?,
            Op::Cast { to } => x[0].to_dtype(*to),
            Op::Reduce { op, axes, keepdims } => {
                let all: Vec<i64>;
                let axes = if axes.is_empty() {
                    all = (0..x[0].dim() as i64).collect();
                    &all
                } else {
                    axes
                };
                match op {
                    ReduceOp::Sum => x[0].sum_dim(axes, *keepdims)?,
                    ReduceOp::Mean => x[0].mean_dim(axes, *keepdims)?,
                    ReduceOp::Max => x[0].amax(axes, *keepdims)?,
                }
            }
            Op::MatMul => x[0].matmul(&x[1])?,
            Op::Reshape { shape } => x[0].reshape(&ints(shape))?,
            Op::Transpose { perm } => x[0].permute(&ints(perm))?,
            Op::Expand { shape } => x[0].expand(&ints(shape))?,
            Op::Slice { starts, ends, axes, steps } => {
                let mut t = x[0].clone();
                for i in 0..starts.len() {
                    if steps[i] < 0 {
                        return Err(self.err(
                            "Slice with a negative step is not supported by Model::forward (the Tensor API has no \
                             reversed slices); run the imported graph on a backend instead"
                                .into(),
                        ));
                    }
                    t = t.slice(axes[i], starts[i], ends[i], steps[i])?;
                }
                t
            }
            Op::Concat { axis } => Tensor::cat(&x.iter().collect::<Vec<_>>(), *axis)?,
            Op::Input { .. } | Op::Constant(_) => {
                return Err(self.err("inputs and constants have no operands".into()))
            }
        })
    }

    /// The model with the parameters' current values as initializers (e.g. after training).
    pub fn to_onnx(&self) -> Result<ModelProto> {
        let mut params = Vec::with_capacity(self.params.len());
        for (name, t) in &self.params {
            let v = match t.dtype() {
                DType::F64 => t.to_ndarray_f64().map(Value::F64),
                _ => t.to_ndarray_f32().map(Value::F32),
            }
            .map_err(|e| Error::at(format!("parameter '{name}'"), e.to_string()))?;
            params.push((name.clone(), v));
        }
        let opts = crate::ExportOptions { output_names: self.output_names.clone(), ..Default::default() };
        crate::export_graph(&self.graph, &params, &opts)
    }

    /// Writes [`Model::to_onnx`] to `path`.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let m = self.to_onnx().map_err(|e| e.in_file(path.display()))?;
        std::fs::write(path, crate::encode_model(&m))
            .map_err(|e| Error::model(format!("cannot write: {e}")).in_file(path.display()))
    }
}
