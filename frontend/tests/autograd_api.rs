//! The autograd API: flags, leaves, .grad, grad_fn (names, next_functions, saved tensors),
//! retain_grad, hooks, backward / backward_with, autograd::grad (higher order), grad modes,
//! detach / data / deep_clone.

mod common;
use common::*;
use kiln_frontend::autograd::{self, GradOptions};
use kiln_frontend::nn::functional::{cross_entropy, layer_norm, mse_loss};
use kiln_frontend::{
    enable_grad, inference_mode, is_grad_enabled, is_inference_mode_enabled, no_grad, set_grad_enabled,
    DType, Error, Tensor,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

const RELEASED: &str = "Trying to backward through the graph a second time";

// ----- requires_grad, is_leaf ------------------------------------------------------------------------

#[test]
fn requires_grad_and_leaves() {
    let x = Tensor::ones(&[2]);
    assert!(!x.requires_grad() && x.is_leaf());
    let x = x.requires_grad_(true);
    assert!(x.requires_grad() && x.is_leaf());
    let y = &x * 2.0;
    assert!(y.requires_grad() && !y.is_leaf());
    let c = Tensor::ones(&[2]) * 2.0;
    assert!(!c.requires_grad() && c.is_leaf());
    // switching off on a leaf
    let x = x.requires_grad_(false);
    assert!(!x.requires_grad());
    x.set_requires_grad(true).unwrap();
    assert!(x.requires_grad());
    x.set_requires_grad(false).unwrap();
    assert!(!(&x * 2.0).requires_grad());
    // requires_grad(true) on a non-leaf is allowed (it already requires grad)
    y.set_requires_grad(true).unwrap();
    // a bool/i64 leaf can be told requires_grad(false)
    Tensor::ones_typed(&[1], DType::I64).set_requires_grad(false).unwrap();
}

#[test]
fn set_requires_grad_false_on_a_non_leaf_is_an_error() {
    let x = Tensor::ones(&[2]).requires_grad_(true);
    let y = &x * 2.0;
    let e = y.set_requires_grad(false).unwrap_err();
    assert!(matches!(e, Error::Autograd(_)));
    assert!(e.to_string().contains("you can only change requires_grad flags of leaf variables"), "{e}");
    let m = panic_msg(move || {
        let _ = y.requires_grad_(false);
    });
    assert!(m.contains("you can only change requires_grad flags of leaf variables"), "{m}");
}

#[test]
fn requires_grad_on_an_integer_tensor_is_an_error() {
    for dt in [DType::I64, DType::Bool] {
        let t = Tensor::zeros_typed(&[2], dt);
        let e = t.set_requires_grad(true).unwrap_err();
        assert!(matches!(e, Error::Autograd(_)));
        assert!(e
            .to_string()
            .contains("only Tensors of floating point and complex dtype can require gradients"));
        assert!(!t.requires_grad());
    }
    let m = panic_msg(|| {
        let _ = Tensor::zeros_typed(&[2], DType::I64).requires_grad_(true);
    });
    assert!(m.contains("only Tensors of floating point"), "{m}");
    // float widths both work
    assert!(Tensor::zeros_typed(&[2], DType::F64).requires_grad_(true).requires_grad());
}

#[test]
fn integer_results_do_not_require_grad() {
    let x = leaf64(&[1.0, 2.0], &[2]);
    let c = x.gt_scalar(1.5);
    assert!(!c.requires_grad() && c.is_leaf());
    let i = x.to_dtype(DType::I64);
    assert!(!i.requires_grad() && i.grad_fn().is_none());
}

// ----- .grad ---------------------------------------------------------------------------------------------

#[test]
fn grad_accumulates_and_can_be_set() {
    let x = leaf64(&[1.0, 2.0], &[2]);
    assert!(x.grad().is_none());
    (&x * 3.0).sum().backward().unwrap();
    assert_eq!(grad(&x), vec![3.0, 3.0]);
    assert_eq!(x.grad().unwrap().dtype(), DType::F64);
    assert!(!x.grad().unwrap().requires_grad());
    // a second backward accumulates
    (&x * &x).sum().backward().unwrap();
    assert_eq!(grad(&x), vec![5.0, 7.0]);
    // set and clear
    x.set_grad(Some(t64(&[10.0, 20.0], &[2]))).unwrap();
    assert_eq!(grad(&x), vec![10.0, 20.0]);
    (&x * 1.0).sum().backward().unwrap();
    assert_eq!(grad(&x), vec![11.0, 21.0]);
    x.set_grad(None).unwrap();
    assert!(x.grad().is_none());
    (&x * 1.0).sum().backward().unwrap();
    assert_eq!(grad(&x), vec![1.0, 1.0]);
    // zeroing in place
    x.grad().unwrap().zero_().unwrap();
    assert_eq!(grad(&x), vec![0.0, 0.0]);
    (&x * 2.0).sum().backward().unwrap();
    assert_eq!(grad(&x), vec![2.0, 2.0]);
}

#[test]
fn set_grad_shape_mismatch_is_an_error() {
    let x = leaf64(&[1.0, 2.0], &[2]);
    let e = x.set_grad(Some(Tensor::ones(&[3]))).unwrap_err();
    assert!(matches!(e, Error::Autograd(_)));
    let m = e.to_string();
    assert!(
        m.contains("assigned grad has data of a different size") && m.contains("[2]") && m.contains("[3]"),
        "{m}"
    );
    assert!(x.grad().is_none());
}

#[test]
fn non_leaf_grad_is_none_without_retain_grad() {
    let x = leaf64(&[1.0, 2.0], &[2]);
    let y = &x * 2.0;
    (&y * &y).sum().backward().unwrap();
    assert!(y.grad().is_none());
    assert!(!y.retains_grad());
}

// ----- grad_fn names --------------------------------------------------------------------------------------

#[test]
fn grad_fn_names_match_pytorch() {
    let x = leaf64(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let y = leaf64(&[0.5, 1.5, 2.5, 3.5, 4.5, 5.5], &[2, 3]);
    let m = leaf64(&[1.0, 0.0, 2.0, 1.0, 0.0, 1.0], &[3, 2]);
    let s = leaf64(&[2.0], &[]);
    let t = Tensor::from_vec(vec![0i64, 2], &[2]).unwrap();
    let cases: Vec<(Tensor, &str)> = vec![
        (&x + &y, "AddBackward0"),
        (&x + 2.0, "AddBackward0"),
        (2.0 + &x, "AddBackward0"),
        (&x - &y, "SubBackward0"),
        (&x - 2.0, "SubBackward0"),
        (1.0 - &x, "RsubBackward1"),
        (&x * &y, "MulBackward0"),
        (&x * 2.0, "MulBackward0"),
        (2.0 * &x, "MulBackward0"),
        (&x / &y, "DivBackward0"),
        (&x / 2.0, "DivBackward0"),
        (-&x, "NegBackward0"),
        (x.pow(2.0), "PowBackward0"),
        (x.pow_tensor(&y).unwrap(), "PowBackward1"),
        (x.exp(), "ExpBackward0"),
        (x.log(), "LogBackward0"),
        (x.sqrt(), "SqrtBackward0"),
        (x.abs(), "AbsBackward0"),
        (x.tanh(), "TanhBackward0"),
        (x.sigmoid(), "SigmoidBackward0"),
        (x.relu(), "ReluBackward0"),
        (x.sin(), "SinBackward0"),
        (x.cos(), "CosBackward0"),
        (x.erf(), "ErfBackward0"),
        (x.reciprocal(), "ReciprocalBackward0"),
        (x.gelu(), "GeluBackward0"),
        (x.clamp(Some(0.0), Some(1.0)), "ClampBackward1"),
        (x.maximum(&y).unwrap(), "MaximumBackward0"),
        (x.minimum(&y).unwrap(), "MinimumBackward0"),
        (x.sum(), "SumBackward0"),
        (x.sum_dim(&[0], false).unwrap(), "SumBackward1"),
        (x.mean(), "MeanBackward0"),
        (x.mean_dim(&[1], true).unwrap(), "MeanBackward1"),
        (x.max(), "MaxBackward1"),
        (x.min(), "MinBackward1"),
        (x.amax(&[0], false).unwrap(), "AmaxBackward0"),
        (x.amin(&[0], false).unwrap(), "AminBackward0"),
        (x.var(), "VarBackward0"),
        (x.std(), "StdBackward0"),
        (x.view(&[3, 2]).unwrap(), "ViewBackward0"),
        (x.reshape(&[-1]).unwrap(), "ViewBackward0"),
        (x.transpose(0, 1).unwrap(), "TransposeBackward0"),
        (x.t().unwrap(), "TBackward0"),
        (x.permute(&[1, 0]).unwrap(), "PermuteBackward0"),
        (s.expand(&[2, 3]).unwrap(), "ExpandBackward0"),
        (x.unsqueeze(0).unwrap(), "UnsqueezeBackward0"),
        (x.unsqueeze(0).unwrap().squeeze(), "SqueezeBackward0"),
        (Tensor::cat(&[&x, &y], 0).unwrap(), "CatBackward0"),
        (x.narrow(1, 0, 2).unwrap(), "SliceBackward0"),
        (x.slice(0, 0, 1, 1).unwrap(), "SliceBackward0"),
        (x.get(&[0]).unwrap(), "SelectBackward0"),
        (x.softmax(1).unwrap(), "SoftmaxBackward0"),
        (x.log_softmax(1).unwrap(), "LogSoftmaxBackward0"),
        (layer_norm(&x, &[3], None, None, 1e-5).unwrap(), "NativeLayerNormBackward0"),
        (mse_loss(&x, &y).unwrap(), "MseLossBackward0"),
        (cross_entropy(&x, &t).unwrap(), "NllLossBackward0"),
        (x.matmul(&m).unwrap(), "MmBackward0"),
        (x.mm(&m).unwrap(), "MmBackward0"),
        (x.to_dtype(DType::F32), "ToCopyBackward0"),
        (x.deep_clone(), "CloneBackward0"),
    ];
    for (t, name) in &cases {
        let f = t.grad_fn().unwrap_or_else(|| panic!("{name}: no grad_fn"));
        assert_eq!(f.name(), *name);
        assert_eq!(format!("{f:?}"), format!("<{name}>"));
    }
    assert!(x.grad_fn().is_none());
}

// ----- next_functions ----------------------------------------------------------------------------------------

#[test]
fn next_functions_structure() {
    let x = leaf64(&[1.0, 2.0], &[2]);
    let y = leaf64(&[3.0, 4.0], &[2]);
    let c = t64(&[5.0, 6.0], &[2]);
    let z = &(&x * &y) + &c;
    let f = z.grad_fn().unwrap();
    assert_eq!(f.name(), "AddBackward0");
    let next = f.next_functions();
    assert_eq!(next.len(), 2);
    let (mul, nr) = next[0].clone();
    assert_eq!(nr, 0);
    let mul = mul.unwrap();
    assert_eq!(mul.name(), "MulBackward0");
    assert!(next[1].0.is_none(), "a constant operand has no edge");
    assert_eq!(next[1].1, 0);
    let leaves = mul.next_functions();
    assert_eq!(leaves.len(), 2);
    let ax = leaves[0].0.clone().unwrap();
    let ay = leaves[1].0.clone().unwrap();
    assert_eq!(ax.name(), "AccumulateGrad");
    assert_eq!(ay.name(), "AccumulateGrad");
    assert_ne!(ax, ay);
    assert!(ax.next_functions().is_empty());
    // the same leaf used twice shares its AccumulateGrad node (while the graph is alive)
    let w = &x * &x;
    let n = w.grad_fn().unwrap().next_functions();
    assert_eq!(n[0].0, n[1].0);
    assert_eq!(n[0].0.as_ref().unwrap(), &ax);
    // grad_fn equality is identity
    assert_eq!(z.grad_fn().unwrap(), f);
    assert_ne!(w.grad_fn().unwrap(), mul);
}

// ----- saved tensors ----------------------------------------------------------------------------------------

#[test]
fn saved_tensors_by_name() {
    let x = leaf64(&[1.0, 2.0], &[2]);
    let y = leaf64(&[3.0, 4.0], &[2]);
    let z = &x * &y;
    let f = z.grad_fn().unwrap();
    let s = f.saved_tensor("self").unwrap().unwrap();
    let o = f.saved_tensor("other").unwrap().unwrap();
    assert_eq!(vals(&s), vec![1.0, 2.0]);
    assert_eq!(vals(&o), vec![3.0, 4.0]);
    assert!(Tensor::shares_storage(&s, &x));
    assert!(Tensor::shares_storage(&o, &y));
    assert!(f.saved_tensor("result").unwrap().is_none());
    assert!(f.saved_tensor("bogus").unwrap().is_none());
    assert!(f.saved_tensor("input7").unwrap().is_none());

    let e = x.exp();
    let r = e.grad_fn().unwrap().saved_tensor("result").unwrap().unwrap();
    assert_eq!(vals(&r), vals(&e));
    // add saves nothing
    let a = &x + &y;
    assert!(a.grad_fn().unwrap().saved_tensor("self").unwrap().is_none());
    assert!(a.grad_fn().unwrap().saved_tensor("other").unwrap().is_none());
}

#[test]
fn saved_tensors_are_freed_by_backward() {
    let x = leaf64(&[1.0, 2.0], &[2]);
    let y = leaf64(&[3.0, 4.0], &[2]);
    let z = &x * &y;
    let e = z.exp();
    e.sum().backward().unwrap();
    for (t, name) in [(&z, "self"), (&z, "other"), (&e, "result")] {
        let err = t.grad_fn().unwrap().saved_tensor(name).unwrap_err();
        assert!(matches!(err, Error::Autograd(_)));
        assert!(err.to_string().contains(RELEASED), "{err}");
    }
    // a node that saved nothing has nothing to complain about
    let a = &x + &y;
    a.sum().backward().unwrap();
    assert!(a.grad_fn().unwrap().saved_tensor("self").unwrap().is_none());
}

#[test]
fn saved_tensors_survive_retain_graph() {
    let x = leaf64(&[1.0, 2.0], &[2]);
    let z = x.exp();
    z.sum().backward_with(None, true, false).unwrap();
    assert_eq!(vals(&z.grad_fn().unwrap().saved_tensor("result").unwrap().unwrap()), vals(&z));
    z.sum().backward().unwrap();
    assert_close(&grad(&x), &[2.0 * 1f64.exp(), 2.0 * 2f64.exp()], 1e-15);
}

// ----- retain_grad ------------------------------------------------------------------------------------------------

#[test]
fn retain_grad_keeps_a_non_leaf_gradient() {
    let x = leaf64(&[1.0, 2.0], &[2]);
    let y = &x * 3.0;
    y.retain_grad().unwrap();
    assert!(y.retains_grad());
    y.retain_grad().unwrap(); // idempotent
    let z = (&y * &y).sum();
    z.retain_grad().unwrap();
    z.backward().unwrap();
    assert_eq!(grad(&y), vec![6.0, 12.0]);
    assert_eq!(grad(&z), vec![1.0]);
    assert_eq!(grad(&x), vec![18.0, 36.0]);
    // a leaf: no-op
    x.retain_grad().unwrap();
    assert!(!x.retains_grad());
}

#[test]
fn retained_grads_accumulate_over_backward_calls() {
    let x = leaf64(&[1.0, 2.0], &[2]);
    let y = &x * 3.0;
    y.retain_grad().unwrap();
    let z = (&y * 2.0).sum();
    z.backward_with(None, true, false).unwrap();
    z.backward().unwrap();
    assert_eq!(grad(&y), vec![4.0, 4.0]);
    assert_eq!(grad(&x), vec![12.0, 12.0]);
}

#[test]
fn retain_grad_on_a_tensor_without_grad_is_an_error() {
    let m = msg(Tensor::ones(&[2]).retain_grad());
    assert!(m.contains("can't retain_grad on Tensor that has requires_grad=False"), "{m}");
}

// ----- hooks ------------------------------------------------------------------------------------------------------

#[test]
fn hook_observes_and_replaces_the_gradient() {
    let x = leaf64(&[1.0, 2.0, 3.0], &[3]);
    let y = &x * 2.0;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    y.register_hook(move |g| {
        s.lock().unwrap().push(g.to_vec_f64().unwrap());
        None
    })
    .unwrap();
    y.register_hook(|g| Some(g * 10.0)).unwrap();
    (&y * &y).sum().backward().unwrap();
    assert_eq!(*seen.lock().unwrap(), vec![vec![4.0, 8.0, 12.0]]);
    assert_eq!(grad(&x), vec![80.0, 160.0, 240.0]);
}

#[test]
fn hooks_run_in_registration_order_each_seeing_the_previous_result() {
    let x = leaf64(&[1.0], &[1]);
    let y = &x * 1.0;
    let log = Arc::new(Mutex::new(Vec::new()));
    for k in 1..=3 {
        let l = log.clone();
        y.register_hook(move |g| {
            l.lock().unwrap().push((k, g.item().unwrap()));
            Some(g + k as f64)
        })
        .unwrap();
    }
    y.sum().backward().unwrap();
    assert_eq!(*log.lock().unwrap(), vec![(1, 1.0), (2, 2.0), (3, 4.0)]);
    assert_eq!(grad(&x), vec![7.0]);
}

#[test]
fn removed_hooks_are_not_called() {
    let x = leaf64(&[1.0, 2.0], &[2]);
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let h = x
        .register_hook(move |g| {
            c.fetch_add(1, Ordering::SeqCst);
            Some(g * 0.0)
        })
        .unwrap();
    (&x * 2.0).sum().backward().unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(grad(&x), vec![0.0, 0.0], "a hook on a leaf changes what is accumulated");
    h.remove();
    (&x * 2.0).sum().backward().unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(grad(&x), vec![2.0, 2.0]);
    // removing after the tensor is gone is harmless
    let t = leaf64(&[1.0], &[1]);
    let h = t.register_hook(|_| None).unwrap();
    drop(t);
    h.remove();
}

#[test]
fn hook_on_a_tensor_without_grad_is_an_error() {
    let e = Tensor::ones(&[2]).register_hook(|_| None).err().unwrap();
    assert!(matches!(e, Error::Autograd(_)));
    assert!(e.to_string().contains("cannot register a hook on a tensor that doesn't require gradient"));
}

#[test]
fn hook_changing_the_shape_is_an_error() {
    let x = leaf64(&[1.0, 2.0], &[2]);
    let y = &x * 2.0;
    y.register_hook(|_| Some(Tensor::ones(&[3]))).unwrap();
    let m = msg(y.sum().backward());
    assert!(m.contains("hook") && m.contains("[2]") && m.contains("[3]"), "{m}");
}

#[test]
fn hook_sees_the_gradient_before_retain_grad() {
    let x = leaf64(&[1.0], &[1]);
    let y = &x * 1.0;
    y.retain_grad().unwrap();
    y.register_hook(|g| Some(g * 5.0)).unwrap();
    y.sum().backward().unwrap();
    // PyTorch: retain_grad's stored value reflects hooks registered on the tensor
    assert_eq!(grad(&y), vec![5.0]);
    assert_eq!(grad(&x), vec![5.0]);
}

// ----- backward / backward_with --------------------------------------------------------------------------------

#[test]
fn backward_requires_a_scalar_or_a_gradient() {
    let x = leaf64(&[1.0, 2.0], &[2]);
    let y = &x * 2.0;
    let e = y.backward().unwrap_err();
    assert!(matches!(e, Error::Autograd(_)));
    assert!(e.to_string().contains("grad can be implicitly created only for scalar outputs"), "{e}");
    y.backward_with(Some(&t64(&[1.0, -1.0], &[2])), false, false).unwrap();
    assert_eq!(grad(&x), vec![2.0, -2.0]);
    // a one-element non-0-d output is fine
    let z = (&x * 1.0).sum_dim(&[0], true).unwrap();
    assert_eq!(z.shape(), &[1]);
    z.backward().unwrap();
    assert_eq!(grad(&x), vec![3.0, -1.0]);
}

#[test]
fn backward_with_gradient_shape_mismatch_is_an_error() {
    let x = leaf64(&[1.0, 2.0], &[2]);
    let y = &x * 2.0;
    let e = y.backward_with(Some(&Tensor::ones(&[3])), false, false).unwrap_err();
    assert!(matches!(e, Error::Autograd(_)));
    let m = e.to_string();
    assert!(m.contains("Mismatch in shape") && m.contains("[3]") && m.contains("[2]"), "{m}");
    assert!(x.grad().is_none());
    // a gradient of another float dtype is converted
    y.backward_with(Some(&Tensor::ones(&[2])), false, false).unwrap();
    assert_eq!(grad(&x), vec![2.0, 2.0]);
    assert_eq!(x.grad().unwrap().dtype(), DType::F64);
}

#[test]
fn backward_of_a_leaf_itself() {
    let x = leaf64(&[4.0], &[]);
    x.backward().unwrap();
    assert_eq!(grad(&x), vec![1.0]);
}

#[test]
fn the_graph_outlives_the_intermediate_handles() {
    let x = leaf64(&[0.5, 1.0], &[2]);
    let out = {
        let a = &x * 2.0;
        let b = a.exp();
        let c = &b * &a;
        c.sum()
    };
    out.backward().unwrap();
    // d/dx (2x e^{2x}) = 2 e^{2x} + 4x e^{2x}
    let want: Vec<f64> = [0.5f64, 1.0].iter().map(|&v| (2.0 + 4.0 * v) * (2.0 * v).exp()).collect();
    assert_close(&grad(&x), &want, 1e-14);
}

#[test]
fn backward_on_a_tensor_without_grad_is_an_error() {
    let m = msg(Tensor::ones(&[1]).sum().backward());
    assert!(m.contains("element 0 of tensors does not require grad and does not have a grad_fn"), "{m}");
}

#[test]
fn second_backward_needs_retain_graph() {
    let x = leaf64(&[1.0, 2.0], &[2]);
    let y = (&x * &x).sum();
    y.backward_with(None, true, false).unwrap();
    y.backward_with(None, true, false).unwrap();
    y.backward().unwrap();
    assert_eq!(grad(&x), vec![6.0, 12.0]);
    let e = y.backward().unwrap_err();
    assert!(matches!(e, Error::Autograd(_)));
    assert!(e.to_string().contains(RELEASED), "{e}");
    // the failed pass did not accumulate anything
    assert_eq!(grad(&x), vec![6.0, 12.0]);
}

#[test]
fn second_backward_through_nodes_that_saved_nothing_works() {
    // PyTorch raises only when a freed saved tensor is needed: sum/add save nothing.
    let x = leaf64(&[1.0, 2.0], &[2]);
    let y = (&x + 1.0).sum();
    y.backward().unwrap();
    y.backward().unwrap();
    assert_eq!(grad(&x), vec![2.0, 2.0]);
}

#[test]
fn backward_with_create_graph_records_the_gradient() {
    let x = leaf64(&[2.0], &[1]);
    let y = x.pow(3.0).sum();
    y.backward_with(None, false, true).unwrap();
    let g = x.grad().unwrap();
    assert_eq!(vals(&g), vec![12.0]);
    assert!(g.requires_grad() && g.grad_fn().is_some());
    // d/dx (3x²) = 6x
    let h = autograd::grad(&[&g.sum()], &[&x], GradOptions::default()).unwrap().remove(0).unwrap();
    assert_eq!(vals(&h), vec![12.0]);
}

#[test]
fn multiple_roots_with_autograd_backward() {
    let x = leaf64(&[1.0, 2.0], &[2]);
    let a = (&x * 2.0).sum();
    let b = &x * &x;
    autograd::backward(&[&a, &b], &[None, Some(t64(&[1.0, 1.0], &[2]))], false, false).unwrap();
    assert_eq!(grad(&x), vec![4.0, 6.0]);
    let m = msg(autograd::backward(&[&a, &b], &[None], false, false));
    assert!(m.contains("grad_outputs"), "{m}");
}

// ----- autograd::grad ----------------------------------------------------------------------------------------------

#[test]
fn grad_returns_gradients_without_touching_dot_grad() {
    let x = leaf64(&[1.0, 2.0], &[2]);
    let y = leaf64(&[3.0, 4.0], &[2]);
    let z = (&x * &y).sum();
    let g = autograd::grad(&[&z], &[&x, &y], GradOptions::default()).unwrap();
    assert_eq!(vals(g[0].as_ref().unwrap()), vec![3.0, 4.0]);
    assert_eq!(vals(g[1].as_ref().unwrap()), vec![1.0, 2.0]);
    assert!(x.grad().is_none() && y.grad().is_none());
    assert!(!g[0].as_ref().unwrap().requires_grad());
    // the graph was freed (retain_graph defaults to create_graph = false)
    let m = msg(autograd::grad(&[&z], &[&x], GradOptions::default()));
    assert!(m.contains(RELEASED), "{m}");
}

#[test]
fn grad_with_respect_to_an_intermediate() {
    let x = leaf64(&[1.0, 2.0], &[2]);
    let h = &x * 3.0;
    let z = (&h * &h).sum();
    let g = autograd::grad(&[&z], &[&h], GradOptions::default()).unwrap().remove(0).unwrap();
    assert_eq!(vals(&g), vec![6.0, 12.0]);
    assert!(x.grad().is_none());
}

#[test]
fn grad_allow_unused() {
    let x = leaf64(&[1.0], &[1]);
    let unused = leaf64(&[1.0], &[1]);
    let z = (&x * 2.0).sum();
    let opts = GradOptions { retain_graph: Some(true), ..Default::default() };
    let e = autograd::grad(&[&z], &[&x, &unused], opts).unwrap_err();
    assert!(matches!(e, Error::Autograd(_)));
    assert!(e.to_string().contains("One of the differentiated Tensors appears to not have been used in the graph. Set allow_unused=True"), "{e}");
    let opts = GradOptions { allow_unused: true, ..Default::default() };
    let g = autograd::grad(&[&z], &[&x, &unused], opts).unwrap();
    assert_eq!(vals(g[0].as_ref().unwrap()), vec![2.0]);
    assert!(g[1].is_none());
}

#[test]
fn grad_of_an_input_without_grad_is_an_error() {
    let x = leaf64(&[1.0], &[1]);
    let c = t64(&[1.0], &[1]);
    let z = (&x * &c).sum();
    let m = msg(autograd::grad(&[&z], &[&c], GradOptions::default()));
    assert!(m.contains("One of the differentiated Tensors (input 0) does not require grad"), "{m}");
}

#[test]
fn grad_outputs_give_a_vector_jacobian_product() {
    let x = leaf64(&[1.0, 2.0, 3.0], &[3]);
    let y = x.pow(2.0);
    let v = t64(&[1.0, 0.5, -1.0], &[3]);
    let opts = GradOptions { grad_outputs: vec![Some(v)], ..Default::default() };
    let g = autograd::grad(&[&y], &[&x], opts).unwrap().remove(0).unwrap();
    assert_eq!(vals(&g), vec![2.0, 2.0, -6.0]);
    // a non-scalar output needs grad_outputs
    let y = x.pow(2.0);
    let m = msg(autograd::grad(&[&y], &[&x], GradOptions::default()));
    assert!(m.contains("grad can be implicitly created only for scalar outputs"), "{m}");
    let opts = GradOptions { grad_outputs: vec![Some(Tensor::ones(&[2]))], ..Default::default() };
    let m = msg(autograd::grad(&[&y], &[&x], opts));
    assert!(m.contains("Mismatch in shape"), "{m}");
    // several outputs: their gradients add
    let a = x.sum();
    let b = (&x * &x).sum();
    let g = autograd::grad(&[&a, &b], &[&x], GradOptions::default()).unwrap().remove(0).unwrap();
    assert_eq!(vals(&g), vec![3.0, 5.0, 7.0]);
}

#[test]
fn higher_order_derivatives() {
    let x = leaf64(&[2.0, -1.0], &[2]);
    let y = x.pow(3.0).sum();
    let cg = || GradOptions { create_graph: true, ..Default::default() };
    let g1 = autograd::grad(&[&y], &[&x], cg()).unwrap().remove(0).unwrap();
    assert_eq!(vals(&g1), vec![12.0, 3.0]);
    assert!(g1.requires_grad());
    let g2 = autograd::grad(&[&g1.sum()], &[&x], cg()).unwrap().remove(0).unwrap();
    assert_eq!(vals(&g2), vec![12.0, -6.0]);
    let g3 = autograd::grad(&[&g2.sum()], &[&x], cg()).unwrap().remove(0).unwrap();
    assert_eq!(vals(&g3), vec![6.0, 6.0]);
    // the fourth derivative of x³ is zero (x is still used, through constants)
    let g4 = autograd::grad(&[&g3.sum()], &[&x], GradOptions { allow_unused: true, ..Default::default() })
        .unwrap()
        .remove(0);
    if let Some(g4) = g4 {
        assert_eq!(vals(&g4), vec![0.0, 0.0]);
    }
}

#[test]
fn higher_order_of_transcendental_functions() {
    let at = [0.3, 1.1];
    let x = leaf64(&at, &[2]);
    let cg = || GradOptions { create_graph: true, ..Default::default() };
    let d1 = autograd::grad(&[&x.sin().sum()], &[&x], cg()).unwrap().remove(0).unwrap();
    let d2 = autograd::grad(&[&d1.sum()], &[&x], cg()).unwrap().remove(0).unwrap();
    let d3 = autograd::grad(&[&d2.sum()], &[&x], cg()).unwrap().remove(0).unwrap();
    assert_close(&vals(&d1), &at.map(f64::cos), 1e-14);
    assert_close(&vals(&d2), &at.map(|a| -a.sin()), 1e-14);
    assert_close(&vals(&d3), &at.map(|a| -a.cos()), 1e-14);

    // tanh'' = -2 tanh (1 - tanh²)
    let x = leaf64(&at, &[2]);
    let d1 = autograd::grad(&[&x.tanh().sum()], &[&x], cg()).unwrap().remove(0).unwrap();
    let d2 = autograd::grad(&[&d1.sum()], &[&x], GradOptions::default()).unwrap().remove(0).unwrap();
    assert_close(&vals(&d2), &at.map(|a| -2.0 * a.tanh() * (1.0 - a.tanh().powi(2))), 1e-13);
}

#[test]
fn mixed_second_derivative() {
    // f = x² y: ∂f/∂x = 2xy, ∂²f/∂y∂x = 2x
    let x = leaf64(&[3.0], &[]);
    let y = leaf64(&[5.0], &[]);
    let f = &(&x * &x) * &y;
    let opts = GradOptions { create_graph: true, ..Default::default() };
    let gx = autograd::grad(&[&f], &[&x], opts).unwrap().remove(0).unwrap();
    assert_eq!(gx.item().unwrap(), 30.0);
    let gxy = autograd::grad(&[&gx], &[&y], GradOptions::default()).unwrap().remove(0).unwrap();
    assert_eq!(gxy.item().unwrap(), 6.0);
    // backward through a gradient accumulates into .grad
    let x = leaf64(&[3.0], &[]);
    let f = x.pow(3.0);
    let gx = autograd::grad(&[&f], &[&x], GradOptions { create_graph: true, ..Default::default() })
        .unwrap()
        .remove(0)
        .unwrap();
    gx.backward().unwrap();
    assert_eq!(grad(&x), vec![18.0]);
}

#[test]
fn grad_retain_graph_option() {
    let x = leaf64(&[1.0, 2.0], &[2]);
    let z = x.exp().sum();
    let opts = || GradOptions { retain_graph: Some(true), ..Default::default() };
    let a = autograd::grad(&[&z], &[&x], opts()).unwrap().remove(0).unwrap();
    let b = autograd::grad(&[&z], &[&x], opts()).unwrap().remove(0).unwrap();
    assert_eq!(vals(&a), vals(&b));
    // create_graph without retain_graph keeps the graph (retain_graph defaults to create_graph)
    let opts = GradOptions { create_graph: true, ..Default::default() };
    autograd::grad(&[&z], &[&x], opts).unwrap();
    autograd::grad(&[&z], &[&x], GradOptions::default()).unwrap();
    assert!(autograd::grad(&[&z], &[&x], GradOptions::default()).is_err());
}

// ----- grad modes ------------------------------------------------------------------------------------------------

#[test]
fn no_grad_enable_grad_set_grad_enabled_nest() {
    let w = leaf64(&[1.0], &[1]);
    assert!(is_grad_enabled());
    {
        let _a = no_grad();
        assert!(!is_grad_enabled());
        let y = &w * 2.0;
        assert!(!y.requires_grad() && y.is_leaf() && y.grad_fn().is_none());
        {
            let _b = enable_grad();
            assert!(is_grad_enabled());
            assert!((&w * 2.0).requires_grad());
            {
                let _c = set_grad_enabled(false);
                assert!(!is_grad_enabled());
                {
                    let _d = no_grad();
                    assert!(!is_grad_enabled());
                }
                assert!(!is_grad_enabled());
            }
            assert!(is_grad_enabled());
        }
        assert!(!is_grad_enabled());
        let _e = set_grad_enabled(true);
        assert!(is_grad_enabled());
    }
    assert!(is_grad_enabled());
    assert!((&w * 2.0).requires_grad());
}

#[test]
fn grad_mode_is_per_thread() {
    let _g = no_grad();
    assert!(!is_grad_enabled());
    let other = std::thread::spawn(is_grad_enabled).join().unwrap();
    assert!(other, "a new thread starts with grad enabled");
    assert!(!is_grad_enabled());
}

#[test]
fn a_guard_dropped_out_of_order_restores_its_own_previous_mode() {
    let a = no_grad();
    let b = enable_grad();
    drop(a); // restores "enabled"
    assert!(is_grad_enabled());
    drop(b); // restores "disabled" (what it saw)
    assert!(!is_grad_enabled());
    let _c = set_grad_enabled(true);
}

#[test]
fn computations_under_no_grad_do_not_affect_backward() {
    let x = leaf64(&[2.0], &[1]);
    let k = {
        let _g = no_grad();
        &x * &x
    };
    let y = (&x * &k).sum();
    y.backward().unwrap();
    assert_eq!(grad(&x), vec![4.0], "k is a constant to autograd");
}

#[test]
fn inference_mode_tensors_cannot_be_saved() {
    assert!(!is_inference_mode_enabled());
    let w = leaf64(&[1.0, 2.0], &[2]);
    let t = {
        let _g = inference_mode();
        assert!(is_inference_mode_enabled());
        assert!(!is_grad_enabled());
        let y = &w * 2.0;
        assert!(!y.requires_grad());
        Tensor::ones_typed(&[2], DType::F64)
    };
    assert!(!is_inference_mode_enabled());
    assert!(is_grad_enabled());
    // an inference tensor cannot be saved for backward
    let e = t.mul(&w).unwrap_err();
    assert!(matches!(e, Error::Autograd(_)));
    assert!(e.to_string().contains("Inference tensors cannot be saved for backward"), "{e}");
    // but it can be used where nothing is saved
    let s = t.add(&w).unwrap();
    s.sum().backward().unwrap();
    assert_eq!(grad(&w), vec![1.0, 1.0]);
    // a clone made outside inference mode is a normal tensor
    let c = t.deep_clone();
    assert!(c.mul(&w).is_ok());
}

// ----- detach, data, deep_clone -------------------------------------------------------------------------------------

#[test]
fn detach_shares_storage_and_version_counter() {
    let x = leaf64(&[1.0, 2.0], &[2]);
    let d = x.detach();
    assert!(d.is_leaf() && !d.requires_grad() && d.grad_fn().is_none());
    assert!(Tensor::shares_storage(&x, &d));
    assert_eq!(vals(&d), vec![1.0, 2.0]);
    let y = &x * &x; // saves x
    d.mul_(&t64(&[10.0], &[])).unwrap();
    // the change is visible through x
    assert_eq!(vals(&x), vec![10.0, 20.0]);
    // and autograd notices it
    let e = y.sum().backward().unwrap_err();
    assert!(matches!(e, Error::Autograd(_)));
    let m = e.to_string();
    assert!(
        m.contains(
            "one of the variables needed for gradient computation has been modified by an inplace operation"
        ),
        "{m}"
    );
    assert!(m.contains("is at version 1; expected version 0 instead"), "{m}");
    // detach of a non-leaf cuts the history
    let z = &x * 2.0;
    let zd = z.detach();
    assert!(zd.is_leaf() && !zd.requires_grad());
    assert_eq!(vals(&zd), vec![20.0, 40.0]);
}

#[test]
fn data_shares_storage_but_not_version() {
    let x = leaf64(&[1.0, 2.0], &[2]);
    let y = (&x * &x).sum();
    let d = x.data();
    assert!(Tensor::shares_storage(&x, &d));
    assert!(!d.requires_grad() && d.is_leaf());
    d.mul_(&t64(&[2.0], &[])).unwrap();
    assert_eq!(vals(&x), vec![2.0, 4.0]);
    // not seen by version checks: the backward uses the modified values, as in PyTorch
    y.backward().unwrap();
    assert_eq!(grad(&x), vec![4.0, 8.0]);
}

#[test]
fn detached_tensor_can_be_modified_under_a_leaf_requiring_grad() {
    // the PyTorch pattern for manual parameter updates
    let w = leaf64(&[1.0, 2.0], &[2]);
    w.detach().sub_(&t64(&[0.5], &[])).unwrap();
    assert_eq!(vals(&w), vec![0.5, 1.5]);
    assert!(w.requires_grad() && w.is_leaf());
}

#[test]
fn deep_clone_copies_with_history() {
    let x = leaf64(&[1.0, 2.0], &[2]);
    let c = x.deep_clone();
    assert!(!Tensor::shares_storage(&x, &c));
    assert!(!c.is_leaf());
    let s = Tensor::ones(&[2]).deep_clone();
    assert!(s.is_leaf() && !s.requires_grad());
    (&c * &c).sum().backward().unwrap();
    assert_eq!(grad(&x), vec![2.0, 4.0]);
}

#[test]
fn clone_is_a_handle() {
    let x = leaf64(&[1.0], &[1]);
    let h = x.clone();
    assert!(Tensor::same(&x, &h));
    (&h * 2.0).sum().backward().unwrap();
    assert_eq!(grad(&x), vec![2.0]);
}
