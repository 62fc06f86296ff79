//! What a dump holds: on every workload, the partition recovered from the schedule covers the
//! graph, the fused DOT draws one box per kernel, and the figures agree with the report.

use kiln_ir::{DotStyle, Op};
use kiln_passes::pipeline::compile_dumped;
use kiln_passes::workloads;

#[test]
fn partition_covers_every_computed_node_of_every_workload() {
    let graphs = [
        ("w1", workloads::w1(64, true).unwrap()),
        ("linear_regression", workloads::linear_regression(8).unwrap()),
        ("mlp", workloads::mlp(4, &[6, 5, 3]).unwrap()),
        ("layer_norm_gelu", workloads::layer_norm_gelu(4, 8).unwrap()),
        ("cube", workloads::cube_second_derivative().unwrap()),
    ];
    for (name, g) in graphs {
        let (c, files) = compile_dumped(&g, &DotStyle::default()).unwrap();
        let file = |pass: &str, kind: &str| {
            files
                .iter()
                .find(|f| f.pass == pass && f.kind == kind)
                .unwrap_or_else(|| panic!("{name}: {pass}.{kind}"))
        };
        // Stages in order, numbered densely.
        let orders: Vec<(usize, &str)> = files.iter().map(|f| (f.order, f.pass)).collect();
        assert!(orders.windows(2).all(|w| w[0].0 <= w[1].0), "{name}: {orders:?}");
        assert_eq!(file("simplify", "txt").body, c.graph.to_text(), "{name}");

        let plan: serde_json::Value = serde_json::from_str(&file("plan", "json").body).unwrap();
        let steps = plan["steps"].as_array().unwrap();
        assert_eq!(steps.len(), c.schedule.steps.len(), "{name}");
        // Every live node that is not an input or a constant is computed by some step, and each
        // step computes the nodes whose buffers it writes.
        let order = c.graph.topo_order().unwrap();
        let live = c.graph.live_mask();
        let computed: std::collections::BTreeSet<u64> = steps
            .iter()
            .flat_map(|s| s["nodes"].as_array().unwrap().iter().map(|n| n.as_u64().unwrap()))
            .collect();
        for (k, &id) in order.iter().enumerate() {
            let op = &c.graph.node(id).op;
            if live[id.index()] && !matches!(op, Op::Input { .. } | Op::Constant(_)) {
                assert!(computed.contains(&(k as u64)), "{name}: %{k} ({}) is in no step", op.name());
            }
        }
        let buffers = plan["buffers"].as_array().unwrap();
        for s in steps {
            for w in s["writes"].as_array().unwrap() {
                let node = &buffers[w.as_u64().unwrap() as usize]["node"];
                assert!(
                    s["nodes"].as_array().unwrap().contains(node),
                    "{name}: {} writes %{node}",
                    s["name"]
                );
            }
        }
        // The figures are the report's.
        let f = &plan["figures"];
        assert_eq!(f["kernels"].as_u64(), Some(c.report.kernels as u64), "{name}");
        assert_eq!(f["peak_bytes"].as_u64(), Some(c.report.peak_bytes as u64), "{name}");
        assert_eq!(f["kept_bytes"].as_u64(), Some(c.report.kept_bytes as u64), "{name}");
        // One dashed box per step that computes a node of its own, at most one per step.
        let dot = &file("fusion", "dot").body;
        let boxes = dot.matches("subgraph cluster_").count();
        assert!(boxes >= 1 && boxes <= steps.len(), "{name}: {boxes} boxes for {} steps", steps.len());
    }
}
