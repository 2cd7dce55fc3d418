"""Per-frame cost of `MediaSession.send` of a 1200-byte frame through the Python bindings (SFrame
encryption and the UDP send, each awaited), on a real call through vc-ca and vc-server (vc-testbed);
compared with the Rust figure by scripts/bench-bindings.sh. Prints `python send NS ns`."""
import asyncio
import json
import os
import subprocess
import sys
import time

import vcsdk


async def measure(bed, frames, rounds):
    root = open(bed["ca_root"], "rb").read()
    ids = [await vcsdk.enroll(os.path.join(bed["work"], n), bed["ca_url"], root, bed["tokens"][n], n)
           for n in ("alice", "bob")]
    alice, bob = [await vcsdk.connect(i, bed["server"], None) for i in ids]
    await alice.register(None)
    await bob.register(None)
    await alice.redeem_voucher(bed["vouchers"][0])

    class Answerer(vcsdk.ClientListener):
        def __init__(self, loop):
            self.loop, self.calls = loop, asyncio.Queue()

        def on_incoming_call(self, call_id, from_):
            self.loop.call_soon_threadsafe(self.calls.put_nowait, call_id)

        def on_call_state(self, *a): pass
        def on_presence(self, *a): pass
        def on_low_balance(self, *a): pass
        def on_connection(self, *a): pass
        def on_conference_invitation(self, *a): pass

    answerer = Answerer(asyncio.get_running_loop())
    subscription = bob.add_listener(answerer)
    call_id = await alice.call("bob")
    assert await asyncio.wait_for(answerer.calls.get(), 30) == call_id
    await bob.answer(call_id, vcsdk.Answer.ACCEPT)
    options = vcsdk.default_media_options()
    a, b = await asyncio.gather(alice.open_media(call_id, options), bob.open_media(call_id, options))

    # The receiver's SDK decrypts every frame and, as nobody takes them here, drops them once its
    # queue is full: the same work on that side as in the Rust figure.
    frame = bytes(1200)
    start = time.perf_counter_ns()
    for _ in range(5000):
        vcsdk.version()
    print(f"python version() {(time.perf_counter_ns() - start) / 5000:.0f} ns", flush=True)

    async def awaited():
        await a.send(vcsdk.Stream.VIDEO, frame)

    async def blocking():
        a.send_blocking(vcsdk.Stream.VIDEO, frame)

    for name, send in (("python send", awaited), ("python send_blocking", blocking)):
        best = float("inf")
        for _ in range(rounds):
            start = time.perf_counter_ns()
            for _ in range(frames):
                await send()
            best = min(best, (time.perf_counter_ns() - start) / frames)
        print(f"{name} {best:.0f} ns", flush=True)
    assert b.stats().auth_failures == 0
    subscription.cancel()
    await alice.hangup(call_id)
    await alice.disconnect()
    await bob.disconnect()


def main():
    frames = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    testbed = os.environ.get("VCSDK_TESTBED", "target/release/vc-testbed")
    process = subprocess.Popen([testbed, "--users", "alice,bob", "--vouchers", "1"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    bed = json.loads(process.stdout.readline())
    try:
        asyncio.run(measure(bed, frames, rounds))
    finally:
        process.stdin.close()
        process.wait(timeout=60)


if __name__ == "__main__":
    main()
