package zh

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aldis-im/aldis/bridges/brass/brlink"
	"github.com/aldis-im/aldis/bridges/brass/relay"
)

const waitLong = 5 * time.Second

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

// run starts b and stops it when the test ends.
func run(t *testing.T, b relay.Bearer) <-chan relay.Event {
	t.Helper()
	ev, _ := runStop(t, b)
	return ev
}

// runStop is run with a function that stops b and waits for Run.
func runStop(t *testing.T, b relay.Bearer) (<-chan relay.Event, func()) {
	t.Helper()
	ev := make(chan relay.Event, 1024)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx, ev) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("Run did not return")
			}
		})
	}
	t.Cleanup(stop)
	return ev, stop
}

// next returns the next event of kind k, failing on timeout; events of
// other kinds are skipped unless they are in fail.
func next(t *testing.T, ev <-chan relay.Event, k relay.EventKind, fail ...relay.EventKind) relay.Event {
	t.Helper()
	timeout := time.After(waitLong)
	for {
		select {
		case e := <-ev:
			if e.Kind == k {
				return e
			}
			for _, f := range fail {
				if e.Kind == f {
					t.Fatalf("got event %d (err %v) while waiting for %d", e.Kind, e.Err, k)
				}
			}
		case <-timeout:
			t.Fatalf("no event %d within %v", k, waitLong)
		}
	}
}

// none fails if an event of kind k arrives within d.
func none(t *testing.T, ev <-chan relay.Event, k relay.EventKind, d time.Duration) {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case e := <-ev:
			if e.Kind == k {
				t.Fatalf("unexpected event %d: %+v", k, e)
			}
		case <-timeout:
			return
		}
	}
}

func send(t *testing.T, b relay.Bearer, id byte, payload string) brlink.ID {
	t.Helper()
	it := &relay.Item{ID: brlink.ID{id}, Class: brlink.ClassXMPP, Payload: []byte(payload)}
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	if err := b.Send(ctx, it); err != nil {
		t.Fatalf("Send %q: %v", payload, err)
	}
	return it.ID
}

// countingConn counts what the bearer writes on a connection it accepted.
type countingConn struct {
	net.Conn
	written *atomic.Int64
}

func (c countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.written.Add(int64(n))
	return n, err
}

func (c countingConn) CloseWrite() error { return c.Conn.(*net.TCPConn).CloseWrite() }

// listener accepts connections for a bearer and hands them off, after
// the gate opens; it keeps the raw connections so a test can cut them.
type listener struct {
	ln      net.Listener
	mu      sync.Mutex
	conns   []net.Conn
	written atomic.Int64 // bytes the bearer wrote on accepted connections
	refused chan error
}

func listen(t *testing.T) *listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return &listener{ln: ln, refused: make(chan error, 16)}
}

func (l *listener) addr() string { return l.ln.Addr().String() }

// serve hands accepted connections to s until the test ends.
func (l *listener) serve(t *testing.T, s *Stream) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		for {
			nc, err := l.ln.Accept()
			if err != nil {
				return
			}
			l.mu.Lock()
			l.conns = append(l.conns, nc)
			l.mu.Unlock()
			go func() {
				if err := s.Accept(ctx, countingConn{nc, &l.written}); err != nil {
					l.refused <- err
				}
			}()
		}
	}()
}

func (l *listener) cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		c.Close()
	}
}

func (l *listener) accepted() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

func newStream(t *testing.T, cfg StreamConfig) *Stream {
	t.Helper()
	cfg.MinBackoff, cfg.MaxBackoff = 20*time.Millisecond, 100*time.Millisecond
	cfg.CloseTimeout = time.Second
	s, err := NewStream(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// cfgA and cfgB are the two ends of one agreement: A serves a.example
// and its MUC service, B serves b.example.
func cfgA(dir Direction, connect string) StreamConfig {
	return StreamConfig{Name: "b", Connect: connect, Direction: dir, Identity: IdentityIP, AllowedIPs: loopback,
		LocalDomains: []string{"a.example", "conference.a.example"}, PeerDomains: []string{"b.example"}}
}

func cfgB(dir Direction, connect string) StreamConfig {
	return StreamConfig{Name: "a", Connect: connect, Direction: dir, Identity: IdentityIP, AllowedIPs: loopback,
		LocalDomains: []string{"b.example"}, PeerDomains: []string{"a.example", "conference.a.example"}}
}

func selfSigned(t *testing.T, name string) (tls.Certificate, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		DNSNames: []string{name}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IsCA:        true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, leaf
}
