package ircmuc

import (
	"context"
	"testing"
	"time"

	"github.com/aldis-im/aldis/irc/irctest"
	"github.com/aldis-im/aldis/mapping"
	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

func TestQuitExit(t *testing.T) {
	for msg, code := range map[string]string{
		"*.net *.split":                        "333",
		"hub.example.net leaf.example.net":     "333",
		"Ping timeout: 240 seconds":            "333",
		"Read error: Connection reset by peer": "333",
		"Excess Flood":                         "333",
		"Quit: bye":                            "",
		"":                                     "",
		"see you at example.net":               "",
		"a.b":                                  "",
	} {
		if got := quitExit(msg).code; got != code {
			t.Errorf("quitExit(%q) = %q, want %q", msg, got, code)
		}
	}
}

// presenceTo matches a presence from the bridge to room/nick of type typ.
func presenceTo(room, nick, typ string) func(*wire.Element) bool {
	return func(st *wire.Element) bool {
		return st.Local() == "presence" && st.Attr("to") == room+"/"+nick && st.Attr("type") == typ
	}
}

// claimedRole is the role a puppet's presence claims, or "".
func claimedRole(st *wire.Element) string {
	if x := st.Child("x", nsMUCUser); x != nil {
		if it := x.Child("item", ""); it != nil {
			return it.Attr("role")
		}
	}
	return ""
}

// TestRolesAndExits, against InspIRCd with a scripted room: channel modes
// become the roles IRC users' presences claim (an operator is a moderator,
// +m makes users without voice visitors), a kick leaves with 307, its actor
// and reason, and when the listener loses the network its IRC users stay
// for the grace period, then leave with 333, and come back from NAMES.
func TestRolesAndExits(t *testing.T) {
	if testing.Short() {
		t.Skip("starts InspIRCd")
	}
	ircd := irctest.InspIRCd(t)
	proxy := irctest.NewProxy(t, ircd.Addr)
	dan := ircd.Connect(t, "dan")
	dan.Join("#lab") // first in the channel: its operator
	erin := ircd.Connect(t, "erin")
	erin.Join("#lab")
	const grace = 2 * time.Second
	b, x := startRelayBridge(t, proxy.Addr, `flood_interval = "10ms"`, Config{RejoinInterval: time.Second, OutageGrace: grace})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = b.Close(ctx)
	})
	const room = "lab@conference.example.org"
	occ := func(n string) jid.JID { return jid.MustParse(room + "/" + n) }
	x.expect(t, "the bridge's join", presenceTo(room, "#lab", ""))
	self, _ := wire.ParseElement(`<presence><x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='none' role='participant'/><status code='110'/></x></presence>`)
	b.Route(self, occ("#lab"), b.self)

	role := func(what, nick, want string) {
		t.Helper()
		st := x.expect(t, what, presenceTo(room, nick, ""))
		if got := claimedRole(st); got != want {
			t.Fatalf("%s: %s claims role %q, want %q: %s", what, nick, got, want, st)
		}
	}
	// Both arrive from NAMES, in either order.
	got := map[string]string{}
	for range 2 {
		st := x.expect(t, "IRC users", func(st *wire.Element) bool { return st.Local() == "presence" && st.Attr("type") == "" })
		j, _ := jid.Parse(st.Attr("to"))
		got[j.Resource()] = claimedRole(st)
	}
	if got["dan"] != "moderator" || got["erin"] != "participant" {
		t.Fatalf("roles from NAMES: %v", got)
	}
	dan.Send("MODE #lab +m")
	role("+m: erin has no voice", "erin", "visitor")
	dan.Send("MODE #lab +v erin")
	role("+v erin", "erin", "participant")
	dan.Send("MODE #lab -v erin")
	role("-v erin", "erin", "visitor")

	dan.Send("KICK #lab erin :spam")
	kick := x.expect(t, "erin kicked", presenceTo(room, "erin", "unavailable"))
	ux := kick.Child("x", nsMUCUser)
	if !hasStatus(ux, "307") || ux.Child("item", "") == nil || ux.Child("item", "").Child("actor", "") == nil ||
		ux.Child("item", "").Child("actor", "").Attr("nick") != "dan" || ux.Child("item", "").ChildText("reason", "") != "spam" {
		t.Fatalf("kick: %s", kick)
	}

	proxy.Cut()
	began := time.Now()
	left := x.expect(t, "dan removed after the grace period", presenceTo(room, "dan", "unavailable"))
	if waited := time.Since(began); waited < grace-200*time.Millisecond {
		t.Errorf("dan removed after %v, before the %v grace", waited, grace)
	}
	if !hasStatus(left.Child("x", nsMUCUser), "333") {
		t.Fatalf("outage removal without 333: %s", left)
	}
	proxy.Restore()
	role("dan back from NAMES, still an operator", "dan", "moderator")
}

// TestOutageGeneration: the grace timer of an outage that ended removes
// nobody; the timer of the current outage removes everyone with 333.
func TestOutageGeneration(t *testing.T) {
	x := &fakeXMPP{out: make(chan *wire.Element, 16)}
	b, err := New(Config{Domain: "irc.example.org", XMPP: x, Map: &mapping.Map{}, OutageGrace: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	n := newNetwork(b, mapping.Network{Name: "lab"}, func() {})
	defer close(n.done)
	l := &link{room: jid.MustParse("lab@conference.example.org"), joined: true, puppets: map[string]*puppet{},
		byJID: map[jid.JID]*puppet{}, byNick: map[string]*puppet{}, occupant: map[string]*occupant{}}
	n.links[l.room] = l
	n.addPuppet(l, "dan")
	<-x.out // dan's join

	n.listenerDown()
	ended := n.outage
	n.listenerUp()
	n.handle(netEvent{kind: evOutage, gen: ended})
	select {
	case st := <-x.out:
		t.Fatalf("an ended outage removed someone: %s", st)
	default:
	}
	n.listenerDown()
	n.handle(netEvent{kind: evOutage, gen: n.outage})
	st := <-x.out
	if st.Attr("type") != "unavailable" || !hasStatus(st.Child("x", nsMUCUser), "333") {
		t.Fatalf("outage removal: %s", st)
	}
}
