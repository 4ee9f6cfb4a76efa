//! SIGINT, SIGTERM and SIGHUP during `write`, `update` and `migrate`: durafile removes its
//! temp file, forwards the signal to `update`'s command (and waits a moment for it to exit) or
//! to the process group of the migration step running, and exits with 128 + the signal, as a
//! shell reports a process killed by it. The target is unchanged.
//!
//! How: [`install`] blocks the three signals before any thread starts (so every thread
//! inherits the mask) and one thread takes them with `sigwait(2)`: no code runs inside a
//! signal handler, so it may lock, unlink and exit freely. Children start with an empty mask
//! (std resets it before exec), so they receive signals as usual.
//!
//! The thread and the main thread share what there is to clean up. The main thread holds it
//! locked while it commits ([`hold`]): a signal that arrives once the commit has
//! begun waits for it to finish, so the target is never left half-decided; durafile then
//! still exits with 128 + the signal.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::failure::Failure;
use crate::process;

/// What a signal must undo before durafile exits.
pub struct Cleanup {
    temp: Option<PathBuf>,
    child: Option<u32>,
    group: Option<u32>,
}

static CLEANUP: Mutex<Cleanup> = Mutex::new(Cleanup {
    temp: None,
    child: None,
    group: None,
});

/// How long durafile waits for the child it forwarded a signal to before exiting anyway.
const CHILD_GRACE: Duration = Duration::from_secs(2);

const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

fn cleanup() -> MutexGuard<'static, Cleanup> {
    CLEANUP.lock().unwrap_or_else(|p| p.into_inner())
}

/// Takes over SIGINT, SIGTERM and SIGHUP. Call before starting any other thread.
pub fn install() -> Result<(), Failure> {
    // SAFETY: sigemptyset/sigaddset initialise the set we own; pthread_sigmask reads it.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in SIGNALS {
            libc::sigaddset(&mut set, s);
        }
        match libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) {
            0 => set,
            e => {
                let e = std::io::Error::from_raw_os_error(e);
                return Err(Failure::new(format!("block signals: {e}")));
            }
        }
    };
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            loop {
                let mut signal = 0;
                // SAFETY: sigwait reads `set` and writes `signal`, both live across the call.
                if unsafe { libc::sigwait(&set, &mut signal) } == 0 {
                    on_signal(signal);
                }
            }
        })
        .map_err(|e| Failure::new(format!("start the signal thread: {e}")))?;
    Ok(())
}

/// Forwards `signal` to the child or step group, removes the temp file and exits (once the
/// child has exited, or after [`CHILD_GRACE`]). The lock is kept until the exit, so the main
/// thread cannot begin a commit, or reap the child, in between.
fn on_signal(signal: libc::c_int) -> ! {
    let cleanup = cleanup();
    if let Some(pgid) = cleanup.group {
        process::signal_group(pgid, signal);
    }
    if let Some(pid) = cleanup.child {
        process::signal(pid, signal);
    }
    if let Some(temp) = &cleanup.temp {
        let _ = std::fs::remove_file(temp);
    }
    if let Some(pid) = cleanup.child {
        process::exits_within(pid, CHILD_GRACE);
    }
    // _exit, not exit: the main thread may be exiting at this very moment, and exit(3) run
    // from two threads at once is undefined. Nothing durafile buffers is lost: its messages
    // are whole lines, already written.
    // SAFETY: _exit(2) ends the process at once; it touches no memory of ours.
    unsafe { libc::_exit(128 + signal) }
}

/// What a signal must undo, locked: a signal waits until the guard is dropped. Hold it
/// while committing, so that a signal cannot cut the commit short, and while starting a
/// child, so that the child is registered before a signal can miss it.
pub fn hold() -> MutexGuard<'static, Cleanup> {
    cleanup()
}

impl Cleanup {
    /// The temp file a signal must remove (`None` once it is renamed or removed).
    pub fn set_temp(&mut self, path: Option<&Path>) {
        self.temp = path.map(Path::to_path_buf);
    }

    /// The child a signal must be forwarded to (`None` once it has exited).
    pub fn set_child(&mut self, pid: Option<u32>) {
        self.child = pid;
    }

    /// The process group a signal must be forwarded to (`None` once its leader has exited
    /// and the group has been killed).
    pub fn set_group(&mut self, pgid: Option<u32>) {
        self.group = pgid;
    }
}
