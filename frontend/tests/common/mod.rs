//! Helpers shared by the integration tests (each test file includes this module).
#![allow(dead_code)]

use kiln_frontend::{DType, Tensor};

/// An f64 tensor without history.
pub fn t64(v: &[f64], shape: &[usize]) -> Tensor {
    Tensor::from_vec_typed(v.to_vec(), shape, DType::F64).unwrap()
}

/// An f64 leaf that requires grad.
pub fn leaf64(v: &[f64], shape: &[usize]) -> Tensor {
    t64(v, shape).requires_grad_(true)
}

/// An f32 leaf that requires grad.
pub fn leaf32(v: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_slice(v, shape).unwrap().requires_grad_(true)
}

pub fn vals(t: &Tensor) -> Vec<f64> {
    t.to_vec_f64().unwrap()
}

/// The accumulated gradient of `t` as f64 values (panics if there is none).
pub fn grad(t: &Tensor) -> Vec<f64> {
    vals(&t.grad().unwrap_or_else(|| panic!("no .grad")))
}

#[track_caller]
pub fn assert_close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "length: got {got:?}, want {want:?}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let ok = if w.is_nan() {
            g.is_nan()
        } else if w.is_infinite() {
            g == w
        } else {
            (g - w).abs() <= tol * (1.0 + w.abs())
        };
        assert!(ok, "element {i}: got {g}, want {w}\n got {got:?}\nwant {want:?}");
    }
}

/// Central finite differences of `sum(f(x))` at `x` (f64), one entry per element of `x`.
pub fn numgrad(f: &dyn Fn(&Tensor) -> Tensor, x: &[f64], shape: &[usize]) -> Vec<f64> {
    let eps = 1e-6;
    (0..x.len())
        .map(|j| {
            let at = |d: f64| {
                let mut v = x.to_vec();
                v[j] += d;
                vals(&f(&t64(&v, shape))).iter().sum::<f64>()
            };
            (at(eps) - at(-eps)) / (2.0 * eps)
        })
        .collect()
}

/// The gradient backward computes for `sum(f(x))` at `x` (f64).
pub fn autograd_of(f: &dyn Fn(&Tensor) -> Tensor, x: &[f64], shape: &[usize]) -> Vec<f64> {
    let xt = leaf64(x, shape);
    f(&xt).sum().backward().unwrap();
    grad(&xt)
}

/// Backward of `sum(f(x))` agrees with finite differences at `x`.
#[track_caller]
pub fn check_fd(f: &dyn Fn(&Tensor) -> Tensor, x: &[f64], shape: &[usize]) {
    assert_close(&autograd_of(f, x, shape), &numgrad(f, x, shape), 1e-5);
}

/// The message of an error.
pub fn msg<T: std::fmt::Debug>(r: kiln_frontend::Result<T>) -> String {
    r.expect_err("expected an error").to_string()
}

/// The message a closure panics with.
pub fn panic_msg(f: impl FnOnce() + std::panic::UnwindSafe) -> String {
    let e = std::panic::catch_unwind(f).expect_err("expected a panic");
    if let Some(s) = e.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = e.downcast_ref::<&str>() {
        s.to_string()
    } else {
        String::from("<non-string panic>")
    }
}
