//! An application's current state, saved as numbered generations so that a bad save never
//! costs the state.
//!
//! # Design
//!
//! Each [`StateManager::save_current_state`] writes a new, immutable generation
//! `DIR/NAME.N.json` (N one more than the newest), with every guarantee of a durafile write,
//! then removes all but the newest K generations (default 3). There is no "current" pointer
//! to keep consistent with the files: the current state is simply the newest generation that
//! reads, verifies and parses. So:
//!
//! - a crash or SIGKILL during a save leaves the previous generation current (and an orphan
//!   temp file for recovery), never a state that cannot be loaded;
//! - a newest generation that fails to verify or parse (a disk error, a tool that edited it)
//!   makes [`StateManager::load_current_state`] fall back to the next good one and say so in
//!   [`Loaded::skipped`], never silently;
//! - [`StateManager::rollback`] copies an older generation into a new one, atomically, so a
//!   rollback is itself a generation that can be rolled back.
//!
//! A new generation (and its sidecar) takes the permission bits, owner and group of the newest
//! one before it, unless the options set a mode: a state kept 0600 stays 0600, and a rollback
//! run by root leaves files the application's user can still read.
//!
//! Saves, rollbacks and pruning hold the exclusive lock of `DIR/NAME` (`DIR/.NAME.lock`), so
//! several processes can share one state directory; loads take no lock.
//!
//! With the `s3` feature, `DIR` may be an `s3://bucket/prefix` URL. There is no lock there:
//! each generation is created with `If-None-Match: *`, so two hosts can never write the same
//! generation (the loser of a race takes the next number).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::atomic::AtomicFile;
use crate::checksum;
use crate::data_handler::validate_key;
use crate::error::{Error, Result, Step};
use crate::file_manager::FileManager;
use crate::lock::{self, FileLock, LockMode};
use crate::options::Durability;
use crate::sys;
use crate::target::Target;

/// How many times a load starts over because a save pruned what it listed, before it waits
/// for the state's lock.
const LOAD_ATTEMPTS: usize = 8;

fn is_not_found(e: &Error) -> bool {
    e.io_error()
        .is_some_and(|e| e.kind() == io::ErrorKind::NotFound)
}

/// How many generations a [`StateManager`] keeps unless told otherwise.
pub const DEFAULT_KEEP: usize = 3;

/// One saved generation of the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    /// Its number: 1 for the first save, one more for each save or rollback since.
    pub number: u64,
    /// Its file.
    pub path: PathBuf,
}

/// A state loaded by [`StateManager::load_current_state`], and where it came from.
#[derive(Debug)]
pub struct Loaded<S> {
    /// The state.
    pub state: S,
    /// The generation it was loaded from.
    pub generation: u64,
    /// Newer generations that failed to load, newest first, with the reason: empty unless
    /// this is a fallback.
    pub skipped: Vec<(u64, Error)>,
}

impl<S> Loaded<S> {
    /// Whether a newer generation failed and an older one was used.
    pub fn is_fallback(&self) -> bool {
        !self.skipped.is_empty()
    }
}

/// The saved state of an application, in generations.
///
/// # Examples
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use durafile::{FileManager, Options, StateManager};
///
/// #[derive(Serialize, Deserialize, Debug, PartialEq)]
/// struct Session { user: String, open_tabs: Vec<String> }
///
/// let dir = tempfile::tempdir()?;
/// let states = StateManager::open(dir.path(), FileManager::new(Options::new().checksum(true)))?;
/// states.save_current_state(&Session { user: "ada".into(), open_tabs: vec![] })?;
/// let n = states.save_current_state(&Session { user: "ada".into(), open_tabs: vec!["docs".into()] })?;
/// let loaded = states.load_current_state::<Session>()?.expect("saved");
/// assert_eq!(loaded.generation, n);
/// assert!(!loaded.is_fallback());
/// states.rollback(n - 1)?;
/// assert!(states.load_current_state::<Session>()?.unwrap().state.open_tabs.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct StateManager {
    dir: PathBuf,
    name: String,
    files: FileManager,
    keep: usize,
}

impl StateManager {
    /// Opens the state directory `dir` (creating it if needed), for state named `state`.
    pub fn open(dir: impl Into<PathBuf>, files: FileManager) -> Result<StateManager> {
        let dir = dir.into();
        if !crate::is_remote(&dir) {
            sys::create_dir_all(&dir, 0o777).map_err(|e| Error::io(Step::CreateDir, &dir, e))?;
        }
        Ok(StateManager {
            dir,
            name: "state".to_owned(),
            files,
            keep: DEFAULT_KEEP,
        })
    }

    /// Names the state (files `NAME.N.json`), so that one directory can hold several.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] for a name that could not name a file in the directory, or that
    /// contains `.` (which would make generation names ambiguous).
    pub fn name(mut self, name: &str) -> Result<StateManager> {
        validate_key(name)?;
        if name.contains('.') {
            return Err(Error::InvalidKey {
                key: name.to_owned(),
                reason: "a state name cannot contain `.`",
            });
        }
        self.name = name.to_owned();
        Ok(self)
    }

    /// Keeps the newest `keep` generations (at least 1) and removes older ones after each save.
    #[must_use]
    pub fn keep(mut self, keep: usize) -> StateManager {
        self.keep = keep.max(1);
        self
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Saves `state` as a new generation and returns its number. When this returns, the new
    /// generation is current (and, at [`crate::Durability::Full`], survives a power loss).
    pub fn save_current_state<S: Serialize + ?Sized>(&self, state: &S) -> Result<u64> {
        #[cfg(feature = "s3")]
        if crate::remote::is_url(&self.dir) {
            return self.create_remote(&self.files.to_bytes(&self.dir, state)?);
        }
        let _lock = self.lock()?;
        // One listing serves both: the lock keeps other savers out in between.
        let newest = self.newest()?;
        let number = next_number(newest.as_ref())?;
        let previous = newest_meta(newest.as_ref())?;
        let path = self.path_of(number);
        let mut file = AtomicFile::new_covered(&path, self.files.options(), previous.as_ref())?;
        self.files.serialize_into(&mut file, state)?;
        file.commit()?;
        self.prune()?;
        Ok(number)
    }

    /// Loads the newest generation that reads, verifies and parses as an `S`; `None` when
    /// nothing was ever saved. When newer generations fail, the result says which and why.
    ///
    /// # Errors
    ///
    /// [`Error::NoGoodState`] when generations exist but none loads.
    pub fn load_current_state<S: DeserializeOwned>(&self) -> Result<Option<Loaded<S>>> {
        // Loads take no lock, so a concurrent save may prune a generation we listed: one that
        // vanished is no failure, and the listing is read again.
        for _ in 0..LOAD_ATTEMPTS {
            if let Some(loaded) = self.scan(true)? {
                return Ok(loaded);
            }
        }
        // Saves keep pruning faster than we can read: wait for them (a store has no lock to
        // wait on, so there a generation that vanished counts as failed).
        #[cfg(feature = "s3")]
        if crate::remote::is_url(&self.dir) {
            return Ok(self.scan(false)?.expect("scan(false) always finishes"));
        }
        let _lock = self.lock()?;
        Ok(self.scan(false)?.expect("nothing vanishes under the lock"))
    }

    /// One pass over the generations, newest first. `None` when `retry_vanished` and a listed
    /// generation was gone by the time it was read.
    fn scan<S: DeserializeOwned>(&self, retry_vanished: bool) -> Result<Option<Option<Loaded<S>>>> {
        let mut skipped = Vec::new();
        for generation in self.history()? {
            match self.files.read_json_file(&generation.path) {
                Ok(state) => {
                    return Ok(Some(Some(Loaded {
                        state,
                        generation: generation.number,
                        skipped,
                    })));
                }
                Err(e) if retry_vanished && is_not_found(&e) => return Ok(None),
                Err(e) => skipped.push((generation.number, e)),
            }
        }
        match skipped.into_iter().next() {
            None => Ok(Some(None)),
            Some((_, newest)) => Err(Error::NoGoodState {
                dir: self.dir.clone(),
                newest: Box::new(newest),
            }),
        }
    }

    /// Loads one generation by number.
    pub fn load_generation<S: DeserializeOwned>(&self, number: u64) -> Result<S> {
        self.files.read_json_file(self.path_of(number))
    }

    /// The generations on disk, newest first.
    pub fn history(&self) -> Result<Vec<Generation>> {
        let err = |e| Error::io(Step::ReadDir, &self.dir, e);
        let mut names = Vec::new();
        #[cfg(feature = "s3")]
        if crate::remote::is_url(&self.dir) {
            let (store, prefix) = crate::remote::locate(&self.dir)?;
            names = store.list(&prefix)?.into_iter().map(Into::into).collect();
        }
        if !crate::is_remote(&self.dir) {
            for entry in fs::read_dir(&self.dir).map_err(err)? {
                names.push(entry.map_err(err)?.file_name());
            }
        }
        let mut found = Vec::new();
        for name in names {
            let number = name
                .to_str()
                .and_then(|n| n.strip_prefix(self.name.as_str()))
                .and_then(|n| n.strip_prefix('.'))
                .and_then(|n| n.strip_suffix(".json"))
                .and_then(|n| n.parse::<u64>().ok().filter(|v| v.to_string() == n));
            if let Some(number) = number {
                found.push(Generation {
                    number,
                    path: self.path_of(number),
                });
            }
        }
        found.sort_by_key(|g| std::cmp::Reverse(g.number));
        Ok(found)
    }

    /// Makes generation `number`'s content current again by copying it, verified, into a new
    /// generation; returns the new generation's number. The copy gets a checksum sidecar when
    /// the original has one, whatever this manager's options say.
    pub fn rollback(&self, number: u64) -> Result<u64> {
        #[cfg(feature = "s3")]
        if crate::remote::is_url(&self.dir) {
            let (store, key) = crate::remote::locate_object(&self.path_of(number))?;
            return self.create_remote(&store.read(&key, self.files.options().get_checksum())?);
        }
        let _lock = self.lock()?;
        let source = self.path_of(number);
        let bytes = crate::read(&source, self.files.options())?;
        // lstat: never through a link, never opening a FIFO (the read refused those anyway).
        let had_checksum = fs::symlink_metadata(checksum::sidecar_path(&source)).is_ok();
        let opts = self.files.options();
        let opts = opts.clone().checksum(opts.get_checksum() || had_checksum);
        let newest = self.newest()?;
        let next = next_number(newest.as_ref())?;
        let previous = newest_meta(newest.as_ref())?;
        crate::atomic::write_covered(&self.path_of(next), &bytes, &opts, previous.as_ref())?;
        self.prune()?;
        Ok(next)
    }

    /// The newest generation, `None` before the first save.
    fn newest(&self) -> Result<Option<Generation>> {
        Ok(self.history()?.into_iter().next())
    }

    fn path_of(&self, number: u64) -> PathBuf {
        self.dir.join(format!("{}.{number}.json", self.name))
    }

    fn lock(&self) -> Result<FileLock> {
        let timeout = self.files.options().get_lock_timeout();
        lock::acquire(&self.dir.join(&self.name), LockMode::Exclusive, timeout)
    }

    /// Removes all but the newest `keep` generations, with their checksum sidecars. A file at
    /// a sidecar's name that is not durafile's (a user's `sha256sum` list, another user's file,
    /// a link) stays: the save succeeded, and that file is not durafile's to delete.
    fn prune(&self) -> Result<()> {
        let old: Vec<Generation> = self.history()?.into_iter().skip(self.keep).collect();
        // The generations kept must be durable before the ones they supersede go. At
        // `consistent` no save fsynced the directory, and a power loss could keep these
        // unlinks yet lose the newer generations' renames: no state at all (found by the
        // crash-state checker, tests/crash_model). At `full` each commit did it already.
        // An object store has no directory to sync: each PUT is durable when it returns.
        let local = !crate::is_remote(&self.dir);
        if local
            && !old.is_empty()
            && self.files.options().get_durability() == Durability::Consistent
        {
            sys::sync_dir(&self.dir).map_err(|e| Error::io(Step::SyncDir, &self.dir, e))?;
        }
        for old in old {
            #[cfg(feature = "s3")]
            if crate::remote::is_url(&old.path) {
                let (store, key) = crate::remote::locate_object(&old.path)?;
                store.delete(&key)?;
                continue;
            }
            // Only the sidecar of a generation durafile wrote, a regular file (not a link), and
            // judged while the generation still says whose it is.
            let regular = fs::symlink_metadata(&old.path).is_ok_and(|m| m.is_file());
            let target = Target::resolve(&old.path).ok().filter(|_| regular);
            let removed = sys::remove_if_exists(&old.path)
                .map_err(|e| Error::io(Step::Remove, &old.path, e))?;
            if let (true, Some(target)) = (removed, target) {
                match checksum::remove_sidecar(&target, Step::Remove) {
                    Ok(_) | Err(Error::ChecksumFileRefused { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }
}

#[cfg(feature = "s3")]
impl StateManager {
    /// Saves `bytes` as the next generation of a state in an object store. The create-only
    /// PUT is what keeps two hosts from both writing generation N: the loser counts again.
    fn create_remote(&self, bytes: &[u8]) -> Result<u64> {
        loop {
            let number = next_number(self.newest()?.as_ref())?;
            let (store, key) = crate::remote::locate_object(&self.path_of(number))?;
            if store.create(&key, bytes)? {
                self.prune()?;
                return Ok(number);
            }
        }
    }
}

/// The newest generation's metadata: a new generation (and its sidecar) takes its mode,
/// owner and group, so a state kept private stays private. `None` before the first save.
fn newest_meta(newest: Option<&Generation>) -> Result<Option<fs::Metadata>> {
    let Some(newest) = newest else {
        return Ok(None);
    };
    match fs::symlink_metadata(&newest.path) {
        Ok(meta) if meta.is_file() => Ok(Some(meta)),
        // Pruned by a save we cannot see (none under our lock) or not a file: no model.
        Ok(_) => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(Step::Inspect, &newest.path, e)),
    }
}

/// One more than the newest generation. At `u64::MAX` there is no next number: wrapping
/// to 0 would make every later save rewrite generation 0 and lose the order.
fn next_number(newest: Option<&Generation>) -> Result<u64> {
    let Some(newest) = newest else {
        return Ok(1);
    };
    newest.number.checked_add(1).ok_or_else(|| {
        Error::io(
            Step::Write,
            &newest.path,
            io::Error::other(format!(
                "generation {} is the largest number a generation can have, so no newer \
                 one can be saved (rename the generations to small numbers, keeping their \
                 order, or move them away)",
                newest.number
            )),
        )
    })
}
