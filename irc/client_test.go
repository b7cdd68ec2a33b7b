package irc

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestRegisterWithoutCapsAndNickInUse(t *testing.T) {
	s := newFakeServer(t)
	c := testClient(t, s, nil)
	fc := s.accept()
	if l := fc.expect("CAP LS"); l != "CAP LS 302" {
		t.Fatalf("first line %q", l)
	}
	fc.send(":srv 421 * CAP :Unknown command")
	fc.expect("NICK alice")
	fc.expect("USER alice 0 * alice")
	fc.send(":srv 433 * alice :Nickname is already in use")
	fc.expect("NICK alice_")
	fc.send(":srv 433 * alice_ :Nickname is already in use")
	fc.expect("NICK alice1")
	fc.welcome("alice1", "CASEMAPPING=ascii", "NICKLEN=12", "PREFIX=(qaohv)~&@%+", "CHANTYPES=#", "NETWORK=Test\\x20Net")
	waitEvent(t, c, Connected, nil)
	st := c.State()
	if !st.Ready || st.Nick != "alice1" {
		t.Fatalf("state %+v", st)
	}
	is := st.ISupport
	if is.CaseMapping != ASCII || is.NickLen != 12 || is.PrefixChars != "~&@%+" || is.ChanTypes != "#" || is.Network != "Test Net" {
		t.Fatalf("isupport %+v", is)
	}
}

func TestCapsAndSASLPlain(t *testing.T) {
	s := newFakeServer(t)
	c := testClient(t, s, func(cfg *Config) {
		cfg.SASL = SASL{Mechanism: "PLAIN", Login: "alice", Password: "s3cret", Required: true}
	})
	fc := s.accept()
	fc.expect("CAP LS 302")
	fc.send(":srv CAP * LS * :multi-prefix sasl=PLAIN,EXTERNAL server-time",
		":srv CAP * LS :message-tags echo-message unknown-cap account-tag")
	req := fc.expect("CAP REQ")
	for _, want := range []string{"multi-prefix", "sasl", "server-time", "message-tags", "echo-message", "account-tag"} {
		if !strings.Contains(req, want) {
			t.Errorf("CAP REQ %q lacks %s", req, want)
		}
	}
	if strings.Contains(req, "unknown-cap") {
		t.Errorf("requested a cap it does not want: %q", req)
	}
	fc.send(":srv CAP * ACK :" + strings.TrimPrefix(strings.TrimPrefix(req, "CAP REQ "), ":"))
	fc.expect("AUTHENTICATE PLAIN")
	fc.send("AUTHENTICATE +")
	payload := strings.TrimPrefix(fc.expect("AUTHENTICATE "), "AUTHENTICATE ")
	dec, err := base64.StdEncoding.DecodeString(payload)
	if err != nil || string(dec) != "alice\x00alice\x00s3cret" {
		t.Fatalf("SASL payload %q (%v)", dec, err)
	}
	fc.send(":srv 900 * alice!a@h alice :You are now logged in", ":srv 903 * :SASL authentication successful")
	fc.expect("CAP END")
	fc.welcome("alice")
	waitEvent(t, c, Connected, nil)
	st := c.State()
	if st.Account != "alice" {
		t.Errorf("account %q", st.Account)
	}
	if _, ok := st.Caps["server-time"]; !ok {
		t.Errorf("caps %v", st.Caps)
	}
	if st.Caps["sasl"] != "PLAIN,EXTERNAL" {
		t.Errorf("sasl cap value %q", st.Caps["sasl"])
	}
	// server-time sets the event time.
	fc.send("@time=2024-05-06T07:08:09.123Z :bob!b@h PRIVMSG #c :hi")
	ev := waitEvent(t, c, Received, isCmd("PRIVMSG"))
	if want := time.Date(2024, 5, 6, 7, 8, 9, 123e6, time.UTC); !ev.Time.Equal(want) {
		t.Errorf("event time %v, want %v", ev.Time, want)
	}
}

func TestSASLRequiredFailureReconnects(t *testing.T) {
	s := newFakeServer(t)
	c := testClient(t, s, func(cfg *Config) {
		cfg.SASL = SASL{Mechanism: "PLAIN", Login: "a", Password: "b", Required: true}
	})
	fc := s.accept()
	fc.expect("CAP LS")
	fc.send(":srv CAP * LS :sasl")
	fc.expect("CAP REQ")
	fc.send(":srv CAP * ACK :sasl")
	fc.expect("AUTHENTICATE PLAIN")
	fc.send(":srv 904 * :SASL authentication failed")
	ev := waitEvent(t, c, Disconnected, nil)
	if !errors.Is(ev.Err, ErrSASLFailed) {
		t.Fatalf("disconnected with %v, want ErrSASLFailed", ev.Err)
	}
	s.accept().expect("CAP LS") // and it tries again
}

func TestNickServIdentify(t *testing.T) {
	s := newFakeServer(t)
	testClient(t, s, func(cfg *Config) { cfg.NickServ = "pw" })
	fc := s.accept()
	fc.register()
	if l := fc.expect("PRIVMSG NickServ"); l != "PRIVMSG NickServ :IDENTIFY pw" {
		t.Fatalf("got %q", l)
	}
}

func TestPingAnsweredWhileConsumerIsSlow(t *testing.T) {
	s := newFakeServer(t)
	c := testClient(t, s, func(cfg *Config) { cfg.EventQueue = 1 })
	fc := s.accept()
	fc.register()
	// Nobody reads events: the queue fills, the client stops taking lines...
	for i := range 100 {
		fc.send(":bob!b@h PRIVMSG #c :message " + strings.Repeat("x", i))
	}
	// ...but still answers PING, within a second.
	start := time.Now()
	fc.send("PING :tok123")
	if l := fc.expect("PONG"); l != "PONG tok123" {
		t.Fatalf("got %q", l)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("PONG after %v", d)
	}
	_ = c
}

func TestKeepalive(t *testing.T) {
	s := newFakeServer(t)
	c := testClient(t, s, func(cfg *Config) {
		cfg.PingInterval = 100 * time.Millisecond
		cfg.PingTimeout = 100 * time.Millisecond
	})
	fc := s.accept()
	fc.register()
	waitEvent(t, c, Connected, nil)
	fc.expect("PING :aldis-") // the server went quiet: we ask
	ev := waitEvent(t, c, Disconnected, nil)
	if !errors.Is(ev.Err, ErrPingTimeout) {
		t.Fatalf("disconnected with %v", ev.Err)
	}
	s.accept().expect("NICK")
}

func TestFloodControl(t *testing.T) {
	s := newFakeServer(t)
	c := testClient(t, s, func(cfg *Config) { cfg.Rate = 20; cfg.Burst = 3 })
	fc := s.accept()
	fc.register()
	waitEvent(t, c, Connected, nil)
	const n = 13
	for i := range n {
		if err := c.Privmsg("#c", "line"); err != nil {
			t.Fatal(err)
		}
		_ = i
	}
	var first, last time.Time
	for i := range n {
		fc.expect("PRIVMSG #c")
		fc.mu.Lock()
		ts := fc.times[len(fc.times)-1]
		fc.mu.Unlock()
		if i == 0 {
			first = ts
		}
		last = ts
	}
	// 3 at once, then 10 more at 20/s: at least 0.5 s.
	if d := last.Sub(first); d < 400*time.Millisecond {
		t.Fatalf("%d lines in %v: not paced", n, d)
	}
}

func TestReconnectRejoins(t *testing.T) {
	s := newFakeServer(t)
	c := testClient(t, s, nil)
	if err := c.Join("#Secret", "key1"); err != nil { // before connecting: remembered
		t.Fatal(err)
	}
	fc := s.accept()
	fc.register()
	fc.expect("JOIN #Secret key1")
	fc.send(":alice!a@h JOIN #Secret")
	if err := c.Join("#other", ""); err != nil {
		t.Fatal(err)
	}
	fc.expect("JOIN #other")
	fc.send(":alice!a@h JOIN :#other")
	waitEvent(t, c, Received, func(ev Event) bool { return ev.Msg.Command == "JOIN" && Param(&ev.Msg, 0) == "#other" })
	if got := c.State().Channels; len(got) != 2 {
		t.Fatalf("channels %v", got)
	}
	if err := c.Part("#other", "bye"); err != nil {
		t.Fatal(err)
	}
	fc.expect("PART #other bye")
	// The server dies.
	fc.c.Close()
	ev := waitEvent(t, c, Disconnected, nil)
	if ev.Err == nil {
		t.Fatal("no reason for the disconnection")
	}
	if err := c.Privmsg("#Secret", "x"); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("Send while down: %v", err)
	}
	fc2 := s.accept()
	fc2.register()
	waitEvent(t, c, Connected, nil)
	if l := fc2.expect("JOIN"); l != "JOIN #Secret key1" {
		t.Fatalf("rejoin %q", l)
	}
	// Nothing else is rejoined: #other was left.
	fc2.send("PING :x")
	if l := fc2.expect("P"); l != "PONG x" {
		t.Fatalf("after the rejoin the client sent %q", l)
	}
}

func TestKickIsNotFoughtOnReconnect(t *testing.T) {
	s := newFakeServer(t)
	c := testClient(t, s, nil)
	c.Join("#c", "")
	fc := s.accept()
	fc.register()
	fc.expect("JOIN #c")
	fc.send(":alice!a@h JOIN #c", ":op!o@h KICK #c alice :out")
	waitEvent(t, c, Received, isCmd("KICK"))
	fc.c.Close()
	fc2 := s.accept()
	fc2.register()
	fc2.send("PING :y")
	if l := fc2.expect("P"); l != "PONG y" {
		t.Fatalf("after a kick the client sent %q on reconnect", l)
	}
}

func TestLongMessageSplit(t *testing.T) {
	s := newFakeServer(t)
	c := testClient(t, s, nil)
	fc := s.accept()
	fc.register()
	waitEvent(t, c, Connected, nil)
	// 2,000 bytes of two-byte and four-byte characters: no cut may break one.
	text := strings.Repeat("é", 500) + strings.Repeat("😀", 250)
	if err := c.Privmsg("#chan", text); err != nil {
		t.Fatal(err)
	}
	var got strings.Builder
	for got.Len() < len(text) {
		l := fc.expect("PRIVMSG #chan ")
		if len(l)+2+assumedPrefix > 512 {
			t.Fatalf("line of %d bytes leaves no room for the %d-byte prefix the server adds", len(l), assumedPrefix)
		}
		m, err := ParseLine(l)
		if err != nil {
			t.Fatal(err)
		}
		part := Param(&m, 1)
		if !utf8.ValidString(part) {
			t.Fatalf("a cut broke a character: %q", part)
		}
		got.WriteString(part)
	}
	if got.String() != text {
		t.Fatal("the parts do not add up to the text")
	}
	// Multi-line text: one PRIVMSG per line, empty lines dropped; /me as CTCP ACTION.
	c.Privmsg("#chan", "one\n\ntwo\r\nthree")
	for _, want := range []string{"one", "two", "three"} {
		if l := fc.expect("PRIVMSG"); l != "PRIVMSG #chan "+want {
			t.Fatalf("got %q, want %s", l, want)
		}
	}
	c.Action("#chan", "waves")
	if l := fc.expect("PRIVMSG"); l != "PRIVMSG #chan :\x01ACTION waves\x01" {
		t.Fatalf("action %q", l)
	}
}

func TestSendQueueFull(t *testing.T) {
	s := newFakeServer(t)
	c := testClient(t, s, func(cfg *Config) { cfg.Rate = 0.001; cfg.Burst = 1; cfg.SendQueue = 4 })
	fc := s.accept()
	fc.register()
	waitEvent(t, c, Connected, nil)
	var err error
	for range 10 {
		if err = c.Privmsg("#c", "x"); err != nil {
			break
		}
	}
	if !errors.Is(err, ErrSendQueueFull) {
		t.Fatalf("got %v, want ErrSendQueueFull", err)
	}
	// A bad line is refused before it reaches the queue.
	if err := c.Send(Message{Command: "PRIVMSG", Params: []string{"has space", "x"}}); err == nil {
		t.Fatal("a middle parameter with a space was accepted")
	}
}

func TestQuit(t *testing.T) {
	s := newFakeServer(t)
	c := testClient(t, s, nil)
	fc := s.accept()
	fc.register()
	waitEvent(t, c, Connected, nil)
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- c.Quit(ctx, "bye now")
	}()
	if l := fc.expect("QUIT"); l != "QUIT :bye now" {
		t.Fatalf("got %q", l)
	}
	fc.c.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after Quit")
	}
}

func TestBadLinesAreSkipped(t *testing.T) {
	s := newFakeServer(t)
	c := testClient(t, s, nil)
	fc := s.accept()
	fc.register()
	waitEvent(t, c, Connected, nil)
	fc.send("", ":only-a-source", "@bad=tag=\xff", "12 numeric-too-short", ":x!y@z PRIVMSG #c :caf\xe9")
	ev := waitEvent(t, c, Received, isCmd("PRIVMSG"))
	if Param(&ev.Msg, 1) != "caf\uFFFD" {
		t.Fatalf("text %q", Param(&ev.Msg, 1))
	}
}

func TestBackoff(t *testing.T) {
	c := New(Config{Nick: "n", MinBackoff: time.Second, MaxBackoff: 10 * time.Second})
	for n := 1; n < 40; n++ {
		d := c.backoff(n)
		ceil := min(10*time.Second, time.Second<<min(n-1, 20))
		if d < 500*time.Millisecond || d > ceil {
			t.Fatalf("backoff(%d) = %v", n, d)
		}
	}
}

func TestFailoverToNextServer(t *testing.T) {
	dead := newFakeServer(t)
	deadAddr := dead.addr()
	dead.ln.Close() // refuses connections
	s := newFakeServer(t)
	c := New(Config{Addrs: []string{deadAddr, s.addr()}, Nick: "n", MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); <-c.Done() }()
	go c.Run(ctx)
	s.accept().register()
	waitEvent(t, c, Connected, nil)
}

// TestISupportAfterRegistration: a server may send 005 again later (LINELEN here) while others
// send; the race detector checks the state is handed over safely.
func TestISupportAfterRegistration(t *testing.T) {
	s := newFakeServer(t)
	c := testClient(t, s, nil)
	fc := s.accept()
	fc.register()
	waitEvent(t, c, Connected, nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 50 {
			c.Privmsg("#c", strings.Repeat("x", 600))
		}
	}()
	fc.send(":srv 005 alice LINELEN=1024 :are supported by this server")
	<-done
	waitEvent(t, c, Received, isCmd("005"))
	if c.State().ISupport.LineLen != 1024 {
		t.Fatal("LINELEN not applied")
	}
}

// TestLinesWithoutParams: numerics and PONG without parameters are not worth a crash.
func TestLinesWithoutParams(t *testing.T) {
	s := newFakeServer(t)
	c := testClient(t, s, func(cfg *Config) {
		cfg.SASL = SASL{Mechanism: "PLAIN", Login: "a", Password: "b"}
		cfg.Outbox = 4
	})
	fc := s.accept()
	fc.expect("CAP LS")
	fc.send(":srv CAP * LS :sasl")
	fc.expect("CAP REQ")
	fc.send(":srv CAP * ACK :sasl")
	fc.expect("AUTHENTICATE PLAIN")
	fc.send("904", "PONG")
	fc.expect("CAP END")
	fc.welcome("alice")
	waitEvent(t, c, Connected, nil)
	fc.send("PONG", "900", "FAIL")
	fc.send("PING :alive")
	if l := fc.expect("PONG"); l != "PONG alive" {
		t.Fatalf("got %q", l)
	}
}
