//! Which backend evaluates realized graphs: `KILN_BACKEND` (read once), overridable from the API.

use crate::error::{Error, Result};
use kiln_codegen::{backend_named, Backend};
use std::sync::{OnceLock, RwLock};

static OVERRIDE: RwLock<Option<&'static str>> = RwLock::new(None);
static FROM_ENV: OnceLock<Result<&'static dyn Backend, String>> = OnceLock::new();

/// The backend used for every realization in this process.
pub(crate) fn current() -> Result<&'static dyn Backend> {
    if let Some(name) = *OVERRIDE.read().unwrap_or_else(|p| p.into_inner()) {
        return backend_named(name).map_err(Error::Unsupported);
    }
    FROM_ENV
        .get_or_init(|| {
            backend_named(&std::env::var("KILN_BACKEND").unwrap_or_else(|_| kiln_codegen::BACKENDS[0].into()))
        })
        .clone()
        .map_err(Error::Unsupported)
}

/// Selects the backend by name for the whole process (overrides `KILN_BACKEND`).
///
/// ```
/// kiln_frontend::set_backend("interp").unwrap();
/// assert_eq!(kiln_frontend::backend_name().unwrap(), "interp");
/// assert!(kiln_frontend::set_backend("nope").is_err());
/// ```
pub fn set_backend(name: &str) -> Result<()> {
    let b = backend_named(name).map_err(Error::Unsupported)?;
    *OVERRIDE.write().unwrap_or_else(|p| p.into_inner()) = Some(b.name());
    Ok(())
}

/// The name of the backend in use.
pub fn backend_name() -> Result<&'static str> {
    Ok(current()?.name())
}
