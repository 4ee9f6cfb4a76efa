//! The native half of `durafile.Migrator`: the library's migrations (one file under its lock,
//! or a directory all or nothing with its journal) with Python callables as steps.
//!
//! A step is called with the document as JSON text and returns JSON text (the Python layer
//! decodes and encodes with the `json` module). An exception a step raises is kept and raised
//! again, unchanged, once the library has undone the migration; the library only sees that
//! the step failed.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use durafile::migrate::Migrator;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use serde_json::Value;

use crate::error::OrRaise;
use crate::options::file_manager;

/// The first exception a Python step or callback raised during one call.
#[derive(Clone, Default)]
struct Raised(Arc<Mutex<Option<PyErr>>>);

impl Raised {
    fn keep(&self, err: PyErr) {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert(err);
    }

    /// The kept exception, if any, instead of the library's error about it.
    fn or(&self, py: Python<'_>, err: durafile::Error) -> PyErr {
        let kept = self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
        match kept {
            Some(e) => {
                // Where Python has notes (3.11+), say what the failure interrupted.
                let value = e.value(py);
                if value.hasattr("add_note").unwrap_or(false) {
                    let _ = value.call_method1("add_note", (format!("durafile: {err}"),));
                }
                e
            }
            None => crate::error::to_py(py, &err),
        }
    }
}

/// The library's migrator with `steps` (`(version, callable)` pairs) calling into Python.
fn migrator(py: Python<'_>, field: &str, steps: &[(u64, Py<PyAny>)], raised: &Raised) -> Migrator {
    let mut migrator = Migrator::new().field(field);
    for (to, step) in steps {
        let step = step.clone_ref(py);
        let raised = raised.clone();
        migrator = migrator.step(*to, move |doc: Value| {
            Python::attach(|py| {
                let text = serde_json::to_string(&doc)?;
                let out = step
                    .bind(py)
                    .call1((text,))
                    .and_then(|o| o.extract::<String>());
                match out {
                    Ok(text) => Ok(serde_json::from_str(&text)?),
                    Err(e) => {
                        let message = e.to_string();
                        raised.keep(e);
                        Err(message.into())
                    }
                }
            })
        });
    }
    migrator
}

/// Migrates the JSON text `document` (from `path`, for messages) to version `to` (default:
/// the latest step); returns the migrated JSON text and the version it had.
#[pyfunction]
#[pyo3(signature = (document, steps, *, field = "schema_version", to = None, path = "<document>"))]
pub(crate) fn migrate_value(
    py: Python<'_>,
    document: &str,
    steps: Vec<(u64, Py<PyAny>)>,
    field: &str,
    to: Option<u64>,
    path: &str,
) -> PyResult<(String, u64)> {
    let raised = Raised::default();
    let migrator = migrator(py, field, &steps, &raised);
    let doc: Value = serde_json::from_str(document)
        .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
    let (doc, from) = py
        .detach(|| migrator.migrate_value(doc, to, Path::new(path)))
        .map_err(|e| raised.or(py, e))?;
    Ok((doc.to_string(), from))
}

/// Migrates one file in place under its lock; returns `(from, to)`.
#[pyfunction]
#[pyo3(signature = (path, steps, *, field = "schema_version", to = None, durability = "full", checksum = false, timeout = None, pretty = false))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn migrate_file(
    py: Python<'_>,
    path: PathBuf,
    steps: Vec<(u64, Py<PyAny>)>,
    field: &str,
    to: Option<u64>,
    durability: &str,
    checksum: bool,
    timeout: Option<f64>,
    pretty: bool,
) -> PyResult<(u64, u64)> {
    let files = file_manager(durability, checksum, timeout, pretty)?;
    let raised = Raised::default();
    let migrator = migrator(py, field, &steps, &raised);
    let done = py
        .detach(|| migrator.migrate_file(&path, &files, to))
        .map_err(|e| raised.or(py, e))?;
    Ok((done.from, done.to))
}

/// Migrates every document of the directory, all or nothing; returns a dict with `to`,
/// `migrated` (`(key, from)` pairs), `current`, `conflicts` and `resumed`.
#[pyfunction]
#[pyo3(signature = (directory, steps, *, field = "schema_version", to = None, dry_run = false, progress = None, durability = "full", checksum = false, timeout = None, pretty = false))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn migrate_dir<'py>(
    py: Python<'py>,
    directory: PathBuf,
    steps: Vec<(u64, Py<PyAny>)>,
    field: &str,
    to: Option<u64>,
    dry_run: bool,
    progress: Option<Py<PyAny>>,
    durability: &str,
    checksum: bool,
    timeout: Option<f64>,
    pretty: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let files = file_manager(durability, checksum, timeout, pretty)?;
    let raised = Raised::default();
    let migrator = migrator(py, field, &steps, &raised);
    let report = py
        .detach(|| {
            let docs = durafile::DataHandler::open(directory, files)?;
            let progress = |phase: &str, done: usize, total: usize| {
                if let Some(callback) = &progress {
                    Python::attach(|py| {
                        // A progress callback cannot stop a migration half-way; its error is
                        // reported the way Python reports errors it cannot raise.
                        if let Err(e) = callback.bind(py).call1((phase, done, total)) {
                            e.write_unraisable(py, Some(callback.bind(py)));
                        }
                    });
                }
            };
            migrator.migrate_dir(&docs, to, dry_run, &progress)
        })
        .map_err(|e| raised.or(py, e))?;
    let out = PyDict::new(py);
    out.set_item("to", report.to)?;
    out.set_item("migrated", report.migrated)?;
    out.set_item("current", report.current)?;
    out.set_item("conflicts", report.conflicts)?;
    out.set_item("resumed", report.resumed)?;
    Ok(out)
}

/// Finishes or undoes a directory migration a crash interrupted; None when there was none,
/// else the keys left unmigrated because someone changed them meanwhile.
#[pyfunction]
#[pyo3(signature = (directory, *, durability = "full", checksum = false, timeout = None))]
pub(crate) fn recover_migration(
    py: Python<'_>,
    directory: PathBuf,
    durability: &str,
    checksum: bool,
    timeout: Option<f64>,
) -> PyResult<Option<Vec<String>>> {
    let files = file_manager(durability, checksum, timeout, false)?;
    py.detach(|| {
        let docs = durafile::DataHandler::open(&directory, files)?;
        Migrator::recover_dir(&docs)
    })
    .or_raise(py)
}
