//! The one error type of durafile.
//!
//! Every error says which step failed, on which path, with the OS error that caused it and,
//! where the cause is one a person can act on (a full disk, a read-only mount, a directory
//! that is not writable), what to do about it. The `Display` form is one line:
//! `<step> <path>: <cause> (<hint>)`, which is exactly what the `durafile` command prints
//! after `durafile: `.
//!
//! An error also says what state it left behind. Every step before the rename leaves the
//! target byte-for-byte untouched and removes the temp file; only a failed fsync of the
//! directory comes after the rename, and its message says that the new content is in place
//! but its durability is unknown.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `Result<T, durafile::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The step of an operation that failed.
///
/// Steps up to and including [`Step::Rename`] leave the target untouched when they fail;
/// [`Step::SyncDir`] fails after the new content became visible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Step {
    /// Following symbolic links from the path given to the file to replace.
    Resolve,
    /// Reading the metadata of the existing target.
    Inspect,
    /// Opening, creating or locking the sidecar lock file.
    Lock,
    /// Creating the temp file beside the target.
    CreateTemp,
    /// Writing the new content into the temp file.
    Write,
    /// Giving the temp file the target's mode and owner.
    SetPermissions,
    /// fsync of the temp file (`F_FULLFSYNC` on macOS).
    Sync,
    /// Renaming the temp file over the target.
    Rename,
    /// fsync of the target's directory after the rename.
    SyncDir,
    /// Reading the current content of a file.
    Read,
    /// Listing a directory.
    ReadDir,
    /// Creating a directory.
    CreateDir,
    /// Removing a temp file.
    Remove,
    /// Recording the new digest beside the old one in the checksum sidecar, before the rename.
    ChecksumBegin,
    /// Reducing the checksum sidecar to the new digest, after the rename.
    ChecksumFinish,
    /// Reading the checksum sidecar to verify a file.
    Verify,
}

impl Step {
    fn verb(self) -> &'static str {
        match self {
            Step::Resolve => "resolve",
            Step::Inspect => "inspect",
            Step::Lock => "lock",
            Step::CreateTemp => "create temp file for",
            Step::Write => "write",
            Step::SetPermissions => "set permissions for",
            Step::Sync => "fsync",
            Step::Rename => "rename onto",
            Step::SyncDir => "fsync directory of",
            Step::Read => "read",
            Step::ReadDir => "list",
            Step::CreateDir => "create directory",
            Step::Remove => "remove",
            Step::ChecksumBegin => "record the checksum of",
            Step::ChecksumFinish => "finish the checksum of",
            Step::Verify => "verify",
        }
    }

    /// Whether a failure at this step leaves the target exactly as it was.
    fn leaves_target_untouched(self) -> bool {
        matches!(
            self,
            Step::Resolve
                | Step::Inspect
                | Step::Lock
                | Step::CreateTemp
                | Step::Write
                | Step::SetPermissions
                | Step::Sync
                | Step::ChecksumBegin
                | Step::Rename
        )
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.verb())
    }
}

/// Everything that can go wrong in durafile.
///
/// # Examples
///
/// ```
/// use durafile::{Error, Options, Step};
///
/// let dir = tempfile::tempdir()?;
/// let missing = dir.path().join("no/such/dir/state.json");
/// let err = durafile::write(&missing, b"{}", &Options::new()).unwrap_err();
/// assert_eq!(err.step(), Some(Step::Lock));
/// assert_eq!(err.path(), missing);
/// assert!(err.to_string().starts_with("lock "));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system call failed at `step`.
    #[error("{} {}: {}{}", step, path.display(), source, Hint(*step, source))]
    Io {
        /// The step that failed.
        step: Step,
        /// The file the operation was about (the target, not its temp file).
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// The target exists and is not a regular file (or a symlink to one).
    #[error(
        "inspect {}: it is a {kind}, not a regular file (durafile only replaces regular files; nothing was changed)",
        path.display()
    )]
    NotRegularFile {
        /// The path, after following symbolic links.
        path: PathBuf,
        /// What it is instead: "directory", "fifo", "socket", "device".
        kind: &'static str,
    },

    /// A path that names no file, such as `/` or `dir/..`.
    #[error("resolve {}: the path does not name a file", path.display())]
    NoFileName {
        /// The path as given.
        path: PathBuf,
    },

    /// The lock was not acquired within the timeout.
    #[error(
        "lock {}: still held elsewhere after {:.1?} (retry later, or find the holder with `fuser {}`)",
        path.display(),
        waited,
        lock_file.display()
    )]
    LockTimeout {
        /// The data file whose lock was wanted.
        path: PathBuf,
        /// The sidecar lock file that is held.
        lock_file: PathBuf,
        /// How long durafile waited.
        waited: Duration,
    },

    /// The content matches none of the digests its checksum sidecar lists: it was changed
    /// outside durafile, or the disk corrupted it.
    #[error(
        "verify {}: content does not match its checksum (expected {}, found {}): it was changed outside durafile or is corrupt (restore it from a backup; `durafile recover` lists every damaged file)",
        path.display(),
        expected.join(" or "),
        actual
    )]
    ChecksumMismatch {
        /// The data file.
        path: PathBuf,
        /// The digests the sidecar lists, in hex.
        expected: Vec<String>,
        /// The digest of the content found, in hex.
        actual: String,
    },

    /// Checksums are required ([`crate::Options::checksum`]) and the file has no sidecar.
    #[error(
        "verify {}: checksums are required and {} is missing (restore it, or rewrite the file with checksums on)",
        path.display(),
        sidecar.display()
    )]
    MissingChecksum {
        /// The data file.
        path: PathBuf,
        /// The sidecar that should exist.
        sidecar: PathBuf,
    },

    /// The checksum sidecar is not in `sha256sum` format for this file.
    #[error(
        "verify {}: the checksum file {} is malformed: {reason} (restore it, or delete it and rewrite the data with checksums on)",
        path.display(),
        sidecar.display()
    )]
    BadChecksumFile {
        /// The data file.
        path: PathBuf,
        /// The malformed sidecar.
        sidecar: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// The file is not valid JSON, or not JSON of the expected shape.
    #[error(
        "parse {}: {source} (fix or restore the file; durafile wrote it whole, so this content came from elsewhere or from an older program version)",
        path.display()
    )]
    InvalidJson {
        /// The file.
        path: PathBuf,
        /// serde_json's error, with [`line`](serde_json::Error::line) and
        /// [`column`](serde_json::Error::column).
        #[source]
        source: serde_json::Error,
    },

    /// The value could not be serialised to JSON (for instance a map with non-string keys).
    #[error("serialize {}: {source} (the target is unchanged)", path.display())]
    Serialize {
        /// The file that was to be written.
        path: PathBuf,
        /// serde_json's error.
        #[source]
        source: serde_json::Error,
    },

    /// A key that cannot name a document: it could escape the directory, hide, or collide
    /// with durafile's own files.
    #[error("key {key:?}: {reason} (nothing was read or written)")]
    InvalidKey {
        /// The key as given.
        key: String,
        /// Why it is refused.
        reason: &'static str,
    },

    /// No generation of the state could be loaded: every one failed to read, verify or parse.
    #[error(
        "load state in {}: no generation loads; newest failure: {newest} (restore the directory from a backup)",
        dir.display()
    )]
    NoGoodState {
        /// The state directory.
        dir: PathBuf,
        /// Why the newest generation failed.
        newest: Box<Error>,
    },

    /// A schema migration could not migrate a document. In a directory migration nothing was
    /// changed: every document is still at its old version.
    #[error(
        "migrate {}: {reason} (this migration changed no document)",
        path.display()
    )]
    Migration {
        /// The document.
        path: PathBuf,
        /// What went wrong: the failing step and its message, or a bad version field.
        reason: String,
    },

    /// The calling thread already holds the lock on this path; taking it again would deadlock.
    #[error(
        "lock {}: this thread already holds this file's lock, and taking it again would deadlock (use the guard you hold)",
        path.display()
    )]
    AlreadyLocked {
        /// The data file whose lock is already held.
        path: PathBuf,
    },

    /// An object store refused or failed a request (`s3://` URLs, see `remote`).
    #[error("{step} {}: {reason}", path.display())]
    Remote {
        /// The step that failed.
        step: Step,
        /// The object's URL.
        path: PathBuf,
        /// The store's or the client's message.
        reason: String,
    },

    /// An update of an object was refused because the store is not configured for
    /// conditional writes: without them concurrent updates would silently overwrite each
    /// other.
    #[error(
        "update {}: {reason}; without conditional writes concurrent updates would overwrite each other, so nothing was written (use a store that supports If-Match and If-None-Match, such as AWS S3, R2 or MinIO, with AWS_CONDITIONAL_PUT=etag, the default)",
        path.display()
    )]
    ConditionalWritesUnavailable {
        /// The object's URL.
        path: PathBuf,
        /// What is missing.
        reason: &'static str,
    },

    /// Other writers changed the object between every read and write of an update.
    #[error(
        "update {}: other writers changed it before each of {attempts} attempts could write; this update wrote nothing (retry later, or write less often)",
        path.display()
    )]
    UpdateConflict {
        /// The object's URL.
        path: PathBuf,
        /// How many times durafile read, ran the change and tried to write.
        attempts: u32,
    },
}

impl Error {
    pub(crate) fn io(step: Step, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            step,
            path: path.into(),
            source,
        }
    }

    /// The step that failed, for errors that happen at one.
    pub fn step(&self) -> Option<Step> {
        match self {
            Error::Io { step, .. } => Some(*step),
            Error::NotRegularFile { .. } => Some(Step::Inspect),
            Error::NoFileName { .. } => Some(Step::Resolve),
            Error::LockTimeout { .. } | Error::AlreadyLocked { .. } => Some(Step::Lock),
            Error::ChecksumMismatch { .. }
            | Error::MissingChecksum { .. }
            | Error::BadChecksumFile { .. } => Some(Step::Verify),
            Error::InvalidJson { .. } => Some(Step::Read),
            Error::Serialize { .. } => Some(Step::Write),
            Error::InvalidKey { .. } => Some(Step::Resolve),
            Error::NoGoodState { .. } => Some(Step::Read),
            Error::Migration { .. } => Some(Step::Write),
            Error::Remote { step, .. } => Some(*step),
            Error::ConditionalWritesUnavailable { .. } | Error::UpdateConflict { .. } => {
                Some(Step::Write)
            }
        }
    }

    /// The file the failed operation was about.
    pub fn path(&self) -> &Path {
        match self {
            Error::Io { path, .. }
            | Error::NotRegularFile { path, .. }
            | Error::NoFileName { path }
            | Error::LockTimeout { path, .. }
            | Error::AlreadyLocked { path }
            | Error::ChecksumMismatch { path, .. }
            | Error::MissingChecksum { path, .. }
            | Error::BadChecksumFile { path, .. }
            | Error::InvalidJson { path, .. }
            | Error::Serialize { path, .. }
            | Error::Migration { path, .. }
            | Error::Remote { path, .. }
            | Error::ConditionalWritesUnavailable { path, .. }
            | Error::UpdateConflict { path, .. } => path,
            Error::InvalidKey { key, .. } => Path::new(key),
            Error::NoGoodState { dir, .. } => dir,
        }
    }

    /// The underlying OS error, if there is one.
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }

    /// Whether the target is guaranteed to be exactly as it was before the call.
    ///
    /// False only when the failure came after the new content was renamed into place.
    pub fn target_untouched(&self) -> bool {
        // A PUT whose reply was lost may have landed: an object's write failure proves nothing.
        if let Error::Remote {
            step: Step::Write, ..
        } = self
        {
            return false;
        }
        self.step().is_none_or(Step::leaves_target_untouched)
    }
}

impl From<Error> for io::Error {
    /// Keeps the OS error's kind so that callers matching on [`io::ErrorKind`] still can.
    fn from(err: Error) -> io::Error {
        let kind = match &err {
            Error::Io { source, .. } => source.kind(),
            Error::NotRegularFile { .. } => io::ErrorKind::InvalidInput,
            Error::NoFileName { .. } => io::ErrorKind::InvalidInput,
            Error::LockTimeout { .. } => io::ErrorKind::TimedOut,
            Error::AlreadyLocked { .. } => io::ErrorKind::Deadlock,
            Error::ChecksumMismatch { .. } | Error::BadChecksumFile { .. } => {
                io::ErrorKind::InvalidData
            }
            Error::MissingChecksum { .. } => io::ErrorKind::NotFound,
            Error::InvalidJson { .. } | Error::NoGoodState { .. } => io::ErrorKind::InvalidData,
            Error::Serialize { .. } | Error::InvalidKey { .. } => io::ErrorKind::InvalidInput,
            Error::Migration { .. } => io::ErrorKind::InvalidData,
            Error::Remote { .. } => io::ErrorKind::Other,
            Error::ConditionalWritesUnavailable { .. } => io::ErrorKind::Unsupported,
            Error::UpdateConflict { .. } => io::ErrorKind::ResourceBusy,
        };
        io::Error::new(kind, err)
    }
}

/// The actionable advice for an OS error at a step, with the state the failure left behind.
struct Hint<'a>(Step, &'a io::Error);

impl fmt::Display for Hint<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Hint(step, err) = *self;
        let advice = err.raw_os_error().and_then(|code| match code {
            libc::ENOSPC => Some("free space on that filesystem and retry"),
            libc::EDQUOT => Some("the disk quota is exhausted; free space or raise the quota"),
            libc::EACCES | libc::EPERM => Some(match step {
                Step::Lock | Step::CreateTemp | Step::Rename => {
                    "the directory must be writable by this user: a durable replace creates files beside the target"
                }
                _ => "check the file's and directory's permissions",
            }),
            libc::EROFS => Some("the filesystem is mounted read-only"),
            libc::EIO => Some("the device reported an I/O error; check the disk and the kernel log"),
            libc::ENOENT if step == Step::Lock || step == Step::CreateTemp => {
                Some("the directory does not exist; create it first")
            }
            libc::ENOTDIR => Some("a component of the path is not a directory"),
            libc::ELOOP => Some("too many levels of symbolic links"),
            libc::ENAMETOOLONG => Some("the file name is too long for this filesystem"),
            libc::EMFILE | libc::ENFILE => Some("too many open files; raise the limit (ulimit -n)"),
            libc::ENOLCK => Some("this filesystem does not support file locks"),
            _ => None,
        });
        let state = if step == Step::SyncDir {
            Some(
                "the new content is in place but its durability is unknown: it may not survive a power loss",
            )
        } else if step.leaves_target_untouched() && !matches!(step, Step::Read | Step::Resolve) {
            Some("the target is unchanged")
        } else {
            None
        };
        match (advice, state) {
            (Some(a), Some(s)) => write!(f, " ({a}; {s})"),
            (Some(one), None) | (None, Some(one)) => write!(f, " ({one})"),
            (None, None) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_names_step_path_cause_and_hint() {
        let err = Error::io(
            Step::Write,
            "/data/state.json",
            io::Error::from_raw_os_error(libc::ENOSPC),
        );
        let msg = err.to_string();
        assert!(msg.starts_with("write /data/state.json: "), "{msg}");
        assert!(msg.contains("os error 28"), "{msg}");
        assert!(msg.contains("free space"), "{msg}");
        assert!(msg.contains("the target is unchanged"), "{msg}");
        assert!(err.target_untouched());
    }

    #[test]
    fn directory_sync_failure_says_durability_is_unknown() {
        let err = Error::io(
            Step::SyncDir,
            "/data/state.json",
            io::Error::from_raw_os_error(libc::EIO),
        );
        assert!(err.to_string().contains("durability is unknown"));
        assert!(!err.target_untouched());
    }

    #[test]
    fn converts_to_io_error_keeping_kind() {
        let err = Error::io(Step::Read, "x", io::Error::from_raw_os_error(libc::ENOENT));
        let io: io::Error = err.into();
        assert_eq!(io.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn error_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Error>();
    }
}
