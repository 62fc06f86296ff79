//! Activation modules: stateless wrappers of the tensor methods, for [`Sequential`](super::Sequential).

use super::Module;
use crate::error::Result;
use crate::tensor::Tensor;

macro_rules! activation {
    ($($(#[$doc:meta])* $name:ident => $method:ident;)*) => {$(
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default)]
        pub struct $name;

        impl Module for $name {
            fn forward(&self, x: &Tensor) -> Result<Tensor> {
                Ok(x.$method())
            }
        }
    )*};
}

activation! {
    /// `max(x, 0)` (PyTorch's `nn.ReLU`).
    ///
    /// ```
    /// use kiln_frontend::{nn::{Module, ReLU}, Tensor};
    /// let y = ReLU.forward(&Tensor::from_vec(vec![-1.0f32, 2.0], &[2]).unwrap()).unwrap();
    /// assert_eq!(y.to_vec_f64().unwrap(), vec![0.0, 2.0]);
    /// ```
    ReLU => relu;
    /// Exact GELU, `x · Φ(x)` (PyTorch's `nn.GELU()` with `approximate='none'`).
    GELU => gelu;
    /// `tanh(x)` (PyTorch's `nn.Tanh`).
    Tanh => tanh;
    /// `1 / (1 + e^-x)` (PyTorch's `nn.Sigmoid`).
    Sigmoid => sigmoid;
}
