//! Shape ops: view/reshape, transpose/t/permute, expand, squeeze/unsqueeze, flatten, cat,
//! narrow/slice, get — values, gradients, grad_fn names and errors.

mod common;
use common::*;
use kiln_frontend::{DType, Error, Tensor};

fn seq(n: usize) -> Vec<f64> {
    (0..n).map(|i| i as f64).collect()
}

/// Weights that make every element's gradient distinct: d/dx sum(f(x) * w).
fn weighted(f: &Tensor) -> Tensor {
    let w: Vec<f64> = (0..f.numel()).map(|i| (i + 1) as f64).collect();
    f * &t64(&w, f.shape())
}

#[test]
fn view_and_reshape() {
    let x = leaf64(&seq(6), &[6]);
    let v = x.view(&[2, 3]).unwrap();
    assert_eq!(v.shape(), &[2, 3]);
    assert_eq!(v.grad_fn().unwrap().name(), "ViewBackward0");
    assert_eq!(vals(&v), seq(6));
    assert_eq!(x.view(&[2, -1]).unwrap().shape(), &[2, 3]);
    assert_eq!(x.view(&[-1, 1, 2]).unwrap().shape(), &[3, 1, 2]);
    assert_eq!(x.reshape(&[3, -1]).unwrap().shape(), &[3, 2]);
    assert_eq!(x.reshape(&[-1]).unwrap().shape(), &[6]);
    assert_eq!(x.reshape(&[3, 2]).unwrap().grad_fn().unwrap().name(), "ViewBackward0");
    weighted(&v).sum().backward().unwrap();
    assert_eq!(grad(&x), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    assert_eq!(x.grad().unwrap().shape(), &[6]);
    // to and from 0-d
    let s = t64(&[5.0], &[1]).view(&[]).unwrap();
    assert_eq!(s.dim(), 0);
    assert_eq!(Tensor::scalar(2.0).view(&[1, 1]).unwrap().shape(), &[1, 1]);
}

#[test]
fn view_errors() {
    let x = Tensor::zeros(&[6]);
    let m = msg(x.view(&[4, -1]));
    assert!(m.contains("invalid for input of size 6"), "{m}");
    let m = msg(x.view(&[4, 2]));
    assert!(m.contains("[4, 2]") && m.contains("invalid for input of size 6"), "{m}");
    let m = msg(x.view(&[-1, -1]));
    assert!(m.contains("only one dimension can be inferred"), "{m}");
    let m = msg(x.view(&[-2, 3]));
    assert!(m.contains("invalid shape dimension -2"), "{m}");
    assert!(matches!(x.reshape(&[5]).unwrap_err(), Error::Op(_)));
}

#[test]
fn transpose_values_and_gradients() {
    let x = leaf64(&seq(6), &[2, 3]);
    let t = x.transpose(0, 1).unwrap();
    assert_eq!(t.grad_fn().unwrap().name(), "TransposeBackward0");
    assert_eq!(t.shape(), &[3, 2]);
    assert_eq!(vals(&t), vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
    weighted(&t).sum().backward().unwrap();
    // w over t is [[1,2],[3,4],[5,6]], back through the transpose
    assert_eq!(grad(&x), vec![1.0, 3.0, 5.0, 2.0, 4.0, 6.0]);
    // negative dims, 3-D
    let y = t64(&seq(24), &[2, 3, 4]);
    let z = y.transpose(-1, 0).unwrap();
    assert_eq!(z.shape(), &[4, 3, 2]);
    assert_eq!(vals(&z.get(&[1, 2, 1]).unwrap()), vec![21.0]); // y[1, 2, 1]
    assert_eq!(vals(&y.transpose(1, 1).unwrap()), seq(24));
    let m = msg(y.transpose(0, 3));
    assert!(m.contains("Dimension out of range (expected to be in range of [-3, 2], but got 3)"), "{m}");
}

#[test]
fn t_matrix_vector_and_error() {
    let x = leaf64(&seq(6), &[2, 3]);
    let t = x.t().unwrap();
    assert_eq!(t.grad_fn().unwrap().name(), "TBackward0");
    assert_eq!(t.shape(), &[3, 2]);
    assert_eq!(vals(&t), vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
    weighted(&t).sum().backward().unwrap();
    assert_eq!(grad(&x), vec![1.0, 3.0, 5.0, 2.0, 4.0, 6.0]);
    // 0-D and 1-D tensors come back as they are
    let v = Tensor::ones(&[3]);
    assert_eq!(v.t().unwrap().shape(), &[3]);
    assert_eq!(Tensor::scalar(1.0).t().unwrap().dim(), 0);
    let m = msg(Tensor::ones(&[2, 2, 2]).t());
    assert!(m.contains("t() expects a tensor with <= 2 dimensions, but self is 3D"), "{m}");
}

#[test]
fn permute_values_and_gradients() {
    let x = leaf64(&seq(24), &[2, 3, 4]);
    let p = x.permute(&[2, 0, 1]).unwrap();
    assert_eq!(p.grad_fn().unwrap().name(), "PermuteBackward0");
    assert_eq!(p.shape(), &[4, 2, 3]);
    // p[k, i, j] = x[i, j, k]
    assert_eq!(p.get(&[3, 1, 2]).unwrap().item().unwrap(), 23.0);
    assert_eq!(p.get(&[1, 0, 2]).unwrap().item().unwrap(), 9.0);
    assert_eq!(x.permute(&[-1, 0, 1]).unwrap().shape(), &[4, 2, 3]);
    weighted(&p).sum().backward().unwrap();
    let g = grad(&x);
    // x[i, j, k] is p[k, i, j], whose weight is 1 + k*6 + i*3 + j
    for i in 0..2 {
        for j in 0..3 {
            for k in 0..4 {
                assert_eq!(g[i * 12 + j * 4 + k], (1 + k * 6 + i * 3 + j) as f64);
            }
        }
    }
    check_fd(&|t| weighted(&t.permute(&[1, 2, 0]).unwrap()), &seq(24), &[2, 3, 4]);
    assert!(x.permute(&[0, 1, 3]).is_err());
}

#[test]
fn permute_rejects_a_wrong_permutation() {
    let x = Tensor::zeros(&[2, 3, 4]);
    // PyTorch: "permute(sparse_coo): number of dimensions in the tensor input does not match the
    // length of the desired ordering of dimensions" / "repeated dim in permute".
    assert!(x.permute(&[0, 1]).is_err(), "permute with too few dims");
    assert!(x.permute(&[0, 0, 1]).is_err(), "permute with a repeated dim");
}

#[test]
fn expand_and_expand_as() {
    let x = leaf64(&[1.0, 2.0, 3.0], &[3]);
    let e = x.expand(&[2, 3]).unwrap();
    assert_eq!(e.grad_fn().unwrap().name(), "ExpandBackward0");
    assert_eq!(vals(&e), vec![1.0, 2.0, 3.0, 1.0, 2.0, 3.0]);
    weighted(&e).sum().backward().unwrap();
    assert_eq!(grad(&x), vec![1.0 + 4.0, 2.0 + 5.0, 3.0 + 6.0]);

    let c = leaf64(&[1.0, 2.0], &[2, 1]);
    let e = c.expand(&[-1, 3]).unwrap();
    assert_eq!(e.shape(), &[2, 3]);
    assert_eq!(vals(&e), vec![1.0, 1.0, 1.0, 2.0, 2.0, 2.0]);
    e.sum().backward().unwrap();
    assert_eq!(grad(&c), vec![3.0, 3.0]);
    assert_eq!(c.grad().unwrap().shape(), &[2, 1]);

    let s = leaf64(&[4.0], &[]);
    let target = Tensor::zeros(&[2, 2]);
    let e = s.expand_as(&target).unwrap();
    assert_eq!(e.shape(), &[2, 2]);
    assert_eq!(vals(&e), vec![4.0; 4]);
    e.sum().backward().unwrap();
    assert_eq!(grad(&s), vec![4.0]);
    // new leading dims
    assert_eq!(x.expand(&[4, 2, 3]).unwrap().shape(), &[4, 2, 3]);
}

#[test]
fn expand_errors() {
    let x = Tensor::ones(&[2, 3]);
    let m = msg(x.expand(&[3]));
    assert!(m.contains("the number of sizes provided (1) must be greater or equal to the number of dimensions in the tensor (2)"), "{m}");
    // a non-singleton dim cannot be expanded
    assert!(x.expand(&[4, 3]).is_err());
    assert!(Tensor::ones(&[3]).expand(&[2, 4]).is_err());
    assert!(x.expand_as(&Tensor::ones(&[3, 3])).is_err());
}

#[test]
fn squeeze_and_unsqueeze() {
    let x = leaf64(&seq(6), &[1, 2, 1, 3]);
    let s = x.squeeze();
    assert_eq!(s.shape(), &[2, 3]);
    assert_eq!(s.grad_fn().unwrap().name(), "SqueezeBackward0");
    weighted(&s).sum().backward().unwrap();
    assert_eq!(x.grad().unwrap().shape(), &[1, 2, 1, 3]);
    assert_eq!(grad(&x), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);

    let y = t64(&seq(6), &[1, 2, 1, 3]);
    let s = y.squeeze_dim(2).unwrap();
    assert_eq!(s.shape(), &[1, 2, 3]);
    assert_eq!(y.squeeze_dim(-4).unwrap().shape(), &[2, 1, 3]);
    // a dim of size > 1 is left alone, as PyTorch does
    assert_eq!(y.squeeze_dim(1).unwrap().shape(), &[1, 2, 1, 3]);
    assert!(y.squeeze_dim(4).is_err());
    let z = leaf64(&seq(6), &[1, 2, 1, 3]);
    assert_eq!(z.squeeze_dim(0).unwrap().grad_fn().unwrap().name(), "SqueezeBackward1");

    let v = leaf64(&[1.0, 2.0, 3.0], &[3]);
    let u = v.unsqueeze(0).unwrap();
    assert_eq!(u.shape(), &[1, 3]);
    assert_eq!(u.grad_fn().unwrap().name(), "UnsqueezeBackward0");
    assert_eq!(v.unsqueeze(1).unwrap().shape(), &[3, 1]);
    assert_eq!(v.unsqueeze(-1).unwrap().shape(), &[3, 1]);
    assert_eq!(v.unsqueeze(-2).unwrap().shape(), &[1, 3]);
    let m = msg(v.unsqueeze(2));
    assert!(m.contains("Dimension out of range (expected to be in range of [-2, 1], but got 2)"), "{m}");
    assert!(v.unsqueeze(-3).is_err());
    weighted(&u).sum().backward().unwrap();
    assert_eq!(grad(&v), vec![1.0, 2.0, 3.0]);
    // squeeze of all-ones shape gives a 0-d tensor
    assert_eq!(Tensor::ones(&[1, 1]).squeeze().dim(), 0);
}

#[test]
fn flatten() {
    let x = leaf64(&seq(24), &[2, 3, 4]);
    let f = x.flatten(0, -1).unwrap();
    assert_eq!(f.shape(), &[24]);
    assert_eq!(f.grad_fn().unwrap().name(), "ViewBackward0");
    assert_eq!(vals(&f), seq(24));
    assert_eq!(x.flatten(1, 2).unwrap().shape(), &[2, 12]);
    assert_eq!(x.flatten(0, 1).unwrap().shape(), &[6, 4]);
    assert_eq!(x.flatten(1, 1).unwrap().shape(), &[2, 3, 4]);
    weighted(&f).sum().backward().unwrap();
    assert_eq!(grad(&x), (1..=24).map(|i| i as f64).collect::<Vec<_>>());
    let m = msg(x.flatten(2, 1));
    assert!(m.contains("start_dim cannot come after end_dim"), "{m}");
    assert!(x.flatten(0, 3).is_err());
    assert_eq!(Tensor::scalar(3.0).flatten(0, -1).unwrap().shape(), &[1]);
}

#[test]
fn cat_values_and_gradients() {
    let a = leaf64(&[1.0, 2.0, 3.0, 4.0], &[2, 2]);
    let b = leaf64(&[5.0, 6.0], &[1, 2]);
    let c = Tensor::cat(&[&a, &b], 0).unwrap();
    assert_eq!(c.grad_fn().unwrap().name(), "CatBackward0");
    assert_eq!(c.shape(), &[3, 2]);
    assert_eq!(vals(&c), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    weighted(&c).sum().backward().unwrap();
    assert_eq!(grad(&a), vec![1.0, 2.0, 3.0, 4.0]);
    assert_eq!(grad(&b), vec![5.0, 6.0]);

    let a = leaf64(&[1.0, 2.0], &[2, 1]);
    let b = t64(&[3.0, 4.0, 5.0, 6.0], &[2, 2]);
    let c = Tensor::cat(&[&a, &b], -1).unwrap();
    assert_eq!(c.shape(), &[2, 3]);
    assert_eq!(vals(&c), vec![1.0, 3.0, 4.0, 2.0, 5.0, 6.0]);
    weighted(&c).sum().backward().unwrap();
    assert_eq!(grad(&a), vec![1.0, 4.0]);
    // only the input that requires grad gets an edge
    let next = c.grad_fn().unwrap().next_functions();
    assert_eq!(next.len(), 2);
    assert!(next[0].0.is_some() && next[1].0.is_none());

    // three pieces, one of them repeated
    let x = leaf64(&[1.0, 2.0], &[2]);
    let c = Tensor::cat(&[&x, &x, &t64(&[9.0], &[1])], 0).unwrap();
    assert_eq!(vals(&c), vec![1.0, 2.0, 1.0, 2.0, 9.0]);
    weighted(&c).sum().backward().unwrap();
    assert_eq!(grad(&x), vec![1.0 + 3.0, 2.0 + 4.0]);
    // a single tensor
    assert_eq!(vals(&Tensor::cat(&[&x], 0).unwrap()), vec![1.0, 2.0]);
}

#[test]
fn cat_errors() {
    let m = msg(Tensor::cat(&[], 0));
    assert!(m.contains("expected a non-empty list of Tensors"), "{m}");
    let a = Tensor::ones(&[2, 2]);
    let b = Tensor::ones(&[3, 3]);
    let e = Tensor::cat(&[&a, &b], 0).unwrap_err();
    assert!(matches!(e, Error::Op(_)));
    assert!(Tensor::cat(&[&a, &Tensor::ones(&[2])], 0).is_err());
    let m = msg(Tensor::cat(&[&a, &a], 2));
    assert!(m.contains("Dimension out of range"), "{m}");
    assert!(Tensor::cat(&[&a, &Tensor::ones_typed(&[2, 2], DType::I64)], 0).is_err());
}

#[test]
fn cat_promotes_f32_and_f64() {
    // PyTorch: torch.cat([float32, float64]) is float64.
    let a = Tensor::ones(&[1]);
    let b = Tensor::ones_typed(&[1], DType::F64);
    let c = Tensor::cat(&[&a, &b], 0).expect("cat of f32 and f64");
    assert_eq!(c.dtype(), DType::F64);
}

#[test]
fn narrow_values_and_gradients() {
    let x = leaf64(&seq(12), &[3, 4]);
    let n = x.narrow(1, 1, 2).unwrap();
    assert_eq!(n.grad_fn().unwrap().name(), "SliceBackward0");
    assert_eq!(n.shape(), &[3, 2]);
    assert_eq!(vals(&n), vec![1.0, 2.0, 5.0, 6.0, 9.0, 10.0]);
    weighted(&n).sum().backward().unwrap();
    assert_eq!(grad(&x), vec![0.0, 1.0, 2.0, 0.0, 0.0, 3.0, 4.0, 0.0, 0.0, 5.0, 6.0, 0.0]);
    // negative start counts from the end
    let y = t64(&seq(12), &[3, 4]);
    assert_eq!(vals(&y.narrow(0, -1, 1).unwrap()), vec![8.0, 9.0, 10.0, 11.0]);
    assert_eq!(y.narrow(-1, 0, 0).unwrap().shape(), &[3, 0]);
    let m = msg(y.narrow(1, 3, 2));
    assert!(m.contains("start (3) + length (2) exceeds dimension size (4)."), "{m}");
    assert!(y.narrow(2, 0, 1).is_err());
    assert!(y.narrow(0, -4, 1).is_err());
}

#[test]
fn slice_values_and_gradients() {
    let x = leaf64(&seq(6), &[6]);
    let s = x.slice(0, 1, 6, 2).unwrap();
    assert_eq!(s.grad_fn().unwrap().name(), "SliceBackward0");
    assert_eq!(vals(&s), vec![1.0, 3.0, 5.0]);
    weighted(&s).sum().backward().unwrap();
    assert_eq!(grad(&x), vec![0.0, 1.0, 0.0, 2.0, 0.0, 3.0]);
    let y = t64(&seq(6), &[6]);
    // Python-style: negative start, end past the end is clamped
    assert_eq!(vals(&y.slice(0, -2, 6, 1).unwrap()), vec![4.0, 5.0]);
    assert_eq!(vals(&y.slice(0, 1, 100, 2).unwrap()), vec![1.0, 3.0, 5.0]);
    assert_eq!(vals(&y.slice(0, 0, -1, 1).unwrap()), vec![0.0, 1.0, 2.0, 3.0, 4.0]);
    assert_eq!(y.slice(0, 4, 2, 1).unwrap().shape(), &[0]);
    let m = t64(&seq(12), &[3, 4]);
    assert_eq!(vals(&m.slice(-1, 0, 4, 3).unwrap()), vec![0.0, 3.0, 4.0, 7.0, 8.0, 11.0]);
    let e = msg(y.slice(0, 0, 6, 0));
    assert!(e.contains("slice step must be positive"), "{e}");
    assert!(y.slice(0, 0, 6, -1).is_err());
    assert!(y.slice(1, 0, 1, 1).is_err());
}

#[test]
fn get_values_gradients_and_negative_indices() {
    let x = leaf64(&seq(6), &[2, 3]);
    let r = x.get(&[1]).unwrap();
    assert_eq!(r.grad_fn().unwrap().name(), "SelectBackward0");
    assert_eq!(r.shape(), &[3]);
    assert_eq!(vals(&r), vec![3.0, 4.0, 5.0]);
    let e = x.get(&[1, -1]).unwrap();
    assert_eq!(e.dim(), 0);
    assert_eq!(e.item().unwrap(), 5.0);
    assert_eq!(x.get(&[-2, 0]).unwrap().item().unwrap(), 0.0);
    assert_eq!(x.get(&[-1, -3]).unwrap().item().unwrap(), 3.0);
    // the whole tensor with an empty index
    assert_eq!(x.get(&[]).unwrap().shape(), &[2, 3]);
    ((&r * 2.0).sum() + &e * 10.0).backward().unwrap();
    assert_eq!(grad(&x), vec![0.0, 0.0, 0.0, 2.0, 2.0, 12.0]);
}

#[test]
fn get_index_errors() {
    let x = Tensor::zeros(&[2, 3]);
    let m = msg(x.get(&[2]));
    assert!(m.contains("index 2 is out of bounds for dimension 0 with size 2"), "{m}");
    let m = msg(x.get(&[0, -4]));
    assert!(m.contains("index -4 is out of bounds for dimension 1 with size 3"), "{m}");
    let m = msg(x.get(&[0, 0, 0]));
    assert!(m.contains("too many indices for tensor of dimension 2 (got 3)"), "{m}");
    assert!(matches!(x.get(&[-3]).unwrap_err(), Error::Op(_)));
    assert!(Tensor::scalar(1.0).get(&[0]).is_err());
}

#[test]
fn shape_ops_compose_with_gradients() {
    // a chain of views and a reduction, checked against finite differences
    let v: Vec<f64> = (0..24).map(|i| (i as f64 * 0.37).sin()).collect();
    check_fd(
        &|t| {
            let a = t.view(&[4, 6]).unwrap().t().unwrap();
            let b = a.narrow(0, 1, 3).unwrap().unsqueeze(0).unwrap();
            let c = b.expand(&[2, 3, 4]).unwrap().permute(&[2, 1, 0]).unwrap();
            weighted(&(&c * &c))
        },
        &v,
        &[2, 3, 4],
    );
}
