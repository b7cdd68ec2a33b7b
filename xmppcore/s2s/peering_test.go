package s2s

import (
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/peering"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// withPolicy gives a.test's manager a peering policy; b.test keeps the default.
func withPolicy(t *testing.T, def peering.Defaults, specs ...peering.Spec) func(*Config) {
	t.Helper()
	p, err := peering.New(def, specs)
	if err != nil {
		t.Fatal(err)
	}
	return func(c *Config) {
		if c.Local("a.test") {
			c.Peering = p
		}
	}
}

func parse(t *testing.T, s string) (*wire.Element, jid.JID, jid.JID) {
	t.Helper()
	el, err := wire.ParseElement(s)
	if err != nil {
		t.Fatal(err)
	}
	return el, jid.MustParse(el.Attr("from")), jid.MustParse(el.Attr("to"))
}

func allow(v bool) *bool { return &v }

// Stanza kinds and namespaces a peer may not receive bounce to their local
// sender with not-allowed; what may pass does, both ways.
func TestPeeringKindsAndNamespaces(t *testing.T) {
	ca := newCA(t)
	a, b := pairOf(t, issue(t, ca, "a.test"), issue(t, ca, "b.test"), ca.pool(),
		withPolicy(t, peering.Defaults{Allow: true, RequireTLS: true}, peering.Spec{Domain: "b.test", Allow: true,
			Kinds: peering.Message | peering.Presence, DenyNamespaces: []string{"http://jabber.org/protocol/si"}}))

	// Egress.
	a.m.Send(parse(t, `<iq from='alice@a.test/x' to='bob@b.test/y' id='q1' type='get'><query xmlns='jabber:iq:version'/></iq>`))
	a.r.expect(t, "bob@b.test/y alice@a.test/x", "id='q1'", "type='error'", "not-allowed")
	a.m.Send(parse(t, `<message from='alice@a.test/x' to='bob@b.test' id='f1'><si xmlns='http://jabber.org/protocol/si'/></message>`))
	a.r.expect(t, "bob@b.test alice@a.test/x", "id='f1'", "not-allowed")
	a.m.Send(msg("alice@a.test/x", "bob@b.test", "m1"))
	b.r.expect(t, "alice@a.test/x bob@b.test", "id='m1'")

	// Ingress: b.test has no policy, a.test refuses at its boundary and
	// answers over its own stream to b.test.
	b.m.Send(parse(t, `<iq from='bob@b.test/y' to='alice@a.test/x' id='q2' type='set'><si xmlns='http://jabber.org/protocol/si'/></iq>`))
	b.r.expect(t, "alice@a.test/x bob@b.test/y", "id='q2'", "type='error'", "not-allowed")
	b.m.Send(parse(t, `<iq from='bob@b.test/y' to='a.test' id='q3' type='get'><ping xmlns='urn:xmpp:ping'/></iq>`))
	b.r.expect(t, "a.test bob@b.test/y", "id='q3'", "type='error'", "not-allowed")
	b.m.Send(msg("bob@b.test", "alice@a.test", "m2"))
	got := a.r.expect(t, "bob@b.test alice@a.test", "id='m2'")
	if strings.Contains(got, "q2") || strings.Contains(got, "q3") {
		t.Errorf("a refused stanza was injected: %s", got)
	}
	if v := a.m.m.refused["in"][peering.KindRule].Get(); v != 2 {
		t.Errorf("refused in by kind: %d, want 2", v)
	}
	if v := a.m.m.refused["out"][peering.Namespace].Get(); v != 1 {
		t.Errorf("refused out by namespace: %d, want 1", v)
	}
}

// A denied peer: stanzas for it bounce with not-allowed; its streams are
// refused with policy-violation, and its stanzas bounce on its side.
func TestPeeringDenied(t *testing.T) {
	ca := newCA(t)
	a, b := pairOf(t, issue(t, ca, "a.test"), issue(t, ca, "b.test"), ca.pool(),
		withPolicy(t, peering.Defaults{Allow: true, RequireTLS: true}, peering.Spec{Domain: "*.test", Allow: false}))
	a.m.Send(msg("alice@a.test", "bob@b.test", "d1"))
	a.r.expect(t, "bob@b.test alice@a.test", "id='d1'", "not-allowed")
	b.m.Send(msg("bob@b.test", "alice@a.test", "d2"))
	b.r.expect(t, "alice@a.test bob@b.test", "id='d2'", "type='error'", "remote-server")
	select {
	case s := <-a.r.ch:
		t.Fatalf("a denied peer's stanza reached the router: %s", s)
	default:
	}
	if v := a.m.m.refused["in"][peering.Denied].Get(); v == 0 {
		t.Error("the refused stream is not counted")
	}
}

// An incoming stream whose header names a denied domain gets a
// policy-violation stream error at once.
func TestPeeringDeniedStreamError(t *testing.T) {
	_, b := pairOf(t, nil, nil, nil, func(c *Config) {
		c.Certificate, c.RequireTLS = nil, false
		p, _ := peering.New(peering.Defaults{Allow: false}, nil)
		c.Peering = p
	})
	conn, err := net.Dial("tcp", b.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, `<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' from='evil.test' to='b.test' version='1.0'>`)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	out, _ := io.ReadAll(conn)
	if !strings.Contains(string(out), "<policy-violation") || strings.Contains(string(out), "features") {
		t.Fatalf("got %s", out)
	}
}

// auth = "certificate": a peer whose certificate does not verify cannot
// federate by dialback, either way.
func TestPeeringCertificateOnly(t *testing.T) {
	a, b := pairOf(t, issue(t, nil, "a.test"), issue(t, nil, "b.test"), x509.NewCertPool(),
		withPolicy(t, peering.Defaults{Allow: true, RequireTLS: true}, peering.Spec{Domain: "b.test", Allow: true, CertificateOnly: allow(true)}))
	a.m.Send(msg("alice@a.test", "bob@b.test", "c1"))
	a.r.expect(t, "bob@b.test alice@a.test", "id='c1'", "type='error'", "remote-server-timeout")
	b.m.Send(msg("bob@b.test", "alice@a.test", "c2"))
	b.r.expect(t, "alice@a.test bob@b.test", "id='c2'", "type='error'", "remote-server-timeout")
}

// auth = "dialback" lets one peer use dialback where the default requires
// certificates.
func TestPeeringDialbackException(t *testing.T) {
	a, b := pairOf(t, issue(t, nil, "a.test"), issue(t, nil, "b.test"), x509.NewCertPool(), func(c *Config) {
		p, _ := peering.New(peering.Defaults{Allow: true, RequireTLS: true, CertificateOnly: true},
			[]peering.Spec{{Domain: "a.test", Allow: true, CertificateOnly: allow(false)}, {Domain: "b.test", Allow: true, CertificateOnly: allow(false)}})
		c.Peering = p
	})
	a.m.Send(msg("alice@a.test", "bob@b.test", "e1"))
	b.r.expect(t, "alice@a.test bob@b.test", "id='e1'")
	b.m.Send(msg("bob@b.test", "alice@a.test", "e2"))
	a.r.expect(t, "bob@b.test alice@a.test", "id='e2'")
}

// A peer over its rate gets resource-constraint for the excess, and the
// stream carries on.
func TestPeeringRate(t *testing.T) {
	ca := newCA(t)
	a, b := pairOf(t, issue(t, ca, "a.test"), issue(t, ca, "b.test"), ca.pool(),
		withPolicy(t, peering.Defaults{Allow: true, RequireTLS: true}, peering.Spec{Domain: "b.test", Allow: true, Rate: 1, Burst: 3}))
	for i := range 8 {
		b.m.Send(msg("bob@b.test", "alice@a.test", "r"+string(rune('0'+i))))
	}
	passed, refused := 0, 0
	deadline := time.After(10 * time.Second)
	for passed+refused < 8 {
		select {
		case s := <-a.r.ch:
			if strings.Contains(s, "type='error'") {
				t.Fatalf("unexpected %s", s)
			}
			passed++
		case s := <-b.r.ch:
			if !strings.Contains(s, "resource-constraint") {
				t.Fatalf("unexpected %s", s)
			}
			refused++
		case <-deadline:
			t.Fatalf("after 10s: %d passed, %d refused", passed, refused)
		}
	}
	if passed < 3 || passed > 4 {
		t.Errorf("%d of 8 passed at a rate of 1/s with a burst of 3", passed)
	}
	if v := a.m.m.refused["in"][peering.RateLimit].Get(); int(v) != refused {
		t.Errorf("rate refusals counted %d, answered %d", v, refused)
	}
}

// require_tls for one peer where the default does not: no stream without
// TLS, either way.
func TestPeeringRequireTLS(t *testing.T) {
	a, b := pairOf(t, nil, nil, nil, func(c *Config) {
		c.Certificate, c.RequireTLS = nil, false
		if c.Local("a.test") {
			c.Peering, _ = peering.New(peering.Defaults{Allow: true}, []peering.Spec{{Domain: "b.test", Allow: true, RequireTLS: allow(true)}})
		}
	})
	a.m.Send(msg("alice@a.test", "bob@b.test", "t1"))
	a.r.expect(t, "bob@b.test alice@a.test", "id='t1'", "type='error'", "remote-server-timeout")
	b.m.Send(msg("bob@b.test", "alice@a.test", "t2"))
	b.r.expect(t, "alice@a.test bob@b.test", "id='t2'", "type='error'", "remote-server-timeout")
	select {
	case s := <-a.r.ch:
		t.Fatalf("a stanza passed without TLS: %s", s)
	default:
	}
}

// A peer flooding faster than RateRefusals refusals a second is paced:
// beyond those, nothing is refused, the stream waits for the rate instead.
func TestPeeringRatePaced(t *testing.T) {
	ca := newCA(t)
	const refusals, n = 5, 40
	policy := withPolicy(t, peering.Defaults{Allow: true, RequireTLS: true}, peering.Spec{Domain: "b.test", Allow: true, Rate: 20, Burst: 1})
	a, b := pairOf(t, issue(t, ca, "a.test"), issue(t, ca, "b.test"), ca.pool(), func(c *Config) {
		c.Queue, c.RateRefusals = 1000, refusals
		policy(c)
	})
	start := time.Now()
	for i := range n {
		b.m.Send(msg("bob@b.test", "alice@a.test", fmt.Sprintf("p%d", i)))
	}
	passed, refused := 0, 0
	deadline := time.After(15 * time.Second)
	for passed+refused < n {
		select {
		case <-a.r.ch:
			passed++
		case s := <-b.r.ch:
			if !strings.Contains(s, "resource-constraint") {
				t.Fatalf("unexpected %s", s)
			}
			refused++
		case <-deadline:
			t.Fatalf("after 15s: %d passed, %d refused", passed, refused)
		}
	}
	took := time.Since(start)
	// The first passes on the burst, the next 5 are refused, and 5 a
	// second more as the refusal budget refills; the rest are paced at
	// 20/s: they all arrive, over more than a second.
	t.Logf("%d passed, %d refused in %v", passed, refused, took)
	if refused < refusals || float64(refused) > refusals+2+refusals*took.Seconds() || took < time.Second {
		t.Errorf("%d passed, %d refused in %v; want about %d refused, then the rest paced at 20/s", passed, refused, took, refusals)
	}
}

// Bidirectional streams (XEP-0288): what b sends a answers travels back on
// a's stream, so one TCP connection carries both ways; with certificates
// and with dialback.
func TestBidi(t *testing.T) {
	ca := newCA(t)
	for _, tc := range []struct {
		name   string
		ca     *testCA
		roots  *x509.CertPool
		method string
	}{
		{"certificate", ca, ca.pool(), "certificate"},
		{"dialback", nil, x509.NewCertPool(), "dialback"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := pairOf(t, issue(t, tc.ca, "a.test"), issue(t, tc.ca, "b.test"), tc.roots, func(c *Config) { c.Bidi = true })
			a.m.Send(msg("alice@a.test/x", "bob@b.test", "b1"))
			b.r.expect(t, "alice@a.test/x bob@b.test", "id='b1'")
			b.m.Send(msg("bob@b.test", "alice@a.test/x", "b2"))
			a.r.expect(t, "bob@b.test alice@a.test/x", "id='b2'")
			a.m.mu.Lock()
			inA, outA := len(a.m.in), a.m.out[pair{"a.test", "b.test"}]
			a.m.mu.Unlock()
			b.m.mu.Lock()
			outB := b.m.out[pair{"b.test", "a.test"}]
			b.m.mu.Unlock()
			if tc.method == "certificate" && inA != 0 {
				// (dialback opens a verification stream to a, which ends at once)
				t.Errorf("a has %d incoming streams: b opened a connection of its own", inA)
			}
			if outA == nil || outA.in != nil || outB == nil || outB.in == nil {
				t.Errorf("b's answer did not use a's stream (a dialled: %v, b attached: %v)",
					outA != nil && outA.in == nil, outB != nil && outB.in != nil)
			}
		})
	}
}

// Without Bidi on the receiving side, the initiator does not ask for it,
// and answers come on a second connection as before.
func TestBidiOffered(t *testing.T) {
	ca := newCA(t)
	a, b := pairOf(t, issue(t, ca, "a.test"), issue(t, ca, "b.test"), ca.pool(), func(c *Config) { c.Bidi = c.Local("a.test") })
	a.m.Send(msg("alice@a.test", "bob@b.test", "o1"))
	b.r.expect(t, "id='o1'")
	b.m.Send(msg("bob@b.test", "alice@a.test", "o2"))
	a.r.expect(t, "id='o2'")
	b.m.mu.Lock()
	outB := b.m.out[pair{"b.test", "a.test"}]
	b.m.mu.Unlock()
	if outB == nil || outB.in != nil {
		t.Errorf("b did not open its own stream")
	}
}

// On a bidirectional outgoing stream, the peer may only send from its own
// domain to ours: anything else ends the stream with invalid-from.
func TestBidiSpoofedFrom(t *testing.T) {
	a, _ := pairOf(t, nil, nil, nil, func(c *Config) { c.Certificate, c.RequireTLS, c.Bidi = nil, false, true })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a.m.cfg.Hosts["fake.test"] = ln.Addr().String()
	got := make(chan string, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 4096)
		var seen string
		read := func(until string) bool {
			for !strings.Contains(seen, until) {
				n, err := conn.Read(buf)
				if err != nil {
					return false
				}
				seen += string(buf[:n])
			}
			return true
		}
		read("<stream:stream")
		io.WriteString(conn, `<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' id='s1' from='fake.test' to='a.test' version='1.0'>`+
			`<stream:features><dialback xmlns='urn:xmpp:features:dialback'/><bidi xmlns='urn:xmpp:features:bidi'/></stream:features>`)
		read("</db:result>")
		io.WriteString(conn, `<db:result from='fake.test' to='a.test' type='valid'/>`)
		read("id='f1'")
		io.WriteString(conn, `<message from='mallory@evil.test' to='alice@a.test'><body>spoof</body></message>`)
		read("</stream:stream>")
		got <- seen
	}()
	a.m.Send(msg("alice@a.test", "bob@fake.test", "f1"))
	select {
	case s := <-got:
		if !strings.Contains(s, "<bidi xmlns='urn:xmpp:bidi'/>") || !strings.Contains(s, "invalid-from") {
			t.Errorf("the fake peer read %s", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no stream error")
	}
	select {
	case s := <-a.r.ch:
		t.Errorf("the spoofed stanza was injected: %s", s)
	case <-time.After(200 * time.Millisecond):
	}
}
