//! Locks across threads and real processes: no lost update, no overlapping exclusive
//! sections, shared sections that do overlap, a lock that holds across a replace, timeouts,
//! and a SIGKILLed holder's lock released at once.

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use durafile::lock::{self, LockMode};
use durafile::{AtomicFile, Durability, Error, Options};

use common::{Rng, heard, say, spawn_child};

fn increment(path: &Path, opts: &Options) {
    durafile::update(path, opts, |current| {
        let n: u64 = current.map_or(0, |b| {
            std::str::from_utf8(b).unwrap().trim().parse().unwrap()
        });
        Ok::<_, Error>((n + 1).to_string().into_bytes())
    })
    .unwrap();
}

#[test]
fn eight_threads_increment_without_losing_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = Arc::new(dir.path().join("counter"));
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let path = path.clone();
            // Every level must serialise updates the same way.
            let level = [Durability::Full, Durability::Consistent, Durability::None][i % 3];
            thread::spawn(move || {
                let opts = Options::new().durability(level);
                for _ in 0..500 {
                    increment(&path, &opts);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(fs::read_to_string(&*path).unwrap(), "4000");
}

/// A monotonic clock shared by all processes on the machine, in nanoseconds.
fn now_ns() -> u128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u128 * 1_000_000_000 + ts.tv_nsec as u128
}

/// Takes the lock `rounds` times in random modes, and appends one line per section to `log`:
/// mode, enter and leave time, taken just inside the section so a recorded interval always
/// lies within the real one.
fn log_sections(path: &Path, log: &Path, rounds: u64, seed_var: &str) {
    let mut rng = Rng::from_env(seed_var);
    let mut out = OpenOptions::new()
        .append(true)
        .create(true)
        .open(log)
        .unwrap();
    for _ in 0..rounds {
        let mode = if rng.below(2) == 0 {
            LockMode::Shared
        } else {
            LockMode::Exclusive
        };
        let guard = lock::acquire(path, mode, None).unwrap();
        let enter = now_ns();
        thread::sleep(Duration::from_micros(500 + rng.below(1500)));
        let leave = now_ns();
        drop(guard);
        let m = if mode == LockMode::Shared { 'S' } else { 'X' };
        // One write of a short line with O_APPEND: lines never interleave.
        out.write_all(format!("{m} {enter} {leave}\n").as_bytes())
            .unwrap();
    }
}

#[test]
fn exclusive_sections_never_overlap_and_shared_ones_do() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.json");
    let log = dir.path().join("sections.log");
    let children: Vec<_> = (0..4)
        .map(|i| {
            spawn_child(
                "child_entry",
                "sections",
                &[
                    ("TARGET", path.display().to_string()),
                    ("LOG", log.display().to_string()),
                    ("SEED", (i * 7919 + 1).to_string()),
                ],
            )
        })
        .collect();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (path, log) = (path.clone(), log.clone());
            thread::spawn(move || log_sections(&path, &log, 60, "DURAFILE_SECTIONS_SEED"))
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for c in children {
        assert!(c.finish().0.success());
    }

    let text = fs::read_to_string(&log).unwrap();
    let mut sections: Vec<(char, u128, u128)> = text
        .lines()
        .map(|l| {
            let mut f = l.split(' ');
            let m = f.next().unwrap().chars().next().unwrap();
            (
                m,
                f.next().unwrap().parse().unwrap(),
                f.next().unwrap().parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(sections.len(), 4 * 60 + 4 * 60);
    sections.sort_by_key(|s| s.1);
    let mut shared_overlaps = 0;
    for (i, a) in sections.iter().enumerate() {
        for b in sections[i + 1..].iter().take_while(|b| b.1 < a.2) {
            assert!(
                a.0 == 'S' && b.0 == 'S',
                "overlapping sections {a:?} and {b:?}: an exclusive lock was shared"
            );
            shared_overlaps += 1;
        }
    }
    assert!(
        shared_overlaps > 0,
        "shared holders never overlapped: shared acts exclusive"
    );
}

#[test]
fn a_waiter_sees_the_content_its_predecessor_renamed_in() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    durafile::write(&path, "v1", &Options::new()).unwrap();

    // Hold the lock with a replace in flight, start a waiting updater, then rename.
    let mut file = AtomicFile::new(&path, &Options::new()).unwrap();
    file.write_all(b"v2").unwrap();
    let mut child = spawn_child(
        "child_entry",
        "append",
        &[("TARGET", path.display().to_string())],
    );
    child.wait_for("waiting");
    thread::sleep(Duration::from_millis(200));
    file.commit().unwrap();

    let (status, said) = child.finish();
    assert!(status.success());
    assert_eq!(
        heard(&said).last(),
        Some("saw v2"),
        "the waiter read a stale inode"
    );
    assert_eq!(fs::read_to_string(&path).unwrap(), "v2+");
}

#[test]
fn timeout_fails_in_time_and_a_killed_holder_frees_the_lock_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let mut holder = spawn_child(
        "child_entry",
        "hold",
        &[("TARGET", path.display().to_string())],
    );
    holder.wait_for("holding");

    let start = Instant::now();
    let err = lock::acquire(&path, LockMode::Shared, Some(Duration::from_millis(200))).unwrap_err();
    let waited = start.elapsed();
    let Error::LockTimeout {
        waited: reported,
        ref lock_file,
        ..
    } = err
    else {
        panic!("expected a timeout, got {err}");
    };
    assert!(waited >= Duration::from_millis(200) && reported >= Duration::from_millis(200));
    assert_eq!(lock_file, &dir.path().join(".state.json.lock"));
    let msg = err.to_string();
    assert!(
        msg.contains("state.json") && msg.contains("still held elsewhere"),
        "{msg}"
    );

    let err =
        durafile::write(&path, "x", &Options::new().lock_timeout(Duration::ZERO)).unwrap_err();
    assert!(matches!(err, Error::LockTimeout { .. }));
    assert!(!path.exists(), "a write that timed out wrote nothing");

    holder.kill();
    // No waiting at all: the kernel released the dead holder's lock.
    assert!(
        lock::try_acquire(&path, LockMode::Exclusive)
            .unwrap()
            .is_some()
    );
}

#[test]
fn a_path_can_be_locked_before_it_exists() {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("not-yet.json");
    let guard = lock::acquire(&path, LockMode::Exclusive, None).unwrap();
    assert!(!path.exists());
    drop(guard);
    durafile::write(&path, "now", &Options::new()).unwrap();
}

#[test]
fn shared_reads_wait_for_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    durafile::write(&path, "old", &Options::new()).unwrap();
    let mut file = AtomicFile::new(&path, &Options::new()).unwrap();
    file.write_all(b"new").unwrap();
    let p = path.clone();
    let reader =
        thread::spawn(move || durafile::read(&p, &Options::new().lock_reads(true)).unwrap());
    thread::sleep(Duration::from_millis(100));
    // An unlocked read does not wait and still sees a complete version.
    assert_eq!(durafile::read(&path, &Options::new()).unwrap(), b"old");
    file.commit().unwrap();
    assert_eq!(reader.join().unwrap(), b"new");
}

#[test]
#[ignore = "entry point of the child processes that other tests start"]
fn child_entry() {
    let target = PathBuf::from(std::env::var("TARGET").unwrap());
    match common::role().as_deref() {
        Some("sections") => {
            let log = PathBuf::from(std::env::var("LOG").unwrap());
            log_sections(&target, &log, 60, "SEED");
        }
        Some("append") => {
            say("waiting");
            durafile::update(&target, &Options::new(), |current| {
                let mut seen = current.unwrap().to_vec();
                say(format!("saw {}", String::from_utf8_lossy(&seen)));
                seen.push(b'+');
                Ok::<_, Error>(seen)
            })
            .unwrap();
        }
        Some("hold") => {
            let _guard = lock::acquire(&target, LockMode::Exclusive, None).unwrap();
            say("holding");
            thread::sleep(Duration::from_secs(3600));
        }
        other => panic!("unknown role {other:?}"),
    }
}

/// A lock inherited from a parent (here: a descriptor of the holder's open file description,
/// used from another thread) is adopted only with proof: the descriptor is open on this
/// path's lock file, and the flock succeeds at once through it. Anything else is refused at
/// once, never waited for.
#[test]
fn an_inherited_lock_is_adopted_only_with_proof() {
    use std::os::fd::{AsFd, OwnedFd};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let other = dir.path().join("other.json");
    let holder = lock::acquire(&path, LockMode::Exclusive, None).unwrap();
    let lock_file = holder.lock_file().to_path_buf();
    let adopt = |fd: OwnedFd, on: PathBuf| {
        thread::spawn(move || lock::adopt_inherited(&on, fd, LockMode::Exclusive))
            .join()
            .unwrap()
    };
    // The same open file description: adopted, and a write under it needs no second lock.
    let inherited = holder.as_fd().try_clone_to_owned().unwrap();
    let adopted = adopt(inherited, path.clone()).unwrap();
    let mut file = AtomicFile::with_held_lock(&path, &Options::new(), adopted).unwrap();
    file.write_all(b"under the parent's lock").unwrap();
    file.commit().unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"under the parent's lock");
    // Another open of the lock file: the flock would block, so it is refused at once.
    let start = Instant::now();
    let fresh: OwnedFd = fs::File::open(&lock_file).unwrap().into();
    let err = adopt(fresh, path.clone()).unwrap_err();
    assert!(
        err.to_string()
            .contains("not through the inherited descriptor"),
        "{err}"
    );
    assert!(start.elapsed() < Duration::from_secs(5));
    // A descriptor of another file, or another path's lock: refused.
    let wrong: OwnedFd = fs::File::open(dir.path()).unwrap().into();
    let err = adopt(wrong, path.clone()).unwrap_err();
    assert!(
        err.to_string().contains("not open on the lock file"),
        "{err}"
    );
    let inherited = holder.as_fd().try_clone_to_owned().unwrap();
    let err = adopt(inherited, other.clone()).unwrap_err();
    assert!(
        err.to_string().contains("not open on the lock file"),
        "{err}"
    );
    // A write needs this path's exclusive lock.
    drop(holder);
    let shared = lock::acquire(&path, LockMode::Shared, None).unwrap();
    let err = AtomicFile::with_held_lock(&path, &Options::new(), shared).unwrap_err();
    assert!(err.to_string().contains("exclusive"), "{err}");
    let elsewhere = lock::acquire(&other, LockMode::Exclusive, None).unwrap();
    let err = AtomicFile::with_held_lock(&path, &Options::new(), elsewhere).unwrap_err();
    assert!(err.to_string().contains("writing needs"), "{err}");
    assert_eq!(fs::read(&path).unwrap(), b"under the parent's lock");
    assert!(common::temp_files(dir.path()).is_empty());
}
