package mailxmpp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/aldis-im/aldis/core/queue"
	"github.com/aldis-im/aldis/mail/authres"
	"github.com/aldis-im/aldis/mail/mimemsg"
	"github.com/aldis-im/aldis/mail/smtpin"
	"github.com/aldis-im/aldis/mapping/mailmap"
	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/seclabel"
	"github.com/aldis-im/aldis/xmppcore/stanza"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

func smtpErr(code int, c1, c2, c3 int, msg string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCode{c1, c2, c3}, Message: msg}
}

var (
	errNotCleared   = smtpErr(550, 5, 7, 1, "Message refused: a recipient is not cleared for its security label")
	errUnknownLabel = smtpErr(550, 5, 7, 1, "Message refused: its security label cannot be carried")
)

// Recipient is the RCPT check of mta.Local: mapped addresses are local;
// other addresses in a mapped domain are unknown.
func (b *Bridge) Recipient(ctx context.Context, from, to string) (bool, error) {
	m := b.mapping()
	if !m.IsLocalDomain(mailmap.DomainOf(to)) {
		return false, nil
	}
	if _, ok := m.UserByAddress(to); ok {
		return true, nil
	}
	if _, ok := m.RoomByAddress(to); ok {
		return true, nil
	}
	return true, smtpErr(550, 5, 1, 1, "No such user here")
}

// Check vets a message for local recipients before 250 (mta.Local): the
// sender must pass its domain's rules, and the message's label must be
// granted by the sender domain's clearance and every recipient's.
func (b *Bridge) Check(ctx context.Context, env smtpin.Envelope, msg *mimemsg.Message, to []string) error {
	_, err := b.inbound(ctx, env.From, msg, to)
	return err
}

// Deliver delivers a queued mail to a local recipient (mta.Local). The
// checks run again (the map or the policy may have changed since 250); a
// refusal now is permanent, and bounces. So does a refusal by the room or
// the user's server after the stanza is handed over (see settle).
func (b *Bridge) Deliver(ctx context.Context, from, to string, data []byte) error {
	msg, err := mimemsg.Parse(bytes.NewReader(data), mimemsg.Limits{})
	if err != nil {
		return queue.Permanent(smtpErr(554, 5, 6, 0, "Message refused: "+err.Error()))
	}
	in, err := b.inbound(ctx, from, msg, []string{to})
	if err != nil {
		return queue.Permanent(err)
	}
	in.envFrom, in.rcpt, in.data = from, to, data
	m := b.mapping()
	if u, ok := m.UserByAddress(to); ok {
		return b.toUser(in, u)
	}
	if r, ok := m.RoomByAddress(to); ok {
		return b.toRoom(in, r)
	}
	return queue.Permanent(smtpErr(550, 5, 1, 1, "No such user here"))
}

// in is a checked incoming mail.
type in struct {
	msg    *mimemsg.Message
	sender string  // the sender's address as established
	from   jid.JID // its escaped JID on the gateway domain
	label  *wire.Element
	// For a bounce if XMPP refuses it: the envelope, the mail as queued.
	envFrom, rcpt string
	data          []byte
}

// inbound establishes the sender and the label of a mail for recipients
// to, and checks them.
func (b *Bridge) inbound(ctx context.Context, envFrom string, msg *mimemsg.Message, to []string) (*in, error) {
	m := b.mapping()
	sender, dom, err := b.sender(m, envFrom, msg)
	if err != nil {
		return nil, err
	}
	from, err := b.addressJID(sender)
	if err != nil {
		return nil, smtpErr(550, 5, 1, 7, "Sender address cannot be carried to XMPP")
	}
	res := &in{msg: msg, sender: sender, from: from}
	g := b.cfg.Labels
	if msg.Label != nil {
		el, ok, err := msg.Label.Element()
		if err != nil || (!ok && g != nil) {
			return nil, errUnknownLabel
		}
		if res.label, err = wire.ParseElement(string(el)); err != nil {
			return nil, errUnknownLabel
		}
	}
	if g == nil {
		return res, nil
	}
	p := g.Directory().Lookup(mailmap.Principal(dom))
	def := p.Label
	if def == nil {
		def = g.Default()
	}
	probe := wire.New("message", "")
	probe.SetAttr("from", from.String())
	if res.label != nil {
		probe.AddChild(res.label)
	} else {
		if def == nil {
			g.Deny(seclabel.PointIngress, probe, mailmap.Principal(dom), nil, errors.New("no label and no default label"))
			return nil, smtpErr(550, 5, 7, 1, "Message refused: it has no security label and none applies")
		}
		if err := g.Stamp(probe, def); err != nil {
			return nil, errUnknownLabel
		}
		_, res.label = seclabel.Count(probe)
	}
	// The channel: the sender's mail domain.
	if !g.Allowed(probe, p.Clearance, def, seclabel.PointIngress, mailmap.Principal(dom)) {
		return nil, errNotCleared
	}
	for _, rcpt := range to {
		if u, ok := m.UserByAddress(rcpt); ok {
			uj, err := jid.Parse(u.JID)
			if err != nil {
				return nil, smtpErr(451, 4, 3, 0, "Temporary failure, try again later")
			}
			probe.SetAttr("to", u.JID)
			if !g.Allowed(probe, g.Clearance(ctx, uj), def, seclabel.PointDelivery, u.JID) {
				return nil, errNotCleared
			}
		}
		if r, ok := m.RoomByAddress(rcpt); ok && r.Clearance != "" {
			c, err := g.Policies().ParseClearance(r.Clearance)
			probe.SetAttr("to", r.Room)
			if err != nil || !g.Allowed(probe, c, def, seclabel.PointRoom, r.Room) {
				return nil, errNotCleared
			}
		}
	}
	return res, nil
}

// sender establishes who sent a mail (PROTOCOLS.md §5.3, the map's sender
// rules): the From address when its domain's rules are met, never the From
// header alone. A domain that requires SPF needs spf=pass for the envelope
// sender's domain, which must be the From domain; one that requires DKIM
// needs dkim=pass for the From domain; both from the trusted
// Authentication-Results. Without requirements, the From address counts
// only when its domain is the envelope sender's; else the envelope sender
// is the sender.
func (b *Bridge) sender(m *mailmap.Map, envFrom string, msg *mimemsg.Message) (string, mailmap.Domain, error) {
	hdr := ""
	if len(msg.From) > 0 {
		hdr = msg.From[0].Addr
	}
	hdrDom, envDom := mailmap.DomainOf(hdr), mailmap.DomainOf(envFrom)
	addr, domName := hdr, hdrDom
	if hdr == "" {
		addr, domName = envFrom, envDom
	}
	if addr == "" {
		return "", mailmap.Domain{}, smtpErr(550, 5, 7, 1, "Message refused: no sender address")
	}
	dom, ok := m.Domain(domName)
	if !ok {
		return "", mailmap.Domain{}, smtpErr(550, 5, 7, 1, "Message refused: mail from "+oneLine(domName)+" is not accepted here")
	}
	if !dom.RequireSPF && !dom.RequireDKIM {
		if hdr != "" && envFrom != "" && hdrDom != envDom {
			// Not aligned: the envelope sender it is, under its own rules.
			d, ok := m.Domain(envDom)
			if !ok {
				return "", mailmap.Domain{}, smtpErr(550, 5, 7, 1, "Message refused: mail from "+oneLine(envDom)+" is not accepted here")
			}
			if d.RequireSPF || d.RequireDKIM {
				return "", mailmap.Domain{}, smtpErr(550, 5, 7, 1, "Message refused: the sender could not be authenticated")
			}
			return envFrom, d, nil
		}
		return addr, dom, nil
	}
	ar, ok := b.trustedResults(msg)
	pass := ok && hdr != ""
	if pass && dom.RequireSPF {
		pass = envDom == hdrDom && ar.Passed("spf", envDom)
	}
	if pass && dom.RequireDKIM {
		pass = ar.Passed("dkim", hdrDom)
	}
	if !pass {
		return "", mailmap.Domain{}, smtpErr(550, 5, 7, 1, "Message refused: the sender could not be authenticated (SPF/DKIM required for "+oneLine(domName)+")")
	}
	return addr, dom, nil
}

// trustedResults returns the topmost Authentication-Results field of the
// trusted authserv-id. The relaying MTA removes such fields from mail it
// receives (RFC 8601 §5), so the topmost is its own.
func (b *Bridge) trustedResults(msg *mimemsg.Message) (authres.Results, bool) {
	if b.cfg.AuthServID == "" {
		return authres.Results{}, false
	}
	for _, f := range msg.Header {
		if !strings.EqualFold(f[0], authres.Header) {
			continue
		}
		r, err := authres.Parse(f[1])
		if err == nil && r.AuthServID == strings.ToLower(b.cfg.AuthServID) {
			return r, true
		}
	}
	return authres.Results{}, false
}

// addressJID is the escaped JID of a mail address on the gateway domain.
func (b *Bridge) addressJID(addr string) (jid.JID, error) {
	return jid.New(jid.Escape(addr), b.cfg.Domain, "")
}

// toUser delivers a checked mail to a user as a normal message.
func (b *Bridge) toUser(in *in, u mailmap.User) error {
	to, err := jid.Parse(u.JID)
	if err != nil {
		return queue.Permanent(smtpErr(550, 5, 1, 1, "No such user here"))
	}
	msg := in.msg
	st := wire.New("message", "")
	st.SetAttr("type", "normal").SetAttr("from", in.from.String()).SetAttr("to", to.String()).SetAttr("id", newID())
	if msg.Subject != "" {
		st.AddChild(wire.New("subject", "")).AddText(msg.Subject)
	}
	st.AddChild(wire.New("body", "")).AddText(b.bodyText(msg, ""))
	tid := b.threads.Inbound(to.Bare().String(), b.cfg.Hostname, msg.MessageID, answers(msg), msg.Subject)
	st.AddChild(wire.New("thread", "")).AddText(tid)
	b.addDelay(st, msg)
	if in.label != nil {
		st.AddChild(in.label)
	}
	b.remember(st, to, in.envFrom, in.rcpt, in.data)
	b.cfg.XMPP.Deliver(st, in.from, to)
	return nil
}

// toRoom delivers a checked mail to a room as a groupchat message from the
// bridge's occupant; while the bridge is not in the room it is retried.
func (b *Bridge) toRoom(in *in, r mailmap.Room) error {
	room, err := jid.Parse(r.Room)
	if err != nil {
		return queue.Permanent(smtpErr(550, 5, 1, 1, "No such room here"))
	}
	if !b.inRoom(room) {
		b.SetMap(b.mapping()) // join now
		return fmt.Errorf("mailxmpp: not (yet) in room %s", room)
	}
	occ, err := b.occupantJID(room)
	if err != nil {
		return queue.Permanent(err)
	}
	msg := in.msg
	st := wire.New("message", "")
	st.SetAttr("type", "groupchat").SetAttr("from", occ.String()).SetAttr("to", room.String()).SetAttr("id", newID())
	name := in.sender
	if len(msg.From) > 0 && msg.From[0].Name != "" && strings.EqualFold(msg.From[0].Addr, in.sender) {
		name = msg.From[0].Name + " <" + in.sender + ">"
	}
	head := "Mail from " + name
	if msg.Subject != "" {
		head += ": " + msg.Subject
	}
	st.AddChild(wire.New("body", "")).AddText(b.bodyText(msg, head))
	tid := b.threads.Inbound(room.String(), b.cfg.Hostname, msg.MessageID, answers(msg), msg.Subject)
	st.AddChild(wire.New("thread", "")).AddText(tid)
	if in.label != nil {
		st.AddChild(in.label)
	}
	b.remember(st, room, in.envFrom, in.rcpt, in.data)
	b.cfg.XMPP.Deliver(st, occ, room)
	return nil
}

// bodyText is the message body: an optional head line, the text, and the
// attachments: links where the file service keeps them, else their names.
func (b *Bridge) bodyText(msg *mimemsg.Message, head string) string {
	var s strings.Builder
	if head != "" {
		s.WriteString(head)
		s.WriteString("\n\n")
	}
	s.WriteString(strings.TrimRight(msg.Text, "\r\n \t"))
	var kept []string
	var lost []mimemsg.Attachment
	for _, a := range msg.Attachments {
		if b.cfg.Files == nil {
			lost = append(lost, a)
			continue
		}
		u, err := b.cfg.Files.Store(a.Filename, a.ContentType, a.Data)
		if err != nil {
			b.log.Warn("attachment not stored", "file", a.Filename, "err", err)
			lost = append(lost, a)
			continue
		}
		kept = append(kept, fmt.Sprintf("%s (%s, %d bytes): %s", a.Filename, a.ContentType, len(a.Data), u))
	}
	if len(kept) > 0 {
		s.WriteString("\n\nAttachments:")
		for _, k := range kept {
			s.WriteString("\n" + k)
		}
	}
	if len(lost) > 0 {
		s.WriteString("\n\n[Attachments not carried to XMPP:")
		for _, a := range lost {
			fmt.Fprintf(&s, " %s (%s, %d bytes);", a.Filename, a.ContentType, len(a.Data))
		}
		s.WriteString("]")
	}
	return strings.ToValidUTF8(s.String(), "\uFFFD")
}

// addDelay marks a mail older than a minute with its date (XEP-0203).
func (b *Bridge) addDelay(st *wire.Element, msg *mimemsg.Message) {
	if msg.Date.IsZero() || b.cfg.Now().Sub(msg.Date) < time.Minute {
		return
	}
	d := wire.New("delay", stanza.NSDelay)
	d.SetAttr("stamp", msg.Date.UTC().Format(time.RFC3339)).SetAttr("from", b.cfg.Domain)
	st.AddChild(d)
}

// answers lists the message IDs a mail answers, oldest first.
func answers(msg *mimemsg.Message) []string {
	out := append([]string(nil), msg.References...)
	for _, id := range msg.InReplyTo {
		if len(out) == 0 || out[len(out)-1] != id {
			out = append(out, id)
		}
	}
	return out
}

func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}
