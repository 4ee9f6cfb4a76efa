//! The commands a user runs, with a FIFO or a link to `/dev/zero` planted at `FILE.sha256`:
//! each ends at once with a one-line error naming the checksum file (`recover` lists it),
//! changes nothing, and never hangs: every command runs under a timeout and is SIGKILLed
//! after it, which fails the test. (Library-level tests of the same, run as an unprivileged
//! uid, are in crates/durafile/tests/sidecars.rs.)

use std::ffi::CString;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::BIN;
const TIMEOUT: Duration = Duration::from_secs(20);

/// Runs `durafile ARGS` with `stdin`; `None` when it was still running after [`TIMEOUT`].
fn durafile(args: &[&str], stdin: &[u8]) -> Option<(i32, String, String)> {
    let mut cmd = Command::new(BIN);
    // SAFETY: only setrlimit(2), async-signal-safe, between fork and exec. The cap makes a
    // runaway read of /dev/zero fail fast instead of exhausting the machine's memory.
    unsafe {
        cmd.pre_exec(|| {
            let cap = libc::rlimit {
                rlim_cur: 2 << 30,
                rlim_max: 2 << 30,
            };
            match libc::setrlimit(libc::RLIMIT_AS, &cap) {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            }
        });
    }
    let mut child = cmd
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A command that fails before reading its input closes the pipe early: not our concern.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let (mut out, mut err) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    Some((status.code().unwrap_or(-1), out, err))
}

fn listing(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            // A lock file's holder record (pid, time) is rewritten by every holder: durafile's
            // own bookkeeping, not a change to the user's files.
            let content = if name.ends_with(".lock") {
                Vec::new()
            } else if fs::symlink_metadata(&path).unwrap().is_file() {
                fs::read(&path).unwrap()
            } else {
                Vec::new()
            };
            (name, content)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn every_command_refuses_a_fifo_or_dev_zero_at_the_checksum_file() {
    for kind in ["fifo", "dev_zero"] {
        let commands: [&[&str]; 6] = [
            &["write", "FILE"],
            &["write", "--checksum", "FILE"],
            &["update", "FILE", "--", "cat"],
            &["cat", "FILE"],
            &["verify", "FILE"],
            &["recover", "DIR"],
        ];
        for args in commands {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("data");
            let sidecar = dir.path().join("data.sha256");
            let out = durafile(&["write", file.to_str().unwrap()], b"precious");
            assert_eq!(out.map(|o| o.0), Some(0));
            if kind == "fifo" {
                let c = CString::new(sidecar.as_os_str().as_bytes()).unwrap();
                // SAFETY: a valid NUL-terminated path.
                assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
            } else {
                symlink("/dev/zero", &sidecar).unwrap();
            }
            let before = listing(dir.path());
            let args: Vec<&str> = args
                .iter()
                .map(|a| match *a {
                    "FILE" => file.to_str().unwrap(),
                    "DIR" => dir.path().to_str().unwrap(),
                    other => other,
                })
                .collect();
            let ctx = format!("{kind}: durafile {}", args.join(" "));
            let Some((code, out, err)) = durafile(&args, b"new") else {
                panic!("{ctx}: still running after {TIMEOUT:?} (killed)");
            };
            let said = format!("{out}{err}");
            let what = if kind == "fifo" {
                "a fifo"
            } else {
                "a symbolic link"
            };
            assert!(
                said.contains("refused the checksum file") && said.contains(what),
                "{ctx}: {said}"
            );
            assert!(said.contains(sidecar.to_str().unwrap()), "{ctx}: {said}");
            if args[0] != "recover" {
                assert_eq!(code, 1, "{ctx}: {said}");
            }
            if args[0] == "write" || args[0] == "update" {
                assert!(
                    err.starts_with("durafile: record the checksum of "),
                    "{ctx}: {err}"
                );
                assert_eq!(err.lines().count(), 1, "{ctx}: {err}");
            }
            assert_eq!(listing(dir.path()), before, "{ctx}: something changed");
        }
    }
}
