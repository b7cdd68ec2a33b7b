#!/usr/bin/python3
"""Message archive (XEP-0313) with slixmpp: alice sends bob messages, some
while bob is offline; bob's new device pages through its archive.

Run by integration/mam_test.go with /usr/bin/python3 (python3-slixmpp). Each
observation is one JSON line {"step": NAME, ...}; the last is {"step": "done"}
or {"step": "exception", ...} with exit status 1.
"""

import argparse
import asyncio
import json
import logging
import ssl
import sys
import traceback

from slixmpp import ClientXMPP

TIMEOUT = 10


def report(step, **fields):
    print(json.dumps({"step": step, **fields}, default=str), flush=True)


class Client(ClientXMPP):
    def __init__(self, jid, password):
        super().__init__(jid, password, sasl_mech="SCRAM-SHA-256")
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.ssl_context.maximum_version = ssl.TLSVersion.TLSv1_2
        for p in ["xep_0030", "xep_0059", "xep_0313"]:
            self.register_plugin(p)
        self.started = asyncio.get_event_loop().create_future()
        self.add_event_handler("session_start", self._start)

    async def _start(self, _event):
        self.send_presence()
        if not self.started.done():
            self.started.set_result(True)


async def login(jid, password, addr):
    host, port = addr.rsplit(":", 1)
    c = Client(jid, password)
    c.connect((host, int(port)))
    await asyncio.wait_for(c.started, TIMEOUT)
    return c


async def main(a):
    alice = await login(a.alice + "/desk", a.alice_password, a.addr)
    for i in range(a.count):
        alice.send_message(mto=a.bob, mbody="message %d" % i, mtype="chat")
    await asyncio.sleep(1)  # let the server route the burst
    report("sent", count=a.count)

    bob = await login(a.bob + "/phone", a.bob_password, a.addr)
    # Pages of 25: the iterator follows RSM <last/> until <fin complete='true'/>.
    bodies = []
    async for result in bob["xep_0313"].iterate(with_jid=a.alice, rsm={"max": 25}):
        bodies.append(result["mam_result"]["forwarded"]["stanza"]["body"])
    report("archive", count=len(bodies), first=bodies[0] if bodies else None,
           last=bodies[-1] if bodies else None,
           ordered=bodies[-a.count:] == ["message %d" % i for i in range(a.count)])
    # Newest first, as a client shows a conversation: the last page.
    iq = await bob["xep_0313"].retrieve(with_jid=a.alice, reverse=True, rsm={"max": 5}, timeout=TIMEOUT)
    report("last_page", complete=iq["mam_fin"]["complete"], count=iq["mam_fin"]["rsm"]["count"])
    for c in (alice, bob):
        c.disconnect()
    report("done")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--addr", required=True)
    p.add_argument("--alice", required=True)
    p.add_argument("--alice-password", required=True)
    p.add_argument("--bob", required=True)
    p.add_argument("--bob-password", required=True)
    p.add_argument("--count", type=int, default=120)
    p.add_argument("--debug", action="store_true")
    a = p.parse_args()
    logging.basicConfig(level=logging.DEBUG if a.debug else logging.ERROR, stream=sys.stderr)
    try:
        asyncio.get_event_loop().run_until_complete(main(a))
    except Exception as e:
        report("exception", error=repr(e), trace=traceback.format_exc())
        sys.exit(1)
