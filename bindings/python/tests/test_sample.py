"""The samples stream a file to the Rust `vc listen --save` over a real call: samples/python always;
samples/kotlin when scripts/kotlin-tests.sh names its jar in VCSDK_KOTLIN_SAMPLE."""
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))


def sample_command(language):
    if language == "python":
        return [sys.executable, os.path.join(ROOT, "samples", "python", "stream_file.py")]
    jar = os.environ.get("VCSDK_KOTLIN_SAMPLE")
    if not jar:
        pytest.skip("the Kotlin sample is run by scripts/kotlin-tests.sh")
    return ["java", "-jar", jar]


@pytest.mark.parametrize("language", ["python", "kotlin"])
def test_the_sample_streams_a_file_to_vc_listen(testbed, language):
    bed = testbed
    command = sample_command(language)
    vc = os.path.join(os.path.dirname(os.environ.get("VCSDK_TESTBED", "target/debug/vc-testbed")), "vc")
    work = bed["work"]
    bob = os.path.join(work, "bob")
    subprocess.run([vc, "enroll", "--identity-dir", bob, "--ca-url", bed["ca_url"], "--ca-root",
                    bed["ca_root"], "--token", bed["tokens"]["bob"], "--id", "bob"], check=True)
    subprocess.run([vc, "register", "--accept-terms", "--server", bed["server"], "--identity-dir", bob],
                   check=True, stdout=subprocess.DEVNULL)
    saved = os.path.join(work, "saved")
    os.mkdir(saved)
    listen = subprocess.Popen([vc, "listen", "--auto-accept", "--max-calls", "1", "--save", saved,
                               "--server", bed["server"], "--identity-dir", bob],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    clip = os.path.join(work, "clip.bin")
    data = os.urandom(200_000)
    with open(clip, "wb") as f:
        f.write(data)
    result = subprocess.run(
        command + ["--dir", os.path.join(work, "alice"), "--server", bed["server"],
         "--ca-url", bed["ca_url"], "--ca-root", bed["ca_root"], "--token", bed["tokens"]["alice"],
         "--id", "alice", "--voucher", bed["vouchers"][0], "bob", clip],
        capture_output=True, text=True, timeout=240)
    heard, _ = listen.communicate(timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr + heard
    assert "the receiver saved identical bytes" in result.stdout
    assert "balance: 9.90 EUR (the call cost 0.10 EUR)" in result.stdout
    with open(os.path.join(saved, "clip.bin"), "rb") as f:
        assert f.read() == data
