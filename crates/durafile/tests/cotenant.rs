//! Hostile co-tenants of a shared directory (issue 10): planted links, planted files, lock
//! files other users can hold, special mode bits, odd names and misleading errors.
//!
//! The test process is root: it builds a sticky world-writable directory (`mkdir -m 1777`),
//! plants files and links as another uid (`lchown`), and runs durafile either as root itself
//! (where the danger is root's) or as an unprivileged uid in a child process whose privileges
//! are dropped before it starts. Every test checks that the victim's files are byte-identical
//! and that nothing was created outside the target's directory. Without root the tests skip
//! with a printed reason.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, chown, lchown, symlink};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{can_switch_users, heard, snapshot, spawn_child, spawn_child_as};
use durafile::Options;

/// The uid that plants things, and the unprivileged uid that runs durafile.
const MALLORY: u32 = 4001;
const ALICE: u32 = 4002;
const GROUP: u32 = 4100;

/// `base` (0755) holds `shared` (1777, root's), `etc` (0755, root's: a victim) and `home`
/// (0755, alice's: her own victim files).
struct Layout {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    shared: PathBuf,
    etc: PathBuf,
    home: PathBuf,
}

fn layout() -> Layout {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().to_path_buf();
    fs::set_permissions(&base, fs::Permissions::from_mode(0o755)).unwrap();
    let shared = base.join("shared");
    let etc = base.join("etc");
    let home = base.join("home");
    for d in [&shared, &etc, &home] {
        fs::create_dir(d).unwrap();
        fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
    }
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
    chown(&home, Some(ALICE), Some(ALICE)).unwrap();
    fs::write(etc.join("victim"), "root's secret\n").unwrap();
    Layout {
        _tmp: tmp,
        base,
        shared,
        etc,
        home,
    }
}

fn plant_link(target: &Path, link: &Path, owner: u32) {
    symlink(target, link).unwrap();
    lchown(link, Some(owner), Some(owner)).unwrap();
}

/// Runs `durafile::write(path, data)` as `uid` in a child; its error message, if it failed.
fn write_as(uid: u32, path: &Path, data: &str) -> Result<(), String> {
    let child = spawn_child_as(
        "child_entry",
        "write",
        &[
            ("DF_PATH", path.display().to_string()),
            ("DF_DATA", data.to_owned()),
        ],
        uid,
        uid,
    );
    said(child)
}

fn said(child: common::Proc) -> Result<(), String> {
    let (status, out) = child.finish();
    assert!(status.success(), "child failed: {out}");
    let msg = heard(&out).next().expect("child reported").to_owned();
    match msg.strip_prefix("err ") {
        Some(e) => Err(e.to_owned()),
        None => Ok(()),
    }
}

fn err_text(r: durafile::Result<()>) -> String {
    match r {
        Ok(()) => panic!("durafile did what it should have refused"),
        Err(e) => e.to_string(),
    }
}

// ---- item 1: links the kernel would refuse -------------------------------------------------

#[test]
fn root_does_not_write_through_a_link_another_user_planted() {
    if !can_switch_users() {
        return;
    }
    let l = layout();
    let job = l.shared.join("job.txt");
    plant_link(&l.etc.join("victim"), &job, MALLORY);
    let etc = snapshot(&l.etc);
    let shared = snapshot(&l.shared);
    let msg = err_text(durafile::write(&job, "pwned", &Options::new()));
    assert!(msg.contains("job.txt") && msg.contains("4001"), "{msg}");
    assert_eq!(
        snapshot(&l.etc),
        etc,
        "the victim and its directory are untouched"
    );
    assert_eq!(
        snapshot(&l.shared),
        shared,
        "nothing was created beside the link"
    );
    // update and lock refuse it the same way.
    let updated = durafile::update(&job, &Options::new(), |_| Ok::<_, durafile::Error>(vec![]));
    assert!(updated.is_err());
    assert!(durafile::lock::acquire(&job, durafile::lock::LockMode::Exclusive, None).is_err());
    assert_eq!(snapshot(&l.etc), etc);
    assert_eq!(snapshot(&l.shared), shared);
}

#[test]
fn a_dangling_planted_link_creates_no_file_where_it_points() {
    if !can_switch_users() {
        return;
    }
    let l = layout();
    let job = l.shared.join("new.txt");
    plant_link(&l.home.join("planted"), &job, MALLORY);
    let shared = snapshot(&l.shared);
    let msg = write_as(ALICE, &job, "alice's data").unwrap_err();
    assert!(msg.contains("new.txt") && msg.contains("4001"), "{msg}");
    assert!(
        snapshot(&l.home).is_empty(),
        "nothing was created in alice's home"
    );
    assert_eq!(snapshot(&l.shared), shared);
}

#[test]
fn a_planted_directory_link_is_not_followed() {
    if !can_switch_users() {
        return;
    }
    let l = layout();
    plant_link(&l.etc, &l.shared.join("sub"), MALLORY);
    let etc = snapshot(&l.etc);
    let shared = snapshot(&l.shared);
    let msg = err_text(durafile::write(
        l.shared.join("sub/victim"),
        "pwned",
        &Options::new(),
    ));
    assert!(msg.contains("sub") && msg.contains("4001"), "{msg}");
    assert_eq!(snapshot(&l.etc), etc);
    assert_eq!(snapshot(&l.shared), shared);
}

/// A directory on the path that another user owns is swapped for a link to /etc while root
/// writes: the write still lands in the directory that was resolved and checked, because the
/// temp file, the rename and the fsync go through its descriptor.
#[test]
fn a_directory_swapped_for_a_link_mid_write_does_not_redirect_it() {
    use std::io::Write;
    if !can_switch_users() {
        return;
    }
    let l = layout();
    let mdir = l.shared.join("m");
    fs::create_dir(&mdir).unwrap();
    chown(&mdir, Some(MALLORY), Some(MALLORY)).unwrap();
    let mut file = durafile::AtomicFile::new(mdir.join("victim"), &Options::new()).unwrap();
    file.write_all(b"root's new data").unwrap();
    let etc = snapshot(&l.etc);
    fs::rename(&mdir, l.shared.join("m.old")).unwrap();
    plant_link(&l.etc, &mdir, MALLORY);
    file.commit().unwrap();
    assert_eq!(
        snapshot(&l.etc),
        etc,
        "nothing was written into the link's target"
    );
    assert_eq!(
        fs::read_to_string(l.shared.join("m.old/victim")).unwrap(),
        "root's new data"
    );
}

/// The rule refuses only what the kernel's protected_symlinks refuses: links owned by the
/// follower or by the directory's owner still work.
#[test]
fn links_owned_by_the_caller_or_the_directory_owner_are_followed() {
    if !can_switch_users() {
        return;
    }
    let l = layout();
    plant_link(&l.home.join("mine"), &l.shared.join("mine"), ALICE);
    plant_link(&l.home.join("roots"), &l.shared.join("roots"), 0);
    write_as(ALICE, &l.shared.join("mine"), "one").unwrap();
    write_as(ALICE, &l.shared.join("roots"), "two").unwrap();
    assert_eq!(fs::read_to_string(l.home.join("mine")).unwrap(), "one");
    assert_eq!(fs::read_to_string(l.home.join("roots")).unwrap(), "two");
}

/// protected_regular's rule: root does not replace a file another user planted in a sticky
/// directory (its new content would be root's data in mallory's file), and an ordinary user
/// is told why the kernel refuses the rename instead of "make the directory writable".
#[test]
fn another_users_file_in_a_sticky_directory_is_not_replaced() {
    if !can_switch_users() {
        return;
    }
    let l = layout();
    let job = l.shared.join("job.txt");
    fs::write(&job, "mallory's\n").unwrap();
    chown(&job, Some(MALLORY), Some(MALLORY)).unwrap();
    fs::set_permissions(&job, fs::Permissions::from_mode(0o666)).unwrap();
    let shared = snapshot(&l.shared);
    let msg = err_text(durafile::write(&job, "root's secret", &Options::new()));
    assert!(msg.contains("4001") && msg.contains("sticky"), "{msg}");
    assert_eq!(snapshot(&l.shared), shared);
    let msg = write_as(ALICE, &job, "alice's").unwrap_err();
    assert!(msg.contains("4001") && msg.contains("sticky"), "{msg}");
    assert!(!msg.contains("must be writable"), "{msg}");
    assert_eq!(snapshot(&l.shared), shared);
}

// ---- item 2: who may hold the lock ---------------------------------------------------------

#[test]
fn a_user_who_may_only_read_cannot_open_the_lock_file() {
    if !can_switch_users() {
        return;
    }
    let l = layout();
    let data = l.etc.join("alice.json");
    fs::write(&data, "{}").unwrap();
    chown(&data, Some(ALICE), Some(GROUP)).unwrap();
    fs::set_permissions(&data, fs::Permissions::from_mode(0o644)).unwrap();
    durafile::write(&data, "{\"n\":1}", &Options::new()).unwrap();
    let lock = l.etc.join(".alice.json.lock");
    let meta = fs::metadata(&lock).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        (ALICE, GROUP, 0o600)
    );
    // mallory may read alice.json, so she could flock a readable lock file forever.
    let child = spawn_child_as(
        "child_entry",
        "lock_shared",
        &[("DF_PATH", data.display().to_string())],
        MALLORY,
        MALLORY,
    );
    let msg = said(child).unwrap_err();
    assert!(msg.contains(".alice.json.lock"), "{msg}");
    // A lock file root made for alice's file before this rule (root's, 0644) becomes hers.
    fs::remove_file(&lock).unwrap();
    fs::write(&lock, "").unwrap();
    fs::set_permissions(&lock, fs::Permissions::from_mode(0o644)).unwrap();
    durafile::write(&data, "{\"n\":1}", &Options::new()).unwrap();
    let meta = fs::metadata(&lock).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        (ALICE, GROUP, 0o600)
    );
    // Group writers may lock it.
    fs::set_permissions(&data, fs::Permissions::from_mode(0o664)).unwrap();
    fs::remove_file(&lock).unwrap();
    durafile::write(&data, "{\"n\":2}", &Options::new()).unwrap();
    assert_eq!(fs::metadata(&lock).unwrap().mode() & 0o7777, 0o660);
}

/// In a sticky shared directory anyone may create a data file's lock file first, to hold it
/// forever: durafile refuses a lock file there that neither the caller, the data file's owner
/// nor the directory's owner owns, and says whose it is, instead of waiting on it.
#[test]
fn a_lock_file_planted_in_a_sticky_directory_is_refused() {
    if !can_switch_users() {
        return;
    }
    let l = layout();
    let lock = l.shared.join(".job.json.lock");
    fs::write(&lock, "").unwrap();
    chown(&lock, Some(MALLORY), Some(MALLORY)).unwrap();
    fs::set_permissions(&lock, fs::Permissions::from_mode(0o666)).unwrap();
    let before = snapshot(&l.base);
    let msg = write_as(ALICE, &l.shared.join("job.json"), "alice's").unwrap_err();
    assert!(
        msg.contains(".job.json.lock") && msg.contains("4001"),
        "{msg}"
    );
    assert_eq!(snapshot(&l.base), before);
}

#[test]
fn an_over_permissive_lock_file_of_ours_is_tightened() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("s.json");
    let lock = dir.path().join(".s.json.lock");
    fs::write(&data, "{}").unwrap();
    fs::set_permissions(&data, fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(&lock, "").unwrap();
    fs::set_permissions(&lock, fs::Permissions::from_mode(0o666)).unwrap();
    durafile::write(&data, "{\"n\":1}", &Options::new()).unwrap();
    assert_eq!(fs::metadata(&lock).unwrap().mode() & 0o777, 0o600);
    assert_eq!(fs::metadata(&data).unwrap().mode() & 0o777, 0o600);
}

/// The hook the CLI's "waiting for the lock" notice hangs on: it fires once after a second of
/// waiting, and names the holder's pid where the kernel tells (Linux `/proc/locks`).
#[test]
fn a_long_wait_is_announced_with_the_holder() {
    use std::sync::Mutex;
    static SEEN: Mutex<Vec<(PathBuf, Option<u32>)>> = Mutex::new(Vec::new());
    fn notice(w: &durafile::lock::Waiting<'_>) {
        SEEN.lock()
            .unwrap()
            .push((w.lock_file.to_path_buf(), w.holder_pid));
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("busy.json");
    let mut holder = spawn_child(
        "child_entry",
        "hold",
        &[("DF_PATH", data.display().to_string())],
    );
    holder.wait_for("locked");
    let pid = holder.child().id();
    durafile::lock::on_wait(notice);
    let started = std::time::Instant::now();
    let err = durafile::write(
        &data,
        "x",
        &Options::new().lock_timeout(Duration::from_millis(1500)),
    )
    .unwrap_err();
    assert!(matches!(err, durafile::Error::LockTimeout { .. }), "{err}");
    assert!(started.elapsed() >= Duration::from_millis(1500));
    let seen = SEEN.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].0.ends_with(".busy.json.lock"));
    if cfg!(target_os = "linux") {
        assert_eq!(seen[0].1, Some(pid));
    }
    drop(holder);
}

// ---- item 6: special mode bits -----------------------------------------------------------

#[test]
fn setuid_setgid_and_sticky_bits_do_not_survive_a_replace() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tool");
    for mode in [0o4755, 0o2755, 0o1755, 0o6755] {
        fs::write(&path, "old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        durafile::write(&path, "new", &Options::new()).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().mode() & 0o7777,
            0o755,
            "{mode:o}"
        );
    }
    // Asked for explicitly, they are set.
    durafile::write(&path, "newer", &Options::new().mode(0o4750)).unwrap();
    assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, 0o4750);
}

// ---- item 16: the longest names ------------------------------------------------------------

#[test]
fn names_up_to_the_filesystem_limit_can_be_written() {
    let dir = tempfile::tempdir().unwrap();
    for len in 248..=255 {
        let path = dir.path().join("n".repeat(len));
        durafile::write(&path, format!("{len}"), &Options::new()).unwrap();
        durafile::update(&path, &Options::new(), |old| {
            Ok::<_, durafile::Error>([old.unwrap(), b"+"].concat())
        })
        .unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), format!("{len}+"));
        assert_eq!(
            durafile::read(&path, &Options::new().lock_reads(true)).unwrap(),
            format!("{len}+").as_bytes()
        );
    }
    assert!(common::temp_files(dir.path()).is_empty());
    // A checksum that cannot fit is an error only when asked for, and a clear one.
    let path = dir.path().join("n".repeat(250));
    let msg = err_text(durafile::write(&path, "x", &Options::new().checksum(true)));
    assert!(msg.contains("too long"), "{msg}");
    assert_eq!(fs::read_to_string(&path).unwrap(), "250+");
}

// ---- item 17: durafile's own files are not targets -------------------------------------------

#[test]
fn durafiles_own_files_are_refused_as_targets() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("x.json");
    durafile::write(&data, "{}", &Options::new()).unwrap();
    let long = dir.path().join("l".repeat(252));
    durafile::write(&long, "{}", &Options::new()).unwrap();
    let mut own: Vec<PathBuf> = common::names(dir.path())
        .into_iter()
        .filter(|n| n.to_string_lossy().ends_with(".lock"))
        .map(|n| dir.path().join(n))
        .collect();
    assert_eq!(own.len(), 2, "{own:?}");
    own.push(dir.path().join(".x.json.df-ABCDEFGHIJ.tmp"));
    // A link with a lock file's name is refused too, whatever it points to.
    let elsewhere = tempfile::tempdir().unwrap();
    fs::write(elsewhere.path().join("kept"), "kept").unwrap();
    symlink(elsewhere.path().join("kept"), dir.path().join(".y.lock")).unwrap();
    let before = snapshot(dir.path());
    own.push(dir.path().join(".y.lock"));
    for path in &own {
        let msg = err_text(durafile::write(path, "{}", &Options::new()));
        assert!(msg.contains("durafile"), "{msg}");
    }
    assert_eq!(snapshot(dir.path()), before);
    assert_eq!(
        fs::read_to_string(elsewhere.path().join("kept")).unwrap(),
        "kept"
    );
    assert_eq!(common::names(elsewhere.path()), ["kept"]);
}

// ---- item 18: errors that say what happened -------------------------------------------------

#[test]
fn a_linked_lock_file_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("target"), "keep").unwrap();
    let data = dir.path().join("x.json");
    symlink(
        outside.path().join("target"),
        dir.path().join(".x.json.lock"),
    )
    .unwrap();
    let before = snapshot(outside.path());
    let msg = err_text(durafile::write(&data, "{}", &Options::new()));
    assert!(msg.contains(".x.json.lock"), "{msg}");
    assert!(msg.contains("symbolic link"), "{msg}");
    assert!(!data.exists());
    assert_eq!(snapshot(outside.path()), before);
}

#[test]
fn a_foreign_private_lock_file_is_named_with_its_owner() {
    if !can_switch_users() {
        return;
    }
    let l = layout();
    let work = l.base.join("work");
    fs::create_dir(&work).unwrap();
    fs::set_permissions(&work, fs::Permissions::from_mode(0o777)).unwrap();
    let data = work.join("d.json");
    fs::write(&data, "{}").unwrap();
    fs::set_permissions(&data, fs::Permissions::from_mode(0o666)).unwrap();
    let lock = work.join(".d.json.lock");
    fs::write(&lock, "").unwrap();
    chown(&lock, Some(MALLORY), Some(MALLORY)).unwrap();
    fs::set_permissions(&lock, fs::Permissions::from_mode(0o600)).unwrap();
    let before = snapshot(&l.base);
    let msg = write_as(ALICE, &data, "alice's").unwrap_err();
    assert!(
        msg.contains(".d.json.lock") && msg.contains("4001"),
        "{msg}"
    );
    assert!(!msg.contains("must be writable"), "{msg}");
    assert_eq!(snapshot(&l.base), before);
}

#[test]
fn out_of_inodes_is_not_called_out_of_space() {
    if !can_switch_users() {
        return;
    }
    let mnt = tempfile::tempdir().unwrap();
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m,nr_inodes=16", "none"])
        .arg(mnt.path())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipped: cannot mount a tmpfs here");
        return;
    }
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(self.0).status();
        }
    }
    let _unmount = Unmount(mnt.path());
    let data = mnt.path().join("state.json");
    durafile::write(&data, "{\"v\":1}", &Options::new()).unwrap();
    for i in 0.. {
        if fs::write(mnt.path().join(format!("filler{i}")), "").is_err() {
            break;
        }
    }
    // The lock file's content is the holder's record, rewritten by every writer.
    let lock = mnt.path().join(".state.json.lock");
    let without_lock = || {
        let mut files = snapshot(mnt.path());
        files.remove(&lock).unwrap();
        files
    };
    let before = without_lock();
    let msg = err_text(durafile::write(&data, "{\"v\":2}", &Options::new()));
    assert!(msg.contains("inode"), "{msg}");
    assert!(!msg.contains("free space"), "{msg}");
    assert_eq!(without_lock(), before);
}

#[test]
fn names_reach_messages_quoted() {
    let dir = tempfile::tempdir().unwrap();
    let evil = dir.path().join("no\nsuch\x1b[31mdir/f.json");
    let msg = err_text(durafile::write(&evil, "{}", &Options::new()));
    assert!(!msg.contains('\n') && !msg.contains('\x1b'), "{msg:?}");
    assert!(msg.contains(r"no\nsuch\u{1b}[31mdir"), "{msg}");
}

// ---- the children ---------------------------------------------------------------------------

#[test]
#[ignore = "a child process of the tests above"]
fn child_entry() {
    let path = || PathBuf::from(std::env::var("DF_PATH").unwrap());
    let report = |r: durafile::Result<()>| match r {
        Ok(()) => common::say("ok"),
        Err(e) => common::say(format!("err {}", e.to_string().replace('\n', "\\n"))),
    };
    match common::role().as_deref() {
        Some("write") => report(durafile::write(
            path(),
            std::env::var("DF_DATA").unwrap(),
            &Options::new().lock_timeout(Duration::from_secs(5)),
        )),
        Some("lock_shared") => report(
            durafile::lock::acquire(
                &path(),
                durafile::lock::LockMode::Shared,
                Some(Duration::ZERO),
            )
            .map(drop),
        ),
        Some("hold") => {
            let _lock = durafile::lock::acquire(&path(), durafile::lock::LockMode::Exclusive, None)
                .unwrap();
            common::say("locked");
            std::thread::sleep(Duration::from_secs(60));
        }
        _ => {}
    }
}
