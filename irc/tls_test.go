package irc

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aldis-im/aldis/core/certs"
	"github.com/aldis-im/aldis/irc/irctest"
)

// TestTLS: a server whose certificate verifies is used; one that does not verify is refused,
// because verification is on unless the caller turns it off.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	cf, kf := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	if err := certs.GenerateSelfSigned(cf, kf, []string{"localhost"}); err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(cf, kf)
	if err != nil {
		t.Fatal(err)
	}
	pem, _ := os.ReadFile(cf)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)

	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	s := irctest.NewScriptedOn(t, ln)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	addr := "localhost:" + port

	c := testClient(t, s, func(cfg *Config) {
		cfg.Addr = addr
		cfg.TLS = &tls.Config{RootCAs: roots}
	})
	s.Accept().Register()
	waitEvent(t, c, Connected, nil)

	bad := testClient(t, s, func(cfg *Config) {
		cfg.Addr = addr
		cfg.TLS = &tls.Config{} // system roots: the self-signed certificate does not verify
		cfg.MinBackoff, cfg.MaxBackoff = time.Hour, time.Hour
	})
	ev := waitEvent(t, bad, Disconnected, nil)
	if ev.Err == nil || !strings.Contains(ev.Err.Error(), "certificate") {
		t.Fatalf("unverified server: %v", ev.Err)
	}
}
