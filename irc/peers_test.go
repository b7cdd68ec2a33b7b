package irc

import (
	"context"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/aldis-im/aldis/irc/irctest"
)

// Tests against real IRC servers: InspIRCd (the IRCv3 path) and ngIRCd (plain RFC 2812).

type peer struct {
	name  string
	start func(testing.TB) *irctest.Server
	caps  []string // capabilities the client must end up with
}

var peers = []peer{
	{"inspircd", irctest.InspIRCd, []string{"server-time", "echo-message", "multi-prefix", "message-tags", "labeled-response", "batch", "account-tag", "cap-notify", "away-notify"}},
	{"ngircd", irctest.NgIRCd, []string{"multi-prefix"}},
}

func forEachPeer(t *testing.T, f func(t *testing.T, srv *irctest.Server, p peer)) {
	if testing.Short() {
		t.Skip("starts real IRC servers")
	}
	for _, p := range peers {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			f(t, p.start(t), p)
		})
	}
}

func peerClient(t *testing.T, srv *irctest.Server, nick string, mods ...func(*Config)) *Client {
	t.Helper()
	cfg := Config{
		Addr: srv.Addr, Nick: nick, Network: srv.Name,
		MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second,
		Rate: 50, Burst: 20,
	}
	for _, m := range mods {
		m(&cfg)
	}
	c := New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	go c.Run(ctx)
	t.Cleanup(func() {
		cancel()
		<-c.Done()
	})
	waitEvent(t, c, Connected, nil)
	return c
}

// expectMsg waits for a message event on the client from nick with text.
func expectMsg(t *testing.T, c *Client, from, text string) Event {
	t.Helper()
	return waitEvent(t, c, Received, func(ev Event) bool {
		return ev.Msg.Command == "PRIVMSG" && ev.Msg.Nick() == from && Param(&ev.Msg, 1) == text
	})
}

func TestPeerMessagesBothWays(t *testing.T) {
	forEachPeer(t, func(t *testing.T, srv *irctest.Server, p peer) {
		bob := srv.Connect(t, "bob")
		bob.Join("#test")
		c := peerClient(t, srv, "bridge")
		st := c.State()
		for _, want := range p.caps {
			if _, ok := st.Caps[want]; !ok {
				t.Errorf("capability %s not enabled; have %v", want, st.Caps)
			}
		}
		if st.ISupport.NickLen < 9 || st.ISupport.CaseMapping == "" || !st.ISupport.IsChannel("#test") {
			t.Errorf("isupport %+v", st.ISupport)
		}
		if err := c.Join("#test", ""); err != nil {
			t.Fatal(err)
		}
		bob.ExpectContains(":bridge!")
		waitEvent(t, c, Received, func(ev Event) bool { return ev.Msg.Command == "366" })
		if got := c.State().Channels; len(got) != 1 || got[0] != "#test" {
			t.Errorf("channels %v", got)
		}
		if err := c.Privmsg("#test", "hello from xmpp, *styled*"); err != nil {
			t.Fatal(err)
		}
		bob.ExpectContains("PRIVMSG #test :hello from xmpp, *styled*")
		bob.Send("PRIVMSG #test :hello from irc")
		ev := expectMsg(t, c, "bob", "hello from irc")
		if age := time.Since(ev.Time); age < -time.Minute || age > time.Minute {
			t.Errorf("event time %v", ev.Time)
		}
		if err := c.Action("#test", "waves"); err != nil {
			t.Fatal(err)
		}
		bob.ExpectContains("PRIVMSG #test :\x01ACTION waves\x01")
		// A private message both ways.
		c.Privmsg("bob", "psst")
		bob.ExpectContains("PRIVMSG bob :psst")
		bob.Send("PRIVMSG bridge :back")
		expectMsg(t, c, "bob", "back")
	})
}

func TestPeerNickCollision(t *testing.T) {
	forEachPeer(t, func(t *testing.T, srv *irctest.Server, p peer) {
		srv.Connect(t, "Juliet_Ca")
		c := peerClient(t, srv, NickFromMUC("Juliet Capulet", 9, "juliet@example.com"))
		if got := c.State().Nick; got != "Juliet_C_" {
			t.Fatalf("nick %q, want Juliet_C_", got)
		}
	})
}

func TestPeerLongMessage(t *testing.T) {
	forEachPeer(t, func(t *testing.T, srv *irctest.Server, p peer) {
		bob := srv.Connect(t, "bob")
		bob.Join("#long")
		c := peerClient(t, srv, "bridge")
		c.Join("#long", "")
		bob.ExpectContains("JOIN")
		// 2,000 bytes, words of multi-byte characters.
		text := strings.Repeat("héllo wörld 😀 ", 200)[:2000]
		for !utf8.ValidString(text) {
			text = text[:len(text)-1]
		}
		if err := c.Privmsg("#long", text); err != nil {
			t.Fatal(err)
		}
		var got []string
		for n := 0; strings.Join(got, " ") != strings.TrimSpace(text) && n < 20; n++ {
			l := bob.ExpectContains("PRIVMSG #long :")
			part := l[strings.Index(l, "PRIVMSG #long :")+len("PRIVMSG #long :"):]
			if !utf8.ValidString(part) {
				t.Fatalf("a split broke a character: %q", part)
			}
			if len(l)+2 > 512 {
				t.Fatalf("relayed line of %d bytes", len(l)+2)
			}
			got = append(got, part)
		}
		if strings.Join(got, " ") != strings.TrimSpace(text) {
			t.Fatalf("received %d parts that do not add up to the text", len(got))
		}
		t.Logf("2,000 bytes arrived in %d lines", len(got))
	})
}

func TestPeerRestart(t *testing.T) {
	forEachPeer(t, func(t *testing.T, srv *irctest.Server, p peer) {
		c := peerClient(t, srv, "bridge")
		c.Join("#keep", "")
		waitEvent(t, c, Received, func(ev Event) bool { return ev.Msg.Command == "366" })

		srv.Stop() // a crash: no QUIT, no ERROR
		waitEvent(t, c, Disconnected, nil)
		srv.Start()
		waitEvent(t, c, Connected, nil)
		waitEvent(t, c, Received, func(ev Event) bool { return ev.Msg.Command == "366" && Param(&ev.Msg, 1) == "#keep" })

		// Nothing sent after recovery is lost, either way.
		bob := srv.Connect(t, "bob")
		bob.Join("#keep")
		for i := range 20 {
			if err := c.Privmsg("#keep", "after restart "+string(rune('a'+i))); err != nil {
				t.Fatal(err)
			}
			bob.Send("PRIVMSG #keep :from bob " + string(rune('a'+i)))
		}
		for i := range 20 {
			bob.ExpectContains("PRIVMSG #keep :after restart " + string(rune('a'+i)))
			expectMsg(t, c, "bob", "from bob "+string(rune('a'+i)))
		}
	})
}
