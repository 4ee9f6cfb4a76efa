#!/usr/bin/env bash
# The whole test suite, Rust and Python, from a fresh machine: the README's second command.
#
# It makes its own virtual environment under target/venv and installs what the tests need
# from PyPI (requirements-test.txt: pytest for the Python package, moto's S3 server for the
# remote-storage tests), then runs `cargo test` and pytest. Nothing outside the repository
# is changed except apt packages the tests run (jq, flock) when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v jq >/dev/null || missing+=(jq)
command -v flock >/dev/null || missing+=(util-linux)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq && apt-get install -y -qq "${missing[@]}"
  else
    echo "scripts/test.sh: please install ${missing[*]} (the update tests and the demo run them)" >&2
    exit 2
  fi
fi

venv=target/venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r requirements-test.txt
# The Rust tests that need a Python (the S3 server for the remote backend) find it here.
export DURAFILE_TEST_PYTHON="$PWD/$venv/bin/python"
# maturin, the Python package's build backend, is called by name from pip's build hooks.
export PATH="$PWD/$venv/bin:$PATH"

cargo test --workspace --all-features
# The Python tests run the CLI that `cargo test` just built beside the package.
export DURAFILE_BIN="$PWD/target/debug/durafile"

# The package as users get it: a release build through maturin (the PEP 517 backend), from
# the source in this checkout, replacing whatever an earlier run installed.
"$venv/bin/python" -m pip install -q --disable-pip-version-check --no-build-isolation \
  --force-reinstall --no-deps ./crates/durafile-py
"$venv/bin/python" -m pytest -q crates/durafile-py/tests
