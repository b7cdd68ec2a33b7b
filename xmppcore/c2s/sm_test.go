package c2s

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aldis-im/aldis/core/obs"
	"github.com/aldis-im/aldis/xmppcore/stanza"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// xclient is a hand-driven client that reads whole elements, so tests can
// count stanzas the way a stream management client does.
type xclient struct {
	tb  testing.TB
	c   net.Conn
	dec *wire.Decoder
	// in counts the stanzas received since <enabled/> or <resumed/>.
	in       uint32
	counting bool
	autoAck  bool // answer the server's <r/> without showing it to the test
}

func xdial(tb testing.TB, addr string) *xclient {
	tb.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return &xclient{tb: tb, c: c, dec: wire.NewDecoder(c, wire.Limits{MaxStanza: 1 << 20})}
}

func (x *xclient) send(s string) {
	x.tb.Helper()
	x.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := x.c.Write([]byte(s)); err != nil {
		x.tb.Fatal(err)
	}
}

// read returns the next top-level element, or nil and the error (a
// timeout, the end of the stream) when none comes within d.
func (x *xclient) read(d time.Duration) (*wire.Element, error) {
	for {
		x.c.SetReadDeadline(time.Now().Add(d))
		tok, err := x.dec.Next()
		if err != nil {
			return nil, err
		}
		switch tok.Kind {
		case wire.StreamStart:
			continue
		case wire.StreamEnd:
			return nil, errors.New("stream closed")
		}
		el := tok.Elem
		switch {
		case el.Space == stanza.NSClient:
			if x.counting {
				x.in++
			}
		case el.Space == nsSM && (el.Local() == "enabled" || el.Local() == "resumed"):
			x.counting = true
		case el.Space == nsSM && el.Local() == "r" && x.autoAck:
			x.ack(x.in)
			continue
		}
		return el, nil
	}
}

// next returns the next element.
func (x *xclient) next() *wire.Element {
	x.tb.Helper()
	el, err := x.read(5 * time.Second)
	if err != nil {
		x.tb.Fatalf("reading: %v", err)
	}
	return el
}

// until reads up to the first element matching want and returns what it
// read, that element last.
func (x *xclient) until(what string, want func(*wire.Element) bool) []*wire.Element {
	x.tb.Helper()
	var got []*wire.Element
	for {
		el, err := x.read(5 * time.Second)
		if err != nil {
			x.tb.Fatalf("waiting for %s: %v; got %s", what, err, dump(got))
		}
		got = append(got, el)
		if want(el) {
			return got
		}
	}
}

// quiet fails if an element arrives within d.
func (x *xclient) quiet(d time.Duration) {
	x.tb.Helper()
	el, err := x.read(d)
	if el != nil {
		x.tb.Fatalf("unexpected %s", el)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		x.tb.Fatalf("waiting for silence: %v", err)
	}
}

func (x *xclient) ack(h uint32) { x.send(fmt.Sprintf("<a xmlns='urn:xmpp:sm:3' h='%d'/>", h)) }

func dump(els []*wire.Element) string {
	var b strings.Builder
	for _, e := range els {
		b.WriteString(e.String())
	}
	return b.String()
}

func named(local, space string) func(*wire.Element) bool {
	return func(e *wire.Element) bool { return e.Local() == local && e.Space == space }
}

func withID(local, id string) func(*wire.Element) bool {
	return func(e *wire.Element) bool { return e.Local() == local && e.Attr("id") == id }
}

// auth opens a stream and authenticates with PLAIN; it returns the features
// offered after authentication.
func (x *xclient) auth(user string) *wire.Element {
	x.tb.Helper()
	x.send(header)
	x.until("features", named("features", stanza.NSStream))
	cred := base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00password1"))
	x.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" + cred + "</auth>")
	x.until("success", named("success", stanza.NSSASL))
	x.dec.Reset(x.c)
	x.send(header)
	got := x.until("features", named("features", stanza.NSStream))
	return got[len(got)-1]
}

func (x *xclient) bind(res string) {
	x.tb.Helper()
	x.send("<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>" + res + "</resource></bind></iq>")
	x.until("bind result", withID("iq", "bind"))
}

// enable turns on stream management with resumption and returns the id.
func (x *xclient) enable() string {
	x.tb.Helper()
	x.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
	got := x.until("enabled", named("enabled", nsSM))
	return got[len(got)-1].Attr("id")
}

// online logs user in as resource res and sends initial presence; with sm
// it enables stream management with resumption and returns the id.
func online(tb testing.TB, addr, user, res string, sm bool) (*xclient, string) {
	tb.Helper()
	x := xdial(tb, addr)
	x.auth(user)
	x.bind(res)
	x.send("<presence/>")
	x.until("own presence", named("presence", stanza.NSClient))
	id := ""
	if sm {
		id = x.enable()
	}
	return x, id
}

// ping sends an iq to the server and reads up to its result: everything
// the server queued before the result arrives first.
func (x *xclient) ping(id string) []*wire.Element {
	x.tb.Helper()
	x.send("<iq type='get' id='" + id + "' to='example.org'><ping xmlns='urn:xmpp:ping'/></iq>")
	return x.until("ping "+id, withID("iq", id))
}

// waitFor polls cond until it holds.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// resumable returns the session with resumption id id, or nil.
func (s *Server) resumableFor(id string) *session { return s.lookupResumable(id) }

func bodies(els []*wire.Element) []string {
	var out []string
	for _, e := range els {
		if e.Local() == "message" {
			out = append(out, e.ChildText("body", stanza.NSClient))
		}
	}
	return out
}

func TestSMNegotiation(t *testing.T) {
	addr := testServer(t, Config{}, "alice")
	x := xdial(t, addr)
	f := x.auth("alice")
	for _, ns := range []string{nsSM, nsCSI} {
		found := false
		for c := range f.Elements() {
			found = found || c.Space == ns
		}
		if !found {
			t.Errorf("features after authentication lack %s: %s", ns, f)
		}
	}
	steps := []struct {
		name, send, want string
	}{
		{"enable before bind", "<enable xmlns='urn:xmpp:sm:3'/>", "<failed xmlns='urn:xmpp:sm:3'><unexpected-request "},
		{"bind", "<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>", "<iq "},
		{"enable", "<enable xmlns='urn:xmpp:sm:3' resume='1' max='60'/>", "resume='true' max='60'/>"},
		{"enable twice", "<enable xmlns='urn:xmpp:sm:3'/>", "<failed xmlns='urn:xmpp:sm:3'><unexpected-request "},
		{"resume after bind", "<resume xmlns='urn:xmpp:sm:3' previd='x' h='0'/>", "<failed xmlns='urn:xmpp:sm:3'><unexpected-request "},
		{"request", "<r xmlns='urn:xmpp:sm:3'/>", "<a xmlns='urn:xmpp:sm:3' h='0'/>"},
	}
	for _, st := range steps {
		x.send(st.send)
		if got := x.next().String(); !strings.Contains(got, st.want) {
			t.Errorf("%s: got %s, want %s", st.name, got, st.want)
		}
	}
}

func TestSMEnabledID(t *testing.T) {
	addr := testServer(t, Config{}, "alice")
	ids := map[string]bool{}
	for i := range 3 {
		x, id := online(t, addr, "alice", fmt.Sprint("r", i), true)
		x.c.Close()
		// At least 128 random bits, never reused.
		if b, err := base64.RawURLEncoding.DecodeString(id); err != nil || len(b) < 16 || ids[id] {
			t.Errorf("resumption id %q: not 128 unique random bits", id)
		}
		ids[id] = true
	}
}

func TestAckQueue(t *testing.T) {
	const top = math.MaxUint32
	cases := []struct {
		name    string
		start   uint32 // acked before the pushes
		push    int
		acks    []uint32
		left    int
		sent    uint32
		tooHigh bool
	}{
		{"none", 0, 3, nil, 3, 3, false},
		{"all", 0, 3, []uint32{3}, 0, 3, false},
		{"in steps", 0, 5, []uint32{1, 1, 4}, 1, 5, false},
		{"too high", 0, 3, []uint32{4}, 3, 3, true},
		{"backwards", 0, 3, []uint32{2, 1}, 1, 3, true},
		{"wraps", top - 1, 4, []uint32{top, 1}, 1, 2, false},
		{"wraps to zero", top, 1, []uint32{0}, 0, 0, false},
		{"too high after wrap", top - 1, 2, []uint32{1}, 2, 0, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			q := ackQueue{acked: c.start}
			for i := range c.push {
				q.push([]byte{byte(i)})
			}
			var err error
			for _, h := range c.acks {
				if err = q.ack(h); err != nil {
					break
				}
			}
			var he *handledCountErr
			if got := errors.As(err, &he); got != c.tooHigh {
				t.Fatalf("error %v, want too high: %v", err, c.tooHigh)
			}
			if len(q.items) != c.left || q.sent() != c.sent {
				t.Errorf("%d left, %d sent; want %d, %d", len(q.items), q.sent(), c.left, c.sent)
			}
			// What is left is the newest.
			for i, b := range q.items {
				if want := byte(c.push - len(q.items) + i); b[0] != want {
					t.Errorf("item %d is stanza %d, want %d", i, b[0], want)
				}
			}
		})
	}
}

func TestSMAckCounting(t *testing.T) {
	addr := testServer(t, Config{}, "alice", "bob")
	alice, _ := online(t, addr, "alice", "phone", true)
	bob, _ := online(t, addr, "bob", "b", false)

	// The server counts what alice sends after <enable/>, whatever it is.
	alice.send("<presence><status>here</status></presence>")
	alice.send("<iq type='get' id='p1' to='example.org'><ping xmlns='urn:xmpp:ping'/></iq>")
	alice.send("<message to='bob@example.org/b' id='a1'><body>hi</body></message>")
	alice.send("<iq type='get'><ping xmlns='urn:xmpp:ping'/></iq>") // refused, but handled
	alice.send("<r xmlns='urn:xmpp:sm:3'/>")
	got := alice.until("ack", named("a", nsSM))
	if h := got[len(got)-1].Attr("h"); h != "4" {
		t.Errorf("server acknowledged h=%s, want 4", h)
	}
	bob.until("alice's message", withID("message", "a1"))
	// An unrequested ack of everything: no request is pending any more.
	alice.ping("p0")
	alice.ack(alice.in)

	// The server asks alice to acknowledge what it sends her, right away.
	bob.send("<message to='alice@example.org/phone' id='b1'><body>one</body></message>")
	alice.until("message b1", withID("message", "b1"))
	alice.until("ack request", named("r", nsSM))
	alice.ack(alice.in)
	alice.ping("p2")
	alice.until("ack request", named("r", nsSM))
	alice.ack(alice.in)
	alice.send("<r xmlns='urn:xmpp:sm:3'/>")
	alice.until("ack", named("a", nsSM))

	// Acknowledging more than was sent is a stream error (XEP-0198 §4).
	alice.ack(alice.in + 1)
	got = alice.until("stream error", named("error", stanza.NSStream))
	e := got[len(got)-1]
	x := e.Child("handled-count-too-high", nsSM)
	if e.Child("undefined-condition", stanza.NSStreamErr) == nil || x == nil ||
		x.Attr("h") != strconv.Itoa(int(alice.in+1)) || x.Attr("send-count") != strconv.Itoa(int(alice.in)) {
		t.Errorf("got %s, want undefined-condition with handled-count-too-high h=%d send-count=%d", e, alice.in+1, alice.in)
	}
}

func TestSMResume(t *testing.T) {
	cases := []struct {
		name string
		// lose is how many of the stanzas alice received before her
		// connection died she did not handle: the server sends them again.
		lose uint32
	}{
		{"all handled", 0},
		{"last two lost", 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := obs.NewMetrics()
			srv, addr := startTestServer(t, Config{Metrics: m}, "alice", "bob")
			alice, id := online(t, addr, "alice", "phone", true)
			bob, _ := online(t, addr, "bob", "b", false)
			for i := 1; i <= 3; i++ {
				bob.send(fmt.Sprintf("<message to='alice@example.org/phone' id='m%d' type='chat'><body>m%d</body></message>", i, i))
			}
			alice.until("m3", withID("message", "m3"))
			// Alice answers a message and her connection dies.
			alice.send("<message to='bob@example.org/b' id='a1' type='chat'><body>a1</body></message>")
			alice.c.Close()
			waitFor(t, "the session to be detached", func() bool { return srv.detached.Load() == 1 })
			for i := 4; i <= 6; i++ {
				bob.send(fmt.Sprintf("<message to='alice@example.org/phone' id='m%d' type='chat'><body>m%d</body></message>", i, i))
			}
			bob.until("alice's message", withID("message", "a1"))

			x := xdial(t, addr)
			x.auth("alice")
			x.in = alice.in - c.lose
			x.send(fmt.Sprintf("<resume xmlns='urn:xmpp:sm:3' previd='%s' h='%d'/>", id, x.in))
			r := x.next()
			if r.Local() != "resumed" || r.Attr("previd") != id || r.Attr("h") != "1" {
				t.Fatalf("got %s, want <resumed previd='%s' h='1'/>", r, id)
			}
			x.autoAck = true
			got := x.until("m6", withID("message", "m6"))
			got = append(got, x.ping("after")...)
			var want []string
			for i := 4 - int(c.lose); i <= 6; i++ {
				want = append(want, fmt.Sprint("m", i))
			}
			if b := bodies(got); strings.Join(b, " ") != strings.Join(want, " ") {
				t.Errorf("after resumption alice got %q, want %q", b, want)
			}
			// Bob never saw alice go: the session stayed online.
			bob.send("<message to='alice@example.org/phone' id='m7'><body>m7</body></message>")
			x.until("m7", withID("message", "m7"))
			for _, e := range bob.ping("bob") {
				if e.Local() == "presence" {
					t.Errorf("bob got %s", e)
				}
			}
			if n := m.Counter(`aldis_sm_resumed_total`).Get(); n != 1 {
				t.Errorf("aldis_sm_resumed_total = %d, want 1", n)
			}
			// The stream goes on counting: an ack of everything is right.
			x.send("<r xmlns='urn:xmpp:sm:3'/>")
			got = x.until("ack", named("a", nsSM))
			if h := got[len(got)-1].Attr("h"); h != "2" {
				t.Errorf("server acknowledged h=%s, want 2 (a1 and the ping)", h)
			}
		})
	}
}

// TestSMResumeTakeover: the client resumes while the server still thinks
// the old connection is alive.
func TestSMResumeTakeover(t *testing.T) {
	addr := testServer(t, Config{}, "alice", "bob")
	old, id := online(t, addr, "alice", "phone", true)
	bob, _ := online(t, addr, "bob", "b", false)
	bob.send("<message to='alice@example.org/phone' id='m1'><body>m1</body></message>")
	old.until("m1", withID("message", "m1"))

	x := xdial(t, addr)
	x.auth("alice")
	x.send(fmt.Sprintf("<resume xmlns='urn:xmpp:sm:3' previd='%s' h='0'/>", id))
	if r := x.next(); r.Local() != "resumed" {
		t.Fatalf("got %s, want resumed", r)
	}
	x.autoAck = true
	if b := bodies(x.ping("p")); len(b) != 1 || b[0] != "m1" {
		t.Errorf("retransmitted %q, want [m1]", b)
	}
	got := old.until("stream error", named("error", stanza.NSStream))
	if got[len(got)-1].Child("conflict", stanza.NSStreamErr) == nil {
		t.Errorf("old connection got %s, want a conflict stream error", dump(got))
	}
	bob.send("<message to='alice@example.org/phone' id='m2'><body>m2</body></message>")
	x.until("m2", withID("message", "m2"))
}

func TestSMResumeRefused(t *testing.T) {
	m := obs.NewMetrics()
	srv, addr := startTestServer(t, Config{Metrics: m}, "alice", "bob")
	_, id := online(t, addr, "alice", "phone", true)
	cleanly, cleanID := online(t, addr, "alice", "tablet", true)
	cleanly.send("</stream:stream>")
	waitFor(t, "the session to end", func() bool { return srv.resumableFor(cleanID) == nil })
	cases := []struct{ name, user, previd, h string }{
		{"another account", "bob", id, "0"},
		{"unknown id", "alice", resumeID(), "0"},
		{"closed cleanly", "alice", cleanID, "0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			x := xdial(t, addr)
			x.auth(c.user)
			x.send(fmt.Sprintf("<resume xmlns='urn:xmpp:sm:3' previd='%s' h='%s'/>", c.previd, c.h))
			if f := x.next(); f.Local() != "failed" || f.Child("item-not-found", stanza.NSStanzaErr) == nil {
				t.Fatalf("got %s, want failed with item-not-found", f)
			}
			// The client binds instead.
			x.bind("new")
			x.ping("p")
		})
	}
	if n := m.Counter(`aldis_sm_resume_failures_total`).Get(); n != uint64(len(cases)) {
		t.Errorf("aldis_sm_resume_failures_total = %d, want %d", n, len(cases))
	}
}

var delayRE = regexp.MustCompile(`<delay xmlns='urn:xmpp:delay' from='example.org' stamp='[^']+'`)

func TestSMResumeTimeout(t *testing.T) {
	m := obs.NewMetrics()
	srv, addr := startTestServer(t, Config{Metrics: m, ResumeTimeout: time.Second}, "alice", "bob")
	alice, id := online(t, addr, "alice", "phone", true)
	bob, _ := online(t, addr, "bob", "b", false)
	alice.c.Close()
	waitFor(t, "the session to be detached", func() bool { return srv.detached.Load() == 1 })
	bob.send("<message to='alice@example.org/phone' id='m1' type='chat'><body>to the phone</body></message>")
	bob.send("<message to='alice@example.org' id='m2' type='chat'><body>to alice</body></message>")
	bob.send("<iq to='alice@example.org/phone' id='q1' type='get'><ping xmlns='urn:xmpp:ping'/></iq>")
	s := srv.resumableFor(id)
	waitFor(t, "the stanzas to reach the detached session", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.q.items) == 3
	})
	// After the timeout the request is refused, and the messages go to
	// offline storage.
	got := bob.until("iq error", withID("iq", "q1"))
	if e := got[len(got)-1]; e.Attr("type") != "error" || !strings.Contains(e.String(), "service-unavailable") {
		t.Errorf("bob's request got %s, want service-unavailable", e)
	}
	waitFor(t, "the session to end", func() bool { return srv.resumableFor(id) == nil })

	x := xdial(t, addr)
	x.auth("alice")
	x.send(fmt.Sprintf("<resume xmlns='urn:xmpp:sm:3' previd='%s' h='0'/>", id))
	if f := x.next(); f.Local() != "failed" {
		t.Fatalf("resuming an expired session: got %s, want failed", f)
	}
	x.bind("desk")
	x.send("<presence/>")
	got = x.until("m2", withID("message", "m2"))
	msgs := 0
	for _, e := range got {
		if e.Local() == "message" {
			msgs++
			if !delayRE.MatchString(e.String()) {
				t.Errorf("offline message without delay: %s", e)
			}
		}
	}
	if msgs != 2 {
		t.Errorf("got %d messages, want m1 and m2: %s", msgs, dump(got))
	}
	for name, want := range map[string]uint64{`aldis_sm_expired_total`: 1, `aldis_sm_resent_total`: 3} {
		if n := m.Counter(name).Get(); n != want {
			t.Errorf("%s = %d, want %d", name, n, want)
		}
	}
}

// TestSMUnackedLimit: a client that never acknowledges is disconnected, and
// what it did not acknowledge goes to offline storage with the rest.
func TestSMUnackedLimit(t *testing.T) {
	m := obs.NewMetrics()
	addr := testServer(t, Config{SendQueue: 8, Metrics: m}, "alice", "bob")
	alice, _ := online(t, addr, "alice", "phone", true)
	bob, _ := online(t, addr, "bob", "b", false)
	const n = 20
	for i := range n {
		bob.send(fmt.Sprintf("<message to='alice@example.org/phone' id='m%d' type='chat'><body>m%d</body></message>", i, i))
	}
	got := alice.until("stream error", named("error", stanza.NSStream))
	if got[len(got)-1].Child("policy-violation", stanza.NSStreamErr) == nil {
		t.Fatalf("got %s, want policy-violation", got[len(got)-1])
	}
	bob.ping("p") // bob's own stream is fine
	// Each message is stored once: directly when the session was full or
	// gone, or resent because alice never acknowledged it.
	stored := m.Counter(`aldis_offline_stored_total`)
	waitFor(t, "every message in offline storage", func() bool { return stored.Get() >= n })
	time.Sleep(50 * time.Millisecond)
	if got := stored.Get(); got != n {
		t.Errorf("%d messages stored offline, want %d", got, n)
	}
}

func TestSMCleanCloseEndsSession(t *testing.T) {
	addr := testServer(t, Config{}, "alice", "bob")
	alice, id := online(t, addr, "alice", "phone", true)
	bob, _ := online(t, addr, "bob", "b", false)
	alice.send("<presence to='bob@example.org/b'/>")
	bob.until("alice's presence", named("presence", stanza.NSClient))
	alice.send("</stream:stream>")
	// Bob sees alice go at once.
	got := bob.until("unavailable", func(e *wire.Element) bool { return e.Attr("type") == "unavailable" })
	if from := got[len(got)-1].Attr("from"); from != "alice@example.org/phone" {
		t.Errorf("unavailable from %s", from)
	}
	x := xdial(t, addr)
	x.auth("alice")
	x.send(fmt.Sprintf("<resume xmlns='urn:xmpp:sm:3' previd='%s' h='0'/>", id))
	if f := x.next(); f.Local() != "failed" {
		t.Fatalf("got %s, want failed", f)
	}
}

// TestSMResumeBadH: a resumption acknowledging stanzas never sent is a
// stream error; the session still waits, and a right h resumes it.
func TestSMResumeBadH(t *testing.T) {
	srv, addr := startTestServer(t, Config{}, "alice", "bob")
	alice, id := online(t, addr, "alice", "phone", true)
	bob, _ := online(t, addr, "bob", "b", false)
	bob.send("<message to='alice@example.org/phone' id='m1'><body>m1</body></message>")
	alice.until("m1", withID("message", "m1"))
	alice.c.Close()
	waitFor(t, "the session to be detached", func() bool { return srv.detached.Load() == 1 })

	x := xdial(t, addr)
	x.auth("alice")
	x.send(fmt.Sprintf("<resume xmlns='urn:xmpp:sm:3' previd='%s' h='5'/>", id))
	e := x.next()
	if c := e.Child("handled-count-too-high", nsSM); c == nil || c.Attr("h") != "5" || c.Attr("send-count") != "1" {
		t.Errorf("got %s, want handled-count-too-high h=5 send-count=1", e)
	}
	if srv.detached.Load() != 1 {
		t.Errorf("the session no longer waits for its client")
	}
	x = xdial(t, addr)
	x.auth("alice")
	x.send(fmt.Sprintf("<resume xmlns='urn:xmpp:sm:3' previd='%s' h='0'/>", id))
	if r := x.next(); r.Local() != "resumed" {
		t.Fatalf("got %s, want resumed", r)
	}
	x.until("m1 again", withID("message", "m1"))
}

// TestSMBindReplacesDetached: a client that binds its old resource instead
// of resuming replaces the waiting session and gets what it had not
// acknowledged.
func TestSMBindReplacesDetached(t *testing.T) {
	srv, addr := startTestServer(t, Config{}, "alice", "bob")
	alice, id := online(t, addr, "alice", "phone", true)
	bob, _ := online(t, addr, "bob", "b", false)
	bob.send("<message to='alice@example.org/phone' id='m1' type='chat'><body>m1</body></message>")
	alice.until("m1", withID("message", "m1"))
	alice.c.Close()
	waitFor(t, "the session to be detached", func() bool { return srv.detached.Load() == 1 })

	x, _ := online(t, addr, "alice", "phone", false)
	x.until("m1 again", withID("message", "m1"))
	waitFor(t, "the old session to end", func() bool { return srv.resumableFor(id) == nil && srv.detached.Load() == 0 })
}

// TestSMShutdownKeepsUnacked: on shutdown, what a waiting session holds
// goes to offline storage.
func TestSMShutdownKeepsUnacked(t *testing.T) {
	e := newTestEnv(t, Config{}, "alice", "bob")
	alice, id := online(t, e.addr, "alice", "phone", true)
	bob, _ := online(t, e.addr, "bob", "b", false)
	bob.send("<message to='alice@example.org/phone' id='m1' type='chat'><body>m1</body></message>")
	alice.until("m1", withID("message", "m1"))
	alice.c.Close()
	waitFor(t, "the session to be detached", func() bool { return e.srv.detached.Load() == 1 })
	bob.send("<message to='alice@example.org/phone' id='m2' type='chat'><body>m2</body></message>")
	s := e.srv.resumableFor(id)
	waitFor(t, "m2 to reach the session", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.q.items) == 2
	})
	e.stop()
	msgs, err := e.db.OfflineMessages(context.Background(), "alice@example.org")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range msgs {
		el, err := wire.ParseElement(m.Stanza)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, el.Attr("id"))
	}
	if strings.Join(got, " ") != "m1 m2" {
		t.Errorf("offline messages %q, want [m1 m2]", got)
	}
}

func TestSMResumeDisabled(t *testing.T) {
	addr := testServer(t, Config{ResumeTimeout: -1}, "alice")
	x, id := online(t, addr, "alice", "phone", true)
	if id != "" {
		t.Errorf("resumption offered while disabled: id %q", id)
	}
	x.send("<r xmlns='urn:xmpp:sm:3'/>")
	x.until("ack", named("a", nsSM)) // acks still work
}

// TestSMDetachedPresenceMerged: while a session waits for its client to
// resume, presence from each contact is kept merged (the latest only) and
// delivered after the unacknowledged messages, in order with them.
func TestSMDetachedPresenceMerged(t *testing.T) {
	srv, addr := startTestServer(t, Config{}, "alice", "bob")
	alice, id := online(t, addr, "alice", "phone", true)
	alice.autoAck = true
	bob, _ := online(t, addr, "bob", "b", false)
	alice.c.Close()
	waitFor(t, "the session to be detached", func() bool { return srv.detached.Load() == 1 })
	for i := range 20 {
		bob.send(fmt.Sprintf("<presence to='alice@example.org/phone'><status>s%d</status></presence>", i))
	}
	bob.send("<message to='alice@example.org/phone' id='m1' type='chat'><body>m1</body></message>")
	for i := 20; i < 40; i++ {
		bob.send(fmt.Sprintf("<presence to='alice@example.org/phone'><status>s%d</status></presence>", i))
	}
	bob.ping("sent")
	s := srv.resumableFor(id)
	waitFor(t, "the last presence to be held", func() bool {
		h := s.heldNow()
		return len(h) == 1 && strings.Contains(h[0], "s39")
	})

	x := xdial(t, addr)
	x.auth("alice")
	x.in = alice.in
	x.send(fmt.Sprintf("<resume xmlns='urn:xmpp:sm:3' previd='%s' h='%d'/>", id, x.in))
	if r := x.next(); r.Local() != "resumed" {
		t.Fatalf("got %s", r)
	}
	x.autoAck = true
	got := x.until("the last presence", func(e *wire.Element) bool { return e.ChildText("status", "") == "s39" })
	var seen []string
	for _, e := range got {
		switch {
		case e.Local() == "presence":
			seen = append(seen, e.ChildText("status", ""))
		case e.Local() == "message":
			seen = append(seen, e.ChildText("body", ""))
		}
	}
	// The message flushed the presence held before it; the 20 after it
	// arrive as one.
	if strings.Join(seen, " ") != "s19 m1 s39" {
		t.Errorf("after resumption alice got %q, want s19 m1 s39", seen)
	}
}
