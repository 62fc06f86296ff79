//! `nn` modules: initialisation, parameter naming, modes, freezing, and each layer's values and
//! gradients against hand-computed ones.

use kiln_frontend::nn::{
    init, Dropout, Embedding, LayerNorm, Linear, Module, ReLU, Sequential, Sigmoid, Tanh, GELU,
};
use kiln_frontend::{DType, Tensor};
use std::sync::Mutex;

/// Tests that seed the global generator hold this, so their draws do not interleave.
static RNG: Mutex<()> = Mutex::new(());

fn close(a: &[f64], b: &[f64], tol: f64) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol)
}

#[test]
fn linear_init_follows_pytorch_bounds_and_spread() {
    let _r = RNG.lock().unwrap();
    kiln_frontend::manual_seed(3);
    let l = Linear::new(100, 200);
    let bound = 1.0 / 100f64.sqrt();
    let w = l.weight.to_vec_f64().unwrap();
    let b = l.bias.as_ref().unwrap().to_vec_f64().unwrap();
    assert!(w.iter().chain(&b).all(|v| v.abs() <= bound));
    // U(-b, b) has variance b²/3: 20000 draws estimate it within a few percent.
    let var = w.iter().map(|v| v * v).sum::<f64>() / w.len() as f64;
    assert!((var / (bound * bound / 3.0) - 1.0).abs() < 0.05, "variance {var}");
    assert!(w.iter().sum::<f64>().abs() / (w.len() as f64) < 0.01 * bound * 10.0);
    assert!(l.weight.is_leaf() && l.weight.requires_grad() && l.weight.dtype() == DType::F32);
    assert_eq!((l.in_features(), l.out_features()), (100, 200));
    let no_bias = Linear::with_options(3, 2, false, DType::F64);
    assert!(no_bias.bias.is_none() && no_bias.weight.dtype() == DType::F64);
    assert_eq!(no_bias.named_parameters().len(), 1);
}

#[test]
fn init_functions() {
    let _r = RNG.lock().unwrap();
    kiln_frontend::manual_seed(1);
    assert_eq!(init::fans(&[8, 4, 3, 3]).unwrap(), (36, 72));
    assert!(init::fans(&[5]).unwrap_err().to_string().contains("fewer than 2 dimensions"));
    let x = init::xavier_uniform(&[10, 30], 1.0, DType::F32).unwrap();
    let b = (6.0f64 / 40.0).sqrt();
    assert!(x.to_vec_f64().unwrap().iter().all(|v| v.abs() <= b));
    let n = init::normal(&[4000], 2.0, 0.5, DType::F64).to_vec_f64().unwrap();
    let mean = n.iter().sum::<f64>() / 4000.0;
    assert!((mean - 2.0).abs() < 0.05, "mean {mean}");
    assert!((init::leaky_relu_gain(5f64.sqrt()) - (1.0f64 / 3.0).sqrt()).abs() < 1e-15);
}

#[test]
fn linear_forward_and_backward() {
    let w = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[2, 2]).unwrap().requires_grad_(true);
    let l = Linear {
        weight: w.clone(),
        bias: Some(Tensor::from_vec(vec![0.5f64, -1.0], &[2]).unwrap().requires_grad_(true)),
    };
    let x = Tensor::from_vec(vec![1.0f64, 1.0, 2.0, 0.0], &[2, 2]).unwrap();
    let y = l.forward(&x).unwrap();
    assert_eq!(y.to_vec_f64().unwrap(), vec![3.5, 6.0, 2.5, 5.0]);
    y.sum().backward().unwrap();
    // d Σy / dW[o, i] = Σ_n x[n, i]; d Σy / db = N.
    assert_eq!(w.grad().unwrap().to_vec_f64().unwrap(), vec![3.0, 1.0, 3.0, 1.0]);
    assert_eq!(l.bias.as_ref().unwrap().grad().unwrap().to_vec_f64().unwrap(), vec![2.0, 2.0]);
    let e = l.forward(&Tensor::ones(&[2, 3]).to_dtype(DType::F64)).unwrap_err().to_string();
    assert!(e.contains("cannot be multiplied"), "{e}");
}

#[test]
fn sequential_names_modes_freezing_and_zero_grad() {
    let mut m = Sequential::new()
        .append(Linear::new(3, 4))
        .append(Dropout::new(0.5).unwrap())
        .append(Sequential::new().append(Linear::new(4, 4)).append(GELU))
        .append(LayerNorm::new(&[4]));
    let names: Vec<String> = m.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["0.weight", "0.bias", "2.0.weight", "2.0.bias", "3.weight", "3.bias"]);
    assert_eq!(m.num_parameters(), 12 + 4 + 16 + 4 + 4 + 4);
    assert!(m.is_training());
    m.eval();
    assert!(!m.is_training());
    // In eval mode dropout is the identity: two forwards agree.
    let x = Tensor::randn(&[5, 3]);
    let a = m.forward(&x).unwrap().to_vec_f64().unwrap();
    assert_eq!(a, m.forward(&x).unwrap().to_vec_f64().unwrap());
    m.train();
    assert!(m.is_training());

    m.forward(&x).unwrap().sum().backward().unwrap();
    assert!(m.parameters().iter().all(|p| p.grad().is_some()));
    m.zero_grad();
    assert!(m.parameters().iter().all(|p| p.grad().is_none()));
    m.requires_grad_(false);
    assert!(!m.forward(&x).unwrap().requires_grad(), "a frozen model records nothing");
    m.requires_grad_(true);
    assert!(m.forward(&x).unwrap().requires_grad());
}

#[test]
fn activations_match_the_tensor_methods() {
    let x = Tensor::from_vec(vec![-2.0f64, -0.5, 0.0, 0.5, 3.0], &[5]).unwrap();
    let v = x.to_vec_f64().unwrap();
    let check = |m: &dyn Module, f: fn(f64) -> f64| {
        let got = m.forward(&x).unwrap().to_vec_f64().unwrap();
        let want: Vec<f64> = v.iter().map(|&t| f(t)).collect();
        assert!(close(&got, &want, 1e-12), "{got:?} vs {want:?}");
    };
    check(&ReLU, |t| t.max(0.0));
    check(&Tanh, f64::tanh);
    check(&Sigmoid, |t| 1.0 / (1.0 + (-t).exp()));
    // Exact GELU: x·Φ(x); Φ(0.5) = 0.6914624612740131, Φ(3) = 0.9986501019683699.
    let g = GELU.forward(&x).unwrap().to_vec_f64().unwrap();
    assert!((g[3] - 0.5 * 0.6914624612740131).abs() < 1e-9 && (g[4] - 3.0 * 0.9986501019683699).abs() < 1e-9);
}

#[test]
fn dropout_scales_survivors_and_passes_their_gradient() {
    let _r = RNG.lock().unwrap();
    kiln_frontend::manual_seed(5);
    let d = Dropout::new(0.25).unwrap();
    let x = Tensor::ones(&[10_000]).requires_grad_(true);
    let y = d.forward(&x).unwrap();
    assert_eq!(y.grad_fn().unwrap().name(), "NativeDropoutBackward0");
    let v = y.to_vec_f64().unwrap();
    let kept = v.iter().filter(|&&t| t != 0.0).count() as f64 / 10_000.0;
    assert!((kept - 0.75).abs() < 0.02, "kept {kept}");
    assert!(v.iter().all(|&t| t == 0.0 || (t - 1.0 / 0.75).abs() < 1e-6));
    y.sum().backward().unwrap();
    // The gradient is the mask: the scale where kept, 0 where dropped.
    let g = x.grad().unwrap().to_vec_f64().unwrap();
    assert_eq!(g, v);
    let all = Dropout::new(1.0).unwrap().forward(&Tensor::ones(&[4])).unwrap();
    assert_eq!(all.to_vec_f64().unwrap(), vec![0.0; 4]);
    assert!(Dropout::new(-0.1).unwrap_err().to_string().contains("between 0 and 1, but got -0.1"));
}

#[test]
fn layer_norm_matches_the_formula_and_trains_its_affine() {
    let ln = LayerNorm::with_options(&[3], 1e-5, true, DType::F64);
    let x = Tensor::from_vec(vec![1.0f64, 2.0, 4.0, -1.0, 0.0, 1.0], &[2, 3]).unwrap();
    let y = ln.forward(&x).unwrap();
    let mut want = Vec::new();
    for row in [[1.0f64, 2.0, 4.0], [-1.0, 0.0, 1.0]] {
        let mu = row.iter().sum::<f64>() / 3.0;
        let var = row.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / 3.0;
        want.extend(row.iter().map(|v| (v - mu) / (var + 1e-5).sqrt()));
    }
    assert!(close(&y.to_vec_f64().unwrap(), &want, 1e-12));
    y.mul(&Tensor::from_vec(vec![1.0f64, 0.0, 0.0, 0.0, 0.0, 2.0], &[2, 3]).unwrap())
        .unwrap()
        .sum()
        .backward()
        .unwrap();
    let (w, b) = (ln.weight.as_ref().unwrap(), ln.bias.as_ref().unwrap());
    // d/dweight[j] = Σ_rows upstream·x̂; d/dbias[j] = Σ_rows upstream.
    assert!(close(&w.grad().unwrap().to_vec_f64().unwrap(), &[want[0], 0.0, 2.0 * want[5]], 1e-12));
    assert_eq!(b.grad().unwrap().to_vec_f64().unwrap(), vec![1.0, 0.0, 2.0]);
    assert!(LayerNorm::with_options(&[3], 1e-5, false, DType::F32).named_parameters().is_empty());
    assert!(ln.forward(&Tensor::ones(&[2, 4])).unwrap_err().to_string().contains("normalized_shape [3]"));
}

#[test]
fn embedding_looks_up_rows_and_scatters_gradients() {
    let table = Tensor::from_vec(vec![0.0f32, 1.0, 10.0, 11.0, 20.0, 21.0], &[3, 2]).unwrap();
    let e = Embedding::from_weight(table).unwrap();
    assert_eq!((e.num_embeddings(), e.embedding_dim()), (3, 2));
    let idx = Tensor::from_vec(vec![2i64, 0, 2], &[3]).unwrap();
    let y = e.forward(&idx).unwrap();
    assert_eq!(y.to_vec_f64().unwrap(), vec![20.0, 21.0, 0.0, 1.0, 20.0, 21.0]);
    assert_eq!(y.grad_fn().unwrap().name(), "EmbeddingBackward0");
    y.sum().backward().unwrap();
    // Row 2 was used twice, row 1 never.
    assert_eq!(e.weight.grad().unwrap().to_vec_f64().unwrap(), vec![1.0, 1.0, 0.0, 0.0, 2.0, 2.0]);
    let err = e.forward(&Tensor::from_vec(vec![0i64, -1], &[2]).unwrap()).unwrap_err().to_string();
    assert!(err.contains("index -1 is out of range") && err.contains("position 1"), "{err}");
    let err = e.forward(&Tensor::ones(&[2])).unwrap_err().to_string();
    assert!(err.contains("expected indices of dtype i64, got f32"), "{err}");
    let _r = RNG.lock().unwrap();
    let fresh = Embedding::new(50, 4);
    assert_eq!(fresh.named_parameters()[0].0, "weight");
    assert_eq!(
        fresh.forward(&Tensor::from_vec(vec![49i64; 6], &[2, 3]).unwrap()).unwrap().shape(),
        &[2, 3, 4]
    );
}
