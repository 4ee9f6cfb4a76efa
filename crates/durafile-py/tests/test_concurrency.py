"""Concurrent writers: threads (the seed's ThreadPoolExecutor batch processor), processes and
the `durafile` CLI on the same file lose no update; and the GIL really is released while
durafile waits and writes."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import durafile
import workers
from conftest import temp_files


def test_thread_pool_8x200_updates_end_at_1600(tmp_path: Path) -> None:
    p = tmp_path / "counter.json"
    files = durafile.FileManager()
    files.write_json_file(p, {"n": 0})
    inside = 0  # threads inside fn at once: the lock must make this at most 1
    most_inside = 0
    overlap = threading.Event()  # another thread ran Python while an update was in progress
    busy = 0
    guard = threading.Lock()

    def bump(doc: dict) -> None:
        nonlocal inside, most_inside
        with guard:
            inside += 1
            most_inside = max(most_inside, inside)
        doc["n"] += 1
        with guard:
            inside -= 1

    def work(_: int) -> None:
        nonlocal busy
        for _ in range(200):
            with guard:
                if busy:
                    overlap.set()
                busy += 1
            files.update_json_file(p, bump)
            with guard:
                busy -= 1

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(work, range(8)))
    assert files.read_json_file(p) == {"n": 1600}
    assert most_inside == 1, "fn runs under the exclusive lock"
    assert overlap.is_set(), "threads were inside update_json_file at the same time"
    assert temp_files(tmp_path) == []


def test_data_handler_100_shared_keys(tmp_path: Path) -> None:
    docs = durafile.DataHandler(tmp_path / "docs", durability="consistent", checksum=True)
    keys = [f"key{i:03d}" for i in range(100)]

    def work(worker: int) -> None:
        for round_ in range(3):
            for key in keys[worker::2] + keys:  # every key, some twice, in different orders
                docs.update(key, lambda d: d.update(n=d.get("n", 0) + 1))
            docs.save(f"own{worker}", {"round": round_})

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(work, range(8)))
    expected_each = {k: 0 for k in keys}
    for worker in range(8):
        for key in keys[worker::2] + keys:
            expected_each[key] += 3
    assert {k: docs.load(k)["n"] for k in keys} == expected_each
    assert sorted(docs.list()) == sorted(keys + [f"own{w}" for w in range(8)])
    assert durafile.verify(tmp_path / "docs")


def _cli_update_command(durafile_bin: str, path: Path) -> list:
    jq = shutil.which("jq")
    if jq:
        return [durafile_bin, "update", str(path), "--json", "--", jq, "-c", ".n += 1"]
    script = "import json,sys; d=json.load(sys.stdin); d['n']+=1; print(json.dumps(d))"
    return [durafile_bin, "update", str(path), "--json", "--", sys.executable, "-c", script]


def test_processes_and_cli_update_one_file(tmp_path: Path, durafile_bin: str) -> None:
    p = tmp_path / "counter.json"
    durafile.FileManager().write_json_file(p, {"n": 0})
    command = _cli_update_command(durafile_bin, p)

    def cli_updates(times: int) -> int:
        for _ in range(times):
            subprocess.run(command, check=True, capture_output=True)
        return times

    spawn = multiprocessing.get_context("spawn")  # no fork of a process with threads
    with concurrent.futures.ThreadPoolExecutor(1) as cli, spawn.Pool(4) as pool:
        by_cli = cli.submit(cli_updates, 50)
        done = pool.starmap(workers.increment, [(str(p), 100)] * 4)
        by_cli_count = by_cli.result()
    assert sum(done) == 400 and by_cli_count == 50
    assert durafile.FileManager().read_json_file(p) == {"n": 450}
    assert temp_files(tmp_path) == []


def test_lock_wait_releases_the_gil(tmp_path: Path) -> None:
    """A writer blocked on the lock must let other Python threads run: here the very thread
    that holds the lock. If the wait held the GIL, that thread could not run to release the
    lock, and the writer would time out."""
    p = tmp_path / "f"
    result: list = []

    def writer() -> None:
        try:
            durafile.write(p, "written", timeout=10)
            result.append("ok")
        except durafile.LockTimeout as e:
            result.append(e)

    with durafile.lock(p):
        t = threading.Thread(target=writer)
        t.start()
        time.sleep(0.3)  # Python runs here while the writer waits
        assert t.is_alive() and not result, "the writer is waiting for the lock"
    t.join(15)
    assert result == ["ok"]
    assert p.read_text() == "written"


def test_write_and_fsync_release_the_gil(tmp_path: Path) -> None:
    """While one thread writes and fsyncs a large file, another keeps running Python code.
    With the GIL held for the write, the other thread would stall for the whole write."""
    data = os.urandom(1 << 20) * 48  # 48 MiB
    p = tmp_path / "big"
    spans = []
    done = threading.Event()

    go = threading.Event()

    def writer() -> None:
        go.wait()  # start once the other thread is ticking, so every write is observed
        for _ in range(3):
            start = time.perf_counter()
            durafile.write(p, data, checksum=True)
            spans.append(time.perf_counter() - start)
        done.set()

    t = threading.Thread(target=writer)
    ticks = []
    t.start()
    while not done.is_set():
        ticks.append(time.perf_counter())
        go.set()
        sum(range(200))  # a little pure-Python work per tick
    t.join()
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    # Time this thread spent stalled (gaps over 20 ms): with the GIL held by the writer it is
    # nearly all of the writes; released, only what the OS scheduler takes on a busy machine.
    stalled = sum(g for g in gaps if g > 0.02)
    assert sum(spans) > 0.1, "the writes were long enough to tell"
    assert stalled < sum(spans) / 2, (stalled, spans)
    assert len(ticks) > 1000
    assert durafile.read(p) == data
