//! Fusion: the schedule computes what the graph computes (reference executor vs interpreter on
//! random graphs), and snapshots of the kernels for the workloads that matter.

use kiln_ir::interp::{allclose, run, Value};
use kiln_ir::testing::{arb_graph_with_inputs, GraphConfig};
use kiln_ir::{Graph, Literal};
use kiln_passes::kernel::execute;
use kiln_passes::{schedule, simplify};
use proptest::prelude::*;

fn values(g: &Graph, inputs: &[Literal]) -> Vec<Value> {
    g.inputs().iter().zip(inputs).map(|(&i, l)| Value::from_literal(l, &g.node(i).shape).unwrap()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn schedules_compute_what_graphs_compute((g, inputs) in arb_graph_with_inputs(GraphConfig::default())) {
        let vals = values(&g, &inputs);
        let want = run(&g, &vals).unwrap();
        let mut s = g.clone();
        simplify(&mut s).unwrap();
        let sched = schedule(&s).map_err(|e| TestCaseError::fail(format!("{e}\n{}", s.to_text())))?;
        let got = execute(&sched, &vals).map_err(|e| TestCaseError::fail(format!("{e}\n{}\n{sched}", s.to_text())))?;
        prop_assert_eq!(got.len(), want.len());
        for (a, b) in got.iter().zip(&want) {
            prop_assert!(allclose(a, b, 1e-5, 1e-6), "graph:\n{}\nschedule:\n{sched}\n{a:?}\nvs\n{b:?}", s.to_text());
        }
    }
}

fn fused(mut g: Graph) -> String {
    g.verify().unwrap();
    simplify(&mut g).unwrap();
    let s = schedule(&g).unwrap();
    let kernels = s.steps.len();
    format!("# {kernels} steps\n{s}")
}

#[test]
fn w1_forward_and_backward_is_one_kernel() {
    use kiln_passes::kernel::Step;
    let mut g = kiln_passes::workloads::w1(1 << 24, true).unwrap();
    simplify(&mut g).unwrap();
    let s = schedule(&g).unwrap();
    assert_eq!(s.steps.len(), 1, "{s}");
    let Step::Kernel(k) = &s.steps[0] else { panic!("{s}") };
    let exps = k
        .instrs
        .iter()
        .filter(|i| matches!(i.op, kiln_passes::kernel::KOp::Unary(kiln_ir::UnaryOp::Exp, _)))
        .count();
    assert_eq!(exps, 1, "eˣ is computed once for y and the gradient:\n{s}");
    insta::assert_snapshot!(format!("{s}"));
}

#[test]
fn linear_regression_step() {
    insta::assert_snapshot!(fused(kiln_passes::workloads::linear_regression(32).unwrap()));
}

#[test]
fn mlp_train_step() {
    insta::assert_snapshot!(fused(kiln_passes::workloads::mlp(256, &[784, 1024, 1024, 10]).unwrap()));
}

#[test]
fn layer_norm_gelu_forward_and_backward() {
    insta::assert_snapshot!(fused(kiln_passes::workloads::layer_norm_gelu(4096, 1024).unwrap()));
}

#[test]
fn cube_second_derivative() {
    insta::assert_snapshot!(fused(kiln_passes::workloads::cube_second_derivative().unwrap()));
}

/// The workloads at small sizes: the schedule agrees with the interpreter.
#[test]
fn workload_schedules_match_the_interpreter() {
    let graphs = [
        kiln_passes::workloads::w1(37, true).unwrap(),
        kiln_passes::workloads::linear_regression(8).unwrap(),
        kiln_passes::workloads::mlp(4, &[6, 5, 7, 3]).unwrap(),
        kiln_passes::workloads::layer_norm_gelu(3, 8).unwrap(),
        kiln_passes::workloads::cube_second_derivative().unwrap(),
    ];
    for g in graphs {
        let vals: Vec<Value> = g
            .inputs()
            .iter()
            .enumerate()
            .map(|(k, &i)| {
                let n = g.node(i);
                let data: Vec<f64> =
                    (0..n.shape.numel()).map(|j| ((j * 7 + k * 3) % 11) as f64 / 5.0 - 1.0).collect();
                Value::from_f64(n.dtype, n.shape.clone(), &data).unwrap()
            })
            .collect();
        let want = run(&g, &vals).unwrap();
        let mut s = g.clone();
        simplify(&mut s).unwrap();
        let sched = schedule(&s).unwrap();
        let got = execute(&sched, &vals).unwrap();
        for (a, b) in got.iter().zip(&want) {
            assert!(allclose(a, b, 1e-5, 1e-6), "{sched}\n{a:?}\nvs\n{b:?}");
        }
    }
}
