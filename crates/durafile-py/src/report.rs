//! `verify` and `recover`: the library's checks and crash recovery, with their findings handed
//! to Python as plain data (the Python layer wraps them in report classes).

use std::path::PathBuf;

use durafile::Error;
use durafile::checksum::{self, Verification};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::error::{OrRaise, exception};
use crate::path_str;

/// A file to check, and whether it was named (then a missing sidecar is a finding).
struct Candidate {
    path: PathBuf,
    explicit: bool,
}

/// The files to check: each file named (a sidecar stands for its data file), and in each
/// directory every file that has a sidecar, descending with `recursive`; the same set as
/// `durafile verify`.
fn collect(
    paths: &[PathBuf],
    recursive: bool,
) -> Vec<Result<Candidate, (PathBuf, walkdir::Error)>> {
    let mut found = Vec::new();
    for path in paths {
        if !path.is_dir() {
            found.push(Ok(Candidate {
                path: checksum::checksummed_file(path).unwrap_or_else(|| path.clone()),
                explicit: true,
            }));
            continue;
        }
        let walk = walkdir::WalkDir::new(path)
            .max_depth(if recursive { usize::MAX } else { 1 })
            .sort_by_file_name();
        for entry in walk {
            match entry {
                Ok(entry) if entry.file_type().is_file() => {
                    if let Some(data) = checksum::checksummed_file(entry.path()) {
                        found.push(Ok(Candidate {
                            path: data,
                            explicit: false,
                        }));
                    }
                }
                Ok(_) => {}
                Err(e) => found.push(Err((path.clone(), e))),
            }
        }
    }
    found
}

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
        collect(&paths, recursive)
            .into_iter()
            .filter_map(|c| match c {
                Ok(c) => {
                    let result = checksum::verify(&c.path).map_err(Finding::Lib);
                    match result {
                        Ok(Verification::NoChecksum) if !c.explicit => None,
                        other => Some((c.path, other)),
                    }
                }
                Err((path, e)) => Some((path, Err(Finding::Walk(e.to_string())))),
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
