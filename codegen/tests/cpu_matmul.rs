//! Matrix products (`MatMulStep`) on the CPU backend against the reference executor: 2-D,
//! transposed operands (strides, no copies), batched with broadcast batches, one row, reversed
//! operands, f32 and f64, products large enough to be split over threads, and a product feeding
//! an elementwise kernel.
//!
//! Tolerance: the reference accumulates in f64 (f32 products rounded once); gemm
//! accumulates in the element type with FMA, so f32 products are compared at 1e-5 relative +
//! 1e-5·√k absolute, f64 at 1e-12.

mod common;
use common::*;
use kiln_ir::{BinaryOp, DType};

fn tol(dt: DType, k: usize) -> (f64, f64) {
    let s = (k.max(1) as f64).sqrt();
    match dt {
        DType::F32 => (1e-5, 1e-5 * s),
        _ => (1e-12, 1e-12 * s),
    }
}

/// `out = a @ b` with `a` stored transposed when `ta`, `b` when `tb`.
fn mm2d(m: usize, k: usize, n: usize, ta: bool, tb: bool, dt: DType) -> Sb {
    let mut sb = Sb::new();
    let a = sb.input(dt, m * k);
    let b = sb.input(dt, k * n);
    let o = sb.computed(dt, m * n);
    let aa = if ta { acc(0, &[1, m as i64]) } else { acc(0, &[k as i64, 1]) };
    let ba = if tb { acc(0, &[1, k as i64]) } else { acc(0, &[n as i64, 1]) };
    sb.matmul(matmul("mm", dt, &[], (m, k, n), (a, aa), (b, ba), o)).output(o, &[m, n]);
    sb
}

#[test]
fn two_d_with_transposes() {
    for dt in [DType::F32, DType::F64] {
        for (m, k, n) in [(1, 1, 1), (3, 5, 7), (1, 64, 33), (17, 1, 9), (64, 64, 64), (5, 0, 3), (33, 17, 1)]
        {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let sb = mm2d(m, k, n, ta, tb, dt);
                let (rt, at) = tol(dt, k);
                check_with(&sb.s, &random_inputs(&sb.s, (m + k + n) as u64), rt, at);
            }
        }
    }
}

#[test]
fn one_row_and_one_column() {
    for dt in [DType::F32, DType::F64] {
        for (m, k, n) in [(1, 784, 1024), (1024, 784, 1), (1, 3, 1)] {
            let sb = mm2d(m, k, n, false, false, dt);
            let (rt, at) = tol(dt, k);
            check_with(&sb.s, &random_inputs(&sb.s, 3), rt, at);
        }
    }
}

#[test]
fn batched_with_broadcast_batches() {
    for dt in [DType::F32, DType::F64] {
        // a: [2, 3, m, k]; b broadcast over the first batch axis: [1, 3, k, n] (stride 0).
        let (m, k, n) = (5, 7, 4);
        let mut sb = Sb::new();
        let a = sb.input(dt, 2 * 3 * m * k);
        let b = sb.input(dt, 3 * k * n);
        let o = sb.computed(dt, 2 * 3 * m * n);
        let aa = acc(0, &[(3 * m * k) as i64, (m * k) as i64, k as i64, 1]);
        let ba = acc(0, &[0, (k * n) as i64, n as i64, 1]);
        sb.matmul(matmul("bmm", dt, &[2, 3], (m, k, n), (a, aa), (b, ba), o)).output(o, &[2, 3, m, n]);
        let (rt, at) = tol(dt, k);
        check_with(&sb.s, &random_inputs(&sb.s, 1), rt, at);
        // A matrix times a batch of transposed matrices; a broadcast over the batch.
        let mut sb = Sb::new();
        let a = sb.input(dt, m * k);
        let b = sb.input(dt, 4 * k * n);
        let o = sb.computed(dt, 4 * m * n);
        let aa = acc(0, &[0, k as i64, 1]);
        let ba = acc(0, &[(k * n) as i64, 1, k as i64]);
        sb.matmul(matmul("bmm2", dt, &[4], (m, k, n), (a, aa), (b, ba), o)).output(o, &[4, m, n]);
        check_with(&sb.s, &random_inputs(&sb.s, 2), rt, at);
    }
}

#[test]
fn reversed_and_offset_operands() {
    // a read backwards along k from an offset, b from a larger buffer with a row stride; the
    // small product runs as a plain loop, the large one through gemm (negative strides too).
    for (m, k, n) in [(6, 9, 5), (40, 70, 30)] {
        let mut sb = Sb::new();
        let a = sb.input(DType::F64, m * k + 3);
        let b = sb.input(DType::F64, k * 2 * n);
        let o = sb.computed(DType::F64, m * n);
        let aa = acc(3 + k as i64 - 1, &[k as i64, -1]);
        let ba = acc(1, &[2 * n as i64, 2]);
        sb.matmul(matmul("rev", DType::F64, &[], (m, k, n), (a, aa), (b, ba), o)).output(o, &[m, n]);
        check_with(&sb.s, &random_inputs(&sb.s, 4), 1e-12, 1e-12);
    }
}

#[test]
fn large_products_split_over_threads() {
    for dt in [DType::F32, DType::F64] {
        for (m, k, n, batch) in [(256, 300, 200, 1usize), (2, 500, 700, 1), (700, 500, 3, 1), (64, 64, 64, 7)]
        {
            let mut sb = Sb::new();
            let a = sb.input(dt, batch * m * k);
            let b = sb.input(dt, k * n);
            let o = sb.computed(dt, batch * m * n);
            let aa = acc(0, &[(m * k) as i64, k as i64, 1]);
            let ba = acc(0, &[0, n as i64, 1]);
            sb.matmul(matmul("big", dt, &[batch], (m, k, n), (a, aa), (b, ba), o)).output(o, &[batch, m, n]);
            let (rt, at) = tol(dt, k);
            check_with(&sb.s, &random_inputs(&sb.s, 6), rt, at);
        }
    }
}

#[test]
fn product_feeding_a_kernel_and_a_product() {
    // relu(a @ b + bias) @ c, as fusion schedules an MLP layer, in an arena.
    let (m, k, n, p) = (9, 13, 11, 4);
    let mut sb = Sb::new();
    let a = sb.input(DType::F32, m * k);
    let b = sb.input(DType::F32, k * n);
    let bias = sb.input(DType::F32, n);
    let c = sb.input(DType::F32, n * p);
    let z = sb.computed(DType::F32, m * n);
    let h = sb.computed(DType::F32, m * n);
    let o = sb.computed(DType::F32, m * p);
    sb.matmul(matmul(
        "mm0",
        DType::F32,
        &[],
        (m, k, n),
        (a, acc(0, &[k as i64, 1])),
        (b, acc(0, &[n as i64, 1])),
        z,
    ));
    let mut kb = Kb::new("relu", &[m, n], &[]);
    let x = kb.load(z, DType::F32, 0, &[n as i64, 1]);
    let y = kb.load(bias, DType::F32, 0, &[0, 1]);
    let s = kb.bin(BinaryOp::Add, x, y);
    let r = kb.un(kiln_ir::UnaryOp::Relu, s);
    kb.store(h, r, 0, &[n as i64, 1]);
    sb.kernel(kb);
    sb.matmul(matmul(
        "mm1",
        DType::F32,
        &[],
        (m, n, p),
        (h, acc(0, &[n as i64, 1])),
        (c, acc(0, &[p as i64, 1])),
        o,
    ));
    sb.output(o, &[m, p]).output(h, &[m, n]);
    sb.plan_arena();
    let (rt, at) = tol(DType::F32, k);
    check_with(&sb.s, &random_inputs(&sb.s, 12), rt, at);
}

#[test]
fn matmul_output_aliasing_an_operand_reads_a_snapshot() {
    // The arena places the output where operand a lives: a is copied first.
    let (m, k, n) = (4, 4, 4);
    let mut sb = Sb::new();
    let x = sb.input(DType::F64, m * k);
    let a = sb.computed(DType::F64, m * k);
    let b = sb.input(DType::F64, k * n);
    let o = sb.computed(DType::F64, m * n);
    let mut kb = Kb::new("copy", &[m * k], &[]);
    let v = kb.load_c(x, DType::F64);
    kb.store_c(a, v);
    sb.kernel(kb);
    sb.matmul(matmul(
        "mm",
        DType::F64,
        &[],
        (m, k, n),
        (a, acc(0, &[k as i64, 1])),
        (b, acc(0, &[n as i64, 1])),
        o,
    ));
    sb.output(o, &[m, n]);
    sb.s.buffers[a].arena_offset = Some(0);
    sb.s.buffers[o].arena_offset = Some(0);
    sb.s.arena_bytes = 8 * m * k;
    check_with(&sb.s, &random_inputs(&sb.s, 12), 1e-12, 1e-12);
}
