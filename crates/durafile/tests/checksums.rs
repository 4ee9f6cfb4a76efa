//! Checksums on real files: `sha256sum` compatibility, detection of every change made
//! outside durafile, no false alarm while writers replace the file, and recovery.

mod common;

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use durafile::checksum::{self, Verification};
use durafile::{Durability, Error, Options};
use proptest::prelude::*;

use common::temp_files;

fn with_checksum() -> Options {
    Options::new().checksum(true)
}

fn sidecar_lines(path: &std::path::Path) -> Vec<String> {
    let mut sidecar = path.as_os_str().to_owned();
    sidecar.push(".sha256");
    fs::read_to_string(sidecar)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn sidecar_is_sha256sum_format_and_sha256sum_accepts_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    durafile::write(&path, b"{\"n\":1}\n", &with_checksum()).unwrap();
    durafile::write(&path, b"{\"n\":2}\n", &with_checksum()).unwrap();
    let lines = sidecar_lines(&path);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].ends_with("  state.json"), "{lines:?}");
    let out = Command::new("sha256sum")
        .args(["-c", "state.json.sha256"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // And the digest is sha256sum's own.
    let out = Command::new("sha256sum").arg(&path).output().unwrap();
    let theirs = String::from_utf8(out.stdout).unwrap();
    assert_eq!(theirs.split(' ').next(), lines[0].split(' ').next());
}

/// What a power loss during a write's last step can leave (the sidecar at its two-line length,
/// the cut-off second line zeroed) verifies against the new content, and recovery rewrites it
/// to the one line `sha256sum -c` reads without a warning.
#[test]
fn a_sidecar_with_a_zeroed_tail_verifies_and_recovery_tidies_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let sidecar = dir.path().join("state.json.sha256");
    durafile::write(&path, b"{\"n\":1}\n", &with_checksum()).unwrap();
    let line = fs::read(&sidecar).unwrap();
    fs::write(&sidecar, [line.clone(), vec![0; line.len()]].concat()).unwrap();
    assert!(matches!(
        checksum::verify(&path).unwrap(),
        Verification::Match { pending: false, .. }
    ));
    assert_eq!(
        durafile::read(&path, &with_checksum()).unwrap(),
        b"{\"n\":1}\n"
    );
    let found = durafile::recover::recover(dir.path(), false).unwrap();
    assert_eq!(found.checksums_completed, vec![sidecar.clone()]);
    assert_eq!(fs::read(&sidecar).unwrap(), line);
    let again = durafile::recover::recover(dir.path(), false).unwrap();
    assert!(again.checksums_completed.is_empty());
}

#[test]
fn changes_outside_durafile_are_detected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let original = b"{\"items\":[1,2,3],\"owner\":\"ops\"}\n";
    type Damage = fn(&std::path::Path);
    let damages: [(&str, Damage); 4] = [
        ("flipped bit", |p| {
            let mut b = fs::read(p).unwrap();
            b[10] ^= 0x01;
            fs::write(p, b).unwrap();
        }),
        ("truncated", |p| {
            OpenOptions::new()
                .write(true)
                .open(p)
                .unwrap()
                .set_len(5)
                .unwrap();
        }),
        ("appended line", |p| {
            OpenOptions::new()
                .append(true)
                .open(p)
                .unwrap()
                .write_all(b"extra\n")
                .unwrap();
        }),
        ("emptied", |p| fs::write(p, b"").unwrap()),
    ];
    for (what, damage) in damages {
        durafile::write(&path, original, &with_checksum()).unwrap();
        damage(&path);
        let damaged = fs::read(&path).unwrap();
        for result in [
            durafile::read(&path, &Options::new()).map(drop),
            durafile::open(&path, &Options::new()).map(drop),
            checksum::verify(&path).map(drop),
        ] {
            let err = result.unwrap_err();
            assert!(
                matches!(err, Error::ChecksumMismatch { .. }),
                "{what}: {err}"
            );
            let msg = err.to_string();
            assert!(
                msg.contains("state.json") && msg.contains("recover"),
                "{what}: {msg}"
            );
        }
        // An update refuses to build on it, and changes nothing.
        let err = durafile::update(&path, &Options::new(), |_| Ok::<_, Error>(b"x".to_vec()))
            .unwrap_err();
        assert!(
            matches!(err, Error::ChecksumMismatch { .. }),
            "{what}: {err}"
        );
        assert_eq!(fs::read(&path).unwrap(), damaged, "{what}");
        assert!(temp_files(dir.path()).is_empty());
    }
}

/// A large stream, written in uneven pieces that cross from inline hashing to the hashing
/// thread and straddle its buffers, gets `sha256sum`'s digest of the bytes on disk; a stream
/// dropped part-way leaves the file, its sidecar and the directory as they were.
#[test]
fn large_stream_in_uneven_pieces_gets_sha256sums_digest_and_a_dropped_one_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.bin");
    let content: Vec<u8> = (0..(9 << 20) + 4321)
        .map(|i: usize| (i * 31 + (i >> 13)) as u8)
        .collect();
    let mut file = durafile::AtomicFile::new(&path, &with_checksum()).unwrap();
    let mut rest = &content[..];
    for size in [1, 1000, 700 << 10, 3, (1 << 20) + 1, 64 << 10]
        .into_iter()
        .cycle()
    {
        if rest.is_empty() {
            break;
        }
        let (piece, next) = rest.split_at(size.min(rest.len()));
        file.write_all(piece).unwrap();
        rest = next;
    }
    file.commit().unwrap();
    assert_eq!(fs::read(&path).unwrap(), content);
    let out = Command::new("sha256sum").arg(&path).output().unwrap();
    let theirs = String::from_utf8(out.stdout).unwrap();
    let lines = sidecar_lines(&path);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(theirs.split(' ').next(), lines[0].split(' ').next());

    let mut dropped = durafile::AtomicFile::new(&path, &with_checksum()).unwrap();
    dropped.write_all(&content[..5 << 20]).unwrap();
    drop(dropped);
    assert_eq!(fs::read(&path).unwrap(), content);
    assert_eq!(sidecar_lines(&path), lines);
    assert!(temp_files(dir.path()).is_empty());
    assert!(matches!(
        checksum::verify(&path).unwrap(),
        Verification::Match { pending: false, .. }
    ));
}

#[test]
fn sidecar_is_as_private_as_its_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secret.json");
    for mode in [0o600, 0o640] {
        durafile::write(&path, b"{\"pin\":\"1234\"}", &with_checksum().mode(mode)).unwrap();
        let sidecar = fs::metadata(dir.path().join("secret.json.sha256")).unwrap();
        assert_eq!(sidecar.permissions().mode() & 0o777, mode);
    }
}

#[test]
fn required_checksum_must_exist_and_optional_one_is_still_verified() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plain.json");
    durafile::write(&path, b"{}", &Options::new()).unwrap();
    assert!(!dir.path().join("plain.json.sha256").exists());
    assert_eq!(durafile::read(&path, &Options::new()).unwrap(), b"{}");
    let err = durafile::read(&path, &with_checksum()).unwrap_err();
    assert!(matches!(err, Error::MissingChecksum { .. }), "{err}");
    assert!(err.to_string().contains("plain.json.sha256"));
    assert_eq!(checksum::verify(&path).unwrap(), Verification::NoChecksum);
}

#[test]
fn writers_keep_an_existing_sidecar_current_even_without_the_option() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    durafile::write(&path, b"one", &with_checksum()).unwrap();
    durafile::write(&path, b"two", &Options::new()).unwrap();
    durafile::update(&path, &Options::new(), |cur| {
        Ok::<_, Error>([cur.unwrap(), b"+three"].concat())
    })
    .unwrap();
    assert_eq!(
        durafile::read(&path, &with_checksum()).unwrap(),
        b"two+three"
    );
    assert_eq!(sidecar_lines(&path).len(), 1);
}

#[test]
fn first_checksummed_write_over_an_existing_file() {
    let dir = tempfile::tempdir().unwrap();
    for (i, new) in [&b"{\"new\":true}"[..], b"{\"old\":true}"]
        .into_iter()
        .enumerate()
    {
        let path = dir.path().join(format!("legacy{i}.json"));
        fs::write(&path, b"{\"old\":true}").unwrap();
        durafile::write(&path, new, &with_checksum()).unwrap();
        assert!(
            matches!(
                checksum::verify(&path).unwrap(),
                Verification::Match { pending: false, .. }
            ),
            "new content {i}"
        );
    }
}

#[test]
fn malformed_sidecar_is_not_durafiles_so_it_is_reported_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    durafile::write(&path, b"{}", &with_checksum()).unwrap();
    let sidecar = dir.path().join("state.json.sha256");
    fs::write(&sidecar, "not a checksum\n").unwrap();
    // `verify` and a read that requires checksums say so; a plain read does not check
    // against a file durafile does not keep current.
    let err = checksum::verify(&path).unwrap_err();
    assert!(matches!(err, Error::BadChecksumFile { .. }), "{err}");
    assert!(err.to_string().contains("not durafile's"), "{err}");
    let err = durafile::read(&path, &with_checksum()).unwrap_err();
    assert!(matches!(err, Error::BadChecksumFile { .. }), "{err}");
    assert_eq!(durafile::read(&path, &Options::new()).unwrap(), b"{}");
    // A write with checksums refuses to replace it; one without leaves it as it is.
    let err = durafile::write(&path, b"{\"n\":1}", &with_checksum()).unwrap_err();
    assert!(matches!(err, Error::ChecksumFileRefused { .. }), "{err}");
    assert_eq!(fs::read(&path).unwrap(), b"{}");
    durafile::write(&path, b"{\"n\":1}", &Options::new()).unwrap();
    assert_eq!(fs::read(&sidecar).unwrap(), b"not a checksum\n");
    fs::remove_file(&sidecar).unwrap();
    durafile::write(&path, b"{\"n\":2}", &with_checksum()).unwrap();
    assert!(matches!(
        checksum::verify(&path).unwrap(),
        Verification::Match { pending: false, .. }
    ));
}

/// A user's own `sha256sum` list at the sidecar's name is not damaged and not durafile's: the
/// error says so and how to use durafile checksums, and never advises deleting it.
#[test]
fn users_own_checksum_list_is_reported_as_not_durafiles_not_as_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.iso");
    fs::write(&path, b"iso").unwrap();
    let list = format!("{}  a.iso\n{}  b.iso\n", "ab".repeat(32), "cd".repeat(32));
    let sidecar = dir.path().join("a.iso.sha256");
    fs::write(&sidecar, &list).unwrap();
    let err = checksum::verify(&path).unwrap_err();
    assert!(matches!(err, Error::BadChecksumFile { .. }), "{err}");
    let msg = err.to_string();
    assert!(!msg.contains("delete"), "{msg}");
    assert!(!msg.contains("malformed"), "{msg}");
    assert!(msg.contains("is not durafile's checksum file"), "{msg}");
    assert!(msg.contains("move it away"), "{msg}");
    assert_eq!(fs::read(&sidecar).unwrap(), list.as_bytes());
}

#[test]
fn open_streams_the_verified_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.bin");
    let content: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    durafile::write(&path, &content, &with_checksum()).unwrap();
    let mut file = durafile::open(&path, &Options::new()).unwrap();
    // A writer replaces the path after the verification: the open file keeps its version.
    durafile::write(&path, b"replaced", &with_checksum()).unwrap();
    let mut read = Vec::new();
    file.read_to_end(&mut read).unwrap();
    assert!(read == content);
}

/// Readers verify without any lock while a writer keeps replacing the file: a read must
/// never report a mismatch for content durafile wrote.
#[test]
fn no_false_alarm_while_writers_replace_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = Arc::new(dir.path().join("hot.json"));
    durafile::write(&*path, b"v0", &with_checksum()).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let path = path.clone();
            thread::spawn(move || {
                let opts = with_checksum().durability(Durability::None);
                for i in 0..400 {
                    durafile::write(&*path, format!("writer {w} version {i}"), &opts).unwrap();
                }
            })
        })
        .collect();
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (path, done) = (path.clone(), done.clone());
            thread::spawn(move || {
                let mut reads = 0;
                while !done.load(Ordering::Relaxed) {
                    durafile::read(&*path, &Options::new()).unwrap();
                    checksum::verify(&*path).unwrap();
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    done.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
}

#[test]
fn recover_completes_transitions_removes_stale_sidecars_and_lists_damage() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // An interrupted write: the sidecar lists an old digest and the current one.
    durafile::write(d.join("pending.json"), b"old", &with_checksum()).unwrap();
    let old_line = sidecar_lines(&d.join("pending.json")).remove(0);
    durafile::write(d.join("pending.json"), b"new", &with_checksum()).unwrap();
    let new_line = sidecar_lines(&d.join("pending.json")).remove(0);
    fs::write(
        d.join("pending.json.sha256"),
        format!("{old_line}\n{new_line}\n"),
    )
    .unwrap();
    // A sidecar with no data: a deleted file, or a first write interrupted before its rename.
    durafile::write(d.join("gone.json"), b"x", &with_checksum()).unwrap();
    fs::remove_file(d.join("gone.json")).unwrap();
    // Damage.
    durafile::write(d.join("bad.json"), b"good", &with_checksum()).unwrap();
    fs::write(d.join("bad.json"), b"evil").unwrap();
    // Healthy.
    durafile::write(d.join("ok.json"), b"fine", &with_checksum()).unwrap();

    let listing = common::names(d);
    let dry = durafile::recover::recover(d, true).unwrap();
    assert_eq!(common::names(d), listing, "a dry run changes nothing");
    assert_eq!(
        fs::read_to_string(d.join("pending.json.sha256"))
            .unwrap()
            .lines()
            .count(),
        2
    );

    let done = durafile::recover::recover(d, false).unwrap();
    for found in [&dry, &done] {
        assert_eq!(found.checksums_completed, [d.join("pending.json.sha256")]);
        assert_eq!(found.missing, [d.join("gone.json")]);
        assert_eq!(found.damaged.len(), 1);
        assert_eq!(found.damaged[0].path(), d.join("bad.json"));
    }
    assert_eq!(sidecar_lines(&d.join("pending.json")), [new_line]);
    assert!(
        d.join("gone.json.sha256").exists(),
        "evidence of a missing file is kept"
    );
    assert_eq!(
        fs::read(d.join("bad.json")).unwrap(),
        b"evil",
        "damage is listed, not touched"
    );
    assert!(d.join("bad.json.sha256").exists());
    // Idempotent: a second run finds only what needs a person.
    let again = durafile::recover::recover(d, false).unwrap();
    assert!(again.checksums_completed.is_empty());
    assert_eq!((again.damaged.len(), again.missing.len()), (1, 1));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Any single-byte change to a checksummed file is detected.
    #[test]
    fn any_single_byte_change_is_detected(
        content in proptest::collection::vec(any::<u8>(), 1..4096),
        position in any::<proptest::sample::Index>(),
        xor in 1u8..=255,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        durafile::write(&path, &content, &with_checksum().durability(Durability::None)).unwrap();
        let mut changed = content.clone();
        changed[position.index(content.len())] ^= xor;
        fs::write(&path, &changed).unwrap();
        let is_mismatch = matches!(
            durafile::read(&path, &Options::new()),
            Err(Error::ChecksumMismatch { .. })
        );
        prop_assert!(is_mismatch);
    }
}
