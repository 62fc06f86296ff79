//! # kiln-ir
//!
//! The contract between kiln's frontend, passes and backends: a graph of ONNX-style primitive ops
//! on a petgraph `StableGraph`, with static shapes and dtypes.
//!
//! - [`op`]: the op set and the one shape/dtype rule per op ([`Op::infer`]).
//! - [`graph`]: [`Graph`] itself — building, reading, rewriting — and the verifier.
//! - [`text`]: the deterministic text form, printed and parsed; [`json`]: the serde form;
//!   [`dot`]: Graphviz; [`hash`]: the canonical structural hash.
//! - [`interp`]: the reference interpreter on `ndarray`, the oracle for every other backend.
//!
//! ```
//! use kiln_ir::{Graph, DType};
//! let mut g = Graph::new();
//! let x = g.input("x", DType::F32, [2, 3]);
//! let y = g.mul(x, x).unwrap();
//! g.set_outputs(vec![y]);
//! g.verify().unwrap();
//! assert_eq!(g.node(y).shape.dims(), &[2, 3]);
//! ```

pub mod builder;
pub mod composite;
pub mod dot;
pub mod dtype;
pub mod error;
pub mod graph;
pub mod hash;
pub mod interp;
pub mod json;
pub mod literal;
pub mod op;
#[cfg(feature = "testing")]
pub mod testing;
pub mod text;
pub mod verify;

pub use dot::{DotCluster, DotStyle};
pub use dtype::{broadcast_shapes, broadcasts_to, normalize_axis, DType, Dims, Shape};
pub use error::{Error, Result};
pub use graph::{Graph, Node, NodeId};
pub use interp::{allclose, run, Value};
pub use literal::Literal;
pub use op::{Arity, BinaryOp, CompareOp, Op, ReduceOp, SliceRange, UnaryOp};
pub use text::parse;
