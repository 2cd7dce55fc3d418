#!/usr/bin/env bash
# What can be checked of the Swift package without a Swift toolchain: the generated sources are
# current (scripts/gen-bindings.sh --check), the C header compiles with clang as C11 and C++17, the
# module map is valid and exports the header to a module importer, and the package manifests name
# files that exist. Called by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
include=bindings/swift/Sources/vcsdkFFI/include
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '#include "vcsdkFFI.h"\nint main(void) { return (int)ffi_vcsdk_uniffi_contract_version(); }\n' >"$work/use.c"
clang -std=c11 -Wall -Wextra -Werror -fsyntax-only -I"$include" "$work/use.c"
clang -x c++ -std=c++17 -Wall -Wextra -Werror -fsyntax-only -I"$include" "$work/use.c"
printf '@import vcsdkFFI;\nint main(void) { RustBuffer b = {0}; (void)b; return (int)ffi_vcsdk_uniffi_contract_version(); }\n' >"$work/use.m"
clang -fmodules -fmodules-decluse -fmodule-map-file="$include/module.modulemap" -fsyntax-only "$work/use.m"
# Every symbol the header declares is exported by the library.
cargo build --locked -q -p vcsdk-ffi
missing=$(grep -oE '\b(uniffi_vcsdk_[a-z0-9_]+|ffi_vcsdk_[a-z0-9_]+)\(' "$include/vcsdkFFI.h" | tr -d '(' | sort -u |
  comm -23 - <(nm -D --defined-only target/debug/libvcsdk.so | awk '{print $3}' | sort -u))
if [ -n "$missing" ]; then echo "swift-checks: declared but not exported: $missing" >&2; exit 1; fi
# The manifests point at what exists.
test -f bindings/swift/Sources/VcSdk/VcSdk.swift
grep -q 'binaryTarget(name: "vcsdkFFI", path: "vcsdkFFI.xcframework")' bindings/swift/Package.swift
grep -q 'package(path: "../../bindings/swift")' samples/swift/Package.swift
grep -q '^import VcSdk$' samples/swift/Sources/StreamFile/main.swift
echo "swift-checks: header (C11, C++17), module map, exported symbols and manifests are consistent; Swift itself was not compiled here"
