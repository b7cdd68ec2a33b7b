package integration

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aldis-im/aldis/irc/irctest"
)

// ircParted matches nick's PART of channel as an IRC user sees it.
func ircParted(nick, channel string) func(string) bool {
	return func(l string) bool {
		f := strings.Fields(l)
		return len(f) > 2 && strings.HasPrefix(f[0], ":"+nick+"!") && f[1] == "PART" && strings.TrimPrefix(f[2], ":") == channel
	}
}

// TestIRCBridgeReload: SIGHUP applies a rewritten bridge map to a running
// `aldis serve`. A link added works both ways; the IRC users of a link
// removed leave its room and the gateway leaves its channel; a link whose
// channel changed follows the new channel; the link left alone keeps its IRC
// users and goes on relaying without rejoining (nobody on its channel sees a
// PART or JOIN). A map with an error is refused with its file:line, and the
// running links are kept.
func TestIRCBridgeReload(t *testing.T) {
	integration(t)
	ircd := irctest.InspIRCd(t)
	domain := "x" + randHex(4) + ".example"
	room := func(name string) string { return name + "@conference." + domain }
	occ := func(r, nick string) string { return room(r) + "/" + nick }
	keep := ircLink{room: room("keep"), channel: "#keep"}
	gone := ircLink{room: room("gone"), channel: "#gone"}
	moved := ircLink{room: room("moved"), channel: "#old"}
	added := ircLink{room: room("added"), channel: "#added"}
	maps := ircMap(t, ircd.Addr, "", keep, gone, moved)
	srv := ircServer(t, domain, maps, "alice")

	bob := ircd.Connect(t, "bob")
	for _, ch := range []string{"#keep", "#gone", "#old"} {
		bob.Join(ch)
	}
	dan := ircd.Connect(t, "dan")
	dan.Join("#new")
	erin := ircd.Connect(t, "erin")
	erin.Join("#added")
	alice := online(t, srv, "alice", "alice-secret", loginOpts{})
	for _, r := range []string{"keep", "gone", "moved", "added"} {
		createRoom(alice, room(r), "alice")
	}
	for _, r := range []string{"keep", "gone", "moved"} {
		alice.Expect("bob in "+r, isPresence("", occ(r, "bob")))
	}
	ircWaitNames(t, bob, "#keep", "alice")
	ircWaitNames(t, bob, "#gone", "alice")
	ircWaitNames(t, bob, "#old", "alice")
	alice.Send(fmt.Sprintf("<message type='groupchat' to='%s' id='k0'><body>before the reload</body></message>", room("keep")))
	bob.Expect(ircSaid("alice", "#keep", "before the reload"))
	// frank watches #keep and reads nothing until the end: every line he is sent is checked.
	frank := ircd.Connect(t, "frank")
	frank.Join("#keep")
	alice.Expect("frank in the kept room", isPresence("", occ("keep", "frank")))

	// The rewritten map: #keep untouched, #gone removed, the moved room now on #new, #added new.
	moved.channel = "#new"
	if err := os.WriteFile(maps, []byte(ircMapText(ircd.Addr, "", "lab", "aldisgw", keep, moved, added)), 0o600); err != nil {
		t.Fatal(err)
	}
	srv.Signal(syscall.SIGHUP)
	srv.WaitLog("reloaded IRC bridge maps")
	if log := srv.Stderr(); !strings.Contains(log, "added=1 removed=1 changed=1") {
		t.Errorf("the reload did not report one link added, removed and changed:\n%s", log)
	}

	// Removed: bob leaves its room, the gateway and alice's connection leave #gone.
	alice.Expect("bob leaving the unlinked room", isPresence("unavailable", occ("gone", "bob")))
	ircExpectAll(bob, ircParted("aldisgw", "#gone"), ircParted("alice", "#gone"))
	// Changed: the room follows #new: bob (on #old) leaves it, dan (on #new) comes in.
	alice.Expect("bob leaving the moved room", isPresence("unavailable", occ("moved", "bob")))
	alice.Expect("dan in the moved room", isPresence("", occ("moved", "dan")))
	ircExpectAll(dan, ircJoined("aldisgw", "#new"), ircJoined("alice", "#new"))
	dan.Send("PRIVMSG #new :on the new channel")
	alice.Expect("dan's message", isMessage(occ("moved", "dan"), "on the new channel"))
	// Added: both ways.
	alice.Expect("erin in the added room", isPresence("", occ("added", "erin")))
	ircExpectAll(erin, ircJoined("aldisgw", "#added"), ircJoined("alice", "#added"))
	erin.Send("PRIVMSG #added :hello new link")
	alice.Expect("erin's message", isMessage(occ("added", "erin"), "hello new link"))
	alice.Send(fmt.Sprintf("<message type='groupchat' to='%s' id='d1'><body>hello erin</body></message>", room("added")))
	erin.Expect(ircSaid("alice", "#added", "hello erin"))

	// Untouched: bob is still in the room, and messages go on both ways.
	alice.Send(fmt.Sprintf("<message type='groupchat' to='%s' id='k1'><body>after the reload</body></message>", room("keep")))
	bob.Expect(ircSaid("alice", "#keep", "after the reload"))
	bob.Send("PRIVMSG #keep :still linked")
	alice.Expect("bob's message in the kept room", isMessage(occ("keep", "bob"), "still linked"))

	// A broken map: refused with its file and line; everything keeps running.
	broken := ircMapText(ircd.Addr, "", "lab", "aldisgw", keep, moved, added) + "\n[[link]]\nroom = \"nope\"\n"
	if err := os.WriteFile(maps, []byte(broken), 0o600); err != nil {
		t.Fatal(err)
	}
	line := strings.Count(broken[:strings.Index(broken, `room = "nope"`)], "\n") + 1
	srv.Signal(syscall.SIGHUP)
	srv.WaitLog("IRC bridge maps have errors; keeping the running ones")
	srv.WaitLog(fmt.Sprintf("%s:%d: link[3].room", maps, line))
	alice.Send(fmt.Sprintf("<message type='groupchat' to='%s' id='k2'><body>after the broken map</body></message>", room("keep")))
	bob.Expect(ircSaid("alice", "#keep", "after the broken map"))
	erin.Send("PRIVMSG #added :still here")
	alice.Expect("erin after the broken map", isMessage(occ("added", "erin"), "still here"))

	// Nothing on #keep moved: frank saw no PART or JOIN, only the messages; bob never left its room.
	frank.Send("PING :check")
	var said []string
	for {
		l := frank.Expect(func(string) bool { return true })
		if strings.Contains(l, " PONG ") && strings.HasSuffix(l, "check") {
			break
		}
		f := strings.Fields(l)
		if len(f) > 1 && (f[1] == "JOIN" || f[1] == "PART" || f[1] == "QUIT" || f[1] == "KICK") {
			t.Errorf("frank saw %q on #keep", l)
		}
		if len(f) > 1 && f[1] == "PRIVMSG" {
			said = append(said, l[strings.LastIndex(l, " :")+2:])
		}
	}
	if want := []string{"after the reload", "still linked", "after the broken map"}; !slices.Equal(said, want) {
		t.Errorf("frank got %q on #keep, want %q", said, want)
	}
	alice.ExpectNone("bob leaving the kept room", isPresence("unavailable", occ("keep", "bob")), 500*time.Millisecond)
}
