package irc

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aldis-im/aldis/irc/irctest"
	"github.com/ergochat/irc-go/ircmsg"
)

func say(text string) Message { return ircmsg.MakeMessage(nil, "", "PRIVMSG", "#c", text) }

// TestSendKeptSurvivesReconnect: kept lines the server did not confirm (its PONG to the PING after
// them never came) and lines given while disconnected are sent after the reconnect, after the
// rejoin, in order and once; a confirmed line is not sent again.
func TestSendKeptSurvivesReconnect(t *testing.T) {
	s := irctest.NewScripted(t)
	c := testClient(t, s, func(cfg *Config) { cfg.Outbox = 10 })
	c.Join("#c", "")
	fc := s.Accept()
	fc.Register()
	fc.Expect("JOIN #c")
	waitEvent(t, c, Connected, nil)

	if err := c.SendKept("r", say("one")); err != nil {
		t.Fatal(err)
	}
	if l := fc.Next(); l != "PRIVMSG #c one" {
		t.Fatalf("got %q", l)
	}
	ping := fc.Expect("PING :" + ackPrefix)
	fc.Send(":srv PONG srv :" + strings.TrimPrefix(ping, "PING :"))
	waitEvent(t, c, Received, isCmd("PONG")) // "one" is confirmed
	if err := c.SendKept("r", say("two"), say("three")); err != nil {
		t.Fatal(err)
	}
	fc.Expect("PRIVMSG #c three") // written, never confirmed
	fc.Close()
	waitEvent(t, c, Disconnected, nil)
	if err := c.SendKept("r", say("four")); err != nil {
		t.Fatalf("SendKept while disconnected: %v", err)
	}

	fc2 := s.Accept()
	fc2.Register()
	waitEvent(t, c, Connected, nil)
	for _, want := range []string{"JOIN #c", "PRIVMSG #c two", "PRIVMSG #c three", "PRIVMSG #c four"} {
		if l := fc2.Next(); l != want {
			t.Fatalf("after the reconnect got %q, want %q", l, want)
		}
	}
	// Now connected: kept lines go straight out, behind the others.
	if err := c.SendKept("r", say("five")); err != nil {
		t.Fatal(err)
	}
	if l := fc2.Next(); l != "PRIVMSG #c five" {
		t.Fatalf("got %q", l)
	}
}

// TestSendKeptExpires: a line that waits longer than OutboxAge is reported in an Unsent event with
// its reference, and not sent later; beyond Outbox lines SendKept refuses.
func TestSendKeptExpires(t *testing.T) {
	s := irctest.NewScripted(t)
	c := testClient(t, s, func(cfg *Config) { cfg.Outbox = 2; cfg.OutboxAge = 300 * time.Millisecond })
	c.Join("#c", "")
	fc := s.Accept() // never welcomed: the client is not connected
	fc.Expect("USER")
	if err := c.SendKept("carol", say("a"), say("b")); err != nil {
		t.Fatal(err)
	}
	if err := c.SendKept("dave", say("c")); !errors.Is(err, ErrOutboxFull) {
		t.Fatalf("a third line: %v, want ErrOutboxFull", err)
	}
	began := time.Now()
	for _, want := range []string{"a", "b"} {
		ev := waitEvent(t, c, Unsent, nil)
		if ev.Ref != "carol" || Param(&ev.Msg, 1) != want || !errors.Is(ev.Err, ErrExpired) {
			t.Fatalf("unsent event %+v, want carol's %q expired", ev, want)
		}
	}
	if d := time.Since(began); d > 3*time.Second {
		t.Errorf("reported after %v", d)
	}
	fc.Welcome("alice")
	fc.Expect("JOIN #c")
	fc.Send("PING :after")
	if l := fc.Next(); l != "PONG after" {
		t.Fatalf("an expired line was sent: %q", l)
	}
}

// syncBuffer is a log sink for tests.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func waitLog(t *testing.T, logs *syncBuffer, want ...string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := logs.String()
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(s, w)
		}
		if ok {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("the log does not say %q:\n%s", want, s)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestNickServNotConfirmed: an IDENTIFY that NickServ refuses (no 900 in time) is logged with what
// NickServ said, and the connection carries on; a confirmed one sets the account.
func TestNickServNotConfirmed(t *testing.T) {
	var logs syncBuffer
	s := irctest.NewScripted(t)
	c := testClient(t, s, func(cfg *Config) {
		cfg.NickServ, cfg.NickServAccount = "wrong", "gw"
		cfg.IdentifyTimeout = 200 * time.Millisecond
		cfg.Log = slog.New(slog.NewTextHandler(&logs, nil))
	})
	fc := s.Accept()
	fc.Register()
	if l := fc.Expect("PRIVMSG NickServ"); l != "PRIVMSG NickServ :IDENTIFY gw wrong" {
		t.Fatalf("got %q", l)
	}
	fc.Send(":NickServ!NickServ@services.test NOTICE alice :Invalid password for gw.")
	waitLog(t, &logs, "NickServ did not confirm the login", "Invalid password for gw.", "account=gw")
	if st := c.State(); !st.Ready || st.Account != "" {
		t.Errorf("state %+v", st)
	}

	fc.Close()
	fc2 := s.Accept()
	fc2.Register()
	fc2.Expect("PRIVMSG NickServ")
	fc2.Send(":NickServ!NickServ@services.test NOTICE alice :You are now identified for gw.",
		":srv 900 alice alice!a@h gw :You are now logged in as gw")
	waitLog(t, &logs, "logged in with NickServ")
	if st := c.State(); st.Account != "gw" {
		t.Errorf("account %q after 900", st.Account)
	}
}

// TestSASLFailureLogged: a refused SASL login that is not required is logged with the server's
// reason and registration goes on.
func TestSASLFailureLogged(t *testing.T) {
	var logs syncBuffer
	s := irctest.NewScripted(t)
	c := testClient(t, s, func(cfg *Config) {
		cfg.SASL = SASL{Mechanism: "PLAIN", Login: "gw", Password: "wrong"}
		cfg.Log = slog.New(slog.NewTextHandler(&logs, nil))
	})
	fc := s.Accept()
	offerCaps(fc, "sasl")
	fc.Expect("AUTHENTICATE PLAIN")
	fc.Send(":srv 904 * :SASL authentication failed")
	fc.Expect("CAP END")
	fc.Welcome("alice")
	waitEvent(t, c, Connected, nil)
	waitLog(t, &logs, "SASL login failed", "login=gw", "code=904", `reason="SASL authentication failed"`)
}

// TestSendKeptEchoConfirms: with echo-message the server's echo confirms a kept line and those
// before it, and no confirmation PING is sent; after a reconnect only the unconfirmed are sent.
func TestSendKeptEchoConfirms(t *testing.T) {
	s := irctest.NewScripted(t)
	c := testClient(t, s, func(cfg *Config) { cfg.Outbox = 10; cfg.Caps = []string{"echo-message"} })
	c.Join("#c", "")
	fc := s.Accept()
	offerCaps(fc, "echo-message")
	fc.Expect("CAP END")
	fc.Welcome("alice")
	fc.Expect("JOIN #c")
	waitEvent(t, c, Connected, nil)
	if err := c.SendKept("r", say("one"), say("two"), say("three")); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"PRIVMSG #c one", "PRIVMSG #c two", "PRIVMSG #c three"} {
		select {
		case l := <-fc.Lines():
			if l != want {
				t.Fatalf("got %q, want %q (no confirmation PING with echo-message)", l, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no %q", want)
		}
	}
	fc.Send(":alice!a@h PRIVMSG #c :two") // the echo of "two" confirms "one" too
	waitEvent(t, c, Received, func(ev Event) bool { return ev.Msg.Command == "PRIVMSG" })
	fc.Close()
	fc2 := s.Accept()
	fc2.Register()
	for _, want := range []string{"JOIN #c", "PRIVMSG #c three"} {
		if l := fc2.Next(); l != want {
			t.Fatalf("after the reconnect got %q, want %q", l, want)
		}
	}
	fc2.Send("PING :end")
	if l := fc2.Next(); l != "PONG end" {
		t.Fatalf("after the unconfirmed line: %q", l)
	}
}
