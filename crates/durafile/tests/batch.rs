//! The batch processor on real files: 10,000 merges from 8 workers over 100 shared documents
//! with every one applied exactly once, failing jobs that stop nothing else, cancellation,
//! and two batch processes over the same documents at once.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use durafile::batch::{BatchProcessor, Op, Outcome};
use durafile::{Durability, Error, FileManager, Options};
use serde_json::{Value, json};

use common::spawn_child;

fn doc(dir: &Path, n: usize) -> PathBuf {
    dir.join(format!("doc{n:03}.json"))
}

/// Operation `i` of `prefix` sets key `{prefix}{i}` in document `i % docs`.
fn merges(dir: &Path, prefix: &str, count: usize, docs: usize) -> Vec<Op> {
    (0..count)
        .map(|i| Op::Merge {
            path: doc(dir, i % docs),
            patch: json!({ format!("{prefix}{i}"): i }),
        })
        .collect()
}

fn assert_each_applied_once(dir: &Path, prefix: &str, count: usize, docs: usize) {
    for n in 0..docs {
        let value: Value = FileManager::default().read_json_file(doc(dir, n)).unwrap();
        let object = value.as_object().unwrap();
        let mine: Vec<_> = object.keys().filter(|k| k.starts_with(prefix)).collect();
        assert_eq!(mine.len(), count / docs, "doc {n}");
        for (key, v) in object.iter().filter(|(k, _)| k.starts_with(prefix)) {
            let i: usize = key[prefix.len()..].parse().unwrap();
            assert_eq!(
                (i % docs, v.as_u64()),
                (n, Some(i as u64)),
                "doc {n} key {key}"
            );
        }
    }
}

#[test]
fn ten_thousand_merges_from_eight_workers_each_applied_once() {
    let dir = tempfile::tempdir().unwrap();
    let files = FileManager::new(Options::new().checksum(true));
    let progress = Mutex::new(Vec::new());
    let report = BatchProcessor::new(files)
        .workers(8)
        .group_size(32)
        .run_with(
            merges(dir.path(), "op", 10_000, 100),
            &|p| progress.lock().unwrap().push(p.done),
            &AtomicBool::new(false),
        );
    assert_eq!(
        (report.applied(), report.failed(), report.cancelled()),
        (10_000, 0, 0)
    );
    assert_each_applied_once(dir.path(), "op", 10_000, 100);
    let progress = progress.into_inner().unwrap();
    assert_eq!(progress.len(), 4, "100 documents in groups of 32");
    assert!(progress.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(progress.last(), Some(&10_000));
    for n in 0..100 {
        assert!(matches!(
            durafile::checksum::verify(doc(dir.path(), n)).unwrap(),
            durafile::checksum::Verification::Match { pending: false, .. }
        ));
    }
    assert!(common::temp_files(dir.path()).is_empty());
}

#[test]
fn failing_jobs_are_reported_and_all_others_applied() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(doc(dir.path(), 7), "{ not json").unwrap();
    fs::create_dir(dir.path().join("a-directory.json")).unwrap();
    let mut ops = merges(dir.path(), "op", 1000, 20);
    ops.push(Op::Merge {
        path: dir.path().join("a-directory.json"),
        patch: json!({"x": 1}),
    });
    // A write to the broken document replaces it, so the merges after it succeed.
    ops.push(Op::Write {
        path: doc(dir.path(), 8),
        value: json!({"rewritten": true}),
    });
    let report = BatchProcessor::new(FileManager::new(
        Options::new().durability(Durability::Consistent),
    ))
    .workers(4)
    .run(ops);
    assert_eq!(report.outcomes.len(), 1002);
    // Document 7's 50 merges fail on its content; the directory fails; all else is applied.
    assert_eq!((report.applied(), report.failed()), (1002 - 51, 51));
    for (i, outcome) in report.outcomes.iter().enumerate() {
        let expect_failure = (i < 1000 && i % 20 == 7) || i == 1000;
        match outcome {
            Outcome::Failed(e) if expect_failure => {
                if i == 1000 {
                    assert!(matches!(**e, Error::NotRegularFile { .. }), "{e}");
                } else {
                    assert!(matches!(**e, Error::InvalidJson { .. }), "{e}");
                }
            }
            Outcome::Applied if !expect_failure => {}
            other => panic!("op {i}: {other:?}"),
        }
    }
    assert_eq!(
        fs::read(doc(dir.path(), 7)).unwrap(),
        b"{ not json",
        "untouched"
    );
    let eight: Value = FileManager::default()
        .read_json_file(doc(dir.path(), 8))
        .unwrap();
    assert_eq!(eight, json!({"rewritten": true}), "the write came last");
}

#[test]
fn cancelled_batch_stops_between_groups() {
    let dir = tempfile::tempdir().unwrap();
    let cancel = AtomicBool::new(false);
    let report = BatchProcessor::new(FileManager::new(
        Options::new().durability(Durability::None),
    ))
    .group_size(10)
    .run_with(
        merges(dir.path(), "op", 500, 50),
        &|p| {
            if p.done >= 100 {
                cancel.store(true, Ordering::Relaxed);
            }
        },
        &cancel,
    );
    assert_eq!(report.applied(), 100, "one group of 10 documents x 10 ops");
    assert_eq!(report.cancelled(), 400);
    assert_eq!(report.failed(), 0);
    let written = (0..50).filter(|&n| doc(dir.path(), n).exists()).count();
    assert_eq!(written, 10);
}

/// Two processes run batches over the same documents, each in its own order: both finish
/// (no deadlock between their groups of locks) and no merge of either is lost.
#[test]
fn two_batch_processes_over_the_same_documents() {
    let dir = tempfile::tempdir().unwrap();
    let children: Vec<_> = ["a", "b"]
        .iter()
        .map(|prefix| {
            spawn_child(
                "child_entry",
                "batch",
                &[
                    ("TARGET", dir.path().display().to_string()),
                    ("PREFIX", prefix.to_string()),
                ],
            )
        })
        .collect();
    for child in children {
        let (status, said) = child.finish();
        assert!(status.success());
        assert_eq!(common::heard(&said).last(), Some("applied 2000"));
    }
    assert_each_applied_once(dir.path(), "a", 2000, 50);
    assert_each_applied_once(dir.path(), "b", 2000, 50);
}

#[test]
#[ignore = "entry point of the child processes that other tests start"]
fn child_entry() {
    match common::role().as_deref() {
        Some("batch") => {
            let dir = PathBuf::from(std::env::var("TARGET").unwrap());
            let prefix = std::env::var("PREFIX").unwrap();
            let mut ops = merges(&dir, &prefix, 2000, 50);
            if prefix == "b" {
                ops.reverse();
            }
            let files = FileManager::new(Options::new().durability(Durability::Consistent));
            let report = BatchProcessor::new(files).workers(4).group_size(8).run(ops);
            common::say(format!("applied {}", report.applied()));
        }
        other => panic!("unknown role {other:?}"),
    }
}

/// Different spellings of one document are one document: applied in order, under one lock.
#[test]
fn spellings_of_one_path_are_one_document() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("sub")).unwrap();
    let spellings = [
        dir.path().join("d.json"),
        dir.path().join("./d.json"),
        dir.path().join("sub/../d.json"),
    ];
    let ops: Vec<Op> = (0..30)
        .map(|i| Op::Merge {
            path: spellings[i % 3].clone(),
            patch: json!({ format!("k{i}"): i }),
        })
        .collect();
    let report = BatchProcessor::new(FileManager::default())
        .workers(3)
        .run(ops);
    assert_eq!(
        (report.applied(), report.failed()),
        (30, 0),
        "{:?}",
        report.outcomes
    );
    let doc: Value = FileManager::default()
        .read_json_file(&spellings[0])
        .unwrap();
    assert_eq!(doc.as_object().unwrap().len(), 30);
}

/// The workers start on each document as soon as its lock is taken: while another writer
/// holds the last document's lock, the documents before it (in lock order) are written
/// already, instead of the whole group waiting for every lock first.
#[test]
fn documents_are_written_while_a_later_lock_is_awaited() {
    use durafile::lock::{self, LockMode};
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let paths: Vec<PathBuf> = ["a.json", "b.json", "z.json"]
        .iter()
        .map(|name| dir.path().join(name))
        .collect();
    let held = lock::acquire(&paths[2], LockMode::Exclusive, None).unwrap();
    let ops = paths
        .iter()
        .map(|path| Op::Write {
            path: path.clone(),
            value: json!({"new": true}),
        })
        .collect();
    std::thread::scope(|s| {
        let batch = s.spawn(|| {
            BatchProcessor::new(FileManager::new(Options::new()))
                .workers(2)
                .run(ops)
        });
        let start = Instant::now();
        while !(paths[0].exists() && paths[1].exists()) {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "nothing was written while the last lock was awaited"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!paths[2].exists(), "written without its lock");
        drop(held);
        assert_eq!(batch.join().unwrap().applied(), 3);
    });
    for path in &paths {
        let value: Value = FileManager::default().read_json_file(path).unwrap();
        assert_eq!(value, json!({"new": true}));
    }
}
