package integration

import (
	"fmt"
	"testing"
)

// TestSlixmppArchive: messages sent to a user who is offline land in the
// user's archive; the user's client pages through all of them, in order,
// and asks for the newest page. The archive survives a restart.
func TestSlixmppArchive(t *testing.T) {
	integration(t)
	requireSlixmpp(t)
	srv := startServer(t, serverOpts{})
	srv.AddUser("alice", "alice-secret")
	srv.AddUser("bob", "bob-secret")
	const count = 300

	run := func(n int) *slixmppRun {
		return runScript(t, "testdata/slixmpp_mam.py", "--addr", srv.Addr,
			"--alice", srv.JID("alice"), "--alice-password", "alice-secret",
			"--bob", srv.JID("bob"), "--bob-password", "bob-secret", "--count", fmt.Sprint(n), "--debug")
	}
	r := run(count)
	if !r.ok() {
		t.Fatalf("slixmpp scenario did not finish:\n%s", r)
	}
	a := r.first("archive")
	if a["count"] != float64(count) || a["ordered"] != true || a["first"] != "message 0" {
		t.Errorf("archive pages: %v", a)
	}
	if lp := r.first("last_page"); lp["count"] != fmt.Sprint(count) && lp["count"] != float64(count) {
		t.Errorf("last page: %v", lp)
	}

	// After a restart the archive is still there: a second run sends 10 more
	// and finds all of them.
	srv.restart()
	r = run(10)
	if !r.ok() {
		t.Fatalf("slixmpp scenario after restart did not finish:\n%s", r)
	}
	if a := r.first("archive"); a["count"] != float64(count+10) {
		t.Errorf("after restart the archive holds %v messages, want %d", a["count"], count+10)
	}
}
