//! The benchmark workloads (W1–W5 of the shared bench definitions) and the seeds' small graphs as
//! training-step graphs: forward plus the reverse graph from [`crate::grad`]. Used by snapshot
//! tests, differential tests of backends and the benchmark harness, so all of them see the same
//! graphs.

use crate::autodiff::{grad, ones_like};
use crate::error::Result;
use kiln_ir::{DType, Graph, NodeId, ReduceOp, UnaryOp};

/// Differentiates scalar `loss` w.r.t. `wrt` and sets the outputs to `[loss, grads...]`.
fn with_grads(mut g: Graph, loss: NodeId, wrt: &[NodeId]) -> Result<Graph> {
    let seed = ones_like(&mut g, loss);
    let gs = grad(&mut g, &[loss], &[seed], wrt)?;
    let mut outs = vec![loss];
    outs.extend(gs.into_iter().map(|d| d.expect("every parameter reaches the loss")));
    g.set_outputs(outs);
    Ok(g)
}

/// W1: `y = x²·eˣ` on `n` elements; outputs `[y]`, or `[y, dx]` with `backward` (seed: ones).
pub fn w1(n: usize, backward: bool) -> Result<Graph> {
    let mut g = Graph::new();
    let x = g.input("x", DType::F32, [n]);
    let two = g.scalar(DType::F32, 2.0);
    let sq = g.pow(x, two)?;
    let e = g.unary(UnaryOp::Exp, x)?;
    let y = g.mul(sq, e)?;
    let mut outs = vec![y];
    if backward {
        let seed = ones_like(&mut g, y);
        outs.push(grad(&mut g, &[y], &[seed], &[x])?[0].expect("x reaches y"));
    }
    g.set_outputs(outs);
    Ok(g)
}

/// W2 / SEEDS 10.1: one linear-regression step, `loss = 0.5·Σ(x@w + b − y)²`; outputs
/// `[loss, dw, db]`.
pub fn linear_regression(batch: usize) -> Result<Graph> {
    let mut g = Graph::new();
    let x = g.input("x", DType::F32, [batch, 1]);
    let y = g.input("y", DType::F32, [batch, 1]);
    let w = g.param("w", DType::F32, [1, 1]);
    let b = g.param("b", DType::F32, [1, 1]);
    let xw = g.matmul(x, w)?;
    let p = g.add_(xw, b)?;
    let e = g.sub(p, y)?;
    let sq = g.mul(e, e)?;
    let s = g.reduce(ReduceOp::Sum, sq, vec![], false)?;
    let half = g.scalar(DType::F32, 0.5);
    let loss = g.mul(half, s)?;
    with_grads(g, loss, &[w, b])
}

/// W3: MLP train step `dims[0] → dims[1] → ... → classes` (ReLU between layers, weights `[in,
/// out]`), mean softmax cross-entropy against a one-hot `labels` input; outputs
/// `[loss, dW1, db1, ...]`.
pub fn mlp(batch: usize, dims: &[usize]) -> Result<Graph> {
    let mut g = Graph::new();
    let x = g.input("x", DType::F32, [batch, dims[0]]);
    let labels = g.input("labels", DType::F32, [batch, *dims.last().expect("at least one layer")]);
    let mut h = x;
    let mut params = Vec::new();
    for (i, win) in dims.windows(2).enumerate() {
        let w = g.param(format!("w{i}"), DType::F32, [win[0], win[1]]);
        let b = g.param(format!("b{i}"), DType::F32, [win[1]]);
        params.extend([w, b]);
        let z = g.matmul(h, w)?;
        let z = g.add_(z, b)?;
        h = if i + 2 < dims.len() { g.unary(UnaryOp::Relu, z)? } else { z };
    }
    let loss = g.softmax_cross_entropy(h, labels)?;
    with_grads(g, loss, &params)
}

/// W4: `sum(gelu(layer_norm(x)·γ + β) · w)` with `x: [rows, cols]`; outputs `[loss, dx, dγ, dβ]`.
pub fn layer_norm_gelu(rows: usize, cols: usize) -> Result<Graph> {
    let mut g = Graph::new();
    let x = g.input("x", DType::F32, [rows, cols]);
    let gamma = g.param("g", DType::F32, [cols]);
    let beta = g.param("b", DType::F32, [cols]);
    let w = g.input("w", DType::F32, [rows, cols]);
    let n = g.layer_norm(x, 1e-5)?;
    let s = g.mul(n, gamma)?;
    let t = g.add_(s, beta)?;
    let y = g.gelu(t)?;
    let yw = g.mul(y, w)?;
    let loss = g.reduce(ReduceOp::Sum, yw, vec![], false)?;
    with_grads(g, loss, &[x, gamma, beta])
}

/// W5: `d²/dx² x³` at a scalar; outputs `[x³, 3x², 6x]`.
pub fn cube_second_derivative() -> Result<Graph> {
    let mut g = Graph::new();
    let x = g.input("x", DType::F32, []);
    let three = g.scalar(DType::F32, 3.0);
    let y = g.pow(x, three)?;
    let s1 = ones_like(&mut g, y);
    let d1 = grad(&mut g, &[y], &[s1], &[x])?[0].expect("x reaches y");
    let s2 = ones_like(&mut g, d1);
    let d2 = grad(&mut g, &[d1], &[s2], &[x])?[0].expect("x reaches its gradient");
    g.set_outputs(vec![y, d1, d2]);
    Ok(g)
}

/// Deterministic input values for a workload graph (a small repeating pattern in `[-1, 1)`), so
/// tests of different crates run the same graphs on the same data.
pub fn sample_inputs(g: &Graph) -> Vec<kiln_ir::interp::Value> {
    g.inputs()
        .iter()
        .enumerate()
        .map(|(k, &i)| {
            let n = g.node(i);
            let data: Vec<f64> =
                (0..n.shape.numel()).map(|j| ((j * 7 + k * 3) % 11) as f64 / 5.0 - 1.0).collect();
            kiln_ir::interp::Value::from_f64(n.dtype, n.shape.clone(), &data).expect("sized to the input")
        })
        .collect()
}
