//! The `durafile` command as a user runs it: real processes, real files, exit statuses and
//! the one-line error format.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{BIN, durafile, p, script, stderr};

/// The directory holds exactly `expected`: no temp file left, nothing else created.
fn assert_listing(dir: &Path, expected: &[&str]) {
    let mut names: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, expected);
}

#[test]
fn write_then_cat_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state.json");
    let out = durafile(&["write", p(&file), "--json"], b"{\"a\": [1, 2]}\n");
    assert!(out.status.success(), "{}", stderr(&out));
    let out = durafile(&["cat", p(&file)], b"");
    assert_eq!(out.stdout, b"{\"a\": [1, 2]}\n");
    assert_listing(dir.path(), &[".state.json.lock", "state.json"]);
}

#[test]
fn invalid_json_is_refused_and_file_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state.json");
    fs::write(&file, "{\"ok\":true}").unwrap();
    for bad in [&b"{\"a\":"[..], b"", b"{} {}", b"[1,]"] {
        let out = durafile(&["write", p(&file), "--json"], bad);
        assert_eq!(out.status.code(), Some(1), "{bad:?}");
        let err = stderr(&out);
        assert!(
            err.starts_with(&format!("durafile: write {}: ", file.display())),
            "{err}"
        );
        assert!(
            err.contains("not valid JSON") && err.contains("unchanged"),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
        assert_eq!(fs::read(&file).unwrap(), b"{\"ok\":true}");
    }
    assert_listing(dir.path(), &[".state.json.lock", "state.json"]);
}

#[test]
fn mode_and_durability_options() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    for level in ["full", "consistent", "none"] {
        let out = durafile(
            &["write", p(&file), "--mode", "640", "--durability", level],
            level.as_bytes(),
        );
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(fs::read(&file).unwrap(), level.as_bytes());
    }
    let mode = fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
    // Without --mode the mode is kept.
    durafile(&["write", p(&file)], b"x");
    assert_eq!(
        fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o640
    );
}

#[test]
fn usage_errors_exit_2_and_operation_errors_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    for args in [
        &["write", p(&file), "--durability", "sometimes"][..],
        &["write", p(&file), "--mode", "888"],
        &["lock", p(&file)],
        &["frobnicate"],
    ] {
        assert_eq!(durafile(args, b"").status.code(), Some(2), "{args:?}");
    }
    let missing = dir.path().join("no/such/dir/f");
    let out = durafile(&["write", p(&missing)], b"x");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!("durafile: lock {}: ", missing.display())),
        "{err}"
    );
    assert!(
        err.contains("os error 2") && err.contains("create it first"),
        "{err}"
    );

    let out = durafile(&["cat", p(&dir.path().join("absent"))], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).starts_with("durafile: read "));
    assert!(
        Command::new(BIN)
            .arg("--help")
            .output()
            .unwrap()
            .status
            .success()
    );
}

#[test]
fn directory_target_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = durafile(&["write", p(dir.path())], b"x");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("directory, not a regular file"));
}

#[test]
fn update_replaces_with_command_output() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("counter.json");
    for _ in 0..3 {
        let out = durafile(
            &[
                "update",
                p(&file),
                "--json",
                "--",
                "jq",
                "-c",
                "-n",
                "(input? // {n:0}) | .n += 1",
            ],
            b"",
        );
        assert!(out.status.success(), "{}", stderr(&out));
    }
    assert_eq!(fs::read_to_string(&file).unwrap(), "{\"n\":3}\n");
}

#[test]
fn failed_command_or_invalid_output_leaves_file_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state.json");
    fs::write(&file, "{\"n\":1}").unwrap();
    let cases: &[(&[&str], Option<i32>, &str)] = &[
        (&["sh", "-c", "echo '{\"n\":2}'; exit 3"], Some(3), "failed"),
        (&["sh", "-c", "echo '{\"n\":'"], Some(1), "not valid JSON"),
        (&["sh", "-c", "kill -9 $$"], Some(137), "failed"),
        (
            &["no-such-command-here"],
            Some(127),
            "run `no-such-command-here`",
        ),
    ];
    for (cmd, code, says) in cases {
        let mut args = vec!["update", p(&file), "--json", "--"];
        args.extend_from_slice(cmd);
        let out = durafile(&args, b"");
        assert_eq!(out.status.code(), *code, "{cmd:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{cmd:?}: {}", stderr(&out));
        assert_eq!(fs::read(&file).unwrap(), b"{\"n\":1}", "{cmd:?}");
    }
    assert_listing(dir.path(), &[".state.json.lock", "state.json"]);
}

#[test]
fn update_streams_content_the_command_does_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big");
    fs::write(&file, vec![b'x'; 8 << 20]).unwrap();
    let out = durafile(&["update", p(&file), "--", "echo", "small"], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(fs::read(&file).unwrap(), b"small\n");
}

/// 8 processes x 200 increments through `durafile update`, starting from no file at all.
#[test]
fn concurrent_updates_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("counter.json");
    // The increment in plain sh, so the test measures durafile and not jq's start-up.
    let increment = r#"IFS= read -r line; n=${line#*:}; n=${n%\}}; echo "{\"n\":$((${n:-0}+1))}""#;
    let script = format!(
        "for i in $(seq 200); do {BIN} update '{}' --json --durability consistent -- sh -c '{}' || exit 1; done",
        p(&file),
        increment.replace('\'', r"'\''")
    );
    let children: Vec<_> = (0..8)
        .map(|_| Command::new("sh").arg("-c").arg(&script).spawn().unwrap())
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    assert_eq!(fs::read_to_string(&file).unwrap(), "{\"n\":1600}\n");
    assert_listing(dir.path(), &[".counter.json.lock", "counter.json"]);
}

#[test]
fn lock_runs_command_with_its_status_and_excludes_writers() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    let out = durafile(&["lock", p(&file), "--", "sh", "-c", "exit 7"], b"");
    assert_eq!(out.status.code(), Some(7));

    // While `lock` holds the exclusive lock, a write with a timeout gives up.
    let mut holder = Command::new(BIN)
        .args(["lock", p(&file), "--", "sh", "-c", "echo held; sleep 2"])
        .stdout(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line, "held\n");
    let start = Instant::now();
    let out = durafile(&["write", p(&file), "--timeout", "0.2"], b"x");
    let waited = start.elapsed();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("still held elsewhere after"), "{err}");
    assert!(
        waited >= Duration::from_millis(200),
        "gave up after {waited:?}"
    );
    assert!(!file.exists());
    // A shared lock does not wait for another shared holder... but does for the exclusive one.
    let out = durafile(
        &["lock", "--shared", "--timeout", "0", p(&file), "--", "true"],
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    // SIGKILL durafile and its command (which shares the lock): the lock is free at once.
    // SAFETY: kill(2) on the process group we created.
    assert_eq!(
        unsafe { libc::kill(-(holder.id() as i32), libc::SIGKILL) },
        0
    );
    holder.wait().unwrap();
    let out = durafile(&["write", p(&file), "--timeout", "0"], b"x");
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn shared_locks_run_side_by_side() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    let inner = format!("{BIN} lock --shared --timeout 0 '{}' -- true", p(&file));
    let out = durafile(
        &["lock", "--shared", p(&file), "--", "sh", "-c", &inner],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let inner = format!("{BIN} lock --timeout 0 '{}' -- true", p(&file));
    let out = durafile(
        &["lock", "--shared", p(&file), "--", "sh", "-c", &inner],
        b"",
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "exclusive inside shared must fail"
    );
}

#[test]
fn flock_on_the_lock_file_excludes_durafile() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    let lock_file = dir.path().join(".f.lock");
    let inner = format!("{BIN} write --timeout 0 '{}' < /dev/null", p(&file));
    let out = Command::new("flock")
        .args([p(&lock_file), "sh", "-c", &inner])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "durafile must honour flock(1)");
}

#[test]
fn cat_survives_a_closed_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big");
    fs::write(&file, vec![b'y'; 4 << 20]).unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("{BIN} cat '{}' | head -c 1 >/dev/null", p(&file)))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("durafile:"),
        "{out:?}"
    );
}

#[test]
fn checksummed_write_cat_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state.json");
    let out = durafile(&["write", p(&file), "--json", "--checksum"], b"{\"n\":1}\n");
    assert!(out.status.success(), "{}", stderr(&out));
    let out = durafile(
        &["update", p(&file), "--json", "--", "jq", "-c", ".n += 1"],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let sha = Command::new("sha256sum")
        .args(["-c", "state.json.sha256"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        sha.status.success(),
        "the sidecar was kept up to date by update"
    );
    let out = durafile(&["verify", p(dir.path())], b"");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "verified 1 file(s): 1 ok, 0 failed\n"
    );

    // Corrupt it: cat refuses to print, verify reports and exits 1.
    let mut bytes = fs::read(&file).unwrap();
    bytes[2] ^= 0x20;
    fs::write(&file, &bytes).unwrap();
    let out = durafile(&["cat", p(&file)], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "corrupt data was printed");
    assert!(
        stderr(&out).contains("does not match its checksum"),
        "{}",
        stderr(&out)
    );
    let out = durafile(&["verify", "--recursive", p(dir.path())], b"");
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("state.json: checksum mismatch"), "{text}");
    assert!(
        text.ends_with("verified 1 file(s): 0 ok, 1 failed\n"),
        "{text}"
    );

    let out = durafile(&["verify", "--json", p(&file)], b"");
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["status"], "mismatch");
    assert_eq!(lines[1]["summary"]["failed"], 1);
}

#[test]
fn verify_walks_directories_and_flags_named_files_without_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("a/b");
    fs::create_dir_all(&sub).unwrap();
    for (i, d) in [dir.path(), &dir.path().join("a"), &sub].iter().enumerate() {
        let out = durafile(&["write", p(&d.join(format!("f{i}"))), "--checksum"], b"x");
        assert!(out.status.success());
    }
    fs::write(dir.path().join("unchecked"), "y").unwrap();
    let flat = durafile(&["verify", p(dir.path())], b"");
    assert!(String::from_utf8_lossy(&flat.stdout).contains("verified 1 file(s)"));
    let deep = durafile(&["verify", "-r", p(dir.path())], b"");
    assert!(String::from_utf8_lossy(&deep.stdout).contains("verified 3 file(s): 3 ok"));
    let named = durafile(&["verify", p(&dir.path().join("unchecked"))], b"");
    assert_eq!(named.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&named.stdout).contains("has no checksum file"));
    let out = durafile(
        &["cat", "--checksum", p(&dir.path().join("unchecked"))],
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty() && stderr(&out).contains("checksums are required"));
    // A path that does not exist is reported, and the others are still checked.
    let absent = dir.path().join("absent");
    let out = durafile(&["verify", p(&absent), p(&dir.path().join("f0"))], b"");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("absent: does not exist"), "{text}");
    assert!(
        text.contains("verified 2 file(s): 1 ok, 1 failed"),
        "{text}"
    );
    // Deleting the data but not its sidecar is a problem too, and recover keeps the evidence.
    fs::remove_file(sub.join("f2")).unwrap();
    let out = durafile(&["verify", "-r", p(dir.path())], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("missing, but its checksum file exists"));
    let out = durafile(&["recover", p(&sub)], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("MISSING"));
    assert!(sub.join("f2.sha256").exists());
}

#[test]
fn update_reports_its_own_failure_not_the_commands_sigpipe() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.json");
    fs::write(&file, "{}").unwrap();
    // `yes` writes forever; durafile stops reading at the first invalid byte.
    let out = durafile(&["update", p(&file), "--json", "--", "yes", "x"], b"");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("not valid JSON"), "{}", stderr(&out));
    assert_eq!(fs::read(&file).unwrap(), b"{}");
}

#[test]
fn the_command_under_lock_keeps_the_lock_if_durafile_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    let mut holder = Command::new(BIN)
        .args(["lock", p(&file), "--", "sh", "-c", "echo held; sleep 3"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    holder.kill().unwrap();
    holder.wait().unwrap();
    // durafile is dead; its `sleep` still runs and still holds the lock.
    let out = durafile(&["write", p(&file), "--timeout", "0.3"], b"x");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("still held elsewhere"));
}

#[test]
fn recover_dry_run_changes_nothing_and_real_run_repairs() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.json");
    durafile(&["write", p(&file), "--checksum"], b"{}");
    // A dead writer's temp file, made by a child that is SIGKILLed mid-write.
    let mut child = Command::new(BIN)
        .args(["write", p(&file)])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.as_mut().unwrap().write_all(b"partial").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    let temps = || {
        fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".tmp")
            })
            .count()
    };
    assert_eq!(temps(), 1);
    let out = durafile(&["recover", "--dry-run", p(dir.path())], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("would remove orphan temp file"));
    assert_eq!(temps(), 1);
    let out = durafile(&["recover", p(dir.path())], b"");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("removed orphan temp file"));
    assert_eq!(temps(), 0);
    assert_eq!(fs::read(&file).unwrap(), b"{}");

    fs::write(&file, b"{\"evil\":1}").unwrap();
    let out = durafile(&["recover", p(dir.path())], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("DAMAGED"));
    assert_eq!(fs::read(&file).unwrap(), b"{\"evil\":1}");
}

#[test]
fn state_show_history_and_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let d = p(dir.path());
    let out = durafile(&["state", "show", d], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no state named \"state\""),
        "{}",
        stderr(&out)
    );

    // Three generations written the way StateManager writes them, checksummed.
    for n in 1..=3 {
        let file = dir.path().join(format!("state.{n}.json"));
        let out = durafile(
            &["write", p(&file), "--checksum"],
            format!("{{\"n\":{n}}}").as_bytes(),
        );
        assert!(out.status.success());
    }
    fs::write(dir.path().join("state.3.json"), "{\"n\":33}").unwrap();

    let out = durafile(&["state", "show", d], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["n"], 2);
    let err = stderr(&out);
    assert!(
        err.contains("skipping damaged generation 3") && err.contains("showing generation 2"),
        "{err}"
    );

    let out = durafile(&["state", "history", d], b"");
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0].trim_start().starts_with("3 ") && lines[0].contains("DAMAGED"),
        "{text}"
    );
    assert!(
        lines[1].ends_with("ok") && lines[2].ends_with("ok"),
        "{text}"
    );

    let out = durafile(&["state", "rollback", d, "1"], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "restored generation 1 as generation 4\n"
    );
    let out = durafile(&["state", "show", d], b"");
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["n"], 1);
    assert!(
        dir.path().join("state.4.json.sha256").exists(),
        "the copy keeps its checksum"
    );

    let out = durafile(&["state", "rollback", d, "3"], b"");
    assert_eq!(
        out.status.code(),
        Some(1),
        "a damaged generation is not restored"
    );
}

#[test]
fn migrate_with_jq_steps_dry_run_then_real_then_failing_step() {
    let dir = tempfile::tempdir().unwrap();
    let docs = dir.path().join("docs");
    let steps = dir.path().join("steps");
    fs::create_dir_all(&docs).unwrap();
    fs::create_dir_all(&steps).unwrap();
    for i in 0..20 {
        fs::write(
            docs.join(format!("u{i}.json")),
            format!("{{\"id\":{i},\"name\":\"n{i}\"}}"),
        )
        .unwrap();
    }
    script(
        &steps.join("0001-add-tags"),
        "#!/usr/bin/env -S jq -f\n.tags = []\n",
    );
    script(
        &steps.join("0002-owner"),
        "#!/usr/bin/env -S jq -f\n.owner = {name: .name} | del(.name)\n",
    );
    let before: Vec<_> = (0..20)
        .map(|i| fs::read(docs.join(format!("u{i}.json"))).unwrap())
        .collect();

    let out = durafile(
        &["migrate", p(&docs), "--migrations", p(&steps), "--dry-run"],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("would migrate u7 from version 0 to 2"),
        "{text}"
    );
    assert!(
        text.contains("20 document(s) to migrate to version 2"),
        "{text}"
    );
    let after: Vec<_> = (0..20)
        .map(|i| fs::read(docs.join(format!("u{i}.json"))).unwrap())
        .collect();
    assert_eq!(before, after, "a dry run writes nothing");

    let out = durafile(
        &["migrate", p(&docs), "--migrations", p(&steps), "--to", "1"],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = durafile(&["migrate", p(&docs), "--migrations", p(&steps)], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("migrated 20 document(s) to version 2"));
    let doc: serde_json::Value =
        serde_json::from_slice(&fs::read(docs.join("u3.json")).unwrap()).unwrap();
    assert_eq!(
        doc,
        serde_json::json!({"id": 3, "tags": [], "owner": {"name": "n3"}, "schema_version": 2})
    );

    // A step that fails on one document: none changes.
    script(
        &steps.join("0003-picky"),
        "#!/bin/sh\njq -e 'if .id == 13 then error(\"no thirteen\") else .v3 = true end'\n",
    );
    let before: Vec<_> = (0..20)
        .map(|i| fs::read(docs.join(format!("u{i}.json"))).unwrap())
        .collect();
    let out = durafile(&["migrate", p(&docs), "--migrations", p(&steps)], b"");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("u13.json") && err.contains("step to version 3 failed"),
        "{err}"
    );
    assert!(err.contains("this migration changed no document"), "{err}");
    let after: Vec<_> = (0..20)
        .map(|i| fs::read(docs.join(format!("u{i}.json"))).unwrap())
        .collect();
    assert_eq!(before, after);
}

#[test]
fn batch_applies_lines_and_reports_malformed_ones_by_number() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.json");
    let b = dir.path().join("b.json");
    let mut input = String::new();
    for i in 0..200 {
        input.push_str(&format!(
            "{{\"op\":\"merge\",\"path\":\"{}\",\"patch\":{{\"k{i}\":{i}}}}}\n",
            p(if i % 2 == 0 { &a } else { &b })
        ));
    }
    input.push_str("{\"op\":\"delete\",\"path\":\"x\"}\n");
    input.push_str(&format!("{{\"op\":\"write\",\"path\":\"{}\"}}\n", p(&a)));
    input.push('\n');
    input.push_str(&format!(
        "{{\"op\":\"write\",\"path\":\"{}\",\"value\":{{\"fresh\":1}}}}\n",
        p(&b)
    ));
    let out = durafile(&["batch", "--jobs", "4", "--checksum"], input.as_bytes());
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("line 201: malformed operation, nothing applied"),
        "{text}"
    );
    assert!(text.contains("line 202: malformed operation"), "{text}");
    assert!(
        text.ends_with("203 operation(s): 201 applied, 2 failed\n"),
        "{text}"
    );
    let a_doc: serde_json::Value = serde_json::from_slice(&fs::read(&a).unwrap()).unwrap();
    assert_eq!(a_doc.as_object().unwrap().len(), 100);
    let b_doc: serde_json::Value = serde_json::from_slice(&fs::read(&b).unwrap()).unwrap();
    assert_eq!(
        b_doc,
        serde_json::json!({"fresh": 1}),
        "the write came last for b"
    );
    assert!(durafile(&["verify", p(dir.path())], b"").status.success());
}

#[test]
fn migrate_steps_may_be_chatty_but_not_ambiguous() {
    let dir = tempfile::tempdir().unwrap();
    let docs = dir.path().join("docs");
    let steps = dir.path().join("steps");
    fs::create_dir_all(&docs).unwrap();
    fs::create_dir_all(&steps).unwrap();
    fs::write(docs.join("a.json"), "{}").unwrap();
    // 200 KB on stderr: more than a pipe holds.
    script(
        &steps.join("0001-chatty"),
        "#!/bin/sh\nhead -c 200000 /dev/zero | tr '\\0' x >&2\njq -c '.chatty = true'\n",
    );
    let out = durafile(&["migrate", p(&docs), "--migrations", p(&steps)], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: serde_json::Value =
        serde_json::from_slice(&fs::read(docs.join("a.json")).unwrap()).unwrap();
    assert_eq!(doc["chatty"], true);

    script(&steps.join("2-one"), "#!/bin/sh\ncat\n");
    script(&steps.join("0002-other"), "#!/bin/sh\ncat\n");
    let out = durafile(&["migrate", p(&docs), "--migrations", p(&steps)], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("are both step 2"), "{}", stderr(&out));
}

#[test]
fn torture_reports_no_loss_on_this_filesystem() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("torture");
    let out = durafile(
        &[
            "torture",
            "--seconds",
            "2",
            "--processes",
            "4",
            "--dir",
            p(&work),
        ],
        b"",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    let value = |name: &str| -> u64 {
        let line = text
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{text}"));
        line[name.len()..].trim().parse().unwrap()
    };
    assert!(
        value("rounds") > 0 && value("kills") >= 4 * value("rounds"),
        "{text}"
    );
    assert!(
        value("writes acknowledged") > 0 && value("updates acknowledged") > 0,
        "{text}"
    );
    assert_eq!(value("corrupt files"), 0);
    assert_eq!(value("lost updates"), 0);
    assert_eq!(value("false checksum alarms"), 0);
    assert!(text.contains("  full") && text.contains(" ms"), "{text}");
    assert!(work.exists(), "a --dir given by the user is left in place");
}
