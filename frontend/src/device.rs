//! Where realizations run: the CPU (the default) or a CUDA GPU.
//!
//! The choice is process-wide, like [`crate::set_backend`] (of which it is the typed form):
//! tensors hold their values in host memory, and each realization copies its inputs to the
//! device, runs the fused graph there and copies the results back.

use crate::backend::{backend_name, set_backend};
use crate::error::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// A device realizations can run on.
///
/// ```
/// use kiln_frontend::Device;
/// assert_eq!(Device::default(), Device::Cpu);
/// assert_eq!("cuda:1".parse::<Device>().unwrap(), Device::Cuda(1));
/// assert_eq!("cuda".parse::<Device>().unwrap(), Device::Cuda(0));
/// assert_eq!(Device::Cuda(0).to_string(), "cuda:0");
/// assert!("tpu".parse::<Device>().is_err());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Device {
    /// The Cranelift JIT on the host's cores.
    #[default]
    Cpu,
    /// CUDA GPU number `n` (needs kiln built with the `cuda` feature, a driver and the device).
    Cuda(usize),
}

impl Device {
    /// The backend name this device runs on (`KILN_BACKEND` spelling).
    fn backend(self) -> String {
        match self {
            Device::Cpu => "jit".into(),
            Device::Cuda(n) => format!("cuda:{n}"),
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl FromStr for Device {
    type Err = Error;

    fn from_str(s: &str) -> Result<Device> {
        match s {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            _ => s.strip_prefix("cuda:").and_then(|n| n.parse().ok()).map(Device::Cuda).ok_or_else(|| {
                Error::Unsupported(format!("unknown device '{s}': expected cpu, cuda or cuda:N"))
            }),
        }
    }
}

/// Runs every later realization on `device`. Asking for a GPU that is not there (no `cuda`
/// feature, no driver, no such device) is an error and leaves the current device unchanged.
///
/// ```
/// use kiln_frontend::{device, set_device, Device};
/// set_device(Device::Cpu).unwrap();
/// assert_eq!(device().unwrap(), Device::Cpu);
/// match set_device(Device::Cuda(0)) {
///     Ok(()) => assert_eq!(device().unwrap(), Device::Cuda(0)),
///     // Built without the `cuda` feature, or no driver / GPU here: a clear error.
///     Err(e) => {
///         assert!(e.to_string().contains("CUDA") || e.to_string().contains("cuda"), "{e}");
///         assert_eq!(device().unwrap(), Device::Cpu);
///     }
/// }
/// set_device(Device::Cpu).unwrap();
/// ```
pub fn set_device(device: Device) -> Result<()> {
    set_backend(&device.backend())
}

/// The device realizations run on (the reference interpreter counts as the CPU).
pub fn device() -> Result<Device> {
    let name = backend_name()?;
    Ok(name.parse::<Device>().ok().filter(|d| *d != Device::Cpu).unwrap_or(Device::Cpu))
}
