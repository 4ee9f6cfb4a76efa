"""Failures: an exception in the caller's code leaves the file byte-identical with no temp
file; a failure before the rename (read-only directory, full disk) leaves no partial file and
no temp, and names the step and the path; errors keep their errno for the builtin classes."""

from __future__ import annotations

import errno
import json
import os
import pickle
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Callable

import pytest

import durafile
from conftest import run_python, temp_files

NOBODY = 65534


class Boom(Exception):
    pass


def test_exception_inside_open_discards(tmp_path: Path) -> None:
    p = tmp_path / "state.json"
    durafile.write(p, b'{"v":1}\n', checksum=True)
    before = (p.read_bytes(), (tmp_path / "state.json.sha256").read_bytes())
    for mode in ("w", "wb"):
        with pytest.raises(Boom):
            with durafile.open(p, mode, checksum=True) as f:
                f.write("half a new version" if mode == "w" else b"half")
                f.flush()
                assert len(temp_files(tmp_path)) == 1, "the new content is in a temp file"
                raise Boom()
        assert (p.read_bytes(), (tmp_path / "state.json.sha256").read_bytes()) == before
        assert temp_files(tmp_path) == []
    # The lock was released: the next writer does not wait.
    durafile.write(p, "next", timeout=0)


def test_exception_inside_fn_propagates_unchanged(tmp_path: Path) -> None:
    p = tmp_path / "state.json"
    durafile.write(p, b'{"v":1}\n')
    before = p.read_bytes()
    raised = Boom("from fn")

    def fail(_: object) -> object:
        raise raised

    files = durafile.FileManager()
    docs = durafile.DataHandler(tmp_path)
    attempts = [
        lambda: durafile.update(p, fail),
        lambda: files.update_json_file(p, fail),
        lambda: docs.update("state", fail),
    ]
    for attempt in attempts:
        with pytest.raises(Boom) as info:
            attempt()
        assert info.value is raised, "the very exception, not a wrapper"
        assert p.read_bytes() == before
        assert temp_files(tmp_path) == []
    # A BaseException such as SystemExit propagates the same way.
    def leave(_: object) -> bytes:
        raise SystemExit(3)

    with pytest.raises(SystemExit):
        durafile.update(p, leave)
    assert p.read_bytes() == before
    durafile.write(p, "unlocked", timeout=0)


def test_errno_and_builtin_classes(tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    with pytest.raises(FileNotFoundError) as info:
        durafile.read(missing)
    e = info.value
    assert isinstance(e, durafile.Error) and isinstance(e, OSError)
    assert e.errno == errno.ENOENT and e.filename == str(missing) and e.path == str(missing)
    assert e.step == "read" and e.kind == "io"
    assert str(e).startswith(f"read {missing}: ") and "os error 2" in str(e)
    assert e.hint is None

    with pytest.raises(FileNotFoundError) as info:
        durafile.write(tmp_path / "no" / "dir" / "f", "x")
    assert info.value.step == "lock"
    assert info.value.hint == "the directory does not exist; create it first; the target is unchanged"
    assert info.value.target_untouched

    with pytest.raises(durafile.Error) as info:
        durafile.write(tmp_path, "x")  # a directory
    assert info.value.kind == "not_regular_file" and info.value.step == "inspect"

    with pytest.raises(FileNotFoundError):
        durafile.FileManager().read_json_file(missing)

    # Errors survive pickling (multiprocessing and ProcessPoolExecutor send them back).
    again = pickle.loads(pickle.dumps(e))
    assert type(again) is type(e) and again.step == "read" and str(again) == str(e)
    assert again.errno == errno.ENOENT


def _as_nobody(work: Callable[[], dict]) -> dict:
    """Runs ``work`` in a forked child running as uid nobody; returns the dict it made.
    Forked, not executed: the interpreter itself may not be readable by nobody."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        status = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setresgid(NOBODY, NOBODY, NOBODY)
            os.setresuid(NOBODY, NOBODY, NOBODY)
            os.write(write_end, json.dumps(work()).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        report = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert status == 0 and report, "the unprivileged child failed"
    return json.loads(report)


def _refused_write_in_child(target: Path) -> dict:
    """Writes ``target`` as uid nobody; returns what the error said."""

    def work() -> dict:
        try:
            durafile.write(target, "new content")
            return {"ok": True}
        except durafile.Error as e:
            return {"type": type(e).__name__, "step": e.step, "path": e.path,
                    "errno": e.errno, "perm": isinstance(e, PermissionError),
                    "hint": e.hint, "untouched": e.target_untouched}

    return _as_nobody(work)


def test_verify_reports_an_unreadable_directory_and_goes_on(public_dir: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to run the verifier as another uid")
    locked, later = public_dir / "a-locked", public_dir / "z-later"
    for d in (locked, later):
        d.mkdir()
        durafile.write(d / "f", "good", checksum=True)
        d.chmod(0o755)
        for f in ("f", "f.sha256"):
            (d / f).chmod(0o644)
    (later / "f").write_text("bad!")
    locked.chmod(0o000)
    try:
        found = _as_nobody(lambda: {"results": [
            [r.path, r.status, isinstance(r.error, OSError) and str(r.error)]
            for r in durafile.verify(public_dir, recursive=True)]})
    finally:
        locked.chmod(0o755)
    # The walk goes on past the unreadable directory, which is reported under the path given.
    assert found["results"] == [
        [str(public_dir), "error", f"IO error for operation on {locked}: "
         "Permission denied (os error 13)"],
        [str(later / "f"), "mismatch", found["results"][1][2]],
    ]
    assert "does not match its checksum" in found["results"][1][2]


def test_read_only_directory(public_dir: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to run the writer as another uid")
    target = public_dir / "state.json"
    durafile.write(target, "old content")  # also creates the lock file
    os.chown(target, NOBODY, NOBODY)
    os.chown(public_dir / ".state.json.lock", NOBODY, NOBODY)
    public_dir.chmod(0o555)  # nobody may not create the temp file beside the target
    found = _refused_write_in_child(target)
    if found.get("ok"):
        pytest.fail("an unprivileged writer created a file in a read-only directory")
    assert found["step"] == "create_temp" and found["path"] == str(target)
    assert found["errno"] == errno.EACCES and found["perm"] and found["untouched"]
    assert f"the directory {public_dir} must be writable by this user" in found["hint"]
    assert target.read_text() == "old content"
    assert temp_files(public_dir) == []


@pytest.fixture
def small_tmpfs(tmp_path: Path):
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or 'mount failed'})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(directory: Path) -> None:
    with open(directory / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as e:
            assert e.errno == errno.ENOSPC


def test_full_disk(small_tmpfs: Path) -> None:
    target = small_tmpfs / "state.json"
    files = durafile.FileManager(checksum=True)
    files.write_json_file(target, {"version": "old"})
    before = target.read_bytes(), (small_tmpfs / "state.json.sha256").read_bytes()
    _fill(small_tmpfs)
    big = {"blob": "x" * (512 << 10)}
    attempts = [
        lambda: files.write_json_file(target, big),
        lambda: files.update_json_file(target, lambda d: big),
        lambda: durafile.write(target, b"y" * (512 << 10)),
    ]
    for attempt in attempts:
        with pytest.raises(OSError) as info:
            attempt()
        e = info.value
        assert isinstance(e, durafile.Error), repr(e)
        assert e.errno == errno.ENOSPC and e.step == "write" and e.path == str(target)
        assert e.target_untouched and "free space" in e.hint
        assert (target.read_bytes(), (small_tmpfs / "state.json.sha256").read_bytes()) == before
        assert temp_files(small_tmpfs) == []
    with pytest.raises(durafile.Error) as info:
        with durafile.open(target, "wb") as f:
            f.write(b"z" * (512 << 10))
    assert info.value.errno == errno.ENOSPC and info.value.step == "write"
    assert target.read_bytes() == before[0] and temp_files(small_tmpfs) == []
    os.unlink(small_tmpfs / "filler")
    files.write_json_file(target, big)
    assert files.read_json_file(target) == big


def test_read_only_mount(small_tmpfs: Path) -> None:
    target = small_tmpfs / "state.json"
    durafile.write(target, "old")
    r = subprocess.run(["mount", "-o", "remount,ro", str(small_tmpfs)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot remount read-only ({r.stderr.strip()})")
    with pytest.raises(durafile.Error) as info:
        durafile.write(target, "new")
    e = info.value
    assert e.errno == errno.EROFS and e.step in ("lock", "create_temp") and e.path == str(target)
    assert "read-only" in e.hint
    assert target.read_text() == "old"


def test_invalid_json_in_fn_result_leaves_file(tmp_path: Path) -> None:
    p = tmp_path / "doc.json"
    files = durafile.FileManager()
    files.write_json_file(p, {"a": 1})
    before = p.read_bytes()
    with pytest.raises(TypeError):
        files.update_json_file(p, lambda d: {"a": object()})
    assert p.read_bytes() == before and temp_files(tmp_path) == []


def test_abandoned_writer_releases_the_lock(tmp_path: Path) -> None:
    p = tmp_path / "f"
    code = f"""
import durafile, gc
f = durafile.open({str(p)!r}, "w")
f.write("never committed")
del f
gc.collect()
durafile.write({str(p)!r}, "after", timeout=1)
print(open({str(p)!r}).read())
"""
    r = run_python(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "after"
    assert temp_files(tmp_path) == []


def test_unique_temp_per_writer(tmp_path: Path) -> None:
    # Python and the library agree on the temp names recovery looks for.
    p = tmp_path / f"s-{uuid.uuid4().hex}.json"
    with durafile.open(p, "w") as f:
        name = Path(f.temp_path).name
        assert name.startswith(f".{p.name}.df-") and name.endswith(".tmp")
        assert temp_files(tmp_path) == [name]
    assert sys.modules["durafile"] is durafile
