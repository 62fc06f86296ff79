//! Where a first call's time goes: the W3 train step (MLP 784-1024-1024-10, batch 256) traced,
//! compiled and run once in a fresh process, then again (cache hits):
//! `cargo run --release -p kiln-frontend --example first_call`.
use kiln_frontend::nn::functional::{cross_entropy, linear};
use kiln_frontend::{jit_stats, no_grad, realize, Tensor};
use std::time::Instant;

fn main() -> kiln_frontend::Result<()> {
    let rand = |shape: &[usize], scale: f32| {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|i| ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * scale).collect();
        Tensor::from_vec(v, shape)
    };
    let x = rand(&[256, 784], 1.0)?;
    let labels = Tensor::from_vec((0..256).map(|i| (i % 10) as i64).collect::<Vec<_>>(), &[256])?;
    let dims = [(1024, 784), (1024, 1024), (10, 1024)];
    let mut params = vec![];
    for (o, i) in dims {
        params.push(rand(&[o, i], 0.05)?.requires_grad_(true));
        params.push(rand(&[o], 0.05)?.requires_grad_(true));
    }
    let step = || -> kiln_frontend::Result<()> {
        let p = &params;
        let h = linear(&x, &p[0], Some(&p[1]))?.relu();
        let h = linear(&h, &p[2], Some(&p[3]))?.relu();
        let loss = cross_entropy(&linear(&h, &p[4], Some(&p[5]))?, &labels)?;
        loss.backward()?;
        {
            let _g = no_grad();
            for p in p {
                let g = p.grad().expect("grad");
                p.sub_(&(&g * 0.01))?;
            }
        }
        for p in p {
            p.set_grad(None)?;
        }
        realize(&p.iter().collect::<Vec<_>>())
    };
    for i in 0..3 {
        let t = Instant::now();
        step()?;
        let s = jit_stats();
        println!(
            "step {i}: {:.2} ms (compiled so far: {} graphs, {:.2} ms)",
            t.elapsed().as_secs_f64() * 1e3,
            s.misses,
            s.compile_seconds * 1e3
        );
    }
    Ok(())
}
