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

import asyncio

from aldis_slixmpp import TIMEOUT, Client, befriend, login, parser, report, run


class C(Client):
    def __init__(self, jid, password):
        super().__init__(jid, password, ['xep_0030', 'xep_0115', 'xep_0163', 'xep_0172', 'xep_0280'])
        self.observe('carbon_received', 'received')
        self.observe('carbon_sent', 'sent')
        self.observe('user_nick_publish', 'nick')
        self.observe('message', 'message')


async def main(a):
    phone = await login(C, a.alice + "/phone", a.alice_password, a.addr)
    laptop = await login(C, a.alice + "/laptop", a.alice_password, a.addr)
    bob = await login(C, a.bob + "/desk", a.bob_password, a.addr)
    report("login")

    report("subscribed", subscription=await befriend(phone, bob))

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
    p = parser()
    run(main, p)
