//! In-place ops: values, version counters, the leaf rule, views, history rebasing, and the
//! `+=`-style operators.

mod common;
use common::*;
use kiln_frontend::{no_grad, DType, Error, Tensor};

const MODIFIED: &str =
    "one of the variables needed for gradient computation has been modified by an inplace operation";
const LEAF: &str = "a leaf Variable that requires grad is being used in an in-place operation.";

fn s(v: f64) -> Tensor {
    t64(&[v], &[])
}

#[test]
fn arithmetic_in_place_values() {
    let x = t64(&[1.0, 2.0, 3.0], &[3]);
    let r = x.add_(&s(1.0)).unwrap();
    assert!(Tensor::same(&r, &x), "returns the same tensor");
    assert_eq!(vals(&x), vec![2.0, 3.0, 4.0]);
    x.sub_(&t64(&[0.5, 1.0, 1.5], &[3])).unwrap();
    assert_eq!(vals(&x), vec![1.5, 2.0, 2.5]);
    x.mul_(&s(4.0)).unwrap();
    assert_eq!(vals(&x), vec![6.0, 8.0, 10.0]);
    x.div_(&t64(&[2.0, 4.0, 5.0], &[3])).unwrap();
    assert_eq!(vals(&x), vec![3.0, 2.0, 2.0]);
    // other handles see the change
    let h = x.clone();
    x.add_(&s(1.0)).unwrap();
    assert_eq!(vals(&h), vec![4.0, 3.0, 3.0]);
    // the operand's dtype does not change the tensor's
    let f = Tensor::ones(&[2]);
    f.add_(&t64(&[0.1], &[])).unwrap();
    assert_eq!(f.dtype(), DType::F32);
    assert_eq!(vals(&f), vec![1.1f32 as f64; 2]);
}

#[test]
fn unary_in_place_values() {
    let v = [-1.0, 0.0, 2.0];
    let x = t64(&v, &[3]);
    x.sigmoid_().unwrap();
    assert_close(&vals(&x), &v.map(|a| 1.0 / (1.0 + (-a).exp())), 1e-15);
    let x = t64(&v, &[3]);
    x.relu_().unwrap();
    assert_eq!(vals(&x), vec![0.0, 0.0, 2.0]);
    let x = t64(&v, &[3]);
    x.exp_().unwrap();
    assert_close(&vals(&x), &v.map(f64::exp), 1e-15);
    let x = t64(&v, &[3]);
    x.neg_().unwrap();
    assert_eq!(vals(&x), vec![1.0, -0.0, -2.0]);
}

#[test]
fn zero_fill_copy_set() {
    let x = t64(&[1.0, 2.0, 3.0, 4.0], &[2, 2]);
    x.zero_().unwrap();
    assert_eq!(vals(&x), vec![0.0; 4]);
    x.fill_(2.5).unwrap();
    assert_eq!(vals(&x), vec![2.5; 4]);
    x.copy_(&t64(&[7.0, 8.0], &[2])).unwrap();
    assert_eq!(vals(&x), vec![7.0, 8.0, 7.0, 8.0]);
    x.copy_(&t64(&[1.0, 2.0, 3.0, 4.0], &[2, 2])).unwrap();
    assert_eq!(vals(&x), vec![1.0, 2.0, 3.0, 4.0]);
    // set_: x[1] = 9, x[0, -1] = -5
    x.set_(&[1], 9.0).unwrap();
    assert_eq!(vals(&x), vec![1.0, 2.0, 9.0, 9.0]);
    x.set_(&[0, -1], -5.0).unwrap();
    assert_eq!(vals(&x), vec![1.0, -5.0, 9.0, 9.0]);
    x.set_(&[], 0.0).unwrap();
    assert_eq!(vals(&x), vec![0.0; 4]);
    // copy_ from another dtype converts
    let f = Tensor::zeros(&[2]);
    f.copy_(&t64(&[0.1, 0.2], &[2])).unwrap();
    assert_eq!(f.dtype(), DType::F32);
    assert_eq!(f.to_vec_f32().unwrap(), vec![0.1f32, 0.2f32]);
    // an i64 tensor
    let i = Tensor::zeros_typed(&[3], DType::I64);
    i.fill_(4.0).unwrap();
    i.set_(&[0], 1.0).unwrap();
    assert_eq!(vals(&i), vec![1.0, 4.0, 4.0]);
}

#[test]
fn set_index_errors() {
    let x = Tensor::zeros(&[2, 3]);
    let m = msg(x.set_(&[2], 1.0));
    assert!(m.contains("index 2 is out of bounds for dimension 0 with size 2"), "{m}");
    assert!(x.set_(&[0, 3], 1.0).is_err());
    assert!(x.set_(&[0, 0, 0], 1.0).is_err());
    assert_eq!(vals(&x), vec![0.0; 6], "a failed set_ changes nothing");
}

#[test]
fn copy_shape_errors() {
    let x = Tensor::zeros(&[2]);
    assert!(x.copy_(&Tensor::ones(&[3])).is_err());
    assert!(x.copy_(&Tensor::ones(&[2, 2])).is_err());
}

#[test]
fn in_place_result_must_keep_the_shape() {
    let x = t64(&[1.0, 2.0], &[2]);
    let e = x.add_(&Tensor::ones_typed(&[2, 2], DType::F64)).unwrap_err();
    assert!(matches!(e, Error::Op(_)));
    let m = e.to_string();
    assert!(m.contains("output with shape [2] doesn't match the broadcast shape [2, 2]"), "{m}");
    assert_eq!(vals(&x), vec![1.0, 2.0]);
    assert!(x.mul_(&Tensor::ones_typed(&[3], DType::F64)).is_err());
}

#[test]
fn assignment_operators() {
    let mut x = t64(&[1.0, 2.0], &[2]);
    let h = x.clone();
    x += 1.0;
    assert_eq!(vals(&x), vec![2.0, 3.0]);
    x *= 3.0;
    assert_eq!(vals(&x), vec![6.0, 9.0]);
    x -= 1.0;
    assert_eq!(vals(&x), vec![5.0, 8.0]);
    x /= 2.0;
    assert_eq!(vals(&x), vec![2.5, 4.0]);
    let y = t64(&[2.0, -1.0], &[2]);
    x += &y;
    assert_eq!(vals(&x), vec![4.5, 3.0]);
    x *= &y;
    assert_eq!(vals(&x), vec![9.0, -3.0]);
    x -= &y;
    assert_eq!(vals(&x), vec![7.0, -2.0]);
    x /= &y;
    assert_eq!(vals(&x), vec![3.5, 2.0]);
    // in place: the other handle sees it
    assert!(Tensor::same(&x, &h));
    assert_eq!(vals(&h), vec![3.5, 2.0]);
}

#[test]
fn in_place_on_a_leaf_requiring_grad_is_an_error() {
    let w = leaf64(&[1.0, 2.0], &[2]);
    for r in [
        w.add_(&s(1.0)),
        w.sub_(&s(1.0)),
        w.mul_(&s(1.0)),
        w.div_(&s(1.0)),
        w.zero_(),
        w.fill_(1.0),
        w.sigmoid_(),
        w.relu_(),
        w.exp_(),
        w.neg_(),
        w.copy_(&s(1.0)),
        w.set_(&[0], 1.0),
    ] {
        let e = r.unwrap_err();
        assert!(matches!(e, Error::Autograd(_)), "{e:?}");
        assert_eq!(e.to_string(), LEAF);
    }
    assert_eq!(vals(&w), vec![1.0, 2.0]);
    let m = panic_msg(|| {
        let mut w = leaf64(&[1.0], &[1]);
        w += 1.0;
    });
    assert!(m.contains(LEAF), "{m}");
    let m = panic_msg(|| {
        let mut w = leaf64(&[1.0], &[1]);
        w *= &t64(&[2.0], &[1]);
    });
    assert!(m.contains(LEAF), "{m}");
}

#[test]
fn in_place_on_a_leaf_under_no_grad_is_allowed_and_not_recorded() {
    let mut w = leaf64(&[1.0, 2.0], &[2]);
    (&w * &w).sum().backward().unwrap();
    {
        let _g = no_grad();
        let g = w.grad().unwrap();
        w.sub_(&(&g * 0.1)).unwrap();
        w -= 0.5;
    }
    assert_close(&vals(&w), &[1.0 - 0.2 - 0.5, 2.0 - 0.4 - 0.5], 1e-15);
    assert!(w.is_leaf() && w.requires_grad() && w.grad_fn().is_none());
    // it still gets gradients afterwards
    w.set_grad(None).unwrap();
    (&w * 2.0).sum().backward().unwrap();
    assert_eq!(grad(&w), vec![2.0, 2.0]);
}

#[test]
fn in_place_on_a_view_is_refused() {
    let x = t64(&[1.0, 2.0, 3.0, 4.0], &[2, 2]);
    let views = [
        x.view(&[4]).unwrap(),
        x.reshape(&[4]).unwrap(),
        x.transpose(0, 1).unwrap(),
        x.t().unwrap(),
        x.permute(&[1, 0]).unwrap(),
        x.narrow(0, 0, 1).unwrap(),
        x.slice(1, 0, 2, 2).unwrap(),
        t64(&[1.0], &[1]).expand(&[3]).unwrap(),
    ];
    for v in views {
        let e = v.add_(&s(1.0)).unwrap_err();
        assert!(matches!(e, Error::Unsupported(_)), "{e:?}");
        assert!(e.to_string().contains("in-place operations on views"), "{e}");
    }
    assert_eq!(vals(&x), vec![1.0, 2.0, 3.0, 4.0]);
    // a deep copy of a view is not a view
    let c = x.view(&[4]).unwrap().deep_clone();
    c.add_(&s(1.0)).unwrap();
    assert_eq!(vals(&c), vec![2.0, 3.0, 4.0, 5.0]);
}

#[test]
fn modifying_a_saved_result_is_detected() {
    let x = leaf64(&[1.0, 2.0], &[2]);
    let y = x.exp(); // saves its result
    y.add_(&s(1.0)).unwrap();
    let e = y.sum().backward().unwrap_err();
    assert!(matches!(e, Error::Autograd(_)));
    let m = e.to_string();
    assert!(m.contains(MODIFIED), "{m}");
    assert!(m.contains("is at version 1; expected version 0 instead"), "{m}");
    assert!(m.contains("[kiln.DoubleTensor [2]]"), "{m}");
}

#[test]
fn modifying_a_saved_input_is_detected() {
    let x = leaf64(&[1.0, 2.0], &[2]);
    let y = &x * 1.0;
    let z = &y * &y; // saves y
    y.mul_(&s(2.0)).unwrap();
    y.mul_(&s(2.0)).unwrap();
    let m = msg(z.sum().backward());
    assert!(m.contains(MODIFIED), "{m}");
    assert!(m.contains("is at version 2; expected version 0 instead"), "{m}");
    // the saved-tensor accessor reports it too
    let e = z.grad_fn().unwrap().saved_tensor("self").unwrap_err();
    assert!(e.to_string().contains(MODIFIED), "{e}");
}

#[test]
fn modifying_a_tensor_nobody_saved_is_fine() {
    let x = leaf64(&[1.0, 2.0], &[2]);
    let y = &x * 3.0; // mul by a constant saves only the constant
    let z = &y + 1.0; // add saves nothing
    y.add_(&s(100.0)).unwrap();
    z.sum().backward().unwrap();
    assert_eq!(grad(&x), vec![3.0, 3.0]);
}

#[test]
fn in_place_on_a_non_leaf_rebases_history() {
    let x = leaf64(&[1.0, 2.0], &[2]);
    let y = &x * 2.0;
    assert_eq!(y.grad_fn().unwrap().name(), "MulBackward0");
    y.add_(&s(1.0)).unwrap();
    let f = y.grad_fn().unwrap();
    assert_eq!(f.name(), "AddBackward0");
    assert_eq!(f.next_functions()[0].0.as_ref().unwrap().name(), "MulBackward0");
    assert!(!y.is_leaf() && y.requires_grad());
    assert_eq!(vals(&y), vec![3.0, 5.0]);
    y.mul_(&x).unwrap(); // y = (2x + 1) x
    assert_eq!(y.grad_fn().unwrap().name(), "MulBackward0");
    y.sum().backward().unwrap();
    assert_eq!(grad(&x), vec![4.0 * 1.0 + 1.0, 4.0 * 2.0 + 1.0]);
}

#[test]
fn in_place_unary_ops_on_non_leaves_are_differentiable() {
    let at = [-1.0, 0.5, 2.0];
    type Case = (&'static str, fn(&Tensor) -> Tensor, fn(f64) -> f64);
    let cases: [Case; 4] = [
        (
            "SigmoidBackward0",
            |y| y.sigmoid_().unwrap(),
            |a| {
                let s = 1.0 / (1.0 + (-a).exp());
                s * (1.0 - s)
            },
        ),
        ("ReluBackward0", |y| y.relu_().unwrap(), |a| if a > 0.0 { 1.0 } else { 0.0 }),
        ("ExpBackward0", |y| y.exp_().unwrap(), f64::exp),
        ("NegBackward0", |y| y.neg_().unwrap(), |_| -1.0),
    ];
    for (name, f, d) in cases {
        let x = leaf64(&at, &[3]);
        let y = &x * 1.0;
        f(&y);
        assert_eq!(y.grad_fn().unwrap().name(), name);
        y.sum().backward().unwrap();
        assert_close(&grad(&x), &at.map(d), 1e-15);
    }
}

#[test]
fn fill_and_zero_cut_the_gradient() {
    let x = leaf64(&[1.0, 2.0], &[2]);
    let y = &x * 3.0;
    y.fill_(5.0).unwrap();
    assert_eq!(vals(&y), vec![5.0, 5.0]);
    assert!(y.requires_grad());
    (&y * 2.0).sum().backward().unwrap();
    assert_eq!(grad(&x), vec![0.0, 0.0]);

    let x = leaf64(&[1.0, 2.0], &[2]);
    let y = &x * 3.0;
    y.zero_().unwrap();
    y.sum().backward().unwrap();
    assert_eq!(grad(&x), vec![0.0, 0.0]);
}

#[test]
fn set_on_a_non_leaf_blocks_the_gradient_at_the_written_positions() {
    let x = leaf64(&[1.0, 2.0, 3.0, 4.0], &[2, 2]);
    let y = &x * 2.0;
    y.set_(&[0, 1], 0.0).unwrap();
    assert_eq!(vals(&y), vec![2.0, 0.0, 6.0, 8.0]);
    y.sum().backward().unwrap();
    assert_eq!(grad(&x), vec![2.0, 0.0, 2.0, 2.0]);
}

#[test]
fn in_place_with_an_operand_that_requires_grad_starts_history() {
    let w = leaf64(&[1.0, 2.0], &[2]);
    let acc = t64(&[0.0, 0.0], &[2]);
    assert!(!acc.requires_grad());
    acc.add_(&w).unwrap();
    acc.mul_(&w).unwrap(); // acc = w²
    assert!(acc.requires_grad() && !acc.is_leaf());
    assert_eq!(vals(&acc), vec![1.0, 4.0]);
    acc.sum().backward().unwrap();
    assert_eq!(grad(&w), vec![2.0, 4.0]);

    // copy_ from a tensor requiring grad: the gradient flows to the source (summed over the
    // broadcast)
    let src = leaf64(&[3.0], &[1]);
    let dst = t64(&[0.0, 0.0, 0.0], &[3]);
    dst.copy_(&src).unwrap();
    assert!(dst.requires_grad());
    (&dst * &t64(&[1.0, 2.0, 3.0], &[3])).sum().backward().unwrap();
    assert_eq!(grad(&src), vec![6.0]);
}

#[test]
fn copy_into_a_non_leaf_discards_its_old_history() {
    let x = leaf64(&[1.0, 2.0], &[2]);
    let y = &x * 2.0;
    y.copy_(&t64(&[5.0, 6.0], &[2])).unwrap();
    assert_eq!(vals(&y), vec![5.0, 6.0]);
    // PyTorch: y keeps requiring grad (CopyBackwards) and x gets a zero gradient
    assert!(y.requires_grad(), "y still requires grad after copy_");
    y.sum().backward().unwrap();
    assert_eq!(grad(&x), vec![0.0, 0.0]);
}

#[test]
fn gradient_zeroing_in_place() {
    let w = leaf64(&[1.0, 2.0], &[2]);
    for _ in 0..3 {
        (&w * &w).sum().backward().unwrap();
    }
    assert_eq!(grad(&w), vec![6.0, 12.0]);
    let g = w.grad().unwrap();
    g.zero_().unwrap();
    assert_eq!(grad(&w), vec![0.0, 0.0]);
    (&w * &w).sum().backward().unwrap();
    assert_eq!(grad(&w), vec![2.0, 4.0]);
    // the same grad tensor was accumulated into (in place, as PyTorch does)
    assert!(Tensor::same(&g, &w.grad().unwrap()));
}
