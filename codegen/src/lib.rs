//! # kiln-codegen
//!
//! Backends that execute graphs. A [`Backend`] takes a verified [`Graph`] and input values and
//! returns the output values:
//! - [`Jit`] (`jit`, the default): the pass pipeline, then [`cpu`] — fused kernels compiled with
//!   Cranelift, matmuls through a gemm library — with a compile cache keyed by graph structure;
//! - [`Interpreter`] (`interp`): the reference interpreter, the oracle;
//! - `cuda` / `cuda:N` (cargo feature `cuda`): [`cuda`] — the same fused kernels as CUDA C,
//!   compiled by NVRTC, matmuls through cuBLAS, on GPU `N` (0 by default).

mod cache;
pub mod cpu;
pub mod cuda;
pub mod recycle;

pub use cache::{jit, jit_stats, CacheStats, Jit};

use kiln_ir::interp::Value;
use kiln_ir::Graph;
use std::sync::Arc;

pub use kiln_ir::Error;

/// Something that can evaluate a graph.
pub trait Backend: Send + Sync {
    /// A short name, as `KILN_BACKEND` spells it.
    fn name(&self) -> &'static str;

    /// Evaluates `g` on `inputs` (one per `g.inputs()`, in order) and returns its outputs.
    fn run(&self, g: &Graph, inputs: &[Value]) -> kiln_ir::Result<Vec<Value>>;

    /// Like [`Backend::run`] for a graph whose structure is identified by `key` (the caller
    /// guarantees equal keys mean equal graphs), so a backend can reuse what it compiled for
    /// the key without hashing the graph again.
    ///
    /// Inputs are shared (`Arc`), so a caller holding computed values passes them without a copy.
    fn run_keyed(&self, key: u64, g: &Graph, inputs: &[Arc<Value>]) -> kiln_ir::Result<Vec<Value>>;
}

/// The reference interpreter of `kiln_ir::interp`: slow, simple, the oracle.
#[derive(Clone, Copy, Debug, Default)]
pub struct Interpreter;

impl Backend for Interpreter {
    fn name(&self) -> &'static str {
        "interp"
    }

    fn run(&self, g: &Graph, inputs: &[Value]) -> kiln_ir::Result<Vec<Value>> {
        kiln_ir::interp::run(g, inputs)
    }

    fn run_keyed(&self, _key: u64, g: &Graph, inputs: &[Arc<Value>]) -> kiln_ir::Result<Vec<Value>> {
        kiln_ir::interp::run(g, inputs)
    }
}

/// The names `KILN_BACKEND` accepts; the first is the default. (`cuda:N` picks GPU `N`.)
pub const BACKENDS: &[&str] = &["jit", "interp", "cuda"];

/// The backend named `name`, or an error listing the ones that exist.
///
/// ```
/// let b = kiln_codegen::backend_named("interp").unwrap();
/// assert_eq!(b.name(), "interp");
/// assert_eq!(kiln_codegen::backend_named("jit").unwrap().name(), "jit");
/// assert!(kiln_codegen::backend_named("tpu").is_err());
/// // Without the `cuda` feature, or without a driver and GPU, asking for CUDA is an error.
/// if !cfg!(feature = "cuda") {
///     assert!(kiln_codegen::backend_named("cuda").err().unwrap().contains("`cuda` feature"));
/// }
/// ```
pub fn backend_named(name: &str) -> Result<&'static dyn Backend, String> {
    match name {
        "jit" => Ok(jit()),
        "interp" => Ok(&Interpreter),
        cuda if cuda == "cuda" || cuda.starts_with("cuda:") => {
            let ordinal = match cuda.strip_prefix("cuda:") {
                None => 0,
                Some(n) => {
                    n.parse::<usize>().map_err(|_| format!("bad CUDA device '{cuda}': expected cuda:N"))?
                }
            };
            cuda_backend(ordinal)
        }
        other => {
            Err(format!("unknown backend '{other}': KILN_BACKEND must be one of {}", BACKENDS.join(", ")))
        }
    }
}

#[cfg(feature = "cuda")]
fn cuda_backend(ordinal: usize) -> Result<&'static dyn Backend, String> {
    cuda::runtime::cuda(ordinal).map(|c| c as &'static dyn Backend).map_err(|e| e.to_string())
}

#[cfg(not(feature = "cuda"))]
fn cuda_backend(ordinal: usize) -> Result<&'static dyn Backend, String> {
    Err(format!(
        "CUDA device {ordinal} requested, but kiln was built without the `cuda` feature \
         (build with `--features cuda`)"
    ))
}
