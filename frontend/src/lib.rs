//! kiln-frontend: the Tensor API.
