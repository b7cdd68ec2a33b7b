package certs

import (
	"crypto/tls"
	"errors"
)

// Hosts are the certificates of several domains served at once (virtual
// hosts): one per domain that has its own, and a default for the rest.
// It is read-only after NewHosts apart from reloads, so safe for
// concurrent use.
type Hosts struct {
	def *Source
	by  map[string]*Source
}

// NewHosts serves def for every domain without a certificate in by.
func NewHosts(def *Source, by map[string]*Source) *Hosts {
	if by == nil {
		by = map[string]*Source{}
	}
	return &Hosts{def: def, by: by}
}

// Default is the certificate source of domains without their own.
func (h *Hosts) Default() *Source { return h.def }

// Certificate returns the current certificate for domain.
func (h *Hosts) Certificate(domain string) *tls.Certificate {
	if s := h.by[domain]; s != nil {
		return s.Certificate()
	}
	return h.def.Certificate()
}

// TLSConfig returns a server configuration that presents the certificate
// of the name the client asks for (SNI), or the default one.
func (h *Hosts) TLSConfig(alpn ...string) *tls.Config {
	c := h.def.TLSConfig(alpn...)
	c.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		return h.Certificate(hello.ServerName), nil
	}
	return c
}

// Reload re-reads every certificate; one that fails keeps its old one, and
// the errors are returned together.
func (h *Hosts) Reload() error {
	errs := []error{h.def.Reload()}
	for _, s := range h.by {
		errs = append(errs, s.Reload())
	}
	return errors.Join(errs...)
}
