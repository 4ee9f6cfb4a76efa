//! The operating-system layer: every syscall durafile makes that std does not wrap the same
//! way lives here, so the rest of the crate is plain Rust with no `cfg`.
//!
//! Unix only (Linux and macOS). Linux-specific reads (`/proc/self/status` for the umask) have
//! a portable fallback. std already does the platform-specific part of the fsync itself:
//! [`File::sync_all`] is `fsync(2)` on Linux and `fcntl(F_FULLFSYNC)` on macOS, where a plain
//! `fsync` does not flush the drive's cache.
//!
//! Every durability-relevant call (create, fsync, rename, link, unlink, mkdir, rmdir, shrink,
//! directory fsync, whether by path or through a pinned directory's descriptor) goes through
//! here, so that with the `crash-model` feature each one is reported to `crash_record` for
//! the crash-state checker; without the feature the reports compile to nothing.

#[cfg(not(unix))]
compile_error!("durafile supports Unix (Linux and macOS) only");

use std::ffi::{CString, OsStr};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Creates `name` in the open directory `dir` exclusively, private to the owner, refusing to
/// follow a symlink planted at that name. Through the directory's descriptor, so that a
/// directory swapped for a link after it was opened and checked cannot redirect it.
pub(crate) fn create_private(dir: &File, name: &OsStr) -> io::Result<File> {
    let file = open_at(
        dir,
        name,
        libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
        0o600,
    )?;
    #[cfg(feature = "crash-model")]
    crate::crash_record::created_at(dir, name, &file);
    Ok(file)
}

/// `openat(2)` with `O_CLOEXEC`.
fn open_at(dir: &File, name: &OsStr, flags: libc::c_int, mode: u32) -> io::Result<File> {
    use std::os::fd::{AsRawFd, FromRawFd};
    let name = cstr(name)?;
    // SAFETY: a NUL-terminated name and a descriptor we hold; on success the new descriptor is
    // ours alone and `File` closes it.
    unsafe {
        let fd = libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            flags | libc::O_CLOEXEC,
            mode as libc::c_uint,
        );
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(File::from_raw_fd(fd))
    }
}

/// Renames `from` over `to`, both names in the open directory `dir` (`renameat(2)`).
pub(crate) fn rename_at(dir: &File, from_name: &OsStr, to_name: &OsStr) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let (from, to) = (cstr(from_name)?, cstr(to_name)?);
    let fd = dir.as_raw_fd();
    #[cfg(feature = "crash-model")]
    crate::crash_record::before_move_at(dir, from_name);
    // SAFETY: NUL-terminated names and a descriptor we hold.
    match unsafe { libc::renameat(fd, from.as_ptr(), fd, to.as_ptr()) } {
        0 => {
            #[cfg(feature = "crash-model")]
            crate::crash_record::renamed_at(dir, from_name, to_name);
            Ok(())
        }
        _ => Err(io::Error::last_os_error()),
    }
}

/// Removes `name` from the open directory `dir` (`unlinkat(2)`), never through a path that
/// could have been swapped for a link since the directory was checked; `Ok(false)` when it was
/// already gone.
pub(crate) fn remove_at(dir: &File, name: &OsStr) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    let c_name = cstr(name)?;
    // SAFETY: a NUL-terminated name and a descriptor we hold.
    match unsafe { libc::unlinkat(dir.as_raw_fd(), c_name.as_ptr(), 0) } {
        0 => {
            #[cfg(feature = "crash-model")]
            crate::crash_record::unlinked_at(dir, name);
            Ok(true)
        }
        _ => match io::Error::last_os_error() {
            e if e.kind() == io::ErrorKind::NotFound => Ok(false),
            e => Err(e),
        },
    }
}

fn cstr(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// Opens an existing regular file for reading without following a symlink at `path`.
pub(crate) fn open_nofollow(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
}

/// [`open_nofollow`], refusing anything but a regular file (checked on the descriptor): for
/// reading a file at a name that someone else may have planted a FIFO or device at since it
/// was last looked at.
pub(crate) fn open_regular(path: &Path) -> io::Result<File> {
    open_regular_with_meta(path).map(|(file, _)| file)
}

/// [`open_regular`], with the metadata of the check (its size, to read it in one go).
pub(crate) fn open_regular_with_meta(path: &Path) -> io::Result<(File, fs::Metadata)> {
    let file = open_nofollow(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "it is not a regular file",
        ));
    }
    Ok((file, meta))
}

/// All of `file`, which its `fstat` says holds `len` bytes. The buffer is reserved fallibly:
/// a huge (sparse) file must fail the read with an error, not abort the process (as
/// `Vec::with_capacity` would); then `read_to_end` grows it, fallibly too. `take` keeps std's
/// `read_to_end` for files from asking for the size again (an `fstat` and an `lseek`).
pub(crate) fn read_whole(file: &File, len: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let _ = bytes.try_reserve_exact(usize::try_from(len).unwrap_or(usize::MAX));
    file.take(u64::MAX).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// [`open_nofollow`] for `name` in the open directory `dir`.
pub(crate) fn open_nofollow_at(dir: &File, name: &OsStr) -> io::Result<File> {
    open_at(
        dir,
        name,
        libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK,
        0,
    )
}

/// A lock file opened by [`open_lock_file`].
pub(crate) struct LockFile {
    pub file: File,
    /// Its metadata as opened (the one `fstat` that proved it a regular file), which the
    /// locker reuses for its owner, mode and identity checks instead of asking again.
    pub meta: fs::Metadata,
    /// Whether this call created it (and so must give it its mode and owner).
    pub created: bool,
    /// Whether it is open for writing (else read-only: flock works on any descriptor).
    pub writable: bool,
}

/// Opens (creating with `mode` if needed) a lock file. Never truncates, never follows a
/// symlink, never blocks on a FIFO planted at the name; refuses anything but a regular file.
/// An existing file that is not writable is opened read-only. When the file does not exist
/// and cannot be created, the error is that one (EACCES on a read-only directory).
///
/// An existing file is opened without `O_CREAT`, so that the kernel's `protected_regular`
/// does not refuse a lock file another user made before durafile's own checks can say who.
pub(crate) fn open_lock_file(dir: &File, name: &OsStr, mode: u32) -> io::Result<LockFile> {
    let open =
        |flags: libc::c_int| open_at(dir, name, flags | libc::O_NOFOLLOW | libc::O_NONBLOCK, mode);
    let opened = loop {
        match open(libc::O_RDWR) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                match open(libc::O_RDWR | libc::O_CREAT | libc::O_EXCL) {
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                    other => break other.map(|f| (f, true, true)),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                break open(libc::O_RDONLY)
                    .map(|f| (f, false, false))
                    .map_err(|fallback| match fallback.kind() {
                        io::ErrorKind::NotFound => e,
                        _ => fallback,
                    });
            }
            other => break other.map(|f| (f, false, true)),
        }
    };
    let (file, created, writable) = opened?;
    #[cfg(feature = "crash-model")]
    if created {
        crate::crash_record::created_at(dir, name, &file);
    }
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(LockFile {
        file,
        meta,
        created,
        writable,
    })
}

/// Opens a directory (the kernel resolving the path) for fsync and identity checks.
pub(crate) fn open_dir(dir: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(dir)
}

/// Opens the directory `dir` if no symbolic link is on its path (Linux 5.6+ `openat2` with
/// `RESOLVE_NO_SYMLINKS`: one call, checked by the kernel); `None` when there is one, the
/// directory is missing, or the system cannot tell this way, and the caller walks the path.
#[cfg(target_os = "linux")]
pub(crate) fn open_dir_without_links(dir: &Path) -> Option<File> {
    use std::os::fd::FromRawFd;
    let path = cstr(dir.as_os_str()).ok()?;
    // SAFETY: all-zero is a valid `open_how` (no flags, no mode, no restriction).
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_NO_SYMLINKS;
    // SAFETY: a NUL-terminated path and a live `open_how` of the size given; a non-negative
    // result is a new descriptor that only the `File` owns.
    unsafe {
        let fd = libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            path.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        );
        (fd >= 0).then(|| File::from_raw_fd(fd as libc::c_int))
    }
}

/// No kernel-checked link-free open elsewhere: the caller walks the path.
#[cfg(not(target_os = "linux"))]
pub(crate) fn open_dir_without_links(_dir: &Path) -> Option<File> {
    None
}

/// The effective uid, which the kernel's checks (fsuid) use.
pub(crate) fn euid() -> u32 {
    // SAFETY: geteuid(2) cannot fail.
    unsafe { libc::geteuid() }
}

/// The login name of `uid`, if the user database knows it.
pub(crate) fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 4096];
    // SAFETY: an all-zero passwd is a valid out-parameter (null pointers, zero ids).
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is to a live local of the size given; getpwuid_r writes the
    // strings into `buf` and `pwd.pw_name` points into it while `buf` lives.
    unsafe {
        let rc = libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut found);
        if rc != 0 || found.is_null() || pwd.pw_name.is_null() {
            return None;
        }
        Some(
            std::ffi::CStr::from_ptr(pwd.pw_name)
                .to_string_lossy()
                .into_owned(),
        )
    }
}

/// Whether the filesystem holding `dir` has no inodes left for unprivileged users, which is
/// what an ENOSPC means when `df` still shows free space.
pub(crate) fn out_of_inodes(dir: &Path) -> bool {
    let Ok(c) = cstr(dir.as_os_str()) else {
        return false;
    };
    // SAFETY: an all-zero statvfs is a valid out-parameter.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a live out-parameter.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    rc == 0 && st.f_files > 0 && st.f_favail == 0
}

/// Whether this process may create files in `dir` (the effective ids, as the kernel checks).
pub(crate) fn may_write_dir(dir: &Path) -> bool {
    let Ok(c) = cstr(dir.as_os_str()) else {
        return false;
    };
    // SAFETY: a NUL-terminated path.
    unsafe {
        libc::faccessat(
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::W_OK | libc::X_OK,
            libc::AT_EACCESS,
        ) == 0
    }
}

/// The pid of a process holding a flock on `file`, where the kernel says (Linux
/// `/proc/locks`, in this process's pid namespace); `None` elsewhere or when unknown.
#[cfg(target_os = "linux")]
pub(crate) fn lock_holder(file: &File) -> Option<u32> {
    let meta = file.metadata().ok()?;
    let dev = meta.dev();
    let id = format!(
        "{:02x}:{:02x}:{}",
        libc::major(dev),
        libc::minor(dev),
        meta.ino()
    );
    let locks = fs::read_to_string("/proc/locks").ok()?;
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"; waiters have "->" after the number.
        match fields.as_slice() {
            [_, "FLOCK", _, _, pid, file_id, ..] if *file_id == id => pid.parse().ok(),
            _ => None,
        }
    })
}

/// No portable way to name a flock's holder.
#[cfg(not(target_os = "linux"))]
pub(crate) fn lock_holder(_file: &File) -> Option<u32> {
    None
}

/// fsync of a directory, which makes the entries created or renamed in it durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    sync_dir_file(&open_dir(dir)?)
}

/// fsync of the open directory `dir` (one the caller pinned), which makes the entries created,
/// renamed or removed in it durable.
pub(crate) fn sync_dir_file(dir: &File) -> io::Result<()> {
    dir.sync_all()?;
    #[cfg(feature = "crash-model")]
    crate::crash_record::dir_fsynced_at(dir);
    Ok(())
}

/// fsync of a file's data and metadata (`F_FULLFSYNC` on macOS, through std).
pub(crate) fn sync_file(file: &File) -> io::Result<()> {
    #[cfg(feature = "crash-model")]
    crate::crash_record::fsynced(file);
    file.sync_all()
}

/// Cuts `file` down to its first `len` bytes (`ftruncate(2)`): one change of the inode's
/// size, with no new file and no rename.
pub(crate) fn shrink(file: &File, len: u64) -> io::Result<()> {
    file.set_len(len)?;
    #[cfg(feature = "crash-model")]
    crate::crash_record::shrunk(file);
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

/// Creates `dir` and any missing parents, with `mode` (less the umask) for those it makes.
pub(crate) fn create_dir_all(dir: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    #[cfg(feature = "crash-model")]
    let missing: Vec<_> = dir
        .ancestors()
        .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
        .map(Path::to_path_buf)
        .collect();
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)?;
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
    copy_owner_from(file, &file.metadata()?, meta)
}

/// [`copy_owner`] for a file whose own metadata (`own`) the caller already has, which saves
/// the `fstat`: only its owner and group are read, and nobody else can change those on a file
/// we created or locked.
pub(crate) fn copy_owner_from(
    file: &File,
    own: &fs::Metadata,
    meta: &fs::Metadata,
) -> io::Result<()> {
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

/// Whether `path` itself (not a link's target) still names the file `id`: a lock, temp or
/// data file nobody renamed, removed or replaced since we opened it.
pub(crate) fn names_file(path: &Path, id: (u64, u64)) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| file_id(&m) == id)
}

/// Removes `path`; `Ok(false)` when it was already gone.
pub(crate) fn remove_if_exists(path: &Path) -> io::Result<bool> {
    match remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
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

/// Whether `file` was opened for writing (its access mode, `fcntl(F_GETFL)`), as an inherited
/// descriptor does not say otherwise.
pub(crate) fn is_writable(file: &File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: F_GETFL on a descriptor we hold reads its flags and touches no memory.
    let flags = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETFL) };
    flags >= 0 && matches!(flags & libc::O_ACCMODE, libc::O_WRONLY | libc::O_RDWR)
}
