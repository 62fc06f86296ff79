//! Fits `y = 2x + 3 + noise` by gradient descent on kiln's IR: the training step is one graph
//! (forward loss + the reverse graph appended by autodiff), evaluated each step by the reference
//! interpreter. This is the seed's linear regression (SEEDS 10.1) one level below the Tensor API.
//!
//! Run: `cargo run --release --example fit_line`

use kiln::ir::interp::{run, Value};
use kiln::ir::{DType, Graph, ReduceOp};
use kiln::passes::{grad, ones_like};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

const BATCH: usize = 32;
const STEPS: usize = 500;
const LR: f32 = 0.005;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // loss = 0.5 · Σ (x@w + b − y)²
    let mut g = Graph::new();
    let x = g.input("x", DType::F32, [BATCH, 1]);
    let y = g.input("y", DType::F32, [BATCH, 1]);
    let w = g.param("w", DType::F32, [1, 1]);
    let b = g.param("b", DType::F32, [1, 1]);
    let xw = g.matmul(x, w)?;
    let pred = g.add_(xw, b)?;
    let err = g.sub(pred, y)?;
    let sq = g.mul(err, err)?;
    let s = g.reduce(ReduceOp::Sum, sq, vec![], false)?;
    let half = g.scalar(DType::F32, 0.5);
    let loss = g.mul(half, s)?;
    let seed = ones_like(&mut g, loss);
    let grads = grad(&mut g, &[loss], &[seed], &[w, b])?;
    let (dw, db) = (grads[0].expect("w reaches the loss"), grads[1].expect("b reaches the loss"));
    g.set_outputs(vec![loss, dw, db]);
    g.verify()?;
    println!("training step ({} nodes):\n{g}", g.len());

    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let noise = Normal::new(0.0f32, 1.0)?;
    let mut wv: f32 = rng.random();
    let mut bv: f32 = 0.0;
    for step in 0..STEPS {
        let xs: Vec<f64> = (0..BATCH).map(|_| rng.random_range(0.0..5.0)).collect();
        let ys: Vec<f64> = xs.iter().map(|&x| 2.0 * x + 3.0 + noise.sample(&mut rng) as f64).collect();
        let out = run(
            &g,
            &[
                Value::from_f64(DType::F32, [BATCH, 1], &xs)?,
                Value::from_f64(DType::F32, [BATCH, 1], &ys)?,
                Value::from_f64(DType::F32, [1, 1], &[wv as f64])?,
                Value::from_f64(DType::F32, [1, 1], &[bv as f64])?,
            ],
        )?;
        let (l, gw, gb) =
            (out[0].scalar_f64().ok_or("loss is a scalar")?, out[1].to_f64_vec()[0], out[2].to_f64_vec()[0]);
        wv -= LR * gw as f32;
        bv -= LR * gb as f32;
        if step % 100 == 0 || step == STEPS - 1 {
            println!("step {step:>3}  loss {l:>9.3}  w {wv:.4}  b {bv:.4}");
        }
    }
    println!("fitted: w = {wv:.3} (true 2), b = {bv:.3} (true 3)");
    Ok(())
}
