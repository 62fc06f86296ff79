//! The CUDA backend: fused kernels as CUDA C, compiled at run time by NVRTC.
//!
//! - [`emit`] (always built): kernel IR → one CUDA C translation unit per schedule
//!   ([`CudaProgram`]: the kernels, their launch configurations, and matrix products as cuBLAS
//!   strided-batched gemm calls), on top of [`prelude`] (declarations and kiln's device math, the
//!   same algorithms as the CPU backend's). Tests compile every emitted kernel to PTX with
//!   clang's CUDA front end, so this part is checked on machines without a GPU.
//! - `runtime` (cargo feature `cuda`): the [`Cuda`](runtime::Cuda) backend on `cudarc` — NVRTC
//!   compile cache, device buffers laid out as the planned arena, launches, cuBLAS, copies in
//!   and out. The driver, NVRTC and cuBLAS are loaded at run time; without them, asking for the
//!   backend is an error, not a panic.

pub mod emit;
pub mod prelude;
#[cfg(feature = "cuda")]
pub mod runtime;

pub use emit::{emit_schedule, CudaKernel, CudaProgram, CudaStep, Gemm, Launch, Strategy};
pub use prelude::prelude;

/// What can go wrong translating or running a schedule on CUDA.
#[derive(Debug, thiserror::Error)]
pub enum CudaError {
    /// The schedule does not verify.
    #[error("cuda: invalid schedule: {0}")]
    Schedule(String),
    /// The schedule uses something this backend does not support.
    #[error("cuda: unsupported: {0}")]
    Unsupported(String),
    /// No usable CUDA driver or device (or the `cuda` feature is off).
    #[error("cuda: {0}")]
    Unavailable(String),
    /// The driver, NVRTC or cuBLAS reported an error.
    #[error("cuda: {0}")]
    Driver(String),
    /// A kernel reported an error while running (integer division by zero, ...).
    #[error("cuda: {0}")]
    Kernel(String),
    /// `run` was given inputs that do not match the schedule.
    #[error("cuda: {0}")]
    Input(String),
    /// A backend bug.
    #[error("cuda: internal error: {0}")]
    Internal(String),
}

impl From<CudaError> for kiln_ir::Error {
    fn from(e: CudaError) -> kiln_ir::Error {
        kiln_ir::Error::Interp(e.to_string())
    }
}

pub type Result<T, E = CudaError> = std::result::Result<T, E>;
