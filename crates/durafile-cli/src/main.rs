//! `durafile`: atomic, locked file writes from the shell. A thin shell over the library: every
//! guarantee comes from `durafile` itself; this file parses arguments, moves bytes between
//! standard streams and child processes, and turns errors into one line and an exit status.
//!
//! Exit status: 0 on success, 1 when the operation failed, 2 for a usage error; `lock` and
//! `update` pass on their command's non-zero status.

mod batch;
mod failure;
mod inherited;
mod migrate;
mod process;
mod progress;
mod remote;
mod signals;
mod stream;
mod torture;
mod verify;

use std::ffi::OsString;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use durafile::error::quote;
use durafile::lock::{self, LockMode};
use durafile::{AtomicFile, Durability, FileManager, Options, StateManager};

use failure::Failure;

/// Crash-safe, lock-safe file writes: atomic replace, flock locks, lost-update-free updates.
#[derive(Debug, Parser)]
#[command(name = "durafile", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Replace FILE atomically with standard input.
    ///
    /// The new content is written to a temp file beside FILE, fsynced and renamed over FILE,
    /// so readers and crashes see the old content or the new, never a mix. FILE keeps its
    /// mode, owner and symlink. Takes FILE's durafile lock while it writes.
    Write {
        /// The file to replace (created if missing; its directory must exist).
        file: PathBuf,
        #[command(flatten)]
        write: WriteArgs,
        /// Give the file this mode (octal, e.g. 640) instead of keeping the old one.
        #[arg(long, value_parser = parse_mode)]
        mode: Option<u32>,
    },
    /// Print FILE, after verifying it against its checksum file when it has one.
    ///
    /// Corrupt content is never printed: a mismatch exits 1 with the reason on stderr.
    Cat {
        /// The file to print.
        file: PathBuf,
        /// Refuse a file that has no checksum file, instead of printing it unverified.
        #[arg(long)]
        checksum: bool,
    },
    /// Check files against their checksum files (NAME.sha256).
    ///
    /// Checks each FILE named, and in each directory every file that has a checksum file.
    /// Prints one line per problem and a summary; exits 0 when every file verifies, 1
    /// otherwise.
    Verify {
        /// Files or directories to check.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Descend into subdirectories.
        #[arg(short, long)]
        recursive: bool,
        /// Print one JSON object per file checked, then a summary object.
        #[arg(long)]
        json: bool,
    },
    /// Repair DIR after a crash: remove dead writers' temp files, complete interrupted checksum
    /// updates, and list (never delete) files that fail verification.
    ///
    /// Safe to run while applications write: live writers' files are left alone, and each
    /// checksummed file is examined under its lock. A temp file is removed only when it is
    /// provably a dead durafile writer's (its lock file exists, its owner is yours, the file's or
    /// the directory's, nobody holds it); others are listed with the reason. Exits 1 when a file is
    /// damaged, missing while its checksum file exists, too busy to examine, or unreadable.
    Recover {
        /// The directory to recover (not its subdirectories).
        dir: PathBuf,
        /// Report what would be done and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Run CMD while holding FILE's durafile lock, like flock(1).
    ///
    /// The lock is the one every durafile writer of FILE takes, so CMD runs while no durafile
    /// write or update of FILE is in progress. As with flock(1), CMD inherits the lock, so it
    /// stays held while CMD runs even if durafile itself is killed. Exits with CMD's status.
    ///
    /// CMD's environment names the lock (DURAFILE_LOCK_FD, DURAFILE_LOCK_ID,
    /// DURAFILE_LOCK_MODE), so a durafile write, update or lock of FILE inside CMD uses it
    /// instead of waiting for it, or fails at once saying why (for instance a write under
    /// --shared).
    Lock {
        /// The file whose lock to take (it need not exist).
        file: PathBuf,
        /// Take the shared lock (many holders at once, no writer) instead of the exclusive one.
        #[arg(long)]
        shared: bool,
        /// Give up after SECS seconds (fractions allowed) with exit status 1.
        #[arg(long, value_name = "SECS", value_parser = parse_timeout)]
        timeout: Option<Duration>,
        /// The command to run, after `--`.
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<OsString>,
    },
    /// Inspect and roll back an application state kept by durafile's StateManager.
    #[command(subcommand)]
    State(StateCmd),
    /// Migrate every JSON document in DIR (DIR/KEY.json) to a new schema version, all or
    /// nothing.
    ///
    /// The steps are executables in MIGDIR named NNNN-description: step NNNN reads a
    /// version NNNN-1 document on stdin and prints the version NNNN one (a jq program with a
    /// `#!/usr/bin/env -S jq -f` line works). A step runs in a process group of its own, at
    /// most --step-timeout per document, printing at most 64 MiB (1 MiB on stderr). If a step
    /// fails, no document changes; if the process dies part-way, the next run first rolls the
    /// interrupted migration back or forward, so each document is migrated exactly once.
    /// Every *.json file in DIR is migrated or listed as SKIPPED with the reason (exit 1).
    Migrate {
        /// The directory of documents.
        dir: PathBuf,
        /// The directory of migration steps.
        #[arg(long, value_name = "MIGDIR")]
        migrations: PathBuf,
        /// Migrate to this version instead of the latest step's.
        #[arg(long, value_name = "N")]
        to: Option<u64>,
        /// Show what would change and write nothing.
        #[arg(long)]
        dry_run: bool,
        /// The field that holds a document's version.
        #[arg(long, default_value = "schema_version")]
        field: String,
        /// Write migrated documents indented.
        #[arg(long)]
        pretty: bool,
        /// Kill a step (and every process it started) that runs longer than SECS on one
        /// document; the migration then fails and changes nothing.
        #[arg(long, value_name = "SECS", value_parser = parse_timeout, default_value = "60")]
        step_timeout: Duration,
    },
    /// Apply many JSON operations from standard input, in parallel, with group commit.
    ///
    /// One operation per line: {"op":"write","path":P,"value":V} replaces P with V;
    /// {"op":"merge","path":P,"patch":M} applies an RFC 7396 merge patch to P. Operations on
    /// one file apply in order, under its lock. A malformed line is reported with its number
    /// and applies nothing. Exits 1 if any operation failed.
    Batch {
        /// Worker threads (default: four per CPU, since they mostly wait for fsyncs).
        #[arg(long, value_name = "N")]
        jobs: Option<usize>,
        #[command(flatten)]
        write: BatchArgs,
    },
    /// Prove the guarantees on this filesystem: SIGKILL writers and updaters at random, check
    /// every file, checksum and counter after each round, and print a table.
    ///
    /// Exits 1 if any file was corrupt, any update lost, or any checksum raised a false
    /// alarm. Run it on the disk and mount options you rely on.
    Torture {
        /// Where to work (default: a new directory here, removed afterwards if all went well).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// How long to run.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Worker processes per round (half writers, half updaters; at least 2).
        #[arg(long, default_value_t = 4)]
        processes: usize,
    },
    /// A worker of `torture` (internal).
    #[command(name = "__torture-worker", hide = true)]
    TortureWorker {
        role: String,
        id: usize,
        #[arg(value_parser = parse_durability)]
        level: Durability,
        first: u64,
    },
    /// Replace FILE with CMD's output, CMD reading FILE's current content, under the lock.
    ///
    /// CMD gets FILE's content on standard input (nothing when FILE does not exist). If CMD
    /// exits 0 (and, with --json, prints valid JSON), its output replaces FILE atomically;
    /// otherwise FILE is untouched. No other durafile writer can change FILE in between, so
    /// concurrent updates are never lost. Example: durafile update n.json --json -- jq '.n += 1'
    Update {
        /// The file to update.
        file: PathBuf,
        #[command(flatten)]
        write: WriteArgs,
        /// The command that makes the new content, after `--`.
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<OsString>,
    },
}

#[derive(Debug, Subcommand)]
enum StateCmd {
    /// Print the current state: the newest generation that verifies and parses.
    ///
    /// When newer generations are damaged, says so on stderr and prints the one used.
    Show {
        #[command(flatten)]
        state: StateArgs,
    },
    /// List the generations, newest first, with their size and whether they load.
    History {
        #[command(flatten)]
        state: StateArgs,
    },
    /// Make generation GEN current again (as a new generation; no generation is removed).
    Rollback {
        #[command(flatten)]
        state: StateArgs,
        /// The generation to restore, as `history` numbers it.
        generation: u64,
    },
}

#[derive(Debug, Args)]
struct StateArgs {
    /// The state directory.
    dir: PathBuf,
    /// The state's name (files NAME.N.json).
    #[arg(long, default_value = "state")]
    name: String,
}

impl StateArgs {
    /// The state, without pruning: the application decides how many generations to keep.
    fn open(&self) -> Result<StateManager, Failure> {
        if remote::is_url(&self.dir) {
            remote::supported(&self.dir)?;
        } else if !self.dir.is_dir() {
            return Err(Failure::new(format!(
                "state {}: no such directory",
                quote(&self.dir)
            )));
        }
        let files = FileManager::new(Options::new()).pretty(true);
        Ok(StateManager::open(&self.dir, files)?
            .name(&self.name)?
            .keep(usize::MAX))
    }
}

#[derive(Debug, Args)]
struct BatchArgs {
    /// full, consistent or none (see `write --help`).
    #[arg(long, default_value = "full", value_parser = parse_durability)]
    durability: Durability,
    /// Keep SHA-256 checksum files for the documents written.
    #[arg(long)]
    checksum: bool,
    /// Give up on a document whose lock stays held for SECS seconds.
    #[arg(long, value_name = "SECS", value_parser = parse_timeout)]
    timeout: Option<Duration>,
}

#[derive(Debug, Args)]
struct WriteArgs {
    /// Refuse input that is not one valid JSON document (FILE is then untouched).
    #[arg(long)]
    json: bool,
    /// full: survives power loss once written; consistent: old or new after power loss;
    /// none: no fsync (atomic only against crashes of this process).
    #[arg(long, default_value = "full", value_parser = parse_durability)]
    durability: Durability,
    /// Give up waiting for FILE's lock after SECS seconds (fractions allowed).
    #[arg(long, value_name = "SECS", value_parser = parse_timeout)]
    timeout: Option<Duration>,
    /// Keep a SHA-256 checksum in FILE.sha256 (sha256sum format). A FILE that has one keeps it
    /// up to date even without this flag.
    #[arg(long)]
    checksum: bool,
}

impl WriteArgs {
    fn options(&self) -> Options {
        let opts = Options::new()
            .durability(self.durability)
            .checksum(self.checksum);
        match self.timeout {
            Some(t) => opts.lock_timeout(t),
            None => opts,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    durafile::lock::on_wait(waiting);
    match run(cli.command) {
        Ok(code) => code,
        Err(failure) => failure.report(),
    }
}

/// Says who a lock wait is for, once it has lasted a second: a silent wait looks like a hang.
fn waiting(w: &durafile::lock::Waiting<'_>) {
    let mut held = String::new();
    if let Some(age) = w.held_since.and_then(|t| t.elapsed().ok()) {
        held.push_str(&format!("held since {} s ago", age.as_secs()));
    }
    if let Some(pid) = w.holder_pid {
        let sep = if held.is_empty() { "held" } else { "" };
        held.push_str(&format!("{sep} by pid {pid}"));
    }
    if held.is_empty() {
        held = format!(
            "held elsewhere; `fuser {}` names the holder",
            quote(w.lock_file)
        );
    }
    eprintln!(
        "durafile: waiting for the lock on {} ({held})",
        quote(w.path)
    );
}

fn run(cmd: Cmd) -> Result<ExitCode, Failure> {
    match cmd {
        Cmd::Write { file, write, mode } if remote::is_url(&file) => {
            if mode.is_some() {
                return Err(Failure::new(format!(
                    "write {}: --mode applies to files, not to objects",
                    file.display()
                )));
            }
            remote::write(&file, &write)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Write { file, write, mode } => {
            signals::install()?;
            let opts = match mode {
                Some(mode) => write.options().mode(mode),
                None => write.options(),
            };
            let mut out = open_for_writing(&file, &opts)?;
            signals::hold().set_temp(Some(out.temp_path()));
            stream::pump(
                &mut io::stdin().lock(),
                &mut out,
                write.json,
                "standard input",
            )?;
            let _commit = signals::hold();
            out.commit()?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Cat { file, checksum } if remote::is_url(&file) => {
            remote::cat(&file, checksum)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Cat { file, checksum } => {
            let mut verified = durafile::open(&file, &Options::new().checksum(checksum))?;
            unless_broken_pipe(io::copy(&mut verified, &mut io::stdout().lock()))
                .map_err(|e| Failure::new(format!("cat {}: {e}", quote(&file))))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Verify {
            paths,
            recursive,
            json,
        } => Ok(match verify::run(&paths, recursive, json)? {
            true => ExitCode::SUCCESS,
            false => ExitCode::FAILURE,
        }),
        Cmd::Recover { dir, dry_run } => recover(&dir, dry_run),
        Cmd::State(cmd) => state(cmd),
        Cmd::Torture {
            dir,
            seconds,
            processes,
        } => torture::run(torture::Args {
            dir,
            seconds,
            processes,
        }),
        Cmd::TortureWorker {
            role,
            id,
            level,
            first,
        } => torture::worker(&role, id, level, first),
        Cmd::Migrate {
            dir,
            migrations,
            to,
            dry_run,
            field,
            pretty,
            step_timeout,
        } => {
            if remote::is_url(&dir) {
                remote::supported(&dir)?;
            }
            migrate::run(migrate::Args {
                dir: &dir,
                migrations: &migrations,
                to,
                dry_run,
                field: &field,
                pretty,
                step_timeout,
            })
        }
        Cmd::Batch { jobs, write } => {
            let mut opts = Options::new()
                .durability(write.durability)
                .checksum(write.checksum);
            if let Some(t) = write.timeout {
                opts = opts.lock_timeout(t);
            }
            batch::run(FileManager::new(opts), jobs)
        }
        Cmd::Lock {
            file,
            shared,
            timeout,
            command,
        } => {
            let mode = if shared {
                LockMode::Shared
            } else {
                LockMode::Exclusive
            };
            let guard = match inherited::adopt(&file, mode)? {
                Some(guard) => guard,
                None => lock::acquire(&file, mode, timeout)?,
            };
            let mut cmd = Command::new(&command[0]);
            cmd.args(&command[1..]);
            inherited::advertise(&mut cmd, &guard)?;
            // Like flock(1), the command inherits the locked descriptor, so the lock stays
            // held while it runs even if this process is killed.
            let fd = guard.as_fd().as_raw_fd();
            // SAFETY: fcntl is async-signal-safe, and `fd` stays open until the child execs.
            unsafe {
                cmd.pre_exec(move || match libc::fcntl(fd, libc::F_SETFD, 0) {
                    -1 => Err(io::Error::last_os_error()),
                    _ => Ok(()),
                });
            }
            let status = spawn(&command, &mut cmd)?
                .wait()
                .map_err(|e| Failure::new(format!("wait for {}: {e}", show(&command))))?;
            Ok(failure::exit_code(status))
        }
        Cmd::Update {
            file,
            write,
            command,
        } if remote::is_url(&file) => {
            remote::update(&file, &write, &command)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Update {
            file,
            write,
            command,
        } => update(&file, &write, &command),
    }
}

/// `durafile state ...`: the StateManager from the shell.
fn state(cmd: StateCmd) -> Result<ExitCode, Failure> {
    let mut out = io::stdout().lock();
    let stdout_err = |e: io::Error| Failure::new(format!("write standard output: {e}"));
    match cmd {
        StateCmd::Show { state } => {
            let states = state.open()?;
            let Some(loaded) = states.load_current_state::<serde_json::Value>()? else {
                return Err(Failure::new(format!(
                    "state {}: no state named {:?} has been saved there",
                    quote(&state.dir),
                    state.name
                )));
            };
            for (generation, why) in &loaded.skipped {
                eprintln!("durafile: skipping damaged generation {generation}: {why}");
            }
            if loaded.is_fallback() {
                eprintln!(
                    "durafile: showing generation {}, the newest that loads",
                    loaded.generation
                );
            }
            serde_json::to_writer_pretty(&mut out, &loaded.state)
                .map_err(|e| stdout_err(e.into()))?;
            writeln!(out).map_err(stdout_err)?;
        }
        StateCmd::History { state } => {
            let states = state.open()?;
            for generation in states.history()? {
                let size = generation.path.metadata().map_or(0, |m| m.len());
                let status =
                    match states.load_generation::<serde::de::IgnoredAny>(generation.number) {
                        Ok(_) => "ok".to_owned(),
                        Err(e) => format!("DAMAGED: {e}"),
                    };
                writeln!(
                    out,
                    "{:>8}  {:>10} bytes  {status}",
                    generation.number, size
                )
                .map_err(stdout_err)?;
            }
        }
        StateCmd::Rollback { state, generation } => {
            let new = state.open()?.rollback(generation)?;
            writeln!(out, "restored generation {generation} as generation {new}")
                .map_err(stdout_err)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `durafile recover`: the library's recovery, reported one finding per line.
fn recover(dir: &Path, dry_run: bool) -> Result<ExitCode, Failure> {
    let found = durafile::recover::recover(dir, dry_run)?;
    let (removed, completed) = if dry_run {
        ("would remove", "would complete")
    } else {
        ("removed", "completed")
    };
    let mut out = io::stdout().lock();
    let mut say = |line: String| {
        writeln!(out, "{line}").map_err(|e| Failure::new(format!("write standard output: {e}")))
    };
    // Names quoted: a shared directory holds other users' names, which may hold escape
    // sequences or newlines.
    for p in &found.orphans.removed {
        say(format!("{removed} orphan temp file {}", quote(p)))?;
    }
    for p in &found.orphans.in_use {
        say(format!("left alone (a live writer holds it): {}", quote(p)))?;
    }
    for left in &found.orphans.left_alone {
        say(format!("left alone {}: {}", quote(&left.path), left.reason))?;
    }
    for e in &found.not_ours {
        say(format!("NOT OURS {e}"))?;
    }
    for e in &found.errors {
        say(format!("ERROR {e}"))?;
    }
    for p in &found.checksums_completed {
        say(format!(
            "{completed} interrupted checksum update {}",
            quote(p)
        ))?;
    }
    for p in &found.missing {
        say(format!(
            "MISSING {}: its checksum file exists but it does not (deleted, or a first write \
             interrupted by a crash: restore it, or delete the checksum file)",
            quote(p)
        ))?;
    }
    for p in &found.busy {
        say(format!(
            "BUSY {}: its lock stayed held; run recover again",
            quote(p)
        ))?;
    }
    for e in &found.damaged {
        say(format!("DAMAGED {e}"))?;
    }
    say(format!(
        "{}: {} orphan(s), {} checksum(s) completed, {} damaged, {} missing, {} busy",
        quote(dir),
        found.orphans.removed.len(),
        found.checksums_completed.len(),
        found.damaged.len(),
        found.missing.len(),
        found.busy.len()
    ))?;
    let clean = found.damaged.is_empty()
        && found.missing.is_empty()
        && found.busy.is_empty()
        && found.errors.is_empty();
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `durafile update`: the library's locked read-modify-write, with a child process as the
/// modification and both sides streamed, so FILE never has to fit in memory.
fn update(file: &Path, write: &WriteArgs, command: &[OsString]) -> Result<ExitCode, Failure> {
    signals::install()?;
    let mut out = open_for_writing(file, &write.options())?;
    signals::hold().set_temp(Some(out.temp_path()));
    let current = out.open_current()?;
    // The child is registered before it can run: a signal from here on reaches it.
    let mut registered = signals::hold();
    let mut child = spawn_filter(command)?;
    registered.set_child(Some(child.id()));
    drop(registered);
    let mut stdin = child.stdin.take().expect("piped");
    let feeder = std::thread::spawn(move || match current {
        Some(mut src) => unless_broken_pipe(io::copy(&mut src, &mut stdin)),
        None => Ok(()),
    });
    let mut stdout = child.stdout.take().expect("piped");
    let what = format!("the output of {}", show(command));
    let pumped = stream::pump(&mut stdout, &mut out, write.json, &what);
    drop(stdout);
    // Not reaped until it is unregistered: a forwarded signal never reaches a reused pid.
    process::wait_exited(child.id());
    signals::hold().set_child(None);
    let status = child
        .wait()
        .map_err(|e| Failure::new(format!("wait for {}: {e}", show(command))))?;
    let fed = feeder.join().expect("feeder thread does not panic");
    // When we stopped reading (invalid JSON, a full disk), the command may have died of the
    // closed pipe: our error is the cause, not its SIGPIPE.
    let killed_by_our_pipe =
        std::os::unix::process::ExitStatusExt::signal(&status) == Some(libc::SIGPIPE);
    if pumped.is_err() && (status.success() || killed_by_our_pipe) {
        return pumped.map(|()| ExitCode::FAILURE);
    }
    if !status.success() {
        return Err(Failure::with_code(
            format!(
                "update {}: {} failed ({status}); {} is unchanged",
                quote(file),
                show(command),
                quote(file)
            ),
            failure::exit_code(status),
        ));
    }
    fed.map_err(|e| {
        Failure::new(format!(
            "update {}: feeding the current content to {}: {e}; {} is unchanged",
            quote(file),
            show(command),
            quote(file)
        ))
    })?;
    pumped?;
    let _commit = signals::hold();
    out.commit()?;
    Ok(ExitCode::SUCCESS)
}

/// The atomic file for `path`, under the lock an enclosing `durafile lock` holds for us, or
/// under the lock it takes.
fn open_for_writing(path: &Path, opts: &Options) -> Result<AtomicFile, Failure> {
    Ok(match inherited::adopt(path, LockMode::Exclusive)? {
        Some(held) => AtomicFile::with_held_lock(path, opts, held)?,
        None => AtomicFile::new(path, opts)?,
    })
}

fn spawn(command: &[OsString], cmd: &mut Command) -> Result<std::process::Child, Failure> {
    cmd.spawn().map_err(|e| {
        let code = if e.kind() == io::ErrorKind::NotFound {
            127
        } else {
            126
        };
        Failure::with_code(format!("run {}: {e}", show(command)), ExitCode::from(code))
    })
}

/// `command` as an `update` filter: the current content on its stdin, the new on its stdout.
fn spawn_filter(command: &[OsString]) -> Result<std::process::Child, Failure> {
    spawn(
        command,
        Command::new(&command[0])
            .args(&command[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped()),
    )
}

/// `result`, with a closed pipe counted as success: a reader that stops early (`head`, or an
/// update command that does not read all of its input, say `echo 0`) is not our failure.
fn unless_broken_pipe<T>(result: io::Result<T>) -> io::Result<()> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other.map(drop),
    }
}

fn show(command: &[OsString]) -> String {
    format!("`{}`", quote(Path::new(&command[0])))
}

fn parse_durability(s: &str) -> Result<Durability, String> {
    s.parse()
        .map_err(|e: durafile::ParseDurabilityError| e.to_string())
}

fn parse_mode(s: &str) -> Result<u32, String> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if mode <= 0o7777 => Ok(mode),
        _ => Err(format!(
            "{s:?} is not an octal file mode (expected e.g. 644 or 0640)"
        )),
    }
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .ok_or_else(|| format!("{s:?} is not a number of seconds (expected e.g. 2 or 0.5)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_as_octal() {
        assert_eq!(parse_mode("644"), Ok(0o644));
        assert_eq!(parse_mode("0o2750"), Ok(0o2750));
        assert!(parse_mode("999").is_err());
        assert!(parse_mode("17777").is_err());
    }

    #[test]
    fn timeouts_parse_as_seconds() {
        assert_eq!(parse_timeout("0.25"), Ok(Duration::from_millis(250)));
        assert!(parse_timeout("-1").is_err());
        assert!(parse_timeout("soon").is_err());
    }

    #[test]
    fn cli_definition_is_valid() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
