//! `kiln::Error`: every failure a user can cause, with PyTorch's wording where PyTorch has one.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Error)]
pub enum Error {
    /// An op got operands it cannot accept (shapes, dtypes, axes); names the op and the shapes.
    #[error("{0}")]
    Op(String),
    /// Misuse of autograd (backward, grad, hooks, in-place), in PyTorch's words.
    #[error("{0}")]
    Autograd(String),
    /// `gradcheck` found analytical and numerical gradients that differ.
    #[error("{0}")]
    Gradcheck(String),
    /// Something kiln does not support (yet); the message says what.
    #[error("{0}")]
    Unsupported(String),
}

impl From<kiln_ir::Error> for Error {
    fn from(e: kiln_ir::Error) -> Error {
        Error::Op(e.to_string())
    }
}

impl From<kiln_passes::Error> for Error {
    fn from(e: kiln_passes::Error) -> Error {
        Error::Op(e.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
