// Package s2s federates with other XMPP servers over server-to-server streams (RFC 6120), authenticated by SASL EXTERNAL or Server Dialback (XEP-0220).
//
// One outgoing stream per (local domain, remote domain) pair carries every
// stanza from that local domain to that remote one; it is opened on demand,
// queues stanzas (bounded) while it comes up, and closes when idle. Incoming
// streams are accepted on the listeners; what they carry is checked (the
// sender's domain must be the authenticated one, the recipient must be
// local) and injected into the router.
package s2s

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"golang.org/x/time/rate"

	"github.com/aldis-im/aldis/core/obs"
	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/peering"
	"github.com/aldis-im/aldis/xmppcore/stanza"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// Router takes the stanzas remote servers send, and the bounces of those
// that could not be sent.
type Router interface {
	// Inject routes a stanza whose from has been verified; it never blocks.
	Inject(st *wire.Element, from, to jid.JID)
}

// Config configures federation.
type Config struct {
	// Local reports whether this server serves a domain (its own, or a
	// service's or component's): only those may send and receive.
	Local  func(domain string) bool
	Router Router
	// Certificate returns the certificate of a local domain, presented to
	// peers both ways; nil disables TLS (tests only).
	Certificate func(domain string) *tls.Certificate
	// Roots verifies peers' certificates; nil means the system roots.
	Roots *x509.CertPool
	// RequireTLS and RequireCertificates are the defaults when Peering
	// is nil; otherwise Peering's rules decide, per remote domain.
	RequireTLS          bool
	RequireCertificates bool
	// Peering are the peering controls: which domains may federate, how
	// they authenticate, what passes and how fast. Nil: every domain, as
	// RequireTLS and RequireCertificates say.
	Peering *peering.Policy
	// Bidi offers and requests bidirectional streams (XEP-0288): a peer
	// that opened a stream here gets its answers on it, rather than on a
	// second connection.
	Bidi bool
	// Hosts are static routes, remote domain to "host:port", tried
	// instead of DNS.
	Hosts          map[string]string
	MaxStanza      int
	ConnectTimeout time.Duration
	IdleTimeout    time.Duration
	Queue          int // stanzas waiting per outgoing stream
	RateBytes      int // per incoming stream; 0 = unlimited
	RateBurst      int
	MaxPerIP       int // incoming streams per remote address
	// RateRefusals is how many stanzas per second (and in a burst) over
	// its peer's rate a stream gets refused with resource-constraint;
	// beyond that, answering would cost as much as the flood, so the
	// stream is paced instead: read no faster than the rate allows.
	// 0 means 100.
	RateRefusals int
	Resolver     *net.Resolver
	Log          *slog.Logger
	Metrics      *obs.Metrics
}

// pair names an outgoing stream.
type pair struct{ local, remote string }

// Manager owns the outgoing streams and serves incoming ones.
type Manager struct {
	cfg    Config
	log    *slog.Logger
	secret []byte // dialback keys (XEP-0185); new each start

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	out       map[pair]*outConn
	in        map[*inConn]struct{}
	perIP     map[string]int
	listeners map[net.Listener]struct{}
	closing   bool

	m mgrMetrics
}

type mgrMetrics struct {
	in, out, bounced, authFail *metrics.Counter
	// refused counts what the peering controls refused, by direction
	// ("in", "out") and reason.
	refused map[string]map[peering.Reason]*metrics.Counter
}

// refusedReasons are the values of the reason label of
// aldis_s2s_peering_refused_total.
var refusedReasons = []peering.Reason{peering.Denied, peering.KindRule, peering.Namespace, peering.RateLimit}

// New returns a Manager; nothing connects until Send or Serve.
func New(cfg Config) *Manager {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = obs.NewMetrics()
	}
	if cfg.MaxStanza <= 0 {
		cfg.MaxStanza = 256 << 10
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 30 * time.Second
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 10 * time.Minute
	}
	if cfg.Queue <= 0 {
		cfg.Queue = 1000
	}
	if cfg.MaxPerIP <= 0 {
		cfg.MaxPerIP = 20
	}
	if cfg.RateRefusals <= 0 {
		cfg.RateRefusals = 100
	}
	if cfg.Resolver == nil {
		cfg.Resolver = net.DefaultResolver
	}
	if cfg.Peering == nil {
		// No specs: New cannot fail.
		cfg.Peering, _ = peering.New(peering.Defaults{Allow: true, RequireTLS: cfg.RequireTLS,
			CertificateOnly: cfg.RequireCertificates}, nil)
	}
	m := &Manager{cfg: cfg, log: cfg.Log, secret: make([]byte, 32), out: map[pair]*outConn{},
		in: map[*inConn]struct{}{}, perIP: map[string]int{}, listeners: map[net.Listener]struct{}{}}
	_, _ = rand.Read(m.secret)
	m.ctx, m.cancel = context.WithCancel(context.Background())
	mt := cfg.Metrics
	m.m = mgrMetrics{
		in:       mt.Counter(`aldis_s2s_stanzas_total{dir="in"}`),
		out:      mt.Counter(`aldis_s2s_stanzas_total{dir="out"}`),
		bounced:  mt.Counter(`aldis_s2s_bounced_total`),
		authFail: mt.Counter(`aldis_s2s_auth_failures_total`),
		refused:  map[string]map[peering.Reason]*metrics.Counter{},
	}
	for _, dir := range []string{"in", "out"} {
		m.m.refused[dir] = map[peering.Reason]*metrics.Counter{}
		for _, r := range refusedReasons {
			m.m.refused[dir][r] = mt.Counter(`aldis_s2s_peering_refused_total{dir="` + dir + `",reason="` + string(r) + `"}`)
		}
	}
	mt.Gauge(`aldis_s2s_streams{dir="out"}`, func() float64 {
		m.mu.Lock()
		defer m.mu.Unlock()
		return float64(len(m.out))
	})
	mt.Gauge(`aldis_s2s_streams{dir="in"}`, func() float64 {
		m.mu.Lock()
		defer m.mu.Unlock()
		return float64(len(m.in))
	})
	return m
}

// item is a stanza waiting for its outgoing stream.
type item struct {
	st       *wire.Element
	from, to jid.JID
	retried  bool // already survived one stream that failed
}

// Send queues st for the stream from its sender's domain to its
// recipient's, opening it if needed; it never blocks. It implements
// router.Remote.
func (m *Manager) Send(st *wire.Element, from, to jid.JID) {
	m.send(item{st: st, from: from, to: to})
}

func (m *Manager) send(it item) {
	if m.cfg.Local(it.to.Domain()) {
		return // the router routes local stanzas itself; never loop them out
	}
	if !m.cfg.Local(it.from.Domain()) {
		m.log.Warn("s2s: refusing to send a stanza from a domain not served here", "from", it.from.String())
		return
	}
	if why := m.rule(it.to.Domain()).Check(it.st); why != peering.OK {
		m.refuse("out", why, it.to.Domain(), it.st)
		m.bounceText(it, stanza.Cancel, "not-allowed", "refused by this server's peering policy")
		return
	}
	p := pair{it.from.Domain(), it.to.Domain()}
	m.mu.Lock()
	if m.closing {
		m.mu.Unlock()
		m.bounce(it, stanza.Wait, "remote-server-timeout")
		return
	}
	c := m.out[p]
	if c == nil {
		c = newOut(m, p)
		m.out[p] = c
		m.wg.Add(1)
		go c.run()
	}
	ok := c.enqueue(it)
	m.mu.Unlock()
	if !ok {
		m.bounce(it, stanza.Wait, "resource-constraint")
	}
}

// attach makes an incoming bidirectional stream carry what this server
// sends on the pair, unless a stream for it exists already.
func (m *Manager) attach(p pair, in *inConn) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closing || m.out[p] != nil {
		return
	}
	c := newOut(m, p)
	c.in = in
	m.out[p] = c
	m.wg.Add(1)
	go c.run()
	m.log.Info("s2s: incoming stream is bidirectional (XEP-0288)", "local", p.local, "remote", p.remote)
}

// receive checks a stanza a peer sent on a stream authenticated for its
// from and to domains (an incoming one, or an outgoing bidirectional one)
// against the peering controls, and routes it. refusals bounds the
// stream's rate refusals (see Config.RateRefusals); an error ends the stream.
func (m *Manager) receive(st *wire.Element, from, to jid.JID, refusals **rate.Limiter) error {
	m.m.in.Inc()
	stanza.FromPeer(st, stanza.NSServer)
	rule := m.rule(from.Domain())
	why := rule.Check(st)
	if now := time.Now(); why == peering.OK && !rule.Take(now) {
		if *refusals == nil {
			*refusals = rate.NewLimiter(rate.Limit(m.cfg.RateRefusals), m.cfg.RateRefusals)
		}
		if (*refusals).AllowN(now, 1) {
			why = peering.RateLimit
		} else if err := rule.Wait(m.ctx); err != nil {
			// Refusing has not slowed the peer down: stop reading until
			// its rate allows this stanza. Its queue fills, not ours.
			return &streamErr{"system-shutdown", ""}
		}
	}
	switch why {
	case peering.OK:
		m.cfg.Router.Inject(st, from, to)
	case peering.Denied:
		m.m.refused["in"][peering.Denied].Inc()
		return &streamErr{"policy-violation", "this server does not federate with " + from.Domain()}
	case peering.RateLimit:
		m.refuse("in", why, from.Domain(), st)
		m.answer(st, from, to, stanza.Wait, "resource-constraint", "too many stanzas; slow down")
	default:
		m.refuse("in", why, from.Domain(), st)
		m.answer(st, from, to, stanza.Cancel, "not-allowed", "refused by this server's peering policy")
	}
	return nil
}

// answer returns an error for a stanza a peer sent, over the stream to
// the peer.
func (m *Manager) answer(st *wire.Element, from, to jid.JID, typ, cond, text string) {
	if !answerable(st) {
		return
	}
	m.send(item{st: stanza.Error(st, typ, cond, text), from: to, to: from})
}

// checkAddresses parses the addresses of a stanza read from a peer.
func checkAddresses(st *wire.Element) (from, to jid.JID, err error) {
	switch st.Local() {
	case "message", "presence", "iq":
	default:
		return from, to, &streamErr{"unsupported-stanza-type", "unknown element " + st.Local()}
	}
	from, err1 := jid.Parse(st.Attr("from"))
	to, err2 := jid.Parse(st.Attr("to"))
	if err1 != nil || err2 != nil {
		return from, to, &streamErr{"improper-addressing", "a stanza needs valid from and to"}
	}
	return from, to, nil
}

// forget removes an outgoing stream that ended and returns what it still
// held; holding m.mu orders it against send, so nothing is queued on a
// stream that has gone.
func (m *Manager) forget(c *outConn) []item {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.out[c.p] == c {
		delete(m.out, c.p)
	}
	return c.drain()
}

// rule returns the peering controls of a remote domain.
func (m *Manager) rule(domain string) *peering.Rule { return m.cfg.Peering.Lookup(domain) }

// refuse counts and logs a stanza the peering controls refused.
func (m *Manager) refuse(dir string, why peering.Reason, remote string, st *wire.Element) {
	m.m.refused[dir][why].Inc()
	m.log.Debug("s2s: refused by the peering policy", "dir", dir, "reason", string(why), "remote", remote,
		"kind", st.Local(), "id", st.Attr("id"))
}

// bounce returns an error for a stanza that could not be sent, from the
// remote recipient to the local sender. Errors and iq results are never
// bounced.
func (m *Manager) bounce(it item, typ, cond string) { m.bounceText(it, typ, cond, "") }

func (m *Manager) bounceText(it item, typ, cond, text string) {
	if !answerable(it.st) {
		return
	}
	m.m.bounced.Inc()
	e := stanza.Error(it.st, typ, cond, text)
	e.SetAttr("from", it.to.String())
	e.SetAttr("to", it.from.String())
	m.cfg.Router.Inject(e, it.to, it.from)
}

// Serve accepts incoming streams on ln until it is closed; directTLS
// expects TLS from the first byte (XEP-0368).
func (m *Manager) Serve(ln net.Listener, directTLS bool) error {
	m.mu.Lock()
	if m.closing {
		m.mu.Unlock()
		return net.ErrClosed
	}
	m.listeners[ln] = struct{}{}
	m.mu.Unlock()
	for {
		raw, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			return err
		}
		ip, _, _ := net.SplitHostPort(raw.RemoteAddr().String())
		m.mu.Lock()
		if m.closing || m.perIP[ip] >= m.cfg.MaxPerIP {
			m.mu.Unlock()
			raw.Close()
			continue
		}
		m.perIP[ip]++
		c := newIn(m, raw, ip, directTLS)
		m.in[c] = struct{}{}
		m.wg.Add(1)
		m.mu.Unlock()
		go c.serve()
	}
}

func (m *Manager) forgetIn(c *inConn) {
	m.mu.Lock()
	delete(m.in, c)
	if m.perIP[c.ip]--; m.perIP[c.ip] <= 0 {
		delete(m.perIP, c.ip)
	}
	m.mu.Unlock()
	m.wg.Done()
}

// Shutdown closes the listeners and every stream, outgoing ones after
// writing what they hold, and waits for them or for ctx.
func (m *Manager) Shutdown(ctx context.Context) error {
	m.mu.Lock()
	m.closing = true
	for ln := range m.listeners {
		ln.Close()
	}
	ins := make([]*inConn, 0, len(m.in))
	for c := range m.in {
		ins = append(ins, c)
	}
	outs := make([]*outConn, 0, len(m.out))
	for _, c := range m.out {
		outs = append(outs, c)
	}
	m.mu.Unlock()
	for _, c := range outs {
		c.stop()
	}
	m.cancel() // streams still connecting give up; their stanzas bounce
	for _, c := range ins {
		c.close("system-shutdown", "the server is shutting down")
	}
	done := make(chan struct{})
	go func() { m.wg.Wait(); close(done) }()
	defer m.cancel()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		m.cancel()
		for _, c := range ins {
			c.raw.Close()
		}
		return ctx.Err()
	}
}

// answerable reports whether an error may be returned for st: not for an
// error, nor for an iq result (RFC 6120 §8.2.3).
func answerable(st *wire.Element) bool {
	typ := st.Attr("type")
	return typ != "error" && !(st.Local() == "iq" && typ == "result")
}
