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

use std::fs::{self, File, TryLockError};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use crate::error::{Error, Result, Step};
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
/// opened or created (for instance when the directory does not exist or is not writable).
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
    let lock_file = target.sibling(names::lock_name(&target.name));
    let lock_err = |e: io::Error| Error::io(Step::Lock, &target.given, e);
    let start = Instant::now();
    loop {
        let file = sys::open_lock_file(&lock_file).map_err(lock_err)?;
        let id = sys::file_id(&file.metadata().map_err(lock_err)?);
        let me = thread::current().id();
        if held().contains(&(id, me)) {
            return Err(Error::AlreadyLocked {
                path: target.given.clone(),
            });
        }
        let deadline = timeout.map(|t| start + t);
        match wait_for(&file, mode, deadline).map_err(lock_err)? {
            true => {}
            false => {
                return Err(Error::LockTimeout {
                    path: target.given.clone(),
                    lock_file,
                    waited: start.elapsed(),
                });
            }
        }
        // Still named by its path (and so still linked): nobody replaced it while we waited.
        let still_named = fs::symlink_metadata(&lock_file).is_ok_and(|m| sys::file_id(&m) == id);
        if still_named {
            held().push((id, me));
            return Ok(FileLock {
                _file: file,
                lock_file,
                mode,
                id,
                owner: me,
            });
        }
    }
}

/// Waits for the flock; `Ok(false)` when the deadline passed first.
fn wait_for(file: &File, mode: LockMode, deadline: Option<Instant>) -> io::Result<bool> {
    let Some(deadline) = deadline else {
        loop {
            let r = match mode {
                LockMode::Exclusive => file.lock(),
                LockMode::Shared => file.lock_shared(),
            };
            match r {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other.map(|()| true),
            }
        }
    };
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
        if now >= deadline {
            return Ok(false);
        }
        thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(25));
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
