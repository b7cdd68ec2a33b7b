package mailxmpp

import (
	"bytes"
	"container/list"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/aldis-im/aldis/mail/dsn"
	"github.com/aldis-im/aldis/mail/mta"
	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// A mail is out of the queue once its stanza is handed to XMPP, but the
// room or the user's server may still refuse it (the room was destroyed,
// its label check failed, the bridge was kicked): the refusal comes back as
// an error stanza with the stanza's id. The bridge remembers each delivered
// mail for a while, so that such a refusal becomes a bounce to the mail's
// sender rather than a line in the log.

const (
	// maxPending bounds the deliveries remembered; the oldest are forgotten
	// first. A refusal from this server's own rooms and users comes within
	// milliseconds, so only a burst larger than this loses one.
	maxPending = 4096
	// pendingTTL is how long a refusal is waited for.
	pendingTTL = 5 * time.Minute
	// maxPendingHeader bounds the header kept per delivery for the bounce.
	maxPendingHeader = 8 << 10
)

// delivered is a mail handed to XMPP, awaiting a possible refusal.
type delivered struct {
	id      string
	target  string // the bare JID the stanza went to
	from    string // the envelope sender, whom a bounce goes to
	rcpt    string // the mail address it was for
	header  []byte // the mail's header, returned in the bounce
	arrival time.Time
	when    time.Time
}

// pendingSet is the delivered mails, by stanza id, oldest first.
type pendingSet struct {
	mu    sync.Mutex
	order *list.List // of *delivered
	byID  map[string]*list.Element
}

func newPendingSet() *pendingSet {
	return &pendingSet{order: list.New(), byID: map[string]*list.Element{}}
}

// add remembers d, forgetting what is too old or too many.
func (p *pendingSet) add(d *delivered) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for e := p.order.Front(); e != nil && (p.order.Len() >= maxPending || d.when.Sub(e.Value.(*delivered).when) > pendingTTL); e = p.order.Front() {
		p.order.Remove(e)
		delete(p.byID, e.Value.(*delivered).id)
	}
	p.byID[d.id] = p.order.PushBack(d)
}

// take removes and returns the delivery of stanza id to target, if it is
// remembered and not too old.
func (p *pendingSet) take(id string, target jid.JID, now time.Time) (*delivered, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.byID[id]
	if !ok {
		return nil, false
	}
	d := e.Value.(*delivered)
	// Only the JID it went to may refuse it.
	if d.target != target.Bare().String() {
		return nil, false
	}
	p.order.Remove(e)
	delete(p.byID, id)
	return d, now.Sub(d.when) <= pendingTTL
}

// remember notes a mail delivered as stanza st to target.
func (b *Bridge) remember(st *wire.Element, target jid.JID, from, rcpt string, data []byte) {
	hdr, _, _ := bytes.Cut(data, []byte("\r\n\r\n"))
	if len(hdr) > maxPendingHeader {
		hdr = hdr[:maxPendingHeader]
	}
	now := b.cfg.Now()
	b.pending.add(&delivered{
		id: st.Attr("id"), target: target.Bare().String(), from: from, rcpt: rcpt,
		header: bytes.Clone(hdr), arrival: now, when: now,
	})
}

// settle takes the room's echo of a stanza the bridge sent for a mail (it
// was delivered: forgotten, and false, so that it is handled as any echo),
// or an error in answer to one (true: bounced).
func (b *Bridge) settle(st *wire.Element, from jid.JID) bool {
	id := st.Attr("id")
	if id == "" {
		return false
	}
	isErr := st.Attr("type") == "error"
	if !isErr && st.Attr("type") != "groupchat" {
		return false
	}
	d, ok := b.pending.take(id, from, b.cfg.Now())
	if !ok {
		return false
	}
	if !isErr {
		return false // the room's echo: delivered; the caller ignores it as its own
	}
	cond, typ := errorCondition(st), errorType(st)
	b.log.Warn("mail refused by XMPP after it was accepted", "to", d.rcpt, "jid", d.target, "condition", cond)
	if cond == "not-acceptable" || cond == "item-not-found" {
		if room, err := jid.Parse(d.target); err == nil && b.inRoom(room) {
			b.setInRoom(room, false) // the room forgot the bridge: join again
			b.SetMap(b.mapping())
		}
	}
	// Submit writes to the store and Route must not block; there are at
	// most maxPending of these.
	go b.bounce(d, cond, typ)
	return true
}

// bounce mails a DSN to the sender of a mail XMPP refused.
func (b *Bridge) bounce(d *delivered, cond, typ string) {
	if d.from == "" {
		b.log.Warn("refused bounce dropped", "to", d.rcpt, "condition", cond)
		return
	}
	status := refusalStatus(cond)
	report, err := dsn.Build(dsn.Report{
		ReportingMTA: b.cfg.Hostname,
		To:           d.from,
		Failures: []dsn.Failure{{
			Recipient: d.rcpt, Status: status, LastTry: b.cfg.Now(),
			Diagnostic: fmt.Sprintf("%s refused by XMPP: %s (%s)", status, refusalText(cond), oneLine(typ+"/"+cond)),
		}},
		Original:  d.header,
		Arrival:   d.arrival,
		MessageID: newID() + "@" + b.cfg.Hostname,
	})
	if err != nil {
		b.log.Warn("cannot build a bounce", "to", d.from, "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := b.cfg.Outbox.Submit(ctx, mta.Submission{ID: "dsn-" + newID(), From: "", To: []string{d.from}, Data: report}); err != nil {
		b.log.Error("bounce not queued", "to", d.from, "err", err)
	}
}

// refusalStatus is the RFC 3463 status of an XMPP refusal.
func refusalStatus(cond string) string {
	switch cond {
	case "forbidden", "not-authorized", "policy-violation":
		return "5.7.1" // delivery not authorized
	case "item-not-found", "gone", "jid-malformed":
		return "5.1.1" // bad destination mailbox
	case "service-unavailable", "recipient-unavailable", "not-acceptable", "not-allowed", "registration-required":
		return "5.2.1" // mailbox disabled, not accepting messages
	}
	return "5.0.0"
}

// refusalText says what a refusal means to a mail user, without the
// room's own text (which may name labels the sender is not cleared for).
func refusalText(cond string) string {
	switch refusalStatus(cond) {
	case "5.7.1":
		return "the recipient may not receive this message (security label or permissions)"
	case "5.1.1":
		return "no such recipient (any more)"
	case "5.2.1":
		return "the recipient does not accept this message now"
	}
	return "the message was refused"
}

// errorType is the type of an error stanza's error.
func errorType(st *wire.Element) string {
	if e := st.Child("error", ""); e != nil {
		return e.Attr("type")
	}
	return ""
}
