package irc

import (
	"context"
	"testing"
	"time"

	"github.com/aldis-im/aldis/irc/irctest"
)

// testClient starts a client on the scripted server and stops it when the test ends.
func testClient(t *testing.T, s *irctest.Scripted, mod func(*Config)) *Client {
	t.Helper()
	cfg := Config{
		Addr: s.Addr(), Nick: "alice", Network: "test",
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

// offerCaps plays the server's side of capability negotiation: it offers
// caps on CAP LS and acknowledges the client's CAP REQ.
func offerCaps(fc *irctest.ScriptedConn, caps string) {
	fc.Expect("CAP LS")
	fc.Send(":srv CAP * LS :" + caps)
	fc.Expect("CAP REQ")
	fc.Send(":srv CAP * ACK :" + caps)
}
