//! Schema migrations on real directories: 1,000 documents through several steps, a failing
//! step that changes nothing, SIGKILL part-way and a rerun that finishes every document
//! exactly once, and a dry run that writes nothing.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::Duration;

use durafile::migrate::Migrator;
use durafile::{DataHandler, Durability, Error, FileManager, Options};
use serde_json::{Value, json};

use common::{Rng, spawn_child};

const DOCS: usize = 1000;
const KILL_DOCS: usize = 250;

/// Three steps; each counts itself in `steps_applied`, so a document migrated twice shows.
fn migrator(fail_on: Option<u64>) -> Migrator {
    let count = |mut doc: Value| -> Value {
        let n = doc["steps_applied"].as_u64().unwrap_or(0);
        doc["steps_applied"] = json!(n + 1);
        doc
    };
    Migrator::new()
        .step(1, move |mut doc| {
            doc["tags"] = json!([]);
            Ok(count(doc))
        })
        .step(2, move |mut doc| {
            if Some(doc["id"].as_u64().unwrap()) == fail_on {
                return Err("id 500 has no owner".into());
            }
            let name = doc["name"].take();
            doc["owner"] = json!({ "name": name });
            Ok(count(doc))
        })
        .step(3, move |doc| Ok(count(doc)))
}

/// The documents' options: checksummed; no fsync, which a SIGKILL does not need, except in
/// the one test that runs the full protocol.
fn files(durability: Durability) -> FileManager {
    FileManager::new(Options::new().checksum(true).durability(durability))
}

fn fill(dir: &Path) -> DataHandler {
    fill_with(dir, Durability::None, DOCS)
}

fn fill_with(dir: &Path, durability: Durability, count: usize) -> DataHandler {
    let docs = DataHandler::open(dir, files(durability)).unwrap();
    for id in 0..count {
        docs.save(
            &format!("doc-{id:04}"),
            &json!({"id": id, "name": format!("user {id}")}),
        )
        .unwrap();
    }
    docs
}

/// Every document and checksum file in `dir` (lock files aside, which are empty and kept).
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| e.file_name().into_string().unwrap())
        .filter(|n| !n.ends_with(".lock"))
        .map(|n| (n.clone(), fs::read(dir.join(&n)).unwrap()))
        .collect()
}

/// Asserts two snapshots are equal, naming the first file that differs (not dumping them).
fn assert_same(before: &BTreeMap<String, Vec<u8>>, after: &BTreeMap<String, Vec<u8>>, ctx: &str) {
    let names: Vec<_> = before.keys().chain(after.keys()).collect();
    if let Some(name) = names.into_iter().find(|n| before.get(*n) != after.get(*n)) {
        panic!("{ctx}: {name} changed");
    }
}

fn assert_all_at_latest_once(docs: &DataHandler, count: usize) {
    assert_eq!(docs.list().unwrap().len(), count);
    for key in docs.list().unwrap() {
        let doc: Value = docs.load(&key).unwrap();
        assert_eq!(doc["schema_version"], 3, "{key}: {doc}");
        assert_eq!(
            doc["steps_applied"], 3,
            "{key} migrated more or less than once: {doc}"
        );
        assert!(doc["owner"]["name"].as_str().unwrap().starts_with("user "));
    }
}

#[test]
fn a_thousand_documents_migrate_through_three_steps() {
    let dir = tempfile::tempdir().unwrap();
    let docs = fill_with(dir.path(), Durability::Full, DOCS);
    let report = migrator(None)
        .migrate_dir(&docs, None, false, &|_, _, _| {})
        .unwrap();
    assert_eq!(
        (report.to, report.migrated.len(), report.current),
        (3, DOCS, 0)
    );
    assert!(report.conflicts.is_empty() && !report.resumed);
    assert_all_at_latest_once(&docs, DOCS);
    // No journal or staging left; backups of the old versions kept.
    assert!(!dir.path().join(".durafile-migration.journal").exists());
    assert!(!dir.path().join(".durafile-migration.staging").exists());
    let old: Value = serde_json::from_slice(
        &fs::read(dir.path().join(".durafile-migration.backup/doc-0007.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(old, json!({"id": 7, "name": "user 7"}));
    // A second run has nothing to do.
    let again = migrator(None)
        .migrate_dir(&docs, None, false, &|_, _, _| {})
        .unwrap();
    assert_eq!((again.migrated.len(), again.current), (0, DOCS));
}

#[test]
fn a_step_failing_on_document_500_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let docs = fill(dir.path());
    let before = snapshot(dir.path());
    let err = migrator(Some(500))
        .migrate_dir(&docs, None, false, &|_, _, _| {})
        .unwrap_err();
    let Error::Migration { path, reason } = &err else {
        panic!("{err}")
    };
    assert!(path.ends_with("doc-0500.json"), "{err}");
    assert!(
        reason.contains("step to version 2 failed: id 500 has no owner"),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("this migration changed no document")
    );
    assert_same(&before, &snapshot(dir.path()), "failed migration");
    assert!(!dir.path().join(".durafile-migration.staging").exists());
}

#[test]
fn dry_run_reports_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let docs = fill(dir.path());
    let before = snapshot(dir.path());
    let listing = common::names(dir.path());
    let report = migrator(None)
        .migrate_dir(&docs, Some(2), true, &|_, _, _| {})
        .unwrap();
    assert_eq!((report.to, report.migrated.len()), (2, DOCS));
    assert_eq!(report.migrated[0], ("doc-0000".to_string(), 0));
    assert_same(&before, &snapshot(dir.path()), "dry run");
    let mut now = common::names(dir.path());
    now.retain(|n| n != ".durafile-migration.lock");
    assert_eq!(now, listing);
}

#[test]
fn one_file_migrates_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    let files = FileManager::default();
    files
        .write_json_file(&path, &json!({"id": 1, "name": "n", "schema_version": 1}))
        .unwrap();
    let done = migrator(None).migrate_file(&path, &files, None).unwrap();
    assert_eq!((done.from, done.to), (1, 3));
    let doc: Value = files.read_json_file(&path).unwrap();
    assert_eq!(
        (
            doc["schema_version"].as_u64(),
            doc["steps_applied"].as_u64()
        ),
        (Some(3), Some(2))
    );
    let err = migrator(None)
        .migrate_file(&path, &files, Some(2))
        .unwrap_err();
    assert!(err.to_string().contains("does not downgrade"), "{err}");
}

#[test]
fn sigkill_part_way_then_rerun_migrates_each_document_exactly_once() {
    let rounds = (common::crash_kills() / 30).max(1);
    let mut rng = Rng::from_env("DURAFILE_MIGRATE_CRASH_SEED");
    for round in 0..rounds {
        let dir = tempfile::tempdir().unwrap();
        // Fewer documents than elsewhere: creating files is what costs, and the kill lands
        // anywhere in the migration either way.
        let docs = fill_with(dir.path(), Durability::None, KILL_DOCS);
        let before = snapshot(dir.path());
        let child = spawn_child(
            "child_entry",
            "migrate",
            &[("TARGET", dir.path().display().to_string())],
        );
        // Half the kills land while staging, half while applying.
        let phase = if round % 2 == 0 {
            "started"
        } else {
            "applying"
        };
        child_wait_then_kill(child, phase, &mut rng);
        // After recovery: all or nothing. Every document old, or every one migrated once.
        Migrator::recover_dir(&docs).unwrap();
        let now = snapshot(dir.path());
        let untouched = docs.list().unwrap().iter().all(|key| {
            let name = format!("{key}.json");
            now.get(&name) == before.get(&name)
        });
        if !untouched {
            assert_all_at_latest_once(&docs, KILL_DOCS);
        }
        eprintln!(
            "round {round}: {}",
            if untouched {
                "rolled back"
            } else {
                "rolled forward"
            }
        );
        let report = migrator(None)
            .migrate_dir(&docs, None, false, &|_, _, _| {})
            .unwrap();
        assert!(report.conflicts.is_empty(), "round {round}");
        assert_all_at_latest_once(&docs, KILL_DOCS);
    }
}

fn child_wait_then_kill(mut child: common::Proc, phase: &str, rng: &mut Rng) {
    child.wait_for(phase);
    std::thread::sleep(Duration::from_millis(rng.below(150)));
    child.kill();
}

#[test]
#[ignore = "entry point of the child processes that other tests start"]
fn child_entry() {
    let target = std::env::var("TARGET").unwrap();
    match common::role().as_deref() {
        Some("migrate") => {
            let docs = DataHandler::open(&target, files(Durability::None)).unwrap();
            common::say("started");
            let progress = |phase: &str, done: usize, _: usize| {
                if phase == "apply" && done == 1 {
                    common::say("applying");
                }
            };
            migrator(None)
                .migrate_dir(&docs, None, false, &progress)
                .unwrap();
            common::say("finished");
        }
        other => panic!("unknown role {other:?}"),
    }
}

/// Every `*.json` the keys cannot name is listed in `skipped` with the reason, untouched,
/// while the documents are migrated.
#[test]
fn json_files_no_key_names_are_reported_not_passed_over() {
    use std::os::unix::ffi::OsStringExt;
    let dir = tempfile::tempdir().unwrap();
    let docs = fill_with(dir.path(), Durability::None, 2);
    let odd: Vec<std::ffi::OsString> = vec![
        "a..b.json".into(),
        "x.tmp.json".into(),
        ".hidden.json".into(),
        std::ffi::OsString::from_vec(b"caf\xe9.json".to_vec()),
        format!("{}.json", "k".repeat(201)).into(),
    ];
    for name in &odd {
        fs::write(dir.path().join(name), "{}").unwrap();
    }
    let report = migrator(None)
        .migrate_dir(&docs, None, false, &|_, _, _| {})
        .unwrap();
    assert_eq!(report.migrated.len(), 2);
    let mut skipped: Vec<_> = report
        .skipped
        .iter()
        .map(|s| s.path.file_name().unwrap().to_owned())
        .collect();
    skipped.sort();
    let mut expected = odd.clone();
    expected.sort();
    assert_eq!(skipped, expected);
    assert!(report.skipped.iter().all(|s| !s.reason.is_empty()));
    for name in &odd {
        assert_eq!(fs::read(dir.path().join(name)).unwrap(), b"{}");
    }
}

/// Runs `Migrator::recover_dir` on `dir` on a thread; its result, or `None` when it is still
/// running after `secs` (a hang: the thread is left blocked and the test fails).
fn recover_within(dir: &Path, secs: u64) -> Option<durafile::Result<Option<Vec<String>>>> {
    let docs = DataHandler::open(dir, files(Durability::None)).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(Migrator::recover_dir(&docs));
    });
    rx.recv_timeout(Duration::from_secs(secs)).ok()
}

/// A FIFO at the journal's name cannot hang a migration, and a huge file there is never read
/// into memory: both are clear errors naming the journal, and no document changes.
#[test]
fn a_fifo_or_huge_file_at_the_journal_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    fill_with(dir.path(), Durability::None, 3);
    let journal = dir.path().join(".durafile-migration.journal");
    let c = std::ffi::CString::new(journal.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    // Without durafile's lock files, which taking a lock creates or rewrites.
    let snapshot = || {
        let mut files = common::snapshot(dir.path());
        files.retain(|path, _| path.extension().is_none_or(|e| e != "lock"));
        files
    };
    let before = snapshot();
    let err = recover_within(dir.path(), 10)
        .expect("recover_dir hangs on a FIFO at the journal")
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(".durafile-migration.journal"), "{msg}");
    assert!(msg.contains("not a regular file"), "{msg}");
    assert_eq!(snapshot(), before);

    fs::remove_file(&journal).unwrap();
    // Sparse: no disk space, but far more than any journal durafile writes.
    fs::File::create(&journal)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let err = recover_within(dir.path(), 30)
        .expect("recover_dir hangs on a huge journal")
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("bytes"), "{msg}");
    assert!(msg.contains("larger than"), "{msg}");
    assert_eq!(fs::metadata(&journal).unwrap().len(), 1 << 30);
}

/// Another user's file at the journal's name is refused naming its owner, never rolled
/// forward: it could make this user rename that user's staged files over the documents.
#[test]
fn another_users_journal_is_refused() {
    if !common::can_switch_users() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    fill_with(dir.path(), Durability::None, 1);
    let journal = dir.path().join(".durafile-migration.journal");
    fs::write(&journal, br#"{"to":2,"entries":[]}"#).unwrap();
    std::os::unix::fs::lchown(&journal, Some(64002), Some(64002)).unwrap();
    let err = recover_within(dir.path(), 10).expect("hangs").unwrap_err();
    assert!(err.to_string().contains("owned by uid 64002"), "{err}");
    assert!(journal.exists(), "another user's file is left where it is");
}
