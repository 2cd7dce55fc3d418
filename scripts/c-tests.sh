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
lib=target/debug
out=target/c
mkdir -p "$out"

# Only the C interface is exported.
extra=$(nm -D --defined-only "$lib/libvcsdk.so" | awk '{print $3}' | grep -v '^vc_' || true)
if [ -n "$extra" ]; then
  echo "c-tests: libvcsdk.so exports symbols outside vc_*:" >&2
  echo "$extra" >&2
  exit 1
fi
echo "c-tests: libvcsdk.so exports $(nm -D --defined-only "$lib/libvcsdk.so" | grep -c ' vc_') vc_* symbols and nothing else"

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
