#!/usr/bin/python3
"""Join a multi-user chat room with slixmpp's XEP-0045 plugin and talk in it.

Run by integration/muc_test.go with the Debian interpreter (/usr/bin/python3,
package python3-slixmpp). Every observation is printed as one JSON object per
line, {"step": NAME, ...}, as soon as it is made, so the Go test can act on
it; the last line is {"step": "done"}, or {"step": "exception", ...} and exit
status 1.

The client logs in, joins the room (join_muc_wait: occupants, self-presence,
history, subject), says --say, waits until it has seen every --expect body
and its own, self-pings its occupant JID (XEP-0410), and leaves.
"""

import argparse
import asyncio
import json
import logging
import ssl
import sys
import traceback

from slixmpp import ClientXMPP, JID
from slixmpp.exceptions import IqError, PresenceError

TIMEOUT = 20  # seconds for any single server round trip

# slixmpp 1.8 prints from inside join_muc_wait; keep stdout for our JSON.
OUT = sys.stdout
sys.stdout = sys.stderr


def report(step, **fields):
    print(json.dumps({"step": step, **fields}, default=str), file=OUT, flush=True)


class Client(ClientXMPP):
    def __init__(self, jid, password):
        super().__init__(jid, password, sasl_mech="SCRAM-SHA-256")
        # The test server's certificate is self-signed, and slixmpp 1.8's
        # SCRAM needs TLS 1.2 (see slixmpp_test.go).
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.ssl_context.maximum_version = ssl.TLSVersion.TLSv1_2
        for p in ["xep_0030", "xep_0045", "xep_0199", "xep_0203"]:
            self.register_plugin(p)
        self.started = asyncio.get_event_loop().create_future()
        self.groupchat = asyncio.Queue()
        self.add_event_handler("session_start", self._start)
        self.add_event_handler("groupchat_message", self.groupchat.put_nowait)
        self.add_event_handler("failed_all_auth", self._failed)
        self.add_event_handler("disconnected", self._failed)

    async def _start(self, _event):
        await self.get_roster(timeout=TIMEOUT)
        self.send_presence()
        if not self.started.done():
            self.started.set_result(True)

    def _failed(self, event):
        if not self.started.done():
            self.started.set_exception(RuntimeError("login failed: %r" % (event,)))


async def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--addr", required=True, help="host:port of the STARTTLS listener")
    p.add_argument("--jid", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--room", required=True)
    p.add_argument("--nick", required=True)
    p.add_argument("--history", type=int, default=5, help="maxstanzas of history to ask for")
    p.add_argument("--say", required=True)
    p.add_argument("--expect", action="append", default=[], help="a body to wait for (repeatable)")
    p.add_argument("--debug", action="store_true", help="log the XML stream to stderr")
    args = p.parse_args()
    if args.debug:
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    host, port = args.addr.rsplit(":", 1)

    c = Client(args.jid, args.password)
    c.connect(address=(host, int(port)))
    await asyncio.wait_for(c.started, 30)
    report("login", jid=str(c.boundjid))

    room = JID(args.room)
    try:
        pres, subject, occupants, history = await c["xep_0045"].join_muc_wait(
            room, args.nick, maxstanzas=args.history, timeout=TIMEOUT)
    except PresenceError as e:
        report("join_error", condition=e.presence["error"]["condition"])
        raise
    report("joined",
           nick=pres["from"].resource,
           codes=sorted(pres["muc"]["status_codes"]),
           role=pres["muc"]["role"],
           affiliation=pres["muc"]["affiliation"],
           occupants=sorted(o["from"].resource for o in occupants),
           history=[m["body"] for m in history],
           history_delay_from=sorted({str(m["delay"]["from"]) for m in history}),
           subject=subject["subject"])

    c.send_message(mto=room, mbody=args.say, mtype="groupchat")
    want = set(args.expect) | {args.say}
    while want:
        m = await asyncio.wait_for(c.groupchat.get(), TIMEOUT)
        if m["delay"]["stamp"] is not None or not m["body"]:
            continue  # history and the subject, seen during the join
        report("got", frm=str(m["from"]), body=m["body"], id=m["id"])
        want.discard(m["body"])

    # XEP-0410: the room answers a ping to our own occupant JID.
    try:
        await c["xep_0199"].send_ping(JID("%s/%s" % (room, args.nick)), timeout=TIMEOUT)
        report("self_ping", ok=True)
    except IqError as e:
        report("self_ping", ok=False, condition=e.iq["error"]["condition"])

    c["xep_0045"].leave_muc(room, args.nick)
    report("left")
    await asyncio.sleep(0.2)  # let the unavailable presence leave
    c.disconnect()
    await c.disconnected


if __name__ == "__main__":
    try:
        asyncio.run(main())
        report("done")
    except BaseException as e:  # report everything, including timeouts
        report("exception", error=repr(e), traceback=traceback.format_exc())
        sys.exit(1)
