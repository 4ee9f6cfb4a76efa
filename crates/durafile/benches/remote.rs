//! Updates/s of one JSON counter by 8 processes through moto's S3 server on 127.0.0.1 (one
//! request at a time): durafile's compare-and-swap update, a naive GET-then-PUT (its lost
//! updates counted), and a local durafile update for scale, with the server's own request
//! latency measured in the same run. Prints a Markdown table; `scripts/bench-remote.sh`
//! puts it in BENCHMARKS.md.
//!
//! Needs DURAFILE_TEST_PYTHON (a Python with moto[server], as scripts/test.sh makes).

#[path = "../tests/common/s3.rs"]
#[allow(dead_code)]
mod s3;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use durafile::remote::Store;
use durafile::{Error, FileManager, Options};
use serde::{Deserialize, Serialize};

const PROCESSES: usize = 8;
const ROLE: &str = "DURAFILE_BENCH_ROLE";

#[derive(Debug, Default, Serialize, Deserialize)]
struct Counter {
    n: u64,
}

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        return worker(&role);
    }
    let Some(server) = s3::Server::start() else {
        std::process::exit(2)
    };
    let updates: u64 = std::env::var("DURAFILE_BENCH_UPDATES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    let bucket = server.bucket();
    let store = Store::with_config(&bucket, endpoint_config(&server.endpoint())).unwrap();
    let head = server.median_latency(&bucket, 101);
    let single = {
        let start = Instant::now();
        for _ in 0..50 {
            store
                .update("single.json", |_| Ok::<_, Error>(b"{}".to_vec()))
                .unwrap();
        }
        start.elapsed() / 50
    };
    let get = {
        let mut times: Vec<Duration> = (0..51)
            .map(|_| {
                let start = Instant::now();
                store.get("single.json", true).unwrap();
                start.elapsed()
            })
            .collect();
        times.sort();
        times[25]
    };
    println!("| what | updates | lost | updates/s |");
    println!("|---|---|---|---|");
    let dir = tempfile::tempdir().unwrap();
    for (name, role, target) in [
        (
            "durafile CAS update (`If-Match`)",
            "cas",
            format!("s3://{bucket}/cas.json"),
        ),
        (
            "naive GET then PUT",
            "naive",
            format!("s3://{bucket}/naive.json"),
        ),
        (
            "durafile local update (`full`)",
            "local",
            dir.path().join("local.json").display().to_string(),
        ),
    ] {
        let (acked, elapsed) = run(role, &target, updates, &server.endpoint());
        let files = FileManager::default();
        let total: Counter = if role == "local" {
            files.read_json_file(&target).unwrap()
        } else {
            let key = target.rsplit('/').next().unwrap();
            serde_json::from_slice(&store.read(key, false).unwrap()).unwrap()
        };
        let lost = acked - total.n;
        println!(
            "| {name} | {acked} | {lost} | {:.1} |",
            acked as f64 / elapsed.as_secs_f64()
        );
    }
    println!();
    println!(
        "Server latency in the same run: median GET through durafile's client {:.2} ms; median HEAD on a new connection {:.2} ms; one uncontended durafile update (GET + conditional PUT) {:.2} ms, so at most {:.0} updates/s one at a time.",
        ms(get),
        ms(head),
        ms(single),
        1.0 / single.as_secs_f64()
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn endpoint_config(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("aws_endpoint", endpoint.to_owned()),
        ("aws_access_key_id", "testing".to_owned()),
        ("aws_secret_access_key", "testing".to_owned()),
        ("aws_region", "us-east-1".to_owned()),
        ("aws_allow_http", "true".to_owned()),
    ]
}

/// Runs PROCESSES workers of `role` on `target`; the updates they acknowledged and the time.
fn run(role: &str, target: &str, updates: u64, endpoint: &str) -> (u64, Duration) {
    let start = Instant::now();
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .env(ROLE, role)
                .env("TARGET", target)
                .env("UPDATES", updates.to_string())
                .envs(s3::env_for(endpoint))
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut acked = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        acked += String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<u64>()
            .unwrap();
    }
    (acked, start.elapsed())
}

fn worker(role: &str) {
    let target = PathBuf::from(std::env::var("TARGET").unwrap());
    let updates: u64 = std::env::var("UPDATES").unwrap().parse().unwrap();
    let files = FileManager::new(Options::new());
    let increment = |c: &mut Counter| {
        c.n += 1;
        Ok::<_, Error>(())
    };
    for _ in 0..updates {
        match role {
            "cas" | "local" => files.update_json_file(&target, increment).unwrap(),
            "naive" => {
                let (store, key) = durafile::remote::locate_object(&target).unwrap();
                let mut c: Counter = store
                    .get(&key, false)
                    .unwrap()
                    .map_or_else(Counter::default, |b| serde_json::from_slice(&b).unwrap());
                c.n += 1;
                store.write(&key, &serde_json::to_vec(&c).unwrap()).unwrap();
            }
            other => panic!("unknown role {other}"),
        }
    }
    println!("{updates}");
}
