//! Shared by the ONNX test suites: reading ONNX backend test cases, and casting imported graphs
//! to f64 for finite differences.
#![allow(dead_code)]

use kiln_ir::{DType, Graph, Literal, NodeId, Op, Value};
use kiln_onnx::{ImportOptions, Imported};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub const NODE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/node");
pub const MLP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/mlp.onnx");

/// One ONNX backend node test case: its model and first data set.
pub struct Case {
    pub name: String,
    pub dir: PathBuf,
    /// (name, value) of every model input, in order.
    pub inputs: Vec<(String, Value)>,
    pub outputs: Vec<Value>,
}

fn read_pbs(dir: &Path, prefix: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for i in 0.. {
        let p = dir.join(format!("{prefix}_{i}.pb"));
        let Ok(bytes) = std::fs::read(&p) else { break };
        out.push(kiln_onnx::tensor::decode_tensor(&bytes).unwrap_or_else(|e| panic!("{}: {e}", p.display())));
    }
    out
}

/// Every committed case, sorted by name.
pub fn cases() -> Vec<Case> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(NODE_DIR)
        .expect("the committed node test data")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("model.onnx").exists())
        .collect();
    dirs.sort();
    dirs.into_iter()
        .map(|dir| {
            let ds = dir.join("test_data_set_0");
            let model = kiln_onnx::decode_model(&std::fs::read(dir.join("model.onnx")).unwrap()).unwrap();
            let names: Vec<String> =
                model.graph.as_ref().unwrap().input.iter().map(|v| v.name.clone()).collect();
            // Data files carry the input's name in the reference data; use the model's order.
            let inputs = read_pbs(&ds, "input").into_iter().zip(names).map(|((_, v), n)| (n, v)).collect();
            let outputs = read_pbs(&ds, "output").into_iter().map(|(_, v)| v).collect();
            Case { name: dir.file_name().unwrap().to_string_lossy().into_owned(), dir, inputs, outputs }
        })
        .collect()
}

impl Case {
    /// Imports the case. Integer inputs (shapes, axes, slice bounds) are bound to their test
    /// values: kiln's shapes are static, so it needs them at import time.
    pub fn import(&self) -> kiln_onnx::Result<(Imported, Vec<Value>)> {
        let mut opts = ImportOptions::default();
        let mut runtime = Vec::new();
        for (n, v) in &self.inputs {
            if v.dtype() == DType::I64 {
                opts.bind.insert(n.clone(), v.clone());
            } else {
                runtime.push(v.clone());
            }
        }
        let imp = kiln_onnx::import_file_with(self.dir.join("model.onnx"), &opts)?;
        Ok((imp, runtime))
    }

    /// The op the case tests: the directory's op part as ONNX names it (first node's op).
    /// The op the case tests, as generate.py recorded it in OPS.txt (an `_expanded` case,
    /// the op's function body inlined, is marked "(expanded)").
    pub fn op(&self) -> String {
        let ops = std::fs::read_to_string(Path::new(NODE_DIR).join("OPS.txt")).unwrap_or_default();
        let line = ops.lines().find_map(|l| l.strip_prefix(&self.name).and_then(|r| r.strip_prefix(' ')));
        line.unwrap_or("?").to_string()
    }
}

/// Casts a value's floats to f64.
pub fn to_f64(v: &Value) -> Value {
    match v {
        Value::F32(a) => Value::F64(a.mapv(|x| x as f64)),
        other => other.clone(),
    }
}

/// The same graph computing in f64 wherever it computed in f32 (for finite differences).
pub fn graph_to_f64(g: &Graph) -> Graph {
    let mut out = Graph::new();
    let mut map: HashMap<NodeId, NodeId> = HashMap::new();
    let wide = |d: DType| if d == DType::F32 { DType::F64 } else { d };
    for id in g.topo_order().unwrap() {
        let n = g.node(id);
        let ops: Vec<NodeId> = g.operands(id).iter().map(|o| map[o]).collect();
        let new = match &n.op {
            Op::Input { name, param: false } => out.input(name.clone(), wide(n.dtype), n.shape.clone()),
            Op::Input { name, param: true } => out.param(name.clone(), wide(n.dtype), n.shape.clone()),
            Op::Constant(Literal::F32(v)) => {
                out.constant(Literal::F64(v.iter().map(|&x| x as f64).collect()), n.shape.clone()).unwrap()
            }
            Op::Constant(l) => out.constant(l.clone(), n.shape.clone()).unwrap(),
            Op::Cast { to } => out.add(Op::Cast { to: wide(*to) }, &ops).unwrap(),
            op => out.add(op.clone(), &ops).unwrap(),
        };
        map.insert(id, new);
    }
    out.set_outputs(g.outputs().iter().map(|o| map[o]).collect());
    out
}
