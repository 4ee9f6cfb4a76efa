//! Concurrent writers and readers on one file: 8 threads and 4 processes replace it at once
//! while reader threads read it; every read must be one complete version.

mod common;

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;

use durafile::{Durability, Options};

use common::{spawn_child, temp_files};

const WRITES_PER_WRITER: u64 = 40;

/// Version `seq` of writer `w`: a header line repeated to 64 KiB, so a torn or mixed read
/// shows as a line that differs from the first.
fn content(w: u64, seq: u64) -> Vec<u8> {
    format!("writer {w} seq {seq}\n")
        .repeat(64 * 1024 / 20)
        .into_bytes()
}

fn assert_complete(bytes: &[u8]) {
    let text = std::str::from_utf8(bytes).expect("utf-8");
    let first = text.lines().next().expect("never empty");
    let mut words = first.split(' ');
    let (w, seq) = (words.nth(1).unwrap(), words.nth(1).unwrap());
    assert!(
        bytes == content(w.parse().unwrap(), seq.parse().unwrap()),
        "a read saw a torn or mixed version starting {first:?}"
    );
}

fn write_versions(path: &Path, writer: u64, level: Durability) {
    let opts = Options::new().durability(level);
    for seq in 0..WRITES_PER_WRITER {
        durafile::write(path, content(writer, seq), &opts).unwrap();
    }
}

#[test]
fn threads_and_processes_replace_while_readers_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = Arc::new(dir.path().join("shared.txt"));
    durafile::write(&*path, content(99, 0), &Options::new()).unwrap();

    let done = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (path, done, reads) = (path.clone(), done.clone(), reads.clone());
            thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    assert_complete(&fs::read(&*path).unwrap());
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    let processes: Vec<_> = (0..4)
        .map(|w| {
            spawn_child(
                "child_entry",
                "writer",
                &[
                    ("TARGET", path.display().to_string()),
                    ("WRITER", (100 + w).to_string()),
                ],
            )
        })
        .collect();
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let path = path.clone();
            let level = [Durability::None, Durability::Consistent][w as usize % 2];
            thread::spawn(move || write_versions(&path, w, level))
        })
        .collect();

    for writer in writers {
        writer.join().unwrap();
    }
    for child in processes {
        assert!(child.finish().0.success(), "a writer process failed");
    }
    done.store(true, Ordering::Relaxed);
    for reader in readers {
        reader.join().unwrap();
    }
    assert!(reads.load(Ordering::Relaxed) > 0);
    assert_complete(&fs::read(&*path).unwrap());
    assert!(temp_files(dir.path()).is_empty());
}

#[test]
#[ignore = "entry point of the child processes that other tests start"]
fn child_entry() {
    match common::role().as_deref() {
        Some("writer") => {
            let target = std::env::var("TARGET").unwrap();
            write_versions(
                Path::new(&target),
                common::env_u64("WRITER"),
                Durability::Full,
            );
        }
        other => panic!("unknown role {other:?}"),
    }
}
