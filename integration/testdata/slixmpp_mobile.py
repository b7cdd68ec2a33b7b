#!/usr/bin/python3
"""Client state indication (XEP-0352), avatars (XEP-0084) and bookmarks in
PEP (XEP-0048 stored as XEP-0223 private PEP data) with slixmpp.

Run by integration/mobile_test.go with /usr/bin/python3 (python3-slixmpp).
Each observation is one JSON line {"step": NAME, ...}; the last is
{"step": "done"} or {"step": "exception", ...} with exit status 1.
"""

import argparse
import asyncio
import json
import logging
import ssl
import sys
import traceback

from slixmpp import ClientXMPP
from slixmpp.exceptions import IqError
from slixmpp.plugins.xep_0048.stanza import Bookmarks

TIMEOUT = 10


def report(step, **fields):
    print(json.dumps({"step": step, **fields}, default=str), flush=True)


class Client(ClientXMPP):
    def __init__(self, jid, password):
        super().__init__(jid, password, sasl_mech="SCRAM-SHA-256")
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.ssl_context.maximum_version = ssl.TLSVersion.TLSv1_2
        for p in ["xep_0030", "xep_0115", "xep_0163", "xep_0084", "xep_0048", "xep_0223", "xep_0352", "xep_0085"]:
            self.register_plugin(p)
        self.auto_authorize = True
        self.auto_subscribe = True
        self.started = asyncio.get_event_loop().create_future()
        self.events = asyncio.Queue()
        self.add_event_handler("session_start", self._start)
        # slixmpp names presence events after <show/>.
        for ev in ("presence_available", "presence_away", "presence_xa", "presence_dnd", "presence_chat"):
            self.add_event_handler(ev, lambda p: self.events.put_nowait(("presence", p)))
        self.add_event_handler("chatstate_composing", lambda m: self.events.put_nowait(("composing", m)))
        self.add_event_handler("message", lambda m: self.events.put_nowait(("message", m)))
        self.add_event_handler("avatar_metadata_publish", lambda m: self.events.put_nowait(("avatar", m)))

    async def _start(self, _event):
        await self.get_roster(timeout=TIMEOUT)
        self.send_presence()
        if not self.started.done():
            self.started.set_result(True)

    def drain(self):
        out = []
        while not self.events.empty():
            out.append(self.events.get_nowait())
        return out

    async def wait_any(self):
        return await asyncio.wait_for(self.events.get(), TIMEOUT)

    async def wait(self, kind, pred=lambda m: True):
        while True:
            k, m = await asyncio.wait_for(self.events.get(), TIMEOUT)
            if k == kind and pred(m):
                return m


async def login(jid, password, addr):
    host, port = addr.rsplit(":", 1)
    c = Client(jid, password)
    c.connect((host, int(port)))
    await asyncio.wait_for(c.started, TIMEOUT)
    return c


async def main(a):
    alice = await login(a.alice + "/phone", a.alice_password, a.addr)
    bob = await login(a.bob + "/phone", a.bob_password, a.addr)
    bob.send_presence(pto=a.alice, ptype="subscribe")
    for _ in range(50):
        await asyncio.sleep(0.1)
        if bob.client_roster[a.alice]["subscription"] == "both":
            break
    await asyncio.sleep(0.5)
    bob.drain()
    report("contacts", subscription=bob.client_roster[a.alice]["subscription"])

    # CSI: while bob's phone is inactive, alice's presence changes and her
    # typing notifications wait; the latest presence arrives on <active/>.
    bob["xep_0352"].send_inactive()
    await asyncio.sleep(0.3)
    alice.send_presence(pstatus="away 1", pshow="away")
    alice.send_presence(pstatus="away 2", pshow="away")
    msg = alice.make_message(mto=a.bob + "/phone", mtype="chat")
    msg["chat_state"] = "composing"
    msg.send()
    await asyncio.sleep(1.0)
    held = [k for k, _ in bob.drain()]
    report("while_inactive", received=held)
    bob["xep_0352"].send_active()
    # Held stanzas come in the order they arrived: the presence, then the
    # typing notification; an older presence must not follow.
    first = await bob.wait_any()
    k, m = first
    composing = False
    more = 0
    if k == "presence" and m["from"].bare == a.alice:
        status = m["status"]
        await bob.wait("composing")
        composing = True
        await asyncio.sleep(0.3)
        more = sum(1 for k, m in bob.drain() if k == "presence" and m["from"].bare == a.alice)
    else:
        status = "first event after <active/> was %s" % k
    report("after_active", status=status, more_presence=more, composing=composing)
    # Messages with a body are never held.
    bob["xep_0352"].send_inactive()
    await asyncio.sleep(0.3)
    alice.send_message(mto=a.bob + "/phone", mbody="urgent", mtype="chat")
    m = await bob.wait("message", lambda m: m["body"] == "urgent")
    report("urgent_while_inactive", body=m["body"])
    bob["xep_0352"].send_active()

    # Avatar metadata over PEP reaches bob (his caps ask for it).
    await alice["xep_0084"].publish_avatar_metadata(
        items=[{"id": "0123456789abcdef0123456789abcdef01234567", "type": "image/png", "bytes": "1234",
                "height": "64", "width": "64"}], timeout=TIMEOUT)
    m = await bob.wait("avatar")
    info = m["pubsub_event"]["items"]["item"]["avatar_metadata"]["info"]
    report("avatar_event", id=info["id"], publisher=str(m["from"]))

    # Bookmarks stored privately in PEP: the owner's other device reads them,
    # a contact may not.
    bm = Bookmarks()
    bm.add_conference("ops@conference." + a.domain, "alice", name="Operations", autojoin=True)
    await alice["xep_0048"].set_bookmarks(bm, method="xep_0223", timeout=TIMEOUT)
    laptop = await login(a.alice + "/laptop", a.alice_password, a.addr)
    iq = await laptop["xep_0048"].get_bookmarks(method="xep_0223", timeout=TIMEOUT)
    confs = iq["pubsub"]["items"]["item"]["bookmarks"]["conferences"]
    report("bookmarks", jids=[str(c["jid"]) for c in confs])
    try:
        await bob["xep_0060"].get_items(a.alice, "storage:bookmarks", timeout=TIMEOUT)
        report("bookmarks_contact", allowed=True)
    except IqError as e:
        report("bookmarks_contact", allowed=False, condition=e.iq["error"]["condition"])

    for c in (alice, bob, laptop):
        c.disconnect()
    report("done")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--addr", required=True)
    p.add_argument("--domain", required=True)
    p.add_argument("--alice", required=True)
    p.add_argument("--alice-password", required=True)
    p.add_argument("--bob", required=True)
    p.add_argument("--bob-password", required=True)
    p.add_argument("--debug", action="store_true")
    a = p.parse_args()
    logging.basicConfig(level=logging.DEBUG if a.debug else logging.ERROR, stream=sys.stderr)
    try:
        asyncio.get_event_loop().run_until_complete(main(a))
    except Exception as e:
        report("exception", error=repr(e), trace=traceback.format_exc())
        sys.exit(1)
