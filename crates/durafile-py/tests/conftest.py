"""Shared fixtures for the durafile Python tests: real files, real processes, real mounts."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator, List

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
# The helper modules that child processes import (multiprocessing's spawn, crash children).
sys.path.insert(0, str(HERE))

# `.NAME.df-XXXXXXXXXX.tmp`, the library's temp names (also for sidecars).
TEMP_NAME = re.compile(r"^\..+\.df-[A-Za-z0-9]{10}\.tmp$")


def temp_files(directory: Path) -> List[str]:
    """durafile temp files left in ``directory``."""
    return sorted(n for n in os.listdir(directory) if TEMP_NAME.match(n))


@pytest.fixture
def durafile_bin() -> str:
    """The `durafile` command built from this repository (scripts/test.sh exports
    DURAFILE_BIN after `cargo test` built it)."""
    candidates = [os.environ.get("DURAFILE_BIN"), str(REPO / "target" / "debug" / "durafile")]
    for c in candidates:
        if c and os.access(c, os.X_OK):
            return c
    pytest.skip("the durafile CLI is not built: run scripts/test.sh, or cargo build and set DURAFILE_BIN")


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A directory that an unprivileged uid can reach (pytest's tmp_path is 0700 root)."""
    d = Path(tempfile.mkdtemp(prefix="durafile-py-"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(d)], check=False)
        shutil.rmtree(d, ignore_errors=True)


def run_python(code: str, **kwargs: object) -> subprocess.CompletedProcess:
    """Runs ``code`` in a fresh interpreter (this one, so durafile is importable)."""
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, **kwargs
    )
