// Package relay sends mail to a smarthost or to the recipient domain's MX hosts, with STARTTLS and SMTP AUTH, telling permanent failures from temporary ones.
package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Config sets up a Client.
type Config struct {
	// Hostname is the name sent in EHLO.
	Hostname string
	// Smarthost, "host:port", receives all mail; empty: each recipient
	// domain's MX hosts, on port 25.
	Smarthost string
	// Username and Password enable SMTP AUTH (PLAIN, else LOGIN) to the
	// smarthost; it is only done over TLS.
	Username, Password string
	// RequireTLS fails delivery to a server without STARTTLS or with a
	// certificate that does not verify. Without it, TLS is used when
	// offered: verified for a smarthost, unverified for MX hosts (as most
	// MTAs do; the alternative is plaintext).
	RequireTLS bool
	// RootCAs verify servers' certificates; nil: the system roots.
	RootCAs *tls.Config
	// Timeout bounds connecting and each command (default 1 minute).
	Timeout time.Duration
	// LookupMX and Dial may be replaced in tests; nil: the system's.
	LookupMX func(ctx context.Context, domain string) ([]*net.MX, error)
	Dial     func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Client sends mail. It is safe for concurrent use; each Send uses a
// connection of its own.
type Client struct {
	cfg Config
}

// New returns a client for cfg.
func New(cfg Config) (*Client, error) {
	if cfg.Hostname == "" {
		return nil, errors.New("relay: no hostname for EHLO")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = time.Minute
	}
	if cfg.LookupMX == nil {
		cfg.LookupMX = net.DefaultResolver.LookupMX
	}
	if cfg.Dial == nil {
		d := &net.Dialer{Timeout: cfg.Timeout}
		cfg.Dial = d.DialContext
	}
	return &Client{cfg: cfg}, nil
}

// Error is a delivery failure. Permanent ones must not be retried.
type Error struct {
	Permanent bool
	Host      string // the server that failed, if any
	Err       error
}

func (e *Error) Error() string {
	if e.Host != "" {
		return e.Host + ": " + e.Err.Error()
	}
	return e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// IsPermanent reports whether err is a permanent delivery failure.
func IsPermanent(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Permanent
}

// Send delivers data from the reverse-path from ("" for a bounce) to one
// recipient, trying the hosts in turn until one gives an answer.
func (c *Client) Send(ctx context.Context, from, to string, data []byte) error {
	hosts, err := c.hosts(ctx, to)
	if err != nil {
		return err
	}
	var errs []error
	for _, h := range hosts {
		err := c.sendTo(ctx, h, from, to, data)
		if err == nil {
			return nil
		}
		var e *Error
		if errors.As(err, &e) && e.Permanent {
			return err
		}
		// An SMTP-level temporary answer is the domain's answer; network
		// trouble means the next host may do better.
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			return err
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return &Error{Err: errors.Join(errs...)}
}

// hosts returns the "host:port" addresses to try, best first.
func (c *Client) hosts(ctx context.Context, to string) ([]string, error) {
	if c.cfg.Smarthost != "" {
		return []string{c.cfg.Smarthost}, nil
	}
	at := strings.LastIndexByte(to, '@')
	if at < 0 || at == len(to)-1 {
		return nil, &Error{Permanent: true, Err: fmt.Errorf("recipient %q has no domain", to)}
	}
	domain := strings.TrimSuffix(to[at+1:], ".")
	mxs, err := c.cfg.LookupMX(ctx, domain)
	if err != nil {
		var dnsErr *net.DNSError
		if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
			if len(mxs) == 0 {
				// No MX: the domain itself is the implicit MX (RFC 5321 §5.1)
				// if it resolves.
				if _, err := net.DefaultResolver.LookupHost(ctx, domain); err != nil {
					return nil, &Error{Permanent: true, Err: fmt.Errorf("domain %s does not exist", domain)}
				}
				return []string{net.JoinHostPort(domain, "25")}, nil
			}
		} else {
			return nil, &Error{Err: fmt.Errorf("MX lookup for %s: %w", domain, err)}
		}
	}
	slices.SortStableFunc(mxs, func(a, b *net.MX) int { return int(a.Pref) - int(b.Pref) })
	var out []string
	for _, mx := range mxs {
		h := strings.TrimSuffix(mx.Host, ".")
		if h == "" {
			// Null MX (RFC 7505): the domain accepts no mail.
			return nil, &Error{Permanent: true, Err: fmt.Errorf("domain %s accepts no mail (null MX)", domain)}
		}
		out = append(out, net.JoinHostPort(h, "25"))
	}
	if len(out) == 0 {
		out = []string{net.JoinHostPort(domain, "25")}
	}
	return out, nil
}

// sendTo runs one SMTP session with addr.
func (c *Client) sendTo(ctx context.Context, addr, from, to string, data []byte) (err error) {
	host, _, _ := net.SplitHostPort(addr)
	fail := func(err error) error {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			return &Error{Permanent: se.Code/100 == 5, Host: host, Err: err}
		}
		return &Error{Host: host, Err: err}
	}
	dctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	conn, err := c.cfg.Dial(dctx, "tcp", addr)
	cancel()
	if err != nil {
		return fail(err)
	}
	// go-smtp takes no context: closing the connection ends a session
	// whose context ends.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	tlsCfg := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	if c.cfg.RootCAs != nil {
		tlsCfg = c.cfg.RootCAs.Clone()
		tlsCfg.ServerName = host
	}
	if c.cfg.Smarthost == "" && !c.cfg.RequireTLS {
		tlsCfg.InsecureSkipVerify = true // opportunistic TLS to MX hosts
	}
	// go-smtp's client only does STARTTLS as the first thing on a fresh
	// connection, with "localhost" as our name; so the plaintext part
	// (greeting, EHLO, STARTTLS) is done here, and the client takes over
	// after it, on a connection that replays a greeting to it.
	conn, isTLS, err := c.opening(conn, tlsCfg)
	if err != nil {
		return fail(err)
	}
	if !isTLS && c.cfg.RequireTLS {
		return fail(errors.New("server does not offer STARTTLS, and TLS is required"))
	}
	cl := smtp.NewClient(&greetedConn{Conn: conn, greeting: []byte("220 resumed\r\n")})
	cl.CommandTimeout = c.cfg.Timeout
	defer cl.Close()
	if err := cl.Hello(c.cfg.Hostname); err != nil {
		return fail(err)
	}
	if c.cfg.Username != "" {
		if !isTLS {
			return fail(errors.New("not authenticating without TLS"))
		}
		var a sasl.Client
		switch {
		case cl.SupportsAuth("PLAIN"):
			a = sasl.NewPlainClient("", c.cfg.Username, c.cfg.Password)
		case cl.SupportsAuth("LOGIN"):
			a = sasl.NewLoginClient(c.cfg.Username, c.cfg.Password)
		default:
			return fail(errors.New("server offers neither AUTH PLAIN nor LOGIN"))
		}
		if err := cl.Auth(a); err != nil {
			return fail(fmt.Errorf("AUTH: %w", err))
		}
	}
	if max, ok := cl.MaxMessageSize(); ok && max > 0 && len(data) > max {
		return &Error{Permanent: true, Host: host, Err: fmt.Errorf("message of %d bytes is over the server's limit of %s", len(data), strconv.Itoa(max))}
	}
	if err := cl.Mail(Path(from), nil); err != nil {
		return fail(err)
	}
	if err := cl.Rcpt(Path(to), nil); err != nil {
		return fail(err)
	}
	w, err := cl.Data()
	if err != nil {
		return fail(err)
	}
	if _, err := w.Write(data); err != nil {
		return fail(err)
	}
	if err := w.Close(); err != nil {
		return fail(err)
	}
	_ = cl.Quit()
	return nil
}

// opening reads the greeting, says EHLO and, if the server offers it,
// starts TLS. It returns the connection to go on with.
func (c *Client) opening(conn net.Conn, tlsCfg *tls.Config) (net.Conn, bool, error) {
	_ = conn.SetDeadline(time.Now().Add(c.cfg.Timeout))
	defer conn.SetDeadline(time.Time{})
	tp := textproto.NewConn(conn)
	if _, _, err := tp.ReadResponse(220); err != nil {
		return nil, false, smtpErr(err)
	}
	if err := tp.PrintfLine("EHLO %s", c.cfg.Hostname); err != nil {
		return nil, false, err
	}
	_, msg, err := tp.ReadResponse(250)
	if err != nil {
		return nil, false, smtpErr(err)
	}
	starttls := false
	for _, line := range strings.Split(msg, "\n")[1:] {
		if strings.EqualFold(strings.TrimSpace(line), "STARTTLS") {
			starttls = true
		}
	}
	if !starttls {
		return conn, false, nil
	}
	if err := tp.PrintfLine("STARTTLS"); err != nil {
		return nil, false, err
	}
	if _, _, err := tp.ReadResponse(220); err != nil {
		return nil, false, smtpErr(err)
	}
	tc := tls.Client(conn, tlsCfg)
	if err := tc.Handshake(); err != nil {
		return nil, false, fmt.Errorf("STARTTLS: %w", err)
	}
	return tc, true, nil
}

// smtpErr turns a textproto error into the *smtp.SMTPError go-smtp uses.
func smtpErr(err error) error {
	var te *textproto.Error
	if errors.As(err, &te) {
		return &smtp.SMTPError{Code: te.Code, Message: te.Msg}
	}
	return err
}

// greetedConn replays a greeting to the SMTP client before the real
// traffic: the server greeted us before the client existed.
type greetedConn struct {
	net.Conn
	greeting []byte
}

func (g *greetedConn) Read(p []byte) (int, error) {
	if len(g.greeting) > 0 {
		n := copy(p, g.greeting)
		g.greeting = g.greeting[n:]
		return n, nil
	}
	return g.Conn.Read(p)
}

// Path writes an address as the inside of an RFC 5321 path. Addresses are
// kept with their local part unquoted (as go-smtp and net/mail give them),
// so one that is not a dot-string ("john smith", "x@y") is quoted here.
func Path(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || isDotString(addr[:at]) {
		return addr
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range addr[:at] {
		if r == '"' || r == '\\' {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	b.WriteByte('"')
	b.WriteString(addr[at:])
	return b.String()
}

// isDotString reports whether s is an RFC 5321 Dot-string (with RFC 6531
// UTF-8): atoms of atext joined by single dots.
func isDotString(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 0x80, r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.':
		case strings.ContainsRune("!#$%&'*+-/=?^_`{|}~", r):
		default:
			return false
		}
	}
	return true
}
