//! The names durafile gives the files it keeps beside a target, in one place so that the
//! writer, the lock and the recovery agree on them.
//!
//! For a target `NAME`:
//! - temp files are `.NAME.df-XXXXXXXXXX.tmp`: hidden, unique (ten random base-62
//!   characters, created with `O_EXCL`), and marked `df-` so that [`is_temp_name`] tells them
//!   from other programs' temp files for orphan recovery;
//! - the lock file is `.NAME.lock`: hidden, stable, never renamed or deleted.
//!
//! Names longer than a filesystem allows (255 bytes) are shortened; a shortened lock name
//! ends in a hash of the full name, so it stays unique and the same in every process.

use std::ffi::{OsStr, OsString};
use std::hash::{BuildHasher, Hasher};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::sync::atomic::{AtomicU64, Ordering};

/// The longest file name the filesystems durafile supports accept, in bytes.
pub(crate) const NAME_MAX: usize = 255;
const RANDOM_LEN: usize = 10;
const TEMP_SUFFIX: &[u8] = b".tmp";
const TEMP_MARK: &[u8] = b".df-";
const LOCK_SUFFIX: &[u8] = b".lock";

/// A fresh temp name for `name`, different on every call.
pub(crate) fn temp_name(name: &OsStr) -> OsString {
    let room = NAME_MAX - 1 - TEMP_MARK.len() - RANDOM_LEN - TEMP_SUFFIX.len();
    let mut out = hidden(name, room);
    out.extend_from_slice(TEMP_MARK);
    out.extend_from_slice(&random_chars());
    out.extend_from_slice(TEMP_SUFFIX);
    OsString::from_vec(out)
}

/// Whether `name` has the shape of a durafile temp file.
pub fn is_temp_name(name: &OsStr) -> bool {
    let b = name.as_bytes();
    let min = 2 + TEMP_MARK.len() + RANDOM_LEN + TEMP_SUFFIX.len();
    if b.len() < min || b[0] != b'.' || !b.ends_with(TEMP_SUFFIX) {
        return false;
    }
    let end = b.len() - TEMP_SUFFIX.len();
    let random = &b[end - RANDOM_LEN..end];
    b[..end - RANDOM_LEN].ends_with(TEMP_MARK) && random.iter().all(u8::is_ascii_alphanumeric)
}

/// The name a temp name was made for, as far as it shows: the whole name, or for a name too
/// long to fit its first bytes (then [`is_temp_of`] tells which listed name it belongs to).
pub(crate) fn temp_target(temp: &OsStr) -> Option<OsString> {
    if !is_temp_name(temp) {
        return None;
    }
    let b = temp.as_bytes();
    let end = b.len() - TEMP_MARK.len() - RANDOM_LEN - TEMP_SUFFIX.len();
    Some(OsString::from_vec(b[1..end].to_vec()))
}

/// Whether `temp` has the shape of a temp name that [`temp_name`] makes for `name`.
pub(crate) fn is_temp_of(temp: &OsStr, name: &OsStr) -> bool {
    let room = NAME_MAX - 1 - TEMP_MARK.len() - RANDOM_LEN - TEMP_SUFFIX.len();
    temp_target(temp).is_some_and(|shown| hidden(name, room)[1..] == *shown.as_bytes())
}

/// Whether `name` is one of durafile's own files beside a target (a lock or temp file), which
/// must never be a target itself: replacing a lock file splits its lock in two.
pub(crate) fn is_own_name(name: &OsStr) -> bool {
    let b = name.as_bytes();
    let lock = b.len() >= 1 + 1 + LOCK_SUFFIX.len() && b[0] == b'.' && b.ends_with(LOCK_SUFFIX);
    lock || is_temp_name(name)
}

/// The name of `name`'s lock file.
pub(crate) fn lock_name(name: &OsStr) -> OsString {
    let room = NAME_MAX - 1 - LOCK_SUFFIX.len();
    let mut out = if name.len() <= room {
        hidden(name, room)
    } else {
        let mut short = hidden(name, room - 17);
        short.extend_from_slice(format!(".{:016x}", fnv1a(name.as_bytes())).as_bytes());
        short
    };
    out.extend_from_slice(LOCK_SUFFIX);
    OsString::from_vec(out)
}

fn hidden(name: &OsStr, room: usize) -> Vec<u8> {
    let b = name.as_bytes();
    let mut out = Vec::with_capacity(NAME_MAX);
    out.push(b'.');
    out.extend_from_slice(&b[..b.len().min(room)]);
    out
}

/// The state whose lock covers a file named `name`, when it is named like a generation
/// (`STATE.N.json`): so that recovery can tell a dead save's temp file from a look-alike.
pub(crate) fn state_of(name: &OsStr) -> Option<OsString> {
    let (state, number) = name.to_str()?.strip_suffix(".json")?.rsplit_once('.')?;
    let canonical = number.parse::<u64>().is_ok_and(|n| n.to_string() == number);
    (canonical && !state.is_empty()).then(|| state.into())
}

/// Ten base-62 characters that no other process or call predicts: std seeds each
/// `RandomState` from the OS's random source, and a counter separates calls in one process.
fn random_chars() -> [u8; RANDOM_LEN] {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    // A forked child inherits this thread's hash keys and the counter: its pid sets it apart.
    hasher.write_u32(std::process::id());
    let mut n = hasher.finish();
    let mut out = [0; RANDOM_LEN];
    for c in &mut out {
        *c = ALPHABET[(n % 62) as usize];
        n /= 62;
    }
    out
}

/// FNV-1a: a stable hash (std's hashers may change between releases) for shortened names.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_are_hidden_unique_and_recognised() {
        let a = temp_name(OsStr::new("state.json"));
        let b = temp_name(OsStr::new("state.json"));
        assert_ne!(a, b);
        let s = a.to_str().unwrap();
        assert!(
            s.starts_with(".state.json.df-") && s.ends_with(".tmp"),
            "{s}"
        );
        assert!(is_temp_name(&a));
    }

    #[test]
    fn other_names_are_not_temp_names() {
        for name in [
            "state.json",
            ".state.json.lock",
            ".x.tmp",
            "state.json.tmp",
            ".state.json.abc-efghij.tmp",
            ".state.json.abcdefghi.tmp",
            ".state.json.abcdefghij.tmp",
            ".state.json.df-abcdefghi.tmp",
        ] {
            assert!(!is_temp_name(OsStr::new(name)), "{name}");
        }
    }

    #[test]
    fn long_names_fit_the_filesystem_limit() {
        let long = OsString::from("n".repeat(255));
        let temp = temp_name(&long);
        assert!(temp.len() <= NAME_MAX);
        assert!(is_temp_name(&temp));
        let lock = lock_name(&long);
        assert!(lock.len() <= NAME_MAX);
        assert_eq!(lock, lock_name(&long));
        let other = OsString::from(format!("{}m", "n".repeat(254)));
        assert_ne!(lock, lock_name(&other));
    }

    #[test]
    fn temp_names_belong_to_their_target_only() {
        for name in ["a.json", &"n".repeat(255)] {
            let name = OsStr::new(name);
            assert!(is_temp_of(&temp_name(name), name));
            assert!(!is_temp_of(&temp_name(OsStr::new("b.json")), name));
        }
        let sidecar_temp = temp_name(OsStr::new("a.json.sha256"));
        assert!(!is_temp_of(&sidecar_temp, OsStr::new("a.json")));
    }

    #[test]
    fn own_names_are_locks_and_temps() {
        let long = OsString::from("n".repeat(255));
        for own in [
            lock_name(OsStr::new("x.json")),
            lock_name(&long),
            temp_name(&long),
        ] {
            assert!(is_own_name(&own), "{own:?}");
        }
        for other in ["x.json", ".lock", "..lock", "a.lock", ".x.json"] {
            assert!(!is_own_name(OsStr::new(other)), "{other}");
        }
    }

    #[test]
    fn a_temp_name_tells_its_target() {
        let temp = temp_name(OsStr::new("state.json"));
        assert_eq!(temp_target(&temp), Some("state.json".into()));
        assert!(is_temp_of(&temp, OsStr::new("state.json")));
        assert!(!is_temp_of(&temp, OsStr::new("state.jso")));
        let long = OsString::from("n".repeat(255));
        let temp = temp_name(&long);
        assert!(is_temp_of(&temp, &long));
        assert_ne!(temp_target(&temp), Some(long));
        assert_eq!(temp_target(OsStr::new("state.json")), None);
    }

    #[test]
    fn lock_name_is_stable() {
        assert_eq!(lock_name(OsStr::new("a.json")), OsStr::new(".a.json.lock"));
    }
}
