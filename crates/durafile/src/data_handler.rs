//! A directory of keyed JSON documents, `DIR/KEY.json`, each with every guarantee of a
//! single durafile write.
//!
//! Keys come from users and programs, so they are checked before they touch the
//! filesystem: a key names exactly one file directly inside the directory, never a path
//! elsewhere, never a hidden file, never one of durafile's own temp, lock or checksum files.
//! A refused key is an [`Error::InvalidKey`] and nothing is read or written.
//!
//! With the `s3` feature, the directory may be an `s3://bucket/prefix` URL: each document is
//! then the object `prefix/KEY.json`, keys are validated the same way, and updates are
//! compare-and-swap (see `remote`).

use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::checksum;
use crate::error::{Error, Result, Step};
use crate::file_manager::FileManager;
use crate::lock::{self, LockMode};
use crate::options::Durability;
use crate::sys;
use crate::target::Target;

/// The longest key accepted, in bytes: with `.json` and durafile's temp suffix it stays well
/// inside the 255-byte file-name limit of common filesystems.
pub const MAX_KEY_LEN: usize = 200;

const EXTENSION: &str = ".json";

/// Keyed JSON documents in one directory.
///
/// # Examples
///
/// ```
/// use durafile::{DataHandler, FileManager, Options};
///
/// let dir = tempfile::tempdir()?;
/// let users = DataHandler::open(dir.path(), FileManager::new(Options::new()))?;
/// users.save("alice", &serde_json::json!({"quota": 10}))?;
/// users.save("bob", &serde_json::json!({"quota": 5}))?;
/// let alice: serde_json::Value = users.load("alice")?;
/// assert_eq!(alice["quota"], 10);
/// assert_eq!(users.list()?, ["alice", "bob"]);
/// assert!(users.save("../etc/passwd", &1).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct DataHandler {
    dir: PathBuf,
    files: FileManager,
}

impl DataHandler {
    /// Opens the directory `dir`, creating it (and its parents) if needed. With the `s3`
    /// feature `dir` may be an `s3://bucket/prefix` URL (nothing is created).
    ///
    /// # Errors
    ///
    /// At [`Step::CreateDir`] when the directory cannot be created.
    pub fn open(dir: impl Into<PathBuf>, files: FileManager) -> Result<DataHandler> {
        let dir = dir.into();
        #[cfg(feature = "s3")]
        if crate::remote::is_url(&dir) {
            crate::remote::locate(&dir)?;
            return Ok(DataHandler { dir, files });
        }
        sys::create_dir_all(&dir, 0o777).map_err(|e| Error::io(Step::CreateDir, &dir, e))?;
        Ok(DataHandler { dir, files })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file manager (and so the options) every document goes through.
    pub fn files(&self) -> &FileManager {
        &self.files
    }

    /// The file that holds `key`'s document.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] for a key that [`validate_key`] refuses.
    pub fn path_of(&self, key: &str) -> Result<PathBuf> {
        validate_key(key)?;
        Ok(self.dir.join(format!("{key}{EXTENSION}")))
    }

    /// Saves `value` under `key`, replacing any earlier document atomically.
    pub fn save<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<()> {
        self.files.write_json_file(self.path_of(key)?, value)
    }

    /// Loads `key`'s document, verified and parsed.
    ///
    /// # Errors
    ///
    /// At [`Step::Read`] with NotFound when there is no such document; see
    /// [`FileManager::read_json_file`] for the rest.
    pub fn load<T: DeserializeOwned>(&self, key: &str) -> Result<T> {
        self.files.read_json_file(self.path_of(key)?)
    }

    /// Changes `key`'s document in place with no lost update (see
    /// [`FileManager::update_json_file`]; on an object store `f` may run more than once).
    pub fn update<T, R, E, F>(&self, key: &str, f: F) -> Result<R, E>
    where
        T: Serialize + DeserializeOwned + Default,
        F: FnMut(&mut T) -> Result<R, E>,
        E: From<Error>,
    {
        let path = self.path_of(key)?;
        self.files.update_json_file(path, f)
    }

    /// Saves `value` at an explicit `path` (anywhere, not a key), with the same guarantees.
    pub fn save_to_path<T: Serialize + ?Sized>(
        &self,
        path: impl AsRef<Path>,
        value: &T,
    ) -> Result<()> {
        self.files.write_json_file(path, value)
    }

    /// Deletes `key`'s document and its checksum sidecar, under its exclusive lock so that no
    /// write or update is cut in half. Returns whether there was a document.
    ///
    /// A file at the sidecar's name that is not durafile's (a user's own `sha256sum` list) is
    /// left as it is. A document that is a symbolic link loses the link only: the file it
    /// points to, and that file's sidecar, stay.
    ///
    /// # Errors
    ///
    /// [`Error::ChecksumFileRefused`] when a link, a FIFO or another user's file is at the
    /// sidecar's name, as a write would refuse it; nothing is deleted then.
    pub fn delete(&self, key: &str) -> Result<bool> {
        let path = self.path_of(key)?;
        #[cfg(feature = "s3")]
        if crate::remote::is_url(&path) {
            let (store, key) = crate::remote::locate_object(&path)?;
            return store.delete(&key);
        }
        let opts = self.files.options();
        let mut target = Target::resolve(&path)?;
        target.pin_dir(Step::Remove)?;
        let _lock = lock::lock_target(&target, LockMode::Exclusive, opts.get_lock_timeout())?;
        // Under the lock: still a regular file (or gone), and whose it is, for the sidecar's
        // owner check.
        target.refresh()?;
        // A path that resolved to itself has no link in it, and `refresh` just refused a link
        // at the name: only a path that resolved elsewhere needs a look at its last component.
        let linked = target.resolved != path
            && fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink());
        let sync_err = |e| Error::io(Step::SyncDir, &path, e);
        let full = opts.get_durability() == Durability::Full;
        if linked {
            let existed =
                sys::remove_if_exists(&path).map_err(|e| Error::io(Step::Remove, &path, e))?;
            if existed && full {
                sys::sync_dir(&self.dir).map_err(sync_err)?;
            }
            return Ok(existed);
        }
        // Judge the sidecar before anything goes: a refused one stops the delete here. The
        // lock we hold keeps it as it was judged until it is removed.
        let sidecar = checksum::load_sidecar(&target, Step::Remove)?;
        let existed = target.with_dir(Step::Remove, |dir| {
            sys::remove_at(dir, &target.name).map_err(|e| Error::io(Step::Remove, &path, e))
        })?;
        checksum::remove_loaded(&target, Step::Remove, &sidecar)?;
        if existed && full {
            // The directory the data file was removed from, pinned and checked at resolve.
            target.with_dir(Step::SyncDir, |dir| {
                sys::sync_dir_file(dir).map_err(sync_err)
            })?;
        }
        Ok(existed)
    }

    /// The keys of every document, sorted.
    pub fn list(&self) -> Result<Vec<String>> {
        #[cfg(feature = "s3")]
        if crate::remote::is_url(&self.dir) {
            let (store, prefix) = crate::remote::locate(&self.dir)?;
            let names = store.list(&prefix)?.into_iter();
            let keys = names.filter_map(|n| n.strip_suffix(EXTENSION).map(str::to_owned));
            return Ok(keys.filter(|k| validate_key(k).is_ok()).collect());
        }
        let err = |e| Error::io(Step::ReadDir, &self.dir, e);
        let mut keys = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(err)? {
            let entry = entry.map_err(err)?;
            let name = entry.file_name();
            let Some(key) = name.to_str().and_then(|n| n.strip_suffix(EXTENSION)) else {
                continue;
            };
            // Following symlinks: a linked document is loaded through its link, so it is listed.
            if validate_key(key).is_ok() && fs::metadata(entry.path()).is_ok_and(|m| m.is_file()) {
                keys.push(key.to_owned());
            }
        }
        keys.sort();
        Ok(keys)
    }
}

/// Checks that `key` can name a document: not empty, at most [`MAX_KEY_LEN`] bytes, no `/`,
/// `\`, NUL or control character, no `..`, not hidden (a leading `.`), and not ending like one
/// of durafile's own files (`.tmp`, `.lock`, `.sha256`).
///
/// # Examples
///
/// ```
/// use durafile::data_handler::validate_key;
/// assert!(validate_key("user-42").is_ok());
/// assert!(validate_key("../secrets").is_err());
/// assert!(validate_key(".hidden").is_err());
/// ```
pub fn validate_key(key: &str) -> Result<()> {
    let refuse = |reason| {
        Err(Error::InvalidKey {
            key: key.to_owned(),
            reason,
        })
    };
    if key.is_empty() {
        return refuse("a key cannot be empty");
    }
    if key.len() > MAX_KEY_LEN {
        return refuse("a key is at most 200 bytes long");
    }
    if key.contains(['/', '\\']) {
        return refuse("a key cannot contain a path separator");
    }
    if key.contains("..") {
        return refuse("a key cannot contain `..`");
    }
    if key.chars().any(char::is_control) {
        return refuse("a key cannot contain control characters");
    }
    if key.starts_with('.') {
        return refuse("a key cannot start with `.` (hidden files are durafile's own)");
    }
    if [".tmp", ".lock", ".sha256"]
        .iter()
        .any(|s| key.ends_with(s))
    {
        return refuse("a key cannot end like a temp, lock or checksum file");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_could_escape_or_collide_are_refused() {
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            "a\\b",
            "x/../y",
            ".hidden",
            "a..b",
            "nul\0",
            "new\nline",
            "state.tmp",
            "a.lock",
            "b.sha256",
        ] {
            assert!(
                matches!(validate_key(bad), Err(Error::InvalidKey { .. })),
                "{bad:?}"
            );
        }
        assert!(validate_key(&"k".repeat(MAX_KEY_LEN + 1)).is_err());
        for good in [
            "a",
            "user-42",
            "Ünïcode key",
            "v1.2",
            &"k".repeat(MAX_KEY_LEN),
        ] {
            assert!(validate_key(good).is_ok(), "{good:?}");
        }
    }
}
