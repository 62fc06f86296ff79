//! The workloads (`../shared/bench/WORKLOADS.md`): their ids, inputs (drawn once from a fixed
//! seed, f32), outputs compared across runners, and tolerances.

use crate::npy::Array;
use crate::rng::Rng;
use std::collections::BTreeMap;

pub const ALL: &[&str] = &["W1-fwd", "W1", "W2", "W3", "W4", "W5", "trace"];
/// What runs when no `--workload` is given.
pub const DEFAULT: &[&str] = &["W1-fwd", "W1", "W2", "W3", "W4", "W5", "trace"];

pub const W2_STEPS: usize = 500;
pub const W2_BATCH: usize = 32;
pub const W2_LR: f64 = 0.005;
pub const W3_LR: f64 = 0.01;
pub const W3_DIMS: [usize; 4] = [784, 1024, 1024, 10];
pub const W3_BATCH: usize = 256;
pub const W4_ROWS: usize = 4096;
pub const W4_COLS: usize = 1024;
pub const W4_EPS: f64 = 1e-5;
pub const W5_X: f32 = 3.0;
pub const TRACE_OPS: usize = 100_000;
pub const TRACE_EVERY: usize = 1000;

/// Parameters that vary with the command line (`--w1-log2`).
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    pub w1_log2: u32,
}

/// One line of the report's header per workload: what a timed call does.
pub fn describe(w: &str, s: Sizes) -> String {
    let n = 1usize << s.w1_log2;
    match w {
        "W1-fwd" => {
            format!("y = x**2 * exp(x), x has 2^{} elements (minimal traffic {})", s.w1_log2, mib(8 * n))
        }
        "W1" => {
            format!("W1-fwd, then y.backward(ones_like(y)) and read x.grad (minimal traffic {})", mib(12 * n))
        }
        "W2" => {
            format!("{W2_STEPS} SGD steps of the seed's linear regression (batch {W2_BATCH}), time for all")
        }
        "W3" => "MLP train step 256x784 -> 1024 -> 1024 -> 10, cross-entropy, backward, SGD".into(),
        "W4" => "gelu(layer_norm(x)*g + b), x 4096x1024, backward of sum(y*w) w.r.t. x, g, b".into(),
        "W5" => "d2/dx2 x**3 at x = 3 via grad(create_graph) twice (= 6x = 18), per call".into(),
        "trace" => format!("{TRACE_OPS} chained scalar multiplies, realized every {TRACE_EVERY}: ns per op"),
        _ => String::new(),
    }
}

fn mib(bytes: usize) -> String {
    format!("{} MiB", bytes >> 20)
}

/// Bytes a W1 call must move at least (read x, write y [, write the gradient]).
pub fn min_traffic_bytes(w: &str, s: Sizes) -> Option<f64> {
    let n = (1usize << s.w1_log2) as f64;
    match w {
        "W1-fwd" => Some(8.0 * n),
        "W1" => Some(12.0 * n),
        _ => None,
    }
}

/// Matrix-product flops of one W3 step: forward, plus the weight and input gradients of the
/// backward (no gradient for X): the work that decides W3, to state it as GFLOP/s.
pub fn matmul_flops(w: &str) -> Option<f64> {
    if w != "W3" {
        return None;
    }
    let b = W3_BATCH as f64;
    let layers: f64 = W3_DIMS.windows(2).map(|d| (d[0] * d[1]) as f64).sum();
    let first = (W3_DIMS[0] * W3_DIMS[1]) as f64;
    Some(2.0 * b * (3.0 * layers - first))
}

/// Largest accepted normalised error `max|a - b| / max|b|` of any output against the reference.
pub fn tolerance(w: &str) -> f64 {
    match w {
        "W1-fwd" | "W1" | "W5" => 1e-5,
        "W2" => 1e-4,
        _ => 1e-3,
    }
}

/// The inputs of workload `w`, by name (the `.npy` file stem).
pub fn inputs(w: &str, s: Sizes) -> BTreeMap<String, Array> {
    let mut m = BTreeMap::new();
    let mut put = |k: &str, a: Array| {
        m.insert(k.to_string(), a);
    };
    match w {
        "W1-fwd" | "W1" => {
            let n = 1usize << s.w1_log2;
            put("x", Array::f32(&[n], Rng::new(1).normal_vec(n)));
        }
        "W2" => {
            let mut r = Rng::new(2);
            put("w0", Array::f32(&[1, 1], r.uniform_vec(1, 0.0, 1.0)));
            put("b0", Array::f32(&[1, 1], vec![0.0]));
            let n = W2_STEPS * W2_BATCH;
            let xs = r.uniform_vec(n, 0.0, 5.0);
            let ys = xs.iter().map(|&x| 2.0 * x + 3.0 + r.normal() as f32).collect();
            put("xs", Array::f32(&[W2_STEPS, W2_BATCH, 1], xs));
            put("ys", Array::f32(&[W2_STEPS, W2_BATCH, 1], ys));
        }
        "W3" => {
            let mut r = Rng::new(3);
            put("X", Array::f32(&[W3_BATCH, W3_DIMS[0]], r.normal_vec(W3_BATCH * W3_DIMS[0])));
            put("labels", Array::i64(&[W3_BATCH], (0..W3_BATCH).map(|_| r.below(10) as i64).collect()));
            // PyTorch's nn.Linear initialisation: U(-1/sqrt(in), 1/sqrt(in)), weight [out, in].
            for l in 0..3 {
                let (i, o) = (W3_DIMS[l], W3_DIMS[l + 1]);
                let k = 1.0 / (i as f64).sqrt();
                put(&format!("w{}", l + 1), Array::f32(&[o, i], r.uniform_vec(o * i, -k, k)));
                put(&format!("b{}", l + 1), Array::f32(&[o], r.uniform_vec(o, -k, k)));
            }
        }
        "W4" => {
            let mut r = Rng::new(4);
            let n = W4_ROWS * W4_COLS;
            put("x", Array::f32(&[W4_ROWS, W4_COLS], r.normal_vec(n)));
            put("g", Array::f32(&[W4_COLS], r.uniform_vec(W4_COLS, 0.5, 1.5)));
            put("b", Array::f32(&[W4_COLS], r.uniform_vec(W4_COLS, -0.5, 0.5)));
            put("w", Array::f32(&[W4_ROWS, W4_COLS], r.normal_vec(n)));
        }
        "W5" => put("x", Array::f32(&[], vec![W5_X])),
        _ => {}
    }
    m
}
