//! durafile against the floor and its peers, side by side in one process (`cargo bench`).
//!
//! - `replace_1KiB/<level>`: a 1 KiB JSON replace; the floor does the same syscalls raw
//!   (create, write, fsync, rename, fsync of the directory, as the level asks); at `full`
//!   also with a checksum sidecar.
//! - `group_commit_1000x1KiB`: the batch processor against 1000 single durable writes.
//! - `verify_256MiB`: checksum verification against `sha256sum`.
//!
//! Large streamed writes are timed in a standalone process (`benches/machine.rs`), where
//! criterion's own memory does not blur the peak RSS. `scripts/bench.sh` runs every bench
//! several times and rewrites BENCHMARKS.md's tables (`benches/tables.py`) as ratios with
//! their run-to-run range.

use std::fs::{self, File, OpenOptions};
use std::hint::black_box;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use durafile::batch::{BatchProcessor, Op};
use durafile::{AtomicFile, Durability, FileManager, Options};

/// 1 KiB of valid JSON.
fn payload() -> Vec<u8> {
    let items = vec![r#"{"sku":"A-1041","qty":12}"#; 20].join(",");
    let mut json = format!(r#"{{"items":[{items}],"pad":""}}"#);
    let pad = 1024 - json.len();
    json.insert_str(json.len() - 2, &"x".repeat(pad));
    assert_eq!(json.len(), 1024);
    serde_json::from_str::<serde_json::Value>(&json).expect("valid JSON");
    json.into_bytes()
}

/// The floor: the syscalls of a durable replace, nothing else.
fn floor(dir: &Path, target: &Path, data: &[u8], level: Durability) {
    let temp = dir.join(".floor.tmp");
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .unwrap();
    f.write_all(data).unwrap();
    if level != Durability::None {
        f.sync_all().unwrap();
    }
    fs::rename(&temp, target).unwrap();
    if level == Durability::Full {
        File::open(dir).unwrap().sync_all().unwrap();
    }
}

fn replace(c: &mut Criterion) {
    let data = payload();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for level in [Durability::Full, Durability::Consistent, Durability::None] {
        let mut group = c.benchmark_group(format!("replace_1KiB/{level}"));
        group
            .sample_size(20)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3));
        group.throughput(Throughput::Elements(1));
        let target = d.join(format!("floor-{level}.json"));
        group.bench_function("floor", |b| b.iter(|| floor(d, &target, &data, level)));
        // The floor plus what no-lost-update costs: opening and flocking a lock file.
        let lock = d.join(format!(".floor-{level}.lock"));
        group.bench_function("floor_with_flock", |b| {
            b.iter(|| {
                let held = File::options()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&lock)
                    .unwrap();
                held.lock().unwrap();
                floor(d, &target, &data, level);
            })
        });
        let target = d.join(format!("durafile-{level}.json"));
        let opts = Options::new().durability(level);
        group.bench_function("durafile", |b| {
            b.iter(|| durafile::write(&target, &data, &opts).unwrap())
        });
        if level == Durability::Full {
            let target = d.join("durafile-checksum.json");
            let opts = opts.clone().checksum(true);
            group.bench_function("durafile_checksum", |b| {
                b.iter(|| durafile::write(&target, &data, &opts).unwrap())
            });
            let target = d.join("atomicwrites.json");
            group.bench_function("atomicwrites", |b| {
                b.iter(|| {
                    let file = atomicwrites::AtomicFile::new(
                        &target,
                        atomicwrites::OverwriteBehavior::AllowOverwrite,
                    );
                    file.write(|f| f.write_all(&data)).unwrap();
                })
            });
            let target = d.join("atomic-write-file.json");
            group.bench_function("atomic-write-file", |b| {
                b.iter(|| {
                    let mut file = atomic_write_file::AtomicWriteFile::open(&target).unwrap();
                    file.write_all(&data).unwrap();
                    file.commit().unwrap();
                })
            });
            let target = d.join("tempfile.json");
            group.bench_function("tempfile", |b| {
                b.iter(|| {
                    let mut tmp = tempfile::NamedTempFile::new_in(d).unwrap();
                    tmp.write_all(&data).unwrap();
                    tmp.as_file().sync_all().unwrap();
                    tmp.persist(&target).unwrap();
                    File::open(d).unwrap().sync_all().unwrap();
                })
            });
        }
        group.finish();
    }
}

/// Rewrites 1000 existing documents (the steady state of an application's data directory:
/// documents and lock files exist), one durable write at a time or as one batch.
fn group_commit(c: &mut Criterion) {
    let data: serde_json::Value = serde_json::from_slice(&payload()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let paths: Vec<_> = (0..1000)
        .map(|i| dir.path().join(format!("d{i}.json")))
        .collect();
    let files = FileManager::new(Options::new());
    for path in &paths {
        files.write_json_file(path, &data).unwrap();
    }
    let mut group = c.benchmark_group("group_commit_1000x1KiB");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Elements(1000));
    group.bench_function("single_writes", |b| {
        b.iter(|| {
            for path in &paths {
                files.write_json_file(path, &data).unwrap();
            }
        })
    });
    // `None`: the default, four workers per CPU.
    for workers in [None, Some(2)] {
        let name = workers.map_or("default".to_owned(), |n| n.to_string());
        group.bench_function(format!("batch_processor_{name}_workers"), |b| {
            b.iter(|| {
                let ops = paths
                    .iter()
                    .map(|path| Op::Write {
                        path: path.clone(),
                        value: data.clone(),
                    })
                    .collect();
                let processor = BatchProcessor::new(files.clone());
                let processor = match workers {
                    Some(n) => processor.workers(n),
                    None => processor,
                };
                let report = processor.run(ops);
                assert_eq!(report.applied(), 1000);
            })
        });
    }
    group.finish();
}

fn verify(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.bin");
    let chunk = vec![0xa5_u8; 1 << 20];
    let mut f = AtomicFile::new(&path, &Options::new().checksum(true)).unwrap();
    for _ in 0..256 {
        f.write_all(&chunk).unwrap();
    }
    f.commit().unwrap();
    let mut group = c.benchmark_group("verify_256MiB");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Bytes(256 << 20));
    group.bench_function("durafile", |b| {
        b.iter(|| black_box(durafile::checksum::verify(&path).unwrap()))
    });
    group.bench_function("sha256sum", |b| {
        b.iter(|| {
            let out = Command::new("sha256sum").arg(&path).output().unwrap();
            assert!(out.status.success());
        })
    });
    group.finish();
}

criterion_group!(benches, replace, group_commit, verify);
criterion_main!(benches);
