package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestFederationPeerRestart: while alice on a writes to bob on b, b is
// stopped and started again. Every message alice sent is either delivered
// to bob (live, or from offline storage when he logs in again) or comes
// back to her as remote-server-timeout / remote-server-not-found; none is
// lost. Afterwards the streams come back by themselves, both ways.
// The streams are bidirectional (XEP-0288): in one run the restarted
// server b connected first, so alice's messages reach it over b's own
// stream; in the other a connected first.
func TestFederationPeerRestart(t *testing.T) {
	integration(t)
	for _, first := range []string{"a", "b"} {
		t.Run(first+" connects first", func(t *testing.T) { peerRestart(t, first == "b") })
	}
}

func peerRestart(t *testing.T, bFirst bool) {
	pki := newPKI(t)
	pa := fedPeer{"a" + randHex(3) + ".example", loopbackIP()}
	pb := fedPeer{"b" + randHex(3) + ".example", loopbackIP()}
	a := startFederated(t, pki, pa, false, pb)
	b := startFederated(t, pki, pb, false, pa)
	a.AddUser("alice", "alice-password")
	b.AddUser("bob", "bob-password")
	alice := online(t, a, "alice", "alice-password", loginOpts{})
	bob := online(t, b, "bob", "bob-password", loginOpts{})
	aj, bj := alice.JID.Bare().String(), bob.JID.Bare().String()
	if bFirst {
		bob.Send(fmt.Sprintf("<message to='%s' type='chat'><body>first</body></message>", aj))
		alice.Expect("bob's first message", isMessage(bj, "first"))
		b.WaitLog("bidi=true")
	}

	sent := 0
	send := func() {
		alice.Send(fmt.Sprintf("<message to='%s' id='p%d' type='chat'><body>p%d</body></message>", bj, sent, sent))
		sent++
	}
	burst := func(n int) {
		var sb strings.Builder
		for range n {
			fmt.Fprintf(&sb, "<message to='%s' id='p%d' type='chat'><body>p%d</body></message>", bj, sent, sent)
			sent++
		}
		alice.WriteRaw(sb.String())
	}
	isP := func(typ string) func(*elem) bool {
		return func(e *elem) bool { return strings.HasPrefix(e.Attr("id"), "p") && e.Attr("type") == typ }
	}
	fate := map[string][]string{}
	// The conversation runs...
	for range 10 {
		send()
	}
	for range 10 {
		e := bob.Expect("alice's message before the restart", isP("chat"))
		fate[e.Attr("id")] = append(fate[e.Attr("id")], "live")
	}
	bob.Send(fmt.Sprintf("<message to='%s' type='chat'><body>before</body></message>", aj))
	alice.Expect("bob's message before the restart", isMessage(bj, "before"))

	// ...while b shuts down...
	stopped := make(chan int, 1)
	go func() {
		time.Sleep(30 * time.Millisecond) // with alice's messages in flight
		code, _ := b.stop()
		stopped <- code
	}()
	for done := false; !done; {
		select {
		case code := <-stopped:
			if code != 0 {
				t.Errorf("b exited with %d", code)
			}
			done = true
		case <-time.After(2 * time.Millisecond):
			burst(5)
		}
	}
	during := sent
	// ...and is down.
	for range 5 {
		send()
	}
	for e, ok := bob.wait(isP("chat"), time.Second); ok; e, ok = bob.wait(isP("chat"), time.Second) {
		fate[e.Attr("id")] = append(fate[e.Attr("id")], "live")
	}
	outage := 0
	for e, ok := alice.wait(isP("error"), 2*time.Second); ok; e, ok = alice.wait(isP("error"), 2*time.Second) {
		c := e.ErrorCondition()
		fate[e.Attr("id")] = append(fate[e.Attr("id")], c)
		if c == "remote-server-timeout" || c == "remote-server-not-found" {
			outage++
		}
	}
	if outage < 5 {
		t.Errorf("%d messages bounced during the outage, want at least the 5 sent while b was down", outage)
	}

	// b comes back: bob logs in and gets what was stored for him, and the
	// streams re-open both ways without anyone's help.
	b.WriteConfig(b.opts)
	b.start()
	bob = online(t, b, "bob", "bob-password", loginOpts{})
	for e, ok := bob.wait(isP("chat"), 2*time.Second); ok; e, ok = bob.wait(isP("chat"), 2*time.Second) {
		fate[e.Attr("id")] = append(fate[e.Attr("id")], "offline")
	}
	alice.Send(fmt.Sprintf("<message to='%s' type='chat'><body>are you back?</body></message>", bj))
	bob.Expect("alice's message after the restart", isMessage(aj, "are you back?"))
	bob.Send(fmt.Sprintf("<message to='%s' type='chat'><body>yes</body></message>", aj))
	alice.Expect("bob's message after the restart", isMessage(bj, "yes"))

	counts := map[string]int{}
	for i := range sent {
		id := fmt.Sprintf("p%d", i)
		f := fate[id]
		switch {
		case len(f) == 0:
			t.Errorf("message %s was lost: neither delivered nor bounced", id)
		case len(f) > 1:
			t.Errorf("message %s: %v, want one fate", id, f)
		case f[0] == "live" || f[0] == "offline" || f[0] == "remote-server-timeout" || f[0] == "remote-server-not-found":
			counts[f[0]]++
		default:
			t.Errorf("message %s: %s", id, f[0])
		}
	}
	t.Logf("%d messages, %d of them sent from just before b's SIGTERM until it exited: %v", sent, during-10, counts)
}
