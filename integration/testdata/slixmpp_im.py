#!/usr/bin/python3
"""Multi-device features with slixmpp: message carbons (XEP-0280) and
personal eventing (XEP-0163) driven by entity capabilities (XEP-0115).

Run by integration/im_test.go with /usr/bin/python3 (python3-slixmpp). Each
observation is one JSON line {"step": NAME, ...}; the Go test judges them.
The last line is {"step": "done"}, or {"step": "exception", ...} with exit 1.

Three clients: alice on two devices ("phone", "laptop") and bob, who are
contacts. The laptop enables carbons and sees what the phone sends and
receives. Alice publishes her nickname (XEP-0172) over PEP; bob's client
advertises nick+notify in its caps and gets the event from the server.
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
        # slixmpp 1.8 only does tls-unique channel binding (absent in TLS 1.3).
        self.ssl_context.maximum_version = ssl.TLSVersion.TLSv1_2
        for p in ["xep_0030", "xep_0115", "xep_0163", "xep_0172", "xep_0280"]:
            self.register_plugin(p)
        self.auto_authorize = True
        self.auto_subscribe = True
        loop = asyncio.get_event_loop()
        self.started = loop.create_future()
        self.events = asyncio.Queue()
        self.add_event_handler("session_start", self._start)
        self.add_event_handler("carbon_received", lambda m: self.events.put_nowait(("received", m)))
        self.add_event_handler("carbon_sent", lambda m: self.events.put_nowait(("sent", m)))
        self.add_event_handler("user_nick_publish", lambda m: self.events.put_nowait(("nick", m)))
        self.add_event_handler("message", lambda m: self.events.put_nowait(("message", m)))
        self.add_event_handler("failed_all_auth", self._failed)

    async def _start(self, _event):
        await self.get_roster(timeout=TIMEOUT)
        self.send_presence()
        if not self.started.done():
            self.started.set_result(True)

    def _failed(self, event):
        if not self.started.done():
            self.started.set_exception(RuntimeError("login failed"))

    async def wait(self, kind):
        while True:
            k, m = await asyncio.wait_for(self.events.get(), TIMEOUT)
            if k == kind:
                return m


async def login(jid, password, addr):
    host, port = addr.rsplit(":", 1)
    c = Client(jid, password)
    c.connect((host, int(port)))
    await asyncio.wait_for(c.started, TIMEOUT)
    return c


async def main(a):
    phone = await login(a.alice + "/phone", a.alice_password, a.addr)
    laptop = await login(a.alice + "/laptop", a.alice_password, a.addr)
    bob = await login(a.bob + "/desk", a.bob_password, a.addr)
    report("login")

    # Become contacts both ways (auto_authorize/auto_subscribe answer).
    bob.send_presence(pto=a.alice, ptype="subscribe")
    for _ in range(50):
        await asyncio.sleep(0.1)
        item = bob.client_roster[a.alice]
        if item["subscription"] == "both":
            break
    report("subscribed", subscription=bob.client_roster[a.alice]["subscription"])

    await laptop["xep_0280"].enable(timeout=TIMEOUT)
    report("carbons_enabled")

    bob.send_message(mto=a.alice + "/phone", mbody="to your phone", mtype="chat")
    m = await phone.wait("message")
    report("phone_got", body=m["body"])
    m = await laptop.wait("received")
    report("laptop_received_carbon", body=m["carbon_received"]["body"],
           to=str(m["carbon_received"]["to"]))

    phone.send_message(mto=a.bob, mbody="from my phone", mtype="chat")
    m = await bob.wait("message")
    report("bob_got", body=m["body"])
    m = await laptop.wait("sent")
    report("laptop_sent_carbon", body=m["carbon_sent"]["body"], to=str(m["carbon_sent"]["to"]))

    # PEP: bob's caps say http://jabber.org/protocol/nick+notify (xep_0172
    # registers it); the server learns that by asking bob's client.
    await asyncio.sleep(0.5)
    await phone["xep_0172"].publish_nick("Alice in the field", timeout=TIMEOUT)
    report("published")
    m = await bob.wait("nick")
    item = m["pubsub_event"]["items"]["item"]
    report("bob_nick_event", publisher=str(m["from"]), nick=item["nick"]["nick"])

    for c in (phone, laptop, bob):
        c.disconnect()
    report("done")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--addr", required=True)
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
