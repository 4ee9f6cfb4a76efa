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
//! 2. **Begin**: replace the sidecar with one listing the new digest *first*, then the old
//!    one; fsync it and the directory, so this is durable before step 3 can be.
//! 3. Rename the data over the target and fsync the directory.
//! 4. **Finish**: cut the sidecar written in step 2 down to its first line (one `ftruncate`
//!    through the descriptor still open from step 2, no new file, no fsync).
//!
//! A crash at any point leaves the old data with a sidecar listing the old digest, or old or
//! new data with a sidecar listing both, or the new data with the new digest: durafile never
//! reports a mismatch for content it wrote. The same holds after a power loss at
//! [`Durability::Full`] and [`Durability::Consistent`]: with a sidecar, both fsync the
//! directory after the data rename, so the data is durable before step 4 starts (so with
//! checksums `Consistent` costs as much as `Full`). Step 4 needs no fsync of its own: the
//! two-line sidecar it shortens is already durable and lists the new digest first, so a
//! power loss leaves either line set, and both verify the new data. A file's size is one field
//! of its inode, logged whole by journaling filesystems; but a filesystem may zero the tail
//! of the block past the new end of file before the new size reaches the disk, so a sidecar
//! of durafile's first line followed by a line's length of bytes starting with a NUL is read
//! as listing that first line (and `durafile recover` rewrites it to that line alone). At
//! [`Durability::None`] nothing is ordered on disk, and after a power loss a file may fail
//! verification; `durafile recover` then lists it. `durafile recover` reduces a two-digest
//! sidecar to the digest of the current content. Anything that changes the data outside
//! durafile (a flipped bit, a truncation, an appended line) matches none of the listed
//! digests and is reported as [`Error::ChecksumMismatch`].
//!
//! ## What a write costs
//!
//! | write | fsyncs | files created | renames | other |
//! |---|---|---|---|---|
//! | `Full`, no checksum | 2 (data, directory) | 1 | 1 | |
//! | `Consistent`, no checksum | 1 (data) | 1 | 1 | |
//! | `None`, no checksum | 0 | 1 | 1 | |
//! | `Full` or `Consistent`, checksum | 4 (data, sidecar, directory, directory) | 2 | 2 | 1 `ftruncate` |
//! | `None`, checksum | 0 | 2 | 2 | 1 `ftruncate` |
//!
//! The two directory fsyncs of a checksummed write are the minimum for two files whose
//! renames must reach the disk in order, since a rename not yet covered by a directory
//! fsync may be lost independently of another; the old protocol rewrote the sidecar a
//! second time in step 4 (5 fsyncs, 3 files created, 3 renames).
//!
//! The old digest comes from the old sidecar; a file that had none (or whose sidecar an
//! interrupted write left listing two) is hashed once, so that a crash during its write cannot
//! raise a false alarm, and a sidecar never lists more than two digests. A writer keeps an
//! existing sidecar of durafile's up to date even when [`Options::checksum`] is off: such a
//! sidecar is never left stale by durafile.
//!
//! # Files at the sidecar's name that durafile did not write
//!
//! `NAME.sha256` is also the name people give their own `sha256sum` output, and in a shared
//! directory another user may plant anything there. So the sidecar is opened with
//! `O_NOFOLLOW|O_NONBLOCK` (a link is refused, a FIFO cannot block), must be a regular file
//! (fstat) owned by the data file's owner (the directory's when there is no data file), by
//! root or by the caller, and is read no further than 64 KiB. A link, a FIFO, a device or
//! another user's file is refused with [`Error::ChecksumFileRefused`], naming what it is or
//! whose it is, by reads and writes alike, before anything changes; every mode change of a
//! sidecar goes through a descriptor. A reader without a lock judges a refusal again under the
//! shared lock: a group member writing the owner's file makes a sidecar of their own an
//! instant before their data replaces the owner's. So does a reader that needs a sidecar and
//! finds one that does not parse: while a writer cuts it down, the kernel zeroes the cut-off
//! bytes in the very page a reader may be copying.
//!
//! A regular, trusted file is durafile's only when it is byte for byte what durafile writes for
//! this one file: one `<digest>  NAME` line, or two while a write is in flight. Anything else
//! (a list of several files, comments, another name, `sha256sum -b`'s `*`) is the user's:
//! a plain write leaves it byte-identical, a plain read does not verify against it (durafile
//! does not keep it current, so it could only raise false alarms), and a write or read with
//! [`Options::checksum`], [`verify`] and recovery report it ([`Error::ChecksumFileRefused`] for
//! a write, [`Error::BadChecksumFile`] otherwise) and change nothing.
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
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::error::{Error, Owner, Result, Step};
use crate::fault;
use crate::lock::LockMode;
use crate::names;
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
pub(crate) fn sidecar_of(target: &Target) -> PathBuf {
    target.sibling(sidecar_name(&target.name))
}

/// The sidecar of the file at `path` (a path durafile itself named, no symlink to follow).
pub(crate) fn sidecar_path(path: &Path) -> PathBuf {
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

/// The most a sidecar durafile wrote can hold: two lines of at most ~580 bytes each. A file at
/// the sidecar's name larger than this is not durafile's, and is never read past it.
pub(crate) const SIDECAR_CAP: u64 = 64 * 1024;

/// What is at a target's sidecar name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Sidecar {
    /// Nothing.
    Absent,
    /// durafile's own format for exactly this file: one digest, or two while a write is in
    /// flight.
    Ours(Vec<Digest>),
    /// A regular file of a trusted owner in any other format (a `sha256sum` list of several
    /// files, comments, another name): the user's, not durafile's. Left alone and not used;
    /// the reason says why it is not durafile's.
    Foreign(String),
}

/// Reads `target`'s sidecar without trusting what is at its name: opened
/// `O_NOFOLLOW|O_NONBLOCK` (a link is refused, a FIFO cannot block), required to be a regular
/// file owned by the data file's owner (the directory's owner when there is no data file), by
/// root or by this process's user, and read no further than [`SIDECAR_CAP`]. `step` labels
/// the errors: [`Step::Verify`] for a read, [`Step::ChecksumBegin`] for a write.
pub(crate) fn load_sidecar(target: &Target, step: Step) -> Result<Sidecar> {
    let Some((mut file, meta)) = open_checked(target, step)? else {
        return Ok(Sidecar::Absent);
    };
    let at = |e| Error::io(step, &target.given, e);
    if meta.len() > SIDECAR_CAP {
        return Ok(Sidecar::Foreign(too_large(meta.len())));
    }
    let mut text = Vec::with_capacity(meta.len() as usize);
    (&mut file)
        .take(SIDECAR_CAP + 1)
        .read_to_end(&mut text)
        .map_err(at)?;
    if text.len() as u64 > SIDECAR_CAP {
        return Ok(Sidecar::Foreign(too_large(text.len() as u64)));
    }
    Ok(match ours(&text, &target.name) {
        Ok(digests) => Sidecar::Ours(digests),
        Err(reason) => Sidecar::Foreign(reason),
    })
}

fn too_large(len: u64) -> String {
    format!(
        "it holds {len} bytes or more, and a durafile checksum file never exceeds {} KiB",
        SIDECAR_CAP / 1024
    )
}

/// The digests of a sidecar in exactly the form durafile writes for `name`: one or two
/// distinct digests, byte for byte what [`format_sidecar`] makes of them. Anything else,
/// even what `sha256sum -c` accepts, is someone else's file.
fn ours(text: &[u8], name: &OsStr) -> Result<Vec<Digest>, String> {
    if let Some(first) = interrupted_finish(text, name) {
        return Ok(vec![first]);
    }
    let digests = parse_sidecar(text, name)?;
    let distinct = digests.len() == 1 || (digests.len() == 2 && digests[0] != digests[1]);
    if !distinct {
        return Err(format!(
            "it lists {} digests, and durafile's lists one (two while a write is in flight)",
            digests.len()
        ));
    }
    if format_sidecar(&digests, name) != text {
        let why = "it is not byte for byte durafile's format (a binary-mode `*`, upper-case \
                   hex, a blank line or a missing final newline)";
        return Err(why.into());
    }
    Ok(digests)
}

/// The digest a sidecar lists when it is what a power loss during a write's last step can
/// leave (see the [module docs](self)): durafile's one-digest line, then as many bytes as a
/// line holds, the first of them NUL, where the filesystem zeroed the cut-off second line
/// but did not record the shorter size yet. No `sha256sum` output holds a NUL.
fn interrupted_finish(text: &[u8], name: &OsStr) -> Option<Digest> {
    let end = text.iter().position(|b| *b == b'\n')? + 1;
    let (line, rest) = text.split_at(end);
    if rest.len() != line.len() || rest[0] != 0 {
        return None;
    }
    match parse_sidecar(line, name) {
        Ok(digests) if format_sidecar(&digests, name) == line => Some(digests[0]),
        _ => None,
    }
}

/// Whether `target`'s sidecar, which lists `listed`, holds those lines and nothing else:
/// false for the zeroed tail that a power loss during a write's last step can leave.
pub(crate) fn holds_only(target: &Target, listed: &[Digest]) -> bool {
    let len = format_sidecar(listed, &target.name).len() as u64;
    fs::symlink_metadata(sidecar_of(target)).is_ok_and(|m| m.len() == len)
}

/// The error for a sidecar that is not durafile's where one is needed: a read that must
/// verify, or `durafile verify`.
pub(crate) fn foreign_error(target: &Target, reason: String) -> Error {
    Error::BadChecksumFile {
        path: target.given.clone(),
        sidecar: sidecar_of(target),
        reason,
    }
}

/// Opens `target`'s sidecar as [`load_sidecar`] describes; `None` when there is none.
fn open_checked(target: &Target, step: Step) -> Result<Option<(File, fs::Metadata)>> {
    let path = sidecar_of(target);
    let refuse = |reason: String, advice: &str| Error::ChecksumFileRefused {
        step,
        path: target.given.clone(),
        sidecar: path.clone(),
        reason,
        advice: format!("nothing was changed; {advice}"),
    };
    let at = |e| Error::io(step, &target.given, e);
    // `NAME.sha256` cannot exist when NAME is within 7 bytes of the name limit: such a file
    // has no sidecar (a write that asks for one is refused before it gets here).
    if sidecar_name(&target.name).len() > names::NAME_MAX {
        return Ok(None);
    }
    // A writer reads through the directory it pinned; a reader by path, as it opened the data.
    let opened = match target.pinned_dir() {
        Some(dir) => sys::open_nofollow_at(dir, &sidecar_name(&target.name)),
        None => sys::open_nofollow(&path),
    };
    let file = match opened {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        // A filesystem whose names are shorter than NAME_MAX.
        Err(e) if e.raw_os_error() == Some(libc::ENAMETOOLONG) => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(refuse(
                "it is a symbolic link, and durafile never follows one at a checksum file's name"
                    .into(),
                "remove the link",
            ));
        }
        Err(e) => return Err(at(e)),
    };
    let meta = file.metadata().map_err(at)?;
    if !meta.is_file() {
        return Err(refuse(
            format!(
                "it is a {}, not a regular file",
                crate::target::kind_of(&meta)
            ),
            "remove it",
        ));
    }
    let owner = meta.uid();
    if owner == 0 || owner == sys::euid() {
        return Ok(Some((file, meta)));
    }
    // Whose sidecar it should be: the data file's owner's, or with no data file (deleted, or
    // not written yet) the directory owner's.
    let (expected, whose) = match &target.meta {
        Some(data) => (Some(data.uid()), "the file's owner"),
        None => (
            target.dir_meta.as_ref().map(|d| d.uid()),
            "the directory's owner",
        ),
    };
    if Some(owner) != expected {
        return Err(refuse(
            format!(
                "it is owned by {}, not by {whose} {}, root or you, so durafile does not trust it",
                Owner(owner),
                expected.map_or_else(|| "(unknown)".to_owned(), |uid| Owner(uid).to_string())
            ),
            "its owner or the directory's owner must remove it",
        ));
    }
    Ok(Some((file, meta)))
}

/// What a writer of `target` does with its sidecar, `found` as [`load_sidecar`] loaded it:
/// `None` when it keeps none, else the
/// digests it lists now (`None` inside when they must be worked out from the current content:
/// there is no sidecar yet, or an interrupted write left two). A sidecar that is not
/// durafile's is left alone, and refused when `required` ([`Options::checksum`]), before
/// anything was changed.
pub(crate) fn for_write(
    target: &Target,
    found: &Sidecar,
    required: bool,
) -> Result<Option<Option<Vec<Digest>>>> {
    Ok(match found {
        // One digest: the old one. Two: which is current is unknown; the writer hashes the
        // old content, so the sidecar never lists more than two.
        Sidecar::Ours(listed) => Some((listed.len() == 1).then(|| listed.clone())),
        Sidecar::Absent => required.then_some(None),
        Sidecar::Foreign(_) if !required => None,
        Sidecar::Foreign(reason) => {
            return Err(Error::ChecksumFileRefused {
                step: Step::ChecksumBegin,
                path: target.given.clone(),
                sidecar: sidecar_of(target),
                reason: format!(
                    "{reason}, so it is not durafile's checksum file and durafile will not \
                     replace it"
                ),
                advice: "nothing was changed; move it away to write with checksums, or write \
                         without them and it is left as it is"
                    .to_owned(),
            });
        }
    })
}

/// Gives `target`'s existing sidecar `mode` through a descriptor (never a path, which could
/// be swapped for a link in between), after the same checks as [`load_sidecar`].
pub(crate) fn set_sidecar_mode(target: &Target, mode: u32) -> Result<()> {
    let Some((file, _)) = open_checked(target, Step::ChecksumBegin)? else {
        return Ok(()); // gone since the writer read it: nothing to follow the mode
    };
    file.set_permissions(fs::Permissions::from_mode(mode & 0o777))
        .map_err(|e| Error::io(Step::ChecksumBegin, &target.given, e))
}

/// Removes `target`'s sidecar when it is durafile's, judged as [`load_sidecar`] judges it,
/// through the target's directory descriptor. Returns what was at the name: [`Sidecar::Ours`]
/// (now removed), [`Sidecar::Absent`], or [`Sidecar::Foreign`], left byte-identical (a user's
/// own `sha256sum` list is not durafile's to delete). A link, FIFO or another user's file is
/// [`Error::ChecksumFileRefused`] and stays too.
pub(crate) fn remove_sidecar(target: &Target, step: Step) -> Result<Sidecar> {
    let found = load_sidecar(target, step)?;
    remove_loaded(target, step, &found)?;
    Ok(found)
}

/// [`remove_sidecar`] for a sidecar the caller loaded under the exclusive lock it still holds
/// (so it is still what `found` says): removes it only if it is [`Sidecar::Ours`].
pub(crate) fn remove_loaded(target: &Target, step: Step, found: &Sidecar) -> Result<()> {
    if let Sidecar::Ours(_) = found {
        target.with_dir(step, |dir| {
            sys::remove_at(dir, &sidecar_name(&target.name))
                .map_err(|e| Error::io(step, sidecar_of(target), e))
        })?;
    }
    Ok(())
}

/// Which step a sidecar replacement is: the first of the pair protocol, or a replacement by
/// the final list (recovery, or putting a sidecar back after a failed rename).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Begin,
    Finish,
}

/// Replaces `target`'s sidecar with one listing `digests`: temp file, fsync if `sync`, rename.
/// After [`Phase::Begin`] the caller fsyncs the directory, so that it is durable before the
/// data rename, and later cuts it down with [`finish_sidecar`] through the returned
/// descriptor. The sidecar gets the data file's `mode` and the owner and group of `owner`
/// (the data file's metadata, or its predecessor's for a new one): a digest of a private file
/// can give away a guessable secret. Both are set through the temp file's descriptor.
pub(crate) fn write_sidecar(
    target: &Target,
    digests: &[Digest],
    phase: Phase,
    sync: bool,
    mode: u32,
    owner: Option<&fs::Metadata>,
) -> Result<File> {
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
    let (mut file, temp) = target.create_temp(&name).map_err(|e| match e {
        Error::Io { source, .. } => at(source),
        other => other,
    })?;
    let written = fault::point(before_write)
        .and_then(|()| file.write_all(&format_sidecar(digests, &target.name)))
        .and_then(|()| match owner {
            Some(meta) => sys::copy_owner(&file, meta),
            None => Ok(()),
        })
        .and_then(|()| file.set_permissions(fs::Permissions::from_mode(mode & 0o777)))
        .and_then(|()| if sync { sys::sync_file(&file) } else { Ok(()) })
        .and_then(|()| fault::point(before_rename))
        .map_err(at)
        .and_then(|()| {
            // Through the directory the writer checked and pinned, as the data's rename is.
            let temp_name = temp.file_name().unwrap_or_default();
            target.with_dir(step, |dir| {
                sys::rename_at(dir, temp_name, &name).map_err(at)
            })
        });
    if let Err(e) = written {
        let _ = sys::remove_file(&temp);
        return Err(e);
    }
    Ok(file)
}

/// The pair protocol's last step: cuts the sidecar that [`write_sidecar`] made at
/// [`Phase::Begin`] (listing `new` first) down to its first line. Through the descriptor
/// of the file durafile created: if the name meanwhile leads elsewhere, only our own
/// file is shortened.
pub(crate) fn finish_sidecar(sidecar: &File, target: &Target, new: &Digest) -> Result<()> {
    let len = format_sidecar(&[*new], &target.name).len() as u64;
    fault::point("durafile::checksum_finish")
        .and_then(|()| sys::shrink(sidecar, len))
        .map_err(|e| Error::io(Step::ChecksumFinish, &target.given, e))
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
/// [`Error::BadChecksumFile`] when the file at the sidecar's name is not in durafile's format,
/// [`Error::ChecksumFileRefused`] when it is a link, not a regular file or another user's
/// (see the [module docs](self)), and [`Error::Io`] at [`Step::Read`] when the file cannot be
/// read (NotFound when only the sidecar exists).
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
    // Look before hashing what may be a large file: no sidecar, or one that is not durafile's.
    // A refusal, and a sidecar that does not parse (which a verification then requires to
    // be durafile's), are judged again by `verified`, where no writer can be half-way.
    let foreign = match load_sidecar(&target, Step::Verify) {
        Ok(Sidecar::Absent) => return Ok(Verification::NoChecksum),
        Ok(Sidecar::Foreign(_)) => true,
        Ok(Sidecar::Ours(_)) | Err(Error::ChecksumFileRefused { .. }) => false,
        Err(e) => return Err(e),
    };
    let opts = Options::new().checksum(foreign);
    let ((), digest, listed) = verified(&target, &opts, false, None, |file| {
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
/// `known` is the sidecar as a caller holding the lock already loaded it, for the first
/// attempt.
pub(crate) fn verified<T>(
    target: &Target,
    opts: &Options,
    locked: bool,
    mut known: Option<&Sidecar>,
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
        let mut file = sys::open_regular(&target.resolved).map_err(read_err)?;
        let (value, digest) = load(&mut file).map_err(read_err)?;
        let loaded = match known.take() {
            Some(found) => Ok(found.clone()),
            None => load_sidecar(target, Step::Verify),
        };
        // A user who may write the file but not give files away (a group member) makes a
        // sidecar of their own an instant before their data replaces the owner's: a refusal
        // is only real once no durafile writer can be half-way. Likewise a sidecar that does
        // not parse, where one is required: a writer cutting it down makes the kernel zero
        // the cut-off bytes in the page a reader may be copying.
        let judge_again = match &loaded {
            Err(Error::ChecksumFileRefused { .. }) => true,
            Ok(Sidecar::Foreign(_)) => opts.get_checksum(),
            _ => false,
        };
        if judge_again && !locked && shared.is_none() {
            // A user who may only read the file cannot take its lock (nor can one whose wait
            // times out): for them what was seen stands.
            let timeout = opts.get_lock_timeout();
            if let Ok(lock) = crate::lock::lock_target(target, LockMode::Shared, timeout) {
                shared = Some(lock);
                continue;
            }
        }
        let listed = match loaded {
            Err(e) => return Err(e),
            Ok(Sidecar::Ours(listed)) => listed,
            Ok(Sidecar::Absent) if opts.get_checksum() => {
                return Err(Error::MissingChecksum {
                    path: target.given.clone(),
                    sidecar: sidecar_of(target),
                });
            }
            Ok(Sidecar::Foreign(reason)) if opts.get_checksum() => {
                return Err(foreign_error(target, reason));
            }
            // Not durafile's: it is not kept current by durafile's writes, so checking the
            // content against it could only raise false alarms.
            Ok(Sidecar::Absent | Sidecar::Foreign(_)) => return Ok((value, digest, 0)),
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
    let bytes = sys::read_whole(file, file.metadata()?.len())?;
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
pub fn checksummed_file(sidecar: &Path) -> Option<PathBuf> {
    let name = data_name_of(sidecar.file_name()?)?;
    Some(sidecar.with_file_name(name))
}

/// What [`collect`] found under one path: a file to [`verify`], or a directory it could not
/// read.
#[derive(Debug)]
pub enum Candidate {
    /// A file to verify.
    File {
        /// The data file (a sidecar named stands for its data file).
        path: PathBuf,
        /// Whether the caller named it, rather than [`collect`] finding its sidecar in a
        /// directory: for a file named, a missing sidecar or a missing file is a finding.
        explicit: bool,
    },
    /// A directory that could not be read, so the files in it were not collected.
    Unreadable {
        /// The directory.
        path: PathBuf,
        /// Why it could not be read.
        error: io::Error,
    },
}

/// The files to check under `path`, as `durafile verify` checks them: `path` itself when it is
/// not a directory (a sidecar stands for its data file; a path that does not exist is
/// returned too, so that the caller reports it), else every file in the directory that has a
/// sidecar, in name order, descending into subdirectories with `recursive`. Symbolic links
/// below `path` are not followed. A directory that cannot be read is returned as
/// [`Candidate::Unreadable`] and the walk goes on, so one unreadable corner does not hide a
/// mismatch elsewhere.
///
/// # Examples
///
/// ```
/// use durafile::{Options, checksum::{self, Candidate}};
///
/// let dir = tempfile::tempdir()?;
/// durafile::write(dir.path().join("a.json"), b"{}", &Options::new().checksum(true))?;
/// durafile::write(dir.path().join("plain.json"), b"{}", &Options::new())?;
/// let found = checksum::collect(dir.path(), false);
/// assert!(matches!(
///     found.as_slice(),
///     [Candidate::File { path, explicit: false }] if path.ends_with("a.json")
/// ));
/// for candidate in found {
///     if let Candidate::File { path, .. } = candidate {
///         checksum::verify(&path)?;
///     }
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn collect(path: &Path, recursive: bool) -> Vec<Candidate> {
    if !path.is_dir() {
        return vec![Candidate::File {
            path: checksummed_file(path).unwrap_or_else(|| path.to_path_buf()),
            explicit: true,
        }];
    }
    let walk = walkdir::WalkDir::new(path)
        .max_depth(if recursive { usize::MAX } else { 1 })
        .sort_by_file_name();
    let mut found = Vec::new();
    for entry in walk {
        match entry {
            Ok(entry) if entry.file_type().is_file() => {
                if let Some(data) = checksummed_file(entry.path()) {
                    found.push(Candidate::File {
                        path: data,
                        explicit: false,
                    });
                }
            }
            Ok(_) => {}
            Err(e) => {
                let dir = e.path().unwrap_or(path).to_path_buf();
                // With links not followed there are no loops: every error is an I/O error.
                let message = e.to_string();
                let error = e
                    .into_io_error()
                    .unwrap_or_else(|| io::Error::other(message));
                found.push(Candidate::Unreadable { path: dir, error });
            }
        }
    }
    found
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
    fn only_durafiles_exact_one_file_form_is_ours() {
        let name = OsStr::new("a.json");
        let (d1, d2) = ([1u8; 32], [2u8; 32]);
        assert_eq!(ours(&format_sidecar(&[d1], name), name), Ok(vec![d1]));
        assert_eq!(
            ours(&format_sidecar(&[d1, d2], name), name),
            Ok(vec![d1, d2])
        );
        let weird = OsStr::new("new\nline");
        assert_eq!(ours(&format_sidecar(&[d1], weird), weird), Ok(vec![d1]));
        for text in [
            format_sidecar(&[d1, d1], name),
            format_sidecar(&[d1, d2, [3; 32]], name),
            format!("{} *a.json\n", to_hex(&d1)).into_bytes(),
            format!("{}  a.json", to_hex(&d1)).into_bytes(),
            format!("{}  a.json\n\n", to_hex(&d1)).into_bytes(),
            format!("{}  a.json\n", to_hex(&[0xab; 32]).to_uppercase()).into_bytes(),
            format!("# note\n{}  a.json\n", to_hex(&d1)).into_bytes(),
        ] {
            assert!(
                ours(&text, name).is_err(),
                "{:?}",
                String::from_utf8_lossy(&text)
            );
        }
    }

    #[test]
    fn an_interrupted_finish_lists_the_first_line_only() {
        let name = OsStr::new("a.json");
        let (d1, d2) = ([1u8; 32], [2u8; 32]);
        let line = format_sidecar(&[d1], name);
        let mut zeroed = line.clone();
        zeroed.resize(2 * line.len(), 0);
        assert_eq!(ours(&zeroed, name), Ok(vec![d1]));
        // A block boundary inside the second line: zeroed to there, the rest as it was.
        let mut partly = format_sidecar(&[d1, d2], name);
        partly[line.len()..line.len() + 10].fill(0);
        assert_eq!(ours(&partly, name), Ok(vec![d1]));
        for text in [
            [line.clone(), vec![0; line.len() - 1]].concat(),
            [line.clone(), vec![0; line.len() + 1]].concat(),
            [line.clone(), vec![b'x'; line.len()]].concat(),
            [vec![0; line.len()], line.clone()].concat(),
        ] {
            assert!(ours(&text, name).is_err(), "{text:?}");
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
