"""A conference of three Python clients against the real vc-ca and vc-server: invitations through
a listener, group keys renewed on every join and leave, frames between every pair, the moderator's
policy change at one epoch for all, and refusals as exceptions."""
import asyncio
import queue

import pytest

import vcsdk
from test_call import Recorder, enroll


class ConfEvents(vcsdk.ConferenceListener):
    """Queues a conference's events (called on a library thread)."""

    def __init__(self):
        self.events = queue.Queue()

    def on_event(self, event):
        self.events.put(event)

    async def expect(self, predicate, timeout=30):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            if left <= 0:
                pytest.fail("the conference event did not come")
            try:
                event = await loop.run_in_executor(None, self.events.get, True, min(left, 1.0))
            except queue.Empty:
                continue
            if predicate(event):
                return event


def is_epoch(n=None, members=None, level=None):
    def check(e):
        return (isinstance(e, vcsdk.ConferenceEvent.EPOCH)
                and (n is None or e.epoch >= n)
                and (members is None or e.roster == members)
                and (level is None or e.policy.level == level))
    return check


async def until_frame(conf, sender, data, source):
    """Sends `data` from `source` until `conf` receives it from `sender`."""
    for _ in range(100):
        await source.send(vcsdk.Stream.AUDIO, data)
        frame = await conf.receive(200)
        while frame is not None:
            if frame.member == sender and frame.data == data:
                return frame
            frame = await conf.receive(50)
    pytest.fail(f"{sender}'s frame never arrived")


def test_three_python_clients_hold_a_conference(testbed):
    asyncio.run(conference_scenario(testbed))


async def conference_scenario(bed):
    clients, recorders, subscriptions = {}, {}, []
    for i, name in enumerate(["alice", "bob", "carol"]):
        client = await vcsdk.connect(await enroll(bed, name), bed["server"], None)
        recorders[name] = Recorder()
        subscriptions.append(client.add_listener(recorders[name]))
        await client.register(None)
        await client.redeem_voucher(bed["vouchers"][i])
        clients[name] = client
    alice, bob, carol = clients["alice"], clients["bob"], clients["carol"]

    # Bob refuses invitations from anyone but his contacts: carol's never reaches him.
    bob.set_access_list(vcsdk.AccessList(allow=[], deny=["carol"], contacts=["alice"],
                                         default=vcsdk.AccessDefault.CONTACTS))
    with pytest.raises(vcsdk.VcError.InvalidArgument):
        bob.set_access_list(vcsdk.AccessList(allow=["not an id!"], deny=[], contacts=[],
                                             default=vcsdk.AccessDefault.ANYONE))

    a_events, a_second = ConfEvents(), ConfEvents()
    conf = await alice.create_conference(None, True)
    subscriptions.append(conf.add_listener(a_events))  # delivery lasts while it is held
    second_sub = conf.add_listener(a_second)           # every listener hears every event
    await a_events.expect(is_epoch(1))
    await conf.invite("bob")
    invitation = await recorders["bob"].expect("invitation")
    assert invitation[1] == conf.id() and invitation[2] == "alice"
    b = await bob.join_conference(conf.id(), True)
    await a_events.expect(is_epoch(2, ["alice", "bob"]))
    await conf.invite("carol")
    await recorders["carol"].expect("invitation")
    c = await carol.join_conference(conf.id(), True)
    await a_events.expect(is_epoch(3, ["alice", "bob", "carol"]))
    await a_second.expect(is_epoch(3, ["alice", "bob", "carol"]))
    second_sub.cancel()
    assert [m.id for m in c.roster()] == ["alice", "bob", "carol"]
    assert c.roster()[0].moderator

    # Carol's own conference: her invitation to bob is declined for him, unseen.
    own = await carol.create_conference(None, True)
    own_events = ConfEvents()
    subscriptions.append(own.add_listener(own_events))
    await own.invite("bob")
    await own_events.expect(lambda e: isinstance(e, vcsdk.ConferenceEvent.DECLINED))
    with pytest.raises(vcsdk.VcError.InvalidArgument):
        await bob.join_conference(own.id(), True)
    await own.leave()

    # Frames between members.
    for receiver, sender, source in [(b, "alice", conf), (c, "bob", b), (conf, "carol", c)]:
        frame = await until_frame(receiver, sender, f"from {sender}".encode(), source)
        assert frame.stream == vcsdk.Stream.AUDIO and not frame.plain and frame.epoch >= 3

    # Only the moderator sets the policy; it takes effect at the next epoch for everyone.
    level3 = vcsdk.default_conference_policy(vcsdk.SecurityLevel.POST_QUANTUM,
                                             vcsdk.ConferenceMode.MODERATION)
    with pytest.raises(vcsdk.VcError.Refused) as refused:
        await b.set_policy(level3)
    assert refused.value.code == "conf_forbidden"
    await conf.set_policy(level3)
    event = await a_events.expect(is_epoch(level=vcsdk.SecurityLevel.POST_QUANTUM))
    for member in (b, c):
        for _ in range(100):
            if member.epoch() >= event.epoch:
                break
            await asyncio.sleep(0.05)
        assert member.policy() == level3

    # The moderator removes carol: she is out, the others rekey without her.
    await conf.remove("carol")
    await a_events.expect(lambda e: isinstance(e, vcsdk.ConferenceEvent.LEFT) and e.member == "carol")
    await a_events.expect(is_epoch(members=["alice", "bob"]))
    assert c.ended() is not None and "removed by alice" in c.ended()
    await until_frame(b, "alice", b"after carol", conf)
    assert conf.stats().auth_failures == 0
    await b.leave()
    await conf.leave()
    for client in clients.values():
        await client.disconnect()
