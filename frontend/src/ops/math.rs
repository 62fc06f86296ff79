//! Elementwise math, activations, `where`, dtype conversion and matrix products.

use crate::error::{Error, Result};
use crate::ops::arith::promote;
use crate::ops::record::{apply, apply_composite};
use crate::tensor::Tensor;
use kiln_ir::{CompareOp, DType, Op, UnaryOp};

macro_rules! unary_methods {
    ($($(#[$doc:meta])* $method:ident => $op:ident, $name:literal;)*) => {
        impl Tensor {
            $(
                $(#[$doc])*
                pub fn $method(&self) -> Tensor {
                    // Float-only math on integers computes in f32, as PyTorch's type promotion does.
                    let x = if UnaryOp::$op.accepts_int() || self.dtype().is_float() {
                        self.clone()
                    } else {
                        self.to_dtype(DType::F32)
                    };
                    apply($name, Op::Unary(UnaryOp::$op), &[&x]).unwrap_or_else(|e| panic!("{e}"))
                }
            )*
        }
    };
}

unary_methods! {
    /// `|x|`; its gradient at 0 is 0.
    abs => Abs, "AbsBackward0";
    /// `e^x`.
    exp => Exp, "ExpBackward0";
    /// Natural logarithm.
    log => Log, "LogBackward0";
    /// Square root; its gradient at 0 is `inf`, as in PyTorch.
    sqrt => Sqrt, "SqrtBackward0";
    /// `1 / x`.
    reciprocal => Reciprocal, "ReciprocalBackward0";
    tanh => Tanh, "TanhBackward0";
    /// `1 / (1 + e^-x)`.
    sigmoid => Sigmoid, "SigmoidBackward0";
    /// `max(x, 0)`; its gradient at 0 is 0.
    relu => Relu, "ReluBackward0";
    /// The error function.
    erf => Erf, "ErfBackward0";
    sin => Sin, "SinBackward0";
    cos => Cos, "CosBackward0";
    /// -1, 0 or 1; its gradient is zero everywhere.
    sign => Sign, "SignBackward0";
}

impl Tensor {
    /// Exact GELU: `x · Φ(x) = 0.5 · x · (1 + erf(x / √2))`.
    pub fn gelu(&self) -> Tensor {
        let x = if self.dtype().is_float() { self.clone() } else { self.to_dtype(DType::F32) };
        apply_composite("GeluBackward0", &[&x], |g, x| g.gelu(x[0])).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Clamps into `[min, max]` (either bound optional). The gradient passes where
    /// `min <= x <= max`, as in PyTorch.
    pub fn clamp(&self, min: Option<f64>, max: Option<f64>) -> Tensor {
        apply_composite("ClampBackward1", &[self], |g, x| {
            let mut y = x[0];
            if let Some(lo) = min {
                let c = g.scalar_like(y, lo);
                let below = g.compare(CompareOp::Less, y, c)?;
                y = g.where_(below, c, y)?;
            }
            if let Some(hi) = max {
                let c = g.scalar_like(y, hi);
                let above = g.compare(CompareOp::Greater, y, c)?;
                y = g.where_(above, c, y)?;
            }
            Ok(y)
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// `x` where `cond` is true, else `y` (all broadcast).
    pub fn where_(cond: &Tensor, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        if cond.dtype() != DType::Bool {
            return Err(Error::Op(format!(
                "where expected condition to be a boolean tensor, but got a tensor with dtype {}",
                cond.dtype()
            )));
        }
        let (x, y) = promote("where", x, y)?;
        apply("WhereBackward0", Op::Where, &[cond, &x, &y])
    }

    /// Softmax along `dim`.
    pub fn softmax(&self, dim: i64) -> Result<Tensor> {
        let m = self.row_max(dim)?;
        apply_composite("SoftmaxBackward0", &[self, &m], |g, x| g.softmax_shifted(x[0], x[1], dim))
    }

    /// Log-softmax along `dim` (stable).
    pub fn log_softmax(&self, dim: i64) -> Result<Tensor> {
        let m = self.row_max(dim)?;
        apply_composite("LogSoftmaxBackward0", &[self, &m], |g, x| g.log_softmax_shifted(x[0], x[1], dim))
    }

    /// The stabilising shift of (log-)softmax: the max along `dim`, without gradient. The result
    /// does not depend on the shift, so its derivative is exactly zero; leaving it out of the
    /// reverse graph gives PyTorch's formulas (`g − softmax·Σg` for log-softmax) instead of a
    /// ties-sharing max gradient that cancels to zero only up to rounding.
    fn row_max(&self, dim: i64) -> Result<Tensor> {
        self.axis(dim)?;
        self.detach().amax(&[dim], true)
    }

    /// A copy converted to `dtype` (recorded: gradients flow back between float dtypes).
    pub fn to_dtype(&self, dtype: DType) -> Tensor {
        if dtype == self.dtype() {
            return self.clone();
        }
        apply("ToCopyBackward0", Op::Cast { to: dtype }, &[self]).expect("every dtype casts to every dtype")
    }

    /// PyTorch's `clone()`: a recorded copy with its own storage (gradients flow through it).
    pub fn deep_clone(&self) -> Tensor {
        apply("CloneBackward0", Op::Cast { to: self.dtype() }, &[self]).expect("a cast to the same dtype")
    }

    /// Matrix product with numpy semantics (1-D operands promoted, batch dims broadcast).
    ///
    /// ```
    /// use kiln_frontend::Tensor;
    /// let a = Tensor::ones(&[2, 3]);
    /// assert_eq!(a.matmul(&Tensor::ones(&[3, 4])).unwrap().shape(), &[2, 4]);
    /// let e = a.matmul(&Tensor::ones(&[2, 4])).unwrap_err().to_string();
    /// assert!(e.contains("[2, 3]") && e.contains("[2, 4]"), "{e}");
    /// ```
    pub fn matmul(&self, other: &Tensor) -> Result<Tensor> {
        let (a, b) = promote("matmul", self, other)?;
        let name = match (a.dim(), b.dim()) {
            (1, 1) => "DotBackward0",
            (2, 1) => "MvBackward0",
            (2, 2) => "MmBackward0",
            _ => "BmmBackward0",
        };
        apply(name, Op::MatMul, &[&a, &b])
    }

    /// 2-D matrix product.
    pub fn mm(&self, other: &Tensor) -> Result<Tensor> {
        if self.dim() != 2 || other.dim() != 2 {
            return Err(Error::Op(format!(
                "mm: both arguments must be 2-D matrices, got shapes {:?} and {:?}",
                self.shape(),
                other.shape()
            )));
        }
        self.matmul(other)
    }
}
