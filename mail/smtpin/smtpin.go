// Package smtpin is the SMTP ingress: it accepts mail over SMTP with STARTTLS, limits and recipient checks, and hands each message to a durable consumer before replying 250.
package smtpin

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
	"golang.org/x/time/rate"
)

// Envelope is one SMTP transaction's envelope.
type Envelope struct {
	ID     string // unique per transaction, for logs and queue keys
	From   string // reverse-path; "" for a bounce
	To     []string
	Helo   string
	Remote string // the client's IP address
	TLS    bool
}

// Config sets up a Server. Hostname, Recipient and Deliver are required.
type Config struct {
	// Hostname is the name the server gives in its greeting and Received
	// fields.
	Hostname string
	// TLS enables STARTTLS when set.
	TLS *tls.Config
	// RequireTLS refuses MAIL before STARTTLS.
	RequireTLS bool
	// MaxMessageBytes bounds a message (default 10 MiB): larger ones get
	// 552 during DATA.
	MaxMessageBytes int64
	// MaxRecipients bounds recipients per message (default 100).
	MaxRecipients int
	// MaxConns bounds connections in all (default 100) and MaxConnsPerIP
	// from one IP address (default 10); more are told 421 and closed.
	MaxConns, MaxConnsPerIP int
	// MessagesPerMinute is how many messages one IP address may send per
	// minute, with a burst as large (default 60); more get 421.
	MessagesPerMinute int
	// Timeout bounds each read and write on a connection (default 5 minutes).
	Timeout time.Duration
	// Recipient checks a recipient at RCPT time: nil accepts it; an error
	// refuses it, with its code if it is an *smtp.SMTPError (an unknown
	// recipient should be 550 5.1.1), else 451.
	Recipient func(ctx context.Context, from, to string) error
	// Deliver takes a message whose envelope and data (with our Received
	// field prepended) were accepted. It must store the message durably
	// before it returns nil, since the client is told 250 then. An
	// *smtp.SMTPError is passed to the client; other errors are 451.
	Deliver func(ctx context.Context, env Envelope, data []byte) error
	// Logger; nil discards.
	Logger *slog.Logger
}

// Server is a running SMTP ingress.
type Server struct {
	cfg  Config
	srv  *smtp.Server
	log  *slog.Logger
	ctx  context.Context // cancelled by Close: ends Recipient and Deliver calls
	stop context.CancelFunc

	mu      sync.Mutex
	conns   int
	perIP   map[string]int
	buckets map[string]*rate.Limiter // bounded: reset when it grows past maxBuckets
}

const maxBuckets = 10000

// New checks cfg and builds a server; Serve runs it.
func New(cfg Config) (*Server, error) {
	if cfg.Hostname == "" || cfg.Recipient == nil || cfg.Deliver == nil {
		return nil, errors.New("smtpin: Hostname, Recipient and Deliver are required")
	}
	if cfg.RequireTLS && cfg.TLS == nil {
		return nil, errors.New("smtpin: RequireTLS without a TLS configuration")
	}
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = 10 << 20
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&cfg.MaxRecipients, 100)
	def(&cfg.MaxConns, 100)
	def(&cfg.MaxConnsPerIP, 10)
	def(&cfg.MessagesPerMinute, 60)
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Minute
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, stop := context.WithCancel(context.Background())
	s := &Server{cfg: cfg, log: log, ctx: ctx, stop: stop, perIP: map[string]int{}, buckets: map[string]*rate.Limiter{}}
	srv := smtp.NewServer(backend{s})
	srv.Domain = cfg.Hostname
	srv.TLSConfig = cfg.TLS
	srv.MaxMessageBytes = cfg.MaxMessageBytes
	srv.MaxRecipients = cfg.MaxRecipients
	srv.ReadTimeout = cfg.Timeout
	srv.WriteTimeout = cfg.Timeout
	srv.EnableSMTPUTF8 = true
	srv.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelDebug)
	s.srv = srv
	return s, nil
}

// Serve accepts connections on l until Close.
func (s *Server) Serve(l net.Listener) error {
	err := s.srv.Serve(&limitListener{Listener: l, s: s})
	if errors.Is(err, smtp.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting and waits (until ctx ends) for the sessions
// under way, then closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	s.stop()
	if err != nil {
		return errors.Join(err, s.srv.Close())
	}
	return nil
}

// limitListener refuses connections over the limits with a 421 greeting.
type limitListener struct {
	net.Listener
	s *Server
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := ipOf(c.RemoteAddr())
		s := l.s
		s.mu.Lock()
		over := s.conns >= s.cfg.MaxConns || s.perIP[ip] >= s.cfg.MaxConnsPerIP
		if !over {
			s.conns++
			s.perIP[ip]++
		}
		s.mu.Unlock()
		if over {
			s.log.Info("smtp connection refused: too many connections", "remote", ip)
			go func() {
				_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
				_, _ = io.WriteString(c, "421 4.7.0 "+s.cfg.Hostname+" Too many connections, try again later\r\n")
				_ = c.Close()
			}()
			continue
		}
		return &countedConn{Conn: c, release: func() { s.release(ip) }}, nil
	}
}

func (s *Server) release(ip string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conns--
	if s.perIP[ip]--; s.perIP[ip] <= 0 {
		delete(s.perIP, ip)
	}
}

type countedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *countedConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

// allowMessage applies the per-IP message rate.
func (s *Server) allowMessage(ip string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.buckets[ip]
	if b == nil {
		if len(s.buckets) >= maxBuckets {
			clear(s.buckets) // forgets old senders' history: lenient, but bounded
		}
		n := s.cfg.MessagesPerMinute
		b = rate.NewLimiter(rate.Limit(float64(n)/60), n)
		s.buckets[ip] = b
	}
	return b.Allow()
}

func ipOf(a net.Addr) string {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

type backend struct{ s *Server }

func (b backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return &session{s: b.s, c: c, ip: ipOf(c.Conn().RemoteAddr())}, nil
}

type session struct {
	s    *Server
	c    *smtp.Conn
	ip   string
	env  Envelope
	mail bool
}

var (
	errTLSRequired = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Must issue a STARTTLS command first"}
	errRate        = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Too many messages, slow down"}
	errTemp        = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Temporary failure, try again later"}
)

func (ss *session) Reset() {
	ss.env = Envelope{}
	ss.mail = false
}

func (ss *session) Logout() error { return nil }

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	_, isTLS := ss.c.TLSConnectionState()
	if ss.s.cfg.RequireTLS && !isTLS {
		return errTLSRequired
	}
	if !ss.s.allowMessage(ss.ip) {
		return errRate
	}
	ss.env = Envelope{ID: newID(), From: from, Helo: ss.c.Hostname(), Remote: ss.ip, TLS: isTLS}
	ss.mail = true
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if !ss.mail {
		return &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "MAIL first"}
	}
	ctx, cancel := context.WithTimeout(ss.s.ctx, 30*time.Second)
	defer cancel()
	if err := ss.s.cfg.Recipient(ctx, ss.env.From, to); err != nil {
		ss.s.log.Info("smtp recipient refused", "id", ss.env.ID, "remote", ss.ip, "to", to, "err", err)
		return smtpError(err)
	}
	ss.env.To = append(ss.env.To, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	// Read it all first: go-smtp needs r consumed, and the size limit
	// shows here as ErrDataTooLarge.
	var body bytes.Buffer
	if _, err := body.ReadFrom(r); err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			ss.s.log.Info("smtp message refused", "id", ss.env.ID, "remote", ss.ip, "err", err)
			return se
		}
		return err
	}
	data := append(ss.received(), body.Bytes()...)
	ctx, cancel := context.WithTimeout(ss.s.ctx, 2*time.Minute)
	defer cancel()
	if err := ss.s.cfg.Deliver(ctx, ss.env, data); err != nil {
		ss.s.log.Info("smtp message refused", "id", ss.env.ID, "remote", ss.ip, "from", ss.env.From, "err", err)
		return smtpError(err)
	}
	ss.s.log.Info("smtp message accepted", "id", ss.env.ID, "remote", ss.ip, "from", ss.env.From,
		"to", ss.env.To, "bytes", len(data), "tls", ss.env.TLS)
	return nil
}

// received is our Received field (RFC 5321 §4.4).
func (ss *session) received() []byte {
	with := "ESMTP"
	if ss.env.TLS {
		with = "ESMTPS"
	}
	helo := strings.Map(func(r rune) rune {
		if r <= ' ' || r > '~' || r == '(' || r == ')' || r == ';' {
			return -1
		}
		return r
	}, ss.env.Helo)
	for_ := ""
	if len(ss.env.To) == 1 && !strings.ContainsAny(ss.env.To[0], "\r\n<>") {
		for_ = "\r\n\tfor <" + ss.env.To[0] + ">"
	}
	return fmt.Appendf(nil, "Received: from %s ([%s])\r\n\tby %s with %s id %s%s;\r\n\t%s\r\n",
		helo, ss.ip, ss.s.cfg.Hostname, with, ss.env.ID, for_, time.Now().UTC().Format(time.RFC1123Z))
}

// smtpError passes SMTP errors on and hides the others behind a 451.
func smtpError(err error) error {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se
	}
	return errTemp
}

func newID() string {
	var b [9]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
