//! The operating-system layer: every syscall durafile makes that std does not wrap the same
//! way lives here, so the rest of the crate is plain Rust with no `cfg`.
//!
//! Unix only (Linux and macOS). Linux-specific reads (`/proc/self/status` for the umask) have
//! a portable fallback. std already does the platform-specific part of the fsync itself:
//! [`File::sync_all`] is `fsync(2)` on Linux and `fcntl(F_FULLFSYNC)` on macOS, where a plain
//! `fsync` does not flush the drive's cache.

#[cfg(not(unix))]
compile_error!("durafile supports Unix (Linux and macOS) only");

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Creates `path` exclusively, private to the owner, refusing to follow a symlink planted at
/// that name. std adds `O_CLOEXEC` to every open.
pub(crate) fn create_private(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    #[cfg(feature = "crash-model")]
    crate::crash_record::created(path, &file);
    Ok(file)
}

/// Opens an existing regular file for reading without following a symlink at `path`.
pub(crate) fn open_nofollow(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
}

/// Opens (creating if needed) a lock file. Never truncates, never follows a symlink, and
/// falls back to read-only when the file exists but is not writable: flock works on any
/// open descriptor. When it does not exist and cannot be created, the error is that one
/// (EACCES on a read-only directory), not the fallback's.
pub(crate) fn open_lock_file(path: &Path) -> io::Result<File> {
    #[cfg(feature = "crash-model")]
    let existed = fs::symlink_metadata(path).is_ok();
    let rw = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o666)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path);
    #[cfg(feature = "crash-model")]
    if let (false, Ok(file)) = (existed, &rw) {
        crate::crash_record::created(path, file);
    }
    match rw {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(|fallback| match fallback.kind() {
                io::ErrorKind::NotFound => e,
                _ => fallback,
            }),
        other => other,
    }
}

/// fsync of a directory, which makes the entries created or renamed in it durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(dir)?
        .sync_all()?;
    #[cfg(feature = "crash-model")]
    crate::crash_record::dir_fsynced(dir);
    Ok(())
}

/// fsync of a file's data and metadata (`F_FULLFSYNC` on macOS, through std).
pub(crate) fn sync_file(file: &File) -> io::Result<()> {
    #[cfg(feature = "crash-model")]
    crate::crash_record::fsynced(file);
    file.sync_all()
}

/// `rename(2)`: atomically makes `to` name what `from` named.
pub(crate) fn rename(from: &Path, to: &Path) -> io::Result<()> {
    #[cfg(feature = "crash-model")]
    crate::crash_record::before_move(from);
    fs::rename(from, to)?;
    #[cfg(feature = "crash-model")]
    crate::crash_record::renamed(from, to);
    Ok(())
}

/// A second name `to` for the file at `from`, or where the filesystem has no hard links, a
/// copy of it.
pub(crate) fn link_or_copy(from: &Path, to: &Path) -> io::Result<()> {
    #[cfg(feature = "crash-model")]
    crate::crash_record::before_move(from);
    match fs::hard_link(from, to) {
        Ok(()) => {
            #[cfg(feature = "crash-model")]
            crate::crash_record::linked(from, to);
            Ok(())
        }
        Err(_) => {
            fs::copy(from, to)?;
            #[cfg(feature = "crash-model")]
            crate::crash_record::copied(to);
            Ok(())
        }
    }
}

/// Removes the file `path`.
pub(crate) fn remove_file(path: &Path) -> io::Result<()> {
    fs::remove_file(path)?;
    #[cfg(feature = "crash-model")]
    crate::crash_record::unlinked(path);
    Ok(())
}

/// Creates `dir` and any missing parents.
pub(crate) fn create_dir_all(dir: &Path) -> io::Result<()> {
    #[cfg(feature = "crash-model")]
    let missing: Vec<_> = dir
        .ancestors()
        .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
        .map(Path::to_path_buf)
        .collect();
    fs::create_dir_all(dir)?;
    #[cfg(feature = "crash-model")]
    for made in missing.iter().rev() {
        crate::crash_record::made_dir(made);
    }
    Ok(())
}

/// Removes `dir` and everything in it.
pub(crate) fn remove_dir_all(dir: &Path) -> io::Result<()> {
    #[cfg(feature = "crash-model")]
    if crate::crash_record::watched(dir) {
        record_removal(dir)?;
    }
    fs::remove_dir_all(dir)
}

/// Records the unlinks and rmdirs that `remove_dir_all` is about to make, children first.
#[cfg(feature = "crash-model")]
fn record_removal(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            record_removal(&entry.path())?;
        } else {
            crate::crash_record::unlinked(&entry.path());
        }
    }
    crate::crash_record::removed_dir(dir);
    Ok(())
}

/// Whether the crash-model tests switched on the deliberate bug `name` (see
/// `crash_record::Mutation`); always false in a normal build.
#[cfg(feature = "crash-model")]
pub(crate) fn mutant(name: &str) -> bool {
    crate::crash_record::mutated(name)
}

/// No deliberate bugs in a normal build.
#[cfg(not(feature = "crash-model"))]
#[inline(always)]
pub(crate) fn mutant(_name: &str) -> bool {
    false
}

/// Gives `file` the owner and group in `meta` when they differ from its own. Failing with
/// EPERM is not an error: an unprivileged process may not give files away, and then the new
/// file keeps the caller's ownership, as any editor's save would.
pub(crate) fn copy_owner(file: &File, meta: &fs::Metadata) -> io::Result<()> {
    let own = file.metadata()?;
    if own.uid() == meta.uid() && own.gid() == meta.gid() {
        return Ok(());
    }
    match std::os::unix::fs::fchown(file, Some(meta.uid()), Some(meta.gid())) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            // Keep at least the group where we belong to it.
            match std::os::unix::fs::fchown(file, None, Some(meta.gid())) {
                Err(e) if e.raw_os_error() == Some(libc::EPERM) => Ok(()),
                other => other,
            }
        }
        other => other,
    }
}

/// The process's umask.
///
/// Linux publishes it in `/proc/self/status` (since 4.7), which is free of races. Elsewhere
/// the only way to read it is to set it and set it back. durafile sets 077 for that instant:
/// a file another thread happens to create in it keeps mode bits for its owner only, which
/// is never more exposed than intended, though it may be more private for good.
pub(crate) fn umask() -> u32 {
    if let Some(mask) = proc_umask() {
        return mask;
    }
    // SAFETY: umask(2) cannot fail and touches no memory.
    unsafe {
        let old = libc::umask(0o077);
        libc::umask(old);
        old as u32
    }
}

fn proc_umask() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Umask:"))?;
    u32::from_str_radix(line["Umask:".len()..].trim(), 8).ok()
}

/// Identity of an inode, to tell whether a name still refers to the file we hold open.
pub(crate) fn file_id(meta: &fs::Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

/// Removes `path`; `Ok(false)` when it was already gone.
pub(crate) fn remove_if_exists(path: &Path) -> io::Result<bool> {
    match remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Number of names the open file still has; 0 once it has been unlinked.
pub(crate) fn link_count(file: &File) -> io::Result<u64> {
    Ok(file.metadata()?.nlink())
}

/// Starts writeback of `file`'s bytes `from..to` without waiting for it (Linux
/// `sync_file_range(SYNC_FILE_RANGE_WRITE)`; nothing elsewhere). The result is ignored on
/// purpose: without a WAIT flag the call neither reports nor consumes a writeback error, so
/// the fsync at commit still sees every error, and it alone decides.
#[cfg(target_os = "linux")]
pub(crate) fn start_writeback(file: &File, from: u64, to: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain syscall on a descriptor we own; it touches no memory of ours.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            from as libc::off64_t,
            (to - from) as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

/// No early writeback outside Linux: the fsync at commit does all of it.
#[cfg(not(target_os = "linux"))]
pub(crate) fn start_writeback(_file: &File, _from: u64, _to: u64) {}
