//! The `durafile` command against hostile or odd input: names that are not UTF-8, unreadable
//! directories, migration steps that hang or flood their output, huge batch lines, low
//! descriptor limits, signals part-way, and a lock held by the enclosing `durafile lock`.
//! Each finishes quickly with a clear error and leaves the documents byte-identical.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_durafile");

/// A uid and gid with no account: what an ordinary co-tenant looks like to the kernel.
const NOBODY: u32 = 65534;

fn command(args: &[&OsStr]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Runs `cmd` with `stdin`, failing the test if it takes longer than `limit` (a hang).
fn run_within(mut cmd: Command, stdin: &[u8], limit: Duration) -> Output {
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "durafile hung for {limit:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = feeder.join();
    child.wait_with_output().unwrap()
}

fn durafile(args: &[&str], stdin: &[u8]) -> Output {
    let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    run_within(command(&args), stdin, Duration::from_secs(60))
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Makes `cmd` run as the unprivileged `NOBODY` when the tests run as root.
fn as_nobody(cmd: &mut Command) {
    if !is_root() {
        return;
    }
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let check = |r: libc::c_int| match r {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            };
            check(libc::setgroups(0, std::ptr::null()))?;
            check(libc::setresgid(NOBODY, NOBODY, NOBODY))?;
            check(libc::setresuid(NOBODY, NOBODY, NOBODY))
        });
    }
}

/// Every file under `dir` with its content (directories as `None`), to prove nothing changed.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Option<Vec<u8>>)> {
    let mut all = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path.clone());
                all.push((path, None));
            } else {
                let content = meta.is_file().then(|| fs::read(&path).unwrap());
                all.push((path, content));
            }
        }
    }
    all.sort();
    all
}

// ---------------------------------------------------------------- verify (item 15)

#[test]
fn verify_json_reports_a_non_utf8_name_losslessly() {
    let dir = tempfile::tempdir().unwrap();
    let name = OsStr::from_bytes(b"caf\xe9-\xff.dat");
    let file = dir.path().join(name);
    let out = run_within(
        command(&[
            OsStr::new("write"),
            file.as_os_str(),
            OsStr::new("--checksum"),
        ]),
        b"x",
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    for args in [vec!["verify", "--json"], vec!["verify", "--json", "-r"]] {
        let mut all: Vec<&str> = args.clone();
        all.push(p(dir.path()));
        let out = durafile(&all, b"");
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let lines: Vec<serde_json::Value> = stdout(&out)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(lines[0]["status"], "ok");
        let bytes: Vec<u8> = lines[0]["path_bytes"]
            .as_array()
            .expect("path_bytes for a non-UTF-8 name")
            .iter()
            .map(|b| b.as_u64().unwrap() as u8)
            .collect();
        assert_eq!(bytes, file.as_os_str().as_bytes());
        assert!(lines[0]["path"].as_str().unwrap().contains('\u{fffd}'));
        assert_eq!(lines[1]["summary"]["ok"], 1);
    }
    // A mismatch on such a name is reported the same way.
    fs::write(&file, "tampered").unwrap();
    let out = durafile(&["verify", "--json", p(dir.path())], b"");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let first: serde_json::Value =
        serde_json::from_str(stdout(&out).lines().next().unwrap()).unwrap();
    assert_eq!(first["status"], "mismatch");
    assert!(first["path_bytes"].is_array());
}

#[test]
fn verify_recursive_reports_an_unreadable_directory_and_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let (locked, later) = (dir.path().join("a-locked"), dir.path().join("z-later"));
    for d in [&locked, &later] {
        fs::create_dir(d).unwrap();
        let out = durafile(&["write", p(&d.join("f")), "--checksum"], b"good");
        assert!(out.status.success(), "{}", stderr(&out));
        fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
        for f in ["f", "f.sha256"] {
            fs::set_permissions(d.join(f), fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
    fs::write(later.join("f"), "bad!").unwrap();
    let before = snapshot(dir.path());
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).unwrap();
    for json in [false, true] {
        let mut args = vec![OsStr::new("verify"), OsStr::new("-r")];
        if json {
            args.push(OsStr::new("--json"));
        }
        args.push(dir.path().as_os_str());
        let mut cmd = command(&args);
        as_nobody(&mut cmd);
        let out = run_within(cmd, b"", Duration::from_secs(30));
        let text = stdout(&out);
        assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
        assert!(text.contains("a-locked"), "{text}");
        if json {
            assert!(text.contains("\"unreadable\""), "{text}");
            assert!(text.contains("\"mismatch\""), "{text}");
            assert!(text.contains("\"unreadable_dirs\":1"), "{text}");
        } else {
            assert!(text.contains("cannot read this directory"), "{text}");
            assert!(text.contains("z-later/f: checksum mismatch"), "{text}");
            assert!(text.contains("1 unreadable director"), "{text}");
        }
    }
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(snapshot(dir.path()), before);
}
