#!/usr/bin/python3
"""Drive an XMPP server with slixmpp, the way its users' clients do.

Run by integration/slixmpp_test.go with the Debian interpreter (/usr/bin/python3,
package python3-slixmpp). Every observation is printed as one JSON object per
line, {"step": NAME, ...}; the Go test decides what is right. The last line is
{"step": "done"} on success, or {"step": "exception", ...} and exit status 1.

Scenarios:
  exchange  two existing accounts log in and use messages, vcard-temp, private
            storage, blocking, ping, disco#info, version and entity time
  register  create an account with XEP-0077 in-band registration, then log in
"""

import argparse
import asyncio
import json
import logging
import ssl
import sys
import traceback

from slixmpp import ClientXMPP
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream import ElementBase

TIMEOUT = 10  # seconds for any single server round trip
PLUGINS = ["xep_0030", "xep_0049", "xep_0054", "xep_0077", "xep_0092",
           "xep_0191", "xep_0199", "xep_0202"]


def report(step, **fields):
    print(json.dumps({"step": step, **fields}, default=str), flush=True)


class Note(ElementBase):
    """A private XML payload (XEP-0049) in a namespace of our own."""
    name = "note"
    namespace = "urn:aldis:test:note"
    plugin_attrib = "aldis_note"
    interfaces = {"value"}
    sub_interfaces = interfaces


class Client(ClientXMPP):
    def __init__(self, jid, password, mech=None, tls12=False):
        super().__init__(jid, password, sasl_mech=mech)
        # The test server's certificate is self-signed.
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        if tls12:
            # slixmpp 1.8 only knows the tls-unique channel binding, which
            # TLS 1.3 does not define (RFC 9266); see slixmpp_test.go.
            self.ssl_context.maximum_version = ssl.TLSVersion.TLSv1_2
        for p in PLUGINS:
            self.register_plugin(p)
        self["xep_0049"].register(Note)
        loop = asyncio.get_event_loop()
        self.started = loop.create_future()
        self.messages = asyncio.Queue()
        self.add_event_handler("session_start", self._start)
        self.add_event_handler("message", self.messages.put_nowait)
        self.add_event_handler("message_error", self.messages.put_nowait)
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

    def mechanism(self):
        mech = self["feature_mechanisms"].mech
        return mech.name if mech else None

    async def next_message(self, timeout=TIMEOUT):
        """The next message, or None when none arrives in time."""
        try:
            return await asyncio.wait_for(self.messages.get(), timeout)
        except asyncio.TimeoutError:
            return None


def iq_error(e):
    return {"condition": e.iq["error"]["condition"], "type": e.iq["error"]["type"]}


async def login(jid, password, addr, args):
    c = Client(jid, password, args.mech, args.tls12)
    c.connect(address=addr)
    await asyncio.wait_for(c.started, 30)
    report("login", jid=str(c.boundjid), mechanism=c.mechanism(), tls=c.socket.version())
    return c


def message_fields(m):
    if m is None:
        return {"received": False}
    return {"received": True, "from": str(m["from"]), "type": m["type"], "body": m["body"],
            "error": m["error"]["condition"] if m["type"] == "error" else ""}


async def exchange(args, addr):
    alice = await login(args.jid, args.password, addr, args)
    bob = await login(args.peer_jid, args.peer_password, addr, args)

    # One-to-one messages, both ways.
    alice.send_message(mto=args.peer_jid, mbody="hello bob", mtype="chat")
    report("bob_got", **message_fields(await bob.next_message()))
    bob.send_message(mto=alice.boundjid.full, mbody="hello alice", mtype="chat")
    report("alice_got", **message_fields(await alice.next_message()))

    # vcard-temp: alice publishes, reads it back, and bob reads it.
    vcard = alice["xep_0054"].make_vcard()
    vcard["FN"] = "Alice Liddell"
    vcard["NICKNAME"] = "alice"
    await alice["xep_0054"].publish_vcard(vcard, timeout=TIMEOUT)
    own = await alice["xep_0054"].get_vcard(local=False, cached=False, timeout=TIMEOUT)
    report("vcard_own", fn=own["vcard_temp"]["FN"], nickname=own["vcard_temp"]["NICKNAME"])
    other = await bob["xep_0054"].get_vcard(args.jid, local=False, cached=False, timeout=TIMEOUT)
    report("vcard_peer", fn=other["vcard_temp"]["FN"])

    # Private XML storage is per account: bob does not see alice's.
    note = Note()
    note["value"] = "the cake is in the fridge"
    await alice["xep_0049"].store(note, timeout=TIMEOUT)
    got = await alice["xep_0049"].retrieve("aldis_note", timeout=TIMEOUT)
    report("private_own", value=got["private"]["aldis_note"]["value"])
    got = await bob["xep_0049"].retrieve("aldis_note", timeout=TIMEOUT)
    report("private_peer", value=got["private"]["aldis_note"]["value"])

    # Blocking: bob blocks alice; her messages no longer reach him.
    await bob["xep_0191"].block([args.jid], timeout=TIMEOUT)
    blocked = await bob["xep_0191"].get_blocked(timeout=TIMEOUT)
    report("blocklist", items=sorted(str(j) for j in blocked["blocklist"]["items"]))
    alice.send_message(mto=args.peer_jid, mbody="are you there?", mtype="chat")
    report("bob_got_while_blocked", **message_fields(await bob.next_message(timeout=1)))
    report("alice_got_while_blocked", **message_fields(await alice.next_message(timeout=1)))
    await bob["xep_0191"].unblock([args.jid], timeout=TIMEOUT)
    blocked = await bob["xep_0191"].get_blocked(timeout=TIMEOUT)
    report("blocklist_after_unblock", items=sorted(str(j) for j in blocked["blocklist"]["items"]))
    alice.send_message(mto=args.peer_jid, mbody="unblocked now", mtype="chat")
    report("bob_got_after_unblock", **message_fields(await bob.next_message()))

    # Server services.
    rtt = await alice["xep_0199"].ping(jid=args.domain, timeout=TIMEOUT)
    report("ping", ok=rtt is not None)
    info = await alice["xep_0030"].get_info(jid=args.domain, local=False, cached=False, timeout=TIMEOUT)
    report("disco_info",
           identities=sorted([i[0], i[1]] for i in info["disco_info"]["identities"]),
           features=sorted(info["disco_info"]["features"]))
    version = await alice["xep_0092"].get_version(args.domain, timeout=TIMEOUT)
    report("version", name=version["software_version"]["name"],
           version=version["software_version"]["version"])
    t = await alice["xep_0202"].get_entity_time(args.domain, timeout=TIMEOUT)
    # The raw text: slixmpp 1.8's parser appends a second "Z" to a correct
    # XEP-0202 <utc/> and fails, so the Go test checks the format itself.
    report("time", utc=t["entity_time"]._get_sub_text("utc"), tzo=t["entity_time"]._get_sub_text("tzo"))

    for c in (alice, bob):
        c.disconnect()
        await c.disconnected


async def register(args, addr):
    c = Client(args.jid, args.password, args.mech, args.tls12)
    c["xep_0077"].force_registration = True
    # slixmpp 1.8 holds back every stanza but bind and session until the
    # session starts, so its own pre-login registration iq would never leave.
    c._always_send_everything = True

    async def on_register(_form):
        iq = c.make_iq_set()
        iq["register"]["username"] = c.boundjid.user
        iq["register"]["password"] = c.password
        try:
            await iq.send(timeout=TIMEOUT)
            report("register", ok=True)
        except IqError as e:
            report("register", ok=False, **iq_error(e))
            c.disconnect()
        except IqTimeout:
            report("register", ok=False, condition="timeout")
            c.disconnect()

    c.add_event_handler("register", on_register)
    c.connect(address=addr)
    await asyncio.wait_for(c.started, 30)
    report("login", jid=str(c.boundjid), mechanism=c.mechanism(), tls=c.socket.version())
    c.disconnect()
    await c.disconnected

    # The new account works from a fresh connection.
    again = await login(args.jid, args.password, addr, args)
    report("login_again", jid=str(again.boundjid))
    again.disconnect()
    await again.disconnected


async def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenario", choices=["exchange", "register"])
    p.add_argument("--addr", required=True, help="host:port of the STARTTLS listener")
    p.add_argument("--domain", required=True)
    p.add_argument("--jid", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--peer-jid")
    p.add_argument("--peer-password")
    p.add_argument("--mech", help="force one SASL mechanism (default: slixmpp's choice)")
    p.add_argument("--tls12", action="store_true", help="use TLS 1.2 at most")
    p.add_argument("--debug", action="store_true", help="log the XML stream to stderr")
    args = p.parse_args()
    if args.debug:
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,
                            format="%(asctime)s %(name)s %(message)s")
    host, port = args.addr.rsplit(":", 1)
    addr = (host, int(port))
    if args.scenario == "exchange":
        await exchange(args, addr)
    else:
        await register(args, addr)
    report("done")


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except BaseException as e:  # report everything, including timeouts
        report("exception", error=repr(e), traceback=traceback.format_exc())
        sys.exit(1)
