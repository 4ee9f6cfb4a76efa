"""Round trips through every part of the API, text and bytes, compact and pretty JSON, and
interoperation with the `durafile` command on the same files."""

from __future__ import annotations

import concurrent.futures
import datetime
import decimal
import json
import os
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

import durafile
from conftest import temp_files


def test_write_read_bytes_and_text(tmp_path: Path) -> None:
    p = tmp_path / "f.bin"
    durafile.write(p, b"\x00\xffbytes")
    assert durafile.read(p) == b"\x00\xffbytes"
    durafile.write(str(p), "tëxt ✓")
    assert durafile.read(str(p)) == "tëxt ✓".encode()
    durafile.write(p, bytearray(b"ba"))
    assert p.read_bytes() == b"ba"
    with pytest.raises(TypeError, match="bytes or str"):
        durafile.write(p, 42)  # type: ignore[arg-type]
    assert p.read_bytes() == b"ba"
    assert temp_files(tmp_path) == []


def test_write_options(tmp_path: Path) -> None:
    p = tmp_path / "f"
    for level in ("full", "consistent", "none"):
        durafile.write(p, level, durability=level)
        assert p.read_text() == level
    with pytest.raises(ValueError, match="unknown durability"):
        durafile.write(p, "x", durability="fast")
    durafile.write(p, "m", mode=0o640)
    assert stat.S_IMODE(p.stat().st_mode) == 0o640
    durafile.write(p, "kept")  # an existing file keeps its mode
    assert stat.S_IMODE(p.stat().st_mode) == 0o640
    with pytest.raises(ValueError, match="timeout"):
        durafile.write(p, "x", timeout=-1)
    durafile.write(p, "sum", checksum=True)
    assert (tmp_path / "f.sha256").read_text().split()[1] == "f"
    assert durafile.read(p, checksum=True, lock=True, timeout=1) == b"sum"


def test_update_bytes_and_text(tmp_path: Path) -> None:
    p = tmp_path / "counter"
    seen = []

    def bump(current: bytes | None) -> str:
        seen.append(current)
        return str(int(current or b"0") + 1)

    assert durafile.update(p, bump) == b"1"
    assert durafile.update(p, bump, mode=0o600) == b"2"
    assert durafile.update(p, lambda c: c + b"0") == b"20"
    assert seen == [None, b"1"]
    assert durafile.read(p) == b"20"
    with pytest.raises(TypeError, match="fn returns must be bytes or str"):
        durafile.update(p, lambda c: None)  # type: ignore[arg-type, return-value]
    assert durafile.read(p) == b"20"


def test_open_text_and_binary(tmp_path: Path) -> None:
    p = tmp_path / "out.txt"
    with durafile.open(p, "w") as f:
        assert f.read_current() is None
        f.write("one\n")
        print("two", file=f)  # type: ignore[arg-type]
        f.writelines(["three\n"])
        json.dump({"four": 4}, f)  # type: ignore[arg-type]
        assert not p.exists(), "nothing is visible before the commit"
        assert Path(f.temp_path).parent == tmp_path
    assert f.closed
    assert p.read_text() == 'one\ntwo\nthree\n{"four": 4}'
    with durafile.open(p, "wb") as f:
        assert f.read_current() == p.read_bytes()
        f.write(b"\x01\x02")
    with durafile.open(p, "wb", checksum=True) as f:  # checksums on: reads need a sidecar
        f.write(b"\x01\x02")
    with durafile.open(p, "wb", checksum=True) as f:
        assert f.read_current() == b"\x01\x02"
        f.write(b"\x01\x02")
    assert p.read_bytes() == b"\x01\x02"
    assert durafile.verify(p)
    with durafile.open(p, "w", encoding="latin-1") as f:
        f.write("é")
    assert p.read_bytes() == b"\xe9"
    with pytest.raises(ValueError, match="mode"):
        durafile.open(p, "a")
    # Explicit commit and discard, without a with-block.
    f = durafile.open(p, "w")
    f.write("discarded")
    f.discard()
    assert p.read_bytes() == b"\xe9"
    f = durafile.open(p, "w")
    f.write("committed")
    f.commit()
    assert p.read_text() == "committed"
    with pytest.raises(ValueError):
        f.write("after")
    assert temp_files(tmp_path) == []


def test_open_large_streamed(tmp_path: Path) -> None:
    p = tmp_path / "big"
    chunk = os.urandom(1 << 20)
    with durafile.open(p, "wb", checksum=True) as f:
        for _ in range(20):
            f.write(chunk)
    assert p.stat().st_size == 20 << 20
    assert durafile.read(p)[: 1 << 20] == chunk


def test_lock_excludes_and_times_out(tmp_path: Path) -> None:
    p = tmp_path / "f.json"
    with durafile.lock(p) as held:
        assert held.locked
        assert held.lock_file.endswith(".f.json.lock")
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            other = pool.submit(lambda: durafile.write(p, "x", timeout=0.1))
            with pytest.raises(durafile.LockTimeout) as info:
                other.result()
            shared = pool.submit(lambda: durafile.lock(p, shared=True, timeout=0.1).acquire())
            with pytest.raises(TimeoutError):
                shared.result()
        e = info.value
        assert e.step == "lock" and e.path == str(p) and e.waited >= 0.1
        assert e.lock_file == held.lock_file and e.target_untouched
        # The same thread asking again gets an error, not a deadlock.
        with pytest.raises(durafile.Error) as again:
            durafile.write(p, "x")
        assert again.value.kind == "already_locked"
    assert not held.locked
    def second_reader() -> bool:
        with durafile.lock(p, shared=True, timeout=1) as second:
            return second.locked

    with durafile.lock(p, shared=True), concurrent.futures.ThreadPoolExecutor(1) as pool:
        assert pool.submit(second_reader).result(), "shared holders admit each other"
    durafile.write(p, "free")


def _wait_until_held_elsewhere(path: Path) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        probe = durafile.lock(path, timeout=0)
        try:
            probe.acquire()
        except durafile.LockTimeout:
            return
        probe.release()
        time.sleep(0.02)
    pytest.fail("the other process never took the lock")


def test_lock_is_the_cli_lock(tmp_path: Path, durafile_bin: str) -> None:
    p = tmp_path / "f.json"
    with durafile.lock(p):
        r = subprocess.run(
            [durafile_bin, "lock", str(p), "--timeout", "0.2", "--", "true"],
            capture_output=True,
            text=True,
        )
    assert r.returncode == 1 and "still held" in r.stderr
    r = subprocess.run([durafile_bin, "lock", str(p), "--", "true"], capture_output=True)
    assert r.returncode == 0
    # And the other way round: the CLI (and flock(1)) holding the lock keeps Python out.
    holders = [[durafile_bin, "lock", str(p), "--", "sleep", "3"]]
    if shutil.which("flock"):
        holders.append(["flock", str(tmp_path / ".f.json.lock"), "sleep", "3"])
    for holder in holders:
        # Its own process group: the command inherits the lock, so both must go.
        child = subprocess.Popen(holder, start_new_session=True)
        _wait_until_held_elsewhere(p)
        try:
            with pytest.raises(durafile.LockTimeout):
                durafile.write(p, "kept out", timeout=0.2)
        finally:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
        durafile.write(p, "free again", timeout=5)


def test_verify_report(tmp_path: Path) -> None:
    good, bad, plain = tmp_path / "good", tmp_path / "bad", tmp_path / "plain"
    durafile.write(good, "g", checksum=True)
    durafile.write(bad, "b", checksum=True)
    bad.write_text("tampered")
    plain.write_text("p")
    (tmp_path / "sub").mkdir()
    durafile.write(tmp_path / "sub" / "deep", "d", checksum=True)

    report = durafile.verify(tmp_path)
    assert not report
    assert {(Path(r.path).name, r.status) for r in report} == {("bad", "mismatch"), ("good", "ok")}
    [failed] = report.failed
    assert isinstance(failed.error, durafile.ChecksumMismatch)
    assert len(durafile.verify(tmp_path, recursive=True)) == 3
    named = durafile.verify(good, plain, tmp_path / "nope")
    assert [r.status for r in named] == ["ok", "no_checksum", "missing"]
    assert len(named.ok[0].digest) == 64
    assert durafile.verify(good)


def test_recover_report(tmp_path: Path) -> None:
    p = tmp_path / "state.json"
    durafile.write(p, "{}", checksum=True)
    orphan = tmp_path / ".state.json.df-abcdefghij.tmp"
    orphan.write_text("half")
    live = durafile.open(tmp_path / "other", "w")
    try:
        found = durafile.recover(tmp_path, dry_run=True)
        assert found.removed == [str(orphan)] and orphan.exists()
        found = durafile.recover(tmp_path)
        assert found.removed == [str(orphan)] and not orphan.exists()
        assert found.in_use == [live.temp_path]
        assert found and not found.damaged
    finally:
        live.discard()
    p.write_text("tampered")
    found = durafile.recover(tmp_path)
    assert not found
    assert isinstance(found.damaged[0], durafile.ChecksumMismatch)
    assert p.read_text() == "tampered", "listed, never changed"


class Money:
    def __init__(self, cents: int) -> None:
        self.cents = cents


class MoneyEncoder(json.JSONEncoder):
    def default(self, o: object) -> object:
        if isinstance(o, Money):
            return {"cents": o.cents}
        return super().default(o)


def test_file_manager_compact_pretty_and_encoders(tmp_path: Path) -> None:
    p = tmp_path / "doc.json"
    doc = {"name": "Ada ✓", "tags": ["a", "b"], "n": 1, "x": 1.5, "none": None}
    compact = durafile.FileManager()
    compact.write_json_file(p, doc)
    assert p.read_text(encoding="utf-8") == json.dumps(doc, separators=(",", ":"), ensure_ascii=False) + "\n"
    assert compact.read_json_file(p) == doc

    pretty = durafile.FileManager(indent=2, sort_keys=True, checksum=True)
    pretty.write_json_file(p, doc)
    assert p.read_text(encoding="utf-8") == json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert pretty.read_json_file(p) == doc

    with_default = durafile.FileManager(default=lambda o: o.isoformat())
    when = datetime.datetime(2026, 1, 2, 3, 4, 5)
    with_default.write_json_file(p, {"at": when})
    assert with_default.read_json_file(p) == {"at": "2026-01-02T03:04:05"}

    with_cls = durafile.FileManager(
        cls=MoneyEncoder, object_hook=lambda d: Money(d["cents"]) if set(d) == {"cents"} else d
    )
    with_cls.write_json_file(p, {"price": Money(250)})
    assert with_cls.read_json_file(p)["price"].cents == 250

    before = p.read_bytes()
    with pytest.raises(TypeError):
        compact.write_json_file(p, {"bad": decimal.Decimal(1)})
    assert p.read_bytes() == before

    plain = tmp_path / "plain.json"
    plain.write_text("{not json")
    with pytest.raises(json.JSONDecodeError):
        compact.read_json_file(plain)


def test_update_json_file_return_and_mutation(tmp_path: Path) -> None:
    p = tmp_path / "doc.json"
    files = durafile.FileManager(indent=4)
    assert files.update_json_file(p, lambda d: d.update(n=1)) == {"n": 1}  # mutated in place
    assert files.update_json_file(p, lambda d: {"n": d["n"] + 1}) == {"n": 2}  # returned
    assert files.update_json_file(tmp_path / "list.json", lambda d: d.append(1), default=list) == [1]
    assert files.read_json_file(p) == {"n": 2}
    assert p.read_text() == '{\n    "n": 2\n}\n'


def test_data_handler(tmp_path: Path) -> None:
    docs = durafile.DataHandler(tmp_path / "users", checksum=True, indent=2)
    assert docs.list() == []
    docs.save("alice", {"quota": 10})
    docs.save("bob", {"quota": 5})
    assert docs.load("alice") == {"quota": 10}
    assert docs.list() == ["alice", "bob"] and list(docs) == ["alice", "bob"]
    assert "alice" in docs and "carol" not in docs
    assert docs.update("bob", lambda d: d.update(quota=d["quota"] + 1)) == {"quota": 6}
    assert docs.update("carol", lambda d: d.update(quota=1)) == {"quota": 1}
    assert Path(docs.path_of("alice")) == tmp_path / "users" / "alice.json"
    assert (tmp_path / "users" / "alice.json.sha256").exists()
    docs.save_to_path(tmp_path / "elsewhere.json", [1, 2])
    assert json.loads((tmp_path / "elsewhere.json").read_text()) == [1, 2]
    assert docs.delete("alice") is True
    assert docs.delete("alice") is False
    assert not (tmp_path / "users" / "alice.json.sha256").exists()
    with pytest.raises(FileNotFoundError):
        docs.load("alice")
    for bad in ["../escape", ".hidden", "a/b", "x.lock", ""]:
        with pytest.raises(durafile.InvalidKey) as info:
            docs.save(bad, 1)
        assert isinstance(info.value, ValueError) and info.value.key == bad
    assert temp_files(tmp_path) == [] and temp_files(tmp_path / "users") == []


def test_state_manager(tmp_path: Path) -> None:
    states = durafile.StateManager(tmp_path, name="session", keep=2, checksum=True)
    assert states.load_current_state() is None and states.load() is None
    assert states.save_current_state({"tabs": []}) == 1
    assert states.save_current_state({"tabs": ["docs"]}) == 2
    assert states.save_current_state({"tabs": ["docs", "mail"]}) == 3
    assert [n for n, _ in states.history()] == [3, 2]
    assert states.load_current_state() == {"tabs": ["docs", "mail"]}
    assert states.load_generation(2) == {"tabs": ["docs"]}
    assert states.rollback(2) == 4
    assert states.load_current_state() == {"tabs": ["docs"]}
    # A damaged newest generation falls back, and says so.
    newest = Path(states.history()[0][1])
    newest.write_text('{"tabs": "corrupt"}')
    with pytest.warns(durafile.StateFallbackWarning, match="generation 4"):
        assert states.load_current_state() == {"tabs": ["docs", "mail"]}
    loaded = states.load()
    assert loaded is not None and loaded.generation == 3
    assert isinstance(loaded.skipped[0][1], durafile.ChecksumMismatch)
    with pytest.raises(durafile.InvalidKey):
        durafile.StateManager(tmp_path, name="a.b")
    with pytest.raises(ValueError):
        durafile.StateManager(tmp_path, keep=0)


def test_migrator_value_file_and_dir(tmp_path: Path) -> None:
    migrator = durafile.Migrator(indent=2)

    @migrator.step(1)
    def add_tags(doc: dict) -> None:
        doc["tags"] = []

    @migrator.step(2)
    def rename(doc: dict) -> dict:
        doc["display_name"] = doc.pop("name", "")
        return doc

    assert migrator.latest == 2
    doc, was = migrator.migrate_value({"name": "ada"})
    assert was == 0 and doc == {"tags": [], "display_name": "ada", "schema_version": 2}
    assert migrator.migrate_value({"name": "ada"}, to=1)[0] == {"name": "ada", "tags": [], "schema_version": 1}

    one = tmp_path / "one.json"
    one.write_text('{"name": "bo"}')
    assert migrator.migrate_file(one) == (0, 2)
    assert json.loads(one.read_text())["display_name"] == "bo"
    assert one.read_text().startswith("{\n  "), "indent asks the library for pretty JSON"
    assert migrator.migrate_file(one) == (2, 2)

    docs = durafile.DataHandler(tmp_path / "docs")
    for i in range(5):
        docs.save(f"u{i}", {"name": f"user{i}"})
    docs.save("current", {"display_name": "c", "tags": [], "schema_version": 2})
    dry = migrator.migrate_dir(docs, dry_run=True)
    assert len(dry.migrated) == 5 and dry.current == 1
    assert docs.load("u0") == {"name": "user0"}
    phases = []
    report = migrator.migrate_dir(tmp_path / "docs", progress=lambda *a: phases.append(a))
    assert report.to == 2 and sorted(report.migrated) == [(f"u{i}", 0) for i in range(5)]
    assert not report.conflicts and not report.resumed
    assert ("stage", 6, 6) in phases and ("apply", 5, 5) in phases
    assert docs.load("u3") == {"tags": [], "display_name": "user3", "schema_version": 2}
    assert migrator.recover_dir(docs) is None

    bad = durafile.Migrator()
    bad.step(1, lambda d: [d])  # not an object
    with pytest.raises(durafile.MigrationError, match="not an object"):
        bad.migrate_value({})


def test_batch_processor_run_and_futures(tmp_path: Path) -> None:
    stock = tmp_path / "stock.json"
    batch = durafile.BatchProcessor(workers=4, group_size=8, checksum=True)
    ops = [durafile.Merge(stock, {f"sku{i}": i}) for i in range(50)]
    ops += [durafile.Write(tmp_path / f"doc{i}.json", {"i": i}) for i in range(20)]
    ops.append(durafile.Write(tmp_path / "missing-dir" / "x.json", 1))
    progress = []
    report = batch.run(ops, progress=lambda done, total: progress.append((done, total)))
    assert report.applied == 70 and report.failed == 1 and report.cancelled == 0
    [(index, error)] = report.errors
    assert index == 70 and isinstance(error, FileNotFoundError) and error.step == "lock"
    with pytest.raises(FileNotFoundError):
        report.raise_first()
    assert progress[-1] == (71, 71)
    assert len(durafile.FileManager().read_json_file(stock)) == 50
    assert durafile.verify(tmp_path)

    # Futures: submitted batches compose with concurrent.futures.
    futures = [batch.submit([durafile.Merge(stock, {"extra": i})]) for i in range(4)]
    done, _ = concurrent.futures.wait(futures, timeout=60)
    assert len(done) == 4 and all(f.result().applied == 1 for f in futures)
    # And run() releases the GIL, so it belongs in any executor.
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        reports = list(pool.map(batch.run, [[durafile.Merge(stock, {"p": i})] for i in range(4)]))
    assert all(r.applied == 1 for r in reports)

    # Cancelling stops a batch before the documents it has not started.
    flag = durafile._native.CancelFlag()
    flag.set()
    cancelled = batch.run([durafile.Write(tmp_path / "never.json", 1)], cancel=flag)
    assert cancelled.cancelled == 1 and not (tmp_path / "never.json").exists()

    with pytest.raises(ValueError):
        batch.run([durafile.Write(stock, float("nan"))])
    with pytest.raises(TypeError):
        batch.run([("write", stock, 1)])  # type: ignore[list-item]


def test_cli_reads_what_python_writes_and_back(tmp_path: Path, durafile_bin: str) -> None:
    p = tmp_path / "state.json"
    durafile.FileManager(checksum=True).write_json_file(p, {"from": "python"})
    cat = subprocess.run([durafile_bin, "cat", "--checksum", str(p)], capture_output=True, text=True)
    assert cat.returncode == 0 and json.loads(cat.stdout) == {"from": "python"}
    subprocess.run([durafile_bin, "write", str(p)], input=b'{"from":"cli"}\n', check=True)
    assert durafile.FileManager(checksum=True).read_json_file(p) == {"from": "cli"}
    check = subprocess.run([durafile_bin, "verify", str(tmp_path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout


def test_typing_files_are_installed() -> None:
    package = Path(durafile.__file__).parent
    assert (package / "py.typed").exists()
    assert (package / "_native.pyi").exists()
    assert durafile.write.__doc__ and "atomically" in durafile.write.__doc__
    assert durafile.FileManager.update_json_file.__doc__
