//! The CUDA backend on a real GPU (cargo feature `cuda`): every workload and a few hundred random
//! graphs — every kernel kind the fusion pass produces, cuBLAS products, integer ops — run on
//! device 0 and compared with the reference interpreter (1e-4 relative + 1e-5 absolute, as the
//! CPU JIT; integers and bools exactly). Without a driver or a device the GPU cases are skipped
//! with the reason printed, and the backend must answer with an error, not a panic.
#![cfg(feature = "cuda")]

mod cuda_common;
use cuda_common::*;
use kiln_codegen::cuda::runtime::{device_count, Cuda};
use kiln_codegen::Backend;
use kiln_ir::interp::{allclose, run, Value};
use kiln_ir::Graph;
use std::time::Instant;

fn device() -> Option<&'static Cuda> {
    match kiln_codegen::cuda::runtime::cuda(0) {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!("skipped: no usable GPU: {e}");
            None
        }
    }
}

fn inputs(g: &Graph, seed: u64) -> Vec<Value> {
    let mut d = Dice(seed);
    g.inputs()
        .iter()
        .map(|&i| {
            let n = g.node(i);
            let data: Vec<f64> = (0..n.shape.numel())
                .map(|_| {
                    if n.dtype.is_float() {
                        (d.next() % 4000) as f64 / 1000.0 - 2.0
                    } else {
                        (d.next() % 10) as f64 - 5.0
                    }
                })
                .collect();
            Value::from_f64(n.dtype, n.shape.clone(), &data).unwrap()
        })
        .collect()
}

#[test]
fn asking_for_cuda_without_a_device_is_an_error() {
    match device_count() {
        Ok(n) if n > 0 => {
            assert!(kiln_codegen::backend_named(&format!("cuda:{n}")).is_err(), "device {n} does not exist");
        }
        _ => {
            let e = kiln_codegen::backend_named("cuda").err().expect("no device: an error");
            assert!(e.contains("cuda"), "{e}");
            assert!(Cuda::new(0).is_err());
        }
    }
    assert!(kiln_codegen::backend_named("cuda:x").is_err());
}

#[test]
fn every_kernel_matches_the_interpreter() {
    let Some(gpu) = device() else { return };
    let mut graphs: Vec<(String, Graph)> =
        workload_graphs().into_iter().chain(op_graphs()).map(|(n, g)| (n.to_string(), g)).collect();
    graphs.extend(random_graphs(300));
    let (mut ran, mut unsupported) = (0, 0);
    for (i, (name, g)) in graphs.iter().enumerate() {
        let vals = inputs(g, i as u64);
        let want = run(g, &vals);
        let got = gpu.run(g, &vals);
        match (&want, &got) {
            (Ok(w), Ok(o)) => {
                assert_eq!(w.len(), o.len());
                for (a, b) in o.iter().zip(w) {
                    assert!(allclose(a, b, 1e-4, 1e-5), "{name}:\n{}\ncuda {a:?}\ninterp {b:?}", g.to_text());
                }
                ran += 1;
            }
            // Both refuse (an integer division by zero, ...).
            (Err(_), Err(_)) => {}
            (Ok(_), Err(e)) if e.to_string().contains("unsupported") => unsupported += 1,
            _ => panic!("{name}: interpreter {want:?} but cuda {got:?}\n{}", g.to_text()),
        }
    }
    println!("{ran} graphs matched the interpreter on the GPU ({unsupported} unsupported)");
}

#[test]
fn handmade_kernels_match_the_reference_executor() {
    let Some(gpu) = device() else { return };
    for (i, (name, s)) in handmade_schedules().into_iter().enumerate() {
        let vals: Vec<Value> = s
            .inputs
            .iter()
            .map(|&b| {
                let buf = &s.buffers[b];
                let mut d = Dice(i as u64);
                let data: Vec<f64> = (0..buf.numel)
                    .map(|_| (d.next() % 2000) as f64 / 500.0 - 2.0)
                    .map(|x| if buf.dtype.is_float() { x } else { (x * 10.0).round() })
                    .collect();
                Value::from_f64(buf.dtype, kiln_ir::Shape::from([buf.numel]), &data).unwrap()
            })
            .collect();
        let want = kiln_passes::kernel::execute(&s, &vals).unwrap();
        let got = gpu.run_schedule(s, &vals).unwrap();
        for (a, b) in got.iter().zip(&want) {
            assert!(allclose(a, b, 1e-5, 1e-6), "{name}: cuda {a:?}\nreference {b:?}");
        }
    }
}

#[test]
fn w1_timing() {
    let Some(gpu) = device() else { return };
    let g = kiln_passes::workloads::w1(1 << 24, true).unwrap();
    let vals = kiln_passes::workloads::sample_inputs(&g);
    let t = Instant::now();
    gpu.run(&g, &vals).unwrap();
    let first = t.elapsed();
    let t = Instant::now();
    for _ in 0..10 {
        gpu.run(&g, &vals).unwrap();
    }
    println!(
        "W1 fwd+bwd 2^24 on the GPU: first run {first:?} (with NVRTC), then {:?} per run with copies",
        t.elapsed() / 10
    );
}
