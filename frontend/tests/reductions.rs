//! Reductions: sum, mean, max, min, amax, amin, var, std, norm — over everything and over dims,
//! with keepdim; values and gradients.

mod common;
use common::*;
use kiln_frontend::{DType, Tensor};

const V: [f64; 6] = [1.0, -2.0, 3.5, 0.5, 4.0, -1.0];

fn x() -> Tensor {
    leaf64(&V, &[2, 3])
}

fn w() -> Tensor {
    t64(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3])
}

#[test]
fn sum_all() {
    let x = x();
    let s = x.sum();
    assert_eq!(s.grad_fn().unwrap().name(), "SumBackward0");
    assert_eq!(s.dim(), 0);
    assert_eq!(s.item().unwrap(), 6.0);
    (&s * 3.0).backward().unwrap();
    assert_eq!(grad(&x), vec![3.0; 6]);
    assert_eq!(Tensor::zeros(&[0]).sum().item().unwrap(), 0.0);
    let i = Tensor::from_vec(vec![1i64, 2, 3], &[3]).unwrap().sum();
    assert_eq!(i.dtype(), DType::I64);
    assert_eq!(i.item().unwrap(), 6.0);
}

#[test]
fn sum_over_dims() {
    let x = x();
    let s = x.sum_dim(&[1], false).unwrap();
    assert_eq!(s.grad_fn().unwrap().name(), "SumBackward1");
    assert_eq!(s.shape(), &[2]);
    assert_eq!(vals(&s), vec![2.5, 3.5]);
    let k = x.sum_dim(&[1], true).unwrap();
    assert_eq!(k.shape(), &[2, 1]);
    assert_eq!(vals(&k), vec![2.5, 3.5]);
    let s0 = x.sum_dim(&[0], true).unwrap();
    assert_eq!(s0.shape(), &[1, 3]);
    assert_eq!(vals(&s0), vec![1.5, 2.0, 2.5]);
    assert_eq!(vals(&x.sum_dim(&[-2], false).unwrap()), vec![1.5, 2.0, 2.5]);
    let both = x.sum_dim(&[0, 1], false).unwrap();
    assert_eq!(both.dim(), 0);
    assert_eq!(both.item().unwrap(), 6.0);
    assert_eq!(x.sum_dim(&[0, -1], true).unwrap().shape(), &[1, 1]);
    // gradient: the weight of each row broadcast back
    (&k * &t64(&[10.0, 20.0], &[2, 1])).sum().backward().unwrap();
    assert_eq!(grad(&x), vec![10.0, 10.0, 10.0, 20.0, 20.0, 20.0]);
    check_fd(&|t| &t.sum_dim(&[0], false).unwrap() * &t64(&[1.0, -2.0, 3.0], &[3]), &V, &[2, 3]);
}

#[test]
fn mean_all_and_over_dims() {
    let x = x();
    let m = x.mean();
    assert_eq!(m.grad_fn().unwrap().name(), "MeanBackward0");
    assert_eq!(m.item().unwrap(), 1.0);
    m.backward().unwrap();
    assert_close(&grad(&x), &[1.0 / 6.0; 6], 1e-15);

    let x = leaf64(&V, &[2, 3]);
    let m = x.mean_dim(&[-1], true).unwrap();
    assert_eq!(m.grad_fn().unwrap().name(), "MeanBackward1");
    assert_eq!(m.shape(), &[2, 1]);
    assert_close(&vals(&m), &[2.5 / 3.0, 3.5 / 3.0], 1e-15);
    assert_eq!(x.mean_dim(&[0], false).unwrap().shape(), &[3]);
    assert_close(&vals(&x.mean_dim(&[0], false).unwrap()), &[0.75, 1.0, 1.25], 1e-15);
    (&m * &t64(&[3.0, 6.0], &[2, 1])).sum().backward().unwrap();
    assert_close(&grad(&x), &[1.0, 1.0, 1.0, 2.0, 2.0, 2.0], 1e-15);
    let f32m = Tensor::from_vec(vec![1.0f32, 2.0], &[2]).unwrap().mean();
    assert_eq!(f32m.dtype(), DType::F32);
    assert_eq!(f32m.item().unwrap(), 1.5);
}

#[test]
fn max_and_min_over_everything() {
    let x = x();
    let m = x.max();
    assert_eq!(m.grad_fn().unwrap().name(), "MaxBackward1");
    assert_eq!(m.item().unwrap(), 4.0);
    m.backward().unwrap();
    assert_eq!(grad(&x), vec![0.0, 0.0, 0.0, 0.0, 1.0, 0.0]);

    let x = leaf64(&V, &[2, 3]);
    let m = x.min();
    assert_eq!(m.grad_fn().unwrap().name(), "MinBackward1");
    assert_eq!(m.item().unwrap(), -2.0);
    m.backward().unwrap();
    assert_eq!(grad(&x), vec![0.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
}

#[test]
fn max_and_min_split_ties_evenly() {
    let x = leaf64(&[3.0, 1.0, 3.0, 3.0], &[4]);
    x.max().backward().unwrap();
    assert_close(&grad(&x), &[1.0 / 3.0, 0.0, 1.0 / 3.0, 1.0 / 3.0], 1e-15);
    let x = leaf64(&[-1.0, 2.0, -1.0], &[3]);
    x.min().backward().unwrap();
    assert_eq!(grad(&x), vec![0.5, 0.0, 0.5]);
}

#[test]
fn amax_amin_over_dims() {
    let x = x();
    let a = x.amax(&[1], false).unwrap();
    assert_eq!(a.grad_fn().unwrap().name(), "AmaxBackward0");
    assert_eq!(vals(&a), vec![3.5, 4.0]);
    assert_eq!(x.amax(&[1], true).unwrap().shape(), &[2, 1]);
    assert_eq!(vals(&x.amax(&[0], false).unwrap()), vec![1.0, 4.0, 3.5]);
    assert_eq!(x.amax(&[0, 1], false).unwrap().item().unwrap(), 4.0);
    (&a * &t64(&[10.0, 20.0], &[2])).sum().backward().unwrap();
    assert_eq!(grad(&x), vec![0.0, 0.0, 10.0, 0.0, 20.0, 0.0]);

    let x = leaf64(&V, &[2, 3]);
    let a = x.amin(&[-1], true).unwrap();
    assert_eq!(a.grad_fn().unwrap().name(), "AminBackward0");
    assert_eq!(a.shape(), &[2, 1]);
    assert_eq!(vals(&a), vec![-2.0, -1.0]);
    assert_eq!(vals(&x.amin(&[0], false).unwrap()), vec![0.5, -2.0, -1.0]);
    a.sum().backward().unwrap();
    assert_eq!(grad(&x), vec![0.0, 1.0, 0.0, 0.0, 0.0, 1.0]);

    // ties split evenly along the reduced dim
    let t = leaf64(&[2.0, 2.0, 1.0, 5.0, 0.0, 5.0], &[2, 3]);
    t.amax(&[1], false).unwrap().sum().backward().unwrap();
    assert_eq!(grad(&t), vec![0.5, 0.5, 0.0, 0.5, 0.0, 0.5]);
    let t = leaf64(&[1.0, 2.0, 1.0, 1.0], &[2, 2]);
    t.amin(&[0], false).unwrap().sum().backward().unwrap();
    assert_eq!(grad(&t), vec![0.5, 0.0, 0.5, 1.0]);
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn var(v: &[f64], unbiased: bool) -> f64 {
    let m = mean(v);
    v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() as f64 - if unbiased { 1.0 } else { 0.0 })
}

#[test]
fn var_all_and_over_dims() {
    let x = x();
    let v = x.var();
    assert_eq!(v.grad_fn().unwrap().name(), "VarBackward0");
    assert_close(&[v.item().unwrap()], &[var(&V, true)], 1e-14);
    v.backward().unwrap();
    // d var / dx_i = 2 (x_i - mean) / (n - 1)
    let m = mean(&V);
    assert_close(&grad(&x), &V.iter().map(|a| 2.0 * (a - m) / 5.0).collect::<Vec<_>>(), 1e-14);

    let x = leaf64(&V, &[2, 3]);
    let vd = x.var_dim(&[1], true, false).unwrap();
    assert_eq!(vd.shape(), &[2]);
    assert_close(&vals(&vd), &[var(&V[..3], true), var(&V[3..], true)], 1e-14);
    let vb = x.var_dim(&[1], false, true).unwrap();
    assert_eq!(vb.shape(), &[2, 1]);
    assert_close(&vals(&vb), &[var(&V[..3], false), var(&V[3..], false)], 1e-14);
    assert_close(&vals(&x.var_dim(&[0, 1], true, false).unwrap()), &[var(&V, true)], 1e-14);
    let wv = vals(&w());
    check_fd(&|t| &t.var_dim(&[0], true, true).unwrap() * &t64(&wv[..3], &[1, 3]), &V, &[2, 3]);
    check_fd(&|t| &t.var_dim(&[-1], false, false).unwrap() * &t64(&wv[..2], &[2]), &V, &[2, 3]);
    assert!(x.var_dim(&[2], true, false).is_err());
}

#[test]
fn std_all_and_over_dims() {
    let x = x();
    let s = x.std();
    assert_eq!(s.grad_fn().unwrap().name(), "StdBackward0");
    let sd = var(&V, true).sqrt();
    assert_close(&[s.item().unwrap()], &[sd], 1e-14);
    s.backward().unwrap();
    let m = mean(&V);
    assert_close(&grad(&x), &V.iter().map(|a| (a - m) / (5.0 * sd)).collect::<Vec<_>>(), 1e-13);

    let x = leaf64(&V, &[2, 3]);
    let s = x.std_dim(&[0], false, true).unwrap();
    assert_eq!(s.shape(), &[1, 3]);
    let want: Vec<f64> = (0..3).map(|j| var(&[V[j], V[j + 3]], false).sqrt()).collect();
    assert_close(&vals(&s), &want, 1e-14);
    let wv = vals(&w());
    check_fd(&|t| &t.std_dim(&[1], true, false).unwrap() * &t64(&wv[..2], &[2]), &V, &[2, 3]);
    assert!(x.std_dim(&[-3], true, false).is_err());
}

#[test]
fn norm_value_and_gradient() {
    let x = leaf64(&[3.0, -4.0, 0.0, 12.0], &[2, 2]);
    let n = x.norm();
    assert_eq!(n.item().unwrap(), 13.0);
    n.backward().unwrap();
    assert_close(&grad(&x), &[3.0 / 13.0, -4.0 / 13.0, 0.0, 12.0 / 13.0], 1e-15);
    check_fd(&|t| t.norm(), &V, &[2, 3]);
}

#[test]
fn norm_gradient_at_zero_is_zero() {
    // PyTorch: torch.zeros(3, requires_grad=True).norm().backward() gives a zero gradient
    // (the norm's backward masks the 0/0), not NaN.
    let x = leaf64(&[0.0, 0.0, 0.0], &[3]);
    let n = x.norm();
    assert_eq!(n.item().unwrap(), 0.0);
    n.backward().unwrap();
    assert_eq!(grad(&x), vec![0.0, 0.0, 0.0]);
}

#[test]
fn reductions_over_invalid_dims_are_errors() {
    let x = Tensor::zeros(&[2, 3]);
    for r in [
        x.sum_dim(&[2], false),
        x.mean_dim(&[-3], false),
        x.amax(&[5], true),
        x.amin(&[2], false),
        x.var_dim(&[2], true, true),
        x.std_dim(&[2], true, true),
    ] {
        let m = msg(r);
        assert!(m.contains("Dimension out of range"), "{m}");
    }
}

#[test]
fn reductions_in_f32() {
    let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
    for r in [x.sum(), x.mean(), x.max(), x.min(), x.var(), x.std(), x.norm()] {
        assert_eq!(r.dtype(), DType::F32);
    }
    assert_eq!(x.sum().item().unwrap(), 10.0);
    assert_eq!(x.max().item().unwrap(), 4.0);
    assert_eq!(x.min().item().unwrap(), 1.0);
    assert_close(&[x.var().item().unwrap()], &[5.0 / 3.0], 1e-6);
    assert_close(&[x.norm().item().unwrap()], &[30f64.sqrt()], 1e-6);
}

#[test]
fn reductions_compose() {
    // a normalisation written with reductions, against finite differences
    check_fd(
        &|t| {
            let mu = t.mean_dim(&[1], true).unwrap();
            let sd = t.std_dim(&[1], true, true).unwrap();
            let z = &(t - &mu) / &sd;
            &z * &z.amax(&[0], true).unwrap()
        },
        &V,
        &[2, 3],
    );
}
