package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// The Debian interpreter: python3-slixmpp is installed for it, not for
// whatever python3 comes first on PATH (e.g. pyenv's).
const debianPython = "/usr/bin/python3"

// requireSlixmpp skips (or, on CI, fails) when slixmpp is not installed.
func requireSlixmpp(t *testing.T) {
	t.Helper()
	requirePeer(t, debianPython, "-c", "import slixmpp")
}

// step is one observation printed by testdata/slixmpp_client.py.
type step map[string]any

func (s step) str(key string) string {
	if v, ok := s[key].(string); ok {
		return v
	}
	return ""
}

func (s step) strs(key string) []string {
	var out []string
	l, _ := s[key].([]any)
	for _, v := range l {
		out = append(out, fmt.Sprint(v))
	}
	return out
}

// slixmppRun is a finished run of the script.
type slixmppRun struct {
	steps  []step
	stdout string
	stderr string // slixmpp's debug log: the XML exchanged
	err    error
}

// first returns the first observation called name, or nil.
func (r *slixmppRun) first(name string) step {
	for _, s := range r.steps {
		if s.str("step") == name {
			return s
		}
	}
	return nil
}

func (r *slixmppRun) all(name string) []step {
	var out []step
	for _, s := range r.steps {
		if s.str("step") == name {
			out = append(out, s)
		}
	}
	return out
}

// ok reports whether the script reached its end.
func (r *slixmppRun) ok() bool { return r.err == nil && r.first("done") != nil }

func (r *slixmppRun) String() string {
	return fmt.Sprintf("exit: %v\nstdout:\n%s\nslixmpp log:\n%s", r.err, r.stdout, tail(r.stderr, 60))
}

func tail(s string, lines int) string {
	var l []string
	for _, line := range strings.Split(s, "\n") {
		if !strings.Contains(line, "Loaded Plugin") {
			l = append(l, line)
		}
	}
	if len(l) > lines {
		l = append([]string{"..."}, l[len(l)-lines:]...)
	}
	return strings.Join(l, "\n")
}

// runSlixmpp runs a scenario of testdata/slixmpp_client.py against srv.
func runSlixmpp(t *testing.T, srv *server, scenario string, args ...string) *slixmppRun {
	t.Helper()
	return runScript(t, "testdata/slixmpp_client.py", append([]string{scenario,
		"--addr", srv.Addr, "--domain", srv.Domain, "--debug"}, args...)...)
}

// runScript runs a Python script of testdata with Debian's interpreter and
// collects the JSON observations it prints.
func runScript(t *testing.T, script string, args ...string) *slixmppRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, debianPython, append([]string{script}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	r := &slixmppRun{err: cmd.Run()}
	r.stdout, r.stderr = stdout.String(), stderr.String()
	sc := bufio.NewScanner(strings.NewReader(r.stdout))
	for sc.Scan() {
		var s step
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			t.Errorf("slixmpp script printed a line that is not JSON: %q", sc.Text())
			continue
		}
		r.steps = append(r.steps, s)
	}
	return r
}

// TestSlixmpp: two slixmpp users log in with SCRAM over STARTTLS and use
// the everyday features.
func TestSlixmpp(t *testing.T) {
	integration(t)
	requireSlixmpp(t)
	srv := startServer(t, serverOpts{})
	srv.AddUser("alice", "alice-secret")
	srv.AddUser("bob", "bob-secret")
	alice, bob := srv.JID("alice"), srv.JID("bob")

	// TLS 1.2 so that slixmpp 1.8 can do SCRAM at all: it only knows the
	// tls-unique channel binding (TestSlixmppDefaultLogin covers its defaults).
	r := runSlixmpp(t, srv, "exchange", "--jid", alice, "--password", "alice-secret",
		"--peer-jid", bob, "--peer-password", "bob-secret", "--mech", "SCRAM-SHA-256", "--tls12")
	if !r.ok() {
		t.Fatalf("slixmpp scenario did not finish:\n%s", r)
	}
	fail := func(format string, args ...any) {
		t.Helper()
		t.Errorf(format+"\n(the slixmpp log is printed once at the end)", args...)
	}

	logins := r.all("login")
	if len(logins) != 2 {
		t.Fatalf("%d logins, want 2:\n%s", len(logins), r)
	}
	for i, want := range []string{alice, bob} {
		if !strings.HasPrefix(logins[i].str("jid"), want+"/") || logins[i].str("mechanism") != "SCRAM-SHA-256" {
			fail("login %d: %v, want %s/... with SCRAM-SHA-256", i, logins[i], want)
		}
	}

	checks := []struct {
		step  string
		field string
		want  string
	}{
		{"bob_got", "body", "hello bob"},
		{"bob_got", "type", "chat"},
		{"alice_got", "body", "hello alice"},
		{"vcard_own", "fn", "Alice Liddell"},
		{"vcard_peer", "fn", "Alice Liddell"},
		{"private_own", "value", "the cake is in the fridge"},
		// Private storage is private: bob's is empty.
		{"private_peer", "value", ""},
		{"ping", "ok", "true"},
		{"version", "name", "Aldis"},
		{"time", "tzo", "+00:00"},
		// XEP-0191 §3.3: a blocked sender's message is not delivered and
		// bounces with service-unavailable.
		{"alice_got_while_blocked", "type", "error"},
		{"alice_got_while_blocked", "error", "service-unavailable"},
		{"bob_got_after_unblock", "body", "unblocked now"},
	}
	for _, c := range checks {
		s := r.first(c.step)
		if s == nil {
			fail("no %s step", c.step)
			continue
		}
		if got := fmt.Sprint(s[c.field]); got != c.want {
			fail("%s.%s = %q, want %q (%v)", c.step, c.field, got, c.want, s)
		}
	}
	if s := r.first("bob_got"); s.str("from") == "" || !strings.HasPrefix(s.str("from"), alice+"/") {
		fail("bob got a message from %q, want alice's full JID", s.str("from"))
	}
	if s := r.first("bob_got_while_blocked"); s["received"] != false {
		fail("bob received a message from alice while blocking her: %v", s)
	}
	if got := r.first("blocklist").strs("items"); !slices.Equal(got, []string{alice}) {
		fail("blocklist %q, want [%s]", got, alice)
	}
	if got := r.first("blocklist_after_unblock").strs("items"); len(got) != 0 {
		fail("blocklist after unblock %q, want empty", got)
	}
	if v := r.first("version").str("version"); v == "" {
		fail("software version has no version")
	}
	if utc := r.first("time").str("utc"); !isXEP82DateTime(utc) {
		fail("entity time utc %q is not an XEP-0082 UTC date-time", utc)
	}
	info := r.first("disco_info")
	if ids := info.strs("identities"); !slices.Contains(ids, "[server im]") {
		fail("server disco#info identities %q, want server/im", ids)
	}
	features := info.strs("features")
	for _, f := range []string{"http://jabber.org/protocol/disco#info", "urn:xmpp:ping", "jabber:iq:version",
		"urn:xmpp:time", "vcard-temp", "jabber:iq:private", "urn:xmpp:blocking", "jabber:iq:roster"} {
		if !slices.Contains(features, f) {
			fail("server disco#info lacks feature %s: %q", f, features)
		}
	}
	// Registration is off on this server and must not be advertised.
	if slices.Contains(features, "jabber:iq:register") {
		fail("server disco#info advertises jabber:iq:register with registration disabled")
	}
	if t.Failed() {
		t.Logf("slixmpp run:\n%s", r)
	}
}

func isXEP82DateTime(s string) bool {
	for _, layout := range []string{"2006-01-02T15:04:05Z", "2006-01-02T15:04:05.999999999Z"} {
		if _, err := time.Parse(layout, s); err == nil {
			return true
		}
	}
	return false
}

// TestSlixmppDefaultLogin: slixmpp as installed, with its default choices
// (TLS 1.3, its preferred SASL mechanism), must be able to log in with the
// right password, twice in a row.
//
// slixmpp 1.8 binds SCRAM-*-PLUS to tls-unique, which TLS 1.3 does not have
// (RFC 9266); the server offers tls-exporter only. slixmpp then falls back
// to SCRAM with gs2 flag "y", which RFC 5802 §6 makes the server refuse
// while it offers -PLUS, and the stream is closed after three failures,
// before slixmpp reaches PLAIN. Each attempt also counts against the
// login-failure limits.
func TestSlixmppDefaultLogin(t *testing.T) {
	integration(t)
	requireSlixmpp(t)
	srv := startServer(t, serverOpts{})
	srv.AddUser("alice", "alice-secret")
	srv.AddUser("bob", "bob-secret")
	r := runSlixmpp(t, srv, "exchange", "--jid", srv.JID("alice"), "--password", "alice-secret",
		"--peer-jid", srv.JID("bob"), "--peer-password", "bob-secret")
	logins := r.all("login")
	if len(logins) != 2 {
		// The SASL exchange says why; the full log follows.
		var sasl []string
		for _, l := range strings.Split(r.stderr, "\n") {
			if strings.Contains(l, "<auth ") || strings.Contains(l, "<failure") || strings.Contains(l, "stream:error") {
				sasl = append(sasl, l)
			}
		}
		t.Fatalf("slixmpp with default settings logged in %d times, want 2. SASL exchange:\n%s\n\n%s",
			len(logins), strings.Join(sasl, "\n"), r)
	}
	if !r.ok() {
		t.Errorf("slixmpp scenario did not finish:\n%s", r)
	}
}

// TestSlixmppRegistration creates an account from slixmpp with in-band
// registration (XEP-0077) and logs in with it.
func TestSlixmppRegistration(t *testing.T) {
	integration(t)
	requireSlixmpp(t)
	srv := startServer(t, serverOpts{Registration: true})
	newUser := srv.JID("newbie")

	r := runSlixmpp(t, srv, "register", "--jid", newUser, "--password", "newbie-secret",
		"--mech", "SCRAM-SHA-256", "--tls12")
	if !r.ok() {
		t.Fatalf("slixmpp registration did not finish:\n%s", r)
	}
	if s := r.first("register"); s == nil || s["ok"] != true {
		t.Fatalf("registration: %v\n%s", s, r)
	}
	if s := r.first("login_again"); s == nil || !strings.HasPrefix(s.str("jid"), newUser+"/") {
		t.Errorf("login with the new account: %v\n%s", s, r)
	}
	// The account is real: the admin tool lists it and mellium can use it.
	out, _, _ := srv.User("", "list")
	if !containsLine(out, newUser) {
		t.Errorf("aldis user list after registration: %q, want %s", out, newUser)
	}
	srv.login(t, "newbie", "newbie-secret").Close()

	// Registering the same name again is refused (XEP-0077 §3.2: conflict).
	r = runSlixmpp(t, srv, "register", "--jid", newUser, "--password", "other-secret",
		"--mech", "SCRAM-SHA-256", "--tls12")
	if s := r.first("register"); s == nil || s["ok"] != false || s.str("condition") != "conflict" {
		t.Errorf("second registration of %s: %v, want a conflict error\n%s", newUser, s, r)
	}
}
