//! Shared by the CUDA tests: the schedules they emit, and finding clang.
#![allow(dead_code)]

use kiln_codegen::cuda::{emit_schedule, CudaProgram};
use kiln_ir::testing::{build_graph, GraphConfig};
use kiln_ir::{BinaryOp, CompareOp, DType, Graph, ReduceOp, UnaryOp};
use kiln_passes::kernel::{Access, Buffer, Instr, KOp, Kernel, Role, Schedule, Step, Store};
use kiln_passes::pipeline::{compile, PipelineOptions};
use kiln_passes::workloads;

pub fn schedule(g: &Graph) -> Schedule {
    compile(g, &PipelineOptions::default()).expect("pipeline").schedule
}

/// The benchmark workloads (small sizes), by name.
pub fn workload_graphs() -> Vec<(&'static str, Graph)> {
    vec![
        ("w1_forward", workloads::w1(1000, false).unwrap()),
        ("w1_backward", workloads::w1(1000, true).unwrap()),
        ("linear_regression", workloads::linear_regression(16).unwrap()),
        ("mlp", workloads::mlp(8, &[16, 32, 4]).unwrap()),
        ("layer_norm_gelu", workloads::layer_norm_gelu(6, 40).unwrap()),
        ("cube_second_derivative", workloads::cube_second_derivative().unwrap()),
    ]
}

/// Every op on every dtype that has it: unary, binary, compare, where, casts between all
/// dtypes, and sum/max/mean over rows (block reductions), columns (thread reductions) and
/// everything; plus `kiln_ir::testing::sample_every_op`.
pub fn op_graphs() -> Vec<(&'static str, Graph)> {
    let mut out = vec![("every_op", kiln_ir::testing::sample_every_op())];
    // Few, long column reductions (block per output along a non-innermost axis), with a
    // post-reduction value stored at every point (x - mean).
    let mut g = Graph::new();
    let x = g.input("x", DType::F32, [2048, 3]);
    let s = g.reduce(ReduceOp::Mean, x, vec![0], true).unwrap();
    let d = g.sub(x, s).unwrap();
    g.set_outputs(vec![s, d]);
    out.push(("column_mean_long", g));
    for (name, dt) in [("ops_f32", DType::F32), ("ops_f64", DType::F64), ("ops_i64", DType::I64)] {
        let mut g = Graph::new();
        let x = g.input("x", dt, [4, 40]);
        let y = g.input("y", dt, [4, 40]);
        let b = g.input("b", DType::Bool, [4, 40]);
        let mut outs = vec![];
        for u in UnaryOp::ALL {
            if dt.is_float() || u.accepts_int() {
                outs.push(g.unary(u, x).unwrap());
            }
        }
        for op in BinaryOp::ALL {
            outs.push(g.binary(op, x, y).unwrap());
        }
        let mut conds = vec![];
        for op in CompareOp::ALL {
            conds.push(g.compare(op, x, y).unwrap());
            conds.push(g.compare(op, b, conds[0]).unwrap());
        }
        for &c in &conds {
            outs.push(g.where_(c, x, y).unwrap());
        }
        outs.push(g.where_(conds[0], b, conds[1]).unwrap());
        for to in [DType::F32, DType::F64, DType::I64, DType::Bool] {
            outs.push(g.cast(x, to).unwrap());
            outs.push(g.cast(b, to).unwrap());
        }
        let mut reds = vec![ReduceOp::Sum, ReduceOp::Max];
        if dt.is_float() {
            reds.push(ReduceOp::Mean);
        }
        for op in reds {
            for axes in [vec![1], vec![0], vec![0, 1]] {
                outs.push(g.reduce(op, x, axes, false).unwrap());
            }
        }
        g.set_outputs(outs);
        out.push((name, g));
    }
    out
}

/// Kernels the fusion pass does not produce today but the kernel IR allows, built directly:
/// post-reduction values stored at every point (phase 2) in row, column and long-column
/// reductions (f32 and i64), and a store that several points write (run serially).
pub fn handmade_schedules() -> Vec<(&'static str, Schedule)> {
    let buf = |dtype, numel, role| Buffer { dtype, numel, role, arena_offset: None };
    // y = x - mean(x) along `axis` of an [r, c] input, and the means.
    let center = |r: usize, c: usize, axis: usize, dt: DType, op: ReduceOp| {
        let x = Access::contiguous(&[r, c]);
        let outer = if axis == 1 {
            Access { offset: 0, strides: vec![1, 0] }
        } else {
            Access { offset: 0, strides: vec![0, 1] }
        };
        let n = if axis == 1 { c } else { r };
        let mut instrs = vec![
            Instr { op: KOp::Load { buffer: 0, access: x.clone() }, dtype: dt },
            Instr { op: KOp::Reduce(op, 0), dtype: dt },
        ];
        let m = if dt.is_float() {
            instrs.push(Instr { op: KOp::Const(1.0 / n as f64), dtype: dt });
            instrs.push(Instr { op: KOp::Binary(BinaryOp::Mul, 1, 2), dtype: dt });
            3
        } else {
            1
        };
        instrs.push(Instr { op: KOp::Binary(BinaryOp::Sub, 0, m), dtype: dt });
        let y = instrs.len() - 1;
        Schedule {
            buffers: vec![
                buf(dt, r * c, Role::Input(0)),
                buf(dt, if axis == 1 { r } else { c }, Role::Computed),
                buf(dt, r * c, Role::Computed),
            ],
            steps: vec![Step::Kernel(Kernel {
                name: "center".into(),
                domain: vec![r, c],
                reduce_axes: vec![axis],
                instrs,
                stores: vec![
                    Store { buffer: 1, value: m, access: outer },
                    Store { buffer: 2, value: y, access: x },
                ],
            })],
            inputs: vec![0],
            outputs: vec![(1, vec![if axis == 1 { r } else { c }]), (2, vec![r, c])],
            arena_bytes: 0,
        }
    };
    let serial = Schedule {
        buffers: vec![buf(DType::F64, 20, Role::Input(0)), buf(DType::F64, 5, Role::Computed)],
        steps: vec![Step::Kernel(Kernel {
            name: "last_row_wins".into(),
            domain: vec![4, 5],
            reduce_axes: vec![],
            instrs: vec![
                Instr { op: KOp::Load { buffer: 0, access: Access::contiguous(&[4, 5]) }, dtype: DType::F64 },
                Instr { op: KOp::Unary(UnaryOp::Exp, 0), dtype: DType::F64 },
            ],
            stores: vec![Store { buffer: 1, value: 1, access: Access { offset: 0, strides: vec![0, 1] } }],
        })],
        inputs: vec![0],
        outputs: vec![(1, vec![5])],
        arena_bytes: 0,
    };
    vec![
        ("center_rows", center(6, 300, 1, DType::F32, ReduceOp::Sum)),
        ("center_cols", center(300, 6, 0, DType::F64, ReduceOp::Sum)),
        ("center_long_cols", center(2000, 3, 0, DType::F32, ReduceOp::Sum)),
        ("max_rows_i64", center(3, 40, 1, DType::I64, ReduceOp::Max)),
        ("last_row_wins", serial),
    ]
}

/// A tiny deterministic generator (splitmix64) for dice.
pub struct Dice(pub u64);
impl Dice {
    pub fn next(&mut self) -> u32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) as u32
    }
}

/// `n` random graphs (fixed seeds): floats, and every third one with i64 values too.
pub fn random_graphs(n: usize) -> Vec<(String, Graph)> {
    (0..n)
        .map(|i| {
            let cfg = if i % 3 == 2 {
                GraphConfig::default().with_dtypes(&[DType::F32, DType::F64, DType::I64])
            } else {
                GraphConfig::default()
            };
            let mut d = Dice(0x6b69_6c6e ^ (i as u64).wrapping_mul(0x1234_5678_9abc_def1));
            let dice: Vec<u32> = (0..cfg.dice_len()).map(|_| d.next()).collect();
            (format!("rand{i}"), build_graph(&cfg, &dice))
        })
        .collect()
}

/// Every program the PTX check compiles: the workloads and `n` random graphs.
pub fn all_programs(n: usize) -> Vec<(String, CudaProgram)> {
    let mut out = vec![];
    for (name, g) in workload_graphs().into_iter().chain(op_graphs()) {
        out.push((name.to_string(), emit_schedule(&schedule(&g), name).expect("emit")));
    }
    for (name, s) in handmade_schedules() {
        s.verify().expect("a valid schedule");
        out.push((name.to_string(), emit_schedule(&s, name).expect("emit")));
    }
    for (name, g) in random_graphs(n) {
        let s = schedule(&g);
        match emit_schedule(&s, &name) {
            Ok(p) => out.push((name, p)),
            // The CPU planner's limits (e.g. a max over an empty axis) apply here too.
            Err(kiln_codegen::cuda::CudaError::Unsupported(_)) => {}
            Err(e) => panic!("{name}: {e}\n{s}"),
        }
    }
    out
}

/// clang-19 if installed; `None` (with the reason printed) when it is missing outside CI; a
/// panic under CI, where `scripts/setup.sh` installs it.
pub fn clang() -> Option<String> {
    for c in ["clang-19", "clang"] {
        if let Ok(out) = std::process::Command::new(c).arg("--version").output() {
            let v = String::from_utf8_lossy(&out.stdout).to_string();
            if out.status.success() && (c == "clang-19" || v.contains("version 19")) {
                return Some(c.to_string());
            }
        }
    }
    if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false") {
        panic!("clang-19 is missing under CI: scripts/setup.sh should have installed it");
    }
    eprintln!("skipped: clang-19 is not installed (scripts/setup.sh installs it)");
    None
}
