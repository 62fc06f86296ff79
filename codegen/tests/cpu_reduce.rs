//! Reduction kernels on the Cranelift backend against the reference executor: row reductions
//! (reduced axis innermost), column reductions (reduced axis outermost), middle axes, full
//! reductions, post-reduce math, stores of inner and outer values, empty reduced axes.
//!
//! Tolerances: f32 sums accumulate in f64 like the reference but in a different order (vector
//! lanes, then a horizontal sum), so they are compared at 1e-6 relative + 1e-6 absolute; f64 sums
//! at 1e-12 / 1e-12; maxima and integer sums exactly. Kernels with post-reduce math functions use
//! the math tolerance (2e-6 for f32, 1e-13 for f64).

mod common;
use common::*;
use kiln_ir::interp::Value;
use kiln_ir::{BinaryOp, DType, ReduceOp, UnaryOp};

fn tol(dt: DType) -> (f64, f64) {
    match dt {
        DType::F32 => (2e-6, 2e-6),
        DType::F64 => (1e-12, 1e-12),
        _ => (0.0, 0.0),
    }
}

/// `out[outer] = reduce(x)` for x of `shape` reduced over `axes` (contiguous x).
fn reduce_schedule(shape: &[usize], axes: &[usize], op: ReduceOp, dt: DType) -> Sb {
    let mut sb = Sb::new();
    let n: usize = shape.iter().product();
    let x = sb.input(dt, n);
    let outer: Vec<usize> =
        shape.iter().enumerate().map(|(d, &e)| if axes.contains(&d) { 1 } else { e }).collect();
    let m: usize = outer.iter().product();
    let o = sb.computed(dt, m);
    let mut k = Kb::new("red", shape, axes);
    let a = k.load_c(x, dt);
    let r = k.reduce(op, a);
    let mut st = kiln_passes::kernel::Access::contiguous(&outer);
    for &ax in axes {
        st.strides[ax] = 0;
    }
    k.store(o, r, 0, &st.strides);
    sb.kernel(k).output(o, &outer);
    sb
}

#[test]
fn row_and_column_reductions() {
    for dt in [DType::F32, DType::F64, DType::I64] {
        for op in [ReduceOp::Sum, ReduceOp::Max, ReduceOp::Mean] {
            if op == ReduceOp::Mean && dt == DType::I64 {
                continue;
            }
            for (r, c) in [(1, 1), (1, 7), (3, 5), (7, 1), (17, 3), (5, 1023), (64, 64), (1023, 5), (2, 33)] {
                for axes in [&[1usize][..], &[0], &[0, 1]] {
                    let sb = reduce_schedule(&[r, c], axes, op, dt);
                    let (rt, at) = tol(dt);
                    check_with(&sb.s, &random_inputs(&sb.s, (r * 31 + c) as u64), rt, at);
                }
            }
        }
    }
}

#[test]
fn reductions_over_middle_and_outer_axes() {
    for dt in [DType::F32, DType::F64] {
        for op in [ReduceOp::Sum, ReduceOp::Max] {
            for shape in [[2usize, 3, 4], [5, 7, 3], [3, 1, 17], [4, 33, 9], [1, 5, 1]] {
                for axes in [&[0usize][..], &[1], &[2], &[0, 2], &[1, 2], &[0, 1], &[0, 1, 2]] {
                    let sb = reduce_schedule(&shape, axes, op, dt);
                    let (rt, at) = tol(dt);
                    check_with(&sb.s, &random_inputs(&sb.s, 5), rt, at);
                }
            }
        }
    }
}

#[test]
fn max_propagates_nan_and_handles_infinities() {
    for dt in [DType::F32, DType::F64] {
        for axes in [&[1usize][..], &[0]] {
            let (r, c) = (6, 19);
            let sb = reduce_schedule(&[r, c], axes, ReduceOp::Max, dt);
            let mut v = random_value(dt, r * c, 1).to_f64_vec();
            v[3] = f64::NAN; // row 0, column 3
            v[c + 18] = f64::INFINITY;
            v[2 * c + 5] = f64::NEG_INFINITY;
            v[5 * c + 18] = f64::NAN; // last row, last column (a tail lane)
            for x in &mut v[3 * c..4 * c] {
                *x = f64::NEG_INFINITY;
            }
            let x = Value::from_f64(dt, [r * c], &v).unwrap();
            check_with(&sb.s, &[x], 0.0, 0.0);
        }
    }
}

#[test]
fn large_reductions_split_over_threads() {
    for (shape, axes) in
        [(vec![4096usize, 300], vec![1usize]), (vec![300, 4096], vec![0]), (vec![257, 1031], vec![1])]
    {
        for dt in [DType::F32, DType::F64] {
            let sb = reduce_schedule(&shape, &axes, ReduceOp::Sum, dt);
            let (rt, at) = tol(dt);
            check_with(&sb.s, &random_inputs(&sb.s, 2), rt * 10.0, at * 10.0);
        }
    }
    // Column reductions cut into row ranges (two stages), with a value stored at every point
    // (stage 1) and a post-reduce value stored per column (stage 2): layer norm's dx, dγ.
    for (r, c) in [(4096usize, 300usize), (300, 4096)] {
        let mut sb = Sb::new();
        let x = sb.input(DType::F32, r * c);
        let (o_pre, o_sum, o_post) =
            (sb.computed(DType::F32, r * c), sb.computed(DType::F32, c), sb.computed(DType::F32, c));
        let mut k = Kb::new("colsum", &[r, c], &[0]);
        let a = k.load_c(x, DType::F32);
        let two = k.c(2.0, DType::F32);
        let a2 = k.bin(BinaryOp::Mul, a, two);
        let sq = k.bin(BinaryOp::Mul, a, a);
        let s = k.reduce(ReduceOp::Sum, sq);
        let half = k.c(0.5, DType::F32);
        let h = k.bin(BinaryOp::Mul, s, half);
        k.store_c(o_pre, a2).store(o_sum, s, 0, &[0, 1]).store(o_post, h, 0, &[0, 1]);
        sb.kernel(k).output(o_pre, &[r, c]).output(o_sum, &[c]).output(o_post, &[c]);
        let exe = check_with(&sb.s, &random_inputs(&sb.s, 3), 1e-5, 1e-5);
        let names: Vec<&str> = exe.stats().kernels.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["colsum.stage1", "colsum.stage2"], "{r}×{c}");
    }
    // A full reduction of 2^20 elements (one work unit).
    let sb = reduce_schedule(&[1 << 20], &[0], ReduceOp::Sum, DType::F32);
    check_with(&sb.s, &random_inputs(&sb.s, 2), 1e-6, 1e-4);
}

/// Softmax-like: max over the row, then `exp(x - max)` stored per element (post-reduce, inner)
/// and `log(max)`-style outer values stored once per row; also a pre-reduce value stored.
fn softmax_like(r: usize, c: usize, axis: usize, dt: DType) -> Sb {
    let mut sb = Sb::new();
    let x = sb.input(dt, r * c);
    let bias = sb.input(dt, if axis == 1 { r } else { c });
    let (m, om) = if axis == 1 { (r, [1i64, 0]) } else { (c, [0i64, 1]) };
    let o_exp = sb.computed(dt, r * c);
    let o_max = sb.computed(dt, m);
    let o_lse = sb.computed(dt, m);
    let o_pre = sb.computed(dt, r * c);
    let mut k = Kb::new("softmax", &[r, c], &[axis]);
    let a = k.load(x, dt, 0, &[c as i64, 1]);
    // A per-outer-point bias (stride 0 along the reduced axis): hoisted.
    let b = k.load(bias, dt, 0, &om);
    let ab = k.bin(BinaryOp::Add, a, b);
    let mx = k.reduce(ReduceOp::Max, ab);
    let d = k.bin(BinaryOp::Sub, ab, mx);
    let e = k.un(UnaryOp::Exp, d);
    // A second reduction of a pre-reduce value.
    let sq = k.bin(BinaryOp::Mul, a, a);
    let ss = k.reduce(ReduceOp::Sum, sq);
    let half = k.c(0.5, dt);
    let h = k.bin(BinaryOp::Mul, mx, half);
    let lse = k.un(UnaryOp::Tanh, h);
    let lse1 = k.bin(BinaryOp::Add, lse, mx);
    let lse2 = k.bin(BinaryOp::Div, lse1, ss);
    let neg = k.un(UnaryOp::Neg, ab);
    k.store(o_exp, e, 0, &[c as i64, 1]);
    k.store(o_max, mx, 0, &om);
    k.store(o_lse, lse2, 0, &om);
    k.store(o_pre, neg, 0, &[c as i64, 1]);
    sb.kernel(k).output(o_exp, &[r, c]).output(o_max, &[m]).output(o_lse, &[m]).output(o_pre, &[r, c]);
    sb
}

#[test]
fn post_reduce_math_and_inner_and_outer_stores() {
    for dt in [DType::F32, DType::F64] {
        for (r, c) in [(1, 1), (3, 5), (7, 17), (2, 1023), (64, 10), (33, 64)] {
            for axis in [0, 1] {
                let sb = softmax_like(r, c, axis, dt);
                let (rt, at) = if dt == DType::F32 { (4e-6, 2e-6) } else { (1e-12, 1e-13) };
                check_with(&sb.s, &random_inputs(&sb.s, 11), rt, at);
            }
        }
    }
}

#[test]
fn two_reductions_and_a_mean_sharing_inputs() {
    // The fused cross-entropy kernel shape: sum of exp(x - m) and sum of a cast comparison.
    for (r, c) in [(256, 10), (5, 3), (9, 1000)] {
        let mut sb = Sb::new();
        let x = sb.input(DType::F32, r * c);
        let m = sb.input(DType::F32, r);
        let o1 = sb.computed(DType::F32, r);
        let o2 = sb.computed(DType::F32, r);
        let o3 = sb.computed(DType::F32, r);
        let mut k = Kb::new("ce", &[r, c], &[1]);
        let a = k.load(x, DType::F32, 0, &[c as i64, 1]);
        let mm = k.load(m, DType::F32, 0, &[1, 0]);
        let d = k.bin(BinaryOp::Sub, a, mm);
        let e = k.un(UnaryOp::Exp, d);
        let s = k.reduce(ReduceOp::Sum, e);
        let eq = k.cmp(kiln_ir::CompareOp::Greater, a, mm);
        let f = k.cast(eq, DType::F32);
        let s2 = k.reduce(ReduceOp::Sum, f);
        let mean = k.reduce(ReduceOp::Mean, a);
        k.store(o1, s, 0, &[1, 0]).store(o2, s2, 0, &[1, 0]).store(o3, mean, 0, &[1, 0]);
        sb.kernel(k).output(o1, &[r]).output(o2, &[r]).output(o3, &[r]);
        check_with(&sb.s, &random_inputs(&sb.s, 4), 4e-6, 2e-6);
    }
}

#[test]
fn reduced_value_of_an_outer_operand() {
    // Reducing a value that does not vary over the reduced axis sums it `count` times.
    for dt in [DType::F32, DType::I64] {
        let (r, c) = (6, 13);
        let mut sb = Sb::new();
        let y = sb.input(dt, r);
        let o = sb.computed(dt, r);
        let mut k = Kb::new("bc", &[r, c], &[1]);
        let b = k.load(y, dt, 0, &[1, 0]);
        let s = k.reduce(ReduceOp::Sum, b);
        k.store(o, s, 0, &[1, 0]);
        sb.kernel(k).output(o, &[r]);
        check(&sb.s);
    }
}

#[test]
fn empty_reduced_axis_gives_the_identity() {
    let mut sb = Sb::new();
    let x = sb.input(DType::F32, 0);
    let o = sb.computed(DType::F32, 4);
    let o2 = sb.computed(DType::F32, 4);
    let mut k = Kb::new("empty", &[4, 0], &[1]);
    let a = k.load(x, DType::F32, 0, &[0, 1]);
    let s = k.reduce(ReduceOp::Sum, a);
    let m = k.reduce(ReduceOp::Mean, a);
    k.store(o, s, 0, &[1, 0]).store(o2, m, 0, &[1, 0]);
    sb.kernel(k).output(o, &[4]).output(o2, &[4]);
    check(&sb.s);
}

#[test]
fn size_one_reduced_axes_are_identities() {
    for op in [ReduceOp::Sum, ReduceOp::Max, ReduceOp::Mean] {
        let sb = reduce_schedule(&[5, 1, 3], &[1], op, DType::F32);
        check(&sb.s);
        let sb = reduce_schedule(&[1], &[0], op, DType::F64);
        check(&sb.s);
    }
}

#[test]
fn column_reduction_with_elementwise_store_like_fusion() {
    // k23 of the MLP step: a where() stored per element and a column sum of another input.
    let (r, c) = (256, 1024);
    let mut sb = Sb::new();
    let h = sb.input(DType::F32, r * c);
    let g = sb.input(DType::F32, r * c);
    let d = sb.input(DType::F32, r * c);
    let o1 = sb.computed(DType::F32, r * c);
    let o2 = sb.computed(DType::F32, c);
    let mut k = Kb::new("k23", &[r, c], &[0]);
    let a = k.load(h, DType::F32, 0, &[c as i64, 1]);
    let z = k.c(0.0, DType::F32);
    let gt = k.cmp(kiln_ir::CompareOp::Greater, a, z);
    let gv = k.load(g, DType::F32, 0, &[c as i64, 1]);
    let w = k.wh(gt, gv, z);
    let dv = k.load(d, DType::F32, 0, &[c as i64, 1]);
    let s = k.reduce(ReduceOp::Sum, dv);
    k.store(o1, w, 0, &[c as i64, 1]).store(o2, s, 0, &[0, 1]);
    sb.kernel(k).output(o1, &[r, c]).output(o2, &[c]);
    check_with(&sb.s, &random_inputs(&sb.s, 8), 1e-6, 1e-5);
}

/// Reductions to one or two values over many points: on two or more threads they run in two
/// stages (per-row partials, then the partials reduced; `cpu::split`), which must agree with
/// the one-stage reference.
#[test]
fn narrow_reductions_over_many_points() {
    for dt in [DType::F32, DType::F64] {
        for op in [ReduceOp::Sum, ReduceOp::Max, ReduceOp::Mean] {
            for (shape, axes) in [
                (&[1usize << 17][..], &[0usize][..]),
                (&[300, 512], &[0, 1]),
                (&[2, 40_000], &[1]),
                (&[40_000, 2], &[0]),
                (&[70_001], &[0]),
            ] {
                let sb = reduce_schedule(shape, axes, op, dt);
                let (rt, at) = tol(dt);
                check_with(&sb.s, &random_inputs(&sb.s, shape[0] as u64), rt, at);
            }
        }
    }
}
