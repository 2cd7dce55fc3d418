"""A Python client connected and dropped many times against the real vc-ca and vc-server: every
dropped client releases its connection (no descriptor, no socket to the server left)."""
import asyncio
import gc
import os
import time

import vcsdk

CYCLES = 40


def descriptors():
    return len(os.listdir("/proc/self/fd"))


def connections_to(port):
    """TCP connections to `port` established or in CLOSE-WAIT (only this test talks to it)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    remote, state = fields[2], fields[3]
                    if int(remote.rsplit(":", 1)[1], 16) == port and state in ("01", "08"):
                        count += 1
        except FileNotFoundError:
            pass
    return count


def test_dropped_clients_release_their_connections(testbed):
    asyncio.run(cycles(testbed))


async def cycles(bed):
    port = int(bed["server"].rsplit(":", 1)[1])
    identity = await vcsdk.enroll(os.path.join(bed["work"], "alice"), bed["ca_url"], bed["root_pem"],
                                  bed["tokens"]["alice"], "alice")
    client = await vcsdk.connect(identity, bed["server"], None)
    await client.register(None)
    await client.disconnect()
    del client

    async def once():
        c = await vcsdk.connect(identity, bed["server"], None)
        assert [u.user for u in await c.active_users()] == ["alice"]
        del c
        gc.collect()

    for _ in range(5):
        await once()
    before = descriptors()
    for _ in range(CYCLES):
        await once()
    # A dropped client says goodbye in the background: give the last one a bounded moment.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and (descriptors() > before or connections_to(port) > 0):
        await asyncio.sleep(0.1)
    assert connections_to(port) == 0, "a dropped client kept its connection to the server"
    assert descriptors() <= before, f"{descriptors()} descriptors after {CYCLES} cycles, {before} before"
