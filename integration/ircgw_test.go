package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/aldis-im/aldis/irc/irctest"
)

// ircLink is one [[link]] of a test bridge map.
type ircLink struct{ room, channel, key string }

// ircMap writes a bridge map for one network "lab" on addr with extra
// network keys, and returns its path.
func ircMap(t *testing.T, addr, extra string, links ...ircLink) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "irc.toml")
	if err := os.WriteFile(path, []byte(ircMapText(addr, extra, "lab", "aldisgw", links...)), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// ircMapText is the bridge map text of network name on addr, its listener
// nick, extra network keys and its links.
func ircMapText(addr, extra, name, nick string, links ...ircLink) string {
	var b strings.Builder
	if !strings.Contains(extra, "flood_") {
		extra += "\nflood_interval = \"1ms\"\nflood_burst = 50"
	}
	fmt.Fprintf(&b, "\n[[network]]\nname = %q\nservers = [%q]\nno_tls = true\nnick = %q\n%s\n", name, addr, nick, extra)
	for _, l := range links {
		fmt.Fprintf(&b, "\n[[link]]\nroom = %q\nnetwork = %q\nchannel = %q\n", l.room, name, l.channel)
		if l.key != "" {
			fmt.Fprintf(&b, "key = %q\n", l.key)
		}
	}
	return b.String()
}

// ircServer starts aldis with the bridge map at maps.
func ircServer(t *testing.T, domain, maps string, users ...string) *server {
	t.Helper()
	srv := startServer(t, serverOpts{Domain: domain, Extra: fmt.Sprintf("\n[irc]\nmaps = [%q]\nrejoin_interval = \"1s\"\nlinger = \"2s\"\n", maps)})
	for _, u := range users {
		srv.AddUser(u, u+"-secret")
	}
	return srv
}

// ircJoined matches nick's JOIN of channel as an IRC user sees it.
func ircJoined(nick, channel string) func(string) bool {
	return func(l string) bool {
		return strings.HasPrefix(l, ":"+nick+"!") && strings.Contains(l, " JOIN ") && strings.HasSuffix(strings.TrimPrefix(l, ":"), channel)
	}
}

// ircSaid matches nick's PRIVMSG of text to target.
func ircSaid(nick, target, text string) func(string) bool {
	return func(l string) bool {
		return strings.HasPrefix(l, ":"+nick+"!") && strings.HasSuffix(l, " PRIVMSG "+target+" :"+text)
	}
}

// ircExpectAll waits for one line matching each of want, in any order.
func ircExpectAll(u *irctest.User, want ...func(string) bool) {
	left := slices.Clone(want)
	for len(left) > 0 {
		u.Expect(func(l string) bool {
			for i, m := range left {
				if m(l) {
					left = slices.Delete(left, i, i+1)
					return true
				}
			}
			return false
		})
	}
}

// ircWaitNames asks for channel's NAMES until nick is in it, for up to 30 s.
func ircWaitNames(t *testing.T, u *irctest.User, channel, nick string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		u.Send("NAMES " + channel)
		l := u.Expect(func(l string) bool { return strings.Contains(l, " 353 ") })
		for _, f := range strings.Fields(l[strings.LastIndexByte(l, ':')+1:]) {
			if strings.TrimLeft(f, "~&@%+") == nick {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is not in %s: %q", nick, channel, l)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestIRCBridgeCrowd covers the §7.6 checklist with three XMPP users and two
// IRC users in one linked room, on InspIRCd (IRCv3: echo-message, msgid) and
// ngIRCd (plain RFC 2812): each message is seen exactly once on each side;
// nick changes, TOPIC and kicks cross both ways; a user in two linked rooms
// of one network holds one IRC connection with two JOINs.
func TestIRCBridgeCrowd(t *testing.T) {
	for _, name := range []string{"inspircd", "ngircd"} {
		t.Run(name, func(t *testing.T) {
			integration(t)
			var ircd *irctest.Server
			if name == "inspircd" {
				ircd = irctest.InspIRCd(t)
			} else {
				ircd = irctest.NgIRCd(t)
			}
			ircBridgeCrowd(t, ircd)
		})
	}
}

func ircBridgeCrowd(t *testing.T, ircd *irctest.Server) {
	domain := "x" + randHex(4) + ".example"
	room := "lab@conference." + domain
	room2 := "lab2@conference." + domain
	occ := func(nick string) string { return room + "/" + nick }
	erin := ircd.Connect(t, "erin")
	erin.Join("#lab")
	srv := ircServer(t, domain, ircMap(t, ircd.Addr, "", ircLink{room: room, channel: "#lab"}, ircLink{room: room2, channel: "#lab2"}),
		"alice", "carol", "dave")

	alice := online(t, srv, "alice", "alice-secret", loginOpts{})
	createRoom(alice, room, "alice")
	createRoom(alice, room2, "alice")
	// IRC users' topics become the subject: occupants may change it.
	alice.IQResult("set", room, fmt.Sprintf("<query xmlns='%s'><x xmlns='jabber:x:data' type='submit'>"+
		"<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>"+
		"<field var='muc#roomconfig_changesubject'><value>1</value></field></x></query>", nsMUCOwner))

	// erin made #lab and opped the gateway's listener.
	erin.Expect(ircJoined("aldisgw", "#lab"))
	erin.Send("MODE #lab +o aldisgw")
	bob := ircd.Connect(t, "bob")
	bob.Join("#lab")
	alice.Expect("bob as an occupant", isPresence("", occ("bob")))
	alice.Expect("erin as an occupant", isPresence("", occ("erin")))

	carol := online(t, srv, "carol", "carol-secret", loginOpts{})
	enterRoom(carol, room, "carol", "")
	dave := online(t, srv, "dave", "dave-secret", loginOpts{})
	enterRoom(dave, room, "dave", "")
	ircExpectAll(erin, ircJoined("alice", "#lab"), ircJoined("carol", "#lab"), ircJoined("dave", "#lab"))

	// Each message, exactly once on each side.
	xmpp := map[string]*client{"alice": alice, "carol": carol, "dave": dave}
	irc := map[string]*irctest.User{"bob": bob, "erin": erin}
	for from, c := range xmpp {
		c.Send(fmt.Sprintf("<message type='groupchat' to='%s' id='id-%s'><body>hi from %s</body></message>", room, from, from))
	}
	for from, u := range irc {
		u.Send("PRIVMSG #lab :hi from " + from)
	}
	for name, c := range xmpp {
		for from := range xmpp {
			c.Expect(name+" gets "+from, isMessage(occ(from), "hi from "+from))
		}
		for from := range irc {
			c.Expect(name+" gets "+from, isMessage(occ(from), "hi from "+from))
		}
	}
	for name, u := range irc {
		var want []func(string) bool
		for from := range xmpp {
			want = append(want, ircSaid(from, "#lab", "hi from "+from))
		}
		for from := range irc {
			if from != name {
				want = append(want, ircSaid(from, "#lab", "hi from "+from))
			}
		}
		ircExpectAll(u, want...)
	}
	for name, c := range xmpp {
		c.ExpectNone(name+": a second copy", func(e *elem) bool {
			return e.XMLName.Local == "message" && strings.HasPrefix(e.ChildText("", "body"), "hi from ")
		}, time.Second)
	}
	for name, u := range irc {
		if l, ok := u.Wait(time.Second, func(l string) bool { return strings.Contains(l, "hi from ") }); ok {
			t.Errorf("%s got a second copy: %q", name, l)
		}
	}

	// IRC → XMPP nick change: a MUC nick change (303) of the same occupant.
	bob.Send("NICK bobby")
	alice.Expect("bob's nick change", func(e *elem) bool {
		return isPresence("unavailable", occ("bob"))(e) && mucStatus(e, "303") && e.Path("x", "item") != nil && e.Path("x", "item").Attr("nick") == "bobby"
	})
	alice.Expect("bobby's presence", isPresence("", occ("bobby")))
	bob.Send("PRIVMSG #lab :renamed")
	carol.Expect("bobby's message", isMessage(occ("bobby"), "renamed"))

	// XMPP → IRC nick change: the MUC nick changes, and the IRC nick follows.
	dave.Send(fmt.Sprintf("<presence to='%s'/>", occ("david")))
	dave.Expect("dave's new nick", isSelfPresence("", occ("david")))
	erin.Expect(func(l string) bool {
		return strings.HasPrefix(l, ":dave!") && strings.Contains(l, " NICK ") && strings.HasSuffix(l, "david")
	})
	dave.Send(fmt.Sprintf("<message type='groupchat' to='%s' id='d2'><body>as david</body></message>", room))
	erin.Expect(ircSaid("david", "#lab", "as david"))

	// TOPIC, IRC → XMPP: a subject change from the IRC user's occupant.
	erin.Send("TOPIC #lab :topic from irc")
	alice.Expect("the IRC topic as the subject", func(e *elem) bool {
		return e.XMLName.Local == "message" && fromMatches(e, occ("erin")) && e.ChildText("", "subject") == "topic from irc"
	})
	// TOPIC, XMPP → IRC, on the changer's own connection: the room's owner is no channel
	// operator on the +t channel: IRC refuses (482), so does the room, and the subject stays.
	erin.Send("MODE #lab +t") // InspIRCd's channels are +t already (no echo), ngIRCd's are not
	bob.Wait(3*time.Second, func(l string) bool { return strings.Contains(l, " MODE #lab ") && strings.Contains(l, "+t") })
	alice.Send(fmt.Sprintf("<message type='groupchat' to='%s' id='s0'><subject>not yours</subject></message>", room))
	refused := alice.Expect("the refused subject change", func(e *elem) bool {
		return e.XMLName.Local == "message" && e.Attr("type") == "error" && e.Attr("id") == "s0"
	})
	if refused.ErrorCondition() != "forbidden" {
		t.Errorf("subject refusal %s, want forbidden", refused)
	}
	carol.ExpectNone("a subject change", func(e *elem) bool { return e.ChildText("", "subject") == "not yours" }, 500*time.Millisecond)
	// Once the channel lets anyone set the topic, the change goes through on both sides.
	erin.Send("MODE #lab -t")
	bob.Expect(func(l string) bool { return strings.Contains(l, " MODE #lab ") && strings.Contains(l, "-t") })
	alice.Send(fmt.Sprintf("<message type='groupchat' to='%s' id='s1'><subject>topic from xmpp</subject></message>", room))
	bob.Expect(func(l string) bool {
		return strings.HasPrefix(l, ":alice!") && strings.Contains(l, " TOPIC #lab :topic from xmpp")
	})
	carol.Expect("the new subject", func(e *elem) bool {
		return e.XMLName.Local == "message" && fromMatches(e, occ("alice")) && e.ChildText("", "subject") == "topic from xmpp"
	})
	if l, ok := bob.Wait(time.Second, func(l string) bool { return strings.Contains(l, " TOPIC #lab ") }); ok {
		t.Errorf("the topic was set twice: %q", l)
	}

	// An IRC operator's KICK: the occupant leaves, with the reason.
	erin.Send("KICK #lab bobby :behave")
	kicked := alice.Expect("bobby kicked", isPresence("unavailable", occ("bobby")))
	if st := kicked.ChildText("", "status"); !strings.Contains(st, "behave") || !strings.Contains(st, "erin") {
		t.Errorf("kick status %q, want the kicker and the reason", st)
	}
	// An XMPP moderator kicks an IRC user: the listener (a channel operator) KICKs them.
	bob.Join("#lab")
	alice.Expect("bobby back", isPresence("", occ("bobby")))
	alice.IQResult("set", room, fmt.Sprintf("<query xmlns='%s'><item nick='bobby' role='none'><reason>cool off</reason></item></query>", nsMUCAdmin))
	l := bob.Expect(func(l string) bool { return strings.Contains(l, " KICK #lab bobby") })
	if !strings.Contains(l, "cool off") {
		t.Errorf("KICK without the reason: %q", l)
	}

	// One connection for a user in two linked rooms of one network: two JOINs, one nick.
	bob.Join("#lab")
	bob.Join("#lab2")
	bob.Send("WHOIS alice")
	who := bob.Expect(func(l string) bool { return strings.Contains(l, " 319 bobby alice ") })
	if !strings.Contains(who, "#lab") || !strings.Contains(who, "#lab2") {
		t.Errorf("alice's WHOIS channels %q, want #lab and #lab2", who)
	}
	bob.Send("WHOIS alice_")
	bob.Expect(func(l string) bool { return strings.Contains(l, " 401 bobby alice_") })
}

// TestIRCBridgeBudget: a network whose connection budget is one user: the
// second XMPP user gets no IRC connection of their own, and what they say
// goes through the listener as "<nick> text".
func TestIRCBridgeBudget(t *testing.T) {
	integration(t)
	ircd := irctest.InspIRCd(t)
	domain := "x" + randHex(4) + ".example"
	room := "lab@conference." + domain
	occ := func(nick string) string { return room + "/" + nick }
	srv := ircServer(t, domain, ircMap(t, ircd.Addr, "max_connections = 1", ircLink{room: room, channel: "#lab"}), "alice", "carol")
	bob := ircd.Connect(t, "bob")
	alice := online(t, srv, "alice", "alice-secret", loginOpts{})
	createRoom(alice, room, "alice")
	alice.Expect("the bridge in the room", isPresence("", occ("#lab")))
	bob.Join("#lab")
	carol := online(t, srv, "carol", "carol-secret", loginOpts{})
	enterRoom(carol, room, "carol", "")
	carol.Expect("bob", isPresence("", occ("bob")))
	ircWaitNames(t, bob, "#lab", "alice")

	alice.Send(fmt.Sprintf("<message type='groupchat' to='%s' id='a1'><body>own connection</body></message>", room))
	bob.Expect(ircSaid("alice", "#lab", "own connection"))
	carol.Send(fmt.Sprintf("<message type='groupchat' to='%s' id='c1'><body>over budget</body></message>", room))
	bob.Expect(ircSaid("aldisgw", "#lab", "<carol> over budget"))
	carol.Send(fmt.Sprintf("<message type='groupchat' to='%s' id='c2'><body>/me relays</body></message>", room))
	bob.Expect(ircSaid("aldisgw", "#lab", "* carol relays"))
	if l, ok := bob.Wait(time.Second, func(l string) bool { return strings.HasPrefix(l, ":carol!") }); ok {
		t.Errorf("carol got a connection beyond the budget: %q", l)
	}
	// The relayed messages are not echoed back into the room.
	carol.Expect("carol's reflection", isMessage(occ("carol"), "over budget"))
	carol.ExpectNone("the relay's echo", func(e *elem) bool {
		return e.XMLName.Local == "message" && strings.Contains(e.ChildText("", "body"), "over budget") && !fromMatches(e, occ("carol"))
	}, time.Second)
}

// TestIRCBridgeRestart: the IRC server is killed and started again on the
// same port: the link comes back, the room's IRC occupants follow the
// channel again (those gone leave, those back re-appear), and no message
// sent after the recovery is lost, either way.
func TestIRCBridgeRestart(t *testing.T) {
	integration(t)
	ircd := irctest.InspIRCd(t)
	domain := "x" + randHex(4) + ".example"
	room := "lab@conference." + domain
	occ := func(nick string) string { return room + "/" + nick }
	srv := ircServer(t, domain, ircMap(t, ircd.Addr, "", ircLink{room: room, channel: "#lab"}), "alice")
	alice := online(t, srv, "alice", "alice-secret", loginOpts{})
	createRoom(alice, room, "alice")
	bob := ircd.Connect(t, "bob")
	bob.Join("#lab")
	alice.Expect("bob", isPresence("", occ("bob")))
	bob.Expect(ircJoined("alice", "#lab"))

	ircd.Stop()
	ircd.Start()
	// The listener is back in the channel, and bob is not: his occupant leaves.
	alice.Expect("bob gone after the outage", isPresence("unavailable", occ("bob")))
	bob = ircd.Connect(t, "bob")
	bob.Join("#lab")
	alice.Expect("bob back", isPresence("", occ("bob")))
	// alice's own connection is back in the channel too.
	ircWaitNames(t, bob, "#lab", "alice")
	const n = 50
	for i := range n {
		bob.Send(fmt.Sprintf("PRIVMSG #lab :after %d", i))
		alice.Send(fmt.Sprintf("<message type='groupchat' to='%s' id='r%d'><body>back %d</body></message>", room, i, i))
	}
	for i := range n {
		alice.Expect("bob's message after recovery", isMessage(occ("bob"), fmt.Sprintf("after %d", i)))
	}
	for i := range n {
		bob.Expect(ircSaid("alice", "#lab", fmt.Sprintf("back %d", i)))
	}
}

// TestIRCBridgeJoinError: the channel bans an XMPP user: IRC refuses their
// connection's JOIN (474); the user learns it from the bridge in a private
// message of the room, and what they say is not relayed around the ban.
func TestIRCBridgeJoinError(t *testing.T) {
	integration(t)
	ircd := irctest.InspIRCd(t)
	domain := "x" + randHex(4) + ".example"
	room := "lab@conference." + domain
	occ := func(nick string) string { return room + "/" + nick }
	bob := ircd.Connect(t, "bob")
	bob.Join("#lab")
	bob.Send("MODE #lab +b alice!*@*")
	bob.Expect(func(l string) bool { return strings.Contains(l, "MODE #lab +b") })
	srv := ircServer(t, domain, ircMap(t, ircd.Addr, "", ircLink{room: room, channel: "#lab"}), "alice", "carol")
	alice := online(t, srv, "alice", "alice-secret", loginOpts{})
	createRoom(alice, room, "alice")
	alice.Expect("bob", isPresence("", occ("bob")))
	m := alice.Expect("the join error", func(e *elem) bool {
		return e.XMLName.Local == "message" && e.Attr("type") == "chat" && fromMatches(e, occ("#lab"))
	})
	if b := m.ChildText("", "body"); !strings.Contains(b, "474") || !strings.Contains(b, "banned") {
		t.Errorf("join error %q", b)
	}
	alice.Send(fmt.Sprintf("<message type='groupchat' to='%s' id='a1'><body>around the ban</body></message>", room))
	if l, ok := bob.Wait(2*time.Second, func(l string) bool { return strings.Contains(l, "around the ban") }); ok {
		t.Errorf("a banned user's message reached IRC: %q", l)
	}
	// Others are unaffected.
	carol := online(t, srv, "carol", "carol-secret", loginOpts{})
	enterRoom(carol, room, "carol", "")
	bob.Expect(ircJoined("carol", "#lab"))
	carol.Send(fmt.Sprintf("<message type='groupchat' to='%s' id='c1'><body>not banned</body></message>", room))
	bob.Expect(ircSaid("carol", "#lab", "not banned"))
}

// TestIRCBridgeNicksLongLines: an XMPP user joining under an IRC
// occupant's nick gets 409 conflict; on a relay-only network an IRC user
// with an XMPP occupant's nick is shown as nick[irc]; a 2,000-byte line is
// split into PRIVMSGs without breaking a UTF-8 sequence or losing a byte.
func TestIRCBridgeNicksLongLines(t *testing.T) {
	integration(t)
	ircd := irctest.InspIRCd(t)
	domain := "x" + randHex(4) + ".example"
	room := "lab@conference." + domain
	room2 := "relay@conference." + domain
	occ := func(nick string) string { return room + "/" + nick }
	maps := ircMap(t, ircd.Addr, "", ircLink{room: room, channel: "#lab"})
	relayMaps := ircMapText(ircd.Addr, "relay_only = true", "relay", "aldisrl", ircLink{room: room2, channel: "#relay"})
	first, err := os.ReadFile(maps)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(maps, append(first, relayMaps...), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := ircServer(t, domain, maps, "alice", "carol")
	bob := ircd.Connect(t, "bob")
	bob.Join("#lab")
	alice := online(t, srv, "alice", "alice-secret", loginOpts{})
	createRoom(alice, room, "alice")
	alice.Expect("bob", isPresence("", occ("bob")))

	// An XMPP join under the IRC occupant's nick: 409.
	carol := online(t, srv, "carol", "carol-secret", loginOpts{})
	mucJoin(carol, occ("bob"), "")
	e := carol.Expect("the conflict", isPresence("error", occ("bob")))
	if c := e.ErrorCondition(); c != "conflict" {
		t.Errorf("joining as an IRC occupant's nick: %s, want conflict", c)
	}

	// 2,000 bytes of two-byte characters after one ASCII byte: every cut falls mid-alignment.
	ircWaitNames(t, bob, "#lab", "alice")
	body := "x" + strings.Repeat("é", 1000)
	alice.Send(fmt.Sprintf("<message type='groupchat' to='%s' id='long'><body>%s</body></message>", room, body))
	var got strings.Builder
	for got.Len() < len(body) {
		l := bob.Expect(func(l string) bool { return strings.HasPrefix(l, ":alice!") && strings.Contains(l, " PRIVMSG #lab :") })
		part := l[strings.Index(l, " PRIVMSG #lab :")+len(" PRIVMSG #lab :"):]
		if !utf8.ValidString(part) {
			t.Fatalf("a line with a broken UTF-8 sequence: %q", part)
		}
		got.WriteString(part)
	}
	if got.String() != body {
		t.Errorf("the long line came back as %d bytes, want %d, or changed", got.Len(), len(body))
	}

	// Relay only: the XMPP occupant "erin" has no IRC connection, so an IRC "erin" can exist;
	// the IRC user is shown as erin[irc].
	createRoom(alice, room2, "erin")
	alice.Expect("the relay bridge", isPresence("", room2+"/#relay"))
	erin := ircd.Connect(t, "erin")
	erin.Join("#relay")
	alice.Expect("the IRC erin, renamed", isPresence("", room2+"/erin[irc]"))
	erin.Send("PRIVMSG #relay :which erin")
	alice.Expect("the IRC erin's message", isMessage(room2+"/erin[irc]", "which erin"))
}

// TestIRCBridgeBurst: 3,000 IRC lines written at once, three times the
// room's queue: the bridge keeps a window of messages in flight to the room
// and the rest in order behind it, so all arrive, in order, once.
func TestIRCBridgeBurst(t *testing.T) {
	integration(t)
	ircd := irctest.InspIRCd(t)
	domain := "x" + randHex(4) + ".example"
	room := "lab@conference." + domain
	occ := func(nick string) string { return room + "/" + nick }
	srv := ircServer(t, domain, ircMap(t, ircd.Addr, "", ircLink{room: room, channel: "#lab"}), "alice")
	alice := online(t, srv, "alice", "alice-secret", loginOpts{})
	createRoom(alice, room, "alice")
	bob := ircd.Connect(t, "bob")
	bob.Join("#lab")
	alice.Expect("bob", isPresence("", occ("bob")))
	const burst = 3000
	var lines strings.Builder
	for i := range burst {
		fmt.Fprintf(&lines, "PRIVMSG #lab :burst %d\r\n", i)
	}
	bob.Send(strings.TrimSuffix(lines.String(), "\r\n"))
	began := time.Now()
	for i := range burst {
		alice.Expect("burst message", isMessage(occ("bob"), fmt.Sprintf("burst %d", i)))
	}
	t.Logf("IRC → XMPP: %d messages written at once arrived in %v", burst, time.Since(began))
	alice.ExpectNone("a second copy", func(e *elem) bool {
		return e.XMLName.Local == "message" && strings.HasPrefix(e.ChildText("", "body"), "burst ")
	}, time.Second)
}
