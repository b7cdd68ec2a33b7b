package integration

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// TestVirtualHosts: one aldis serves two domains. Each has its own
// accounts (alice@one and alice@two are different people), its own
// certificate (chosen by SNI), its own chat service, and users of both talk
// and subscribe to each other as local users.
func TestVirtualHosts(t *testing.T) {
	integration(t)
	pki := newPKI(t)
	d1, d2 := "one"+randHex(3)+".example", "two"+randHex(3)+".example"
	cert2, key2 := pki.issue(t, false, d2, "conference."+d2)
	s := startServer(t, serverOpts{Domain: d1, Domains: []string{d2}, Extra: fmt.Sprintf(`
[[tls.host]]
domain = %q
cert_file = %q
key_file = %q
`, d2, cert2, key2)})
	s.AddUser("alice", "alice-password")
	s.AddUser("bob@"+d2, "bob-password")
	s.AddUser("alice@"+d2, "another-password")
	out, _, _ := s.User("", "list")
	for _, u := range []string{"alice@" + d1, "bob@" + d2, "alice@" + d2} {
		if !containsLine(out, u) {
			t.Errorf("aldis user list lacks %s:\n%s", u, out)
		}
	}
	if _, errOut, code := s.User("pw-pw-pw\n", "add", "eve@elsewhere.example"); code == 0 || !strings.Contains(errOut, "not in a domain served") {
		t.Errorf("adding a user of a domain not served: exit %d, %s", code, errOut)
	}

	// SNI picks the host's certificate: d2's verifies against the test CA.
	roots := x509.NewCertPool()
	ca, err := os.ReadFile(pki.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots.AppendCertsFromPEM(ca)
	c, err := tls.Dial("tcp", s.TLSAddr, &tls.Config{ServerName: d2, RootCAs: roots, NextProtos: []string{"xmpp-client"}})
	if err != nil {
		t.Fatalf("direct TLS to %s: %v", d2, err)
	}
	c.Close()
	c, err = tls.Dial("tcp", s.TLSAddr, &tls.Config{ServerName: d1, InsecureSkipVerify: true, NextProtos: []string{"xmpp-client"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ConnectionState().PeerCertificates[0].VerifyHostname(d1); err != nil {
		t.Errorf("%s got the wrong certificate: %v", d1, err)
	}
	c.Close()

	// Accounts are per host.
	if _, err := s.connect(t, "alice@"+d2, "alice-password", loginOpts{}); err == nil {
		t.Error("alice@one's password opened alice@two's account")
	}
	alice := online(t, s, "alice", "alice-password", loginOpts{})
	alice2 := online(t, s, "alice@"+d2, "another-password", loginOpts{})
	bob := online(t, s, "bob@"+d2, "bob-password", loginOpts{})
	if alice2.JID.Domain().String() != d2 || bob.JID.Domain().String() != d2 {
		t.Fatalf("bound %s and %s, want users of %s", alice2.JID, bob.JID, d2)
	}
	exchange(t, alice, bob)
	alice2.Send(fmt.Sprintf("<message to='%s' type='chat'><body>same name, other host</body></message>", alice.JID.Bare()))
	alice.Expect("alice@two's message", isMessage(alice2.JID.Bare().String(), "same name, other host"))

	// Each host has its chat service, and lists only its own.
	items := bob.IQResult("get", d2, "<query xmlns='http://jabber.org/protocol/disco#items'/>")
	if got := items.String(); !strings.Contains(got, "conference."+d2) || strings.Contains(got, "conference."+d1) {
		t.Errorf("%s's disco#items: %s", d2, got)
	}
	room := "room@conference." + d2
	createRoom(bob, room, "bob")
	enterRoom(alice, room, "alice", "")
	bob.Expect("alice's arrival", isPresence("", room+"/alice"))
	alice.Send(fmt.Sprintf("<message to='%s' type='groupchat'><body>hello from %s</body></message>", room, d1))
	bob.Expect("alice's groupchat", isMessage(room+"/alice", "hello from "+d1))

	// A stream to a domain not served is refused.
	raw, err := net.Dial("tcp", s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	fmt.Fprintf(raw, "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='elsewhere.example' version='1.0'>")
	raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, _ := io.ReadAll(raw)
	if !strings.Contains(string(b), "host-unknown") {
		t.Errorf("stream to elsewhere.example: %s", b)
	}
}

// TestVirtualHostFederation: the second domain of an aldis federates with
// another aldis under its own name and certificate (SASL EXTERNAL both
// ways), next to the first.
func TestVirtualHostFederation(t *testing.T) {
	integration(t)
	pki := newPKI(t)
	ip := loopbackIP()
	p1 := fedPeer{"one" + randHex(3) + ".example", ip}
	p2 := fedPeer{"two" + randHex(3) + ".example", ip}
	pb := fedPeer{"b" + randHex(3) + ".example", loopbackIP()}
	cert1, key1 := pki.issue(t, false, p1.Domain, "conference."+p1.Domain)
	cert2, key2 := pki.issue(t, false, p2.Domain, "conference."+p2.Domain)
	a := startServer(t, serverOpts{Domain: p1.Domain, Domains: []string{p2.Domain}, CertFile: cert1, KeyFile: key1,
		Extra: s2sConfig(p1, pki.CAFile, pb) + fmt.Sprintf(`
[[tls.host]]
domain = %q
cert_file = %q
key_file = %q
`, p2.Domain, cert2, key2)})
	b := startFederated(t, pki, pb, false, p1, p2)
	a.AddUser("alice", "alice-password")
	a.AddUser("carol@"+p2.Domain, "carol-password")
	b.AddUser("bob", "bob-password")
	alice := online(t, a, "alice", "alice-password", loginOpts{})
	carol := online(t, a, "carol@"+p2.Domain, "carol-password", loginOpts{})
	bob := online(t, b, "bob", "bob-password", loginOpts{})
	exchange(t, carol, bob)
	bob.Send(fmt.Sprintf("<message to='%s' type='chat'><body>hi alice</body></message>", alice.JID.Bare()))
	alice.Expect("bob's message to the first domain", isMessage(bob.JID.Bare().String(), "hi alice"))
	alice.Send(fmt.Sprintf("<message to='%s' type='chat'><body>hi bob</body></message>", bob.JID.Bare()))
	bob.Expect("alice's answer", isMessage(alice.JID.Bare().String(), "hi bob"))
	// Each domain proved itself with its own certificate: carol's to b
	// when a connected as p2, and alice's when b connected to p1 (the
	// streams are bidirectional, so each pair has one connection).
	b.WaitLog("from=" + p2.Domain + " to=" + pb.Domain + " method=certificate")
	b.WaitLog("local=" + pb.Domain + " remote=" + p1.Domain + " tls=true peer_verified=true")
	a.WaitLog("from=" + pb.Domain + " to=" + p1.Domain + " method=certificate")
}
