#!/usr/bin/env python3
"""Prints criterion's results for durafile's benches as ratios, for BENCHMARKS.md.

Run after `cargo bench -p durafile --bench replace`: reads target/criterion/*/*/new/estimates.json
and prints, per group, each benchmark's median time and its ratio to the group's reference
(the floor, the raw write, the single writes or sha256sum).
"""
import json
import pathlib
import sys

REFERENCE = ["floor", "raw_buffered_fsync", "single_writes", "sha256sum"]
root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")
groups = {}
for estimates in sorted(root.glob("**/new/estimates.json")):
    bench = estimates.parent.parent
    group = bench.parent.relative_to(root).as_posix()
    groups.setdefault(group, {})[bench.name] = json.loads(estimates.read_text())["median"]["point_estimate"]

for group, benches in groups.items():
    ref = next((benches[r] for r in REFERENCE if r in benches), None)
    print(f"{group}")
    for name, ns in sorted(benches.items(), key=lambda kv: kv[1]):
        ratio = f"{ns / ref:5.2f}x" if ref else ""
        print(f"  {name:<26}{ns / 1e6:12.3f} ms  {ratio}")
