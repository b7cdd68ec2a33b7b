package component

import (
	"bufio"
	"context"
	"io"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

type fakeRouter struct{ ch chan string }

func (f *fakeRouter) Inject(st *wire.Element, from, to jid.JID) {
	f.ch <- from.String() + " " + to.String() + " " + st.String()
}

func TestHandshakeVector(t *testing.T) {
	// PROTOCOLS.md §7.1.
	if got := handshakeDigest("3BF96D32", "secret"); got != "b09ea9b3b7f586be8a08d0a3dd7466f110aeb136" {
		t.Fatalf("digest %s", got)
	}
}

func start(t *testing.T) (*Server, *fakeRouter, string) {
	t.Helper()
	r := &fakeRouter{ch: make(chan string, 16)}
	s := New(Config{Secrets: map[string]string{"irc.test": "s3cret-s3cret"}, Router: r, HandshakeTimeout: 5 * time.Second})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	})
	return s, r, ln.Addr().String()
}

var idRE = regexp.MustCompile(`id='([^']+)'`)

// connect opens a component stream and returns the connection after the
// handshake answer (or stream error) has been read.
func connect(t *testing.T, addr, domain, secret string) (net.Conn, *bufio.Reader, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, `<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='`+domain+`'>`)
	br := bufio.NewReader(c)
	buf := make([]byte, 4096)
	n, _ := br.Read(buf)
	head := string(buf[:n])
	m := idRE.FindStringSubmatch(head)
	if m == nil {
		return c, br, head
	}
	io.WriteString(c, "<handshake>"+handshakeDigest(m[1], secret)+"</handshake>")
	n, _ = br.Read(buf)
	return c, br, head + string(buf[:n])
}

func TestComponent(t *testing.T) {
	s, r, addr := start(t)
	c, br, got := connect(t, addr, "irc.test", "s3cret-s3cret")
	if !strings.Contains(got, "<handshake/>") {
		t.Fatalf("got %s", got)
	}
	// To the router, in jabber:client.
	io.WriteString(c, `<message from='#chan@irc.test/nick' to='alice@example.org'><body>hi</body></message>`)
	select {
	case in := <-r.ch:
		if !strings.HasPrefix(in, "#chan@irc.test/nick alice@example.org <message") || strings.Contains(in, "jabber:") {
			t.Fatalf("injected %s", in)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("nothing injected")
	}
	// From the router to the component.
	st, _ := wire.ParseElement(`<message xmlns='jabber:client' from='alice@example.org/x' to='#chan@irc.test' id='m1'><body>yo</body></message>`)
	s.Service("irc.test").Route(st, jid.MustParse("alice@example.org/x"), jid.MustParse("#chan@irc.test"))
	buf := make([]byte, 4096)
	n, _ := br.Read(buf)
	if out := string(buf[:n]); !strings.Contains(out, "id='m1'") || strings.Contains(out, "jabber:client") {
		t.Fatalf("component got %s", out)
	}

	// A second connection for the same domain is refused.
	_, _, got = connect(t, addr, "irc.test", "s3cret-s3cret")
	if !strings.Contains(got, "conflict") {
		t.Fatalf("duplicate got %s", got)
	}
	// Spoofed from: stream error, nothing injected.
	io.WriteString(c, `<message from='bob@example.org' to='alice@example.org'><body>x</body></message>`)
	out, _ := io.ReadAll(br)
	if !strings.Contains(string(out), "invalid-from") {
		t.Fatalf("spoof got %s", out)
	}
	select {
	case in := <-r.ch:
		t.Fatalf("injected %s", in)
	default:
	}
	// Once it has gone, stanzas for it bounce.
	time.Sleep(100 * time.Millisecond)
	s.Service("irc.test").Route(st, jid.MustParse("alice@example.org/x"), jid.MustParse("#chan@irc.test"))
	if in := <-r.ch; !strings.Contains(in, "service-unavailable") {
		t.Fatalf("bounce %s", in)
	}
}

func TestWrongSecretAndUnknownDomain(t *testing.T) {
	_, _, addr := start(t)
	if _, _, got := connect(t, addr, "irc.test", "wrong"); !strings.Contains(got, "not-authorized") {
		t.Fatalf("wrong secret got %s", got)
	}
	if _, _, got := connect(t, addr, "nope.test", "x"); !strings.Contains(got, "host-unknown") {
		t.Fatalf("unknown domain got %s", got)
	}
}

func FuzzCheckHandshake(f *testing.F) {
	f.Add(`<handshake xmlns='jabber:component:accept'>b09ea9b3b7f586be8a08d0a3dd7466f110aeb136</handshake>`)
	f.Add(`<handshake xmlns='jabber:component:accept'>B09EA9B3B7F586BE8A08D0A3DD7466F110AEB136</handshake>`)
	f.Add(`<handshake/>`)
	f.Fuzz(func(t *testing.T, s string) {
		el, err := wire.ParseElement(s)
		if err != nil {
			return
		}
		if checkHandshake(el, "3BF96D32", "secret") &&
			strings.ToLower(strings.TrimSpace(el.Text())) != "b09ea9b3b7f586be8a08d0a3dd7466f110aeb136" {
			t.Fatalf("accepted %s", s)
		}
	})
}
