//! A real full filesystem: a 2 MiB tmpfs mounted for the test (root only; skipped with the
//! reason otherwise). Writing more than fits fails with ENOSPC at a named step, leaves the
//! original byte-for-byte, frees the space the temp file took, and names no temp file after.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use durafile::{AtomicFile, Options, Step};

use common::{names, temp_files};

struct Tmpfs<'a>(&'a Path);

impl<'a> Tmpfs<'a> {
    fn mount(at: &'a Path) -> Result<Tmpfs<'a>, String> {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=2m,mode=0755", "durafile-test"])
            .arg(at)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if out.status.success() {
            Ok(Tmpfs(at))
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }
}

impl Drop for Tmpfs<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0).status();
    }
}

#[test]
fn write_that_does_not_fit_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let _fs = match Tmpfs::mount(dir.path()) {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!("skipped: cannot mount a small tmpfs here ({why})");
            return;
        }
    };
    let path = dir.path().join("state.json");
    let original = vec![b'o'; 600 * 1024];
    durafile::write(&path, &original, &Options::new()).unwrap();

    // 1.8 MiB does not fit beside the 600 KiB original in 2 MiB.
    let err = durafile::write(&path, vec![b'n'; 1800 * 1024], &Options::new()).unwrap_err();
    assert_eq!(err.step(), Some(Step::Write), "{err}");
    assert_eq!(err.io_error().unwrap().raw_os_error(), Some(libc::ENOSPC));
    assert_eq!(err.path(), path);
    let msg = err.to_string();
    assert!(
        msg.contains("free space") && msg.contains("unchanged"),
        "{msg}"
    );
    assert!(fs::read(&path).unwrap() == original, "original changed");
    assert!(temp_files(dir.path()).is_empty());

    // The same through a stream whose caller ignores the write errors.
    let mut file = AtomicFile::new(&path, &Options::new()).unwrap();
    for _ in 0..30 {
        let _ = std::io::Write::write_all(&mut file, &[b's'; 64 * 1024]);
    }
    assert_eq!(file.commit().unwrap_err().step(), Some(Step::Write));
    assert!(fs::read(&path).unwrap() == original, "original changed");

    // The failed temp files gave their space back: a write that fits succeeds.
    durafile::write(&path, vec![b'f'; 1200 * 1024], &Options::new()).unwrap();
    assert_eq!(fs::read(&path).unwrap().len(), 1200 * 1024);
    assert_eq!(names(dir.path()), [".state.json.lock", "state.json"]);
}
