"""An SMTP sink for the mail tests: aiosmtpd on 127.0.0.1, on the port given
after DIR or one chosen by the kernel, printed as "listening on PORT". Each message received is
written, atomically, to DIR/<n>.eml as "MAIL FROM:<...>", one "RCPT TO:<...>"
line per recipient, a blank line, then the data. Recipients whose local part
starts with "reject" are refused with 550 5.1.1; with "tempfail", 451."""
import asyncio
import os
import sys

from aiosmtpd.smtp import SMTP


class Handler:
    def __init__(self, out):
        self.out = out
        self.n = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@", 1)[0]
        if local.startswith("reject"):
            return "550 5.1.1 <%s>: Recipient address rejected: no such user" % address
        if local.startswith("tempfail"):
            return "451 4.3.0 Try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.n += 1
        name = os.path.join(self.out, "%d-%d.eml" % (os.getpid(), self.n))
        with open(name + ".tmp", "wb") as f:
            f.write(("MAIL FROM:<%s>\r\n" % envelope.mail_from).encode())
            for r in envelope.rcpt_tos:
                f.write(("RCPT TO:<%s>\r\n" % r).encode())
            f.write(b"\r\n")
            data = envelope.original_content or envelope.content
            f.write(data if isinstance(data, bytes) else data.encode())
        os.rename(name + ".tmp", name)
        return "250 2.0.0 Message accepted"


async def main(out, port):
    loop = asyncio.get_running_loop()
    handler = Handler(out)
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="sink.test", decode_data=False), "127.0.0.1", port)
    print("listening on %d" % server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0))
