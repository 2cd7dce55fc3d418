"""Two Python clients call each other through the real vc-ca and vc-server, with end-to-end
encrypted media; refusals surface as exceptions with the server's code; events arrive on library
threads while the test's asyncio loop keeps running."""
import asyncio
import os
import queue
import threading
import time

import pytest

import vcsdk


class Recorder(vcsdk.ClientListener):
    """Puts every event in a thread-safe queue (listener methods run on library threads)."""

    def __init__(self):
        self.events = queue.Queue()
        self.threads = set()

    def _put(self, *event):
        self.threads.add(threading.get_ident())
        self.events.put(event)

    def on_incoming_call(self, call_id, from_):
        self._put("incoming", call_id, from_)

    def on_call_state(self, call_id, state, reason):
        self._put("state", call_id, state, reason)

    def on_presence(self, user, online):
        self._put("presence", user, online)

    def on_low_balance(self, call_id, balance, seconds_left):
        self._put("low_balance", call_id, balance, seconds_left)

    def on_connection(self, connected, reason):
        self._put("connection", connected, reason)

    def on_conference_invitation(self, conf, from_):
        self._put("invitation", conf, from_)

    async def expect(self, kind, predicate=lambda e: True, timeout=30):
        """The next event of `kind` that `predicate` accepts, waiting at most `timeout` s."""
        deadline = time.monotonic() + timeout
        loop = asyncio.get_running_loop()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"no {kind} event within {timeout} s")
            try:
                event = await loop.run_in_executor(None, self.events.get, True, min(left, 1.0))
            except queue.Empty:
                continue
            if event[0] == kind and predicate(event):
                return event


class Throwing(vcsdk.ClientListener):
    """Raises from every method: the library must go on delivering (to it and to others)."""

    def __init__(self):
        self.calls = 0

    def _fail(self, *args):
        self.calls += 1
        raise RuntimeError("a listener that fails")

    on_incoming_call = on_call_state = on_presence = on_low_balance = on_connection = _fail
    on_conference_invitation = _fail


class Frames(vcsdk.FrameListener):
    def __init__(self):
        self.frames = queue.Queue()
        self.closed = threading.Event()

    def on_frame(self, frame):
        self.frames.put(frame)

    def on_closed(self):
        self.closed.set()


async def enroll(bed, name):
    directory = os.path.join(bed["work"], name)
    return await vcsdk.enroll(directory, bed["ca_url"], bed["root_pem"], bed["tokens"][name], name)


def test_two_python_clients_call_with_encrypted_media(testbed):
    asyncio.run(call_scenario(testbed))


async def call_scenario(bed):
    assert vcsdk.version().count(".") == 2
    alice_id = await enroll(bed, "alice")
    bob_id = await enroll(bed, "bob")
    assert alice_id.id() == "alice"
    assert vcsdk.Identity.load(os.path.join(bed["work"], "alice")).info().serial == alice_id.info().serial

    # Refusals are exceptions with the kind, the code and the text.
    with pytest.raises(vcsdk.VcError.Refused) as refused:
        await vcsdk.enroll(os.path.join(bed["work"], "again"), bed["ca_url"], bed["root_pem"],
                           bed["tokens"]["alice"], "alice")
    assert refused.value.code == "token_used"
    with pytest.raises(vcsdk.VcError.Store):
        vcsdk.Identity.load(os.path.join(bed["work"], "nobody"))

    alice = await vcsdk.connect(alice_id, bed["server"], None)
    bob = await vcsdk.connect(bob_id, bed["server"], None)
    alice_events, bob_events = Recorder(), Recorder()
    throwing = Throwing()
    throwing_sub = alice.add_listener(throwing)
    alice_sub = alice.add_listener(alice_events)
    bob_sub = bob.add_listener(bob_events)
    await alice.register(None)
    await alice.subscribe_presence()
    await bob.register(None)
    await alice_events.expect("presence", lambda e: e[1] == "bob" and e[2])
    users = [u.user for u in await alice.active_users()]
    assert users == ["alice", "bob"]

    with pytest.raises(vcsdk.VcError.Refused) as refused:
        await alice.call("bob")
    assert refused.value.code == "insufficient_credit"
    account = await alice.redeem_voucher(bed["vouchers"][0])
    assert account.balance == 1000 and account.prepaid and account.currency == "EUR"
    with pytest.raises(vcsdk.VcError.Refused) as refused:
        await alice.redeem_voucher(bed["vouchers"][0])
    assert refused.value.code == "voucher_redeemed"

    # A call, accepted; both open the media at once.
    call_id = await alice.call("bob")
    incoming = await bob_events.expect("incoming", lambda e: e[1] == call_id)
    assert incoming[2] == "alice"
    await bob.answer(call_id, vcsdk.Answer.ACCEPT)
    await alice_events.expect("state", lambda e: e[1] == call_id and e[2] == vcsdk.CallState.ACCEPTED)
    options = vcsdk.default_media_options()
    with pytest.raises(vcsdk.VcError.InvalidArgument):
        await alice.open_media(call_id, vcsdk.MediaOptions(level=vcsdk.SecurityLevel.OPEN,
                                                           direct=True, handshake_timeout_ms=1000))
    alice_media, bob_media = await asyncio.gather(alice.open_media(call_id, options),
                                                  bob.open_media(call_id, options))

    # Frames of several sizes, each acknowledged, checked byte for byte.
    for i in range(30):
        data = bytes((i + k) % 256 for k in range(i * 997 % 20000))
        await alice_media.send(vcsdk.Stream.VIDEO, data)
        frame = await bob_media.receive(10000)
        assert frame is not None and frame.stream == vcsdk.Stream.VIDEO and frame.data == data
        await bob_media.send(vcsdk.Stream.SIGNALLING, str(i).encode())
        ack = await alice_media.receive(10000)
        assert ack.data == str(i).encode()
    assert await bob_media.receive(50) is None

    # A frame listener hears what follows, on a library thread.
    frames = Frames()
    frame_sub = bob_media.add_frame_listener(frames)
    await alice_media.rekey()
    for i in range(5):
        await alice_media.send(vcsdk.Stream.AUDIO, bytes([i]) * 160)
        got = await asyncio.get_running_loop().run_in_executor(None, frames.frames.get, True, 10)
        assert got.data == bytes([i]) * 160 and got.stream == vcsdk.Stream.AUDIO

    stats = alice_media.stats()
    assert stats.path == vcsdk.PathKind.DIRECT and stats.frames_sent == 35 and stats.send_epoch >= 1
    assert bob_media.stats().auth_failures == 0

    await alice.hangup(call_id)
    await bob_events.expect("state", lambda e: e[1] == call_id and e[2] == vcsdk.CallState.ENDED)
    assert await asyncio.get_running_loop().run_in_executor(None, frames.closed.wait, 10)
    with pytest.raises(vcsdk.VcError.Closed):
        await alice_media.send(vcsdk.Stream.AUDIO, b"late")
    frame_sub.cancel()

    account = await alice.account()
    assert account.last_call is not None and account.last_call.call_id == call_id
    assert account.balance == 1000 - account.last_call.cost

    # A call hung up before its media started: the waiting side gets Closed, not a protocol error.
    call_id = await alice.call("bob")
    await bob_events.expect("incoming", lambda e: e[1] == call_id)
    await bob.answer(call_id, vcsdk.Answer.ACCEPT)
    await alice_events.expect("state", lambda e: e[1] == call_id and e[2] == vcsdk.CallState.ACCEPTED)
    waiting = asyncio.ensure_future(bob.open_media(call_id, options))
    await asyncio.sleep(0.5)
    await alice.hangup(call_id)
    with pytest.raises(vcsdk.VcError.Closed) as closed:
        await waiting
    assert closed.value.code == "closed" and "before its media started" in str(closed.value)

    # A listener that raised on every event neither stopped delivery nor the process.
    assert throwing.calls >= 3
    throwing_sub.cancel()
    # Events came on library threads, not on the test's thread.
    assert threading.get_ident() not in alice_events.threads | bob_events.threads
    # A cancelled subscription hears nothing more.
    alice_sub.cancel()
    assert not bob.has_ended()
    await bob.disconnect()
    assert bob.has_ended()
    await asyncio.sleep(1)
    assert all(e[0] != "presence" or e[2] for e in list(alice_events.events.queue))
    bob_sub.cancel()
    await alice.disconnect()
