package s2s

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/aldis-im/aldis/xmppcore/peering"
	"github.com/aldis-im/aldis/xmppcore/stanza"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// streamErr is a stream error to send before closing.
type streamErr struct{ cond, text string }

func (e *streamErr) Error() string { return e.cond + ": " + e.text }

// inConn is one incoming stream. Its reader goroutine (serve) negotiates
// and reads; writes (negotiation, dialback answers, and on a
// bidirectional stream the stanzas this server sends) go through wmu.
type inConn struct {
	m       *Manager
	raw, c  net.Conn
	ip      string
	direct  bool
	dec     *wire.Decoder
	rd      *inReader
	tls     *tls.ConnectionState
	id      string        // our stream id
	local   string        // the stream's to
	from    string        // the stream's from, if given
	sasl    bool          // authenticated by SASL EXTERNAL (no dialback after it)
	bidi    bool          // the peer asked for a bidirectional stream (XEP-0288)
	done    chan struct{} // closed when the stream has ended
	closing bool
	// refusals bounds the resource-constraint answers (see Config.RateRefusals);
	// nil until the peer first exceeds its rate.
	refusals *rate.Limiter

	wmu sync.Mutex

	mu     sync.Mutex
	authed map[pair]bool // (local, remote) pairs this stream may carry; pair.local is ours
}

func newIn(m *Manager, raw net.Conn, ip string, direct bool) *inConn {
	c := &inConn{m: m, raw: raw, c: raw, ip: ip, direct: direct, authed: map[pair]bool{}, done: make(chan struct{})}
	c.rd = &inReader{c: raw, raw: raw, deadline: time.Now().Add(m.cfg.ConnectTimeout)}
	if m.cfg.RateBytes > 0 {
		c.rd.lim = rate.NewLimiter(rate.Limit(m.cfg.RateBytes), max(m.cfg.RateBurst, m.cfg.MaxStanza))
		c.rd.ctx = m.ctx
	}
	return c
}

func (c *inConn) serve() {
	defer c.m.forgetIn(c)
	defer close(c.done)
	err := c.protect(c.run)
	var final []byte
	var se *streamErr
	var we *wire.Error
	switch {
	case errors.As(err, &se):
		c.m.log.Info("s2s: closing incoming stream", "remote", c.ip, "from", c.from, "err", se)
		final = stanza.StreamError(se.cond, se.text)
	case errors.As(err, &we):
		c.m.log.Info("s2s: closing incoming stream", "remote", c.ip, "from", c.from, "err", we)
		final = stanza.StreamError(we.Condition, we.Text)
	case err == nil || errors.Is(err, io.EOF):
		final = []byte("</stream:stream>")
	default:
		c.m.log.Debug("s2s: incoming stream ended", "remote", c.ip, "from", c.from, "err", err)
	}
	c.wmu.Lock()
	closing := c.closing
	c.closing = true // nothing is sent after the end (see send)
	c.wmu.Unlock()
	if final != nil && !closing {
		c.write(final)
	}
	c.raw.Close()
}

func (c *inConn) protect(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			c.m.log.Error("s2s: incoming stream panic", "panic", r, "remote", c.ip)
			err = &streamErr{"internal-server-error", ""}
		}
	}()
	return f()
}

// closeGrace is how long a stream closed by this server (shutdown) is
// still read: what the peer wrote before it saw the close is processed,
// not lost (RFC 6120 §4.4), and the peer closes its side meanwhile.
const closeGrace = 2 * time.Second

// close ends the stream from another goroutine (shutdown): the stream
// error and the closing tag go out at once, then the reader goes on until
// the peer closes its side or closeGrace has passed.
func (c *inConn) close(cond, text string) {
	c.wmu.Lock()
	if c.closing {
		c.wmu.Unlock()
		return
	}
	c.closing = true
	c.wmu.Unlock()
	c.write(append(stanza.StreamError(cond, text), "</stream:stream>"...))
	c.rd.closeAt(time.Now().Add(closeGrace))
}

// errStreamClosing: the stream is closing; nothing more may be sent on it.
var errStreamClosing = errors.New("s2s: the stream is closing")

// send writes stanzas this server sends on a bidirectional stream; once the
// stream is closing (after our closing tag) it fails, so that what was not
// written goes another way instead of after the end.
func (c *inConn) send(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closing {
		return errStreamClosing
	}
	c.c.SetWriteDeadline(time.Now().Add(c.m.cfg.ConnectTimeout))
	_, err := c.c.Write(b)
	return err
}

func (c *inConn) write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.c.SetWriteDeadline(time.Now().Add(c.m.cfg.ConnectTimeout))
	_, err := c.c.Write(b)
	return err
}

func (c *inConn) serverTLS() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"xmpp-server"},
		ClientAuth: tls.RequestClientCert, // verified per domain, for SASL EXTERNAL
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			// The stream's to, once its header named it (STARTTLS);
			// else (direct TLS) the name the peer asks for.
			name := c.local
			if name == "" {
				name = hello.ServerName
			}
			return c.m.cfg.Certificate(name), nil
		},
	}
}

func (c *inConn) startTLS() error {
	if c.m.cfg.Certificate == nil {
		return &streamErr{"policy-violation", "TLS is not configured"}
	}
	t := tls.Server(c.raw, c.serverTLS())
	c.raw.SetDeadline(c.rd.deadline)
	if err := t.Handshake(); err != nil {
		return err
	}
	st := t.ConnectionState()
	c.tls, c.c, c.rd.c = &st, t, t
	return nil
}

// run negotiates and then reads stanzas until the stream ends.
func (c *inConn) run() error {
	if c.direct {
		if err := c.startTLS(); err != nil {
			return err
		}
	}
	c.dec = wire.NewDecoder(c.rd, wire.Limits{MaxStanza: c.m.cfg.MaxStanza})
	if err := c.open(); err != nil {
		return err
	}
	for {
		tok, err := c.dec.Next()
		if err != nil {
			if c.isClosing() {
				return nil
			}
			return err
		}
		switch tok.Kind {
		case wire.StreamEnd:
			return nil
		case wire.StreamStart:
			return &streamErr{"not-well-formed", "unexpected stream header"}
		}
		if c.rd.idle == 0 && c.authedAny() {
			c.rd.idle = c.m.cfg.IdleTimeout // negotiated: from now on only idleness ends it
		}
		el := tok.Elem
		switch {
		case el.Space == stanza.NSServer:
			if err := c.stanza(el); err != nil {
				return err
			}
		case el.Space == stanza.NSDialback:
			if err := c.dialback(el); err != nil {
				return err
			}
		case el.Space == stanza.NSTLS && el.Local() == "starttls":
			if c.tls != nil || c.m.cfg.Certificate == nil || c.authedAny() {
				return &streamErr{"policy-violation", "STARTTLS is not available now"}
			}
			if c.dec.PendingData() {
				return &streamErr{"policy-violation", "data pipelined after STARTTLS"}
			}
			if err := c.write([]byte("<proceed xmlns='" + stanza.NSTLS + "'/>")); err != nil {
				return err
			}
			if err := c.startTLS(); err != nil {
				return err
			}
			c.dec.Reset(c.rd)
			if err := c.open(); err != nil {
				return err
			}
		case el.Space == stanza.NSStream && el.Local() == "error":
			// The peer ends the stream (a shutdown, say): nothing to answer.
			c.m.log.Info("s2s: peer ended its incoming stream with an error", "from", c.from, "error", el.String())
			c.wmu.Lock()
			c.closing = true // our closing tag only, no stream error back
			c.wmu.Unlock()
			c.write([]byte("</stream:stream>"))
			return nil
		case el.Space == stanza.NSBidi && el.Local() == "bidi":
			// XEP-0288 §2.2: asked for before authentication; from then on
			// what this server sends the peer's domains goes on this stream.
			if !c.m.cfg.Bidi || c.authedAny() || (c.tls == nil && c.rule().RequireTLS) {
				return &streamErr{"policy-violation", "a bidirectional stream is not available now"}
			}
			c.bidi = true
		case el.Space == stanza.NSSASL && el.Local() == "auth":
			if err := c.external(el); err != nil {
				return err
			}
		default:
			return &streamErr{"unsupported-stanza-type", "unexpected element " + el.Local()}
		}
	}
}

// open reads the peer's stream header and answers with ours and the features.
func (c *inConn) open() error {
	tok, err := c.dec.Next()
	if err != nil {
		return err
	}
	c.id = randomID()
	if tok.Kind != wire.StreamStart {
		c.header()
		return &streamErr{"not-well-formed", "expected a stream header"}
	}
	h := tok.Elem
	to, err := domainOnly(h.Attr("to"))
	if err != nil || !c.m.cfg.Local(to) {
		c.header()
		return &streamErr{"host-unknown", "this server does not serve " + h.Attr("to")}
	}
	if c.local != "" && to != c.local {
		c.header()
		return &streamErr{"host-unknown", "the stream's to changed"}
	}
	c.local = to
	if f, err := domainOnly(h.Attr("from")); err == nil && !c.sasl {
		c.from = f
	}
	if err := c.header(); err != nil {
		return err
	}
	if c.from != "" && !c.m.rule(c.from).Allow {
		return c.denied(c.from)
	}
	if h.Attr("xmlns") != stanza.NSServer {
		return &streamErr{"invalid-namespace", "the content namespace must be jabber:server"}
	}
	if v := h.Attr("version"); v == "" || !strings.HasPrefix(v, "1.") {
		return &streamErr{"unsupported-version", "XMPP 1.0 is required"}
	}
	return c.write(c.features().Append(nil))
}

func (c *inConn) header() error {
	h := wire.New("stream:stream", stanza.NSStream)
	h.SetAttr("xmlns", stanza.NSServer)
	h.SetAttr("xmlns:db", stanza.NSDialback)
	h.SetAttr("id", c.id)
	if c.local != "" {
		h.SetAttr("from", c.local)
	}
	if c.from != "" {
		h.SetAttr("to", c.from)
	}
	h.SetAttr("version", "1.0")
	return c.write(h.AppendStart([]byte("<?xml version='1.0'?>")))
}

// denied refuses a stream from a peer the peering controls do not allow.
func (c *inConn) denied(domain string) error {
	c.m.m.refused["in"][peering.Denied].Inc()
	c.m.log.Info("s2s: refusing a peer the peering policy denies", "from", domain, "remote", c.ip)
	return &streamErr{"policy-violation", "this server does not federate with " + domain}
}

// rule returns the peering controls of the stream's sender, as its header
// names it (the default rule if it does not).
func (c *inConn) rule() *peering.Rule { return c.m.rule(c.from) }

func (c *inConn) features() *wire.Element {
	f := wire.New("stream:features", "")
	rule := c.rule()
	if c.tls == nil && c.m.cfg.Certificate != nil {
		st := f.AddChild(wire.New("starttls", stanza.NSTLS))
		if rule.RequireTLS {
			st.AddChild(wire.New("required", ""))
			return f
		}
	}
	if c.sasl {
		return f // authenticated: nothing more to negotiate
	}
	if c.tls != nil && c.from != "" && c.m.verifyPeer(c.tls.PeerCertificates, c.from) == nil {
		mech := f.AddChild(wire.New("mechanisms", stanza.NSSASL))
		mech.AddChild(wire.New("mechanism", "")).AddText("EXTERNAL")
	}
	if !rule.CertificateOnly {
		f.AddChild(wire.New("dialback", stanza.NSDialbackFeat)).AddChild(wire.New("errors", ""))
	}
	if c.m.cfg.Bidi && !c.bidi && !c.authedAny() && (c.tls != nil || !rule.RequireTLS) {
		f.AddChild(wire.New("bidi", stanza.NSBidiFeat))
	}
	return f
}

// external handles SASL EXTERNAL (RFC 6120 §13.8, XEP-0178): the peer is
// the domain its certificate is valid for.
func (c *inConn) external(auth *wire.Element) error {
	fail := func(cond string) error {
		c.m.m.authFail.Inc()
		f := wire.New("failure", stanza.NSSASL)
		f.AddChild(wire.New(cond, ""))
		c.write(f.Append(nil))
		return &streamErr{"not-authorized", "authentication failed"}
	}
	if c.sasl || c.tls == nil || auth.Attr("mechanism") != "EXTERNAL" {
		return fail("invalid-mechanism")
	}
	domain := c.from
	if txt := strings.TrimSpace(auth.Text()); txt != "" && txt != "=" {
		b, err := base64.StdEncoding.DecodeString(txt)
		if err != nil {
			return fail("incorrect-encoding")
		}
		if domain, err = domainOnly(string(b)); err != nil {
			return fail("invalid-authzid")
		}
	}
	if domain == "" || (c.from != "" && domain != c.from) {
		return fail("invalid-authzid")
	}
	if !c.m.rule(domain).Allow {
		return c.denied(domain)
	}
	if err := c.m.verifyPeer(c.tls.PeerCertificates, domain); err != nil {
		c.m.log.Info("s2s: certificate refused", "domain", domain, "err", err)
		return fail("not-authorized")
	}
	if err := c.write([]byte("<success xmlns='" + stanza.NSSASL + "'/>")); err != nil {
		return err
	}
	c.sasl = true
	c.from = domain
	c.allow(pair{c.local, domain})
	c.m.log.Info("s2s: incoming stream authenticated", "from", domain, "to", c.local, "method", "certificate")
	c.dec.Reset(c.rd)
	if err := c.open(); err != nil {
		return err
	}
	// Only now, after our new stream header, may stanzas go out on it.
	c.attach(pair{c.local, domain})
	return nil
}

// attach lets a bidirectional stream carry what this server sends on an
// authenticated pair. Call it on the reader goroutine, before it reads
// what the peer sends next.
func (c *inConn) attach(p pair) {
	if c.bidi {
		c.m.attach(p, c)
	}
}

func (c *inConn) allow(p pair) {
	c.mu.Lock()
	c.authed[p] = true
	c.mu.Unlock()
}

func (c *inConn) allowed(p pair) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.authed[p]
}

func (c *inConn) authedAny() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.authed) > 0
}

func (c *inConn) isClosing() bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.closing
}

// dialback answers <db:verify/> as the authoritative server and checks
// <db:result/> as the receiving one (XEP-0220 §2).
func (c *inConn) dialback(el *wire.Element) error {
	r, err := parseDialback(el)
	if err != nil {
		return &streamErr{"invalid-xml", "malformed dialback element"}
	}
	if r.typ != "" {
		return nil // answers belong on streams we initiated
	}
	if r.verify {
		// Did we generate this key for that stream? The receiving server
		// is r.from, we (the originating server) are r.to.
		typ := "invalid"
		if c.m.cfg.Local(r.to) && r.key == dialbackKey(c.m.secret, r.from, r.to, r.id) {
			typ = "valid"
		}
		return c.write(dbElement("verify", r.to, r.from, r.id, typ, "").Append(nil))
	}
	rule := c.m.rule(r.from)
	if !rule.Allow {
		return c.denied(r.from)
	}
	if rule.RequireTLS && c.tls == nil {
		return &streamErr{"policy-violation", "TLS is required before dialback"}
	}
	if !c.m.cfg.Local(r.to) {
		return c.dbError(r, "cancel", "item-not-found")
	}
	if c.sasl && r.from != c.from {
		return c.dbError(r, "cancel", "not-acceptable")
	}
	// A certificate valid for the domain proves it without the callback
	// (XEP-0344 §2.4).
	if c.tls != nil && c.m.verifyPeer(c.tls.PeerCertificates, r.from) == nil {
		c.dbVerified(r, true)
		return nil
	}
	if rule.CertificateOnly {
		c.m.m.authFail.Inc()
		c.m.log.Info("s2s: refusing dialback: the peering policy requires a certificate", "from", r.from)
		return c.dbError(r, "cancel", "not-acceptable")
	}
	c.m.wg.Add(1)
	go func() {
		defer c.m.wg.Done()
		ctx, cancel := context.WithTimeout(c.m.ctx, c.m.cfg.ConnectTimeout)
		defer cancel()
		ok, err := c.m.verify(ctx, r.to, r.from, c.id, r.key)
		if err != nil {
			c.m.log.Info("s2s: dialback verification failed", "from", r.from, "err", err)
			c.write(dbElement("result", r.to, r.from, "", "error", "").
				AddChild(stanza.ErrorElement(stanza.Cancel, "remote-server-not-found", "")).Append(nil))
			return
		}
		c.dbVerified(r, ok)
	}()
	return nil
}

func (c *inConn) dbError(r dbRequest, typ, cond string) error {
	e := dbElement("result", r.to, r.from, "", "error", "")
	e.AddChild(stanza.ErrorElement(typ, cond, ""))
	return c.write(e.Append(nil))
}

func (c *inConn) dbVerified(r dbRequest, ok bool) {
	typ := "invalid"
	if ok {
		typ = "valid"
		c.allow(pair{r.to, r.from})
		c.m.log.Info("s2s: incoming stream authenticated", "from", r.from, "to", r.to, "method", "dialback")
	} else {
		c.m.m.authFail.Inc()
	}
	res := dbElement("result", r.to, r.from, "", typ, "").Append(nil)
	if !ok {
		c.write(res)
		c.close("not-authorized", "dialback key invalid")
		return
	}
	// On a bidirectional stream the pair's sender is attached before the
	// peer can learn it was verified (this may run beside the reader), and
	// cannot write before the answer: it writes under wmu, held here.
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.bidi {
		c.m.attach(pair{r.to, r.from}, c)
	}
	c.c.SetWriteDeadline(time.Now().Add(c.m.cfg.ConnectTimeout))
	c.c.Write(res)
}

// stanza checks a stanza from the peer and injects it into the router.
func (c *inConn) stanza(st *wire.Element) error {
	from, to, err := checkAddresses(st)
	if err != nil {
		return err
	}
	if !c.allowed(pair{to.Domain(), from.Domain()}) {
		if !c.authedAny() {
			return &streamErr{"not-authorized", "authenticate first"}
		}
		if !c.m.cfg.Local(to.Domain()) {
			return &streamErr{"host-unknown", "this server does not serve " + to.Domain()}
		}
		return &streamErr{"invalid-from", "the sender's domain is not authenticated on this stream"}
	}
	return c.m.receive(st, from, to, &c.refusals)
}

func randomID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// inReader bounds negotiation and idle time and paces reads.
type inReader struct {
	c        net.Conn  // what is read: raw, or TLS over it
	raw      net.Conn  // where deadlines are set
	deadline time.Time // negotiation deadline; then moved on by every read
	idle     time.Duration
	lim      *rate.Limiter
	ctx      context.Context

	mu  sync.Mutex
	end time.Time // set by closeAt: no read past it
}

// closeAt ends reading at t at the latest; it may be called from any
// goroutine, also during a read.
func (r *inReader) closeAt(t time.Time) {
	r.mu.Lock()
	r.end = t
	r.mu.Unlock()
	r.raw.SetReadDeadline(t)
}

func (r *inReader) Read(p []byte) (int, error) {
	dl := r.deadline
	if r.idle > 0 {
		dl = time.Now().Add(r.idle)
	}
	r.mu.Lock()
	if !r.end.IsZero() && r.end.Before(dl) {
		dl = r.end
	}
	r.raw.SetReadDeadline(dl)
	r.mu.Unlock()
	n, err := r.c.Read(p)
	if n > 0 && r.lim != nil {
		res := r.lim.ReserveN(time.Now(), min(n, r.lim.Burst()))
		if d := res.Delay(); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-r.ctx.Done():
				t.Stop()
			}
		}
	}
	return n, err
}
