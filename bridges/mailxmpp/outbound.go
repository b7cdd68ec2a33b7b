package mailxmpp

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-smtp"

	"github.com/aldis-im/aldis/mail/mimemsg"
	"github.com/aldis-im/aldis/mail/mta"
	"github.com/aldis-im/aldis/mail/siolabel"
	"github.com/aldis-im/aldis/mapping/mailmap"
	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/seclabel"
	"github.com/aldis-im/aldis/xmppcore/stanza"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// outJob is a checked message waiting to become mail.
type outJob struct {
	from    mimemsg.Address // the From of the mail
	envFrom string          // the envelope sender
	to      []string
	subject string
	body    string
	thread  string
	party   string // whose threads: the user's or the room's bare JID
	label   *siolabel.Label
	files   []mimemsg.Attachment
	// Where failures are reported: the sender's full JID and the JID the
	// message went to ("" for a room's messages: they are only logged).
	origin, via, id string
}

// routeMessage takes a message for the gateway domain.
func (b *Bridge) routeMessage(st *wire.Element, from, to jid.JID) {
	if b.settle(st, from) {
		return
	}
	switch {
	case st.Attr("type") == "error":
		b.log.Info("error from XMPP", "from", from.String(), "to", to.String(), "condition", errorCondition(st))
	case to.Local() == "" && to.Resource() != "":
		if st.Attr("type") == "groupchat" {
			b.fromRoom(st, from, to)
		}
	case to.Local() != "":
		b.fromUser(st, from, to)
	default:
		b.refuse(st, from, to, stanza.Cancel, "service-unavailable", "")
	}
}

// refuse answers st with an error.
func (b *Bridge) refuse(st *wire.Element, from, to jid.JID, typ, cond, text string) {
	b.answer(stanza.Error(st, typ, cond, text), from, to)
}

// answer sends reply, an answer to a stanza from from to to, back.
func (b *Bridge) answer(reply *wire.Element, from, to jid.JID) {
	reply.SetAttr("from", to.String()).SetAttr("to", from.String())
	b.cfg.XMPP.Deliver(reply, to, from)
}

// fromUser turns a user's message to an escaped address into a job.
func (b *Bridge) fromUser(st *wire.Element, from, to jid.JID) {
	body := st.ChildText("body", "")
	if body == "" {
		return // chat states, receipts: nothing to mail
	}
	m := b.mapping()
	u, ok := m.UserByJID(from.Bare().String())
	if !ok {
		b.refuse(st, from, to, stanza.Cancel, "not-allowed", "no mail address is mapped to your account")
		return
	}
	addr := jid.Unescape(to.Local())
	if _, err := mimemsg.FormatAddress(mimemsg.Address{Addr: addr}); err != nil || !strings.Contains(addr, "@") || to.Resource() != "" {
		b.refuse(st, from, to, stanza.Modify, "jid-malformed", "not an escaped mail address (user\\40example.com@"+b.cfg.Domain+")")
		return
	}
	dn := mailmap.DomainOf(addr)
	if m.IsLocalDomain(dn) {
		b.refuse(st, from, to, stanza.Cancel, "not-acceptable", "that address is served here: write to its XMPP address")
		return
	}
	dom, ok := m.Domain(dn)
	if !ok {
		b.refuse(st, from, to, stanza.Cancel, "forbidden", "mail to that domain is not allowed")
		return
	}
	lab, ok := b.egress(st, dom)
	if !ok {
		b.answer(seclabel.Forbidden(st, ""), from, to)
		return
	}
	j := outJob{
		from: mimemsg.Address{Name: from.Local(), Addr: u.Address}, envFrom: u.Address, to: []string{addr},
		subject: st.ChildText("subject", ""), body: body, thread: st.ChildText("thread", ""),
		party: from.Bare().String(), label: lab, origin: from.String(), via: to.String(), id: st.Attr("id"),
	}
	if dom.AttachFiles {
		j.files = b.attachments(st)
	}
	select {
	case b.out <- j:
	default:
		b.refuse(st, from, to, stanza.Wait, "resource-constraint", "the mail gateway is busy, try again later")
	}
}

// maxAttach bounds the files one message turns into attachments.
const maxAttach = 8

// attachments are the files of this server's upload service that a
// message links to (XEP-0066 out-of-band data); links elsewhere stay links.
func (b *Bridge) attachments(st *wire.Element) []mimemsg.Attachment {
	if b.cfg.Files == nil {
		return nil
	}
	var out []mimemsg.Attachment
	for c := range st.Elements() {
		if c.Local() != "x" || c.Space != nsOOB || len(out) == maxAttach {
			continue
		}
		if name, ct, data, ok := b.cfg.Files.Open(strings.TrimSpace(c.ChildText("url", ""))); ok {
			out = append(out, mimemsg.Attachment{Filename: name, ContentType: ct, Data: data})
		}
	}
	return out
}

// nsOOB is XEP-0066 out-of-band data, how clients send file links.
const nsOOB = "jabber:x:oob"

// fromRoom mails a room's message to the room's list, unless it is the
// bridge's own, history, or a subject change.
func (b *Bridge) fromRoom(st *wire.Element, from, to jid.JID) {
	m := b.mapping()
	r, ok := m.RoomByJID(from.Bare().String())
	if !ok || len(r.SendTo) == 0 || to.Resource() != from.Bare().String() {
		return
	}
	body := st.ChildText("body", "")
	if from.Resource() == r.Nick || body == "" || st.Child("delay", stanza.NSDelay) != nil {
		return
	}
	// One mail per allowed recipient domain; the others are left out.
	var rcpts []string
	var lab *siolabel.Label
	for _, a := range r.SendTo {
		dom, ok := m.Domain(mailmap.DomainOf(a))
		if !ok {
			b.log.Warn("room message not mailed: no entry for the domain", "room", r.Room, "to", a)
			continue
		}
		l, ok := b.egress(st, dom)
		if ok && r.Clearance != "" && b.cfg.Labels != nil {
			c, err := b.cfg.Labels.Policies().ParseClearance(r.Clearance)
			ok = err == nil && b.cfg.Labels.Allowed(st, c, nil, seclabel.PointEgress, r.Room)
		}
		if !ok {
			b.log.Warn("room message not mailed: not cleared", "room", r.Room, "to", a)
			continue
		}
		rcpts, lab = append(rcpts, a), l
	}
	if len(rcpts) == 0 {
		return
	}
	j := outJob{
		from:    mimemsg.Address{Name: from.Resource() + " (" + from.Local() + ")", Addr: r.Address},
		envFrom: r.Address, to: rcpts, subject: st.ChildText("subject", ""), body: body,
		thread: st.ChildText("thread", ""), party: from.Bare().String(), label: lab,
	}
	select {
	case b.out <- j:
	default:
		b.log.Warn("room message not mailed: the mail gateway is busy", "room", r.Room)
	}
}

// egress checks that mail domain dom is cleared for st's label (the
// sender's default when it has none) and returns the SIO-Label to carry.
func (b *Bridge) egress(st *wire.Element, dom mailmap.Domain) (*siolabel.Label, bool) {
	g := b.cfg.Labels
	_, el := seclabel.Count(st)
	if g == nil {
		return sioOf(el), true
	}
	p := mailmap.Principal(dom)
	if !g.Allowed(st, g.Directory().Lookup(p).Clearance, nil, seclabel.PointEgress, p) {
		return nil, false
	}
	if el == nil {
		if def := g.Default(); def != nil {
			probe := wire.New("message", "")
			if err := g.Stamp(probe, def); err == nil {
				_, el = seclabel.Count(probe)
			}
		}
	}
	return sioOf(el), true
}

func sioOf(el *wire.Element) *siolabel.Label {
	if el == nil {
		return nil
	}
	l, _, err := siolabel.FromElement(el.Append(nil))
	if err != nil || (l.Marking == "" && l.Label == "") {
		return nil
	}
	return &l
}

// sendMail builds a job's mail and queues it; a failure goes back to the
// sender as an error.
func (b *Bridge) sendMail(ctx context.Context, j outJob) {
	mid := newMID(b.cfg.Hostname, j.thread)
	inReplyTo, refs, subj := b.threads.Outbound(j.party, j.thread, mid)
	subject := j.subject
	switch {
	case subject != "":
	case subj != "":
		subject = subj
		if !strings.HasPrefix(strings.ToLower(subject), "re:") {
			subject = "Re: " + subject
		}
	default:
		subject = firstWords(j.body, 60)
	}
	if j.thread != "" {
		b.threads.SetSubject(j.party, j.thread, subject)
	}
	to := make([]mimemsg.Address, len(j.to))
	for i, a := range j.to {
		to[i] = mimemsg.Address{Addr: a}
	}
	data, err := mimemsg.Build(mimemsg.Outgoing{
		From: j.from, To: to, Subject: subject, Text: j.body, MessageID: mid,
		InReplyTo: inReplyTo, References: refs, Label: j.label, Date: b.cfg.Now(),
		Extra: [][2]string{{"Auto-Submitted", "no"}}, Attachments: j.files,
	})
	if err == nil {
		meta := map[string]string{}
		if j.origin != "" {
			meta = map[string]string{"origin": j.origin, "via": j.via, "xmpp_id": j.id}
		} else {
			meta["room"] = j.party
		}
		err = b.cfg.Outbox.Submit(ctx, mta.Submission{ID: "x" + newID(), From: j.envFrom, To: j.to, Data: data, Meta: meta})
	}
	if err != nil {
		b.log.Error("message not mailed", "from", j.origin, "party", j.party, "err", err)
		b.report(j.origin, j.via, j.id, "wait", "internal-server-error", "the message could not be queued as mail")
		return
	}
	b.log.Info("message mailed", "party", j.party, "to", j.to, "message_id", mid)
}

// Failed turns the final failure of mail made from a message into an
// error to its sender (mta.Local).
func (b *Bridge) Failed(ctx context.Context, meta map[string]string, cause error) error {
	text := "mail to " + meta["to"] + " could not be delivered"
	diag := cause.Error()
	var se *smtp.SMTPError
	if errors.As(cause, &se) {
		diag = fmt.Sprintf("%d %d.%d.%d %s", se.Code, se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2], se.Message)
	}
	if diag != "" {
		text += ": " + oneLine(diag)
	}
	if len(text) > 400 {
		text = text[:400]
		for !utf8.ValidString(text) {
			text = text[:len(text)-1]
		}
	}
	b.log.Info("mail from XMPP failed", "origin", meta["origin"], "to", meta["to"], "err", cause)
	b.report(meta["origin"], meta["via"], meta["xmpp_id"], "cancel", "recipient-unavailable", text)
	return nil
}

// report sends an error message to origin, from via.
func (b *Bridge) report(origin, via, id, typ, cond, text string) {
	if origin == "" || via == "" {
		return
	}
	o, err1 := jid.Parse(origin)
	v, err2 := jid.Parse(via)
	if err1 != nil || err2 != nil {
		return
	}
	st := wire.New("message", "")
	st.SetAttr("type", "error").SetAttr("from", v.String()).SetAttr("to", o.String())
	if id != "" {
		st.SetAttr("id", id)
	}
	st.AddChild(stanza.ErrorElement(typ, cond, text))
	b.cfg.XMPP.Deliver(st, v, o)
}

// firstWords is the start of the first line of s, at most n characters.
func firstWords(s string, n int) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)[:n]
	return strings.TrimSpace(string(r)) + "…"
}
