#!/usr/bin/env bash
# Installs what building and testing vcsdk needs on a fresh Debian machine, and says what is missing.
set -euo pipefail

need_apt=()
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v cc >/dev/null 2>&1 || need_apt+=(build-essential)
command -v cmake >/dev/null 2>&1 || need_apt+=(cmake)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
command -v valgrind >/dev/null 2>&1 || need_apt+=(valgrind)
command -v nm >/dev/null 2>&1 || need_apt+=(binutils)
command -v clang >/dev/null 2>&1 || need_apt+=(clang)                   # the Swift header and module map
command -v java >/dev/null 2>&1 || need_apt+=(openjdk-17-jdk-headless)  # the Kotlin package
command -v mvn >/dev/null 2>&1 || need_apt+=(maven)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
python3 -c "import venv, ensurepip" >/dev/null 2>&1 || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  for candidate in "$HOME/.cargo/bin" /usr/local/cargo/bin; do
    [ -x "$candidate/cargo" ] && export PATH="$candidate:$PATH"
  done
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo (Rust 1.89 or newer) is required; install it with rustup" >&2
  exit 1
fi
