"""What the slixmpp scenario scripts in this folder share: JSON reporting,
a client set up for the test server, login, and the runner.

Each observation is printed as one JSON line {"step": NAME, ...}; the last
is {"step": "done"}, or {"step": "exception", ...} with exit status 1.
"""

import asyncio
import json
import logging
import ssl
import sys
import traceback

from slixmpp import ClientXMPP

TIMEOUT = 10  # seconds for any single server round trip

# slixmpp 1.8 prints from inside join_muc_wait; keep stdout for our JSON.
OUT = sys.stdout
sys.stdout = sys.stderr


def report(step, **fields):
    print(json.dumps({"step": step, **fields}, default=str), file=OUT, flush=True)


class Client(ClientXMPP):
    """A client for the test server: SCRAM over TLS 1.2 (slixmpp 1.8 only
    knows the tls-unique channel binding, absent in TLS 1.3), contacts
    accepted automatically, and observed events queued for wait()."""

    def __init__(self, jid, password, plugins):
        super().__init__(jid, password, sasl_mech="SCRAM-SHA-256")
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.ssl_context.maximum_version = ssl.TLSVersion.TLSv1_2
        for p in plugins:
            self.register_plugin(p)
        self.auto_authorize = True
        self.auto_subscribe = True
        self.started = asyncio.get_event_loop().create_future()
        self.events = asyncio.Queue()
        self.add_event_handler("session_start", self._start)
        self.add_event_handler("failed_all_auth", self._failed)

    def observe(self, event, kind):
        """Queue each `event` as (kind, stanza)."""
        self.add_event_handler(event, lambda s: self.events.put_nowait((kind, s)))

    async def _start(self, _event):
        await self.get_roster(timeout=TIMEOUT)
        self.send_presence()
        if not self.started.done():
            self.started.set_result(True)

    def _failed(self, _event):
        if not self.started.done():
            self.started.set_exception(RuntimeError("login failed"))

    def drain(self):
        out = []
        while not self.events.empty():
            out.append(self.events.get_nowait())
        return out

    async def wait_any(self):
        return await asyncio.wait_for(self.events.get(), TIMEOUT)

    async def wait(self, kind, pred=lambda s: True):
        while True:
            k, s = await self.wait_any()
            if k == kind and pred(s):
                return s


async def login(cls, jid, password, addr):
    host, port = addr.rsplit(":", 1)
    c = cls(jid, password)
    c.connect((host, int(port)))
    await asyncio.wait_for(c.started, TIMEOUT)
    return c


async def befriend(a, b):
    """Makes a and b contacts both ways (auto_authorize answers)."""
    b.send_presence(pto=a.boundjid.bare, ptype="subscribe")
    for _ in range(50):
        await asyncio.sleep(0.1)
        if b.client_roster[a.boundjid.bare]["subscription"] == "both":
            break
    return b.client_roster[a.boundjid.bare]["subscription"]


def run(main, parser):
    """Parses the arguments and runs main(args), reporting its outcome."""
    parser.add_argument("--debug", action="store_true")
    a = parser.parse_args()
    logging.basicConfig(level=logging.DEBUG if a.debug else logging.ERROR, stream=sys.stderr)
    try:
        asyncio.get_event_loop().run_until_complete(main(a))
    except Exception as e:
        report("exception", error=repr(e), trace=traceback.format_exc())
        sys.exit(1)


def parser():
    """The arguments every scenario takes: the server and two accounts."""
    import argparse
    p = argparse.ArgumentParser()
    p.add_argument("--addr", required=True)
    p.add_argument("--alice", required=True)
    p.add_argument("--alice-password", required=True)
    p.add_argument("--bob", required=True)
    p.add_argument("--bob-password", required=True)
    return p
