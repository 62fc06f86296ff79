//! # kiln
//!
//! PyTorch's autograd experience in Rust, run like a compiler: tensor code is traced into an
//! ONNX-style IR, autodiff appends the reverse graph, and a backend executes it. This facade
//! re-exports the Tensor API of `kiln-frontend` at the top level, and the lower layers as modules
//! ([`ir`], [`passes`], [`codegen`]), and ONNX import/export as [`onnx`]. Training building
//! blocks are [`nn`] (modules, initialisation, safetensors weights) and [`optim`] (SGD, Adam,
//! AdamW). `ARCHITECTURE.md` maps where each concern lives.
//!
//! ```
//! use kiln::Tensor;
//! let x = Tensor::ones(&[2, 2]).requires_grad_(true);
//! let out = ((&x + 2.0) * (&x + 2.0) * 3.0).mean();
//! out.backward().unwrap();
//! assert_eq!(x.grad().unwrap().to_vec_f64().unwrap(), vec![4.5; 4]);
//! ```

pub use kiln_codegen as codegen;
pub use kiln_frontend::*;
pub use kiln_ir as ir;
/// ONNX models: `kiln::onnx::load(path)` → a trainable [`onnx::Model`]; import to and export
/// from kiln's IR ([`onnx::import_file`], [`onnx::export_graph`]).
pub use kiln_onnx as onnx;
pub use kiln_passes as passes;
