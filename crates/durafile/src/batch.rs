//! Many JSON writes at once, on a bounded pool of threads, with group commit.
//!
//! # Guarantees
//!
//! Every operation goes through the path's lock and the atomic write, so concurrent jobs (in
//! this batch, other batches, other processes) never tear a file or lose an update: the
//! operations on one document are applied in the order given, under its exclusive lock, to
//! its current content. A failing operation does not stop the others.
//!
//! Documents at `s3://` URLs (feature `s3`) are updated one after another after the local
//! groups, each by one compare-and-swap update of the object (see `remote`): no lock, no
//! group commit, and each is durable as soon as the store acknowledged it.
//!
//! A batch is **not** a transaction across files: a crash part-way leaves each file with
//! its old or its new content, complete, but some files new and others old.
//!
//! # Group commit, and what is durable when
//!
//! Documents are committed in groups of up to [`BatchProcessor::group_size`] files, fewer
//! when the descriptors a group holds (up to four per document until it commits) would not fit the
//! process's `RLIMIT_NOFILE`:
//!
//! 1. one thread takes their locks in one global order (so two batches cannot deadlock),
//!    and hands each locked document to the workers at once;
//! 2. the worker threads read, apply the operations, write and fsync each temp file, in
//!    parallel, and rename it into place as soon as its own fsync succeeded (a document
//!    with a checksum sidecar instead records the new digest in the sidecar and waits);
//! 3. each directory involved is fsynced once (only when sidecars need it), the waiting
//!    files are renamed into place, each directory is fsynced once more, and the sidecars
//!    are finished.
//!
//! Renaming in the workers keeps every rule of a single write (no rename before the data's
//! fsync, the directory's fsync after every rename before [`BatchProcessor::run`] reports
//! the document applied at `full`), and lets the rename's own wait on the disk (freeing the
//! old version) overlap the other workers' work instead of running in a serial pass.
//!
//! At [`Durability::Full`](crate::Durability::Full) an operation reported
//! [`Outcome::Applied`] is durable once [`BatchProcessor::run`] returns (its group is durable
//! as soon as step 3 is done); the cost is one file fsync per document, in parallel, plus two
//! directory fsyncs per directory per group, instead of a file and a directory fsync per write.
//! A failure after a document's rename (the directory fsync, the sidecar's last step) leaves
//! its new content in place: its operations are [`Outcome::AppliedDurabilityUnknown`], never
//! failed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use serde_json::Value;

use crate::atomic::{AtomicFile, Staged};
use crate::error::{Error, Step};
use crate::fault;
use crate::file_manager::{FileManager, parse};
use crate::lock::{self, FileLock, LockMode};
use crate::sys;
use crate::target::Target;

/// One job: a change to one JSON document.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Replace the document with `value`.
    Write {
        /// The document.
        path: PathBuf,
        /// Its new content.
        value: Value,
    },
    /// Apply an RFC 7396 merge patch to the document (a missing document starts empty).
    Merge {
        /// The document.
        path: PathBuf,
        /// The patch: objects merge key by key, `null` removes a key, anything else replaces.
        patch: Value,
    },
}

impl Op {
    /// The document this operation changes.
    pub fn path(&self) -> &Path {
        match self {
            Op::Write { path, .. } | Op::Merge { path, .. } => path,
        }
    }
}

/// What became of one operation.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Applied and committed.
    Applied,
    /// Applied: the new content is in place and every reader sees it, but a step after the
    /// rename failed (the directory fsync, or finishing the checksum sidecar), so it may not
    /// survive a power loss. The error says which step; as with a single write
    /// ([`Error::target_untouched`] is false), this is never reported as "not applied".
    AppliedDurabilityUnknown(Arc<Error>),
    /// Not applied, and why. Operations on one document that failed together share the error.
    Failed(Arc<Error>),
    /// Not attempted: the batch was cancelled first.
    Cancelled,
}

/// The outcome of every operation of a batch, in the order the operations were given.
#[derive(Debug, Clone)]
pub struct BatchReport {
    /// One outcome per operation.
    pub outcomes: Vec<Outcome>,
}

impl BatchReport {
    /// How many operations were applied, including those whose durability is unknown.
    pub fn applied(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Applied | Outcome::AppliedDurabilityUnknown(_)))
    }

    /// How many operations were applied but may not survive a power loss.
    pub fn durability_unknown(&self) -> usize {
        self.count(|o| matches!(o, Outcome::AppliedDurabilityUnknown(_)))
    }

    /// How many operations failed.
    pub fn failed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Failed(_)))
    }

    /// How many operations were cancelled before they were attempted.
    pub fn cancelled(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Cancelled))
    }

    fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.outcomes.iter().filter(|o| f(o)).count()
    }
}

/// Applies RFC 7396 JSON merge patch `patch` to `target`.
///
/// # Examples
///
/// ```
/// use serde_json::json;
/// let mut doc = json!({"a": 1, "b": {"c": 2, "d": 3}});
/// durafile::batch::merge_patch(&mut doc, &json!({"a": null, "b": {"c": 20}, "e": [1]}));
/// assert_eq!(doc, json!({"b": {"c": 20, "d": 3}, "e": [1]}));
/// ```
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(fields) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    let object = target.as_object_mut().expect("made an object above");
    for (key, value) in fields {
        if value.is_null() {
            object.remove(key);
        } else {
            merge_patch(object.entry(key.as_str()).or_insert(Value::Null), value);
        }
    }
}

/// Runs batches of [`Op`]s.
///
/// # Examples
///
/// ```
/// use durafile::batch::{BatchProcessor, Op};
/// use durafile::{FileManager, Options};
/// use serde_json::json;
///
/// let dir = tempfile::tempdir()?;
/// let doc = dir.path().join("stock.json");
/// let ops: Vec<Op> = (0..100)
///     .map(|i| Op::Merge { path: doc.clone(), patch: json!({ format!("sku{i}"): i }) })
///     .collect();
/// let report = BatchProcessor::new(FileManager::new(Options::new())).run(ops);
/// assert_eq!(report.applied(), 100);
/// let stock: serde_json::Value = FileManager::default().read_json_file(&doc)?;
/// assert_eq!(stock.as_object().unwrap().len(), 100);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct BatchProcessor {
    files: FileManager,
    workers: usize,
    group_size: usize,
}

/// Progress of a batch, for [`BatchProcessor::run_with`]'s callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Operations finished (applied or failed).
    pub done: usize,
    /// All operations.
    pub total: usize,
}

/// One document and the indices of its operations in the batch.
struct Group {
    path: PathBuf,
    ops: Vec<usize>,
}

impl BatchProcessor {
    /// A processor writing with `files`' options, with four workers per available CPU and
    /// groups of 256 documents.
    pub fn new(files: FileManager) -> BatchProcessor {
        // A worker mostly waits for its fsyncs, so more workers than CPUs overlap more of
        // them: on 2 vCPUs, 8 workers rewrote 1000 documents 3.4× faster than single writes,
        // 2 workers 2.2× (BENCHMARKS.md).
        let workers = 4 * std::thread::available_parallelism().map_or(1, |n| n.get());
        BatchProcessor {
            files,
            workers,
            group_size: 256,
        }
    }

    /// Uses `n` worker threads (at least 1).
    #[must_use]
    pub fn workers(mut self, n: usize) -> BatchProcessor {
        self.workers = n.max(1);
        self
    }

    /// Commits at most `n` documents (at least 1) together. Each holds a lock, an open temp
    /// file, its checked directory and (with a checksum) its sidecar until its group commits,
    /// so this bounds open descriptors at about 4n. Whatever
    /// `n` says, a group is made small enough that its descriptors fit the process's limit
    /// (`RLIMIT_NOFILE`, less those already open and some headroom for the workers).
    #[must_use]
    pub fn group_size(mut self, n: usize) -> BatchProcessor {
        self.group_size = n.max(1);
        self
    }

    /// Runs `ops` to the end and reports each one's outcome.
    pub fn run(&self, ops: Vec<Op>) -> BatchReport {
        self.run_with(ops, &|_| {}, &AtomicBool::new(false))
    }

    /// Runs `ops`, calling `progress` after each group commits, and stops before the next
    /// document once `cancel` is set (operations not attempted are [`Outcome::Cancelled`];
    /// documents already being written still commit).
    pub fn run_with(
        &self,
        ops: Vec<Op>,
        progress: &(dyn Fn(Progress) + Sync),
        cancel: &AtomicBool,
    ) -> BatchReport {
        let total = ops.len();
        let mut outcomes = vec![Outcome::Cancelled; total];
        // Group by the lock file's canonical path: two spellings of one path (relative and
        // absolute, or through a symlink) are one document, and every batch, whatever its
        // working directory, sorts the locks the same way.
        let mut groups: BTreeMap<PathBuf, Group> = BTreeMap::new();
        for (i, op) in ops.iter().enumerate() {
            match lock_key(op.path()) {
                Ok(key) => {
                    groups
                        .entry(key)
                        .or_insert_with(|| Group {
                            path: op.path().to_path_buf(),
                            ops: Vec::new(),
                        })
                        .ops
                        .push(i);
                }
                Err(e) => outcomes[i] = Outcome::Failed(Arc::new(e)),
            }
        }
        let groups: Vec<Group> = groups.into_values().collect();
        let mut done = total - groups.iter().map(|g| g.ops.len()).sum::<usize>();
        #[cfg(feature = "s3")]
        let (groups, remote): (Vec<Group>, Vec<Group>) =
            groups.into_iter().partition(|g| !crate::is_remote(&g.path));
        for chunk in groups.chunks(self.fitting_group_size()) {
            if cancel.load(Ordering::Relaxed) {
                break;
            }
            for (i, outcome) in self.commit_group(chunk, &ops, cancel) {
                if !matches!(outcome, Outcome::Cancelled) {
                    done += 1;
                }
                outcomes[i] = outcome;
            }
            progress(Progress { done, total });
        }
        #[cfg(feature = "s3")]
        for group in &remote {
            if cancel.load(Ordering::Relaxed) {
                break;
            }
            for (i, outcome) in self.update_remote(group, &ops) {
                done += 1;
                outcomes[i] = outcome;
            }
            progress(Progress { done, total });
        }
        BatchReport { outcomes }
    }

    /// The group size, made to fit the descriptors this process may still open: four per
    /// document held until the group commits (its lock, its temp file, the pinned directory
    /// every step goes through and the sidecar that the last step cuts down), and a few per
    /// worker for the moment (the current content, the sidecar and its temp file, a
    /// directory to fsync). Running out part-way would fail documents for no reason of
    /// their own.
    fn fitting_group_size(&self) -> usize {
        const HELD_PER_DOCUMENT: u64 = 4;
        const BRIEF_PER_WORKER: u64 = 4;
        const SPARE: u64 = 8;
        let Some(limit) = sys::open_files_limit() else {
            return self.group_size;
        };
        let busy = sys::open_files().unwrap_or(3) + SPARE + BRIEF_PER_WORKER * self.workers as u64;
        let fits = limit.saturating_sub(busy) / HELD_PER_DOCUMENT;
        self.group_size
            .min(usize::try_from(fits).unwrap_or(usize::MAX))
            .max(1)
    }

    /// Applies and commits one group of documents; returns outcomes by operation index.
    fn commit_group(
        &self,
        groups: &[Group],
        ops: &[Op],
        cancel: &AtomicBool,
    ) -> Vec<(usize, Outcome)> {
        let mut outcomes = Vec::new();
        let timeout = self.files.options().get_lock_timeout();
        let (send, receive) = mpsc::channel::<(&Group, Target, FileLock)>();
        let receive = Mutex::new(receive);
        let staged: Vec<Prepared> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..self.workers.min(groups.len()))
                .map(|_| {
                    s.spawn(|| {
                        let mut mine = Vec::new();
                        loop {
                            // Taken before the guard is dropped: one worker waits in `recv`
                            // while the others work.
                            let next = receive.lock().expect("queue").recv();
                            let Ok((group, target, lock)) = next else {
                                return mine;
                            };
                            mine.push(self.prepare(group, ops, target, lock, cancel));
                        }
                    })
                })
                .collect();
            // This thread alone takes the locks, in the groups' (sorted) order: every batch
            // takes them in the same order, so two batches holding many locks each cannot
            // deadlock. The workers start on each document as soon as it is locked, so
            // waiting for the locks overlaps their work.
            for group in groups {
                if cancel.load(Ordering::Relaxed) {
                    outcomes.extend(group.ops.iter().map(|&i| (i, Outcome::Cancelled)));
                    continue;
                }
                let locked = Target::resolve(&group.path).and_then(|target| {
                    let lock = lock::lock_target(&target, LockMode::Exclusive, timeout)?;
                    Ok((target, lock))
                });
                match locked {
                    Ok((target, lock)) => send
                        .send((group, target, lock))
                        .expect("the workers outlive the queue"),
                    Err(e) => fail_all(&mut outcomes, &group.ops, Arc::new(e)),
                }
            }
            drop(send);
            workers
                .into_iter()
                .flat_map(|w| w.join().expect("a batch worker panicked"))
                .collect()
        });
        let mut ready = Vec::new();
        for prepared in staged {
            outcomes.extend(prepared.outcomes);
            ready.extend(prepared.staged);
        }
        publish(ready, &mut outcomes);
        outcomes
    }

    /// Reads one document under its lock, applies its operations in order, and stages the
    /// result: written, fsynced and renamed, or with a sidecar whose first step waits for a
    /// directory fsync, not renamed yet.
    fn prepare(
        &self,
        group: &Group,
        ops: &[Op],
        target: Target,
        lock: FileLock,
        cancel: &AtomicBool,
    ) -> Prepared {
        let mut done = Prepared {
            outcomes: Vec::new(),
            staged: None,
        };
        if cancel.load(Ordering::Relaxed) {
            done.outcomes = group.ops.iter().map(|&i| (i, Outcome::Cancelled)).collect();
            return done;
        }
        let mut file = match AtomicFile::with_lock(target, self.files.options(), lock) {
            Ok(file) => file,
            Err(e) => {
                fail_all(&mut done.outcomes, &group.ops, Arc::new(e));
                return done;
            }
        };
        let current = match file.read_current() {
            Ok(Some(bytes)) => parse(&group.path, &bytes).map_err(Arc::new),
            Ok(None) => Ok(Value::Null),
            Err(e) => Err(Arc::new(e)),
        };
        let (current, applied) = apply_ops(current, group, ops, &mut done.outcomes);
        let Ok(doc) = current else {
            return done;
        };
        if applied.is_empty() {
            return done;
        }
        let staged = self
            .files
            .serialize_into(&mut file, &doc)
            .and_then(|()| file.stage(false))
            .and_then(|mut staged| {
                // Renamed at once unless a sidecar's first step waits for its directory's
                // fsync: the rename then waits on the disk (freeing the old version) while the
                // other workers compute, instead of in one serial pass after them.
                if !staged.begun() {
                    staged.publish()?;
                }
                Ok(staged)
            });
        match staged {
            Ok(staged) => done.staged = Some((applied, staged)),
            Err(e) => fail_all(&mut done.outcomes, &applied, Arc::new(e)),
        }
        done
    }
}

/// Applies `group`'s operations in order to the document's `current` content; returns the
/// result and the operations applied, and records in `failed` those that could not be.
fn apply_ops(
    mut current: Result<Value, Arc<Error>>,
    group: &Group,
    ops: &[Op],
    failed: &mut Vec<(usize, Outcome)>,
) -> (Result<Value, Arc<Error>>, Vec<usize>) {
    let mut applied = Vec::new();
    for &i in &group.ops {
        match (&ops[i], &mut current) {
            (Op::Write { value, .. }, _) => {
                current = Ok(value.clone());
                applied.push(i);
            }
            (Op::Merge { patch, .. }, Ok(doc)) => {
                merge_patch(doc, patch);
                applied.push(i);
            }
            (Op::Merge { .. }, Err(e)) => failed.push((i, Outcome::Failed(e.clone()))),
        }
    }
    (current, applied)
}

/// The canonical path of `path`'s lock file (an object's URL as it is: objects have no lock).
fn lock_key(path: &Path) -> Result<PathBuf, Error> {
    if crate::is_remote(path) {
        return Ok(path.to_path_buf());
    }
    let lock_file = lock::lock_file_path(path)?;
    let dir = lock_file.parent().filter(|d| !d.as_os_str().is_empty());
    let dir = dir.unwrap_or(Path::new("."));
    let canonical = std::fs::canonicalize(dir).map_err(|e| Error::io(Step::Lock, path, e))?;
    Ok(canonical.join(lock_file.file_name().expect("a lock file name")))
}

/// One document's result from a worker: outcomes known already, and the staged file with
/// the operations that wait for its commit.
struct Prepared {
    outcomes: Vec<(usize, Outcome)>,
    staged: Option<(Vec<usize>, Staged)>,
}

fn fail_all(outcomes: &mut Vec<(usize, Outcome)>, indices: &[usize], error: Arc<Error>) {
    outcomes.extend(indices.iter().map(|&i| (i, Outcome::Failed(error.clone()))));
}

/// Step 3 of the group commit: one directory fsync for the sidecars' first step, the renames
/// left (of the files with a sidecar), one directory fsync for all renames, the sidecars'
/// last step. A failure after a document's
/// rename leaves its new content in place: it is applied, with its durability unknown.
fn publish(ready: Vec<(Vec<usize>, Staged)>, outcomes: &mut Vec<(usize, Outcome)>) {
    let mut ready = ready;
    let begun: BTreeSet<PathBuf> = ready
        .iter()
        .filter(|(_, f)| f.begun())
        .map(|(_, f)| f.dir().to_path_buf())
        .collect();
    for dir in begun {
        let synced = fault::point("durafile::batch_checksum_begin_sync_dir")
            .and_then(|()| sys::sync_dir(&dir));
        if let Err(e) = synced {
            let error = Arc::new(Error::io(Step::ChecksumBegin, &dir, e));
            // Only the files still waiting fail: the others are renamed already (applied).
            ready.retain(|(ops, f)| {
                let keep = f.dir() != dir || !f.begun();
                if !keep {
                    fail_all(outcomes, ops, error.clone());
                }
                keep
            });
        }
    }
    let mut published = Vec::new();
    for (ops, mut file) in ready {
        // The others were renamed by their worker.
        match file.begun() {
            true => match file.publish() {
                Ok(()) => published.push((ops, file)),
                Err(e) => fail_all(outcomes, &ops, Arc::new(e)),
            },
            false => published.push((ops, file)),
        }
    }
    let mut synced: BTreeMap<PathBuf, Option<Arc<Error>>> = BTreeMap::new();
    for (_, file) in published.iter().filter(|(_, f)| f.needs_dir_sync()) {
        if !synced.contains_key(file.dir()) {
            let result = file.sync_dir().err().map(Arc::new);
            synced.insert(file.dir().to_path_buf(), result);
        }
    }
    for (ops, file) in published {
        let outcome = match synced.get(file.dir()) {
            Some(Some(error)) => Outcome::AppliedDurabilityUnknown(error.clone()),
            _ => match file.finish() {
                Ok(()) => Outcome::Applied,
                Err(e) => Outcome::AppliedDurabilityUnknown(Arc::new(e)),
            },
        };
        outcomes.extend(ops.into_iter().map(|i| (i, outcome.clone())));
    }
}

#[cfg(feature = "s3")]
impl BatchProcessor {
    /// One object's operations as one compare-and-swap update; outcomes by operation index.
    fn update_remote(&self, group: &Group, ops: &[Op]) -> Vec<(usize, Outcome)> {
        /// Why an update wrote nothing.
        enum Stop {
            /// The current document does not parse and no operation replaces it; the
            /// operations' outcomes say so.
            Unparsable,
            Failed(Error),
        }
        impl From<Error> for Stop {
            fn from(e: Error) -> Stop {
                Stop::Failed(e)
            }
        }
        let mut outcomes = Vec::new();
        let checksum = self.files.options().get_checksum();
        let updated = crate::remote::locate_object(&group.path)
            .map_err(Stop::Failed)
            .and_then(|(store, key)| {
                store.update_with(&key, checksum, |current| {
                    // The closure runs again after a conflict: each run starts afresh.
                    outcomes.clear();
                    let current = match current {
                        Some(bytes) => parse(&group.path, bytes).map_err(Arc::new),
                        None => Ok(Value::Null),
                    };
                    match apply_ops(current, group, ops, &mut outcomes) {
                        (Ok(doc), applied) => {
                            Ok((self.files.to_bytes(&group.path, &doc)?, applied))
                        }
                        (Err(_), _) => Err(Stop::Unparsable),
                    }
                })
            });
        match updated {
            Ok(applied) => outcomes.extend(applied.into_iter().map(|i| (i, Outcome::Applied))),
            Err(Stop::Unparsable) => {}
            Err(Stop::Failed(e)) => {
                outcomes.clear();
                fail_all(&mut outcomes, &group.ops, Arc::new(e));
            }
        }
        outcomes
    }
}
