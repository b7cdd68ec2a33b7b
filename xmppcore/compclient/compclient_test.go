package compclient

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/aldis-im/aldis/xmppcore/component"
	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/stanza"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

type router struct{ ch chan *wire.Element }

func (r *router) Inject(st *wire.Element, _, _ jid.JID) { r.ch <- st }

func TestDigestVector(t *testing.T) {
	// PROTOCOLS.md §7.1.
	if got := Digest("3BF96D32", "secret"); got != "b09ea9b3b7f586be8a08d0a3dd7466f110aeb136" {
		t.Fatalf("digest %s", got)
	}
}

// serve runs aldis's own component listener for irc.test.
func serve(t *testing.T) (*component.Server, *router, string) {
	t.Helper()
	r := &router{ch: make(chan *wire.Element, 16)}
	s := component.New(component.Config{Secrets: map[string]string{"irc.test": "s3cret"}, Router: r})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return s, r, ln.Addr().String()
}

func TestStanzasBothWays(t *testing.T) {
	srv, r, addr := serve(t)
	got := make(chan *wire.Element, 4)
	ready := make(chan struct{}, 1)
	c := New(Config{Addr: addr, Domain: "irc.test", Secret: "s3cret",
		Handle:    func(st *wire.Element, _, _ jid.JID) { got <- st },
		OnConnect: func() { ready <- struct{}{} }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	select {
	case <-ready:
	case <-time.After(5 * time.Second):
		t.Fatal("no handshake")
	}

	// Component → server.
	m := wire.New("message", "")
	m.SetAttr("from", "bob%lab@irc.test/1").SetAttr("to", "room@conference.test")
	m.AddChild(wire.New("body", "")).AddText("hi <there>")
	c.Deliver(m, jid.JID{}, jid.JID{})
	select {
	case st := <-r.ch:
		if st.ChildText("body", "") != "hi <there>" || st.Attr("from") != "bob%lab@irc.test/1" {
			t.Errorf("server got %s", st)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("nothing reached the server")
	}

	// Server → component, in jabber:client for the handler.
	in := wire.New("message", stanza.NSClient)
	in.SetAttr("from", "room@conference.test/alice").SetAttr("to", "irc.test/bridge")
	in.AddChild(wire.New("body", "")).AddText("hello")
	from, _ := jid.Parse(in.Attr("from"))
	to, _ := jid.Parse(in.Attr("to"))
	srv.Service("irc.test").Route(in, from, to)
	select {
	case st := <-got:
		if st.Space != stanza.NSClient || st.ChildText("body", "") != "hello" {
			t.Errorf("component got %s (space %q)", st, st.Space)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("nothing reached the component")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestWrongSecret(t *testing.T) {
	_, _, addr := serve(t)
	c := New(Config{Addr: addr, Domain: "irc.test", Secret: "wrong"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Run(ctx); !errors.Is(err, ErrNotAuthorized) {
		t.Fatalf("Run: %v, want ErrNotAuthorized", err)
	}
}

// TestReconnect: the server goes away and comes back on the same port; the
// client connects again by itself (and OnConnect tells the bridge to rejoin).
func TestReconnect(t *testing.T) {
	r := &router{ch: make(chan *wire.Element, 16)}
	listen := func(addr string) (*component.Server, net.Listener) {
		s := component.New(component.Config{Secrets: map[string]string{"irc.test": "s3cret"}, Router: r})
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		go s.Serve(ln)
		return s, ln
	}
	s1, ln := listen("127.0.0.1:0")
	addr := ln.Addr().String()
	ready := make(chan struct{}, 4)
	c := New(Config{Addr: addr, Domain: "irc.test", Secret: "s3cret", OnConnect: func() { ready <- struct{}{} }})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go c.Run(ctx)
	wait := func(what string) {
		t.Helper()
		select {
		case <-ready:
		case <-time.After(10 * time.Second):
			t.Fatalf("no %s", what)
		}
	}
	wait("first connection")
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	_ = s1.Shutdown(sctx)
	s2, _ := listen(addr)
	t.Cleanup(func() { _ = s2.Shutdown(sctx) })
	wait("second connection")
	m := wire.New("message", "")
	m.SetAttr("from", "irc.test").SetAttr("to", "alice@example.org")
	c.Deliver(m, jid.JID{}, jid.JID{})
	select {
	case <-r.ch:
	case <-time.After(5 * time.Second):
		t.Fatal("nothing reached the second server")
	}
}
