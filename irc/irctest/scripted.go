package irctest

// This file is the one scripted IRC server of the unit tests. Package irc's tests and
// bridges/ircmuc's each had their own copy; this package must not import package irc, so that
// package irc's internal tests can use it too.

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ergochat/irc-go/ircreader"
)

// scriptTimeout is how long Accept, Expect and Next wait before failing the test.
const scriptTimeout = 10 * time.Second

// Scripted is an IRC server whose every line the test writes: each accepted connection is handed
// to the test as a ScriptedConn, which reads the client's lines and writes the server's. It is for
// what a real server cannot be made to do (a refused SASL login, a lost PONG, a capability no
// packaged server offers).
type Scripted struct {
	t     testing.TB
	ln    net.Listener
	conns chan *ScriptedConn
}

// ScriptedConn is one client connection to a Scripted server.
type ScriptedConn struct {
	t     testing.TB
	c     net.Conn
	lines chan string // from the client; closed when it stops sending
	mu    sync.Mutex
	last  time.Time // when the latest line was read
}

// NewScripted listens on a free loopback port; the listener is closed when the test ends.
func NewScripted(t testing.TB) *Scripted {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return NewScriptedOn(t, ln)
}

// NewScriptedOn serves on ln (a TLS listener, say), which it closes when the test ends.
func NewScriptedOn(t testing.TB, ln net.Listener) *Scripted {
	s := &Scripted{t: t, ln: ln, conns: make(chan *ScriptedConn, 8)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			sc := &ScriptedConn{t: t, c: c, lines: make(chan string, 1024)}
			go sc.read()
			s.conns <- sc
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return s
}

// Addr is the host:port the server listens on.
func (s *Scripted) Addr() string { return s.ln.Addr().String() }

// Close closes the listener: connections are refused from then on.
func (s *Scripted) Close() { s.ln.Close() }

// Accept returns the next connection from the client, failing the test after 10 seconds; the
// connection is closed when the test ends.
func (s *Scripted) Accept() *ScriptedConn {
	s.t.Helper()
	select {
	case c := <-s.conns:
		s.t.Cleanup(func() { c.c.Close() })
		return c
	case <-time.After(scriptTimeout):
		s.t.Fatal("no connection from the client")
		return nil
	}
}

func (c *ScriptedConn) read() {
	var r ircreader.Reader
	r.Initialize(c.c, 512, 16384)
	defer close(c.lines)
	for {
		b, err := r.ReadLine()
		if err != nil {
			return
		}
		c.mu.Lock()
		c.last = time.Now()
		c.mu.Unlock()
		c.lines <- string(b)
	}
}

// Close closes the connection, as a server that dies would.
func (c *ScriptedConn) Close() { c.c.Close() }

// Lines gives the client's lines as they come, PINGs included; it is closed when the client stops
// sending.
func (c *ScriptedConn) Lines() <-chan string { return c.lines }

// LastRead is when the latest line from the client was read (it may be later than the last one
// the test took).
func (c *ScriptedConn) LastRead() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

// Send writes server lines, adding "\r\n" to each.
func (c *ScriptedConn) Send(lines ...string) {
	c.t.Helper()
	for _, l := range lines {
		if _, err := c.c.Write([]byte(l + "\r\n")); err != nil {
			c.t.Errorf("scripted server write: %v", err)
		}
	}
}

// Expect reads client lines until one starts with prefix, skipping others; it fails the test after
// 10 seconds.
func (c *ScriptedConn) Expect(prefix string) string {
	c.t.Helper()
	return c.await(fmt.Sprintf("line starting %q", prefix), func(l string) bool { return strings.HasPrefix(l, prefix) })
}

// Next returns the client's next line that is not a PING (a keepalive or a confirmation); it fails
// the test after 10 seconds.
func (c *ScriptedConn) Next() string {
	c.t.Helper()
	return c.await("line", func(l string) bool { return !strings.HasPrefix(l, "PING ") })
}

func (c *ScriptedConn) await(what string, match func(string) bool) string {
	c.t.Helper()
	deadline := time.After(scriptTimeout)
	for {
		select {
		case l, ok := <-c.lines:
			if !ok {
				c.t.Fatalf("connection closed while waiting for a %s", what)
			}
			if match(l) {
				return l
			}
		case <-deadline:
			c.t.Fatalf("no %s from the client", what)
		}
	}
}

// Register plays a server without CAP: it waits for NICK and USER, welcomes the nick (see Welcome)
// and returns it.
func (c *ScriptedConn) Register(isupport ...string) string {
	c.t.Helper()
	nick := strings.TrimPrefix(c.Expect("NICK "), "NICK ")
	c.Expect("USER ")
	c.Welcome(nick, isupport...)
	return nick
}

// Welcome ends registration for nick: 001, 002, a 005 with the isupport tokens if any, and 422
// (no MOTD).
func (c *ScriptedConn) Welcome(nick string, isupport ...string) {
	c.t.Helper()
	c.Send(":srv 001 "+nick+" :Welcome", ":srv 002 "+nick+" :Your host")
	if len(isupport) > 0 {
		c.Send(":srv 005 " + nick + " " + strings.Join(isupport, " ") + " :are supported by this server")
	}
	c.Send(":srv 422 " + nick + " :MOTD File is missing")
}
