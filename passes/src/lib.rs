//! # kiln-passes
//!
//! Graph-to-graph passes over [`kiln_ir::Graph`].
//!
//! - [`autodiff`]: appends the reverse graph (vector–Jacobian products built from ordinary IR ops,
//!   so differentiating again gives higher derivatives). The rule for each op lives in [`vjp`].

pub mod autodiff;
pub mod error;
pub mod vjp;

pub use autodiff::{grad, ones_like, sum_to};
pub use error::{Error, Result};
