package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestFMUC: a ship's room federates (XEP-0289) with a shore's room over
// ordinary s2s. Users in each copy of the room see each other's messages
// exactly once, a private message crosses, and when the last ship user
// leaves the shore ends the federation.
func TestFMUC(t *testing.T) {
	integration(t)
	pki := newPKI(t)
	ps := fedPeer{"ship" + randHex(3) + ".example", loopbackIP()}
	pb := fedPeer{"shore" + randHex(3) + ".example", loopbackIP()}
	shipRoom := "ops@conference." + ps.Domain
	shoreRoom := "ops@conference." + pb.Domain
	certS, keyS := pki.issue(t, false, ps.Domain, "conference."+ps.Domain)
	certB, keyB := pki.issue(t, false, pb.Domain, "conference."+pb.Domain)
	ship := startServer(t, serverOpts{Domain: ps.Domain, CertFile: certS, KeyFile: keyS,
		Extra: s2sConfig(ps, pki.CAFile, pb) + fmt.Sprintf("\n[[muc.federate]]\nroom = \"ops\"\nwith = %q\nmode = \"primary-primary\"\n", shoreRoom)})
	shore := startServer(t, serverOpts{Domain: pb.Domain, CertFile: certB, KeyFile: keyB,
		Extra: s2sConfig(pb, pki.CAFile, ps) + fmt.Sprintf("\n[muc]\nfederation_from = [%q]\n", "conference."+ps.Domain)})
	ship.AddUser("alice", "alice-password")
	shore.AddUser("bob", "bob-password")
	alice := online(t, ship, "alice", "alice-password", loginOpts{})
	bob := online(t, shore, "bob", "bob-password", loginOpts{})

	createRoom(bob, shoreRoom, "bob")
	// alice's join goes through the shore room: she sees bob first.
	enterRoom(alice, shipRoom, "alice", "")
	alice.Expect("bob, from the shore", isPresence("", shipRoom+"/bob"))
	bob.Expect("alice, from the ship", isPresence("", shoreRoom+"/alice"))
	noFed := func(c *client) {
		t.Helper()
		c.ExpectNone("a federation element", func(e *elem) bool { return strings.Contains(e.String(), "isode.com/protocol/fmuc") }, 100*time.Millisecond)
	}

	alice.Send(fmt.Sprintf("<message to='%s' type='groupchat' id='%s'><body>from the ship</body></message>", shipRoom, nextID("g")))
	alice.Expect("her reflection", isMessage(shipRoom+"/alice", "from the ship"))
	bob.Expect("alice's message", isMessage(shoreRoom+"/alice", "from the ship"))
	bob.Send(fmt.Sprintf("<message to='%s' type='groupchat' id='%s'><body>from the shore</body></message>", shoreRoom, nextID("g")))
	bob.Expect("his reflection", isMessage(shoreRoom+"/bob", "from the shore"))
	alice.Expect("bob's message", isMessage(shipRoom+"/bob", "from the shore"))

	alice.Send(fmt.Sprintf("<message to='%s/bob' type='chat' id='%s'><body>psst</body></message>", shipRoom, nextID("pm")))
	bob.Expect("alice's private message", isMessage(shoreRoom+"/alice", "psst"))

	// Exactly once: no second copy, no echo.
	alice.ExpectNone("a second copy", func(e *elem) bool {
		b := e.ChildText("", "body")
		return b == "from the ship" || b == "from the shore"
	}, 2*time.Second)
	bob.ExpectNone("a second copy", func(e *elem) bool {
		b := e.ChildText("", "body")
		return b == "from the ship" || b == "from the shore" || b == "psst"
	}, time.Second)
	noFed(alice)
	noFed(bob)

	alice.Send(fmt.Sprintf("<presence to='%s/alice' type='unavailable'/>", shipRoom))
	alice.Expect("her departure", isPresence("unavailable", shipRoom+"/alice"))
	bob.Expect("alice leaves", isPresence("unavailable", shoreRoom+"/alice"))
	shore.WaitLog("federated room left")
}
