//! Per-step overhead of a tiny training step (W2's shape): run with `perf record` to see where a
//! compile-cache hit spends its time.
use kiln_frontend::{no_grad, Tensor};
use std::time::Instant;

fn main() -> Result<(), kiln_frontend::Error> {
    let steps: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(20000);
    let xs: Vec<f32> = (0..32).map(|i| i as f32 / 32.0).collect();
    let ys: Vec<f32> = xs.iter().map(|x| 2.0 * x + 1.0).collect();
    let x = Tensor::from_vec(xs, &[32, 1])?;
    let y = Tensor::from_vec(ys, &[32, 1])?;
    let w = Tensor::from_vec(vec![0.0f32], &[1, 1])?.requires_grad_(true);
    let b = Tensor::from_vec(vec![0.0f32], &[1, 1])?.requires_grad_(true);
    let t = Instant::now();
    let mut phase = [0f64; 4];
    for _ in 0..steps {
        let t0 = Instant::now();
        let err = x.matmul(&w)?.add(&b)?.sub(&y)?;
        let loss = (&err * &err).sum() * 0.5;
        let t1 = Instant::now();
        loss.backward()?;
        let t2 = Instant::now();
        let (gw, gb) = (w.grad().unwrap(), b.grad().unwrap());
        {
            let _g = no_grad();
            w.sub_(&(&gw * 0.01))?;
            b.sub_(&(&gb * 0.01))?;
        }
        gw.zero_()?;
        gb.zero_()?;
        let t3 = Instant::now();
        drop((err, loss, gw, gb));
        let t4 = Instant::now();
        for (p, d) in phase.iter_mut().zip([t1 - t0, t2 - t1, t3 - t2, t4 - t3]) {
            *p += d.as_secs_f64();
        }
    }
    let us = |s: f64| s * 1e6 / steps as f64;
    println!(
        "forward {:.2} µs, backward {:.2} µs, update {:.2} µs, drops {:.2} µs",
        us(phase[0]),
        us(phase[1]),
        us(phase[2]),
        us(phase[3])
    );
    println!("w={:.4} b={:.4}", w.item()?, b.item()?);
    println!("{:.2} µs/step", t.elapsed().as_secs_f64() * 1e6 / steps as f64);
    Ok(())
}
