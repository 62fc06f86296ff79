//! The DOT form (snapshots, styles) and the structural hash (what it covers and what it ignores).

use kiln_ir::testing::{arb_graph, sample_every_op, sample_linear, sample_square_exp, GraphConfig};
use kiln_ir::{parse, DType, DotCluster, DotStyle, Graph, Literal, NodeId, Op};
use proptest::prelude::*;
use std::collections::BTreeMap;

// ----- DOT ---------------------------------------------------------------------------------------

#[test]
fn snapshot_linear_dot() {
    insta::assert_snapshot!(sample_linear().to_dot());
}

#[test]
fn snapshot_square_exp_dot() {
    insta::assert_snapshot!(sample_square_exp().to_dot());
}

#[test]
fn snapshot_styled_dot() {
    let g = parse(
        r#"%0 = Input() {name="x \"in\""} : f32[4]
%1 = Input() {name="w", param=true} : f32[4]
%2 = Constant() {value=[1.0,2.0,3.0,4.0,5.0,6.0,7.0,8.0]} : f32[2,4]
%3 = Constant() {value=[0.5,0.5,0.5,0.5,0.5]} : f32[5]
%4 = Mul(%0, %1) : f32[4]
%5 = Tanh(%4) : f32[4]
%6 = Add(%5, %2) : f32[2,4]
%7 = ReduceSum(%6) {axes=[1], keepdims=false} : f32[2]
return %7, %5"#,
    )
    .unwrap();
    let ids: Vec<NodeId> = g.topo_order().unwrap();
    let style = DotStyle {
        title: Some("fused \"demo\"".into()),
        fill: BTreeMap::from([(ids[7], "salmon".to_string())]),
        notes: BTreeMap::from([(ids[4], "saved for backward".to_string())]),
        clusters: vec![DotCluster {
            label: "fused kernel 0".into(),
            nodes: vec![ids[4], ids[5], ids[6]],
            color: Some("blue".into()),
        }],
    };
    insta::assert_snapshot!(g.to_dot_with(&style));
}

#[test]
fn dot_lists_every_node_and_edge() {
    let g = sample_every_op();
    let dot = g.to_dot();
    assert_eq!(dot, g.to_dot(), "deterministic");
    for k in 0..g.len() {
        assert!(dot.contains(&format!("\n  n{k} [label=\"%{k} ")), "node n{k} missing");
    }
    let edges: usize = g.node_ids().map(|id| g.operands(id).len()).sum();
    assert_eq!(dot.matches(" -> n").count(), edges);
    assert_eq!(dot.matches(" -> out").count(), g.outputs().len());
    // Labels stay short for big constants.
    let big = parse("%0 = Constant() {value=[1,2,3,4,5,6]} : i64[2,3]\nreturn %0").unwrap();
    assert!(big.to_dot().contains("label=\"%0 Constant\\n<6 values>\\ni64[2,3]\""), "{}", big.to_dot());
}

// ----- structural hash --------------------------------------------------------------------------

/// `z = w*x + b` with the nodes created in one of several orders and inputs given other names.
fn linear(order: u8, names: [&str; 3]) -> Graph {
    let mut g = Graph::new();
    let (x, w, b, wx, z);
    match order {
        0 => {
            x = g.input(names[0], DType::F32, [2, 3]);
            w = g.param(names[1], DType::F32, [3]);
            b = g.param(names[2], DType::F32, []);
            wx = g.mul(w, x).unwrap();
            z = g.add_(wx, b).unwrap();
        }
        _ => {
            // Unrelated nodes first (dead, but the same in both), then the inputs interleaved.
            let c = g.scalar(DType::F32, 2.0);
            x = g.input(names[0], DType::F32, [2, 3]);
            let _ = g.mul(x, c).unwrap();
            w = g.param(names[1], DType::F32, [3]);
            wx = g.mul(w, x).unwrap();
            b = g.param(names[2], DType::F32, []);
            z = g.add_(wx, b).unwrap();
            g.set_outputs(vec![z]);
            return g;
        }
    }
    let c = g.scalar(DType::F32, 2.0);
    let _ = g.mul(x, c).unwrap();
    g.set_outputs(vec![z]);
    g
}

#[test]
fn hash_ignores_insertion_order_and_input_names() {
    let a = linear(0, ["x", "w", "b"]);
    let b = linear(1, ["x", "w", "b"]);
    let c = linear(1, ["input", "weight", "bias"]);
    assert_ne!(a.to_text(), b.to_text(), "the orders really differ");
    assert_eq!(a.structural_hash(), b.structural_hash());
    assert_eq!(a.structural_hash(), c.structural_hash());
}

#[test]
fn hash_is_stable_across_runs() {
    // Pinned: a change here invalidates every on-disk compile cache, so it must be deliberate.
    assert_eq!(sample_linear().structural_hash(), PINNED_LINEAR, "{:#x}", sample_linear().structural_hash());
    assert_eq!(sample_linear().structural_hash(), sample_linear().structural_hash());
}

const PINNED_LINEAR: u64 = 0xb12c_2c47_37f4_24f0;

/// The hash of the text `body` (with `x: f32[2,3]` and `y: f32[2,3]` predefined).
fn h(body: &str) -> u64 {
    let src =
        format!("%x = Input() {{name=\"x\"}} : f32[2,3]\n%y = Input() {{name=\"y\"}} : f32[2,3]\n{body}");
    parse(&src).unwrap_or_else(|e| panic!("{e}\n{src}")).structural_hash()
}

#[test]
fn hash_changes_with_every_ingredient() {
    let base =
        h("%r = Sub(%x, %y) : f32[2,3]\n%s = ReduceSum(%r) {axes=[1], keepdims=false} : f32[2]\nreturn %s");
    let variants = [
        ("operand order", h("%r = Sub(%y, %x) : f32[2,3]\n%s = ReduceSum(%r) {axes=[1], keepdims=false} : f32[2]\nreturn %s")),
        ("op", h("%r = Add(%x, %y) : f32[2,3]\n%s = ReduceSum(%r) {axes=[1], keepdims=false} : f32[2]\nreturn %s")),
        ("reduce op", h("%r = Sub(%x, %y) : f32[2,3]\n%s = ReduceMax(%r) {axes=[1], keepdims=false} : f32[2]\nreturn %s")),
        ("axes", h("%r = Sub(%x, %y) : f32[2,3]\n%s = ReduceSum(%r) {axes=[0], keepdims=false} : f32[3]\nreturn %s")),
        ("axes spelling", h("%r = Sub(%x, %y) : f32[2,3]\n%s = ReduceSum(%r) {axes=[-1], keepdims=false} : f32[2]\nreturn %s")),
        ("keepdims", h("%r = Sub(%x, %y) : f32[2,3]\n%s = ReduceSum(%r) {axes=[1], keepdims=true} : f32[2,1]\nreturn %s")),
        ("outputs", h("%r = Sub(%x, %y) : f32[2,3]\n%s = ReduceSum(%r) {axes=[1], keepdims=false} : f32[2]\nreturn %s, %r")),
        ("output order", h("%r = Sub(%x, %y) : f32[2,3]\n%s = ReduceSum(%r) {axes=[1], keepdims=false} : f32[2]\nreturn %r, %s")),
        ("dead node", h("%r = Sub(%x, %y) : f32[2,3]\n%s = ReduceSum(%r) {axes=[1], keepdims=false} : f32[2]\n%d = Neg(%x) : f32[2,3]\nreturn %s")),
    ];
    let mut seen = vec![("base", base)];
    for (what, v) in variants {
        for (other, w) in &seen {
            assert_ne!(v, *w, "{what} hashes like {other}");
        }
        seen.push((what, v));
    }
}

#[test]
fn hash_covers_types_params_constants_and_sharing() {
    let build = |dtype: DType, shape: &[usize], param: bool, value: f64, shared: bool| {
        let mut g = Graph::new();
        let x = if param { g.param("x", dtype, shape) } else { g.input("x", dtype, shape) };
        let c = g.scalar(dtype, value);
        let a = g.mul(x, c).unwrap();
        let b = if shared { a } else { g.mul(x, c).unwrap() };
        let y = g.add_(a, b).unwrap();
        g.set_outputs(vec![y]);
        g.structural_hash()
    };
    let base = build(DType::F32, &[3], false, 2.0, true);
    let variants = [
        build(DType::F64, &[3], false, 2.0, true),
        build(DType::F32, &[4], false, 2.0, true),
        build(DType::F32, &[3, 1], false, 2.0, true),
        build(DType::F32, &[3], true, 2.0, true),
        build(DType::F32, &[3], false, 2.5, true),
        build(DType::F32, &[3], false, -0.0, true),
        build(DType::F32, &[3], false, 0.0, true),
        build(DType::F32, &[3], false, 2.0, false),
    ];
    let mut all = vec![base];
    for v in variants {
        assert!(!all.contains(&v), "collision: {all:x?} vs {v:x}");
        all.push(v);
    }
    // NaN constants hash alike whatever their payload, so printing and parsing keeps the hash.
    let nan = |bits: u32| {
        let mut g = Graph::new();
        let c = g.constant(Literal::F32(vec![f32::from_bits(bits)]), []).unwrap();
        g.set_outputs(vec![c]);
        g.structural_hash()
    };
    assert_eq!(nan(0x7fc0_0000), nan(0xffc0_0001));
    // Attributes of movement ops and casts.
    let one = |op: Op, shape: &[usize]| {
        let mut g = Graph::new();
        let x = g.input("x", DType::F32, shape);
        let y = g.add(op, &[x]).unwrap();
        g.set_outputs(vec![y]);
        g.structural_hash()
    };
    let hs = [
        one(Op::Transpose { perm: vec![1, 0] }, &[2, 2]),
        one(Op::Transpose { perm: vec![0, 1] }, &[2, 2]),
        one(Op::Reshape { shape: vec![4] }, &[2, 2]),
        one(Op::Reshape { shape: vec![4, 1] }, &[2, 2]),
        one(Op::Expand { shape: vec![2, 2] }, &[2, 1]),
        one(Op::Expand { shape: vec![3, 2, 2] }, &[2, 1]),
        one(Op::Cast { to: DType::F64 }, &[2, 2]),
        one(Op::Cast { to: DType::I64 }, &[2, 2]),
        one(Op::Slice { starts: vec![0], ends: vec![2], axes: vec![0], steps: vec![1] }, &[2, 2]),
        one(Op::Slice { starts: vec![0], ends: vec![2], axes: vec![1], steps: vec![1] }, &[2, 2]),
        one(Op::Slice { starts: vec![0], ends: vec![3], axes: vec![0], steps: vec![1] }, &[2, 2]),
        one(Op::Slice { starts: vec![-1], ends: vec![i64::MIN], axes: vec![0], steps: vec![-1] }, &[2, 2]),
        one(Op::Concat { axis: 0 }, &[2, 2]),
        one(Op::Concat { axis: -2 }, &[2, 2]),
    ];
    for (i, a) in hs.iter().enumerate() {
        for b in &hs[i + 1..] {
            assert_ne!(a, b, "attribute variants {i} collide");
        }
    }
}

/// Rebuilds `g` creating its nodes in a random topological order (inputs keep their relative
/// order, so the input list is the same) and with other input names.
fn rebuild_shuffled(g: &Graph, dice: &[u32]) -> Graph {
    let order = g.topo_order().unwrap();
    let mut made: BTreeMap<NodeId, NodeId> = BTreeMap::new();
    let mut out = Graph::new();
    let mut next_input = 0;
    let mut k = 0;
    while made.len() < order.len() {
        let ready: Vec<NodeId> = order
            .iter()
            .copied()
            .filter(|id| !made.contains_key(id))
            .filter(|&id| g.operands(id).iter().all(|o| made.contains_key(o)))
            .filter(|&id| !matches!(g.node(id).op, Op::Input { .. }) || g.inputs()[next_input] == id)
            .collect();
        let pick = ready[dice.get(k).copied().unwrap_or(0) as usize % ready.len()];
        k += 1;
        let node = g.node(pick);
        let new = match &node.op {
            Op::Input { param, .. } => {
                next_input += 1;
                let name = format!("renamed{next_input}");
                if *param {
                    out.param(name, node.dtype, node.shape.clone())
                } else {
                    out.input(name, node.dtype, node.shape.clone())
                }
            }
            Op::Constant(lit) => out.constant(lit.clone(), node.shape.clone()).unwrap(),
            op => {
                let operands: Vec<NodeId> = g.operands(pick).iter().map(|o| made[o]).collect();
                out.add(op.clone(), &operands).unwrap()
            }
        };
        made.insert(pick, new);
    }
    out.set_outputs(g.outputs().iter().map(|o| made[o]).collect());
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The same computation built in any order, from inputs of any names, hashes the same.
    #[test]
    fn hash_is_invariant_under_rebuilding(g in arb_graph(GraphConfig::exhaustive()), dice in proptest::collection::vec(any::<u32>(), 64)) {
        let r = rebuild_shuffled(&g, &dice);
        r.verify().map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(r.structural_hash(), g.structural_hash(), "{}\n{}", g.to_text(), r.to_text());
    }

    /// Changing one output changes the hash (unless the new output is an equal twin).
    #[test]
    fn hash_sees_output_changes(g in arb_graph(GraphConfig::default()), pick in any::<u32>()) {
        let mut h = g.clone();
        let ids: Vec<NodeId> = g.node_ids().collect();
        let new = ids[pick as usize % ids.len()];
        let mut outs = g.outputs().to_vec();
        outs.push(new);
        h.set_outputs(outs);
        prop_assert_ne!(h.structural_hash(), g.structural_hash());
    }

    /// DOT output is total and deterministic on any valid graph.
    #[test]
    fn dot_is_deterministic(g in arb_graph(GraphConfig::exhaustive())) {
        let dot = g.to_dot();
        prop_assert_eq!(&dot, &g.clone().to_dot());
        let framed = dot.starts_with("digraph kiln {\n") && dot.ends_with("}\n");
        prop_assert!(framed);
    }
}
