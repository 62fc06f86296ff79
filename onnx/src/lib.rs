//! # kiln-onnx
//!
//! ONNX models in kiln: import `.onnx` files into kiln's IR, run them on any backend, train
//! their initializers with kiln's autograd, and export kiln graphs (forward, or forward plus
//! reverse) back to ONNX.
//!
//! - [`import_file`] / [`import_bytes`]: a `ModelProto` → [`kiln_ir::Graph`] plus the
//!   initializer values ([`Imported`]). Composite ONNX ops are lowered to kiln primitives.
//! - [`load`]: the same as a [`Model`] whose [`Model::forward`] records into the autograd trace
//!   like any tensor code, so `backward()` reaches its parameters.
//! - [`export_graph`] / [`export_file`]: a kiln graph → `ModelProto` (opset 18);
//!   [`with_gradients`] appends the reverse graph first.
//! - [`proto`]: the `onnx.proto` messages (prost), [`tensor`]: `TensorProto` ↔ values.
//!
//! Errors ([`Error`]) name the file, the node and the reason; malformed files never panic.
//!
//! ```
//! use kiln_ir::{DType, Graph};
//! // A graph, exported to ONNX bytes and imported back.
//! let mut g = Graph::new();
//! let x = g.input("x", DType::F32, [2, 3]);
//! let y = g.unary(kiln_ir::UnaryOp::Tanh, x).unwrap();
//! g.set_outputs(vec![y]);
//! let model = kiln_onnx::export_graph(&g, &[], &kiln_onnx::ExportOptions::default()).unwrap();
//! let bytes = kiln_onnx::encode_model(&model);
//! let back = kiln_onnx::import_bytes(&bytes, &Default::default()).unwrap();
//! assert_eq!(back.graph.to_text(), g.to_text());
//! ```

mod error;
mod export;
mod import;
mod model;
pub mod proto;
pub mod tensor;

pub use error::{Error, Result};
pub use export::{encode_model, export_file, export_graph, with_gradients, ExportOptions, EXPORT_OPSET};
pub use import::{
    decode_model, import_bytes, import_file, import_file_with, import_model, ImportOptions, Imported,
    SUPPORTED_OPS,
};
pub use model::{load, load_with, Model};
