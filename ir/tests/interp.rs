//! Tests of the reference interpreter against values worked out by hand or taken from ONNX's
//! operator docs. Every primitive op is exercised in both f32 and f64 (loops over `FLOATS`), plus
//! i64/bool where the op allows them.

use kiln_ir::interp::{allclose, eval_node, run, run_all, Value};
use kiln_ir::{
    BinaryOp, CompareOp, DType, Error, Graph, Literal, Node, NodeId, Op, ReduceOp, Shape, UnaryOp,
};
use ndarray::{ArrayD, IxDyn};

const FLOATS: [DType; 2] = [DType::F32, DType::F64];
const NAN: f64 = f64::NAN;
const INF: f64 = f64::INFINITY;

type Build<'a> = dyn Fn(&mut Graph, &[NodeId]) -> kiln_ir::Result<NodeId> + 'a;

/// Builds a graph with one input per `(dtype, shape, data)`, one output made by `build`, and runs
/// it on the data.
fn eval(inputs: &[(DType, &[usize], &[f64])], build: &Build<'_>) -> kiln_ir::Result<Value> {
    let mut g = Graph::new();
    let ids: Vec<NodeId> =
        inputs.iter().enumerate().map(|(i, (d, s, _))| g.input(format!("x{i}"), *d, s.to_vec())).collect();
    let out = build(&mut g, &ids)?;
    g.set_outputs(vec![out]);
    g.verify()?;
    let vals: Vec<Value> =
        inputs.iter().map(|(d, s, data)| Value::from_f64(*d, s.to_vec(), data).unwrap()).collect();
    Ok(run(&g, &vals)?.remove(0))
}

/// `eval` of a one-input graph.
fn eval1(dt: DType, shape: &[usize], data: &[f64], build: &Build<'_>) -> kiln_ir::Result<Value> {
    eval(&[(dt, shape, data)], build)
}

/// Asserts `got` is a `dtype` value of `shape` close to `want` (NaN matches NaN).
#[track_caller]
fn check(got: &Value, dtype: DType, shape: &[usize], want: &[f64]) {
    let want = Value::from_f64(dtype, shape.to_vec(), want).unwrap();
    let tol = if dtype == DType::F32 { 1e-6 } else { 1e-12 };
    assert!(allclose(got, &want, tol, tol), "{dtype}: got {got:?}\nwant {want:?}");
}

fn arange(n: usize) -> Vec<f64> {
    (0..n).map(|i| i as f64).collect()
}

// ----- unary ------------------------------------------------------------------------------------

/// (op, input, expected) for every unary op, including the special values.
fn unary_table() -> Vec<(UnaryOp, Vec<f64>, Vec<f64>)> {
    use std::f64::consts::{E, PI};
    vec![
        (UnaryOp::Neg, vec![1.5, -2.0, 0.0, INF, NAN], vec![-1.5, 2.0, 0.0, -INF, NAN]),
        (UnaryOp::Abs, vec![-1.5, 2.0, 0.0, -INF, NAN], vec![1.5, 2.0, 0.0, INF, NAN]),
        (UnaryOp::Exp, vec![0.0, 1.0, -INF, INF, NAN], vec![1.0, E, 0.0, INF, NAN]),
        (UnaryOp::Log, vec![1.0, E, 0.0, -1.0, INF], vec![0.0, 1.0, -INF, NAN, INF]),
        (UnaryOp::Sqrt, vec![0.0, 4.0, 2.25, -1.0, INF], vec![0.0, 2.0, 1.5, NAN, INF]),
        (UnaryOp::Reciprocal, vec![2.0, -4.0, 0.0, INF], vec![0.5, -0.25, INF, 0.0]),
        (
            UnaryOp::Tanh,
            vec![0.0, 1.0, -0.5, -INF, 100.0, NAN],
            vec![0.0, 0.7615941559557649, -0.46211715726000974, -1.0, 1.0, NAN],
        ),
        (
            UnaryOp::Sigmoid,
            vec![0.0, 1.0, -1.0, 1000.0, -1000.0, INF, -INF, NAN],
            vec![0.5, 0.7310585786300049, 0.2689414213699951, 1.0, 0.0, 1.0, 0.0, NAN],
        ),
        (UnaryOp::Relu, vec![-1.0, 0.0, 2.5, -INF, NAN], vec![0.0, 0.0, 2.5, 0.0, NAN]),
        (
            UnaryOp::Erf,
            vec![0.0, 0.5, -1.0, 2.0, INF, -INF, NAN],
            vec![0.0, 0.5204998778130465, -0.8427007929497149, 0.9953222650189527, 1.0, -1.0, NAN],
        ),
        (UnaryOp::Sin, vec![0.0, PI / 2.0, PI / 6.0, -PI / 2.0], vec![0.0, 1.0, 0.5, -1.0]),
        (UnaryOp::Cos, vec![0.0, PI, PI / 3.0], vec![1.0, -1.0, 0.5]),
        (UnaryOp::Sign, vec![-3.0, 0.0, 2.0, -INF, NAN], vec![-1.0, 0.0, 1.0, -1.0, NAN]),
    ]
}

#[test]
fn every_unary_op_in_both_float_dtypes() {
    let table = unary_table();
    assert_eq!(table.len(), UnaryOp::ALL.len(), "every unary op has a row");
    for (op, x, want) in &table {
        for dt in FLOATS {
            let got = eval1(dt, &[x.len()], x, &|g, i| g.unary(*op, i[0])).unwrap();
            assert_eq!(got.dtype(), dt);
            check(&got, dt, &[x.len()], want);
        }
    }
}

#[test]
fn unary_ops_keep_the_shape_of_matrices_and_scalars() {
    for dt in FLOATS {
        let got = eval1(dt, &[2, 2], &[1.0, 4.0, 9.0, 16.0], &|g, i| g.unary(UnaryOp::Sqrt, i[0])).unwrap();
        check(&got, dt, &[2, 2], &[1.0, 2.0, 3.0, 4.0]);
        let got = eval1(dt, &[], &[-2.0], &|g, i| g.unary(UnaryOp::Abs, i[0])).unwrap();
        check(&got, dt, &[], &[2.0]);
    }
}

#[test]
fn sigmoid_is_stable_and_exact_at_the_limits() {
    for dt in FLOATS {
        let x = [100.0, -100.0, 1000.0, -1000.0, 1e30, -1e30];
        let got = eval1(dt, &[6], &x, &|g, i| g.unary(UnaryOp::Sigmoid, i[0])).unwrap().to_f64_vec();
        assert!(got.iter().all(|v| v.is_finite() && (0.0..=1.0).contains(v)), "{dt}: {got:?}");
        assert_eq!(got[0], 1.0, "{dt}");
        assert!(got[1] < 1e-40, "{dt}: {}", got[1]);
        assert_eq!(&got[2..], &[1.0, 0.0, 1.0, 0.0], "{dt}");
    }
}

#[test]
fn special_values_are_exact() {
    for dt in FLOATS {
        let sqrt0 = eval1(dt, &[], &[0.0], &|g, i| g.unary(UnaryOp::Sqrt, i[0])).unwrap();
        assert_eq!(sqrt0.scalar_f64(), Some(0.0));
        let log0 = eval1(dt, &[], &[0.0], &|g, i| g.unary(UnaryOp::Log, i[0])).unwrap();
        assert_eq!(log0.scalar_f64(), Some(-INF));
        let erf = eval1(dt, &[2], &[INF, -INF], &|g, i| g.unary(UnaryOp::Erf, i[0])).unwrap();
        assert_eq!(erf.to_f64_vec(), vec![1.0, -1.0]);
    }
}

#[test]
fn integer_unary_ops() {
    let x = [-3.0, 0.0, 5.0];
    let table = [
        (UnaryOp::Neg, [3.0, 0.0, -5.0]),
        (UnaryOp::Abs, [3.0, 0.0, 5.0]),
        (UnaryOp::Relu, [0.0, 0.0, 5.0]),
        (UnaryOp::Sign, [-1.0, 0.0, 1.0]),
    ];
    for (op, want) in table {
        let got = eval1(DType::I64, &[3], &x, &|g, i| g.unary(op, i[0])).unwrap();
        assert_eq!(got, Value::from_f64(DType::I64, [3], &want).unwrap(), "{op:?}");
    }
    // Overflow wraps instead of panicking (numpy's behaviour).
    let min = Value::I64(ArrayD::from_elem(IxDyn(&[1]), i64::MIN));
    let mut g = Graph::new();
    let x = g.input("x", DType::I64, [1]);
    let y = g.neg(x).unwrap();
    g.set_outputs(vec![y]);
    assert_eq!(run(&g, std::slice::from_ref(&min)).unwrap()[0], min);
}

// ----- binary -----------------------------------------------------------------------------------

/// (op, a, b, expected) on same-shape operands.
/// (op, a, b, expected)
type BinaryRow = (BinaryOp, Vec<f64>, Vec<f64>, Vec<f64>);

fn binary_table() -> Vec<BinaryRow> {
    vec![
        (BinaryOp::Add, vec![1.0, 2.0, 3.0, INF], vec![10.0, 20.0, 30.0, -INF], vec![11.0, 22.0, 33.0, NAN]),
        (BinaryOp::Sub, vec![1.0, 2.0, 3.0], vec![0.5, 4.0, -1.0], vec![0.5, -2.0, 4.0]),
        (BinaryOp::Mul, vec![1.0, 2.0, -3.0, 0.0], vec![2.0, 0.5, 4.0, INF], vec![2.0, 1.0, -12.0, NAN]),
        (BinaryOp::Div, vec![1.0, -3.0, 1.0, 0.0], vec![4.0, 2.0, 0.0, 0.0], vec![0.25, -1.5, INF, NAN]),
        (
            BinaryOp::Pow,
            vec![2.0, 9.0, 2.0, 0.0, -8.0, -2.0, 4.0],
            vec![3.0, 0.5, -1.0, 0.0, 1.0 / 3.0, 2.0, -0.5],
            vec![8.0, 3.0, 0.5, 1.0, NAN, 4.0, 0.5],
        ),
        (
            BinaryOp::Max,
            vec![1.0, 5.0, NAN, 2.0, -INF],
            vec![3.0, 2.0, 1.0, NAN, -1.0],
            vec![3.0, 5.0, NAN, NAN, -1.0],
        ),
        (
            BinaryOp::Min,
            vec![1.0, 5.0, NAN, 2.0, INF],
            vec![3.0, 2.0, 1.0, NAN, 1.0],
            vec![1.0, 2.0, NAN, NAN, 1.0],
        ),
    ]
}

#[test]
fn every_binary_op_in_both_float_dtypes() {
    let table = binary_table();
    assert_eq!(table.len(), BinaryOp::ALL.len(), "every binary op has a row");
    for (op, a, b, want) in &table {
        for dt in FLOATS {
            let n = a.len();
            let got = eval(&[(dt, &[n], a), (dt, &[n], b)], &|g, i| g.binary(*op, i[0], i[1])).unwrap();
            check(&got, dt, &[n], want);
        }
    }
}

#[test]
fn binary_ops_broadcast_like_numpy() {
    for dt in FLOATS {
        // [3,1] + [4] -> [3,4]
        let got = eval(&[(dt, &[3, 1], &[0.0, 10.0, 20.0]), (dt, &[4], &[1.0, 2.0, 3.0, 4.0])], &|g, i| {
            g.add_(i[0], i[1])
        })
        .unwrap();
        #[rustfmt::skip]
        check(&got, dt, &[3, 4], &[1.0, 2.0, 3.0, 4.0, 11.0, 12.0, 13.0, 14.0, 21.0, 22.0, 23.0, 24.0]);

        // scalar * matrix, and matrix - scalar
        let m = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let got = eval(&[(dt, &[], &[2.0]), (dt, &[2, 3], &m)], &|g, i| g.mul(i[0], i[1])).unwrap();
        check(&got, dt, &[2, 3], &[2.0, 4.0, 6.0, 8.0, 10.0, 12.0]);
        let got = eval(&[(dt, &[2, 3], &m), (dt, &[], &[1.0])], &|g, i| g.sub(i[0], i[1])).unwrap();
        check(&got, dt, &[2, 3], &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);

        // both sides broadcast: [1,3] / [2,1] -> [2,3]
        let got =
            eval(&[(dt, &[1, 3], &[2.0, 4.0, 8.0]), (dt, &[2, 1], &[1.0, 2.0])], &|g, i| g.div(i[0], i[1]))
                .unwrap();
        check(&got, dt, &[2, 3], &[2.0, 4.0, 8.0, 1.0, 2.0, 4.0]);

        // rank extension with a middle 1: [2,1,2] max [3,1] -> [2,3,2]
        let a = [0.0, 5.0, 10.0, 15.0];
        let got = eval(&[(dt, &[2, 1, 2], &a), (dt, &[3, 1], &[1.0, 7.0, 12.0])], &|g, i| {
            g.binary(BinaryOp::Max, i[0], i[1])
        })
        .unwrap();
        #[rustfmt::skip]
        check(&got, dt, &[2, 3, 2], &[1.0, 5.0, 7.0, 7.0, 12.0, 12.0, 10.0, 15.0, 10.0, 15.0, 12.0, 15.0]);

        // pow with a scalar exponent
        let got =
            eval(&[(dt, &[3], &[1.0, 2.0, 3.0]), (dt, &[], &[2.0])], &|g, i| g.pow(i[0], i[1])).unwrap();
        check(&got, dt, &[3], &[1.0, 4.0, 9.0]);
    }
}

#[test]
fn integer_binary_ops() {
    let a = [7.0, -7.0, 7.0, 2.0, 0.0];
    let b = [2.0, 2.0, -2.0, 10.0, 3.0];
    let table = [
        (BinaryOp::Add, [9.0, -5.0, 5.0, 12.0, 3.0]),
        (BinaryOp::Sub, [5.0, -9.0, 9.0, -8.0, -3.0]),
        (BinaryOp::Mul, [14.0, -14.0, -14.0, 20.0, 0.0]),
        (BinaryOp::Div, [3.0, -3.0, -3.0, 0.0, 0.0]), // truncating
        (BinaryOp::Max, [7.0, 2.0, 7.0, 10.0, 3.0]),
        (BinaryOp::Min, [2.0, -7.0, -2.0, 2.0, 0.0]),
    ];
    for (op, want) in table {
        let got = eval(&[(DType::I64, &[5], &a), (DType::I64, &[5], &b)], &|g, i| g.binary(op, i[0], i[1]));
        assert_eq!(got.unwrap(), Value::from_f64(DType::I64, [5], &want).unwrap(), "{op:?}");
    }
    // pow (the table's exponents include a negative one): x^0 = 1 (also 0^0), odd powers of
    // negatives, broadcasting a scalar exponent.
    let got =
        eval(&[(DType::I64, &[3], &[2.0, -7.0, 1.0]), (DType::I64, &[3], &[10.0, 2.0, 1000.0])], &|g, i| {
            g.pow(i[0], i[1])
        });
    assert_eq!(got.unwrap().to_f64_vec(), vec![1024.0, 49.0, 1.0]);
    let got =
        eval(&[(DType::I64, &[3], &[0.0, -2.0, 5.0]), (DType::I64, &[], &[3.0])], &|g, i| g.pow(i[0], i[1]));
    assert_eq!(got.unwrap().to_f64_vec(), vec![0.0, -8.0, 125.0]);
    let got = eval(&[(DType::I64, &[2], &[0.0, -9.0]), (DType::I64, &[], &[0.0])], &|g, i| g.pow(i[0], i[1]));
    assert_eq!(got.unwrap().to_f64_vec(), vec![1.0, 1.0]);
}

#[test]
fn integer_division_by_zero_is_an_error() {
    let err =
        eval(&[(DType::I64, &[2], &[1.0, 2.0]), (DType::I64, &[2], &[1.0, 0.0])], &|g, i| g.div(i[0], i[1]))
            .unwrap_err();
    assert!(matches!(err, Error::Interp(_)), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("Div") && msg.contains("division by zero"), "{msg}");
}

#[test]
fn integer_pow_with_a_negative_exponent_is_an_error() {
    let err = eval(&[(DType::I64, &[1], &[2.0]), (DType::I64, &[1], &[-1.0])], &|g, i| g.pow(i[0], i[1]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("Pow") && err.contains("negative exponent"), "{err}");
}

// ----- comparisons and Where --------------------------------------------------------------------

#[test]
fn comparisons_give_bool_in_every_dtype() {
    let a = [1.0, 2.0, 3.0, NAN];
    let b = [2.0, 2.0, 2.0, NAN];
    let table = [
        (CompareOp::Equal, [0.0, 1.0, 0.0, 0.0]),
        (CompareOp::Greater, [0.0, 0.0, 1.0, 0.0]),
        (CompareOp::Less, [1.0, 0.0, 0.0, 0.0]),
    ];
    assert_eq!(table.len(), CompareOp::ALL.len());
    for (op, want) in table {
        for dt in FLOATS {
            let got = eval(&[(dt, &[4], &a), (dt, &[4], &b)], &|g, i| g.compare(op, i[0], i[1])).unwrap();
            assert_eq!(got, Value::from_f64(DType::Bool, [4], &want).unwrap(), "{dt} {op:?}");
        }
        // i64 on the first three (no NaN there)
        let got = eval(&[(DType::I64, &[3], &a[..3]), (DType::I64, &[3], &b[..3])], &|g, i| {
            g.compare(op, i[0], i[1])
        })
        .unwrap();
        assert_eq!(got, Value::from_f64(DType::Bool, [3], &want[..3]).unwrap(), "i64 {op:?}");
    }
}

#[test]
fn comparisons_broadcast() {
    for dt in FLOATS {
        let got = eval(&[(dt, &[3, 1], &[1.0, 2.0, 3.0]), (dt, &[3], &[1.0, 2.0, 3.0])], &|g, i| {
            g.compare(CompareOp::Less, i[0], i[1])
        })
        .unwrap();
        let want = [0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0];
        assert_eq!(got, Value::from_f64(DType::Bool, [3, 3], &want).unwrap(), "{dt}");
    }
}

#[test]
fn bool_comparisons() {
    let a = [1.0, 0.0, 1.0, 0.0];
    let b = [1.0, 1.0, 0.0, 0.0];
    let table = [
        (CompareOp::Equal, [1.0, 0.0, 0.0, 1.0]),
        (CompareOp::Greater, [0.0, 0.0, 1.0, 0.0]), // false < true, like numpy
        (CompareOp::Less, [0.0, 1.0, 0.0, 0.0]),
    ];
    for (op, want) in table {
        let got =
            eval(&[(DType::Bool, &[4], &a), (DType::Bool, &[4], &b)], &|g, i| g.compare(op, i[0], i[1]));
        assert_eq!(got.unwrap(), Value::from_f64(DType::Bool, [4], &want).unwrap(), "{op:?}");
    }
}

#[test]
fn where_broadcasts_all_three_operands() {
    for dt in DType::ALL {
        // cond [2,1], x [3], y scalar -> [2,3]
        let got = eval(
            &[(DType::Bool, &[2, 1], &[1.0, 0.0]), (dt, &[3], &[1.0, 0.0, 3.0]), (dt, &[], &[0.0])],
            &|g, i| g.where_(i[0], i[1], i[2]),
        )
        .unwrap();
        let want = Value::from_f64(dt, [2, 3], &[1.0, 0.0, 3.0, 0.0, 0.0, 0.0]).unwrap();
        assert_eq!(got, want, "{dt}");
    }
    for dt in FLOATS {
        // cond [3], x [2,1], y [2,3]
        let y = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0];
        let got = eval(
            &[(DType::Bool, &[3], &[0.0, 1.0, 0.0]), (dt, &[2, 1], &[-1.0, NAN]), (dt, &[2, 3], &y)],
            &|g, i| g.where_(i[0], i[1], i[2]),
        )
        .unwrap();
        check(&got, dt, &[2, 3], &[10.0, -1.0, 30.0, 40.0, NAN, 60.0]);
    }
}

// ----- Cast -------------------------------------------------------------------------------------

#[test]
fn cast_between_floats() {
    for from in FLOATS {
        for to in FLOATS {
            let got = eval1(from, &[4], &[1.5, -2.75, 0.0, INF], &|g, i| g.cast(i[0], to)).unwrap();
            check(&got, to, &[4], &[1.5, -2.75, 0.0, INF]);
        }
    }
    // f64 -> f32 rounds to nearest.
    let got = eval1(DType::F64, &[1], &[0.1], &|g, i| g.cast(i[0], DType::F32)).unwrap();
    assert_eq!(got.as_f32().unwrap()[[0]], 0.1f32);
    let got = eval1(DType::F64, &[1], &[1e300], &|g, i| g.cast(i[0], DType::F32)).unwrap();
    assert_eq!(got.as_f32().unwrap()[[0]], f32::INFINITY);
}

#[test]
fn cast_float_to_int_truncates_toward_zero() {
    for dt in FLOATS {
        let x = [1.7, -1.7, 0.0, 2.5, -0.5, NAN, INF, -INF];
        let got = eval1(dt, &[8], &x, &|g, i| g.cast(i[0], DType::I64)).unwrap();
        let want = vec![1, -1, 0, 2, 0, 0, i64::MAX, i64::MIN];
        assert_eq!(got.as_i64().unwrap().iter().copied().collect::<Vec<_>>(), want, "{dt}");
    }
}

#[test]
fn cast_to_bool_is_nonzero() {
    for dt in FLOATS {
        let got = eval1(dt, &[5], &[1.7, 0.0, -0.0, NAN, -2.0], &|g, i| g.cast(i[0], DType::Bool)).unwrap();
        assert_eq!(got, Value::from_f64(DType::Bool, [5], &[1.0, 0.0, 0.0, 1.0, 1.0]).unwrap(), "{dt}");
    }
    let got = eval1(DType::I64, &[3], &[3.0, 0.0, -1.0], &|g, i| g.cast(i[0], DType::Bool)).unwrap();
    assert_eq!(got, Value::from_f64(DType::Bool, [3], &[1.0, 0.0, 1.0]).unwrap());
}

#[test]
fn cast_from_int_and_bool() {
    for to in FLOATS {
        let got = eval1(DType::I64, &[3], &[3.0, -4.0, 0.0], &|g, i| g.cast(i[0], to)).unwrap();
        check(&got, to, &[3], &[3.0, -4.0, 0.0]);
        let got = eval1(DType::Bool, &[2], &[1.0, 0.0], &|g, i| g.cast(i[0], to)).unwrap();
        check(&got, to, &[2], &[1.0, 0.0]);
    }
    let got = eval1(DType::Bool, &[2], &[1.0, 0.0], &|g, i| g.cast(i[0], DType::I64)).unwrap();
    assert_eq!(got, Value::from_f64(DType::I64, [2], &[1.0, 0.0]).unwrap());
}

#[test]
fn cast_to_the_same_dtype_is_identity() {
    for dt in DType::ALL {
        let x = Value::from_f64(dt, [3], &[1.0, 0.0, 1.0]).unwrap();
        let got = eval1(dt, &[3], &[1.0, 0.0, 1.0], &|g, i| g.cast(i[0], dt)).unwrap();
        assert_eq!(got, x, "{dt}");
    }
}

// ----- reductions -------------------------------------------------------------------------------

/// (op, axes, keepdims, out shape, expected)
type ReduceRow = (ReduceOp, Vec<i64>, bool, Vec<usize>, Vec<f64>);

const M23: [f64; 6] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];

#[test]
fn reductions_over_axes_with_and_without_keepdims() {
    // (op, axes, keepdims, out shape, expected) on [[1,2,3],[4,5,6]]
    #[rustfmt::skip]
    let table: Vec<ReduceRow> = vec![
        (ReduceOp::Sum, vec![0], false, vec![3], vec![5.0, 7.0, 9.0]),
        (ReduceOp::Sum, vec![-1], true, vec![2, 1], vec![6.0, 15.0]),
        (ReduceOp::Sum, vec![1], false, vec![2], vec![6.0, 15.0]),
        (ReduceOp::Sum, vec![], false, vec![], vec![21.0]),
        (ReduceOp::Sum, vec![], true, vec![1, 1], vec![21.0]),
        (ReduceOp::Sum, vec![1, 0], false, vec![], vec![21.0]),
        (ReduceOp::Max, vec![1], false, vec![2], vec![3.0, 6.0]),
        (ReduceOp::Max, vec![-2], true, vec![1, 3], vec![4.0, 5.0, 6.0]),
        (ReduceOp::Max, vec![], false, vec![], vec![6.0]),
        (ReduceOp::Max, vec![0, -1], true, vec![1, 1], vec![6.0]),
        (ReduceOp::Mean, vec![0], false, vec![3], vec![2.5, 3.5, 4.5]),
        (ReduceOp::Mean, vec![-2], true, vec![1, 3], vec![2.5, 3.5, 4.5]),
        (ReduceOp::Mean, vec![1], true, vec![2, 1], vec![2.0, 5.0]),
        (ReduceOp::Mean, vec![], false, vec![], vec![3.5]),
    ];
    for (op, axes, keep, shape, want) in &table {
        for dt in FLOATS {
            let got = eval1(dt, &[2, 3], &M23, &|g, i| g.reduce(*op, i[0], axes.clone(), *keep)).unwrap();
            check(&got, dt, shape, want);
        }
    }
}

#[test]
fn reductions_over_some_axes_of_a_3d_tensor() {
    // x[i][j][k] = 12i + 4j + k; summing over i and k leaves 60 + 32j.
    let x = arange(24);
    for dt in FLOATS {
        let got =
            eval1(dt, &[2, 3, 4], &x, &|g, i| g.reduce(ReduceOp::Sum, i[0], vec![0, -1], false)).unwrap();
        check(&got, dt, &[3], &[60.0, 92.0, 124.0]);
        let got = eval1(dt, &[2, 3, 4], &x, &|g, i| g.reduce(ReduceOp::Max, i[0], vec![0, 2], true)).unwrap();
        check(&got, dt, &[1, 3, 1], &[15.0, 19.0, 23.0]);
        let got = eval1(dt, &[2, 3, 4], &x, &|g, i| g.reduce(ReduceOp::Mean, i[0], vec![1], false)).unwrap();
        #[rustfmt::skip]
        check(&got, dt, &[2, 4], &[4.0, 5.0, 6.0, 7.0, 16.0, 17.0, 18.0, 19.0]);
    }
}

#[test]
fn reduce_max_propagates_nan() {
    for dt in FLOATS {
        // NaN first, in the middle and last in a row; one row without NaN.
        let x = [NAN, 3.0, 0.0, 1.0, NAN, 2.0, -INF, -1.0, NAN, 0.0, 5.0, 2.0];
        let got = eval1(dt, &[4, 3], &x, &|g, i| g.reduce(ReduceOp::Max, i[0], vec![1], false)).unwrap();
        check(&got, dt, &[4], &[NAN, NAN, NAN, 5.0]);
        let got = eval1(dt, &[4, 3], &x, &|g, i| g.reduce(ReduceOp::Max, i[0], vec![0], false)).unwrap();
        check(&got, dt, &[3], &[NAN, NAN, NAN]);
        let got =
            eval1(dt, &[2], &[-INF, -INF], &|g, i| g.reduce(ReduceOp::Max, i[0], vec![], false)).unwrap();
        check(&got, dt, &[], &[-INF]);
    }
}

#[test]
fn reductions_over_an_empty_axis() {
    for dt in FLOATS {
        let got = eval1(dt, &[2, 0], &[], &|g, i| g.reduce(ReduceOp::Sum, i[0], vec![1], false)).unwrap();
        check(&got, dt, &[2], &[0.0, 0.0]);
        let got = eval1(dt, &[2, 0], &[], &|g, i| g.reduce(ReduceOp::Mean, i[0], vec![1], false)).unwrap();
        check(&got, dt, &[2], &[NAN, NAN]);
        let err = eval1(dt, &[2, 0], &[], &|g, i| g.reduce(ReduceOp::Max, i[0], vec![1], false))
            .unwrap_err()
            .to_string();
        assert!(err.contains("ReduceMax") && err.contains("empty"), "{err}");
        // Reducing a non-empty axis of an empty tensor is fine: the result is empty.
        let got = eval1(dt, &[0, 3], &[], &|g, i| g.reduce(ReduceOp::Max, i[0], vec![1], false)).unwrap();
        check(&got, dt, &[0], &[]);
    }
}

#[test]
fn integer_reductions() {
    let got =
        eval1(DType::I64, &[2, 3], &M23, &|g, i| g.reduce(ReduceOp::Sum, i[0], vec![0], false)).unwrap();
    assert_eq!(got, Value::from_f64(DType::I64, [3], &[5.0, 7.0, 9.0]).unwrap());
    let x = [-5.0, -2.0, -9.0, 4.0, -1.0, 0.0];
    let got = eval1(DType::I64, &[2, 3], &x, &|g, i| g.reduce(ReduceOp::Max, i[0], vec![-1], true)).unwrap();
    assert_eq!(got, Value::from_f64(DType::I64, [2, 1], &[-2.0, 4.0]).unwrap());
}

// ----- MatMul -----------------------------------------------------------------------------------

/// Naive numpy `matmul` on row-major data, for checking broadcast batches.
fn naive_matmul(a: &[f64], sa: &[usize], b: &[f64], sb: &[usize]) -> Vec<f64> {
    // Only for a: [B1, 1, m, k] and b: [B2, k, n] giving [B1, B2, m, n].
    let (b1, m, k) = (sa[0], sa[2], sa[3]);
    let (b2, n) = (sb[0], sb[2]);
    let mut out = Vec::new();
    for i in 0..b1 {
        for j in 0..b2 {
            for r in 0..m {
                for c in 0..n {
                    out.push((0..k).map(|t| a[(i * m + r) * k + t] * b[(j * k + t) * n + c]).sum());
                }
            }
        }
    }
    out
}

#[test]
fn matmul_2d_and_batched() {
    let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
    let b = [1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0];
    for dt in FLOATS {
        let got = eval(&[(dt, &[2, 3], &a), (dt, &[3, 4], &b)], &|g, i| g.matmul(i[0], i[1])).unwrap();
        check(&got, dt, &[2, 4], &[1.0, 2.0, 3.0, 6.0, 4.0, 5.0, 6.0, 15.0]);

        // [2,2,3] @ [3,4]: the matrix is broadcast over the batch.
        let a2 = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 0.0, 1.0, 0.0, 1.0, 1.0, 1.0];
        let got = eval(&[(dt, &[2, 2, 3], &a2), (dt, &[3, 4], &b)], &|g, i| g.matmul(i[0], i[1])).unwrap();
        #[rustfmt::skip]
        check(&got, dt, &[2, 2, 4], &[
            1.0, 2.0, 3.0, 6.0, 4.0, 5.0, 6.0, 15.0,
            0.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 3.0,
        ]);
    }
}

#[test]
fn matmul_promotes_1d_operands() {
    let m = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
    let b = [1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0];
    for dt in FLOATS {
        // [3] @ [3,4] -> [4]
        let got =
            eval(&[(dt, &[3], &[1.0, 2.0, 3.0]), (dt, &[3, 4], &b)], &|g, i| g.matmul(i[0], i[1])).unwrap();
        check(&got, dt, &[4], &[1.0, 2.0, 3.0, 6.0]);
        // [2,3] @ [3] -> [2]
        let got =
            eval(&[(dt, &[2, 3], &m), (dt, &[3], &[1.0, 0.0, -1.0])], &|g, i| g.matmul(i[0], i[1])).unwrap();
        check(&got, dt, &[2], &[-2.0, -2.0]);
        // [3] @ [3] -> []
        let got =
            eval(&[(dt, &[3], &[1.0, 2.0, 3.0]), (dt, &[3], &[4.0, 5.0, 6.0])], &|g, i| g.matmul(i[0], i[1]))
                .unwrap();
        check(&got, dt, &[], &[32.0]);
        // [1,2,3] @ [3] -> [1,2]
        let got = eval(&[(dt, &[1, 2, 3], &m), (dt, &[3], &[1.0, 1.0, 1.0])], &|g, i| g.matmul(i[0], i[1]))
            .unwrap();
        check(&got, dt, &[1, 2], &[6.0, 15.0]);
        // [3] @ [2,3,2] -> [2,2]
        let b3 = arange(12);
        let got = eval(&[(dt, &[3], &[1.0, 0.0, 1.0]), (dt, &[2, 3, 2], &b3)], &|g, i| g.matmul(i[0], i[1]))
            .unwrap();
        check(&got, dt, &[2, 2], &[4.0, 6.0, 16.0, 18.0]);
    }
}

#[test]
fn matmul_broadcasts_batch_dims() {
    // [2,1,2,3] @ [3,3,2] -> [2,3,2,2]
    let a: Vec<f64> = (0..12).map(|i| i as f64 - 5.0).collect();
    let b: Vec<f64> = (0..18).map(|i| (i % 7) as f64 * 0.5).collect();
    let want = naive_matmul(&a, &[2, 1, 2, 3], &b, &[3, 3, 2]);
    assert_eq!(want.len(), 24);
    // One entry by hand: batch (0, 0), row 0 = [-5,-4,-3], column 0 of b[0] = [0, 1, 2] → -10.
    assert_eq!(want[0], -10.0);
    for dt in FLOATS {
        let got =
            eval(&[(dt, &[2, 1, 2, 3], &a), (dt, &[3, 3, 2], &b)], &|g, i| g.matmul(i[0], i[1])).unwrap();
        check(&got, dt, &[2, 3, 2, 2], &want);
    }
}

#[test]
fn matmul_with_an_empty_inner_dimension_is_zero() {
    for dt in FLOATS {
        let got = eval(&[(dt, &[2, 0], &[]), (dt, &[0, 3], &[])], &|g, i| g.matmul(i[0], i[1])).unwrap();
        check(&got, dt, &[2, 3], &[0.0; 6]);
    }
}

// ----- data movement ----------------------------------------------------------------------------

#[test]
fn reshape_is_row_major() {
    for dt in FLOATS {
        let got = eval1(dt, &[2, 3], &M23, &|g, i| g.reshape(i[0], vec![3, 2])).unwrap();
        check(&got, dt, &[3, 2], &M23);
        let got = eval1(dt, &[2, 3], &M23, &|g, i| g.reshape(i[0], vec![6])).unwrap();
        check(&got, dt, &[6], &M23);
        let got = eval1(dt, &[], &[7.0], &|g, i| g.reshape(i[0], vec![1, 1])).unwrap();
        check(&got, dt, &[1, 1], &[7.0]);
        let got = eval1(dt, &[1], &[7.0], &|g, i| g.reshape(i[0], vec![])).unwrap();
        check(&got, dt, &[], &[7.0]);
    }
}

#[test]
fn transpose_2d_and_3d() {
    for dt in FLOATS {
        let got = eval1(dt, &[2, 3], &M23, &|g, i| g.transpose(i[0], vec![1, 0])).unwrap();
        check(&got, dt, &[3, 2], &[1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        // out[k][i][j] = x[i][j][k] = 12i + 4j + k
        let got = eval1(dt, &[2, 3, 4], &arange(24), &|g, i| g.transpose(i[0], vec![2, 0, 1])).unwrap();
        let mut want = Vec::new();
        for k in 0..4 {
            for i in 0..2 {
                for j in 0..3 {
                    want.push((12 * i + 4 * j + k) as f64);
                }
            }
        }
        check(&got, dt, &[4, 2, 3], &want);
        let layout_ok = match &got {
            Value::F32(a) => a.is_standard_layout(),
            Value::F64(a) => a.is_standard_layout(),
            _ => false,
        };
        assert!(layout_ok, "results are in standard layout");
    }
}

#[test]
fn expand_broadcasts() {
    for dt in FLOATS {
        let got = eval1(dt, &[3, 1], &[1.0, 2.0, 3.0], &|g, i| g.expand(i[0], vec![2, 3, 2])).unwrap();
        check(&got, dt, &[2, 3, 2], &[1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0]);
        let got = eval1(dt, &[], &[5.0], &|g, i| g.expand(i[0], vec![2, 2])).unwrap();
        check(&got, dt, &[2, 2], &[5.0; 4]);
        let got = eval1(dt, &[2], &[1.0, 2.0], &|g, i| g.expand(i[0], vec![2, 2])).unwrap();
        check(&got, dt, &[2, 2], &[1.0, 2.0, 1.0, 2.0]);
    }
}

#[test]
fn slice_1d_with_steps_and_clamping() {
    // (start, end, step, expected) on [0, 1, ..., 9]
    #[rustfmt::skip]
    let table: Vec<(i64, i64, i64, Vec<f64>)> = vec![
        (1, 1000, 2, vec![1.0, 3.0, 5.0, 7.0, 9.0]),
        (-1, i64::MIN, -1, vec![9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.0]),
        (8, 2, -3, vec![8.0, 5.0]),
        (-3, -1, 1, vec![7.0, 8.0]),
        (-100, 3, 1, vec![0.0, 1.0, 2.0]),
        (100, -100, -4, vec![9.0, 5.0, 1.0]),
        (5, 2, 1, vec![]),
        (2, 5, -1, vec![]),
        (0, 10, 20, vec![0.0]),
    ];
    for (start, end, step, want) in &table {
        for dt in FLOATS {
            let got = eval1(dt, &[10], &arange(10), &|g, i| {
                g.slice(i[0], vec![*start], vec![*end], vec![0], vec![*step])
            })
            .unwrap();
            check(&got, dt, &[want.len()], want);
        }
    }
}

#[test]
fn slice_2d_like_onnx_docs() {
    let data = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
    for dt in FLOATS {
        // ONNX Slice example 1: axes [0,1], starts [1,0], ends [2,3], steps [1,2] -> [[5,7]]
        let got =
            eval1(dt, &[2, 4], &data, &|g, i| g.slice(i[0], vec![1, 0], vec![2, 3], vec![0, 1], vec![1, 2]))
                .unwrap();
        check(&got, dt, &[1, 2], &[5.0, 7.0]);
        // ONNX Slice example 2: starts [0,1], ends [-1,1000] -> [[2,3,4]]
        let got = eval1(dt, &[2, 4], &data, &|g, i| {
            g.slice(i[0], vec![0, 1], vec![-1, 1000], vec![0, 1], vec![1, 1])
        })
        .unwrap();
        check(&got, dt, &[1, 3], &[2.0, 3.0, 4.0]);
        // Negative axis, negative step, untouched axis 0: columns 3 and 1 of every row.
        let got =
            eval1(dt, &[2, 4], &data, &|g, i| g.slice(i[0], vec![3], vec![0], vec![-1], vec![-2])).unwrap();
        check(&got, dt, &[2, 2], &[4.0, 2.0, 8.0, 6.0]);
        // Both axes reversed.
        let got = eval1(dt, &[2, 4], &data, &|g, i| {
            g.slice(i[0], vec![-1, -1], vec![i64::MIN, i64::MIN], vec![1, 0], vec![-1, -1])
        })
        .unwrap();
        check(&got, dt, &[2, 4], &[8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0]);
    }
}

#[test]
fn concat_along_positive_and_negative_axes() {
    for dt in FLOATS {
        let got = eval(&[(dt, &[2, 2], &[1.0, 2.0, 3.0, 4.0]), (dt, &[2, 1], &[5.0, 6.0])], &|g, i| {
            g.concat(&[i[0], i[1]], -1)
        })
        .unwrap();
        check(&got, dt, &[2, 3], &[1.0, 2.0, 5.0, 3.0, 4.0, 6.0]);
        let got = eval(
            &[(dt, &[1, 2], &[1.0, 2.0]), (dt, &[2, 2], &[3.0, 4.0, 5.0, 6.0]), (dt, &[1, 2], &[7.0, 8.0])],
            &|g, i| g.concat(&[i[0], i[1], i[2]], 0),
        )
        .unwrap();
        check(&got, dt, &[4, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
        let got = eval1(dt, &[2], &[1.0, 2.0], &|g, i| g.concat(&[i[0], i[0]], -1)).unwrap();
        check(&got, dt, &[4], &[1.0, 2.0, 1.0, 2.0]);
        let got = eval1(dt, &[3], &[1.0, 2.0, 3.0], &|g, i| g.concat(&[i[0]], 0)).unwrap();
        check(&got, dt, &[3], &[1.0, 2.0, 3.0]);
    }
}

#[test]
fn data_movement_on_int_and_bool() {
    for dt in [DType::I64, DType::Bool] {
        let x = [1.0, 0.0, 1.0, 1.0, 0.0, 0.0];
        let got = eval1(dt, &[2, 3], &x, &|g, i| g.transpose(i[0], vec![1, 0])).unwrap();
        assert_eq!(got, Value::from_f64(dt, [3, 2], &[1.0, 1.0, 0.0, 0.0, 1.0, 0.0]).unwrap());
        let got = eval1(dt, &[2, 3], &x, &|g, i| g.slice(i[0], vec![-1], vec![i64::MIN], vec![1], vec![-2]))
            .unwrap();
        assert_eq!(got, Value::from_f64(dt, [2, 2], &[1.0, 1.0, 0.0, 1.0]).unwrap());
        let got = eval1(dt, &[2, 3], &x, &|g, i| g.concat(&[i[0], i[0]], 0)).unwrap();
        assert_eq!(got.shape(), Shape::new([4, 3]));
        let got = eval1(dt, &[3], &x[..3], &|g, i| g.expand(i[0], vec![2, 3])).unwrap();
        assert_eq!(got, Value::from_f64(dt, [2, 3], &[1.0, 0.0, 1.0, 1.0, 0.0, 1.0]).unwrap());
    }
}

// ----- Constant and Input -----------------------------------------------------------------------

#[test]
fn constants_of_every_dtype() {
    let lits = [
        Literal::F32(vec![1.5, -2.0]),
        Literal::F64(vec![1.5, -2.0]),
        Literal::I64(vec![3, -4]),
        Literal::Bool(vec![true, false]),
    ];
    for lit in lits {
        let mut g = Graph::new();
        let c = g.constant(lit.clone(), [2, 1]).unwrap();
        g.set_outputs(vec![c]);
        let got = run::<Value>(&g, &[]).unwrap().remove(0);
        assert_eq!(got.dtype(), lit.dtype());
        assert_eq!(got.shape(), Shape::new([2, 1]));
        assert_eq!(got.to_literal(), lit);
    }
    for dt in FLOATS {
        let mut g = Graph::new();
        let x = g.input("x", dt, [2]);
        let c = g.scalar(dt, 0.5);
        let y = g.mul(x, c).unwrap();
        g.set_outputs(vec![y]);
        let out = run(&g, &[Value::from_f64(dt, [2], &[2.0, 3.0]).unwrap()]).unwrap();
        check(&out[0], dt, &[2], &[1.0, 1.5]);
    }
}

#[test]
fn inputs_pass_through_and_outputs_repeat() {
    for dt in DType::ALL {
        let mut g = Graph::new();
        let x = g.input("x", dt, [2]);
        let y = g.input("y", dt, [2]);
        g.set_outputs(vec![y, x, y]);
        let xv = Value::from_f64(dt, [2], &[1.0, 0.0]).unwrap();
        let yv = Value::from_f64(dt, [2], &[0.0, 1.0]).unwrap();
        let out = run(&g, &[xv.clone(), yv.clone()]).unwrap();
        assert_eq!(out, vec![yv.clone(), xv, yv]);
    }
}

// ----- whole graphs -----------------------------------------------------------------------------

#[test]
fn a_small_network_with_shared_values() {
    // y = relu(x @ w + b); loss = mean((y - t)^2); values reused several times so that freeing after
    // the last use is exercised.
    for dt in FLOATS {
        let mut g = Graph::new();
        let x = g.input("x", dt, [2, 3]);
        let w = g.param("w", dt, [3, 2]);
        let b = g.param("b", dt, [2]);
        let t = g.input("t", dt, [2, 2]);
        let xw = g.matmul(x, w).unwrap();
        let z = g.add_(xw, b).unwrap();
        let y = g.unary(UnaryOp::Relu, z).unwrap();
        let d = g.sub(y, t).unwrap();
        let d2 = g.mul(d, d).unwrap();
        let loss = g.reduce(ReduceOp::Mean, d2, vec![], false).unwrap();
        let ysum = g.reduce(ReduceOp::Sum, y, vec![0], false).unwrap();
        g.set_outputs(vec![loss, y, ysum]);
        g.verify().unwrap();
        let vals = [
            Value::from_f64(dt, [2, 3], &[1.0, 2.0, 3.0, -1.0, 0.0, 1.0]).unwrap(),
            Value::from_f64(dt, [3, 2], &[1.0, -1.0, 0.0, 1.0, 1.0, 0.0]).unwrap(),
            Value::from_f64(dt, [2], &[0.5, -0.5]).unwrap(),
            Value::from_f64(dt, [2, 2], &[4.0, 0.0, 0.0, 2.0]).unwrap(),
        ];
        let out = run(&g, &vals).unwrap();
        // x@w = [[4, 1], [0, 1]]; +b = [[4.5, 0.5], [0.5, 0.5]]; relu keeps it.
        check(&out[1], dt, &[2, 2], &[4.5, 0.5, 0.5, 0.5]);
        // d = [[0.5, 0.5], [0.5, -1.5]]; d^2 = [0.25, 0.25, 0.25, 2.25]; mean = 0.75
        check(&out[0], dt, &[], &[0.75]);
        check(&out[2], dt, &[2], &[5.0, 1.0]);
    }
}

#[test]
fn dead_nodes_are_not_evaluated_by_run_but_are_by_run_all() {
    let mut g = Graph::new();
    let x = g.input("x", DType::I64, [2]);
    let zero = g.scalar(DType::I64, 0.0);
    let dead = g.div(x, zero).unwrap(); // would fail
    let y = g.add_(x, x).unwrap();
    g.set_outputs(vec![y]);
    let xv = Value::from_f64(DType::I64, [2], &[1.0, 2.0]).unwrap();
    let out = run(&g, std::slice::from_ref(&xv)).unwrap();
    assert_eq!(out[0].to_f64_vec(), vec![2.0, 4.0]);
    let err = run_all(&g, std::slice::from_ref(&xv)).unwrap_err().to_string();
    assert!(err.contains("division by zero"), "{err}");

    // Without the failing node, run_all returns every value.
    g.remove(dead);
    let all = run_all(&g, std::slice::from_ref(&xv)).unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[&x], xv);
    assert_eq!(all[&zero].scalar_f64(), Some(0.0));
    assert_eq!(all[&y].to_f64_vec(), vec![2.0, 4.0]);
}

#[test]
fn non_standard_layout_inputs_are_read_in_logical_order() {
    // A transposed (column-major) array as input: reshape must follow its logical order.
    let a = ArrayD::from_shape_vec(IxDyn(&[3, 2]), vec![1.0f64, 4.0, 2.0, 5.0, 3.0, 6.0]).unwrap();
    let t = a.reversed_axes(); // logical [[1,2,3],[4,5,6]], Fortran layout
    assert!(!t.is_standard_layout());
    let mut g = Graph::new();
    let x = g.input("x", DType::F64, [2, 3]);
    let y = g.reshape(x, vec![6]).unwrap();
    let s = g.reduce(ReduceOp::Sum, x, vec![1], false).unwrap();
    g.set_outputs(vec![y, s]);
    let out = run(&g, &[Value::F64(t)]).unwrap();
    assert_eq!(out[0].to_f64_vec(), M23.to_vec());
    assert_eq!(out[1].to_f64_vec(), vec![6.0, 15.0]);
}

// ----- errors -----------------------------------------------------------------------------------

fn two_input_graph() -> Graph {
    let mut g = Graph::new();
    let x = g.input("x", DType::F32, [2, 3]);
    let y = g.input("bias", DType::F32, [3]);
    let z = g.add_(x, y).unwrap();
    g.set_outputs(vec![z]);
    g
}

#[test]
fn wrong_input_count_is_an_error() {
    let g = two_input_graph();
    let x = Value::from_f64(DType::F32, [2, 3], &[0.0; 6]).unwrap();
    let err = run(&g, &[x]).unwrap_err();
    assert!(matches!(err, Error::Interp(_)), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("2 input(s)") && msg.contains("1 value(s)"), "{msg}");
}

#[test]
fn wrong_input_shape_or_dtype_names_the_input() {
    let g = two_input_graph();
    let x = Value::from_f64(DType::F32, [2, 3], &[0.0; 6]).unwrap();
    let bad_shape = Value::from_f64(DType::F32, [2], &[0.0; 2]).unwrap();
    let msg = run(&g, &[x.clone(), bad_shape]).unwrap_err().to_string();
    assert!(msg.contains("'bias'") && msg.contains("f32[3]") && msg.contains("f32[2]"), "{msg}");
    let bad_dtype = Value::from_f64(DType::F64, [3], &[0.0; 3]).unwrap();
    let msg = run(&g, &[x, bad_dtype]).unwrap_err().to_string();
    assert!(msg.contains("'bias'") && msg.contains("f32[3]") && msg.contains("f64[3]"), "{msg}");
}

#[test]
fn a_missing_output_is_an_error() {
    let mut g = Graph::new();
    let x = g.input("x", DType::F32, [1]);
    let y = g.neg(x).unwrap();
    g.set_outputs(vec![y]);
    g.remove(y);
    let msg = run(&g, &[Value::from_f64(DType::F32, [1], &[1.0]).unwrap()]).unwrap_err().to_string();
    assert!(msg.contains("output 0"), "{msg}");
}

#[test]
fn eval_node_checks_operands_and_the_declared_type() {
    let x = Value::from_f64(DType::F64, [2], &[1.0, 4.0]).unwrap();
    let node = Node { op: Op::Unary(UnaryOp::Sqrt), dtype: DType::F64, shape: Shape::new([2]) };
    assert_eq!(eval_node(&node, &[&x]).unwrap().to_f64_vec(), vec![1.0, 2.0]);
    // A node typed wrongly (an unverified graph) is caught, not silently accepted.
    let wrong = Node { op: Op::Unary(UnaryOp::Sqrt), dtype: DType::F64, shape: Shape::new([3]) };
    let msg = eval_node(&wrong, &[&x]).unwrap_err().to_string();
    assert!(msg.contains("f64[2]") && msg.contains("f64[3]"), "{msg}");
    // Wrong operand count and dtypes the op does not accept are errors too.
    let msg = eval_node(&node, &[]).unwrap_err().to_string();
    assert!(msg.contains("expects 1 operand"), "{msg}");
    let b = Value::from_f64(DType::Bool, [2], &[1.0, 0.0]).unwrap();
    let bool_node = Node { op: Op::Unary(UnaryOp::Exp), dtype: DType::Bool, shape: Shape::new([2]) };
    assert!(eval_node(&bool_node, &[&b]).unwrap_err().to_string().contains("bool"));
    let mixed = Node { op: Op::Binary(BinaryOp::Add), dtype: DType::F64, shape: Shape::new([2]) };
    let y = Value::from_f64(DType::F32, [2], &[1.0, 4.0]).unwrap();
    assert!(eval_node(&mixed, &[&x, &y]).is_err());
    let bad_perm = Node { op: Op::Transpose { perm: vec![0, 0] }, dtype: DType::F64, shape: Shape::new([2]) };
    assert!(eval_node(&bad_perm, &[&x]).is_err());
}

// ----- Value and allclose -----------------------------------------------------------------------

#[test]
fn value_accessors_and_conversions() {
    let v = Value::from_f64(DType::F32, [2, 2], &[1.0, 2.0, 3.0, 4.0]).unwrap();
    assert_eq!(v.dtype(), DType::F32);
    assert_eq!(v.shape(), Shape::new([2, 2]));
    assert_eq!(v.numel(), 4);
    assert!(v.as_f32().is_some() && v.as_f64().is_none() && v.as_i64().is_none() && v.as_bool().is_none());
    assert_eq!(v.to_f64_vec(), vec![1.0, 2.0, 3.0, 4.0]);
    assert_eq!(v.scalar_f64(), None);
    assert_eq!(Value::from_f64(DType::I64, [1, 1], &[-3.9]).unwrap().scalar_f64(), Some(-3.0));
    assert_eq!(Value::from_f64(DType::Bool, [], &[2.0]).unwrap().scalar_f64(), Some(1.0));
    assert!(Value::from_f64(DType::F64, [3], &[1.0]).is_err());
    let lit = Literal::I64(vec![1, 2, 3]);
    assert!(Value::from_literal(&lit, &Shape::new([2])).is_err());
    let v = Value::from_literal(&lit, &Shape::new([3, 1])).unwrap();
    assert_eq!(v.to_literal(), lit);
    assert_eq!(Value::from(ArrayD::from_elem(IxDyn(&[2]), true)).dtype(), DType::Bool);
}

#[test]
fn allclose_semantics() {
    let v = |dt, d: &[f64]| Value::from_f64(dt, [d.len()], d).unwrap();
    for dt in FLOATS {
        assert!(allclose(&v(dt, &[1.0, NAN, INF]), &v(dt, &[1.0, NAN, INF]), 0.0, 0.0));
        assert!(!allclose(&v(dt, &[NAN]), &v(dt, &[1.0]), 1.0, 1.0));
        assert!(!allclose(&v(dt, &[INF]), &v(dt, &[-INF]), 1.0, 1.0));
        assert!(!allclose(&v(dt, &[INF]), &v(dt, &[1e30]), 1.0, 1.0));
        assert!(allclose(&v(dt, &[1.0]), &v(dt, &[1.001]), 1e-2, 0.0));
        assert!(!allclose(&v(dt, &[1.0]), &v(dt, &[1.1]), 1e-2, 1e-2));
        assert!(allclose(&v(dt, &[0.0]), &v(dt, &[1e-9]), 0.0, 1e-8));
        assert!(!allclose(&v(dt, &[1.0, 2.0]), &v(dt, &[1.0]), 1.0, 1.0), "shapes differ");
    }
    assert!(!allclose(&v(DType::F32, &[1.0]), &v(DType::F64, &[1.0]), 1.0, 1.0), "dtypes differ");
    assert!(!allclose(&v(DType::I64, &[1.0]), &v(DType::I64, &[2.0]), 1.0, 1.0), "ints are exact");
    assert!(allclose(&v(DType::Bool, &[1.0, 0.0]), &v(DType::Bool, &[1.0, 0.0]), 0.0, 0.0));
}

#[test]
fn f32_sums_accumulate_in_f64_and_round_once() {
    // 2^24 + 1 + 1: a sequential f32 accumulator loses both ones (2^24 + 1 rounds to 2^24).
    let x = [16777216.0, 1.0, 1.0];
    for dt in FLOATS {
        let got = eval1(dt, &[3], &x, &|g, i| g.reduce(ReduceOp::Sum, i[0], vec![], false)).unwrap();
        assert_eq!(got.scalar_f64(), Some(16777218.0), "{dt}");
        let got = eval1(dt, &[3], &x, &|g, i| g.reduce(ReduceOp::Mean, i[0], vec![], false)).unwrap();
        check(&got, dt, &[], &[16777218.0 / 3.0]);
        let got = eval(&[(dt, &[3], &x), (dt, &[3], &[1.0; 3])], &|g, i| g.matmul(i[0], i[1])).unwrap();
        assert_eq!(got.scalar_f64(), Some(16777218.0), "{dt}");
    }
}
