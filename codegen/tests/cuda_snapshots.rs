//! Snapshots of the CUDA C emitted for representative schedules (the kernels, without the
//! prelude, and one line per launch): W1 forward and backward, a row reduction (softmax), layer
//! norm + GELU (forward and backward), and an MLP training step's gradients.

mod cuda_common;
use cuda_common::{handmade_schedules, schedule};
use kiln_codegen::cuda::{emit_schedule, CudaStep};
use kiln_ir::{DType, Graph, Shape};
use kiln_passes::workloads;

fn render(name: &str, g: &Graph) -> String {
    render_schedule(name, &schedule(g))
}

fn render_schedule(name: &str, s: &kiln_passes::kernel::Schedule) -> String {
    let p = emit_schedule(s, name).expect("emit");
    let mut out = String::new();
    for st in &p.steps {
        match st {
            CudaStep::Kernel(k) => out.push_str(&format!(
                "launch {} <<<{}, {}>>> {:?} params {:?}{}\n",
                k.name,
                k.launch.grid,
                k.launch.block,
                k.strategy,
                k.params,
                if k.status { " +status" } else { "" }
            )),
            CudaStep::Gemm(g) => out.push_str(&format!(
                "gemm {} {} op(A)={} op(B)={} m={} n={} k={} A=b{} lda={} sA={} B=b{} ldb={} sB={} C=b{} ldc={} sC={} batch={} calls={:?}\n",
                g.ir_name,
                g.dtype,
                if g.trans_a { "T" } else { "N" },
                if g.trans_b { "T" } else { "N" },
                g.m,
                g.n,
                g.k,
                g.a,
                g.lda,
                g.stride_a,
                g.b,
                g.ldb,
                g.stride_b,
                g.c,
                g.ldc,
                g.stride_c,
                g.batch,
                g.calls
            )),
        }
    }
    out.push('\n');
    out.push_str(&p.kernels_source);
    out
}

#[test]
fn w1_forward_and_backward() {
    insta::assert_snapshot!("w1_forward", render("w1f", &workloads::w1(1 << 20, false).unwrap()));
    insta::assert_snapshot!("w1_backward", render("w1b", &workloads::w1(1 << 20, true).unwrap()));
}

#[test]
fn softmax_rows() {
    let mut g = Graph::new();
    let x = g.input("x", DType::F32, Shape::from(vec![64, 1000]));
    let y = g.softmax(x, -1).unwrap();
    g.set_outputs(vec![y]);
    insta::assert_snapshot!("softmax_rows", render("softmax", &g));
}

#[test]
fn layer_norm_gelu() {
    insta::assert_snapshot!("layer_norm_gelu", render("ln", &workloads::layer_norm_gelu(64, 768).unwrap()));
}

#[test]
fn mlp_step() {
    insta::assert_snapshot!("mlp_step", render("mlp", &workloads::mlp(64, &[784, 256, 10]).unwrap()));
}

/// Phase 2 (post-reduction values at every point) in each reduction shape, and a serial kernel.
#[test]
fn handmade_kernels() {
    let all: Vec<String> = handmade_schedules().iter().map(|(n, s)| render_schedule(n, s)).collect();
    insta::assert_snapshot!("handmade", all.join("\n"));
}
