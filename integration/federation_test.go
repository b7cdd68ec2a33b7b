package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testPKI is a certificate authority made for one test, issuing
// certificates for the federating servers (no openssl needed).
type testPKI struct {
	dir    string
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	CAFile string
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Aldis test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	p := &testPKI{dir: t.TempDir(), ca: ca, caKey: key}
	p.CAFile = filepath.Join(p.dir, "ca.pem")
	writePEM(t, p.CAFile, "CERTIFICATE", der)
	return p
}

// issue writes a certificate and key for domains (the first names the
// files); selfSigned skips the CA, so peers cannot verify it.
func (p *testPKI) issue(t *testing.T, selfSigned bool, domains ...string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: domains[0]}, DNSNames: domains,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	parent, signer := p.ca, p.caKey
	if selfSigned {
		parent, signer = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile = filepath.Join(p.dir, domains[0]+".crt")
	keyFile = filepath.Join(p.dir, domains[0]+".key")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "PRIVATE KEY", kb)
	return certFile, keyFile
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
}

// loopbackIP returns a random address in 127/8: Linux answers on all of
// them without aliases, so federating servers can each use port 5269
// without clashing with tests running in parallel.
func loopbackIP() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("127.%d.%d.%d", b[0]%250+2, b[1], b[2]%250+2)
}

// fedPeer is one side of a federation test: its domain, s2s address and,
// for aldis, its static routes to the others.
type fedPeer struct {
	Domain, IP string
}

func (p fedPeer) s2sAddr() string { return p.IP + ":5269" }

// s2sConfig is the [s2s] table of an aldis federating with others; the
// MUC domain of each peer is routed with it.
func s2sConfig(self fedPeer, caFile string, others ...fedPeer) string {
	var hosts []string
	for _, o := range others {
		hosts = append(hosts, fmt.Sprintf("%q = %q", o.Domain, o.s2sAddr()), fmt.Sprintf("%q = %q", "conference."+o.Domain, o.s2sAddr()))
	}
	return fmt.Sprintf("\n[s2s]\nenabled = true\nlisten = [%q]\nca_file = %q\nconnect_timeout = \"10s\"\nhosts = { %s }\n",
		self.s2sAddr(), caFile, strings.Join(hosts, ", "))
}

// startFederated starts an aldis for self with a certificate from pki
// (self-signed when selfSigned) that routes to others.
func startFederated(t *testing.T, pki *testPKI, self fedPeer, selfSigned bool, others ...fedPeer) *server {
	t.Helper()
	cert, key := pki.issue(t, selfSigned, self.Domain, "conference."+self.Domain)
	return startServer(t, serverOpts{Domain: self.Domain, CertFile: cert, KeyFile: key,
		Extra: s2sConfig(self, pki.CAFile, others...)})
}

// exchange checks 1:1 messages both ways and a mutual presence
// subscription between a (a local user) and b (a user of the other server).
func exchange(t *testing.T, a, b *client) {
	t.Helper()
	aj, bj := a.JID.Bare().String(), b.JID.Bare().String()
	a.Send(fmt.Sprintf("<message to='%s' type='chat' id='%s'><body>hello from %s</body></message>", bj, nextID("m"), aj))
	b.Expect("a's message over s2s", isMessage(aj, "hello from "+aj))
	b.Send(fmt.Sprintf("<message to='%s' type='chat' id='%s'><body>hello from %s</body></message>", aj, nextID("m"), bj))
	a.Expect("b's message over s2s", isMessage(bj, "hello from "+bj))

	// a subscribes to b; b approves and subscribes back; a approves.
	a.Send(fmt.Sprintf("<presence to='%s' type='subscribe'/>", bj))
	b.Expect("a's subscription request", isPresence("subscribe", aj))
	b.Send(fmt.Sprintf("<presence to='%s' type='subscribed'/>", aj))
	a.Expect("b's approval", func(e *elem) bool {
		return isRosterPush(bj)(e) && e.Child(nsRoster, "query").Child(nsRoster, "item").Attr("subscription") == "to"
	})
	a.Expect("b's presence after approval", isPresence("", bj))
	b.Send(fmt.Sprintf("<presence to='%s' type='subscribe'/>", aj))
	a.Expect("b's subscription request", isPresence("subscribe", bj))
	a.Send(fmt.Sprintf("<presence to='%s' type='subscribed'/>", bj))
	b.Expect("a's presence after approval", isPresence("", aj))
	a.Expect("both-way subscription", func(e *elem) bool {
		return isRosterPush(bj)(e) && e.Child(nsRoster, "query").Child(nsRoster, "item").Attr("subscription") == "both"
	})
}

// Two aldis servers with certificates from one CA: SASL EXTERNAL both ways.
func TestFederationAldis(t *testing.T) {
	integration(t)
	pki := newPKI(t)
	pa := fedPeer{"a" + randHex(3) + ".example", loopbackIP()}
	pb := fedPeer{"b" + randHex(3) + ".example", loopbackIP()}
	a := startFederated(t, pki, pa, false, pb)
	b := startFederated(t, pki, pb, false, pa)
	a.AddUser("alice", "alice-password")
	b.AddUser("bob", "bob-password")
	alice := online(t, a, "alice", "alice-password", loginOpts{})
	bob := online(t, b, "bob", "bob-password", loginOpts{})
	exchange(t, alice, bob)
	// alice wrote first: a connected to b, asked for a bidirectional
	// stream (XEP-0288) and proved its name with its certificate; b
	// answers on that stream and verified a's certificate.
	b.WaitLog("from=" + pa.Domain + " to=" + pb.Domain + " method=certificate")
	a.WaitLog("local=" + pa.Domain + " remote=" + pb.Domain + " tls=true peer_verified=true bidi=true")
	b.WaitLog("incoming stream is bidirectional")

	// bob joins alice's room on a.
	room := "room@conference." + pa.Domain
	createRoom(alice, room, "alice")
	enterRoom(bob, room, "bob", "")
	alice.Expect("bob's arrival", isPresence("", room+"/bob"))
	bob.Send(fmt.Sprintf("<message to='%s' type='groupchat'><body>hi room</body></message>", room))
	alice.Expect("bob's groupchat", isMessage(room+"/bob", "hi room"))
	bob.Expect("bob's own groupchat echoed", isMessage(room+"/bob", "hi room"))
}

// A self-signed certificate does not verify: the servers fall back to
// Server Dialback.
func TestFederationDialback(t *testing.T) {
	integration(t)
	pki := newPKI(t)
	pa := fedPeer{"a" + randHex(3) + ".example", loopbackIP()}
	pb := fedPeer{"b" + randHex(3) + ".example", loopbackIP()}
	a := startFederated(t, pki, pa, true, pb)
	b := startFederated(t, pki, pb, true, pa)
	a.AddUser("alice", "alice-password")
	b.AddUser("bob", "bob-password")
	alice := online(t, a, "alice", "alice-password", loginOpts{})
	bob := online(t, b, "bob", "bob-password", loginOpts{})
	exchange(t, alice, bob)
	b.WaitLog("from=" + pa.Domain + " to=" + pb.Domain + " method=dialback")
	b.WaitLog("incoming stream is bidirectional")
}

// A domain nobody serves: the message comes back as an error.
func TestFederationUnreachable(t *testing.T) {
	integration(t)
	pki := newPKI(t)
	pa := fedPeer{"a" + randHex(3) + ".example", loopbackIP()}
	gone := fedPeer{"gone.example", loopbackIP()} // nothing listens there
	a := startFederated(t, pki, pa, false, gone)
	a.AddUser("alice", "alice-password")
	alice := online(t, a, "alice", "alice-password", loginOpts{})
	alice.Send("<message to='x@gone.example' id='u1'><body>anyone?</body></message>")
	e := alice.Expect("the bounce", func(e *elem) bool { return e.Attr("id") == "u1" && e.Attr("type") == "error" })
	if c := e.ErrorCondition(); c != "remote-server-not-found" {
		t.Errorf("bounce condition %q, want remote-server-not-found", c)
	}
}

// TestFederationThroughput measures messages per second from a user on
// one aldis to a user on another over one s2s stream (ALDIS_BENCH=1).
func TestFederationThroughput(t *testing.T) {
	integration(t)
	if os.Getenv("ALDIS_BENCH") == "" {
		t.Skip("a measurement: set ALDIS_BENCH=1")
	}
	pki := newPKI(t)
	pa := fedPeer{"a" + randHex(3) + ".example", loopbackIP()}
	pb := fedPeer{"b" + randHex(3) + ".example", loopbackIP()}
	// Self-signed certificates (dialback) and no c2s byte rate: the
	// client's rate limit would otherwise be what is measured.
	a := startServer(t, serverOpts{Domain: pa.Domain, LogLevel: "info", Unthrottled: true, Extra: s2sConfig(pa, pki.CAFile, pb)})
	b := startServer(t, serverOpts{Domain: pb.Domain, LogLevel: "info", Unthrottled: true, Extra: s2sConfig(pb, pki.CAFile, pa)})
	a.AddUser("alice", "alice-password")
	b.AddUser("bob", "bob-password")
	alice := online(t, a, "alice", "alice-password", loginOpts{})
	bob := online(t, b, "bob", "bob-password", loginOpts{})
	// Warm up: the stream is open and authenticated.
	alice.Send(fmt.Sprintf("<message to='%s' type='chat'><body>warm</body></message>", bob.JID.Bare()))
	bob.Expect("warm-up", isMessage(alice.JID.Bare().String(), "warm"))
	// Windows of 500: bob's client reads slower than the servers deliver,
	// and more than c2s.send_queue waiting for it would end its stream.
	const n, window = 20000, 500
	msg := fmt.Sprintf("<message to='%s' type='chat'><body>m</body></message>", bob.JID.Bare())
	chunk := strings.Repeat(msg, window)
	start := time.Now()
	for w := range n / window {
		alice.WriteRaw(chunk)
		for i := range window {
			bob.Expect(fmt.Sprintf("message %d", w*window+i), isMessage(alice.JID.Bare().String(), "m"))
		}
	}
	took := time.Since(start)
	t.Logf("%d messages over s2s in %v: %.0f messages/s", n, took, float64(n)/took.Seconds())
}
