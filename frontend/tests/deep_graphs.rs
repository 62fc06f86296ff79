//! Long chains of recorded ops (an RNN unrolled over many steps, a loop that keeps building on
//! one tensor). PyTorch handles graphs hundreds of thousands of nodes deep: building, backward
//! and freeing must not recurse once per node.
//!
//! A stack overflow aborts the whole test binary, so these tests live in a file of their own.
//! Each runs on a thread with the default 2 MiB stack of spawned threads, so the depth that
//! fails does not depend on the harness.

mod common;
use common::*;
use kiln_frontend::{no_grad, DType, Tensor};

const DEPTH: usize = 100_000;

fn on_thread(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new().stack_size(2 << 20).spawn(f).unwrap().join().unwrap();
}

#[test]
fn deep_chain_without_grad() {
    on_thread(|| {
        let _g = no_grad();
        let mut y = Tensor::ones_typed(&[2], DType::F64);
        for _ in 0..DEPTH {
            y = &y * 1.00001;
        }
        assert_close(&vals(&y), &[1.00001f64.powi(DEPTH as i32); 2], 1e-4);
        drop(y);
    });
}

#[test]
fn deep_chain_backward_and_drop() {
    on_thread(|| {
        let x = Tensor::ones_typed(&[2], DType::F64).requires_grad_(true);
        let mut y = x.clone();
        for _ in 0..DEPTH {
            y = &y * 1.00001;
        }
        y.sum().backward().unwrap();
        assert_close(&grad(&x), &[1.00001f64.powi(DEPTH as i32); 2], 1e-4);
        // dropping the recorded graph (100 000 nodes) must not overflow the stack
        drop(y);
    });
}

#[test]
fn deep_chain_dropped_without_backward() {
    on_thread(|| {
        let x = Tensor::ones_typed(&[2], DType::F64).requires_grad_(true);
        let mut y = x.clone();
        for _ in 0..DEPTH {
            y = &y * 1.00001;
        }
        drop(y);
    });
}

#[test]
fn long_recurrence() {
    // h_{t+1} = tanh(w h_t + 1) over 30 000 steps: the graph holds saved tensors all along
    on_thread(|| {
        let w = Tensor::full(&[2], 0.5).requires_grad_(true);
        let mut h = Tensor::zeros(&[2]);
        for _ in 0..30_000 {
            h = (&h * &w + 1.0).tanh();
        }
        h.sum().backward().unwrap();
        assert!(grad(&w).iter().all(|g| g.is_finite() && *g > 0.0));
        drop(h);
    });
}
