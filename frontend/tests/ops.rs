//! Elementwise arithmetic, unary math, activations, where/comparisons, softmax, matmul:
//! values and gradients (hand-computed and by finite differences in f64).

mod common;
use common::*;
use kiln_frontend::{DType, Error, Tensor};

const X: [f64; 4] = [1.5, -2.0, 3.0, 0.5];
const Y: [f64; 4] = [0.5, 4.0, -1.5, 2.0];

fn xy() -> (Tensor, Tensor) {
    (leaf64(&X, &[2, 2]), leaf64(&Y, &[2, 2]))
}

fn zip(f: impl Fn(f64, f64) -> f64) -> Vec<f64> {
    X.iter().zip(&Y).map(|(&a, &b)| f(a, b)).collect()
}

fn map(f: impl Fn(f64) -> f64) -> Vec<f64> {
    X.iter().map(|&a| f(a)).collect()
}

// ----- tensor ⊕ tensor ------------------------------------------------------------------------

#[test]
fn add_tensors_values_and_gradients() {
    let (x, y) = xy();
    let z = &x + &y;
    assert_eq!(z.dtype(), DType::F64);
    assert_eq!(vals(&z), zip(|a, b| a + b));
    z.sum().backward().unwrap();
    assert_eq!(grad(&x), vec![1.0; 4]);
    assert_eq!(grad(&y), vec![1.0; 4]);
}

#[test]
fn sub_tensors_values_and_gradients() {
    let (x, y) = xy();
    let z = &x - &y;
    assert_eq!(vals(&z), zip(|a, b| a - b));
    z.sum().backward().unwrap();
    assert_eq!(grad(&x), vec![1.0; 4]);
    assert_eq!(grad(&y), vec![-1.0; 4]);
}

#[test]
fn mul_tensors_values_and_gradients() {
    let (x, y) = xy();
    let z = &x * &y;
    assert_eq!(vals(&z), zip(|a, b| a * b));
    z.sum().backward().unwrap();
    assert_eq!(grad(&x), Y.to_vec());
    assert_eq!(grad(&y), X.to_vec());
}

#[test]
fn div_tensors_values_and_gradients() {
    let (x, y) = xy();
    let z = &x / &y;
    assert_close(&vals(&z), &zip(|a, b| a / b), 1e-15);
    z.sum().backward().unwrap();
    assert_close(&grad(&x), &zip(|_, b| 1.0 / b), 1e-15);
    assert_close(&grad(&y), &zip(|a, b| -a / (b * b)), 1e-15);
}

#[test]
fn operators_accept_owned_and_borrowed_operands() {
    let (x, y) = xy();
    let want = zip(|a, b| a * b);
    assert_eq!(vals(&(&x * &y)), want);
    assert_eq!(vals(&(x.clone() * y.clone())), want);
    assert_eq!(vals(&(x.clone() * &y)), want);
    assert_eq!(vals(&(&x * y.clone())), want);
    assert_eq!(vals(&(x.clone() + y.clone())), zip(|a, b| a + b));
    assert_eq!(vals(&(x.clone() - &y)), zip(|a, b| a - b));
    assert_close(&vals(&(&x / y.clone())), &zip(|a, b| a / b), 1e-15);
    // the method forms return Result
    assert_eq!(vals(&x.add(&y).unwrap()), zip(|a, b| a + b));
    assert_eq!(vals(&x.sub(&y).unwrap()), zip(|a, b| a - b));
    assert_eq!(vals(&x.mul(&y).unwrap()), want);
    assert_close(&vals(&x.div(&y).unwrap()), &zip(|a, b| a / b), 1e-15);
}

#[test]
fn same_tensor_on_both_sides_accumulates() {
    let x = leaf64(&X, &[4]);
    (&x * &x).sum().backward().unwrap();
    assert_eq!(grad(&x), map(|a| 2.0 * a));
    let x = leaf64(&X, &[4]);
    (&x + &x + &x).sum().backward().unwrap();
    assert_eq!(grad(&x), vec![3.0; 4]);
    let x = leaf64(&X, &[4]);
    (&x / &x).sum().backward().unwrap();
    assert_close(&grad(&x), &[0.0; 4], 1e-15);
}

/// (description, op, value, derivative)
type ScalarCase = (&'static str, fn(&Tensor) -> Tensor, fn(f64) -> f64, fn(f64) -> f64);

// ----- tensor ⊕ scalar, scalar ⊕ tensor --------------------------------------------------------

#[test]
fn scalar_on_the_right() {
    let cases: [ScalarCase; 4] = [
        ("x + 2", |x| x + 2.0, |a| a + 2.0, |_| 1.0),
        ("x - 2", |x| x - 2.0, |a| a - 2.0, |_| 1.0),
        ("x * 2", |x| x * 2.0, |a| a * 2.0, |_| 2.0),
        ("x / 2", |x| x / 2.0, |a| a / 2.0, |_| 0.5),
    ];
    for (name, f, v, d) in cases {
        let x = leaf64(&X, &[2, 2]);
        let z = f(&x);
        assert_eq!(z.dtype(), DType::F64, "{name}");
        assert_eq!(z.shape(), &[2, 2], "{name}");
        assert_close(&vals(&z), &map(v), 1e-15);
        z.sum().backward().unwrap();
        assert_close(&grad(&x), &map(d), 1e-15);
        // owned left-hand side too
        assert_close(&vals(&f(&x.detach())), &map(v), 1e-15);
    }
    let x = leaf64(&X, &[4]);
    assert_eq!(vals(&(x.clone() + 1.0)), map(|a| a + 1.0));
    assert_eq!(vals(&(x.clone() - 1.0)), map(|a| a - 1.0));
    assert_eq!(vals(&(x.clone() * 3.0)), map(|a| a * 3.0));
    assert_eq!(vals(&(x / 4.0)), map(|a| a / 4.0));
}

#[test]
fn scalar_on_the_left() {
    let cases: [ScalarCase; 4] = [
        ("2 + x", |x| 2.0 + x, |a| 2.0 + a, |_| 1.0),
        ("2 - x", |x| 2.0 - x, |a| 2.0 - a, |_| -1.0),
        ("2 * x", |x| 2.0 * x, |a| 2.0 * a, |_| 2.0),
        ("2 / x", |x| 2.0 / x, |a| 2.0 / a, |a| -2.0 / (a * a)),
    ];
    for (name, f, v, d) in cases {
        let x = leaf64(&X, &[2, 2]);
        let z = f(&x);
        assert_eq!(z.dtype(), DType::F64, "{name}");
        assert_close(&vals(&z), &map(v), 1e-15);
        z.sum().backward().unwrap();
        assert_close(&grad(&x), &map(d), 1e-15);
    }
    let x = leaf64(&X, &[4]);
    assert_eq!(vals(&(1.0 + x.clone())), map(|a| 1.0 + a));
    assert_eq!(vals(&(1.0 - x.clone())), map(|a| 1.0 - a));
    assert_eq!(vals(&(3.0 * x.clone())), map(|a| 3.0 * a));
    assert_close(&vals(&(4.0 / x)), &map(|a| 4.0 / a), 1e-15);
}

#[test]
fn scalar_keeps_the_tensor_dtype() {
    let x = Tensor::from_vec(vec![1.0f32, 2.0], &[2]).unwrap();
    assert_eq!((&x * 0.1).dtype(), DType::F32);
    assert_eq!((0.1 + &x).dtype(), DType::F32);
    assert_eq!(vals(&(&x * 0.1)), vec![0.1f32 as f64, (2.0f32 * 0.1f32) as f64]);
}

#[test]
fn chained_expression_gradient() {
    // the crate's headline example: mean(3 (x + 2)^2) at x = 1 → d/dx = 6 (x + 2) / 4 = 4.5
    let x = Tensor::ones(&[2, 2]).requires_grad_(true);
    let y = &x + 2.0;
    let z = &y * &y * 3.0;
    let out = z.mean();
    assert_eq!(out.item().unwrap(), 27.0);
    out.backward().unwrap();
    assert_eq!(grad(&x), vec![4.5; 4]);
    assert_eq!(x.grad().unwrap().dtype(), DType::F32);
}

// ----- broadcasting and dtype promotion ---------------------------------------------------------

#[test]
fn broadcasting_values_and_reduced_gradients() {
    let a = leaf64(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let b = leaf64(&[10.0, 20.0, 30.0], &[3]);
    let z = &a + &b;
    assert_eq!(z.shape(), &[2, 3]);
    assert_eq!(vals(&z), vec![11.0, 22.0, 33.0, 14.0, 25.0, 36.0]);
    (&z * &z).sum().backward().unwrap();
    assert_eq!(grad(&a), vals(&z).iter().map(|v| 2.0 * v).collect::<Vec<_>>());
    assert_eq!(grad(&b), vec![2.0 * (11.0 + 14.0), 2.0 * (22.0 + 25.0), 2.0 * (33.0 + 36.0)]);
    assert_eq!(b.grad().unwrap().shape(), &[3]);

    // [2,1] * [1,3] → [2,3]
    let c = leaf64(&[1.0, 2.0], &[2, 1]);
    let d = leaf64(&[3.0, 4.0, 5.0], &[1, 3]);
    let p = &c * &d;
    assert_eq!(p.shape(), &[2, 3]);
    assert_eq!(vals(&p), vec![3.0, 4.0, 5.0, 6.0, 8.0, 10.0]);
    p.sum().backward().unwrap();
    assert_eq!(c.grad().unwrap().shape(), &[2, 1]);
    assert_eq!(grad(&c), vec![12.0, 12.0]);
    assert_eq!(d.grad().unwrap().shape(), &[1, 3]);
    assert_eq!(grad(&d), vec![3.0, 3.0, 3.0]);

    // a 0-d tensor against a matrix
    let s = leaf64(&[2.0], &[]);
    let m = leaf64(&[1.0, 2.0, 3.0, 4.0], &[2, 2]);
    let q = &m / &s;
    q.sum().backward().unwrap();
    assert_eq!(s.grad().unwrap().shape(), &[] as &[usize]);
    assert_close(&grad(&s), &[-10.0 / 4.0], 1e-15);
    assert_eq!(grad(&m), vec![0.5; 4]);

    // leading broadcast dims: [3] - [2,2,3]
    let v = leaf64(&[1.0, 2.0, 3.0], &[3]);
    let big = Tensor::ones_typed(&[2, 2, 3], DType::F64);
    let r = &v - &big;
    assert_eq!(r.shape(), &[2, 2, 3]);
    r.sum().backward().unwrap();
    assert_eq!(grad(&v), vec![4.0; 3]);
}

#[test]
fn broadcasting_mismatch_error_names_both_shapes() {
    let a = Tensor::ones(&[2, 3]);
    for r in [
        a.add(&Tensor::ones(&[4])),
        a.sub(&Tensor::ones(&[4])),
        a.mul(&Tensor::ones(&[2])),
        a.div(&Tensor::ones(&[3, 2])),
        a.maximum(&Tensor::ones(&[4])),
    ] {
        let e = r.unwrap_err();
        assert!(matches!(e, Error::Op(_)), "{e:?}");
        let m = e.to_string();
        assert!(m.contains("[2, 3]"), "{m}");
    }
    let m = msg(a.add(&Tensor::ones(&[4])));
    assert!(m.contains("[4]"), "{m}");
}

#[test]
fn dtype_promotion_f32_f64() {
    let a = leaf32(&[1.0, 2.0], &[2]);
    let b = leaf64(&[0.1, 0.2], &[2]);
    for z in [&a + &b, &b + &a, &a * &b, &a - &b, &a / &b, a.maximum(&b).unwrap()] {
        assert_eq!(z.dtype(), DType::F64);
    }
    let z = &a * &b;
    assert_close(&vals(&z), &[0.1, 0.4], 1e-15);
    z.sum().backward().unwrap();
    // gradients come back in each leaf's own dtype
    assert_eq!(a.grad().unwrap().dtype(), DType::F32);
    assert_eq!(b.grad().unwrap().dtype(), DType::F64);
    assert_close(&grad(&a), &[0.1f32 as f64, 0.2f32 as f64], 1e-7);
    assert_eq!(grad(&b), vec![1.0, 2.0]);
    // comparisons and where promote too
    assert_eq!(vals(&a.gt(&b).unwrap()), vec![1.0, 1.0]);
    let c = Tensor::from_vec(vec![true, false], &[2]).unwrap();
    assert_eq!(Tensor::where_(&c, &a, &b).unwrap().dtype(), DType::F64);
}

#[test]
fn integer_tensor_with_fractional_scalar_promotes_to_float() {
    // PyTorch: torch.tensor([3, -4]) * 2.5 == tensor([7.5, -10.]) (float32), and `/` is true
    // division: torch.tensor([3, -4]) / 2 == tensor([1.5, -2.]).
    let i = Tensor::from_vec(vec![3i64, -4], &[2]).unwrap();
    let r = &i * 2.5;
    assert_eq!(vals(&r), vec![7.5, -10.0], "i64 * 2.5");
    assert!(r.dtype().is_float(), "i64 * 2.5 has dtype {}", r.dtype());
    let q = &i / 2.0;
    assert_eq!(vals(&q), vec![1.5, -2.0], "i64 / 2");
}

#[test]
fn integer_arithmetic() {
    let i = Tensor::from_vec(vec![3i64, -4], &[2]).unwrap();
    let j = Tensor::from_vec(vec![2i64, 5], &[2]).unwrap();
    let s = &i + &j;
    assert_eq!(s.dtype(), DType::I64);
    assert_eq!(vals(&s), vec![5.0, 1.0]);
    assert_eq!(vals(&(&i * &j)), vec![6.0, -20.0]);
    assert_eq!(vals(&(&i * 2.0)), vec![6.0, -8.0]);
    assert!(!s.requires_grad());
}

// ----- pow / neg ---------------------------------------------------------------------------------

#[test]
fn pow_scalar_exponent() {
    let x = leaf64(&[1.5, 2.0, 3.0, 0.5], &[4]);
    let z = x.pow(3.0);
    assert_eq!(z.grad_fn().unwrap().name(), "PowBackward0");
    assert_close(&vals(&z), &[3.375, 8.0, 27.0, 0.125], 1e-15);
    z.sum().backward().unwrap();
    assert_close(&grad(&x), &[6.75, 12.0, 27.0, 0.75], 1e-14);

    let x = leaf64(&[4.0, 9.0], &[2]);
    let z = x.pow(0.5);
    assert_close(&vals(&z), &[2.0, 3.0], 1e-15);
    z.sum().backward().unwrap();
    assert_close(&grad(&x), &[0.25, 1.0 / 6.0], 1e-14);

    // x^2 at negative x; x^0 has zero gradient
    check_fd(&|x| x.pow(2.0), &X, &[4]);
    check_fd(&|x| x.pow(-1.0), &X, &[4]);
    let x = leaf64(&[-3.0, 0.0], &[2]);
    x.pow(0.0).sum().backward().unwrap();
    assert_eq!(grad(&x), vec![0.0, 0.0]);
}

#[test]
fn pow_tensor_exponent() {
    let x = leaf64(&[2.0, 3.0], &[2]);
    let y = leaf64(&[3.0, 0.5], &[2]);
    let z = x.pow_tensor(&y).unwrap();
    assert_eq!(z.grad_fn().unwrap().name(), "PowBackward1");
    assert_close(&vals(&z), &[8.0, 3f64.sqrt()], 1e-15);
    z.sum().backward().unwrap();
    assert_close(&grad(&x), &[3.0 * 4.0, 0.5 / 3f64.sqrt()], 1e-14);
    assert_close(&grad(&y), &[8.0 * 2f64.ln(), 3f64.sqrt() * 3f64.ln()], 1e-14);
    assert!(x.pow_tensor(&Tensor::ones_typed(&[3], DType::F64)).is_err());
}

#[test]
fn neg_method_and_operator() {
    let x = leaf64(&X, &[4]);
    let z = -&x;
    assert_eq!(z.grad_fn().unwrap().name(), "NegBackward0");
    assert_eq!(vals(&z), map(|a| -a));
    assert_eq!(vals(&x.neg()), map(|a| -a));
    assert_eq!(vals(&(-x.clone())), map(|a| -a));
    z.sum().backward().unwrap();
    assert_eq!(grad(&x), vec![-1.0; 4]);
}

// ----- unary ops -----------------------------------------------------------------------------------

/// erf by its Maclaurin series (accurate to ~1e-15 for |x| <= 3).
fn erf(x: f64) -> f64 {
    let mut term = x;
    let mut sum = x;
    for n in 1..200 {
        term *= -x * x / n as f64;
        sum += term / (2 * n + 1) as f64;
    }
    2.0 / std::f64::consts::PI.sqrt() * sum
}

type Unary = (&'static str, fn(&Tensor) -> Tensor, fn(f64) -> f64, fn(f64) -> f64, &'static [f64]);

const ANY: &[f64] = &[-2.5, -0.7, 0.3, 1.2, 2.0];
const POS: &[f64] = &[0.2, 0.9, 1.7, 3.5];

fn unary_cases() -> Vec<Unary> {
    vec![
        ("AbsBackward0", |x| x.abs(), f64::abs, f64::signum, ANY),
        ("ExpBackward0", |x| x.exp(), f64::exp, f64::exp, ANY),
        ("LogBackward0", |x| x.log(), f64::ln, |x| 1.0 / x, POS),
        ("SqrtBackward0", |x| x.sqrt(), f64::sqrt, |x| 0.5 / x.sqrt(), POS),
        ("ReciprocalBackward0", |x| x.reciprocal(), |x| 1.0 / x, |x| -1.0 / (x * x), ANY),
        ("TanhBackward0", |x| x.tanh(), f64::tanh, |x| 1.0 - x.tanh().powi(2), ANY),
        (
            "SigmoidBackward0",
            |x| x.sigmoid(),
            |x| 1.0 / (1.0 + (-x).exp()),
            |x| {
                let s = 1.0 / (1.0 + (-x).exp());
                s * (1.0 - s)
            },
            ANY,
        ),
        ("ReluBackward0", |x| x.relu(), |x| x.max(0.0), |x| if x > 0.0 { 1.0 } else { 0.0 }, ANY),
        ("ErfBackward0", |x| x.erf(), erf, |x| 2.0 / std::f64::consts::PI.sqrt() * (-x * x).exp(), ANY),
        ("SinBackward0", |x| x.sin(), f64::sin, f64::cos, ANY),
        ("CosBackward0", |x| x.cos(), f64::cos, |x| -x.sin(), ANY),
        ("SignBackward0", |x| x.sign(), f64::signum, |_| 0.0, ANY),
        ("NegBackward0", |x| x.neg(), |x| -x, |_| -1.0, ANY),
    ]
}

#[test]
fn unary_values_gradients_and_names() {
    for (name, f, v, d, at) in unary_cases() {
        let x = leaf64(at, &[at.len()]);
        let y = f(&x);
        assert_eq!(y.grad_fn().unwrap().name(), name);
        assert_eq!(y.dtype(), DType::F64, "{name}");
        let want: Vec<f64> = at.iter().map(|&a| v(a)).collect();
        assert_close(&vals(&y), &want, 1e-13);
        y.sum().backward().unwrap();
        let want: Vec<f64> = at.iter().map(|&a| d(a)).collect();
        assert_close(&grad(&x), &want, 1e-12);
        if name != "SignBackward0" && name != "AbsBackward0" && name != "ReluBackward0" {
            check_fd(&|t| f(t), at, &[at.len()]);
        }
    }
}

#[test]
fn unary_ops_in_f32() {
    for (name, f, v, _, at) in unary_cases() {
        let x = Tensor::from_vec_typed(at.to_vec(), &[at.len()], DType::F32).unwrap();
        let y = f(&x);
        assert_eq!(y.dtype(), DType::F32, "{name}");
        let want: Vec<f64> = at.iter().map(|&a| v(a as f32 as f64)).collect();
        assert_close(&vals(&y), &want, 1e-6);
    }
}

#[test]
fn unary_ops_without_grad_record_nothing() {
    for (_, f, _, _, at) in unary_cases() {
        let y = f(&t64(at, &[at.len()]));
        assert!(y.grad_fn().is_none() && !y.requires_grad());
    }
}

#[test]
fn gradients_at_kinks_follow_pytorch() {
    let x = leaf64(&[0.0, -1.0, 2.0], &[3]);
    x.relu().sum().backward().unwrap();
    assert_eq!(grad(&x), vec![0.0, 0.0, 1.0], "relu'(0) = 0");

    let x = leaf64(&[0.0, -1.0, 2.0], &[3]);
    x.abs().sum().backward().unwrap();
    assert_eq!(grad(&x), vec![0.0, -1.0, 1.0], "abs'(0) = 0");

    let x = leaf64(&[0.0, 4.0], &[2]);
    x.sqrt().sum().backward().unwrap();
    assert_eq!(grad(&x), vec![f64::INFINITY, 0.25], "sqrt'(0) = inf");

    let x = leaf64(&[0.0, -3.0], &[2]);
    x.sign().sum().backward().unwrap();
    assert_eq!(grad(&x), vec![0.0, 0.0]);
    assert_eq!(vals(&x.sign()), vec![0.0, -1.0]);
}

#[test]
fn special_values() {
    let x = t64(&[0.0, -1.0, f64::INFINITY], &[3]);
    let l = vals(&x.log());
    assert_eq!(l[0], f64::NEG_INFINITY);
    assert!(l[1].is_nan());
    assert_eq!(l[2], f64::INFINITY);
    assert!(vals(&x.sqrt())[1].is_nan());
    assert_eq!(vals(&x.reciprocal())[0], f64::INFINITY);
    assert_eq!(vals(&x.sigmoid()), vec![0.5, 1.0 / (1.0 + 1f64.exp()), 1.0]);
    assert_eq!(vals(&x.tanh())[2], 1.0);
    assert_eq!(vals(&t64(&[1000.0, -1000.0], &[2]).exp()), vec![f64::INFINITY, 0.0]);
}

#[test]
fn gelu_values_and_gradient() {
    let at = [-3.0, -1.0, -0.2, 0.0, 0.5, 2.0];
    let x = leaf64(&at, &[6]);
    let y = x.gelu();
    assert_eq!(y.grad_fn().unwrap().name(), "GeluBackward0");
    let phi = |v: f64| 0.5 * (1.0 + erf(v / 2f64.sqrt()));
    let pdf = |v: f64| (-v * v / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt();
    assert_close(&vals(&y), &at.iter().map(|&v| v * phi(v)).collect::<Vec<_>>(), 1e-13);
    // known values: gelu(1) = 0.8413447460685429, gelu(-1) = -0.15865525393145707
    assert_close(&vals(&t64(&[1.0, -1.0], &[2]).gelu()), &[0.8413447460685429, -0.15865525393145707], 1e-13);
    y.sum().backward().unwrap();
    assert_close(&grad(&x), &at.iter().map(|&v| phi(v) + v * pdf(v)).collect::<Vec<_>>(), 1e-12);
    check_fd(&|t| t.gelu(), &at, &[6]);
}

#[test]
fn clamp_values_and_boundary_gradient() {
    let at = [-2.0, -1.0, 0.0, 1.0, 2.0];
    let x = leaf64(&at, &[5]);
    let y = x.clamp(Some(-1.0), Some(1.0));
    assert_eq!(y.grad_fn().unwrap().name(), "ClampBackward1");
    assert_eq!(vals(&y), vec![-1.0, -1.0, 0.0, 1.0, 1.0]);
    y.sum().backward().unwrap();
    // the gradient passes where min <= x <= max, including on the boundary
    assert_eq!(grad(&x), vec![0.0, 1.0, 1.0, 1.0, 0.0]);

    let x = leaf64(&at, &[5]);
    let y = x.clamp(Some(0.0), None);
    assert_eq!(vals(&y), vec![0.0, 0.0, 0.0, 1.0, 2.0]);
    y.sum().backward().unwrap();
    assert_eq!(grad(&x), vec![0.0, 0.0, 1.0, 1.0, 1.0]);

    let x = leaf64(&at, &[5]);
    let y = x.clamp(None, Some(0.5));
    assert_eq!(vals(&y), vec![-2.0, -1.0, 0.0, 0.5, 0.5]);
    y.sum().backward().unwrap();
    assert_eq!(grad(&x), vec![1.0, 1.0, 1.0, 0.0, 0.0]);

    let x = leaf64(&at, &[5]);
    let y = x.clamp(None, None);
    assert_eq!(vals(&y), at.to_vec());
    y.sum().backward().unwrap();
    assert_eq!(grad(&x), vec![1.0; 5]);
}

#[test]
fn maximum_minimum_values_and_tie_splitting() {
    let a = leaf64(&[1.0, 5.0, 3.0, -2.0], &[4]);
    let b = leaf64(&[2.0, 4.0, 3.0, -2.0], &[4]);
    let m = a.maximum(&b).unwrap();
    assert_eq!(m.grad_fn().unwrap().name(), "MaximumBackward0");
    assert_eq!(vals(&m), vec![2.0, 5.0, 3.0, -2.0]);
    m.sum().backward().unwrap();
    assert_eq!(grad(&a), vec![0.0, 1.0, 0.5, 0.5]);
    assert_eq!(grad(&b), vec![1.0, 0.0, 0.5, 0.5]);

    let a = leaf64(&[1.0, 5.0, 3.0, -2.0], &[4]);
    let b = leaf64(&[2.0, 4.0, 3.0, -2.0], &[4]);
    let m = a.minimum(&b).unwrap();
    assert_eq!(m.grad_fn().unwrap().name(), "MinimumBackward0");
    assert_eq!(vals(&m), vec![1.0, 4.0, 3.0, -2.0]);
    m.sum().backward().unwrap();
    assert_eq!(grad(&a), vec![1.0, 0.0, 0.5, 0.5]);
    assert_eq!(grad(&b), vec![0.0, 1.0, 0.5, 0.5]);
}

#[test]
fn maximum_broadcasts_and_propagates_nan() {
    let a = leaf64(&[1.0, 2.0, 3.0, 4.0], &[2, 2]);
    let z = leaf64(&[2.5], &[]);
    let m = a.maximum(&z).unwrap();
    assert_eq!(vals(&m), vec![2.5, 2.5, 3.0, 4.0]);
    m.sum().backward().unwrap();
    assert_eq!(grad(&a), vec![0.0, 0.0, 1.0, 1.0]);
    assert_eq!(grad(&z), vec![2.0]);

    let n = t64(&[f64::NAN, 1.0], &[2]);
    let o = t64(&[0.0, f64::NAN], &[2]);
    assert!(vals(&n.maximum(&o).unwrap()).iter().all(|v| v.is_nan()));
    assert!(vals(&n.minimum(&o).unwrap()).iter().all(|v| v.is_nan()));
}

#[test]
fn where_values_gradients_and_broadcast() {
    let c = Tensor::from_vec(vec![true, false, true, false], &[4]).unwrap();
    let x = leaf64(&[1.0, 2.0, 3.0, 4.0], &[4]);
    let y = leaf64(&[10.0, 20.0, 30.0, 40.0], &[4]);
    let w = Tensor::where_(&c, &x, &y).unwrap();
    assert_eq!(w.grad_fn().unwrap().name(), "WhereBackward0");
    assert_eq!(vals(&w), vec![1.0, 20.0, 3.0, 40.0]);
    (&w * 2.0).sum().backward().unwrap();
    assert_eq!(grad(&x), vec![2.0, 0.0, 2.0, 0.0]);
    assert_eq!(grad(&y), vec![0.0, 2.0, 0.0, 2.0]);

    // condition from a comparison, scalar "else" broadcast
    let x = leaf64(&[-1.0, 2.0, -3.0], &[3]);
    let zero = t64(&[0.0], &[]);
    let r = Tensor::where_(&x.gt(&zero).unwrap(), &x, &zero).unwrap();
    assert_eq!(vals(&r), vec![0.0, 2.0, 0.0]);
    r.sum().backward().unwrap();
    assert_eq!(grad(&x), vec![0.0, 1.0, 0.0]);

    // a [2,1] condition against [1,3] branches
    let c = Tensor::from_vec(vec![true, false], &[2, 1]).unwrap();
    let a = t64(&[1.0, 2.0, 3.0], &[1, 3]);
    let b = t64(&[-1.0], &[1]);
    let r = Tensor::where_(&c, &a, &b).unwrap();
    assert_eq!(r.shape(), &[2, 3]);
    assert_eq!(vals(&r), vec![1.0, 2.0, 3.0, -1.0, -1.0, -1.0]);
}

#[test]
fn where_requires_a_bool_condition() {
    let x = Tensor::ones(&[2]);
    let m = msg(Tensor::where_(&x, &x, &x));
    assert!(m.contains("where expected condition to be a boolean tensor"), "{m}");
    let c = Tensor::from_vec(vec![true, false], &[2]).unwrap();
    assert!(Tensor::where_(&c, &Tensor::ones(&[3]), &x).is_err());
}

#[test]
fn comparisons() {
    let a = leaf64(&[1.0, 2.0, 3.0], &[3]);
    let b = t64(&[2.0, 2.0, 2.0], &[3]);
    let cases: [(&str, Tensor, [f64; 3]); 6] = [
        ("gt", a.gt(&b).unwrap(), [0.0, 0.0, 1.0]),
        ("lt", a.lt(&b).unwrap(), [1.0, 0.0, 0.0]),
        ("eq", a.eq_t(&b).unwrap(), [0.0, 1.0, 0.0]),
        ("ge", a.ge(&b).unwrap(), [0.0, 1.0, 1.0]),
        ("le", a.le(&b).unwrap(), [1.0, 1.0, 0.0]),
        ("ne", a.ne(&b).unwrap(), [1.0, 0.0, 1.0]),
    ];
    for (name, r, want) in cases {
        assert_eq!(r.dtype(), DType::Bool, "{name}");
        assert_eq!(vals(&r), want.to_vec(), "{name}");
        assert!(!r.requires_grad() && r.grad_fn().is_none(), "{name}");
    }
    assert_eq!(vals(&a.gt_scalar(1.5)), vec![0.0, 1.0, 1.0]);
    assert_eq!(vals(&a.lt_scalar(1.5)), vec![1.0, 0.0, 0.0]);
    assert_eq!(a.gt_scalar(1.5).dtype(), DType::Bool);
    // broadcasting
    let m = t64(&[1.0, 2.0, 3.0, 4.0], &[2, 2]);
    assert_eq!(vals(&m.gt(&t64(&[2.5], &[])).unwrap()), vec![0.0, 0.0, 1.0, 1.0]);
    // NaN compares false, != true
    let n = t64(&[f64::NAN], &[1]);
    assert_eq!(vals(&n.eq_t(&n).unwrap()), vec![0.0]);
    assert_eq!(vals(&n.ne(&n).unwrap()), vec![1.0]);
    assert!(a.gt(&Tensor::ones_typed(&[2], DType::F64)).is_err());
}

// ----- softmax --------------------------------------------------------------------------------------

fn softmax_rows(v: &[f64], cols: usize) -> Vec<f64> {
    v.chunks(cols)
        .flat_map(|r| {
            let m = r.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let s: f64 = r.iter().map(|x| (x - m).exp()).sum();
            r.iter().map(move |x| (x - m).exp() / s).collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn softmax_values_and_gradients() {
    let v = [1.0, 2.0, 3.0, -1.0, 0.0, 4.0];
    let x = leaf64(&v, &[2, 3]);
    let s = x.softmax(-1).unwrap();
    assert_eq!(s.grad_fn().unwrap().name(), "SoftmaxBackward0");
    let want = softmax_rows(&v, 3);
    assert_close(&vals(&s), &want, 1e-14);
    assert_close(&vals(&s.sum_dim(&[1], false).unwrap()), &[1.0, 1.0], 1e-14);
    // d/dx sum(w * softmax(x)) = s * (w - <w, s>)
    let w = t64(&[1.0, -2.0, 0.5, 3.0, 1.0, -1.0], &[2, 3]);
    (&s * &w).sum().backward().unwrap();
    let mut want_g = Vec::new();
    for r in 0..2 {
        let sr = &want[r * 3..r * 3 + 3];
        let wr = &vals(&w)[r * 3..r * 3 + 3];
        let dot: f64 = sr.iter().zip(wr).map(|(a, b)| a * b).sum();
        want_g.extend(sr.iter().zip(wr).map(|(a, b)| a * (b - dot)));
    }
    assert_close(&grad(&x), &want_g, 1e-13);
    let wv = vals(&w);
    check_fd(&|t| &t.softmax(1).unwrap() * &t64(&wv, &[2, 3]), &v, &[2, 3]);
    // along dim 0
    let s0 = t64(&v, &[2, 3]).softmax(0).unwrap();
    assert_close(&vals(&s0.sum_dim(&[0], false).unwrap()), &[1.0; 3], 1e-14);
    check_fd(&|t| &t.softmax(0).unwrap() * &t64(&wv, &[2, 3]), &v, &[2, 3]);
}

#[test]
fn softmax_is_stable_for_large_inputs() {
    let x = t64(&[1000.0, 1001.0, 1002.0], &[3]);
    assert_close(&vals(&x.softmax(0).unwrap()), &softmax_rows(&[0.0, 1.0, 2.0], 3), 1e-14);
    let l = vals(&x.log_softmax(0).unwrap());
    assert!(l.iter().all(|v| v.is_finite()), "{l:?}");
}

#[test]
fn log_softmax_values_and_gradients() {
    let v = [1.0, 2.0, 3.0, -1.0, 0.0, 4.0];
    let x = leaf64(&v, &[2, 3]);
    let l = x.log_softmax(1).unwrap();
    assert_eq!(l.grad_fn().unwrap().name(), "LogSoftmaxBackward0");
    let want: Vec<f64> = softmax_rows(&v, 3).iter().map(|p| p.ln()).collect();
    assert_close(&vals(&l), &want, 1e-14);
    // d/dx sum(log_softmax(x)) = 1 - C·softmax(x)
    l.sum().backward().unwrap();
    let want_g: Vec<f64> = softmax_rows(&v, 3).iter().map(|p| 1.0 - 3.0 * p).collect();
    assert_close(&grad(&x), &want_g, 1e-13);
    let w = [0.3, -1.0, 2.0, 1.0, 0.0, -0.5];
    check_fd(&|t| &t.log_softmax(-1).unwrap() * &t64(&w, &[2, 3]), &v, &[2, 3]);
}

#[test]
fn softmax_dim_out_of_range() {
    let x = Tensor::ones(&[2, 3]);
    let m = msg(x.softmax(2));
    assert!(m.contains("Dimension out of range"), "{m}");
    assert!(x.log_softmax(-3).is_err());
}

// ----- matmul ------------------------------------------------------------------------------------------

fn mm_ref(a: &[f64], b: &[f64], n: usize, k: usize, m: usize) -> Vec<f64> {
    let mut c = vec![0.0; n * m];
    for i in 0..n {
        for j in 0..m {
            c[i * m + j] = (0..k).map(|p| a[i * k + p] * b[p * m + j]).sum();
        }
    }
    c
}

fn transpose(a: &[f64], r: usize, c: usize) -> Vec<f64> {
    (0..c * r).map(|i| a[(i % r) * c + i / r]).collect()
}

#[test]
fn matmul_2d_values_and_gradients() {
    let av = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
    let bv = [0.5, -1.0, 2.0, 0.0, 1.0, 3.0];
    let a = leaf64(&av, &[2, 3]);
    let b = leaf64(&bv, &[3, 2]);
    let c = a.matmul(&b).unwrap();
    assert_eq!(c.shape(), &[2, 2]);
    assert_eq!(c.grad_fn().unwrap().name(), "MmBackward0");
    assert_close(&vals(&c), &mm_ref(&av, &bv, 2, 3, 2), 1e-15);
    let gv = [1.0, 2.0, -1.0, 0.5];
    c.backward_with(Some(&t64(&gv, &[2, 2])), false, false).unwrap();
    // dA = G Bᵀ, dB = Aᵀ G
    assert_close(&grad(&a), &mm_ref(&gv, &transpose(&bv, 3, 2), 2, 2, 3), 1e-15);
    assert_close(&grad(&b), &mm_ref(&transpose(&av, 2, 3), &gv, 3, 2, 2), 1e-15);

    let a = leaf64(&av, &[2, 3]);
    let c = a.mm(&t64(&bv, &[3, 2])).unwrap();
    assert_eq!(c.grad_fn().unwrap().name(), "MmBackward0");
    assert_close(&vals(&c), &mm_ref(&av, &bv, 2, 3, 2), 1e-15);
}

#[test]
fn matmul_1d_operands() {
    let v = leaf64(&[1.0, 2.0, 3.0], &[3]);
    let w = leaf64(&[4.0, -5.0, 6.0], &[3]);
    let d = v.matmul(&w).unwrap();
    assert_eq!(d.shape(), &[] as &[usize]);
    assert_eq!(d.grad_fn().unwrap().name(), "DotBackward0");
    assert_eq!(d.item().unwrap(), 12.0);
    d.backward().unwrap();
    assert_eq!(grad(&v), vec![4.0, -5.0, 6.0]);
    assert_eq!(grad(&w), vec![1.0, 2.0, 3.0]);

    // matrix @ vector
    let m = leaf64(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let v = leaf64(&[1.0, 0.0, -1.0], &[3]);
    let r = m.matmul(&v).unwrap();
    assert_eq!(r.shape(), &[2]);
    assert_eq!(r.grad_fn().unwrap().name(), "MvBackward0");
    assert_eq!(vals(&r), vec![-2.0, -2.0]);
    r.sum().backward().unwrap();
    assert_eq!(grad(&m), vec![1.0, 0.0, -1.0, 1.0, 0.0, -1.0]);
    assert_eq!(grad(&v), vec![5.0, 7.0, 9.0]);

    // vector @ matrix
    let u = leaf64(&[1.0, -1.0], &[2]);
    let m = leaf64(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let r = u.matmul(&m).unwrap();
    assert_eq!(r.shape(), &[3]);
    assert_eq!(vals(&r), vec![-3.0, -3.0, -3.0]);
    r.sum().backward().unwrap();
    assert_eq!(grad(&u), vec![6.0, 15.0]);
    assert_eq!(grad(&m), vec![1.0, 1.0, 1.0, -1.0, -1.0, -1.0]);
}

#[test]
fn matmul_batched_and_broadcast() {
    let av: Vec<f64> = (0..12).map(|i| i as f64 * 0.5 - 2.0).collect();
    let bv: Vec<f64> = (0..12).map(|i| (i as f64).sin()).collect();
    let a = leaf64(&av, &[2, 2, 3]);
    let b = leaf64(&bv, &[2, 3, 2]);
    let c = a.matmul(&b).unwrap();
    assert_eq!(c.shape(), &[2, 2, 2]);
    let mut want = mm_ref(&av[..6], &bv[..6], 2, 3, 2);
    want.extend(mm_ref(&av[6..], &bv[6..], 2, 3, 2));
    assert_close(&vals(&c), &want, 1e-14);
    check_fd(&|t| t.matmul(&t64(&bv, &[2, 3, 2])).unwrap(), &av, &[2, 2, 3]);
    check_fd(&|t| t64(&av, &[2, 2, 3]).matmul(t).unwrap(), &bv, &[2, 3, 2]);

    // batch dims broadcast: [2,2,3] @ [3,4]; the [3,4] gradient sums over the batch
    let wv: Vec<f64> = (0..12).map(|i| i as f64 / 7.0).collect();
    let w = leaf64(&wv, &[3, 4]);
    let r = a.matmul(&w).unwrap();
    assert_eq!(r.shape(), &[2, 2, 4]);
    r.sum().backward().unwrap();
    assert_eq!(w.grad().unwrap().shape(), &[3, 4]);
    check_fd(&|t| t64(&av, &[2, 2, 3]).matmul(t).unwrap(), &wv, &[3, 4]);
    // [1,2,3] @ [2,3,2] broadcasts the leading 1
    let one = t64(&av[..6], &[1, 2, 3]);
    assert_eq!(one.matmul(&t64(&bv, &[2, 3, 2])).unwrap().shape(), &[2, 2, 2]);
}

#[test]
fn matmul_shape_mismatch_names_both_shapes() {
    let a = Tensor::ones(&[2, 3]);
    let e = a.matmul(&Tensor::ones(&[2, 4])).unwrap_err();
    assert!(matches!(e, Error::Op(_)), "{e:?}");
    let m = e.to_string();
    assert!(m.contains("[2, 3]") && m.contains("[2, 4]"), "{m}");
    let m = msg(a.mm(&Tensor::ones(&[4, 4])));
    assert!(m.contains("[2, 3]") && m.contains("[4, 4]"), "{m}");
    let m = msg(Tensor::ones(&[3]).matmul(&Tensor::ones(&[4])));
    assert!(m.contains("[3]") && m.contains("[4]"), "{m}");
    let m = msg(Tensor::ones(&[2, 2, 3]).matmul(&Tensor::ones(&[3, 2, 2])));
    assert!(m.contains("[2, 2, 3]") && m.contains("[3, 2, 2]"), "{m}");
}

#[test]
fn mm_requires_matrices() {
    let m = msg(Tensor::ones(&[3]).mm(&Tensor::ones(&[3, 2])));
    assert!(m.contains("2-D") && m.contains("[3]") && m.contains("[3, 2]"), "{m}");
    assert!(Tensor::ones(&[2, 2, 2]).mm(&Tensor::ones(&[2, 2])).is_err());
}

#[test]
fn matmul_promotes_dtypes() {
    let a = leaf32(&[1.0, 2.0], &[1, 2]);
    let b = t64(&[3.0, 4.0], &[2, 1]);
    let c = a.matmul(&b).unwrap();
    assert_eq!(c.dtype(), DType::F64);
    assert_eq!(vals(&c), vec![11.0]);
    c.sum().backward().unwrap();
    assert_eq!(a.grad().unwrap().dtype(), DType::F32);
    assert_eq!(grad(&a), vec![3.0, 4.0]);
}

// ----- dtype conversion and clone ---------------------------------------------------------------------

#[test]
fn to_dtype_is_differentiable() {
    let x = leaf32(&[1.5, -2.0], &[2]);
    let y = x.to_dtype(DType::F64);
    assert_eq!(y.grad_fn().unwrap().name(), "ToCopyBackward0");
    assert_eq!(y.dtype(), DType::F64);
    (&y * &y).sum().backward().unwrap();
    assert_eq!(x.grad().unwrap().dtype(), DType::F32);
    assert_eq!(grad(&x), vec![3.0, -4.0]);
    // to the same dtype: the same tensor
    assert!(Tensor::same(&x.to_dtype(DType::F32), &x));
}

#[test]
fn deep_clone_is_recorded_and_independent() {
    let x = leaf64(&[1.0, 2.0], &[2]);
    let c = x.deep_clone();
    assert_eq!(c.grad_fn().unwrap().name(), "CloneBackward0");
    assert!(!Tensor::shares_storage(&x, &c));
    assert_eq!(vals(&c), vec![1.0, 2.0]);
    (&c * 3.0).sum().backward().unwrap();
    assert_eq!(grad(&x), vec![3.0, 3.0]);
    // modifying the copy leaves the original alone
    let d = t64(&[1.0, 2.0], &[2]);
    let e = d.deep_clone();
    e.add_(&t64(&[10.0], &[])).unwrap();
    assert_eq!(vals(&d), vec![1.0, 2.0]);
    assert_eq!(vals(&e), vec![11.0, 12.0]);
}
