//! # kiln
//!
//! PyTorch's autograd experience in Rust, run like a compiler. This facade crate re-exports the
//! workspace's crates; see `ARCHITECTURE.md` for where each concern lives.

pub use kiln_codegen as codegen;
pub use kiln_frontend as frontend;
pub use kiln_ir as ir;
pub use kiln_passes as passes;
