#!/usr/bin/env bash
# Signalling load benchmark: N clients over mutual TLS held by one vc-server, plus a steady call
# rate. Usage: scripts/bench-server.sh [--clients N] [--call-rate R] [--call-seconds S]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo build --locked --release -p vc-ca -p vc-server -p vcsdk-tests --bin vc-ca --bin vc-server --bin server-load
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
exec ./target/release/server-load "$@"
