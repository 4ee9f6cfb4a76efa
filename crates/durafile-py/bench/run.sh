#!/usr/bin/env bash
# Regenerates the "## Python" section of BENCHMARKS.md: builds the Python package in release
# mode into target/venv (as scripts/test.sh does), installs the peers it is measured against
# (atomicwrites, filelock), and runs bench.py. Extra arguments go to bench.py.
set -euo pipefail
cd "$(dirname "$0")/../../.."

venv=target/venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
export PATH="$PWD/$venv/bin:$PATH"
"$venv/bin/python" -m pip install -q --disable-pip-version-check 'maturin>=1.9.4,<2' atomicwrites filelock
"$venv/bin/python" -m pip install -q --disable-pip-version-check --no-build-isolation \
  --force-reinstall --no-deps ./crates/durafile-py
"$venv/bin/python" crates/durafile-py/bench/bench.py --update BENCHMARKS.md "$@"
