//! Display/Debug in PyTorch's format, `trace`, and the backend selection.

mod common;
use common::*;
use kiln_frontend::{backend_name, set_backend, trace, DType, Error, Tensor};

fn f32s(v: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_slice(v, shape).unwrap()
}

#[test]
fn integer_valued_floats() {
    assert_eq!(f32s(&[1.0, 2.0, 3.0], &[3]).to_string(), "tensor([1., 2., 3.])");
    assert_eq!(f32s(&[-1.0, 10.0], &[2]).to_string(), "tensor([-1., 10.])");
    assert_eq!(Tensor::zeros(&[3]).to_string(), "tensor([0., 0., 0.])");
    assert_eq!(f32s(&[100.0, -3.0, 0.0], &[3]).to_string(), "tensor([100.,  -3.,   0.])");
}

#[test]
fn four_decimals() {
    assert_eq!(f32s(&[0.5, 1.25], &[2]).to_string(), "tensor([0.5000, 1.2500])");
    assert_eq!(f32s(&[0.1, 0.2, 0.3], &[3]).to_string(), "tensor([0.1000, 0.2000, 0.3000])");
    assert_eq!(f32s(&[1.0 / 3.0, 2.0 / 3.0], &[2]).to_string(), "tensor([0.3333, 0.6667])");
    assert_eq!(f32s(&[12.5, 0.5], &[2]).to_string(), "tensor([12.5000,  0.5000])");
}

#[test]
fn negative_numbers_are_aligned() {
    assert_eq!(f32s(&[0.7311, -1.5], &[2]).to_string(), "tensor([ 0.7311, -1.5000])");
    assert_eq!(f32s(&[-0.25, 0.5, -10.125], &[3]).to_string(), "tensor([ -0.2500,   0.5000, -10.1250])");
}

#[test]
fn scientific_notation() {
    assert_eq!(
        f32s(&[51.2, 512.0, 0.0512], &[3]).to_string(),
        "tensor([5.1200e+01, 5.1200e+02, 5.1200e-02])"
    );
    assert_eq!(f32s(&[1.0, 1.0e5], &[2]).to_string(), "tensor([1.0000e+00, 1.0000e+05])");
    assert_eq!(f32s(&[1.0e-5, 1.0], &[2]).to_string(), "tensor([1.0000e-05, 1.0000e+00])");
    assert_eq!(f32s(&[1.0e9], &[1]).to_string(), "tensor([1.0000e+09])");
    assert_eq!(f32s(&[-1.0e-5, 0.5], &[2]).to_string(), "tensor([-1.0000e-05,  5.0000e-01])");
}

#[test]
fn integers_and_bools() {
    let i = Tensor::from_vec(vec![1i64, -20], &[2]).unwrap();
    assert_eq!(i.to_string(), "tensor([  1, -20])");
    let m = Tensor::from_vec(vec![1i64, 2, 30, -4], &[2, 2]).unwrap();
    assert_eq!(m.to_string(), "tensor([[ 1,  2],\n        [30, -4]])");
    assert_eq!(Tensor::from_vec(vec![7i64], &[]).unwrap().to_string(), "tensor(7)");
    let b = Tensor::from_vec(vec![true, false], &[2]).unwrap();
    assert_eq!(b.to_string(), "tensor([ True, False])");
    assert_eq!(Tensor::from_vec(vec![true], &[]).unwrap().to_string(), "tensor(True)");
}

#[test]
fn dtype_suffix_for_float64() {
    let d = Tensor::from_vec(vec![1.5f64, 2.0], &[2]).unwrap();
    assert_eq!(d.to_string(), "tensor([1.5000, 2.0000], dtype=kiln.float64)");
    assert_eq!(
        Tensor::from_vec(vec![1.5f64], &[]).unwrap().to_string(),
        "tensor(1.5000, dtype=kiln.float64)"
    );
    assert_eq!(Tensor::ones_typed(&[2], DType::F64).to_string(), "tensor([1., 1.], dtype=kiln.float64)");
}

#[test]
fn autograd_suffixes() {
    let x = Tensor::ones(&[2]).requires_grad_(true);
    assert_eq!(x.to_string(), "tensor([1., 1.], requires_grad=True)");
    let y = &x * 2.0;
    assert_eq!(y.to_string(), "tensor([2., 2.], grad_fn=<MulBackward0>)");
    assert_eq!(y.sum().to_string(), "tensor(4., grad_fn=<SumBackward0>)");
    let d = Tensor::ones_typed(&[2], DType::F64).requires_grad_(true);
    assert_eq!(d.to_string(), "tensor([1., 1.], dtype=kiln.float64, requires_grad=True)");
    assert_eq!(
        (&d * 0.5).to_string(),
        "tensor([0.5000, 0.5000], dtype=kiln.float64, grad_fn=<MulBackward0>)"
    );
    let m = Tensor::ones(&[2, 2]).requires_grad_(true);
    assert_eq!(m.to_string(), "tensor([[1., 1.],\n        [1., 1.]], requires_grad=True)");
}

#[test]
fn zero_dim_scalars() {
    assert_eq!(Tensor::scalar(3.0).to_string(), "tensor(3.)");
    assert_eq!(Tensor::scalar(2.5).to_string(), "tensor(2.5000)");
    assert_eq!(Tensor::scalar(-1.5).to_string(), "tensor(-1.5000)");
    assert_eq!(Tensor::scalar(0.0).to_string(), "tensor(0.)");
    assert_eq!(Tensor::scalar(1.0e-7).to_string(), "tensor(1.0000e-07)");
}

#[test]
fn empty_tensors() {
    assert_eq!(Tensor::zeros(&[0]).to_string(), "tensor([])");
    assert_eq!(Tensor::zeros(&[2, 0]).to_string(), "tensor([], size=(2, 0))");
    assert_eq!(Tensor::zeros_typed(&[0], DType::F64).to_string(), "tensor([], dtype=kiln.float64)");
}

#[test]
fn empty_integer_tensors_show_their_dtype() {
    // PyTorch: an empty tensor has no elements to infer the dtype from, so any dtype other than
    // the default float32 is printed: torch.zeros(0, dtype=torch.int64) -> tensor([], dtype=torch.int64)
    assert_eq!(Tensor::zeros_typed(&[0], DType::I64).to_string(), "tensor([], dtype=kiln.int64)");
    assert_eq!(Tensor::zeros_typed(&[0], DType::Bool).to_string(), "tensor([], dtype=kiln.bool)");
    assert_eq!(
        Tensor::zeros_typed(&[2, 0], DType::I64).to_string(),
        "tensor([], size=(2, 0), dtype=kiln.int64)"
    );
}

#[test]
fn non_finite_values() {
    let t = f32s(&[f32::NAN, 1.0, f32::INFINITY], &[3]);
    assert_eq!(t.to_string(), "tensor([nan, 1., inf])");
    let t = f32s(&[f32::NEG_INFINITY, 0.5], &[2]);
    assert_eq!(t.to_string(), "tensor([  -inf, 0.5000])");
}

#[test]
fn matrices_and_higher_rank() {
    let m = f32s(&[1.0, 2.0, 3.0, 4.0], &[2, 2]);
    assert_eq!(m.to_string(), "tensor([[1., 2.],\n        [3., 4.]])");
    let c = f32s(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], &[2, 2, 2]);
    assert_eq!(
        c.to_string(),
        "tensor([[[1., 2.],\n         [3., 4.]],\n\n        [[5., 6.],\n         [7., 8.]]])"
    );
    let r = f32s(&[0.5, -0.25, 1.0, 2.0], &[2, 2]);
    assert_eq!(r.to_string(), "tensor([[ 0.5000, -0.2500],\n        [ 1.0000,  2.0000]])");
}

#[test]
fn long_rows_wrap_at_80_columns() {
    let t = Tensor::arange(0.0, 30.0, 1.0).unwrap();
    assert_eq!(
        t.to_string(),
        "tensor([ 0.,  1.,  2.,  3.,  4.,  5.,  6.,  7.,  8.,  9., 10., 11., 12., 13.,\n        14., 15., 16., 17., 18., 19., 20., 21., 22., 23., 24., 25., 26., 27.,\n        28., 29.])"
    );
}

#[test]
fn large_tensors_are_summarised() {
    let t = Tensor::arange(1000.0, 2001.0, 1.0).unwrap();
    assert_eq!(t.to_string(), "tensor([1000., 1001., 1002.,  ..., 1998., 1999., 2000.])");
    // exactly 1000 elements are printed in full
    let full = Tensor::ones(&[1000]).to_string();
    assert!(!full.contains("..."));
    assert_eq!(full.matches("1.").count(), 1000);
    let m = Tensor::zeros(&[100, 100]).to_string();
    assert!(
        m.starts_with("tensor([[0., 0., 0.,  ..., 0., 0., 0.],\n        [0., 0., 0.,  ..., 0., 0., 0.],"),
        "{m}"
    );
    assert!(m.contains("        ...,\n"), "{m}");
    assert!(m.ends_with("[0., 0., 0.,  ..., 0., 0., 0.]])"), "{m}");
    assert_eq!(m.lines().count(), 7);
    // the suffix still appears
    let g = Tensor::ones(&[2000]).requires_grad_(true);
    assert!(g.to_string().ends_with(", requires_grad=True)"));
}

#[test]
fn debug_is_display() {
    let t = f32s(&[0.5, 1.0], &[2]);
    assert_eq!(format!("{t:?}"), t.to_string());
    assert_eq!(format!("{t}"), "tensor([0.5000, 1.0000])");
}

#[test]
fn printing_a_pending_computation_computes_it() {
    let x = Tensor::ones(&[2]).requires_grad_(true);
    let y = (&x + 1.0).exp().log();
    assert_eq!(y.to_string(), "tensor([2., 2.], grad_fn=<LogBackward0>)");
}

#[test]
fn trace_returns_the_recorded_graph() {
    let x = Tensor::ones(&[2, 3]);
    let w = Tensor::ones(&[3, 2]).requires_grad_(true);
    let g =
        trace(|| vec![(&x.matmul(&w).unwrap() * 2.0).exp().sum(), x.relu().softmax(-1).unwrap()]).unwrap();
    let text = g.to_text();
    for op in ["Input(", "MatMul(", "Mul(", "Exp(", "ReduceSum(", "Relu(", "ReduceMax(", "Div(", "return "] {
        assert!(text.contains(op), "{op} missing from\n{text}");
    }
    assert!(text.contains("f32[2,3]") && text.contains("f32[3,2]"), "{text}");
    // the graph is the forward only: no backward ops appear
    assert!(!text.contains("Transpose"), "{text}");
    // a tensor computed before the trace enters as an input
    let y = (&x * 3.0).exp();
    y.to_vec_f64().unwrap();
    let g = trace(|| vec![y.log()]).unwrap();
    let text = g.to_text();
    assert!(text.contains("Log(") && !text.contains("Exp("), "{text}");
    // nothing was computed: a fresh trace of the same code still sees the ops
    let z = &x + 1.0;
    let _ = trace(|| vec![z.clone()]).unwrap();
    assert!(trace(|| vec![z.clone()]).unwrap().to_text().contains("Add("));
}

#[test]
fn backend_selection() {
    set_backend("interp").unwrap();
    assert_eq!(backend_name().unwrap(), "interp");
    let e = set_backend("no-such-backend").unwrap_err();
    assert!(matches!(e, Error::Unsupported(_)), "{e:?}");
    assert!(e.to_string().contains("no-such-backend"), "{e}");
    // the failed call left the selection alone
    assert_eq!(backend_name().unwrap(), "interp");
    assert_eq!(vals(&(Tensor::ones(&[2]) * 2.0)), vec![2.0, 2.0]);
}
