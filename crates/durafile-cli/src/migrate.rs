//! `durafile migrate`: the library's all-or-nothing directory migration, with steps that are
//! executables in a directory (`NNNN-description`, reading a document on stdin and writing
//! the migrated one on stdout; `#!/usr/bin/env -S jq -f` scripts work).

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use durafile::error::quote;
use durafile::migrate::{Migrator, StepError};
use durafile::{DataHandler, FileManager, Options};
use serde_json::Value;

use crate::failure::Failure;
use crate::{process, progress, signals};

pub struct Args<'a> {
    pub dir: &'a Path,
    pub migrations: &'a Path,
    pub to: Option<u64>,
    pub dry_run: bool,
    pub field: &'a str,
    pub pretty: bool,
    pub step_timeout: Duration,
}

pub fn run(args: Args) -> Result<ExitCode, Failure> {
    // A step runs in a process group of its own, out of reach of the terminal's Ctrl-C: a
    // signal to durafile is passed on to it.
    signals::install()?;
    let migrator = load_steps(args.migrations, args.step_timeout)?.field(args.field);
    let files = FileManager::new(Options::new()).pretty(args.pretty);
    let docs = DataHandler::open(args.dir, files)?;
    let total = docs.list()?.len() as u64;
    let bar = progress::bar(total, total >= 100, false);
    let report = migrator.migrate_dir(&docs, args.to, args.dry_run, &|phase, done, all| {
        if let Some(bar) = &bar {
            bar.set_length(all as u64);
            bar.set_position(done as u64);
            bar.set_message(phase.to_owned());
        }
    });
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let report = report?;
    let mut out = io::stdout().lock();
    let mut say = |line: String| {
        writeln!(out, "{line}").map_err(|e| Failure::new(format!("write standard output: {e}")))
    };
    if report.resumed {
        say(if args.dry_run {
            "an interrupted migration is pending: a real run finishes or undoes it first"
        } else {
            "finished or undid an interrupted migration first"
        }
        .to_owned())?;
    }
    for skipped in &report.skipped {
        say(format!(
            "SKIPPED {}: {}; it was left as it is",
            quote(&skipped.path),
            skipped.reason
        ))?;
    }
    let clean = report.skipped.is_empty();
    if args.dry_run {
        for (key, from) in &report.migrated {
            say(format!(
                "would migrate {key} from version {from} to {}",
                report.to
            ))?;
        }
        say(format!(
            "{} document(s) to migrate to version {}, {} already current (dry run: nothing written)",
            report.migrated.len(),
            report.to,
            report.current
        ))?;
        return Ok(exit(clean));
    }
    for key in &report.conflicts {
        say(format!(
            "CONFLICT {key}: changed by another writer during the migration; left unmigrated \
             (run the migration again)"
        ))?;
    }
    say(format!(
        "migrated {} document(s) to version {}, {} already current{}",
        report.migrated.len() - report.conflicts.len(),
        report.to,
        report.current,
        match report.skipped.len() {
            0 => String::new(),
            n => format!(", {n} skipped"),
        }
    ))?;
    Ok(exit(clean && report.conflicts.is_empty()))
}

fn exit(clean: bool) -> ExitCode {
    if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The steps in `dir`: files named `NNNN-description`, step NNNN migrating to version NNNN.
/// A name that starts like a step (a digit or a sign) must be exactly that: `0003_c`, `+2-b`
/// or a number too large are errors, never ignored or read as another step. Other names
/// (a README, hidden files) are not steps.
fn load_steps(dir: &Path, timeout: Duration) -> Result<Migrator, Failure> {
    let err = |e: io::Error| Failure::new(format!("migrate: list {}: {e}", quote(dir)));
    let mut steps: BTreeMap<u64, PathBuf> = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(err)? {
        let path = entry.map_err(err)?.path();
        let Some(version) = step_number(&path)? else {
            continue;
        };
        if let Some(other) = steps.insert(version, path.clone()) {
            return Err(Failure::new(format!(
                "migrate: {} and {} are both step {version}; give each step its own number",
                quote(&other),
                quote(&path)
            )));
        }
    }
    if steps.is_empty() {
        return Err(Failure::new(format!(
            "migrate: {} has no steps (expected executables named like 0001-add-tags)",
            quote(dir)
        )));
    }
    Ok(steps
        .into_iter()
        .fold(Migrator::new(), |m, (version, path)| {
            m.step(version, move |doc| run_step(&path, doc, timeout))
        }))
}

/// The version of the step at `path`; `None` for a name that does not start like a step.
fn step_number(path: &Path) -> Result<Option<u64>, Failure> {
    let name = path.file_name().unwrap_or_default().as_bytes();
    if !name
        .first()
        .is_some_and(|b| b.is_ascii_digit() || *b == b'+' || *b == b'-')
    {
        return Ok(None);
    }
    let bad = |why: &str| {
        Failure::new(format!(
            "migrate: {}: {why} (a step is named NNNN-description, e.g. 0003-add-tags; \
             rename or move this file)",
            quote(path)
        ))
    };
    let digits = name.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return Err(bad("looks like a step but does not start with its number"));
    }
    if name.get(digits) != Some(&b'-') || name.len() == digits + 1 {
        return Err(bad(
            "looks like a step but its number is not followed by `-` and a description",
        ));
    }
    let version = std::str::from_utf8(&name[..digits])
        .expect("ASCII digits")
        .parse::<u64>()
        .map_err(|_| bad("the step number is too large"))?;
    if version == 0 {
        return Err(bad(
            "step numbers start at 1 (step N migrates version N-1 to N)",
        ));
    }
    if !path.is_file() {
        return Err(bad("it is named like a step but is not a file"));
    }
    Ok(Some(version))
}

/// The most a step may print on stdout (one migrated document) and on stderr.
const MAX_STDOUT: u64 = 64 << 20;
const MAX_STDERR: u64 = 1 << 20;

#[derive(Debug, Clone, Copy)]
enum Stream {
    Stdout,
    Stderr,
}

/// What the threads watching a step report.
enum Event {
    /// The step's own process exited (not yet reaped).
    Exited,
    /// A stream reached its end.
    Output(Stream, io::Result<Vec<u8>>),
    /// A stream passed its limit.
    TooMuch(Stream),
}

/// Pipes `doc` through the executable `program`, in a process group of its own. The step must
/// exit within `timeout` and print at most [`MAX_STDOUT`] and [`MAX_STDERR`] bytes; otherwise
/// its whole group is killed (SIGKILL) and the step fails. Whatever it leaves running in its
/// group when it exits is killed too, so a background child holding its output cannot hang
/// the migration.
fn run_step(program: &Path, doc: Value, timeout: Duration) -> Result<Value, StepError> {
    let input = serde_json::to_vec(&doc)?;
    // Registered before it can run: a signal from here on reaches its group.
    let mut registered = signals::hold();
    let mut child = Command::new(program)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", quote(program)))?;
    let pid = child.id();
    registered.set_group(Some(pid));
    drop(registered);
    let mut stdin = child.stdin.take().expect("piped");
    // Not joined: a step that never reads its input must not hold us; the write fails once
    // the step's group is gone.
    std::thread::spawn(move || stdin.write_all(&input));
    let (tx, events) = mpsc::channel();
    read_capped(
        child.stdout.take().expect("piped"),
        Stream::Stdout,
        MAX_STDOUT,
        &tx,
    );
    read_capped(
        child.stderr.take().expect("piped"),
        Stream::Stderr,
        MAX_STDERR,
        &tx,
    );
    std::thread::spawn(move || {
        process::wait_exited(pid);
        let _ = tx.send(Event::Exited);
    });
    let deadline = Instant::now() + timeout;
    let (mut stdout, mut stderr, mut exited) = (None, None, false);
    let trouble = loop {
        if let (true, Some(_), Some(_)) = (exited, &stdout, &stderr) {
            break None;
        }
        match events.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(Event::Exited) => {
                exited = true;
                process::kill_group(pid);
            }
            Ok(Event::Output(Stream::Stdout, bytes)) => stdout = Some(bytes),
            Ok(Event::Output(Stream::Stderr, bytes)) => stderr = Some(bytes),
            Ok(Event::TooMuch(Stream::Stdout)) => {
                break Some(format!(
                    "printed more than {} MiB, more than one document can be; it was killed",
                    MAX_STDOUT >> 20
                ));
            }
            Ok(Event::TooMuch(Stream::Stderr)) => {
                break Some(format!(
                    "wrote more than {} MiB to standard error; it was killed",
                    MAX_STDERR >> 20
                ));
            }
            Err(_) if exited => {
                break Some(format!(
                    "exited, but a process it started outside its process group still held its \
                     output open after {}",
                    secs(timeout)
                ));
            }
            Err(_) => {
                break Some(format!(
                    "did not finish within {} on this document, so it and everything it started \
                     were killed (raise --step-timeout if it needs longer)",
                    secs(timeout)
                ));
            }
        }
    };
    // Still unreaped, so the group's id is still ours to signal until it is unregistered.
    process::kill_group(pid);
    signals::hold().set_group(None);
    if let Some(why) = trouble {
        let _ = child.wait();
        return Err(format!("{} {why}", quote(program)).into());
    }
    let status = child.wait()?;
    let stdout = stdout.expect("checked above")?;
    let errors = stderr.expect("checked above")?;
    let errors = String::from_utf8_lossy(&errors);
    if !status.success() {
        let why = match errors.lines().next().map(str::trim) {
            Some(first) if !first.is_empty() => format!(": {first}"),
            _ => String::new(),
        };
        return Err(format!("{} failed ({status}){why}", quote(program)).into());
    }
    serde_json::from_slice(&stdout)
        .map_err(|e| format!("{} printed invalid JSON: {e}", quote(program)).into())
}

fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

/// Reads `src` to its end on a thread of its own, keeping at most `cap` bytes.
fn read_capped(
    src: impl Read + Send + 'static,
    stream: Stream,
    cap: u64,
    tx: &mpsc::Sender<Event>,
) {
    let tx = tx.clone();
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let event = match src.take(cap + 1).read_to_end(&mut bytes) {
            Ok(_) if bytes.len() as u64 > cap => Event::TooMuch(stream),
            Ok(_) => Event::Output(stream, Ok(bytes)),
            Err(e) => Event::Output(stream, Err(e)),
        };
        let _ = tx.send(event);
    });
}
