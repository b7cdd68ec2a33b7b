package s2s

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/aldis-im/aldis/xmppcore/peering"
	"github.com/aldis-im/aldis/xmppcore/stanza"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// stream is the initiating side of a server stream, up to authentication:
// used by outgoing streams and by dialback verification.
type stream struct {
	m             *Manager
	raw, c        net.Conn
	dec           *wire.Decoder
	local, remote string
	id            string // the stream id the peer gave
	features      *wire.Element
	dbOffered     bool // the peer declared the dialback namespace or feature
	tls           bool
	peerVerified  bool          // the peer's certificate is valid for remote
	rule          *peering.Rule // the peering controls of remote
	bidi          bool          // negotiated bidirectional (XEP-0288): the peer sends on it too

	wmu sync.Mutex // writes: the writer, and the reader's stream errors
}

// remoteError is an error the peer reported, or a stream it ended.
type remoteError struct{ what string }

func (e *remoteError) Error() string { return "s2s: " + e.what }

// dial connects to remote and negotiates TLS; the stream is left at the
// features that follow TLS (or the first ones, without TLS).
func (m *Manager) dial(ctx context.Context, local, remote string) (*stream, error) {
	targets, err := m.resolve(ctx, remote)
	if err != nil {
		return nil, err
	}
	var last error
	for _, t := range targets {
		s, err := m.dialTarget(ctx, local, remote, t)
		if err == nil {
			return s, nil
		}
		last = fmt.Errorf("%s: %w", t.addr, err)
		m.log.Debug("s2s: target failed", "remote", remote, "addr", t.addr, "err", err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, last
}

func (m *Manager) dialTarget(ctx context.Context, local, remote string, t target) (*stream, error) {
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", t.addr)
	if err != nil {
		return nil, err
	}
	s := &stream{m: m, raw: raw, c: raw, local: local, remote: remote, rule: m.rule(remote)}
	if dl, ok := ctx.Deadline(); ok {
		raw.SetDeadline(dl)
	}
	if err := s.negotiateTLS(t.directTLS); err != nil {
		raw.Close()
		return nil, err
	}
	return s, nil
}

func (s *stream) negotiateTLS(direct bool) error {
	if direct {
		if err := s.handshake("xmpp-server"); err != nil {
			return err
		}
	}
	s.dec = wire.NewDecoder(s.c, wire.Limits{MaxStanza: s.m.cfg.MaxStanza})
	if err := s.open(); err != nil {
		return err
	}
	if s.tls {
		return nil
	}
	if s.features.Child("starttls", stanza.NSTLS) == nil || s.m.cfg.Certificate == nil {
		if s.rule.RequireTLS {
			return &remoteError{"the peer does not offer TLS, which is required"}
		}
		return nil
	}
	if err := s.write([]byte("<starttls xmlns='" + stanza.NSTLS + "'/>")); err != nil {
		return err
	}
	el, err := s.next()
	if err != nil {
		return err
	}
	if el.Local() != "proceed" || el.Space != stanza.NSTLS {
		return &remoteError{"STARTTLS refused"}
	}
	if err := s.handshake(); err != nil {
		return err
	}
	s.dec.Reset(s.c)
	return s.open()
}

// handshake runs TLS as the client. The peer's certificate is checked
// here rather than by crypto/tls: one that does not verify still allows
// dialback when the policy does.
func (s *stream) handshake(alpn ...string) error {
	conf := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         s.remote,
		NextProtos:         alpn,
		InsecureSkipVerify: true, // verified below against cfg.Roots
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return s.m.cfg.Certificate(s.local), nil
		},
	}
	t := tls.Client(s.raw, conf)
	if err := t.Handshake(); err != nil {
		return fmt.Errorf("TLS handshake: %w", err)
	}
	st := t.ConnectionState()
	s.peerVerified = s.m.verifyPeer(st.PeerCertificates, s.remote) == nil
	s.c, s.tls = t, true
	return nil
}

// verifyPeer checks a certificate chain against the trusted roots for domain.
func (m *Manager) verifyPeer(chain []*x509.Certificate, domain string) error {
	if len(chain) == 0 {
		return errors.New("no certificate")
	}
	opts := x509.VerifyOptions{Roots: m.cfg.Roots, DNSName: domain, Intermediates: x509.NewCertPool(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
	for _, c := range chain[1:] {
		opts.Intermediates.AddCert(c)
	}
	_, err := chain[0].Verify(opts)
	return err
}

// open sends our stream header and reads the peer's header and features.
func (s *stream) open() error {
	h := wire.New("stream:stream", stanza.NSStream)
	h.SetAttr("xmlns", stanza.NSServer)
	h.SetAttr("xmlns:db", stanza.NSDialback)
	h.SetAttr("from", s.local)
	h.SetAttr("to", s.remote)
	h.SetAttr("version", "1.0")
	if err := s.write(h.AppendStart([]byte("<?xml version='1.0'?>"))); err != nil {
		return err
	}
	tok, err := s.dec.Next()
	if err != nil {
		return err
	}
	if tok.Kind != wire.StreamStart {
		return &remoteError{"expected a stream header"}
	}
	if tok.Elem.Attr("xmlns") != stanza.NSServer {
		return &remoteError{"the peer's stream is not jabber:server"}
	}
	s.id = tok.Elem.Attr("id")
	s.dbOffered = tok.Elem.Attr("xmlns:db") == stanza.NSDialback
	f, err := s.next()
	if err != nil {
		return err
	}
	if f.Local() != "features" || f.Space != stanza.NSStream {
		return &remoteError{"expected stream features"}
	}
	s.features = f
	if f.Child("dialback", stanza.NSDialbackFeat) != nil {
		s.dbOffered = true
	}
	return nil
}

// next reads one element; a stream error or the end of the stream is an error.
func (s *stream) next() (*wire.Element, error) {
	tok, err := s.dec.Next()
	if err != nil {
		return nil, err
	}
	switch tok.Kind {
	case wire.StreamEnd:
		return nil, io.EOF
	case wire.StreamStart:
		return nil, &remoteError{"unexpected stream header"}
	}
	if el := tok.Elem; el.Local() == "error" && el.Space == stanza.NSStream {
		cond := "stream error"
		for c := range el.Elements() {
			if c.Space == stanza.NSStreamErr && c.Local() != "text" {
				cond = c.Local()
			}
		}
		return nil, &remoteError{"peer sent stream error " + cond + ": " + el.ChildText("text", "")}
	}
	return tok.Elem, nil
}

func (s *stream) write(b []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_, err := s.c.Write(b)
	return err
}

// requestBidi asks for a bidirectional stream (XEP-0288) when the peer
// offers one; it must come before authentication.
func (s *stream) requestBidi() error {
	if !s.m.cfg.Bidi || s.features.Child("bidi", stanza.NSBidiFeat) == nil || (!s.tls && s.rule.RequireTLS) {
		return nil
	}
	if err := s.write([]byte("<bidi xmlns='" + stanza.NSBidi + "'/>")); err != nil {
		return err
	}
	s.bidi = true
	return nil
}

// authenticate proves our domain: SASL EXTERNAL with our certificate when
// offered, else dialback when allowed.
func (s *stream) authenticate() error {
	if mechs := s.features.Child("mechanisms", stanza.NSSASL); mechs != nil && s.tls {
		for mc := range mechs.Elements() {
			if mc.Text() != "EXTERNAL" {
				continue
			}
			ok, err := s.external()
			if err != nil {
				return err
			}
			if ok {
				return nil
			}
			break
		}
	}
	if s.rule.CertificateOnly {
		return &remoteError{"SASL EXTERNAL failed and dialback is not allowed"}
	}
	if !s.dbOffered {
		return &remoteError{"the peer offers neither SASL EXTERNAL nor dialback"}
	}
	key := dialbackKey(s.m.secret, s.remote, s.local, s.id)
	if err := s.write(dbElement("result", s.local, s.remote, "", "", key).Append(nil)); err != nil {
		return err
	}
	for {
		el, err := s.next()
		if err != nil {
			return err
		}
		r, err := parseDialback(el)
		if err != nil || r.verify || r.from != s.remote || r.to != s.local {
			continue // not the answer; peers may interleave other elements
		}
		if r.typ == "valid" {
			return nil
		}
		return &remoteError{"dialback refused (" + r.typ + ")"}
	}
}

// external runs SASL EXTERNAL; false means the peer refused it.
func (s *stream) external() (bool, error) {
	a := wire.New("auth", stanza.NSSASL)
	a.SetAttr("mechanism", "EXTERNAL")
	a.AddText(base64.StdEncoding.EncodeToString([]byte(s.local)))
	if err := s.write(a.Append(nil)); err != nil {
		return false, err
	}
	el, err := s.next()
	if err != nil {
		return false, err
	}
	if el.Space != stanza.NSSASL || el.Local() != "success" {
		s.m.log.Debug("s2s: SASL EXTERNAL refused", "remote", s.remote, "answer", el.String())
		return false, nil
	}
	s.dec.Reset(s.c)
	return true, s.open()
}

// clearDeadline leaves negotiation: from now on idle timers apply.
func (s *stream) clearDeadline() { s.raw.SetDeadline(time.Time{}) }
