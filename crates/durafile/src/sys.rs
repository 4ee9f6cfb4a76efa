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
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
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
    let rw = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o666)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path);
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
        .sync_all()
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
    match fs::remove_file(path) {
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

/// The soft limit on this process's open descriptors (`RLIMIT_NOFILE`); `None` when unlimited
/// or unknown.
pub(crate) fn open_files_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only into `limit`, which lives across the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    (limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

/// How many descriptors this process has open (`/dev/fd` lists them on Linux and macOS,
/// counting the one that lists them); `None` when it cannot be read.
pub(crate) fn open_files() -> Option<u64> {
    Some(fs::read_dir("/dev/fd").ok()?.count() as u64)
}
