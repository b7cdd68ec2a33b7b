package integration

import (
	"bufio"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// metric reads one sample from a server's /metrics ("" when absent).
func metric(t *testing.T, s *server, name string) float64 {
	t.Helper()
	hc := &http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Get("http://" + s.AdminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

// isErrorReply matches the error answering the stanza with id.
func isErrorReply(id string) func(*elem) bool {
	return func(e *elem) bool { return e.Attr("id") == id && e.Attr("type") == "error" }
}

// TestPeeringControls: aldis a federates with b under restrictions
// (messages and presence only, no file offers, a rate limit) and refuses c
// through a wildcard entry. What a user notices: allowed messages pass both
// ways and a remote user chats in a local room; what the policy refuses
// comes back as an error naming the reason; nothing is silently lost.
func TestPeeringControls(t *testing.T) {
	integration(t)
	pki := newPKI(t)
	pa := fedPeer{"a" + randHex(3) + ".example", loopbackIP()}
	pb := fedPeer{"b" + randHex(3) + ".example", loopbackIP()}
	pc := fedPeer{"c" + randHex(3) + ".example", loopbackIP()}
	certA, keyA := pki.issue(t, false, pa.Domain, "conference."+pa.Domain)
	a := startServer(t, serverOpts{Domain: pa.Domain, CertFile: certA, KeyFile: keyA,
		Extra: s2sConfig(pa, pki.CAFile, pb, pc) + fmt.Sprintf(`default_peer = "allow"

[[s2s.peer]]
domain = "*.example"
allow = false

[[s2s.peer]]
domain = %q
auth = "certificate"
stanzas = ["message", "presence"]
deny_namespaces = ["http://jabber.org/protocol/si", "jabber:x:oob"]
rate = 20
burst = 40
`, pb.Domain)})
	b := startFederated(t, pki, pb, false, pa)
	c := startFederated(t, pki, pc, false, pa)
	a.AddUser("alice", "alice-password")
	b.AddUser("bob", "bob-password")
	c.AddUser("carol", "carol-password")
	alice := online(t, a, "alice", "alice-password", loginOpts{})
	bob := online(t, b, "bob", "bob-password", loginOpts{})
	carol := online(t, c, "carol", "carol-password", loginOpts{})
	aj, bj := alice.JID.Bare().String(), bob.JID.Bare().String()

	// Allowed: messages both ways.
	alice.Send(fmt.Sprintf("<message to='%s' type='chat'><body>hi bob</body></message>", bj))
	bob.Expect("alice's message", isMessage(aj, "hi bob"))
	bob.Send(fmt.Sprintf("<message to='%s' type='chat'><body>hi alice</body></message>", aj))
	alice.Expect("bob's message", isMessage(bj, "hi alice"))

	wantError := func(who *client, id, cond string) {
		t.Helper()
		e := who.Expect("the error for "+id, isErrorReply(id))
		if got := e.ErrorCondition(); got != cond {
			t.Errorf("%s: error %q for %s, want %q: %s", who.name, got, id, cond, e)
		}
	}
	// Refused kinds and namespaces, both ways.
	bob.Send(fmt.Sprintf("<iq type='get' to='%s' id='v1'><query xmlns='jabber:iq:version'/></iq>", alice.JID))
	wantError(bob, "v1", "not-allowed")
	alice.Send(fmt.Sprintf("<iq type='get' to='%s' id='v2'><query xmlns='jabber:iq:version'/></iq>", bob.JID))
	wantError(alice, "v2", "not-allowed")
	alice.Send(fmt.Sprintf("<message to='%s' id='o1'><body>file</body><x xmlns='jabber:x:oob'><url>http://x/f</url></x></message>", bj))
	wantError(alice, "o1", "not-allowed")
	bob.Send(fmt.Sprintf("<message to='%s' id='s1'><body>file</body><si xmlns='http://jabber.org/protocol/si' id='s'/></message>", aj))
	wantError(bob, "s1", "not-allowed")
	alice.ExpectNone("a refused file offer", func(e *elem) bool { return e.Attr("id") == "s1" }, 500*time.Millisecond)

	// The MUC path: bob joins alice's room and talks; his iq to the room is refused.
	room := "room@conference." + pa.Domain
	createRoom(alice, room, "alice")
	enterRoom(bob, room, "bob", "")
	alice.Expect("bob's arrival", isPresence("", room+"/bob"))
	bob.Send(fmt.Sprintf("<message to='%s' type='groupchat'><body>hi room</body></message>", room))
	alice.Expect("bob's groupchat", isMessage(room+"/bob", "hi room"))
	bob.Expect("bob's groupchat echoed", isMessage(room+"/bob", "hi room"))
	alice.Send(fmt.Sprintf("<message to='%s' type='groupchat'><body>hello bob</body></message>", room))
	bob.Expect("alice's groupchat", isMessage(room+"/alice", "hello bob"))
	bob.Send(fmt.Sprintf("<iq type='get' to='%s' id='d1'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>", room))
	wantError(bob, "d1", "not-allowed")

	// Denied by the wildcard: carol's server cannot open a stream; alice's
	// messages to carol bounce at once.
	alice.Send(fmt.Sprintf("<message to='%s' id='c1'><body>hi carol</body></message>", carol.JID.Bare()))
	wantError(alice, "c1", "not-allowed")
	carol.Send(fmt.Sprintf("<message to='%s' id='c2'><body>hi alice</body></message>", aj))
	e := carol.Expect("carol's bounce", isErrorReply("c2"))
	if cond := e.ErrorCondition(); !strings.HasPrefix(cond, "remote-server-") {
		t.Errorf("carol's message bounced with %q, want remote-server-timeout or -not-found", cond)
	}
	a.WaitLog("refusing a peer the peering policy denies")
	alice.ExpectNone("carol's message", isMessage(carol.JID.Bare().String(), "hi alice"), 500*time.Millisecond)

	// The rate: a burst of 150 from bob, 40 at once and 20 a second
	// beyond it. Each message either arrives or bounces with
	// resource-constraint.
	const n = 150
	var sb strings.Builder
	for i := range n {
		fmt.Fprintf(&sb, "<message to='%s' id='r%d' type='chat'><body>r%d</body></message>", aj, i, i)
	}
	bob.WriteRaw(sb.String())
	isR := func(typ string) func(*elem) bool {
		return func(e *elem) bool { return strings.HasPrefix(e.Attr("id"), "r") && e.Attr("type") == typ }
	}
	fate := map[string]string{}
	deadline := time.Now().Add(waitTimeout)
	for len(fate) < n && time.Now().Before(deadline) {
		if e, ok := alice.wait(isR("chat"), 20*time.Millisecond); ok {
			fate[e.Attr("id")] += "passed"
		}
		if e, ok := bob.wait(isR("error"), 20*time.Millisecond); ok {
			fate[e.Attr("id")] += e.ErrorCondition()
		}
	}
	passed, limited := 0, 0
	for i := range n {
		switch f := fate[fmt.Sprintf("r%d", i)]; f {
		case "passed":
			passed++
		case "resource-constraint":
			limited++
		default:
			t.Errorf("message r%d: %q, want passed or resource-constraint", i, f)
		}
	}
	t.Logf("rate 20/s, burst 40: %d of %d passed, %d bounced with resource-constraint", passed, n, limited)
	if limited == 0 || passed < 40 {
		t.Errorf("%d passed, %d limited: want at least the burst through and some limited", passed, limited)
	}

	for _, m := range []struct {
		name string
		min  float64
	}{
		{`aldis_s2s_peering_refused_total{dir="in",reason="kind"}`, 2},
		{`aldis_s2s_peering_refused_total{dir="out",reason="kind"}`, 1},
		{`aldis_s2s_peering_refused_total{dir="in",reason="namespace"}`, 1},
		{`aldis_s2s_peering_refused_total{dir="out",reason="namespace"}`, 1},
		{`aldis_s2s_peering_refused_total{dir="out",reason="denied"}`, 1},
		{`aldis_s2s_peering_refused_total{dir="in",reason="denied"}`, 1},
		{`aldis_s2s_peering_refused_total{dir="in",reason="rate"}`, float64(limited)},
	} {
		if v := metric(t, a, m.name); v < m.min {
			t.Errorf("%s = %v, want at least %v", m.name, v, m.min)
		}
	}
}
