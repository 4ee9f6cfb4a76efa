//! The native halves of `durafile.DataHandler` and `durafile.StateManager`: key checks,
//! listing, deleting, generations and rollback are the library's; JSON text comes from and
//! goes to Python's `json` module, passed through the library verbatim (`RawValue`).

use std::path::PathBuf;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;
use pyo3::types::PyList;
use serde_json::value::RawValue;

use crate::error::{OrRaise, exception};
use crate::options::file_manager;
use crate::path_str;

/// Keyed JSON documents in one directory (`DIR/KEY.json`).
#[pyclass(module = "durafile._native")]
pub(crate) struct DataHandler {
    inner: durafile::DataHandler,
}

#[pymethods]
impl DataHandler {
    /// Opens `directory`, creating it if needed.
    #[new]
    #[pyo3(signature = (directory, *, durability = "full", checksum = false, timeout = None))]
    fn new(
        py: Python<'_>,
        directory: PathBuf,
        durability: &str,
        checksum: bool,
        timeout: Option<f64>,
    ) -> PyResult<DataHandler> {
        let files = file_manager(durability, checksum, timeout, false)?;
        let inner = py
            .detach(|| durafile::DataHandler::open(directory, files))
            .or_raise(py)?;
        Ok(DataHandler { inner })
    }

    /// The file that holds `key`'s document; durafile.InvalidKey for a key that could escape
    /// the directory or collide with durafile's own files.
    fn path_of<'py>(&self, py: Python<'py>, key: &str) -> PyResult<Bound<'py, PyAny>> {
        let path = self.inner.path_of(key).or_raise(py)?;
        Ok(path_str(py, &path))
    }

    /// Deletes `key`'s document and its sidecar under its lock; returns whether it existed.
    fn delete(&self, py: Python<'_>, key: &str) -> PyResult<bool> {
        py.detach(|| self.inner.delete(key)).or_raise(py)
    }

    /// The keys of every document, sorted.
    fn list(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        py.detach(|| self.inner.list()).or_raise(py)
    }

    /// The directory.
    #[getter]
    fn directory<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        path_str(py, self.inner.dir())
    }
}

/// An application state saved in numbered generations (`DIR/NAME.N.json`).
#[pyclass(module = "durafile._native")]
pub(crate) struct StateManager {
    inner: durafile::StateManager,
}

#[pymethods]
impl StateManager {
    #[new]
    #[pyo3(signature = (directory, *, name = "state", keep = 3, durability = "full", checksum = false, timeout = None))]
    fn new(
        py: Python<'_>,
        directory: PathBuf,
        name: &str,
        keep: usize,
        durability: &str,
        checksum: bool,
        timeout: Option<f64>,
    ) -> PyResult<StateManager> {
        let files = file_manager(durability, checksum, timeout, false)?;
        let inner = py
            .detach(|| {
                durafile::StateManager::open(directory, files)?
                    .name(name)
                    .map(|s| s.keep(keep))
            })
            .or_raise(py)?;
        Ok(StateManager { inner })
    }

    /// Saves the JSON text `document` as a new generation; returns its number.
    fn save(&self, py: Python<'_>, document: PyBackedStr) -> PyResult<u64> {
        let raw = RawValue::from_string(document.to_string())
            .map_err(|e| PyValueError::new_err(format!("not valid JSON: {e}")))?;
        py.detach(|| self.inner.save_current_state(&*raw))
            .or_raise(py)
    }

    /// The newest generation that reads, verifies and parses: `(json_text, generation,
    /// skipped)`, skipped listing `(generation, exception)` for newer ones that failed; None
    /// when nothing was saved.
    #[allow(clippy::type_complexity)]
    fn load<'py>(&self, py: Python<'py>) -> PyResult<Option<(String, u64, Bound<'py, PyList>)>> {
        let loaded = py
            .detach(|| self.inner.load_current_state::<Box<RawValue>>())
            .or_raise(py)?;
        let Some(loaded) = loaded else {
            return Ok(None);
        };
        let skipped = PyList::empty(py);
        for (generation, err) in &loaded.skipped {
            skipped.append((generation, exception(py, err)?))?;
        }
        Ok(Some((
            loaded.state.get().to_owned(),
            loaded.generation,
            skipped,
        )))
    }

    /// Generation `number`'s JSON text.
    fn load_generation(&self, py: Python<'_>, number: u64) -> PyResult<String> {
        py.detach(|| self.inner.load_generation::<Box<RawValue>>(number))
            .or_raise(py)
            .map(|raw| raw.get().to_owned())
    }

    /// The generations on disk, newest first, as `(number, path)`.
    fn history<'py>(&self, py: Python<'py>) -> PyResult<Vec<(u64, Bound<'py, PyAny>)>> {
        let found = py.detach(|| self.inner.history()).or_raise(py)?;
        Ok(found
            .iter()
            .map(|g| (g.number, path_str(py, &g.path)))
            .collect())
    }

    /// Makes generation `number` current again as a new generation; returns its number.
    fn rollback(&self, py: Python<'_>, number: u64) -> PyResult<u64> {
        py.detach(|| self.inner.rollback(number)).or_raise(py)
    }

    /// The state directory.
    #[getter]
    fn directory<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        path_str(py, self.inner.dir())
    }
}
