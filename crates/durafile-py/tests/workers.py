"""Functions that child processes run (importable by name for multiprocessing's spawn)."""

from __future__ import annotations

import durafile


def increment(path: str, times: int) -> int:
    """Adds 1 to the counter in ``path`` ``times`` times; returns how many it did."""
    files = durafile.FileManager()
    for _ in range(times):
        files.update_json_file(path, lambda doc: doc.update(n=doc.get("n", 0) + 1))
    return times
