//! A failure injected at every step of the replace: the error names the step and the path,
//! the original is byte-for-byte intact (or, after the rename, the new content is in place
//! and the error says its durability is unknown), and no temp file remains.
//!
//! Runs only with `--features failpoints`. Failpoints are process-wide, so the tests take
//! turns through one mutex.
#![cfg(feature = "failpoints")]

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::sync::Mutex;

use durafile::{AtomicFile, Durability, Options, Step};

use common::temp_files;

static SERIAL: Mutex<()> = Mutex::new(());

const ORIGINAL: &[u8] = b"{\"version\":1,\"data\":\"original\"}";

/// Every failpoint, the step its error must name, and whether the new content is in place
/// when it fires.
const POINTS: &[(&str, Step, bool)] = &[
    ("durafile::after_create", Step::CreateTemp, false),
    ("durafile::write", Step::Write, false),
    ("durafile::set_permissions", Step::SetPermissions, false),
    ("durafile::before_sync", Step::Sync, false),
    ("durafile::after_sync", Step::Sync, false),
    ("durafile::before_rename", Step::Rename, false),
    ("durafile::before_sync_dir", Step::SyncDir, true),
];

#[test]
fn every_failpoint_fails_cleanly() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let scenario = fail::FailScenario::setup();
    for &(point, step, replaced) in POINTS {
        for errno in ["EIO", "ENOSPC", "EROFS"] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("state.json");
            fs::write(&path, ORIGINAL).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();

            fail::cfg(point, &format!("return({errno})")).unwrap();
            let err = durafile::write(&path, b"{\"version\":2}", &Options::new()).unwrap_err();
            fail::remove(point);

            let ctx = format!("{point} {errno}: {err}");
            assert_eq!(err.step(), Some(step), "{ctx}");
            assert_eq!(err.path(), path, "{ctx}");
            let msg = err.to_string();
            assert!(msg.contains(&path.display().to_string()), "{ctx}");
            assert!(err.io_error().is_some(), "{ctx}");
            if errno == "ENOSPC" {
                assert!(msg.contains("free space"), "{ctx}");
            }
            if replaced {
                assert_eq!(fs::read(&path).unwrap(), b"{\"version\":2}", "{ctx}");
                assert!(msg.contains("durability is unknown"), "{ctx}");
                assert!(!err.target_untouched());
            } else {
                assert_eq!(fs::read(&path).unwrap(), ORIGINAL, "{ctx}");
                assert!(msg.contains("the target is unchanged"), "{ctx}");
                assert!(err.target_untouched());
            }
            assert_eq!(
                fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o640,
                "{ctx}"
            );
            assert!(temp_files(dir.path()).is_empty(), "{ctx}: temp left behind");
            // The lock was released with the failed write.
            durafile::write(
                &path,
                b"after",
                &Options::new().lock_timeout(Default::default()),
            )
            .unwrap();
        }
    }
    scenario.teardown();
}

#[test]
fn failpoints_that_a_level_skips_do_not_fire() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    fail::cfg("durafile::before_sync", "return").unwrap();
    fail::cfg("durafile::before_sync_dir", "return").unwrap();
    durafile::write(&path, b"x", &Options::new().durability(Durability::None)).unwrap();
    fail::remove("durafile::before_sync");
    durafile::write(
        &path,
        b"y",
        &Options::new().durability(Durability::Consistent),
    )
    .unwrap();
    fail::remove("durafile::before_sync_dir");
    assert_eq!(fs::read(&path).unwrap(), b"y");
    scenario.teardown();
}

#[test]
fn failed_stream_write_cannot_be_committed() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.json");
    fs::write(&path, ORIGINAL).unwrap();
    let mut file = AtomicFile::new(&path, &Options::new()).unwrap();
    file.write_all(b"[1,").unwrap();
    fail::cfg("durafile::write", "1*return(ENOSPC)").unwrap();
    let err = file.write_all(b"2,").unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::StorageFull);
    let inner = err
        .get_ref()
        .unwrap()
        .downcast_ref::<durafile::Error>()
        .unwrap();
    assert_eq!(inner.step(), Some(Step::Write));
    assert_eq!(inner.path(), path);
    assert!(err.to_string().contains("free space"), "{err}");
    fail::remove("durafile::write");
    // The caller ignores the error and carries on: the file still refuses to publish.
    assert!(file.write_all(b"3]").is_err());
    let err = file.commit().unwrap_err();
    assert_eq!(err.step(), Some(Step::Write));
    assert_eq!(fs::read(&path).unwrap(), ORIGINAL);
    assert!(temp_files(dir.path()).is_empty());
    scenario.teardown();
}

#[test]
fn panic_mid_write_leaves_original_and_no_temp() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let scenario = fail::FailScenario::setup();
    for point in [
        "durafile::write",
        "durafile::before_sync",
        "durafile::before_rename",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        fs::write(&path, ORIGINAL).unwrap();
        fail::cfg(point, "panic").unwrap();
        let p = path.clone();
        let result = std::panic::catch_unwind(move || durafile::write(&p, b"new", &Options::new()));
        fail::remove(point);
        assert!(result.is_err(), "{point} did not panic");
        assert_eq!(fs::read(&path).unwrap(), ORIGINAL, "{point}");
        assert!(
            temp_files(dir.path()).is_empty(),
            "{point}: temp left behind"
        );
    }
    scenario.teardown();
}

/// Every step of the checksum pair protocol: after the failure the file verifies (no false
/// alarm), holds the old or the new content as the step says, no temp file remains, and
/// recovery reduces the sidecar to the current content's digest.
#[test]
fn every_checksum_step_fails_without_false_alarm() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let scenario = fail::FailScenario::setup();
    let points: &[(&str, Step, bool)] = &[
        ("durafile::checksum_begin", Step::ChecksumBegin, false),
        (
            "durafile::checksum_begin_rename",
            Step::ChecksumBegin,
            false,
        ),
        ("durafile::before_rename", Step::Rename, false),
        ("durafile::before_sync_dir", Step::SyncDir, true),
        ("durafile::checksum_finish", Step::ChecksumFinish, true),
    ];
    let opts = Options::new().checksum(true);
    for &(point, step, replaced) in points {
        for had_sidecar in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("state.json");
            let ctx = format!("{point}, had sidecar: {had_sidecar}");
            if had_sidecar {
                durafile::write(&path, ORIGINAL, &opts).unwrap();
            } else {
                fs::write(&path, ORIGINAL).unwrap();
            }
            fail::cfg(point, "return(EIO)").unwrap();
            let err = durafile::write(&path, b"{\"version\":2}", &opts).unwrap_err();
            fail::remove(point);
            assert_eq!(err.step(), Some(step), "{ctx}: {err}");
            assert_eq!(err.target_untouched(), !replaced, "{ctx}");
            let expected: &[u8] = if replaced {
                b"{\"version\":2}"
            } else {
                ORIGINAL
            };
            assert_eq!(fs::read(&path).unwrap(), expected, "{ctx}");
            assert!(temp_files(dir.path()).is_empty(), "{ctx}: temp left behind");
            match durafile::checksum::verify(&path) {
                Ok(_) => {}
                Err(e) => panic!("{ctx}: false alarm: {e}"),
            }
            if point == "durafile::before_rename" {
                // The sidecar was put back: it does not accept content never published.
                let text = fs::read_to_string(dir.path().join("state.json.sha256")).unwrap();
                assert_eq!(text.lines().count(), 1, "{ctx}: {text}");
            }
            let found = durafile::recover::recover(dir.path(), false).unwrap();
            assert!(found.damaged.is_empty(), "{ctx}");
            if dir.path().join("state.json.sha256").exists() {
                let text = fs::read_to_string(dir.path().join("state.json.sha256")).unwrap();
                assert_eq!(text.lines().count(), 1, "{ctx}: {text}");
                assert!(matches!(
                    durafile::checksum::verify(&path).unwrap(),
                    durafile::checksum::Verification::Match { pending: false, .. }
                ));
            }
        }
    }
    scenario.teardown();
}

/// EINTR is not a failure: the write is retried and the file commits whole.
#[test]
fn interrupted_write_is_retried_not_fatal() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    fail::cfg("durafile::write", &format!("1*return({})", libc::EINTR)).unwrap();
    durafile::write(&path, b"whole", &Options::new()).unwrap();
    fail::remove("durafile::write");
    assert_eq!(fs::read(&path).unwrap(), b"whole");
    scenario.teardown();
}

/// The thread that hashes a large checksummed write fails or panics (on its first piece or
/// mid-stream): the commit fails at the checksum step with an error that says so, never with
/// a wrong digest; the original and its sidecar are untouched and still verify, and no temp
/// file remains.
#[test]
fn hashing_thread_failure_fails_the_commit() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let scenario = fail::FailScenario::setup();
    let opts = Options::new().checksum(true);
    let piece = vec![0x5a_u8; 1 << 20];
    for action in ["return(EIO)", "panic", "3*off->return(EIO)", "3*off->panic"] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.bin");
        durafile::write(&path, ORIGINAL, &opts).unwrap();
        let sidecar = fs::read(dir.path().join("big.bin.sha256")).unwrap();

        fail::cfg("durafile::hash", action).unwrap();
        let mut file = AtomicFile::new(&path, &opts).unwrap();
        for _ in 0..8 {
            // The writer learns of the failure at the commit; writing goes on meanwhile.
            file.write_all(&piece).unwrap();
        }
        let err = file.commit().unwrap_err();
        fail::remove("durafile::hash");

        let ctx = format!("{action}: {err}");
        assert_eq!(err.step(), Some(Step::ChecksumBegin), "{ctx}");
        assert!(err.target_untouched(), "{ctx}");
        let expected = if action.ends_with("panic") {
            "panicked"
        } else {
            "Input/output error"
        };
        assert!(err.to_string().contains(expected), "{ctx}");
        assert_eq!(fs::read(&path).unwrap(), ORIGINAL, "{ctx}");
        assert_eq!(
            fs::read(dir.path().join("big.bin.sha256")).unwrap(),
            sidecar,
            "{ctx}"
        );
        assert!(temp_files(dir.path()).is_empty(), "{ctx}: temp left behind");
        durafile::checksum::verify(&path).unwrap();
    }
    scenario.teardown();
}

/// A batch whose directory fsync fails after the renames: every document has its new content,
/// so every operation is reported applied with its durability unknown, never failed.
#[test]
fn batch_failure_after_the_rename_is_applied_with_durability_unknown() {
    use durafile::batch::{BatchProcessor, Op, Outcome};
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let ops: Vec<Op> = (0..40)
        .map(|i| Op::Write {
            path: dir.path().join(format!("d{}.json", i % 10)),
            value: serde_json::json!({ "i": i }),
        })
        .collect();
    fail::cfg("durafile::before_sync_dir", "return(EIO)").unwrap();
    let report = BatchProcessor::new(durafile::FileManager::new(Options::new())).run(ops);
    fail::remove("durafile::before_sync_dir");
    scenario.teardown();
    assert_eq!((report.applied(), report.failed()), (40, 0));
    assert_eq!(report.durability_unknown(), 40);
    for outcome in &report.outcomes {
        let Outcome::AppliedDurabilityUnknown(e) = outcome else {
            panic!("{outcome:?}");
        };
        assert_eq!(e.step(), Some(Step::SyncDir), "{e}");
        assert!(e.to_string().contains("durability is unknown"), "{e}");
    }
    for i in 0..10 {
        let doc = fs::read_to_string(dir.path().join(format!("d{i}.json"))).unwrap();
        assert_eq!(doc, format!("{{\"i\":{}}}\n", 30 + i));
    }
    assert!(temp_files(dir.path()).is_empty());
}

/// A failed rename of a new file removes the sidecar its write began, but only while that is
/// still durafile's: a user's own list put there meanwhile stays.
#[test]
fn failed_rename_leaves_a_sidecar_that_is_no_longer_durafiles() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.json");
    let sidecar = dir.path().join("new.json.sha256");
    let list = format!(
        "{}  new.json\n{}  b.iso\n",
        "ab".repeat(32),
        "cd".repeat(32)
    );
    let (at, text, blocker) = (sidecar.clone(), list.clone(), path.clone());
    fail::cfg_callback("durafile::before_rename", move || {
        // The user saves their own list, and a directory at the name makes the rename fail.
        fs::write(&at, &text).unwrap();
        fs::create_dir(&blocker).unwrap();
        fs::write(blocker.join("keep"), b"").unwrap();
    })
    .unwrap();
    let err = durafile::write(&path, b"{}", &Options::new().checksum(true)).unwrap_err();
    fail::remove("durafile::before_rename");
    assert_eq!(err.step(), Some(Step::Rename), "{err}");
    assert_eq!(
        fs::read(&sidecar).unwrap(),
        list.as_bytes(),
        "removed the user's list"
    );
    assert!(temp_files(dir.path()).is_empty());
    scenario.teardown();
}

/// Without a sidecar step to follow, the lock is released between the rename and the
/// directory fsync, so the next writer need not wait for that fsync; the next writer's
/// clean-up of "the temp file the lock file records" then finds nothing of ours (our temp is
/// already the target), and our call still returns only after its fsync. With a checksum the
/// sidecar's last step follows the fsync, so the lock is held to the end.
#[test]
fn lock_is_released_before_the_directory_fsync_only_without_a_sidecar_step() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, mpsc};
    use std::time::Duration;

    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let scenario = fail::FailScenario::setup();
    for checksum in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let opts = Options::new().checksum(checksum);
        durafile::write(&path, ORIGINAL, &opts).unwrap();
        let (reached, parked) = mpsc::channel();
        let (resume, go) = mpsc::channel::<()>();
        let (reached, go) = (Mutex::new(reached), Mutex::new(go));
        let first = Arc::new(AtomicBool::new(true));
        // Parks the first writer to reach its directory fsync, once.
        fail::cfg_callback("durafile::before_sync_dir", move || {
            if first.swap(false, Ordering::SeqCst) {
                reached.lock().unwrap().send(()).unwrap();
                let _ = go.lock().unwrap().recv_timeout(Duration::from_secs(60));
            }
        })
        .unwrap();
        let a = {
            let (path, opts) = (path.clone(), opts.clone());
            std::thread::spawn(move || durafile::write(&path, b"A", &opts))
        };
        parked.recv_timeout(Duration::from_secs(60)).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"A", "renamed before the fsync");
        let next = opts.clone().lock_timeout(Duration::from_millis(300));
        let b = durafile::write(&path, b"B", &next);
        resume.send(()).unwrap();
        let a = a.join().unwrap();
        fail::remove("durafile::before_sync_dir");
        a.unwrap();
        if checksum {
            assert!(
                matches!(b, Err(durafile::Error::LockTimeout { .. })),
                "with a checksum the lock is held through the fsync: {b:?}"
            );
            assert_eq!(fs::read(&path).unwrap(), b"A");
        } else {
            b.unwrap();
            assert_eq!(fs::read(&path).unwrap(), b"B");
        }
        assert_eq!(
            durafile::read(&path, &opts).unwrap(),
            fs::read(&path).unwrap()
        );
        assert!(
            temp_files(dir.path()).is_empty(),
            "{:?}",
            temp_files(dir.path())
        );
        assert!(durafile::lock::lock_file_path(&path).unwrap().exists());
    }
    scenario.teardown();
}

/// A batch whose directory fsync between the sidecars' first step and the renames fails: the
/// documents waiting for it fail with their content untouched, and a document already renamed
/// by its worker (here one whose content did not change, so its sidecar has no step to wait
/// for) is reported applied, not failed.
#[test]
fn batch_failure_before_the_sidecar_renames_fails_only_the_files_still_waiting() {
    use durafile::batch::{BatchProcessor, Op, Outcome};
    use serde_json::json;
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let files = durafile::FileManager::new(Options::new().checksum(true));
    let (changed, same) = (
        dir.path().join("changed.json"),
        dir.path().join("same.json"),
    );
    files.write_json_file(&changed, &json!({"v": 1})).unwrap();
    files.write_json_file(&same, &json!({"v": 1})).unwrap();
    let before = fs::read(&changed).unwrap();
    let ops = vec![
        Op::Write {
            path: changed.clone(),
            value: json!({"v": 2}),
        },
        Op::Write {
            path: same.clone(),
            value: json!({"v": 1}),
        },
    ];
    fail::cfg("durafile::batch_checksum_begin_sync_dir", "return(EIO)").unwrap();
    let report = BatchProcessor::new(files).workers(2).run(ops);
    fail::remove("durafile::batch_checksum_begin_sync_dir");
    scenario.teardown();
    let Outcome::Failed(e) = &report.outcomes[0] else {
        panic!("{:?}", report.outcomes[0]);
    };
    assert_eq!(e.step(), Some(Step::ChecksumBegin), "{e}");
    assert!(
        matches!(report.outcomes[1], Outcome::Applied),
        "{:?}",
        report.outcomes[1]
    );
    assert_eq!(fs::read(&changed).unwrap(), before);
    durafile::checksum::verify(&changed).unwrap();
    durafile::checksum::verify(&same).unwrap();
    assert!(temp_files(dir.path()).is_empty());
}
