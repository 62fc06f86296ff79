//! Tensor operations, grouped by kind. All of them go through [`record`].

pub(crate) mod arith;
pub(crate) mod inplace;
pub(crate) mod math;
pub(crate) mod record;
pub(crate) mod reduce;
pub(crate) mod shape;
