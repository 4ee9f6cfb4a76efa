//! Exclusive and shared locks on a path, across threads and processes.
//!
//! # Design
//!
//! A lock on `dir/NAME` is a `flock(2)` lock (std's [`File::lock`]) on a sidecar lock file,
//! `dir/.NAME.lock`, for three reasons that each break the obvious alternatives:
//!
//! - **Not the data file itself.** A lock belongs to an inode, and a durable replace swaps in
//!   a new inode with `rename`. A writer waiting on the old file's lock would get it after the
//!   replace and hold a lock on an unlinked inode, while a newcomer locks the new one: two
//!   "exclusive" holders. The lock file is never renamed, never truncated and never deleted,
//!   so every process always meets on the same inode. It also exists before the data file
//!   does, so a path can be locked before its first write.
//! - **flock, not `fcntl`/POSIX record locks.** Record locks belong to the process: its threads
//!   share them, and closing *any* descriptor of the file drops them all. A flock belongs to
//!   the open file description, so each guard opens its own descriptor and threads of one
//!   process exclude each other exactly as processes do.
//! - **A kernel lock, not a PID file.** When a holder dies, even by SIGKILL, the kernel
//!   releases its lock at once. There is no staleness to guess.
//!
//! After locking, durafile checks that the lock file is still linked under its name (someone
//! outside durafile may have deleted it); if not, it starts over on the new file.
//!
//! # Who can block whom
//!
//! `flock` needs only an open descriptor, and reading is enough to open one: whoever can open
//! the lock file can hold the lock forever. So the lock file gets no more access than writing
//! the data needs: read and write for each class (owner, group, others) that may write the data
//! file, nothing for the others (its owner always keeps read and write). A user who may only
//! read `NAME` cannot open `.NAME.lock`, and so cannot block its writers; in exchange such a
//! user cannot take the shared lock either (a plain [`read`](crate::read()) needs none). The lock
//! file takes the data file's owner and group (where the process may give files away). An
//! existing lock file of ours that grants more is narrowed; durafile never widens one.
//!
//! Who can block a writer, then: the data file's other writers (as they must, to take turns),
//! root, and, in a directory where they may create files, anyone who creates the lock file's
//! name before the data file's owner does. In a sticky shared directory (like `/tmp`) durafile
//! refuses a lock file owned by anyone but the caller, the data file's owner or the
//! directory's owner ([`Error::Refused`]), instead of waiting on it.
//!
//! An exclusive holder records its pid, the time it took the lock and the name of its temp
//! file in the lock file (one short line, rewritten in place; a writer writes it once, with
//! its temp file's name, just before creating the temp file). Each holder reads the
//! record once, as it takes the lock. The next exclusive holder
//! removes that temp file if its writer died (it is a temp name of this target, owned by the
//! caller or the data file's owner, and nobody holds a flock on it): a crash-looping writer
//! leaves at most one orphan, without a directory scan. A waiter reads the line to say since
//! when the lock is held ([`on_wait`]).
//!
//! The lock is the same one util-linux `flock(1)` takes on the lock file, so shell scripts can
//! join in: `flock dir/.NAME.lock CMD` excludes durafile writers of `dir/NAME`.
//!
//! # Limits
//!
//! - A thread that already holds a path's lock gets [`Error::AlreadyLocked`] when it asks for
//!   it again (in either mode, even shared inside shared), instead of deadlocking on itself.
//!   A guard moved to another thread still counts for the thread that took it.
//! - A timed wait polls (1 ms doubling to 25 ms); the kernel does not queue it, so a steady
//!   stream of blocking waiters can make it time out.
//! - Locks are advisory: they exclude only those who take them.
//! - On NFS, flock is emulated with byte-range locks and needs the lock file to be writable;
//!   some network mounts have no locking at all and fail with ENOLCK.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, TryLockError};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::error::{Error, Owner, Result, Step, quote};
use crate::names;
use crate::sys;
use crate::target::Target;

/// Whether a lock excludes everyone or only exclusive holders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LockMode {
    /// Many shared holders at once, no exclusive one: for readers.
    Shared,
    /// One holder and nobody else: for writers.
    Exclusive,
}

/// A held lock, released when dropped.
///
/// # Examples
///
/// ```
/// use durafile::lock::{self, LockMode};
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("state.json");
/// let guard = lock::acquire(&path, LockMode::Exclusive, None)?;
/// // Until `guard` is dropped, no other thread or process gets this lock.
/// assert_eq!(guard.mode(), LockMode::Exclusive);
/// assert!(guard.lock_file().ends_with(".state.json.lock"));
/// drop(guard);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct FileLock {
    /// Held only for its open file description, which the flock belongs to.
    _file: File,
    lock_file: PathBuf,
    mode: LockMode,
    id: (u64, u64),
    /// The thread that took the lock: the guard may be dropped on another one.
    owner: ThreadId,
    /// Whether this guard writes the holder's record into the lock file (an exclusive lock
    /// on a lock file opened for writing).
    records: bool,
    /// The record in the lock file when this guard took the lock: the previous holder's, whose
    /// temp file [`FileLock::remove_dead_temp`] removes if its writer died. Read once, with
    /// the lock held, so that no other holder can have changed it since.
    previous: Option<Record>,
    /// When the lock was taken, in seconds since the epoch, for the record.
    since: u64,
}

impl std::os::fd::AsFd for FileLock {
    /// The descriptor the flock is held on. A child process that inherits it (with
    /// `FD_CLOEXEC` cleared) shares the lock, as with `flock(1)`.
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self._file.as_fd()
    }
}

impl FileLock {
    /// The mode the lock is held in.
    pub fn mode(&self) -> LockMode {
        self.mode
    }

    /// The sidecar file the lock is held on.
    pub fn lock_file(&self) -> &Path {
        &self.lock_file
    }

    /// The lock file's device and inode.
    pub(crate) fn id(&self) -> (u64, u64) {
        self.id
    }

    /// Records in the lock file the temp file this holder is writing, for the next holder to
    /// remove if this process dies (see the module docs). Best effort: without the record an
    /// orphan is still found by [`crate::recover`].
    pub(crate) fn record_temp(&self, temp: &OsStr) {
        if self.records {
            let _ = write_record(&self._file, self.since, Some(temp));
        }
    }

    /// Removes the temp file of `target` that the lock file recorded when this guard took
    /// the lock, if its writer is dead (see [`remove_dead_temp`]). For a writer about to make
    /// its own.
    pub(crate) fn remove_dead_temp(&self, target: &Target) {
        if self.records
            && let Some(Record {
                temp: Some(temp), ..
            }) = &self.previous
        {
            remove_dead_temp(target, temp);
        }
    }
}

/// What a process waiting for a lock is told by the notice set with [`on_wait`].
#[derive(Debug)]
#[non_exhaustive]
pub struct Waiting<'a> {
    /// The data file whose lock is wanted.
    pub path: &'a Path,
    /// The lock file that is held.
    pub lock_file: &'a Path,
    /// How long the wait has lasted so far.
    pub waited: Duration,
    /// The pid of a process holding the lock, where the kernel says (Linux `/proc/locks`).
    pub holder_pid: Option<u32>,
    /// When a durafile writer took the lock, when the holder is one (it records the time).
    pub held_since: Option<SystemTime>,
}

/// How long a wait lasts before the notice set with [`on_wait`] is called.
pub const NOTICE_AFTER: Duration = Duration::from_secs(1);

static NOTICE: Mutex<Option<fn(&Waiting<'_>)>> = Mutex::new(None);

/// Sets the function called once per lock wait that lasts longer than [`NOTICE_AFTER`], for
/// the whole process: an unbounded wait is a hang to a person unless something says who they
/// are waiting for. The `durafile` command prints "waiting for the lock on X (held since …)".
///
/// # Examples
///
/// ```
/// fn tell(w: &durafile::lock::Waiting<'_>) {
///     eprintln!("waiting for the lock on {}", durafile::error::quote(w.path));
/// }
/// durafile::lock::on_wait(tell);
/// ```
pub fn on_wait(notice: fn(&Waiting<'_>)) {
    *NOTICE.lock().unwrap_or_else(|p| p.into_inner()) = Some(notice);
}

fn notice() -> Option<fn(&Waiting<'_>)> {
    *NOTICE.lock().unwrap_or_else(|p| p.into_inner())
}

impl FileLock {
    /// Counts the lock as the calling thread's, so that this thread gets
    /// [`Error::AlreadyLocked`] instead of a deadlock if it asks for it again (a group
    /// commit lends its lock to each member while that member's closure runs).
    pub(crate) fn adopt(&mut self) {
        self.owner = thread::current().id();
        held().push((self.id, self.owner));
    }

    /// Stops counting the lock as any thread's: between its members' turns, a group
    /// commit's lock belongs to none of them, and its leader may go on to lock the file
    /// again once its own update is done. (Dropping the guard later finds no entry to
    /// remove; the flock is released only after that, so no newer entry can be lost.)
    pub(crate) fn disown(&self) {
        let entry = (self.id, self.owner);
        let mut held = held();
        if let Some(i) = held.iter().position(|e| *e == entry) {
            held.swap_remove(i);
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // Closing the descriptor releases the flock; only the bookkeeping is ours to undo.
        let entry = (self.id, self.owner);
        let mut held = held();
        if let Some(i) = held.iter().position(|e| *e == entry) {
            held.swap_remove(i);
        }
    }
}

/// Which threads of this process hold which lock files (by inode), to refuse a self-deadlock.
/// A process holds a handful of locks at a time, so a list beats a map.
fn held() -> MutexGuard<'static, Vec<((u64, u64), ThreadId)>> {
    static HELD: Mutex<Vec<((u64, u64), ThreadId)>> = Mutex::new(Vec::new());
    HELD.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether the calling thread holds any durafile lock (a thread that does must not queue
/// behind others, who may be waiting for that very lock).
pub(crate) fn held_by_this_thread() -> bool {
    let me = thread::current().id();
    held().iter().any(|(_, owner)| *owner == me)
}

/// The lock file that guards `path` (following symlinks, as writers do).
///
/// # Examples
///
/// ```
/// let p = durafile::lock::lock_file_path("data/state.json".as_ref())?;
/// assert_eq!(p, std::path::Path::new("data/.state.json.lock"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn lock_file_path(path: &Path) -> Result<PathBuf> {
    let target = Target::resolve(path)?;
    Ok(target.sibling(names::lock_name(&target.name)))
}

/// Takes `path`'s lock, waiting at most `timeout` (forever with `None`).
///
/// # Errors
///
/// [`Error::LockTimeout`] when the wait ran out, [`Error::AlreadyLocked`] when this thread
/// holds the lock already, and [`Error::Io`] at [`Step::Lock`] when the lock file cannot be
/// opened or created (for instance when the directory does not exist or is not writable; the
/// message names the lock file), and [`Error::Refused`] for a symlink the kernel would not
/// follow or, in a sticky shared directory, a lock file another user owns.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use durafile::lock::{self, LockMode};
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("counter.json");
/// let _writer = lock::acquire(&path, LockMode::Exclusive, None)?;
/// let waited = std::thread::spawn(move || {
///     lock::acquire(&path, LockMode::Shared, Some(Duration::from_millis(50))).map(drop)
/// })
/// .join()
/// .unwrap();
/// assert!(matches!(waited, Err(durafile::Error::LockTimeout { .. })));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn acquire(path: &Path, mode: LockMode, timeout: Option<Duration>) -> Result<FileLock> {
    let target = Target::resolve(path)?;
    lock_target(&target, mode, timeout)
}

/// Takes `path`'s lock if nobody holds it in a conflicting mode; `Ok(None)` if someone does.
///
/// # Examples
///
/// ```
/// use durafile::lock::{self, LockMode};
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("state.json");
/// let first = lock::try_acquire(&path, LockMode::Shared)?;
/// assert!(first.is_some());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn try_acquire(path: &Path, mode: LockMode) -> Result<Option<FileLock>> {
    let target = Target::resolve(path)?;
    match lock_target(&target, mode, Some(Duration::ZERO)) {
        Ok(lock) => Ok(Some(lock)),
        Err(Error::LockTimeout { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

pub(crate) fn lock_target(
    target: &Target,
    mode: LockMode,
    timeout: Option<Duration>,
) -> Result<FileLock> {
    lock_recording(target, mode, timeout, Recording::Now)
}

/// When an exclusive holder writes its record into the lock file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recording {
    /// As the lock is taken, keeping the previous holder's temp file in it (only a writer
    /// proves that one dead and removes it).
    Now,
    /// Only when the writer names its temp file ([`FileLock::record_temp`]), in the same
    /// single write: for a writer that is about to. Until then the previous holder's record
    /// stays as it was, so a writer killed in between leaves what the next holder needs.
    ByWriter,
}

/// [`lock_target`], with the holder's record written as `recording` says.
pub(crate) fn lock_recording(
    target: &Target,
    mode: LockMode,
    timeout: Option<Duration>,
    recording: Recording,
) -> Result<FileLock> {
    let lock_file = target.sibling(names::lock_name(&target.name));
    let lock_err = |e: io::Error| lock_file_error(target, &lock_file, e);
    let data_mode = match &target.meta {
        Some(meta) => meta.mode(),
        None => 0o666 & !sys::umask(),
    };
    let perms = lock_mode(data_mode);
    let start = Instant::now();
    loop {
        let name = names::lock_name(&target.name);
        let opened = target.with_dir(Step::Lock, |dir| {
            sys::open_lock_file(dir, &name, perms).map_err(lock_err)
        })?;
        let (file, meta) = (opened.file, opened.meta);
        let data_owner = target.meta.as_ref().map(MetadataExt::uid);
        if !target.trusts(meta.uid()) && data_owner != Some(meta.uid()) {
            return Err(Error::Refused {
                step: Step::Lock,
                path: target.given.clone(),
                file: lock_file,
                what: "the lock file",
                owner: meta.uid(),
                reason: "in a sticky shared directory another user's lock file is one they can hold forever; durafile uses only lock files owned by you, the data file's owner or the directory's owner (remove it if nobody should have it)",
            });
        }
        // Ours to fix: its owner and group are the data file's (a lock file root made for
        // another user's file must not lock that user out), and its mode is what the data
        // file's writers need; the umask must not narrow a new one below that, and an
        // existing one is only ever narrowed. A lock file already right needs no fixing (the
        // usual case, which thus asks for no uid).
        let wanted = match opened.created {
            true => perms,
            false => meta.mode() & perms & 0o7777,
        };
        let owner_differs = target
            .meta
            .as_ref()
            .is_some_and(|m| m.uid() != meta.uid() || m.gid() != meta.gid());
        let needs_fix = owner_differs || wanted != meta.mode() & 0o7777;
        if needs_fix && (opened.created || meta.uid() == sys::euid()) {
            match &target.meta {
                Some(m) => sys::copy_owner_from(&file, &meta, m),
                None => Ok(()),
            }
            .and_then(|()| match wanted == meta.mode() & 0o7777 {
                true => Ok(()),
                false => file.set_permissions(fs::Permissions::from_mode(wanted)),
            })
            .map_err(lock_err)?;
        }
        let id = sys::file_id(&meta);
        let me = thread::current().id();
        if held().contains(&(id, me)) {
            return Err(Error::AlreadyLocked {
                path: target.given.clone(),
            });
        }
        let deadline = timeout.map(|t| start + t);
        let announce = || announce(target, &lock_file, &file, start);
        match wait_for(&file, mode, deadline, announce).map_err(lock_err)? {
            true => {}
            false => {
                return Err(Error::LockTimeout {
                    path: target.given.clone(),
                    lock_file,
                    waited: start.elapsed(),
                });
            }
        }
        // Still named by its path (and so still linked): nobody removed or replaced it
        // between our open and our flock. One `lstat`, the only way to see a name's inode;
        // without it two holders could each lock a different inode.
        let still_named = sys::names_file(&lock_file, id);
        if still_named {
            let records = mode == LockMode::Exclusive && opened.writable;
            let previous = records.then(|| read_record(&file)).flatten();
            let guard = register(file, lock_file, mode, id, records, previous);
            if records && recording == Recording::Now {
                let temp = guard.previous.as_ref().and_then(|r| r.temp.as_deref());
                let _ = write_record(&guard._file, guard.since, temp);
            }
            return Ok(guard);
        }
    }
}

/// The lock file's mode for a data file of mode `data`: read and write for the owner, and for
/// each of group and others that may write the data, nothing for the rest.
fn lock_mode(data: u32) -> u32 {
    let mut mode = 0o600;
    if data & 0o020 != 0 {
        mode |= 0o060;
    }
    if data & 0o002 != 0 {
        mode |= 0o006;
    }
    mode
}

/// An error opening or checking the lock file, naming it: the OS error alone ("Too many
/// levels of symbolic links", "Permission denied") would blame the data file.
fn lock_file_error(target: &Target, lock_file: &Path, e: io::Error) -> Error {
    let shown = quote(lock_file);
    let advice = match e.raw_os_error() {
        Some(libc::ELOOP) => format!(
            "the lock file {shown} is a symbolic link, which durafile never follows: remove it if you did not make it"
        ),
        Some(libc::EACCES | libc::EPERM) => match fs::symlink_metadata(lock_file) {
            Ok(m) => format!(
                "the lock file {shown} (owned by {}, mode {:04o}) may not be opened by this user: only those who may write the data file can take its lock; ask its owner",
                Owner(m.uid()),
                m.mode() & 0o7777
            ),
            Err(_) => return Error::io_in(Step::Lock, &target.given, &target.dir, e),
        },
        None if e.kind() == io::ErrorKind::InvalidInput => {
            format!("the lock file {shown} is not a regular file: remove it if you did not make it")
        }
        _ => return Error::io_in(Step::Lock, &target.given, &target.dir, e),
    };
    Error::io_advised(Step::Lock, &target.given, e, advice)
}

/// Tells the [`on_wait`] notice who holds the lock.
fn announce(target: &Target, lock_file: &Path, file: &File, start: Instant) {
    let Some(notice) = notice() else {
        return;
    };
    let holder_pid = sys::lock_holder(file);
    // A record is the holder's only when its pid is the holder's (a flock(1) user writes none).
    let held_since = read_record(file)
        .filter(|r| holder_pid.is_none_or(|pid| pid == r.pid))
        .map(|r| UNIX_EPOCH + Duration::from_secs(r.since));
    notice(&Waiting {
        path: &target.given,
        lock_file,
        waited: start.elapsed(),
        holder_pid,
        held_since,
    });
}

/// What an exclusive holder wrote into the lock file.
#[derive(Debug, PartialEq, Eq)]
struct Record {
    pid: u32,
    since: u64,
    temp: Option<OsString>,
}

const RECORD_MAGIC: &[u8] = b"durafile";

/// `durafile PID SINCE LEN TEMP`, written at the start of the lock file without truncating it
/// (LEN says where the record ends, so a longer earlier record's tail is ignored).
fn write_record(file: &File, since: u64, temp: Option<&OsStr>) -> io::Result<()> {
    let temp = temp.map_or(&[][..], |t| t.as_bytes());
    let mut out = format!("durafile {} {since} {} ", std::process::id(), temp.len()).into_bytes();
    out.extend_from_slice(temp);
    out.push(b'\n');
    file.write_all_at(&out, 0)
}

fn read_record(file: &File) -> Option<Record> {
    let mut buf = [0; 512];
    let n = file.read_at(&mut buf, 0).ok()?;
    parse_record(&buf[..n])
}

fn parse_record(bytes: &[u8]) -> Option<Record> {
    let mut fields = bytes.splitn(5, |&b| b == b' ');
    if fields.next()? != RECORD_MAGIC {
        return None;
    }
    let mut number = || {
        std::str::from_utf8(fields.next()?)
            .ok()?
            .parse::<u64>()
            .ok()
    };
    let pid = u32::try_from(number()?).ok()?;
    let since = number()?;
    let len = usize::try_from(number()?).ok()?;
    let temp = fields.next()?.get(..len)?;
    Some(Record {
        pid,
        since,
        temp: (len > 0).then(|| OsStr::from_bytes(temp).to_os_string()),
    })
}

/// Removes `temp`, the temp file a previous exclusive holder recorded, if that writer is dead.
/// The caller holds the exclusive lock, so no durafile writer of this target is running; the
/// temp file must still prove it is an orphan of this target: its name is one of this
/// target's temp names, it is a regular file owned by the caller or the data file's owner,
/// and nobody holds a flock on it (every writer holds one on its temp file until it is gone).
///
/// Usually the recorded temp file was renamed over the target and the open fails at once
/// (ENOENT): that one `openat` is what finding a killed writer's orphan without a directory
/// scan costs.
fn remove_dead_temp(target: &Target, temp: &OsStr) {
    if !names::is_temp_of(temp, &target.name) {
        return;
    }
    let path = target.sibling(temp);
    // Through the writer's pinned directory: a one-name lookup, in the directory checked.
    let opened = target.with_dir(Step::Lock, |dir| Ok(sys::open_nofollow_at(dir, temp)));
    let Ok(Ok(file)) = opened else {
        return;
    };
    let Ok(meta) = file.metadata() else {
        return;
    };
    let owner_ok =
        meta.uid() == sys::euid() || target.meta.as_ref().is_some_and(|m| m.uid() == meta.uid());
    if !meta.is_file() || !owner_ok || file.try_lock().is_err() {
        return;
    }
    // Still the file we checked under that name; the flock we hold keeps a writer off it.
    if sys::names_file(&path, sys::file_id(&meta)) {
        let _ = sys::remove_file(&path);
    }
}

/// Waits for the flock; `Ok(false)` when the deadline passed first. Calls `announce` once
/// after [`NOTICE_AFTER`] of waiting, when a notice is set.
fn wait_for(
    file: &File,
    mode: LockMode,
    deadline: Option<Instant>,
    announce: impl FnOnce(),
) -> io::Result<bool> {
    let blocking = || loop {
        let r = match mode {
            LockMode::Exclusive => file.lock(),
            LockMode::Shared => file.lock_shared(),
        };
        match r {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other.map(|()| true),
        }
    };
    let mut announce = notice().map(|_| announce);
    if deadline.is_none() && announce.is_none() {
        return blocking();
    }
    let notice_at = Instant::now() + NOTICE_AFTER;
    let mut pause = Duration::from_millis(1);
    loop {
        let r = match mode {
            LockMode::Exclusive => file.try_lock(),
            LockMode::Shared => file.try_lock_shared(),
        };
        match r {
            Ok(()) => return Ok(true),
            Err(TryLockError::Error(e)) => return Err(e),
            Err(TryLockError::WouldBlock) => {}
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return Ok(false);
        }
        if now >= notice_at {
            if let Some(announce) = announce.take() {
                announce();
            }
            if deadline.is_none() {
                return blocking();
            }
        }
        let mut sleep = pause;
        if let Some(d) = deadline {
            sleep = sleep.min(d - now);
        }
        if announce.is_some() {
            sleep = sleep.min(notice_at - now);
        }
        thread::sleep(sleep);
        pause = (pause * 2).min(Duration::from_millis(25));
    }
}

/// Adopts `path`'s lock that this process inherited on descriptor `fd` from a parent that
/// holds it in `mode`, as `durafile lock` passes its lock to its command (like `flock(1)`).
///
/// A flock belongs to the open file description, which parent and child share; so the child
/// may write under it, while asking for the lock anew would wait for its own parent forever.
/// The proof that the lock is held: `fd` is open on the very lock file of `path` (same device
/// and inode), and a non-blocking flock in `mode` on it succeeds at once, which it does when
/// that description holds the lock (if nobody held it, it now does, which is as good).
///
/// `mode` must be the mode the parent holds: a flock in the other mode on the same description
/// would convert the parent's lock, which Linux does by releasing it first.
///
/// # Errors
///
/// At [`Step::Lock`] when `fd` is not open on `path`'s lock file, or when the lock is held
/// through another open file description (the flock would block); [`Error::AlreadyLocked`]
/// when this thread holds the lock already.
///
/// # Examples
///
/// ```
/// use std::os::fd::AsFd;
/// use durafile::lock::{self, LockMode};
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("state.json");
/// let parent = lock::acquire(&path, LockMode::Exclusive, None)?;
/// // What a child inherits: a descriptor of the same open file description.
/// let inherited = parent.as_fd().try_clone_to_owned()?;
/// let child = std::thread::spawn(move || lock::adopt_inherited(&path, inherited, LockMode::Exclusive));
/// assert_eq!(child.join().unwrap()?.mode(), LockMode::Exclusive);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn adopt_inherited(path: &Path, fd: std::os::fd::OwnedFd, mode: LockMode) -> Result<FileLock> {
    let target = Target::resolve(path)?;
    let lock_file = target.sibling(names::lock_name(&target.name));
    let refuse = |why: String| {
        Error::io(
            Step::Lock,
            &target.given,
            io::Error::new(io::ErrorKind::InvalidInput, why),
        )
    };
    let file = File::from(fd);
    let id = sys::file_id(
        &file
            .metadata()
            .map_err(|e| Error::io(Step::Lock, path, e))?,
    );
    if !sys::names_file(&lock_file, id) {
        return Err(refuse(format!(
            "the inherited descriptor is not open on the lock file {}",
            quote(&lock_file)
        )));
    }
    let me = thread::current().id();
    if held().contains(&(id, me)) {
        return Err(Error::AlreadyLocked {
            path: target.given.clone(),
        });
    }
    let locked = match mode {
        LockMode::Exclusive => file.try_lock(),
        LockMode::Shared => file.try_lock_shared(),
    };
    match locked {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(refuse(format!(
                "{} is locked, but not through the inherited descriptor: another process holds it",
                quote(&lock_file)
            )));
        }
        Err(TryLockError::Error(e)) => return Err(Error::io(Step::Lock, path, e)),
    }
    // An adopting writer records its temp file like any exclusive holder, so a killed command
    // under `durafile lock` leaves an orphan the next writer finds; the parent's record of
    // when the lock was taken stays until then.
    let records = mode == LockMode::Exclusive && sys::is_writable(&file);
    let previous = records.then(|| read_record(&file)).flatten();
    Ok(register(file, lock_file, mode, id, records, previous))
}

/// The guard of a lock this thread has just taken, counted in [`held`] until it is dropped.
fn register(
    file: File,
    lock_file: PathBuf,
    mode: LockMode,
    id: (u64, u64),
    records: bool,
    previous: Option<Record>,
) -> FileLock {
    let owner = thread::current().id();
    held().push((id, owner));
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    FileLock {
        _file: file,
        lock_file,
        mode,
        id,
        owner,
        records,
        previous,
        since,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relocking_in_the_same_thread_is_an_error_not_a_deadlock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.json");
        let _held = acquire(&path, LockMode::Shared, None).unwrap();
        let err = acquire(&path, LockMode::Exclusive, None).unwrap_err();
        assert!(matches!(err, Error::AlreadyLocked { .. }), "{err}");
    }

    #[test]
    fn guard_dropped_on_another_thread_releases_its_owner() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.json");
        let guard = acquire(&path, LockMode::Exclusive, None).unwrap();
        thread::spawn(move || drop(guard)).join().unwrap();
        assert!(try_acquire(&path, LockMode::Exclusive).unwrap().is_some());
    }

    #[test]
    fn released_lock_can_be_taken_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.json");
        drop(acquire(&path, LockMode::Exclusive, None).unwrap());
        let again = try_acquire(&path, LockMode::Exclusive).unwrap();
        assert!(again.is_some());
    }

    #[test]
    fn exclusive_excludes_other_threads_and_shared_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.json");
        let shared = acquire(&path, LockMode::Shared, None).unwrap();
        let p = path.clone();
        let other = thread::spawn(move || {
            let s = try_acquire(&p, LockMode::Shared).unwrap().is_some();
            let x = try_acquire(&p, LockMode::Exclusive).unwrap().is_some();
            (s, x)
        })
        .join()
        .unwrap();
        assert_eq!(other, (true, false));
        drop(shared);
    }

    #[test]
    fn records_round_trip_and_ignore_an_older_longer_tail() {
        let dir = tempfile::tempdir().unwrap();
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(dir.path().join("l"))
            .unwrap();
        assert_eq!(read_record(&file), None, "an empty lock file has no record");
        let odd = OsStr::new(".a b\nc.df-0123456789.tmp");
        write_record(&file, 7, Some(odd)).unwrap();
        let r = read_record(&file).unwrap();
        assert_eq!(
            (r.pid, r.since, r.temp.as_deref()),
            (std::process::id(), 7, Some(odd))
        );
        write_record(&file, 8, None).unwrap();
        assert_eq!(read_record(&file).unwrap().temp, None);
        for junk in [
            &b"durafile"[..],
            b"flock 1 2 0 ",
            b"durafile x 2 0 ",
            b"durafile 1 2 9 abc",
        ] {
            assert_eq!(parse_record(junk), None);
        }
    }

    #[test]
    fn lock_mode_follows_the_data_files_write_bits() {
        assert_eq!(lock_mode(0o644), 0o600);
        assert_eq!(lock_mode(0o664), 0o660);
        assert_eq!(lock_mode(0o666), 0o666);
        assert_eq!(lock_mode(0o400), 0o600);
        assert_eq!(lock_mode(0o602), 0o606);
    }

    #[test]
    fn deleted_lock_file_is_recreated_and_relocked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.json");
        let first = acquire(&path, LockMode::Exclusive, None).unwrap();
        fs::remove_file(first.lock_file()).unwrap();
        let second = try_acquire(&path, LockMode::Exclusive).unwrap();
        assert!(second.is_some(), "a new lock file is a new lock");
        assert!(first.lock_file().exists());
    }
}
