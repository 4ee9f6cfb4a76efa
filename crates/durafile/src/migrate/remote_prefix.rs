//! Migrations of the documents under an object-store prefix (`s3://bucket/prefix`): the
//! directory design with the store's primitives in place of the filesystem's.
//!
//! 1. **Stage** in memory: every document is read (verified) and migrated; a failing step
//!    ends the migration with nothing written.
//! 2. **Commit**: the journal object `prefix/.durafile-migration.journal`, holding each
//!    document's digests before and after and its migrated content, is created with
//!    `If-None-Match: *`. One PUT of one object: it exists whole or not at all, and of two
//!    migrations racing to commit, exactly one does (the other fails and changes nothing).
//! 3. **Apply**: for each document, the old version is copied to
//!    `prefix/.durafile-migration.backup/KEY.json` (create-only: the first copy is kept) and
//!    the document is replaced by a compare-and-swap that only fires while it still has its
//!    "before" digest. Then the journal is deleted.
//!
//! A crash in phase 3 is finished by the next [`Migrator::migrate_dir`] or
//! [`Migrator::recover_dir`], which applies the journal again: by the digests, a document is
//! migrated exactly once, and one that someone changed meanwhile is reported as a conflict
//! and left alone. There is no lock; the compare-and-swap is what keeps a concurrent writer's
//! update from being overwritten.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{BACKUP, DirMigration, JOURNAL, JournalEntry, Migrated, Migrator, sha256_hex};
use crate::data_handler::DataHandler;
use crate::error::{Error, Result};
use crate::file_manager::{FileManager, parse};
use crate::remote::{Store, locate, locate_object};

#[derive(Debug, Serialize, Deserialize)]
struct RemoteJournal {
    to: u64,
    entries: Vec<JournalEntry>,
    /// The migrated content of each document, by key.
    staged: BTreeMap<String, String>,
}

fn join(prefix: &str, name: &str) -> String {
    match prefix {
        "" => name.to_owned(),
        p => format!("{p}/{name}"),
    }
}

/// [`Migrator::migrate_file`] for one object: a compare-and-swap update.
pub(super) fn migrate_object(
    m: &Migrator,
    url: &std::path::Path,
    files: &FileManager,
    to: Option<u64>,
) -> Result<Migrated> {
    let (store, key) = locate_object(url)?;
    let to_version = to.unwrap_or_else(|| m.latest());
    let mut from = to_version;
    let missing = || {
        Error::io(
            crate::error::Step::Read,
            url,
            std::io::Error::from(std::io::ErrorKind::NotFound),
        )
    };
    // An object already at the target version is left as it is (no write).
    let current = store
        .get(&key, files.options().get_checksum())?
        .ok_or_else(missing)?;
    if m.migrate_value(parse(url, &current)?, to, url)?.1 == to_version {
        return Ok(Migrated {
            from: to_version,
            to: to_version,
        });
    }
    store.update_with(&key, files.options().get_checksum(), |current| {
        let (doc, was) = m.migrate_value(parse(url, current.ok_or_else(missing)?)?, to, url)?;
        from = was;
        Ok((files.to_bytes(url, &doc)?, ()))
    })?;
    Ok(Migrated {
        from,
        to: to_version,
    })
}

/// [`Migrator::migrate_dir`] for a prefix.
pub(super) fn migrate_prefix(
    m: &Migrator,
    docs: &DataHandler,
    to: Option<u64>,
    dry_run: bool,
    progress: &dyn Fn(&str, usize, usize),
) -> Result<DirMigration> {
    let (store, prefix) = locate(docs.dir())?;
    let journal_key = join(&prefix, JOURNAL);
    let (resumed, conflicts) = match dry_run {
        true => (store.get(&journal_key, false)?.is_some(), Vec::new()),
        false => match resume(&store, &prefix, docs, progress)? {
            Some(conflicts) => (true, conflicts),
            None => (false, Vec::new()),
        },
    };
    let to = to.unwrap_or_else(|| m.latest());
    let mut report = DirMigration {
        to,
        resumed,
        conflicts,
        ..DirMigration::default()
    };
    let keys = docs.list()?;
    let mut entries = Vec::new();
    let mut staged = BTreeMap::new();
    let checksum = docs.files().options().get_checksum();
    for (i, key) in keys.iter().enumerate() {
        let path = docs.path_of(key)?;
        let before = store.read(&locate_object(&path)?.1, checksum)?;
        let (doc, from) = m.migrate_value(parse(&path, &before)?, Some(to), &path)?;
        if !report.count(key, from, dry_run, progress, (i, keys.len())) {
            continue;
        }
        let bytes = docs.files().to_bytes(&path, &doc)?;
        entries.push(JournalEntry {
            key: key.clone(),
            from,
            before: sha256_hex(&before),
            after: sha256_hex(&bytes),
        });
        staged.insert(
            key.clone(),
            String::from_utf8(bytes).expect("serde_json writes UTF-8"),
        );
    }
    if dry_run || entries.is_empty() {
        return Ok(report);
    }
    // The previous migration's backups give way to this one's.
    let backup = join(&prefix, BACKUP);
    for name in store.list(&backup)? {
        store.delete(&join(&backup, &name))?;
    }
    let journal = RemoteJournal {
        to,
        entries,
        staged,
    };
    let bytes = serde_json::to_vec(&journal).expect("a journal serialises");
    if !store.create(&journal_key, &bytes)? {
        return Err(Error::Migration {
            path: docs.dir().join(JOURNAL),
            reason: "another migration of this prefix committed first; run this one again \
                     to finish that one and migrate what is left"
                .to_owned(),
        });
    }
    report
        .conflicts
        .extend(apply(&store, &prefix, docs, &journal, progress)?);
    Ok(report)
}

/// [`Migrator::recover_dir`] for a prefix, and the first thing a migration does.
pub(super) fn resume(
    store: &Store,
    prefix: &str,
    docs: &DataHandler,
    progress: &dyn Fn(&str, usize, usize),
) -> Result<Option<Vec<String>>> {
    let journal_key = join(prefix, JOURNAL);
    let Some(bytes) = store.get(&journal_key, true)? else {
        return Ok(None);
    };
    let journal: RemoteJournal = parse(&docs.dir().join(JOURNAL), &bytes)?;
    apply(store, prefix, docs, &journal, progress).map(Some)
}

/// Why a document was not replaced.
enum Skip {
    Done,
    Conflict,
    Failed(Error),
}

impl From<Error> for Skip {
    fn from(e: Error) -> Skip {
        Skip::Failed(e)
    }
}

/// Phase 3, idempotent: every document that still has its "before" digest gets its staged
/// version; one that has its "after" digest is done; any other is a conflict. Then the
/// journal goes. Returns the keys in conflict.
fn apply(
    store: &Store,
    prefix: &str,
    docs: &DataHandler,
    journal: &RemoteJournal,
    progress: &dyn Fn(&str, usize, usize),
) -> Result<Vec<String>> {
    let backup = join(prefix, BACKUP);
    let mut conflicts = Vec::new();
    for (i, entry) in journal.entries.iter().enumerate() {
        let path = docs.path_of(&entry.key)?;
        let key = locate_object(&path)?.1;
        let staged = journal.staged.get(&entry.key).map(String::as_bytes);
        let Some(staged) = staged.filter(|s| sha256_hex(s) == entry.after) else {
            return Err(Error::Migration {
                path: docs.dir().join(JOURNAL),
                reason: format!("the journal's staged copy of {:?} is damaged", entry.key),
            });
        };
        let outcome = store.update_with(&key, false, |current| {
            let current = current.unwrap_or_default();
            match sha256_hex(current) {
                d if d == entry.after => Err(Skip::Done),
                d if d == entry.before => {
                    // The one side effect of this closure, and an idempotent one: the backup is
                    // create-only, so a rerun (or a second run after a crash) keeps the first.
                    store.create(&join(&backup, &format!("{}.json", entry.key)), current)?;
                    Ok((staged.to_vec(), ()))
                }
                _ => Err(Skip::Conflict),
            }
        });
        match outcome {
            Ok(()) | Err(Skip::Done) => {}
            Err(Skip::Conflict) => conflicts.push(entry.key.clone()),
            Err(Skip::Failed(e)) => return Err(e),
        }
        progress("apply", i + 1, journal.entries.len());
    }
    store.delete(&join(prefix, JOURNAL))?;
    Ok(conflicts)
}
