//! The importer's and exporter's error: what went wrong, and where (file, node).

use std::fmt;

/// An ONNX import or export failure. The message names the file (when there is one), the node
/// (its name and op type, when the failure belongs to one) and the reason, so that a user can
/// find the offending part of the model without reading kiln's source.
///
/// Converts into [`kiln_frontend::Error`] (`kiln::Error`) with `?`.
#[derive(Debug, Clone, PartialEq)]
pub struct Error {
    /// The `.onnx` file, when reading or writing one.
    pub file: Option<String>,
    /// `name (OpType)` of the node, or `input 'x'` / `output 'y'` / `initializer 'w'`.
    pub location: Option<String>,
    /// What is wrong.
    pub reason: String,
}

impl Error {
    /// An error about the model as a whole.
    pub fn model(reason: impl Into<String>) -> Error {
        Error { file: None, location: None, reason: reason.into() }
    }

    /// An error located at `location` (a node, an input, an initializer, ...).
    pub fn at(location: impl Into<String>, reason: impl Into<String>) -> Error {
        Error { file: None, location: Some(location.into()), reason: reason.into() }
    }

    /// The same error, attributed to `file` (kept if already set).
    pub fn in_file(mut self, file: impl fmt::Display) -> Error {
        self.file.get_or_insert_with(|| file.to_string());
        self
    }

    /// True when the model uses something kiln does not support (an op, an attribute value, a
    /// dtype), as opposed to a model that is malformed.
    pub fn is_unsupported(&self) -> bool {
        self.reason.contains("not supported")
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{file}: ")?;
        }
        if let Some(loc) = &self.location {
            write!(f, "{loc}: ")?;
        }
        f.write_str(&self.reason)
    }
}

impl std::error::Error for Error {}

impl From<Error> for kiln_frontend::Error {
    fn from(e: Error) -> kiln_frontend::Error {
        if e.is_unsupported() {
            kiln_frontend::Error::Unsupported(e.to_string())
        } else {
            kiln_frontend::Error::Op(e.to_string())
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
