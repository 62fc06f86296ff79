//! [`Model`]: an imported ONNX model as trainable tensor code.
//!
//! `forward` replays the imported graph op by op through the Tensor API, so it records into
//! the autograd trace exactly like hand-written tensor code: `backward()` reaches the model's
//! parameters (its float initializers), which are leaf tensors with `requires_grad`.

use crate::error::{Error, Result};
use crate::import::{import_file_with, ImportOptions, Imported};
use crate::proto::ModelProto;
use kiln_frontend::Tensor;
use kiln_ir::{DType, Graph, NodeId, Op, Value};
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

impl Model {
    /// A model from an import result; parameters start at the initializers' values.
    pub fn new(imported: Imported) -> Model {
        let params = imported
            .initializers
            .into_iter()
            .map(|(n, v)| (n, Tensor::from_value(v).requires_grad_(true)))
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
                Op::Constant(lit) => Tensor::from_value(Value::from_literal(lit, &node.shape)?),
                op => kiln_frontend::apply_op(op, &operands.iter().collect::<Vec<_>>())?,
            };
            vals.insert(id, t);
        }
        Ok(g.outputs().iter().map(|o| vals[o].clone()).collect())
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
