//! `durafile`: atomic, locked file writes from the shell. A thin shell over the library: every
//! guarantee comes from `durafile` itself; this file parses arguments, moves bytes between
//! standard streams and child processes, and turns errors into one line and an exit status.
//!
//! Exit status: 0 on success, 1 when the operation failed, 2 for a usage error; `lock` and
//! `update` pass on their command's non-zero status.

mod failure;
mod stream;

use std::ffi::OsString;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use durafile::lock::{self, LockMode};
use durafile::{AtomicFile, Durability, Options};

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
    /// Print FILE.
    Cat {
        /// The file to print.
        file: PathBuf,
    },
    /// Run CMD while holding FILE's durafile lock, like flock(1).
    ///
    /// The lock is the one every durafile writer of FILE takes, so CMD runs while no durafile
    /// write or update of FILE is in progress. Exits with CMD's status.
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
}

impl WriteArgs {
    fn options(&self) -> Options {
        let opts = Options::new().durability(self.durability);
        match self.timeout {
            Some(t) => opts.lock_timeout(t),
            None => opts,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(failure) => failure.report(),
    }
}

fn run(cmd: Cmd) -> Result<ExitCode, Failure> {
    match cmd {
        Cmd::Write { file, write, mode } => {
            let opts = match mode {
                Some(mode) => write.options().mode(mode),
                None => write.options(),
            };
            let mut out = AtomicFile::new(&file, &opts)?;
            stream::pump(
                &mut io::stdin().lock(),
                &mut out,
                write.json,
                "standard input",
            )?;
            out.commit()?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Cat { file } => {
            let bytes = durafile::read(&file, &Options::new())?;
            match io::stdout().lock().write_all(&bytes) {
                Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
                    Err(Failure::new(format!("write standard output: {e}")))
                }
                _ => Ok(ExitCode::SUCCESS),
            }
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
            let _guard = lock::acquire(&file, mode, timeout)?;
            let status = spawn(&command, Command::new(&command[0]).args(&command[1..]))?
                .wait()
                .map_err(|e| Failure::new(format!("wait for {}: {e}", show(&command))))?;
            Ok(failure::exit_code(status))
        }
        Cmd::Update {
            file,
            write,
            command,
        } => update(&file, &write, &command),
    }
}

/// `durafile update`: the library's locked read-modify-write, with a child process as the
/// modification and both sides streamed, so FILE never has to fit in memory.
fn update(file: &Path, write: &WriteArgs, command: &[OsString]) -> Result<ExitCode, Failure> {
    let mut out = AtomicFile::new(file, &write.options())?;
    let current = out.open_current()?;
    let mut child = spawn(
        command,
        Command::new(&command[0])
            .args(&command[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped()),
    )?;
    let mut stdin = child.stdin.take().expect("piped");
    let feeder = std::thread::spawn(move || match current {
        // A command that stops reading early (say, `echo 0`) closes the pipe: not an error.
        Some(mut src) => match io::copy(&mut src, &mut stdin) {
            Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(e),
            _ => Ok(()),
        },
        None => Ok(()),
    });
    let mut stdout = child.stdout.take().expect("piped");
    let what = format!("the output of {}", show(command));
    let pumped = stream::pump(&mut stdout, &mut out, write.json, &what);
    drop(stdout);
    let status = child
        .wait()
        .map_err(|e| Failure::new(format!("wait for {}: {e}", show(command))))?;
    let fed = feeder.join().expect("feeder thread does not panic");
    if !status.success() {
        return Err(Failure::with_code(
            format!(
                "update {}: {} failed ({status}); {} is unchanged",
                file.display(),
                show(command),
                file.display()
            ),
            failure::exit_code(status),
        ));
    }
    fed.map_err(|e| {
        Failure::new(format!(
            "update {}: feeding the current content to {}: {e}; {} is unchanged",
            file.display(),
            show(command),
            file.display()
        ))
    })?;
    pumped?;
    out.commit()?;
    Ok(ExitCode::SUCCESS)
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

fn show(command: &[OsString]) -> String {
    format!("`{}`", command[0].to_string_lossy())
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
