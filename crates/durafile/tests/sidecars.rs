//! Files at a checksum sidecar's name that durafile did not write: FIFOs, links to
//! `/dev/zero`, other users' files, a user's own `sha256sum` lists. Each is refused with a
//! clear error or left alone, never followed, blocked on, read without bound or overwritten;
//! and the victim's files stay byte-identical. The operations run in a child as an
//! unprivileged uid, killed after a timeout so that a hang fails the test.

mod common;

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt, lchown, symlink};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::privdrop::{self, ATTACKER, VICTIM};
use durafile::checksum::{self, Verification};
use durafile::migrate::Migrator;
use durafile::{DataHandler, Error, FileManager, Options, StateManager, Step};

/// [`common::snapshot`] without the holder record in durafile's own lock files, which every
/// holder of the lock rewrites (its pid and the time): everything else must stay the same.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u32, u32, Vec<u8>)> {
    let mut files = common::snapshot(dir);
    for (path, (_, _, content)) in &mut files {
        if path.extension().is_some_and(|e| e == "lock") {
            content.clear();
        }
    }
    files
}

const TIMEOUT: Duration = Duration::from_secs(20);

fn mkfifo(path: &Path) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
}

/// A directory `uid` owns, holding its `data` file (written by durafile with a sidecar when
/// `checksum`), everything owned by `uid`.
fn victim_dir(mode: u32, checksum: bool) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    durafile::write(&data, b"precious", &Options::new().checksum(checksum)).unwrap();
    for entry in fs::read_dir(dir.path()).unwrap() {
        lchown(entry.unwrap().path(), Some(VICTIM), Some(VICTIM)).unwrap();
    }
    lchown(dir.path(), Some(VICTIM), Some(VICTIM)).unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(mode)).unwrap();
    (dir, data)
}

/// Runs `op` on `data` as the victim; returns what the child said (`ok …` or `err …`).
fn as_victim(op: &str, data: &Path) -> String {
    as_user(VICTIM, op, data)
}

/// [`as_victim`] as `uid`.
fn as_user(uid: u32, op: &str, data: &Path) -> String {
    let out = privdrop::run(
        &mut privdrop::child("child_entry", op, uid, &[("TARGET", data)]),
        TIMEOUT,
    );
    assert!(
        out.status.is_some(),
        "{op}: still running after {TIMEOUT:?}: it hangs (killed)"
    );
    let said: Vec<&str> = common::heard(&out.stdout).collect();
    assert_eq!(said.len(), 1, "{op}: {}\n{}", out.stdout, out.stderr);
    said[0].to_owned()
}

/// The child: one operation as the victim, reported as `ok …` or `err STEP MESSAGE`.
#[test]
#[ignore = "run by the tests of this file as a child process"]
fn child_entry() {
    let Some(role) = common::role() else { return };
    let data = PathBuf::from(std::env::var_os("TARGET").unwrap());
    let checksummed = Options::new().checksum(true);
    let result: durafile::Result<String> = match role.as_str() {
        "write" => durafile::write(&data, b"new", &Options::new()).map(|()| String::new()),
        "write_checksum" => durafile::write(&data, b"new", &checksummed).map(|()| String::new()),
        "write_same_mode_666" => {
            durafile::write(&data, b"precious", &Options::new().mode(0o666)).map(|()| String::new())
        }
        "update" => durafile::update(&data, &Options::new(), |_| Ok::<_, Error>(b"new".to_vec()))
            .map(|()| String::new()),
        "read" => {
            durafile::read(&data, &Options::new()).map(|b| String::from_utf8_lossy(&b).into())
        }
        "open" => durafile::open(&data, &Options::new()).map(|_| String::new()),
        "verify" => checksum::verify(&data).map(|v| format!("{v:?}")),
        "recover" => durafile::recover::recover(data.parent().unwrap(), false).map(|r| {
            let not_ours: Vec<String> = r.not_ours.iter().map(|e| e.to_string()).collect();
            format!(
                "not_ours={not_ours:?} errors={:?} damaged={:?}",
                r.errors, r.damaged
            )
        }),
        other => panic!("unknown role {other}"),
    };
    match result {
        Ok(what) => common::say(format!("ok {what}")),
        Err(e) => common::say(format!("err {:?} {e}", e.step())),
    }
}

const OPS: [&str; 7] = [
    "write",
    "write_checksum",
    "update",
    "read",
    "open",
    "verify",
    "recover",
];

/// A FIFO or a link to `/dev/zero` at the sidecar's name: every operation ends at once with
/// an error naming the checksum file and what it is (recover lists it), changing nothing.
#[test]
fn fifo_or_dev_zero_at_the_sidecar_never_hangs_or_exhausts_memory() {
    if !common::can_switch_users() {
        return;
    }
    for kind in ["fifo", "dev_zero"] {
        for op in OPS {
            let (dir, data) = victim_dir(0o755, false);
            let sidecar = dir.path().join("data.sha256");
            match kind {
                "fifo" => mkfifo(&sidecar),
                _ => symlink("/dev/zero", &sidecar).unwrap(),
            }
            lchown(&sidecar, Some(VICTIM), Some(VICTIM)).unwrap();
            let before = snapshot(dir.path());
            let said = as_victim(op, &data);
            let ctx = format!("{kind}, {op}: {said}");
            let what = if kind == "fifo" {
                "fifo"
            } else {
                "symbolic link"
            };
            if op == "recover" {
                assert!(
                    said.starts_with("ok not_ours=[") && said.contains(what),
                    "{ctx}"
                );
                assert!(said.contains("data.sha256"), "{ctx}");
            } else {
                assert!(said.starts_with("err "), "{ctx}");
                assert!(
                    said.contains("refused the checksum file") && said.contains(what),
                    "{ctx}"
                );
                assert!(said.contains(&sidecar.display().to_string()), "{ctx}");
            }
            if op.starts_with("write") || op == "update" {
                // Item 18: a sidecar failure during a write is not labelled "verify".
                assert!(
                    said.starts_with("err Some(ChecksumBegin) record the checksum of"),
                    "{ctx}"
                );
            }
            assert_eq!(snapshot(dir.path()), before, "{ctx}: something changed");
        }
    }
}

/// Another user's file at the sidecar's name is refused by name of its owner, for reads and
/// writes alike, and stays byte-identical.
#[test]
fn another_users_sidecar_is_refused_naming_its_owner() {
    if !common::can_switch_users() {
        return;
    }
    // A sticky world-writable directory, as /tmp: the attacker may add files, not replace them.
    let (dir, data) = victim_dir(0o1777, false);
    let sidecar = dir.path().join("data.sha256");
    // A well-formed sidecar for other content: trusted, it would make every read fail.
    fs::write(&sidecar, format!("{}  data\n", "ab".repeat(32))).unwrap();
    lchown(&sidecar, Some(ATTACKER), Some(ATTACKER)).unwrap();
    let before = snapshot(dir.path());
    for op in OPS {
        let said = as_victim(op, &data);
        let ctx = format!("{op}: {said}");
        if op == "recover" {
            assert!(
                said.starts_with("ok not_ours=[") && said.contains("uid 64002"),
                "{ctx}"
            );
        } else {
            assert!(said.starts_with("err "), "{ctx}");
            assert!(
                said.contains("owned by uid 64002") && said.contains("uid 64001"),
                "{ctx}"
            );
        }
        assert_eq!(snapshot(dir.path()), before, "{ctx}: something changed");
    }
}

/// A reader that needs a sidecar and finds one that does not parse may have caught a writer
/// cutting it down (the kernel zeroes the cut-off bytes in the page being read): it judges
/// it again under the shared lock, after that writer, instead of crying wolf.
#[test]
fn a_sidecar_seen_mid_cut_is_judged_again_after_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let sidecar = dir.path().join("data.sha256");
    let checksummed = Options::new().checksum(true);
    durafile::write(&data, b"new", &checksummed).unwrap();
    let line = fs::read(&sidecar).unwrap();
    // What a copy racing the kernel's zeroing can see: the first line, a few bytes of the
    // second, zeros.
    let mut torn = [
        line.clone(),
        format!("{}  data\n", "ab".repeat(32)).into_bytes(),
    ]
    .concat();
    torn[line.len() + 5..].fill(0);
    let writer = durafile::lock::acquire(&data, durafile::lock::LockMode::Exclusive, None).unwrap();
    fs::write(&sidecar, &torn).unwrap();
    let (read, verify) = std::thread::scope(|s| {
        let read = s.spawn(|| durafile::read(&data, &checksummed));
        let verify = s.spawn(|| checksum::verify(&data));
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            !read.is_finished() && !verify.is_finished(),
            "they waited for the writer"
        );
        fs::write(&sidecar, &line).unwrap();
        drop(writer);
        (read.join().unwrap(), verify.join().unwrap())
    });
    assert_eq!(read.unwrap(), b"new");
    assert!(matches!(
        verify.unwrap(),
        Verification::Match { pending: false, .. }
    ));
}

/// A user who may only read a file cannot take its lock; verifying it against a sidecar that
/// is not durafile's still reports that sidecar, not a lock error.
#[test]
fn a_reader_who_cannot_lock_still_hears_about_a_foreign_sidecar() {
    if !common::can_switch_users() {
        return;
    }
    let (dir, data) = victim_dir(0o755, true);
    let sidecar = dir.path().join("data.sha256");
    fs::write(&sidecar, format!("# mine\n{}  data\n", "ab".repeat(32))).unwrap();
    lchown(&sidecar, Some(VICTIM), Some(VICTIM)).unwrap();
    let before = snapshot(dir.path());
    let said = as_user(ATTACKER, "verify", &data);
    assert!(
        said.starts_with("err Some(Verify)") && said.contains("not durafile's"),
        "{said}"
    );
    assert_eq!(snapshot(dir.path()), before);
}

/// A file too large to hold in memory (here a sparse 64 GiB one, read by a process whose
/// address space is capped at 2 GiB) fails a verified read with an error, never an abort.
#[test]
fn a_file_too_large_for_memory_fails_a_verified_read_without_aborting() {
    if !common::can_switch_users() {
        return;
    }
    let (_dir, data) = victim_dir(0o755, true);
    fs::OpenOptions::new()
        .write(true)
        .open(&data)
        .unwrap()
        .set_len(64 << 30)
        .unwrap();
    let said = as_victim("read", &data);
    assert!(said.starts_with("err Some(Read)"), "{said}");
}

/// A sidecar owned by root is trusted (root could replace anything anyway).
#[test]
fn a_sidecar_owned_by_root_is_trusted() {
    if !common::can_switch_users() {
        return;
    }
    let (dir, data) = victim_dir(0o755, true);
    let sidecar = dir.path().join("data.sha256");
    lchown(&sidecar, Some(0), Some(0)).unwrap();
    assert_eq!(as_victim("read", &data), "ok precious");
}

/// Where links are not protected, a link planted at the sidecar's name never has its target's
/// mode changed: a same-content write with a new mode used to chmod through it.
#[test]
fn a_mode_change_never_goes_through_a_link_at_the_sidecar() {
    if !common::can_switch_users() {
        return;
    }
    // The victim's private copy, with its own valid sidecar.
    let (private, private_data) = victim_dir(0o700, true);
    let private_sidecar = private.path().join("data.sha256");
    fs::set_permissions(&private_sidecar, fs::Permissions::from_mode(0o600)).unwrap();
    // A shared, not sticky, directory: no kernel protection of links at all.
    let (shared, data) = victim_dir(0o777, false);
    let planted = shared.path().join("data.sha256");
    symlink(&private_sidecar, &planted).unwrap();
    lchown(&planted, Some(ATTACKER), Some(ATTACKER)).unwrap();
    let (before_private, before_shared) = (snapshot(private.path()), snapshot(shared.path()));
    let said = as_victim("write_same_mode_666", &data);
    assert!(
        said.starts_with("err ") && said.contains("symbolic link"),
        "{said}"
    );
    assert_eq!(
        snapshot(private.path()),
        before_private,
        "chmod went through the link"
    );
    assert_eq!(snapshot(shared.path()), before_shared);
    assert_eq!(fs::read(&private_data).unwrap(), b"precious");
}

/// Files at the sidecar's name in another format than durafile's own one-file form.
fn foreign_sidecars(digest: &str) -> Vec<(&'static str, String)> {
    let other = "cd".repeat(32);
    vec![
        (
            "sha256sum of two files",
            format!("{digest}  data\n{other}  b.iso\n"),
        ),
        ("a comment", format!("# made by hand\n{digest}  data\n")),
        ("another name", format!("{digest}  b.iso\n")),
        ("binary mode", format!("{digest} *data\n")),
        (
            "upper-case hex",
            format!("{}  data\n", digest.to_uppercase()),
        ),
        ("no final newline", format!("{digest}  data")),
        (
            "three digests",
            format!("{digest}  data\n{other}  data\n{}  data\n", "ef".repeat(32)),
        ),
        (
            "the same digest twice",
            format!("{digest}  data\n{digest}  data\n"),
        ),
        ("too large", format!("{digest}  data\n").repeat(2000)),
    ]
}

/// A user's own `NAME.sha256` (a `sha256sum` list of several files, comments, another name)
/// is left byte-identical by a plain write, refused by a checksummed one before anything
/// changes, not verified against by a plain read, and reported by `verify`.
#[test]
fn a_users_own_sha256_file_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let sidecar = dir.path().join("data.sha256");
    fs::write(&data, b"old").unwrap();
    let digest = checksum::to_hex(&checksum::hash_reader(&b"old"[..]).unwrap());
    for (what, text) in foreign_sidecars(&digest) {
        // Through durafile, so that its lock file exists before the snapshot.
        durafile::write(&data, b"old", &Options::new()).unwrap();
        fs::write(&sidecar, &text).unwrap();
        let before = snapshot(dir.path());
        let err = durafile::write(&data, b"new", &Options::new().checksum(true)).unwrap_err();
        assert!(
            matches!(
                err,
                Error::ChecksumFileRefused {
                    step: Step::ChecksumBegin,
                    ..
                }
            ),
            "{what}: {err}"
        );
        assert!(
            err.to_string().contains("not durafile's checksum file"),
            "{what}: {err}"
        );
        assert_eq!(
            snapshot(dir.path()),
            before,
            "{what}: a refused write changed something"
        );
        let err = checksum::verify(&data).unwrap_err();
        assert!(
            matches!(err, Error::BadChecksumFile { .. }),
            "{what}: {err}"
        );
        durafile::write(&data, b"new", &Options::new()).unwrap();
        assert_eq!(
            fs::read(&sidecar).unwrap(),
            text.as_bytes(),
            "{what}: rewritten"
        );
        assert_eq!(
            durafile::read(&data, &Options::new()).unwrap(),
            b"new",
            "{what}"
        );
        let err = durafile::read(&data, &Options::new().checksum(true)).unwrap_err();
        assert!(
            matches!(err, Error::BadChecksumFile { .. }),
            "{what}: {err}"
        );
        let found = durafile::recover::recover(dir.path(), false).unwrap();
        assert_eq!(found.not_ours.len(), 1, "{what}");
        assert!(found.damaged.is_empty(), "{what}: {:?}", found.damaged);
        assert_eq!(
            fs::read(&sidecar).unwrap(),
            text.as_bytes(),
            "{what}: recover rewrote it"
        );
    }
}

/// `sha256sum data > data.sha256` is durafile's own format: a plain write keeps it current.
#[test]
fn a_sha256sum_line_for_this_file_alone_is_kept_current() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    fs::write(&data, b"old").unwrap();
    let digest = |b: &[u8]| checksum::to_hex(&checksum::hash_reader(b).unwrap());
    fs::write(
        dir.path().join("data.sha256"),
        format!("{}  data\n", digest(b"old")),
    )
    .unwrap();
    durafile::write(&data, b"new", &Options::new()).unwrap();
    assert_eq!(
        fs::read_to_string(dir.path().join("data.sha256")).unwrap(),
        format!("{}  data\n", digest(b"new"))
    );
    assert!(matches!(
        checksum::verify(&data).unwrap(),
        Verification::Match { pending: false, .. }
    ));
}

/// The mode, owner and group a new state generation, a rollback and a staged migration copy
/// get: those of the previous generation or the document, never the process's defaults.
#[test]
fn successors_take_their_predecessors_mode_and_owner() {
    let root = common::can_switch_users();
    let owner = if root {
        VICTIM
    } else {
        unsafe { libc::geteuid() }
    };
    let dir = tempfile::tempdir().unwrap();
    let files = FileManager::new(Options::new().checksum(true));
    let states = StateManager::open(dir.path(), files.clone()).unwrap();
    let first = states.save_current_state(&1).unwrap();
    let make_private = |path: &Path| {
        fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
        lchown(path, Some(owner), Some(owner)).unwrap();
    };
    for h in states.history().unwrap() {
        make_private(&h.path);
        make_private(&dir.path().join(format!("state.{}.json.sha256", h.number)));
    }
    let second = states.save_current_state(&2).unwrap();
    let third = states.rollback(first).unwrap();
    for n in [second, third] {
        for name in [format!("state.{n}.json"), format!("state.{n}.json.sha256")] {
            let meta = fs::metadata(dir.path().join(&name)).unwrap();
            assert_eq!(meta.mode() & 0o7777, 0o600, "{name}");
            assert_eq!((meta.uid(), meta.gid()), (owner, owner), "{name}");
        }
    }

    // Migration: the step for document b looks at a's staged copy.
    let docs_dir = tempfile::tempdir().unwrap();
    let docs = DataHandler::open(docs_dir.path(), FileManager::new(Options::new())).unwrap();
    for key in ["a", "b"] {
        docs.save(key, &serde_json::json!({"k": key})).unwrap();
        make_private(&docs_dir.path().join(format!("{key}.json")));
    }
    let staged_a = docs_dir.path().join(".durafile-migration.staging/a.json");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
    let seen_in_step = seen.clone();
    let migrator = Migrator::new().step(1, move |doc| {
        if let Ok(meta) = fs::metadata(&staged_a) {
            *seen_in_step.lock().unwrap() = Some((meta.mode() & 0o7777, meta.uid(), meta.gid()));
        }
        Ok(doc)
    });
    migrator
        .migrate_dir(&docs, None, false, &|_, _, _| {})
        .unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        Some((0o600, owner, owner)),
        "a's staged copy"
    );
    for key in ["a", "b"] {
        let meta = fs::metadata(docs_dir.path().join(format!("{key}.json"))).unwrap();
        assert_eq!((meta.mode() & 0o7777, meta.uid()), (0o600, owner), "{key}");
    }
}

/// A name too long to have a sidecar (`NAME.sha256` over 255 bytes) has none: plain writes
/// and reads work, and only a write that asks for a checksum fails, saying why.
#[test]
fn a_name_too_long_for_a_sidecar_can_still_be_written() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("n".repeat(250));
    durafile::write(&data, b"one", &Options::new()).unwrap();
    durafile::write(&data, b"two", &Options::new()).unwrap();
    assert_eq!(durafile::read(&data, &Options::new()).unwrap(), b"two");
    let before = snapshot(dir.path());
    let err = durafile::write(&data, b"three", &Options::new().checksum(true)).unwrap_err();
    assert_eq!(err.step(), Some(Step::ChecksumBegin), "{err}");
    assert!(err.to_string().contains("too long"), "{err}");
    assert_eq!(snapshot(dir.path()), before);
}

/// `DataHandler::delete` and a `StateManager`'s pruning remove durafile's sidecars only: a
/// user's own `sha256sum` list at the name stays byte-identical, while the document or the
/// old generation goes.
#[test]
fn delete_and_pruning_leave_a_users_own_checksum_list_alone() {
    let dir = tempfile::tempdir().unwrap();
    let list = format!(
        "{}  doc.json\n{}  b.iso\n",
        "ab".repeat(32),
        "cd".repeat(32)
    );
    let docs = DataHandler::open(dir.path(), FileManager::new(Options::new())).unwrap();
    docs.save("doc", &1).unwrap();
    let sidecar = dir.path().join("doc.json.sha256");
    fs::write(&sidecar, &list).unwrap();
    assert!(docs.delete("doc").unwrap());
    assert!(!dir.path().join("doc.json").exists());
    assert_eq!(
        fs::read(&sidecar).unwrap(),
        list.as_bytes(),
        "delete removed it"
    );
    // durafile's own sidecar still goes with its document.
    let checked =
        DataHandler::open(dir.path(), FileManager::new(Options::new().checksum(true))).unwrap();
    checked.save("mine", &1).unwrap();
    assert!(dir.path().join("mine.json.sha256").exists());
    assert!(checked.delete("mine").unwrap());
    assert!(!dir.path().join("mine.json.sha256").exists());

    let states = StateManager::open(dir.path(), FileManager::new(Options::new().checksum(true)))
        .unwrap()
        .keep(1);
    states.save_current_state(&1).unwrap();
    let first = dir.path().join("state.1.json.sha256");
    let list = format!(
        "{}  state.1.json\n{}  b.iso\n",
        "ab".repeat(32),
        "cd".repeat(32)
    );
    fs::write(&first, &list).unwrap();
    states.save_current_state(&2).unwrap();
    assert!(!dir.path().join("state.1.json").exists());
    assert_eq!(
        fs::read(&first).unwrap(),
        list.as_bytes(),
        "pruning removed it"
    );
    states.save_current_state(&3).unwrap();
    assert!(
        !dir.path().join("state.2.json.sha256").exists(),
        "durafile's own sidecar is pruned with its generation"
    );
}

/// A document that is a symbolic link: `delete` removes the link only, and the file it points
/// to keeps its content and its sidecar. In a data directory reached through a link, a plain
/// document goes with its sidecar.
#[test]
fn delete_removes_a_link_not_its_target_and_follows_a_linked_directory() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real");
    fs::create_dir(&real).unwrap();
    let docs = dir.path().join("docs");
    fs::create_dir(&docs).unwrap();
    let opts = Options::new().checksum(true);
    durafile::write(real.join("other.json"), b"1", &opts).unwrap();
    symlink(real.join("other.json"), docs.join("doc.json")).unwrap();
    let handler = DataHandler::open(&docs, FileManager::new(opts.clone())).unwrap();
    assert!(handler.delete("doc").unwrap());
    assert!(fs::symlink_metadata(docs.join("doc.json")).is_err());
    assert_eq!(fs::read(real.join("other.json")).unwrap(), b"1");
    assert!(real.join("other.json.sha256").exists());

    symlink(&real, dir.path().join("linked")).unwrap();
    let through = DataHandler::open(dir.path().join("linked"), FileManager::new(opts)).unwrap();
    through.save("plain", &2).unwrap();
    assert!(real.join("plain.json.sha256").exists());
    assert!(through.delete("plain").unwrap());
    assert!(!real.join("plain.json").exists());
    assert!(!real.join("plain.json.sha256").exists());
    assert!(!through.delete("plain").unwrap());
}

/// Another user's file at the sidecar's name: `delete` refuses, naming its owner, and deletes
/// nothing; pruning removes the old generation and leaves that file alone.
#[test]
fn delete_and_pruning_never_remove_another_users_file() {
    if !common::can_switch_users() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let docs = DataHandler::open(dir.path(), FileManager::new(Options::new())).unwrap();
    docs.save("doc", &1).unwrap();
    let sidecar = dir.path().join("doc.json.sha256");
    fs::write(&sidecar, format!("{}  doc.json\n", "ab".repeat(32))).unwrap();
    lchown(&sidecar, Some(ATTACKER), Some(ATTACKER)).unwrap();
    let before = snapshot(dir.path());
    let err = docs.delete("doc").unwrap_err();
    assert!(matches!(err, Error::ChecksumFileRefused { .. }), "{err}");
    assert!(err.to_string().contains("uid 64002"), "{err}");
    assert_eq!(
        snapshot(dir.path()),
        before,
        "a refused delete changed something"
    );

    let states = StateManager::open(dir.path(), FileManager::new(Options::new()))
        .unwrap()
        .keep(1);
    states.save_current_state(&1).unwrap();
    let first = dir.path().join("state.1.json.sha256");
    fs::write(&first, format!("{}  state.1.json\n", "ab".repeat(32))).unwrap();
    lchown(&first, Some(ATTACKER), Some(ATTACKER)).unwrap();
    let planted = fs::read(&first).unwrap();
    states.save_current_state(&2).unwrap();
    assert!(!dir.path().join("state.1.json").exists());
    assert_eq!(
        fs::read(&first).unwrap(),
        planted,
        "pruning removed another user's file"
    );
    assert_eq!(fs::symlink_metadata(&first).unwrap().uid(), ATTACKER);
}
