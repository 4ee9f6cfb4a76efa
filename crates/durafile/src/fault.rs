//! Fault injection for tests, with the `fail` crate behind the `failpoints` feature.
//!
//! Each step of a write calls [`point`] with its name first. In normal builds that is an
//! inlined `Ok(())`. With `--features failpoints`, a test configures a point with
//! `fail::cfg("durafile::sync", "return(ENOSPC)")` and the step fails with that OS error
//! (an errno name or number; EIO without one); `"panic"` makes the step panic instead.
//!
//! The points: `durafile::after_create`, `durafile::write`, `durafile::set_permissions`,
//! `durafile::before_sync`, `durafile::after_sync`, `durafile::before_rename`,
//! `durafile::before_sync_dir`; and for the checksum sidecar, `durafile::checksum_begin`,
//! `durafile::checksum_begin_rename`, `durafile::checksum_finish` (before the sidecar is cut
//! down to the new digest, or rewritten by recovery or after a failed rename) and
//! `durafile::checksum_finish_rename` (that rewrite's rename); and `durafile::hash`, in the
//! thread that hashes large content ([`crate::hasher`]), before each piece; and
//! `durafile::batch_checksum_begin_sync_dir`, a batch's directory fsync between its sidecars'
//! first step and their files' renames.

use std::io;

/// Fails with the configured error when the point `name` is active.
#[cfg(feature = "failpoints")]
pub(crate) fn point(name: &str) -> io::Result<()> {
    match fail::eval(name, injected) {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

/// Nothing to inject in a normal build.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub(crate) fn point(_name: &str) -> io::Result<()> {
    Ok(())
}

#[cfg(feature = "failpoints")]
fn injected(arg: Option<String>) -> io::Error {
    let code = match arg.as_deref().map(str::trim) {
        None | Some("") | Some("EIO") => libc::EIO,
        Some("ENOSPC") => libc::ENOSPC,
        Some("EDQUOT") => libc::EDQUOT,
        Some("EACCES") => libc::EACCES,
        Some("EROFS") => libc::EROFS,
        Some(n) => n.parse().unwrap_or(libc::EIO),
    };
    io::Error::from_raw_os_error(code)
}
