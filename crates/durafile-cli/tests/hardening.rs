//! The command's part of issue 10: a lock wait says whom it waits for, and `torture` keeps
//! out of directories that hold files.

use std::fs;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

mod common;
use common::BIN;

#[test]
fn a_write_that_waits_says_for_whom() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("busy.json");
    fs::write(&file, "{}").unwrap();
    let mut holder = Command::new(BIN)
        .arg("lock")
        .arg(&file)
        .args(["--", "sh", "-c", "echo ready; sleep 10"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(holder.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
    let out = Command::new(BIN)
        .arg("write")
        .arg(&file)
        .args(["--timeout", "2"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = holder.kill();
    let _ = holder.wait();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let notice = format!("durafile: waiting for the lock on {}", file.display());
    assert!(err.contains(&notice), "{err}");
    if cfg!(target_os = "linux") {
        assert!(err.contains(&format!("by pid {}", holder.id())), "{err}");
    }
    assert_eq!(fs::read_to_string(&file).unwrap(), "{}");
}

#[test]
fn torture_refuses_a_directory_with_files() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("counter"), "mine").unwrap();
    let out = Command::new(BIN)
        .args(["torture", "--seconds", "1", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("not empty"), "{err}");
    let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(names.len(), 1);
    assert_eq!(
        fs::read_to_string(dir.path().join("counter")).unwrap(),
        "mine"
    );
}
