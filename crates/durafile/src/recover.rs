//! Recovery after a crash: removing the temp files that killed writers left, completing
//! interrupted checksum transitions, and listing (never deleting) damaged files.
//!
//! # Orphan temp files
//!
//! A writer holds a flock on its temp file from the moment it creates it until it renames or
//! removes it, and the kernel drops that lock the instant the writer dies. So a temp file
//! whose lock can be taken belongs to nobody: it is an orphan, whatever its age. One that is
//! locked belongs to a live writer and is left alone. No timestamps, no PIDs, no guessing.
//!
//! The orphan is removed while its lock is held, and a writer checks after locking its new
//! temp file that the file is still linked; so a writer that created a temp file an instant
//! before this scan saw it can never lose it unknowingly (it starts over with a new name).

use std::fs::{self, File, TryLockError};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::checksum::{self, Phase};
use crate::error::{Error, Result, Step};
use crate::lock::{self, LockMode};
use crate::names;
use crate::sys;
use crate::target::Target;

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
    orphans(dir, true)
}

fn orphans(dir: &Path, remove: bool) -> Result<Orphans> {
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
            if remove {
                sys::remove_file(&path).map_err(|e| Error::io(Step::Remove, &path, e))?;
            }
            found.removed.push(path);
        }
    }
    Ok(found)
}

/// How long [`recover`] waits for a writer to release one file before it reports the file as
/// busy and moves on.
pub const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What [`recover`] did, or with `dry_run` would do, in a directory.
#[derive(Debug, Default)]
pub struct Recovery {
    /// Temp files of dead writers and live writers' ones, as [`clean_orphans`] reports them.
    pub orphans: Orphans,
    /// Sidecars that listed more than one digest (an interrupted write), reduced to the
    /// digest of the current content.
    pub checksums_completed: Vec<PathBuf>,
    /// Sidecars whose data file does not exist: a file deleted outside durafile, or a first
    /// write interrupted before its rename; recovery cannot tell which, so it keeps the
    /// sidecar as evidence for a person to decide.
    pub missing: Vec<PathBuf>,
    /// Checksummed files whose lock stayed held for [`BUSY_TIMEOUT`]; not examined.
    pub busy: Vec<PathBuf>,
    /// Files that fail verification. Listed for a person to restore, never changed.
    pub damaged: Vec<Error>,
}

/// Recovers `dir` (not its subdirectories) after a crash: removes orphan temp files,
/// completes interrupted checksum transitions, and lists the files whose content matches
/// none of their sidecar's digests and the sidecars whose file is missing. With `dry_run`,
/// reports all that and changes nothing.
///
/// Each checksummed file is examined under its exclusive lock, so recovery can run while
/// the application does: it waits for a writer in progress rather than judging its files
/// half-way.
///
/// # Errors
///
/// Only for the directory as a whole (it cannot be listed, a lock file cannot be opened, a
/// sidecar cannot be rewritten); a damaged, missing or busy file is a finding, not an error.
///
/// # Examples
///
/// ```
/// use durafile::Options;
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("state.json");
/// durafile::write(&path, b"{}", &Options::new().checksum(true))?;
/// std::fs::write(&path, b"{\"tampered\":1}")?;
/// let found = durafile::recover::recover(dir.path(), false)?;
/// assert_eq!(found.damaged.len(), 1);
/// assert_eq!(std::fs::read(&path)?, b"{\"tampered\":1}", "listed, never changed");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn recover(dir: &Path, dry_run: bool) -> Result<Recovery> {
    let mut found = Recovery {
        orphans: orphans(dir, !dry_run)?,
        ..Recovery::default()
    };
    let mut sidecars: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| Error::io(Step::ReadDir, dir, e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(checksum::data_name_of).is_some())
        .collect();
    sidecars.sort();
    for sidecar in sidecars {
        let data = checksum::data_name_of(sidecar.file_name().expect("listed")).expect("filtered");
        let target = match Target::resolve(&dir.join(data)) {
            Ok(t) if checksum::sidecar_of(&t) == sidecar => t,
            // The data path is a symlink elsewhere or not a file: this sidecar is not its.
            _ => continue,
        };
        let _lock = match lock::lock_target(&target, LockMode::Exclusive, Some(BUSY_TIMEOUT)) {
            Ok(lock) => lock,
            Err(Error::LockTimeout { .. }) => {
                found.busy.push(target.given);
                continue;
            }
            Err(e) => return Err(e),
        };
        let listed = match checksum::read_sidecar(&target) {
            Ok(Some(listed)) => listed,
            Ok(None) => continue,
            Err(e) => {
                found.damaged.push(e);
                continue;
            }
        };
        let digest = match File::open(&target.resolved).and_then(checksum::hash_reader) {
            Ok(digest) => digest,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                found.missing.push(target.given);
                continue;
            }
            Err(e) => {
                found.damaged.push(Error::io(Step::Read, &target.given, e));
                continue;
            }
        };
        if !listed.contains(&digest) {
            found
                .damaged
                .push(checksum::mismatch(&target.given, &listed, &digest));
        } else if listed.len() > 1 {
            if !dry_run {
                let mode = target
                    .meta
                    .as_ref()
                    .map_or(0o644, |m| m.permissions().mode());
                checksum::write_sidecar(&target, &[digest], Phase::Finish, true, mode)?;
            }
            found.checksums_completed.push(sidecar);
        }
    }
    Ok(found)
}
