//! `durafile._native`: the durafile library as a CPython extension module.
//!
//! A thin shell. Every file operation, lock, checksum, migration and batch is the Rust
//! library's own; this crate converts arguments and results, turns [`durafile::Error`] into
//! Python exceptions (see [`error`]), and releases the GIL around everything that can wait or
//! touch the disk: lock waits, writes, fsyncs, renames and reads. It takes the GIL back only to
//! call Python code, such as the `fn` of an update or a migration step, which then runs under
//! the file's lock exactly as a Rust closure would.
//!
//! The public Python API is the `durafile` package (`python/durafile`), which adds what belongs
//! to Python: JSON through the `json` module, context managers, reports as dataclasses and
//! `concurrent.futures` integration.

mod batch;
mod docs;
mod error;
mod file;
mod migrate;
mod options;
mod report;

use pyo3::prelude::*;

/// The native half of the `durafile` package; import `durafile` instead.
#[pymodule]
mod _native {
    #[pymodule_export]
    use crate::batch::{CancelFlag, run_batch};
    #[pymodule_export]
    use crate::docs::{DataHandler, StateManager};
    #[pymodule_export]
    use crate::file::{AtomicWriter, Lock, read, update, write};
    #[pymodule_export]
    use crate::migrate::{migrate_dir, migrate_file, migrate_value, recover_migration};
    #[pymodule_export]
    use crate::report::{recover, verify};
}

/// Converts a path for Python the way `os.fsdecode` would (undecodable bytes become
/// surrogates), as a `str`.
pub(crate) fn path_str<'py>(py: Python<'py>, path: &std::path::Path) -> Bound<'py, PyAny> {
    path.as_os_str()
        .into_pyobject(py)
        .expect("an OsStr always converts")
        .into_any()
}
