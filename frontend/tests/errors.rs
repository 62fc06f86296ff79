//! Errors are values: the variants, their messages, and the operators that panic with them.

mod common;
use common::*;
use kiln_frontend::autograd::{gradcheck, GradcheckOptions};
use kiln_frontend::{set_backend, DType, Error, Tensor};

#[test]
fn error_is_a_std_error_value() {
    fn is_std_error<E: std::error::Error + Clone + PartialEq + Send + Sync + 'static>(_: &E) {}
    let e = Tensor::ones(&[2]).add(&Tensor::ones(&[3])).unwrap_err();
    is_std_error(&e);
    assert_eq!(e.clone(), e);
    assert_eq!(format!("{e}"), e.to_string());
    let boxed: Box<dyn std::error::Error> = Box::new(e);
    assert!(boxed.to_string().contains("[2]"));
}

#[test]
fn each_family_of_failure_has_its_variant() {
    // shapes, dims, dtypes: Op
    assert!(matches!(Tensor::ones(&[2]).add(&Tensor::ones(&[3])), Err(Error::Op(_))));
    assert!(matches!(Tensor::ones(&[2]).size(1), Err(Error::Op(_))));
    assert!(matches!(Tensor::ones(&[2]).matmul(&Tensor::ones_typed(&[2], DType::I64)), Err(Error::Op(_))));
    assert!(matches!(Tensor::from_vec(vec![1.0f32], &[2]), Err(Error::Op(_))));
    // autograd misuse: Autograd
    assert!(matches!(Tensor::ones(&[1]).sum().backward(), Err(Error::Autograd(_))));
    assert!(matches!(Tensor::ones(&[1]).set_requires_grad(true).map(|_| ()), Ok(())));
    assert!(matches!(Tensor::ones_typed(&[1], DType::I64).set_requires_grad(true), Err(Error::Autograd(_))));
    // gradcheck mismatch: Gradcheck
    let x = leaf64(&[0.5], &[1]);
    let r = gradcheck(
        |t| {
            let d = t[0].detach();
            Ok(&(&d * &d) + &(&t[0] * 0.0))
        },
        &[x],
        GradcheckOptions::default(),
    );
    assert!(matches!(r, Err(Error::Gradcheck(_))));
    // unsupported: Unsupported
    assert!(matches!(set_backend("nope"), Err(Error::Unsupported(_))));
    let v = Tensor::ones(&[2]).view(&[2, 1]).unwrap();
    assert!(matches!(v.add_(&Tensor::ones(&[1])), Err(Error::Unsupported(_))));
}

#[test]
fn binary_operators_panic_with_the_error_message() {
    let a = || Tensor::ones(&[2]);
    let b = || Tensor::ones(&[3]);
    for m in [
        panic_msg(|| drop(&a() + &b())),
        panic_msg(|| drop(&a() - &b())),
        panic_msg(|| drop(a() * b())),
        panic_msg(|| drop(a() / &b())),
    ] {
        assert!(m.contains("[2]") && m.contains("[3]") && m.contains("cannot be broadcast"), "{m}");
    }
    let m = panic_msg(|| drop(&a() + &Tensor::ones_typed(&[2], DType::I64)));
    assert!(m.contains("same dtype") && m.contains("i64"), "{m}");
    let m = panic_msg(|| {
        let mut x = a();
        x += &b();
    });
    assert!(m.contains("[2]") && m.contains("[3]"), "{m}");
}

#[test]
fn dimension_errors_use_pytorch_wording() {
    let x = Tensor::ones(&[2, 3]);
    for r in [
        x.size(2).map(|_| ()),
        x.transpose(0, -3).map(|_| ()),
        x.sum_dim(&[2], false).map(|_| ()),
        x.softmax(5).map(|_| ()),
        x.narrow(2, 0, 1).map(|_| ()),
        x.squeeze_dim(-3).map(|_| ()),
    ] {
        let m = msg(r);
        assert!(m.starts_with("Dimension out of range (expected to be in range of [-2, 1], but got"), "{m}");
    }
    let m = msg(Tensor::scalar(1.0).size(0));
    assert!(m.contains("Dimension out of range (expected to be in range of [-1, 0], but got 0)"), "{m}");
}

#[test]
fn invalid_reduction_and_permutation_arguments() {
    let x = Tensor::ones(&[2, 3]);
    let m = msg(x.sum_dim(&[0, 0], false));
    assert!(m.contains("appears twice"), "{m}");
    let m = msg(x.permute(&[0, 0]));
    assert!(m.contains("[0, 0]"), "{m}");
}

#[test]
fn expand_rejects_minus_one_in_a_new_leading_dim() {
    // PyTorch: torch.ones(3).expand(-1, 3) raises "The expanded size of the tensor (-1) isn't
    // allowed in a leading, non-existing dimension 0".
    let r = Tensor::ones(&[3]).expand(&[-1, 3]);
    assert!(r.is_err(), "got a tensor of shape {:?}", r.map(|t| t.shape().to_vec()));
    let r = Tensor::ones(&[3]).expand(&[-2, 3]);
    assert!(r.is_err(), "a negative size other than -1 must be an error");
}

#[test]
fn float_math_on_integer_tensors_promotes_instead_of_panicking() {
    // PyTorch: torch.tensor([1, 4]).exp() / .sqrt() / .sigmoid() return float32 results.
    let i = Tensor::from_vec(vec![1i64, 4], &[2]).unwrap();
    let r = std::panic::catch_unwind(|| i.sqrt());
    let t = r.unwrap_or_else(|e| panic!("sqrt of an i64 tensor panicked: {:?}", e.downcast_ref::<String>()));
    assert_eq!(t.dtype(), DType::F32);
    assert_eq!(vals(&t), vec![1.0, 2.0]);
}

#[test]
fn float_division_by_zero_is_not_an_error() {
    let x = Tensor::from_vec(vec![1.0f32, -1.0, 0.0], &[3]).unwrap();
    let v = vals(&(&x / 0.0));
    assert_eq!(v[0], f64::INFINITY);
    assert_eq!(v[1], f64::NEG_INFINITY);
    assert!(v[2].is_nan());
}

#[test]
fn failed_ops_leave_their_operands_usable() {
    let x = leaf64(&[1.0, 2.0], &[2]);
    assert!(x.add(&Tensor::ones(&[3])).is_err());
    assert!(x.view(&[3]).is_err());
    assert!(x.get(&[5]).is_err());
    (&x * 2.0).sum().backward().unwrap();
    assert_eq!(grad(&x), vec![2.0, 2.0]);
}
