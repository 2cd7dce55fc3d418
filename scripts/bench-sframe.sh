#!/usr/bin/env bash
# SFrame benchmark: this SDK's frame protection against raw aws-lc-rs AES-GCM and the `sframe`
# crate, both suites, 160 B / 1200 B / 16 KiB frames, then a table of ratios from the same run.
# Usage: scripts/bench-sframe.sh [criterion arguments, e.g. --measurement-time 3]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo bench --locked -p vcsdk --bench sframe -- "$@"
python3 - <<'PY'
import json, pathlib
root = pathlib.Path("target/criterion")
def ns(group, name, size):
    p = root / group / name / str(size) / "new" / "estimates.json"
    return json.loads(p.read_text())["mean"]["point_estimate"] if p.exists() else None
print(f"{'group':22} {'size':>6} {'floor ns':>9} {'vcsdk ns':>9} {'sframe ns':>10} {'vcsdk/floor':>12} {'sframe/vcsdk':>13}")
for op, floor in (("protect", "raw_aws_lc_seal"), ("unprotect", "raw_aws_lc_open")):
    ours = "vcsdk_in_place" if op == "protect" else "vcsdk_with_replay_check"
    for suite in ("aes128gcm", "aes256gcm"):
        group = f"{op}_{suite}"
        for size in (160, 1200, 16384):
            f, o, t = ns(group, floor, size), ns(group, ours, size), ns(group, "sframe_crate", size)
            if None in (f, o, t):
                continue
            print(f"{group:22} {size:>6} {f:>9.0f} {o:>9.0f} {t:>10.0f} {o/f:>12.2f} {t/o:>13.2f}")
PY
