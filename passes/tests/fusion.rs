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
        // The whole pipeline: verify, simplify, fusion, plan.
        let c = kiln_passes::pipeline::compile(&g, &Default::default())
            .map_err(|e| TestCaseError::fail(format!("{e}\n{}", g.to_text())))?;
        let (s, sched) = (c.graph, c.schedule);
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

/// How many instructions of the schedule's kernels are the unary op `op`.
fn count_unary(s: &kiln_passes::kernel::Schedule, op: kiln_ir::UnaryOp) -> usize {
    use kiln_passes::kernel::{KOp, Step};
    s.steps
        .iter()
        .filter_map(|st| match st {
            Step::Kernel(k) => {
                Some(k.instrs.iter().filter(|i| matches!(i.op, KOp::Unary(u, _) if u == op)).count())
            }
            Step::MatMul(_) => None,
        })
        .sum()
}

#[test]
fn layer_norm_gelu_forward_and_backward() {
    use kiln_ir::UnaryOp::{Erf, Exp};
    let mut g = kiln_passes::workloads::layer_norm_gelu(4096, 1024).unwrap();
    simplify(&mut g).unwrap();
    let s = schedule(&g).unwrap();
    // The forward kernel computes erf and exp once and stores the gradient at the GELU's
    // input; the three backward reductions read it instead of recomputing both.
    assert_eq!((count_unary(&s, Erf), count_unary(&s, Exp)), (1, 1), "{s}");
    insta::assert_snapshot!(fused(kiln_passes::workloads::layer_norm_gelu(4096, 1024).unwrap()));
}

/// `exp(x)` (or `f(x)`) summed over rows and over columns: two reductions that cannot share a
/// kernel, both needing the value at every point.
fn two_reductions_of(
    rows: usize,
    cols: usize,
    f: impl Fn(&mut Graph, kiln_ir::NodeId) -> kiln_ir::NodeId,
) -> Graph {
    let mut g = Graph::new();
    let x = g.input("x", kiln_ir::DType::F32, [rows, cols]);
    let e = f(&mut g, x);
    let y = g.mul(e, x).unwrap();
    let r = g.reduce(kiln_ir::ReduceOp::Sum, y, vec![1], false).unwrap();
    let c = g.reduce(kiln_ir::ReduceOp::Sum, e, vec![0], false).unwrap();
    g.set_outputs(vec![r, c]);
    g
}

#[test]
fn transcendental_values_needed_by_several_kernels_are_computed_once() {
    use kiln_ir::UnaryOp::Exp;
    let exp = |g: &mut Graph, x| g.unary(Exp, x).unwrap();
    let g = two_reductions_of(64, 128, exp);
    let s = schedule(&g).unwrap();
    assert_eq!(count_unary(&s, Exp), 1, "exp(x) gets a buffer:\n{s}");
    assert!(
        s.buffers.iter().any(|b| b.numel == 64 * 128 && b.role == kiln_passes::kernel::Role::Computed),
        "{s}"
    );
    let vals = kiln_passes::workloads::sample_inputs(&g);
    let (want, got) = (run(&g, &vals).unwrap(), execute(&s, &vals).unwrap());
    for (a, b) in got.iter().zip(&want) {
        assert!(allclose(a, b, 1e-5, 1e-6), "{s}\n{a:?}\nvs\n{b:?}");
    }
    // Small values are recomputed: another kernel would cost more than the exp.
    let s = schedule(&two_reductions_of(8, 16, exp)).unwrap();
    assert_eq!(count_unary(&s, Exp), 2, "{s}");
}

#[test]
fn cheap_values_needed_by_several_kernels_are_recomputed() {
    let sq = |g: &mut Graph, x| {
        let one = g.scalar(kiln_ir::DType::F32, 1.0);
        let xx = g.mul(x, x).unwrap();
        g.add_(xx, one).unwrap()
    };
    let s = schedule(&two_reductions_of(64, 128, sq)).unwrap();
    assert!(
        s.buffers.iter().all(|b| b.numel < 64 * 128 || b.role != kiln_passes::kernel::Role::Computed),
        "{s}"
    );
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
        let vals = kiln_passes::workloads::sample_inputs(&g);
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

/// Two computed buffers that are alive at the same step never share arena bytes, except a
/// buffer written in place over one that dies in that same step.
fn check_plan(s: &kiln_passes::kernel::Schedule) -> Result<(), String> {
    let live = kiln_passes::plan::live_ranges(s);
    // (buffer, arena byte range, live step range)
    type Span = (usize, (usize, usize), (usize, usize));
    let bufs: Vec<Span> = s
        .buffers
        .iter()
        .enumerate()
        .filter(|(_, b)| b.role == kiln_passes::kernel::Role::Computed)
        .filter_map(|(i, b)| {
            let (off, (a, z)) = (b.arena_offset?, live[i]?);
            Some((i, (off, off + b.bytes()), (a, z)))
        })
        .collect();
    for (i, (o1, e1), (a1, z1)) in &bufs {
        if *e1 > s.arena_bytes {
            return Err(format!("b{i} ends past the arena"));
        }
        for (j, (o2, e2), (a2, z2)) in &bufs {
            let overlap_mem = o1 < e2 && o2 < e1 && e1 > o1 && e2 > o2;
            let overlap_time = a1 <= z2 && a2 <= z1;
            let handoff = z1 == a2 || z2 == a1;
            if i < j && overlap_mem && overlap_time && !handoff {
                return Err(format!("b{i} and b{j} overlap in memory and time"));
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn memory_plans_never_overlap_live_buffers(g in kiln_ir::testing::arb_graph(GraphConfig::default().with_max_nodes(16))) {
        let mut g = g;
        simplify(&mut g).unwrap();
        let mut s = schedule(&g).unwrap();
        let plan = kiln_passes::plan_memory(&mut s);
        prop_assert!(plan.arena_bytes <= plan.naive_bytes.div_ceil(64) * 64 + 64 * s.buffers.len());
        check_plan(&s).map_err(|e| TestCaseError::fail(format!("{e}\n{s}")))?;
    }
}

#[test]
fn planned_memory_of_the_workloads() {
    let mut lines = Vec::new();
    for (name, g) in [
        ("W1 fwd+bwd 2^24", kiln_passes::workloads::w1(1 << 24, true).unwrap()),
        ("MLP 256x784-1024-1024-10", kiln_passes::workloads::mlp(256, &[784, 1024, 1024, 10]).unwrap()),
        ("LayerNorm+GELU 4096x1024", kiln_passes::workloads::layer_norm_gelu(4096, 1024).unwrap()),
    ] {
        let mut g = g;
        simplify(&mut g).unwrap();
        let mut s = schedule(&g).unwrap();
        let plan = kiln_passes::plan_memory(&mut s);
        check_plan(&s).unwrap();
        lines.push(format!(
            "{name}: {} steps, computed buffers {} B unshared, arena {} B, {} in place",
            s.steps.len(),
            plan.naive_bytes,
            plan.arena_bytes,
            plan.in_place
        ));
    }
    insta::assert_snapshot!(lines.join("\n"));
}

#[test]
fn pipeline_dumps_every_stage() {
    let dir = std::env::temp_dir().join(format!("kiln-dump-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let g = kiln_passes::workloads::w1(64, true).unwrap();
    let opts = kiln_passes::pipeline::PipelineOptions { dump_dir: Some(dir.clone()) };
    let c = kiln_passes::pipeline::compile(&g, &opts).unwrap();
    let mut names: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    let hash = format!("{:016x}", c.report.graph_hash);
    let stripped: Vec<String> = names.iter().map(|n| n.replace(&hash, "H")).collect();
    assert_eq!(
        stripped,
        [
            "H.0-input.dot",
            "H.0-input.json",
            "H.0-input.txt",
            "H.1-simplify.dot",
            "H.1-simplify.json",
            "H.1-simplify.txt",
            "H.2-fusion.dot",
            "H.2-fusion.json",
            "H.2-fusion.schedule.txt",
            "H.3-plan.dot",
            "H.3-plan.json",
            "H.3-plan.report.txt",
            "H.3-plan.schedule.txt",
        ]
    );
    let report = std::fs::read_to_string(dir.join(format!("{hash}.3-plan.report.txt"))).unwrap();
    assert!(report.contains("steps: 1 kernels, 0 matmuls"), "{report}");
    std::fs::remove_dir_all(&dir).unwrap();
}
