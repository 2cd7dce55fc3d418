#!/usr/bin/env bash
# SFrame through the C ABI (tests/c/bench_sframe.c, 1200-byte frames) against the Rust-level
# figure and raw aws-lc-rs AES-GCM, measured the same way in the same run; prints the ratios.
# Usage: scripts/bench-c.sh [iterations]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo build --locked --release -p vcsdk-ffi
cargo build --locked --release -p vcsdk-tests --bin sframe-floor
mkdir -p target/c
cc -std=c11 -O2 -Iinclude tests/c/bench_sframe.c target/release/libvcsdk.a -lpthread -ldl -lm \
  -o target/c/bench_sframe
iterations="${1:-2000000}"
{ ./target/release/sframe-floor "$iterations"; ./target/c/bench_sframe "$iterations"; } | tee target/c/bench.txt
python3 - <<'PY'
rows = {}
for line in open("target/c/bench.txt"):
    kind, suite, _, enc, _, _, dec, _ = line.split()
    rows[(kind, suite)] = (float(enc), float(dec))
print(f"{'suite':10} {'op':8} {'raw ns':>8} {'rust ns':>8} {'C ns':>8} {'C/raw':>6} {'C/rust':>7}")
for suite in ("aes128gcm", "aes256gcm"):
    for i, op in enumerate(("encrypt", "decrypt")):
        r, s, c = rows[("raw", suite)][i], rows[("rust", suite)][i], rows[("c_abi", suite)][i]
        print(f"{suite:10} {op:8} {r:>8.1f} {s:>8.1f} {c:>8.1f} {c/r:>6.2f} {c/s:>7.2f}")
PY
