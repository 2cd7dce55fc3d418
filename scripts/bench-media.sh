#!/usr/bin/env bash
# Media benchmark: packets per second through two SDK media sessions over loopback UDP against a
# plain UDP loop of the same sizes (same run), and 9 Mbit/s video streams per core.
# Usage: scripts/bench-media.sh [--packets 200000] [--window 256]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo build --locked --release -p vcsdk-tests --bin media-load
exec ./target/release/media-load "$@"
