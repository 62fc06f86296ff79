//! Neural-network building blocks (PyTorch's `torch.nn`): the [`Module`] trait, layers,
//! activations, initialisation ([`init`]), weights on disk ([`save_safetensors`] /
//! [`load_safetensors`]) and the stateless [`functional`] forms.
//!
//! ```
//! use kiln_frontend::nn::{Linear, Module, ReLU, Sequential};
//! use kiln_frontend::Tensor;
//! kiln_frontend::manual_seed(0);
//! let model = Sequential::new().append(Linear::new(4, 8)).append(ReLU).append(Linear::new(8, 2));
//! let names: Vec<String> = model.named_parameters().into_iter().map(|(n, _)| n).collect();
//! assert_eq!(names, ["0.weight", "0.bias", "2.weight", "2.bias"]);
//! let y = model.forward(&Tensor::ones(&[3, 4])).unwrap();
//! assert_eq!(y.shape(), &[3, 2]);
//! ```

mod activation;
mod dropout;
mod embedding;
pub mod functional;
pub mod init;
mod linear;
mod module;
mod norm;
mod safetensors;
mod sequential;

pub use activation::{ReLU, Sigmoid, Tanh, GELU};
pub use dropout::Dropout;
pub use embedding::Embedding;
pub use linear::Linear;
pub use module::Module;
pub use norm::LayerNorm;
pub use safetensors::{load_safetensors, read_safetensors, save_safetensors};
pub use sequential::Sequential;
