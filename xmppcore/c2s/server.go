// Package c2s accepts client connections: it negotiates the stream (STARTTLS
// or direct TLS, SASL, resource binding) and then moves stanzas between the
// socket and the router. It implements XEP-0198 stream management (acks and
// resumption: a session outlives a dropped connection for ResumeTimeout) and
// XEP-0352 client state indication (see csi.go for what waits).
package c2s

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/aldis-im/aldis/core/obs"
	"github.com/aldis-im/aldis/xmppcore/accounts"
	"github.com/aldis-im/aldis/xmppcore/router"
)

// Config configures the client listener.
type Config struct {
	// Domain is the primary domain: the one a stream without a to gets.
	// Domains are further domains served (virtual hosts).
	Domain               string
	Domains              []string
	TLS                  *tls.Config // nil: no TLS at all (tests only)
	RequireTLS           bool
	AllowPlainWithoutTLS bool
	MaxStanza            int
	HandshakeTimeout     time.Duration
	IdleTimeout          time.Duration
	SendQueue            int // stanzas waiting to be written; with XEP-0198 also those waiting for an ack
	RateBytes, RateBurst int
	Registration         bool
	Router               *router.Router
	Accounts             *accounts.Manager
	Limiter              *AuthLimiter
	Log                  *slog.Logger
	Metrics              *obs.Metrics
	// ResumeTimeout is how long a session that enabled XEP-0198
	// resumption stays bound after its connection dropped, waiting for the
	// client to resume it; 0 means 5 minutes, negative disables resumption.
	ResumeTimeout time.Duration
}

// Server serves client connections on any number of listeners.
type Server struct {
	cfg Config
	log *slog.Logger

	mu        sync.Mutex
	conns     map[*conn]struct{}
	listeners map[net.Listener]struct{}
	resumable map[string]*session // XEP-0198 resumption ids
	closing   bool
	wg        sync.WaitGroup
	// stopping is closing for the sessions, which must not take mu.
	stopping atomic.Bool
	detached atomic.Int64 // sessions waiting for their client to resume them

	// ctx bounds the blocking calls of every connection; Shutdown cancels
	// it once the connections are gone.
	ctx    context.Context
	cancel context.CancelFunc
	queued atomic.Int64
	m      serverMetrics
	bufs   sync.Pool // *[]byte of flushChunk capacity, shared by the flushes of all connections
	// writers write for the connections (writer.go), one per processor;
	// nextWriter picks one for each new connection in turn.
	writers    []writer
	nextWriter atomic.Uint32
}

// pickWriter returns the writer of a new connection.
func (s *Server) pickWriter() *writer {
	return &s.writers[s.nextWriter.Add(1)%uint32(len(s.writers))]
}

type serverMetrics struct {
	inMessage, inPresence, inIQ *metrics.Counter
	out                         *metrics.Counter
	authOK, authFail            *metrics.Counter
	streamErrors                *metrics.Counter
	overflows                   *metrics.Counter
	resumed, resumeFailed       *metrics.Counter
	expired, resent             *metrics.Counter
}

// New returns a Server.
func New(cfg Config) *Server {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = obs.NewMetrics()
	}
	if cfg.MaxStanza <= 0 {
		cfg.MaxStanza = 256 << 10
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 30 * time.Second
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 10 * time.Minute
	}
	if cfg.SendQueue <= 0 {
		cfg.SendQueue = 1024
	}
	if cfg.ResumeTimeout == 0 {
		cfg.ResumeTimeout = 5 * time.Minute
	}
	if cfg.Limiter == nil {
		cfg.Limiter = NewAuthLimiter(10, 10, 5*time.Minute)
	}
	s := &Server{cfg: cfg, log: cfg.Log, conns: map[*conn]struct{}{}, listeners: map[net.Listener]struct{}{},
		resumable: map[string]*session{}}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.bufs.New = func() any { b := make([]byte, 0, flushChunk); return &b }
	s.writers = make([]writer, runtime.GOMAXPROCS(0))
	m := cfg.Metrics
	s.m = serverMetrics{
		inMessage:    m.Counter(`aldis_stanzas_in_total{type="message"}`),
		inPresence:   m.Counter(`aldis_stanzas_in_total{type="presence"}`),
		inIQ:         m.Counter(`aldis_stanzas_in_total{type="iq"}`),
		out:          m.Counter(`aldis_stanzas_out_total`),
		authOK:       m.Counter(`aldis_auth_total{result="success"}`),
		authFail:     m.Counter(`aldis_auth_total{result="failure"}`),
		streamErrors: m.Counter(`aldis_stream_errors_total`),
		overflows:    m.Counter(`aldis_send_queue_overflows_total`),
		resumed:      m.Counter(`aldis_sm_resumed_total`),
		resumeFailed: m.Counter(`aldis_sm_resume_failures_total`),
		expired:      m.Counter(`aldis_sm_expired_total`),
		resent:       m.Counter(`aldis_sm_resent_total`),
	}
	m.Gauge(`aldis_c2s_connections`, func() float64 {
		s.mu.Lock()
		defer s.mu.Unlock()
		return float64(len(s.conns))
	})
	m.Gauge(`aldis_c2s_send_queue_depth`, func() float64 { return float64(s.queued.Load()) })
	m.Gauge(`aldis_c2s_detached_sessions`, func() float64 { return float64(s.detached.Load()) })
	return s
}

// serves reports whether domain is one of the domains served.
func (s *Server) serves(domain string) bool {
	return domain == s.cfg.Domain || slices.Contains(s.cfg.Domains, domain)
}

// Serve accepts connections on ln until it is closed; directTLS selects
// XEP-0368 direct TLS instead of STARTTLS.
func (s *Server) Serve(ln net.Listener, directTLS bool) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return net.ErrClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Out of file descriptors and the like: back off, keep serving.
			var ne net.Error
			if errors.As(err, &ne) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn("accept", "err", err, "retry_in", delay)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		cn := newConn(s, c, directTLS)
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			c.Close()
			continue
		}
		s.conns[cn] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go cn.serve()
	}
}

func (s *Server) forget(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.wg.Done()
}

// Shutdown stops accepting, ends every stream with system-shutdown, and
// waits for the connections to finish writing or for ctx to expire.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopping.Store(true)
	s.mu.Lock()
	s.closing = true
	for ln := range s.listeners {
		ln.Close()
	}
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.Close("system-shutdown", "the server is shutting down")
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	defer s.cancel()
	// Sessions waiting for their client end last, when no connection can
	// resume them any more: their unacknowledged messages go to offline
	// storage while the router still runs.
	defer s.endDetached()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		for c := range s.conns {
			c.raw.Close()
		}
		s.mu.Unlock()
		return ctx.Err()
	}
}

func (s *Server) endDetached() {
	s.mu.Lock()
	sessions := make([]*session, 0, len(s.resumable))
	for _, ss := range s.resumable {
		sessions = append(sessions, ss)
	}
	s.mu.Unlock()
	for _, ss := range sessions {
		ss.end()
	}
}

// addResumable registers a resumption id.
func (s *Server) addResumable(id string, ss *session) {
	s.mu.Lock()
	s.resumable[id] = ss
	s.mu.Unlock()
}

// lookupResumable returns the session with a resumption id, or nil.
func (s *Server) lookupResumable(id string) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.resumable[id]
}

func (s *Server) dropResumable(id string) {
	s.mu.Lock()
	delete(s.resumable, id)
	s.mu.Unlock()
}
