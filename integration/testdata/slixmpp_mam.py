#!/usr/bin/python3
"""Message archive (XEP-0313) with slixmpp: alice sends bob messages, some
while bob is offline; bob's new device pages through its archive.

Run by integration/mam_test.go with /usr/bin/python3 (python3-slixmpp). Each
observation is one JSON line {"step": NAME, ...}; the last is {"step": "done"}
or {"step": "exception", ...} with exit status 1.
"""

import asyncio

from aldis_slixmpp import TIMEOUT, Client, login, parser, report, run


class C(Client):
    def __init__(self, jid, password):
        super().__init__(jid, password, ['xep_0030', 'xep_0059', 'xep_0313'])


async def main(a):
    alice = await login(C, a.alice + "/desk", a.alice_password, a.addr)
    for i in range(a.count):
        alice.send_message(mto=a.bob, mbody="message %d" % i, mtype="chat")
    await asyncio.sleep(1)  # let the server route the burst
    report("sent", count=a.count)

    bob = await login(C, a.bob + "/phone", a.bob_password, a.addr)
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
    p = parser()
    p.add_argument("--count", type=int, default=120)
    run(main, p)
