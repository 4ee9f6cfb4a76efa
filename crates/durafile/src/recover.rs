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
//!
//! A name is not proof, though: in a shared directory anyone can make a file called
//! `.notes.df-ABCDEFGHIJ.tmp`, and recovery may run as root. So a file is removed only when it
//! is provably a dead durafile writer's: a regular file with one link, opened
//! `O_NOFOLLOW|O_NONBLOCK`; the lock file of the file it was for exists (every writer creates
//! that first); it is owned by the owner of that file or of the directory, or by the caller;
//! and its flock is free. Everything else is reported with the reason, and an error on one
//! file (EPERM on another user's file in a sticky directory) is reported without stopping the
//! scan.
//!
//! # Sidecars
//!
//! A sidecar is read as every durafile reader reads it (see [`crate::checksum`]): a link, a
//! FIFO, another user's file or one not in durafile's format is listed in
//! [`Recovery::not_ours`] and left alone, never opened blocking, followed or rewritten.

use std::ffi::{OsStr, OsString};
use std::fs::{self, TryLockError};
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::checksum::{self, Digest, Phase, Sidecar};
use crate::error::{Error, Owner, Result, Step, quote};
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
    /// Files named like temp files that are not provably a dead durafile writer's, or that
    /// could not be removed: left alone, each with the reason.
    pub left_alone: Vec<LeftAlone>,
}

/// A file [`clean_orphans`] did not remove, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftAlone {
    /// The file.
    pub path: PathBuf,
    /// Why it was not removed, for a person: what durafile could not prove, or the error.
    pub reason: String,
}

/// Removes the temp files that dead durafile writers left in `dir` (not its subdirectories),
/// and only those: a file is removed only when all of these hold, so that a look-alike made
/// by another program or user is never deleted, even by root:
///
/// - its name has the shape of a durafile temp name, `.NAME.df-XXXXXXXXXX.tmp`;
/// - it is a regular file with one link (opened `O_NOFOLLOW|O_NONBLOCK`, checked with fstat);
/// - the lock file of the file it was for exists (`.NAME.lock`, or the lock that covers it:
///   a sidecar's data file's, a state generation's state's), since every durafile writer
///   creates that before its temp file;
/// - it is owned by the owner of `NAME`, by the owner of the directory, or by the caller (a
///   file of the caller's own is never another user's);
/// - nobody holds its flock: this scan takes it, on its own descriptor, and removes the file
///   while holding it.
///
/// Anything else is listed in [`Orphans::left_alone`] with the reason, and an error on one
/// file (EPERM from another user's file in a sticky directory) does not stop the scan.
///
/// # Errors
///
/// At [`Step::ReadDir`] when `dir` cannot be listed.
///
/// # Examples
///
/// ```
/// use durafile::{AtomicFile, Options};
///
/// let dir = tempfile::tempdir()?;
/// let live = AtomicFile::new(dir.path().join("state.json"), &Options::new())?;
/// std::fs::write(dir.path().join(".notes.df-ABCDEFGHIJ.tmp"), "not durafile's")?;
/// let found = durafile::recover::clean_orphans(dir.path())?;
/// assert!(found.removed.is_empty());
/// assert_eq!(found.in_use, [live.temp_path()]);
/// assert_eq!(found.left_alone.len(), 1, "no .notes.lock: not a durafile writer's");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn clean_orphans(dir: &Path) -> Result<Orphans> {
    orphans(dir, true)
}

fn orphans(dir: &Path, remove: bool) -> Result<Orphans> {
    let listing_err = |e| Error::io(Step::ReadDir, dir, e);
    let mut listing = Vec::new();
    for entry in fs::read_dir(dir).map_err(listing_err)? {
        listing.push(entry.map_err(listing_err)?.file_name());
    }
    listing.sort();
    let dir_owner = fs::metadata(dir).map_err(listing_err)?.uid();
    let mut found = Orphans::default();
    for name in listing.iter().filter(|n| names::is_temp_name(n)) {
        let path = dir.join(name);
        match examine(dir, name, &listing, dir_owner, remove) {
            Ok(Temp::Orphan) => found.removed.push(path),
            Ok(Temp::InUse) => found.in_use.push(path),
            Err(reason) => found.left_alone.push(LeftAlone { path, reason }),
        }
    }
    Ok(found)
}

/// What a temp-shaped file turned out to be; anything unproven is an `Err` with the reason.
enum Temp {
    Orphan,
    InUse,
}

/// Applies [`clean_orphans`]' proof to one file, removing it (when `remove`) once proven.
fn examine(
    dir: &Path,
    name: &OsStr,
    listing: &[OsString],
    dir_owner: u32,
    remove: bool,
) -> std::result::Result<Temp, String> {
    let path = dir.join(name);
    // Not following symlinks, and not blocking on a FIFO: durafile makes neither.
    let file = sys::open_nofollow(&path).map_err(|e| match e.raw_os_error() {
        Some(libc::ELOOP) => "it is a symbolic link, which durafile never makes".to_owned(),
        _ => format!("cannot open it to prove it is a dead writer's: {e}"),
    })?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot inspect it: {e}"))?;
    if !meta.is_file() || meta.nlink() != 1 {
        return Err("it is not a regular file with a single link, as durafile's are".into());
    }
    let Some((target, target_owner)) = covered_target(dir, name, listing) else {
        return Err(format!(
            "no durafile lock file for the file it would replace ({}), so durafile did not make it",
            names::temp_target(name)
                .map(|t| quote(&dir.join(names::lock_name(&t))).to_string())
                .unwrap_or_default()
        ));
    };
    // Yours, or made for the file's or the directory's owner: never another user's file.
    let owner = meta.uid();
    if owner != sys::euid() && owner != dir_owner && Some(owner) != target_owner {
        return Err(format!(
            "it is owned by {}, neither you nor the owner of {} or of the directory",
            Owner(meta.uid()),
            quote(Path::new(&target))
        ));
    }
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return Ok(Temp::InUse),
        Err(TryLockError::Error(e)) => return Err(format!("cannot test its lock: {e}")),
    }
    // Remove it only if the name still refers to the file we locked.
    let same = sys::names_file(&path, sys::file_id(&meta));
    if !same {
        return Err("it was replaced while being examined".into());
    }
    if remove {
        sys::remove_file(&path).map_err(|e| format!("cannot remove it: {e}"))?;
    }
    Ok(Temp::Orphan)
}

/// The file a temp file `temp` was made to replace, when its lock file exists, with that
/// file's owner if it exists. Candidates: the name the temp name shows, or a listed name it
/// is a shortened form of.
fn covered_target(
    dir: &Path,
    temp: &OsStr,
    listing: &[OsString],
) -> Option<(OsString, Option<u32>)> {
    let shown = names::temp_target(temp)?;
    let listed = listing.iter().filter(|n| names::is_temp_of(temp, n));
    let candidates = std::iter::once(&shown).chain(listed);
    for name in candidates {
        let covered = covering_locks(name)
            .iter()
            .any(|lock| fs::symlink_metadata(dir.join(lock)).is_ok_and(|m| m.is_file()));
        if covered {
            let owner = fs::symlink_metadata(dir.join(name))
                .ok()
                .filter(|m| m.is_file())
                .map(|m| m.uid());
            return Some((name.clone(), owner));
        }
    }
    None
}

/// The lock files whose holder may write `name`: its own, its data file's when it is a
/// sidecar, and its state's when it is a state generation.
fn covering_locks(name: &OsStr) -> Vec<OsString> {
    let data = checksum::data_name_of(name);
    let file = data.as_deref().unwrap_or(name);
    let mut locks = vec![names::lock_name(name), names::lock_name(file)];
    if let Some(state) = names::state_of(file) {
        locks.push(names::lock_name(&state));
    }
    locks
}

/// How long [`recover`] waits for a writer to release one file before it reports the file as
/// busy and moves on.
pub const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What [`recover`] did, or with `dry_run` would do, in a directory.
#[derive(Debug, Default)]
pub struct Recovery {
    /// Temp files of dead writers and live writers' ones, as [`clean_orphans`] reports them.
    pub orphans: Orphans,
    /// Sidecars that listed more than one digest (an interrupted write) or held a zeroed
    /// tail (a power loss during a write's last step), rewritten to list the digest of the
    /// current content alone.
    pub checksums_completed: Vec<PathBuf>,
    /// Sidecars whose data file does not exist: a file deleted outside durafile, or a first
    /// write interrupted before its rename; recovery cannot tell which, so it keeps the
    /// sidecar as evidence for a person to decide.
    pub missing: Vec<PathBuf>,
    /// Checksummed files whose lock stayed held for [`BUSY_TIMEOUT`]; not examined.
    pub busy: Vec<PathBuf>,
    /// Files that fail verification. Listed for a person to restore, never changed.
    pub damaged: Vec<Error>,
    /// Files at a sidecar's name that are not durafile's: another format (a `sha256sum` list
    /// of several files, say), another owner, a link or a FIFO. Left alone, not verified.
    pub not_ours: Vec<Error>,
    /// Files that could not be examined (a lock file that cannot be opened, a sidecar that
    /// cannot be rewritten). Recovery goes on with the others.
    pub errors: Vec<Error>,
}

/// Recovers `dir` (not its subdirectories) after a crash: removes orphan temp files (only
/// those [`clean_orphans`] can prove are dead durafile writers'), completes interrupted
/// checksum transitions, and lists the files whose content matches none of their sidecar's
/// digests and the sidecars whose file is missing. With `dry_run`, reports all that and
/// changes nothing.
///
/// Each checksummed file is examined under its exclusive lock, so recovery can run while
/// the application does: it waits for a writer in progress rather than judging its files
/// half-way. A sidecar is read as any durafile reader reads it: never through a link, never
/// blocking on a FIFO, never past 64 KiB, and only when its owner is trusted.
///
/// # Errors
///
/// Only when the directory cannot be listed; a damaged, missing or busy file, and an error
/// on one file, are findings, and recovery goes on with the rest.
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
        if let Err(e) = recover_one(dir, &sidecar, dry_run, &mut found) {
            found.errors.push(e);
        }
    }
    Ok(found)
}

/// Examines one sidecar and its data file, recording what it finds in `found`.
fn recover_one(dir: &Path, sidecar: &Path, dry_run: bool, found: &mut Recovery) -> Result<()> {
    let data = checksum::data_name_of(sidecar.file_name().expect("listed")).expect("filtered");
    let target = match Target::resolve(&dir.join(data)) {
        Ok(t) if checksum::sidecar_of(&t) == sidecar => t,
        // The data path is a symlink elsewhere or not a file: this sidecar is not its.
        _ => return Ok(()),
    };
    // A file that is not durafile's is reported without making a lock file beside it.
    if ours(
        checksum::load_sidecar(&target, Step::Verify),
        &target,
        found,
    )?
    .is_none()
    {
        return Ok(());
    }
    let _lock = match lock::lock_target(&target, LockMode::Exclusive, Some(BUSY_TIMEOUT)) {
        Ok(lock) => lock,
        Err(Error::LockTimeout { .. }) => {
            found.busy.push(target.given);
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    // Again under the lock: a writer may have replaced it meanwhile.
    let Some(listed) = ours(
        checksum::load_sidecar(&target, Step::Verify),
        &target,
        found,
    )?
    else {
        return Ok(());
    };
    // The data file as the sidecar's: not through a link, not blocking on a FIFO.
    let hashed = sys::open_regular(&target.resolved).and_then(checksum::hash_reader);
    let digest = match hashed {
        Ok(digest) => digest,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            found.missing.push(target.given);
            return Ok(());
        }
        Err(e) => {
            found.damaged.push(Error::io(Step::Read, &target.given, e));
            return Ok(());
        }
    };
    if !listed.contains(&digest) {
        found
            .damaged
            .push(checksum::mismatch(&target.given, &listed, &digest));
    } else if listed.len() > 1 || !checksum::holds_only(&target, &listed) {
        if !dry_run {
            let mode = target
                .meta
                .as_ref()
                .map_or(0o644, |m| m.permissions().mode());
            let owner = target.meta.as_ref();
            checksum::write_sidecar(&target, &[digest], Phase::Finish, true, mode, owner)?;
        }
        found.checksums_completed.push(sidecar.to_path_buf());
    }
    Ok(())
}

/// The digests of a sidecar that is durafile's; `None` when there is none, or when it is not
/// durafile's, which is then recorded in [`Recovery::not_ours`].
fn ours(
    loaded: Result<Sidecar>,
    target: &Target,
    found: &mut Recovery,
) -> Result<Option<Vec<Digest>>> {
    match loaded {
        Ok(Sidecar::Ours(listed)) => Ok(Some(listed)),
        Ok(Sidecar::Absent) => Ok(None),
        Ok(Sidecar::Foreign(reason)) => {
            found.not_ours.push(checksum::foreign_error(target, reason));
            Ok(None)
        }
        Err(e @ Error::ChecksumFileRefused { .. }) => {
            found.not_ours.push(e);
            Ok(None)
        }
        Err(e) => Err(e),
    }
}
