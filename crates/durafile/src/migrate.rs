//! Versioned schema migrations of JSON documents, one file or a whole directory at once.
//!
//! A document's version lives in one of its fields (default `"schema_version"`; missing
//! means 0). A [`Migrator`] holds ordered steps: step N turns a version N-1 document into a
//! version N one, and durafile sets the field to N after it.
//!
//! # One file
//!
//! [`Migrator::migrate_file`] reads, migrates and replaces the file under its exclusive lock:
//! atomic, durable and lost-update-free like any durafile write.
//!
//! # A directory: all or nothing
//!
//! [`Migrator::migrate_dir`] migrates every document of a [`DataHandler`] directory so that
//! after a failure or a crash, and recovery, either every document is at its old version or
//! every one is at the new version, each migrated exactly once. It holds the directory's
//! migration lock (`DIR/.durafile-migration.lock`) throughout, and works in three phases:
//!
//! 1. **Stage.** Each document is read (verified), migrated in memory and written to
//!    `DIR/.durafile-migration.staging/KEY.json`. A step that fails, or a crash, ends here:
//!    the staging directory is thrown away and no document has changed. The staging
//!    directory is private (0700) and each staged copy takes its document's permission bits,
//!    owner and group.
//! 2. **Commit.** The staging directory is fsynced and the journal
//!    `DIR/.durafile-migration.journal` is written durably. From here on the migration rolls
//!    forward.
//!    The journal lists every document with the SHA-256 of its content before and after.
//! 3. **Apply.** For each document, under its lock: if it has its "after" digest it is done;
//!    if it has its "before" digest, a hard link to the old version goes to
//!    `DIR/.durafile-migration.backup/KEY.json` and the staged version (checked against the
//!    "after" digest) replaces it. Then the directory is fsynced, and the journal and the
//!    staging directory are removed.
//!
//! A crash in phase 3 is finished by the next `migrate_dir` or [`Migrator::recover_dir`],
//! which runs phase 3 again: by the digests, a document already migrated is not migrated
//! again and one still pending is migrated now, so none is migrated twice and none is
//! skipped. The backups of the last migration stay until the next one commits.
//!
//! Every `*.json` file directly in the directory is a document to migrate, or is reported:
//! one that no key can name (a hidden name, `..`, a name ending like durafile's own files, a
//! name that is not UTF-8 or longer than [`MAX_KEY_LEN`](crate::data_handler::MAX_KEY_LEN)
//! bytes) or that is not a regular file is left as it is and listed in
//! [`DirMigration::skipped`] with the reason, never passed over in silence.
//!
//! # A prefix of an object store
//!
//! With the `s3` feature, a [`DataHandler`] on `s3://bucket/prefix` migrates with the same
//! journal design over the store's primitives: see `migrate::remote_prefix` (the journal
//! is one create-only object, documents are replaced by compare-and-swap).
//!
//! Migrations are meant to run while the application's writers are stopped. If one writes
//! a document anyway between phases 1 and 3, durafile does not overwrite that write: the
//! document is reported in [`DirMigration::conflicts`] and left for a rerun to migrate.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::atomic::{AtomicFile, write_covered};
use crate::checksum;
use crate::data_handler::{DataHandler, validate_key};
use crate::error::{Error, Result, Step};
use crate::file_manager::{FileManager, parse};
use crate::lock::{self, LockMode};
use crate::options::{Durability, Options};
use crate::sys;

/// The error a migration step returns.
pub type StepError = Box<dyn std::error::Error + Send + Sync>;

type StepFn = Box<dyn Fn(Value) -> std::result::Result<Value, StepError> + Send + Sync>;

const LOCK_NAME: &str = "durafile-migration";
const JOURNAL: &str = ".durafile-migration.journal";
const STAGING: &str = ".durafile-migration.staging";
const BACKUP: &str = ".durafile-migration.backup";

#[cfg(feature = "s3")]
mod remote_prefix;

/// Ordered migration steps.
///
/// # Examples
///
/// ```
/// use durafile::migrate::Migrator;
/// use serde_json::json;
///
/// let migrator = Migrator::new()
///     .step(1, |mut doc| { doc["tags"] = json!([]); Ok(doc) })
///     .step(2, |mut doc| {
///         let name = doc.as_object_mut().and_then(|o| o.remove("name"));
///         doc["display_name"] = name.unwrap_or_default();
///         Ok(doc)
///     });
/// let (doc, from) = migrator.migrate_value(json!({"name": "ada"}), None, "x.json".as_ref())?;
/// assert_eq!(from, 0);
/// assert_eq!(doc, json!({"tags": [], "display_name": "ada", "schema_version": 2}));
/// # Ok::<(), durafile::Error>(())
/// ```
pub struct Migrator {
    field: String,
    steps: BTreeMap<u64, StepFn>,
}

impl std::fmt::Debug for Migrator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Migrator")
            .field("field", &self.field)
            .field("steps", &self.steps.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Default for Migrator {
    fn default() -> Self {
        Migrator::new()
    }
}

/// What [`Migrator::migrate_file`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migrated {
    /// The version the document had.
    pub from: u64,
    /// The version it has now (equal to `from` when it was already current).
    pub to: u64,
}

/// What [`Migrator::migrate_dir`] did, or with `dry_run` would do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirMigration {
    /// The target version.
    pub to: u64,
    /// Documents migrated (or to migrate), with the version each had.
    pub migrated: Vec<(String, u64)>,
    /// Documents already at the target version.
    pub current: usize,
    /// Documents changed by someone else during the migration, left unmigrated for a rerun.
    pub conflicts: Vec<String>,
    /// Whether an interrupted earlier migration was found (and, unless a dry run, rolled back
    /// or forward first).
    pub resumed: bool,
    /// Files named like documents (`*.json`) that were not migrated, and why.
    pub skipped: Vec<Skipped>,
}

impl DirMigration {
    /// Counts document `key`, found at version `from`, staged number `i` of `n`: as current,
    /// or as one to migrate. Returns whether it must be staged (it needs migrating and this is
    /// not a dry run). The local and the object-storage migrations count alike.
    pub(crate) fn count(
        &mut self,
        key: &str,
        from: u64,
        dry_run: bool,
        progress: &dyn Fn(&str, usize, usize),
        (i, n): (usize, usize),
    ) -> bool {
        progress("stage", i + 1, n);
        if from == self.to {
            self.current += 1;
            return false;
        }
        self.migrated.push((key.to_owned(), from));
        !dry_run
    }
}

/// A `*.json` file of a migrated directory that is not a document durafile can migrate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The file.
    pub path: PathBuf,
    /// Why it was left as it is.
    pub reason: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Journal {
    to: u64,
    entries: Vec<JournalEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
struct JournalEntry {
    key: String,
    from: u64,
    /// SHA-256 of the document before migration, in hex.
    before: String,
    /// SHA-256 of its migrated (staged) version, in hex.
    after: String,
}

impl Migrator {
    /// No steps, version field `"schema_version"`.
    pub fn new() -> Migrator {
        Migrator {
            field: "schema_version".to_owned(),
            steps: BTreeMap::new(),
        }
    }

    /// Keeps the version in `field` instead.
    #[must_use]
    pub fn field(mut self, field: &str) -> Migrator {
        self.field = field.to_owned();
        self
    }

    /// Adds the step that migrates a version `to - 1` document to version `to`. Steps must
    /// end up numbered 1, 2, 3, … without gaps; a gap is reported when migrating.
    #[must_use]
    pub fn step(
        mut self,
        to: u64,
        f: impl Fn(Value) -> std::result::Result<Value, StepError> + Send + Sync + 'static,
    ) -> Migrator {
        self.steps.insert(to, Box::new(f));
        self
    }

    /// The newest version the steps reach (0 without steps).
    pub fn latest(&self) -> u64 {
        self.steps.keys().next_back().copied().unwrap_or(0)
    }

    /// The version `doc` says it has: its version field, 0 when missing.
    pub fn version_of(&self, doc: &Value, path: &Path) -> Result<u64> {
        match doc.get(&self.field) {
            None => Ok(0),
            Some(v) => v.as_u64().ok_or_else(|| Error::Migration {
                path: path.to_path_buf(),
                reason: format!(
                    "the version field {:?} is {v}, not a whole number",
                    self.field
                ),
            }),
        }
    }

    /// Migrates `doc` (from `path`, for messages) to version `to` (default: the latest);
    /// returns it with the version it had.
    pub fn migrate_value(&self, doc: Value, to: Option<u64>, path: &Path) -> Result<(Value, u64)> {
        let to = to.unwrap_or_else(|| self.latest());
        let from = self.version_of(&doc, path)?;
        let fail = |reason: String| Error::Migration {
            path: path.to_path_buf(),
            reason,
        };
        if from > to {
            return Err(fail(format!(
                "the document is at version {from}, newer than the target {to}; durafile does not downgrade"
            )));
        }
        let mut doc = doc;
        for version in from + 1..=to {
            let step = self
                .steps
                .get(&version)
                .ok_or_else(|| fail(format!("there is no step to version {version}")))?;
            doc = step(doc).map_err(|e| fail(format!("step to version {version} failed: {e}")))?;
            let Some(object) = doc.as_object_mut() else {
                return Err(fail(format!(
                    "step to version {version} returned {}, not an object",
                    type_name(&doc)
                )));
            };
            object.insert(self.field.clone(), Value::from(version));
        }
        Ok((doc, from))
    }

    /// Migrates one file in place, atomically and under its lock.
    pub fn migrate_file(
        &self,
        path: impl AsRef<Path>,
        files: &FileManager,
        to: Option<u64>,
    ) -> Result<Migrated> {
        let path = path.as_ref();
        #[cfg(feature = "s3")]
        if crate::is_remote(path) {
            return remote_prefix::migrate_object(self, path, files, to);
        }
        let mut file = AtomicFile::new(path, files.options())?;
        let bytes = file
            .read_current()?
            .ok_or_else(|| Error::io(Step::Read, path, io::Error::from(io::ErrorKind::NotFound)))?;
        let (doc, from) = self.migrate_value(parse(path, &bytes)?, to, path)?;
        let to = to.unwrap_or_else(|| self.latest());
        if from == to {
            file.discard()?;
        } else {
            files.serialize_into(&mut file, &doc)?;
            file.commit()?;
        }
        Ok(Migrated { from, to })
    }

    /// Migrates every document of `docs` to version `to` (default: the latest), all or
    /// nothing (see the module docs). With `dry_run`, reports what it would do and writes
    /// nothing. `progress` is called with the phase (`"stage"` or `"apply"`), the documents
    /// done and the documents in that phase.
    ///
    /// # Errors
    ///
    /// [`Error::Migration`] when a step fails on a document (nothing changed then), and any
    /// error reading a document or writing the staging files, journal or documents.
    pub fn migrate_dir(
        &self,
        docs: &DataHandler,
        to: Option<u64>,
        dry_run: bool,
        progress: &dyn Fn(&str, usize, usize),
    ) -> Result<DirMigration> {
        let dir = docs.dir();
        #[cfg(feature = "s3")]
        if crate::is_remote(dir) {
            return remote_prefix::migrate_prefix(self, docs, to, dry_run, progress);
        }
        let _lock = lock::acquire(&dir.join(LOCK_NAME), LockMode::Exclusive, None)?;
        let (resumed, resumed_conflicts) = match dry_run {
            true => (dir.join(JOURNAL).exists(), Vec::new()),
            false => match resume(docs, progress)? {
                Some(conflicts) => (true, conflicts),
                None => (false, Vec::new()),
            },
        };
        let to = to.unwrap_or_else(|| self.latest());
        let mut report = DirMigration {
            to,
            resumed,
            conflicts: resumed_conflicts,
            ..DirMigration::default()
        };
        let staging = dir.join(STAGING);
        let keys = discover(docs, &mut report.skipped)?;
        let mut entries = Vec::new();
        if !dry_run {
            // Private: it holds copies of documents that may be private.
            sys::create_dir_all(&staging, 0o700)
                .map_err(|e| Error::io(Step::CreateDir, &staging, e))?;
            // The staging directory's own entry must be durable before the journal names it.
            sys::sync_dir(dir).map_err(|e| Error::io(Step::SyncDir, &staging, e))?;
        }
        // Staged files must be durable before the journal commits them, unless the documents
        // themselves are written without fsync.
        let staged_opts =
            Options::new().durability(match docs.files().options().get_durability() {
                Durability::None => Durability::None,
                _ => Durability::Consistent,
            });
        for (i, key) in keys.iter().enumerate() {
            let path = docs.path_of(key)?;
            let staged = crate::read(&path, docs.files().options()).and_then(|bytes| {
                let (doc, from) = self.migrate_value(parse(&path, &bytes)?, Some(to), &path)?;
                Ok((bytes, doc, from))
            });
            let (before, doc, from) = match staged {
                Ok(staged) => staged,
                Err(e) => {
                    if !dry_run {
                        remove_dir_if_exists(&staging)?;
                    }
                    return Err(e);
                }
            };
            if !report.count(key, from, dry_run, progress, (i, keys.len())) {
                continue;
            }
            let bytes = docs.files().to_bytes(&path, &doc)?;
            // The staged copy takes the document's mode, owner and group: it becomes the
            // document, and must be no more readable than it was.
            let original = fs::metadata(&path).map_err(|e| Error::io(Step::Inspect, &path, e))?;
            let staged_path = staging.join(format!("{key}.json"));
            write_covered(&staged_path, &bytes, &staged_opts, Some(&original))?;
            entries.push(JournalEntry {
                key: key.clone(),
                from,
                before: sha256_hex(&before),
                after: sha256_hex(&bytes),
            });
        }
        if dry_run || entries.is_empty() {
            if !dry_run {
                remove_dir_if_exists(&staging)?;
            }
            return Ok(report);
        }
        sys::sync_dir(&staging).map_err(|e| Error::io(Step::SyncDir, &staging, e))?;
        // The previous migration's backups give way to this one's.
        remove_dir_if_exists(&dir.join(BACKUP))?;
        let journal = Journal { to, entries };
        let journal_bytes = serde_json::to_vec(&journal).expect("a journal serialises");
        write_covered(&dir.join(JOURNAL), &journal_bytes, &Options::new(), None)?;
        report.conflicts.extend(apply(docs, &journal, progress)?);
        Ok(report)
    }

    /// Finishes or undoes a directory migration that a crash interrupted: rolls forward one
    /// that was committed, throws away one that was still staging. Returns `None` when there
    /// was nothing to do, else the documents that someone changed meanwhile and that were
    /// left unmigrated. [`Migrator::migrate_dir`] does this first by itself.
    pub fn recover_dir(docs: &DataHandler) -> Result<Option<Vec<String>>> {
        #[cfg(feature = "s3")]
        if crate::is_remote(docs.dir()) {
            let (store, prefix) = crate::remote::locate(docs.dir())?;
            return remote_prefix::resume(&store, &prefix, docs, &|_, _, _| {});
        }
        let _lock = lock::acquire(&docs.dir().join(LOCK_NAME), LockMode::Exclusive, None)?;
        resume(docs, &|_, _, _| {})
    }
}

/// Rolls forward a committed migration (journal present) or discards an uncommitted one
/// (staging directory without journal). Caller holds the migration lock. Returns `None`
/// when there was nothing to do, else the keys left unmigrated because someone changed them.
fn resume(
    docs: &DataHandler,
    progress: &dyn Fn(&str, usize, usize),
) -> Result<Option<Vec<String>>> {
    let dir = docs.dir();
    let journal_path = dir.join(JOURNAL);
    match read_journal(&journal_path) {
        Ok(bytes) => {
            let journal: Journal = parse(&journal_path, &bytes)?;
            apply(docs, &journal, progress).map(Some)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let staging = dir.join(STAGING);
            let existed = staging.exists();
            remove_dir_if_exists(&staging)?;
            Ok(existed.then(Vec::new))
        }
        Err(e) => Err(Error::io(Step::Read, &journal_path, e)),
    }
}

/// The most a journal may hold. durafile's takes about 400 bytes a document, so this is room
/// for over half a million; a larger file at the journal's name is not read into memory.
const JOURNAL_CAP: u64 = 256 * 1024 * 1024;

/// The journal's bytes: never through a link, never blocking on a FIFO (a regular file only),
/// never more than [`JOURNAL_CAP`], and only from a journal of this user, root or the
/// directory's owner (another user's would make this one rename their staged files over the
/// documents).
fn read_journal(path: &Path) -> io::Result<Vec<u8>> {
    use std::os::unix::fs::MetadataExt;
    let file = sys::open_regular(path)?;
    let meta = file.metadata()?;
    let dir_owner = fs::metadata(path.parent().unwrap_or(Path::new("."))).map(|m| m.uid());
    let owner = meta.uid();
    if owner != 0 && owner != sys::euid() && dir_owner.ok() != Some(owner) {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "it is owned by {}, not by you, root or the directory's owner, so durafile does \
                 not trust it (nothing was changed; its owner or the directory's owner must \
                 remove it)",
                crate::error::Owner(owner)
            ),
        ));
    }
    let len = meta.len();
    let too_large = |len| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "it holds {len} bytes, larger than any journal durafile writes ({} MiB); move \
                 it away if it is not a migration's",
                JOURNAL_CAP >> 20
            ),
        )
    };
    if len > JOURNAL_CAP {
        return Err(too_large(len));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(JOURNAL_CAP + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > JOURNAL_CAP {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Phase 3: brings every document to its staged version, then removes the journal and the
/// staging directory. Idempotent, so a crash anywhere in it is finished by running it again:
/// a document is done when it has the digest the journal expects after migration, pending
/// when it still has the one before, and in conflict otherwise. Staged files stay until
/// every document's rename is durable. Returns the keys in conflict.
fn apply(
    docs: &DataHandler,
    journal: &Journal,
    progress: &dyn Fn(&str, usize, usize),
) -> Result<Vec<String>> {
    let dir = docs.dir();
    let staging = dir.join(STAGING);
    let backup = dir.join(BACKUP);
    sys::create_dir_all(&backup, 0o777).map_err(|e| Error::io(Step::CreateDir, &backup, e))?;
    let mut conflicts = Vec::new();
    for (i, entry) in journal.entries.iter().enumerate() {
        let path = docs.path_of(&entry.key)?;
        let file = AtomicFile::new(&path, docs.files().options())?;
        let current = sha256_hex(&file.read_current()?.unwrap_or_default());
        if current == entry.after {
            file.discard()?;
        } else if current == entry.before {
            let staged_path = staging.join(format!("{}.json", entry.key));
            let staged = crate::read(&staged_path, &Options::new())?;
            if sha256_hex(&staged) != entry.after {
                return Err(Error::Migration {
                    path: staged_path,
                    reason: "the staged copy is damaged, so the migration cannot be finished; \
                             restore the directory from .durafile-migration.backup or a backup"
                        .to_owned(),
                });
            }
            keep_backup(&path, &backup.join(format!("{}.json", entry.key)))?;
            file.commit_with(&staged)?;
        } else {
            file.discard()?;
            conflicts.push(entry.key.clone());
        }
        progress("apply", i + 1, journal.entries.len());
    }
    // Every rename must be durable before the journal that could redo it goes.
    let journal_path = dir.join(JOURNAL);
    sys::sync_dir(dir).map_err(|e| Error::io(Step::SyncDir, &journal_path, e))?;
    sys::remove_file(&journal_path).map_err(|e| Error::io(Step::Remove, &journal_path, e))?;
    sys::sync_dir(dir).map_err(|e| Error::io(Step::SyncDir, &journal_path, e))?;
    remove_dir_if_exists(&staging)?;
    Ok(conflicts)
}

/// The keys of the documents in `docs`' directory, sorted; every other `*.json` entry goes to
/// `skipped` with the reason. Names are compared as bytes, so a name that is not UTF-8 is
/// reported rather than missed.
fn discover(docs: &DataHandler, skipped: &mut Vec<Skipped>) -> Result<Vec<String>> {
    let dir = docs.dir();
    let err = |e| Error::io(Step::ReadDir, dir, e);
    let mut keys = Vec::new();
    for entry in fs::read_dir(dir).map_err(err)? {
        let entry = entry.map_err(err)?;
        let name = entry.file_name();
        let Some(stem) = name.as_bytes().strip_suffix(b".json") else {
            continue;
        };
        let path = entry.path();
        let refused = match std::str::from_utf8(stem) {
            Err(_) => Err("its name is not UTF-8, so no key names it".to_owned()),
            Ok(key) => match validate_key(key) {
                Err(Error::InvalidKey { reason, .. }) => {
                    Err(format!("no key can name it: {reason}"))
                }
                Err(e) => Err(e.to_string()),
                // Following symlinks, as loading the document does.
                Ok(()) => match fs::metadata(&path) {
                    Ok(meta) if meta.is_file() => Ok(key.to_owned()),
                    Ok(_) => Err("it is not a regular file".to_owned()),
                    Err(e) => Err(format!("cannot inspect it: {e}")),
                },
            },
        };
        match refused {
            Ok(key) => keys.push(key),
            Err(reason) => skipped.push(Skipped { path, reason }),
        }
    }
    keys.sort();
    skipped.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(keys)
}

/// Keeps the old version of `path` at `backup`: a hard link (no copy) where the filesystem
/// allows, a copy elsewhere. An existing backup is the first one taken and is kept.
fn keep_backup(path: &Path, backup: &Path) -> Result<()> {
    if backup.exists() {
        return Ok(());
    }
    sys::link_or_copy(path, backup).map_err(|e| Error::io(Step::Write, backup, e))
}

fn sha256_hex(bytes: &[u8]) -> String {
    checksum::to_hex(&checksum::hash_reader(bytes).expect("reading memory cannot fail"))
}

fn remove_dir_if_exists(dir: &Path) -> Result<()> {
    match sys::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io(Step::Remove, dir, e)),
        _ => Ok(()),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
