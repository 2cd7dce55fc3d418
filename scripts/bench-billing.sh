#!/usr/bin/env bash
# Billing benchmark: server CPU with N concurrent billed calls being debited, and the time to export
# 100 000 call records as CSV. Usage: scripts/bench-billing.sh [--calls 1000] [--debit-interval 10]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo build --locked --release -p vc-ca -p vc-server -p vcsdk-tests --bin vc-ca --bin vc-server --bin billing-load
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
exec ./target/release/billing-load "$@"
