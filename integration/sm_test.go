package integration

import (
	"bufio"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// smScript is a slixmpp client for stream management (XEP-0198). It is
// kept here rather than in testdata so that this test stays in one file.
// Like testdata/slixmpp_client.py it prints one JSON object per line.
//
// alice enables stream management with resumption; bob sends her messages
// before, while and after her TCP connection is killed (no
// </stream:stream>, as when a phone loses its network); she reconnects
// and resumes. Every message must reach her exactly once.
const smScript = `
import argparse, asyncio, json, logging, ssl, sys, traceback
from slixmpp import ClientXMPP

TIMEOUT = 10

def report(step, **fields):
    print(json.dumps({"step": step, **fields}, default=str), flush=True)

class Client(ClientXMPP):
    def __init__(self, jid, password, sm):
        super().__init__(jid, password, sasl_mech="SCRAM-SHA-256")
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        # slixmpp 1.8 only knows the tls-unique channel binding (see slixmpp_test.go).
        self.ssl_context.maximum_version = ssl.TLSVersion.TLSv1_2
        if sm:
            self.register_plugin("xep_0198")
        loop = asyncio.get_event_loop()
        self.started = loop.create_future()
        self.resumed = loop.create_future()
        self.bodies = []
        self.arrived = asyncio.Event()
        self.add_event_handler("session_start", self._start)
        self.add_event_handler("session_resumed", self._resumed)
        self.add_event_handler("message", self._message)
        self.add_event_handler("failed_all_auth", self._failed)

    async def _start(self, _event):
        await self.get_roster(timeout=TIMEOUT)
        self.send_presence()
        if not self.started.done():
            self.started.set_result(True)

    def _resumed(self, _event):
        if not self.resumed.done():
            self.resumed.set_result(True)

    def _failed(self, event):
        if not self.started.done():
            self.started.set_exception(RuntimeError("login failed: %r" % (event,)))

    def _message(self, m):
        if m["type"] in ("chat", "normal"):
            self.bodies.append(m["body"])
            self.arrived.set()

    async def wait_bodies(self, want):
        async def wait():
            while not all(b in self.bodies for b in want):
                self.arrived.clear()
                await self.arrived.wait()
        await asyncio.wait_for(wait(), TIMEOUT)

async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--addr", required=True)
    p.add_argument("--alice", required=True)
    p.add_argument("--bob", required=True)
    p.add_argument("--password", required=True)
    args = p.parse_args()
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    host, port = args.addr.rsplit(":", 1)
    addr = (host, int(port))

    alice = Client(args.alice, args.password, True)
    alice.connect(address=addr)
    await asyncio.wait_for(alice.started, 30)
    sm = alice["xep_0198"]
    for _ in range(100):
        if sm.sm_id:
            break
        await asyncio.sleep(0.05)
    report("enabled", id=sm.sm_id)
    bob = Client(args.bob, args.password, False)
    bob.connect(address=addr)
    await asyncio.wait_for(bob.started, 30)
    full = alice.boundjid.full
    report("login", alice=full, bob=bob.boundjid.full)

    before = ["before-%d" % i for i in range(1, 4)]
    for b in before:
        bob.send_message(mto=full, mbody=b, mtype="chat")
    await alice.wait_bodies(before)

    # Messages on their way when the connection dies, then while it is gone.
    for i in range(1, 4):
        bob.send_message(mto=full, mbody="inflight-%d" % i, mtype="chat")
    gone = alice.disconnected
    alice.abort()
    await asyncio.wait_for(gone, TIMEOUT)
    report("killed", received=list(alice.bodies))
    for i in range(1, 4):
        bob.send_message(mto=full, mbody="during-%d" % i, mtype="chat")
    await asyncio.sleep(0.5)

    alice.connect(address=addr)
    await asyncio.wait_for(alice.resumed, 30)
    report("resumed", jid=alice.boundjid.full)
    want = before + ["inflight-%d" % i for i in range(1, 4)] + ["during-%d" % i for i in range(1, 4)]
    await alice.wait_bodies(want)
    alice.send_message(mto=bob.boundjid.full, mbody="after-resume", mtype="chat")
    await bob.wait_bodies(["after-resume"])
    # Time for duplicates to show up, if there were any.
    await asyncio.sleep(1)
    report("received", bodies=list(alice.bodies), bob=list(bob.bodies))
    for c in (alice, bob):
        c.disconnect()
        await c.disconnected

if __name__ == "__main__":
    try:
        asyncio.run(main())
        report("done")
    except BaseException as e:
        report("exception", error=repr(e), traceback=traceback.format_exc())
        sys.exit(1)
`

// TestSlixmppStreamResumption: slixmpp's XEP-0198 client loses its TCP
// connection mid-conversation and resumes; nothing is lost or duplicated.
func TestSlixmppStreamResumption(t *testing.T) {
	integration(t)
	requireSlixmpp(t)
	srv := startServer(t, serverOpts{})
	srv.AddUser("alice", "the-secret")
	srv.AddUser("bob", "the-secret")

	script := filepath.Join(t.TempDir(), "sm_client.py")
	if err := os.WriteFile(script, []byte(smScript), 0o600); err != nil {
		t.Fatal(err)
	}
	r := runScript(t, script, "--addr", srv.Addr,
		"--alice", srv.JID("alice"), "--bob", srv.JID("bob"), "--password", "the-secret")
	if !r.ok() {
		t.Fatalf("slixmpp scenario did not finish:\n%s", r)
	}
	if id := r.first("enabled").str("id"); id == "" {
		t.Errorf("no resumption id")
	}
	if got, want := r.first("resumed").str("jid"), r.first("login").str("alice"); got != want {
		t.Errorf("resumed as %s, want the same full JID %s", got, want)
	}
	count := map[string]int{}
	for _, b := range r.first("received").strs("bodies") {
		count[b]++
	}
	for _, kind := range []string{"before", "inflight", "during"} {
		for i := 1; i <= 3; i++ {
			b := kind + "-" + strconv.Itoa(i)
			if count[b] != 1 {
				t.Errorf("alice got %q %d times, want once", b, count[b])
			}
			delete(count, b)
		}
	}
	for b, n := range count {
		t.Errorf("alice got %q %d times, want never", b, n)
	}
	if got := r.first("received").strs("bob"); len(got) != 1 || got[0] != "after-resume" {
		t.Errorf("bob got %q, want [after-resume]", got)
	}
	if n := scrapeMetric(t, srv, "aldis_sm_resumed_total"); n != 1 {
		t.Errorf("aldis_sm_resumed_total = %v, want 1", n)
	}
	if t.Failed() {
		t.Logf("slixmpp run:\n%s", r)
	}
}

// scrapeMetric reads one metric from the admin endpoint.
func scrapeMetric(t *testing.T, srv *server, name string) float64 {
	t.Helper()
	hc := &http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Get("http://" + srv.AdminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric %s: %v", name, err)
			}
			return f
		}
	}
	t.Fatalf("/metrics has no %s", name)
	return 0
}
