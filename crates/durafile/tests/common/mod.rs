//! Helpers shared by the integration tests: child processes, versioned contents, a seeded
//! random source, and directory listings.
#![allow(dead_code)] // each test binary uses its own subset

pub mod privdrop;

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

/// The environment variable that tells a re-executed test binary which role to play.
pub const ROLE: &str = "DURAFILE_TEST_ROLE";

/// A child process that is SIGKILLed when dropped, so a failing test leaves none behind.
pub struct Proc(Option<Child>);

impl Proc {
    pub fn child(&mut self) -> &mut Child {
        self.0.as_mut().unwrap()
    }

    /// Waits for the child to exit and returns what it printed on stdout.
    pub fn finish(mut self) -> (std::process::ExitStatus, String) {
        let out = self.0.take().unwrap().wait_with_output().unwrap();
        (
            out.status,
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    /// SIGKILL, the crash a process cannot intercept; returns what it printed on stdout.
    pub fn kill(mut self) -> String {
        let mut child = self.0.take().unwrap();
        sigkill(&mut child);
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        out
    }

    /// Reads the child's stdout until it says `msg` (see [`say`]).
    pub fn wait_for(&mut self, msg: &str) {
        let stdout = self.child().stdout.as_mut().unwrap();
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        loop {
            line.clear();
            assert!(
                reader.read_line(&mut line).unwrap() > 0,
                "child exited before {msg:?}"
            );
            if heard(&line).any(|m| m == msg) {
                return;
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            sigkill(child);
        }
    }
}

const MARK: &str = "@durafile ";

/// Tells the parent `msg` on stdout, on a line of its own: the test harness writes there too.
pub fn say(msg: impl std::fmt::Display) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "\n{MARK}{msg}").unwrap();
    out.flush().unwrap();
}

/// The messages a child said in `text`.
pub fn heard(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .filter_map(|l| l.split_once(MARK).map(|(_, m)| m.trim()))
}

/// Starts this test binary again as a child playing `role`, through the ignored test named
/// `entry` (which reads `ROLE` and the other variables in `env`).
pub fn spawn_child(entry: &str, role: &str, env: &[(&str, String)]) -> Proc {
    Proc(Some(
        child_command(entry, role, env)
            .spawn()
            .expect("spawn child test process"),
    ))
}

/// [`spawn_child`] running as `uid` (with `gid` as its only group): the privileges are
/// dropped in the child before it executes, so the test itself can stay root.
pub fn spawn_child_as(entry: &str, role: &str, env: &[(&str, String)], uid: u32, gid: u32) -> Proc {
    use std::os::unix::process::CommandExt;
    let mut cmd = child_command(entry, role, env);
    // SAFETY: only async-signal-safe syscalls between fork and exec.
    unsafe {
        cmd.pre_exec(move || privdrop::drop_privileges(uid, gid));
    }
    Proc(Some(cmd.spawn().expect("spawn unprivileged child")))
}

/// Whether this process may switch to other users (tests that need it skip otherwise).
pub fn can_switch_users() -> bool {
    // SAFETY: geteuid(2) cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: these tests need root, to act as several unprivileged users");
        return false;
    }
    true
}

fn child_command(entry: &str, role: &str, env: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        entry,
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(ROLE, role)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// The role this process plays, when it is a child.
pub fn role() -> Option<String> {
    std::env::var(ROLE).ok()
}

/// The number of SIGKILLs a crash test makes: `DURAFILE_CRASH_KILLS`, default 200. Tests
/// whose rounds cost more scale it down.
pub fn crash_kills() -> u64 {
    std::env::var("DURAFILE_CRASH_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200)
}

pub fn env_u64(name: &str) -> u64 {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} not set"))
        .parse()
        .unwrap()
}

fn sigkill(child: &mut Child) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGKILL);
    }
    child.wait().unwrap();
}

/// A multi-megabyte JSON document that embeds its own version, so that any byte of a torn
/// write shows: `version_of` finds the version, and the whole must equal `versioned_json`.
pub fn versioned_json(version: u64, items: usize) -> Vec<u8> {
    let mut out = format!("{{\"version\":{version},\"items\":[");
    for i in 0..items {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!(
            "{{\"id\":{i},\"v\":{version},\"pad\":\"{:0>64}\"}}",
            version.wrapping_mul(2654435761).wrapping_add(i as u64)
        ));
    }
    out.push_str("]}\n");
    out.into_bytes()
}

/// The version a `versioned_json` document claims, if it is valid JSON of that shape.
pub fn version_of(bytes: &[u8]) -> Option<u64> {
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    value.get("version")?.as_u64()
}

/// xorshift64*: small, seeded and reproducible (the seed is printed by the tests that use it).
pub struct Rng(u64);

impl Rng {
    pub fn from_env(var: &str) -> Rng {
        let seed = std::env::var(var)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    ^ u64::from(std::process::id())
            });
        eprintln!("{var}={seed}");
        Rng(seed | 1)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// The names in `dir`, sorted.
pub fn names(dir: &Path) -> Vec<OsString> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    names
}

/// The durafile temp files in `dir`.
pub fn temp_files(dir: &Path) -> Vec<PathBuf> {
    names(dir)
        .into_iter()
        .filter(|n| durafile::is_temp_name(n))
        .map(|n| dir.join(n))
        .collect()
}

/// Every file below `dir` (not following links) with its owner, mode and content (a link's
/// target; a FIFO's or device's kind), to show that a test changed nothing there, byte for byte.
pub fn snapshot(dir: &Path) -> std::collections::BTreeMap<PathBuf, (u32, u32, Vec<u8>)> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    let mut out = std::collections::BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let content = if meta.file_type().is_symlink() {
                std::fs::read_link(&path)
                    .unwrap()
                    .as_os_str()
                    .as_bytes()
                    .to_vec()
            } else if meta.is_dir() {
                todo.push(path.clone());
                Vec::new()
            } else if meta.is_file() {
                std::fs::read(&path).unwrap()
            } else {
                // A FIFO or device: reading it could block or never end.
                b"(special)".to_vec()
            };
            out.insert(path, (meta.uid(), meta.mode(), content));
        }
    }
    out
}
