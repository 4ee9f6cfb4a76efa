//! The `durafile` command against hostile or odd input: names that are not UTF-8, unreadable
//! directories, migration steps that hang or flood their output, huge batch lines, low
//! descriptor limits, signals part-way, and a lock held by the enclosing `durafile lock`.
//! Each finishes quickly with a clear error and leaves the documents byte-identical.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::Write;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{BIN, command, durafile, p, run_within, script, stderr, stdout};

/// A uid and gid with no account: what an ordinary co-tenant looks like to the kernel.
const NOBODY: u32 = 65534;

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
fn verify_quotes_a_name_with_a_newline_or_escape_sequence() {
    let dir = tempfile::tempdir().unwrap();
    // Another user's name that would forge a line and clear the screen if printed raw.
    let file = dir.path().join("a\nOK fake\x1b[2J");
    let out = durafile(&["write", p(&file), "--checksum"], b"x");
    assert!(out.status.success(), "{}", stderr(&out));
    fs::write(&file, "tampered").unwrap();
    let out = durafile(&["verify", p(dir.path())], b"");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let said = stdout(&out);
    assert!(!said.contains('\x1b'), "raw escape sequence: {said:?}");
    let lines: Vec<&str> = said.lines().collect();
    assert_eq!(lines.len(), 2, "one problem line and the summary: {said:?}");
    assert!(
        lines[0].contains(r#"a\nOK fake\u{1b}[2J""#),
        "name not quoted: {said:?}"
    );
}

/// The CLI's own messages (not only the library's) quote a hostile name: a failed `update`
/// command and `recover`'s summary name the file or directory without a raw newline or escape.
#[test]
fn cli_messages_quote_a_name_with_a_newline_or_escape_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let hostile = dir.path().join("d\nOK fake\x1b[2J");
    fs::create_dir(&hostile).unwrap();
    let file = hostile.join("s\nOK\x1b[31m.json");
    let out = durafile(&["write", p(&file)], b"{}");
    assert!(out.status.success(), "{}", stderr(&out));
    let out = durafile(&["update", p(&file), "--", "false"], b"");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let said = stderr(&out);
    assert!(!said.contains('\x1b'), "raw escape sequence: {said:?}");
    assert_eq!(said.lines().count(), 1, "a forged line: {said:?}");
    assert!(
        said.contains(r#"s\nOK\u{1b}[31m.json""#),
        "not quoted: {said:?}"
    );
    let out = durafile(&["recover", p(&hostile)], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    let said = stdout(&out);
    assert!(!said.contains('\x1b'), "raw escape sequence: {said:?}");
    assert!(
        said.contains(r#"d\nOK fake\u{1b}[2J""#),
        "not quoted: {said:?}"
    );
}

/// `verify` says a user's own `sha256sum` list is not durafile's, never that it is malformed.
#[test]
fn verify_calls_a_users_checksum_list_not_durafiles() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.iso");
    fs::write(&file, b"iso").unwrap();
    let list = format!("{}  a.iso\n{}  b.iso\n", "ab".repeat(32), "cd".repeat(32));
    fs::write(dir.path().join("a.iso.sha256"), &list).unwrap();
    let out = durafile(&["verify", p(&file)], b"");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(said.contains("not durafile's checksum file"), "{said}");
    assert!(said.contains("move it away"), "{said}");
    assert!(!said.contains("malformed"), "{said}");
    assert_eq!(
        fs::read(dir.path().join("a.iso.sha256")).unwrap(),
        list.as_bytes()
    );
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

// ---------------------------------------------------------------- migrate (items 8 and 13)

/// A directory of three documents and an empty steps directory beside it.
fn migration_dirs() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (docs, steps) = (dir.path().join("docs"), dir.path().join("steps"));
    fs::create_dir(&docs).unwrap();
    fs::create_dir(&steps).unwrap();
    for i in 0..3 {
        fs::write(docs.join(format!("d{i}.json")), format!("{{\"id\":{i}}}")).unwrap();
    }
    (dir, docs, steps)
}

/// The documents and whatever else is in `docs`, except the migration lock file (created by
/// the first run and never removed, by design).
fn docs_snapshot(docs: &Path) -> Vec<(PathBuf, Option<Vec<u8>>)> {
    snapshot(docs)
        .into_iter()
        .filter(|(p, _)| !p.ends_with(".durafile-migration.lock"))
        .collect()
}

/// Whether process `pid` is gone (or a zombie nobody reaped yet).
fn process_gone(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .unwrap()
            .trim_start()
            .starts_with('Z'),
    }
}

fn wait_gone(pid: u32) {
    let start = Instant::now();
    while !process_gone(pid) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "process {pid} survived"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn migrate_steps_that_hang_or_flood_fail_fast_and_change_nothing() {
    let (dir, docs, steps) = migration_dirs();
    let pid_file = dir.path().join("background.pid");
    let cases = [
        (
            "sleeps forever",
            "#!/bin/sh\ncat >/dev/null\nsleep 1000\n".to_owned(),
            Some("2"),
            "did not finish within 2s",
        ),
        (
            "leaves a background child holding its output",
            format!(
                "#!/bin/sh\nsleep 1000 &\necho $! > {}\ncat >/dev/null\n",
                p(&pid_file)
            ),
            None,
            "printed invalid JSON",
        ),
        (
            "prints forever",
            "#!/bin/sh\nyes {}\n".to_owned(),
            None,
            "printed more than 64 MiB",
        ),
        (
            "writes stderr forever",
            "#!/bin/sh\nyes >&2\n".to_owned(),
            None,
            "more than 1 MiB to standard error",
        ),
    ];
    let before = docs_snapshot(&docs);
    for (what, body, timeout, expected) in cases {
        let step = steps.join("0001-bad");
        script(&step, &body);
        let mut args = vec!["migrate", p(&docs), "--migrations", p(&steps)];
        if let Some(t) = timeout {
            args.extend(["--step-timeout", t]);
        }
        let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        let start = Instant::now();
        let out = run_within(command(&args), b"", Duration::from_secs(30));
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{what}: {err}");
        assert!(err.contains(expected), "{what}: {err}");
        assert!(
            err.contains("this migration changed no document"),
            "{what}: {err}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{what}: too slow"
        );
        assert_eq!(docs_snapshot(&docs), before, "{what}");
    }
    let pid: u32 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_gone(pid);
}

/// One of `migration_dirs`' documents, or its lock file.
fn is_migrated_doc(path: &Path) -> bool {
    let name = path.file_name().unwrap().as_bytes();
    name.starts_with(b"d") || name.starts_with(b".d")
}

#[test]
fn migrate_reports_every_json_file_it_does_not_migrate() {
    let (_dir, docs, steps) = migration_dirs();
    script(
        &steps.join("0001-tag"),
        "#!/bin/sh\njq -c '.tagged = true'\n",
    );
    let long = format!("{}.json", "k".repeat(201));
    let odd: Vec<OsString> = vec![
        "a..b.json".into(),
        "x.tmp.json".into(),
        ".hidden.json".into(),
        OsString::from_vec(b"caf\xe9.json".to_vec()),
        long.clone().into(),
    ];
    for name in &odd {
        fs::write(docs.join(name), "{\"odd\":true}").unwrap();
    }
    fs::create_dir(docs.join("folder.json")).unwrap();
    let keep: Vec<_> = docs_snapshot(&docs)
        .into_iter()
        .filter(|(p, _)| !is_migrated_doc(p))
        .collect();
    for dry_run in [true, false] {
        let mut args = vec!["migrate", p(&docs), "--migrations", p(&steps)];
        if dry_run {
            args.push("--dry-run");
        }
        let out = durafile(&args, b"");
        let text = stdout(&out);
        assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
        assert_eq!(text.matches("SKIPPED").count(), 6, "{text}");
        for needle in [
            "a..b.json",
            "x.tmp.json",
            ".hidden.json",
            "caf\\xE9.json",
            &long,
            "folder.json",
        ] {
            let line = text.lines().find(|l| l.contains(needle));
            let line = line.unwrap_or_else(|| panic!("{needle} not reported: {text}"));
            assert!(line.starts_with("SKIPPED "), "{line}");
        }
        assert!(text.contains("not a regular file"), "{text}");
        assert!(text.contains("not UTF-8"), "{text}");
    }
    let text = fs::read_to_string(docs.join("d1.json")).unwrap();
    assert!(text.contains("\"tagged\":true"), "{text}");
    let kept: Vec<_> = docs_snapshot(&docs)
        .into_iter()
        .filter(|(p, _)| !is_migrated_doc(p))
        .filter(|(p, _)| !p.to_string_lossy().contains("durafile-migration"))
        .collect();
    assert_eq!(kept, keep, "the skipped files are untouched");
}

#[test]
fn migrate_refuses_step_names_that_do_not_parse() {
    let (_dir, docs, steps) = migration_dirs();
    script(&steps.join("0001-ok"), "#!/bin/sh\ncat\n");
    script(&steps.join("README"), "not a step\n");
    let before = docs_snapshot(&docs);
    for bad in [
        "0003_c",
        "99999999999999999999",
        "99999999999999999999-huge",
        "+2-b",
        "-2-b",
        "0002-",
        "0000-zero",
    ] {
        let path = steps.join(bad);
        script(&path, "#!/bin/sh\ncat\n");
        let out = durafile(&["migrate", p(&docs), "--migrations", p(&steps)], b"");
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{bad}: {err}");
        assert!(
            err.contains(bad) && err.contains("NNNN-description"),
            "{bad}: {err}"
        );
        fs::remove_file(&path).unwrap();
        assert_eq!(docs_snapshot(&docs), before, "{bad}");
    }
    let out = durafile(&["migrate", p(&docs), "--migrations", p(&steps)], b"");
    assert!(out.status.success(), "{}", stderr(&out));
}

// ---------------------------------------------------------------- batch (items 8 and 9)

#[test]
fn batch_refuses_a_huge_line_by_number_and_applies_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.json"), dir.path().join("b.json"));
    let mut input = format!("{{\"op\":\"write\",\"path\":\"{}\",\"value\":1}}\n", p(&a));
    input.push_str(&format!(
        "{{\"op\":\"write\",\"path\":\"{}\",\"value\":\"{}\"}}\n",
        p(&b),
        "x".repeat(65 << 20)
    ));
    let out = durafile(&["batch"], input.as_bytes());
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("line 2") && err.contains("longer than 64 MiB"),
        "{err}"
    );
    assert!(err.contains("nothing was applied"), "{err}");
    assert!(snapshot(dir.path()).is_empty(), "nothing created");
}

/// `batch` under a low descriptor limit (64, and macOS's default 256): every operation is
/// applied and the summary says so; no group needs more descriptors than the process has.
#[test]
fn batch_fits_its_groups_to_the_descriptor_limit() {
    for limit in [64, 256] {
        let dir = tempfile::tempdir().unwrap();
        let docs = 300;
        let mut input = String::new();
        for i in 0..docs * 2 {
            let doc = dir.path().join(format!("d{}.json", i % docs));
            input.push_str(&format!(
                "{{\"op\":\"merge\",\"path\":\"{}\",\"patch\":{{\"k{i}\":{i}}}}}\n",
                p(&doc)
            ));
        }
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            &format!("ulimit -n {limit} && exec \"$0\" batch --checksum"),
            BIN,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let out = run_within(cmd, input.as_bytes(), Duration::from_secs(120));
        let text = stdout(&out);
        assert!(
            out.status.success(),
            "ulimit -n {limit}: {text}{}",
            stderr(&out)
        );
        assert_eq!(
            text,
            format!(
                "{} operation(s): {} applied, 0 failed\n",
                docs * 2,
                docs * 2
            ),
            "ulimit -n {limit}"
        );
        for i in 0..docs {
            let doc: serde_json::Value =
                serde_json::from_slice(&fs::read(dir.path().join(format!("d{i}.json"))).unwrap())
                    .unwrap();
            assert_eq!(doc.as_object().unwrap().len(), 2, "d{i}");
        }
    }
}

// ---------------------------------------------------------------- signals (item 11)

/// The durafile temp files in `dir`.
fn temp_files(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| durafile::is_temp_name(p.file_name().unwrap()))
        .collect()
}

fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < Duration::from_secs(20), "never: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn send(child: &Child, signal: libc::c_int) {
    // SAFETY: kill(2) touches no memory.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0);
}

fn wait_within(child: &mut Child, limit: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("durafile did not exit within {limit:?} of the signal");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn signal_during_write_removes_the_temp_file_and_exits_128_plus_signal() {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("state.json");
        fs::write(&file, "{\"old\":true}").unwrap();
        let mut child = command(&[OsStr::new("write"), file.as_os_str(), OsStr::new("--json")])
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"{\"new\": [1, 2, ").unwrap();
        stdin.flush().unwrap();
        wait_until("a temp file", || !temp_files(dir.path()).is_empty());
        // Let the written bytes reach the temp file's buffer: the signal comes mid-stream.
        std::thread::sleep(Duration::from_millis(50));
        send(&child, signal);
        let status = wait_within(&mut child, Duration::from_secs(10));
        drop(stdin);
        assert_eq!(
            (status.code(), status.signal()),
            (Some(128 + signal), None),
            "signal {signal}"
        );
        assert!(temp_files(dir.path()).is_empty(), "signal {signal}");
        assert_eq!(fs::read(&file).unwrap(), b"{\"old\":true}");
    }
}

#[test]
fn signal_during_update_stops_the_command_and_exits_128_plus_signal() {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("n.json");
        fs::write(&file, "{\"n\":1}").unwrap();
        let pid_file = dir.path().join("child.pid");
        let script = format!(
            "echo $$ > {}.part && mv {0}.part {0} && exec sleep 1000",
            p(&pid_file)
        );
        let mut child = command(&[
            OsStr::new("update"),
            file.as_os_str(),
            OsStr::new("--"),
            OsStr::new("sh"),
            OsStr::new("-c"),
            OsStr::new(&script),
        ])
        .spawn()
        .unwrap();
        wait_until("the command's pid", || pid_file.exists());
        let pid: u32 = fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        wait_until("the command sleeping", || {
            fs::read_link(format!("/proc/{pid}/exe"))
                .is_ok_and(|exe| exe.to_string_lossy().contains("sleep"))
        });
        send(&child, signal);
        let status = wait_within(&mut child, Duration::from_secs(10));
        assert_eq!(
            (status.code(), status.signal()),
            (Some(128 + signal), None),
            "signal {signal}"
        );
        wait_gone(pid);
        assert!(temp_files(dir.path()).is_empty(), "signal {signal}");
        assert_eq!(fs::read(&file).unwrap(), b"{\"n\":1}");
        fs::remove_file(&pid_file).unwrap();
    }
}

// ---------------------------------------------------------------- nested lock (item 19)

/// `durafile lock FILE -- sh -c SCRIPT`, with `$0` in SCRIPT naming durafile.
fn under_lock(file: &Path, shared: bool, script: &str) -> Output {
    let mut args = vec![OsStr::new("lock")];
    if shared {
        args.push(OsStr::new("--shared"));
    }
    args.extend([
        file.as_os_str(),
        OsStr::new("--"),
        OsStr::new("sh"),
        OsStr::new("-c"),
        OsStr::new(script),
        OsStr::new(BIN),
    ]);
    run_within(command(&args), b"", Duration::from_secs(20))
}

#[test]
fn durafile_inside_durafile_lock_writes_under_the_inherited_lock() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("n.json");
    let f = p(&file);
    let script = format!(
        "echo '{{\"n\":1}}' | \"$0\" write {f} --json && \
         \"$0\" update {f} --json -- jq -c '.n += 1' && \
         \"$0\" lock {f} -- \"$0\" update {f} --json -- jq -c '.n += 10'"
    );
    let out = under_lock(&file, false, &script);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(fs::read_to_string(&file).unwrap().trim(), "{\"n\":12}");
    // The lock is really held meanwhile: a writer that does not inherit it waits (and times
    // out); one that does writes at once.
    let script = format!(
        "env -u DURAFILE_LOCK_FD \"$0\" write {f} --timeout 0.2 < /dev/null 2> /dev/null; \
         [ $? -eq 1 ] || exit 9; echo '{{}}' | \"$0\" write {f}"
    );
    let out = under_lock(&file, false, &script);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(fs::read_to_string(&file).unwrap().trim(), "{}");
}

#[test]
fn durafile_inside_durafile_lock_fails_at_once_when_the_lock_cannot_be_used() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("n.json");
    fs::write(&file, "{\"n\":1}").unwrap();
    let f = p(&file);
    let cases = [
        (true, format!("echo 2 | \"$0\" write {f}"), "held shared"),
        (
            false,
            format!("eval \"exec $DURAFILE_LOCK_FD>&-\"; echo 2 | \"$0\" write {f}"),
            "is not open",
        ),
        (
            false,
            format!(
                "eval \"exec $DURAFILE_LOCK_FD<{}\"; echo 2 | \"$0\" write {f}",
                p(&dir.path().join(".n.json.lock"))
            ),
            "not through the inherited descriptor",
        ),
    ];
    for (shared, script, expected) in cases {
        let start = Instant::now();
        let out = under_lock(&file, shared, &script);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{script}: {err}");
        assert!(err.contains(expected), "{script}: {err}");
        assert!(err.contains("enclosing `durafile lock`"), "{script}: {err}");
        assert!(start.elapsed() < Duration::from_secs(10), "{script}");
        assert_eq!(fs::read(&file).unwrap(), b"{\"n\":1}");
        assert!(temp_files(dir.path()).is_empty());
    }
}

#[test]
fn signal_during_migrate_stops_the_step_and_changes_nothing() {
    let (dir, docs, steps) = migration_dirs();
    let pid_file = dir.path().join("step.pid");
    script(
        &steps.join("0001-slow"),
        &format!(
            "#!/bin/sh\necho $$ > {0}.part && mv {0}.part {0}\nexec sleep 1000\n",
            p(&pid_file)
        ),
    );
    let before = docs_snapshot(&docs);
    let mut child = command(&[
        OsStr::new("migrate"),
        docs.as_os_str(),
        OsStr::new("--migrations"),
        steps.as_os_str(),
    ])
    .spawn()
    .unwrap();
    wait_until("the step's pid", || pid_file.exists());
    let pid: u32 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    send(&child, libc::SIGINT);
    let status = wait_within(&mut child, Duration::from_secs(10));
    assert_eq!(
        (status.code(), status.signal()),
        (Some(128 + libc::SIGINT), None)
    );
    wait_gone(pid);
    let after: Vec<_> = docs_snapshot(&docs)
        .into_iter()
        .filter(|(p, _)| !p.to_string_lossy().contains(".durafile-migration.staging"))
        .collect();
    assert_eq!(after, before, "no document changed");
}
