//! A contended counter: 8 workers make 200 increments each of one counter, through
//! `durafile::update` and through SQLite (WAL, one-row UPDATE per transaction, a connection
//! per worker, `busy_timeout` 30 s, `synchronous=FULL` and `NORMAL`), which is what a user
//! would pick instead. Twice: 8 processes (the contention durafile's lock is for), and 8
//! threads of one process (where durafile's group commit shares fsyncs between threads).
//!
//! A plain `harness = false` bench that re-executes itself for its worker processes. Workers
//! start together at a set instant, so process start-up is not timed. Every run ends with
//! the exact count: the final value must be the number of increments made.
//!
//! For processes, two "floor" rows measure the physical floor of a rename-based update on
//! this machine in the same run: the same increments made with nothing but plain syscalls
//! (open and flock a lock file, read the counter, create a temp file, write, fsync, rename,
//! unlock, then fsync the directory for `full`), none of durafile's checks. What separates
//! the floor from SQLite is the file system (a create and a rename per update against an
//! append to one log); what separates durafile from the floor is durafile.
//!
//! Prints a table and, for `scripts/bench.sh`, one `RESULT mode configuration updates/s`
//! line per run. `DURAFILE_BENCH_UPDATES` changes the increments per worker.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use durafile::{Durability, Options};

const WORKERS: usize = 8;
const CONFIGS: [&str; 5] = [
    "durafile-full",
    "durafile-consistent",
    "durafile-none",
    "sqlite-wal-full",
    "sqlite-wal-normal",
];

/// Measured with processes only: the floor is the cost of the file system, which threads of
/// one process pay alike.
const FLOORS: [&str; 2] = ["floor-full", "floor-consistent"];

fn updates() -> u64 {
    std::env::var("DURAFILE_BENCH_UPDATES").map_or(200, |n| n.parse().unwrap())
}

fn main() {
    if let Ok(config) = std::env::var("DURAFILE_BENCH_WORKER") {
        let path = std::env::var("DURAFILE_BENCH_PATH").unwrap();
        let start: u128 = std::env::var("DURAFILE_BENCH_START")
            .unwrap()
            .parse()
            .unwrap();
        wait_until(start);
        worker(&config, Path::new(&path));
        println!("{}", now_ns());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut results = Vec::new();
    for mode in ["processes", "threads"] {
        let floors = if mode == "processes" {
            &FLOORS[..]
        } else {
            &[]
        };
        for &config in CONFIGS.iter().chain(floors) {
            let path = dir.path().join(format!("{mode}-{config}.db"));
            prepare(config, &path);
            let elapsed = match mode {
                "processes" => in_processes(config, &path),
                _ => in_threads(config, &path),
            };
            let total = WORKERS as u64 * updates();
            assert_eq!(
                final_count(config, &path),
                total,
                "{mode} {config} lost updates"
            );
            let rate = total as f64 / elapsed.as_secs_f64();
            println!("RESULT {mode} {config} {rate:.1}");
            results.push((mode, config, rate));
        }
    }
    println!(
        "\ncontended counter, {WORKERS} workers x {} increments",
        updates()
    );
    println!(
        "{:<10}{:<22}{:>12}{:>16}",
        "mode", "configuration", "updates/s", "vs SQLite FULL"
    );
    for (mode, config, rate) in &results {
        let sqlite = results
            .iter()
            .find(|(m, c, _)| m == mode && *c == "sqlite-wal-full")
            .unwrap()
            .2;
        println!("{mode:<10}{config:<22}{rate:>12.0}{:>16.2}", rate / sqlite);
    }
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn wait_until(ns: u128) {
    let now = now_ns();
    if ns > now {
        std::thread::sleep(Duration::from_nanos((ns - now) as u64));
    }
}

fn prepare(config: &str, path: &Path) {
    if config.starts_with("sqlite") {
        let db = rusqlite::Connection::open(path).unwrap();
        db.execute_batch(
            "PRAGMA journal_mode=WAL; CREATE TABLE c(id INTEGER PRIMARY KEY, n INTEGER);
             INSERT INTO c VALUES (1, 0);",
        )
        .unwrap();
    } else {
        durafile::write(path, b"0", &Options::new()).unwrap();
    }
}

fn final_count(config: &str, path: &Path) -> u64 {
    if config.starts_with("sqlite") {
        let db = rusqlite::Connection::open(path).unwrap();
        db.query_row("SELECT n FROM c WHERE id = 1", [], |r| r.get::<_, i64>(0))
            .unwrap() as u64
    } else {
        std::fs::read_to_string(path)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
}

/// Eight processes, started ahead and released at one instant; the time until the last
/// one finished.
fn in_processes(config: &str, path: &Path) -> Duration {
    let start = now_ns() + 300_000_000;
    let exe = std::env::current_exe().unwrap();
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            Command::new(&exe)
                .env("DURAFILE_BENCH_WORKER", config)
                .env("DURAFILE_BENCH_PATH", path)
                .env("DURAFILE_BENCH_START", start.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut last = 0;
    for w in workers {
        let out = w.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let done: u128 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        last = last.max(done);
    }
    Duration::from_nanos((last - start) as u64)
}

/// Eight threads of this process, each with its own connection for SQLite.
fn in_threads(config: &str, path: &Path) -> Duration {
    let barrier = std::sync::Barrier::new(WORKERS + 1);
    std::thread::scope(|s| {
        for _ in 0..WORKERS {
            s.spawn(|| {
                barrier.wait();
                worker(config, path);
            });
        }
        barrier.wait();
        let start = Instant::now();
        // The scope joins every worker before it returns.
        start
    })
    .elapsed()
}

/// One worker's increments.
fn worker(config: &str, path: &Path) {
    if let Some(sync) = config.strip_prefix("sqlite-wal-") {
        let db = rusqlite::Connection::open(path).unwrap();
        db.busy_timeout(Duration::from_secs(30)).unwrap();
        db.execute_batch(&format!("PRAGMA synchronous={sync};"))
            .unwrap();
        for _ in 0..updates() {
            db.execute("UPDATE c SET n = n + 1 WHERE id = 1", [])
                .unwrap();
        }
        return;
    }
    if let Some(level) = config.strip_prefix("floor-") {
        return floor_worker(path, level == "full");
    }
    let level: Durability = config.trim_start_matches("durafile-").parse().unwrap();
    let opts = Options::new().durability(level);
    for _ in 0..updates() {
        durafile::update(path, &opts, |cur| {
            let n: u64 = cur.map_or(0, |b| {
                std::str::from_utf8(b).unwrap().trim().parse().unwrap()
            });
            Ok::<_, durafile::Error>((n + 1).to_string().into_bytes())
        })
        .unwrap();
    }
}

/// The floor of one worker's increments: a locked read-modify-write with plain syscalls and
/// no checks. The lock file is opened and closed per update, as any lock that survives a
/// fork or an unlinked lock file must be; the directory fsync that makes the rename durable
/// runs after the unlock, as durafile's does.
fn floor_worker(path: &Path, sync_dir: bool) {
    let dir = path.parent().unwrap();
    let name = path.file_name().unwrap().to_string_lossy();
    let lock_path = dir.join(format!(".{name}.floor-lock"));
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    for _ in 0..updates() {
        let lock = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .unwrap();
        lock.lock().unwrap();
        let n: u64 = fs::read_to_string(path).unwrap().trim().parse().unwrap();
        let mut f = File::options()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .unwrap();
        f.write_all((n + 1).to_string().as_bytes()).unwrap();
        f.sync_all().unwrap();
        fs::rename(&temp, path).unwrap();
        drop(lock);
        if sync_dir {
            File::open(dir).unwrap().sync_all().unwrap();
        }
    }
}
