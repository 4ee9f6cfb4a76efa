//! The native half of `durafile.BatchProcessor`: the library's batches (many documents on a
//! thread pool, locks in a global order, group commit) run with the GIL released.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use durafile::batch::{BatchProcessor, Op, Outcome, Progress};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyList;
use serde_json::Value;

use crate::error::exception;
use crate::options::file_manager;

/// A flag that stops a running batch before its next document.
#[pyclass(module = "durafile._native")]
#[derive(Default)]
pub(crate) struct CancelFlag(Arc<AtomicBool>);

#[pymethods]
impl CancelFlag {
    #[new]
    fn new() -> CancelFlag {
        CancelFlag::default()
    }

    /// Asks the batch to stop: documents not yet started are reported "cancelled".
    fn set(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether `set()` was called.
    fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Runs `ops`, each `("write" | "merge", path, json_text)`, and returns one
/// `(status, exception_or_None)` per operation, in order; status is "applied", "failed" or
/// "cancelled". `progress(done, total)` is called after each group commits.
#[pyfunction]
#[pyo3(signature = (ops, *, workers = None, group_size = 256, durability = "full", checksum = false, timeout = None, pretty = false, progress = None, cancel = None))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_batch<'py>(
    py: Python<'py>,
    ops: Vec<(String, PathBuf, String)>,
    workers: Option<usize>,
    group_size: usize,
    durability: &str,
    checksum: bool,
    timeout: Option<f64>,
    pretty: bool,
    progress: Option<Py<PyAny>>,
    cancel: Option<PyRef<'py, CancelFlag>>,
) -> PyResult<Bound<'py, PyList>> {
    let mut processor = BatchProcessor::new(file_manager(durability, checksum, timeout, pretty)?)
        .group_size(group_size);
    if let Some(n) = workers {
        processor = processor.workers(n);
    }
    let ops = ops
        .into_iter()
        .enumerate()
        .map(|(i, (kind, path, text))| {
            let value: Value = serde_json::from_str(&text).map_err(|e| {
                PyValueError::new_err(format!("operation {i}: not valid JSON: {e}"))
            })?;
            match kind.as_str() {
                "write" => Ok(Op::Write { path, value }),
                "merge" => Ok(Op::Merge { path, patch: value }),
                other => Err(PyValueError::new_err(format!(
                    "operation {i}: unknown kind {other:?} (expected \"write\" or \"merge\")"
                ))),
            }
        })
        .collect::<PyResult<Vec<Op>>>()?;
    let cancel = cancel.map_or_else(|| Arc::new(AtomicBool::new(false)), |c| c.0.clone());
    let on_progress = |p: Progress| {
        if let Some(callback) = &progress {
            Python::attach(|py| {
                // A batch cannot be stopped half-way by an exception; Python reports it.
                if let Err(e) = callback.bind(py).call1((p.done, p.total)) {
                    e.write_unraisable(py, Some(callback.bind(py)));
                }
            });
        }
    };
    let report = py.detach(|| processor.run_with(ops, &on_progress, &cancel));
    let out = PyList::empty(py);
    for outcome in &report.outcomes {
        match outcome {
            Outcome::Applied => out.append(("applied", py.None()))?,
            Outcome::Failed(e) => out.append(("failed", exception(py, e)?))?,
            // In place, like a single write whose directory fsync failed: not a failure.
            Outcome::AppliedDurabilityUnknown(e) => {
                out.append(("applied_durability_unknown", exception(py, e)?))?
            }
            Outcome::Cancelled => out.append(("cancelled", py.None()))?,
        }
    }
    Ok(out)
}
