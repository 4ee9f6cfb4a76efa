//! Keyword arguments to [`durafile::Options`] and [`durafile::FileManager`].

use std::time::Duration;

use durafile::{Durability, FileManager, Options};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// The options every writing call takes: `durability`, `mode`, `checksum`, `timeout`.
pub(crate) fn options(
    durability: &str,
    mode: Option<u32>,
    checksum: bool,
    timeout: Option<f64>,
) -> PyResult<Options> {
    let level: Durability = durability
        .parse()
        .map_err(|e: durafile::ParseDurabilityError| PyValueError::new_err(e.to_string()))?;
    let mut opts = Options::new().durability(level).checksum(checksum);
    if let Some(mode) = mode {
        if mode > 0o7777 {
            return Err(PyValueError::new_err(format!(
                "mode {mode:#o} is not a permission mode (0 to 0o7777)"
            )));
        }
        opts = opts.mode(mode);
    }
    if let Some(timeout) = timeout {
        opts = opts.lock_timeout(duration(timeout)?);
    }
    Ok(opts)
}

/// A timeout in seconds.
pub(crate) fn duration(seconds: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(seconds).map_err(|_| {
        PyValueError::new_err(format!(
            "timeout must be a number of seconds >= 0, not {seconds}"
        ))
    })
}

/// A file manager for the library's JSON paths (migrations, batches): indented when Python
/// asked for `indent`.
pub(crate) fn file_manager(
    durability: &str,
    checksum: bool,
    timeout: Option<f64>,
    pretty: bool,
) -> PyResult<FileManager> {
    Ok(FileManager::new(options(durability, None, checksum, timeout)?).pretty(pretty))
}
