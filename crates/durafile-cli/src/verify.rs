//! `durafile verify`: checks files against their checksum sidecars, one line per problem and a
//! summary (or JSON lines), with a progress bar on a terminal when the run is long.
//!
//! File names are bytes, not text. In JSON output `path` is the name with each byte that is
//! not UTF-8 replaced by U+FFFD, and a name that is not UTF-8 also gets `path_bytes`, the
//! exact bytes as an array of numbers, so nothing is lost. A directory that cannot be read is
//! reported (status `unreadable`) and the walk goes on with the rest.

use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use durafile::Error;
use durafile::checksum::{self, Candidate, Verification};
use durafile::error::quote;
use serde_json::json;

use crate::failure::Failure;
use crate::progress;

/// Runs longer than this many bytes get a progress bar (on a terminal only).
const LONG_RUN_BYTES: u64 = 64 << 20;

pub fn run(paths: &[PathBuf], recursive: bool, json: bool) -> Result<bool, Failure> {
    let candidates: Vec<Candidate> = paths
        .iter()
        .flat_map(|path| checksum::collect(path, recursive))
        .collect();
    let total: u64 = candidates
        .iter()
        .filter_map(|c| match c {
            Candidate::File { path, .. } => path.metadata().ok(),
            Candidate::Unreadable { .. } => None,
        })
        .map(|m| m.len())
        .sum();
    let bar = progress::bar(total, total >= LONG_RUN_BYTES, true);
    let (mut ok, mut failed, mut unreadable) = (0u64, 0u64, 0u64);
    let mut out = io::stdout().lock();
    for c in &candidates {
        let (path, explicit) = match c {
            Candidate::File { path, explicit } => (path, *explicit),
            Candidate::Unreadable { path, error } => {
                unreadable += 1;
                let what =
                    format!("cannot read this directory, so its files were not checked: {error}");
                let line = problem(json, path, "unreadable", &what, None);
                match bar.as_ref() {
                    Some(bar) => bar.suspend(|| writeln!(out, "{line}")),
                    None => writeln!(out, "{line}"),
                }
                .map_err(stdout_failure)?;
                continue;
            }
        };
        if let Some(bar) = &bar {
            bar.set_message(quote(path).to_string());
        }
        let result = if crate::remote::is_url(path) {
            crate::remote::verify(path)
        } else {
            checksum::verify(path)
        };
        if let Some(bar) = &bar {
            bar.inc(path.metadata().map_or(0, |m| m.len()));
        }
        let line = match result {
            Ok(Verification::Match { digest, pending }) => {
                ok += 1;
                json.then(|| {
                    let mut obj = path_json(path);
                    obj.insert("status".into(), "ok".into());
                    obj.insert("digest".into(), checksum::to_hex(&digest).into());
                    obj.insert("pending".into(), pending.into());
                    serde_json::Value::Object(obj).to_string()
                })
            }
            Ok(Verification::NoChecksum) if !explicit => None,
            Ok(Verification::NoChecksum) if !path.exists() => {
                failed += 1;
                Some(problem(json, path, "missing", "does not exist", None))
            }
            Ok(Verification::NoChecksum) => {
                failed += 1;
                Some(problem(
                    json,
                    path,
                    "no-checksum",
                    "has no checksum file",
                    None,
                ))
            }
            Err(e) => {
                failed += 1;
                Some(describe(json, path, &e))
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
        json!({"summary": {"files": ok + failed, "ok": ok, "failed": failed,
                           "unreadable_dirs": unreadable}})
        .to_string()
    } else if unreadable > 0 {
        format!(
            "verified {} file(s): {ok} ok, {failed} failed; {unreadable} unreadable director(ies) not checked",
            ok + failed
        )
    } else {
        format!("verified {} file(s): {ok} ok, {failed} failed", ok + failed)
    };
    writeln!(out, "{summary}").map_err(stdout_failure)?;
    Ok(failed == 0 && unreadable == 0)
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
            &format!(
                "not durafile's checksum file: {reason} (move it away to use durafile checksums)"
            ),
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

/// A problem as one line: `PATH: what` for people (the name quoted where it is not plain
/// text), or a JSON object.
fn problem(
    json: bool,
    path: &Path,
    status: &str,
    what: &str,
    extra: Option<serde_json::Value>,
) -> String {
    if !json {
        // Quoted: names under a shared directory are other users' and may hold newlines or
        // terminal escape sequences.
        return format!("{}: {what}", quote(path));
    }
    let mut obj = path_json(path);
    obj.insert("status".into(), status.into());
    obj.insert("message".into(), what.into());
    if let Some(serde_json::Value::Object(more)) = extra {
        obj.extend(more);
    }
    serde_json::Value::Object(obj).to_string()
}

/// `path` as JSON fields: `path`, lossy where the name is not UTF-8 (serialising such a path
/// directly is an error), and then `path_bytes` with the exact bytes.
fn path_json(path: &Path) -> serde_json::Map<String, serde_json::Value> {
    let mut obj = serde_json::Map::new();
    obj.insert("path".into(), path.to_string_lossy().into());
    if path.to_str().is_none() {
        obj.insert("path_bytes".into(), path.as_os_str().as_bytes().into());
    }
    obj
}
