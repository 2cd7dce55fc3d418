#!/usr/bin/env bash
# Builds vcsdkFFI.xcframework (run on macOS with Xcode and rustup): libvcsdk as a static library
# for iOS devices, the iOS simulator (arm64 + x86_64) and macOS (arm64 + x86_64), each slice with
# the header and module map of Sources/vcsdkFFI/include. Then `swift build` works in this folder and
# apps add the package by path or URL.
set -euo pipefail
cd "$(dirname "$0")"
root=$(cd ../.. && pwd)
targets=(aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios aarch64-apple-darwin x86_64-apple-darwin)
for target in "${targets[@]}"; do
  rustup target add "$target" >/dev/null
  cargo build --manifest-path "$root/Cargo.toml" --locked --release -p vcsdk-ffi --target "$target"
done
lib() { echo "$root/target/$1/release/libvcsdk.a"; }
out=$(mktemp -d)
mkdir -p "$out/ios-sim" "$out/macos"
lipo -create "$(lib aarch64-apple-ios-sim)" "$(lib x86_64-apple-ios)" -output "$out/ios-sim/libvcsdk.a"
lipo -create "$(lib aarch64-apple-darwin)" "$(lib x86_64-apple-darwin)" -output "$out/macos/libvcsdk.a"
rm -rf vcsdkFFI.xcframework
xcodebuild -create-xcframework \
  -library "$(lib aarch64-apple-ios)" -headers Sources/vcsdkFFI/include \
  -library "$out/ios-sim/libvcsdk.a" -headers Sources/vcsdkFFI/include \
  -library "$out/macos/libvcsdk.a" -headers Sources/vcsdkFFI/include \
  -output vcsdkFFI.xcframework
rm -rf "$out"
echo "built $(pwd)/vcsdkFFI.xcframework"
