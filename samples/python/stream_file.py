#!/usr/bin/env python3
"""Enrolls (first run) or loads an identity, registers, calls a user and streams a file over the
call's end-to-end encrypted media, then prints the media statistics and the balance. The receiver
can be `vc listen --save DIR` or the C sample (`vc_sample listen --save DIR`): the file goes as
`offset (8 bytes, big-endian) || bytes` frames on the video stream, announced and confirmed with
JSON on the signalling stream.

    python3 stream_file.py --dir alice-id --server 127.0.0.1:7443 \\
        --ca-url https://127.0.0.1:8443 --ca-root ca/root.pem --token TOKEN --id alice \\
        [--voucher CODE] bob clip.bin
"""
import argparse
import asyncio
import hashlib
import json
import os
import queue
import sys

import vcsdk


class Events(vcsdk.ClientListener):
    """Call states, handed from the library's event thread to the script through a queue."""

    def __init__(self):
        self.states = queue.Queue()

    def on_incoming_call(self, call_id, from_):
        pass

    def on_call_state(self, call_id, state, reason):
        print(f"call {call_id}: {state.name.lower()}{' - ' + reason if reason else ''}", flush=True)
        self.states.put((call_id, state))

    def on_presence(self, user, online):
        pass

    def on_low_balance(self, call_id, balance, seconds_left):
        print(f"low balance: {balance} minor units left, about {seconds_left} s", flush=True)

    def on_connection(self, connected, reason):
        print("reconnected" if connected else f"disconnected ({reason}); reconnecting", flush=True)

    def on_conference_invitation(self, conf, from_):
        print(f"invited to conference {conf} by {from_} (not taken by this sample)", flush=True)


async def identity(args):
    try:
        return vcsdk.Identity.load(args.dir)
    except vcsdk.VcError.Store:
        if not (args.ca_url and args.ca_root and args.token and args.id):
            sys.exit(f"no identity in {args.dir}: give --ca-url, --ca-root, --token and --id")
        with open(args.ca_root, "rb") as f:
            root = f.read()
        me = await vcsdk.enroll(args.dir, args.ca_url, root, args.token, args.id)
        print(f"enrolled as {me.id()}")
        return me


async def wait_for(events, call_id, timeout=60):
    """Accepted → True; a final state → False."""
    loop = asyncio.get_running_loop()
    while True:
        got, state = await loop.run_in_executor(None, events.states.get, True, timeout)
        if got != call_id:
            continue
        if state == vcsdk.CallState.ACCEPTED:
            return True
        if state != vcsdk.CallState.RINGING:
            return False


async def stream(media, path, frame_size, rate):
    data = open(path, "rb").read()
    digest = hashlib.sha256(data).hexdigest()
    name = os.path.basename(path)
    announce = {"type": "file", "name": name, "size": len(data), "sha256": digest,
                "stream": "video", "frame_size": frame_size}
    await media.send(vcsdk.Stream.SIGNALLING, json.dumps(announce, separators=(",", ":")).encode())
    for offset in range(0, len(data), frame_size):
        await media.send(vcsdk.Stream.VIDEO, offset.to_bytes(8, "big") + data[offset:offset + frame_size])
        await asyncio.sleep(1 / rate)
    await media.send(vcsdk.Stream.SIGNALLING, b'{"type":"done"}')
    for _ in range(30):
        frame = await media.receive(1000)
        if frame is None or frame.stream != vcsdk.Stream.SIGNALLING:
            continue
        verdict = json.loads(frame.data)
        if verdict.get("type") == "saved" and verdict.get("sha256") == digest:
            print(f"sent {name}: {len(data)} bytes; the receiver saved identical bytes (SHA-256 {digest})")
            return True
        print(f"the receiver did not save the file: {verdict}")
        return False
    print("no verdict from the receiver")
    return False


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True, help="identity directory")
    parser.add_argument("--server", required=True, help="HOST:PORT of the vc-server")
    parser.add_argument("--ca-url"), parser.add_argument("--ca-root")
    parser.add_argument("--token"), parser.add_argument("--id")
    parser.add_argument("--voucher", help="a prepaid voucher to redeem first")
    parser.add_argument("--frame-size", type=int, default=16384)
    parser.add_argument("--rate", type=int, default=60, help="frames per second")
    parser.add_argument("--relay-only", action="store_true")
    parser.add_argument("--wait-online", type=int, default=60, help="seconds to wait for the callee")
    parser.add_argument("user"), parser.add_argument("file")
    args = parser.parse_args()

    me = await identity(args)
    client = await vcsdk.connect(me, args.server, None)
    events = Events()
    subscription = client.add_listener(events)
    if not client.is_registered():
        await client.register(None)
        print(f"registered {me.id()}")
    if args.voucher:
        await client.redeem_voucher(args.voucher)
    account = await client.account()
    print(f"balance: {vcsdk.format_money(account.balance, account.currency)}")

    for _ in range(args.wait_online * 2):
        try:
            call_id = await client.call(args.user)
            break
        except vcsdk.VcError.Refused as refused:
            if refused.code != "user_offline":
                raise
            await asyncio.sleep(0.5)
    else:
        sys.exit(f"{args.user} did not come online")
    print(f"calling {args.user} (call {call_id})")
    if not await wait_for(events, call_id):
        sys.exit("the call did not go through")
    options = vcsdk.default_media_options()
    options.direct = not args.relay_only
    media = await client.open_media(call_id, options)
    ok = await stream(media, args.file, args.frame_size, args.rate)
    s = media.stats()
    print(f"media ({s.path.name.lower()}): {s.frames_sent} frames sent ({s.bytes_sent} bytes, "
          f"{s.packets_sent} packets); {s.frames_received} received; refused: {s.replays_refused} "
          f"replays, {s.auth_failures} forged")
    await client.hangup(call_id)
    await asyncio.sleep(0.5)
    account = await client.account()
    money = lambda minor: vcsdk.format_money(minor, account.currency)
    print(f"balance: {money(account.balance)}"
          + (f" (the call cost {money(account.last_call.cost)})" if account.last_call else ""))
    subscription.cancel()
    await client.disconnect()
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except vcsdk.VcError as e:
        sys.exit(f"{type(e).__name__}: {e}")
