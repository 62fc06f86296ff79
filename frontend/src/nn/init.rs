//! Parameter initialisation (PyTorch's `torch.nn.init`), drawn on the host from the generator
//! [`manual_seed`](crate::manual_seed) seeds. Each function returns a new computed leaf tensor
//! (no history): initial values are data, not part of any traced step.

use crate::error::{Error, Result};
use crate::random::with_rng;
use crate::tensor::Tensor;
use kiln_ir::DType;
use rand::Rng;
use rand_distr::StandardNormal;

/// `(fan_in, fan_out)` of a weight of `shape` (`[out, in, *receptive]`), PyTorch's rule.
pub fn fans(shape: &[usize]) -> Result<(usize, usize)> {
    if shape.len() < 2 {
        return Err(Error::Op(format!(
            "Fan in and fan out can not be computed for tensor with fewer than 2 dimensions (shape {shape:?})"
        )));
    }
    let receptive: usize = shape[2..].iter().product();
    Ok((shape[1] * receptive, shape[0] * receptive))
}

/// Uniform on `[low, high)`.
///
/// ```
/// let t = kiln_frontend::nn::init::uniform(&[1000], -0.5, 0.5, kiln_frontend::DType::F32);
/// assert!(t.to_vec_f64().unwrap().iter().all(|v| (-0.5..0.5).contains(v)));
/// ```
pub fn uniform(shape: &[usize], low: f64, high: f64, dtype: DType) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f64> = with_rng(|r| (0..n).map(|_| low + (high - low) * r.random::<f64>()).collect());
    Tensor::from_vec_typed(v, shape, dtype).expect("length matches")
}

/// Normal with mean `mean` and standard deviation `std`.
pub fn normal(shape: &[usize], mean: f64, std: f64, dtype: DType) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f64> = with_rng(|r| (0..n).map(|_| mean + std * r.sample::<f64, _>(StandardNormal)).collect());
    Tensor::from_vec_typed(v, shape, dtype).expect("length matches")
}

/// The recommended gain of a leaky ReLU with negative slope `a`: `√(2 / (1 + a²))`.
pub fn leaky_relu_gain(a: f64) -> f64 {
    (2.0 / (1.0 + a * a)).sqrt()
}

/// Kaiming (He) uniform on fan-in with leaky-ReLU slope `a`: `U(-bound, bound)` with
/// `bound = gain · √(3 / fan_in)`. `nn.Linear` uses `a = √5`, which gives `1/√fan_in`.
///
/// ```
/// use kiln_frontend::nn::init;
/// let w = init::kaiming_uniform(&[3, 16], 5f64.sqrt(), kiln_frontend::DType::F32).unwrap();
/// assert!(w.to_vec_f64().unwrap().iter().all(|v| v.abs() <= 0.25));
/// ```
pub fn kaiming_uniform(shape: &[usize], a: f64, dtype: DType) -> Result<Tensor> {
    let (fan_in, _) = fans(shape)?;
    let bound = leaky_relu_gain(a) * (3.0 / fan_in.max(1) as f64).sqrt();
    Ok(uniform(shape, -bound, bound, dtype))
}

/// Xavier (Glorot) uniform: `U(-b, b)` with `b = gain · √(6 / (fan_in + fan_out))`.
pub fn xavier_uniform(shape: &[usize], gain: f64, dtype: DType) -> Result<Tensor> {
    let (fan_in, fan_out) = fans(shape)?;
    let bound = gain * (6.0 / (fan_in + fan_out).max(1) as f64).sqrt();
    Ok(uniform(shape, -bound, bound, dtype))
}
