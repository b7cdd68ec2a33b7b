package integration

import (
	"fmt"
	"slices"
	"testing"
)

// rosterItems returns the items of a roster result by contact JID.
func rosterItems(t *testing.T, res *elem) map[string]*elem {
	t.Helper()
	q := res.Child(nsRoster, "query")
	if q == nil {
		t.Fatalf("roster result without a query: %s", res)
	}
	items := map[string]*elem{}
	for _, it := range q.Children {
		if it.XMLName.Local == "item" {
			items[it.Attr("jid")] = it
		}
	}
	return items
}

func groups(it *elem) []string {
	var g []string
	for _, c := range it.Children {
		if c.XMLName.Local == "group" {
			g = append(g, c.Text)
		}
	}
	return g
}

// TestRoster manages a contact list from two resources of one account
// (RFC 6121 §2) with roster versioning (§2.6).
func TestRoster(t *testing.T) {
	integration(t)
	srv := startServer(t, serverOpts{})
	srv.AddUser("alice", "alice-secret")
	srv.AddUser("bob", "bob-secret")
	bob := srv.JID("bob")

	phone := srv.login(t, "alice", "alice-secret", loginOpts{Resource: "phone"})
	laptop := srv.login(t, "alice", "alice-secret", loginOpts{Resource: "laptop"})

	// A new account's roster is empty, and both resources ask for it so
	// that they receive pushes.
	var ver string
	for _, c := range []*client{phone, laptop} {
		res := c.IQResult("get", "", "<query xmlns='jabber:iq:roster'/>")
		if items := rosterItems(t, res); len(items) != 0 {
			t.Errorf("%s: new roster has items %v", c.JID, items)
		}
		ver = res.Child(nsRoster, "query").Attr("ver")
	}

	// Add a contact from the phone; the laptop learns about it at once.
	phone.IQResult("set", "", fmt.Sprintf(
		"<query xmlns='jabber:iq:roster'><item jid='%s' name='Bob'><group>Friends</group><group>Work</group></item></query>", bob))
	for _, c := range []*client{phone, laptop} {
		push := c.Expect("roster push adding bob", isRosterPush(bob))
		it := push.Child(nsRoster, "query").Child(nsRoster, "item")
		if it.Attr("name") != "Bob" || it.Attr("subscription") != "none" || !slices.Equal(groups(it), []string{"Friends", "Work"}) {
			t.Errorf("%s: push item %s, want name Bob, subscription none, groups Friends and Work", c.JID, it)
		}
		if push.Child(nsRoster, "query").Attr("ver") == ver {
			t.Errorf("%s: push carries the old roster version %q", c.JID, ver)
		}
	}

	// The roster now has bob, under a new version.
	res := laptop.IQResult("get", "", "<query xmlns='jabber:iq:roster'/>")
	items := rosterItems(t, res)
	if it := items[bob]; it == nil || it.Attr("name") != "Bob" || !slices.Equal(groups(it), []string{"Friends", "Work"}) {
		t.Fatalf("roster after adding bob: %s", res)
	}
	newVer := res.Child(nsRoster, "query").Attr("ver")
	if newVer == "" || newVer == ver {
		t.Errorf("roster version after a change is %q (was %q), want a new one", newVer, ver)
	}

	// Versioning: asking with the current version returns an empty result,
	// the client keeps its cached copy (RFC 6121 §2.6.3).
	res = laptop.IQResult("get", "", fmt.Sprintf("<query xmlns='jabber:iq:roster' ver='%s'/>", newVer))
	if len(res.Children) != 0 {
		t.Errorf("roster get with the current version %q returned %s, want an empty result", newVer, res)
	}
	// An outdated version gets the roster (or pushes) again.
	res = laptop.IQResult("get", "", fmt.Sprintf("<query xmlns='jabber:iq:roster' ver='%s'/>", ver))
	if q := res.Child(nsRoster, "query"); q == nil || rosterItems(t, res)[bob] == nil {
		t.Errorf("roster get with the outdated version %q returned %s, want the roster with bob", ver, res)
	}

	// Rename: an update replaces name and groups.
	phone.IQResult("set", "", fmt.Sprintf("<query xmlns='jabber:iq:roster'><item jid='%s' name='Robert'/></query>", bob))
	push := laptop.Expect("roster push renaming bob", isRosterPush(bob))
	if it := push.Child(nsRoster, "query").Child(nsRoster, "item"); it.Attr("name") != "Robert" || len(groups(it)) != 0 {
		t.Errorf("push after rename: %s, want name Robert and no groups", push)
	}
	phone.Expect("roster push renaming bob", isRosterPush(bob))

	// Remove: both resources are told, and the roster is empty again.
	phone.IQResult("set", "", fmt.Sprintf("<query xmlns='jabber:iq:roster'><item jid='%s' subscription='remove'/></query>", bob))
	for _, c := range []*client{phone, laptop} {
		push := c.Expect("roster push removing bob", isRosterPush(bob))
		if sub := push.Child(nsRoster, "query").Child(nsRoster, "item").Attr("subscription"); sub != "remove" {
			t.Errorf("%s: push after removal has subscription %q, want remove", c.JID, sub)
		}
	}
	if items := rosterItems(t, phone.IQResult("get", "", "<query xmlns='jabber:iq:roster'/>")); len(items) != 0 {
		t.Errorf("roster after removing bob: %v, want empty", items)
	}

	// Removing a contact that is not there is an error (RFC 6121 §2.5.3).
	res = phone.IQ("set", "", fmt.Sprintf("<query xmlns='jabber:iq:roster'><item jid='%s' subscription='remove'/></query>", bob))
	if res.Attr("type") != "error" || res.ErrorCondition() != "item-not-found" {
		t.Errorf("removing an absent contact: %s, want item-not-found", res)
	}
}
