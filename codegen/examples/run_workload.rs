//! Runs a workload's schedule `reps` times on the CPU backend (for `perf`), printing each
//! step's mean and min time:
//! `cargo run --release -p kiln-codegen --example run_workload -- ln 20`.
use kiln_ir::interp::Value;
fn main() {
    let which = std::env::args().nth(1).unwrap_or_default();
    let reps: usize = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(10);
    let g = match which.as_str() {
        "mlp" => kiln_passes::workloads::mlp(256, &[784, 1024, 1024, 10]).unwrap(),
        "w1" => kiln_passes::workloads::w1(1 << 24, true).unwrap(),
        _ => kiln_passes::workloads::layer_norm_gelu(4096, 1024).unwrap(),
    };
    let c = kiln_passes::pipeline::compile(&g, &Default::default()).unwrap();
    let exe = kiln_codegen::cpu::compile(&c.schedule).unwrap();
    let st = exe.stats();
    let passes_ms: f64 = c.report.pass_micros.iter().map(|p| p.1).sum::<f64>() / 1e3;
    println!("passes {passes_ms:.3} ms, compile {:.3} ms", st.total.as_secs_f64() * 1e3);
    for (n, d) in &st.kernels {
        println!("  compile {n:<36} {:8.3} ms", d.as_secs_f64() * 1e3);
    }
    let inputs: Vec<Value> = g
        .inputs()
        .iter()
        .map(|&i| {
            let n = g.node(i);
            let d: Vec<f64> = (0..n.shape.numel()).map(|j| ((j * 7) % 11) as f64 / 50.0 - 0.1).collect();
            Value::from_f64(n.dtype, n.shape.clone(), &d).unwrap()
        })
        .collect();
    let t0 = std::time::Instant::now();
    let (_, p) = exe.run_profiled(&inputs).unwrap();
    println!("first run {:.3} ms", t0.elapsed().as_secs_f64() * 1e3);
    for (n, d) in &p {
        println!("  first {n:<38} {:8.3} ms", d.as_secs_f64() * 1e3);
    }
    let mut tot = vec![0.0f64; 64];
    let mut min = vec![f64::INFINITY; 64];
    let mut names = vec![];
    for _ in 0..reps {
        let (_, p) = exe.run_profiled(&inputs).unwrap();
        for (i, (n, d)) in p.iter().enumerate() {
            tot[i] += d.as_secs_f64();
            min[i] = min[i].min(d.as_secs_f64());
            if names.len() <= i {
                names.push(n.clone());
            }
        }
    }
    if let Ok(k) = std::env::var("KILN_DUMP_KERNEL") {
        for (n, d) in exe.disasm() {
            if n.contains(&k) {
                println!("== {n}\n{d}");
            }
        }
        for (n, c) in exe.clif() {
            if n.contains(&k) {
                std::fs::write("/tmp/kernel.clif", c).unwrap();
            }
        }
    }
    for (i, n) in names.iter().enumerate() {
        println!("{n:<40} {:8.3} ms (min {:.3})", tot[i] / reps as f64 * 1e3, min[i] * 1e3);
    }
}
