//! Creation API: filled tensors, ranges, data, ndarray, random, options, dtypes.

mod common;
use common::*;
use kiln_frontend::{manual_seed, DType, Error, Tensor, TensorOptions};
use std::sync::Mutex;

/// The random generator is process-global; tests that seed it take this lock.
static RNG_LOCK: Mutex<()> = Mutex::new(());

#[test]
fn zeros_ones_full() {
    let z = Tensor::zeros(&[2, 3]);
    assert_eq!(z.shape(), &[2, 3]);
    assert_eq!(z.dtype(), DType::F32);
    assert_eq!(vals(&z), vec![0.0; 6]);
    assert!(!z.requires_grad() && z.is_leaf());

    let o = Tensor::ones(&[4]);
    assert_eq!(vals(&o), vec![1.0; 4]);
    assert_eq!(o.dtype(), DType::F32);

    let f = Tensor::full(&[2, 2], 2.5);
    assert_eq!(vals(&f), vec![2.5; 4]);
    assert_eq!(f.dtype(), DType::F32);

    // 0-d and empty shapes
    let s = Tensor::full(&[], 7.0);
    assert_eq!(s.shape(), &[] as &[usize]);
    assert_eq!(s.dim(), 0);
    assert_eq!(s.numel(), 1);
    assert_eq!(s.item().unwrap(), 7.0);
    let e = Tensor::zeros(&[2, 0]);
    assert_eq!(e.numel(), 0);
    assert_eq!(vals(&e), Vec::<f64>::new());
}

#[test]
fn typed_constructors() {
    for dt in [DType::F32, DType::F64, DType::I64, DType::Bool] {
        assert_eq!(Tensor::zeros_typed(&[3], dt).dtype(), dt);
        assert_eq!(Tensor::ones_typed(&[3], dt).dtype(), dt);
        assert_eq!(vals(&Tensor::ones_typed(&[3], dt)), vec![1.0; 3]);
    }
    let f = Tensor::full_typed(&[2], 0.1, DType::F64);
    assert_eq!(f.dtype(), DType::F64);
    assert_eq!(vals(&f), vec![0.1, 0.1]); // exactly 0.1 in f64, not an f32 rounding
    let f32v = Tensor::full_typed(&[1], 0.1, DType::F32);
    assert_eq!(vals(&f32v), vec![0.1f32 as f64]);
    // i64 truncates like PyTorch's torch.full(..., dtype=torch.int64) of an integral value
    let i = Tensor::full_typed(&[2], 3.0, DType::I64);
    assert_eq!(i.dtype(), DType::I64);
    assert_eq!(vals(&i), vec![3.0, 3.0]);

    let t = Tensor::from_vec_typed(vec![1.0, 2.0, 3.0, 4.0], &[2, 2], DType::F64).unwrap();
    assert_eq!(t.dtype(), DType::F64);
    assert_eq!(t.shape(), &[2, 2]);
    assert!(Tensor::from_vec_typed(vec![1.0; 3], &[2, 2], DType::F64).is_err());
}

#[test]
fn from_vec_and_from_slice_follow_the_element_type() {
    let a = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]).unwrap();
    assert_eq!(a.dtype(), DType::F32);
    assert_eq!(a.shape(), &[2, 3]);
    assert_eq!(vals(&a), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);

    let b = Tensor::from_vec(vec![1.5f64, -2.25], &[2]).unwrap();
    assert_eq!(b.dtype(), DType::F64);
    assert_eq!(vals(&b), vec![1.5, -2.25]);

    let c = Tensor::from_vec(vec![1i64, -7, 3], &[3]).unwrap();
    assert_eq!(c.dtype(), DType::I64);
    assert_eq!(vals(&c), vec![1.0, -7.0, 3.0]);

    let d = Tensor::from_vec(vec![true, false], &[2]).unwrap();
    assert_eq!(d.dtype(), DType::Bool);
    assert_eq!(vals(&d), vec![1.0, 0.0]);

    let data = [0.5f32, 0.25, 0.125, 1.0];
    let s = Tensor::from_slice(&data, &[4]).unwrap();
    assert_eq!(s.dtype(), DType::F32);
    assert_eq!(s.to_vec_f32().unwrap(), data.to_vec());

    // 0-d from one element
    let z = Tensor::from_vec(vec![3.0f64], &[]).unwrap();
    assert_eq!(z.dim(), 0);
    assert_eq!(z.item().unwrap(), 3.0);
}

#[test]
fn from_vec_length_mismatch_is_an_error() {
    let e = Tensor::from_vec(vec![1.0f32; 3], &[2, 2]).unwrap_err();
    assert!(matches!(e, Error::Op(_)), "{e:?}");
    let m = e.to_string();
    assert!(m.contains("[2, 2]") && m.contains("invalid for input of size 3"), "{m}");
    assert!(Tensor::from_slice(&[1.0f64; 5], &[2, 3]).is_err());
    assert!(Tensor::from_vec(Vec::<f32>::new(), &[1]).is_err());
}

#[test]
fn scalar_is_zero_dim_f32() {
    let s = Tensor::scalar(2.5);
    assert_eq!(s.shape(), &[] as &[usize]);
    assert_eq!(s.dtype(), DType::F32);
    assert_eq!(s.item().unwrap(), 2.5);
    assert_eq!(s.numel(), 1);
}

#[test]
fn item_requires_one_element() {
    assert_eq!(Tensor::full(&[1, 1], 4.0).item().unwrap(), 4.0);
    let m = msg(Tensor::ones(&[2]).item());
    assert!(m.contains("a Tensor with 2 elements cannot be converted to Scalar"), "{m}");
}

#[test]
fn ndarray_round_trip() {
    let a = ndarray::ArrayD::from_shape_vec(vec![2, 3], vec![1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
    let t = Tensor::from_ndarray(&a);
    assert_eq!(t.dtype(), DType::F64);
    assert_eq!(t.shape(), &[2, 3]);
    assert_eq!(t.to_ndarray_f64().unwrap(), a);

    let b = ndarray::ArrayD::from_shape_vec(vec![3], vec![0.5f32, -1.0, 2.0]).unwrap();
    let t = Tensor::from_ndarray(&b);
    assert_eq!(t.dtype(), DType::F32);
    assert_eq!(t.to_ndarray_f32().unwrap(), b);

    // a non-contiguous (transposed) array is read in logical order
    let at = a.clone().reversed_axes();
    let t = Tensor::from_ndarray(&at);
    assert_eq!(t.shape(), &[3, 2]);
    assert_eq!(vals(&t), vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);

    // the result of an op converts too
    let y = (&Tensor::from_ndarray(&a) * 2.0).to_ndarray_f64().unwrap();
    assert_eq!(y, &a * 2.0);

    let i = ndarray::ArrayD::from_shape_vec(vec![2], vec![3i64, 4]).unwrap();
    assert_eq!(Tensor::from_ndarray(&i).dtype(), DType::I64);
}

#[test]
fn zeros_like_ones_like_keep_shape_and_dtype_without_history() {
    let x = leaf64(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[3, 2]);
    let z = x.zeros_like();
    assert_eq!(z.shape(), &[3, 2]);
    assert_eq!(z.dtype(), DType::F64);
    assert_eq!(vals(&z), vec![0.0; 6]);
    assert!(!z.requires_grad());
    let o = (&x * 2.0).ones_like();
    assert_eq!(o.dtype(), DType::F64);
    assert_eq!(vals(&o), vec![1.0; 6]);
    assert!(!o.requires_grad() && o.is_leaf());
    let i = Tensor::from_vec(vec![1i64, 2], &[2]).unwrap().zeros_like();
    assert_eq!(i.dtype(), DType::I64);
}

#[test]
fn arange() {
    assert_eq!(vals(&Tensor::arange(0.0, 3.0, 1.0).unwrap()), vec![0.0, 1.0, 2.0]);
    let t = Tensor::arange(1.0, 2.0, 0.25).unwrap();
    assert_eq!(t.dtype(), DType::F32);
    assert_eq!(vals(&t), vec![1.0, 1.25, 1.5, 1.75]);
    // a non-integral count rounds up: [0, 0.4, 0.8]
    assert_close(&vals(&Tensor::arange(0.0, 1.0, 0.4).unwrap()), &[0.0, 0.4, 0.8], 1e-6);
    assert_eq!(vals(&Tensor::arange(3.0, 0.0, -1.0).unwrap()), vec![3.0, 2.0, 1.0]);
    let empty = Tensor::arange(2.0, 2.0, 1.0).unwrap();
    assert_eq!(empty.shape(), &[0]);
}

#[test]
fn arange_zero_step_is_an_error() {
    let e = Tensor::arange(0.0, 1.0, 0.0).unwrap_err();
    assert!(matches!(e, Error::Op(_)));
    assert!(e.to_string().contains("step"), "{e}");
    assert!(Tensor::arange(0.0, f64::INFINITY, 1.0).is_err());
}

#[test]
fn arange_step_sign_inconsistent_with_bounds_is_an_error() {
    // PyTorch: torch.arange(0, 3, -1) raises
    // "upper bound and larger bound inconsistent with step sign".
    assert!(Tensor::arange(0.0, 3.0, -1.0).is_err(), "arange(0, 3, -1) should be an error");
    assert!(Tensor::arange(3.0, 0.0, 1.0).is_err(), "arange(3, 0, 1) should be an error");
}

#[test]
fn linspace() {
    let t = Tensor::linspace(0.0, 1.0, 5);
    assert_eq!(t.dtype(), DType::F32);
    assert_eq!(vals(&t), vec![0.0, 0.25, 0.5, 0.75, 1.0]);
    assert_eq!(vals(&Tensor::linspace(-1.0, 1.0, 3)), vec![-1.0, 0.0, 1.0]);
    assert_eq!(vals(&Tensor::linspace(3.0, 1.0, 3)), vec![3.0, 2.0, 1.0]);
    assert_eq!(vals(&Tensor::linspace(2.0, 9.0, 1)), vec![2.0]);
    assert_eq!(Tensor::linspace(2.0, 9.0, 0).shape(), &[0]);
}

#[test]
fn eye() {
    let e = Tensor::eye(3);
    assert_eq!(e.shape(), &[3, 3]);
    assert_eq!(e.dtype(), DType::F32);
    assert_eq!(vals(&e), vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]);
    assert_eq!(Tensor::eye(0).shape(), &[0, 0]);
    let m = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
    assert_eq!(vals(&Tensor::eye(2).matmul(&m).unwrap()), vals(&m));
}

#[test]
fn rand_is_uniform_in_unit_interval() {
    let _l = RNG_LOCK.lock().unwrap();
    let r = Tensor::rand(&[100, 100]);
    assert_eq!(r.shape(), &[100, 100]);
    assert_eq!(r.dtype(), DType::F32);
    let v = vals(&r);
    assert!(v.iter().all(|&x| (0.0..1.0).contains(&x)));
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    assert!((mean - 0.5).abs() < 0.02, "mean {mean}");
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64;
    assert!((var - 1.0 / 12.0).abs() < 0.01, "var {var}");
}

#[test]
fn randn_is_standard_normal() {
    let _l = RNG_LOCK.lock().unwrap();
    let v = vals(&Tensor::randn(&[20000]));
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64;
    assert!(mean.abs() < 0.03, "mean {mean}");
    assert!((var - 1.0).abs() < 0.05, "var {var}");
    assert!(v.iter().any(|&x| x < 0.0) && v.iter().any(|&x| x > 2.0));
}

#[test]
fn manual_seed_makes_random_reproducible() {
    let _l = RNG_LOCK.lock().unwrap();
    manual_seed(42);
    let a = vals(&Tensor::rand(&[5]));
    let b = vals(&Tensor::randn(&[2, 3]));
    manual_seed(42);
    assert_eq!(vals(&Tensor::rand(&[5])), a);
    assert_eq!(vals(&Tensor::randn(&[2, 3])), b);
    // the sequence continues rather than repeating
    assert_ne!(vals(&Tensor::rand(&[5])), a);
    manual_seed(43);
    assert_ne!(vals(&Tensor::rand(&[5])), a);
    // the *_opts forms draw from the same generator
    manual_seed(7);
    let r32 = vals(&Tensor::randn(&[4]));
    manual_seed(7);
    let r64 = Tensor::randn_opts(&[4], TensorOptions::default().dtype(DType::F64)).unwrap();
    assert_eq!(r64.dtype(), DType::F64);
    assert_eq!(vals(&r64), r32);
}

#[test]
fn tensor_options() {
    let d = TensorOptions::default();
    assert_eq!(d, TensorOptions { dtype: DType::F32, requires_grad: false });
    let o = d.dtype(DType::F64).requires_grad(true);
    assert_eq!(o.dtype, DType::F64);
    assert!(o.requires_grad);

    for t in [
        Tensor::zeros_opts(&[2], o).unwrap(),
        Tensor::ones_opts(&[2], o).unwrap(),
        Tensor::full_opts(&[2], 3.0, o).unwrap(),
        Tensor::from_vec_opts(vec![1.0, 2.0], &[2], o).unwrap(),
        Tensor::rand_opts(&[2], o).unwrap(),
        Tensor::randn_opts(&[2], o).unwrap(),
    ] {
        assert_eq!(t.dtype(), DType::F64);
        assert!(t.requires_grad());
        assert!(t.is_leaf());
        assert_eq!(t.shape(), &[2]);
    }
    assert_eq!(vals(&Tensor::zeros_opts(&[2], o).unwrap()), vec![0.0; 2]);
    assert_eq!(vals(&Tensor::ones_opts(&[2], o).unwrap()), vec![1.0; 2]);
    assert_eq!(vals(&Tensor::full_opts(&[2], 3.0, o).unwrap()), vec![3.0; 2]);
    assert_eq!(vals(&Tensor::from_vec_opts(vec![1.0, 2.0], &[2], o).unwrap()), vec![1.0, 2.0]);
    let r = Tensor::rand_opts(&[100], d).unwrap();
    assert_eq!(r.dtype(), DType::F32);
    assert!(!r.requires_grad());

    // a leaf made with options gets gradients
    let w = Tensor::full_opts(&[3], 2.0, o).unwrap();
    (&w * &w).sum().backward().unwrap();
    assert_eq!(grad(&w), vec![4.0; 3]);
}

#[test]
fn options_requiring_grad_of_an_integer_dtype_are_an_error() {
    let o = TensorOptions::default().dtype(DType::I64).requires_grad(true);
    for r in [
        Tensor::zeros_opts(&[2], o),
        Tensor::ones_opts(&[2], o),
        Tensor::full_opts(&[2], 1.0, o),
        Tensor::from_vec_opts(vec![1.0, 2.0], &[2], o),
    ] {
        let m = msg(r);
        assert!(m.contains("only Tensors of floating point and complex dtype can require gradients"), "{m}");
    }
    // without requires_grad an integer tensor is fine
    let t = Tensor::zeros_opts(&[2], TensorOptions::default().dtype(DType::I64)).unwrap();
    assert_eq!(t.dtype(), DType::I64);
    // mismatched data length
    assert!(Tensor::from_vec_opts(vec![1.0], &[2], TensorOptions::default()).is_err());
}

#[test]
fn shape_queries() {
    let t = Tensor::zeros(&[2, 3, 4]);
    assert_eq!(t.dim(), 3);
    assert_eq!(t.numel(), 24);
    assert_eq!(t.size(0).unwrap(), 2);
    assert_eq!(t.size(-1).unwrap(), 4);
    assert_eq!(t.size(-3).unwrap(), 2);
    let m = msg(t.size(3));
    assert!(m.contains("Dimension out of range (expected to be in range of [-3, 2], but got 3)"), "{m}");
    assert!(t.size(-4).is_err());
}

#[test]
fn handles_and_storage_identity() {
    let a = Tensor::ones(&[2]);
    let b = a.clone();
    assert!(Tensor::same(&a, &b));
    assert!(Tensor::shares_storage(&a, &b));
    let c = Tensor::ones(&[2]);
    assert!(!Tensor::same(&a, &c));
    assert!(!Tensor::shares_storage(&a, &c));
    let d = a.detach();
    assert!(!Tensor::same(&a, &d));
    assert!(Tensor::shares_storage(&a, &d));
}

#[test]
fn to_vec_f32_and_to_dtype() {
    let t = Tensor::from_vec(vec![1.5f64, 2.0 / 3.0], &[2]).unwrap();
    assert_eq!(t.to_vec_f32().unwrap(), vec![1.5f32, (2.0f64 / 3.0) as f32]);
    let f = t.to_dtype(DType::F32);
    assert_eq!(f.dtype(), DType::F32);
    assert_eq!(vals(&f), vec![1.5, (2.0f64 / 3.0) as f32 as f64]);
    let i = Tensor::from_vec(vec![1.7f64, -1.7], &[2]).unwrap().to_dtype(DType::I64);
    assert_eq!(i.dtype(), DType::I64);
    assert_eq!(vals(&i), vec![1.0, -1.0]); // truncation toward zero, as PyTorch
    let b = Tensor::from_vec(vec![0.0f32, 2.0], &[2]).unwrap().to_dtype(DType::Bool);
    assert_eq!(vals(&b), vec![0.0, 1.0]);
}
