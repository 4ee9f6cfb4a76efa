//! The crash-state checker: records what durafile does (with the `crash-model` feature),
//! builds every state a power loss may leave under the persistence model in [`model`], and
//! checks durafile's documented promises in each one. Mutations (deliberate bugs switched on
//! through `durafile::crash_record::mutate`) prove that it finds a broken protocol.
//!
//! Run with `cargo test -p durafile --features crash-model --test crash_model`.

mod model;

use std::path::Path;
use std::sync::Mutex;

use durafile::batch::{BatchProcessor, Op};
use durafile::checksum::{self, Verification};
use durafile::crash_record::{self, Mutation, Trace};
use durafile::migrate::Migrator;
use durafile::{DataHandler, Durability, FileManager, Options, StateManager};
use model::CrashState;
use serde_json::{Value, json};

/// The recorder and the mutations are process-wide: one scenario at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const LEVELS: [Durability; 3] = [Durability::Full, Durability::Consistent, Durability::None];

fn opts(level: Durability, sum: bool) -> Options {
    Options::new().durability(level).checksum(sum)
}

/// Runs `setup` (its result taken as durable), then records `body`.
fn record(setup: impl FnOnce(&Path), body: impl FnOnce(&Path)) -> (tempfile::TempDir, Trace) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    setup(&root);
    crash_record::start(&root).unwrap();
    body(&root);
    (dir, crash_record::stop())
}

/// Checks `check` in every crash state of `trace`; returns the failures, described.
fn explore(
    name: &str,
    level: Durability,
    trace: &Trace,
    check: impl Fn(&Path, &CrashState) -> Result<(), String>,
) -> Vec<String> {
    let scratch = tempfile::tempdir().unwrap();
    let at = scratch.path().join("s");
    let start = std::time::Instant::now();
    // `none` promises nothing about a power loss: only the state a SIGKILL leaves is checked.
    let states = model::crash_states(trace, level == Durability::None);
    let mut failures: Vec<String> = model::lock_violations(trace)
        .into_iter()
        .map(|v| format!("a lock file was lost: {v}"))
        .collect();
    for state in &states {
        model::materialise(state, &at);
        if let Err(why) = check(&at, state) {
            failures.push(format!(
                "after event {} ({} marks; {}): {why}",
                state.point,
                state.marks.len(),
                state.lost
            ));
        }
    }
    println!(
        "{name}: {} events, {} crash states, {} failures, {:.1?}",
        trace.events.len(),
        states.len(),
        failures.len(),
        start.elapsed()
    );
    for f in failures.iter().take(3) {
        println!("  {f}");
    }
    failures
}

/// Which version `content` is, by the `"n"` its JSON holds; `Err` when it is not whole.
fn json_n(content: &[u8]) -> Result<u64, String> {
    serde_json::from_slice::<Value>(content)
        .ok()
        .and_then(|v| v["n"].as_u64())
        .ok_or_else(|| format!("not a whole version: {:?}", preview(content)))
}

fn preview(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(&b[..b.len().min(40)]).into_owned();
    format!("{s}… ({} bytes)", b.len())
}

/// A version `n` of a document, `pad` bytes of padding making it span pages.
fn version(n: u64, pad: usize) -> Vec<u8> {
    serde_json::to_vec(&json!({"n": n, "pad": "x".repeat(pad)})).unwrap()
}

/// The promise for one file whose versions are numbered: at `full`, the last acknowledged
/// one or a later one; at `consistent`, a whole one no newer than the one in flight; at
/// `none`, only what a SIGKILL leaves. With checksums, the file verifies against its
/// sidecar (no false alarm), before and after recovery.
fn check_file(
    dir: &Path,
    state: &CrashState,
    rel: &str,
    first: Option<u64>,
    level: Durability,
    sum: bool,
) -> Result<(), String> {
    if level == Durability::None && !state.kill {
        return Ok(());
    }
    let acked = first.unwrap_or(0) + state.count("ack") as u64;
    let found = match state.file(rel) {
        None if first.is_none() && (level != Durability::Full || state.count("ack") == 0) => {
            return Ok(());
        }
        None => return Err(format!("{rel} is gone")),
        Some(content) => json_n(content)?,
    };
    if found > acked + 1 {
        return Err(format!(
            "{rel} holds version {found}, never written by then"
        ));
    }
    if level == Durability::Full && found < acked {
        return Err(format!(
            "{rel} holds version {found}; version {acked} was acknowledged"
        ));
    }
    if let Some(first) = first
        && found < first
    {
        return Err(format!("{rel} went back to {found}"));
    }
    if sum {
        verify(&dir.join(rel))?;
        durafile::recover::recover(dir, false).map_err(|e| format!("recover: {e}"))?;
        match verify(&dir.join(rel))? {
            Verification::Match { pending: false, .. } => {}
            other => return Err(format!("after recovery: {other:?}")),
        }
        if json_n(&std::fs::read(dir.join(rel)).unwrap())? != found {
            return Err("recovery changed the content".into());
        }
    }
    Ok(())
}

fn verify(path: &Path) -> Result<Verification, String> {
    match checksum::verify(path) {
        Ok(Verification::NoChecksum) => Err(format!("{} has no checksum", path.display())),
        Ok(v) => Ok(v),
        Err(e) => Err(format!("false alarm: {e}")),
    }
}

/// Three replaces of one file, the second spanning pages.
fn writes(level: Durability, sum: bool, existing: bool) -> Vec<String> {
    let o = opts(level, sum);
    let (_dir, trace) = record(
        |root| {
            if existing {
                durafile::write(root.join("t.json"), version(0, 10), &o).unwrap();
            }
        },
        |root| {
            for (n, pad) in [(1, 100), (2, 10_000), (3, 5)] {
                durafile::write(root.join("t.json"), version(n, pad), &o).unwrap();
                crash_record::mark("ack");
            }
        },
    );
    let first = existing.then_some(0);
    let name = format!("write {level} checksum={sum} existing={existing}");
    explore(&name, level, &trace, |dir, s| {
        check_file(dir, s, "t.json", first, level, sum)
    })
}

#[test]
fn writes_at_every_level() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut failures = Vec::new();
    for level in LEVELS {
        for sum in [false, true] {
            for existing in [false, true] {
                failures.extend(writes(level, sum, existing));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Updates through `durafile::update` and `FileManager::update_json_file`.
fn updates(level: Durability, sum: bool) -> Vec<String> {
    let o = opts(level, sum);
    let (_dir, trace) = record(
        |root| durafile::write(root.join("c.json"), version(0, 0), &o).unwrap(),
        |root| {
            for _ in 0..2 {
                durafile::update(root.join("c.json"), &o, |cur| {
                    let n = json_n(cur.unwrap()).unwrap();
                    Ok::<_, durafile::Error>(version(n + 1, 5000))
                })
                .unwrap();
                crash_record::mark("ack");
            }
            FileManager::new(o.clone())
                .update_json_file(root.join("c.json"), |v: &mut Value| {
                    v["n"] = json!(v["n"].as_u64().unwrap() + 1);
                    Ok::<_, durafile::Error>(())
                })
                .unwrap();
            crash_record::mark("ack");
        },
    );
    explore(
        &format!("update {level} checksum={sum}"),
        level,
        &trace,
        |dir, s| check_file(dir, s, "c.json", Some(0), level, sum),
    )
}

#[test]
fn updates_at_every_level() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut failures = Vec::new();
    for level in LEVELS {
        for sum in [false, true] {
            failures.extend(updates(level, sum));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// A batch over three documents, one of them new: each document whole (a batch is not a
/// transaction across files), all new once the batch returned at `full`.
fn batch(level: Durability, sum: bool) -> Vec<String> {
    let o = opts(level, sum);
    let (_dir, trace) = record(
        |root| {
            for doc in ["a.json", "b.json"] {
                durafile::write(root.join(doc), version(0, 0), &o).unwrap();
            }
        },
        |root| {
            let ops = vec![
                Op::Write {
                    path: root.join("a.json"),
                    value: json!({"n": 1}),
                },
                Op::Merge {
                    path: root.join("b.json"),
                    patch: json!({"n": 1}),
                },
                Op::Write {
                    path: root.join("c.json"),
                    value: json!({"n": 1}),
                },
            ];
            let report = BatchProcessor::new(FileManager::new(o.clone()))
                .workers(2)
                .run(ops);
            assert_eq!(report.applied(), 3);
            crash_record::mark("ack");
        },
    );
    explore(
        &format!("batch {level} checksum={sum}"),
        level,
        &trace,
        |dir, s| {
            check_file(dir, s, "a.json", Some(0), level, sum)?;
            check_file(dir, s, "b.json", Some(0), level, sum)?;
            check_file(dir, s, "c.json", None, level, sum)
        },
    )
}

#[test]
fn batches_at_every_level() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut failures = Vec::new();
    for level in LEVELS {
        for sum in [false, true] {
            failures.extend(batch(level, sum));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// A directory migration of three documents: after recovery, all old or all new, and all
/// new once it returned at `full`.
fn migration(level: Durability, sum: bool) -> Vec<String> {
    let o = opts(level, sum);
    let (_dir, trace) = record(
        |root| {
            let docs = DataHandler::open(root.join("docs"), FileManager::new(o.clone())).unwrap();
            for key in ["k1", "k2", "k3"] {
                docs.save(key, &json!({"name": key})).unwrap();
            }
        },
        |root| {
            let docs = DataHandler::open(root.join("docs"), FileManager::new(o.clone())).unwrap();
            let m = Migrator::new().step(1, |mut d| {
                d["tags"] = json!([]);
                Ok(d)
            });
            m.migrate_dir(&docs, None, false, &|_, _, _| {}).unwrap();
            crash_record::mark("ack");
        },
    );
    explore(
        &format!("migration {level} checksum={sum}"),
        level,
        &trace,
        |dir, s| {
            if level == Durability::None && !s.kill {
                return Ok(());
            }
            let docs = DataHandler::open(dir.join("docs"), FileManager::new(o.clone()))
                .map_err(|e| e.to_string())?;
            Migrator::recover_dir(&docs).map_err(|e| format!("recover_dir: {e}"))?;
            let mut versions = Vec::new();
            for key in ["k1", "k2", "k3"] {
                let doc: Value = docs.load(key).map_err(|e| format!("{key}: {e}"))?;
                versions.push(doc["schema_version"].as_u64().unwrap_or(0));
            }
            if versions.iter().any(|v| *v != versions[0]) {
                return Err(format!("a mix of versions after recovery: {versions:?}"));
            }
            if level == Durability::Full && s.count("ack") == 1 && versions[0] != 1 {
                return Err("the migration returned but was undone".into());
            }
            Ok(())
        },
    )
}

#[test]
fn migrations_at_every_level() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut failures = Vec::new();
    for level in LEVELS {
        for sum in [false, true] {
            failures.extend(migration(level, sum));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// State saves with pruning (two generations kept): a state always loads, without falling
/// back past a damaged generation, and at `full` it is the last one saved or later.
fn state_saves(level: Durability, sum: bool) -> Vec<String> {
    let o = opts(level, sum);
    let states = |root: &Path| {
        StateManager::open(root.join("st"), FileManager::new(o.clone()))
            .unwrap()
            .keep(2)
    };
    let (_dir, trace) = record(
        |root| {
            states(root).save_current_state(&json!({"n": 1})).unwrap();
        },
        |root| {
            for n in 2..=4 {
                assert_eq!(
                    states(root).save_current_state(&json!({"n": n})).unwrap(),
                    n
                );
                crash_record::mark("ack");
            }
        },
    );
    explore(
        &format!("state {level} checksum={sum}"),
        level,
        &trace,
        |dir, s| {
            if level == Durability::None && !s.kill {
                return Ok(());
            }
            let loaded = states(dir)
                .load_current_state::<Value>()
                .map_err(|e| format!("load: {e}"))?
                .ok_or("no state at all")?;
            if loaded.is_fallback() {
                return Err(format!("fell back past {:?}", loaded.skipped));
            }
            let n = loaded.state["n"].as_u64().unwrap();
            if n != loaded.generation {
                return Err(format!("generation {} holds {n}", loaded.generation));
            }
            let acked = 1 + s.count("ack") as u64;
            if level == Durability::Full && n < acked {
                return Err(format!("state {n} loaded; {acked} was acknowledged"));
            }
            Ok(())
        },
    )
}

#[test]
fn state_saves_at_every_level() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut failures = Vec::new();
    for level in LEVELS {
        for sum in [false, true] {
            failures.extend(state_saves(level, sum));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Threads updating one file at once share commits (group commit). Full and consistent
/// callers mixed: in every crash state the file is whole and holds at least every update a
/// `full` caller got acknowledged. Then `full` and `none` callers mixed: every `full`
/// acknowledgement follows an fsync of the content and of the directory after its rename.
fn group_commit(levels: [Durability; 2]) -> Vec<String> {
    let (_dir, trace) = record(
        |root| durafile::write(root.join("g.json"), version(0, 0), &Options::new()).unwrap(),
        |root| {
            let path = root.join("g.json");
            let start = std::sync::Barrier::new(4);
            std::thread::scope(|s| {
                for t in 0..4 {
                    let (path, start) = (&path, &start);
                    s.spawn(move || {
                        let level = levels[t % 2];
                        start.wait();
                        for _ in 0..6 {
                            let mut got = 0;
                            durafile::update(path, &opts(level, false), |cur| {
                                got = json_n(cur.unwrap()).unwrap() + 1;
                                Ok::<_, durafile::Error>(version(got, 300))
                            })
                            .unwrap();
                            crash_record::mark(format!("{level} {got}"));
                        }
                    });
                }
            });
        },
    );
    let renames = trace
        .events
        .iter()
        .filter(
            |e| matches!(e, crash_record::Event::Rename { to, .. } if to == Path::new("g.json")),
        )
        .count();
    let mut failures = Vec::new();
    if renames >= 24 {
        failures.push(format!(
            "24 updates made {renames} renames: no group commit"
        ));
    }
    let full_acked = |s: &CrashState| {
        s.marks
            .iter()
            .filter_map(|m| m.strip_prefix("full ")?.parse::<u64>().ok())
            .max()
            .unwrap_or(0)
    };
    if levels[1] == Durability::None {
        failures.extend(full_acks_follow_fsyncs(&trace));
        return failures;
    }
    let name = format!("group commit {} + {}", levels[0], levels[1]);
    failures.extend(explore(&name, levels[1], &trace, |_, s| {
        let n = json_n(s.file("g.json").ok_or("g.json is gone")?)?;
        match full_acked(s) {
            acked if n < acked => Err(format!("holds {n}; {acked} was acknowledged at full")),
            _ => Ok(()),
        }
    }));
    failures
}

/// Checks on the trace itself that each `full` acknowledgement of version N comes after the
/// commit that carried it (the first rename of a version ≥ N), whose content was fsynced
/// before the rename and whose directory was fsynced after it. (A later `none` commit may
/// still replace it with unsynced content: that is what mixing levels on one file means.)
fn full_acks_follow_fsyncs(trace: &Trace) -> Vec<String> {
    use crash_record::Event;
    let mut failures = Vec::new();
    let mut content: std::collections::HashMap<u64, (Vec<u8>, bool)> = Default::default();
    let mut names: std::collections::HashMap<std::path::PathBuf, u64> = Default::default();
    // Each version published, whether its data was fsynced, and its entry.
    let mut published: Vec<(u64, bool, bool)> = Vec::new();
    for e in &trace.events {
        match e {
            Event::Create { path, id } => {
                names.insert(path.clone(), *id);
            }
            Event::Data { id, content: c } => {
                // A snapshot of what an fsync already covered keeps it covered.
                let synced = content.get(id).is_some_and(|(old, s)| *s && old == c);
                content.insert(*id, (c.clone(), synced));
            }
            Event::Fsync { id } => {
                if let Some(c) = content.get_mut(id) {
                    c.1 = true;
                }
            }
            Event::Rename { from, to } if to == Path::new("g.json") => {
                let id = names[from];
                let (bytes, synced) = &content[&id];
                published.push((json_n(bytes).unwrap(), *synced, false));
            }
            Event::DirFsync { .. } => {
                for p in &mut published {
                    p.2 = true;
                }
            }
            Event::Mark(m) => {
                let Some(n) = m.strip_prefix("full ") else {
                    continue;
                };
                let n: u64 = n.parse().unwrap();
                match published.iter().find(|p| p.0 >= n) {
                    Some((_, true, true)) => {}
                    other => failures.push(format!("full ack of {n}, its commit: {other:?}")),
                }
            }
            _ => {}
        }
    }
    failures
}

#[test]
fn group_commit_acknowledges_each_caller_at_its_level() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut failures = group_commit([Durability::Full, Durability::Consistent]);
    failures.extend(group_commit([Durability::Full, Durability::None]));
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Runs `f` with `m` switched on, and off again even if `f` panics.
fn mutated<T>(m: Mutation, f: impl FnOnce() -> T) -> T {
    struct Off;
    impl Drop for Off {
        fn drop(&mut self) {
            crash_record::mutate(None);
        }
    }
    let _off = Off;
    crash_record::mutate(Some(m));
    f()
}

#[test]
fn a_missing_directory_fsync_is_found() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let failures = mutated(Mutation::SkipDirSync, || {
        writes(Durability::Full, false, true)
    });
    assert!(
        failures.iter().any(|f| f.contains("was acknowledged")),
        "{failures:#?}"
    );
}

#[test]
fn a_data_fsync_after_the_rename_is_found() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let failures = mutated(Mutation::SyncAfterRename, || {
        writes(Durability::Consistent, false, true)
    });
    assert!(
        failures.iter().any(|f| f.contains("not a whole version")),
        "{failures:#?}"
    );
}

#[test]
fn a_reordered_checksum_protocol_is_found() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let failures = mutated(Mutation::ChecksumFinishFirst, || {
        writes(Durability::Full, true, true)
    });
    assert!(
        failures.iter().any(|f| f.contains("false alarm")),
        "{failures:#?}"
    );
}

/// The fsyncs, creates and renames of one replace of an existing file, as the `checksum`
/// module docs count them; a checksummed write also cuts its sidecar down (a snapshot with
/// no fsync after it, the trace's last event).
#[test]
fn each_kind_of_write_makes_the_documented_operations() {
    use crash_record::Event;
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let expected = [
        (Durability::Full, false, (2, 1, 1)),
        (Durability::Consistent, false, (1, 1, 1)),
        (Durability::None, false, (0, 1, 1)),
        (Durability::Full, true, (4, 2, 2)),
        (Durability::Consistent, true, (4, 2, 2)),
        (Durability::None, true, (0, 2, 2)),
    ];
    for (level, sum, counts) in expected {
        let o = opts(level, sum);
        let (_dir, trace) = record(
            |root| durafile::write(root.join("t.json"), version(0, 0), &o).unwrap(),
            |root| durafile::write(root.join("t.json"), version(1, 0), &o).unwrap(),
        );
        let count = |f: fn(&Event) -> bool| trace.events.iter().filter(|e| f(e)).count();
        let fsyncs = count(|e| matches!(e, Event::Fsync { .. } | Event::DirFsync { .. }));
        let creates = count(|e| matches!(e, Event::Create { .. }));
        let renames = count(|e| matches!(e, Event::Rename { .. }));
        let ctx = format!("{level} checksum={sum}: {:#?}", trace.events);
        assert_eq!((fsyncs, creates, renames), counts, "{ctx}");
        let shrunk = match trace.events.last() {
            Some(Event::Data { content, .. }) => content.iter().filter(|b| **b == b'\n').count(),
            _ => 0,
        };
        assert_eq!(shrunk, usize::from(sum), "{ctx}");
    }
}

/// The batch's own commit path (renames by the workers, one directory fsync per group) is
/// checked as closely as a single write's: each deliberate bug is found there too.
#[test]
fn a_batch_renaming_before_its_data_fsync_or_skipping_its_directory_fsync_is_found() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let failures = mutated(Mutation::SyncAfterRename, || {
        batch(Durability::Consistent, false)
    });
    assert!(
        failures.iter().any(|f| f.contains("not a whole version")),
        "{failures:#?}"
    );
    let failures = mutated(Mutation::SkipDirSync, || batch(Durability::Full, false));
    assert!(
        failures.iter().any(|f| f.contains("was acknowledged")),
        "{failures:#?}"
    );
}
