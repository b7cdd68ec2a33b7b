package smtpin

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/aldis-im/aldis/core/certs"
)

type sink struct {
	mu   sync.Mutex
	envs []Envelope
	data [][]byte
	fail error
}

func (k *sink) deliver(ctx context.Context, env Envelope, data []byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.fail != nil {
		return k.fail
	}
	k.envs = append(k.envs, env)
	k.data = append(k.data, data)
	return nil
}

func start(t *testing.T, cfg Config) (string, *sink) {
	t.Helper()
	k := &sink{}
	cfg.Hostname = "mx.example.org"
	cfg.Deliver = k.deliver
	cfg.Recipient = func(ctx context.Context, from, to string) error {
		if strings.HasSuffix(to, "@example.org") {
			return nil
		}
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user"}
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(l)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return l.Addr().String(), k
}

func tlsConfig(t *testing.T) *tls.Config {
	dir := t.TempDir()
	src, _, err := certs.Open("", "", dir, []string{"mx.example.org"})
	if err != nil {
		t.Fatal(err)
	}
	return src.TLSConfig()
}

func smtpCode(err error) int {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

func TestAcceptAndRefuse(t *testing.T) {
	addr, k := start(t, Config{MaxMessageBytes: 1000, TLS: tlsConfig(t)})
	c, err := smtp.DialStartTLS(addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail("a@sender.example", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("nobody@elsewhere.example", nil); smtpCode(err) != 550 {
		t.Errorf("unknown recipient: %v, want 550", err)
	}
	if err := c.Rcpt("ops@example.org", nil); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("Subject: hi\r\n\r\nhello\r\n"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	k.mu.Lock()
	if len(k.envs) != 1 || k.envs[0].From != "a@sender.example" || len(k.envs[0].To) != 1 || !k.envs[0].TLS {
		t.Errorf("delivered %+v", k.envs)
	}
	if !strings.HasPrefix(string(k.data[0]), "Received: from ") || !strings.Contains(string(k.data[0]), "with ESMTPS") ||
		!strings.HasSuffix(string(k.data[0]), "Subject: hi\r\n\r\nhello\r\n") {
		t.Errorf("data %q", k.data[0])
	}
	k.mu.Unlock()

	// Oversize: 552 and nothing delivered.
	c.Mail("a@sender.example", nil)
	c.Rcpt("ops@example.org", nil)
	w, _ = c.Data()
	w.Write([]byte("Subject: big\r\n\r\n" + strings.Repeat(strings.Repeat("x", 78)+"\r\n", 20)))
	if err := w.Close(); smtpCode(err) != 552 {
		t.Errorf("oversize: %v, want 552", err)
	}
	// The consumer's refusal reaches the client; other errors are 451.
	k.mu.Lock()
	k.fail = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "malformed"}
	k.mu.Unlock()
	c.Mail("a@sender.example", nil)
	c.Rcpt("ops@example.org", nil)
	w, _ = c.Data()
	w.Write([]byte("x\r\n"))
	if err := w.Close(); smtpCode(err) != 554 {
		t.Errorf("refused by the consumer: %v, want 554", err)
	}
	k.mu.Lock()
	k.fail = errors.New("disk full")
	k.mu.Unlock()
	c.Mail("a@sender.example", nil)
	c.Rcpt("ops@example.org", nil)
	w, _ = c.Data()
	w.Write([]byte("x\r\n"))
	if err := w.Close(); smtpCode(err) != 451 {
		t.Errorf("consumer error: %v, want 451", err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.envs) != 1 {
		t.Errorf("%d delivered, want 1", len(k.envs))
	}
}

func TestRequireTLS(t *testing.T) {
	addr, _ := start(t, Config{TLS: tlsConfig(t), RequireTLS: true})
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail("a@sender.example", nil); smtpCode(err) != 530 {
		t.Errorf("MAIL without TLS: %v, want 530", err)
	}
}

func TestConnectionLimit(t *testing.T) {
	addr, _ := start(t, Config{MaxConnsPerIP: 2})
	var clients []*smtp.Client
	for range 2 {
		c, err := smtp.Dial(addr)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Hello("x"); err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	c, err := smtp.Dial(addr)
	if err == nil {
		err = c.Hello("x")
	}
	if smtpCode(err) != 421 {
		t.Errorf("third connection: %v, want 421", err)
	}
	clients[0].Quit()
	// A slot is free again (the server counts the close asynchronously).
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := smtp.Dial(addr)
		if err == nil {
			if err = c.Hello("x"); err == nil {
				c.Quit()
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no connection after one closed: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	clients[1].Quit()
}

func TestRateLimit(t *testing.T) {
	addr, _ := start(t, Config{MessagesPerMinute: 2})
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 3 {
		err := c.Mail("a@sender.example", nil)
		if i < 2 && err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if i == 2 && smtpCode(err) != 421 {
			t.Errorf("third message in a minute: %v, want 421", err)
		}
		c.Reset()
	}
}
