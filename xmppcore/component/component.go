// Package component accepts external components (XEP-0114), each serving a subdomain of its own through the router.
package component

import (
	"context"
	"crypto/rand"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/stanza"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// Router takes the stanzas components send, and the bounces of those that
// could not reach a component.
type Router interface {
	// Inject routes a stanza whose from has been verified; it never blocks.
	Inject(st *wire.Element, from, to jid.JID)
}

// Config configures the component listener.
type Config struct {
	Secrets          map[string]string // component domain → shared secret
	Router           Router
	MaxStanza        int
	HandshakeTimeout time.Duration
	SendQueue        int // stanzas waiting to be written to one component
	Log              *slog.Logger
}

// Server accepts component connections on any number of listeners.
type Server struct {
	cfg Config
	log *slog.Logger
	wg  sync.WaitGroup

	mu        sync.Mutex
	active    map[string]*conn // authenticated, by domain
	all       map[*conn]struct{}
	listeners map[net.Listener]struct{}
	closing   bool
}

// New returns a Server.
func New(cfg Config) *Server {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxStanza <= 0 {
		cfg.MaxStanza = 256 << 10
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 30 * time.Second
	}
	if cfg.SendQueue <= 0 {
		cfg.SendQueue = 1024
	}
	return &Server{cfg: cfg, log: cfg.Log, active: map[string]*conn{}, all: map[*conn]struct{}{},
		listeners: map[net.Listener]struct{}{}}
}

// Service is the router service for one component domain: it hands
// stanzas to the connected component, or bounces them while none is.
type Service struct {
	s      *Server
	domain string
}

// Service returns the router service of a configured component domain.
func (s *Server) Service(domain string) *Service { return &Service{s: s, domain: domain} }

// Route queues st for the component; it never blocks.
func (sv *Service) Route(st *wire.Element, from, to jid.JID) {
	sv.s.mu.Lock()
	c := sv.s.active[sv.domain]
	sv.s.mu.Unlock()
	if c != nil && c.enqueue(st) {
		return
	}
	sv.s.bounce(st, from, to)
}

// Principal names the component as a label principal: like a remote
// server, it has the clearance configured for its domain.
func (sv *Service) Principal() string { return "peer:" + sv.domain }

// Identity names the component in the server's disco#items.
func (sv *Service) Identity() (category, typ, name string) { return "component", "generic", "" }

func (s *Server) bounce(st *wire.Element, from, to jid.JID) {
	if st.Attr("type") == "error" || (st.Local() == "presence" && st.Attr("type") != "probe" && st.Attr("type") != "subscribe") {
		return
	}
	e := stanza.Error(st, stanza.Cancel, "service-unavailable", "")
	e.SetAttr("from", to.String())
	e.SetAttr("to", from.String())
	s.cfg.Router.Inject(e, to, from)
}

// Serve accepts component connections on ln until it is closed.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return net.ErrClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
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
		c := &conn{s: s, raw: raw, queue: make(chan *wire.Element, s.cfg.SendQueue), quit: make(chan struct{})}
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			raw.Close()
			continue
		}
		s.all[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go c.serve()
	}
}

// register makes c the component for its domain unless one is connected.
func (s *Server) register(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active[c.domain] != nil {
		return false
	}
	s.active[c.domain] = c
	return true
}

func (s *Server) forget(c *conn) {
	s.mu.Lock()
	if s.active[c.domain] == c {
		delete(s.active, c.domain)
	}
	delete(s.all, c)
	s.mu.Unlock()
	s.wg.Done()
}

// Shutdown closes the listeners and every component stream, and waits
// for them or for ctx.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	for ln := range s.listeners {
		ln.Close()
	}
	conns := make([]*conn, 0, len(s.all))
	for c := range s.all {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.stop()
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		for _, c := range conns {
			c.raw.Close()
		}
		return ctx.Err()
	}
}

// handshakeDigest is the XEP-0114 handshake: lowercase hex SHA-1 of the
// stream id followed by the secret.
func handshakeDigest(id, secret string) string {
	h := sha1.Sum([]byte(id + secret))
	return hex.EncodeToString(h[:])
}

// checkHandshake reports whether a <handshake/> element proves the secret,
// comparing in constant time.
func checkHandshake(el *wire.Element, id, secret string) bool {
	if el.Local() != "handshake" || el.Space != stanza.NSComponent {
		return false
	}
	got := strings.ToLower(strings.TrimSpace(el.Text()))
	want := handshakeDigest(id, secret)
	return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

func randomID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
