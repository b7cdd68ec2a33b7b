package integration

import (
	"fmt"
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
