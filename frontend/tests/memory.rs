//! Resident memory stays flat over a long training loop (issue #4).

mod common;
use common::*;
use kiln_frontend::nn::functional::mse_loss;
use kiln_frontend::{manual_seed, no_grad, DType, Tensor};
use std::sync::Mutex;
use std::time::Instant;

/// VmRSS is per process: the measuring tests of this file run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Resident set size of this process in kB, from /proc/self/status.
fn rss_kb() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

struct Model {
    w: Tensor,
    b: Tensor,
}

struct Data {
    x: Tensor,
    y: Tensor,
}

fn setup() -> (Model, Data) {
    manual_seed(0);
    let x = Tensor::randn(&[64, 4]).to_dtype(DType::F64);
    let w_true = t64(&[1.5, -2.0, 0.5, 3.0], &[4, 1]);
    let y = &x.matmul(&w_true).unwrap() + 0.7;
    let y = t64(&vals(&y), &[64, 1]);
    let x = t64(&vals(&x), &[64, 4]);
    let w = Tensor::zeros_typed(&[4, 1], DType::F64).requires_grad_(true);
    let b = Tensor::zeros_typed(&[1], DType::F64).requires_grad_(true);
    (Model { w, b }, Data { x, y })
}

/// One SGD step, PyTorch style: forward, backward, update under no_grad, zero the grads.
/// `read_loss`: fetch the loss value this step (like logging it).
fn step(m: &Model, d: &Data, lr: f64, zero_with_set_none: bool, read_loss: bool) -> Option<f64> {
    let pred = &d.x.matmul(&m.w).unwrap() + &m.b;
    let loss = mse_loss(&pred, &d.y).unwrap();
    loss.backward().unwrap();
    {
        let _g = no_grad();
        for p in [&m.w, &m.b] {
            let g = p.grad().unwrap();
            p.sub_(&(&g * lr)).unwrap();
        }
    }
    for p in [&m.w, &m.b] {
        if zero_with_set_none {
            p.set_grad(None).unwrap();
        } else {
            p.grad().unwrap().zero_().unwrap();
        }
    }
    read_loss.then(|| loss.item().unwrap())
}

fn run(total: usize, warmup: usize, zero_with_set_none: bool, log_every: usize) {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let (m, d) = setup();
    let t0 = Instant::now();
    let mut first_loss = None;
    let mut rss_warm = 0;
    for i in 0..warmup {
        let l = step(&m, &d, 0.05, zero_with_set_none, i % log_every == 0);
        first_loss = first_loss.or(l);
    }
    let warm_time = t0.elapsed();
    if let Some(r) = rss_kb() {
        rss_warm = r;
    }
    let t1 = Instant::now();
    let mut last_loss = None;
    for i in warmup..total {
        last_loss =
            step(&m, &d, 0.05, zero_with_set_none, i % log_every == 0 || i + 1 == total).or(last_loss);
    }
    let steady = t1.elapsed();
    let rss_end = rss_kb().unwrap_or(rss_warm);
    let per_step = steady.as_secs_f64() / (total - warmup) as f64;
    eprintln!(
        "memory (set_none={zero_with_set_none}, log_every={log_every}): {total} steps, warm-up {warm_time:?}, \
         {:.1} µs/step after warm-up; VmRSS {rss_warm} kB -> {rss_end} kB ({:+} kB); loss {:?} -> {:?}",
        per_step * 1e6,
        rss_end as i64 - rss_warm as i64,
        first_loss,
        last_loss
    );
    // the model trained
    let l = last_loss.unwrap();
    assert!(l < 1e-6, "final loss {l}");
    assert_close(&vals(&m.w), &[1.5, -2.0, 0.5, 3.0], 1e-3);
    assert_close(&vals(&m.b), &[0.7], 1e-3);
    // and the memory stayed flat
    if rss_kb().is_some() {
        let growth = rss_end as i64 - rss_warm as i64;
        assert!(growth < 2 * 1024, "VmRSS grew by {growth} kB over {} steps", total - warmup);
    }
}

#[test]
fn training_loop_memory_is_flat_zeroing_grads_in_place() {
    run(10_000, 1_000, false, 100);
}

#[test]
fn training_loop_memory_is_flat_setting_grads_to_none() {
    run(10_000, 1_000, true, 100);
}

#[test]
fn training_loop_memory_is_flat_reading_the_loss_every_step() {
    run(10_000, 1_000, true, 1);
}

#[test]
fn mlp_training_loop_memory_is_flat() {
    use kiln_frontend::nn::functional::{cross_entropy, linear};
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    manual_seed(1);
    // two Gaussian blobs, 2 classes
    let n = 32;
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    let noise = vals(&Tensor::randn(&[n, 2]));
    for i in 0..n {
        let c = (i % 2) as f64;
        xs.push(noise[2 * i] * 0.3 + if c == 0.0 { -1.0 } else { 1.0 });
        xs.push(noise[2 * i + 1] * 0.3 + if c == 0.0 { 1.0 } else { -1.0 });
        ys.push((i % 2) as i64);
    }
    let x = Tensor::from_vec(xs.iter().map(|&v| v as f32).collect(), &[n, 2]).unwrap();
    let y = Tensor::from_vec(ys, &[n]).unwrap();
    let w1 = (Tensor::randn(&[16, 2]) * 0.5).requires_grad_(true);
    let b1 = Tensor::zeros(&[16]).requires_grad_(true);
    let w2 = (Tensor::randn(&[2, 16]) * 0.5).requires_grad_(true);
    let b2 = Tensor::zeros(&[2]).requires_grad_(true);
    let params = [&w1, &b1, &w2, &b2];
    let step = |read: bool| -> Option<f64> {
        let h = linear(&x, &w1, Some(&b1)).unwrap().tanh();
        let logits = linear(&h, &w2, Some(&b2)).unwrap();
        let loss = cross_entropy(&logits, &y).unwrap();
        loss.backward().unwrap();
        let _g = no_grad();
        for p in params {
            p.sub_(&(&p.grad().unwrap() * 0.1)).unwrap();
            p.set_grad(None).unwrap();
        }
        read.then(|| loss.item().unwrap())
    };
    let (total, warmup) = (3_000, 500);
    let first = step(true).unwrap();
    for _ in 1..warmup {
        step(false);
    }
    let rss_warm = rss_kb();
    let t = Instant::now();
    let mut last = first;
    for i in warmup..total {
        if let Some(l) = step(i % 100 == 0 || i + 1 == total) {
            last = l;
        }
    }
    let per_step = t.elapsed().as_secs_f64() / (total - warmup) as f64;
    let rss_end = rss_kb();
    eprintln!(
        "mlp: {:.1} µs/step; VmRSS {rss_warm:?} kB -> {rss_end:?} kB; loss {first} -> {last}",
        per_step * 1e6
    );
    assert!(last < 0.05 && last < first, "loss {first} -> {last}");
    if let (Some(a), Some(b)) = (rss_warm, rss_end) {
        let growth = b as i64 - a as i64;
        assert!(growth < 2 * 1024, "VmRSS grew by {growth} kB over {} steps", total - warmup);
    }
}
