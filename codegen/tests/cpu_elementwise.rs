//! Elementwise kernels on the Cranelift backend against the reference executor: every op and
//! dtype, broadcasting, strided / transposed / reversed accesses, odd sizes, several outputs,
//! in-place kernels and thread splitting.
//!
//! Tolerances: exact IEEE ops (add, mul, div, sqrt, max, casts, ...) must match to 1e-6 relative
//! (they are in fact bit-identical); the polynomial math functions (exp, log, tanh, sigmoid, erf,
//! sin, cos, pow) are checked at 2e-6 relative + 1e-6 absolute for f32 (a few ULP) and 1e-13
//! for f64.

mod common;
use common::*;
use kiln_ir::interp::Value;
use kiln_ir::{BinaryOp, CompareOp, DType, Literal, UnaryOp};

const SIZES: [usize; 7] = [1, 3, 5, 7, 17, 64, 1023];

/// Values with the special cases appended: NaN, ±inf, ±0, large, tiny.
fn with_specials(dt: DType, n: usize, seed: u64) -> Value {
    let mut v = random_value(dt, n, seed).to_f64_vec();
    if dt.is_float() {
        let sp = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.0, -0.0, 1e30, -1e-30, 0.5, -2.0, 88.5];
        for (i, x) in sp.iter().enumerate() {
            if i < n {
                v[n - 1 - i] = *x;
            }
        }
    }
    Value::from_f64(dt, [n], &v).unwrap()
}

fn tol(dt: DType, math: bool) -> (f64, f64) {
    match (dt, math) {
        (DType::F32, true) => (2e-6, 1e-6),
        (DType::F64, true) => (1e-13, 1e-14),
        _ => (1e-6, 1e-6),
    }
}

#[test]
fn every_unary_op_and_dtype() {
    for dt in [DType::F32, DType::F64, DType::I64] {
        for op in UnaryOp::ALL {
            if dt == DType::I64 && !op.accepts_int() {
                continue;
            }
            for n in SIZES {
                let mut sb = Sb::new();
                let x = sb.input(dt, n);
                let o = sb.computed(dt, n);
                let mut k = Kb::new("un", &[n], &[]);
                let a = k.load_c(x, dt);
                let r = k.un(op, a);
                k.store_c(o, r);
                sb.kernel(k).output(o, &[n]);
                let (rt, at) = tol(dt, op.is_transcendental());
                let mut xv = with_specials(dt, n, n as u64);
                if matches!(op, UnaryOp::Sin | UnaryOp::Cos) {
                    // math.rs gives NaN for |x| beyond its argument reduction (documented there);
                    // the reference reduces exactly.
                    let v: Vec<f64> = xv
                        .to_f64_vec()
                        .into_iter()
                        .map(|x| if x.abs() > 1e5 && x.is_finite() { 1e5 } else { x })
                        .collect();
                    xv = Value::from_f64(dt, [n], &v).unwrap();
                }
                check_with(&sb.s, &[xv], rt, at);
            }
        }
    }
}

#[test]
fn every_binary_op_and_dtype() {
    for dt in [DType::F32, DType::F64, DType::I64] {
        for op in BinaryOp::ALL {
            for n in SIZES {
                let mut sb = Sb::new();
                let x = sb.input(dt, n);
                let y = sb.input(dt, n);
                let o = sb.computed(dt, n);
                let mut k = Kb::new("bin", &[n], &[]);
                let a = k.load_c(x, dt);
                let b = k.load_c(y, dt);
                let r = k.bin(op, a, b);
                k.store_c(o, r);
                sb.kernel(k).output(o, &[n]);
                let xv = with_specials(dt, n, 1 + n as u64);
                let mut yv = random_value(dt, n, 2 + n as u64).to_f64_vec();
                if dt == DType::I64 {
                    for v in &mut yv {
                        if op == BinaryOp::Div && *v == 0.0 {
                            *v = 3.0; // division by zero is an error (tested separately)
                        }
                        if op == BinaryOp::Pow {
                            *v = v.abs() % 5.0; // a negative exponent is an error
                        }
                    }
                } else if n > 4 {
                    yv[0] = f64::NAN;
                    yv[1] = 2.0;
                    yv[2] = -0.0;
                    yv[3] = f64::INFINITY;
                }
                let yv = Value::from_f64(dt, [n], &yv).unwrap();
                let (rt, at) = tol(dt, op == BinaryOp::Pow);
                check_with(&sb.s, &[xv, yv], rt, at);
            }
        }
    }
}

#[test]
fn i64_edge_cases() {
    let n = 9;
    let xs = [i64::MIN, i64::MAX, -7, 7, -1, 0, 5, i64::MIN, 3];
    let ys: [i64; 9] = [-1, -1, 2, -2, 1, 5, 0, 1, 40];
    for op in [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Max,
        BinaryOp::Min,
        BinaryOp::Pow,
    ] {
        let mut sb = Sb::new();
        let x = sb.input(DType::I64, n);
        let y = sb.input(DType::I64, n);
        let o = sb.computed(DType::I64, n);
        let mut k = Kb::new("i64", &[n], &[]);
        let a = k.load_c(x, DType::I64);
        let b = k.load_c(y, DType::I64);
        let r = k.bin(op, a, b);
        k.store_c(o, r);
        sb.kernel(k).output(o, &[n]);
        let mut yv = ys;
        if op == BinaryOp::Div {
            yv[6] = 4;
        }
        if op == BinaryOp::Pow {
            yv = yv.map(|v| v.abs() % 70);
        }
        let xv = Value::I64(ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[n]), xs.to_vec()).unwrap());
        let yv = Value::I64(ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[n]), yv.to_vec()).unwrap());
        check_with(&sb.s, &[xv, yv], 0.0, 0.0);
    }
    for op in [UnaryOp::Neg, UnaryOp::Abs, UnaryOp::Relu, UnaryOp::Sign] {
        let mut sb = Sb::new();
        let x = sb.input(DType::I64, n);
        let o = sb.computed(DType::I64, n);
        let mut k = Kb::new("i64u", &[n], &[]);
        let a = k.load_c(x, DType::I64);
        let r = k.un(op, a);
        k.store_c(o, r);
        sb.kernel(k).output(o, &[n]);
        let xv = Value::I64(ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[n]), xs.to_vec()).unwrap());
        check_with(&sb.s, &[xv], 0.0, 0.0);
    }
}

#[test]
fn comparisons_and_where_for_every_dtype() {
    for dt in [DType::F32, DType::F64, DType::I64, DType::Bool] {
        for op in CompareOp::ALL {
            for wdt in [DType::F32, DType::F64, DType::I64, DType::Bool] {
                for n in [1usize, 5, 17, 67] {
                    let mut sb = Sb::new();
                    let x = sb.input(dt, n);
                    let y = sb.input(dt, n);
                    let p = sb.input(wdt, n);
                    let q = sb.input(wdt, n);
                    let o = sb.computed(DType::Bool, n);
                    let o2 = sb.computed(wdt, n);
                    let mut k = Kb::new("cmp", &[n], &[]);
                    let a = k.load_c(x, dt);
                    let b = k.load_c(y, dt);
                    let c = k.cmp(op, a, b);
                    let pa = k.load_c(p, wdt);
                    let qa = k.load_c(q, wdt);
                    let w = k.wh(c, pa, qa);
                    k.store_c(o, c);
                    k.store_c(o2, w);
                    sb.kernel(k).output(o, &[n]).output(o2, &[n]);
                    let mut ins = random_inputs(&sb.s, n as u64 * 31);
                    ins[0] = with_specials(dt, n, 3);
                    if n > 2 {
                        // Some equal pairs.
                        let mut yv = ins[1].to_f64_vec();
                        let xv = ins[0].to_f64_vec();
                        yv[0] = xv[0];
                        yv[n / 2] = xv[n / 2];
                        ins[1] = Value::from_f64(dt, [n], &yv).unwrap();
                    }
                    check_with(&sb.s, &ins, 0.0, 0.0);
                }
            }
        }
    }
}

#[test]
fn casts_between_all_dtypes() {
    let all = [DType::F32, DType::F64, DType::I64, DType::Bool];
    for from in all {
        for to in all {
            for n in [1usize, 4, 7, 33] {
                let mut sb = Sb::new();
                let x = sb.input(from, n);
                let o = sb.computed(to, n);
                let mut k = Kb::new("cast", &[n], &[]);
                let a = k.load_c(x, from);
                let c = k.cast(a, to);
                k.store_c(o, c);
                sb.kernel(k).output(o, &[n]);
                let mut v = with_specials(from, n, 5).to_f64_vec();
                if from.is_float() && n > 8 {
                    // Truncation, saturation and NaN → 0 for float → i64.
                    v[0] = 2.7;
                    v[1] = -2.7;
                    v[2] = 1e19;
                    v[3] = -1e19;
                    v[4] = 9.2233720368547e18;
                    v[5] = 16777217.0;
                }
                if from == DType::I64 && n > 3 {
                    v[0] = 9007199254740993.0; // rounds differently in f32 and f64
                    v[1] = -((1u64 << 40) as f64);
                }
                let xv = Value::from_f64(from, [n], &v).unwrap();
                let xv = if from == DType::I64 && n > 3 {
                    let mut iv: Vec<i64> = xv.to_f64_vec().iter().map(|&f| f as i64).collect();
                    iv[0] = 9007199254740993;
                    iv[2] = i64::MAX;
                    Value::I64(ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[n]), iv).unwrap())
                } else {
                    xv
                };
                check_with(&sb.s, &[xv], 0.0, 0.0);
            }
        }
    }
}

#[test]
fn constants_of_every_dtype() {
    for dt in [DType::F32, DType::F64, DType::I64, DType::Bool] {
        for n in [1usize, 6, 19] {
            let mut sb = Sb::new();
            let o = sb.computed(dt, n);
            let o2 = sb.computed(DType::F64, n);
            let mut k = Kb::new("const", &[n], &[]);
            let c = k.c(2.75, dt);
            let z = k.c(0.0, dt);
            let w = if dt == DType::Bool { k.c(1.0, DType::Bool) } else { k.c(-1.5, dt) };
            let cond = k.c(1.0, DType::Bool);
            let s = k.wh(cond, c, z);
            let f = k.cast(w, DType::F64);
            k.store_c(o, s).store_c(o2, f);
            sb.kernel(k).output(o, &[n]).output(o2, &[n]);
            check_with(&sb.s, &[], 0.0, 0.0);
        }
    }
}

/// `out[i, j] = x[i, j] * y[j] + z[i]` over [r, c] with a broadcast row and column.
fn broadcast_schedule(r: usize, c: usize, dt: DType) -> Sb {
    let mut sb = Sb::new();
    let x = sb.input(dt, r * c);
    let y = sb.input(dt, c);
    let z = sb.input(dt, r);
    let o = sb.computed(dt, r * c);
    let mut k = Kb::new("bcast", &[r, c], &[]);
    let a = k.load(x, dt, 0, &[c as i64, 1]);
    let b = k.load(y, dt, 0, &[0, 1]);
    let d = k.load(z, dt, 0, &[1, 0]);
    let m = k.bin(BinaryOp::Mul, a, b);
    let s = k.bin(BinaryOp::Add, m, d);
    k.store(o, s, 0, &[c as i64, 1]);
    sb.kernel(k).output(o, &[r, c]);
    sb
}

#[test]
fn broadcasting_with_stride_zero() {
    for dt in [DType::F32, DType::F64, DType::I64] {
        for (r, c) in [(1, 1), (3, 5), (7, 17), (64, 3), (5, 1023), (33, 64)] {
            check(&broadcast_schedule(r, c, dt).s);
        }
    }
}

#[test]
fn transposed_and_reversed_loads() {
    for dt in [DType::F32, DType::F64, DType::Bool] {
        for (r, c) in [(1, 3), (3, 5), (17, 7), (64, 33), (5, 1023)] {
            // out[i, j] = x[j, i] (transposed), y[r-1-i, c-1-j] (reversed both), where on bool.
            let mut sb = Sb::new();
            let x = sb.input(dt, r * c);
            let y = sb.input(dt, r * c);
            let o1 = sb.computed(dt, r * c);
            let o2 = sb.computed(dt, r * c);
            let mut k = Kb::new("tr", &[r, c], &[]);
            let a = k.load(x, dt, 0, &[1, r as i64]);
            let b = k.load(y, dt, (r * c - 1) as i64, &[-(c as i64), -1]);
            k.store(o1, a, 0, &[c as i64, 1]);
            k.store(o2, b, 0, &[c as i64, 1]);
            sb.kernel(k).output(o1, &[r, c]).output(o2, &[r, c]);
            check(&sb.s);
        }
    }
}

#[test]
fn non_contiguous_stores() {
    for dt in [DType::F32, DType::F64, DType::I64, DType::Bool] {
        for (r, c) in [(1, 1), (3, 5), (17, 7), (40, 33)] {
            // Transposed store, reversed store and a strided store into a larger buffer.
            let mut sb = Sb::new();
            let x = sb.input(dt, r * c);
            let o1 = sb.computed(dt, r * c);
            let o2 = sb.computed(dt, r * c);
            let o3 = sb.computed(dt, 2 * r * c + 1);
            let mut k = Kb::new("st", &[r, c], &[]);
            let a = k.load(x, dt, 0, &[c as i64, 1]);
            k.store(o1, a, 0, &[1, r as i64]);
            k.store(o2, a, (r * c - 1) as i64, &[-(c as i64), -1]);
            k.store(o3, a, 1, &[2 * c as i64, 2]);
            sb.kernel(k).output(o1, &[c, r]).output(o2, &[r, c]).output(o3, &[2 * r * c + 1]);
            check(&sb.s);
        }
    }
}

#[test]
fn rank_three_and_collapsing() {
    // [a, b, c] with a permuted load: only the last two axes collapse for the contiguous ones.
    for (a, b, c) in [(2, 3, 4), (5, 1, 7), (1, 1, 1), (3, 17, 5), (4, 8, 64)] {
        let mut sb = Sb::new();
        let x = sb.input(DType::F32, a * b * c);
        let y = sb.input(DType::F32, a * b * c);
        let o = sb.computed(DType::F32, a * b * c);
        let mut k = Kb::new("r3", &[a, b, c], &[]);
        let p = k.load(x, DType::F32, 0, &[(b * c) as i64, c as i64, 1]);
        // y viewed as [c, a, b] transposed to [a, b, c].
        let q = k.load(y, DType::F32, 0, &[b as i64, 1, (a * b) as i64]);
        let s = k.bin(BinaryOp::Sub, p, q);
        k.store(o, s, 0, &[(b * c) as i64, c as i64, 1]);
        sb.kernel(k).output(o, &[a, b, c]);
        check(&sb.s);
    }
}

#[test]
fn scalar_kernel_and_constant_buffers() {
    let mut sb = Sb::new();
    let x = sb.input(DType::F64, 1);
    let c = sb.constant(Literal::F64(vec![1.5, -2.0, 4.0]));
    let o = sb.computed(DType::F64, 1);
    let o2 = sb.computed(DType::F64, 3);
    let mut k = Kb::new("scalar", &[], &[]);
    let a = k.load(x, DType::F64, 0, &[]);
    let b = k.load(c, DType::F64, 2, &[]);
    let r = k.bin(BinaryOp::Mul, a, b);
    k.store(o, r, 0, &[]);
    sb.kernel(k);
    let mut k = Kb::new("vec", &[3], &[]);
    let a = k.load(x, DType::F64, 0, &[0]);
    let b = k.load_c(c, DType::F64);
    let r = k.bin(BinaryOp::Add, a, b);
    k.store_c(o2, r);
    sb.kernel(k).output(o, &[]).output(o2, &[3]);
    check(&sb.s);
}

/// The W1 kernel as fusion emits it (x²·eˣ and its derivative), two outputs.
fn w1(n: usize) -> Sb {
    let mut sb = Sb::new();
    let x = sb.input(DType::F32, n);
    let y = sb.computed(DType::F32, n);
    let dx = sb.computed(DType::F32, n);
    let mut k = Kb::new("w1", &[n], &[]);
    let a = k.load_c(x, DType::F32);
    let sq = k.bin(BinaryOp::Mul, a, a);
    let e = k.un(UnaryOp::Exp, a);
    let p = k.bin(BinaryOp::Mul, sq, e);
    let two = k.c(2.0, DType::F32);
    let t = k.bin(BinaryOp::Mul, two, a);
    let u = k.bin(BinaryOp::Mul, e, t);
    let d = k.bin(BinaryOp::Add, p, u);
    k.store_c(y, p).store_c(dx, d);
    sb.kernel(k).output(y, &[n]).output(dx, &[n]);
    sb
}

#[test]
fn multi_output_kernel() {
    for n in SIZES {
        let sb = w1(n);
        check_with(&sb.s, &random_inputs(&sb.s, 3), 2e-6, 1e-6);
    }
}

#[test]
fn large_domains_split_over_threads() {
    // Large enough to be split (≥ 32 K elements per task), with odd sizes and a 2-D case whose
    // lane blocks do not divide the row.
    let sb = w1(1 << 20 | 3);
    check_with(&sb.s, &random_inputs(&sb.s, 9), 2e-6, 1e-6);
    check(&broadcast_schedule(300, 1001, DType::F32).s);
    check(&broadcast_schedule(1001, 300, DType::F64).s);
    // Transposed copy of a big matrix: the lane axis is chosen by the store.
    let (r, c) = (513, 771);
    let mut sb = Sb::new();
    let x = sb.input(DType::F32, r * c);
    let o = sb.computed(DType::F32, r * c);
    let mut k = Kb::new("tbig", &[r, c], &[]);
    let a = k.load(x, DType::F32, 0, &[1, r as i64]);
    k.store(o, a, 0, &[c as i64, 1]);
    sb.kernel(k).output(o, &[r, c]);
    check(&sb.s);
}

#[test]
fn in_place_and_aliasing_kernels() {
    for n in [5usize, 64, 100_003] {
        // o = x + 1, then o = o * 2 in place (same access: no snapshot needed), then a reversed
        // in-place update (needs the snapshot), all in an arena.
        let mut sb = Sb::new();
        let x = sb.input(DType::F32, n);
        let o = sb.computed(DType::F32, n);
        let mut k = Kb::new("init", &[n], &[]);
        let a = k.load_c(x, DType::F32);
        let one = k.c(1.0, DType::F32);
        let r = k.bin(BinaryOp::Add, a, one);
        k.store_c(o, r);
        sb.kernel(k);
        let mut k = Kb::new("inplace", &[n], &[]);
        let a = k.load_c(o, DType::F32);
        let two = k.c(2.0, DType::F32);
        let r = k.bin(BinaryOp::Mul, a, two);
        k.store_c(o, r);
        sb.kernel(k);
        let mut k = Kb::new("reverse", &[n], &[]);
        let a = k.load(o, DType::F32, n as i64 - 1, &[-1]);
        let b = k.load_c(o, DType::F32);
        let r = k.bin(BinaryOp::Sub, a, b);
        k.store_c(o, r);
        sb.kernel(k).output(o, &[n]);
        sb.plan_arena();
        check(&sb.s);
    }
}

#[test]
fn arena_buffers_sharing_memory() {
    // Two buffers at the same arena offset (the planner reuses memory): t = x·2 lives where
    // u = t + 1 is written (same offset, same access: in place); v at an overlapping offset.
    let n = 1000;
    let mut sb = Sb::new();
    let x = sb.input(DType::F32, n);
    let t = sb.computed(DType::F32, n);
    let u = sb.computed(DType::F32, n);
    let v = sb.computed(DType::F32, n);
    let mut k = Kb::new("t", &[n], &[]);
    let a = k.load_c(x, DType::F32);
    let two = k.c(2.0, DType::F32);
    let r = k.bin(BinaryOp::Mul, a, two);
    k.store_c(t, r);
    sb.kernel(k);
    let mut k = Kb::new("u", &[n], &[]);
    let a = k.load_c(t, DType::F32);
    let one = k.c(1.0, DType::F32);
    let r = k.bin(BinaryOp::Add, a, one);
    k.store_c(u, r);
    sb.kernel(k);
    // v overlaps u shifted by 10 elements: reads u[i + 1] while writing v[i] = memory u[i + 10]...
    let mut k = Kb::new("v", &[n - 1], &[]);
    let a = k.load(u, DType::F32, 1, &[1]);
    let r = k.un(UnaryOp::Neg, a);
    k.store(v, r, 0, &[1]);
    sb.kernel(k).output(v, &[n]);
    sb.s.buffers[t].arena_offset = Some(0);
    sb.s.buffers[u].arena_offset = Some(0);
    sb.s.buffers[v].arena_offset = Some(40);
    sb.s.arena_bytes = 40 + 4 * n;
    check(&sb.s);
}

#[test]
fn partial_writes_read_as_zero() {
    // Only every other element of `o` is written: the rest reads 0 on every run, like the
    // reference (the buffer is reused between runs).
    let n = 10;
    let mut sb = Sb::new();
    let x = sb.input(DType::F64, n);
    let o = sb.computed(DType::F64, 2 * n);
    let never = sb.computed(DType::I64, 4);
    let mut k = Kb::new("half", &[n], &[]);
    let a = k.load_c(x, DType::F64);
    k.store(o, a, 0, &[2]);
    sb.kernel(k).output(o, &[2 * n]).output(never, &[2, 2]);
    sb.plan_arena();
    check(&sb.s);
}

#[test]
fn in_place_store_before_other_stores_of_the_loaded_value() {
    // Found by the pipeline proptest: sin(x) written over x (same arena offset, same access)
    // while x itself and -x are stored elsewhere by the same kernel, on a domain whose lane
    // axis has extent 2 (scalar tails only).
    let mut sb = Sb::new();
    let x = sb.input(DType::F32, 8);
    let a = sb.computed(DType::F32, 8);
    let s = sb.computed(DType::F32, 8);
    let o = sb.computed(DType::F32, 24);
    let mut k = Kb::new("copy", &[8], &[]);
    let v = k.load_c(x, DType::F32);
    k.store_c(a, v);
    sb.kernel(k);
    let mut k = Kb::new("inplace", &[1, 2, 2, 2], &[]);
    let v = k.load(a, DType::F32, 0, &[8, 4, 2, 1]);
    let sn = k.un(UnaryOp::Sin, v);
    let ng = k.un(UnaryOp::Neg, v);
    k.store(s, sn, 0, &[8, 4, 2, 1]);
    k.store(o, ng, 0, &[24, 12, 6, 1]);
    k.store(o, v, 4, &[24, 12, 6, 1]);
    sb.kernel(k).output(o, &[24]).output(s, &[8]);
    sb.s.buffers[a].arena_offset = Some(0);
    sb.s.buffers[s].arena_offset = Some(0);
    sb.s.buffers[o].arena_offset = Some(64);
    sb.s.arena_bytes = 64 + 96;
    check_with(&sb.s, &random_inputs(&sb.s, 1), 2e-6, 1e-6);
}

#[test]
fn overlapping_stores_run_store_by_store_from_a_snapshot() {
    // Two stores into one buffer that overlap (the second wins where they do), one of them over
    // the very elements the kernel loads: every pass must read the values from before the kernel.
    for n in [1usize, 6, 40_001] {
        let mut sb = Sb::new();
        let x = sb.input(DType::F64, n + 1);
        let o = sb.computed(DType::F64, n + 1);
        let mut k = Kb::new("init", &[n + 1], &[]);
        let v = k.load_c(x, DType::F64);
        k.store_c(o, v);
        sb.kernel(k);
        let mut k = Kb::new("overlap", &[n], &[]);
        let v = k.load(o, DType::F64, 0, &[1]);
        let two = k.c(2.0, DType::F64);
        let a = k.bin(BinaryOp::Mul, v, two);
        let b = k.bin(BinaryOp::Add, v, two);
        k.store(o, a, 0, &[1]).store(o, b, 1, &[1]);
        sb.kernel(k).output(o, &[n + 1]);
        sb.plan_arena();
        check(&sb.s);
    }
}
