//! ONNX's own backend node tests (committed under tests/data/node by scripts/onnx/generate.py):
//! every case is imported, run on the JIT and compared with ONNX's expected outputs within the
//! tolerances of ONNX's backend runner; then its gradients are checked by finite differences in
//! f64 on the reference interpreter.

mod common;

use common::{cases, graph_to_f64, to_f64, Case};
use kiln_codegen::Backend;
use kiln_ir::{allclose, DType, Graph, Literal, NodeId, Value};
use std::collections::BTreeMap;

/// ONNX's backend test runner compares with these.
const RTOL: f64 = 1e-3;
const ATOL: f64 = 1e-7;

/// Cases kiln does not import, each with the reason its error must contain. Training-mode
/// Dropout draws random masks (the expected outputs come from numpy's generator), and its
/// `training_mode` flag is a runtime input in these cases.
const SKIPPED: &[(&str, &str)] = &[
    ("test_training_dropout", "training-mode Dropout is not supported"),
    ("test_training_dropout_default", "training-mode Dropout is not supported"),
    ("test_training_dropout_default_mask", "training-mode Dropout is not supported"),
    ("test_training_dropout_mask", "training-mode Dropout is not supported"),
    ("test_training_dropout_zero_ratio", "training-mode Dropout is not supported"),
    ("test_training_dropout_zero_ratio_mask", "training-mode Dropout is not supported"),
];

fn run_inputs(case: &Case) -> kiln_onnx::Result<(kiln_onnx::Imported, Vec<Value>)> {
    let (imp, mut inputs) = case.import()?;
    inputs.extend(imp.initializers.iter().map(|(_, v)| v.clone()));
    Ok((imp, inputs))
}

#[test]
fn node_cases_match_onnx_outputs_on_the_jit() {
    let mut passed: BTreeMap<String, usize> = BTreeMap::new();
    let mut skipped = Vec::new();
    let mut failures = Vec::new();
    let all = cases();
    assert!(all.len() > 300, "the committed node test data is missing ({} cases)", all.len());
    for case in &all {
        let (imp, inputs) = match run_inputs(case) {
            Ok(x) => x,
            Err(e) => {
                skipped.push((case.name.clone(), e.to_string()));
                continue;
            }
        };
        let got = match kiln_codegen::jit().run(&imp.graph, &inputs) {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("{}: the JIT failed: {e}", case.name));
                continue;
            }
        };
        if got.len() != case.outputs.len() {
            failures.push(format!("{}: {} outputs, expected {}", case.name, got.len(), case.outputs.len()));
            continue;
        }
        let bad: Vec<usize> =
            (0..got.len()).filter(|&i| !allclose(&got[i], &case.outputs[i], RTOL, ATOL)).collect();
        if bad.is_empty() {
            *passed.entry(case.op()).or_default() += 1;
        } else {
            failures.push(format!(
                "{}: output(s) {bad:?} differ:\n  got      {:?}\n  expected {:?}",
                case.name, got[bad[0]], case.outputs[bad[0]]
            ));
        }
    }
    println!("passing node cases per op:");
    for (op, n) in &passed {
        println!("  {op}: {n}");
    }
    println!(
        "{} passed, {} skipped, {} failed",
        passed.values().sum::<usize>(),
        skipped.len(),
        failures.len()
    );
    for (name, why) in &skipped {
        println!("skipped {name}: {why}");
    }
    assert!(failures.is_empty(), "{} node cases fail:\n{}", failures.len(), failures.join("\n"));
    let expected: Vec<&str> = SKIPPED.iter().map(|s| s.0).collect();
    let actual: Vec<&str> = skipped.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(actual, expected, "the skipped cases changed");
    for ((name, why), (_, reason)) in skipped.iter().zip(SKIPPED) {
        assert!(why.contains(reason), "{name} is skipped for another reason: {why}");
    }
}

/// A fixed, non-trivial weight per element, so every output element matters to the loss.
fn weights(n: usize) -> Vec<f64> {
    (0..n).map(|i| 0.5 + ((i * 7919) % 13) as f64 / 13.0 * if i % 2 == 0 { 1.0 } else { -1.0 }).collect()
}

/// `Σ_outputs Σ w ⊙ output` over the float outputs, appended to `g`; `None` if there is none.
fn weighted_loss(g: &mut Graph) -> Option<NodeId> {
    let mut loss = None;
    for o in g.outputs().to_vec() {
        let n = g.node(o).clone();
        if n.dtype != DType::F64 {
            continue;
        }
        let w = g.constant(Literal::F64(weights(n.shape.numel())), n.shape.clone()).unwrap();
        let p = g.mul(o, w).unwrap();
        let s = g.reduce(kiln_ir::ReduceOp::Sum, p, vec![], false).unwrap();
        loss = Some(match loss {
            None => s,
            Some(l) => g.add_(l, s).unwrap(),
        });
    }
    loss
}

fn eval_loss(g: &Graph, inputs: &[Value]) -> f64 {
    kiln_ir::run(g, inputs).unwrap()[0].scalar_f64().unwrap()
}

#[test]
fn node_case_gradients_match_finite_differences() {
    let (mut checked_cases, mut checked_elems, mut kinks) = (0, 0, 0);
    let mut not_differentiable = Vec::new();
    let mut failures = Vec::new();
    for case in cases() {
        let Ok((imp, inputs)) = run_inputs(&case) else { continue };
        let mut g = graph_to_f64(&imp.graph);
        let inputs: Vec<Value> = inputs.iter().map(to_f64).collect();
        let wrt: Vec<usize> =
            (0..inputs.len()).filter(|&i| inputs[i].dtype() == DType::F64 && inputs[i].numel() > 0).collect();
        let Some(loss) = weighted_loss(&mut g) else {
            not_differentiable.push(format!("{}: no float output", case.name));
            continue;
        };
        if wrt.is_empty() {
            not_differentiable.push(format!("{}: no float input", case.name));
            continue;
        }
        let mut fwd = g.clone();
        fwd.set_outputs(vec![loss]);
        let l0 = eval_loss(&fwd, &inputs);
        if !l0.is_finite() {
            not_differentiable.push(format!("{}: non-finite outputs", case.name));
            continue;
        }
        let seed = kiln_passes::ones_like(&mut g, loss);
        let wrt_ids: Vec<NodeId> = wrt.iter().map(|&i| g.inputs()[i]).collect();
        let grads = kiln_passes::grad(&mut g, &[loss], &[seed], &wrt_ids).unwrap();
        let outs: Vec<NodeId> = grads.iter().zip(&wrt_ids).map(|(gr, &w)| gr.unwrap_or(w)).collect();
        g.set_outputs(outs);
        let analytic = kiln_ir::run(&g, &inputs).unwrap();
        for (k, &i) in wrt.iter().enumerate() {
            let an = if grads[k].is_some() { analytic[k].to_f64_vec() } else { vec![0.0; inputs[i].numel()] };
            let base = inputs[i].to_f64_vec();
            let shape = inputs[i].shape();
            // At most 16 elements per input, spread over it, keep the suite fast.
            let stride = base.len().div_ceil(16);
            for e in (0..base.len()).step_by(stride) {
                let h = 1e-6 * base[e].abs().max(1.0);
                let at = |d: f64| {
                    let mut v = base.clone();
                    v[e] += d;
                    let mut xs = inputs.clone();
                    xs[i] = Value::from_f64(DType::F64, shape.clone(), &v).unwrap();
                    eval_loss(&fwd, &xs)
                };
                let (fp, fm) = (at(h), at(-h));
                let (right, left) = ((fp - l0) / h, (l0 - fm) / h);
                // A kink (relu at 0, clip at a bound, max at a tie) has different one-sided
                // slopes; no single derivative to check there.
                if (right - left).abs() > 1e-2 * (1.0 + right.abs() + left.abs()) {
                    kinks += 1;
                    continue;
                }
                let num = (fp - fm) / (2.0 * h);
                checked_elems += 1;
                if (an[e] - num).abs() > 1e-5 + 1e-4 * num.abs().max(an[e].abs()) {
                    failures.push(format!(
                        "{}: d/d input {i} [{e}]: autodiff {} vs finite differences {num}",
                        case.name, an[e]
                    ));
                }
            }
        }
        checked_cases += 1;
    }
    println!(
        "gradients of {checked_cases} cases checked at {checked_elems} elements ({kinks} kinks skipped); \
         {} cases have nothing to differentiate:",
        not_differentiable.len()
    );
    for n in &not_differentiable {
        println!("  {n}");
    }
    assert!(checked_cases > 200, "only {checked_cases} cases were differentiated");
    assert!(failures.is_empty(), "{} gradient mismatches:\n{}", failures.len(), failures.join("\n"));
}
