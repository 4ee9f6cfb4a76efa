//! SHA-256 checksums in a `sha256sum`-compatible sidecar that stays consistent through crashes.
//!
//! # Format
//!
//! The checksum of `dir/NAME` lives in `dir/NAME.sha256`, one `sha256sum` line per digest:
//! `<64 hex digits>  NAME`. So `cd dir && sha256sum -c NAME.sha256` checks a durafile file
//! with no durafile installed (while the sidecar lists a single digest, which is always the
//! case after a write that returned or after `durafile recover`).
//!
//! # The pair protocol
//!
//! Data and sidecar are two files, and no rename replaces two files at once. So a sidecar may
//! list several digests, and a file verifies when its content matches **any** of them. A
//! write, under the path's exclusive lock, goes:
//!
//! 1. Write and fsync the new data to its temp file, hashing it on the way (no second pass).
//! 2. **Begin**: replace the sidecar with one listing the old digest(s) *and* the new one;
//!    fsync it and the directory, so this is durable before step 3 can be.
//! 3. Rename the data over the target (and fsync the directory for `Full`).
//! 4. **Finish**: replace the sidecar with one listing the new digest only.
//!
//! A crash at any point leaves the old data with a sidecar listing the old digest, or old or
//! new data with a sidecar listing both, or the new data with the new digest: durafile never
//! reports a mismatch for content it wrote. The same holds after a power loss at
//! [`Durability::Full`] and [`Durability::Consistent`]: with a sidecar, both fsync the
//! directory after the data rename so that step 4 cannot reach the disk before step 3
//! (so with checksums `Consistent` costs as much as `Full`). At [`Durability::None`] nothing is
//! ordered on disk, and after a power loss a file may fail verification; `durafile recover`
//! then lists it. `durafile recover`
//! reduces a two-digest sidecar to the digest of the current content. Anything that changes
//! the data outside durafile (a flipped bit, a truncation, an appended line) matches none of
//! the listed digests and is reported as [`Error::ChecksumMismatch`].
//!
//! The old digest comes from the old sidecar; a file that had none is hashed once, so that a
//! crash during its first checksummed write cannot raise a false alarm. A writer keeps an
//! existing sidecar up to date even when [`Options::checksum`] is off: a sidecar is never
//! left stale by durafile.
//!
//! # Verifying without a lock
//!
//! A reader opens the data first and reads the sidecar after. By the order above, a sidecar
//! read later than the data was opened lists that data's digest, unless a whole new write
//! completed in between, in which case the path no longer names the inode the reader holds
//! open; the reader then starts over. Only a mismatch on an inode that is still the target
//! is reported.
//!
//! SHA-256 runs on the CPU's SHA extensions (SHA-NI, ARMv8 crypto) when present, detected at
//! run time by the `sha2` crate.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, Read, Seek, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use sha2::{Digest as _, Sha256};

use crate::atomic::create_temp;
use crate::error::{Error, Result, Step};
use crate::fault;
use crate::lock::LockMode;
#[cfg(doc)]
use crate::options::Durability;
use crate::options::Options;
use crate::sys;
use crate::target::Target;

/// A SHA-256 digest.
pub type Digest = [u8; 32];

/// How many times a reader starts over because writers keep replacing the file under it,
/// before it waits for the shared lock instead.
const LOCK_FREE_ATTEMPTS: usize = 8;

/// The name of `name`'s sidecar.
pub(crate) fn sidecar_name(name: &OsStr) -> OsString {
    let mut out = name.to_os_string();
    out.push(".sha256");
    out
}

/// Where `target`'s sidecar lives: beside the file it checks, after symlinks are followed.
pub(crate) fn sidecar_of(target: &Target) -> std::path::PathBuf {
    target.sibling(sidecar_name(&target.name))
}

/// The sidecar of the file at `path` (a path durafile itself named, no symlink to follow).
pub(crate) fn sidecar_path(path: &Path) -> std::path::PathBuf {
    path.with_file_name(sidecar_name(path.file_name().unwrap_or_default()))
}

/// Lower-case hex, as `sha256sum` prints it.
pub fn to_hex(digest: &Digest) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(s: &[u8]) -> Option<Digest> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0; 32];
    for (byte, pair) in out.iter_mut().zip(s.chunks(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

/// An incremental hasher for content written in pieces.
#[derive(Debug, Clone, Default)]
pub(crate) struct Hasher(Sha256);

impl Hasher {
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub(crate) fn finish(self) -> Digest {
        self.0.finalize().into()
    }
}

/// The SHA-256 of everything `reader` yields.
///
/// # Examples
///
/// ```
/// let digest = durafile::checksum::hash_reader(&b"abc"[..])?;
/// assert_eq!(
///     durafile::checksum::to_hex(&digest),
///     "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn hash_reader(mut reader: impl Read) -> io::Result<Digest> {
    let mut hasher = Hasher::default();
    let mut buf = vec![0; 256 * 1024];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ok(hasher.finish()),
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// A sidecar's lines for `name`, in `sha256sum` format (with its escaping of `\` and newline).
fn format_sidecar(digests: &[Digest], name: &OsStr) -> Vec<u8> {
    let raw = name.as_bytes();
    let escape = raw.iter().any(|b| *b == b'\\' || *b == b'\n');
    let mut out = Vec::new();
    for digest in digests {
        if escape {
            out.push(b'\\');
        }
        out.extend_from_slice(to_hex(digest).as_bytes());
        out.extend_from_slice(b"  ");
        for &b in raw {
            match b {
                b'\\' if escape => out.extend_from_slice(b"\\\\"),
                b'\n' => out.extend_from_slice(b"\\n"),
                _ => out.push(b),
            }
        }
        out.push(b'\n');
    }
    out
}

/// The digests a sidecar lists for `name`, or why it is malformed.
fn parse_sidecar(text: &[u8], name: &OsStr) -> Result<Vec<Digest>, String> {
    let mut digests = Vec::new();
    for (i, line) in text.split(|b| *b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let (escaped, line) = match line.strip_prefix(b"\\") {
            Some(rest) => (true, rest),
            None => (false, line),
        };
        let bad = || format!("line {} is not `<sha256 hex>  NAME`", i + 1);
        if line.len() < 66 || !(line[64..].starts_with(b"  ") || line[64..].starts_with(b" *")) {
            return Err(bad());
        }
        let digest = from_hex(&line[..64]).ok_or_else(bad)?;
        let listed = if escaped {
            unescape(&line[66..]).ok_or_else(bad)?
        } else {
            line[66..].to_vec()
        };
        if listed != name.as_bytes() {
            return Err(format!(
                "line {} is for {:?}, not {:?}",
                i + 1,
                String::from_utf8_lossy(&listed),
                name
            ));
        }
        digests.push(digest);
    }
    if digests.is_empty() {
        return Err("it lists no digest".into());
    }
    Ok(digests)
}

fn unescape(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\' {
            out.push(match s.get(i + 1)? {
                b'\\' => b'\\',
                b'n' => b'\n',
                _ => return None,
            });
            i += 2;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    Some(out)
}

/// The digests `target`'s sidecar lists, `None` if it has none.
pub(crate) fn read_sidecar(target: &Target) -> Result<Option<Vec<Digest>>> {
    let path = sidecar_of(target);
    let text = match fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(Step::Verify, &target.given, e)),
    };
    parse_sidecar(&text, &target.name)
        .map(Some)
        .map_err(|reason| Error::BadChecksumFile {
            path: target.given.clone(),
            sidecar: path,
            reason,
        })
}

/// Which half of the pair protocol a sidecar replacement is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Begin,
    Finish,
}

/// Replaces `target`'s sidecar with one listing `digests`: temp file, fsync if `sync`, rename.
/// After [`Phase::Begin`] the caller fsyncs the directory, so that it is durable before the
/// data rename.
/// The sidecar gets the data file's `mode` and owner: a digest of a private file can give
/// away a guessable secret.
pub(crate) fn write_sidecar(
    target: &Target,
    digests: &[Digest],
    phase: Phase,
    sync: bool,
    mode: u32,
) -> Result<()> {
    let (step, before_write, before_rename) = match phase {
        Phase::Begin => (
            Step::ChecksumBegin,
            "durafile::checksum_begin",
            "durafile::checksum_begin_rename",
        ),
        Phase::Finish => (
            Step::ChecksumFinish,
            "durafile::checksum_finish",
            "durafile::checksum_finish_rename",
        ),
    };
    let at = |e| Error::io(step, &target.given, e);
    let name = sidecar_name(&target.name);
    let sidecar = sidecar_of(target);
    let (mut file, temp) = create_temp(target, &name).map_err(|e| match e {
        Error::Io { source, .. } => at(source),
        other => other,
    })?;
    let written = fault::point(before_write)
        .and_then(|()| file.write_all(&format_sidecar(digests, &target.name)))
        .and_then(|()| match &target.meta {
            Some(meta) => sys::copy_owner(&file, meta),
            None => Ok(()),
        })
        .and_then(|()| file.set_permissions(fs::Permissions::from_mode(mode & 0o777)))
        .and_then(|()| if sync { sys::sync_file(&file) } else { Ok(()) })
        .and_then(|()| fault::point(before_rename))
        .and_then(|()| sys::rename(&temp, &sidecar));
    if let Err(e) = written {
        let _ = sys::remove_file(&temp);
        return Err(at(e));
    }
    Ok(())
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// The content matches its sidecar. `pending` is true when the sidecar still lists more
    /// than one digest (an interrupted write that `durafile recover` tidies up).
    Match {
        /// The content's digest.
        digest: Digest,
        /// Whether the sidecar lists other digests too.
        pending: bool,
    },
    /// The file has no sidecar: nothing to verify.
    NoChecksum,
}

/// Checks `path` against its sidecar, streaming the content (memory does not grow with size).
///
/// # Errors
///
/// [`Error::ChecksumMismatch`] when the content matches no listed digest,
/// [`Error::BadChecksumFile`] when the sidecar is malformed, and [`Error::Io`] at
/// [`Step::Read`] when the file cannot be read (NotFound when only the sidecar exists).
///
/// # Examples
///
/// ```
/// use durafile::{Options, checksum::{self, Verification}};
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("state.json");
/// durafile::write(&path, b"{}", &Options::new().checksum(true))?;
/// assert!(matches!(checksum::verify(&path)?, Verification::Match { pending: false, .. }));
///
/// std::fs::write(&path, b"{ }")?; // changed behind durafile's back
/// assert!(matches!(checksum::verify(&path), Err(durafile::Error::ChecksumMismatch { .. })));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn verify(path: impl AsRef<Path>) -> Result<Verification> {
    let target = Target::resolve(path.as_ref())?;
    let sidecar = sidecar_of(&target);
    if !sidecar.exists() {
        return Ok(Verification::NoChecksum);
    }
    let ((), digest, listed) = verified(&target, &Options::new(), false, |file| {
        Ok(((), hash_reader(file)?))
    })?;
    Ok(match listed {
        // The sidecar went away after we looked: there was nothing to verify against.
        0 => Verification::NoChecksum,
        n => Verification::Match {
            digest,
            pending: n > 1,
        },
    })
}

/// Opens `target`, loads it with `load` (which returns a value and the content's digest) and
/// checks the digest against the sidecar, starting over when a writer replaced the file in
/// between. Returns the value, the digest and how many digests the sidecar listed (0: none).
pub(crate) fn verified<T>(
    target: &Target,
    opts: &Options,
    locked: bool,
    mut load: impl FnMut(&mut File) -> io::Result<(T, Digest)>,
) -> Result<(T, Digest, usize)> {
    let read_err = |e| Error::io(Step::Read, &target.given, e);
    let mut shared = None;
    for attempt in 1.. {
        if attempt > LOCK_FREE_ATTEMPTS && !locked && shared.is_none() {
            // Writers keep replacing the file faster than we can read it: queue behind them.
            let timeout = opts.get_lock_timeout();
            shared = Some(crate::lock::lock_target(target, LockMode::Shared, timeout)?);
        }
        let mut file = File::open(&target.resolved).map_err(read_err)?;
        let (value, digest) = load(&mut file).map_err(read_err)?;
        let listed = match read_sidecar(target)? {
            Some(listed) => listed,
            None if opts.get_checksum() => {
                return Err(Error::MissingChecksum {
                    path: target.given.clone(),
                    sidecar: sidecar_of(target),
                });
            }
            None => return Ok((value, digest, 0)),
        };
        if listed.contains(&digest) {
            return Ok((value, digest, listed.len()));
        }
        // Under a lock no durafile writer can have replaced the file; without one, only a
        // mismatch on the inode that is still the target is real.
        let still_target = locked || shared.is_some() || {
            let held = sys::file_id(&file.metadata().map_err(read_err)?);
            fs::metadata(&target.resolved).is_ok_and(|m| sys::file_id(&m) == held)
        };
        if still_target {
            return Err(mismatch(&target.given, &listed, &digest));
        }
    }
    unreachable!("the loop returns once it holds the shared lock")
}

/// The error for content whose `digest` is none of the `listed` ones.
pub(crate) fn mismatch(path: &Path, listed: &[Digest], digest: &Digest) -> Error {
    Error::ChecksumMismatch {
        path: path.to_path_buf(),
        expected: listed.iter().map(to_hex).collect(),
        actual: to_hex(digest),
    }
}

/// Reads all of `file` and hashes it on the way.
pub(crate) fn read_hashed(file: &mut File) -> io::Result<(Vec<u8>, Digest)> {
    let mut bytes = Vec::with_capacity(file.metadata().map_or(0, |m| m.len() as usize));
    file.read_to_end(&mut bytes)?;
    let digest = Sha256::digest(&bytes).into();
    Ok((bytes, digest))
}

/// Hashes `file` to its end, then rewinds it, so the caller reads the very bytes verified.
pub(crate) fn hash_and_rewind(file: &mut File) -> io::Result<((), Digest)> {
    let digest = hash_reader(&mut *file)?;
    file.rewind()?;
    Ok(((), digest))
}

/// The file that the sidecar at `sidecar` holds the checksum of, if it is named like one.
///
/// # Examples
///
/// ```
/// use std::path::Path;
/// let data = durafile::checksum::checksummed_file(Path::new("d/state.json.sha256"));
/// assert_eq!(data.as_deref(), Some(Path::new("d/state.json")));
/// assert_eq!(durafile::checksum::checksummed_file(Path::new("d/state.json")), None);
/// ```
pub fn checksummed_file(sidecar: &Path) -> Option<std::path::PathBuf> {
    let name = data_name_of(sidecar.file_name()?)?;
    Some(sidecar.with_file_name(name))
}

/// The name of the data file a sidecar named `sidecar` belongs to.
pub(crate) fn data_name_of(sidecar: &OsStr) -> Option<OsString> {
    let bytes = sidecar.as_bytes();
    let stem = bytes.strip_suffix(b".sha256")?;
    (!stem.is_empty()).then(|| OsString::from_vec(stem.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sidecar_round_trips_plain_and_escaped_names() {
        let d1 = [1u8; 32];
        let d2 = [0xab; 32];
        for name in ["state.json", "we\\ird", "new\nline"] {
            let name = OsStr::new(name);
            let text = format_sidecar(&[d1, d2], name);
            assert_eq!(parse_sidecar(&text, name), Ok(vec![d1, d2]));
        }
        let text = format_sidecar(&[d1], OsStr::new("a.json"));
        assert_eq!(text, format!("{}  a.json\n", "01".repeat(32)).into_bytes());
    }

    #[test]
    fn malformed_sidecars_are_rejected() {
        let name = OsStr::new("a.json");
        let good = format!("{}  a.json\n", "ab".repeat(32));
        assert!(parse_sidecar(good.as_bytes(), name).is_ok());
        for bad in [
            String::new(),
            format!("{}  b.json\n", "ab".repeat(32)),
            format!("{} a.json\n", "ab".repeat(32)),
            format!("{}  a.json\n", "zz".repeat(32)),
            "abc  a.json\n".to_string(),
        ] {
            assert!(parse_sidecar(bad.as_bytes(), name).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn binary_mode_marker_is_accepted() {
        let text = format!("{} *a.json\n", "cd".repeat(32));
        assert_eq!(
            parse_sidecar(text.as_bytes(), OsStr::new("a.json")),
            Ok(vec![[0xcd; 32]])
        );
    }

    #[test]
    fn data_name_strips_the_suffix() {
        assert_eq!(
            data_name_of(OsStr::new("a.json.sha256")),
            Some("a.json".into())
        );
        assert_eq!(data_name_of(OsStr::new(".sha256")), None);
        assert_eq!(data_name_of(OsStr::new("a.json")), None);
    }
}
