package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aldis-im/aldis/irc/irctest"
)

// TestIRCBridgeOutageKeepsLines: the IRC server is killed while an XMPP
// user's lines wait in her connection's flood-controlled queue, and she and a
// user relayed through the listener go on talking during the outage. Once the
// server is back, every line not yet on IRC arrives there once, in order: what
// the connections held when they dropped and what was said meanwhile. The
// server keeps its channels' history (chanhistory), so an IRC user who joins
// after the restart sees what the bridge sent before they could join.
func TestIRCBridgeOutageKeepsLines(t *testing.T) {
	integration(t)
	ircd := irctest.InspIRCdWithHistory(t)
	domain := "x" + randHex(4) + ".example"
	room := "lab@conference." + domain
	occ := func(nick string) string { return room + "/" + nick }
	// One line per 2 s: lines queue on the connections. One connection of a user's own: carol
	// is relayed through the listener.
	srv := ircServer(t, domain, ircMap(t, ircd.Addr, "max_connections = 1\nflood_interval = \"2s\"\nflood_burst = 1",
		ircLink{room: room, channel: "#lab"}), "alice", "carol")
	alice := online(t, srv, "alice", "alice-secret", loginOpts{})
	createRoom(alice, room, "alice")
	bob := ircd.Connect(t, "bob")
	bob.Join("#lab")
	alice.Expect("bob", isPresence("", occ("bob")))
	ircWaitNames(t, bob, "#lab", "alice")
	carol := online(t, srv, "carol", "carol-secret", loginOpts{})
	enterRoom(carol, room, "carol", "")
	say := func(c *client, who string, i int) {
		c.Send(fmt.Sprintf("<message type='groupchat' to='%s' id='%s%d'><body>%s %d</body></message>", room, who, i, who, i))
	}

	const before, during = 6, 4
	for i := range before {
		say(alice, "alice", i)
	}
	bob.Expect(ircSaid("alice", "#lab", "alice 0"))
	bob.Expect(ircSaid("alice", "#lab", "alice 1"))
	// Between two paced lines (the server has confirmed "alice 1", and the bridge had a second to
	// take the confirmation even on a loaded machine; "alice 2" is due in another second), the
	// server dies: alice's connection holds "alice 2" to "alice 5".
	time.Sleep(time.Second)
	ircd.Stop()
	for i := before; i < before+during; i++ {
		say(alice, "alice", i)
	}
	for i := range during {
		say(carol, "carol", i)
	}
	if l, ok := bob.Wait(2*time.Second, func(l string) bool { return strings.Contains(l, " PRIVMSG #lab :") }); ok {
		t.Fatalf("bob got %q after alice 1: the server was killed too late for the test", l)
	}
	ircd.Start()

	// bob is back on IRC: the channel's history and what follows show what the bridge sent
	// once it was back, and nothing twice.
	bob = ircd.Connect(t, "bob")
	bob.Join("#lab")
	var want []string
	for i := 2; i < before+during; i++ {
		want = append(want, fmt.Sprintf("alice: alice %d", i))
	}
	for i := range during {
		want = append(want, fmt.Sprintf("aldisgw: <carol> carol %d", i))
	}
	seen := map[string]int{}
	next := map[string]int{"alice": 2, "carol": 0} // the next line expected from each, in order
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		l, ok := bob.Wait(time.Until(deadline), func(l string) bool { return strings.Contains(l, " PRIVMSG #lab :") })
		if !ok {
			break
		}
		nick := strings.TrimPrefix(l[:strings.IndexByte(l, '!')], ":")
		text := l[strings.Index(l, " PRIVMSG #lab :")+len(" PRIVMSG #lab :"):]
		key := nick + ": " + text
		seen[key]++
		if seen[key] > 1 {
			t.Errorf("bob got %q twice", key)
		}
		var who string
		var i int
		if _, err := fmt.Sscanf(strings.TrimPrefix(text, "<carol> "), "%s %d", &who, &i); err == nil && seen[key] == 1 {
			if i != next[who] {
				t.Errorf("bob got %q; the next line from %s should be number %d", key, who, next[who])
			}
			next[who] = i + 1
		}
		if len(seen) == len(want) && deadline.After(time.Now().Add(2*time.Second)) {
			deadline = time.Now().Add(2 * time.Second) // all there: watch a little longer for copies
		}
	}
	for _, w := range want {
		if seen[w] == 0 {
			t.Errorf("bob never got %q", w)
		}
	}
	if len(seen) != len(want) {
		t.Errorf("bob got %d distinct lines, want %d: %v", len(seen), len(want), seen)
	}
	// Nobody was told a line was not sent.
	for name, c := range map[string]*client{"alice": alice, "carol": carol} {
		c.ExpectNone(name+": a not-sent notice", func(e *elem) bool {
			return e.XMLName.Local == "message" && e.Attr("type") == "chat" && fromMatches(e, occ("#lab"))
		}, 500*time.Millisecond)
	}
}
