//! Tensors across threads: independent graphs concurrently, a shared leaf, a shared graph.

mod common;
use common::*;
use kiln_frontend::autograd::{self, GradOptions};
use kiln_frontend::{no_grad, Tensor};
use std::sync::{Arc, Barrier};

#[test]
fn concurrent_backward_on_separate_graphs() {
    std::thread::scope(|s| {
        for t in 0..8 {
            s.spawn(move || {
                let k = t as f64 + 1.0;
                for step in 0..25 {
                    let w = leaf64(&[1.0, 2.0, 3.0], &[3]);
                    let b = leaf64(&[k], &[]);
                    let y = (&(&w * &w) * k + &b).tanh().sum() + (&w * step as f64).sum();
                    y.backward().unwrap();
                    // d/dw = tanh'(k w² + b) 2 k w + step
                    let wv = [1.0, 2.0, 3.0];
                    let want: Vec<f64> = wv
                        .iter()
                        .map(|&a: &f64| (1.0 - (k * a * a + k).tanh().powi(2)) * 2.0 * k * a + step as f64)
                        .collect();
                    assert_close(&grad(&w), &want, 1e-12);
                    let want_b: f64 = wv.iter().map(|&a: &f64| 1.0 - (k * a * a + k).tanh().powi(2)).sum();
                    assert_close(&grad(&b), &[want_b], 1e-12);
                }
            });
        }
    });
}

#[test]
fn concurrent_autograd_grad_with_create_graph() {
    std::thread::scope(|s| {
        for t in 0..8 {
            s.spawn(move || {
                let x = leaf64(&[t as f64 * 0.1 + 0.2], &[]);
                let y = x.pow(3.0);
                let opts = GradOptions { create_graph: true, ..Default::default() };
                let g = autograd::grad(&[&y], &[&x], opts).unwrap().remove(0).unwrap();
                let h = autograd::grad(&[&g], &[&x], GradOptions::default()).unwrap().remove(0).unwrap();
                let xv = t as f64 * 0.1 + 0.2;
                assert_close(&vals(&g), &[3.0 * xv * xv], 1e-14);
                assert_close(&vals(&h), &[6.0 * xv], 1e-14);
            });
        }
    });
}

#[test]
fn separate_graphs_from_a_shared_leaf_accumulate_into_its_grad() {
    let w = leaf64(&[1.0, -1.0], &[2]);
    let barrier = Arc::new(Barrier::new(8));
    std::thread::scope(|s| {
        for t in 0..8 {
            let w = w.clone();
            let barrier = barrier.clone();
            s.spawn(move || {
                let y = (&w * (t as f64 + 1.0)).sum();
                barrier.wait();
                y.backward().unwrap();
            });
        }
    });
    // 1 + 2 + ... + 8
    assert_eq!(grad(&w), vec![36.0, 36.0]);
}

#[test]
fn shared_graph_backward_from_two_threads_with_retain_graph() {
    // PyTorch: both calls succeed and the gradients accumulate.
    let w = leaf64(&[1.0, 2.0, 3.0], &[3]);
    let y = (&w * &w).exp().sum();
    let barrier = Arc::new(Barrier::new(2));
    let results: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let y = y.clone();
                let barrier = barrier.clone();
                s.spawn(move || {
                    barrier.wait();
                    y.backward_with(None, true, false)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for r in &results {
        assert!(r.is_ok(), "{r:?}");
    }
    let want: Vec<f64> = [1.0f64, 2.0, 3.0].iter().map(|&a| 2.0 * 2.0 * a * (a * a).exp()).collect();
    assert_close(&grad(&w), &want, 1e-12);
    // the graph is still there
    y.backward().unwrap();
    let want3: Vec<f64> = want.iter().map(|g| g * 1.5).collect();
    assert_close(&grad(&w), &want3, 1e-12);
}

#[test]
fn shared_graph_many_threads_many_times() {
    let w = leaf64(&[0.5, -0.5], &[2]);
    let y = (&w * &w).sin().sum();
    std::thread::scope(|s| {
        for _ in 0..8 {
            let y = y.clone();
            s.spawn(move || {
                for _ in 0..10 {
                    y.backward_with(None, true, false).unwrap();
                }
            });
        }
    });
    let want: Vec<f64> = [0.5f64, -0.5].iter().map(|&a| 80.0 * 2.0 * a * (a * a).cos()).collect();
    assert_close(&grad(&w), &want, 1e-12);
}

#[test]
fn hooks_registered_on_one_thread_run_on_another() {
    let w = leaf64(&[1.0, 2.0], &[2]);
    let y = &w * 3.0;
    y.register_hook(|g| Some(g * 2.0)).unwrap();
    let s = y.sum();
    std::thread::spawn(move || s.backward().unwrap()).join().unwrap();
    assert_eq!(grad(&w), vec![6.0, 6.0]);
}

#[test]
fn parameter_updates_from_several_threads() {
    // data-parallel style: each thread computes a gradient of its own shard, the main thread
    // averages and updates
    let w = leaf64(&[0.0, 0.0], &[2]);
    for _ in 0..5 {
        let grads: Vec<Vec<f64>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|t| {
                    let w = w.clone();
                    s.spawn(move || {
                        let target = t64(&[t as f64, -(t as f64)], &[2]);
                        let loss = (&w - &target).pow(2.0).sum();
                        autograd::grad(&[&loss], &[&w], GradOptions::default()).unwrap().remove(0).unwrap()
                    })
                })
                .map(|h| vals(&h.join().unwrap()))
                .collect();
            hs
        });
        let avg: Vec<f64> = (0..2).map(|j| grads.iter().map(|g| g[j]).sum::<f64>() / 4.0).collect();
        let _g = no_grad();
        w.sub_(&(&t64(&avg, &[2]) * 0.25)).unwrap();
    }
    // converges toward the mean target (1.5, -1.5): w_k = 1.5 (1 - 0.5^k)
    let want = 1.5 * (1.0 - 0.5f64.powi(5));
    assert_close(&vals(&w), &[want, -want], 1e-12);
    assert!(w.grad().is_none(), "autograd::grad does not touch .grad");
    let _ = Tensor::same(&w, &w);
}

#[test]
fn a_pending_tensor_realized_from_many_threads_at_once() {
    let x = leaf64(&[0.5, 1.0, 1.5], &[3]);
    let y = (&x * 2.0).exp().sum_dim(&[0], true).unwrap();
    let want = [1.0f64, 2.0, 3.0].iter().map(|v| v.exp()).sum::<f64>();
    let barrier = Arc::new(Barrier::new(8));
    std::thread::scope(|s| {
        for _ in 0..8 {
            let y = y.clone();
            let barrier = barrier.clone();
            s.spawn(move || {
                barrier.wait();
                assert_close(&vals(&y), &[want], 1e-14);
                assert_eq!(
                    y.to_string(),
                    format!("tensor([{want:.4}], dtype=kiln.float64, grad_fn=<SumBackward1>)")
                );
            });
        }
    });
    y.sum().backward().unwrap();
    let g: Vec<f64> = [1.0f64, 2.0, 3.0].iter().map(|v| 2.0 * v.exp()).collect();
    assert_close(&grad(&x), &g, 1e-14);
}
