package irc

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/aldis-im/aldis/irc/irctest"
)

func TestRegisterWithoutCapsAndNickInUse(t *testing.T) {
	s := irctest.NewScripted(t)
	c := testClient(t, s, nil)
	fc := s.Accept()
	if l := fc.Expect("CAP LS"); l != "CAP LS 302" {
		t.Fatalf("first line %q", l)
	}
	fc.Send(":srv 421 * CAP :Unknown command")
	fc.Expect("NICK alice")
	fc.Expect("USER alice 0 * alice")
	fc.Send(":srv 433 * alice :Nickname is already in use")
	fc.Expect("NICK alice_")
	fc.Send(":srv 433 * alice_ :Nickname is already in use")
	fc.Expect("NICK alice1")
	fc.Welcome("alice1", "CASEMAPPING=ascii", "NICKLEN=12", "PREFIX=(qaohv)~&@%+", "CHANTYPES=#", "NETWORK=Test\\x20Net")
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
	s := irctest.NewScripted(t)
	c := testClient(t, s, func(cfg *Config) {
		cfg.SASL = SASL{Mechanism: "PLAIN", Login: "alice", Password: "s3cret", Required: true}
	})
	fc := s.Accept()
	fc.Expect("CAP LS 302")
	fc.Send(":srv CAP * LS * :multi-prefix sasl=PLAIN,EXTERNAL server-time",
		":srv CAP * LS :message-tags echo-message unknown-cap account-tag")
	req := fc.Expect("CAP REQ")
	for _, want := range []string{"multi-prefix", "sasl", "server-time", "message-tags", "echo-message", "account-tag"} {
		if !strings.Contains(req, want) {
			t.Errorf("CAP REQ %q lacks %s", req, want)
		}
	}
	if strings.Contains(req, "unknown-cap") {
		t.Errorf("requested a cap it does not want: %q", req)
	}
	fc.Send(":srv CAP * ACK :" + strings.TrimPrefix(strings.TrimPrefix(req, "CAP REQ "), ":"))
	fc.Expect("AUTHENTICATE PLAIN")
	fc.Send("AUTHENTICATE +")
	payload := strings.TrimPrefix(fc.Expect("AUTHENTICATE "), "AUTHENTICATE ")
	dec, err := base64.StdEncoding.DecodeString(payload)
	if err != nil || string(dec) != "alice\x00alice\x00s3cret" {
		t.Fatalf("SASL payload %q (%v)", dec, err)
	}
	fc.Send(":srv 900 * alice!a@h alice :You are now logged in", ":srv 903 * :SASL authentication successful")
	fc.Expect("CAP END")
	fc.Welcome("alice")
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
	fc.Send("@time=2024-05-06T07:08:09.123Z :bob!b@h PRIVMSG #c :hi")
	ev := waitEvent(t, c, Received, isCmd("PRIVMSG"))
	if want := time.Date(2024, 5, 6, 7, 8, 9, 123e6, time.UTC); !ev.Time.Equal(want) {
		t.Errorf("event time %v, want %v", ev.Time, want)
	}
}

func TestSASLRequiredFailureReconnects(t *testing.T) {
	s := irctest.NewScripted(t)
	c := testClient(t, s, func(cfg *Config) {
		cfg.SASL = SASL{Mechanism: "PLAIN", Login: "a", Password: "b", Required: true}
	})
	fc := s.Accept()
	offerCaps(fc, "sasl")
	fc.Expect("AUTHENTICATE PLAIN")
	fc.Send(":srv 904 * :SASL authentication failed")
	ev := waitEvent(t, c, Disconnected, nil)
	if !errors.Is(ev.Err, ErrSASLFailed) {
		t.Fatalf("disconnected with %v, want ErrSASLFailed", ev.Err)
	}
	s.Accept().Expect("CAP LS") // and it tries again
}

func TestNickServIdentify(t *testing.T) {
	s := irctest.NewScripted(t)
	testClient(t, s, func(cfg *Config) { cfg.NickServ = "pw" })
	fc := s.Accept()
	fc.Register()
	if l := fc.Expect("PRIVMSG NickServ"); l != "PRIVMSG NickServ :IDENTIFY pw" {
		t.Fatalf("got %q", l)
	}
}

func TestPingAnsweredWhileConsumerIsSlow(t *testing.T) {
	s := irctest.NewScripted(t)
	c := testClient(t, s, func(cfg *Config) { cfg.EventQueue = 1 })
	fc := s.Accept()
	fc.Register()
	// Nobody reads events: the queue fills, the client stops taking lines...
	for i := range 100 {
		fc.Send(":bob!b@h PRIVMSG #c :message " + strings.Repeat("x", i))
	}
	// ...but still answers PING, within a second.
	start := time.Now()
	fc.Send("PING :tok123")
	if l := fc.Expect("PONG"); l != "PONG tok123" {
		t.Fatalf("got %q", l)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("PONG after %v", d)
	}
	_ = c
}

func TestKeepalive(t *testing.T) {
	s := irctest.NewScripted(t)
	c := testClient(t, s, func(cfg *Config) {
		cfg.PingInterval = 100 * time.Millisecond
		cfg.PingTimeout = 100 * time.Millisecond
	})
	fc := s.Accept()
	fc.Register()
	waitEvent(t, c, Connected, nil)
	fc.Expect("PING :aldis-") // the server went quiet: we ask
	ev := waitEvent(t, c, Disconnected, nil)
	if !errors.Is(ev.Err, ErrPingTimeout) {
		t.Fatalf("disconnected with %v", ev.Err)
	}
	s.Accept().Expect("NICK")
}

func TestFloodControl(t *testing.T) {
	s := irctest.NewScripted(t)
	c := testClient(t, s, func(cfg *Config) { cfg.Rate = 20; cfg.Burst = 3 })
	fc := s.Accept()
	fc.Register()
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
		fc.Expect("PRIVMSG #c")
		ts := fc.LastRead()
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
	s := irctest.NewScripted(t)
	c := testClient(t, s, nil)
	if err := c.Join("#Secret", "key1"); err != nil { // before connecting: remembered
		t.Fatal(err)
	}
	fc := s.Accept()
	fc.Register()
	fc.Expect("JOIN #Secret key1")
	fc.Send(":alice!a@h JOIN #Secret")
	if err := c.Join("#other", ""); err != nil {
		t.Fatal(err)
	}
	fc.Expect("JOIN #other")
	fc.Send(":alice!a@h JOIN :#other")
	waitEvent(t, c, Received, func(ev Event) bool { return ev.Msg.Command == "JOIN" && Param(&ev.Msg, 0) == "#other" })
	if got := c.State().Channels; len(got) != 2 {
		t.Fatalf("channels %v", got)
	}
	if err := c.Part("#other", "bye"); err != nil {
		t.Fatal(err)
	}
	fc.Expect("PART #other bye")
	// The server dies.
	fc.Close()
	ev := waitEvent(t, c, Disconnected, nil)
	if ev.Err == nil {
		t.Fatal("no reason for the disconnection")
	}
	if err := c.Privmsg("#Secret", "x"); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("Send while down: %v", err)
	}
	fc2 := s.Accept()
	fc2.Register()
	waitEvent(t, c, Connected, nil)
	if l := fc2.Expect("JOIN"); l != "JOIN #Secret key1" {
		t.Fatalf("rejoin %q", l)
	}
	// Nothing else is rejoined: #other was left.
	fc2.Send("PING :x")
	if l := fc2.Expect("P"); l != "PONG x" {
		t.Fatalf("after the rejoin the client sent %q", l)
	}
}

func TestKickIsNotFoughtOnReconnect(t *testing.T) {
	s := irctest.NewScripted(t)
	c := testClient(t, s, nil)
	c.Join("#c", "")
	fc := s.Accept()
	fc.Register()
	fc.Expect("JOIN #c")
	fc.Send(":alice!a@h JOIN #c", ":op!o@h KICK #c alice :out")
	waitEvent(t, c, Received, isCmd("KICK"))
	fc.Close()
	fc2 := s.Accept()
	fc2.Register()
	fc2.Send("PING :y")
	if l := fc2.Expect("P"); l != "PONG y" {
		t.Fatalf("after a kick the client sent %q on reconnect", l)
	}
}

func TestLongMessageSplit(t *testing.T) {
	s := irctest.NewScripted(t)
	c := testClient(t, s, nil)
	fc := s.Accept()
	fc.Register()
	waitEvent(t, c, Connected, nil)
	// 2,000 bytes of two-byte and four-byte characters: no cut may break one.
	text := strings.Repeat("é", 500) + strings.Repeat("😀", 250)
	if err := c.Privmsg("#chan", text); err != nil {
		t.Fatal(err)
	}
	var got strings.Builder
	for got.Len() < len(text) {
		l := fc.Expect("PRIVMSG #chan ")
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
		if l := fc.Expect("PRIVMSG"); l != "PRIVMSG #chan "+want {
			t.Fatalf("got %q, want %s", l, want)
		}
	}
	c.Action("#chan", "waves")
	if l := fc.Expect("PRIVMSG"); l != "PRIVMSG #chan :\x01ACTION waves\x01" {
		t.Fatalf("action %q", l)
	}
}

func TestSendQueueFull(t *testing.T) {
	s := irctest.NewScripted(t)
	c := testClient(t, s, func(cfg *Config) { cfg.Rate = 0.001; cfg.Burst = 1; cfg.SendQueue = 4 })
	fc := s.Accept()
	fc.Register()
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
	s := irctest.NewScripted(t)
	c := testClient(t, s, nil)
	fc := s.Accept()
	fc.Register()
	waitEvent(t, c, Connected, nil)
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- c.Quit(ctx, "bye now")
	}()
	if l := fc.Expect("QUIT"); l != "QUIT :bye now" {
		t.Fatalf("got %q", l)
	}
	fc.Close()
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
	s := irctest.NewScripted(t)
	c := testClient(t, s, nil)
	fc := s.Accept()
	fc.Register()
	waitEvent(t, c, Connected, nil)
	fc.Send("", ":only-a-source", "@bad=tag=\xff", "12 numeric-too-short", ":x!y@z PRIVMSG #c :caf\xe9")
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
	dead := irctest.NewScripted(t)
	deadAddr := dead.Addr()
	dead.Close() // refuses connections
	s := irctest.NewScripted(t)
	c := New(Config{Addrs: []string{deadAddr, s.Addr()}, Nick: "n", MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); <-c.Done() }()
	go c.Run(ctx)
	s.Accept().Register()
	waitEvent(t, c, Connected, nil)
}

// TestISupportAfterRegistration: a server may send 005 again later (LINELEN here) while others
// send; the race detector checks the state is handed over safely.
func TestISupportAfterRegistration(t *testing.T) {
	s := irctest.NewScripted(t)
	c := testClient(t, s, nil)
	fc := s.Accept()
	fc.Register()
	waitEvent(t, c, Connected, nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 50 {
			c.Privmsg("#c", strings.Repeat("x", 600))
		}
	}()
	fc.Send(":srv 005 alice LINELEN=1024 :are supported by this server")
	<-done
	waitEvent(t, c, Received, isCmd("005"))
	if c.State().ISupport.LineLen != 1024 {
		t.Fatal("LINELEN not applied")
	}
}

// TestLinesWithoutParams: numerics and PONG without parameters are not worth a crash.
func TestLinesWithoutParams(t *testing.T) {
	s := irctest.NewScripted(t)
	c := testClient(t, s, func(cfg *Config) {
		cfg.SASL = SASL{Mechanism: "PLAIN", Login: "a", Password: "b"}
		cfg.Outbox = 4
	})
	fc := s.Accept()
	offerCaps(fc, "sasl")
	fc.Expect("AUTHENTICATE PLAIN")
	fc.Send("904", "PONG")
	fc.Expect("CAP END")
	fc.Welcome("alice")
	waitEvent(t, c, Connected, nil)
	fc.Send("PONG", "900", "FAIL")
	fc.Send("PING :alive")
	if l := fc.Expect("PONG"); l != "PONG alive" {
		t.Fatalf("got %q", l)
	}
}
