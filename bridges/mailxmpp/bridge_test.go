package mailxmpp

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/aldis-im/aldis/core/identity"
	"github.com/aldis-im/aldis/core/label"
	"github.com/aldis-im/aldis/core/label/labeltest"
	"github.com/aldis-im/aldis/core/queue"
	"github.com/aldis-im/aldis/core/store"
	"github.com/aldis-im/aldis/mail/mimemsg"
	"github.com/aldis-im/aldis/mail/mta"
	"github.com/aldis-im/aldis/mail/smtpin"
	"github.com/aldis-im/aldis/mapping/mailmap"
	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/seclabel"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// fakeXMPP records what the bridge delivers.
type fakeXMPP struct{ ch chan *wire.Element }

func (f *fakeXMPP) Deliver(st *wire.Element, from, to jid.JID) {
	if st.Attr("from") != from.String() || st.Attr("to") != to.String() {
		panic(fmt.Sprintf("addresses differ: %s vs %s → %s", st, from, to))
	}
	f.ch <- st.Copy()
}

func (f *fakeXMPP) next(t testing.TB) *wire.Element {
	t.Helper()
	select {
	case st := <-f.ch:
		return st
	case <-time.After(10 * time.Second):
		t.Fatal("nothing delivered")
		return nil
	}
}

func (f *fakeXMPP) none(t *testing.T) {
	t.Helper()
	select {
	case st := <-f.ch:
		t.Fatalf("unexpected %s", st)
	case <-time.After(50 * time.Millisecond):
	}
}

// fakeOutbox records submissions.
type fakeOutbox struct {
	mu   sync.Mutex
	subs []mta.Submission
	err  error
	sent chan struct{} // if set, told of each submission
}

func (o *fakeOutbox) Submit(ctx context.Context, s mta.Submission) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err != nil {
		return o.err
	}
	o.subs = append(o.subs, s)
	if o.sent != nil {
		o.sent <- struct{}{}
	}
	return nil
}

func (o *fakeOutbox) wait(t *testing.T, n int) []mta.Submission {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		o.mu.Lock()
		got := append([]mta.Submission(nil), o.subs...)
		o.mu.Unlock()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d submissions, want %d", len(got), n)
		}
	}
}

type memStore struct {
	mu sync.Mutex
	m  map[string]string
}

func (s *memStore) Clearance(ctx context.Context, p string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.m[p]
	if !ok {
		return "", store.ErrNotFound
	}
	return c, nil
}

func (s *memStore) SetClearance(ctx context.Context, p, expr string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[p] = expr
	return nil
}

const testMap = `
[[user]]
address = "alice@mail.example.org"
jid = "alice@example.org"

[[user]]
address = "carol@mail.example.org"
jid = "carol@example.org"

[[room]]
address = "ops@mail.example.org"
room = "ops@conference.example.org"
send_to = ["list@partner.example"]

[[domain]]
name = "partner.example"
clearance = "SECRET"

[[domain]]
name = "strict.example"
require_spf = true
require_dkim = true

[[domain]]
name = "*"
clearance = "UNCLASSIFIED"
`

type env struct {
	b     *Bridge
	x     *fakeXMPP
	out   *fakeOutbox
	dir   *identity.Directory
	store *memStore
}

func newEnv(t *testing.T, labels bool) *env { return newEnvTB(t, labels) }

func newBenchEnv(b *testing.B) *env { return newEnvTB(b, true) }

func parse2(tb testing.TB, data string) *mimemsg.Message {
	tb.Helper()
	m, err := mimemsg.Parse(strings.NewReader(data), mimemsg.Limits{})
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

func newEnvTB(t testing.TB, labels bool) *env {
	t.Helper()
	o := envOpts{}
	if labels {
		o.spec = labeltest.Spec()
	}
	return newEnvWith(t, o)
}

// envOpts varies the test environment.
type envOpts struct {
	// spec is the label policy; zero: labels off.
	spec label.FileSpec
	// principals replace the mail domains' clearances and default labels.
	principals map[string]identity.Spec
	// outbox replaces the fake outbox (the real MTA, say).
	outbox Outbox
}

func newEnvWith(t testing.TB, o envOpts) *env {
	t.Helper()
	m, err := mailmap.Parse("map.toml", []byte(testMap))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{x: &fakeXMPP{ch: make(chan *wire.Element, 100)}, out: &fakeOutbox{}}
	var g *seclabel.Guard
	if len(o.spec.Policies) > 0 {
		set, errs := label.Build(o.spec)
		if errs != nil {
			t.Fatal(errs)
		}
		e.store = &memStore{m: map[string]string{"carol@example.org": "SECRET"}}
		e.dir = identity.New(set, e.store, nil, time.Millisecond)
		ps := o.principals
		if ps == nil {
			ps = map[string]identity.Spec{"mail:partner.example": {Clearance: "SECRET"}, "mail:*": {Clearance: "UNCLASSIFIED"}}
		}
		if err := e.dir.Replace(set, ps); err != nil {
			t.Fatal(err)
		}
		g = seclabel.New(seclabel.Config{Directory: e.dir, Local: []string{"example.org"}})
	}
	var out Outbox = e.out
	if o.outbox != nil {
		out = o.outbox
	}
	e.b, err = New(Config{
		Domain: "mail.example.org", Hostname: "mx.example.org", XMPP: e.x, Outbox: out, Map: m,
		Labels: g, AuthServID: "mx.example.org", JoinRetry: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.b.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	// Run starts by joining the room.
	join := e.x.next(t)
	if join.Local() != "presence" || join.Attr("to") != "ops@conference.example.org/mail" || join.Attr("from") != "mail.example.org/ops@conference.example.org" {
		t.Fatalf("join %s", join)
	}
	return e
}

func code(err error) int {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

func parse(t *testing.T, data string) *mimemsg.Message {
	t.Helper()
	m, err := mimemsg.Parse(strings.NewReader(data), mimemsg.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// accept runs a mail through Check and then Deliver, as the MTA does.
func (e *env) accept(t *testing.T, from, to, data string) error {
	t.Helper()
	if err := e.b.Check(t.Context(), smtpin.Envelope{From: from, To: []string{to}}, parse(t, data), []string{to}); err != nil {
		return err
	}
	return e.b.Deliver(t.Context(), from, to, []byte(data))
}

const mail1 = "From: Bob <bob@partner.example>\r\nTo: alice@mail.example.org\r\nSubject: outage\r\n" +
	"Message-ID: <m1@partner.example>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe link is down.\r\n"

func TestRecipient(t *testing.T) {
	e := newEnv(t, false)
	for _, c := range []struct {
		to    string
		local bool
		code  int
	}{
		{"alice@mail.example.org", true, 0}, {"OPS@mail.example.org", true, 0},
		{"nobody@mail.example.org", true, 550}, {"x@elsewhere.example", false, 0},
	} {
		local, err := e.b.Recipient(t.Context(), "bob@partner.example", c.to)
		if local != c.local || code(err) != c.code {
			t.Errorf("Recipient(%s) = %v, %v", c.to, local, err)
		}
	}
}

func TestMailToUserAndReply(t *testing.T) {
	e := newEnv(t, true)
	if err := e.accept(t, "bob@partner.example", "alice@mail.example.org", mail1); err != nil {
		t.Fatal(err)
	}
	st := e.x.next(t)
	if st.Attr("to") != "alice@example.org" || st.Attr("from") != `bob\40partner.example@mail.example.org` || st.Attr("type") != "normal" ||
		st.ChildText("subject", "") != "outage" || st.ChildText("body", "") != "The link is down." {
		t.Fatalf("delivered %s", st)
	}
	thread := st.ChildText("thread", "")
	if n, _ := seclabel.Count(st); thread == "" || n != 1 {
		t.Fatalf("thread %q, %d labels: %s", thread, n, st)
	}
	// Alice answers in the thread: mail with In-Reply-To and References.
	bob := jid.MustParse(`bob\40partner.example@mail.example.org`)
	reply := wire.New("message", "")
	reply.SetAttr("type", "chat").SetAttr("id", "r1")
	reply.AddChild(wire.New("body", "")).AddText("Fixing it.")
	reply.AddChild(wire.New("thread", "")).AddText(thread)
	e.b.Route(reply, jid.MustParse("alice@example.org/phone"), bob)
	sub := e.out.wait(t, 1)[0]
	data := string(sub.Data)
	if sub.From != "alice@mail.example.org" || len(sub.To) != 1 || sub.To[0] != "bob@partner.example" || sub.Meta["origin"] != "alice@example.org/phone" {
		t.Errorf("submission %+v", sub)
	}
	for _, want := range []string{"In-Reply-To: <m1@partner.example>", "References: <m1@partner.example>", "Subject: Re: outage",
		"From: \"alice\" <alice@mail.example.org>", "To: <bob@partner.example>", "SIO-Label: "} {
		if !strings.Contains(data, want) {
			t.Errorf("mail lacks %q:\n%s", want, data)
		}
	}
	// Bob answers that mail: the same thread again.
	m := parse(t, data)
	mail2 := "From: bob@partner.example\r\nTo: alice@mail.example.org\r\nSubject: Re: outage\r\nMessage-ID: <m2@partner.example>\r\n" +
		"In-Reply-To: <" + m.MessageID + ">\r\nReferences: <m1@partner.example> <" + m.MessageID + ">\r\n\r\nThanks.\r\n"
	if err := e.accept(t, "bob@partner.example", "alice@mail.example.org", mail2); err != nil {
		t.Fatal(err)
	}
	if st := e.x.next(t); st.ChildText("thread", "") != thread {
		t.Errorf("reply's thread %q, want %q", st.ChildText("thread", ""), thread)
	}
	// After a restart the table is empty, but the Message-ID carries the
	// thread for a thread alice started.
	e2 := newEnv(t, false)
	start := wire.New("message", "")
	start.SetAttr("type", "chat")
	start.AddChild(wire.New("body", "")).AddText("New topic")
	start.AddChild(wire.New("thread", "")).AddText("t-42")
	e2.b.Route(start, jid.MustParse("alice@example.org/phone"), bob)
	m = parse(t, string(e2.out.wait(t, 1)[0].Data))
	if m.Subject != "New topic" {
		t.Errorf("subject %q", m.Subject)
	}
	e3 := newEnv(t, false)
	mail3 := "From: bob@partner.example\r\nSubject: Re: New topic\r\nMessage-ID: <m3@partner.example>\r\nIn-Reply-To: <" + m.MessageID + ">\r\n\r\nok\r\n"
	if err := e3.accept(t, "bob@partner.example", "alice@mail.example.org", mail3); err != nil {
		t.Fatal(err)
	}
	if st := e3.x.next(t); st.ChildText("thread", "") != "t-42" {
		t.Errorf("thread after restart %q", st.ChildText("thread", ""))
	}
}

func TestLabels(t *testing.T) {
	e := newEnv(t, true)
	secret := "SIO-Label: marking=\"NATO SECRET\"; type=\":ess\"; label=\"" + labeltest.SecretESS + "\"\r\n"
	// SECRET from a domain cleared for UNCLASSIFIED only: refused.
	m := secret + "From: eve@other.example\r\nSubject: s\r\n\r\nsecret\r\n"
	if err := e.accept(t, "eve@other.example", "carol@mail.example.org", m); code(err) != 550 || !strings.Contains(err.Error(), "not cleared") {
		t.Errorf("SECRET from an UNCLASSIFIED domain: %v", err)
	}
	// SECRET from a SECRET domain to alice (UNCLASSIFIED): refused, sanitised.
	m = secret + "From: bob@partner.example\r\nSubject: s\r\n\r\nsecret\r\n"
	err := e.accept(t, "bob@partner.example", "alice@mail.example.org", m)
	if code(err) != 550 || strings.Contains(err.Error(), "SECRET") {
		t.Errorf("SECRET to alice: %v", err)
	}
	// ... and to carol (SECRET): delivered with the ESS label intact.
	if err := e.accept(t, "bob@partner.example", "carol@mail.example.org", m); err != nil {
		t.Fatal(err)
	}
	st := e.x.next(t)
	if !strings.Contains(st.String(), labeltest.SecretESS) {
		t.Errorf("label lost: %s", st)
	}
	e.x.none(t)
	// XMPP out: SECRET to a domain cleared for UNCLASSIFIED is forbidden
	// and nothing is mailed; to partner.example it goes, with SIO-Label.
	for _, c := range []struct {
		to   string
		sent bool
	}{{`x\40other.example@mail.example.org`, false}, {`bob\40partner.example@mail.example.org`, true}} {
		msg, _ := wire.ParseElement("<message type='chat' id='s1'><body>secret words</body>" + labeltest.Element(labeltest.SecretESS) + "</message>")
		e.b.Route(msg, jid.MustParse("carol@example.org/desk"), jid.MustParse(c.to))
		if !c.sent {
			er := e.x.next(t)
			if er.Attr("type") != "error" || errorCondition(er) != "forbidden" || strings.Contains(er.String(), "secret words") || strings.Contains(er.String(), "securitylabel") {
				t.Errorf("refusal %s", er)
			}
			continue
		}
		sub := e.out.wait(t, 1)
		if l := parse(t, string(sub[0].Data)).Label; l == nil || l.Label != labeltest.SecretESS || l.Type != ":ess" {
			t.Errorf("SIO-Label %+v", l)
		}
	}
	if n := len(e.out.wait(t, 0)); n != 1 {
		t.Errorf("%d mails, want 1", n)
	}
}

func TestSenderRules(t *testing.T) {
	e := newEnv(t, false)
	base := "From: s@strict.example\r\nSubject: x\r\n\r\nx\r\n"
	good := "Authentication-Results: mx.example.org; spf=pass smtp.mailfrom=strict.example; dkim=pass header.d=strict.example\r\n"
	for _, c := range []struct {
		name, envFrom, data string
		ok                  bool
	}{
		{"no results", "s@strict.example", base, false},
		{"untrusted authserv-id", "s@strict.example", strings.Replace(good, "mx.example.org", "evil.example", 1) + base, false},
		{"dkim only", "s@strict.example", "Authentication-Results: mx.example.org; dkim=pass header.d=strict.example\r\n" + base, false},
		{"envelope elsewhere", "s@other.example", good + base, false},
		{"both pass", "s@strict.example", good + base, true},
	} {
		err := e.accept(t, c.envFrom, "alice@mail.example.org", c.data)
		if (err == nil) != c.ok {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if c.ok {
			if st := e.x.next(t); st.Attr("from") != `s\40strict.example@mail.example.org` {
				t.Errorf("%s: from %s", c.name, st.Attr("from"))
			}
		}
	}
	// Without requirements the From header counts only when aligned with
	// the envelope; otherwise the envelope sender is the sender.
	if err := e.accept(t, "relay@other.example", "alice@mail.example.org", "From: boss@partner.example\r\n\r\nx\r\n"); err != nil {
		t.Fatal(err)
	}
	if st := e.x.next(t); st.Attr("from") != `relay\40other.example@mail.example.org` {
		t.Errorf("unaligned From: %s", st.Attr("from"))
	}
}

func TestRoom(t *testing.T) {
	e := newEnv(t, false)
	room := jid.MustParse("ops@conference.example.org")
	occ := jid.MustParse("mail.example.org/ops@conference.example.org")
	// Not in the room yet: a temporary failure, retried by the queue.
	err := e.b.Deliver(t.Context(), "bob@partner.example", "ops@mail.example.org", []byte(mail1))
	if err == nil || queue.IsPermanent(err) {
		t.Fatalf("before the join: %v", err)
	}
	e.x.next(t) // the join it asked for
	self, _ := wire.ParseElement("<presence><x xmlns='http://jabber.org/protocol/muc#user'><status code='110'/></x></presence>")
	self.SetAttr("from", "ops@conference.example.org/mail").SetAttr("to", occ.String())
	e.b.Route(self, jid.MustParse("ops@conference.example.org/mail"), occ)
	if err := e.b.Deliver(t.Context(), "bob@partner.example", "ops@mail.example.org", []byte(mail1)); err != nil {
		t.Fatal(err)
	}
	st := e.x.next(t)
	if st.Attr("type") != "groupchat" || st.Attr("to") != room.String() || st.Attr("from") != occ.String() ||
		!strings.HasPrefix(st.ChildText("body", ""), "Mail from Bob <bob@partner.example>: outage\n\nThe link is down.") || st.ChildText("thread", "") == "" {
		t.Fatalf("groupchat %s", st)
	}
	// The room echoes it (the bridge's nick): not mailed back. Someone
	// answers: mailed to the list, with the nick in the From name.
	echo := st.Copy()
	echo.SetAttr("from", "ops@conference.example.org/mail").SetAttr("to", occ.String())
	e.b.Route(echo, jid.MustParse("ops@conference.example.org/mail"), occ)
	ans, _ := wire.ParseElement("<message type='groupchat'><body>On it.</body><thread>" + st.ChildText("thread", "") + "</thread></message>")
	ans.SetAttr("from", "ops@conference.example.org/dave").SetAttr("to", occ.String())
	e.b.Route(ans, jid.MustParse("ops@conference.example.org/dave"), occ)
	subs := e.out.wait(t, 1)
	time.Sleep(50 * time.Millisecond)
	if subs = e.out.wait(t, 1); len(subs) != 1 {
		t.Fatalf("%d mails, want 1", len(subs))
	}
	data := string(subs[0].Data)
	for _, want := range []string{"From: \"dave (ops)\" <ops@mail.example.org>", "To: <list@partner.example>", "In-Reply-To: <m1@partner.example>", "Subject: Re: outage"} {
		if !strings.Contains(data, want) {
			t.Errorf("room mail lacks %q:\n%s", want, data)
		}
	}
	if subs[0].From != "ops@mail.example.org" || subs[0].Meta["origin"] != "" {
		t.Errorf("room submission %+v", subs[0])
	}
}

func TestHeaderInjection(t *testing.T) {
	e := newEnv(t, false)
	msg := wire.New("message", "")
	msg.SetAttr("type", "chat")
	msg.AddChild(wire.New("subject", "")).AddText("hello\r\nBcc: victim@evil.example\r\n\r\nforged body")
	msg.AddChild(wire.New("body", "")).AddText("text")
	e.b.Route(msg, jid.MustParse("alice@example.org/x"), jid.MustParse(`bob\40partner.example@mail.example.org`))
	data := string(e.out.wait(t, 1)[0].Data)
	head, _, _ := strings.Cut(data, "\r\n\r\n")
	for _, line := range strings.Split(head, "\r\n") {
		if strings.HasPrefix(strings.ToLower(line), "bcc:") {
			t.Fatalf("injected header:\n%s", data)
		}
	}
	if m := parse(t, data); !strings.HasPrefix(m.Subject, "hello Bcc: victim@evil.example") {
		t.Errorf("subject %q", m.Subject)
	}
}

func TestRefusals(t *testing.T) {
	e := newEnv(t, false)
	send := func(from, to string) *wire.Element {
		msg := wire.New("message", "")
		msg.SetAttr("type", "chat").SetAttr("id", "q")
		msg.AddChild(wire.New("body", "")).AddText("x")
		e.b.Route(msg, jid.MustParse(from), jid.MustParse(to))
		return e.x.next(t)
	}
	for _, c := range []struct{ from, to, cond string }{
		{"dave@example.org/x", `bob\40partner.example@mail.example.org`, "not-allowed"},
		{"alice@example.org/x", `nobody@mail.example.org`, "jid-malformed"},
		{"alice@example.org/x", `ops\40mail.example.org@mail.example.org`, "not-acceptable"},
	} {
		if er := send(c.from, c.to); errorCondition(er) != c.cond {
			t.Errorf("%s → %s: %s", c.from, c.to, er)
		}
	}
	// Disco: gateway/smtp.
	iq, _ := wire.ParseElement("<iq type='get' id='d'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
	e.b.Route(iq, jid.MustParse("alice@example.org/x"), jid.MustParse("mail.example.org"))
	res := e.x.next(t)
	if id := res.Child("query", "http://jabber.org/protocol/disco#info").Child("identity", ""); id == nil || id.Attr("category") != "gateway" || id.Attr("type") != "smtp" {
		t.Errorf("disco %s", res)
	}
}

func TestFailedReportsToSender(t *testing.T) {
	e := newEnv(t, false)
	err := e.b.Failed(t.Context(), map[string]string{
		"origin": "alice@example.org/phone", "via": `bob\40partner.example@mail.example.org`, "xmpp_id": "r1", "to": "bob@partner.example",
	}, queue.Permanent(&smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}))
	if err != nil {
		t.Fatal(err)
	}
	st := e.x.next(t)
	if st.Attr("type") != "error" || st.Attr("to") != "alice@example.org/phone" || st.Attr("id") != "r1" ||
		errorCondition(st) != "recipient-unavailable" || !strings.Contains(st.String(), "550 5.1.1 no such user") {
		t.Errorf("report %s", st)
	}
}

func TestThreadsBounded(t *testing.T) {
	th := newThreads(3)
	for i := range 10 {
		th.Inbound("a@x", "h", fmt.Sprintf("m%d@y", i), nil, "s")
	}
	if th.lru.Len() != 3 || len(th.byKey) != 3 || len(th.byMID) != 3 {
		t.Fatalf("%d threads, %d keys, %d ids", th.lru.Len(), len(th.byKey), len(th.byMID))
	}
	// A long thread keeps its root and the latest references.
	id := th.Inbound("a@x", "h", "root@y", nil, "s")
	for i := range 50 {
		th.Outbound("a@x", id, fmt.Sprintf("o%d@h", i))
	}
	_, refs, _ := th.Outbound("a@x", id, "last@h")
	if len(refs) != maxRefs || refs[0] != "root@y" || refs[len(refs)-1] != "o49@h" {
		t.Fatalf("refs %v", refs)
	}
	// Another party cannot reach the thread through its message IDs.
	got := th.Inbound("b@x", "h", "z@y", []string{"root@y"}, "")
	if _, refs, _ := th.Outbound("b@x", got, "n@h"); len(refs) != 2 || refs[0] != "root@y" || refs[1] != "z@y" {
		t.Fatalf("another party's thread: %v", refs)
	}
}

func FuzzThreadOfMID(f *testing.F) {
	f.Add(newMID("h.example", "thread-1"), "h.example")
	f.Add("x123.@h", "h")
	f.Fuzz(func(t *testing.T, mid, host string) {
		if id, ok := threadOfMID(mid, host); ok && !validThread(id) {
			t.Fatalf("invalid thread %q", id)
		}
		if validThread(mid) && len(mid) <= maxThreadLen && host != "" && !strings.ContainsAny(host, "@") {
			if got, ok := threadOfMID(newMID(host, mid), host); !ok || got != mid {
				t.Fatalf("round trip %q: %q %v", mid, got, ok)
			}
		}
	})
}

type fakeFiles struct{ names []string }

func (f *fakeFiles) Store(name, ct string, data []byte) (string, error) {
	f.names = append(f.names, name)
	return "https://upload.example.org/upload/T/" + name, nil
}

func (f *fakeFiles) Open(u string) (string, string, []byte, bool) {
	name, ok := strings.CutPrefix(u, "https://upload.example.org/upload/T/")
	return name, "image/png", []byte("PNGDATA"), ok
}

// With a file service, attachments reach XMPP users as links.
func TestAttachmentsAsLinks(t *testing.T) {
	e := newEnv(t, false)
	files := &fakeFiles{}
	e.b.cfg.Files = files
	mail := "From: Bob <bob@partner.example>\r\nTo: alice@mail.example.org\r\nSubject: report\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n" +
		"--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"r.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERg==\r\n--b--\r\n"
	if err := e.accept(t, "bob@partner.example", "alice@mail.example.org", mail); err != nil {
		t.Fatal(err)
	}
	body := e.x.next(t).ChildText("body", "")
	if !strings.Contains(body, "See attached.") || !strings.Contains(body, "r.pdf (application/pdf, 4 bytes): https://upload.example.org/upload/T/r.pdf") {
		t.Fatalf("body %q", body)
	}
	if len(files.names) != 1 {
		t.Fatalf("stored %v", files.names)
	}
}

// A link to a file of this server's upload service becomes an attachment
// for a domain whose map says so; other links stay in the text.
func TestFileLinksAsAttachments(t *testing.T) {
	e := newEnv(t, false)
	e.b.cfg.Files = &fakeFiles{}
	m, err := mailmap.Parse("map.toml", []byte(strings.Replace(testMap, "name = \"partner.example\"\n", "name = \"partner.example\"\nattach_files = true\n", 1)))
	if err != nil {
		t.Fatal(err)
	}
	e.b.SetMap(m)
	msg := wire.New("message", "")
	msg.SetAttr("type", "chat").SetAttr("id", "f1")
	msg.AddChild(wire.New("body", "")).AddText("the photo")
	msg.AddChild(wire.New("x", "jabber:x:oob")).AddChild(wire.New("url", "")).AddText("https://upload.example.org/upload/T/cat.png")
	msg.AddChild(wire.New("x", "jabber:x:oob")).AddChild(wire.New("url", "")).AddText("https://elsewhere.example/dog.png")
	e.b.Route(msg, jid.MustParse("alice@example.org/phone"), jid.MustParse(`bob\40partner.example@mail.example.org`))
	sub := e.out.wait(t, 1)[0]
	got := parse(t, string(sub.Data))
	if len(got.Attachments) != 1 || got.Attachments[0].Filename != "cat.png" || string(got.Attachments[0].Data) != "PNGDATA" {
		t.Fatalf("attachments %+v", got.Attachments)
	}
	// Without attach_files the link is not followed.
	e.b.SetMap(mustMap(t))
	e.b.Route(msg, jid.MustParse("alice@example.org/phone"), jid.MustParse(`bob\40partner.example@mail.example.org`))
	if sub := e.out.wait(t, 2)[1]; len(parse(t, string(sub.Data)).Attachments) != 0 {
		t.Fatal("attached without attach_files")
	}
}

func mustMap(t *testing.T) *mailmap.Map {
	t.Helper()
	m, err := mailmap.Parse("map.toml", []byte(testMap))
	if err != nil {
		t.Fatal(err)
	}
	return m
}
