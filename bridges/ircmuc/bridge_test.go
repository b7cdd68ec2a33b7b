package ircmuc

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aldis-im/aldis/irc/irctest"
	"github.com/aldis-im/aldis/mapping"
	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

func TestBodyFromIRC(t *testing.T) {
	for _, c := range []struct {
		in, want string
		ok       bool
	}{
		{"hello", "hello", true},
		{"\x01ACTION waves\x01", "/me waves", true},
		{"\x01VERSION\x01", "", false},
		{"\x02bold\x02 text", "*bold* text", true},
		{"", "", false},
	} {
		got, ok := bodyFromIRC(c.in)
		if got != c.want || ok != c.ok {
			t.Errorf("bodyFromIRC(%q) = %q, %v; want %q, %v", c.in, got, ok, c.want, c.ok)
		}
	}
	if n, ok := networkOf("bob%lab"); !ok || n != "lab" {
		t.Errorf("networkOf = %q, %v", n, ok)
	}
	if _, ok := networkOf("bob"); ok {
		t.Error("networkOf without %: ok")
	}
}

func TestFreeNick(t *testing.T) {
	n := &network{}
	l := &link{cfg: mapping.Link{Channel: "#lab"}, byNick: map[string]*puppet{}, occupant: map[string]*occupant{"Juliet": {}}}
	if got := n.freeNick(l, "Juliet"); got != "Juliet[irc]" {
		t.Errorf("freeNick = %q, want Juliet[irc]", got)
	}
	l.byNick["Juliet[irc]"] = &puppet{}
	if got := n.freeNick(l, "juliet"); got != "juliet[irc]2" {
		t.Errorf("freeNick = %q, want juliet[irc]2", got)
	}
	if got := n.freeNick(l, "romeo"); got != "romeo" {
		t.Errorf("freeNick = %q, want romeo", got)
	}
}

// fakeXMPP records what the bridge delivers.
type fakeXMPP struct{ out chan *wire.Element }

func (f *fakeXMPP) Deliver(st *wire.Element, from, to jid.JID) { f.out <- st.Copy() }

func (f *fakeXMPP) expect(t *testing.T, what string, match func(*wire.Element) bool) *wire.Element {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		select {
		case st := <-f.out:
			if match(st) {
				return st
			}
		case <-deadline:
			t.Fatalf("no %s within 15s", what)
		}
	}
}

// startRelayBridge starts a bridge to a room lab@conference.example.org linked to #lab on a
// relay_only network "lab" at addr (listener nick "relay", extra network keys), delivering
// to a fakeXMPP; cfg gives the bridge's settings beyond the domain, the map and the XMPP side.
// Closing it is the caller's.
func startRelayBridge(t *testing.T, addr, extra string, cfg Config) (*Bridge, *fakeXMPP) {
	t.Helper()
	m, err := mapping.Parse("map.toml", []byte(fmt.Sprintf(`
[[network]]
name = "lab"
servers = [%q]
no_tls = true
nick = "relay"
relay_only = true
%s

[[link]]
room = "lab@conference.example.org"
network = "lab"
channel = "#lab"
`, addr, extra)))
	if err != nil {
		t.Fatal(err)
	}
	x := &fakeXMPP{out: make(chan *wire.Element, 1024)}
	cfg.Domain, cfg.XMPP, cfg.Map = "irc.example.org", x, m
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b.Start()
	return b, x
}

// TestRelayOnly: on a relay_only network XMPP occupants speak through the
// listener as "<nick> text", and the IRC side reaches the room from the IRC
// user's JID, with a scripted room on the XMPP side and InspIRCd on the other.
func TestRelayOnly(t *testing.T) {
	if testing.Short() {
		t.Skip("starts InspIRCd")
	}
	ircd := irctest.InspIRCd(t)
	b, x := startRelayBridge(t, ircd.Addr, `flood_interval = "10ms"`, Config{RejoinInterval: time.Second})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := b.Close(ctx); err != nil {
			t.Error(err)
		}
	})
	room := jid.MustParse("lab@conference.example.org")
	occ := func(n string) jid.JID { j, _ := room.WithResource(n); return j }
	join := x.expect(t, "the bridge's join", func(st *wire.Element) bool {
		return st.Local() == "presence" && st.Attr("to") == "lab@conference.example.org/#lab"
	})
	if join.Attr("from") != "irc.example.org/bridge" {
		t.Fatalf("join from %q", join.Attr("from"))
	}
	self, _ := wire.ParseElement(`<presence from='lab@conference.example.org/#lab'><x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='none' role='participant'/><status code='110'/></x></presence>`)
	b.Route(self, occ("#lab"), b.self)
	carol, _ := wire.ParseElement(`<presence from='lab@conference.example.org/carol'><x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='none' role='participant' jid='carol@example.org/pc'/></x></presence>`)
	b.Route(carol, occ("carol"), b.self)

	dan := ircd.Connect(t, "dan")
	dan.Join("#lab")
	p := x.expect(t, "dan as an occupant", func(st *wire.Element) bool {
		return st.Local() == "presence" && st.Attr("to") == "lab@conference.example.org/dan"
	})
	if !strings.HasPrefix(p.Attr("from"), "dan%lab@irc.example.org/") {
		t.Errorf("dan's occupant JID %q", p.Attr("from"))
	}
	// The room reflects dan's presence to the bridge: nothing happens.
	b.Route(p.Copy(), occ("dan"), b.self)

	msg, _ := wire.ParseElement(`<message type='groupchat' id='c1'><body>hi *all*</body></message>`)
	b.Route(msg, occ("carol"), b.self)
	dan.Expect(func(l string) bool {
		return strings.HasPrefix(l, ":relay!") && strings.HasSuffix(l, "PRIVMSG #lab :<carol> hi \x02all\x02")
	})

	dan.Send("PRIVMSG #lab :hello room")
	got := x.expect(t, "dan's message", func(st *wire.Element) bool { return st.Local() == "message" })
	if got.Attr("to") != room.String() || got.Attr("type") != "groupchat" || got.ChildText("body", "") != "hello room" || got.Attr("from") != p.Attr("from") {
		t.Errorf("dan's message: %s", got)
	}
	// The room's reflection of dan's message, back at the bridge, is not relayed.
	refl, _ := wire.ParseElement(`<message type='groupchat'><body>hello room</body></message>`)
	b.Route(refl, occ("dan"), b.self)
	if l, ok := dan.Wait(time.Second, func(l string) bool { return strings.Contains(l, "hello room") }); ok {
		t.Errorf("echo: %q", l)
	}
	dan.Send("PART #lab :later")
	left := x.expect(t, "dan leaving", func(st *wire.Element) bool { return st.Local() == "presence" && st.Attr("type") == "unavailable" })
	if left.ChildText("status", "") != "Left IRC: later" {
		t.Errorf("leave status %q", left.ChildText("status", ""))
	}
}

// TestRoomWindow: IRC messages beyond the window toward a room wait, in
// order, and go as the room reflects the ones in flight.
func TestRoomWindow(t *testing.T) {
	x := &fakeXMPP{out: make(chan *wire.Element, 2*roomWindow)}
	b, err := New(Config{Domain: "irc.example.org", XMPP: x, Map: &mapping.Map{}})
	if err != nil {
		t.Fatal(err)
	}
	n := newNetwork(b, mapping.Network{Name: "lab"}, func() {})
	room, _ := jid.Parse("lab@conference.example.org")
	l := &link{room: room}
	from, _ := jid.Parse("bob%lab@irc.example.org/1")
	msg := func(i int) *wire.Element {
		s := wire.New("message", "")
		s.AddChild(wire.New("body", "")).AddText(fmt.Sprint(i))
		return s
	}
	const total = roomWindow + 10
	for i := range total {
		n.toRoom(l, msg(i), from)
	}
	if len(x.out) != roomWindow || len(l.backlog) != 10 {
		t.Fatalf("delivered %d, waiting %d; want %d and 10", len(x.out), len(l.backlog), roomWindow)
	}
	for i := range roomWindow {
		if got := (<-x.out).ChildText("body", ""); got != fmt.Sprint(i) {
			t.Fatalf("message %d is %s", i, got)
		}
	}
	for i := roomWindow; i < total; i++ {
		n.roomAcked(l)
		if got := (<-x.out).ChildText("body", ""); got != fmt.Sprint(i) {
			t.Fatalf("message %d is %s", i, got)
		}
	}
	if l.inflight != roomWindow || len(l.backlog) != 0 {
		t.Errorf("in flight %d, waiting %d", l.inflight, len(l.backlog))
	}
}
