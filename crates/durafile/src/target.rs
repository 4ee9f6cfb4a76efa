//! Which file a path really names: durafile follows symbolic links so that a link stays a
//! link and the file it points to is what gets replaced (as `echo > link` would), and refuses
//! anything that is not a regular file before it changes a thing.
//!
//! # Links in shared directories
//!
//! durafile walks the path one component at a time with `lstat`, so that it sees every link
//! on the way (in a directory component as well as at the end), and follows a link only where
//! the kernel's `fs.protected_symlinks` rule would: in a sticky world-writable directory (like
//! `/tmp`) only a link owned by the caller (the effective uid) or by the directory's owner.
//! It applies the rule whatever the sysctl says and on systems that have none (macOS); a
//! refused link is [`Error::Refused`], naming the link and its owner, before any file is
//! created. The resolved path has no links left, and durafile records the identity (device,
//! inode) of the target's directory, which [`Target::open_dir`] checks again when the writer
//! opens it, so a directory swapped for a link in between is refused too. A writer then
//! creates its lock and temp files, renames and fsyncs through that directory's descriptor
//! (`openat`, `renameat`), never through the path again.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result, Step};
use crate::fault;
use crate::names;
use crate::sys;

/// How many unique names to try before giving up on creating a temp file. A collision needs
/// another file with the same ten random characters, so reaching this means something is
/// wrong with the directory, not bad luck.
const CREATE_ATTEMPTS: usize = 64;

/// Linux's limit on symlinks followed in one lookup; the same here for the same reason.
const MAX_LINKS: usize = 40;

/// Sticky and writable by others: where the kernel's protected_* rules apply.
const STICKY: u32 = 0o1000;
const OTHERS_WRITE: u32 = 0o002;
const GROUP_WRITE: u32 = 0o020;

/// A resolved target.
#[derive(Debug)]
pub(crate) struct Target {
    /// The path as the caller gave it, for messages.
    pub given: PathBuf,
    /// The file to replace: `given` with every symlink followed.
    pub resolved: PathBuf,
    /// The directory that holds `path` (where the temp and lock files go).
    pub dir: PathBuf,
    /// `path`'s file name.
    pub name: OsString,
    /// The metadata of the existing file, or `None` when there is none yet.
    pub meta: Option<fs::Metadata>,
    /// The metadata of `dir` as the walk found it, `None` when it does not exist.
    pub dir_meta: Option<fs::Metadata>,
    /// `dir`, opened and checked by [`Target::pin_dir`]: a writer creates, renames and syncs
    /// through it.
    pinned: Option<File>,
}

impl Target {
    pub(crate) fn resolve(given: &Path) -> Result<Target> {
        let io_err = |e| Error::io(Step::Resolve, given, e);
        if given.file_name().is_none() {
            return Err(Error::NoFileName {
                path: given.to_path_buf(),
            });
        }
        // The common case: no link in the directory part (the kernel checks it in one call),
        // so only the last component can be one.
        if let Some(dir) = given
            .parent()
            .and_then(|p| sys::open_dir_without_links(&dir_of(p)))
        {
            match fs::symlink_metadata(given) {
                Ok(meta) if meta.file_type().is_symlink() => {}
                Ok(meta) if !meta.is_file() => {
                    return Err(Error::NotRegularFile {
                        path: given.to_path_buf(),
                        kind: kind_of(&meta),
                    });
                }
                Ok(meta) => return Target::new(given, given.to_path_buf(), Some(meta), Some(dir)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Target::new(given, given.to_path_buf(), None, Some(dir));
                }
                Err(e) => return Err(io_err(e)),
            }
        }
        let mut todo: VecDeque<OsString> = VecDeque::new();
        push_front(&mut todo, given);
        let mut done = if given.is_absolute() {
            PathBuf::from("/")
        } else {
            PathBuf::new()
        };
        let mut links = 0;
        // Once a directory is missing, nothing below it exists: the rest is joined as given,
        // and the lock file's creation reports the missing directory.
        let mut missing = false;
        while let Some(part) = todo.pop_front() {
            let last = todo.is_empty();
            if part == ".." {
                if last {
                    return Err(Error::NoFileName {
                        path: given.to_path_buf(),
                    });
                }
                // `done` has no links in it, so its parent is the real parent.
                if missing || done.as_os_str().is_empty() || done.ends_with("..") {
                    done.push("..");
                } else if !done.pop() {
                    done.push("/");
                }
                continue;
            }
            let here = done.join(&part);
            if missing && last {
                return Target::new(given, here, None, None);
            } else if missing {
                done = here;
                continue;
            }
            let meta = match fs::symlink_metadata(&here) {
                Ok(meta) => meta,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    missing = true;
                    if last {
                        return Target::new(given, here, None, None);
                    }
                    done = here;
                    continue;
                }
                Err(e) => return Err(io_err(e)),
            };
            if meta.file_type().is_symlink() {
                links += 1;
                if links > MAX_LINKS {
                    return Err(io_err(io::Error::from_raw_os_error(libc::ELOOP)));
                }
                check_link(given, &here, &meta, &dir_of(&done))?;
                let link = fs::read_link(&here).map_err(io_err)?;
                if link.is_absolute() {
                    done = PathBuf::from("/");
                }
                push_front(&mut todo, &link);
            } else if last {
                if !meta.is_file() {
                    return Err(Error::NotRegularFile {
                        path: here,
                        kind: kind_of(&meta),
                    });
                }
                return Target::new(given, here, Some(meta), None);
            } else if meta.is_dir() {
                done = here;
            } else {
                return Err(io_err(io::Error::from_raw_os_error(libc::ENOTDIR)));
            }
        }
        // A link to "." or "/": no file name at the end.
        Err(Error::NoFileName {
            path: given.to_path_buf(),
        })
    }

    /// The target at `path` (link-free), with its directory when it is already open.
    fn new(
        given: &Path,
        path: PathBuf,
        meta: Option<fs::Metadata>,
        pinned: Option<File>,
    ) -> Result<Target> {
        let Some(name) = path.file_name().map(OsString::from) else {
            return Err(Error::NoFileName {
                path: given.to_path_buf(),
            });
        };
        let dir = dir_of(path.parent().unwrap_or(Path::new("")));
        let dir_meta = match pinned
            .as_ref()
            .map_or_else(|| fs::symlink_metadata(&dir), File::metadata)
        {
            Ok(m) => Some(m),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io(Step::Resolve, given, e)),
        };
        Ok(Target {
            given: given.to_path_buf(),
            resolved: path,
            dir,
            name,
            meta,
            dir_meta,
            pinned,
        })
    }

    /// Reads the target's metadata again (under the lock, where it cannot change under a
    /// durafile writer) and checks it is still a regular file or absent.
    pub(crate) fn refresh(&mut self) -> Result<()> {
        self.meta = match fs::symlink_metadata(&self.resolved) {
            Ok(meta) if meta.is_file() => Some(meta),
            Ok(meta) => {
                return Err(Error::NotRegularFile {
                    path: self.resolved.clone(),
                    kind: kind_of(&meta),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io(Step::Inspect, &self.given, e)),
        };
        Ok(())
    }

    /// A sibling of the target in its directory.
    pub(crate) fn sibling(&self, name: impl AsRef<OsStr>) -> PathBuf {
        self.dir.join(name.as_ref())
    }

    /// Opens the target's directory and checks it is the one the walk resolved (same device
    /// and inode): a directory swapped for a link since then is refused, not followed.
    pub(crate) fn open_dir(&self, step: Step) -> Result<File> {
        let dir = sys::open_dir(&self.dir).map_err(|e| Error::io(step, &self.given, e))?;
        let opened = dir
            .metadata()
            .map_err(|e| Error::io(step, &self.given, e))?;
        match &self.dir_meta {
            Some(m) if sys::file_id(m) == sys::file_id(&opened) => Ok(dir),
            _ => Err(Error::io_advised(
                step,
                &self.given,
                io::Error::from_raw_os_error(libc::ESTALE),
                format!(
                    "the directory {} changed while durafile resolved the path; retry, and check who renames it",
                    crate::error::quote(&self.dir)
                ),
            )),
        }
    }

    /// Opens the target's directory once for this target's life ([`Target::open_dir`]), so
    /// that every later step works in the directory that was checked.
    pub(crate) fn pin_dir(&mut self, step: Step) -> Result<()> {
        if self.pinned.is_none() {
            self.pinned = Some(self.open_dir(step)?);
        }
        Ok(())
    }

    /// The directory [`Target::pin_dir`] opened, if a writer pinned it.
    pub(crate) fn pinned_dir(&self) -> Option<&File> {
        self.pinned.as_ref()
    }

    /// Runs `f` on the pinned directory, or on one opened and checked for the call.
    pub(crate) fn with_dir<T>(&self, step: Step, f: impl FnOnce(&File) -> Result<T>) -> Result<T> {
        match &self.pinned {
            Some(dir) => f(dir),
            None => f(&self.open_dir(step)?),
        }
    }

    /// Creates and flocks a fresh temp file for `name` (the target's or its sidecar's) in the
    /// target's directory.
    pub(crate) fn create_temp(&self, name: &OsStr) -> Result<(File, PathBuf)> {
        self.create_recorded_temp(name, |_| {})
            .map(|(file, temp, _)| (file, temp))
    }

    /// [`Target::create_temp`], telling `record` each name before it is created. Also returns
    /// the new file's metadata (from the `fstat` that checks it is still linked), for the
    /// writer's owner and mode changes.
    pub(crate) fn create_recorded_temp(
        &self,
        name: &OsStr,
        record: impl Fn(&OsStr),
    ) -> Result<(File, PathBuf, fs::Metadata)> {
        let fail = |e| Error::io_in(Step::CreateTemp, &self.given, &self.dir, e);
        for _ in 0..CREATE_ATTEMPTS {
            let temp_name = names::temp_name(name);
            record(&temp_name);
            let created = self.with_dir(Step::CreateTemp, |dir| {
                Ok(sys::create_private(dir, &temp_name))
            })?;
            let temp = self.sibling(temp_name);
            let file = match created {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(fail(e)),
            };
            // The `fstat` both proves the name is still ours and gives the metadata.
            let owned = fault::point("durafile::after_create")
                .and_then(|()| file.lock())
                .and_then(|()| file.metadata());
            match owned {
                // A concurrent clean_orphans took it in the instant before our flock.
                Ok(meta) if meta.nlink() == 0 => continue,
                Ok(meta) => return Ok((file, temp, meta)),
                Err(e) => {
                    drop(file);
                    let _ = sys::remove_file(&temp);
                    return Err(fail(e));
                }
            }
        }
        Err(fail(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "every temp name tried was taken",
        )))
    }

    /// Whether the target's directory is sticky and writable by others than its owner, where
    /// the kernel protects files from other users (`protected_regular=2`).
    pub(crate) fn in_shared_dir(&self) -> bool {
        self.dir_meta
            .as_ref()
            .is_some_and(|m| m.mode() & STICKY != 0 && m.mode() & (OTHERS_WRITE | GROUP_WRITE) != 0)
    }

    /// Whether a file owned by `uid` may be trusted in the target's directory: anywhere but a
    /// shared (sticky, group- or world-writable) directory; there, when it is the caller's or
    /// the directory owner's (the kernel's `protected_regular` rule).
    pub(crate) fn trusts(&self, uid: u32) -> bool {
        !self.in_shared_dir()
            || uid == sys::euid()
            || self.dir_meta.as_ref().is_some_and(|m| m.uid() == uid)
    }
}

/// `dir` as a path to open: "." for the empty path of a bare name.
fn dir_of(dir: &Path) -> PathBuf {
    if dir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        dir.to_path_buf()
    }
}

/// Puts `path`'s components in front of the queue, in order.
fn push_front(todo: &mut VecDeque<OsString>, path: &Path) {
    for c in path.components().rev() {
        match c {
            Component::Normal(n) => todo.push_front(n.to_os_string()),
            Component::ParentDir => todo.push_front("..".into()),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
}

/// The kernel's `protected_symlinks` rule: in a sticky world-writable directory, follow a
/// link only if the follower or the directory's owner owns it.
fn check_link(given: &Path, link: &Path, meta: &fs::Metadata, dir: &Path) -> Result<()> {
    let dir_meta = fs::symlink_metadata(dir).map_err(|e| Error::io(Step::Resolve, given, e))?;
    let shared = dir_meta.mode() & (STICKY | OTHERS_WRITE) == STICKY | OTHERS_WRITE;
    if !shared || meta.uid() == sys::euid() || meta.uid() == dir_meta.uid() {
        return Ok(());
    }
    Err(Error::Refused {
        step: Step::Resolve,
        path: given.to_path_buf(),
        file: link.to_path_buf(),
        what: "to follow the symbolic link",
        owner: meta.uid(),
        reason: "in a sticky world-writable directory durafile follows only links owned by you or by the directory's owner, as the kernel's protected_symlinks rule does; remove the link if you did not make it, or use the real path",
    })
}

pub(crate) fn kind_of(meta: &fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_symlink() {
        "symbolic link"
    } else if t.is_dir() {
        "directory"
    } else if t.is_fifo() {
        "fifo"
    } else if t.is_socket() {
        "socket"
    } else if t.is_block_device() || t.is_char_device() {
        "device"
    } else {
        "special file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn follows_relative_and_chained_links() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("real")).unwrap();
        fs::write(dir.path().join("real/f.json"), "{}").unwrap();
        symlink("real/f.json", dir.path().join("l1")).unwrap();
        symlink(dir.path().join("l1"), dir.path().join("l2")).unwrap();
        let t = Target::resolve(&dir.path().join("l2")).unwrap();
        assert_eq!(t.resolved, dir.path().join("real/f.json"));
        assert_eq!(t.dir, dir.path().join("real"));
        assert!(t.meta.is_some());
    }

    #[test]
    fn dangling_link_resolves_to_its_target() {
        let dir = tempfile::tempdir().unwrap();
        symlink("new.json", dir.path().join("link")).unwrap();
        let t = Target::resolve(&dir.path().join("link")).unwrap();
        assert_eq!(t.resolved, dir.path().join("new.json"));
        assert!(t.meta.is_none());
    }

    #[test]
    fn link_loop_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        symlink("b", dir.path().join("a")).unwrap();
        symlink("a", dir.path().join("b")).unwrap();
        let err = Target::resolve(&dir.path().join("a")).unwrap_err();
        assert_eq!(err.step(), Some(Step::Resolve));
    }

    #[test]
    fn directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = Target::resolve(dir.path()).unwrap_err();
        assert!(matches!(
            err,
            Error::NotRegularFile {
                kind: "directory",
                ..
            }
        ));
    }

    #[test]
    fn dot_dot_after_a_link_is_the_links_targets_parent() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("a/b")).unwrap();
        symlink("a/b", dir.path().join("l")).unwrap();
        let t = Target::resolve(&dir.path().join("l/../f.json")).unwrap();
        assert_eq!(t.resolved, dir.path().join("a/f.json"));
    }

    #[test]
    fn missing_directory_resolves_and_fails_later() {
        let dir = tempfile::tempdir().unwrap();
        let t = Target::resolve(&dir.path().join("no/such/f.json")).unwrap();
        assert!(t.dir_meta.is_none());
        assert!(t.open_dir(Step::Lock).is_err());
    }

    #[test]
    fn bare_name_lives_in_current_directory() {
        let t = Target::resolve(Path::new("no-such-file-here.json")).unwrap();
        assert_eq!(t.dir, Path::new("."));
    }
}
