package zh

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aldis-im/aldis/bridges/brass/brlink"
	"github.com/aldis-im/aldis/bridges/brass/relay"
)

const (
	msgAB = "<message from='alice@a.example/x' to='bob@b.example' type='chat' id='1'><body>hello</body></message>"
	msgBA = "<message from='bob@b.example' to='alice@a.example' type='chat' id='2'><body>hi there</body></message>"
)

// readFor collects what arrives on c for d.
func readFor(c net.Conn, d time.Duration) string {
	var buf bytes.Buffer
	c.SetReadDeadline(time.Now().Add(d))
	io.Copy(&buf, c)
	return buf.String()
}

// TestRawPeerInitiated plays a hand-written peer: we connect to it, and
// the bytes on the wire must be our stanza with nothing before or after
// (no stream header, no keepalive); it answers on the same connection
// with a header-less stanza, then closes the stream.
func TestRawPeerInitiated(t *testing.T) {
	l := listen(t)
	a := newStream(t, cfgA(Initiate, l.addr()))
	ev := run(t, a)
	peer, err := l.ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	next(t, ev, relay.Up)
	id := send(t, a, 1, msgAB)
	if got := readFor(peer, 500*time.Millisecond); got != msgAB {
		t.Fatalf("wire carried %q, want exactly the stanza %q", got, msgAB)
	}
	if e := next(t, ev, relay.Acked); !slices.Equal(e.IDs, []brlink.ID{id}) {
		t.Fatalf("acked %v", e.IDs)
	}

	// The peer sends on our connection, with no stream header.
	if _, err := io.WriteString(peer, msgBA+"\n"); err != nil {
		t.Fatal(err)
	}
	e := next(t, ev, relay.Received)
	if string(e.Item.Payload) != msgBA || e.Item.Class != brlink.ClassXMPP || e.Item.ID != (brlink.ID{}) {
		t.Fatalf("received %+v (%q)", e.Item, e.Item.Payload)
	}

	// </stream:stream> closes the link; we answer in kind and half-close.
	io.WriteString(peer, "</stream:stream>")
	next(t, ev, relay.Down)
	if got := readFor(peer, 2*time.Second); got != "</stream:stream>" {
		t.Fatalf("after the peer's close, got %q", got)
	}
}

// TestRawPeerAccepted: the hand-written peer connects to us and starts
// with a stanza; we use its connection to answer.
func TestRawPeerAccepted(t *testing.T) {
	l := listen(t)
	b := newStream(t, cfgB(Accept, ""))
	l.serve(t, b)
	ev := run(t, b)
	peer, err := net.Dial("tcp", l.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	io.WriteString(peer, msgAB)
	io.WriteString(peer, "<presence from='conference.a.example' to='b.example'/>")
	next(t, ev, relay.Up)
	if e := next(t, ev, relay.Received); string(e.Item.Payload) != msgAB {
		t.Fatalf("got %q", e.Item.Payload)
	}
	if e := next(t, ev, relay.Received); !strings.HasPrefix(string(e.Item.Payload), "<presence from='conference.a.example'") {
		t.Fatalf("got %q", e.Item.Payload)
	}
	send(t, b, 2, msgBA)
	r := bufio.NewReader(peer)
	buf := make([]byte, len(msgBA))
	peer.SetReadDeadline(time.Now().Add(waitLong))
	if _, err := io.ReadFull(r, buf); err != nil || string(buf) != msgBA {
		t.Fatalf("peer read %q, %v", buf, err)
	}
}

func TestStanzasBothWaysOneConnection(t *testing.T) {
	l := listen(t)
	b := newStream(t, cfgB(Accept, ""))
	l.serve(t, b)
	evB := run(t, b)
	a := newStream(t, cfgA(Initiate, l.addr()))
	evA := run(t, a)
	next(t, evA, relay.Up)
	next(t, evB, relay.Up)

	send(t, a, 1, msgAB)
	// A second local domain travels on the same connection; FMUC
	// traffic is told apart.
	fmuc := "<message from='room@conference.a.example/nick' to='room@b.example' type='groupchat'><fmuc xmlns='http://isode.com/protocol/fmuc' from='x@a.example'/><body>m</body></message>"
	send(t, a, 2, fmuc)
	if e := next(t, evB, relay.Received); string(e.Item.Payload) != msgAB {
		t.Fatalf("B got %q", e.Item.Payload)
	}
	if e := next(t, evB, relay.Received); string(e.Item.Payload) != fmuc || e.Item.Class != brlink.ClassFMUC {
		t.Fatalf("B got %q class %d", e.Item.Payload, e.Item.Class)
	}
	send(t, b, 3, msgBA)
	if e := next(t, evA, relay.Received); string(e.Item.Payload) != msgBA {
		t.Fatalf("A got %q", e.Item.Payload)
	}
	if n := l.accepted(); n != 1 {
		t.Fatalf("%d connections, want one used both ways", n)
	}
}

func TestSendRefusesWhatThePeerWouldReject(t *testing.T) {
	l := listen(t)
	b := newStream(t, cfgB(Accept, ""))
	l.serve(t, b)
	run(t, b)
	a := newStream(t, cfgA(Initiate, l.addr()))
	evA := run(t, a)
	next(t, evA, relay.Up)
	for _, p := range []string{
		"<message to='bob@b.example'/>",                                    // no from
		"<message from='a.example' to='x.example'/>",                       // not the peer's
		"<message from='evil.example' to='b.example'/>",                    // not ours
		"<message from='a.example' to='b.example'>",                        // not well-formed
		"<message from='a.example' to='b.example'/><message/>",             // two elements
		"<r xmlns='urn:xmpp:sm:3'/>",                                       // not a stanza
		"<message xmlns='jabber:client' from='a.example' to='b.example'/>", // wrong namespace
	} {
		err := a.Send(context.Background(), &relay.Item{Payload: []byte(p)})
		if !errors.Is(err, ErrBadItem) {
			t.Errorf("Send(%q) = %v, want ErrBadItem", p, err)
		}
	}
	big := "<message from='a.example' to='b.example'><body>" + strings.Repeat("x", 300<<10) + "</body></message>"
	if err := a.Send(context.Background(), &relay.Item{Payload: []byte(big)}); !errors.Is(err, relay.ErrTooLarge) {
		t.Errorf("Send(300 KiB) = %v, want ErrTooLarge", err)
	}
}

func TestSendWhileDown(t *testing.T) {
	a := newStream(t, cfgA(Initiate, "127.0.0.1:1"))
	run(t, a)
	err := a.Send(context.Background(), &relay.Item{Payload: []byte(msgAB)})
	if !errors.Is(err, relay.ErrDown) {
		t.Fatalf("Send with no connection = %v, want ErrDown", err)
	}
}

// TestAddressValidation: a raw peer sends a stanza outside the agreement.
func TestAddressValidation(t *testing.T) {
	for _, tc := range []struct {
		name, stanza, want string
		lenient            bool
	}{
		{"invalid from", "<message from='mallory@evil.example' to='bob@b.example'/>",
			"<stream:error><invalid-from xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>", false},
		{"unknown to", "<message from='alice@a.example' to='carol@c.example'/>",
			"<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>", false},
		{"missing from", "<message to='bob@b.example'/>",
			"<stream:error><improper-addressing xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>", false},
		{"not well-formed", "<message from='alice@a.example' to='bob@b.example'><a></b></message>",
			"<stream:error><not-well-formed xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>", false},
		{"lenient invalid from", "<message from='mallory@evil.example' to='bob@b.example'/>", "", true},
		{"lenient unknown to", "<message from='alice@a.example' to='carol@c.example'/>", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := listen(t)
			cfg := cfgB(Accept, "")
			cfg.Lenient = tc.lenient
			b := newStream(t, cfg)
			l.serve(t, b)
			ev := run(t, b)
			peer, err := net.Dial("tcp", l.addr())
			if err != nil {
				t.Fatal(err)
			}
			defer peer.Close()
			io.WriteString(peer, tc.stanza)
			if tc.lenient {
				// Dropped; the stream carries on.
				io.WriteString(peer, msgAB)
				if e := next(t, ev, relay.Received); string(e.Item.Payload) != msgAB {
					t.Fatalf("after the dropped stanza got %q", e.Item.Payload)
				}
				if got := readFor(peer, 200*time.Millisecond); got != "" {
					t.Fatalf("lenient mode wrote %q", got)
				}
				return
			}
			got := readFor(peer, 3*time.Second)
			if !strings.HasPrefix(got, tc.want) || !strings.HasSuffix(got, "</stream:error></stream:stream>") {
				t.Fatalf("peer read %q, want %s…</stream:stream>", got, tc.want)
			}
			none(t, ev, relay.Received, 100*time.Millisecond)
		})
	}
}

func TestPeerStreamErrorCloses(t *testing.T) {
	l := listen(t)
	a := newStream(t, cfgA(Initiate, l.addr()))
	ev := run(t, a)
	peer, err := l.ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	next(t, ev, relay.Up)
	io.WriteString(peer, "<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>")
	e := next(t, ev, relay.Down)
	if e.Err == nil || !strings.Contains(e.Err.Error(), "policy-violation") {
		t.Fatalf("Down cause %v", e.Err)
	}
	// And we reconnect.
	peer2, err := l.ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	peer2.Close()
}

// TestSimultaneousConnect: both sides connect at once; each then sends
// only on the connection it opened, and never on the one it accepted.
func TestSimultaneousConnect(t *testing.T) {
	la, lb := listen(t), listen(t)
	a := newStream(t, cfgA(Both, lb.addr()))
	b := newStream(t, cfgB(Both, la.addr()))
	evA, evB := run(t, a), run(t, b)
	// Both outbound connections complete (in the kernel's backlog)
	// before either side sees the other's.
	next(t, evA, relay.Up)
	next(t, evB, relay.Up)
	la.serve(t, a)
	lb.serve(t, b)
	deadline := time.Now().Add(waitLong)
	for la.accepted() < 1 || lb.accepted() < 1 {
		if time.Now().After(deadline) {
			t.Fatal("the connections were not handed off")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // let the hand-offs reach Run
	for i := range 3 {
		send(t, a, byte(10+i), msgAB)
		send(t, b, byte(20+i), msgBA)
	}
	for range 3 {
		next(t, evB, relay.Received, relay.Down)
		next(t, evA, relay.Received, relay.Down)
	}
	if la.written.Load() != 0 || lb.written.Load() != 0 {
		t.Fatalf("sent %d and %d bytes on accepted connections, want 0", la.written.Load(), lb.written.Load())
	}
}

func TestTLSPin(t *testing.T) {
	certA, leafA := selfSigned(t, "a.example")
	certB, leafB := selfSigned(t, "b.example")
	_, leafOther := selfSigned(t, "b.example")
	for _, tc := range []struct {
		name         string
		aPins, bPins []Pin
		ok           bool
	}{
		{"pinned keys", []Pin{PinOf(leafB)}, []Pin{PinOf(leafA)}, true},
		{"whole certificate pin", []Pin{sha256Cert(leafB)}, []Pin{PinOf(leafA)}, true},
		{"we pin another server certificate", []Pin{PinOf(leafOther)}, []Pin{PinOf(leafA)}, false},
		{"the server pins another client certificate", []Pin{PinOf(leafB)}, []Pin{PinOf(leafOther)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := listen(t)
			cb := cfgB(Accept, "")
			cb.Identity, cb.Pins, cb.Certificate = IdentityTLSPin, tc.bPins, func() *tls.Certificate { return &certB }
			b := newStream(t, cb)
			l.serve(t, b)
			evB := run(t, b)
			ca := cfgA(Initiate, l.addr())
			ca.Identity, ca.Pins, ca.Certificate = IdentityTLSPin, tc.aPins, func() *tls.Certificate { return &certA }
			a := newStream(t, ca)
			evA := run(t, a)
			if tc.ok {
				next(t, evA, relay.Up)
				send(t, a, 1, msgAB)
				if e := next(t, evB, relay.Received); string(e.Item.Payload) != msgAB {
					t.Fatalf("got %q", e.Item.Payload)
				}
				return
			}
			if tc.aPins[0] == PinOf(leafOther) {
				none(t, evA, relay.Up, 500*time.Millisecond)
			}
			select {
			case err := <-l.refused:
				t.Logf("refused: %v", err)
			case <-time.After(waitLong):
				if tc.bPins[0] == PinOf(leafOther) {
					t.Fatal("the server did not refuse the connection")
				}
			}
			none(t, evB, relay.Up, 300*time.Millisecond)
		})
	}
}

func TestTLSPKI(t *testing.T) {
	certA, leafA := selfSigned(t, "a.example")
	certB, leafB := selfSigned(t, "b.example")
	_, other := selfSigned(t, "b.example")
	for _, tc := range []struct {
		name   string
		aRoots *x509.Certificate // what A trusts for B
		ok     bool
	}{
		{"trusted CA", leafB, true},
		{"untrusted CA", other, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pool := func(c *x509.Certificate) *x509.CertPool { p := x509.NewCertPool(); p.AddCert(c); return p }
			l := listen(t)
			cb := cfgB(Accept, "")
			cb.Identity, cb.RootCAs, cb.Certificate = IdentityTLSPKI, pool(leafA), func() *tls.Certificate { return &certB }
			b := newStream(t, cb)
			l.serve(t, b)
			evB := run(t, b)
			ca := cfgA(Initiate, l.addr())
			ca.Identity, ca.RootCAs, ca.Certificate = IdentityTLSPKI, pool(tc.aRoots), func() *tls.Certificate { return &certA }
			a := newStream(t, ca)
			evA := run(t, a)
			if !tc.ok {
				none(t, evA, relay.Up, 500*time.Millisecond)
				none(t, evB, relay.Up, 10*time.Millisecond)
				return
			}
			next(t, evA, relay.Up)
			send(t, a, 1, msgAB)
			if e := next(t, evB, relay.Received); string(e.Item.Payload) != msgAB {
				t.Fatalf("got %q", e.Item.Payload)
			}
		})
	}
}

// TestShutdownClosesStream: stopping the bearer ends the stream with
// </stream:stream> and a half-close.
func TestShutdownClosesStream(t *testing.T) {
	l := listen(t)
	a := newStream(t, cfgA(Initiate, l.addr()))
	ev, stop := runStop(t, a)
	peer, err := l.ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	next(t, ev, relay.Up)
	got := make(chan string, 1)
	go func() {
		// The peer reads to our half-close, then answers in kind.
		got <- readFor(peer, 3*time.Second)
		io.WriteString(peer, "</stream:stream>")
	}()
	t0 := time.Now()
	stop()
	if d := time.Since(t0); d > 900*time.Millisecond {
		t.Fatalf("shutdown took %v; the peer's close should end it", d)
	}
	if s := <-got; s != "</stream:stream>" {
		t.Fatalf("peer read %q, want the stream close then EOF", s)
	}
}

func sha256Cert(c *x509.Certificate) Pin { return sha256.Sum256(c.Raw) }

func TestIPIdentityRefusesUnlisted(t *testing.T) {
	l := listen(t)
	cfg := cfgB(Accept, "")
	cfg.AllowedIPs = []netip.Prefix{netip.MustParsePrefix("192.0.2.1/32")}
	b := newStream(t, cfg)
	l.serve(t, b)
	ev := run(t, b)
	peer, err := net.Dial("tcp", l.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	io.WriteString(peer, msgAB)
	select {
	case err := <-l.refused:
		if !strings.Contains(err.Error(), "not an allowed address") {
			t.Fatalf("refused with %v", err)
		}
	case <-time.After(waitLong):
		t.Fatal("connection from 127.0.0.1 not refused")
	}
	if got := readFor(peer, time.Second); got != "" {
		t.Fatalf("refused peer read %q", got)
	}
	none(t, ev, relay.Received, 100*time.Millisecond)
	none(t, ev, relay.Up, 10*time.Millisecond)
}

func TestDeflate(t *testing.T) {
	l := listen(t)
	cb := cfgB(Accept, "")
	cb.Compression = CompressDeflate
	b := newStream(t, cb)
	l.serve(t, b)
	evB := run(t, b)
	ca := cfgA(Initiate, l.addr())
	ca.Compression = CompressDeflate
	a := newStream(t, ca)
	evA := run(t, a)
	next(t, evA, relay.Up)
	for i := range 3 {
		send(t, a, byte(i), msgAB)
		// Each stanza is flushed: it arrives without waiting for more.
		if e := next(t, evB, relay.Received); string(e.Item.Payload) != msgAB {
			t.Fatalf("B got %q", e.Item.Payload)
		}
	}
	send(t, b, 9, msgBA)
	if e := next(t, evA, relay.Received); string(e.Item.Payload) != msgBA {
		t.Fatalf("A got %q", e.Item.Payload)
	}
}

// TestDeflateRawPeer checks the wire format against the standard zlib
// reader: a zlib stream, decodable stanza by stanza.
func TestDeflateRawPeer(t *testing.T) {
	l := listen(t)
	ca := cfgA(Initiate, l.addr())
	ca.Compression = CompressDeflate
	a := newStream(t, ca)
	ev := run(t, a)
	peer, err := l.ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	next(t, ev, relay.Up)
	send(t, a, 1, msgAB)
	peer.SetReadDeadline(time.Now().Add(waitLong))
	z, err := zlib.NewReader(peer)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(msgAB))
	if _, err := io.ReadFull(z, buf); err != nil || string(buf) != msgAB {
		t.Fatalf("decompressed %q, %v", buf, err)
	}
	// And the peer's compressed stanza reaches us.
	zw := zlib.NewWriter(peer)
	io.WriteString(zw, msgBA)
	zw.Flush()
	if e := next(t, ev, relay.Received); string(e.Item.Payload) != msgBA {
		t.Fatalf("got %q", e.Item.Payload)
	}
}

func TestStreamManagement(t *testing.T) {
	l := listen(t)
	cb := cfgB(Accept, "")
	cb.SM = true
	b := newStream(t, cb)
	l.serve(t, b)
	evB := run(t, b)
	ca := cfgA(Initiate, l.addr())
	ca.SM = true
	a := newStream(t, ca)
	evA := run(t, a)
	next(t, evA, relay.Up)

	ids := []brlink.ID{send(t, a, 1, msgAB), send(t, a, 2, msgAB), send(t, a, 3, msgAB)}
	var acks []func()
	for range 3 {
		e := next(t, evB, relay.Received)
		if e.Ack == nil {
			t.Fatal("SM received item without an Ack")
		}
		acks = append(acks, e.Ack)
	}
	// Not stored by the relay yet: no acknowledgement goes back.
	none(t, evA, relay.Acked, 300*time.Millisecond)
	for _, ack := range acks {
		ack()
	}
	var got []brlink.ID
	for len(got) < 3 {
		got = append(got, next(t, evA, relay.Acked).IDs...)
	}
	if !slices.Equal(got, ids) {
		t.Fatalf("acked %v, want %v", got, ids)
	}

	// Two more, never acknowledged; the link is cut. They are not
	// Acked, so after Down then Up the relay sends them again.
	send(t, a, 4, msgAB)
	send(t, a, 5, msgAB)
	next(t, evB, relay.Received)
	next(t, evB, relay.Received)
	l.cut()
	for {
		e := <-evA
		if e.Kind == relay.Acked {
			t.Fatalf("unacknowledged items reported Acked: %v", e.IDs)
		}
		if e.Kind == relay.Down {
			break
		}
	}
	next(t, evA, relay.Up, relay.Acked)
	send(t, a, 4, msgAB)
	e := next(t, evB, relay.Received)
	e.Ack()
	if e := next(t, evA, relay.Acked); !slices.Equal(e.IDs, []brlink.ID{{4}}) {
		t.Fatalf("after reconnect acked %v", e.IDs)
	}
}

func TestConfigChecks(t *testing.T) {
	base := cfgA(Initiate, "127.0.0.1:1")
	for _, tc := range []struct {
		name string
		mod  func(*StreamConfig)
	}{
		{"implicit without insecure", func(c *StreamConfig) { c.Identity = IdentityImplicit }},
		{"no identity", func(c *StreamConfig) { c.Identity = 0 }},
		{"pin without pins", func(c *StreamConfig) { c.Identity = IdentityTLSPin }},
		{"pki without CAs", func(c *StreamConfig) { c.Identity = IdentityTLSPKI }},
		{"initiate without address", func(c *StreamConfig) { c.Connect = "" }},
		{"no peer domains", func(c *StreamConfig) { c.PeerDomains = nil }},
		{"a JID as a domain", func(c *StreamConfig) { c.LocalDomains = []string{"u@a.example"} }},
	} {
		cfg := base
		tc.mod(&cfg)
		if _, err := NewStream(cfg); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
	cfg := base
	cfg.Identity, cfg.Insecure = IdentityImplicit, true
	if _, err := NewStream(cfg); err != nil {
		t.Errorf("implicit with insecure: %v", err)
	}
}

// TestListen: the bearer runs its own listener.
func TestListen(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cb := cfgB(Accept, "")
	cb.Listen = addr
	b := newStream(t, cb)
	evB := run(t, b)
	a := newStream(t, cfgA(Initiate, addr))
	evA := run(t, a)
	next(t, evA, relay.Up)
	send(t, a, 1, msgAB)
	if e := next(t, evB, relay.Received); string(e.Item.Payload) != msgAB {
		t.Fatalf("got %q", e.Item.Payload)
	}
}
