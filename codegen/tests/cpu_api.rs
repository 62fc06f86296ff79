//! The CPU backend's API: errors (compile-time and run-time), input checks, concurrency,
//! debugging output.

mod common;
use common::*;
use kiln_codegen::cpu::{self, CpuError, CpuExecutable};
use kiln_ir::interp::{allclose, Value};
use kiln_ir::{BinaryOp, DType, UnaryOp};
use kiln_passes::kernel::execute;

fn int_op(op: BinaryOp, n: usize) -> Sb {
    let mut sb = Sb::new();
    let x = sb.input(DType::I64, n);
    let y = sb.input(DType::I64, n);
    let o = sb.computed(DType::I64, n);
    let mut k = Kb::new("intop", &[n], &[]);
    let a = k.load_c(x, DType::I64);
    let b = k.load_c(y, DType::I64);
    let r = k.bin(op, a, b);
    k.store_c(o, r);
    sb.kernel(k).output(o, &[n]);
    sb
}

fn i64s(v: &[i64]) -> Value {
    Value::I64(ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[v.len()]), v.to_vec()).unwrap())
}

#[test]
fn integer_division_by_zero_is_an_error_not_a_trap() {
    for n in [1usize, 3, 11] {
        let sb = int_op(BinaryOp::Div, n);
        let exe = cpu::compile(&sb.s).unwrap();
        let mut ys = vec![2i64; n];
        ys[n - 1] = 0;
        let xs: Vec<i64> = (0..n as i64).collect();
        assert!(execute(&sb.s, &[i64s(&xs), i64s(&ys)]).is_err());
        let err = exe.run(&[i64s(&xs), i64s(&ys)]).unwrap_err();
        assert!(matches!(err, CpuError::Runtime(_)) && err.to_string().contains("division by zero"), "{err}");
        // The executable stays usable.
        ys[n - 1] = -1;
        let got = exe.run(&[i64s(&xs), i64s(&ys)]).unwrap();
        let want = execute(&sb.s, &[i64s(&xs), i64s(&ys)]).unwrap();
        assert_eq!(got, want);
    }
}

#[test]
fn negative_integer_power_is_an_error() {
    let sb = int_op(BinaryOp::Pow, 5);
    let exe = cpu::compile(&sb.s).unwrap();
    let err = exe.run(&[i64s(&[1, 2, 3, 4, 5]), i64s(&[1, 2, -3, 0, 1])]).unwrap_err();
    assert!(err.to_string().contains("negative exponent"), "{err}");
}

#[test]
fn inputs_are_checked() {
    let sb = int_op(BinaryOp::Add, 4);
    let exe = cpu::compile(&sb.s).unwrap();
    let e = exe.run(&[i64s(&[1, 2, 3, 4])]).unwrap_err();
    assert!(e.to_string().contains("2 input(s), got 1"), "{e}");
    let e = exe.run(&[i64s(&[1, 2, 3]), i64s(&[1, 2, 3, 4])]).unwrap_err();
    assert!(e.to_string().contains("input 0 must be i64 with 4 elements"), "{e}");
    let f = Value::from_f64(DType::F64, [4], &[1.0; 4]).unwrap();
    assert!(exe.run(&[f, i64s(&[1, 2, 3, 4])]).is_err());
    // Any shape with the right element count is accepted, in any layout.
    let a = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[2, 2]), vec![1i64, 2, 3, 4]).unwrap();
    let t = Value::I64(a.reversed_axes()); // not in standard layout; logically [1, 3, 2, 4]
    let got = exe.run(&[t, i64s(&[10, 20, 30, 40])]).unwrap();
    assert_eq!(got[0].to_f64_vec(), vec![11.0, 23.0, 32.0, 44.0]);
}

#[test]
fn invalid_and_unsupported_schedules_are_rejected() {
    // A store outside its buffer.
    let mut sb = Sb::new();
    let x = sb.input(DType::F32, 4);
    let o = sb.computed(DType::F32, 3);
    let mut k = Kb::new("oob", &[4], &[]);
    let a = k.load_c(x, DType::F32);
    k.store_c(o, a);
    sb.kernel(k).output(o, &[3]);
    assert!(matches!(cpu::compile(&sb.s), Err(CpuError::Schedule(_))));
    // Exp of an integer.
    let mut sb = Sb::new();
    let x = sb.input(DType::I64, 4);
    let o = sb.computed(DType::I64, 4);
    let mut k = Kb::new("badtype", &[4], &[]);
    let a = k.load_c(x, DType::I64);
    let e = k.un(UnaryOp::Exp, a);
    k.store_c(o, e);
    sb.kernel(k).output(o, &[4]);
    let err = cpu::compile(&sb.s).err().expect("rejected");
    assert!(matches!(err, CpuError::Unsupported(_)), "{err}");
    // A product of integers.
    let mut sb = Sb::new();
    let a = sb.input(DType::I64, 4);
    let o = sb.computed(DType::I64, 4);
    sb.matmul(matmul("imm", DType::I64, &[], (2, 2, 2), (a, acc(0, &[2, 1])), (a, acc(0, &[2, 1])), o));
    sb.output(o, &[2, 2]);
    assert!(matches!(cpu::compile(&sb.s), Err(CpuError::Unsupported(_))));
    // An output shape that does not match its buffer.
    let mut sb = int_op(BinaryOp::Add, 4);
    sb.s.outputs[0].1 = vec![5];
    assert!(matches!(cpu::compile(&sb.s), Err(CpuError::Schedule(_))));
}

#[test]
fn empty_domains_do_nothing() {
    let mut sb = Sb::new();
    let x = sb.input(DType::F32, 0);
    let o = sb.computed(DType::F32, 0);
    let mut k = Kb::new("empty", &[0, 5], &[]);
    let a = k.load(x, DType::F32, 0, &[5, 1]);
    k.store(o, a, 0, &[5, 1]);
    sb.kernel(k).output(o, &[0, 5]);
    check(&sb.s);
}

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn concurrent_runs_from_several_threads() {
    assert_send_sync::<CpuExecutable>();
    // Large enough to use the pool; every thread checks its own results.
    let n = 200_003;
    let mut sb = Sb::new();
    let x = sb.input(DType::F32, n);
    let o = sb.computed(DType::F32, n);
    let s = sb.computed(DType::F32, 1);
    let mut k = Kb::new("sq", &[n], &[]);
    let a = k.load_c(x, DType::F32);
    let r = k.bin(BinaryOp::Mul, a, a);
    k.store_c(o, r);
    sb.kernel(k);
    let mut k = Kb::new("sum", &[n], &[0]);
    let a = k.load_c(o, DType::F32);
    let r = k.reduce(kiln_ir::ReduceOp::Sum, a);
    k.store(s, r, 0, &[0]);
    sb.kernel(k).output(o, &[n]).output(s, &[1]);
    sb.plan_arena();
    let exe = cpu::compile(&sb.s).unwrap();
    std::thread::scope(|sc| {
        for t in 0..4u64 {
            let (exe, sched) = (&exe, &sb.s);
            sc.spawn(move || {
                for i in 0..5 {
                    let inp = random_value(DType::F32, n, t * 100 + i);
                    let got = exe.run(std::slice::from_ref(&inp)).unwrap();
                    let want = execute(sched, &[inp]).unwrap();
                    assert!(allclose(&got[0], &want[0], 0.0, 0.0));
                    assert!(allclose(&got[1], &want[1], 1e-6, 1e-3));
                }
            });
        }
    });
}

#[test]
fn clif_text_and_compile_times_are_kept() {
    let mut sb = Sb::new();
    let x = sb.input(DType::F32, 8);
    let o = sb.computed(DType::F32, 8);
    let mut k = Kb::new("first", &[8], &[]);
    let a = k.load_c(x, DType::F32);
    let r = k.un(UnaryOp::Sqrt, a);
    k.store_c(o, r);
    sb.kernel(k);
    let mut k = Kb::new("second", &[8], &[]);
    let a = k.load_c(o, DType::F32);
    let r = k.un(UnaryOp::Abs, a);
    k.store_c(o, r);
    sb.kernel(k).output(o, &[8]);
    let exe = check(&sb.s);
    let clif = exe.clif();
    assert_eq!(clif.iter().map(|c| c.0.as_str()).collect::<Vec<_>>(), ["first", "second"]);
    assert!(clif[0].1.contains("sqrt") && clif[0].1.contains("f32x4"), "{}", clif[0].1);
    let st = exe.stats();
    assert_eq!(st.kernels.len(), 2);
    assert!(st.total >= st.kernels[0].1);
    let (_, prof) = exe.run_profiled(&random_inputs(&sb.s, 1)).unwrap();
    let names: Vec<&str> = prof.iter().map(|p| p.0.as_str()).collect();
    assert_eq!(names, ["copy in", "first", "second", "copy out"]);
}

/// Inputs bound in place and outputs written straight into their vectors: a second run with
/// other inputs leaves the first run's outputs alone, and both match the reference. Covers an
/// output written in place over a dying buffer, an output read by a later step, a partially
/// written output (zeroed), a bool input, and a non-contiguous input (copied).
#[test]
fn outputs_of_a_run_are_not_modified_by_the_next() {
    use kiln_ir::CompareOp;
    let n = 1 << 16;
    let mut sb = Sb::new();
    let x = sb.input(DType::F32, n);
    let y = sb.input(DType::F32, n);
    let c = sb.input(DType::Bool, n);
    let t = sb.computed(DType::F32, n);
    let o1 = sb.computed(DType::F32, n);
    let o2 = sb.computed(DType::F32, n);
    let o3 = sb.computed(DType::F32, n);
    let o4 = sb.computed(DType::Bool, n);
    let mut k = Kb::new("mul", &[n], &[]);
    let (a, b) = (k.load_c(x, DType::F32), k.load_c(y, DType::F32));
    let r = k.bin(BinaryOp::Mul, a, b);
    k.store_c(t, r);
    sb.kernel(k);
    let mut k = Kb::new("add", &[n], &[]);
    let (a, b) = (k.load_c(t, DType::F32), k.load_c(x, DType::F32));
    let r = k.bin(BinaryOp::Add, a, b);
    k.store_c(o1, r);
    sb.kernel(k);
    let mut k = Kb::new("where", &[n], &[]);
    let (cc, a, b) = (k.load_c(c, DType::Bool), k.load_c(o1, DType::F32), k.load_c(y, DType::F32));
    let r = k.wh(cc, a, b);
    k.store_c(o2, r);
    let g = k.cmp(CompareOp::Greater, a, b);
    k.store_c(o4, g);
    sb.kernel(k);
    let mut k = Kb::new("half", &[n / 2], &[]);
    let a = k.load(y, DType::F32, 1, &[2]);
    let r = k.un(UnaryOp::Neg, a);
    k.store(o3, r, 0, &[2]);
    sb.kernel(k);
    sb.output(o1, &[n]).output(o2, &[n]).output(o3, &[n]).output(o4, &[n]);
    let mp = kiln_passes::plan::plan_memory(&mut sb.s);
    assert_eq!(mp.in_place, 1, "o1 is written over t");
    let exe = cpu::compile(&sb.s).unwrap();
    let inputs = |seed: u64, strided: bool| -> Vec<Value> {
        let mut v = vec![
            random_value(DType::F32, n, seed),
            random_value(DType::F32, n, seed + 1),
            random_value(DType::Bool, n, seed + 2),
        ];
        if strided {
            // A non-contiguous view of the same elements: copied in, not bound.
            let Value::F32(a) = &v[0] else { unreachable!() };
            let mut wide = ndarray::ArrayD::<f32>::zeros(ndarray::IxDyn(&[2 * n]));
            wide.slice_mut(ndarray::s![..;2]).assign(a);
            let strided = wide.slice_move(ndarray::s![..;2]).into_dyn();
            assert!(strided.as_slice().is_none());
            v[0] = Value::F32(strided);
        }
        v
    };
    let (in1, in2) = (inputs(1, false), inputs(7, true));
    let want1 = execute(&sb.s, &in1).unwrap();
    let want2 = execute(&sb.s, &in2).unwrap();
    let got1 = exe.run(&in1).unwrap();
    assert_eq!(got1, want1);
    let got2 = exe.run(&in2).unwrap();
    assert_eq!(got2, want2);
    assert_eq!(got1, want1, "the second run changed the first run's outputs");
    let got3 = exe.run(&in1).unwrap();
    assert_eq!(got3, want1);
    assert_eq!(got2, want2, "the third run changed the second run's outputs");
    // The inputs were only read.
    assert_eq!(in1, inputs(1, false));
}
