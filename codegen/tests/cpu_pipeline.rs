//! The whole pipeline on the Cranelift backend: random graphs (kiln-ir's proptest strategies)
//! through verify, simplify, fusion and memory planning (`kiln_passes::pipeline`), then
//! `cpu::compile` and `run`, against the reference executor on the schedule (the interpreter on
//! the graph is printed on failure); and the benchmark workloads at small sizes.
//!
//! Tolerances: 1e-4 relative + 1e-5 absolute (graphs chain several math functions and
//! reductions, each a few ULP apart in f32).

use kiln_codegen::cpu;
use kiln_ir::interp::{allclose, run, Value};
use kiln_ir::testing::{arb_graph_with_inputs, GraphConfig};
use kiln_ir::Graph;
use kiln_passes::kernel::execute;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

fn cases() -> u32 {
    std::env::var("KILN_PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(256)
}

/// Runs `g` through the pipeline and the CPU backend. The backend's oracle is the reference
/// executor on the schedule (what this crate is responsible for); a difference from the
/// interpreter on the graph that the executor shares is the passes' business and is not
/// reported here (the passes have their own differential tests).
fn check_graph(g: &Graph, vals: &[Value]) -> Result<(), String> {
    let c = kiln_passes::pipeline::compile(g, &Default::default()).map_err(|e| format!("pipeline: {e}"))?;
    let sched = c.schedule;
    let want = match execute(&sched, vals) {
        Ok(w) => w,
        Err(e) => return Err(format!("execute: {e}\n{sched}")),
    };
    let exe = cpu::compile(&sched).map_err(|e| format!("cpu compile: {e}\n{sched}"))?;
    for _ in 0..2 {
        let got = exe.run(vals).map_err(|e| format!("cpu run: {e}\n{sched}"))?;
        if got.len() != want.len() {
            return Err(format!("{} outputs, want {}", got.len(), want.len()));
        }
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            if !allclose(a, b, 1e-4, 1e-5) && !huge_trig_argument(g, a, b) {
                let interp = run(g, vals).map(|v| format!("{:?}", v[i])).unwrap_or_else(|e| e.to_string());
                return Err(format!(
                    "output {i} differs\ngraph:\n{}\nschedule:\n{sched}\ncpu: {a:?}\nexecute: {b:?}\ninterp: {interp}",
                    c.graph.to_text()
                ));
            }
        }
    }
    Ok(())
}

/// math.rs returns NaN for sin/cos of arguments beyond its reduction range (|x| ≥ 2^22 in f32,
/// documented there) where the interpreter's libm still gives a value: a known divergence, not a
/// backend bug. True when the graph has a Sin or Cos and every mismatch is our NaN against a
/// finite reference.
fn huge_trig_argument(g: &Graph, got: &Value, want: &Value) -> bool {
    use kiln_ir::{Op, UnaryOp};
    let trig = g.node_ids().any(|n| matches!(g.node(n).op, Op::Unary(UnaryOp::Sin | UnaryOp::Cos)));
    trig && got.dtype() == want.dtype() && {
        let (x, y) = (got.to_f64_vec(), want.to_f64_vec());
        x.iter()
            .zip(&y)
            .all(|(p, q)| p == q || (p - q).abs() <= 1e-5 + 1e-4 * q.abs() || (p.is_nan() && q.is_finite()))
    }
}

proptest! {
    #![proptest_config(Config { cases: cases(), rng_seed: RngSeed::Fixed(0x6b69_6c6e_0002), failure_persistence: None, ..Config::default() })]

    #[test]
    fn random_graphs_through_the_pipeline((g, inputs) in arb_graph_with_inputs(GraphConfig::default())) {
        let vals: Vec<Value> = g
            .inputs()
            .iter()
            .zip(&inputs)
            .map(|(&i, l)| Value::from_literal(l, &g.node(i).shape).unwrap())
            .collect();
        check_graph(&g, &vals).map_err(TestCaseError::fail)?;
    }
}

fn inputs_of(g: &Graph) -> Vec<Value> {
    kiln_passes::workloads::sample_inputs(g)
}

#[test]
fn workloads_at_small_sizes() {
    let graphs = [
        kiln_passes::workloads::w1(37, true).unwrap(),
        kiln_passes::workloads::w1(100_003, true).unwrap(),
        kiln_passes::workloads::linear_regression(8).unwrap(),
        kiln_passes::workloads::mlp(4, &[6, 5, 7, 3]).unwrap(),
        kiln_passes::workloads::mlp(64, &[100, 130, 70, 10]).unwrap(),
        kiln_passes::workloads::layer_norm_gelu(3, 8).unwrap(),
        kiln_passes::workloads::layer_norm_gelu(67, 129).unwrap(),
        kiln_passes::workloads::cube_second_derivative().unwrap(),
    ];
    for g in graphs {
        check_graph(&g, &inputs_of(&g)).unwrap();
    }
}
