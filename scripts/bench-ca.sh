#!/usr/bin/env bash
# Issuance benchmark: certificates per second through the vc-ca HTTPS API with durable storage.
# Usage: scripts/bench-ca.sh [--clients 8] [--count 400]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo build --locked --release -p vc-ca -p vcsdk-tests --bin vc-ca --bin ca-load
exec ./target/release/ca-load "$@"
