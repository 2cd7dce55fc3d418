#!/usr/bin/env bash
# SFrame through the C ABI (tests/c/bench_sframe.c, 1200-byte frames) against the Rust-level
# figure and raw aws-lc-rs AES-GCM, measured the same way in the same run; prints the ratios.
# Usage: scripts/bench-c.sh [iterations per round] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo build --locked --release -p vcsdk-ffi
cargo build --locked --release -p vcsdk-tests --bin sframe-floor
mkdir -p target/c
cc -std=c11 -O2 -Iinclude tests/c/bench_sframe.c target/release/libvcsdk.a -lpthread -ldl -lm \
  -o target/c/bench_sframe
# The machine is shared: the three are measured in alternation, several rounds, and each figure is
# the best round (the least disturbed), so that the ratios compare like with like.
iterations="${1:-400000}"
rounds="${2:-7}"
: >target/c/bench.txt
for _ in $(seq 1 "$rounds"); do
  ./target/release/sframe-floor "$iterations" >>target/c/bench.txt
  ./target/c/bench_sframe "$iterations" >>target/c/bench.txt
done
python3 - "$rounds" "$iterations" <<'PY'
import sys
rows = {}
for line in open("target/c/bench.txt"):
    kind, suite, _, enc, _, _, dec, _ = line.split()
    best = rows.get((kind, suite), (float("inf"), float("inf")))
    rows[(kind, suite)] = (min(best[0], float(enc)), min(best[1], float(dec)))
print(f"best of {sys.argv[1]} rounds of {sys.argv[2]} frames of 1200 bytes")
print(f"{'suite':10} {'op':8} {'raw ns':>8} {'rust ns':>8} {'C ns':>8} {'C/raw':>6} {'C/rust':>7}")
for suite in ("aes128gcm", "aes256gcm"):
    for i, op in enumerate(("encrypt", "decrypt")):
        r, s, c = rows[("raw", suite)][i], rows[("rust", suite)][i], rows[("c_abi", suite)][i]
        print(f"{suite:10} {op:8} {r:>8.1f} {s:>8.1f} {c:>8.1f} {c/r:>6.2f} {c/s:>7.2f}")
PY
