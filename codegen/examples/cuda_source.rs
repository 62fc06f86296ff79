//! Prints the CUDA C kiln emits for a workload: `cargo run -p kiln-codegen --example cuda_source -- w1|ln|mlp [--prelude]`.
use kiln_codegen::cuda::emit_schedule;
use kiln_passes::pipeline::{compile, PipelineOptions};
use kiln_passes::workloads;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let which = args.get(1).map(String::as_str).unwrap_or("w1");
    let g = match which {
        "w1" => workloads::w1(1 << 20, true),
        "ln" => workloads::layer_norm_gelu(64, 768),
        "mlp" => workloads::mlp(64, &[784, 256, 10]),
        other => panic!("unknown workload {other}: w1, ln or mlp"),
    }
    .expect("graph");
    let s = compile(&g, &PipelineOptions::default()).expect("pipeline").schedule;
    let p = emit_schedule(&s, which).expect("emit");
    if args.iter().any(|a| a == "--prelude") {
        print!("{}", p.source());
    } else {
        print!("{}", p.kernels_source);
    }
    for st in &p.steps {
        eprintln!("{st:?}");
    }
}
