//! `durafile batch`: JSON-lines operations on standard input, through the library's batch
//! processor.

use std::io::{self, BufRead, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

use durafile::FileManager;
use durafile::batch::{BatchProcessor, Op, Outcome};
use serde::Deserialize;
use serde_json::Value;

use crate::failure::Failure;
use crate::progress;

/// The longest line accepted: one operation, however large its value, fits; a runaway input
/// gets an error instead of exhausting memory.
const MAX_LINE: u64 = 64 << 20;

/// One line of input.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
enum Line {
    Write { path: PathBuf, value: Value },
    Merge { path: PathBuf, patch: Value },
}

pub fn run(files: FileManager, jobs: Option<usize>) -> Result<ExitCode, Failure> {
    let mut ops = Vec::new();
    let mut line_of = Vec::new();
    let mut problems: Vec<(usize, String)> = Vec::new();
    let mut input = io::stdin().lock();
    let mut line = Vec::new();
    for n in 1.. {
        line.clear();
        let read = (&mut input)
            .take(MAX_LINE + 1)
            .read_until(b'\n', &mut line)
            .map_err(|e| Failure::new(format!("batch: read standard input: {e}")))?;
        if read == 0 {
            break;
        }
        if line.len() as u64 > MAX_LINE && line.last() != Some(&b'\n') {
            return Err(Failure::new(format!(
                "batch: line {n} of standard input is longer than {} MiB, the most one \
                 operation may be; nothing was applied",
                MAX_LINE >> 20
            )));
        }
        if line.trim_ascii().is_empty() {
            continue;
        }
        match serde_json::from_slice::<Line>(&line) {
            Ok(Line::Write { path, value }) => ops.push(Op::Write { path, value }),
            Ok(Line::Merge { path, patch }) => ops.push(Op::Merge { path, patch }),
            Err(e) => {
                problems.push((n, format!("malformed operation, nothing applied: {e}")));
                continue;
            }
        }
        line_of.push(n);
    }
    let total = ops.len();
    let processor = match jobs {
        Some(n) => BatchProcessor::new(files).workers(n),
        None => BatchProcessor::new(files),
    };
    let bar = progress::bar(total as u64, total >= 1000, false);
    let report = processor.run_with(
        ops,
        &|p| {
            if let Some(bar) = &bar {
                bar.set_position(p.done as u64);
            }
        },
        &AtomicBool::new(false),
    );
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let failed_lines = problems.len();
    for (i, outcome) in report.outcomes.iter().enumerate() {
        match outcome {
            Outcome::Failed(e) => problems.push((line_of[i], e.to_string())),
            Outcome::AppliedDurabilityUnknown(e) => {
                problems.push((line_of[i], format!("applied, durability unknown: {e}")))
            }
            Outcome::Applied | Outcome::Cancelled => {}
        }
    }
    problems.sort_by_key(|(n, _)| *n);
    let mut out = io::stdout().lock();
    let write_err = |e: io::Error| Failure::new(format!("write standard output: {e}"));
    for (n, problem) in &problems {
        writeln!(out, "line {n}: {problem}").map_err(write_err)?;
    }
    let unknown = match report.durability_unknown() {
        0 => String::new(),
        n => format!(" ({n} with durability unknown)"),
    };
    writeln!(
        out,
        "{} operation(s): {} applied{unknown}, {} failed",
        total + failed_lines,
        report.applied(),
        failed_lines + report.failed()
    )
    .map_err(write_err)?;
    Ok(if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
