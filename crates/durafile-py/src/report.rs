//! `verify` and `recover`: the library's checks and crash recovery, with their findings handed
//! to Python as plain data (the Python layer wraps them in report classes).

use std::path::PathBuf;

use durafile::Error;
use durafile::checksum::{self, Candidate, Verification};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::error::{OrRaise, exception};
use crate::path_str;

/// Checks files against their checksum sidecars. Returns one `(path, status, digest,
/// pending, exception)` per file checked; status is "ok", "mismatch", "bad_checksum_file",
/// "missing" (the file is gone), "no_checksum" (a file named explicitly has no sidecar) or
/// "error". Raises nothing for a finding.
#[pyfunction]
#[pyo3(signature = (paths, *, recursive = false))]
pub(crate) fn verify<'py>(
    py: Python<'py>,
    paths: Vec<PathBuf>,
    recursive: bool,
) -> PyResult<Bound<'py, PyList>> {
    let results: Vec<(PathBuf, Result<Verification, Finding>)> = py.detach(|| {
        paths
            .iter()
            .flat_map(|root| {
                checksum::collect(root, recursive)
                    .into_iter()
                    .map(move |c| (root, c))
            })
            .filter_map(|(root, c)| match c {
                Candidate::File { path, explicit } => {
                    let result = checksum::verify(&path).map_err(Finding::Lib);
                    match result {
                        Ok(Verification::NoChecksum) if !explicit => None,
                        other => Some((path, other)),
                    }
                }
                // Reported under the path given, with the unreadable directory in the message.
                Candidate::Unreadable { path, error } => Some((
                    root.clone(),
                    Err(Finding::Walk(format!(
                        "IO error for operation on {}: {error}",
                        path.display()
                    ))),
                )),
            })
            .collect()
    });
    let out = PyList::empty(py);
    for (path, result) in results {
        let entry = match result {
            Ok(Verification::Match { digest, pending }) => (
                "ok",
                Some(checksum::to_hex(&digest)),
                pending,
                py.None().into_bound(py),
            ),
            Ok(Verification::NoChecksum) if !path.exists() => {
                ("missing", None, false, py.None().into_bound(py))
            }
            Ok(Verification::NoChecksum) => ("no_checksum", None, false, py.None().into_bound(py)),
            Err(Finding::Lib(e)) => (status_of(&e), None, false, exception(py, &e)?),
            Err(Finding::Walk(message)) => (
                "error",
                None,
                false,
                pyo3::exceptions::PyOSError::new_err(message)
                    .into_value(py)
                    .into_bound(py)
                    .into_any(),
            ),
        };
        out.append((path_str(py, &path), entry.0, entry.1, entry.2, entry.3))?;
    }
    Ok(out)
}

enum Finding {
    Lib(Error),
    Walk(String),
}

fn status_of(e: &Error) -> &'static str {
    match e {
        Error::ChecksumMismatch { .. } => "mismatch",
        Error::BadChecksumFile { .. } => "bad_checksum_file",
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => "missing",
        _ => "error",
    }
}

/// Recovers `directory` after a crash (see the library's `recover::recover`). Returns a dict:
/// `removed` and `in_use` temp files, `checksums_completed`, `missing`, `busy`, and `damaged`
/// (exceptions, one per file that fails verification; never changed).
#[pyfunction]
#[pyo3(signature = (directory, *, dry_run = false))]
pub(crate) fn recover<'py>(
    py: Python<'py>,
    directory: PathBuf,
    dry_run: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let found = py
        .detach(|| durafile::recover::recover(&directory, dry_run))
        .or_raise(py)?;
    let paths = |list: &[PathBuf]| -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, list.iter().map(|p| path_str(py, p)))
    };
    let out = PyDict::new(py);
    out.set_item("removed", paths(&found.orphans.removed)?)?;
    out.set_item("in_use", paths(&found.orphans.in_use)?)?;
    out.set_item("checksums_completed", paths(&found.checksums_completed)?)?;
    out.set_item("missing", paths(&found.missing)?)?;
    out.set_item("busy", paths(&found.busy)?)?;
    let damaged = PyList::empty(py);
    for e in &found.damaged {
        damaged.append(exception(py, e)?)?;
    }
    out.set_item("damaged", damaged)?;
    Ok(out)
}
