//! Errors of the passes crate.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Error)]
pub enum Error {
    /// Building a node failed (a rule produced an ill-typed node: a bug, reported not hidden).
    #[error(transparent)]
    Ir(#[from] kiln_ir::Error),
    /// The request given to autodiff does not fit the graph.
    #[error("autodiff: {0}")]
    Autodiff(String),
    /// A schedule (fusion output) breaks an invariant, or cannot be executed as given.
    #[error("schedule: {0}")]
    Schedule(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
