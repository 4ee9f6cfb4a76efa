//! Typed JSON files on the hardened I/O: every read verified, every write atomic, durable,
//! locked and checksummed as the [`Options`] say, and every read-modify-write free of lost
//! updates.
//!
//! Serialisation streams straight into the atomic temp file (through its buffer), so writing
//! a large document never holds a second, serialised copy of it in memory. Reads load the
//! verified bytes and parse them in one pass; a parse error names the file, line and column.

use std::io::Write;
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::atomic::AtomicFile;
use crate::error::{Error, Result};
use crate::options::Options;

/// Reads and writes typed JSON files.
///
/// # Examples
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use durafile::{FileManager, Options};
///
/// #[derive(Serialize, Deserialize, Default, PartialEq, Debug)]
/// struct Config { retries: u32, endpoint: String }
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("config.json");
/// let files = FileManager::new(Options::new().checksum(true)).pretty(true);
/// files.write_json_file(&path, &Config { retries: 3, endpoint: "https://x".into() })?;
/// files.update_json_file(&path, |c: &mut Config| {
///     c.retries += 1;
///     Ok::<_, durafile::Error>(())
/// })?;
/// let config: Config = files.read_json_file(&path)?;
/// assert_eq!(config.retries, 4);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct FileManager {
    opts: Options,
    pretty: bool,
}

impl FileManager {
    /// A manager that writes and reads with `opts`, compact JSON.
    pub fn new(opts: Options) -> FileManager {
        FileManager {
            opts,
            pretty: false,
        }
    }

    /// Writes indented JSON (easier to read and diff) instead of compact JSON.
    #[must_use]
    pub fn pretty(mut self, yes: bool) -> FileManager {
        self.pretty = yes;
        self
    }

    /// The options every operation uses.
    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// Reads `path` as a `T`, after verifying it against its checksum sidecar if it has one.
    ///
    /// # Errors
    ///
    /// As [`crate::read()`], and [`Error::InvalidJson`] (with line and column) when the
    /// content is not a valid `T`.
    pub fn read_json_file<T: DeserializeOwned>(&self, path: impl AsRef<Path>) -> Result<T> {
        let path = path.as_ref();
        #[cfg(feature = "s3")]
        if crate::remote::is_url(path) {
            let (store, key) = crate::remote::locate_object(path)?;
            return parse(path, &store.read(&key, self.opts.get_checksum())?);
        }
        let bytes = crate::read(path, &self.opts)?;
        parse(path, &bytes)
    }

    /// Replaces `path` with `value` as JSON, atomically.
    ///
    /// # Errors
    ///
    /// As [`crate::write()`], and [`Error::Serialize`] when `value` has no JSON form; the
    /// target is then untouched.
    pub fn write_json_file<T: Serialize + ?Sized>(
        &self,
        path: impl AsRef<Path>,
        value: &T,
    ) -> Result<()> {
        #[cfg(feature = "s3")]
        if crate::remote::is_url(path.as_ref()) {
            let (store, key) = crate::remote::locate_object(path.as_ref())?;
            return store.write(&key, &self.to_bytes(path.as_ref(), value)?);
        }
        let mut file = AtomicFile::new(path, &self.opts)?;
        self.serialize_into(&mut file, value)?;
        file.commit()
    }

    /// Changes the document at `path` in place, holding its exclusive lock from the read to
    /// the rename so that no concurrent update is lost. A missing file starts as
    /// `T::default()`. When `f` fails, nothing is written and its error is returned.
    ///
    /// On a local file `f` runs exactly once. On an `s3://` object (feature `s3`) it runs
    /// again whenever another writer changed the object first (see `remote`), so it must
    /// only compute the new document, with no side effects.
    ///
    /// # Errors
    ///
    /// `f`'s error, or (converted into `E`) any error of reading, parsing or writing.
    pub fn update_json_file<T, R, E, F>(&self, path: impl AsRef<Path>, mut f: F) -> Result<R, E>
    where
        T: Serialize + DeserializeOwned + Default,
        F: FnMut(&mut T) -> Result<R, E>,
        E: From<Error>,
    {
        let path = path.as_ref();
        let apply = |current: Option<&[u8]>| {
            let mut value = match current {
                Some(bytes) => parse(path, bytes)?,
                None => T::default(),
            };
            let result = f(&mut value)?;
            Ok((self.to_bytes(path, &value)?, result))
        };
        #[cfg(feature = "s3")]
        if crate::remote::is_url(path) {
            let (store, key) = crate::remote::locate_object(path)?;
            return store.update_with(&key, self.opts.get_checksum(), apply);
        }
        // Concurrent updates of one file in this process share a commit (see group_commit).
        crate::group_commit::update_returning(path, &self.opts, apply)
    }

    /// The bytes `write_json_file` would write for `value`.
    pub(crate) fn to_bytes<T: Serialize + ?Sized>(
        &self,
        path: &Path,
        value: &T,
    ) -> Result<Vec<u8>> {
        let bytes = if self.pretty {
            serde_json::to_vec_pretty(value)
        } else {
            serde_json::to_vec(value)
        };
        let mut bytes = bytes.map_err(|source| Error::Serialize {
            path: path.to_path_buf(),
            source,
        })?;
        bytes.push(b'\n');
        Ok(bytes)
    }

    /// Serialises into the atomic file. A failure of the file itself is left for its commit
    /// to report (with step, path and hint); a value with no JSON form is reported here.
    pub(crate) fn serialize_into<T: Serialize + ?Sized>(
        &self,
        file: &mut AtomicFile,
        value: &T,
    ) -> Result<()> {
        let written = if self.pretty {
            serde_json::to_writer_pretty(&mut *file, value)
        } else {
            serde_json::to_writer(&mut *file, value)
        };
        match written {
            Err(e) if !e.is_io() => Err(Error::Serialize {
                path: file.path().to_path_buf(),
                source: e,
            }),
            // An I/O error is remembered by the file and reported by its commit.
            _ => {
                let _ = file.write_all(b"\n");
                Ok(())
            }
        }
    }
}

/// Parses `bytes` read from `path` as a `T`.
pub(crate) fn parse<T: DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|source| Error::InvalidJson {
        path: path.to_path_buf(),
        source,
    })
}
