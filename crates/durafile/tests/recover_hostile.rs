//! `recover` in a shared directory: it removes only temp files it can prove are a dead
//! durafile writer's (name, lock file, owner, no flock), never another user's look-alike,
//! even as root, and an error on one file does not stop it.

mod common;

use std::fs::{self, File};
use std::os::unix::fs::{PermissionsExt, lchown};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::privdrop::{self, ATTACKER, VICTIM};

/// A file `uid` owns in `dir`, with `content`.
fn plant(dir: &Path, name: &str, uid: u32, content: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, content).unwrap();
    lchown(&path, Some(uid), Some(uid)).unwrap();
    path
}

/// A sticky world-writable directory owned by root, as /tmp, where the victim keeps `notes`.
fn shared_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o1777)).unwrap();
    plant(dir.path(), "notes", VICTIM, "the victim's notes");
    plant(dir.path(), ".notes.lock", VICTIM, "");
    dir
}

/// Run as root, recover leaves another user's look-alike temp file alone (its owner is
/// neither the target's nor the directory's), and one with no lock file beside it, while it
/// still removes the victim's real orphan.
#[test]
fn root_never_deletes_another_users_look_alike() {
    if !common::can_switch_users() {
        return;
    }
    let dir = shared_dir();
    let d = dir.path();
    let look_alike = plant(
        d,
        ".notes.df-ABCDEFGHIJ.tmp",
        ATTACKER,
        "the attacker's own file",
    );
    let no_lock = plant(d, ".todo.df-ABCDEFGHIJ.tmp", VICTIM, "not durafile's");
    plant(d, "todo", VICTIM, "the victim's todo list");
    let orphan = plant(d, ".notes.df-0123456789.tmp", VICTIM, "half a write");
    let mut expected = common::snapshot(d);
    expected.remove(&orphan);

    let found = durafile::recover::clean_orphans(d).unwrap();
    assert_eq!(
        common::snapshot(d),
        expected,
        "only the proven orphan may go"
    );
    assert_eq!(found.removed, [orphan]);
    let left: Vec<_> = found.left_alone.iter().map(|l| l.path.clone()).collect();
    assert_eq!(left, [look_alike, no_lock]);
    assert!(
        found.left_alone[0].reason.contains("uid 64002"),
        "{:?}",
        found.left_alone
    );
    assert!(
        found.left_alone[1].reason.contains("lock file"),
        "{:?}",
        found.left_alone
    );
}

/// A temp-named FIFO, link or hard-linked file is never a durafile temp file.
#[test]
fn special_files_named_like_temp_files_are_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join("notes"), "notes").unwrap();
    File::create(d.join(".notes.lock")).unwrap();
    fs::write(d.join("elsewhere"), "linked").unwrap();
    fs::hard_link(d.join("elsewhere"), d.join(".notes.df-AAAAAAAAAA.tmp")).unwrap();
    std::os::unix::fs::symlink("notes", d.join(".notes.df-BBBBBBBBBB.tmp")).unwrap();
    let before = common::snapshot(d);
    let found = durafile::recover::recover(d, false).unwrap();
    assert_eq!(common::snapshot(d), before);
    assert!(found.orphans.removed.is_empty());
    assert_eq!(
        found.orphans.left_alone.len(),
        2,
        "{:?}",
        found.orphans.left_alone
    );
}

#[test]
#[ignore = "run by the tests of this file as a child process"]
fn child_entry() {
    let Some(role) = common::role() else { return };
    let dir = PathBuf::from(std::env::var_os("TARGET").unwrap());
    match (role.as_str(), durafile::recover::recover(&dir, false)) {
        ("recover", Ok(found)) => common::say(format!(
            "ok removed={:?} left_alone={}",
            found.orphans.removed,
            found.orphans.left_alone.len()
        )),
        ("recover_sidecars", Ok(found)) => common::say(format!(
            "ok missing={:?} not_ours={} {:?}",
            found.missing,
            found.not_ours.len(),
            found
                .not_ours
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
        )),
        (_, Err(e)) => common::say(format!("err {e}")),
        (other, _) => panic!("unknown role {other}"),
    }
}

/// Run as an ordinary user in a sticky directory, recover goes on past a file it may not
/// remove (EPERM) and past other users' files, and removes the user's own orphan.
#[test]
fn an_error_on_one_file_does_not_stop_the_scan() {
    if !common::can_switch_users() {
        return;
    }
    let dir = shared_dir();
    let d = dir.path();
    // Proven by owner (the directory's: root) and lock file, but not the victim's to remove.
    plant(d, ".a.lock", 0, "");
    plant(d, "a", 0, "root's a");
    plant(d, ".a.df-0000000000.tmp", 0, "root's dead write");
    // Another user's file the victim cannot remove either.
    plant(d, ".notes.df-1111111111.tmp", ATTACKER, "the attacker's");
    // The victim's own orphan, listed last.
    let orphan = plant(d, ".notes.df-zzzzzzzzzz.tmp", VICTIM, "half a write");
    let mut expected = common::snapshot(d);
    expected.remove(&orphan);

    let out = privdrop::run(
        &mut privdrop::child("child_entry", "recover", VICTIM, &[("TARGET", d)]),
        Duration::from_secs(20),
    );
    assert!(out.status.is_some(), "recover hangs");
    let said: Vec<&str> = common::heard(&out.stdout).collect();
    assert_eq!(
        said,
        [format!("ok removed={:?} left_alone=2", [&orphan]).as_str()],
        "{}",
        out.stderr
    );
    assert_eq!(common::snapshot(d), expected);
}

/// A sidecar whose data file is gone is the directory owner's evidence when the directory
/// owner (or root) made it, and is listed as missing even when root recovers; one another
/// user planted in a shared directory is listed as not durafile's, and left as it is.
#[test]
fn a_planted_sidecar_without_data_is_not_taken_for_a_missing_file() {
    if !common::can_switch_users() {
        return;
    }
    // The victim's own directory: their data file `gone` was deleted, its sidecar remains.
    let own = tempfile::tempdir().unwrap();
    lchown(own.path(), Some(VICTIM), Some(VICTIM)).unwrap();
    let line = format!("{}  gone\n", "ab".repeat(32));
    plant(own.path(), "gone.sha256", VICTIM, &line);
    let found = durafile::recover::recover(own.path(), false).unwrap();
    assert_eq!(
        found.missing,
        [own.path().join("gone")],
        "{:?}",
        found.not_ours
    );

    // A shared directory owned by root: the attacker's sidecar for a file nobody has.
    let shared = shared_dir();
    plant(
        shared.path(),
        "ghost.sha256",
        ATTACKER,
        &line.replace("gone", "ghost"),
    );
    let before = common::snapshot(shared.path());
    let out = privdrop::run(
        &mut privdrop::child(
            "child_entry",
            "recover_sidecars",
            VICTIM,
            &[("TARGET", shared.path())],
        ),
        Duration::from_secs(20),
    );
    let said: Vec<&str> = common::heard(&out.stdout).collect();
    assert_eq!(said.len(), 1, "{}", out.stderr);
    assert!(
        said[0].starts_with("ok missing=[] not_ours=1"),
        "{}",
        said[0]
    );
    assert!(said[0].contains("owned by uid 64002"), "{}", said[0]);
    assert_eq!(common::snapshot(shared.path()), before);
}
