package mailxmpp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/aldis-im/aldis/core/identity"
	"github.com/aldis-im/aldis/core/label/labeltest"
	"github.com/aldis-im/aldis/core/queue"
	"github.com/aldis-im/aldis/core/store/sqlite"
	"github.com/aldis-im/aldis/mail/mta"
	"github.com/aldis-im/aldis/mail/smtpin"
	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/stanza"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// The tests here follow the email bridge checklist of PROTOCOLS.md §5.4
// through the bridge as it is served: SMTP ingress, MTA queue, bridge.

type sentMail struct{ from, to, data string }

// recSender stands for the relay: it records what the MTA sends on.
type recSender struct {
	mu   sync.Mutex
	sent []sentMail
}

func (r *recSender) Send(ctx context.Context, from, to string, data []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sent = append(r.sent, sentMail{from, to, string(data)})
	return nil
}

func (r *recSender) all() []sentMail {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]sentMail(nil), r.sent...)
}

// wait waits for n messages sent.
func (r *recSender) wait(t *testing.T, n int) []sentMail {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if got := r.all(); len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d mails sent, want %d", len(r.all()), n)
		}
	}
}

// stack is the bridge behind the real MTA (over an in-memory store) and
// SMTP ingress.
type stack struct {
	*env
	mta  *mta.MTA
	addr string
	sent *recSender
	run  func() // starts the queue: tests may change things between 250 and delivery
}

func newStack(t *testing.T, o envOpts) *stack {
	t.Helper()
	db, err := sqlite.OpenMemory(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s := &stack{sent: &recSender{}}
	s.mta, err = mta.New(db, s.sent, mta.Config{Hostname: "mx.example.org",
		Queue: queue.Config{MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	o.outbox = s.mta
	s.env = newEnvWith(t, o)
	s.mta.SetLocal(s.b)
	in, err := smtpin.New(smtpin.Config{Hostname: "mx.example.org", Recipient: s.mta.Recipient, Deliver: s.mta.Accept})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = l.Addr().String()
	go in.Serve(l)
	t.Cleanup(func() { in.Shutdown(context.Background()) })
	var once sync.Once
	s.run = func() {
		once.Do(func() {
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { s.mta.Run(ctx); close(done) }()
			t.Cleanup(func() { cancel(); <-done })
		})
	}
	return s
}

// smtpSend sends a mail over SMTP; the error is the server's refusal.
func (s *stack) smtpSend(t *testing.T, from, to, data string) error {
	t.Helper()
	c, err := smtp.Dial(s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.SendMail(from, []string{to}, strings.NewReader(data))
}

// enhanced is an SMTP refusal as "550 5.7.1"; "" if err is none.
func enhanced(err error) string {
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		return ""
	}
	return fmt.Sprintf("%d %d.%d.%d", se.Code, se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
}

// esstext is the ESS label a stanza carries, "" if none.
func esstext(st *wire.Element) string {
	sl := st.Child("securitylabel", "urn:xmpp:sec-label:0")
	if sl == nil || sl.Child("label", "") == nil {
		return ""
	}
	return sl.Child("label", "").ChildText("esssecuritylabel", "urn:xmpp:sec-label:ess:0")
}

func marking(st *wire.Element) string {
	sl := st.Child("securitylabel", "urn:xmpp:sec-label:0")
	if sl == nil {
		return ""
	}
	return sl.ChildText("displaymarking", "")
}

// §5.4: missing SIO-Label → the gateway's default label applies (the mail
// domain's own, else the policy's); no default → 550 5.7.1 during SMTP.
func TestChecklistDefaultLabel(t *testing.T) {
	noDefault := labeltest.Spec()
	noDefault.Policies[0].DefaultLabel = ""
	unlabelled := "From: bob@partner.example\r\nSubject: plain\r\nMessage-ID: <d1@partner.example>\r\n\r\nno label here\r\n"
	for _, c := range []struct {
		name       string
		o          envOpts
		to         string
		refused    string // the SMTP reply, if refused
		wantESS    string // the label delivered, if not refused
		wantMarker string
	}{
		{name: "policy default", o: envOpts{spec: labeltest.Spec()}, to: "alice@mail.example.org", wantMarker: "NATO UNCLASSIFIED"},
		{name: "domain default", to: "carol@mail.example.org", wantESS: labeltest.ConfidentialESS, o: envOpts{spec: labeltest.Spec(),
			principals: map[string]identity.Spec{"mail:partner.example": {Clearance: "SECRET", Label: "CONFIDENTIAL"}, "mail:*": {Clearance: "UNCLASSIFIED"}}}},
		{name: "domain default above the recipient", to: "alice@mail.example.org", refused: "550 5.7.1", o: envOpts{spec: labeltest.Spec(),
			principals: map[string]identity.Spec{"mail:partner.example": {Clearance: "SECRET", Label: "CONFIDENTIAL"}, "mail:*": {Clearance: "UNCLASSIFIED"}}}},
		{name: "no default", o: envOpts{spec: noDefault}, to: "alice@mail.example.org", refused: "550 5.7.1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newStack(t, c.o)
			s.run()
			err := s.smtpSend(t, "bob@partner.example", c.to, unlabelled)
			if c.refused != "" {
				if got := enhanced(err); got != c.refused {
					t.Fatalf("SMTP answer %v, want %s", err, c.refused)
				}
				if n, _ := s.mta.Queued(t.Context()); n != 0 {
					t.Errorf("%d queued after the refusal", n)
				}
				s.x.none(t)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			st := s.x.next(t)
			if st.ChildText("body", "") != "no label here" {
				t.Fatalf("delivered %s", st)
			}
			if c.wantESS != "" && esstext(st) != c.wantESS {
				t.Errorf("label %q, want %q: %s", esstext(st), c.wantESS, st)
			}
			if c.wantMarker != "" && marking(st) != c.wantMarker {
				t.Errorf("marking %q, want %q: %s", marking(st), c.wantMarker, st)
			}
			if esstext(st) == "" {
				t.Errorf("no label stamped: %s", st)
			}
		})
	}
}

// §5.4: a mail whose label the recipient is not cleared for is not
// delivered: refused with 550 5.7.1 while the SMTP dialogue is on, else
// (the clearance changed after 250) bounced with a DSN of status 5.7.1.
func TestChecklistNotClearedDSN(t *testing.T) {
	s := newStack(t, envOpts{spec: labeltest.Spec()})
	secret := "SIO-Label: marking=\"NATO SECRET\"; type=\":ess\"; label=\"" + labeltest.SecretESS + "\"\r\n" +
		"From: bob@partner.example\r\nSubject: s\r\nMessage-ID: <s1@partner.example>\r\n\r\nsecret words\r\n"
	// During SMTP: alice is UNCLASSIFIED.
	if err := s.smtpSend(t, "bob@partner.example", "alice@mail.example.org", secret); enhanced(err) != "550 5.7.1" {
		t.Fatalf("SECRET to alice: %v", err)
	}
	if n, _ := s.mta.Queued(t.Context()); n != 0 {
		t.Fatalf("%d queued after a refusal", n)
	}
	// Carol is cleared at 250, and is not any more when it is delivered.
	if err := s.smtpSend(t, "bob@partner.example", "carol@mail.example.org", secret); err != nil {
		t.Fatalf("SECRET to carol: %v", err)
	}
	if err := s.store.SetClearance(t.Context(), "carol@example.org", "UNCLASSIFIED"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond) // the directory's cache lasts a millisecond
	s.run()
	got := s.sent.wait(t, 1)
	d := got[0]
	if d.from != "" || d.to != "bob@partner.example" {
		t.Fatalf("DSN envelope %q → %q", d.from, d.to)
	}
	for _, want := range []string{"Status: 5.7.1", "Final-Recipient: rfc822; carol@mail.example.org", "Action: failed"} {
		if !strings.Contains(d.data, want) {
			t.Errorf("DSN lacks %q:\n%s", want, d.data)
		}
	}
	if strings.Contains(d.data, "secret words") {
		t.Errorf("the DSN returns the body:\n%s", d.data)
	}
	s.x.none(t)
	time.Sleep(50 * time.Millisecond)
	if n := len(s.sent.all()); n != 1 {
		t.Errorf("%d mails sent, want the one DSN", n)
	}
}

// §5.4: XEP-0106 escaping round-trips mail addresses containing @, / and
// spaces: a mail from one comes from its escaped JID, and an answer to
// that JID is mailed to the same address, quoted on the wire.
func TestChecklistEscaping(t *testing.T) {
	for _, c := range []struct {
		wire  string // as written in SMTP and the From field
		addr  string // as the address is known
		local string // the escaped JID's localpart
	}{
		{"a/b@partner.example", "a/b@partner.example", `a\2fb\40partner.example`},
		{`"john smith"@partner.example`, "john smith@partner.example", `john\20smith\40partner.example`},
		{`"x@y"@partner.example`, "x@y@partner.example", `x\40y\40partner.example`},
		{`"d'a /b@c"@partner.example`, "d'a /b@c@partner.example", `d\27a\20\2fb\40c\40partner.example`},
	} {
		t.Run(c.addr, func(t *testing.T) {
			s := newStack(t, envOpts{})
			s.run()
			mail := "From: " + c.wire + "\r\nSubject: hello\r\nMessage-ID: <e1@partner.example>\r\n\r\nhi\r\n"
			if err := s.smtpSend(t, c.wire, "alice@mail.example.org", mail); err != nil {
				t.Fatal(err)
			}
			st := s.x.next(t)
			from := jid.MustParse(st.Attr("from"))
			if from.Local() != c.local || from.Domain() != "mail.example.org" || jid.Unescape(from.Local()) != c.addr {
				t.Fatalf("from %s, want %s@mail.example.org", st.Attr("from"), c.local)
			}
			ans := wire.New("message", "")
			ans.SetAttr("type", "chat").SetAttr("id", "a1")
			ans.AddChild(wire.New("body", "")).AddText("back to you")
			ans.AddChild(wire.New("thread", "")).AddText(st.ChildText("thread", ""))
			s.b.Route(ans, jid.MustParse("alice@example.org/phone"), from)
			got := s.sent.wait(t, 1)[0]
			if got.to != c.addr {
				t.Errorf("envelope recipient %q, want %q", got.to, c.addr)
			}
			m := parse(t, got.data)
			if len(m.To) != 1 || m.To[0].Addr != c.addr {
				t.Errorf("To %+v, want %q:\n%s", m.To, c.addr, got.data)
			}
		})
	}
}

// §5.4: the gateway advertises disco identity gateway/smtp, and the
// security label feature.
func TestChecklistDisco(t *testing.T) {
	e := newEnv(t, true)
	iq, _ := wire.ParseElement("<iq type='get' id='d1'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
	e.b.Route(iq, jid.MustParse("alice@example.org/x"), jid.MustParse("mail.example.org"))
	res := e.x.next(t)
	q := res.Child("query", "http://jabber.org/protocol/disco#info")
	if res.Attr("type") != "result" || res.Attr("id") != "d1" || q == nil {
		t.Fatalf("disco answer %s", res)
	}
	var ids, feats []string
	for c := range q.Elements() {
		switch c.Local() {
		case "identity":
			ids = append(ids, c.Attr("category")+"/"+c.Attr("type"))
		case "feature":
			feats = append(feats, c.Attr("var"))
		}
	}
	if len(ids) != 1 || ids[0] != "gateway/smtp" {
		t.Errorf("identities %v, want [gateway/smtp]", ids)
	}
	if !strings.Contains(strings.Join(feats, " "), "urn:xmpp:sec-label:0") {
		t.Errorf("features %v lack urn:xmpp:sec-label:0", feats)
	}
}

// A mail that a room or a user's server refuses after the SMTP side said
// 250 (the room was destroyed, its label check refused it) bounces to
// its sender with a DSN; the room's echo means it was delivered.
func TestRefusedAfterAcceptBounces(t *testing.T) {
	s := newStack(t, envOpts{})
	s.run()
	room, occ := jid.MustParse("ops@conference.example.org"), jid.MustParse("mail.example.org/ops@conference.example.org")
	self, _ := wire.ParseElement("<presence><x xmlns='http://jabber.org/protocol/muc#user'><status code='110'/></x></presence>")
	self.SetAttr("from", "ops@conference.example.org/mail").SetAttr("to", occ.String())
	s.b.Route(self, jid.MustParse("ops@conference.example.org/mail"), occ)
	refuse := func(st *wire.Element, from jid.JID, typ, cond string) {
		er := stanza.Error(st, typ, cond, "the room says no: NATO SECRET")
		er.SetAttr("from", from.String()).SetAttr("to", st.Attr("from"))
		s.b.Route(er, from, jid.MustParse(st.Attr("from")))
	}
	n := 0
	for _, c := range []struct {
		name, to string
		answer   func(st *wire.Element)
		status   string // of the DSN; "" for none
		rejoin   bool
	}{
		{"echoed", "ops@mail.example.org", func(st *wire.Element) {
			echo := st.Copy()
			echo.SetAttr("from", "ops@conference.example.org/mail").SetAttr("to", occ.String())
			s.b.Route(echo, jid.MustParse("ops@conference.example.org/mail"), occ)
			refuse(st, room, stanza.Cancel, "forbidden") // too late: it was delivered
		}, "", false},
		{"label refused by the room", "ops@mail.example.org", func(st *wire.Element) { refuse(st, room, stanza.Auth, "forbidden") }, "5.7.1", false},
		{"error from someone else", "ops@mail.example.org", func(st *wire.Element) {
			refuse(st, jid.MustParse("other@conference.example.org"), stanza.Cancel, "forbidden")
		}, "", false},
		{"room destroyed", "ops@mail.example.org", func(st *wire.Element) { refuse(st, room, stanza.Cancel, "item-not-found") }, "5.1.1", true},
		{"user refuses", "alice@mail.example.org", func(st *wire.Element) {
			refuse(st, jid.MustParse("alice@example.org"), stanza.Cancel, "service-unavailable")
		}, "5.2.1", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if !s.b.inRoom(room) {
				s.b.Route(self, jid.MustParse("ops@conference.example.org/mail"), occ)
			}
			if err := s.smtpSend(t, "bob@partner.example", c.to, mail1); err != nil {
				t.Fatal(err)
			}
			st := s.x.next(t)
			if !strings.Contains(st.ChildText("body", ""), "The link is down.") {
				t.Fatalf("delivered %s", st)
			}
			c.answer(st)
			if c.status == "" {
				time.Sleep(100 * time.Millisecond)
				if got := len(s.sent.all()); got != n {
					t.Fatalf("%d mails sent, want %d", got, n)
				}
				s.x.none(t)
				return
			}
			n++
			d := s.sent.wait(t, n)[n-1]
			if d.from != "" || d.to != "bob@partner.example" {
				t.Fatalf("DSN envelope %q → %q", d.from, d.to)
			}
			for _, want := range []string{"Status: " + c.status, "Final-Recipient: rfc822; " + c.to, "Action: failed", "Message-ID: <m1@partner.example>"} {
				if !strings.Contains(d.data, want) {
					t.Errorf("DSN lacks %q:\n%s", want, d.data)
				}
			}
			if strings.Contains(d.data, "NATO SECRET") || strings.Contains(d.data, "The link is down.") {
				t.Errorf("the DSN carries the room's text or the body:\n%s", d.data)
			}
			if c.rejoin {
				if j := s.x.next(t); j.Local() != "presence" || j.Attr("to") != "ops@conference.example.org/mail" {
					t.Errorf("no join again after the room forgot the bridge: %s", j)
				}
			}
			s.x.none(t)
		})
	}
}

// The deliveries remembered for refusals are bounded in number and age.
func TestPendingBounded(t *testing.T) {
	p := newPendingSet()
	t0 := time.Now()
	to := jid.MustParse("ops@conference.example.org")
	for i := range maxPending + 10 {
		p.add(&delivered{id: fmt.Sprint(i), target: to.String(), when: t0})
	}
	if p.order.Len() != maxPending || len(p.byID) != maxPending {
		t.Fatalf("%d remembered (%d by id), want %d", p.order.Len(), len(p.byID), maxPending)
	}
	if _, ok := p.take("0", to, t0); ok {
		t.Error("the oldest was not forgotten")
	}
	if _, ok := p.take("20", to, t0.Add(pendingTTL+time.Second)); ok {
		t.Error("a refusal after the TTL still bounces")
	}
	if _, ok := p.take("21", to, t0); !ok {
		t.Error("a remembered delivery was lost")
	}
	p.add(&delivered{id: "late", target: to.String(), when: t0.Add(2 * pendingTTL)})
	if p.order.Len() != 1 {
		t.Errorf("%d remembered after the TTL, want 1", p.order.Len())
	}
}

// §5.4: an ESS label survives XMPP → email → XMPP byte for byte, even when
// the client wrapped its base64.
func TestChecklistESSRoundTrip(t *testing.T) {
	e := newEnv(t, true)
	wrapped := labeltest.SecretESS[:6] + "\n  " + labeltest.SecretESS[6:]
	msg, _ := wire.ParseElement("<message type='chat' id='r1'><body>round trip</body>" + labeltest.Element(wrapped) + "</message>")
	e.b.Route(msg, jid.MustParse("carol@example.org/desk"), jid.MustParse(`bob\40partner.example@mail.example.org`))
	data := string(e.out.wait(t, 1)[0].Data)
	var sio string
	head, _, _ := strings.Cut(data, "\r\n\r\n")
	for _, line := range strings.SplitAfter(head+"\r\n", "\r\n") {
		folded := strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t")
		if strings.HasPrefix(line, "SIO-Label:") || (sio != "" && folded) {
			sio += line
		} else if sio != "" {
			break
		}
	}
	if sio == "" {
		t.Fatalf("no SIO-Label in\n%s", data)
	}
	// Bob answers with the label as it came.
	back := sio + "From: bob@partner.example\r\nSubject: Re: x\r\n\r\nback\r\n"
	if err := e.accept(t, "bob@partner.example", "carol@mail.example.org", back); err != nil {
		t.Fatal(err)
	}
	st := e.x.next(t)
	if got := esstext(st); got != labeltest.SecretESS {
		t.Errorf("ESS label after the round trip %q, want %q", got, labeltest.SecretESS)
	}
}
