package certs

import (
	"crypto/tls"
	"path/filepath"
	"testing"
)

func TestSelfSignedAndReload(t *testing.T) {
	dir := t.TempDir()
	src, gen, err := Open("", "", dir, []string{"example.org"})
	if err != nil || !gen {
		t.Fatalf("Open: gen=%v err=%v", gen, err)
	}
	if _, gen2, err := Open("", "", dir, []string{"example.org"}); err != nil || gen2 {
		t.Fatalf("second Open regenerated (%v) or failed: %v", gen2, err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", src.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true, ServerName: "conference.example.org"})
	if err != nil {
		t.Fatal(err)
	}
	cert := c.ConnectionState().PeerCertificates[0]
	c.Close()
	if err := cert.VerifyHostname("conference.example.org"); err != nil {
		t.Errorf("subdomain not covered: %v", err)
	}
	// A broken file on reload keeps the old certificate.
	bad := &Source{certFile: filepath.Join(dir, "missing.crt"), keyFile: filepath.Join(dir, "missing.key")}
	if err := bad.Reload(); err == nil {
		t.Error("Reload of a missing file succeeded")
	}
	if err := src.Reload(); err != nil {
		t.Errorf("Reload: %v", err)
	}
}
