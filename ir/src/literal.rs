//! Constant data carried by `Constant` nodes.

use crate::dtype::DType;
use serde::{Deserialize, Serialize};
use std::hash::{Hash, Hasher};

/// The elements of a constant, in row-major order. Its shape is the node's shape.
///
/// Equality and hashing compare floats by bit pattern, so `NaN == NaN` here and `0.0 != -0.0`:
/// that is what common-subexpression elimination and the compile cache need.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "dtype", content = "data", rename_all = "lowercase")]
pub enum Literal {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I64(Vec<i64>),
    Bool(Vec<bool>),
}

impl Literal {
    pub fn dtype(&self) -> DType {
        match self {
            Literal::F32(_) => DType::F32,
            Literal::F64(_) => DType::F64,
            Literal::I64(_) => DType::I64,
            Literal::Bool(_) => DType::Bool,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Literal::F32(v) => v.len(),
            Literal::F64(v) => v.len(),
            Literal::I64(v) => v.len(),
            Literal::Bool(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A single value of `dtype` (floats and ints converted from `v`; bool is `v != 0`).
    pub fn scalar(dtype: DType, v: f64) -> Literal {
        Literal::splat(dtype, v, 1)
    }

    /// `n` copies of `v` as `dtype`.
    pub fn splat(dtype: DType, v: f64, n: usize) -> Literal {
        match dtype {
            DType::F32 => Literal::F32(vec![v as f32; n]),
            DType::F64 => Literal::F64(vec![v; n]),
            DType::I64 => Literal::I64(vec![v as i64; n]),
            DType::Bool => Literal::Bool(vec![v != 0.0; n]),
        }
    }

    /// Element `i` widened to f64 (bool as 0/1).
    pub fn get_f64(&self, i: usize) -> f64 {
        match self {
            Literal::F32(v) => v[i] as f64,
            Literal::F64(v) => v[i],
            Literal::I64(v) => v[i] as f64,
            Literal::Bool(v) => v[i] as u8 as f64,
        }
    }

    /// If every element equals one value, that value (as f64). Used by simplification rules.
    pub fn uniform_value(&self) -> Option<f64> {
        let first = (!self.is_empty()).then(|| self.get_f64(0))?;
        let same = (1..self.len()).all(|i| self.get_f64(i).to_bits() == first.to_bits());
        same.then_some(first)
    }

    fn bits(&self) -> impl Iterator<Item = u64> + '_ {
        (0..self.len()).map(move |i| match self {
            Literal::F32(v) => v[i].to_bits() as u64,
            Literal::F64(v) => v[i].to_bits(),
            Literal::I64(v) => v[i] as u64,
            Literal::Bool(v) => v[i] as u64,
        })
    }
}

impl PartialEq for Literal {
    fn eq(&self, other: &Self) -> bool {
        self.dtype() == other.dtype() && self.len() == other.len() && self.bits().eq(other.bits())
    }
}

impl Eq for Literal {}

impl Hash for Literal {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.dtype().hash(state);
        self.len().hash(state);
        for b in self.bits() {
            b.hash(state);
        }
    }
}
