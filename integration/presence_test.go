package integration

import (
	"fmt"
	"testing"
	"time"
)

// subscription returns the subscription state (and ask) of contact in c's roster.
func subscription(t *testing.T, c *client, contact string) (sub, ask string) {
	t.Helper()
	it := rosterItems(t, c.IQResult("get", "", "<query xmlns='jabber:iq:roster'/>"))[contact]
	if it == nil {
		return "", ""
	}
	return it.Attr("subscription"), it.Attr("ask")
}

// TestPresenceSubscription: alice and bob subscribe to each other and then
// see each other come and go (RFC 6121 §3 and §4).
func TestPresenceSubscription(t *testing.T) {
	integration(t)
	srv := startServer(t, serverOpts{})
	srv.AddUser("alice", "alice-secret")
	srv.AddUser("bob", "bob-secret")
	aliceJID, bobJID := srv.JID("alice"), srv.JID("bob")

	alice := online(t, srv, "alice", "alice-secret", loginOpts{Resource: "home"})
	bob := online(t, srv, "bob", "bob-secret", loginOpts{Resource: "work"})

	// alice asks to see bob's presence.
	alice.Send(fmt.Sprintf("<presence to='%s' type='subscribe'/>", bobJID))
	push := alice.Expect("roster push for the pending subscription", isRosterPush(bobJID))
	if it := push.Path("query", "item"); it.Attr("subscription") != "none" || it.Attr("ask") != "subscribe" {
		t.Errorf("alice's push after subscribing: %s, want subscription none ask subscribe", push)
	}
	// bob is asked, by alice's bare JID (RFC 6121 §3.1.2).
	bob.Expect("subscription request from alice's bare JID", isPresence("subscribe", aliceJID))
	// bob approves.
	bob.Send(fmt.Sprintf("<presence to='%s' type='subscribed'/>", aliceJID))
	bob.Expect("roster push: alice may see bob", func(e *elem) bool {
		return isRosterPush(aliceJID)(e) && e.Path("query", "item").Attr("subscription") == "from"
	})
	alice.Expect("subscription approval", isPresence("subscribed", bobJID))
	alice.Expect("roster push: alice sees bob", func(e *elem) bool {
		return isRosterPush(bobJID)(e) && e.Path("query", "item").Attr("subscription") == "to"
	})
	// ...and alice gets bob's current presence at once (RFC 6121 §3.1.5).
	alice.Expect("bob's available presence", isPresence("", bob.JID.String()))

	// The other direction: bob subscribes to alice, alice approves.
	bob.Send(fmt.Sprintf("<presence to='%s' type='subscribe'/>", aliceJID))
	alice.Expect("subscription request from bob", isPresence("subscribe", bobJID))
	alice.Send(fmt.Sprintf("<presence to='%s' type='subscribed'/>", bobJID))
	bob.Expect("subscription approval", isPresence("subscribed", aliceJID))
	bob.Expect("alice's available presence", isPresence("", alice.JID.String()))

	// Both rosters end in "both", with nothing pending.
	for _, tc := range []struct {
		c       *client
		contact string
	}{{alice, bobJID}, {bob, aliceJID}} {
		if sub, ask := subscription(t, tc.c, tc.contact); sub != "both" || ask != "" {
			t.Errorf("%s's roster item for %s: subscription %q ask %q, want both and no ask", tc.c.name, tc.contact, sub, ask)
		}
	}

	// bob loses his connection (no </stream>): alice sees him go.
	bob.drop()
	alice.Expect("bob's unavailable presence after his connection dropped", isPresence("unavailable", bob.JID.String()))

	// bob comes back: each sees the other available again (the server
	// probes alice's presence for bob, RFC 6121 §4.3).
	bob = online(t, srv, "bob", "bob-secret", loginOpts{Resource: "work"})
	bob.Expect("alice's presence after bob's login", isPresence("", alice.JID.String()))
	alice.Expect("bob's presence after his login", isPresence("", bob.JID.String()))

	// Now alice drops: bob sees her go.
	alice.drop()
	bob.Expect("alice's unavailable presence after her connection dropped", isPresence("unavailable", alice.JID.String()))

	// An updated presence (away) reaches subscribers too.
	alice = online(t, srv, "alice", "alice-secret", loginOpts{Resource: "home"})
	bob.Expect("alice's presence after her login", isPresence("", alice.JID.String()))
	alice.Send("<presence><show>away</show><status>lunch</status></presence>")
	away := bob.Expect("alice's away presence", func(e *elem) bool {
		return isPresence("", alice.JID.String())(e) && e.ChildText("", "show") == "away"
	})
	if st := away.ChildText("", "status"); st != "lunch" {
		t.Errorf("alice's away presence has status %q, want lunch: %s", st, away)
	}
	// A polite logout is seen as well.
	alice.Send("<presence type='unavailable'/>")
	bob.Expect("alice's unavailable presence after logout", isPresence("unavailable", alice.JID.String()))
}

// subscribeBoth makes a and b subscribed to each other and drains the
// notifications that come with it.
func subscribeBoth(t *testing.T, a, b *client) {
	t.Helper()
	aJID, bJID := a.JID.Bare().String(), b.JID.Bare().String()
	for _, p := range [][2]*client{{a, b}, {b, a}} {
		from, to := p[0], p[1]
		fromJID, toJID := from.JID.Bare().String(), to.JID.Bare().String()
		from.Send(fmt.Sprintf("<presence to='%s' type='subscribe'/>", toJID))
		to.Expect("subscription request", isPresence("subscribe", fromJID))
		to.Send(fmt.Sprintf("<presence to='%s' type='subscribed'/>", fromJID))
		from.Expect("subscription approval", isPresence("subscribed", toJID))
		from.Expect("presence after approval", isPresence("", to.JID.String()))
	}
	for _, tc := range []struct {
		c       *client
		contact string
	}{{a, bJID}, {b, aJID}} {
		if sub, _ := subscription(t, tc.c, tc.contact); sub != "both" {
			t.Fatalf("%s: subscription to %s is %q after mutual approval, want both", tc.c.JID, tc.contact, sub)
		}
	}
}

// TestSubscriptionRequestWhileOffline: a request sent while the contact is
// offline reaches them when they come online (RFC 6121 §3.1.3).
func TestSubscriptionRequestWhileOffline(t *testing.T) {
	integration(t)
	srv := startServer(t, serverOpts{})
	srv.AddUser("alice", "alice-secret")
	srv.AddUser("bob", "bob-secret")

	alice := online(t, srv, "alice", "alice-secret", loginOpts{})
	alice.Send(fmt.Sprintf("<presence to='%s' type='subscribe'/>", srv.JID("bob")))
	alice.Expect("roster push for the pending subscription", isRosterPush(srv.JID("bob")))

	bob := srv.login(t, "bob", "bob-secret")
	bob.Send("<presence/>")
	bob.Expect("alice's subscription request, kept while bob was offline", isPresence("subscribe", srv.JID("alice")))
	// Approving it works as if bob had been online.
	bob.Send(fmt.Sprintf("<presence to='%s' type='subscribed'/>", srv.JID("alice")))
	alice.Expect("approval", isPresence("subscribed", srv.JID("bob")))
	alice.Expect("bob's presence", isPresence("", bob.JID.String()))
}

// TestDirectedPresence: presence sent to someone without a subscription is
// followed by unavailable presence when the sender goes (RFC 6121 §4.6.3).
func TestDirectedPresence(t *testing.T) {
	integration(t)
	srv := startServer(t, serverOpts{})
	srv.AddUser("alice", "alice-secret")
	srv.AddUser("bob", "bob-secret")
	alice := online(t, srv, "alice", "alice-secret", loginOpts{})
	bob := online(t, srv, "bob", "bob-secret", loginOpts{})

	alice.Send(fmt.Sprintf("<presence to='%s'><status>here for a chat</status></presence>", srv.JID("bob")))
	p := bob.Expect("alice's directed presence", isPresence("", alice.JID.String()))
	if st := p.ChildText("", "status"); st != "here for a chat" {
		t.Errorf("directed presence status %q: %s", st, p)
	}
	alice.drop()
	bob.Expect("alice's unavailable presence after her directed presence", isPresence("unavailable", alice.JID.String()))
}

// TestRosterRemovalCancelsSubscriptions: removing a contact ends both
// subscriptions, and the contact is told (RFC 6121 §2.5.2).
func TestRosterRemovalCancelsSubscriptions(t *testing.T) {
	integration(t)
	srv := startServer(t, serverOpts{})
	srv.AddUser("alice", "alice-secret")
	srv.AddUser("bob", "bob-secret")
	alice := online(t, srv, "alice", "alice-secret", loginOpts{})
	bob := online(t, srv, "bob", "bob-secret", loginOpts{})
	subscribeBoth(t, alice, bob)

	alice.IQResult("set", "", fmt.Sprintf("<query xmlns='jabber:iq:roster'><item jid='%s' subscription='remove'/></query>", srv.JID("bob")))
	bob.Expect("unsubscribe from alice", isPresence("unsubscribe", srv.JID("alice")))
	bob.Expect("unsubscribed from alice", isPresence("unsubscribed", srv.JID("alice")))
	bob.Expect("alice's unavailable presence", isPresence("unavailable", alice.JID.String()))
	if sub, ask := subscription(t, bob, srv.JID("alice")); sub != "none" || ask != "" {
		t.Errorf("bob's roster item for alice after she removed him: subscription %q ask %q, want none", sub, ask)
	}
	if sub, _ := subscription(t, alice, srv.JID("bob")); sub != "" {
		t.Errorf("alice's roster still has bob (subscription %q)", sub)
	}
	// alice no longer sees bob's presence changes.
	bob.Send("<presence><show>dnd</show></presence>")
	alice.ExpectNone("presence from a removed contact", isPresence("", bob.JID.String()), 300*time.Millisecond)
}
