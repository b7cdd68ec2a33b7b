package integration

import (
	"testing"
)

// TestSlixmppCarbonsAndPEP: slixmpp on two devices of one account and a
// contact; carbons copy messages to the second device, and a PEP nickname
// reaches the contact because its client's capabilities ask for it.
func TestSlixmppCarbonsAndPEP(t *testing.T) {
	integration(t)
	requireSlixmpp(t)
	srv := startServer(t, serverOpts{})
	srv.AddUser("alice", "alice-secret")
	srv.AddUser("bob", "bob-secret")

	r := runScript(t, "testdata/slixmpp_im.py", "--addr", srv.Addr,
		"--alice", srv.JID("alice"), "--alice-password", "alice-secret",
		"--bob", srv.JID("bob"), "--bob-password", "bob-secret", "--debug")
	if !r.ok() {
		t.Fatalf("slixmpp scenario did not finish:\n%s", r)
	}
	checks := []struct{ step, key, want string }{
		{"subscribed", "subscription", "both"},
		{"phone_got", "body", "to your phone"},
		{"laptop_received_carbon", "body", "to your phone"},
		{"laptop_received_carbon", "to", srv.JID("alice") + "/phone"},
		{"bob_got", "body", "from my phone"},
		{"laptop_sent_carbon", "body", "from my phone"},
		{"bob_nick_event", "publisher", srv.JID("alice")},
		{"bob_nick_event", "nick", "Alice in the field"},
	}
	for _, c := range checks {
		s := r.first(c.step)
		if s == nil || s.str(c.key) != c.want {
			t.Errorf("%s.%s = %v, want %q", c.step, c.key, s, c.want)
		}
	}
}
