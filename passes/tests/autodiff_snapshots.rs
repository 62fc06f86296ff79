//! The reverse graph autodiff appends, for each op and for the composites, as IR text
//! (insta snapshots: the input text, then the graph with its gradients as extra outputs).

use kiln_ir::{parse, DType, Graph, NodeId, Op};
use kiln_passes::{grad, ones_like};

/// Parses `src`, differentiates every output (seeded with ones for scalars, with an input
/// `grad_out{k}` otherwise) with respect to every float input not marked `param=false`-free
/// (all float inputs), and returns the text before and after.
fn differentiate(src: &str) -> String {
    let mut g: Graph = parse(src).unwrap();
    let before = g.to_text();
    let outputs = g.outputs().to_vec();
    let seeds: Vec<NodeId> = outputs
        .iter()
        .enumerate()
        .map(|(k, &o)| {
            let n = g.node(o);
            if n.shape.rank() == 0 {
                ones_like(&mut g, o)
            } else {
                let (d, s) = (n.dtype, n.shape.clone());
                g.input(format!("grad_out{k}"), d, s)
            }
        })
        .collect();
    let wrt: Vec<NodeId> = g
        .inputs()
        .iter()
        .copied()
        .filter(|&i| {
            g.node(i).dtype.is_float() && !g.input_name(i).is_some_and(|n| n.starts_with("grad_out"))
        })
        .collect();
    let grads = grad(&mut g, &outputs, &seeds, &wrt).unwrap();
    let mut outs = outputs.clone();
    let mut notes = Vec::new();
    for (w, d) in wrt.iter().zip(&grads) {
        let name = g.input_name(*w).unwrap().to_string();
        match d {
            Some(d) => outs.push(*d),
            None => notes.push(format!("# d/d{name}: no gradient")),
        }
    }
    g.set_outputs(outs);
    g.verify().unwrap();
    assert!(matches!(g.node(g.inputs()[0]).op, Op::Input { .. }));
    let mut after = g.to_text();
    for n in notes {
        after.push_str(&n);
        after.push('\n');
    }
    format!("{}\n---- after autodiff ----\n{after}", before.trim_end())
}

macro_rules! snap {
    ($($name:ident: $src:expr;)*) => {
        $(
            #[test]
            fn $name() {
                insta::assert_snapshot!(stringify!($name), differentiate($src));
            }
        )*
    };
}

const UNARY: &str = "%0 = Input() {name=\"x\"} : f32[3]\n%1 = OP(%0) : f32[3]\nreturn %1\n";

fn unary(op: &str) -> String {
    UNARY.replace("OP", op)
}

#[test]
fn every_unary_op() {
    for op in [
        "Neg",
        "Abs",
        "Exp",
        "Log",
        "Sqrt",
        "Reciprocal",
        "Tanh",
        "Sigmoid",
        "Relu",
        "Erf",
        "Sin",
        "Cos",
        "Sign",
    ] {
        insta::assert_snapshot!(format!("unary_{}", op.to_lowercase()), differentiate(&unary(op)));
    }
}

#[test]
fn every_binary_op_with_broadcasting() {
    for op in ["Add", "Sub", "Mul", "Div", "Pow", "Max", "Min"] {
        let src = format!(
            "%0 = Input() {{name=\"a\"}} : f32[2,3]\n%1 = Input() {{name=\"b\"}} : f32[3]\n%2 = {op}(%0, %1) : f32[2,3]\nreturn %2\n"
        );
        insta::assert_snapshot!(format!("binary_{}", op.to_lowercase()), differentiate(&src));
    }
}

snap! {
    pow_constant_exponent: "%0 = Input() {name=\"x\"} : f32[3]\n%1 = Constant() {value=[2.0]} : f32[]\n%2 = Pow(%0, %1) : f32[3]\nreturn %2\n";
    compare_and_where: "%0 = Input() {name=\"c\"} : f32[3]\n%1 = Input() {name=\"x\"} : f32[3]\n%2 = Input() {name=\"y\"} : f32[]\n%3 = Constant() {value=[0.0]} : f32[]\n%4 = Greater(%0, %3) : bool[3]\n%5 = Where(%4, %1, %2) : f32[3]\nreturn %5\n";
    cast_f32_to_f64: "%0 = Input() {name=\"x\"} : f32[3]\n%1 = Cast(%0) {to=f64} : f64[3]\nreturn %1\n";
    reduce_sum: "%0 = Input() {name=\"x\"} : f32[2,3]\n%1 = ReduceSum(%0) {axes=[1], keepdims=false} : f32[2]\nreturn %1\n";
    reduce_mean_keepdims: "%0 = Input() {name=\"x\"} : f32[2,3]\n%1 = ReduceMean(%0) {axes=[0], keepdims=true} : f32[1,3]\nreturn %1\n";
    reduce_max: "%0 = Input() {name=\"x\"} : f32[2,3]\n%1 = ReduceMax(%0) {axes=[-1], keepdims=false} : f32[2]\nreturn %1\n";
    matmul_batched: "%0 = Input() {name=\"a\"} : f32[4,2,3]\n%1 = Input() {name=\"b\"} : f32[3,5]\n%2 = MatMul(%0, %1) : f32[4,2,5]\nreturn %2\n";
    matmul_vector: "%0 = Input() {name=\"a\"} : f32[3]\n%1 = Input() {name=\"b\"} : f32[3,5]\n%2 = MatMul(%0, %1) : f32[5]\nreturn %2\n";
    reshape: "%0 = Input() {name=\"x\"} : f32[2,3]\n%1 = Reshape(%0) {shape=[3,2]} : f32[3,2]\nreturn %1\n";
    transpose: "%0 = Input() {name=\"x\"} : f32[2,3,4]\n%1 = Transpose(%0) {perm=[2,0,1]} : f32[4,2,3]\nreturn %1\n";
    expand: "%0 = Input() {name=\"x\"} : f32[3,1]\n%1 = Expand(%0) {shape=[2,3,4]} : f32[2,3,4]\nreturn %1\n";
    slice_strided: "%0 = Input() {name=\"x\"} : f32[7]\n%1 = Slice(%0) {starts=[1], ends=[7], axes=[0], steps=[2]} : f32[3]\nreturn %1\n";
    slice_reversed: "%0 = Input() {name=\"x\"} : f32[5,2]\n%1 = Slice(%0) {starts=[-1], ends=[0], axes=[0], steps=[-2]} : f32[2,2]\nreturn %1\n";
    concat: "%0 = Input() {name=\"a\"} : f32[2,1]\n%1 = Input() {name=\"b\"} : f32[2,3]\n%2 = Concat(%0, %1) {axis=-1} : f32[2,4]\nreturn %2\n";
    unreached_input_gets_none: "%0 = Input() {name=\"x\"} : f32[3]\n%1 = Input() {name=\"unused\"} : f32[3]\n%2 = Exp(%0) : f32[3]\nreturn %2\n";
    only_needed_nodes_are_built: "%0 = Input() {name=\"x\"} : f32[3]\n%1 = Input() {name=\"k\"} : i64[3]\n%2 = Cast(%1) {to=f32} : f32[3]\n%3 = Mul(%0, %2) : f32[3]\nreturn %3\n";
    square_times_exp: "%0 = Input() {name=\"x\"} : f32[16]\n%1 = Constant() {value=[2.0]} : f32[]\n%2 = Pow(%0, %1) : f32[16]\n%3 = Exp(%0) : f32[16]\n%4 = Mul(%2, %3) : f32[16]\nreturn %4\n";
    seed_w_x_plus_b: "%0 = Input() {name=\"x\"} : f32[1]\n%1 = Input() {name=\"w\", param=true} : f32[1]\n%2 = Input() {name=\"b\", param=true} : f32[1]\n%3 = Mul(%1, %0) : f32[1]\n%4 = Add(%3, %2) : f32[1]\nreturn %4\n";
}

/// A graph built with the composite builders, printed, then differentiated from its text.
fn composite(build: impl FnOnce(&mut Graph) -> NodeId) -> String {
    let mut g = Graph::new();
    let y = build(&mut g);
    g.set_outputs(vec![y]);
    differentiate(&g.to_text())
}

#[test]
fn mlp_layer_with_softmax_cross_entropy() {
    insta::assert_snapshot!(composite(|g| {
        let x = g.input("x", DType::F32, [4, 8]);
        let w = g.param("w", DType::F32, [8, 3]);
        let b = g.param("b", DType::F32, [3]);
        let t = g.input("onehot", DType::Bool, [4, 3]);
        let h = g.matmul(x, w).unwrap();
        let logits = g.add_(h, b).unwrap();
        let tf = g.cast(t, DType::F32).unwrap();
        g.softmax_cross_entropy(logits, tf).unwrap()
    }));
}

#[test]
fn layer_norm_and_gelu() {
    insta::assert_snapshot!(composite(|g| {
        let x = g.input("x", DType::F32, [4, 8]);
        let gamma = g.param("g", DType::F32, [8]);
        let beta = g.param("b", DType::F32, [8]);
        let w = g.input("w", DType::Bool, [4, 8]);
        let n = g.layer_norm(x, 1e-5).unwrap();
        let s = g.mul(n, gamma).unwrap();
        let t = g.add_(s, beta).unwrap();
        let y = g.gelu(t).unwrap();
        let wf = g.cast(w, DType::F32).unwrap();
        let yw = g.mul(y, wf).unwrap();
        g.reduce(kiln_ir::ReduceOp::Sum, yw, vec![], false).unwrap()
    }));
}

#[test]
fn second_order_of_cube() {
    // d²/dx² x³ at the IR level: differentiate the gradient again.
    let mut g = parse("%0 = Input() {name=\"x\"} : f64[]\n%1 = Constant() {value=[3.0]} : f64[]\n%2 = Pow(%0, %1) : f64[]\nreturn %2\n").unwrap();
    let (x, y) = (g.inputs()[0], g.outputs()[0]);
    let s = ones_like(&mut g, y);
    let d1 = grad(&mut g, &[y], &[s], &[x]).unwrap()[0].unwrap();
    let s2 = ones_like(&mut g, d1);
    let d2 = grad(&mut g, &[d1], &[s2], &[x]).unwrap()[0].unwrap();
    g.set_outputs(vec![y, d1, d2]);
    g.verify().unwrap();
    let out = kiln_ir::interp::run(&g, &[kiln_ir::interp::Value::from_f64(DType::F64, [], &[5.0]).unwrap()])
        .unwrap();
    let vals: Vec<f64> = out.iter().map(|v| v.scalar_f64().unwrap()).collect();
    assert_eq!(vals, vec![125.0, 75.0, 30.0]);
    insta::assert_snapshot!(g.to_text());
}
