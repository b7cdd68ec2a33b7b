package mailxmpp

import (
	"testing"

	"github.com/aldis-im/aldis/mail/smtpin"
	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// BenchmarkMailToUser is the bridge's share of a mail to a user, labels
// on: Check at DATA (parse, sender rules, label decisions) and Deliver
// from the queue (parse again, build the stanza).
func BenchmarkMailToUser(b *testing.B) {
	e := newBenchEnv(b)
	data := []byte(mail1)
	msg := parse2(b, mail1)
	to := []string{"alice@mail.example.org"}
	b.ReportAllocs()
	for b.Loop() {
		if err := e.b.Check(b.Context(), smtpin.Envelope{From: "bob@partner.example", To: to}, msg, to); err != nil {
			b.Fatal(err)
		}
		if err := e.b.Deliver(b.Context(), "bob@partner.example", to[0], data); err != nil {
			b.Fatal(err)
		}
		<-e.x.ch
	}
}

// BenchmarkMessageToMail is a user's message to an escaped JID up to the
// queued mail: checks, thread, building the mail.
func BenchmarkMessageToMail(b *testing.B) {
	e := newBenchEnv(b)
	e.out.sent = make(chan struct{}, 1)
	from, to := jid.MustParse("alice@example.org/x"), jid.MustParse(`bob\40partner.example@mail.example.org`)
	b.ReportAllocs()
	for b.Loop() {
		m := wire.New("message", "")
		m.SetAttr("type", "chat")
		m.AddChild(wire.New("body", "")).AddText("Fixing it.")
		m.AddChild(wire.New("thread", "")).AddText("t1")
		e.b.Route(m, from, to)
		<-e.out.sent
	}
}
