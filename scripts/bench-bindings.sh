#!/usr/bin/env bash
# Per-frame cost of encrypting and sending a 1200-byte frame on a real call (vc-ca and vc-server on
# 127.0.0.1): through Rust (MediaSession::send, awaited, and blocked on from a foreign thread), the
# Python bindings and the Kotlin bindings (awaited and blocking), each the best of several rounds
# in the same run; prints the ratios against the Rust figures. Needs scripts/python-tests.sh and
# the Kotlin package built first (scripts/kotlin-tests.sh). Usage: scripts/bench-bindings.sh [frames] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
frames="${1:-10000}"
rounds="${2:-5}"
cargo build --locked --release --workspace --bins
cargo build --locked --release -p vcsdk-ffi
root=$(pwd)
out=target/bench-bindings.txt
{
  target/release/send-floor "$frames" "$rounds"
  (cd target && VCSDK_TESTBED="$root/target/release/vc-testbed" \
    "$root/target/python/venv/bin/python" "$root/bindings/python/bench/bench_send.py" "$frames" "$rounds")
  (cd bindings/kotlin && mvn -q -B test -Dtest=SendCost -Dvcsdk.bench=true \
    -Dvcsdk.testbed="$root/target/release/vc-testbed" -Dvcsdk.bench.frames="$frames" \
    -Dvcsdk.bench.rounds="$rounds" -Dsurefire.failIfNoSpecifiedTests=false | grep -E '^kotlin ')
} | tee "$out"
python3 - "$out" <<'PY'
import sys
rows = {}
for line in open(sys.argv[1]):
    parts = line.split()
    if len(parts) == 4 and parts[3] == "ns":
        rows[f"{parts[0]} {parts[1]}"] = float(parts[2])
rust, rust_blocking = rows["rust send"], rows["rust send_blocking"]
print(f"{'path':28} {'ns/frame':>9} {'× Rust':>7}")
for name, ns in rows.items():
    if "version()" in name:
        print(f"{name:28} {ns:>9.0f}   (one call through the binding)")
        continue
    base = rust_blocking if "blocking" in name else rust
    print(f"{name:28} {ns:>9.0f} {ns / base:>7.1f}")
PY
