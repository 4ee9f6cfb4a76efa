//! `durafile verify`: checks files against their checksum sidecars, one line per problem and a
//! summary (or JSON lines), with a progress bar on a terminal when the run is long.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use durafile::Error;
use durafile::checksum::{self, Verification};
use serde_json::json;

use crate::failure::Failure;
use crate::progress;

/// Runs longer than this many bytes get a progress bar (on a terminal only).
const LONG_RUN_BYTES: u64 = 64 << 20;

/// One file to check and whether it was named explicitly (then a missing sidecar is a problem).
struct Candidate {
    path: PathBuf,
    explicit: bool,
}

pub fn run(paths: &[PathBuf], recursive: bool, json: bool) -> Result<bool, Failure> {
    let candidates = collect(paths, recursive)?;
    let total: u64 = candidates
        .iter()
        .filter_map(|c| c.path.metadata().ok())
        .map(|m| m.len())
        .sum();
    let bar = progress::bar(total, total >= LONG_RUN_BYTES, true);
    let (mut ok, mut failed) = (0u64, 0u64);
    let mut out = io::stdout().lock();
    for c in &candidates {
        if let Some(bar) = &bar {
            bar.set_message(c.path.display().to_string());
        }
        let result = if crate::remote::is_url(&c.path) {
            crate::remote::verify(&c.path)
        } else {
            checksum::verify(&c.path)
        };
        if let Some(bar) = &bar {
            bar.inc(c.path.metadata().map_or(0, |m| m.len()));
        }
        let line = match result {
            Ok(Verification::Match { digest, pending }) => {
                ok += 1;
                json.then(|| {
                    json!({"path": c.path, "status": "ok", "digest": checksum::to_hex(&digest),
                           "pending": pending})
                    .to_string()
                })
            }
            Ok(Verification::NoChecksum) if !c.explicit => None,
            Ok(Verification::NoChecksum) if !c.path.exists() => {
                failed += 1;
                Some(problem(json, &c.path, "missing", "does not exist", None))
            }
            Ok(Verification::NoChecksum) => {
                failed += 1;
                Some(problem(
                    json,
                    &c.path,
                    "no-checksum",
                    "has no checksum file",
                    None,
                ))
            }
            Err(e) => {
                failed += 1;
                Some(describe(json, &c.path, &e))
            }
        };
        if let Some(line) = line {
            let printed = match bar.as_ref() {
                Some(bar) => bar.suspend(|| writeln!(out, "{line}")),
                None => writeln!(out, "{line}"),
            };
            printed.map_err(stdout_failure)?;
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let summary = if json {
        json!({"summary": {"files": ok + failed, "ok": ok, "failed": failed}}).to_string()
    } else {
        format!("verified {} file(s): {ok} ok, {failed} failed", ok + failed)
    };
    writeln!(out, "{summary}").map_err(stdout_failure)?;
    Ok(failed == 0)
}

fn stdout_failure(e: io::Error) -> Failure {
    Failure::new(format!("write standard output: {e}"))
}

fn describe(json: bool, path: &Path, err: &Error) -> String {
    match err {
        Error::ChecksumMismatch {
            expected, actual, ..
        } => problem(
            json,
            path,
            "mismatch",
            &format!(
                "checksum mismatch: expected {}, found {actual}",
                expected.join(" or ")
            ),
            Some(json!({"expected": expected, "actual": actual})),
        ),
        Error::BadChecksumFile { reason, .. } => problem(
            json,
            path,
            "bad-checksum-file",
            &format!("malformed checksum file: {reason}"),
            None,
        ),
        Error::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => problem(
            json,
            path,
            "missing",
            "missing, but its checksum file exists",
            None,
        ),
        other => problem(json, path, "error", &other.to_string(), None),
    }
}

/// A problem as one line: `PATH: what` for people, or a JSON object.
fn problem(
    json: bool,
    path: &Path,
    status: &str,
    what: &str,
    extra: Option<serde_json::Value>,
) -> String {
    if !json {
        return format!("{}: {what}", path.display());
    }
    let mut obj = json!({"path": path, "status": status, "message": what});
    if let (Some(map), Some(serde_json::Value::Object(more))) = (obj.as_object_mut(), extra) {
        map.extend(more);
    }
    obj.to_string()
}

/// The files to check: each file named (a sidecar stands for its data file), and in each
/// directory every file that has a sidecar, descending with `recursive`.
fn collect(paths: &[PathBuf], recursive: bool) -> Result<Vec<Candidate>, Failure> {
    let mut found = Vec::new();
    for path in paths {
        // A path that does not exist is checked like a file, and reported as a problem.
        if !path.is_dir() {
            found.push(Candidate {
                path: checksum::checksummed_file(path).unwrap_or_else(|| path.clone()),
                explicit: true,
            });
            continue;
        }
        let walk = walkdir::WalkDir::new(path)
            .max_depth(if recursive { usize::MAX } else { 1 })
            .sort_by_file_name();
        for entry in walk {
            let entry =
                entry.map_err(|e| Failure::new(format!("verify {}: {e}", path.display())))?;
            if entry.file_type().is_file()
                && let Some(data) = checksum::checksummed_file(entry.path())
            {
                found.push(Candidate {
                    path: data,
                    explicit: false,
                });
            }
        }
    }
    Ok(found)
}
