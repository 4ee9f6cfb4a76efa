//! Orphan temp files of killed writers do not pile up (issue 10, item 10): the next writer
//! that holds the lock removes the one its dead predecessor left, without listing the
//! directory.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use common::{say, spawn_child, temp_files, versioned_json};
use durafile::{AtomicFile, Options};

/// Twenty writers of a multi-megabyte file are SIGKILLed part-way through, each after its temp
/// file holds data; one successful write afterwards leaves no temp file behind.
#[test]
fn killed_writers_leave_no_orphans_after_the_next_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.json");
    durafile::write(&path, versioned_json(0, 1000), &Options::new()).unwrap();
    for round in 1..=20 {
        let mut child = spawn_child(
            "child_entry",
            "slow_writer",
            &[
                ("DF_PATH", path.display().to_string()),
                ("DF_VERSION", round.to_string()),
            ],
        );
        child.wait_for("half written");
        let _ = child.kill();
    }
    let left = temp_files(dir.path());
    assert!(!left.is_empty(), "the killed writers left temp files");
    let last = versioned_json(99, 40_000);
    durafile::write(&path, &last, &Options::new()).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), last);
    assert_eq!(temp_files(dir.path()), Vec::<PathBuf>::new());
}

/// A live writer's temp file is never taken for an orphan: it holds a flock on it.
#[test]
fn a_live_writers_temp_file_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.json");
    let mut first = AtomicFile::new(&path, &Options::new()).unwrap();
    first.write_all(b"first").unwrap();
    let temp = first.temp_path().to_path_buf();
    // A second writer waits for the lock; when it gets it, the first has committed.
    let p = path.clone();
    let second = std::thread::spawn(move || durafile::write(&p, "second", &Options::new()));
    std::thread::sleep(Duration::from_millis(100));
    assert!(temp.exists(), "the live writer's temp file is still there");
    first.commit().unwrap();
    second.join().unwrap().unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "second");
    assert!(temp_files(dir.path()).is_empty());
}

/// A writer killed while it waits for the lock leaves nothing in the directory: its temp file
/// is made only once it holds the lock and has recorded the name (a temp file made while
/// waiting could not be recorded, and would be an orphan nobody is told about).
#[test]
fn a_writer_killed_while_it_waits_for_the_lock_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("waited.json");
    durafile::write(&path, b"before", &Options::new()).unwrap();
    let held = durafile::lock::acquire(&path, durafile::lock::LockMode::Exclusive, None).unwrap();
    let before = common::names(dir.path());
    let mut child = spawn_child(
        "child_entry",
        "waiting_writer",
        &[("DF_PATH", path.display().to_string())],
    );
    child.wait_for("waiting");
    let _ = child.kill();
    assert_eq!(
        common::names(dir.path()),
        before,
        "the killed waiter left a file"
    );
    drop(held);
    durafile::write(&path, b"after", &Options::new()).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"after");
    assert_eq!(common::names(dir.path()), before);
}

#[test]
#[ignore = "a child process of the tests above"]
fn child_entry() {
    if common::role().as_deref() == Some("waiting_writer") {
        let path = PathBuf::from(std::env::var("DF_PATH").unwrap());
        durafile::lock::on_wait(|_| say("waiting"));
        durafile::write(&path, b"never", &Options::new()).unwrap();
        return;
    }
    if common::role().as_deref() == Some("slow_writer") {
        let path = PathBuf::from(std::env::var("DF_PATH").unwrap());
        let version = common::env_u64("DF_VERSION");
        let content = versioned_json(version, 40_000);
        let mut file = AtomicFile::new(&path, &Options::new()).unwrap();
        let (head, _) = content.split_at(content.len() / 2);
        file.write_all(head).unwrap();
        file.flush().unwrap();
        say("half written");
        std::thread::sleep(Duration::from_secs(60));
    }
}
