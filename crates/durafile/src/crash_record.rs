//! A recorder of every durability-relevant operation durafile performs, for the crash-state
//! checker in `tests/crash_model/`. Compiled only with the `crash-model` feature: the
//! default build has none of it, and its hooks in `sys` are empty inline functions.
//!
//! # What is recorded, and how
//!
//! Every create, rename, hard link, unlink, mkdir, rmdir, file fsync and directory fsync that
//! durafile makes passes through `sys`, which reports it here while a recording is active and
//! the path lies under the recorded root. Operations made through a pinned directory's
//! descriptor (`openat`, `renameat`, `unlinkat`, its fsync) are recorded under the path the
//! kernel gives for that descriptor (`/proc/self/fd`), which is where they really happened
//! even if the directory was renamed or a link swapped in after it was opened. File data is recorded as a snapshot of the file's
//! whole content (read back through `/proc/self/fd`) at the next operation that can make it
//! visible or durable: an fsync, a rename or a link. durafile writes each file it creates
//! front to back and never writes it again after the first of those operations, so the
//! content at any crash point is a prefix of the snapshot that follows it; the model lets
//! un-fsynced data be cut at any byte anyway. The one later change is a shrink (the checksum
//! sidecar cut down to its first line), recorded as a new snapshot as soon as it is made. (The model also notes that a file first seen
//! without a snapshot has unknown content, and uses its next snapshot for it.)
//!
//! Files are identified by a model id, not an inode number: the kernel reuses inode numbers
//! of unlinked files, so each create gets a fresh id.
//!
//! # Mutations
//!
//! [`mutate`] switches on one deliberate bug (see [`Mutation`]), so that the checker's tests
//! can prove it reports a broken protocol. Like a failpoint, a mutation is process-wide.
//!
//! # Limits
//!
//! One process: operations of other processes are not seen. Linux only (`/proc/self/fd`).
//! Metadata (mode, owner) and timestamps are not modelled.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// One recorded operation. Paths are relative to the recorded root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A new, empty regular file at `path`, with model id `id`.
    Create {
        /// Where.
        path: PathBuf,
        /// Its model id.
        id: u64,
    },
    /// File `id` holds `content` (not yet durable unless an [`Event::Fsync`] follows).
    Data {
        /// The file.
        id: u64,
        /// Its whole content at this point.
        content: Vec<u8>,
    },
    /// fsync of file `id`: its last [`Event::Data`] is durable.
    Fsync {
        /// The file.
        id: u64,
    },
    /// `from` renamed to `to` (replacing whatever `to` named).
    Rename {
        /// The old name.
        from: PathBuf,
        /// The new name.
        to: PathBuf,
    },
    /// A new name `to` for the file at `from`.
    Link {
        /// The existing name.
        from: PathBuf,
        /// The new name.
        to: PathBuf,
    },
    /// `path` unlinked.
    Unlink {
        /// The name removed.
        path: PathBuf,
    },
    /// Directory `path` created.
    Mkdir {
        /// The new directory.
        path: PathBuf,
    },
    /// Empty directory `path` removed.
    Rmdir {
        /// The directory removed.
        path: PathBuf,
    },
    /// fsync of directory `path`: every entry change in it so far is durable.
    DirFsync {
        /// The directory (`""` for the root).
        path: PathBuf,
    },
    /// A label the test set with [`mark`] (for instance "this write returned").
    Mark(String),
}

/// A file's model id and content.
pub type IdContent = (u64, Vec<u8>);

/// A recorded run: the root's content when recording started (taken to be durable), then
/// the operations in the order they completed.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    /// Every directory (content `None`) and file (its model id and content) under the root.
    pub base: Vec<(PathBuf, Option<IdContent>)>,
    /// The operations.
    pub events: Vec<Event>,
}

/// A deliberate bug, to prove the checker finds the states it allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutation {
    /// No directory fsync after the rename (`Full` then promises what it does not do).
    SkipDirSync,
    /// The temp file is fsynced after the rename instead of before it.
    SyncAfterRename,
    /// The checksum sidecar lists only the new digest before the data is renamed.
    ChecksumFinishFirst,
}

impl Mutation {
    fn name(self) -> &'static str {
        match self {
            Mutation::SkipDirSync => "skip_dir_sync",
            Mutation::SyncAfterRename => "sync_after_rename",
            Mutation::ChecksumFinishFirst => "checksum_finish_first",
        }
    }
}

struct Recorder {
    root: PathBuf,
    trace: Trace,
    /// Live (dev, inode) to model id.
    ids: HashMap<(u64, u64), u64>,
    next_id: u64,
}

struct State {
    recorder: Option<Recorder>,
    mutation: Option<Mutation>,
}

fn state() -> MutexGuard<'static, State> {
    static STATE: Mutex<State> = Mutex::new(State {
        recorder: None,
        mutation: None,
    });
    STATE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Starts recording the operations under `root` (an absolute path without symlinks), taking
/// its current content as the durable starting point. Replaces a recording in progress.
///
/// # Examples
///
/// ```
/// use durafile::crash_record::{self, Event};
///
/// let dir = tempfile::tempdir()?;
/// let root = dir.path().canonicalize()?;
/// crash_record::start(&root)?;
/// durafile::write(root.join("a"), b"x", &durafile::Options::new())?;
/// let trace = crash_record::stop();
/// assert!(trace.events.iter().any(|e| matches!(e, Event::DirFsync { .. })));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn start(root: &Path) -> std::io::Result<()> {
    let mut rec = Recorder {
        root: root.to_path_buf(),
        trace: Trace::default(),
        ids: HashMap::new(),
        next_id: 1,
    };
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut entries: Vec<_> = fs::read_dir(&dir)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            let meta = fs::symlink_metadata(&path)?;
            let rel = path.strip_prefix(root).expect("under root").to_path_buf();
            if meta.is_dir() {
                rec.trace.base.push((rel, None));
                stack.push(path);
            } else if meta.is_file() {
                let id = rec.fresh_id(&meta);
                rec.trace.base.push((rel, Some((id, fs::read(&path)?))));
            }
        }
    }
    state().recorder = Some(rec);
    Ok(())
}

/// Stops recording and returns what was recorded (empty if nothing was).
pub fn stop() -> Trace {
    state().recorder.take().map(|r| r.trace).unwrap_or_default()
}

/// Adds a label to the recording, between the operations before and after it.
pub fn mark(label: impl Into<String>) {
    record(Event::Mark(label.into()));
}

/// Switches on `mutation` (or, with `None`, back to the correct protocol), process-wide.
pub fn mutate(mutation: Option<Mutation>) {
    state().mutation = mutation;
}

pub(crate) fn mutated(name: &str) -> bool {
    state().mutation.is_some_and(|m| m.name() == name)
}

impl Recorder {
    fn fresh_id(&mut self, meta: &fs::Metadata) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.ids.insert((meta.dev(), meta.ino()), id);
        id
    }

    fn rel(&self, path: &Path) -> Option<PathBuf> {
        let abs = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir().ok()?.join(path)
        };
        abs.strip_prefix(&self.root).ok().map(Path::to_path_buf)
    }

    fn id_of(&self, meta: &fs::Metadata) -> Option<u64> {
        self.ids.get(&(meta.dev(), meta.ino())).copied()
    }

    fn snapshot_path(&mut self, path: &Path) {
        if let (Ok(meta), Ok(content)) = (fs::symlink_metadata(path), fs::read(path))
            && let Some(id) = self.id_of(&meta)
        {
            self.trace.events.push(Event::Data { id, content });
        }
    }
}

/// Runs `f` on the active recorder when `path` lies under its root.
fn with(path: &Path, f: impl FnOnce(&mut Recorder, PathBuf)) {
    let mut state = state();
    if let Some(rec) = &mut state.recorder
        && let Some(rel) = rec.rel(path)
    {
        f(rec, rel);
    }
}

pub(crate) fn created(path: &Path, file: &File) {
    with(path, |rec, rel| {
        if let Ok(meta) = file.metadata() {
            let id = rec.fresh_id(&meta);
            rec.trace.events.push(Event::Create { path: rel, id });
        }
    });
}

/// Called just before `file` is fsynced: its content as the kernel holds it.
pub(crate) fn fsynced(file: &File) {
    if let Some(id) = snapshot(file) {
        record(Event::Fsync { id });
    }
}

/// Called just after `file` was cut short: its content now (not yet durable).
pub(crate) fn shrunk(file: &File) {
    snapshot(file);
}

/// Records `file`'s whole content as an [`Event::Data`], returning its model id.
fn snapshot(file: &File) -> Option<u64> {
    let mut state = state();
    let rec = state.recorder.as_mut()?;
    let id = rec.id_of(&file.metadata().ok()?)?;
    // The descriptor may be write-only: read the inode through a fresh open of it.
    let proc = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
    let content = fs::read(proc).ok()?;
    rec.trace.events.push(Event::Data { id, content });
    Some(id)
}

fn record(event: Event) {
    if let Some(rec) = &mut state().recorder {
        rec.trace.events.push(event);
    }
}

/// The path the kernel gives for the open directory `dir`, while a recording is active.
fn dir_path(dir: &File) -> Option<PathBuf> {
    // Not while idle: the lookup is a syscall, and most runs record nothing.
    let recording = state().recorder.is_some();
    recording
        .then(|| fs::read_link(format!("/proc/self/fd/{}", dir.as_raw_fd())).ok())
        .flatten()
}

/// [`created`] for `name` in the open directory `dir`.
pub(crate) fn created_at(dir: &File, name: &OsStr, file: &File) {
    if let Some(dir) = dir_path(dir) {
        created(&dir.join(name), file);
    }
}

/// [`before_move`] for `name` in the open directory `dir`.
pub(crate) fn before_move_at(dir: &File, name: &OsStr) {
    if let Some(dir) = dir_path(dir) {
        before_move(&dir.join(name));
    }
}

/// [`renamed`] for two names in the open directory `dir`.
pub(crate) fn renamed_at(dir: &File, from: &OsStr, to: &OsStr) {
    if let Some(dir) = dir_path(dir) {
        renamed(&dir.join(from), &dir.join(to));
    }
}

/// [`unlinked`] for `name` in the open directory `dir`.
pub(crate) fn unlinked_at(dir: &File, name: &OsStr) {
    if let Some(dir) = dir_path(dir) {
        unlinked(&dir.join(name));
    }
}

pub(crate) fn dir_fsynced(dir: &Path) {
    with(dir, |rec, path| {
        rec.trace.events.push(Event::DirFsync { path })
    });
}

/// [`dir_fsynced`] for the open directory `dir`.
pub(crate) fn dir_fsynced_at(dir: &File) {
    if let Some(dir) = dir_path(dir) {
        dir_fsynced(&dir);
    }
}

/// Called just before `from` is renamed or linked to `to`.
pub(crate) fn before_move(from: &Path) {
    with(from, |rec, _| rec.snapshot_path(from));
}

pub(crate) fn renamed(from: &Path, to: &Path) {
    with(from, |rec, from| {
        if let Some(to) = rec.rel(to) {
            rec.trace.events.push(Event::Rename { from, to });
        }
    });
}

pub(crate) fn linked(from: &Path, to: &Path) {
    with(from, |rec, from| {
        if let Some(to) = rec.rel(to) {
            rec.trace.events.push(Event::Link { from, to });
        }
    });
}

/// A file made by copying: a create and its content.
pub(crate) fn copied(to: &Path) {
    with(to, |rec, rel| {
        if let Ok(meta) = fs::symlink_metadata(to) {
            let id = rec.fresh_id(&meta);
            rec.trace.events.push(Event::Create { path: rel, id });
            rec.snapshot_path(to);
        }
    });
}

pub(crate) fn unlinked(path: &Path) {
    with(path, |rec, path| {
        rec.trace.events.push(Event::Unlink { path })
    });
}

pub(crate) fn made_dir(path: &Path) {
    with(path, |rec, path| {
        rec.trace.events.push(Event::Mkdir { path })
    });
}

pub(crate) fn removed_dir(path: &Path) {
    with(path, |rec, path| {
        rec.trace.events.push(Event::Rmdir { path })
    });
}

/// Whether `path` is under the recorded root (to decide if a removal is worth walking).
pub(crate) fn watched(path: &Path) -> bool {
    let state = state();
    state
        .recorder
        .as_ref()
        .is_some_and(|rec| rec.rel(path).is_some())
}
