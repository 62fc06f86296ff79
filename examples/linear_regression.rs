//! The seed's linear regression (SEEDS 10.1) with kiln's Tensor API, written as in PyTorch:
//! data `y = 2x + 3 + N(0, 1)`, loss `0.5·Σ(x@w + b − y)²`, 500 SGD steps with lr 0.005.
//!
//! Run: `cargo run --release --example linear_regression`

use kiln::{no_grad, Tensor};

fn main() -> kiln::Result<()> {
    kiln::manual_seed(0);
    let (batch, steps, lr) = (32, 500, 0.005);
    let mut w = Tensor::rand(&[1, 1]).requires_grad_(true);
    let mut b = Tensor::zeros(&[1, 1]).requires_grad_(true);
    let start = std::time::Instant::now();
    for step in 0..steps {
        let x = Tensor::rand(&[batch, 1]) * 5.0;
        let y = &x * 2.0 + 3.0 + Tensor::randn(&[batch, 1]);
        let err = x.matmul(&w)?.add(&b)?.sub(&y)?;
        let loss = (&err * &err).sum() * 0.5;
        loss.backward()?;
        {
            let _g = no_grad();
            w -= &(w.grad().expect("w has a gradient") * lr);
            b -= &(b.grad().expect("b has a gradient") * lr);
        }
        w.grad().expect("w has a gradient").zero_()?;
        b.grad().expect("b has a gradient").zero_()?;
        if step % 100 == 0 || step == steps - 1 {
            println!("step {step:>3}  loss {:>9.3}  w {:.4}  b {:.4}", loss.item()?, w.item()?, b.item()?);
        }
    }
    let per_step = start.elapsed() / steps as u32;
    println!("fitted: w = {:.3} (true 2), b = {:.3} (true 3); {per_step:?} per step", w.item()?, b.item()?);
    println!("w = {w}\nb = {b}");
    let c = kiln::jit_stats();
    println!(
        "backend {}: compile cache {} hits / {} misses ({:.1}% hits), {:.1} ms compiling",
        kiln::backend_name()?,
        c.hits,
        c.misses,
        100.0 * c.hit_rate(),
        c.compile_seconds * 1e3
    );
    Ok(())
}
