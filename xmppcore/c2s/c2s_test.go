package c2s

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aldis-im/aldis/core/store/sqlite"
	"github.com/aldis-im/aldis/xmppcore/accounts"
	"github.com/aldis-im/aldis/xmppcore/caps"
	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/router"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// testServer runs a plaintext c2s server (tests only) for example.org.
func testServer(tb testing.TB, cfg Config, users ...string) string {
	tb.Helper()
	_, addr := startTestServer(tb, cfg, users...)
	return addr
}

// startTestServer is testServer for tests that look at the Server too.
func startTestServer(tb testing.TB, cfg Config, users ...string) (*Server, string) {
	tb.Helper()
	e := newTestEnv(tb, cfg, users...)
	return e.srv, e.addr
}

// testEnv is a running test server with its router and store.
type testEnv struct {
	srv  *Server
	rt   *router.Router
	db   *sqlite.DB
	addr string
	once sync.Once
}

func newTestEnv(tb testing.TB, cfg Config, users ...string) *testEnv {
	tb.Helper()
	return newTestEnvWith(tb, cfg, nil, users...)
}

// newTestEnvWith is newTestEnv with setup applied to the server before it
// serves.
func newTestEnvWith(tb testing.TB, cfg Config, setup func(*Server), users ...string) *testEnv {
	tb.Helper()
	ctx := context.Background()
	db, err := sqlite.OpenMemory(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	acc := accounts.New(db, 4096)
	for _, u := range users {
		if err := acc.Create(ctx, jid.MustParse(u+"@example.org"), "password1"); err != nil {
			tb.Fatal(err)
		}
	}
	rt, err := router.New(router.Config{Domain: "example.org", Store: db, Accounts: acc, Metrics: cfg.Metrics, OfflineMax: 1000})
	if err != nil {
		tb.Fatal(err)
	}
	cfg.Domain, cfg.Router, cfg.Accounts = "example.org", rt, acc
	cfg.AllowPlainWithoutTLS = true
	srv := New(cfg)
	if setup != nil {
		setup(srv)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	go srv.Serve(ln, false)
	e := &testEnv{srv: srv, rt: rt, db: db, addr: ln.Addr().String()}
	tb.Cleanup(func() {
		e.stop()
		db.Close()
	})
	return e
}

// stop shuts the server down as SIGTERM does, leaving the store open.
func (e *testEnv) stop() {
	e.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		e.srv.Shutdown(ctx)
		e.rt.Close(time.Second)
	})
}

// rawClient is a minimal hand-driven client for protocol-level tests.
type rawClient struct {
	tb testing.TB
	c  net.Conn
	r  *bufio.Reader
}

func dial(tb testing.TB, addr string) *rawClient {
	tb.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return &rawClient{tb: tb, c: c, r: bufio.NewReader(c)}
}

func (r *rawClient) send(s string) {
	r.tb.Helper()
	if _, err := io.WriteString(r.c, s); err != nil {
		r.tb.Fatal(err)
	}
}

// until reads until the accumulated input contains want.
func (r *rawClient) until(want string) string {
	r.tb.Helper()
	r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	buf := make([]byte, 4096)
	for !strings.Contains(b.String(), want) {
		n, err := r.r.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			r.tb.Fatalf("waiting for %q: %v; got %q", want, err, b.String())
		}
	}
	return b.String()
}

const header = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.org' version='1.0'>"

// login authenticates with PLAIN and binds resource res.
func login(tb testing.TB, addr, user, res string) *rawClient {
	return loginOn(dial(tb, addr), user, res)
}

// loginOn authenticates and binds a resource on a connected client.
func loginOn(r *rawClient, user, res string) *rawClient {
	r.send(header)
	r.until("</stream:features>")
	cred := base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00password1"))
	r.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" + cred + "</auth>")
	r.until("<success")
	r.send(header)
	r.until("</stream:features>")
	r.send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>" + res + "</resource></bind></iq>")
	r.until("</iq>")
	return r
}

func TestStreamErrors(t *testing.T) {
	addr := testServer(t, Config{MaxStanza: 4096}, "alice")
	cases := []struct{ name, send, want string }{
		{"dtd", "<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'b'>]>", "restricted-xml"},
		{"wrong namespace", "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' to='example.org' version='1.0'>", "invalid-namespace"},
		{"unknown host", "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='other.example' version='1.0'>", "host-unknown"},
		{"no version", "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.org'>", "unsupported-version"},
		{"garbage", header + "<a></b>", "not-well-formed"},
		{"comment", header + "<!-- hi -->", "restricted-xml"},
		{"before auth", header + "<message to='alice@example.org'><body>x</body></message>", "not-authorized"},
		{"oversize", header + "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" + strings.Repeat("A", 5000) + "</auth>", "policy-violation"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := dial(t, addr)
			r.send(c.send)
			got := r.until("</stream:stream>")
			if !strings.Contains(got, "<"+c.want+" xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>") {
				t.Errorf("want %s stream error, got %s", c.want, got)
			}
		})
	}
	// The server is still there for everyone else.
	r := login(t, addr, "alice", "after")
	r.send("<iq type='get' id='p' to='example.org'><ping xmlns='urn:xmpp:ping'/></iq>")
	r.until("id='p'")
}

func TestAfterBind(t *testing.T) {
	addr := testServer(t, Config{}, "alice", "bob")
	a := login(t, addr, "alice", "a")
	b := login(t, addr, "bob", "b")
	b.send("<presence/>")
	b.until("<presence")
	a.send("<message to='bob@example.org' id='m1' type='chat'><body>hello</body></message>")
	got := b.until("id='m1'")
	if !strings.Contains(got, "from='alice@example.org/a'") {
		t.Errorf("from not stamped with the full JID: %s", got)
	}
	// A forged from is overwritten.
	a.send("<message to='bob@example.org' from='mallory@example.org' id='m2'><body>x</body></message>")
	got = b.until("id='m2'")
	if strings.Contains(got, "mallory") {
		t.Errorf("spoofed from delivered: %s", got)
	}
	a.send("<iq type='get'><ping xmlns='urn:xmpp:ping'/></iq>")
	a.until("bad-request")
	a.send("<iq type='set' id='s'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>")
	a.until("id='s'")
	a.send("<foo/>")
	a.until("unsupported-stanza-type")
}

func TestAuthFailuresAreLimited(t *testing.T) {
	addr := testServer(t, Config{Limiter: NewAuthLimiter(100, 2, time.Minute)}, "alice")
	bad := base64.StdEncoding.EncodeToString([]byte("\x00alice\x00wrong-password"))
	good := base64.StdEncoding.EncodeToString([]byte("\x00alice\x00password1"))
	r := dial(t, addr)
	r.send(header)
	r.until("</stream:features>")
	for range 2 {
		r.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" + bad + "</auth>")
		r.until("<not-authorized/>")
	}
	r.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" + good + "</auth>")
	if got := r.until("</failure>"); !strings.Contains(got, "temporary-auth-failure") {
		t.Errorf("right password accepted while the account is locked: %s", got)
	}
}

func TestSlowReaderIsDisconnected(t *testing.T) {
	addr := testServer(t, Config{SendQueue: 8}, "alice", "bob")
	a := login(t, addr, "alice", "a")
	b := login(t, addr, "bob", "b")
	b.send("<presence/>")
	b.until("<presence")
	// Bob stops reading; Alice floods him. His queue overflows and only his
	// stream ends; Alice keeps working. (Offline storage takes the rest, so
	// no bounce fills Alice's own queue while she is busy writing.)
	big := strings.Repeat("x", 60000)
	for i := range 200 {
		a.send(fmt.Sprintf("<message to='bob@example.org' id='f%d'><body>%s</body></message>", i, big))
	}
	a.send("<iq type='get' id='alive' to='example.org'><ping xmlns='urn:xmpp:ping'/></iq>")
	a.until("id='alive'")
}

// BenchmarkMessageRoundTrip measures one 1:1 message through the whole
// server: read from one socket, parse, route, serialise, write to another.
func BenchmarkMessageRoundTrip(b *testing.B) {
	addr := testServer(b, Config{SendQueue: 1 << 16}, "alice", "bob")
	a := login(b, addr, "alice", "a")
	bob := login(b, addr, "bob", "b")
	bob.send("<presence/>")
	bob.until("<presence")
	msg := []byte("<message to='bob@example.org/b' type='chat' id='a3f9c2d1-77e4-4b0a-9c61-2f0d8e5b1c3a' xml:lang='en'><body>Hello Bob, the status report for the northern sector is ready for review.</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>")
	const batch = 64
	payload := bytes.Repeat(msg, batch)
	done := make(chan int)
	bob.c.SetReadDeadline(time.Time{})
	go func() {
		end := []byte("</message>")
		buf := make([]byte, 64<<10)
		carry := 0 // bytes of a possibly split end tag kept from the last read
		n := 0
		for {
			k, err := bob.c.Read(buf[carry:])
			data := buf[:carry+k]
			n += bytes.Count(data, end)
			carry = min(len(end)-1, len(data))
			copy(buf, data[len(data)-carry:])
			if err != nil || n >= b.N {
				done <- n
				return
			}
		}
	}()
	b.ResetTimer()
	for sent := 0; sent < b.N; sent += batch {
		k := min(batch, b.N-sent)
		if _, err := a.c.Write(payload[:k*len(msg)]); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case n := <-done:
		if n < b.N {
			b.Fatalf("%d of %d messages arrived", n, b.N)
		}
	case <-time.After(60 * time.Second):
		b.Fatal("messages lost")
	}
}

// TestFloodArrivesInOrder sends a burst faster than the recipient's writer
// drains it: every message must arrive, once, in the order sent.
func TestFloodArrivesInOrder(t *testing.T) {
	addr := testServer(t, Config{SendQueue: 1 << 16}, "alice", "bob")
	a := login(t, addr, "alice", "a")
	bob := login(t, addr, "bob", "b")
	bob.send("<presence/>")
	bob.until("<presence")
	const n = 3000
	var sb strings.Builder
	for i := range n {
		fmt.Fprintf(&sb, "<message to='bob@example.org/b' type='chat' id='%d' xml:lang='en'><body>Hello Bob</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>", i)
	}
	go a.c.Write([]byte(sb.String()))
	got := bob.until(fmt.Sprintf("id='%d'", n-1))
	next := 0
	for _, part := range strings.Split(got, "<message ")[1:] {
		want := fmt.Sprintf("id='%d'", next)
		if !strings.Contains(part, want) {
			t.Fatalf("message %d missing or out of order; got %.120s", next, part)
		}
		next++
	}
	if next != n {
		t.Fatalf("got %d of %d messages", next, n)
	}
}

// TestServerCaps: the post-authentication features carry the server's
// entity capabilities, and the disco#info they stand for hashes to them.
func TestServerCaps(t *testing.T) {
	addr := testServer(t, Config{}, "alice")
	r := dial(t, addr)
	r.send(header)
	r.until("</stream:features>")
	cred := base64.StdEncoding.EncodeToString([]byte("\x00alice\x00password1"))
	r.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" + cred + "</auth>")
	r.until("<success")
	r.send(header)
	feats := r.until("</stream:features>")
	i := strings.Index(feats, "<c xmlns='http://jabber.org/protocol/caps'")
	if i < 0 {
		t.Fatalf("no caps in the features: %s", feats)
	}
	c, err := wire.ParseElement(feats[i : i+strings.Index(feats[i:], "/>")+2])
	if err != nil {
		t.Fatal(err)
	}
	r.send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
	r.until("</iq>")
	r.send("<iq type='get' id='d' to='example.org'><query xmlns='http://jabber.org/protocol/disco#info' node='" + c.Attr("node") + "#" + c.Attr("ver") + "'/></iq>")
	res, err := wire.ParseElement(strings.TrimSpace(r.until("</iq>")))
	if err != nil {
		t.Fatal(err)
	}
	q := res.Child("query", "http://jabber.org/protocol/disco#info")
	if q == nil || caps.Ver(q, "sha-1") != c.Attr("ver") {
		t.Fatalf("disco#info for node#ver %s does not hash to the advertised ver: %s", c.Attr("ver"), res)
	}
}
