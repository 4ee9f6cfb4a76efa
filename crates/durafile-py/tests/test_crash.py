"""Crashes and corruption: writers SIGKILLed mid-write leave one whole version; corrupt content
raises ChecksumMismatch from every reader; directory migrations with Python steps are all or
nothing, including after a kill."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import durafile
from conftest import temp_files

KILLS = int(os.environ.get("DURAFILE_CRASH_KILLS", "100"))
VERSION_SIZE = 256 << 10

WRITER = """
import sys, durafile
path = sys.argv[1]
size = int(sys.argv[2])
files = durafile.FileManager(checksum=True)
for i in range(1_000_000):
    payload = {"version": i, "fill": str(i % 10) * size}
    files.write_json_file(path, payload)
    if i == 0:
        print("ready", flush=True)
"""


def _whole_version(path: Path) -> int:
    doc = durafile.FileManager(checksum=True).read_json_file(path)  # verifies the sidecar
    assert doc["fill"] == str(doc["version"] % 10) * VERSION_SIZE, "one version, whole"
    return doc["version"]


def test_sigkill_mid_write_leaves_one_whole_version(tmp_path: Path) -> None:
    p = tmp_path / "state.json"
    rng = random.Random(12)
    orphans_seen = 0
    versions = set()
    for _ in range(KILLS):
        child = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(p), str(VERSION_SIZE)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        # The child is in its write loop from here on: kill it somewhere inside a write.
        __import__("time").sleep(rng.uniform(0, 0.03))
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert child.returncode == -signal.SIGKILL
        versions.add(_whole_version(p))
        orphans_seen += bool(temp_files(tmp_path))
        found = durafile.recover(tmp_path)
        assert found, f"recovery found damage: {found}"
        assert temp_files(tmp_path) == [], "recovery removes the dead writer's temp files"
    # The kills landed inside writes (a temp file was left), not only between them.
    assert orphans_seen > 0, "no kill interrupted a write; the test proved nothing"
    assert len(versions) > 1


def test_corruption_raises_checksum_mismatch_everywhere(tmp_path: Path) -> None:
    docs = durafile.DataHandler(tmp_path, checksum=True)
    docs.save("state", {"balance": 100})
    p = Path(docs.path_of("state"))
    corrupt = p.read_bytes().replace(b"100", b"900")
    p.write_bytes(corrupt)  # behind durafile's back, same length
    readers = [
        lambda: durafile.read(p),
        lambda: durafile.FileManager().read_json_file(p),  # verifies whenever a sidecar exists
        lambda: durafile.FileManager(checksum=True).read_json_file(p),
        lambda: docs.load("state"),
        lambda: durafile.update(p, lambda c: c),
        lambda: docs.update("state", lambda d: d),
    ]
    for reader in readers:
        with pytest.raises(durafile.ChecksumMismatch) as info:
            reader()
        e = info.value
        assert e.step == "verify" and e.path == str(p) and len(e.actual) == 64
        assert isinstance(e, durafile.Error) and isinstance(e, OSError)
        assert "restore it from a backup" in e.hint
    assert p.read_bytes() == corrupt, "nothing was rewritten on top of corrupt data"
    [result] = durafile.verify(p)
    assert result.status == "mismatch"
    # A missing sidecar, when checksums are required, is an error too.
    (tmp_path / "plain.json").write_text("{}")
    with pytest.raises(durafile.ChecksumError) as missing:
        durafile.FileManager(checksum=True).read_json_file(tmp_path / "plain.json")
    assert missing.value.kind == "missing_checksum"


def _make_docs(directory: Path, n: int) -> durafile.DataHandler:
    docs = durafile.DataHandler(directory)
    for i in range(n):
        docs.save(f"doc{i:03d}", {"n": i})
    return docs


def _snapshot(directory: Path) -> dict:
    return {name: (directory / name).read_bytes() for name in sorted(os.listdir(directory))
            if (directory / name).is_file() and not name.startswith(".")}


def test_migration_step_failure_changes_nothing(tmp_path: Path) -> None:
    docs = _make_docs(tmp_path, 20)
    before = _snapshot(tmp_path)
    migrator = durafile.Migrator()
    raised = ValueError("doc 7 is bad")
    calls = []

    @migrator.step(1)
    def scale(doc: dict) -> dict:
        calls.append(doc["n"])
        if doc["n"] == 7:
            raise raised
        return {"n": doc["n"] * 10}

    with pytest.raises(ValueError) as info:
        migrator.migrate_dir(docs)
    assert info.value is raised, "the step's exception, unchanged"
    assert 7 in calls
    assert _snapshot(tmp_path) == before, "all or nothing: no document changed"
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".durafile-migration.")
                and n != ".durafile-migration.lock"]
    # Fixed, it migrates everything.
    migrator.step(1, lambda doc: {"n": doc["n"] * 10})
    report = migrator.migrate_dir(docs)
    assert len(report.migrated) == 20
    assert all(docs.load(f"doc{i:03d}") == {"n": i * 10, "schema_version": 1} for i in range(20))


MIGRATION_CHILD = """
import os, signal, sys, durafile
directory, phase, at = sys.argv[1], sys.argv[2], int(sys.argv[3])
migrator = durafile.Migrator()
migrator.step(1, lambda doc: {"n": doc["n"] * 10, "steps": doc.get("steps", 0) + 1})
def progress(p, done, total):
    if p == phase and done == at:
        os.kill(os.getpid(), signal.SIGKILL)
migrator.migrate_dir(directory, progress=progress)
print("finished")
"""


@pytest.mark.parametrize("phase", ["stage", "apply"])
def test_migration_killed_then_rerun(tmp_path: Path, phase: str) -> None:
    docs = _make_docs(tmp_path, 40)
    before = _snapshot(tmp_path)
    child = subprocess.run(
        [sys.executable, "-c", MIGRATION_CHILD, str(tmp_path), phase, "20"],
        capture_output=True, text=True, timeout=120,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    migrated = sum(json.loads(v).get("schema_version") == 1 for v in _snapshot(tmp_path).values())
    if phase == "stage":
        assert _snapshot(tmp_path) == before, "killed while staging: nothing changed yet"
    else:
        assert 0 < migrated < 40, "killed half-way through applying"
        assert (tmp_path / ".durafile-migration.journal").exists()
    migrator = durafile.Migrator()
    migrator.step(1, lambda doc: {"n": doc["n"] * 10, "steps": doc.get("steps", 0) + 1})
    report = migrator.migrate_dir(docs)
    assert report.resumed
    for i in range(40):
        assert docs.load(f"doc{i:03d}") == {"n": i * 10, "steps": 1, "schema_version": 1}, i
    assert not (tmp_path / ".durafile-migration.journal").exists()
    assert temp_files(tmp_path) == []
