//! The CLI's error: what went wrong and where (a file, and a line and column when known).

use thiserror::Error;

/// Everything the `kiln` tool reports. `main` prints it on stderr after `error: ` and exits with
/// status 1.
#[derive(Debug, Error)]
pub enum Error {
    /// A bad file, at a known place.
    #[error("{path}:{line}:{col}: {msg}")]
    At { path: String, line: usize, col: usize, msg: String },
    /// A file that cannot be used, as a whole (unreadable, unsupported format, wrong array).
    #[error("{path}: {msg}")]
    File { path: String, msg: String },
    /// An argument that does not fit the graph (unknown input name, missing input, ...).
    #[error("{0}")]
    Usage(String),
    /// A graph that the IR rejects (verification, evaluation).
    #[error(transparent)]
    Ir(#[from] kiln_ir::Error),
    /// A pass that failed.
    #[error(transparent)]
    Passes(#[from] kiln_passes::Error),
}

impl Error {
    pub(crate) fn file(path: &std::path::Path, msg: impl Into<String>) -> Error {
        Error::File { path: path.display().to_string(), msg: msg.into() }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
