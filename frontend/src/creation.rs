//! Creating tensors: from data, filled, ranges, random.

use crate::error::{Error, Result};
use crate::expr::Expr;
use crate::random::with_rng;
use crate::tensor::Tensor;
use kiln_ir::interp::Value;
use kiln_ir::{DType, Literal, Shape};
use rand::Rng;
use rand_distr::StandardNormal;
use std::sync::Arc;

/// Element types a tensor can be built from.
pub trait Element: Copy + Send + Sync + 'static {
    const DTYPE: DType;
    fn to_f64(self) -> f64;
    /// The data as a value of this element type, without copying (the length was checked).
    #[doc(hidden)]
    fn into_value(data: Vec<Self>, shape: &[usize]) -> Value;
}

macro_rules! element {
    ($t:ty, $dtype:ident, |$x:ident| $to_f64:expr) => {
        impl Element for $t {
            const DTYPE: DType = DType::$dtype;
            fn into_value(data: Vec<Self>, shape: &[usize]) -> Value {
                Value::$dtype(
                    ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(shape), data).expect("length checked"),
                )
            }
            fn to_f64(self) -> f64 {
                let $x = self;
                $to_f64
            }
        }
    };
}

element!(f32, F32, |x| x as f64);
element!(f64, F64, |x| x);
element!(i64, I64, |x| x as f64);
element!(bool, Bool, |x| x as u8 as f64);

/// Options for the `*_opts` constructors (PyTorch's `dtype=` and `requires_grad=` keywords).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TensorOptions {
    pub dtype: DType,
    pub requires_grad: bool,
}

impl Default for TensorOptions {
    fn default() -> Self {
        TensorOptions { dtype: DType::F32, requires_grad: false }
    }
}

impl TensorOptions {
    pub fn dtype(self, dtype: DType) -> Self {
        TensorOptions { dtype, ..self }
    }
    pub fn requires_grad(self, requires_grad: bool) -> Self {
        TensorOptions { requires_grad, ..self }
    }
}

fn check_len(n: usize, shape: &[usize]) -> Result<()> {
    let want: usize = shape.iter().product();
    if n != want {
        return Err(Error::Op(format!("shape '{shape:?}' is invalid for input of size {n}")));
    }
    Ok(())
}

impl Tensor {
    /// A tensor from row-major data. The dtype follows the element type (`f32`, `f64`, `i64`,
    /// `bool`).
    ///
    /// ```
    /// let t = kiln_frontend::Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
    /// assert_eq!(t.shape(), &[2, 2]);
    /// assert!(kiln_frontend::Tensor::from_vec(vec![1.0f32; 3], &[2, 2]).is_err());
    /// ```
    pub fn from_vec<T: Element>(data: Vec<T>, shape: &[usize]) -> Result<Tensor> {
        check_len(data.len(), shape)?;
        // Takes the vector over: no copy, and no first-touch of fresh pages for a large input.
        Ok(Tensor::from_value(T::into_value(data, shape)))
    }

    /// A tensor copied from a slice of row-major data.
    pub fn from_slice<T: Element>(data: &[T], shape: &[usize]) -> Result<Tensor> {
        check_len(data.len(), shape)?;
        let v: Vec<f64> = data.iter().map(|x| x.to_f64()).collect();
        Tensor::from_vec_typed(v, shape, T::DTYPE)
    }

    /// A tensor of `dtype` from f64 data (converted).
    pub fn from_vec_typed(data: Vec<f64>, shape: &[usize], dtype: DType) -> Result<Tensor> {
        check_len(data.len(), shape)?;
        Ok(Tensor::from_value(Value::from_f64(dtype, shape.to_vec(), &data)?))
    }

    /// A tensor built with [`TensorOptions`].
    ///
    /// ```
    /// use kiln_frontend::{Tensor, TensorOptions, DType};
    /// let w = Tensor::from_vec_opts(vec![1.0, 2.0], &[2], TensorOptions::default().dtype(DType::F64).requires_grad(true)).unwrap();
    /// assert!(w.requires_grad() && w.dtype() == DType::F64);
    /// ```
    pub fn from_vec_opts(data: Vec<f64>, shape: &[usize], opts: TensorOptions) -> Result<Tensor> {
        let t = Tensor::from_vec_typed(data, shape, opts.dtype)?;
        t.set_requires_grad(opts.requires_grad)?;
        Ok(t)
    }

    /// A one-element, zero-dimensional f32 tensor.
    pub fn scalar(v: f64) -> Tensor {
        Tensor::full(&[], v)
    }

    /// From an `ndarray` array (f32 or f64).
    pub fn from_ndarray<T: Element>(a: &ndarray::ArrayD<T>) -> Tensor {
        Tensor::from_value(T::into_value(a.iter().copied().collect(), a.shape()))
    }

    /// Filled with `v` (f32).
    pub fn full(shape: &[usize], v: f64) -> Tensor {
        Tensor::full_typed(shape, v, DType::F32)
    }

    /// Filled with `v` of `dtype`. The value is computed, not a lazy constant: tensors made here
    /// are typically parameters or data that live across steps.
    pub fn full_typed(shape: &[usize], v: f64, dtype: DType) -> Tensor {
        let n: usize = shape.iter().product();
        let lit = Literal::splat(dtype, v, n);
        Tensor::from_value(
            Value::from_literal(&lit, &Shape::from(shape.to_vec())).expect("splat matches shape"),
        )
    }

    /// Filled with `v`, with [`TensorOptions`].
    pub fn full_opts(shape: &[usize], v: f64, opts: TensorOptions) -> Result<Tensor> {
        let t = Tensor::full_typed(shape, v, opts.dtype);
        t.set_requires_grad(opts.requires_grad)?;
        Ok(t)
    }

    pub fn zeros(shape: &[usize]) -> Tensor {
        Tensor::full(shape, 0.0)
    }

    pub fn ones(shape: &[usize]) -> Tensor {
        Tensor::full(shape, 1.0)
    }

    pub fn zeros_typed(shape: &[usize], dtype: DType) -> Tensor {
        Tensor::full_typed(shape, 0.0, dtype)
    }

    pub fn ones_typed(shape: &[usize], dtype: DType) -> Tensor {
        Tensor::full_typed(shape, 1.0, dtype)
    }

    /// Zeros with [`TensorOptions`].
    pub fn zeros_opts(shape: &[usize], opts: TensorOptions) -> Result<Tensor> {
        Tensor::full_opts(shape, 0.0, opts)
    }

    /// Ones with [`TensorOptions`].
    pub fn ones_opts(shape: &[usize], opts: TensorOptions) -> Result<Tensor> {
        Tensor::full_opts(shape, 1.0, opts)
    }

    /// Zeros with this tensor's shape and dtype (no history). Lazy: a broadcast constant that
    /// the compiler folds into whatever uses it (e.g. a backward seed) until it is computed.
    pub fn zeros_like(&self) -> Tensor {
        self.filled_like(0.0)
    }

    /// Ones with this tensor's shape and dtype (no history); lazy like [`Tensor::zeros_like`].
    pub fn ones_like(&self) -> Tensor {
        self.filled_like(1.0)
    }

    /// `v` in this tensor's dtype and shape, as a lazy constant (a broadcast scalar).
    pub(crate) fn filled_like(&self, v: f64) -> Tensor {
        Tensor::from_expr(self.filled_expr(v))
    }

    /// The value of [`Tensor::filled_like`] alone (an in-place fill needs no tensor for it).
    pub(crate) fn filled_expr(&self, v: f64) -> Arc<Expr> {
        crate::expr::filled(self.dtype(), v, self.shape())
    }

    /// `[start, start + step, ...)` up to `end` (exclusive), f32.
    ///
    /// ```
    /// let t = kiln_frontend::Tensor::arange(0.0, 3.0, 1.0).unwrap();
    /// assert_eq!(t.to_vec_f64().unwrap(), vec![0.0, 1.0, 2.0]);
    /// ```
    pub fn arange(start: f64, end: f64, step: f64) -> Result<Tensor> {
        if step == 0.0 || !((end - start) / step).is_finite() {
            return Err(Error::Op(format!(
                "arange: step {step} cannot produce a range from {start} to {end}"
            )));
        }
        if (end - start) * step < 0.0 {
            return Err(Error::Op("upper bound and larger bound inconsistent with step sign".into()));
        }
        let n = ((end - start) / step).ceil().max(0.0) as usize;
        let v: Vec<f64> = (0..n).map(|i| start + i as f64 * step).collect();
        Tensor::from_vec_typed(v, &[n], DType::F32)
    }

    /// `steps` evenly spaced values from `start` to `end` inclusive, f32.
    pub fn linspace(start: f64, end: f64, steps: usize) -> Tensor {
        let v: Vec<f64> = match steps {
            0 => vec![],
            1 => vec![start],
            _ => (0..steps).map(|i| start + (end - start) * i as f64 / (steps - 1) as f64).collect(),
        };
        Tensor::from_vec_typed(v, &[steps], DType::F32).expect("length matches")
    }

    /// The `n × n` identity matrix, f32.
    pub fn eye(n: usize) -> Tensor {
        let v: Vec<f64> = (0..n * n).map(|i| if i / n == i % n { 1.0 } else { 0.0 }).collect();
        Tensor::from_vec_typed(v, &[n, n], DType::F32).expect("length matches")
    }

    /// Uniform on `[0, 1)`, f32, from the generator [`crate::manual_seed`] seeds.
    pub fn rand(shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f64> = with_rng(|r| (0..n).map(|_| r.random::<f32>() as f64).collect());
        Tensor::from_vec_typed(v, shape, DType::F32).expect("length matches")
    }

    /// Standard normal, f32, from the generator [`crate::manual_seed`] seeds.
    pub fn randn(shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f64> = with_rng(|r| (0..n).map(|_| r.sample::<f32, _>(StandardNormal) as f64).collect());
        Tensor::from_vec_typed(v, shape, DType::F32).expect("length matches")
    }

    /// Uniform on `[0, 1)` with [`TensorOptions`].
    pub fn rand_opts(shape: &[usize], opts: TensorOptions) -> Result<Tensor> {
        let t = Tensor::rand(shape);
        let t = if opts.dtype == DType::F32 { t } else { Tensor::from_expr(t.to_dtype(opts.dtype).expr()) };
        t.set_requires_grad(opts.requires_grad)?;
        Ok(t)
    }

    /// Standard normal with [`TensorOptions`].
    pub fn randn_opts(shape: &[usize], opts: TensorOptions) -> Result<Tensor> {
        let t = Tensor::randn(shape);
        let t = if opts.dtype == DType::F32 { t } else { Tensor::from_expr(t.to_dtype(opts.dtype).expr()) };
        t.set_requires_grad(opts.requires_grad)?;
        Ok(t)
    }
}
