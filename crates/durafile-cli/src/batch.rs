//! `durafile batch`: JSON-lines operations on standard input, through the library's batch
//! processor.

use std::io::{self, BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

use durafile::FileManager;
use durafile::batch::{BatchProcessor, Op, Outcome};
use serde::Deserialize;
use serde_json::Value;

use crate::failure::Failure;
use crate::progress;

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
    for (n, line) in io::stdin().lock().lines().enumerate() {
        let n = n + 1;
        let line = line.map_err(|e| Failure::new(format!("batch: read standard input: {e}")))?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Line>(&line) {
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
    for (i, outcome) in report.outcomes.iter().enumerate() {
        if let Outcome::Failed(e) = outcome {
            problems.push((line_of[i], e.to_string()));
        }
    }
    problems.sort_by_key(|(n, _)| *n);
    let mut out = io::stdout().lock();
    let write_err = |e: io::Error| Failure::new(format!("write standard output: {e}"));
    for (n, problem) in &problems {
        writeln!(out, "line {n}: {problem}").map_err(write_err)?;
    }
    writeln!(
        out,
        "{} operation(s): {} applied, {} failed",
        total + problems.len() - report.failed(),
        report.applied(),
        problems.len()
    )
    .map_err(write_err)?;
    Ok(if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
