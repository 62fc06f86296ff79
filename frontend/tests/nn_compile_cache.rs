//! Optimiser steps go through the compiler once: after the first steps, training compiles
//! nothing new (also when the learning rate changes), and each `step()` is one graph (the
//! updates of every parameter and every state tensor together). One test in its own binary,
//! because `jit_stats` counts process-wide.

use kiln_frontend::nn::{functional::cross_entropy, Linear, Module, Sequential, Tanh};
use kiln_frontend::optim::{Adam, AdamOptions, AdamW, Optimizer, SgdOptions, SGD};
use kiln_frontend::{jit_stats, Tensor};

#[test]
fn training_steps_hit_the_compile_cache_and_each_update_is_one_graph() {
    if kiln_frontend::backend_name().unwrap() != "jit" {
        eprintln!("skipped: the compile cache belongs to the jit backend");
        return;
    }
    kiln_frontend::manual_seed(0);
    let net = Sequential::new().append(Linear::new(4, 16)).append(Tanh).append(Linear::new(16, 3));
    let x = Tensor::randn(&[32, 4]);
    let y = Tensor::from_vec((0..32).map(|i| i % 3).collect::<Vec<i64>>(), &[32]).unwrap();
    let optimisers: Vec<(&str, Box<dyn Optimizer>)> = vec![
        (
            "SGD(momentum, nesterov, weight_decay)",
            Box::new(
                SGD::with_options(
                    net.parameters(),
                    SgdOptions {
                        lr: 0.1,
                        momentum: 0.9,
                        weight_decay: 1e-4,
                        nesterov: true,
                        ..Default::default()
                    },
                )
                .unwrap(),
            ),
        ),
        (
            "Adam(amsgrad)",
            Box::new(
                Adam::with_options(net.parameters(), AdamOptions { amsgrad: true, ..Default::default() })
                    .unwrap(),
            ),
        ),
        ("AdamW", Box::new(AdamW::new(net.parameters(), 1e-2).unwrap())),
    ];
    for (name, mut opt) in optimisers {
        let mut losses = Vec::new();
        let mut step = |opt: &mut Box<dyn Optimizer>| {
            opt.zero_grad();
            let loss = cross_entropy(&net.forward(&x).unwrap(), &y).unwrap();
            loss.backward().unwrap();
            let before = jit_stats();
            opt.step().unwrap();
            let after = jit_stats();
            assert_eq!(
                (after.hits + after.misses) - (before.hits + before.misses),
                1,
                "{name}: one step() must run exactly one graph"
            );
            losses.push(loss.item().unwrap());
        };
        // Adam's state starts as computed zeros, so its first step already has the final
        // structure; SGD's first momentum step differs (the buffer starts as the gradient).
        let warmup = if name.starts_with("SGD") { 2 } else { 1 };
        for _ in 0..warmup {
            step(&mut opt);
        }
        let warm = jit_stats();
        for _ in 0..5 {
            // A learning-rate schedule changes data, not structure: still no compile.
            let lr = opt.lr();
            opt.set_lr(lr * 0.9);
            step(&mut opt);
        }
        let end = jit_stats();
        assert_eq!(end.misses, warm.misses, "{name}: steps after the first {warmup} compiled new graphs");
        assert!(end.hits >= warm.hits + 10, "{name}: {} hits in 5 steps", end.hits - warm.hits);
        assert!(losses.last().unwrap() < &losses[0], "{name} does not train: {losses:?}");
    }
}
