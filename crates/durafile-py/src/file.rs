//! Whole-file operations: `write`, `read`, `update`, the atomic writer behind `durafile.open`,
//! and the lock behind `durafile.lock`. Each releases the GIL for the library call.

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Mutex;

use durafile::lock::{self, FileLock, LockMode};
use durafile::{AtomicFile, Error};
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::pybacked::{PyBackedBytes, PyBackedStr};
use pyo3::types::PyBytes;

use crate::error::{Failure, OrRaise, to_py};
use crate::options::{duration, options};
use crate::path_str;

/// Content given as `bytes`/`bytearray`, or as `str` (written as UTF-8).
pub(crate) enum Data {
    Bytes(PyBackedBytes),
    Str(PyBackedStr),
}

impl Data {
    pub(crate) fn extract(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Data> {
        if let Ok(b) = obj.extract::<PyBackedBytes>() {
            return Ok(Data::Bytes(b));
        }
        obj.extract::<PyBackedStr>().map(Data::Str).map_err(|_| {
            let type_name = obj
                .get_type()
                .name()
                .map_or_else(|_| "?".to_owned(), |n| n.to_string());
            PyTypeError::new_err(format!("{what} must be bytes or str, not {type_name}"))
        })
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            Data::Bytes(b) => b,
            Data::Str(s) => s.as_bytes(),
        }
    }
}

/// Replaces the file at `path` with `data` (bytes, or str written as UTF-8), atomically.
///
/// Readers and crashes see the old content or the new, never a mix. Takes the file's lock
/// (waiting at most `timeout` seconds), writes a temp file beside it, fsyncs it, renames it
/// over the file and, at durability "full", fsyncs the directory. An existing file keeps its
/// mode and owner unless `mode` is given; `checksum=True` keeps a SHA-256 sidecar
/// (`path.sha256`). Raises durafile.Error (an OSError) naming the failed step; on every
/// failure but a directory fsync after the rename the file is untouched and no temp remains.
#[pyfunction]
#[pyo3(signature = (path, data, *, durability = "full", mode = None, checksum = false, timeout = None))]
pub(crate) fn write(
    py: Python<'_>,
    path: PathBuf,
    data: &Bound<'_, PyAny>,
    durability: &str,
    mode: Option<u32>,
    checksum: bool,
    timeout: Option<f64>,
) -> PyResult<()> {
    let opts = options(durability, mode, checksum, timeout)?;
    let data = Data::extract(data, "data")?;
    py.detach(|| durafile::write(&path, data.as_bytes(), &opts))
        .or_raise(py)
}

/// Reads the whole file, verified against its checksum sidecar when it has one.
///
/// `checksum=True` also refuses a file without a sidecar. Corrupt content is never returned:
/// it raises durafile.ChecksumMismatch. With `lock=True` the read waits (at most `timeout`
/// seconds) for a writer's whole read-modify-write to finish; a plain read needs no lock to
/// see one complete version.
#[pyfunction]
#[pyo3(signature = (path, *, checksum = None, lock = false, timeout = None))]
pub(crate) fn read<'py>(
    py: Python<'py>,
    path: PathBuf,
    checksum: Option<bool>,
    lock: bool,
    timeout: Option<f64>,
) -> PyResult<Bound<'py, PyBytes>> {
    let opts = options("full", None, checksum.unwrap_or(false), timeout)?.lock_reads(lock);
    let bytes = py.detach(|| durafile::read(&path, &opts)).or_raise(py)?;
    Ok(PyBytes::new(py, &bytes))
}

/// Replaces the file with `fn(current)`, holding its exclusive lock from the read to the
/// rename, so no concurrent update (thread, process, or the durafile CLI) is lost.
///
/// `fn` gets the current content as bytes (None when the file does not exist) and returns the
/// new content as bytes or str; it runs under the lock. If it raises, the exception propagates
/// unchanged and the file is untouched. Returns the new content.
#[pyfunction]
#[pyo3(signature = (path, r#fn, *, durability = "full", mode = None, checksum = false, timeout = None))]
pub(crate) fn update<'py>(
    py: Python<'py>,
    path: PathBuf,
    r#fn: Py<PyAny>,
    durability: &str,
    mode: Option<u32>,
    checksum: bool,
    timeout: Option<f64>,
) -> PyResult<Bound<'py, PyBytes>> {
    let opts = options(durability, mode, checksum, timeout)?;
    let mut produced: Option<Py<PyBytes>> = None;
    py.detach(|| {
        durafile::update(&path, &opts, |current| {
            Python::attach(|py| -> Result<Vec<u8>, Failure> {
                let arg = current.map(|b| PyBytes::new(py, b));
                let out = r#fn.bind(py).call1((arg,))?;
                let data = Data::extract(&out, "the value fn returns")?;
                let bytes = data.as_bytes().to_vec();
                produced = Some(match data {
                    Data::Bytes(_) if out.is_exact_instance_of::<PyBytes>() => {
                        out.cast_into::<PyBytes>().map_err(PyErr::from)?.unbind()
                    }
                    _ => PyBytes::new(py, &bytes).unbind(),
                });
                Ok(bytes)
            })
        })
    })
    .or_raise(py)?;
    Ok(produced
        .expect("a successful update called fn")
        .into_bound(py))
}

/// The new version of a file, written in pieces and published at once by `commit()`; the
/// native half of `durafile.open`. Holds the file's exclusive lock from creation until
/// `commit()` or `discard()`.
#[pyclass(module = "durafile._native")]
pub(crate) struct AtomicWriter {
    file: Mutex<Option<AtomicFile>>,
    path: PathBuf,
    temp: PathBuf,
}

impl AtomicWriter {
    /// Runs `f` on the open file with the GIL released; ValueError once it is closed.
    fn with_file<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut AtomicFile) -> Result<T, Error> + Send,
    ) -> PyResult<T> {
        py.detach(|| {
            let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
            guard.as_mut().map(f)
        })
        .ok_or_else(closed)?
        .or_raise(py)
    }

    /// Takes the file out for its last operation; ValueError if that already happened.
    fn take(&self) -> PyResult<AtomicFile> {
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        guard.take().ok_or_else(closed)
    }
}

fn closed() -> PyErr {
    PyValueError::new_err("I/O operation on a committed or discarded durafile writer")
}

/// A write error of the atomic file carries the library's error (step, path, hint) inside.
fn write_error(e: io::Error, path: &std::path::Path) -> Error {
    match e.into_inner().map(|inner| inner.downcast::<Error>()) {
        Some(Ok(err)) => *err,
        Some(Err(other)) => Error::Io {
            step: durafile::Step::Write,
            path: path.to_path_buf(),
            source: io::Error::other(other),
            advice: None,
        },
        None => Error::Io {
            step: durafile::Step::Write,
            path: path.to_path_buf(),
            source: io::Error::other("write failed"),
            advice: None,
        },
    }
}

#[pymethods]
impl AtomicWriter {
    #[new]
    #[pyo3(signature = (path, *, durability = "full", mode = None, checksum = false, timeout = None))]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        durability: &str,
        mode: Option<u32>,
        checksum: bool,
        timeout: Option<f64>,
    ) -> PyResult<AtomicWriter> {
        let opts = options(durability, mode, checksum, timeout)?;
        let file = py.detach(|| AtomicFile::new(&path, &opts)).or_raise(py)?;
        Ok(AtomicWriter {
            temp: file.temp_path().to_path_buf(),
            path,
            file: Mutex::new(Some(file)),
        })
    }

    /// Appends `data` (bytes-like) to the new content; returns its length.
    fn write(&self, py: Python<'_>, data: PyBackedBytes) -> PyResult<usize> {
        let path = &self.path;
        self.with_file(py, |f| {
            f.write_all(&data).map_err(|e| write_error(e, path))?;
            Ok(data.len())
        })
    }

    /// The file's current content (verified against its sidecar), None if it does not exist.
    /// No durafile writer can change it before this writer commits or discards.
    fn read_current<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let current = self.with_file(py, |f| f.read_current())?;
        Ok(current.map(|b| PyBytes::new(py, &b)))
    }

    /// Publishes the new content: fsync, rename, directory fsync, then releases the lock.
    fn commit(&self, py: Python<'_>) -> PyResult<()> {
        let file = self.take()?;
        py.detach(|| file.commit()).or_raise(py)
    }

    /// Throws the new content away and releases the lock; the file is untouched.
    fn discard(&self, py: Python<'_>) -> PyResult<()> {
        let file = self.take()?;
        py.detach(|| file.discard()).or_raise(py)
    }

    /// Whether the writer was committed or discarded.
    #[getter]
    fn closed(&self) -> bool {
        self.file
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none()
    }

    /// The path the writer replaces.
    #[getter]
    fn path<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        path_str(py, &self.path)
    }

    /// The temp file the new content goes to until the commit.
    #[getter]
    fn temp_path<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        path_str(py, &self.temp)
    }
}

/// A path's durafile lock: the same `.NAME.lock` flock every durafile writer, the CLI and
/// `flock(1)` take. The native half of `durafile.lock`.
#[pyclass(module = "durafile._native")]
pub(crate) struct Lock {
    path: PathBuf,
    mode: LockMode,
    timeout: Option<std::time::Duration>,
    held: Mutex<Option<FileLock>>,
}

#[pymethods]
impl Lock {
    #[new]
    #[pyo3(signature = (path, *, shared = false, timeout = None))]
    fn new(path: PathBuf, shared: bool, timeout: Option<f64>) -> PyResult<Lock> {
        Ok(Lock {
            path,
            mode: if shared {
                LockMode::Shared
            } else {
                LockMode::Exclusive
            },
            timeout: timeout.map(duration).transpose()?,
            held: Mutex::new(None),
        })
    }

    /// Takes the lock, waiting at most `timeout` seconds (forever without one).
    fn acquire(&self, py: Python<'_>) -> PyResult<()> {
        if self.locked() {
            return Err(PyRuntimeError::new_err(
                "this durafile lock is already held",
            ));
        }
        let taken = py
            .detach(|| lock::acquire(&self.path, self.mode, self.timeout))
            .or_raise(py)?;
        *self.held.lock().unwrap_or_else(|p| p.into_inner()) = Some(taken);
        Ok(())
    }

    /// Releases the lock (nothing happens if it is not held).
    fn release(&self) {
        self.held.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// Whether this object holds the lock.
    #[getter]
    fn locked(&self) -> bool {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// The sidecar lock file (`dir/.NAME.lock`).
    #[getter]
    fn lock_file<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let file = py
            .detach(|| lock::lock_file_path(&self.path))
            .map_err(|e| to_py(py, &e))?;
        Ok(path_str(py, &file))
    }

    fn __enter__(slf: PyRef<'_, Self>, py: Python<'_>) -> PyResult<Py<Lock>> {
        slf.acquire(py)?;
        Ok(slf.into())
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.release();
        false
    }
}
