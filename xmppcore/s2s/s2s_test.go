package s2s

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log/slog"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// fakeRouter records what a Manager injects.
type fakeRouter struct{ ch chan string }

func (f *fakeRouter) Inject(st *wire.Element, from, to jid.JID) {
	f.ch <- from.String() + " " + to.String() + " " + st.String()
}

func (f *fakeRouter) expect(t *testing.T, parts ...string) string {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case s := <-f.ch:
			ok := true
			for _, p := range parts {
				ok = ok && strings.Contains(s, p)
			}
			if ok {
				return s
			}
			t.Logf("skipping %s", s)
		case <-deadline:
			t.Fatalf("nothing injected with %q", parts)
			return ""
		}
	}
}

// testCA issues certificates; nil issues self-signed ones.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newCA(t *testing.T) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &testCA{cert: c, key: key}
}

func (ca *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

func issue(t *testing.T, ca *testCA, domains ...string) *tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: domains[0]},
		DNSNames: domains, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	parent, signer := tmpl, key
	if ca != nil {
		parent, signer = ca.cert, ca.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

type node struct {
	domain string
	m      *Manager
	r      *fakeRouter
	addr   string
}

// pairOf starts two managers for a.test and b.test that route to each other.
func pairOf(t *testing.T, certA, certB *tls.Certificate, roots *x509.CertPool, tweak func(*Config)) (*node, *node) {
	t.Helper()
	mk := func(domain string, cert *tls.Certificate) *node {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		n := &node{domain: domain, r: &fakeRouter{ch: make(chan string, 100)}, addr: ln.Addr().String()}
		cfg := Config{
			Local:       func(d string) bool { return d == domain },
			Router:      n.r,
			Certificate: func(string) *tls.Certificate { return cert },
			Roots:       roots, RequireTLS: true, Hosts: map[string]string{},
			ConnectTimeout: 5 * time.Second, Queue: 10,
			Log: slog.New(slog.NewTextHandler(tlog{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		}
		if tweak != nil {
			tweak(&cfg)
		}
		n.m = New(cfg)
		go n.m.Serve(ln, false)
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := n.m.Shutdown(ctx); err != nil {
				t.Errorf("shutdown %s: %v", domain, err)
			}
		})
		return n
	}
	a, b := mk("a.test", certA), mk("b.test", certB)
	a.m.cfg.Hosts["b.test"] = b.addr
	b.m.cfg.Hosts["a.test"] = a.addr
	return a, b
}

func msg(from, to, id string) (*wire.Element, jid.JID, jid.JID) {
	el, _ := wire.ParseElement(`<message from='` + from + `' to='` + to + `' id='` + id + `' type='chat'><body>hi</body></message>`)
	return el, jid.MustParse(from), jid.MustParse(to)
}

func TestCertificates(t *testing.T) {
	ca := newCA(t)
	a, b := pairOf(t, issue(t, ca, "a.test"), issue(t, ca, "b.test"), ca.pool(), nil)
	a.m.Send(msg("alice@a.test/x", "bob@b.test", "m1"))
	got := b.r.expect(t, "alice@a.test/x bob@b.test", "id='m1'", "<body>hi</body>")
	if strings.Contains(got, "jabber:") {
		t.Errorf("namespace leaked: %s", got)
	}
	b.m.Send(msg("bob@b.test", "alice@a.test", "m2"))
	a.r.expect(t, "bob@b.test alice@a.test", "id='m2'")
}

func TestDialback(t *testing.T) {
	// Self-signed certificates: TLS works, identity comes from dialback.
	a, b := pairOf(t, issue(t, nil, "a.test"), issue(t, nil, "b.test"), x509.NewCertPool(), nil)
	for i := range 3 {
		a.m.Send(msg("alice@a.test", "bob@b.test", "d"+string(rune('0'+i))))
	}
	b.r.expect(t, "id='d0'")
	b.r.expect(t, "id='d1'")
	b.r.expect(t, "id='d2'")
}

func TestRequireCertificates(t *testing.T) {
	a, _ := pairOf(t, issue(t, nil, "a.test"), issue(t, nil, "b.test"), x509.NewCertPool(),
		func(c *Config) { c.RequireCertificates = true })
	a.m.Send(msg("alice@a.test", "bob@b.test", "r1"))
	a.r.expect(t, "bob@b.test alice@a.test", "id='r1'", "type='error'", "remote-server-timeout")
}

func TestUnreachable(t *testing.T) {
	a, _ := pairOf(t, issue(t, nil, "a.test"), issue(t, nil, "b.test"), nil, nil)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	a.m.cfg.Hosts["c.test"] = addr
	a.m.Send(msg("alice@a.test", "carol@c.test", "u1"))
	a.r.expect(t, "carol@c.test alice@a.test", "id='u1'", "remote-server-not-found")
}

// A peer that sends stanzas without authenticating gets a stream error.
func TestUnauthenticatedStanza(t *testing.T) {
	_, b := pairOf(t, nil, nil, nil, func(c *Config) { c.Certificate = nil; c.RequireTLS = false })
	conn, err := net.Dial("tcp", b.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, `<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' from='evil.test' to='b.test' version='1.0'>`+
		`<message from='x@evil.test' to='bob@b.test'><body>spam</body></message>`)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	out, _ := io.ReadAll(conn)
	if !strings.Contains(string(out), "not-authorized") {
		t.Fatalf("got %s", out)
	}
	select {
	case s := <-b.r.ch:
		t.Fatalf("injected %s", s)
	default:
	}
}

// A stream to a domain this server does not serve is refused.
func TestHostUnknown(t *testing.T) {
	_, b := pairOf(t, nil, nil, nil, func(c *Config) { c.Certificate = nil; c.RequireTLS = false })
	conn, err := net.Dial("tcp", b.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, `<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' to='other.test' version='1.0'>`)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	out, _ := io.ReadAll(conn)
	if !strings.Contains(string(out), "host-unknown") {
		t.Fatalf("got %s", out)
	}
}

// tlog sends a Manager's log to the test's.
type tlog struct{ t *testing.T }

func (l tlog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
