// Package certs loads, generates and reloads the server's TLS certificates.
package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"
)

// Source serves the current certificate and can reload it from disk.
type Source struct {
	certFile, keyFile string
	cur               atomic.Pointer[tls.Certificate]
}

// Open loads certFile/keyFile; when both are empty it uses a self-signed
// certificate for the domains in dataDir, generating it on first run.
// generated reports whether a new certificate was written.
func Open(certFile, keyFile, dataDir string, domains []string) (src *Source, generated bool, err error) {
	if certFile == "" && keyFile == "" {
		certFile = filepath.Join(dataDir, "tls", "selfsigned.crt")
		keyFile = filepath.Join(dataDir, "tls", "selfsigned.key")
		if _, err := os.Stat(certFile); errors.Is(err, os.ErrNotExist) {
			if err := GenerateSelfSigned(certFile, keyFile, domains); err != nil {
				return nil, false, err
			}
			generated = true
		}
	}
	s := &Source{certFile: certFile, keyFile: keyFile}
	if err := s.Reload(); err != nil {
		return nil, false, err
	}
	return s, generated, nil
}

// Reload re-reads the certificate files; on error the old one stays in use.
func (s *Source) Reload() error {
	c, err := tls.LoadX509KeyPair(s.certFile, s.keyFile)
	if err != nil {
		return fmt.Errorf("load certificate %s: %w", s.certFile, err)
	}
	s.cur.Store(&c)
	return nil
}

// CertFile is the path of the certificate in use.
func (s *Source) CertFile() string { return s.certFile }

// TLSConfig returns a server configuration that always uses the current
// certificate, so a reload reaches new connections at once.
func (s *Source) TLSConfig(alpn ...string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: alpn,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.cur.Load(), nil
		},
	}
}

// GenerateSelfSigned writes a P-256 self-signed certificate valid for the
// domains (and their direct subdomains) for ten years.
func GenerateSelfSigned(certFile, keyFile string, domains []string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return fmt.Errorf("generate serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: domains[0], Organization: []string{"Aldis self-signed"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	for _, d := range domains {
		if ip := net.ParseIP(d); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			continue
		}
		tmpl.DNSNames = append(tmpl.DNSNames, d, "*."+d)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("create certificate: %w", err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("marshal key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(certFile), 0o700); err != nil {
		return fmt.Errorf("create certificate directory: %w", err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return fmt.Errorf("write key: %w", err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return fmt.Errorf("write certificate: %w", err)
	}
	return nil
}
