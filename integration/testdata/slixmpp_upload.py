#!/usr/bin/python3
"""HTTP File Upload (XEP-0363) with slixmpp's xep_0363 plugin: find the
service by disco, ask for a slot, PUT the file, GET it back.

Run by integration/upload_test.go with /usr/bin/python3 (python3-slixmpp,
python3-aiohttp). Each observation is one JSON line {"step": NAME, ...}; the
last is {"step": "done"} or {"step": "exception", ...} with exit status 1.
"""

from aiohttp import ClientSession

from aldis_slixmpp import TIMEOUT, Client, login, parser, report, run

DATA = b"Dear Aldis,\nthis file went up over HTTPS.\n" * 50


class C(Client):
    def __init__(self, jid, password):
        super().__init__(jid, password, ["xep_0030", "xep_0363"])


async def main(a):
    alice = await login(C, a.alice + "/desk", a.alice_password, a.addr)
    # (slixmpp 1.8's find_upload_service never awaits its disco#info
    # requests, so the service is found by hand, the same way.)
    domain = alice.boundjid.domain
    items = await alice["xep_0030"].get_items(jid=domain, timeout=TIMEOUT)
    service = None
    for jid, _node, _name in items["disco_items"]["items"]:
        info = await alice["xep_0030"].get_info(jid=jid, timeout=TIMEOUT)
        if ("store", "file") in [(i[0], i[1]) for i in info["disco_info"]["identities"]] and \
                "urn:xmpp:http:upload:0" in info["disco_info"]["features"]:
            service = jid
    report("service", jid=str(service))
    slot = (await alice["xep_0363"].request_slot(service, "letter.txt", len(DATA), "text/plain", timeout=TIMEOUT))["http_upload_slot"]
    put, get = slot["put"]["url"], slot["get"]["url"]
    report("slot", put=put, get=get)
    # The test's certificate is self-signed: TLS without verification.
    async with ClientSession() as http:
        r = await http.put(put, data=DATA, headers={"Content-Type": "text/plain"}, ssl=False)
        report("put", status=r.status)
        r = await http.get(get, ssl=False)
        body = await r.read()
        report("get", status=r.status, same=(body == DATA), content_type=r.headers.get("Content-Type"),
               disposition=r.headers.get("Content-Disposition"))
    try:
        await alice["xep_0363"].request_slot(service, "huge.bin", 1 << 30, "application/octet-stream", timeout=TIMEOUT)
        report("too_large", refused=False)
    except Exception as e:
        report("too_large", refused=True, error=str(e))
    alice.disconnect()
    report("done")


if __name__ == "__main__":
    run(main, parser())
