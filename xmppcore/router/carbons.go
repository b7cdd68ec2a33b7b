package router

import (
	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/stanza"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// Message carbons (XEP-0280): a user's sessions that enable them get a copy
// of each chat message another of their sessions sent or received.

// nsMUCUser marks private messages through a room (XEP-0045 §7.5).
const nsMUCUser = "http://jabber.org/protocol/muc#user"

// carbonEligible applies XEP-0280 §6: chat messages, and normal messages
// with a body, unless the sender opted out, and never a room's messages,
// private messages between occupants included (those carry muc#user <x/>):
// the user's other devices are not in the room and could not answer.
func carbonEligible(st *wire.Element) bool {
	switch st.Attr("type") {
	case "chat":
	case "", "normal":
		if st.Child("body", "") == nil {
			return false
		}
	default:
		return false
	}
	return st.Child("private", stanza.NSCarbons) == nil &&
		st.Child("x", nsMUCUser) == nil &&
		st.Child("no-copy", stanza.NSHints) == nil &&
		st.Child("received", stanza.NSCarbons) == nil &&
		st.Child("sent", stanza.NSCarbons) == nil
}

// carbonsIQ enables or disables carbons for one session.
func (h *hub) carbonsIQ(s *sess, st, p *wire.Element, typ string) {
	if typ != "set" || (p.Local() != "enable" && p.Local() != "disable") {
		h.reply(s, stanza.Error(st, stanza.Modify, "bad-request", ""))
		return
	}
	on := p.Local() == "enable"
	if on != s.carbons {
		s.carbons = on
		if on {
			h.carbonSessions.Add(1)
		} else {
			h.carbonSessions.Add(-1)
		}
	}
	h.reply(s, stanza.Result(st))
}

// carbonCopies sends a <sent/> or <received/> copy of st to every session
// with carbons on, except those skip names (the ones that sent or got st).
func (h *hub) carbonCopies(st *wire.Element, kind string, skip func(*sess) bool) {
	var m *wire.Element
	for _, s := range h.sessions {
		if !s.carbons || skip(s) {
			continue
		}
		if m == nil {
			m = carbonWrap(st, kind, h.bare)
		}
		m.SetAttr("to", s.b.jid.String())
		h.send(s, m.Append(nil))
	}
}

// carbonWrap builds <message from=bare><kind><forwarded><message/></forwarded></kind></message>.
func carbonWrap(st *wire.Element, kind string, bare jid.JID) *wire.Element {
	m := wire.New("message", "")
	m.SetAttr("from", bare.String())
	m.SetAttr("type", st.Attr("type"))
	fwd := m.AddChild(wire.New(kind, stanza.NSCarbons)).AddChild(wire.New("forwarded", stanza.NSForward))
	inner := st.Copy()
	inner.SetAttr("xmlns", stanza.NSClient)
	fwd.AddChild(inner)
	return m
}
