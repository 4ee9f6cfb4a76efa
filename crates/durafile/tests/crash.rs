//! Crash safety with real processes: a child writes versions of a multi-megabyte JSON file in
//! a loop and is SIGKILLed at random moments. After every kill the file must be exactly one
//! complete version, never older than the last write the child saw return, and recovery must
//! then remove every orphan temp file and nothing else.
//!
//! `DURAFILE_CRASH_KILLS` sets the number of kills (default 200); `DURAFILE_CRASH_SEED`
//! replays a run (every run prints its seed).

mod common;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use durafile::checksum::Verification;
use durafile::{AtomicFile, Durability, Options};

use common::{Rng, heard, names, say, spawn_child, temp_files, versioned_json};

const ITEMS: usize = 25_000; // about 2.6 MB

/// The version the file claims, read from its prefix; `None` if the prefix is not ours.
fn claimed_version(bytes: &[u8]) -> Option<u64> {
    let rest = bytes.strip_prefix(b"{\"version\":")?;
    let end = rest.iter().position(|b| *b == b',')?;
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

/// Panics unless the file is exactly version `v` for some `v` in `allowed`.
fn assert_whole_version(path: &Path, allowed: &[u64], round: u64) -> u64 {
    let bytes = fs::read(path).unwrap();
    let v = claimed_version(&bytes).unwrap_or_else(|| {
        panic!(
            "round {round}: not a version at all ({} bytes): {:?}",
            bytes.len(),
            String::from_utf8_lossy(&bytes[..bytes.len().min(80)])
        )
    });
    assert!(
        bytes == versioned_json(v, ITEMS),
        "round {round}: version {v} is torn ({} bytes)",
        bytes.len()
    );
    assert!(
        allowed.contains(&v),
        "round {round}: found version {v}, expected one of {allowed:?}"
    );
    v
}

#[test]
fn sigkill_at_random_moments_never_tears_the_file() {
    let kills = common::crash_kills();
    let mut rng = Rng::from_env("DURAFILE_CRASH_SEED");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    // Files that look alike but are not durafile's temp files: recovery must keep them.
    fs::write(dir.path().join("notes.txt"), "keep").unwrap();
    fs::write(dir.path().join(".state.json.tmp"), "keep").unwrap();
    durafile::write(&path, versioned_json(0, ITEMS), &Options::new()).unwrap();

    let mut current = 0;
    let mut orphans = 0;
    // Rounds whose kill left an orphan: the next writer removes it, so only these show that
    // kills landed mid-write (the last round alone may well have missed).
    let mut mid_write = 0;
    for round in 0..kills {
        let first = (round + 1) * 1_000_000;
        let level = ["full", "consistent", "none"][(round % 3) as usize];
        let child = spawn_child(
            "child_entry",
            "writer",
            &[
                ("TARGET", path.display().to_string()),
                ("FIRST", first.to_string()),
                ("LEVEL", level.to_string()),
            ],
        );
        std::thread::sleep(Duration::from_micros(rng.below(80_000)));
        let said = child.kill();
        let last_acked = heard(&said).filter_map(|m| m.parse::<u64>().ok()).last();

        // Once a write has returned, the file holds it or the one the child began next.
        let allowed = match last_acked {
            Some(v) => vec![v, v + 1],
            None => vec![current, first],
        };
        current = assert_whole_version(&path, &allowed, round);
        // Each writer removes the temp file its killed predecessor left (recorded in the lock
        // file), so at most the last killed writer's remains until recovery.
        let now = temp_files(dir.path()).len();
        assert!(now <= 1, "round {round}: {now} orphans pile up");
        mid_write += now;
        orphans = now;
    }

    let found = durafile::recover::clean_orphans(dir.path()).unwrap();
    eprintln!(
        "{kills} kills, {mid_write} left an orphan, {} removed by recovery",
        found.removed.len()
    );
    assert!(found.in_use.is_empty());
    assert!(temp_files(dir.path()).is_empty());
    assert_eq!(
        names(dir.path()),
        [
            ".state.json.lock",
            ".state.json.tmp",
            "notes.txt",
            "state.json"
        ]
    );
    assert_eq!(found.removed.len(), orphans);
    if kills >= 50 {
        assert!(
            mid_write > 0,
            "no kill landed mid-write: the test proved nothing"
        );
    }
    assert_whole_version(&path, &[current], kills);
}

/// The same crash loop with checksums on, and smaller files so that more kills land inside
/// the sidecar steps: `verify` must never report a mismatch, and `recover` must leave each
/// sidecar listing exactly the digest of the current content.
#[test]
fn sigkill_of_a_checksumming_writer_never_raises_a_false_alarm() {
    let kills = common::crash_kills();
    let mut rng = Rng::from_env("DURAFILE_CHECKSUM_CRASH_SEED");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let sidecar = dir.path().join("state.json.sha256");
    let mut pending_seen = 0;
    for round in 0..kills {
        let level = ["full", "consistent", "none"][(round % 3) as usize];
        let child = spawn_child(
            "child_entry",
            "writer",
            &[
                ("TARGET", path.display().to_string()),
                ("FIRST", ((round + 1) * 1_000_000).to_string()),
                ("LEVEL", level.to_string()),
                ("CHECKSUM", "1".to_string()),
                ("ITEMS", "2000".to_string()),
            ],
        );
        std::thread::sleep(Duration::from_micros(rng.below(40_000)));
        child.kill();
        match durafile::checksum::verify(&path) {
            Ok(Verification::Match { pending, .. }) => pending_seen += usize::from(pending),
            // Killed before its very first rename.
            Err(e) if !path.exists() => assert!(e.to_string().contains("No such file")),
            Ok(Verification::NoChecksum) if !sidecar.exists() => {}
            other => panic!("round {round}: {other:?}"),
        }
        if round % 10 == 9 {
            let found = durafile::recover::recover(dir.path(), false).unwrap();
            assert!(
                found.damaged.is_empty(),
                "round {round}: {:?}",
                found.damaged
            );
            if path.exists() {
                let digest = durafile::checksum::hash_reader(fs::File::open(&path).unwrap());
                let line = format!(
                    "{}  state.json\n",
                    durafile::checksum::to_hex(&digest.unwrap())
                );
                assert_eq!(fs::read_to_string(&sidecar).unwrap(), line, "round {round}");
            }
            assert!(temp_files(dir.path()).is_empty());
        }
    }
    eprintln!("{kills} kills, {pending_seen} left a two-digest sidecar");
}

#[test]
fn recovery_leaves_a_live_writers_temp_file_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    durafile::write(&path, b"old", &Options::new()).unwrap();
    let mut child = spawn_child(
        "child_entry",
        "hold",
        &[("TARGET", path.display().to_string())],
    );
    child.wait_for("ready");
    let temps = temp_files(dir.path());
    assert_eq!(temps.len(), 1);

    let found = durafile::recover::clean_orphans(dir.path()).unwrap();
    assert_eq!(
        found.in_use, temps,
        "a live writer's temp file is not an orphan"
    );
    assert!(found.removed.is_empty());
    assert_eq!(temp_files(dir.path()), temps);

    child.kill();
    let found = durafile::recover::clean_orphans(dir.path()).unwrap();
    assert_eq!(found.removed, temps, "the dead writer's lock died with it");
    assert!(temp_files(dir.path()).is_empty());
    assert_eq!(fs::read(&path).unwrap(), b"old");
}

#[test]
#[ignore = "entry point of the child processes that other tests start"]
fn child_entry() {
    let target = std::env::var("TARGET").unwrap();
    match common::role().as_deref() {
        Some("writer") => {
            let level: Durability = std::env::var("LEVEL").unwrap().parse().unwrap();
            let checksum = std::env::var("CHECKSUM").is_ok();
            let items = std::env::var("ITEMS").map_or(ITEMS, |n| n.parse().unwrap());
            let opts = Options::new().durability(level).checksum(checksum);
            for v in common::env_u64("FIRST").. {
                durafile::write(&target, versioned_json(v, items), &opts).unwrap();
                say(v);
            }
        }
        Some("hold") => {
            let mut file = AtomicFile::new(&target, &Options::new()).unwrap();
            file.write_all(b"partial new content").unwrap();
            file.flush().unwrap();
            say("ready");
            std::thread::sleep(Duration::from_secs(3600));
        }
        other => panic!("unknown role {other:?}"),
    }
}
