#!/usr/bin/env bash
# The C side of libvcsdk: the checked-in header must be what the ffi crate generates, the library
# must export only vc_* symbols, and the C tests must pass under AddressSanitizer and
# UndefinedBehaviorSanitizer (leak detection on) and under valgrind, and an installed copy must
# build with pkg-config and with CMake find_package(vcsdk). Called by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

cargo run --locked -q -p gen-header -- --check
cargo build --locked -p vcsdk-ffi
# The C programs below run against the real vc-ca and vc-server (tests/tests/c_abi.rs).
cargo build --locked --workspace --bins
lib=target/debug
out=target/c
mkdir -p "$out"

# Only the C interface and the UniFFI scaffolding (uniffi_vcsdk_*, ffi_vcsdk_*, UNIFFI_META_*) are
# exported.
scaffolding='^(uniffi_vcsdk_|ffi_vcsdk_|UNIFFI_META_)'
extra=$(nm -D --defined-only "$lib/libvcsdk.so" | awk '{print $3}' | grep -Ev "^vc_|$scaffolding" || true)
if [ -n "$extra" ]; then
  echo "c-tests: libvcsdk.so exports symbols outside vc_* and the UniFFI scaffolding:" >&2
  echo "$extra" >&2
  exit 1
fi
echo "c-tests: libvcsdk.so exports $(nm -D --defined-only "$lib/libvcsdk.so" | grep -c ' vc_') vc_* symbols," \
  "$(nm -D --defined-only "$lib/libvcsdk.so" | awk '{print $3}' | grep -cE "$scaffolding") of the UniFFI scaffolding, nothing else"

for test in tests/c/*_test.c; do
  name=$(basename "$test" .c)
  cc -std=c11 -Wall -Wextra -Werror -g -O1 -fno-omit-frame-pointer \
    -fsanitize=address,undefined -fno-sanitize-recover=all \
    -Iinclude "$test" "$lib/libvcsdk.a" -lpthread -ldl -lm -o "$out/$name"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 "$out/$name"
  # And under valgrind (no sanitizer in that build): no invalid access, no leak.
  cc -std=c11 -Wall -Wextra -Werror -g -O1 -Iinclude "$test" "$lib/libvcsdk.a" -lpthread -ldl -lm \
    -o "$out/$name-vg"
  valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect \
    "$out/$name-vg"
done

# Two C clients calling each other, three in a conference, one connected and freed many times, and
# the C sample (twice: against itself and against the Rust `vc listen`), against the real vc-ca and
# vc-server: under AddressSanitizer, then valgrind.
asan="-std=c11 -Wall -Wextra -Werror -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all"
plain="-std=c11 -Wall -Wextra -Werror -g -O1"
# shellcheck disable=SC2086
cc $asan -Iinclude tests/c/calls.c "$lib/libvcsdk.a" -lpthread -ldl -lm -o "$out/calls"
# shellcheck disable=SC2086
cc $asan -Iinclude tests/c/conference.c "$lib/libvcsdk.a" -lpthread -ldl -lm -o "$out/conference"
# shellcheck disable=SC2086
cc $plain -Iinclude tests/c/conference.c "$lib/libvcsdk.a" -lpthread -ldl -lm -o "$out/conference-vg"
# shellcheck disable=SC2086
cc $asan -Iinclude samples/c/vc_sample.c samples/c/sha256.c "$lib/libvcsdk.a" -lpthread -ldl -lm \
  -o "$out/vc_sample"
# shellcheck disable=SC2086
cc $plain -Iinclude tests/c/calls.c "$lib/libvcsdk.a" -lpthread -ldl -lm -o "$out/calls-vg"
# Connect/free cycles and the library's shutdown: with AddressSanitizer, plain (the only build
# whose heap can be measured) and under valgrind.
# shellcheck disable=SC2086
cc $asan -Iinclude tests/c/lifecycle.c "$lib/libvcsdk.a" -lpthread -ldl -lm -o "$out/lifecycle"
# shellcheck disable=SC2086
cc $plain -Iinclude tests/c/lifecycle.c "$lib/libvcsdk.a" -lpthread -ldl -lm -o "$out/lifecycle-vg"
# shellcheck disable=SC2086
cc $plain -Iinclude samples/c/vc_sample.c samples/c/sha256.c "$lib/libvcsdk.a" -lpthread -ldl -lm \
  -o "$out/vc_sample-vg"
VCSDK_C_CALLS="$(pwd)/$out/calls" VCSDK_C_SAMPLE="$(pwd)/$out/vc_sample" \
  VCSDK_C_CONFERENCE="$(pwd)/$out/conference" \
  VCSDK_C_LIFECYCLE="$(pwd)/$out/lifecycle" VCSDK_C_LIFECYCLE_PLAIN="$(pwd)/$out/lifecycle-vg" \
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  cargo test --locked -q -p vcsdk-tests --test c_abi -- --ignored --test-threads 1
VCSDK_C_CALLS="$(pwd)/$out/calls-vg" VCSDK_C_SAMPLE="$(pwd)/$out/vc_sample-vg" \
  VCSDK_C_CONFERENCE="$(pwd)/$out/conference-vg" VCSDK_C_LIFECYCLE="$(pwd)/$out/lifecycle-vg" \
  VCSDK_C_RUNNER="valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect" \
  cargo test --locked -q -p vcsdk-tests --test c_abi -- --ignored --test-threads 1

# Installation: pkg-config and CMake consumers build and run against a fresh install.
prefix="$(pwd)/$out/prefix"
rm -rf "$prefix"
bash scripts/install-c.sh "$prefix" --debug >/dev/null
PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --exists vcsdk
cc tests/c/cmake-consumer/main.c $(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --cflags vcsdk) \
  $(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --libs vcsdk) \
  -Wl,-rpath,"$prefix/lib" -o "$out/consumer-pkgconfig"
"$out/consumer-pkgconfig"
rm -rf "$out/cmake-build"
cmake -S tests/c/cmake-consumer -B "$out/cmake-build" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$out/cmake-build" >/dev/null
"$out/cmake-build/consumer"
# The sample builds from an install with both of its build files.
rm -rf "$out/sample-cmake"
cmake -S samples/c -B "$out/sample-cmake" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$out/sample-cmake" >/dev/null
"$out/sample-cmake/vc_sample" 2>/dev/null && exit 1 # no arguments: usage, status 2
PKG_CONFIG_PATH="$prefix/lib/pkgconfig" make -s -C samples/c -B vc_sample
rm -f samples/c/vc_sample
echo "c-tests: C calls, the C sample, installation: all passed"
