//! Neural-network building blocks. [`functional`] has the stateless functions.

pub mod functional;
