"""vcsdk: end-to-end encrypted video conferencing (Python bindings of libvcsdk).

Everything that waits on the network is ``async`` (await it from any asyncio loop); errors are
``VcError`` subclasses (``VcError.Refused``, ``VcError.Connection``, ...) with ``code`` and
``detail``. Listener methods run on threads of the library: hand events to your loop with
``loop.call_soon_threadsafe`` or a ``queue.Queue``.

    identity = await vcsdk.enroll(dir, ca_url, root_pem, token, "alice")   # or Identity.load(dir)
    client = await vcsdk.connect(identity, "127.0.0.1:7443", None)
    subscription = client.add_listener(MyListener())
    await client.register(None)
    call_id = await client.call("bob")
    media = await client.open_media(call_id, vcsdk.default_media_options())
    await media.send(vcsdk.Stream.VIDEO, frame)
"""
from .vcsdk import *  # noqa: F401,F403  (the generated bindings)
from .vcsdk import __all__  # noqa: F401
