package router

import (
	"context"

	"github.com/aldis-im/aldis/xmppcore/jid"
	"github.com/aldis-im/aldis/xmppcore/wire"
)

// Namespaces of message archives (XEP-0313) and stanza ids (XEP-0359).
const (
	nsMAM = "urn:xmpp:mam:2"
	nsSID = "urn:xmpp:sid:0"
)

// Archive keeps users' message archives (package mam implements it).
type Archive interface {
	// Record archives st for owner and returns its archive id, or "" when
	// st is not archived. It must not block for long.
	Record(owner, with jid.JID, st *wire.Element, outgoing bool) string
	// HandleIQ answers a MAM iq from the owner's session through send.
	HandleIQ(ctx context.Context, owner, requester jid.JID, st *wire.Element, send func(*wire.Element))
}

// archiveIncoming records a message delivered to this user and returns the
// copy to deliver, carrying its stanza-id (XEP-0359). A stanza-id that
// claims to be ours but arrived from outside is removed: only this server
// may say what is in this user's archive.
func (h *hub) archiveIncoming(st *wire.Element, from jid.JID) *wire.Element {
	own := h.bare.String()
	forged := false
	for c := range st.Elements() {
		if c.Local() == "stanza-id" && c.Space == nsSID && c.Attr("by") == own {
			forged = true
			break
		}
	}
	id := ""
	if a := h.r.cfg.Archive; a != nil {
		id = a.Record(h.bare, from.Bare(), st, false)
	}
	if id == "" && !forged {
		return st
	}
	c := st.Copy()
	if forged {
		removeStanzaIDs(c, own)
	}
	if id != "" {
		sid := c.AddChild(wire.New("stanza-id", nsSID))
		sid.SetAttr("by", own)
		sid.SetAttr("id", id)
	}
	return c
}

func removeStanzaIDs(e *wire.Element, by string) {
	kept := e.Nodes[:0]
	for _, n := range e.Nodes {
		if n.Elem != nil && n.Elem.Local() == "stanza-id" && n.Elem.Space == nsSID && n.Elem.Attr("by") == by {
			continue
		}
		kept = append(kept, n)
	}
	e.Nodes = kept
}
