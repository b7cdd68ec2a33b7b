package integration

import (
	"slices"
	"testing"
)

// TestSlixmppMobile: what a phone client relies on, with slixmpp. Client
// state indication holds back presence and typing notifications while the
// phone is inactive (never messages with a body); avatar metadata published
// in PEP reaches a contact; bookmarks stored privately in PEP reach the
// owner's other device and no one else.
func TestSlixmppMobile(t *testing.T) {
	integration(t)
	requireSlixmpp(t)
	srv := startServer(t, serverOpts{})
	srv.AddUser("alice", "alice-secret")
	srv.AddUser("bob", "bob-secret")

	r := runScript(t, "testdata/slixmpp_mobile.py", "--addr", srv.Addr,
		"--domain", srv.Domain, "--alice", srv.JID("alice"), "--alice-password", "alice-secret",
		"--bob", srv.JID("bob"), "--bob-password", "bob-secret", "--debug")
	if !r.ok() {
		t.Fatalf("slixmpp scenario did not finish:\n%s", r)
	}
	if s := r.first("while_inactive"); len(s.strs("received")) != 0 {
		t.Errorf("an inactive client was sent %v", s.strs("received"))
	}
	if s := r.first("after_active"); s.str("status") != "away 2" || s["more_presence"] != float64(0) || s["composing"] != true {
		t.Errorf("after <active/>: %v (want only the latest presence, then the typing notification)", s)
	}
	if s := r.first("urgent_while_inactive"); s.str("body") != "urgent" {
		t.Errorf("a message with a body was held: %v", s)
	}
	if s := r.first("avatar_event"); s.str("publisher") != srv.JID("alice") || s.str("id") != "0123456789abcdef0123456789abcdef01234567" {
		t.Errorf("avatar event: %v", s)
	}
	if s := r.first("bookmarks"); !slices.Contains(s.strs("jids"), "ops@conference."+srv.Domain) {
		t.Errorf("bookmarks on the other device: %v", s)
	}
	if s := r.first("bookmarks_contact"); s["allowed"] != false {
		t.Errorf("a contact read the bookmarks: %v", s)
	}
}
