package zh

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"
)

// Direction says which side of a XEP-0361 agreement opens connections
// (XEP-0361 rule 4).
type Direction int

// Directions. The zero value is Both, which XEP-0361 recommends.
const (
	Both     Direction = iota // we connect, and accept the peer's connection
	Initiate                  // only we connect
	Accept                    // only the peer connects; we send on its connection
)

// ParseDirection reads "initiate", "accept" or "both".
func ParseDirection(s string) (Direction, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "both", "":
		return Both, nil
	case "initiate":
		return Initiate, nil
	case "accept":
		return Accept, nil
	}
	return 0, fmt.Errorf("zh: direction %q: want initiate, accept or both", s)
}

// Identity is how a connection's peer is recognised (XEP-0361 rule 3).
type Identity int

// Identities.
const (
	IdentityIP       Identity = iota + 1 // the source address is in AllowedIPs
	IdentityTLSPin                       // the peer's certificate or key matches a pin
	IdentityTLSPKI                       // the peer's certificate chains to RootCAs for a peer domain
	IdentityImplicit                     // anyone who connects; needs Insecure
)

// ParseIdentity reads "ip", "tls-pin", "tls-pki" or "implicit".
func ParseIdentity(s string) (Identity, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "ip":
		return IdentityIP, nil
	case "tls-pin":
		return IdentityTLSPin, nil
	case "tls-pki":
		return IdentityTLSPKI, nil
	case "implicit":
		return IdentityImplicit, nil
	}
	return 0, fmt.Errorf("zh: identity %q: want ip, tls-pin, tls-pki or implicit", s)
}

// Compression is the pre-agreed compression of a XEP-0361 TCP stream.
type Compression int

// Compressions.
const (
	CompressNone Compression = iota
	// CompressDeflate makes each direction one zlib stream (RFC 1950),
	// flushed with Z_SYNC_FLUSH after every stanza (PROTOCOLS.md §2.6).
	CompressDeflate
)

// ParseCompression reads "none" or "deflate".
func ParseCompression(s string) (Compression, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "none", "":
		return CompressNone, nil
	case "deflate":
		return CompressDeflate, nil
	}
	return 0, fmt.Errorf("zh: compression %q: want none or deflate", s)
}

// Pin is the SHA-256 of a peer's SubjectPublicKeyInfo or of its whole
// DER certificate; either matches.
type Pin [sha256.Size]byte

// ParsePin reads a pin as 64 hex digits (colons allowed) or as
// "sha256/" followed by standard base64.
func ParsePin(s string) (Pin, error) {
	var p Pin
	s = strings.TrimSpace(s)
	var b []byte
	var err error
	if rest, ok := strings.CutPrefix(s, "sha256/"); ok {
		b, err = base64.StdEncoding.DecodeString(rest)
	} else {
		b, err = hex.DecodeString(strings.ReplaceAll(s, ":", ""))
	}
	if err != nil || len(b) != len(p) {
		return p, fmt.Errorf("zh: pin %q: want 64 hex digits or sha256/<base64>", s)
	}
	copy(p[:], b)
	return p, nil
}

// PinOf returns the SPKI pin of a certificate, for configuration tools.
func PinOf(c *x509.Certificate) Pin { return sha256.Sum256(c.RawSubjectPublicKeyInfo) }

// StreamConfig is one XEP-0361 peer agreement (PROTOCOLS.md §2.1 peer
// table). Zero durations and sizes take the defaults noted.
type StreamConfig struct {
	Name string // the peer's name in logs
	// Connect is the peer's host:port, for Initiate and Both.
	Connect string
	// Listen is a local address to accept the peer's connections on.
	// Empty: connections arrive through Stream.Accept (a shared
	// listener hands them off), or not at all.
	Listen    string
	Direction Direction

	LocalDomains []string // accepted as to, required as from on what we send
	PeerDomains  []string // accepted as from, required as to on what we send

	Identity   Identity
	AllowedIPs []netip.Prefix // IdentityIP; with other identities, an extra check when set
	// TLS wraps the connection in TLS (implied by the TLS identities).
	TLS     bool
	Pins    []Pin          // IdentityTLSPin
	RootCAs *x509.CertPool // IdentityTLSPKI
	// ServerName is sent in SNI when we connect (default: the first peer domain).
	ServerName string
	// Certificate is our certificate, as server and as TLS client
	// (certs.Source.Certificate fits).
	Certificate func() *tls.Certificate
	// Insecure must be set for IdentityImplicit.
	Insecure bool

	Compression Compression
	// Lenient drops and logs a stanza with a from or to outside the
	// agreement, rather than closing the stream with a stream error.
	Lenient bool
	// SM turns on pre-agreed XEP-0198 counting without negotiation: we
	// send <r/> after each batch and items are Acked from the peer's
	// <a h=''/>. Without SM an item is Acked once written to the
	// socket, so a crash or link loss can lose what sat in the socket
	// buffers.
	SM      bool
	SMBatch int // stanzas between <r/> requests (8); one also ends every batch

	SendQueue    int           // items queued in the bearer (64)
	MaxStanza    int           // largest stanza accepted or sent (256 KiB)
	DialTimeout  time.Duration // TCP connect plus TLS handshake (30 s)
	WriteTimeout time.Duration // one write (60 s)
	CloseTimeout time.Duration // wait for the peer's close after ours (5 s)
	MinBackoff   time.Duration // first reconnection delay (1 s)
	MaxBackoff   time.Duration // longest reconnection delay (2 min)
	Logger       *slog.Logger
}

func (c *StreamConfig) defaults() {
	defInt(&c.SMBatch, 8)
	defInt(&c.SendQueue, 64)
	defInt(&c.MaxStanza, defaultMaxStanza)
	defDur(&c.DialTimeout, 30*time.Second)
	defDur(&c.WriteTimeout, 60*time.Second)
	defDur(&c.CloseTimeout, 5*time.Second)
	defDur(&c.MinBackoff, time.Second)
	defDur(&c.MaxBackoff, 2*time.Minute)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

func defInt(v *int, d int) {
	if *v <= 0 {
		*v = d
	}
}

func defDur(v *time.Duration, d time.Duration) {
	if *v <= 0 {
		*v = d
	}
}

func (c *StreamConfig) check() error {
	switch c.Direction {
	case Both, Initiate:
		if c.Connect == "" {
			return errors.New("zh: direction initiate or both needs a connect address")
		}
	case Accept:
	default:
		return fmt.Errorf("zh: unknown direction %d", c.Direction)
	}
	switch c.Identity {
	case IdentityIP:
		if len(c.AllowedIPs) == 0 && c.Direction != Initiate {
			return errors.New("zh: identity ip needs allowed IPs")
		}
	case IdentityTLSPin:
		if len(c.Pins) == 0 {
			return errors.New("zh: identity tls-pin needs a pin")
		}
	case IdentityTLSPKI:
		if c.RootCAs == nil {
			return errors.New("zh: identity tls-pki needs a CA pool")
		}
	case IdentityImplicit:
		if !c.Insecure {
			return errors.New("zh: identity implicit is allowed only with insecure=true")
		}
	default:
		return errors.New("zh: no identity configured (ip, tls-pin, tls-pki, or implicit with insecure)")
	}
	if c.useTLS() && c.Certificate == nil {
		return errors.New("zh: TLS needs our certificate")
	}
	return nil
}

func (c *StreamConfig) useTLS() bool {
	return c.TLS || c.Identity == IdentityTLSPin || c.Identity == IdentityTLSPKI
}

// checkIP applies the address allow-list, if any.
func (c *StreamConfig) checkIP(a net.Addr) error {
	if len(c.AllowedIPs) == 0 {
		return nil
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return fmt.Errorf("zh: peer address %s: %w", a, err)
	}
	ip := ap.Addr().Unmap()
	for _, p := range c.AllowedIPs {
		if p.Contains(ip) {
			return nil
		}
	}
	return fmt.Errorf("zh: connection from %s, which is not an allowed address", ip)
}

// verifyPeer checks the peer's certificate against the identity.
func (c *StreamConfig) verifyPeer(chain []*x509.Certificate, peer domainSet) error {
	switch c.Identity {
	case IdentityTLSPin:
		if len(chain) == 0 {
			return errors.New("zh: peer sent no certificate")
		}
		spki, whole := sha256.Sum256(chain[0].RawSubjectPublicKeyInfo), sha256.Sum256(chain[0].Raw)
		for _, p := range c.Pins {
			if p == spki || p == whole {
				return nil
			}
		}
		return errors.New("zh: peer certificate matches no pin")
	case IdentityTLSPKI:
		if len(chain) == 0 {
			return errors.New("zh: peer sent no certificate")
		}
		opts := x509.VerifyOptions{Roots: c.RootCAs, Intermediates: x509.NewCertPool(),
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
		for _, ic := range chain[1:] {
			opts.Intermediates.AddCert(ic)
		}
		var err error
		for d := range peer {
			opts.DNSName = d
			if _, err = chain[0].Verify(opts); err == nil {
				return nil
			}
		}
		return fmt.Errorf("zh: peer certificate: %w", err)
	}
	return nil
}

func (c *StreamConfig) tlsConfigs(peer domainSet) (client, server *tls.Config) {
	if !c.useTLS() {
		return nil, nil
	}
	verify := func(cs tls.ConnectionState) error { return c.verifyPeer(cs.PeerCertificates, peer) }
	name := c.ServerName
	if name == "" && len(c.PeerDomains) > 0 {
		name = c.PeerDomains[0]
	}
	client = &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         name,
		InsecureSkipVerify: true, // VerifyConnection applies the agreed identity instead
		VerifyConnection:   verify,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if crt := c.Certificate(); crt != nil {
				return crt, nil
			}
			return &tls.Certificate{}, nil
		},
	}
	server = &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			if crt := c.Certificate(); crt != nil {
				return crt, nil
			}
			return nil, errors.New("zh: no certificate")
		},
		VerifyConnection: verify,
	}
	if c.Identity == IdentityTLSPin || c.Identity == IdentityTLSPKI {
		server.ClientAuth = tls.RequireAnyClientCert // checked by VerifyConnection
	}
	return client, server
}
