//! Compile time of the MLP train-step schedule (the passes, then Cranelift per kernel), three
//! times in one process; `KILN_NUM_THREADS=1` compiles on one thread:
//! `cargo run --release -p kiln-codegen --example compile_time`.
fn main() {
    let g = kiln_passes::workloads::mlp(256, &[784, 1024, 1024, 10]).unwrap();
    for _ in 0..3 {
        let t = std::time::Instant::now();
        let c = kiln_passes::pipeline::compile(&g, &Default::default()).unwrap();
        let passes = t.elapsed();
        let exe = kiln_codegen::cpu::compile(&c.schedule).unwrap();
        let s = exe.stats();
        let mut ks = s.kernels.clone();
        ks.sort_by_key(|k| std::cmp::Reverse(k.1));
        let per_kernel: f64 = ks.iter().map(|k| k.1.as_secs_f64()).sum();
        println!(
            "passes {:.2} ms, codegen {:.2} ms ({} kernels, {:.2} ms of build+compile summed; slowest {} {:.2} ms)",
            passes.as_secs_f64() * 1e3,
            s.total.as_secs_f64() * 1e3,
            ks.len(),
            per_kernel * 1e3,
            ks[0].0,
            ks[0].1.as_secs_f64() * 1e3
        );
    }
}
