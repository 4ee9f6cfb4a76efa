//! What a write promises ([`Durability`]) and how it behaves ([`Options`]).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// How much of a replace survives a power loss once it has returned.
///
/// Every level is atomic for readers and for a killed process: a reader sees the old content
/// or the new content, never a mix, and a process killed part-way leaves the old content (and
/// an orphan temp file that [`crate::recover::clean_orphans`] removes). The levels differ
/// only in what survives the machine losing power or crashing.
///
/// | level | fsyncs | after a power loss |
/// |---|---|---|
/// | [`Full`](Durability::Full) | file, then directory | the new content, once the call returned |
/// | [`Consistent`](Durability::Consistent) | file | the old or the new content, never a mix |
/// | [`None`](Durability::None) | none | anything: old, new, empty or partial content |
///
/// These hold where the filesystem and the drive honour fsync; see the crate docs for the
/// cases where they do not.
///
/// # Examples
///
/// ```
/// use durafile::Durability;
/// let level: Durability = "consistent".parse().unwrap();
/// assert_eq!(level, Durability::Consistent);
/// assert_eq!(Durability::default(), Durability::Full);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Durability {
    /// fsync the temp file before the rename and the directory after it: when the write
    /// returns, the new content survives a power loss.
    #[default]
    Full,
    /// fsync the temp file before the rename, not the directory: after a power loss the file
    /// holds the old or the new content, complete either way, but a write that returned may
    /// be undone. One fsync fewer than `Full`.
    Consistent,
    /// No fsync. Readers and killed processes still never see a torn file, but after a power
    /// loss the file may be empty or hold a mix (on ext4 `auto_da_alloc` usually saves you,
    /// on other filesystems nothing does). For caches and files you can rebuild.
    None,
}

impl Durability {
    /// The level's name as the CLI spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Durability::Full => "full",
            Durability::Consistent => "consistent",
            Durability::None => "none",
        }
    }
}

impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a [`Durability`] from a string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown durability {0:?}: expected full, consistent or none")]
pub struct ParseDurabilityError(String);

impl FromStr for Durability {
    type Err = ParseDurabilityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "full" => Ok(Durability::Full),
            "consistent" => Ok(Durability::Consistent),
            "none" => Ok(Durability::None),
            other => Err(ParseDurabilityError(other.to_owned())),
        }
    }
}

/// How durafile writes and reads a file. Cheap to clone; build it once and share it.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use durafile::{Durability, Options};
///
/// let opts = Options::new()
///     .durability(Durability::Consistent)
///     .mode(0o640)
///     .lock_timeout(Duration::from_secs(2));
/// assert_eq!(opts.get_durability(), Durability::Consistent);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Options {
    durability: Durability,
    mode: Option<u32>,
    lock_timeout: Option<Duration>,
    lock_reads: bool,
    checksum: bool,
}

impl Options {
    /// The defaults: [`Durability::Full`], the target's own mode (or 0666 minus the umask for a
    /// new file), wait for the lock as long as it takes, read without a lock.
    pub fn new() -> Options {
        Options::default()
    }

    /// Sets the durability level.
    #[must_use]
    pub fn durability(mut self, durability: Durability) -> Options {
        self.durability = durability;
        self
    }

    /// Gives the written file this mode (permission bits, e.g. `0o640`, and the setuid,
    /// setgid and sticky bits if given), whether it existed or not. Without it an existing
    /// file keeps its permission bits but loses its setuid, setgid and sticky bits (new
    /// content must not inherit the old program's privileges, as an in-place write by another
    /// user clears them too), and a new file gets 0666 minus the umask.
    ///
    /// ```
    /// use std::os::unix::fs::PermissionsExt;
    /// use durafile::Options;
    ///
    /// let dir = tempfile::tempdir()?;
    /// let tool = dir.path().join("tool");
    /// std::fs::write(&tool, "v1")?;
    /// std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o4755))?;
    /// durafile::write(&tool, "v2", &Options::new())?;
    /// assert_eq!(std::fs::metadata(&tool)?.permissions().mode() & 0o7777, 0o755);
    /// durafile::write(&tool, "v3", &Options::new().mode(0o4755))?;
    /// assert_eq!(std::fs::metadata(&tool)?.permissions().mode() & 0o7777, 0o4755);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn mode(mut self, mode: u32) -> Options {
        self.mode = Some(mode & 0o7777);
        self
    }

    /// Gives up waiting for the file's lock after `timeout` with [`crate::Error::LockTimeout`].
    /// A zero timeout tries once. Without it, durafile waits as long as the lock is held.
    #[must_use]
    pub fn lock_timeout(mut self, timeout: Duration) -> Options {
        self.lock_timeout = Some(timeout);
        self
    }

    /// Makes [`crate::read`] take the file's shared lock, so that it waits for a writer's
    /// whole read-modify-write to finish. Plain reads need no lock to see a complete version.
    #[must_use]
    pub fn lock_reads(mut self, yes: bool) -> Options {
        self.lock_reads = yes;
        self
    }

    /// Keeps a SHA-256 sidecar (`NAME.sha256`, `sha256sum` format) for every file written, and
    /// makes a read of a file without one an error ([`crate::Error::MissingChecksum`]).
    ///
    /// Without it, durafile still verifies reads of files that have a sidecar and keeps an
    /// existing sidecar up to date on writes; it just does not create one. A file at the
    /// sidecar's name in another format (a user's own `sha256sum` list) is left alone, and with
    /// this option refused. See [`crate::checksum`] for the protocol.
    #[must_use]
    pub fn checksum(mut self, yes: bool) -> Options {
        self.checksum = yes;
        self
    }

    /// The durability level.
    pub fn get_durability(&self) -> Durability {
        self.durability
    }

    /// The mode given with [`Options::mode`], if any.
    pub fn get_mode(&self) -> Option<u32> {
        self.mode
    }

    /// The lock timeout, if any.
    pub fn get_lock_timeout(&self) -> Option<Duration> {
        self.lock_timeout
    }

    /// Whether writes keep a checksum sidecar and reads require one.
    pub fn get_checksum(&self) -> bool {
        self.checksum
    }

    /// Whether reads take the shared lock.
    pub fn get_lock_reads(&self) -> bool {
        self.lock_reads
    }
}
