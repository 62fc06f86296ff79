//! Export: every imported node case and the MLP (forward, and forward + reverse) written as
//! ONNX, re-imported, and run again with equal results; `onnx.checker` accepts the files when a
//! Python with the `onnx` package is available.

mod common;

use common::{cases, MLP};
use kiln_codegen::Backend;
use kiln_ir::{allclose, Value};
use kiln_onnx::{encode_model, export_graph, import_bytes, with_gradients, ExportOptions, ImportOptions};
use std::path::PathBuf;
use std::process::Command;

#[test]
fn node_cases_survive_export_and_reimport() {
    let mut n = 0;
    for case in cases() {
        let Ok((imp, inputs)) = case.import() else { continue };
        let opts = ExportOptions { output_names: imp.output_names.clone(), ..Default::default() };
        let model = export_graph(&imp.graph, &imp.initializers, &opts).unwrap();
        let back = import_bytes(&encode_model(&model), &ImportOptions::default())
            .unwrap_or_else(|e| panic!("{}: re-import failed: {e}", case.name));
        assert_eq!(back.output_names, imp.output_names, "{}", case.name);
        let all: Vec<Value> =
            inputs.iter().cloned().chain(imp.initializers.iter().map(|p| p.1.clone())).collect();
        let a = kiln_codegen::jit().run(&imp.graph, &all).unwrap();
        let b = kiln_codegen::jit().run(&back.graph, &all).unwrap();
        for (x, y) in a.iter().zip(&b) {
            assert!(allclose(x, y, 0.0, 0.0), "{}: {x:?} vs {y:?}", case.name);
        }
        n += 1;
    }
    println!("{n} node cases exported and re-imported with identical outputs");
    assert!(n > 300);
}

fn mlp_with_gradients() -> (kiln_onnx::Imported, kiln_ir::Graph) {
    let imp = kiln_onnx::import_file(MLP).unwrap();
    // A scalar loss on the MLP's output: mean of log-probabilities of class 0.
    let mut g = imp.graph.clone();
    let probs = g.outputs()[0];
    let lp = g.unary(kiln_ir::UnaryOp::Log, probs).unwrap();
    let s = g.slice(lp, vec![0], vec![1], vec![1], vec![1]).unwrap();
    let loss = g.reduce(kiln_ir::ReduceOp::Mean, s, vec![], false).unwrap();
    g.set_outputs(vec![loss]);
    let names: Vec<&str> = imp.initializers.iter().map(|(n, _)| n.as_str()).collect();
    let full = with_gradients(&g, &names).unwrap();
    (imp, full)
}

#[test]
fn forward_and_reverse_graphs_export_and_reimport() {
    let (imp, full) = mlp_with_gradients();
    assert_eq!(full.outputs().len(), 5, "the loss and one gradient per initializer");
    let names = ["loss", "grad_W1", "grad_b1", "grad_W2", "grad_b2"].map(String::from).to_vec();
    let model = export_graph(
        &full,
        &imp.initializers,
        &ExportOptions { output_names: names.clone(), ..Default::default() },
    )
    .unwrap();
    let back = import_bytes(&encode_model(&model), &ImportOptions::default()).unwrap();
    assert_eq!(back.output_names, names);
    let x = Value::from_f64(
        kiln_ir::DType::F32,
        [4, 3],
        &(0..12).map(|i| i as f64 / 6.0 - 1.0).collect::<Vec<_>>(),
    )
    .unwrap();
    let all: Vec<Value> = std::iter::once(x).chain(imp.initializers.iter().map(|p| p.1.clone())).collect();
    let want = kiln_ir::run(&full, &all).unwrap();
    let got = kiln_codegen::jit().run(&back.graph, &all).unwrap();
    for (i, (w, g)) in want.iter().zip(&got).enumerate() {
        assert!(allclose(g, w, 1e-5, 1e-6), "output {i}: {g:?} vs {w:?}");
    }
    assert_eq!(want[1].shape().dims(), &[3, 8]);
}

fn python_with_onnx() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> =
        std::env::var_os("KILN_ONNX_PYTHON").map(PathBuf::from).into_iter().collect();
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(PathBuf::from(home).join(".cache/kiln-onnx/bin/python"));
    }
    candidates.push("python3".into());
    candidates
        .into_iter()
        .find(|p| Command::new(p).args(["-c", "import onnx"]).output().is_ok_and(|o| o.status.success()))
}

/// `onnx.checker.check_model(full_check=True)` (type and shape inference included) on the
/// exported MLP, its forward + reverse graph, and a sample of exported node cases.
#[test]
fn onnx_checker_accepts_exported_models() {
    let Some(python) = python_with_onnx() else {
        println!("skipped: no Python with the onnx package (set KILN_ONNX_PYTHON, or see scripts/onnx/generate.py)");
        return;
    };
    let dir = std::env::temp_dir().join(format!("kiln-onnx-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut files = Vec::new();
    let (imp, full) = mlp_with_gradients();
    for (name, g) in [("mlp", &imp.graph), ("mlp_grad", &full)] {
        let p = dir.join(format!("{name}.onnx"));
        kiln_onnx::export_file(g, &imp.initializers, &ExportOptions::default(), &p).unwrap();
        files.push(p);
    }
    let mut args = Vec::new();
    for f in &files {
        args.extend([f.clone(), PathBuf::new()]);
    }
    for case in cases().iter().step_by(3) {
        let Ok((c, _)) = case.import() else { continue };
        let p = dir.join(format!("{}.onnx", case.name));
        kiln_onnx::export_file(&c.graph, &c.initializers, &ExportOptions::default(), &p).unwrap();
        args.extend([p, case.dir.join("test_data_set_0")]);
    }
    let out = Command::new(&python).arg("-c").arg(CHECK).args(&args).output().unwrap();
    std::fs::remove_dir_all(&dir).ok();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    println!("{}", String::from_utf8_lossy(&out.stdout).trim());
}

/// Checks (model, data dir) pairs: the checker on every model; where a node case's data is
/// given, onnx's own reference evaluator runs the exported model on the case's inputs (matched
/// by name: inputs kiln bound at import are constants in the export) and must reproduce the
/// expected outputs, an oracle independent of kiln's importer.
const CHECK: &str = r#"
import glob, os, sys
import numpy as np
import onnx
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator
args = sys.argv[1:]
checked = evaluated = 0
for model_path, data in zip(args[0::2], args[1::2]):
    m = onnx.load(model_path)
    onnx.checker.check_model(m, full_check=True)
    checked += 1
    if not data:
        continue
    inputs = {}
    for f in sorted(glob.glob(os.path.join(data, "input_*.pb"))):
        t = onnx.TensorProto(); t.ParseFromString(open(f, "rb").read())
        inputs[t.name] = numpy_helper.to_array(t)
    feeds = {i.name: inputs[i.name] for i in m.graph.input}
    got = ReferenceEvaluator(m).run(None, feeds)
    for k, g in enumerate(got):
        t = onnx.TensorProto(); t.ParseFromString(open(os.path.join(data, f"output_{k}.pb"), "rb").read())
        np.testing.assert_allclose(g, numpy_helper.to_array(t), rtol=1e-3, atol=1e-7, err_msg=model_path)
    evaluated += 1
print(f"onnx.checker accepted {checked} exported models; onnx's reference evaluator reproduced the expected outputs of {evaluated} exported node cases")
"#;
