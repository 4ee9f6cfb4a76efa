//! A contended counter: 8 processes increment one counter for a fixed time, through
//! `durafile::update` at each durability level and through SQLite (WAL, one-row UPDATE per
//! transaction, `synchronous=FULL` and `NORMAL`), which is what a user would pick instead.
//!
//! Processes, not threads, because that is the contention durafile's lock is for; so this is
//! a plain `harness = false` bench that re-executes itself for its workers. Every worker of
//! every configuration runs in the same `cargo bench` process tree, one configuration after
//! another, and the table reports updates per second with the ratio to durafile `full`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use durafile::{Durability, Options};

const PROCESSES: usize = 8;
const SECONDS: f64 = 3.0;

fn main() {
    if let Ok(config) = std::env::var("DURAFILE_BENCH_WORKER") {
        let path = std::env::var("DURAFILE_BENCH_PATH").unwrap();
        print!("{}", worker(&config, Path::new(&path)));
        return;
    }
    // `cargo bench` passes `--bench`; a filter argument selects nothing here.
    let dir = tempfile::tempdir().unwrap();
    let configs = [
        "durafile-full",
        "durafile-consistent",
        "durafile-none",
        "sqlite-wal-full",
        "sqlite-wal-normal",
    ];
    let mut results = Vec::new();
    for config in configs {
        let path = dir.path().join(format!("{config}.db"));
        if config.starts_with("sqlite") {
            let db = rusqlite::Connection::open(&path).unwrap();
            db.execute_batch(
                "PRAGMA journal_mode=WAL; CREATE TABLE c(id INTEGER PRIMARY KEY, n INTEGER);
                 INSERT INTO c VALUES (1, 0);",
            )
            .unwrap();
        }
        let exe = std::env::current_exe().unwrap();
        // All eight at once: that is the contention.
        let workers: Vec<_> = (0..PROCESSES)
            .map(|_| {
                Command::new(&exe)
                    .env("DURAFILE_BENCH_WORKER", config)
                    .env("DURAFILE_BENCH_PATH", &path)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let mut total = 0u64;
        for w in workers {
            let out = w.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            total += String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse::<u64>()
                .unwrap();
        }
        let final_count = if config.starts_with("sqlite") {
            let db = rusqlite::Connection::open(&path).unwrap();
            db.query_row("SELECT n FROM c WHERE id = 1", [], |r| r.get::<_, i64>(0))
                .unwrap() as u64
        } else {
            std::fs::read_to_string(&path)
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        };
        assert_eq!(final_count, total, "{config} lost updates");
        results.push((config, total as f64 / SECONDS));
    }
    let base = results[0].1;
    println!("contended counter, {PROCESSES} processes, {SECONDS} s each");
    println!("{:<22}{:>14}{:>10}", "configuration", "updates/s", "ratio");
    for (config, rate) in &results {
        println!("{config:<22}{rate:>14.0}{:>10.2}", rate / base);
    }
}

/// One worker: increments for `SECONDS` and prints how many increments it made.
fn worker(config: &str, path: &Path) -> u64 {
    let end = Instant::now() + Duration::from_secs_f64(SECONDS);
    let mut done = 0;
    if let Some(sync) = config.strip_prefix("sqlite-wal-") {
        let db = rusqlite::Connection::open(path).unwrap();
        db.busy_timeout(Duration::from_secs(30)).unwrap();
        db.execute_batch(&format!("PRAGMA synchronous={sync};"))
            .unwrap();
        while Instant::now() < end {
            db.execute("UPDATE c SET n = n + 1 WHERE id = 1", [])
                .unwrap();
            done += 1;
        }
        return done;
    }
    let level: Durability = config.trim_start_matches("durafile-").parse().unwrap();
    let opts = Options::new().durability(level);
    while Instant::now() < end {
        durafile::update(path, &opts, |cur| {
            let n: u64 = cur.map_or(0, |b| {
                std::str::from_utf8(b).unwrap().trim().parse().unwrap()
            });
            Ok::<_, durafile::Error>((n + 1).to_string().into_bytes())
        })
        .unwrap();
        done += 1;
    }
    done
}
