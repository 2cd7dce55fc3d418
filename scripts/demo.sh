#!/usr/bin/env bash
# The vcsdk demo on loopback with embedded storage (SQLite): a CA is made and served, a client
# enrolls with a one-time token, renews, revokes, and the CRL shows it. Everything lives in a
# temporary directory (kept when DEMO_DIR is set) and the CA is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

cargo build --locked --workspace --bins
bin="$(pwd)/target/debug"
work="${DEMO_DIR:-$(mktemp -d)}"
mkdir -p "$work"
ca_pid=""
cleanup() {
  [ -n "$ca_pid" ] && kill "$ca_pid" 2>/dev/null || true
  [ -z "${DEMO_DIR:-}" ] && rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

step "1. Make a certification authority (ECDSA P-256 root, key mode 0600)"
run "$bin/vc-ca" init --data-dir "$work/ca" --name "Demo Conferencing CA"
ls -l "$work/ca"

step "2. Serve its HTTPS API on 127.0.0.1 (port picked by the system)"
"$bin/vc-ca" serve --data-dir "$work/ca" --listen 127.0.0.1:0 >"$work/ca.out" 2>"$work/ca.log" &
ca_pid=$!
for _ in $(seq 1 100); do
  grep -q "listening on" "$work/ca.out" 2>/dev/null && break
  sleep 0.1
done
addr=$(grep -o 'listening on .*' "$work/ca.out" | head -1 | cut -d' ' -f3)
[ -n "$addr" ] || { echo "the CA did not start:"; cat "$work/ca.log"; exit 1; }
url="https://$addr"
echo "CA listening at $url"

step "3. The operator approves alice: a one-time enrollment token bound to her id"
token=$("$bin/vc-ca" token create --data-dir "$work/ca" --client alice --ttl 1h)
echo "token: ${token:0:12}… (shown once; only its hash is stored)"

step "4. alice enrolls: new key, CSR, certificate (the root is pinned out of band)"
run "$bin/vc" enroll --ca-url "$url" --ca-root "$work/ca/root.pem" --token "$token" --id alice --identity-dir "$work/alice"
run "$bin/vc" whoami --identity-dir "$work/alice" --check
run openssl verify -CAfile "$work/ca/root.pem" "$work/alice/cert.pem"

step "5. The token cannot be used again"
"$bin/vc" enroll --ca-url "$url" --ca-root "$work/ca/root.pem" --token "$token" --id alice --identity-dir "$work/mallory" || true

step "6. alice renews: new key and certificate; the old one is revoked as superseded"
cp "$work/alice/cert.pem" "$work/alice-old.pem"
run "$bin/vc" renew --identity-dir "$work/alice"

step "7. alice revokes her certificate (key compromise)"
cp "$work/alice/cert.pem" "$work/alice-current.pem"
run "$bin/vc" revoke --identity-dir "$work/alice" --reason keyCompromise

step "8. The CRL lists both; openssl refuses both certificates"
run "$bin/vc-ca" crl --data-dir "$work/ca" --out "$work/crl.pem"
openssl crl -in "$work/crl.pem" -noout -text | sed -n '1,40p'
openssl verify -crl_check -CRLfile "$work/crl.pem" -CAfile "$work/ca/root.pem" "$work/alice-old.pem" || true
openssl verify -crl_check -CRLfile "$work/crl.pem" -CAfile "$work/ca/root.pem" "$work/alice-current.pem" || true

step "9. What the CA recorded"
run "$bin/vc-ca" list --data-dir "$work/ca"
run "$bin/vc-ca" audit --data-dir "$work/ca"

step "Done"
if [ -n "${DEMO_DIR:-}" ]; then echo "The whole demo ran on 127.0.0.1; its files are in $work."; else echo "The whole demo ran on 127.0.0.1; its files are removed (set DEMO_DIR=DIR to keep them)."; fi
