#!/usr/bin/python3
"""Client state indication (XEP-0352), avatars (XEP-0084) and bookmarks in
PEP (XEP-0048 stored as XEP-0223 private PEP data) with slixmpp.

Run by integration/mobile_test.go with /usr/bin/python3 (python3-slixmpp).
Each observation is one JSON line {"step": NAME, ...}; the last is
{"step": "done"} or {"step": "exception", ...} with exit status 1.
"""

import asyncio
from slixmpp.exceptions import IqError
from slixmpp.plugins.xep_0048.stanza import Bookmarks

from aldis_slixmpp import TIMEOUT, Client, befriend, login, parser, report, run


class C(Client):
    def __init__(self, jid, password):
        super().__init__(jid, password, ['xep_0030', 'xep_0115', 'xep_0163', 'xep_0084', 'xep_0048', 'xep_0223', 'xep_0352', 'xep_0085'])
        self.observe('presence_available', 'presence')
        self.observe('presence_away', 'presence')
        self.observe('presence_xa', 'presence')
        self.observe('presence_dnd', 'presence')
        self.observe('presence_chat', 'presence')
        self.observe('chatstate_composing', 'composing')
        self.observe('message', 'message')
        self.observe('avatar_metadata_publish', 'avatar')


async def main(a):
    alice = await login(C, a.alice + "/phone", a.alice_password, a.addr)
    bob = await login(C, a.bob + "/phone", a.bob_password, a.addr)
    subscription = await befriend(alice, bob)
    await asyncio.sleep(0.5)
    bob.drain()
    report("contacts", subscription=subscription)

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
    laptop = await login(C, a.alice + "/laptop", a.alice_password, a.addr)
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
    p = parser()
    p.add_argument("--domain", required=True)
    run(main, p)
