#!/usr/bin/env bash
# The Python package: builds the wheel, installs it into a fresh virtual environment with pytest,
# and runs bindings/python/tests against the real vc-ca and vc-server (vc-testbed).
# Called by scripts/test.sh. Usage: scripts/python-tests.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked --workspace --bins
venv=target/python/venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip setuptools wheel pytest
PYTHON="$venv/bin/python" bash scripts/build-python.sh
"$venv/bin/python" -m pip install -q --force-reinstall target/python/dist/vcsdk-*.whl
# Run from outside the source tree so that the installed package is what is tested.
root=$(pwd)
(cd target/python && VCSDK_TESTBED="$root/target/debug/vc-testbed" \
  "$root/$venv/bin/python" -m pytest -q -p no:cacheprovider "$root/bindings/python/tests")
