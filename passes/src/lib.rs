//! # kiln-passes
//!
//! Graph-to-graph passes over [`kiln_ir::Graph`].
//!
//! - [`autodiff`]: appends the reverse graph (vector–Jacobian products built from ordinary IR ops,
//!   so differentiating again gives higher derivatives). The rule for each op lives in [`vjp`].
//! - [`simplify`]: constant folding, algebraic identities, CSE, dead-code elimination.
//! - [`fusion`]: partitions a graph into a [`kernel::Schedule`] of fused kernels and matmuls.
//! - [`plan`]: buffer liveness and arena placement.
//! - [`pipeline`]: the standard order of all of these, timed, with dumps ([`dump`]: what they
//!   hold); [`workloads`]: the benchmark graphs.

pub mod autodiff;
pub mod dump;
pub mod error;
pub mod fusion;
pub mod kernel;
pub mod pipeline;
pub mod plan;
pub mod simplify;
pub mod vjp;
pub mod workloads;

pub use autodiff::{grad, ones_like, sum_to};
pub use error::{Error, Result};
pub use fusion::schedule;
pub use plan::{plan_memory, MemoryPlan};
pub use simplify::{simplify, SimplifyStats};
