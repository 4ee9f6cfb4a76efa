//! `durafile write|cat|update|verify s3://bucket/key` against moto's S3 server on 127.0.0.1
//! (one request at a time), configured through the environment like the AWS tools.
//!
//! With the `s3` feature each test prints `SKIPPED: <why>` and returns when there is no Python
//! with moto (`DURAFILE_TEST_PYTHON`, set by scripts/test.sh). Without the feature, the command
//! must refuse URLs instead of writing a local file named `s3:`.

use std::process::Command;
#[cfg(feature = "s3")]
use std::process::Output;
#[cfg(not(feature = "s3"))]
use std::process::Stdio;

mod common;
use common::{BIN, stderr};

#[cfg(feature = "s3")]
#[path = "../../durafile/tests/common/s3.rs"]
#[allow(dead_code)]
mod s3;

#[cfg(feature = "s3")]
fn durafile(args: &[&str], env: &[(&str, String)], stdin: &[u8]) -> Output {
    let mut cmd = common::command(args);
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    common::run_within(cmd, stdin, common::HANG)
}

#[cfg(not(feature = "s3"))]
#[test]
fn urls_are_refused_without_the_feature() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["write", "s3://bucket/k"],
        vec!["cat", "s3://bucket/k"],
        vec!["update", "s3://bucket/k", "--", "cat"],
        vec!["migrate", "s3://bucket/p", "--migrations", "."],
        vec!["state", "show", "s3://bucket/p"],
    ] {
        let out = Command::new(BIN)
            .args(&args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(stderr(&out).contains("--features s3"), "{}", stderr(&out));
    }
    let out = Command::new(BIN)
        .args(["verify", "s3://bucket/k"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("--features s3"));
    // Nothing local was created in its place.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[cfg(feature = "s3")]
use durafile::checksum;

#[cfg(feature = "s3")]
fn server() -> Option<(&'static s3::Server, String)> {
    let server = s3::Server::shared()?;
    let bucket = server.bucket();
    Some((server, bucket))
}

#[cfg(feature = "s3")]
#[test]
fn write_cat_update_verify_round_trip() {
    let Some((server, bucket)) = server() else {
        return;
    };
    let env = server.env();
    let url = format!("s3://{bucket}/app/state.json");
    let out = durafile(&["write", &url, "--json"], &env, b"{\"n\": 1}\n");
    assert!(out.status.success(), "{}", stderr(&out));
    let out = durafile(&["cat", &url, "--checksum"], &env, b"");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, b"{\"n\": 1}\n");

    let update = ["update", &url, "--json", "--", "jq", "-c", ".n += 1"];
    let out = durafile(&update, &env, b"");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(durafile(&["cat", &url], &env, b"").stdout, b"{\"n\":2}\n");

    // Invalid JSON and a failing command change nothing.
    let out = durafile(&["write", &url, "--json"], &env, b"{\"n\":");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not valid JSON"), "{}", stderr(&out));
    let out = durafile(&["update", &url, "--", "sh", "-c", "exit 3"], &env, b"");
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("is unchanged"), "{}", stderr(&out));
    assert_eq!(durafile(&["cat", &url], &env, b"").stdout, b"{\"n\":2}\n");

    let out = durafile(&["verify", &url], &env, b"");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 ok, 0 failed"));

    // Corrupted behind durafile's back, keeping its digest: cat and verify refuse it.
    let good = server.raw_get(&bucket, "app/state.json").unwrap();
    let digest = checksum::to_hex(&checksum::hash_reader(&good[..]).unwrap());
    let header = format!("x-amz-meta-durafile-sha256: {digest}\r\n");
    server.raw_put(&bucket, "app/state.json", b"{\"n\":9}\n", &header);
    let out = durafile(&["cat", &url], &env, b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(
        stderr(&out).contains("does not match its checksum"),
        "{}",
        stderr(&out)
    );
    let out = durafile(&["verify", &url], &env, b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("checksum mismatch"));
}

#[cfg(feature = "s3")]
#[test]
fn without_conditional_writes_update_refuses_and_writes_nothing() {
    let Some((server, bucket)) = server() else {
        return;
    };
    let mut env = server.env();
    env.push(("AWS_CONDITIONAL_PUT", "disabled".to_owned()));
    let url = format!("s3://{bucket}/counter.json");
    let out = durafile(&["update", &url, "--", "echo", "1"], &env, b"");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!("durafile: update {url}: ")),
        "{err}"
    );
    assert!(err.contains("AWS_CONDITIONAL_PUT"), "{err}");
    assert_eq!(server.raw_get(&bucket, "counter.json"), None);
}

/// 8 processes, each running `durafile update` 100 times: exactly 800.
#[cfg(feature = "s3")]
#[test]
fn eight_processes_times_a_hundred_updates_lose_nothing() {
    let Some((server, bucket)) = server() else {
        return;
    };
    let url = format!("s3://{bucket}/counter.json");
    // The increment in plain sh, so the test measures durafile and not jq's start-up.
    let increment = r#"IFS= read -r line; n=${line#*:}; n=${n%\}}; echo "{\"n\":$((${n:-0}+1))}""#;
    let script = format!(
        "for i in $(seq 100); do {BIN} update '{url}' --json -- sh -c '{}' || exit 1; done",
        increment.replace('\'', r"'\''")
    );
    let children: Vec<_> = (0..8)
        .map(|_| {
            Command::new("sh")
                .arg("-c")
                .arg(&script)
                .envs(server.env())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let out = durafile(&["cat", &url, "--checksum"], &server.env(), b"");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "{\"n\":800}\n");
}

/// `durafile migrate` and `durafile state` take a prefix where they take a directory.
#[cfg(feature = "s3")]
#[test]
fn migrate_and_state_on_a_prefix() {
    use std::os::unix::fs::PermissionsExt;
    let Some((server, bucket)) = server() else {
        return;
    };
    let env = server.env();
    for i in 0..3 {
        let url = format!("s3://{bucket}/users/u{i}.json");
        let doc = format!("{{\"id\":{i}}}");
        let out = durafile(&["write", &url], &env, doc.as_bytes());
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let steps = tempfile::tempdir().unwrap();
    let step = steps.path().join("0001-add-tags");
    std::fs::write(&step, "#!/bin/sh\nsed 's/}$/,\"tags\":[]}/'\n").unwrap();
    std::fs::set_permissions(&step, std::fs::Permissions::from_mode(0o755)).unwrap();
    let prefix = format!("s3://{bucket}/users");
    let migrations = steps.path().to_str().unwrap();
    let out = durafile(&["migrate", &prefix, "--migrations", migrations], &env, b"");
    assert!(out.status.success(), "{}", stderr(&out));
    for i in 0..3 {
        let out = durafile(&["cat", &format!("{prefix}/u{i}.json")], &env, b"");
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["tags"], serde_json::json!([]), "{doc}");
        assert_eq!(doc["schema_version"], 1, "{doc}");
    }
    // No state saved there yet: `state show` says so, and exits 1.
    let out = durafile(&["state", "show", &prefix], &env, b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no state named"), "{}", stderr(&out));
}
