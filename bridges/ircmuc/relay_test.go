package ircmuc

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aldis-im/aldis/irc"
	"github.com/aldis-im/aldis/irc/irctest"
	"github.com/aldis-im/aldis/mapping"
	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// registerErgo plays Ergo's registration on a scripted server: CAP with draft/relaymsg=/ and
// echo-message, then the welcome. No Debian IRC server offers draft/relaymsg (InspIRCd 3 does not;
// Ergo, which does, is not packaged), so the RELAYMSG path is tested against a scripted server
// that offers it as Ergo does.
func registerErgo(t *testing.T, c *irctest.ScriptedConn) string {
	t.Helper()
	c.Expect("CAP LS")
	nick := strings.TrimPrefix(c.Expect("NICK "), "NICK ") // sent at once, before any answer
	c.Send(":srv CAP * LS :draft/relaymsg=/ echo-message message-tags server-time")
	req := c.Expect("CAP REQ")
	if !strings.Contains(req, "draft/relaymsg") {
		t.Errorf("draft/relaymsg not requested: %q", req)
	}
	c.Send(":srv CAP * ACK :" + strings.TrimPrefix(strings.TrimPrefix(req, "CAP REQ "), ":"))
	c.Expect("CAP END")
	c.Welcome(nick, "NICKLEN=32", "CHANTYPES=#", "CASEMAPPING=ascii")
	return nick
}

// sameLine reports whether two lines say the same (the last parameter may or may not have its ":").
func sameLine(a, b string) bool {
	ma, err1 := irc.ParseLine(a)
	mb, err2 := irc.ParseLine(b)
	return err1 == nil && err2 == nil && ma.Command == mb.Command && slices.Equal(ma.Params, mb.Params)
}

// TestRelaymsg: on a server offering draft/relaymsg, an XMPP occupant beyond
// the budget speaks as "carol/xmpp" through RELAYMSG; the server's echo of it
// (tagged draft/relaymsg=<listener>) does not come back into the room, while
// another relayer's lines do; a FAIL RELAYMSG sends the line again as
// "<carol> text" and turns RELAYMSG off for the connection.
func TestRelaymsg(t *testing.T) {
	f := irctest.NewScripted(t)
	b, x := startRelayBridge(t, f.Addr(), `flood_interval = "1ms"
flood_burst = 100`, Config{RejoinInterval: time.Second})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		b.Close(ctx)
	})
	room := jid.MustParse("lab@conference.example.org")
	occ := func(n string) jid.JID { j, _ := room.WithResource(n); return j }

	fc := f.Accept()
	if nick := registerErgo(t, fc); nick != "relay" {
		t.Fatalf("listener nick %q", nick)
	}
	fc.Expect("JOIN #lab")
	fc.Send(":relay!r@h JOIN #lab", ":srv 353 relay = #lab :@relay bob", ":srv 366 relay #lab :End of /NAMES list")
	self, _ := wire.ParseElement(`<presence><x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='none' role='participant'/><status code='110'/></x></presence>`)
	b.Route(self, occ("#lab"), b.self)
	x.expect(t, "bob as an occupant", func(st *wire.Element) bool {
		return st.Local() == "presence" && st.Attr("to") == "lab@conference.example.org/bob"
	})
	carol, _ := wire.ParseElement(`<presence><x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='none' role='participant' jid='carol@example.org/pc'/></x></presence>`)
	b.Route(carol, occ("carol"), b.self)
	groupchat := func(body string) {
		msg, _ := wire.ParseElement(`<message type='groupchat'><body>` + body + `</body></message>`)
		b.Route(msg, occ("carol"), b.self)
	}
	isRoomMessage := func(st *wire.Element) bool { return st.Local() == "message" && st.Attr("type") == "groupchat" }

	groupchat("hi all")
	if l := fc.Expect("RELAYMSG"); !sameLine(l, "RELAYMSG #lab carol/xmpp :hi all") {
		t.Fatalf("relayed as %q", l)
	}
	groupchat("/me waves")
	if l := fc.Expect("RELAYMSG"); !sameLine(l, "RELAYMSG #lab carol/xmpp :\x01ACTION waves\x01") {
		t.Fatalf("action relayed as %q", l)
	}
	// Ergo echoes RELAYMSG to the relayer, tagged with its nick: not for the room. A line relayed
	// by another bridge is an IRC user's line like any other.
	fc.Send("@draft/relaymsg=relay;msgid=e1 :carol/xmpp!~u@h PRIVMSG #lab :hi all",
		"@draft/relaymsg=relay;msgid=e2 :carol/xmpp!~u@h PRIVMSG #lab :\x01ACTION waves\x01",
		"@draft/relaymsg=otherbot;msgid=d1 :smt/discord!~u@h PRIVMSG #lab :from discord",
		":bob!b@h PRIVMSG #lab :from bob")
	got := x.expect(t, "a room message", isRoomMessage)
	if got.ChildText("body", "") != "from discord" {
		t.Fatalf("first room message %s, want the other relayer's (the echo came back)", got)
	}
	b.Route(got.Copy(), occ("smt/discord"), b.self) // the room's reflection
	got = x.expect(t, "bob's message", isRoomMessage)
	if got.ChildText("body", "") != "from bob" {
		t.Fatalf("second room message %s, want bob's", got)
	}

	// The listener is not allowed to relay: the line goes again as "<carol> text", and so do later ones.
	groupchat("second")
	if l := fc.Expect("RELAYMSG"); !sameLine(l, "RELAYMSG #lab carol/xmpp :second") {
		t.Fatalf("relayed as %q", l)
	}
	fc.Send(":srv FAIL RELAYMSG PRIVS_NEEDED :You cannot relay messages to this channel")
	if l := fc.Expect("PRIVMSG #lab"); !sameLine(l, "PRIVMSG #lab :<carol> second") {
		t.Fatalf("after FAIL: %q", l)
	}
	groupchat("third")
	if l := fc.Expect("PRIVMSG #lab"); !sameLine(l, "PRIVMSG #lab :<carol> third") {
		t.Fatalf("after FAIL, a new line: %q", l)
	}
}

// TestUnsentTold: a channel line that waited longer than the outbox allows
// for the connection comes back as an Unsent event, and its sender gets a
// private message from the bridge's occupant saying what was not sent.
func TestUnsentTold(t *testing.T) {
	x := &fakeXMPP{out: make(chan *wire.Element, 16)}
	b, err := New(Config{Domain: "irc.example.org", XMPP: x, Map: &mapping.Map{}})
	if err != nil {
		t.Fatal(err)
	}
	n := newNetwork(b, mapping.Network{Name: "lab"}, func() {})
	room := jid.MustParse("lab@conference.example.org")
	n.links[room] = &link{cfg: mapping.Link{Channel: "#lab"}, room: room, occupant: map[string]*occupant{}}
	ev := irc.Event{Kind: irc.Unsent, Ref: "lab@conference.example.org/carol", Time: time.Now().Add(-2 * time.Minute),
		Err: irc.ErrExpired, Msg: irc.Message{Command: "PRIVMSG", Params: []string{"#lab", "\x01ACTION waves\x01"}}}
	if !n.relayEvent(ev, false) {
		t.Fatal("an Unsent event was not taken")
	}
	st := x.expect(t, "the notice", func(st *wire.Element) bool { return st.Local() == "message" })
	if st.Attr("to") != "lab@conference.example.org/carol" || st.Attr("from") != "irc.example.org/bridge" || st.Attr("type") != "chat" {
		t.Errorf("notice addressed %s → %s (%s)", st.Attr("from"), st.Attr("to"), st.Attr("type"))
	}
	if body := st.ChildText("body", ""); !strings.Contains(body, "Not sent to #lab") || !strings.Contains(body, "/me waves") || !strings.Contains(body, "2m0s") {
		t.Errorf("notice %q", body)
	}
	if st.Child("x", nsMUCUser) == nil {
		t.Error("the notice is not a room private message")
	}
}

// TestOutboxFullTold: while IRC is unreachable, a relayed user's lines wait
// for the listener up to the outbox's bound; the one beyond it is not sent,
// and the user is told so by the bridge's occupant.
func TestOutboxFullTold(t *testing.T) {
	f := irctest.NewScripted(t)
	b, x := startRelayBridge(t, f.Addr(), "", Config{RejoinInterval: time.Second})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		b.Close(ctx)
	})
	f.Accept().Expect("USER") // the listener connects and is never welcomed: IRC is down
	room := jid.MustParse("lab@conference.example.org")
	occ := func(n string) jid.JID { j, _ := room.WithResource(n); return j }
	self, _ := wire.ParseElement(`<presence><x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='none' role='participant'/><status code='110'/></x></presence>`)
	b.Route(self, occ("#lab"), b.self)
	carol, _ := wire.ParseElement(`<presence><x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='none' role='participant' jid='carol@example.org/pc'/></x></presence>`)
	b.Route(carol, occ("carol"), b.self)
	for i := range outboxLines + 1 {
		msg, _ := wire.ParseElement(fmt.Sprintf(`<message type='groupchat'><body>line %d</body></message>`, i))
		b.Route(msg, occ("carol"), b.self)
	}
	st := x.expect(t, "the notice", func(st *wire.Element) bool { return st.Local() == "message" && st.Attr("type") == "chat" })
	body := st.ChildText("body", "")
	if st.Attr("to") != "lab@conference.example.org/carol" || !strings.Contains(body, "Not sent to #lab") ||
		!strings.HasSuffix(body, fmt.Sprintf("line %d", outboxLines)) {
		t.Errorf("notice to %s: %q", st.Attr("to"), body)
	}
	select {
	case st := <-x.out:
		if st.Local() == "message" {
			t.Errorf("a second notice: %s", st)
		}
	case <-time.After(200 * time.Millisecond):
	}
}
