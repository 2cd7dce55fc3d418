#!/usr/bin/env bash
# Installs libvcsdk for C and C++ users under PREFIX (default /usr/local): lib/libvcsdk.{so,a},
# include/vcsdk.h, lib/pkgconfig/vcsdk.pc and lib/cmake/vcsdk/ (find_package(vcsdk)).
# Usage: scripts/install-c.sh [PREFIX] [--debug]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
prefix="${1:-/usr/local}"
profile=release
[ "${2:-}" = "--debug" ] && profile=debug
if [ "$profile" = release ]; then
  cargo build --locked --release -p vcsdk-ffi
else
  cargo build --locked -p vcsdk-ffi
fi
prefix=$(mkdir -p "$prefix" && cd "$prefix" && pwd)
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
install -d "$prefix/lib/pkgconfig" "$prefix/lib/cmake/vcsdk" "$prefix/include"
install -m 0755 "target/$profile/libvcsdk.so" "$prefix/lib/"
install -m 0644 "target/$profile/libvcsdk.a" "$prefix/lib/"
install -m 0644 include/vcsdk.h "$prefix/include/"
for f in vcsdk.pc:lib/pkgconfig/vcsdk.pc vcsdkConfig.cmake:lib/cmake/vcsdk/vcsdkConfig.cmake \
         vcsdkConfigVersion.cmake:lib/cmake/vcsdk/vcsdkConfigVersion.cmake; do
  sed -e "s|@PREFIX@|$prefix|g" -e "s|@VERSION@|$version|g" "ffi/install/${f%%:*}.in" >"$prefix/${f#*:}"
done
echo "installed libvcsdk $version under $prefix"
echo "  pkg-config: PKG_CONFIG_PATH=$prefix/lib/pkgconfig pkg-config --cflags --libs vcsdk"
echo "  CMake:      cmake -DCMAKE_PREFIX_PATH=$prefix …   then find_package(vcsdk) and vcsdk::vcsdk"
