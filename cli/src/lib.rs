//! # kiln-cli
//!
//! The `kiln` command-line tool, to look at what kiln does with a graph:
//!
//! - `kiln dump FILE [--after PASS] [--format text|json|dot|svg] [--wrt NAMES]` — the graph after
//!   any pass of the pipeline (the fused kernels and memory plan after `fusion` and `plan`);
//! - `kiln grad FILE --wrt NAMES [--format ...]` — the graph with its reverse graph appended;
//!   with `--input`/`--cotangent` values, the gradients themselves;
//! - `kiln run FILE --input NAME=PATH.npy|PATH.pb ... [--output DIR]` — evaluate it on the JIT;
//! - `kiln passes` — the pipeline.
//!
//! FILE is kiln's IR text or JSON, or an ONNX model (its initializers are parameters that come
//! with their values); every command reads it through [`load_model`].

pub mod commands;
pub mod error;
pub mod load;
pub mod npy;
pub mod render;

pub use commands::{append_reverse, append_reverse_seeded, Reversed};
pub use error::{Error, Result};
pub use load::{load_graph, load_model, GraphFormat, Loaded};
