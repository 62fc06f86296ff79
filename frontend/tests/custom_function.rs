//! Custom autograd functions (`autograd::Function`), `gradcheck` and `gradgradcheck`.

mod common;
use common::*;
use kiln_frontend::autograd::{
    self, gradcheck, gradgradcheck, Context, Function, FunctionExt, GradOptions, GradcheckOptions,
};
use kiln_frontend::{no_grad, Error, Result, Tensor};
use std::sync::{Arc, Mutex};

/// y = x², saving x.
struct Square;
impl Function for Square {
    fn forward(&self, ctx: &mut Context, x: &[Tensor]) -> Result<Vec<Tensor>> {
        ctx.save_for_backward(&[&x[0]])?;
        Ok(vec![x[0].mul(&x[0])?])
    }
    fn backward(&self, ctx: &Context, g: &[Tensor]) -> Result<Vec<Option<Tensor>>> {
        let x = &ctx.saved_tensors()?[0];
        Ok(vec![Some(g[0].mul(&(x * 2.0))?)])
    }
}

/// y = exp(x), saving the output.
struct MyExp;
impl Function for MyExp {
    fn forward(&self, ctx: &mut Context, x: &[Tensor]) -> Result<Vec<Tensor>> {
        let y = x[0].exp();
        ctx.save_for_backward(&[&y])?;
        Ok(vec![y])
    }
    fn backward(&self, ctx: &Context, g: &[Tensor]) -> Result<Vec<Option<Tensor>>> {
        let y = &ctx.saved_tensors()?[0];
        Ok(vec![Some(g[0].mul(y)?)])
    }
}

/// y = a * b + k, with k a non-tensor value kept in the context; records needs_input_grad.
struct MulAdd {
    k: f64,
    seen: Arc<Mutex<Vec<bool>>>,
}
impl Function for MulAdd {
    fn forward(&self, ctx: &mut Context, x: &[Tensor]) -> Result<Vec<Tensor>> {
        ctx.save_for_backward(&[&x[0], &x[1]])?;
        ctx.set("k", self.k);
        ctx.set("label", String::from("muladd"));
        *self.seen.lock().unwrap() = (0..3).map(|i| ctx.needs_input_grad(i)).collect();
        Ok(vec![&x[0].mul(&x[1])? + self.k])
    }
    fn backward(&self, ctx: &Context, g: &[Tensor]) -> Result<Vec<Option<Tensor>>> {
        assert_eq!(ctx.get::<f64>("k"), Some(&self.k));
        assert_eq!(ctx.get::<String>("label").map(String::as_str), Some("muladd"));
        assert!(ctx.get::<i32>("k").is_none(), "a value of another type is not returned");
        assert!(ctx.get::<f64>("missing").is_none());
        let s = ctx.saved_tensors()?;
        let ga = if ctx.needs_input_grad(0) { Some(g[0].mul(&s[1])?) } else { None };
        let gb = if ctx.needs_input_grad(1) { Some(g[0].mul(&s[0])?) } else { None };
        Ok(vec![ga, gb])
    }
}

/// Two outputs: (2x, x³).
struct TwoOut;
impl Function for TwoOut {
    fn forward(&self, ctx: &mut Context, x: &[Tensor]) -> Result<Vec<Tensor>> {
        ctx.save_for_backward(&[&x[0]])?;
        Ok(vec![&x[0] * 2.0, x[0].pow(3.0)])
    }
    fn backward(&self, ctx: &Context, g: &[Tensor]) -> Result<Vec<Option<Tensor>>> {
        let x = &ctx.saved_tensors()?[0];
        let d = &(&g[0] * 2.0) + &(&g[1] * &(&x.pow(2.0) * 3.0));
        Ok(vec![Some(d)])
    }
}

/// Returns too few gradients.
struct TooFew;
impl Function for TooFew {
    fn forward(&self, _: &mut Context, x: &[Tensor]) -> Result<Vec<Tensor>> {
        Ok(vec![x[0].add(&x[1])?])
    }
    fn backward(&self, _: &Context, g: &[Tensor]) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(g[0].clone())])
    }
}

/// Returns a gradient of the wrong shape.
struct WrongShape;
impl Function for WrongShape {
    fn forward(&self, _: &mut Context, x: &[Tensor]) -> Result<Vec<Tensor>> {
        Ok(vec![x[0].sum()])
    }
    fn backward(&self, _: &Context, _: &[Tensor]) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(Tensor::ones(&[3]))])
    }
}

/// y = sin(x) with a wrong backward (claims cos(x) + 0.1).
struct BadSin;
impl Function for BadSin {
    fn forward(&self, ctx: &mut Context, x: &[Tensor]) -> Result<Vec<Tensor>> {
        ctx.save_for_backward(&[&x[0]])?;
        Ok(vec![x[0].sin()])
    }
    fn backward(&self, ctx: &Context, g: &[Tensor]) -> Result<Vec<Option<Tensor>>> {
        let x = &ctx.saved_tensors()?[0];
        Ok(vec![Some(g[0].mul(&(&x.cos() + 0.1))?)])
    }
}

/// y = x³ whose backward is right at first order but not differentiable (detaches x).
struct DetachedCube;
impl Function for DetachedCube {
    fn forward(&self, ctx: &mut Context, x: &[Tensor]) -> Result<Vec<Tensor>> {
        ctx.save_for_backward(&[&x[0]])?;
        Ok(vec![x[0].pow(3.0)])
    }
    fn backward(&self, ctx: &Context, g: &[Tensor]) -> Result<Vec<Option<Tensor>>> {
        let x = ctx.saved_tensors()?[0].detach();
        Ok(vec![Some(g[0].mul(&(&x.pow(2.0) * 3.0))?)])
    }
}

/// forward fails.
struct Failing;
impl Function for Failing {
    fn forward(&self, _: &mut Context, x: &[Tensor]) -> Result<Vec<Tensor>> {
        x[0].matmul(&x[0]).map(|t| vec![t]).and_then(|_| Err(Error::Op("forward failed on purpose".into())))
    }
    fn backward(&self, _: &Context, _: &[Tensor]) -> Result<Vec<Option<Tensor>>> {
        unreachable!()
    }
}

#[test]
fn save_for_backward_and_grad_fn_name() {
    let x = leaf64(&[3.0, -1.0], &[2]);
    let y = Square.apply(&[&x]).unwrap().remove(0);
    assert_eq!(y.grad_fn().unwrap().name(), "SquareBackward");
    assert!(!y.is_leaf() && y.requires_grad());
    assert_eq!(vals(&y), vec![9.0, 1.0]);
    let next = y.grad_fn().unwrap().next_functions();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].0.as_ref().unwrap().name(), "AccumulateGrad");
    (&y * 2.0).sum().backward().unwrap();
    assert_eq!(grad(&x), vec![12.0, -4.0]);
}

#[test]
fn saving_an_output() {
    let x = leaf64(&[0.5, 1.0], &[2]);
    let y = MyExp.apply(&[&x]).unwrap().remove(0);
    assert_eq!(y.grad_fn().unwrap().name(), "MyExpBackward");
    y.sum().backward().unwrap();
    assert_close(&grad(&x), &[0.5f64.exp(), 1f64.exp()], 1e-15);
}

#[test]
fn modifying_a_saved_output_in_place_is_detected() {
    let x = leaf64(&[0.5, 1.0], &[2]);
    let y = MyExp.apply(&[&x]).unwrap().remove(0);
    y.add_(&t64(&[1.0], &[])).unwrap();
    let m = msg(y.sum().backward());
    assert!(m.contains("modified by an inplace operation"), "{m}");
}

#[test]
fn needs_input_grad_and_context_values() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let a = leaf64(&[2.0, 3.0], &[2]);
    let b = t64(&[5.0, 7.0], &[2]);
    let f = MulAdd { k: 1.5, seen: seen.clone() };
    let y = f.apply(&[&a, &b]).unwrap().remove(0);
    assert_eq!(*seen.lock().unwrap(), vec![true, false, false]);
    assert_eq!(vals(&y), vec![11.5, 22.5]);
    let next = y.grad_fn().unwrap().next_functions();
    assert!(next[0].0.is_some() && next[1].0.is_none());
    y.sum().backward().unwrap();
    assert_eq!(grad(&a), vec![5.0, 7.0]);

    let b = leaf64(&[5.0, 7.0], &[2]);
    let y = MulAdd { k: 0.0, seen: seen.clone() }.apply(&[&a, &b]).unwrap().remove(0);
    assert_eq!(*seen.lock().unwrap(), vec![true, true, false]);
    y.sum().backward().unwrap();
    assert_eq!(grad(&b), vec![2.0, 3.0]);
}

#[test]
fn multiple_outputs() {
    let x = leaf64(&[1.0, 2.0], &[2]);
    let outs = TwoOut.apply(&[&x]).unwrap();
    assert_eq!(outs.len(), 2);
    assert_eq!(outs[0].grad_fn(), outs[1].grad_fn());
    assert_eq!(vals(&outs[0]), vec![2.0, 4.0]);
    assert_eq!(vals(&outs[1]), vec![1.0, 8.0]);
    (&outs[0].sum() + &outs[1].sum()).backward().unwrap();
    assert_eq!(grad(&x), vec![2.0 + 3.0, 2.0 + 12.0]);
    // only one output used: the other gets a zero gradient
    let x = leaf64(&[1.0, 2.0], &[2]);
    let outs = TwoOut.apply(&[&x]).unwrap();
    outs[1].sum().backward().unwrap();
    assert_eq!(grad(&x), vec![3.0, 12.0]);
}

#[test]
fn no_recording_without_grad() {
    let x = t64(&[3.0], &[1]);
    let y = Square.apply(&[&x]).unwrap().remove(0);
    assert!(y.grad_fn().is_none() && !y.requires_grad());
    let w = leaf64(&[3.0], &[1]);
    let y = {
        let _g = no_grad();
        Square.apply(&[&w]).unwrap().remove(0)
    };
    assert!(y.grad_fn().is_none() && !y.requires_grad());
    assert_eq!(vals(&y), vec![9.0]);
}

#[test]
fn forward_runs_without_recording() {
    struct Probe(Arc<Mutex<Option<bool>>>);
    impl Function for Probe {
        fn forward(&self, _: &mut Context, x: &[Tensor]) -> Result<Vec<Tensor>> {
            let y = &x[0] * 2.0;
            *self.0.lock().unwrap() = Some(y.requires_grad());
            Ok(vec![y])
        }
        fn backward(&self, _: &Context, g: &[Tensor]) -> Result<Vec<Option<Tensor>>> {
            Ok(vec![Some(&g[0] * 2.0)])
        }
    }
    let seen = Arc::new(Mutex::new(None));
    let x = leaf64(&[1.0], &[1]);
    let y = Probe(seen.clone()).apply(&[&x]).unwrap().remove(0);
    assert_eq!(*seen.lock().unwrap(), Some(false));
    assert_eq!(y.grad_fn().unwrap().name(), "ProbeBackward");
}

#[test]
fn wrong_number_of_gradients_is_an_error() {
    let a = leaf64(&[1.0], &[1]);
    let b = leaf64(&[2.0], &[1]);
    let y = TooFew.apply(&[&a, &b]).unwrap().remove(0);
    let e = y.sum().backward().unwrap_err();
    assert!(matches!(e, Error::Autograd(_)));
    let m = e.to_string();
    assert!(
        m.contains("function TooFewBackward returned an incorrect number of gradients (expected 2, got 1)"),
        "{m}"
    );
}

#[test]
fn wrong_gradient_shape_is_an_error() {
    let x = leaf64(&[1.0, 2.0], &[2]);
    let y = WrongShape.apply(&[&x]).unwrap().remove(0);
    let m = msg(y.backward());
    assert!(m.contains("Function WrongShapeBackward returned an invalid gradient at index 0 - got [3] but expected shape compatible with [2]"), "{m}");
}

#[test]
fn forward_errors_propagate() {
    let x = leaf64(&[1.0, 2.0], &[2]);
    let m = msg(Failing.apply(&[&x]));
    assert!(m.contains("forward failed on purpose"), "{m}");
}

#[test]
fn saved_tensors_are_released_after_backward() {
    let x = leaf64(&[3.0], &[1]);
    let y = Square.apply(&[&x]).unwrap().remove(0).sum();
    y.backward_with(None, true, false).unwrap();
    y.backward().unwrap();
    assert_eq!(grad(&x), vec![12.0]);
    let m = msg(y.backward());
    assert!(m.contains("Trying to backward through the graph a second time"), "{m}");
}

#[test]
fn custom_backward_is_differentiable_with_create_graph() {
    let x = leaf64(&[3.0], &[1]);
    let y = Square.apply(&[&x]).unwrap().remove(0).sum();
    let opts = GradOptions { create_graph: true, ..Default::default() };
    let g = autograd::grad(&[&y], &[&x], opts).unwrap().remove(0).unwrap();
    assert_eq!(vals(&g), vec![6.0]);
    let h = autograd::grad(&[&g.sum()], &[&x], GradOptions::default()).unwrap().remove(0).unwrap();
    assert_eq!(vals(&h), vec![2.0]);
}

#[test]
fn custom_function_in_a_larger_graph() {
    let x = leaf64(&[0.5, -1.5, 2.0], &[3]);
    let f = |t: &Tensor| {
        let a = t.sin();
        let b = Square.apply(&[&a]).unwrap().remove(0);
        &MyExp.apply(&[&b]).unwrap().remove(0) * t
    };
    let xv = vals(&x);
    check_fd(&f, &xv, &[3]);
}

fn opts() -> GradcheckOptions {
    GradcheckOptions::default()
}

#[test]
fn gradcheck_passes_for_correct_gradients() {
    let x = leaf64(&[0.3, -0.7, 1.2, 2.0], &[2, 2]);
    let y = leaf64(&[1.5, 0.5, -0.25, 1.0], &[2, 2]);
    assert!(gradcheck(|t| Ok(&t[0].sin() * &t[1].exp()), &[x.clone(), y.clone()], opts()).unwrap());
    assert!(gradcheck(|t| t[0].matmul(&t[1]), &[x.clone(), y.clone()], opts()).unwrap());
    assert!(gradcheck(|t| Ok(Square.apply(&[&t[0]])?.remove(0)), std::slice::from_ref(&x), opts()).unwrap());
    assert!(gradcheck(|t| t[0].softmax(-1), std::slice::from_ref(&x), opts()).unwrap());
    // inputs that do not require grad are skipped
    let c = t64(&[1.0, 2.0, 3.0, 4.0], &[2, 2]);
    assert!(gradcheck(|t| Ok(&t[0] * &t[1]), &[x, c], opts()).unwrap());
}

#[test]
fn gradcheck_detects_a_wrong_backward() {
    let x = leaf64(&[0.3, -0.7, 1.2], &[3]);
    let f = |t: &[Tensor]| Ok(BadSin.apply(&[&t[0]])?.remove(0));
    let quiet = GradcheckOptions { raise_exception: false, ..opts() };
    assert!(!gradcheck(f, std::slice::from_ref(&x), quiet).unwrap());
    let e = gradcheck(f, &[x], opts()).unwrap_err();
    assert!(matches!(e, Error::Gradcheck(_)), "{e:?}");
    let m = e.to_string();
    assert!(m.contains("Jacobian mismatch for output 0 with respect to input 0"), "{m}");
    assert!(m.contains("numerical") && m.contains("analytical"), "{m}");
}

#[test]
fn gradcheck_reports_an_error_in_the_function() {
    let x = leaf64(&[1.0, 2.0], &[2]);
    let e = gradcheck(|t| t[0].matmul(&Tensor::ones(&[3])), &[x], opts()).unwrap_err();
    assert!(matches!(e, Error::Op(_)), "{e:?}");
}

#[test]
fn gradgradcheck_checks_second_derivatives() {
    let x = leaf64(&[0.3, -0.7, 1.2], &[3]);
    let y = leaf64(&[1.5, 0.5, -0.25], &[3]);
    assert!(gradgradcheck(|t| Ok(&t[0].sin() * &t[1].pow(2.0)), &[x.clone(), y], opts()).unwrap());
    assert!(gradgradcheck(|t| Ok(t[0].tanh()), std::slice::from_ref(&x), opts()).unwrap());
    assert!(
        gradgradcheck(|t| Ok(Square.apply(&[&t[0]])?.remove(0)), std::slice::from_ref(&x), opts()).unwrap()
    );
    let xm = leaf64(&[0.3, -0.7, 1.2, 0.1, 0.5, -0.2], &[2, 3]);
    assert!(gradgradcheck(|t| t[0].log_softmax(1), &[xm], opts()).unwrap());
}

#[test]
fn gradgradcheck_detects_a_non_differentiable_backward() {
    let x = leaf64(&[0.3, -0.7, 1.2], &[3]);
    let f = |t: &[Tensor]| Ok(DetachedCube.apply(&[&t[0]])?.remove(0));
    // first order is right
    assert!(gradcheck(f, std::slice::from_ref(&x), opts()).unwrap());
    // second order is not
    let quiet = GradcheckOptions { raise_exception: false, ..opts() };
    assert!(!gradgradcheck(f, std::slice::from_ref(&x), quiet).unwrap());
    assert!(matches!(gradgradcheck(f, &[x], opts()).unwrap_err(), Error::Gradcheck(_)));
}
