"""durafile for Python against what Python programs write today, measured in the same run.

1. One 1 KiB JSON write at durability "full": ``FileManager.write_json_file`` vs the hand
   recipe (``tempfile`` in the same directory, ``flush``, ``os.fsync``, ``os.replace``,
   directory fsync) and vs the ``atomicwrites`` package (which does the same fsyncs).
2. A shared counter updated from 8 threads: ``update_json_file`` vs ``filelock`` + the hand
   recipe.
3. The same counter updated from 4 processes.

Each contender runs in every run, interleaved, on the same disk; the report gives the median
ratio over the runs and the range. Every counter is checked to end at the exact total.

Run it with ``crates/durafile-py/bench/run.sh`` (which builds the package in release mode and
installs atomicwrites and filelock), or directly with a Python that has them:
``python crates/durafile-py/bench/bench.py [--runs N] [--update BENCHMARKS.md]``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List

import atomicwrites
import filelock

import durafile

DOC = {"user": "ada", "items": [{"sku": f"sku-{i:04d}", "qty": i, "price": i * 1.25} for i in range(16)]}
DOC["note"] = "x" * (1024 - len(json.dumps(DOC)) - len(', "note": ""'))
SIZE = len(json.dumps(DOC))  # 1 KiB as json.dumps writes it


# --- the hand recipe, as the seed's application would write it ---------------------------------


def recipe_write(path: str, obj: object) -> None:
    directory = os.path.dirname(path) or "."
    data = json.dumps(obj).encode()
    tmp = tempfile.NamedTemporaryFile(dir=directory, prefix=".tmp-", delete=False)
    try:
        with tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp.name, path)
    except BaseException:
        os.unlink(tmp.name)
        raise
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomicwrites_write(path: str, obj: object) -> None:
    with atomicwrites.atomic_write(path, mode="wb", overwrite=True) as f:
        f.write(json.dumps(obj).encode())


def recipe_increment(path: str, lock: filelock.FileLock) -> None:
    with lock:
        with open(path) as f:
            doc = json.load(f)
        doc["n"] += 1
        recipe_write(path, doc)


def durafile_increment(files: durafile.FileManager, path: str) -> None:
    files.update_json_file(path, lambda doc: doc.update(n=doc["n"] + 1))


# --- 1. single writes --------------------------------------------------------------------------


def bench_writes(directory: Path, writes: int) -> Dict[str, float]:
    """Seconds per write for each contender, interleaved in small blocks."""
    files = durafile.FileManager()
    contenders: Dict[str, Callable[[str, object], None]] = {
        "durafile": files.write_json_file,
        "recipe": recipe_write,
        "atomicwrites": atomicwrites_write,
    }
    paths = {name: str(directory / f"{name}.json") for name in contenders}
    spent = {name: 0.0 for name in contenders}
    block = 20
    for _ in range(writes // block):
        for name, write in contenders.items():
            start = time.perf_counter()
            for _ in range(block):
                write(paths[name], DOC)
            spent[name] += time.perf_counter() - start
    return {name: spent[name] / (writes // block * block) for name in contenders}


# --- 2. threads --------------------------------------------------------------------------------


def _run_threads(n: int, work: Callable[[], None]) -> float:
    barrier = threading.Barrier(n + 1)

    def worker() -> None:
        barrier.wait()
        work()

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - start


def bench_threads(directory: Path, threads: int, each: int) -> Dict[str, float]:
    """Updates per second from ``threads`` threads on one file."""
    out = {}
    path = str(directory / "threads-durafile.json")
    files = durafile.FileManager()
    files.write_json_file(path, {"n": 0})

    def durafile_work() -> None:
        for _ in range(each):
            durafile_increment(files, path)

    elapsed = _run_threads(threads, durafile_work)
    assert files.read_json_file(path)["n"] == threads * each, "durafile lost an update"
    out["durafile"] = threads * each / elapsed

    path2 = str(directory / "threads-recipe.json")
    recipe_write(path2, {"n": 0})

    def recipe_work() -> None:
        lock = filelock.FileLock(path2 + ".lock")  # one per thread, as each worker makes its own
        for _ in range(each):
            recipe_increment(path2, lock)

    elapsed = _run_threads(threads, recipe_work)
    with open(path2) as f:
        assert json.load(f)["n"] == threads * each, "filelock + recipe lost an update"
    out["recipe"] = threads * each / elapsed
    return out


# --- 3. processes ------------------------------------------------------------------------------


def _process_worker(kind: str, path: str, each: int, barrier: "multiprocessing.synchronize.Barrier") -> None:
    barrier.wait()
    if kind == "durafile":
        files = durafile.FileManager()
        for _ in range(each):
            durafile_increment(files, path)
    else:
        lock = filelock.FileLock(path + ".lock")
        for _ in range(each):
            recipe_increment(path, lock)


def bench_processes(directory: Path, processes: int, each: int) -> Dict[str, float]:
    """Updates per second from ``processes`` processes on one file."""
    ctx = multiprocessing.get_context("spawn")
    out = {}
    for kind in ("durafile", "recipe"):
        path = str(directory / f"processes-{kind}.json")
        recipe_write(path, {"n": 0})
        barrier = ctx.Barrier(processes + 1)
        procs = [ctx.Process(target=_process_worker, args=(kind, path, each, barrier)) for _ in range(processes)]
        for p in procs:
            p.start()
        barrier.wait()  # every process is started and imported before the clock starts
        start = time.perf_counter()
        for p in procs:
            p.join()
        elapsed = time.perf_counter() - start
        assert all(p.exitcode == 0 for p in procs)
        with open(path) as f:
            assert json.load(f)["n"] == processes * each, f"{kind} lost an update"
        out[kind] = processes * each / elapsed
    return out


# --- report ------------------------------------------------------------------------------------


def summary(ratios: List[float]) -> str:
    return f"{statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f})"


def machine(directory: Path) -> str:
    fs = subprocess.run(["df", "-T", str(directory)], capture_output=True, text=True).stdout.splitlines()
    fstype = fs[-1].split()[1] if len(fs) > 1 else "?"
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    shown = directory.parent
    try:
        shown = shown.resolve().relative_to(Path(__file__).resolve().parents[3])
    except ValueError:
        pass
    return (
        f"{fstype} (`{shown}`); {platform.system()} {platform.release()}, "
        f"{os.cpu_count()} CPUs ({cpu}), CPython {platform.python_version()}, durafile release "
        f"build, atomicwrites {atomicwrites.__version__}, filelock {filelock.__version__}"
    )


def measure(directory: Path, runs: int, writes: int, each: int, label: str) -> Dict[str, List[Dict[str, float]]]:
    rows: Dict[str, List[Dict[str, float]]] = {"write": [], "threads": [], "processes": []}
    for run in range(runs):
        w = bench_writes(directory, writes)
        t = bench_threads(directory, 8, each)
        p = bench_processes(directory, 4, each)
        rows["write"].append(w)
        rows["threads"].append(t)
        rows["processes"].append(p)
        print(
            f"{label} run {run + 1}: write µs durafile {w['durafile'] * 1e6:.0f} recipe {w['recipe'] * 1e6:.0f} "
            f"atomicwrites {w['atomicwrites'] * 1e6:.0f}; 8 threads upd/s durafile {t['durafile']:.0f} "
            f"recipe {t['recipe']:.0f}; 4 processes upd/s durafile {p['durafile']:.0f} recipe {p['recipe']:.0f}",
            file=sys.stderr,
        )
    return rows


def med(rows: List[Dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def ratios(rows: List[Dict[str, float]], peer: str) -> List[float]:
    return [r["durafile"] / r[peer] for r in rows]


def section(
    results: Dict[str, Dict[str, List[Dict[str, float]]]], where: Dict[str, str], args: argparse.Namespace
) -> str:
    lines = [
        "## Python",
        "",
        "The Python package (`crates/durafile-py`) against what Python programs write today, all",
        f"in the same run: {args.runs} runs; ratios are the median over the runs and (the range).",
        "Every counter is checked to end at the exact total in every run. Regenerate with",
        "",
        "```sh",
        "crates/durafile-py/bench/run.sh",
        "```",
        "",
    ]
    for label, rows in results.items():
        lines += [f"- {label}: {where[label]}"]
    lines += [
        "",
        f"### One {SIZE}-byte JSON write at `full`, time per write (durafile ÷ peer; goal ≤ 1.0)",
        "",
        "| where | durafile `write_json_file` | hand recipe | durafile ÷ recipe | `atomicwrites` | durafile ÷ atomicwrites |",
        "|---|---|---|---|---|---|",
    ]
    for label, rows in results.items():
        w = rows["write"]
        lines.append(
            f"| {label} | {med(w, 'durafile') * 1e6:.0f} µs | {med(w, 'recipe') * 1e6:.0f} µs | "
            f"{summary(ratios(w, 'recipe'))} | {med(w, 'atomicwrites') * 1e6:.0f} µs | "
            f"{summary(ratios(w, 'atomicwrites'))} |"
        )
    lines += [
        "",
        "The hand recipe is `tempfile.NamedTemporaryFile` in the same directory, `flush`,",
        "`os.fsync`, `os.replace`, directory fsync; atomicwrites does the same fsyncs.",
        "",
        "### One counter updated concurrently at `full`, updates per second (durafile ÷ peer)",
        "",
        "| where | writers | durafile `update_json_file` | `filelock` + hand recipe | durafile ÷ peer | goal |",
        "|---|---|---|---|---|---|",
    ]
    for label, rows in results.items():
        t, p = rows["threads"], rows["processes"]
        each = args.each if label == "disk" else args.each_memory
        lines.append(
            f"| {label} | 8 threads × {each} | {med(t, 'durafile'):.0f} | {med(t, 'recipe'):.0f} | "
            f"{summary(ratios(t, 'recipe'))} | ≥ 3 |"
        )
        lines.append(
            f"| {label} | 4 processes × {each} | {med(p, 'durafile'):.0f} | {med(p, 'recipe'):.0f} | "
            f"{summary(ratios(p, 'recipe'))} | ≥ 1.5 |"
        )
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--writes", type=int, default=200, help="writes per contender per run")
    parser.add_argument("--each", type=int, default=40, help="updates per thread or process per run on disk")
    parser.add_argument("--each-memory", type=int, default=400, help="the same on tmpfs")
    parser.add_argument("--dir", type=Path, default=None, help="the disk to measure (default: target/tmp)")
    parser.add_argument("--memory", type=Path, default=Path("/dev/shm"), help="a tmpfs, where fsync costs nothing")
    parser.add_argument("--update", type=Path, default=None, help="rewrite the '## Python' section of this file")
    args = parser.parse_args()

    repo = Path(__file__).resolve().parents[3]
    places = {"disk": args.dir or repo / "target" / "tmp"}
    if args.memory and args.memory.is_dir():
        places["tmpfs"] = args.memory
    results, where = {}, {}
    for label, base in places.items():
        base.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="pybench-", dir=base) as d:
            each = args.each if label == "disk" else args.each_memory
            results[label] = measure(Path(d), args.runs, args.writes, each, label)
            where[label] = machine(Path(d))
    report = section(results, where, args)
    print(report)
    if args.update:
        text = args.update.read_text()
        head, sep, rest = text.partition("\n## Python\n")
        # Hand-written notes below the generated tables (from "### Reading") are kept.
        marker = "\n### Reading"
        notes = rest[rest.index(marker):] if sep and marker in rest else ""
        args.update.write_text(head.rstrip("\n") + "\n\n" + report.rstrip("\n") + "\n" + notes)


if __name__ == "__main__":
    main()
