package relay

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/aldis-im/aldis/bridges/brass/brlink"
	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// Namespaces the traffic policy looks at.
const (
	NSChatStates = "http://jabber.org/protocol/chatstates"
	NSXHTMLIM    = "http://jabber.org/protocol/xhtml-im"
	NSMUC        = "http://jabber.org/protocol/muc"
	NSMUCUser    = "http://jabber.org/protocol/muc#user"
	NSFMUC       = "http://isode.com/protocol/fmuc"
	NSSHIM       = "http://jabber.org/protocol/shim"
	// NSPrecedence is our own precedence element, which wins over SHIM
	// Urgency: <precedence xmlns='urn:x-bridge:precedence:0'>flash</precedence>.
	NSPrecedence = "urn:x-bridge:precedence:0"
)

// PresenceMode says what the link does with presence (PROTOCOLS.md §4.4
// item 5).
type PresenceMode string

// Presence modes.
const (
	// PresenceFold keeps only the latest presence per (sender, recipient)
	// in memory and sends it at DEFERRED precedence while the link is
	// up; MUC joins and leaves and subscriptions are queued durably.
	PresenceFold PresenceMode = "fold"
	// PresenceStrip drops every presence but MUC joins and leaves and
	// subscriptions, which are queued durably.
	PresenceStrip PresenceMode = "strip"
	// PresencePass queues every presence durably, like messages.
	PresencePass PresenceMode = "pass"
)

// verdict is what the policy decides for an outbound stanza.
type verdict int

const (
	queueIt verdict = iota // commit to the durable queue
	foldIt                 // keep the latest in memory (presence)
	dropIt                 // not worth the link
)

// policy is the traffic policy of a link.
type policy struct {
	presence        PresenceMode
	stripChatStates bool
	stripXHTML      bool
}

// decision is the policy's outcome for one stanza.
type decision struct {
	verdict    verdict
	class      brlink.Class
	precedence brlink.Precedence
	why        string // for dropIt: a log reason
}

// apply decides what happens to st, a copy the link owns, and trims it
// for the link: chat states, XHTML-IM and our precedence element go.
func (p policy) apply(st *wire.Element) decision {
	d := decision{class: brlink.ClassXMPP, precedence: precedenceOf(st)}
	removeNS(st, NSPrecedence)
	if hasChildNS(st, NSFMUC) {
		d.class = brlink.ClassFMUC
	}
	switch st.Local() {
	case "message":
		if p.stripChatStates && hasChildNS(st, NSChatStates) {
			if st.Child("body", st.Space) == nil && st.Child("subject", st.Space) == nil &&
				len(nonNSChildren(st, NSChatStates)) == 0 {
				d.verdict, d.why = dropIt, "chat state notification"
				return d
			}
			removeNS(st, NSChatStates)
		}
		if p.stripXHTML {
			removeNS(st, NSXHTMLIM)
		}
	case "presence":
		if p.presence == PresencePass || presenceMustQueue(st) {
			return d
		}
		if p.presence == PresenceStrip {
			d.verdict, d.why = dropIt, "presence stripped"
			return d
		}
		d.verdict = foldIt
	}
	return d
}

// presenceMustQueue reports presence that must cross the link as sent:
// MUC joins and leaves, and subscription management.
func presenceMustQueue(st *wire.Element) bool {
	switch st.Attr("type") {
	case "subscribe", "subscribed", "unsubscribe", "unsubscribed":
		return true
	case "":
		return st.Child("x", NSMUC) != nil // a MUC join
	case "unavailable":
		// Leaving a room is unavailable presence to an occupant JID
		// (room@service/nick); ordinary broadcasts go to bare JIDs.
		to, err := jid.Parse(st.Attr("to"))
		return err == nil && to.Resource() != "" && to.Local() != ""
	}
	return false
}

// foldKey is what one folded presence replaces: the latest presence from
// a user (all resources collapse to the bare JID) to a recipient. MUC
// presence (from an occupant) keeps the full JID, as each occupant is a
// distinct presence. A probe is not replaced by a broadcast.
func foldKey(st *wire.Element) string {
	from := st.Attr("from")
	if st.Child("x", NSMUCUser) == nil {
		if j, err := jid.Parse(from); err == nil {
			from = j.Bare().String()
		}
	}
	kind := "p"
	if st.Attr("type") == "probe" {
		kind = "probe"
	}
	return kind + "\x00" + from + "\x00" + st.Attr("to")
}

// precedenceOf is the stanza's precedence: our element, else a SHIM
// Urgency header, else by stanza kind (PROTOCOLS.md §4.4.1).
func precedenceOf(st *wire.Element) brlink.Precedence {
	if c := st.Child("precedence", NSPrecedence); c != nil {
		if p, ok := brlink.ParsePrecedence(c.Text()); ok {
			return p
		}
	}
	if h := st.Child("headers", NSSHIM); h != nil {
		for c := range h.Elements() {
			if c.Local() != "header" || !strings.EqualFold(c.Attr("name"), "Urgency") {
				continue
			}
			switch strings.ToLower(strings.TrimSpace(c.Text())) {
			case "high":
				return brlink.Immediate
			case "medium":
				return brlink.Priority
			case "low":
				return brlink.Routine
			}
		}
	}
	switch st.Local() {
	case "presence":
		return brlink.Deferred
	case "message":
		if st.Attr("type") == "groupchat" {
			return brlink.Priority
		}
	}
	return brlink.Routine
}

func hasChildNS(e *wire.Element, ns string) bool { return e.Child("", ns) != nil }

func nonNSChildren(e *wire.Element, ns string) []*wire.Element {
	var out []*wire.Element
	for c := range e.Elements() {
		if c.Space != ns {
			out = append(out, c)
		}
	}
	return out
}

func removeNS(e *wire.Element, ns string) { e.RemoveChildren("", ns) }

// Envelope is the SMTP envelope of a mail crossing the link.
type Envelope struct {
	From string   // reverse path, without angle brackets; "" for a bounce
	To   []string // forward paths, at least one
}

// appendMail builds a ClassEmail payload (PROTOCOLS.md §4.4.2): the
// envelope lines, an empty line, the message.
func appendMail(dst []byte, env Envelope, msg []byte) ([]byte, error) {
	if len(env.To) == 0 {
		return nil, fmt.Errorf("relay: mail without recipients")
	}
	bad := func(s string) bool { return strings.ContainsAny(s, "<>\r\n") }
	if bad(env.From) {
		return nil, fmt.Errorf("relay: mail sender %q is not a valid path", env.From)
	}
	dst = append(dst, "MAIL FROM:<"...)
	dst = append(dst, env.From...)
	dst = append(dst, ">\r\n"...)
	for _, to := range env.To {
		if bad(to) || to == "" {
			return nil, fmt.Errorf("relay: mail recipient %q is not a valid path", to)
		}
		dst = append(dst, "RCPT TO:<"...)
		dst = append(dst, to...)
		dst = append(dst, ">\r\n"...)
	}
	dst = append(dst, "\r\n"...)
	return append(dst, msg...), nil
}

const crlf = "\r\n"

// parseMail splits a ClassEmail payload into its envelope and message.
func parseMail(p []byte) (Envelope, []byte, error) {
	var env Envelope
	sawFrom := false
	for {
		i := bytes.Index(p, []byte(crlf))
		if i < 0 {
			return env, nil, fmt.Errorf("relay: mail envelope without an end")
		}
		line := string(p[:i])
		p = p[i+2:]
		if line == "" {
			break
		}
		path := func(prefix string) (string, bool) {
			if len(line) < len(prefix)+2 || !strings.EqualFold(line[:len(prefix)], prefix) ||
				line[len(prefix)] != '<' || line[len(line)-1] != '>' {
				return "", false
			}
			return line[len(prefix)+1 : len(line)-1], true
		}
		if a, ok := path("MAIL FROM:"); ok && !sawFrom {
			env.From, sawFrom = a, true
			continue
		}
		if a, ok := path("RCPT TO:"); ok && sawFrom && a != "" {
			env.To = append(env.To, a)
			continue
		}
		return env, nil, fmt.Errorf("relay: bad mail envelope line %q", line)
	}
	if !sawFrom || len(env.To) == 0 {
		return env, nil, fmt.Errorf("relay: mail envelope lacks MAIL FROM or RCPT TO")
	}
	return env, p, nil
}
