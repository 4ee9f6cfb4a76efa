//! Which file a path really names: durafile follows symbolic links so that a link stays a
//! link and the file it points to is what gets replaced (as `echo > link` would), and refuses
//! anything that is not a regular file before it changes a thing.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result, Step};

/// Linux's limit on symlinks followed in one lookup; the same here for the same reason.
const MAX_LINKS: usize = 40;

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
}

impl Target {
    pub(crate) fn resolve(given: &Path) -> Result<Target> {
        let mut path = given.to_path_buf();
        for _ in 0..MAX_LINKS {
            let meta = match fs::symlink_metadata(&path) {
                Ok(meta) => Some(meta),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(Error::io(Step::Resolve, given, e)),
            };
            match meta {
                Some(m) if m.file_type().is_symlink() => {
                    let link =
                        fs::read_link(&path).map_err(|e| Error::io(Step::Resolve, given, e))?;
                    path = match path.parent() {
                        Some(parent) if link.is_relative() => parent.join(link),
                        _ => link,
                    };
                }
                Some(m) if !m.is_file() => {
                    return Err(Error::NotRegularFile {
                        path,
                        kind: kind_of(&m),
                    });
                }
                meta => return Target::new(given, path, meta),
            }
        }
        Err(Error::io(
            Step::Resolve,
            given,
            io::Error::from_raw_os_error(libc::ELOOP),
        ))
    }

    fn new(given: &Path, path: PathBuf, meta: Option<fs::Metadata>) -> Result<Target> {
        let Some(name) = path.file_name().map(OsString::from) else {
            return Err(Error::NoFileName {
                path: given.to_path_buf(),
            });
        };
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Ok(Target {
            given: given.to_path_buf(),
            resolved: path,
            dir,
            name,
            meta,
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
    pub(crate) fn sibling(&self, name: impl AsRef<std::ffi::OsStr>) -> PathBuf {
        self.dir.join(name.as_ref())
    }
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
    fn bare_name_lives_in_current_directory() {
        let t = Target::resolve(Path::new("no-such-file-here.json")).unwrap();
        assert_eq!(t.dir, Path::new("."));
    }
}
