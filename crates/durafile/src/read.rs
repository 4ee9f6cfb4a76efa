//! Reading a file that durafile writers replace.
//!
//! Because every replace is a rename, a plain read always sees one complete version: it opens
//! either the old inode or the new one. When the file has a checksum sidecar the content is
//! verified against it (see [`crate::checksum`] for why this needs no lock). With
//! [`Options::lock_reads`] the read also takes the path's shared lock, which makes it wait
//! until a writer's whole read-modify-write is done.

use std::fs::File;
use std::path::Path;

use crate::checksum::{self, Sidecar};
use crate::error::{Error, Result, Step};
use crate::lock::{self, FileLock, LockMode};
use crate::options::Options;
use crate::sys;
use crate::target::Target;

/// Reads the whole of `path`, verified when it has a checksum sidecar.
///
/// # Errors
///
/// At [`Step::Read`] with the OS error (NotFound for a missing file);
/// [`Error::ChecksumMismatch`] when the content is not what durafile wrote;
/// [`Error::MissingChecksum`] when [`Options::checksum`] requires a sidecar and there is none,
/// and [`Error::BadChecksumFile`] when it requires one and the file at the sidecar's name is
/// not durafile's (without the option such a file is not verified against);
/// [`Error::ChecksumFileRefused`] when a link, a FIFO or another user's file is at the
/// sidecar's name (see [`crate::checksum`]);
/// at [`Step::Lock`] when [`Options::lock_reads`] is set and the shared lock is not had in time.
///
/// # Examples
///
/// ```
/// use durafile::Options;
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("state.json");
/// durafile::write(&path, b"{}", &Options::new().checksum(true))?;
/// assert_eq!(durafile::read(&path, &Options::new().lock_reads(true))?, b"{}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn read(path: impl AsRef<Path>, opts: &Options) -> Result<Vec<u8>> {
    let target = Target::resolve(path.as_ref())?;
    let lock = shared_lock(&target, opts)?;
    read_target(&target, opts, lock.is_some(), None)
}

/// Opens `path` for reading, after verifying its whole content against its checksum sidecar
/// when it has one; the file is rewound, so what the caller reads is what was verified (the
/// open descriptor keeps that version even if a writer replaces the path meanwhile). Memory
/// use does not grow with the file's size.
///
/// # Errors
///
/// As [`read()`].
///
/// # Examples
///
/// ```
/// use std::io::Read;
/// use durafile::Options;
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("big.log");
/// durafile::write(&path, b"line\n", &Options::new().checksum(true))?;
/// let mut text = String::new();
/// durafile::open(&path, &Options::new())?.read_to_string(&mut text)?;
/// assert_eq!(text, "line\n");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn open(path: impl AsRef<Path>, opts: &Options) -> Result<File> {
    let target = Target::resolve(path.as_ref())?;
    let lock = shared_lock(&target, opts)?;
    open_target(&target, opts, lock.is_some(), None)
}

fn shared_lock(target: &Target, opts: &Options) -> Result<Option<FileLock>> {
    if !opts.get_lock_reads() {
        return Ok(None);
    }
    lock::lock_target(target, LockMode::Shared, opts.get_lock_timeout()).map(Some)
}

/// Whether the content must be verified: when the options require a sidecar, or something is
/// at the sidecar's name. `known` is what a caller holding the lock found there (no second
/// look); else an `lstat`, not `stat`: a link or a FIFO there goes on to be refused by
/// [`checksum::verified`], never followed or opened blocking.
fn needs_verify(target: &Target, opts: &Options, known: Option<&Sidecar>) -> bool {
    opts.get_checksum()
        || match known {
            // A file that is not durafile's is not verified against (see `checksum::verified`).
            Some(found) => matches!(found, Sidecar::Ours(_)),
            None => std::fs::symlink_metadata(checksum::sidecar_of(target)).is_ok(),
        }
}

/// Reads the target, verified; `locked` says the caller holds a lock that keeps writers out,
/// and `known` is the sidecar such a caller loaded under it.
pub(crate) fn read_target(
    target: &Target,
    opts: &Options,
    locked: bool,
    known: Option<&Sidecar>,
) -> Result<Vec<u8>> {
    if needs_verify(target, opts, known) {
        return checksum::verified(target, opts, locked, known, checksum::read_hashed)
            .map(|(bytes, ..)| bytes);
    }
    // A FIFO planted at the name since it was resolved must not block the read. The size
    // from the `fstat` that checks this sizes the buffer.
    let (file, meta) = sys::open_regular_with_meta(&target.resolved)
        .map_err(|e| Error::io(Step::Read, &target.given, e))?;
    sys::read_whole(&file, meta.len()).map_err(|e| Error::io(Step::Read, &target.given, e))
}

/// Opens the target, verified; `locked` and `known` as for [`read_target`].
pub(crate) fn open_target(
    target: &Target,
    opts: &Options,
    locked: bool,
    known: Option<&Sidecar>,
) -> Result<File> {
    let open =
        || sys::open_regular(&target.resolved).map_err(|e| Error::io(Step::Read, &target.given, e));
    if !needs_verify(target, opts, known) {
        return open();
    }
    // The verified pass and the caller's read must be the same inode: keep the one we hashed.
    let mut kept = None;
    checksum::verified(target, opts, locked, known, |file| {
        let hashed = checksum::hash_and_rewind(file)?;
        kept = Some(file.try_clone()?);
        Ok(hashed)
    })?;
    Ok(kept.expect("verified loaded a file"))
}
