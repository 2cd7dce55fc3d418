#!/usr/bin/env bash
# Builds the Python wheel `vcsdk` (the generated bindings plus libvcsdk.so, release build) into
# target/python/dist/, with the Python in $PYTHON (default python3; it needs setuptools and wheel).
# Usage: scripts/build-python.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked --release -p vcsdk-ffi
cp target/release/libvcsdk.so bindings/python/vcsdk/libvcsdk.so
strip --strip-debug bindings/python/vcsdk/libvcsdk.so
rm -rf target/python/dist bindings/python/build bindings/python/vcsdk.egg-info
"${PYTHON:-python3}" -m pip wheel --no-deps --no-build-isolation -q -w target/python/dist bindings/python
rm -rf bindings/python/build bindings/python/vcsdk.egg-info
ls target/python/dist/*.whl
