package irc

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ergochat/irc-go/ircreader"
)

// fakeServer is a scripted IRC server for unit tests: each accepted connection is handed to the
// test as a fakeConn, which reads the client's lines and writes the server's.
type fakeServer struct {
	t     *testing.T
	ln    net.Listener
	conns chan *fakeConn
}

type fakeConn struct {
	t     *testing.T
	c     net.Conn
	lines chan string // from the client, with read times in times
	mu    sync.Mutex
	times []time.Time
}

func newFakeServer(t *testing.T) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeServer{t: t, ln: ln, conns: make(chan *fakeConn, 8)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fc := &fakeConn{t: t, c: c, lines: make(chan string, 1024)}
			go fc.read()
			s.conns <- fc
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return s
}

func (s *fakeServer) addr() string { return s.ln.Addr().String() }

// accept returns the next connection from the client.
func (s *fakeServer) accept() *fakeConn {
	s.t.Helper()
	select {
	case c := <-s.conns:
		s.t.Cleanup(func() { c.c.Close() })
		return c
	case <-time.After(10 * time.Second):
		s.t.Fatal("no connection from the client")
		return nil
	}
}

func (c *fakeConn) read() {
	var r ircreader.Reader
	r.Initialize(c.c, 512, 16384)
	defer close(c.lines)
	for {
		b, err := r.ReadLine()
		if err != nil {
			return
		}
		c.mu.Lock()
		c.times = append(c.times, time.Now())
		c.mu.Unlock()
		c.lines <- string(b)
	}
}

// send writes server lines.
func (c *fakeConn) send(lines ...string) {
	c.t.Helper()
	for _, l := range lines {
		if _, err := c.c.Write([]byte(l + "\r\n")); err != nil {
			c.t.Errorf("fake server write: %v", err)
		}
	}
}

// expect reads client lines until one starts with prefix, skipping others; it fails the test after
// 10 seconds.
func (c *fakeConn) expect(prefix string) string {
	c.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case l, ok := <-c.lines:
			if !ok {
				c.t.Fatalf("connection closed while waiting for %q", prefix)
			}
			if strings.HasPrefix(l, prefix) {
				return l
			}
		case <-deadline:
			c.t.Fatalf("no line starting %q from the client", prefix)
		}
	}
}

// register plays a server without CAP: it waits for NICK and USER and welcomes the nick.
func (c *fakeConn) register(isupport ...string) string {
	c.t.Helper()
	nick := strings.TrimPrefix(c.expect("NICK "), "NICK ")
	c.expect("USER ")
	c.welcome(nick, isupport...)
	return nick
}

func (c *fakeConn) welcome(nick string, isupport ...string) {
	c.t.Helper()
	c.send(":srv 001 "+nick+" :Welcome", ":srv 002 "+nick+" :Your host")
	if len(isupport) > 0 {
		c.send(":srv 005 " + nick + " " + strings.Join(isupport, " ") + " :are supported by this server")
	}
	c.send(":srv 422 " + nick + " :MOTD File is missing")
}

// testClient starts a client on the fake server and stops it when the test ends.
func testClient(t *testing.T, s *fakeServer, mod func(*Config)) *Client {
	t.Helper()
	cfg := Config{
		Addr: s.addr(), Nick: "alice", Network: "test",
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
		Rate: 1000, Burst: 100,
	}
	if mod != nil {
		mod(&cfg)
	}
	c := New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	go c.Run(ctx)
	t.Cleanup(func() {
		cancel()
		select {
		case <-c.Done():
		case <-time.After(5 * time.Second):
			t.Error("client did not stop")
		}
	})
	return c
}

// waitEvent reads events until one of kind arrives (and matches, if match is set).
func waitEvent(t *testing.T, c *Client, kind EventKind, match func(Event) bool) Event {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-c.Events():
			if !ok {
				t.Fatal("events closed")
			}
			if ev.Kind == kind && (match == nil || match(ev)) {
				return ev
			}
		case <-deadline:
			t.Fatalf("no event of kind %d", kind)
		}
	}
}

func isCmd(cmd string) func(Event) bool {
	return func(ev Event) bool { return ev.Msg.Command == cmd }
}
