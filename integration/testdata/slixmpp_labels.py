#!/usr/bin/python3
"""Security labels (XEP-0258) with slixmpp's xep_0258 plugin: a SECRET user
(alice) and an UNCLASSIFIED one (bob) talk one to one and in a room; each
must see only what they are cleared for, live, in history and in the
room's archive, and nothing may leak through errors.

Run by integration/labels_test.go with /usr/bin/python3 (python3-slixmpp).
Each observation is one JSON line {"step": NAME, ...}; the last is
{"step": "done"} or {"step": "exception", ...} with exit status 1.
"""

import asyncio
import re

from slixmpp import JID
from slixmpp.exceptions import IqError, PresenceError
from slixmpp.xmlstream import ET

from aldis_slixmpp import TIMEOUT, Client, login, parser, report, run

SECRET = ("<securitylabel xmlns='urn:xmpp:sec-label:0'>"
          "<displaymarking fgcolor='black' bgcolor='white'>UNCLASSIFIED</displaymarking>"
          "<label><esssecuritylabel xmlns='urn:xmpp:sec-label:ess:0'>MQoCAQQGBSsaAQMB</esssecuritylabel></label>"
          "</securitylabel>")


class C(Client):
    def __init__(self, jid, password):
        super().__init__(jid, password, ["xep_0030", "xep_0045", "xep_0059", "xep_0199",
                                         "xep_0203", "xep_0258", "xep_0313"])
        self.observe("message", "message")
        self.observe("message_error", "message_error")
        self.observe("presence_error", "presence_error")
        self.observe("groupchat_message", "groupchat")


def labelled(stanza):
    stanza.xml.append(ET.fromstring(SECRET))
    return stanza


def marking(m):
    """The display marking as slixmpp's xep_0258 plugin reads it."""
    return m["security_label"]["display_marking"]["value"]


async def quiet(c, kind, seconds=1.0):
    """What arrived of kind within seconds (to show nothing did)."""
    got = []
    end = asyncio.get_event_loop().time() + seconds
    while True:
        left = end - asyncio.get_event_loop().time()
        if left <= 0:
            return got
        try:
            k, s = await asyncio.wait_for(c.events.get(), left)
        except asyncio.TimeoutError:
            return got
        if k == kind:
            got.append(s)


async def main(a):
    alice = await login(C, a.alice + "/desk", a.alice_password, a.addr)
    bob = await login(C, a.bob + "/desk", a.bob_password, a.addr)
    domain = JID(a.alice).domain

    info = await alice["xep_0030"].get_info(jid=domain, timeout=TIMEOUT)
    feats = info["disco_info"]["features"]
    report("disco", label="urn:xmpp:sec-label:0" in feats, catalog="urn:xmpp:sec-label:catalog:2" in feats)

    for who, c in (("alice", alice), ("bob", bob)):
        iq = await c["xep_0258"].get_catalog(domain, timeout=TIMEOUT)
        report("catalog", who=who, selectors=re.findall(r"selector=['\"]([^'\"]*)", str(iq)))

    # One to one: SECRET to bob bounces, and the error says nothing.
    alice.drain()
    bob.drain()
    labelled(alice.make_message(mto=a.bob, mbody="the secret plan", mtype="chat", mfrom=None)).send()
    err = await alice.wait("message_error")
    report("secret_to_bob", condition=err["error"]["condition"], type=err["error"]["type"],
           leaked=("secret plan" in str(err)) or ("securitylabel" in str(err)))
    got = await quiet(bob, "message")
    report("bob_got_secret", count=len(got))
    alice.send_message(mto=a.bob, mbody="hello bob", mtype="chat")
    m = await bob.wait("message", lambda s: s["body"] == "hello bob")
    report("bob_got_open", marking=marking(m))
    # bob may not send SECRET at all.
    labelled(bob.make_message(mto=a.alice, mbody="bob's secret", mtype="chat")).send()
    err = await bob.wait("message_error")
    report("bob_sends_secret", condition=err["error"]["condition"])

    # A label on presence or on an iq is refused.
    labelled(bob.make_presence(pto=a.alice)).send()
    perr = await bob.wait("presence_error")
    report("labelled_presence", condition=perr["error"]["condition"])
    iq = bob.make_iq_get(queryxmlns="jabber:iq:version", ito=a.alice + "/desk")
    labelled(iq)
    try:
        await iq.send(timeout=TIMEOUT)
        report("labelled_iq", condition="none")
    except IqError as e:
        report("labelled_iq", condition=e.iq["error"]["condition"])

    # A room: persistent, so it keeps an archive.
    room = JID("ops@conference." + domain)
    await alice["xep_0045"].join_muc_wait(room, "Alice", maxstanzas=0, timeout=TIMEOUT)
    cfg = alice.make_iq_set(ito=room)
    cfg.xml.append(ET.fromstring(
        "<query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'>"
        "<field var='muc#roomconfig_persistentroom'><value>1</value></field></x></query>"))
    await cfg.send(timeout=TIMEOUT)
    await bob["xep_0045"].join_muc_wait(room, "Bob", maxstanzas=0, timeout=TIMEOUT)
    rcat = await bob["xep_0258"].get_catalog(room, timeout=TIMEOUT)
    report("room_catalog", who="bob", selectors=re.findall(r"selector=['\"]([^'\"]*)", str(rcat)))
    alice.drain()
    bob.drain()
    labelled(alice.make_message(mto=room, mbody="secret-1", mtype="groupchat")).send()
    alice.send_message(mto=room, mbody="open-1", mtype="groupchat")
    # bob speaks once alice's two are through, so the order is known.
    alice_seen = {}
    while "open-1" not in alice_seen:
        m = await alice.wait("groupchat", lambda s: s["body"] != "")
        alice_seen[m["body"]] = marking(m)
    bob.send_message(mto=room, mbody="open-2", mtype="groupchat")
    for who, c, seen in (("alice", alice, alice_seen), ("bob", bob, {})):
        while "open-2" not in seen:
            m = await c.wait("groupchat", lambda s: s["body"] != "")
            seen[m["body"]] = marking(m)
        report("room_live", who=who, bodies=sorted(seen), markings=sorted(set(seen.values())))
    # errors to alice? none: fan-out skips silently.
    report("alice_errors", count=len(await quiet(alice, "message_error", 0.5)))

    # History for a second session of each.
    for who, jid, pw in (("alice", a.alice, a.alice_password), ("bob", a.bob, a.bob_password)):
        c2 = await login(C, jid + "/late", pw, a.addr)
        _, _, _, hist = await c2["xep_0045"].join_muc_wait(room, who + "-late", maxstanzas=10, timeout=TIMEOUT)
        report("history", who=who, bodies=[m["body"] for m in hist])
        bodies = []
        async for r in c2["xep_0313"].iterate(jid=room, rsm={"max": 10}):
            bodies.append(r["mam_result"]["forwarded"]["stanza"]["body"])
        report("archive", who=who, bodies=bodies)
        c2.disconnect()

    for c in (alice, bob):
        c.disconnect()
    report("done")


if __name__ == "__main__":
    run(main, parser())
