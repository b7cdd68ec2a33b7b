package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSecurityLabels: with the shipped example policy, a SECRET user and
// an UNCLASSIFIED user use slixmpp (with its XEP-0258 plugin) one to one
// and in a room. Each sees only what their clearance grants, live, in the
// room history and in the room archive; a SECRET message to the
// UNCLASSIFIED user bounces with forbidden and nothing leaks; labels on
// presence and iq are refused; every refusal is in the audit log.
func TestSecurityLabels(t *testing.T) {
	integration(t)
	requireSlixmpp(t)
	policy, err := filepath.Abs("../policy.toml")
	if err != nil {
		t.Fatal(err)
	}
	audit := filepath.Join(t.TempDir(), "audit.log")
	srv := startServer(t, serverOpts{PolicyFile: policy, AuditLog: audit})
	srv.AddUser("alice", "alice-secret")
	srv.AddUser("bob", "bob-secret")
	if out, errOut, code := srv.User("", "clearance", "alice", "SECRET"); code != 0 || !strings.Contains(out, "SECRET") {
		t.Fatalf("aldis user clearance: %d %s %s", code, out, errOut)
	}
	r := runScript(t, "testdata/slixmpp_labels.py", "--addr", srv.Addr, "--debug",
		"--alice", srv.JID("alice"), "--alice-password", "alice-secret",
		"--bob", srv.JID("bob"), "--bob-password", "bob-secret")
	if !r.ok() {
		t.Fatalf("slixmpp scenario did not finish:\n%s", r)
	}
	get := func(name string, match ...string) step {
		t.Helper()
		for _, s := range r.all(name) {
			if len(match) == 0 || s.str(match[0]) == match[1] {
				return s
			}
		}
		t.Fatalf("no %s %v:\n%s", name, match, r)
		return nil
	}
	strs := func(s step, field string) []string {
		var out []string
		if l, ok := s[field].([]any); ok {
			for _, v := range l {
				out = append(out, v.(string))
			}
		}
		return out
	}
	same := func(what string, got []string, want ...string) {
		t.Helper()
		if !slices.Equal(got, want) {
			t.Errorf("%s = %q, want %q", what, got, want)
		}
	}

	if d := get("disco"); d["label"] != true || d["catalog"] != true {
		t.Errorf("server disco %v", d)
	}
	same("alice's catalog", strs(get("catalog", "who", "alice"), "selectors"),
		"UNCLASSIFIED", "Classified|RESTRICTED", "Classified|CONFIDENTIAL", "Classified|SECRET")
	same("bob's catalog", strs(get("catalog", "who", "bob"), "selectors"), "UNCLASSIFIED")
	same("bob's room catalog", strs(get("room_catalog"), "selectors"), "UNCLASSIFIED")

	if s := get("secret_to_bob"); s.str("condition") != "forbidden" || s.str("type") != "auth" || s["leaked"] != false {
		t.Errorf("SECRET to bob: %v", s)
	}
	if s := get("bob_got_secret"); s["count"] != 0.0 {
		t.Errorf("bob received %v SECRET messages", s["count"])
	}
	if s := get("bob_got_open"); s.str("marking") != "NATO UNCLASSIFIED" {
		t.Errorf("unlabelled message marked %q, want the default label's marking", s.str("marking"))
	}
	if s := get("bob_sends_secret"); s.str("condition") != "forbidden" {
		t.Errorf("bob sending SECRET: %v", s)
	}
	if s := get("labelled_presence"); s.str("condition") != "bad-request" {
		t.Errorf("labelled presence: %v", s)
	}
	if s := get("labelled_iq"); s.str("condition") != "bad-request" {
		t.Errorf("labelled iq: %v", s)
	}

	// The room: alice's SECRET message reaches only alice, and its marking
	// is the policy's, not the "UNCLASSIFIED" alice's client put on it.
	a := get("room_live", "who", "alice")
	same("alice's room messages", strs(a, "bodies"), "open-1", "open-2", "secret-1")
	same("alice's markings", strs(a, "markings"), "NATO SECRET", "NATO UNCLASSIFIED")
	b := get("room_live", "who", "bob")
	same("bob's room messages", strs(b, "bodies"), "open-1", "open-2")
	same("bob's markings", strs(b, "markings"), "NATO UNCLASSIFIED")
	if s := get("alice_errors"); s["count"] != 0.0 {
		t.Errorf("the sender got %v errors for occupants skipped in fan-out", s["count"])
	}
	same("alice's history", strs(get("history", "who", "alice"), "bodies"), "secret-1", "open-1", "open-2")
	same("bob's history", strs(get("history", "who", "bob"), "bodies"), "open-1", "open-2")
	same("alice's archive", strs(get("archive", "who", "alice"), "bodies"), "secret-1", "open-1", "open-2")
	same("bob's archive", strs(get("archive", "who", "bob"), "bodies"), "open-1", "open-2")

	// (The labelled iq carries two children, which the stream layer
	// refuses as bad-request before labels are looked at.)
	log, err := os.ReadFile(audit)
	if err != nil {
		t.Fatal(err)
	}
	for _, point := range []string{`"point":"delivery"`, `"point":"ingress"`, `"point":"presence"`, `"point":"fanout"`, `"point":"history"`, `"point":"archive"`} {
		if !strings.Contains(string(log), point) {
			t.Errorf("audit log lacks %s", point)
		}
	}
	if strings.Contains(string(log), "secret plan") || strings.Contains(string(log), "secret-1") {
		t.Error("the audit log holds message text")
	}
}

// ESS labels of the example policy (NATO, 1.3.26.1.3.1), as clients send them.
const (
	essSecret       = "MQoCAQQGBSsaAQMB"
	essConfidential = "MQoCAQMGBSsaAQMB"
)

func secLabel(ess string) string {
	return "<securitylabel xmlns='urn:xmpp:sec-label:0'><label><esssecuritylabel xmlns='urn:xmpp:sec-label:ess:0'>" +
		ess + "</esssecuritylabel></label></securitylabel>"
}

// isForbidden matches a sanitised label refusal: a message error with
// forbidden, of type auth, carrying no body and no label.
func isForbidden(id string) func(*elem) bool {
	return func(e *elem) bool {
		return e.XMLName.Local == "message" && e.Attr("type") == "error" && e.Attr("id") == id &&
			e.ErrorCondition() == "forbidden" && e.Child("", "error").Attr("type") == "auth" &&
			e.Child("", "body") == nil && e.Child("urn:xmpp:sec-label:0", "securitylabel") == nil
	}
}

// TestFederationLabels: two Aldis servers with the example policy federate;
// each gives the other a clearance in [[s2s.peer]]. Nothing crosses the
// boundary that the receiving side's peer clearance does not grant, in
// either direction, 1:1 or in a room with a remote occupant.
func TestFederationLabels(t *testing.T) {
	integration(t)
	policy, err := filepath.Abs("../policy.toml")
	if err != nil {
		t.Fatal(err)
	}
	pki := newPKI(t)
	pa := fedPeer{"a" + randHex(3) + ".example", loopbackIP()}
	pb := fedPeer{"b" + randHex(3) + ".example", loopbackIP()}
	peer := func(domain, clearance string) string {
		return fmt.Sprintf("\n[[s2s.peer]]\ndomain = %q\nclearance = %q\n[[s2s.peer]]\ndomain = %q\nclearance = %q\n",
			domain, clearance, "conference."+domain, clearance)
	}
	start := func(self, other fedPeer, clearance string) *server {
		cert, key := pki.issue(t, false, self.Domain, "conference."+self.Domain)
		return startServer(t, serverOpts{Domain: self.Domain, CertFile: cert, KeyFile: key, PolicyFile: policy,
			Extra: s2sConfig(self, pki.CAFile, other) + peer(other.Domain, clearance)})
	}
	// a trusts b with CONFIDENTIAL; b trusts a with SECRET.
	a := start(pa, pb, "CONFIDENTIAL")
	b := start(pb, pa, "SECRET")
	a.AddUser("alice", "alice-password")
	b.AddUser("bob", "bob-password")
	for _, s := range []*server{a, b} {
		who := "alice"
		if s == b {
			who = "bob"
		}
		if _, errOut, code := s.User("", "clearance", who, "SECRET"); code != 0 {
			t.Fatalf("aldis user clearance: %s", errOut)
		}
	}
	alice := online(t, a, "alice", "alice-password", loginOpts{})
	bob := online(t, b, "bob", "bob-password", loginOpts{})
	aj, bj := alice.JID.Bare().String(), bob.JID.Bare().String()

	// Egress: a sends b nothing above CONFIDENTIAL.
	alice.Send(fmt.Sprintf("<message to='%s' type='chat' id='s1'><body>secret for bob</body>%s</message>", bj, secLabel(essSecret)))
	alice.Expect("egress refusal", isForbidden("s1"))
	alice.Send(fmt.Sprintf("<message to='%s' type='chat' id='c1'><body>confidential for bob</body>%s</message>", bj, secLabel(essConfidential)))
	got := bob.Expect("CONFIDENTIAL across", isMessage(aj, "confidential for bob"))
	if dm := got.Path("securitylabel", "displaymarking"); dm == nil || dm.Text != "NATO CONFIDENTIAL" {
		t.Errorf("label across the boundary: %v", got.Child("urn:xmpp:sec-label:0", "securitylabel"))
	}
	bob.ExpectNone("the SECRET message", isMessage(aj, "secret for bob"), 300*time.Millisecond)

	// Ingress: b may send SECRET (b's view of a), but a accepts only
	// CONFIDENTIAL from b: the refusal travels back to bob.
	bob.Send(fmt.Sprintf("<message to='%s' type='chat' id='s2'><body>secret for alice</body>%s</message>", aj, secLabel(essSecret)))
	bob.Expect("ingress refusal from the far side", isForbidden("s2"))
	bob.Send(fmt.Sprintf("<message to='%s' type='chat' id='u2'><body>plain for alice</body></message>", aj))
	alice.Expect("an unlabelled message, stamped by b", isMessage(bj, "plain for alice"))
	alice.ExpectNone("the SECRET message", isMessage(bj, "secret for alice"), 300*time.Millisecond)

	// A remote occupant has the clearance of their server.
	room := "ops@conference." + pa.Domain
	createRoom(alice, room, "alice")
	enterRoom(bob, room, "bob", "")
	alice.Expect("bob's arrival", isPresence("", room+"/bob"))
	alice.Send(fmt.Sprintf("<message to='%s' type='groupchat' id='g1'><body>room secret</body>%s</message>", room, secLabel(essSecret)))
	alice.Send(fmt.Sprintf("<message to='%s' type='groupchat' id='g2'><body>room confidential</body>%s</message>", room, secLabel(essConfidential)))
	alice.Expect("alice's own SECRET", isMessage(room+"/alice", "room secret"))
	bob.Expect("the CONFIDENTIAL room message", isMessage(room+"/alice", "room confidential"))
	bob.ExpectNone("the SECRET room message", isMessage(room+"/alice", "room secret"), 300*time.Millisecond)
}

// TestSecurityPolicyReload: SIGHUP applies an edited policy file to the
// running server, and a broken one is refused with the old one kept.
func TestSecurityPolicyReload(t *testing.T) {
	integration(t)
	src, err := os.ReadFile("../policy.toml")
	if err != nil {
		t.Fatal(err)
	}
	policy := filepath.Join(t.TempDir(), "policy.toml")
	if err := os.WriteFile(policy, src, 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, serverOpts{PolicyFile: policy})
	srv.AddUser("alice", "alice-password")
	srv.AddUser("bob", "bob-password")
	if _, errOut, code := srv.User("", "clearance", "alice", "SECRET"); code != 0 {
		t.Fatal(errOut)
	}
	alice := online(t, srv, "alice", "alice-password", loginOpts{})
	bob := online(t, srv, "bob", "bob-password", loginOpts{})
	send := func(id string) {
		alice.Send(fmt.Sprintf("<message to='%s' type='chat' id='%s'><body>%s</body>%s</message>", bob.JID.Bare(), id, id, secLabel(essSecret)))
	}
	send("before")
	alice.Expect("refusal under the old policy", isForbidden("before"))

	// A broken policy is refused; the running one stays.
	if err := os.WriteFile(policy, []byte("[[policy]]\nname = \"NATO\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv.Signal(syscall.SIGHUP)
	srv.WaitLog("security policy has errors")
	send("broken")
	alice.Expect("refusal under the kept policy", isForbidden("broken"))

	// Users without a clearance of their own now default to SECRET.
	edited := strings.Replace(string(src), `default_clearance = "UNCLASSIFIED"`, `default_clearance = "SECRET"`, 1)
	if edited == string(src) {
		t.Fatal("policy.toml no longer has the default_clearance line this test edits")
	}
	if err := os.WriteFile(policy, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	srv.Signal(syscall.SIGHUP)
	srv.WaitLog("reloaded the security policy")
	send("after")
	bob.Expect("SECRET delivered under the new policy", isMessage(alice.JID.String(), "after"))
}
