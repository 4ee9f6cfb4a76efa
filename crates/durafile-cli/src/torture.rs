//! `durafile torture`: the crash and concurrency torture, run on the user's own filesystem.
//!
//! Each round starts `--processes` workers of this very binary (a hidden subcommand): half
//! write numbered, checksummed versions of a JSON file of their own at a durability level,
//! half increment one shared counter with `update`. Each worker prints an acknowledgement
//! after every write that returned. The round SIGKILLs them all at a random moment, then
//! checks everything:
//!
//! - each writer's file must be exactly one version it wrote, no older than its last
//!   acknowledged one (else: a corrupt file);
//! - each file must verify against its checksum (else: a false alarm, since its content was
//!   just checked to be what durafile wrote);
//! - the counter must be at least the number of acknowledged increments (else: lost updates)
//!   and at most that plus one in-flight increment per killed updater;
//! - recovery must find nothing damaged, and cleans the dead writers' temp files.
//!
//! This proves the guarantees against process crashes on this filesystem and mount options.
//! It does not cut the power: for that, run it in a VM and kill the VM.

use std::fmt::Write as _;
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use durafile::checksum::{self, Verification};
use durafile::error::quote;
use durafile::{Durability, Error, Options};

use crate::failure::Failure;
use crate::progress;

const LEVELS: [Durability; 3] = [Durability::Full, Durability::Consistent, Durability::None];

/// Items in a writer's document: about 60 KiB, so a kill often lands mid-write.
const ITEMS: usize = 1000;

pub struct Args {
    pub dir: Option<PathBuf>,
    pub seconds: u64,
    pub processes: usize,
}

#[derive(Default)]
struct Tally {
    rounds: u64,
    kills: u64,
    writes: u64,
    updates: u64,
    corrupt: u64,
    lost: u64,
    false_alarms: u64,
    /// Write and update latencies in microseconds, per level (indexed like `LEVELS`).
    latency: [Vec<u64>; 3],
}

pub fn run(args: Args) -> Result<ExitCode, Failure> {
    let owned = args.dir.is_none();
    let dir = args
        .dir
        .unwrap_or_else(|| PathBuf::from(format!("durafile-torture-{}", std::process::id())));
    std::fs::create_dir_all(&dir)
        .map_err(|e| Failure::new(format!("torture: create directory {}: {e}", quote(&dir))))?;
    // Its writers replace and recovery deletes files by name there: never in a user's files.
    let empty = std::fs::read_dir(&dir)
        .map_err(|e| Failure::new(format!("torture: list directory {}: {e}", quote(&dir))))?
        .next()
        .is_none();
    if !empty {
        return Err(Failure::new(format!(
            "torture: directory {} is not empty; torture overwrites and deletes files in it, so give it a new or empty directory",
            quote(&dir)
        )));
    }
    let exe = std::env::current_exe()
        .map_err(|e| Failure::new(format!("torture: find this program: {e}")))?;
    let processes = args.processes.max(2);
    let counter = dir.join("counter");
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let bar = progress::bar(args.seconds, true, false);
    let mut rng = seed();
    let mut tally = Tally::default();
    let mut acked_increments = 0u64;
    let mut in_flight = 0u64;
    let mut last_version = vec![0u64; processes];
    while Instant::now() < deadline {
        let round = tally.rounds;
        let mut workers: Vec<(usize, usize, Child)> = Vec::new();
        for p in 0..processes {
            let level = (round as usize + p) % 3;
            let role = if p % 2 == 0 { "writer" } else { "updater" };
            let first = (round + 1) * 1_000_000;
            let mut cmd = Command::new(&exe);
            cmd.arg("__torture-worker")
                .args([
                    role,
                    &p.to_string(),
                    LEVELS[level].as_str(),
                    &first.to_string(),
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::null());
            cmd.current_dir(&dir);
            let child = cmd
                .spawn()
                .map_err(|e| Failure::new(format!("torture: start a worker: {e}")))?;
            workers.push((p, level, child));
        }
        std::thread::sleep(Duration::from_millis(20 + next(&mut rng) % 230));
        for (p, level, mut child) in workers {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
            let _ = child.wait();
            tally.kills += 1;
            let said = io::BufReader::new(child.stdout.take().expect("piped"));
            for line in said.lines().map_while(Result::ok) {
                let mut words = line.split(' ');
                match (words.next(), words.next(), words.next()) {
                    (Some("w"), Some(v), Some(us)) => {
                        tally.writes += 1;
                        last_version[p] = v.parse().unwrap_or(last_version[p]);
                        tally.latency[level].push(us.parse().unwrap_or(0));
                    }
                    (Some("u"), Some(_), Some(us)) => {
                        tally.updates += 1;
                        acked_increments += 1;
                        tally.latency[level].push(us.parse().unwrap_or(0));
                    }
                    _ => {}
                }
            }
            if p % 2 == 1 {
                in_flight += 1;
            }
        }
        for p in (0..processes).step_by(2) {
            check_writer(
                &dir.join(format!("w{p}.json")),
                p,
                last_version[p],
                &mut tally,
            );
        }
        let count = match std::fs::read_to_string(&counter) {
            Ok(text) => text.trim().parse::<u64>().ok(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Some(0),
            Err(_) => None,
        };
        match count {
            Some(n) if n < acked_increments => tally.lost += acked_increments - n,
            Some(n) if n <= acked_increments + in_flight => {
                // The in-flight increments that did land are acknowledged after the fact.
                in_flight -= n - acked_increments;
                acked_increments = n;
            }
            _ => tally.corrupt += 1,
        }
        let found = durafile::recover::recover(&dir, false)?;
        tally.corrupt += (found.damaged.len() + found.missing.len()) as u64;
        tally.rounds += 1;
        if let Some(bar) = &bar {
            let elapsed = args
                .seconds
                .saturating_sub(deadline.saturating_duration_since(Instant::now()).as_secs());
            bar.set_position(elapsed);
            bar.set_message(format!("{} rounds, {} kills", tally.rounds, tally.kills));
        }
    }
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let failed = tally.corrupt + tally.lost + tally.false_alarms > 0;
    print!("{}", report(&dir, args.seconds, processes, &tally));
    if owned && !failed {
        let _ = std::fs::remove_dir_all(&dir);
    } else if failed {
        println!("evidence kept in {}", quote(&dir));
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Checks writer `p`'s file after a round: one whole version, not older than acknowledged,
/// and verifying against its checksum.
fn check_writer(path: &Path, p: usize, acked: u64, tally: &mut Tally) {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        // Killed before its first write ever returned.
        Err(e) if e.kind() == io::ErrorKind::NotFound && acked == 0 => return,
        Err(_) => {
            tally.corrupt += 1;
            return;
        }
    };
    let version = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v["version"].as_u64());
    let whole = version.is_some_and(|v| bytes == document(p, v) && v >= acked);
    if !whole {
        tally.corrupt += 1;
        return;
    }
    match checksum::verify(path) {
        Ok(Verification::Match { .. }) => {}
        Err(Error::ChecksumMismatch { .. }) | Ok(Verification::NoChecksum) => {
            tally.false_alarms += 1
        }
        Err(_) => tally.corrupt += 1,
    }
}

/// Version `v` of writer `p`'s document.
fn document(p: usize, v: u64) -> Vec<u8> {
    let mut out = format!("{{\"writer\":{p},\"version\":{v},\"items\":[");
    for i in 0..ITEMS {
        let sep = if i == 0 { "" } else { "," };
        let _ = write!(
            out,
            "{sep}{{\"i\":{i},\"v\":{v},\"pad\":\"{:032x}\"}}",
            v ^ i as u64
        );
    }
    out.push_str("]}\n");
    out.into_bytes()
}

/// The hidden worker: `writer P LEVEL FIRST` or `updater P LEVEL FIRST`, acknowledging each
/// write that returned on stdout, with its latency.
pub fn worker(role: &str, p: usize, level: Durability, first: u64) -> Result<ExitCode, Failure> {
    let opts = Options::new().durability(level).checksum(true);
    let mut out = io::stdout().lock();
    for v in first.. {
        let start = Instant::now();
        let tag = if role == "writer" {
            durafile::write(format!("w{p}.json"), document(p, v), &opts)?;
            format!("w {v}")
        } else {
            durafile::update("counter", &Options::new().durability(level), |cur| {
                let n: u64 = cur.map_or(0, |b| {
                    String::from_utf8_lossy(b).trim().parse().unwrap_or(0)
                });
                Ok::<_, Error>((n + 1).to_string().into_bytes())
            })?;
            "u 0".to_owned()
        };
        let us = start.elapsed().as_micros();
        if writeln!(out, "{tag} {us}")
            .and_then(|()| out.flush())
            .is_err()
        {
            break;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn report(dir: &Path, seconds: u64, processes: usize, t: &Tally) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "durafile torture: {} ({}), {seconds} s, {processes} processes",
        quote(dir),
        filesystem(dir)
    );
    for (name, value, must_be_zero) in [
        ("rounds", t.rounds, false),
        ("kills", t.kills, false),
        ("writes acknowledged", t.writes, false),
        ("updates acknowledged", t.updates, false),
        ("corrupt files", t.corrupt, true),
        ("lost updates", t.lost, true),
        ("false checksum alarms", t.false_alarms, true),
    ] {
        let flag = if must_be_zero && value > 0 {
            "  FAILED"
        } else {
            ""
        };
        let _ = writeln!(s, "{name:<24}{value:>10}{flag}");
    }
    let _ = writeln!(
        s,
        "{:<24}{:>10}{:>12}{:>12}",
        "latency", "writes", "p50", "p99"
    );
    for (level, samples) in LEVELS.iter().zip(&t.latency) {
        let mut sorted = samples.clone();
        sorted.sort_unstable();
        let pct = |q: f64| match sorted.len() {
            0 => "-".to_owned(),
            n => format!(
                "{:.2} ms",
                sorted[((n - 1) as f64 * q) as usize] as f64 / 1000.0
            ),
        };
        let _ = writeln!(
            s,
            "{:<24}{:>10}{:>12}{:>12}",
            format!("  {level}"),
            sorted.len(),
            pct(0.5),
            pct(0.99)
        );
    }
    s
}

/// The filesystem type of `dir`, for the report.
fn filesystem(dir: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return "unknown filesystem".into();
    };
    // SAFETY: statfs fills the zeroed struct we own, from a valid C string.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return "unknown filesystem".into();
    }
    #[cfg(target_os = "linux")]
    {
        let name = match st.f_type as u64 {
            0xEF53 => "ext4",
            0x5846_5342 => "xfs",
            0x9123_683E => "btrfs",
            0x0102_1994 => "tmpfs",
            0x2FC1_2FC1 => "zfs",
            0x6969 => "nfs",
            0x794C_7630 => "overlayfs",
            0x6573_5546 => "fuse",
            other => return format!("filesystem type {other:#x}"),
        };
        name.to_owned()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let name = st
            .f_fstypename
            .iter()
            .take_while(|c| **c != 0)
            .map(|c| *c as u8 as char);
        name.collect()
    }
}

/// A seed from the clock and pid: every run kills at different moments.
fn seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    (nanos ^ u64::from(std::process::id()).rotate_left(32)) | 1
}

/// xorshift64: enough to spread kill moments.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}
