#!/usr/bin/env bash
# Regenerates the UniFFI bindings of libvcsdk (Kotlin, Python, Swift) from the built library, with
# the pinned UniFFI version (tools/uniffi-bindgen) and ffi/uniffi.toml; `--check` fails when the
# checked-in files differ from a fresh generation instead of writing them.
# Usage: scripts/gen-bindings.sh [--check]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked -q -p vcsdk-ffi -p uniffi-bindgen
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for language in kotlin python swift; do
  ./target/debug/uniffi-bindgen generate --no-format --config ffi/uniffi.toml \
    --library target/debug/libvcsdk.so --language "$language" --out-dir "$out/$language" >/dev/null
done
# The Python generator copies bytes one at a time; see tools/bindings/patch_python.py.
python3 tools/bindings/patch_python.py "$out/python/vcsdk.py"
# Where each generated file lives in the repository.
declare -A place=(
  ["kotlin/org/vcsdk/vcsdk.kt"]="bindings/kotlin/src/main/kotlin/org/vcsdk/vcsdk.kt"
  ["python/vcsdk.py"]="bindings/python/vcsdk/vcsdk.py"
  ["swift/VcSdk.swift"]="bindings/swift/Sources/VcSdk/VcSdk.swift"
  ["swift/vcsdkFFI.h"]="bindings/swift/Sources/vcsdkFFI/include/vcsdkFFI.h"
  ["swift/vcsdkFFI.modulemap"]="bindings/swift/Sources/vcsdkFFI/include/module.modulemap"
)
status=0
for generated in "${!place[@]}"; do
  target="${place[$generated]}"
  if [ "${1:-}" = "--check" ]; then
    if ! cmp -s "$out/$generated" "$target"; then
      echo "gen-bindings: $target differs from a fresh generation; run scripts/gen-bindings.sh" >&2
      status=1
    fi
  else
    mkdir -p "$(dirname "$target")"
    cp "$out/$generated" "$target"
  fi
done
[ "${1:-}" = "--check" ] && [ "$status" = 0 ] && echo "bindings are up to date"
exit "$status"
