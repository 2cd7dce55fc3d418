"""The test bed: the real vc-ca and vc-server (tests/src/bin/vc-testbed.rs), started per test."""
import json
import os
import subprocess

import pytest


@pytest.fixture
def testbed():
    """Starts vc-ca and vc-server on 127.0.0.1; yields their description; stops them after."""
    binary = os.environ.get("VCSDK_TESTBED", "target/debug/vc-testbed")
    process = subprocess.Popen(
        [binary, "--users", "alice,bob,carol", "--vouchers", "4"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    line = process.stdout.readline()
    if not line:
        process.kill()
        pytest.fail("vc-testbed did not start")
    bed = json.loads(line)
    with open(bed["ca_root"], "rb") as f:
        bed["root_pem"] = f.read()
    try:
        yield bed
    finally:
        process.stdin.close()
        process.wait(timeout=60)
