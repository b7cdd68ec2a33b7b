package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aldis-im/aldis/irc/irctest"
)

// TestIRCBridgeModes: what happens on IRC to IRC users shows in the room as
// XEP-0045 says it should, seen by an XMPP user: a channel operator is a
// moderator; +m turns users without voice into visitors and +v back into
// participants; a kick is status 307 with the kicker as actor and the
// reason; when the gateway loses the IRC network its users stay for the
// grace period, then leave with 333, and return (from NAMES, with their
// roles) when it comes back.
func TestIRCBridgeModes(t *testing.T) {
	integration(t)
	ircd := irctest.InspIRCd(t)
	proxy := irctest.NewProxy(t, ircd.Addr)
	bob := ircd.Connect(t, "bob")
	bob.Join("#lab") // first in the channel: its operator
	erin := ircd.Connect(t, "erin")
	erin.Join("#lab")

	domain := "x" + randHex(4) + ".example"
	room := "lab@conference." + domain
	occ := func(nick string) string { return room + "/" + nick }
	maps := ircMap(t, proxy.Addr, "", ircLink{room: room, channel: "#lab"})
	const grace = 3 * time.Second
	srv := startServer(t, serverOpts{Domain: domain, Extra: fmt.Sprintf(
		"\n[irc]\nmaps = [%q]\nrejoin_interval = \"1s\"\noutage_grace = %q\n", maps, grace.String())})
	srv.AddUser("alice", "alice-secret")
	alice := online(t, srv, "alice", "alice-secret", loginOpts{})
	createRoom(alice, room, "alice")

	withRole := func(nick, role string) func(*elem) bool {
		return func(e *elem) bool {
			return isPresence("", occ(nick))(e) && e.Path("x", "item").Attr("role") == role
		}
	}
	alice.Expect("bob, the channel operator, as a moderator", withRole("bob", "moderator"))
	alice.Expect("erin as a participant", withRole("erin", "participant"))

	bob.Send("MODE #lab +m")
	alice.Expect("erin a visitor in the moderated channel", withRole("erin", "visitor"))
	bob.Send("MODE #lab +v erin")
	alice.Expect("erin voiced", withRole("erin", "participant"))

	bob.Send("KICK #lab erin :off topic")
	kicked := alice.Expect("erin kicked", hasStatus("unavailable", occ("erin"), "307"))
	if it := kicked.Path("x", "item"); it == nil || it.Path("actor") == nil || it.Path("actor").Attr("nick") != "bob" ||
		it.ChildText("", "reason") != "off topic" {
		t.Fatalf("kick without actor bob and the reason: %s", kicked)
	}

	proxy.Cut()
	cut := time.Now()
	alice.Expect("bob removed after the grace period", hasStatus("unavailable", occ("bob"), "333"))
	if waited := time.Since(cut); waited < grace-500*time.Millisecond {
		t.Errorf("bob removed %v after the cut, before the %v grace", waited, grace)
	}
	proxy.Restore()
	alice.Expect("bob back from NAMES, still a moderator", withRole("bob", "moderator"))
}

// TestIRCBridgeJoinRefused: a user joins a linked room only once the
// channel let them in, and the channel's refusal is their join's error
// (PROTOCOLS §7.4): banned (474) is forbidden, invite only (473)
// registration-required, full (471) service-unavailable; once the channel
// allows it, the same user joins and is on IRC; kicked there, they are told
// and no longer relayed.
func TestIRCBridgeJoinRefused(t *testing.T) {
	integration(t)
	ircd := irctest.InspIRCd(t)
	bob := ircd.Connect(t, "bob")
	bob.Join("#lab") // the channel's operator
	domain := "x" + randHex(4) + ".example"
	room := "lab@conference." + domain
	occ := func(nick string) string { return room + "/" + nick }
	srv := ircServer(t, domain, ircMap(t, ircd.Addr, "", ircLink{room: room, channel: "#lab"}), "alice", "erin")
	alice := online(t, srv, "alice", "alice-secret", loginOpts{})
	createRoom(alice, room, "alice")
	alice.Expect("the gateway in the room", isPresence("", occ("#lab")))
	bob.Expect(ircJoined("alice", "#lab"))
	erin := online(t, srv, "erin", "erin-secret", loginOpts{})

	refused := func(mode, undo, typ, cond string) {
		t.Helper()
		bob.Send("MODE #lab " + mode)
		bob.Expect(modeSet(mode))
		mucJoin(erin, occ("erin"), "")
		e := erin.Expect("the join error", isPresence("error", occ("erin")))
		if got := e.ErrorCondition(); got != cond || e.Path("error").Attr("type") != typ {
			t.Fatalf("%s: join error %s/%s, want %s/%s: %s", mode, e.Path("error").Attr("type"), got, typ, cond, e)
		}
		alice.ExpectNone("erin in the room", isPresence("", occ("erin")), 500*time.Millisecond)
		bob.Send("MODE #lab " + undo)
		bob.Expect(modeSet(undo))
	}
	refused("+b erin!*@*", "-b erin!*@*", "auth", "forbidden")
	refused("+i", "-i", "auth", "registration-required")
	refused("+l 3", "-l", "wait", "service-unavailable") // bob, the gateway and alice

	enterRoom(erin, room, "erin", "")
	alice.Expect("erin in the room", isPresence("", occ("erin")))
	bob.Expect(ircJoined("erin", "#lab"))
	erin.Send(fmt.Sprintf("<message type='groupchat' to='%s' id='e1'><body>in at last</body></message>", room))
	bob.Expect(ircSaid("erin", "#lab", "in at last"))

	// Kicked on IRC: erin is told, and no longer relayed.
	bob.Send("KICK #lab erin :enough")
	m := erin.Expect("the kick", func(e *elem) bool {
		return e.XMLName.Local == "message" && e.Attr("type") == "chat" && fromMatches(e, occ("#lab"))
	})
	if b := m.ChildText("", "body"); !strings.Contains(b, "kicked") || !strings.Contains(b, "enough") {
		t.Errorf("kick notice %q", b)
	}
	erin.Send(fmt.Sprintf("<message type='groupchat' to='%s' id='e2'><body>after the kick</body></message>", room))
	if l, ok := bob.Wait(2*time.Second, func(l string) bool { return strings.Contains(l, "after the kick") }); ok {
		t.Errorf("a kicked user's message reached IRC: %q", l)
	}
}

// modeSet matches the server's echo of MODE #lab change ("+i" may come as ":+i").
func modeSet(change string) func(string) bool {
	flag := strings.Fields(change)[0]
	return func(l string) bool {
		return strings.Contains(l, " MODE #lab ") && (strings.Contains(l, " "+flag) || strings.Contains(l, ":"+flag))
	}
}
