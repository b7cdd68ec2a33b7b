package mta

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/aldis-im/aldis/core/queue"
	"github.com/aldis-im/aldis/core/store/sqlite"
	"github.com/aldis-im/aldis/mail/mimemsg"
	"github.com/aldis-im/aldis/mail/relay"
	"github.com/aldis-im/aldis/mail/smtpin"
)

type sent struct{ from, to, data string }

type fakeSender struct {
	mu   sync.Mutex
	sent []sent
	fail func(to string) error
}

func (f *fakeSender) Send(ctx context.Context, from, to string, data []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		if err := f.fail(to); err != nil {
			return err
		}
	}
	f.sent = append(f.sent, sent{from, to, string(data)})
	return nil
}

func (f *fakeSender) all() []sent {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]sent(nil), f.sent...)
}

func newMTA(t *testing.T, snd *fakeSender) *MTA {
	t.Helper()
	db, err := sqlite.OpenMemory(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	m, err := New(db, snd, Config{Hostname: "gw.example.org", Domains: []string{"example.net"},
		Queue: queue.Config{MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return m
}

func code(err error) int {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

const mail1 = "Received: from x by y; Mon, 1 Jan 2024 00:00:00 +0000\r\nFrom: alice@example.org\r\nTo: bob@example.net\r\nSubject: hi\r\nMessage-ID: <m1@example.org>\r\n\r\nhello\r\n"

func TestRelayAndTrace(t *testing.T) {
	snd := &fakeSender{}
	m := newMTA(t, snd)
	ctx := t.Context()
	if err := m.Recipient(ctx, "alice@example.org", "bob@example.net"); err != nil {
		t.Errorf("served domain: %v", err)
	}
	if err := m.Recipient(ctx, "alice@example.org", "bob@elsewhere.example"); code(err) != 550 {
		t.Errorf("other domain: %v, want 550", err)
	}
	env := smtpin.Envelope{ID: "t1", From: "alice@example.org", To: []string{"bob@example.net", "carol@example.net"}}
	if err := m.Accept(ctx, env, []byte(mail1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "two deliveries", func() bool { return len(snd.all()) == 2 })
	for _, s := range snd.all() {
		if s.from != "alice@example.org" || !strings.HasPrefix(s.data, "X-Aldis-Trace: gw.example.org\r\n"+mail1[:9]) {
			t.Errorf("sent %+v", s)
		}
	}
	// What comes back through us is a loop.
	back := snd.all()[0].data
	if err := m.Accept(ctx, env, []byte(back)); code(err) != 554 {
		t.Errorf("looped mail: %v, want 554", err)
	}
	hops := strings.Repeat("Received: from x by y; Mon, 1 Jan 2024 00:00:00 +0000\r\n", 31) + "Subject: x\r\n\r\nx\r\n"
	if err := m.Accept(ctx, env, []byte(hops)); code(err) != 554 {
		t.Errorf("31 hops: %v, want 554", err)
	}
	if err := m.Accept(ctx, env, []byte("this is not\r\na header\r\n\r\n")); code(err) != 554 {
		t.Errorf("malformed: %v, want 554", err)
	}
	if err := m.Accept(ctx, env, []byte("SIO-Label: label=x\r\n\r\nx\r\n")); code(err) != 554 {
		t.Errorf("malformed label: %v, want 554", err)
	}
	waitFor(t, "an empty queue", func() bool { n, _ := m.Queued(ctx); return n == 0 })
}

func TestBounce(t *testing.T) {
	snd := &fakeSender{fail: func(to string) error {
		if to == "nobody@example.net" || to == "gone@example.net" {
			return &relay.Error{Permanent: true, Host: "mx.example.net", Err: errors.New("550 5.1.1 no such user")}
		}
		return nil
	}}
	m := newMTA(t, snd)
	ctx := t.Context()
	if err := m.Accept(ctx, smtpin.Envelope{ID: "t2", From: "alice@example.org", To: []string{"nobody@example.net"}}, []byte(mail1)); err != nil {
		t.Fatal(err)
	}
	// A bounce that fails is not bounced again.
	if err := m.Accept(ctx, smtpin.Envelope{ID: "t3", From: "", To: []string{"gone@example.net"}}, []byte(mail1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the bounce", func() bool { return len(snd.all()) == 1 })
	waitFor(t, "an empty queue", func() bool { n, _ := m.Queued(ctx); return n == 0 })
	b := snd.all()[0]
	if b.from != "" || b.to != "alice@example.org" || !strings.Contains(b.data, "multipart/report") ||
		!strings.Contains(b.data, "Final-Recipient: rfc822; nobody@example.net") || !strings.Contains(b.data, "Status: 5.1.1") ||
		!strings.Contains(b.data, "Remote-MTA: dns; mx.example.net") {
		t.Errorf("bounce %+v", b)
	}
	time.Sleep(50 * time.Millisecond)
	if n := len(snd.all()); n != 1 {
		t.Errorf("%d messages sent, want only the one bounce", n)
	}
}

type fakeLocal struct {
	mu        sync.Mutex
	delivered []sent
	failed    []map[string]string
	refuse    error
	fail      error
}

func (l *fakeLocal) Recipient(ctx context.Context, from, to string) (bool, error) {
	if !strings.HasSuffix(to, "@mail.example.org") {
		return false, nil
	}
	if strings.HasPrefix(to, "unknown@") {
		return true, &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	}
	return true, nil
}

func (l *fakeLocal) Check(ctx context.Context, env smtpin.Envelope, msg *mimemsg.Message, to []string) error {
	return l.refuse
}

func (l *fakeLocal) Deliver(ctx context.Context, from, to string, data []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fail != nil {
		return l.fail
	}
	l.delivered = append(l.delivered, sent{from, to, string(data)})
	return nil
}

func (l *fakeLocal) Failed(ctx context.Context, meta map[string]string, cause error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.failed = append(l.failed, meta)
	return nil
}

func (l *fakeLocal) state() ([]sent, []map[string]string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]sent(nil), l.delivered...), append([]map[string]string(nil), l.failed...)
}

func TestLocal(t *testing.T) {
	snd := &fakeSender{fail: func(to string) error {
		if to == "nobody@example.net" {
			return &relay.Error{Permanent: true, Host: "mx.example.net", Err: errors.New("550 5.1.1 no such user")}
		}
		return nil
	}}
	m := newMTA(t, snd)
	loc := &fakeLocal{}
	m.SetLocal(loc)
	ctx := t.Context()
	if err := m.Recipient(ctx, "a@x.example", "ops@mail.example.org"); err != nil {
		t.Errorf("local: %v", err)
	}
	if err := m.Recipient(ctx, "a@x.example", "unknown@mail.example.org"); code(err) != 550 {
		t.Errorf("unknown local: %v", err)
	}
	// One message, one local and one relayed recipient: each its way, the
	// local one without our trace field.
	env := smtpin.Envelope{ID: "l1", From: "alice@example.org", To: []string{"ops@mail.example.org", "bob@example.net"}}
	if err := m.Accept(ctx, env, []byte(mail1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both deliveries", func() bool { d, _ := loc.state(); return len(d) == 1 && len(snd.all()) == 1 })
	if d, _ := loc.state(); d[0].to != "ops@mail.example.org" || d[0].data != mail1 {
		t.Errorf("local delivery %+v", d[0])
	}
	waitFor(t, "an empty queue", func() bool { n, _ := m.Queued(ctx); return n == 0 })
	// Check refuses: nothing is queued.
	loc.refuse = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "not cleared"}
	if err := m.Accept(ctx, smtpin.Envelope{ID: "l2", From: "a@x.example", To: []string{"ops@mail.example.org"}}, []byte(mail1)); code(err) != 550 {
		t.Errorf("refused by Check: %v", err)
	}
	if n, _ := m.Queued(ctx); n != 0 {
		t.Errorf("%d queued after a refusal", n)
	}
	// A submission that fails for good goes to Failed, not back as a bounce.
	if err := m.Submit(ctx, Submission{ID: "s1", From: "alice@mail.example.org", To: []string{"nobody@example.net"},
		Data: []byte(mail1), Meta: map[string]string{"origin": "alice@example.org/phone"}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the failure report", func() bool { _, f := loc.state(); return len(f) == 1 })
	if _, f := loc.state(); f[0]["origin"] != "alice@example.org/phone" || f[0]["to"] != "nobody@example.net" {
		t.Errorf("failure meta %v", f[0])
	}
	waitFor(t, "an empty queue", func() bool { n, _ := m.Queued(ctx); return n == 0 })
	if n := len(snd.all()); n != 1 {
		t.Errorf("%d messages sent, want 1 (no bounce)", n)
	}
}

// A carrier that took mail over from the queue reports its failure with a
// DSN, once per key; the same transaction accepted twice is queued once.
func TestReportAndIdempotentAccept(t *testing.T) {
	snd := &fakeSender{}
	m := newMTA(t, snd)
	ctx := t.Context()
	for range 2 {
		if err := m.Report(ctx, "k1", "alice@example.net", []string{"bob@ship.example"}, []byte(mail1), "4.4.7", errors.New("link down too long")); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the report", func() bool { return len(snd.all()) == 1 })
	b := snd.all()[0]
	if b.from != "" || b.to != "alice@example.net" || !strings.Contains(b.data, "Status: 4.4.7") ||
		!strings.Contains(b.data, "Final-Recipient: rfc822; bob@ship.example") {
		t.Errorf("report %+v", b)
	}
	env := smtpin.Envelope{ID: "same", From: "alice@example.org", To: []string{"bob@example.net"}}
	for range 2 {
		if err := m.Accept(ctx, env, []byte(mail1)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "one delivery", func() bool { return len(snd.all()) == 2 })
	time.Sleep(50 * time.Millisecond)
	if n := len(snd.all()); n != 2 {
		t.Errorf("%d messages sent, want the report and one delivery", n)
	}
}
