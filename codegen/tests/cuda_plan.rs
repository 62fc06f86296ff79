//! The CUDA program's host-side plans, checked without a GPU:
//! - every matrix product handed to cuBLAS, executed by an emulation of
//!   `cublas<S|D>gemmStridedBatched` (column-major, `op(A)·op(B)`, leading dimensions and batch
//!   strides exactly as cuBLAS reads them), equals the product the kernel IR defines;
//! - every kernel's launch configuration, run through its loop structure (grid-stride over
//!   points or output points, block-stride over reduced points), visits each point exactly once.

mod cuda_common;
use cuda_common::*;
use kiln_codegen::cuda::{emit::plan_gemm, CudaStep, Gemm, Strategy};
use kiln_ir::{DType, Graph, Shape};
use kiln_passes::kernel::{MatMulStep, Step};

/// The product as the kernel IR defines it: `out[b, i, j] = Σ_k a[b, i, k]·b[b, k, j]`.
fn reference(mm: &MatMulStep, a: &[f64], b: &[f64]) -> Vec<f64> {
    let nb = mm.batch.len();
    let batches: usize = mm.batch.iter().product();
    let mut out = vec![0.0; batches * mm.m * mm.n];
    for bi in 0..batches {
        let mut idx = vec![0usize; nb];
        let mut r = bi;
        for d in (0..nb).rev() {
            idx[d] = r % mm.batch[d];
            r /= mm.batch[d];
        }
        let at = |acc: &kiln_passes::kernel::Access, x: usize, y: usize| {
            let mut full = idx.clone();
            full.extend([x, y]);
            acc.at(&full) as usize
        };
        for i in 0..mm.m {
            for j in 0..mm.n {
                let mut s = 0.0;
                for k in 0..mm.k {
                    s += a[at(&mm.a.access, i, k)] * b[at(&mm.b.access, k, j)];
                }
                out[(bi * mm.m + i) * mm.n + j] = s;
            }
        }
    }
    out
}

/// `cublas<S|D>gemmStridedBatched` on host memory, α = 1, β = 0, checking its argument rules.
fn cublas_emulated(g: &Gemm, bufs: &mut [Vec<f64>]) {
    let (rows_a, rows_b) = (if g.trans_a { g.k } else { g.m }, if g.trans_b { g.n } else { g.k });
    assert!(g.lda >= rows_a.max(1) && g.ldb >= rows_b.max(1) && g.ldc >= g.m.max(1), "{g:?}");
    for &(oa, ob, oc) in &g.calls {
        for p in 0..g.batch as i64 {
            for r in 0..g.m {
                for c in 0..g.n {
                    let mut s = 0.0;
                    for kk in 0..g.k {
                        let ia = oa
                            + p * g.stride_a
                            + if g.trans_a { kk + r * g.lda } else { r + kk * g.lda } as i64;
                        let ib = ob
                            + p * g.stride_b
                            + if g.trans_b { c + kk * g.ldb } else { kk + c * g.ldb } as i64;
                        assert!((ia as usize) < bufs[g.a].len() && (ib as usize) < bufs[g.b].len(), "{g:?}");
                        s += bufs[g.a][ia as usize] * bufs[g.b][ib as usize];
                    }
                    let ic = oc + p * g.stride_c + (r + c * g.ldc) as i64;
                    bufs[g.c][ic as usize] = s;
                }
            }
        }
    }
}

fn matmul_graphs() -> Vec<Graph> {
    let mut gs = vec![];
    let f = DType::F64;
    // (a shape, b shape, transpose a's last two axes, transpose b's)
    let cases: &[(&[usize], &[usize], bool, bool)] = &[
        (&[3, 4], &[4, 5], false, false),
        (&[4, 3], &[4, 5], true, false),
        (&[3, 4], &[5, 4], false, true),
        (&[4, 3], &[5, 4], true, true),
        (&[2, 3, 4], &[4, 5], false, false),
        (&[2, 3, 4], &[2, 5, 4], false, true),
        (&[2, 1, 3, 4], &[3, 4, 5], false, false),
        (&[2, 3, 4, 3], &[2, 3, 4, 5], true, false),
        (&[1, 4], &[4, 1], false, false),
        (&[4], &[4, 6], false, false),
        (&[3, 4], &[4], false, false),
    ];
    for &(sa, sb, ta, tb) in cases {
        let mut g = Graph::new();
        let a = g.input("a", f, Shape::from(sa.to_vec()));
        let b = g.input("b", f, Shape::from(sb.to_vec()));
        let t = |g: &mut Graph, x, r: usize, on: bool| {
            if !on {
                return x;
            }
            let mut perm: Vec<usize> = (0..r).collect();
            perm.swap(r - 2, r - 1);
            g.transpose(x, perm).unwrap()
        };
        let a2 = t(&mut g, a, sa.len(), ta);
        let b2 = t(&mut g, b, sb.len(), tb);
        let m = g.matmul(a2, b2).unwrap();
        g.set_outputs(vec![m]);
        gs.push(g);
    }
    gs
}

#[test]
fn cublas_calls_compute_the_ir_product() {
    let mut graphs: Vec<Graph> = matmul_graphs();
    graphs.extend(workload_graphs().into_iter().map(|(_, g)| g));
    graphs.extend(random_graphs(300).into_iter().map(|(_, g)| g));
    let (mut checked, mut fallback) = (0, 0);
    let mut d = Dice(7);
    for g in &graphs {
        let s = schedule(g);
        for step in &s.steps {
            let Step::MatMul(mm) = step else { continue };
            let Some(plan) = plan_gemm(mm) else {
                fallback += 1;
                continue;
            };
            let mut bufs: Vec<Vec<f64>> = s
                .buffers
                .iter()
                .map(|b| (0..b.numel).map(|_| (d.next() % 17) as f64 - 8.0).collect())
                .collect();
            let want = reference(mm, &bufs[mm.a.buffer], &bufs[mm.b.buffer]);
            cublas_emulated(&plan, &mut bufs);
            assert_eq!(bufs[mm.out][..want.len()], want[..], "{}: {plan:?}\n{s}", mm.name);
            checked += 1;
        }
    }
    println!("{checked} products checked through the cuBLAS plan, {fallback} as reduction kernels");
    assert!(checked >= 11, "only {checked} products checked");
}

#[test]
fn launches_visit_every_point_once() {
    let mut kernels = 0;
    for (name, p) in all_programs(150) {
        for st in &p.steps {
            let CudaStep::Kernel(k) = st else { continue };
            kernels += 1;
            let (grid, block) = (k.launch.grid as u64, k.launch.block as u64);
            let mut seen = vec![
                0u32;
                (k.work * if k.strategy == Strategy::BlockPerOutput { k.reduce_count } else { 1 })
                    as usize
            ];
            match k.strategy {
                // for (p = blockIdx·blockDim + tid; p < work; p += gridDim·blockDim)
                Strategy::Elementwise | Strategy::ThreadPerOutput => {
                    for b in 0..grid {
                        for t in 0..block {
                            let mut p = b * block + t;
                            while p < k.work {
                                seen[p as usize] += 1;
                                p += grid * block;
                            }
                        }
                    }
                    assert!(p.kernels_source.contains(&format!("< {};", k.work)), "{name}: {}", k.name);
                }
                // for (o = blockIdx; o < work; o += gridDim) for (r = tid; r < count; r += blockDim)
                Strategy::BlockPerOutput => {
                    assert_eq!(block % 32, 0, "block reductions need whole warps");
                    for b in 0..grid {
                        for t in 0..block {
                            let mut o = b;
                            while o < k.work {
                                let mut r = t;
                                while r < k.reduce_count {
                                    seen[(o * k.reduce_count + r) as usize] += 1;
                                    r += block;
                                }
                                o += grid;
                            }
                        }
                    }
                }
            }
            assert!(seen.iter().all(|&c| c == 1), "{name}: kernel {} misses or repeats points", k.name);
            assert!(k.launch.grid >= 1 && k.launch.block >= 1 && k.launch.block <= 1024);
        }
    }
    println!("{kernels} launch configurations checked");
}
