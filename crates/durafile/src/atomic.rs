//! Atomic, durable replacement of a file's whole content.
//!
//! # Guarantees
//!
//! A reader of the target sees its old content or its new content, complete, never a mix and
//! never an empty file, whatever happens to the writer. A writer killed at any point leaves
//! the old content in place. How much survives a power loss is the [`Durability`] level's
//! promise. A failed write leaves the target byte-for-byte untouched and removes its temp
//! file; the one exception is a failed fsync of the directory, which comes after the rename
//! and is reported as such (see [`Step::SyncDir`]).
//!
//! # How it works
//!
//! 1. Follow symlinks to the real file (a link stays a link), only where the kernel's
//!    `protected_symlinks` rule would (applied on every system, in every path component),
//!    and refuse anything that is not a regular file, durafile's own lock and temp files, and,
//!    in a sticky shared directory, a file owned by someone else than the caller or the
//!    directory's owner (the kernel's `protected_regular` rule).
//! 2. Take the path's exclusive lock ([`crate::lock`]), so durafile writers take turns, and
//!    remove the temp file a killed previous holder left (it is recorded in the lock file).
//! 3. Check that the target's directory is still the one resolved (device and inode), then
//!    record the temp file's name in the lock file and create `.NAME.df-XXXXXXXXXX.tmp` in
//!    the target's own directory (a rename across filesystems is not atomic) with
//!    `O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC` and mode 0600, and hold a flock on it, which tells
//!    [`crate::recover::clean_orphans`] that a live writer owns it.
//! 4. Write the content (a [`BufWriter`] in between; a large file streams through it). At
//!    levels that fsync, writeback of each 8 MiB written starts at once (Linux
//!    `sync_file_range`), so the fsync at commit finds little left to do. With a checksum,
//!    the content is hashed as it is written: inline while it is small, and from its first
//!    MiB on by one persistent thread per file (the `hasher` module), which is handed each
//!    piece (a copy, in recycled buffers) before it is written, so that hashing overlaps
//!    writing and the tail overlaps the fsync. A failure or panic of that thread fails the
//!    commit at [`Step::ChecksumBegin`], never with a wrong digest; a drop joins it.
//! 5. Give the temp file the target's owner and group (where the process may) and mode, without
//!    the setuid, setgid and sticky bits unless [`Options::mode`] asks for them: a replace
//!    is new content, which must not inherit the old program's privileges (an in-place write
//!    by another user clears them too).
//! 6. fsync it (`F_FULLFSYNC` on macOS), unless the level is [`Durability::None`].
//! 7. Rename it over the target, only if every step before succeeded.
//! 8. fsync the directory, for [`Durability::Full`]; without a checksum sidecar, after
//!    releasing the lock (see `Staged::release_lock_early` for why that is safe).
//!
//! With a checksum sidecar, steps 7 and 8 sit inside the [pair protocol](crate::checksum):
//! the sidecar lists new and old digests before the rename and is cut down to the new one
//! after (the module docs count the fsyncs, creates and renames of each kind of write).
//!
//! An fsync error is final for that write: Linux may drop the dirty pages after reporting it
//! once, so a retried fsync can "succeed" with the data lost. durafile never retries it and
//! never renames after it; it removes the temp file and reports the error, and the caller can
//! write again from the data it still holds.
//!
//! # Why the temp file is created under the lock
//!
//! Creating it before taking the lock would take a file creation out of the critical section,
//! but a named temp file made while waiting cannot be recorded in the lock file yet (only a
//! holder writes there), so a writer killed while waiting would leave an orphan nobody is
//! told about. The safe form, an unnamed Linux `O_TMPFILE` made before the lock and linked
//! under its recorded name after it, was built and measured (issue 11): it moves two syscalls
//! out of the locked section but adds one per write (+1.8 µs per uncontended write on tmpfs),
//! and 8 processes × 200 updates on ext4 ran no faster with it: durafile `update` against
//! SQLite WAL FULL in the same run, median of 11 runs each, 0.60× with it and 0.61× without
//! at `full`, 0.69× and 0.71× at `consistent`; raw syscalls, 12 runs each, 1515 against 1425
//! updates/s with the directory fsync and 1980 against 2100 without. Why, as far as `perf`
//! shows on that machine (an ext4 without a journal): the cost of a creation is the CPU the
//! inode allocator spends passing over recently freed inodes, and an unnamed file's inode
//! comes from the same allocator; moving it off the lock does not make it cheaper, and with
//! two vCPUs the waiting writers' creations compete with the holder for the CPU.
//!
//! # What is not kept
//!
//! The target's ACLs, extended attributes and hard links: the new content is a new inode, so
//! other hard links to the old inode keep the old content.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::checksum::{self, Digest, Phase, Sidecar};
use crate::error::{Error, Result, Step, copy_error};
use crate::fault;
use crate::hasher::ContentHasher;
use crate::lock::{self, FileLock, LockMode, Recording};
use crate::names;
use crate::options::{Durability, Options};
use crate::read;
use crate::sys;
use crate::target::Target;

const BUFFER_SIZE: usize = 64 * 1024;

/// How much written data triggers an early writeback (see `AtomicFile::start_writeback`).
const WRITEBACK_STEP: u64 = 8 << 20;

/// A new version of a file, written in pieces and published at once by [`commit`].
///
/// It holds the path's exclusive lock from [`new`] until it is committed or dropped, so the
/// content read with [`read_current`] cannot change before the commit: that is a
/// read-modify-write with no lost update. Dropping it without committing (or a failed
/// commit, or a panic) discards the new content and removes the temp file (best effort;
/// [`discard`] reports a failure).
///
/// [`commit`]: AtomicFile::commit
/// [`new`]: AtomicFile::new
/// [`read_current`]: AtomicFile::read_current
/// [`discard`]: AtomicFile::discard
///
/// # Examples
///
/// ```
/// use std::io::Write;
/// use durafile::{AtomicFile, Options};
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("log.txt");
/// let mut file = AtomicFile::new(&path, &Options::new())?;
/// for i in 0..3 {
///     writeln!(file, "line {i}")?;
/// }
/// assert!(!path.exists(), "nothing is visible before the commit");
/// file.commit()?;
/// assert_eq!(std::fs::read_to_string(&path)?, "line 0\nline 1\nline 2\n");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct AtomicFile {
    /// The path's exclusive lock; `None` when the caller holds a lock that covers the file
    /// (a state directory's lock covers its generation files). The first field, so that it
    /// is the first dropped: once `Drop::drop` has run, nothing needs the lock, and the
    /// descriptors closed after it (the temp file, the directory) are not the next writer's
    /// to wait for.
    _lock: Option<FileLock>,
    target: Target,
    temp: PathBuf,
    out: BufWriter<File>,
    durability: Durability,
    mode: u32,
    /// The first write error. A commit after it must fail: the temp file is incomplete.
    failed: Option<io::Error>,
    /// Bytes accepted by `write` so far (some may still sit in `out`'s buffer).
    accepted: u64,
    /// Where the next early writeback starts.
    writeback_from: u64,
    /// Whether the temp file still exists under its name and is ours to remove. Cleared
    /// only once it has been renamed or removed, so that `Drop` cleans up after any error
    /// or panic part-way through a commit.
    temp_pending: bool,
    /// Set when the target gets a checksum sidecar (see [`crate::checksum`]).
    checksum: Option<Checksum>,
    /// Whether the options asked for checksums, so that reading the current content requires
    /// a sidecar.
    require_checksum: bool,
    /// What was at the sidecar's name when the lock was taken; it cannot change while the lock
    /// is held, so reading the current content verifies against it without a second look.
    sidecar: Sidecar,
    /// The temp file's metadata as created, for its owner and mode change at commit.
    temp_meta: fs::Metadata,
    /// Whose owner and group the new file and its sidecar get: the target's, or for a new
    /// file the predecessor the caller named.
    owner: Option<fs::Metadata>,
}

#[derive(Debug)]
struct Checksum {
    /// Hashes the new content as it is written.
    hasher: ContentHasher,
    /// The digests the sidecar lists now; `None` when there is no usable sidecar, and the
    /// old content (if any) must be hashed before the pair protocol begins.
    old: Option<Vec<Digest>>,
}

impl AtomicFile {
    /// Locks `path` and creates the temp file that will replace it.
    ///
    /// # Errors
    ///
    /// At [`Step::Resolve`] or [`Step::Inspect`] when the path does not lead to a regular file
    /// or a free name; at [`Step::Lock`] when the lock cannot be taken (see
    /// [`lock::acquire`]); at [`Step::CreateTemp`] when the directory refuses a new file.
    /// [`Error::Refused`] for a link or file another user controls in a shared directory, and
    /// [`Error::OwnFile`] for durafile's own lock and temp files (see the
    /// README's threat model).
    ///
    /// # Security
    ///
    /// The temp file is created exclusively, without following a symlink at its name, and
    /// readable by its owner only until the commit gives it its final mode.
    pub fn new(path: impl AsRef<Path>, opts: &Options) -> Result<AtomicFile> {
        AtomicFile::for_target(Target::resolve(path.as_ref())?, opts)
    }

    /// [`AtomicFile::new`] for a path already resolved.
    pub(crate) fn for_target(mut target: Target, opts: &Options) -> Result<AtomicFile> {
        // Refuse before the lock file is made: nothing is created beside a refused target.
        check_target(&target)?;
        // The directory is pinned before the lock, so that the lock file is opened through the
        // same descriptor as everything after it (a path whose directory part has a link would
        // otherwise open it twice). At the lock's step: a missing directory is reported as the
        // lock's, whose file is the first thing made in it.
        target.pin_dir(Step::Lock)?;
        // `create` records the temp file's name in the lock file before naming it: the
        // holder's record and that name go in one write.
        let timeout = opts.get_lock_timeout();
        let lock =
            lock::lock_recording(&target, LockMode::Exclusive, timeout, Recording::ByWriter)?;
        AtomicFile::create(target, opts, Some(lock), None)
    }

    /// See [`FileLock::disown`].
    pub(crate) fn disown_lock(&self) {
        if let Some(lock) = &self._lock {
            lock.disown();
        }
    }

    /// See [`FileLock::adopt`].
    pub(crate) fn adopt_lock(&mut self) {
        if let Some(lock) = &mut self._lock {
            lock.adopt();
        }
    }

    /// Raises or lowers the level this file commits at, before anything is written to it (a
    /// group commit serves its strongest member's level).
    pub(crate) fn set_durability(&mut self, durability: Durability) {
        self.durability = durability;
    }

    /// [`AtomicFile::for_target`] with the target's exclusive lock already taken (a group
    /// commit takes its locks in a global order, so that two batches cannot deadlock).
    pub(crate) fn with_lock(target: Target, opts: &Options, lock: FileLock) -> Result<AtomicFile> {
        AtomicFile::create(target, opts, Some(lock), None)
    }

    /// [`AtomicFile::new`] under `path`'s exclusive lock that the caller already holds, such as
    /// one adopted from a parent process with [`lock::adopt_inherited`], instead of taking it
    /// (which would wait for ourselves).
    ///
    /// # Errors
    ///
    /// At [`Step::Lock`] when `lock` is not `path`'s lock or is shared; otherwise as
    /// [`AtomicFile::new`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Write;
    /// use durafile::lock::{self, LockMode};
    /// use durafile::{AtomicFile, Options};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("state.json");
    /// let held = lock::acquire(&path, LockMode::Exclusive, None)?;
    /// let mut file = AtomicFile::with_held_lock(&path, &Options::new(), held)?;
    /// file.write_all(b"{}")?;
    /// file.commit()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_held_lock(
        path: impl AsRef<Path>,
        opts: &Options,
        lock: FileLock,
    ) -> Result<AtomicFile> {
        let target = Target::resolve(path.as_ref())?;
        let lock_file = target.sibling(names::lock_name(&target.name));
        let ours = sys::names_file(&lock_file, lock.id());
        if !ours || lock.mode() != LockMode::Exclusive {
            let why = format!(
                "the lock given is {}'s, held {:?}; writing needs {}'s, held exclusive",
                crate::error::quote(lock.lock_file()),
                lock.mode(),
                crate::error::quote(&lock_file)
            );
            return Err(Error::io(
                Step::Lock,
                &target.given,
                io::Error::new(io::ErrorKind::InvalidInput, why),
            ));
        }
        AtomicFile::create(target, opts, Some(lock), None)
    }

    /// [`AtomicFile::new`] for a file whose writers are already excluded by a lock the caller
    /// holds, so that no lock file is made for it. A new file takes the permission bits,
    /// owner and group of `predecessor` (the file it succeeds: a state's previous generation,
    /// the document a migration stages), unless `opts` sets a mode.
    pub(crate) fn new_covered(
        path: &Path,
        opts: &Options,
        predecessor: Option<&fs::Metadata>,
    ) -> Result<AtomicFile> {
        AtomicFile::create(Target::resolve(path)?, opts, None, predecessor)
    }

    fn create(
        mut target: Target,
        opts: &Options,
        lock: Option<FileLock>,
        predecessor: Option<&fs::Metadata>,
    ) -> Result<AtomicFile> {
        // Read the target's mode and owner under the lock: a writer that went before us may
        // have replaced it since we resolved the path (with another mode: the one read before
        // the lock could widen what that writer narrowed). The `lstat` at resolve cannot serve:
        // it finds where the lock is (a link at the name moves it), so it comes before it.
        target.refresh()?;
        check_target(&target)?;
        let mode = match (opts.get_mode(), &target.meta) {
            (Some(mode), _) => mode,
            (None, Some(meta)) => meta.permissions().mode() & 0o777,
            // A successor is as private as its predecessor (setuid and setgid not carried over).
            (None, None) => predecessor.map_or(0o666 & !sys::umask(), |m| m.mode() & 0o777),
        };
        let sidecar = checksum::sidecar_name(&target.name);
        if opts.get_checksum() && sidecar.len() > names::NAME_MAX {
            return Err(Error::io_advised(
                Step::ChecksumBegin,
                &target.given,
                io::Error::from_raw_os_error(libc::ENAMETOOLONG),
                format!(
                    "its checksum file would be named {} bytes long, more than a file name may have ({}); shorten the name or write it without checksums",
                    sidecar.len(),
                    names::NAME_MAX
                ),
            ));
        }
        // Pin the directory we resolved: a directory swapped for a link since is refused, and
        // one swapped later is not followed.
        target.pin_dir(Step::CreateTemp)?;
        // The one look at the sidecar's name under the lock: it decides whether this write
        // keeps a sidecar, and the current content is verified against it (`current`).
        let sidecar = checksum::load_sidecar(&target, Step::ChecksumBegin)?;
        let checksum =
            checksum::for_write(&target, &sidecar, opts.get_checksum())?.map(|old| Checksum {
                hasher: ContentHasher::default(),
                old,
            });
        // Recorded before it exists, so that a writer killed at any instant after its creation
        // leaves an orphan the next holder finds. (Created under the lock, not before it: a
        // temp file made while waiting could not be recorded yet, and an unnamed `O_TMPFILE`
        // one measured no faster here; see the module docs.)
        if let Some(lock) = &lock {
            lock.remove_dead_temp(&target);
        }
        let record = |name: &OsStr| {
            if let Some(lock) = &lock {
                lock.record_temp(name);
            }
        };
        let (file, temp, temp_meta) = target.create_recorded_temp(&target.name, record)?;
        let owner = target.meta.clone().or_else(|| predecessor.cloned());
        Ok(AtomicFile {
            target,
            temp,
            out: BufWriter::with_capacity(BUFFER_SIZE, file),
            durability: opts.get_durability(),
            mode,
            failed: None,
            accepted: 0,
            writeback_from: 0,
            temp_pending: true,
            checksum,
            require_checksum: opts.get_checksum(),
            sidecar,
            temp_meta,
            _lock: lock,
            owner,
        })
    }

    /// The path this file will replace, as given to [`AtomicFile::new`].
    pub fn path(&self) -> &Path {
        &self.target.given
    }

    /// The temp file the new content is written to.
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// The target's current content, `None` if it does not exist yet. The lock held since
    /// [`AtomicFile::new`] guarantees that no durafile writer changes it before the commit.
    /// When the target has a checksum sidecar the content is verified first, so an update
    /// never builds on corrupt data ([`Error::ChecksumMismatch`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Write;
    /// use durafile::{AtomicFile, Options};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("count");
    /// std::fs::write(&path, "41")?;
    /// let mut file = AtomicFile::new(&path, &Options::new())?;
    /// let n: u64 = String::from_utf8(file.read_current()?.unwrap())?.parse()?;
    /// write!(file, "{}", n + 1)?;
    /// file.commit()?;
    /// assert_eq!(std::fs::read_to_string(&path)?, "42");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_current(&self) -> Result<Option<Vec<u8>>> {
        self.current(read::read_target)
    }

    /// The target opened for reading, `None` if it does not exist yet: the streaming form of
    /// [`AtomicFile::read_current`], for content too large to hold in memory (verified the
    /// same way, by a first pass over the open file).
    pub fn open_current(&self) -> Result<Option<File>> {
        self.current(read::open_target)
    }

    /// The current content through `load`, verified against the sidecar when there is one
    /// (and required to have one when the options ask for checksums).
    fn current<T>(
        &self,
        load: impl Fn(&Target, &Options, bool, Option<&Sidecar>) -> Result<T>,
    ) -> Result<Option<T>> {
        if self.target.meta.is_none() {
            return Ok(None);
        }
        let opts = Options::new().checksum(self.require_checksum);
        // The exclusive lock we hold keeps every durafile writer out, so the sidecar is still
        // what `create` found.
        match load(&self.target, &opts, true, Some(&self.sidecar)) {
            Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => Ok(None),
            other => other.map(Some),
        }
    }

    /// Writes `contents` and commits: the one-buffer writers' whole job. A failed write is
    /// remembered by the file, and the commit reports it with its step and path.
    pub(crate) fn commit_with(mut self, contents: &[u8]) -> Result<()> {
        let _ = self.write_all(contents);
        self.commit()
    }

    /// Publishes the new content: flush, permissions, fsync, rename, directory fsync, as the
    /// [`Durability`] level asks. When it returns `Ok`, every reader sees the new content.
    ///
    /// # Errors
    ///
    /// Any error at [`Step::Write`] (including an earlier failed write to this file),
    /// [`Step::SetPermissions`], [`Step::Sync`] or [`Step::Rename`] leaves the target
    /// untouched and the temp file removed. An error at [`Step::SyncDir`] means the new
    /// content is in place but may not survive a power loss.
    pub fn commit(self) -> Result<()> {
        let mut staged = self.stage(true)?;
        if sys::mutant("checksum_finish_first")
            && let Some(pair) = &staged.pair
        {
            pair.finish(&staged.file.target)?;
        }
        staged.publish()?;
        if staged.needs_dir_sync() {
            staged.release_lock_early();
            staged.sync_dir()?;
        }
        staged.finish()
    }

    /// Everything before the rename: flush, permissions, fsync, and the first half of the
    /// checksum pair protocol (whose directory fsync is left to the caller unless `sync_dir`,
    /// so that a group commit can do one for many files).
    pub(crate) fn stage(mut self, sync_dir: bool) -> Result<Staged> {
        // On an error return, `Drop` removes the temp file.
        self.prepare()?;
        let pair = self.begin_checksum(sync_dir)?;
        Ok(Staged { file: self, pair })
    }

    /// The first half of the checksum pair protocol: make the sidecar list the new digest
    /// first, then the old ones. Returns what is needed to cut it down after the rename (or
    /// to restore it, if the rename fails).
    fn begin_checksum(&mut self, sync_dir: bool) -> Result<Option<Pair>> {
        let Some(Checksum { hasher, old }) = self.checksum.take() else {
            return Ok(None);
        };
        let new = hasher.finish().map_err(self.at(Step::ChecksumBegin))?;
        let had_sidecar = old.is_some();
        let old = match old {
            Some(listed) => listed,
            None => match sys::open_regular(&self.target.resolved) {
                Ok(file) => {
                    vec![checksum::hash_reader(file).map_err(self.at(Step::ChecksumBegin))?]
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(self.at(Step::ChecksumBegin)(e)),
            },
        };
        if had_sidecar && old == [new] {
            // Same content: the sidecar stays, but follows a change of the file's mode.
            checksum::set_sidecar_mode(&self.target, self.mode)?;
            return Ok(None);
        }
        // The new digest first: the last step keeps the first line.
        let listed: Vec<Digest> = std::iter::once(new)
            .chain(old.iter().copied().filter(|d| *d != new))
            .collect();
        let sync = self.durability != Durability::None;
        let owner = self.owner.as_ref();
        let sidecar =
            checksum::write_sidecar(&self.target, &listed, Phase::Begin, sync, self.mode, owner)?;
        if sync && sync_dir {
            self.target.with_dir(Step::ChecksumBegin, |dir| {
                sys::sync_dir_file(dir).map_err(self.at(Step::ChecksumBegin))
            })?;
        }
        Ok(Some(Pair { old, new, sidecar }))
    }

    /// After a failed rename, puts the sidecar back as it was, so that it does not keep
    /// accepting content that was never published. Best effort: a sidecar left listing both
    /// digests still verifies the old content, and recovery tidies it. A file that is no
    /// longer durafile's sidecar by then stays.
    fn restore_sidecar(&self, old: &[Digest]) {
        let sync = self.durability != Durability::None;
        if old.is_empty() {
            let _ = checksum::remove_sidecar(&self.target, Step::Rename);
        } else {
            let owner = self.owner.as_ref();
            let _ =
                checksum::write_sidecar(&self.target, old, Phase::Finish, sync, self.mode, owner);
        }
    }

    /// Drops the new content and removes the temp file, reporting a failure to remove it
    /// (which `Drop` cannot). The target is untouched.
    pub fn discard(mut self) -> Result<()> {
        self.temp_pending = false;
        sys::remove_if_exists(&self.temp)
            .map(drop)
            .map_err(self.at(Step::Remove))
    }

    /// Every step up to the rename; a failure here leaves the target untouched.
    fn prepare(&mut self) -> Result<()> {
        if let Some(e) = self.failed.take() {
            return Err(self.at(Step::Write)(e));
        }
        self.out.flush().map_err(self.at(Step::Write))?;
        let file = self.out.get_ref();
        fault::point("durafile::set_permissions")
            .and_then(|()| match &self.owner {
                Some(meta) => sys::copy_owner_from(file, &self.temp_meta, meta),
                None => Ok(()),
            })
            .and_then(|()| file.set_permissions(fs::Permissions::from_mode(self.mode)))
            .map_err(self.at(Step::SetPermissions))?;
        if self.durability != Durability::None {
            // Deliberate bug for the crash-model tests: the fsync moves after the rename.
            let sync = |file| match sys::mutant("sync_after_rename") {
                true => Ok(()),
                false => sys::sync_file(file),
            };
            fault::point("durafile::before_sync")
                .and_then(|()| sync(file))
                .and_then(|()| fault::point("durafile::after_sync"))
                .map_err(self.at(Step::Sync))?;
        }
        Ok(())
    }

    fn at(&self, step: Step) -> impl Fn(io::Error) -> Error + '_ {
        move |e| Error::io_in(step, &self.target.given, &self.target.dir, e)
    }
}

/// Write errors carry a [`durafile::Error`](Error) inside the `io::Error` (with the OS
/// error's kind), so their message names the step and the path, and
/// `e.get_ref()?.downcast_ref::<durafile::Error>()` gets it back. After the first error every
/// write, flush and the commit fail: the temp file is incomplete.
impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.check()?;
        fault::point("durafile::write").map_err(|e| self.fail(e))?;
        let result = match &mut self.checksum {
            // Large content is hashed on a thread of its own: the piece goes to it first, so
            // that it is hashed while it is written, and is then written whole, since the
            // hash must cover exactly the bytes written (after a failed write the commit
            // fails anyway).
            Some(c) => {
                if c.hasher.offload(buf.len()) {
                    c.hasher.update(buf);
                    self.out.write_all(buf).map(|()| buf.len())
                } else {
                    self.out.write(buf).inspect(|&n| c.hasher.update(&buf[..n]))
                }
            }
            None => self.out.write(buf),
        };
        let n = result.map_err(|e| self.fail(e))?;
        self.accepted += n as u64;
        self.start_writeback();
        Ok(n)
    }

    /// Pushes buffered bytes to the temp file. This makes nothing durable or visible: only
    /// [`AtomicFile::commit`] does.
    fn flush(&mut self) -> io::Result<()> {
        self.check()?;
        self.out.flush().map_err(|e| self.fail(e))
    }
}

impl AtomicFile {
    /// Asks the kernel to start writing out every full [`WRITEBACK_STEP`] written so far, so
    /// that the disk works while the caller produces (and hashes) the rest and the final
    /// fsync has little left to do. Only for levels that fsync; a hint, never a guarantee.
    fn start_writeback(&mut self) {
        if self.durability == Durability::None {
            return;
        }
        let in_file = self.accepted - self.out.buffer().len() as u64;
        if in_file - self.writeback_from >= WRITEBACK_STEP {
            sys::start_writeback(self.out.get_ref(), self.writeback_from, in_file);
            self.writeback_from = in_file;
        }
    }

    fn check(&self) -> io::Result<()> {
        match &self.failed {
            Some(e) => Err(self.wrap(copy_error(e))),
            None => Ok(()),
        }
    }

    fn fail(&mut self, e: io::Error) -> io::Error {
        // An interrupted call wrote nothing and is retried by `write_all` and `io::copy`; only
        // a real failure makes the temp file incomplete.
        if e.kind() == io::ErrorKind::Interrupted {
            return e;
        }
        let returned = self.wrap(copy_error(&e));
        self.failed = Some(e);
        returned
    }

    fn wrap(&self, e: io::Error) -> io::Error {
        io::Error::new(e.kind(), self.at(Step::Write)(e))
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.temp_pending {
            // Best effort: whatever is left is an orphan that recovery can tell is unowned.
            let _ = sys::remove_file(&self.temp);
        }
    }
}

/// A file whose new content is written and fsynced, not yet renamed: the halves of a commit,
/// so that a group commit can fsync each directory once for many files.
#[derive(Debug)]
pub(crate) struct Staged {
    file: AtomicFile,
    /// Set once the sidecar lists both the new and the old digests (pair protocol begun).
    pair: Option<Pair>,
}

/// A begun checksum pair protocol.
#[derive(Debug)]
struct Pair {
    /// What the sidecar listed before, to put back if the rename fails.
    old: Vec<Digest>,
    /// The new content's digest, the sidecar's first line.
    new: Digest,
    /// The sidecar written at the beginning, which the last step cuts down.
    sidecar: File,
}

impl Pair {
    /// The protocol's last step: the sidecar keeps its first line, the new digest.
    fn finish(&self, target: &Target) -> Result<()> {
        checksum::finish_sidecar(&self.sidecar, target, &self.new)
    }
}

impl Staged {
    /// The directory whose fsync orders and persists this file's renames.
    pub(crate) fn dir(&self) -> &Path {
        &self.file.target.dir
    }

    /// Whether the sidecar's first step must be made durable (a directory fsync) before
    /// [`Staged::publish`].
    pub(crate) fn begun(&self) -> bool {
        self.pair.is_some() && self.file.durability != Durability::None
    }

    /// Renames the new content over the target. On failure the sidecar is put back and the
    /// temp file removed (when the `Staged` is dropped).
    pub(crate) fn publish(&mut self) -> Result<()> {
        let f = &mut self.file;
        let temp_name = f.temp.file_name().unwrap_or_default();
        let renamed = f.target.with_dir(Step::Rename, |dir| {
            fault::point("durafile::before_rename")
                .and_then(|()| sys::rename_at(dir, temp_name, &f.target.name))
                .map_err(f.at(Step::Rename))
        });
        if let Err(e) = renamed {
            if let Some(pair) = &self.pair {
                f.restore_sidecar(&pair.old);
            }
            return Err(e);
        }
        f.temp_pending = false;
        if sys::mutant("sync_after_rename") && f.durability != Durability::None {
            sys::sync_file(f.out.get_ref()).map_err(f.at(Step::Sync))?;
        }
        Ok(())
    }

    /// Whether the directory must be fsynced after the rename: for `Full`, and with a
    /// sidecar for `Consistent` too, so that the sidecar's last step cannot reach the disk
    /// before the rename (a power loss would leave old data with only the new digest).
    pub(crate) fn needs_dir_sync(&self) -> bool {
        match self.file.durability {
            Durability::Full => true,
            Durability::Consistent => self.pair.is_some(),
            Durability::None => false,
        }
    }

    /// Releases the path's lock before the directory fsync, when no sidecar step follows.
    /// The next writer can only rename after our rename, so the fsync makes our version or
    /// a later one durable (and a later update contains ours): what survives a power loss
    /// is still a prefix of the acknowledged changes, and the call still returns only once
    /// its change is durable. Holding the lock through the fsync would only make every
    /// waiter pay for it. (Checked by the crash-state checker, `tests/crash_model`.)
    ///
    /// Nothing of ours is exposed to the next holder: the temp file the lock file records for
    /// it (which a holder removes when its writer is dead) was renamed away before the
    /// release, and everything left to do goes through our own descriptors (the pinned
    /// directory's fsync). With a sidecar the lock is kept: a next writer would find the
    /// two-digest sidecar its last step has yet to cut down, and hash the whole current
    /// content to learn which digest is current.
    pub(crate) fn release_lock_early(&mut self) {
        if self.pair.is_none() {
            self.file._lock = None;
        }
    }

    /// fsync of the directory after the rename.
    pub(crate) fn sync_dir(&self) -> Result<()> {
        if sys::mutant("skip_dir_sync") {
            return Ok(());
        }
        let f = &self.file;
        f.target.with_dir(Step::SyncDir, |dir| {
            fault::point("durafile::before_sync_dir")
                .and_then(|()| sys::sync_dir_file(dir))
                .map_err(f.at(Step::SyncDir))
        })
    }

    /// The second half of the pair protocol: the sidecar lists the new digest only.
    pub(crate) fn finish(self) -> Result<()> {
        match &self.pair {
            Some(pair) => pair.finish(&self.file.target),
            None => Ok(()),
        }
    }
}

/// Refuses targets no writer should replace: durafile's own lock and temp files, and in a
/// sticky shared directory a file that neither the caller nor the directory's owner owns
/// (the kernel's `protected_regular` rule: root would put its data into another user's file,
/// and an ordinary user's rename would fail with a bare EPERM).
fn check_target(target: &Target) -> Result<()> {
    // The name given counts as much as the name resolved: `.x.lock` is a lock file's name
    // even when a link makes it point elsewhere.
    let given = target.given.file_name().unwrap_or_default();
    if names::is_own_name(&target.name) || names::is_own_name(given) {
        return Err(Error::OwnFile {
            path: target.given.clone(),
        });
    }
    match &target.meta {
        Some(meta) if !target.trusts(meta.uid()) => Err(Error::Refused {
            step: Step::Inspect,
            path: target.given.clone(),
            file: target.resolved.clone(),
            what: "to replace",
            owner: meta.uid(),
            reason: "in a sticky shared directory only a file's owner or the directory's owner may replace it, as the kernel's protected_regular rule and the sticky bit say; ask its owner, or write another name",
        }),
        _ => Ok(()),
    }
}

/// Replaces `path`'s content with `contents`, atomically and with `opts`' durability.
///
/// # Errors
///
/// See [`AtomicFile::new`] and [`AtomicFile::commit`]. On every error but a failed directory
/// fsync, the target is untouched and no temp file remains.
///
/// # Examples
///
/// ```
/// use durafile::{Durability, Options};
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("state.json");
/// durafile::write(&path, br#"{"n":1}"#, &Options::new())?;
/// durafile::write(&path, br#"{"n":2}"#, &Options::new().durability(Durability::Consistent))?;
/// assert_eq!(std::fs::read(&path)?, br#"{"n":2}"#);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn write(path: impl AsRef<Path>, contents: impl AsRef<[u8]>, opts: &Options) -> Result<()> {
    AtomicFile::new(path, opts)?.commit_with(contents.as_ref())
}

/// [`write`] for a file whose writers are already excluded by a lock the caller holds (a
/// state's generations, a migration's journal and staged documents): no lock file of its own.
/// A new file takes after `predecessor`, as for [`AtomicFile::new_covered`].
pub(crate) fn write_covered(
    path: &Path,
    contents: &[u8],
    opts: &Options,
    predecessor: Option<&fs::Metadata>,
) -> Result<()> {
    AtomicFile::new_covered(path, opts, predecessor)?.commit_with(contents)
}
