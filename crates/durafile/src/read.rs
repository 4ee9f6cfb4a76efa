//! Reading a file that durafile writers replace.
//!
//! Because every replace is a rename, a plain read always sees one complete version: it opens
//! either the old inode or the new one. With [`Options::lock_reads`] the read also takes the
//! path's shared lock, which makes it wait until a writer's whole read-modify-write is done.

use std::fs;
use std::path::Path;

use crate::error::{Error, Result, Step};
use crate::lock::{self, LockMode};
use crate::options::Options;
use crate::target::Target;

/// Reads the whole of `path`.
///
/// # Errors
///
/// At [`Step::Read`] with the OS error (NotFound for a missing file), or at [`Step::Lock`]
/// when [`Options::lock_reads`] is set and the shared lock is not had in time.
///
/// # Examples
///
/// ```
/// use durafile::Options;
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("state.json");
/// durafile::write(&path, b"{}", &Options::new())?;
/// assert_eq!(durafile::read(&path, &Options::new().lock_reads(true))?, b"{}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn read(path: impl AsRef<Path>, opts: &Options) -> Result<Vec<u8>> {
    let path = path.as_ref();
    let _lock = if opts.get_lock_reads() {
        let target = Target::resolve(path)?;
        Some(lock::lock_target(
            &target,
            LockMode::Shared,
            opts.get_lock_timeout(),
        )?)
    } else {
        None
    };
    fs::read(path).map_err(|e| Error::io(Step::Read, path, e))
}
