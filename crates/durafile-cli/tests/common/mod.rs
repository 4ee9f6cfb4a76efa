//! What the command's integration tests share: running the built `durafile` binary with a
//! given input, never longer than a limit (a hang fails the test instead of blocking it).

// Each test binary includes this module and uses a different part of it.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_durafile");

/// How long a command may run before the test calls it a hang.
pub const HANG: Duration = Duration::from_secs(60);

/// `durafile ARGS` with its three standard streams piped.
pub fn command<S: AsRef<OsStr>>(args: &[S]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Runs `cmd` with `stdin`, failing the test if it takes longer than `limit` (a hang).
/// It runs in a process group of its own, killed whole on a hang, so nothing it started
/// outlives the test. A command that exits before reading its input is not a failure.
pub fn run_within(mut cmd: Command, stdin: &[u8], limit: Duration) -> Output {
    let mut child = cmd.process_group(0).spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            // SAFETY: kill(2) touches no memory; the group is the child's own.
            unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
            let out = child.wait_with_output().unwrap();
            panic!(
                "durafile hung for {limit:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = feeder.join();
    child.wait_with_output().unwrap()
}

/// `durafile ARGS < stdin`.
pub fn durafile(args: &[&str], stdin: &[u8]) -> Output {
    run_within(command(args), stdin, HANG)
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// An executable script, such as a migration step.
pub fn script(path: &Path, body: &str) {
    fs::write(path, body).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}
