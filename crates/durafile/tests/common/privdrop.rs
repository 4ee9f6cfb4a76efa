//! Running part of a test as another, unprivileged user: this test binary again, in a child
//! that drops root's privileges in `pre_exec` (setgroups, setresgid, setresuid), so that no
//! account or sysctl has to change on the machine. A child that outlives its timeout is
//! SIGKILLed, so a hang fails the test instead of blocking it.
#![allow(dead_code)] // each test binary uses its own subset

use std::io::{self, Read};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A uid with no account: the user whose files are attacked.
pub const VICTIM: u32 = 64_001;
/// Another uid with no account: the co-tenant who plants files.
pub const ATTACKER: u32 = 64_002;

/// Makes `cmd` run as `uid` (group `uid` its only group), with its address space
/// capped at 2 GiB so that a runaway read fails fast instead of exhausting the machine.
pub fn run_as_uid(cmd: &mut Command, uid: u32) -> &mut Command {
    // SAFETY: only async-signal-safe syscalls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: 2 << 30,
                rlim_max: 2 << 30,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                return Err(io::Error::last_os_error());
            }
            drop_privileges(uid, uid)
        })
    }
}

/// setgroups (to `gid` alone), setresgid, setresuid, in that order (the group calls need
/// root). Called between fork and exec: async-signal-safe syscalls only.
pub fn drop_privileges(uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: plain syscalls on values, no memory of ours but the one-element array.
    unsafe {
        let groups = [gid];
        if libc::setgroups(1, groups.as_ptr()) != 0
            || libc::setresgid(gid, gid, gid) != 0
            || libc::setresuid(uid, uid, uid) != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// This test binary as a child running the ignored test `entry` in `role`, as `uid`.
pub fn child(entry: &str, role: &str, uid: u32, env: &[(&str, &Path)]) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([entry, "--exact", "--ignored", "--nocapture"])
        .env(crate::common::ROLE, role)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_as_uid(&mut cmd, uid);
    cmd
}

/// How a child ended: `None` for the status when it was killed after `timeout`.
pub struct Outcome {
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd`, SIGKILLing it after `timeout`.
pub fn run(cmd: &mut Command, timeout: Duration) -> Outcome {
    let mut proc = cmd.spawn().expect("spawn child");
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = proc.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            proc.kill().unwrap();
            proc.wait().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    proc.stdout.take().unwrap().read_to_string(&mut stdout).ok();
    proc.stderr.take().unwrap().read_to_string(&mut stderr).ok();
    Outcome {
        status,
        stdout,
        stderr,
    }
}
