#!/usr/bin/env bash
# The Kotlin package: builds the jar (generated bindings + libvcsdk, release build) and runs its
# JUnit tests (real calls between Kotlin clients through vc-ca and vc-server), installs it into the
# local Maven repository, builds samples/kotlin and runs it against `vc listen` (through the
# Python test bed, so run scripts/python-tests.sh first). Called by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked --workspace --bins
cargo build --locked --release -p vcsdk-ffi
root=$(pwd)
(cd bindings/kotlin && mvn -q -B -Dvcsdk.testbed="$root/target/debug/vc-testbed" install)
grep -h "testsuite " bindings/kotlin/target/surefire-reports/*.xml | sed -E 's/.*name="([^"]*)".*tests="([0-9]+)" errors="([0-9]+)".*failures="([0-9]+)".*/kotlin-tests: \1: \2 tests, \3 errors, \4 failures/'
(cd samples/kotlin && mvn -q -B package)
venv=target/python/venv
(cd target/python && VCSDK_TESTBED="$root/target/debug/vc-testbed" \
  VCSDK_KOTLIN_SAMPLE="$root/samples/kotlin/target/vcsdk-sample.jar" \
  "$root/$venv/bin/python" -m pytest -q -p no:cacheprovider -k kotlin "$root/bindings/python/tests/test_sample.py")
