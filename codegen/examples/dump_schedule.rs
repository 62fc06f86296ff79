//! Prints the planned schedule of a workload: `cargo run -p kiln-codegen --example dump_schedule -- ln`.
fn main() {
    let which = std::env::args().nth(1).unwrap_or_default();
    let g = match which.as_str() {
        "mlp" => kiln_passes::workloads::mlp(256, &[784, 1024, 1024, 10]).unwrap(),
        "w1" => kiln_passes::workloads::w1(1 << 24, true).unwrap(),
        _ => kiln_passes::workloads::layer_norm_gelu(4096, 1024).unwrap(),
    };
    let c = kiln_passes::pipeline::compile(&g, &Default::default()).unwrap();
    println!("{}", c.schedule);
}
