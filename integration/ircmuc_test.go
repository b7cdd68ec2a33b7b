package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aldis-im/aldis/irc/irctest"
)

// TestIRCBridge: InspIRCd on loopback, aldis with a bridge map linking a room
// to #lab, an XMPP user in the room and a raw IRC user on the channel. Each
// sees the other as one of their own (occupant, channel member), messages,
// /me and private messages cross both ways, and nothing comes back twice.
func TestIRCBridge(t *testing.T) {
	integration(t)
	ircd := irctest.InspIRCd(t)
	domain := "x" + randHex(4) + ".example"
	room := "lab@conference." + domain
	occ := func(nick string) string { return room + "/" + nick }

	dir := t.TempDir()
	maps := filepath.Join(dir, "irc.toml")
	if err := os.WriteFile(maps, []byte(fmt.Sprintf(`
[[network]]
name = "lab"
servers = [%q]
no_tls = true
nick = "aldisgw"
flood_interval = "10ms"
flood_burst = 20

[[link]]
room = %q
network = "lab"
channel = "#lab"
`, ircd.Addr, room)), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, serverOpts{Domain: domain, Extra: fmt.Sprintf("\n[irc]\nmaps = [%q]\nrejoin_interval = \"1s\"\nlinger = \"2s\"\n", maps)})
	srv.AddUser("alice", "alice-secret")

	bob := ircd.Connect(t, "bob")
	bob.Join("#lab")

	alice := online(t, srv, "alice", "alice-secret", loginOpts{})
	createRoom(alice, room, "alice")
	// The gateway joins the room (it retries until the room exists), and
	// brings bob in as an occupant.
	alice.Expect("the IRC user bob as an occupant", isPresence("", occ("bob")))
	// And alice appears on IRC, on a connection of her own.
	bob.Expect(func(l string) bool { return strings.HasPrefix(l, ":alice!") && strings.Contains(l, "JOIN") })

	// XMPP → IRC: bob sees it once, from alice; alice gets the room's reflection once.
	alice.Send(fmt.Sprintf("<message type='groupchat' to='%s' id='m1'><body>hello from xmpp</body></message>", room))
	bob.Expect(func(l string) bool {
		return strings.HasPrefix(l, ":alice!") && strings.HasSuffix(l, "PRIVMSG #lab :hello from xmpp")
	})
	alice.Expect("the reflection", func(e *elem) bool { return isMessage(occ("alice"), "hello from xmpp")(e) && e.Attr("id") == "m1" })

	// IRC → XMPP: alice sees it once, from bob's occupant JID.
	bob.Send("PRIVMSG #lab :hello from irc")
	alice.Expect("bob's message", isMessage(occ("bob"), "hello from irc"))

	// ACTION both ways.
	bob.Send("PRIVMSG #lab :\x01ACTION waves\x01")
	alice.Expect("bob's /me", isMessage(occ("bob"), "/me waves"))
	alice.Send(fmt.Sprintf("<message type='groupchat' to='%s' id='m2'><body>/me bows</body></message>", room))
	bob.Expect(func(l string) bool {
		return strings.HasPrefix(l, ":alice!") && strings.HasSuffix(l, "PRIVMSG #lab :\x01ACTION bows\x01")
	})

	// Private messages both ways.
	alice.Send(fmt.Sprintf("<message type='chat' to='%s' id='p1'><body>psst bob</body><x xmlns='%s'/></message>", occ("bob"), nsMUCUser))
	bob.Expect(func(l string) bool {
		return strings.HasPrefix(l, ":alice!") && strings.HasSuffix(l, "PRIVMSG bob :psst bob")
	})
	bob.Send("PRIVMSG alice :psst alice")
	alice.Expect("bob's private message", func(e *elem) bool {
		return isMessage(occ("bob"), "psst alice")(e) && e.Attr("type") == "chat"
	})

	// A multi-line message becomes one PRIVMSG per line.
	alice.Send(fmt.Sprintf("<message type='groupchat' to='%s' id='m3'><body>line one\nline two</body></message>", room))
	bob.Expect(func(l string) bool { return strings.HasSuffix(l, "PRIVMSG #lab :line one") })
	bob.Expect(func(l string) bool { return strings.HasSuffix(l, "PRIVMSG #lab :line two") })

	// Nothing was echoed: no second copy on either side.
	alice.ExpectNone("a second copy of a message", func(e *elem) bool {
		b := e.ChildText("", "body")
		return e.XMLName.Local == "message" && (b == "hello from irc" || b == "hello from xmpp" || b == "/me waves" || b == "psst alice")
	}, time.Second)
	if l, ok := bob.Wait(time.Second, func(l string) bool {
		return strings.Contains(l, "hello from xmpp") || strings.Contains(l, "ACTION bows") || strings.Contains(l, "aldisgw")
	}); ok {
		t.Errorf("bob got a second copy or a relayed message: %q", l)
	}

	// A burst from IRC arrives complete, in order, once each.
	const burst = 300
	began := time.Now()
	for i := range burst {
		bob.Send(fmt.Sprintf("PRIVMSG #lab :burst %d", i))
	}
	for i := range burst {
		alice.Expect("burst message", isMessage(occ("bob"), fmt.Sprintf("burst %d", i)))
	}
	took := time.Since(began)
	t.Logf("IRC → XMPP: %d messages in %v (%.0f/s)", burst, took, burst/took.Seconds())

	// Bob leaves IRC: his occupant leaves the room.
	bob.Send("QUIT :bye")
	alice.Expect("bob leaves the room", isPresence("unavailable", occ("bob")))
}

// TestIRCBridgeLabels: with security labels on, a link cleared for
// UNCLASSIFIED carries nothing above it to IRC, marks what it carries with
// its first-line marking, and gives IRC messages the link's label.
func TestIRCBridgeLabels(t *testing.T) {
	integration(t)
	policy, err := filepath.Abs("../policy.toml")
	if err != nil {
		t.Fatal(err)
	}
	ircd := irctest.InspIRCd(t)
	domain := "x" + randHex(4) + ".example"
	room := "lab@conference." + domain
	occ := func(nick string) string { return room + "/" + nick }
	maps := filepath.Join(t.TempDir(), "irc.toml")
	if err := os.WriteFile(maps, []byte(fmt.Sprintf(`
[[network]]
name = "lab"
servers = [%q]
no_tls = true
nick = "aldisgw"
flood_interval = "10ms"
flood_burst = 20

[[link]]
room = %q
network = "lab"
channel = "#lab"
clearance = "UNCLASSIFIED"
label = "UNCLASSIFIED"
`, ircd.Addr, room)), 0o600); err != nil {
		t.Fatal(err)
	}
	// The gateway's domain is cleared for SECRET, so rooms pass it SECRET
	// messages and the link's own clearance is what holds them back.
	srv := startServer(t, serverOpts{Domain: domain, PolicyFile: policy,
		Extra: fmt.Sprintf("\n[irc]\nmaps = [%q]\nrejoin_interval = \"1s\"\nlinger = \"2s\"\n\n[[s2s.peer]]\ndomain = \"irc.%s\"\nclearance = \"SECRET\"\n", maps, domain)})
	srv.AddUser("alice", "alice-secret")
	if _, errOut, code := srv.User("", "clearance", "alice", "SECRET"); code != 0 {
		t.Fatal(errOut)
	}
	bob := ircd.Connect(t, "bob")
	bob.Join("#lab")
	alice := online(t, srv, "alice", "alice-secret", loginOpts{})
	createRoom(alice, room, "alice")
	alice.Expect("the IRC user bob as an occupant", isPresence("", occ("bob")))
	bob.Expect(func(l string) bool { return strings.HasPrefix(l, ":alice!") && strings.Contains(l, "JOIN") })

	alice.Send(fmt.Sprintf("<message type='groupchat' to='%s' id='s1'><body>secret words</body>%s</message>", room, secLabel(essSecret)))
	alice.Expect("alice's SECRET reflection", isMessage(occ("alice"), "secret words"))
	if l, ok := bob.Wait(2*time.Second, func(l string) bool { return strings.Contains(l, "secret words") }); ok {
		t.Errorf("a SECRET message reached IRC: %q", l)
	}
	alice.Send(fmt.Sprintf("<message type='groupchat' to='%s' id='u1'><body>open words</body></message>", room))
	got := bob.Expect(func(l string) bool { return strings.Contains(l, "open words") })
	if !strings.HasSuffix(got, "PRIVMSG #lab :[NATO UNCLASSIFIED] open words") {
		t.Errorf("IRC got %q, want the first-line marking", got)
	}

	bob.Send("PRIVMSG #lab :from irc")
	m := alice.Expect("bob's message", isMessage(occ("bob"), "from irc"))
	if dm := m.Path("securitylabel", "displaymarking"); dm == nil || dm.Text != "NATO UNCLASSIFIED" {
		t.Errorf("IRC message label: %v", m)
	}
}
