//! Waiting for and killing child processes without ever hitting a stranger: a child is
//! waited for without being reaped, so its pid (and its process group's id) cannot be reused
//! while we may still send it a signal.

use std::io;

/// Waits until our child `pid` has exited, without reaping it: while it is a zombie its pid,
/// and so its process group's id, cannot be reused, so a signal sent to either afterwards
/// cannot reach another process. The caller reaps it (`Child::wait`) when done.
pub fn wait_exited(pid: u32) {
    loop {
        // SAFETY: waitid writes only into `info`, which lives across the call.
        let r = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if r == 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return;
        }
    }
}

/// Sends `signal` to process `pid` (an error means it is gone already).
pub fn signal(pid: u32, signal: libc::c_int) {
    // SAFETY: kill(2) touches no memory.
    unsafe {
        libc::kill(pid as libc::pid_t, signal);
    }
}

/// SIGKILL to every process in the group `pgid` (an error means the group is empty already).
pub fn kill_group(pgid: u32) {
    signal_group(pgid, libc::SIGKILL);
}

/// Sends `signal` to every process in the group `pgid`.
pub fn signal_group(pgid: u32, signal: libc::c_int) {
    // SAFETY: kill(2) with a negative pid signals a process group; it touches no memory.
    unsafe {
        libc::kill(-(pgid as libc::pid_t), signal);
    }
}

/// Whether our child `pid` exits within `limit` (polled; it is not reaped).
pub fn exits_within(pid: u32, limit: std::time::Duration) -> bool {
    let start = std::time::Instant::now();
    loop {
        // SAFETY: waitid writes only into `info`, which lives across the call.
        let (r, exited) = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let r = libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            );
            (r, info.si_pid() != 0)
        };
        if r != 0 || exited {
            return true;
        }
        if start.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
