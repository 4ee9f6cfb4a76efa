//! `durafile migrate`: the library's all-or-nothing directory migration, with steps that are
//! executables in a directory (`NNNN-description`, reading a document on stdin and writing
//! the migrated one on stdout; `#!/usr/bin/env -S jq -f` scripts work).

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use durafile::migrate::{Migrator, StepError};
use durafile::{DataHandler, FileManager, Options};
use serde_json::Value;

use crate::failure::Failure;
use crate::progress;

pub struct Args<'a> {
    pub dir: &'a Path,
    pub migrations: &'a Path,
    pub to: Option<u64>,
    pub dry_run: bool,
    pub field: &'a str,
    pub pretty: bool,
}

pub fn run(args: Args) -> Result<ExitCode, Failure> {
    let migrator = load_steps(args.migrations)?.field(args.field);
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
        return Ok(ExitCode::SUCCESS);
    }
    for key in &report.conflicts {
        say(format!(
            "CONFLICT {key}: changed by another writer during the migration; left unmigrated \
             (run the migration again)"
        ))?;
    }
    say(format!(
        "migrated {} document(s) to version {}, {} already current",
        report.migrated.len() - report.conflicts.len(),
        report.to,
        report.current
    ))?;
    Ok(if report.conflicts.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The steps in `dir`: files named `NNNN-description`, step NNNN migrating to version NNNN.
fn load_steps(dir: &Path) -> Result<Migrator, Failure> {
    let err = |e: io::Error| Failure::new(format!("migrate: list {}: {e}", dir.display()));
    let mut steps: BTreeMap<u64, PathBuf> = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(err)? {
        let path = entry.map_err(err)?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let Some((digits, _)) = name.split_once('-') else {
            continue;
        };
        let Ok(version) = digits.parse::<u64>() else {
            continue;
        };
        if !path.is_file() || digits.is_empty() {
            continue;
        }
        if let Some(other) = steps.insert(version, path.clone()) {
            return Err(Failure::new(format!(
                "migrate: {} and {} are both step {version}; give each step its own number",
                other.display(),
                path.display()
            )));
        }
    }
    if steps.is_empty() {
        return Err(Failure::new(format!(
            "migrate: {} has no steps (expected executables named like 0001-add-tags)",
            dir.display()
        )));
    }
    Ok(steps
        .into_iter()
        .fold(Migrator::new(), |m, (version, path)| {
            m.step(version, move |doc| run_step(&path, doc))
        }))
}

/// Pipes `doc` through the executable `program`.
fn run_step(program: &PathBuf, doc: Value) -> Result<Value, StepError> {
    let mut child = Command::new(program)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    let mut stdin = child.stdin.take().expect("piped");
    let input = serde_json::to_vec(&doc)?;
    let feeder = std::thread::spawn(move || stdin.write_all(&input));
    // Both pipes at once: a step that fills stderr must not stall on a full pipe.
    let output = child.wait_with_output()?;
    // A step that exits before reading all its input is judged by its status and output.
    let _ = feeder.join();
    let (status, errors) = (output.status, String::from_utf8_lossy(&output.stderr));
    if !status.success() {
        let why = match errors.lines().next().map(str::trim) {
            Some(first) if !first.is_empty() => format!(": {first}"),
            _ => String::new(),
        };
        return Err(format!("{} failed ({status}){why}", program.display()).into());
    }
    serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("{} printed invalid JSON: {e}", program.display()).into())
}
