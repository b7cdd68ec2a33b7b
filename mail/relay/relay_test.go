package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/aldis-im/aldis/core/certs"
)

// fakeMX is a go-smtp server that records what it receives.
type fakeMX struct {
	mu      sync.Mutex
	got     []string // "from to tls auth data"
	rcptErr error
	user    string
}

type mxSession struct {
	mx   *fakeMX
	c    *smtp.Conn
	from string
	to   string
	user string
}

func (m *fakeMX) NewSession(c *smtp.Conn) (smtp.Session, error) { return &mxSession{mx: m, c: c}, nil }

func (s *mxSession) AuthMechanisms() []string { return []string{sasl.Plain} }
func (s *mxSession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if username != "relay" || password != "secret" {
			return errors.New("bad credentials")
		}
		s.user = username
		return nil
	}), nil
}
func (s *mxSession) Reset()                                      {}
func (s *mxSession) Logout() error                               { return nil }
func (s *mxSession) Mail(from string, _ *smtp.MailOptions) error { s.from = from; return nil }
func (s *mxSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.mx.mu.Lock()
	defer s.mx.mu.Unlock()
	if s.mx.rcptErr != nil {
		return s.mx.rcptErr
	}
	s.to = to
	return nil
}
func (s *mxSession) Data(r io.Reader) error {
	b, _ := io.ReadAll(r)
	_, isTLS := s.c.TLSConnectionState()
	s.mx.mu.Lock()
	defer s.mx.mu.Unlock()
	tlsMark := "plain"
	if isTLS {
		tlsMark = "tls"
	}
	s.mx.got = append(s.mx.got, strings.Join([]string{s.from, s.to, tlsMark, s.user, s.c.Hostname(), string(b)}, " "))
	return nil
}

func startMX(t *testing.T, withTLS bool) (string, *fakeMX) {
	t.Helper()
	mx := &fakeMX{}
	srv := smtp.NewServer(mx)
	srv.Domain = "mx.test"
	srv.AllowInsecureAuth = false
	if withTLS {
		src, _, err := certs.Open("", "", t.TempDir(), []string{"mx.test"})
		if err != nil {
			t.Fatal(err)
		}
		srv.TLSConfig = src.TLSConfig()
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String(), mx
}

func TestSmarthostTLSAuth(t *testing.T) {
	addr, mx := startMX(t, true)
	c, err := New(Config{Hostname: "gw.example.org", Smarthost: addr, Username: "relay", Password: "secret",
		RequireTLS: true, RootCAs: &tls.Config{InsecureSkipVerify: true}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Send(t.Context(), "alice@example.org", "bob@example.net", []byte("Subject: x\r\n\r\nhi\r\n")); err != nil {
		t.Fatal(err)
	}
	mx.mu.Lock()
	defer mx.mu.Unlock()
	if len(mx.got) != 1 || mx.got[0] != "alice@example.org bob@example.net tls relay gw.example.org Subject: x\r\n\r\nhi\r\n" {
		t.Errorf("received %q", mx.got)
	}
}

func TestErrorsClassified(t *testing.T) {
	addr, mx := startMX(t, false)
	c, _ := New(Config{Hostname: "gw.example.org", Smarthost: addr})
	mx.rcptErr = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	err := c.Send(t.Context(), "a@example.org", "x@example.net", []byte("x\r\n"))
	if !IsPermanent(err) || !strings.Contains(err.Error(), "no such user") {
		t.Errorf("550: %v, want permanent", err)
	}
	mx.mu.Lock()
	mx.rcptErr = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "later"}
	mx.mu.Unlock()
	if err := c.Send(t.Context(), "a@example.org", "x@example.net", []byte("x\r\n")); err == nil || IsPermanent(err) {
		t.Errorf("451: %v, want temporary", err)
	}
	// Plaintext is fine unless TLS is required; then it is a temporary failure.
	mx.mu.Lock()
	mx.rcptErr = nil
	mx.mu.Unlock()
	if err := c.Send(t.Context(), "", "x@example.net", []byte("x\r\n")); err != nil {
		t.Errorf("bounce over plaintext: %v", err)
	}
	req, _ := New(Config{Hostname: "gw.example.org", Smarthost: addr, RequireTLS: true})
	if err := req.Send(t.Context(), "a@example.org", "x@example.net", []byte("x\r\n")); err == nil || IsPermanent(err) {
		t.Errorf("TLS required, not offered: %v, want temporary", err)
	}
	// Nobody listening: temporary.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := l.Addr().String()
	l.Close()
	down, _ := New(Config{Hostname: "gw.example.org", Smarthost: dead, Timeout: 5 * time.Second})
	if err := down.Send(t.Context(), "a@example.org", "x@example.net", []byte("x\r\n")); err == nil || IsPermanent(err) {
		t.Errorf("connection refused: %v, want temporary", err)
	}
}

func TestMX(t *testing.T) {
	addr, mx := startMX(t, true)
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := l.Addr().String()
	l.Close()
	hostsTried := []string{}
	var mu sync.Mutex
	c, _ := New(Config{
		Hostname: "gw.example.org",
		LookupMX: func(ctx context.Context, domain string) ([]*net.MX, error) {
			switch domain {
			case "example.net":
				return []*net.MX{{Host: "backup.example.net.", Pref: 20}, {Host: "primary.example.net.", Pref: 10}}, nil
			case "nomail.example":
				return []*net.MX{{Host: ".", Pref: 0}}, nil
			}
			return nil, &net.DNSError{Err: "no such host", IsNotFound: true}
		},
		Dial: func(ctx context.Context, network, a string) (net.Conn, error) {
			mu.Lock()
			hostsTried = append(hostsTried, a)
			mu.Unlock()
			target := dead
			if strings.HasPrefix(a, "backup.") {
				target = addr
			}
			return (&net.Dialer{}).DialContext(ctx, network, target)
		},
	})
	if err := c.Send(t.Context(), "a@example.org", "bob@example.net", []byte("x\r\n")); err != nil {
		t.Fatal(err)
	}
	if len(hostsTried) != 2 || hostsTried[0] != "primary.example.net:25" || hostsTried[1] != "backup.example.net:25" {
		t.Errorf("tried %v, want primary then backup", hostsTried)
	}
	mx.mu.Lock()
	if len(mx.got) != 1 || !strings.Contains(mx.got[0], " tls ") {
		t.Errorf("received %q (opportunistic TLS expected)", mx.got)
	}
	mx.mu.Unlock()
	if err := c.Send(t.Context(), "a@example.org", "x@nomail.example", []byte("x\r\n")); !IsPermanent(err) {
		t.Errorf("null MX: %v, want permanent", err)
	}
	if err := c.Send(t.Context(), "a@example.org", "x@does-not-exist.invalid", []byte("x\r\n")); !IsPermanent(err) {
		t.Errorf("no such domain: %v, want permanent", err)
	}
}

// Addresses whose local part is not a dot-string go quoted in MAIL and
// RCPT, and arrive as the same address.
func TestQuotedLocalParts(t *testing.T) {
	addr, mx := startMX(t, false)
	c, err := New(Config{Hostname: "gw.example.org", Smarthost: addr})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"john smith@example.net", "x@y@example.net", `say "hi"\now@example.net`, "a/b.c+d@example.net"} {
		if err := c.Send(t.Context(), a, a, []byte("Subject: x\r\n\r\nhi\r\n")); err != nil {
			t.Errorf("%q: %v", a, err)
		}
	}
	for _, c := range []struct{ in, out string }{
		{"a.b@x", "a.b@x"}, {"john smith@x", `"john smith"@x`}, {"x@y@z", `"x@y"@z`},
		{`q"\@x`, `"q\"\\"@x`}, {".a@x", `".a"@x`}, {"a..b@x", `"a..b"@x`}, {"élise@x", "élise@x"}, {"", ""},
	} {
		if got := Path(c.in); got != c.out {
			t.Errorf("Path(%q) = %q, want %q", c.in, got, c.out)
		}
	}
	mx.mu.Lock()
	defer mx.mu.Unlock()
	if len(mx.got) != 4 || !strings.HasPrefix(mx.got[0], "john smith@example.net john smith@example.net ") ||
		!strings.HasPrefix(mx.got[2], `say "hi"\now@example.net say "hi"\now@example.net `) {
		t.Errorf("received %q", mx.got)
	}
}
