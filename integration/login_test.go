package integration

import (
	"testing"

	"mellium.im/sasl"
)

// TestLogin logs in over both listener kinds with every SASL mechanism the
// server offers there.
func TestLogin(t *testing.T) {
	integration(t)
	srv := startServer(t, serverOpts{})
	srv.AddUser("alice", "alice-secret")

	tests := []struct {
		name string
		opts loginOpts
	}{
		{"STARTTLS/SCRAM-SHA-256", loginOpts{Mech: sasl.ScramSha256}},
		{"STARTTLS/SCRAM-SHA-256-PLUS", loginOpts{Mech: sasl.ScramSha256Plus}},
		{"STARTTLS/SCRAM-SHA-1", loginOpts{Mech: sasl.ScramSha1}},
		{"STARTTLS/SCRAM-SHA-1-PLUS", loginOpts{Mech: sasl.ScramSha1Plus}},
		{"STARTTLS/PLAIN", loginOpts{Mech: sasl.Plain}},
		{"DirectTLS/SCRAM-SHA-256", loginOpts{DirectTLS: true, Mech: sasl.ScramSha256}},
		{"DirectTLS/SCRAM-SHA-256-PLUS", loginOpts{DirectTLS: true, Mech: sasl.ScramSha256Plus}},
		{"DirectTLS/PLAIN", loginOpts{DirectTLS: true, Mech: sasl.Plain}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := srv.login(t, "alice", "alice-secret", tt.opts)
			if got, want := c.JID.Bare().String(), srv.JID("alice"); got != want {
				t.Errorf("bound JID %s, want a resource of %s", c.JID, want)
			}
			if c.JID.Resourcepart() == "" {
				t.Errorf("bound JID %s has no resource; the server must generate one", c.JID)
			}
			// The session works: the server answers.
			c.IQResult("get", srv.Domain, pingPayload)
			c.Close()
		})
	}
}

// TestLoginFailures checks what a user with a wrong password, or an attacker
// guessing passwords, sees.
func TestLoginFailures(t *testing.T) {
	integration(t)
	srv := startServer(t, serverOpts{MaxFailuresPerAccount: 3, MaxFailuresPerIP: 6})
	srv.AddUser("alice", "alice-secret")
	srv.AddUser("bob", "bob-secret")

	// loginFailure logs in and returns the SASL failure condition, or "" on success.
	loginFailure := func(t *testing.T, user, pw string, o loginOpts) string {
		t.Helper()
		c, err := srv.connect(t, user, pw, o)
		if err == nil {
			c.Close()
			return ""
		}
		cond := saslCondition(err)
		if cond == "" {
			t.Fatalf("login as %s from %q failed without a SASL failure: %v", user, o.LocalIP, err)
		}
		return cond
	}
	wantFailure := func(t *testing.T, user, pw string, o loginOpts, want string) {
		t.Helper()
		switch got := loginFailure(t, user, pw, o); got {
		case want:
		case "":
			t.Fatalf("login as %s with password %q from %q succeeded, want SASL failure %s", user, pw, o.LocalIP, want)
		default:
			t.Fatalf("login as %s with password %q from %q: SASL failure %s, want %s", user, pw, o.LocalIP, got, want)
		}
	}
	wantSuccess := func(t *testing.T, user, pw string, o loginOpts) {
		t.Helper()
		if got := loginFailure(t, user, pw, o); got != "" {
			t.Fatalf("login as %s from %q: SASL failure %s, want success", user, o.LocalIP, got)
		}
	}

	// Each part guesses from its own loopback address so that the per-address
	// limit of one part does not decide another.
	t.Run("WrongPassword", func(t *testing.T) {
		from := loginOpts{LocalIP: "127.0.0.10"}
		for _, m := range []sasl.Mechanism{sasl.ScramSha256, sasl.Plain} {
			wantFailure(t, "bob", "wrong", loginOpts{LocalIP: from.LocalIP, Mech: m}, "not-authorized")
		}
		// An unknown account looks exactly like a wrong password.
		wantFailure(t, "nobody", "whatever", from, "not-authorized")
		wantSuccess(t, "bob", "bob-secret", from)
	})

	t.Run("AccountLimit", func(t *testing.T) {
		// An attacker guesses alice's password with SCRAM, as clients log in.
		for range 3 {
			wantFailure(t, "alice", "guess", loginOpts{LocalIP: "127.0.0.11"}, "not-authorized")
		}
		// Now even the right password is refused for that account, from any address...
		wantFailure(t, "alice", "alice-secret", loginOpts{LocalIP: "127.0.0.12"}, "temporary-auth-failure")
		// ...but other accounts are unaffected, even from the attacker's address.
		wantSuccess(t, "bob", "bob-secret", loginOpts{LocalIP: "127.0.0.11"})
	})

	t.Run("AddressLimit", func(t *testing.T) {
		// Guessing across many accounts from one address: 6 failures.
		for _, u := range []string{"u1", "u2", "u3", "u4", "u5", "u6"} {
			wantFailure(t, u, "guess", loginOpts{LocalIP: "127.0.0.13"}, "not-authorized")
		}
		// That address is now refused even for a valid login...
		wantFailure(t, "bob", "bob-secret", loginOpts{LocalIP: "127.0.0.13"}, "temporary-auth-failure")
		// ...while other addresses are not.
		wantSuccess(t, "bob", "bob-secret", loginOpts{LocalIP: "127.0.0.14"})
	})
}

// TestResourceConflict: logging in again with a resource already in use
// replaces the old session, which is told why (RFC 6120 §7.7.2.2).
func TestResourceConflict(t *testing.T) {
	integration(t)
	srv := startServer(t, serverOpts{})
	srv.AddUser("alice", "alice-secret")

	first := srv.login(t, "alice", "alice-secret", loginOpts{Resource: "phone"})
	if got, want := first.JID.String(), srv.JID("alice")+"/phone"; got != want {
		t.Fatalf("bound %s, want %s", got, want)
	}
	second := srv.login(t, "alice", "alice-secret", loginOpts{Resource: "phone"})
	if got, want := second.JID.String(), srv.JID("alice")+"/phone"; got != want {
		t.Fatalf("second session bound %s, want %s", got, want)
	}
	if cond := first.StreamError(); cond != "conflict" {
		t.Errorf("first session ended with stream error %q, want conflict", cond)
	}
	second.IQResult("get", srv.Domain, pingPayload)
}

// TestInBandAccountManagement changes a password and deletes an account
// from the client (XEP-0077 §3.3 and §3.2) on a server with registration on.
func TestInBandAccountManagement(t *testing.T) {
	integration(t)
	srv := startServer(t, serverOpts{Registration: true})
	srv.AddUser("alice", "alice-secret")

	alice := srv.login(t, "alice", "alice-secret")
	alice.IQResult("set", "", "<query xmlns='jabber:iq:register'><username>alice</username><password>alice-new-secret</password></query>")
	if _, err := srv.connect(t, "alice", "alice-secret", loginOpts{}); saslCondition(err) != "not-authorized" {
		t.Errorf("login with the old password after an in-band change: %v, want not-authorized", err)
	}
	srv.login(t, "alice", "alice-new-secret").Close()

	// A password change cannot name another account.
	res := alice.IQ("set", "", "<query xmlns='jabber:iq:register'><username>bob</username><password>hijacked!</password></query>")
	if res.Attr("type") != "error" {
		t.Errorf("changing another user's password: %s, want an error", res)
	}

	other := srv.login(t, "alice", "alice-new-secret")
	alice.IQResult("set", "", "<query xmlns='jabber:iq:register'><remove/></query>")
	// Every session of the removed account ends (XEP-0077 §3.2).
	for _, c := range []*client{alice, other} {
		if cond := c.StreamError(); cond == "" {
			t.Errorf("%s: session closed without a stream error after account removal", c.JID)
		}
	}
	if _, err := srv.connect(t, "alice", "alice-new-secret", loginOpts{}); saslCondition(err) != "not-authorized" {
		t.Errorf("login after removing the account: %v, want not-authorized", err)
	}
	if out, _, _ := srv.User("", "list"); containsLine(out, srv.JID("alice")) {
		t.Errorf("aldis user list still shows the removed account: %q", out)
	}
}
