//! Elementwise arithmetic and comparisons, as methods (returning `Result`) and as operators
//! (`+ - * /` on tensors and `f64` scalars, both sides; they panic with the same message).

use crate::autograd::mode::is_grad_enabled;
use crate::error::{Error, Result};
use crate::expr::Expr;
use crate::ops::record::apply;
use crate::tensor::Tensor;
use kiln_ir::{BinaryOp, CompareOp, DType, Literal, Op, Shape, UnaryOp};
use std::ops;

/// Brings two operands to one dtype: mixed float widths promote to f64 (PyTorch's rule);
/// anything else must already agree.
pub(crate) fn promote(op: &str, a: &Tensor, b: &Tensor) -> Result<(Tensor, Tensor)> {
    match (a.dtype(), b.dtype()) {
        (x, y) if x == y => Ok((a.clone(), b.clone())),
        (DType::F32, DType::F64) => Ok((a.to_dtype(DType::F64), b.clone())),
        (DType::F64, DType::F32) => Ok((a.clone(), b.to_dtype(DType::F64))),
        (x, y) => Err(Error::Op(format!(
            "{op}: expected both operands to have the same dtype, but got {x} and {y}"
        ))),
    }
}

fn binary(name: &'static str, op: BinaryOp, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (a, b) = promote(op.name(), a, b)?;
    apply(name, Op::Binary(op), &[&a, &b])
}

fn compare(op: CompareOp, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (a, b) = promote(op.name(), a, b)?;
    apply("CompareBackward0", Op::Compare(op), &[&a, &b])
}

fn not(t: &Tensor) -> Result<Tensor> {
    let f = Tensor::constant(Literal::Bool(vec![false]), Shape::scalar());
    let tr = Tensor::constant(Literal::Bool(vec![true]), Shape::scalar());
    apply("WhereBackward0", Op::Where, &[t, &f, &tr])
}

impl Tensor {
    /// `self + other` with broadcasting.
    ///
    /// ```
    /// use kiln_frontend::Tensor;
    /// let a = Tensor::ones(&[2, 3]);
    /// let e = a.add(&Tensor::ones(&[4])).unwrap_err();
    /// assert!(e.to_string().contains("[2, 3]") && e.to_string().contains("[4]"));
    /// ```
    pub fn add(&self, other: &Tensor) -> Result<Tensor> {
        binary("AddBackward0", BinaryOp::Add, self, other)
    }

    pub fn sub(&self, other: &Tensor) -> Result<Tensor> {
        binary("SubBackward0", BinaryOp::Sub, self, other)
    }

    pub fn mul(&self, other: &Tensor) -> Result<Tensor> {
        binary("MulBackward0", BinaryOp::Mul, self, other)
    }

    pub fn div(&self, other: &Tensor) -> Result<Tensor> {
        binary("DivBackward0", BinaryOp::Div, self, other)
    }

    /// `self ** exponent` for a scalar exponent.
    pub fn pow(&self, exponent: f64) -> Tensor {
        let e = self.scalar_like(exponent);
        apply("PowBackward0", Op::Binary(BinaryOp::Pow), &[self, &e]).expect("a scalar exponent broadcasts")
    }

    /// `self ** exponent` elementwise.
    pub fn pow_tensor(&self, exponent: &Tensor) -> Result<Tensor> {
        binary("PowBackward1", BinaryOp::Pow, self, exponent)
    }

    /// Elementwise maximum; NaN propagates; at ties the gradient is split evenly.
    pub fn maximum(&self, other: &Tensor) -> Result<Tensor> {
        binary("MaximumBackward0", BinaryOp::Max, self, other)
    }

    /// Elementwise minimum; NaN propagates; at ties the gradient is split evenly.
    pub fn minimum(&self, other: &Tensor) -> Result<Tensor> {
        binary("MinimumBackward0", BinaryOp::Min, self, other)
    }

    /// `self > other` (bool).
    pub fn gt(&self, other: &Tensor) -> Result<Tensor> {
        compare(CompareOp::Greater, self, other)
    }

    /// `self < other` (bool).
    pub fn lt(&self, other: &Tensor) -> Result<Tensor> {
        compare(CompareOp::Less, self, other)
    }

    /// `self == other` (bool).
    pub fn eq_t(&self, other: &Tensor) -> Result<Tensor> {
        compare(CompareOp::Equal, self, other)
    }

    /// `self >= other` (bool).
    pub fn ge(&self, other: &Tensor) -> Result<Tensor> {
        not(&self.lt(other)?)
    }

    /// `self <= other` (bool).
    pub fn le(&self, other: &Tensor) -> Result<Tensor> {
        not(&self.gt(other)?)
    }

    /// `self != other` (bool).
    pub fn ne(&self, other: &Tensor) -> Result<Tensor> {
        not(&self.eq_t(other)?)
    }

    /// `self > v` for a scalar (bool).
    pub fn gt_scalar(&self, v: f64) -> Tensor {
        self.gt(&self.scalar_like(v)).expect("a scalar broadcasts")
    }

    /// `self < v` for a scalar (bool).
    pub fn lt_scalar(&self, v: f64) -> Tensor {
        self.lt(&self.scalar_like(v)).expect("a scalar broadcasts")
    }

    /// `-self`. Panics on bool tensors, with PyTorch's message.
    pub fn neg(&self) -> Tensor {
        if self.dtype() == DType::Bool {
            panic!("Negation, the `-` operator, on a bool tensor is not supported. If you are trying to invert a mask, use the `~` or `logical_not()` operator instead.");
        }
        apply("NegBackward0", Op::Unary(UnaryOp::Neg), &[self]).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The tensor an arithmetic op with scalar `s` computes on: integer tensors become f32 when
    /// the scalar is fractional or the op divides (PyTorch's type promotion).
    fn promoted_for(&self, s: f64, op: BinaryOp) -> Tensor {
        if !self.dtype().is_float() && (s.fract() != 0.0 || !s.is_finite() || op == BinaryOp::Div) {
            self.to_dtype(DType::F32)
        } else {
            self.clone()
        }
    }

    fn rsub_scalar(&self, s: f64) -> Tensor {
        self.with_scalar("RsubBackward1", BinaryOp::Sub, s, true)
    }

    fn scalar_op(&self, name: &'static str, op: BinaryOp, s: f64) -> Tensor {
        self.with_scalar(name, op, s, false)
    }

    fn scalar_lhs_op(&self, name: &'static str, op: BinaryOp, s: f64) -> Tensor {
        self.with_scalar(name, op, s, true)
    }

    /// `self op s`, or `s op self` when `scalar_first`. When nothing is recorded the scalar
    /// needs no tensor of its own (an optimiser's `grad * lr` under `no_grad`, every step).
    fn with_scalar(&self, name: &'static str, op: BinaryOp, s: f64, scalar_first: bool) -> Tensor {
        let x = self.promoted_for(s, op);
        let c = crate::expr::filled(x.dtype(), s, &[]);
        let r = if is_grad_enabled() && x.requires_grad() {
            let c = Tensor::from_expr(c);
            let operands = if scalar_first { [&c, &x] } else { [&x, &c] };
            apply(name, Op::Binary(op), &operands)
        } else {
            let operands = if scalar_first {
                smallvec::smallvec![c, x.expr()]
            } else {
                smallvec::smallvec![x.expr(), c]
            };
            Expr::apply(Op::Binary(op), operands).map(Tensor::from_expr)
        };
        r.unwrap_or_else(|e| panic!("{e}"))
    }
}

fn or_panic(r: Result<Tensor>) -> Tensor {
    r.unwrap_or_else(|e| panic!("{e}"))
}

macro_rules! tensor_binop {
    ($trait:ident, $method:ident, $name:literal, $op:ident) => {
        impl ops::$trait<&Tensor> for &Tensor {
            type Output = Tensor;
            fn $method(self, rhs: &Tensor) -> Tensor {
                or_panic(binary($name, BinaryOp::$op, self, rhs))
            }
        }
        impl ops::$trait<Tensor> for Tensor {
            type Output = Tensor;
            fn $method(self, rhs: Tensor) -> Tensor {
                or_panic(binary($name, BinaryOp::$op, &self, &rhs))
            }
        }
        impl ops::$trait<&Tensor> for Tensor {
            type Output = Tensor;
            fn $method(self, rhs: &Tensor) -> Tensor {
                or_panic(binary($name, BinaryOp::$op, &self, rhs))
            }
        }
        impl ops::$trait<Tensor> for &Tensor {
            type Output = Tensor;
            fn $method(self, rhs: Tensor) -> Tensor {
                or_panic(binary($name, BinaryOp::$op, self, &rhs))
            }
        }
        impl ops::$trait<f64> for &Tensor {
            type Output = Tensor;
            fn $method(self, rhs: f64) -> Tensor {
                self.scalar_op($name, BinaryOp::$op, rhs)
            }
        }
        impl ops::$trait<f64> for Tensor {
            type Output = Tensor;
            fn $method(self, rhs: f64) -> Tensor {
                self.scalar_op($name, BinaryOp::$op, rhs)
            }
        }
    };
}

tensor_binop!(Add, add, "AddBackward0", Add);
tensor_binop!(Sub, sub, "SubBackward0", Sub);
tensor_binop!(Mul, mul, "MulBackward0", Mul);
tensor_binop!(Div, div, "DivBackward0", Div);

// scalar ⊕ tensor
macro_rules! scalar_lhs {
    ($trait:ident, $method:ident, |$s:ident, $t:ident| $body:expr) => {
        impl ops::$trait<&Tensor> for f64 {
            type Output = Tensor;
            fn $method(self, rhs: &Tensor) -> Tensor {
                let ($s, $t) = (self, rhs);
                $body
            }
        }
        impl ops::$trait<Tensor> for f64 {
            type Output = Tensor;
            fn $method(self, rhs: Tensor) -> Tensor {
                let ($s, $t) = (self, &rhs);
                $body
            }
        }
    };
}

scalar_lhs!(Add, add, |s, t| t.scalar_lhs_op("AddBackward0", BinaryOp::Add, s));
scalar_lhs!(Mul, mul, |s, t| t.scalar_lhs_op("MulBackward0", BinaryOp::Mul, s));
scalar_lhs!(Sub, sub, |s, t| t.rsub_scalar(s));
scalar_lhs!(Div, div, |s, t| t.scalar_lhs_op("DivBackward0", BinaryOp::Div, s));

impl ops::Neg for &Tensor {
    type Output = Tensor;
    fn neg(self) -> Tensor {
        Tensor::neg(self)
    }
}

impl ops::Neg for Tensor {
    type Output = Tensor;
    fn neg(self) -> Tensor {
        Tensor::neg(&self)
    }
}

// In place: `x += 1.0`, `x *= &y`, ... (see `add_` and friends for the rules).
macro_rules! assign_op {
    ($trait:ident, $method:ident, $inplace:ident) => {
        impl ops::$trait<f64> for Tensor {
            fn $method(&mut self, rhs: f64) {
                let s = self.scalar_like(rhs);
                self.$inplace(&s).unwrap_or_else(|e| panic!("{e}"));
            }
        }
        impl ops::$trait<&Tensor> for Tensor {
            fn $method(&mut self, rhs: &Tensor) {
                self.$inplace(rhs).unwrap_or_else(|e| panic!("{e}"));
            }
        }
    };
}

assign_op!(AddAssign, add_assign, add_);
assign_op!(SubAssign, sub_assign, sub_);
assign_op!(MulAssign, mul_assign, mul_);
assign_op!(DivAssign, div_assign, div_);
