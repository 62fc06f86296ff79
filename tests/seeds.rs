//! The seed conformance suite: one test per row of `/work/shared/conformance/SEEDS.md`
//! (`s<id>_<name>`), written against kiln's public API as a PyTorch user would write it, asserting
//! PyTorch's observable behaviour with the row's numbers.

use kiln::autograd::{grad, gradcheck, Context, Function, FunctionExt, GradOptions, GradcheckOptions};
use kiln::nn::functional::mse_loss;
use kiln::{inference_mode, no_grad, set_grad_enabled, DType, Tensor, TensorOptions};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

// ----- helpers -------------------------------------------------------------------------------

/// `actual ≈ expected` elementwise: relative tolerance 1e-5 (with a 1e-6 absolute floor for
/// values near 0); infinities must match exactly.
fn assert_close(actual: &[f64], expected: &[f64]) {
    assert_eq!(actual.len(), expected.len(), "length differs: actual {actual:?}, expected {expected:?}");
    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        let ok =
            if e.is_infinite() || a.is_infinite() { a == e } else { (a - e).abs() <= 1e-5 * e.abs() + 1e-6 };
        assert!(ok, "element {i}: actual {a}, expected {e}\n  actual   {actual:?}\n  expected {expected:?}");
    }
}

fn vals(t: &Tensor) -> Vec<f64> {
    t.to_vec_f64().expect("tensor value")
}

/// The accumulated `.grad` of `t`, which must exist.
fn grad_of(t: &Tensor) -> Vec<f64> {
    vals(&t.grad().expect("tensor has a .grad"))
}

fn tensor(data: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_slice(data, shape).expect("data matches shape")
}

fn name(t: &Tensor) -> String {
    t.grad_fn().expect("tensor has a grad_fn").name().to_string()
}

fn assert_err_contains<T>(r: kiln::Result<T>, phrases: &[&str]) {
    let msg = match r {
        Ok(_) => panic!("expected an error containing {phrases:?}, got Ok"),
        Err(e) => e.to_string(),
    };
    for p in phrases {
        assert!(msg.contains(p), "error message lacks {p:?}:\n{msg}");
    }
}

/// `rand`/`randn` draw from one global generator; tests that draw take this lock so that seeded
/// runs (10.1) see the same sequence whatever other tests run in parallel.
static RNG: Mutex<()> = Mutex::new(());

fn rng_lock() -> MutexGuard<'static, ()> {
    RNG.lock().unwrap_or_else(|p| p.into_inner())
}

/// Python's `'{:.4e}'.format(v)`: `5.1200e+01`.
fn py_sci(v: f64) -> String {
    let s = format!("{v:.4e}");
    let (mant, exp) = s.split_once('e').expect("exponent form");
    let exp: i32 = exp.parse().expect("integer exponent");
    format!("{mant}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
}

/// PyTorch's print of a 1-D float tensor whose values are not all integers.
fn py_vector(values: &[f64], suffix: &str) -> String {
    let nonzero: Vec<f64> = values.iter().map(|v| v.abs()).filter(|v| *v != 0.0).collect();
    let max = nonzero.iter().copied().fold(0.0, f64::max);
    let min = nonzero.iter().copied().fold(f64::INFINITY, f64::min);
    let sci = max / min > 1000.0 || max > 1.0e8 || min < 1.0e-4;
    let items: Vec<String> =
        values.iter().map(|&v| if sci { py_sci(v) } else { format!("{v:.4}") }).collect();
    let width = items.iter().map(String::len).max().unwrap_or(0);
    let body: Vec<String> = items.iter().map(|s| format!("{s:>width$}")).collect();
    format!("tensor([{}]{suffix})", body.join(", "))
}

/// 1.4's graph: `x = ones(2,2)` rg, `y = x + 2`, `z = y * y * 3`, `out = z.mean()`.
fn graph_1_4() -> (Tensor, Tensor, Tensor, Tensor) {
    let x = Tensor::ones(&[2, 2]).requires_grad_(true);
    let y = &x + 2.0;
    let z = &y * &y * 3.0;
    let out = z.mean();
    (x, y, z, out)
}

/// 1.6's graph: `x = ones(1)`, `w, b = rand(1)` rg, `y = w * x`, `z = y + b`.
fn graph_1_6() -> (Tensor, Tensor, Tensor, Tensor, Tensor) {
    let _rng = rng_lock();
    let x = Tensor::ones(&[1]);
    let w = Tensor::rand(&[1]).requires_grad_(true);
    let b = Tensor::rand(&[1]).requires_grad_(true);
    let y = &w * &x;
    let z = &y + &b;
    (x, w, b, y, z)
}

// ----- Flags, leaves and the recorded graph ---------------------------------------------------

#[test]
fn s1_1_leaf_three_ways() {
    let a = Tensor::ones_opts(&[2, 2], TensorOptions::default().requires_grad(true)).unwrap();
    let b = Tensor::ones(&[2, 2]).requires_grad_(true);
    let c = Tensor::ones(&[2, 2]);
    assert!(!c.requires_grad());
    c.set_requires_grad(true).unwrap();
    for t in [&a, &b, &c] {
        assert!(t.requires_grad());
        assert!(t.is_leaf());
        assert!(t.grad_fn().is_none());
    }
}

#[test]
fn s1_2_print_leaf() {
    let x = Tensor::ones(&[2, 2]).requires_grad_(true);
    let expected = "tensor([[1., 1.],\n        [1., 1.]], requires_grad=True)";
    assert_eq!(format!("{x}"), expected);
    assert_eq!(x.to_string(), expected);
    assert_eq!(format!("{x:?}"), expected);
}

#[test]
fn s1_3_add_scalar() {
    let x = Tensor::ones(&[2, 2]).requires_grad_(true);
    let y = &x + 2.0;
    assert_close(&vals(&y), &[3.0; 4]);
    assert_eq!(name(&y), "AddBackward0");
    assert_eq!(y.to_string(), "tensor([[3., 3.],\n        [3., 3.]], grad_fn=<AddBackward0>)");
    assert!(x.is_leaf());
    assert!(!y.is_leaf());
}

#[test]
fn s1_4_mul_mean() {
    let (_x, _y, z, out) = graph_1_4();
    assert_close(&vals(&z), &[27.0; 4]);
    assert_eq!(name(&z), "MulBackward0");
    assert_eq!(z.to_string(), "tensor([[27., 27.],\n        [27., 27.]], grad_fn=<MulBackward0>)");
    assert_close(&vals(&out), &[27.0]);
    assert_eq!(name(&out), "MeanBackward0");
    assert_eq!(out.to_string(), "tensor(27., grad_fn=<MeanBackward0>)");
}

#[test]
fn s1_5_requires_grad_in_place() {
    let _rng = rng_lock();
    let a = Tensor::randn(&[2, 2]);
    let a = (&a * 3.0) / (&a - 1.0);
    assert!(!a.requires_grad());
    let a = a.requires_grad_(true);
    assert!(a.requires_grad());
    assert!(a.is_leaf());
    let b = (&a * &a).sum();
    assert_eq!(name(&b), "SumBackward0");
}

#[test]
fn s1_6_leaf_flags() {
    let (x, w, b, y, z) = graph_1_6();
    assert_eq!((x.requires_grad(), w.requires_grad(), b.requires_grad()), (false, true, true));
    assert!(y.requires_grad());
    assert!(z.requires_grad());
    assert!(x.is_leaf() && w.is_leaf() && b.is_leaf());
    assert!(!y.is_leaf() && !z.is_leaf());
}

#[test]
fn s1_7_next_functions() {
    let (_x, _w, _b, y, z) = graph_1_6();
    let next = z.grad_fn().unwrap().next_functions();
    assert_eq!(next.len(), 2);
    assert_eq!(next[0].0.as_ref().expect("MulBackward0").name(), "MulBackward0");
    assert_eq!(next[0].1, 0);
    assert_eq!(next[1].0.as_ref().expect("AccumulateGrad").name(), "AccumulateGrad");
    assert_eq!(next[1].1, 0);
    // The first is the very node that made y.
    assert!(next[0].0 == y.grad_fn());

    let ynext = y.grad_fn().unwrap().next_functions();
    assert_eq!(ynext.len(), 2);
    assert_eq!(ynext[0].0.as_ref().expect("AccumulateGrad").name(), "AccumulateGrad");
    assert_eq!(ynext[0].1, 0);
    assert!(ynext[1].0.is_none(), "x does not require grad: (None, 0)");
    assert_eq!(ynext[1].1, 0);
}

#[test]
fn s1_8_add_sum_backward() {
    let (a, b) = {
        let _rng = rng_lock();
        (Tensor::randn(&[3, 4]).requires_grad_(true), Tensor::randn(&[3, 4]).requires_grad_(true))
    };
    let c = a.add(&b).unwrap();
    let d = c.sum();
    d.backward().unwrap();
    assert_eq!(a.grad().unwrap().shape(), &[3, 4]);
    assert_close(&grad_of(&a), &[1.0; 12]);
    assert_close(&grad_of(&b), &[1.0; 12]);
    assert_eq!((a.requires_grad(), b.requires_grad(), c.requires_grad()), (true, true, true));
    assert_eq!((a.is_leaf(), b.is_leaf(), c.is_leaf()), (true, true, false));
    assert!(c.grad().is_none());
}

// ----- Gradients ----------------------------------------------------------------------------

#[test]
fn s2_1_backward_mean() {
    let (x, _y, _z, out) = graph_1_4();
    out.backward().unwrap();
    assert_close(&grad_of(&x), &[4.5; 4]);
}

#[test]
fn s2_2_grad_accumulates() {
    let (x, _y, _z, out) = graph_1_4();
    out.backward().unwrap();
    x.sum().backward().unwrap();
    assert_close(&grad_of(&x), &[5.5; 4]);
}

#[test]
fn s2_3_zero_grad() {
    let (x, _y, _z, out) = graph_1_4();
    out.backward().unwrap();
    x.sum().backward().unwrap();
    x.grad().unwrap().zero_().unwrap();
    assert_close(&grad_of(&x), &[0.0; 4]);
    x.sum().backward().unwrap();
    assert_close(&grad_of(&x), &[1.0; 4]);
}

#[test]
fn s2_4_pow_exp() {
    let x = {
        let _rng = rng_lock();
        Tensor::randn(&[3, 4]).requires_grad_(true)
    };
    let y = x.pow(2.0) * x.exp();
    y.backward_with(Some(&y.ones_like()), false, false).unwrap();
    let expected: Vec<f64> = vals(&x).iter().map(|&v| 2.0 * v * v.exp() + v * v * v.exp()).collect();
    assert_close(&grad_of(&x), &expected);
}

#[test]
fn s2_5_view_backward() {
    let x = tensor(&[1.0, 2.0, 3.0, 4.0], &[4]).requires_grad_(true);
    let y = 2.0 * &x;
    let z = y.view(&[2, 2]).unwrap();
    assert_eq!(name(&z), "ViewBackward0");
    assert_eq!(z.to_string(), "tensor([[2., 4.],\n        [6., 8.]], grad_fn=<ViewBackward0>)");
    let g = tensor(&[1.0, 0.1, 0.01, 0.001], &[2, 2]);
    z.backward_with(Some(&g), false, false).unwrap();
    assert_close(&grad_of(&x), &[2.0, 0.2, 0.02, 0.002]);
}

#[test]
fn s2_6_pow_plus_x() {
    let x = tensor(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]).requires_grad_(true);
    let y = x.pow(2.0) + &x;
    y.backward_with(Some(&Tensor::ones(&[2, 3])), false, false).unwrap();
    assert_close(&grad_of(&x), &[3.0, 5.0, 7.0, 9.0, 11.0, 13.0]);
}

#[test]
fn s2_7_vector_jacobian() {
    let x = tensor(&[1.0, 2.0, 3.0], &[3]).requires_grad_(true);
    let y = x.pow(2.0);
    y.backward_with(Some(&tensor(&[1.0, 0.1, 0.001], &[3])), false, false).unwrap();
    assert_close(&grad_of(&x), &[2.0, 0.4, 0.006]);
}

#[test]
fn s2_8_sum_vs_ones_gradient() {
    let x = Tensor::arange(0.0, 3.0, 1.0).unwrap().requires_grad_(true);
    let y = x.pow(2.0) + 2.0 * &x;
    y.sum().backward().unwrap();
    assert_close(&grad_of(&x), &[2.0, 4.0, 6.0]);

    let x = Tensor::arange(0.0, 3.0, 1.0).unwrap().requires_grad_(true);
    let y = x.pow(2.0) + 2.0 * &x;
    y.backward_with(Some(&tensor(&[1.0, 1.0, 1.0], &[3])), false, false).unwrap();
    assert_close(&grad_of(&x), &[2.0, 4.0, 6.0]);
}

/// 2.9's graph after its backward: `x = ones(1,2)` rg, `y = x²`, `c = x + 1`, `z = y²`.
fn graph_2_9() -> (Tensor, Tensor, Tensor, Tensor) {
    let x = Tensor::ones(&[1, 2]).requires_grad_(true);
    let y = x.pow(2.0);
    let c = &x + 1.0;
    let z = y.pow(2.0);
    z.sum().backward().unwrap();
    (x, y, c, z)
}

#[test]
fn s2_9_non_leaf_grads_none() {
    let (x, y, c, z) = graph_2_9();
    assert_eq!(x.grad().unwrap().shape(), &[1, 2]);
    assert_close(&grad_of(&x), &[4.0, 4.0]);
    assert!(z.grad().is_none());
    assert!(y.grad().is_none());
    assert!(c.grad().is_none());
}

#[test]
fn s2_10_second_backward_accumulates() {
    let (x, _y, c, _z) = graph_2_9();
    c.sum().backward().unwrap();
    assert_close(&grad_of(&x), &[5.0, 5.0]);
}

#[test]
fn s2_11_repeated_backward() {
    let x = Tensor::ones(&[1, 2]).requires_grad_(true);
    for k in 1..=3 {
        x.sum().backward().unwrap();
        assert_close(&grad_of(&x), &[k as f64; 2]);
    }
    let x = Tensor::ones(&[1, 2]).requires_grad_(true);
    for _ in 0..3 {
        x.sum().backward().unwrap();
        assert_close(&grad_of(&x), &[1.0; 2]);
        x.grad().unwrap().zero_().unwrap();
    }
}

#[test]
fn s2_12_backward_non_scalar_errors() {
    let x = Tensor::ones(&[3]).requires_grad_(true);
    let y = &x * 2.0;
    assert!(y.requires_grad());
    assert_err_contains(y.backward(), &["grad can be implicitly created only for scalar outputs"]);
}

#[test]
fn s2_13_autograd_grad_mse() {
    let x = Tensor::ones(&[1]);
    let w = Tensor::full(&[1], 2.0).requires_grad_(true);
    let loss = mse_loss(&(&x * &w), &Tensor::ones(&[1])).unwrap();
    let g = grad(&[&loss], &[&w], GradOptions::default()).unwrap();
    assert_eq!(g.len(), 1);
    assert_close(&vals(g[0].as_ref().expect("a gradient for w")), &[2.0]);
    assert!(w.grad().is_none(), "autograd::grad must not touch .grad");
    // grad() freed the graph (as in PyTorch): build the loss again for backward.
    let loss = mse_loss(&(&x * &w), &Tensor::ones(&[1])).unwrap();
    loss.backward().unwrap();
    assert_close(&grad_of(&w), &[2.0]);
}

// ----- Dynamic graphs (define-by-run) ---------------------------------------------------------

#[test]
fn s3_1_branch_abs() {
    fn f(x: &Tensor) -> Tensor {
        if x.get(&[0]).unwrap().item().unwrap() > 0.0 {
            x.clone()
        } else {
            -x
        }
    }
    let x = tensor(&[1.0], &[1]).requires_grad_(true);
    let y = f(&x);
    y.backward().unwrap();
    assert_close(&grad_of(&x), &[1.0]);

    let x = tensor(&[-1.0], &[1]).requires_grad_(true);
    let y = f(&x);
    assert_eq!(name(&y), "NegBackward0");
    y.backward().unwrap();
    assert_close(&grad_of(&x), &[-1.0]);
}

#[test]
fn s3_2_loop_product() {
    let x = Tensor::arange(-2.0, 4.0, 1.0).unwrap().requires_grad_(true);
    let mut result = Tensor::scalar(1.0);
    for i in 0..x.numel() as i64 {
        let xi = x.get(&[i]).unwrap();
        if xi.item().unwrap() > 0.0 {
            result = &xi * &result;
        }
    }
    let y = result;
    assert_close(&vals(&y), &[6.0]);
    assert_eq!(name(&y), "MulBackward0");
    y.backward().unwrap();
    assert_close(&grad_of(&x), &[0.0, 0.0, 0.0, 6.0, 3.0, 2.0]);
}

/// 3.3's loop: `y = x * 2; while y.norm() < 1000 { y = y * 2 }`; returns y and the number of
/// doublings k (y = x * 2^k).
fn double_until_norm_1000(x: &Tensor) -> (Tensor, i32) {
    let mut y = x * 2.0;
    let mut k = 1;
    while y.norm().item().unwrap() < 1000.0 {
        y = &y * 2.0;
        k += 1;
    }
    (y, k)
}

#[test]
fn s3_3_while_norm() {
    let v = [0.1, 1.0, 0.0001];
    let gradient = tensor(&[0.1, 1.0, 0.0001], &[3]);

    // x = randn(3): whatever k is, x.grad = v * 2^k.
    let x = {
        let _rng = rng_lock();
        Tensor::randn(&[3]).requires_grad_(true)
    };
    let (y, k) = double_until_norm_1000(&x);
    assert_eq!(name(&y), "MulBackward0");
    assert_close(&vals(&y), &vals(&x).iter().map(|v| v * 2f64.powi(k)).collect::<Vec<_>>());
    // PyTorch's print: scientific form iff max/min > 1000 (or max > 1e8, min < 1e-4).
    assert_eq!(y.to_string(), py_vector(&vals(&y), ", grad_fn=<MulBackward0>"));
    y.backward_with(Some(&gradient), false, false).unwrap();
    let expected: Vec<f64> = v.iter().map(|v| v * 2f64.powi(k)).collect();
    assert_close(&grad_of(&x), &expected);
    // The gradient spans a factor 10000, so it always prints in scientific form.
    let expected_str =
        format!("tensor([{}])", expected.iter().map(|&e| py_sci(e)).collect::<Vec<_>>().join(", "));
    assert_eq!(x.grad().unwrap().to_string(), expected_str);

    // A fixed x that takes 2^9 and whose y spans more than 1000x: both prints are scientific.
    let x = tensor(&[0.001, 1.0, -2.0], &[3]).requires_grad_(true);
    let (y, k) = double_until_norm_1000(&x);
    assert_eq!(k, 9);
    assert_close(&vals(&y), &[0.512, 512.0, -1024.0]);
    assert_eq!(y.to_string(), "tensor([ 5.1200e-01,  5.1200e+02, -1.0240e+03], grad_fn=<MulBackward0>)");
    y.backward_with(Some(&gradient), false, false).unwrap();
    assert_close(&grad_of(&x), &[51.2, 512.0, 0.0512]);
    assert_eq!(x.grad().unwrap().to_string(), "tensor([5.1200e+01, 5.1200e+02, 5.1200e-02])");
}

// ----- Retaining, freeing, higher order -------------------------------------------------------

#[test]
fn s4_1_retain_graph() {
    let (x, w, _b, _y, z) = graph_1_6();
    z.backward_with(None, true, false).unwrap();
    assert_close(&grad_of(&w), &vals(&x));
    assert_close(&grad_of(&w), &[1.0]);
    z.backward().unwrap();
    assert_close(&grad_of(&w), &[2.0]);
}

#[test]
fn s4_2_backward_freed_graph_errors() {
    let (_x, w, _b, _y, z) = graph_1_6();
    z.backward_with(None, true, false).unwrap();
    z.backward().unwrap();
    assert_err_contains(z.backward(), &["backward through the graph a second time", "retain_graph"]);
    assert_close(&grad_of(&w), &[2.0]);
}

#[test]
fn s4_3_double_backward_square() {
    let x = Tensor::full(&[], 5.0).requires_grad_(true);
    let y = x.pow(2.0);
    let opts = GradOptions { create_graph: true, ..Default::default() };
    let g = grad(&[&y], &[&x], opts).unwrap().remove(0).expect("dy/dx");
    assert_close(&vals(&g), &[10.0]);
    assert_eq!(name(&g), "MulBackward0");
    assert_eq!(g.to_string(), "tensor(10., grad_fn=<MulBackward0>)");
    let h = grad(&[&g], &[&x], GradOptions::default()).unwrap().remove(0).expect("d2y/dx2");
    assert_close(&vals(&h), &[2.0]);
}

#[test]
fn s4_4_double_backward_cube() {
    let x = Tensor::full(&[], 5.0).requires_grad_(true);
    let y = x.pow(3.0);
    let opts = GradOptions { create_graph: true, ..Default::default() };
    let g = grad(&[&y], &[&x], opts).unwrap().remove(0).expect("dy/dx");
    assert_close(&vals(&g), &[75.0]);
    assert_eq!(name(&g), "MulBackward0");
    let h = grad(&[&g], &[&x], GradOptions::default()).unwrap().remove(0).expect("d2y/dx2");
    assert_close(&vals(&h), &[30.0]);
}

// ----- Switching tracking off -----------------------------------------------------------------

#[test]
fn s5_1_no_grad_flags() {
    let _rng = rng_lock();
    let (x, w, y) = {
        let _g = no_grad();
        let x = Tensor::ones(&[1]);
        let w = Tensor::rand(&[1]).requires_grad_(true);
        let y = &x * &w;
        (x, w, y)
    };
    assert_eq!((x.requires_grad(), w.requires_grad(), y.requires_grad()), (false, true, false));
    assert!(y.grad_fn().is_none());

    let (x, w, y) = {
        let _g = set_grad_enabled(false);
        let x = Tensor::ones(&[1]);
        let w = Tensor::rand(&[1]).requires_grad_(true);
        let y = &x * &w;
        (x, w, y)
    };
    assert_eq!((x.requires_grad(), w.requires_grad(), y.requires_grad()), (false, true, false));
    assert!(y.grad_fn().is_none());
    assert!(kiln::is_grad_enabled());
}

/// 5.2's graph: `x = [1.]` rg, `y1 = x²`, under no_grad `y2 = x³`, `y3 = y1 + y2`.
fn graph_5_2() -> (Tensor, Tensor, Tensor, Tensor) {
    let x = tensor(&[1.0], &[1]).requires_grad_(true);
    let y1 = x.pow(2.0);
    let y2 = {
        let _g = no_grad();
        x.pow(3.0)
    };
    let y3 = &y1 + &y2;
    (x, y1, y2, y3)
}

#[test]
fn s5_2_no_grad_partial() {
    let (x, y1, y2, y3) = graph_5_2();
    assert_eq!(
        (x.requires_grad(), y1.requires_grad(), y2.requires_grad(), y3.requires_grad()),
        (true, true, false, true)
    );
    y3.backward().unwrap();
    assert_close(&grad_of(&x), &[2.0]);
}

#[test]
fn s5_3_backward_no_grad_errors() {
    let (_x, _y1, y2, _y3) = graph_5_2();
    assert_err_contains(
        y2.backward(),
        &["element 0 of tensors does not require grad and does not have a grad_fn"],
    );
}

#[test]
fn s5_4_no_grad_branch() {
    let x = Tensor::ones(&[1, 10]).requires_grad_(true);
    let y1 = x.pow(2.0);
    let y2 = x.pow(2.0);
    let z = y1.pow(2.0) + y2.pow(2.0);
    z.sum().backward().unwrap();
    assert_close(&grad_of(&x), &[8.0; 10]);

    let x = Tensor::ones(&[1, 10]).requires_grad_(true);
    let y1 = x.pow(2.0);
    let y2 = {
        let _g = no_grad();
        x.pow(2.0)
    };
    let z = y1.pow(2.0) + y2.pow(2.0);
    z.sum().backward().unwrap();
    assert_close(&grad_of(&x), &[4.0; 10]);
}

#[test]
fn s5_5_inplace_under_no_grad() {
    let mut x = Tensor::ones(&[1, 10]).requires_grad_(true);
    let before = x.clone();
    let y2 = {
        let _g = no_grad();
        x += 1.0;
        x.pow(2.0)
    };
    assert!(Tensor::same(&x, &before), "x += 1 keeps the tensor's identity");
    assert!(x.requires_grad() && x.is_leaf());
    assert_close(&vals(&before), &[2.0; 10]);
    assert!(!y2.requires_grad());
    let y1 = x.pow(2.0);
    let z = y1.pow(2.0) + y2.pow(2.0);
    assert_close(&vals(&z), &[32.0; 10]);
    z.sum().backward().unwrap();
    assert_close(&grad_of(&x), &[32.0; 10]);
}

#[test]
fn s5_6_data_sigmoid() {
    let a = Tensor::ones(&[3, 4]).requires_grad_(true);
    a.data().sigmoid_().unwrap();
    let s = 1.0 / (1.0 + (-1.0f64).exp());
    assert_close(&vals(&a), &[s; 12]);
    assert!(a.requires_grad());
    assert!(a.is_leaf());
    assert!(!a.data().requires_grad());
    assert_eq!(
        a.to_string(),
        "tensor([[0.7311, 0.7311, 0.7311, 0.7311],\n        [0.7311, 0.7311, 0.7311, 0.7311],\n        [0.7311, 0.7311, 0.7311, 0.7311]], requires_grad=True)"
    );
}

#[test]
fn s5_7_data_mul() {
    let x = Tensor::ones(&[1]).requires_grad_(true);
    let y = 2.0 * &x;
    let mut d = x.data();
    d *= 100.0;
    assert_close(&vals(&x), &[100.0]);
    assert!(x.requires_grad());
    assert_eq!(x.to_string(), "tensor([100.], requires_grad=True)");
    y.backward().unwrap();
    assert_close(&grad_of(&x), &[2.0]);
}

#[test]
fn s5_8_detach() {
    let a = tensor(&[1.0, 2.0, 3.0, 4.0], &[2, 2]).requires_grad_(true);
    let t = a.detach();
    assert!(!t.requires_grad());
    assert!(t.is_leaf() && t.grad_fn().is_none());
    assert!(Tensor::shares_storage(&a, &t));
    let (mean, std, max) = (t.mean(), t.std(), t.max());
    assert_close(&vals(&mean), &[2.5]);
    assert_close(&vals(&std), &[(5.0f64 / 3.0).sqrt()]);
    assert_close(&vals(&max), &[4.0]);
    assert!(!mean.requires_grad() && !std.requires_grad() && !max.requires_grad());
    // Shared storage: a change through the detached tensor shows in `a`.
    t.set_(&[1, 1], 40.0).unwrap();
    assert_close(&vals(&a), &[1.0, 2.0, 3.0, 40.0]);
}

#[test]
fn s5_9_inference_tensor_save_errors() {
    let t = {
        let _g = inference_mode();
        assert!(kiln::is_inference_mode_enabled());
        Tensor::ones(&[3])
    };
    assert!(!kiln::is_inference_mode_enabled());
    let w = {
        let _rng = rng_lock();
        Tensor::rand(&[3]).requires_grad_(true)
    };
    // w * t saves t for w's gradient.
    assert_err_contains(w.mul(&t), &["Inference tensors cannot be saved for backward"]);
}

// ----- In-place correctness -------------------------------------------------------------------

#[test]
fn s6_1_leaf_inplace_errors() {
    let x = Tensor::ones(&[3]).requires_grad_(true);
    assert_err_contains(
        x.add_(&Tensor::scalar(1.0)),
        &["a leaf Variable that requires grad is being used in an in-place operation"],
    );
    assert_close(&vals(&x), &[1.0; 3]);
}

#[test]
fn s6_2_modified_inplace_errors() {
    let mut x = Tensor::ones(&[1, 10]).requires_grad_(true);
    let y1 = x.pow(2.0);
    {
        let _g = no_grad();
        x += 1.0;
    }
    let y2 = x.pow(2.0);
    let z = y1.pow(2.0) + y2.pow(2.0);
    assert_err_contains(
        z.sum().backward(),
        &["modified by an inplace operation", "[1, 10]", "is at version 1; expected version 0"],
    );
}

#[test]
fn s6_3_detach_shares_version() {
    let (a, b) = {
        let _rng = rng_lock();
        (Tensor::rand(&[3]).requires_grad_(true), Tensor::rand(&[3]).requires_grad_(true))
    };
    let c = &a * &b;
    let t = a.detach();
    t.set_(&[0], 1.0).unwrap();
    assert_close(&vals(&a)[..1], &[1.0]);
    assert_err_contains(
        c.sum().backward(),
        &["modified by an inplace operation", "[3]", "is at version 1; expected version 0"],
    );
}

// ----- Observing the backward pass ------------------------------------------------------------

/// `x = ones(3)` rg, `w = rand(3)` rg, `y = x * w`, `z = y.sum()`.
fn graph_7() -> (Tensor, Tensor, Tensor, Tensor) {
    let _rng = rng_lock();
    let x = Tensor::ones(&[3]).requires_grad_(true);
    let w = Tensor::rand(&[3]).requires_grad_(true);
    let y = &x * &w;
    let z = y.sum();
    (x, w, y, z)
}

#[test]
fn s7_1_grad_of_intermediate() {
    let (_x, _w, y, z) = graph_7();
    let g = grad(&[&z], &[&y], GradOptions::default()).unwrap().remove(0).expect("dz/dy");
    assert_eq!(g.shape(), &[3]);
    assert_close(&vals(&g), &[1.0; 3]);
}

#[test]
fn s7_2_hook() {
    let (x, w, y, z) = graph_7();
    let calls = Arc::new(AtomicUsize::new(0));
    let seen: Arc<Mutex<Vec<Vec<f64>>>> = Arc::default();
    let handle = {
        let (calls, seen) = (calls.clone(), seen.clone());
        y.register_hook(move |g| {
            calls.fetch_add(1, Ordering::SeqCst);
            seen.lock().unwrap().push(g.to_vec_f64().unwrap());
            None
        })
        .unwrap()
    };
    z.backward_with(None, true, false).unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_close(&seen.lock().unwrap()[0], &[1.0; 3]);
    assert_close(&grad_of(&x), &vals(&w));

    handle.remove();
    z.backward().unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1, "a removed hook is not called");
    let twice: Vec<f64> = vals(&w).iter().map(|v| 2.0 * v).collect();
    assert_close(&grad_of(&x), &twice);
}

#[test]
fn s7_3_saved_tensors() {
    let x = {
        let _rng = rng_lock();
        Tensor::randn(&[5]).requires_grad_(true)
    };
    let y = x.pow(2.0);
    let saved = y.grad_fn().unwrap().saved_tensor("self").unwrap().expect("pow saves self");
    assert_close(&vals(&saved), &vals(&x));
    assert!(Tensor::same(&saved, &x), "PyTorch: `x is y.grad_fn._saved_self`");

    let y = x.exp();
    let saved = y.grad_fn().unwrap().saved_tensor("result").unwrap().expect("exp saves its result");
    assert_eq!(saved.shape(), y.shape());
    assert_close(&vals(&saved), &vals(&y));
}

#[test]
fn s7_4_gradients_at_zero() {
    let x = Tensor::zeros(&[1]).requires_grad_(true);
    x.relu().backward().unwrap();
    assert_close(&grad_of(&x), &[0.0]);

    let x = Tensor::zeros(&[1]).requires_grad_(true);
    (x.relu() - (-&x).relu()).backward().unwrap();
    assert_close(&grad_of(&x), &[0.0]);

    let x = Tensor::zeros(&[1]).requires_grad_(true);
    x.sqrt().backward().unwrap();
    let g = grad_of(&x)[0];
    assert!(g.is_infinite() && g > 0.0, "d sqrt(x)/dx at 0 is inf, got {g}");
}

// ----- Extending autograd ---------------------------------------------------------------------

/// `w * x + b` with a hand-written backward (PyTorch's tutorial `MultiplyAdd`).
struct MultiplyAdd;

impl Function for MultiplyAdd {
    fn forward(&self, ctx: &mut Context, inputs: &[Tensor]) -> kiln::Result<Vec<Tensor>> {
        let (w, x, b) = (&inputs[0], &inputs[1], &inputs[2]);
        ctx.save_for_backward(&[w, x])?;
        Ok(vec![w.mul(x)?.add(b)?])
    }

    fn backward(&self, ctx: &Context, grad_outputs: &[Tensor]) -> kiln::Result<Vec<Option<Tensor>>> {
        let saved = ctx.saved_tensors()?;
        let (w, x) = (&saved[0], &saved[1]);
        let g = &grad_outputs[0];
        Ok(vec![Some(g.mul(x)?), Some(g.mul(w)?), Some(g * 1.0)])
    }
}

/// `MultiplyAdd` with a non-tensor flag (PyTorch's `ctx.flag`) that switches off x's gradient.
struct MultiplyAddFlag {
    grad_x: bool,
}

impl Function for MultiplyAddFlag {
    fn forward(&self, ctx: &mut Context, inputs: &[Tensor]) -> kiln::Result<Vec<Tensor>> {
        let (w, x, b) = (&inputs[0], &inputs[1], &inputs[2]);
        ctx.save_for_backward(&[w, x])?;
        ctx.set("grad_x", self.grad_x);
        Ok(vec![w.mul(x)?.add(b)?])
    }

    fn backward(&self, ctx: &Context, grad_outputs: &[Tensor]) -> kiln::Result<Vec<Option<Tensor>>> {
        let saved = ctx.saved_tensors()?;
        let (w, x) = (&saved[0], &saved[1]);
        let g = &grad_outputs[0];
        let grad_x =
            if *ctx.get::<bool>("grad_x").expect("flag set in forward") { Some(g.mul(w)?) } else { None };
        Ok(vec![Some(g.mul(x)?), grad_x, Some(g * 1.0)])
    }
}

#[test]
fn s8_1_custom_function() {
    let (w, b) = {
        let _rng = rng_lock();
        (Tensor::rand(&[1]).requires_grad_(true), Tensor::rand(&[1]).requires_grad_(true))
    };
    let x = Tensor::ones(&[1]);
    let z = MultiplyAdd.apply(&[&w, &x, &b]).unwrap().remove(0);
    assert_close(&vals(&z), &[vals(&w)[0] * 1.0 + vals(&b)[0]]);
    assert_eq!(name(&z), "MultiplyAddBackward");
    z.backward().unwrap();
    assert!(x.grad().is_none());
    assert_close(&grad_of(&w), &[1.0]);
    assert_close(&grad_of(&b), &[1.0]);
}

#[test]
fn s8_2_custom_function_flag() {
    let (w, b) = {
        let _rng = rng_lock();
        (Tensor::rand(&[1]).requires_grad_(true), Tensor::rand(&[1]).requires_grad_(true))
    };
    // x requires grad, but the flag says backward returns None for it.
    let x = Tensor::ones(&[1]).requires_grad_(true);
    let z = MultiplyAddFlag { grad_x: false }.apply(&[&w, &x, &b]).unwrap().remove(0);
    assert_close(&vals(&z), &[vals(&w)[0] + vals(&b)[0]]);
    z.backward().unwrap();
    assert!(x.grad().is_none(), "x gets no gradient");
    assert_close(&grad_of(&w), &[1.0]);
    assert_close(&grad_of(&b), &[1.0]);

    // With the flag on, x does get w.
    let z = MultiplyAddFlag { grad_x: true }.apply(&[&w, &x, &b]).unwrap().remove(0);
    z.backward().unwrap();
    assert_close(&grad_of(&x), &vals(&w));
}

/// A sigmoid that saves its output for backward.
struct Sigmoid;

impl Function for Sigmoid {
    fn forward(&self, ctx: &mut Context, inputs: &[Tensor]) -> kiln::Result<Vec<Tensor>> {
        let y = inputs[0].sigmoid();
        ctx.save_for_backward(&[&y])?;
        Ok(vec![y])
    }

    fn backward(&self, ctx: &Context, grad_outputs: &[Tensor]) -> kiln::Result<Vec<Option<Tensor>>> {
        let y = ctx.saved_tensors()?.remove(0);
        Ok(vec![Some(grad_outputs[0].mul(&y)?.mul(&(1.0 - &y))?)])
    }
}

/// A sigmoid whose backward forgets the `(1 - y)` factor.
struct WrongSigmoid;

impl Function for WrongSigmoid {
    fn forward(&self, ctx: &mut Context, inputs: &[Tensor]) -> kiln::Result<Vec<Tensor>> {
        let y = inputs[0].sigmoid();
        ctx.save_for_backward(&[&y])?;
        Ok(vec![y])
    }

    fn backward(&self, ctx: &Context, grad_outputs: &[Tensor]) -> kiln::Result<Vec<Option<Tensor>>> {
        let y = ctx.saved_tensors()?.remove(0);
        Ok(vec![Some(grad_outputs[0].mul(&y)?)])
    }
}

#[test]
fn s8_3_custom_sigmoid_gradcheck() {
    let x = {
        let _rng = rng_lock();
        Tensor::randn_opts(&[3, 4], TensorOptions::default().dtype(DType::F64).requires_grad(true)).unwrap()
    };
    assert_eq!(x.dtype(), DType::F64);
    let opts = GradcheckOptions { eps: 1e-3, ..Default::default() };
    let ok = gradcheck(|xs| Ok(Sigmoid.apply(&[&xs[0]])?.remove(0)), std::slice::from_ref(&x), opts);
    assert!(ok.unwrap(), "gradcheck of a correct backward");

    let wrong = gradcheck(|xs| Ok(WrongSigmoid.apply(&[&xs[0]])?.remove(0)), std::slice::from_ref(&x), opts);
    match wrong {
        Ok(passed) => assert!(!passed, "gradcheck must reject a wrong backward"),
        Err(e) => assert!(e.to_string().contains("Jacobian mismatch"), "unexpected error: {e}"),
    }
    let quiet = GradcheckOptions { raise_exception: false, ..opts };
    let wrong = gradcheck(|xs| Ok(WrongSigmoid.apply(&[&xs[0]])?.remove(0)), std::slice::from_ref(&x), quiet);
    assert!(!wrong.unwrap());
}

// ----- Threads --------------------------------------------------------------------------------

#[test]
fn s9_1_threads() {
    let handles: Vec<_> = (0..10)
        .map(|_| {
            std::thread::spawn(|| {
                let x = Tensor::ones(&[5, 5]).requires_grad_(true);
                let y = (&x + 3.0) * (&x + 4.0) * 0.5;
                y.sum().backward().unwrap();
                let expected: Vec<f64> = vals(&x).iter().map(|v| v + 3.5).collect();
                (grad_of(&x), expected)
            })
        })
        .collect();
    for h in handles {
        let (g, expected) = h.join().expect("thread finished without panicking");
        assert_close(&g, &expected);
        assert_close(&g, &[4.5; 25]);
    }
}

// ----- Training -------------------------------------------------------------------------------

#[test]
fn s10_1_linear_regression() {
    let _rng = rng_lock();
    kiln::manual_seed(0);
    let fake_data = |batch: usize| {
        let x = Tensor::rand(&[batch, 1]) * 5.0;
        let y = &x * 2.0 + 3.0 + Tensor::randn(&[batch, 1]);
        (x, y)
    };
    let mut w = Tensor::rand(&[1, 1]).requires_grad_(true);
    let mut b = Tensor::zeros(&[1, 1]).requires_grad_(true);
    let lr = 0.005;
    let mut losses = Vec::new();
    for _ in 0..500 {
        let (x, y) = fake_data(32);
        let y_pred = x.mm(&w).unwrap() + b.expand_as(&y).unwrap();
        let loss = ((&y_pred - &y).pow(2.0) * 0.5).sum();
        loss.backward().unwrap();
        {
            let _g = no_grad();
            w -= &(lr * &w.grad().unwrap());
            b -= &(lr * &b.grad().unwrap());
        }
        w.grad().unwrap().zero_().unwrap();
        b.grad().unwrap().zero_().unwrap();
        losses.push(loss.item().unwrap());
    }
    let (wv, bv) = (w.item().unwrap(), b.item().unwrap());
    assert!(w.is_leaf() && w.requires_grad() && b.is_leaf() && b.requires_grad());
    assert!(losses.iter().all(|l| l.is_finite()));
    assert!(losses[losses.len() - 1] < losses[0], "the loss decreases: {} -> {}", losses[0], losses[499]);
    assert!((wv - 2.0).abs() < 0.15, "w = {wv}, expected within 0.15 of 2");
    assert!((bv - 3.0).abs() < 0.3, "b = {bv}, expected within 0.3 of 3");
}
