//! The one error type of the IR crate.

use thiserror::Error;

/// Everything that can go wrong while building, checking, reading or evaluating a graph.
///
/// Each variant names the place (op, node, line:column) and says what is wrong, so that a user can
/// fix the input without reading kiln's source.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum Error {
    /// An op was given operands it cannot accept (shapes, dtypes, counts, attributes).
    #[error("{op}: {msg}")]
    Op { op: String, msg: String },
    /// The verifier found a node that breaks an invariant.
    #[error("verify: node %{node} ({op}): {msg}")]
    Verify { node: usize, op: String, msg: String },
    /// A graph-level invariant is broken (cycle, dangling output, ...).
    #[error("verify: {0}")]
    Graph(String),
    /// IR text could not be parsed.
    #[error("{line}:{col}: {msg}")]
    Parse { line: usize, col: usize, msg: String },
    /// IR JSON could not be read.
    #[error("json: {0}")]
    Json(String),
    /// The reference interpreter was given inputs that do not match the graph.
    #[error("interp: {0}")]
    Interp(String),
}

impl Error {
    pub(crate) fn op(op: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Op { op: op.into(), msg: msg.into() }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
