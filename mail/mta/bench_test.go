package mta

import (
	"bytes"
	"context"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/aldis-im/aldis/core/queue"
	"github.com/aldis-im/aldis/core/store/sqlite"
	"github.com/aldis-im/aldis/mail/relay"
	"github.com/aldis-im/aldis/mail/smtpin"
)

// countingSink is a go-smtp backend that counts the messages it receives.
type countingSink struct{ n atomic.Int64 }

func (c *countingSink) NewSession(*smtp.Conn) (smtp.Session, error) { return sinkSession{c}, nil }

type sinkSession struct{ c *countingSink }

func (sinkSession) Reset()                               {}
func (sinkSession) Logout() error                        { return nil }
func (sinkSession) Mail(string, *smtp.MailOptions) error { return nil }
func (sinkSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s sinkSession) Data(r io.Reader) error {
	_, err := io.Copy(io.Discard, r)
	s.c.n.Add(1)
	return err
}

func listen(b *testing.B) net.Listener {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	return l
}

// BenchmarkAcceptRelay measures mail accepted over SMTP (plaintext,
// loopback, 4 concurrent clients, 2 KiB messages) into a file-backed
// store, and relayed to an SMTP sink: one op is one message accepted; the
// relayed/s metric counts until the last one has left.
func BenchmarkAcceptRelay(b *testing.B) {
	db, err := sqlite.Open(b.Context(), b.TempDir()+"/bench.db")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	sink := &countingSink{}
	sl := listen(b)
	ss := smtp.NewServer(sink)
	ss.Domain = "sink.test"
	go ss.Serve(sl)
	defer ss.Close()
	rc, _ := relay.New(relay.Config{Hostname: "gw.test", Smarthost: sl.Addr().String()})
	m, err := New(db, rc, Config{Hostname: "gw.test", Domains: []string{"example.net"},
		Queue: queue.Config{Workers: 16, PerDest: 16}})
	if err != nil {
		b.Fatal(err)
	}
	in, _ := smtpin.New(smtpin.Config{Hostname: "gw.test", Recipient: m.Recipient, Deliver: m.Accept,
		MessagesPerMinute: 1 << 30})
	il := listen(b)
	go in.Serve(il)
	defer in.Shutdown(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	body := []byte("From: a@example.org\r\nTo: b@example.net\r\nSubject: bench\r\nMessage-ID: <x@example.org>\r\n\r\n")
	for len(body) < 2048 {
		body = append(body, "0123456789 0123456789 0123456789 0123456789 0123456789 0123456789\r\n"...)
	}
	var sent atomic.Int64
	start := time.Now()
	b.SetParallelism(2) // 2 × GOMAXPROCS clients
	b.RunParallel(func(pb *testing.PB) {
		c, err := smtp.Dial(il.Addr().String())
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		for pb.Next() {
			if err := c.SendMail("a@example.org", []string{"b@example.net"}, bytes.NewReader(body)); err != nil {
				b.Error(err)
				return
			}
			sent.Add(1)
		}
	})
	accepted := time.Since(start)
	for sink.n.Load() < sent.Load() {
		time.Sleep(time.Millisecond)
	}
	all := time.Since(start)
	b.ReportMetric(float64(sent.Load())/accepted.Seconds(), "accepted/s")
	b.ReportMetric(float64(sent.Load())/all.Seconds(), "relayed/s")
}
