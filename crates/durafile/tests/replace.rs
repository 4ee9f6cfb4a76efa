//! The replace on real files: content, permissions, owners, symlinks, refusals and cleanup.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;

use durafile::{AtomicFile, Durability, Error, Options, Step};

use common::{names, temp_files};

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn writes_content_at_every_durability_and_leaves_no_temp() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    for (i, level) in [Durability::Full, Durability::Consistent, Durability::None]
        .into_iter()
        .enumerate()
    {
        let content = format!("{{\"n\":{i}}}");
        durafile::write(&path, &content, &Options::new().durability(level)).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), content);
        assert_eq!(temp_files(dir.path()), Vec::<std::path::PathBuf>::new());
    }
    assert_eq!(names(dir.path()), [".state.json.lock", "state.json"]);
}

#[test]
fn existing_mode_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    for wanted in [0o640, 0o755, 0o600, 0o444] {
        let path = dir.path().join(format!("f{wanted:o}"));
        fs::write(&path, "old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(wanted)).unwrap();
        durafile::write(&path, "new", &Options::new()).unwrap();
        assert_eq!(mode(&path), wanted, "mode {wanted:o}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "new");
    }
}

#[test]
fn explicit_mode_wins() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    durafile::write(&path, "x", &Options::new().mode(0o604)).unwrap();
    assert_eq!(mode(&path), 0o604);
    durafile::write(&path, "y", &Options::new().mode(0o640)).unwrap();
    assert_eq!(mode(&path), 0o640);
}

/// The umask is per process, so the check runs in a child that sets its own.
#[test]
fn new_file_mode_follows_the_umask() {
    let dir = tempfile::tempdir().unwrap();
    for (umask, expected) in [(0o027, 0o640), (0o022, 0o644), (0o077, 0o600)] {
        let path = dir.path().join(format!("new-{umask:o}"));
        let child = common::spawn_child(
            "child_entry",
            "umask",
            &[
                ("UMASK", umask.to_string()),
                ("TARGET", path.display().to_string()),
            ],
        );
        assert!(child.finish().0.success(), "child failed");
        assert_eq!(mode(&path), expected, "umask {umask:o}");
    }
}

#[test]
fn owner_and_group_are_kept_where_allowed() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: giving a file to another owner needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("owned");
    fs::write(&path, "old").unwrap();
    std::os::unix::fs::chown(&path, Some(4321), Some(4322)).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o2750)).unwrap();
    durafile::write(&path, "new", &Options::new()).unwrap();
    let meta = fs::metadata(&path).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (4321, 4322));
    assert_eq!(
        meta.permissions().mode() & 0o7777,
        0o750,
        "the permission bits are kept, setgid is not (tests/cotenant.rs has the rule)"
    );
}

#[test]
fn symlink_stays_and_its_target_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let real_dir = dir.path().join("real");
    let link_dir = dir.path().join("links");
    fs::create_dir_all(&real_dir).unwrap();
    fs::create_dir_all(&link_dir).unwrap();
    let real = real_dir.join("config.json");
    fs::write(&real, "old").unwrap();
    fs::set_permissions(&real, fs::Permissions::from_mode(0o640)).unwrap();
    let link = link_dir.join("config.json");
    symlink("../real/config.json", &link).unwrap();

    durafile::write(&link, "new", &Options::new()).unwrap();

    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        fs::read_link(&link).unwrap(),
        Path::new("../real/config.json")
    );
    assert_eq!(fs::read_to_string(&real).unwrap(), "new");
    assert_eq!(mode(&real), 0o640);
    assert_eq!(
        names(&link_dir),
        ["config.json"],
        "nothing created beside the link"
    );
    assert_eq!(names(&real_dir), [".config.json.lock", "config.json"]);
}

#[test]
fn dangling_symlink_creates_its_target() {
    let dir = tempfile::tempdir().unwrap();
    symlink("target.json", dir.path().join("link.json")).unwrap();
    durafile::write(dir.path().join("link.json"), "{}", &Options::new()).unwrap();
    assert_eq!(
        fs::read_to_string(dir.path().join("target.json")).unwrap(),
        "{}"
    );
    assert!(
        fs::symlink_metadata(dir.path().join("link.json"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn directory_and_fifo_targets_are_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("sub");
    fs::create_dir(&sub).unwrap();
    fs::write(sub.join("inside"), "keep").unwrap();
    let err = durafile::write(&sub, "x", &Options::new()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotRegularFile {
                kind: "directory",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(fs::read_to_string(sub.join("inside")).unwrap(), "keep");

    let fifo = dir.path().join("fifo");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let err = durafile::write(&fifo, "x", &Options::new()).unwrap_err();
    assert!(
        matches!(err, Error::NotRegularFile { kind: "fifo", .. }),
        "{err}"
    );
    assert!(err.to_string().contains("nothing was changed"));
    assert_eq!(names(dir.path()), ["fifo", "sub"]);
}

#[test]
fn missing_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope/state.json");
    let err = durafile::write(&path, "x", &Options::new()).unwrap_err();
    assert_eq!(err.step(), Some(Step::Lock));
    assert_eq!(err.path(), path);
    let msg = err.to_string();
    assert!(msg.contains("does not exist"), "{msg}");
}

#[test]
fn readonly_directory_is_refused_with_advice() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        eprintln!("skipped: root writes into read-only directories");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    fs::write(&path, "old").unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o555)).unwrap();
    let err = durafile::write(&path, "new", &Options::new()).unwrap_err();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    assert!(err.to_string().contains("writable"), "{err}");
    assert_eq!(fs::read_to_string(&path).unwrap(), "old");
}

#[test]
fn dropped_or_discarded_file_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    fs::write(&path, "old").unwrap();

    let mut file = AtomicFile::new(&path, &Options::new()).unwrap();
    file.write_all(b"half of the new").unwrap();
    assert!(file.temp_path().exists());
    drop(file);
    assert_eq!(fs::read_to_string(&path).unwrap(), "old");
    assert!(temp_files(dir.path()).is_empty());

    let mut file = AtomicFile::new(&path, &Options::new()).unwrap();
    file.write_all(b"more").unwrap();
    file.discard().unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap(), "old");
    assert!(temp_files(dir.path()).is_empty());
}

#[test]
fn temp_file_is_private_until_committed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secret.json");
    let mut file = AtomicFile::new(&path, &Options::new().mode(0o644)).unwrap();
    file.write_all(b"{}").unwrap();
    assert_eq!(mode(file.temp_path()), 0o600);
    let name = file
        .temp_path()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        name.starts_with(".secret.json.") && name.ends_with(".tmp"),
        "{name}"
    );
    file.commit().unwrap();
    assert_eq!(mode(&path), 0o644);
}

#[test]
fn panic_in_update_closure_leaves_file_and_no_temp() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    fs::write(&path, "old").unwrap();
    let p = path.clone();
    let result = std::panic::catch_unwind(move || {
        durafile::update(&p, &Options::new(), |_| -> Result<Vec<u8>, Error> {
            panic!("application bug")
        })
    });
    assert!(result.is_err());
    assert_eq!(fs::read_to_string(&path).unwrap(), "old");
    assert!(temp_files(dir.path()).is_empty());
    // The lock died with the guard: the next writer gets it at once.
    durafile::write(
        &path,
        "next",
        &Options::new().lock_timeout(Default::default()),
    )
    .unwrap();
}

#[test]
fn failing_update_closure_changes_nothing_and_returns_its_error() {
    #[derive(Debug)]
    enum AppError {
        Rejected,
        Io(Error),
    }
    impl From<Error> for AppError {
        fn from(e: Error) -> Self {
            AppError::Io(e)
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    fs::write(&path, "old").unwrap();
    let before = fs::metadata(&path).unwrap();
    let result = durafile::update(&path, &Options::new(), |current| {
        assert_eq!(current, Some(&b"old"[..]));
        Err(AppError::Rejected)
    });
    assert!(matches!(result, Err(AppError::Rejected)));
    let after = fs::metadata(&path).unwrap();
    assert_eq!(
        before.ino(),
        after.ino(),
        "not even replaced by identical bytes"
    );
    assert!(temp_files(dir.path()).is_empty());
    assert!(matches!(
        durafile::update(dir.path(), &Options::new(), |_| Ok(vec![])),
        Err(AppError::Io(Error::NotRegularFile { .. }))
    ));
}

#[test]
fn large_file_streams_through() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.bin");
    let chunk: Vec<u8> = (0..=255u8).cycle().take(1 << 20).collect();
    let mut file = AtomicFile::new(&path, &Options::new().durability(Durability::None)).unwrap();
    for _ in 0..24 {
        file.write_all(&chunk).unwrap();
    }
    file.commit().unwrap();
    let mut read = Vec::new();
    fs::File::open(&path)
        .unwrap()
        .read_to_end(&mut read)
        .unwrap();
    assert_eq!(read.len(), 24 << 20);
    assert!(read.chunks(1 << 20).all(|c| c == chunk));
}

#[test]
fn read_reports_missing_file_with_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.json");
    let err = durafile::read(&path, &Options::new()).unwrap_err();
    assert_eq!(err.step(), Some(Step::Read));
    assert_eq!(err.io_error().unwrap().kind(), std::io::ErrorKind::NotFound);
    assert!(err.to_string().contains("absent.json"));
}

#[test]
#[ignore = "entry point of the child processes that other tests start"]
fn child_entry() {
    match common::role().as_deref() {
        Some("umask") => {
            let mask = std::env::var("UMASK").unwrap().parse::<u32>().unwrap();
            // SAFETY: umask(2) cannot fail; this child is single-purpose.
            unsafe { libc::umask(mask as libc::mode_t) };
            let target = std::env::var("TARGET").unwrap();
            durafile::write(target, "{}", &Options::new()).unwrap();
        }
        other => panic!("unknown role {other:?}"),
    }
}

/// A FIFO planted at a name after the read resolved it (here while the read waits for the
/// shared lock) is refused, never opened blocking: the read ends with a clear error.
#[test]
fn fifo_planted_after_resolving_does_not_block_a_read() {
    use durafile::lock::{self, LockMode};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("late.json");
    let held = lock::acquire(&path, LockMode::Exclusive, None).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reading = path.clone();
    std::thread::spawn(move || {
        let _ = tx.send(durafile::read(&reading, &Options::new().lock_reads(true)));
    });
    // The reader resolves the absent file, then waits for the lock we hold.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    drop(held);
    let result = rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the read blocks on the FIFO");
    let err = result.unwrap_err();
    assert_eq!(err.step(), Some(Step::Read), "{err}");
    assert!(err.to_string().contains("not a regular file"), "{err}");
}
