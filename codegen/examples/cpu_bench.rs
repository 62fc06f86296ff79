//! Throughput of a few compiled kernels: `cargo run --release -p kiln-codegen --example cpu_bench`.
//! `KILN_NUM_THREADS=1` for one thread; `KILN_CPU_DISASM=1` prints the machine code of W1.
use kiln_codegen::cpu;
use kiln_ir::interp::Value;
use kiln_ir::DType;
use kiln_ir::{BinaryOp, ReduceOp, UnaryOp};
use kiln_passes::kernel::{Access, Buffer, Instr, KOp, Kernel, Role, Schedule, Step, Store};
use std::time::Instant;

fn time(name: &str, s: &Schedule, inputs: &[Value], bytes: f64) {
    let exe = cpu::compile(s).expect("compile");
    let ct: f64 = exe.stats().kernels.iter().map(|k| k.1.as_secs_f64()).sum();
    exe.run(inputs).expect("run");
    let mut best = f64::MAX;
    let mut total = f64::MAX;
    for _ in 0..10 {
        let t = Instant::now();
        let (_, prof) = exe.run_profiled(inputs).expect("run");
        total = total.min(t.elapsed().as_secs_f64());
        let k: f64 =
            prof.iter().filter(|(n, _)| n != "copy in" && n != "copy out").map(|p| p.1.as_secs_f64()).sum();
        best = best.min(k);
    }
    let (_, prof) = exe.run_profiled(inputs).expect("run");
    let phases: Vec<String> =
        prof.iter().map(|(n, d)| format!("{n} {:.2} ms", d.as_secs_f64() * 1e3)).collect();
    println!("{name:<28} whole run (with copies) {:.3} ms: {}", total * 1e3, phases.join(", "));
    println!(
        "{name:<28} {:>8.3} ms  {:>7.2} GB/s  (compile {:.2} ms, {} threads)",
        best * 1e3,
        bytes / best / 1e9,
        ct * 1e3,
        cpu::pool::threads()
    );
    if std::env::var_os("KILN_CPU_DISASM").is_some() {
        for (n, d) in exe.disasm() {
            println!("== {n}\n{d}");
        }
    }
}

/// `out = reduce(x)` (+ optionally `exp(x - out)` stored per element) for x: [r, c] over `axis`.
fn reduction(r: usize, c: usize, axis: usize, softmax: bool) -> Schedule {
    let buf = |numel, role| Buffer { dtype: DType::F32, numel, role, arena_offset: None };
    let m = if axis == 1 { r } else { c };
    let om = if axis == 1 { vec![1, 0] } else { vec![0, 1] };
    let mut instrs = vec![
        Instr { op: KOp::Load { buffer: 0, access: Access::contiguous(&[r, c]) }, dtype: DType::F32 },
        Instr { op: KOp::Reduce(if softmax { ReduceOp::Max } else { ReduceOp::Sum }, 0), dtype: DType::F32 },
    ];
    let mut stores = vec![Store { buffer: 1, value: 1, access: Access { offset: 0, strides: om } }];
    let mut buffers = vec![buf(r * c, Role::Input(0)), buf(m, Role::Computed)];
    let mut outputs = vec![(1, vec![m])];
    if softmax {
        instrs.push(Instr { op: KOp::Binary(BinaryOp::Sub, 0, 1), dtype: DType::F32 });
        instrs.push(Instr { op: KOp::Unary(UnaryOp::Exp, 2), dtype: DType::F32 });
        stores.push(Store { buffer: 2, value: 3, access: Access::contiguous(&[r, c]) });
        buffers.push(buf(r * c, Role::Computed));
        outputs.push((2, vec![r * c]));
    }
    let k = Kernel { name: "red".into(), domain: vec![r, c], reduce_axes: vec![axis], instrs, stores };
    Schedule { buffers, steps: vec![Step::Kernel(k)], inputs: vec![0], outputs, arena_bytes: 0 }
}

fn main() {
    let n = 1 << 24;
    // W1 forward + backward as the fusion pass emits it.
    let g = kiln_passes::workloads::w1(n, true).expect("w1");
    let s = kiln_passes::fusion::schedule(&g).expect("fuse");
    let x = Value::from_f64(
        DType::F32,
        [n],
        &(0..n).map(|i| (i % 1000) as f64 * 0.002 - 1.0).collect::<Vec<_>>(),
    )
    .unwrap();
    // Input copy-in (64 MiB) + 2 outputs copied out are part of run(); count kernel bytes only.
    time("w1 fwd+bwd (2^24)", &s, &[x], 3.0 * 4.0 * n as f64);
    for (name, g) in [
        ("mlp 256x784-1024-1024-10", kiln_passes::workloads::mlp(256, &[784, 1024, 1024, 10]).unwrap()),
        ("layernorm+gelu 4096x1024", kiln_passes::workloads::layer_norm_gelu(4096, 1024).unwrap()),
    ] {
        let t = Instant::now();
        let c = kiln_passes::pipeline::compile(&g, &Default::default()).expect("pipeline");
        let passes = t.elapsed();
        let t = Instant::now();
        let exe = cpu::compile(&c.schedule).expect("compile");
        let ct = t.elapsed();
        let inputs: Vec<Value> = g
            .inputs()
            .iter()
            .map(|&i| {
                let n = g.node(i);
                let d: Vec<f64> = (0..n.shape.numel()).map(|j| ((j * 7) % 11) as f64 / 50.0 - 0.1).collect();
                Value::from_f64(n.dtype, n.shape.clone(), &d).unwrap()
            })
            .collect();
        exe.run(&inputs).expect("run");
        let mut best = f64::MAX;
        let mut prof_best = vec![];
        for _ in 0..5 {
            let t = Instant::now();
            let (_, prof) = exe.run_profiled(&inputs).expect("run");
            let e = t.elapsed().as_secs_f64();
            if e < best {
                best = e;
                prof_best = prof;
            }
        }
        let kmax = exe.stats().kernels.iter().map(|k| k.1.as_secs_f64()).fold(0.0, f64::max);
        println!(
            "{name:<28} run {:.2} ms; passes {:.2} ms, cpu compile {:.2} ms for {} kernels (max {:.2} ms)",
            best * 1e3,
            passes.as_secs_f64() * 1e3,
            ct.as_secs_f64() * 1e3,
            exe.stats().kernels.len(),
            kmax * 1e3
        );
        if std::env::var_os("KILN_BENCH_STEPS").is_some() {
            for (n, d) in prof_best {
                println!("    {n:<36} {:8.3} ms", d.as_secs_f64() * 1e3);
            }
        }
    }
    let (r, c) = (4096, 1024);
    let x = Value::from_f64(
        DType::F32,
        [r * c],
        &(0..r * c).map(|i| (i % 977) as f64 * 0.001).collect::<Vec<_>>(),
    )
    .unwrap();
    let xs = std::slice::from_ref(&x);
    time("row sum [4096,1024] ax 1", &reduction(r, c, 1, false), xs, 4.0 * (r * c) as f64);
    time("col sum [4096,1024] ax 0", &reduction(r, c, 0, false), xs, 4.0 * (r * c) as f64);
    time("row max+exp [4096,1024]", &reduction(r, c, 1, true), xs, 8.0 * (r * c) as f64);
    time("col max+exp [4096,1024]", &reduction(r, c, 0, true), xs, 8.0 * (r * c) as f64);
    time("row sum [262144,16] ax 1", &reduction(262144, 16, 1, false), xs, 4.0 * (r * c) as f64);
    time("col sum [16,262144] ax 0", &reduction(16, 262144, 0, false), xs, 4.0 * (r * c) as f64);
}
