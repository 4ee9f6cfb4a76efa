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

    /// Whether the step only reads, and so can never change the target.
    fn only_reads(self) -> bool {
        matches!(self, Step::Read | Step::ReadDir | Step::Verify)
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
    #[error("{} {}: {}{}", step, quote(path), source, Paren(self.hint()))]
    Io {
        /// The step that failed.
        step: Step,
        /// The file the operation was about (the target, not its temp file).
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
        /// What to do, when durafile knows more about the cause than the error code says
        /// (which file is another user's, which limit ran out).
        advice: Option<String>,
    },

    /// durafile refused to use a file that another user controls in a shared directory: a
    /// symbolic link the kernel's `protected_symlinks` rule would not follow, a file that
    /// `protected_regular` would not let it write, or a lock file it cannot trust. Applied
    /// whatever the sysctls say, and on systems that have none.
    #[error(
        "{} {}: refusing {what} {} owned by {}: {reason}{}",
        step,
        quote(path),
        quote(file),
        Owner(*owner),
        Paren(self.hint())
    )]
    Refused {
        /// The step that refused.
        step: Step,
        /// The path the operation was about, as given.
        path: PathBuf,
        /// The link or file that was refused.
        file: PathBuf,
        /// What `file` is: "to follow the symbolic link", "to replace", "the lock file".
        what: &'static str,
        /// The uid that owns `file`.
        owner: u32,
        /// Why it is refused, and what to do.
        reason: &'static str,
    },

    /// The target is one of durafile's own files (a lock or temp file beside another file):
    /// replacing a lock file would let two writers hold "the" lock at once.
    #[error(
        "write {}: this is a durafile lock or temp file, not a data file; durafile does not replace its own files{}",
        quote(path),
        Paren(self.hint())
    )]
    OwnFile {
        /// The path as given.
        path: PathBuf,
    },

    /// The target exists and is not a regular file (or a symlink to one).
    #[error(
        "inspect {}: it is a {kind}, not a regular file{}",
        quote(path),
        Paren(self.hint())
    )]
    NotRegularFile {
        /// The path, after following symbolic links.
        path: PathBuf,
        /// What it is instead: "directory", "fifo", "socket", "device".
        kind: &'static str,
    },

    /// A path that names no file, such as `/` or `dir/..`.
    #[error("resolve {}: the path does not name a file", quote(path))]
    NoFileName {
        /// The path as given.
        path: PathBuf,
    },

    /// The lock was not acquired within the timeout.
    #[error(
        "lock {}: still held elsewhere after {:.1?}{}",
        quote(path),
        waited,
        Paren(self.hint())
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
        "verify {}: content does not match its checksum (expected {}, found {}): it was changed outside durafile or is corrupt{}",
        quote(path),
        expected.join(" or "),
        actual,
        Paren(self.hint())
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
        "verify {}: checksums are required and {} is missing{}",
        quote(path),
        quote(sidecar),
        Paren(self.hint())
    )]
    MissingChecksum {
        /// The data file.
        path: PathBuf,
        /// The sidecar that should exist.
        sidecar: PathBuf,
    },

    /// The file at the checksum sidecar's name is not durafile's checksum file for this file:
    /// most often the user's own `sha256sum` list, or a file in another format. durafile
    /// neither verifies against it nor changes it.
    #[error(
        "verify {}: {} is not durafile's checksum file: {reason}{}",
        quote(path),
        quote(sidecar),
        Paren(self.hint())
    )]
    BadChecksumFile {
        /// The data file.
        path: PathBuf,
        /// The file at the sidecar's name.
        sidecar: PathBuf,
        /// Why it is not durafile's.
        reason: String,
    },

    /// A file at the checksum sidecar's name that durafile will not read or replace: a link,
    /// a FIFO or other non-regular file, one owned by another user, or (where checksums were
    /// asked for) a file that is not durafile's own one-file format. Nothing was changed.
    #[error(
        "{step} {}: refused the checksum file {}: {reason}{}",
        quote(path),
        quote(sidecar),
        Paren(self.hint())
    )]
    ChecksumFileRefused {
        /// The step that read the sidecar: [`Step::Verify`] for a read, [`Step::ChecksumBegin`]
        /// for a write.
        step: Step,
        /// The data file.
        path: PathBuf,
        /// The file at the sidecar's name.
        sidecar: PathBuf,
        /// What it is.
        reason: String,
        /// What to do about it.
        advice: String,
    },

    /// The file is not valid JSON, or not JSON of the expected shape.
    #[error(
        "parse {}: {source}{}",
        quote(path),
        Paren(self.hint())
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
    #[error("serialize {}: {source}{}", quote(path), Paren(self.hint()))]
    Serialize {
        /// The file that was to be written.
        path: PathBuf,
        /// serde_json's error.
        #[source]
        source: serde_json::Error,
    },

    /// A key that cannot name a document: it could escape the directory, hide, or collide
    /// with durafile's own files.
    #[error("key {key:?}: {reason}{}", Paren(self.hint()))]
    InvalidKey {
        /// The key as given.
        key: String,
        /// Why it is refused.
        reason: &'static str,
    },

    /// No generation of the state could be loaded: every one failed to read, verify or parse.
    #[error(
        "load state in {}: no generation loads; newest failure: {newest}{}",
        quote(dir),
        Paren(self.hint())
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
        "migrate {}: {reason}{}",
        quote(path),
        Paren(self.hint())
    )]
    Migration {
        /// The document.
        path: PathBuf,
        /// What went wrong: the failing step and its message, or a bad version field.
        reason: String,
    },

    /// The calling thread already holds the lock on this path; taking it again would deadlock.
    #[error(
        "lock {}: this thread already holds this file's lock, and taking it again would deadlock{}",
        quote(path),
        Paren(self.hint())
    )]
    AlreadyLocked {
        /// The data file whose lock is already held.
        path: PathBuf,
    },

    /// An object store refused or failed a request (`s3://` URLs, see `remote`).
    #[error("{step} {}: {reason}", quote(path))]
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
        "update {}: {reason}; without conditional writes concurrent updates would overwrite each other, so nothing was written{}",
        quote(path),
        Paren(self.hint())
    )]
    ConditionalWritesUnavailable {
        /// The object's URL.
        path: PathBuf,
        /// What is missing.
        reason: &'static str,
    },

    /// Other writers changed the object between every read and write of an update.
    #[error(
        "update {}: other writers changed it before each of {attempts} attempts could write; this update wrote nothing{}",
        quote(path),
        Paren(self.hint())
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
        let path = path.into();
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Error::io_in(step, path, &dir, source)
    }

    /// [`Error::io`] for a failure in `dir` (the target's real directory), which decides the
    /// advice for an ENOSPC (no inodes left, or no space) and an EACCES (the directory is not
    /// writable, or something else is refused).
    pub(crate) fn io_in(
        step: Step,
        path: impl Into<PathBuf>,
        dir: &Path,
        source: io::Error,
    ) -> Error {
        let advice = match source.raw_os_error() {
            Some(libc::ENOSPC) if crate::sys::out_of_inodes(dir) => Some(format!(
                "the filesystem of {} has no free inodes left (see `df -i`; bytes may remain): delete files there and retry",
                quote(dir)
            )),
            Some(libc::EACCES | libc::EPERM)
                if matches!(step, Step::Lock | Step::CreateTemp | Step::Rename) =>
            {
                Some(if crate::sys::may_write_dir(dir) {
                    "check the permissions of the files beside the target".to_owned()
                } else {
                    format!(
                        "the directory {} must be writable by this user: a durable replace creates files beside the target",
                        quote(dir)
                    )
                })
            }
            _ => None,
        };
        Error::Io {
            step,
            path: path.into(),
            source,
            advice,
        }
    }

    /// An [`Error::Io`] whose advice durafile worked out at the failure.
    pub(crate) fn io_advised(
        step: Step,
        path: impl Into<PathBuf>,
        source: io::Error,
        advice: String,
    ) -> Error {
        Error::Io {
            step,
            path: path.into(),
            source,
            advice: Some(advice),
        }
    }

    /// The step that failed, for errors that happen at one.
    pub fn step(&self) -> Option<Step> {
        match self {
            Error::Io { step, .. }
            | Error::Refused { step, .. }
            | Error::ChecksumFileRefused { step, .. } => Some(*step),
            Error::OwnFile { .. } => Some(Step::Resolve),
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
            | Error::Refused { path, .. }
            | Error::OwnFile { path }
            | Error::NotRegularFile { path, .. }
            | Error::NoFileName { path }
            | Error::LockTimeout { path, .. }
            | Error::AlreadyLocked { path }
            | Error::ChecksumMismatch { path, .. }
            | Error::MissingChecksum { path, .. }
            | Error::BadChecksumFile { path, .. }
            | Error::ChecksumFileRefused { path, .. }
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
    /// False only when the failure came after the new content was renamed into place (or,
    /// for a removal, may have come after a file was removed). A failed read never changes
    /// the target, so every error of a read-side step ([`Step::Read`], [`Step::ReadDir`],
    /// [`Step::Verify`]) says true.
    ///
    /// # Examples
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let err = durafile::read(dir.path().join("missing"), &durafile::Options::new()).unwrap_err();
    /// assert!(err.target_untouched());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn target_untouched(&self) -> bool {
        // A PUT whose reply was lost may have landed: an object's write failure proves nothing.
        if let Error::Remote {
            step: Step::Write, ..
        } = self
        {
            return false;
        }
        self.step()
            .is_none_or(|step| step.leaves_target_untouched() || step.only_reads())
    }

    /// What to do about the error, and what state it left behind: exactly the text the
    /// message ends with in parentheses, or `None` when it has none (a missing file at a read
    /// says all there is to say).
    ///
    /// # Examples
    ///
    /// ```
    /// use durafile::Options;
    ///
    /// let dir = tempfile::tempdir()?;
    /// let err = durafile::write(dir.path().join("no/dir/f"), b"x", &Options::new()).unwrap_err();
    /// let hint = err.hint().unwrap();
    /// assert_eq!(hint, "the directory does not exist; create it first; the target is unchanged");
    /// assert!(err.to_string().ends_with(&format!(" ({hint})")));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn hint(&self) -> Option<String> {
        let text = match self {
            Error::Io {
                step,
                source,
                advice,
                ..
            } => return io_hint(*step, source, advice.as_deref()),
            Error::NoFileName { .. } => return None,
            Error::LockTimeout { lock_file, .. } => {
                return Some(format!(
                    "retry later, or find the holder with `fuser {}`",
                    quote(lock_file)
                ));
            }
            Error::ChecksumFileRefused { advice, .. } => return Some(advice.clone()),
            Error::Refused { .. } | Error::OwnFile { .. } => "nothing was changed",
            Error::NotRegularFile { .. } => {
                "durafile only replaces regular files; nothing was changed"
            }
            Error::ChecksumMismatch { .. } => {
                "restore it from a backup; `durafile recover` lists every damaged file"
            }
            Error::MissingChecksum { .. } => "restore it, or rewrite the file with checksums on",
            Error::BadChecksumFile { .. } => {
                "durafile neither verifies against it nor changes it; to use durafile checksums \
                 for this file, move it away and write the file with checksums on"
            }
            Error::InvalidJson { .. } => {
                "fix or restore the file; durafile wrote it whole, so this content came from \
                 elsewhere or from an older program version"
            }
            Error::Serialize { .. } => "the target is unchanged",
            Error::InvalidKey { .. } => "nothing was read or written",
            Error::NoGoodState { .. } => "restore the directory from a backup",
            Error::Migration { .. } => "this migration changed no document",
            Error::AlreadyLocked { .. } => "use the guard you hold",
            // The store's own message says what there is to say.
            Error::Remote { .. } => return None,
            Error::ConditionalWritesUnavailable { .. } => {
                "use a store that supports If-Match and If-None-Match, such as AWS S3, R2 or \
                 MinIO, with AWS_CONDITIONAL_PUT=etag, the default"
            }
            Error::UpdateConflict { .. } => "retry later, or write less often",
        };
        Some(text.to_owned())
    }
}

/// `io::Error` is not `Clone`; keep the OS error code when there is one.
pub(crate) fn copy_error(e: &io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(e.kind(), e.to_string()),
    }
}

impl From<Error> for io::Error {
    /// Keeps the OS error's kind so that callers matching on [`io::ErrorKind`] still can.
    fn from(err: Error) -> io::Error {
        let kind = match &err {
            Error::Io { source, .. } => source.kind(),
            Error::NotRegularFile { .. } => io::ErrorKind::InvalidInput,
            Error::Refused { .. } => io::ErrorKind::PermissionDenied,
            Error::OwnFile { .. } => io::ErrorKind::InvalidInput,
            Error::NoFileName { .. } => io::ErrorKind::InvalidInput,
            Error::LockTimeout { .. } => io::ErrorKind::TimedOut,
            Error::AlreadyLocked { .. } => io::ErrorKind::Deadlock,
            Error::ChecksumMismatch { .. }
            | Error::BadChecksumFile { .. }
            | Error::ChecksumFileRefused { .. } => io::ErrorKind::InvalidData,
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

/// A path as messages show it: as is when it is plain printable text, else quoted and
/// escaped like a Rust string (`"a\nb"`, `"\u{1b}[31m"`, `"\xff"`), so that another user's
/// file name cannot put newlines or terminal escape sequences on the screen.
///
/// # Examples
///
/// ```
/// use std::path::Path;
/// use durafile::error::quote;
///
/// assert_eq!(quote(Path::new("/data/state.json")).to_string(), "/data/state.json");
/// assert_eq!(quote(Path::new("a b\n\x1b[2J")).to_string(), r#""a b\n\u{1b}[2J""#);
/// ```
pub fn quote(path: &Path) -> Quoted<'_> {
    Quoted(path)
}

/// A path formatted by [`quote`].
#[derive(Debug, Clone, Copy)]
pub struct Quoted<'a>(&'a Path);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plain = |c: char| {
            !c.is_control()
                && !c.is_whitespace()
                && !matches!(c, '"' | '\'' | '\\' | '`' | '$')
                // Bidirectional and zero-width format characters reorder or hide text.
                && !matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
        };
        match self.0.to_str() {
            Some(s) if !s.is_empty() && s.chars().all(plain) => f.write_str(s),
            _ => write!(f, "{:?}", self.0),
        }
    }
}

/// A uid as messages show it: `uid 1001 (mallory)`.
pub(crate) struct Owner(pub u32);

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match crate::sys::user_name(self.0) {
            Some(name) => write!(f, "uid {} ({})", self.0, quote(Path::new(&name))),
            None => write!(f, "uid {}", self.0),
        }
    }
}

/// The advice for an OS error at a step, with the state the failure left behind.
fn io_hint(step: Step, err: &io::Error, known: Option<&str>) -> Option<String> {
    let advice = known.or_else(|| {
        err.raw_os_error().and_then(|code| match code {
            libc::ENOSPC => Some("free space on that filesystem and retry"),
            libc::EDQUOT => Some(
                "the disk quota (blocks or inodes) is exhausted; free space or raise the quota (see `quota -s`)",
            ),
            libc::EACCES | libc::EPERM => Some("check the file's and directory's permissions"),
            libc::EROFS => Some("the filesystem is mounted read-only"),
            libc::EIO => {
                Some("the device reported an I/O error; check the disk and the kernel log")
            }
            libc::ENOENT if step == Step::Lock || step == Step::CreateTemp => {
                Some("the directory does not exist; create it first")
            }
            libc::ENOTDIR => Some("a component of the path is not a directory"),
            libc::ELOOP => Some("too many levels of symbolic links"),
            libc::ENAMETOOLONG => Some("the file name is too long for this filesystem"),
            libc::EMFILE | libc::ENFILE => Some("too many open files; raise the limit (ulimit -n)"),
            libc::ENOLCK => Some("this filesystem does not support file locks"),
            _ => None,
        })
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
        (Some(a), Some(s)) => Some(format!("{a}; {s}")),
        (Some(one), None) | (None, Some(one)) => Some(one.to_owned()),
        (None, None) => None,
    }
}

/// A hint as the message ends with it: ` (hint)`, or nothing.
struct Paren(Option<String>);

impl fmt::Display for Paren {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(hint) => write!(f, " ({hint})"),
            None => Ok(()),
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
        assert!(
            msg.contains("free space") || msg.contains("inodes"),
            "{msg}"
        );
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
    fn hint_is_what_the_message_ends_with_in_parentheses() {
        let io = |step, code| Error::io(step, "/d/f", io::Error::from_raw_os_error(code));
        let json = serde_json::from_str::<u8>("x").unwrap_err();
        let errors = [
            io(Step::Write, libc::ENOSPC),
            io(Step::SyncDir, libc::EIO),
            io(Step::Lock, libc::ENOENT),
            io(Step::Read, libc::ENOENT),
            Error::LockTimeout {
                path: "/d/f".into(),
                lock_file: "/d/.f\nx.lock".into(),
                waited: Duration::from_secs(1),
            },
            Error::ChecksumFileRefused {
                step: Step::Verify,
                path: "/d/f".into(),
                sidecar: "/d/f.sha256".into(),
                reason: "it is a fifo (a named pipe)".into(),
                advice: "nothing was changed; remove it".into(),
            },
            Error::BadChecksumFile {
                path: "/d/f".into(),
                sidecar: "/d/f.sha256".into(),
                reason: "line 2 is for \"b (1)\"".into(),
            },
            Error::InvalidJson {
                path: "/d/f".into(),
                source: json,
            },
            Error::NoFileName { path: "/".into() },
        ];
        for err in errors {
            let msg = err.to_string();
            match err.hint() {
                Some(hint) => {
                    assert!(!hint.is_empty(), "{msg}");
                    assert!(msg.ends_with(&format!(" ({hint})")), "{msg} / {hint}");
                }
                None => assert!(
                    !msg.ends_with(')') || msg.ends_with("(os error 2)"),
                    "{msg}"
                ),
            }
        }
        assert_eq!(io(Step::Read, libc::ENOENT).hint(), None);
        assert_eq!(
            io(Step::Lock, libc::ENOENT).hint().as_deref(),
            Some("the directory does not exist; create it first; the target is unchanged")
        );
    }

    #[test]
    fn a_read_side_failure_leaves_the_target_untouched() {
        for step in [Step::Read, Step::ReadDir, Step::Verify] {
            let err = Error::io(step, "/d/f", io::Error::from_raw_os_error(libc::EIO));
            assert!(err.target_untouched(), "{step:?}");
        }
        let mismatch = Error::ChecksumMismatch {
            path: "/d/f".into(),
            expected: vec!["ab".repeat(32)],
            actual: "cd".repeat(32),
        };
        assert!(mismatch.target_untouched());
        for step in [Step::SyncDir, Step::ChecksumFinish, Step::Remove] {
            let err = Error::io(step, "/d/f", io::Error::from_raw_os_error(libc::EIO));
            assert!(!err.target_untouched(), "{step:?}");
        }
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
