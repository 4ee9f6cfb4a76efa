//! A sidecar never lists more than two digests, the most durafile's own format allows: a
//! write that follows an interrupted one hashes the current content instead of piling its
//! new digest onto the two already listed. The write is stopped between the sidecar's first
//! step and the data's rename by a panic injected there.
//!
//! Runs only with `--features failpoints`; failpoints are process-wide, so this file holds
//! one test.
#![cfg(feature = "failpoints")]

use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};

use durafile::Options;
use durafile::checksum::{self, Verification};

#[test]
fn a_write_after_an_interrupted_one_lists_two_digests_not_three() {
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let sidecar = dir.path().join("data.sha256");
    let digest = |b: &[u8]| checksum::to_hex(&checksum::hash_reader(b).unwrap());
    // What an interrupted write from "a" to "b" leaves: content "b", both digests listed.
    durafile::write(&data, b"b", &Options::new()).unwrap();
    fs::write(
        &sidecar,
        format!("{}  data\n{}  data\n", digest(b"a"), digest(b"b")),
    )
    .unwrap();

    fail::cfg("durafile::before_rename", "panic").unwrap();
    let interrupted = catch_unwind(AssertUnwindSafe(|| {
        durafile::write(&data, b"c", &Options::new())
    }));
    fail::remove("durafile::before_rename");
    assert!(interrupted.is_err(), "the injected panic stops the write");

    assert_eq!(fs::read(&data).unwrap(), b"b");
    assert_eq!(
        fs::read_to_string(&sidecar).unwrap(),
        format!("{}  data\n{}  data\n", digest(b"c"), digest(b"b")),
        "the new digest first (the line a finished write keeps), then the current \
         content's, nothing else"
    );
    assert!(matches!(
        checksum::verify(&data).unwrap(),
        Verification::Match { pending: true, .. }
    ));
    scenario.teardown();
}
