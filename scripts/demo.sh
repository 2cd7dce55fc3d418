#!/usr/bin/env bash
# The vcsdk demo on loopback with embedded storage (SQLite): a CA is made and served, a client
# enrolls with a one-time token, renews, revokes, and the CRL shows it; then a conferencing server
# is enrolled and served, two clients register, see each other and call, streaming a file over the
# call's end-to-end encrypted media, directly and through the relay, with statistics; then three of
# them hold a conference in which a member joins and one leaves, and the group key's epoch changes
# each time. Everything lives in a temporary directory (kept when DEMO_DIR is set) and every process
# is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

cargo build --locked --workspace --bins
bin="$(pwd)/target/debug"
work="${DEMO_DIR:-$(mktemp -d)}"
mkdir -p "$work"
ca_pid=""
server_pid=""
listen_pid=""
conf_pids=()
cleanup() {
  for p in "${conf_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "$listen_pid" ] && kill "$listen_pid" 2>/dev/null || true
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  [ -n "$ca_pid" ] && kill "$ca_pid" 2>/dev/null || true
  [ -z "${DEMO_DIR:-}" ] && rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
wait_listening() { # FILE: waits for "listening on" and prints the address
  for _ in $(seq 1 150); do
    grep -q "listening on" "$1" 2>/dev/null && break
    sleep 0.1
  done
  grep -o 'listening on .*' "$1" | head -1 | cut -d' ' -f3
}

step "1. Make a certification authority (ECDSA P-256 root, key mode 0600)"
run "$bin/vc-ca" init --data-dir "$work/ca" --name "Demo Conferencing CA"
ls -l "$work/ca"

step "2. Serve its HTTPS API on 127.0.0.1 (port picked by the system)"
"$bin/vc-ca" serve --data-dir "$work/ca" --listen 127.0.0.1:0 >"$work/ca.out" 2>"$work/ca.log" &
ca_pid=$!
addr=$(wait_listening "$work/ca.out")
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

step "10. A conferencing server: pin the root, enroll with a server token, serve"
run "$bin/vc-server" init --data-dir "$work/server" --ca-root "$work/ca/root.pem"
server_token=$("$bin/vc-ca" token create --data-dir "$work/ca" --server localhost,127.0.0.1)
run "$bin/vc-server" enroll --data-dir "$work/server" --ca-url "$url" --token "$server_token" --hostname localhost,127.0.0.1
"$bin/vc-server" serve --data-dir "$work/server" --listen 127.0.0.1:0 --media-listen 127.0.0.1:0 >"$work/server.out" 2>"$work/server.log" &
server_pid=$!
server_addr=$(wait_listening "$work/server.out")
[ -n "$server_addr" ] || { echo "the server did not start:"; cat "$work/server.log"; exit 1; }
echo "server listening at $server_addr (mutual TLS 1.3: only certificates from this CA get in)"
grep -o 'media relay on .*' "$work/server.out" || true

step "11. bob and carol enroll and register (accepting the terms of use)"
for who in bob carol; do
  t=$("$bin/vc-ca" token create --data-dir "$work/ca" --client "$who")
  run "$bin/vc" enroll --ca-url "$url" --ca-root "$work/ca/root.pem" --token "$t" --id "$who" --identity-dir "$work/$who"
  run "$bin/vc" register --accept-terms --server "$server_addr" --server-name localhost --identity-dir "$work/$who"
done

step "12. Prepaid credit: the operator credits carol; bob redeems a voucher"
run "$bin/vc-server" credit add --data-dir "$work/server" --user carol --amount 5.00
voucher=$("$bin/vc-server" voucher create --data-dir "$work/server" --amount 3.00)
run "$bin/vc" credit redeem "$voucher" --server "$server_addr" --server-name localhost --identity-dir "$work/bob"

step "13. bob listens and accepts; carol, then dave (in C), call him and stream a file over the call's encrypted media"
head -c 1500000 /dev/urandom >"$work/clip.bin"
mkdir -p "$work/bob-saved"
"$bin/vc" listen --auto-accept --max-calls 3 --save "$work/bob-saved" --server "$server_addr" --server-name localhost --identity-dir "$work/bob" >"$work/bob.out" 2>&1 &
listen_pid=$!
for _ in $(seq 1 50); do
  "$bin/vc" users --server "$server_addr" --server-name localhost --identity-dir "$work/carol" | grep '^bob ' >/dev/null && break
  sleep 0.2
done
run "$bin/vc" users --server "$server_addr" --server-name localhost --identity-dir "$work/carol"
echo "-- direct path (keys agreed end to end through the server; media straight between the two):"
run "$bin/vc" call bob --send "$work/clip.bin" --frame-size 16384 --rate 60 --server "$server_addr" --server-name localhost --identity-dir "$work/carol"
echo "-- relay path (carol never reveals her address; the server relays ciphertext it cannot read):"
run "$bin/vc" call bob --send "$work/clip.bin" --frame-size 16384 --rate 60 --relay-only --server "$server_addr" --server-name localhost --identity-dir "$work/carol"
echo "-- from C: dave is a C program linked with libvcsdk (samples/c); it enrolls, redeems a voucher,"
echo "   calls bob and streams the same file:"
bash scripts/install-c.sh "$work/c-sdk" --debug >/dev/null
cmake -S samples/c -B "$work/c-sample" -DCMAKE_PREFIX_PATH="$work/c-sdk" >/dev/null
cmake --build "$work/c-sample" >/dev/null
run "$work/c-sample/vc_sample" --dir "$work/dave" --server "$server_addr" \
  --ca-url "$url" --ca-root "$work/ca/root.pem" --id dave \
  --token "$("$bin/vc-ca" token create --data-dir "$work/ca" --client dave)" \
  --voucher "$("$bin/vc-server" voucher create --data-dir "$work/server" --amount 2.00)" \
  call bob --send "$work/clip.bin" --frame-size 16384 --rate 60
wait "$listen_pid" || true
listen_pid=""
echo "bob's side:"
sed 's/^/  /' "$work/bob.out"
run cmp "$work/clip.bin" "$work/bob-saved/clip.bin" && echo "identical bytes"

step "14. carol's account: the call was charged by the tariff; her receipts verify offline"
sleep 0.5
run "$bin/vc" account --server "$server_addr" --server-name localhost --identity-dir "$work/carol"
run "$bin/vc" receipts export --out "$work/carol-receipts.json" --server "$server_addr" --server-name localhost --identity-dir "$work/carol"
run "$bin/vc" receipts verify "$work/carol-receipts.json" --identity-dir "$work/carol"

step "15. A conference of three: carol (moderator) creates it, bob joins, dave joins, bob leaves"
S=(--server "$server_addr" --server-name localhost)
wait_line() { # FILE TEXT: waits (bounded) until FILE has a line containing TEXT
  for _ in $(seq 1 300); do grep -qF "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "(timed out waiting for '$2' in $1)"; cat "$1"; return 1
}
for who in bob dave; do
  "$bin/vc" conf join --from carol "${S[@]}" --identity-dir "$work/$who" >"$work/$who-conf.out" 2>&1 &
  conf_pids+=($!)
  wait_line "$work/$who-conf.out" "waiting for an invitation"
done
echo '$ vc conf create --invite bob   (carol; every member sends a small frame to the others every 200 ms)'
"$bin/vc" conf create --invite bob "${S[@]}" --identity-dir "$work/carol" >"$work/carol-conf.out" 2>&1 &
conf_pids+=($!)
wait_line "$work/carol-conf.out" "epoch 2: carol, bob"
sleep 1
run "$bin/vc" conf invite dave --identity-dir "$work/carol"
wait_line "$work/carol-conf.out" "epoch 3: carol, bob, dave"
sleep 1
run "$bin/vc" conf status --identity-dir "$work/carol"
echo "-- the moderator raises the policy to level 3 (AES-256-GCM, post-quantum key wraps) for everyone at the next epoch:"
run "$bin/vc" conf policy --level 3 --identity-dir "$work/carol"
wait_line "$work/carol-conf.out" "epoch 4: carol, bob, dave (level 3"
sleep 1
echo "-- bob leaves: carol makes a fresh key only carol and dave get"
run "$bin/vc" conf leave --identity-dir "$work/bob"
wait_line "$work/carol-conf.out" "epoch 5: carol, dave"
sleep 1
run "$bin/vc" conf leave --identity-dir "$work/dave"
wait_line "$work/carol-conf.out" "dave left"
run "$bin/vc" conf leave --identity-dir "$work/carol"
for p in "${conf_pids[@]}"; do wait "$p" || true; done
conf_pids=()
for who in carol bob dave; do
  echo "$who's session:"
  sed 's/^/  /' "$work/$who-conf.out"
done

step "16. What the server recorded; then SIGTERM (open calls would be ended and recorded)"
run "$bin/vc-server" accounts --data-dir "$work/server"
run "$bin/vc-server" users --data-dir "$work/server"
run "$bin/vc-server" cdr list --data-dir "$work/server"
echo "(each member's time in the conference is a record of its own: callee conf:<id>, paid by the member)"
kill -TERM "$server_pid"; wait "$server_pid" || true; server_pid=""

step "Done"
if [ -n "${DEMO_DIR:-}" ]; then echo "The whole demo ran on 127.0.0.1; its files are in $work."; else echo "The whole demo ran on 127.0.0.1; its files are removed (set DEMO_DIR=DIR to keep them)."; fi
