package certs

import (
	"crypto/tls"
	"path/filepath"
	"testing"
)

func TestHostsBySNI(t *testing.T) {
	dir := t.TempDir()
	def, _, err := Open("", "", filepath.Join(dir, "def"), []string{"example.com"})
	if err != nil {
		t.Fatal(err)
	}
	org, _, err := Open("", "", filepath.Join(dir, "org"), []string{"example.org"})
	if err != nil {
		t.Fatal(err)
	}
	h := NewHosts(def, map[string]*Source{"example.org": org})
	ln, err := tls.Listen("tcp", "127.0.0.1:0", h.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	for name, want := range map[string]string{"example.org": "example.org", "example.com": "example.com", "": "example.com", "other.example": "example.com"} {
		c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true, ServerName: name})
		if err != nil {
			t.Fatal(err)
		}
		cert := c.ConnectionState().PeerCertificates[0]
		c.Close()
		if err := cert.VerifyHostname(want); err != nil {
			t.Errorf("SNI %q: %v", name, err)
		}
	}
	if h.Certificate("example.org") != org.Certificate() || h.Certificate("x.example") != def.Certificate() {
		t.Error("Certificate picks the wrong source")
	}
	if err := h.Reload(); err != nil {
		t.Error(err)
	}
}
