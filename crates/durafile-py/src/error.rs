//! [`durafile::Error`] as Python exceptions.
//!
//! The exception classes live in Python (`durafile/_errors.py`), because they inherit from
//! both `durafile.Error` and the built-in `OSError` subclass that matches the OS error (so
//! `except FileNotFoundError` keeps working); this module hands over the error's parts, and
//! `_errors.from_native` picks the class.

use durafile::{Error, Step};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyDict;

use crate::path_str;

static FROM_NATIVE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// The Python exception for `err`.
pub(crate) fn to_py(py: Python<'_>, err: &Error) -> PyErr {
    match exception(py, err) {
        Ok(value) => PyErr::from_value(value),
        Err(e) => e,
    }
}

/// The exception object for `err` (not raised), for reports that list errors.
pub(crate) fn exception<'py>(py: Python<'py>, err: &Error) -> PyResult<Bound<'py, PyAny>> {
    let from_native = FROM_NATIVE.import(py, "durafile._errors", "from_native")?;
    let extra = PyDict::new(py);
    let kind = match err {
        Error::Io { .. } => "io",
        Error::NotRegularFile { kind, .. } => {
            extra.set_item("file_type", *kind)?;
            "not_regular_file"
        }
        Error::NoFileName { .. } => "no_file_name",
        Error::LockTimeout {
            lock_file, waited, ..
        } => {
            extra.set_item("lock_file", path_str(py, lock_file))?;
            extra.set_item("waited", waited.as_secs_f64())?;
            "lock_timeout"
        }
        Error::ChecksumMismatch {
            expected, actual, ..
        } => {
            extra.set_item("expected", expected)?;
            extra.set_item("actual", actual)?;
            "checksum_mismatch"
        }
        Error::MissingChecksum { sidecar, .. } => {
            extra.set_item("sidecar", path_str(py, sidecar))?;
            "missing_checksum"
        }
        Error::BadChecksumFile {
            sidecar, reason, ..
        } => {
            extra.set_item("sidecar", path_str(py, sidecar))?;
            extra.set_item("reason", reason)?;
            "bad_checksum_file"
        }
        Error::InvalidJson { source, .. } => {
            extra.set_item("line", source.line())?;
            extra.set_item("column", source.column())?;
            "invalid_json"
        }
        Error::Serialize { .. } => "serialize",
        Error::InvalidKey { key, reason } => {
            extra.set_item("key", key)?;
            extra.set_item("reason", *reason)?;
            "invalid_key"
        }
        Error::NoGoodState { newest, .. } => {
            extra.set_item("newest", exception(py, newest)?)?;
            "no_good_state"
        }
        Error::Migration { reason, .. } => {
            extra.set_item("reason", reason)?;
            "migration"
        }
        Error::AlreadyLocked { .. } => "already_locked",
        _ => "other",
    };
    from_native.call1((
        kind,
        err.to_string(),
        err.step().map(step_name),
        path_str(py, err.path()),
        err.io_error().and_then(std::io::Error::raw_os_error),
        err.target_untouched(),
        err.hint(),
        extra,
    ))
}

/// The step's name in Python: the variant in snake case (`CreateTemp` is `"create_temp"`), so
/// steps the library adds later get a name without a change here.
fn step_name(step: Step) -> String {
    let mut name = String::new();
    for (i, c) in format!("{step:?}").chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_lowercase());
    }
    name
}

/// A failure inside an operation that calls back into Python: the library's error, or the
/// exception the Python code raised, which is re-raised unchanged.
pub(crate) enum Failure {
    Lib(Error),
    Py(PyErr),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure::Lib(e)
    }
}

impl From<PyErr> for Failure {
    fn from(e: PyErr) -> Failure {
        Failure::Py(e)
    }
}

impl Failure {
    pub(crate) fn into_py(self, py: Python<'_>) -> PyErr {
        match self {
            Failure::Lib(e) => to_py(py, &e),
            Failure::Py(e) => e,
        }
    }
}

/// `Result<T, durafile::Error>` to `PyResult<T>`.
pub(crate) trait OrRaise<T> {
    fn or_raise(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> OrRaise<T> for Result<T, Error> {
    fn or_raise(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| to_py(py, &e))
    }
}

impl<T> OrRaise<T> for Result<T, Failure> {
    fn or_raise(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| e.into_py(py))
    }
}
