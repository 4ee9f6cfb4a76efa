//! The lock an enclosing `durafile lock` holds for its command, so that a durafile run inside
//! it (`durafile lock F -- sh -c '... | durafile write F'`) writes under that lock instead of
//! waiting for it forever.
//!
//! `durafile lock` passes its locked descriptor to its command, like `flock(1)`, and says so
//! in the environment: `DURAFILE_LOCK_FD` (the descriptor), `DURAFILE_LOCK_ID` (the lock
//! file's `device:inode`) and `DURAFILE_LOCK_MODE` (`exclusive` or `shared`). A durafile
//! command on a file whose lock file is that inode adopts the lock only after proving it is
//! held through that very descriptor (see `durafile::lock::adopt_inherited`), and otherwise
//! fails at once with the reason, never waits. Only the innermost `durafile lock` is named.

use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use durafile::error::quote;
use durafile::lock::{self, FileLock, LockMode};

use crate::failure::Failure;

const FD: &str = "DURAFILE_LOCK_FD";
const ID: &str = "DURAFILE_LOCK_ID";
const MODE: &str = "DURAFILE_LOCK_MODE";

/// Tells `cmd` (through its environment) that it inherits `guard` on its descriptor.
pub fn advertise(cmd: &mut Command, guard: &FileLock) -> Result<(), Failure> {
    let fd = guard.as_fd();
    let meta = std::fs::File::from(
        fd.try_clone_to_owned()
            .map_err(|e| lock_failure(guard, e))?,
    )
    .metadata()
    .map_err(|e| lock_failure(guard, e))?;
    let mode = match guard.mode() {
        LockMode::Exclusive => "exclusive",
        LockMode::Shared => "shared",
    };
    cmd.env(FD, fd.as_raw_fd().to_string())
        .env(ID, format!("{}:{}", meta.dev(), meta.ino()))
        .env(MODE, mode);
    Ok(())
}

fn lock_failure(guard: &FileLock, e: std::io::Error) -> Failure {
    Failure::new(format!("lock {}: {e}", quote(guard.lock_file())))
}

/// `path`'s lock, when an enclosing `durafile lock` holds it for us in a mode that covers
/// `need`; `None` when the environment names no lock or another file's.
///
/// # Errors
///
/// When it names `path`'s lock but cannot be used: held shared where `need` is exclusive,
/// the descriptor closed, or the lock held through another descriptor. Waiting would then
/// wait for our own parent, so this fails at once, saying why.
pub fn adopt(path: &Path, need: LockMode) -> Result<Option<FileLock>, Failure> {
    let Some(fd) = std::env::var_os(FD) else {
        return Ok(None);
    };
    let bad = |why: String| {
        Failure::new(format!(
            "lock {}: {why}; the enclosing `durafile lock` holds this file's lock, so waiting \
             for it would wait forever",
            quote(path)
        ))
    };
    let malformed = |name: &str, value: &OsString| {
        Failure::new(format!(
            "lock {}: {name}={value:?} is malformed (set by `durafile lock`; unset it)",
            quote(path)
        ))
    };
    let id = std::env::var_os(ID).unwrap_or_default();
    let (dev, ino) = id
        .to_str()
        .and_then(|s| s.split_once(':'))
        .and_then(|(d, i)| Some((d.parse::<u64>().ok()?, i.parse::<u64>().ok()?)))
        .ok_or_else(|| malformed(ID, &id))?;
    let lock_file = lock::lock_file_path(path)?;
    let ours =
        std::fs::symlink_metadata(&lock_file).is_ok_and(|m| (m.dev(), m.ino()) == (dev, ino));
    if !ours {
        return Ok(None);
    }
    let held = match std::env::var_os(MODE).as_ref().and_then(|m| m.to_str()) {
        Some("exclusive") => LockMode::Exclusive,
        Some("shared") => LockMode::Shared,
        _ => return Err(malformed(MODE, &std::env::var_os(MODE).unwrap_or_default())),
    };
    if need == LockMode::Exclusive && held == LockMode::Shared {
        return Err(bad(
            "it is held shared (`durafile lock --shared`) and this command needs it exclusive \
             (run it outside the shared lock, or take that lock without --shared)"
                .to_owned(),
        ));
    }
    let raw: RawFd = fd
        .to_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| malformed(FD, &fd))?;
    // SAFETY: fcntl(F_GETFD) only asks whether the descriptor is open.
    let open = raw > 2 && unsafe { libc::fcntl(raw, libc::F_GETFD) } != -1;
    if !open {
        return Err(bad(format!(
            "{FD}={raw} is not open in this process (a shell between closed it?)"
        )));
    }
    // SAFETY: the descriptor is open, was inherited for this purpose, and nothing else in this
    // process owns it: durafile opens no descriptor it leaves without an owner.
    let owned = unsafe { OwnedFd::from_raw_fd(raw) };
    lock::adopt_inherited(path, owned, held)
        .map(Some)
        .map_err(|e| bad(e.to_string()))
}
