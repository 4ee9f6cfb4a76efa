//! Recovery after a crash: finding and removing the temp files that killed writers left.
//!
//! A writer holds a flock on its temp file from the moment it creates it until it renames or
//! removes it, and the kernel drops that lock the instant the writer dies. So a temp file
//! whose lock can be taken belongs to nobody: it is an orphan, whatever its age. One that is
//! locked belongs to a live writer and is left alone. No timestamps, no PIDs, no guessing.
//!
//! The orphan is removed while its lock is held, and a writer checks after locking its new
//! temp file that the file is still linked; so a writer that created a temp file an instant
//! before this scan saw it can never lose it unknowingly (it starts over with a new name).

use std::fs::{self, TryLockError};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result, Step};
use crate::names;
use crate::sys;

/// What [`clean_orphans`] found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Orphans {
    /// Temp files of dead writers, now removed.
    pub removed: Vec<PathBuf>,
    /// Temp files that live writers hold, left alone.
    pub in_use: Vec<PathBuf>,
}

/// Removes the temp files that dead durafile writers left in `dir` (not its subdirectories),
/// and only those.
///
/// # Errors
///
/// At [`Step::ReadDir`] when `dir` cannot be listed, at [`Step::Lock`] when a temp file's lock
/// cannot be tested (a filesystem without locks: nothing is removed then, since a live
/// writer's file cannot be told from an orphan), at [`Step::Remove`] when an orphan cannot be
/// removed.
///
/// # Examples
///
/// ```
/// use durafile::{AtomicFile, Options};
///
/// let dir = tempfile::tempdir()?;
/// let live = AtomicFile::new(dir.path().join("state.json"), &Options::new())?;
/// let found = durafile::recover::clean_orphans(dir.path())?;
/// assert!(found.removed.is_empty());
/// assert_eq!(found.in_use, [live.temp_path()]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn clean_orphans(dir: &Path) -> Result<Orphans> {
    let mut found = Orphans::default();
    let entries = fs::read_dir(dir).map_err(|e| Error::io(Step::ReadDir, dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(Step::ReadDir, dir, e))?;
        if !names::is_temp_name(&entry.file_name()) {
            continue;
        }
        let path = entry.path();
        // Not following symlinks: durafile never makes a temp file that is one.
        let Ok(file) = sys::open_nofollow(&path) else {
            continue;
        };
        match file.metadata() {
            Ok(meta) if meta.is_file() => {}
            _ => continue,
        }
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                found.in_use.push(path);
                continue;
            }
            Err(TryLockError::Error(e)) => return Err(Error::io(Step::Lock, &path, e)),
        }
        // Remove it only if the name still refers to the file we locked.
        let same = fs::symlink_metadata(&path).is_ok_and(|m| {
            file.metadata()
                .is_ok_and(|f| sys::file_id(&f) == sys::file_id(&m))
        });
        if same {
            fs::remove_file(&path).map_err(|e| Error::io(Step::Remove, &path, e))?;
            found.removed.push(path);
        }
    }
    Ok(found)
}
