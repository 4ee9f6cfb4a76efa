//! Group commit of updates inside one process: when several threads [`update`]
//! the same file at once, one write, one fsync and one rename serve all of them.
//!
//! # Guarantees
//!
//! For each caller, exactly what a lone [`update`] promises:
//!
//! - **Exactly once, in order.** Each caller's closure runs once, on the content left by the
//!   caller before it (arrival order: the order in which callers took a ticket), as if the
//!   updates had been made one after another under the file's lock.
//! - **Failures stay with their caller.** A closure that returns an error, or panics, changes
//!   nothing: the next closure sees the previous good result. The error is returned to that
//!   caller only; a panic is caught and resumed on that caller's own thread, after it has
//!   passed its turn on.
//! - **Acknowledged only when durable at the caller's level.** A caller returns `Ok` only after
//!   the commit that contains its change has returned, and a group commits at the strongest
//!   level any of its members asked for, so a `full` caller is never acknowledged by a
//!   `none` commit. An error of the commit itself goes to every member of the group.
//! - **Across processes**, nothing changes: the group's leader holds the file's exclusive
//!   [lock] from its read to its rename, as a lone update does.
//!
//! # How it works, and why it is correct
//!
//! Callers of one file (and one set of options, durability aside) share a queue. Each takes a
//! ticket, and waits for its turn. At its turn, a caller finds the group open, or opens one:
//! it takes the file's lock, creates the temp file (recorded in the lock file, as every
//! holder's is, so that the next holder removes it if this process dies) and reads the
//! current content. Then, on its own thread (closures need not be `Send`), it applies its
//! closure to the group's content in memory, and passes the turn on. The caller that finds nobody waiting after it
//! (or that brings the group to `MAX_GROUP`, 256 changes) closes the group: it writes the
//! last content once and commits it, then wakes the members with the result. The next
//! caller meanwhile opens the next group and waits for the lock, which the commit releases
//! (before its directory fsync, see `Staged::release_lock_early` in `atomic`).
//!
//! The content each closure sees is the one a serial execution would have given it: the
//! turns are taken in ticket order, a group's content starts from the file under the lock,
//! and a group commits only changes that succeeded, in order. A power loss leaves what a
//! lone update's would: the commit is an ordinary durafile commit (checked, as all of them,
//! by the crash-state checker in `tests/crash_model`), and it holds the changes of a prefix of
//! the callers; none of them has been acknowledged before it returned.
//!
//! # Limits
//!
//! - A thread already holding a durafile lock does not join a group: it updates alone, as
//!   before (and gets [`Error::AlreadyLocked`] for the same file). While a member's closure
//!   runs, the group's lock counts as that member thread's, so a closure that updates or
//!   locks the same file again is refused as before instead of deadlocking.
//! - A lock timeout bounds the leader's wait for the lock, not a member's wait for its turn.
//! - `fork` while another thread is inside an update of a file: the child must not update
//!   that file. It inherits the queue in its in-flight state and, as with any durafile lock
//!   held across a `fork`, a descriptor of the group's lock (process spawning through
//!   `std::process::Command` execs at once and is not affected).
//! - Two spellings of one path (through a symlink, relative and absolute) are one file once
//!   resolved; callers with different options other than durability form separate groups,
//!   serialised by the lock as separate processes are.

use std::any::Any;
use std::collections::HashMap;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard};

use crate::atomic::AtomicFile;
use crate::error::{Error, Result, Step, copy_error};
use crate::lock;
use crate::options::{Durability, Options};
use crate::target::Target;

/// The most changes one commit carries, so that a steady stream of callers cannot keep the
/// first one waiting for its acknowledgement forever.
pub(crate) const MAX_GROUP: usize = 256;

/// A group's key: the file (resolved, absolute) and the options, durability aside.
type Key = (PathBuf, Options);

/// Callers of one file: the tickets, the open group, the results of groups committed.
#[derive(Default)]
struct Queue {
    state: Mutex<QueueState>,
    /// Signalled when the turn passes on, for the callers waiting for theirs.
    turn: Condvar,
    /// Signalled when a group's commit returned, for its members waiting for the result: a
    /// separate wake-up, so that passing the turn does not wake them (nor a commit the
    /// callers still waiting for their turn) for nothing.
    committed: Condvar,
}

#[derive(Default)]
struct QueueState {
    next_ticket: u64,
    serving: u64,
    open: Option<Group>,
    next_group: u64,
    /// Commit results not yet collected by every member: (group, result, members left).
    results: Vec<(u64, std::result::Result<(), Arc<Error>>, usize)>,
}

struct Group {
    id: u64,
    file: AtomicFile,
    /// The content after the last successful change (`None`: no file).
    content: Option<Vec<u8>>,
    members: usize,
    durability: Durability,
}

fn queues() -> MutexGuard<'static, HashMap<Key, Arc<Queue>>> {
    static QUEUES: LazyLock<Mutex<HashMap<Key, Arc<Queue>>>> = LazyLock::new(Default::default);
    QUEUES.lock().unwrap_or_else(|p| p.into_inner())
}

fn rank(d: Durability) -> u8 {
    match d {
        Durability::None => 0,
        Durability::Consistent => 1,
        Durability::Full => 2,
    }
}

/// Replaces `path`'s content with what `f` makes of the current content (`None` when the file
/// does not exist), holding the exclusive lock from the read to the rename: no other durafile
/// writer can slip an update in between, so none is lost.
///
/// Threads of one process that update the same file at once share one write, one fsync and
/// one rename (group commit, see the module doc): each closure still runs exactly once, in
/// arrival order, on the previous one's result, and each call returns once its own change is
/// durable at its level. A closure that fails or panics affects only its own call.
///
/// When `f` fails, nothing is written and its error is returned. The closure's error type
/// must accept a [`durafile::Error`](Error), so one `?` serves both.
///
/// # Examples
///
/// ```
/// use durafile::Options;
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("counter");
/// for _ in 0..3 {
///     durafile::update(&path, &Options::new(), |current| {
///         let n: u64 = match current {
///             Some(bytes) => std::str::from_utf8(bytes).unwrap().parse().unwrap(),
///             None => 0,
///         };
///         Ok::<_, durafile::Error>((n + 1).to_string().into_bytes())
///     })?;
/// }
/// assert_eq!(std::fs::read_to_string(&path)?, "3");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn update<F, E>(path: impl AsRef<Path>, opts: &Options, f: F) -> Result<(), E>
where
    F: FnOnce(Option<&[u8]>) -> Result<Vec<u8>, E>,
    E: From<Error>,
{
    update_returning(path.as_ref(), opts, |current| {
        f(current).map(|new| (new, ()))
    })
}

/// Replaces `path`'s content with the first part of what `f` makes of it and returns the
/// second, sharing the commit with concurrent callers of the same file (see the module doc).
pub(crate) fn update_returning<R, E>(
    path: &Path,
    opts: &Options,
    f: impl FnOnce(Option<&[u8]>) -> std::result::Result<(Vec<u8>, R), E>,
) -> std::result::Result<R, E>
where
    E: From<Error>,
{
    let target = Target::resolve(path)?;
    if lock::held_by_this_thread() {
        return alone(target, opts, f);
    }
    let key = (
        // No `getcwd` for a path that is absolute already.
        std::path::absolute(&target.resolved).unwrap_or_else(|_| target.resolved.clone()),
        opts.clone().durability(Durability::Full),
    );
    let queue = queues().entry(key.clone()).or_default().clone();
    let result = queued(&queue, &key.0, target, opts, f);
    let mut all = queues();
    if Arc::strong_count(&queue) == 2 && queue.idle() {
        all.remove(&key);
    }
    result
}

/// The update without a group: the old path, for callers that may not wait in a queue.
fn alone<R, E>(
    target: Target,
    opts: &Options,
    f: impl FnOnce(Option<&[u8]>) -> std::result::Result<(Vec<u8>, R), E>,
) -> std::result::Result<R, E>
where
    E: From<Error>,
{
    let file = AtomicFile::for_target(target, opts)?;
    let current = file.read_current()?;
    let (new, r) = f(current.as_deref())?;
    file.commit_with(&new)?;
    Ok(r)
}

/// What became of one caller's closure.
enum Applied<R, E> {
    /// Its change is in group `id`.
    Joined(u64, R),
    Failed(E),
    Panicked(Box<dyn Any + Send>),
}

fn queued<R, E>(
    queue: &Queue,
    file: &Path,
    target: Target,
    opts: &Options,
    f: impl FnOnce(Option<&[u8]>) -> std::result::Result<(Vec<u8>, R), E>,
) -> std::result::Result<R, E>
where
    E: From<Error>,
{
    let mut state = queue.lock();
    let ticket = state.next_ticket;
    state.next_ticket += 1;
    while state.serving != ticket {
        state = queue.wait(&queue.turn, state);
    }
    if state.open.is_none() {
        // Opening may wait for the lock (another process, or our previous group's commit);
        // the callers behind us wait for their turn meanwhile.
        drop(state);
        let opened = AtomicFile::for_target(target, opts).and_then(|file| {
            file.disown_lock();
            file.read_current().map(|content| (file, content))
        });
        state = queue.lock();
        match opened {
            Ok((file, content)) => {
                let id = state.next_group;
                state.next_group += 1;
                state.open = Some(Group {
                    id,
                    file,
                    content,
                    members: 0,
                    durability: Durability::None,
                });
            }
            Err(e) => {
                queue.pass_turn(&mut state);
                return Err(e.into());
            }
        }
    }
    let group = state.open.as_mut().expect("opened above");
    let current = group.content.take();
    // While our closure runs, the lock counts as this thread's: a closure that asks for it
    // again (a nested update, `lock::acquire`) is refused instead of deadlocking.
    group.file.adopt_lock();
    drop(state);
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| f(current.as_deref())));
    let mut state = queue.lock();
    let group = state.open.as_mut().expect("our turn keeps it open");
    group.file.disown_lock();
    let applied = match outcome {
        Ok(Ok((new, r))) => {
            group.content = Some(new);
            group.members += 1;
            if rank(opts.get_durability()) > rank(group.durability) {
                group.durability = opts.get_durability();
            }
            Applied::Joined(group.id, r)
        }
        Ok(Err(e)) => {
            group.content = current;
            Applied::Failed(e)
        }
        Err(panic) => {
            group.content = current;
            Applied::Panicked(panic)
        }
    };
    let full = group.members >= MAX_GROUP;
    queue.pass_turn(&mut state);
    if state.serving == state.next_ticket || full {
        let group = state.open.take().expect("still open");
        drop(state);
        let (id, members) = (group.id, group.members);
        let committed = panic::catch_unwind(AssertUnwindSafe(|| commit(group)));
        state = queue.lock();
        let result = match &committed {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Arc::new(share(e, file))),
            Err(_) => Err(Arc::new(Error::io(
                Step::Write,
                file,
                io::Error::other("the commit of this group panicked"),
            ))),
        };
        if members > 0 {
            state.results.push((id, result, members));
        }
        queue.committed.notify_all();
        if let Err(panic) = committed {
            drop(state);
            panic::resume_unwind(panic);
        }
    }
    match applied {
        Applied::Failed(e) => Err(e),
        Applied::Panicked(panic) => {
            drop(state);
            panic::resume_unwind(panic)
        }
        Applied::Joined(id, r) => loop {
            if let Some(i) = state.results.iter().position(|(g, _, _)| *g == id) {
                let entry = &mut state.results[i];
                entry.2 -= 1;
                let result = match entry.2 {
                    0 => state.results.swap_remove(i).1,
                    _ => entry.1.clone(),
                };
                let unshared =
                    |e: Arc<Error>| Arc::try_unwrap(e).unwrap_or_else(|e| share(&e, file));
                return result.map(|()| r).map_err(|e| E::from(unshared(e)));
            }
            state = queue.wait(&queue.committed, state);
        },
    }
}

/// Writes a group's last content once and commits it at its strongest level.
fn commit(group: Group) -> Result<()> {
    let Group {
        mut file,
        content,
        members,
        durability,
        ..
    } = group;
    if members == 0 {
        return file.discard();
    }
    file.set_durability(durability);
    file.commit_with(content.as_deref().unwrap_or_default())
}

/// A copy of a group's error for each member (`Error` is not `Clone`).
fn share(e: &Error, file: &Path) -> Error {
    match e {
        Error::Io {
            step,
            path,
            source,
            advice,
        } => Error::Io {
            step: *step,
            path: path.clone(),
            source: copy_error(source),
            advice: advice.clone(),
        },
        other => Error::io(Step::Write, file, io::Error::other(other.to_string())),
    }
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wait<'a>(
        &self,
        signal: &Condvar,
        state: MutexGuard<'a, QueueState>,
    ) -> MutexGuard<'a, QueueState> {
        signal.wait(state).unwrap_or_else(|p| p.into_inner())
    }

    fn pass_turn(&self, state: &mut QueueState) {
        state.serving += 1;
        self.turn.notify_all();
    }

    fn idle(&self) -> bool {
        let state = self.lock();
        state.serving == state.next_ticket && state.open.is_none() && state.results.is_empty()
    }
}
