#!/usr/bin/env bash
# Conference rekey benchmark: distributor CPU and bundle size per rekey on leave, per-member
# processing, and (on loopback against the real vc-ca and vc-server) the time from a leave until
# every remaining member sends on the new epoch; 10, 50 and 100 members, levels 2 and 3.
# Usage: scripts/bench-conference.sh [--members 10,50,100] [--rounds 15] [--no-loopback]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo build --locked --release -p vc-ca -p vc-server -p vcsdk-tests --bin vc-ca --bin vc-server --bin conference-load
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec ./target/release/conference-load "$@"
