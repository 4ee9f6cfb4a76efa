//! Crash-safe, lock-safe replacement of files, above all of an application's JSON state.
//!
//! A crash mid-write leaves a truncated file; two writers clobber each other's update; a full
//! disk leaves half a file. durafile replaces a file's content so that none of that can
//! happen, and says exactly what it could not do when something fails.
//!
//! # Limits first
//!
//! - **Atomicity needs a local POSIX filesystem.** On NFS a rename is atomic for one client
//!   but not across clients, and locks may be emulated or missing.
//! - **Durability needs a filesystem and drive that honour fsync.** A drive that lies about
//!   its write cache, a VM configured with `cache=unsafe`, or `nobarrier` mounts void the
//!   power-loss guarantees; run `durafile torture` on the disk you rely on.
//! - **Locks are advisory.** They exclude durafile writers and anyone who takes the same
//!   lock (`flock(1)` on the lock file), not a program that writes the file directly.
//! - **Unix only** (Linux and macOS); Windows is not supported yet.
//!
//! # Guarantees
//!
//! | what happens | what a reader finds afterwards |
//! |---|---|
//! | the writing process is killed (SIGKILL, OOM) at any point | the old content, complete; an orphan temp file that [`recover::clean_orphans`] removes |
//! | the machine loses power | with [`Durability::Full`], the new content if the write returned, else the old; with [`Durability::Consistent`], old or new; never a mix |
//! | the disk fills up, or any step up to the rename fails | an error naming the step, the path and the cause; the old content, byte-for-byte; no temp file |
//! | several threads and processes write at once | each write is whole; [`update`] loses no update |
//!
//! # Examples
//!
//! ```
//! use durafile::Options;
//!
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("state.json");
//! durafile::write(&path, br#"{"visits":0}"#, &Options::new())?;
//! durafile::update(&path, &Options::new(), |current| {
//!     let text = std::str::from_utf8(current.unwrap()).unwrap();
//!     Ok::<_, durafile::Error>(text.replace("0", "1").into_bytes())
//! })?;
//! assert_eq!(durafile::read(&path, &Options::new())?, br#"{"visits":1}"#);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Files beside the target
//!
//! For a target `dir/NAME`, durafile creates `dir/.NAME.lock` (the lock, kept for good; see
//! [`lock`]), `dir/NAME.sha256` with checksums on (see [`checksum`]) and, while a write is in
//! flight, `dir/.NAME.df-XXXXXXXXXX.tmp` (and `dir/.NAME.sha256.df-XXXXXXXXXX.tmp`).
//!
//! # Modules
//!
//! One concern each, listed from the bottom up: a module uses only modules listed above it,
//! never one below, so there are no import cycles (`tests/layering.rs` checks this list
//! against the sources; a new module takes its place in it).
//!
//! - `crash_record` (cargo feature `crash-model`): records durability-relevant operations for
//!   the crash-state checker.
//! - `fault`: failpoints for the fault tests, empty without the `failpoints` feature.
//! - `names`: the names of the lock, temp and sidecar files beside a target.
//! - `options`: [`Durability`] and [`Options`].
//! - `sys`: every syscall std does not wrap.
//! - [`error`]: one [`Error`] type with step, path, cause and advice.
//! - `target`: which file a path names, its directory, and the temp files created in it.
//! - [`lock`]: exclusive and shared locks across threads and processes.
//! - [`checksum`]: SHA-256 sidecars that stay consistent through crashes.
//! - `hasher`: hashes the content of a large write on one thread of its own, beside the writer.
//! - [`recover`]: cleaning up after a crash.
//! - `read`: [`read()`] and [`open`], optionally under the shared lock.
//! - [`atomic`]: the replace itself, [`write()`], [`AtomicFile`].
//! - [`group_commit`]: [`update`]; concurrent updates of one file in one process share a
//!   commit.
//! - `remote` (cargo feature `s3`): the same JSON components on S3-compatible object storage,
//!   chosen by an `s3://bucket/prefix` URL in place of a path.
//! - [`file_manager`]: typed JSON files.
//! - [`data_handler`]: a directory of keyed documents.
//! - [`state_manager`]: an application state kept in generations.
//! - [`batch`]: many writes on a thread pool, with group commit.
//! - [`migrate`]: versioned schema migrations, all-or-nothing across a directory.

#![deny(missing_docs)]

pub mod atomic;
pub mod batch;
pub mod checksum;
#[cfg(feature = "crash-model")]
pub mod crash_record;
pub mod data_handler;
pub mod error;
mod fault;
pub mod file_manager;
pub mod group_commit;
mod hasher;
pub mod lock;
pub mod migrate;
mod names;
mod options;
mod read;
pub mod recover;
#[cfg(feature = "s3")]
pub mod remote;
pub mod state_manager;
mod sys;
mod target;

/// The README's examples, compiled and run as doctests so they cannot fall behind the code.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

pub use atomic::{AtomicFile, write};
pub use data_handler::DataHandler;
pub use error::{Error, Result, Step};
pub use file_manager::FileManager;
pub use group_commit::update;
pub use names::is_temp_name;
pub use options::{Durability, Options, ParseDurabilityError};
pub use read::{open, read};
pub use state_manager::StateManager;

/// Whether `path` is an object-store URL that this build serves: always false without the
/// `s3` feature, so local code pays nothing for the remote backend.
#[inline]
pub(crate) fn is_remote(path: &std::path::Path) -> bool {
    #[cfg(feature = "s3")]
    return remote::is_url(path);
    #[cfg(not(feature = "s3"))]
    return {
        let _ = path;
        false
    };
}
