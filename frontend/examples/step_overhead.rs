//! What a compile-cache hit costs: a tiny training step (W2's shape: `[32, 1]` linear regression,
//! backward, SGD update) or a second derivative of `x³` at a scalar (W5), repeated.
//!
//! `cargo run --release -p kiln-frontend --example step_overhead -- [w2|w5] [steps]`; under
//! `valgrind --tool=callgrind` the instruction count per step does not depend on machine load.
use kiln_frontend::autograd::{grad, GradOptions};
use kiln_frontend::{no_grad, Result, Tensor};
use std::time::Instant;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "w2".into());
    let steps: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(20000);
    let t = Instant::now();
    match mode.as_str() {
        "w5" => second_derivative(steps)?,
        _ => linear_regression(steps)?,
    }
    println!("{mode}: {:.2} µs/step", t.elapsed().as_secs_f64() * 1e6 / steps as f64);
    Ok(())
}

fn linear_regression(steps: usize) -> Result<()> {
    let xs: Vec<f32> = (0..32).map(|i| i as f32 / 32.0).collect();
    let ys: Vec<f32> = xs.iter().map(|x| 2.0 * x + 1.0).collect();
    let x = Tensor::from_vec(xs, &[32, 1])?;
    let y = Tensor::from_vec(ys, &[32, 1])?;
    let w = Tensor::from_vec(vec![0.0f32], &[1, 1])?.requires_grad_(true);
    let b = Tensor::from_vec(vec![0.0f32], &[1, 1])?.requires_grad_(true);
    for _ in 0..steps {
        let err = x.matmul(&w)?.add(&b)?.sub(&y)?;
        let loss = (&err * &err).sum() * 0.5;
        loss.backward()?;
        let (gw, gb) = (w.grad().expect("w.grad"), b.grad().expect("b.grad"));
        {
            let _g = no_grad();
            w.sub_(&(&gw * 0.01))?;
            b.sub_(&(&gb * 0.01))?;
        }
        gw.zero_()?;
        gb.zero_()?;
    }
    println!("w = {:.4}, b = {:.4}", w.item()?, b.item()?);
    Ok(())
}

fn second_derivative(steps: usize) -> Result<()> {
    let x = Tensor::from_vec(vec![3.0f32], &[])?.requires_grad_(true);
    let mut h = 0.0;
    for _ in 0..steps {
        let opts = GradOptions { create_graph: true, ..Default::default() };
        let g = grad(&[&x.pow(3.0)], &[&x], opts)?.remove(0).expect("dy/dx");
        let d2 = grad(&[&g], &[&x], GradOptions::default())?.remove(0).expect("d2y/dx2");
        h = d2.item()?;
    }
    println!("d²/dx² x³ at 3 = {h}");
    Ok(())
}
